/*
 * load.c -- rebuilding an aggregate: the newest usable snapshot, then the events after it.
 *
 * A snapshot is usable when it belongs to the same aggregate, its state_version is the
 * aggregate's current one (a changed state shape makes old snapshots meaningless) and
 * its version is not past the stream's (a repaired log may have lost the tail it
 * covered). Anything else is ignored; the caller saves a fresh one when the replay was
 * long enough, so an outdated snapshot is replaced the first time it is met.
 */
#include "commands/commands_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_replay(const ev_registry *events, const cmd_aggregate *agg, store_reader *reader,
               uint64_t upto, void *state, uint64_t *version_out, sk_error *err)
{
    ev_event ev;
    int rc = 0;
    while ((upto == 0 || *version_out < upto) && (rc = store_reader_next(reader, &ev, err)) == 1) {
        json_t *payload = NULL;
        rc = ev_payload_to_json(events, ev.schema_id, ev.payload, ev.payload_size, &payload, err);
        if (rc)
            return rc;
        char type[EV_TYPE_MAX + 1];
        memcpy(type, ev.type.ptr, ev.type.len);
        type[ev.type.len] = '\0';
        rc = agg->evolve(state, type, payload);
        json_decref(payload);
        if (rc)
            return sk_error_set(err, rc, "", "cannot apply %s at version %llu of a %s: %s", type,
                                (unsigned long long)ev.version, agg->name, sk_strerror(rc));
        *version_out = ev.version;
    }
    return rc;
}

/* The snapshot's state if it is usable for agg at a stream of stream_version, else NULL
 * (also when its text is not a state of agg: a replay from the first event replaces it). */
static void *usable_snapshot(const cmd_aggregate *agg, const store_snapshot *snap,
                             uint64_t stream_version)
{
    if (strcmp(snap->aggregate, agg->name) != 0 || snap->state_version != agg->state_version ||
        snap->version > stream_version)
        return NULL;
    void *state = NULL;
    int rc = cmd_state_parse(agg, snap->state_json, &state);
    if (rc == SK_EBADINPUT) /* its state_version is current: damage, or a shape changed
                               without a bump of state_version */
        sk_log(SK_LOG_WARN, "commands", "ignoring a snapshot that is not a state of its aggregate",
               "stream", snap->stream_id, "aggregate", agg->name, SK_LOG_END);
    return rc == 0 ? state : NULL;
}

/*
 * Whether a stream at stream_version may have a snapshot worth a lookup (a SQLite query
 * and its file locks, on the HTTP thread, at every cache miss). The bus saves one only
 * once `every` events were added, so a shorter stream has none; one an operator took
 * with skaldctl is skipped too, which costs a replay of fewer than `every` events and
 * never a different state. With snapshots off for the aggregate (0), ones saved under an
 * earlier setting may still be there: look.
 */
static bool snapshot_possible(const cmd_bus *bus, const cmd_aggregate *agg, uint64_t stream_version)
{
    if (!bus->snapshots)
        return false;
    uint32_t every = cmd_snapshot_every(bus, agg);
    return every == 0 || stream_version >= every;
}

int cmd_load_state(cmd_bus *bus, const cmd_aggregate *agg, const char *stream_id, int use_snapshot,
                   void **state_out, uint64_t *version_out, uint64_t *replayed, sk_error *err)
{
    void *state = NULL;
    uint64_t version = 0;
    uint64_t stream_version = store_log_stream_version(bus->log, ev_str_of(stream_id));
    if (stream_version == 0) {
        /* a new stream (a PlaceOrder, a RegisterProduct): nothing to look up or read */
        state = cmd_state_new(agg);
        if (!state)
            return -ENOMEM;
        *state_out = state;
        *version_out = 0;
        if (replayed)
            *replayed = 0;
        return 0;
    }
    if (use_snapshot && snapshot_possible(bus, agg, stream_version)) {
        store_snapshot snap;
        int loaded = store_snapshot_load(bus->snapshots, stream_id, &snap, err);
        if (loaded == 1) {
            state = usable_snapshot(agg, &snap, stream_version);
            if (state) {
                version = snap.version;
                atomic_fetch_add(&bus->snapshot_loads, 1);
            }
            store_snapshot_clear(&snap);
        }
        /* an unreadable snapshot file costs a replay, never the command */
        sk_error_clear(err);
    }
    if (!state)
        state = cmd_state_new(agg);
    if (!state)
        return -ENOMEM;
    uint64_t from = version;
    store_reader *r;
    int rc = store_reader_open_stream(bus->log, ev_str_of(stream_id), version + 1, &r);
    if (rc == 0) {
        rc = cmd_replay(bus->events, agg, r, 0, state, &version, err);
        store_reader_close(r);
    } else {
        sk_error_set(err, rc, "", "cannot read stream %s: %s", stream_id, sk_strerror(rc));
    }
    if (rc < 0) {
        cmd_state_free(agg, state);
        return rc;
    }
    *state_out = state;
    *version_out = version;
    if (replayed)
        *replayed = version - from;
    return 0;
}

int cmd_save_snapshot(cmd_bus *bus, const cmd_aggregate *agg, const char *stream_id,
                      uint64_t version, const char *state_json, sk_error *err)
{
    store_snapshot snap = {0};
    snprintf(snap.stream_id, sizeof snap.stream_id, "%s", stream_id);
    snprintf(snap.aggregate, sizeof snap.aggregate, "%s", agg->name);
    snap.version = version;
    snap.state_version = agg->state_version;
    snap.state_json = (char *)state_json; /* borrowed: save does not free it */
    int rc = store_snapshot_save(bus->snapshots, &snap, err);
    if (rc == 0)
        atomic_fetch_add(&bus->snapshots_saved, 1);
    return rc;
}

int cmd_bus_load(cmd_bus *bus, const cmd_aggregate *agg, const char *stream_id, int use_snapshot,
                 json_t **state_out, uint64_t *version_out, sk_error *err)
{
    void *state;
    int rc = cmd_load_state(bus, agg, stream_id, use_snapshot, &state, version_out, NULL, err);
    if (rc)
        return rc;
    *state_out = agg->to_json(state);
    cmd_state_free(agg, state);
    if (!*state_out)
        return sk_error_set(err, -ENOMEM, "", "out of memory writing %s as JSON", stream_id);
    return 0;
}

int cmd_bus_snapshot(cmd_bus *bus, const cmd_aggregate *agg, const char *stream_id, sk_error *err)
{
    if (!bus->snapshots)
        return sk_error_set(err, SK_EBADINPUT, "", "the bus has no snapshot store");
    void *state;
    uint64_t version;
    int rc = cmd_load_state(bus, agg, stream_id, 0, &state, &version, NULL, err);
    if (rc)
        return rc;
    if (version == 0) {
        cmd_state_free(agg, state);
        return sk_error_set(err, SK_ENOTFOUND, "", "stream %s has no events", stream_id);
    }
    char *text = cmd_state_dump(agg, state);
    cmd_state_free(agg, state);
    if (!text)
        return sk_error_set(err, -ENOMEM, "", "out of memory writing %s as JSON", stream_id);
    rc = cmd_save_snapshot(bus, agg, stream_id, version, text, err);
    free(text);
    return rc;
}
