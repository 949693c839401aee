/*
 * saga_state.c -- a saga's state as the fold of its journal, `$saga-<id>`.
 *
 * Events and what they do (docs/sagas.md has the full table):
 *   SagaStarted       type, definition version, data, correlation, traceparent; running
 *   SagaStepStarted   a step (phase forward | compensate | final) is open; its deadline
 *                     is the persisted timer, re-armed after a restart
 *   SagaStepFinished  the step is closed with one result per command; a forward step
 *                     that did not succeed names the failed step, a compensation or
 *                     final step that failed sets comp_failed (a `stuck` follows)
 *   SagaStateChanged  running | compensating | completed | compensated | stuck | aborted,
 *                     by "orchestrator", "admin:retry" or "admin:abort"
 *
 * Invariants: fwd_done <= nsteps; failed_step is -1 or fwd_done; while compensating,
 * comp_next < the failed (or last open) forward step + 1. The orchestrator applies an
 * event only after the bus made it durable, and replays the same events after a restart,
 * so both paths reach the same state.
 */
#include "sagas/sagas_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {"starting",    "running", "compensating", "completed",
                                          "compensated", "stuck",   "aborted"};

const char *saga_state_name(int state)
{
    if (state < 0 || state > SAGA_ABORTED)
        return "unknown";
    return state_names[state];
}

int saga_state_parse(const char *name)
{
    for (int i = 0; i <= SAGA_ABORTED; i++)
        if (strcmp(state_names[i], name) == 0)
            return i;
    return -1;
}

bool saga_terminal(int state)
{
    return state == SAGA_COMPLETED || state == SAGA_COMPENSATED || state == SAGA_ABORTED;
}

const char *saga_phase_name(int phase)
{
    return phase == PHASE_FORWARD ? "forward" : phase == PHASE_COMPENSATE ? "compensate" : "final";
}

static int phase_parse(const char *p)
{
    return strcmp(p, "forward") == 0      ? PHASE_FORWARD
           : strcmp(p, "compensate") == 0 ? PHASE_COMPENSATE
                                          : PHASE_FINAL;
}

saga_rt *saga_rt_create(const char *id)
{
    saga_rt *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->failed_step = -1;
    s->comp_next = -1;
    return s;
}

void saga_rt_free(saga_rt *s)
{
    if (!s)
        return;
    json_decref(s->data);
    json_decref(s->jbody);
    for (int i = 0; i < SAGA_STEPS_MAX; i++)
        free(s->fwd_res[i]);
    if (s->run)
        saga_cmd_list_clear(&s->run->list);
    free(s->run);
    free(s);
}

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static const saga_def *find_def(const saga_def *const *defs, const char *type, uint32_t version)
{
    for (size_t i = 0; defs && defs[i]; i++)
        if (strcmp(defs[i]->type, type) == 0 && defs[i]->version == version)
            return defs[i];
    return NULL;
}

/* How many commands forward step `step` sends for this saga's data (0 if unknown). */
static uint32_t step_count(const saga_rt *s, int step)
{
    if (!s->def || step < 0 || (size_t)step >= s->def->nsteps)
        return 0;
    saga_cmd_list *l = calloc(1, sizeof *l);
    if (!l)
        return 0;
    uint32_t n = 0;
    if (s->def->steps[step].commands(s->data, l) == 0)
        n = (uint32_t)l->count;
    saga_cmd_list_clear(l);
    free(l);
    return n;
}

static int set_results(saga_rt *s, int step, const json_t *results)
{
    if (step < 0 || step >= SAGA_STEPS_MAX)
        return 0;
    size_t n = json_array_size(results);
    uint8_t *r = calloc(n ? n : 1, 1);
    if (!r)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *st = str(json_array_get(results, i), "status");
        r[i] = strcmp(st, "ok") == 0         ? RES_OK
               : strcmp(st, "rejected") == 0 ? RES_REJECTED
               : strcmp(st, "failed") == 0   ? RES_FAILED
                                             : RES_UNKNOWN;
    }
    free(s->fwd_res[step]);
    s->fwd_res[step] = r;
    s->fwd_count[step] = (uint32_t)n;
    return 0;
}

