/*
 * subscribe.c -- `skald-bench subscribe`: subscribers tailing a log that appenders fill as
 * fast as they can, with fsync=always.
 *
 * S subscriber threads (--subscribers, default 8) each open a subscription at position 0
 * and loop on store_sub_next / store_sub_wait, so every record is read and its CRC checked
 * by the store; each checks that positions arrive 0, 1, 2, ... . Meanwhile T appender
 * threads append one event per append through a window of W in flight, as log-append does,
 * until --events are appended or --duration seconds have passed. Everyone is released by
 * one barrier.
 *
 * Figures:
 *   append_events_per_s  events appended / (end of the last fdatasync - release): the
 *                        rate at which events became durable, which is the most any
 *                        subscriber can see.
 *   events_per_s         the slowest subscriber: events received / (its last event -
 *                        release), the same start as the appenders' clock.
 *   wake_p99_us          from the end of a batch's fdatasync to a subscriber that had
 *                        caught up holding its first event of that batch.
 *
 * The end of each fdatasync is stamped by a thin wrapper around the POSIX I/O seam
 * (store_config.io) on the thread that called it; the batch observer, which the appender
 * thread calls right after each group commit, files that stamp with the log's head after
 * the batch. The stamp cannot be taken in the observer itself: the appender publishes the
 * batch and wakes subscribers before it calls the observer, so a woken subscriber can hold
 * its event before the observer runs. For the same reason a subscriber does not look its
 * batch up while the run goes on: it keeps (position, time held) and the lookup happens
 * after the log is closed, when the batch table is complete and no longer written.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BATCHES_MAX      (1u << 20) /* group commits recorded; each holds >= 1 event */
#define SAMPLES_MAX      (1u << 17) /* wake-ups timed per subscriber */
#define WAIT_MS          100        /* a waiting subscriber looks at the run's end this often */
#define DRAIN_SECONDS    60         /* subscribers have this long to catch up at the end */
#define DEADLINE_EVERY   256        /* appends between two looks at the clock */
#define GOAL_RATIO       0.95
#define GOAL_WAKE_P99_US 1000.0
#define NO_END           UINT64_MAX

_Static_assert(DEADLINE_EVERY > 0 && (DEADLINE_EVERY & (DEADLINE_EVERY - 1)) == 0,
               "DEADLINE_EVERY is a power of two (a mask picks the appends that look)");

/* When the calling thread's last fdatasync returned (monotonic ns). Per thread, so a sync
 * on another thread (a checkpoint at close) never stands in for the appender's. */
static _Thread_local uint64_t fsync_end_ns;

static int timed_fdatasync(void *ctx, int fd)
{
    int rc = store_io_posix()->fdatasync(ctx, fd);
    fsync_end_ns = bench_now_ns();
    return rc;
}

/* The group commits, in order. Written by the batch observer on the syncer thread only,
 * read by the main thread after store_log_close (which joins that thread). */
typedef struct batch_table {
    uint64_t *head;         /* the log's head after batch i (events of batches 0..i) */
    uint64_t *fsync_end_ns; /* when its fdatasync returned */
    uint64_t *observed_ns;  /* when the observer ran */
    size_t count, cap;
    uint64_t events;  /* events of every batch observed, recorded or not */
    uint64_t dropped; /* batches past cap */
} batch_table;

static void on_batch(void *cb_ctx, const store_batch_stats *stats)
{
    batch_table *bt = cb_ctx;
    uint64_t now = bench_now_ns();
    bt->events += stats->events;
    if (bt->count == bt->cap) {
        bt->dropped++;
        return;
    }
    bt->head[bt->count] = bt->events;
    bt->fsync_end_ns[bt->count] = fsync_end_ns;
    bt->observed_ns[bt->count] = now;
    bt->count++;
}

static int batch_table_init(batch_table *bt, uint64_t events)
{
    memset(bt, 0, sizeof *bt);
    bt->cap = events < BATCHES_MAX ? (size_t)events : BATCHES_MAX;
    bt->head = calloc(bt->cap, sizeof *bt->head);
    bt->fsync_end_ns = calloc(bt->cap, sizeof *bt->fsync_end_ns);
    bt->observed_ns = calloc(bt->cap, sizeof *bt->observed_ns);
    return bt->head && bt->fsync_end_ns && bt->observed_ns ? 0 : -ENOMEM;
}

