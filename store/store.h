/*
 * store.h -- Skald's durable, segmented, append-only event log.
 *
 * The log is the source of truth. It is a directory of segments named by the position of
 * their first record; docs/log-format.md gives the byte layout, the recovery rules and the
 * fault semantics.
 *
 * Calling sequence
 *   store_config cfg; store_config_init(&cfg, dir);  adjust cfg.fsync_mode etc.
 *   store_log_open(&cfg, &log, &err)        recovers the directory (creates it if needed)
 *   store_log_append_async(log, ...)        from any thread; completion runs on the
 *                                           log's completer thread once the batch is
 *                                           durable
 *   store_log_append(log, ...)              the same, waiting for the completion
 *   store_reader_open / store_reader_open_stream / store_reader_next / store_reader_close
 *   store_sub_open / store_sub_next / store_sub_wait / store_sub_close   tail the log
 *   store_log_close(log)                    completes queued appends, flushes, checkpoints
 *
 * Error rules
 *   0 or a negative code (negated errno, or SK_E* from events.h). Results go out through
 *   parameters marked out, written only on success.
 *   - SK_ECONFLICT: a conditional append found another stream version (result carries it).
 *   - SK_EBUSY: the append queue is full; nothing was queued; retry later (HTTP 503).
 *   - SK_EFAILED: durability became uncertain (fdatasync or write failed, a short write
 *     could not be undone). The log refuses appends until store_log_recover succeeds;
 *     appends waiting in the failed batch complete with SK_EFAILED, never with success.
 *   - -ENOSPC: the batch was rejected and the file cut back to where it was; nothing of it
 *     is acknowledged; the log stays writable.
 *   - SK_EBUSY from store_log_open or store_log_repair: another process has the log open
 *     for writing (the directory's LOCK file is held); read-only opens take no lock.
 *   - SK_ECORRUPT: damage that is not a torn tail. err names the segment and byte offset.
 *     A read-write open refuses the log until `skaldctl log repair --truncate-at P`.
 *
 * Threads
 *   store_log_append_async, store_log_append, the readers and the accessors may be called
 *   from any thread. A store_reader belongs to one thread at a time. Completions run on
 *   the log's completer thread, in commit order (with cfg.manual_commit, inside
 *   store_log_commit); they must not block or call store_log_append on the same log.
 */
#ifndef SKALD_STORE_H
#define SKALD_STORE_H

#include "events/events.h"

#include <stdint.h>
#include <sys/types.h>

/* ---------------------------------------------------------------------------------------
 * The I/O seam. Every file operation of store/ goes through one of these, so tests can
 * inject short writes, EIO, ENOSPC, torn writes and crashes. Every function returns a
 * non-negative result or a negated errno. store_io_posix() is the real thing.
 */
typedef int (*store_io_dirent_cb)(void *cb_ctx, const char *name);

typedef struct store_io {
    void *ctx;
    int (*open)(void *ctx, const char *path, int flags, int mode); /* returns an fd */
    int (*close)(void *ctx, int fd);
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t size, uint64_t offset);
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t size, uint64_t offset);
    int (*fdatasync)(void *ctx, int fd);
    int (*ftruncate)(void *ctx, int fd, uint64_t size);
    int (*file_size)(void *ctx, int fd, uint64_t *size_out);
    int (*rename)(void *ctx, const char *from, const char *to);
    int (*unlink)(void *ctx, const char *path);
    int (*mkdir)(void *ctx, const char *path, int mode); /* -EEXIST if it exists */
    int (*sync_dir)(void *ctx, const char *path);        /* fsync of a directory */
    /* Calls cb for each entry except "." and ".."; a non-zero return from cb stops. */
    int (*list_dir)(void *ctx, const char *path, store_io_dirent_cb cb, void *cb_ctx);
    /* Optional (NULL: no locking). Takes the exclusive lock of a log directory without
     * waiting: a handle >= 0, or -EWOULDBLOCK if another process holds it. */
    int (*lock_dir)(void *ctx, const char *path);
    void (*unlock_dir)(void *ctx, int handle);
} store_io;

const store_io *store_io_posix(void);

/* ---------------------------------------------------------------------------------------
 * Configuration.
 */
typedef enum store_fsync_mode {
    STORE_FSYNC_ALWAYS = 0, /* acknowledge only after fdatasync (default) */
    STORE_FSYNC_INTERVAL,   /* acknowledge after write; fdatasync every fsync_interval_ms */
    STORE_FSYNC_NEVER,      /* acknowledge after write; the kernel decides */
} store_fsync_mode;

