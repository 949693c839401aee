/*
 * sim.c -- skald-sim: the seeded storage-fault simulation of the log.
 *
 * Each seed drives a log on simfs through rounds of a random workload -- many appends in
 * flight per group commit (1-64 appends of 1-5 events over a few dozen streams, some
 * conditional) -- while simfs injects short writes, EIO and ENOSPC on writes, EIO on
 * fdatasync and metadata calls, and a crash at a random call. A failed log is recovered,
 * reopened, or left failed for a step. After each crash the disk "reboots" (unsynced
 * sectors kept, dropped or torn) and the log is reopened, then:
 *   - every durable acknowledged event is there, at its position, with its envelope and
 *     payload (with fsync=always every acknowledged event is durable);
 *   - positions run 0..head-1, and each stream's versions run 1..n;
 *   - an append that was never acknowledged is either wholly there or wholly absent;
 *   - verify finds no fault, and each stream reads the same through its index;
 *   - a barrier completes after every append queued before it, and one that succeeded
 *     with fsync=always vouches for its stream's version: no crash takes it back;
 *   - subscribers tail the log throughout (one from position 0 for the whole seed, one
 *     opened each round at a random position): each sees every position once, in order,
 *     across recoveries in place and reopens, and with fsync=always|interval everything
 *     any of them saw is still in the log, at the same position, after every crash.
 * The log runs with manual_commit: no appender thread, so a run depends only on the seed
 * and `skald-sim --seed N` replays it exactly.
 */
#include "tests/sim/simfs.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STREAMS      24
#define ROUNDS       4
#define STEPS_MAX    40
#define APPENDS_MAX  4096
#define EVENTS_MAX   5
#define OPEN_TRIES   3
#define BARRIERS_MAX 1024
#define SUBS         2

/* One append the workload made, and what became of it. */
typedef struct sim_append {
    char stream[16];
    uint32_t count;
    ev_uuid ids[EVENTS_MAX];
    uint32_t sizes[EVENTS_MAX];
    uint8_t payloads[EVENTS_MAX][96];
    int status;   /* of the completion; 1 while pending */
    bool acked;   /* completed with success, or found whole in the log: keeps its place */
    bool durable; /* must survive a crash */
    bool in_log;  /* scratch of check_log */
    bool gone;    /* known not to be in the log, and never to be again */
    uint64_t first_position, first_version;
} sim_append;

/* One barrier the workload queued. */
typedef struct sim_barrier {
    struct sim *sim;
    int stream;
    size_t before; /* the appends queued before it: appends[0..before) */
    int status;    /* of the completion; 1 while pending */
    uint64_t version, last_position;
} sim_barrier;

