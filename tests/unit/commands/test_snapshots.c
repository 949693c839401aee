/*
 * test_snapshots.c -- the bus's aggregate cache and snapshots against a real log, registry
 * and snapshot file: a snapshot-based load equals a full replay for every stream after a
 * random workload; outdated snapshots (other state version, past the stream) are ignored
 * and replaced; commands pipelined on one stream keep their order and versions; several
 * threads on shared and separate streams lose nothing (TSan runs this file).
 */
#include "commands/commands.h"

#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <pthread.h>
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
    store_snapshots *snaps;
    cmd_bus *bus;
} fixture;

static void open_bus_rules(fixture *f, uint32_t every, uint32_t cache_max,
                           const cmd_snapshot_rule *rules, size_t nrules)
{
    char cmds[4096];
    const char *src = getenv("SKALD_SOURCE_DIR") ? getenv("SKALD_SOURCE_DIR") : SKALD_SOURCE_DIR;
    snprintf(cmds, sizeof cmds, "%s/commands/schemas", src);
    sk_error err;
    cmd_bus_config bc = {.log = f->log,
                         .events = f->events,
                         .command_schemas_dir = cmds,
                         .domains = cmd_domains,
                         .snapshots = f->snaps,
                         .snapshot_every = every,
                         .cache_max = cache_max,
                         .snapshot_rules = rules,
                         .nsnapshot_rules = nrules};
    if (cmd_bus_create(&bc, &f->bus, &err) != 0)
        fail_msg("bus: %s", err.message);
}