/* "always" | "interval" | "never" -> mode; 0 or SK_EBADINPUT. */
int store_fsync_mode_parse(const char *text, store_fsync_mode *out);
const char *store_fsync_mode_name(store_fsync_mode mode);

typedef struct store_config {
    const char *dir;               /* the log directory (borrowed during open only) */
    store_fsync_mode fsync_mode;   /* default STORE_FSYNC_ALWAYS */
    uint32_t fsync_interval_ms;    /* for STORE_FSYNC_INTERVAL; default 10 */
    uint64_t segment_bytes_max;    /* roll to a new segment past this; default 64 MiB */
    uint32_t index_interval_bytes; /* one sparse index entry per this many bytes; 4096 */
    uint32_t batch_bytes_max;      /* most bytes one group commit writes; default 4 MiB */
    uint32_t queue_appends_max;    /* appends waiting for the appender; default 65536 */
    int read_only;                 /* open for reading; never writes, tolerates damage */
    int manual_commit;             /* no appender thread: the caller runs store_log_commit */
    /* Re-read every sealed segment at open and check each record. Off by default: with
     * a current checkpoint and index files, open reads only the active segment, so its
     * cost does not grow with the log (sealed segments are checked by readers, which
     * report damage as SK_ECORRUPT, and by store_log_verify). */
    int verify_on_open;
    const store_io *io; /* NULL means store_io_posix() */
} store_config;

void store_config_init(store_config *cfg, const char *dir);

/* ---------------------------------------------------------------------------------------
 * Opening and closing.
 */
typedef struct store_log store_log;

/*
 * Opens (creating if needed) and recovers the log in cfg->dir: truncates a torn tail to the
 * last whole append, rebuilds missing or stale indexes, loads the checkpoint so that only
 * what was written after it is scanned. On SK_ECORRUPT err names the segment and offset.
 * Ownership: *out belongs to the caller; close it with store_log_close.
 */
int store_log_open(const store_config *cfg, store_log **out, sk_error *err);

/* Completes every queued append, flushes, writes the checkpoint, frees. Accepts NULL.
 * Returns 0 or the first error met while flushing (the log is freed either way). */
int store_log_close(store_log *log);

/*
 * After SK_EFAILED: waits for in-flight work, drops every byte not known to be durable,
 * and runs recovery again. On success the log accepts appends again. Open readers and
 * subscriptions stay valid: recovery waits for any call in progress on them to return,
 * holds new calls back while it runs, and afterwards they carry on from their positions.
 * Not from a completion callback (it waits for the completer thread).
 */
int store_log_recover(store_log *log, sk_error *err);

/* ---------------------------------------------------------------------------------------
 * Appending.
 *
 * One append writes 1..STORE_APPEND_EVENTS_MAX events to one stream atomically: after a
 * crash either all of them are in the log or none is. Events get consecutive positions and
 * stream versions. expected_version makes the append conditional, atomically with respect
 * to every other append to the same stream.
 */
#define STORE_APPEND_EVENTS_MAX 1024
#define STORE_EXPECT_ANY        UINT64_MAX /* no check */
#define STORE_EXPECT_NO_STREAM  0          /* the stream must not exist yet (version 0) */

typedef struct store_append_result {
    int status;              /* 0, SK_ECONFLICT, SK_EFAILED, -ENOSPC, -EIO, SK_ECLOSED */
    uint64_t first_position; /* of the first event (on success) */
    uint64_t first_version;  /* of the first event (on success) */
    uint32_t count;          /* events appended (on success) */
    uint64_t stream_version; /* the stream's version after the append, or on conflict the
                                version it has */
    uint64_t last_position;  /* of the stream's last event after the append (on success;
                                a barrier on a stream with no events gets 0) */
} store_append_result;

/* Runs once per accepted append, on the completer thread, after the events are durable
 * (as cfg.fsync_mode defines it) or the append failed. res is valid during the call. */
typedef void (*store_append_cb)(void *cb_ctx, const store_append_result *res);

/*
 * Queues an append. Only the fields an event brings are read from events[i]: event_id
 * (generated if nil), type, occurred_at (now if 0), command_id, correlation_id,
 * schema_id, metadata, payload; stream_id, version and position are set by the log.
 * Everything is copied before return.
 * Returns 0 and cb will run exactly once; or an error and cb never runs: SK_EBUSY (queue
 * full), SK_EFAILED, SK_EREADONLY, SK_ECLOSED, SK_EBADINPUT (limits; err says which).
 */
