/*
 * generation.c -- one database file of a read model, and applying events to it.
 *
 * A model's databases are generations, DIR/NAME.<generation>.db, never renamed: a
 * rebuild writes a new one beside the live one and the engine switches queries to it
 * (engine.c). Each holds the model's tables and _skald_projection (key, value): the
 * checkpoint next_position, file_hash, generation, live, skipped, history.
 *
 * Applying: a batch of events runs in one transaction that also writes next_position, so
 * after a crash the database holds exactly the events before its checkpoint (WAL,
 * synchronous=NORMAL: a power loss may take the last transactions back, checkpoint and
 * all, and the worker applies them again). Each event with statements runs inside a
 * savepoint: if one of them fails, that event is rolled back alone, the ones before it
 * are committed with the checkpoint at the failed event, and the caller learns which
 * event failed and why.
 */
#include "projections/projections_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void proj_gen_path(const char *dir, const char *model, uint64_t number, char *out, size_t size)
{
    snprintf(out, size, "%s/%s.%06" PRIu64 ".db", dir, model, number);
}

static int exec(proj_gen *g, const char *sql, sk_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(g->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    int rc = sk_error_set(err, -EIO, "", "%s: %s: %s", g->path, sql, msg ? msg : "error");
    sqlite3_free(msg);
    return rc;
}

int proj_gen_set_meta(proj_gen *g, const char *key, const char *value)
{
    sqlite3_reset(g->set_meta);
    sqlite3_bind_text(g->set_meta, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(g->set_meta, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(g->set_meta) == SQLITE_DONE ? 0 : -EIO;
    sqlite3_reset(g->set_meta);
    return rc;
}

/* Numbers are stored as integers (the column has no type): readers such as the query
 * engine read next_position with sqlite3_column_int64 and check its type. */
int proj_gen_set_meta_u64(proj_gen *g, const char *key, uint64_t v)
{
    sqlite3_reset(g->set_meta);
    sqlite3_bind_text(g->set_meta, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(g->set_meta, 2, (sqlite3_int64)v);
    int rc = sqlite3_step(g->set_meta) == SQLITE_DONE ? 0 : -EIO;
    sqlite3_reset(g->set_meta);
    return rc;
}

char *proj_gen_meta(proj_gen *g, const char *key)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(g->db, "SELECT value FROM _skald_projection WHERE key = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            out = strdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return out;
}

/* Prepares a statement and the plan that binds each of its parameters. */
static int prepare(proj_gen *g, const char *sql, proj_prepared *out, sk_error *err)
{
    if (sqlite3_prepare_v3(g->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &out->stmt, NULL) !=
        SQLITE_OK)
        return sk_error_set(err, SK_EBADINPUT, "", "%s: %s", g->path, sqlite3_errmsg(g->db));
    out->nparams = sqlite3_bind_parameter_count(out->stmt);
    out->params = calloc((size_t)out->nparams + 1, sizeof *out->params);
    if (!out->params)
        return -ENOMEM;
    for (int i = 0; i < out->nparams; i++) {
        const char *name = sqlite3_bind_parameter_name(out->stmt, i + 1) + 1; /* past ':' */
        int kind = proj_envelope_kind(name);
        out->params[i].kind = kind >= 0 ? (proj_bind_kind)kind : PROJ_BIND_PAYLOAD;
        if (kind < 0 && !(out->params[i].field = strdup(name)))
            return -ENOMEM;
    }
    return 0;
}

static int prepare_handlers(proj_gen *g, const proj_model *m, sk_error *err)
{
    g->handlers = calloc(m->nhandlers + 1, sizeof *g->handlers);
    if (!g->handlers)
        return -ENOMEM;
    g->nhandlers = m->nhandlers;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->nhandlers; i++) {
        proj_gen_handler *h = &g->handlers[i];
        h->def = &m->handlers[i];
        h->stmts = calloc(h->def->count, sizeof *h->stmts);
        if (!h->stmts)
            return -ENOMEM;
        for (size_t j = 0; rc == 0 && j < h->def->count; j++)
            rc = prepare(g, h->def->sqls[j], &h->stmts[j], err);
    }
    return rc;
}

/* A new database: the model's tables and the meta table, in one transaction. */
static int create_schema(proj_gen *g, const proj_model *m, sk_error *err)
{
    int rc = exec(g, "BEGIN", err);
    if (rc == 0)
        rc = exec(g, m->tables_sql, err);
    if (rc == 0)
        rc = exec(g, "CREATE TABLE _skald_projection (key TEXT PRIMARY KEY, value)", err);
    return rc;
}

static int write_initial_meta(proj_gen *g, const proj_model *m, sk_error *err)
{
    char hash[24];
    snprintf(hash, sizeof hash, "%016" PRIx64, m->hash);
    int rc = proj_gen_set_meta_u64(g, "next_position", 0);
    if (rc == 0)
        rc = proj_gen_set_meta(g, "file_hash", hash);
    if (rc == 0)
        rc = proj_gen_set_meta_u64(g, "generation", g->number);
    if (rc == 0)
        rc = proj_gen_set_meta_u64(g, "live", 0);
    if (rc == 0)
        rc = proj_gen_set_meta(g, "skipped", "[]");
    if (rc == 0)
        rc = proj_gen_set_meta(g, "history", "[]");
    if (rc == 0)
        rc = exec(g, "COMMIT", err);
    return rc ? sk_error_set(err, rc, "", "%s: cannot write its meta", g->path) : 0;
}

int proj_gen_open(const char *dir, const proj_model *m, uint64_t number, bool create,
                  proj_gen **out, sk_error *err)
{
    proj_gen *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->number = number;
    proj_gen_path(dir, m->name, number, g->path, sizeof g->path);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = 0;
    if (sqlite3_open_v2(g->path, &g->db, flags, NULL) != SQLITE_OK)
        rc = sk_error_set(err, -EIO, "", "cannot open %s: %s", g->path,
                          g->db ? sqlite3_errmsg(g->db) : "out of memory");
    if (rc == 0) {
        sqlite3_busy_timeout(g->db, 5000);
        /* temp_store=MEMORY keeps the statement journal of each event's savepoint in
         * memory. On disk it spilled to a temp file in /var/tmp: a 4 KiB pwrite per page
         * an event touched (2.4 per event over the sample models), 15% of the engine's CPU
         * (docs/benchmarks.md). It holds the pages of one event only, so it stays small. */
        rc = exec(g, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY",
                  err);
    }
    if (rc == 0 && create)
        rc = create_schema(g, m, err);
    if (rc == 0 &&
        sqlite3_prepare_v3(g->db, "INSERT OR REPLACE INTO _skald_projection VALUES (?, ?)", -1,
                           SQLITE_PREPARE_PERSISTENT, &g->set_meta, NULL) != SQLITE_OK)
        rc = sk_error_set(err, -EIO, "", "%s is not a read model: %s", g->path,
                          sqlite3_errmsg(g->db));
    static const char *const sp_sql[] = {"SAVEPOINT ev", "RELEASE ev", "ROLLBACK TO ev"};
    sqlite3_stmt **sp_stmt[] = {&g->savepoint, &g->release, &g->rollback_to};
    for (size_t i = 0; rc == 0 && i < 3; i++)
        if (sqlite3_prepare_v3(g->db, sp_sql[i], -1, SQLITE_PREPARE_PERSISTENT, sp_stmt[i], NULL) !=
            SQLITE_OK)
            rc = sk_error_set(err, -EIO, "", "%s: %s: %s", g->path, sp_sql[i],
                              sqlite3_errmsg(g->db));
    if (rc == 0 && create)
        rc = write_initial_meta(g, m, err);
    if (rc == 0) {
        char *next = proj_gen_meta(g, "next_position");
        g->next_position = next ? strtoull(next, NULL, 10) : 0;
        free(next);
        rc = prepare_handlers(g, m, err);
    }
    if (rc != 0) {
        proj_gen_close(g, create);
        return rc;
    }
    *out = g;
    return 0;
}

void proj_gen_close(proj_gen *g, bool remove_files)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nhandlers; i++) {
        proj_gen_handler *h = &g->handlers[i];
        for (size_t j = 0; h->stmts && j < h->def->count; j++) {
            sqlite3_finalize(h->stmts[j].stmt);
            for (int k = 0; h->stmts[j].params && k < h->stmts[j].nparams; k++)
                free(h->stmts[j].params[k].field);
            free(h->stmts[j].params);
        }
        free(h->stmts);
    }
    free(g->handlers);
    sqlite3_finalize(g->set_meta);
    sqlite3_finalize(g->savepoint);
    sqlite3_finalize(g->release);
    sqlite3_finalize(g->rollback_to);
    sqlite3_close(g->db);
    if (remove_files) {
        char p[4200];
        unlink(g->path);
        snprintf(p, sizeof p, "%s-wal", g->path);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", g->path);
        unlink(p);
    }
    free(g);
}

/* ---------------------------------------------------------------------------------------
 * Binding and applying.
 */
typedef struct event_ctx {
    const ev_event *ev;
    json_t *payload; /* decoded on first need */
    char occurred_at[64];
    char ids[3][EV_UUID_TEXT_SIZE];
    char **texts; /* JSON texts of nested fields bound in this statement, freed after it */
    size_t ntexts;
} event_ctx;

static void rfc3339(int64_t us, char *out, size_t size)
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, frac % 1000000);
}

