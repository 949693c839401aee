/*
 * orchestrator.c -- the saga runtime: one thread that tails the log, starts sagas, runs
 * their steps, retries, fires timers and answers admin requests.
 *
 * Everything about a saga happens on this thread. The thread waits (epoll) on three
 * things: the subscription's descriptor (the durable head moved), an eventfd that the
 * send callbacks and admin calls signal after queueing their work, and the earliest
 * timer (a step deadline, a retry's backoff, the checkpoint tick). Nothing polls the log.
 *
 * A saga moves by writing its journal, `$saga-<id>`, through cfg.send (the bus), one
 * write at a time and conditional on the version it last saw; it applies the event to
 * its state (saga_state.c) only once the write is durable, then advance() decides what
 * comes next from that state alone, so a saga reloaded after a crash continues exactly
 * as it would have. Step commands carry the key s/<saga_id>/<phase><step>[.r<retries>]/<index>,
 * the same on every attempt; the attempt number travels in metadata.
 *
 * Bounds: at most cfg.sagas_max sagas in memory (the tail waits beyond), SAGA_CMDS_MAX
 * commands per step, one journal write per saga in flight.
 */
#include "sagas/sagas_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS          16384
#define TAIL_BATCH       256
#define CHECKPOINT_MS    1000
#define CLOSE_WAIT_MS    10000
#define JOURNAL_BACKOFF  20
#define JOURNAL_BACK_MAX 2000

typedef struct admin_op {
    struct admin_op *next;
    int abort; /* 0: retry */
    char id[SAGA_ID_MAX + 1];
    saga_admin_cb done;
    void *ctx;
} admin_op;

/* One answer on its way back to the thread. */
typedef struct answer_op {
    struct answer_op *next;
    saga_engine *eng;
    saga_rt *s;
    uint64_t gen;
    int journal;    /* 1: a journal write; 0: a step command */
    uint32_t index; /* the command's index in the run */
    saga_answer a;
    tr_span *span; /* saga.step (tracing.c); NULL when not traced */
    char traceparent[TR_TRACEPARENT_SIZE];
} answer_op;

struct saga_engine {
    saga_config cfg;
    char dir[4096];
    store_sub *sub;
    store_snapshots *snaps; /* DATA/sagas/snapshots.db; NULL if it cannot be opened */
    saga_source src;        /* where sagas are loaded from */
    pthread_t thread;
    int started;
    int epfd, evfd;
    atomic_bool stop;
    atomic_int inflight; /* sends whose answer callbacks have not finished */

    pthread_mutex_t mu; /* guards queue, admin, stats_copy */
    answer_op *queue, *queue_tail;
    admin_op *admin;
    saga_stats stats_copy;

