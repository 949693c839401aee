/*
 * idempotency.c -- responses remembered by idempotency key, for a window (default 24 h).
 *
 * Engine code of the command side: every producer of commands (the HTTP service, and the
 * saga orchestrator as it arrives) goes through the same store, so a key means the same
 * everywhere.
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
 * first line {"p": head}. While running, a new file starts each hour and a file is
 * deleted once everything it holds has expired, so the journal's size follows the window,
 * not the uptime.
 *
 * The high-water mark is a consumer checkpoint that moves with the log: every log
 * position below it belongs to a command whose answer line is durable in the journal, or
 * to no keyed command. Each keyed command records the log head when it claims its key
 * (its events come after it) and stays on the in-flight list until its answer is
 * journaled; the mark is the oldest in-flight claim's head, or the log head when none is
 * in flight. cmd_idem_sync computes it, makes the journal durable, then appends it as a
 * line {"p": mark}, at most every MARK_EVERY_US while the log moves (made durable by the
 * next sync; if a crash loses it, the previous mark still holds). So start-up after any
 * crash reads only the last few seconds of the log, not everything since the last start.
 *
 * Journal failures are sticky, like the log's: a failed write or fdatasync puts the store
 * in the failed state (the kernel may have dropped the pages, so a retried fdatasync
 * could lie). While failed, keyed commands are refused (CMD_IDEM_UNAVAILABLE: 503) and
 * /readyz says why; every cmd_idem_sync tries to leave the state by rewriting the whole
 * journal from memory (temp file, fdatasync, rename, directory fsync), which drops
 * whatever the failed file held. The answer of the command whose line failed is still
 * sent (its events are in the log either way). What remains exposed is the second between
 * a line's write and its fdatasync: a machine crash in it loses the line, which for a 200
 * is rebuilt from the log and for a 422 (no event) is not; docs/operations.md says so.
 *
 * All file writes go through a store_io (the store's I/O seam), so tests inject EIO and
 * ENOSPC; the clock is injectable too, so expiry and rotation are tested without sleeping.
 *
 * One mutex guards the table, the journal and the state: a claim, a finish and a lookup
 * are a few hundred nanoseconds of work under it.
 */
#include "commands/commands.h"

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

struct cmd_idem {
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
    const store_io *io;
    int64_t (*now_us)(void *ctx);
    void *clock_ctx;
    char dir[4000];
    int fd;
    uint64_t offset; /* where the next line goes in fd's file */
    int dirty;
    int failed;         /* the last failed journal write or fdatasync; 0: writable */
    char failure[4400]; /* why, while failed */
    char path[4096];
};

static int64_t clock_now(cmd_idem *idem)
{
    return idem->now_us ? idem->now_us(idem->clock_ctx) : ev_now_us();
}

static int64_t system_now(void *ctx)
{
    (void)ctx;
    return ev_now_us();
}

static size_t key_hash(const char *s)
{
    return (size_t)ev_hash_str(s);
}

uint64_t cmd_idem_fingerprint(const char *command, const void *body, size_t size)
{
    /* the NUL keeps "AB"+"C" apart from "A"+"BC" */
    uint64_t h = ev_hash_add(EV_HASH_INIT, command, strlen(command) + 1);
    return ev_hash_add(h, body, size);
}

static idem_entry **slot_of(cmd_idem *idem, const char *key)
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

static void grow(cmd_idem *idem)
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

static idem_entry *insert(cmd_idem *idem, const char *key, uint64_t fp, int64_t expires_us)
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

static void inflight_push(cmd_idem *idem, idem_entry *e)
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

static void inflight_unlink(cmd_idem *idem, idem_entry *e)
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

static void remove_at(cmd_idem *idem, idem_entry **p)
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

static void load_line(cmd_idem *idem, const char *line, int64_t now)
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

/* Writes all of data at *offset through the seam and moves *offset past it. */
static int write_all(const store_io *io, int fd, uint64_t *offset, const char *data, size_t len)
{
    while (len) {
        ssize_t w = io->pwrite(io->ctx, fd, data, len, *offset);
        if (w < 0)
            return (int)w;
        if (w == 0)
            return -ENOSPC;
        data += w;
        len -= (size_t)w;
        *offset += (uint64_t)w;
    }
    return 0;
}

#define MARK_EVERY_US (2ll * 1000000)
#define HOUR_US       (3600ll * 1000000)

static void journal_path(const cmd_idem *idem, int64_t hour, char *out, size_t size)
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
static void remove_journals(const cmd_idem *idem, int64_t keep_hour, int64_t before_us)
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
            idem->io->unlink(idem->io->ctx, path); /* one left over is deleted next time */
        free(names[i]);
    }
    if (n >= 0)
        free(names);
}

