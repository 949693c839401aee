/*
 * kafka_source.c -- the relay's topic read back in position order (store.h, "The Kafka
 * source"): what a read replica's projection workers and `skaldctl restore --from-kafka`
 * read instead of the log.
 *
 * Why a merge: the relay keys messages by stream, so one stream's events stay in order on
 * one partition, but the log's global order is spread over all of them. Positions are
 * dense (0, 1, 2, ...), so the order can be rebuilt exactly: keep the first unread
 * message of every partition in view and hand out the one whose position is the next;
 * if none has it, it has not arrived yet (wait) or, when the topic was read to its end,
 * it is missing (a gap: an error, never skipped).
 *
 * Invariants
 *  1. Every partition's messages arrive in offset order and, apart from a run the relay
 *     published again after a restart (which starts lower and is dropped message by
 *     message as it falls below next), in increasing position order. The idempotent
 *     producer gives this; the merge relies on it.
 *  2. A partition buffers at most buffer_max messages. When its buffer is full it is
 *     paused; a message that still arrives for it (fetched before the pause) is dropped
 *     and the partition is marked to fetch again from its first unbuffered offset when it
 *     is resumed, which happens once its buffer is half empty. So no message is lost and
 *     memory is bounded by partitions x buffer_max messages.
 *  3. consumed_next of a partition: every message before it was handed out or dropped.
 *     The checkpoint is consumed_next of every partition, except the partition of the
 *     last event handed out, which gets that event's offset: the checkpoint never runs
 *     past an event a caller may not have applied (a projection whose batch failed at
 *     that event), and the position drops the one message read again.
 *
 * Wake-ups: librdkafka writes to an eventfd when the consumer queue becomes non-empty;
 * store_ksrc_next empties the eventfd, then the whole queue, so no wake-up is lost.
 */
#include "store/kafka_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define QUERY_TIMEOUT_MS 10000
#define OFFSET_UNKNOWN   (-1000) /* the first offset of a partition read from its start */

typedef struct held {
    rd_kafka_message_t *m;
    uint64_t position;
} held;

typedef struct part {
    int32_t id;
    held *ring; /* buffer_max slots */
    uint32_t first, count;
    int64_t fetch_next;    /* the offset the next message should have; OFFSET_UNKNOWN */
    int64_t consumed_next; /* invariant 3; RD_KAFKA_OFFSET_BEGINNING if none yet */
    int64_t end;           /* until_end: the high watermark at open */
    bool paused, refetch;
} part;

struct store_ksrc {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    char topic[STORE_RELAY_TOPIC_MAX + 1];
    part *parts;
    uint32_t nparts, buffer_max;
    uint64_t next;
    int until_end, at_end;
    int efd;
    atomic_bool stopped;
    rd_kafka_message_t *cur; /* handed out; destroyed at the next call */
    int32_t last_part;       /* of the last event handed out; -1 if none */
    int64_t last_offset;
    _Atomic uint64_t seen_head;
};

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    sk_log(level <= 3   ? SK_LOG_ERROR
           : level <= 4 ? SK_LOG_WARN
                        : SK_LOG_DEBUG,
           "kafka-source", "librdkafka", "facility", fac, "detail", buf, SK_LOG_END);
}

void store_ksrc_config_init(store_ksrc_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->buffer_max = 4096;
    cfg->metadata_timeout_ms = 30000;
}

/* ---------------------------------------------------------------------------------------
 * Opening: the consumer, the partitions, where each starts.
 */
static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, sk_error *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        return sk_error_set(err, SK_EBADINPUT, name, "librdkafka refuses the setting %s: %s", name,
                            errstr);
    return 0;
}

