/*
 * order.c -- the Order aggregate (sample domain): placed with lines, then confirmed or
 * cancelled, once.
 *
 * State: {"status": "none"|"placed"|"confirmed"|"cancelled", "order_id", "customer_id",
 * "total_cents"}. The total is computed here, with overflow refused, so clients cannot
 * send a total that disagrees with the lines.
 */
#include "commands/commands_int.h"
#include "commands/sample.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static json_t *initial(void)
{
    return json_pack("{s:s}", "status", "none");
}

static int evolve(json_t *st, const char *type, const json_t *ev)
{
    int rc = 0;
    if (strcmp(type, "OrderPlaced") == 0) {
        rc = cmd_set(st, "status", json_string("placed"));
        if (rc == 0)
            rc = cmd_set(st, "order_id", json_string(cmd_str(ev, "order_id")));
        if (rc == 0)
            rc = cmd_set(st, "customer_id", json_string(cmd_str(ev, "customer_id")));
        if (rc == 0)
            rc = cmd_set(st, "total_cents", json_integer(cmd_int(ev, "total_cents")));
    } else if (strcmp(type, "OrderConfirmed") == 0) {
        rc = cmd_set(st, "status", json_string("confirmed"));
    } else if (strcmp(type, "OrderCancelled") == 0) {
        rc = cmd_set(st, "status", json_string("cancelled"));
    }
    return rc;
}

static const cmd_aggregate order = {
    .name = "Order",
    .stream_prefix = "order-",
    .state_version = 1,
    .initial = initial,
    .evolve = evolve,
};

static int place(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (strcmp(cmd_str(st, "status"), "none") != 0) {
        cmd_result_reject(out, "already_exists", "order %s was already placed",
                          cmd_str(cmd, "order_id"));
        return 0;
    }
    long long total = 0;
    size_t i;
    const json_t *line;
    json_t *lines = json_array();
    if (!lines)
        return -ENOMEM;
    json_array_foreach(json_object_get(cmd, "lines"), i, line)
    {
        long long q = cmd_int(line, "quantity"), p = cmd_int(line, "unit_price_cents"), sub;
        if (!cmd_mul(q, p, &sub) || !cmd_add(total, sub, &total)) {
            json_decref(lines);
            char field[32];
            snprintf(field, sizeof field, "lines[%zu]", i);
            cmd_result_overflow(out, field, "line %zu makes the order total overflow", i);
            return 0;
        }
        if (json_array_append_new(lines, json_pack("{s:s, s:I, s:I}", "sku", cmd_str(line, "sku"),
                                                   "quantity", (json_int_t)q, "unit_price_cents",
                                                   (json_int_t)p)) != 0) {
            json_decref(lines);
            return -ENOMEM;
        }
    }
    /* "o" hands lines to the new object, and frees it if json_pack fails */
    return cmd_result_add(out, "OrderPlaced",
                          json_pack("{s:s, s:s, s:o, s:I}", "order_id", cmd_str(cmd, "order_id"),
                                    "customer_id", cmd_str(cmd, "customer_id"), "lines", lines,
                                    "total_cents", (json_int_t)total));
}

static bool placed(const json_t *st, const json_t *cmd, const char *verb, cmd_result *out)
{
    const char *status = cmd_str(st, "status");
    if (strcmp(status, "none") == 0) {
        cmd_result_reject(out, "not_found", "order %s does not exist", cmd_str(cmd, "order_id"));
        return false;
    }
    if (strcmp(status, "placed") != 0) {
        cmd_result_reject(out, "invalid_state", "order %s is %s and cannot be %s",
                          cmd_str(cmd, "order_id"), status, verb);
        return false;
    }
    return true;
}

static int confirm(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (!placed(st, cmd, "confirmed", out))
        return 0;
    return cmd_result_add(out, "OrderConfirmed",
                          json_pack("{s:s}", "order_id", cmd_str(cmd, "order_id")));
}

static int cancel(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (!placed(st, cmd, "cancelled", out))
        return 0;
    return cmd_result_add(out, "OrderCancelled",
                          json_pack("{s:s, s:s}", "order_id", cmd_str(cmd, "order_id"), "reason",
                                    cmd_str(cmd, "reason")));
}

static const cmd_handler handlers[] = {
    {"PlaceOrder", &order, "order_id", place},
    {"ConfirmOrder", &order, "order_id", confirm},
    {"CancelOrder", &order, "order_id", cancel},
};

const cmd_handler_table cmd_order_handlers = {handlers, sizeof handlers / sizeof *handlers};
