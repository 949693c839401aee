/*
 * bench.h -- shared pieces of skald-bench, the log benchmarks (private to tools/bench/).
 *
 * Calling sequence of a benchmark
 *   bench_opts_init(&opts); main.c parses argv into it
 *   bench_workdir_create(opts.dir, work, sizeof work)   a fresh directory for all files
 *   ... build or append to a log under it, measure, measure the raw baseline ...
 *   print the figures, then exactly one last line "BENCH <name> key=value ..."
 *   bench_workdir_remove(work) unless --keep
 *
 * Error rules
 *   Functions return 0 or a negative code (negated errno or SK_E*); a benchmark prints
 *   what failed on stderr and returns the code, and main exits 1.
 *
 * Every file the benchmark and its baseline write lives in one work directory, so the
 * store and the raw baseline always run on the same file system.
 */
#ifndef SKALD_BENCH_H
#define SKALD_BENCH_H

#include "store/store.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#define BENCH_PATH_MAX 4096

/* A caller bug: stays on in release builds, one condition, no side effects. */
#define BENCH_ASSERT(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "skald-bench: %s:%d: assertion failed: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct bench_opts {
    const char *dir;      /* parent of the work directory; NULL: the current directory */
    const char *log_dir;  /* log-read only: read this existing log instead of building one */
    uint64_t events;      /* events to append (log-append, log-read) or the largest log */
    uint32_t threads;     /* concurrent appenders (log-append, subscribe) */
    uint32_t subscribers; /* subscribe: subscriber threads tailing the log (default 8) */
    uint32_t window;      /* appends in flight per appender */
    uint32_t streams;     /* stream ids the events spread over */
    uint32_t payload_bytes;
    uint32_t runs;          /* repetitions of a read measurement */
    uint32_t read_bytes;    /* buffer of the raw read baseline */
    uint32_t stream_events; /* stream-read: events of the target stream */
    int keep;               /* leave the work directory in place */
    /* http-commands */
    const char *skald;    /* the skald binary; NULL: next to skald-bench in the build tree */
    uint32_t connections; /* wrk connections (default 64) */
    uint32_t duration_s;  /* seconds per wrk run (default 10); subscribe: most seconds of
                             appends (default 60) */
    uint32_t wrk_threads; /* wrk threads (default 1: the server needs the other core) */
    /* aggregate-load */
    uint64_t history_max; /* the longest history measured (default 100000) */
} bench_opts;

void bench_opts_init(bench_opts *opts);

/* Each benchmark: 0 on success, or a negative code after printing what failed. */
int bench_log_append(const bench_opts *opts);
int bench_log_read(const bench_opts *opts);
int bench_stream_read(const bench_opts *opts);
int bench_http_commands(const bench_opts *opts);
int bench_aggregate_load(const bench_opts *opts);
int bench_subscribe(const bench_opts *opts);
int bench_uuid_text(const bench_opts *opts);
int bench_saga(const bench_opts *opts);

/* http_commands.c: a `skald serve` child for the HTTP benchmarks. */
int bench_find_skald(const bench_opts *opts, char *out, size_t size);
/* Starts it on <work>/data with --roles roles, fsync=always; its pid (< 0 on failure). */
pid_t bench_skald_start(const char *skald, const char *work, const char *roles, uint16_t *port);
/* SIGTERM, then waits (bounded); 0 if it exited 0. */
int bench_skald_stop(pid_t pid);
/* One POST on a fresh connection: the status, or < 0; the start of the answer in reply. */
int bench_http_post(uint16_t port, const char *path, const char *ctype, const char *body,
                    size_t len, char *reply, size_t size);

/* ---------------------------------------------------------------------------------------
 * Work directory and environment (util.c).
 */

/* Creates <parent>/skald-bench-XXXXXX (parent NULL means "."); its path goes to out. */
int bench_workdir_create(const char *parent, char *out, size_t size);
/* Removes the directory and everything in it. */
int bench_workdir_remove(const char *path);
/* Name of the file system holding path ("ext4", "xfs", "tmpfs", ...) and whether an
 * fdatasync there reaches a device (0 for tmpfs and ramfs). */