static void open_bus(fixture *f, uint32_t every, uint32_t cache_max)
{
    open_bus_rules(f, every, cache_max, NULL, 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/skald-snaps-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char schemas[4096], path[128];
    const char *src = getenv("SKALD_SOURCE_DIR") ? getenv("SKALD_SOURCE_DIR") : SKALD_SOURCE_DIR;
    snprintf(schemas, sizeof schemas, "%s/events/schemas", src);
    sk_error err;
    assert_int_equal(ev_registry_open(schemas, f->dir, &f->events, &err), 0);
    snprintf(path, sizeof path, "%s/log", f->dir);
    store_config cfg;
    store_config_init(&cfg, path);
    cfg.fsync_mode = STORE_FSYNC_NEVER; /* durability is not what this file tests */
    assert_int_equal(store_log_open(&cfg, &f->log, &err), 0);
    snprintf(path, sizeof path, "%s/snapshots.db", f->dir);
    if (store_snapshots_open(path, 0, &f->snaps, &err) != 0)
        fail_msg("snapshots: %s", err.message);
    open_bus(f, 10, 64); /* one aggregate per stripe: loads happen all the time */
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
    store_log_close(f->log);
    ev_registry_destroy(f->events);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int run(fixture *f, const char *command, const char *body)
{
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    cmd_outcome o;
    int rc = cmd_bus_execute(f->bus, command, j, STORE_EXPECT_ANY, NULL, &o);
    cmd_outcome_clear(&o);
    json_decref(j);
    return rc;
}

/* Loads stream both ways and checks they agree. */
static void check_stream(fixture *f, const char *stream)
{
    const cmd_aggregate *agg = cmd_aggregate_of_stream(cmd_domains, stream);
    assert_non_null(agg);
    json_t *a, *b;
    uint64_t va, vb;
    sk_error err;
    assert_int_equal(cmd_bus_load(f->bus, agg, stream, 1, &a, &va, &err), 0);
    assert_int_equal(cmd_bus_load(f->bus, agg, stream, 0, &b, &vb, &err), 0);
    assert_int_equal(va, vb);
    assert_int_equal(vb, store_log_stream_version(f->log, ev_str_of(stream)));
    if (!json_equal(a, b)) {
        char *ta = json_dumps(a, JSON_SORT_KEYS), *tb = json_dumps(b, JSON_SORT_KEYS);
        fail_msg("%s: snapshot load %s != replay %s", stream, ta, tb);
    }
    json_decref(a);
    json_decref(b);
}

static void test_snapshot_load_equals_replay(void **state)
{
    fixture *f = *state;
    char body[512];
    for (int p = 0; p < 5; p++) {
        snprintf(body, sizeof body, "{\"sku\":\"P%d\",\"name\":\"n\",\"price_cents\":100}", p);
        assert_int_equal(run(f, "RegisterProduct", body), 0);
        snprintf(body, sizeof body, "{\"sku\":\"P%d\",\"quantity\":100000}", p);
        assert_int_equal(run(f, "RestockProduct", body), 0);
    }
    for (int c = 0; c < 3; c++) {
        snprintf(body, sizeof body,
                 "{\"customer_id\":\"C%d\",\"name\":\"n\",\"credit_limit_cents\":1000000}", c);
        assert_int_equal(run(f, "OpenCustomer", body), 0);
    }
    unsigned seed = 7;
    for (int i = 0; i < 600; i++) {
        int p = rand_r(&seed) % 5, c = rand_r(&seed) % 3, o = rand_r(&seed) % 40;
        switch (rand_r(&seed) % 6) {
        case 0:
            snprintf(body, sizeof body, "{\"sku\":\"P%d\",\"quantity\":%d}", p, 1 + i % 7);
            run(f, "RestockProduct", body);
            break;
        case 1:
            snprintf(body, sizeof body, "{\"sku\":\"P%d\",\"order_id\":\"o%d\",\"quantity\":%d}", p,
                     o, 1 + i % 3);
            run(f, "ReserveStock", body);
            break;
        case 2:
            snprintf(body, sizeof body, "{\"sku\":\"P%d\",\"order_id\":\"o%d\"}", p, o);
            run(f, (i & 1) ? "ReleaseStock" : "CommitStock", body);
            break;
        case 3:
            snprintf(body, sizeof body,
                     "{\"customer_id\":\"C%d\",\"order_id\":\"o%d\",\"amount_cents\":%d}", c, o,
                     100 + i);
            run(f, "AuthorizePayment", body);
            break;
        case 4:
            snprintf(body, sizeof body, "{\"customer_id\":\"C%d\",\"order_id\":\"o%d\"}", c, o);
            run(f, "RefundPayment", body);
            break;
        default:
            snprintf(body, sizeof body,
                     "{\"order_id\":\"o%d\",\"customer_id\":\"C%d\",\"lines\":[{\"sku\":\"P%d\","
                     "\"quantity\":1,\"unit_price_cents\":5}]}",
                     o, c, p);
            if (run(f, "PlaceOrder", body) != 0) {
                snprintf(body, sizeof body, "{\"order_id\":\"o%d\"}", o);
                run(f, "ConfirmOrder", body);
            }
        }
    }
    cmd_bus_stats st;
    cmd_bus_get_stats(f->bus, &st);
    assert_true(st.snapshots_saved > 0);
    assert_true(st.snapshot_loads > 0); /* the tiny cache forced loads through snapshots */
    for (int p = 0; p < 5; p++) {
        snprintf(body, sizeof body, "product-P%d", p);
        check_stream(f, body);
    }
    for (int c = 0; c < 3; c++) {
        snprintf(body, sizeof body, "customer-C%d", c);
        check_stream(f, body);
    }
    for (int o = 0; o < 40; o++) {
        snprintf(body, sizeof body, "order-o%d", o);
        if (store_log_stream_version(f->log, ev_str_of(body)))
            check_stream(f, body);
    }
}

static int count_cb(void *ctx, const store_snapshot *s)
{
    (void)s;
    (*(int *)ctx)++;
    return 0;
}

/* Product states no history of these tests can reach (stock below zero): a load that
 * used one shows it. */
#define LYING_X                                                                                    \
    "{\"exists\":true,\"name\":\"n\",\"on_hand\":-7,\"price_cents\":1,\"reserved\":{},\"sku\":"    \
    "\"X\"}"
#define LYING_M                                                                                    \
    "{\"exists\":true,\"name\":\"n\",\"on_hand\":-1000,\"price_cents\":1,\"reserved\":{},"         \
    "\"sku\":\"M\"}"

static void save_raw(fixture *f, const char *stream, const char *agg, uint64_t version,
                     uint32_t state_version, const char *state)
{
    store_snapshot s = {0};
    snprintf(s.stream_id, sizeof s.stream_id, "%s", stream);
    snprintf(s.aggregate, sizeof s.aggregate, "%s", agg);
    s.version = version;
    s.state_version = state_version;
    s.state_json = (char *)state;
    sk_error err;
    assert_int_equal(store_snapshot_save(f->snaps, &s, &err), 0);
}

static void test_outdated_snapshots_ignored_and_replaced(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "RegisterProduct", "{\"sku\":\"X\",\"name\":\"n\",\"price_cents\":1}"),
                     0);
    for (int i = 0; i < 24; i++)
        assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"X\",\"quantity\":2}"), 0);
    /* a lying snapshot with a state version from the future: must not be used */
    save_raw(f, "product-X", "Product", 25, 99, LYING_X);
    check_stream(f, "product-X");
    /* and one past the stream's end (a repaired log): ignored too */
    save_raw(f, "product-X", "Product", 1000, 1, LYING_X);
    check_stream(f, "product-X");
    /* a fresh bus (empty cache) meets it, replays, and replaces it with a current one */
    cmd_bus_destroy(f->bus);
    store_snapshot_delete(f->snaps, "product-X", NULL, NULL, NULL);
    save_raw(f, "product-X", "Product", 25, 99, LYING_X);
    open_bus(f, 10, 64);
    assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"X\",\"quantity\":2}"), 0);
    store_snapshot s;
    sk_error err;
    assert_int_equal(store_snapshot_load(f->snaps, "product-X", &s, &err), 1);
    assert_int_equal(s.state_version, 1);
    json_t *st = json_loads(s.state_json, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(st, "on_hand")), 2 * (int)s.version - 2);
    json_decref(st);
    store_snapshot_clear(&s);
    check_stream(f, "product-X");
    int n = 0;
    assert_int_equal(store_snapshot_list(f->snaps, count_cb, &n, &err), 0);
    assert_int_equal(n, 1);
}

