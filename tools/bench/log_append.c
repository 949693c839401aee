/*
 * log_append.c -- `skald-bench log-append`: durable appends from many threads, against
 * raw pwrite+fdatasync of the same bytes.
 *
 * T appender threads each keep up to W single-event appends in flight (fsync=always), the
 * events spread over S streams. The rate runs from just before the first submit to the
 * last completion. A batch observer records every group commit the appender made (bytes
 * and events), in order. The baseline then writes the same number of bytes into a fresh
 * file in the same directory, one pwrite and one fdatasync per batch, with exactly the
 * batch sizes the appender achieved: what the disk gives for those batches with no log in
 * between. ratio = store events/s / raw events/s.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The raw baseline is cheap next to the appends, and the disk of a shared machine is noisy:
 * it runs this many times and its median counts. */
#define RAW_RUNS          3
#define REF_BATCH_RECORDS 4096
#define REF_RECORD_BYTES  200

/* The group commits (one fdatasync each, which may cover several written batches), in
 * order (syncer thread until the log closes). */
typedef struct batch_log {
    uint64_t *bytes;
    uint32_t *events;
    size_t count, cap;
    uint64_t dropped;  /* batches past cap (not expected: each batch holds >= 1 event) */
    uint64_t write_ns; /* time the appender spent in its writes, over all batches */
    uint64_t fsync_ns; /* time the syncer spent in its fdatasyncs (overlapping the writes) */
    uint64_t cpu_ns;   /* CPU time of the syncer thread after the last group */
} batch_log;

/* Padded on purpose: the completion counters have a cache line of their own. */
typedef struct append_thread { /* NOLINT(clang-analyzer-optin.performance.Padding) */
    pthread_t tid;
    uint32_t index;
    uint64_t first_event; /* global index of its first event */
    uint64_t events;      /* how many it appends */
    int status;
    uint64_t busy_retries; /* SK_EBUSY answers its window retried */
    /* Shared, read-only while threads run. */
    const bench_opts *opts;
    store_log *log;
    const bench_stream_names *names;
    const uint8_t *payload;
    pthread_barrier_t *start;
    /* Its window's completions (the log's completer thread), on a cache line of their own
     * so the appender's writes never pull it away. */
    alignas(BENCH_CACHE_LINE) uint64_t completions;
    _Atomic uint64_t last_ns; /* bench_now_ns() at its last completion */
} append_thread;

typedef struct append_result {
    uint64_t elapsed_ns;
    uint64_t process_cpu_ns; /* CPU time of the whole process (all threads) during the run */
    uint64_t busy_retries;
    store_log_stats stats;
} append_result;

static void on_batch(void *cb_ctx, const store_batch_stats *stats)
{
    batch_log *bl = cb_ctx;
    bl->write_ns += stats->write_ns;
    bl->fsync_ns += stats->fsync_ns;
    /* The observer runs on the syncer thread, which idles from open until the first
     * append: its CPU clock is the syncer's work for this run. */
    struct timespec cpu;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
        bl->cpu_ns = (uint64_t)cpu.tv_sec * 1000000000u + (uint64_t)cpu.tv_nsec;
    if (bl->count == bl->cap) {
        bl->dropped++;
        return;
    }
    bl->bytes[bl->count] = stats->bytes;
    bl->events[bl->count] = stats->events;
    bl->count++;
}

static int batch_log_init(batch_log *bl, uint64_t events)
{
    memset(bl, 0, sizeof *bl);
    bl->cap = (size_t)events + 64;
    bl->bytes = calloc(bl->cap, sizeof *bl->bytes);
    bl->events = calloc(bl->cap, sizeof *bl->events);
    if (!bl->bytes || !bl->events)
        return -ENOMEM;
    return 0;
}

static void batch_log_free(batch_log *bl)
{
    free(bl->bytes);
    free(bl->events);
}

