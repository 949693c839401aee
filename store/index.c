/*
 * index.c -- the index files of a sealed segment: "<first>.index" and "<first>.sidx".
 *
 * Both share one 48-byte header, all little-endian:
 *   8  magic "SKLDIDX1"        u32 kind (1 position index, 2 stream index)
 *   u32 entry count            u64 first position of the segment
 *   u64 segment bytes covered  u64 next position (one past the segment's last record)
 *   u32 CRC32C of the entries  u32 CRC32C of the 44 header bytes before it
 * then the entries: kind 1 {u32 relative position, u32 byte offset}; kind 2 {u64 stream
 * hash, u64 stream version, u32 relative position, u32 byte offset}, sorted by hash and
 * version.
 *
 * An index is only an accelerator: the segment is the truth. A file that is missing,
 * fails a CRC, or covers a different number of bytes than the segment holds (stale) is
 * ignored and rebuilt by scanning the segment.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_MAGIC         "SKLDIDX1"
#define INDEX_HEADER_SIZE   48
#define KIND_POSITION       1u
#define KIND_STREAM         2u
#define POSITION_ENTRY_SIZE 8
#define STREAM_ENTRY_SIZE   24
#define FENCE_STRIDE        256 /* stream index entries per fence */
#define FENCE_SIZE          16

/* Bytes after the header: the entries, and for a stream index its fences. */
static size_t body_size(uint32_t kind, uint32_t count)
{
    if (kind == KIND_POSITION)
        return (size_t)count * POSITION_ENTRY_SIZE;
    size_t fences = ((size_t)count + FENCE_STRIDE - 1) / FENCE_STRIDE;
    return (size_t)count * STREAM_ENTRY_SIZE + fences * FENCE_SIZE;
}

static void put_header(uint8_t *h, uint32_t kind, uint32_t count, const store_segment *seg,
                       const uint8_t *entries, size_t entries_size)
{
    memcpy(h, INDEX_MAGIC, 8);
    store_put_u32(h + 8, kind);
    store_put_u32(h + 12, count);
    store_put_u64(h + 16, seg->first_position);
    store_put_u64(h + 24, seg->size);
    store_put_u64(h + 32, seg->next_position);
    store_put_u32(h + 40, store_crc32c(0, entries, entries_size));
    store_put_u32(h + 44, store_crc32c(0, h, 44));
}

static int write_one(const store_io *io, const char *dir, const store_segment *seg, uint32_t kind)
{
    uint32_t count = kind == KIND_POSITION ? seg->index_count : seg->sidx_count;
    size_t esize = kind == KIND_POSITION ? POSITION_ENTRY_SIZE : STREAM_ENTRY_SIZE;
    size_t total = INDEX_HEADER_SIZE + body_size(kind, count);
    uint8_t *buf = malloc(total);
    if (!buf)
        return -ENOMEM;
    uint8_t *e = buf + INDEX_HEADER_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        if (kind == KIND_POSITION) {
            store_put_u32(e, seg->index[i].rel_position);
            store_put_u32(e + 4, seg->index[i].offset);
        } else {
            store_put_u64(e, seg->sidx[i].hash);
            store_put_u64(e + 8, seg->sidx[i].version);
            store_put_u32(e + 16, seg->sidx[i].rel_position);
            store_put_u32(e + 20, seg->sidx[i].offset);
        }
        e += esize;
    }
    /* Fences: the key of every FENCE_STRIDE-th entry, so a search reads them and one
     * block of entries instead of the whole file. */
    for (uint32_t i = 0; kind == KIND_STREAM && i < count; i += FENCE_STRIDE) {
        store_put_u64(e, seg->sidx[i].hash);
        store_put_u64(e + 8, seg->sidx[i].version);
        e += FENCE_SIZE;
    }
    put_header(buf, kind, count, seg, buf + INDEX_HEADER_SIZE, total - INDEX_HEADER_SIZE);
    char name[64];
    store_segment_name(seg->first_position, kind == KIND_POSITION ? ".index" : ".sidx", name,
                       sizeof name);
    int rc = store_io_write_file_atomic(io, dir, name, buf, total);
    free(buf);
    return rc;
}

int store_index_write(const store_io *io, const char *dir, const store_segment *seg)
{
    int rc = write_one(io, dir, seg, KIND_POSITION);
    if (rc == 0)
        rc = write_one(io, dir, seg, KIND_STREAM);
    return rc;
}

/* Reads and checks an index file against the segment; on success *entries_out points at
 * the entries inside *file_out (which the caller frees). */
