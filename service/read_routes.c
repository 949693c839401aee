/*
 * read_routes.c -- GET /v1/streams/{id} and GET /v1/events: pages of events with their
 * envelopes and payloads decoded to JSON, straight from store/ readers.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define READ_LIMIT 1000

static int query_u64(svc_request *rq, const char *name, uint64_t def, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    const char *v = svc_query(rq, name);
    if (!v) {
        *out = def;
        return 0;
    }
    uint64_t n;
    if (svc_parse_u64(v, &n) != 0 || n < min || n > max) {
        svc_problem(rq, 400, "invalid_parameter", name, "%s must be a whole number in %llu..%llu",
                    name, (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = n;
    return 0;
}

json_t *svc_event_json(svc_app *app, const ev_event *ev, sk_error *err)
{
    json_t *env = ev_envelope_to_json(ev);
    json_t *payload = NULL;
    if (!env || ev_payload_to_json(app->events, ev->schema_id, ev->payload, ev->payload_size,
                                   &payload, err) != 0) {
        json_decref(env);
        return NULL;
    }
    json_object_set_new(env, "payload", payload);
    return env;
}

/* Reads up to limit events from r (closed here) into a new array; *last is the last
 * event read, *n how many. NULL after answering 503. */
static json_t *read_page(svc_request *rq, store_reader *r, uint64_t limit, ev_event *last,
                         uint64_t *n)
{
    sk_error err = {0};
    json_t *events = json_array();
    int rc = 0;
    *n = 0;
    while (*n < limit && (rc = store_reader_next(r, last, &err)) == 1) {
        json_t *e = svc_event_json(rq->app, last, &err);
        if (!e) {
            rc = err.code ? err.code : -ENOMEM;
            break;
        }
        json_array_append_new(events, e);
        (*n)++;
    }
    store_reader_close(r);
    if (rc < 0) {
        json_decref(events);
        svc_problem(rq, 503, "unavailable", NULL, "cannot read the log: %s", err.message);
        return NULL;
    }
    return events;
}

int svc_route_stream(svc_request *rq)
{
    uint64_t from, limit;
    if (query_u64(rq, "from_version", 1, 1, UINT64_MAX - 1, &from) ||
        query_u64(rq, "limit", 100, 1, READ_LIMIT, &limit))
        return 0;
    if (strlen(rq->arg) > EV_STREAM_ID_MAX) {
        svc_problem(rq, 400, "invalid_parameter", "stream_id", "a stream id has at most %d bytes",
                    EV_STREAM_ID_MAX);
        return 0;
    }
    ev_str id = ev_str_of(rq->arg);
    uint64_t version = store_log_stream_version(rq->app->log, id);
    store_reader *r;
    if (store_reader_open_stream(rq->app->log, id, from, &r) != 0) {
        svc_problem(rq, 503, "unavailable", NULL, "cannot read stream %s", rq->arg);
        return 0;
    }
    ev_event last;
    uint64_t n;
    json_t *events = read_page(rq, r, limit, &last, &n);
    if (!events)
        return 0;
    uint64_t next = n ? last.version + 1 : from;
    json_t *o = json_pack("{s:s, s:I, s:o}", "stream_id", rq->arg, "version", (json_int_t)version,
                          "events", events);
    json_object_set_new(o, "next_version",
                        next <= version ? json_integer((json_int_t)next) : json_null());
    svc_answer_json(rq, 200, o);
    return 0;
}

int svc_route_events(svc_request *rq)
{
    uint64_t from, limit;
    if (query_u64(rq, "from_position", 0, 0, UINT64_MAX - 1, &from) ||
        query_u64(rq, "limit", 100, 1, READ_LIMIT, &limit))
        return 0;
    uint64_t head = store_log_head(rq->app->log);
    store_reader *r;
    if (store_reader_open(rq->app->log, from, &r) != 0) {
        svc_problem(rq, 503, "unavailable", NULL, "cannot read the log");
        return 0;
    }
    ev_event last;
    uint64_t n;
    json_t *events = read_page(rq, r, limit, &last, &n);
    if (!events)
        return 0;
    uint64_t next = n ? last.position + 1 : from;
    json_t *o = json_pack("{s:o, s:I}", "events", events, "head", (json_int_t)head);
    json_object_set_new(o, "next_position",
                        next < head ? json_integer((json_int_t)next) : json_null());
    svc_answer_json(rq, 200, o);
    return 0;
}
