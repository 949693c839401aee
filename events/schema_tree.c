/*
 * schema_tree.c -- a schema compiled for the walks over payloads.
 *
 * Checking a command body, encoding an event and decoding one each walk the schema node
 * by node. Asked of the schema's JSON, every step was a few hash lookups and string
 * compares ("type", "fields", "name", the limits of each leaf), about half of each walk's
 * time. So each schema is compiled once, when it is parsed, into nodes that hold their
 * kind, fields, branches and items as pointers, and limits resolved where a type is used
 * (a field's "maxLength" overrides its type's). The JSON stays the schema's definition:
 * defaults and enum symbols are read from it, and the compatibility rules still use it.
 *
 * A named type (record, enum, fixed) is one node wherever it is used, so a recursive
 * record is a cycle of pointers, built by registering the node before its fields.
 */
#include "events/events_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A limit attribute ("maxLength", "minItems", ...) on the field or on the type object. */
static long long attr_limit(const json_t *attrs, const json_t *def, const char *key,
                            long long fallback)
{
    const json_t *a = attrs ? json_object_get(attrs, key) : NULL;
    if (!json_is_integer(a) && json_is_object(def))
        a = json_object_get(def, key);
    return json_is_integer(a) ? json_integer_value(a) : fallback;
}

/* "format": "id" on the field or its type: the string must be in the id alphabet. */
static bool is_id(const json_t *attrs, const json_t *def)
{
    const json_t *f = attrs ? json_object_get(attrs, "format") : NULL;
    if (!f && json_is_object(def))
        f = json_object_get(def, "format");
    return json_is_string(f) && strcmp(json_string_value(f), "id") == 0;
}

static ev_limits limits_of(const json_t *attrs, const json_t *def, ev_kind kind)
{
    ev_limits l = {
        .min = attr_limit(attrs, def, "minimum", LLONG_MIN),
        .max = attr_limit(attrs, def, "maximum", LLONG_MAX),
        .min_length = attr_limit(attrs, def, "minLength", 0),
        .max_length = attr_limit(attrs, def, "maxLength", EV_STRING_MAX),
        .min_items = attr_limit(attrs, def, "minItems", 0),
        .max_items = attr_limit(attrs, def, "maxItems", LLONG_MAX),
        .id = is_id(attrs, def),
    };
    if (kind == EV_K_FIXED)
        l.max_length = json_integer_value(json_object_get(def, "size"));
    return l;
}

static ev_node *node_new(ev_tree *t, ev_kind kind, const json_t *def)
{
    if (t->count == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        ev_node **nodes = realloc(t->nodes, cap * sizeof *nodes);
        if (!nodes)
            return NULL;
        t->nodes = nodes;
        t->cap = cap;
    }
    ev_node *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = kind;
        n->def = def;
        t->nodes[t->count++] = n;
    }
    return n;
}

static int build_use(ev_tree *t, const json_t *names, const json_t *node, const json_t *attrs,
                     int depth, ev_use *out);

static int build_record(ev_tree *t, const json_t *names, ev_node *n, int depth)
{
    const json_t *fields = json_object_get(n->def, "fields");
    n->count = json_array_size(fields);
    n->fields = calloc(n->count ? n->count : 1, sizeof *n->fields);
    if (!n->fields)
        return -ENOMEM;
    size_t i;
    const json_t *f;
    json_array_foreach(fields, i, f)
    {
        ev_field *field = &n->fields[i];
        field->name = json_string_value(json_object_get(f, "name"));
        field->dflt = json_object_get(f, "default");
        int rc = build_use(t, names, json_object_get(f, "type"), f, depth + 1, &field->type);
        if (rc)
            return rc;
    }
    return 0;
}

/* The node of a definition; a named one is built once and shared. */
static ev_node *node_of(ev_tree *t, const json_t *names, const json_t *def, const json_t *attrs,
                        int depth)
{
    ev_kind kind = def && depth <= EV_SCHEMA_DEPTH_MAX ? ev_schema_kind(names, def) : EV_K_INVALID;
    bool named = kind == EV_K_RECORD || kind == EV_K_ENUM || kind == EV_K_FIXED;
    for (size_t i = 0; named && i < t->count; i++)
        if (t->nodes[i]->def == def)
            return t->nodes[i];
    ev_node *n = node_new(t, kind, def);
    if (!n)
        return NULL;
    if (named)
        n->name = json_string_value(json_object_get(def, "name"));
    int rc = 0;
    switch (kind) {
    case EV_K_RECORD:
        rc = build_record(t, names, n, depth);
        break;
    case EV_K_ENUM:
        n->symbols = json_object_get(def, "symbols");
        n->count = json_array_size(n->symbols);
        n->enum_default = json_object_get(def, "default");
        break;
    case EV_K_FIXED:
        n->size = (size_t)json_integer_value(json_object_get(def, "size"));
        break;
    case EV_K_ARRAY:
    case EV_K_MAP:
        /* items and values carry no field's attributes: their limits are their own */
        rc = build_use(t, names, json_object_get(def, kind == EV_K_ARRAY ? "items" : "values"),
                       NULL, depth + 1, &n->items);
        break;
    case EV_K_UNION: {
        n->count = json_array_size(def);
        n->branches = calloc(n->count ? n->count : 1, sizeof *n->branches);
        if (!n->branches)
            return NULL;
        size_t i;
        const json_t *b;
        json_array_foreach(def, i, b)
        {
            /* a field's limits hold for whichever branch its value takes */
            if ((rc = build_use(t, names, b, attrs, depth + 1, &n->branches[i])) != 0)
                break;
        }
        break;
    }
    default:
        break;
    }
    return rc ? NULL : n;
}

static int build_use(ev_tree *t, const json_t *names, const json_t *node, const json_t *attrs,
                     int depth, ev_use *out)
{
    const json_t *def = ev_schema_deref(names, node);
    out->node = node_of(t, names, def, attrs, depth);
    if (!out->node)
        return -ENOMEM;
    out->lim = limits_of(attrs, def, out->node->kind);
    return 0;
}

int ev_tree_build(ev_tree *t, const json_t *names, const json_t *root)
{
    memset(t, 0, sizeof *t);
    int rc = build_use(t, names, root, NULL, 0, &t->root);
    if (rc)
        ev_tree_free(t);
    return rc;
}

void ev_tree_free(ev_tree *t)
{
    for (size_t i = 0; i < t->count; i++) {
        free(t->nodes[i]->fields);
        free(t->nodes[i]->branches);
        free(t->nodes[i]);
    }
    free(t->nodes);
    memset(t, 0, sizeof *t);
}
