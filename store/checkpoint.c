/*
 * checkpoint.c -- the stream table as of a segment boundary, so that opening the log reads
 * the streams from one file instead of scanning every segment.
 *
 * File "checkpoint", little-endian:
 *   8 magic "SKLDCKP1", u32 format (1), u32 reserved (0), u64 position, u64 stream count,
 *   then per stream: u16 name length, name, u64 version, u64 last position;
 *   then u32 CRC32C of everything before it.
 * `position` is the first position of a segment: the table reflects exactly the records
 * below it. Opening scans from there to the head (at most the active segment when the
 * checkpoint is current), so start-up time is bounded by the segment size and the number
 * of streams, not by the log's length. A missing or damaged checkpoint only costs time:
 * the table is rebuilt from position 0.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CKP_MAGIC  "SKLDCKP1"
#define CKP_HEADER 32
#define CKP_FILE   "checkpoint"

int store_checkpoint_build(uint64_t position, const store_streams *t, uint8_t **buf_out,
                           size_t *size_out)
{
    size_t size = CKP_HEADER + 4, count = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const store_stream *s = t->slots[i];
        if (s && s->version > 0) {
            size += 2 + s->len + 16;
            count++;
        }
    }
    uint8_t *buf = malloc(size);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, CKP_MAGIC, 8);
    store_put_u32(buf + 8, 1);
    store_put_u32(buf + 12, 0);
    store_put_u64(buf + 16, position);
    store_put_u64(buf + 24, count);
    uint8_t *p = buf + CKP_HEADER;
    for (size_t i = 0; i < t->cap; i++) {
        const store_stream *s = t->slots[i];
        if (!s || s->version == 0)
            continue;
        store_put_u16(p, (uint16_t)s->len);
        memcpy(p + 2, s->name, s->len);
        p += 2 + s->len;
        store_put_u64(p, s->version);
        store_put_u64(p + 8, s->last_position);
        p += 16;
    }
    store_put_u32(p, store_crc32c(0, buf, (size_t)(p - buf)));
    SK_ASSERT((size_t)(p - buf) + 4 == size);
    *buf_out = buf;
    *size_out = size;
    return 0;
}

int store_checkpoint_save(const store_io *io, const char *dir, const uint8_t *buf, size_t size)
{
    return store_io_write_file_atomic(io, dir, CKP_FILE, buf, size);
}

int store_checkpoint_write(const store_io *io, const char *dir, uint64_t position,
                           const store_streams *t)
{
    uint8_t *buf;
    size_t size;
    int rc = store_checkpoint_build(position, t, &buf, &size);
    if (rc == 0) {
        rc = store_checkpoint_save(io, dir, buf, size);
        free(buf);
    }
    return rc;
}

int store_checkpoint_load(const store_io *io, const char *dir, store_streams *t,
                          uint64_t *position_out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, CKP_FILE);
    uint8_t *buf;
    size_t size;
    int rc = store_io_read_file(io, path, (size_t)1 << 32, &buf, &size);
    if (rc)
        return rc;
    rc = SK_ECORRUPT;
    if (size < CKP_HEADER + 4 || memcmp(buf, CKP_MAGIC, 8) != 0 || store_get_u32(buf + 8) != 1 ||
        store_get_u32(buf + size - 4) != store_crc32c(0, buf, size - 4))
        goto out;
    uint64_t count = store_get_u64(buf + 24);
    const uint8_t *p = buf + CKP_HEADER, *end = buf + size - 4;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 2)
            goto out;
        uint16_t len = store_get_u16(p);
        if (len == 0 || len > EV_STREAM_ID_MAX || (size_t)(end - p) < 2u + len + 16u)
            goto out;
        ev_str name = {(const char *)p + 2, len};
        store_stream *s = store_streams_get(t, name, store_stream_hash(name));
        if (!s) {
            rc = -ENOMEM;
            goto out;
        }
        p += 2 + len;
        s->version = store_get_u64(p);
        s->last_position = store_get_u64(p + 8);
        p += 16;
    }
    if (p != end)
        goto out;
    *position_out = store_get_u64(buf + 16);
    rc = 0;
out:
    free(buf);
    return rc;
}