/* The on_hand a load of stream gives, from a snapshot when one is looked up and usable. */
static long long on_hand_of(fixture *f, const char *stream)
{
    json_t *st;
    uint64_t version;
    sk_error err;
    assert_int_equal(cmd_bus_load(f->bus, cmd_aggregate_of_stream(cmd_domains, stream), stream, 1,
                                  &st, &version, &err),
                     0);
    long long n = json_integer_value(json_object_get(st, "on_hand"));
    json_decref(st);
    return n;
}

/* A stream shorter than the snapshot interval is replayed without a snapshot lookup (the
 * bus cannot have saved one there); from the interval on, the snapshot is looked up and
 * used. A planted snapshot with an impossible state shows which way a load went. */
static void test_short_streams_skip_the_snapshot_lookup(void **state)
{
    fixture *f = *state; /* every 10 */
    assert_int_equal(run(f, "RegisterProduct", "{\"sku\":\"M\",\"name\":\"n\",\"price_cents\":1}"),
                     0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"M\",\"quantity\":2}"), 0);
    save_raw(f, "product-M", "Product", 5, 1, LYING_M);
    cmd_bus_stats st;
    assert_int_equal(on_hand_of(f, "product-M"), 8); /* replayed: 5 events < 10 */
    cmd_bus_get_stats(f->bus, &st);
    assert_int_equal(st.snapshot_loads, 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"M\",\"quantity\":2}"), 0);
    /* 10 events: looked up now. The bus's own snapshot (saved at 10) replaced the planted
     * one; plant it again at 10 to see it used. */
    save_raw(f, "product-M", "Product", 10, 1, LYING_M);
    assert_int_equal(on_hand_of(f, "product-M"), -1000);
    cmd_bus_get_stats(f->bus, &st);
    assert_int_equal(st.snapshot_loads, 1);
    /* a snapshot of the current state_version whose text is not a Product state (an
     * older shape, a damaged row) is not used: the stream is replayed */
    save_raw(f, "product-M", "Product", 10, 1, "{\"exists\":true,\"on_hand\":-1000}");
    assert_int_equal(on_hand_of(f, "product-M"), 18);
    cmd_bus_get_stats(f->bus, &st);
    assert_int_equal(st.snapshot_loads, 1);
}

