/*
 * log_read.c -- `skald-bench log-read`: a sequential read of the whole log through
 * store_reader (every record's framing and CRC checked by the store), against a raw
 * sequential pread of the same segment files with CRC32C over every byte.
 *
 * The log is built first with fsync=never (or an existing one is read with --log), then
 * closed and reopened so the reader starts from what is on disk. Both passes read files
 * the page cache holds (they were just written), so the comparison is of CPU work per byte,
 * not of the device. Each pass runs --runs times; the fastest run of each counts.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEGMENTS_MAX 100000 /* bound on the segment list of the log read */

typedef struct segment_list {
    char (*names)[32];
    uint64_t *bytes;
    size_t count, cap;
} segment_list;

static int collect_segment(void *cb_ctx, const store_segment_info *info)
{
    segment_list *sl = cb_ctx;
    if (sl->count == sl->cap) {
        size_t cap = sl->cap ? sl->cap * 2 : 16;
        if (cap > SEGMENTS_MAX)
            return -E2BIG;
        char(*names)[32] = realloc(sl->names, cap * sizeof *names);
        if (!names)
            return -ENOMEM;
        sl->names = names;
        uint64_t *bytes = realloc(sl->bytes, cap * sizeof *bytes);
        if (!bytes)
            return -ENOMEM;
        sl->bytes = bytes;
        sl->cap = cap;
    }
    memcpy(sl->names[sl->count], info->name, sizeof sl->names[0]);
    sl->names[sl->count][sizeof sl->names[0] - 1] = '\0';
    sl->bytes[sl->count] = info->bytes;
    sl->count++;
    return 0;
}

static void segment_list_free(segment_list *sl)
{
    free(sl->names);
    free(sl->bytes);
}

static ev_str stream_round_robin(void *ctx, uint64_t index)
{
    return bench_stream_name(ctx, index);
}

/* Builds a log of opts->events in log_dir with fsync=never. */
static int build_log(const bench_opts *opts, const char *log_dir)
{
    bench_stream_names names;
    int rc = bench_stream_names_init(&names, opts->streams);
    if (rc < 0)
        return rc;
    store_log *log = NULL;
    rc = bench_log_open(log_dir, STORE_FSYNC_NEVER, opts->window, &log);
    if (rc == 0) {
        uint64_t t0 = bench_now_ns();
        rc = bench_fill(log, opts->events, opts->payload_bytes, opts->window, stream_round_robin,
                        &names);
        if (rc < 0)
            fprintf(stderr, "skald-bench: building the log: %s\n", sk_err_name(rc));
        int close_rc = store_log_close(log);
        if (rc == 0)
            rc = close_rc;
        if (rc == 0)
            printf("built: %" PRIu64 " events in %.2f s (fsync=never, one thread)\n", opts->events,
                   bench_seconds(bench_now_ns() - t0));
    }
    bench_stream_names_free(&names);
    return rc;
}

/* Reads every event through the store; checks positions run 0, 1, 2, ... */
static int store_pass(store_log *log, uint64_t events, uint64_t *elapsed_out)
{
    store_reader *reader = NULL;
    sk_error err;
    sk_error_clear(&err);
    uint64_t t0 = bench_now_ns();
    int rc = store_reader_open(log, 0, &reader);
    uint64_t seen = 0;
    ev_event ev;
    while (rc == 0 && seen <= events) { /* bounded: one past the expected count at most */
        int more = store_reader_next(reader, &ev, &err);
        if (more <= 0) {
            rc = more;
            break;
        }
        if (ev.position != seen) {
            fprintf(stderr,
                    "skald-bench: read position %" PRIu64 " where %" PRIu64 " was expected\n",
                    ev.position, seen);
            rc = SK_ECORRUPT;
        }
        seen++;
    }
    *elapsed_out = bench_now_ns() - t0;
    store_reader_close(reader);
    if (rc < 0)
        fprintf(stderr, "skald-bench: reading the log: %s %s\n", sk_err_name(rc), err.message);
    else if (seen != events) {
        fprintf(stderr, "skald-bench: read %" PRIu64 " events, the log holds %" PRIu64 "\n", seen,
                events);
        rc = SK_ECORRUPT;
    }
    return rc;
}

/* pread of size bytes of one file in buf-sized steps, CRC32C over each chunk. */
static int raw_file(const char *path, uint64_t size, uint8_t *buf, size_t buf_size, uint32_t *crc)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    for (uint64_t off = 0; off < size;) {
        size_t want = size - off < buf_size ? (size_t)(size - off) : buf_size;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO; /* the file is shorter than the log says */
            break;
        }
        *crc = store_crc32c(*crc, buf, (size_t)n);
        off += (uint64_t)n;
    }
    close(fd);
    return rc;
}

