/*
 * fill.c -- filling a log the way the HTTP layer uses it: many appends in flight from
 * one thread, through the store's append window (store_window_*, store/window.c), which
 * the seed uses too. What is the benchmarks' own here is the policy for an overdue
 * append: stop the process rather than return with a completion still to come.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_drain(store_window *w)
{
    int rc = store_window_drain(w);
    if (rc == -ETIMEDOUT) {
        store_window_stats st;
        store_window_get_stats(w, &st);
        fprintf(stderr, "skald-bench: %" PRIu64 " appends did not complete within 60 s\n",
                st.submitted - st.completed);
        abort();
    }
    return rc;
}

int bench_fill(store_log *log, uint64_t events, uint32_t payload_bytes, uint32_t window,
               bench_stream_of stream_of, void *ctx)
{
    store_window *w = NULL;
    uint8_t *payload = bench_payload_create(payload_bytes);
    if (!payload)
        return -ENOMEM;
    int rc = store_window_create(log, window, NULL, NULL, &w);
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
        rc = store_window_append(w, stream_of(ctx, i), STORE_EXPECT_ANY, &ev, 1, NULL);
    int drained = bench_drain(w);
    if (rc == 0)
        rc = drained;
    store_window_destroy(w);
    free(payload);
    return rc;
}