static void test_snapshot_rules_per_type(void **state)
{
    fixture *f = *state;
    cmd_bus_destroy(f->bus);
    const cmd_snapshot_rule rules[] = {{"Product", 3}, {"Customer", 0}};
    open_bus_rules(f, 10, 64, rules, 2);
    assert_int_equal(run(f, "RegisterProduct", "{\"sku\":\"R\",\"name\":\"n\",\"price_cents\":1}"),
                     0);
    assert_int_equal(run(f, "OpenCustomer",
                         "{\"customer_id\":\"c\",\"name\":\"n\",\"credit_limit_cents\":100000}"),
                     0);
    char body[128];
    for (int i = 0; i < 12; i++) {
        assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"R\",\"quantity\":1}"), 0);
        snprintf(body, sizeof body,
                 "{\"customer_id\":\"c\",\"order_id\":\"o%d\",\"amount_cents\":1}", i);
        assert_int_equal(run(f, "AuthorizePayment", body), 0);
    }
    store_snapshot s;
    sk_error err;
    assert_int_equal(store_snapshot_load(f->snaps, "product-R", &s, &err), 1);
    assert_true(s.version >= 12); /* every 3: the last at 12 of 13 */
    store_snapshot_clear(&s);
    assert_int_equal(store_snapshot_load(f->snaps, "customer-c", &s, &err), 0); /* never */
}

/* A stream the bus cannot rebuild is the service's fault (SK_ESCHEMA, HTTP 500), never a
 * 404 or 400 about the request. */
static void test_unreadable_stream_is_internal(void **state)
{
    fixture *f = *state;
    uint8_t junk[4] = {1, 2, 3, 4};
    ev_event ev = {0};
    ev.type = ev_str_of("ProductRegistered");
    ev.schema_id = 999999; /* no such schema in the registry */
    ev.payload = junk;
    ev.payload_size = sizeof junk;
    sk_error err;
    assert_int_equal(
        store_log_append(f->log, ev_str_of("product-J"), STORE_EXPECT_ANY, &ev, 1, NULL, &err), 0);
    json_t *j = json_loads("{\"sku\":\"J\",\"quantity\":1}", 0, NULL);
    cmd_outcome o;
    assert_int_equal(cmd_bus_execute(f->bus, "RestockProduct", j, STORE_EXPECT_ANY, NULL, &o),
                     SK_ESCHEMA);
    assert_non_null(strstr(o.err.message, "product-J"));
    assert_string_equal(o.err.field, "");
    cmd_outcome_clear(&o);
    json_decref(j);
}

/* If something else appends to a cached stream (the bus is meant to be the only writer),
 * the next command's conditional append conflicts instead of writing from a stale state,
 * and the one after it works from the reloaded stream. */
static void test_foreign_append_is_caught_by_the_condition(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "RegisterProduct", "{\"sku\":\"F\",\"name\":\"n\",\"price_cents\":1}"),
                     0);
    assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"F\",\"quantity\":5}"), 0);
    json_t *res = json_pack("{s:s, s:i}", "sku", "F", "quantity", 100);
    ev_buf buf = {0};
    ev_event ev = {0};
    sk_error err;
    assert_int_equal(
        ev_payload_from_json(f->events, "ProductRestocked", res, &buf, &ev.schema_id, &err), 0);
    ev.type = ev_str_of("ProductRestocked");
    ev.payload = buf.data;
    ev.payload_size = (uint32_t)buf.size;
    assert_int_equal(store_log_append(f->log, ev_str_of("product-F"), 2, &ev, 1, NULL, &err), 0);
    ev_buf_free(&buf);
    json_decref(res);
    assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"F\",\"quantity\":1}"), SK_ECONFLICT);
    assert_int_equal(run(f, "RestockProduct", "{\"sku\":\"F\",\"quantity\":1}"), 0);
    assert_int_equal(store_log_stream_version(f->log, ev_str_of("product-F")), 4);
    check_stream(f, "product-F");
    json_t *st;
    uint64_t v;
    assert_int_equal(cmd_bus_load(f->bus, cmd_aggregate_of_stream(cmd_domains, "product-F"),
                                  "product-F", 0, &st, &v, &err),
                     0);
    assert_int_equal(json_integer_value(json_object_get(st, "on_hand")), 106);
    json_decref(st);
}

typedef struct pipe_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, failed;
    uint64_t versions[1000];
} pipe_state;

