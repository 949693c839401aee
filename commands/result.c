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
    if (r->count == CMD_EVENTS_MAX || !payload) {
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

void cmd_result_clear(cmd_result *r)
{
    for (size_t i = 0; i < r->count; i++)
        json_decref(r->events[i].payload);
    memset(r, 0, sizeof *r);
}

const cmd_handler *cmd_handler_find(const cmd_handler_table *tables, size_t ntables,
                                    const char *command)
{
    for (size_t t = 0; t < ntables; t++)
        for (size_t i = 0; i < tables[t].count; i++)
            if (strcmp(tables[t].handlers[i].command, command) == 0)
                return &tables[t].handlers[i];
    return NULL;
}

int cmd_stream_id(const cmd_handler *h, const json_t *cmd, char *out, size_t size)
{
    const char *id = json_string_value(json_object_get(cmd, h->id_field));
    if (!id || !*id)
        return SK_EBADINPUT;
    int n = snprintf(out, size, "%s%s", h->aggregate->stream_prefix, id);
    if (n < 0 || (size_t)n >= size || n > EV_STREAM_ID_MAX)
        return SK_ETOOBIG;
    return 0;
}

const cmd_aggregate *cmd_aggregate_of_stream(const cmd_handler_table *tables, size_t ntables,
                                             const char *stream_id)
{
    for (size_t t = 0; t < ntables; t++)
        for (size_t i = 0; i < tables[t].count; i++) {
            const cmd_aggregate *agg = tables[t].handlers[i].aggregate;
            size_t n = strlen(agg->stream_prefix);
            if (strncmp(stream_id, agg->stream_prefix, n) == 0 && stream_id[n] != '\0')
                return agg;
        }
    return NULL;
}

const cmd_aggregate *cmd_aggregate_find(const cmd_handler_table *tables, size_t ntables,
                                        const char *name)
{
    for (size_t t = 0; t < ntables; t++)
        for (size_t i = 0; i < tables[t].count; i++)
            if (strcmp(tables[t].handlers[i].aggregate->name, name) == 0)
                return tables[t].handlers[i].aggregate;
    return NULL;
}

int cmd_snapshot_rules_parse(const char *text, cmd_snapshot_rule *rules, size_t *count,
                             sk_error *err)
{
    *count = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char digits[16];
        size_t name_len = eq ? (size_t)(eq - p) : 0, num_len = eq ? len - name_len - 1 : 0;
        if (*count == CMD_SNAPSHOT_RULES_MAX || !eq || name_len == 0 ||
            name_len >= sizeof rules->aggregate || num_len == 0 || num_len >= sizeof digits)
            return sk_error_set(err, SK_EBADINPUT, "", "'%.*s' is not NAME=EVENTS (at most %d)",
                                (int)len, p, CMD_SNAPSHOT_RULES_MAX);
        memcpy(digits, eq + 1, num_len);
        digits[num_len] = '\0';
        char *stop;
        unsigned long every = strtoul(digits, &stop, 10);
        if (*stop || digits[0] == '-' || every > 1000000)
            return sk_error_set(err, SK_EBADINPUT, "", "'%s' is not a number of events 0..1000000",
                                digits);
        memcpy(rules[*count].aggregate, p, name_len);
        rules[*count].aggregate[name_len] = '\0';
        rules[*count].every = (uint32_t)every;
        (*count)++;
        p += len + (end ? 1 : 0);
    }
    return 0;
}
