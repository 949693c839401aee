/*
 * test_saga_snapshot.c -- a saga's state snapshots (sagas/saga_store.c): loading a long
 * saga from its snapshot reads only the events after it and gives the same state as a
 * replay of the whole stream; a snapshot that is unreadable, of another shape or past
 * the stream is ignored (the stream is read whole) and deleted; a snapshot is dropped
 * cleanly.
 *
 * The saga's stream is written the way the orchestrator writes it: the SagaJournal
 * commands through a real command bus into a real log; the saga is an OrderFulfillment
 * whose compensation failed and that an admin retried many times (about four events per
 * retry), so its stream is long.
 */
#include "commands/commands.h"
#include "sagas/sagas_int.h"

#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define SAGA_ID "OrderFulfillment-o1"
#define RETRIES 30

typedef struct fixture {
    char dir[64];
    store_log *log;
    ev_registry *events;
    store_snapshots *snaps;
    cmd_bus *bus;
    uint64_t version; /* of the saga's stream */
} fixture;

static const char *source_dir(void)
{
    const char *src = getenv("SKALD_SOURCE_DIR");
    return src ? src : SKALD_SOURCE_DIR;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/skald-saga-snap-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char schemas[4096], cmds[4096], path[128];
    snprintf(schemas, sizeof schemas, "%s/events/schemas", source_dir());
    snprintf(cmds, sizeof cmds, "%s/commands/schemas", source_dir());
    sk_error err;
    assert_int_equal(ev_registry_open(schemas, f->dir, &f->events, &err), 0);
    snprintf(path, sizeof path, "%s/log", f->dir);
    store_config cfg;
    store_config_init(&cfg, path);
    cfg.fsync_mode = STORE_FSYNC_NEVER; /* durability is not what this file tests */
    assert_int_equal(store_log_open(&cfg, &f->log, &err), 0);
    snprintf(path, sizeof path, "%s/saga-snapshots.db", f->dir);
    assert_int_equal(store_snapshots_open(path, 0, &f->snaps, &err), 0);
    cmd_bus_config bc = {.log = f->log,
                         .events = f->events,
                         .command_schemas_dir = cmds,
                         .domains = cmd_domains,
                         .cache_max = 16};
    if (cmd_bus_create(&bc, &f->bus, &err) != 0)
        fail_msg("bus: %s", err.message);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *w)
{
    (void)st, (void)flag, (void)w;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    cmd_bus_destroy(f->bus);
    store_snapshots_close(f->snaps);
    assert_int_equal(store_log_close(f->log), 0);
    ev_registry_destroy(f->events);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* One journal write, conditional on the version last written, as the orchestrator does. */
static void journal(fixture *f, const char *command, json_t *body)
{
    json_object_set_new(body, "saga_id", json_string(SAGA_ID));
    cmd_context ctx = {0};
    cmd_outcome out;
    int rc = cmd_bus_execute(f->bus, command, body, f->version, &ctx, &out);
    if (rc)
        fail_msg("%s: %s %s", command, sk_err_name(rc), out.err.message);
    f->version = out.stream_version;
    cmd_outcome_clear(&out);
    json_decref(body);
}

static void step(fixture *f, int step, const char *phase, const char *outcome, const char *status)
{
    journal(f, "StartSagaStep",
            json_pack("{s:i, s:s, s:s, s:i, s:I}", "step", step, "name", "reserve_stock", "phase",
                      phase, "run", 0, "deadline_us", (json_int_t)0));
    journal(f, "FinishSagaStep",
            json_pack("{s:i, s:s, s:s, s:[{s:s, s:s}, {s:s, s:s}], s:s}", "step", step, "phase",
                      phase, "outcome", outcome, "results", "status", status, "reason", "",
                      "status", status, "reason", "", "reason",
                      strcmp(outcome, "ok") == 0 ? "" : "retries_exhausted"));
}

static void state_change(fixture *f, const char *state, const char *by)
{
    journal(f, "ChangeSagaState",
            json_pack("{s:s, s:s, s:s}", "state", state, "reason", "retries_exhausted", "by", by));
}

/* A saga whose compensation keeps failing, retried by an admin `retries` times. */
static void write_long_saga(fixture *f, int retries)
{
    const char *data = "{\"order_id\":\"o1\",\"customer_id\":\"c1\",\"total_cents\":300,"
                       "\"lines\":[{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":100},"
                       "{\"sku\":\"B\",\"quantity\":2,\"unit_price_cents\":100}]}";
    journal(f, "StartSaga",
            json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:i}", "saga_type", "OrderFulfillment",
                      "definition_version", 1, "subject", "o1", "data", data, "correlation_id",
                      "6f1b7d3e-9c0a-4b5e-8f7d-2a1c3b4d5e6f", "traceparent", "", "start_position",
                      0));
    step(f, 0, "forward", "ok", "ok");
    journal(f, "StartSagaStep",
            json_pack("{s:i, s:s, s:s, s:i, s:I}", "step", 1, "name", "authorize_payment", "phase",
                      "forward", "run", 0, "deadline_us", (json_int_t)0));
    journal(f, "FinishSagaStep",
            json_pack("{s:i, s:s, s:s, s:[{s:s, s:s}], s:s}", "step", 1, "phase", "forward",
                      "outcome", "rejected", "results", "status", "rejected", "reason",
                      "credit_limit_exceeded", "reason", "credit_limit_exceeded"));
    state_change(f, "compensating", "orchestrator");
    for (int i = 0; i < retries; i++) {
        step(f, 0, "compensate", "failed", "failed");
        state_change(f, "stuck", "orchestrator");
        state_change(f, "compensating", "admin:retry");
    }
}