static int load_checked(const store_io *io, const char *dir, const store_segment *seg,
                        uint32_t kind, uint8_t **file_out, uint32_t *count_out)
{
    char name[64], path[4096];
    store_segment_name(seg->first_position, kind == KIND_POSITION ? ".index" : ".sidx", name,
                       sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf;
    size_t size;
    int rc = store_io_read_file(io, path, (size_t)1 << 31, &buf, &size);
    if (rc)
        return rc;
    uint32_t count = size >= INDEX_HEADER_SIZE ? store_get_u32(buf + 12) : 0;
    if (size < INDEX_HEADER_SIZE || memcmp(buf, INDEX_MAGIC, 8) != 0 ||
        store_get_u32(buf + 44) != store_crc32c(0, buf, 44) || store_get_u32(buf + 8) != kind ||
        size != INDEX_HEADER_SIZE + body_size(kind, count) ||
        store_get_u32(buf + 40) != store_crc32c(0, buf + INDEX_HEADER_SIZE, size - 48) ||
        store_get_u64(buf + 16) != seg->first_position || store_get_u64(buf + 24) != seg->size ||
        store_get_u64(buf + 32) != seg->next_position) {
        free(buf);
        return SK_ECORRUPT;
    }
    *file_out = buf;
    *count_out = count;
    return 0;
}

int store_index_load(const store_io *io, const char *dir, store_segment *seg)
{
    uint8_t *buf;
    uint32_t count;
    int rc = load_checked(io, dir, seg, KIND_POSITION, &buf, &count);
    if (rc)
        return rc;
    store_index_entry *idx = malloc(((size_t)count + 1) * sizeof *idx);
    if (!idx) {
        free(buf);
        return -ENOMEM;
    }
    const uint8_t *e = buf + INDEX_HEADER_SIZE;
    for (uint32_t i = 0; i < count; i++, e += POSITION_ENTRY_SIZE) {
        idx[i].rel_position = store_get_u32(e);
        idx[i].offset = store_get_u32(e + 4);
        /* Entries must grow and stay inside the segment, or lookups would go astray. */
        if (idx[i].offset >= seg->size ||
            idx[i].rel_position >= seg->next_position - seg->first_position ||
            (i > 0 && (idx[i].offset <= idx[i - 1].offset ||
                       idx[i].rel_position <= idx[i - 1].rel_position))) {
            free(idx);
            free(buf);
            return SK_ECORRUPT;
        }
    }
    free(buf);
    free(seg->index);
    seg->index = idx;
    seg->index_count = count;
    seg->index_cap = count + 1;
    return 0;
}

int store_sidx_load(const store_io *io, const char *dir, store_segment *seg)
{
    uint8_t *buf;
    uint32_t count;
    int rc = load_checked(io, dir, seg, KIND_STREAM, &buf, &count);
    if (rc)
        return rc;
    store_sidx_entry *sidx = malloc(((size_t)count + 1) * sizeof *sidx);
    if (!sidx) {
        free(buf);
        return -ENOMEM;
    }
    const uint8_t *e = buf + INDEX_HEADER_SIZE;
    for (uint32_t i = 0; i < count; i++, e += STREAM_ENTRY_SIZE) {
        sidx[i].hash = store_get_u64(e);
        sidx[i].version = store_get_u64(e + 8);
        sidx[i].rel_position = store_get_u32(e + 16);
        sidx[i].offset = store_get_u32(e + 20);
        if (sidx[i].offset >= seg->size ||
            sidx[i].rel_position >= seg->next_position - seg->first_position) {
            free(sidx);
            free(buf);
            return SK_ECORRUPT;
        }
    }
    free(buf);
    free(seg->sidx);
    seg->sidx = sidx;
    seg->sidx_count = count;
    seg->sidx_cap = count + 1;
    seg->sidx_loaded = true;
    return 0;
}

int store_sidx_open(const store_io *io, const char *dir, store_segment *seg)
{
    char name[64], path[4096];
    store_segment_name(seg->first_position, ".sidx", name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = io->open(io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    uint8_t h[INDEX_HEADER_SIZE] = {0};
    uint64_t size = 0;
    int rc = io->file_size(io->ctx, fd, &size);
    ssize_t n = rc ? rc : store_io_read_full(io, fd, h, sizeof h, 0);
    uint32_t count = n == INDEX_HEADER_SIZE ? store_get_u32(h + 12) : 0;
    if (n != INDEX_HEADER_SIZE || memcmp(h, INDEX_MAGIC, 8) != 0 ||
        store_get_u32(h + 44) != store_crc32c(0, h, 44) || store_get_u32(h + 8) != KIND_STREAM ||
        size != INDEX_HEADER_SIZE + body_size(KIND_STREAM, count) ||
        store_get_u64(h + 16) != seg->first_position || store_get_u64(h + 24) != seg->size ||
        store_get_u64(h + 32) != seg->next_position) {
        io->close(io->ctx, fd);
        return n < 0 ? (int)n : SK_ECORRUPT;
    }
    uint32_t fences = (count + FENCE_STRIDE - 1) / FENCE_STRIDE;
    size_t fence_bytes = (size_t)fences * FENCE_SIZE;
    uint8_t *raw = malloc(fence_bytes + 1);
    uint64_t *keys = malloc((size_t)fences * 2 * sizeof *keys + 1);
    if (!raw || !keys) {
        free(raw);
        free(keys);
        io->close(io->ctx, fd);
        return -ENOMEM;
    }
    n = store_io_read_full(io, fd, raw, fence_bytes,
                           INDEX_HEADER_SIZE + (uint64_t)count * STREAM_ENTRY_SIZE);
    if (n < 0 || (size_t)n != fence_bytes) {
        free(raw);
        free(keys);
        io->close(io->ctx, fd);
        return n < 0 ? (int)n : SK_ECORRUPT;
    }
    for (uint32_t i = 0; i < fences; i++) {
        keys[2 * (size_t)i] = store_get_u64(raw + (size_t)i * FENCE_SIZE);
        keys[2 * (size_t)i + 1] = store_get_u64(raw + (size_t)i * FENCE_SIZE + 8);
    }
    free(raw);
    free(seg->fences);
    seg->fences = keys;
    seg->fence_count = fences;
    seg->sidx_fd = fd;
    seg->sidx_file_count = count;
    return 0;
}

uint32_t store_sidx_count(const store_segment *seg)
{
    return seg->sidx_loaded ? seg->sidx_count : seg->sidx_file_count;
}

static int decode_entry(const store_segment *seg, const uint8_t *e, store_sidx_entry *out)
{
    out->hash = store_get_u64(e);
    out->version = store_get_u64(e + 8);
    out->rel_position = store_get_u32(e + 16);
    out->offset = store_get_u32(e + 20);
    /* The entries' CRC is not read on this path (that would read the whole file); an
     * entry is trusted only as far as the record it points at checks out. */
    if (out->offset >= seg->size || out->rel_position >= seg->next_position - seg->first_position)
        return SK_ECORRUPT;
    return 0;
}

int store_sidx_get_run(const store_io *io, const store_segment *seg, uint32_t first, uint32_t count,
                       store_sidx_entry *out)
{
    if (seg->sidx_loaded) {
        memcpy(out, seg->sidx + first, (size_t)count * sizeof *out);
        return 0;
    }
    uint8_t buf[128 * STREAM_ENTRY_SIZE];
    while (count > 0) {
        uint32_t n = count < 128 ? count : 128;
        size_t bytes = (size_t)n * STREAM_ENTRY_SIZE;
        ssize_t got = store_io_read_full(io, seg->sidx_fd, buf, bytes,
                                         INDEX_HEADER_SIZE + (uint64_t)first * STREAM_ENTRY_SIZE);
        if (got != (ssize_t)bytes)
            return got < 0 ? (int)got : SK_ECORRUPT;
        for (uint32_t k = 0; k < n; k++) {
            int rc = decode_entry(seg, buf + (size_t)k * STREAM_ENTRY_SIZE, out + k);
            if (rc)
                return rc;
        }
        out += n;
        first += n;
        count -= n;
    }
    return 0;
}

static bool key_less(uint64_t hash_a, uint64_t version_a, uint64_t hash_b, uint64_t version_b)
{
    return hash_a < hash_b || (hash_a == hash_b && version_a < version_b);
}

int store_sidx_lower_bound(const store_io *io, const store_segment *seg, uint64_t hash,
                           uint64_t version, uint32_t *out)
{
    uint32_t count = store_sidx_count(seg), lo = 0, hi;
    if (seg->sidx_loaded) {
        hi = count;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (key_less(seg->sidx[mid].hash, seg->sidx[mid].version, hash, version))
                lo = mid + 1;
            else
                hi = mid;
        }
        *out = lo;
        return 0;
    }
    /* First fence not below the key; the answer lies in the block before it. */
    hi = seg->fence_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (key_less(seg->fences[2 * (size_t)mid], seg->fences[2 * (size_t)mid + 1], hash, version))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) {
        *out = 0;
        return 0;
    }
    uint32_t first = (lo - 1) * FENCE_STRIDE;
    uint32_t n = count - first < FENCE_STRIDE ? count - first : FENCE_STRIDE;
    store_sidx_entry block[FENCE_STRIDE];
    int rc = store_sidx_get_run(io, seg, first, n, block);
    if (rc)
        return rc;
    uint32_t k = 0;
    while (k < n && key_less(block[k].hash, block[k].version, hash, version))
        k++;
    *out = first + k;
    return 0;
}
