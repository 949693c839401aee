/*
 * log.c -- the store_log object: configuration, open and close, state, and the accessors
 * other layers use (head, stream versions, statistics, segment listing).
 *
 * States:  OK --(fdatasync or write failed)--> FAILED --(store_log_recover)--> OK
 *          OK --(store_log_close)--> CLOSING;  READ_ONLY is fixed at open.
 * In FAILED the log refuses appends: the kernel may have dropped the pages a failed
 * fdatasync covered, so retrying it could report success for data that is gone (the
 * reason SQLite's pager and Redis's AOF treat such failures as sticky).
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void store_assert_fail(const char *cond, const char *file, int line)
{
    char at[32];
    snprintf(at, sizeof at, "%d", line);
    sk_log(SK_LOG_FATAL, "store", "assertion failed", "condition", cond, "file", file, "line", at,
           SK_LOG_END);
    abort();
}

uint64_t store_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void store_config_init(store_config *cfg, const char *dir)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->dir = dir;
    cfg->fsync_mode = STORE_FSYNC_ALWAYS;
    cfg->fsync_interval_ms = 10;
    cfg->segment_bytes_max = 64ull << 20;
    cfg->index_interval_bytes = 4096;
    cfg->batch_bytes_max = 4u << 20;
    cfg->queue_appends_max = 65536;
}

int store_fsync_mode_parse(const char *text, store_fsync_mode *out)
{
    static const char *names[] = {"always", "interval", "never"};
    for (int i = 0; i < 3; i++) {
        if (text && strcmp(text, names[i]) == 0) {
            *out = (store_fsync_mode)i;
            return 0;
        }
    }
    return SK_EBADINPUT;
}

const char *store_fsync_mode_name(store_fsync_mode mode)
{
    switch (mode) {
    case STORE_FSYNC_ALWAYS:
        return "always";
    case STORE_FSYNC_INTERVAL:
        return "interval";
    case STORE_FSYNC_NEVER:
        return "never";
    }
    return "unknown";
}

static int check_config(const store_config *cfg, sk_error *err)
{
    if (!cfg->dir || !cfg->dir[0])
        return sk_error_set(err, SK_EBADINPUT, "dir", "the log directory is not set");
    if (cfg->segment_bytes_max < 1024 ||
        cfg->segment_bytes_max > (1ull << 32) - STORE_RECORD_MAX - cfg->batch_bytes_max)
        return sk_error_set(err, SK_EBADINPUT, "segment_bytes_max",
                            "segment size must be between 1 KiB and 4 GiB minus a batch");
    if (cfg->batch_bytes_max < STORE_RECORD_MAX || cfg->batch_bytes_max > (256u << 20))
        return sk_error_set(err, SK_EBADINPUT, "batch_bytes_max",
                            "batch size must be between 2 MiB and 256 MiB");
    if (cfg->index_interval_bytes == 0 || cfg->queue_appends_max == 0)
        return sk_error_set(err, SK_EBADINPUT, "index_interval_bytes",
                            "index interval and queue size must be positive");
    if (cfg->fsync_mode > STORE_FSYNC_NEVER)
        return sk_error_set(err, SK_EBADINPUT, "fsync_mode", "unknown fsync mode");
    return 0;
}

/* Frees everything the log holds; the appender must be stopped. */
static void log_free(store_log *log)
{
    SK_ASSERT(log->reader_count == 0); /* readers and subscriptions close first */
    store_log_unload(log);
    store_durable_file_close(log);
    store_dir_unlock(log->io, log->lock_handle);
    store_appender_free(log);
    free(log->batch_buf);
    free(log->dir);
    pthread_mutex_destroy(&log->mu);
    pthread_mutex_destroy(&log->q_mu);
    pthread_cond_destroy(&log->q_cond);
    pthread_mutex_destroy(&log->c_mu);
    pthread_cond_destroy(&log->c_cond);
    pthread_mutex_destroy(&log->pipe_mu);
    pthread_cond_destroy(&log->pipe_cond);
    pthread_cond_destroy(&log->pipe_done);
    pthread_mutex_destroy(&log->readers_mu);
    pthread_cond_destroy(&log->readers_cond);
    free(log);
}