int store_log_append_async(store_log *log, ev_str stream_id, uint64_t expected_version,
                           const ev_event *events, size_t count, store_append_cb cb, void *cb_ctx,
                           sk_error *err);

/*
 * Queues a barrier on a stream: it writes nothing, and its cb runs after every append
 * queued before it has completed, as one of them would. Status 0 if the stream is then at
 * expected_version (STORE_EXPECT_ANY: no check), with its version and last_position;
 * SK_ECONFLICT with its version otherwise; the error of the batch it shares with appends
 * that failed. A command that decided on a state some queued appends have not made
 * durable yet answers through one, so it never acknowledges what a failure could undo.
 * Returns as store_log_append_async does.
 */
int store_log_barrier_async(store_log *log, ev_str stream_id, uint64_t expected_version,
                            store_append_cb cb, void *cb_ctx, sk_error *err);

/* store_log_append_async and wait. The append's status is the return value; *out (may be
 * NULL) gets the whole result also on SK_ECONFLICT. */
int store_log_append(store_log *log, ev_str stream_id, uint64_t expected_version,
                     const ev_event *events, size_t count, store_append_result *out, sk_error *err);

/* With cfg.manual_commit only: runs one group commit over everything queued, running the
 * completions before it returns. Returns the number of appends and barriers completed, or
 * an error. */
int store_log_commit(store_log *log);

/* ---------------------------------------------------------------------------------------
 * Append window (window.c): one submitting thread keeps up to `size` appends in flight
 * on a log, so that many share each group commit (the seed and the benchmarks fill logs
 * this way).
 *
 *   store_window_create(log, size, cb, ctx, &w)
 *   store_window_append(w, ...) per append      waits while `size` are in flight
 *   store_window_drain(w)                       waits for all; the first failure
 *   store_window_destroy(w)                     once nothing is in flight
 *
 * Threads: append and drain from one thread at a time (the submitter); completions run on
 * the log's completer thread. A full window sleeps until half of it is free, so the
 * completer pays one wake-up per size/2 completions. Failure is sticky: after an append
 * of this window completed with an error, append refuses the next ones with that error.
 */
typedef struct store_window store_window;

typedef struct store_window_stats {
    uint64_t submitted;          /* appends queued (refused ones are not counted) */
    uint64_t completed;          /* of those, completed */
    uint64_t failed;             /* completed with a non-zero status */
    uint64_t busy_retries;       /* SK_EBUSY answers waited out and retried */
    uint64_t first_failed_index; /* 0-based, in submission order; valid when failed > 0 */
    int first_error;             /* the first failed completion's status, or 0 */
} store_window_stats;

/* Creates a window of `size` (> 0) appends on log. on_complete (may be NULL) runs for
 * every completion, on the completer thread, after the window's bookkeeping and before
 * drain can see it; the rules of store_append_cb apply. log is borrowed and must outlive
 * the window; *out is the caller's, freed with store_window_destroy. 0 or -ENOMEM. */
int store_window_create(store_log *log, uint32_t size, store_append_cb on_complete, void *cb_ctx,
                        store_window **out);
/* Queues one append as store_log_append_async does, after waiting (at most 60 s) while
 * the window is full. SK_EBUSY answers are retried after a short pause for up to 10 s.
 * 0; or the error of an earlier append of this window (nothing queued); or the error of
 * store_log_append_async (err says which, for SK_EBADINPUT); or -ETIMEDOUT (the log
 * completed nothing for 60 s). */
int store_window_append(store_window *w, ev_str stream_id, uint64_t expected_version,
                        const ev_event *events, size_t count, sk_error *err);
/* Waits until every queued append has completed. 0, or the status of the first append
 * that failed, or -ETIMEDOUT when one is overdue by 60 s: its completion still points at
 * w, so w may be destroyed only after the log is closed (which completes it) -- or not at
 * all. */
int store_window_drain(store_window *w);
/* Accepts NULL. Every queued append must have completed (asserted). */
void store_window_destroy(store_window *w);
/* The window's counters, from the submitting thread (exact once drain returned). */
void store_window_get_stats(const store_window *w, store_window_stats *out);

/* ---------------------------------------------------------------------------------------
 * State.
 */
