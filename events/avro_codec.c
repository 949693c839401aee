/*
 * avro_codec.c -- JSON <-> Avro binary through avro-c's generic values.
 *
 * The service encodes in one pass in coerce.c and decodes in avro_read.c; this is the
 * reference their tests compare with. Encoding takes JSON that ev_coerce already checked
 * against the schema, so every step here must succeed; decoding takes binary that
 * ev_avro_check already bounds-checked. A generic value is created per call from the schema's
 * shared interface (avro-c's reference counts are atomic), which keeps the registry immutable and
 * thread-safe.
 */
#include "events/events_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int set_avro_value(const json_t *names, const json_t *node, const json_t *v,
                          avro_value_t *av);

static int branch_index(const json_t *names, const json_t *def, const json_t *v)
{
    size_t i;
    const json_t *b;
    json_array_foreach(def, i, b)
    {
        ev_kind k = ev_schema_kind(names, b);
        bool ok = false;
        switch (json_typeof(v)) {
        case JSON_NULL:
            ok = k == EV_K_NULL;
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            ok = k == EV_K_BOOLEAN;
            break;
        case JSON_INTEGER:
            ok = k == EV_K_INT || k == EV_K_LONG || k == EV_K_FLOAT || k == EV_K_DOUBLE;
            break;
        case JSON_REAL:
            ok = k == EV_K_FLOAT || k == EV_K_DOUBLE;
            break;
        case JSON_STRING:
            ok = k == EV_K_STRING || k == EV_K_BYTES || k == EV_K_ENUM || k == EV_K_FIXED;
            break;
        case JSON_ARRAY:
            ok = k == EV_K_ARRAY;
            break;
        case JSON_OBJECT:
            ok = k == EV_K_RECORD || k == EV_K_MAP;
            break;
        }
        if (ok)
            return (int)i;
    }
    return -1;
}

static int fill_record(const json_t *names, const json_t *def, const json_t *v, avro_value_t *av)
{
    size_t i;
    const json_t *f;
    json_array_foreach(json_object_get(def, "fields"), i, f)
    {
        avro_value_t child;
        if (avro_value_get_by_index(av, i, &child, NULL))
            return -1;
        const json_t *fv = json_object_get(v, json_string_value(json_object_get(f, "name")));
        if (!fv || set_avro_value(names, json_object_get(f, "type"), fv, &child))
            return -1;
    }
    return 0;
}

static int set_avro_value(const json_t *names, const json_t *node, const json_t *v,
                          avro_value_t *av)
{
    const json_t *def = ev_schema_deref(names, node);
    switch (ev_schema_kind(names, node)) {
    case EV_K_NULL:
        return avro_value_set_null(av);
    case EV_K_BOOLEAN:
        return avro_value_set_boolean(av, json_is_true(v));
    case EV_K_INT:
        return avro_value_set_int(av, (int32_t)json_integer_value(v));
    case EV_K_LONG:
        return avro_value_set_long(av, (int64_t)json_integer_value(v));
    case EV_K_FLOAT:
        return avro_value_set_float(av, (float)json_number_value(v));
    case EV_K_DOUBLE:
        return avro_value_set_double(av, json_number_value(v));
    case EV_K_STRING:
        /* avro-c's length counts the terminating NUL. */
        return avro_value_set_string_len(av, json_string_value(v), json_string_length(v) + 1);
    case EV_K_BYTES:
        return avro_value_set_bytes(av, (void *)json_string_value(v), json_string_length(v));
    case EV_K_FIXED:
        return avro_value_set_fixed(av, (void *)json_string_value(v), json_string_length(v));
    case EV_K_ENUM: {
        size_t i;
        const json_t *sym;
        json_array_foreach(json_object_get(def, "symbols"), i,
                           sym) if (json_equal(sym, v)) return avro_value_set_enum(av, (int)i);
        return -1;
    }
    case EV_K_ARRAY: {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            avro_value_t child;
            if (avro_value_append(av, &child, NULL) ||
                set_avro_value(names, json_object_get(def, "items"), item, &child))
                return -1;
        }
        return 0;
    }
    case EV_K_MAP: {
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)v, key, val)
        {
            avro_value_t child;
            if (avro_value_add(av, key, &child, NULL, NULL) ||
                set_avro_value(names, json_object_get(def, "values"), val, &child))
                return -1;
        }
        return 0;
    }
    case EV_K_RECORD:
        return fill_record(names, def, v, av);
    case EV_K_UNION: {
        int b = branch_index(names, def, v);
        avro_value_t child;
        if (b < 0 || avro_value_set_branch(av, b, &child))
            return -1;
        return set_avro_value(names, json_array_get(def, (size_t)b), v, &child);
    }
    case EV_K_INVALID:
        break;
    }
    return -1;
}

int ev_avro_encode(const ev_schema *s, const json_t *value, ev_buf *out, sk_error *err)
{
    avro_value_t v;
    if (avro_generic_value_new(s->iface, &v))
        return -ENOMEM;
    int rc = 0;
    size_t size = 0;
    if (set_avro_value(s->names, s->root, value, &v) || avro_value_sizeof(&v, &size)) {
        rc = sk_error_set(err, SK_EBADINPUT, "", "cannot encode %s: %s", s->type, avro_strerror());
    } else if (size > EV_PAYLOAD_MAX) {
        rc = sk_error_set(err, SK_EBADINPUT, "", "encoded %s is %zu bytes, more than %u", s->type,
                          size, EV_PAYLOAD_MAX);
    } else if ((rc = ev_buf_reserve(out, size)) == 0) {
        avro_writer_t w = avro_writer_memory((char *)out->data + out->size, (int64_t)size);
        if (!w || avro_value_write(w, &v))
            rc = sk_error_set(err, -EIO, "", "avro-c failed to write %s: %s", s->type,
                              avro_strerror());
        else
            out->size += size;
        if (w)
            avro_writer_free(w);
    }
    avro_value_decref(&v);
    return rc;
}