static int consumer_create(store_ksrc *s, const store_ksrc_config *cfg, sk_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = 0;
    for (uint32_t i = 0; i < cfg->prop_count && !rc; i++)
        rc = conf_set(conf, cfg->prop_names[i], cfg->prop_values[i], err);
    /* Partitions are assigned by hand and offsets are the caller's: the group id is only
     * what librdkafka needs for a consumer queue; the source never joins the group (no
     * subscribe) nor commits to it. */
    const char *fixed[][2] = {
        {"group.id", "skald-kafka-source"}, {"bootstrap.servers", cfg->brokers},
        {"enable.auto.commit", "false"},    {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},  {"enable.partition.eof", "false"},
        {"client.id", "skald-kafka-source"}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && !rc; i++)
        rc = conf_set(conf, fixed[i][0], fixed[i][1], err);
    /* Defaults the settings may change. A paused partition joins the fetches again only
     * when the broker answers the one in flight, which waits up to fetch.wait.max.ms when
     * the other partitions are idle: librdkafka's 500 ms made each pause cost that much
     * (measured: tests/unit/store/test_kafka_source, 25 s at 500 ms, 5 s at 10 ms). */
    const char *defaults[][2] = {{"fetch.wait.max.ms", "100"},
                                 {"queued.max.messages.kbytes", "16384"},
                                 {"max.partition.fetch.bytes", "262144"}};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0] && !rc; i++) {
        bool given = false;
        for (uint32_t j = 0; j < cfg->prop_count; j++)
            given |= strcmp(cfg->prop_names[j], defaults[i][0]) == 0;
        if (!given)
            rc = conf_set(conf, defaults[i][0], defaults[i][1], err);
    }
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    char errstr[512];
    s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!s->rk) {
        rd_kafka_conf_destroy(conf);
        return sk_error_set(err, SK_EBADINPUT, "", "cannot create the Kafka consumer: %s", errstr);
    }
    rd_kafka_poll_set_consumer(s->rk);
    s->q = rd_kafka_queue_get_consumer(s->rk);
    static const uint64_t one = 1; /* an eventfd takes 8 bytes */
    rd_kafka_queue_io_event_enable(s->q, s->efd, &one, sizeof one);
    return 0;
}

/* The topic's partition count, waiting up to timeout_ms for the topic to exist. */
static int partitions_find(store_ksrc *s, uint32_t timeout_ms, uint32_t *count, sk_error *err)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(s->rk, s->topic, NULL);
    if (!rkt)
        return sk_error_set(err, -ENOMEM, "", "cannot create a handle for topic %s", s->topic);
    const char *why = "no answer";
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(s->rk, 0, rkt, &md, 5000);
        int n = 0;
        if (!e && md->topic_cnt == 1 && !md->topics[0].err)
            n = md->topics[0].partition_cnt;
        else
            why = rd_kafka_err2str(e ? e : md->topics[0].err);
        if (md)
            rd_kafka_metadata_destroy(md);
        if (n > 0) {
            rd_kafka_topic_destroy(rkt);
            if ((uint32_t)n > STORE_KSRC_PARTITIONS_MAX)
                return sk_error_set(err, SK_EBADINPUT, "topic", "%s has %d partitions (at most %d)",
                                    s->topic, n, STORE_KSRC_PARTITIONS_MAX);
            *count = (uint32_t)n;
            return 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms >= (int64_t)timeout_ms || atomic_load(&s->stopped))
            break;
        struct pollfd p = {.fd = -1};
        poll(&p, 0, 500);
    }
    rd_kafka_topic_destroy(rkt);
    return sk_error_set(err, SK_ENOTFOUND, "topic", "topic %s not found on the brokers (%s)",
                        s->topic, why);
}

/* "<topic> <p>:<offset>,..." -> each partition's start; another topic's text is ignored.
 * The number of partitions given an offset. */
static uint32_t resume_parse(store_ksrc *s, const char *text)
{
    size_t tl = strlen(s->topic);
    uint32_t given = 0;
    if (!text || strncmp(text, s->topic, tl) != 0 || text[tl] != ' ')
        return 0;
    const char *p = text + tl + 1;
    while (*p) {
        char *end;
        long id = strtol(p, &end, 10);
        if (*end != ':')
            break;
        long long off = strtoll(end + 1, &end, 10);
        if (id >= 0 && (uint32_t)id < s->nparts && off >= 0) {
            s->parts[id].consumed_next = off;
            s->parts[id].fetch_next = off;
            given++;
        }
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end)
            break;
    }
    return given;
}

