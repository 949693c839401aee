/*
 * pool.c -- read-only SQLite connections to the live read models, reused between calls.
 *
 * Opening a connection, setting it up and preparing statements costs far more than most
 * queries, so each model keeps up to QRY_POOL_IDLE_MAX idle connections. They are keyed by
 * the generation the source reports: when a rebuild swaps a new database in, the source
 * reports a higher generation, the idle connections to the old file are closed (so the
 * projection can delete it once in-flight readers finish) and new ones open the new file.
 * A connection is used by one thread at a time: it is either idle in the pool (guarded by
 * q->mu) or held by the one call that took it.
 *
 * Read-only in three ways: SQLITE_OPEN_READONLY, `PRAGMA query_only=1`, and the same
 * authorizer the declarations were checked with (reading only, plus the engine's own
 * BEGIN/COMMIT); attaching other databases is limited to zero.
 */
#include "queries/queries_int.h"

#include <errno.h>
#include <string.h>

#define BUSY_TIMEOUT_MS 2000

static int allow_transactions = 1; /* the authorizer's ctx at run time */

static void conn_close(const qry_engine *q, qry_conn *c)
{
    if (!c)
        return;
    if (c->stmts)
        for (size_t i = 0; i < 2 * q->decl_count; i++)
            sqlite3_finalize(c->stmts[i]);
    free(c->stmts);
    sqlite3_finalize(c->position);
    sqlite3_finalize(c->begin);
    sqlite3_finalize(c->commit);
    sqlite3_close(c->db);
    free(c);
}

static int conn_open(const qry_engine *q, const char *model, const char *path, uint64_t generation,
                     qry_conn **out, sk_error *err)
{
    qry_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->stmts = calloc(2 * q->decl_count + 1, sizeof *c->stmts))) {
        free(c);
        return sk_error_set(err, -ENOMEM, "", "out of memory");
    }
    c->generation = generation;
    int rc = 0,
        src = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        /* Most likely the file was swapped out between the source's answer and the open. */
        rc = sk_error_set(err, src == SQLITE_CANTOPEN ? SK_EBUSY : -EIO, "",
                          "read model '%s': cannot open %s: %s", model, path,
                          c->db ? sqlite3_errmsg(c->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    sqlite3_limit(c->db, SQLITE_LIMIT_ATTACHED, 0);
    if (sqlite3_exec(c->db, "PRAGMA query_only=1", NULL, NULL, NULL) != SQLITE_OK) {
        rc = sk_error_set(err, -EIO, "", "read model '%s': %s", model, sqlite3_errmsg(c->db));
        goto fail;
    }
    sqlite3_set_authorizer(c->db, qry_authorize, &allow_transactions);
    if (sqlite3_prepare_v3(c->db, "SELECT value FROM _skald_projection WHERE key = 'next_position'",
                           -1, SQLITE_PREPARE_PERSISTENT, &c->position, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(c->db, "BEGIN", -1, SQLITE_PREPARE_PERSISTENT, &c->begin, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(c->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &c->commit, NULL) !=
            SQLITE_OK) {
        int ec = sqlite3_errcode(c->db);
        rc = sk_error_set(err, ec == SQLITE_BUSY ? SK_EBUSY : SK_ECORRUPT, "",
                          "read model '%s': %s is not a projection database: %s", model, path,
                          sqlite3_errmsg(c->db));
        goto fail;
    }
    *out = c;
    return 0;
fail:
    conn_close(q, c);
    return rc;
}

static int pool_get_once(qry_engine *q, size_t model_index, qry_conn **out, uint64_t *gen_out,
                         sk_error *err);

/* A rebuild may swap a new generation in, and remove the old file, between asking the
 * source for the live database and opening it: then the source reports a newer generation,
 * and the open is tried again on it. */
int qry_pool_get(qry_engine *q, size_t model_index, qry_conn **out, sk_error *err)
{
    uint64_t tried = 0;
    int rc = pool_get_once(q, model_index, out, &tried, err);
    for (int again = 0; rc != 0 && again < 3; again++) {
        char path[4096];
        uint64_t now = 0;
        if (q->src.live_db(q->src.ctx, q->models[model_index].name, path, sizeof path, &now) != 0 ||
            now == tried)
            break;
        sk_error_clear(err);
        rc = pool_get_once(q, model_index, out, &tried, err);
    }
    return rc;
}

static int pool_get_once(qry_engine *q, size_t model_index, qry_conn **out, uint64_t *gen_out,
                         sk_error *err)
{
    QRY_ASSERT(model_index < q->model_count);
    qry_model *m = &q->models[model_index];
    char path[4096];
    uint64_t generation = 0;
    int rc = q->src.live_db(q->src.ctx, m->name, path, sizeof path, &generation);
    if (rc == SK_ENOTFOUND)
        return sk_error_set(err, rc, "", "read model '%s' does not exist", m->name);
    if (rc == SK_EBUSY)
        return sk_error_set(err, rc, "", "read model '%s' has no database yet", m->name);
    if (rc)
        return sk_error_set(err, rc, "", "read model '%s': %s", m->name, sk_strerror(rc));
    path[sizeof path - 1] = 0;
    *gen_out = generation;
    qry_conn *retired[QRY_POOL_IDLE_MAX], *c = NULL;
    size_t retired_count = 0;
    pthread_mutex_lock(&q->mu);
    if (generation > m->generation) {
        memcpy(retired, m->idle, m->idle_count * sizeof *retired);
        retired_count = m->idle_count;
        m->idle_count = 0;
        m->generation = generation;
    }
    if (generation == m->generation && m->idle_count)
        c = m->idle[--m->idle_count];
    pthread_mutex_unlock(&q->mu);
    for (size_t i = 0; i < retired_count; i++)
        conn_close(q, retired[i]);
    if (!c)
        rc = conn_open(q, m->name, path, generation, &c, err);
    if (rc)
        return rc;
    QRY_ASSERT(c->generation == generation);
    *out = c;
    return 0;
}

void qry_pool_put(qry_engine *q, size_t model_index, qry_conn *c, bool reusable)
{
    QRY_ASSERT(model_index < q->model_count && c);
    qry_model *m = &q->models[model_index];
    pthread_mutex_lock(&q->mu);
    if (reusable && c->generation == m->generation && m->idle_count < QRY_POOL_IDLE_MAX) {
        m->idle[m->idle_count++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    conn_close(q, c);
}

void qry_pool_close_all(qry_engine *q)
{
    for (size_t i = 0; i < q->model_count; i++) {
        qry_model *m = &q->models[i];
        while (m->idle_count)
            conn_close(q, m->idle[--m->idle_count]);
    }
}
