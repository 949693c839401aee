/*
 * record.c -- the framing of one event in a segment file.
 *
 * A record is a frame: an 8-byte header and a body.
 *
 *   header  u32 length   bytes of the body
 *           u32 crc      CRC32C over the 4 length bytes and then the body
 *   body    u8  format version (1)
 *           u8  flags (0x01 last record of an atomic append; 0x40, 0x80 reserved)
 *           u16 metadata entry count
 *           u32 batch delta (position minus the first position of its write batch)
 *           u64 position, u64 stream version, i64 occurred_at (microseconds)
 *           16  event id, 16 command id, 16 correlation id (UUID bytes)
 *           u32 schema id, u16 stream id length, u16 type length, u32 payload length
 *           stream id, type, then per metadata entry: u16 key length, u16 value length,
 *           key, value; then the payload (Avro binary)
 *
 * All integers are little-endian. The CRC covers the length so that a damaged length is
 * caught as surely as damaged content. Decoding trusts nothing: every length is checked
 * against the frame before it is used, so a fuzzer can feed it arbitrary bytes.
 * docs/log-format.md is the prose version of this comment.
 */
#include "store/store_int.h"

#include <errno.h>
#include <string.h>

size_t store_record_size(const ev_event *ev)
{
    size_t n = STORE_FRAME_HEADER_SIZE + STORE_BODY_FIXED_SIZE + ev->stream_id.len + ev->type.len +
               ev->payload_size;
    for (uint32_t i = 0; i < ev->metadata_count; i++)
        n += 4 + ev->metadata[i].key.len + ev->metadata[i].value.len;
    return n;
}

void store_record_encode(const ev_event *ev, uint8_t flags, uint8_t *out)
{
    size_t total = store_record_size(ev);
    SK_ASSERT(total <= STORE_RECORD_MAX);
    uint8_t *b = out + STORE_FRAME_HEADER_SIZE;
    store_put_u32(out, (uint32_t)(total - STORE_FRAME_HEADER_SIZE));
    store_put_u32(out + 4, 0);
    b[0] = STORE_FORMAT_VERSION;
    b[1] = flags;
    store_put_u16(b + 2, (uint16_t)ev->metadata_count);
    store_put_u32(b + 4, 0);
    store_put_u64(b + 8, ev->position);
    store_put_u64(b + 16, ev->version);
    store_put_u64(b + 24, (uint64_t)ev->occurred_at);
    memcpy(b + 32, ev->event_id.bytes, 16);
    memcpy(b + 48, ev->command_id.bytes, 16);
    memcpy(b + 64, ev->correlation_id.bytes, 16);
    store_put_u32(b + 80, ev->schema_id);
    store_put_u16(b + 84, (uint16_t)ev->stream_id.len);
    store_put_u16(b + 86, (uint16_t)ev->type.len);
    store_put_u32(b + 88, ev->payload_size);
    uint8_t *p = b + STORE_BODY_FIXED_SIZE;
    memcpy(p, ev->stream_id.ptr, ev->stream_id.len);
    p += ev->stream_id.len;
    memcpy(p, ev->type.ptr, ev->type.len);
    p += ev->type.len;
    for (uint32_t i = 0; i < ev->metadata_count; i++) {
        const ev_metadata_entry *m = &ev->metadata[i];
        store_put_u16(p, (uint16_t)m->key.len);
        store_put_u16(p + 2, (uint16_t)m->value.len);
        p += 4;
        memcpy(p, m->key.ptr, m->key.len);
        p += m->key.len;
        memcpy(p, m->value.ptr, m->value.len);
        p += m->value.len;
    }
    if (ev->payload_size)
        memcpy(p, ev->payload, ev->payload_size);
    p += ev->payload_size;
    SK_ASSERT((size_t)(p - out) == total);
}

void store_record_seal(uint8_t *frame, uint64_t position, uint64_t version, uint32_t batch_delta,
                       uint8_t flags)
{
    uint8_t *b = frame + STORE_FRAME_HEADER_SIZE;
    uint32_t len = store_get_u32(frame);
    b[STORE_BODY_OFF_FLAGS] = flags;
    store_put_u32(b + STORE_BODY_OFF_BATCH_DELTA, batch_delta);
    store_put_u64(b + STORE_BODY_OFF_POSITION, position);
    store_put_u64(b + STORE_BODY_OFF_VERSION, version);
    uint32_t crc = store_crc32c(0, frame, 4);
    crc = store_crc32c(crc, b, len);
    store_put_u32(frame + 4, crc);
}

static int take(const uint8_t **p, const uint8_t *end, size_t n, const uint8_t **out)
{
    if ((size_t)(end - *p) < n)
        return -1;
    *out = *p;
    *p += n;
    return 0;
}

