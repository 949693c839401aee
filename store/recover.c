/*
 * recover.c -- opening a log directory: find the segments, load or rebuild their indexes
 * and the stream table, and cut a torn tail.
 *
 * Rules (docs/log-format.md has the reasoning):
 *  1. Segments are the *.log files; their names give their first positions. Leftover
 *     *.tmp files (an index or checkpoint write cut short) are removed.
 *  2. The checkpoint gives the stream table as of a segment boundary C. Segments at or
 *     after C are scanned to bring the table to the head; before C only their index files
 *     are checked (a bad or stale index is rebuilt by scanning that one segment).
 *  3. A sealed segment must be whole: every frame valid, positions contiguous, ending
 *     exactly where the next segment begins. Anything else is corruption.
 *  4. In the last segment a bad frame is a torn tail if no valid frame after it belongs to
 *     a later write batch (each record carries its distance from its batch's first
 *     position). The tail is cut back to the end of the last complete append (the last
 *     record flagged APPEND_END), so an append is all-or-nothing. If a later batch does
 *     follow the damage, the damage is in the middle: it is reported with the segment and
 *     byte offset, and a read-write open refuses the log until an operator repairs it.
 *  5. A read-only open never writes: it exposes the log up to the first damage.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int make_dirs(const store_io *io, const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return -EINVAL;
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        int rc = io->mkdir(io->ctx, path, 0755);
        if (rc != 0 && rc != -EEXIST)
            return rc;
        path[i] = c;
    }
    return 0;
}

int store_log_add_segment(store_log *log, uint64_t first, int fd, uint64_t size)
{
    if (log->segment_count == log->segment_cap) {
        uint32_t ncap = log->segment_cap ? log->segment_cap * 2 : 16;
        store_segment **p = realloc(log->segments, ncap * sizeof *p);
        if (!p)
            return -ENOMEM;
        log->segments = p;
        log->segment_cap = ncap;
    }
    store_segment *seg = calloc(1, sizeof *seg);
    if (!seg)
        return -ENOMEM;
    seg->first_position = first;
    seg->next_position = first;
    seg->size = size;
    seg->durable_size = size;
    seg->fd = fd;
    seg->sidx_fd = -1;
    log->segments[log->segment_count++] = seg;
    return 0;
}

/* Creates an empty segment file and makes its directory entry durable before anything in
 * it can be acknowledged. The caller adds it to the log (store_log_roll does that under
 * log->mu together with clearing the stream tails). */
