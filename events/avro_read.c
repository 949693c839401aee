/*
 * avro_read.c -- Avro binary to JSON in one walk, for payloads ev_avro_check has passed.
 *
 * Every event a reader replays, projects or publishes goes through here: rebuilding an
 * aggregate on a cache miss decodes up to a snapshot interval of events, and through
 * avro-c's generic values (allocated per call, filled, then copied into JSON) a decode
 * cost about three times this walk. The JSON is the same as avro-c's path gives (tests
 * compare the two for every kind of value). The bounds were checked before, but the walk
 * still refuses anything out of place rather than trust that.
 */
#include "events/events_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct avro_reader {
    const uint8_t *p, *end;
} avro_reader;

static int read_long(avro_reader *r, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return -1;
}

/* n bytes at the cursor, or NULL when fewer are left. */
static const uint8_t *take(avro_reader *r, uint64_t n)
{
    if (n > (uint64_t)(r->end - r->p))
        return NULL;
    const uint8_t *at = r->p;
    r->p += n;
    return at;
}

static uint64_t read_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

json_t *ev_bytes_json(const uint8_t *p, size_t n)
{
    json_t *j = json_stringn((const char *)p, n);
    if (j)
        return j;
    /* Bytes and fixed values need not be UTF-8; show them as Latin-1 code points then. */
    char *u = malloc(2 * n + 1);
    if (!u)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x80) {
            u[k++] = (char)p[i];
        } else {
            u[k++] = (char)(0xC0 | (p[i] >> 6));
            u[k++] = (char)(0x80 | (p[i] & 0x3F));
        }
    }
    j = json_stringn(u, k);
    free(u);
    return j;
}

static json_t *read_node(avro_reader *r, const ev_node *n, int depth);

/* A map key as a C string (as avro-c gives it: up to its first NUL, if any). */
static int set_map_item(json_t *map, const uint8_t *key, size_t len, json_t *value)
{
    char small[128];
    char *k = len < sizeof small ? small : malloc(len + 1);
    if (!k) {
        json_decref(value);
        return -1;
    }
    memcpy(k, key, len);
    k[len] = '\0';
    int rc = json_object_set_new(map, k, value); /* -1 for a key that is not UTF-8 */
    if (k != small)
        free(k);
    return rc;
}

static json_t *read_blocks(avro_reader *r, const ev_node *item, bool is_map, int depth)
{
    json_t *out = is_map ? json_object() : json_array();
    for (int64_t count = 0; out;) {
        if (read_long(r, &count))
            break;
        if (count == 0)
            return out;
        if (count < 0) { /* a block that also gives its size in bytes */
            int64_t bytes;
            if (count == INT64_MIN || read_long(r, &bytes))
                break;
            count = -count;
        }
        for (int64_t i = 0; i < count; i++) {
            int64_t klen = 0;
            const uint8_t *key = NULL;
            if (is_map && (read_long(r, &klen) || klen < 0 || !(key = take(r, (uint64_t)klen))))
                goto fail;
            json_t *v = read_node(r, item, depth + 1);
            if (!v)
                goto fail;
            if (is_map ? set_map_item(out, key, (size_t)klen, v) : json_array_append_new(out, v))
                goto fail;
        }
    }
fail:
    json_decref(out);
    return NULL;
}

static json_t *read_record(avro_reader *r, const ev_node *n, int depth)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < n->count; i++) {
        json_t *v = obj ? read_node(r, n->fields[i].type.node, depth + 1) : NULL;
        if (!v || json_object_set_new(obj, n->fields[i].name, v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *read_real(avro_reader *r, ev_kind kind)
{
    const uint8_t *at = take(r, kind == EV_K_FLOAT ? 4 : 8);
    if (!at)
        return NULL;
    if (kind == EV_K_FLOAT) {
        float x;
        uint32_t bits = (uint32_t)read_le(at, 4);
        memcpy(&x, &bits, sizeof x);
        return json_real(x);
    }
    double x;
    uint64_t bits = read_le(at, 8);
    memcpy(&x, &bits, sizeof x);
    return json_real(x);
}

static json_t *read_node(avro_reader *r, const ev_node *n, int depth)
{
    if (depth > EV_SCHEMA_DEPTH_MAX)
        return NULL;
    int64_t v;
    const uint8_t *at;
    switch (n->kind) {
    case EV_K_NULL:
        return json_null();
    case EV_K_BOOLEAN:
        return (at = take(r, 1)) && *at <= 1 ? json_boolean(*at) : NULL;
    case EV_K_INT:
    case EV_K_LONG:
        return read_long(r, &v) ? NULL : json_integer(v);
    case EV_K_FLOAT:
    case EV_K_DOUBLE:
        return read_real(r, n->kind);
    case EV_K_STRING:
    case EV_K_BYTES:
        if (read_long(r, &v) || v < 0 || !(at = take(r, (uint64_t)v)))
            return NULL;
        /* a string that is not UTF-8 is NULL: the caller reports the payload corrupt */
        return n->kind == EV_K_STRING ? json_stringn((const char *)at, (size_t)v)
                                      : ev_bytes_json(at, (size_t)v);
    case EV_K_FIXED:
        return (at = take(r, n->size)) ? ev_bytes_json(at, n->size) : NULL;
    case EV_K_ENUM: {
        const json_t *sym =
            read_long(r, &v) || v < 0 ? NULL : json_array_get(n->symbols, (size_t)v);
        return sym ? json_incref((json_t *)sym) : NULL;
    }
    case EV_K_ARRAY:
    case EV_K_MAP:
        return read_blocks(r, n->items.node, n->kind == EV_K_MAP, depth);
    case EV_K_RECORD:
        return read_record(r, n, depth);
    case EV_K_UNION:
        if (read_long(r, &v) || v < 0 || (uint64_t)v >= n->count)
            return NULL;
        return read_node(r, n->branches[v].node, depth + 1);
    case EV_K_INVALID:
        break;
    }
    return NULL;
}

int ev_avro_read(const ev_schema *s, const uint8_t *data, size_t size, json_t **out, sk_error *err)
{
    avro_reader r = {.p = data, .end = data + size};
    json_t *j = read_node(&r, s->tree.root.node, 0);
    if (j && r.p == r.end) {
        *out = j;
        return 0;
    }
    json_decref(j);
    return sk_error_set(err, SK_ECORRUPT, "",
                        "a %s payload holds a value JSON cannot carry (invalid UTF-8)", s->type);
}
