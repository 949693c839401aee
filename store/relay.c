/*
 * relay.c -- publishes the log to Kafka: one thread, one subscription, one producer.
 *
 * Why it is built as its own library (skald_relay) inside store/: the design puts the
 * relay in store/, beside the subscription it is a consumer of, but librdkafka is a
 * heavy dependency that the log, skaldctl's offline tools and the tests of store/ do not
 * need. Only the programs that publish (skald, skald-bench) link skald_relay.
 *
 * What goes to Kafka (docs/kafka.md): topic "<prefix>.events", key = stream_id, value =
 * Confluent wire format (0x00, the schema id as 4 bytes big-endian, the Avro binary),
 * headers = every envelope field as UTF-8 text. Partitioner murmur2_random, the Java
 * client's, so a key lands on the same partition whichever client produced it.
 *
 * Invariants
 *  1. published (the checkpoint in memory) <= produced; every position below published
 *     was acknowledged by Kafka; positions in [published, produced) are in the ring.
 *  2. produced - published <= ring size (in_flight_max rounded up to a power of two):
 *     the relay stops reading the log when the ring is full, so a broker outage holds
 *     at most that many events in memory, in the ring and in librdkafka's queue.
 *  3. The checkpoint file never runs ahead of published.
 *  4. The producer is idempotent with acks=all and no message timeout: librdkafka retries
 *     a message until the broker takes it, in order, without duplicates. Only a fatal
 *     producer error (or a message the broker refuses for good) loses that guarantee;
 *     then the producer is destroyed and a new one starts again from published, which
 *     may publish some events twice (never zero times), and the headers let a consumer
 *     drop the second copy.
 *
 * States: STARTING -> RUNNING <-> BROKER_DOWN; any -> RESTARTING -> STARTING on a fatal
 * error; any -> STOPPED at store_relay_stop.
 *
 * Threads: everything but the stats is owned by the relay thread. Delivery reports and
 * error callbacks run on it too (inside rd_kafka_poll). The stats are atomics, and the
 * last error a string under stats_mu.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

const double store_relay_latency_bounds[STORE_RELAY_LATENCY_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

#define BACKOFF_MIN_MS      100
#define BACKOFF_MAX_MS      5000
#define STOP_FLUSH_MS       10000
#define TOPIC_OP_TIMEOUT_MS 5000

typedef struct slot {
    uint64_t position;              /* the event it holds; its delivery report points here */
    _Atomic int64_t occurred_at_us; /* also read by store_relay_get_stats */
    uint64_t produced_ns;
    uint8_t acked;
    tr_span *span; /* relay.publish (tracing.c), ended by the delivery report; relay thread */
} slot;

struct store_relay {
    store_log *log;
    char data_dir[4096];
    char topic[STORE_RELAY_TOPIC_MAX + 1];
    uint32_t partitions, replication, checkpoint_interval_ms;
    rd_kafka_conf_t *conf_template; /* duplicated for each producer */
    int lock_fd;
    int ctl_fd;     /* eventfd: stop */
    int rk_pipe[2]; /* librdkafka writes [1] when its main queue gets events */
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;

    /* relay thread only */
    rd_kafka_t *rk;
    rd_kafka_queue_t *rk_main;
    store_sub *sub;
    bool sub_caught_up;
    bool topic_ready;
    bool restart_needed;
    slot *ring;
    uint64_t ring_mask;
    uint64_t ckpt_written;
    uint64_t ckpt_written_ms;
    uint32_t backoff_ms;
    ev_buf value;
    int final_rc;

    /* stats: written by the relay thread, read by any */
    atomic_int state;
    atomic_uint_fast64_t published, produced, ckpt_file, published_events, errors, restarts;
    atomic_uint_fast64_t lat_buckets[STORE_RELAY_LATENCY_BUCKETS + 1], lat_count, lat_sum_ns;
    pthread_mutex_t stats_mu;
    char last_error[256]; /* guarded by stats_mu */
};

static const char *const state_names[] = {"starting", "running", "broker_down", "restarting",
                                          "stopped"};

const char *store_relay_state_name(store_relay_state state)
{
    return (unsigned)state < sizeof state_names / sizeof state_names[0] ? state_names[state]
                                                                        : "unknown";
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void)
{
    return now_ns() / 1000000u;
}