static void batch_table_free(batch_table *bt)
{
    free(bt->head);
    free(bt->fsync_end_ns);
    free(bt->observed_ns);
}

/* Index of the batch holding position, or bt->count if it was not recorded. */
static size_t batch_of(const batch_table *bt, uint64_t position)
{
    size_t lo = 0, hi = bt->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bt->head[mid] <= position)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* What the threads share; the atomics are written by the main thread once the appenders
 * are done. */
typedef struct run_shared {
    const bench_opts *opts;
    store_log *log;
    const bench_stream_names *names;
    const uint8_t *payload;
    pthread_barrier_t start;
    uint64_t deadline_ns;        /* appenders submit nothing after it (set before release) */
    _Atomic uint64_t end;        /* events in the log once the appenders are done, or NO_END */
    _Atomic uint64_t give_up_ns; /* subscribers that have not caught up by then fail */
} run_shared;

typedef struct wake_sample {
    uint64_t position; /* the first event held after a wait */
    uint64_t held_ns;  /* when store_sub_next handed it out */
} wake_sample;

/* A subscriber thread's; read by the main thread after the join. */
typedef struct sub_thread {
    pthread_t tid;
    store_sub *sub;
    run_shared *shared;
    int status;
    uint64_t received;
    uint64_t last_ns; /* when it held its last event */
    uint64_t waits;   /* store_sub_next answers of 0 (caught up) */
    wake_sample *samples;
    size_t sample_count, sample_cap;
    uint64_t samples_dropped;
} sub_thread;

typedef struct append_thread {
    pthread_t tid;
    uint32_t index;
    uint64_t events; /* its share of --events */
    uint64_t appended;
    int status;
    run_shared *shared;
} append_thread;

static void *append_main(void *arg)
{
    append_thread *t = arg;
    run_shared *sh = t->shared;
    store_window *w = NULL;
    int rc = store_window_create(sh->log, sh->opts->window, NULL, NULL, &w);
    ev_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = ev_str_of("BenchEvent");
    ev.schema_id = 1;
    ev.payload = sh->payload;
    ev.payload_size = sh->opts->payload_bytes;
    pthread_barrier_wait(&sh->start); /* also when the window failed: the barrier counts it */
    if (rc < 0) {
        t->status = rc;
        return NULL;
    }
    /* As in log-append: thread i appends global events i, i+T, i+2T, ... */
    for (uint64_t j = 0; j < t->events && rc == 0; j++) {
        if ((j & (DEADLINE_EVERY - 1)) == 0 && bench_now_ns() >= sh->deadline_ns)
            break;
        uint64_t global = (uint64_t)t->index + j * sh->opts->threads;
        rc = store_window_append(w, bench_stream_name(sh->names, global), STORE_EXPECT_ANY, &ev, 1,
                                 NULL);
        t->appended += rc == 0;
    }
    int drained = bench_drain(w);
    t->status = rc < 0 ? rc : drained;
    store_window_destroy(w);
    return NULL;
}

static void *sub_main(void *arg)
{
    sub_thread *t = arg;
    run_shared *sh = t->shared;
    ev_event ev;
    sk_error err;
    sk_error_clear(&err);
    bool waited = false; /* store_sub_next answered 0 since the last event */
    bool fresh = false;  /* events held since last_ns was taken */
    pthread_barrier_wait(&sh->start);
    int rc = 0;
    while (t->received != atomic_load(&sh->end)) {
        rc = store_sub_next(t->sub, &ev, &err);
        if (rc == 1) {
            if (ev.position != t->received) {
                fprintf(stderr,
                        "skald-bench: subscriber got position %" PRIu64 " where %" PRIu64
                        " was expected\n",
                        ev.position, t->received);
                rc = SK_ECORRUPT;
                break;
            }
            if (waited) {
                uint64_t now = bench_now_ns();
                if (t->sample_count < t->sample_cap)
                    t->samples[t->sample_count++] = (wake_sample){ev.position, now};
                else
                    t->samples_dropped++;
                waited = false;
            }
            t->received++;
            fresh = true;
            continue;
        }
        if (rc < 0) {
            fprintf(stderr, "skald-bench: subscriber at %" PRIu64 ": %s %s\n", t->received,
                    sk_err_name(rc), err.message);
            break;
        }
        /* Caught up: the last event held was the latest durable one. */
        if (fresh)
            t->last_ns = bench_now_ns();
        fresh = false;
        waited = true;
        t->waits++;
        if (bench_now_ns() >= atomic_load(&sh->give_up_ns)) {
            fprintf(stderr, "skald-bench: subscriber stuck at %" PRIu64 " of %" PRIu64 " events\n",
                    t->received, atomic_load(&sh->end));
            rc = -ETIMEDOUT;
            break;
        }
        rc = store_sub_wait(t->sub, WAIT_MS);
        if (rc < 0) {
            fprintf(stderr, "skald-bench: store_sub_wait: %s\n", sk_err_name(rc));
            break;
        }
        rc = 0;
    }
    if (fresh)
        t->last_ns = bench_now_ns();
    t->status = rc < 0 ? rc : 0;
    return NULL;
}

