/*
 * schema.c -- one Avro schema version: parsed JSON plus avro-c's view of it.
 *
 * avro-c parses the schema for encoding and decoding, but its schema API does not expose
 * field defaults or extra attributes, and Skald needs both (defaults for resolution and
 * for missing input fields, "maxLength" for input limits). So the JSON is kept beside it,
 * with a table of the named types (records, enums, fixed) it defines, and every walker in
 * events/ reads the JSON.
 *
 * The canonical form that identifies a version is the schema's JSON dumped compactly with
 * sorted keys: whitespace and key order do not make a new version; any other change,
 * including documentation, does.
 */
#include "events/events_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *primitive_names[] = {"null",  "boolean", "int",   "long",
                                        "float", "double",  "bytes", "string"};

const char *ev_kind_name(ev_kind kind)
{
    static const char *names[] = {"null",   "boolean", "int",    "long",   "float",
                                  "double", "bytes",   "string", "record", "enum",
                                  "array",  "map",     "union",  "fixed",  "invalid"};
    return names[kind];
}

/* Asked for every node of every payload walk: the first letter settles most names. */
static ev_kind primitive_kind(const char *name)
{
    for (int i = 0; i < 8; i++)
        if (name[0] == primitive_names[i][0] && strcmp(name, primitive_names[i]) == 0)
            return (ev_kind)i;
    return EV_K_INVALID;
}

const json_t *ev_schema_deref(const json_t *names, const json_t *node)
{
    if (json_is_string(node) && primitive_kind(json_string_value(node)) == EV_K_INVALID)
        return json_object_get(names, json_string_value(node));
    return node;
}

ev_kind ev_schema_kind(const json_t *names, const json_t *node)
{
    node = ev_schema_deref(names, node);
    if (!node)
        return EV_K_INVALID;
    if (json_is_array(node))
        return EV_K_UNION;
    if (json_is_string(node))
        return primitive_kind(json_string_value(node));
    const char *t = json_string_value(json_object_get(node, "type"));
    if (!t)
        return EV_K_INVALID;
    if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0)
        return EV_K_RECORD;
    if (strcmp(t, "enum") == 0)
        return EV_K_ENUM;
    if (strcmp(t, "array") == 0)
        return EV_K_ARRAY;
    if (strcmp(t, "map") == 0)
        return EV_K_MAP;
    if (strcmp(t, "fixed") == 0)
        return EV_K_FIXED;
    return primitive_kind(t); /* {"type": "string", "maxLength": 10} and the like */
}

/* Appends what fits of text (the path is cut, never overrun). Paths are built for every
 * field a payload walk visits, so this copies rather than formats. */
static void path_append(ev_path *p, const char *text, size_t len)
{
    size_t room = sizeof p->text - 1 - p->len;
    if (len > room)
        len = room;
    memcpy(p->text + p->len, text, len);
    p->len += len;
    p->text[p->len] = '\0';
}

size_t ev_path_push_field(ev_path *p, const char *name)
{
    size_t old = p->len;
    if (p->len)
        path_append(p, ".", 1);
    path_append(p, name, strlen(name));
    return old;
}

size_t ev_path_push_index(ev_path *p, size_t index)
{
    size_t old = p->len;
    char digits[24];
    size_t n = sizeof digits;
    digits[--n] = ']';
    do {
        digits[--n] = (char)('0' + index % 10);
        index /= 10;
    } while (index);
    digits[--n] = '[';
    path_append(p, digits + n, sizeof digits - n);
    return old;
}

void ev_path_pop(ev_path *p, size_t len)
{
    p->len = len;
    p->text[len] = '\0';
}

