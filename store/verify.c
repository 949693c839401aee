/*
 * verify.c -- offline checks and repair of a log directory (skaldctl log verify|repair).
 *
 * Verify reads every record of every segment, checks its framing and CRC and that
 * positions run on without gap from one segment into the next, then checks each sealed
 * segment's index files against the records actually found. It reports every fault it
 * can find (resynchronising after a bad frame) rather than stopping at the first, and it
 * never writes.
 *
 * Repair removes everything from a position on: later segments whole, and the tail of
 * the segment holding it, cut back to the start of the append that contains the
 * position (appends stay all-or-nothing). Index files of the cut segment and the
 * checkpoint are removed; the next open rebuilds them.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the scan of one segment found, for checking its indexes. */
typedef struct found {
    uint64_t *offsets; /* by relative position; UINT64_MAX where no record was found */
    uint64_t *hashes;
    uint64_t *versions;
    size_t count, cap;
} found;

static int found_put(found *f, uint64_t rel, uint64_t offset, uint64_t hash, uint64_t version)
{
    if (rel >= (1u << 30))
        return 0; /* a position this far off is itself reported; do not index it */
    if (rel >= f->cap) {
        size_t ncap = f->cap ? f->cap : 1024;
        while (ncap <= rel)
            ncap *= 2;
        uint64_t *o = realloc(f->offsets, ncap * 8), *h = NULL, *v = NULL;
        if (o)
            f->offsets = o;
        h = o ? realloc(f->hashes, ncap * 8) : NULL;
        if (h)
            f->hashes = h;
        v = h ? realloc(f->versions, ncap * 8) : NULL;
        if (!v)
            return -ENOMEM;
        f->versions = v;
        for (size_t i = f->cap; i < ncap; i++)
            f->offsets[i] = UINT64_MAX;
        f->cap = ncap;
    }
    f->offsets[rel] = offset;
    f->hashes[rel] = hash;
    f->versions[rel] = version;
    if (rel + 1 > f->count)
        f->count = rel + 1;
    return 0;
}

typedef struct verify_ctx {
    const store_io *io;
    const char *dir;
    store_fault_cb cb;
    void *cb_ctx;
    store_verify_report *rep;
} verify_ctx;