static uint64_t process_cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

/* Everything the run measured, for the report. */
typedef struct sub_figures {
    uint64_t t0_ns;    /* release of the barrier */
    uint64_t appended; /* events in the log at the end */
    uint64_t cpu_ns;   /* of the whole process during the run */
    uint64_t run_ns;   /* release to the last subscriber's last event */
    bool time_limited; /* the appenders stopped at --duration */
    store_log_stats stats;
} sub_figures;

/* Starts one thread; aborts if it cannot, since the barrier waits for every thread. */
static void start_thread(pthread_t *tid, void *(*fn)(void *), void *arg, const char *what,
                         uint32_t index)
{
    int rc = pthread_create(tid, NULL, fn, arg);
    if (rc != 0) {
        fprintf(stderr, "skald-bench: cannot start %s thread %u: %s\n", what, index, strerror(rc));
        abort();
    }
}

/* Runs appenders and subscribers; the subscriptions are open. */
static int run_all(run_shared *sh, append_thread *apps, sub_thread *subs, sub_figures *f)
{
    const bench_opts *opts = sh->opts;
    for (uint32_t i = 0; i < opts->threads; i++)
        start_thread(&apps[i].tid, append_main, &apps[i], "appender", i);
    for (uint32_t i = 0; i < opts->subscribers; i++)
        start_thread(&subs[i].tid, sub_main, &subs[i], "subscriber", i);
    uint64_t cpu0 = process_cpu_ns();
    f->t0_ns = bench_now_ns();
    sh->deadline_ns = f->t0_ns + (uint64_t)opts->duration_s * 1000000000u;
    pthread_barrier_wait(&sh->start);
    int rc = 0;
    for (uint32_t i = 0; i < opts->threads; i++) {
        pthread_join(apps[i].tid, NULL);
        if (apps[i].status < 0 && rc == 0)
            rc = apps[i].status;
        f->time_limited |= apps[i].appended < apps[i].events;
    }
    /* Every append has completed, so every event is durable: the subscribers' goal. */
    f->appended = store_log_head(sh->log);
    BENCH_ASSERT(store_log_durable_head(sh->log) == f->appended);
    atomic_store(&sh->give_up_ns, bench_now_ns() + (uint64_t)DRAIN_SECONDS * 1000000000u);
    atomic_store(&sh->end, f->appended);
    uint64_t last = 0;
    for (uint32_t i = 0; i < opts->subscribers; i++) {
        pthread_join(subs[i].tid, NULL);
        if (subs[i].status < 0 && rc == 0)
            rc = subs[i].status;
        last = subs[i].last_ns > last ? subs[i].last_ns : last;
    }
    f->run_ns = (last > f->t0_ns ? last : bench_now_ns()) - f->t0_ns;
    f->cpu_ns = process_cpu_ns() - cpu0;
    store_log_get_stats(sh->log, &f->stats);
    return rc;
}

/* Wake-up latencies of every subscriber's samples, in microseconds, from the end of the
 * fdatasync (from_fsync) and from the observer's call (from_observer, clamped at 0; the
 * clamped ones are counted in *early). */
typedef struct wake_figures {
    uint64_t *from_fsync_ns, *from_observer_ns;
    size_t count;
    uint64_t unresolved; /* samples in batches the table could not record */
    uint64_t early;      /* samples held before the observer of their batch ran */
    uint64_t dropped;    /* samples past a subscriber's cap */
} wake_figures;