/* Records every named type under its short and its full name. */
static int collect_names(json_t *names, json_t *node, const char *ns, int depth)
{
    if (depth > EV_SCHEMA_DEPTH_MAX)
        return -1;
    if (json_is_array(node)) {
        size_t i;
        json_t *b;
        json_array_foreach(node, i, b) if (collect_names(names, b, ns, depth + 1)) return -1;
        return 0;
    }
    if (!json_is_object(node))
        return 0;
    const char *type = json_string_value(json_object_get(node, "type"));
    if (!type)
        return -1;
    if (strcmp(type, "record") == 0 || strcmp(type, "enum") == 0 || strcmp(type, "fixed") == 0 ||
        strcmp(type, "error") == 0) {
        const char *name = json_string_value(json_object_get(node, "name"));
        const char *own_ns = json_string_value(json_object_get(node, "namespace"));
        if (!name)
            return -1;
        if (own_ns)
            ns = own_ns;
        json_object_set(names, name, node);
        if (!strchr(name, '.') && ns && *ns) {
            char full[512];
            snprintf(full, sizeof full, "%s.%s", ns, name);
            json_object_set(names, full, node);
        }
    }
    if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
        size_t i;
        json_t *f;
        json_t *fields = json_object_get(node, "fields");
        if (!json_is_array(fields))
            return -1;
        json_array_foreach(fields, i, f)
        {
            if (!json_is_string(json_object_get(f, "name")))
                return -1;
            if (collect_names(names, json_object_get(f, "type"), ns, depth + 1))
                return -1;
        }
    } else if (strcmp(type, "array") == 0) {
        return collect_names(names, json_object_get(node, "items"), ns, depth + 1);
    } else if (strcmp(type, "map") == 0) {
        return collect_names(names, json_object_get(node, "values"), ns, depth + 1);
    }
    return 0;
}

int ev_schema_parse(const char *text, size_t size, const char *origin, ev_schema **out,
                    sk_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return sk_error_set(err, SK_ESCHEMA, "", "%s: not valid JSON at line %d column %d: %s",
                            origin, jerr.line, jerr.column, jerr.text);
    ev_schema *s = calloc(1, sizeof *s);
    if (!s) {
        json_decref(root);
        return -ENOMEM;
    }
    s->root = root;
    s->names = json_object();
    const char *name = json_string_value(json_object_get(root, "name"));
    if (ev_schema_kind(NULL, root) != EV_K_RECORD || !name || !*name) {
        ev_schema_free(s);
        return sk_error_set(err, SK_ESCHEMA, "", "%s: an event schema must be a named record",
                            origin);
    }
    if (collect_names(s->names, root, NULL, 0) != 0) {
        ev_schema_free(s);
        return sk_error_set(err, SK_ESCHEMA, "",
                            "%s: malformed schema (a type without a name, fields or type, or "
                            "nested deeper than %d)",
                            origin, EV_SCHEMA_DEPTH_MAX);
    }
    const char *dot = strrchr(name, '.');
    s->type = strdup(dot ? dot + 1 : name);
    s->canonical = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s->type || !s->canonical) {
        ev_schema_free(s);
        return -ENOMEM;
    }
    if (avro_schema_from_json_length(s->canonical, strlen(s->canonical), &s->avro) != 0) {
        int rc = sk_error_set(err, SK_ESCHEMA, "", "%s: avro-c rejects the schema: %s", origin,
                              avro_strerror());
        s->avro = NULL;
        ev_schema_free(s);
        return rc;
    }
    s->iface = avro_generic_class_from_schema(s->avro);
    if (!s->iface) {
        int rc = sk_error_set(err, SK_ESCHEMA, "", "%s: avro-c cannot build values: %s", origin,
                              avro_strerror());
        ev_schema_free(s);
        return rc;
    }
    if (ev_tree_build(&s->tree, s->names, s->root) != 0) {
        ev_schema_free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void ev_schema_free(ev_schema *s)
{
    if (!s)
        return;
    if (s->iface)
        avro_value_iface_decref(s->iface);
    if (s->avro)
        avro_schema_decref(s->avro);
    ev_tree_free(&s->tree);
    json_decref(s->root);
    json_decref(s->names);
    free(s->type);
    free(s->canonical);
    free(s);
}
