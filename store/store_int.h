/*
 * store_int.h -- declarations shared inside store/ only. Nothing outside store/ includes
 * this file except tests and fuzzers that exercise one piece directly.
 */
#ifndef SKALD_STORE_INT_H
#define SKALD_STORE_INT_H

#include "store/store.h"
#include "trace/trace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* SK_ASSERT stays on in release builds: cheap, one condition, no side effects. */
#define SK_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            store_assert_fail(#cond, __FILE__, __LINE__);                                          \
    } while (0)
_Noreturn void store_assert_fail(const char *cond, const char *file, int line);

/* ---------------------------------------------------------------------------------------
 * Record framing (record.c). See docs/log-format.md for the byte layout.
 */
#define STORE_FORMAT_VERSION    1
#define STORE_DAMAGED_FILE      "DAMAGED" /* left by a read that met damage: reader.c */
#define STORE_FRAME_HEADER_SIZE 8         /* u32 length, u32 crc */
#define STORE_BODY_FIXED_SIZE   92        /* body bytes before the variable-length part */
#define STORE_RECORD_MAX        (2u << 20)

#define STORE_FLAG_APPEND_END 0x01u /* last record of an atomic append */
#define STORE_FLAG_COMPRESSED 0x40u /* reserved: not written by format version 1 */
#define STORE_FLAG_ENCRYPTED  0x80u /* reserved: not written by format version 1 */
#define STORE_FLAGS_KNOWN     (STORE_FLAG_APPEND_END)

_Static_assert(STORE_BODY_FIXED_SIZE == 1 + 1 + 2 + 4 + 8 + 8 + 8 + 16 + 16 + 16 + 4 + 2 + 2 + 4,
               "fixed body layout");
_Static_assert(STORE_FRAME_HEADER_SIZE + STORE_BODY_FIXED_SIZE + EV_STREAM_ID_MAX + EV_TYPE_MAX +
                       EV_METADATA_MAX * (4 + EV_METADATA_KEY_MAX + EV_METADATA_VALUE_MAX) +
                       EV_PAYLOAD_MAX <=
                   STORE_RECORD_MAX,
               "the largest valid event fits in one record");

/* Byte offsets inside the body, for the fields the appender patches in place. */
#define STORE_BODY_OFF_FLAGS       1
#define STORE_BODY_OFF_BATCH_DELTA 4
#define STORE_BODY_OFF_POSITION    8
#define STORE_BODY_OFF_VERSION     16

/* Size of the whole frame (header + body) that encoding ev would produce. */
size_t store_record_size(const ev_event *ev);
/* Encodes ev as a frame into out (exactly store_record_size(ev) bytes). Position, version,
 * flags and batch delta are written as given in ev / flags / 0; the CRC is left zero:
 * store_record_seal fills it after the appender patches the final fields. */
void store_record_encode(const ev_event *ev, uint8_t flags, uint8_t *out);
/* Writes position, version, batch delta, flags into an encoded frame, then its CRC. */
void store_record_seal(uint8_t *frame, uint64_t position, uint64_t version, uint32_t batch_delta,
                       uint8_t flags);

typedef struct store_record {
    ev_event ev; /* views into the frame */
    uint8_t flags;
    uint32_t batch_delta; /* position - first position of the batch it was written in */
    uint32_t frame_size;  /* header + body */
} store_record;

/*
 * Decodes the frame at buf (avail bytes available). Returns 0 and fills *out (views into
 * buf); -EAGAIN if the frame is longer than avail (need_out = bytes needed, if it is
 * plausible); SK_ECORRUPT if the length is impossible, the CRC fails, or the body is
 * malformed (what_out says which, a static string).
 */
int store_record_decode(const uint8_t *buf, size_t avail, store_record *out, size_t *need_out,
                        const char **what_out);

/* ---------------------------------------------------------------------------------------
 * Little-endian helpers.
 */
static inline void store_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void store_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void store_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t store_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t store_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t store_get_u64(const uint8_t *p)
{
    return (uint64_t)store_get_u32(p) | ((uint64_t)store_get_u32(p + 4) << 32);
}

/* FNV-1a 64 of a stream id. Part of the on-disk format (stream index files). */
uint64_t store_stream_hash(ev_str stream_id);

/* ---------------------------------------------------------------------------------------
 * I/O helpers over the seam (io.c).
 */
