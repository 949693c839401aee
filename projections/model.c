/*
 * model.c -- reading a projection file (docs/projections.md) into its sections.
 *
 * A line starting with "-- @" opens a section: "@tables", "@on Type" or "@query name"
 * (whose directive lines "@param", "@order", "@json" and body belong to the query engine,
 * queries/, and are skipped here). Every statement is checked when the file is loaded,
 * against a scratch in-memory database holding the model's tables, and every named
 * parameter against the envelope's names and the fields of the event type's newest
 * schema: a typo fails the start, with the file, line and name, rather than binding NULL
 * to every event for ever.
 */
#include "projections/projections_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const envelope_names[] = {
    [PROJ_BIND_STREAM_ID] = "stream_id",
    [PROJ_BIND_TYPE] = "type",
    [PROJ_BIND_VERSION] = "version",
    [PROJ_BIND_POSITION] = "position",
    [PROJ_BIND_EVENT_ID] = "event_id",
    [PROJ_BIND_COMMAND_ID] = "command_id",
    [PROJ_BIND_CORRELATION_ID] = "correlation_id",
    [PROJ_BIND_OCCURRED_AT] = "occurred_at",
    [PROJ_BIND_OCCURRED_AT_US] = "occurred_at_us",
};

int proj_envelope_kind(const char *name)
{
    for (int i = 0; i < PROJ_BIND_PAYLOAD; i++)
        if (strcmp(name, envelope_names[i]) == 0)
            return i;
    return -1;
}

void proj_model_free(proj_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nhandlers; i++) {
        for (size_t j = 0; j < m->handlers[i].count; j++)
            free(m->handlers[i].sqls[j]);
        free(m->handlers[i].sqls);
        free(m->handlers[i].type);
    }
    free(m->handlers);
    free(m->tables_sql);
    free(m->name);
    free(m->path);
    free(m);
}

static char *read_file(const char *path, size_t *size_out)
{
    char *text = NULL;
    if (ev_read_file(path, &text, size_out) != 0)
        return NULL;
    return text;
}

/* Appends line to *buf (growing it). */
static int append_text(char **buf, size_t *len, const char *line, size_t n)
{
    char *b = realloc(*buf, *len + n + 2);
    if (!b)
        return -ENOMEM;
    memcpy(b + *len, line, n);
    *len += n;
    b[(*len)++] = '\n';
    b[*len] = '\0';
    *buf = b;
    return 0;
}

/* The payload field names of type's newest schema, as a JSON array of strings. */
static json_t *schema_fields(const ev_registry *events, const char *type)
{
    uint32_t id;
    ev_schema_info info;
    if (ev_registry_latest(events, type, &id) != 0 || ev_registry_find(events, id, &info) != 0)
        return NULL;
    json_t *schema = json_loads(info.schema_json, 0, NULL);
    json_t *names = json_array();
    json_t *field;
    size_t i;
    json_array_foreach(json_object_get(schema, "fields"), i, field)
    {
        json_array_append(names, json_object_get(field, "name"));
    }
    json_decref(schema);
    return names;
}

static bool has_name(const json_t *names, const char *name)
{
    json_t *v;
    size_t i;
    json_array_foreach(names, i, v)
    {
        if (strcmp(json_string_value(v), name) == 0)
            return true;
    }
    return false;
}

/* Checks the named parameters of one prepared statement. */
static int check_params(const proj_model *m, const proj_handler *h, sqlite3_stmt *stmt,
                        const json_t *fields, sk_error *err)
{
    int n = sqlite3_bind_parameter_count(stmt);
    for (int i = 1; i <= n; i++) {
        const char *p = sqlite3_bind_parameter_name(stmt, i);
        if (!p || p[0] != ':')
            return sk_error_set(err, SK_EBADINPUT, "",
                                "%s:%d: @on %s: parameters are named :name (%s)", m->path, h->line,
                                h->type, p ? p : "?");
        if (proj_envelope_kind(p + 1) < 0 && !has_name(fields, p + 1))
            return sk_error_set(err, SK_EBADINPUT, "",
                                "%s:%d: @on %s: :%s is neither an envelope name nor a field of %s",
                                m->path, h->line, h->type, p + 1, h->type);
    }
    return 0;
}

/* Splits the section's text into statements, checking each; fills h->sqls. */
static int split_handler(proj_model *m, proj_handler *h, const char *text, sqlite3 *scratch,
                         const ev_registry *events, sk_error *err)
{
    json_t *fields = schema_fields(events, h->type);
    if (!fields)
        return sk_error_set(err, SK_EBADINPUT, "", "%s:%d: @on %s: no such event type", m->path,
                            h->line, h->type);
    int rc = 0;
    const char *sql = text;
    while (rc == 0 && *sql) {
        sqlite3_stmt *stmt = NULL;
        const char *tail = NULL;
        if (sqlite3_prepare_v2(scratch, sql, -1, &stmt, &tail) != SQLITE_OK) {
            rc = sk_error_set(err, SK_EBADINPUT, "", "%s:%d: @on %s: %s", m->path, h->line, h->type,
                              sqlite3_errmsg(scratch));
            break;
        }
        if (!stmt) /* only whitespace or comments left */
            break;
        rc = check_params(m, h, stmt, fields, err);
        char **n = rc == 0 ? realloc(h->sqls, (h->count + 1) * sizeof *n) : NULL;
        if (rc == 0 && !n)
            rc = -ENOMEM;
        if (rc == 0) {
            h->sqls = n;
            h->sqls[h->count] = strndup(sql, (size_t)(tail - sql));
            rc = h->sqls[h->count++] ? 0 : -ENOMEM;
        }
        sqlite3_finalize(stmt);
        sql = tail;
    }
    json_decref(fields);
    if (rc == 0 && h->count == 0)
        rc = sk_error_set(err, SK_EBADINPUT, "", "%s:%d: @on %s has no statement", m->path, h->line,
                          h->type);
    return rc;
}

