/*
 * window.c -- keeping many appends in flight from one thread, the way the HTTP layer will
 * use the log: store_log_append_async with a completion, at most `size` outstanding.
 *
 * Two counters, each with one writer: `submitted` (the submitting thread) and `completed`
 * (the completions, which run on the log's appender thread and must not block). When the
 * window is full the submitter stores in wake_at the completed count it waits for (half
 * the window free, or everything to drain) and sleeps on cond; the one completion that
 * brings `completed` to exactly wake_at signals it. Both sides use sequentially consistent
 * atomics, so either the completion sees wake_at or the submitter sees the new count: no
 * lost wake-up. The appender thread thus pays one store per completion and one lock and
 * signal per size/2 completions, which keeps the benchmark's own cost off the thread it
 * measures. Every sleep has a deadline.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAKE_NONE        UINT64_MAX
#define WAIT_SECONDS     60      /* no single append may take longer than this */
#define BUSY_SLEEP_NS    50000   /* pause before retrying an SK_EBUSY answer */
#define BUSY_RETRIES_MAX 200000u /* 10 s of SK_EBUSY in a row is a failure */

int bench_window_init(bench_window *w, uint32_t size, uint64_t target)
{
    memset(w, 0, sizeof *w);
    int rc = -pthread_mutex_init(&w->mu, NULL);
    if (rc < 0)
        return rc;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = -pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc < 0) {
        pthread_mutex_destroy(&w->mu);
        return rc;
    }
    atomic_init(&w->completed, 0);
    atomic_init(&w->wake_at, WAKE_NONE);
    atomic_init(&w->last_ns, 0);
    atomic_init(&w->failed, 0);
    atomic_init(&w->first_error, 0);
    w->size = size;
    w->target = target;
    return 0;
}

void bench_window_destroy(bench_window *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
}

/* Appends in flight, as far as the submitter knows (it may be fewer by now). */
static uint64_t in_flight(const bench_window *w)
{
    return w->submitted - w->seen_completed;
}

/* Sleeps until at most `level` appends are in flight. 0 or -ETIMEDOUT. */
static int wait_for_level(bench_window *w, uint32_t level)
{
    w->seen_completed = atomic_load(&w->completed);
    if (in_flight(w) <= level)
        return 0;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += WAIT_SECONDS;
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
    atomic_store(&w->wake_at, WAKE_NONE);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static void on_complete(void *cb_ctx, const store_append_result *res)
{
    bench_window *w = cb_ctx;
    if (res->status != 0) {
        int none = 0;
        atomic_compare_exchange_strong(&w->first_error, &none, res->status);
        atomic_fetch_add(&w->failed, 1);
    }
    /* Completions of one window never run concurrently (one appender thread), so this
     * load and store need not be one atomic step. */
    uint64_t done = atomic_load_explicit(&w->completed, memory_order_relaxed) + 1;
    if (done == w->target)
        atomic_store(&w->last_ns, bench_now_ns());
    atomic_store(&w->completed, done);
    if (done == atomic_load(&w->wake_at)) {
        pthread_mutex_lock(&w->mu);
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
    }
}

int bench_window_append(bench_window *w, store_log *log, ev_str stream, const ev_event *ev)
{
    BENCH_ASSERT(w->submitted < w->target);
    if (in_flight(w) >= w->size) {
        int rc = wait_for_level(w, w->size / 2);
        if (rc < 0)
            return rc;
    }
    int rc = SK_EBUSY;
    for (uint32_t tries = 0; tries < BUSY_RETRIES_MAX && rc == SK_EBUSY; tries++) {
        rc = store_log_append_async(log, stream, STORE_EXPECT_ANY, ev, 1, on_complete, w, NULL);
        if (rc == SK_EBUSY) {
            w->busy_retries++;
            struct timespec pause = {0, BUSY_SLEEP_NS};
            nanosleep(&pause, NULL);
        }
    }
    if (rc == 0)
        w->submitted++; /* a refused append never completes, so it is not counted */
    return rc;
}

int bench_window_drain(bench_window *w)
{
    int rc = wait_for_level(w, 0);
    if (rc < 0) {
        /* A completion is overdue. It still holds a pointer to w, so neither w nor the
         * log may be released: stop the process here, loudly. */
        fprintf(stderr, "skald-bench: %" PRIu64 " appends did not complete within %d s\n",
                w->submitted - atomic_load(&w->completed), WAIT_SECONDS);
        abort();
    }
    return atomic_load(&w->failed) ? atomic_load(&w->first_error) : 0;
}

int bench_fill(store_log *log, uint64_t events, uint32_t payload_bytes, uint32_t window,
               bench_stream_of stream_of, void *ctx)
{
    bench_window w;
    uint8_t *payload = bench_payload_create(payload_bytes);
    if (!payload)
        return -ENOMEM;
    int rc = bench_window_init(&w, window, events);
    if (rc < 0) {
        free(payload);
        return rc;
    }
    ev_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = ev_str_of("BenchEvent");
    ev.schema_id = 1;
    ev.payload = payload;
    ev.payload_size = payload_bytes;
    for (uint64_t i = 0; i < events && rc == 0; i++)
        rc = bench_window_append(&w, log, stream_of(ctx, i), &ev);
    int drained = bench_window_drain(&w);
    if (rc == 0)
        rc = drained;
    bench_window_destroy(&w);
    free(payload);
    return rc;
}