static int collect_wakes(const batch_table *bt, const sub_thread *subs, uint32_t count,
                         wake_figures *out)
{
    memset(out, 0, sizeof *out);
    size_t total = 0;
    for (uint32_t i = 0; i < count; i++) {
        total += subs[i].sample_count;
        out->dropped += subs[i].samples_dropped;
    }
    out->from_fsync_ns = malloc((total ? total : 1) * sizeof *out->from_fsync_ns);
    out->from_observer_ns = malloc((total ? total : 1) * sizeof *out->from_observer_ns);
    if (!out->from_fsync_ns || !out->from_observer_ns)
        return -ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        for (size_t k = 0; k < subs[i].sample_count; k++) {
            const wake_sample *s = &subs[i].samples[k];
            size_t b = batch_of(bt, s->position);
            if (b == bt->count) {
                out->unresolved++;
                continue;
            }
            /* Events are read only once durable, so a sample precedes its fsync only if
             * the clocks lie. */
            BENCH_ASSERT(s->held_ns >= bt->fsync_end_ns[b]);
            out->from_fsync_ns[out->count] = s->held_ns - bt->fsync_end_ns[b];
            if (s->held_ns < bt->observed_ns[b])
                out->early++;
            out->from_observer_ns[out->count] =
                s->held_ns > bt->observed_ns[b] ? s->held_ns - bt->observed_ns[b] : 0;
            out->count++;
        }
    }
    return 0;
}

static void wake_figures_free(wake_figures *w)
{
    free(w->from_fsync_ns);
    free(w->from_observer_ns);
}

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

/* What the appender does between a batch's fdatasync and the observer: publishing the
 * batch to readers, moving the durable head, waking subscribers. No subscriber can see a
 * batch sooner than its durable head moves, which is inside this gap. */
static int print_publish_gap(const batch_table *bt)
{
    uint64_t *gap = malloc((bt->count ? bt->count : 1) * sizeof *gap);
    if (!gap)
        return -ENOMEM;
    for (size_t i = 0; i < bt->count; i++)
        gap[i] = bt->observed_ns[i] - bt->fsync_end_ns[i];
    uint64_t p50 = bench_percentile(gap, bt->count, 50);
    uint64_t p99 = bench_percentile(gap, bt->count, 99);
    uint64_t max = bt->count ? gap[bt->count - 1] : 0;
    printf("  appender, fdatasync returned -> batch observer called (publish, durable head, "
           "wake-ups): p50 %.0f us, p99 %.0f us, max %.0f us\n",
           us(p50), us(p99), us(max));
    free(gap);
    return 0;
}

