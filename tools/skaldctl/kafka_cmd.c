/*
 * kafka_cmd.c -- `skaldctl kafka status`: how far the relay's checkpoint is behind the
 * log, read from the data directory (works whether or not the server runs; with it
 * running, its /metrics shows the same figures live).
 */
#include "tools/skaldctl/skaldctl.h"

#include <inttypes.h>
#include <string.h>

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

int ctl_kafka(int argc, char **argv)
{
    static const char USAGE[] = "Usage: skaldctl kafka status [OPTIONS]\n";
    if (argc < 3)
        return ctl_usage_error(USAGE, "kafka needs a subcommand: status");
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
    return ctl_usage_error(USAGE, "unknown kafka subcommand '%s'", argv[2]);
}