/* Every completion of a thread's window: stamps the time of its last one. */
static void on_complete(void *cb_ctx, const store_append_result *res)
{
    append_thread *t = cb_ctx;
    (void)res;
    if (++t->completions == t->events)
        atomic_store(&t->last_ns, bench_now_ns());
}

static void *append_main(void *arg)
{
    append_thread *t = arg;
    store_window *w = NULL;
    int rc = store_window_create(t->log, t->opts->window, on_complete, t, &w);
    ev_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = ev_str_of("BenchEvent");
    ev.schema_id = 1;
    ev.payload = t->payload;
    ev.payload_size = t->opts->payload_bytes;
    pthread_barrier_wait(t->start); /* also when the window failed: the barrier counts it */
    if (rc < 0) {
        t->status = rc;
        return NULL;
    }
    /* Thread i appends global events i, i+T, i+2T, ...: every stream gets appends from
     * every thread, as independent clients would send them. */
    for (uint64_t j = 0; j < t->events && rc == 0; j++) {
        uint64_t global = (uint64_t)t->index + j * t->opts->threads;
        rc = store_window_append(w, bench_stream_name(t->names, global), STORE_EXPECT_ANY, &ev, 1,
                                 NULL);
    }
    int drained = bench_drain(w); /* the first failed completion, if any */
    t->status = rc < 0 ? rc : drained;
    store_window_stats st;
    store_window_get_stats(w, &st);
    t->busy_retries = st.busy_retries;
    store_window_destroy(w);
    return NULL;
}

/* Runs the appenders; threads[] are set up. */
static int run_threads(append_thread *threads, uint32_t count, pthread_barrier_t *start,
                       uint64_t *elapsed_out)
{
    uint32_t started = 0;
    int rc = 0;
    for (; started < count; started++) {
        rc = -pthread_create(&threads[started].tid, NULL, append_main, &threads[started]);
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        /* The barrier expects every thread: it cannot release a partial set. */
        fprintf(stderr, "skald-bench: cannot start appender thread %u: %s\n", started,
                strerror(-rc));
        abort();
    }
    uint64_t t0 = bench_now_ns();
    pthread_barrier_wait(start);
    for (uint32_t i = 0; i < count; i++) {
        pthread_join(threads[i].tid, NULL);
        if (threads[i].status < 0 && rc == 0)
            rc = threads[i].status;
    }
    uint64_t t1 = 0; /* the last completion of all */
    for (uint32_t i = 0; i < count; i++) {
        uint64_t last = atomic_load(&threads[i].last_ns);
        t1 = last > t1 ? last : t1;
    }
    if (rc < 0 || t1 == 0) /* not every append completed */
        t1 = bench_now_ns();
    *elapsed_out = t1 - t0;
    return rc;
}

static int append_all(const bench_opts *opts, store_log *log, const bench_stream_names *names,
                      const uint8_t *payload, append_result *out)
{
    /* Over-aligned (each thread keeps its completion counters on their own cache line). */
    size_t size = opts->threads * sizeof(append_thread);
    append_thread *threads = aligned_alloc(alignof(append_thread), size);
    if (!threads)
        return -ENOMEM;
    memset(threads, 0, size);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, opts->threads + 1);
    for (uint32_t i = 0; i < opts->threads; i++) {
        append_thread *t = &threads[i];
        t->index = i;
        t->events = opts->events / opts->threads + (i < opts->events % opts->threads);
        t->opts = opts;
        t->log = log;
        t->names = names;
        t->payload = payload;
        t->start = &start;
        atomic_init(&t->last_ns, 0);
    }
    int rc = run_threads(threads, opts->threads, &start, &out->elapsed_ns);
    for (uint32_t i = 0; i < opts->threads; i++)
        out->busy_retries += threads[i].busy_retries;
    pthread_barrier_destroy(&start);
    free(threads);
    if (rc < 0)
        fprintf(stderr, "skald-bench: appending failed: %s (%s)\n", sk_strerror(rc),
                sk_err_name(rc));
    return rc;
}

