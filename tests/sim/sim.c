/*
 * sim.c -- skald-sim: the seeded storage-fault simulation of the log.
 *
 * Each seed drives a log on simfs through rounds of a random workload -- many appends in
 * flight per group commit (1-64 appends of 1-5 events over a few dozen streams, some
 * conditional) -- while simfs injects short writes, EIO and ENOSPC on writes, EIO on
 * fdatasync and metadata calls, and a crash at a random call. After each crash the disk
 * "reboots" (unsynced sectors kept, dropped or torn) and the log is reopened, then:
 *   - every acknowledged event is there, at its position, with its envelope and payload;
 *   - positions run 0..head-1, and each stream's versions run 1..n;
 *   - an append that was never acknowledged is either wholly there or wholly absent;
 *   - verify finds no fault, and each stream reads the same through its index.
 * The log runs with manual_commit: no appender thread, so a run depends only on the seed
 * and `skald-sim --seed N` replays it exactly.
 */
#include "tests/sim/simfs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAMS     24
#define ROUNDS      4
#define STEPS_MAX   40
#define APPENDS_MAX 4096
#define EVENTS_MAX  5

/* One append the workload made, and what became of it. */
typedef struct sim_append {
    char stream[16];
    uint32_t count;
    ev_uuid ids[EVENTS_MAX];
    uint32_t sizes[EVENTS_MAX];
    uint8_t payloads[EVENTS_MAX][96];
    int status;  /* of the completion; 1 while pending */
    bool acked;  /* acknowledged: must survive */
    bool in_log; /* known to be in the log (acked, or found whole after a crash) */
    bool gone;   /* known not to be in the log */
    uint64_t first_position, first_version;
} sim_append;

typedef struct sim {
    uint64_t seed;
    bool verbose;
    simfs *fs;
    store_log *log;
    store_config cfg;
    sim_append *appends;
    size_t count;
    uint64_t versions[STREAMS]; /* per stream, as the log has it (for conditions) */
    char failure[1024];
    uint64_t acked_events, crashes, recoveries, conflicts, rejected;
} sim;

static int fail(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(sim *s, const char *fmt, ...)
{
    if (s->failure[0])
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure, sizeof s->failure, fmt, ap);
    va_end(ap);
    return -1;
}

static uint64_t rnd(sim *s, uint64_t n)
{
    return n ? simfs_rand(s->fs) % n : 0;
}

static void on_done(void *ctx, const store_append_result *res)
{
    sim_append *a = ctx;
    a->status = res->status;
    if (res->status == 0) {
        a->acked = a->in_log = true;
        a->first_position = res->first_position;
        a->first_version = res->first_version;
    }
}

static int open_log(sim *s)
{
    sk_error err = {0};
    int rc = store_log_open(&s->cfg, &s->log, &err);
    if (rc)
        return fail(s, "open after recovery failed: %s", err.message);
    return 0;
}

static void queue_one(sim *s)
{
    if (s->count == APPENDS_MAX)
        return;
    sim_append *a = &s->appends[s->count];
    memset(a, 0, sizeof *a);
    int stream = (int)rnd(s, STREAMS);
    snprintf(a->stream, sizeof a->stream, "s-%02d", stream);
    a->count = 1 + (uint32_t)rnd(s, EVENTS_MAX);
    a->status = 1;
    ev_event evs[EVENTS_MAX];
    memset(evs, 0, sizeof evs);
    for (uint32_t i = 0; i < a->count; i++) {
        for (int b = 0; b < 16; b++)
            a->ids[i].bytes[b] = (uint8_t)rnd(s, 256);
        a->sizes[i] = (uint32_t)rnd(s, sizeof a->payloads[i]);
        for (uint32_t b = 0; b < a->sizes[i]; b++)
            a->payloads[i][b] = (uint8_t)rnd(s, 256);
        evs[i].event_id = a->ids[i];
        evs[i].type = ev_str_of("SimEvent");
        evs[i].occurred_at = 1;
        evs[i].schema_id = 7;
        evs[i].payload = a->payloads[i];
        evs[i].payload_size = a->sizes[i];
    }
    uint64_t expected = STORE_EXPECT_ANY;
    if (rnd(s, 4) == 0)
        expected = s->versions[stream] + (rnd(s, 4) == 0); /* sometimes stale on purpose */
    sk_error err;
    int rc = store_log_append_async(s->log, ev_str_of(a->stream), expected, evs, a->count, on_done,
                                    a, &err);
    if (rc != 0) {
        s->rejected++;
        return; /* refused up front: never queued, never in the log */
    }
    s->count++;
}

