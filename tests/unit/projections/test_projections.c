/*
 * test_projections.c -- the projection engine over a real log and real SQLite files: the
 * sample models' values after a small order history, a failing statement that stops only
 * its model and the two ways on (resume, skip), a changed file rebuilt beside the live
 * generation, a worker thread woken by the subscription with read-your-writes waits, and
 * load errors that name the parameter.
 */
#include "projections/projections.h"

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

typedef struct fixture {
    char dir[64];
    char models[128];
    store_log *log;
    ev_registry *events;
    proj_engine *engine;
} fixture;

static const char *source_dir(void)
{
    const char *s = getenv("SKALD_SOURCE_DIR");
    return s ? s : ".";
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(path);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/skald-proj-test-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    char schemas[4096], logdir[256];
    snprintf(schemas, sizeof schemas, "%s/events/schemas", source_dir());
    snprintf(fx->models, sizeof fx->models, "%s/models", fx->dir);
    mkdir(fx->models, 0755);
    sk_error err = {0};
    assert_int_equal(ev_registry_open(schemas, NULL, &fx->events, &err), 0);
    snprintf(logdir, sizeof logdir, "%s/log", fx->dir);
    store_config cfg;
    store_config_init(&cfg, logdir);
    assert_int_equal(store_log_open(&cfg, &fx->log, &err), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    proj_engine_close(fx->engine);
    store_log_close(fx->log);
    ev_registry_destroy(fx->events);
    nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static void copy_model(fixture *fx, const char *name)
{
    char from[4096], to[256], *text = NULL;
    size_t size;
    snprintf(from, sizeof from, "%s/projections/models/%s.sql", source_dir(), name);
    snprintf(to, sizeof to, "%s/%s.sql", fx->models, name);
    assert_int_equal(ev_read_file(from, &text, &size), 0);
    FILE *f = fopen(to, "w");
    fwrite(text, 1, size, f);
    fclose(f);
    free(text);
}

static void write_model(fixture *fx, const char *name, const char *text)
{
    char to[256];
    snprintf(to, sizeof to, "%s/%s.sql", fx->models, name);
    FILE *f = fopen(to, "w");
    fputs(text, f);
    fclose(f);
}

static void append(fixture *fx, const char *stream, const char *type, const char *json)
{
    ev_buf buf = {0};
    uint32_t schema_id;
    sk_error err = {0};
    assert_int_equal(
        ev_payload_from_json_text(fx->events, type, json, strlen(json), &buf, &schema_id, &err), 0);
    ev_event ev = {0};
    ev.type = ev_str_of(type);
    ev.schema_id = schema_id;
    ev.payload = buf.data;
    ev.payload_size = (uint32_t)buf.size;
    assert_int_equal(
        store_log_append(fx->log, ev_str_of(stream), STORE_EXPECT_ANY, &ev, 1, NULL, &err), 0);
    ev_buf_free(&buf);
}

/* A small history: two products, a customer, one order confirmed, one cancelled. */
static void history(fixture *fx)
{
    append(fx, "product-A", "ProductRegistered",
           "{\"sku\":\"A\",\"name\":\"Anvil\",\"price_cents\":500}");
    append(fx, "product-B", "ProductRegistered",
           "{\"sku\":\"B\",\"name\":\"Bolt\",\"price_cents\":20}");
    append(fx, "product-A", "ProductRestocked", "{\"sku\":\"A\",\"quantity\":10}");
    append(fx, "product-B", "ProductRestocked", "{\"sku\":\"B\",\"quantity\":100}");
    append(fx, "customer-c1", "CustomerOpened",
           "{\"customer_id\":\"c1\",\"name\":\"Carla\",\"credit_limit_cents\":10000}");
    append(fx, "order-o1", "OrderPlaced",
           "{\"order_id\":\"o1\",\"customer_id\":\"c1\",\"total_cents\":1040,\"lines\":["
           "{\"sku\":\"A\",\"quantity\":2,\"unit_price_cents\":500},"
           "{\"sku\":\"B\",\"quantity\":2,\"unit_price_cents\":20}]}");
    append(fx, "product-A", "StockReserved", "{\"sku\":\"A\",\"order_id\":\"o1\",\"quantity\":2}");
    append(fx, "product-B", "StockReserved", "{\"sku\":\"B\",\"order_id\":\"o1\",\"quantity\":2}");
    append(fx, "customer-c1", "PaymentAuthorized",
           "{\"customer_id\":\"c1\",\"order_id\":\"o1\",\"amount_cents\":1040}");
    append(fx, "product-A", "StockCommitted", "{\"sku\":\"A\",\"order_id\":\"o1\",\"quantity\":2}");
    append(fx, "product-B", "StockCommitted", "{\"sku\":\"B\",\"order_id\":\"o1\",\"quantity\":2}");
    append(fx, "order-o1", "OrderConfirmed", "{\"order_id\":\"o1\"}");
    append(fx, "order-o2", "OrderPlaced",
           "{\"order_id\":\"o2\",\"customer_id\":\"c1\",\"total_cents\":500,\"lines\":["
           "{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":500}]}");
    append(fx, "product-A", "StockReserved", "{\"sku\":\"A\",\"order_id\":\"o2\",\"quantity\":1}");
    append(fx, "product-A", "StockReleased", "{\"sku\":\"A\",\"order_id\":\"o2\",\"quantity\":1}");
    append(fx, "order-o2", "OrderCancelled",
           "{\"order_id\":\"o2\",\"reason\":\"payment_declined\"}");
}

