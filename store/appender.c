/*
 * appender.c -- group commit: one thread gathers every queued append into one write and
 * one fdatasync, then acknowledges them all.
 *
 * Producers (any thread) encode their records into a request up front, in parallel, and
 * queue it (bounded: a full queue answers SK_EBUSY at once rather than growing). The
 * appender thread takes as many requests as fit in batch_bytes_max and, for each, checks
 * the stream's expected version against the version including earlier appends of the
 * same batch -- so a conditional append is atomic with respect to every other append to
 * that stream without any per-stream lock. It then patches positions, versions and CRCs
 * into the frames, writes the batch with one pwrite, makes it durable with one fdatasync
 * (fsync=always), publishes it to readers and runs the completions.
 *
 * Failure rules:
 *  - ENOSPC (or EDQUOT/EFBIG) while writing: the file is cut back to where the batch
 *    began and the batch's appends fail with that error; nothing of it is acknowledged,
 *    and the log stays writable. If the cut fails too, the log enters FAILED.
 *  - Any other write error, or a failed fdatasync: the log enters FAILED at once and the
 *    batch's appends fail with SK_EFAILED. The fdatasync is never retried.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One event of the batch being written, kept to publish it to the indexes. */
typedef struct batch_entry {
    store_stream *stream;
    uint64_t version;
    uint64_t position;
    uint64_t offset;
} batch_entry;

/* A batch from assembly until its appends are answered. The appender assembles and
 * writes it; the syncer (or the appender itself when nothing is pipelined) makes it
 * durable, publishes it and hands its completions on. Batches are reused through
 * log->pipe_free so their entry arrays are not grown afresh every time. */
struct store_batch {
    struct store_batch *next;
    store_append_req *reqs, *last; /* last: the list's tail, so handing it on walks nothing */
    uint32_t appends;
    size_t frames_size; /* of its appends: what assembly will lay out at most */
    batch_entry *entries;
    size_t entry_count, entry_cap;
    store_segment *seg;     /* where it was written */
    uint64_t offset, bytes; /* bytes 0: nothing to write (conflicts, barriers, a failure) */
    uint64_t epoch;
    int status; /* for appends not yet decided: nonzero fails them */
    uint64_t write_ns, fsync_ns;
    tr_span *span;
};
typedef struct store_batch batch;

static bool valid_event(const ev_event *ev, size_t index, sk_error *err)
{
    const char *field = NULL;
    if (ev->type.len == 0 || ev->type.len > EV_TYPE_MAX)
        field = "type";
    else if (ev->metadata_count > EV_METADATA_MAX)
        field = "metadata";
    else if (ev->payload_size > EV_PAYLOAD_MAX || (ev->payload_size && !ev->payload))
        field = "payload";
    for (uint32_t i = 0; !field && i < ev->metadata_count; i++) {
        const ev_metadata_entry *m = &ev->metadata[i];
        if (m->key.len == 0 || m->key.len > EV_METADATA_KEY_MAX ||
            m->value.len > EV_METADATA_VALUE_MAX)
            field = "metadata";
    }
    if (field)
        sk_error_set(err, SK_EBADINPUT, field, "event %zu: %s is empty or exceeds its limit", index,
                     field);
    return field == NULL;
}

static int check_accepting(store_log *log)
{
    switch (atomic_load(&log->state)) {
    case STORE_STATE_OK:
        return 0;
    case STORE_STATE_FAILED:
        return SK_EFAILED;
    case STORE_STATE_READ_ONLY:
        return SK_EREADONLY;
    default:
        return SK_ECLOSED;
    }
}

/* Builds the request with every frame encoded; fields the appender owns are patched in
 * later. */
