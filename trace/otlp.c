/*
 * otlp.c -- a batch of spans as an OTLP ExportTraceServiceRequest in the JSON encoding
 * of the OTLP/HTTP specification (POST /v1/traces): trace and span ids as hex strings
 * (not base64: the specification's exception for JSON), times as decimal strings of
 * nanoseconds since the epoch (int64 in proto3 JSON), enum values as integers, keys in
 * lowerCamelCase. One resource (service.name) and one scope ("skald").
 */
#include <inttypes.h>
#include <stdlib.h>

#include "trace/trace_int.h"

/* SpanKind of opentelemetry/proto/trace/v1/trace.proto */
static int otlp_kind(tr_kind k)
{
    switch (k) {
    case TR_KIND_SERVER:
        return 2;
    case TR_KIND_CLIENT:
        return 3;
    case TR_KIND_PRODUCER:
        return 4;
    case TR_KIND_CONSUMER:
        return 5;
    default:
        return 1; /* SPAN_KIND_INTERNAL */
    }
}

static json_t *nanos(int64_t us)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRId64 "000", us);
    return json_string(text);
}

static json_t *attr_json(const tr_attr *a)
{
    char num[24];
    if (a->is_int) {
        snprintf(num, sizeof num, "%" PRId64, a->i);
        return json_pack("{s:s, s:{s:s}}", "key", a->key, "value", "intValue", num);
    }
    return json_pack("{s:s, s:{s:s}}", "key", a->key, "value", "stringValue", a->s);
}

static json_t *links_json(const tr_span *s)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < s->nlinks; i++) {
        char trace[33], id[17];
        tr_hex(s->links[i].trace_id, 16, trace);
        tr_hex(s->links[i].span_id, 8, id);
        json_array_append_new(arr, json_pack("{s:s, s:s}", "traceId", trace, "spanId", id));
    }
    return arr;
}

static json_t *span_json(const tr_span *s)
{
    char trace[33], id[17], parent[17] = "";
    tr_hex(s->ctx.trace_id, 16, trace);
    tr_hex(s->ctx.span_id, 8, id);
    if (s->has_parent)
        tr_hex(s->parent_id, 8, parent);
    json_t *attrs = json_array();
    for (uint32_t i = 0; attrs && i < s->nattrs; i++)
        json_array_append_new(attrs, attr_json(&s->attrs[i]));
    /* STATUS_CODE_ERROR = 2, STATUS_CODE_UNSET = 0 */
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:{s:i}}", "traceId", trace,
                     "spanId", id, "parentSpanId", parent, "name", s->name, "kind",
                     otlp_kind(s->kind), "startTimeUnixNano", nanos(s->start_us), "endTimeUnixNano",
                     nanos(s->end_us), "attributes", attrs, "links", links_json(s), "status",
                     "code", s->error ? 2 : 0);
}

char *tr_otlp_encode(tr_span *const *spans, uint32_t n, const char *service_name)
{
    json_t *list = json_array();
    for (uint32_t i = 0; list && i < n; i++)
        if (json_array_append_new(list, span_json(spans[i])) != 0) {
            json_decref(list);
            return NULL;
        }
    if (!list)
        return NULL;
    json_t *req = json_pack("{s:[{s:{s:[{s:s, s:{s:s}}]}, s:[{s:{s:s}, s:o}]}]}", "resourceSpans",
                            "resource", "attributes", "key", "service.name", "value", "stringValue",
                            service_name, "scopeSpans", "scope", "name", "skald", "spans", list);
    if (!req)
        return NULL;
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return text;
}
