/*
 * metrics.c -- what /metrics shows, in Prometheus text format (version 0.0.4).
 *
 * Counters and histogram buckets are relaxed atomics bumped on the request path; the
 * render reads them without a lock (a scrape may see one request half-counted, which
 * Prometheus tolerates). Histograms keep per-bucket counts and are made cumulative
 * when rendered.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMMANDS_MAX 64 /* known command names; the last slot counts unknown ones */

static const char *const outcome_names[SVC_OUT_COUNT] = {
    "ok", "rejected", "conflict", "invalid", "replayed", "overloaded", "error"};

/* seconds */
static const double latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
#define LAT_N (sizeof latency_bounds / sizeof latency_bounds[0])
/* events per group commit */
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384};
#define BATCH_N (sizeof batch_bounds / sizeof batch_bounds[0])

typedef struct histogram {
    const double *bounds;
    size_t n;
    atomic_uint_fast64_t buckets[LAT_N + 1]; /* the last is +Inf */
    atomic_uint_fast64_t count;
    _Atomic double sum;
} histogram;

static const unsigned status_codes[] = {200, 400, 401, 403, 404, 405, 409,
                                        413, 415, 422, 429, 431, 500, 503};
#define STATUS_N (sizeof status_codes / sizeof status_codes[0])

struct svc_metrics {
    const char *names[COMMANDS_MAX];
    size_t nnames;
    atomic_uint_fast64_t commands[COMMANDS_MAX + 1][SVC_OUT_COUNT];
    histogram latency, batch_events, fsync;
    atomic_uint_fast64_t http[STATUS_N + 1];
};

static void histogram_init(histogram *h, const double *bounds, size_t n)
{
    h->bounds = bounds;
    h->n = n;
}