static saga_source source(fixture *f, int with_snapshots)
{
    return (saga_source){.log = f->log,
                         .events = f->events,
                         .snaps = with_snapshots ? f->snaps : NULL,
                         .defs = saga_definitions};
}

/* Loads the saga; its fold as JSON (the caller's), and what the load read. */
static json_t *load(fixture *f, int with_snapshots, uint64_t *replayed, bool *from_snapshot)
{
    saga_rt *s = saga_rt_create(SAGA_ID);
    saga_source src = source(f, with_snapshots);
    sk_error err;
    assert_int_equal(saga_load(&src, s, replayed, from_snapshot, &err), 0);
    assert_int_equal(s->version, f->version);
    assert_non_null(s->def);
    json_t *j = saga_fold_to_json(s);
    assert_non_null(j);
    saga_rt_free(s);
    return j;
}

static void save_snapshot(fixture *f)
{
    saga_rt *s = saga_rt_create(SAGA_ID);
    saga_source src = source(f, 0);
    sk_error err;
    assert_int_equal(saga_load(&src, s, NULL, NULL, &err), 0);
    assert_int_equal(saga_snapshot_save(f->snaps, s, &err), 0);
    assert_int_equal(s->snap_version, f->version);
    saga_rt_free(s);
}

static void test_long_saga_loads_from_its_snapshot(void **state)
{
    fixture *f = *state;
    write_long_saga(f, RETRIES);
    uint64_t at_snapshot = f->version;
    assert_true(at_snapshot > (uint64_t)3 * RETRIES);
    save_snapshot(f);
    /* the saga goes on after the snapshot: one more round */
    step(f, 0, "compensate", "failed", "failed");
    state_change(f, "stuck", "orchestrator");
    uint64_t replayed = 0;
    bool from_snapshot = true;
    json_t *whole = load(f, 0, &replayed, &from_snapshot);
    assert_false(from_snapshot);
    assert_int_equal(replayed, f->version);
    json_t *snapped = load(f, 1, &replayed, &from_snapshot);
    assert_true(from_snapshot);
    assert_int_equal(replayed, f->version - at_snapshot); /* only what came after it */
    if (!json_equal(whole, snapped)) {
        char *a = json_dumps(whole, JSON_SORT_KEYS), *b = json_dumps(snapped, JSON_SORT_KEYS);
        fail_msg("the snapshot's load differs from the replay:\n%s\n%s", a, b);
    }
    assert_string_equal(json_string_value(json_object_get(snapped, "reason")), "retries_exhausted");
    assert_int_equal(json_integer_value(json_object_get(snapped, "state")), SAGA_STUCK);
    assert_int_equal(json_integer_value(json_object_get(snapped, "retries")), RETRIES);
    json_decref(whole);
    json_decref(snapped);
}