typedef enum { SEC_NONE, SEC_TABLES, SEC_ON, SEC_QUERY } section_kind;

/* Pass 1 reads the sections' texts (the tables into m->tables_sql, each @on section into
 * on_texts[i] for m->handlers[i]); pass 2 checks them against the tables. */
typedef struct sections {
    section_kind kind;
    char **on_texts;
    size_t *on_lens;
    size_t tables_len;
} sections;

static int open_handler(proj_model *m, sections *sc, const char *type, int line, sk_error *err)
{
    for (size_t i = 0; i < m->nhandlers; i++)
        if (strcmp(m->handlers[i].type, type) == 0)
            return sk_error_set(err, SK_EBADINPUT, "", "%s:%d: a second @on %s section", m->path,
                                line, type);
    proj_handler *n = realloc(m->handlers, (m->nhandlers + 1) * sizeof *n);
    if (n)
        m->handlers = n;
    char **t = n ? realloc(sc->on_texts, (m->nhandlers + 1) * sizeof *t) : NULL;
    if (t)
        sc->on_texts = t;
    size_t *l = t ? realloc(sc->on_lens, (m->nhandlers + 1) * sizeof *l) : NULL;
    if (!l)
        return -ENOMEM;
    sc->on_lens = l;
    sc->on_texts[m->nhandlers] = NULL;
    sc->on_lens[m->nhandlers] = 0;
    m->handlers[m->nhandlers++] = (proj_handler){.type = strdup(type), .line = line};
    return m->handlers[m->nhandlers - 1].type ? 0 : -ENOMEM;
}

/* A section line: "-- @word rest". */
static int section_line(proj_model *m, sections *sc, const char *line, size_t n, int lineno,
                        sk_error *err)
{
    char word[32] = "", arg[256] = "", copy[512];
    snprintf(copy, sizeof copy, "%.*s", (int)n, line);
    sscanf(copy, "-- @%31s %255s", word, arg);
    if (strcmp(word, "tables") == 0) {
        sc->kind = SEC_TABLES;
    } else if (strcmp(word, "on") == 0) {
        if (!arg[0])
            return sk_error_set(err, SK_EBADINPUT, "", "%s:%d: @on needs an event type", m->path,
                                lineno);
        sc->kind = SEC_ON;
        return open_handler(m, sc, arg, lineno, err);
    } else if (strcmp(word, "query") == 0) {
        sc->kind = SEC_QUERY;
    } else if (sc->kind != SEC_QUERY || (strcmp(word, "param") != 0 && strcmp(word, "order") != 0 &&
                                         strcmp(word, "json") != 0)) {
        return sk_error_set(err, SK_EBADINPUT, "", "%s:%d: unknown section -- @%s", m->path, lineno,
                            word);
    }
    return 0;
}

static int read_sections(proj_model *m, sections *sc, const char *text, sk_error *err)
{
    int rc = 0, lineno = 0;
    for (const char *p = text; rc == 0 && *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        lineno++;
        if (n >= 4 && strncmp(p, "-- @", 4) == 0)
            rc = section_line(m, sc, p, n, lineno, err);
        else if (sc->kind == SEC_TABLES)
            rc = append_text(&m->tables_sql, &sc->tables_len, p, n);
        else if (sc->kind == SEC_ON)
            rc = append_text(&sc->on_texts[m->nhandlers - 1], &sc->on_lens[m->nhandlers - 1], p, n);
        p = end ? end + 1 : p + n;
    }
    return rc;
}

static int check_sections(proj_model *m, sections *sc, sqlite3 *scratch, const ev_registry *events,
                          sk_error *err)
{
    if (!m->tables_sql)
        return sk_error_set(err, SK_EBADINPUT, "", "%s: no @tables section", m->path);
    char *msg = NULL;
    if (sqlite3_exec(scratch, m->tables_sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc =
            sk_error_set(err, SK_EBADINPUT, "", "%s: @tables: %s", m->path, msg ? msg : "error");
        sqlite3_free(msg);
        return rc;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->nhandlers; i++)
        rc = split_handler(m, &m->handlers[i], sc->on_texts[i] ? sc->on_texts[i] : "", scratch,
                           events, err);
    return rc;
}

int proj_model_load(const char *path, const ev_registry *events, proj_model **out, sk_error *err)
{
    size_t size = 0;
    char *text = read_file(path, &size);
    if (!text)
        return sk_error_set(err, -ENOENT, "", "cannot read projection file %s", path);
    proj_model *m = calloc(1, sizeof *m);
    if (!m) {
        free(text);
        return -ENOMEM;
    }
    m->path = strdup(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t blen = strlen(base);
    m->name = strndup(base, blen > 4 && strcmp(base + blen - 4, ".sql") == 0 ? blen - 4 : blen);
    m->hash = ev_hash_add(EV_HASH_INIT, text, size);
    sqlite3 *scratch = NULL;
    int rc = m->path && m->name ? 0 : -ENOMEM;
    if (rc == 0 && sqlite3_open(":memory:", &scratch) != SQLITE_OK)
        rc = -ENOMEM;
    sections sc = {.kind = SEC_NONE};
    if (rc == 0)
        rc = read_sections(m, &sc, text, err);
    if (rc == 0)
        rc = check_sections(m, &sc, scratch, events, err);
    for (size_t i = 0; i < m->nhandlers && sc.on_texts; i++)
        free(sc.on_texts[i]);
    free(sc.on_texts);
    free(sc.on_lens);
    sqlite3_close(scratch);
    free(text);
    if (rc != 0) {
        proj_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