/* After a commit: learn from the completions. */
static void absorb(sim *s, size_t from)
{
    for (size_t i = from; i < s->count; i++) {
        sim_append *a = &s->appends[i];
        int stream = atoi(a->stream + 2);
        if (a->acked) {
            uint64_t last = a->first_version + a->count - 1;
            if (last > s->versions[stream])
                s->versions[stream] = last;
            s->acked_events += a->count;
        } else if (a->status == SK_ECONFLICT) {
            a->gone = true;
            s->conflicts++;
        } else if (a->status == -ENOSPC) {
            a->gone = true; /* reported as failed: it must never show up, even after a crash */
        }
    }
}

static int recover_if_failed(sim *s)
{
    store_log_stats st;
    store_log_get_stats(s->log, &st);
    for (int tries = 0; st.state == STORE_STATE_FAILED && tries < 5 && !simfs_crashed(s->fs);
         tries++) {
        sk_error err;
        if (store_log_recover(s->log, &err) == 0)
            s->recoveries++;
        store_log_get_stats(s->log, &st);
    }
    return 0;
}

/* The workload until the crash point (or the step limit). */
static void run_round(sim *s)
{
    int steps = 5 + (int)rnd(s, STEPS_MAX);
    for (int step = 0; step < steps && !simfs_crashed(s->fs); step++) {
        size_t from = s->count;
        int n = 1 + (int)rnd(s, 64);
        for (int i = 0; i < n; i++)
            queue_one(s);
        store_log_commit(s->log);
        absorb(s, from);
        recover_if_failed(s);
    }
}

static sim_append *find_append(sim *s, const ev_event *ev)
{
    for (size_t i = 0; i < s->count; i++) {
        sim_append *a = &s->appends[i];
        if (!a->gone && a->count && memcmp(a->ids[0].bytes, ev->event_id.bytes, 16) == 0)
            return a;
    }
    return NULL;
}

static int same_event(const sim_append *a, uint32_t i, const ev_event *ev)
{
    return ev_str_eq(ev->stream_id, a->stream) &&
           memcmp(ev->event_id.bytes, a->ids[i].bytes, 16) == 0 &&
           ev->payload_size == a->sizes[i] &&
           memcmp(ev->payload, a->payloads[i], a->sizes[i]) == 0 && ev->schema_id == 7 &&
           ev_str_eq(ev->type, "SimEvent");
}

