/*
 * saga_wiring.c -- the sagas role: the orchestrator's engine (sagas/), wired to the same
 * command path as HTTP commands.
 *
 * A saga's command goes the way a keyed HTTP command goes (command_routes.c): claim its
 * key in the idempotency store (cmd_idem_begin), submit to the bus, remember the answer
 * (cmd_idem_finish for a 200 or a 422, cmd_idem_release otherwise). Its key is scoped
 * "s/..." (HTTP keys are "k/<principal>/..." or "c/<principal>/<command_id>", so they never meet)
 * and travels in the events' metadata ("idempotency"), with the saga id and the attempt number, so
 * the store rebuilds a lost answer from the log like any other. A key whose answer is remembered is
 * answered from the store: a resend after a crash or a timed-out attempt that did commit appends
 * nothing. The saga's own journal writes carry no key: they are conditional on the journal's
 * version instead.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_SAGA    "saga_id"
#define META_ATTEMPT "attempt"

typedef struct saga_call {
    svc_app *app;
    char command[EV_TYPE_MAX + 1];
    char key[SAGA_ID_MAX + 80];
    char saga_id[SAGA_ID_MAX + 1];
    char traceparent[64], attempt[16], principal[64];
    cmd_context ctx;
    ev_metadata_entry meta[5];
    int64_t started_us;
    cmd_outcome out;
    saga_answer_cb done;
    void *op;
} saga_call;

static json_t *success_json(const cmd_outcome *o)
{
    char cid[EV_UUID_TEXT_SIZE], eid[EV_UUID_TEXT_SIZE];
    ev_uuid_format(&o->command_id, cid);
    json_t *events = json_array();
    for (uint32_t i = 0; events && i < o->count; i++) {
        ev_uuid_format(&o->event_ids[i], eid);
        json_array_append_new(
            events, json_pack("{s:s, s:s, s:I, s:I}", "event_id", eid, "type", o->event_types[i],
                              "version", (json_int_t)o->first_version + (json_int_t)i, "position",
                              (json_int_t)o->first_position + (json_int_t)i));
    }
    return events ? json_pack("{s:s, s:s, s:o, s:I}", "command_id", cid, "stream_id", o->stream_id,
                              "events", events, "position", (json_int_t)o->position)
                  : NULL;
}

static void bus_done(void *ctx, cmd_outcome *o)
{
    saga_call *c = ctx;
    saga_answer a = {0};
    unsigned status = 503;
    svc_outcome kind = SVC_OUT_ERROR;
    json_t *answer = NULL;
    switch (o->status) {
    case 0:
        a.kind = SAGA_ANSWER_OK, status = 200, kind = SVC_OUT_OK;
        answer = success_json(o);
        break;
    case SK_EREJECTED:
        a.kind = SAGA_ANSWER_REJECTED, status = 422, kind = SVC_OUT_REJECTED;
        snprintf(a.reason, sizeof a.reason, "%s", o->decision.reason);
        snprintf(a.message, sizeof a.message, "%.250s", o->decision.message);
        answer = svc_problem_json(422, o->decision.reason, NULL, o->decision.message);
        break;
    case SK_ECONFLICT:
        a.kind = SAGA_ANSWER_CONFLICT, status = 409, kind = SVC_OUT_CONFLICT;
        break;
    case SK_ENOTFOUND:
    case SK_EBADINPUT:
    case SK_ETOOBIG:
    case SK_ESCHEMA:
        a.kind = SAGA_ANSWER_FATAL, status = 500;
        break;
    default: /* overloaded, a failed log, ...: it recovers in place */
        a.kind = SAGA_ANSWER_TRANSIENT,
        kind = o->status == SK_EBUSY ? SVC_OUT_OVERLOADED : SVC_OUT_ERROR;
        break;
    }
    if (a.kind != SAGA_ANSWER_OK && a.kind != SAGA_ANSWER_REJECTED) {
        snprintf(a.reason, sizeof a.reason, "%s", sk_err_name(o->status));
        snprintf(a.message, sizeof a.message, "%.250s",
                 o->err.message[0] ? o->err.message : sk_strerror(o->status));
    }
    a.stream_version = o->stream_version;
    a.position = o->position;
    a.count = o->count;
    if (*c->key) {
        char *text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
        if (text)
            (void)cmd_idem_finish(c->app->idem, c->key, status, text,
                                  status == 200 && o->count ? o->position + 1 : 0);
        else
            cmd_idem_release(c->app->idem, c->key);
        free(text);
    }
    json_decref(answer);
    svc_metrics_command(c->app->metrics, c->command, kind,
                        (double)(ev_now_us() - c->started_us) / 1e6);
    c->done(c->op, &a);
    cmd_outcome_clear(&c->out);
    free(c);
}

/* A remembered answer: the first one, as the store kept it. */
static void replay(saga_call *c, unsigned status, const char *body)
{
    saga_answer a = {0};
    json_t *j = json_loads(body ? body : "", 0, NULL);
    if (status == 200) {
        a.kind = SAGA_ANSWER_OK;
        a.position = (uint64_t)json_integer_value(json_object_get(j, "position"));
        a.count = (uint32_t)json_array_size(json_object_get(j, "events"));
    } else if (status == 422) {
        a.kind = SAGA_ANSWER_REJECTED;
        const char *code = json_string_value(json_object_get(j, "code"));
        snprintf(a.reason, sizeof a.reason, "%s", code ? code : "rejected");
        const char *detail = json_string_value(json_object_get(j, "detail"));
        snprintf(a.message, sizeof a.message, "%s", detail ? detail : "");
    } else {
        a.kind = SAGA_ANSWER_TRANSIENT;
    }
    json_decref(j);
    svc_metrics_command(c->app->metrics, c->command, SVC_OUT_REPLAYED, 0);
    c->done(c->op, &a);
    free(c);
}