/* One pwrite of sizes[i] bytes and one fdatasync, for each batch in order, into a fresh
 * file that is removed afterwards. */
static int raw_write(const char *path, const uint64_t *sizes, size_t count, uint64_t *elapsed_out)
{
    uint64_t biggest = 1;
    for (size_t i = 0; i < count; i++)
        if (sizes[i] > biggest)
            biggest = sizes[i];
    if (biggest > UINT32_MAX)
        return -E2BIG;
    uint8_t *buf = bench_payload_create((uint32_t)biggest);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!buf || fd < 0) {
        int rc = !buf ? -ENOMEM : -errno;
        fprintf(stderr, "skald-bench: raw baseline on %s: %s\n", path, strerror(-rc));
        free(buf);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    int rc = 0;
    uint64_t offset = 0;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < count && rc == 0; i++) {
        ssize_t n = pwrite(fd, buf, sizes[i], (off_t)offset);
        if (n != (ssize_t)sizes[i])
            rc = n < 0 ? -errno : -EIO; /* a short write to a fresh file: treat as failure */
        else if (fdatasync(fd) != 0)
            rc = -errno;
        offset += sizes[i];
    }
    *elapsed_out = bench_now_ns() - t0;
    close(fd);
    unlink(path);
    free(buf);
    if (rc < 0)
        fprintf(stderr, "skald-bench: raw baseline on %s: %s\n", path, strerror(-rc));
    return rc;
}

/* The raw baseline RAW_RUNS times; *elapsed_out gets the median run. */
static int raw_median(const char *path, const batch_log *bl, uint64_t *elapsed_out)
{
    uint64_t runs[RAW_RUNS] = {0};
    printf("raw runs:");
    for (int i = 0; i < RAW_RUNS; i++) {
        int rc = raw_write(path, bl->bytes, bl->count, &runs[i]);
        if (rc < 0) {
            printf("\n");
            return rc;
        }
        printf(" %.3f s", bench_seconds(runs[i]));
    }
    printf("\n");
    *elapsed_out = bench_percentile(runs, RAW_RUNS, 50);
    return 0;
}

/*
 * Before the appends: the raw figure the issue quotes (200-byte records, REF_BATCH_RECORDS
 * per pwrite+fdatasync, as many records as the benchmark appends). It is printed for
 * reference only, and it also puts the file system and the disk in the state the raw runs
 * after the appends meet, so the log is not the only one to pay for a cold start.
 */
static int raw_reference(const char *path, uint64_t events, double *events_per_s_out)
{
    size_t count = (size_t)((events + REF_BATCH_RECORDS - 1) / REF_BATCH_RECORDS);
    uint64_t *sizes = malloc(count * sizeof *sizes);
    if (!sizes)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        uint64_t records = events - (uint64_t)i * REF_BATCH_RECORDS;
        sizes[i] = (records < REF_BATCH_RECORDS ? records : REF_BATCH_RECORDS) * REF_RECORD_BYTES;
    }
    uint64_t ns = 0;
    int rc = raw_write(path, sizes, count, &ns);
    free(sizes);
    if (rc == 0)
        *events_per_s_out = (double)events / bench_seconds(ns);
    return rc;
}

typedef struct batch_summary {
    uint64_t total_bytes, total_events;
    uint64_t p50_bytes, p99_bytes, max_bytes;
    uint64_t p50_events, p99_events;
    double mean_events;
} batch_summary;

static int summarize_batches(const batch_log *bl, batch_summary *out)
{
    memset(out, 0, sizeof *out);
    if (bl->count == 0)
        return 0;
    uint64_t *tmp = malloc(bl->count * sizeof *tmp);
    if (!tmp)
        return -ENOMEM;
    for (size_t i = 0; i < bl->count; i++) {
        out->total_bytes += bl->bytes[i];
        out->total_events += bl->events[i];
        tmp[i] = bl->bytes[i];
    }
    out->p50_bytes = bench_percentile(tmp, bl->count, 50);
    out->p99_bytes = bench_percentile(tmp, bl->count, 99);
    out->max_bytes = tmp[bl->count - 1];
    for (size_t i = 0; i < bl->count; i++)
        tmp[i] = bl->events[i];
    out->p50_events = bench_percentile(tmp, bl->count, 50);
    out->p99_events = bench_percentile(tmp, bl->count, 99);
    out->mean_events = (double)out->total_events / (double)bl->count;
    free(tmp);
    return 0;
}

