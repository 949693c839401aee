/*
 * payload.c -- the public payload functions: client JSON in, Avro binary stored; Avro
 * binary of any stored version out, JSON in the newest shape.
 *
 * Two input problems need more than jansson gives: invalid UTF-8 (jansson refuses the
 * whole text without saying where in the document it was) and integers beyond 64 bits
 * (jansson refuses them with a line and column). For both, the text is parsed a second
 * time in a tolerant way -- invalid bytes replaced by U+FFFF, a noncharacter no client
 * has a reason to send, or integers read as doubles -- so the field at fault can be named.
 */
#include "events/events_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define UTF8_MARKER "\xEF\xBF\xBF" /* U+FFFF */

/* A copy of text with each invalid byte replaced by the marker; NULL if none was. */
static char *mark_invalid_utf8(const char *text, size_t size, size_t *out_size)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t bad = 0;
    for (size_t i = 0; i < size;) {
        size_t n = ev_utf8_seq(p + i, size - i);
        bad += n == 0;
        i += n ? n : 1;
    }
    if (bad == 0)
        return NULL;
    char *out = malloc(size + 2 * bad + 1);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < size;) {
        size_t n = ev_utf8_seq(p + i, size - i);
        if (n == 0) {
            memcpy(out + k, UTF8_MARKER, 3);
            k += 3;
            i++;
        } else {
            memcpy(out + k, p + i, n);
            k += n;
            i += n;
        }
    }
    out[k] = '\0';
    *out_size = k;
    return out;
}

/* Finds the first string (key or value) holding the marker; 1 and the path if marker_found. */
static int find_marker(const json_t *v, ev_path *path, int depth)
{
    if (depth > 64)
        return 0;
    if (json_is_string(v))
        return memmem(json_string_value(v), json_string_length(v), UTF8_MARKER, 3) != NULL;
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            size_t mark = ev_path_push_index(path, i);
            if (find_marker(item, path, depth + 1))
                return 1;
            ev_path_pop(path, mark);
        }
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)v, key, item)
        {
            size_t mark = ev_path_push_field(path, key);
            if (strstr(key, UTF8_MARKER) || find_marker(item, path, depth + 1))
                return 1;
            ev_path_pop(path, mark);
        }
    }
    return 0;
}

static int encode_value(const ev_schema *s, const json_t *value, bool ints_as_real, ev_buf *out,
                        uint32_t *schema_id_out, sk_error *err)
{
    /* One walk checks the JSON and writes its Avro binary (coerce.c, avro_write.c). */
    size_t start = out->size;
    ev_coerce_opts opts = {.strict = true, .ints_as_real = ints_as_real, .emit = out};
    json_t *none;
    int rc = ev_coerce(s, value, &opts, &none, err);
    if (rc == 0 && out->size - start > EV_PAYLOAD_MAX)
        rc = sk_error_set(err, SK_EBADINPUT, "", "encoded %s is %zu bytes, more than %u", s->type,
                          out->size - start, EV_PAYLOAD_MAX);
    if (rc) {
        out->size = start; /* nothing of a refused value stays in the caller's buffer */
        return rc;
    }
    if (schema_id_out)
        *schema_id_out = s->id;
    return 0;
}

int ev_payload_check_json(const ev_registry *reg, const char *type, const json_t *value,
                          sk_error *err)
{
    const ev_schema *s = ev_registry_newest(reg, type);
    if (!s)
        return sk_error_set(err, SK_ENOTFOUND, "type", "unknown event type '%s'", type);
    ev_coerce_opts opts = {.strict = true, .ints_as_real = false, .check_only = true};
    json_t *none;
    return ev_coerce(s, value, &opts, &none, err);
}

int ev_payload_from_json(const ev_registry *reg, const char *type, const json_t *value, ev_buf *out,
                         uint32_t *schema_id_out, sk_error *err)
{
    const ev_schema *s = ev_registry_newest(reg, type);
    if (!s)
        return sk_error_set(err, SK_ENOTFOUND, "type", "unknown event type '%s'", type);
    return encode_value(s, value, false, out, schema_id_out, err);
}

