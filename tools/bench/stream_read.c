/*
 * stream_read.c -- `skald-bench stream-read`: the time to read one stream's events must
 * not depend on the size of the log.
 *
 * Three logs are built (N/100, N/10 and N events; N = --events, default 1M) with one
 * target stream of K events (--stream-events, default 100) placed uniformly across each
 * log, every other event on one of --streams other streams. Each log is closed and
 * reopened so the stream indexes come from disk, then the target stream is read fully
 * with store_reader_open_stream: once right after the reopen ("first", the cost that
 * includes loading indexes), then --runs more times (default 50), of which the median
 * counts. growth = median(largest) / median(smallest); a log-size-independent read gives
 * about 1.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TARGET_STREAM "target-stream"
#define SIZES         3

typedef struct layout {
    const bench_stream_names *names;
    uint64_t stride; /* one target event every stride events */
    uint64_t target_events;
} layout;

typedef struct size_result {
    uint64_t events;
    uint64_t first_ns;
    uint64_t median_ns;
    uint64_t min_ns;
    uint64_t p90_ns;
} size_result;

static ev_str stream_of(void *ctx, uint64_t index)
{
    const layout *l = ctx;
    if (index % l->stride == l->stride / 2 && index / l->stride < l->target_events)
        return ev_str_of(TARGET_STREAM);
    return bench_stream_name(l->names, index);
}

/* Reads the target stream fully; checks it holds versions 1..expected of that stream. */
static int read_target(store_log *log, uint64_t expected, uint64_t *elapsed_out)
{
    store_reader *reader = NULL;
    sk_error err;
    sk_error_clear(&err);
    ev_event ev;
    memset(&ev, 0, sizeof ev);
    uint64_t seen = 0;
    uint64_t t0 = bench_now_ns();
    int rc = store_reader_open_stream(log, ev_str_of(TARGET_STREAM), 1, &reader);
    while (rc == 0 && seen <= expected) { /* bounded: one past the expected count at most */
        int more = store_reader_next(reader, &ev, &err);
        if (more <= 0) {
            rc = more;
            break;
        }
        seen++;
        if (ev.version != seen || !ev_str_eq(ev.stream_id, TARGET_STREAM))
            rc = SK_ECORRUPT;
    }
    *elapsed_out = bench_now_ns() - t0;
    store_reader_close(reader);
    if (rc == 0 && seen != expected)
        rc = SK_ECORRUPT;
    if (rc < 0)
        fprintf(stderr,
                "skald-bench: reading stream %s: %s %s (%" PRIu64 " of %" PRIu64
                " events, the last at version %" PRIu64 ")\n",
                TARGET_STREAM, sk_err_name(rc), err.message, seen, expected, seen ? ev.version : 0);
    return rc;
}

static int build(const bench_opts *opts, const char *log_dir, uint64_t events,
                 const bench_stream_names *names)
{
    layout l = {names, events / opts->stream_events, opts->stream_events};
    store_log *log = NULL;
    int rc = bench_log_open(log_dir, STORE_FSYNC_NEVER, opts->window, &log);
    if (rc < 0)
        return rc;
    uint64_t t0 = bench_now_ns();
    rc = bench_fill(log, events, opts->payload_bytes, opts->window, stream_of, &l);
    if (rc < 0)
        fprintf(stderr, "skald-bench: building the log: %s\n", sk_err_name(rc));
    int close_rc = store_log_close(log);
    if (rc == 0 && close_rc < 0)
        fprintf(stderr, "skald-bench: closing the log: %s\n", sk_err_name(close_rc));
    if (rc == 0)
        rc = close_rc;
    if (rc == 0)
        printf("built: %" PRIu64 " events in %.2f s\n", events, bench_seconds(bench_now_ns() - t0));
    return rc;
}

