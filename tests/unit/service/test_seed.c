/*
 * test_seed.c -- `skald seed` must write a history the domain could have produced, since
 * read models, sagas and their tests are built on it; and it must write it through the
 * command bus and the OrderFulfillment saga, not beside them.
 *
 * Each test seeds a fresh data directory through svc_seed_run, reads the whole log back
 * through the real store and registry, replays it, and checks the design's invariants at
 * every event: available stock never negative, used credit never above the limit, every
 * order ending confirmed or cancelled, a cancelled order holding no reservation and no
 * payment, no effect twice. That the bus and the saga wrote it shows in the envelope:
 * the seed's own commands carry principal "seed" and an idempotency key, every other
 * event of an order was sent by its saga (principal "$sagas", the saga's id and key),
 * every order has a saga stream that ended; one correlation id and one trace per order.
 * Also: determinism by seed (every business stream's history), refusing a second seed.
 */
#include "service/service.h"
#include "store/store.h"

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define TEST_ORDERS 1000 /* enough that every way an order can fail shows up */
#define SAGA_PREFIX "$saga-OrderFulfillment-"

/* ---------------------------------------------------------------------------------------
 * Temporary data directories.
 */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *make_tempdir(void)
{
    char *dir = strdup("/tmp/skald-seed-test-XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_tempdir(char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static const char *schemas_dir(void)
{
    static char path[4096];
    const char *src = getenv("SKALD_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/events/schemas", src ? src : SKALD_SOURCE_DIR);
    return path;
}

static svc_seed_report seed_n(const char *dir, uint64_t seed_value, uint32_t orders, int if_empty,
                              int *rc_out)
{
    svc_seed_options opt;
    svc_seed_report report;
    sk_error err;
    memset(&report, 0, sizeof report);
    svc_seed_options_init(&opt, dir);
    opt.schemas_dir = schemas_dir();
    opt.orders = orders;
    opt.seed = seed_value;
    opt.if_empty = if_empty;
    sk_error_clear(&err);
    *rc_out = svc_seed_run(&opt, &report, &err);
    if (*rc_out != 0 && *rc_out != SK_ECONFLICT)
        print_error("seed failed: %s (%s)\n", err.message, sk_err_name(*rc_out));
    return report;
}

static svc_seed_report seed(const char *dir, uint64_t seed_value, int if_empty, int *rc_out)
{
    return seed_n(dir, seed_value, TEST_ORDERS, if_empty, rc_out);
}

/* ---------------------------------------------------------------------------------------
 * Reading the log back: every event as one JSON object {stream, type, version,
 * correlation, principal, traceparent, payload}.
 */
static json_t *text_of(ev_str s)
{
    return json_stringn(s.ptr, s.len);
}

static json_t *event_to_json(const ev_registry *reg, const ev_event *ev)
{
    json_t *payload = NULL;
    sk_error err;
    assert_int_equal(
        ev_payload_to_json(reg, ev->schema_id, ev->payload, ev->payload_size, &payload, &err), 0);
    char correlation[EV_UUID_TEXT_SIZE];
    ev_uuid_format(&ev->correlation_id, correlation);
    json_t *out = json_pack("{s:o, s:o, s:I, s:s, s:o}", "stream", text_of(ev->stream_id), "type",
                            text_of(ev->type), "version", (json_int_t)ev->version, "correlation",
                            correlation, "payload", payload);
    assert_non_null(out);
    for (uint32_t i = 0; i < ev->metadata_count; i++) {
        char key[EV_METADATA_KEY_MAX + 1];
        snprintf(key, sizeof key, "%.*s", (int)ev->metadata[i].key.len, ev->metadata[i].key.ptr);
        json_object_set_new(out, key, text_of(ev->metadata[i].value));
    }
    return out;
}

/* The whole log of DIR as a JSON array, in position order. */
static json_t *read_log(const char *dir)
{
    char log_dir[4096];
    ev_registry *reg = NULL;
    store_log *log = NULL;
    store_reader *reader = NULL;
    store_config cfg;
    sk_error err;
    snprintf(log_dir, sizeof log_dir, "%s/log", dir);
    assert_int_equal(ev_registry_open_readonly(schemas_dir(), dir, &reg, &err), 0);
    store_config_init(&cfg, log_dir);
    cfg.read_only = 1;
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    uint64_t head = store_log_head(log);
    assert_int_equal(store_reader_open(log, 0, &reader), 0);
    json_t *events = json_array();
    ev_event ev;
    for (uint64_t i = 0; i < head; i++) {
        assert_int_equal(store_reader_next(reader, &ev, &err), 1);
        assert_int_equal(ev.position, i);
        json_array_append_new(events, event_to_json(reg, &ev));
    }
    assert_int_equal(store_reader_next(reader, &ev, &err), 0);
    store_reader_close(reader);
    assert_int_equal(store_log_close(log), 0);
    ev_registry_destroy(reg);
    return events;
}

/* ---------------------------------------------------------------------------------------
 * Replaying the domain. Counters live in one JSON object keyed by "<what>/<id>".
 */
static json_int_t get(const json_t *model, const char *what, const char *a, const char *b)
{
    char key[512];
    snprintf(key, sizeof key, "%s/%s/%s", what, a, b ? b : "");
    return json_integer_value(json_object_get(model, key));
}

static json_int_t add(json_t *model, const char *what, const char *a, const char *b,
                      json_int_t delta)
{
    char key[512];
    snprintf(key, sizeof key, "%s/%s/%s", what, a, b ? b : "");
    json_int_t value = json_integer_value(json_object_get(model, key)) + delta;
    json_object_set_new(model, key, json_integer(value));
    return value;
}

static const char *str(const json_t *payload, const char *field)
{
    const char *s = json_string_value(json_object_get(payload, field));
    assert_non_null(s);
    return s;
}

static json_int_t num(const json_t *payload, const char *field)
{
    const json_t *v = json_object_get(payload, field);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* Stock: available = restocked - committed - reserved, never negative. */
static void apply_stock(json_t *model, const char *type, const json_t *p)
{
    const char *sku = str(p, "sku");
    if (strcmp(type, "ProductRegistered") == 0) {
        assert_true(num(p, "price_cents") >= 0);
    } else if (strcmp(type, "ProductRestocked") == 0) {
        assert_true(num(p, "quantity") > 0);
        add(model, "available", sku, NULL, num(p, "quantity"));
    } else if (strcmp(type, "StockReserved") == 0) {
        assert_true(add(model, "available", sku, NULL, -num(p, "quantity")) >= 0);
        assert_int_equal(add(model, "reservations", str(p, "order_id"), sku, 1), 1); /* once */
        add(model, "reserved", str(p, "order_id"), sku, num(p, "quantity"));
    } else if (strcmp(type, "StockReleased") == 0) {
        assert_int_equal(add(model, "reserved", str(p, "order_id"), sku, -num(p, "quantity")), 0);
        add(model, "available", sku, NULL, num(p, "quantity"));
    } else if (strcmp(type, "StockCommitted") == 0) {
        assert_int_equal(add(model, "reserved", str(p, "order_id"), sku, -num(p, "quantity")), 0);
    }
}

/* Credit: used = authorized - refunded, never above the limit. */
static void apply_credit(json_t *model, const char *type, const json_t *p)
{
    const char *customer = str(p, "customer_id");
    if (strcmp(type, "CustomerOpened") == 0) {
        add(model, "limit", customer, NULL, num(p, "credit_limit_cents"));
    } else if (strcmp(type, "PaymentAuthorized") == 0) {
        json_int_t used = add(model, "used", customer, NULL, num(p, "amount_cents"));
        assert_int_equal(add(model, "payments", str(p, "order_id"), NULL, 1), 1); /* once */
        assert_true(used <= get(model, "limit", customer, NULL));
        add(model, "paid", str(p, "order_id"), NULL, num(p, "amount_cents"));
    } else if (strcmp(type, "PaymentRefunded") == 0) {
        assert_true(add(model, "used", customer, NULL, -num(p, "amount_cents")) >= 0);
        assert_int_equal(add(model, "paid", str(p, "order_id"), NULL, -num(p, "amount_cents")), 0);
    }
}

/* Orders: placed once, then ended once; a cancelled order holds nothing. */
static void apply_order(json_t *model, const char *type, const json_t *p)
{
    const char *order = str(p, "order_id");
    if (strcmp(type, "OrderPlaced") == 0) {
        json_int_t total = 0;
        size_t i;
        const json_t *line;
        json_array_foreach(json_object_get(p, "lines"), i, line)
        {
            total += num(line, "quantity") * num(line, "unit_price_cents");
            add(model, "lines", order, NULL, 1);
        }
        assert_int_equal(total, num(p, "total_cents"));
        assert_int_equal(add(model, "state", order, NULL, 1), 1);
        add(model, "open", "", NULL, 1);
    } else if (strcmp(type, "OrderConfirmed") == 0) {
        assert_int_equal(add(model, "state", order, NULL, 1), 2);
        assert_true(get(model, "paid", order, NULL) > 0);
        add(model, "open", "", NULL, -1);
    } else if (strcmp(type, "OrderCancelled") == 0) {
        assert_int_equal(add(model, "state", order, NULL, 1), 2);
        assert_int_equal(get(model, "paid", order, NULL), 0);
        add(model, "reason", str(p, "reason"), NULL, 1);
        add(model, "open", "", NULL, -1);
    }
}

/* A cancelled order must hold no reservation on any of the products it reserved. */
static void check_no_reservation_left(const json_t *model)
{
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)model, key, value)
    {
        if (strncmp(key, "reserved/", 9) == 0)
            assert_int_equal(json_integer_value(value), 0);
    }
}

/* Each order's events share one correlation id and one trace. The seed's own commands
 * (principal "seed") carry its idempotency key; the rest of an order's events were sent by
 * its saga: principal "$sagas", the saga's id, and a key (its journal's writes are
 * conditional instead, and carry none). */
static void check_envelope(json_t *model, const json_t *ev)
{
    const char *correlation = str(ev, "correlation");
    const char *traceparent = str(ev, EV_META_TRACEPARENT);
    const char *principal = str(ev, EV_META_PRINCIPAL);
    const char *stream = str(ev, "stream");
    const char *key = json_string_value(json_object_get(ev, "idempotency"));
    if (strcmp(principal, "seed") == 0) {
        assert_non_null(key);
        assert_memory_equal(key, "k/seed/", 7);
        assert_null(json_object_get(ev, "saga_id"));
    } else {
        assert_string_equal(principal, "$sagas");
        const char *saga = str(ev, "saga_id");
        assert_memory_equal(saga, "OrderFulfillment-", 17);
        if (stream[0] == '$') {
            assert_null(key);
            assert_string_equal(stream + 6, saga);
        } else {
            assert_non_null(key);
            assert_memory_equal(key + 2, saga, strlen(saga)); /* s/<saga_id>/... */
        }
    }
    assert_int_equal(strlen(traceparent), 55);
    assert_memory_equal(traceparent, "00-", 3);
    assert_memory_equal(traceparent + 52, "-01", 3);
    char trace[33];
    size_t n = 0;
    for (const char *c = correlation; *c && n < 32; c++)
        if (*c != '-')
            trace[n++] = *c;
    trace[n] = '\0';
    assert_memory_equal(traceparent + 3, trace, 32);
    const json_t *order_id = json_object_get(json_object_get(ev, "payload"), "order_id");
    char order[256];
    if (order_id)
        snprintf(order, sizeof order, "%s", json_string_value(order_id));
    else if (strncmp(stream, SAGA_PREFIX, strlen(SAGA_PREFIX)) == 0)
        snprintf(order, sizeof order, "%s", stream + strlen(SAGA_PREFIX));
    else
        return;
    char k[512];
    snprintf(k, sizeof k, "correlation/%s", order);
    const char *seen = json_string_value(json_object_get(model, k));
    if (seen)
        assert_string_equal(seen, correlation);
    else
        json_object_set_new(model, k, json_string(correlation));
}

/* A saga's journal: started once, ended once (completed or compensated), nothing after. */
static void apply_saga(json_t *model, const char *stream, const char *type, const json_t *p)
{
    const char *order = stream + strlen(SAGA_PREFIX);
    if (strcmp(type, "SagaStarted") == 0) {
        assert_int_equal(add(model, "saga", order, NULL, 1), 1);
        add(model, "sagas_open", "", NULL, 1);
        return;
    }
    assert_int_equal(get(model, "saga", order, NULL), 1); /* started, not ended */
    if (strcmp(type, "SagaStateChanged") != 0)
        return;
    const char *state = str(p, "state");
    if (strcmp(state, "completed") == 0 || strcmp(state, "compensated") == 0) {
        add(model, "saga", order, NULL, 1);
        add(model, "sagas_open", "", NULL, -1);
        add(model, "saga_ended", state, NULL, 1);
    } else {
        assert_string_equal(state, "compensating"); /* never stuck, never aborted */
    }
}

/* Stream versions run 1, 2, 3, ... with no gap: every expected version was right. */
static void check_version(json_t *model, const json_t *ev)
{
    assert_int_equal(add(model, "version", str(ev, "stream"), NULL, 1), num(ev, "version"));
}

static void replay_and_check(const json_t *events, uint64_t orders)
{
    json_t *model = json_object();
    size_t i;
    const json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *type = str(ev, "type");
        const char *stream = str(ev, "stream");
        const json_t *payload = json_object_get(ev, "payload");
        check_version(model, ev);
        check_envelope(model, ev);
        if (strncmp(stream, SAGA_PREFIX, strlen(SAGA_PREFIX)) == 0)
            apply_saga(model, stream, type, payload);
        else if (strncmp(type, "Product", 7) == 0 || strncmp(type, "Stock", 5) == 0)
            apply_stock(model, type, payload);
        else if (strncmp(type, "Customer", 8) == 0 || strncmp(type, "Payment", 7) == 0)
            apply_credit(model, type, payload);
        else if (strncmp(type, "Order", 5) == 0)
            apply_order(model, type, payload);
        else
            fail_msg("unexpected event type %s in %s", type, stream);
    }
    assert_int_equal(get(model, "open", "", NULL), 0);
    /* every order had its saga, and every saga ended */
    assert_int_equal(get(model, "sagas_open", "", NULL), 0);
    assert_int_equal(get(model, "saga_ended", "completed", NULL) +
                         get(model, "saga_ended", "compensated", NULL),
                     orders);
    /* Both ways the deciders refuse an order showed up. */
    assert_true(get(model, "reason", "insufficient_stock", NULL) > 0);
    assert_true(get(model, "reason", "credit_limit_exceeded", NULL) > 0);
    check_no_reservation_left(model);
    json_decref(model);
}