static int create_segment_file(store_log *log, uint64_t first, int *fd_out)
{
    char name[64], path[4096];
    store_segment_name(first, ".log", name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", log->dir, name);
    int fd = log->io->open(log->io->ctx, path, O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        return fd;
    int rc = log->io->sync_dir(log->io->ctx, log->dir);
    if (rc != 0) {
        log->io->close(log->io->ctx, fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static void damage(store_log *log, sk_error *err, const store_segment *seg, uint64_t offset,
                   uint64_t position, const char *what)
{
    char name[64];
    store_segment_name(seg->first_position, ".log", name, sizeof name);
    sk_error_set(err, SK_ECORRUPT, "",
                 "log segment %s/%s is damaged at byte offset %" PRIu64 " (position %" PRIu64
                 "): %s. The log refuses writes until it is repaired: run `skaldctl log "
                 "repair --truncate-at %" PRIu64 "` to drop that position and everything "
                 "after it, after saving a copy of the directory",
                 log->dir, name, offset, position, what, position);
    if (!log->corrupt) {
        log->corrupt = true;
        log->corrupt_position = position;
    }
}

/*
 * Pass 1 over a segment: where does its valid content end? Sets *end_out (byte offset
 * after the last whole append) and *next_out (its next position). Returns 0, SK_ECORRUPT
 * (err filled) or an I/O error.
 */
static int measure_segment(store_log *log, store_segment *seg, bool last, uint64_t file_size,
                           uint64_t *end_out, uint64_t *next_out, sk_error *err)
{
    store_scan scan;
    int rc = store_scan_init(&scan, log->io, seg->fd, file_size, 0);
    if (rc)
        return rc;
    uint64_t expected = seg->first_position, good_end = 0, good_next = expected;
    store_record rec;
    const char *what = "unknown";
    for (;;) {
        rc = store_scan_next(&scan, &rec, &what);
        if (rc == 1 && rec.ev.position != expected) {
            what = "position out of sequence";
            scan.offset -= rec.frame_size;
            rc = SK_ECORRUPT;
        }
        if (rc != 1)
            break;
        expected++;
        if (rec.flags & STORE_FLAG_APPEND_END) {
            good_end = scan.offset;
            good_next = expected;
        }
    }
    if (rc == SK_ECORRUPT) {
        uint64_t bad_offset = scan.offset;
        bool later_batch = !last;
        /* A torn write only damages the batch being written: look for a valid frame
         * written by a later batch. */
        while (!later_batch) {
            int r = store_scan_resync(&scan, &rec);
            if (r < 0) {
                store_scan_close(&scan);
                return r;
            }
            if (r == 0)
                break;
            if (rec.ev.position - rec.batch_delta > expected)
                later_batch = true;
        }
        if (later_batch) {
            damage(log, err, seg, bad_offset, expected, what);
            rc = SK_ECORRUPT;
        } else {
            rc = 0;
        }
    } else if (rc == 0 && !last && good_end != file_size) {
        damage(log, err, seg, good_end, good_next, "sealed segment ends inside an append");
        rc = SK_ECORRUPT;
    }
    store_scan_close(&scan);
    /* Even when damaged, report how far the valid content goes (read-only opens use it). */
    *end_out = good_end;
    *next_out = good_next;
    return rc;
}

/* Pass 2: index the records in [0, end) and, if with_streams, bring the stream table up
 * to date with them (tails too for the active segment). */
static int index_segment(store_log *log, store_segment *seg, uint64_t end, bool with_streams,
                         bool active, sk_error *err)
{
    store_scan scan;
    int rc = store_scan_init(&scan, log->io, seg->fd, end, 0);
    if (rc)
        return rc;
    store_segment_free_indexes(seg, log->io);
    store_record rec;
    const char *what;
    while ((rc = store_scan_next(&scan, &rec, &what)) == 1) {
        uint64_t off = scan.offset - rec.frame_size, pos = rec.ev.position;
        uint64_t hash = store_stream_hash(rec.ev.stream_id);
        rc = store_index_push(seg, pos, off, log->cfg.index_interval_bytes);
        /* The active segment's stream index is built from the tails when it is sealed. */
        if (rc == 0 && !active)
            rc = store_sidx_push(seg, hash, rec.ev.version, pos, off);
        if (rc == 0 && with_streams) {
            store_stream *s = store_streams_get(&log->streams, rec.ev.stream_id, hash);
            if (!s) {
                rc = -ENOMEM;
            } else if (rec.ev.version != s->version + 1) {
                damage(log, err, seg, off, pos, "stream version out of sequence");
                rc = SK_ECORRUPT;
            } else {
                s->version = rec.ev.version;
                s->last_position = pos;
                if (active)
                    rc = store_stream_tail_push(&log->streams, s, rec.ev.version, pos, off);
            }
        }
        if (rc != 0)
            break;
    }
    store_scan_close(&scan);
    if (rc < 0)
        return rc;
    if (!active) {
        store_sidx_sort(seg);
        seg->sidx_loaded = true;
    }
    return 0;
}

static int open_segments(store_log *log, const store_segment_list *l, sk_error *err)
{
    for (size_t i = 0; i < l->count; i++) {
        char name[64], path[4096];
        store_segment_name(l->firsts[i], ".log", name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", log->dir, name);
        bool last = i + 1 == l->count;
        int flags = (last && !log->cfg.read_only) ? O_RDWR : O_RDONLY;
        int fd = log->io->open(log->io->ctx, path, flags, 0);
        if (fd < 0)
            return sk_error_set(err, fd, "", "cannot open log segment %s: %s", path,
                                sk_strerror(fd));
        uint64_t size = 0;
        int rc = log->io->file_size(log->io->ctx, fd, &size);
        if (rc == 0)
            rc = store_log_add_segment(log, l->firsts[i], fd, size);
        if (rc != 0) {
            log->io->close(log->io->ctx, fd);
            return sk_error_set(err, rc, "", "cannot read log segment %s: %s", path,
                                sk_strerror(rc));
        }
    }
    return 0;
}

/* Drops segments from index on (read-only opens stop at damage). */
static void drop_segments_from(store_log *log, uint32_t index)
{
    while (log->segment_count > index) {
        store_segment *seg = log->segments[--log->segment_count];
        log->io->close(log->io->ctx, seg->fd);
        store_segment_free_indexes(seg, log->io);
        free(seg);
    }
}

static int load_checkpoint(store_log *log, uint64_t *c_out)
{
    uint64_t c = 0;
    int rc = store_checkpoint_load(log->io, log->dir, &log->streams, &c);
    bool valid = rc == 0;
    if (valid) {
        valid = false;
        for (uint32_t i = 0; i < log->segment_count; i++)
            if (log->segments[i]->first_position == c)
                valid = true;
    }
    if (!valid) {
        store_streams_free(&log->streams);
        rc = store_streams_init(&log->streams);
        if (rc)
            return rc;
        c = log->segment_count ? log->segments[0]->first_position : 0;
    }
    *c_out = c;
    return 0;
}

static int load_sealed(store_log *log, uint32_t i, uint64_t c, sk_error *err)
{
    store_segment *seg = log->segments[i];
    uint64_t file_size = seg->size;
    seg->next_position = log->segments[i + 1]->first_position;
    seg->sealed = true;
    bool need_streams = seg->first_position >= c;
    if (!need_streams && !log->cfg.verify_on_open && store_index_load(log->io, log->dir, seg) == 0)
        return 0;
    uint64_t end = 0, next = 0;
    int rc = measure_segment(log, seg, false, file_size, &end, &next, err);
    if (rc == 0 && next != seg->next_position) {
        damage(log, err, seg, end, next, "segment ends before the next segment begins");
        rc = SK_ECORRUPT;
    }
    if (rc != 0) {
        seg->size = end;
        seg->next_position = next;
        if (rc == SK_ECORRUPT && log->cfg.read_only)
            index_segment(log, seg, end, false, false, err);
        return rc;
    }
    rc = index_segment(log, seg, end, need_streams, false, err);
    if (rc == 0 && !log->cfg.read_only)
        rc = store_index_write(log->io, log->dir, seg);
    return rc;
}

static int load_active(store_log *log, sk_error *err)
{
    store_segment *seg = log->segments[log->segment_count - 1];
    uint64_t file_size = seg->size, end = 0, next = 0;
    int rc = measure_segment(log, seg, true, file_size, &end, &next, err);
    if (rc != 0 && rc != SK_ECORRUPT)
        return rc;
    if (rc == SK_ECORRUPT && !log->cfg.read_only)
        return rc;
    if (end < file_size && !log->cfg.read_only) {
        /* A torn tail: cut it, and make the cut durable before anything is appended. */
        rc = log->io->ftruncate(log->io->ctx, seg->fd, end);
        if (rc == 0)
            rc = log->io->fdatasync(log->io->ctx, seg->fd);
        if (rc != 0)
            return sk_error_set(err, rc, "", "cannot truncate the torn tail of %s: %s", log->dir,
                                sk_strerror(rc));
    }
    seg->size = end;
    seg->durable_size = end;
    seg->next_position = next;
    return index_segment(log, seg, end, true, true, err);
}

/* A read met damage earlier (reader.c left DAMAGED): no writes until an operator repairs. */
static int refuse_if_damaged(store_log *log, sk_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", log->dir, STORE_DAMAGED_FILE);
    uint8_t *text = NULL;
    size_t size = 0;
    if (store_io_read_file(log->io, path, 4096, &text, &size) != 0)
        return 0;
    int rc = sk_error_set(err, SK_ECORRUPT, "",
                          "the log refuses writes until it is repaired: a read found damage "
                          "(%.*s)",
                          (int)size, (const char *)text);
    free(text);
    return rc;
}

int store_log_load(store_log *log, sk_error *err)
{
    int rc = 0;
    if (!log->cfg.read_only) {
        rc = make_dirs(log->io, log->dir);
        if (rc)
            return sk_error_set(err, rc, "", "cannot create log directory %s: %s", log->dir,
                                sk_strerror(rc));
        /* One writer per directory; recovery after a failure keeps the lock it has. */
        if (log->lock_handle < 0 &&
            (rc = store_dir_lock(log->io, log->dir, &log->lock_handle, err)) != 0)
            return rc;
        rc = refuse_if_damaged(log, err);
        if (rc)
            return rc;
    }
    store_segment_list l;
    rc = store_segments_list(log->io, log->dir, !log->cfg.read_only, &l);
    if (rc != 0) {
        return sk_error_set(err, rc, "", "cannot list log directory %s: %s", log->dir,
                            sk_strerror(rc));
    }
    rc = open_segments(log, &l, err);
    free(l.firsts);
    if (rc)
        return rc;
    if (log->segment_count == 0) {
        if (log->cfg.read_only)
            return 0;
        int fd = -1;
        rc = create_segment_file(log, 0, &fd);
        if (rc == 0) {
            rc = store_log_add_segment(log, 0, fd, 0);
            if (rc != 0)
                log->io->close(log->io->ctx, fd);
        }
        if (rc)
            return sk_error_set(err, rc, "", "cannot create the first segment in %s: %s", log->dir,
                                sk_strerror(rc));
    }
    uint64_t c;
    rc = load_checkpoint(log, &c);
    for (uint32_t i = 0; rc == 0 && i + 1 < log->segment_count; i++) {
        rc = load_sealed(log, i, c, err);
        if (rc == SK_ECORRUPT && log->cfg.read_only) {
            drop_segments_from(log, i + 1);
            atomic_store(&log->head, log->segments[i]->next_position);
            return store_log_durable_load(log);
        }
    }
    if (rc)
        return rc;
    store_segment *active = log->segments[log->segment_count - 1];
    if (c != active->first_position && !log->cfg.read_only) {
        store_seal_wait(log); /* a roll's checkpoint must not land after this one */
        rc = store_checkpoint_write(log->io, log->dir, active->first_position, &log->streams);
        if (rc)
            return sk_error_set(err, rc, "", "cannot write the checkpoint in %s: %s", log->dir,
                                sk_strerror(rc));
    }
    rc = load_active(log, err);
    if (rc)
        return rc;
    atomic_store(&log->head, active->next_position);
    if (log->cfg.read_only)
        return store_log_durable_load(log);
    /* Everything the load kept is durable: a torn tail was cut and synced. */
    if (log->durable_fd < 0 && (rc = store_durable_file_open(log)) != 0)
        return sk_error_set(err, rc, "", "cannot open %s/%s: %s", log->dir, STORE_DURABLE_FILE,
                            sk_strerror(rc));
    store_log_durable_reset(log, active->next_position);
    return 0;
}

void store_log_unload(store_log *log)
{
    drop_segments_from(log, 0);
    free(log->segments);
    log->segments = NULL;
    log->segment_cap = 0;
    store_streams_free(&log->streams);
    log->corrupt = false;
    log->corrupt_position = 0;
}

int store_dir_lock(const store_io *io, const char *dir, int *handle_out, sk_error *err)
{
    *handle_out = -1;
    if (!io->lock_dir)
        return 0;
    int h = io->lock_dir(io->ctx, dir);
    if (h == -EWOULDBLOCK)
        return sk_error_set(err, SK_EBUSY, "",
                            "log directory %s is in use: another process has it open for "
                            "writing (its LOCK file is held); stop that process first",
                            dir);
    if (h < 0)
        return sk_error_set(err, h, "", "cannot lock log directory %s: %s", dir, sk_strerror(h));
    *handle_out = h;
    return 0;
}

void store_dir_unlock(const store_io *io, int handle)
{
    if (handle >= 0 && io->unlock_dir)
        io->unlock_dir(io->ctx, handle);
}

/* Writes a sealed segment's index files; then its stream index is searched in its file,
 * so memory does not grow with the number of segments sealed. If they cannot be written
 * the index stays in memory, and the next open rebuilds the files by scanning. */
static void seal_write(store_log *log, store_segment *seg)
{
    int rc = store_index_write(log->io, log->dir, seg);
    if (rc != 0) {
        char first[32];
        snprintf(first, sizeof first, "%llu", (unsigned long long)seg->first_position);
        sk_log(SK_LOG_WARN, "store",
               "cannot write the index files of a sealed segment; its index stays in memory "
               "and the next open rebuilds them",
               "segment", first, "error", sk_strerror(rc), "dir", log->dir, SK_LOG_END);
        return;
    }
    pthread_mutex_lock(&log->mu);
    free(seg->sidx);
    seg->sidx = NULL;
    seg->sidx_count = seg->sidx_cap = 0;
    seg->sidx_loaded = false;
    pthread_mutex_unlock(&log->mu);
}

/* Writes the checkpoint a roll built. A write that fails puts the log in the failed
 * state, as it did when the roll wrote it: the disk refused a write, and appends stop
 * until a recovery (which writes the checkpoint again at its open). */
static int checkpoint_save(store_log *log)
{
    if (!log->sealing_ckp)
        return 0;
    int rc = store_checkpoint_save(log->io, log->dir, log->sealing_ckp, log->sealing_ckp_size);
    if (rc != 0)
        store_log_set_failed(log, "cannot write the stream-table checkpoint", rc);
    free(log->sealing_ckp);
    log->sealing_ckp = NULL;
    return rc;
}

static void *sealer_main(void *arg)
{
    store_log *log = arg;
    seal_write(log, log->sealing);
    checkpoint_save(log);
    return NULL;
}

void store_seal_wait(store_log *log)
{
    if (!log->sealer_running)
        return;
    pthread_join(log->sealer, NULL);
    log->sealer_running = false;
    log->sealing = NULL;
}

/* The index files and the checkpoint are written by a thread of their own, so appends go
 * on into the new segment meanwhile (a 64 MiB segment's stream index is 8 MB, and writing
 * it held every append back for tens of milliseconds; the checkpoint of 185,000 streams,
 * another 8 MB, 17 ms). Manual-commit mode writes them here, so a run depends only on its
 * calls. ckp (NULL: none) is the checkpoint's bytes, freed here. Returns what writing
 * it here returned (0 when the sealer thread writes it). */
static int seal_start(store_log *log, store_segment *seg, uint8_t *ckp, size_t ckp_size)
{
    store_seal_wait(log);
    log->sealing = seg;
    log->sealing_ckp = ckp;
    log->sealing_ckp_size = ckp_size;
    if (!log->cfg.manual_commit && pthread_create(&log->sealer, NULL, sealer_main, log) == 0) {
        log->sealer_running = true;
        return 0;
    }
    seal_write(log, seg);
    log->sealing = NULL;
    return checkpoint_save(log);
}

int store_log_roll(store_log *log)
{
    store_segment *old = log->segments[log->segment_count - 1];
    const store_io *io = log->io;
    /* Seal: the old segment's bytes are durable before the new segment exists, so
     * recovery may treat every sealed segment as whole. Its index files follow (a missing
     * or stale one is rebuilt by scanning at the next open). */
    int rc = 0;
    if (log->unsynced) {
        rc = io->fdatasync(io->ctx, old->fd);
        if (rc != 0)
            return rc;
        log->unsynced = false;
        old->durable_size = old->size;
        if (log->cfg.fsync_mode == STORE_FSYNC_INTERVAL)
            store_log_durable_advance(log, old->next_position);
    }
    store_seal_wait(log); /* the one before (long done, unless segments are tiny) */
    pthread_mutex_lock(&log->mu);
    rc = store_streams_build_sidx(&log->streams, old);
    old->sealed = rc == 0;
    pthread_mutex_unlock(&log->mu);
    if (rc != 0)
        return rc;
    int fd = -1;
    rc = create_segment_file(log, old->next_position, &fd);
    if (rc != 0)
        return rc;
    /* Adding the segment and clearing the tails is one step for readers: tails describe
     * the active segment. */
    pthread_mutex_lock(&log->mu);
    rc = store_log_add_segment(log, old->next_position, fd, 0);
    if (rc == 0)
        store_streams_clear_tails(&log->streams);
    pthread_mutex_unlock(&log->mu);
    if (rc != 0) {
        io->close(io->ctx, fd);
        return rc;
    }
    /* The old segment is only read from now on; the stream table as of the new
     * segment's start bounds the next start-up's scan. Its bytes are taken now, before
     * any append to the new segment changes the table; the sealer writes them. */
    uint8_t *ckp = NULL;
    size_t ckp_size = 0;
    int built = store_checkpoint_build(old->next_position, &log->streams, &ckp, &ckp_size);
    rc = seal_start(log, old, ckp, ckp_size);
    return built ? built : rc;
}
