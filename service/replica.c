/*
 * replica.c -- a read replica's event source: `skald serve --source=kafka` builds its read
 * models from the relay's topic instead of a local log (docs/kafka.md, "Read replicas").
 *
 * The projection engine reads through a proj_source (projections.h); this file wires
 * store/'s Kafka source (store_ksrc_*) into one: every worker opens its own consumer at its
 * generation's checkpoint, whose resume text (every partition's offset) the worker saves
 * in the same SQLite transaction as the position, so a restart resumes exactly. The topic
 * is <--kafka-topic-prefix>.events, the extra librdkafka settings those of --kafka-config.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct svc_replica {
    char topic[STORE_RELAY_TOPIC_MAX + 1];
    store_relay_config props;   /* only the extra settings are used */
    _Atomic uint64_t seen_head; /* the highest position seen by any worker, plus one */
} svc_replica;

typedef struct reader {
    svc_replica *rep;
    store_ksrc *src;
} reader;

/* A worker's open waits this long for the brokers (its thread cannot be stopped meanwhile):
 * past it the model fails, naming why, and `projection resume` tries again. */
#define WORKER_METADATA_TIMEOUT_MS 10000
/* At start-up, the topic must be there within this: a replica started before its writer's
 * relay created the topic says so and exits, rather than failing every model. */
#define START_METADATA_TIMEOUT_MS 30000

static int ksrc_open(svc_replica *rep, uint64_t position, const char *resume, uint32_t timeout_ms,
                     store_ksrc **out, sk_error *err)
{
    store_ksrc_config kc;
    store_ksrc_config_init(&kc);
    kc.brokers = svc_cfg.kafka_brokers;
    kc.topic = rep->topic;
    kc.from_position = position;
    kc.resume = resume;
    for (uint32_t i = 0; i < rep->props.prop_count; i++) {
        kc.prop_names[i] = rep->props.prop_names[i];
        kc.prop_values[i] = rep->props.prop_values[i];
    }
    kc.prop_count = rep->props.prop_count;
    kc.metadata_timeout_ms = timeout_ms;
    return store_ksrc_open(&kc, out, err);
}

static int k_open(void *ctx, uint64_t position, const char *resume, void **out, sk_error *err)
{
    svc_replica *rep = ctx;
    reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int rc = ksrc_open(rep, position, resume, WORKER_METADATA_TIMEOUT_MS, &r->src, err);
    if (rc) {
        free(r);
        return rc;
    }
    r->rep = rep;
    *out = r;
    return 0;
}

static int k_next(void *rd, ev_event *out, sk_error *err)
{
    reader *r = rd;
    int rc = store_ksrc_next(r->src, out, err);
    uint64_t seen = store_ksrc_seen_head(r->src), had = atomic_load(&r->rep->seen_head);
    while (seen > had && !atomic_compare_exchange_weak(&r->rep->seen_head, &had, seen)) {
    }
    return rc;
}

static int k_fd(void *rd)
{
    return store_ksrc_fd(((reader *)rd)->src);
}

static uint64_t k_position(void *rd)
{
    return store_ksrc_position(((reader *)rd)->src);
}

static int k_checkpoint(void *rd, char *buf, size_t size)
{
    return store_ksrc_checkpoint(((reader *)rd)->src, buf, size);
}

static uint64_t k_head(void *ctx)
{
    return atomic_load(&((svc_replica *)ctx)->seen_head);
}

static void k_close(void *rd)
{
    reader *r = rd;
    if (!r)
        return;
    store_ksrc_close(r->src);
    free(r);
}

int svc_replica_source(svc_app *app, proj_source *out, sk_error *err)
{
    svc_replica *rep = calloc(1, sizeof *rep);
    if (!rep)
        return -ENOMEM;
    app->replica = rep;
    const char *prefix = svc_cfg.kafka_topic_prefix ? svc_cfg.kafka_topic_prefix : "skald";
    if (!prefix[0] || strlen(prefix) + 7 > STORE_RELAY_TOPIC_MAX)
        return sk_error_set(err, SK_EBADINPUT, "kafka-topic-prefix",
                            "the topic prefix must be 1..%d characters", STORE_RELAY_TOPIC_MAX - 7);
    snprintf(rep->topic, sizeof rep->topic, "%s.events", prefix);
    store_relay_config_init(&rep->props);
    int rc =
        svc_cfg.kafka_config ? svc_relay_props_load(svc_cfg.kafka_config, &rep->props, err) : 0;
    store_ksrc *probe = NULL;
    if (rc == 0)
        rc = ksrc_open(rep, 0, NULL, START_METADATA_TIMEOUT_MS, &probe, err);
    store_ksrc_close(probe);
    if (rc)
        return rc;
    *out = (proj_source){.ctx = rep,
                         .open = k_open,
                         .next = k_next,
                         .fd = k_fd,
                         .position = k_position,
                         .checkpoint = k_checkpoint,
                         .head = k_head,
                         .close = k_close};
    sk_log(SK_LOG_NOTICE, "replica", "read models from Kafka", "topic", rep->topic, "brokers",
           svc_cfg.kafka_brokers, SK_LOG_END);
    return 0;
}

void svc_replica_free(svc_app *app)
{
    free(app->replica);
    app->replica = NULL;
}

json_t *svc_replica_status_json(const svc_app *app)
{
    if (!app->replica)
        return NULL;
    return json_pack("{s:s, s:s, s:I}", "source", "kafka", "topic", app->replica->topic,
                     "seen_head", (json_int_t)atomic_load(&app->replica->seen_head));
}
