/*
 * order_fulfillment.c -- the sample saga (a definition, not engine code).
 *
 *   OrderPlaced -> ReserveStock for every line -> AuthorizePayment for the total ->
 *   CommitStock for every line and ConfirmOrder.
 *
 * A reservation rejected, a payment declined or a step timed out: the engine releases
 * what was reserved and refunds what was authorized (each step's compensations, in
 * reverse order), then CancelOrder with the reason. The last step is the pivot: it has
 * no compensation and no timeout; its transient failures retry until it is done.
 */
#include "sagas/sagas.h"

#include <stdio.h>
#include <string.h>

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static json_int_t num(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static int key(const json_t *payload, char *out, size_t size)
{
    const char *order = str(payload, "order_id");
    if (!*order)
        return 1;
    snprintf(out, size, "%s", order);
    return 0;
}

static int reserve(const json_t *d, saga_cmd_list *out)
{
    size_t i;
    json_t *line;
    json_array_foreach(json_object_get(d, "lines"), i, line)
    {
        int rc = saga_cmd_add(out, "ReserveStock",
                              json_pack("{s:s, s:s, s:I}", "sku", str(line, "sku"), "order_id",
                                        str(d, "order_id"), "quantity", num(line, "quantity")));
        if (rc)
            return rc;
    }
    return 0;
}

static int release(const json_t *d, size_t index, saga_cmd_list *out)
{
    json_t *line = json_array_get(json_object_get(d, "lines"), index);
    return saga_cmd_add(
        out, "ReleaseStock",
        json_pack("{s:s, s:s}", "sku", str(line, "sku"), "order_id", str(d, "order_id")));
}

static int authorize(const json_t *d, saga_cmd_list *out)
{
    return saga_cmd_add(out, "AuthorizePayment",
                        json_pack("{s:s, s:s, s:I}", "customer_id", str(d, "customer_id"),
                                  "order_id", str(d, "order_id"), "amount_cents",
                                  num(d, "total_cents")));
}

static int refund(const json_t *d, size_t index, saga_cmd_list *out)
{
    (void)index;
    return saga_cmd_add(out, "RefundPayment",
                        json_pack("{s:s, s:s}", "customer_id", str(d, "customer_id"), "order_id",
                                  str(d, "order_id")));
}

static int commit_and_confirm(const json_t *d, saga_cmd_list *out)
{
    size_t i;
    json_t *line;
    json_array_foreach(json_object_get(d, "lines"), i, line)
    {
        int rc = saga_cmd_add(
            out, "CommitStock",
            json_pack("{s:s, s:s}", "sku", str(line, "sku"), "order_id", str(d, "order_id")));
        if (rc)
            return rc;
    }
    return saga_cmd_add(out, "ConfirmOrder", json_pack("{s:s}", "order_id", str(d, "order_id")));
}

static int cancel(const json_t *d, const char *reason, saga_cmd_list *out)
{
    return saga_cmd_add(out, "CancelOrder",
                        json_pack("{s:s, s:s}", "order_id", str(d, "order_id"), "reason", reason));
}

static const saga_step_def steps[] = {
    {"reserve_stock", reserve, release, 10000, {5, 20, 1000}},
    {"authorize_payment", authorize, refund, 10000, {5, 20, 1000}},
    {"commit_and_confirm", commit_and_confirm, NULL, 0, {1000, 20, 1000}},
};

static const char *const ends[] = {"OrderConfirmed", "OrderCancelled", NULL};

const saga_def saga_order_fulfillment = {
    .type = "OrderFulfillment",
    .version = 1,
    .start_event = "OrderPlaced",
    .key = key,
    .end_events = ends,
    .steps = steps,
    .nsteps = sizeof steps / sizeof *steps,
    .on_compensated = cancel,
};
