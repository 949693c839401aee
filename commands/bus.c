/*
 * bus.c -- the command bus (engine): one command from JSON body to durable events.
 *
 *   1. find the handler (unknown command: SK_ENOTFOUND);
 *   2. check the body against the command's schema (SK_EBADINPUT naming the field);
 *   3. lock the stream's stripe, so commands for one stream are serialized;
 *   4. take the aggregate from the stripe's cache, or load it (snapshot + the events
 *      after it) and cache it;
 *   5. check expected_version (SK_ECONFLICT with the current version);
 *   6. decide (SK_EREJECTED with the reason; a decider's own failure, such as -ENOMEM,
 *      is the command's error, never "done, nothing to change");
 *   7. encode the events, evolve the cached state with them, and queue their append
 *      conditional on the version of step 4, before unlocking (no events: queue a
 *      barrier, so the answer waits for the appends its decision rests on).
 *
 * Step 7 does not wait for the disk: the next command for the same stream decides on the
 * state the queued append leaves, and its own append is conditional on that version, so
 * a stream's commands are pipelined through one group commit without losing their order.
 * If an append fails, its entry is marked stale and reloaded from the log; appends queued
 * behind it fail their version check (or the failed log refuses them).
 *
 * Every snapshot_every events, the state after an append is serialized under the lock and
 * saved by the append's completion, only once the events it includes are durable.
 */
#include "commands/commands_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cmd_bus_create(const cmd_bus_config *cfg, cmd_bus **out, sk_error *err)
{
    if (!cfg->domains)
        return sk_error_set(err, -EINVAL, "", "no domains: set cmd_bus_config.domains");
    cmd_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return -ENOMEM;
    int rc = ev_registry_open(cfg->command_schemas_dir, NULL, &bus->commands, err);
    if (rc) {
        free(bus);
        return rc;
    }
    bus->log = cfg->log;
    bus->events = cfg->events;
    bus->snapshots = cfg->snapshots;
    bus->snapshot_every = cfg->snapshot_every;
    if (cfg->nsnapshot_rules > CMD_SNAPSHOT_RULES_MAX) {
        ev_registry_destroy(bus->commands);
        free(bus);
        return sk_error_set(err, -EINVAL, "", "at most %d snapshot rules", CMD_SNAPSHOT_RULES_MAX);
    }
    if (cfg->nsnapshot_rules)
        memcpy(bus->rules, cfg->snapshot_rules, cfg->nsnapshot_rules * sizeof *bus->rules);
    bus->nrules = cfg->nsnapshot_rules;
    bus->domains = cfg->domains;
    size_t per_stripe = cfg->cache_max / CMD_STRIPES;
    for (int i = 0; i < CMD_STRIPES; i++) {
        pthread_mutex_init(&bus->stripes[i], NULL);
        if (cmd_cache_init(&bus->caches[i], per_stripe ? per_stripe : 1) != 0)
            rc = -ENOMEM;
    }
    if (rc) {
        cmd_bus_destroy(bus);
        return sk_error_set(err, rc, "", "out of memory for the aggregate cache");
    }
    *out = bus;
    return 0;
}

void cmd_bus_invalidate_cache(cmd_bus *bus)
{
    for (int i = 0; i < CMD_STRIPES; i++) {
        pthread_mutex_lock(&bus->stripes[i]);
        cmd_cache_mark_all_stale(&bus->caches[i]);
        pthread_mutex_unlock(&bus->stripes[i]);
    }
}

void cmd_bus_destroy(cmd_bus *bus)
{
    if (!bus)
        return;
    for (int i = 0; i < CMD_STRIPES; i++) {
        pthread_mutex_destroy(&bus->stripes[i]);
        cmd_cache_free(&bus->caches[i]);
    }
    ev_registry_destroy(bus->commands);
    free(bus);
}

void cmd_bus_get_stats(cmd_bus *bus, cmd_bus_stats *out)
{
    out->cache_hits = atomic_load(&bus->cache_hits);
    out->cache_misses = atomic_load(&bus->cache_misses);
    out->snapshot_loads = atomic_load(&bus->snapshot_loads);
    out->snapshots_saved = atomic_load(&bus->snapshots_saved);
    out->snapshot_failures = atomic_load(&bus->snapshot_failures);
}