static void set_state(store_relay *r, store_relay_state s)
{
    int old = atomic_exchange(&r->state, (int)s);
    if (old != (int)s && old != STORE_RELAY_STOPPED)
        sk_log(s == STORE_RELAY_RUNNING || s == STORE_RELAY_STOPPED ? SK_LOG_NOTICE : SK_LOG_WARN,
               "relay", "relay state", "from", store_relay_state_name((store_relay_state)old), "to",
               store_relay_state_name(s), "topic", r->topic, SK_LOG_END);
}

/* Counts an error and keeps its text for the stats; logs it at most once a second. */
static void note_error(store_relay *r, const char *what, const char *detail)
{
    static _Thread_local uint64_t last_log_ms;
    atomic_fetch_add(&r->errors, 1);
    pthread_mutex_lock(&r->stats_mu);
    snprintf(r->last_error, sizeof r->last_error, "%s: %s", what, detail);
    pthread_mutex_unlock(&r->stats_mu);
    uint64_t t = now_ms();
    if (t - last_log_ms >= 1000) {
        last_log_ms = t;
        sk_log(SK_LOG_WARN, "relay", what, "error", detail, "topic", r->topic, SK_LOG_END);
    }
}

/* ---------------------------------------------------------------------------------------
 * librdkafka callbacks: they run inside rd_kafka_poll, on the relay thread.
 */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    store_relay *r = opaque;
    slot *s = m->_private; /* not reused before this report: invariant 1 */
    uint64_t position = s->position;
    uint64_t published = atomic_load(&r->published);
    if (position < published || position >= atomic_load(&r->produced))
        return; /* a report for a producer we already gave up on */
    store_trace_publish_end(&s->span, m->err ? rd_kafka_err2str(m->err) : NULL, m->partition,
                            m->offset);
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
            m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
            note_error(r, "delivery failed", rd_kafka_err2str(m->err));
            r->restart_needed = true;
        }
        return;
    }
    s->acked = 1;
    double secs = (double)(now_ns() - s->produced_ns) / 1e9;
    size_t b = 0;
    while (b < STORE_RELAY_LATENCY_BUCKETS && secs > store_relay_latency_bounds[b])
        b++;
    atomic_fetch_add_explicit(&r->lat_buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->lat_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->lat_sum_ns, now_ns() - s->produced_ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->published_events, 1, memory_order_relaxed);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    store_relay *r = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char text[512];
        rd_kafka_fatal_error(rk, text, sizeof text);
        note_error(r, "fatal producer error", text);
        r->restart_needed = true;
        return;
    }
    note_error(r, "kafka", reason);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT)
        set_state(r, STORE_RELAY_BROKER_DOWN);
}

/* librdkafka's own log lines go through Skald's logger (they never hold settings'
 * values: librdkafka redacts sasl.password and ssl key passwords itself). */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    sk_log(level <= 3   ? SK_LOG_ERROR
           : level <= 4 ? SK_LOG_WARN
                        : SK_LOG_DEBUG,
           "relay", "librdkafka", "facility", fac, "detail", buf, SK_LOG_END);
}

/* ---------------------------------------------------------------------------------------
 * The producer and the topic.
 */
static int producer_create(store_relay *r, char *errstr, size_t size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(r->conf_template);
    rd_kafka_conf_set_opaque(conf, r);
    r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, size);
    if (!r->rk) {
        rd_kafka_conf_destroy(conf);
        return SK_EBADINPUT;
    }
    r->rk_main = rd_kafka_queue_get_main(r->rk);
    rd_kafka_queue_io_event_enable(r->rk_main, r->rk_pipe[1], "1", 1);
    r->topic_ready = false;
    return 0;
}

/* Purges what is queued, collects the reports, destroys the producer. */
static void producer_destroy(store_relay *r)
{
    if (!r->rk)
        return;
    rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(r->rk, 0);
    rd_kafka_queue_io_event_enable(r->rk_main, -1, NULL, 0);
    rd_kafka_queue_destroy(r->rk_main);
    rd_kafka_destroy(r->rk);
    r->rk = NULL;
    r->rk_main = NULL;
}

