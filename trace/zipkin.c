/*
 * zipkin.c -- a batch of spans as Zipkin's v2 JSON (POST /api/v2/spans): ids in hex,
 * timestamp and duration in microseconds, attributes as string tags. Zipkin has no span
 * links: they go into one tag, "links", as "traceid-spanid" separated by commas, so the
 * group commit a command rode in can still be found from the command's trace.
 */
#include <inttypes.h>

#include "trace/trace_int.h"

static const char *kind_name(tr_kind k)
{
    switch (k) {
    case TR_KIND_SERVER:
        return "SERVER";
    case TR_KIND_CLIENT:
        return "CLIENT";
    case TR_KIND_PRODUCER:
        return "PRODUCER";
    case TR_KIND_CONSUMER:
        return "CONSUMER";
    default:
        return NULL;
    }
}

static void put_links(ev_json_out *o, const tr_span *s)
{
    char pair[50];
    ev_json_out_lit(o, "\"links\":\"");
    for (uint32_t i = 0; i < s->nlinks; i++) {
        tr_hex(s->links[i].trace_id, 16, pair);
        pair[32] = '-';
        tr_hex(s->links[i].span_id, 8, pair + 33);
        if (i)
            ev_json_out_raw(o, ",", 1);
        ev_json_out_raw(o, pair, 49);
    }
    ev_json_out_raw(o, "\"", 1);
}

static void put_tags(ev_json_out *o, const tr_span *s)
{
    ev_json_out_lit(o, ",\"tags\":{");
    for (uint32_t i = 0; i < s->nattrs; i++) {
        const tr_attr *a = &s->attrs[i];
        if (i)
            ev_json_out_raw(o, ",", 1);
        ev_json_out_str(o, a->key);
        ev_json_out_raw(o, ":", 1);
        if (a->is_int)
            ev_json_out_fmt(o, "\"%" PRId64 "\"", a->i);
        else
            ev_json_out_str(o, a->s);
    }
    if (s->nlinks) {
        if (s->nattrs)
            ev_json_out_raw(o, ",", 1);
        put_links(o, s);
    }
    if (s->error)
        ev_json_out_lit(o, s->nattrs || s->nlinks ? ",\"error\":\"true\"" : "\"error\":\"true\"");
    ev_json_out_raw(o, "}", 1);
}

static void put_span(ev_json_out *o, const tr_span *s, const char *service_name)
{
    int64_t duration = s->end_us - s->start_us;
    ev_json_out_lit(o, "{\"traceId\":");
    tr_json_hex(o, s->ctx.trace_id, 16);
    ev_json_out_lit(o, ",\"id\":");
    tr_json_hex(o, s->ctx.span_id, 8);
    if (s->has_parent) {
        ev_json_out_lit(o, ",\"parentId\":");
        tr_json_hex(o, s->parent_id, 8);
    }
    ev_json_out_lit(o, ",\"name\":");
    ev_json_out_str(o, s->name);
    if (kind_name(s->kind))
        ev_json_out_fmt(o, ",\"kind\":\"%s\"", kind_name(s->kind));
    ev_json_out_fmt(o, ",\"timestamp\":%" PRId64 ",\"duration\":%" PRId64, s->start_us,
                    duration > 0 ? duration : 1);
    ev_json_out_lit(o, ",\"localEndpoint\":{\"serviceName\":");
    ev_json_out_str(o, service_name);
    ev_json_out_raw(o, "}", 1);
    put_tags(o, s);
    ev_json_out_raw(o, "}", 1);
}

char *tr_zipkin_encode(tr_span *const *spans, uint32_t n, const char *service_name)
{
    ev_json_out o = {0};
    ev_json_out_raw(&o, "[", 1);
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            ev_json_out_raw(&o, ",", 1);
        put_span(&o, spans[i], service_name);
    }
    ev_json_out_raw(&o, "]", 1);
    return ev_json_out_take(&o, NULL);
}