static int build_request(store_log *log, ev_str stream_id, const ev_event *events, size_t count,
                         store_append_req **out, sk_error *err)
{
    size_t frames = 0;
    for (size_t i = 0; i < count; i++) {
        if (!valid_event(&events[i], i, err))
            return SK_EBADINPUT;
        ev_event e = events[i];
        e.stream_id = stream_id;
        frames += store_record_size(&e);
    }
    if (frames > log->cfg.batch_bytes_max)
        return sk_error_set(err, SK_ETOOBIG, "events",
                            "the append's %zu bytes exceed one batch (%u bytes)", frames,
                            log->cfg.batch_bytes_max);
    store_append_req *req = malloc(sizeof *req + stream_id.len + 1 + frames);
    if (!req)
        return -ENOMEM;
    memset(req, 0, sizeof *req);
    req->stream_id = (char *)req->data;
    memcpy(req->stream_id, stream_id.ptr, stream_id.len);
    req->stream_id[stream_id.len] = '\0';
    req->stream_len = stream_id.len;
    req->hash = store_stream_hash(stream_id);
    req->frames = req->data + stream_id.len + 1;
    req->frames_size = frames;
    req->count = (uint32_t)count;
    if (count && tr_enabled())
        req->trace = tr_ctx_of_event(&events[0]);
    int64_t now = 0;
    uint8_t *p = req->frames;
    for (size_t i = 0; i < count; i++) {
        ev_event e = events[i];
        e.stream_id = (ev_str){req->stream_id, stream_id.len};
        if (ev_uuid_is_nil(&e.event_id))
            ev_uuid_generate(&e.event_id);
        if (e.occurred_at == 0)
            e.occurred_at = now ? now : (now = ev_now_us());
        e.position = 0;
        e.version = 1;
        store_record_encode(&e, 0, p);
        p += store_get_u32(p) + STORE_FRAME_HEADER_SIZE;
    }
    *out = req;
    return 0;
}

/* Queues req (built) or answers why not; on an error req is freed and cb never runs. */
static int enqueue(store_log *log, store_append_req *req, sk_error *err)
{
    pthread_mutex_lock(&log->q_mu);
    int rc = log->stopping ? SK_ECLOSED : check_accepting(log);
    if (rc == 0 && log->q_count >= log->cfg.queue_appends_max)
        rc = SK_EBUSY;
    if (rc == 0) {
        if (log->q_tail)
            log->q_tail->next = req;
        else
            log->q_head = req;
        log->q_tail = req;
        log->q_count++;
        pthread_cond_signal(&log->q_cond);
    }
    pthread_mutex_unlock(&log->q_mu);
    if (rc) {
        free(req);
        return sk_error_set(err, rc, "", "%s", sk_strerror(rc));
    }
    return 0;
}

static int check_stream_id(ev_str stream_id, sk_error *err)
{
    if (stream_id.len == 0 || stream_id.len > EV_STREAM_ID_MAX || !stream_id.ptr)
        return sk_error_set(err, SK_EBADINPUT, "stream_id", "stream id must be 1 to %d bytes",
                            EV_STREAM_ID_MAX);
    return 0;
}

/* Checks, builds and queues one request (count 0: a barrier). */
static int queue_request(store_log *log, ev_str stream_id, uint64_t expected_version,
                         const ev_event *events, size_t count, store_append_cb cb, void *cb_ctx,
                         sk_error *err)
{
    int rc = check_stream_id(stream_id, err);
    if (rc)
        return rc;
    rc = check_accepting(log);
    if (rc)
        return sk_error_set(err, rc, "", "%s", sk_strerror(rc));
    store_append_req *req;
    rc = build_request(log, stream_id, events, count, &req, err);
    if (rc)
        return rc;
    req->cb = cb;
    req->cb_ctx = cb_ctx;
    req->expected_version = expected_version;
    return enqueue(log, req, err);
}

int store_log_append_async(store_log *log, ev_str stream_id, uint64_t expected_version,
                           const ev_event *events, size_t count, store_append_cb cb, void *cb_ctx,
                           sk_error *err)
{
    SK_ASSERT(log && cb);
    if (count == 0 || count > STORE_APPEND_EVENTS_MAX || !events)
        return sk_error_set(err, SK_EBADINPUT, "events", "an append takes 1 to %d events",
                            STORE_APPEND_EVENTS_MAX);
    return queue_request(log, stream_id, expected_version, events, count, cb, cb_ctx, err);
}

int store_log_barrier_async(store_log *log, ev_str stream_id, uint64_t expected_version,
                            store_append_cb cb, void *cb_ctx, sk_error *err)
{
    SK_ASSERT(log && cb);
    return queue_request(log, stream_id, expected_version, NULL, 0, cb, cb_ctx, err);
}

/* Takes the whole queue in O(1); the appender splits it into batches itself, so the
 * producers' lock is held for a moment, not for a walk of the list. Called with q_mu
 * held. */
static store_append_req *take_queue(store_log *log)
{
    store_append_req *head = log->q_head;
    log->q_head = log->q_tail = NULL;
    log->q_count = 0;
    return head;
}

/* Detaches from *reqs the prefix that fits one batch (at least one request), with its
 * count, its last request and its frames' bytes (the walk is what touches a request
 * first, a cache miss each: nothing after it walks the list again for what it learnt). */
