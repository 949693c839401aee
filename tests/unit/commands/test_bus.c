/*
 * test_bus.c -- the command bus against a real log and registry: each outcome (done,
 * nothing to do, unknown command, bad shape naming the field, business rejection,
 * expected-version conflict) and what reaches the log.
 */
#include "commands/commands.h"

#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

typedef struct fixture {
    char dir[64];
    store_log *log;
    ev_registry *events;
    cmd_bus *bus;
} fixture;

static const char *source_dir(void)
{
    const char *s = getenv("SKALD_SOURCE_DIR");
    return s ? s : SKALD_SOURCE_DIR;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/skald-bus-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char schemas[4096], cmds[4096], log_dir[128];
    snprintf(schemas, sizeof schemas, "%s/events/schemas", source_dir());
    snprintf(cmds, sizeof cmds, "%s/commands/schemas", source_dir());
    snprintf(log_dir, sizeof log_dir, "%s/log", f->dir);
    sk_error err;
    assert_int_equal(ev_registry_open(schemas, f->dir, &f->events, &err), 0);
    store_config cfg;
    store_config_init(&cfg, log_dir);
    assert_int_equal(store_log_open(&cfg, &f->log, &err), 0);
    cmd_handler_table tables[] = {cmd_product_handlers, cmd_customer_handlers, cmd_order_handlers};
    cmd_bus_config bc = {f->log, f->events, cmds, tables, 3, NULL, 0, 100, NULL, 0};
    if (cmd_bus_create(&bc, &f->bus, &err) != 0)
        fail_msg("bus: %s", err.message);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *w)
{
    (void)st;
    (void)flag;
    (void)w;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    cmd_bus_destroy(f->bus);
    store_log_close(f->log);
    ev_registry_destroy(f->events);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int run(fixture *f, const char *command, const char *body, uint64_t expected,
               cmd_outcome *out)
{
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    int rc = cmd_bus_execute(f->bus, command, j, expected, NULL, out);
    json_decref(j);
    return rc;
}

static void test_outcomes(void **state)
{
    fixture *f = *state;
    cmd_outcome o;
    const char *reg = "{\"sku\":\"S1\",\"name\":\"Kettle\",\"price_cents\":2599}";
    assert_int_equal(run(f, "RegisterProduct", reg, STORE_EXPECT_ANY, &o), 0);
    assert_string_equal(o.stream_id, "product-S1");
    assert_int_equal(o.count, 1);
    assert_int_equal(o.first_version, 1);
    assert_int_equal(o.position, 0);
    assert_string_equal(o.event_types[0], "ProductRegistered");
    cmd_outcome_clear(&o);

    assert_int_equal(run(f, "RegisterProduct", reg, STORE_EXPECT_ANY, &o), SK_EREJECTED);
    assert_string_equal(o.decision.reason, "already_exists");
    cmd_outcome_clear(&o);

    assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"S1\",\"quantity\":5}", 1, &o), 0);
    assert_int_equal(o.stream_version, 2);
    cmd_outcome_clear(&o);
    assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"S1\",\"quantity\":5}", 1, &o),
                     SK_ECONFLICT);
    assert_int_equal(o.stream_version, 2);
    assert_string_equal(o.err.field, "expected_version");
    cmd_outcome_clear(&o);

    assert_int_equal(run(f, "ReserveStock", "{\"sku\":\"S1\",\"order_id\":\"o1\",\"quantity\":6}",
                         STORE_EXPECT_ANY, &o),
                     SK_EREJECTED);
    assert_string_equal(o.decision.reason, "insufficient_stock");
    cmd_outcome_clear(&o);
    assert_int_equal(
        run(f, "ReleaseStock", "{\"sku\":\"S1\",\"order_id\":\"o1\"}", STORE_EXPECT_ANY, &o), 0);
    assert_int_equal(o.count, 0); /* nothing reserved: nothing to do */
    assert_int_equal(o.stream_version, 2);
    cmd_outcome_clear(&o);

    assert_int_equal(run(f, "LaunchRocket", "{}", STORE_EXPECT_ANY, &o), SK_ENOTFOUND);
    cmd_outcome_clear(&o);
    assert_int_equal(
        run(f, "RestockProduct", "{\"sku\":\"S1\",\"quantity\":0}", STORE_EXPECT_ANY, &o),
        SK_EBADINPUT);
    assert_string_equal(o.err.field, "quantity");
    cmd_outcome_clear(&o);
    assert_int_equal(run(f, "RestockProduct", "{\"quantity\":3}", STORE_EXPECT_ANY, &o),
                     SK_EBADINPUT);
    assert_string_equal(o.err.field, "sku");
    cmd_outcome_clear(&o);
    assert_int_equal(run(f, "PlaceOrder",
                         "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[{\"sku\":\"S1\","
                         "\"quantity\":2,\"unit_price_cents\":-1}]}",
                         STORE_EXPECT_ANY, &o),
                     SK_EBADINPUT);
    assert_string_equal(o.err.field, "lines[0].unit_price_cents");
    cmd_outcome_clear(&o);

    /* The order's total is computed and stored; the log holds exactly the accepted events. */
    assert_int_equal(run(f, "PlaceOrder",
                         "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[{\"sku\":\"S1\","
                         "\"quantity\":2,\"unit_price_cents\":2599}]}",
                         STORE_EXPECT_ANY, &o),
                     0);
    assert_int_equal(o.position, 2);
    cmd_outcome_clear(&o);
    assert_int_equal(store_log_head(f->log), 3);
    store_reader *r;
    assert_int_equal(store_reader_open_stream(f->log, ev_str_of("order-o"), 1, &r), 0);
    ev_event ev;
    sk_error err;
    assert_int_equal(store_reader_next(r, &ev, &err), 1);
    json_t *p = NULL;
    assert_int_equal(
        ev_payload_to_json(f->events, ev.schema_id, ev.payload, ev.payload_size, &p, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(p, "total_cents")), 5198);
    json_decref(p);
    store_reader_close(r);
}

