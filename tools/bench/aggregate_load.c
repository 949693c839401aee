/*
 * aggregate_load.c -- `skald-bench aggregate-load`: how long loading one aggregate takes
 * as its history grows, with a snapshot (must stay flat) and by full replay (grows).
 *
 * For each history length 100, 1,000, ... --history-max: a Product stream gets a
 * ProductRegistered and length-1 ProductRestocked events (appended directly, fsync=never:
 * the setup is not what is measured), a snapshot is taken through the bus, 10 more events
 * are appended, and cmd_bus_load is timed with and without the snapshot (median of
 * --runs loads; the replay's run count shrinks with the history so the whole benchmark
 * stays bounded). The result is checked: both loads give the same state and version.
 */
#include "commands/commands.h"
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define TAIL_EVENTS 10
#define LENGTHS_MAX 8

typedef struct agg_env {
    bench_bus b;
    const cmd_aggregate *product;
    ev_buf registered, restocked;
    uint32_t registered_id, restocked_id;
} agg_env;

static int env_open(agg_env *env, const char *work)
{
    memset(env, 0, sizeof *env);
    int rc = bench_bus_open(&env->b, work, 0, 0, "aggregate-load");
    if (rc)
        return rc;
    env->product = cmd_aggregate_find(cmd_domains, "Product");
    json_t *reg = json_pack("{s:s, s:s, s:i}", "sku", "x", "name", "bench", "price_cents", 100);
    json_t *res = json_pack("{s:s, s:i}", "sku", "x", "quantity", 3);
    sk_error err = {0};
    rc = ev_payload_from_json(env->b.events, "ProductRegistered", reg, &env->registered,
                              &env->registered_id, &err);
    if (rc == 0)
        rc = ev_payload_from_json(env->b.events, "ProductRestocked", res, &env->restocked,
                                  &env->restocked_id, &err);
    json_decref(reg);
    json_decref(res);
    if (rc) {
        fprintf(stderr, "skald-bench: aggregate-load set-up: %s\n",
                err.message[0] ? err.message : sk_strerror(rc));
        bench_bus_close(&env->b);
    }
    return rc;
}

static void env_close(agg_env *env)
{
    bench_bus_close(&env->b);
    ev_buf_free(&env->registered);
    ev_buf_free(&env->restocked);
}

/* Appends count events to stream (the first one ProductRegistered if the stream is new). */
static int append_events(agg_env *env, const char *stream, uint64_t count)
{
    static ev_event evs[1000];
    uint64_t done = 0;
    while (done < count) {
        size_t n = count - done < 1000 ? (size_t)(count - done) : 1000;
        uint64_t version = store_log_stream_version(env->b.log, ev_str_of(stream));
        for (size_t i = 0; i < n; i++) {
            int first = version == 0 && i == 0;
            memset(&evs[i], 0, sizeof evs[i]);
            evs[i].type = ev_str_of(first ? "ProductRegistered" : "ProductRestocked");
            evs[i].schema_id = first ? env->registered_id : env->restocked_id;
            evs[i].payload = first ? env->registered.data : env->restocked.data;
            evs[i].payload_size = (uint32_t)(first ? env->registered.size : env->restocked.size);
        }
        sk_error err = {0};
        int rc = store_log_append(env->b.log, ev_str_of(stream), version, evs, n, NULL, &err);
        if (rc) {
            fprintf(stderr, "skald-bench: append: %s\n", err.message);
            return rc;
        }
        done += n;
    }
    return 0;
}

/* Median microseconds of runs loads; the last state is checked against want (if any). */
static int time_loads(agg_env *env, const char *stream, int use_snapshot, uint32_t runs,
                      json_t **state_out, uint64_t *version_out, double *median_us)
{
    uint64_t *ns = calloc(runs, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    int rc = 0;
    for (uint32_t r = 0; r < runs && rc == 0; r++) {
        json_t *state = NULL;
        uint64_t version = 0;
        sk_error err = {0};
        uint64_t t0 = bench_now_ns();
        rc = cmd_bus_load(env->b.bus, env->product, stream, use_snapshot, &state, &version, &err);
        ns[r] = bench_now_ns() - t0;
        if (rc)
            fprintf(stderr, "skald-bench: load %s: %s\n", stream, err.message);
        else if (r + 1 == runs) {
            *state_out = state;
            *version_out = version;
        } else {
            json_decref(state);
        }
    }
    if (rc == 0)
        *median_us = (double)bench_percentile(ns, runs, 50) / 1000.0;
    free(ns);
    return rc;
}

int bench_aggregate_load(const bench_opts *opts)
{
    char work[BENCH_PATH_MAX];
    int rc = bench_workdir_create(opts->dir, work, sizeof work);
    if (rc)
        return rc;
    bench_print_where("work directory", work);
    agg_env env;
    if ((rc = env_open(&env, work)) != 0)
        return rc;
    uint64_t lengths[LENGTHS_MAX];
    double snap_us[LENGTHS_MAX], replay_us[LENGTHS_MAX];
    int count = 0;
    for (uint64_t len = 100; len <= opts->history_max && count < LENGTHS_MAX; len *= 10)
        lengths[count++] = len;
    uint32_t runs = opts->runs > 3 ? opts->runs : 200;
    printf("%10s %14s %14s %10s\n", "history", "snapshot_us", "replay_us", "replays");
    for (int i = 0; i < count && rc == 0; i++) {
        char stream[64];
        snprintf(stream, sizeof stream, "product-h%" PRIu64, lengths[i]);
        sk_error err = {0};
        rc = append_events(&env, stream, lengths[i]);
        if (rc == 0 && (rc = cmd_bus_snapshot(env.b.bus, env.product, stream, &err)) != 0)
            fprintf(stderr, "skald-bench: snapshot: %s\n", err.message);
        if (rc == 0)
            rc = append_events(&env, stream, TAIL_EVENTS);
        json_t *a = NULL, *b = NULL;
        uint64_t va = 0, vb = 0;
        uint64_t budget = 2000000 / lengths[i]; /* about 2M events replayed per length */
        uint32_t replays = budget < 3 ? 3 : budget > runs ? runs : (uint32_t)budget;
        if (rc == 0)
            rc = time_loads(&env, stream, 1, runs, &a, &va, &snap_us[i]);
        if (rc == 0)
            rc = time_loads(&env, stream, 0, replays, &b, &vb, &replay_us[i]);
        if (rc == 0 && (va != lengths[i] + TAIL_EVENTS || va != vb || !json_equal(a, b))) {
            fprintf(stderr, "skald-bench: %s: the snapshot load differs from the replay\n", stream);
            rc = -EIO;
        }
        json_decref(a);
        json_decref(b);
        if (rc == 0)
            printf("%10" PRIu64 " %14.1f %14.1f %10u\n", lengths[i], snap_us[i], replay_us[i],
                   replays);
    }
    env_close(&env);
    if (rc)
        return rc;
    double growth = snap_us[0] > 0 ? snap_us[count - 1] / snap_us[0] : 0;
    printf("each load: newest snapshot (SQLite) + %d events after it, vs a replay of all; "
           "median of %u loads (fewer for long replays); goal: flat (growth ~1)\n",
           TAIL_EVENTS, runs);
    printf("BENCH aggregate-load snap_us_%" PRIu64 "=%.1f snap_us_%" PRIu64
           "=%.1f growth=%.2f replay_us_%" PRIu64 "=%.1f\n",
           lengths[0], snap_us[0], lengths[count - 1], snap_us[count - 1], growth,
           lengths[count - 1], replay_us[count - 1]);
    if (!opts->keep)
        bench_workdir_remove(work);
    return 0;
}
