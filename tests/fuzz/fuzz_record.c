/*
 * fuzz_record.c -- libFuzzer target over the log's record reader.
 *
 * The input is treated as the contents of a segment file. It is walked twice: frame by
 * frame with store_record_decode (what readers do), and through the segment scanner with
 * resynchronisation after every bad frame (what recovery and verify do). Nothing may
 * crash, read out of bounds, loop without end or leak, whatever the bytes.
 */
#include "store/store_int.h"

#include <errno.h>
#include <string.h>

typedef struct mem_file {
    const uint8_t *data;
    size_t size;
} mem_file;

static ssize_t mem_pread(void *ctx, int fd, void *buf, size_t size, uint64_t offset)
{
    const mem_file *f = ctx;
    if (offset >= f->size)
        return 0;
    size_t n = f->size - offset < size ? f->size - offset : size;
    memcpy(buf, f->data + offset, n);
    return (ssize_t)n;
}

static int mem_file_size(void *ctx, int fd, uint64_t *size_out)
{
    *size_out = ((const mem_file *)ctx)->size;
    return 0;
}

static void check_record(const store_record *rec, size_t avail)
{
    /* Every view must lie inside the frame the decoder accepted. */
    if (rec->frame_size > avail || rec->ev.stream_id.len > EV_STREAM_ID_MAX ||
        rec->ev.payload_size > EV_PAYLOAD_MAX || rec->ev.metadata_count > EV_METADATA_MAX)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    store_record rec;
    while (off < size) {
        size_t need = 0;
        const char *what = NULL;
        int rc = store_record_decode(data + off, size - off, &rec, &need, &what);
        if (rc != 0)
            break;
        check_record(&rec, size - off);
        off += rec.frame_size;
    }

    mem_file f = {data, size};
    store_io io = {.ctx = &f, .pread = mem_pread, .file_size = mem_file_size};
    store_scan scan;
    if (store_scan_init(&scan, &io, 0, size, 0) != 0)
        return 0;
    for (int steps = 0; steps < 100000; steps++) {
        const char *what = NULL;
        int rc = store_scan_next(&scan, &rec, &what);
        if (rc == 1)
            continue;
        if (rc != SK_ECORRUPT || store_scan_resync(&scan, &rec) != 1)
            break;
        scan.offset += rec.frame_size;
    }
    store_scan_close(&scan);
    return 0;
}
