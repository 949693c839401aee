/*
 * declare.c -- reads the `-- @query` sections of the model files and checks each one
 * before the service answers a single request, so a typo in a model fails at start-up
 * naming the file and the query, never as a 500 on some later call.
 *
 * A section line is a line that starts with `-- @` (docs/projections.md). Inside a
 * `-- @query NAME` section, directive lines come first:
 *   -- @param NAME text|integer required|optional [in(a,b,c)]
 *   -- @order COL [ASC|DESC][, COL [ASC|DESC]...]    (exactly one; ASC when omitted)
 *   -- @json COL[, COL...]                          (at most one)
 * then the SELECT, up to the next section line or the end of the file. `@tables` sections
 * are gathered to build the model's schema in an in-memory database; `@on` sections are
 * the projection's and skipped here.
 *
 * Checks, each a load error naming the file and the query: a query named twice (in any
 * file); a directive after the SELECT began; an unknown section or directive; a malformed
 * directive; a parameter used in the body but not declared, or declared but not used; a
 * `?` or `@x`/`$x` parameter (only `:name` binds); a body that does not prepare against
 * the model's tables, holds more than one statement, or does anything but read (an
 * authorizer that allows only SELECT, reading and functions, and sqlite3_stmt_readonly);
 * duplicate result column names; an @order or @json column that is not a result column.
 *
 * What the engine cannot check and the model's author guarantees: the @order columns are
 * NOT NULL and together unique over the rows the body returns (a primary key last does
 * it). Keyset pagination returns each row exactly once only under that condition; at run
 * time a NULL key is an error, not a skipped row.
 */
#include "queries/queries_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

static const char *const reserved_params[] = {"limit", "cursor", "min_position", "timeout_ms"};

int qry_authorize(void *ctx, int action, const char *a, const char *b, const char *c, const char *d)
{
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_TRANSACTION: /* BEGIN/COMMIT of the engine's own read transaction */
        return ctx ? SQLITE_OK : SQLITE_DENY;
    default:
        return SQLITE_DENY;
    }
}

static int buf_printf(ev_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_printf(ev_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || ev_buf_reserve(b, (size_t)n + 1) != 0)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->size, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->size += (size_t)n;
    return 0;
}

/* The buffer's bytes as a malloc'd C string; the buffer is left empty. */
static char *buf_take(ev_buf *b)
{
    if (ev_buf_reserve(b, 1) != 0)
        return NULL;
    b->data[b->size] = 0;
    char *s = (char *)b->data;
    memset(b, 0, sizeof *b);
    return s;
}