static int bind_json(sqlite3_stmt *st, int i, json_t *v, event_ctx *ec)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return sqlite3_bind_text(st, i, json_string_value(v), (int)json_string_length(v),
                                 SQLITE_STATIC);
    case JSON_INTEGER:
        return sqlite3_bind_int64(st, i, json_integer_value(v));
    case JSON_REAL:
        return sqlite3_bind_double(st, i, json_real_value(v));
    case JSON_TRUE:
        return sqlite3_bind_int(st, i, 1);
    case JSON_FALSE:
        return sqlite3_bind_int(st, i, 0);
    case JSON_NULL:
        return sqlite3_bind_null(st, i);
    default: {
        char *text = json_dumps(v, JSON_COMPACT);
        char **n = text ? realloc(ec->texts, (ec->ntexts + 1) * sizeof *n) : NULL;
        if (!n) {
            free(text);
            return SQLITE_NOMEM;
        }
        ec->texts = n;
        ec->texts[ec->ntexts++] = text;
        return sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
    }
    }
}

static int bind_one(const proj_param *p, sqlite3_stmt *st, int i, event_ctx *ec)
{
    const ev_event *ev = ec->ev;
    switch (p->kind) {
    case PROJ_BIND_STREAM_ID:
        return sqlite3_bind_text(st, i, ev->stream_id.ptr, (int)ev->stream_id.len, SQLITE_STATIC);
    case PROJ_BIND_TYPE:
        return sqlite3_bind_text(st, i, ev->type.ptr, (int)ev->type.len, SQLITE_STATIC);
    case PROJ_BIND_VERSION:
        return sqlite3_bind_int64(st, i, (sqlite3_int64)ev->version);
    case PROJ_BIND_POSITION:
        return sqlite3_bind_int64(st, i, (sqlite3_int64)ev->position);
    case PROJ_BIND_EVENT_ID:
        ev_uuid_format(&ev->event_id, ec->ids[0]);
        return sqlite3_bind_text(st, i, ec->ids[0], -1, SQLITE_STATIC);
    case PROJ_BIND_COMMAND_ID:
        ev_uuid_format(&ev->command_id, ec->ids[1]);
        return sqlite3_bind_text(st, i, ec->ids[1], -1, SQLITE_STATIC);
    case PROJ_BIND_CORRELATION_ID:
        ev_uuid_format(&ev->correlation_id, ec->ids[2]);
        return sqlite3_bind_text(st, i, ec->ids[2], -1, SQLITE_STATIC);
    case PROJ_BIND_OCCURRED_AT:
        if (!ec->occurred_at[0])
            rfc3339(ev->occurred_at, ec->occurred_at, sizeof ec->occurred_at);
        return sqlite3_bind_text(st, i, ec->occurred_at, -1, SQLITE_STATIC);
    case PROJ_BIND_OCCURRED_AT_US:
        return sqlite3_bind_int64(st, i, ev->occurred_at);
    case PROJ_BIND_PAYLOAD: {
        json_t *v = json_object_get(ec->payload, p->field);
        return v ? bind_json(st, i, v, ec) : sqlite3_bind_null(st, i);
    }
    }
    return SQLITE_MISUSE;
}