static void open_engine(fixture *fx)
{
    proj_config cfg = {.log = fx->log, .events = fx->events, .models_dir = fx->models};
    char dir[256];
    snprintf(dir, sizeof dir, "%s/projections", fx->dir);
    cfg.dir = dir;
    sk_error err = {0};
    int rc = proj_engine_open(&cfg, &fx->engine, &err);
    if (rc)
        fprintf(stderr, "open: %s\n", err.message);
    assert_int_equal(rc, 0);
}

/* The first column of the first row of sql against the live database of model, as text. */
static char *scalar(fixture *fx, const char *model, const char *sql)
{
    char path[4096];
    uint64_t gen;
    assert_int_equal(proj_live_db(fx->engine, model, path, sizeof path, &gen), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out ? out : strdup("(null)");
}

static void assert_scalar(fixture *fx, const char *model, const char *sql, const char *want)
{
    char *got = scalar(fx, model, sql);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "%s: %s gave %s, want %s\n", model, sql, got, want);
    assert_string_equal(got, want);
    free(got);
}

static void test_sample_models(void **state)
{
    fixture *fx = *state;
    const char *models[] = {"orders", "inventory", "customer_credit", "sales_by_day"};
    for (size_t i = 0; i < 4; i++)
        copy_model(fx, models[i]);
    history(fx);
    open_engine(fx);
    sk_error err = {0};
    assert_int_equal(proj_engine_catch_up(fx->engine, &err), 0);
    assert_scalar(
        fx, "inventory",
        "SELECT group_concat(sku || ':' || (restocked - committed) || '/' || reserved, ' ') "
        "FROM products ORDER BY sku",
        "A:8/0 B:98/0");
    assert_scalar(fx, "inventory", "SELECT count(*) FROM reservations", "0");
    assert_scalar(fx, "customer_credit", "SELECT used_cents FROM customers WHERE customer_id='c1'",
                  "1040");
    assert_scalar(fx, "orders",
                  "SELECT status || ',' || total_cents FROM orders WHERE order_id='o1'",
                  "confirmed,1040");
    assert_scalar(fx, "orders",
                  "SELECT status || ',' || cancel_reason FROM orders WHERE order_id='o2'",
                  "cancelled,payment_declined");
    assert_scalar(
        fx, "orders",
        "SELECT group_concat(sku || 'x' || quantity) FROM order_lines WHERE order_id='o1'",
        "Ax2,Bx2");
    assert_scalar(fx, "sales_by_day", "SELECT orders || ',' || revenue_cents FROM sales", "1,1040");
    assert_scalar(fx, "sales_by_day", "SELECT length(day) FROM sales", "10");
    assert_scalar(fx, "orders", "SELECT value FROM _skald_projection WHERE key='next_position'",
                  "16");
    json_t *st = proj_status_json(fx->engine, "orders");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "running");
    assert_int_equal(json_integer_value(json_object_get(st, "position")), 15);
    json_decref(st);
}

static const char *FRAGILE =
    "-- @tables\n"
    "CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty <= 50));\n"
    "-- @on ProductRegistered\n"
    "INSERT INTO stock VALUES (:sku, 0);\n"
    "-- @on ProductRestocked\n"
    "UPDATE stock SET qty = qty + :quantity WHERE sku = :sku;\n";