static int ends_query(store_ksrc *s, sk_error *err)
{
    for (uint32_t i = 0; i < s->nparts; i++) {
        int64_t low = 0, high = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(s->rk, s->topic, (int32_t)i, &low,
                                                                 &high, QUERY_TIMEOUT_MS);
        if (e)
            return sk_error_set(err, -ETIMEDOUT, "", "cannot read the end of %s [%" PRIu32 "]: %s",
                                s->topic, i, rd_kafka_err2str(e));
        part *p = &s->parts[i];
        p->end = high;
        if (p->fetch_next == OFFSET_UNKNOWN)
            p->fetch_next = low;
    }
    return 0;
}

static int assign(store_ksrc *s, sk_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)s->nparts);
    for (uint32_t i = 0; i < s->nparts; i++)
        rd_kafka_topic_partition_list_add(l, s->topic, (int32_t)i)->offset =
            s->parts[i].consumed_next;
    rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return sk_error_set(err, -EIO, "", "cannot assign the partitions of %s: %s", s->topic,
                            rd_kafka_err2str(e));
    return 0;
}

int store_ksrc_open(const store_ksrc_config *cfg, store_ksrc **out, sk_error *err)
{
    SK_ASSERT(cfg->brokers);
    if (!cfg->topic || !cfg->topic[0] || strlen(cfg->topic) > STORE_RELAY_TOPIC_MAX)
        return sk_error_set(err, SK_EBADINPUT, "topic", "a topic name has 1..%d characters",
                            STORE_RELAY_TOPIC_MAX);
    store_ksrc *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    snprintf(s->topic, sizeof s->topic, "%s", cfg->topic);
    s->buffer_max = cfg->buffer_max ? cfg->buffer_max : 4096;
    s->next = cfg->from_position;
    s->until_end = cfg->until_end;
    s->last_part = -1;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = s->efd < 0 ? sk_error_set(err, -errno, "", "no eventfd for the Kafka source") : 0;
    uint32_t n = 0;
    if (rc == 0)
        rc = consumer_create(s, cfg, err);
    if (rc == 0)
        rc = partitions_find(s, cfg->metadata_timeout_ms, &n, err);
    if (rc == 0 && !(s->parts = calloc(n, sizeof *s->parts)))
        rc = -ENOMEM;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        part *p = &s->parts[i];
        p->id = (int32_t)i;
        p->fetch_next = OFFSET_UNKNOWN;
        p->consumed_next = RD_KAFKA_OFFSET_BEGINNING;
        if (!(p->ring = calloc(s->buffer_max, sizeof *p->ring)))
            rc = -ENOMEM;
        s->nparts = i + 1;
    }
    if (rc == 0) {
        char from[24], given[24];
        snprintf(from, sizeof from, "%" PRIu64, s->next);
        snprintf(given, sizeof given, "%" PRIu32, resume_parse(s, cfg->resume));
        sk_log(SK_LOG_INFO, "kafka-source", "reading the topic", "topic", s->topic, "from_position",
               from, "partitions_from_checkpoint", given, SK_LOG_END);
        if (s->until_end)
            rc = ends_query(s, err);
    }
    if (rc == 0)
        rc = assign(s, err);
    if (rc) {
        store_ksrc_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_ksrc_close(store_ksrc *s)
{
    if (!s)
        return;
    if (s->cur)
        rd_kafka_message_destroy(s->cur);
    for (uint32_t i = 0; i < s->nparts; i++) {
        part *p = &s->parts[i];
        for (uint32_t k = 0; k < p->count; k++)
            rd_kafka_message_destroy(p->ring[(p->first + k) % s->buffer_max].m);
        free(p->ring);
    }
    free(s->parts);
    if (s->q) {
        rd_kafka_queue_io_event_enable(s->q, -1, NULL, 0);
        rd_kafka_queue_destroy(s->q);
    }
    if (s->rk) {
        rd_kafka_consumer_close(s->rk);
        rd_kafka_destroy(s->rk);
    }
    if (s->efd >= 0)
        close(s->efd);
    free(s);
}

/* ---------------------------------------------------------------------------------------
 * Buffering: the consumer queue into the partitions' buffers (invariant 2).
 */
/* Pausing makes librdkafka drop what it prefetched for the partition and, on resume,
 * fetch again from the offset after the last message it handed us. A message we dropped
 * ourselves (it came while the buffer was full) lies before that: seek back to it while
 * still paused, so the resumed fetch starts there (the seek's version barrier also
 * discards anything fetched before it). */
static void pause_resume(store_ksrc *s, part *p, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, s->topic, p->id);
    if (pause) {
        rd_kafka_pause_partitions(s->rk, l);
    } else {
        if (p->refetch) {
            tp->offset = p->fetch_next;
            rd_kafka_error_t *e = rd_kafka_seek_partitions(s->rk, l, 0);
            if (e)
                rd_kafka_error_destroy(e);
            p->refetch = false;
            tp->offset = RD_KAFKA_OFFSET_INVALID;
        }
        rd_kafka_resume_partitions(s->rk, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
    p->paused = pause;
}

static int message_position(const rd_kafka_message_t *m, uint64_t *out, sk_error *err)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t size = 0;
    char text[24], *end;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, "position", &v, &size) ||
        !v || size == 0 || size >= sizeof text)
        return sk_error_set(err, SK_ECORRUPT, "position",
                            "partition %" PRId32 " offset %" PRId64 " has no position header",
                            m->partition, m->offset);
    memcpy(text, v, size);
    text[size] = '\0';
    *out = strtoull(text, &end, 10);
    if (*end || text[0] == '-')
        return sk_error_set(err, SK_ECORRUPT, "position",
                            "partition %" PRId32 " offset %" PRId64
                            ": position '%s' is not a number",
                            m->partition, m->offset, text);
    return 0;
}

