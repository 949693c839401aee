/*
 * idempotency.c -- responses remembered by idempotency key, for a window (default 24 h).
 *
 * In memory: a hash table of key -> (request fingerprint, state, status, body, expiry).
 * On disk: DATA/idempotency/journal-<hour>.jsonl, one JSON line per remembered response,
 * appended with one write(2) before the response is sent and fdatasync'd about once a
 * second and at shutdown. A process crash (SIGKILL) loses no line: they are in the page
 * cache. What no journal line can cover is a command whose events became durable but
 * whose answer was never sent (killed in between) or whose line a machine crash lost:
 * so each keyed command's events carry the scoped key in their metadata
 * ("idempotency"), and start-up rebuilds the answers of keyed commands the journal does
 * not cover from the log, scanning from the journal's high-water mark to the head. Then
 * it drops what expired and rewrites the journal compacted (temp file, fsync, rename),
 * first line {"p": head}.
 *
 * The high-water mark is a consumer checkpoint that moves with the log: every log
 * position below it belongs to a command whose answer line is durable in the journal, or
 * to no keyed command. Each keyed command records the log head when it claims its key
 * (its events come after it) and stays on the in-flight list until its answer is
 * journaled; the mark is the oldest in-flight claim's head, or the log head when none is
 * in flight. svc_idem_sync computes it, makes the journal durable, then appends it as a
 * line {"p": mark}, at most every MARK_EVERY_US while the log moves (made durable by the
 * next sync; if a crash loses it, the previous mark still holds). So start-up after any
 * crash reads only the last few seconds of the log, not everything since the last start.
 *
 * While running, a new file starts each hour and a file is deleted once everything it
 * holds has expired, so the journal's size follows the window, not the uptime.
 *
 * One mutex guards the table and the journal: a claim, a finish and a lookup are a few
 * hundred nanoseconds of work under it.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

typedef struct idem_entry {
    struct idem_entry *next;
    struct idem_entry *fl_prev, *fl_next; /* the in-flight list, while status is 0 */
    uint64_t head_at_claim;               /* the log head when the key was claimed */
    uint64_t fp;                          /* 0: rebuilt from the log, matches any request */
    uint64_t position;                    /* of the answer's last event + 1; 0 if none */
    int64_t expires_us;
    unsigned status; /* 0 while the first request runs */
    char *body;
    char key[]; /* NUL-terminated */
} idem_entry;

struct svc_idem {
    pthread_mutex_t mu;
    idem_entry **buckets;
    size_t nbuckets, count, sweep_cursor;
    int64_t window_us;
    uint64_t high_water; /* log positions below it are covered by the journal */
    store_log *log;      /* borrowed; NULL in tests without a log */
    idem_entry *inflight_head, *inflight_tail; /* claims not yet finished, oldest first */
    uint64_t mark_written;                     /* the last mark appended to the journal */
    int64_t mark_at_us;                        /* when */
    int64_t hour;      /* of the file fd appends to, in units of period_us */
    int64_t period_us; /* how long one journal file is appended to: an hour */
    char dir[4000];
    int fd;
    int dirty;
    char path[4096];
};

static size_t key_hash(const char *s)
{
    return (size_t)ev_hash_str(s);
}

uint64_t svc_fingerprint(const char *command, const void *body, size_t size)
{
    /* the NUL keeps "AB"+"C" apart from "A"+"BC" */
    uint64_t h = ev_hash_add(EV_HASH_INIT, command, strlen(command) + 1);
    return ev_hash_add(h, body, size);
}

