/*
 * kafka_cmd.c -- `skaldctl kafka status`: how far the relay's checkpoint is behind the
 * log, read from the data directory (works whether or not the server runs; with it
 * running, its /metrics shows the same figures live). `skaldctl kafka republish --from P`:
 * moves the checkpoint back to P, offline, so that the relay's next start publishes
 * P.. again (docs/kafka.md, "Publishing again").
 */
#include "tools/skaldctl/skaldctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static const char STATUS_USAGE[] =
    "Usage: skaldctl kafka status --data DIR [--json]\n"
    "Shows the Kafka relay's checkpoint (DATA/relay.checkpoint: every event below it is\n"
    "in the topic), the topic it is for, the log's head and the lag in events. Exit 0,\n"
    "or 1 when the checkpoint or the log cannot be read.\n";

static int kafka_status(const ctl_opts *o)
{
    uint64_t ckpt = 0;
    char topic[STORE_RELAY_TOPIC_MAX + 1] = "";
    int rc = store_relay_checkpoint_read(o->data, &ckpt, topic, sizeof topic);
    if (rc != 0 && rc != SK_ENOTFOUND)
        return ctl_fail("cannot read %s/%s: %s", o->data, STORE_RELAY_CHECKPOINT_FILE,
                        sk_strerror(rc));
    int published = rc == 0;
    char dir[4200];
    store_config cfg;
    store_config_init(&cfg, ctl_log_dir(o, dir, sizeof dir));
    cfg.read_only = 1;
    store_log *log = NULL;
    sk_error err = {0};
    if ((rc = store_log_open(&cfg, &log, &err)) != 0)
        return ctl_fail("cannot open the log in %s: %s", dir,
                        err.message[0] ? err.message : sk_strerror(rc));
    uint64_t head = store_log_head(log);
    store_log_close(log);
    uint64_t lag = head > ckpt ? head - ckpt : 0;
    if (o->json) {
        printf("{\"published\":%s,\"topic\":%s%s%s,\"checkpoint_position\":%" PRIu64
               ",\"head\":%" PRIu64 ",\"lag_events\":%" PRIu64 "}\n",
               published ? "true" : "false", published ? "\"" : "", published ? topic : "null",
               published ? "\"" : "", ckpt, head, lag);
    } else if (!published) {
        printf("nothing published yet (no %s); the log's head is %" PRIu64 "\n",
               STORE_RELAY_CHECKPOINT_FILE, head);
    } else {
        printf("topic       %s\ncheckpoint  %" PRIu64 "\nhead        %" PRIu64
               "\nlag         %" PRIu64 " events\n",
               topic, ckpt, head, lag);
    }
    return CTL_OK;
}

static const char REPUBLISH_USAGE[] =
    "Usage: skaldctl kafka republish --data DIR --from P\n"
    "Makes the Kafka relay publish again from log position P: rewrites its checkpoint\n"
    "(DATA/relay.checkpoint) to P, so that its next start publishes P, P+1, ... to the\n"
    "same topic. Offline: refused while a relay runs on DIR (it holds DATA/relay.lock);\n"
    "stop it, republish, start it. P must be at most the checkpoint (a later P would skip\n"
    "events never published). Consumers drop the copies by their event_id/position\n"
    "headers. Exit 0; 1 when refused or the files cannot be read; 2 on bad usage.\n";

/* Takes DATA/relay.lock the way the relay does (flock, non-blocking): the fd, or -1 with
 * the message printed. While skaldctl holds it no relay can start on DIR either. */
static int take_relay_lock(const char *data)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", data, STORE_RELAY_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        ctl_fail("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            ctl_fail("a relay is running on %s (it holds %s): stop it (or the skald serve "
                     "that runs the relay role) first, then republish",
                     data, STORE_RELAY_LOCK_FILE);
        else
            ctl_fail("cannot lock %s: %s", path, strerror(e));
        return -1;
    }
    return fd;
}

