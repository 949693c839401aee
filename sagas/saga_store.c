/*
 * saga_store.c -- where a saga's state is read from: its stream, and the orchestrator's
 * checkpoint file.
 *
 * The stream `$saga-<id>` is the saga's truth (saga_state.c folds it). Its snapshot,
 * a row in DATA/sagas/snapshots.db (store/snapshot.c, aggregate "SagaState": the fold as
 * JSON at a stream version), only shortens the replay: a load starts from the snapshot
 * and reads the events after it; a snapshot that is missing, of another shape or past
 * the stream is ignored and the stream read whole. The checkpoint
 * file, DATA/sagas/checkpoint.json, is only a starting point for the tail:
 *   {"position": P, "open": ["OrderFulfillment-o1", ...]}
 * Every start event below P has been handled (its saga started, or found to need none),
 * and every saga started from below P that had not ended when the file was written is
 * listed in "open". After a restart the listed sagas are reloaded from their streams and
 * the tail resumes at P; a start event seen again is harmless (StartSaga is rejected
 * `already_exists`, and the saga is then loaded from its stream). The file is replaced
 * atomically (temporary file, fdatasync, rename, directory fsync), so a crash leaves the
 * old one or the new one; losing it entirely only means a longer tail from 0.
 */
#include "sagas/sagas_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The snapshot of s's stream, if one is usable: 1 and s filled, 0 if none. A snapshot of
 * another shape, past the stream's end or unreadable is ignored (a cache). */
static int load_snapshot(const saga_source *src, const char *stream, saga_rt *s)
{
    if (!src->snaps)
        return 0;
    uint64_t stream_version = store_log_stream_version(src->log, ev_str_of(stream));
    if (stream_version < src->snapshot_every)
        return 0;
    store_snapshot snap;
    sk_error err = {0};
    if (store_snapshot_load(src->snaps, stream, &snap, &err) != 1)
        return 0;
    int used = 0;
    if (snap.version <= stream_version && strcmp(snap.aggregate, SAGA_SNAPSHOT_AGGREGATE) == 0 &&
        snap.state_version == SAGA_SNAPSHOT_STATE_VERSION) {
        json_t *j = json_loads(snap.state_json, 0, NULL);
        used = j && saga_fold_from_json(s, src->defs, src->extra, j) == 0 &&
               s->version == snap.version;
        json_decref(j);
    }
    if (!used) {
        /* unusable (another shape, past the stream of a repaired log, unreadable): gone,
         * or it would also make the snapshot file ignore every later save below it */
        sk_log(SK_LOG_WARN, "sagas", "dropping an unusable saga snapshot", "stream", stream,
               SK_LOG_END);
        (void)store_snapshot_delete(src->snaps, stream, NULL, NULL, &err);
    }
    store_snapshot_clear(&snap);
    if (used) {
        s->snap_version = s->version;
        return 1;
    }
    /* a half-filled fold is dropped: start again from nothing (the id stays) */
    json_decref(s->data);
    for (int i = 0; i < SAGA_STEPS_MAX; i++)
        free(s->fwd_res[i]);
    char id[sizeof s->id];
    memcpy(id, s->id, sizeof id);
    memset(s, 0, offsetof(saga_rt, hnext));
    memcpy(s->id, id, sizeof id);
    s->failed_step = -1;
    s->comp_next = -1;
    return 0;
}

