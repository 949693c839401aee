/*
 * result.c -- the decision a decider returns, and finding a command's handler and
 * stream. Engine code: no domain knowledge.
 */
#include "commands/commands.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_result_add(cmd_result *r, const char *type, json_t *payload)
{
    if (!payload)
        return -ENOMEM;
    if (r->count == CMD_EVENTS_MAX) {
        json_decref(payload);
        return -ENOSPC;
    }
    r->events[r->count].type = type;
    r->events[r->count].payload = payload;
    r->count++;
    return 0;
}

void cmd_result_reject(cmd_result *r, const char *reason, const char *fmt, ...)
{
    cmd_result_clear(r);
    r->rejected = true;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

void cmd_result_overflow(cmd_result *r, const char *field, const char *fmt, ...)
{
    cmd_result_clear(r);
    r->rejected = true;
    snprintf(r->reason, sizeof r->reason, "overflow");
    snprintf(r->field, sizeof r->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

void cmd_result_clear(cmd_result *r)
{
    for (size_t i = 0; i < r->count; i++)
        json_decref(r->events[i].payload);
    memset(r, 0, sizeof *r);
}

const cmd_handler *cmd_handler_find(const cmd_domain *const *domains, const char *command)
{
    for (; *domains; domains++)
        for (const cmd_handler_table *const *t = (*domains)->tables; *t; t++)
            for (size_t i = 0; i < (*t)->count; i++)
                if (strcmp((*t)->handlers[i].command, command) == 0)
                    return &(*t)->handlers[i];
    return NULL;
}

int cmd_stream_id(const cmd_handler *h, const json_t *cmd, char *out, size_t size)
{
    const char *id = json_string_value(json_object_get(cmd, h->id_field));
    size_t bad;
    /* the engine holds every domain to the id alphabet, whether or not its schema marks
     * the field "format": "id": a stream id must read back through a URL */
    size_t id_len = id ? strlen(id) : 0;
    if (!id || ev_id_check(id, id_len, &bad) != 0)
        return SK_EBADINPUT;
    /* two copies, not snprintf: this runs for every command, and the format parse was
     * most of its cost (docs/benchmarks.md, "Typed aggregate state") */
    const char *prefix = h->aggregate->stream_prefix;
    size_t prefix_len = strlen(prefix);
    if (prefix_len + id_len >= size || prefix_len + id_len > EV_STREAM_ID_MAX)
        return SK_ETOOBIG;
    memcpy(out, prefix, prefix_len);
    memcpy(out + prefix_len, id, id_len + 1);
    return 0;
}

const cmd_aggregate *cmd_aggregate_of_stream(const cmd_domain *const *domains,
                                             const char *stream_id)
{
    for (; *domains; domains++)
        for (const cmd_handler_table *const *t = (*domains)->tables; *t; t++)
            for (size_t i = 0; i < (*t)->count; i++) {
                const cmd_aggregate *agg = (*t)->handlers[i].aggregate;
                size_t n = strlen(agg->stream_prefix);
                if (strncmp(stream_id, agg->stream_prefix, n) == 0 && stream_id[n] != '\0')
                    return agg;
            }
    return NULL;
}

const cmd_aggregate *cmd_aggregate_find(const cmd_domain *const *domains, const char *name)
{
    for (; *domains; domains++)
        for (const cmd_handler_table *const *t = (*domains)->tables; *t; t++)
            for (size_t i = 0; i < (*t)->count; i++)
                if (strcmp((*t)->handlers[i].aggregate->name, name) == 0)
                    return (*t)->handlers[i].aggregate;
    return NULL;
}
