/*
 * product.c -- the Product aggregate (sample domain): register, restock, and the
 * reservations orders hold against its stock.
 *
 * State: {"exists", "sku", "name", "price_cents", "on_hand", "reserved": {order_id: qty}}.
 * Invariant: available = on_hand - sum(reserved) never goes negative; reserve checks it.
 * Re-reserving for an order that already holds a reservation changes nothing, so a saga
 * that retries a step does not reserve twice. Every sum is checked (commands_int.h): a
 * restock that would take on_hand past 2^63-1 is refused with `overflow`.
 */
#include "commands/commands_int.h"
#include "commands/sample.h"

#include <errno.h>
#include <string.h>

static json_t *initial(void)
{
    return json_pack("{s:b, s:I, s:{}}", "exists", 0, "on_hand", (json_int_t)0, "reserved");
}

static int evolve(json_t *st, const char *type, const json_t *ev)
{
    json_t *reserved = cmd_child(st, "reserved");
    if (!reserved)
        return -ENOMEM;
    const char *order = cmd_str(ev, "order_id");
    int rc = 0;
    if (strcmp(type, "ProductRegistered") == 0) {
        rc = cmd_set(st, "exists", json_true());
        if (rc == 0)
            rc = cmd_set(st, "sku", json_string(cmd_str(ev, "sku")));
        if (rc == 0)
            rc = cmd_set(st, "name", json_string(cmd_str(ev, "name")));
        if (rc == 0)
            rc = cmd_set(st, "price_cents", json_integer(cmd_int(ev, "price_cents")));
    } else if (strcmp(type, "ProductRestocked") == 0) {
        rc = cmd_set(st, "on_hand",
                     json_integer(cmd_add_sat(cmd_int(st, "on_hand"), cmd_int(ev, "quantity"))));
    } else if (strcmp(type, "StockReserved") == 0) {
        rc = cmd_set(reserved, order, json_integer(cmd_int(ev, "quantity")));
    } else if (strcmp(type, "StockReleased") == 0) {
        json_object_del(reserved, order);
    } else if (strcmp(type, "StockCommitted") == 0) {
        rc = cmd_set(st, "on_hand",
                     json_integer(cmd_sub_sat(cmd_int(st, "on_hand"), cmd_int(ev, "quantity"))));
        json_object_del(reserved, order);
    }
    return rc;
}

static const cmd_aggregate product = {
    .name = "Product",
    .stream_prefix = "product-",
    .state_version = 1,
    .initial = initial,
    .evolve = evolve,
};

static bool missing(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (cmd_bool(st, "exists"))
        return false;
    cmd_result_reject(out, "not_found", "product %s is not registered", cmd_str(cmd, "sku"));
    return true;
}

static int register_product(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (cmd_bool(st, "exists")) {
        cmd_result_reject(out, "already_exists", "product %s is already registered",
                          cmd_str(cmd, "sku"));
        return 0;
    }
    return cmd_result_add(out, "ProductRegistered",
                          json_pack("{s:s, s:s, s:I}", "sku", cmd_str(cmd, "sku"), "name",
                                    cmd_str(cmd, "name"), "price_cents",
                                    (json_int_t)cmd_int(cmd, "price_cents")));
}

static int restock(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (missing(st, cmd, out))
        return 0;
    long long on_hand;
    if (!cmd_add(cmd_int(st, "on_hand"), cmd_int(cmd, "quantity"), &on_hand)) {
        cmd_result_overflow(out, "quantity",
                            "product %s has %lld on hand; %lld more would overflow",
                            cmd_str(cmd, "sku"), cmd_int(st, "on_hand"), cmd_int(cmd, "quantity"));
        return 0;
    }
    return cmd_result_add(out, "ProductRestocked",
                          json_pack("{s:s, s:I}", "sku", cmd_str(cmd, "sku"), "quantity",
                                    (json_int_t)cmd_int(cmd, "quantity")));
}

static int reserve(const json_t *st, const json_t *cmd, cmd_result *out)
{
    if (missing(st, cmd, out))
        return 0;
    const char *order = cmd_str(cmd, "order_id");
    const json_t *reserved = json_object_get(st, "reserved");
    if (json_object_get(reserved, order))
        return 0; /* already reserved for this order */
    long long want = cmd_int(cmd, "quantity"), held, available;
    if (!cmd_sum(reserved, &held) || !cmd_sub(cmd_int(st, "on_hand"), held, &available) ||
        !cmd_add(held, want, &held)) {
        cmd_result_overflow(out, "quantity", "product %s: reserving %lld would overflow its stock",
                            cmd_str(cmd, "sku"), want);
        return 0;
    }
    if (want > available) {
        cmd_result_reject(out, "insufficient_stock",
                          "product %s has %lld available, %lld requested", cmd_str(cmd, "sku"),
                          available, want);
        return 0;
    }
    return cmd_result_add(out, "StockReserved",
                          json_pack("{s:s, s:s, s:I}", "sku", cmd_str(cmd, "sku"), "order_id",
                                    order, "quantity", (json_int_t)want));
}

static int release(const json_t *st, const json_t *cmd, cmd_result *out)
{
    const char *order = cmd_str(cmd, "order_id");
    const json_t *held = json_object_get(json_object_get(st, "reserved"), order);
    if (!held)
        return 0; /* nothing reserved: nothing to release */
    return cmd_result_add(out, "StockReleased",
                          json_pack("{s:s, s:s, s:I}", "sku", cmd_str(cmd, "sku"), "order_id",
                                    order, "quantity", (json_int_t)json_integer_value(held)));
}

static int commit(const json_t *st, const json_t *cmd, cmd_result *out)
{
    const char *order = cmd_str(cmd, "order_id");
    const json_t *held = json_object_get(json_object_get(st, "reserved"), order);
    if (!held) {
        cmd_result_reject(out, "no_reservation", "order %s holds no reservation of %s", order,
                          cmd_str(cmd, "sku"));
        return 0;
    }
    return cmd_result_add(out, "StockCommitted",
                          json_pack("{s:s, s:s, s:I}", "sku", cmd_str(cmd, "sku"), "order_id",
                                    order, "quantity", (json_int_t)json_integer_value(held)));
}

static const cmd_handler handlers[] = {
    {"RegisterProduct", &product, "sku", register_product},
    {"RestockProduct", &product, "sku", restock},
    {"ReserveStock", &product, "sku", reserve},
    {"ReleaseStock", &product, "sku", release},
    {"CommitStock", &product, "sku", commit},
};

const cmd_handler_table cmd_product_handlers = {handlers, sizeof handlers / sizeof *handlers};
