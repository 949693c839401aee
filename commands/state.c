/*
 * state.c -- an aggregate's typed state as the engine handles it: made zeroed, freed
 * with what it owns, and written as its JSON form for snapshots. Engine code: the
 * aggregate's own functions do the domain part.
 */
#include "commands/commands_int.h"

#include <stdlib.h>

void *cmd_state_new(const cmd_aggregate *agg)
{
    /* one byte at least: a state struct may be empty, and NULL means out of memory */
    return calloc(1, agg->state_size ? agg->state_size : 1);
}

void cmd_state_free(const cmd_aggregate *agg, void *state)
{
    if (!state)
        return;
    if (agg->release)
        agg->release(state);
    free(state);
}

char *cmd_state_dump(const cmd_aggregate *agg, const void *state)
{
    json_t *json = agg->to_json(state);
    if (!json)
        return NULL;
    char *text = json_dumps(json, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(json);
    return text;
}

int cmd_state_parse(const cmd_aggregate *agg, const char *text, void **out)
{
    json_t *json = json_loads(text, 0, NULL);
    if (!json_is_object(json)) {
        json_decref(json);
        return SK_EBADINPUT;
    }
    void *state = cmd_state_new(agg);
    int rc = state ? agg->from_json(state, json) : -ENOMEM;
    json_decref(json);
    if (rc) {
        cmd_state_free(agg, state);
        return rc;
    }
    *out = state;
    return 0;
}