void cmd_outcome_clear(cmd_outcome *out)
{
    cmd_result_clear(&out->decision);
    memset(out, 0, sizeof *out);
}

uint32_t cmd_snapshot_every(const cmd_bus *bus, const cmd_aggregate *agg)
{
    if (!bus->snapshots)
        return 0;
    for (size_t i = 0; i < bus->nrules; i++)
        if (strcmp(bus->rules[i].aggregate, agg->name) == 0)
            return bus->rules[i].every;
    return bus->snapshot_every;
}

/*
 * An error in the bus's own work (rebuilding a stream, encoding an event a decider made)
 * is the service's fault, not the request's: an input-kind code from those paths becomes
 * SK_ESCHEMA, so the HTTP layer answers 500 and not 400/404 naming a field the client
 * never sent. Store errors (SK_ECORRUPT, SK_EFAILED, -EIO, ...) keep their code.
 */
static int internal_error(cmd_outcome *out, int rc, const char *what)
{
    if (rc != SK_EBADINPUT && rc != SK_ENOTFOUND && rc != SK_ETOOBIG)
        return rc;
    char detail[sizeof out->err.message];
    snprintf(detail, sizeof detail, "%s", out->err.message);
    return sk_error_set(&out->err, SK_ESCHEMA, "", "%s %s: %s", what, out->stream_id, detail);
}

/* One queued append, from submit to its completion. */
typedef struct pending_append {
    cmd_bus *bus;
    cmd_cache_entry *entry;
    cmd_outcome *out;
    cmd_done_cb done;
    void *cb_ctx;
    char *snapshot_json; /* the state after this append, to save once it is durable */
    uint64_t snapshot_version;
    unsigned generation;  /* the entry's when this was queued */
    bool client_expected; /* the client named an expected version */
    tr_span *wait_span;   /* command.append (tracing.c); NULL when not traced */
} pending_append;

static void append_done(void *ctx, const store_append_result *res)
{
    pending_append *p = ctx;
    cmd_outcome *out = p->out;
    cmd_trace_wait_end(p->wait_span, res->status, res->first_position);
    out->status = res->status;
    if (res->status == 0) {
        p->entry->last_failure = 0;
        out->first_position = res->first_position;
        out->first_version = res->first_version;
        out->stream_version = res->stream_version;
        out->position = res->last_position;
        if (p->snapshot_json) {
            sk_error err = {0};
            if (cmd_save_snapshot(p->bus, p->entry->agg, out->stream_id, p->snapshot_version,
                                  p->snapshot_json, &err) != 0)
                atomic_fetch_add(&p->bus->snapshot_failures, 1);
        }
    } else {
        out->count = 0;
        int cause = res->status;
        if (res->status == SK_ECONFLICT)
            out->stream_version = res->stream_version;
        else
            p->entry->last_failure = res->status;
        /* The append was conditional on the cached version, which counted the appends
         * queued before it. A conflict there means one of those failed (disk full, a
         * failed log): the client did not cause it, and one that named no expected
         * version must not get a 409 for it, but the failure that caused it (a 503 to
         * retry). A client that named a version gets the 409: the stream is not there. */
        if (res->status == SK_ECONFLICT && !p->client_expected && p->entry->last_failure)
            cause = p->entry->last_failure;
        out->status = cause;
        sk_error_set(&out->err, cause, "", "append to %s failed: %s", out->stream_id,
                     cause == res->status
                         ? sk_strerror(cause)
                         : "an append queued before it for the same stream failed");
        if (atomic_load(&p->entry->generation) == p->generation)
            atomic_store(&p->entry->stale, true);
    }
    free(p->snapshot_json);
    cmd_done_cb done = p->done;
    void *cb_ctx = p->cb_ctx;
    /* last touch of the entry: from here on it may be evicted */
    atomic_fetch_sub(&p->entry->pending, 1);
    free(p);
    done(cb_ctx, out);
}

/*
 * The stream's cache entry, loaded if missing or stale. A hit is not checked against the
 * log: the bus is the log's only writer (the log's LOCK keeps other processes out), and
 * were that ever broken, the append conditional on the cached version would fail with a
 * conflict and mark the entry stale, so no wrong event can be written from it.
 */