/* Writes all of buf at offset, retrying short writes. 0 or a negated errno; *written_out
 * gets how many bytes reached the file before an error. */
int store_io_write_all(const store_io *io, int fd, const void *buf, size_t size, uint64_t offset,
                       size_t *written_out);
/* Reads exactly size bytes at offset (short only at end of file: returns bytes read). */
ssize_t store_io_read_full(const store_io *io, int fd, void *buf, size_t size, uint64_t offset);
/* Replaces path atomically with data: temp file, fdatasync, rename, sync of dir. */
int store_io_write_file_atomic(const store_io *io, const char *dir, const char *name,
                               const void *data, size_t size);
/* Reads a whole file (at most max_size) into a malloc'd buffer the caller frees. */
int store_io_read_file(const store_io *io, const char *path, size_t max_size, uint8_t **out,
                       size_t *size_out);

/* ---------------------------------------------------------------------------------------
 * Segments and their indexes (segment.c, index.c).
 */
typedef struct store_index_entry {
    uint32_t rel_position; /* position - segment first position */
    uint32_t offset;       /* byte offset of that record in the segment */
} store_index_entry;

typedef struct store_sidx_entry {
    uint64_t hash;    /* store_stream_hash of the stream id */
    uint64_t version; /* the event's stream version */
    uint32_t rel_position;
    uint32_t offset;
} store_sidx_entry;
_Static_assert(sizeof(store_sidx_entry) == 24, "stream index entry is 24 bytes on disk");
_Static_assert(sizeof(store_index_entry) == 8, "position index entry is 8 bytes on disk");

typedef struct store_segment {
    uint64_t first_position;
    _Atomic uint64_t next_position; /* one past the last committed record */
    _Atomic uint64_t size;          /* committed bytes */
    uint64_t durable_size;          /* bytes known to be on disk (appender thread) */
    int fd;
    bool sealed;
    /* Sparse position index; guarded by log->mu. */
    store_index_entry *index;
    uint32_t index_count, index_cap;
    uint64_t index_next_offset; /* next entry once a record starts at or past this offset */
    /* Stream index of a sealed segment, guarded by log->mu: either in memory (sidx_loaded:
     * rebuilt by a scan) or searched in place in its .sidx file (sidx_fd, whose header
     * was checked when it was opened), so a first read after start-up costs a few
     * preads per segment rather than loading every index. */
    store_sidx_entry *sidx;
    uint32_t sidx_count, sidx_cap;
    bool sidx_loaded;
    int sidx_fd; /* -1 when not open */
    uint32_t sidx_file_count;
    uint64_t *fences; /* (hash, version) of every 256th file entry, from the file */
    uint32_t fence_count;
} store_segment;

void store_segment_name(uint64_t first_position, const char *suffix, char *out, size_t size);

/* The segments of a directory, sorted by first position; free firsts. */
typedef struct store_segment_list {
    uint64_t *firsts;
    size_t count, cap;
} store_segment_list;
/* Lists dir's segments (removing leftover *.tmp files if remove_tmp). On error the list
 * is empty and nothing needs freeing. */
int store_segments_list(const store_io *io, const char *dir, bool remove_tmp,
                        store_segment_list *out);
/* 1 if name is "<20 digits>.log", filling *first_out. */
int store_segment_parse_name(const char *name, uint64_t *first_out);

int store_index_push(store_segment *seg, uint64_t position, uint64_t offset,
                     uint32_t interval_bytes);
int store_sidx_push(store_segment *seg, uint64_t hash, uint64_t version, uint64_t position,
                    uint64_t offset);
void store_sidx_sort(store_segment *seg);
/* Writes <first>.index and <first>.sidx for a sealed segment (atomically, synced). */
int store_index_write(const store_io *io, const char *dir, const store_segment *seg);
/* Loads the position index; 0, or SK_ECORRUPT / -ENOENT if it is missing, damaged or does
 * not describe the segment as it is (stale): the caller rebuilds it by scanning. */
int store_index_load(const store_io *io, const char *dir, store_segment *seg);
int store_sidx_load(const store_io *io, const char *dir, store_segment *seg);
/* Opens the .sidx file of a sealed segment for searching in place: checks its header
 * against the segment and sets sidx_fd and sidx_file_count. SK_ECORRUPT or -ENOENT if it
 * cannot be used (the caller rebuilds the index by scanning). */
