/*
 * queries.h -- named, parameterised, read-only SQL queries over the read models
 * (docs/queries.md). The API never accepts SQL text: a query is declared in a model file
 * (projections/models/NAME.sql, `-- @query` sections) and called by name with declared
 * parameters.
 *
 * Calling sequence
 *   qry_source src = {ctx, live_db, wait_applied};      supplied by the caller (service/)
 *   qry_engine_open(models_dir, &src, secret_path, &q, &err)
 *   qry_run(q, "orders", params, n, &answer, &qerr)      from any thread
 *   qry_engine_close(q)
 *
 * The engine knows nothing of projections/ (a sibling layer): the caller tells it where a
 * model's live database is and how to wait for a position through qry_source.
 *
 * Error rules: 0, or a negative code with details in qry_error:
 *   SK_ENOTFOUND  unknown query (HTTP 404)
 *   SK_EBADINPUT  unknown, repeated, missing or malformed parameter, bad limit, forged or
 *                 stale cursor (400; err.field names the parameter)
 *   -ETIMEDOUT    min_position not reached in time (504; err.position is how far it got)
 *   SK_EBUSY      the model has no database yet, or SQLite stayed busy (503; retry)
 *   other         SQLite or I/O failure, or a row the model's author promised could not
 *                 exist: a NULL @order key, invalid @json text, a BLOB (500)
 * qry_engine_open fails with SK_ESCHEMA (bad declaration: err names file, line, query),
 * SK_ECORRUPT (secret file of the wrong size), or -errno.
 *
 * Thread safety
 *   After qry_engine_open returns, qry_run, qry_count and qry_describe may be called from
 *   any number of threads at once (the engine is immutable but for its connection pool,
 *   which has its own lock). Each call uses its own SQLite connection. qry_engine_close
 *   must not race with any other call. The source's callbacks are called from whichever
 *   thread runs the query, possibly several at once.
 */
#ifndef SKALD_QUERIES_H
#define SKALD_QUERIES_H

#include "events/events.h"

#include <jansson.h>
#include <stdint.h>

typedef struct qry_source {
    void *ctx;
    /* Writes the path of the live database of `model` into path (size bytes) and its
     * generation (which changes when a rebuild is swapped in). 0, or SK_ENOTFOUND (no such
     * model) / SK_EBUSY (none built yet). Any thread. */
    int (*live_db)(void *ctx, const char *model, char *path, size_t size, uint64_t *generation);
    /* Waits until `model` has applied position (inclusive), at most timeout_ms (0: do not
     * wait, just check). 0 when it has, -ETIMEDOUT when not; *applied_out gets the last
     * position applied (-1: none) in both cases. Other codes (SK_ENOTFOUND...) are passed
     * through to qry_run's caller. Any thread. Called only when min_position is given. */
    int (*wait_applied)(void *ctx, const char *model, uint64_t position, int timeout_ms,
                        int64_t *applied_out);
} qry_source;

typedef struct qry_engine qry_engine;

/* A request parameter as it came (e.g. from the URL query string); borrowed. The reserved
 * names are `limit`, `cursor`, `min_position`, `timeout_ms`. */
typedef struct qry_param {
    const char *name;
    const char *value;
} qry_param;

typedef struct qry_error {
    sk_error err;     /* message and, for SK_EBADINPUT, the parameter in err.field */
    int64_t position; /* for -ETIMEDOUT: the position the model had reached (-1: none);
                       * -1 for every other outcome */
} qry_error;

#define QRY_LIMIT_DEFAULT      50
#define QRY_LIMIT_MAX          1000
#define QRY_TIMEOUT_MS_DEFAULT 5000
#define QRY_TIMEOUT_MS_MAX     30000

/* Loads every `-- @query` section of models_dir/\*.sql and checks each against its file's
 * @tables in an in-memory database. The cursor secret (32 random bytes) is read from
 * secret_path, created if missing (mode 0600); keep it across restarts or outstanding
 * cursors become invalid. src is copied; src->ctx must outlive the engine. On a bad
 * declaration err names the file, the query and what is wrong. err may be NULL.
 * Ownership: *out belongs to the caller (qry_engine_close); nothing on failure. */
int qry_engine_open(const char *models_dir, const qry_source *src, const char *secret_path,
                    qry_engine **out, sk_error *err);
void qry_engine_close(qry_engine *q); /* accepts NULL */

/* Runs query `name`: *answer_out gets {"items":[...],"next_cursor":null|"...","position":P}
 * (caller owns it; json_decref; written only on success). P is the model's last applied
 * position (inclusive; -1 if none), read in the same read transaction as the items.
 * params (nparams entries) is borrowed for the call; a NULL value is a parameter given
 * without one (400). qerr may be NULL. */
int qry_run(qry_engine *q, const char *name, const qry_param *params, size_t nparams,
            json_t **answer_out, qry_error *err);

/* Introspection for docs and /v1/openapi: the number of queries, and each one's name,
 * model and parameters as JSON ({"name","model","params":[{"name","type","required",
 * "in":[...]}],"order":[{"column","direction":"asc"|"desc"}],"columns":[{"name","json"}]};
 * "in" only when declared); caller owns it; NULL if out of memory. index < qry_count. */
size_t qry_count(const qry_engine *q);
json_t *qry_describe(const qry_engine *q, size_t index);

#endif /* SKALD_QUERIES_H */