typedef enum store_state {
    STORE_STATE_OK = 0,
    STORE_STATE_FAILED,    /* refuses appends until store_log_recover */
    STORE_STATE_READ_ONLY, /* opened read-only */
    STORE_STATE_CLOSING,
} store_state;

typedef struct store_log_stats {
    store_state state;
    uint64_t first_position; /* of the oldest record kept */
    uint64_t next_position;  /* the head: position the next event gets; records committed */
    uint64_t bytes;          /* all segment bytes */
    uint32_t segments;
    uint64_t streams;
    uint64_t batches;      /* group commits since open */
    uint64_t batch_events; /* events written by those commits */
    uint64_t fsyncs;
    uint64_t queue_depth;      /* appends waiting now */
    uint64_t corrupt_position; /* read-only open of a damaged log: first bad position */
    int corrupt;               /* 1 if the read-only open met mid-log damage */
    uint64_t durable_position; /* the durable head (store_log_durable_head) */
    uint32_t readers;          /* readers and subscriptions open now */
    uint32_t subscriptions;    /* of which subscriptions */
    uint64_t recoveries;       /* successful store_log_recover calls since open */
} store_log_stats;

void store_log_get_stats(store_log *log, store_log_stats *out);
/* The position the next appended event gets (= number of readable events). */
uint64_t store_log_head(store_log *log);
/* A stream's version (0 if it has no events). */
uint64_t store_log_stream_version(store_log *log, ev_str stream_id);

/* Observers for metrics: called after each group commit (one fdatasync, which may cover
 * several written batches) on the thread that made it durable: the syncer with
 * fsync=always, else the appender. */
typedef struct store_batch_stats {
    uint32_t appends; /* barriers included (a batch of barriers alone writes nothing and
                         is not reported) */
    uint32_t events;
    uint64_t bytes;
    uint64_t write_ns;
    uint64_t fsync_ns; /* 0 if no fdatasync ran */
} store_batch_stats;
typedef void (*store_batch_cb)(void *cb_ctx, const store_batch_stats *stats);
void store_log_set_batch_observer(store_log *log, store_batch_cb cb, void *cb_ctx);

/* ---------------------------------------------------------------------------------------
 * Reading. A reader sees events committed (written, in every fsync mode) before each
 * store_reader_next call; a subscription (below) sees only durable ones. The log tracks
 * its readers: they survive store_log_recover (see there), and must be closed before
 * store_log_close.
 */
typedef struct store_reader store_reader;

/* All events from from_position on, in position order. */
int store_reader_open(store_log *log, uint64_t from_position, store_reader **out);
/* One stream's events from from_version (1-based) on, in version order; cost is the
 * number of that stream's events read, not the size of the log. */
int store_reader_open_stream(store_log *log, ev_str stream_id, uint64_t from_version,
                             store_reader **out);
/*
 * 1 and *out filled: the strings and payload in *out are valid until the next call on
 * this reader. 0 at the end. SK_ECORRUPT (the CRC or framing failed; err names the segment
 * and offset) or a negated errno.
 */
int store_reader_next(store_reader *reader, ev_event *out, sk_error *err);
void store_reader_close(store_reader *reader); /* accepts NULL */

/* ---------------------------------------------------------------------------------------
 * Subscriptions (subscription.c): tailing the log as it grows.
 *
 *   store_sub_open(log, from, &sub)
 *   loop: while ((rc = store_sub_next(sub, &ev, &err)) == 1) handle(ev);
 *         if (rc < 0) stop;                          SK_ECANCELED after store_sub_stop
 *         store_sub_wait(sub, timeout_ms)            or wait for store_sub_fd in epoll/poll
 *   store_sub_close(sub)
 *
 * A subscription delivers every event from its position on, in position order, each
 * exactly once, across segment rollovers and across an in-place store_log_recover. It
 * only ever delivers events below the durable head (store_log_durable_head), so nothing
 * it hands out can be taken back by a crash:
 *   fsync=always    the durable head moves with each group commit, after its fdatasync;
 *   fsync=interval  it moves after each periodic fdatasync (and at a segment roll), so a
 *                   subscriber lags the acknowledged head by up to fsync_interval_ms;
 *   fsync=never     nothing is synced, so it follows the written head: a crash or a
 *                   failed write can take back events a subscriber saw, and
 *                   store_sub_next then answers SK_ETRUNCATED.
 * Waking costs nothing while a subscriber is busy: only a subscriber that has caught up
 * (store_sub_next returned 0) is signalled, once, when the durable head passes it.
 *
 * On a log opened read-only, the subscription follows the writer of the same directory
 * from another process: the writer publishes its durable head in the file DURABLE after
 * each sync; the follower reads the log up to it, never further, and is woken by inotify
 * when the file changes.
 *
 * Threads: a store_sub belongs to one thread at a time, except store_sub_stop and
 * store_sub_fd, which any thread may call. Close every subscription (and reader) before
 * store_log_close.
 */