typedef struct pipe_call {
    pipe_state *ps;
    int index;
    cmd_outcome out;
} pipe_call;

static void pipe_done(void *ctx, cmd_outcome *out)
{
    pipe_call *c = ctx;
    pthread_mutex_lock(&c->ps->mu);
    if (out->status != 0)
        c->ps->failed++;
    else
        c->ps->versions[c->index] = out->first_version;
    c->ps->done++;
    pthread_cond_signal(&c->ps->cv);
    pthread_mutex_unlock(&c->ps->mu);
}

static void test_pipelined_commands_keep_order(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "RegisterProduct", "{\"sku\":\"Q\",\"name\":\"n\",\"price_cents\":1}"),
                     0);
    pipe_state ps = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, {0}};
    pipe_call *calls = calloc(1000, sizeof *calls);
    json_t *body = json_loads("{\"sku\":\"Q\",\"quantity\":3}", 0, NULL);
    for (int i = 0; i < 1000; i++) {
        calls[i].ps = &ps;
        calls[i].index = i;
        /* expected version too: each decides on the state the previous one leaves */
        cmd_bus_submit(f->bus, "RestockProduct", body, (uint64_t)i + 1, NULL, &calls[i].out,
                       pipe_done, &calls[i]);
    }
    json_decref(body);
    pthread_mutex_lock(&ps.mu);
    while (ps.done < 1000)
        pthread_cond_wait(&ps.cv, &ps.mu);
    pthread_mutex_unlock(&ps.mu);
    assert_int_equal(ps.failed, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ps.versions[i], (uint64_t)i + 2);
    for (int i = 0; i < 1000; i++)
        cmd_outcome_clear(&calls[i].out);
    free(calls);
    json_t *st;
    uint64_t v;
    sk_error err;
    assert_int_equal(cmd_bus_load(f->bus, cmd_aggregate_of_stream(cmd_domains, "product-Q"),
                                  "product-Q", 0, &st, &v, &err),
                     0);
    assert_int_equal(v, 1001);
    assert_int_equal(json_integer_value(json_object_get(st, "on_hand")), 3000);
    json_decref(st);
    check_stream(f, "product-Q");
}

typedef struct worker {
    fixture *f;
    int id;
    int ok;
} worker;

static void *restock_worker(void *arg)
{
    worker *w = arg;
    char body[128];
    for (int i = 0; i < 300; i++) {
        /* half on one shared stream, half on the worker's own */
        snprintf(body, sizeof body, "{\"sku\":\"%s\",\"quantity\":1}", (i & 1) ? "shared" : "");
        if (!(i & 1))
            snprintf(body, sizeof body, "{\"sku\":\"own%d\",\"quantity\":1}", w->id);
        w->ok += run(w->f, "RestockProduct", body) == 0;
    }
    return NULL;
}

static void test_threads_lose_nothing(void **state)
{
    fixture *f = *state;
    char body[128];
    assert_int_equal(
        run(f, "RegisterProduct", "{\"sku\":\"shared\",\"name\":\"n\",\"price_cents\":1}"), 0);
    for (int t = 0; t < 4; t++) {
        snprintf(body, sizeof body, "{\"sku\":\"own%d\",\"name\":\"n\",\"price_cents\":1}", t);
        assert_int_equal(run(f, "RegisterProduct", body), 0);
    }
    pthread_t th[4];
    worker w[4];
    for (int t = 0; t < 4; t++) {
        w[t] = (worker){f, t, 0};
        pthread_create(&th[t], NULL, restock_worker, &w[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].ok, 300);
    }
    assert_int_equal(store_log_stream_version(f->log, ev_str_of("product-shared")), 1 + 4 * 150);
    check_stream(f, "product-shared");
    for (int t = 0; t < 4; t++) {
        snprintf(body, sizeof body, "product-own%d", t);
        assert_int_equal(store_log_stream_version(f->log, ev_str_of(body)), 151);
        check_stream(f, body);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_snapshot_load_equals_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outdated_snapshots_ignored_and_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_commands_keep_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_rules_per_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_streams_skip_the_snapshot_lookup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_stream_is_internal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_append_is_caught_by_the_condition, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_threads_lose_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
