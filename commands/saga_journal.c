/*
 * saga_journal.c -- the SagaJournal aggregate: one stream `$saga-<saga_id>` per saga.
 *
 * The orchestrator (sagas/) decides what a saga does next; this aggregate only keeps
 * that history consistent: a saga starts once (a second StartSaga for the same id is
 * rejected `already_exists`, which is what makes a replayed start event harmless), every
 * later command needs a started saga (`not_found`), and a saga that reached a terminal
 * state (completed, compensated, aborted) takes no further step or state change
 * (`finished`). A `stuck` saga is not terminal: an admin may retry or abort it.
 *
 * State: {"exists", "state"}. Each command's body becomes its event's payload unchanged
 * (the command and event schemas have the same fields).
 */
#include "commands/commands_int.h"
#include "commands/saga_journal.h"

#include <errno.h>
#include <string.h>

static json_t *initial(void)
{
    return json_pack("{s:b, s:s}", "exists", 0, "state", "none");
}

static int evolve(json_t *st, const char *type, const json_t *ev)
{
    if (strcmp(type, "SagaStarted") == 0) {
        if (cmd_set(st, "exists", json_true()) != 0)
            return -ENOMEM;
        return cmd_set(st, "state", json_string("running"));
    }
    if (strcmp(type, "SagaStateChanged") == 0)
        return cmd_set(st, "state", json_string(cmd_str(ev, "state")));
    return 0;
}

static const cmd_aggregate journal = {
    .name = "SagaJournal",
    .stream_prefix = "$saga-",
    .state_version = 1,
    .initial = initial,
    .evolve = evolve,
};

static int terminal(const char *state)
{
    return strcmp(state, "completed") == 0 || strcmp(state, "compensated") == 0 ||
           strcmp(state, "aborted") == 0;
}

/* Refuses a command on a saga that does not exist or is over; 1 when refused. */
static int refused(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (!cmd_bool(st, "exists")) {
        cmd_result_reject(out, "not_found", "saga %s does not exist", cmd_str(cmd, "saga_id"));
        return 1;
    }
    if (terminal(cmd_str(st, "state"))) {
        cmd_result_reject(out, "finished", "saga %s is %s", cmd_str(cmd, "saga_id"),
                          cmd_str(st, "state"));
        return 1;
    }
    return 0;
}

static int start(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (cmd_bool(st, "exists")) {
        cmd_result_reject(out, "already_exists", "saga %s was already started",
                          cmd_str(cmd, "saga_id"));
        return 0;
    }
    return cmd_result_add(out, "SagaStarted", json_deep_copy(cmd));
}

static int step_start(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (refused(st, cmd, out))
        return 0;
    return cmd_result_add(out, "SagaStepStarted", json_deep_copy(cmd));
}

static int step_finish(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (refused(st, cmd, out))
        return 0;
    return cmd_result_add(out, "SagaStepFinished", json_deep_copy(cmd));
}

static int change_state(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (refused(st, cmd, out))
        return 0;
    return cmd_result_add(out, "SagaStateChanged", json_deep_copy(cmd));
}

static const cmd_handler handlers[] = {
    {"StartSaga", &journal, "saga_id", start},
    {"StartSagaStep", &journal, "saga_id", step_start},
    {"FinishSagaStep", &journal, "saga_id", step_finish},
    {"ChangeSagaState", &journal, "saga_id", change_state},
};

const cmd_handler_table cmd_saga_journal_handlers = {handlers, sizeof handlers / sizeof *handlers};

static const cmd_handler_table *const tables[] = {&cmd_saga_journal_handlers, NULL};

const cmd_domain cmd_saga_journal_domain = {"saga journal", tables};