typedef struct store_sub store_sub;

/* Opens a subscription delivering events from from_position on (it may be at or past the
 * head: it then waits for them). Ownership: *out belongs to the caller, who closes it
 * with store_sub_close. 0, -ENOMEM, -EMFILE (no descriptor for its eventfd). */
int store_sub_open(store_log *log, uint64_t from_position, store_sub **out);

/* 1 and *out filled (views valid until the next call on this subscription); 0 when it
 * has caught up with the durable head (its fd is then signalled when more is durable, or
 * when it is stopped); SK_ECANCELED once store_sub_stop was called; SK_ETRUNCATED if the
 * log was cut back below its position (fsync=never only); SK_ENOTFOUND if its position
 * is before the first record kept; SK_ECORRUPT or a negated errno from the read. */
int store_sub_next(store_sub *sub, ev_event *out, sk_error *err);

/* Waits until store_sub_next may have something to return, at most timeout_ms (< 0: no
 * limit). 1 when woken, 0 on timeout, SK_ECANCELED when stopped. Call it after
 * store_sub_next returned 0. */
int store_sub_wait(store_sub *sub, int timeout_ms);

/* A descriptor that becomes readable when store_sub_next may return more (or the
 * subscription was stopped): for one thread waiting on many subscriptions with epoll or
 * poll. Owned by the subscription; do not read or close it. */
int store_sub_fd(const store_sub *sub);

/* From any thread: wakes a waiting subscriber; its next store_sub_next and store_sub_wait
 * answer SK_ECANCELED. Idempotent. */
void store_sub_stop(store_sub *sub);

/* The position of the next event it will deliver. */
uint64_t store_sub_position(const store_sub *sub);

void store_sub_close(store_sub *sub); /* accepts NULL */

/* Every position below it is durable (see above for each fsync mode). */
uint64_t store_log_durable_head(store_log *log);

/* ---------------------------------------------------------------------------------------
 * Offline tools (skaldctl). They work on a directory, not an open log.
 */
typedef struct store_segment_info {
    char name[32]; /* "00000000000000000000.log" */
    uint64_t first_position;
    uint64_t next_position; /* one past its last record */
    uint64_t bytes;
} store_segment_info;

/* Lists the segments of an open log: calls cb for each, oldest first. */
int store_log_segments(store_log *log, int (*cb)(void *cb_ctx, const store_segment_info *),
                       void *cb_ctx);

typedef struct store_verify_report {
    uint64_t segments;
    uint64_t records;
    uint64_t bytes;
    uint64_t faults;
} store_verify_report;

/* Called once per fault found: the segment file, the byte offset, and what is wrong. */
typedef void (*store_fault_cb)(void *cb_ctx, const char *segment, uint64_t offset,
                               const char *what);

/* Called after each segment with the segments done and the total (may be NULL). */
typedef void (*store_progress_cb)(void *cb_ctx, uint64_t done, uint64_t total);

/* Checks every record's framing and CRC, that positions are contiguous across segments,
 * and every index against the segment. Reads only. Returns 0 if no fault, SK_ECORRUPT if
 * any (each reported through cb), or an error that stopped it. */
int store_log_verify(const char *dir, const store_io *io, store_fault_cb cb,
                     store_progress_cb progress, void *cb_ctx, store_verify_report *out);

/* Removes every record at position >= truncate_at (whole segments after it, the tail of
 * the one containing it), rebuilds indexes and the checkpoint, syncs. The log must not be
 * open. On success the log opens for writing again. */
int store_log_repair(const char *dir, const store_io *io, uint64_t truncate_at, sk_error *err);

/* ---------------------------------------------------------------------------------------
 * Snapshots (store/snapshot.c): the newest saved state of an aggregate, one row per
 * stream in a SQLite file beside the log (DATA/snapshots.db). A snapshot is a cache: losing
 * one costs a longer replay, never data, so writes are not fsynced one by one (WAL,
 * synchronous=NORMAL). Safe to call from several threads (one connection, a mutex).
 */