    /* ---- orchestrator thread only ---- */
    saga_rt *buckets[BUCKETS];
    saga_rt *all; /* doubly linked */
    uint32_t count;
    uint64_t tail_position; /* the subscription's: every start below it was seen */
    uint64_t fresh_from;    /* the log's head at open: a start event from here on is new */
    int64_t next_wake_us, next_checkpoint_us;
    uint64_t rng;
    saga_stats stats;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t rnd(saga_engine *e)
{
    /* xorshift64*: jitter and fault rates only */
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return e->rng * 2685821657736338717ull;
}

static double rnd01(saga_engine *e)
{
    return (double)(rnd(e) >> 11) / 9007199254740992.0;
}

static void crash_point(saga_engine *e, const char *point)
{
    if (e->cfg.faults.crash_at[0] && strcmp(e->cfg.faults.crash_at, point) == 0) {
        sk_log(SK_LOG_ERROR, "sagas", "fault injection: ending the process", "point", point,
               SK_LOG_END);
        raise(SIGKILL);
    }
}

void saga_config_init(saga_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->defs = saga_definitions;
    cfg->sagas_max = 65536;
}

/* ---- the table ---- */

static size_t bucket_of(const char *id)
{
    return (size_t)(ev_hash_str(id) % BUCKETS);
}

static saga_rt *find(saga_engine *e, const char *id)
{
    for (saga_rt *s = e->buckets[bucket_of(id)]; s; s = s->hnext)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void insert(saga_engine *e, saga_rt *s)
{
    size_t b = bucket_of(s->id);
    s->hnext = e->buckets[b];
    e->buckets[b] = s;
    s->next = e->all;
    if (e->all)
        e->all->prev = s;
    e->all = s;
    e->count++;
}

/* Loads a saga from its snapshot and stream (saga_store.c), counting snapshot loads. */
static int load(saga_engine *e, saga_rt *s, sk_error *err)
{
    bool from_snapshot = false;
    int rc = saga_load(&e->src, s, NULL, &from_snapshot, err);
    if (rc == 0 && from_snapshot)
        e->stats.snapshot_loads++;
    return rc;
}

/* After a journal write was applied: a snapshot each cfg.snapshot_every events, so that a
 * long saga loads from it rather than from its first event. A failure costs only that. */
static void maybe_snapshot(saga_engine *e, saga_rt *s)
{
    uint32_t every = e->cfg.snapshot_every ? e->cfg.snapshot_every : SAGA_SNAPSHOT_EVERY_DEFAULT;
    if (!e->snaps || saga_terminal(s->state) || s->version - s->snap_version < every)
        return;
    sk_error err = {0};
    if (saga_snapshot_save(e->snaps, s, &err) == 0)
        e->stats.snapshots_saved++;
    else
        sk_log(SK_LOG_WARN, "sagas", "cannot save a saga snapshot", "saga_id", s->id, "error",
               err.message, SK_LOG_END);
}

/* Takes s out of the table; it is freed once no answer is still to come. */
static void remove_saga(saga_engine *e, saga_rt *s)
{
    if (s->removed)
        return;
    saga_rt **pp = &e->buckets[bucket_of(s->id)];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = s->hnext;
    if (s->prev)
        s->prev->next = s->next;
    else
        e->all = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->removed = true;
    e->count--;
    if (s->snap_version && e->snaps)
        saga_snapshot_drop(e->snaps, s); /* it ended (or never started): no load to shorten */
    if (s->admin) {
        s->admin->done(s->admin->ctx, SK_ECONFLICT, "the saga ended");
        free(s->admin);
        s->admin = NULL;
    }
    if (s->refs == 0)
        saga_rt_free(s);
}

static void set_wake(saga_engine *e, int64_t at_us)
{
    if (at_us && (e->next_wake_us == 0 || at_us < e->next_wake_us))
        e->next_wake_us = at_us;
}

static uint32_t backoff_ms(saga_engine *e, const saga_retry *r, uint32_t attempt)
{
    uint64_t ms = r->backoff_ms ? r->backoff_ms : 10;
    for (uint32_t i = 1; i < attempt && ms < r->backoff_max_ms; i++)
        ms *= 2;
    if (r->backoff_max_ms && ms > r->backoff_max_ms)
        ms = r->backoff_max_ms;
    /* full jitter on the upper half: spreads retries that failed together */
    return (uint32_t)((double)ms * (0.5 + 0.5 * rnd01(e)));
}

/* ---- sending ---- */

static void answer_arrived(void *opv, const saga_answer *a)
{
    answer_op *op = opv;
    saga_engine *e = op->eng;
    saga_trace_step_end(op->span, a);
    op->span = NULL;
    op->a = *a;
    pthread_mutex_lock(&e->mu);
    op->next = NULL;
    if (e->queue_tail)
        e->queue_tail->next = op;
    else
        e->queue = op;
    e->queue_tail = op;
    pthread_mutex_unlock(&e->mu);
    uint64_t one = 1;
    ssize_t w = write(e->evfd, &one, sizeof one);
    (void)w; /* the counter cannot overflow at this rate; a failure leaves it readable */
    /* the last touch of e: saga_engine_close waits for this count, not for the thread to
     * have handled the answer (it no longer runs then) */
    atomic_fetch_sub(&e->inflight, 1);
}

static void send_one(saga_engine *e, saga_rt *s, int journal, uint32_t index, const char *command,
                     const json_t *body, const char *key, uint64_t expected, uint32_t attempt)
{
    answer_op *op = calloc(1, sizeof *op);
    if (!op) {
        saga_answer a = {.kind = SAGA_ANSWER_TRANSIENT, .reason = "out_of_memory"};
        /* nothing was sent: let the next timer tick retry it */
        if (journal) {
            s->jnext_try_us = mono_us() + 100000;
            set_wake(e, s->jnext_try_us);
        } else {
            s->run->next_try_us[index] = mono_us() + 100000;
            set_wake(e, s->run->next_try_us[index]);
        }
        (void)a;
        return;
    }
    op->eng = e;
    op->s = s;
    op->gen = s->gen;
    op->journal = journal;
    op->index = index;
    s->refs++;
    atomic_fetch_add(&e->inflight, 1);
    if (!journal)
        op->span = saga_trace_step_begin(s, command, attempt, op->traceparent);
    saga_send sd = {.command = command,
                    .body = body,
                    .idem_key = key,
                    .expected_version = expected,
                    .correlation_id = s->corr,
                    .traceparent = op->span ? op->traceparent : s->traceparent,
                    .attempt = attempt,
                    .saga_id = s->id};
    /* fault injection: an attempt fails before it is sent */
    const saga_faults *f = &e->cfg.faults;
    if (!journal && f->fail_rate > 0 && strcmp(f->fail_command, command) == 0 &&
        rnd01(e) < f->fail_rate / 2) {
        saga_answer a = {.kind = SAGA_ANSWER_TRANSIENT};
        snprintf(a.reason, sizeof a.reason, "injected");
        snprintf(a.message, sizeof a.message, "fault injection: %s failed before it was sent",
                 command);
        answer_arrived(op, &a);
        return;
    }
    if (e->cfg.send(e->cfg.send_ctx, &sd, answer_arrived, op) != 0) {
        saga_answer a = {.kind = SAGA_ANSWER_TRANSIENT, .reason = "send_failed"};
        answer_arrived(op, &a);
    }
}

/* Writes one journal command; s->jbody is taken and kept until the answer. */
static void journal(saga_engine *e, saga_rt *s, const char *command, json_t *body)
{
    SAGA_ASSERT(!s->journal_busy);
    if (!body) {
        s->jnext_try_us = mono_us() + 100000; /* out of memory: advance() tries again */
        set_wake(e, s->jnext_try_us);
        return;
    }
    json_object_set_new(body, "saga_id", json_string(s->id));
    json_decref(s->jbody);
    s->jbody = body;
    snprintf(s->jcommand, sizeof s->jcommand, "%s", command);
    s->jattempts = 1;
    s->jnext_try_us = 0;
    s->journal_busy = true;
    send_one(e, s, 1, 0, command, body, "",
             s->state == SAGA_STARTING ? STORE_EXPECT_NO_STREAM : s->version, 1);
}

static void journal_state(saga_engine *e, saga_rt *s, const char *state, const char *reason,
                          const char *by)
{
    journal(e, s, "ChangeSagaState",
            json_pack("{s:s, s:s, s:s}", "state", state, "reason", reason, "by", by));
}

static void journal_step_start(saga_engine *e, saga_rt *s, int step, int phase)
{
    int64_t deadline = 0;
    if (phase == PHASE_FORWARD) {
        uint32_t t =
            e->cfg.step_timeout_ms ? e->cfg.step_timeout_ms : s->def->steps[step].timeout_ms;
        if (t && s->def->steps[step].compensate) /* a pivot has no deadline */
            deadline = ev_now_us() + (int64_t)t * 1000;
    }
    const char *name = (size_t)step < s->def->nsteps ? s->def->steps[step].name : "end";
    journal(e, s, "StartSagaStep",
            json_pack("{s:I, s:s, s:s, s:I, s:I}", "step", (json_int_t)step, "name", name, "phase",
                      saga_phase_name(phase), "run", (json_int_t)s->retries, "deadline_us",
                      (json_int_t)deadline));
}

/* ---- steps ---- */

static const saga_retry *retry_of(const saga_rt *s)
{
    static const saga_retry comp = {10, 20, 2000};
    if (s->phase == PHASE_FORWARD && (size_t)s->step < s->def->nsteps)
        return &s->def->steps[s->step].retry;
    return &comp; /* compensations try harder: their failure leaves the saga stuck */
}

static bool has_compensation(const saga_rt *s, int step)
{
    if (step < 0 || (size_t)step >= s->def->nsteps || !s->def->steps[step].compensate)
        return false;
    for (uint32_t i = 0; i < s->fwd_count[step]; i++)
        if (s->fwd_res[step][i] != RES_REJECTED)
            return true;
    return false;
}

/* Builds the open step's commands into a fresh run. 0 or a negative code. */
static int build_run(saga_rt *s)
{
    saga_run *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int rc = 0;
    if (s->phase == PHASE_FORWARD) {
        rc = s->def->steps[s->step].commands(s->data, &r->list);
        for (size_t i = 0; i < r->list.count; i++)
            r->undoes[i] = (uint32_t)i;
    } else if (s->phase == PHASE_COMPENSATE) {
        /* in reverse order: the last command done is the first undone */
        for (uint32_t i = s->fwd_count[s->step]; rc == 0 && i-- > 0;) {
            /* a rejection took no effect; a command that failed past its retries may
             * have (its answer may have been lost), so it is undone like an unknown one */
            if (s->fwd_res[s->step][i] == RES_REJECTED)
                continue;
            size_t before = r->list.count;
            rc = s->def->steps[s->step].compensate(s->data, i, &r->list);
            for (size_t j = before; j < r->list.count; j++)
                r->undoes[j] = i;
        }
    } else if (s->def->on_compensated) {
        rc = s->def->on_compensated(s->data, s->aborting ? "aborted" : s->cause, &r->list);
    }
    if (rc) {
        saga_cmd_list_clear(&r->list);
        free(r);
        return rc;
    }
    s->run = r;
    return 0;
}

static void key_of(const saga_rt *s, uint32_t index, char *out, size_t size)
{
    static const char phase_letter[] = {'f', 'c', 'x'};
    if (s->retries)
        snprintf(out, size, "s/%s/%c%d.r%" PRIu32 "/%" PRIu32, s->id, phase_letter[s->phase],
                 s->step, s->retries, index);
    else
        snprintf(out, size, "s/%s/%c%d/%" PRIu32, s->id, phase_letter[s->phase], s->step, index);
}

static void send_command(saga_engine *e, saga_rt *s, uint32_t i)
{
    saga_run *r = s->run;
    char key[SAGA_ID_MAX + 64];
    key_of(s, i, key, sizeof key);
    r->inflight[i] = 1;
    r->next_try_us[i] = 0;
    r->attempts[i]++;
    if (r->attempts[i] > 1)
        e->stats.retries++;
    send_one(e, s, 0, i, r->list.cmds[i].command, r->list.cmds[i].body, key, STORE_EXPECT_ANY,
             r->attempts[i]);
}

static void dispatch(saga_engine *e, saga_rt *s)
{
    if (build_run(s) != 0) {
        s->jnext_try_us = mono_us() + 100000; /* out of memory: the tick tries again */
        set_wake(e, s->jnext_try_us);
        return;
    }
    s->step_started_us = mono_us();
    const saga_faults *f = &e->cfg.faults;
    int64_t delay = 0;
    if (f->delay_ms && s->phase == PHASE_FORWARD &&
        strcmp(f->delay_step, s->def->steps[s->step].name) == 0)
        delay = (int64_t)f->delay_ms * 1000;
    if (s->deadline_us) /* the persisted timer, re-armed after a restart too */
        set_wake(e, mono_us() + (s->deadline_us - ev_now_us()));
    for (uint32_t i = 0; i < s->run->list.count; i++) {
        if (delay) {
            s->run->next_try_us[i] = mono_us() + delay;
            set_wake(e, s->run->next_try_us[i]);
        } else {
            send_command(e, s, i);
        }
    }
    crash_point(e, "after_send");
}

static bool run_settled(const saga_run *r)
{
    for (size_t i = 0; i < r->list.count; i++)
        if (r->res[i] == RES_NONE)
            return false;
    return true;
}

static void drop_run(saga_rt *s)
{
    if (!s->run)
        return;
    saga_cmd_list_clear(&s->run->list);
    free(s->run);
    s->run = NULL;
    s->gen++;
}

const double saga_step_bounds_s[SAGA_STEP_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1,     2.5,  5,     10,   30};

/* A forward step ended (any outcome) after us microseconds since its commands went out. */
static void observe_step(saga_engine *e, int64_t us)
{
    if (us < 0)
        us = 0;
    size_t i = 0;
    while (i < SAGA_STEP_BUCKETS && (double)us / 1e6 > saga_step_bounds_s[i])
        i++;
    e->stats.step_buckets[i]++;
    e->stats.steps_finished++;
    e->stats.step_latency_us_sum += (uint64_t)us;
}

/* Journals the end of the open step; timed_out: the deadline passed first. */
static void finish_step(saga_engine *e, saga_rt *s, bool timed_out)
{
    saga_run *r = s->run;
    json_t *results = json_array();
    const char *outcome = timed_out ? "timed_out" : "ok";
    char reason[256] = "";
    for (size_t i = 0; results && i < r->list.count; i++) {
        int res = r->res[i];
        if (res == RES_NONE)
            res = RES_UNKNOWN;
        const char *name = res == RES_OK         ? "ok"
                           : res == RES_REJECTED ? "rejected"
                           : res == RES_FAILED   ? "failed"
                                                 : "unknown";
        if (res != RES_OK && !timed_out) {
            if (strcmp(outcome, "ok") == 0)
                outcome = res == RES_REJECTED ? "rejected" : "failed";
            if (!reason[0])
                snprintf(reason, sizeof reason, "%s", r->reason[i]);
        }
        json_array_append_new(results, json_pack("{s:s, s:s}", "status", name, "reason",
                                                 res == RES_OK ? "" : r->reason[i]));
    }
    if (timed_out) {
        e->stats.timeouts++;
        snprintf(reason, sizeof reason, "timeout: %s",
                 s->phase == PHASE_FORWARD ? s->def->steps[s->step].name : "compensation");
    }
    if (s->phase == PHASE_FORWARD)
        observe_step(e, mono_us() - s->step_started_us);
    else if (s->phase == PHASE_COMPENSATE)
        e->stats.compensation_steps++;
    crash_point(e, "before_step_finished");
    drop_run(s);
    journal(e, s, "FinishSagaStep",
            results ? json_pack("{s:I, s:s, s:s, s:o, s:s}", "step", (json_int_t)s->step, "phase",
                                saga_phase_name(s->phase), "outcome", outcome, "results", results,
                                "reason", reason)
                    : NULL);
}

/* Decides what the saga does next from its state. */
static void advance(saga_engine *e, saga_rt *s)
{
    if (s->removed || s->journal_busy || s->state == SAGA_STARTING)
        return;
    if (s->jnext_try_us) /* waiting to retry a journal write (or out of memory) */
        return;
    if (s->admin) {
        admin_op *op = s->admin;
        if (op->abort) {
            journal_state(e, s, "compensating", "aborted by an admin", "admin:abort");
        } else {
            journal_state(e, s, "compensating", s->reason, "admin:retry");
        }
        return; /* the admin op is answered when the write is durable */
    }
    if (saga_terminal(s->state)) {
        remove_saga(e, s);
        return;
    }
    if (!s->def) {
        if (s->state != SAGA_STUCK)
            journal_state(e, s, "stuck", "this build lacks the saga's definition version",
                          "orchestrator");
        return;
    }
    if (s->state == SAGA_STUCK)
        return;
    if (s->open) {
        if (!s->run)
            dispatch(e, s);
        else if (run_settled(s->run))
            finish_step(e, s, false);
        return;
    }
    if (s->state == SAGA_RUNNING) {
        if (s->failed_step >= 0)
            journal_state(e, s, "compensating", s->reason, "orchestrator");
        else if ((size_t)s->fwd_done == s->def->nsteps)
            journal_state(e, s, "completed", "", "orchestrator");
        else
            journal_step_start(e, s, s->fwd_done, PHASE_FORWARD);
        return;
    }
    /* compensating */
    if (s->comp_failed) {
        journal_state(e, s, "stuck", s->reason, "orchestrator");
        return;
    }
    while (s->comp_next >= 0 && !has_compensation(s, s->comp_next))
        s->comp_next--;
    if (s->comp_next >= 0)
        journal_step_start(e, s, s->comp_next, PHASE_COMPENSATE);
    else if (!s->final_done)
        journal_step_start(e, s, (int)s->def->nsteps, PHASE_FINAL);
    else
        journal_state(e, s, s->aborting ? "aborted" : "compensated", s->reason, "orchestrator");
}

/* ---- answers ---- */

static void count_state(saga_engine *e, int state)
{
    if (state == SAGA_COMPLETED)
        e->stats.completed++;
    else if (state == SAGA_COMPENSATED)
        e->stats.compensated++;
    else if (state == SAGA_ABORTED)
        e->stats.aborted++;
}

static void reload(saga_engine *e, saga_rt *s)
{
    saga_rt *fresh = saga_rt_create(s->id);
    sk_error err = {0};
    int rc = fresh ? load(e, fresh, &err) : -ENOMEM;
    if (rc) {
        sk_log(SK_LOG_ERROR, "sagas", "cannot reload a saga", "saga_id", s->id, "error",
               err.message, SK_LOG_END);
        saga_rt_free(fresh);
        s->jnext_try_us = mono_us() + 1000000; /* the tick tries again */
        set_wake(e, s->jnext_try_us);
        return;
    }
    /* keep the table links and the runtime; take the fold's fields */
    drop_run(s);
    json_decref(s->data);
    for (int i = 0; i < SAGA_STEPS_MAX; i++)
        free(s->fwd_res[i]);
    size_t fold_size = offsetof(saga_rt, hnext);
    memcpy(s, fresh, fold_size);
    memset(fresh, 0, fold_size);
    saga_rt_free(fresh);
}

static void journal_answer(saga_engine *e, saga_rt *s, const saga_answer *a)
{
    if (a->kind == SAGA_ANSWER_OK) {
        int was = s->state;
        if (was == SAGA_STARTING)
            e->stats.started++;
        const char *type = strcmp(s->jcommand, "StartSaga") == 0        ? "SagaStarted"
                           : strcmp(s->jcommand, "StartSagaStep") == 0  ? "SagaStepStarted"
                           : strcmp(s->jcommand, "FinishSagaStep") == 0 ? "SagaStepFinished"
                                                                        : "SagaStateChanged";
        s->journal_busy = false;
        s->version = a->stream_version;
        if (saga_apply(s, e->cfg.defs, e->cfg.extra_defs, type, s->jbody, ev_now_us()) != 0)
            reload(e, s); /* out of memory half-way: the stream has it right */
        json_decref(s->jbody);
        s->jbody = NULL;
        maybe_snapshot(e, s);
        if (!s->open)
            drop_run(s); /* an abort closed a step in flight: its answers are ignored */
        if (s->state != was)
            count_state(e, s->state);
        if (strcmp(type, "SagaStarted") == 0)
            crash_point(e, "after_start");
        else if (strcmp(type, "SagaStepStarted") == 0)
            crash_point(e, "after_step_started");
        else if (strcmp(type, "SagaStepFinished") == 0)
            crash_point(e, "after_step_finished");
        else if (s->state == SAGA_COMPENSATING && was != SAGA_COMPENSATING)
            crash_point(e, "after_compensating");
        if (s->admin && strcmp(type, "SagaStateChanged") == 0) {
            s->admin->done(s->admin->ctx, 0, saga_state_name(s->state));
            free(s->admin);
            s->admin = NULL;
        }
        return;
    }
    if (a->kind == SAGA_ANSWER_TRANSIENT || a->kind == SAGA_ANSWER_FATAL) {
        if (a->kind == SAGA_ANSWER_FATAL)
            sk_log(SK_LOG_ERROR, "sagas", "a journal write failed; retrying", "saga_id", s->id,
                   "error", a->message, SK_LOG_END);
        static const saga_retry jr = {UINT32_MAX, JOURNAL_BACKOFF, JOURNAL_BACK_MAX};
        s->jnext_try_us = mono_us() + (int64_t)backoff_ms(e, &jr, s->jattempts) * 1000;
        set_wake(e, s->jnext_try_us);
        return; /* journal_busy stays set: the timer resends jbody */
    }
    /* rejected or conflict: the stream knows better than memory */
    s->journal_busy = false;
    json_decref(s->jbody);
    s->jbody = NULL;
    int was = s->state;
    if (was == SAGA_STARTING && strcmp(a->reason, "already_exists") != 0 &&
        a->kind == SAGA_ANSWER_REJECTED) {
        sk_log(SK_LOG_ERROR, "sagas", "cannot start a saga", "saga_id", s->id, "error", a->message,
               SK_LOG_END);
        remove_saga(e, s);
        return;
    }
    reload(e, s);
    if (s->admin && saga_terminal(s->state)) {
        s->admin->done(s->admin->ctx, SK_ECONFLICT, saga_state_name(s->state));
        free(s->admin);
        s->admin = NULL;
    }
}

static void command_answer(saga_engine *e, saga_rt *s, uint32_t i, const saga_answer *in)
{
    saga_run *r = s->run;
    saga_answer a = *in;
    r->inflight[i] = 0;
    const saga_faults *f = &e->cfg.faults;
    /* fault injection: the command happened, its answer is lost on the way back */
    if (a.kind == SAGA_ANSWER_OK && f->fail_rate > 0 &&
        strcmp(f->fail_command, r->list.cmds[i].command) == 0 &&
        rnd01(e) < (f->fail_rate / 2) / (1 - f->fail_rate / 2)) {
        /* half of the rate before sending (send_one), half here: r in all */
        a.kind = SAGA_ANSWER_TRANSIENT;
        snprintf(a.reason, sizeof a.reason, "injected");
        snprintf(a.message, sizeof a.message, "fault injection: the answer was lost");
    }
    if (a.kind == SAGA_ANSWER_OK) {
        r->res[i] = RES_OK;
        if (s->phase == PHASE_COMPENSATE) /* not the final step's CancelOrder */
            e->stats.compensations++;
    } else if (a.kind == SAGA_ANSWER_REJECTED) {
        r->res[i] = s->phase == PHASE_FORWARD ? RES_REJECTED : RES_FAILED;
        snprintf(r->reason[i], sizeof r->reason[i], "%s", a.reason);
    } else if (a.kind == SAGA_ANSWER_FATAL || r->attempts[i] >= retry_of(s)->attempts_max) {
        r->res[i] = RES_FAILED;
        char why[128];
        snprintf(why, sizeof why, "%s%.40s",
                 a.kind == SAGA_ANSWER_FATAL ? "" : "retries_exhausted:", a.reason);
        memcpy(r->reason[i], why, sizeof r->reason[i] - 1);
        r->reason[i][sizeof r->reason[i] - 1] = '\0';
        sk_log(SK_LOG_WARN, "sagas", "a saga command failed", "saga_id", s->id, "command",
               r->list.cmds[i].command, "error", a.message, SK_LOG_END);
    } else {
        r->next_try_us[i] = mono_us() + (int64_t)backoff_ms(e, retry_of(s), r->attempts[i]) * 1000;
        set_wake(e, r->next_try_us[i]);
        return;
    }
    if (run_settled(r))
        advance(e, s);
}

static void handle_answers(saga_engine *e)
{
    uint64_t n;
    ssize_t rd = read(e->evfd, &n, sizeof n);
    (void)rd; /* nonblocking: EAGAIN when nothing was signalled */
    pthread_mutex_lock(&e->mu);
    answer_op *q = e->queue;
    e->queue = e->queue_tail = NULL;
    admin_op *adm = e->admin;
    e->admin = NULL;
    pthread_mutex_unlock(&e->mu);
    while (q) {
        answer_op *op = q;
        q = q->next;
        saga_rt *s = op->s;
        s->refs--;
        if (s->removed) {
            if (s->refs == 0)
                saga_rt_free(s);
        } else if (op->journal) {
            journal_answer(e, s, &op->a);
            advance(e, s);
        } else if (op->gen == s->gen && s->run) {
            command_answer(e, s, op->index, &op->a);
        }
        free(op);
    }
    while (adm) {
        admin_op *op = adm;
        adm = adm->next;
        saga_rt *s = find(e, op->id);
        const char *why = NULL;
        if (!s || s->state == SAGA_STARTING) {
            op->done(op->ctx, SK_ENOTFOUND, "no such saga in flight (it may have ended)");
            free(op);
            continue;
        }
        if (s->admin)
            why = "another admin request for this saga is in progress";
        else if (!op->abort && s->state != SAGA_STUCK)
            why = "only a stuck saga can be retried";
        else if (op->abort && s->state != SAGA_RUNNING && s->state != SAGA_STUCK)
            why = "only a running or stuck saga can be aborted";
        else if (op->abort && s->state == SAGA_RUNNING && s->def) {
            int at = s->open && s->phase == PHASE_FORWARD ? s->step : s->fwd_done;
            if ((size_t)at < s->def->nsteps && !s->def->steps[at].compensate)
                why = "the saga is past its last compensable step";
        }
        if (why) {
            op->done(op->ctx, SK_ECONFLICT, why);
            free(op);
            continue;
        }
        s->admin = op;
        if (s->open && op->abort) {
            /* the step in flight is given up: late answers are ignored */
            s->gen++;
        }
        advance(e, s);
    }
}

/* ---- timers ---- */

static void fire_timers(saga_engine *e)
{
    int64_t now = mono_us(), wall = ev_now_us();
    e->next_wake_us = 0;
    for (saga_rt *s = e->all, *next; s; s = next) {
        next = s->next;
        if (s->jnext_try_us) {
            if (s->jnext_try_us > now) {
                set_wake(e, s->jnext_try_us);
            } else {
                s->jnext_try_us = 0;
                if (s->journal_busy) {
                    s->jattempts++;
                    send_one(e, s, 1, 0, s->jcommand, s->jbody, "",
                             s->state == SAGA_STARTING ? STORE_EXPECT_NO_STREAM : s->version,
                             s->jattempts);
                } else {
                    advance(e, s);
                }
            }
            continue;
        }
        saga_run *r = s->run;
        if (!r || s->journal_busy)
            continue;
        if (s->deadline_us && wall >= s->deadline_us && !run_settled(r)) {
            finish_step(e, s, true);
            continue;
        }
        if (s->deadline_us)
            set_wake(e, now + (s->deadline_us - wall));
        for (uint32_t i = 0; i < r->list.count; i++) {
            if (!r->next_try_us[i])
                continue;
            if (r->next_try_us[i] <= now)
                send_command(e, s, i);
            else
                set_wake(e, r->next_try_us[i]);
        }
    }
}

/* ---- the tail ---- */

/* 1 if the start event's stream already holds an event that ends the process. */
static int already_ended(saga_engine *e, const saga_def *d, const ev_event *ev)
{
    if (!d->end_events)
        return 0;
    store_reader *r = NULL;
    if (store_reader_open_stream(e->cfg.log, ev->stream_id, ev->version + 1, &r) != 0)
        return 0;
    ev_event x;
    sk_error err;
    int ended = 0;
    while (!ended && store_reader_next(r, &x, &err) == 1)
        for (size_t i = 0; d->end_events[i]; i++)
            if (ev_str_eq(x.type, d->end_events[i]))
                ended = 1;
    store_reader_close(r);
    return ended;
}

static const char *meta(const ev_event *ev, const char *key, char *out, size_t size)
{
    out[0] = '\0';
    for (uint32_t i = 0; i < ev->metadata_count; i++)
        if (ev_str_eq(ev->metadata[i].key, key))
            snprintf(out, size, "%.*s", (int)ev->metadata[i].value.len, ev->metadata[i].value.ptr);
    return out;
}

static void start_new(saga_engine *e, const saga_def *d, const ev_event *ev, json_t *payload,
                      const char *key, const char *id);

/* A start event from the tail. Below fresh_from (written before this process opened the
 * log) it may have been seen by an earlier run, so its saga's stream is looked up; from
 * fresh_from on only this process can have started it, and memory is enough. */
static void start_seen(saga_engine *e, const saga_def *d, const ev_event *ev)
{
    json_t *payload = NULL;
    sk_error err = {0};
    if (ev_payload_to_json(e->cfg.events, ev->schema_id, ev->payload, ev->payload_size, &payload,
                           &err) != 0) {
        sk_log(SK_LOG_ERROR, "sagas", "cannot decode a start event", "error", err.message,
               SK_LOG_END);
        return;
    }
    char key[160], id[SAGA_ID_MAX + 1];
    if (d->key(payload, key, sizeof key) != 0) {
        json_decref(payload);
        return;
    }
    snprintf(id, sizeof id, "%s-%s", d->type, key);
    if (find(e, id)) {
        json_decref(payload);
        return;
    }
    if (ev->position >= e->fresh_from) {
        start_new(e, d, ev, payload, key, id);
        return;
    }
    /* seen again (a restart tails from an older checkpoint): a saga that has a stream
     * resumes from it, even when its process already ended in the business streams (it
     * may still owe its own `completed`); one without a stream starts unless the process
     * ended without a saga (a log written by the old seeder) */
    saga_rt *s = saga_rt_create(id);
    sk_error lerr = {0};
    int lrc = s ? load(e, s, &lerr) : -ENOMEM;
    if (lrc == 0) {
        json_decref(payload);
        if (saga_terminal(s->state)) {
            saga_rt_free(s);
            return;
        }
        insert(e, s);
        advance(e, s);
        return;
    }
    saga_rt_free(s);
    s = NULL;
    if (lrc != SK_ENOTFOUND) {
        sk_log(SK_LOG_ERROR, "sagas", "cannot read a saga's stream", "saga_id", id, "error",
               lerr.message, SK_LOG_END);
        json_decref(payload);
        return;
    }
    if (already_ended(e, d, ev)) {
        json_decref(payload);
        return;
    }
    start_new(e, d, ev, payload, key, id);
}

/* Starts a saga that has no stream yet; payload is taken. */
static void start_new(saga_engine *e, const saga_def *d, const ev_event *ev, json_t *payload,
                      const char *key, const char *id)
{
    saga_rt *s = saga_rt_create(id);
    char *data = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    if (!s || !data) {
        free(data);
        saga_rt_free(s);
        sk_log(SK_LOG_ERROR, "sagas", "out of memory starting a saga", "saga_id", id, SK_LOG_END);
        return;
    }
    /* the order's correlation id, else its command's: one id follows the process */
    ev_uuid corr = ev_uuid_is_nil(&ev->correlation_id) ? ev->command_id : ev->correlation_id;
    char corr_text[EV_UUID_TEXT_SIZE], tp[64];
    ev_uuid_format(&corr, corr_text);
    meta(ev, EV_META_TRACEPARENT, tp, sizeof tp);
    s->state = SAGA_STARTING;
    s->start_position = ev->position;
    s->corr = corr;
    snprintf(s->traceparent, sizeof s->traceparent, "%s", tp);
    insert(e, s);
    journal(e, s, "StartSaga",
            json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:I}", "saga_type", d->type,
                      "definition_version", (json_int_t)d->version, "subject", key, "data", data,
                      "correlation_id", corr_text, "traceparent", tp, "start_position",
                      (json_int_t)ev->position));
    free(data);
}