static cmd_cache_entry *entry_for(cmd_bus *bus, cmd_cache *cache, const cmd_handler *h,
                                  const char *stream, uint64_t hash, cmd_outcome *out)
{
    cmd_cache_entry *e = cmd_cache_get(cache, stream, hash);
    if (e && !atomic_load(&e->stale)) {
        atomic_fetch_add(&bus->cache_hits, 1);
        return e;
    }
    atomic_fetch_add(&bus->cache_misses, 1);
    void *state;
    uint64_t version, replayed;
    int rc = cmd_load_state(bus, h->aggregate, stream, 1, &state, &version, &replayed, &out->err);
    if (rc) {
        out->status = internal_error(out, rc, "cannot rebuild");
        return NULL;
    }
    if (e) { /* reload in place: pending appends still point at it */
        cmd_state_free(e->agg, e->state);
        e->state = state;
        e->version = version;
        atomic_fetch_add(&e->generation, 1);
        atomic_store(&e->stale, false);
    } else {
        e = cmd_cache_add(cache, stream, hash, h->aggregate, state, version);
        if (!e) {
            out->status = sk_error_set(&out->err, -ENOMEM, "", "out of memory");
            return NULL;
        }
    }
    e->since_snapshot = replayed;
    /* a long replay (no snapshot, or an outdated one) is saved now: it is all durable */
    uint32_t every = cmd_snapshot_every(bus, h->aggregate);
    if (every && replayed >= every) {
        char *text = cmd_state_dump(h->aggregate, e->state);
        sk_error err = {0};
        if (text && cmd_save_snapshot(bus, h->aggregate, stream, version, text, &err) == 0)
            e->since_snapshot = 0;
        else
            atomic_fetch_add(&bus->snapshot_failures, 1);
        free(text);
    }
    return e;
}

/* Encodes events into evs/bufs and records their ids in out; 0 or an error in out->err. */
static int encode_events(cmd_bus *bus, const cmd_context *ctx, const cmd_event *events, size_t n,
                         cmd_outcome *out, ev_event *evs, ev_buf *bufs)
{
    for (size_t i = 0; i < n; i++) {
        memset(&evs[i], 0, sizeof evs[i]);
        int rc = ev_payload_from_json(bus->events, events[i].type, events[i].payload, &bufs[i],
                                      &evs[i].schema_id, &out->err);
        if (rc)
            return rc;
        ev_uuid_generate(&evs[i].event_id);
        evs[i].type = ev_str_of(events[i].type);
        evs[i].command_id = out->command_id;
        evs[i].correlation_id = ctx ? ctx->correlation_id : (ev_uuid){{0}};
        uint32_t nmeta = ctx ? ctx->metadata_count : 0;
        evs[i].metadata_count = nmeta < EV_METADATA_MAX ? nmeta : EV_METADATA_MAX;
        for (uint32_t m = 0; m < evs[i].metadata_count; m++)
            evs[i].metadata[m] = ctx->metadata[m];
        cmd_trace_meta(&evs[i]);
        evs[i].payload = bufs[i].data;
        evs[i].payload_size = (uint32_t)bufs[i].size;
        out->event_ids[i] = evs[i].event_id;
        out->event_types[i] = events[i].type;
    }
    out->count = (uint32_t)n;
    return 0;
}

/*
 * Moves e's state on by the decision's events, for the commands behind this one, before
 * the append is queued: the append's snapshot (when it completes an interval) is the
 * state after them. Should evolve fail (out of memory), the state is no longer the log's:
 * the entry goes stale, to be reloaded from the log, which is the truth, and the command
 * is not appended. A snapshot that cannot be written is left to the next interval.
 */
static int advance(cmd_bus *bus, cmd_cache_entry *e, const cmd_event *events, size_t n,
                   pending_append *p, cmd_outcome *out)
{
    for (size_t i = 0; i < n; i++) {
        int rc = e->agg->evolve(e->state, events[i].type, events[i].payload);
        if (rc) {
            atomic_store(&e->stale, true);
            return sk_error_set(&out->err, rc, "", "cannot apply %s to %s: %s", events[i].type,
                                out->stream_id, sk_strerror(rc));
        }
    }
    uint32_t every = cmd_snapshot_every(bus, e->agg);
    if (every && e->since_snapshot + n >= every)
        p->snapshot_json = cmd_state_dump(e->agg, e->state);
    p->snapshot_version = e->version + n;
    return 0;
}