typedef struct store_snapshots store_snapshots;

#define STORE_SNAPSHOT_AGGREGATE_MAX 63

typedef struct store_snapshot {
    char stream_id[EV_STREAM_ID_MAX + 1];
    char aggregate[STORE_SNAPSHOT_AGGREGATE_MAX + 1]; /* "Product" */
    uint64_t version;       /* the stream version the state includes (>= 1) */
    uint32_t state_version; /* the aggregate's state-shape version when it was taken */
    int64_t taken_at_us;    /* set by save when 0 */
    char *state_json;       /* the state as compact JSON; malloc'd, freed by _clear */
} store_snapshot;

/* Opens (creating unless read_only) the snapshot file at path. */
int store_snapshots_open(const char *path, int read_only, store_snapshots **out, sk_error *err);
void store_snapshots_close(store_snapshots *snaps); /* accepts NULL */
/* Saves snap for its stream, replacing an older one; a snapshot at a lower version than
 * the one kept is ignored (0). snap is borrowed. */
int store_snapshot_save(store_snapshots *snaps, const store_snapshot *snap, sk_error *err);
/* 1 and *out filled (free with store_snapshot_clear), 0 if the stream has none, or an
 * error. */
int store_snapshot_load(store_snapshots *snaps, const char *stream_id, store_snapshot *out,
                        sk_error *err);
void store_snapshot_clear(store_snapshot *snap);
/* Calls cb for every snapshot in stream order (stops early and returns cb's value if it
 * is not 0). snap is valid during the call only. */
int store_snapshot_list(store_snapshots *snaps, int (*cb)(void *cb_ctx, const store_snapshot *),
                        void *cb_ctx, sk_error *err);
/* Deletes the snapshot of stream_id, or every snapshot of aggregate, or (both NULL) all;
 * *removed (may be NULL) gets the count. */
int store_snapshot_delete(store_snapshots *snaps, const char *stream_id, const char *aggregate,
                          uint64_t *removed, sk_error *err);

/* ---------------------------------------------------------------------------------------
 * The Kafka relay (relay.c, built as its own library skald_relay so that only programs
 * that publish link librdkafka; relay_checkpoint.c is in skald_store). docs/kafka.md
 * gives the topic, the wire format, the headers and the failure behaviour.
 *
 *   store_relay_config_init(&cfg); cfg.log = log; cfg.data_dir = d; cfg.brokers = b;
 *   store_relay_start(&cfg, &relay, &err)   checks the configuration, takes the data
 *                                           directory's relay lock, starts its thread
 *   store_relay_get_stats(relay, &st)       from any thread
 *   store_relay_stop(relay)                 before store_log_close
 *
 * The relay tails the log through a subscription (durable events only) from its
 * checkpoint, DATA/relay.checkpoint: the position of the next event to publish. Every
 * event below it was acknowledged by Kafka (idempotent producer, acks=all); the file is
 * replaced atomically, at most every checkpoint_interval_ms, so after a crash the relay
 * publishes again what lies between the file and what Kafka had acknowledged: a consumer
 * drops those duplicates by the event_id and position headers. A broker outage stops
 * nothing upstream: the relay keeps at most in_flight_max events in the producer, stops
 * reading the log while that many are unacknowledged, and goes on when Kafka returns.
 */
#define STORE_RELAY_CHECKPOINT_FILE "relay.checkpoint"
#define STORE_RELAY_LOCK_FILE       "relay.lock"
#define STORE_RELAY_TOPIC_MAX       249 /* Kafka's limit on a topic name */
#define STORE_RELAY_PROPS_MAX       64  /* extra librdkafka settings */

typedef struct store_relay store_relay;

typedef struct store_relay_config {
    store_log *log;                  /* borrowed; must outlive the relay */
    const char *data_dir;            /* checkpoint and lock files (borrowed during start) */
    const char *brokers;             /* "host:port,..." (borrowed during start) */
    const char *topic_prefix;        /* the topic is "<prefix>.events"; default "skald" */
    uint32_t partitions;             /* when the relay creates the topic; default 6 */
    uint32_t replication;            /* likewise; default 1 */
    uint32_t checkpoint_interval_ms; /* most often the checkpoint file is replaced; 200 */
    uint32_t in_flight_max;          /* events handed to Kafka and not acknowledged; 65536 */
    /* Extra librdkafka settings (SASL, TLS, compression): names and values, borrowed
     * during start. Values are never logged. */
    const char *prop_names[STORE_RELAY_PROPS_MAX];
    const char *prop_values[STORE_RELAY_PROPS_MAX];
    uint32_t prop_count;
} store_relay_config;