/* Reads up to TAIL_BATCH events; 1 if more may be there, 0 when caught up. */
static int tail(saga_engine *e)
{
    ev_event ev;
    sk_error err = {0};
    for (int n = 0; n < TAIL_BATCH; n++) {
        if (e->count >= e->cfg.sagas_max)
            return 0; /* full: answers free room, and the loop comes back */
        int rc = store_sub_next(e->sub, &ev, &err);
        if (rc == 0)
            return 0;
        if (rc < 0) {
            if (rc != SK_ECANCELED)
                sk_log(SK_LOG_ERROR, "sagas", "the subscription failed", "error", err.message,
                       SK_LOG_END);
            return 0;
        }
        e->tail_position = ev.position + 1;
        for (size_t i = 0; e->cfg.defs[i]; i++)
            if (ev_str_eq(ev.type, e->cfg.defs[i]->start_event))
                start_seen(e, e->cfg.defs[i], &ev);
        for (size_t i = 0; e->cfg.extra_defs && e->cfg.extra_defs[i]; i++)
            if (ev_str_eq(ev.type, e->cfg.extra_defs[i]->start_event))
                start_seen(e, e->cfg.extra_defs[i], &ev);
    }
    return 1;
}

/* ---- checkpoint, stats ---- */

static void checkpoint(saga_engine *e)
{
    uint64_t pos = e->tail_position;
    json_t *open = json_array();
    saga_stats st = e->stats;
    st.running_now = st.compensating_now = st.stuck_now = 0;
    for (saga_rt *s = e->all; s; s = s->next) {
        if (s->state == SAGA_STARTING) {
            if (s->start_position < pos)
                pos = s->start_position; /* not yet journaled: see its start again */
            continue;
        }
        if (saga_terminal(s->state))
            continue; /* ended (durably) and about to leave memory: nothing to resume */
        st.running_now += s->state == SAGA_RUNNING;
        st.compensating_now += s->state == SAGA_COMPENSATING;
        st.stuck_now += s->state == SAGA_STUCK;
        if (open)
            json_array_append_new(open, json_string(s->id));
    }
    st.checkpoint = pos;
    pthread_mutex_lock(&e->mu);
    e->stats_copy = st;
    pthread_mutex_unlock(&e->mu);
    if (!open)
        return;
    int rc = saga_checkpoint_write(e->dir, pos, open);
    if (rc)
        sk_log(SK_LOG_ERROR, "sagas", "cannot write the checkpoint", "error", sk_strerror(rc),
               SK_LOG_END);
    json_decref(open);
}

