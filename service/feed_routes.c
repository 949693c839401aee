/*
 * feed_routes.c -- GET /v1/events/stream: reads the request (where to start, the
 * filters) and opens a stream of feed.c, whose response the server then sends.
 *
 * Where a stream starts, first match wins: after the Last-Event-ID header (a browser's
 * EventSource sends it when it reconnects to the same URL, so it must beat the URL's
 * from_position); at from_position; else at the durable head (new events only). A start
 * past the durable head is refused: such an id did not come from this log.
 */
#include "service/serve_int.h"

#include <stdio.h>
#include <string.h>

/* Copies a filter parameter; -1 after answering 400 naming it. */
static int filter(svc_request *rq, const char *name, char *out, size_t size)
{
    const char *v = svc_query(rq, name);
    out[0] = '\0';
    if (!v)
        return 0;
    size_t n = strlen(v);
    if (n == 0 || n >= size) {
        svc_problem(rq, 400, "invalid_parameter", name, "%s must have 1..%zu bytes", name,
                    size - 1);
        return -1;
    }
    memcpy(out, v, n + 1);
    return 0;
}

/* The first position to send; -1 after answering 400. */
static int start_position(svc_request *rq, uint64_t head, uint64_t *out)
{
    const char *last = svc_header(rq, "Last-Event-ID");
    const char *from = svc_query(rq, "from_position");
    const char *name = last ? "Last-Event-ID" : "from_position";
    uint64_t v;
    if (last) {
        if (svc_parse_u64(last, &v) != 0) {
            svc_problem(rq, 400, "invalid_parameter", name,
                        "Last-Event-ID must be an event id (a log position) this feed sent");
            return -1;
        }
        v++; /* the one after the last event the client has */
    } else if (from) {
        if (svc_parse_u64(from, &v) != 0) {
            svc_problem(rq, 400, "invalid_parameter", name,
                        "from_position must be a whole number in 0..%llu (the head)",
                        (unsigned long long)head);
            return -1;
        }
    } else {
        *out = head;
        return 0;
    }
    if (v > head) {
        svc_problem(rq, 400, "invalid_parameter", name,
                    "%s is past the head of the log (%llu): not an id of this log", name,
                    (unsigned long long)head);
        return -1;
    }
    *out = v;
    return 0;
}

int svc_route_feed(svc_request *rq)
{
    svc_app *app = rq->app;
    svc_feed_spec spec;
    memset(&spec, 0, sizeof spec);
    uint64_t head = store_log_durable_head(app->log);
    if (start_position(rq, head, &spec.from_position) != 0 ||
        filter(rq, "stream_id", spec.stream_id, sizeof spec.stream_id) != 0 ||
        filter(rq, "stream_prefix", spec.stream_prefix, sizeof spec.stream_prefix) != 0 ||
        filter(rq, "type", spec.type, sizeof spec.type) != 0)
        return 0;
    uint32_t schema_id;
    if (spec.type[0] && ev_registry_latest(app->events, spec.type, &schema_id) != 0) {
        svc_problem(rq, 400, "invalid_parameter", "type", "no event type '%s'", spec.type);
        return 0;
    }
    if (atomic_load(&app->draining) || !app->feed) {
        rq->retry_after = 1;
        svc_problem(rq, 503, "unavailable", NULL, "the server is shutting down");
        return 0;
    }
    snprintf(spec.request_id, sizeof spec.request_id, "%s", rq->request_id);
    sk_error err = {0};
    struct MHD_Response *resp;
    int rc = svc_feed_open(app->feed, rq->conn, &spec, &resp, &err);
    if (rc) {
        rq->retry_after = rc == SK_EBUSY ? 5 : 1;
        svc_problem(rq, 503, rc == SK_EBUSY ? "too_many_streams" : "unavailable", NULL, "%s",
                    err.message);
        return 0;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    /* proxies such as nginx would otherwise hold the stream back in their buffers */
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    rq->response = resp;
    rq->status = 200;
    rq->answer_type = "text/event-stream";
    if (sk_log_enabled(SK_LOG_DEBUG)) {
        char from[24];
        snprintf(from, sizeof from, "%llu", (unsigned long long)spec.from_position);
        svc_log(SK_LOG_DEBUG, "feed: stream opened", "request_id", rq->request_id, "principal",
                rq->principal, "from_position", from, "stream_id", spec.stream_id, "stream_prefix",
                spec.stream_prefix, "type", spec.type, SVC_END);
    }
    return 0;
}