static void fault(verify_ctx *v, const char *file, uint64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fault(verify_ctx *v, const char *file, uint64_t offset, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    v->rep->faults++;
    if (v->cb)
        v->cb(v->cb_ctx, file, offset, what);
}

/* Scans one segment; *expected is the position it should start at and is moved past it. */
static int verify_segment(verify_ctx *v, uint64_t first, bool last, uint64_t *expected, found *f,
                          uint64_t *size_out)
{
    char name[64], path[4096];
    store_segment_name(first, ".log", name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", v->dir, name);
    int fd = v->io->open(v->io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    uint64_t size = 0;
    int rc = v->io->file_size(v->io->ctx, fd, &size);
    store_scan scan;
    if (rc == 0)
        rc = store_scan_init(&scan, v->io, fd, size, 0);
    if (rc) {
        v->io->close(v->io->ctx, fd);
        return rc;
    }
    if (first != *expected)
        fault(v, name, 0,
              "segment starts at position %" PRIu64 " but position %" PRIu64
              " was expected (records missing or duplicated)",
              first, *expected);
    *expected = first;
    store_record rec;
    const char *what = "unknown";
    bool after_end = true;
    for (;;) {
        rc = store_scan_next(&scan, &rec, &what);
        if (rc == 0 || (rc < 0 && rc != SK_ECORRUPT))
            break;
        if (rc == SK_ECORRUPT) {
            fault(v, name, scan.offset, "%s%s", what,
                  last ? " (if nothing valid follows, a torn tail that the next read-write "
                         "open cuts)"
                       : "");
            rc = store_scan_resync(&scan, &rec);
            if (rc <= 0)
                break;
            scan.offset += rec.frame_size;
        }
        uint64_t off = scan.offset - rec.frame_size;
        if (rec.ev.position != *expected)
            fault(v, name, off, "record holds position %" PRIu64 ", expected %" PRIu64,
                  rec.ev.position, *expected);
        *expected = rec.ev.position + 1;
        after_end = (rec.flags & STORE_FLAG_APPEND_END) != 0;
        v->rep->records++;
        rc = found_put(f, rec.ev.position - first, off, store_stream_hash(rec.ev.stream_id),
                       rec.ev.version);
        if (rc)
            break;
    }
    if (rc == 0 && !after_end)
        fault(v, name, scan.offset, "segment ends inside an atomic append");
    store_scan_close(&scan);
    v->io->close(v->io->ctx, fd);
    v->rep->bytes += size;
    *size_out = size;
    return rc < 0 ? rc : 0;
}

static void verify_indexes(verify_ctx *v, uint64_t first, uint64_t size, uint64_t next,
                           const found *f)
{
    store_segment seg = {
        .first_position = first, .size = size, .next_position = next, .sidx_fd = -1};
    char iname[64], sname[64], path[4096];
    store_segment_name(first, ".index", iname, sizeof iname);
    store_segment_name(first, ".sidx", sname, sizeof sname);
    snprintf(path, sizeof path, "%s/%s", v->dir, iname);
    int rc = store_index_load(v->io, v->dir, &seg);
    if (rc == SK_ECORRUPT)
        fault(v, iname, 0, "index file is damaged or does not describe its segment (stale)");
    for (uint32_t i = 0; rc == 0 && i < seg.index_count; i++) {
        const store_index_entry *e = &seg.index[i];
        if (e->rel_position >= f->count || f->offsets[e->rel_position] != e->offset)
            fault(v, iname, 48 + 8ull * i, "index entry %u points at no record of its position", i);
    }
    rc = store_sidx_load(v->io, v->dir, &seg);
    if (rc == SK_ECORRUPT)
        fault(v, sname, 0, "stream index is damaged or does not describe its segment (stale)");
    if (rc == 0 && seg.sidx_count != next - first)
        fault(v, sname, 0, "stream index has %u entries for %" PRIu64 " records", seg.sidx_count,
              next - first);
    for (uint32_t i = 0; rc == 0 && i < seg.sidx_count; i++) {
        const store_sidx_entry *e = &seg.sidx[i];
        uint32_t rel = e->rel_position;
        if (rel >= f->count || f->offsets[rel] != e->offset || f->hashes[rel] != e->hash ||
            f->versions[rel] != e->version) {
            fault(v, sname, 48 + 24ull * i, "stream index entry %u does not match its record", i);
            break;
        }
    }
    store_segment_free_indexes(&seg, v->io);
}

int store_log_verify(const char *dir, const store_io *io, store_fault_cb cb,
                     store_progress_cb progress, void *cb_ctx, store_verify_report *out)
{
    if (!io)
        io = store_io_posix();
    store_verify_report rep = {0};
    verify_ctx v = {io, dir, cb, cb_ctx, &rep};
    store_segment_list l;
    int rc = store_segments_list(io, dir, false, &l);
    uint64_t expected = l.count ? l.firsts[0] : 0;
    for (size_t i = 0; rc == 0 && i < l.count; i++) {
        found f = {0};
        uint64_t size = 0;
        bool last = i + 1 == l.count;
        rc = verify_segment(&v, l.firsts[i], last, &expected, &f, &size);
        if (rc == 0 && !last)
            verify_indexes(&v, l.firsts[i], size, l.firsts[i + 1], &f);
        rep.segments++;
        if (progress)
            progress(cb_ctx, i + 1, l.count);
        free(f.offsets);
        free(f.hashes);
        free(f.versions);
    }
    free(l.firsts);
    if (out)
        *out = rep;
    if (rc)
        return rc;
    return rep.faults ? SK_ECORRUPT : 0;
}

static void remove_file(const store_io *io, const char *dir, uint64_t first, const char *suffix)
{
    char name[64], path[4096];
    store_segment_name(first, suffix, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    io->unlink(io->ctx, path);
}

/* Offset at which to cut the segment so that positions >= truncate_at are gone and the
 * cut falls on an append boundary (or where damage starts, if earlier). */
static int find_cut(const store_io *io, int fd, uint64_t first, uint64_t truncate_at,
                    uint64_t *cut_out)
{
    uint64_t size = 0;
    int rc = io->file_size(io->ctx, fd, &size);
    store_scan scan;
    if (rc == 0)
        rc = store_scan_init(&scan, io, fd, size, 0);
    if (rc)
        return rc;
    uint64_t cut = 0, expected = first;
    store_record rec;
    const char *what;
    while (expected < truncate_at && (rc = store_scan_next(&scan, &rec, &what)) == 1) {
        if (rec.ev.position != expected)
            break;
        expected++;
        if (rec.flags & STORE_FLAG_APPEND_END)
            cut = scan.offset;
    }
    store_scan_close(&scan);
    if (rc < 0 && rc != SK_ECORRUPT)
        return rc;
    *cut_out = cut;
    return 0;
}

static int repair_locked(const char *dir, const store_io *io, uint64_t truncate_at, sk_error *err);

int store_log_repair(const char *dir, const store_io *io, uint64_t truncate_at, sk_error *err)
{
    if (!io)
        io = store_io_posix();
    int lock = -1;
    int rc = store_dir_lock(io, dir, &lock, err);
    if (rc)
        return rc;
    rc = repair_locked(dir, io, truncate_at, err);
    store_dir_unlock(io, lock);
    return rc;
}

static int repair_locked(const char *dir, const store_io *io, uint64_t truncate_at, sk_error *err)
{
    store_segment_list l;
    int rc = store_segments_list(io, dir, false, &l);
    if (rc) {
        return sk_error_set(err, rc, "", "cannot list log directory %s: %s", dir, sk_strerror(rc));
    }
    /* Whole segments at or after the cut go, newest first, so a crash midway leaves a
     * log that still ends cleanly. The first segment always stays (perhaps empty). */
    size_t keep = l.count;
    while (keep > 1 && l.firsts[keep - 1] >= truncate_at)
        keep--;
    for (size_t i = l.count; i > keep; i--) {
        remove_file(io, dir, l.firsts[i - 1], ".sidx");
        remove_file(io, dir, l.firsts[i - 1], ".index");
        remove_file(io, dir, l.firsts[i - 1], ".log");
    }
    if (keep > 0) {
        uint64_t first = l.firsts[keep - 1];
        char name[64], path[4096];
        store_segment_name(first, ".log", name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int fd = io->open(io->ctx, path, O_RDWR, 0);
        uint64_t cut = 0;
        rc = fd < 0 ? fd : find_cut(io, fd, first, truncate_at, &cut);
        if (rc == 0)
            rc = io->ftruncate(io->ctx, fd, cut);
        if (rc == 0)
            rc = io->fdatasync(io->ctx, fd);
        if (fd >= 0)
            io->close(io->ctx, fd);
        if (rc) {
            free(l.firsts);
            return sk_error_set(err, rc, "", "cannot cut %s: %s", path, sk_strerror(rc));
        }
        remove_file(io, dir, first, ".sidx");
        remove_file(io, dir, first, ".index");
    }
    char ckp[4096];
    snprintf(ckp, sizeof ckp, "%s/checkpoint", dir);
    io->unlink(io->ctx, ckp);
    snprintf(ckp, sizeof ckp, "%s/%s", dir, STORE_DAMAGED_FILE);
    io->unlink(io->ctx, ckp);
    free(l.firsts);
    rc = io->sync_dir(io->ctx, dir);
    if (rc)
        return sk_error_set(err, rc, "", "cannot sync directory %s: %s", dir, sk_strerror(rc));
    return 0;
}