void saga_engine_get_stats(saga_engine *eng, saga_stats *out)
{
    pthread_mutex_lock(&eng->mu);
    *out = eng->stats_copy;
    pthread_mutex_unlock(&eng->mu);
}

/* ---- the thread ---- */

static void *run(void *arg)
{
    saga_engine *e = arg;
    /* resume: every saga still in memory after open goes on from its state */
    for (saga_rt *s = e->all, *next; s; s = next) {
        next = s->next;
        advance(e, s);
    }
    int more = 1;
    while (!atomic_load(&e->stop)) {
        handle_answers(e);
        if (more || e->count < e->cfg.sagas_max)
            more = tail(e);
        int64_t now = mono_us();
        if (e->next_wake_us && now >= e->next_wake_us)
            fire_timers(e);
        if (now >= e->next_checkpoint_us) {
            checkpoint(e);
            e->next_checkpoint_us = now + (int64_t)CHECKPOINT_MS * 1000;
        }
        int64_t until = e->next_checkpoint_us;
        if (e->next_wake_us && e->next_wake_us < until)
            until = e->next_wake_us;
        int timeout = more ? 0 : (int)((until - now + 999) / 1000);
        if (timeout < 0)
            timeout = 0;
        struct epoll_event evs[4];
        (void)epoll_wait(e->epfd, evs, 4, timeout);
    }
    return NULL;
}

