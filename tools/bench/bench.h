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

#include "commands/commands.h"
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
    /* sse */
    uint32_t clients; /* feed clients (default 100) */
    uint32_t rate;    /* commands posted per second (default 2000) */
    /* aggregate-load */
    uint64_t history_max; /* the longest history measured (default 100000) */
    /* queries */
    uint32_t command_rate; /* commands/s sent while the queries run (default 5000) */
    uint32_t orders;       /* orders placed before the queries run (default 5000) */
    uint32_t customers;    /* customers they spread over (default 100) */
    /* idempotency */
    uint64_t keys;       /* keyed commands, each claimed and finished once (default 200000) */
    uint32_t body_bytes; /* the remembered answer's body (default 200) */
    /* relay */
    const char *brokers; /* --brokers: a running Kafka; NULL: start one with tools/kafka */
} bench_opts;

void bench_opts_init(bench_opts *opts);

/* Each benchmark: 0 on success, or a negative code after printing what failed. */
int bench_log_append(const bench_opts *opts);
int bench_log_read(const bench_opts *opts);
int bench_stream_read(const bench_opts *opts);
int bench_http_commands(const bench_opts *opts);
int bench_traced_commands(const bench_opts *opts);
int bench_aggregate_load(const bench_opts *opts);
int bench_command_path(const bench_opts *opts);
int bench_subscribe(const bench_opts *opts);
int bench_uuid_text(const bench_opts *opts);
int bench_queries(const bench_opts *opts);
int bench_sse(const bench_opts *opts);
/* Registers and stocks products b0..b<n-1> through the batch endpoint (http_commands.c). */
int bench_preload(uint16_t port, uint32_t n);
int bench_projection_catchup(const bench_opts *opts);
int bench_rebuild(const bench_opts *opts);
int bench_idempotency(const bench_opts *opts);
int bench_relay(const bench_opts *opts);
int bench_saga(const bench_opts *opts);

/* ---------------------------------------------------------------------------------------
 * A command bus in-process (bus_env.c), for aggregate-load and command-path.
 */
typedef struct bench_bus {
    ev_registry *events;
    store_log *log; /* in <work>/log, fsync=never */
    store_snapshots *snaps;
    cmd_bus *bus; /* the sample domain (cmd_domains) */
} bench_bus;
/* The source tree: $SKALD_SOURCE_DIR, else the one skald-bench was built from. */
const char *bench_source_dir(void);
/* Opens all four in work; on failure prints what failed (name: the benchmark) and leaves
 * nothing open. */
int bench_bus_open(bench_bus *b, const char *work, uint32_t snapshot_every, uint32_t cache_max,
                   const char *name);
void bench_bus_close(bench_bus *b);

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
/* CPU seconds (user + system) process pid has used, from /proc; with thread set, only
 * its threads whose name starts with it (libmicrohttpd's are "MHD-..."). -1 if unknown,
 * including when no thread has that name.
 * Per command it is a cost that other load on the machine disturbs less than a rate. */
double bench_cpu_seconds(pid_t pid, const char *thread);
/* utime + stime, in clock ticks, of one /proc/.../stat file; -1 if unreadable. */
double bench_stat_ticks(const char *path);
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
 * Windowed asynchronous appends (fill.c), through the store's append window
 * (store_window_*, store/store.h): one submitting thread keeps at most --window appends in
 * flight.
 */
#define BENCH_CACHE_LINE 64

/* store_window_drain, except that an append overdue by 60 s stops the process, loudly:
 * its completion still points at the window, so neither it nor the log may be released.
 * 0, or the status of the first append that failed. */
int bench_drain(store_window *w);

/* Appends events one per append from one thread in index order (so positions follow the
 * index), each to stream_of(ctx, index), through a window of `window` appends. */
typedef ev_str (*bench_stream_of)(void *ctx, uint64_t index);
int bench_fill(store_log *log, uint64_t events, uint32_t payload_bytes, uint32_t window,
               bench_stream_of stream_of, void *ctx);

/* ---------------------------------------------------------------------------------------
 * A real `skald serve` and wrk against it (serve.c), for http-commands and queries.
 */

