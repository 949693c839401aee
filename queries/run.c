/*
 * run.c -- one call of a named query: check the parameters, wait for min_position if
 * asked (read-your-writes), then in one read transaction on a read-only connection read
 * how far the model has got and one page of rows, sorted by the declared @order and
 * starting after the cursor's key (keyset pagination: declare.c builds the SQL).
 *
 * Why keyset and not OFFSET: a page starts strictly after the last row of the page
 * before, by value, so rows added or removed between pages neither shift a row into a
 * second page nor push one out of sight; every row that existed before the first page
 * and still exists is returned exactly once, and no row twice (the @order key is unique).
 */
#include "queries/queries_int.h"

#include <errno.h>
#include <string.h>

static int sqlite_error(sqlite3 *db, const qry_decl *d, sk_error *err)
{
    int ec = sqlite3_errcode(db), rc;
    switch (ec) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        rc = SK_EBUSY;
        break;
    case SQLITE_NOMEM:
        rc = -ENOMEM;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        rc = SK_ECORRUPT;
        break;
    default:
        rc = -EIO;
    }
    return sk_error_set(err, rc, "", "query '%s' on read model '%s': %s", d->name, d->model,
                        sqlite3_errmsg(db));
}

/* One column of the current row as JSON; NULL (with err set) on failure. */
static json_t *column_json(sqlite3_stmt *st, const qry_decl *d, int col, sk_error *err)
{
    json_t *v = NULL;
    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER:
        v = json_integer(sqlite3_column_int64(st, col));
        break;
    case SQLITE_FLOAT:
        v = json_real(sqlite3_column_double(st, col));
        if (!v) /* an infinity has no JSON form */
            v = json_null();
        break;
    case SQLITE_NULL:
        v = json_null();
        break;
    case SQLITE_TEXT: {
        const char *text = (const char *)sqlite3_column_text(st, col);
        size_t len = (size_t)sqlite3_column_bytes(st, col);
        if (d->column_json[col]) {
            v = json_loadb(text, len, JSON_DECODE_ANY, NULL);
            if (!v)
                sk_error_set(err, SK_ECORRUPT, "",
                             "query '%s': @json column '%s' holds text that is not JSON", d->name,
                             d->columns[col]);
        } else {
            v = json_stringn(text, len);
            if (!v)
                sk_error_set(err, SK_ECORRUPT, "",
                             "query '%s': column '%s' holds text that is not UTF-8", d->name,
                             d->columns[col]);
        }
        return v;
    }
    default:
        sk_error_set(err, SK_ESCHEMA, "",
                     "query '%s': column '%s' is a BLOB, which JSON cannot carry (select "
                     "hex(...) or a text form)",
                     d->name, d->columns[col]);
        return NULL;
    }
    if (!v)
        sk_error_set(err, -ENOMEM, "", "out of memory");
    return v;
}

