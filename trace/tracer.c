/*
 * tracer.c -- the process's tracer: whether spans are recorded, the sampling ratio, the
 * queue and the exporter, and the counters /metrics shows. Process-wide like the logger
 * (see trace.h); started and stopped by one thread (the program's main), read by all.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

static struct {
    atomic_bool on;
    atomic_uint_fast64_t threshold; /* a root is sampled when a random u64 is below it */
    bool all;                       /* ratio 1: no random draw */
    tr_queue *q;
    tr_exporter *x;
    atomic_uint_fast64_t started, exported, dropped, failed;
} tracer;

int tr_exporter_parse(const char *text, tr_exporter_kind *out)
{
    static const tr_exporter_kind kinds[] = {TR_EXPORTER_NONE, TR_EXPORTER_OTLP,
                                             TR_EXPORTER_ZIPKIN};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (text && strcmp(text, tr_exporter_name(kinds[i])) == 0) {
            *out = kinds[i];
            return 0;
        }
    return SK_EBADINPUT;
}

const char *tr_exporter_name(tr_exporter_kind kind)
{
    return kind == TR_EXPORTER_OTLP ? "otlp" : kind == TR_EXPORTER_ZIPKIN ? "zipkin" : "none";
}

const char *tr_default_endpoint(tr_exporter_kind kind)
{
    /* the backends' customary local ports: an OTLP collector's HTTP receiver, Zipkin */
    return kind == TR_EXPORTER_OTLP     ? "http://127.0.0.1:4318/v1/traces"
           : kind == TR_EXPORTER_ZIPKIN ? "http://127.0.0.1:9411/api/v2/spans"
                                        : "";
}

static void fill_defaults(tr_config *c)
{
    if (!c->service_name)
        c->service_name = "skald";
    if (!c->queue_max)
        c->queue_max = 8192;
    if (!c->batch_max)
        c->batch_max = 512;
    if (!c->flush_interval_ms)
        c->flush_interval_ms = 200;
    if (!c->timeout_ms)
        c->timeout_ms = 2000;
    if (!c->endpoint || !*c->endpoint)
        c->endpoint = tr_default_endpoint(c->exporter);
}

int tr_tracer_start(const tr_config *cfg, sk_error *err)
{
    if (tracer.x)
        return SK_EBUSY;
    if (cfg->exporter == TR_EXPORTER_NONE)
        return 0;
    if (!(cfg->sample_ratio >= 0 && cfg->sample_ratio <= 1))
        return sk_error_set(err, SK_EBADINPUT, "trace_sample", "the ratio must be in [0, 1]");
    tr_config c = *cfg;
    fill_defaults(&c);
    int rc = tr_queue_create(c.queue_max, &tracer.q);
    if (rc)
        return rc;
    rc = tr_exporter_start(&c, tracer.q, &tracer.x, err);
    if (rc) {
        tr_queue_destroy(tracer.q);
        tracer.q = NULL;
        return rc;
    }
    tracer.all = c.sample_ratio >= 1;
    atomic_store(&tracer.threshold,
                 c.sample_ratio < 1 ? (uint64_t)ldexp(c.sample_ratio, 64) : UINT64_MAX);
    atomic_store(&tracer.on, true);
    return 0;
}

void tr_tracer_stop(void)
{
    if (!tracer.x)
        return;
    atomic_store(&tracer.on, false);
    tr_exporter_stop(tracer.x);
    tr_queue_destroy(tracer.q);
    tracer.x = NULL;
    tracer.q = NULL;
    tr_spans_drain();
}

bool tr_enabled(void)
{
    return atomic_load_explicit(&tracer.on, memory_order_relaxed);
}

bool tr_sample_root(void)
{
    if (!tr_enabled())
        return false;
    if (tracer.all)
        return true;
    uint64_t r;
    tr_random_ids((uint8_t *)&r, sizeof r);
    return r < atomic_load_explicit(&tracer.threshold, memory_order_relaxed);
}

/* A span ended after tr_tracer_stop began (on a thread the program has not joined yet)
 * is dropped: the queue may be gone. */
void tr_submit(tr_span *s)
{
    if (!tr_enabled() || tr_queue_push(tracer.q, s) != 0) {
        tr_span_release(s);
        tr_count_dropped(1);
        return;
    }
    atomic_fetch_add_explicit(&tracer.started, 1, memory_order_relaxed);
}

void tr_count_exported(uint64_t n)
{
    atomic_fetch_add_explicit(&tracer.exported, n, memory_order_relaxed);
}

void tr_count_dropped(uint64_t n)
{
    atomic_fetch_add_explicit(&tracer.dropped, n, memory_order_relaxed);
}

void tr_count_batch_failed(void)
{
    atomic_fetch_add_explicit(&tracer.failed, 1, memory_order_relaxed);
}

void tr_get_stats(tr_stats *out)
{
    out->spans_started = atomic_load(&tracer.started);
    out->spans_exported = atomic_load(&tracer.exported);
    out->spans_dropped = atomic_load(&tracer.dropped);
    out->batches_failed = atomic_load(&tracer.failed);
    out->queue_depth = tracer.q && tr_enabled() ? tr_queue_depth(tracer.q) : 0;
}
