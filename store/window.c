/*
 * window.c -- the append window: one submitting thread keeps many appends in flight with
 * store_log_append_async, at most `size` at a time. The seed (service/seed.c) and the
 * benchmarks (tools/bench/) both fill a log this way; one append at a time would cost one
 * group commit, and with fsync=always one fdatasync, per append.
 *
 * Two counters, each with one writer: `submitted` (the submitting thread) and `completed`
 * (the completions, which run on the log's completer thread and must not block). When the
 * window is full the submitter stores in wake_at the completed count it waits for (half
 * the window free, or everything done when draining) and sleeps on cond; the one
 * completion that brings `completed` to exactly wake_at signals it. Both sides use
 * sequentially consistent atomics, so either the completion sees wake_at or the submitter
 * sees the new count: no lost wake-up. The completer thread thus pays one store per
 * completion and one lock and signal per size/2 completions. Every sleep has a deadline.
 *
 * Failure is sticky: once an append completed with an error, store_window_append refuses
 * the next ones with that error, so a caller stops at the first failure; drain returns it.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW_CACHE_LINE       64
#define WINDOW_WAKE_NONE        UINT64_MAX
#define WINDOW_WAIT_S           60      /* no single append may take longer than this */
#define WINDOW_BUSY_SLEEP_NS    50000   /* pause before retrying an SK_EBUSY answer */
#define WINDOW_BUSY_RETRIES_MAX 200000u /* 10 s of SK_EBUSY in a row is a failure */

/* The padding is the point: each group of fields has a cache line of its own. */
struct store_window { /* NOLINT(clang-analyzer-optin.performance.Padding) */
    /* The submitting thread's; read by completions only through wake_at. */
    store_log *log;
    uint64_t submitted;      /* appends queued */
    uint64_t seen_completed; /* its last look at completed (saves a shared read per append) */
    uint64_t busy_retries;   /* SK_EBUSY answers retried */
    uint32_t size;
    store_append_cb on_complete; /* the caller's, after the window's bookkeeping; or NULL */
    void *cb_ctx;
    pthread_mutex_t mu;  /* guards the sleep on cond */
    pthread_cond_t cond; /* signalled when completed reaches wake_at */
    /* The completions', on a cache line of their own so the submitter's writes never pull
     * it away. */
    alignas(WINDOW_CACHE_LINE) _Atomic uint64_t completed;
    _Atomic uint64_t failed;             /* completions with a non-zero status */
    _Atomic uint64_t first_failed_index; /* 0-based index of the first failed append */
    _Atomic int first_error;             /* status of the first failed completion */
    /* Written by the submitter when it sleeps, read by every completion. */
    alignas(WINDOW_CACHE_LINE) _Atomic uint64_t wake_at; /* completed count awaited, or NONE */
};

int store_window_create(store_log *log, uint32_t size, store_append_cb on_complete, void *cb_ctx,
                        store_window **out)
{
    SK_ASSERT(log != NULL && size > 0);
    size_t bytes =
        (sizeof(store_window) + WINDOW_CACHE_LINE - 1) / WINDOW_CACHE_LINE * WINDOW_CACHE_LINE;
    store_window *w = aligned_alloc(alignof(store_window), bytes);
    if (!w)
        return -ENOMEM;
    memset(w, 0, sizeof *w);
    pthread_condattr_t attr;
    int rc = -pthread_condattr_init(&attr);
    if (rc == 0) {
        rc = -pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (rc == 0)
            rc = -pthread_cond_init(&w->cond, &attr);
        pthread_condattr_destroy(&attr);
    }
    if (rc < 0) {
        free(w);
        return rc;
    }
    rc = -pthread_mutex_init(&w->mu, NULL);
    if (rc < 0) {
        pthread_cond_destroy(&w->cond);
        free(w);
        return rc;
    }
    w->log = log;
    w->size = size;
    w->on_complete = on_complete;
    w->cb_ctx = cb_ctx;
    atomic_init(&w->completed, 0);
    atomic_init(&w->failed, 0);
    atomic_init(&w->first_failed_index, 0);
    atomic_init(&w->first_error, 0);
    atomic_init(&w->wake_at, WINDOW_WAKE_NONE);
    *out = w;
    return 0;
}