static idem_entry **slot_of(svc_idem *idem, const char *key)
{
    idem_entry **p = &idem->buckets[key_hash(key) & (idem->nbuckets - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

static void entry_free(idem_entry *e)
{
    free(e->body);
    free(e);
}

static void grow(svc_idem *idem)
{
    size_t n = idem->nbuckets * 2;
    idem_entry **b = calloc(n, sizeof *b);
    if (!b)
        return; /* keeps working, just with longer chains */
    for (size_t i = 0; i < idem->nbuckets; i++) {
        idem_entry *e = idem->buckets[i];
        while (e) {
            idem_entry *next = e->next;
            size_t j = key_hash(e->key) & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(idem->buckets);
    idem->buckets = b;
    idem->nbuckets = n;
}

static idem_entry *insert(svc_idem *idem, const char *key, uint64_t fp, int64_t expires_us)
{
    size_t len = strlen(key);
    idem_entry *e = calloc(1, sizeof *e + len + 1);
    if (!e)
        return NULL;
    memcpy(e->key, key, len + 1);
    e->fp = fp;
    e->expires_us = expires_us;
    if (idem->count >= idem->nbuckets)
        grow(idem);
    idem_entry **head = &idem->buckets[key_hash(key) & (idem->nbuckets - 1)];
    e->next = *head;
    *head = e;
    idem->count++;
    return e;
}

static void inflight_push(svc_idem *idem, idem_entry *e)
{
    e->head_at_claim = idem->log ? store_log_head(idem->log) : 0;
    e->fl_prev = idem->inflight_tail;
    e->fl_next = NULL;
    if (idem->inflight_tail)
        idem->inflight_tail->fl_next = e;
    else
        idem->inflight_head = e;
    idem->inflight_tail = e;
}

static void inflight_unlink(svc_idem *idem, idem_entry *e)
{
    if (e->status)
        return; /* not in flight */
    if (e->fl_prev)
        e->fl_prev->fl_next = e->fl_next;
    else if (idem->inflight_head == e)
        idem->inflight_head = e->fl_next;
    if (e->fl_next)
        e->fl_next->fl_prev = e->fl_prev;
    else if (idem->inflight_tail == e)
        idem->inflight_tail = e->fl_prev;
    e->fl_prev = e->fl_next = NULL;
}

static void remove_at(svc_idem *idem, idem_entry **p)
{
    idem_entry *e = *p;
    inflight_unlink(idem, e);
    *p = e->next;
    idem->count--;
    entry_free(e);
}

static char *journal_line(const idem_entry *e, size_t *len)
{
    char fp[20];
    snprintf(fp, sizeof fp, "%016" PRIx64, e->fp);
    json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:s, s:I}", "k", e->key, "f", fp, "e",
                          (json_int_t)e->expires_us, "s", (int)e->status, "b", e->body, "p",
                          (json_int_t)e->position);
    if (!o)
        return NULL;
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return NULL;
    *len = strlen(text);
    text[*len] = '\n'; /* written by length */
    (*len)++;
    return text;
}

static void load_line(svc_idem *idem, const char *line, int64_t now)
{
    json_t *o = json_loads(line, 0, NULL);
    const char *key, *fp, *body;
    json_int_t expires, position = 0;
    int status;
    /* A line without a key is a mark; an answer's own position says nothing about the
     * commands still in flight when it was written. */
    if (json_unpack(o, "{s:I}", "p", &position) == 0 && !json_object_get(o, "k") &&
        (uint64_t)position > idem->high_water)
        idem->high_water = (uint64_t)position;
    if (o &&
        json_unpack(o, "{s:s, s:s, s:I, s:i, s:s}", "k", &key, "f", &fp, "e", &expires, "s",
                    &status, "b", &body) == 0 &&
        expires > now && status > 0) {
        idem_entry **p = slot_of(idem, key);
        if (*p)
            remove_at(idem, p); /* a later line wins */
        idem_entry *e = insert(idem, key, strtoull(fp, NULL, 16), expires);
        if (e) {
            e->status = (unsigned)status;
            e->body = strdup(body);
            e->position = (uint64_t)position;
        }
    }
    json_decref(o); /* a torn last line (crash mid-write) is skipped */
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

#define HOUR_US       (3600ll * 1000000)
#define MARK_EVERY_US (2ll * 1000000)

static void journal_path(const svc_idem *idem, int64_t hour, char *out, size_t size)
{
    snprintf(out, size, "%s/journal-%010lld.jsonl", idem->dir, (long long)hour);
}

/* The hour of a journal file name, or -1 if it is not one. */
static int64_t journal_hour(const char *name)
{
    long long hour;
    int n = 0;
    if (sscanf(name, "journal-%lld.jsonl%n", &hour, &n) == 1 && name[n] == '\0')
        return hour;
    return -1;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_journal(const struct dirent *d)
{
    return journal_hour(d->d_name) >= 0;
}

/* Deletes journal files other than keep_hour's: all (before = INT64_MAX), or the empty
 * ones and those whose every line expired before `before` (hour + 1 + window). */
static void remove_journals(const svc_idem *idem, int64_t keep_hour, int64_t before_us)
{
    struct dirent **names;
    int n = scandir(idem->dir, &names, is_journal, by_name);
    for (int i = 0; i < n; i++) {
        int64_t hour = journal_hour(names[i]->d_name);
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", idem->dir, names[i]->d_name);
        struct stat st;
        int empty = stat(path, &st) == 0 && st.st_size == 0;
        if (hour != keep_hour &&
            (empty || (hour < INT64_MAX / 4 / idem->period_us &&
                       (hour + 1) * idem->period_us + idem->window_us < before_us)))
            unlink(path);
        free(names[i]);
    }
    if (n >= 0)
        free(names);
}

static void sync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0)
            svc_logs(SVC_LOG_ERROR, "cannot sync the idempotency directory", "dir", dir, SVC_END);
        close(dfd);
    }
}

/* Writes the live entries to a new journal and renames it over the old one. */
static int compact(svc_idem *idem, const char *dir, sk_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", idem->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sk_error_set(err, -errno, "", "cannot write %s: %s", tmp, strerror(errno));
    char head[64];
    int n = snprintf(head, sizeof head, "{\"p\":%llu}\n", (unsigned long long)idem->high_water);
    int rc = write_all(fd, head, (size_t)n);
    for (size_t i = 0; i < idem->nbuckets && rc == 0; i++)
        for (idem_entry *e = idem->buckets[i]; e && rc == 0; e = e->next) {
            size_t len;
            char *line = journal_line(e, &len);
            rc = line ? write_all(fd, line, len) : -ENOMEM;
            free(line);
        }
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, idem->path) != 0)
        rc = -errno;
    if (rc == 0) {
        sync_dir(dir);
        remove_journals(idem, idem->hour, INT64_MAX); /* all is in the new one */
        sync_dir(dir);
    }
    if (rc)
        return sk_error_set(err, rc, "", "cannot rewrite %s: %s", idem->path, strerror(-rc));
    return 0;
}

