/*
 * projection.c -- `skald-bench projection-catchup` and `skald-bench rebuild`: how fast the
 * projection engine folds a log of the sample domain into the sample read models.
 *
 * Both build a log of --events events of the sample domain (sample_log.c) with
 * fsync=never from one thread through a window of appends (window.c), and run the engine
 * without threads (proj_engine_catch_up) over every model file in projections/models/.
 * An event counts once, however many models apply it.
 *
 * projection-catchup times proj_engine_open on a fresh DIR/projections plus
 * proj_engine_catch_up to the head, then checks the read models against what the sample
 * emitted (orders, confirmed, products, customers). Its baseline, in the same run and
 * work directory: the same events inserted as one row each into one table of a fresh
 * SQLite file with prepared statements, in transactions of the engine's batch size, with
 * the engine's PRAGMAs. ratio = events_per_s / raw_rows_per_s.
 *
 * rebuild builds the read models first (not timed), then times proj_rebuild of every
 * model and proj_engine_catch_up until each model is running again at the head.
 */
#include "projections/projections.h"
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <string.h>
#include <time.h>

#define PROJ_BATCH_EVENTS  4096 /* the engine's default (proj_config.batch_events_max) */
#define CATCHUP_GOAL_EPS   200000.0
#define CATCHUP_GOAL_RATIO 0.5
#define REBUILD_GOAL_S     5.0
#define REBUILD_ROUNDS_MAX 4 /* catch-up calls a rebuild may take (one suffices) */

/* CPU time of the whole process; the log's threads idle while the engine runs, so over
 * the engine's phase this is the engine's. On a shared machine it tells waiting for a
 * core (or for the disk) apart from work. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct proj_env {
    char work[BENCH_PATH_MAX];
    char proj_dir[BENCH_PATH_MAX];
    char models_dir[BENCH_PATH_MAX];
    int have_work;
    ev_registry *events;
    bench_sample *sample;
    store_log *log;
    bench_sample_counts counts;
    uint64_t build_ns;
} proj_env;

typedef struct fill_ctx {
    store_window *window;
} fill_ctx;

static int fill_emit(void *ctx, ev_str stream, const ev_event *ev)
{
    fill_ctx *f = ctx;
    sk_error err = {0};
    return store_window_append(f->window, stream, STORE_EXPECT_ANY, ev, 1, &err);
}

/* Appends the sample's events to env->log through a window of appends. */
static int fill_log(proj_env *env, const bench_opts *opts)
{
    fill_ctx f = {NULL};
    int rc = store_window_create(env->log, opts->window, NULL, NULL, &f.window);
    if (rc < 0)
        return rc;
    uint64_t t0 = bench_now_ns();
    rc = bench_sample_run(env->sample, fill_emit, &f, &env->counts);
    int drained = bench_drain(f.window);
    if (rc == 0)
        rc = drained;
    env->build_ns = bench_now_ns() - t0;
    store_window_destroy(f.window);
    if (rc == 0 && store_log_durable_head(env->log) != opts->events) {
        fprintf(stderr, "skald-bench: the log holds %" PRIu64 " durable events, not %" PRIu64 "\n",
                store_log_durable_head(env->log), opts->events);
        rc = SK_ECORRUPT;
    }
    return rc;
}

static void env_close(proj_env *env, const bench_opts *opts)
{
    store_log_close(env->log);
    bench_sample_destroy(env->sample);
    ev_registry_destroy(env->events);
    if (env->have_work) {
        if (opts->keep)
            printf("kept: %s\n", env->work);
        else
            bench_workdir_remove(env->work);
    }
}

