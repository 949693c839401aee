/*
 * snapshot_cmd.c -- `skaldctl snapshot list|verify|purge|take`: the aggregate snapshots
 * of DATA/snapshots.db. verify replays each snapshot's stream from its first event up to
 * the snapshot's version through the aggregate's evolve and compares; take saves one from
 * such a replay. The log is opened read-only, so all of this works beside a running
 * service (SQLite serializes the writes).
 */
#include "commands/commands.h"
#include "tools/skaldctl/skaldctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char LIST_USAGE[] =
    "Usage: skaldctl snapshot list --data DIR [--aggregate NAME] [--json]\n"
    "Lists the snapshots: stream, aggregate, version, state version, when taken, size.\n";
static const char VERIFY_USAGE[] =
    "Usage: skaldctl snapshot verify --data DIR [--schemas DIR] [--json]\n"
    "Replays each snapshot's stream from its first event to the snapshot's version and\n"
    "compares the state. A snapshot whose state version is not the aggregate's current\n"
    "one is reported 'outdated' (the service ignores and replaces it), not as damage.\n"
    "Exit 0 when every current snapshot matches, 3 when one differs, 1 on failure.\n";
static const char PURGE_USAGE[] =
    "Usage: skaldctl snapshot purge --data DIR (--stream S | --aggregate NAME | --all)\n"
    "Deletes snapshots; the service rebuilds them from the log as it goes. Always safe.\n";
static const char TAKE_USAGE[] =
    "Usage: skaldctl snapshot take --data DIR --stream S [--schemas DIR]\n"
    "Replays the stream from its first event and saves a snapshot of its state now.\n";

static const char *snapshots_path(const ctl_opts *o, char *buf, size_t size)
{
    snprintf(buf, size, "%s/snapshots.db", o->data);
    return buf;
}

static int open_snapshots(const ctl_opts *o, int read_only, store_snapshots **out)
{
    *out = NULL;
    char path[4096];
    snapshots_path(o, path, sizeof path);
    struct stat st;
    if (stat(path, &st) != 0)
        return ctl_fail("no snapshot file %s: the service creates it on its first start", path);
    sk_error err = {0};
    if (store_snapshots_open(path, read_only, out, &err) != 0)
        return ctl_fail("%s", err.message);
    return CTL_OK;
}

/* ---- list ---- */

