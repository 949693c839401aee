/*
 * test_bus.c -- the command bus against a real log and registry: each outcome (done,
 * nothing to do, unknown command, bad shape naming the field, business rejection,
 * expected-version conflict) and what reaches the log; a command that decides nothing
 * answers with its stream's position; a failed append does not spoil a reloaded entry; a
 * failed allocation is the command's error, never a success with no events.
 */
#include "commands/commands.h"
#include "tests/unit/faultalloc.h"

#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* A disk that answers the next fail_writes writes with ENOSPC. */
typedef struct full_disk {
    store_io io;
    int fail_writes;
} full_disk;

static ssize_t full_pwrite(void *ctx, int fd, const void *buf, size_t size, uint64_t offset)
{
    full_disk *d = ctx;
    if (d->fail_writes > 0) {
        d->fail_writes--;
        return -ENOSPC;
    }
    return store_io_posix()->pwrite(NULL, fd, buf, size, offset);
}

typedef struct fixture {
    full_disk disk;
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

/* manual: the log commits only when the test says so, on the test's thread, through a
 * disk whose writes can fail. */
static int setup_log(void **state, int manual)
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
    if (manual) {
        f->disk.io = *store_io_posix(); /* its calls ignore ctx */
        f->disk.io.ctx = &f->disk;
        f->disk.io.pwrite = full_pwrite;
        cfg.io = &f->disk.io;
        cfg.manual_commit = 1;
    }
    assert_int_equal(store_log_open(&cfg, &f->log, &err), 0);
    cmd_bus_config bc = {.log = f->log,
                         .events = f->events,
                         .command_schemas_dir = cmds,
                         .domains = cmd_domains,
                         .cache_max = 100};
    if (cmd_bus_create(&bc, &f->bus, &err) != 0)
        fail_msg("bus: %s", err.message);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_log(state, 0);
}

static int setup_manual(void **state)
{
    return setup_log(state, 1);
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

/* Commands submitted by the test, answered from the log's commit. */
typedef struct step {
    fixture *f;
    cmd_outcome out;
    int done;
    struct step *then; /* submitted from this one's completion, if any */
    const char *then_body;
} step;

static void step_done(void *ctx, cmd_outcome *out)
{
    step *s = ctx;
    (void)out;
    s->done = 1;
    if (s->then) {
        json_t *j = json_loads(s->then_body, 0, NULL);
        cmd_bus_submit(s->f->bus, "RestockProduct", j, STORE_EXPECT_ANY, NULL, &s->then->out,
                       step_done, s->then);
        json_decref(j);
    }
}

static void submit(fixture *f, const char *command, const char *body, step *s)
{
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    s->f = f;
    assert_int_equal(
        cmd_bus_submit(f->bus, command, j, STORE_EXPECT_ANY, NULL, &s->out, step_done, s), 0);
    json_decref(j);
}

/*
 * Two restocks pipelined on one product fail together (the disk is full). The first
 * failure's completion submits a third restock, which reloads the product from the log
 * and queues its append; the second failure's completion then submits a fourth while that
 * append is still queued. The second failure belongs to the state before the reload: it
 * must not mark the reloaded entry stale, or the fourth restock would reload without the
 * queued third one and conflict with it.
 */
static void test_failure_before_a_reload_leaves_it_alone(void **state)
{
    fixture *f = *state;
    step reg = {0}, a1 = {0}, a2 = {0}, c = {0}, d = {0};
    submit(f, "RegisterProduct", "{\"sku\":\"P\",\"name\":\"Pan\",\"price_cents\":9}", &reg);
    store_log_commit(f->log);
    assert_true(reg.done);
    assert_int_equal(reg.out.status, 0);
    const char *restock = "{\"sku\":\"P\",\"quantity\":1}";
    a1.then = &c;
    a1.then_body = restock;
    a2.then = &d;
    a2.then_body = restock;
    c.f = d.f = f;
    submit(f, "RestockProduct", restock, &a1);
    submit(f, "RestockProduct", restock, &a2); /* decided on a1's state, in flight */
    f->disk.fail_writes = 1;
    store_log_commit(f->log);
    assert_true(a1.done && a2.done && c.done && d.done);
    assert_int_equal(a1.out.status, -ENOSPC);
    assert_int_equal(a2.out.status, -ENOSPC);
    assert_int_equal(c.out.status, 0);
    assert_int_equal(c.out.stream_version, 2);
    if (d.out.status != 0)
        fail_msg("the fourth restock failed: %d (%s)", d.out.status, d.out.err.message);
    assert_int_equal(d.out.stream_version, 3);
    assert_int_equal(store_log_stream_version(f->log, ev_str_of("product-P")), 3);
    cmd_outcome *outs[] = {&reg.out, &a1.out, &a2.out, &c.out, &d.out};
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++)
        cmd_outcome_clear(outs[i]);
}

/* Every allocation of a RestockProduct failing in turn: a command answered 0 has its event
 * in the log, one that failed has none (it was the 200 with no events before), and the
 * cached state never drifts from the log. */
static void test_allocation_failure_is_an_error(void **state)
{
    fixture *f = *state;
    cmd_outcome o;
    assert_int_equal(run(f, "RegisterProduct", "{\"sku\":\"A\",\"name\":\"a\",\"price_cents\":1}",
                         STORE_EXPECT_ANY, &o),
                     0);
    cmd_outcome_clear(&o);
    uint64_t restocks = 0;
    int failures = 0;
    json_t *body = json_loads("{\"sku\":\"A\",\"quantity\":2}", 0, NULL);
    for (long n = 0;; n++) {
        uint64_t before = store_log_stream_version(f->log, ev_str_of("product-A"));
        faultalloc_arm(n, 0);
        int rc = cmd_bus_execute(f->bus, "RestockProduct", body, STORE_EXPECT_ANY, NULL, &o);
        int hit = faultalloc_disarm();
        uint64_t after = store_log_stream_version(f->log, ev_str_of("product-A"));
        if (rc == 0) {
            assert_int_equal(o.count, 1);
            assert_int_equal(after, before + 1);
            restocks++;
        } else {
            assert_true(hit);
            assert_int_equal(o.count, 0);
            assert_int_equal(after, before);
            if (o.err.message[0] == '\0')
                fail_msg("allocation %ld: status %d (%s) without a message", n, rc,
                         sk_err_name(rc));
            failures++;
        }
        cmd_outcome_clear(&o);
        if (!hit)
            break;
    }
    json_decref(body);
    assert_true(failures > 0);
    /* the cache and the log agree: the next decision sees every restock */
    assert_int_equal(run(f, "ReserveStock", "{\"sku\":\"A\",\"order_id\":\"o\",\"quantity\":1}",
                         STORE_EXPECT_ANY, &o),
                     0);
    cmd_outcome_clear(&o);
    char reserve[128];
    snprintf(reserve, sizeof reserve, "{\"sku\":\"A\",\"order_id\":\"p\",\"quantity\":%llu}",
             (unsigned long long)restocks * 2);
    assert_int_equal(run(f, "ReserveStock", reserve, STORE_EXPECT_ANY, &o), SK_EREJECTED);
    cmd_outcome_clear(&o);
    snprintf(reserve, sizeof reserve, "{\"sku\":\"A\",\"order_id\":\"p\",\"quantity\":%llu}",
             (unsigned long long)restocks * 2 - 1);
    assert_int_equal(run(f, "ReserveStock", reserve, STORE_EXPECT_ANY, &o), 0);
    cmd_outcome_clear(&o);
}

int main(void)
{
    faultalloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocation_failure_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_event_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_before_a_reload_leaves_it_alone, setup_manual,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
