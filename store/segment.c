/*
 * segment.c -- names of segment files and the in-memory indexes of a segment.
 *
 * A segment is "<first position, 20 digits>.log", like Kafka's, so a directory listing
 * sorted by name is sorted by position. Beside it, once it is sealed, live
 * "<first>.index" (sparse: one entry per index_interval_bytes, position -> byte offset) and
 * "<first>.sidx" (every record: stream hash and version -> position and byte offset,
 * sorted by hash then version). index.c writes and loads those files.
 */
#include "store/store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_segment_name(uint64_t first_position, const char *suffix, char *out, size_t size)
{
    snprintf(out, size, "%020" PRIu64 "%s", first_position, suffix);
}

int store_segment_parse_name(const char *name, uint64_t *first_out)
{
    if (strlen(name) != 24 || strcmp(name + 20, ".log") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *first_out = v;
    return 1;
}

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, (size_t)n * elem);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

int store_index_push(store_segment *seg, uint64_t position, uint64_t offset,
                     uint32_t interval_bytes)
{
    if (seg->index_count > 0 && offset < seg->index_next_offset)
        return 0;
    int rc = grow((void **)&seg->index, &seg->index_cap, seg->index_count + 1, sizeof *seg->index);
    if (rc)
        return rc;
    SK_ASSERT(position >= seg->first_position && offset <= UINT32_MAX);
    seg->index[seg->index_count++] = (store_index_entry){
        .rel_position = (uint32_t)(position - seg->first_position),
        .offset = (uint32_t)offset,
    };
    seg->index_next_offset = offset + interval_bytes;
    return 0;
}

int store_sidx_push(store_segment *seg, uint64_t hash, uint64_t version, uint64_t position,
                    uint64_t offset)
{
    int rc = grow((void **)&seg->sidx, &seg->sidx_cap, seg->sidx_count + 1, sizeof *seg->sidx);
    if (rc)
        return rc;
    seg->sidx[seg->sidx_count++] = (store_sidx_entry){
        .hash = hash,
        .version = version,
        .rel_position = (uint32_t)(position - seg->first_position),
        .offset = (uint32_t)offset,
    };
    return 0;
}

static int sidx_cmp(const void *a, const void *b)
{
    const store_sidx_entry *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return x->rel_position < y->rel_position ? -1 : x->rel_position > y->rel_position;
}

void store_sidx_sort(store_segment *seg)
{
    if (seg->sidx_count > 1)
        qsort(seg->sidx, seg->sidx_count, sizeof *seg->sidx, sidx_cmp);
}

uint64_t store_index_lookup(const store_segment *seg, uint64_t position,
                            uint64_t *entry_position_out)
{
    uint32_t lo = 0, hi = seg->index_count;
    uint64_t rel = position - seg->first_position;
    /* Last entry with rel_position <= rel. */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (seg->index[mid].rel_position <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) {
        *entry_position_out = seg->first_position;
        return 0;
    }
    *entry_position_out = seg->first_position + seg->index[lo - 1].rel_position;
    return seg->index[lo - 1].offset;
}

void store_segment_free_indexes(store_segment *seg, const store_io *io)
{
    if (seg->sidx_fd >= 0 && io)
        io->close(io->ctx, seg->sidx_fd);
    seg->sidx_fd = -1;
    seg->sidx_file_count = 0;
    free(seg->fences);
    seg->fences = NULL;
    seg->fence_count = 0;
    free(seg->index);
    free(seg->sidx);
    seg->index = NULL;
    seg->sidx = NULL;
    seg->index_count = seg->index_cap = 0;
    seg->sidx_count = seg->sidx_cap = 0;
    seg->sidx_loaded = false;
    seg->index_next_offset = 0;
}

typedef struct listing {
    store_segment_list *out;
    const store_io *io;
    const char *dir;
    bool remove_tmp;
    int rc;
} listing;

static int on_entry(void *ctx, const char *name)
{
    listing *l = ctx;
    store_segment_list *out = l->out;
    uint64_t first;
    size_t n = strlen(name);
    if (l->remove_tmp && n > 4 && strcmp(name + n - 4, ".tmp") == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", l->dir, name);
        l->io->unlink(l->io->ctx, path);
        return 0;
    }
    if (!store_segment_parse_name(name, &first))
        return 0;
    if (out->count == out->cap) {
        size_t ncap = out->cap ? out->cap * 2 : 16;
        uint64_t *p = realloc(out->firsts, ncap * sizeof *p);
        if (!p) {
            l->rc = -ENOMEM;
            return 1;
        }
        out->firsts = p;
        out->cap = ncap;
    }
    out->firsts[out->count++] = first;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int store_segments_list(const store_io *io, const char *dir, bool remove_tmp,
                        store_segment_list *out)
{
    memset(out, 0, sizeof *out);
    listing l = {.out = out, .io = io, .dir = dir, .remove_tmp = remove_tmp};
    int rc = io->list_dir(io->ctx, dir, on_entry, &l);
    if (rc == 0)
        rc = l.rc;
    if (rc != 0) {
        free(out->firsts);
        memset(out, 0, sizeof *out);
        return rc;
    }
    if (out->count > 1)
        qsort(out->firsts, out->count, sizeof *out->firsts, cmp_u64);
    return 0;
}