/* Creates the topic unless it exists. 0, or an error after which the caller backs off. */
static int topic_ensure(store_relay *r)
{
    char errstr[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(r->topic, (int)r->partitions,
                                                    (int)r->replication, errstr, sizeof errstr);
    if (!nt) {
        note_error(r, "topic", errstr);
        return SK_EBADINPUT;
    }
    /* the topic is a second copy of the log, not a cache: keep everything */
    rd_kafka_NewTopic_set_config(nt, "retention.ms", "-1");
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(r->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opt, TOPIC_OP_TIMEOUT_MS, errstr, sizeof errstr);
    rd_kafka_AdminOptions_set_operation_timeout(opt, TOPIC_OP_TIMEOUT_MS, errstr, sizeof errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(r->rk);
    rd_kafka_CreateTopics(r->rk, &nt, 1, opt, q);
    rd_kafka_event_t *ev = NULL;
    uint64_t deadline = now_ms() + TOPIC_OP_TIMEOUT_MS + 2000;
    while (!ev && now_ms() < deadline && !atomic_load(&r->stopping)) {
        ev = rd_kafka_queue_poll(q, 200);
        rd_kafka_poll(r->rk, 0); /* errors, logs */
    }
    int rc = -ETIMEDOUT;
    if (ev) {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (!e && n == 1)
            e = rd_kafka_topic_result_error(tr[0]);
        if (!e || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            if (!e)
                sk_log(SK_LOG_NOTICE, "relay", "topic created", "topic", r->topic, SK_LOG_END);
            rc = 0;
        } else {
            note_error(r, "topic", rd_kafka_err2str(e));
            rc = -EIO;
        }
        rd_kafka_event_destroy(ev);
    } else if (!atomic_load(&r->stopping)) {
        note_error(r, "topic", "no answer from the brokers to CreateTopics");
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Publishing.
 */
static int add_header(rd_kafka_headers_t *h, const char *name, const char *value, ssize_t size)
{
    return rd_kafka_header_add(h, name, -1, value, size) ? -1 : 0;
}

/* Hands one event to the producer. 0; 1 if librdkafka's queue is full (try later); or a
 * negative code after which the producer is restarted. */
static int produce(store_relay *r, const ev_event *ev)
{
    uint8_t prefix[5] = {0, (uint8_t)(ev->schema_id >> 24), (uint8_t)(ev->schema_id >> 16),
                         (uint8_t)(ev->schema_id >> 8), (uint8_t)ev->schema_id};
    r->value.size = 0;
    if (ev_buf_append(&r->value, prefix, 5) ||
        ev_buf_append(&r->value, ev->payload, ev->payload_size))
        return -ENOMEM;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8 + ev->metadata_count);
    char id[EV_UUID_TEXT_SIZE], cmd[EV_UUID_TEXT_SIZE], corr[EV_UUID_TEXT_SIZE], pos[24], ver[24],
        at[24];
    ev_uuid_format(&ev->event_id, id);
    ev_uuid_format(&ev->command_id, cmd);
    ev_uuid_format(&ev->correlation_id, corr);
    snprintf(pos, sizeof pos, "%" PRIu64, ev->position);
    snprintf(ver, sizeof ver, "%" PRIu64, ev->version);
    snprintf(at, sizeof at, "%" PRId64, ev->occurred_at);
    /* a nil id (no command, no process) travels as an empty value */
    int bad = add_header(h, "event_id", id, -1) | add_header(h, "position", pos, -1) |
              add_header(h, "stream_id", ev->stream_id.ptr, ev->stream_id.len) |
              add_header(h, "version", ver, -1) |
              add_header(h, "type", ev->type.ptr, ev->type.len) |
              add_header(h, "occurred_at", at, -1) |
              add_header(h, "command_id", ev_uuid_is_nil(&ev->command_id) ? "" : cmd, -1) |
              add_header(h, "correlation_id", ev_uuid_is_nil(&ev->correlation_id) ? "" : corr, -1);
    for (uint32_t i = 0; i < ev->metadata_count && !bad; i++) {
        char name[5 + EV_METADATA_KEY_MAX + 1];
        snprintf(name, sizeof name, "meta.%.*s", (int)ev->metadata[i].key.len,
                 ev->metadata[i].key.ptr);
        bad = add_header(h, name, ev->metadata[i].value.ptr, ev->metadata[i].value.len);
    }
    if (bad) {
        rd_kafka_headers_destroy(h);
        return -ENOMEM;
    }
    slot *s = &r->ring[ev->position & r->ring_mask];
    atomic_store_explicit(&s->occurred_at_us, ev->occurred_at, memory_order_relaxed);
    s->position = ev->position;
    s->produced_ns = now_ns();
    s->acked = 0;
    store_trace_publish_end(&s->span, "abandoned: the producer was restarted", -1, -1);
    s->span = store_trace_publish_begin(ev, r->topic);
    /* produceva, not producev: the latter's type-checking macros are GNU C */
    rd_kafka_vu_t vu[6];
    memset(vu, 0, sizeof vu);
    vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vu[0].u.cstr = r->topic;
    vu[1].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[1].u.i = RD_KAFKA_MSG_F_COPY;
    vu[2].vtype = RD_KAFKA_VTYPE_KEY;
    memcpy(&vu[2].u.mem.ptr, &ev->stream_id.ptr, sizeof vu[2].u.mem.ptr); /* F_COPY: not written */
    vu[2].u.mem.size = ev->stream_id.len;
    vu[3].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[3].u.mem.ptr = r->value.data;
    vu[3].u.mem.size = r->value.size;
    vu[4].vtype = RD_KAFKA_VTYPE_HEADERS;
    vu[4].u.headers = h;
    vu[5].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[5].u.ptr = s;
    rd_kafka_error_t *e = rd_kafka_produceva(r->rk, vu, 6);
    if (e) {
        rd_kafka_resp_err_t code = rd_kafka_error_code(e);
        rd_kafka_error_destroy(e);
        rd_kafka_headers_destroy(h); /* not taken on failure */
        if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return 1;
        note_error(r, "produce", rd_kafka_err2str(code));
        return -EIO;
    }
    return 0;
}

/* Moves published past every acknowledged event at its front (invariant 1). */
static void advance(store_relay *r)
{
    uint64_t p = atomic_load(&r->published), end = atomic_load(&r->produced);
    while (p < end && r->ring[p & r->ring_mask].acked)
        p++;
    if (p != atomic_load(&r->published)) {
        atomic_store(&r->published, p);
        if (atomic_load(&r->state) == STORE_RELAY_BROKER_DOWN ||
            atomic_load(&r->state) == STORE_RELAY_STARTING)
            set_state(r, STORE_RELAY_RUNNING);
    }
}

static void checkpoint_maybe(store_relay *r, bool force)
{
    uint64_t p = atomic_load(&r->published);
    if (p == r->ckpt_written)
        return;
    uint64_t t = now_ms();
    if (!force && t - r->ckpt_written_ms < r->checkpoint_interval_ms)
        return;
    int rc = store_relay_checkpoint_write(r->data_dir, p, r->topic);
    r->ckpt_written_ms = t;
    if (rc) {
        note_error(r, "checkpoint write failed", sk_strerror(rc));
        r->final_rc = rc;
        return;
    }
    r->final_rc = 0;
    r->ckpt_written = p;
    atomic_store(&r->ckpt_file, p);
}

/* Reads the log into the producer while there is room. */
static void fill(store_relay *r)
{
    while (!r->restart_needed && !atomic_load(&r->stopping) &&
           atomic_load(&r->produced) - atomic_load(&r->published) <= r->ring_mask) {
        ev_event ev;
        sk_error err = {0};
        int rc = store_sub_next(r->sub, &ev, &err);
        if (rc == 0) {
            r->sub_caught_up = true;
            return;
        }
        if (rc < 0) {
            if (rc != SK_ECANCELED) {
                note_error(r, "reading the log", err.message[0] ? err.message : sk_strerror(rc));
                r->restart_needed = true;
            }
            return;
        }
        SK_ASSERT(ev.position == atomic_load(&r->produced));
        rc = produce(r, &ev);
        if (rc == 1) {
            /* librdkafka's queue is full: this one event is read again after a reopen */
            r->restart_needed = true;
            return;
        }
        if (rc < 0) {
            r->restart_needed = true;
            return;
        }
        atomic_store(&r->produced, ev.position + 1);
    }
    r->sub_caught_up = false;
}

/* Waits for the log, the producer's queue or the stop signal, at most timeout_ms. */
static void wait_events(store_relay *r, int timeout_ms)
{
    struct pollfd fds[3] = {
        {.fd = r->ctl_fd, .events = POLLIN},
        {.fd = r->rk_pipe[0], .events = POLLIN},
        {.fd = r->sub && r->sub_caught_up ? store_sub_fd(r->sub) : -1, .events = POLLIN},
    };
    while (poll(fds, 3, timeout_ms) < 0 && errno == EINTR) {
    }
    char buf[256];
    while (read(r->rk_pipe[0], buf, sizeof buf) > 0) {
    }
}

/* Sleeps for the backoff (woken early by stop), then doubles it. */
static void backoff(store_relay *r)
{
    struct pollfd p = {.fd = r->ctl_fd, .events = POLLIN};
    while (poll(&p, 1, (int)r->backoff_ms) < 0 && errno == EINTR) {
    }
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* After a fatal error: a new producer, from the checkpoint in memory (invariant 4). */
static void restart(store_relay *r)
{
    set_state(r, STORE_RELAY_RESTARTING);
    atomic_fetch_add(&r->restarts, 1);
    producer_destroy(r);
    store_sub_close(r->sub);
    r->sub = NULL;
    atomic_store(&r->produced, atomic_load(&r->published));
    r->restart_needed = false;
    sk_log(SK_LOG_NOTICE, "relay", "producer restarts from the checkpoint", "topic", r->topic,
           SK_LOG_END);
    backoff(r);
}

static void *relay_main(void *arg)
{
    store_relay *r = arg;
    char errstr[512];
    while (!atomic_load(&r->stopping)) {
        if (!r->rk) {
            set_state(r, STORE_RELAY_STARTING);
            if (producer_create(r, errstr, sizeof errstr) != 0) {
                note_error(r, "cannot create the producer", errstr);
                backoff(r);
                continue;
            }
        }
        if (!r->topic_ready) {
            if (topic_ensure(r) != 0) {
                set_state(r, STORE_RELAY_BROKER_DOWN);
                backoff(r);
                continue;
            }
            r->topic_ready = true;
            set_state(r, STORE_RELAY_RUNNING);
            r->backoff_ms = BACKOFF_MIN_MS;
        }
        if (!r->sub) {
            int rc = store_sub_open(r->log, atomic_load(&r->published), &r->sub);
            if (rc) {
                note_error(r, "cannot open a subscription", sk_strerror(rc));
                backoff(r);
                continue;
            }
        }
        fill(r);
        rd_kafka_poll(r->rk, 0);
        advance(r);
        checkpoint_maybe(r, false);
        if (r->restart_needed) {
            restart(r);
            continue;
        }
        int timeout = -1;
        if (atomic_load(&r->published) != r->ckpt_written)
            timeout = (int)r->checkpoint_interval_ms;
        else if (atomic_load(&r->state) == STORE_RELAY_BROKER_DOWN)
            timeout = 1000;
        wait_events(r, timeout);
        rd_kafka_poll(r->rk, 0);
        advance(r);
    }
    /* stop: give Kafka a bounded time for what is in flight, then checkpoint */
    if (r->rk) {
        uint64_t deadline = now_ms() + STOP_FLUSH_MS;
        while (atomic_load(&r->published) < atomic_load(&r->produced) && now_ms() < deadline &&
               !r->restart_needed) {
            rd_kafka_poll(r->rk, 100);
            advance(r);
        }
    }
    checkpoint_maybe(r, true);
    producer_destroy(r);
    store_sub_close(r->sub);
    r->sub = NULL;
    set_state(r, STORE_RELAY_STOPPED);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Start, stop, stats.
 */
void store_relay_config_init(store_relay_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->topic_prefix = "skald";
    cfg->partitions = 6;
    cfg->replication = 1;
    cfg->checkpoint_interval_ms = 200;
    cfg->in_flight_max = 65536;
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, sk_error *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        return sk_error_set(err, SK_EBADINPUT, name, "librdkafka refuses the setting %s: %s", name,
                            errstr);
    return 0;
}

static int build_conf(store_relay *r, const store_relay_config *cfg, uint64_t ring, sk_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char n[32];
    int rc = 0;
    /* the user's settings first, so that the guarantees below cannot be turned off */
    for (uint32_t i = 0; i < cfg->prop_count && !rc; i++)
        rc = conf_set(conf, cfg->prop_names[i], cfg->prop_values[i], err);
    snprintf(n, sizeof n, "%" PRIu64, ring);
    if (!rc)
        rc = conf_set(conf, "bootstrap.servers", cfg->brokers, err) ||
                     conf_set(conf, "enable.idempotence", "true", err) ||
                     conf_set(conf, "acks", "all", err) ||
                     conf_set(conf, "message.timeout.ms", "0",
                              err) || /* retry until the broker takes it */
                     conf_set(conf, "queue.buffering.max.messages", n, err) ||
                     conf_set(conf, "partitioner", "murmur2_random", err)
                 ? SK_EBADINPUT
                 : 0;
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    /* defaults the user may change in the config file */
    const char *defaults[][2] = {{"linger.ms", "5"},
                                 {"batch.num.messages", "10000"},
                                 {"queue.buffering.max.kbytes", "1048576"},
                                 {"client.id", "skald-relay"}};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        bool given = false;
        for (uint32_t j = 0; j < cfg->prop_count; j++)
            given |= strcmp(cfg->prop_names[j], defaults[i][0]) == 0;
        if (!given && (rc = conf_set(conf, defaults[i][0], defaults[i][1], err)) != 0) {
            rd_kafka_conf_destroy(conf);
            return rc;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    r->conf_template = conf;
    return 0;
}

static void relay_free(store_relay *r)
{
    if (r->conf_template)
        rd_kafka_conf_destroy(r->conf_template);
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* releases the lock */
    if (r->ctl_fd >= 0)
        close(r->ctl_fd);
    for (int i = 0; i < 2; i++)
        if (r->rk_pipe[i] >= 0)
            close(r->rk_pipe[i]);
    ev_buf_free(&r->value);
    for (uint64_t i = 0; r->ring && i <= r->ring_mask; i++)
        store_trace_publish_end(&r->ring[i].span, "the relay stopped before the report", -1, -1);
    free(r->ring);
    pthread_mutex_destroy(&r->stats_mu);
    free(r);
}

int store_relay_start(const store_relay_config *cfg, store_relay **out, sk_error *err)
{
    SK_ASSERT(cfg->log && cfg->data_dir && cfg->brokers && cfg->topic_prefix);
    store_relay *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->lock_fd = r->ctl_fd = r->rk_pipe[0] = r->rk_pipe[1] = -1;
    pthread_mutex_init(&r->stats_mu, NULL);
    int rc = 0;
    r->log = cfg->log;
    snprintf(r->data_dir, sizeof r->data_dir, "%s", cfg->data_dir);
    if (strlen(cfg->topic_prefix) + 7 > STORE_RELAY_TOPIC_MAX || !cfg->topic_prefix[0]) {
        rc = sk_error_set(err, SK_EBADINPUT, "kafka-topic-prefix",
                          "the topic prefix must be 1..%d characters", STORE_RELAY_TOPIC_MAX - 7);
        goto fail;
    }
    snprintf(r->topic, sizeof r->topic, "%s.events", cfg->topic_prefix);
    r->partitions = cfg->partitions ? cfg->partitions : 6;
    r->replication = cfg->replication ? cfg->replication : 1;
    r->checkpoint_interval_ms = cfg->checkpoint_interval_ms;
    r->backoff_ms = BACKOFF_MIN_MS;
    uint64_t ring = 1024;
    while (ring < cfg->in_flight_max)
        ring <<= 1;
    r->ring_mask = ring - 1;
    r->ring = calloc(ring, sizeof *r->ring);
    if (!r->ring) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = build_conf(r, cfg, ring, err)) != 0)
        goto fail;

    char path[4200];
    snprintf(path, sizeof path, "%s/%s", r->data_dir, STORE_RELAY_LOCK_FILE);
    r->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (r->lock_fd < 0) {
        rc = sk_error_set(err, -errno, "", "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = sk_error_set(err, SK_EBUSY, "", "another relay publishes from %s (%s is locked)",
                          r->data_dir, path);
        goto fail;
    }
    uint64_t from = 0;
    char topic[STORE_RELAY_TOPIC_MAX + 1];
    rc = store_relay_checkpoint_read(r->data_dir, &from, topic, sizeof topic);
    if (rc == SK_ECORRUPT) {
        rc = sk_error_set(err, rc, "",
                          "%s/%s is damaged; remove it to publish the whole log "
                          "again (consumers drop the duplicates by event_id)",
                          r->data_dir, STORE_RELAY_CHECKPOINT_FILE);
        goto fail;
    }
    if (rc == 0 && strcmp(topic, r->topic) != 0) {
        sk_log(SK_LOG_NOTICE, "relay", "the topic changed: publishing the log from 0", "was", topic,
               "topic", r->topic, SK_LOG_END);
        from = 0;
    } else if (rc != 0 && rc != SK_ENOTFOUND) {
        rc = sk_error_set(err, rc, "", "cannot read %s/%s", r->data_dir,
                          STORE_RELAY_CHECKPOINT_FILE);
        goto fail;
    }
    atomic_store(&r->published, from);
    atomic_store(&r->produced, from);
    atomic_store(&r->ckpt_file, from);
    r->ckpt_written = from;

    r->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->ctl_fd < 0 || pipe2(r->rk_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        rc = sk_error_set(err, -errno, "", "no descriptors for the relay");
        goto fail;
    }
    /* a producer now, so that a setting librdkafka only checks at creation fails the start */
    char errstr[512];
    if (producer_create(r, errstr, sizeof errstr) != 0) {
        rc = sk_error_set(err, SK_EBADINPUT, "", "cannot create the Kafka producer: %s", errstr);
        goto fail;
    }
    atomic_store(&r->state, STORE_RELAY_STARTING);
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        producer_destroy(r);
        rc = sk_error_set(err, -EAGAIN, "", "cannot start the relay thread");
        goto fail;
    }
    r->thread_started = true;
    sk_log(SK_LOG_NOTICE, "relay", "relay started", "topic", r->topic, "brokers", cfg->brokers,
           SK_LOG_END);
    *out = r;
    return 0;
fail:
    relay_free(r);
    return rc;
}

int store_relay_stop(store_relay *r)
{
    if (!r)
        return 0;
    atomic_store(&r->stopping, true);
    uint64_t one = 1;
    if (write(r->ctl_fd, &one, sizeof one) < 0) {
        /* an eventfd write fails only at its maximum count: it is readable then anyway */
    }
    if (r->thread_started)
        pthread_join(r->thread, NULL);
    int rc = r->final_rc;
    sk_log(SK_LOG_NOTICE, "relay", "relay stopped", "topic", r->topic, SK_LOG_END);
    relay_free(r);
    return rc;
}

void store_relay_get_stats(store_relay *r, store_relay_stats *out)
{
    memset(out, 0, sizeof *out);
    out->state = (store_relay_state)atomic_load(&r->state);
    snprintf(out->topic, sizeof out->topic, "%s", r->topic);
    out->published_position = atomic_load(&r->published);
    out->checkpoint_position = atomic_load(&r->ckpt_file);
    out->produced_position = atomic_load(&r->produced);
    out->durable_head = store_log_durable_head(r->log);
    out->lag_events = out->durable_head > out->published_position
                          ? out->durable_head - out->published_position
                          : 0;
    out->in_flight = out->produced_position - out->published_position;
    if (out->in_flight > 0) {
        /* the oldest event Kafka has not acknowledged; its slot is not reused while it is
         * in flight, and a torn read of it only skews one scrape */
        int64_t at = atomic_load_explicit(
            &r->ring[out->published_position & r->ring_mask].occurred_at_us, memory_order_relaxed);
        int64_t age = ev_now_us() - at;
        out->lag_seconds = at > 0 && age > 0 ? (double)age / 1e6 : 0;
    }
    out->published_events = atomic_load(&r->published_events);
    out->errors = atomic_load(&r->errors);
    out->restarts = atomic_load(&r->restarts);
    for (size_t i = 0; i <= STORE_RELAY_LATENCY_BUCKETS; i++)
        out->latency_buckets[i] = atomic_load_explicit(&r->lat_buckets[i], memory_order_relaxed);
    out->latency_count = atomic_load(&r->lat_count);
    out->latency_sum_s = (double)atomic_load(&r->lat_sum_ns) / 1e9;
    pthread_mutex_lock(&r->stats_mu);
    snprintf(out->last_error, sizeof out->last_error, "%s", r->last_error);
    pthread_mutex_unlock(&r->stats_mu);
}