static json_t *row_json(sqlite3_stmt *st, const qry_decl *d, sk_error *err)
{
    json_t *obj = json_object();
    if (!obj) {
        sk_error_set(err, -ENOMEM, "", "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < d->column_count; i++) {
        json_t *v = column_json(st, d, (int)i, err);
        if (!v || json_object_set_new(obj, d->columns[i], v) != 0) {
            if (v)
                sk_error_set(err, -ENOMEM, "", "out of memory");
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* The @order values of the current row, for the next cursor. */
static json_t *row_keys(sqlite3_stmt *st, const qry_decl *d, sk_error *err)
{
    json_t *keys = json_array();
    for (size_t i = 0; keys && i < d->order_count; i++) {
        int col = d->order[i].column_index, type = sqlite3_column_type(st, col);
        json_t *v = NULL;
        if (type == SQLITE_INTEGER)
            v = json_integer(sqlite3_column_int64(st, col));
        else if (type == SQLITE_FLOAT)
            v = json_real(sqlite3_column_double(st, col));
        else if (type == SQLITE_TEXT)
            v = json_stringn((const char *)sqlite3_column_text(st, col),
                             (size_t)sqlite3_column_bytes(st, col));
        if (!v || json_array_append_new(keys, v) != 0) {
            sk_error_set(err, SK_ESCHEMA, "",
                         "query '%s': @order column '%s' is %s in a row; the model must keep "
                         "its @order columns NOT NULL text or numbers",
                         d->name, d->order[i].column,
                         type == SQLITE_NULL ? "NULL" : "not text or a number");
            json_decref(keys);
            return NULL;
        }
    }
    return keys;
}

static int bind_all(sqlite3_stmt *st, const qry_decl *d, const qry_args *a, json_t *after)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < d->param_count; i++) {
        char name[QRY_NAME_MAX + 1];
        snprintf(name, sizeof name, ":%s", d->params[i].name);
        int idx = sqlite3_bind_parameter_index(st, name);
        QRY_ASSERT(idx > 0); /* declare.c checked that the body uses it */
        if (!a->values[i])
            rc = sqlite3_bind_null(st, idx);
        else if (d->params[i].type == QRY_INTEGER)
            rc = sqlite3_bind_int64(st, idx, a->ints[i]);
        else
            rc = sqlite3_bind_text(st, idx, a->values[i], -1, SQLITE_STATIC);
    }
    int idx = sqlite3_bind_parameter_index(st, ":" QRY_RESERVED_PREFIX "limit");
    QRY_ASSERT(idx > 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, idx, a->limit + 1); /* one more says whether a page follows */
    for (size_t i = 0; after && rc == SQLITE_OK && i < d->order_count; i++) {
        char name[32];
        snprintf(name, sizeof name, ":" QRY_RESERVED_PREFIX "k%zu", i);
        idx = sqlite3_bind_parameter_index(st, name);
        QRY_ASSERT(idx > 0);
        json_t *v = json_array_get(after, i);
        if (json_is_integer(v))
            rc = sqlite3_bind_int64(st, idx, json_integer_value(v));
        else if (json_is_real(v))
            rc = sqlite3_bind_double(st, idx, json_real_value(v));
        else
            rc = sqlite3_bind_text(st, idx, json_string_value(v), (int)json_string_length(v),
                                   SQLITE_STATIC);
    }
    return rc;
}

/* Reads how far the model got and one page, in one read transaction on c. */
static int read_page(const qry_engine *q, const qry_decl *d, qry_conn *c, const qry_args *a,
                     const char *fingerprint, json_t *after, json_t **answer_out, qry_error *qerr)
{
    sk_error *err = &qerr->err;
    size_t slot = 2 * (size_t)(d - q->decls) + (after ? 1 : 0);
    if (!c->stmts[slot] &&
        sqlite3_prepare_v3(c->db, after ? d->sql_next : d->sql_first, -1, SQLITE_PREPARE_PERSISTENT,
                           &c->stmts[slot], NULL) != SQLITE_OK)
        return sqlite_error(c->db, d, err);
    sqlite3_stmt *st = c->stmts[slot];
    json_t *items = NULL, *keys = NULL;
    int rc = 0, src = sqlite3_step(c->begin);
    sqlite3_reset(c->begin);
    if (src != SQLITE_DONE)
        return sqlite_error(c->db, d, err);

    int64_t position = -1;
    src = sqlite3_step(c->position);
    if (src == SQLITE_ROW && sqlite3_column_type(c->position, 0) == SQLITE_INTEGER)
        position = sqlite3_column_int64(c->position, 0) - 1;
    else if (src == SQLITE_ROW || src == SQLITE_DONE)
        rc = sk_error_set(err, SK_ECORRUPT, "", "read model '%s' has no integer next_position",
                          d->model);
    else
        rc = sqlite_error(c->db, d, err);
    sqlite3_reset(c->position);
    if (!rc && a->has_min_position && position < (int64_t)a->min_position) {
        /* wait_applied said yes, but this database is behind (a swap in between): the
         * caller's write is not visible here, so it must not be answered as if it were */
        qerr->position = position;
        rc = sk_error_set(err, -ETIMEDOUT, "",
                          "read model '%s' has applied up to position %lld, not %llu yet", d->model,
                          (long long)position, (unsigned long long)a->min_position);
    }

    if (!rc && bind_all(st, d, a, after) != SQLITE_OK)
        rc = sqlite_error(c->db, d, err);
    if (!rc && !(items = json_array()))
        rc = sk_error_set(err, -ENOMEM, "", "out of memory");
    bool more = false;
    int rows = 0;
    while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (rows == a->limit) {
            more = true;
            break;
        }
        json_t *row = row_json(st, d, err);
        if (!row || json_array_append_new(items, row) != 0) {
            rc = row ? sk_error_set(err, -ENOMEM, "", "out of memory") : err->code;
            break;
        }
        if (++rows == a->limit && !(keys = row_keys(st, d, err)))
            rc = err->code;
    }
    if (!rc && !more && src != SQLITE_DONE)
        rc = sqlite_error(c->db, d, err);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (!rc) {
        src = sqlite3_step(c->commit);
        sqlite3_reset(c->commit);
        if (src != SQLITE_DONE)
            rc = sqlite_error(c->db, d, err);
    }
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);

    char *cursor = NULL;
    if (!rc && more && qry_cursor_encode(q->secret, d->name, fingerprint, keys, &cursor) != 0)
        rc = sk_error_set(err, -ENOMEM, "", "out of memory");
    json_t *answer = NULL;
    if (!rc) {
        answer =
            json_pack("{s:O, s:o, s:I}", "items", items, "next_cursor",
                      cursor ? json_string(cursor) : json_null(), "position", (json_int_t)position);
        if (!answer)
            rc = sk_error_set(err, -ENOMEM, "", "out of memory");
    }
    free(cursor);
    json_decref(keys);
    json_decref(items);
    if (!rc)
        *answer_out = answer;
    return rc;
}