static bool is_identifier(const char *s, size_t len)
{
    if (len == 0 || len >= QRY_NAME_MAX || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* Trims spaces at both ends of [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
    while (*len > 0 && isspace((unsigned char)**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

/* Splits off the next whitespace-separated word of [*s, end). */
static bool next_word(const char **s, const char *end, const char **word, size_t *len)
{
    while (*s < end && isspace((unsigned char)**s))
        (*s)++;
    if (*s == end)
        return false;
    *word = *s;
    while (*s < end && !isspace((unsigned char)**s))
        (*s)++;
    *len = (size_t)(*s - *word);
    return true;
}

static bool word_is(const char *w, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(w, lit, len) == 0;
}

typedef struct parser {
    const char *file;
    int line;
    qry_decl *d; /* the query being read, or NULL */
    sk_error *err;
} parser;

static int fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser *p, const char *fmt, ...)
{
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p->d)
        return sk_error_set(p->err, SK_ESCHEMA, p->d->name, "%s:%d: query '%s': %s", p->file,
                            p->line, p->d->name, what);
    return sk_error_set(p->err, SK_ESCHEMA, "", "%s:%d: %s", p->file, p->line, what);
}

static int parse_param(parser *p, const char *s, const char *end)
{
    qry_decl *d = p->d;
    if (d->param_count == QRY_PARAMS_MAX)
        return fail(p, "more than %d parameters", QRY_PARAMS_MAX);
    qry_param_decl *pd = &d->params[d->param_count];
    const char *w;
    size_t len;
    if (!next_word(&s, end, &w, &len) || !is_identifier(w, len))
        return fail(p, "@param needs a name (letters, digits, _; at most %d bytes)",
                    QRY_NAME_MAX - 1);
    memcpy(pd->name, w, len);
    pd->name[len] = 0;
    for (size_t i = 0; i < sizeof reserved_params / sizeof *reserved_params; i++)
        if (strcmp(pd->name, reserved_params[i]) == 0)
            return fail(p, "parameter '%s' is reserved", pd->name);
    if (strncmp(pd->name, QRY_RESERVED_PREFIX, strlen(QRY_RESERVED_PREFIX)) == 0)
        return fail(p, "parameter names starting with %s are reserved", QRY_RESERVED_PREFIX);
    for (size_t i = 0; i < d->param_count; i++)
        if (strcmp(d->params[i].name, pd->name) == 0)
            return fail(p, "parameter '%s' is declared twice", pd->name);
    if (!next_word(&s, end, &w, &len))
        return fail(p, "@param %s needs a type: text or integer", pd->name);
    if (word_is(w, len, "text"))
        pd->type = QRY_TEXT;
    else if (word_is(w, len, "integer"))
        pd->type = QRY_INTEGER;
    else
        return fail(p, "@param %s: type '%.*s' is not text or integer", pd->name, (int)len, w);
    if (!next_word(&s, end, &w, &len))
        return fail(p, "@param %s needs required or optional", pd->name);
    if (word_is(w, len, "required"))
        pd->required = true;
    else if (word_is(w, len, "optional"))
        pd->required = false;
    else
        return fail(p, "@param %s: '%.*s' is not required or optional", pd->name, (int)len, w);
    size_t rest = (size_t)(end - s);
    trim(&s, &rest);
    d->param_count++; /* from here on freed with the declaration */
    if (rest == 0)
        return 0;
    if (rest < 4 || strncasecmp(s, "in(", 3) != 0 || s[rest - 1] != ')')
        return fail(p, "@param %s: unexpected '%.*s' (only in(a,b,...) may follow)", pd->name,
                    (int)rest, s);
    const char *v = s + 3, *vend = s + rest - 1;
    while (v <= vend) {
        const char *comma = memchr(v, ',', (size_t)(vend - v));
        const char *stop = comma ? comma : vend;
        size_t vlen = (size_t)(stop - v);
        trim(&v, &vlen);
        if (vlen == 0)
            return fail(p, "@param %s: empty value in in(...)", pd->name);
        if (pd->in_count == QRY_IN_MAX)
            return fail(p, "@param %s: more than %d values in in(...)", pd->name, QRY_IN_MAX);
        char *copy = strndup(v, vlen);
        if (!copy)
            return -ENOMEM;
        pd->in[pd->in_count++] = copy;
        if (pd->type == QRY_INTEGER) {
            char *tail;
            errno = 0;
            (void)strtoll(copy, &tail, 10);
            if (errno || *tail || !*copy)
                return fail(p, "@param %s: '%s' in in(...) is not an integer", pd->name, copy);
        }
        v = stop + 1;
    }
    return 0;
}

static int parse_order(parser *p, const char *s, const char *end)
{
    qry_decl *d = p->d;
    if (d->order_count)
        return fail(p, "@order appears twice");
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        const char *w, *item = s;
        size_t len;
        if (!next_word(&item, stop, &w, &len) || !is_identifier(w, len))
            return fail(p, "@order needs column names (COL ASC|DESC, ...)");
        if (d->order_count == QRY_ORDER_MAX)
            return fail(p, "more than %d @order columns", QRY_ORDER_MAX);
        qry_order_key *k = &d->order[d->order_count];
        memcpy(k->column, w, len);
        k->column[len] = 0;
        k->desc = false;
        if (next_word(&item, stop, &w, &len)) {
            if (word_is(w, len, "DESC"))
                k->desc = true;
            else if (!word_is(w, len, "ASC"))
                return fail(p, "@order %s: '%.*s' is not ASC or DESC", k->column, (int)len, w);
            if (next_word(&item, stop, &w, &len))
                return fail(p, "@order %s: unexpected '%.*s'", k->column, (int)len, w);
        }
        for (size_t i = 0; i < d->order_count; i++)
            if (strcmp(d->order[i].column, k->column) == 0)
                return fail(p, "@order names %s twice", k->column);
        d->order_count++;
        s = comma ? comma + 1 : end;
    }
    if (!d->order_count)
        return fail(p, "@order needs at least one column");
    return 0;
}

/* @json columns are kept by name until the body's columns are known (check_query). */
static int parse_json(parser *p, const char *s, const char *end, ev_buf *json_cols)
{
    if (json_cols->size)
        return fail(p, "@json appears twice");
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        size_t len = (size_t)(stop - s);
        const char *w = s;
        trim(&w, &len);
        if (!is_identifier(w, len))
            return fail(p, "@json needs column names (COL, COL...)");
        if (ev_buf_append(json_cols, w, len) != 0 || ev_buf_append(json_cols, "", 1) != 0)
            return -ENOMEM;
        s = comma ? comma + 1 : end;
    }
    if (!json_cols->size)
        return fail(p, "@json needs at least one column");
    return 0;
}

/* Wraps the body for keyset pagination: sorted by the @order columns, after the cursor's
 * key for a next page. The condition is nested so mixed directions work:
 *   k0 >= :c0 AND (k0 > :c0 OR (k0 = :c0 AND (k1 < :c1 OR (k1 = :c1 AND k2 > :c2))))
 * (>= / > for ASC, <= / < for DESC); the leading bound lets SQLite use an index range. */
static int wrap_body(qry_decl *d)
{
    ev_buf order = {0}, cond = {0}, sql = {0};
    int rc = 0;
    for (size_t i = 0; i < d->order_count && !rc; i++)
        rc = buf_printf(&order, "%s\"%s\" %s", i ? ", " : "", d->order[i].column,
                        d->order[i].desc ? "DESC" : "ASC");
    const qry_order_key *k0 = &d->order[0];
    if (!rc && d->order_count > 1)
        rc = buf_printf(&cond, "\"%s\" %s :" QRY_RESERVED_PREFIX "k0 AND ", k0->column,
                        k0->desc ? "<=" : ">=");
    for (size_t i = 0; i < d->order_count && !rc; i++) {
        const qry_order_key *k = &d->order[i];
        const char *op = k->desc ? "<" : ">";
        if (i + 1 < d->order_count)
            rc = buf_printf(&cond,
                            "(\"%s\" %s :" QRY_RESERVED_PREFIX
                            "k%zu OR (\"%s\" = :" QRY_RESERVED_PREFIX "k%zu AND ",
                            k->column, op, i, k->column, i);
        else
            rc = buf_printf(&cond, "\"%s\" %s :" QRY_RESERVED_PREFIX "k%zu", k->column, op, i);
    }
    for (size_t i = 0; i + 1 < d->order_count && !rc; i++)
        rc = buf_printf(&cond, "))");
    if (!rc)
        rc = buf_printf(&sql,
                        "SELECT * FROM (\n%s\n) ORDER BY %s LIMIT :" QRY_RESERVED_PREFIX "limit",
                        d->body, (char *)order.data);
    if (!rc && !(d->sql_first = buf_take(&sql)))
        rc = -ENOMEM;
    if (!rc)
        rc = buf_printf(
            &sql, "SELECT * FROM (\n%s\n) WHERE %s ORDER BY %s LIMIT :" QRY_RESERVED_PREFIX "limit",
            d->body, (char *)cond.data, (char *)order.data);
    if (!rc && !(d->sql_next = buf_take(&sql)))
        rc = -ENOMEM;
    ev_buf_free(&order);
    ev_buf_free(&cond);
    ev_buf_free(&sql);
    return rc;
}

static int check_param_names(parser *p, sqlite3_stmt *st)
{
    qry_decl *d = p->d;
    bool used[QRY_PARAMS_MAX] = {false};
    int n = sqlite3_bind_parameter_count(st);
    for (int i = 1; i <= n; i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        if (!name)
            return fail(p, "the body uses a positional parameter (?); use :name");
        if (name[0] != ':')
            return fail(p, "the body uses parameter %s; only :name parameters bind", name);
        size_t j = 0;
        while (j < d->param_count && strcmp(d->params[j].name, name + 1) != 0)
            j++;
        if (j == d->param_count)
            return fail(p, "the body uses %s, which no @param declares", name);
        used[j] = true;
    }
    for (size_t j = 0; j < d->param_count; j++)
        if (!used[j])
            return fail(p, "parameter '%s' is declared but the body never uses :%s",
                        d->params[j].name, d->params[j].name);
    return 0;
}

static int find_column(const qry_decl *d, const char *name)
{
    for (size_t i = 0; i < d->column_count; i++)
        if (strcmp(d->columns[i], name) == 0)
            return (int)i;
    return -1;
}

static int prepare_checked(parser *p, sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    const char *tail = NULL;
    int src = sqlite3_prepare_v3(db, sql, -1, 0, st, &tail);
    if (src == SQLITE_AUTH)
        return fail(p, "the body may only read (one SELECT): %s", sqlite3_errmsg(db));
    if (src != SQLITE_OK)
        return fail(p, "the body does not prepare against the model's tables: %s",
                    sqlite3_errmsg(db));
    if (!*st)
        return fail(p, "the body has no SELECT");
    sqlite3_stmt *more = NULL;
    src = sqlite3_prepare_v3(db, tail, -1, 0, &more, NULL);
    sqlite3_finalize(more);
    if (src != SQLITE_OK || more)
        return fail(p, "the body holds more than one statement");
    if (!sqlite3_stmt_readonly(*st) || sqlite3_column_count(*st) == 0)
        return fail(p, "the body may only read (one SELECT)");
    return 0;
}

/* Prepares the body (and its wrapped forms) in db, which holds the model's tables, and
 * fills in what the declaration needs from it. */
static int check_query(parser *p, sqlite3 *db, const ev_buf *json_cols)
{
    qry_decl *d = p->d;
    if (!d->order_count)
        return fail(p, "no @order (pagination needs a unique, NOT NULL sort key)");
    sqlite3_stmt *st = NULL;
    int rc = prepare_checked(p, db, d->body, &st);
    if (!rc)
        rc = check_param_names(p, st);
    int ncol = st ? sqlite3_column_count(st) : 0;
    if (!rc && ncol > QRY_COLUMNS_MAX)
        rc = fail(p, "more than %d result columns", QRY_COLUMNS_MAX);
    for (int i = 0; !rc && i < ncol; i++) {
        const char *name = sqlite3_column_name(st, i);
        if (name && find_column(d, name) >= 0)
            rc = fail(p, "two result columns are named '%s' (alias one with AS)", name);
        else if (!name || !(d->columns[d->column_count] = strdup(name)))
            rc = -ENOMEM;
        else
            d->column_count++;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; !rc && i < d->order_count; i++) {
        d->order[i].column_index = find_column(d, d->order[i].column);
        if (d->order[i].column_index < 0)
            rc = fail(p, "@order column '%s' is not a result column", d->order[i].column);
    }
    for (size_t off = 0; !rc && off < json_cols->size;) {
        const char *name = (const char *)json_cols->data + off;
        int col = find_column(d, name);
        if (col < 0)
            rc = fail(p, "@json column '%s' is not a result column", name);
        else
            d->column_json[col] = true;
        off += strlen(name) + 1;
    }
    if (!rc)
        rc = wrap_body(d);
    const char *wrapped[2] = {d->sql_first, d->sql_next};
    for (int i = 0; !rc && i < 2; i++) {
        st = NULL;
        rc = prepare_checked(p, db, wrapped[i], &st);
        sqlite3_finalize(st);
    }
    return rc;
}

static void decl_free(qry_decl *d)
{
    free(d->file);
    free(d->body);
    free(d->sql_first);
    free(d->sql_next);
    for (size_t i = 0; i < d->param_count; i++)
        for (size_t j = 0; j < d->params[i].in_count; j++)
            free(d->params[i].in[j]);
    for (size_t i = 0; i < d->column_count; i++)
        free(d->columns[i]);
    memset(d, 0, sizeof *d);
}

void qry_decls_free(qry_decl *decls, size_t count)
{
    if (!decls)
        return;
    for (size_t i = 0; i < count; i++)
        decl_free(&decls[i]);
    free(decls);
}

/* The model's name: the file's base name without .sql. */
static int model_name(parser *p, char out[QRY_NAME_MAX])
{
    const char *base = strrchr(p->file, '/');
    base = base ? base + 1 : p->file;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".sql") == 0)
        len -= 4;
    if (!is_identifier(base, len))
        return fail(p, "the model's file name must be NAME.sql (letters, digits, _)");
    memcpy(out, base, len);
    out[len] = 0;
    return 0;
}