/* Reads the whole log and checks it against what the workload knows. */
static int check_log(sim *s)
{
    store_reader *r;
    if (store_reader_open(s->log, 0, &r) != 0)
        return fail(s, "cannot open a reader");
    uint64_t versions[STREAMS] = {0}, pos = 0, head = store_log_head(s->log);
    ev_event ev;
    sk_error err;
    int rc;
    for (size_t i = 0; i < s->count; i++)
        s->appends[i].in_log = false;
    while ((rc = store_reader_next(r, &ev, &err)) == 1) {
        if (ev.position != pos)
            return fail(s, "position %llu read where %llu was expected",
                        (unsigned long long)ev.position, (unsigned long long)pos);
        sim_append *a = find_append(s, &ev);
        if (!a)
            return fail(s,
                        "position %llu holds an event no append wrote (or one whose append "
                        "is known to be gone)",
                        (unsigned long long)pos);
        /* The whole append must follow, in order. */
        uint64_t found_at = pos, found_version = ev.version;
        for (uint32_t i = 0; i < a->count; i++) {
            if (i > 0 && store_reader_next(r, &ev, &err) != 1)
                return fail(s, "append at %llu is cut after %u of %u events (half-visible)",
                            (unsigned long long)pos - i, i, a->count);
            if (!same_event(a, i, &ev))
                return fail(s, "event %u of the append at %llu differs from what was written", i,
                            (unsigned long long)(pos - i));
            int stream = atoi(a->stream + 2);
            if (ev.version != versions[stream] + 1)
                return fail(s, "stream %s jumps from version %llu to %llu", a->stream,
                            (unsigned long long)versions[stream], (unsigned long long)ev.version);
            versions[stream] = ev.version;
            if (a->acked &&
                (ev.position != a->first_position + i || ev.version != a->first_version + i))
                return fail(s,
                            "acknowledged event moved: position %llu version %llu, was "
                            "acknowledged at %llu version %llu",
                            (unsigned long long)ev.position, (unsigned long long)ev.version,
                            (unsigned long long)a->first_position + i,
                            (unsigned long long)a->first_version + i);
            pos++;
        }
        if (a->in_log)
            return fail(s, "an append appears twice in the log");
        a->in_log = true;
        if (!a->acked) {
            a->first_position = found_at;
            a->first_version = found_version;
        }
    }
    store_reader_close(r);
    if (rc < 0)
        return fail(s, "reading the log failed: %s", err.message);
    if (pos != head)
        return fail(s, "read %llu events but the head is %llu", (unsigned long long)pos,
                    (unsigned long long)head);
    for (size_t i = 0; i < s->count; i++) {
        sim_append *a = &s->appends[i];
        if (a->acked && !a->in_log)
            return fail(s, "acknowledged append %zu (%s, position %llu) is lost", i, a->stream,
                        (unsigned long long)a->first_position);
        if (!a->in_log)
            a->gone = true; /* never again: its id must not show up later */
        else if (!a->acked) {
            a->acked = true; /* it survived whole: from now on it must stay */
        }
    }
    memcpy(s->versions, versions, sizeof versions);
    return 0;
}

static int check_streams(sim *s)
{
    for (int st = 0; st < STREAMS; st++) {
        char name[16];
        snprintf(name, sizeof name, "s-%02d", st);
        if (store_log_stream_version(s->log, ev_str_of(name)) != s->versions[st])
            return fail(s, "stream %s: version %llu, the log holds %llu", name,
                        (unsigned long long)store_log_stream_version(s->log, ev_str_of(name)),
                        (unsigned long long)s->versions[st]);
        store_reader *r;
        if (store_reader_open_stream(s->log, ev_str_of(name), 1, &r) != 0)
            return fail(s, "cannot open a stream reader");
        ev_event ev;
        sk_error err;
        uint64_t v = 0;
        int rc;
        while ((rc = store_reader_next(r, &ev, &err)) == 1)
            if (ev.version != ++v || !ev_str_eq(ev.stream_id, name))
                break;
        store_reader_close(r);
        if (rc != 0 || v != s->versions[st])
            return fail(s, "stream %s reads %llu events through its index, expected %llu (rc %d)",
                        name, (unsigned long long)v, (unsigned long long)s->versions[st], rc);
    }
    return 0;
}

typedef struct fault_count {
    int n;
    char first[256];
} fault_count;

static void on_fault(void *ctx, const char *segment, uint64_t offset, const char *what)
{
    fault_count *f = ctx;
    if (f->n++ == 0)
        snprintf(f->first, sizeof f->first, "%s offset %llu: %s", segment,
                 (unsigned long long)offset, what);
}

static int check_verify(sim *s)
{
    fault_count f = {0};
    store_verify_report rep;
    int rc = store_log_verify(s->cfg.dir, simfs_io(s->fs), on_fault, NULL, &f, &rep);
    if (rc != 0)
        return fail(s, "verify: %d fault(s), first %s (rc %d)", f.n, f.first, rc);
    return 0;
}

