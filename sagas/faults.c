/*
 * faults.c -- command lists, and the fault injection tests configure.
 *
 * Faults are off unless a variable is set (docs/sagas.md):
 *   SKALD_SAGA_FAIL=AuthorizePayment:0.3   that command's attempts fail transiently with
 *       this probability; half of the failures are injected before the command is sent,
 *       half after its answer came back (the answer is "lost": the command did commit),
 *       which is the case only idempotency keys make safe
 *   SKALD_SAGA_DELAY=authorize_payment:3000   that step's commands go out this late
 *   SKALD_SAGA_CRASH=after_send               the process ends with SIGKILL at the named
 *       point: after_start, after_step_started, after_send, before_step_finished,
 *       after_step_finished, after_compensating
 *   SKALD_SAGA_SEED=n                         the seed of the rates
 */
#include "sagas/sagas_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int saga_cmd_add(saga_cmd_list *l, const char *command, json_t *body)
{
    if (!body)
        return -ENOMEM;
    if (l->count == SAGA_CMDS_MAX) {
        json_decref(body);
        return -ENOSPC;
    }
    l->cmds[l->count++] = (saga_cmd){command, body};
    return 0;
}

void saga_cmd_list_clear(saga_cmd_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        json_decref(l->cmds[i].body);
    l->count = 0;
}

/* "name:number" -> name, number; 0 or -1. */
static int name_number(const char *text, char *name, size_t size, double *number)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= size)
        return -1;
    char *end;
    double v = strtod(colon + 1, &end);
    if (end == colon + 1 || *end || v < 0)
        return -1;
    memcpy(name, text, (size_t)(colon - text));
    name[colon - text] = '\0';
    *number = v;
    return 0;
}

int saga_faults_from_env(saga_faults *out, sk_error *err)
{
    saga_faults f;
    memset(&f, 0, sizeof f);
    const char *v = getenv("SKALD_SAGA_FAIL");
    if (v && *v &&
        (name_number(v, f.fail_command, sizeof f.fail_command, &f.fail_rate) != 0 ||
         f.fail_rate > 1))
        return sk_error_set(err, SK_EBADINPUT, "SKALD_SAGA_FAIL",
                            "SKALD_SAGA_FAIL must be Command:rate with rate in 0..1");
    double ms = 0;
    v = getenv("SKALD_SAGA_DELAY");
    if (v && *v) {
        if (name_number(v, f.delay_step, sizeof f.delay_step, &ms) != 0 || ms > 3600000)
            return sk_error_set(err, SK_EBADINPUT, "SKALD_SAGA_DELAY",
                                "SKALD_SAGA_DELAY must be step:milliseconds");
        f.delay_ms = (uint32_t)ms;
    }
    v = getenv("SKALD_SAGA_CRASH");
    if (v && *v)
        snprintf(f.crash_at, sizeof f.crash_at, "%s", v);
    v = getenv("SKALD_SAGA_SEED");
    if (v && *v)
        f.seed = strtoull(v, NULL, 10);
    *out = f;
    return 0;
}
