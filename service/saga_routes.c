/*
 * saga_routes.c -- the saga admin API.
 *
 *   GET  /v1/sagas?state=&type=      the `sagas` read model's query (keyset-paged, like
 *                                    /v1/queries): role queries, reader
 *   GET  /v1/sagas/{id}              the saga's summary and history, read from its stream
 *                                    `$saga-<id>` in the log: role commands, reader
 *   POST /v1/sagas/{id}/retry        a stuck saga runs its compensations again: role sagas,
 *   POST /v1/sagas/{id}/abort        admin; abort compensates a running (or stuck) saga
 *                                    and ends it `aborted`
 * Errors follow model_routes.c: 404 unknown saga, 409 a state that does not allow it,
 * 503 while stopping.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_MAX 10000

int svc_route_sagas(svc_request *rq)
{
    snprintf(rq->arg, sizeof rq->arg, "sagas");
    return svc_route_query(rq);
}

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

int svc_route_saga(svc_request *rq)
{
    char stream[EV_STREAM_ID_MAX + 1];
    if (strlen(rq->arg) + 6 > EV_STREAM_ID_MAX) {
        svc_problem(rq, 404, "unknown_saga", NULL, "no saga has an id that long");
        return 0;
    }
    snprintf(stream, sizeof stream, "$saga-%s", rq->arg);
    store_reader *r = NULL;
    int rc = store_reader_open_stream(rq->app->log, ev_str_of(stream), 1, &r);
    if (rc) {
        svc_problem(rq, 503, "unavailable", NULL, "cannot read the log: %s", sk_strerror(rc));
        return 0;
    }
    json_t *history = json_array();
    json_t *summary = json_pack("{s:s, s:s, s:s, s:n, s:s, s:n}", "saga_id", rq->arg, "type", "",
                                "state", "running", "order_id", "step", "", "last_error");
    ev_event ev;
    sk_error err = {0};
    size_t n = 0;
    while (history && summary && n < HISTORY_MAX && (rc = store_reader_next(r, &ev, &err)) == 1) {
        json_t *e = ev_envelope_to_json(&ev);
        json_t *p = NULL;
        if (ev_payload_to_json(rq->app->events, ev.schema_id, ev.payload, ev.payload_size, &p,
                               &err) != 0)
            p = json_null();
        json_object_set_new(e, "payload", p);
        json_object_set(summary, "updated_at", json_object_get(e, "occurred_at"));
        json_object_set_new(summary, "version", json_integer((json_int_t)ev.version));
        if (ev_str_eq(ev.type, "SagaStarted")) {
            json_object_set_new(summary, "type", json_string(str(p, "saga_type")));
            json_object_set_new(summary, "definition_version",
                                json_incref(json_object_get(p, "definition_version")));
            json_object_set_new(summary, "subject", json_string(str(p, "subject")));
            if (strcmp(str(p, "saga_type"), "OrderFulfillment") == 0)
                json_object_set_new(summary, "order_id", json_string(str(p, "subject")));
            json_object_set_new(summary, "correlation_id", json_string(str(p, "correlation_id")));
            json_object_set(summary, "started_at", json_object_get(e, "occurred_at"));
        } else if (ev_str_eq(ev.type, "SagaStepStarted")) {
            char step[128];
            snprintf(step, sizeof step, "%s:%s", str(p, "phase"), str(p, "name"));
            json_object_set_new(summary, "step", json_string(step));
        } else if (ev_str_eq(ev.type, "SagaStepFinished") && strcmp(str(p, "outcome"), "ok") != 0) {
            json_object_set_new(summary, "last_error", json_string(str(p, "reason")));
        } else if (ev_str_eq(ev.type, "SagaStateChanged")) {
            json_object_set_new(summary, "state", json_string(str(p, "state")));
            if (*str(p, "reason"))
                json_object_set_new(summary, "last_error", json_string(str(p, "reason")));
        }
        json_array_append_new(history, e);
        n++;
    }
    store_reader_close(r);
    if (!history || !summary || rc < 0) {
        json_decref(history);
        json_decref(summary);
        svc_problem(rq, rc < 0 ? 500 : 503, rc < 0 ? "internal" : "unavailable", NULL, "%s",
                    rc < 0 ? err.message : "out of memory");
        return 0;
    }
    if (n == 0) {
        json_decref(history);
        json_decref(summary);
        svc_problem(rq, 404, "unknown_saga", NULL, "no saga %s", rq->arg);
        return 0;
    }
    json_object_set_new(summary, "history", history);
    svc_answer_json(rq, 200, summary);
    return 0;
}

static void admin_done(void *ctx, int status, const char *message)
{
    svc_request *rq = ctx;
    if (status == 0)
        svc_answer_json(rq, 200, json_pack("{s:s, s:s}", "saga_id", rq->arg, "state", message));
    else if (status == SK_ENOTFOUND)
        svc_problem(rq, 404, "unknown_saga", NULL, "saga %s: %s", rq->arg, message);
    else if (status == SK_ECONFLICT)
        svc_problem(rq, 409, "invalid_state", NULL, "saga %s: %s", rq->arg, message);
    else
        svc_problem(rq, 503, "unavailable", NULL, "saga %s: %s", rq->arg, message);
    svc_request_done(rq);
}

static int admin(svc_request *rq, int abort)
{
    saga_engine *e = rq->app->sagas;
    int rc = abort ? saga_engine_abort(e, rq->arg, admin_done, rq)
                   : saga_engine_retry(e, rq->arg, admin_done, rq);
    if (rc) {
        rq->retry_after = 1;
        svc_problem(rq, 503, "unavailable", NULL, "%s", sk_strerror(rc));
        return 0;
    }
    return 1; /* admin_done answers once the state change is durable */
}