/* Groups a run of events of one command (same command_id) into its answer. */
typedef struct rebuilt {
    char key[512];
    ev_uuid command_id;
    json_t *answer;
    int64_t occurred_at;
    uint64_t last_position;
} rebuilt;

static void rebuilt_flush(svc_idem *idem, rebuilt *r)
{
    if (!r->answer)
        return;
    json_t *events = json_object_get(r->answer, "events");
    json_t *last = json_array_get(events, json_array_size(events) - 1);
    json_object_set(r->answer, "position", json_object_get(last, "position"));
    char *body = json_dumps(r->answer, JSON_COMPACT);
    json_decref(r->answer);
    r->answer = NULL;
    int64_t expires = r->occurred_at + idem->window_us;
    idem_entry **p = slot_of(idem, r->key);
    if (!body || *p || expires <= ev_now_us()) { /* the journal's answer wins */
        free(body);
        return;
    }
    idem_entry *e = insert(idem, r->key, 0, expires);
    if (!e) {
        free(body);
        return;
    }
    e->status = 200;
    e->body = body;
    e->position = r->last_position + 1;
}

static const char *meta_value(const ev_event *ev, const char *key, char *buf, size_t size)
{
    for (uint32_t i = 0; i < ev->metadata_count; i++)
        if (ev_str_eq(ev->metadata[i].key, key)) {
            size_t n = ev->metadata[i].value.len < size - 1 ? ev->metadata[i].value.len : size - 1;
            memcpy(buf, ev->metadata[i].value.ptr, n);
            buf[n] = '\0';
            return buf;
        }
    return NULL;
}

/* Rebuilds answers of keyed commands in the log from the high-water mark to the head. */
static int reconcile(svc_idem *idem, store_log *log, uint64_t *scanned, sk_error *err)
{
    store_reader *rd;
    int rc = store_reader_open(log, idem->high_water, &rd);
    if (rc)
        return sk_error_set(err, rc, "", "cannot read the log to rebuild idempotency keys");
    rebuilt r = {0};
    ev_event ev;
    char key[512];
    while ((rc = store_reader_next(rd, &ev, err)) == 1) {
        (*scanned)++;
        if (!meta_value(&ev, SVC_META_IDEMPOTENCY, key, sizeof key))
            continue;
        if (!r.answer || strcmp(r.key, key) != 0 ||
            memcmp(&r.command_id, &ev.command_id, sizeof r.command_id) != 0) {
            rebuilt_flush(idem, &r);
            snprintf(r.key, sizeof r.key, "%s", key);
            r.command_id = ev.command_id;
            r.occurred_at = ev.occurred_at;
            char cid[EV_UUID_TEXT_SIZE];
            ev_uuid_format(&ev.command_id, cid);
            r.answer = json_pack("{s:s, s:s%, s:[]}", "command_id", cid, "stream_id",
                                 ev.stream_id.ptr, (size_t)ev.stream_id.len, "events");
        }
        char eid[EV_UUID_TEXT_SIZE];
        ev_uuid_format(&ev.event_id, eid);
        json_array_append_new(json_object_get(r.answer, "events"),
                              json_pack("{s:s, s:s%, s:I, s:I}", "event_id", eid, "type",
                                        ev.type.ptr, (size_t)ev.type.len, "version",
                                        (json_int_t)ev.version, "position",
                                        (json_int_t)ev.position));
        r.last_position = ev.position;
    }
    rebuilt_flush(idem, &r);
    store_reader_close(rd);
    if (rc < 0)
        return rc;
    idem->high_water = store_log_head(log);
    return 0;
}