int store_sidx_open(const store_io *io, const char *dir, store_segment *seg);
/* Entry i of a sealed segment's stream index, from memory or from the file. */
/* Index of the first entry with (hash, version) at or after the key: from memory, or
 * from the fences and one block of the file. */
int store_sidx_lower_bound(const store_io *io, const store_segment *seg, uint64_t hash,
                           uint64_t version, uint32_t *out);
/* Entries [first, first + count) into out, with one read from the file. */
int store_sidx_get_run(const store_io *io, const store_segment *seg, uint32_t first, uint32_t count,
                       store_sidx_entry *out);
uint32_t store_sidx_count(const store_segment *seg);
/* Offset of the index entry at or before position (0 if none). */
uint64_t store_index_lookup(const store_segment *seg, uint64_t position,
                            uint64_t *entry_position_out);
void store_segment_free_indexes(store_segment *seg, const store_io *io);

/* ---------------------------------------------------------------------------------------
 * Segment scanning (scan.c): walks the records of one segment file.
 */
typedef struct store_scan {
    const store_io *io;
    int fd;
    uint64_t file_size;
    uint64_t offset; /* of the next record */
    uint8_t *buf;
    size_t buf_cap;
    uint64_t buf_offset; /* file offset of buf[0] */
    size_t buf_len;
} store_scan;

int store_scan_init(store_scan *scan, const store_io *io, int fd, uint64_t file_size,
                    uint64_t offset);
/* 1 and *rec at scan->offset (then advances), 0 at a clean end of file, SK_ECORRUPT at a
 * bad or incomplete frame (scan->offset stays at it; *what_out says why). */
int store_scan_next(store_scan *scan, store_record *rec, const char **what_out);
/* From the bad frame at scan->offset, looks for a later valid frame; 1 and *rec if one is
 * found (scan->offset moves to it), 0 if none. */
int store_scan_resync(store_scan *scan, store_record *rec);
void store_scan_close(store_scan *scan);

/* ---------------------------------------------------------------------------------------
 * The stream table (streams.c): every stream's committed version, and where the events
 * of the active segment are. Guarded by log->mu; written by the appender thread only.
 */
typedef struct store_tail_entry {
    uint64_t version;
    uint64_t position;
    uint64_t offset; /* in the active segment */
} store_tail_entry;

typedef struct store_stream {
    char *name; /* NUL-terminated; allocated with the entry, right after it */
    uint32_t len;
    uint64_t hash;
    uint64_t version;       /* committed */
    uint64_t last_position; /* of its last committed event */
    /* Appender thread only: the version including the appends assembled so far, valid
     * while pending_epoch is above log->settled_epoch (the batch is not yet published). */
    uint64_t pending_version;
    uint64_t pending_last_position;
    uint64_t pending_epoch;
    store_tail_entry *tail; /* its events in the active segment, in version order */
    uint32_t tail_count, tail_cap;
    struct store_stream *next_dirty; /* in log->dirty_streams while tail_count > 0 */
    bool dirty;
} store_stream;

typedef struct store_streams {
    store_stream **slots; /* open addressing */
    uint64_t *hashes;     /* hashes[i] == slots[i]->hash, so probing touches no entry */
    size_t cap;           /* power of two */
    size_t count;
    store_stream *dirty; /* streams with tail entries */
} store_streams;

int store_streams_init(store_streams *t);
void store_streams_free(store_streams *t);
store_stream *store_streams_find(const store_streams *t, ev_str name, uint64_t hash);
/* Finds or inserts (version 0). NULL on out of memory. */
store_stream *store_streams_get(store_streams *t, ev_str name, uint64_t hash);
int store_stream_tail_push(store_streams *t, store_stream *s, uint64_t version, uint64_t position,
                           uint64_t offset);
void store_streams_clear_tails(store_streams *t);
/* Builds seg's stream index (sorted by hash, version) from the tails of the streams. */
int store_streams_build_sidx(store_streams *t, store_segment *seg);
/* Stream-table checkpoint (checkpoint.c): its bytes for t as of position (the caller
 * frees them), their atomic write to dir, and both in one call. */
int store_checkpoint_build(uint64_t position, const store_streams *t, uint8_t **buf_out,
                           size_t *size_out);
int store_checkpoint_save(const store_io *io, const char *dir, const uint8_t *buf, size_t size);
int store_checkpoint_write(const store_io *io, const char *dir, uint64_t position,
                           const store_streams *t);
