/*
 * window.c -- keeping many appends in flight from one thread, the way the HTTP layer will
 * use the log: store_log_append_async with a completion, at most `size` outstanding.
 *
 * A counter holds the appends in flight. The submitter increments it; the completion,
 * which runs on the log's appender thread and must not block, decrements it. When the
 * window is full the submitter sets wake_at to the level it waits for (half the window,
 * or 0 to drain) and sleeps on cond; the one completion that brings the counter down to
 * exactly wake_at signals it. Both sides use sequentially consistent atomics, so either
 * the completion sees wake_at or the submitter sees the lower count: no lost wake-up.
 * The appender thread thus pays one lock and signal per size/2 completions, which keeps
 * the benchmark's own cost off the thread it measures. Every sleep has a deadline.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAKE_NONE        UINT32_MAX
#define WAIT_SECONDS     60      /* no single append may take longer than this */
#define BUSY_SLEEP_NS    50000   /* pause before retrying an SK_EBUSY answer */
#define BUSY_RETRIES_MAX 200000u /* 10 s of SK_EBUSY in a row is a failure */

int bench_window_init(bench_window *w, uint32_t size, bench_progress *progress)
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
    atomic_init(&w->in_flight, 0);
    atomic_init(&w->wake_at, WAKE_NONE);
    w->size = size;
    w->progress = progress;
    return 0;
}

void bench_window_destroy(bench_window *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
}

/* Sleeps until at most `level` appends are in flight. 0 or -ETIMEDOUT. */
static int wait_for_level(bench_window *w, uint32_t level)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += WAIT_SECONDS;
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->wake_at, level);
    while (atomic_load(&w->in_flight) > level && rc == 0)
        rc = -pthread_cond_timedwait(&w->cond, &w->mu, &deadline);
    if (atomic_load(&w->in_flight) <= level)
        rc = 0; /* reached together with the deadline: still a success */
    atomic_store(&w->wake_at, WAKE_NONE);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int take_slot(bench_window *w)
{
    if (atomic_load(&w->in_flight) >= w->size) {
        w->sleeps++;
        int rc = wait_for_level(w, w->size / 2);
        if (rc < 0)
            return rc;
    }
    atomic_fetch_add(&w->in_flight, 1);
    return 0;
}

static void give_slot(bench_window *w)
{
    uint32_t now = atomic_fetch_sub(&w->in_flight, 1) - 1;
    if (now == atomic_load(&w->wake_at)) {
        pthread_mutex_lock(&w->mu);
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
    }
}

static void on_complete(void *cb_ctx, const store_append_result *res)
{
    bench_window *w = cb_ctx;
    bench_progress *p = w->progress;
    if (res->status != 0) {
        int none = 0;
        atomic_compare_exchange_strong(&p->first_error, &none, res->status);
        atomic_fetch_add(&p->failed, 1);
    }
    if (atomic_fetch_add(&p->completed, 1) + 1 == p->target)
        atomic_store(&p->last_ns, bench_now_ns());
    give_slot(w);
}

int bench_window_append(bench_window *w, store_log *log, ev_str stream, const ev_event *ev)
{
    int rc = take_slot(w);
    if (rc < 0)
        return rc;
    for (uint32_t tries = 0; tries < BUSY_RETRIES_MAX; tries++) {
        rc = store_log_append_async(log, stream, STORE_EXPECT_ANY, ev, 1, on_complete, w, NULL);
        if (rc != SK_EBUSY)
            break;
        w->busy_retries++;
        struct timespec pause = {0, BUSY_SLEEP_NS};
        nanosleep(&pause, NULL);
    }
    if (rc < 0)
        give_slot(w); /* the completion never runs for a refused append */
    return rc;
}

int bench_window_drain(bench_window *w)
{
    int rc = wait_for_level(w, 0);
    if (rc < 0) {
        /* A completion is overdue. It still holds a pointer to w, so neither w nor the
         * log may be released: stop the process here, loudly. */
        fprintf(stderr, "skald-bench: %u appends did not complete within %d s\n",
                atomic_load(&w->in_flight), WAIT_SECONDS);
        abort();
    }
    return 0;
}

int bench_fill(store_log *log, uint64_t events, uint32_t payload_bytes, uint32_t window,
               bench_stream_of stream_of, void *ctx)
{
    bench_progress progress;
    memset(&progress, 0, sizeof progress);
    progress.target = events;
    bench_window w;
    uint8_t *payload = bench_payload_create(payload_bytes);
    if (!payload)
        return -ENOMEM;
    int rc = bench_window_init(&w, window, &progress);
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
    if (rc == 0 && atomic_load(&progress.failed) > 0)
        rc = atomic_load(&progress.first_error);
    bench_window_destroy(&w);
    free(payload);
    return rc;
}