static void free_texts(event_ctx *ec)
{
    for (size_t i = 0; i < ec->ntexts; i++)
        free(ec->texts[i]);
    ec->ntexts = 0;
}

/* Runs one statement for the event. SQLITE_DONE on success. */
static int run_stmt(proj_prepared *ps, event_ctx *ec)
{
    int rc = SQLITE_OK;
    for (int i = 0; i < ps->nparams && rc == SQLITE_OK; i++)
        rc = bind_one(&ps->params[i], ps->stmt, i + 1, ec);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(ps->stmt)) == SQLITE_ROW) {
        }
    }
    sqlite3_reset(ps->stmt);
    sqlite3_clear_bindings(ps->stmt);
    free_texts(ec);
    return rc;
}

static const proj_gen_handler *handler_for(const proj_gen *g, ev_str type)
{
    for (size_t i = 0; i < g->nhandlers; i++)
        if (ev_str_eq(type, g->handlers[i].def->type))
            return &g->handlers[i];
    return NULL;
}

static void note_failure(proj_failure *f, const ev_event *ev, const char *msg)
{
    f->failed = true;
    f->position = ev->position;
    snprintf(f->type, sizeof f->type, "%.*s", (int)ev->type.len, ev->type.ptr);
    snprintf(f->stream_id, sizeof f->stream_id, "%.*s", (int)ev->stream_id.len, ev->stream_id.ptr);
    snprintf(f->message, sizeof f->message, "%s", msg);
}