/* A work directory with a log of the sample domain, open. */
static int env_open(proj_env *env, const bench_opts *opts, const char *name)
{
    memset(env, 0, sizeof *env);
    int rc = bench_workdir_create(opts->dir, env->work, sizeof env->work);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: cannot create a work directory in %s: %s\n",
                opts->dir ? opts->dir : ".", strerror(-rc));
        return rc;
    }
    env->have_work = 1;
    printf("%s: %" PRIu64 " events of the sample domain\n", name, opts->events);
    bench_print_where("work dir", env->work);
    char schemas[BENCH_PATH_MAX], log_dir[BENCH_PATH_MAX];
    snprintf(schemas, sizeof schemas, "%s/events/schemas", bench_source_dir());
    snprintf(env->models_dir, sizeof env->models_dir, "%s/projections/models", bench_source_dir());
    sk_error err;
    sk_error_clear(&err);
    rc = ev_registry_open(schemas, env->work, &env->events, &err);
    if (rc < 0)
        fprintf(stderr, "skald-bench: cannot open the schemas in %s: %s\n", schemas, err.message);
    if (rc == 0)
        rc = bench_path_join(env->proj_dir, sizeof env->proj_dir, env->work, "projections");
    if (rc == 0)
        rc = bench_path_join(log_dir, sizeof log_dir, env->work, "log");
    if (rc == 0)
        rc = bench_sample_create(env->events, opts->events, &env->sample);
    if (rc == 0)
        rc = bench_log_open(log_dir, STORE_FSYNC_NEVER, opts->window, &env->log);
    if (rc == 0) {
        rc = fill_log(env, opts);
        if (rc < 0)
            fprintf(stderr, "skald-bench: building the log: %s (%s)\n", sk_strerror(rc),
                    sk_err_name(rc));
    }
    if (rc == 0)
        printf("built: %" PRIu64 " events in %.2f s (fsync=never, one thread): %" PRIu64
               " products, %" PRIu64 " customers, %" PRIu64 " orders (%" PRIu64
               " confirmed, %" PRIu64 " cancelled)\n",
               opts->events, bench_seconds(env->build_ns), env->counts.products,
               env->counts.customers, env->counts.orders, env->counts.confirmed,
               env->counts.cancelled);
    fflush(stdout);
    return rc;
}

static int engine_open(proj_env *env, proj_engine **out)
{
    proj_config cfg = {.log = env->log,
                       .events = env->events,
                       .models_dir = env->models_dir,
                       .dir = env->proj_dir,
                       .batch_events_max = PROJ_BATCH_EVENTS};
    sk_error err;
    sk_error_clear(&err);
    int rc = proj_engine_open(&cfg, out, &err);
    if (rc < 0)
        fprintf(stderr, "skald-bench: proj_engine_open: %s (%s)\n",
                err.message[0] ? err.message : sk_strerror(rc), sk_err_name(rc));
    return rc;
}

static int catch_up(proj_engine *e)
{
    sk_error err;
    sk_error_clear(&err);
    int rc = proj_engine_catch_up(e, &err);
    if (rc < 0)
        fprintf(stderr, "skald-bench: proj_engine_catch_up: %s (%s)\n",
                err.message[0] ? err.message : sk_strerror(rc), sk_err_name(rc));
    return rc;
}

/* 1 if every model is running with position at the head, 0 if not yet; a failed model is
 * an error (printed). */
static int all_at_head(proj_engine *e, uint64_t events)
{
    int done = 1;
    for (size_t i = 0; i < proj_count(e); i++) {
        json_t *st = proj_status_json(e, proj_name(e, i));
        if (!st)
            return -ENOMEM;
        const char *state = json_string_value(json_object_get(st, "state"));
        json_int_t pos = json_integer_value(json_object_get(st, "position"));
        int rc = 0;
        if (state && strcmp(state, "failed") == 0) {
            char *text = json_dumps(json_object_get(st, "last_error"), JSON_COMPACT);
            fprintf(stderr, "skald-bench: model %s failed: %s\n", proj_name(e, i),
                    text ? text : "?");
            free(text);
            rc = SK_EFAILED;
        }
        done &= state && strcmp(state, "running") == 0 && pos == (json_int_t)events - 1;
        json_decref(st);
        if (rc < 0)
            return rc;
    }
    return done;
}