/*
 * Writes the live (answered) entries to a new journal file for the current period,
 * renames it over any file of that name, fsyncs the directory, deletes every other
 * journal file and makes the new one the file appended to. Called at open, and to leave
 * the failed state.
 */
static int compact(cmd_idem *idem, sk_error *err)
{
    const store_io *io = idem->io;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", idem->path);
    int fd = io->open(io->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sk_error_set(err, fd, "", "cannot write %s: %s", tmp, sk_strerror(fd));
    char head[64];
    uint64_t mark = idem->mark_written > idem->high_water ? idem->mark_written : idem->high_water;
    int n = snprintf(head, sizeof head, "{\"p\":%llu}\n", (unsigned long long)mark);
    uint64_t offset = 0;
    int rc = write_all(io, fd, &offset, head, (size_t)n);
    for (size_t i = 0; i < idem->nbuckets && rc == 0; i++)
        for (idem_entry *e = idem->buckets[i]; e && rc == 0; e = e->next) {
            if (!e->status)
                continue; /* a claim still running: its finish appends its line */
            size_t len;
            char *line = journal_line(e, &len);
            rc = line ? write_all(io, fd, &offset, line, len) : -ENOMEM;
            free(line);
        }
    if (rc == 0)
        rc = io->fdatasync(io->ctx, fd);
    if (rc == 0)
        rc = io->rename(io->ctx, tmp, idem->path);
    if (rc == 0)
        rc = io->sync_dir(io->ctx, idem->dir);
    if (rc) {
        io->close(io->ctx, fd);
        io->unlink(io->ctx, tmp);
        return sk_error_set(err, rc, "", "cannot rewrite %s: %s", idem->path, sk_strerror(rc));
    }
    /* the renamed file is the one to append to: keep its descriptor */
    if (idem->fd >= 0)
        io->close(io->ctx, idem->fd);
    idem->fd = fd;
    idem->offset = offset;
    idem->dirty = 0;
    remove_journals(idem, idem->hour, INT64_MAX); /* all is in the new one */
    return 0;
}

/* Enters the failed state (under mu). The first failure is logged; later ones are not. */
static void set_failed(cmd_idem *idem, int rc, const char *what)
{
    if (!idem->failed)
        sk_log(SK_LOG_ERROR, "idempotency",
               "idempotency journal entered the failed state; keyed commands get 503 until "
               "it is rewritten",
               "what", what, "error", sk_strerror(rc), "file", idem->path, SK_LOG_END);
    idem->failed = rc;
    snprintf(idem->failure, sizeof idem->failure, "%s %s: %s", what, idem->path, sk_strerror(rc));
}

/* Groups a run of events of one command (same command_id) into its answer. */
typedef struct rebuilt {
    char key[512];
    ev_uuid command_id;
    json_t *answer;
    int64_t occurred_at;
    uint64_t last_position;
} rebuilt;

static void rebuilt_flush(cmd_idem *idem, rebuilt *r)
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
    if (!body || *p || expires <= clock_now(idem)) { /* the journal's answer wins */
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

/*
 * Where the start-up scan of the log begins: the journal's high-water mark (the log head
 * at the last start-up, or past the last journaled position), below which every keyed
 * command's answer is in the journal. This is the one place the position is chosen:
 * when idempotency becomes a consumer of the log with a checkpoint of its own, this is
 * the function that reads that checkpoint instead.
 */
static uint64_t reconcile_scan_from(const cmd_idem *idem)
{
    return idem->high_water;
}

/* Rebuilds the answers of keyed commands in the log, from reconcile_scan_from to the
 * head, that the journal does not hold. */
static int reconcile(cmd_idem *idem, store_log *log, uint64_t *scanned, sk_error *err)
{
    store_reader *reader;
    int rc = store_reader_open(log, reconcile_scan_from(idem), &reader);
    if (rc)
        return sk_error_set(err, rc, "", "cannot read the log to rebuild idempotency keys");
    rebuilt r = {0};
    ev_event ev;
    char key[512];
    while ((rc = store_reader_next(reader, &ev, err)) == 1) {
        (*scanned)++;
        if (!meta_value(&ev, CMD_META_IDEMPOTENCY, key, sizeof key))
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
    store_reader_close(reader);
    if (rc < 0)
        return rc;
    idem->high_water = store_log_head(log);
    return 0;
}

void cmd_idem_config_init(cmd_idem_config *cfg, const char *data_dir)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->data_dir = data_dir;
    cfg->window_s = 86400;
}

int cmd_idem_open(const cmd_idem_config *cfg, cmd_idem **out, sk_error *err)
{
    cmd_idem *idem = calloc(1, sizeof *idem);
    if (!idem)
        return -ENOMEM;
    pthread_mutex_init(&idem->mu, NULL);
    idem->fd = -1;
    idem->io = cfg->io ? cfg->io : store_io_posix();
    idem->now_us = cfg->now_us ? cfg->now_us : system_now;
    idem->clock_ctx = cfg->clock_ctx;
    idem->window_us = (int64_t)cfg->window_s * 1000000;
    idem->log = cfg->log;
    idem->nbuckets = 1024;
    idem->buckets = calloc(idem->nbuckets, sizeof *idem->buckets);
    char *dir = idem->dir;
    snprintf(dir, sizeof idem->dir, "%s/idempotency", cfg->data_dir);
    idem->period_us = cfg->period_us > 0 ? cfg->period_us : HOUR_US;
    idem->hour = clock_now(idem) / idem->period_us;
    journal_path(idem, idem->hour, idem->path, sizeof idem->path);
    int rc = idem->buckets ? 0 : -ENOMEM;
    if (rc == 0) {
        rc = idem->io->mkdir(idem->io->ctx, dir, 0755);
        if (rc == -EEXIST)
            rc = 0;
        else if (rc)
            sk_error_set(err, rc, "", "cannot create %s: %s", dir, sk_strerror(rc));
    }
    struct dirent **names = NULL;
    int nnames = rc == 0 ? scandir(dir, &names, is_journal, by_name) : 0;
    for (int i = 0; i < nnames; i++) { /* oldest first: a later line wins */
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            char *line = NULL;
            size_t cap = 0;
            int64_t now = clock_now(idem);
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
    if (rc == 0 && cfg->log)
        rc = reconcile(idem, cfg->log, &scanned, err);
    if (rc == 0) {
        char loaded[24], from_log[24], events[24];
        snprintf(loaded, sizeof loaded, "%zu", journaled);
        snprintf(from_log, sizeof from_log, "%zu", idem->count - journaled);
        snprintf(events, sizeof events, "%" PRIu64, scanned);
        sk_log(SK_LOG_INFO, "idempotency", "idempotency keys loaded", "journal", loaded, "from_log",
               from_log, "events_scanned", events, SK_LOG_END);
    }
    idem->mark_written = idem->high_water; /* compact writes it as the first line */
    idem->mark_at_us = clock_now(idem);
    if (rc == 0)
        rc = compact(idem, err);
    if (rc) {
        cmd_idem_close(idem);
        return rc;
    }
    *out = idem;
    return 0;
}

int cmd_idem_close(cmd_idem *idem)
{
    if (!idem)
        return 0;
    int rc = idem->failed;
    if (idem->fd >= 0) {
        if (rc == 0 && idem->dirty)
            rc = idem->io->fdatasync(idem->io->ctx, idem->fd);
        idem->io->close(idem->io->ctx, idem->fd);
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

cmd_idem_state cmd_idem_begin(cmd_idem *idem, const char *key, uint64_t fp, unsigned *status,
                              char **body)
{
    int64_t now = clock_now(idem);
    cmd_idem_state st = CMD_IDEM_NEW;
    pthread_mutex_lock(&idem->mu);
    if (idem->failed) {
        pthread_mutex_unlock(&idem->mu);
        return CMD_IDEM_UNAVAILABLE;
    }
    idem_entry **p = slot_of(idem, key);
    if (*p && (*p)->expires_us <= now && (*p)->status)
        remove_at(idem, p);
    if (*p) {
        idem_entry *e = *p;
        if (e->fp != fp && e->fp != 0)
            st = CMD_IDEM_MISMATCH;
        else if (!e->status)
            st = CMD_IDEM_BUSY;
        else {
            st = CMD_IDEM_DONE;
            *status = e->status;
            *body = strdup(e->body);
        }
    } else {
        idem_entry *e = insert(idem, key, fp, now + idem->window_us);
        if (e)
            inflight_push(idem, e);
        else
            st = CMD_IDEM_BUSY; /* out of memory: ask the client to come back */
    }
    pthread_mutex_unlock(&idem->mu);
    return st;
}

int cmd_idem_finish(cmd_idem *idem, const char *key, unsigned status, const char *body,
                    uint64_t position)
{
    int rc = 0;
    pthread_mutex_lock(&idem->mu);
    idem_entry **p = slot_of(idem, key);
    idem_entry *e = *p;
    if (e && !e->status) {
        inflight_unlink(idem, e);
        e->body = strdup(body);
        size_t len = 0;
        char *line = NULL;
        if (e->body) {
            e->status = status;
            e->position = position;
            e->expires_us = clock_now(idem) + idem->window_us;
            line = journal_line(e, &len);
        }
        if (!line) {
            remove_at(idem, p); /* not remembered: a retry runs the command again */
            rc = -ENOMEM;
        } else if (idem->failed) {
            rc = idem->failed; /* kept in memory; the rewrite that ends the state saves it */
        } else {
            rc = write_all(idem->io, idem->fd, &idem->offset, line, len);
            if (rc)
                set_failed(idem, rc, "write to");
            else
                idem->dirty = 1;
        }
        free(line);
    }
    pthread_mutex_unlock(&idem->mu);
    return rc;
}

void cmd_idem_release(cmd_idem *idem, const char *key)
{
    pthread_mutex_lock(&idem->mu);
    idem_entry **p = slot_of(idem, key);
    if (*p && !(*p)->status)
        remove_at(idem, p);
    pthread_mutex_unlock(&idem->mu);
}

/* Appends the high-water mark (see the file comment) when it moved, at most every
 * MARK_EVERY_US; the next sync makes it durable. */
static void write_mark(cmd_idem *idem, uint64_t mark, int64_t now)
{
    if (mark <= idem->mark_written || now - idem->mark_at_us < MARK_EVERY_US)
        return;
    char line[64];
    int n = snprintf(line, sizeof line, "{\"p\":%llu}\n", (unsigned long long)mark);
    pthread_mutex_lock(&idem->mu);
    if (!idem->failed && write_all(idem->io, idem->fd, &idem->offset, line, (size_t)n) == 0) {
        idem->dirty = 1;
        idem->mark_written = mark;
        idem->mark_at_us = now;
    }
    pthread_mutex_unlock(&idem->mu);
}

/* Drops expired entries from a slice of the table, so no call holds the lock long. */
static void sweep(cmd_idem *idem, int64_t now)
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

/* Opens the journal file of period hour for appending and makes its directory entry
 * durable; the descriptor, or a negative code. */
static int open_period_file(cmd_idem *idem, int64_t hour, char *path, size_t size, uint64_t *offset)
{
    const store_io *io = idem->io;
    journal_path(idem, hour, path, size);
    int fd = io->open(io->ctx, path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fd;
    int rc = io->file_size(io->ctx, fd, offset);
    if (rc == 0)
        rc = io->sync_dir(io->ctx, idem->dir);
    if (rc) {
        io->close(io->ctx, fd);
        return rc;
    }
    return fd;
}

int cmd_idem_sync(cmd_idem *idem)
{
    const store_io *io = idem->io;
    int64_t now = clock_now(idem);
    int64_t hour = now / idem->period_us; /* idem->hour changes on this thread only */
    char new_path[sizeof idem->path];
    uint64_t new_offset = 0;
    int new_fd = hour != idem->hour
                     ? open_period_file(idem, hour, new_path, sizeof new_path, &new_offset)
                     : -1; /* on failure the old file goes on; the next tick tries again */
    pthread_mutex_lock(&idem->mu);
    int dirty = idem->dirty && !idem->failed;
    int fd = idem->fd, old_fd = -1;
    idem->dirty = 0; /* a line written from now on sets it again, for the next tick */
    if (new_fd >= 0) {
        old_fd = idem->fd;
        idem->fd = new_fd;
        idem->offset = new_offset;
        idem->hour = hour;
        memcpy(idem->path, new_path, sizeof idem->path);
    }
    sweep(idem, now);
    /* The mark for after this fdatasync: the lines it vouches for were written before. */
    uint64_t mark = idem->inflight_head ? idem->inflight_head->head_at_claim
                    : idem->log         ? store_log_head(idem->log)
                                        : 0;
    pthread_mutex_unlock(&idem->mu);
    /* outside the lock: claims and finishes go on while the disk works */
    int rc = dirty ? io->fdatasync(io->ctx, fd) : 0;
    if (rc == 0)
        write_mark(idem, mark, now);
    if (old_fd >= 0) { /* nobody writes to it any more */
        io->close(io->ctx, old_fd);
        remove_journals(idem, hour, now);
    }
    pthread_mutex_lock(&idem->mu);
    if (rc)
        set_failed(idem, rc, "fdatasync of");
    if (idem->failed) {
        /* leave the failed state by rewriting everything into a fresh file */
        sk_error err = {0};
        if (compact(idem, &err) == 0) {
            idem->failed = 0;
            idem->failure[0] = '\0';
            sk_log(SK_LOG_NOTICE, "idempotency",
                   "idempotency journal rewritten; keyed commands accepted again", "file",
                   idem->path, SK_LOG_END);
        }
    }
    rc = idem->failed;
    pthread_mutex_unlock(&idem->mu);
    return rc;
}

int cmd_idem_health(cmd_idem *idem, char *why, size_t size)
{
    pthread_mutex_lock(&idem->mu);
    int rc = idem->failed;
    if (rc && why)
        snprintf(why, size, "%s", idem->failure);
    pthread_mutex_unlock(&idem->mu);
    return rc;
}
