/*
 * idempotency.c -- `skald-bench idempotency`: is the hand-made idempotency journal
 * (commands/idempotency.c: an in-memory table, hourly append-only files, compaction and
 * rotation) worth its code against a SQLite table with an expiry index? Issue 10 keeps the
 * journal unless SQLite is clearly faster.
 *
 * The load is the keyed part of http-commands: --threads threads claim --keys distinct
 * scoped keys ("k/<principal>/<uuid-like key>") and answer each with a --body-bytes body,
 * while one more thread syncs about once a second, as serve.c's tick does. Each store
 * sees the same calls in the same order of keys:
 *
 *   journal  cmd_idem_begin (expect NEW) -> cmd_idem_finish; cmd_idem_sync every second
 *   sqlite   one connection (WAL, synchronous=NORMAL) under a mutex, a transaction kept
 *            open: INSERT OR IGNORE the claim (status 0), else SELECT it (DONE, BUSY or
 *            MISMATCH); UPDATE it with status and body; every second COMMIT, delete
 *            the expired rows through the expires index, BEGIN again
 *
 * A single connection is SQLite's best case for many writer threads: connections of
 * their own would serialize on the WAL write lock and meet SQLITE_BUSY. The figure is
 * keys per second from the start until the last answer is finished and synced (the final
 * sync, or commit, counted). WAL with synchronous=NORMAL does not fdatasync at commit
 * (only at checkpoints), so SQLite's durability is the weaker of the two: its figure is
 * if anything flattering.
 */
#include "commands/commands.h"
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define IDEM_KEY_SIZE   96
#define SYNC_INTERVAL_S 1
#define WINDOW_S        86400 /* how long an answer is remembered (the service's default) */
#define STATUS_BUSY     0     /* a claimed key's status before its answer */

/* The store under test, as the workers and the sync thread see it. */
typedef struct idem_store {
    const char *name;
    /* NEW (0) when the key was claimed for this request; otherwise a negative code */
    int (*begin)(void *ctx, const char *key, uint64_t fp);
    int (*finish)(void *ctx, const char *key, unsigned status, const char *body);
    int (*sync)(void *ctx);
    void *ctx;
} idem_store;

typedef struct run_shared {
    const bench_opts *opts;
    const idem_store *store;
    const char *body;
    pthread_barrier_t start;
    _Atomic int done;    /* the workers have finished every key */
    _Atomic int failure; /* the first failure of a worker or the sync thread */
} run_shared;

typedef struct worker {
    pthread_t tid;
    uint32_t index;
    run_shared *shared;
} worker;

static void record_failure(run_shared *sh, int rc)
{
    int none = 0;
    atomic_compare_exchange_strong(&sh->failure, &none, rc);
}

/* Key i as a client would send it, scoped by principal the way command_routes.c does. */
static void key_of(uint64_t i, char out[IDEM_KEY_SIZE])
{
    uint64_t h = i * 0x9e3779b97f4a7c15ULL;
    snprintf(out, IDEM_KEY_SIZE,
             "k/bench-client-%u/%08" PRIx64 "-%04" PRIx64 "-7%03" PRIx64 "-%012" PRIx64,
             (unsigned)(i % 16), h >> 32, (h >> 16) & 0xffff, h & 0xfff, i);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    run_shared *sh = w->shared;
    const idem_store *st = sh->store;
    char key[IDEM_KEY_SIZE];
    pthread_barrier_wait(&sh->start);
    /* Worker t takes keys t, t+T, t+2T, ...: the threads interleave as clients would. */
    for (uint64_t i = w->index; i < sh->opts->keys; i += sh->opts->threads) {
        if (atomic_load_explicit(&sh->failure, memory_order_relaxed) != 0)
            break;
        key_of(i, key);
        uint64_t fp = cmd_idem_fingerprint("PlaceOrder", key, strlen(key));
        int rc = st->begin(st->ctx, key, fp);
        if (rc == 0)
            rc = st->finish(st->ctx, key, 201, sh->body);
        if (rc != 0) {
            record_failure(sh, rc);
            break;
        }
    }
    return NULL;
}

/* Syncs every SYNC_INTERVAL_S until the workers are done, as serve.c's tick does. */
static void *sync_main(void *arg)
{
    run_shared *sh = arg;
    const idem_store *st = sh->store;
    pthread_barrier_wait(&sh->start);
    uint64_t next = bench_now_ns() + SYNC_INTERVAL_S * 1000000000ull;
    while (!atomic_load(&sh->done)) {
        struct timespec pause = {0, 10000000L}; /* notices "done" within 10 ms */
        nanosleep(&pause, NULL);
        if (bench_now_ns() < next)
            continue;
        next += SYNC_INTERVAL_S * 1000000000ull;
        int rc = st->sync(st->ctx);
        if (rc != 0)
            record_failure(sh, rc);
    }
    return NULL;
}