/* The first column of sql's first row, as an integer, from model's live database. */
static int query_count(proj_engine *e, const char *model, const char *sql, int64_t *out)
{
    char path[BENCH_PATH_MAX];
    uint64_t generation;
    int rc = proj_live_db(e, model, path, sizeof path, &generation);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: no live database for model %s\n", model);
        return rc;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    rc = -EIO;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        fprintf(stderr, "skald-bench: %s: %s: %s\n", path, sql, db ? sqlite3_errmsg(db) : "?");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* The read models hold what the sample emitted. */
static int check_models(proj_engine *e, const bench_sample_counts *c)
{
    static const struct {
        const char *model, *sql;
        size_t count_offset;
    } checks[] = {
        {"orders", "SELECT count(*) FROM orders", offsetof(bench_sample_counts, orders)},
        {"orders", "SELECT count(*) FROM orders WHERE status = 'confirmed'",
         offsetof(bench_sample_counts, confirmed)},
        {"sales_by_day", "SELECT coalesce(sum(orders), 0) FROM sales",
         offsetof(bench_sample_counts, confirmed)},
        {"inventory", "SELECT count(*) FROM products", offsetof(bench_sample_counts, products)},
        {"customer_credit", "SELECT count(*) FROM customers",
         offsetof(bench_sample_counts, customers)},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        int64_t got = 0;
        uint64_t want = *(const uint64_t *)(const void *)((const char *)c + checks[i].count_offset);
        int rc = query_count(e, checks[i].model, checks[i].sql, &got);
        if (rc < 0)
            return rc;
        if ((uint64_t)got != want) {
            fprintf(stderr,
                    "skald-bench: %s: %s gave %" PRId64 ", the sample emitted %" PRIu64 "\n",
                    checks[i].model, checks[i].sql, got, want);
            return SK_ECORRUPT;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The raw baseline: one prepared INSERT per event, batched like the engine.
 */
typedef struct raw_ctx {
    sqlite3 *db;
    sqlite3_stmt *insert;
    uint64_t position;
    uint32_t in_batch;
} raw_ctx;

static int raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    fprintf(stderr, "skald-bench: raw baseline: %s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    return -EIO;
}

static int raw_emit(void *ctx, ev_str stream, const ev_event *ev)
{
    raw_ctx *r = ctx;
    if (r->in_batch == 0 && raw_exec(r->db, "BEGIN") < 0)
        return -EIO;
    sqlite3_bind_int64(r->insert, 1, (sqlite3_int64)r->position++);
    sqlite3_bind_text(r->insert, 2, stream.ptr, (int)stream.len, SQLITE_STATIC);
    sqlite3_bind_text(r->insert, 3, ev->type.ptr, (int)ev->type.len, SQLITE_STATIC);
    sqlite3_bind_int64(r->insert, 4, ev->occurred_at);
    sqlite3_bind_blob(r->insert, 5, ev->payload, (int)ev->payload_size, SQLITE_STATIC);
    int rc = sqlite3_step(r->insert);
    sqlite3_reset(r->insert);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "skald-bench: raw baseline: insert: %s\n", sqlite3_errmsg(r->db));
        return -EIO;
    }
    if (++r->in_batch == PROJ_BATCH_EVENTS) {
        r->in_batch = 0;
        return raw_exec(r->db, "COMMIT");
    }
    return 0;
}

static int null_emit(void *ctx, ev_str stream, const ev_event *ev)
{
    (void)stream;
    *(uint64_t *)ctx += ev->payload_size;
    return 0;
}

/* Inserts the sample's events into DIR/raw.db; *elapsed_out covers open to last commit. */
static int raw_baseline(proj_env *env, uint64_t *elapsed_out)
{
    char path[BENCH_PATH_MAX];
    int rc = bench_path_join(path, sizeof path, env->work, "raw.db");
    if (rc < 0)
        return rc;
    raw_ctx r;
    memset(&r, 0, sizeof r);
    bench_sample_counts counts;
    uint64_t t0 = bench_now_ns();
    rc = sqlite3_open_v2(path, &r.db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL) == SQLITE_OK
             ? 0
             : -EIO;
    if (rc == 0)
        rc = raw_exec(r.db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
    if (rc == 0)
        rc = raw_exec(r.db, "CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT "
                            "NOT NULL, type TEXT NOT NULL, occurred_at INTEGER NOT NULL, payload "
                            "BLOB NOT NULL)");
    if (rc == 0 && sqlite3_prepare_v3(r.db, "INSERT INTO events VALUES (?, ?, ?, ?, ?)", -1,
                                      SQLITE_PREPARE_PERSISTENT, &r.insert, NULL) != SQLITE_OK)
        rc = -EIO;
    if (rc == 0)
        rc = bench_sample_run(env->sample, raw_emit, &r, &counts);
    if (rc == 0 && r.in_batch > 0)
        rc = raw_exec(r.db, "COMMIT");
    *elapsed_out = bench_now_ns() - t0;
    if (rc < 0 && r.db)
        fprintf(stderr, "skald-bench: raw baseline in %s: %s\n", path, sqlite3_errmsg(r.db));
    sqlite3_finalize(r.insert);
    sqlite3_close(r.db);
    return rc;
}

static const char *met(int ok)
{
    return ok ? "met" : "NOT met";
}

int bench_projection_catchup(const bench_opts *opts)
{
    proj_env env;
    int rc = env_open(&env, opts, "projection-catchup");
    proj_engine *e = NULL;
    uint64_t c0 = cpu_ns(), t0 = bench_now_ns();
    if (rc == 0)
        rc = engine_open(&env, &e);
    uint64_t t_open = bench_now_ns();
    if (rc == 0)
        rc = catch_up(e);
    uint64_t t1 = bench_now_ns();
    uint64_t engine_cpu_ns = cpu_ns() - c0;
    size_t models = e ? proj_count(e) : 0;
    if (rc == 0 && all_at_head(e, opts->events) != 1) {
        fprintf(stderr, "skald-bench: a model is not running at the head after catch-up\n");
        rc = SK_EFAILED;
    }
    if (rc == 0)
        rc = check_models(e, &env.counts);
    proj_engine_close(e);
    /* The generator's own cost, which the baseline includes. */
    uint64_t gen_ns = 0, raw_ns = 0, payload_bytes = 0;
    if (rc == 0) {
        bench_sample_counts counts;
        uint64_t g0 = bench_now_ns();
        rc = bench_sample_run(env.sample, null_emit, &payload_bytes, &counts);
        gen_ns = bench_now_ns() - g0;
    }
    uint64_t raw_c0 = cpu_ns();
    if (rc == 0)
        rc = raw_baseline(&env, &raw_ns);
    uint64_t raw_cpu_ns = cpu_ns() - raw_c0;
    if (rc == 0) {
        double secs = bench_seconds(t1 - t0), eps = (double)opts->events / secs;
        double raw_rps = (double)opts->events / bench_seconds(raw_ns), ratio = eps / raw_rps;
        printf("models: %zu (%s), batch %d events\n", models, env.models_dir, PROJ_BATCH_EVENTS);
        printf("engine: %.3f s (open %.3f s, catch-up %.3f s; CPU %.3f s): %.0f events/s\n", secs,
               bench_seconds(t_open - t0), bench_seconds(t1 - t_open), bench_seconds(engine_cpu_ns),
               eps);
        printf("raw:    %.3f s (CPU %.3f s): %.0f rows/s (one prepared INSERT per event, %d per "
               "transaction, "
               "WAL, synchronous=NORMAL; includes the generator, %.3f s alone, mean payload "
               "%.1f bytes)\n",
               bench_seconds(raw_ns), bench_seconds(raw_cpu_ns), raw_rps, PROJ_BATCH_EVENTS,
               bench_seconds(gen_ns), (double)payload_bytes / (double)opts->events);
        printf("goal >= %.0f events/s: %s; goal ratio >= %.1f: %s\n", CATCHUP_GOAL_EPS,
               met(eps >= CATCHUP_GOAL_EPS), CATCHUP_GOAL_RATIO, met(ratio >= CATCHUP_GOAL_RATIO));
        printf("BENCH projection-catchup events=%" PRIu64
               " events_per_s=%.0f raw_rows_per_s=%.0f ratio=%.3f models=%zu seconds=%.3f "
               "cpu_seconds=%.3f raw_cpu_seconds=%.3f\n",
               opts->events, eps, raw_rps, ratio, models, secs, bench_seconds(engine_cpu_ns),
               bench_seconds(raw_cpu_ns));
    }
    env_close(&env, opts);
    return rc;
}

int bench_rebuild(const bench_opts *opts)
{
    proj_env env;
    int rc = env_open(&env, opts, "rebuild");
    proj_engine *e = NULL;
    uint64_t b0 = bench_now_ns();
    if (rc == 0)
        rc = engine_open(&env, &e);
    if (rc == 0)
        rc = catch_up(e);
    if (rc == 0 && all_at_head(e, opts->events) != 1) {
        fprintf(stderr, "skald-bench: a model is not running at the head after catch-up\n");
        rc = SK_EFAILED;
    }
    uint64_t c0 = cpu_ns(), t0 = bench_now_ns();
    if (rc == 0)
        printf("read models built: %.3f s (not timed below)\n", bench_seconds(t0 - b0));
    size_t models = e ? proj_count(e) : 0;
    for (size_t i = 0; rc == 0 && i < models; i++) {
        sk_error err;
        sk_error_clear(&err);
        rc = proj_rebuild(e, proj_name(e, i), &err);
        if (rc < 0)
            fprintf(stderr, "skald-bench: proj_rebuild %s: %s\n", proj_name(e, i), err.message);
    }
    int rounds = 0, done = 0;
    while (rc == 0 && !done && rounds < REBUILD_ROUNDS_MAX) {
        rounds++;
        rc = catch_up(e);
        if (rc == 0)
            rc = all_at_head(e, opts->events);
        done = rc == 1;
        rc = rc < 0 ? rc : 0;
    }
    uint64_t t1 = bench_now_ns();
    uint64_t rebuild_cpu_ns = cpu_ns() - c0;
    if (rc == 0 && !done) {
        fprintf(stderr, "skald-bench: not every rebuild was live at the head after %d catch-ups\n",
                rounds);
        rc = SK_EFAILED;
    }
    if (rc == 0)
        rc = check_models(e, &env.counts);
    for (size_t i = 0; rc == 0 && i < models; i++) {
        json_t *st = proj_status_json(e, proj_name(e, i));
        printf("model %-16s generation %" JSON_INTEGER_FORMAT " state %s\n", proj_name(e, i),
               json_integer_value(json_object_get(st, "generation")),
               json_string_value(json_object_get(st, "state")));
        json_decref(st);
    }
    proj_engine_close(e);
    if (rc == 0) {
        double secs = bench_seconds(t1 - t0);
        printf("rebuild of %zu models: %.3f s (CPU %.3f s) in %d catch-up call(s): %.0f "
               "events/s\n",
               models, secs, bench_seconds(rebuild_cpu_ns), rounds, (double)opts->events / secs);
        printf("goal < %.0f s: %s\n", REBUILD_GOAL_S, met(secs < REBUILD_GOAL_S));
        printf("BENCH rebuild events=%" PRIu64
               " seconds=%.3f events_per_s=%.0f models=%zu cpu_seconds=%.3f\n",
               opts->events, secs, (double)opts->events / secs, models,
               bench_seconds(rebuild_cpu_ns));
    }
    env_close(&env, opts);
    return rc;
}