int saga_apply(saga_rt *s, const saga_def *const *defs, const saga_def *const *extra,
               const char *type, const json_t *p, int64_t at_us)
{
    s->updated_us = at_us;
    if (strcmp(type, "SagaStarted") == 0) {
        snprintf(s->type, sizeof s->type, "%s", str(p, "saga_type"));
        s->def_version = (uint32_t)json_integer_value(json_object_get(p, "definition_version"));
        s->def = find_def(defs, s->type, s->def_version);
        if (!s->def)
            s->def = find_def(extra, s->type, s->def_version);
        json_decref(s->data);
        s->data = json_loads(str(p, "data"), 0, NULL);
        if (!s->data)
            s->data = json_object();
        snprintf(s->subject, sizeof s->subject, "%s", str(p, "subject"));
        if (ev_uuid_parse(str(p, "correlation_id"), &s->corr) != 0)
            memset(&s->corr, 0, sizeof s->corr);
        snprintf(s->traceparent, sizeof s->traceparent, "%s", str(p, "traceparent"));
        s->start_position = (uint64_t)json_integer_value(json_object_get(p, "start_position"));
        s->state = SAGA_RUNNING;
        return s->data ? 0 : -ENOMEM;
    }
    if (strcmp(type, "SagaStepStarted") == 0) {
        s->open = true;
        s->step = (int)json_integer_value(json_object_get(p, "step"));
        s->phase = phase_parse(str(p, "phase"));
        s->deadline_us = json_integer_value(json_object_get(p, "deadline_us"));
        return 0;
    }
    if (strcmp(type, "SagaStepFinished") == 0) {
        int step = (int)json_integer_value(json_object_get(p, "step"));
        int phase = phase_parse(str(p, "phase"));
        bool ok = strcmp(str(p, "outcome"), "ok") == 0;
        s->open = false;
        s->deadline_us = 0;
        if (phase == PHASE_FORWARD) {
            if (set_results(s, step, json_object_get(p, "results")) != 0)
                return -ENOMEM;
            if (ok) {
                s->fwd_done = step + 1;
            } else {
                s->failed_step = step;
                snprintf(s->reason, sizeof s->reason, "%s", str(p, "reason"));
                snprintf(s->cause, sizeof s->cause, "%s", str(p, "reason"));
            }
        } else if (!ok) {
            s->comp_failed = true;
            snprintf(s->reason, sizeof s->reason, "%s", str(p, "reason"));
        } else if (phase == PHASE_COMPENSATE) {
            s->comp_next = step - 1;
        } else {
            s->final_done = true;
        }
        return 0;
    }
    if (strcmp(type, "SagaStateChanged") == 0) {
        int st = saga_state_parse(str(p, "state"));
        const char *by = str(p, "by");
        if (st < 0)
            return 0; /* a state this build does not know: nothing to do with it */
        if (st == SAGA_COMPENSATING && s->state != SAGA_COMPENSATING) {
            if (s->state == SAGA_STUCK) {
                s->retries++; /* the keys change: a remembered rejection is not the answer */
                s->comp_failed = false;
            } else {
                /* from running: the open forward step's commands have unknown outcomes;
                 * each one's compensation is harmless if it never took effect */
                if (s->open && s->phase == PHASE_FORWARD && s->step < SAGA_STEPS_MAX) {
                    uint32_t n = step_count(s, s->step);
                    free(s->fwd_res[s->step]);
                    s->fwd_res[s->step] = calloc(n ? n : 1, 1);
                    if (!s->fwd_res[s->step])
                        return -ENOMEM;
                    memset(s->fwd_res[s->step], RES_UNKNOWN, n);
                    s->fwd_count[s->step] = n;
                    s->failed_step = s->step;
                    s->open = false;
                }
                s->comp_next = s->failed_step >= 0 ? s->failed_step : s->fwd_done - 1;
            }
            if (strcmp(by, "admin:abort") == 0)
                s->aborting = true;
            if (*str(p, "reason"))
                snprintf(s->reason, sizeof s->reason, "%s", str(p, "reason"));
        }
        if (st == SAGA_STUCK && *str(p, "reason"))
            snprintf(s->reason, sizeof s->reason, "%s", str(p, "reason"));
        s->state = st;
        return 0;
    }
    return 0; /* an event type this build does not know */
}

/* ---------------------------------------------------------------------------------------
 * The fold as JSON: what a saga snapshot holds (saga_store.c). Every field the events set
 * is kept; the definition is looked up again by type and version when it is read.
 */
