/*
 * order.c -- the Order aggregate (sample domain): placed with lines, then confirmed or
 * cancelled, once.
 *
 * State: an order_state; its JSON form (snapshots) is {"status":
 * "none"|"placed"|"confirmed"|"cancelled", "order_id", "customer_id", "total_cents"}, the
 * last three once placed. The total is computed here, with overflow refused, so clients
 * cannot send a total that disagrees with the lines.
 */
#include "commands/commands_int.h"
#include "commands/sample.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef enum order_status {
    ORDER_NONE = 0,
    ORDER_PLACED,
    ORDER_CONFIRMED,
    ORDER_CANCELLED
} order_status;

static const char *const status_names[] = {"none", "placed", "confirmed", "cancelled"};

typedef struct order_state {
    order_status status;
    char *order_id, *customer_id; /* owned; NULL until placed */
    long long total_cents;
} order_state;

static int evolve(void *state, const char *type, const json_t *ev)
{
    order_state *st = state;
    int rc = 0;
    if (strcmp(type, "OrderPlaced") == 0) {
        rc = cmd_strset(&st->order_id, cmd_str(ev, "order_id"));
        if (rc == 0)
            rc = cmd_strset(&st->customer_id, cmd_str(ev, "customer_id"));
        if (rc == 0) {
            st->status = ORDER_PLACED;
            st->total_cents = cmd_int(ev, "total_cents");
        }
    } else if (strcmp(type, "OrderConfirmed") == 0) {
        st->status = ORDER_CONFIRMED;
    } else if (strcmp(type, "OrderCancelled") == 0) {
        st->status = ORDER_CANCELLED;
    }
    return rc;
}

static void release_state(void *state)
{
    order_state *st = state;
    free(st->order_id);
    free(st->customer_id);
}

static json_t *to_json(const void *state)
{
    const order_state *st = state;
    if (!st->order_id)
        return json_pack("{s:s}", "status", status_names[st->status]);
    return json_pack("{s:s, s:s, s:s, s:I}", "status", status_names[st->status], "order_id",
                     st->order_id, "customer_id", st->customer_id, "total_cents",
                     (json_int_t)st->total_cents);
}

static int from_json(void *state, const json_t *json)
{
    order_state *st = state;
    const char *status = json_string_value(json_object_get(json, "status"));
    size_t n = sizeof status_names / sizeof *status_names;
    size_t i = 0;
    while (status && i < n && strcmp(status, status_names[i]) != 0)
        i++;
    if (!status || i == n)
        return SK_EBADINPUT;
    st->status = (order_status)i;
    if (!json_object_get(json, "order_id"))
        return 0;
    int rc = cmd_json_strset(&st->order_id, json, "order_id");
    if (rc == 0)
        rc = cmd_json_strset(&st->customer_id, json, "customer_id");
    if (rc == 0)
        rc = cmd_json_int(&st->total_cents, json, "total_cents");
    return rc;
}

static const cmd_aggregate order = {
    .name = "Order",
    .stream_prefix = "order-",
    .state_version = 1,
    .state_size = sizeof(order_state),
    .evolve = evolve,
    .release = release_state,
    .to_json = to_json,
    .from_json = from_json,
};

static int place(const void *state, const json_t *cmd, cmd_result *out)
{
    const order_state *st = state;
    if (st->status != ORDER_NONE) {
        cmd_result_reject(out, "already_exists", "order %s was already placed",
                          cmd_str(cmd, "order_id"));
        return 0;
    }
    long long total = 0;
    size_t i;
    const json_t *line, *lines = json_object_get(cmd, "lines");
    json_array_foreach(lines, i, line)
    {
        long long sub;
        if (!cmd_mul(cmd_int(line, "quantity"), cmd_int(line, "unit_price_cents"), &sub) ||
            !cmd_add(total, sub, &total)) {
            char field[32];
            snprintf(field, sizeof field, "lines[%zu]", i);
            cmd_result_overflow(out, field, "line %zu makes the order total overflow", i);
            return 0;
        }
    }
    /* The bus checked the command against PlaceOrder's schema, whose lines have exactly
     * the fields of the event's lines, so the event shares them ("O" takes a reference)
     * rather than copying each line. */
    return cmd_result_add(out, "OrderPlaced",
                          json_pack("{s:s, s:s, s:O, s:I}", "order_id", cmd_str(cmd, "order_id"),
                                    "customer_id", cmd_str(cmd, "customer_id"), "lines", lines,
                                    "total_cents", (json_int_t)total));
}

static bool placed(const order_state *st, const json_t *cmd, const char *verb, cmd_result *out)
{
    if (st->status == ORDER_NONE) {
        cmd_result_reject(out, "not_found", "order %s does not exist", cmd_str(cmd, "order_id"));
        return false;
    }
    if (st->status != ORDER_PLACED) {
        cmd_result_reject(out, "invalid_state", "order %s is %s and cannot be %s",
                          cmd_str(cmd, "order_id"), status_names[st->status], verb);
        return false;
    }
    return true;
}

static int confirm(const void *state, const json_t *cmd, cmd_result *out)
{
    if (!placed(state, cmd, "confirmed", out))
        return 0;
    return cmd_result_add(out, "OrderConfirmed",
                          json_pack("{s:s}", "order_id", cmd_str(cmd, "order_id")));
}

static int cancel(const void *state, const json_t *cmd, cmd_result *out)
{
    if (!placed(state, cmd, "cancelled", out))
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
