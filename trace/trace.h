/*
 * trace/trace.h -- spans: W3C trace context, span records, and their export on a thread
 * of their own (docs/tracing.md). The layer sits between events/ and store/, so that the
 * log, the bus, the projections and the sagas record spans without knowing the service.
 *
 * Calling sequence:
 *   tr_tracer_start(&cfg, &err)          once, by the program (skald serve); until then
 *                                        and after tr_tracer_stop every span is NULL
 *   s = tr_span_start(name, kind, parent) on any thread; NULL when not sampled
 *   tr_span_attr_str/int(s, ...)         NULL s is accepted everywhere: callers never test
 *   tr_span_link(s, &ctx)
 *   tr_span_end(s)                       hands the record to the exporter; never blocks:
 *                                        a full queue drops it (counted)
 *   tr_tracer_stop()                     exports what is queued (bounded) and joins
 *
 * The tracer is process-wide, like the logger (events/log.c): the layers that record
 * spans are handed no tracer object, so a span costs one atomic load when tracing is off.
 * Errors: functions that can fail return 0 or a negative code (SK_EBADINPUT, -ENOMEM).
 */
#ifndef SKALD_TRACE_H
#define SKALD_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events/events.h"

/* ---- trace context (context.c) ---- */

#define TR_TRACEPARENT_SIZE 56 /* "00-" 32 "-" 16 "-" 2, and the NUL */
#define TR_FLAG_SAMPLED     0x01

typedef struct tr_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;
    bool valid; /* false: no context */
} tr_ctx;

/* W3C traceparent "00-<32 hex>-<16 hex>-<2 hex>", ids not all zero. 0 or SK_EBADINPUT
 * (*out untouched). */
int tr_ctx_parse(const char *text, tr_ctx *out);
/* The traceparent of c into out (TR_TRACEPARENT_SIZE bytes). */
void tr_ctx_format(const tr_ctx *c, char *out);
/* The context an event carries in its metadata (EV_META_TRACEPARENT); invalid if none. */
tr_ctx tr_ctx_of_event(const ev_event *ev);
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void tr_hex(const uint8_t *bytes, size_t n, char *out);
/* A fresh root context (new trace and span ids) whose sampled flag follows the tracer's
 * ratio: what a request without traceparent propagates even when it records nothing. */
tr_ctx tr_ctx_new_root(void);

/* ---- spans (span.c) ---- */

typedef enum tr_kind {
    TR_KIND_INTERNAL = 0,
    TR_KIND_SERVER,
    TR_KIND_CLIENT,
    TR_KIND_PRODUCER,
    TR_KIND_CONSUMER,
} tr_kind;

#define TR_ATTRS_MAX      16
#define TR_ATTR_VALUE_MAX 128 /* longer strings are cut */
#define TR_LINKS_MAX      64  /* more are counted in the skald.links_dropped attribute */

typedef struct tr_span tr_span;

/*
 * Starts a span now. parent NULL or invalid: a new trace, sampled at the tracer's ratio;
 * otherwise a child of parent, sampled as the parent is (parent-based sampling). name is
 * copied (63 bytes kept). Returns NULL when tracing is off or the span is not sampled; the
 * caller owns the span until tr_span_end.
 */
tr_span *tr_span_start(const char *name, tr_kind kind, const tr_ctx *parent);
/*
 * A batch span (a group commit, a projection batch, a delivery): it starts now, takes
 * links (tr_span_link_event), and at tr_span_end is kept only if one of its links is
 * sampled. If every link is in one trace, the span is recorded inside that trace, a
 * child of the first linked span, so a backend without links (Zipkin) still shows it in
 * the process's trace; otherwise it is a root span of its own. NULL when tracing is off.
 */
tr_span *tr_span_start_batch(const char *name, tr_kind kind);
/* The span's context (what children and outgoing traceparents carry); invalid for NULL. */
tr_ctx tr_span_ctx(const tr_span *s);
void tr_span_attr_str(tr_span *s, const char *key, const char *value); /* key static */
void tr_span_attr_int(tr_span *s, const char *key, int64_t value);
void tr_span_link(tr_span *s, const tr_ctx *linked); /* invalid contexts are ignored */
void tr_span_link_event(tr_span *s, const ev_event *ev);
void tr_span_set_error(tr_span *s, const char *message);
/* Ends the span now and queues it for export; s is taken (freed by the exporter or here). */
void tr_span_end(tr_span *s);

/* ---- the tracer (tracer.c) ---- */

typedef enum tr_exporter_kind {
    TR_EXPORTER_NONE = 0,
    TR_EXPORTER_OTLP,   /* OTLP/HTTP JSON, POST .../v1/traces */
    TR_EXPORTER_ZIPKIN, /* Zipkin v2 JSON, POST .../api/v2/spans */
} tr_exporter_kind;

typedef struct tr_config {
    tr_exporter_kind exporter;
    const char *endpoint;       /* "http://host:port/path" (the full URL POSTed to) */
    double sample_ratio;        /* 0..1: roots sampled; children follow their parent */
    const char *service_name;   /* "skald" if NULL */
    uint32_t queue_max;         /* spans waiting for export; 0: 8192 */
    uint32_t batch_max;         /* spans per POST; 0: 512 */
    uint32_t flush_interval_ms; /* longest a span waits; 0: 200 */
    uint32_t timeout_ms;        /* connect + send + answer of one POST; 0: 2000 */
} tr_config;

/* "none" | "otlp" | "zipkin" -> kind; 0 or SK_EBADINPUT. */
int tr_exporter_parse(const char *text, tr_exporter_kind *out);
const char *tr_exporter_name(tr_exporter_kind kind);
/* The endpoint a kind POSTs to when none is given ("" for none). */
const char *tr_default_endpoint(tr_exporter_kind kind);

/* Starts the exporter thread (nothing for TR_EXPORTER_NONE). 0, SK_EBADINPUT (err names
 * the endpoint or the ratio), SK_EEXIST-like SK_EBUSY when already started, -ENOMEM or a
 * pthread error. */
int tr_tracer_start(const tr_config *cfg, sk_error *err);
/* Stops recording, exports what is queued (one more POST per batch, each bounded by the
 * timeout), joins the thread. Accepts a tracer never started. */
void tr_tracer_stop(void);
/* True while spans are being recorded (an exporter runs). */
bool tr_enabled(void);

typedef struct tr_stats {
    uint64_t spans_started;  /* sampled spans recorded */
    uint64_t spans_exported; /* accepted by the backend (2xx) */
    uint64_t spans_dropped;  /* queue full, backend down or refusing, encoding failed */
    uint64_t batches_failed; /* POSTs that failed */
    uint64_t queue_depth;    /* now */
} tr_stats;
void tr_get_stats(tr_stats *out);

#endif
