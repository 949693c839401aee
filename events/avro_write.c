/*
 * avro_write.c -- the primitives of Avro's binary encoding, appended to an ev_buf.
 *
 * The coerce walk (coerce.c) calls these as it checks a value, so a payload is checked
 * and encoded in one pass over the client's JSON, without the coerced copy and the avro-c
 * generic value that the two-step path built and threw away per event. The bytes are the
 * same as avro-c's (tests compare them for every sample payload): ints and longs as
 * zig-zag varints, floats and doubles little-endian, strings and bytes after their length,
 * and arrays and maps as one block of all their items followed by an empty block.
 */
#include "events/events_int.h"

#include <string.h>

int ev_avro_put_long(ev_buf *b, int64_t x)
{
    int rc = ev_buf_reserve(b, 10);
    if (rc)
        return rc;
    uint64_t z = ((uint64_t)x << 1) ^ (x < 0 ? UINT64_MAX : 0); /* zig-zag: sign to bit 0 */
    uint8_t *p = b->data + b->size;
    size_t n = 0;
    while (z > 0x7F) {
        p[n++] = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    p[n++] = (uint8_t)z;
    b->size += n;
    return 0;
}

/* Little-endian whatever the host's order, as the specification says. */
static int put_le(ev_buf *b, uint64_t bits, size_t n)
{
    int rc = ev_buf_reserve(b, n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        b->data[b->size + i] = (uint8_t)(bits >> (8 * i));
    b->size += n;
    return 0;
}

int ev_avro_put_float(ev_buf *b, float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return put_le(b, bits, 4);
}

int ev_avro_put_double(ev_buf *b, double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return put_le(b, bits, 8);
}

int ev_avro_put_bytes(ev_buf *b, const void *data, size_t size)
{
    int rc = ev_avro_put_long(b, (int64_t)size);
    return rc ? rc : ev_buf_append(b, data, size);
}