static store_append_req *split_batch(store_log *log, store_append_req **reqs, uint32_t *n_out,
                                     store_append_req **last_out, size_t *bytes_out)
{
    store_append_req *head = *reqs, *last = NULL, *r = head;
    size_t bytes = 0;
    uint32_t n = 0;
    while (r && (n == 0 || bytes + r->frames_size <= log->cfg.batch_bytes_max)) {
        bytes += r->frames_size;
        n++;
        last = r;
        r = r->next;
    }
    if (last)
        last->next = NULL;
    *reqs = r;
    *n_out = n;
    *last_out = last;
    *bytes_out = bytes;
    return head;
}

/* Fails the appends of reqs that are not decided yet; with `all`, every one (a conflict
 * decided against versions of a batch that then failed is no answer either). */
static void fail_results(store_append_req *reqs, int status, bool all)
{
    for (store_append_req *r = reqs; status && r; r = r->next) {
        if (all || r->result.status == 0) {
            r->result.status = status;
            r->result.count = 0;
        }
    }
}

static void complete_all(store_append_req *reqs)
{
    while (reqs) {
        store_append_req *next = reqs->next;
        reqs->cb(reqs->cb_ctx, &reqs->result);
        free(reqs);
        reqs = next;
    }
}

/* Hands answered appends to the completer thread (or completes them here in manual mode,
 * where everything runs inside store_log_commit). Every result is set before, so the order
 * of results never depends on the completer. */
static void finish(store_log *log, store_append_req *reqs, store_append_req *last)
{
    if (!log->completer_running) {
        complete_all(reqs);
        return;
    }
    if (!reqs)
        return;
    pthread_mutex_lock(&log->c_mu);
    if (log->c_tail)
        log->c_tail->next = reqs;
    else
        log->c_head = reqs;
    log->c_tail = last;
    pthread_cond_signal(&log->c_cond);
    pthread_mutex_unlock(&log->c_mu);
}

static void *completer_main(void *arg)
{
    store_log *log = arg;
    pthread_mutex_lock(&log->c_mu);
    for (;;) {
        while (!log->c_head && !log->c_stopping)
            pthread_cond_wait(&log->c_cond, &log->c_mu);
        if (!log->c_head)
            break;
        store_append_req *reqs = log->c_head;
        log->c_head = log->c_tail = NULL;
        pthread_mutex_unlock(&log->c_mu);
        sk_log_hold(); /* the run's log lines (one per command answered) in one write */
        complete_all(reqs);
        sk_log_release();
        pthread_mutex_lock(&log->c_mu);
    }
    pthread_mutex_unlock(&log->c_mu);
    return NULL;
}

void store_appender_fail_queue(store_log *log, int status)
{
    pthread_mutex_lock(&log->q_mu);
    store_append_req *reqs = log->q_head;
    log->q_head = log->q_tail = NULL;
    log->q_count = 0;
    pthread_mutex_unlock(&log->q_mu);
    fail_results(reqs, status, false);
    complete_all(reqs);
}

/* ---------------------------------------------------------------------------------------
 * Batches and the pipeline.
 */
static batch *batch_get(store_log *log)
{
    pthread_mutex_lock(&log->pipe_mu);
    batch *b = log->pipe_free;
    if (b)
        log->pipe_free = b->next;
    pthread_mutex_unlock(&log->pipe_mu);
    if (!b)
        return calloc(1, sizeof *b);
    batch_entry *entries = b->entries;
    size_t cap = b->entry_cap;
    memset(b, 0, sizeof *b);
    b->entries = entries;
    b->entry_cap = cap;
    return b;
}

static void batch_put(store_log *log, batch *b)
{
    pthread_mutex_lock(&log->pipe_mu);
    b->next = log->pipe_free;
    log->pipe_free = b;
    pthread_mutex_unlock(&log->pipe_mu);
}

void store_appender_free(store_log *log)
{
    while (log->pipe_free) {
        batch *b = log->pipe_free;
        log->pipe_free = b->next;
        free(b->entries);
        free(b);
    }
}

/* Waits until every batch handed to the syncer is settled (appender thread). */
static void pipe_drain(store_log *log)
{
    pthread_mutex_lock(&log->pipe_mu);
    while (log->pipe_count > 0)
        pthread_cond_wait(&log->pipe_done, &log->pipe_mu);
    pthread_mutex_unlock(&log->pipe_mu);
}

/* The active segment, and where in it the next batch goes: after the batches in flight,
 * or where the published log ends once nothing is in flight (at start, after a roll or a
 * failure). */
static store_segment *write_position(store_log *log)
{
    store_segment *seg = log->segments[log->segment_count - 1];
    if (!log->wr_valid) {
        pipe_drain(log);
        log->wr_offset = atomic_load(&seg->size);
        log->wr_next = atomic_load(&seg->next_position);
        log->wr_valid = true;
    }
    return seg;
}