static size_t count_type(const json_t *events, const char *type)
{
    size_t i, count = 0;
    const json_t *ev;
    json_array_foreach(events, i, ev)
    {
        count += strcmp(str(ev, "type"), type) == 0;
    }
    return count;
}

/* What two runs of one seed must share: each business stream's events (types, versions,
 * payloads) in order. Positions interleave differently from run to run (orders run
 * concurrently), and the sagas' journals hold times; neither is part of the story. */
static json_t *story_of(const json_t *events)
{
    json_t *story = json_object();
    size_t i;
    const json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *stream = str(ev, "stream");
        if (stream[0] == '$')
            continue;
        json_t *list = json_object_get(story, stream);
        if (!list) {
            list = json_array();
            json_object_set_new(story, stream, list);
        }
        json_array_append_new(list, json_pack("[O, O, O]", json_object_get(ev, "type"),
                                              json_object_get(ev, "version"),
                                              json_object_get(ev, "payload")));
    }
    return story;
}

/* ---------------------------------------------------------------------------------------
 * Tests.
 */
static void test_seed_keeps_domain_invariants(void **state)
{
    (void)state;
    char *dir = make_tempdir();
    int rc;
    svc_seed_report r = seed(dir, 42, 0, &rc);
    assert_int_equal(rc, 0);
    json_t *events = read_log(dir);
    assert_int_equal(json_array_size(events), r.events);
    assert_int_equal(r.first_position, 0);
    assert_int_equal(r.next_position, r.events);
    assert_int_equal(r.orders, TEST_ORDERS);
    assert_int_equal(r.confirmed + r.cancelled, TEST_ORDERS);
    assert_true(r.cancelled > 0);
    assert_int_equal(count_type(events, "ProductRegistered"), SVC_SEED_PRODUCTS);
    assert_int_equal(count_type(events, "CustomerOpened"), SVC_SEED_CUSTOMERS);
    assert_int_equal(count_type(events, "OrderPlaced"), TEST_ORDERS);
    assert_int_equal(count_type(events, "OrderConfirmed"), r.confirmed);
    assert_int_equal(count_type(events, "OrderCancelled"), r.cancelled);
    assert_int_equal(count_type(events, "ProductRestocked"), r.restocks);
    assert_int_equal(count_type(events, "SagaStarted"), TEST_ORDERS);
    replay_and_check(events, TEST_ORDERS);
    json_decref(events);
    remove_tempdir(dir);
}