json_t *saga_fold_to_json(const saga_rt *s)
{
    char corr[EV_UUID_TEXT_SIZE];
    ev_uuid_format(&s->corr, corr);
    json_t *steps = json_array();
    for (int i = 0; steps && i < SAGA_STEPS_MAX; i++) {
        json_t *res = json_array();
        for (uint32_t j = 0; res && s->fwd_res[i] && j < s->fwd_count[i]; j++)
            json_array_append_new(res, json_integer(s->fwd_res[i][j]));
        if (!res || json_array_append_new(steps, res) != 0) {
            json_decref(steps);
            return NULL;
        }
    }
    json_t *j = json_pack(
        "{s:s, s:I, s:O, s:o, s:I, s:I, s:I, s:I, s:s, s:I, s:i, s:i, s:i, s:i, s:i, s:i}", "type",
        s->type, "def_version", (json_int_t)s->def_version, "data", s->data ? s->data : json_null(),
        "fwd", steps, "start_position", (json_int_t)s->start_position, "version",
        (json_int_t)s->version, "deadline_us", (json_int_t)s->deadline_us, "updated_us",
        (json_int_t)s->updated_us, "corr", corr, "retries", (json_int_t)s->retries, "state",
        s->state, "phase", s->phase, "step", s->step, "fwd_done", s->fwd_done, "failed_step",
        s->failed_step, "comp_next", s->comp_next);
    if (j && json_object_update_new(
                 j, json_pack("{s:b, s:b, s:b, s:b, s:s, s:s, s:s, s:s}", "aborting", s->aborting,
                              "open", s->open, "comp_failed", s->comp_failed, "final_done",
                              s->final_done, "subject", s->subject, "traceparent", s->traceparent,
                              "reason", s->reason, "cause", s->cause)) != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int int_of(const json_t *j, const char *k, json_int_t lo, json_int_t hi, json_int_t *out)
{
    const json_t *v = json_object_get(j, k);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return SK_ECORRUPT;
    *out = json_integer_value(v);
    return 0;
}

/* The integer fields of a snapshot, each checked against its range. */
static int ints_from_json(saga_rt *s, const json_t *j)
{
    json_int_t v[12];
    static const char *const names[12] = {
        "def_version", "start_position", "version", "deadline_us", "updated_us",  "retries",
        "state",       "phase",          "step",    "fwd_done",    "failed_step", "comp_next"};
    static const json_int_t lo[12] = {0, 0, 1, 0, INT64_MIN, 0, SAGA_RUNNING, 0, 0, 0, -1, -1};
    static const json_int_t hi[12] = {
        UINT32_MAX,   INT64_MAX,   INT64_MAX,      INT64_MAX,      INT64_MAX,      UINT32_MAX,
        SAGA_ABORTED, PHASE_FINAL, SAGA_STEPS_MAX, SAGA_STEPS_MAX, SAGA_STEPS_MAX, SAGA_STEPS_MAX};
    for (int i = 0; i < 12; i++)
        if (int_of(j, names[i], lo[i], hi[i], &v[i]) != 0)
            return SK_ECORRUPT;
    s->def_version = (uint32_t)v[0];
    s->start_position = (uint64_t)v[1];
    s->version = (uint64_t)v[2];
    s->deadline_us = v[3];
    s->updated_us = v[4];
    s->retries = (uint32_t)v[5];
    s->state = (int)v[6];
    s->phase = (int)v[7];
    s->step = (int)v[8];
    s->fwd_done = (int)v[9];
    s->failed_step = (int)v[10];
    s->comp_next = (int)v[11];
    return 0;
}

static int results_from_json(saga_rt *s, const json_t *steps)
{
    if (!json_is_array(steps) || json_array_size(steps) != SAGA_STEPS_MAX)
        return SK_ECORRUPT;
    for (int i = 0; i < SAGA_STEPS_MAX; i++) {
        const json_t *res = json_array_get(steps, (size_t)i);
        size_t n = json_array_size(res);
        if (!json_is_array(res) || n > SAGA_CMDS_MAX)
            return SK_ECORRUPT;
        if (n == 0)
            continue;
        s->fwd_res[i] = calloc(n, 1);
        if (!s->fwd_res[i])
            return -ENOMEM;
        for (size_t k = 0; k < n; k++) {
            json_int_t r = json_integer_value(json_array_get(res, k));
            if (r < RES_NONE || r > RES_FAILED)
                return SK_ECORRUPT;
            s->fwd_res[i][k] = (uint8_t)r;
        }
        s->fwd_count[i] = (uint32_t)n;
    }
    return 0;
}

int saga_fold_from_json(saga_rt *s, const saga_def *const *defs, const saga_def *const *extra,
                        const json_t *j)
{
    const json_t *data = json_object_get(j, "data");
    if (!json_is_object(data) || !json_is_string(json_object_get(j, "type")) ||
        ev_uuid_parse(str(j, "corr"), &s->corr) != 0)
        return SK_ECORRUPT;
    int rc = ints_from_json(s, j);
    if (rc == 0)
        rc = results_from_json(s, json_object_get(j, "fwd"));
    if (rc)
        return rc;
    snprintf(s->type, sizeof s->type, "%s", str(j, "type"));
    s->def = find_def(defs, s->type, s->def_version);
    if (!s->def)
        s->def = find_def(extra, s->type, s->def_version);
    json_decref(s->data);
    s->data = json_deep_copy(data);
    if (!s->data)
        return -ENOMEM;
    s->aborting = json_is_true(json_object_get(j, "aborting"));
    s->open = json_is_true(json_object_get(j, "open"));
    s->comp_failed = json_is_true(json_object_get(j, "comp_failed"));
    s->final_done = json_is_true(json_object_get(j, "final_done"));
    snprintf(s->subject, sizeof s->subject, "%s", str(j, "subject"));
    snprintf(s->traceparent, sizeof s->traceparent, "%s", str(j, "traceparent"));
    snprintf(s->reason, sizeof s->reason, "%s", str(j, "reason"));
    snprintf(s->cause, sizeof s->cause, "%s", str(j, "cause"));
    return 0;
}