int svc_route_saga_retry(svc_request *rq)
{
    return admin(rq, 0);
}

int svc_route_saga_abort(svc_request *rq)
{
    return admin(rq, 1);
}

/* Appends printf-formatted text to *buf (len used of cap); a failed growth is remembered
 * in *buf being NULL. */
static void put(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (int tries = 0; *buf && tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        size_t grown_cap = (*cap + (size_t)n + 1) * 2;
        char *grown = realloc(*buf, grown_cap);
        if (!grown) {
            free(*buf);
            *buf = NULL;
            return;
        }
        *buf = grown;
        *cap = grown_cap;
    }
}

/* skald_saga_step_seconds: forward steps by latency, Prometheus's cumulative buckets. */
static void put_step_histogram(char **b, size_t *len, size_t *cap, const saga_stats *st)
{
    put(b, len, cap,
        "# HELP skald_saga_step_seconds Forward saga steps (any outcome), from their commands "
        "going out to their last answer or deadline.\n"
        "# TYPE skald_saga_step_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < SAGA_STEP_BUCKETS; i++) {
        cumulative += st->step_buckets[i];
        put(b, len, cap, "skald_saga_step_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
            saga_step_bounds_s[i], cumulative);
    }
    cumulative += st->step_buckets[SAGA_STEP_BUCKETS];
    put(b, len, cap,
        "skald_saga_step_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
        "skald_saga_step_seconds_sum %.6f\n"
        "skald_saga_step_seconds_count %" PRIu64 "\n",
        cumulative, (double)st->step_latency_us_sum / 1e6, st->steps_finished);
}

char *svc_metrics_sagas(saga_engine *e, char *text)
{
    if (!e || !text)
        return text;
    saga_stats st;
    saga_engine_get_stats(e, &st);
    size_t len = 0, cap = 4096;
    char *b = malloc(cap);
    put(&b, &len, &cap,
        "# HELP skald_sagas Sagas in flight by state (this orchestrator).\n"
        "# TYPE skald_sagas gauge\n"
        "skald_sagas{state=\"running\"} %" PRIu64 "\n"
        "skald_sagas{state=\"compensating\"} %" PRIu64 "\n"
        "skald_sagas{state=\"stuck\"} %" PRIu64 "\n"
        "# HELP skald_sagas_ended_total Sagas that ended since start, by state.\n"
        "# TYPE skald_sagas_ended_total counter\n"
        "skald_sagas_ended_total{state=\"completed\"} %" PRIu64 "\n"
        "skald_sagas_ended_total{state=\"compensated\"} %" PRIu64 "\n"
        "skald_sagas_ended_total{state=\"aborted\"} %" PRIu64 "\n"
        "# HELP skald_sagas_started_total Sagas started since start.\n"
        "# TYPE skald_sagas_started_total counter\n"
        "skald_sagas_started_total %" PRIu64 "\n",
        st.running_now, st.compensating_now, st.stuck_now, st.completed, st.compensated, st.aborted,
        st.started);
    put(&b, &len, &cap,
        "# HELP skald_saga_retries_total Saga command attempts after the first.\n"
        "# TYPE skald_saga_retries_total counter\n"
        "skald_saga_retries_total %" PRIu64 "\n"
        "# HELP skald_saga_compensations_total Compensation commands done.\n"
        "# TYPE skald_saga_compensations_total counter\n"
        "skald_saga_compensations_total %" PRIu64 "\n"
        "# HELP skald_saga_compensation_steps_total Compensation steps run to their end.\n"
        "# TYPE skald_saga_compensation_steps_total counter\n"
        "skald_saga_compensation_steps_total %" PRIu64 "\n"
        "# HELP skald_saga_timeouts_total Saga steps that timed out.\n"
        "# TYPE skald_saga_timeouts_total counter\n"
        "skald_saga_timeouts_total %" PRIu64 "\n",
        st.retries, st.compensations, st.compensation_steps, st.timeouts);
    put_step_histogram(&b, &len, &cap, &st);
    put(&b, &len, &cap,
        "# HELP skald_saga_snapshots_saved_total Saga states snapshotted.\n"
        "# TYPE skald_saga_snapshots_saved_total counter\n"
        "skald_saga_snapshots_saved_total %" PRIu64 "\n"
        "# HELP skald_saga_snapshot_loads_total Sagas loaded from a snapshot and the events "
        "after it.\n"
        "# TYPE skald_saga_snapshot_loads_total counter\n"
        "skald_saga_snapshot_loads_total %" PRIu64 "\n"
        "# HELP skald_saga_checkpoint_position The orchestrator's tail position.\n"
        "# TYPE skald_saga_checkpoint_position gauge\n"
        "skald_saga_checkpoint_position %" PRIu64 "\n",
        st.snapshots_saved, st.snapshot_loads, st.checkpoint);
    if (!b)
        return text;
    size_t tlen = strlen(text);
    char *out = realloc(text, tlen + len + 1);
    if (!out) {
        free(b);
        return text; /* realloc failed: text is still ours, without the saga lines */
    }
    memcpy(out + tlen, b, len + 1);
    free(b);
    return out;
}
