/*
 * zipkin.c -- a batch of spans as Zipkin's v2 JSON (POST /api/v2/spans): ids in hex,
 * timestamp and duration in microseconds, attributes as string tags. Zipkin has no span
 * links: they go into one tag, "links", as "traceid-spanid" separated by commas, so the
 * group commit a command rode in can still be found from the command's trace.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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

static json_t *links_tag(const tr_span *s)
{
    size_t size = (size_t)s->nlinks * 50 + 1;
    char *text = malloc(size), *p = text;
    if (!text)
        return NULL;
    *p = '\0';
    for (uint32_t i = 0; i < s->nlinks; i++) {
        if (i)
            *p++ = ',';
        tr_hex(s->links[i].trace_id, 16, p);
        p[32] = '-';
        tr_hex(s->links[i].span_id, 8, p + 33);
        p += 49;
    }
    json_t *v = json_string(text);
    free(text);
    return v;
}

static json_t *tags_of(const tr_span *s)
{
    json_t *tags = json_object();
    for (uint32_t i = 0; tags && i < s->nattrs; i++) {
        const tr_attr *a = &s->attrs[i];
        char num[24];
        if (a->is_int)
            snprintf(num, sizeof num, "%" PRId64, a->i);
        json_object_set_new(tags, a->key, json_string(a->is_int ? num : a->s));
    }
    if (tags && s->nlinks)
        json_object_set_new(tags, "links", links_tag(s));
    if (tags && s->error)
        json_object_set_new(tags, "error", json_string("true"));
    return tags;
}

static json_t *span_json(const tr_span *s, json_t *endpoint)
{
    char trace[33], id[17], parent[17];
    tr_hex(s->ctx.trace_id, 16, trace);
    tr_hex(s->ctx.span_id, 8, id);
    int64_t duration = s->end_us - s->start_us;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:O, s:o}", "traceId", trace, "id", id, "name",
                          s->name, "timestamp", (json_int_t)s->start_us, "duration",
                          (json_int_t)(duration > 0 ? duration : 1), "localEndpoint", endpoint,
                          "tags", tags_of(s));
    if (o && s->has_parent) {
        tr_hex(s->parent_id, 8, parent);
        json_object_set_new(o, "parentId", json_string(parent));
    }
    if (o && kind_name(s->kind))
        json_object_set_new(o, "kind", json_string(kind_name(s->kind)));
    return o;
}

char *tr_zipkin_encode(tr_span *const *spans, uint32_t n, const char *service_name)
{
    json_t *arr = json_array();
    json_t *endpoint = json_pack("{s:s}", "serviceName", service_name);
    char *text = NULL;
    if (!arr || !endpoint)
        goto fail;
    for (uint32_t i = 0; i < n; i++)
        if (json_array_append_new(arr, span_json(spans[i], endpoint)) != 0)
            goto fail;
    text = json_dumps(arr, JSON_COMPACT);
fail:
    json_decref(endpoint);
    json_decref(arr);
    return text;
}