static int raw_pass(const char *log_dir, const segment_list *sl, uint32_t buf_size,
                    uint64_t *elapsed_out, uint32_t *crc_out)
{
    uint8_t *buf = malloc(buf_size);
    if (!buf)
        return -ENOMEM;
    char path[BENCH_PATH_MAX];
    uint32_t crc = 0;
    int rc = 0;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < sl->count && rc == 0; i++) {
        rc = bench_path_join(path, sizeof path, log_dir, sl->names[i]);
        if (rc == 0)
            rc = raw_file(path, sl->bytes[i], buf, buf_size, &crc);
        if (rc < 0)
            fprintf(stderr, "skald-bench: raw read of %s: %s\n", path, strerror(-rc));
    }
    *elapsed_out = bench_now_ns() - t0;
    *crc_out = crc;
    free(buf);
    return rc;
}

static void report(const bench_opts *opts, uint64_t events, uint64_t bytes, uint64_t best_ns,
                   uint64_t raw_best_ns, size_t segments)
{
    double secs = bench_seconds(best_ns), raw_secs = bench_seconds(raw_best_ns);
    double eps = (double)events / secs, raw_eps = (double)events / raw_secs;
    printf("log: %" PRIu64 " events, %" PRIu64 " bytes in %zu segments (%.1f bytes/record)\n",
           events, bytes, segments, events ? (double)bytes / (double)events : 0.0);
    printf("skald:  %.0f events/s, %.1f MB/s (best of %u: %.3f s)\n", eps,
           (double)bytes / secs / 1e6, opts->runs, secs);
    printf("raw:    %.0f events/s, %.1f MB/s (best of %u: %.3f s; pread %u-byte buffer + "
           "crc32c)\n",
           raw_eps, (double)bytes / raw_secs / 1e6, opts->runs, raw_secs, opts->read_bytes);
    printf("BENCH log-read events_per_s=%.0f raw_events_per_s=%.0f ratio=%.3f mb_per_s=%.1f "
           "raw_mb_per_s=%.1f\n",
           eps, raw_eps, eps / raw_eps, (double)bytes / secs / 1e6, (double)bytes / raw_secs / 1e6);
}

static int measure(const bench_opts *opts, const char *log_dir, int read_only)
{
    store_config cfg;
    sk_error err;
    sk_error_clear(&err);
    store_config_init(&cfg, log_dir);
    cfg.read_only = read_only;
    store_log *log = NULL;
    int rc = store_log_open(&cfg, &log, &err);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: cannot open the log in %s: %s %s\n", log_dir, sk_err_name(rc),
                err.message);
        return rc;
    }
    store_log_stats stats;
    store_log_get_stats(log, &stats);
    uint64_t events = stats.next_position - stats.first_position;
    segment_list sl = {0};
    rc = store_log_segments(log, collect_segment, &sl);
    uint64_t best = UINT64_MAX, raw_best = UINT64_MAX, bytes = 0;
    for (size_t i = 0; rc == 0 && i < sl.count; i++)
        bytes += sl.bytes[i];
    uint32_t crc_first = 0;
    for (uint32_t run = 0; run < opts->runs && rc == 0; run++) {
        uint64_t ns = 0, raw_ns = 0;
        uint32_t crc = 0;
        rc = store_pass(log, events, &ns);
        if (rc == 0)
            rc = raw_pass(log_dir, &sl, opts->read_bytes, &raw_ns, &crc);
        if (rc == 0 && run > 0 && crc != crc_first) {
            fprintf(stderr, "skald-bench: the segment files changed between runs\n");
            rc = SK_ECORRUPT;
        }
        crc_first = crc;
        best = ns < best ? ns : best;
        raw_best = raw_ns < raw_best ? raw_ns : raw_best;
    }
    if (rc == 0 && stats.first_position != 0) {
        fprintf(stderr, "skald-bench: the log starts at position %" PRIu64 ", not 0\n",
                stats.first_position);
        rc = SK_EBADINPUT;
    }
    if (rc == 0)
        report(opts, events, bytes, best, raw_best, sl.count);
    segment_list_free(&sl);
    store_log_close(log);
    return rc;
}

int bench_log_read(const bench_opts *opts)
{
    if (opts->log_dir) {
        printf("log-read: an existing log, opened read-only\n");
        bench_print_where("log", opts->log_dir);
        return measure(opts, opts->log_dir, 1);
    }
    char work[BENCH_PATH_MAX], log_dir[BENCH_PATH_MAX];
    int rc = bench_workdir_create(opts->dir, work, sizeof work);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: cannot create a work directory in %s: %s\n",
                opts->dir ? opts->dir : ".", strerror(-rc));
        return rc;
    }
    printf("log-read: %" PRIu64 " events over %u streams, payload %u bytes\n", opts->events,
           opts->streams, opts->payload_bytes);
    bench_print_where("work dir", work);
    fflush(stdout);
    rc = bench_path_join(log_dir, sizeof log_dir, work, "log");
    if (rc == 0)
        rc = build_log(opts, log_dir);
    if (rc == 0)
        rc = measure(opts, log_dir, 0);
    if (opts->keep)
        printf("kept: %s\n", work);
    else
        bench_workdir_remove(work);
    return rc;
}
