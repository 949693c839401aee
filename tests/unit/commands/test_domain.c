/*
 * test_domain.c -- a domain other than the sample one, registered the way any new domain
 * is: its own files (this one, and the schemas under counter/) and its own cmd_domains.
 * No engine file knows it, and the sample domain is not linked in: its commands are
 * unknown here.
 */
#include "commands/commands.h"

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

/* ---- the Counter domain: a count that grows by each Increment ---- */

typedef struct counter_state {
    long long count;
} counter_state;

/* An increment by FAILING_BY fails in evolve, as an allocation can in a real domain. */
#define FAILING_BY 13

static int counter_evolve(void *state, const char *type, const json_t *ev)
{
    if (strcmp(type, "Incremented") != 0)
        return 0;
    json_int_t by = json_integer_value(json_object_get(ev, "by"));
    if (by == FAILING_BY)
        return -ENOMEM;
    ((counter_state *)state)->count += by;
    return 0;
}

static json_t *counter_to_json(const void *state)
{
    return json_pack("{s:I}", "count", (json_int_t)((const counter_state *)state)->count);
}

static int counter_from_json(void *state, const json_t *json)
{
    const json_t *count = json_object_get(json, "count");
    if (!json_is_integer(count))
        return SK_EBADINPUT;
    ((counter_state *)state)->count = json_integer_value(count);
    return 0;
}

static const cmd_aggregate counter = {
    .name = "Counter",
    .stream_prefix = "counter-",
    .state_version = 1,
    .state_size = sizeof(counter_state),
    .evolve = counter_evolve,
    .to_json = counter_to_json,
    .from_json = counter_from_json,
};

static int increment(const void *st, const json_t *cmd, cmd_result *out)
{
    (void)st;
    return cmd_result_add(out, "Incremented",
                          json_pack("{s:O, s:O}", "counter_id", json_object_get(cmd, "counter_id"),
                                    "by", json_object_get(cmd, "by")));
}

static const cmd_handler counter_handlers[] = {{"Increment", &counter, "counter_id", increment}};
static const cmd_handler_table counter_table = {counter_handlers, 1};
static const cmd_handler_table *const counter_tables[] = {&counter_table, NULL};
static const cmd_domain counter_domain = {"counters", counter_tables};

/* This program's registration table: the linker takes it instead of commands/domains.c. */
const cmd_domain *const cmd_domains[] = {&counter_domain, NULL};

/* ---- the test ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *w)
{
    (void)st;
    (void)flag;
    (void)w;
    return remove(path);
}

static int run(cmd_bus *bus, const char *command, const char *body)
{
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    cmd_outcome o;
    int rc = cmd_bus_execute(bus, command, j, STORE_EXPECT_ANY, NULL, &o);
    cmd_outcome_clear(&o);
    json_decref(j);
    return rc;
}

static void test_counter_domain(void **state)
{
    (void)state;
    const char *src = getenv("SKALD_SOURCE_DIR") ? getenv("SKALD_SOURCE_DIR") : SKALD_SOURCE_DIR;
    char dir[] = "/tmp/skald-domain-XXXXXX", schemas[4096], cmds[4096], log_dir[64];
    assert_non_null(mkdtemp(dir));
    snprintf(schemas, sizeof schemas, "%s/tests/unit/commands/counter/events", src);
    snprintf(cmds, sizeof cmds, "%s/tests/unit/commands/counter/commands", src);
    snprintf(log_dir, sizeof log_dir, "%s/log", dir);
    sk_error err;
    ev_registry *events;
    store_log *log;
    cmd_bus *bus;
    assert_int_equal(ev_registry_open(schemas, dir, &events, &err), 0);
    store_config cfg;
    store_config_init(&cfg, log_dir);
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    cmd_bus_config bc = {.log = log,
                         .events = events,
                         .command_schemas_dir = cmds,
                         .domains = cmd_domains,
                         .cache_max = 16};
    if (cmd_bus_create(&bc, &bus, &err) != 0)
        fail_msg("bus: %s", err.message);

    assert_int_equal(run(bus, "Increment", "{\"counter_id\":\"a\",\"by\":2}"), 0);
    assert_int_equal(run(bus, "Increment", "{\"counter_id\":\"a\",\"by\":5}"), 0);
    assert_int_equal(run(bus, "Increment", "{\"counter_id\":\"a\",\"by\":0}"), SK_EBADINPUT);
    assert_int_equal(run(bus, "RestockProduct", "{\"sku\":\"x\",\"quantity\":1}"), SK_ENOTFOUND);

    const cmd_aggregate *agg = cmd_aggregate_of_stream(cmd_domains, "counter-a");
    assert_ptr_equal(agg, &counter);
    json_t *st;
    uint64_t version;
    assert_int_equal(cmd_bus_load(bus, agg, "counter-a", 0, &st, &version, &err), 0);
    assert_int_equal(version, 2);
    assert_int_equal(json_integer_value(json_object_get(st, "count")), 7);
    json_decref(st);

    /* a decision whose events the cached state cannot take is not appended (the answer is
     * the error), and the next command is decided on the state reloaded from the log */
    assert_int_equal(run(bus, "Increment", "{\"counter_id\":\"a\",\"by\":13}"), -ENOMEM);
    assert_int_equal(store_log_stream_version(log, ev_str_of("counter-a")), 2);
    assert_int_equal(run(bus, "Increment", "{\"counter_id\":\"a\",\"by\":1}"), 0);
    assert_int_equal(cmd_bus_load(bus, agg, "counter-a", 0, &st, &version, &err), 0);
    assert_int_equal(version, 3);
    assert_int_equal(json_integer_value(json_object_get(st, "count")), 8);
    json_decref(st);
    cmd_bus_stats stats;
    cmd_bus_get_stats(bus, &stats);
    assert_int_equal(stats.cache_misses,
                     2); /* the first command, and the reload after the failure */

    cmd_bus_destroy(bus);
    assert_int_equal(store_log_close(log), 0);
    ev_registry_destroy(events);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_domain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
