/*
 * amounts.c -- a table of amounts by id, for the typed states of the sample domain (a
 * product's reservations by order, a customer's payments by order).
 *
 * A plain array searched from the front: an aggregate's tables are small (the open orders
 * holding one product), and every decision that reads one also sums all of it, so a
 * hashed index would not change the cost of a command. Order is not kept: a removal
 * moves the last item into the hole.
 */
#include "commands/commands_int.h"

#include <stdlib.h>
#include <string.h>

static cmd_amount *find(const cmd_amounts *t, const char *id)
{
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->items[i].id, id) == 0)
            return &t->items[i];
    return NULL;
}

const cmd_amount *cmd_amounts_get(const cmd_amounts *t, const char *id)
{
    return find(t, id);
}

int cmd_amounts_set(cmd_amounts *t, const char *id, long long amount)
{
    cmd_amount *item = find(t, id);
    if (item) {
        item->amount = amount;
        return 0;
    }
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        cmd_amount *items = realloc(t->items, cap * sizeof *items);
        if (!items)
            return -ENOMEM;
        t->items = items;
        t->cap = cap;
    }
    char *copy = strdup(id);
    if (!copy)
        return -ENOMEM;
    cmd_amount *added = &t->items[t->count++];
    added->id = copy;
    added->amount = amount;
    return 0;
}

void cmd_amounts_del(cmd_amounts *t, const char *id)
{
    cmd_amount *item = find(t, id);
    if (!item)
        return;
    free(item->id);
    *item = t->items[--t->count];
}

bool cmd_amounts_sum(const cmd_amounts *t, long long *out)
{
    long long total = 0;
    for (size_t i = 0; i < t->count; i++)
        if (!cmd_add(total, t->items[i].amount, &total))
            return false;
    *out = total;
    return true;
}

void cmd_amounts_free(cmd_amounts *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->items[i].id);
    free(t->items);
    memset(t, 0, sizeof *t);
}

json_t *cmd_amounts_to_json(const cmd_amounts *t)
{
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < t->count; i++)
        if (json_object_set_new(obj, t->items[i].id, json_integer(t->items[i].amount)) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    return obj;
}

int cmd_amounts_from_json(cmd_amounts *t, const json_t *obj)
{
    if (!json_is_object(obj))
        return SK_EBADINPUT;
    const char *id;
    json_t *v;
    json_object_foreach((json_t *)obj, id, v)
    {
        if (!json_is_integer(v))
            return SK_EBADINPUT;
        int rc = cmd_amounts_set(t, id, json_integer_value(v));
        if (rc)
            return rc;
    }
    return 0;
}
