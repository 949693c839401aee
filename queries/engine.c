/*
 * engine.c -- the query engine's lifetime: load and check every declaration and the cursor
 * secret at open (so a bad model file stops start-up, naming itself), group the queries
 * by model for the connection pool, close everything at the end; and the introspection
 * the service uses to list queries and document them in /v1/openapi.json.
 *
 * After qry_engine_open returns, everything but the pool's idle connections is immutable,
 * so qry_run, qry_count and qry_describe may run on any number of threads at once.
 */
#include "queries/queries_int.h"

#include <errno.h>
#include <string.h>

int qry_engine_open(const char *models_dir, const qry_source *src, const char *secret_path,
                    qry_engine **out, sk_error *err)
{
    QRY_ASSERT(models_dir && src && src->live_db && src->wait_applied && secret_path && out);
    qry_engine *q = calloc(1, sizeof *q);
    if (!q)
        return sk_error_set(err, -ENOMEM, "", "out of memory");
    q->src = *src;
    pthread_mutex_init(&q->mu, NULL);
    int rc = qry_secret_load(secret_path, q->secret, err);
    if (!rc)
        rc = qry_decls_load(models_dir, &q->decls, &q->decl_count, err);
    if (!rc && q->decl_count && !(q->models = calloc(q->decl_count, sizeof *q->models)))
        rc = sk_error_set(err, -ENOMEM, "", "out of memory");
    for (size_t i = 0; !rc && i < q->decl_count; i++) {
        qry_decl *d = &q->decls[i];
        size_t m = 0;
        while (m < q->model_count && strcmp(q->models[m].name, d->model) != 0)
            m++;
        if (m == q->model_count)
            memcpy(q->models[q->model_count++].name, d->model, QRY_NAME_MAX);
        d->model_index = m;
    }
    if (rc) {
        qry_engine_close(q);
        return rc;
    }
    *out = q;
    return 0;
}

void qry_engine_close(qry_engine *q)
{
    if (!q)
        return;
    qry_pool_close_all(q);
    qry_decls_free(q->decls, q->decl_count);
    free(q->models);
    pthread_mutex_destroy(&q->mu);
    memset(q->secret, 0, sizeof q->secret);
    free(q);
}

size_t qry_count(const qry_engine *q)
{
    return q->decl_count;
}

json_t *qry_describe(const qry_engine *q, size_t index)
{
    QRY_ASSERT(index < q->decl_count);
    const qry_decl *d = &q->decls[index];
    json_t *params = json_array(), *order = json_array(), *columns = json_array();
    json_t *out = json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", d->name, "model", d->model,
                            "params", params, "order", order, "columns", columns);
    if (!out)
        return NULL;
    int bad = 0;
    for (size_t i = 0; i < d->param_count; i++) {
        const qry_param_decl *pd = &d->params[i];
        json_t *p =
            json_pack("{s:s, s:s, s:b}", "name", pd->name, "type",
                      pd->type == QRY_INTEGER ? "integer" : "text", "required", pd->required);
        if (p && pd->in_count) {
            json_t *in = json_array();
            for (size_t j = 0; j < pd->in_count; j++)
                bad |= json_array_append_new(in, pd->type == QRY_INTEGER
                                                     ? json_integer(strtoll(pd->in[j], NULL, 10))
                                                     : json_string(pd->in[j]));
            bad |= json_object_set_new(p, "in", in);
        }
        bad |= json_array_append_new(params, p);
    }
    for (size_t i = 0; i < d->order_count; i++)
        bad |=
            json_array_append_new(order, json_pack("{s:s, s:s}", "column", d->order[i].column,
                                                   "direction", d->order[i].desc ? "desc" : "asc"));
    for (size_t i = 0; i < d->column_count; i++)
        bad |= json_array_append_new(
            columns, json_pack("{s:s, s:b}", "name", d->columns[i], "json", d->column_json[i]));
    if (bad) {
        json_decref(out);
        return NULL;
    }
    return out;
}