/* Runs a prepared statement that returns no rows (a savepoint's), ready to run again. */
static void step_once(sqlite3_stmt *st)
{
    sqlite3_step(st);
    sqlite3_reset(st);
}

/* Applies one event's statements inside a savepoint; 0, or 1 if it failed (noted). */
static int apply_event(proj_gen *g, const proj_gen_handler *h, const ev_event *ev,
                       const ev_registry *events, proj_failure *failure)
{
    event_ctx ec = {.ev = ev};
    sk_error derr = {0};
    if (ev_payload_to_json(events, ev->schema_id, ev->payload, ev->payload_size, &ec.payload,
                           &derr) != 0) {
        note_failure(failure, ev, derr.message);
        return 1;
    }
    step_once(g->savepoint);
    int rc = SQLITE_DONE;
    size_t j = 0;
    for (; j < h->def->count && (rc = run_stmt(&h->stmts[j], &ec)) == SQLITE_DONE; j++) {
    }
    if (rc != SQLITE_DONE) {
        char msg[400];
        snprintf(msg, sizeof msg, "statement %zu of @on %s: %s", j + 1, h->def->type,
                 sqlite3_errmsg(g->db));
        note_failure(failure, ev, msg);
        step_once(g->rollback_to);
    }
    step_once(g->release);
    free(ec.texts);
    json_decref(ec.payload);
    return rc != SQLITE_DONE;
}

/* The source's resume text, saved in the batch's transaction (a read replica's topic
 * offsets: docs/kafka.md, "Read replicas"). */
static int save_source_checkpoint(proj_gen *g, const proj_source *src, void *reader, sk_error *err)
{
    if (!src->checkpoint)
        return 0;
    size_t size = (size_t)64 * 1024;
    char *text = malloc(size);
    int rc = text ? src->checkpoint(reader, text, size) : -ENOMEM;
    if (rc == 0)
        rc = proj_gen_set_meta(g, "source_checkpoint", text);
    free(text);
    if (rc)
        return sk_error_set(err, rc, "", "%s: cannot save the source's checkpoint", g->path);
    return 0;
}

int proj_gen_apply(proj_gen *g, const proj_source *src, void *reader, const ev_registry *events,
                   uint32_t max, tr_span *span, proj_failure *failure, int64_t *last_occurred_us,
                   sk_error *err)
{
    ev_event ev;
    int got = src->next(reader, &ev, err);
    if (got <= 0)
        return got;
    int rc = exec(g, "BEGIN", err);
    uint32_t applied = 0;
    uint64_t next = g->next_position;
    while (rc == 0 && got == 1) {
        if (ev.position != next) {
            rc = sk_error_set(err, SK_ECORRUPT, "",
                              "%s: event at %" PRIu64 " where %" PRIu64 " was next", g->path,
                              ev.position, next);
            break;
        }
        const proj_gen_handler *h = handler_for(g, ev.type);
        if (h) /* the batch's span links each event the model applies (docs/tracing.md) */
            tr_span_link_event(span, &ev);
        if (h && apply_event(g, h, &ev, events, failure))
            break;
        next = ev.position + 1;
        *last_occurred_us = ev.occurred_at;
        if (++applied >= max)
            break;
        got = src->next(reader, &ev, err);
        if (got < 0)
            rc = got;
    }
    if (rc == 0 && next != g->next_position)
        rc = proj_gen_set_meta_u64(g, "next_position", next);
    if (rc == 0 && next != g->next_position)
        rc = save_source_checkpoint(g, src, reader, err);
    if (rc == 0)
        rc = exec(g, "COMMIT", err);
    if (rc != 0) {
        sqlite3_exec(g->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    g->next_position = next;
    return (int)applied;
}