int svc_send_keyed(svc_app *app, const char *principal, const saga_send *s, saga_answer_cb done,
                   void *op)
{
    saga_call *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->app = app;
    c->done = done;
    c->op = op;
    c->started_us = ev_now_us();
    snprintf(c->command, sizeof c->command, "%s", s->command);
    c->ctx.correlation_id = s->correlation_id;
    uint32_t m = 0;
    snprintf(c->principal, sizeof c->principal, "%s", principal);
    c->meta[m++] = (ev_metadata_entry){ev_str_of(EV_META_PRINCIPAL), ev_str_of(c->principal)};
    if (s->saga_id && *s->saga_id) {
        snprintf(c->saga_id, sizeof c->saga_id, "%s", s->saga_id);
        snprintf(c->attempt, sizeof c->attempt, "%" PRIu32, s->attempt);
        c->meta[m++] = (ev_metadata_entry){ev_str_of(META_SAGA), ev_str_of(c->saga_id)};
        c->meta[m++] = (ev_metadata_entry){ev_str_of(META_ATTEMPT), ev_str_of(c->attempt)};
    }
    if (s->traceparent && *s->traceparent) {
        snprintf(c->traceparent, sizeof c->traceparent, "%s", s->traceparent);
        c->meta[m++] =
            (ev_metadata_entry){ev_str_of(EV_META_TRACEPARENT), ev_str_of(c->traceparent)};
    }
    if (s->idem_key && *s->idem_key) {
        snprintf(c->key, sizeof c->key, "%s", s->idem_key);
        char *canonical = json_dumps(s->body, JSON_COMPACT | JSON_SORT_KEYS);
        uint64_t fp = cmd_idem_fingerprint(c->command, canonical ? canonical : "",
                                           canonical ? strlen(canonical) : 0);
        free(canonical);
        unsigned status = 0;
        char *first = NULL;
        cmd_idem_state st = cmd_idem_begin(app->idem, c->key, fp, &status, &first);
        if (st == CMD_IDEM_DONE) {
            replay(c, status, first);
            free(first);
            return 0;
        }
        if (st != CMD_IDEM_NEW) {
            saga_answer a = {.kind = st == CMD_IDEM_MISMATCH ? SAGA_ANSWER_FATAL
                                                             : SAGA_ANSWER_TRANSIENT};
            snprintf(a.reason, sizeof a.reason, "%s",
                     st == CMD_IDEM_BUSY       ? "request_in_progress"
                     : st == CMD_IDEM_MISMATCH ? "idempotency_key_reused"
                                               : "idempotency_unavailable");
            snprintf(a.message, sizeof a.message, "idempotency store: %s", a.reason);
            done(op, &a);
            free(c);
            return 0;
        }
        c->meta[m++] = (ev_metadata_entry){ev_str_of(CMD_META_IDEMPOTENCY), ev_str_of(c->key)};
    }
    c->ctx.metadata = c->meta;
    c->ctx.metadata_count = m;
    cmd_bus_submit(app->bus, c->command, s->body, s->expected_version, &c->ctx, &c->out, bus_done,
                   c);
    return 0;
}

static int saga_send_command(void *ctx, const saga_send *s, saga_answer_cb done, void *op)
{
    return svc_send_keyed(ctx, "$sagas", s, done, op);
}

/* The test knobs of docs/sagas.md (definitions, timeouts, faults) from the environment. */
static int config_from_env(saga_config *sc, sk_error *err)
{
    const char *v = getenv("SKALD_SAGA_TEST_DEFINITIONS");
    if (v && strcmp(v, "1") == 0)
        sc->extra_defs = saga_test_definitions;
    v = getenv("SKALD_SAGA_STEP_TIMEOUT_MS");
    if (v && *v)
        sc->step_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
    v = getenv("SKALD_SAGA_SNAPSHOT_EVERY");
    if (v && *v)
        sc->snapshot_every = (uint32_t)strtoul(v, NULL, 10);
    return saga_faults_from_env(&sc->faults, err);
}

int svc_sagas_start(svc_app *app, const char *data_dir, int from_env, sk_error *err)
{
    saga_config sc;
    saga_config_init(&sc);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/sagas", data_dir);
    sc.log = app->log;
    sc.events = app->events;
    sc.dir = dir;
    sc.send = saga_send_command;
    sc.send_ctx = app;
    int rc = from_env ? config_from_env(&sc, err) : 0;
    if (rc == 0)
        rc = saga_engine_open(&sc, &app->sagas, err);
    if (rc == 0)
        rc = saga_engine_start(app->sagas, err);
    return rc;
}

int svc_sagas_open(svc_app *app, sk_error *err)
{
    if (!(svc_cfg.roles & SVC_SERVES_SAGAS))
        return 0;
    if (!app->bus || !app->idem)
        return sk_error_set(err, SK_EBADINPUT, "roles",
                            "the sagas role sends commands: it needs the commands role in the "
                            "same process");
    return svc_sagas_start(app, svc_cfg.data_dir, 1, err);
}

void svc_sagas_close(svc_app *app)
{
    saga_engine_close(app->sagas);
    app->sagas = NULL;
}

int svc_command_internal(const char *command)
{
    const cmd_handler *h = cmd_handler_find(cmd_domains, command);
    return h && h->aggregate->stream_prefix[0] == '$';
}
