/*
 * restore_cmd.c -- `skaldctl restore --from-kafka`: a local log rebuilt from the relay's
 * topic, for when the data directory is lost and Kafka, the second copy, is not.
 *
 * The topic is read to the end offsets it has when the restore starts, merged back into
 * position order across partitions (store_ksrc_*, store.h "The Kafka source"), and each
 * event appended with its own envelope (event id, time, command and correlation ids,
 * metadata, schema id and payload) to a new log whose positions and stream versions must
 * come out as the originals: a gap in positions, a version that does not follow, or a
 * schema id this data directory's registry gives another type stops it.
 *
 * Nothing half-made is left as a valid log: the log is written in DIR/.restore/log and
 * renamed to DIR/log only once everything is durable; a failure removes DIR/.restore.
 * Each event becomes an append of its own (the topic does not say which events one
 * command appended together), which `log verify` and `log dump` cannot tell apart.
 */
#include "tools/skaldctl/skaldctl.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char RESTORE_USAGE[] =
    "Usage: skaldctl restore --from-kafka --brokers HOST:PORT[,...] --topic T --to DIR\n"
    "                        [--json] [--schemas DIR]\n"
    "Rebuilds a log from the relay's topic T (e.g. skald.events) into DIR/log, in position\n"
    "order across the partitions, reading up to the topic's end as the restore starts.\n"
    "Refuses a gap in positions, a stream version that does not follow, and a schema id\n"
    "that DIR's schema registry gives another type (copy the writer's DATA/schemas into\n"
    "DIR first if its schemas evolved); then nothing is left in DIR/log. DIR/log must not\n"
    "exist. Check the result with 'skaldctl log verify --data DIR'.\n"
    "  --from-kafka   the source (the only one)\n"
    "  --brokers      Kafka bootstrap servers\n"
    "  --topic        the topic, <prefix>.events\n"
    "  --to           the data directory to restore into (created if needed)\n"
    "  --json         the summary as one JSON object\n"
    "  --schemas      the .avsc files (default $SKALD_SCHEMAS, else the installed ones)\n"
    "Exit status: 0 restored, 1 failed (nothing written), 2 usage error.\n";

#define COMMIT_EVERY 4096 /* appends per group commit */

typedef struct restore {
    store_log *log;
    const ev_registry *reg;
    uint64_t queued, done;
    int failed; /* the first failed completion's status */
    char why[512];
} restore;

/* Runs on the commit (manual_commit: inside store_log_commit, on this thread). */
static void on_appended(void *ctx, const store_append_result *res)
{
    restore *r = ctx;
    if (res->status && !r->failed) {
        r->failed = res->status;
        snprintf(r->why, sizeof r->why, "the append of position %" PRIu64 " failed: %s", r->done,
                 sk_strerror(res->status));
    } else if (!res->status && res->first_position != r->done && !r->failed) {
        r->failed = SK_ECORRUPT;
        snprintf(r->why, sizeof r->why, "position %" PRIu64 " was written at %" PRIu64, r->done,
                 res->first_position);
    }
    r->done++;
}

static int remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    char child[4400];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if ((size_t)snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= sizeof child)
            continue;
        struct stat st;
        if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(child);
        else
            unlink(child);
    }
    closedir(d);
    return rmdir(path) == 0 ? 0 : -errno;
}

/* One event from the topic into the log, checked against the registry and its stream. */
static int append_one(restore *r, const ev_event *ev, sk_error *err)
{
    ev_schema_info info;
    if (ev_registry_find(r->reg, ev->schema_id, &info) != 0 || !ev_str_eq(ev->type, info.type))
        return sk_error_set(err, SK_ESCHEMA, "schema_id",
                            "position %" PRIu64 " (%.*s) has schema id %" PRIu32
                            ", which this registry %s; copy the writer's DATA/schemas into the "
                            "target directory first",
                            ev->position, (int)ev->type.len, ev->type.ptr, ev->schema_id,
                            ev_registry_find(r->reg, ev->schema_id, &info) ? "does not have"
                                                                           : "gives another type");
    if (ev->position != r->queued)
        return sk_error_set(err, SK_ECORRUPT, "position",
                            "position %" PRIu64 " came where %" PRIu64 " was next", ev->position,
                            r->queued);
    int rc =
        store_log_append_async(r->log, ev->stream_id, ev->version - 1, ev, 1, on_appended, r, err);
    if (rc)
        return rc;
    r->queued++;
    if (r->queued % COMMIT_EVERY == 0) {
        rc = store_log_commit(r->log);
        if (rc < 0)
            return sk_error_set(err, rc, "", "writing the log failed: %s", sk_strerror(rc));
    }
    if (r->failed)
        return sk_error_set(err, r->failed, "",
                            "%s (a version conflict means the topic has a stream's events "
                            "out of order or twice)",
                            r->why);
    return 0;
}