/* Loads the checkpoint into t (which must be empty). 0 and *position_out, or -ENOENT /
 * SK_ECORRUPT (the caller then scans from position 0). */
int store_checkpoint_load(const store_io *io, const char *dir, store_streams *t,
                          uint64_t *position_out);

/* ---------------------------------------------------------------------------------------
 * The log.
 */
typedef struct store_append_req {
    struct store_append_req *next;
    store_append_cb cb;
    void *cb_ctx;
    uint64_t expected_version;
    uint64_t hash;
    uint32_t count; /* 0: a barrier */
    uint32_t stream_len;
    size_t frames_size;
    store_append_result result;
    tr_ctx trace;    /* the first event's traceparent (tracing.c), when tracing is on */
    char *stream_id; /* points into data */
    uint8_t *frames; /* points into data: count encoded frames */
    uint8_t data[];
} store_append_req;

struct store_log {
    store_config cfg;
    char *dir;
    const store_io *io;

    /* Guards segments, the indexes of the active segment and the stream table. */
    pthread_mutex_t mu;
    store_segment **segments;
    uint32_t segment_count, segment_cap;
    store_streams streams;
    _Atomic uint64_t head; /* next position; all positions below it are readable */
    uint64_t corrupt_position;

    /* The append queue; guarded by q_mu. */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cond; /* signals the appender: work, or stop */
    store_append_req *q_head, *q_tail;
    uint64_t q_count;
    pthread_t appender;

    /* Completions of committed batches, run in order on the completer thread so the
     * appender can start the next batch at once; guarded by c_mu. */
    pthread_mutex_t c_mu;
    pthread_cond_t c_cond;
    store_append_req *c_head, *c_tail;
    pthread_t completer;

    /* The pipeline (fsync=always with an appender thread): batches written and handed to
     * the syncer thread, which makes them durable, publishes them and hands their
     * completions on, while the appender writes the next; guarded by pipe_mu. */
    pthread_mutex_t pipe_mu;
    pthread_cond_t pipe_cond; /* signals the syncer: a batch, or stop */
    pthread_cond_t pipe_done; /* signals the appender: batches settled */
    struct store_batch *pipe_head, *pipe_tail;
    struct store_batch *pipe_free; /* settled batches kept for reuse */
    uint32_t pipe_count;           /* handed and not yet settled */
    pthread_t syncer;
    /* Every batch up to this epoch is published or failed: a stream whose pending epoch
     * is not above it reads its committed version (appender.c). */
    _Atomic uint64_t settled_epoch;

    /* The sealer: writes a sealed segment's index files and the checkpoint built at its
     * roll off the appender thread (recover.c). Started by a roll; joined before the next
     * roll, a stop or a recovery. */
    pthread_t sealer;
    store_segment *sealing;
    uint8_t *sealing_ckp; /* the checkpoint's bytes (the sealer frees them), or NULL */
    size_t sealing_ckp_size;

    /* Appender thread only. */
    uint64_t batch_epoch;
    uint64_t wr_offset, wr_next; /* where the next batch goes (valid while wr_valid) */
    uint8_t *batch_buf;
    size_t batch_cap;
    uint64_t last_fsync_ns;

    store_batch_cb batch_cb;
    void *batch_cb_ctx;

    /* The durable head: every position below it survives a crash (subscription.c). */
    _Atomic uint64_t durable_head;
    int durable_fd; /* the DURABLE file of a writer (appender thread), -1 if none */

    /* Open readers and subscriptions, so recovery can hold them back and they can carry
     * on after it (reader.c, subscription.c). Lists and counts guarded by readers_mu. */
    pthread_mutex_t readers_mu;
    pthread_cond_t readers_cond; /* broadcast when a recovery ends */
    struct store_reader *readers;
    struct store_sub *subs;
    uint32_t reader_count, sub_count;
    _Atomic uint32_t subs_armed; /* subscriptions waiting to be signalled */
    _Atomic int recovering;      /* set while recovery holds readers back */
    _Atomic uint64_t generation; /* bumped by each recovery: segment pointers are stale */

    _Atomic uint64_t stat_batches, stat_batch_events, stat_fsyncs, stat_recoveries;
    _Atomic int state; /* store_state */
    int lock_handle;   /* the directory lock of a read-write open, or -1 */