/* Everything one run measured, for the report. */
typedef struct append_figures {
    append_result ar;
    batch_summary bs;
    uint64_t raw_ns;    /* median raw run over the achieved batches */
    double ref_raw_eps; /* raw events/s at 4096 records per batch, before the appends */
} append_figures;

static void report(const bench_opts *opts, const batch_log *bl, const append_figures *f)
{
    const batch_summary *bs = &f->bs;
    double secs = bench_seconds(f->ar.elapsed_ns), raw_secs = bench_seconds(f->raw_ns);
    double record = bs->total_events ? (double)bs->total_bytes / (double)bs->total_events : 0;
    double eps = (double)opts->events / secs;
    double raw_eps = (double)bs->total_events / raw_secs;
    double ratio = eps / raw_eps;
    printf("record size: %.1f bytes framed (payload %u bytes)\n", record, opts->payload_bytes);
    printf("skald:  %.0f events/s, %.1f MB/s, %.3f s, %" PRIu64 " fdatasyncs, "
           "%" PRIu64 " SK_EBUSY retries\n",
           eps, (double)bs->total_bytes / secs / 1e6, secs, f->ar.stats.fsyncs, f->ar.busy_retries);
    printf("batches: %zu, mean %.1f events/batch; bytes p50 %" PRIu64 " p99 %" PRIu64
           " max %" PRIu64 "; events p50 %" PRIu64 " p99 %" PRIu64 "\n",
           bl->count, bs->mean_events, bs->p50_bytes, bs->p99_bytes, bs->max_bytes, bs->p50_events,
           bs->p99_events);
    printf("pipeline: appender %.3f s in pwrite, syncer %.3f s in fdatasync (they overlap; of "
           "%.3f s); syncer CPU time %.3f s; the process's CPU time %.3f s (%.2f cores)\n",
           bench_seconds(bl->write_ns), bench_seconds(bl->fsync_ns), secs,
           bench_seconds(bl->cpu_ns), bench_seconds(f->ar.process_cpu_ns),
           bench_seconds(f->ar.process_cpu_ns) / secs);
    printf("raw:    %.0f events/s, %.1f MB/s, %.3f s (median of %d; one pwrite+fdatasync per "
           "batch, same batch sizes, same directory)\n",
           raw_eps, (double)bs->total_bytes / raw_secs / 1e6, raw_secs, RAW_RUNS);
    printf("raw reference: %.0f events/s (%d-byte records, %d per pwrite+fdatasync, run before "
           "the appends)\n",
           f->ref_raw_eps, REF_RECORD_BYTES, REF_BATCH_RECORDS);
    printf("ratio:  %.3f; goals (>= 1000000 events/s, ratio >= 0.5): %s\n", ratio,
           eps >= 1e6 && ratio >= 0.5 ? "met" : "NOT met");
    printf("BENCH log-append events_per_s=%.0f raw_events_per_s=%.0f ratio=%.3f "
           "mean_batch=%.1f record_bytes=%.1f batches=%zu p50_batch_bytes=%" PRIu64
           " p99_batch_bytes=%" PRIu64 " mb_per_s=%.1f ref_raw_events_per_s=%.0f\n",
           eps, raw_eps, ratio, bs->mean_events, record, bl->count, bs->p50_bytes, bs->p99_bytes,
           (double)bs->total_bytes / secs / 1e6, f->ref_raw_eps);
}

