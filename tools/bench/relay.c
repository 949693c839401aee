/*
 * relay.c -- `skald-bench relay`: the Kafka relay publishing a log of --events events
 * (over --streams streams) to a real broker, against librdkafka producing the same keys,
 * values and headers with the same producer settings, in the same run.
 *
 * The broker is the one given with --brokers, else one this benchmark starts with
 * tools/kafka in its work directory and stops at the end. The relay's figure runs from
 * the moment its topic is ready (state running) until Kafka acknowledged the last
 * event; the baseline's from its first produce to the end of its flush. The baseline
 * reads the same log with a plain reader and builds each message as the relay does, so
 * the difference is what the relay adds: the subscription, the in-order acknowledgement
 * ring, the checkpoint file.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <string.h>
#include <unistd.h>

#define RAW_IN_FLIGHT 65536

static ev_str stream_of(void *ctx, uint64_t index)
{
    const bench_stream_names *sn = ctx;
    return bench_stream_name(sn, index % sn->count);
}

/* Runs tools/kafka start|stop for the broker directory dir; on start, the bootstrap
 * address goes to out. */
static int kafka_tool(const char *verb, const char *dir, char *out, size_t size)
{
    char cmd[BENCH_PATH_MAX * 2];
    snprintf(cmd, sizeof cmd, "SKALD_KAFKA_DIR='%s' '%s/tools/kafka' %s", dir, SKALD_SOURCE_DIR,
             verb);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -errno;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        if (out && strncmp(line, "KAFKA_BOOTSTRAP=", 16) == 0) {
            size_t n = strcspn(line + 16, "\n");
            n = n < size - 1 ? n : size - 1;
            memcpy(out, line + 16, n);
            out[n] = '\0';
            found = 1;
        }
    }
    int st = pclose(p);
    if (st != 0 || (out && !found)) {
        fprintf(stderr, "skald-bench relay: tools/kafka %s failed\n", verb);
        return -EIO;
    }
    return 0;
}

static _Atomic uint64_t raw_acked, raw_failed;

static void raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        atomic_fetch_add(&raw_failed, 1);
    else
        atomic_fetch_add(&raw_acked, 1);
}

/* The relay's producer settings (store/relay.c), so the baseline is produced alike. */
static rd_kafka_t *raw_producer(const char *brokers)
{
    static const char *const conf_kv[][2] = {
        {"enable.idempotence", "true"},    {"acks", "all"},
        {"message.timeout.ms", "0"},       {"queue.buffering.max.messages", "65536"},
        {"partitioner", "murmur2_random"}, {"linger.ms", "5"},
        {"batch.num.messages", "10000"},   {"queue.buffering.max.kbytes", "1048576"},
        {"client.id", "skald-bench-raw"},
    };
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr))
        goto fail;
    for (size_t i = 0; i < sizeof conf_kv / sizeof conf_kv[0]; i++)
        if (rd_kafka_conf_set(conf, conf_kv[i][0], conf_kv[i][1], errstr, sizeof errstr))
            goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, raw_dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk)
        return rk;
