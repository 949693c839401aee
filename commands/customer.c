/*
 * customer.c -- the Customer aggregate (sample domain): an account with a credit limit
 * and the payments authorized against it.
 *
 * State: {"exists", "customer_id", "name", "limit_cents", "payments": {order_id: amount}}.
 * Invariant: the sum of payments never exceeds the limit. Authorizing again for an order
 * that already holds a payment changes nothing (saga retries stay single). Every sum is
 * checked (commands_int.h): credit that would overflow is refused with `overflow`.
 */
#include "commands/commands_int.h"
#include "commands/sample.h"

#include <errno.h>
#include <string.h>

static json_t *initial(void)
{
    return json_pack("{s:b, s:I, s:{}}", "exists", 0, "limit_cents", (json_int_t)0, "payments");
}

static int evolve(json_t *st, const char *type, const json_t *ev)
{
    json_t *payments = cmd_child(st, "payments");
    if (!payments)
        return -ENOMEM;
    int rc = 0;
    if (strcmp(type, "CustomerOpened") == 0) {
        rc = cmd_set(st, "exists", json_true());
        if (rc == 0)
            rc = cmd_set(st, "customer_id", json_string(cmd_str(ev, "customer_id")));
        if (rc == 0)
            rc = cmd_set(st, "name", json_string(cmd_str(ev, "name")));
        if (rc == 0)
            rc = cmd_set(st, "limit_cents", json_integer(cmd_int(ev, "credit_limit_cents")));
    } else if (strcmp(type, "PaymentAuthorized") == 0) {
        rc = cmd_set(payments, cmd_str(ev, "order_id"), json_integer(cmd_int(ev, "amount_cents")));
    } else if (strcmp(type, "PaymentRefunded") == 0) {
        json_object_del(payments, cmd_str(ev, "order_id"));
    }
    return rc;
}

static const cmd_aggregate customer = {
    .name = "Customer",
    .stream_prefix = "customer-",
    .state_version = 1,
    .initial = initial,
    .evolve = evolve,
};

static int open_customer(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (cmd_bool(st, "exists")) {
        cmd_result_reject(out, "already_exists", "customer %s already exists",
                          cmd_str(cmd, "customer_id"));
        return 0;
    }
    return cmd_result_add(out, "CustomerOpened",
                          json_pack("{s:s, s:s, s:I}", "customer_id", cmd_str(cmd, "customer_id"),
                                    "name", cmd_str(cmd, "name"), "credit_limit_cents",
                                    (json_int_t)cmd_int(cmd, "credit_limit_cents")));
}

static int authorize(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (!cmd_bool(st, "exists")) {
        cmd_result_reject(out, "not_found", "customer %s does not exist",
                          cmd_str(cmd, "customer_id"));
        return 0;
    }
    const char *order = cmd_str(cmd, "order_id");
    const json_t *payments = json_object_get(st, "payments");
    if (json_object_get(payments, order))
        return 0; /* already authorized for this order */
    long long amount = cmd_int(cmd, "amount_cents");
    long long used, left, limit = cmd_int(st, "limit_cents");
    if (!cmd_sum(payments, &used) || !cmd_sub(limit, used, &left) ||
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

static int refund(const json_t *st, const json_t *cmd, cmd_result *out)
{
    const char *order = cmd_str(cmd, "order_id");
    const json_t *paid = json_object_get(json_object_get(st, "payments"), order);
    if (!paid)
        return 0; /* nothing authorized: nothing to refund */
    return cmd_result_add(out, "PaymentRefunded",
                          json_pack("{s:s, s:s, s:I}", "customer_id", cmd_str(cmd, "customer_id"),
                                    "order_id", order, "amount_cents",
                                    (json_int_t)json_integer_value(paid)));
}

static const cmd_handler handlers[] = {
    {"OpenCustomer", &customer, "customer_id", open_customer},
    {"AuthorizePayment", &customer, "customer_id", authorize},
    {"RefundPayment", &customer, "customer_id", refund},
};

const cmd_handler_table cmd_customer_handlers = {handlers, sizeof handlers / sizeof *handlers};
