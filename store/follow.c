/*
 * follow.c -- a log opened read-only following its writer in another process.
 *
 * The writer publishes its durable head in DURABLE (subscription.c). Here a read-only
 * log brings itself up to that position: it reads the records after its active
 * segment's loaded end, indexes them as the writer's publish() does, and when that
 * segment ends before the target it opens the next one (named by the position it must
 * start at; the writer creates and syncs it before anything in it can be durable). It
 * never reads a record at or past the published position, so it never sees a torn or
 * unsynced write. Everything happens under log->mu; readers see the new head last.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

/* Indexes one record read from the active segment at offset. */
static int add_record(store_log *log, store_segment *seg, const store_record *rec, uint64_t offset)
{
    uint64_t hash = store_stream_hash(rec->ev.stream_id);
    store_stream *s = store_streams_get(&log->streams, rec->ev.stream_id, hash);
    if (!s)
        return -ENOMEM;
    if (rec->ev.version != s->version + 1)
        return SK_ECORRUPT;
    int rc = store_index_push(seg, rec->ev.position, offset, log->cfg.index_interval_bytes);
    if (rc == 0)
        rc = store_stream_tail_push(&log->streams, s, rec->ev.version, rec->ev.position, offset);
    if (rc == 0) {
        s->version = rec->ev.version;
        s->last_position = rec->ev.position;
    }
    return rc;
}

/* Reads records of the active segment up to (not including) target. */
static int follow_segment(store_log *log, store_segment *seg, uint64_t target)
{
    uint64_t file_size = 0;
    int rc = log->io->file_size(log->io->ctx, seg->fd, &file_size);
    if (rc)
        return rc;
    store_scan scan;
    rc = store_scan_init(&scan, log->io, seg->fd, file_size, seg->size);
    if (rc)
        return rc;
    uint64_t next = seg->next_position;
    store_record rec;
    const char *what;
    while (next < target && (rc = store_scan_next(&scan, &rec, &what)) == 1) {
        if (rec.ev.position != next) {
            rc = SK_ECORRUPT;
            break;
        }
        rc = add_record(log, seg, &rec, scan.offset - rec.frame_size);
        if (rc)
            break;
        next++;
        seg->size = scan.offset;
        seg->next_position = next;
    }
    store_scan_close(&scan);
    /* A frame that does not decode yet is the writer's unfinished batch: stop there. */
    return rc == SK_ECORRUPT || rc == 1 ? 0 : rc;
}

/* Opens the segment that starts at the active one's end; 1 if there is one. */
static int next_segment(store_log *log)
{
    uint64_t first = 0;
    if (log->segment_count > 0)
        first = log->segments[log->segment_count - 1]->next_position;
    char name[64], path[4096];
    store_segment_name(first, ".log", name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", log->dir, name);
    int fd = log->io->open(log->io->ctx, path, O_RDONLY, 0);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    if (log->segment_count > 0)
        log->segments[log->segment_count - 1]->sealed = true;
    int rc = store_log_add_segment(log, first, fd, 0);
    if (rc) {
        log->io->close(log->io->ctx, fd);
        return rc;
    }
    store_streams_clear_tails(&log->streams); /* tails describe the active segment */
    return 1;
}

int store_log_follow(store_log *log)
{
    uint64_t target = 0;
    if (!log->cfg.read_only || store_durable_file_read(log, &target) != 0)
        return 0;
    if (target <= atomic_load(&log->durable_head))
        return 0;
    int rc = 0;
    pthread_mutex_lock(&log->mu);
    /* Read under the lock: another subscription of this log may have followed further
     * (to a newer DURABLE) while this one waited for it, and the durable head must never
     * move back below what a subscription has delivered. */
    uint64_t before = atomic_load(&log->head), durable_before = atomic_load(&log->durable_head);
    uint64_t head = before;
    while (rc >= 0 && head < target && !log->corrupt) {
        if (log->segment_count > 0) {
            store_segment *seg = log->segments[log->segment_count - 1];
            rc = follow_segment(log, seg, target);
            head = seg->next_position;
            if (rc < 0 || head >= target)
                break;
        }
        rc = next_segment(log);
        if (rc <= 0)
            break;
    }
    if (head > before)
        atomic_store(&log->head, head);
    uint64_t durable = target < head ? target : head;
    if (durable > durable_before)
        atomic_store(&log->durable_head, durable);
    pthread_mutex_unlock(&log->mu);
    return rc < 0 ? rc : durable > durable_before;
}