static void test_seed_is_deterministic_by_seed(void **state)
{
    (void)state;
    char *a = make_tempdir(), *b = make_tempdir(), *c = make_tempdir();
    int rc;
    seed_n(a, 7, 300, 0, &rc);
    assert_int_equal(rc, 0);
    seed_n(b, 7, 300, 0, &rc);
    assert_int_equal(rc, 0);
    seed_n(c, 8, 300, 0, &rc);
    assert_int_equal(rc, 0);
    json_t *ea = read_log(a), *eb = read_log(b), *ec = read_log(c);
    json_t *sa = story_of(ea), *sb = story_of(eb), *sc = story_of(ec);
    assert_true(json_equal(sa, sb));
    assert_false(json_equal(sa, sc));
    json_decref(sa);
    json_decref(sb);
    json_decref(sc);
    json_decref(ea);
    json_decref(eb);
    json_decref(ec);
    remove_tempdir(a);
    remove_tempdir(b);
    remove_tempdir(c);
}

static void test_seed_twice_is_refused_or_skipped(void **state)
{
    (void)state;
    char *dir = make_tempdir();
    int rc;
    svc_seed_report first = seed_n(dir, 1, 20, 0, &rc);
    assert_int_equal(rc, 0);
    svc_seed_report skipped = seed_n(dir, 1, 20, 1, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(skipped.skipped, 1);
    assert_int_equal(skipped.events, 0);
    assert_int_equal(skipped.next_position, first.next_position);
    seed_n(dir, 2, 20, 0, &rc);
    assert_int_equal(rc, SK_ECONFLICT);
    json_t *events = read_log(dir);
    assert_int_equal(json_array_size(events), first.events);
    json_decref(events);
    remove_tempdir(dir);
}

static void test_seed_rejects_bad_options(void **state)
{
    (void)state;
    svc_seed_options opt;
    svc_seed_report report;
    sk_error err;
    svc_seed_options_init(&opt, NULL);
    assert_int_equal(svc_seed_run(&opt, &report, &err), SK_EBADINPUT);
    assert_string_equal(err.field, "data");
    svc_seed_options_init(&opt, "/tmp");
    opt.orders = 0;
    assert_int_equal(svc_seed_run(&opt, &report, &err), SK_EBADINPUT);
    assert_string_equal(err.field, "orders");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_keeps_domain_invariants),
        cmocka_unit_test(test_seed_is_deterministic_by_seed),
        cmocka_unit_test(test_seed_twice_is_refused_or_skipped),
        cmocka_unit_test(test_seed_rejects_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
