/*
 * routes.c -- the route table of docs/http-api.md, and the small routes: noop, health,
 * readiness, metrics, the OpenAPI document. Commands are in command_routes.c, reads of
 * the log in read_routes.c, the dashboard's page and files in dashboard.c.
 */
#include "service/serve_int.h"

#include <stdlib.h>
#include <string.h>

static int route_noop(svc_request *rq)
{
    svc_answer(rq, 200, "application/json", strdup("{}"), 2);
    return 0;
}

static int route_healthz(svc_request *rq)
{
    svc_answer(rq, 200, "application/json", strdup("{\"status\":\"ok\"}"), 15);
    return 0;
}

static int route_readyz(svc_request *rq)
{
    store_log_stats st = {.state = STORE_STATE_READ_ONLY};
    if (rq->app->log) /* a read replica (--source=kafka) has none */
        store_log_get_stats(rq->app->log, &st);
    char why[512];
    bool writer = svc_cfg.roles & SVC_SERVES_COMMANDS; /* others follow the log read-only */
    if (atomic_load(&rq->app->draining)) {
        rq->retry_after = 1;
        svc_problem(rq, 503, "shutting_down", NULL,
                    "the server is shutting down (SIGTERM): it finishes the commands in flight "
                    "and accepts no new ones");
        return 0;
    }
    if (!atomic_load(&rq->app->ready) ||
        st.state != (writer ? STORE_STATE_OK : STORE_STATE_READ_ONLY)) {
        rq->retry_after = 1;
        svc_problem(rq, 503, "unavailable", NULL,
                    st.state == STORE_STATE_FAILED ? "the log failed and refuses appends"
                                                   : "not ready");
        return 0;
    }
    if (writer && svc_storage_full(rq->app, why, sizeof why)) {
        rq->retry_after = 5;
        svc_problem(rq, 503, "storage_full", NULL, "%s", why);
        return 0;
    }
    if (rq->app->idem && cmd_idem_health(rq->app->idem, why, sizeof why) != 0) {
        rq->retry_after = 1;
        svc_problem(rq, 503, "idempotency_unavailable", NULL,
                    "the idempotency journal failed (%s); keyed commands get 503 until it "
                    "is rewritten (tried every second)",
                    why);
        return 0;
    }
    /* a broker outage leaves the process ready: commands are accepted, the relay catches
     * up later; its state is in the body */
    json_t *body = json_pack("{s:s}", "status", "ready");
    json_t *relay = svc_relay_status_json(rq->app->relay);
    if (relay)
        json_object_set_new(body, "relay", relay);
    json_t *replica = svc_replica_status_json(rq->app);
    if (replica)
        json_object_set_new(body, "replica", replica);
    svc_answer_json(rq, 200, body);
    return 0;
}

static int route_metrics(svc_request *rq)
{
    svc_app *app = rq->app;
    char *text = svc_metrics_render(app->metrics, app->log, app->bus, atomic_load(&app->in_flight));
    text = svc_metrics_projections(app->projections, text);
    text = svc_metrics_feed(app->feed, text);
    text = svc_metrics_relay(app->relay, text);
    text = svc_metrics_sagas(app->sagas, text);
    text = svc_metrics_storage(app, text);
    text = svc_metrics_conns(app->conns, text);
    if (!text) {
        svc_problem(rq, 503, "unavailable", NULL, "out of memory");
        return 0;
    }
    svc_answer(rq, 200, "text/plain; version=0.0.4", text, strlen(text));
    return 0;
}

static int route_openapi(svc_request *rq)
{
    char *copy = malloc(rq->app->openapi_len + 1);
    if (copy)
        memcpy(copy, rq->app->openapi, rq->app->openapi_len + 1);
    svc_answer(rq, 200, "application/json", copy, copy ? rq->app->openapi_len : 0);
    return 0;
}

const svc_route svc_routes[] = {
    {"POST", "/v1/commands:batch", SVC_ROLE_PRODUCER, SVC_BODY_NDJSON, svc_route_batch,
     SVC_SERVES_COMMANDS},
    {"POST", "/v1/commands/{}", SVC_ROLE_PRODUCER, SVC_BODY_JSON, svc_route_command,
     SVC_SERVES_COMMANDS},
    {"GET", "/v1/streams/{}", SVC_ROLE_READER, SVC_BODY_NONE, svc_route_stream,
     SVC_SERVES_COMMANDS},
    {"GET", "/v1/events", SVC_ROLE_READER, SVC_BODY_NONE, svc_route_events, SVC_SERVES_COMMANDS},
    {"GET", "/v1/events/stream", SVC_ROLE_READER | SVC_AUTH_QUERY_TOKEN, SVC_BODY_NONE,
     svc_route_feed, SVC_SERVES_FEED},
    {"GET", "/v1/queries/{}", SVC_ROLE_READER, SVC_BODY_NONE, svc_route_query, SVC_SERVES_QUERIES},
    {"GET", "/v1/projections", SVC_ROLE_READER, SVC_BODY_NONE, svc_route_projections,
     SVC_SERVES_PROJECTIONS},
    {"GET", "/v1/projections/{}", SVC_ROLE_READER, SVC_BODY_NONE, svc_route_projection,
     SVC_SERVES_PROJECTIONS},
    {"POST", "/v1/projections/{}/rebuild", SVC_ROLE_ADMIN, SVC_BODY_NONE,
     svc_route_projection_rebuild, SVC_SERVES_PROJECTIONS},
    {"POST", "/v1/projections/{}/resume", SVC_ROLE_ADMIN, SVC_BODY_NONE,
     svc_route_projection_resume, SVC_SERVES_PROJECTIONS},
    {"POST", "/v1/projections/{}/skip", SVC_ROLE_ADMIN, SVC_BODY_JSON, svc_route_projection_skip,
     SVC_SERVES_PROJECTIONS},
    {"GET", "/v1/sagas", SVC_ROLE_READER, SVC_BODY_NONE, svc_route_sagas, SVC_SERVES_QUERIES},
    {"GET", "/v1/sagas/{}", SVC_ROLE_READER, SVC_BODY_NONE, svc_route_saga, SVC_SERVES_COMMANDS},
    {"POST", "/v1/sagas/{}/retry", SVC_ROLE_ADMIN, SVC_BODY_NONE, svc_route_saga_retry,
     SVC_SERVES_SAGAS},
    {"POST", "/v1/sagas/{}/abort", SVC_ROLE_ADMIN, SVC_BODY_NONE, svc_route_saga_abort,
     SVC_SERVES_SAGAS},
    {"POST", "/v1/noop", SVC_ROLE_PRODUCER, SVC_BODY_NONE, route_noop, 0},
    {"GET", "/healthz", 0, SVC_BODY_NONE, route_healthz, 0},
    {"GET", "/readyz", 0, SVC_BODY_NONE, route_readyz, 0},
    {"GET", "/metrics", 0, SVC_BODY_NONE, route_metrics, 0},
    {"GET", "/v1/openapi.json", 0, SVC_BODY_NONE, route_openapi, 0},
    {"GET", "/", 0, SVC_BODY_NONE, svc_route_dashboard, 0},
    {"GET", "/dashboard/{}", 0, SVC_BODY_NONE, svc_route_dashboard_asset, 0},
};
const size_t svc_nroutes = sizeof svc_routes / sizeof svc_routes[0];
