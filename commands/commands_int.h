/*
 * commands_int.h -- small JSON accessors the deciders share (inside commands/ only).
 */
#ifndef SKALD_COMMANDS_INT_H
#define SKALD_COMMANDS_INT_H

#include "commands/commands.h"

static inline const char *cmd_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static inline long long cmd_int(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

static inline bool cmd_bool(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

/* The object under key, created empty if absent (state is built by evolve only). */
static inline json_t *cmd_child(json_t *obj, const char *key)
{
    json_t *c = json_object_get(obj, key);
    if (!json_is_object(c)) {
        c = json_object();
        json_object_set_new(obj, key, c);
    }
    return c;
}

static inline long long cmd_sum(const json_t *obj)
{
    long long total = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) total += json_integer_value(v);
    return total;
}

#endif