int saga_engine_open(const saga_config *cfg, saga_engine **out, sk_error *err)
{
    SAGA_ASSERT(cfg->log && cfg->events && cfg->dir && cfg->defs && cfg->send);
    saga_engine *e = calloc(1, sizeof *e);
    if (!e)
        return sk_error_set(err, -ENOMEM, "", "out of memory");
    e->cfg = *cfg;
    if (!e->cfg.sagas_max)
        e->cfg.sagas_max = 65536;
    snprintf(e->dir, sizeof e->dir, "%s", cfg->dir);
    e->cfg.dir = e->dir;
    e->epfd = e->evfd = -1;
    pthread_mutex_init(&e->mu, NULL);
    e->rng = cfg->faults.seed ? cfg->faults.seed : (uint64_t)ev_now_us() | 1;
    int rc = 0;
    json_t *open = NULL;
    if (mkdir(e->dir, 0755) != 0 && errno != EEXIST) {
        rc = sk_error_set(err, -errno, "", "cannot create %s", e->dir);
        goto fail;
    }
    rc = saga_checkpoint_read(e->dir, &e->tail_position, &open, err);
    if (rc)
        goto fail;
    char snaps_path[4200];
    snprintf(snaps_path, sizeof snaps_path, "%s/snapshots.db", e->dir);
    sk_error serr = {0};
    if (store_snapshots_open(snaps_path, 0, &e->snaps, &serr) != 0) {
        sk_log(SK_LOG_WARN, "sagas", "saga snapshots unavailable; sagas load from their streams",
               "error", serr.message, SK_LOG_END);
        e->snaps = NULL;
    }
    e->src = (saga_source){
        .log = cfg->log,
        .events = cfg->events,
        .snaps = e->snaps,
        .defs = cfg->defs,
        .extra = cfg->extra_defs,
        .snapshot_every = cfg->snapshot_every ? cfg->snapshot_every : SAGA_SNAPSHOT_EVERY_DEFAULT,
    };
    size_t i;
    json_t *v;
    json_array_foreach(open, i, v)
    {
        const char *id = json_string_value(v);
        if (!id || find(e, id))
            continue;
        saga_rt *s = saga_rt_create(id);
        if (!s) {
            rc = sk_error_set(err, -ENOMEM, "", "out of memory");
            goto fail;
        }
        sk_error lerr = {0};
        rc = load(e, s, &lerr);
        if (rc || saga_terminal(s->state)) {
            if (rc)
                sk_log(SK_LOG_ERROR, "sagas", "cannot resume a saga", "saga_id", id, "error",
                       lerr.message, SK_LOG_END);
            saga_rt_free(s);
            continue;
        }
        insert(e, s);
    }
    json_decref(open);
    open = NULL;
    e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->evfd < 0 || e->epfd < 0) {
        rc = sk_error_set(err, -errno, "", "cannot create the orchestrator's descriptors");
        goto fail;
    }
    e->fresh_from = store_log_head(cfg->log);
    rc = store_sub_open(cfg->log, e->tail_position, &e->sub);
    if (rc) {
        rc = sk_error_set(err, rc, "", "cannot subscribe to the log");
        goto fail;
    }
    struct epoll_event a = {.events = EPOLLIN, .data.u32 = 1};
    struct epoll_event b = {.events = EPOLLIN, .data.u32 = 2};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->evfd, &a) != 0 ||
        epoll_ctl(e->epfd, EPOLL_CTL_ADD, store_sub_fd(e->sub), &b) != 0) {
        rc = sk_error_set(err, -errno, "", "epoll_ctl failed");
        goto fail;
    }
    *out = e;
    return 0;