void store_relay_config_init(store_relay_config *cfg);

/* Starts the relay's thread. 0; SK_EBADINPUT when librdkafka refuses a setting (err names
 * it, never its value); SK_EBUSY when another relay holds the data directory's lock;
 * SK_ECORRUPT for a damaged checkpoint file; -errno. Nothing needs a reachable broker:
 * the thread retries until Kafka answers. Ownership: *out belongs to the caller, who
 * stops it with store_relay_stop. */
int store_relay_start(const store_relay_config *cfg, store_relay **out, sk_error *err);

/* Stops the thread: waits (at most about 10 s) for Kafka to acknowledge what is in flight,
 * writes the checkpoint, closes the subscription, frees. Accepts NULL. Returns 0 or the
 * error of the last checkpoint write. */
int store_relay_stop(store_relay *relay);

typedef enum store_relay_state {
    STORE_RELAY_STARTING = 0, /* creating the producer and the topic */
    STORE_RELAY_RUNNING,      /* publishing, or caught up */
    STORE_RELAY_BROKER_DOWN,  /* no broker answers; backing off, nothing lost */
    STORE_RELAY_RESTARTING,   /* a fatal producer error: a new producer from the checkpoint */
    STORE_RELAY_STOPPED,
} store_relay_state;

const char *store_relay_state_name(store_relay_state state);

#define STORE_RELAY_LATENCY_BUCKETS 14
extern const double store_relay_latency_bounds[STORE_RELAY_LATENCY_BUCKETS]; /* seconds */

typedef struct store_relay_stats {
    store_relay_state state;
    char topic[STORE_RELAY_TOPIC_MAX + 1];
    uint64_t published_position;  /* every event below it is acknowledged (the checkpoint) */
    uint64_t checkpoint_position; /* what the checkpoint file says now */
    uint64_t produced_position;   /* the next event to hand to the producer */
    uint64_t durable_head;        /* of the log */
    uint64_t lag_events;          /* durable_head - published_position */
    double lag_seconds;           /* age of the oldest durable event not acknowledged */
    uint64_t in_flight;
    uint64_t published_events; /* acknowledged since start */
    uint64_t errors;           /* delivery and broker errors since start */
    uint64_t restarts;         /* producers recreated after a fatal error */
    /* delivery latency (produce to acknowledgement): per-bucket counts, the last +Inf */
    uint64_t latency_buckets[STORE_RELAY_LATENCY_BUCKETS + 1];
    uint64_t latency_count;
    double latency_sum_s;
    char last_error[256]; /* "" if none */
} store_relay_stats;

void store_relay_get_stats(store_relay *relay, store_relay_stats *out);

/* relay_checkpoint.c (in skald_store: no librdkafka). Reads DATA/relay.checkpoint: 0 with
 * the position and the topic it is for; SK_ENOTFOUND if there is none (nothing was
 * published yet); SK_ECORRUPT if it fails its CRC. topic may be NULL. */
int store_relay_checkpoint_read(const char *data_dir, uint64_t *position_out, char *topic,
                                size_t topic_size);
/* Replaces DATA/relay.checkpoint atomically (temp file, fdatasync, rename, directory
 * sync). 0 or -errno. */
int store_relay_checkpoint_write(const char *data_dir, uint64_t position, const char *topic);

/* ---------------------------------------------------------------------------------------
 * The Kafka source (kafka_source.c and kafka_event.c, in skald_relay): the relay's topic
 * read back as the log, for read replicas and `skaldctl restore --from-kafka`.
 *
 *   store_ksrc_config_init(&cfg); cfg.brokers = b; cfg.topic = t; cfg.from_position = p;
 *   cfg.resume = text saved with p (or NULL)
 *   store_ksrc_open(&cfg, &src, &err)
 *   loop: while ((rc = store_ksrc_next(src, &ev, &err)) == 1) handle(ev);
 *         if (rc < 0) stop;                  SK_ECANCELED after store_ksrc_stop
 *         if (store_ksrc_at_end(src)) done;  with cfg.until_end only
 *         store_ksrc_wait(src, timeout_ms)   or poll store_ksrc_fd
 *   store_ksrc_checkpoint(src, buf, size)    what to save beside the next position
 *   store_ksrc_close(src)
 *
 * One consumer, assigned every partition of the topic (no consumer group), rebuilds each
 * message's envelope and payload from its headers and value, and merges the partitions
 * back into position order: positions are dense, so it hands out position N only when it
 * is the next one and waits at a gap. A message below the next position is a copy the
 * relay published again after a restart, and is dropped. Each partition buffers at most
 * buffer_max messages; a partition that runs that far ahead of the others is paused
 * until half of its buffer is used, so memory stays bounded whatever the skew.
 *
 * The resume point is a position plus every partition's offset: store_ksrc_checkpoint
 * gives it as text, offsets no later than the first message not yet handed out (so
 * resuming from it may read a message again, which the position then drops, and never
 * misses one). A resume text of another topic is ignored (the topic is read from its
 * beginning, dropping what lies below from_position).
 *
 * Threads: a source belongs to one thread, except store_ksrc_stop and store_ksrc_fd.
 */