static int push_entry(batch *b, store_stream *s, uint64_t version, uint64_t position,
                      uint64_t offset)
{
    if (b->entry_count == b->entry_cap) {
        size_t ncap = b->entry_cap ? b->entry_cap * 2 : 1024;
        batch_entry *n = realloc(b->entries, ncap * sizeof *n);
        if (!n)
            return -ENOMEM;
        b->entries = n;
        b->entry_cap = ncap;
    }
    b->entries[b->entry_count++] = (batch_entry){s, version, position, offset};
    return 0;
}

static store_stream *stream_for(store_log *log, const store_append_req *req)
{
    ev_str name = {req->stream_id, req->stream_len};
    /* The appender is the table's only writer, so it may look up without the lock;
     * inserting can rehash, which readers must not see half done. */
    store_stream *s = store_streams_find(&log->streams, name, req->hash);
    if (s)
        return s;
    pthread_mutex_lock(&log->mu);
    s = store_streams_get(&log->streams, name, req->hash);
    pthread_mutex_unlock(&log->mu);
    return s;
}

/* The stream's version and last position as the appends assembled so far leave it: its
 * pending values while a batch holding it is not settled, else the published ones. (Once
 * settled_epoch covers a stream's last batch the syncer writes nothing of it until the
 * appender assembles it again, and the atomic orders those writes before this read.) */
static uint64_t stream_now(const store_log *log, const store_stream *s, uint64_t *last_position)
{
    if (s->pending_epoch > atomic_load(&log->settled_epoch)) {
        *last_position = s->pending_last_position;
        return s->pending_version;
    }
    *last_position = s->last_position;
    return s->version;
}

/* A barrier's result: the stream as the appends before it leave it. It looks the stream
 * up without adding it: a barrier makes no stream exist. */
static void barrier_result(store_log *log, store_append_req *r)
{
    const store_stream *s =
        store_streams_find(&log->streams, (ev_str){r->stream_id, r->stream_len}, r->hash);
    uint64_t cur = 0, last = 0;
    if (s)
        cur = stream_now(log, s, &last);
    if (r->expected_version != STORE_EXPECT_ANY && r->expected_version != cur)
        r->result = (store_append_result){.status = SK_ECONFLICT, .stream_version = cur};
    else
        r->result = (store_append_result){.stream_version = cur, .last_position = last};
}

/* Lays one append's frames out at log->batch_buf + *used, sealed with their positions
 * and versions, or answers SK_ECONFLICT when its expected version does not match. */
static int assemble_one(store_log *log, batch *b, store_append_req *r, uint64_t first_position,
                        uint64_t *position, uint64_t offset, size_t *used)
{
    if (r->count == 0) {
        barrier_result(log, r);
        return 0;
    }
    store_stream *s = stream_for(log, r);
    if (!s)
        return -ENOMEM;
    uint64_t last;
    uint64_t cur = stream_now(log, s, &last);
    if (r->expected_version != STORE_EXPECT_ANY && r->expected_version != cur) {
        r->result = (store_append_result){.status = SK_ECONFLICT, .stream_version = cur};
        return 0;
    }
    r->result = (store_append_result){.first_position = *position,
                                      .first_version = cur + 1,
                                      .count = r->count,
                                      .stream_version = cur + r->count,
                                      .last_position = *position + r->count - 1};
    uint8_t *src = r->frames;
    for (uint32_t i = 0; i < r->count; i++) {
        size_t fsize = store_get_u32(src) + STORE_FRAME_HEADER_SIZE;
        uint8_t flags = i + 1 == r->count ? STORE_FLAG_APPEND_END : 0;
        store_record_seal(src, *position, cur + 1 + i, (uint32_t)(*position - first_position),
                          flags);
        memcpy(log->batch_buf + *used, src, fsize);
        int rc = push_entry(b, s, cur + 1 + i, *position, offset + *used);
        if (rc)
            return rc;
        *used += fsize;
        src += fsize;
        (*position)++;
    }
    s->pending_version = cur + r->count;
    s->pending_last_position = *position - 1;
    s->pending_epoch = b->epoch;
    return 0;
}

/*
 * Assigns positions and versions and lays the frames out in log->batch_buf. Appends whose
 * expected version does not match get SK_ECONFLICT and take no room. Returns the number
 * of bytes to write, or a negative error.
 */
