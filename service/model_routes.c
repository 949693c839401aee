/*
 * model_routes.c -- the read side over HTTP: named queries (/v1/queries/{name}) and the
 * projections' status and admin requests (/v1/projections...). The engines are
 * projections/ and queries/; this file maps their answers and errors onto HTTP.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Queries: the parameters are copied on the HTTP thread, and the query runs on the query
 * pool (work_pool.c), since a min_position wait may take up to 30 s.
 */
#define QUERY_PARAMS_MAX 32

typedef struct query_job {
    svc_request *rq;
    qry_param params[QUERY_PARAMS_MAX];
    size_t name_at[QUERY_PARAMS_MAX], value_at[QUERY_PARAMS_MAX]; /* offsets into strings */
    size_t count;
    bool too_many;
    char *strings; /* the names and values, copied */
    size_t strings_len, strings_cap;
} query_job;

/* Offsets into strings while collecting (it may move); pointers once complete. */
static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    query_job *j = cls;
    if (j->count == QUERY_PARAMS_MAX) {
        j->too_many = true;
        return MHD_NO;
    }
    const char *parts[2] = {key, value ? value : ""};
    size_t at[2];
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(parts[k]) + 1;
        if (j->strings_len + n > j->strings_cap) {
            size_t cap = (j->strings_cap + n) * 2;
            char *g = realloc(j->strings, cap);
            if (!g) {
                j->too_many = true;
                return MHD_NO;
            }
            j->strings = g;
            j->strings_cap = cap;
        }
        memcpy(j->strings + j->strings_len, parts[k], n);
        at[k] = j->strings_len;
        j->strings_len += n;
    }
    j->name_at[j->count] = at[0];
    j->value_at[j->count] = at[1];
    j->count++;
    return MHD_YES;
}

static void answer_query(svc_request *rq, int rc, json_t *answer, const qry_error *qe)
{
    const char *field = qe->err.field[0] ? qe->err.field : NULL;
    if (rc == 0) {
        svc_answer_json(rq, 200, answer);
    } else if (rc == SK_ENOTFOUND) {
        svc_problem(rq, 404, "unknown_query", NULL, "no query named %s", rq->arg);
    } else if (rc == SK_EBADINPUT) {
        svc_problem(rq, 400, "bad_parameter", field, "%s", qe->err.message);
    } else if (rc == -ETIMEDOUT) {
        json_t *p =
            svc_problem_json(504, "min_position_not_reached", "min_position", qe->err.message);
        json_object_set_new(p, "position", json_integer(qe->position));
        svc_answer_json(rq, 504, p);
    } else if (rc == SK_EBUSY) {
        rq->retry_after = 1;
        svc_problem(rq, 503, "unavailable", NULL, "%s", qe->err.message);
    } else {
        svc_problem(rq, 500, "internal", NULL, "query %s: %s", rq->arg,
                    qe->err.message[0] ? qe->err.message : sk_strerror(rc));
    }
}

static void run_query(void *arg)
{
    query_job *j = arg;
    svc_request *rq = j->rq;
    json_t *answer = NULL;
    qry_error qe;
    memset(&qe, 0, sizeof qe);
    int rc = qry_run(rq->app->queries, rq->arg, j->params, j->count, &answer, &qe);
    answer_query(rq, rc, answer, &qe);
    free(j->strings);
    free(j);
    svc_request_done(rq);
}

int svc_route_query(svc_request *rq)
{
    query_job *j = calloc(1, sizeof *j);
    if (!j) {
        svc_problem(rq, 503, "unavailable", NULL, "out of memory");
        return 0;
    }
    j->rq = rq;
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, collect_param, j);
    if (j->too_many) {
        free(j->strings);
        free(j);
        svc_problem(rq, 400, "bad_parameter", NULL, "at most %d parameters", QUERY_PARAMS_MAX);
        return 0;
    }
    for (size_t i = 0; i < j->count; i++) { /* offsets -> pointers, now that strings stays */
        j->params[i].name = j->strings + j->name_at[i];
        j->params[i].value = j->strings + j->value_at[i];
    }
    if (svc_work_submit(rq->app->query_pool, run_query, j) != 0) {
        free(j->strings);
        free(j);
        rq->retry_after = 1;
        svc_problem(rq, 503, "overloaded", NULL, "too many queries waiting; retry");
        return 0;
    }
    return 1; /* answered by run_query through svc_request_done */
}

/* ---------------------------------------------------------------------------------------
 * Projections.
 */