/* Parses a body whose CRC already matched: lengths must still add up exactly. */
static int decode_body(const uint8_t *b, uint32_t len, store_record *out, const char **what)
{
    if (b[0] != STORE_FORMAT_VERSION) {
        *what = "unknown record format version";
        return SK_ECORRUPT;
    }
    if (b[1] & ~STORE_FLAGS_KNOWN) {
        *what = "record uses flags this version does not know";
        return SK_ECORRUPT;
    }
    ev_event *ev = &out->ev;
    memset(out, 0, sizeof *out);
    out->flags = b[1];
    ev->metadata_count = store_get_u16(b + 2);
    out->batch_delta = store_get_u32(b + 4);
    ev->position = store_get_u64(b + 8);
    ev->version = store_get_u64(b + 16);
    ev->occurred_at = (int64_t)store_get_u64(b + 24);
    memcpy(ev->event_id.bytes, b + 32, 16);
    memcpy(ev->command_id.bytes, b + 48, 16);
    memcpy(ev->correlation_id.bytes, b + 64, 16);
    ev->schema_id = store_get_u32(b + 80);
    ev->stream_id.len = store_get_u16(b + 84);
    ev->type.len = store_get_u16(b + 86);
    ev->payload_size = store_get_u32(b + 88);
    if (ev->metadata_count > EV_METADATA_MAX || ev->stream_id.len == 0 ||
        ev->stream_id.len > EV_STREAM_ID_MAX || ev->type.len == 0 || ev->type.len > EV_TYPE_MAX ||
        ev->payload_size > EV_PAYLOAD_MAX || ev->version == 0 || out->batch_delta > ev->position) {
        *what = "record field out of range";
        return SK_ECORRUPT;
    }
    const uint8_t *p = b + STORE_BODY_FIXED_SIZE, *end = b + len, *v;
    if (take(&p, end, ev->stream_id.len, &v))
        goto short_body;
    ev->stream_id.ptr = (const char *)v;
    if (take(&p, end, ev->type.len, &v))
        goto short_body;
    ev->type.ptr = (const char *)v;
    for (uint32_t i = 0; i < ev->metadata_count; i++) {
        if (take(&p, end, 4, &v))
            goto short_body;
        ev_metadata_entry *m = &ev->metadata[i];
        m->key.len = store_get_u16(v);
        m->value.len = store_get_u16(v + 2);
        if (m->key.len > EV_METADATA_KEY_MAX || m->value.len > EV_METADATA_VALUE_MAX) {
            *what = "metadata entry too long";
            return SK_ECORRUPT;
        }
        if (take(&p, end, m->key.len, &v))
            goto short_body;
        m->key.ptr = (const char *)v;
        if (take(&p, end, m->value.len, &v))
            goto short_body;
        m->value.ptr = (const char *)v;
    }
    if (take(&p, end, ev->payload_size, &v))
        goto short_body;
    ev->payload = v;
    if (p != end) {
        *what = "record body longer than its fields";
        return SK_ECORRUPT;
    }
    out->frame_size = STORE_FRAME_HEADER_SIZE + len;
    return 0;
short_body:
    *what = "record body shorter than its fields";
    return SK_ECORRUPT;
}

int store_record_decode(const uint8_t *buf, size_t avail, store_record *out, size_t *need_out,
                        const char **what_out)
{
    const char *what = NULL;
    if (avail < STORE_FRAME_HEADER_SIZE) {
        if (need_out)
            *need_out = STORE_FRAME_HEADER_SIZE;
        return -EAGAIN;
    }
    uint32_t len = store_get_u32(buf);
    if (len < STORE_BODY_FIXED_SIZE || len > STORE_RECORD_MAX - STORE_FRAME_HEADER_SIZE) {
        if (what_out)
            *what_out = "impossible record length";
        return SK_ECORRUPT;
    }
    if (avail - STORE_FRAME_HEADER_SIZE < len) {
        if (need_out)
            *need_out = STORE_FRAME_HEADER_SIZE + (size_t)len;
        return -EAGAIN;
    }
    const uint8_t *body = buf + STORE_FRAME_HEADER_SIZE;
    uint32_t crc = store_crc32c(0, buf, 4);
    crc = store_crc32c(crc, body, len);
    if (crc != store_get_u32(buf + 4)) {
        if (what_out)
            *what_out = "CRC mismatch";
        return SK_ECORRUPT;
    }
    store_record tmp;
    int rc = decode_body(body, len, &tmp, &what);
    if (rc != 0) {
        if (what_out)
            *what_out = what;
        return rc;
    }
    *out = tmp;
    return 0;
}

uint64_t store_stream_hash(ev_str stream_id)
{
    return ev_hash_add(EV_HASH_INIT, stream_id.ptr, stream_id.len);
}