/* Takes one message from the consumer; 0 (kept or dropped) or SK_ECORRUPT. */
static int take(store_ksrc *s, rd_kafka_message_t *m, sk_error *err)
{
    part *p =
        m->partition >= 0 && (uint32_t)m->partition < s->nparts ? &s->parts[m->partition] : NULL;
    if (!p || p->refetch || (p->fetch_next >= 0 && m->offset < p->fetch_next) ||
        (s->until_end && m->offset >= p->end)) {
        rd_kafka_message_destroy(m); /* not of ours, stale, or past the end */
        return 0;
    }
    if (p->count == s->buffer_max) {
        rd_kafka_message_destroy(m);
        p->refetch = true;
        if (!p->paused)
            pause_resume(s, p, true);
        return 0;
    }
    uint64_t position = 0;
    int rc = message_position(m, &position, err);
    if (rc) {
        rd_kafka_message_destroy(m);
        return rc;
    }
    p->ring[(p->first + p->count) % s->buffer_max] = (held){m, position};
    p->count++;
    p->fetch_next = m->offset + 1;
    uint64_t seen = atomic_load(&s->seen_head);
    while (position + 1 > seen &&
           !atomic_compare_exchange_weak(&s->seen_head, &seen, position + 1)) {
    }
    if ((p->count == s->buffer_max || (s->until_end && p->fetch_next >= p->end)) && !p->paused)
        pause_resume(s, p, true);
    return 0;
}

