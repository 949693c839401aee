/*
 * reader.c -- reading the log: by position, and one stream by version.
 *
 * A position reader finds the segment by binary search over first positions, jumps to
 * the nearest sparse index entry at or before the position, and then reads forward in
 * large chunks, checking every record's CRC. It never reads past the head, so it only
 * sees committed records.
 *
 * A stream reader never scans the log: for each sealed segment it binary-searches the
 * segment's stream index (hash, version) and for the active segment it uses the stream's
 * tail entries, so reading a stream costs O(its events + segments * log(events per
 * segment)). It plans up to PLAN_MAX record locations under log->mu, then reads them
 * without the lock. Each record read is checked against the stream id (a hash collision
 * is skipped) and the expected version.
 *
 * Lifetime: the log keeps a list of its open readers. Each call on a reader marks it busy
 * (an atomic flag of its own, so readers never contend) unless a recovery is holding
 * readers back; recovery sets `recovering`, waits for the busy flags to clear, replaces
 * the segments, bumps the log's generation and lets readers go. A reader that sees a new
 * generation drops the segment pointers it held and seeks again from its position. So a
 * long-lived reader never blocks a recovery for longer than one call, and never reads a
 * freed segment. Readers must still be closed before store_log_close.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define READ_CHUNK (256u << 10)
/* A stream read fetches one record at a time: most fit in this; a longer one costs a
 * second read. */
#define STREAM_READ 1024
#define PLAN_MAX    128

typedef struct plan_entry {
    store_segment *seg;
    uint64_t offset;
    uint64_t version;
    uint64_t position;
} plan_entry;

struct store_reader {
    store_log *log;
    struct store_reader *prev, *next_open; /* in log->readers; guarded by readers_mu */
    _Atomic int busy;                      /* inside a call (see the file comment) */
    uint64_t generation;                   /* of the segment pointers held */
    bool by_stream;
    bool durable_only; /* stop at the durable head (subscriptions) */
    uint8_t *buf;
    size_t cap;
    uint64_t buf_offset; /* file offset of buf[0] in seg */
    size_t buf_len;
    store_segment *buf_seg;
    /* Position mode. */
    uint64_t next_position;
    store_segment *seg;
    uint64_t offset;
    /* Stream mode. */
    char *stream;
    uint32_t stream_len;
    uint64_t hash;
    uint64_t next_version;
    uint32_t seg_index; /* sealed segments before it hold none of the next versions */
    plan_entry plan[PLAN_MAX];
    uint32_t plan_count, plan_next;
    uint64_t at_position; /* of the record being read, for error messages */
};

static int reader_alloc(store_log *log, store_reader **out)
{
    store_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->log = log;
    /* the buffer comes with the first read (read_record), sized for it: a stream reader
     * reads 1 KiB at a time, and a 256 KiB block per aggregate load cost a heap
     * consolidation each (glibc consolidates its fast bins before a large request) */
    pthread_mutex_lock(&log->readers_mu);
    r->generation = atomic_load(&log->generation);
    r->next_open = log->readers;
    if (log->readers)
        log->readers->prev = r;
    log->readers = r;
    log->reader_count++;
    pthread_mutex_unlock(&log->readers_mu);
    *out = r;
    return 0;
}

/* Drops what points into the segments; the next read seeks again from the position. */
static void forget_segments(store_reader *r)
{
    r->seg = NULL;
    r->buf_seg = NULL;
    r->buf_len = 0;
    r->plan_count = r->plan_next = 0;
    r->seg_index = 0;
}

/* Marks the reader busy, waiting first if a recovery holds readers back. The flag is
 * set before `recovering` is read, and recovery sets `recovering` before it reads the
 * flags (both sequentially consistent): one of the two always sees the other. */
static void reader_enter(store_reader *r)
{
    store_log *log = r->log;
    for (;;) {
        atomic_store(&r->busy, 1);
        if (!atomic_load(&log->recovering))
            break;
        atomic_store(&r->busy, 0);
        pthread_mutex_lock(&log->readers_mu);
        while (atomic_load(&log->recovering))
            pthread_cond_wait(&log->readers_cond, &log->readers_mu);
        pthread_mutex_unlock(&log->readers_mu);
    }
    uint64_t gen = atomic_load(&log->generation);
    if (gen != r->generation) {
        forget_segments(r);
        r->generation = gen;
    }
}