/* A snapshot the load cannot use is ignored: the stream is read whole, same state. */
static void check_ignored(fixture *f, const char *state_json, uint64_t version,
                          uint32_t state_version)
{
    store_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snprintf(snap.stream_id, sizeof snap.stream_id, "$saga-" SAGA_ID);
    snprintf(snap.aggregate, sizeof snap.aggregate, SAGA_SNAPSHOT_AGGREGATE);
    snap.version = version;
    snap.state_version = state_version;
    snap.state_json = (char *)state_json;
    sk_error err;
    assert_int_equal(store_snapshot_delete(f->snaps, snap.stream_id, NULL, NULL, &err), 0);
    assert_int_equal(store_snapshot_save(f->snaps, &snap, &err), 0);
    uint64_t replayed = 0;
    bool from_snapshot = true;
    json_t *whole = load(f, 0, NULL, NULL);
    json_t *got = load(f, 1, &replayed, &from_snapshot);
    assert_false(from_snapshot);
    assert_int_equal(replayed, f->version);
    assert_true(json_equal(whole, got));
    json_decref(whole);
    json_decref(got);
}

/* A stream shorter than the snapshot interval cannot hold a snapshot the orchestrator
 * saved, so its load does not look (not even for one saved by hand); from the interval on
 * it does. */
static void test_short_streams_skip_the_snapshot_lookup(void **state)
{
    fixture *f = *state;
    write_long_saga(f, RETRIES);
    save_snapshot(f);
    for (int longer = 0; longer < 2; longer++) {
        saga_rt *s = saga_rt_create(SAGA_ID);
        saga_source src = source(f, 1);
        src.snapshot_every = (uint32_t)f->version + (uint32_t)longer;
        uint64_t replayed = 0;
        bool from_snapshot = !longer;
        sk_error err;
        assert_int_equal(saga_load(&src, s, &replayed, &from_snapshot, &err), 0);
        assert_int_equal(s->version, f->version);
        assert_int_equal(from_snapshot, !longer);
        assert_int_equal(replayed, longer ? f->version : 0);
        saga_rt_free(s);
    }
}

static void test_unusable_snapshots_are_ignored(void **state)
{
    fixture *f = *state;
    write_long_saga(f, 3);
    check_ignored(f, "{not json", 5, SAGA_SNAPSHOT_STATE_VERSION);
    check_ignored(f, "{\"type\":\"OrderFulfillment\"}", 5, SAGA_SNAPSHOT_STATE_VERSION);
    /* a good state, but of another shape version, or past the stream's end */
    saga_rt *s = saga_rt_create(SAGA_ID);
    saga_source src = source(f, 0);
    sk_error err;
    assert_int_equal(saga_load(&src, s, NULL, NULL, &err), 0);
    json_t *j = saga_fold_to_json(s);
    char *good = json_dumps(j, JSON_COMPACT);
    check_ignored(f, good, f->version, SAGA_SNAPSHOT_STATE_VERSION + 1);
    check_ignored(f, good, f->version + 10, SAGA_SNAPSHOT_STATE_VERSION);
    /* each unusable one was deleted by the load that met it (a kept higher version would
     * make the snapshot file ignore every later save below it) */
    store_snapshot gone;
    assert_int_equal(store_snapshot_load(f->snaps, "$saga-" SAGA_ID, &gone, &err), 0);
    /* and the same one, well placed, is used */
    assert_int_equal(saga_snapshot_save(f->snaps, s, &err), 0);
    uint64_t replayed = 1;
    bool from_snapshot = false;
    json_t *got = load(f, 1, &replayed, &from_snapshot);
    assert_true(from_snapshot);
    assert_int_equal(replayed, 0);
    assert_true(json_equal(j, got));
    /* dropped: the next load reads the stream */
    saga_snapshot_drop(f->snaps, s);
    assert_int_equal(s->snap_version, 0);
    json_decref(got);
    got = load(f, 1, &replayed, &from_snapshot);
    assert_false(from_snapshot);
    json_decref(got);
    free(good);
    json_decref(j);
    saga_rt_free(s);
}

static void test_missing_stream_is_not_found(void **state)
{
    fixture *f = *state;
    saga_rt *s = saga_rt_create("OrderFulfillment-none");
    saga_source src = source(f, 1);
    sk_error err;
    assert_int_equal(saga_load(&src, s, NULL, NULL, &err), SK_ENOTFOUND);
    saga_rt_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_long_saga_loads_from_its_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_streams_skip_the_snapshot_lookup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unusable_snapshots_are_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_stream_is_not_found, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