static json_t *to_json(const json_t *names, const json_t *node, avro_value_t *av, int depth);

static json_t *record_json(const json_t *names, const json_t *def, avro_value_t *av, int depth)
{
    json_t *obj = json_object();
    size_t i;
    const json_t *f;
    json_array_foreach(json_object_get(def, "fields"), i, f)
    {
        avro_value_t child;
        json_t *fv = NULL;
        if (avro_value_get_by_index(av, i, &child, NULL) == 0)
            fv = to_json(names, json_object_get(f, "type"), &child, depth + 1);
        if (!fv) {
            json_decref(obj);
            return NULL;
        }
        json_object_set_new(obj, json_string_value(json_object_get(f, "name")), fv);
    }
    return obj;
}

static json_t *to_json(const json_t *names, const json_t *node, avro_value_t *av, int depth)
{
    if (depth > EV_SCHEMA_DEPTH_MAX)
        return NULL;
    const json_t *def = ev_schema_deref(names, node);
    switch (ev_schema_kind(names, node)) {
    case EV_K_NULL:
        return json_null();
    case EV_K_BOOLEAN: {
        int b = 0;
        return avro_value_get_boolean(av, &b) ? NULL : json_boolean(b);
    }
    case EV_K_INT: {
        int32_t x;
        return avro_value_get_int(av, &x) ? NULL : json_integer(x);
    }
    case EV_K_LONG: {
        int64_t x;
        return avro_value_get_long(av, &x) ? NULL : json_integer(x);
    }
    case EV_K_FLOAT: {
        float x;
        return avro_value_get_float(av, &x) ? NULL : json_real(x);
    }
    case EV_K_DOUBLE: {
        double x;
        return avro_value_get_double(av, &x) ? NULL : json_real(x);
    }
    case EV_K_STRING: {
        const char *str;
        size_t size;
        if (avro_value_get_string(av, &str, &size) || size == 0)
            return NULL;
        return json_stringn(str, size - 1); /* NULL for invalid UTF-8: corrupt */
    }
    case EV_K_BYTES:
    case EV_K_FIXED: {
        const void *p;
        size_t size;
        int rc = ev_schema_kind(names, node) == EV_K_BYTES ? avro_value_get_bytes(av, &p, &size)
                                                           : avro_value_get_fixed(av, &p, &size);
        return rc ? NULL : ev_bytes_json(p, size);
    }
    case EV_K_ENUM: {
        int x;
        if (avro_value_get_enum(av, &x))
            return NULL;
        const json_t *sym = json_array_get(json_object_get(def, "symbols"), (size_t)x);
        return sym ? json_incref((json_t *)sym) : NULL;
    }
    case EV_K_ARRAY:
    case EV_K_MAP: {
        bool map = ev_schema_kind(names, node) == EV_K_MAP;
        const json_t *item = json_object_get(def, map ? "values" : "items");
        size_t n = 0;
        if (avro_value_get_size(av, &n))
            return NULL;
        json_t *out = map ? json_object() : json_array();
        for (size_t i = 0; i < n; i++) {
            avro_value_t child;
            const char *key = NULL;
            json_t *cv = NULL;
            if (avro_value_get_by_index(av, i, &child, &key) == 0)
                cv = to_json(names, item, &child, depth + 1);
            if (!cv) {
                json_decref(out);
                return NULL;
            }
            if (map)
                json_object_set_new(out, key, cv);
            else
                json_array_append_new(out, cv);
        }
        return out;
    }
    case EV_K_RECORD:
        return record_json(names, def, av, depth);
    case EV_K_UNION: {
        int d;
        avro_value_t child;
        if (avro_value_get_discriminant(av, &d) || avro_value_get_current_branch(av, &child))
            return NULL;
        return to_json(names, json_array_get(def, (size_t)d), &child, depth + 1);
    }
    case EV_K_INVALID:
        break;
    }
    return NULL;
}

int ev_avro_decode(const ev_schema *s, const uint8_t *data, size_t size, json_t **out,
                   sk_error *err)
{
    avro_value_t v;
    if (avro_generic_value_new(s->iface, &v))
        return -ENOMEM;
    int rc = 0;
    avro_reader_t r = avro_reader_memory((const char *)data, (int64_t)size);
    if (!r || avro_value_read(r, &v)) {
        rc = sk_error_set(err, SK_ECORRUPT, "", "avro-c cannot read a %s payload: %s", s->type,
                          avro_strerror());
    } else {
        json_t *j = to_json(s->names, s->root, &v, 0);
        if (!j)
            rc = sk_error_set(err, SK_ECORRUPT, "",
                              "a %s payload holds a value JSON cannot carry (invalid UTF-8)",
                              s->type);
        else
            *out = j;
    }
    if (r)
        avro_reader_free(r);
    avro_value_decref(&v);
    return rc;
}