#define STORE_KSRC_PARTITIONS_MAX 1024

typedef struct store_ksrc store_ksrc;

typedef struct store_ksrc_config {
    const char *brokers;          /* "host:port,..." (borrowed during open) */
    const char *topic;            /* e.g. "skald.events" (borrowed during open) */
    uint64_t from_position;       /* the first event to hand out */
    const char *resume;           /* store_ksrc_checkpoint's text for from_position, or NULL */
    uint32_t buffer_max;          /* messages buffered per partition; default 4096 */
    int until_end;                /* read up to the end offsets found at open, then at_end */
    uint32_t metadata_timeout_ms; /* how long open waits for the topic; default 30000 */
    /* Extra librdkafka settings (TLS, SASL), borrowed during open; values never logged. */
    const char *prop_names[STORE_RELAY_PROPS_MAX];
    const char *prop_values[STORE_RELAY_PROPS_MAX];
    uint32_t prop_count;
} store_ksrc_config;

void store_ksrc_config_init(store_ksrc_config *cfg);

/* Creates the consumer, finds the topic's partitions (waiting up to metadata_timeout_ms
 * for the topic to exist) and assigns them. 0; SK_EBADINPUT for a setting librdkafka
 * refuses; SK_ENOTFOUND if the topic did not appear; -ETIMEDOUT if the end offsets could
 * not be read (until_end). Ownership: *out is the caller's, freed by store_ksrc_close. */
int store_ksrc_open(const store_ksrc_config *cfg, store_ksrc **out, sk_error *err);

/* 1 and *out (views valid until the next call on this source); 0 when the next position
 * is not here yet (wait on the fd), or, with until_end, when the end is reached (see
 * store_ksrc_at_end); SK_ECANCELED after store_ksrc_stop; SK_ECORRUPT for a message that
 * is not an event of the relay (err names partition and offset) or, with until_end, a
 * position missing from the topic (err names it). */
int store_ksrc_next(store_ksrc *src, ev_event *out, sk_error *err);

/* With until_end: every partition was read up to its end offset found at open and
 * everything up to there was handed out. */
int store_ksrc_at_end(const store_ksrc *src);

/* Waits until store_ksrc_next may have more, at most timeout_ms (< 0: no limit). 1 when
 * woken, 0 on timeout, SK_ECANCELED when stopped. */
int store_ksrc_wait(store_ksrc *src, int timeout_ms);

/* A descriptor that becomes readable when store_ksrc_next may have more or the source
 * was stopped (an eventfd; read it empty before waiting again: store_ksrc_next does). */
int store_ksrc_fd(const store_ksrc *src);

/* From any thread: the next store_ksrc_next and store_ksrc_wait answer SK_ECANCELED. */
void store_ksrc_stop(store_ksrc *src);

/* The position of the next event it will hand out. */
uint64_t store_ksrc_position(const store_ksrc *src);

/* The highest position seen in the topic so far, plus one (for lag); 0 before any. */
uint64_t store_ksrc_seen_head(const store_ksrc *src);

/* The resume text for store_ksrc_position(src): "<topic> <p>:<offset>,...". 0, or
 * -ENOSPC if size is too small. */
int store_ksrc_checkpoint(const store_ksrc *src, char *buf, size_t size);

void store_ksrc_close(store_ksrc *src); /* accepts NULL */

/* CRC32C (Castagnoli), hardware-accelerated where the CPU has it. */
uint32_t store_crc32c(uint32_t crc, const void *data, size_t size);

#endif /* SKALD_STORE_H */
