/*
 * coerce.c -- the JSON walker over a schema: checks client JSON against an event schema
 * (naming the field at fault), and reshapes JSON decoded with an older schema version
 * into the newest one (Avro schema resolution, with the reader's defaults).
 *
 * avro-c has no JSON input and does not apply reader defaults when resolving, so both
 * live here, in one walk: for each schema node, take the JSON value, check it, and build
 * the value in the schema's shape.
 *
 * JSON mapping (the same for input and output): records are objects, arrays arrays, maps
 * objects, enums their symbol as a string, bytes and fixed strings, and a union is the
 * plain value of its branch (null for a null branch): {"note": "x"}, not
 * {"note": {"string": "x"}}. The first branch that accepts the JSON value's type is used.
 */
#include "events/events_int.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct coerce_walk {
    const ev_coerce_opts *opts;
    ev_path path;
    sk_error *err;
    int rc; /* 0 until the walk fails: SK_EBADINPUT (the value) or -ENOMEM */
    int depth;
    /* Check only: every node answers json_null() (a singleton, nothing to free) and no
     * container is built, so validating a command allocates nothing. */
    bool check;
    /* Encode as well (check mode only): each node appends its Avro binary here as it is
     * checked; on a failure the caller drops what was appended. */
    ev_buf *emit;
} coerce_walk;

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static json_t *fail(coerce_walk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *fail(coerce_walk *c, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->rc = sk_error_set(c->err, SK_EBADINPUT, c->path.text, "%s: %s",
                         c->path.len ? c->path.text : "payload", msg);
    return NULL;
}

/* An allocation failed: not the value's fault, so not SK_EBADINPUT (a 400 would blame
 * the client for the server running out of memory). */
static json_t *oom(coerce_walk *c)
{
    c->rc = sk_error_set(c->err, -ENOMEM, c->path.text, "out of memory checking %s",
                         c->path.len ? c->path.text : "payload");
    return NULL;
}

static json_t *coerce_node(coerce_walk *c, const ev_use *u, const json_t *v);

/* The answer of a checked node in check mode, after its bytes were put (rc of the put). */
static json_t *checked(coerce_walk *c, int rc)
{
    return rc ? oom(c) : json_null();
}

/* Emit mode: an Avro long (ints, longs, enum indexes, counts), or nothing to do. */
static int put_long(coerce_walk *c, int64_t x)
{
    return c->emit ? ev_avro_put_long(c->emit, x) : 0;
}

static json_t *coerce_integer(coerce_walk *c, const ev_use *u, const json_t *v)
{
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && c->opts->ints_as_real) {
        double d = json_real_value(v);
        if (d != floor(d))
            return fail(c, "expected an integer, got a number with a fraction");
        if (d >= 9223372036854775808.0 || d < -9223372036854775808.0)
            return fail(c, "integer %.0f is out of range for long", d);
        x = (long long)d;
    } else {
        return fail(c, "expected an integer, got %s", json_type_name(v));
    }
    if (u->node->kind == EV_K_INT && (x < INT32_MIN || x > INT32_MAX))
        return fail(c, "integer %lld is out of range for int (-2147483648..2147483647)", x);
    if (c->opts->strict) {
        long long min = u->lim.min, max = u->lim.max;
        if (x < min)
            return fail(c, "%lld is below the minimum of %lld", x, min);
        if (x > max)
            return fail(c, "%lld is above the maximum of %lld", x, max);
    }
    return c->check ? checked(c, put_long(c, x)) : json_integer(x);
}

/* Emit mode: a string, bytes (after their length) or fixed (as they are). */
static int put_text(coerce_walk *c, ev_kind kind, const json_t *v)
{
    if (!c->emit)
        return 0;
    const char *p = json_string_value(v);
    size_t len = json_string_length(v);
    return kind == EV_K_FIXED ? ev_buf_append(c->emit, p, len) : ev_avro_put_bytes(c->emit, p, len);
}

static json_t *coerce_string(coerce_walk *c, const ev_use *u, const json_t *v)
{
    ev_kind kind = u->node->kind;
    if (!json_is_string(v))
        return fail(c, "expected a string, got %s", json_type_name(v));
    size_t len = json_string_length(v);
    if (c->opts->strict) {
        long long max = u->lim.max_length; /* a fixed type's size */
        if ((long long)len > max)
            return fail(c, "string of %zu bytes is longer than its limit of %lld bytes", len, max);
        if (kind == EV_K_FIXED && (long long)len != max)
            return fail(c, "fixed value must be exactly %lld bytes, got %zu", max, len);
        long long min = u->lim.min_length;
        if ((long long)len < min)
            return fail(c, "string must be at least %lld bytes", min);
        size_t bad;
        if (len && u->lim.id && ev_id_check(json_string_value(v), len, &bad) != 0)
            return fail(c,
                        "byte %zu (0x%02x) is not allowed in an id: ids are letters, digits "
                        "and - . _ ~ ! $ & ' ( ) * + , ; = : @",
                        bad, (unsigned char)json_string_value(v)[bad]);
    }
    return c->check ? checked(c, put_text(c, kind, v)) : json_stringn(json_string_value(v), len);
}

