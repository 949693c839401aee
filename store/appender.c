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

typedef struct batch {
    store_append_req *reqs;
    uint32_t appends;
    batch_entry *entries;
    size_t entry_count, entry_cap;
    uint64_t bytes, write_ns, fsync_ns; /* of the last commit, for its span */
} batch;

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

/* Detaches from *reqs the prefix that fits one batch (at least one request). */
static store_append_req *split_batch(store_log *log, store_append_req **reqs, uint32_t *n_out)
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
    return head;
}

static void complete_all(store_append_req *reqs, int status_for_pending)
{
    while (reqs) {
        store_append_req *next = reqs->next;
        if (status_for_pending && reqs->result.status == 0) {
            reqs->result.status = status_for_pending;
            reqs->result.count = 0;
        }
        reqs->cb(reqs->cb_ctx, &reqs->result);
        free(reqs);
        reqs = next;
    }
}

/* Hands a finished batch to the completer thread (or completes it here in manual mode,
 * where everything runs inside store_log_commit). The status of appends not yet decided
 * is set now, so the order of results never depends on the completer. */
static void finish(store_log *log, store_append_req *reqs, int status_for_pending)
{
    if (!log->completer_running) {
        complete_all(reqs, status_for_pending);
        return;
    }
    store_append_req *last = NULL;
    for (store_append_req *r = reqs; r; r = r->next) {
        if (status_for_pending && r->result.status == 0) {
            r->result.status = status_for_pending;
            r->result.count = 0;
        }
        last = r;
    }
    if (!last)
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
        complete_all(reqs, 0);
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
    complete_all(reqs, status);
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

/* A barrier's result: the stream as the appends before it in this batch leave it. It
 * looks the stream up without adding it: a barrier makes no stream exist. */
static void barrier_result(store_log *log, store_append_req *r, uint64_t epoch)
{
    const store_stream *s =
        store_streams_find(&log->streams, (ev_str){r->stream_id, r->stream_len}, r->hash);
    uint64_t cur = 0, last = 0;
    if (s && s->pending_epoch == epoch) {
        cur = s->pending_version;
        last = s->pending_last_position;
    } else if (s) {
        cur = s->version;
        last = s->last_position;
    }
    if (r->expected_version != STORE_EXPECT_ANY && r->expected_version != cur)
        r->result = (store_append_result){.status = SK_ECONFLICT, .stream_version = cur};
    else
        r->result = (store_append_result){.stream_version = cur, .last_position = last};
}

/*
 * Assigns positions and versions and lays the frames out in log->batch_buf. Appends whose
 * expected version does not match get SK_ECONFLICT and take no room. Returns the number
 * of bytes to write, or a negative error.
 */
static ssize_t assemble(store_log *log, batch *b, uint64_t first_position, uint64_t offset)
{
    size_t need = 0;
    for (store_append_req *r = b->reqs; r; r = r->next)
        need += r->frames_size;
    if (need > log->batch_cap) {
        uint8_t *n = realloc(log->batch_buf, need);
        if (!n)
            return -ENOMEM;
        log->batch_buf = n;
        log->batch_cap = need;
    }
    uint64_t epoch = ++log->batch_epoch, position = first_position;
    size_t used = 0;
    for (store_append_req *r = b->reqs; r; r = r->next) {
        if (r->count == 0) {
            barrier_result(log, r, epoch);
            continue;
        }
        store_stream *s = stream_for(log, r);
        if (!s)
            return -ENOMEM;
        uint64_t cur = s->pending_epoch == epoch ? s->pending_version : s->version;
        if (r->expected_version != STORE_EXPECT_ANY && r->expected_version != cur) {
            r->result = (store_append_result){.status = SK_ECONFLICT, .stream_version = cur};
            continue;
        }
        r->result = (store_append_result){.first_position = position,
                                          .first_version = cur + 1,
                                          .count = r->count,
                                          .stream_version = cur + r->count,
                                          .last_position = position + r->count - 1};
        uint8_t *src = r->frames;
        for (uint32_t i = 0; i < r->count; i++) {
            size_t fsize = store_get_u32(src) + STORE_FRAME_HEADER_SIZE;
            uint8_t flags = i + 1 == r->count ? STORE_FLAG_APPEND_END : 0;
            store_record_seal(src, position, cur + 1 + i, (uint32_t)(position - first_position),
                              flags);
            memcpy(log->batch_buf + used, src, fsize);
            int rc = push_entry(b, s, cur + 1 + i, position, offset + used);
            if (rc)
                return rc;
            used += fsize;
            src += fsize;
            position++;
        }
        s->pending_version = cur + r->count;
        s->pending_last_position = position - 1;
        s->pending_epoch = epoch;
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

static void notify_observer(store_log *log, const batch *b, uint64_t bytes, uint64_t write_ns,
                            uint64_t fsync_ns)
{
    pthread_mutex_lock(&log->q_mu);
    store_batch_cb cb = log->batch_cb;
    void *ctx = log->batch_cb_ctx;
    pthread_mutex_unlock(&log->q_mu);
    if (!cb)
        return;
    store_batch_stats st = {.appends = b->appends,
                            .events = (uint32_t)b->entry_count,
                            .bytes = bytes,
                            .write_ns = write_ns,
                            .fsync_ns = fsync_ns};
    cb(ctx, &st);
}

/* Writes, syncs and publishes one batch, then completes its appends. */
static void commit_batch(store_log *log, batch *b)
{
    int rc = check_accepting(log);
    if (rc != 0) {
        finish(log, b->reqs, rc);
        return;
    }
    store_segment *seg = log->segments[log->segment_count - 1];
    if (seg->size >= log->cfg.segment_bytes_max && seg->next_position > seg->first_position) {
        rc = store_log_roll(log);
        if (rc != 0) {
            store_log_set_failed(log, "cannot start a new segment", rc);
            finish(log, b->reqs, SK_EFAILED);
            return;
        }
        seg = log->segments[log->segment_count - 1];
    }
    uint64_t offset = seg->size, first = seg->next_position;
    b->entry_count = 0;
    ssize_t len = assemble(log, b, first, offset);
    if (len < 0) {
        finish(log, b->reqs, (int)len);
        return;
    }
    if (len == 0) {
        finish(log, b->reqs, 0);
        return;
    }
    uint64_t t0 = store_now_ns(), t1, t2;
    rc = store_io_write_all(log->io, seg->fd, log->batch_buf, (size_t)len, offset, NULL);
    t1 = store_now_ns();
    if (rc != 0) {
        /* Cut back whatever part of the batch reached the file, and make the cut durable
         * before answering: the appends are reported as failed, so a crash must not bring
         * a whole one of them back. */
        int cut = log->io->ftruncate(log->io->ctx, seg->fd, offset);
        if (cut == 0 && is_space_error(rc))
            cut = log->io->fdatasync(log->io->ctx, seg->fd);
        if (is_space_error(rc) && cut == 0) {
            finish(log, b->reqs, rc);
            return;
        }
        store_log_set_failed(log, "write failed", rc);
        finish(log, b->reqs, SK_EFAILED);
        return;
    }
    if (log->cfg.fsync_mode == STORE_FSYNC_ALWAYS) {
        rc = log->io->fdatasync(log->io->ctx, seg->fd);
        atomic_fetch_add(&log->stat_fsyncs, 1);
        if (rc != 0) {
            store_log_set_failed(log, "fdatasync failed", rc);
            finish(log, b->reqs, SK_EFAILED);
            return;
        }
        seg->durable_size = offset + (uint64_t)len;
        log->last_fsync_ns = store_now_ns();
    } else {
        log->unsynced = true;
    }
    t2 = store_now_ns();
    uint64_t next = first + b->entry_count;
    publish_head(log, seg, offset + (uint64_t)len, next);
    /* always: synced above; never: subscribers follow the written head. */
    if (log->cfg.fsync_mode != STORE_FSYNC_INTERVAL)
        store_log_durable_advance(log, next);
    rc = publish_indexes(log, seg, b);
    if (rc != 0) {
        /* The bytes are durable but the indexes could not grow: stream readers would
         * miss them, so stop here and let recovery rebuild from the file. */
        store_log_set_failed(log, "out of memory indexing a batch", rc);
    }
    atomic_fetch_add(&log->stat_batches, 1);
    atomic_fetch_add(&log->stat_batch_events, b->entry_count);
    b->bytes = (uint64_t)len;
    b->write_ns = t1 - t0;
    b->fsync_ns = log->cfg.fsync_mode == STORE_FSYNC_ALWAYS ? t2 - t1 : 0;
    notify_observer(log, b, b->bytes, b->write_ns, b->fsync_ns);
    finish(log, b->reqs, 0);
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

/* Commits everything in reqs, one batch at a time. Returns the appends completed. */
static int run_all(store_log *log, store_append_req *reqs)
{
    int total = 0;
    batch b = {0};
    while (reqs) {
        b.reqs = split_batch(log, &reqs, &b.appends);
        b.bytes = b.write_ns = b.fsync_ns = 0;
        b.entry_count = 0;
        tr_span *span = store_trace_commit_begin(b.reqs, b.appends);
        commit_batch(log, &b);
        store_trace_commit_end(span, b.entry_count, b.bytes, b.write_ns, b.fsync_ns);
        total += (int)b.appends;
    }
    free(b.entries);
    return total;
}

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
        run_all(log, reqs);
        sync_if_due(log, false);
        pthread_mutex_lock(&log->q_mu);
    }
    pthread_mutex_unlock(&log->q_mu);
    return NULL;
}

int store_appender_start(store_log *log)
{
    pthread_mutex_lock(&log->q_mu);
    log->stopping = false;
    pthread_mutex_unlock(&log->q_mu);
    if (log->cfg.manual_commit)
        return 0;
    log->c_stopping = false;
    int rc = pthread_create(&log->completer, NULL, completer_main, log);
    if (rc != 0)
        return -rc;
    log->completer_running = true;
    rc = pthread_create(&log->appender, NULL, appender_main, log);
    if (rc != 0) {
        store_completer_stop(log);
        return -rc;
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
    store_completer_stop(log);
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
        total += run_all(log, reqs);
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