static int invalid_utf8(const char *text, size_t size, sk_error *err)
{
    size_t marked_size = 0;
    char *marked = mark_invalid_utf8(text, size, &marked_size);
    if (!marked)
        return 0;
    json_t *j = json_loadb(marked, marked_size, 0, NULL);
    ev_path path = {.len = 0};
    path.text[0] = '\0';
    int marker_found = j ? find_marker(j, &path, 0) : 0;
    json_decref(j);
    free(marked);
    return sk_error_set(err, SK_EBADINPUT, marker_found ? path.text : "", "%s: invalid UTF-8 in %s",
                        marker_found && path.len ? path.text : "payload",
                        marker_found ? "the field's text" : "the request body");
}

int ev_payload_from_json_text(const ev_registry *reg, const char *type, const char *text,
                              size_t size, ev_buf *out, uint32_t *schema_id_out, sk_error *err)
{
    const ev_schema *s = ev_registry_newest(reg, type);
    if (!s)
        return sk_error_set(err, SK_ENOTFOUND, "type", "unknown event type '%s'", type);
    json_error_t jerr;
    json_t *j = json_loadb(text, size, JSON_REJECT_DUPLICATES, &jerr);
    if (j) {
        int rc = encode_value(s, j, false, out, schema_id_out, err);
        json_decref(j);
        return rc;
    }
    int rc = invalid_utf8(text, size, err);
    if (rc)
        return rc;
    if (strstr(jerr.text, "too big")) {
        j = json_loadb(text, size, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL);
        if (j) {
            rc = encode_value(s, j, true, out, schema_id_out, err);
            json_decref(j);
            return rc;
        }
    }
    return sk_error_set(err, SK_EBADINPUT, "", "invalid JSON at line %d, column %d: %s", jerr.line,
                        jerr.column, jerr.text);
}

static int decode(const ev_registry *reg, uint32_t schema_id, const uint8_t *data, size_t size,
                  bool resolve, json_t **out, sk_error *err)
{
    const ev_schema *w = ev_registry_schema(reg, schema_id);
    if (!w)
        return sk_error_set(err, SK_ENOTFOUND, "schema_id",
                            "schema id %u is not in the registry; was the data directory's "
                            "schemas folder lost?",
                            schema_id);
    if (size > EV_PAYLOAD_MAX)
        return sk_error_set(err, SK_ECORRUPT, "", "payload of %zu bytes exceeds the limit", size);
    int rc = ev_avro_check(w, data, size, err);
    json_t *j = NULL;
    if (rc == 0)
        rc = ev_avro_read(w, data, size, &j, err);
    if (rc)
        return rc;
    const ev_schema *r = resolve ? ev_registry_newest(reg, w->type) : w;
    if (r && r != w) {
        ev_coerce_opts opts = {.strict = false};
        json_t *resolved = NULL;
        rc = ev_coerce(r, j, &opts, &resolved, err);
        json_decref(j);
        if (rc == -ENOMEM)
            return rc;
        if (rc) {
            sk_error why = {0};
            if (err)
                why = *err;
            return sk_error_set(err, SK_ESCHEMA, why.field,
                                "cannot resolve schema %u to %u (%s): %s", w->id, r->id, w->type,
                                why.message);
        }
        j = resolved;
    }
    *out = j;
    return 0;
}

int ev_payload_to_json(const ev_registry *reg, uint32_t schema_id, const uint8_t *data, size_t size,
                       json_t **out, sk_error *err)
{
    return decode(reg, schema_id, data, size, true, out, err);
}

int ev_payload_to_json_as_written(const ev_registry *reg, uint32_t schema_id, const uint8_t *data,
                                  size_t size, json_t **out, sk_error *err)
{
    return decode(reg, schema_id, data, size, false, out, err);
}
