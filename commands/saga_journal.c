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
 * State: a journal_state; its JSON form (snapshots) is {"exists", "state"}. Each
 * command's body becomes its event's payload unchanged (the command and event schemas
 * have the same fields).
 */
#include "commands/commands_int.h"
#include "commands/saga_journal.h"

#include <errno.h>
#include <string.h>

typedef struct journal_state {
    bool exists;
    char *state; /* owned; NULL: "none" */
} journal_state;

static const char *state_name(const journal_state *st)
{
    return st->state ? st->state : "none";
}

static int evolve(void *state, const char *type, const json_t *ev)
{
    journal_state *st = state;
    if (strcmp(type, "SagaStarted") == 0) {
        if (cmd_strset(&st->state, "running") != 0)
            return -ENOMEM;
        st->exists = true;
        return 0;
    }
    if (strcmp(type, "SagaStateChanged") == 0)
        return cmd_strset(&st->state, cmd_str(ev, "state"));
    return 0;
}

static void release_state(void *state)
{
    free(((journal_state *)state)->state);
}

static json_t *to_json(const void *state)
{
    const journal_state *st = state;
    return json_pack("{s:b, s:s}", "exists", st->exists, "state", state_name(st));
}

static int from_json(void *state, const json_t *json)
{
    journal_state *st = state;
    int rc = cmd_json_bool(&st->exists, json, "exists");
    return rc ? rc : cmd_json_strset(&st->state, json, "state");
}

static const cmd_aggregate journal = {
    .name = "SagaJournal",
    .stream_prefix = "$saga-",
    .state_version = 1,
    .state_size = sizeof(journal_state),
    .evolve = evolve,
    .release = release_state,
    .to_json = to_json,
    .from_json = from_json,
};

static int terminal(const char *state)
{
    return strcmp(state, "completed") == 0 || strcmp(state, "compensated") == 0 ||
           strcmp(state, "aborted") == 0;
}

/* Refuses a command on a saga that does not exist or is over; 1 when refused. */
static int refused(const journal_state *st, const json_t *cmd, cmd_result *out)
{
    if (!st->exists) {
        cmd_result_reject(out, "not_found", "saga %s does not exist", cmd_str(cmd, "saga_id"));
        return 1;
    }
    if (terminal(state_name(st))) {
        cmd_result_reject(out, "finished", "saga %s is %s", cmd_str(cmd, "saga_id"),
                          state_name(st));
        return 1;
    }
    return 0;
}

static int start(const void *state, const json_t *cmd, cmd_result *out)
{
    const journal_state *st = state;
    if (st->exists) {
        cmd_result_reject(out, "already_exists", "saga %s was already started",
                          cmd_str(cmd, "saga_id"));
        return 0;
    }
    return cmd_result_add(out, "SagaStarted", json_deep_copy(cmd));
}

static int step_start(const void *state, const json_t *cmd, cmd_result *out)
{
    if (refused(state, cmd, out))
        return 0;
    return cmd_result_add(out, "SagaStepStarted", json_deep_copy(cmd));
}

static int step_finish(const void *state, const json_t *cmd, cmd_result *out)
{
    if (refused(state, cmd, out))
        return 0;
    return cmd_result_add(out, "SagaStepFinished", json_deep_copy(cmd));
}

static int change_state(const void *state, const json_t *cmd, cmd_result *out)
{
    if (refused(state, cmd, out))
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