/* A command that decides nothing answers with its stream's last position (not the log's)
 * and, behind a pipelined append, only after that append: the barrier it goes through. */
static void test_no_event_answer(void **state)
{
    fixture *f = *state;
    cmd_outcome o;
    assert_int_equal(run(f, "RegisterProduct", "{\"sku\":\"P\",\"name\":\"Pan\",\"price_cents\":9}",
                         STORE_EXPECT_ANY, &o),
                     0);
    cmd_outcome_clear(&o);
    assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"P\",\"quantity\":5}", 1, &o), 0);
    cmd_outcome_clear(&o);
    const char *reserve = "{\"sku\":\"P\",\"order_id\":\"o1\",\"quantity\":2}";
    assert_int_equal(run(f, "ReserveStock", reserve, STORE_EXPECT_ANY, &o), 0);
    assert_int_equal(o.count, 1);
    uint64_t reserved_at = o.position;
    cmd_outcome_clear(&o);
    /* other streams move the log's head on */
    assert_int_equal(run(f, "RegisterProduct", "{\"sku\":\"Q\",\"name\":\"Pot\",\"price_cents\":9}",
                         STORE_EXPECT_ANY, &o),
                     0);
    cmd_outcome_clear(&o);
    assert_true(store_log_head(f->log) > reserved_at + 1);
    /* the retry changes nothing and points at the reservation */
    assert_int_equal(run(f, "ReserveStock", reserve, 3, &o), 0);
    assert_int_equal(o.count, 0);
    assert_int_equal(o.stream_version, 3);
    assert_int_equal(o.position, reserved_at);
    cmd_outcome_clear(&o);
    assert_int_equal(run(f, "ReserveStock", reserve, 2, &o), SK_ECONFLICT);
    cmd_outcome_clear(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_event_answer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