static ssize_t assemble(store_log *log, batch *b, uint64_t first_position, uint64_t offset)
{
    size_t need = b->frames_size;
    if (need > log->batch_cap) {
        uint8_t *n = realloc(log->batch_buf, need);
        if (!n)
            return -ENOMEM;
        log->batch_buf = n;
        log->batch_cap = need;
    }
    uint64_t position = first_position;
    size_t used = 0;
    for (store_append_req *r = b->reqs; r; r = r->next) {
        int rc = assemble_one(log, b, r, first_position, &position, offset, &used);
        if (rc)
            return rc;
    }
    return (ssize_t)used;
}

/* Makes a written batch readable by position: its bytes, then the head. Position readers
 * need no more than this (they read forward from where they are, bounded by the segment's
 * size, and an index entry that is not there yet only means a longer skip), so
 * subscribers are woken before the indexes below are updated. */
static void publish_head(store_log *log, store_segment *seg, uint64_t end_offset,
                         uint64_t next_position)
{
    atomic_store(&seg->size, end_offset);
    atomic_store(&seg->next_position, next_position);
    atomic_store(&log->head, next_position);
}

/* Indexes a published batch: the sparse position index, the stream tails and versions
 * (for stream readers and later conditional appends). Completions run after this, so a
 * client that got its answer reads its events by stream. */
static int publish_indexes(store_log *log, store_segment *seg, const batch *b)
{
    int rc = 0;
    pthread_mutex_lock(&log->mu);
    for (size_t i = 0; i < b->entry_count && rc == 0; i++) {
        const batch_entry *e = &b->entries[i];
        rc = store_index_push(seg, e->position, e->offset, log->cfg.index_interval_bytes);
        if (rc == 0)
            rc = store_stream_tail_push(&log->streams, e->stream, e->version, e->position,
                                        e->offset);
        e->stream->version = e->version;
        e->stream->last_position = e->position;
    }
    pthread_mutex_unlock(&log->mu);
    return rc;
}

static bool is_space_error(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG;
}

static void notify_observer(store_log *log, const store_batch_stats *st)
{
    pthread_mutex_lock(&log->q_mu);
    store_batch_cb cb = log->batch_cb;
    void *ctx = log->batch_cb_ctx;
    pthread_mutex_unlock(&log->q_mu);
    if (cb)
        cb(ctx, st);
}

/* Answers a batch and lets it go (after it was published, or failed). */
static void batch_done(store_log *log, batch *b)
{
    atomic_store(&log->settled_epoch, b->epoch);
    store_trace_commit_end(b->span, b->entry_count, b->bytes, b->write_ns, b->fsync_ns);
    finish(log, b->reqs, b->last);
    batch_put(log, b);
}

/* Publishes a durable (or, in the other fsync modes, written) batch. */
static void publish_batch(store_log *log, batch *b)
{
    uint64_t next = b->entries[b->entry_count - 1].position + 1;
    publish_head(log, b->seg, b->offset + b->bytes, next);
    /* always: synced before; never: subscribers follow the written head. */
    if (log->cfg.fsync_mode != STORE_FSYNC_INTERVAL)
        store_log_durable_advance(log, next);
    if (publish_indexes(log, b->seg, b) != 0) {
        /* The bytes are durable but the indexes could not grow: stream readers would
         * miss them, so stop here and let recovery rebuild from the file. */
        store_log_set_failed(log, "out of memory indexing a batch", -ENOMEM);
    }
}

/* The last batch of the group that wrote something, or NULL. */
static batch *last_written(batch *group)
{
    batch *last = NULL;
    for (batch *b = group; b; b = b->next)
        if (b->bytes)
            last = b;
    return last;
}

/*
 * Settles a group of written batches, in order: one fdatasync for all of them (they are
 * all in the active segment, since a roll waits for the pipeline to empty, and all were
 * written before it starts), then each is published and answered. Runs on the syncer
 * thread, or on the appender's own when nothing is pipelined.
 */
