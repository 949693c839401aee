/*
 * relay.c -- the relay role of `skald serve`: its settings file, starting and stopping
 * store/'s relay, and what /metrics and /readyz say about it.
 *
 * The relay runs only when --kafka-brokers is given, so the embedded default keeps
 * running without Kafka. A broker outage never makes the process unready: commands are
 * still accepted and the relay catches up later, so /readyz stays 200 and shows the
 * relay's state in its body instead.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "name = value" lines, '#' comments, blank lines. Names and values are copied into
 * buf (kept for the process's life: librdkafka only reads them during start). */
static char *props_text;

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

int svc_relay_props_load(const char *path, store_relay_config *rc, sk_error *err)
{
    size_t size = 0;
    int r = ev_read_file(path, &props_text, &size);
    if (r)
        return sk_error_set(err, r, "kafka-config", "cannot read %s: %s", path, sk_strerror(r));
    unsigned line_no = 0;
    for (char *save = NULL, *line = strtok_r(props_text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char *l = trim(line);
        if (!*l || *l == '#')
            continue;
        char *eq = strchr(l, '=');
        if (!eq)
            return sk_error_set(err, SK_EBADINPUT, "kafka-config", "%s: line %u is not NAME=VALUE",
                                path, line_no);
        *eq = '\0';
        if (rc->prop_count == STORE_RELAY_PROPS_MAX)
            return sk_error_set(err, SK_EBADINPUT, "kafka-config", "%s: more than %d settings",
                                path, STORE_RELAY_PROPS_MAX);
        rc->prop_names[rc->prop_count] = trim(l);
        rc->prop_values[rc->prop_count] = trim(eq + 1);
        rc->prop_count++;
    }
    return 0;
}

int svc_relay_start(svc_app *app, sk_error *err)
{
    if (!(svc_cfg.roles & SVC_SERVES_RELAY) || !svc_cfg.kafka_brokers)
        return 0;
    store_relay_config rc;
    store_relay_config_init(&rc);
    rc.log = app->log;
    rc.data_dir = svc_cfg.data_dir;
    rc.brokers = svc_cfg.kafka_brokers;
    if (svc_cfg.kafka_topic_prefix)
        rc.topic_prefix = svc_cfg.kafka_topic_prefix;
    rc.partitions = svc_cfg.kafka_partitions;
    rc.replication = svc_cfg.kafka_replication;
    int r = svc_cfg.kafka_config ? svc_relay_props_load(svc_cfg.kafka_config, &rc, err) : 0;
    if (r == 0)
        r = store_relay_start(&rc, &app->relay, err);
    return r;
}

void svc_relay_stop(svc_app *app)
{
    int rc = store_relay_stop(app->relay);
    app->relay = NULL;
    if (rc)
        svc_log(SK_LOG_ERROR, "relay: the last checkpoint write failed", "error", sk_strerror(rc),
                SVC_END);
    free(props_text);
    props_text = NULL;
}

json_t *svc_relay_status_json(store_relay *relay)
{
    if (!relay)
        return NULL;
    store_relay_stats st;
    store_relay_get_stats(relay, &st);
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:s?}", "state",
                     store_relay_state_name(st.state), "topic", st.topic, "published_position",
                     (json_int_t)st.published_position, "durable_head", (json_int_t)st.durable_head,
                     "lag_events", (json_int_t)st.lag_events, "lag_seconds", st.lag_seconds,
                     "in_flight", (json_int_t)st.in_flight, "errors", (json_int_t)st.errors,
                     "restarts", (json_int_t)st.restarts, "last_error",
                     st.last_error[0] ? st.last_error : NULL);
}

char *svc_metrics_relay(store_relay *relay, char *text)
{
    if (!relay || !text)
        return text;
    store_relay_stats st;
    store_relay_get_stats(relay, &st);
    size_t len = strlen(text), cap = len + 4096;
    char *out = realloc(text, cap);
    if (!out)
        return text;
    len += (size_t)snprintf(
        out + len, cap - len,
        "# HELP skald_relay_published_position Every event below it is acknowledged by Kafka.\n"
        "# TYPE skald_relay_published_position gauge\n"
        "skald_relay_published_position{topic=\"%s\"} %" PRIu64 "\n"
        "# HELP skald_relay_checkpoint_position What the relay's checkpoint file says.\n"
        "# TYPE skald_relay_checkpoint_position gauge\n"
        "skald_relay_checkpoint_position{topic=\"%s\"} %" PRIu64 "\n"
        "# HELP skald_relay_lag_events Durable events Kafka has not acknowledged yet.\n"
        "# TYPE skald_relay_lag_events gauge\n"
        "skald_relay_lag_events{topic=\"%s\"} %" PRIu64 "\n"
        "# HELP skald_relay_lag_seconds Age of the oldest event in flight to Kafka.\n"
        "# TYPE skald_relay_lag_seconds gauge\n"
        "skald_relay_lag_seconds{topic=\"%s\"} %.6f\n"
        "# HELP skald_relay_in_flight Events handed to the producer, not acknowledged.\n"
        "# TYPE skald_relay_in_flight gauge\n"
        "skald_relay_in_flight{topic=\"%s\"} %" PRIu64 "\n"
        "# HELP skald_relay_published_events_total Events Kafka acknowledged since start.\n"
        "# TYPE skald_relay_published_events_total counter\n"
        "skald_relay_published_events_total{topic=\"%s\"} %" PRIu64 "\n"
        "# HELP skald_relay_errors_total Delivery and broker errors since start.\n"
        "# TYPE skald_relay_errors_total counter\n"
        "skald_relay_errors_total{topic=\"%s\"} %" PRIu64 "\n"
        "# HELP skald_relay_restarts_total Producers recreated after a fatal error.\n"
        "# TYPE skald_relay_restarts_total counter\n"
        "skald_relay_restarts_total{topic=\"%s\"} %" PRIu64 "\n"
        "# HELP skald_relay_up 1 while the relay publishes or is caught up.\n"
        "# TYPE skald_relay_up gauge\n"
        "skald_relay_up{topic=\"%s\",state=\"%s\"} %d\n"
        "# HELP skald_relay_delivery_seconds From produce to Kafka's acknowledgement.\n"
        "# TYPE skald_relay_delivery_seconds histogram\n",
        st.topic, st.published_position, st.topic, st.checkpoint_position, st.topic, st.lag_events,
        st.topic, st.lag_seconds, st.topic, st.in_flight, st.topic, st.published_events, st.topic,
        st.errors, st.topic, st.restarts, st.topic, store_relay_state_name(st.state),
        st.state == STORE_RELAY_RUNNING);
    uint64_t cum = 0;
    for (size_t i = 0; i < STORE_RELAY_LATENCY_BUCKETS && len < cap; i++) {
        cum += st.latency_buckets[i];
        len += (size_t)snprintf(out + len, cap - len,
                                "skald_relay_delivery_seconds_bucket{topic=\"%s\",le=\"%g\"} "
                                "%" PRIu64 "\n",
                                st.topic, store_relay_latency_bounds[i], cum);
    }
    if (len < cap)
        snprintf(out + len, cap - len,
                 "skald_relay_delivery_seconds_bucket{topic=\"%s\",le=\"+Inf\"} %" PRIu64 "\n"
                 "skald_relay_delivery_seconds_sum{topic=\"%s\"} %.6f\n"
                 "skald_relay_delivery_seconds_count{topic=\"%s\"} %" PRIu64 "\n",
                 st.topic, st.latency_count, st.topic, st.latency_sum_s, st.topic,
                 st.latency_count);
    return out;
}