static void reader_leave(store_reader *r)
{
    atomic_store(&r->busy, 0);
}

void store_readers_hold(store_log *log)
{
    atomic_store(&log->recovering, 1);
    for (;;) {
        bool busy = false;
        pthread_mutex_lock(&log->readers_mu);
        for (store_reader *r = log->readers; r && !busy; r = r->next_open)
            busy = atomic_load(&r->busy) != 0;
        pthread_mutex_unlock(&log->readers_mu);
        if (!busy)
            return;
        /* A call on a reader is one record read: this wait is short and rare. */
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

void store_readers_resume(store_log *log)
{
    pthread_mutex_lock(&log->readers_mu);
    atomic_fetch_add(&log->generation, 1);
    atomic_store(&log->recovering, 0);
    pthread_cond_broadcast(&log->readers_cond);
    pthread_mutex_unlock(&log->readers_mu);
}

int store_reader_open_durable(store_log *log, uint64_t from_position, store_reader **out)
{
    store_reader *r;
    int rc = reader_alloc(log, &r);
    if (rc)
        return rc;
    r->next_position = from_position;
    r->durable_only = true;
    *out = r;
    return 0;
}

uint64_t store_reader_position(const store_reader *r)
{
    return r->next_position;
}

int store_reader_open(store_log *log, uint64_t from_position, store_reader **out)
{
    store_reader *r;
    int rc = reader_alloc(log, &r);
    if (rc)
        return rc;
    r->next_position = from_position;
    *out = r;
    return 0;
}

int store_reader_open_stream(store_log *log, ev_str stream_id, uint64_t from_version,
                             store_reader **out)
{
    if (stream_id.len == 0 || stream_id.len > EV_STREAM_ID_MAX)
        return SK_EBADINPUT;
    store_reader *r;
    int rc = reader_alloc(log, &r);
    if (rc)
        return rc;
    r->by_stream = true;
    r->stream = malloc(stream_id.len + 1u);
    if (!r->stream) {
        store_reader_close(r);
        return -ENOMEM;
    }
    memcpy(r->stream, stream_id.ptr, stream_id.len);
    r->stream[stream_id.len] = '\0';
    r->stream_len = stream_id.len;
    r->hash = store_stream_hash(stream_id);
    r->next_version = from_version ? from_version : 1;
    *out = r;
    return 0;
}

void store_reader_close(store_reader *r)
{
    if (!r)
        return;
    store_log *log = r->log;
    pthread_mutex_lock(&log->readers_mu);
    if (r->prev)
        r->prev->next_open = r->next_open;
    else
        log->readers = r->next_open;
    if (r->next_open)
        r->next_open->prev = r->prev;
    log->reader_count--;
    pthread_mutex_unlock(&log->readers_mu);
    free(r->buf);
    free(r->stream);
    free(r);
}

/* Reports damage a read met. In a log open for writing it also leaves a DAMAGED file in
 * the directory, so the next read-write open refuses the log until it is repaired: the
 * damage is never silently skipped, even where opening does not re-read (sealed
 * segments). */
static int corrupt(store_reader *r, store_segment *seg, uint64_t offset, const char *what,
                   sk_error *err)
{
    char name[64];
    store_segment_name(seg->first_position, ".log", name, sizeof name);
    sk_error_set(err, SK_ECORRUPT, "",
                 "log segment %s/%s is damaged at byte offset %llu (position %llu): %s; run "
                 "`skaldctl log verify` for every fault, then `skaldctl log repair "
                 "--truncate-at %llu`",
                 r->log->dir, name, (unsigned long long)offset, (unsigned long long)r->at_position,
                 what, (unsigned long long)r->at_position);
    if (!r->log->cfg.read_only && err)
        store_io_write_file_atomic(r->log->io, r->log->dir, STORE_DAMAGED_FILE, err->message,
                                   strlen(err->message));
    return SK_ECORRUPT;
}

/* Decodes the record at offset of seg into rec, reading through the chunk buffer. */
static int read_record(store_reader *r, store_segment *seg, uint64_t offset, uint64_t limit,
                       store_record *rec, sk_error *err)
{
    size_t need = STORE_FRAME_HEADER_SIZE;
    for (int tries = 0; tries < 3; tries++) {
        bool have = r->buf_seg == seg && offset >= r->buf_offset &&
                    offset + need <= r->buf_offset + r->buf_len;
        if (!have) {
            size_t want = need > READ_CHUNK ? need : (r->by_stream ? STREAM_READ : READ_CHUNK);
            if (want > limit - offset)
                want = (size_t)(limit - offset);
            if (want < need)
                return corrupt(r, seg, offset, "record runs past the committed end", err);
            if (want > r->cap) {
                uint8_t *n = realloc(r->buf, want);
                if (!n)
                    return sk_error_set(err, -ENOMEM, "", "no memory for a read buffer");
                r->buf = n;
                r->cap = want;
            }
            ssize_t got = store_io_read_full(r->log->io, seg->fd, r->buf, want, offset);
            if (got < 0)
                return sk_error_set(err, (int)got, "", "cannot read the log: %s",
                                    sk_strerror((int)got));
            r->buf_seg = seg;
            r->buf_offset = offset;
            r->buf_len = (size_t)got;
        }
        const char *what = "unknown";
        size_t avail = r->buf_offset + r->buf_len - offset;
        int rc = store_record_decode(r->buf + (offset - r->buf_offset), avail, rec, &need, &what);
        if (rc == 0)
            return 0;
        if (rc != -EAGAIN)
            return corrupt(r, seg, offset, what, err);
        if (offset + need > limit)
            return corrupt(r, seg, offset, "record runs past the committed end", err);
    }
    return corrupt(r, seg, offset, "record could not be read whole", err);
}

/* Positions the reader at next_position: segment, then index entry, then skip forward. */
static int seek_position(store_reader *r, sk_error *err)
{
    store_log *log = r->log;
    uint64_t entry_pos;
    pthread_mutex_lock(&log->mu);
    store_segment *seg = store_log_segment_for(log, r->next_position);
    uint64_t off = seg ? store_index_lookup(seg, r->next_position, &entry_pos) : 0;
    pthread_mutex_unlock(&log->mu);
    if (!seg)
        return sk_error_set(err, SK_ENOTFOUND, "from_position",
                            "position %llu is before the first record kept",
                            (unsigned long long)r->next_position);
    store_record rec;
    while (entry_pos < r->next_position) {
        r->at_position = entry_pos;
        int rc = read_record(r, seg, off, atomic_load(&seg->size), &rec, err);
        if (rc)
            return rc;
        off += rec.frame_size;
        entry_pos++;
    }
    r->seg = seg;
    r->offset = off;
    return 0;
}

static int next_by_position(store_reader *r, ev_event *out, sk_error *err)
{
    uint64_t limit = r->durable_only ? atomic_load(&r->log->durable_head) : store_log_head(r->log);
    if (r->next_position >= limit)
        return 0;
    if (!r->seg || r->next_position >= atomic_load(&r->seg->next_position)) {
        int rc = seek_position(r, err);
        if (rc)
            return rc;
    }
    store_record rec;
    r->at_position = r->next_position;
    int rc = read_record(r, r->seg, r->offset, atomic_load(&r->seg->size), &rec, err);
    if (rc)
        return rc;
    if (rec.ev.position != r->next_position)
        return corrupt(r, r->seg, r->offset, "record holds an unexpected position", err);
    r->offset += rec.frame_size;
    r->next_position++;
    *out = rec.ev;
    return 1;
}

/* Makes a sealed segment's stream index available: its file, or a rebuild by scanning. */
static int ensure_sidx(store_log *log, store_segment *seg)
{
    if (seg->sidx_loaded || seg->sidx_fd >= 0)
        return 0;
    if (store_sidx_open(log->io, log->dir, seg) == 0)
        return 0;
    store_scan scan;
    int rc = store_scan_init(&scan, log->io, seg->fd, seg->size, 0);
    if (rc)
        return rc;
    free(seg->sidx);
    seg->sidx = NULL;
    seg->sidx_count = seg->sidx_cap = 0;
    store_record rec;
    const char *what;
    while ((rc = store_scan_next(&scan, &rec, &what)) == 1) {
        rc = store_sidx_push(seg, store_stream_hash(rec.ev.stream_id), rec.ev.version,
                             rec.ev.position, scan.offset - rec.frame_size);
        if (rc)
            break;
    }
    store_scan_close(&scan);
    if (rc < 0)
        return rc;
    store_sidx_sort(seg);
    seg->sidx_loaded = true;
    if (log->cfg.read_only)
        return 0;
    return store_index_write(log->io, log->dir, seg);
}

/* Plans the entries of this stream that follow the lower bound. Entries of a file are
 * read PLAN_MAX at a time: one pread for the whole run of a stream in a segment. */
static int plan_sealed(store_reader *r, store_segment *seg, uint64_t *version)
{
    uint32_t i, n = store_sidx_count(seg);
    int rc = store_sidx_lower_bound(r->log->io, seg, r->hash, *version, &i);
    store_sidx_entry batch[PLAN_MAX];
    uint32_t got = 0, at = 0;
    for (; rc == 0 && i < n && r->plan_count < PLAN_MAX; i++, at++) {
        if (at == got) {
            uint32_t want = n - i < PLAN_MAX ? n - i : PLAN_MAX;
            rc = store_sidx_get_run(r->log->io, seg, i, want, batch);
            got = want;
            at = 0;
            if (rc)
                break;
        }
        const store_sidx_entry *e = &batch[at];
        if (e->hash != r->hash)
            break;
        r->plan[r->plan_count++] =
            (plan_entry){seg, e->offset, e->version, seg->first_position + e->rel_position};
        if (e->version >= *version)
            *version = e->version + 1;
    }
    return rc;
}

static void plan_active(store_reader *r, store_segment *seg, const store_stream *s,
                        uint64_t version)
{
    uint32_t lo = 0, hi = s->tail_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->tail[mid].version < version)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i < s->tail_count && r->plan_count < PLAN_MAX; i++)
        r->plan[r->plan_count++] =
            (plan_entry){seg, s->tail[i].offset, s->tail[i].version, s->tail[i].position};
}