static int report(const bench_opts *opts, const batch_table *bt, const sub_thread *subs,
                  const sub_figures *f)
{
    wake_figures w;
    int rc = collect_wakes(bt, subs, opts->subscribers, &w);
    if (rc < 0) {
        wake_figures_free(&w);
        return rc;
    }
    /* Appenders: until the last fdatasync ended, when their last event became durable. */
    uint64_t durable_ns = bt->count ? bt->fsync_end_ns[bt->count - 1] - f->t0_ns : 0;
    double append_eps = durable_ns ? (double)f->appended / bench_seconds(durable_ns) : 0;
    double slowest = 0, fastest = 0;
    uint64_t waits_min = UINT64_MAX, waits_max = 0;
    for (uint32_t i = 0; i < opts->subscribers; i++) {
        const sub_thread *t = &subs[i];
        /* From the release, as the appenders' rate: a subscriber scheduled late after the
         * barrier is not credited for it. */
        uint64_t ns = t->last_ns > f->t0_ns ? t->last_ns - f->t0_ns : 1;
        double eps = (double)t->received / bench_seconds(ns);
        slowest = i == 0 || eps < slowest ? eps : slowest;
        fastest = eps > fastest ? eps : fastest;
        waits_min = t->waits < waits_min ? t->waits : waits_min;
        waits_max = t->waits > waits_max ? t->waits : waits_max;
    }
    double ratio = append_eps > 0 ? slowest / append_eps : 0;
    uint64_t p50 = bench_percentile(w.from_fsync_ns, w.count, 50);
    uint64_t p90 = bench_percentile(w.from_fsync_ns, w.count, 90);
    uint64_t p99 = bench_percentile(w.from_fsync_ns, w.count, 99);
    uint64_t max = w.count ? w.from_fsync_ns[w.count - 1] : 0;
    uint64_t obs_p50 = bench_percentile(w.from_observer_ns, w.count, 50);
    uint64_t obs_p99 = bench_percentile(w.from_observer_ns, w.count, 99);
    double run_s = bench_seconds(f->run_ns);

    printf("appenders: %" PRIu64 " events durable in %.3f s%s: %.0f events/s; %zu group "
           "commits, mean %.1f events each\n",
           f->appended, bench_seconds(durable_ns),
           f->time_limited ? " (stopped at --duration)" : "", append_eps, bt->count,
           bt->count ? (double)bt->events / (double)bt->count : 0.0);
    printf("subscribers: %u, each received all %" PRIu64 " events in order; slowest %.0f "
           "events/s, fastest %.0f events/s; %" PRIu64 "-%" PRIu64 " waits each\n",
           opts->subscribers, f->appended, slowest, fastest, waits_min, waits_max);
    printf("wake-up (fdatasync returned -> first event of the batch held, after a wait): "
           "%zu samples, p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us\n",
           w.count, us(p50), us(p90), us(p99), us(max));
    printf("  the same from the batch observer's call instead: p50 %.0f us, p99 %.0f us; "
           "%" PRIu64 " of %zu events were held before the observer ran (counted as 0)\n",
           us(obs_p50), us(obs_p99), w.early, w.count);
    rc = print_publish_gap(bt);
    if (rc < 0) {
        wake_figures_free(&w);
        return rc;
    }
    if (w.unresolved || w.dropped || bt->dropped)
        printf("  not timed: %" PRIu64 " samples past a subscriber's %u, %" PRIu64 " in %" PRIu64
               " batches past the table's %zu\n",
               w.dropped, SAMPLES_MAX, w.unresolved, bt->dropped, bt->cap);
    printf("process CPU: %.2f s over %.3f s (%.2f cores); %" PRIu64 " fdatasyncs\n",
           bench_seconds(f->cpu_ns), run_s, run_s > 0 ? bench_seconds(f->cpu_ns) / run_s : 0,
           f->stats.fsyncs);
    bool met = ratio >= GOAL_RATIO && us(p99) < GOAL_WAKE_P99_US;
    printf("ratio: %.3f; goals (ratio >= %.2f, wake p99 < %.0f us): %s\n", ratio, GOAL_RATIO,
           GOAL_WAKE_P99_US, met ? "met" : "NOT met");
    printf("BENCH subscribe subscribers=%u events_per_s=%.0f append_events_per_s=%.0f "
           "ratio=%.3f wake_p99_us=%.0f\n",
           opts->subscribers, slowest, append_eps, ratio, us(p99));
    wake_figures_free(&w);
    return 0;
}

/* The POSIX seam with fdatasync stamped; must outlive the log. */
static store_io timed_io(void)
{
    store_io io = *store_io_posix();
    io.fdatasync = timed_fdatasync;
    return io;
}

static int open_log(const bench_opts *opts, const char *dir, const store_io *io, store_log **out)
{
    store_config cfg;
    sk_error err;
    sk_error_clear(&err);
    store_config_init(&cfg, dir);
    cfg.fsync_mode = STORE_FSYNC_ALWAYS;
    cfg.io = io;
    uint32_t queue_min = opts->threads * opts->window;
    if (cfg.queue_appends_max < queue_min)
        cfg.queue_appends_max = queue_min;
    int rc = store_log_open(&cfg, out, &err);
    if (rc < 0)
        fprintf(stderr, "skald-bench: cannot open the log in %s: %s (%s)\n", dir,
                err.message[0] ? err.message : sk_strerror(rc), sk_err_name(rc));
    return rc;
}