void store_window_destroy(store_window *w)
{
    if (!w)
        return;
    /* A completion still to come would write into freed memory. */
    SK_ASSERT(atomic_load(&w->completed) == w->submitted);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* Appends in flight, as far as the submitter knows (it may be fewer by now). */
static uint64_t in_flight(const store_window *w)
{
    return w->submitted - w->seen_completed;
}

/* Sleeps until at most `level` appends are in flight. 0 or -ETIMEDOUT. */
static int wait_for_level(store_window *w, uint32_t level)
{
    w->seen_completed = atomic_load(&w->completed);
    if (in_flight(w) <= level)
        return 0;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += WINDOW_WAIT_S;
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->wake_at, w->submitted - level);
    for (;;) {
        w->seen_completed = atomic_load(&w->completed);
        if (in_flight(w) <= level) {
            rc = 0; /* also when reached together with the deadline */
            break;
        }
        if (rc != 0)
            break;
        rc = -pthread_cond_timedwait(&w->cond, &w->mu, &deadline);
    }
    atomic_store(&w->wake_at, WINDOW_WAKE_NONE);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static void on_window_complete(void *cb_ctx, const store_append_result *res)
{
    store_window *w = cb_ctx;
    /* Completions of one window never run concurrently (one completer thread), so this
     * load and store need not be one atomic step. */
    uint64_t done = atomic_load_explicit(&w->completed, memory_order_relaxed);
    if (res->status != 0) {
        int none = 0;
        if (atomic_compare_exchange_strong(&w->first_error, &none, res->status))
            atomic_store(&w->first_failed_index, done);
        atomic_fetch_add(&w->failed, 1);
    }
    if (w->on_complete)
        w->on_complete(w->cb_ctx, res);
    atomic_store(&w->completed, done + 1);
    if (done + 1 == atomic_load(&w->wake_at)) {
        pthread_mutex_lock(&w->mu);
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
    }
}

int store_window_append(store_window *w, ev_str stream_id, uint64_t expected_version,
                        const ev_event *events, size_t count, sk_error *err)
{
    int rc = atomic_load(&w->first_error);
    if (rc != 0)
        return rc;
    if (in_flight(w) >= w->size) {
        rc = wait_for_level(w, w->size / 2);
        if (rc < 0)
            return rc;
        rc = atomic_load(&w->first_error);
        if (rc != 0)
            return rc;
    }
    rc = SK_EBUSY;
    for (uint32_t tries = 0; tries < WINDOW_BUSY_RETRIES_MAX && rc == SK_EBUSY; tries++) {
        rc = store_log_append_async(w->log, stream_id, expected_version, events, count,
                                    on_window_complete, w, err);
        if (rc == SK_EBUSY) {
            w->busy_retries++;
            struct timespec pause = {0, WINDOW_BUSY_SLEEP_NS};
            nanosleep(&pause, NULL);
        }
    }
    if (rc == 0)
        w->submitted++; /* a refused append never completes, so it is not counted */
    return rc;
}

int store_window_drain(store_window *w)
{
    int rc = wait_for_level(w, 0);
    if (rc < 0)
        return rc;
    return atomic_load(&w->first_error);
}

void store_window_get_stats(const store_window *w, store_window_stats *out)
{
    memset(out, 0, sizeof *out);
    out->submitted = w->submitted;
    out->completed = atomic_load(&w->completed);
    out->failed = atomic_load(&w->failed);
    out->busy_retries = w->busy_retries;
    out->first_error = atomic_load(&w->first_error);
    out->first_failed_index = atomic_load(&w->first_failed_index);
}
