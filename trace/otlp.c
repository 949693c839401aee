/*
 * otlp.c -- a batch of spans as an OTLP ExportTraceServiceRequest in the JSON encoding
 * of the OTLP/HTTP specification (POST /v1/traces): trace and span ids as hex strings
 * (not base64: the specification's exception for JSON), times as decimal strings of
 * nanoseconds since the epoch (64-bit integers in the proto3 JSON mapping), enum values
 * as integers, keys in lowerCamelCase. One resource (service.name) and one scope
 * ("skald").
 */
#include <inttypes.h>

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

static void put_attr(ev_json_out *o, const tr_attr *a)
{
    ev_json_out_lit(o, "{\"key\":");
    ev_json_out_str(o, a->key);
    if (a->is_int) {
        ev_json_out_fmt(o, ",\"value\":{\"intValue\":\"%" PRId64 "\"}}", a->i);
    } else {
        ev_json_out_lit(o, ",\"value\":{\"stringValue\":");
        ev_json_out_str(o, a->s);
        ev_json_out_lit(o, "}}");
    }
}

static void put_span(ev_json_out *o, const tr_span *s)
{
    ev_json_out_lit(o, "{\"traceId\":");
    tr_json_hex(o, s->ctx.trace_id, 16);
    ev_json_out_lit(o, ",\"spanId\":");
    tr_json_hex(o, s->ctx.span_id, 8);
    ev_json_out_lit(o, ",\"parentSpanId\":");
    if (s->has_parent)
        tr_json_hex(o, s->parent_id, 8);
    else
        ev_json_out_lit(o, "\"\"");
    ev_json_out_lit(o, ",\"name\":");
    ev_json_out_str(o, s->name);
    /* microseconds written as nanoseconds: the same digits and "000" */
    ev_json_out_fmt(o,
                    ",\"kind\":%d,\"startTimeUnixNano\":\"%" PRId64
                    "000\",\"endTimeUnixNano\":\"%" PRId64 "000\"",
                    otlp_kind(s->kind), s->start_us, s->end_us);
    ev_json_out_lit(o, ",\"attributes\":[");
    for (uint32_t i = 0; i < s->nattrs; i++) {
        if (i)
            ev_json_out_raw(o, ",", 1);
        put_attr(o, &s->attrs[i]);
    }
    ev_json_out_lit(o, "],\"links\":[");
    for (uint32_t i = 0; i < s->nlinks; i++) {
        ev_json_out_lit(o, i ? ",{\"traceId\":" : "{\"traceId\":");
        tr_json_hex(o, s->links[i].trace_id, 16);
        ev_json_out_lit(o, ",\"spanId\":");
        tr_json_hex(o, s->links[i].span_id, 8);
        ev_json_out_raw(o, "}", 1);
    }
    /* STATUS_CODE_ERROR = 2, STATUS_CODE_UNSET = 0 */
    ev_json_out_fmt(o, "],\"status\":{\"code\":%d}}", s->error ? 2 : 0);
}

char *tr_otlp_encode(tr_span *const *spans, uint32_t n, const char *service_name)
{
    ev_json_out o = {0};
    ev_json_out_lit(&o,
                    "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
                    "\"value\":{\"stringValue\":");
    ev_json_out_str(&o, service_name);
    ev_json_out_lit(&o, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"skald\"},\"spans\":[");
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            ev_json_out_raw(&o, ",", 1);
        put_span(&o, spans[i]);
    }
    ev_json_out_lit(&o, "]}]}]}");
    return ev_json_out_take(&o, NULL);
}
