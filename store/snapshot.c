/*
 * snapshot.c -- the newest state of each aggregate, in SQLite beside the log.
 *
 * A snapshot only shortens a replay, so the file is tuned for cheap writes (WAL,
 * synchronous=NORMAL: a crash may lose the last snapshots, never corrupt the file) and
 * every read of it is checked by the caller against the log (a snapshot past the
 * stream's version is ignored). One connection with prepared statements, one mutex.
 */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store_snapshots {
    sqlite3 *db;
    sqlite3_stmt *save, *load;
    pthread_mutex_t mu;
    char path[4096];
};

static const char SCHEMA[] = "CREATE TABLE IF NOT EXISTS snapshots ("
                             " stream_id TEXT PRIMARY KEY,"
                             " aggregate TEXT NOT NULL,"
                             " version INTEGER NOT NULL,"
                             " state_version INTEGER NOT NULL,"
                             " taken_at_us INTEGER NOT NULL,"
                             " state TEXT NOT NULL) WITHOUT ROWID";

/* Keeps the higher version: an old snapshot saved late never replaces a newer one. */
static const char SAVE[] =
    "INSERT INTO snapshots(stream_id, aggregate, version, state_version, taken_at_us, state)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(stream_id) DO UPDATE SET"
    " aggregate = excluded.aggregate, version = excluded.version,"
    " state_version = excluded.state_version, taken_at_us = excluded.taken_at_us,"
    " state = excluded.state WHERE excluded.version >= snapshots.version";

static const char LOAD[] = "SELECT aggregate, version, state_version, taken_at_us, state"
                           " FROM snapshots WHERE stream_id = ?1";

static int db_error(store_snapshots *s, sk_error *err, const char *what)
{
    return sk_error_set(err, -EIO, "", "snapshot file %s: %s: %s", s->path, what,
                        s->db ? sqlite3_errmsg(s->db) : "cannot open");
}

int store_snapshots_open(const char *path, int read_only, store_snapshots **out, sk_error *err)
{
    store_snapshots *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    snprintf(s->path, sizeof s->path, "%s", path);
    pthread_mutex_init(&s->mu, NULL);
    int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = 0;
    if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        rc = db_error(s, err, "cannot open");
    if (rc == 0)
        sqlite3_busy_timeout(s->db, 5000);
    if (rc == 0 && !read_only &&
        sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     NULL) != SQLITE_OK)
        rc = db_error(s, err, "not a snapshot file");
    if (rc == 0 && !read_only && sqlite3_exec(s->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        rc = db_error(s, err, "cannot create the table");
    if (rc == 0 && !read_only && sqlite3_prepare_v2(s->db, SAVE, -1, &s->save, NULL) != SQLITE_OK)
        rc = db_error(s, err, "not a snapshot file");
    if (rc == 0 && sqlite3_prepare_v2(s->db, LOAD, -1, &s->load, NULL) != SQLITE_OK)
        rc = db_error(s, err, "not a snapshot file");
    if (rc) {
        store_snapshots_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_snapshots_close(store_snapshots *s)
{
    if (!s)
        return;
    sqlite3_finalize(s->save);
    sqlite3_finalize(s->load);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int check(const store_snapshot *snap, sk_error *err)
{
    if (!snap->stream_id[0])
        return sk_error_set(err, SK_EBADINPUT, "stream_id", "a snapshot needs a stream id");
    if (!snap->aggregate[0])
        return sk_error_set(err, SK_EBADINPUT, "aggregate", "a snapshot needs an aggregate");
    if (snap->version == 0 || snap->version > INT64_MAX)
        return sk_error_set(err, SK_EBADINPUT, "version", "a snapshot's version is >= 1");
    if (!snap->state_json)
        return sk_error_set(err, SK_EBADINPUT, "state_json", "a snapshot needs a state");
    return 0;
}

int store_snapshot_save(store_snapshots *s, const store_snapshot *snap, sk_error *err)
{
    int rc = check(snap, err);
    if (rc)
        return rc;
    if (!s->save)
        return sk_error_set(err, SK_EREADONLY, "", "snapshot file %s is open read-only", s->path);
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->save;
    sqlite3_bind_text(st, 1, snap->stream_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, snap->aggregate, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)snap->version);
    sqlite3_bind_int64(st, 4, snap->state_version);
    sqlite3_bind_int64(st, 5, snap->taken_at_us ? snap->taken_at_us : ev_now_us());
    sqlite3_bind_text(st, 6, snap->state_json, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(s, err, "cannot save");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Fills out from the current row of st: aggregate, version, state_version, taken_at,
 * state in columns first.. */
static int row_to_snapshot(sqlite3_stmt *st, int first, store_snapshot *out)
{
    const char *agg = (const char *)sqlite3_column_text(st, first);
    const char *state = (const char *)sqlite3_column_text(st, first + 4);
    snprintf(out->aggregate, sizeof out->aggregate, "%s", agg ? agg : "");
    out->version = (uint64_t)sqlite3_column_int64(st, first + 1);
    out->state_version = (uint32_t)sqlite3_column_int64(st, first + 2);
    out->taken_at_us = sqlite3_column_int64(st, first + 3);
    out->state_json = strdup(state ? state : "");
    return out->state_json ? 0 : -ENOMEM;
}

int store_snapshot_load(store_snapshots *s, const char *stream_id, store_snapshot *out,
                        sk_error *err)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->load;
    sqlite3_bind_text(st, 1, stream_id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc = 0;
    if (step == SQLITE_ROW) {
        snprintf(out->stream_id, sizeof out->stream_id, "%s", stream_id);
        rc = row_to_snapshot(st, 0, out) == 0 ? 1 : -ENOMEM;
    } else if (step != SQLITE_DONE) {
        rc = db_error(s, err, "cannot load");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void store_snapshot_clear(store_snapshot *snap)
{
    free(snap->state_json);
    snap->state_json = NULL;
}

int store_snapshot_list(store_snapshots *s, int (*cb)(void *cb_ctx, const store_snapshot *),
                        void *cb_ctx, sk_error *err)
{
    sqlite3_stmt *st;
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT stream_id, aggregate, version, state_version, taken_at_us,"
                           " state FROM snapshots ORDER BY stream_id",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_error(s, err, "cannot list");
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    int step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        store_snapshot snap = {0};
        const char *id = (const char *)sqlite3_column_text(st, 0);
        snprintf(snap.stream_id, sizeof snap.stream_id, "%s", id ? id : "");
        rc = row_to_snapshot(st, 1, &snap);
        if (rc == 0)
            rc = cb(cb_ctx, &snap);
        store_snapshot_clear(&snap);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = db_error(s, err, "cannot list");
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_snapshot_delete(store_snapshots *s, const char *stream_id, const char *aggregate,
                          uint64_t *removed, sk_error *err)
{
    const char *sql = stream_id   ? "DELETE FROM snapshots WHERE stream_id = ?1"
                      : aggregate ? "DELETE FROM snapshots WHERE aggregate = ?1"
                                  : "DELETE FROM snapshots";
    sqlite3_stmt *st;
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = db_error(s, err, "cannot delete");
    } else {
        if (stream_id || aggregate)
            sqlite3_bind_text(st, 1, stream_id ? stream_id : aggregate, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, err, "cannot delete");
        else if (removed)
            *removed = (uint64_t)sqlite3_changes(s->db);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}