int svc_route_projections(svc_request *rq)
{
    proj_engine *e = rq->app->projections;
    json_t *list = json_array();
    for (size_t i = 0; i < proj_count(e); i++)
        json_array_append_new(list, proj_status_json(e, proj_name(e, i)));
    svc_answer_json(rq, 200, json_pack("{s:o}", "projections", list));
    return 0;
}

static int answer_status(svc_request *rq, unsigned status)
{
    json_t *st = proj_status_json(rq->app->projections, rq->arg);
    if (!st)
        svc_problem(rq, 404, "unknown_projection", NULL, "no projection named %s", rq->arg);
    else
        svc_answer_json(rq, status, st);
    return 0;
}

int svc_route_projection(svc_request *rq)
{
    return answer_status(rq, 200);
}

/* Maps an admin request's error onto HTTP. */
static int answer_error(svc_request *rq, int rc, const sk_error *err)
{
    const char *field = err->field[0] ? err->field : NULL;
    if (rc == SK_ENOTFOUND)
        svc_problem(rq, 404, "unknown_projection", NULL, "no projection named %s", rq->arg);
    else if (rc == SK_EBUSY)
        svc_problem(rq, 409, "rebuild_running", NULL, "%s", err->message);
    else if (rc == SK_ECONFLICT)
        svc_problem(rq, 409, "not_failed", field, "%s", err->message);
    else
        svc_problem(rq, 500, "internal", NULL, "%s", err->message);
    return 0;
}

int svc_route_projection_rebuild(svc_request *rq)
{
    sk_error err = {0};
    int rc = proj_rebuild(rq->app->projections, rq->arg, &err);
    return rc ? answer_error(rq, rc, &err) : answer_status(rq, 202);
}

int svc_route_projection_resume(svc_request *rq)
{
    sk_error err = {0};
    int rc = proj_resume(rq->app->projections, rq->arg, &err);
    return rc ? answer_error(rq, rc, &err) : answer_status(rq, 202);
}

int svc_route_projection_skip(svc_request *rq)
{
    json_error_t jerr;
    json_t *body = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, &jerr);
    json_t *pos = json_object_get(body, "position");
    if (!json_is_integer(pos) || json_integer_value(pos) < 0) {
        json_decref(body);
        svc_problem(rq, 400, "bad_field", "position",
                    "send {\"position\": P} with the failed event's position");
        return 0;
    }
    uint64_t position = (uint64_t)json_integer_value(pos);
    json_decref(body);
    sk_error err = {0};
    int rc = proj_skip(rq->app->projections, rq->arg, position, &err);
    return rc ? answer_error(rq, rc, &err) : answer_status(rq, 202);
}

/* ---------------------------------------------------------------------------------------
 * Metrics.
 */
char *svc_metrics_projections(proj_engine *e, char *text)
{
    if (!e || !text)
        return text;
    static const char *const help =
        "# HELP skald_projection_position Last log position the read model applied.\n"
        "# TYPE skald_projection_position gauge\n"
        "# HELP skald_projection_lag_events Durable events the read model has not applied.\n"
        "# TYPE skald_projection_lag_events gauge\n"
        "# HELP skald_projection_failed 1 while a statement failure stops the read model.\n"
        "# TYPE skald_projection_failed gauge\n"
        "# HELP skald_projection_events_per_second Events applied per second, last second.\n"
        "# TYPE skald_projection_events_per_second gauge\n";
    size_t len = strlen(text), cap = len + strlen(help) + 1 + proj_count(e) * 512;
    char *out = realloc(text, cap);
    if (!out)
        return text;
    memcpy(out + len, help, strlen(help) + 1);
    len += strlen(help);
    for (size_t i = 0; i < proj_count(e); i++) {
        json_t *st = proj_status_json(e, proj_name(e, i));
        const char *name = proj_name(e, i);
        len += (size_t)snprintf(
            out + len, cap - len,
            "skald_projection_position{projection=\"%s\"} %" JSON_INTEGER_FORMAT "\n"
            "skald_projection_lag_events{projection=\"%s\"} %" JSON_INTEGER_FORMAT "\n"
            "skald_projection_failed{projection=\"%s\"} %d\n"
            "skald_projection_events_per_second{projection=\"%s\"} %.1f\n",
            name, json_integer_value(json_object_get(st, "position")), name,
            json_integer_value(json_object_get(st, "lag_events")), name,
            strcmp(json_string_value(json_object_get(st, "state")), "failed") == 0, name,
            json_real_value(json_object_get(st, "events_per_s")));
        json_decref(st);
    }
    return out;
}