static void test_failure_resume_and_skip(void **state)
{
    fixture *fx = *state;
    write_model(fx, "fragile", FRAGILE);
    copy_model(fx, "inventory");
    append(fx, "product-A", "ProductRegistered",
           "{\"sku\":\"A\",\"name\":\"a\",\"price_cents\":1}");
    append(fx, "product-A", "ProductRestocked", "{\"sku\":\"A\",\"quantity\":10}");
    append(fx, "product-A", "ProductRestocked", "{\"sku\":\"A\",\"quantity\":100}"); /* breaks it */
    append(fx, "product-A", "ProductRestocked", "{\"sku\":\"A\",\"quantity\":5}");
    open_engine(fx);
    sk_error err = {0};
    assert_int_equal(proj_engine_catch_up(fx->engine, &err), 0);
    json_t *st = proj_status_json(fx->engine, "fragile");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
    json_t *le = json_object_get(st, "last_error");
    assert_int_equal(json_integer_value(json_object_get(le, "position")), 2);
    assert_string_equal(json_string_value(json_object_get(le, "type")), "ProductRestocked");
    assert_string_equal(json_string_value(json_object_get(le, "stream_id")), "product-A");
    assert_non_null(strstr(json_string_value(json_object_get(le, "message")), "CHECK"));
    assert_int_equal(json_integer_value(json_object_get(st, "position")), 1);
    json_decref(st);
    assert_scalar(fx, "fragile", "SELECT qty FROM stock", "10"); /* last good data */
    /* the other model went on */
    assert_scalar(fx, "inventory", "SELECT restocked FROM products", "115");

    /* skip needs the failed position; resume retries and fails again */
    assert_int_equal(proj_skip(fx->engine, "fragile", 3, &err), SK_ECONFLICT);
    assert_int_equal(proj_resume(fx->engine, "fragile", &err), 0);
    assert_int_equal(proj_engine_catch_up(fx->engine, &err), 0);
    st = proj_status_json(fx->engine, "fragile");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
    json_decref(st);
    assert_int_equal(proj_skip(fx->engine, "fragile", 2, &err), 0);
    assert_int_equal(proj_engine_catch_up(fx->engine, &err), 0);
    st = proj_status_json(fx->engine, "fragile");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "running");
    assert_int_equal(json_integer_value(json_object_get(st, "position")), 3);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(st, "skipped"), 0)), 2);
    char *hist = json_dumps(json_object_get(st, "history"), 0);
    assert_non_null(strstr(hist, "skipped the failed event"));
    assert_non_null(strstr(hist, "resumed"));
    free(hist);
    json_decref(st);
    assert_scalar(fx, "fragile", "SELECT qty FROM stock", "15");
    assert_int_equal(proj_resume(fx->engine, "fragile", &err), SK_ECONFLICT);
}

static void test_changed_file_rebuilds_beside(void **state)
{
    fixture *fx = *state;
    write_model(fx, "fragile", FRAGILE);
    append(fx, "product-A", "ProductRegistered",
           "{\"sku\":\"A\",\"name\":\"a\",\"price_cents\":1}");
    append(fx, "product-A", "ProductRestocked", "{\"sku\":\"A\",\"quantity\":60}");
    append(fx, "product-A", "ProductRestocked", "{\"sku\":\"A\",\"quantity\":1}");
    open_engine(fx);
    sk_error err = {0};
    assert_int_equal(proj_engine_catch_up(fx->engine, &err), 0);
    json_t *st = proj_status_json(fx->engine, "fragile");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
    json_decref(st);
    proj_engine_close(fx->engine);
    fx->engine = NULL;
    /* the fix: a wider check. Opening finds the changed hash and rebuilds beside. */
    write_model(
        fx, "fragile",
        "-- @tables\n"
        "CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty <= 500));\n"
        "-- @on ProductRegistered\nINSERT INTO stock VALUES (:sku, 0);\n"
        "-- @on ProductRestocked\nUPDATE stock SET qty = qty + :quantity WHERE sku = :sku;\n");
    open_engine(fx);
    st = proj_status_json(fx->engine, "fragile");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "rebuilding");
    assert_int_equal(json_integer_value(json_object_get(st, "generation")), 1);
    json_decref(st);
    assert_scalar(fx, "fragile", "SELECT qty FROM stock", "0"); /* the old one answers */
    assert_int_equal(proj_engine_catch_up(fx->engine, &err), 0);
    st = proj_status_json(fx->engine, "fragile");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "running");
    assert_int_equal(json_integer_value(json_object_get(st, "generation")), 2);
    json_decref(st);
    assert_scalar(fx, "fragile", "SELECT qty FROM stock", "61");
    char old[256];
    snprintf(old, sizeof old, "%s/projections/fragile.000001.db", fx->dir);
    assert_int_not_equal(access(old, F_OK), 0); /* removed once replaced */
    /* an explicit rebuild, too */
    assert_int_equal(proj_rebuild(fx->engine, "fragile", &err), 0);
    assert_int_equal(proj_rebuild(fx->engine, "fragile", &err), SK_EBUSY);
    assert_int_equal(proj_engine_catch_up(fx->engine, &err), 0);
    st = proj_status_json(fx->engine, "fragile");
    assert_int_equal(json_integer_value(json_object_get(st, "generation")), 3);
    json_decref(st);
    assert_scalar(fx, "fragile", "SELECT qty FROM stock", "61");
}

