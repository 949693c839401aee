/*
 * tracing.c -- the service's part of tracing (docs/tracing.md): the tracer started from
 * the --trace-* options, and the server span of each HTTP request. A request's span is
 * the child of an incoming traceparent (which also decides sampling) or starts a trace;
 * the commands it sends carry the span's context in their events' metadata, and the
 * answer carries it in a `traceparent` header, so the caller learns the trace id.
 */
#include "service/serve_int.h"

#include <stdio.h>
#include <string.h>

int svc_tracing_start(sk_error *err)
{
    tr_config c = {.exporter = svc_cfg.trace_exporter,
                   .endpoint = svc_cfg.trace_endpoint,
                   .sample_ratio = svc_cfg.trace_sample,
                   .service_name = "skald"};
    int rc = tr_tracer_start(&c, err);
    if (rc == 0 && c.exporter != TR_EXPORTER_NONE)
        svc_log(SK_LOG_INFO, "tracing", "exporter", tr_exporter_name(c.exporter), "endpoint",
                c.endpoint ? c.endpoint : tr_default_endpoint(c.exporter), SVC_END);
    return rc;
}

void svc_tracing_stop(void)
{
    tr_tracer_stop();
}

void svc_tracing_request_begin(svc_request *rq, const char *method)
{
    if (!tr_enabled())
        return;
    tr_ctx parent = {0}, ctx;
    const char *tp = svc_header(rq, "traceparent");
    if (tp)
        tr_ctx_parse(tp, &parent);
    char name[64];
    snprintf(name, sizeof name, "%s %s", method, rq->route ? rq->route->path : "");
    rq->span = tr_span_start(name, TR_KIND_SERVER, &parent);
    if (rq->span) {
        ctx = tr_span_ctx(rq->span);
        tr_span_attr_str(rq->span, "http.request.method", method);
        if (rq->route)
            tr_span_attr_str(rq->span, "http.route", rq->route->path);
        tr_span_attr_str(rq->span, "skald.request_id", rq->request_id);
    } else if (parent.valid) {
        ctx = parent; /* not sampled: pass the caller's decision on unchanged */
    } else {
        ctx = tr_ctx_new_root(); /* not sampled: a trace id all the same, for the answer */
        ctx.flags &= (uint8_t)~TR_FLAG_SAMPLED;
    }
    tr_ctx_format(&ctx, rq->traceparent);
}

void svc_tracing_request_end(svc_request *rq, struct MHD_Response *resp)
{
    if (rq->traceparent[0])
        MHD_add_response_header(resp, "traceparent", rq->traceparent);
    if (!rq->span)
        return;
    tr_span_attr_int(rq->span, "http.response.status_code", rq->status);
    if (rq->principal)
        tr_span_attr_str(rq->span, "enduser.id", rq->principal);
    if (rq->status >= 500)
        tr_span_set_error(rq->span, NULL);
    tr_span_end(rq->span);
    rq->span = NULL;
}

void svc_tracing_request_abandon(svc_request *rq)
{
    if (!rq->span)
        return;
    tr_span_set_error(rq->span, "the connection ended before the answer");
    tr_span_end(rq->span);
    rq->span = NULL;
}

void svc_tracing_context(const svc_request *rq, char *out, size_t size)
{
    if (rq->traceparent[0])
        snprintf(out, size, "%s", rq->traceparent);
}