int store_log_open(const store_config *cfg, store_log **out, sk_error *err)
{
    int rc = check_config(cfg, err);
    if (rc)
        return rc;
    store_log *log = calloc(1, sizeof *log);
    if (!log)
        return -ENOMEM;
    log->cfg = *cfg;
    log->io = cfg->io ? cfg->io : store_io_posix();
    log->cfg.io = log->io;
    log->dir = strdup(cfg->dir);
    log->lock_handle = -1;
    log->durable_fd = -1;
    log->cfg.dir = log->dir;
    pthread_mutex_init(&log->readers_mu, NULL);
    pthread_cond_init(&log->readers_cond, NULL);
    pthread_mutex_init(&log->mu, NULL);
    pthread_mutex_init(&log->q_mu, NULL);
    pthread_cond_init(&log->q_cond, NULL);
    pthread_mutex_init(&log->c_mu, NULL);
    pthread_cond_init(&log->c_cond, NULL);
    pthread_mutex_init(&log->pipe_mu, NULL);
    pthread_cond_init(&log->pipe_cond, NULL);
    pthread_cond_init(&log->pipe_done, NULL);
    atomic_store(&log->state, cfg->read_only ? STORE_STATE_READ_ONLY : STORE_STATE_OK);
    rc = log->dir ? store_streams_init(&log->streams) : -ENOMEM;
    if (rc == 0)
        rc = store_log_load(log, err);
    if (rc == 0 && !cfg->read_only && !cfg->manual_commit)
        rc = store_appender_start(log);
    if (rc != 0) {
        if (err && err->code == 0)
            sk_error_set(err, rc, "", "cannot open log %s: %s", cfg->dir, sk_strerror(rc));
        log_free(log);
        return rc;
    }
    *out = log;
    return 0;
}

int store_log_close(store_log *log)
{
    if (!log)
        return 0;
    int rc = 0;
    if (!log->cfg.read_only) {
        if (log->cfg.manual_commit) {
            /* Complete what is queued, as the appender thread would. */
            while (atomic_load(&log->state) == STORE_STATE_OK && log->q_count > 0)
                if (store_appender_commit(log) < 0)
                    break;
        }
        store_appender_stop(log);
        store_appender_fail_queue(log, SK_ECLOSED);
        if (atomic_load(&log->state) == STORE_STATE_OK && log->unsynced && log->segment_count > 0) {
            store_segment *active = log->segments[log->segment_count - 1];
            rc = log->io->fdatasync(log->io->ctx, active->fd);
        } else if (atomic_load(&log->state) == STORE_STATE_FAILED && log->segment_count > 0) {
            /* As recovery does: pages a failed fdatasync left readable were never written;
             * a reopen in this boot must not find them whole and append after them. */
            store_segment *active = log->segments[log->segment_count - 1];
            rc = log->io->ftruncate(log->io->ctx, active->fd, active->durable_size);
            if (rc == 0)
                rc = log->io->fdatasync(log->io->ctx, active->fd);
        }
    }
    log_free(log);
    return rc;
}

void store_log_set_failed(store_log *log, const char *why, int err)
{
    int expected = STORE_STATE_OK;
    if (atomic_compare_exchange_strong(&log->state, &expected, STORE_STATE_FAILED))
        sk_log(SK_LOG_ERROR, "store",
               "log entered the failed state; appends are refused until recovery", "reason", why,
               "error", sk_strerror(err), "dir", log->dir, SK_LOG_END);
}

