/*
 * worker.c -- one thread per read model: tail the log, apply, fail loudly, rebuild.
 *
 * The worker applies events to its target generation (a rebuild's while one runs, else
 * the live one), batch by batch (generation.c), through a reader of the engine's source
 * (the log's subscription, or a read replica's Kafka topic: source.c, projections.h)
 * positioned at the target's checkpoint. When the reader has nothing more it waits on the
 * reader's descriptor and on its own control eventfd together: never a poll loop.
 * Requests from other threads (rebuild, resume, skip, stop) are flags under p->mu plus a
 * write to the control eventfd; the worker acts on them, since only it touches the
 * databases it writes.
 *
 * While a rebuild runs the live generation is frozen at its position and keeps answering
 * queries (each answer says its position). When the rebuild has caught up with the
 * durable head it is marked live and replaces the old generation under p->mu in one step;
 * the old file is then removed (connections still open on it keep reading it: no open
 * database is ever renamed).
 */
#include "projections/projections_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void proj_note(proj *p, const char *what, int64_t position)
{
    json_t *entry = json_pack("{s:I, s:s, s:I}", "at", (json_int_t)ev_now_us(), "what", what,
                              "position", (json_int_t)position);
    if (entry)
        json_array_append_new(p->history, entry);
    while (json_array_size(p->history) > 100) /* bounded: the newest hundred */
        json_array_remove(p->history, 0);
    char *text = json_dumps(p->history, JSON_COMPACT);
    proj_gen *g = proj_target(p);
    if (text && g)
        proj_gen_set_meta(g, "history", text);
    free(text);
}

int proj_start_rebuild(proj *p, const char *why, sk_error *err)
{
    if (p->building)
        return sk_error_set(err, SK_EBUSY, "", "a rebuild of %s is already running",
                            p->model->name);
    uint64_t number = (p->live ? p->live->number : 0) + 1;
    proj_gen *g = NULL;
    int rc = proj_gen_open(p->engine->dir, p->model, number, true, &g, err);
    if (rc)
        return rc;
    p->building = g;
    p->building_next = 0;
    p->state = PROJ_REBUILDING;
    p->failure.failed = false;
    json_array_clear(p->skipped);
    proj_note(p, why, 0);
    return 0;
}

static void signal_ctl(proj *p)
{
    uint64_t one = 1;
    ssize_t n = write(p->ctl_fd, &one, sizeof one);
    (void)n; /* a counter already non-zero is readable anyway */
}

/* The admin's skip: the failed event counts as applied, and is recorded. */
static int skip_failed(proj *p, uint64_t position)
{
    proj_gen *g = proj_target(p);
    json_array_append_new(p->skipped, json_integer((json_int_t)position));
    char *skipped = json_dumps(p->skipped, JSON_COMPACT);
    int rc = skipped ? 0 : -ENOMEM;
    if (rc == 0)
        rc = proj_gen_set_meta(g, "skipped", skipped);
    if (rc == 0)
        rc = proj_gen_set_meta_u64(g, "next_position", position + 1);
    free(skipped);
    if (rc == 0)
        g->next_position = position + 1;
    return rc;
}

/* Acts on what other threads asked for; called by the worker with p->mu held. */
static void handle_requests(proj *p)
{
    sk_error err = {0};
    if (p->want_rebuild) {
        p->want_rebuild = false;
        if (proj_start_rebuild(p, "rebuild requested", &err) != 0)
            proj_note(p, err.message, 0);
    }
    if (p->want_skip >= 0) {
        uint64_t pos = (uint64_t)p->want_skip;
        p->want_skip = -1;
        if (p->state == PROJ_FAILED && p->failure.position == pos && skip_failed(p, pos) == 0) {
            if (p->building)
                p->building_next = pos + 1;
            else
                p->live_next = pos + 1;
            pthread_cond_broadcast(&p->applied);
            p->failure.failed = false;
            p->state = p->building ? PROJ_REBUILDING : PROJ_RUNNING;
            proj_note(p, "skipped the failed event", (int64_t)pos);
        }
    }
    if (p->want_resume) {
        p->want_resume = false;
        if (p->state == PROJ_FAILED) {
            p->failure.failed = false;
            p->state = p->building ? PROJ_REBUILDING : PROJ_RUNNING;
            proj_note(p, "resumed", (int64_t)proj_target(p)->next_position);
        }
    }
}

static void close_reader(proj *p)
{
    p->engine->src.close(p->reader);
    p->reader = NULL;
}

/* A reader of the source positioned at the target's checkpoint (with the source's own
 * resume text saved beside it, if it keeps one). */
static int ensure_reader(proj *p, sk_error *err)
{
    const proj_source *src = &p->engine->src;
    proj_gen *g = proj_target(p);
    uint64_t at = g->next_position;
    if (p->reader && src->position(p->reader) == at)
        return 0;
    close_reader(p);
    char *resume = src->checkpoint ? proj_gen_meta(g, "source_checkpoint") : NULL;
    sk_error e = {0};
    int rc = src->open(src->ctx, at, resume, &p->reader, &e);
    free(resume);
    if (rc) {
        p->reader = NULL;
        return sk_error_set(err, rc, "", "%s: %s", p->model->name, e.message);
    }
    return 0;
}

static void update_rate(proj *p, int applied)
{
    uint64_t now = now_ns();
    if (!p->rate_start_ns)
        p->rate_start_ns = now;
    p->rate_events += (uint64_t)applied;
    if (now - p->rate_start_ns >= 1000000000ull) {
        p->rate = (double)p->rate_events * 1e9 / (double)(now - p->rate_start_ns);
        p->rate_start_ns = now;
        p->rate_events = 0;
    }
}