static const qry_decl *find_query(const qry_engine *q, const char *name)
{
    for (size_t i = 0; i < q->decl_count; i++)
        if (strcmp(q->decls[i].name, name) == 0)
            return &q->decls[i];
    return NULL;
}

int qry_run(qry_engine *q, const char *name, const qry_param *params, size_t nparams,
            json_t **answer_out, qry_error *qerr)
{
    QRY_ASSERT(q && name && answer_out);
    qry_error local;
    if (!qerr)
        qerr = &local;
    sk_error_clear(&qerr->err);
    qerr->position = -1;
    sk_error *err = &qerr->err;

    const qry_decl *d = find_query(q, name);
    if (!d)
        return sk_error_set(err, SK_ENOTFOUND, "", "no query is named '%.200s'", name);
    qry_args a;
    int rc = qry_args_parse(d, params, nparams, &a, err);
    if (rc)
        return rc;
    char fingerprint[QRY_FINGERPRINT_HEX + 1];
    qry_args_fingerprint(d, &a, fingerprint);
    json_t *after = NULL;
    if (a.cursor && (rc = qry_cursor_decode(q->secret, a.cursor, d->name, fingerprint,
                                            d->order_count, &after, err)) != 0)
        return rc;

    if (a.has_min_position) {
        int64_t applied = -1;
        rc = q->src.wait_applied(q->src.ctx, d->model, a.min_position, a.timeout_ms, &applied);
        if (rc == -ETIMEDOUT) {
            qerr->position = applied;
            rc = sk_error_set(err, rc, "",
                              "read model '%s' has applied up to position %lld; position %llu "
                              "was not applied within %d ms",
                              d->model, (long long)applied, (unsigned long long)a.min_position,
                              a.timeout_ms);
        } else if (rc) {
            rc = sk_error_set(err, rc, "", "read model '%s': %s", d->model, sk_strerror(rc));
        }
    }

    /* A rebuild may swap the file between the source's answer and the open: ask again. */
    qry_conn *c = NULL;
    for (int attempt = 0; !rc && attempt < 2; attempt++) {
        rc = qry_pool_get(q, d->model_index, &c, err);
        if (rc != SK_EBUSY)
            break;
        if (attempt == 0)
            rc = 0;
    }
    if (!rc) {
        rc = read_page(q, d, c, &a, fingerprint, after, answer_out, qerr);
        qry_pool_put(q, d->model_index, c, rc != -EIO && rc != SK_ECORRUPT);
    }
    json_decref(after);
    QRY_ASSERT(rc <= 0);
    return rc;
}