const char *bench_fs_name(const char *path, int *durable_out);
/* Prints "<what>: <path> (file system: ...)"; warns when fdatasync is a no-op there. */
void bench_print_where(const char *what, const char *path);
/* Joins dir and name into out; -ENAMETOOLONG if it does not fit. */
int bench_path_join(char *out, size_t size, const char *dir, const char *name);

uint64_t bench_now_ns(void);
double bench_seconds(uint64_t ns);

/* Sorts values in place and returns the nearest-rank percentile (0 < pct <= 100). */
uint64_t bench_percentile(uint64_t *values, size_t count, double pct);
void bench_sort_u64(uint64_t *values, size_t count);

/* Stream ids "stream-000000" ... for count streams, in one allocation the caller frees with
 * bench_stream_names_free. */
typedef struct bench_stream_names {
    char (*names)[16];
    uint32_t count;
} bench_stream_names;
int bench_stream_names_init(bench_stream_names *sn, uint32_t count);
void bench_stream_names_free(bench_stream_names *sn);
ev_str bench_stream_name(const bench_stream_names *sn, uint64_t index);

/* A payload of size bytes filled with a fixed, non-repeating-looking pattern; caller frees. */
uint8_t *bench_payload_create(uint32_t size);

/* Opens the log in dir with the given fsync mode; prints the error on failure. */
int bench_log_open(const char *dir, store_fsync_mode mode, uint32_t queue_min, store_log **out);

/* ---------------------------------------------------------------------------------------
 * Windowed asynchronous appends (window.c): one submitting thread keeps at most `size`
 * appends in flight; completions (on the log's appender thread) free a slot. A submitter
 * that finds the window full sleeps until half of it is free, so the appender thread pays
 * one wake-up per size/2 completions, not one per completion.
 */
#define BENCH_CACHE_LINE 64

typedef struct bench_window {
    /* The submitting thread's; read by completions only through wake_at. */
    uint64_t submitted;      /* appends queued */
    uint64_t seen_completed; /* its last look at completed (saves a shared read per append) */
    uint64_t busy_retries;   /* SK_EBUSY answers retried */
    uint32_t size;
    pthread_mutex_t mu;  /* guards the sleep on cond */
    pthread_cond_t cond; /* signalled when completed reaches wake_at */
    /* The completions' (the log's appender thread), on a cache line of their own so the
     * submitter's writes never pull it away. */
    alignas(BENCH_CACHE_LINE) _Atomic uint64_t completed;
    uint64_t target;          /* appends this window queues in all (read-only) */
    _Atomic uint64_t last_ns; /* bench_now_ns() at the target-th completion */
    _Atomic uint64_t failed;  /* completions with a non-zero status */
    _Atomic int first_error;  /* status of the first failed completion */
    /* Written by the submitter when it sleeps, read by every completion. */
    alignas(BENCH_CACHE_LINE) _Atomic uint64_t wake_at; /* completed count awaited, or NONE */
} bench_window;

int bench_window_init(bench_window *w, uint32_t size, uint64_t target);
void bench_window_destroy(bench_window *w);
/* Waits for a free slot, queues one append of ev to stream, retrying SK_EBUSY for a bounded
 * time. 0, or the error of store_log_append_async, or -ETIMEDOUT. */
int bench_window_append(bench_window *w, store_log *log, ev_str stream, const ev_event *ev);
/* Waits until every append this window queued has completed. Aborts the process if one
 * is overdue, since its completion still points at w. Then 0, or the status of the first
 * append that failed. */
int bench_window_drain(bench_window *w);

/* Appends events one per append from one thread in index order (so positions follow the
 * index), each to stream_of(ctx, index), through a window of `window` appends. */
typedef ev_str (*bench_stream_of)(void *ctx, uint64_t index);
int bench_fill(store_log *log, uint64_t events, uint32_t payload_bytes, uint32_t window,
               bench_stream_of stream_of, void *ctx);

#endif /* SKALD_BENCH_H */