int svc_idem_open(const char *data_dir, uint64_t window_s, int64_t period_us, store_log *log,
                  svc_idem **out, sk_error *err)
{
    svc_idem *idem = calloc(1, sizeof *idem);
    if (!idem)
        return -ENOMEM;
    pthread_mutex_init(&idem->mu, NULL);
    idem->fd = -1;
    idem->window_us = (int64_t)window_s * 1000000;
    idem->log = log;
    idem->nbuckets = 1024;
    idem->buckets = calloc(idem->nbuckets, sizeof *idem->buckets);
    char *dir = idem->dir;
    snprintf(dir, sizeof idem->dir, "%s/idempotency", data_dir);
    idem->period_us = period_us > 0 ? period_us : HOUR_US;
    idem->hour = ev_now_us() / idem->period_us;
    journal_path(idem, idem->hour, idem->path, sizeof idem->path);
    int rc = idem->buckets ? 0 : -ENOMEM;
    if (rc == 0 && mkdir(dir, 0755) != 0 && errno != EEXIST)
        rc = sk_error_set(err, -errno, "", "cannot create %s: %s", dir, strerror(errno));
    struct dirent **names = NULL;
    int nnames = rc == 0 ? scandir(dir, &names, is_journal, by_name) : 0;
    for (int i = 0; i < nnames; i++) { /* oldest first: a later line wins */
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            char *line = NULL;
            size_t cap = 0;
            int64_t now = ev_now_us();
            while (getline(&line, &cap, f) > 0)
                load_line(idem, line, now);
            free(line);
            fclose(f);
        }
        free(names[i]);
    }
    free(names);
    /* load_line took the high-water mark from every line's "p" */
    uint64_t scanned = 0;
    size_t journaled = idem->count;
    if (rc == 0 && log)
        rc = reconcile(idem, log, &scanned, err);
    if (rc == 0) {
        char loaded[24], from_log[24], events[24];
        snprintf(loaded, sizeof loaded, "%zu", journaled);
        snprintf(from_log, sizeof from_log, "%zu", idem->count - journaled);
        snprintf(events, sizeof events, "%" PRIu64, scanned);
        svc_logs(SVC_LOG_INFO, "idempotency keys loaded", "journal", loaded, "from_log", from_log,
                 "events_scanned", events, SVC_END);
    }
    idem->mark_written = idem->high_water; /* compact writes it as the first line */
    idem->mark_at_us = ev_now_us();
    if (rc == 0)
        rc = compact(idem, dir, err);
    if (rc == 0) {
        idem->fd = open(idem->path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (idem->fd < 0)
            rc = sk_error_set(err, -errno, "", "cannot open %s: %s", idem->path, strerror(errno));
    }
    if (rc) {
        svc_idem_close(idem);
        return rc;
    }
    *out = idem;
    return 0;
}

