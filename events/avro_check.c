/*
 * avro_check.c -- a bounds check of untrusted Avro binary, before avro-c sees it.
 *
 * avro-c 1.11 trusts its input: it allocates a string's declared length before checking
 * it against the bytes left, loops over an array's declared item count even when items
 * take no bytes, and leaks when the input ends early. Payloads come from disk (possibly
 * damaged) and, through replication, from other machines, so each one is first walked
 * here against its writer schema: varints at most 10 bytes (5 for int), lengths
 * non-negative and within the remaining bytes, union and enum indexes in range, at most
 * ZERO_WIDTH_ITEMS_MAX items that occupy no bytes, nesting bounded, and no trailing
 * bytes. This walk allocates nothing, so no input can make it use memory or time beyond
 * its size.
 */
#include "events/events_int.h"

#include <stdio.h>
#include <string.h>

#define ZERO_WIDTH_ITEMS_MAX 4096

typedef struct avro_cursor {
    const uint8_t *p, *end, *start;
    const json_t *names;
    size_t zero_items;
    const char *what;
} avro_cursor;

static int corrupt(avro_cursor *r, const char *what)
{
    if (!r->what)
        r->what = what;
    return -1;
}

static int varint(avro_cursor *r, int max_bytes, int64_t *out)
{
    uint64_t v = 0;
    *out = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (r->p >= r->end)
            return corrupt(r, "truncated integer");
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return corrupt(r, "integer encoding too long");
}

static int skip(avro_cursor *r, uint64_t n)
{
    if (n > (uint64_t)(r->end - r->p))
        return corrupt(r, "length runs past the end of the data");
    r->p += n;
    return 0;
}

/* Can a value of this type take zero bytes? (null, or a record of only such fields) */
static bool zero_width(const json_t *names, const json_t *node, int depth)
{
    if (depth > EV_SCHEMA_DEPTH_MAX)
        return false;
    const json_t *def = ev_schema_deref(names, node);
    switch (ev_schema_kind(names, node)) {
    case EV_K_NULL:
        return true;
    case EV_K_FIXED:
        return json_integer_value(json_object_get(def, "size")) == 0;
    case EV_K_RECORD: {
        size_t i;
        const json_t *f;
        json_array_foreach(
            json_object_get(def, "fields"), i,
            f) if (!zero_width(names, json_object_get(f, "type"), depth + 1)) return false;
        return true;
    }
    default:
        return false;
    }
}

static int check_node(avro_cursor *r, const json_t *node, int depth);

static int check_blocks(avro_cursor *r, const json_t *item, bool is_map, int depth)
{
    bool zero = !is_map && zero_width(r->names, item, 0);
    for (;;) {
        int64_t count = 0;
        if (varint(r, 10, &count))
            return -1;
        if (count == 0)
            return 0;
        if (count < 0) {
            int64_t bytes = 0;
            if (count == INT64_MIN)
                return corrupt(r, "impossible block count");
            count = -count;
            if (varint(r, 10, &bytes))
                return -1;
            if (bytes < 0 || bytes > r->end - r->p)
                return corrupt(r, "block size runs past the end of the data");
        }
        if (zero) {
            r->zero_items +=
                (size_t)(count > ZERO_WIDTH_ITEMS_MAX ? ZERO_WIDTH_ITEMS_MAX + 1 : count);
            if (r->zero_items > ZERO_WIDTH_ITEMS_MAX)
                return corrupt(r, "too many items that take no bytes");
        } else if (count > r->end - r->p) {
            return corrupt(r, "more items than bytes left");
        }
        for (int64_t i = 0; i < count; i++) {
            if (is_map) {
                int64_t klen = 0;
                if (varint(r, 10, &klen) || klen < 0 || skip(r, (uint64_t)klen))
                    return corrupt(r, "bad map key");
            }
            if (check_node(r, item, depth + 1))
                return -1;
        }
    }
}

static int check_node(avro_cursor *r, const json_t *node, int depth)
{
    if (depth > EV_SCHEMA_DEPTH_MAX)
        return corrupt(r, "nested too deeply");
    const json_t *def = ev_schema_deref(r->names, node);
    int64_t v = 0;
    switch (ev_schema_kind(r->names, node)) {
    case EV_K_NULL:
        return 0;
    case EV_K_BOOLEAN:
        if (r->p >= r->end || *r->p > 1)
            return corrupt(r, "bad boolean");
        r->p++;
        return 0;
    case EV_K_INT:
        if (varint(r, 5, &v))
            return -1;
        return v < INT32_MIN || v > INT32_MAX ? corrupt(r, "int out of range") : 0;
    case EV_K_LONG:
        return varint(r, 10, &v);
    case EV_K_FLOAT:
        return skip(r, 4);
    case EV_K_DOUBLE:
        return skip(r, 8);
    case EV_K_BYTES:
    case EV_K_STRING:
        if (varint(r, 10, &v))
            return -1;
        return v < 0 ? corrupt(r, "negative length") : skip(r, (uint64_t)v);
    case EV_K_FIXED:
        return skip(r, (uint64_t)json_integer_value(json_object_get(def, "size")));
    case EV_K_ENUM:
        if (varint(r, 10, &v))
            return -1;
        return v < 0 || (size_t)v >= json_array_size(json_object_get(def, "symbols"))
                   ? corrupt(r, "enum index out of range")
                   : 0;
    case EV_K_UNION:
        if (varint(r, 10, &v))
            return -1;
        if (v < 0 || (size_t)v >= json_array_size(def))
            return corrupt(r, "union branch out of range");
        return check_node(r, json_array_get(def, (size_t)v), depth + 1);
    case EV_K_RECORD: {
        size_t i;
        const json_t *f;
        json_array_foreach(json_object_get(def, "fields"), i,
                           f) if (check_node(r, json_object_get(f, "type"), depth + 1)) return -1;
        return 0;
    }
    case EV_K_ARRAY:
        return check_blocks(r, json_object_get(def, "items"), false, depth);
    case EV_K_MAP:
        return check_blocks(r, json_object_get(def, "values"), true, depth);
    case EV_K_INVALID:
        break;
    }
    return corrupt(r, "schema uses an unknown type");
}

int ev_avro_check(const ev_schema *s, const uint8_t *data, size_t size, sk_error *err)
{
    avro_cursor r = {.p = data, .end = data + size, .start = data, .names = s->names};
    if (check_node(&r, s->root, 0) == 0 && r.p != r.end)
        corrupt(&r, "trailing bytes after the value");
    if (!r.what)
        return 0;
    return sk_error_set(err, SK_ECORRUPT, "",
                        "payload does not match schema %u (%s): %s at byte %zu of %zu", s->id,
                        s->type, r.what, (size_t)(r.p - r.start), size);
}