/* Runs the load on one store; its rate in keys per second goes to *per_s_out. */
static int run_load(const bench_opts *opts, const idem_store *st, const char *body,
                    double *per_s_out)
{
    run_shared sh = {.opts = opts, .store = st, .body = body};
    atomic_init(&sh.done, 0);
    atomic_init(&sh.failure, 0);
    worker *workers = calloc(opts->threads, sizeof *workers);
    if (!workers)
        return -ENOMEM;
    pthread_barrier_init(&sh.start, NULL, opts->threads + 2);
    pthread_t sync_tid;
    int rc = -pthread_create(&sync_tid, NULL, sync_main, &sh);
    uint32_t started = 0;
    for (; rc == 0 && started < opts->threads; started++) {
        workers[started] = (worker){.index = started, .shared = &sh};
        rc = -pthread_create(&workers[started].tid, NULL, worker_main, &workers[started]);
    }
    if (rc != 0) {
        /* The barrier expects every thread: it cannot release a partial set. */
        fprintf(stderr, "skald-bench: cannot start a thread: %s\n", strerror(-rc));
        abort();
    }
    pthread_barrier_wait(&sh.start);
    uint64_t t0 = bench_now_ns();
    for (uint32_t i = 0; i < opts->threads; i++)
        pthread_join(workers[i].tid, NULL);
    atomic_store(&sh.done, 1);
    pthread_join(sync_tid, NULL);
    rc = atomic_load(&sh.failure);
    if (rc == 0)
        rc = st->sync(st->ctx); /* the last answers durable, as at the next tick */
    uint64_t elapsed = bench_now_ns() - t0;
    pthread_barrier_destroy(&sh.start);
    free(workers);
    if (rc != 0) {
        fprintf(stderr, "skald-bench: idempotency (%s): %s\n", st->name, sk_strerror(rc));
        return rc;
    }
    *per_s_out = (double)opts->keys / bench_seconds(elapsed);
    printf("%-8s %" PRIu64 " keys in %.2f s: %.0f keys/s\n", st->name, opts->keys,
           bench_seconds(elapsed), *per_s_out);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The journal: commands/idempotency.c as the service uses it.
 */
static int journal_begin(void *ctx, const char *key, uint64_t fp)
{
    unsigned status = 0;
    char *first = NULL;
    cmd_idem_state state = cmd_idem_begin(ctx, key, fp, &status, &first);
    free(first);
    return state == CMD_IDEM_NEW ? 0 : SK_ECONFLICT; /* every key is new in this load */
}

static int journal_finish(void *ctx, const char *key, unsigned status, const char *body)
{
    return cmd_idem_finish(ctx, key, status, body, 0);
}

static int journal_sync(void *ctx)
{
    return cmd_idem_sync(ctx);
}

static int measure_journal(const bench_opts *opts, const char *work, const char *body,
                           double *per_s_out)
{
    cmd_idem_config cfg;
    cmd_idem_config_init(&cfg, work); /* the journal: <work>/idempotency/ */
    cfg.window_s = WINDOW_S;
    cmd_idem *idem = NULL;
    sk_error err;
    sk_error_clear(&err);
    int rc = cmd_idem_open(&cfg, &idem, &err);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: opening the journal in %s: %s\n", work,
                err.message[0] ? err.message : sk_strerror(rc));
        return rc;
    }
    idem_store st = {"journal", journal_begin, journal_finish, journal_sync, idem};
    rc = run_load(opts, &st, body, per_s_out);
    int close_rc = cmd_idem_close(idem);
    return rc != 0 ? rc : close_rc;
}

/* ---------------------------------------------------------------------------------------
 * SQLite: one table with an expiry index, the same calls.
 */
typedef struct sqlite_idem {
    pthread_mutex_t mu; /* guards the connection and its statements */
    sqlite3 *db;
    sqlite3_stmt *claim, *lookup, *answer, *expire;
} sqlite_idem;