/* Reads the topic to its end into r->log. */
static int copy_topic(const ctl_opts *o, restore *r, sk_error *err)
{
    store_ksrc_config kc;
    store_ksrc_config_init(&kc);
    kc.brokers = o->brokers;
    kc.topic = o->topic;
    kc.until_end = 1;
    store_ksrc *src = NULL;
    int rc = store_ksrc_open(&kc, &src, err);
    while (rc == 0) {
        ev_event ev;
        int got = store_ksrc_next(src, &ev, err);
        if (got == 1) {
            rc = append_one(r, &ev, err);
            if (rc == 0 && r->queued % 100000 == 0)
                ctl_progress("restore", r->queued, r->queued);
        } else if (got < 0) {
            rc = got;
        } else if (store_ksrc_at_end(src)) {
            break;
        } else {
            store_ksrc_wait(src, 1000);
        }
    }
    ctl_progress_end();
    store_ksrc_close(src);
    if (rc == 0 && (rc = store_log_commit(r->log)) > 0)
        rc = 0;
    if (rc == 0 && r->failed)
        rc = sk_error_set(err, r->failed, "", "%s", r->why);
    return rc;
}

static int restore_into(const ctl_opts *o, const char *stage, const char *final_log,
                        uint64_t *events, sk_error *err)
{
    ev_registry *reg = NULL;
    int rc = ev_registry_open_readonly(o->schemas, o->to, &reg, err);
    char path[4300];
    snprintf(path, sizeof path, "%s/log", stage);
    store_config cfg;
    store_config_init(&cfg, path);
    cfg.manual_commit = 1;
    cfg.queue_appends_max = COMMIT_EVERY * 2;
    restore r = {.reg = reg};
    if (rc == 0 && (mkdir(stage, 0755) != 0))
        rc = sk_error_set(err, -errno, "", "cannot create %s: %s", stage, strerror(errno));
    if (rc == 0)
        rc = store_log_open(&cfg, &r.log, err);
    if (rc == 0)
        rc = copy_topic(o, &r, err);
    int crc = r.log ? store_log_close(r.log) : 0; /* flushes, syncs, checkpoints */
    if (rc == 0 && crc)
        rc = sk_error_set(err, crc, "", "closing the restored log failed: %s", sk_strerror(crc));
    ev_registry_destroy(reg);
    if (rc == 0 && rename(path, final_log) != 0)
        rc = sk_error_set(err, -errno, "", "cannot rename %s to %s: %s", path, final_log,
                          strerror(errno));
    if (rc == 0 && (rc = ev_fsync_dir(o->to)) != 0)
        sk_error_set(err, rc, "", "cannot sync %s", o->to);
    *events = r.queued;
    return rc;
}

static int restore_run(const ctl_opts *o)
{
    if (!o->from_kafka)
        return ctl_usage_error(RESTORE_USAGE, "restore needs a source: --from-kafka");
    if (!o->brokers || !o->topic || !o->to)
        return ctl_usage_error(RESTORE_USAGE, "restore --from-kafka needs --brokers, --topic and "
                                              "--to");
    char final_log[4200], stage[4200];
    snprintf(final_log, sizeof final_log, "%s/log", o->to);
    snprintf(stage, sizeof stage, "%s/.restore", o->to);
    struct stat st;
    if (stat(final_log, &st) == 0)
        return ctl_fail("%s exists: restore writes a new log only (move it away first)", final_log);
    if (mkdir(o->to, 0755) != 0 && errno != EEXIST)
        return ctl_fail("cannot create %s: %s", o->to, strerror(errno));
    remove_tree(stage); /* what an interrupted restore left */
    sk_error err = {0};
    uint64_t events = 0;
    int rc = restore_into(o, stage, final_log, &events, &err);
    remove_tree(stage);
    if (rc)
        return ctl_fail("restore from %s failed after %" PRIu64 " events; nothing was kept: %s",
                        o->topic, events, err.message[0] ? err.message : sk_strerror(rc));
    if (o->json) {
        json_t *j = json_pack("{s:s, s:I, s:s}", "topic", o->topic, "events", (json_int_t)events,
                              "log", final_log);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(j);
    } else
        printf("restored %" PRIu64 " events from %s into %s\n", events, o->topic, final_log);
    return CTL_OK;
}

int ctl_restore(int argc, char **argv)
{
    if (argc >= 3 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0)) {
        fputs(RESTORE_USAGE, stdout);
        return CTL_OK;
    }
    ctl_opts o;
    int rc =
        ctl_parse(argc, argv, 2, "?from-kafka,brokers,topic,to,json,schemas", RESTORE_USAGE, &o);
    if (rc || o.help)
        return rc;
    return restore_run(&o);
}