static int list_one(void *ctx, const store_snapshot *s)
{
    const ctl_opts *o = ctx;
    if (o->aggregate && strcmp(o->aggregate, s->aggregate) != 0)
        return 0;
    if (o->json) {
        json_t *j = json_pack(
            "{s:s, s:s, s:I, s:i, s:I, s:I}", "stream_id", s->stream_id, "aggregate", s->aggregate,
            "version", (json_int_t)s->version, "state_version", (int)s->state_version,
            "taken_at_us", (json_int_t)s->taken_at_us, "bytes", (json_int_t)strlen(s->state_json));
        char *text = json_dumps(j, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(j);
    } else {
        printf("%-40s %-10s version %-8llu state v%-3u %6zu bytes  taken %lld\n", s->stream_id,
               s->aggregate, (unsigned long long)s->version, s->state_version,
               strlen(s->state_json), (long long)(s->taken_at_us / 1000000));
    }
    return 0;
}

static int snapshot_list(const ctl_opts *o)
{
    store_snapshots *snaps = NULL;
    int rc = open_snapshots(o, 1, &snaps);
    if (rc)
        return rc;
    sk_error err = {0};
    rc = store_snapshot_list(snaps, list_one, (void *)o, &err);
    store_snapshots_close(snaps);
    return rc ? ctl_fail("%s", err.message) : CTL_OK;
}

/* ---- replay, shared by verify and take ---- */

typedef struct replayer {
    store_log *log;
    ev_registry *events;
} replayer;

static int replayer_open(const ctl_opts *o, replayer *r)
{
    memset(r, 0, sizeof *r);
    sk_error err = {0};
    char dir[4096];
    store_config cfg;
    store_config_init(&cfg, ctl_log_dir(o, dir, sizeof dir));
    cfg.read_only = 1;
    if (store_log_open(&cfg, &r->log, &err) != 0)
        return ctl_fail("%s", err.message);
    if (ev_registry_open_readonly(o->schemas, o->data, &r->events, &err) != 0) {
        store_log_close(r->log);
        return ctl_fail("%s", err.message);
    }
    return CTL_OK;
}

static void replayer_close(replayer *r)
{
    ev_registry_destroy(r->events);
    store_log_close(r->log);
}

/* The state of stream after its events 1..upto (all if upto is 0); *version gets the
 * last version applied. NULL with err set on failure. */
static json_t *replay(replayer *r, const cmd_aggregate *agg, const char *stream, uint64_t upto,
                      uint64_t *version, sk_error *err)
{
    store_reader *reader;
    if (store_reader_open_stream(r->log, ev_str_of(stream), 1, &reader) != 0) {
        sk_error_set(err, SK_ENOTFOUND, "", "cannot read stream %s", stream);
        return NULL;
    }
    void *state = cmd_state_new(agg);
    *version = 0;
    int rc = state ? cmd_replay(r->events, agg, reader, upto, state, version, err) : -ENOMEM;
    store_reader_close(reader);
    json_t *json = rc < 0 ? NULL : agg->to_json(state);
    cmd_state_free(agg, state);
    if (rc >= 0 && !json)
        sk_error_set(err, -ENOMEM, "", "out of memory");
    else if (rc < 0 && !err->message[0])
        sk_error_set(err, rc, "", "cannot replay %s: %s", stream, sk_strerror(rc));
    return json;
}

/* ---- verify ---- */

typedef struct verify_ctx {
    const ctl_opts *o;
    replayer r;
    uint64_t checked, matched, differ, outdated, failed;
} verify_ctx;

static void report(const verify_ctx *v, const store_snapshot *s, const char *verdict,
                   const char *detail)
{
    if (v->o->json)
        printf("{\"stream_id\":\"%s\",\"version\":%llu,\"verdict\":\"%s\",\"detail\":\"%s\"}\n",
               s->stream_id, (unsigned long long)s->version, verdict, detail);
    else if (strcmp(verdict, "ok") != 0)
        printf("%-40s version %-8llu %s%s%s\n", s->stream_id, (unsigned long long)s->version,
               verdict, *detail ? ": " : "", detail);
}

static int verify_one(void *ctx, const store_snapshot *s)
{
    verify_ctx *v = ctx;
    const cmd_aggregate *agg = cmd_aggregate_find(cmd_domains, s->aggregate);
    v->checked++;
    if (!agg) {
        v->failed++;
        report(v, s, "unknown-aggregate", s->aggregate);
        return 0;
    }
    if (s->state_version != agg->state_version) {
        v->outdated++;
        report(v, s, "outdated", "state version differs; the service will replace it");
        return 0;
    }
    sk_error err = {0};
    uint64_t version;
    json_t *replayed = replay(&v->r, agg, s->stream_id, s->version, &version, &err);
    json_t *saved = json_loads(s->state_json, 0, NULL);
    if (!replayed) {
        v->failed++;
        report(v, s, "error", err.message);
    } else if (version != s->version) {
        v->differ++;
        report(v, s, "differs", "the stream ends before the snapshot's version");
    } else if (!saved || !json_equal(saved, replayed)) {
        v->differ++;
        report(v, s, "differs", "the state is not the replay's");
    } else {
        v->matched++;
        report(v, s, "ok", "");
    }
    json_decref(saved);
    json_decref(replayed);
    return 0;
}

static int snapshot_verify(const ctl_opts *o)
{
    store_snapshots *snaps = NULL;
    int rc = open_snapshots(o, 1, &snaps);
    if (rc)
        return rc;
    verify_ctx v = {.o = o};
    if ((rc = replayer_open(o, &v.r)) != 0) {
        store_snapshots_close(snaps);
        return rc;
    }
    sk_error err = {0};
    rc = store_snapshot_list(snaps, verify_one, &v, &err);
    replayer_close(&v.r);
    store_snapshots_close(snaps);
    if (rc)
        return ctl_fail("%s", err.message);
    if (!o->json)
        printf("%llu snapshots: %llu match their replay, %llu differ, %llu outdated, %llu "
               "could not be checked\n",
               (unsigned long long)v.checked, (unsigned long long)v.matched,
               (unsigned long long)v.differ, (unsigned long long)v.outdated,
               (unsigned long long)v.failed);
    if (v.differ)
        return CTL_FAULTS;
    return v.failed ? CTL_FAILED : CTL_OK;
}

/* ---- purge, take ---- */

static int snapshot_purge(const ctl_opts *o)
{
    int chosen = (o->stream != NULL) + (o->aggregate != NULL) + o->all;
    if (chosen != 1)
        return ctl_usage_error(PURGE_USAGE, "give exactly one of --stream, --aggregate, --all");
    store_snapshots *snaps = NULL;
    int rc = open_snapshots(o, 0, &snaps);
    if (rc)
        return rc;
    uint64_t removed = 0;
    sk_error err = {0};
    rc = store_snapshot_delete(snaps, o->stream, o->aggregate, &removed, &err);
    store_snapshots_close(snaps);
    if (rc)
        return ctl_fail("%s", err.message);
    printf("%llu snapshots removed\n", (unsigned long long)removed);
    return CTL_OK;
}

static int snapshot_take(const ctl_opts *o)
{
    if (!o->stream)
        return ctl_usage_error(TAKE_USAGE, "--stream S is required");
    const cmd_aggregate *agg = cmd_aggregate_of_stream(cmd_domains, o->stream);
    if (!agg)
        return ctl_fail("no aggregate owns stream %s (its name must start with an aggregate's "
                        "stream prefix)",
                        o->stream);
    replayer r;
    int rc = replayer_open(o, &r);
    if (rc)
        return rc;
    sk_error err = {0};
    uint64_t version;
    json_t *state = replay(&r, agg, o->stream, 0, &version, &err);
    replayer_close(&r);
    if (!state)
        return ctl_fail("%s", err.message);
    if (version == 0) {
        json_decref(state);
        return ctl_fail("stream %s has no events", o->stream);
    }
    char path[4096];
    store_snapshots *snaps = NULL;
    store_snapshot snap = {0};
    snprintf(snap.stream_id, sizeof snap.stream_id, "%s", o->stream);
    snprintf(snap.aggregate, sizeof snap.aggregate, "%s", agg->name);
    snap.version = version;
    snap.state_version = agg->state_version;
    snap.state_json = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(state);
    rc = store_snapshots_open(snapshots_path(o, path, sizeof path), 0, &snaps, &err);
    if (rc == 0) {
        rc = store_snapshot_save(snaps, &snap, &err);
        store_snapshots_close(snaps);
    }
    free(snap.state_json);
    if (rc)
        return ctl_fail("%s", err.message);
    printf("snapshot of %s at version %llu saved\n", o->stream, (unsigned long long)version);
    return CTL_OK;
}

int ctl_snapshot(int argc, char **argv)
{
    static const char USAGE[] = "Usage: skaldctl snapshot list|verify|purge|take [OPTIONS]\n";
    static const ctl_subcommand SUBS[] = {
        {"list", "data,aggregate,json", LIST_USAGE, snapshot_list},
        {"verify", "data,schemas,json", VERIFY_USAGE, snapshot_verify},
        {"purge", "data,stream,aggregate,all", PURGE_USAGE, snapshot_purge},
        {"take", "data,schemas,stream", TAKE_USAGE, snapshot_take},
    };
    return ctl_dispatch(argc, argv, USAGE, SUBS, sizeof SUBS / sizeof SUBS[0]);
}
