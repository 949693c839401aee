/*
 * window.c -- keeping many appends in flight from one thread, the way the HTTP layer will
 * use the log: store_log_append_async with a completion, at most `size` outstanding.
 *
 * A counting semaphore holds the free slots. The submitting thread takes one before each
 * append; the completion, which runs on the log's appender thread and must not block,
 * gives it back (sem_post never blocks). Every wait has a deadline, so a lost completion
 * ends the benchmark with -ETIMEDOUT instead of hanging it.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_SECONDS     60      /* no single append may take longer than this */
#define BUSY_SLEEP_NS    50000   /* pause before retrying an SK_EBUSY answer */
#define BUSY_RETRIES_MAX 200000u /* 10 s of SK_EBUSY in a row is a failure */

int bench_window_init(bench_window *w, uint32_t size, bench_progress *progress)
{
    memset(w, 0, sizeof *w);
    if (sem_init(&w->free_slots, 0, size) != 0)
        return -errno;
    w->size = size;
    w->progress = progress;
    return 0;
}

void bench_window_destroy(bench_window *w)
{
    sem_destroy(&w->free_slots);
}

static int take_slot(bench_window *w)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_SECONDS;
    for (int tries = 0; tries < 1000; tries++) { /* bounded: EINTR only */
        if (sem_timedwait(&w->free_slots, &deadline) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
    return -EINTR;
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
    sem_post(&w->free_slots);
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
        sem_post(&w->free_slots); /* the completion never runs for a refused append */
    return rc;
}

int bench_window_drain(bench_window *w)
{
    for (uint32_t i = 0; i < w->size; i++) {
        int rc = take_slot(w);
        if (rc < 0) {
            /* A completion is overdue. It still holds a pointer to w, so neither w nor the
             * log may be released: stop the process here, loudly. */
            fprintf(stderr, "skald-bench: an append did not complete within %d s (%s)\n",
                    WAIT_SECONDS, sk_strerror(rc));
            abort();
        }
    }
    for (uint32_t i = 0; i < w->size; i++)
        sem_post(&w->free_slots);
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