fail:
    json_decref(open);
    saga_engine_close(e);
    return rc;
}

int saga_engine_start(saga_engine *eng, sk_error *err)
{
    int rc = pthread_create(&eng->thread, NULL, run, eng);
    if (rc)
        return sk_error_set(err, -rc, "", "cannot start the orchestrator thread");
    eng->started = 1;
    return 0;
}

static int admin(saga_engine *e, const char *id, int abort, saga_admin_cb done, void *ctx)
{
    if (atomic_load(&e->stop))
        return SK_ECANCELED;
    admin_op *op = calloc(1, sizeof *op);
    if (!op)
        return -ENOMEM;
    snprintf(op->id, sizeof op->id, "%s", id);
    op->abort = abort;
    op->done = done;
    op->ctx = ctx;
    pthread_mutex_lock(&e->mu);
    op->next = e->admin;
    e->admin = op;
    pthread_mutex_unlock(&e->mu);
    uint64_t one = 1;
    ssize_t w = write(e->evfd, &one, sizeof one);
    (void)w;
    return 0;
}

int saga_engine_retry(saga_engine *eng, const char *saga_id, saga_admin_cb done, void *ctx)
{
    return admin(eng, saga_id, 0, done, ctx);
}

int saga_engine_abort(saga_engine *eng, const char *saga_id, saga_admin_cb done, void *ctx)
{
    return admin(eng, saga_id, 1, done, ctx);
}