static void settle_group(store_log *log, batch *group)
{
    batch *last = last_written(group);
    int failed = check_accepting(log) ? SK_EFAILED : 0;
    uint64_t fsync_ns = 0;
    if (!failed && last && log->cfg.fsync_mode == STORE_FSYNC_ALWAYS) {
        uint64_t t0 = store_now_ns();
        int rc = log->io->fdatasync(log->io->ctx, last->seg->fd);
        atomic_fetch_add(&log->stat_fsyncs, 1);
        log->last_fsync_ns = store_now_ns();
        fsync_ns = log->last_fsync_ns - t0;
        if (rc != 0) {
            store_log_set_failed(log, "fdatasync failed", rc);
            failed = SK_EFAILED;
        } else {
            last->seg->durable_size = last->offset + last->bytes;
        }
    } else if (!failed && last) {
        log->unsynced = true;
    }
    store_batch_stats st = {.fsync_ns = fsync_ns};
    while (group) {
        batch *b = group;
        group = b->next;
        if (failed) {
            fail_results(b->reqs, failed, true);
        } else if (b->bytes) {
            b->fsync_ns = fsync_ns;
            publish_batch(log, b);
            st.appends += b->appends;
            st.events += (uint32_t)b->entry_count;
            st.bytes += b->bytes;
            st.write_ns += b->write_ns;
        }
        batch_done(log, b);
    }
    if (st.bytes) {
        atomic_fetch_add(&log->stat_batches, 1);
        atomic_fetch_add(&log->stat_batch_events, st.events);
        notify_observer(log, &st);
    }
}

/* Hands a written batch on, in order: to the syncer, or settles it here. The pipeline
 * holds a few batches at most, so a slow disk holds the appender back rather than
 * memory growing. */
#define PIPE_DEPTH_MAX 4

static void hand_on(store_log *log, batch *b)
{
    b->next = NULL;
    if (!log->syncer_running) {
        settle_group(log, b);
        return;
    }
    pthread_mutex_lock(&log->pipe_mu);
    if (log->pipe_tail)
        log->pipe_tail->next = b;
    else
        log->pipe_head = b;
    log->pipe_tail = b;
    log->pipe_count++;
    pthread_cond_signal(&log->pipe_cond);
    while (log->pipe_count >= PIPE_DEPTH_MAX)
        pthread_cond_wait(&log->pipe_done, &log->pipe_mu);
    pthread_mutex_unlock(&log->pipe_mu);
}

/* A batch that failed on the appender's side. What was assembled before it is answered
 * first; then its own pending versions are dropped (settled without effect) and the next
 * batch starts where the published log ends. */
static void fail_batch(store_log *log, batch *b, int status)
{
    pipe_drain(log);
    fail_results(b->reqs, status, false);
    log->wr_valid = false;
    batch_done(log, b);
}

/* Cuts back whatever part of a failed write reached the file, and makes the cut durable
 * before answering: the appends are reported as failed, so a crash must not bring a whole
 * one of them back. Returns the status for the batch's appends. */
static int undo_write(store_log *log, const batch *b, int rc)
{
    int cut = log->io->ftruncate(log->io->ctx, b->seg->fd, b->offset);
    if (cut == 0 && is_space_error(rc))
        cut = log->io->fdatasync(log->io->ctx, b->seg->fd);
    if (is_space_error(rc) && cut == 0)
        return rc;
    store_log_set_failed(log, "write failed", rc);
    return SK_EFAILED;
}

/* Starts a new segment once the active one is full; the pipeline empties first, so
 * everything in the old segment is published. */
static int roll_if_full(store_log *log, store_segment **seg)
{
    if (log->wr_offset < log->cfg.segment_bytes_max || log->wr_next <= (*seg)->first_position)
        return 0;
    pipe_drain(log);
    int rc = store_log_roll(log);
    if (rc != 0) {
        store_log_set_failed(log, "cannot start a new segment", rc);
        return SK_EFAILED;
    }
    log->wr_valid = false;
    *seg = write_position(log);
    return 0;
}

/* Assembles and writes one batch (appender thread), then hands it on. Returns the bytes
 * written (0 when nothing was, or it failed). */
static uint64_t write_batch(store_log *log, batch *b)
{
    int rc = check_accepting(log);
    store_segment *seg = NULL;
    if (rc == 0) {
        seg = write_position(log);
        rc = roll_if_full(log, &seg);
    }
    if (rc != 0) {
        fail_batch(log, b, rc);
        return 0;
    }
    b->seg = seg;
    b->offset = log->wr_offset;
    b->epoch = ++log->batch_epoch;
    ssize_t len = assemble(log, b, log->wr_next, log->wr_offset);
    if (len <= 0) {
        if (len < 0)
            fail_batch(log, b, (int)len);
        else
            hand_on(log, b); /* conflicts and barriers only: answered in order */
        return 0;
    }
    uint64_t t0 = store_now_ns();
    rc = store_io_write_all(log->io, seg->fd, log->batch_buf, (size_t)len, b->offset, NULL);
    b->write_ns = store_now_ns() - t0;
    if (rc != 0) {
        fail_batch(log, b, undo_write(log, b, rc));
        return 0;
    }
    b->bytes = (uint64_t)len;
    log->wr_offset += b->bytes;
    log->wr_next += b->entry_count;
    hand_on(log, b); /* b may be settled and reused from here on */
    return (uint64_t)len;
}