typedef struct sim {
    uint64_t seed;
    int verbose;
    bool restarts; /* --restarts: a failed log may also be reopened, or left failed */
    simfs *fs;
    store_log *log;
    store_config cfg;
    sim_append *appends;
    size_t count;
    sim_barrier *barriers;
    size_t nbarriers;
    uint64_t versions[STREAMS]; /* per stream, as the log has it (for conditions) */
    uint32_t *at;               /* the last scan: position -> index of its append */
    size_t at_cap;
    uint64_t scanned; /* positions the last scan read */
    char failure[1024];
    uint64_t acked_events, crashes, recoveries, reopens, repairs, conflicts, rejected, lost;
    /* Subscribers: what they were shown, by position (seen_ids[0..seen_count)). */
    store_sub *subs[SUBS];
    uint64_t sub_next[SUBS]; /* the position each expects next */
    ev_uuid *seen_ids;
    uint64_t seen_count, seen_cap, sub_events, truncations;
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

static bool weak_mode(const sim *s)
{
    return s->cfg.fsync_mode != STORE_FSYNC_ALWAYS;
}

static int stream_number(const sim_append *a)
{
    return atoi(a->stream + 2);
}

static void on_done(void *ctx, const store_append_result *res)
{
    sim_append *a = ctx;
    a->status = res->status;
    if (res->status == 0) {
        a->acked = true;
        a->first_position = res->first_position;
        a->first_version = res->first_version;
    }
}

/* Checked at once: completions run in queue order, so every earlier append is done, and
 * a success reports the stream as the acknowledged appends before it left it. */
static void on_barrier(void *ctx, const store_append_result *res)
{
    sim_barrier *b = ctx;
    sim *s = b->sim;
    b->status = res->status;
    b->version = res->stream_version;
    b->last_position = res->last_position;
    for (size_t i = 0; i < b->before; i++)
        if (s->appends[i].status == 1) {
            fail(s, "a barrier completed before append %zu queued ahead of it", i);
            return;
        }
    if (res->status != 0)
        return;
    for (size_t i = 0; i < b->before; i++) {
        const sim_append *a = &s->appends[i];
        if (a->status != 0 || a->gone || stream_number(a) != b->stream)
            continue;
        uint64_t last = a->first_version + a->count - 1;
        if (last > res->stream_version)
            fail(s, "a barrier reports version %llu behind append %zu's %llu",
                 (unsigned long long)res->stream_version, i, (unsigned long long)last);
        else if (last == res->stream_version &&
                 res->last_position != a->first_position + a->count - 1)
            fail(s, "a barrier reports last position %llu, append %zu ends at %llu",
                 (unsigned long long)res->last_position, i,
                 (unsigned long long)(a->first_position + a->count - 1));
    }
}

static void trace(const sim *s, const char *what)
{
    if (s->verbose)
        fprintf(stderr, "sim: %s (%zu appends so far)\n", what, s->count);
}

/* ---------------------------------------------------------------------------------------
 * Opening, with the operator's repair where fsync=interval|never allows damage.
 */

/* A weak fsync mode may leave a later batch on disk without an earlier one; the log then
 * refuses to open and the operator cuts it where a read-only open stops. */
static int repair(sim *s, const char *why)
{
    if (!weak_mode(s))
        return fail(s, "open refused the log: %s", why);
    store_config ro = s->cfg;
    ro.read_only = 1;
    store_log *log;
    sk_error err = {0};
    if (store_log_open(&ro, &log, &err) != 0)
        return fail(s, "read-only open failed: %s", err.message);
    store_log_stats st;
    store_log_get_stats(log, &st);
    store_log_close(log);
    if (!st.corrupt)
        return fail(s, "open reported damage (%s) that a read-only open does not see", why);
    if (store_log_repair(s->cfg.dir, simfs_io(s->fs), st.corrupt_position, &err) != 0)
        return fail(s, "repair at %llu failed: %s", (unsigned long long)st.corrupt_position,
                    err.message);
    s->repairs++;
    if (s->verbose)
        fprintf(stderr, "sim: repaired the log at position %llu after damage: %s\n",
                (unsigned long long)st.corrupt_position, why);
    return 0;
}

/* Opens the log. With faults on, an I/O error may defeat every try: -EAGAIN, and the
 * round ends. Without faults, any failure is the simulation's failure. */
static int open_log(sim *s, bool faulty)
{
    sk_error err = {0};
    int rc = 0;
    for (int tries = 0; tries < OPEN_TRIES && !simfs_crashed(s->fs); tries++) {
        memset(&err, 0, sizeof err);
        rc = store_log_open(&s->cfg, &s->log, &err);
        if (rc == 0)
            return 0;
        s->log = NULL;
        if (rc == SK_ECORRUPT) {
            simfs_hold(s->fs, true);
            rc = repair(s, err.message);
            simfs_hold(s->fs, false);
            if (rc != 0)
                return rc;
        } else if (!faulty) {
            break;
        }
    }
    if (faulty)
        return -EAGAIN;
    return fail(s, "open after the crash failed: %s", err.message);
}

/* ---------------------------------------------------------------------------------------
 * The workload.
 */
static int queue_barrier(sim *s)
{
    if (s->nbarriers == BARRIERS_MAX)
        return 0;
    sim_barrier *b = &s->barriers[s->nbarriers];
    *b = (sim_barrier){.sim = s, .stream = (int)rnd(s, STREAMS), .before = s->count, .status = 1};
    char name[16];
    snprintf(name, sizeof name, "s-%02d", b->stream);
    uint64_t expected = rnd(s, 2) ? STORE_EXPECT_ANY : s->versions[b->stream];
    sk_error err;
    if (store_log_barrier_async(s->log, ev_str_of(name), expected, on_barrier, b, &err) == 0)
        s->nbarriers++;
    return 0;
}

static int queue_one(sim *s)
{
    if (rnd(s, 8) == 0)
        return queue_barrier(s);
    if (s->count == APPENDS_MAX)
        return 0;
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
    if (rc == 0) {
        s->count++;
        return 0;
    }
    s->rejected++; /* refused up front: never queued, never in the log */
    store_log_stats st;
    store_log_get_stats(s->log, &st);
    if (st.state == STORE_STATE_OK && rc != SK_EBUSY)
        return fail(s, "an append was refused (%s) while the log is writable", sk_strerror(rc));
    return 0;
}

/* After a commit: learn from the completions. */
static void absorb(sim *s, size_t from)
{
    for (size_t i = from; i < s->count; i++) {
        sim_append *a = &s->appends[i];
        int stream = stream_number(a);
        if (a->acked) {
            uint64_t last = a->first_version + a->count - 1;
            if (last > s->versions[stream])
                s->versions[stream] = last;
            s->acked_events += a->count;
            a->durable = !weak_mode(s);
        } else if (a->status == SK_ECONFLICT) {
            a->gone = true;
            s->conflicts++;
        } else if (a->status == -ENOSPC) {
            a->gone = true; /* reported as failed: it must never show up, even after a crash */
        }
    }
}

static int last_segment(void *ctx, const store_segment_info *info)
{
    *(uint64_t *)ctx = info->first_position;
    return 0;
}

/* fsync=interval (with a 0 ms interval: every commit ends with an fdatasync) and never: an
 * event is durable once an fdatasync covering it succeeded. With interval that is every
 * successful commit; with never, the seal of its segment. */
static void note_durable(sim *s)
{
    store_log_stats st;
    store_log_get_stats(s->log, &st);
    if (!weak_mode(s) || st.state != STORE_STATE_OK || simfs_crashed(s->fs))
        return;
    uint64_t below = UINT64_MAX;
    if (s->cfg.fsync_mode == STORE_FSYNC_NEVER)
        store_log_segments(s->log, last_segment, &below);
    for (size_t i = 0; i < s->count; i++) {
        sim_append *a = &s->appends[i];
        if (a->status == 0 && !a->gone && a->first_position + a->count <= below)
            a->durable = true;
    }
}

static void refresh_versions(sim *s)
{
    for (int st = 0; st < STREAMS; st++) {
        char name[16];
        snprintf(name, sizeof name, "s-%02d", st);
        s->versions[st] = store_log_stream_version(s->log, ev_str_of(name));
    }
}

/* ---------------------------------------------------------------------------------------
 * Subscribers.
 */
static void close_subs(sim *s)
{
    for (int k = 0; k < SUBS; k++) {
        store_sub_close(s->subs[k]);
        s->subs[k] = NULL;
    }
}

static int open_sub(sim *s, int k, uint64_t from)
{
    if (store_sub_open(s->log, from, &s->subs[k]) != 0)
        return fail(s, "cannot open subscription %d at %llu", k, (unsigned long long)from);
    s->sub_next[k] = from;
    return 0;
}

/* Opens the subscribers that are not open: the first where it stopped, the second at a
 * random position it has already seen (so it checks against what the first saw). */
static int open_subs(sim *s)
{
    int rc = 0;
    if (!s->subs[0])
        rc = open_sub(s, 0, s->sub_next[0]);
    if (rc == 0 && !s->subs[1])
        rc = open_sub(s, 1, rnd(s, s->sub_next[0] + 1));
    return rc;
}

static int remember_seen(sim *s, const ev_event *ev)
{
    if (s->seen_count == s->seen_cap) {
        size_t cap = s->seen_cap ? s->seen_cap * 2 : 1024;
        ev_uuid *n = realloc(s->seen_ids, cap * sizeof *n);
        if (!n)
            return fail(s, "out of memory");
        s->seen_ids = n;
        s->seen_cap = cap;
    }
    s->seen_ids[s->seen_count++] = ev->event_id;
    return 0;
}

/* One subscriber reads what it can: each event is the next position, and one that
 * another subscriber saw at that position is the same event. */
static int read_sub(sim *s, int k)
{
    ev_event ev;
    sk_error err = {0};
    int rc;
    while ((rc = store_sub_next(s->subs[k], &ev, &err)) == 1) {
        if (ev.position != s->sub_next[k])
            return fail(s, "subscriber %d got position %llu where %llu was next", k,
                        (unsigned long long)ev.position, (unsigned long long)s->sub_next[k]);
        if (ev.position >= store_log_durable_head(s->log))
            return fail(s, "subscriber %d got position %llu past the durable head", k,
                        (unsigned long long)ev.position);
        if (ev.position < s->seen_count) {
            if (memcmp(s->seen_ids[ev.position].bytes, ev.event_id.bytes, 16) != 0)
                return fail(s, "subscribers saw two different events at position %llu",
                            (unsigned long long)ev.position);
        } else if (ev.position == s->seen_count && remember_seen(s, &ev) != 0) {
            return -1;
        }
        s->sub_next[k]++;
        s->sub_events++;
    }
    if (rc == SK_ETRUNCATED && s->cfg.fsync_mode == STORE_FSYNC_NEVER) {
        /* fsync=never: a recovery took back events it saw; it starts over at the head. */
        uint64_t head = store_log_durable_head(s->log);
        s->truncations++;
        store_sub_close(s->subs[k]);
        s->subs[k] = NULL;
        if (s->seen_count > head)
            s->seen_count = head;
        for (int j = 0; j < SUBS; j++)
            if (s->sub_next[j] > head)
                s->sub_next[j] = head;
        return open_sub(s, k, s->sub_next[k]);
    }
    if (rc < 0 && rc != SK_ECORRUPT && rc > -1000) {
        /* An injected read error: the consumer opens again where it was. */
        store_sub_close(s->subs[k]);
        s->subs[k] = NULL;
        return open_sub(s, k, s->sub_next[k]);
    }
    if (rc < 0)
        return fail(s, "subscriber %d failed at %llu: %s", k, (unsigned long long)s->sub_next[k],
                    err.message);
    return 0;
}

static int read_subs(sim *s)
{
    int rc = 0;
    for (int k = 0; k < SUBS && rc == 0; k++)
        if (s->subs[k])
            rc = read_sub(s, k);
    return rc;
}

/* After a crash or a reopen: with a durable fsync mode, everything a subscriber saw is in
 * the log at the same position (check_log has mapped positions to appends). */
static int check_seen(sim *s)
{
    if (s->cfg.fsync_mode == STORE_FSYNC_NEVER) {
        uint64_t head = store_log_head(s->log);
        if (s->seen_count > head)
            s->seen_count = head; /* never: what was not synced may be gone */
        for (int k = 0; k < SUBS; k++)
            if (s->sub_next[k] > head)
                s->sub_next[k] = head;
    }
    if (s->seen_count > s->scanned)
        return fail(s, "subscribers saw %llu positions; after the crash the log has %llu",
                    (unsigned long long)s->seen_count, (unsigned long long)s->scanned);
    for (uint64_t p = 0; p < s->seen_count; p++) {
        const sim_append *a = &s->appends[s->at[p]];
        if (memcmp(a->ids[p - a->first_position].bytes, s->seen_ids[p].bytes, 16) != 0)
            return fail(s,
                        "position %llu holds another event than subscribers saw before the crash",
                        (unsigned long long)p);
    }
    return 0;
}

/* store_log_recover drops what is not known durable: nothing durable may go with it. */
static int check_recovered(sim *s)
{
    uint64_t head = store_log_head(s->log);
    for (size_t i = 0; i < s->count; i++) {
        sim_append *a = &s->appends[i];
        if (!a->acked || a->gone || a->first_position + a->count <= head)
            continue;
        if (a->durable)
            return fail(s,
                        "recovery dropped acknowledged append %zu (%s, position %llu, %u "
                        "events): the head is now %llu",
                        i, a->stream, (unsigned long long)a->first_position, a->count,
                        (unsigned long long)head);
        a->gone = true; /* acknowledged before its fdatasync (interval/never): lost */
        s->lost++;
    }
    refresh_versions(s);
    return 0;
}

static int recover(sim *s)
{
    store_log_stats st;
    store_log_get_stats(s->log, &st);
    for (int tries = 0; st.state == STORE_STATE_FAILED && tries < 5 && !simfs_crashed(s->fs);
         tries++) {
        sk_error err;
        if (store_log_recover(s->log, &err) == 0) {
            s->recoveries++;
            trace(s, "recovered");
            return check_recovered(s);
        }
        store_log_get_stats(s->log, &st);
    }
    return 0;
}

static int check_log(sim *s, bool after_crash);
static int check_streams(sim *s);

/* Close and open again with faults on (a restart of the process, not of the machine),
 * then check what the log holds. */
static int reopen(sim *s)
{
    close_subs(s);
    store_log_close(s->log);
    s->log = NULL;
    int rc = open_log(s, true);
    if (rc != 0)
        return rc == -EAGAIN ? 0 : rc; /* the round ends; the crash path opens it */
    if (simfs_crashed(s->fs))
        return 0; /* the machine stopped at the open's last call (one whose failure the log
                     tolerates, such as publishing the durable head): the crash path runs */
    s->reopens++;
    trace(s, "reopened");
    simfs_hold(s->fs, true);
    rc = check_log(s, false);
    if (rc == 0)
        rc = check_streams(s);
    if (rc == 0)
        rc = check_seen(s);
    if (rc == 0)
        rc = open_subs(s);
    simfs_hold(s->fs, false);
    return rc;
}

/* A failed log: recovered; with --restarts also reopened, or left failed for a step (a
 * commit then runs in the failed state, as the appender thread's periodic fdatasync
 * would). */
static int handle_failure(sim *s)
{
    store_log_stats st;
    store_log_get_stats(s->log, &st);
    if (st.state != STORE_STATE_FAILED || simfs_crashed(s->fs))
        return 0;
    switch (s->restarts ? rnd(s, 4) : 2) {
    case 0:
        return 0;
    case 1:
        return reopen(s);
    default:
        return recover(s);
    }
}

/* The workload until the crash point (or the step limit). */
static int run_round(sim *s)
{
    int steps = 5 + (int)rnd(s, STEPS_MAX), rc = 0;
    for (int step = 0; rc == 0 && step < steps && s->log && !simfs_crashed(s->fs); step++) {
        size_t from = s->count;
        int n = 1 + (int)rnd(s, 64);
        for (int i = 0; rc == 0 && i < n; i++)
            rc = queue_one(s);
        store_log_commit(s->log);
        absorb(s, from);
        note_durable(s);
        if (rc == 0)
            rc = read_subs(s);
        if (rc == 0)
            rc = handle_failure(s);
        if (rc == 0 && s->log)
            rc = read_subs(s);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * The checks.
 */
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

/* Reads one append whose first event is *ev from the reader and checks every event of it
 * against what was written. Advances *pos past it. */
static int check_append(sim *s, store_reader *r, sim_append *a, ev_event *ev,
                        uint64_t versions[STREAMS], uint64_t *pos)
{
    sk_error err;
    uint64_t first = *pos;
    int stream = stream_number(a);
    for (uint32_t i = 0; i < a->count; i++) {
        if (i > 0 && store_reader_next(r, ev, &err) != 1)
            return fail(s, "append at %llu is cut after %u of %u events (half-visible)",
                        (unsigned long long)first, i, a->count);
        if (ev->position != *pos)
            return fail(s, "position %llu read where %llu was expected",
                        (unsigned long long)ev->position, (unsigned long long)*pos);
        if (!same_event(a, i, ev))
            return fail(s, "event %u of the append at %llu differs from what was written", i,
                        (unsigned long long)first);
        if (ev->version != versions[stream] + 1)
            return fail(s, "stream %s jumps from version %llu to %llu", a->stream,
                        (unsigned long long)versions[stream], (unsigned long long)ev->version);
        versions[stream] = ev->version;
        if (a->acked &&
            (ev->position != a->first_position + i || ev->version != a->first_version + i))
            return fail(s,
                        "acknowledged event moved: position %llu version %llu, was "
                        "acknowledged at %llu version %llu",
                        (unsigned long long)ev->position, (unsigned long long)ev->version,
                        (unsigned long long)a->first_position + i,
                        (unsigned long long)a->first_version + i);
        (*pos)++;
    }
    return 0;
}

/* After a scan: what each append's presence or absence means from now on. */
static int settle_appends(sim *s, bool after_crash)
{
    for (size_t i = 0; i < s->count; i++) {
        sim_append *a = &s->appends[i];
        if (a->gone)
            continue;
        if (a->in_log) {
            a->acked = true; /* whole in the log: from now on it keeps its place */
            a->durable |= after_crash;
            continue;
        }
        if (a->acked && (a->durable || !after_crash) && !weak_mode(s))
            return fail(s, "acknowledged append %zu (%s, position %llu) is lost%s", i, a->stream,
                        (unsigned long long)a->first_position,
                        after_crash ? "" : " without a crash");
        if (a->acked && a->durable)
            return fail(s, "append %zu (%s, position %llu) is lost after an fdatasync covered it",
                        i, a->stream, (unsigned long long)a->first_position);
        if (a->acked)
            s->lost++;
        a->gone = true; /* never again: its ids must not show up later */
    }
    return 0;
}

/* Reads the whole log and checks it against what the workload knows. */
static int check_log(sim *s, bool after_crash)
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
    if (head > s->at_cap) {
        uint32_t *at = realloc(s->at, head * sizeof *at);
        if (!at) {
            store_reader_close(r);
            return fail(s, "out of memory");
        }
        s->at = at;
        s->at_cap = head;
    }
    while ((rc = store_reader_next(r, &ev, &err)) == 1) {
        sim_append *a = find_append(s, &ev);
        if (!a) {
            store_reader_close(r);
            return fail(s,
                        "position %llu holds an event no append wrote (or one whose append "
                        "is known to be gone)",
                        (unsigned long long)pos);
        }
        uint64_t found_at = pos, found_version = ev.version;
        int bad = a->in_log ? fail(s, "an append appears twice in the log")
                            : check_append(s, r, a, &ev, versions, &pos);
        if (bad) {
            store_reader_close(r);
            return bad;
        }
        a->in_log = true;
        a->first_position = found_at;
        a->first_version = found_version;
        for (uint64_t p = found_at; p < pos && p < s->at_cap; p++)
            s->at[p] = (uint32_t)(a - s->appends);
    }
    store_reader_close(r);
    if (rc < 0)
        return fail(s, "reading the log failed: %s", err.message);
    if (pos != head)
        return fail(s, "read %llu events but the head is %llu", (unsigned long long)pos,
                    (unsigned long long)head);
    memcpy(s->versions, versions, sizeof versions);
    s->scanned = pos;
    return settle_appends(s, after_crash);
}

/* An event read through a stream index is the one the scan found at its position. */
static bool same_as_scan(const sim *s, const ev_event *ev)
{
    if (ev->position >= s->scanned)
        return false;
    const sim_append *a = &s->appends[s->at[ev->position]];
    uint64_t i = ev->position - a->first_position;
    return a->in_log && i < a->count && ev->version == a->first_version + i &&
           same_event(a, (uint32_t)i, ev);
}

static int check_streams(sim *s)
{
    for (int st = 0; st < STREAMS; st++) {
        char name[16];
        snprintf(name, sizeof name, "s-%02d", st);
        uint64_t have = store_log_stream_version(s->log, ev_str_of(name));
        if (have != s->versions[st])
            return fail(s, "stream %s: version %llu, the log holds %llu", name,
                        (unsigned long long)have, (unsigned long long)s->versions[st]);
        store_reader *r;
        if (store_reader_open_stream(s->log, ev_str_of(name), 1, &r) != 0)
            return fail(s, "cannot open a stream reader");
        ev_event ev;
        sk_error err;
        uint64_t v = 0;
        int rc;
        while ((rc = store_reader_next(r, &ev, &err)) == 1)
            if (ev.version != ++v || !same_as_scan(s, &ev))
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

/* ---------------------------------------------------------------------------------------
 * One seed.
 */
static void configure(sim *s, simfs_faults *faults)
{
    store_config_init(&s->cfg, "/sim/log");
    s->cfg.io = simfs_io(s->fs);
    s->cfg.manual_commit = 1;
    s->cfg.segment_bytes_max = 2048 + rnd(s, (uint64_t)14 * 1024);
    s->cfg.index_interval_bytes = 256 + (uint32_t)rnd(s, 2048);
    uint64_t mode = rnd(s, 10); /* mostly always; a tenth each interval and never */
    s->cfg.fsync_mode = mode < 8    ? STORE_FSYNC_ALWAYS
                        : mode == 8 ? STORE_FSYNC_INTERVAL
                                    : STORE_FSYNC_NEVER;
    s->cfg.fsync_interval_ms = 0; /* a clock would make the run depend on time */
    s->cfg.verify_on_open = rnd(s, 4) == 0;
    *faults = (simfs_faults){
        .short_write = (uint32_t)rnd(s, 60000),
        .write_eio = (uint32_t)rnd(s, 8000),
        .write_nospc = (uint32_t)rnd(s, 15000),
        .fsync_eio = (uint32_t)rnd(s, 15000),
        .meta_eio = (uint32_t)rnd(s, 5000),
        .writeback = (uint32_t)rnd(s, 300000),
    };
    /* A quarter of the seeds are storms of one kind: paths behind a rare fault (a commit
     * after a recovery from a failed fdatasync, say) are reached often enough there. */
    switch (rnd(s, 12)) {
    case 0:
        faults->fsync_eio = 20000 + (uint32_t)rnd(s, 80000);
        break;
    case 1:
        faults->write_eio = 20000 + (uint32_t)rnd(s, 60000);
        break;
    case 2:
        faults->write_nospc = 20000 + (uint32_t)rnd(s, 80000);
        break;
    default:
        break;
    }
}

/* After a crash: with fsync=always, what a barrier vouched for is still there. */
static int check_barriers(sim *s)
{
    if (s->failure[0])
        return -1; /* a check inside a completion failed */
    for (size_t i = 0; i < s->nbarriers && !weak_mode(s); i++) {
        const sim_barrier *b = &s->barriers[i];
        if (b->status == 0 && s->versions[b->stream] < b->version)
            return fail(s,
                        "stream s-%02d is at version %llu after a crash; barrier %zu "
                        "vouched for %llu",
                        b->stream, (unsigned long long)s->versions[b->stream], i,
                        (unsigned long long)b->version);
    }
    return 0;
}

/* The machine stops where it is (if the crash point was not reached, now), the log
 * object goes away without writing anything, the disk reboots, the log opens again. */
static int crash_and_check(sim *s)
{
    if (!simfs_crashed(s->fs))
        simfs_crash_after(s->fs, 1);
    close_subs(s);
    store_log_close(s->log); /* every call fails: nothing more reaches the disk */
    s->log = NULL;
    s->crashes++;
    simfs_set_faults(s->fs, NULL);
    simfs_reboot(s->fs);
    trace(s, "crashed and rebooted");
    int rc = open_log(s, false);
    if (rc == 0)
        rc = check_log(s, true);
    if (rc == 0)
        rc = check_streams(s);
    if (rc == 0)
        rc = check_verify(s);
    if (rc == 0)
        rc = check_barriers(s);
    if (rc == 0)
        rc = check_seen(s);
    return rc;
}

static size_t barriers_held(const sim *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nbarriers; i++)
        n += s->barriers[i].status == 0;
    return n;
}

static void summarize(const sim *s, FILE *out)
{
    fprintf(
        out,
        "seed %llu: fsync=%s, segment %llu bytes, %zu appends, %zu barriers (%zu held), "
        "%llu events acknowledged, "
        "%llu appends lost unsynced, %llu conflicts, %llu refused, %llu recoveries, %llu reopens, "
        "%llu repairs, %llu crashes, %llu I/O calls, %llu events to subscribers (%llu "
        "positions seen, %llu truncations)\n",
        (unsigned long long)s->seed, store_fsync_mode_name(s->cfg.fsync_mode),
        (unsigned long long)s->cfg.segment_bytes_max, s->count, s->nbarriers, barriers_held(s),
        (unsigned long long)s->acked_events, (unsigned long long)s->lost,
        (unsigned long long)s->conflicts, (unsigned long long)s->rejected,
        (unsigned long long)s->recoveries, (unsigned long long)s->reopens,
        (unsigned long long)s->repairs, (unsigned long long)s->crashes,
        (unsigned long long)simfs_calls(s->fs), (unsigned long long)s->sub_events,
        (unsigned long long)s->seen_count, (unsigned long long)s->truncations);
}

static int run_seed(uint64_t seed, int verbose, bool restarts, FILE *out, char *why,
                    size_t why_size)
{
    sim s = {.seed = seed, .verbose = verbose, .restarts = restarts};
    s.fs = simfs_create(seed, verbose);
    s.appends = calloc(APPENDS_MAX, sizeof *s.appends);
    s.barriers = calloc(BARRIERS_MAX, sizeof *s.barriers);
    if (!s.appends || !s.barriers) {
        free(s.appends);
        free(s.barriers);
        simfs_destroy(s.fs);
        snprintf(why, why_size, "out of memory");
        return -ENOMEM;
    }
    simfs_faults faults;
    configure(&s, &faults);
    int rc = open_log(&s, false);
    for (int round = 0; rc == 0 && round < ROUNDS; round++) {
        simfs_set_faults(s.fs, &faults);
        simfs_crash_after(s.fs, 20 + rnd(&s, 600));
        rc = s.log ? open_subs(&s) : 0;
        if (rc == 0)
            rc = run_round(&s);
        if (rc == 0)
            rc = crash_and_check(&s);
    }
    close_subs(&s);
    store_log_close(s.log);
    if (verbose || rc)
        summarize(&s, out);
    snprintf(why, why_size, "%s", s.failure);
    free(s.appends);
    free(s.barriers);
    free(s.at);
    free(s.seen_ids);
    simfs_destroy(s.fs);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * The command line.
 */
static const char USAGE[] =
    "Usage: skald-sim --seed N | --seeds A..B [--restarts] [-v | -vv]\n"
    "Runs the storage-fault simulation of the log for one seed or a range of seeds.\n"
    "  --seed N      run seed N\n"
    "  --seeds A..B  run seeds A to B, stopping at the first failure\n"
    "  -v            trace every fault, crash and recovery, and the log's own messages\n"
    "  -vv           also trace every I/O call the log makes\n"
    "  --restarts    a failed log may also be closed and reopened, or left failed for a\n"
    "                commit, instead of recovered (CI runs seeds 2001..2400 so)\n"
    "A failing seed prints the command that replays it exactly. Exit 0 when every seed\n"
    "passes, 1 when one fails, 2 on a usage error.\n";

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "skald-sim: %s%s%s\nTry 'skald-sim --help'.\n", what, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

static bool parse_seed(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-')
        return false;
    *out = v;
    return true;
}

static bool parse_range(const char *text, uint64_t *from, uint64_t *to)
{
    const char *dots = strstr(text, "..");
    if (!dots || dots - text > 30)
        return false;
    char first[32];
    memcpy(first, text, (size_t)(dots - text));
    first[dots - text] = '\0';
    return parse_seed(first, from) && parse_seed(dots + 2, to) && *from <= *to;
}

/* The log reports its failed states through sk_log; thousands of them would drown the
 * result, so without -v they are dropped, and with -v traced in the simulation's lines. */
static void drop_message(void *ctx, sk_log_level level, const char *subsystem, const char *message,
                         const sk_log_field *fields, size_t count)
{
    (void)ctx, (void)level, (void)subsystem, (void)message, (void)fields, (void)count;
}

static void trace_message(void *ctx, sk_log_level level, const char *subsystem, const char *message,
                          const sk_log_field *fields, size_t count)
{
    (void)ctx;
    fprintf(stderr, "sim: [%s %s] %s", subsystem, sk_log_level_name(level), message);
    for (size_t i = 0; i < count; i++)
        fprintf(stderr, "%s%s=%s", i ? ", " : " (", fields[i].key, fields[i].value);
    fputs(count ? ")\n" : "\n", stderr);
}

int main(int argc, char **argv)
{
    uint64_t from = 0, to = 0;
    bool have = false, restarts = false;
    int verbose = 0;
    /* getopt_long: a leading '-' returns operands in order (code 1) so a stray one is
     * named; ':' returns a missing value as ':' instead of printing getopt's message.
     * -vv is -v twice. */
    enum { OPT_SEED = 256, OPT_SEEDS, OPT_RESTARTS };
    static const struct option options[] = {
        {"seed", required_argument, NULL, OPT_SEED},
        {"seeds", required_argument, NULL, OPT_SEEDS},
        {"restarts", no_argument, NULL, OPT_RESTARTS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int code;
    opterr = 0;
    while ((code = getopt_long(argc, argv, "-:hv", options, NULL)) != -1) {
        switch (code) {
        case 'h':
            fputs(USAGE, stdout);
            return 0;
        case 'v':
            verbose = verbose > 1 ? 2 : verbose + 1;
            break;
        case OPT_RESTARTS:
            restarts = true;
            break;
        case OPT_SEED:
            if (!parse_seed(optarg, &from))
                return usage_error("bad seed number", optarg);
            to = from;
            have = true;
            break;
        case OPT_SEEDS:
            if (!parse_range(optarg, &from, &to))
                return usage_error("bad seed range (want A..B with A <= B)", optarg);
            have = true;
            break;
        case ':':
            return usage_error(optopt == OPT_SEEDS ? "--seeds needs A..B" : "--seed needs a number",
                               NULL);
        case 1:
            return usage_error("unknown argument", optarg);
        default:
            return usage_error("unknown argument", argv[optind - 1]);
        }
    }
    if (optind < argc) /* after "--" */
        return usage_error("unknown argument", argv[optind]);
    if (!have)
        return usage_error("give --seed N or --seeds A..B", NULL);
    sk_log_set_sink(verbose ? trace_message : drop_message, NULL);
    FILE *out = stderr;
    int status = 0;
    for (uint64_t seed = from; seed <= to; seed++) {
        char why[1024];
        if (run_seed(seed, verbose, restarts, out, why, sizeof why) != 0) {
            fprintf(out, "skald-sim: seed %llu FAILED: %s\nreplay: skald-sim --seed %llu%s -v\n",
                    (unsigned long long)seed, why, (unsigned long long)seed,
                    restarts ? " --restarts" : "");
            status = 1;
            break;
        }
        if (seed == to)
            break;
    }
    if (status == 0)
        printf("skald-sim: seeds %llu..%llu passed\n", (unsigned long long)from,
               (unsigned long long)to);
    return status;
}