static int plan_stream(store_reader *r)
{
    store_log *log = r->log;
    int rc = 0;
    r->plan_count = r->plan_next = 0;
    pthread_mutex_lock(&log->mu);
    ev_str name = {r->stream, r->stream_len};
    const store_stream *s = store_streams_find(&log->streams, name, r->hash);
    if (!s || s->version < r->next_version || log->segment_count == 0)
        goto out;
    uint64_t version = r->next_version;
    uint32_t last = log->segment_count - 1;
    for (; r->seg_index < last && r->plan_count < PLAN_MAX; r->seg_index++) {
        store_segment *seg = log->segments[r->seg_index];
        rc = ensure_sidx(log, seg);
        if (rc)
            goto out;
        uint32_t before = r->plan_count;
        rc = plan_sealed(r, seg, &version);
        if (rc)
            goto out;
        if (r->plan_count == PLAN_MAX && r->plan_count > before)
            break; /* this segment may hold more: look at it again next time */
    }
    if (r->seg_index >= last && r->plan_count < PLAN_MAX)
        plan_active(r, log->segments[last], s, version);
out:
    pthread_mutex_unlock(&log->mu);
    return rc;
}

static int next_by_stream(store_reader *r, ev_event *out, sk_error *err)
{
    for (int rounds = 0; rounds < 1000000; rounds++) {
        if (r->plan_next == r->plan_count) {
            int rc = plan_stream(r);
            if (rc)
                return sk_error_set(err, rc, "", "cannot read the stream index: %s",
                                    sk_strerror(rc));
            if (r->plan_count == 0)
                return 0;
        }
        plan_entry *p = &r->plan[r->plan_next++];
        if (p->version < r->next_version)
            continue;
        store_record rec;
        r->at_position = p->position;
        int rc = read_record(r, p->seg, p->offset, atomic_load(&p->seg->size), &rec, err);
        if (rc)
            return rc;
        if (rec.ev.stream_id.len != r->stream_len ||
            memcmp(rec.ev.stream_id.ptr, r->stream, r->stream_len) != 0)
            continue; /* another stream with the same hash */
        if (rec.ev.version != r->next_version)
            return corrupt(r, p->seg, p->offset, "stream index points at the wrong version", err);
        r->next_version++;
        *out = rec.ev;
        return 1;
    }
    return 0;
}

int store_reader_next(store_reader *r, ev_event *out, sk_error *err)
{
    reader_enter(r);
    int rc = r->by_stream ? next_by_stream(r, out, err) : next_by_position(r, out, err);
    reader_leave(r);
    return rc;
}