/* fsync=interval: the periodic fdatasync. A failure is as sticky as in always mode. */
static void sync_if_due(store_log *log, bool force)
{
    if (!log->unsynced || log->cfg.fsync_mode == STORE_FSYNC_ALWAYS)
        return;
    /* never retry a failed fdatasync: a success now would vouch for lost pages */
    if (atomic_load(&log->state) != STORE_STATE_OK)
        return;
    if (log->cfg.fsync_mode == STORE_FSYNC_NEVER && !force)
        return;
    uint64_t now = store_now_ns();
    if (!force && now - log->last_fsync_ns < (uint64_t)log->cfg.fsync_interval_ms * 1000000u)
        return;
    store_segment *seg = log->segments[log->segment_count - 1];
    uint64_t size = seg->size, head = atomic_load(&log->head);
    int rc = log->io->fdatasync(log->io->ctx, seg->fd);
    atomic_fetch_add(&log->stat_fsyncs, 1);
    if (rc != 0) {
        store_log_set_failed(log, "periodic fdatasync failed", rc);
        return;
    }
    seg->durable_size = size;
    log->unsynced = false;
    log->last_fsync_ns = now;
    if (log->cfg.fsync_mode == STORE_FSYNC_INTERVAL)
        store_log_durable_advance(log, head);
}

/* Writes everything in reqs, one batch at a time. Returns the appends handled; *bytes
 * (when not NULL) gets the bytes written. */
static int run_all(store_log *log, store_append_req *reqs, uint64_t *bytes)
{
    int total = 0;
    uint64_t written = 0;
    while (reqs) {
        uint32_t n = 0;
        store_append_req *last = NULL;
        size_t frames_size = 0;
        store_append_req *head = split_batch(log, &reqs, &n, &last, &frames_size);
        total += (int)n;
        batch *b = batch_get(log);
        if (!b) {
            pipe_drain(log);
            fail_results(head, -ENOMEM, false);
            finish(log, head, last);
            continue;
        }
        b->reqs = head;
        b->last = last;
        b->appends = n;
        b->frames_size = frames_size;
        b->epoch = log->batch_epoch; /* until assembly gives it its own */
        b->span = store_trace_commit_begin(head, n);
        written += write_batch(log, b);
    }
    if (bytes)
        *bytes = written;
    return total;
}

static void *syncer_main(void *arg)
{
    store_log *log = arg;
    pthread_mutex_lock(&log->pipe_mu);
    for (;;) {
        while (!log->pipe_head && !log->pipe_stopping)
            pthread_cond_wait(&log->pipe_cond, &log->pipe_mu);
        if (!log->pipe_head)
            break;
        batch *group = log->pipe_head;
        uint32_t n = 0;
        for (batch *b = group; b; b = b->next)
            n++;
        log->pipe_head = log->pipe_tail = NULL;
        pthread_mutex_unlock(&log->pipe_mu);
        settle_group(log, group);
        pthread_mutex_lock(&log->pipe_mu);
        log->pipe_count -= n;
        pthread_cond_broadcast(&log->pipe_done);
    }
    pthread_mutex_unlock(&log->pipe_mu);
    return NULL;
}

/* After a round that wrote less than this, the appender waits for the syncer before it
 * takes the queue again. Writing a few kilobytes costs less than what overlapping it with
 * the fdatasync costs: each append queued meanwhile would wake the appender (a futex call
 * on the producer's thread, which for commands is the HTTP thread) for a pwrite of its
 * own. Waiting gathers everything that arrives during the sync into the next write. Large
 * rounds (bulk appends) keep the overlap, which is worth more than the wake-ups there. */
#define SMALL_ROUND_BYTES ((uint64_t)64 * 1024)

static void *appender_main(void *arg)
{
    store_log *log = arg;
    pthread_mutex_lock(&log->q_mu);
    for (;;) {
        while (!log->q_head && !log->stopping) {
            if (log->unsynced && log->cfg.fsync_mode == STORE_FSYNC_INTERVAL) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += (long)log->cfg.fsync_interval_ms * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&log->q_cond, &log->q_mu, &ts);
                pthread_mutex_unlock(&log->q_mu);
                sync_if_due(log, false);
                pthread_mutex_lock(&log->q_mu);
            } else {
                pthread_cond_wait(&log->q_cond, &log->q_mu);
            }
        }
        if (!log->q_head && log->stopping)
            break;
        store_append_req *reqs = take_queue(log);
        pthread_mutex_unlock(&log->q_mu);
        uint64_t written;
        run_all(log, reqs, &written);
        sync_if_due(log, false);
        if (log->syncer_running && written < SMALL_ROUND_BYTES)
            pipe_drain(log);
        pthread_mutex_lock(&log->q_mu);
    }
    pthread_mutex_unlock(&log->q_mu);
    return NULL;
}