int store_log_recover(store_log *log, sk_error *err)
{
    if (log->cfg.read_only)
        return sk_error_set(err, SK_EREADONLY, "", "log %s is open read-only", log->dir);
    store_appender_stop(log);
    store_appender_fail_queue(log, SK_EFAILED);
    /* Drop every byte not known to be durable: a failed fdatasync may have left pages in
     * the cache that the kernel will never write, so reading them back now would lie. */
    int rc = 0;
    if (log->segment_count > 0) {
        store_segment *active = log->segments[log->segment_count - 1];
        if (atomic_load(&log->state) == STORE_STATE_FAILED) {
            rc = log->io->ftruncate(log->io->ctx, active->fd, active->durable_size);
            if (rc == 0)
                rc = log->io->fdatasync(log->io->ctx, active->fd);
        }
    }
    if (rc != 0) {
        sk_error_set(err, rc, "", "cannot cut the unsynced tail of %s: %s", log->dir,
                     sk_strerror(rc));
        store_appender_start(log); /* also clears `stopping` in manual-commit mode */
        return rc;
    }
    /* Readers keep their positions; they must not hold segments while they are replaced. */
    store_readers_hold(log);
    pthread_mutex_lock(&log->mu);
    store_log_unload(log);
    rc = store_streams_init(&log->streams);
    pthread_mutex_unlock(&log->mu);
    log->unsynced = false;
    if (rc == 0)
        rc = store_log_load(log, err);
    store_readers_resume(log);
    if (rc == 0) {
        atomic_fetch_add(&log->stat_recoveries, 1);
        atomic_store(&log->state, STORE_STATE_OK);
        sk_log(SK_LOG_NOTICE, "store", "log recovered; appends accepted again", "dir", log->dir,
               SK_LOG_END);
    }
    /* Also in manual-commit mode: starting clears `stopping`, without which every later
     * append would be refused as if the log were closing. */
    int r = store_appender_start(log);
    if (rc == 0)
        rc = r;
    return rc;
}

store_segment *store_log_segment_for(store_log *log, uint64_t position)
{
    uint32_t lo = 0, hi = log->segment_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (log->segments[mid]->first_position <= position)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? NULL : log->segments[lo - 1];
}

uint64_t store_log_head(store_log *log)
{
    return atomic_load(&log->head);
}

uint64_t store_log_stream_version(store_log *log, ev_str stream_id)
{
    pthread_mutex_lock(&log->mu);
    store_stream *s = store_streams_find(&log->streams, stream_id, store_stream_hash(stream_id));
    uint64_t v = s ? s->version : 0;
    pthread_mutex_unlock(&log->mu);
    return v;
}

void store_log_get_stats(store_log *log, store_log_stats *out)
{
    memset(out, 0, sizeof *out);
    out->state = (store_state)atomic_load(&log->state);
    pthread_mutex_lock(&log->mu);
    out->segments = log->segment_count;
    out->first_position = log->segment_count ? log->segments[0]->first_position : 0;
    for (uint32_t i = 0; i < log->segment_count; i++)
        out->bytes += log->segments[i]->size;
    for (size_t i = 0; i < log->streams.cap; i++)
        if (log->streams.slots[i] && log->streams.slots[i]->version > 0)
            out->streams++;
    out->corrupt = log->corrupt;
    out->corrupt_position = log->corrupt_position;
    pthread_mutex_unlock(&log->mu);
    out->next_position = atomic_load(&log->head);
    out->durable_position = atomic_load(&log->durable_head);
    out->recoveries = atomic_load(&log->stat_recoveries);
    pthread_mutex_lock(&log->readers_mu);
    out->readers = log->reader_count;
    out->subscriptions = log->sub_count;
    pthread_mutex_unlock(&log->readers_mu);
    out->batches = atomic_load(&log->stat_batches);
    out->batch_events = atomic_load(&log->stat_batch_events);
    out->fsyncs = atomic_load(&log->stat_fsyncs);
    pthread_mutex_lock(&log->q_mu);
    out->queue_depth = log->q_count;
    pthread_mutex_unlock(&log->q_mu);
}

void store_log_set_batch_observer(store_log *log, store_batch_cb cb, void *cb_ctx)
{
    pthread_mutex_lock(&log->q_mu);
    log->batch_cb = cb;
    log->batch_cb_ctx = cb_ctx;
    pthread_mutex_unlock(&log->q_mu);
}

int store_log_segments(store_log *log, int (*cb)(void *cb_ctx, const store_segment_info *),
                       void *cb_ctx)
{
    pthread_mutex_lock(&log->mu);
    uint32_t n = log->segment_count;
    store_segment_info *infos = calloc(n ? n : 1, sizeof *infos);
    for (uint32_t i = 0; infos && i < n; i++) {
        const store_segment *seg = log->segments[i];
        store_segment_name(seg->first_position, ".log", infos[i].name, sizeof infos[i].name);
        infos[i].first_position = seg->first_position;
        infos[i].next_position = seg->next_position;
        infos[i].bytes = seg->size;
    }
    pthread_mutex_unlock(&log->mu);
    if (!infos)
        return -ENOMEM;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = cb(cb_ctx, &infos[i]);
    free(infos);
    return rc;
}