static void test_worker_thread_and_wait(void **state)
{
    fixture *fx = *state;
    copy_model(fx, "inventory");
    open_engine(fx);
    sk_error err = {0};
    assert_int_equal(proj_engine_start(fx->engine, &err), 0);
    int64_t applied = 0;
    assert_int_equal(proj_wait_applied(fx->engine, "inventory", 0, 50, &applied), -ETIMEDOUT);
    assert_int_equal(applied, -1);
    append(fx, "product-A", "ProductRegistered",
           "{\"sku\":\"A\",\"name\":\"a\",\"price_cents\":1}");
    for (int i = 0; i < 200; i++)
        append(fx, "product-A", "ProductRestocked", "{\"sku\":\"A\",\"quantity\":1}");
    assert_int_equal(proj_wait_applied(fx->engine, "inventory", 200, 10000, &applied), 0);
    assert_true(applied >= 200);
    assert_scalar(fx, "inventory", "SELECT restocked FROM products", "200");
    assert_int_equal(proj_rebuild(fx->engine, "inventory", &err), 0);
    for (int i = 0; i < 100; i++)
        append(fx, "product-A", "ProductRestocked", "{\"sku\":\"A\",\"quantity\":1}");
    assert_int_equal(proj_wait_applied(fx->engine, "inventory", 300, 10000, &applied), 0);
    assert_scalar(fx, "inventory", "SELECT restocked FROM products", "300");
}

static void test_load_errors_name_the_parameter(void **state)
{
    fixture *fx = *state;
    write_model(fx, "typo",
                "-- @tables\nCREATE TABLE t (sku TEXT);\n"
                "-- @on ProductRegistered\nINSERT INTO t VALUES (:skew);\n");
    proj_config cfg = {.log = fx->log, .events = fx->events, .models_dir = fx->models};
    char dir[256];
    snprintf(dir, sizeof dir, "%s/projections", fx->dir);
    cfg.dir = dir;
    sk_error err = {0};
    assert_int_equal(proj_engine_open(&cfg, &fx->engine, &err), SK_EBADINPUT);
    assert_non_null(strstr(err.message, ":skew"));
    assert_non_null(strstr(err.message, "typo.sql:3"));
    write_model(fx, "typo",
                "-- @tables\nCREATE TABLE t (sku TEXT);\n"
                "-- @on NoSuchEvent\nINSERT INTO t VALUES (:sku);\n");
    memset(&err, 0, sizeof err);
    assert_int_equal(proj_engine_open(&cfg, &fx->engine, &err), SK_EBADINPUT);
    assert_non_null(strstr(err.message, "NoSuchEvent"));
    write_model(fx, "typo", "-- @tables\nCREATE TABLE t (sku TEXT);\n-- @bogus\n");
    memset(&err, 0, sizeof err);
    assert_int_equal(proj_engine_open(&cfg, &fx->engine, &err), SK_EBADINPUT);
    assert_non_null(strstr(err.message, "unknown section"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sample_models, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_resume_and_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_file_rebuilds_beside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_thread_and_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_errors_name_the_parameter, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
