/*
 * scan.c -- walks the records of one segment file in order, through the I/O seam.
 *
 * Recovery, index rebuilds, verify and repair all need "the next whole record, or why
 * there is none"; this file is that one loop. It reads in large chunks so a scan of a
 * 64 MiB segment costs a few dozen reads, and it can resynchronise after a bad frame by
 * trying every later byte offset, which is how recovery tells a torn tail (nothing valid
 * follows from a later batch) from damage in the middle of a segment.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_CHUNK (1u << 20)

int store_scan_init(store_scan *scan, const store_io *io, int fd, uint64_t file_size,
                    uint64_t offset)
{
    memset(scan, 0, sizeof *scan);
    scan->io = io;
    scan->fd = fd;
    scan->file_size = file_size;
    scan->offset = offset;
    scan->buf_cap = STORE_RECORD_MAX + SCAN_CHUNK;
    scan->buf = malloc(scan->buf_cap);
    return scan->buf ? 0 : -ENOMEM;
}

void store_scan_close(store_scan *scan)
{
    free(scan->buf);
    scan->buf = NULL;
}

/* Makes [offset, offset + want) available in buf if the file has it; returns the number of
 * bytes available from offset (may be less at end of file) or a negated errno. */
static ssize_t scan_fill(store_scan *scan, uint64_t offset, size_t want)
{
    if (offset >= scan->buf_offset && offset + want <= scan->buf_offset + scan->buf_len)
        return (ssize_t)(scan->buf_offset + scan->buf_len - offset);
    uint64_t left = scan->file_size > offset ? scan->file_size - offset : 0;
    size_t n = want > SCAN_CHUNK ? want : SCAN_CHUNK;
    if (n > scan->buf_cap)
        n = scan->buf_cap;
    if (n > left)
        n = (size_t)left;
    ssize_t got = store_io_read_full(scan->io, scan->fd, scan->buf, n, offset);
    if (got < 0)
        return got;
    scan->buf_offset = offset;
    scan->buf_len = (size_t)got;
    return got;
}

/* Decodes the frame at offset: 1 found, 0 clean end, SK_ECORRUPT, or a negated errno. */
static int frame_at(store_scan *scan, uint64_t offset, store_record *rec, const char **what)
{
    if (offset >= scan->file_size)
        return 0;
    size_t need = STORE_FRAME_HEADER_SIZE;
    for (int tries = 0; tries < 3; tries++) {
        ssize_t avail = scan_fill(scan, offset, need);
        if (avail < 0)
            return (int)avail;
        const uint8_t *p = scan->buf + (offset - scan->buf_offset);
        int rc = store_record_decode(p, (size_t)avail, rec, &need, what);
        if (rc == 0)
            return 1;
        if (rc != -EAGAIN)
            return rc;
        if (offset + need > scan->file_size) {
            *what = "incomplete record at end of file";
            return SK_ECORRUPT;
        }
    }
    *what = "record could not be read whole";
    return SK_ECORRUPT;
}

int store_scan_next(store_scan *scan, store_record *rec, const char **what_out)
{
    const char *what = "unknown";
    int rc = frame_at(scan, scan->offset, rec, &what);
    if (rc == 1)
        scan->offset += rec->frame_size;
    if (rc == SK_ECORRUPT && what_out)
        *what_out = what;
    return rc;
}

int store_scan_resync(store_scan *scan, store_record *rec)
{
    for (uint64_t off = scan->offset + 1; off + STORE_FRAME_HEADER_SIZE <= scan->file_size; off++) {
        ssize_t avail = scan_fill(scan, off, STORE_FRAME_HEADER_SIZE + STORE_BODY_FIXED_SIZE);
        if (avail < 0)
            return (int)avail;
        /* Cheap filter before a CRC: a plausible length and the format version byte. */
        const uint8_t *p = scan->buf + (off - scan->buf_offset);
        if ((size_t)avail < STORE_FRAME_HEADER_SIZE + 1)
            continue;
        uint32_t len = store_get_u32(p);
        if (len < STORE_BODY_FIXED_SIZE || len > STORE_RECORD_MAX ||
            off + STORE_FRAME_HEADER_SIZE + len > scan->file_size ||
            p[STORE_FRAME_HEADER_SIZE] != STORE_FORMAT_VERSION)
            continue;
        const char *what;
        int rc = frame_at(scan, off, rec, &what);
        if (rc < 0 && rc != SK_ECORRUPT)
            return rc;
        if (rc == 1) {
            scan->offset = off;
            return 1;
        }
    }
    return 0;
}