static void syncer_stop(store_log *log)
{
    if (!log->syncer_running)
        return;
    pthread_mutex_lock(&log->pipe_mu);
    log->pipe_stopping = true;
    pthread_cond_broadcast(&log->pipe_cond);
    pthread_mutex_unlock(&log->pipe_mu);
    pthread_join(log->syncer, NULL); /* it settles what was handed to it first */
    log->syncer_running = false;
}

/* Only fsync=always has an fdatasync worth overlapping with the next write. */
static int syncer_start(store_log *log)
{
    if (log->cfg.fsync_mode != STORE_FSYNC_ALWAYS)
        return 0;
    log->pipe_stopping = false;
    int rc = pthread_create(&log->syncer, NULL, syncer_main, log);
    if (rc != 0)
        return -rc;
    log->syncer_running = true;
    return 0;
}

int store_appender_start(store_log *log)
{
    pthread_mutex_lock(&log->q_mu);
    log->stopping = false;
    pthread_mutex_unlock(&log->q_mu);
    /* Whatever was assembled before (a recovery reloaded the streams) is settled. */
    atomic_store(&log->settled_epoch, log->batch_epoch);
    log->wr_valid = false;
    if (log->cfg.manual_commit)
        return 0;
    log->c_stopping = false;
    int rc = pthread_create(&log->completer, NULL, completer_main, log);
    if (rc != 0)
        return -rc;
    log->completer_running = true;
    rc = syncer_start(log);
    if (rc == 0) {
        rc = pthread_create(&log->appender, NULL, appender_main, log);
        rc = -rc;
    }
    if (rc != 0) {
        syncer_stop(log);
        store_completer_stop(log);
        return rc;
    }
    log->appender_running = true;
    return 0;
}

void store_completer_stop(store_log *log)
{
    if (!log->completer_running)
        return;
    pthread_mutex_lock(&log->c_mu);
    log->c_stopping = true;
    pthread_cond_broadcast(&log->c_cond);
    pthread_mutex_unlock(&log->c_mu);
    pthread_join(log->completer, NULL); /* it drains what was handed to it first */
    log->completer_running = false;
}

void store_appender_stop(store_log *log)
{
    pthread_mutex_lock(&log->q_mu);
    log->stopping = true;
    pthread_cond_broadcast(&log->q_cond);
    pthread_mutex_unlock(&log->q_mu);
    if (log->appender_running) {
        pthread_join(log->appender, NULL);
        log->appender_running = false;
    }
    syncer_stop(log);
    store_completer_stop(log);
    store_seal_wait(log);
    if (atomic_load(&log->state) == STORE_STATE_OK && log->segment_count > 0)
        sync_if_due(log, true);
}

int store_appender_commit(store_log *log)
{
    int total = 0;
    for (;;) {
        pthread_mutex_lock(&log->q_mu);
        store_append_req *reqs = take_queue(log);
        pthread_mutex_unlock(&log->q_mu);
        if (!reqs)
            break;
        total += run_all(log, reqs, NULL);
    }
    sync_if_due(log, false);
    return total;
}

int store_log_commit(store_log *log)
{
    SK_ASSERT(log->cfg.manual_commit);
    return store_appender_commit(log);
}

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    store_append_result res;
} waiter;

static void wake_waiter(void *ctx, const store_append_result *res)
{
    waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->res = *res;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

int store_log_append(store_log *log, ev_str stream_id, uint64_t expected_version,
                     const ev_event *events, size_t count, store_append_result *out, sk_error *err)
{
    waiter w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    int rc = store_log_append_async(log, stream_id, expected_version, events, count, wake_waiter,
                                    &w, err);
    if (rc == 0 && log->cfg.manual_commit)
        store_appender_commit(log);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.res.status;
        if (out)
            *out = w.res;
        if (rc != 0 && rc != SK_ECONFLICT)
            sk_error_set(err, rc, "", "append failed: %s", sk_strerror(rc));
        else if (rc == SK_ECONFLICT)
            sk_error_set(err, rc, "expected_version",
                         "expected version %llu but the stream is at version %llu",
                         (unsigned long long)expected_version,
                         (unsigned long long)w.res.stream_version);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.mu);
    return rc;
}