fail:
    fprintf(stderr, "skald-bench relay: producer: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static int create_topic(rd_kafka_t *rk, const char *topic)
{
    char errstr[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 6, 1, errstr, sizeof errstr);
    rd_kafka_NewTopic_set_config(nt, "retention.ms", "-1");
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -ETIMEDOUT;
    if (ev) {
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (!e && n == 1)
            e = rd_kafka_topic_result_error(tr[0]);
        rc = e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS ? -EIO : 0;
        if (rc)
            fprintf(stderr, "skald-bench relay: topic %s: %s\n", topic, rd_kafka_err2str(e));
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* One event as the relay sends it (store/relay.c, produce). 0, 1 on a full queue. */
static int raw_produce(rd_kafka_t *rk, const char *topic, const ev_event *ev, ev_buf *value)
{
    uint8_t prefix[5] = {0, (uint8_t)(ev->schema_id >> 24), (uint8_t)(ev->schema_id >> 16),
                         (uint8_t)(ev->schema_id >> 8), (uint8_t)ev->schema_id};
    value->size = 0;
    if (ev_buf_append(value, prefix, 5) || ev_buf_append(value, ev->payload, ev->payload_size))
        return -ENOMEM;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8 + ev->metadata_count);
    char id[EV_UUID_TEXT_SIZE], pos[24], ver[24], at[24];
    ev_uuid_format(&ev->event_id, id);
    snprintf(pos, sizeof pos, "%" PRIu64, ev->position);
    snprintf(ver, sizeof ver, "%" PRIu64, ev->version);
    snprintf(at, sizeof at, "%" PRId64, ev->occurred_at);
    rd_kafka_header_add(h, "event_id", -1, id, -1);
    rd_kafka_header_add(h, "position", -1, pos, -1);
    rd_kafka_header_add(h, "stream_id", -1, ev->stream_id.ptr, ev->stream_id.len);
    rd_kafka_header_add(h, "version", -1, ver, -1);
    rd_kafka_header_add(h, "type", -1, ev->type.ptr, ev->type.len);
    rd_kafka_header_add(h, "occurred_at", -1, at, -1);
    rd_kafka_header_add(h, "command_id", -1, "", 0);
    rd_kafka_header_add(h, "correlation_id", -1, "", 0);
    rd_kafka_vu_t vu[5];
    memset(vu, 0, sizeof vu);
    vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vu[0].u.cstr = topic;
    vu[1].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[1].u.i = RD_KAFKA_MSG_F_COPY;
    vu[2].vtype = RD_KAFKA_VTYPE_KEY;
    memcpy(&vu[2].u.mem.ptr, &ev->stream_id.ptr, sizeof vu[2].u.mem.ptr); /* F_COPY: not written */
    vu[2].u.mem.size = ev->stream_id.len;
    vu[3].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[3].u.mem.ptr = value->data;
    vu[3].u.mem.size = value->size;
    vu[4].vtype = RD_KAFKA_VTYPE_HEADERS;
    vu[4].u.headers = h;
    rd_kafka_error_t *e = rd_kafka_produceva(rk, vu, 5);
    if (!e)
        return 0;
    int full = rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__QUEUE_FULL;
    rd_kafka_error_destroy(e);
    rd_kafka_headers_destroy(h);
    return full ? 1 : -EIO;
}

/* The baseline: seconds to produce every event of the log and have it acknowledged. */
static int run_raw(const char *brokers, store_log *log, uint64_t events, double *secs_out)
{
    rd_kafka_t *rk = raw_producer(brokers);
    if (!rk)
        return -EINVAL;
    const char *topic = "bench-raw.events";
    int rc = create_topic(rk, topic);
    store_reader *rd = NULL;
    if (rc == 0)
        rc = store_reader_open(log, 0, &rd);
    ev_buf value = {0};
    uint64_t t0 = bench_now_ns(), produced = 0;
    while (rc == 0 && produced < events) {
        ev_event ev;
        sk_error err = {0};
        int got = store_reader_next(rd, &ev, &err);
        if (got <= 0) {
            rc = got < 0 ? got : -EIO;
            break;
        }
        while ((rc = raw_produce(rk, topic, &ev, &value)) == 1)
            rd_kafka_poll(rk, 10);
        produced++;
        rd_kafka_poll(rk, 0);
    }
    while (rc == 0 && atomic_load(&raw_acked) + atomic_load(&raw_failed) < produced)
        rd_kafka_poll(rk, 100);
    *secs_out = bench_seconds(bench_now_ns() - t0);
    if (rc == 0 && atomic_load(&raw_failed))
        rc = -EIO;
    store_reader_close(rd);
    ev_buf_free(&value);
    rd_kafka_destroy(rk);
    return rc;
}

/* The relay: seconds from its topic being ready to the last acknowledgement. */
static int run_relay(const char *brokers, store_log *log, const char *data, uint64_t events,
                     double *secs_out, uint64_t *errors_out)
{
    store_relay_config cfg;
    store_relay_config_init(&cfg);
    cfg.log = log;
    cfg.data_dir = data;
    cfg.brokers = brokers;
    cfg.topic_prefix = "bench-relay";
    store_relay *relay = NULL;
    sk_error err = {0};
    int rc = store_relay_start(&cfg, &relay, &err);
    if (rc) {
        fprintf(stderr, "skald-bench relay: %s\n", err.message);
        return rc;
    }
    store_relay_stats st;
    uint64_t t0 = 0, deadline = bench_now_ns() + 600ull * 1000000000u;
    for (;;) {
        store_relay_get_stats(relay, &st);
        if (!t0 && st.state == STORE_RELAY_RUNNING)
            t0 = bench_now_ns();
        if (st.published_position >= events || bench_now_ns() > deadline)
            break;
        usleep(2000);
    }
    *secs_out = bench_seconds(bench_now_ns() - (t0 ? t0 : deadline));
    *errors_out = st.errors;
    if (st.published_position < events) {
        fprintf(stderr, "skald-bench relay: only %" PRIu64 " of %" PRIu64 " published in 600 s\n",
                st.published_position, events);
        rc = -ETIMEDOUT;
    }
    int src = store_relay_stop(relay);
    return rc ? rc : src;
}

int bench_relay(const bench_opts *opts)
{
    char work[BENCH_PATH_MAX], logdir[BENCH_PATH_MAX], kdir[BENCH_PATH_MAX], brokers[256];
    int rc = bench_workdir_create(opts->dir, work, sizeof work);
    if (rc)
        return rc;
    bench_path_join(logdir, sizeof logdir, work, "log");
    bench_path_join(kdir, sizeof kdir, work, "kafka");
    bench_print_where("log", work);
    int own_broker = !opts->brokers;
    if (own_broker) {
        fprintf(stderr, "starting a broker with tools/kafka in %s\n", kdir);
        rc = kafka_tool("start", kdir, brokers, sizeof brokers);
    } else {
        snprintf(brokers, sizeof brokers, "%s", opts->brokers);
    }
    store_log *log = NULL;
    bench_stream_names sn = {0};
    if (rc == 0)
        rc = bench_stream_names_init(&sn, opts->streams);
    if (rc == 0)
        rc = bench_log_open(logdir, STORE_FSYNC_NEVER, 0, &log);
    if (rc == 0) {
        printf("filling the log: %" PRIu64 " events, %u streams, %u-byte payloads\n", opts->events,
               opts->streams, opts->payload_bytes);
        rc = bench_fill(log, opts->events, opts->payload_bytes, opts->window, stream_of, &sn);
    }
    double relay_s = 0, raw_s = 0;
    uint64_t errors = 0;
    if (rc == 0)
        rc = run_relay(brokers, log, work, opts->events, &relay_s, &errors);
    if (rc == 0)
        rc = run_raw(brokers, log, opts->events, &raw_s);
    store_log_close(log);
    bench_stream_names_free(&sn);
    if (own_broker)
        (void)kafka_tool("stop", kdir, NULL, 0);
    if (rc == 0) {
        double eps = (double)opts->events / relay_s, raw = (double)opts->events / raw_s;
        printf("relay: %" PRIu64 " events in %.2f s (%.0f events/s, %" PRIu64 " errors)\n",
               opts->events, relay_s, eps, errors);
        printf("raw librdkafka, same messages and settings: %.2f s (%.0f events/s)\n", raw_s, raw);
        printf("BENCH relay events=%" PRIu64 " events_per_s=%.0f raw_events_per_s=%.0f "
               "ratio=%.2f\n",
               opts->events, eps, raw, eps / raw);
    }
    if (!opts->keep)
        bench_workdir_remove(work);
    return rc;
}
