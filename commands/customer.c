/*
 * customer.c -- the Customer aggregate (sample domain): an account with a credit limit
 * and the payments authorized against it.
 *
 * State: a customer_state; its JSON form (snapshots) is {"exists", "customer_id", "name",
 * "limit_cents", "payments": {order_id: amount}}, the id and name only once opened.
 * Invariant: the sum of payments never exceeds the limit. Authorizing again for an order
 * that already holds a payment changes nothing (saga retries stay single). Every sum is
 * checked (commands_int.h): credit that would overflow is refused with `overflow`.
 */
#include "commands/commands_int.h"
#include "commands/sample.h"

#include <errno.h>
#include <string.h>

typedef struct customer_state {
    bool exists;
    char *customer_id, *name; /* owned; NULL until opened */
    long long limit_cents;
    cmd_amounts payments; /* amount by order_id */
} customer_state;

static int evolve(void *state, const char *type, const json_t *ev)
{
    customer_state *st = state;
    int rc = 0;
    if (strcmp(type, "CustomerOpened") == 0) {
        rc = cmd_strset(&st->customer_id, cmd_str(ev, "customer_id"));
        if (rc == 0)
            rc = cmd_strset(&st->name, cmd_str(ev, "name"));
        if (rc == 0) {
            st->exists = true;
            st->limit_cents = cmd_int(ev, "credit_limit_cents");
        }
    } else if (strcmp(type, "PaymentAuthorized") == 0) {
        rc = cmd_amounts_set(&st->payments, cmd_str(ev, "order_id"), cmd_int(ev, "amount_cents"));
    } else if (strcmp(type, "PaymentRefunded") == 0) {
        cmd_amounts_del(&st->payments, cmd_str(ev, "order_id"));
    }
    return rc;
}

static void release_state(void *state)
{
    customer_state *st = state;
    free(st->customer_id);
    free(st->name);
    cmd_amounts_free(&st->payments);
}

static json_t *to_json(const void *state)
{
    const customer_state *st = state;
    json_t *payments = cmd_amounts_to_json(&st->payments);
    if (!st->exists) /* "o" hands payments over, and frees it if json_pack fails */
        return json_pack("{s:b, s:I, s:o}", "exists", 0, "limit_cents", (json_int_t)st->limit_cents,
                         "payments", payments);
    return json_pack("{s:b, s:s, s:s, s:I, s:o}", "exists", 1, "customer_id", st->customer_id,
                     "name", st->name, "limit_cents", (json_int_t)st->limit_cents, "payments",
                     payments);
}

static int from_json(void *state, const json_t *json)
{
    customer_state *st = state;
    int rc = cmd_json_bool(&st->exists, json, "exists");
    if (rc == 0 && st->exists) {
        rc = cmd_json_strset(&st->customer_id, json, "customer_id");
        if (rc == 0)
            rc = cmd_json_strset(&st->name, json, "name");
    }
    if (rc == 0)
        rc = cmd_json_int(&st->limit_cents, json, "limit_cents");
    if (rc == 0)
        rc = cmd_amounts_from_json(&st->payments, json_object_get(json, "payments"));
    return rc;
}

static const cmd_aggregate customer = {
    .name = "Customer",
    .stream_prefix = "customer-",
    .state_version = 1,
    .state_size = sizeof(customer_state),
    .evolve = evolve,
    .release = release_state,
    .to_json = to_json,
    .from_json = from_json,
};

static int open_customer(const void *state, const json_t *cmd, cmd_result *out)
{
    const customer_state *st = state;
    if (st->exists) {
        cmd_result_reject(out, "already_exists", "customer %s already exists",
                          cmd_str(cmd, "customer_id"));
        return 0;
    }
    return cmd_result_add(out, "CustomerOpened",
                          json_pack("{s:s, s:s, s:I}", "customer_id", cmd_str(cmd, "customer_id"),
                                    "name", cmd_str(cmd, "name"), "credit_limit_cents",
                                    (json_int_t)cmd_int(cmd, "credit_limit_cents")));
}

static int authorize(const void *state, const json_t *cmd, cmd_result *out)
{
    const customer_state *st = state;
    if (!st->exists) {
        cmd_result_reject(out, "not_found", "customer %s does not exist",
                          cmd_str(cmd, "customer_id"));
        return 0;
    }
    const char *order = cmd_str(cmd, "order_id");
    if (cmd_amounts_get(&st->payments, order))
        return 0; /* already authorized for this order */
    long long amount = cmd_int(cmd, "amount_cents");
    long long used, left, limit = st->limit_cents;
    if (!cmd_amounts_sum(&st->payments, &used) || !cmd_sub(limit, used, &left) ||
        !cmd_add(used, amount, &used)) {
        cmd_result_overflow(out, "amount_cents",
                            "customer %s: authorizing %lld cents would overflow its credit",
                            cmd_str(cmd, "customer_id"), amount);
        return 0;
    }
    if (amount > left) {
        cmd_result_reject(out, "credit_limit_exceeded",
                          "customer %s has %lld of %lld cents of credit left, %lld requested",
                          cmd_str(cmd, "customer_id"), left, limit, amount);
        return 0;
    }
    return cmd_result_add(out, "PaymentAuthorized",
                          json_pack("{s:s, s:s, s:I}", "customer_id", cmd_str(cmd, "customer_id"),
                                    "order_id", order, "amount_cents", (json_int_t)amount));
}

static int refund(const void *state, const json_t *cmd, cmd_result *out)
{
    const customer_state *st = state;
    const char *order = cmd_str(cmd, "order_id");
    const cmd_amount *paid = cmd_amounts_get(&st->payments, order);
    if (!paid)
        return 0; /* nothing authorized: nothing to refund */
    return cmd_result_add(out, "PaymentRefunded",
                          json_pack("{s:s, s:s, s:I}", "customer_id", cmd_str(cmd, "customer_id"),
                                    "order_id", order, "amount_cents", (json_int_t)paid->amount));
}

static const cmd_handler handlers[] = {
    {"OpenCustomer", &customer, "customer_id", open_customer},
    {"AuthorizePayment", &customer, "customer_id", authorize},
    {"RefundPayment", &customer, "customer_id", refund},
};

const cmd_handler_table cmd_customer_handlers = {handlers, sizeof handlers / sizeof *handlers};