/* Opens the log and the subscriptions, runs, closes all, then reports. */
static int measure(run_shared *sh, const char *log_dir, append_thread *apps, sub_thread *subs,
                   batch_table *bt)
{
    const bench_opts *opts = sh->opts;
    store_io io = timed_io();
    int rc = open_log(opts, log_dir, &io, &sh->log);
    if (rc < 0)
        return rc;
    store_log_set_batch_observer(sh->log, on_batch, bt);
    uint32_t opened = 0;
    for (; opened < opts->subscribers && rc == 0; opened++)
        rc = store_sub_open(sh->log, 0, &subs[opened].sub);
    sub_figures f;
    memset(&f, 0, sizeof f);
    if (rc == 0)
        rc = run_all(sh, apps, subs, &f);
    else
        fprintf(stderr, "skald-bench: cannot open subscription %u: %s\n", opened - 1,
                sk_err_name(rc));
    for (uint32_t i = 0; i < opts->subscribers; i++)
        store_sub_close(subs[i].sub);
    int close_rc = store_log_close(sh->log); /* the observer no longer runs after this */
    sh->log = NULL;
    if (rc == 0 && close_rc < 0) {
        fprintf(stderr, "skald-bench: closing the log: %s\n", sk_strerror(close_rc));
        rc = close_rc;
    }
    if (rc == 0 && bt->events != f.appended) {
        fprintf(stderr,
                "skald-bench: the log holds %" PRIu64 " events, the batch observer saw %" PRIu64
                "\n",
                f.appended, bt->events);
        rc = SK_ECORRUPT;
    }
    if (rc == 0)
        rc = report(opts, bt, subs, &f);
    return rc;
}

/* Allocates the threads' state; measures; frees. */
static int run(const bench_opts *opts, const char *work, const bench_stream_names *names,
               const uint8_t *payload)
{
    char log_dir[BENCH_PATH_MAX];
    int rc = bench_path_join(log_dir, sizeof log_dir, work, "log");
    if (rc < 0)
        return rc;
    run_shared sh = {.opts = opts, .names = names, .payload = payload};
    atomic_init(&sh.end, NO_END);
    atomic_init(&sh.give_up_ns, NO_END);
    pthread_barrier_init(&sh.start, NULL, opts->threads + opts->subscribers + 1);
    append_thread *apps = calloc(opts->threads, sizeof *apps);
    sub_thread *subs = calloc(opts->subscribers, sizeof *subs);
    batch_table bt;
    rc = batch_table_init(&bt, opts->events);
    if (!apps || !subs)
        rc = -ENOMEM;
    size_t samples = opts->events < SAMPLES_MAX ? (size_t)opts->events : SAMPLES_MAX;
    for (uint32_t i = 0; subs && i < opts->subscribers && rc == 0; i++) {
        subs[i].shared = &sh;
        subs[i].sample_cap = samples;
        subs[i].samples = malloc(samples * sizeof *subs[i].samples);
        rc = subs[i].samples ? 0 : -ENOMEM;
    }
    for (uint32_t i = 0; apps && i < opts->threads; i++) {
        append_thread *t = &apps[i];
        t->index = i;
        t->events = opts->events / opts->threads + (i < opts->events % opts->threads);
        t->shared = &sh;
    }
    if (rc == 0)
        rc = measure(&sh, log_dir, apps, subs, &bt);
    else
        fprintf(stderr, "skald-bench: setting up: %s\n", strerror(-rc));
    for (uint32_t i = 0; subs && i < opts->subscribers; i++)
        free(subs[i].samples);
    batch_table_free(&bt);
    free(subs);
    free(apps);
    pthread_barrier_destroy(&sh.start);
    return rc;
}

int bench_subscribe(const bench_opts *opts)
{
    char work[BENCH_PATH_MAX];
    int rc = bench_workdir_create(opts->dir, work, sizeof work);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: cannot create a work directory in %s: %s\n",
                opts->dir ? opts->dir : ".", strerror(-rc));
        return rc;
    }
    printf("subscribe: %u subscribers from position 0; %" PRIu64 " events, one per append, "
           "%u appenders x %u in flight, %u streams, fsync=always, at most %u s of appends\n",
           opts->subscribers, opts->events, opts->threads, opts->window, opts->streams,
           opts->duration_s);
    bench_print_where("work dir", work);
    fflush(stdout);
    bench_stream_names names = {0};
    uint8_t *payload = bench_payload_create(opts->payload_bytes);
    rc = payload ? bench_stream_names_init(&names, opts->streams) : -ENOMEM;
    if (rc == 0)
        rc = run(opts, work, &names, payload);
    else
        fprintf(stderr, "skald-bench: out of memory\n");
    bench_stream_names_free(&names);
    free(payload);
    if (opts->keep)
        printf("kept: %s\n", work);
    else
        bench_workdir_remove(work);
    return rc;
}