static int sqlite_fail(sqlite3 *db, const char *what)
{
    fprintf(stderr, "skald-bench: sqlite %s: %s\n", what, db ? sqlite3_errmsg(db) : "no memory");
    return -EIO;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static int sqlite_begin(void *ctx, const char *key, uint64_t fp)
{
    sqlite_idem *s = ctx;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    sqlite3_bind_text(s->claim, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->claim, 2, (sqlite3_int64)fp);
    sqlite3_bind_int64(s->claim, 3, now_s() + WINDOW_S);
    if (sqlite3_step(s->claim) != SQLITE_DONE)
        rc = sqlite_fail(s->db, "claim");
    else if (sqlite3_changes(s->db) == 0) {
        /* Someone has the key: DONE, BUSY or MISMATCH by its row (never in this load). */
        sqlite3_bind_text(s->lookup, 1, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(s->lookup) == SQLITE_ROW ? SK_ECONFLICT : sqlite_fail(s->db, "lookup");
        sqlite3_reset(s->lookup);
    }
    sqlite3_reset(s->claim);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int sqlite_finish(void *ctx, const char *key, unsigned status, const char *body)
{
    sqlite_idem *s = ctx;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    sqlite3_bind_int(s->answer, 1, (int)status);
    sqlite3_bind_text(s->answer, 2, body, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->answer, 3, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s->answer) != SQLITE_DONE)
        rc = sqlite_fail(s->db, "answer");
    sqlite3_reset(s->answer);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* The tick: commit what the second gathered, drop expired answers, open the next. */
static int sqlite_sync(void *ctx)
{
    sqlite_idem *s = ctx;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = sqlite_fail(s->db, "commit");
    sqlite3_bind_int64(s->expire, 1, now_s());
    if (rc == 0 && sqlite3_step(s->expire) != SQLITE_DONE)
        rc = sqlite_fail(s->db, "expire");
    sqlite3_reset(s->expire);
    if (rc == 0 && sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        rc = sqlite_fail(s->db, "begin");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void sqlite_idem_close(sqlite_idem *s)
{
    sqlite3_finalize(s->claim);
    sqlite3_finalize(s->lookup);
    sqlite3_finalize(s->answer);
    sqlite3_finalize(s->expire);
    if (s->db) {
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL); /* nothing open after a sync */
        sqlite3_close(s->db);
    }
    pthread_mutex_destroy(&s->mu);
}

static int sqlite_idem_open(const char *path, sqlite_idem *s)
{
    static const char SCHEMA[] =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "CREATE TABLE idempotency (key TEXT PRIMARY KEY, fp INTEGER NOT NULL,"
        " status INTEGER NOT NULL, body TEXT, expires INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX idempotency_expires ON idempotency (expires);"
        "BEGIN;";
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        return sqlite_fail(s->db, "open");
    if (sqlite3_exec(s->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        return sqlite_fail(s->db, "schema");
    static const char *const SQL[] = {
        "INSERT OR IGNORE INTO idempotency (key, fp, status, body, expires)"
        " VALUES (?1, ?2, " /* STATUS_BUSY */ "0, NULL, ?3)",
        "SELECT fp, status, body FROM idempotency WHERE key = ?1",
        "UPDATE idempotency SET status = ?1, body = ?2 WHERE key = ?3",
        "DELETE FROM idempotency WHERE expires < ?1",
    };
    sqlite3_stmt **stmts[] = {&s->claim, &s->lookup, &s->answer, &s->expire};
    for (size_t i = 0; i < sizeof SQL / sizeof SQL[0]; i++)
        if (sqlite3_prepare_v2(s->db, SQL[i], -1, stmts[i], NULL) != SQLITE_OK)
            return sqlite_fail(s->db, "prepare");
    return 0;
}

_Static_assert(STATUS_BUSY == 0, "the claim statement writes status 0");

static int measure_sqlite(const bench_opts *opts, const char *work, const char *body,
                          double *per_s_out)
{
    char path[BENCH_PATH_MAX];
    int rc = bench_path_join(path, sizeof path, work, "idempotency.db");
    if (rc < 0)
        return rc;
    sqlite_idem s;
    rc = sqlite_idem_open(path, &s);
    if (rc == 0) {
        idem_store st = {"sqlite", sqlite_begin, sqlite_finish, sqlite_sync, &s};
        rc = run_load(opts, &st, body, per_s_out);
    }
    sqlite_idem_close(&s);
    return rc;
}

int bench_idempotency(const bench_opts *opts)
{
    char work[BENCH_PATH_MAX];
    int rc = bench_workdir_create(opts->dir, work, sizeof work);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: cannot create the work directory: %s\n", strerror(-rc));
        return rc;
    }
    bench_print_where("work directory", work);
    /* A JSON answer of body_bytes, like the service's 201 with the events' positions. */
    char *body = malloc((size_t)opts->body_bytes + 1);
    if (!body) {
        rc = -ENOMEM;
        goto done;
    }
    memset(body, 'x', opts->body_bytes);
    if (opts->body_bytes >= 2) {
        body[0] = '{';
        body[opts->body_bytes - 1] = '}';
    }
    body[opts->body_bytes] = '\0';
    printf("idempotency: %" PRIu64 " keys, %u threads, %u-byte answers, a sync every %d s\n",
           opts->keys, opts->threads, opts->body_bytes, SYNC_INTERVAL_S);
    double journal_per_s = 0, sqlite_per_s = 0;
    rc = measure_journal(opts, work, body, &journal_per_s);
    if (rc == 0)
        rc = measure_sqlite(opts, work, body, &sqlite_per_s);
    if (rc == 0) {
        double ratio = sqlite_per_s / journal_per_s;
        printf("ratio:    %.3f (SQLite over the journal; the journal stays unless SQLite is "
               "clearly faster)\n",
               ratio);
        printf("BENCH idempotency keys=%" PRIu64 " threads=%u journal_per_s=%.0f sqlite_per_s=%.0f "
               "ratio=%.3f\n",
               opts->keys, opts->threads, journal_per_s, sqlite_per_s, ratio);
    }
done:
    free(body);
    if (opts->keep)
        printf("kept: %s\n", work);
    else
        bench_workdir_remove(work);
    return rc;
}
