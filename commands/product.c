/*
 * product.c -- the Product aggregate (sample domain): register, restock, and the
 * reservations orders hold against its stock.
 *
 * State: a product_state; its JSON form (snapshots) is {"exists", "sku", "name",
 * "price_cents", "on_hand", "reserved": {order_id: qty}}, the three after "exists" only
 * once registered.
 * Invariant: available = on_hand - sum(reserved) never goes negative; reserve checks it.
 * Re-reserving for an order that already holds a reservation changes nothing, so a saga
 * that retries a step does not reserve twice. Every sum is checked (commands_int.h): a
 * restock that would take on_hand past 2^63-1 is refused with `overflow`.
 */
#include "commands/commands_int.h"
#include "commands/sample.h"

#include <errno.h>
#include <string.h>

typedef struct product_state {
    bool exists;
    char *sku, *name; /* owned; NULL until registered */
    long long price_cents, on_hand;
    cmd_amounts reserved; /* quantity by order_id */
} product_state;

static int evolve(void *state, const char *type, const json_t *ev)
{
    product_state *st = state;
    const char *order = cmd_str(ev, "order_id");
    int rc = 0;
    if (strcmp(type, "ProductRegistered") == 0) {
        rc = cmd_strset(&st->sku, cmd_str(ev, "sku"));
        if (rc == 0)
            rc = cmd_strset(&st->name, cmd_str(ev, "name"));
        if (rc == 0) {
            st->exists = true;
            st->price_cents = cmd_int(ev, "price_cents");
        }
    } else if (strcmp(type, "ProductRestocked") == 0) {
        st->on_hand = cmd_add_sat(st->on_hand, cmd_int(ev, "quantity"));
    } else if (strcmp(type, "StockReserved") == 0) {
        rc = cmd_amounts_set(&st->reserved, order, cmd_int(ev, "quantity"));
    } else if (strcmp(type, "StockReleased") == 0) {
        cmd_amounts_del(&st->reserved, order);
    } else if (strcmp(type, "StockCommitted") == 0) {
        st->on_hand = cmd_sub_sat(st->on_hand, cmd_int(ev, "quantity"));
        cmd_amounts_del(&st->reserved, order);
    }
    return rc;
}

static void release_state(void *state)
{
    product_state *st = state;
    free(st->sku);
    free(st->name);
    cmd_amounts_free(&st->reserved);
}

static json_t *to_json(const void *state)
{
    const product_state *st = state;
    json_t *reserved = cmd_amounts_to_json(&st->reserved);
    if (!st->exists) /* "o" hands reserved over, and frees it if json_pack fails */
        return json_pack("{s:b, s:I, s:o}", "exists", 0, "on_hand", (json_int_t)st->on_hand,
                         "reserved", reserved);
    return json_pack("{s:b, s:s, s:s, s:I, s:I, s:o}", "exists", 1, "sku", st->sku, "name",
                     st->name, "price_cents", (json_int_t)st->price_cents, "on_hand",
                     (json_int_t)st->on_hand, "reserved", reserved);
}

static int from_json(void *state, const json_t *json)
{
    product_state *st = state;
    int rc = cmd_json_bool(&st->exists, json, "exists");
    if (rc == 0 && st->exists) {
        rc = cmd_json_strset(&st->sku, json, "sku");
        if (rc == 0)
            rc = cmd_json_strset(&st->name, json, "name");
        if (rc == 0)
            rc = cmd_json_int(&st->price_cents, json, "price_cents");
    }
    if (rc == 0)
        rc = cmd_json_int(&st->on_hand, json, "on_hand");
    if (rc == 0)
        rc = cmd_amounts_from_json(&st->reserved, json_object_get(json, "reserved"));
    return rc;
}

static const cmd_aggregate product = {
    .name = "Product",
    .stream_prefix = "product-",
    .state_version = 1,
    .state_size = sizeof(product_state),
    .evolve = evolve,
    .release = release_state,
    .to_json = to_json,
    .from_json = from_json,
};

static bool missing(const product_state *st, const json_t *cmd, cmd_result *out)
{
    if (st->exists)
        return false;
    cmd_result_reject(out, "not_found", "product %s is not registered", cmd_str(cmd, "sku"));
    return true;
}

static int register_product(const void *state, const json_t *cmd, cmd_result *out)
{
    const product_state *st = state;
    if (st->exists) {
        cmd_result_reject(out, "already_exists", "product %s is already registered",
                          cmd_str(cmd, "sku"));
        return 0;
    }
    return cmd_result_add(out, "ProductRegistered",
                          json_pack("{s:s, s:s, s:I}", "sku", cmd_str(cmd, "sku"), "name",
                                    cmd_str(cmd, "name"), "price_cents",
                                    (json_int_t)cmd_int(cmd, "price_cents")));
}

static int restock(const void *state, const json_t *cmd, cmd_result *out)
{
    const product_state *st = state;
    if (missing(st, cmd, out))
        return 0;
    long long on_hand;
    if (!cmd_add(st->on_hand, cmd_int(cmd, "quantity"), &on_hand)) {
        cmd_result_overflow(out, "quantity",
                            "product %s has %lld on hand; %lld more would overflow",
                            cmd_str(cmd, "sku"), st->on_hand, cmd_int(cmd, "quantity"));
        return 0;
    }
    return cmd_result_add(out, "ProductRestocked",
                          json_pack("{s:s, s:I}", "sku", cmd_str(cmd, "sku"), "quantity",
                                    (json_int_t)cmd_int(cmd, "quantity")));
}

static int reserve(const void *state, const json_t *cmd, cmd_result *out)
{
    const product_state *st = state;
    if (missing(st, cmd, out))
        return 0;
    const char *order = cmd_str(cmd, "order_id");
    if (cmd_amounts_get(&st->reserved, order))
        return 0; /* already reserved for this order */
    long long want = cmd_int(cmd, "quantity"), held, available;
    if (!cmd_amounts_sum(&st->reserved, &held) || !cmd_sub(st->on_hand, held, &available) ||
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

static int release(const void *state, const json_t *cmd, cmd_result *out)
{
    const product_state *st = state;
    const char *order = cmd_str(cmd, "order_id");
    const cmd_amount *held = cmd_amounts_get(&st->reserved, order);
    if (!held)
        return 0; /* nothing reserved: nothing to release */
    return cmd_result_add(out, "StockReleased",
                          json_pack("{s:s, s:s, s:I}", "sku", cmd_str(cmd, "sku"), "order_id",
                                    order, "quantity", (json_int_t)held->amount));
}

static int commit(const void *state, const json_t *cmd, cmd_result *out)
{
    const product_state *st = state;
    const char *order = cmd_str(cmd, "order_id");
    const cmd_amount *held = cmd_amounts_get(&st->reserved, order);
    if (!held) {
        cmd_result_reject(out, "no_reservation", "order %s holds no reservation of %s", order,
                          cmd_str(cmd, "sku"));
        return 0;
    }
    return cmd_result_add(out, "StockCommitted",
                          json_pack("{s:s, s:s, s:I}", "sku", cmd_str(cmd, "sku"), "order_id",
                                    order, "quantity", (json_int_t)held->amount));
}

static const cmd_handler handlers[] = {
    {"RegisterProduct", &product, "sku", register_product},
    {"RestockProduct", &product, "sku", restock},
    {"ReserveStock", &product, "sku", reserve},
    {"ReleaseStock", &product, "sku", release},
    {"CommitStock", &product, "sku", commit},
};

const cmd_handler_table cmd_product_handlers = {handlers, sizeof handlers / sizeof *handlers};