/* The record of one append or barrier about to be queued for e: counted in e->pending,
 * so e is not evicted before its completion. NULL on -ENOMEM (out->err says so). */
static pending_append *pending_start(cmd_bus *bus, cmd_cache_entry *e, cmd_outcome *out,
                                     cmd_done_cb done, void *cb_ctx, bool client_expected)
{
    pending_append *p = calloc(1, sizeof *p);
    if (!p) {
        sk_error_set(&out->err, -ENOMEM, "", "out of memory");
        return NULL;
    }
    *p = (pending_append){
        bus, e, out, done, cb_ctx, NULL, 0, atomic_load(&e->generation), client_expected, NULL};
    atomic_fetch_add(&e->pending, 1);
    return p;
}

/* Undoes pending_start when the log refused to queue. */
static void pending_abandon(pending_append *p)
{
    atomic_fetch_sub(&p->entry->pending, 1);
    cmd_trace_wait_end(p->wait_span, SK_ECANCELED, 0);
    free(p->snapshot_json);
    free(p);
}

/*
 * Queues the decision's append at the entry's version and advances the entry. Returns 0
 * when queued (done will run from the completion, perhaps before this returns: nothing
 * here touches out or the pending record after queueing), or an error (done not called).
 */
static int queue_append(cmd_bus *bus, cmd_cache_entry *e, const cmd_context *ctx, cmd_outcome *out,
                        cmd_done_cb done, void *cb_ctx, bool client_expected)
{
    size_t n = out->decision.count;
    cmd_event events[CMD_EVENTS_MAX];
    memcpy(events, out->decision.events, n * sizeof *events);
    out->decision.count = 0; /* the payloads are this function's now */
    ev_buf bufs[CMD_EVENTS_MAX] = {{0}};
    ev_event evs[CMD_EVENTS_MAX];
    int rc = encode_events(bus, ctx, events, n, out, evs, bufs);
    if (rc)
        rc = internal_error(out, rc, "a decider made an event its schema refuses on");
    pending_append *p = rc ? NULL : pending_start(bus, e, out, done, cb_ctx, client_expected);
    if (rc == 0 && !p)
        rc = -ENOMEM;
    bool snapshotted = false;
    if (p) {
        rc = advance(bus, e, events, n, p, out);
        snapshotted = p->snapshot_json != NULL;
        if (rc == 0) {
            p->wait_span = cmd_trace_wait_begin(out->stream_id, n);
            rc = store_log_append_async(bus->log, ev_str_of(out->stream_id), e->version, evs, n,
                                        append_done, p, &out->err);
            if (rc) /* the state is ahead of the log now: reload it */
                atomic_store(&e->stale, true);
        }
        if (rc) {
            out->count = 0;
            pending_abandon(p);
        }
    }
    for (size_t i = 0; i < n; i++)
        ev_buf_free(&bufs[i]);
    if (rc == 0) {
        e->version += n;
        e->since_snapshot = snapshotted ? 0 : e->since_snapshot + n;
    }
    for (size_t i = 0; i < n; i++)
        json_decref(events[i].payload);
    return rc;
}

/*
 * A decision without events still rests on the entry's state, which may include appends
 * not yet durable: it is answered through a barrier at the entry's version, after them.
 * Should one of them fail, the barrier fails or conflicts too, so no answer vouches for a
 * state that never reached the disk; on success the answer carries the stream's last
 * position. Returns 0 when queued (done runs later), else an error (done not called).
 */
static int queue_barrier(cmd_bus *bus, cmd_cache_entry *e, cmd_outcome *out, cmd_done_cb done,
                         void *cb_ctx, bool client_expected)
{
    pending_append *p = pending_start(bus, e, out, done, cb_ctx, client_expected);
    if (!p)
        return -ENOMEM;
    int rc = store_log_barrier_async(bus->log, ev_str_of(out->stream_id), e->version, append_done,
                                     p, &out->err);
    if (rc)
        pending_abandon(p);
    return rc;
}

/* Steps 4-7 under the stripe lock. Returns 1 if an append or a barrier was queued (done will run
 * later), else 0 with out->status set. */