/* Writes text to a new file at path; 0, or -errno / -EIO. */
int bench_file_write(const char *path, const char *text);
/* The skald binary: --skald, else ../../service/skald from skald-bench's own path. */
int bench_skald_find(const bench_opts *opts, char *out, size_t size);
/* Starts `skald serve --fsync always --threads 1` (all roles, loopback, no tokens) on
 * <work>/data, its stderr in <work>/serve.log, and waits for its port; the child's pid, or
 * -1 after printing why. */
pid_t bench_serve_start(const char *skald, const char *work, uint16_t *port);
/* The same with --roles roles (NULL: the default, every role). */
pid_t bench_serve_start_roles(const char *skald, const char *work, const char *roles,
                              uint16_t *port);
/* SIGTERM, then waits up to 30 s: 0 if it exited 0, -ECHILD otherwise, -ETIMEDOUT (after
 * SIGKILL) if it did not exit. */
int bench_serve_stop(pid_t pid);
/* One blocking HTTP/1.1 request on a fresh connection; the answer's status, or < 0. With
 * reply (size > 0), the start of the whole answer, headers included, NUL-terminated. */
int bench_http_request(uint16_t port, const char *method, const char *path, const char *ctype,
                       const char *body, size_t len, char *reply, size_t size);
/* The value of the Prometheus sample whose line starts with name (labels included), or 0. */
double bench_metric(const char *text, const char *name);

/* Every wrk script ends with this done() hook: one line bench_wrk_run parses. */
#define BENCH_WRK_DONE_LUA                                                                         \
    "function done(summary, latency, requests)\n"                                                  \
    "  local e = summary.errors\n"                                                                 \
    "  io.write(string.format('WRK requests=%d duration_us=%d non2xx=%d sockerr=%d "               \
    "p50_us=%d p99_us=%d\\n', summary.requests, summary.duration, e.status,\n"                     \
    "    e.connect + e.read + e.write + e.timeout, latency:percentile(50),\n"                      \
    "    latency:percentile(99)))\n"                                                               \
    "end\n"

/* http-commands' wrk script: the command mix (http_commands.c); traced-commands runs it
 * too, so both measure the same load. */
extern const char bench_commands_lua[];

typedef struct bench_wrk_result {
    uint64_t requests, duration_us, non2xx, sockerr, p50_us, p99_us;
} bench_wrk_result;

/* Runs wrk (--wrk-threads, --connections, --duration) with script against 127.0.0.1:port,
 * passing args (already shell-safe) to the script's init(); 0, or -EIO if wrk failed or
 * printed no WRK line. */
int bench_wrk_run(const bench_opts *opts, uint16_t port, const char *script, const char *args,
                  bench_wrk_result *out);
/* Requests per second of a wrk run. */
double bench_wrk_per_s(const bench_wrk_result *r);

/* ---------------------------------------------------------------------------------------
 * A history of the sample domain for the projection benchmarks (sample_log.c): products,
 * customers, orders placed, reserved, paid, confirmed or cancelled, as `skald seed`
 * writes it. Deterministic: each run of one sample emits the same events.
 */
typedef struct bench_sample bench_sample;

/* What a run emitted (an order whose events were cut off at events_max still counts). */
typedef struct bench_sample_counts {
    uint64_t products, customers, orders, confirmed, cancelled;
} bench_sample_counts;

/* Receives each event in order: 0, or a negative code that stops the run. stream and ev
 * (payload included) are valid during the call only. */
typedef int (*bench_sample_emit)(void *ctx, ev_str stream, const ev_event *ev);

/* Encodes the payload shapes once. events is borrowed for the sample's life; *out is the
 * caller's (bench_sample_destroy). */
int bench_sample_create(const ev_registry *events, uint64_t events_max, bench_sample **out);
void bench_sample_destroy(bench_sample *s); /* accepts NULL */
/* Emits exactly events_max events through emit; 0 or the first error it returned. */
int bench_sample_run(bench_sample *s, bench_sample_emit emit, void *ctx,
                     bench_sample_counts *counts_out);

#endif /* SKALD_BENCH_H */