static void histogram_observe(histogram *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    double old = atomic_load_explicit(&h->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum, &old, old + v, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

int svc_metrics_create(const cmd_domain *const *domains, svc_metrics **out)
{
    svc_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    for (; *domains; domains++)
        for (const cmd_handler_table *const *t = (*domains)->tables; *t; t++)
            for (size_t i = 0; i < (*t)->count && m->nnames < COMMANDS_MAX; i++)
                m->names[m->nnames++] = (*t)->handlers[i].command;
    histogram_init(&m->latency, latency_bounds, LAT_N);
    histogram_init(&m->batch_events, batch_bounds, BATCH_N);
    histogram_init(&m->fsync, latency_bounds, LAT_N);
    *out = m;
    return 0;
}

void svc_metrics_free(svc_metrics *m)
{
    free(m);
}

void svc_metrics_command(svc_metrics *m, const char *command, svc_outcome outcome, double seconds)
{
    size_t slot = COMMANDS_MAX; /* unknown */
    for (size_t i = 0; command && i < m->nnames; i++)
        if (strcmp(m->names[i], command) == 0)
            slot = i;
    atomic_fetch_add_explicit(&m->commands[slot][outcome], 1, memory_order_relaxed);
    if (outcome != SVC_OUT_OVERLOADED)
        histogram_observe(&m->latency, seconds);
}

void svc_metrics_batch(void *ctx, const store_batch_stats *st)
{
    svc_metrics *m = ctx;
    histogram_observe(&m->batch_events, st->events);
    if (st->fsync_ns)
        histogram_observe(&m->fsync, (double)st->fsync_ns / 1e9);
}

void svc_metrics_http(svc_metrics *m, unsigned status)
{
    size_t i = 0;
    while (i < STATUS_N && status_codes[i] != status)
        i++;
    atomic_fetch_add_explicit(&m->http[i], 1, memory_order_relaxed);
}

/* Appends printf-formatted lines to a metrics text (the other layers' sections). Frees
 * text and returns NULL when memory runs out, as the /metrics chain expects. */
char *svc_metrics_append(char *text, const char *fmt, ...)
{
    if (!text)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t len = strlen(text);
    char *grown = n < 0 ? NULL : realloc(text, len + (size_t)n + 1);
    if (!grown) {
        free(text);
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(grown + len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return grown;
}

typedef struct out_buf {
    char *data;
    size_t len, cap;
    int failed;
} out_buf;

static void put(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out_buf *o, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !o->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->data + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = (o->cap + (size_t)n + 1) * 2;
        char *grown = realloc(o->data, cap);
        if (!grown) {
            o->failed = 1;
            return;
        }
        o->data = grown;
        o->cap = cap;
    }
}

static void put_histogram(out_buf *o, const char *name, const char *help, const histogram *h)
{
    put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h->n; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        put(o, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cumulative);
    }
    cumulative += atomic_load_explicit(&h->buckets[h->n], memory_order_relaxed);
    put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    put(o, "%s_sum %.9g\n%s_count %llu\n", name, atomic_load(&h->sum), name,
        (unsigned long long)cumulative);
}

static void put_gauge(out_buf *o, const char *name, const char *help, unsigned long long v)
{
    put(o, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name, v);
}

/* The tracer's counters (docs/tracing.md): all 0 while no exporter is set. */
static void put_tracing(out_buf *o)
{
    tr_stats ts;
    tr_get_stats(&ts);
    put(o,
        "# HELP skald_trace_spans_total Spans by fate: recorded, exported (the backend took\n"
        "# them), dropped (queue full, backend down or refusing).\n"
        "# TYPE skald_trace_spans_total counter\n"
        "skald_trace_spans_total{result=\"recorded\"} %llu\n"
        "skald_trace_spans_total{result=\"exported\"} %llu\n"
        "skald_trace_spans_total{result=\"dropped\"} %llu\n"
        "# HELP skald_trace_export_failures_total Span batches the backend did not take.\n"
        "# TYPE skald_trace_export_failures_total counter\n"
        "skald_trace_export_failures_total %llu\n",
        (unsigned long long)ts.spans_started, (unsigned long long)ts.spans_exported,
        (unsigned long long)ts.spans_dropped, (unsigned long long)ts.batches_failed);
    put_gauge(o, "skald_trace_queue_depth", "Spans waiting for export.", ts.queue_depth);
}

char *svc_metrics_render(svc_metrics *m, store_log *log, cmd_bus *bus, uint64_t in_flight)
{
    out_buf o = {malloc(16384), 0, 16384, 0};
    if (!o.data)
        return NULL;
    put(&o, "# HELP skald_commands_total Commands answered, by type and outcome.\n"
            "# TYPE skald_commands_total counter\n");
    for (size_t c = 0; c <= COMMANDS_MAX; c++) {
        if (c >= m->nnames && c != COMMANDS_MAX)
            continue;
        const char *name = c == COMMANDS_MAX ? "unknown" : m->names[c];
        for (int k = 0; k < SVC_OUT_COUNT; k++)
            put(&o, "skald_commands_total{type=\"%s\",outcome=\"%s\"} %llu\n", name,
                outcome_names[k], (unsigned long long)atomic_load(&m->commands[c][k]));
    }
    put_histogram(&o, "skald_command_duration_seconds",
                  "Time from a command's request body to its answer.", &m->latency);
    put_histogram(&o, "skald_append_batch_events", "Events written per group commit.",
                  &m->batch_events);
    put_histogram(&o, "skald_fsync_duration_seconds", "fdatasync time per group commit.",
                  &m->fsync);
    put(&o, "# HELP skald_http_responses_total HTTP responses by status.\n"
            "# TYPE skald_http_responses_total counter\n");
    for (size_t i = 0; i <= STATUS_N; i++)
        if (i < STATUS_N)
            put(&o, "skald_http_responses_total{status=\"%u\"} %llu\n", status_codes[i],
                (unsigned long long)atomic_load(&m->http[i]));
        else
            put(&o, "skald_http_responses_total{status=\"other\"} %llu\n",
                (unsigned long long)atomic_load(&m->http[i]));
    store_log_stats st = {0};
    if (log) /* NULL on a read replica (--source=kafka): the log gauges say 0 */
        store_log_get_stats(log, &st);
    put_gauge(&o, "skald_log_head_position", "Position the next event gets.", st.next_position);
    put_gauge(&o, "skald_log_segments", "Segments in the log.", st.segments);
    put_gauge(&o, "skald_log_bytes", "Bytes in the log's segments.", st.bytes);
    put_gauge(&o, "skald_log_failed", "1 while the log refuses appends after an I/O failure.",
              st.state == STORE_STATE_FAILED);
    put_gauge(&o, "skald_log_durable_position",
              "Every position below it is durable; subscribers read up to it.",
              st.durable_position);
    put_gauge(&o, "skald_log_subscriptions", "Subscriptions tailing the log.", st.subscriptions);
    put(&o,
        "# HELP skald_log_recoveries_total Recoveries in place after the log failed.\n"
        "# TYPE skald_log_recoveries_total counter\n"
        "skald_log_recoveries_total %llu\n",
        (unsigned long long)st.recoveries);
    put_gauge(&o, "skald_queue_depth", "Commands accepted and not yet answered.", in_flight);
    put_gauge(&o, "skald_append_queue_depth", "Appends waiting for the appender.", st.queue_depth);
    cmd_bus_stats bs = {0};
    if (bus) /* NULL without the commands role */
        cmd_bus_get_stats(bus, &bs);
    put(&o,
        "# HELP skald_aggregate_cache_total Aggregate loads by source.\n"
        "# TYPE skald_aggregate_cache_total counter\n"
        "skald_aggregate_cache_total{result=\"hit\"} %llu\n"
        "skald_aggregate_cache_total{result=\"miss\"} %llu\n",
        (unsigned long long)bs.cache_hits, (unsigned long long)bs.cache_misses);
    put(&o,
        "# HELP skald_snapshots_total Snapshots used and saved.\n"
        "# TYPE skald_snapshots_total counter\n"
        "skald_snapshots_total{op=\"load\"} %llu\n"
        "skald_snapshots_total{op=\"save\"} %llu\n"
        "skald_snapshots_total{op=\"save_failed\"} %llu\n",
        (unsigned long long)bs.snapshot_loads, (unsigned long long)bs.snapshots_saved,
        (unsigned long long)bs.snapshot_failures);
    put_tracing(&o);
    if (o.failed) {
        free(o.data);
        return NULL;
    }
    return o.data;
}
