/*
 * old_seed_log.c -- test fixture: writes into DIR/log a history shaped like the one the
 * old `skald seed` wrote (before the seed went through the bus and the saga): events
 * appended straight into the log, principal "seed", no idempotency key, every order
 * already confirmed or cancelled, and no `$saga-` stream. test_sagas.py serves such a
 * log with the sagas role and checks that no saga starts and nothing is doubled.
 *
 * Usage: old_seed_log DIR SCHEMAS ORDERS. Orders cycle through the old seeder's four
 * endings: confirmed; cancelled insufficient_stock after one line was reserved;
 * credit_limit_exceeded after the reservations; step_timeout after the payment.
 */
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ev_registry *reg;
static store_log *lg;
static sk_error err;

static void die(const char *what)
{
    fprintf(stderr, "old_seed_log: %s: %s\n", what, err.message);
    exit(1);
}

/* Appends one event (payload taken) at the stream's next version. */
static void emit(const char *stream, const char *type, json_t *payload, const ev_uuid *corr)
{
    ev_buf buf = {0};
    uint32_t schema_id = 0;
    if (!payload || ev_payload_from_json(reg, type, payload, &buf, &schema_id, &err) != 0)
        die(type);
    json_decref(payload);
    ev_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = ev_str_of(type);
    ev.occurred_at = ev_now_us();
    ev_uuid_generate(&ev.command_id);
    ev.correlation_id = *corr;
    ev.schema_id = schema_id;
    ev.metadata[0] = (ev_metadata_entry){ev_str_of(EV_META_PRINCIPAL), ev_str_of("seed")};
    ev.metadata_count = 1;
    ev.payload = buf.data;
    ev.payload_size = (uint32_t)buf.size;
    uint64_t version = store_log_stream_version(lg, ev_str_of(stream));
    if (store_log_append(lg, ev_str_of(stream), version, &ev, 1, NULL, &err) != 0)
        die(stream);
    ev_buf_free(&buf);
}

static void stock(const char *type, const char *sku, const char *order, int qty,
                  const ev_uuid *corr)
{
    char stream[64];
    snprintf(stream, sizeof stream, "product-%s", sku);
    emit(stream, type, json_pack("{s:s, s:s, s:i}", "sku", sku, "order_id", order, "quantity", qty),
         corr);
}

static void payment(const char *type, const char *order, const ev_uuid *corr)
{
    emit("customer-c1", type,
         json_pack("{s:s, s:s, s:i}", "customer_id", "c1", "order_id", order, "amount_cents", 300),
         corr);
}

static void order(int n)
{
    char id[32], stream[48];
    snprintf(id, sizeof id, "old-%d", n);
    snprintf(stream, sizeof stream, "order-%s", id);
    ev_uuid corr;
    ev_uuid_generate(&corr);
    emit(stream, "OrderPlaced",
         json_pack("{s:s, s:s, s:[{s:s, s:i, s:i}, {s:s, s:i, s:i}], s:i}", "order_id", id,
                   "customer_id", "c1", "lines", "sku", "P1", "quantity", 1, "unit_price_cents",
                   100, "sku", "P2", "quantity", 2, "unit_price_cents", 100, "total_cents", 300),
         &corr);
    stock("StockReserved", "P1", id, 1, &corr);
    const char *reason = NULL;
    switch (n % 4) {
    case 0: /* confirmed */
        stock("StockReserved", "P2", id, 2, &corr);
        payment("PaymentAuthorized", id, &corr);
        stock("StockCommitted", "P1", id, 1, &corr);
        stock("StockCommitted", "P2", id, 2, &corr);
        emit(stream, "OrderConfirmed", json_pack("{s:s}", "order_id", id), &corr);
        return;
    case 1: /* the second line lacked stock */
        reason = "insufficient_stock";
        break;
    case 2: /* both reserved, the credit did not suffice */
        stock("StockReserved", "P2", id, 2, &corr);
        reason = "credit_limit_exceeded";
        stock("StockReleased", "P2", id, 2, &corr);
        break;
    default: /* paid, then a step "timed out" */
        stock("StockReserved", "P2", id, 2, &corr);
        payment("PaymentAuthorized", id, &corr);
        payment("PaymentRefunded", id, &corr);
        stock("StockReleased", "P2", id, 2, &corr);
        reason = "step_timeout";
        break;
    }
    stock("StockReleased", "P1", id, 1, &corr);
    emit(stream, "OrderCancelled", json_pack("{s:s, s:s}", "order_id", id, "reason", reason),
         &corr);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: old_seed_log DIR SCHEMAS ORDERS\n");
        return 2;
    }
    char log_dir[4096];
    snprintf(log_dir, sizeof log_dir, "%s/log", argv[1]);
    if (ev_registry_open(argv[2], argv[1], &reg, &err) != 0)
        die("registry");
    store_config cfg;
    store_config_init(&cfg, log_dir);
    if (store_log_open(&cfg, &lg, &err) != 0)
        die("log");
    ev_uuid corr;
    ev_uuid_generate(&corr);
    for (int i = 1; i <= 2; i++) {
        char sku[8], stream[32];
        snprintf(sku, sizeof sku, "P%d", i);
        snprintf(stream, sizeof stream, "product-%s", sku);
        emit(stream, "ProductRegistered",
             json_pack("{s:s, s:s, s:i}", "sku", sku, "name", sku, "price_cents", 100), &corr);
        emit(stream, "ProductRestocked", json_pack("{s:s, s:i}", "sku", sku, "quantity", 100000),
             &corr);
    }
    emit("customer-c1", "CustomerOpened",
         json_pack("{s:s, s:s, s:i}", "customer_id", "c1", "name", "c1", "credit_limit_cents",
                   100000000),
         &corr);
    for (int n = 0, orders = atoi(argv[3]); n < orders; n++)
        order(n);
    if (store_log_close(lg) != 0)
        die("close");
    ev_registry_destroy(reg);
    return 0;
}