/* Where a symbol is in an enum's list; SIZE_MAX when it is not there. */
static size_t symbol_index(const json_t *symbols, const json_t *v)
{
    size_t i;
    const json_t *sym;
    json_array_foreach(symbols, i, sym)
    {
        if (json_equal(sym, v))
            return i;
    }
    return SIZE_MAX;
}

static json_t *coerce_enum(coerce_walk *c, const ev_node *n, const json_t *v)
{
    if (!json_is_string(v))
        return fail(c, "expected one of the symbols of %s, got %s", n->name, json_type_name(v));
    size_t at = symbol_index(n->symbols, v);
    if (at == SIZE_MAX && !c->opts->strict && json_is_string(n->enum_default))
        at = symbol_index(n->symbols, n->enum_default);
    if (at != SIZE_MAX)
        return c->check ? checked(c, put_long(c, (int64_t)at))
                        : json_incref(json_array_get(n->symbols, at));
    return fail(c, "'%s' is not a symbol of %s", json_string_value(v), n->name);
}

static json_t *coerce_array(coerce_walk *c, const ev_use *u, const json_t *v)
{
    if (!json_is_array(v))
        return fail(c, "expected an array, got %s", json_type_name(v));
    size_t n = json_array_size(v);
    if (c->opts->strict) {
        long long min = u->lim.min_items, max = u->lim.max_items;
        if ((long long)n < min || (long long)n > max)
            return fail(c, "array has %zu items; it must have %lld to %lld", n, min, max);
    }
    json_t *out = c->check ? json_null() : json_array();
    if (!out || (n && put_long(c, (int64_t)n))) /* one block of all the items */
        return oom(c);
    for (size_t i = 0; i < n; i++) {
        size_t mark = ev_path_push_index(&c->path, i);
        json_t *item = coerce_node(c, &u->node->items, json_array_get(v, i));
        ev_path_pop(&c->path, mark);
        if (!item) {
            json_decref(out);
            return NULL;
        }
        if (!c->check && json_array_append_new(out, item) != 0) {
            json_decref(out);
            return oom(c);
        }
    }
    return put_long(c, 0) ? oom(c) : out; /* the empty block that ends the list */
}

static json_t *coerce_map(coerce_walk *c, const ev_node *node, const json_t *v)
{
    if (!json_is_object(v))
        return fail(c, "expected an object (a map), got %s", json_type_name(v));
    json_t *out = c->check ? json_null() : json_object();
    size_t n = json_object_size(v);
    if (!out || (n && put_long(c, (int64_t)n)))
        return oom(c);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        if (c->emit && ev_avro_put_bytes(c->emit, key, strlen(key)))
            return oom(c);
        size_t mark = ev_path_push_field(&c->path, key);
        json_t *item = coerce_node(c, &node->items, val);
        ev_path_pop(&c->path, mark);
        if (!item) {
            json_decref(out);
            return NULL;
        }
        if (!c->check && json_object_set_new(out, key, item) != 0) {
            json_decref(out);
            return oom(c);
        }
    }
    return put_long(c, 0) ? oom(c) : out;
}

static bool record_has_field(const ev_node *n, const char *key)
{
    for (size_t i = 0; i < n->count; i++)
        if (strcmp(n->fields[i].name, key) == 0)
            return true;
    return false;
}

static json_t *coerce_record(coerce_walk *c, const ev_node *n, const json_t *v)
{
    if (!json_is_object(v))
        return fail(c, "expected an object (record %s), got %s", n->name, json_type_name(v));
    json_t *out = c->check ? json_null() : json_object();
    if (!out)
        return oom(c);
    size_t present = 0;
    for (size_t i = 0; i < n->count; i++) {
        const ev_field *f = &n->fields[i];
        const json_t *fv = json_object_get(v, f->name);
        present += fv != NULL;
        size_t mark = ev_path_push_field(&c->path, f->name);
        json_t *r = NULL;
        if (fv) {
            r = coerce_node(c, &f->type, fv);
        } else if (f->dflt) {
            /* A default is trusted schema text: reshape it without the input limits. */
            ev_coerce_opts lenient = {.strict = false, .ints_as_real = false};
            const ev_coerce_opts *saved = c->opts;
            c->opts = &lenient;
            r = coerce_node(c, &f->type, f->dflt);
            c->opts = saved;
        } else {
            fail(c, "missing required field");
        }
        ev_path_pop(&c->path, mark);
        if (!r) {
            json_decref(out);
            return NULL;
        }
        if (!c->check && json_object_set_new(out, f->name, r) != 0) {
            json_decref(out);
            return oom(c);
        }
    }
    if (c->opts->strict && json_object_size(v) > present) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val)
        {
            if (!record_has_field(n, key)) {
                ev_path_push_field(&c->path, key);
                json_decref(out);
                return fail(c, "unknown field: record %s has no field '%s'", n->name, key);
            }
        }
    }
    return out;
}

