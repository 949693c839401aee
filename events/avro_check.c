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
static bool zero_width(const ev_node *n, int depth)
{
    if (depth > EV_SCHEMA_DEPTH_MAX)
        return false;
    switch (n->kind) {
    case EV_K_NULL:
        return true;
    case EV_K_FIXED:
        return n->size == 0;
    case EV_K_RECORD:
        for (size_t i = 0; i < n->count; i++)
            if (!zero_width(n->fields[i].type.node, depth + 1))
                return false;
        return true;
    default:
        return false;
    }
}

static int check_node(avro_cursor *r, const ev_node *n, int depth);

static int check_blocks(avro_cursor *r, const ev_node *item, bool is_map, int depth)
{
    bool zero = !is_map && zero_width(item, 0);
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

static int check_node(avro_cursor *r, const ev_node *n, int depth)
{
    if (depth > EV_SCHEMA_DEPTH_MAX)
        return corrupt(r, "nested too deeply");
    int64_t v = 0;
    switch (n->kind) {
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
        return skip(r, n->size);
    case EV_K_ENUM:
        if (varint(r, 10, &v))
            return -1;
        return v < 0 || (size_t)v >= n->count ? corrupt(r, "enum index out of range") : 0;
    case EV_K_UNION:
        if (varint(r, 10, &v))
            return -1;
        if (v < 0 || (size_t)v >= n->count)
            return corrupt(r, "union branch out of range");
        return check_node(r, n->branches[v].node, depth + 1);
    case EV_K_RECORD:
        for (size_t i = 0; i < n->count; i++)
            if (check_node(r, n->fields[i].type.node, depth + 1))
                return -1;
        return 0;
    case EV_K_ARRAY:
        return check_blocks(r, n->items.node, false, depth);
    case EV_K_MAP:
        return check_blocks(r, n->items.node, true, depth);
    case EV_K_INVALID:
        break;
    }
    return corrupt(r, "schema uses an unknown type");
}

int ev_avro_check(const ev_schema *s, const uint8_t *data, size_t size, sk_error *err)
{
    avro_cursor r = {.p = data, .end = data + size, .start = data};
    if (check_node(&r, s->tree.root.node, 0) == 0 && r.p != r.end)
        corrupt(&r, "trailing bytes after the value");
    if (!r.what)
        return 0;
    return sk_error_set(err, SK_ECORRUPT, "",
                        "payload does not match schema %u (%s): %s at byte %zu of %zu", s->id,
                        s->type, r.what, (size_t)(r.p - r.start), size);
}