/* One query section as read, before it is checked. */
typedef struct pending {
    int line;
    ev_buf json_cols; /* NUL-separated names */
} pending;

static int end_query(parser *p, ev_buf *body)
{
    /* Drop trailing space and one trailing ';': the body is wrapped in a subquery. */
    while (body->size && isspace(body->data[body->size - 1]))
        body->size--;
    if (body->size && body->data[body->size - 1] == ';')
        body->size--;
    if (!(p->d->body = buf_take(body)))
        return -ENOMEM;
    return 0;
}

int qry_decls_parse(const char *file, const char *text, qry_decl *decls, size_t *count,
                    sk_error *err)
{
    enum { NONE, TABLES, ON, QUERY } section = NONE;
    parser p = {file, 0, NULL, err};
    ev_buf tables = {0}, body = {0};
    pending pend[QRY_QUERIES_MAX];
    size_t first = *count;
    bool body_started = false;
    sqlite3 *db = NULL;
    int rc = 0;
    memset(pend, 0, sizeof pend);
    for (const char *s = text; *s && !rc;) {
        p.line++;
        const char *nl = strchr(s, '\n');
        const char *end = nl ? nl : s + strlen(s);
        const char *next = nl ? nl + 1 : end;
        size_t len = (size_t)(end - s);
        if (len && s[len - 1] == '\r')
            len--;
        if (len >= 4 && memcmp(s, "-- @", 4) == 0) {
            const char *w = NULL, *cur = s + 3, *lend = s + len;
            size_t wl = 0;
            next_word(&cur, lend, &w, &wl);
            bool directive =
                word_is(w, wl, "@param") || word_is(w, wl, "@order") || word_is(w, wl, "@json");
            if (directive && section == QUERY) {
                pending *pq = &pend[*count - 1];
                if (body_started)
                    rc =
                        fail(&p, "%.*s after the SELECT began (directives come first)", (int)wl, w);
                else if (word_is(w, wl, "@param"))
                    rc = parse_param(&p, cur, lend);
                else if (word_is(w, wl, "@order"))
                    rc = parse_order(&p, cur, lend);
                else
                    rc = parse_json(&p, cur, lend, &pq->json_cols);
                s = next;
                continue;
            }
            if (section == QUERY && !rc)
                rc = end_query(&p, &body);
            p.d = NULL;
            if (rc)
                break;
            if (directive) {
                rc = fail(&p, "%.*s outside a @query section", (int)wl, w);
            } else if (word_is(w, wl, "@tables")) {
                section = TABLES;
            } else if (word_is(w, wl, "@on")) {
                section = ON;
            } else if (word_is(w, wl, "@query")) {
                const char *name;
                size_t nl_;
                if (!next_word(&cur, lend, &name, &nl_) || !is_identifier(name, nl_))
                    rc = fail(&p, "@query needs a name (letters, digits, _; at most %d bytes)",
                              QRY_NAME_MAX - 1);
                else if (next_word(&cur, lend, &w, &wl))
                    rc = fail(&p, "@query %.*s: unexpected '%.*s'", (int)nl_, name, (int)wl, w);
                else if (*count == QRY_QUERIES_MAX)
                    rc = fail(&p, "more than %d queries", QRY_QUERIES_MAX);
                for (size_t i = 0; !rc && i < *count; i++)
                    if (strlen(decls[i].name) == nl_ && memcmp(decls[i].name, name, nl_) == 0)
                        rc = fail(&p, "query '%.*s' is declared twice (also %s:%d)", (int)nl_, name,
                                  decls[i].file, decls[i].line);
                if (!rc) {
                    qry_decl *d = &decls[(*count)++];
                    memset(d, 0, sizeof *d);
                    memcpy(d->name, name, nl_);
                    d->line = p.line;
                    pend[*count - 1].line = p.line;
                    p.d = d;
                    if (!(d->file = strdup(file)))
                        rc = -ENOMEM;
                    if (!rc)
                        rc = model_name(&p, d->model);
                    section = QUERY;
                    body_started = false;
                }
            } else {
                rc = fail(&p, "unknown section '%.*s' (@tables, @on, @query)", (int)wl, w);
            }
        } else if (section == TABLES) {
            if (ev_buf_append(&tables, s, (size_t)(next - s)) != 0)
                rc = -ENOMEM;
        } else if (section == QUERY) {
            size_t tl = len;
            const char *t = s;
            trim(&t, &tl);
            if (tl && !(tl >= 2 && t[0] == '-' && t[1] == '-'))
                body_started = true;
            if (ev_buf_append(&body, s, (size_t)(next - s)) != 0)
                rc = -ENOMEM;
        }
        s = next;
    }
    if (!rc && section == QUERY)
        rc = end_query(&p, &body);
    p.d = NULL;
    if (!rc && *count > first) {
        /* Every query of the file is checked against the file's tables. */
        p.line = 0;
        if (ev_buf_append(&tables, "", 1) != 0)
            rc = -ENOMEM;
        else if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
            rc = sk_error_set(err, -ENOMEM, "", "cannot open an in-memory SQLite database");
        else if (sqlite3_exec(db, (char *)tables.data, NULL, NULL, NULL) != SQLITE_OK)
            rc = sk_error_set(err, SK_ESCHEMA, "", "%s: its @tables do not run: %s", file,
                              sqlite3_errmsg(db));
        if (!rc) {
            sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
            sqlite3_set_authorizer(db, qry_authorize, NULL);
        }
        for (size_t i = first; !rc && i < *count; i++) {
            p.d = &decls[i];
            p.line = pend[i].line;
            rc = check_query(&p, db, &pend[i].json_cols);
        }
    }
    if (rc == -ENOMEM)
        sk_error_set(err, rc, "", "%s: out of memory", file);
    for (size_t i = first; i < *count; i++)
        ev_buf_free(&pend[i].json_cols);
    if (rc) {
        for (size_t i = first; i < *count; i++)
            decl_free(&decls[i]);
        *count = first;
    }
    sqlite3_close(db);
    ev_buf_free(&tables);
    ev_buf_free(&body);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int qry_decls_load(const char *dir, qry_decl **out, size_t *count_out, sk_error *err)
{
    QRY_ASSERT(dir && out && count_out);
    DIR *dh = opendir(dir);
    if (!dh)
        return sk_error_set(err, -errno, "", "%s: cannot open the models directory: %s", dir,
                            strerror(errno));
    char **names = NULL;
    size_t name_count = 0, name_cap = 0;
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(dh))) {
        size_t len = strlen(de->d_name);
        if (len <= 4 || strcmp(de->d_name + len - 4, ".sql") != 0 || de->d_name[0] == '.')
            continue;
        if (name_count == name_cap) {
            size_t cap = name_cap ? name_cap * 2 : 16;
            char **n = realloc(names, cap * sizeof *n);
            if (!n) {
                rc = -ENOMEM;
                break;
            }
            names = n;
            name_cap = cap;
        }
        if (!(names[name_count] = strdup(de->d_name)))
            rc = -ENOMEM;
        else
            name_count++;
    }
    closedir(dh);
    if (name_count)
        qsort(names, name_count, sizeof *names, cmp_names);
    qry_decl *decls = rc ? NULL : calloc(QRY_QUERIES_MAX, sizeof *decls);
    if (!rc && !decls)
        rc = -ENOMEM;
    size_t count = 0;
    for (size_t i = 0; !rc && i < name_count; i++) {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (n < 0 || (size_t)n >= sizeof path) {
            rc = sk_error_set(err, -ENAMETOOLONG, "", "%s/%s: path too long", dir, names[i]);
            break;
        }
        char *text = NULL;
        size_t size = 0;
        rc = ev_read_file(path, &text, &size);
        if (rc) {
            sk_error_set(err, rc, "", "%s: cannot read: %s", path, sk_strerror(rc));
            break;
        }
        if (strlen(text) != size)
            rc = sk_error_set(err, SK_ESCHEMA, "", "%s: holds a NUL byte", path);
        else
            rc = qry_decls_parse(path, text, decls, &count, err);
        free(text);
    }
    if (rc == -ENOMEM)
        sk_error_set(err, rc, "", "out of memory loading %s", dir);
    for (size_t i = 0; i < name_count; i++)
        free(names[i]);
    free(names);
    if (rc) {
        qry_decls_free(decls, count);
        return rc;
    }
    *out = decls;
    *count_out = count;
    return 0;
}