/* Checks what the log says against what was appended; prints and returns an error. */
static int check_log(const bench_opts *opts, const append_result *ar, const batch_log *bl,
                     const batch_summary *bs)
{
    if (ar->stats.next_position != opts->events || bs->total_events != opts->events ||
        bl->dropped != 0) {
        fprintf(stderr,
                "skald-bench: appended %" PRIu64 " events but the log's head is %" PRIu64
                " and the batch observer saw %" PRIu64 " events (%" PRIu64 " batches lost)\n",
                opts->events, ar->stats.next_position, bs->total_events, bl->dropped);
        return SK_ECORRUPT;
    }
    return 0;
}

static uint64_t process_cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

/* Opens a fresh log, appends every event, closes it. */
static int run_appends(const bench_opts *opts, const char *log_dir, const bench_stream_names *names,
                       const uint8_t *payload, batch_log *bl, append_result *ar)
{
    store_log *log = NULL;
    int rc = bench_log_open(log_dir, STORE_FSYNC_ALWAYS, opts->threads * opts->window, &log);
    if (rc < 0)
        return rc;
    store_log_set_batch_observer(log, on_batch, bl);
    uint64_t cpu0 = process_cpu_ns();
    rc = append_all(opts, log, names, payload, ar);
    ar->process_cpu_ns = process_cpu_ns() - cpu0;
    store_log_get_stats(log, &ar->stats);
    int close_rc = store_log_close(log); /* after this the observer no longer runs */
    if (rc == 0 && close_rc < 0) {
        fprintf(stderr, "skald-bench: closing the log: %s\n", sk_strerror(close_rc));
        rc = close_rc;
    }
    return rc;
}

static int measure(const bench_opts *opts, const char *work, const bench_stream_names *names,
                   const uint8_t *payload, batch_log *bl)
{
    char log_dir[BENCH_PATH_MAX], raw_path[BENCH_PATH_MAX];
    int rc = bench_path_join(log_dir, sizeof log_dir, work, "log");
    if (rc == 0)
        rc = bench_path_join(raw_path, sizeof raw_path, work, "raw.dat");
    if (rc < 0)
        return rc;
    append_figures f;
    memset(&f, 0, sizeof f);
    rc = raw_reference(raw_path, opts->events, &f.ref_raw_eps);
    if (rc == 0)
        rc = run_appends(opts, log_dir, names, payload, bl, &f.ar);
    if (rc == 0)
        rc = summarize_batches(bl, &f.bs);
    if (rc == 0)
        rc = check_log(opts, &f.ar, bl, &f.bs);
    if (rc == 0)
        rc = raw_median(raw_path, bl, &f.raw_ns);
    if (rc == 0)
        report(opts, bl, &f);
    return rc;
}

int bench_log_append(const bench_opts *opts)
{
    char work[BENCH_PATH_MAX];
    int rc = bench_workdir_create(opts->dir, work, sizeof work);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: cannot create a work directory in %s: %s\n",
                opts->dir ? opts->dir : ".", strerror(-rc));
        return rc;
    }
    printf("log-append: %" PRIu64 " events, one per append, %u threads x %u in flight, "
           "%u streams, fsync=always\n",
           opts->events, opts->threads, opts->window, opts->streams);
    bench_print_where("work dir", work);
    fflush(stdout);
    bench_stream_names names = {0};
    batch_log bl;
    uint8_t *payload = bench_payload_create(opts->payload_bytes);
    rc = batch_log_init(&bl, opts->events);
    if (rc == 0)
        rc = payload ? bench_stream_names_init(&names, opts->streams) : -ENOMEM;
    if (rc == 0)
        rc = measure(opts, work, &names, payload, &bl);
    else
        fprintf(stderr, "skald-bench: out of memory\n");
    batch_log_free(&bl);
    bench_stream_names_free(&names);
    free(payload);
    if (opts->keep)
        printf("kept: %s\n", work);
    else
        bench_workdir_remove(work);
    return rc;
}