static int run_seed(uint64_t seed, bool verbose, char *why, size_t why_size)
{
    sim s = {.seed = seed, .verbose = verbose};
    s.fs = simfs_create(seed, verbose);
    s.appends = calloc(APPENDS_MAX, sizeof *s.appends);
    store_config_init(&s.cfg, "/sim/log");
    s.cfg.io = simfs_io(s.fs);
    s.cfg.manual_commit = 1;
    s.cfg.segment_bytes_max = 2048 + rnd(&s, (uint64_t)14 * 1024);
    s.cfg.index_interval_bytes = 256 + (uint32_t)rnd(&s, 2048);
    simfs_faults faults = {
        .short_write = (uint32_t)rnd(&s, 60000),
        .write_eio = (uint32_t)rnd(&s, 8000),
        .write_nospc = (uint32_t)rnd(&s, 15000),
        .fsync_eio = (uint32_t)rnd(&s, 15000),
        .meta_eio = (uint32_t)rnd(&s, 5000),
        .writeback = (uint32_t)rnd(&s, 300000),
    };
    int rc = open_log(&s);
    for (int round = 0; rc == 0 && round < ROUNDS; round++) {
        simfs_set_faults(s.fs, &faults);
        simfs_crash_after(s.fs, 20 + rnd(&s, 600));
        run_round(&s);
        /* Stop the machine where it is (if the crash point was not reached, now). */
        if (!simfs_crashed(s.fs))
            simfs_crash_after(s.fs, 1);
        store_log_close(s.log); /* every call fails: nothing more reaches the disk */
        s.log = NULL;
        s.crashes++;
        simfs_set_faults(s.fs, NULL);
        simfs_reboot(s.fs);
        rc = open_log(&s);
        if (rc == 0)
            rc = check_log(&s);
        if (rc == 0)
            rc = check_streams(&s);
        if (rc == 0)
            rc = check_verify(&s);
    }
    if (s.log)
        store_log_close(s.log);
    if (verbose || rc)
        fprintf(stderr,
                "seed %llu: segment %llu bytes, %zu appends, %llu events acknowledged, %llu "
                "conflicts, %llu refused, %llu recoveries, %llu crashes, %llu I/O calls\n",
                (unsigned long long)seed, (unsigned long long)s.cfg.segment_bytes_max, s.count,
                (unsigned long long)s.acked_events, (unsigned long long)s.conflicts,
                (unsigned long long)s.rejected, (unsigned long long)s.recoveries,
                (unsigned long long)s.crashes, (unsigned long long)simfs_calls(s.fs));
    snprintf(why, why_size, "%s", s.failure);
    free(s.appends);
    simfs_destroy(s.fs);
    return rc;
}

static const char USAGE[] =
    "Usage: skald-sim --seed N | --seeds A..B [-v]\n"
    "Runs the storage-fault simulation of the log for one seed or a range of seeds.\n"
    "A failing seed prints the command that replays it exactly. Exit 0 when every seed\n"
    "passes, 1 when one fails, 2 on a usage error.\n";

int main(int argc, char **argv)
{
    uint64_t from = 0, to = 0;
    bool have = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "-v") == 0) {
            verbose = true;
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            from = to = strtoull(argv[++i], NULL, 10);
            have = true;
        } else if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc &&
                   sscanf(argv[i + 1], "%llu..%llu", (unsigned long long *)&from,
                          (unsigned long long *)&to) == 2 &&
                   from <= to) {
            i++;
            have = true;
        } else {
            fprintf(stderr, "skald-sim: bad argument '%s'\nTry 'skald-sim --help'.\n", argv[i]);
            return 2;
        }
    }
    if (!have) {
        fprintf(stderr, "skald-sim: give --seed N or --seeds A..B\nTry 'skald-sim --help'.\n");
        return 2;
    }
    for (uint64_t seed = from; seed <= to; seed++) {
        char why[1024];
        if (run_seed(seed, verbose, why, sizeof why) != 0) {
            fprintf(stderr, "skald-sim: seed %llu FAILED: %s\nreplay: skald-sim --seed %llu -v\n",
                    (unsigned long long)seed, why, (unsigned long long)seed);
            return 1;
        }
        if (seed == to)
            break;
    }
    printf("skald-sim: seeds %llu..%llu passed\n", (unsigned long long)from,
           (unsigned long long)to);
    return 0;
}