/* The log's durable head, or a negative code (message printed). */
static int64_t durable_head(const ctl_opts *o)
{
    char dir[4200];
    store_config cfg;
    store_config_init(&cfg, ctl_log_dir(o, dir, sizeof dir));
    cfg.read_only = 1;
    store_log *log = NULL;
    sk_error err = {0};
    int rc = store_log_open(&cfg, &log, &err);
    if (rc != 0) {
        ctl_fail("cannot open the log in %s: %s", dir,
                 err.message[0] ? err.message : sk_strerror(rc));
        return -1;
    }
    uint64_t head = store_log_durable_head(log);
    store_log_close(log);
    return (int64_t)head;
}

/* Checks P against the checkpoint and the head, then rewrites the checkpoint. */
static int republish_locked(const ctl_opts *o)
{
    uint64_t ckpt = 0;
    char topic[STORE_RELAY_TOPIC_MAX + 1] = "";
    int rc = store_relay_checkpoint_read(o->data, &ckpt, topic, sizeof topic);
    if (rc == SK_ENOTFOUND)
        return ctl_fail("nothing was published from %s yet (no %s): the relay's first start "
                        "publishes the whole log",
                        o->data, STORE_RELAY_CHECKPOINT_FILE);
    if (rc != 0)
        return ctl_fail("cannot read %s/%s: %s", o->data, STORE_RELAY_CHECKPOINT_FILE,
                        sk_strerror(rc));
    int64_t head = durable_head(o);
    if (head < 0)
        return CTL_FAILED;
    if (o->from > (uint64_t)head)
        return ctl_fail("--from %" PRIu64 " is beyond the log's head (%" PRId64
                        "): positions run from 0 to %" PRId64,
                        o->from, head, head);
    if (o->from > ckpt)
        return ctl_fail("--from %" PRIu64 " is past the relay's checkpoint (%" PRIu64
                        "): events %" PRIu64 "..%" PRIu64 " were never published and would be "
                        "skipped; nothing changed",
                        o->from, ckpt, ckpt, o->from - 1);
    if (o->from == ckpt) {
        printf("the relay's checkpoint for %s is already %" PRIu64 ": nothing to republish\n",
               topic, ckpt);
        return CTL_OK;
    }
    if ((rc = store_relay_checkpoint_write(o->data, o->from, topic)) != 0)
        return ctl_fail("cannot write %s/%s: %s", o->data, STORE_RELAY_CHECKPOINT_FILE,
                        sk_strerror(rc));
    printf("relay checkpoint for %s moved from %" PRIu64 " to %" PRIu64
           ": the relay's next start publishes positions %" PRIu64 "..%" PRIu64 " again (%" PRIu64
           " events; consumers drop copies by event_id/position)\n",
           topic, ckpt, o->from, o->from, ckpt - 1, ckpt - o->from);
    return CTL_OK;
}

static int kafka_republish(const ctl_opts *o)
{
    if (!o->has_from)
        return ctl_usage_error(REPUBLISH_USAGE, "republish needs --from P");
    int fd = take_relay_lock(o->data);
    if (fd < 0)
        return CTL_FAILED;
    int rc = republish_locked(o);
    close(fd); /* releases the lock */
    return rc;
}

int ctl_kafka(int argc, char **argv)
{
    static const char USAGE[] = "Usage: skaldctl kafka status|republish [OPTIONS]\n";
    if (argc < 3)
        return ctl_usage_error(USAGE, "kafka needs a subcommand: status, republish");
    ctl_opts o;
    int rc;
    if (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0) {
        fputs(USAGE, stdout);
        return CTL_OK;
    }
    if (strcmp(argv[2], "status") == 0) {
        if ((rc = ctl_parse(argc, argv, 3, "data,json", STATUS_USAGE, &o)) || o.help)
            return rc;
        return kafka_status(&o);
    }
    if (strcmp(argv[2], "republish") == 0) {
        if ((rc = ctl_parse(argc, argv, 3, "data,from", REPUBLISH_USAGE, &o)) || o.help)
            return rc;
        return kafka_republish(&o);
    }
    return ctl_usage_error(USAGE, "unknown kafka subcommand '%s'", argv[2]);
}