static int decide_locked(cmd_bus *bus, cmd_cache *cache, uint64_t hash, const cmd_handler *h,
                         const json_t *body, uint64_t expected_version, const cmd_context *ctx,
                         cmd_outcome *out, cmd_done_cb done, void *cb_ctx)
{
    cmd_cache_entry *e = entry_for(bus, cache, h, out->stream_id, hash, out);
    if (!e)
        return 0;
    out->stream_version = e->version;
    if (expected_version != STORE_EXPECT_ANY && expected_version != e->version) {
        out->status = sk_error_set(
            &out->err, SK_ECONFLICT, "expected_version", "stream %s is at version %llu, not %llu",
            out->stream_id, (unsigned long long)e->version, (unsigned long long)expected_version);
        return 0;
    }
    int rc = h->decide(e->state, body, &out->decision);
    cmd_trace_decided(out->stream_id, rc, &out->decision);
    if (rc) {
        cmd_result_clear(&out->decision);
        out->status = sk_error_set(&out->err, rc, "", "%s on %s could not be decided: %s",
                                   h->command, out->stream_id, sk_strerror(rc));
        return 0;
    }
    if (out->decision.rejected) {
        out->status = sk_error_set(&out->err, SK_EREJECTED, "", "%s", out->decision.message);
        return 0;
    }
    bool client_expected = expected_version != STORE_EXPECT_ANY;
    rc = out->decision.count ? queue_append(bus, e, ctx, out, done, cb_ctx, client_expected)
                             : queue_barrier(bus, e, out, done, cb_ctx, client_expected);
    if (rc) {
        out->status = rc;
        return 0;
    }
    return 1;
}

int cmd_bus_submit(cmd_bus *bus, const char *command, const json_t *body, uint64_t expected_version,
                   const cmd_context *ctx, cmd_outcome *out, cmd_done_cb done, void *cb_ctx)
{
    memset(out, 0, sizeof *out);
    const cmd_handler *h = cmd_handler_find(bus->domains, command);
    if (!h) {
        out->status =
            sk_error_set(&out->err, SK_ENOTFOUND, "type", "unknown command '%s'", command);
        done(cb_ctx, out);
        return 0;
    }
    int rc = ev_payload_check_json(bus->commands, command, body, &out->err);
    if (rc == 0) {
        rc = cmd_stream_id(h, body, out->stream_id, sizeof out->stream_id);
        if (rc)
            sk_error_set(&out->err, rc, h->id_field,
                         "%s must be 1..%d bytes of letters, digits and - . _ ~ ! $ & ' ( ) * "
                         "+ , ; = : @ (an id must read back through a URL)",
                         h->id_field, EV_STREAM_ID_MAX - (int)strlen(h->aggregate->stream_prefix));
    }
    if (rc) {
        out->status = rc;
        done(cb_ctx, out);
        return 0;
    }
    out->command_id = ctx ? ctx->command_id : (ev_uuid){{0}};
    if (ev_uuid_is_nil(&out->command_id))
        ev_uuid_generate(&out->command_id);
    /* one hash picks the stripe and, in its cache, the bucket */
    uint64_t hash = ev_hash_str(out->stream_id);
    unsigned s = (unsigned)(hash % CMD_STRIPES);
    cmd_trace_begin(ctx, command);
    pthread_mutex_lock(&bus->stripes[s]);
    int queued = decide_locked(bus, &bus->caches[s], hash, h, body, expected_version, ctx, out,
                               done, cb_ctx);
    pthread_mutex_unlock(&bus->stripes[s]);
    cmd_trace_finish(queued ? NULL : out); /* once queued, out is the completion's */
    if (!queued)
        done(cb_ctx, out);
    return 0;
}

/* The synchronous form waits for done on a condition variable. */
typedef struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} sync_wait;

static void wake(void *ctx, cmd_outcome *out)
{
    (void)out;
    sync_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int cmd_bus_execute(cmd_bus *bus, const char *command, const json_t *body,
                    uint64_t expected_version, const cmd_context *ctx, cmd_outcome *out)
{
    sync_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    cmd_bus_submit(bus, command, body, expected_version, ctx, out, wake, &w);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return out->status;
}