    /* Flags, kept together: */
    bool corrupt;           /* guarded by mu: a read-only open met damage */
    bool stopping;          /* guarded by q_mu */
    bool appender_running;  /* owner: the thread that starts and stops the appender */
    bool c_stopping;        /* guarded by c_mu */
    bool completer_running; /* like appender_running */
    bool syncer_running;    /* like appender_running */
    bool sealer_running;    /* like appender_running */
    bool pipe_stopping;     /* guarded by pipe_mu */
    bool wr_valid;          /* appender thread */
    bool unsynced;          /* appender thread: bytes written, not yet fdatasync'd */
};

uint64_t store_now_ns(void);
void store_log_set_failed(store_log *log, const char *why, int err);
/* Open-time recovery into an initialised, empty log (recover.c). */
int store_log_load(store_log *log, sk_error *err);
/* Frees segments and the stream table (not the queue or the struct). */
void store_log_unload(store_log *log);
/* Takes the directory's lock (a no-op if the seam has none); SK_EBUSY if held elsewhere. */
int store_dir_lock(const store_io *io, const char *dir, int *handle_out, sk_error *err);
void store_dir_unlock(const store_io *io, int handle);
/* Seals the active segment and starts a new one at the head (appender thread). */
int store_log_roll(store_log *log);
/* Waits for the index files of the last sealed segment to be written (recover.c). */
void store_seal_wait(store_log *log);
/* The appender (appender.c). */
int store_appender_start(store_log *log);
void store_appender_stop(store_log *log);
void store_completer_stop(store_log *log);
int store_appender_commit(store_log *log);
void store_appender_fail_queue(store_log *log, int status);
/* Frees the batches kept for reuse (the appender is stopped). */
void store_appender_free(store_log *log);
/* Segment lookup under log->mu: the segment holding position (or NULL). */
store_segment *store_log_segment_for(store_log *log, uint64_t position);

/* ---------------------------------------------------------------------------------------
 * Readers the log tracks (reader.c) and the durable head (subscription.c).
 */
/* A position reader that stops at the durable head instead of the written head. */
int store_reader_open_durable(store_log *log, uint64_t from_position, store_reader **out);
uint64_t store_reader_position(const store_reader *r);
/* Recovery: waits until no reader is inside a call, and holds new calls back until
 * store_readers_resume, which also tells every reader its segment pointers are stale. */
void store_readers_hold(store_log *log);
void store_readers_resume(store_log *log);
/* Moves the durable head to position (never back, except after a recovery cut the log),
 * publishes it in the DURABLE file and signals the subscriptions that were waiting for
 * it. Appender thread (or store_log_commit), and recovery. */
void store_log_durable_advance(store_log *log, uint64_t position);
/* Sets the durable head after a load without signalling (open, recovery). */
void store_log_durable_reset(store_log *log, uint64_t position);
/* Read-only opens: the durable head from the writer's DURABLE file, capped at the head. */
int store_log_durable_load(store_log *log);
/* A writer opens the DURABLE file at load; a follower reads it: 0 and *out, -ENOENT
 * without a file, -EAGAIN if no whole value could be read. */
int store_durable_file_read(store_log *log, uint64_t *out);
int store_durable_file_open(store_log *log);
void store_durable_file_close(store_log *log);
/* Read-only follower: brings the log up to the writer's published durable head (new
 * records of the active segment, new segments). 1 if the head moved, 0 if not, or an
 * error. */
int store_log_follow(store_log *log);
/* Adds a segment (first position, open fd, size) at the end; under log->mu once the log
 * is shared (recover.c). */
int store_log_add_segment(store_log *log, uint64_t first, int fd, uint64_t size);
#define STORE_DURABLE_FILE "DURABLE"

/* ---- tracing.c: the log.commit span of one group commit (docs/tracing.md) ---- */
/* Opens it with a link to each append's command (NULL when tracing is off). */
tr_span *store_trace_commit_begin(const store_append_req *reqs, uint32_t appends);
void store_trace_commit_end(tr_span *s, size_t events, uint64_t bytes, uint64_t write_ns,
                            uint64_t fsync_ns);
/* relay.publish, one per Kafka delivery: a producer span in the event's trace, linked to
 * it; NULL when the event's trace is not sampled. */
tr_span *store_trace_publish_begin(const ev_event *ev, const char *topic);
/* Ends *s (if any) and sets it NULL: error NULL when the broker acknowledged the message
 * at partition and offset, else why not. */
void store_trace_publish_end(tr_span **s, const char *error, int32_t partition, int64_t offset);

#endif /* SKALD_STORE_INT_H */