void saga_engine_close(saga_engine *e)
{
    if (!e)
        return;
    atomic_store(&e->stop, true);
    if (e->sub)
        store_sub_stop(e->sub);
    if (e->evfd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(e->evfd, &one, sizeof one);
        (void)w;
    }
    if (e->started)
        pthread_join(e->thread, NULL);
    /* answers still on their way point at sagas and the engine: wait for them (bounded) */
    for (int waited = 0; atomic_load(&e->inflight) > 0 && waited < CLOSE_WAIT_MS; waited += 10)
        usleep(10000);
    bool leak = atomic_load(&e->inflight) > 0;
    if (e->started && !leak) {
        pthread_mutex_lock(&e->mu);
        answer_op *q = e->queue;
        e->queue = e->queue_tail = NULL;
        admin_op *adm = e->admin;
        e->admin = NULL;
        pthread_mutex_unlock(&e->mu);
        while (q) {
            answer_op *op = q;
            q = q->next;
            op->s->refs--;
            free(op);
        }
        while (adm) {
            admin_op *op = adm;
            adm = adm->next;
            op->done(op->ctx, SK_ECANCELED, "the server is stopping");
            free(op);
        }
    }
    if (e->started)
        checkpoint(e);
    store_sub_close(e->sub);
    store_snapshots_close(e->snaps);
    e->snaps = NULL;
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->evfd >= 0)
        close(e->evfd);
    if (leak) {
        sk_log(SK_LOG_ERROR, "sagas", "answers still in flight at close; leaving them the memory",
               SK_LOG_END);
        return;
    }
    for (saga_rt *s = e->all, *next; s; s = next) {
        next = s->next;
        if (s->admin) {
            s->admin->done(s->admin->ctx, SK_ECANCELED, "the server is stopping");
            free(s->admin);
        }
        saga_rt_free(s);
    }
    pthread_mutex_destroy(&e->mu);
    free(e);
}