static int time_reads(const bench_opts *opts, const char *log_dir, size_result *out)
{
    store_log *log = NULL;
    int rc = bench_log_open(log_dir, STORE_FSYNC_NEVER, 0, &log);
    if (rc < 0)
        return rc;
    uint64_t *samples = calloc(opts->runs, sizeof *samples);
    if (!samples)
        rc = -ENOMEM;
    if (rc == 0)
        rc = read_target(log, opts->stream_events, &out->first_ns);
    for (uint32_t i = 0; i < opts->runs && rc == 0; i++)
        rc = read_target(log, opts->stream_events, &samples[i]);
    if (rc == 0) {
        out->p90_ns = bench_percentile(samples, opts->runs, 90);
        out->median_ns = bench_percentile(samples, opts->runs, 50);
        out->min_ns = samples[0];
    }
    free(samples);
    store_log_close(log);
    return rc;
}

static int measure_size(const bench_opts *opts, const char *work, uint64_t events,
                        const bench_stream_names *names, size_result *out)
{
    char name[64], sub[BENCH_PATH_MAX], log_dir[BENCH_PATH_MAX];
    snprintf(name, sizeof name, "log-%" PRIu64, events);
    int rc = bench_path_join(sub, sizeof sub, work, name);
    if (rc == 0)
        rc = bench_path_join(log_dir, sizeof log_dir, sub, "log");
    if (rc == 0)
        rc = build(opts, log_dir, events, names);
    out->events = events;
    if (rc == 0)
        rc = time_reads(opts, log_dir, out);
    if (rc == 0)
        printf("%" PRIu64 " events: first read %.1f us, median %.1f us, min %.1f us, "
               "p90 %.1f us (%u runs)\n",
               events, out->first_ns / 1e3, out->median_ns / 1e3, out->min_ns / 1e3,
               out->p90_ns / 1e3, opts->runs);
    fflush(stdout);
    if (!opts->keep)
        bench_workdir_remove(sub); /* frees the disk before the next, larger log */
    return rc;
}

/* "10k", "1m", "250": the key suffix naming a log size. */
static void size_label(uint64_t events, char *out, size_t size)
{
    if (events % 1000000 == 0)
        snprintf(out, size, "%" PRIu64 "m", events / 1000000);
    else if (events % 1000 == 0)
        snprintf(out, size, "%" PRIu64 "k", events / 1000);
    else
        snprintf(out, size, "%" PRIu64, events);
}

static void report(const size_result *res)
{
    char label[32];
    double growth = (double)res[SIZES - 1].median_ns / (double)res[0].median_ns;
    printf("growth %.2f (median at %" PRIu64 " events / median at %" PRIu64 " events; "
           "goal: about 1)\n",
           growth, res[SIZES - 1].events, res[0].events);
    printf("BENCH stream-read");
    for (int i = 0; i < SIZES; i++) {
        size_label(res[i].events, label, sizeof label);
        printf(" us_%s=%.1f", label, res[i].median_ns / 1e3);
    }
    printf(" growth=%.2f", growth);
    for (int i = 0; i < SIZES; i++) {
        size_label(res[i].events, label, sizeof label);
        printf(" first_us_%s=%.1f", label, res[i].first_ns / 1e3);
    }
    printf("\n");
}

int bench_stream_read(const bench_opts *opts)
{
    char work[BENCH_PATH_MAX];
    int rc = bench_workdir_create(opts->dir, work, sizeof work);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: cannot create a work directory in %s: %s\n",
                opts->dir ? opts->dir : ".", strerror(-rc));
        return rc;
    }
    printf("stream-read: a %u-event stream in logs of %" PRIu64 ", %" PRIu64 " and %" PRIu64
           " events (%u other streams)\n",
           opts->stream_events, opts->events / 100, opts->events / 10, opts->events, opts->streams);
    bench_print_where("work dir", work);
    fflush(stdout);
    bench_stream_names names;
    rc = bench_stream_names_init(&names, opts->streams);
    size_result res[SIZES];
    memset(res, 0, sizeof res);
    const uint64_t divisors[SIZES] = {100, 10, 1};
    for (int i = 0; i < SIZES && rc == 0; i++)
        rc = measure_size(opts, work, opts->events / divisors[i], &names, &res[i]);
    if (rc == 0)
        report(res);
    bench_stream_names_free(&names);
    if (opts->keep)
        printf("kept: %s\n", work);
    else
        bench_workdir_remove(work);
    return rc;
}
