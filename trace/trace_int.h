/* trace/trace_int.h -- what the files of trace/ share; nothing outside includes it
 * (tests that exercise one piece directly excepted). */
#ifndef SKALD_TRACE_INT_H
#define SKALD_TRACE_INT_H

#include "trace/trace.h"

typedef struct tr_attr {
    const char *key; /* static */
    bool is_int;
    int64_t i;
    char s[TR_ATTR_VALUE_MAX];
} tr_attr;

/* One span: a fixed record, malloc'd at start, freed by the exporter after export. */
struct tr_span {
    tr_ctx ctx;
    uint8_t parent_id[8];
    bool has_parent;
    bool batch;    /* tr_span_start_batch: parent and sampling settled at end */
    char name[64]; /* cut if longer */
    tr_kind kind;
    int64_t start_us, end_us; /* wall clock, microseconds since the epoch */
    bool error;
    uint32_t nattrs;
    tr_attr attrs[TR_ATTRS_MAX];
    uint32_t nlinks, links_dropped;
    tr_ctx links[TR_LINKS_MAX];
};

/* A span's record from the pool, or NULL (span.c); back to the pool when exported or
 * dropped. tr_spans_drain frees what the pool keeps (at the tracer's stop). */
tr_span *tr_span_alloc(void);
void tr_span_release(tr_span *s);
void tr_spans_drain(void);

/* ---- the queue (queue.c): bounded, many producers, one consumer ---- */
typedef struct tr_queue tr_queue;
int tr_queue_create(uint32_t capacity, tr_queue **out);
void tr_queue_destroy(tr_queue *q); /* frees the spans still queued; accepts NULL */
/* 0, or SK_EBUSY when full (the span stays the caller's). Never blocks on the consumer. */
int tr_queue_push(tr_queue *q, tr_span *s);
/* Up to max spans into out; waits up to wait_ms for the first one or for max to gather.
 * Returns the number taken. */
uint32_t tr_queue_pop(tr_queue *q, tr_span **out, uint32_t max, uint32_t wait_ms);
uint32_t tr_queue_depth(tr_queue *q);
void tr_queue_wake(tr_queue *q); /* ends a pop's wait (at stop) */

/* ---- JSON: events/json_out.c's writer, and bytes as quoted lower-case hex (context.c) ---- */
void tr_json_hex(ev_json_out *o, const uint8_t *bytes, size_t n);

/* ---- encoders (zipkin.c, otlp.c): the body of one POST; caller owns the result ---- */
char *tr_zipkin_encode(tr_span *const *spans, uint32_t n, const char *service_name);
char *tr_otlp_encode(tr_span *const *spans, uint32_t n, const char *service_name);

/* ---- the HTTP/1.1 client (http_client.c) ---- */
typedef struct tr_url {
    char host[256];
    char port[8];
    char path[512];
} tr_url;
/* "http://host[:port][/path]"; 0 or SK_EBADINPUT. Only http (a collector on loopback or
 * a private network; TLS is a collector's job). */
int tr_url_parse(const char *text, tr_url *out);
/* POSTs body (application/json) and reads the status. Returns the HTTP status (> 0) or a
 * negative code (-ETIMEDOUT, -ECONNREFUSED, ...). Whole exchange bounded by timeout_ms. */
int tr_http_post(const tr_url *url, const char *body, size_t len, uint32_t timeout_ms);

/* ---- the exporter (exporter.c) ---- */
typedef struct tr_exporter tr_exporter;
int tr_exporter_start(const tr_config *cfg, tr_queue *q, tr_exporter **out, sk_error *err);
void tr_exporter_stop(tr_exporter *x); /* drains the queue (bounded), joins */

/* ---- the tracer (tracer.c) ---- */
/* True with probability ratio (the tracer's); false when tracing is off. */
bool tr_sample_root(void);
/* The span's record goes to the queue, or is dropped and counted. */
void tr_submit(tr_span *s);
void tr_count_exported(uint64_t n);
void tr_count_dropped(uint64_t n);
void tr_count_batch_failed(void);
/* Fresh random ids (never all zero), from a per-thread generator. */
void tr_random_ids(uint8_t *bytes, size_t n);

#endif
