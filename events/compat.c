/*
 * compat.c -- can data written with one schema version be read with another?
 *
 * The registry accepts a changed schema only if it is compatible both ways with the
 * newest version: new code must read old events (every added field has a default), and
 * consumers still on the old schema must read new events (every removed field had a
 * default). A field's type may not change, except that Avro's promotions (int -> long ->
 * float -> double, string <-> bytes) are allowed in the direction they work; checking
 * both directions therefore refuses any change of a field's type. This is Confluent's
 * FULL compatibility, the setting that keeps every downstream consumer safe.
 */
#include "events/events_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct compat {
    const json_t *rnames, *wnames;
    ev_path path;
    char problem[300];
} compat;

static bool promotable(ev_kind w, ev_kind r)
{
    return (w == EV_K_INT && (r == EV_K_LONG || r == EV_K_FLOAT || r == EV_K_DOUBLE)) ||
           (w == EV_K_LONG && (r == EV_K_FLOAT || r == EV_K_DOUBLE)) ||
           (w == EV_K_FLOAT && r == EV_K_DOUBLE) || (w == EV_K_STRING && r == EV_K_BYTES) ||
           (w == EV_K_BYTES && r == EV_K_STRING);
}

static int problem(compat *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int problem(compat *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->problem, sizeof c->problem, fmt, ap);
    va_end(ap);
    return -1;
}

static int can_read(compat *c, const json_t *rnode, const json_t *wnode, int depth);

static int records(compat *c, const json_t *rdef, const json_t *wdef, int depth)
{
    size_t i, j;
    const json_t *rf, *wf;
    json_array_foreach(json_object_get(rdef, "fields"), i, rf)
    {
        const char *name = json_string_value(json_object_get(rf, "name"));
        const json_t *match = NULL;
        json_array_foreach(json_object_get(wdef, "fields"), j,
                           wf) if (strcmp(name, json_string_value(json_object_get(wf, "name"))) ==
                                   0) match = wf;
        size_t mark = ev_path_push_field(&c->path, name);
        if (match) {
            if (can_read(c, json_object_get(rf, "type"), json_object_get(match, "type"), depth + 1))
                return -1;
        } else if (!json_object_get(rf, "default")) {
            return problem(c, "the field is in one version and not the other, and has no "
                              "default");
        }
        ev_path_pop(&c->path, mark);
    }
    return 0;
}

static int can_read(compat *c, const json_t *rnode, const json_t *wnode, int depth)
{
    if (depth > EV_SCHEMA_DEPTH_MAX)
        return 0; /* a recursive type: the levels above have been compared */
    ev_kind rk = ev_schema_kind(c->rnames, rnode), wk = ev_schema_kind(c->wnames, wnode);
    const json_t *rdef = ev_schema_deref(c->rnames, rnode);
    const json_t *wdef = ev_schema_deref(c->wnames, wnode);
    size_t i;
    const json_t *b;
    if (wk == EV_K_UNION) {
        json_array_foreach(wdef, i, b) if (can_read(c, rnode, b, depth + 1)) return -1;
        return 0;
    }
    if (rk == EV_K_UNION) {
        json_array_foreach(rdef, i, b)
        {
            compat trial = *c;
            if (can_read(&trial, b, wnode, depth + 1) == 0)
                return 0;
        }
        return problem(c, "its type changed: no branch of the union reads a %s", ev_kind_name(wk));
    }
    if (rk != wk)
        return promotable(wk, rk) ? 0
                                  : problem(c, "its type changed from %s to %s", ev_kind_name(wk),
                                            ev_kind_name(rk));
    switch (rk) {
    case EV_K_RECORD:
        return records(c, rdef, wdef, depth);
    case EV_K_ARRAY:
        return can_read(c, json_object_get(rdef, "items"), json_object_get(wdef, "items"),
                        depth + 1);
    case EV_K_MAP:
        return can_read(c, json_object_get(rdef, "values"), json_object_get(wdef, "values"),
                        depth + 1);
    case EV_K_FIXED:
        return json_equal(json_object_get(rdef, "size"), json_object_get(wdef, "size"))
                   ? 0
                   : problem(c, "its fixed size changed");
    case EV_K_ENUM: {
        if (json_object_get(rdef, "default"))
            return 0;
        size_t j;
        const json_t *ws, *rs;
        json_array_foreach(json_object_get(wdef, "symbols"), i, ws)
        {
            bool symbol_kept = false;
            json_array_foreach(json_object_get(rdef, "symbols"), j, rs) symbol_kept |=
                json_equal(ws, rs);
            if (!symbol_kept)
                return problem(c,
                               "enum symbol '%s' is in one version only and the enum has "
                               "no default",
                               json_string_value(ws));
        }
        return 0;
    }
    default:
        return 0;
    }
}

static int one_way(const ev_schema *reader, const ev_schema *writer, const char *direction,
                   sk_error *err)
{
    compat c = {.rnames = reader->names, .wnames = writer->names};
    if (can_read(&c, reader->root, writer->root, 0) == 0)
        return 0;
    return sk_error_set(err, SK_ESCHEMA, c.path.text,
                        "schema %s: field '%s': %s (%s), so the change is not compatible; "
                        "give the field a default or keep the old definition",
                        reader->type, c.path.len ? c.path.text : "(the record)", c.problem,
                        direction);
}

int ev_schema_can_read(const ev_schema *reader, const ev_schema *writer, sk_error *err)
{
    return one_way(reader, writer, "checked reading data of the other version", err);
}

int ev_schema_check_change(const ev_schema *prev, const ev_schema *next, sk_error *err)
{
    int rc = one_way(next, prev, "the new schema cannot read events written with the old one", err);
    if (rc == 0)
        rc =
            one_way(prev, next,
                    "consumers on the old schema cannot read events written with the new one", err);
    return rc;
}