int svc_idem_close(svc_idem *idem)
{
    if (!idem)
        return 0;
    int rc = 0;
    if (idem->fd >= 0) {
        if (fdatasync(idem->fd) != 0)
            rc = -errno;
        close(idem->fd);
    }
    for (size_t i = 0; i < idem->nbuckets && idem->buckets; i++) {
        idem_entry *e = idem->buckets[i];
        while (e) {
            idem_entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(idem->buckets);
    pthread_mutex_destroy(&idem->mu);
    free(idem);
    return rc;
}

svc_idem_state svc_idem_begin(svc_idem *idem, const char *key, uint64_t fp, unsigned *status,
                              char **body)
{
    int64_t now = ev_now_us();
    svc_idem_state st = SVC_IDEM_NEW;
    pthread_mutex_lock(&idem->mu);
    idem_entry **p = slot_of(idem, key);
    if (*p && (*p)->expires_us <= now && (*p)->status)
        remove_at(idem, p);
    if (*p) {
        idem_entry *e = *p;
        if (e->fp != fp && e->fp != 0)
            st = SVC_IDEM_MISMATCH;
        else if (!e->status)
            st = SVC_IDEM_BUSY;
        else {
            st = SVC_IDEM_DONE;
            *status = e->status;
            *body = strdup(e->body);
        }
    } else {
        idem_entry *e = insert(idem, key, fp, now + idem->window_us);
        if (e)
            inflight_push(idem, e);
        else
            st = SVC_IDEM_BUSY; /* out of memory: ask the client to come back */
    }
    pthread_mutex_unlock(&idem->mu);
    return st;
}

void svc_idem_finish(svc_idem *idem, const char *key, unsigned status, const char *body,
                     uint64_t position)
{
    pthread_mutex_lock(&idem->mu);
    idem_entry *e = *slot_of(idem, key);
    if (e) {
        inflight_unlink(idem, e);
        e->status = status;
        e->position = position;
        e->body = strdup(body);
        e->expires_us = ev_now_us() + idem->window_us;
        size_t len;
        char *line = e->body ? journal_line(e, &len) : NULL;
        if (line && write_all(idem->fd, line, len) == 0)
            idem->dirty = 1;
        else
            svc_logs(SVC_LOG_ERROR, "idempotency journal write failed", "file", idem->path, "key",
                     key, SVC_END);
        free(line);
    }
    pthread_mutex_unlock(&idem->mu);
}

void svc_idem_release(svc_idem *idem, const char *key)
{
    pthread_mutex_lock(&idem->mu);
    idem_entry **p = slot_of(idem, key);
    if (*p && !(*p)->status)
        remove_at(idem, p);
    pthread_mutex_unlock(&idem->mu);
}

/* Appends the high-water mark (see the file comment) when it moved, at most every
 * MARK_EVERY_US; the next sync makes it durable. */
static void write_mark(svc_idem *idem, uint64_t mark, int64_t now)
{
    if (mark <= idem->mark_written || now - idem->mark_at_us < MARK_EVERY_US)
        return;
    char line[64];
    int n = snprintf(line, sizeof line, "{\"p\":%llu}\n", (unsigned long long)mark);
    pthread_mutex_lock(&idem->mu);
    if (write_all(idem->fd, line, (size_t)n) == 0) {
        idem->dirty = 1;
        idem->mark_written = mark;
        idem->mark_at_us = now;
    }
    pthread_mutex_unlock(&idem->mu);
}

/* Drops expired entries from a slice of the table, so no call holds the lock long. */
static void sweep(svc_idem *idem, int64_t now)
{
    for (size_t n = 0; n < 4096 && n < idem->nbuckets; n++) {
        size_t i = idem->sweep_cursor++ & (idem->nbuckets - 1);
        idem_entry **p = &idem->buckets[i];
        while (*p)
            if ((*p)->status && (*p)->expires_us <= now)
                remove_at(idem, p);
            else
                p = &(*p)->next;
    }
}

void svc_idem_sync(svc_idem *idem)
{
    int64_t now = ev_now_us();
    int old_fd = -1, new_fd = -1;
    char new_path[sizeof idem->path];
    int64_t period = idem->period_us;
    if (now / period != idem->hour) {
        journal_path(idem, now / period, new_path, sizeof new_path);
        new_fd = open(new_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (new_fd < 0)
            svc_logs(SVC_LOG_ERROR, "cannot start a new idempotency journal", "file", new_path,
                     SVC_END);
    }
    pthread_mutex_lock(&idem->mu);
    int dirty = idem->dirty;
    int fd = idem->fd;
    idem->dirty = 0;
    if (new_fd >= 0) {
        old_fd = idem->fd;
        idem->fd = new_fd;
        idem->hour = now / period;
        memcpy(idem->path, new_path, sizeof idem->path);
    }
    sweep(idem, now);
    /* The mark for after this fdatasync: the lines it vouches for were written before. */
    uint64_t mark = idem->inflight_head ? idem->inflight_head->head_at_claim
                    : idem->log         ? store_log_head(idem->log)
                                        : 0;
    pthread_mutex_unlock(&idem->mu);
    if (dirty && fdatasync(fd) != 0)
        svc_logs(SVC_LOG_ERROR, "idempotency journal fdatasync failed", "dir", idem->dir, SVC_END);
    else
        write_mark(idem, mark, now);
    if (old_fd >= 0) { /* nobody writes to it any more */
        close(old_fd);
        sync_dir(idem->dir);
        remove_journals(idem, idem->hour, now);
    }
}