/* Ends a batch's projection.apply span with what the batch did. */
static void proj_trace_batch_end(proj *p, tr_span *span, int n, const proj_failure *f)
{
    tr_span_attr_str(span, "skald.projection", p->model->name);
    tr_span_attr_int(span, "skald.events", n > 0 ? n : 0);
    if (f->failed)
        tr_span_set_error(span, f->message);
    tr_span_end(span);
}

/* Applies one batch. > 0 applied, 0 caught up (or failed: see p->state), < 0 error. */
static int step(proj *p, sk_error *err)
{
    proj_gen *g = proj_target(p);
    proj_failure f = {0};
    int64_t last_occurred_us = 0;
    /* projection.apply (docs/tracing.md): kept only if one of its events is sampled */
    tr_span *span = tr_span_start_batch("projection.apply", TR_KIND_CONSUMER);
    int n = proj_gen_apply(g, &p->engine->src, p->reader, p->engine->cfg.events,
                           p->engine->cfg.batch_events_max, span, &f, &last_occurred_us, err);
    proj_trace_batch_end(p, span, n, &f);
    if (n < 0 && n != SK_ECANCELED) { /* a database or log error stops it like a statement */
        f.failed = true;
        f.position = g->next_position;
        snprintf(f.message, sizeof f.message, "%s", err->message);
    }
    pthread_mutex_lock(&p->mu);
    if (p->building)
        p->building_next = p->building->next_position;
    else
        p->live_next = p->live->next_position;
    if (n > 0) {
        update_rate(p, n);
        p->last_occurred_us = last_occurred_us;
    }
    if (f.failed) {
        p->failure = f;
        p->state = PROJ_FAILED;
        proj_note(p, "failed", (int64_t)f.position);
    }
    pthread_cond_broadcast(&p->applied);
    pthread_mutex_unlock(&p->mu);
    if (f.failed) {
        /* the reader went past the failed event: resume re-reads it */
        close_reader(p);
        return 0;
    }
    return n == SK_ECANCELED ? 0 : n;
}

/* The rebuild has caught up: it becomes the live generation. */
static int swap_in(proj *p, sk_error *err)
{
    proj_gen *b = p->building;
    if (proj_gen_set_meta_u64(b, "live", 1) != 0)
        return sk_error_set(err, -EIO, "", "%s: cannot mark generation %" PRIu64 " live",
                            p->model->name, b->number);
    pthread_mutex_lock(&p->mu);
    proj_gen *old = p->live;
    p->live = b;
    p->building = NULL;
    p->live_next = b->next_position;
    p->state = PROJ_RUNNING;
    proj_note(p, "rebuilt: now serving this generation", (int64_t)b->next_position);
    pthread_cond_broadcast(&p->applied);
    pthread_mutex_unlock(&p->mu);
    proj_gen_close(old, true);
    return 0;
}

static bool stopping(proj *p)
{
    pthread_mutex_lock(&p->mu);
    bool stop = p->want_stop;
    handle_requests(p);
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static void wait_for_work(proj *p, bool with_reader)
{
    struct pollfd fds[2] = {
        {.fd = p->ctl_fd, .events = POLLIN},
        {.fd = with_reader && p->reader ? p->engine->src.fd(p->reader) : -1, .events = POLLIN}};
    while (poll(fds, 2, -1) < 0 && errno == EINTR) {
    }
    uint64_t drained;
    ssize_t n = read(p->ctl_fd, &drained, sizeof drained);
    (void)n;
}

static void *worker_main(void *arg)
{
    proj *p = arg;
    sk_error err = {0};
    while (!stopping(p)) {
        if (p->state == PROJ_FAILED || p->state == PROJ_STOPPED) {
            wait_for_work(p, false);
            continue;
        }
        int n = ensure_reader(p, &err);
        if (n == 0)
            n = step(p, &err);
        if (n > 0 || (n == 0 && p->state == PROJ_FAILED))
            continue;
        if (n == 0 && p->building && (n = swap_in(p, &err)) == 0)
            continue;
        if (n < 0) { /* no subscription, or a rebuild that cannot be marked live */
            pthread_mutex_lock(&p->mu);
            p->failure = (proj_failure){.failed = true, .position = proj_target(p)->next_position};
            snprintf(p->failure.message, sizeof p->failure.message, "%s", err.message);
            p->state = PROJ_FAILED;
            proj_note(p, "failed", (int64_t)p->failure.position);
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        wait_for_work(p, true);
    }
    close_reader(p);
    return NULL;
}

int proj_worker_start(proj *p, sk_error *err)
{
    int rc = pthread_create(&p->thread, NULL, worker_main, p);
    if (rc)
        return sk_error_set(err, -rc, "", "cannot start the worker of %s", p->model->name);
    p->thread_running = true;
    return 0;
}

void proj_worker_stop(proj *p)
{
    if (!p->thread_running)
        return;
    pthread_mutex_lock(&p->mu);
    p->want_stop = true;
    pthread_mutex_unlock(&p->mu);
    signal_ctl(p);
    pthread_join(p->thread, NULL);
    p->thread_running = false;
}

int proj_worker_catch_up(proj *p, sk_error *err)
{
    for (;;) {
        stopping(p); /* takes requests (rebuild, resume, skip) as the thread would */
        if (p->state == PROJ_FAILED || p->state == PROJ_STOPPED)
            return 0;
        int n = ensure_reader(p, err);
        if (n == 0)
            n = step(p, err);
        if (n < 0)
            return n;
        if (n == 0 && p->state != PROJ_FAILED && p->building) {
            n = swap_in(p, err);
            if (n < 0)
                return n;
            continue;
        }
        if (n == 0) {
            close_reader(p);
            return 0;
        }
    }
}

void proj_worker_poke(proj *p)
{
    signal_ctl(p);
}