/* Does a branch of this kind take a JSON value of v's type? */
static bool branch_accepts(const coerce_walk *c, ev_kind k, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return k == EV_K_NULL;
    case JSON_TRUE:
    case JSON_FALSE:
        return k == EV_K_BOOLEAN;
    case JSON_INTEGER:
        return k == EV_K_INT || k == EV_K_LONG || k == EV_K_FLOAT || k == EV_K_DOUBLE;
    case JSON_REAL:
        return k == EV_K_FLOAT || k == EV_K_DOUBLE ||
               (c->opts->ints_as_real && (k == EV_K_INT || k == EV_K_LONG));
    case JSON_STRING:
        return k == EV_K_STRING || k == EV_K_BYTES || k == EV_K_ENUM || k == EV_K_FIXED;
    case JSON_ARRAY:
        return k == EV_K_ARRAY;
    case JSON_OBJECT:
        return k == EV_K_RECORD || k == EV_K_MAP;
    }
    return false;
}

static json_t *coerce_union(coerce_walk *c, const ev_node *n, const json_t *v)
{
    for (size_t i = 0; i < n->count; i++) {
        if (branch_accepts(c, n->branches[i].node->kind, v))
            return put_long(c, (int64_t)i) ? oom(c) : coerce_node(c, &n->branches[i], v);
    }
    char kinds[200] = "";
    size_t len = 0;
    for (size_t i = 0; i < n->count; i++) {
        int w = snprintf(kinds + len, sizeof kinds - len, "%s%s", i ? ", " : "",
                         ev_kind_name(n->branches[i].node->kind));
        if (w > 0 && (size_t)w < sizeof kinds - len)
            len += (size_t)w;
    }
    return fail(c, "expected one of (%s), got %s", kinds, json_type_name(v));
}

static int put_boolean(coerce_walk *c, bool b)
{
    uint8_t byte = b;
    return c->emit ? ev_buf_append(c->emit, &byte, 1) : 0;
}

static int put_real(coerce_walk *c, ev_kind kind, double x)
{
    if (!c->emit)
        return 0;
    return kind == EV_K_FLOAT ? ev_avro_put_float(c->emit, (float)x)
                              : ev_avro_put_double(c->emit, x);
}

static json_t *coerce_node(coerce_walk *c, const ev_use *u, const json_t *v)
{
    const ev_node *n = u->node;
    ev_kind kind = n->kind;
    if (c->depth >= EV_SCHEMA_DEPTH_MAX)
        return fail(c, "nested deeper than %d levels", EV_SCHEMA_DEPTH_MAX);
    c->depth++;
    json_t *r = NULL;
    switch (kind) {
    case EV_K_NULL:
        r = json_is_null(v) ? json_null() : fail(c, "expected null, got %s", json_type_name(v));
        break;
    case EV_K_BOOLEAN:
        r = json_is_boolean(v) ? (c->check ? checked(c, put_boolean(c, json_is_true(v)))
                                           : json_boolean(json_is_true(v)))
                               : fail(c, "expected a boolean, got %s", json_type_name(v));
        break;
    case EV_K_INT:
    case EV_K_LONG:
        r = coerce_integer(c, u, v);
        break;
    case EV_K_FLOAT:
    case EV_K_DOUBLE:
        r = json_is_number(v) ? (c->check ? checked(c, put_real(c, kind, json_number_value(v)))
                                          : json_real(json_number_value(v)))
                              : fail(c, "expected a number, got %s", json_type_name(v));
        break;
    case EV_K_STRING:
    case EV_K_BYTES:
    case EV_K_FIXED:
        r = coerce_string(c, u, v);
        break;
    case EV_K_ENUM:
        r = coerce_enum(c, n, v);
        break;
    case EV_K_ARRAY:
        r = coerce_array(c, u, v);
        break;
    case EV_K_MAP:
        r = coerce_map(c, n, v);
        break;
    case EV_K_RECORD:
        r = coerce_record(c, n, v);
        break;
    case EV_K_UNION:
        r = coerce_union(c, n, v);
        break;
    case EV_K_INVALID:
        r = fail(c, "the schema uses an unknown type");
        break;
    }
    c->depth--;
    if (!r && c->rc == 0)
        return oom(c); /* a leaf (json_integer, json_stringn, ...) could not be made */
    return r;
}

int ev_coerce(const ev_schema *s, const json_t *value, const ev_coerce_opts *opts, json_t **out,
              sk_error *err)
{
    coerce_walk c = {
        .opts = opts, .err = err, .check = opts->check_only || opts->emit, .emit = opts->emit};
    json_t *r = coerce_node(&c, &s->tree.root, value);
    if (!r)
        return c.rc ? c.rc : -ENOMEM;
    *out = r;
    return 0;
}