int saga_load(const saga_source *src, saga_rt *s, uint64_t *replayed_out, bool *from_snapshot_out,
              sk_error *err)
{
    char stream[EV_STREAM_ID_MAX + 1];
    snprintf(stream, sizeof stream, "$saga-%s", s->id);
    int snapped = load_snapshot(src, stream, s);
    store_reader *r = NULL;
    int rc = store_reader_open_stream(src->log, ev_str_of(stream), s->version + 1, &r);
    if (rc)
        return sk_error_set(err, rc, "", "cannot read %s", stream);
    ev_event ev;
    uint64_t n = 0;
    while ((rc = store_reader_next(r, &ev, err)) == 1) {
        json_t *payload = NULL;
        rc = ev_payload_to_json(src->events, ev.schema_id, ev.payload, ev.payload_size, &payload,
                                err);
        if (rc)
            break;
        char type[EV_TYPE_MAX + 1];
        snprintf(type, sizeof type, "%.*s", (int)ev.type.len, ev.type.ptr);
        rc = saga_apply(s, src->defs, src->extra, type, payload, ev.occurred_at);
        json_decref(payload);
        if (rc)
            break;
        s->version = ev.version;
        n++;
    }
    store_reader_close(r);
    if (rc < 0)
        return rc;
    if (n == 0 && !snapped)
        return sk_error_set(err, SK_ENOTFOUND, "", "no stream %s", stream);
    if (replayed_out)
        *replayed_out = n;
    if (from_snapshot_out)
        *from_snapshot_out = snapped;
    return 0;
}

int saga_snapshot_save(store_snapshots *snaps, saga_rt *s, sk_error *err)
{
    json_t *j = saga_fold_to_json(s);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return sk_error_set(err, -ENOMEM, "", "out of memory");
    store_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snprintf(snap.stream_id, sizeof snap.stream_id, "$saga-%s", s->id);
    snprintf(snap.aggregate, sizeof snap.aggregate, "%s", SAGA_SNAPSHOT_AGGREGATE);
    snap.version = s->version;
    snap.state_version = SAGA_SNAPSHOT_STATE_VERSION;
    snap.state_json = text;
    int rc = store_snapshot_save(snaps, &snap, err);
    free(text);
    if (rc == 0)
        s->snap_version = s->version;
    return rc;
}

void saga_snapshot_drop(store_snapshots *snaps, saga_rt *s)
{
    char stream[EV_STREAM_ID_MAX + 1];
    snprintf(stream, sizeof stream, "$saga-%s", s->id);
    sk_error err = {0};
    if (store_snapshot_delete(snaps, stream, NULL, NULL, &err) == 0)
        s->snap_version = 0;
}

int saga_checkpoint_read(const char *dir, uint64_t *position_out, json_t **open_out, sk_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.json", dir);
    char *text = NULL;
    size_t size = 0;
    int rc = ev_read_file(path, &text, &size);
    if (rc == -ENOENT) {
        *position_out = 0;
        *open_out = NULL;
        return 0;
    }
    if (rc)
        return sk_error_set(err, rc, "", "cannot read %s", path);
    json_error_t jerr;
    json_t *o = json_loadb(text, size, 0, &jerr);
    free(text);
    json_t *pos = json_object_get(o, "position"), *open = json_object_get(o, "open");
    if (!json_is_integer(pos) || json_integer_value(pos) < 0 || !json_is_array(open)) {
        json_decref(o);
        return sk_error_set(err, SK_ECORRUPT, "",
                            "%s is not a saga checkpoint; remove it to "
                            "tail the log from its start",
                            path);
    }
    *position_out = (uint64_t)json_integer_value(pos);
    *open_out = json_incref(open);
    json_decref(o);
    return 0;
}

int saga_checkpoint_write(const char *dir, uint64_t position, const json_t *open_ids)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/checkpoint.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    json_t *o = json_pack("{s:I, s:O}", "position", (json_int_t)position, "open", open_ids);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return -ENOMEM;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0) {
        rc = -errno;
    } else {
        size_t len = strlen(text), at = 0;
        while (at < len && rc == 0) {
            ssize_t w = write(fd, text + at, len - at);
            if (w < 0 && errno != EINTR)
                rc = -errno;
            else if (w > 0)
                at += (size_t)w;
        }
        if (rc == 0 && fdatasync(fd) != 0)
            rc = -errno;
        close(fd);
    }
    free(text);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc == 0)
        rc = ev_fsync_dir(dir);
    return rc;
}