/* Empties the consumer queue into the buffers. */
static int fill(store_ksrc *s, sk_error *err)
{
    rd_kafka_message_t *m;
    while ((m = rd_kafka_consumer_poll(s->rk, 0)) != NULL) {
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sk_log(SK_LOG_WARN, "kafka-source", "consumer error", "topic", s->topic, "error",
                       rd_kafka_message_errstr(m), SK_LOG_END);
            rd_kafka_message_destroy(m);
            continue;
        }
        int rc = take(s, m, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The merge.
 */
static rd_kafka_message_t *pop(store_ksrc *s, part *p)
{
    held h = p->ring[p->first];
    p->first = (p->first + 1) % s->buffer_max;
    p->count--;
    p->consumed_next = h.m->offset + 1;
    if (p->paused && p->count <= s->buffer_max / 2 && !(s->until_end && p->fetch_next >= p->end))
        pause_resume(s, p, false);
    return h.m;
}

/* The partition whose first message is the next position, dropping copies below it. */
static part *find_next(store_ksrc *s)
{
    for (uint32_t i = 0; i < s->nparts; i++) {
        part *p = &s->parts[i];
        while (p->count && p->ring[p->first].position < s->next)
            rd_kafka_message_destroy(pop(s, p)); /* published again after a relay restart */
        if (p->count && p->ring[p->first].position == s->next)
            return p;
    }
    return NULL;
}

/* until_end, nothing to hand out: the end, a gap (SK_ECORRUPT), or 0 (still reading). */
static int check_end(store_ksrc *s, sk_error *err)
{
    bool buffered = false;
    for (uint32_t i = 0; i < s->nparts; i++) {
        part *p = &s->parts[i];
        if (!p->count && p->fetch_next < p->end)
            return 0; /* this one may still bring it */
        buffered |= p->count > 0;
    }
    if (!buffered) {
        s->at_end = 1;
        return 0;
    }
    char heads[512] = "";
    for (uint32_t i = 0; i < s->nparts && strlen(heads) < sizeof heads - 40; i++)
        if (s->parts[i].count)
            snprintf(heads + strlen(heads), sizeof heads - strlen(heads),
                     "%s[%" PRIu32 "] %" PRIu64, heads[0] ? ", " : "", i,
                     s->parts[i].ring[s->parts[i].first].position);
    return sk_error_set(err, SK_ECORRUPT, "position",
                        "position %" PRIu64 " is missing from topic %s: every partition was read "
                        "to its end and the next positions there are %s",
                        s->next, s->topic, heads);
}

int store_ksrc_next(store_ksrc *s, ev_event *out, sk_error *err)
{
    if (s->cur) {
        rd_kafka_message_destroy(s->cur);
        s->cur = NULL;
    }
    if (atomic_load(&s->stopped))
        return SK_ECANCELED;
    uint64_t drained;
    ssize_t r = read(s->efd, &drained, sizeof drained); /* before the queue: no lost wake-up */
    (void)r;
    int rc = fill(s, err);
    if (rc)
        return rc;
    part *p = find_next(s);
    if (!p)
        return s->until_end ? check_end(s, err) : 0;
    rd_kafka_message_t *m = pop(s, p);
    ev_event ev;
    rc = store_kafka_event_decode(m, &ev, err);
    if (rc == 0 && ev.position != s->next)
        rc = sk_error_set(err, SK_ECORRUPT, "position", "decoding changed the position");
    if (rc) {
        rd_kafka_message_destroy(m);
        return rc;
    }
    s->cur = m;
    s->last_part = p->id;
    s->last_offset = m->offset;
    s->next++;
    *out = ev;
    return 1;
}

int store_ksrc_at_end(const store_ksrc *s)
{
    return s->at_end;
}

int store_ksrc_wait(store_ksrc *s, int timeout_ms)
{
    if (atomic_load(&s->stopped))
        return SK_ECANCELED;
    struct pollfd p = {.fd = s->efd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (atomic_load(&s->stopped))
        return SK_ECANCELED;
    return n > 0;
}

int store_ksrc_fd(const store_ksrc *s)
{
    return s->efd;
}

void store_ksrc_stop(store_ksrc *s)
{
    atomic_store(&s->stopped, true);
    uint64_t one = 1;
    ssize_t r = write(s->efd, &one, sizeof one);
    (void)r; /* a counter already non-zero is readable anyway */
}

uint64_t store_ksrc_position(const store_ksrc *s)
{
    return s->next;
}

uint64_t store_ksrc_seen_head(const store_ksrc *s)
{
    return atomic_load(&((store_ksrc *)s)->seen_head);
}

int store_ksrc_checkpoint(const store_ksrc *s, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "%s ", s->topic);
    for (uint32_t i = 0; i < s->nparts && used < size; i++) {
        int64_t off = s->parts[i].consumed_next;
        if ((int32_t)i == s->last_part) /* invariant 3 */
            off = s->last_offset;
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRIu32 ":%" PRId64, i ? "," : "", i,
                                 off);
    }
    return used < size ? 0 : -ENOSPC;
}
