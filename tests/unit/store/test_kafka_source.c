/*
 * test_kafka_source.c -- the Kafka source's merge (store_ksrc_*, store.h) against
 * librdkafka's mock cluster: fast, in-process, no broker. The real broker runs in
 * tests/integration/test_kafka_replica.py.
 *
 * What it checks: partitions merged back into position order with each position once,
 * also when partitions run far ahead of one another with a tiny buffer (so they are
 * paused, messages fetched while full are dropped and fetched again); a run the relay
 * published twice handed out once; a missing position refused with its number; a resume
 * from the checkpoint text continuing exactly at the next position; every envelope field
 * decoded as the relay wrote it; a value that is not Confluent wire format refused.
 */
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

typedef struct fixture {
    rd_kafka_t *producer; /* owns the mock cluster */
    const char *brokers;
} fixture;

static int setup(void **state)
{
    static fixture f;
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr))
        return -1;
    f.producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!f.producer)
        return -1;
    f.brokers = rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(f.producer));
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    rd_kafka_destroy(f->producer);
    return 0;
}

static void topic(fixture *f, const char *name, int partitions)
{
    assert_int_equal(
        rd_kafka_mock_topic_create(rd_kafka_handle_mock_cluster(f->producer), name, partitions, 1),
        0);
}

static void produce_raw(fixture *f, const char *t, int32_t partition, const void *value,
                        size_t size, rd_kafka_headers_t *h);

/* One event as the relay publishes it (relay.c), to a chosen partition. */
static void produce(fixture *f, const char *t, int32_t partition, uint64_t position)
{
    char stream[32], pos[24], ver[24];
    snprintf(stream, sizeof stream, "s-%" PRIu64, position % 7);
    snprintf(pos, sizeof pos, "%" PRIu64, position);
    snprintf(ver, sizeof ver, "%" PRIu64, position / 7 + 1);
    uint8_t value[8] = {0, 0, 0, 0, 7, 'a', 'b', (uint8_t)position};
    rd_kafka_headers_t *h = rd_kafka_headers_new(10);
    rd_kafka_header_add(h, "event_id", -1, "01a230f1-f6ca-78b4-b17a-d0d987b0753b", -1);
    rd_kafka_header_add(h, "position", -1, pos, -1);
    rd_kafka_header_add(h, "stream_id", -1, stream, -1);
    rd_kafka_header_add(h, "version", -1, ver, -1);
    rd_kafka_header_add(h, "type", -1, "Thing", -1);
    rd_kafka_header_add(h, "occurred_at", -1, "1796117493450577", -1);
    rd_kafka_header_add(h, "command_id", -1, "01a230f1-f6ca-7533-bd0c-b648da07ee01", -1);
    rd_kafka_header_add(h, "correlation_id", -1, "", 0);
    rd_kafka_header_add(h, "meta.principal", -1, "alice", -1);
    produce_raw(f, t, partition, value, sizeof value, h);
}

/* produceva, not producev: the latter's type-checking macros are GNU C. Takes h. */
static void produce_raw(fixture *f, const char *t, int32_t partition, const void *value,
                        size_t size, rd_kafka_headers_t *h)
{
    rd_kafka_vu_t vu[5];
    memset(vu, 0, sizeof vu);
    vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vu[0].u.cstr = t;
    vu[1].vtype = RD_KAFKA_VTYPE_PARTITION;
    vu[1].u.i32 = partition;
    vu[2].vtype = RD_KAFKA_VTYPE_VALUE;
    memcpy(&vu[2].u.mem.ptr, &value, sizeof value); /* F_COPY: not written */
    vu[2].u.mem.size = size;
    vu[3].vtype = RD_KAFKA_VTYPE_HEADERS;
    vu[3].u.headers = h;
    vu[4].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[4].u.i = RD_KAFKA_MSG_F_COPY;
    rd_kafka_error_t *e = rd_kafka_produceva(f->producer, vu, 5);
    assert_null(e);
}

static void flush(fixture *f)
{
    assert_int_equal(rd_kafka_flush(f->producer, 10000), 0);
}

static store_ksrc *open_src(fixture *f, const char *t, uint64_t from, const char *resume,
                            int until_end, uint32_t buffer_max)
{
    store_ksrc_config kc;
    store_ksrc_config_init(&kc);
    kc.brokers = f->brokers;
    kc.topic = t;
    kc.from_position = from;
    kc.resume = resume;
    kc.until_end = until_end;
    kc.buffer_max = buffer_max;
    kc.metadata_timeout_ms = 10000;
    store_ksrc *s = NULL;
    sk_error err = {0};
    int rc = store_ksrc_open(&kc, &s, &err);
    if (rc)
        fail_msg("open: %s", err.message);
    return s;
}

/* Reads until n events were handed out or (until_end) the end; checks each position is
 * the next. Returns the next expected position; *rc_out the last non-1 code. */
static uint64_t read_upto(store_ksrc *s, uint64_t from, uint64_t n, int *rc_out, sk_error *err)
{
    uint64_t next = from;
    int idle = 0;
    *rc_out = 0;
    while (next - from < n && idle < 200) {
        ev_event ev;
        int rc = store_ksrc_next(s, &ev, err);
        if (rc == 1) {
            assert_int_equal(ev.position, next);
            next++;
            idle = 0;
            continue;
        }
        *rc_out = rc;
        if (rc < 0 || store_ksrc_at_end(s))
            break;
        if (store_ksrc_wait(s, 100) == 0)
            idle++; /* at most 20 s without anything */
    }
    return next;
}

static void merges_skewed_partitions_with_a_tiny_buffer(void **state)
{
    fixture *f = *state;
    topic(f, "skew.events", 3);
    /* partition 0 holds 0..299; 1 and 2 hold only later positions, so they run ahead and
     * fill a 16-message buffer long before partition 0 catches up */
    for (uint64_t p = 0; p < 600; p++)
        produce(f, "skew.events", p < 300 ? 0 : (int32_t)(1 + p % 2), p);
    flush(f);
    store_ksrc *s = open_src(f, "skew.events", 0, NULL, 1, 16);
    int rc;
    sk_error err = {0};
    assert_int_equal(read_upto(s, 0, 1000, &rc, &err), 600);
    assert_int_equal(rc, 0);
    assert_true(store_ksrc_at_end(s));
    assert_int_equal(store_ksrc_seen_head(s), 600);
    store_ksrc_close(s);
}

static void decodes_every_envelope_field(void **state)
{
    fixture *f = *state;
    topic(f, "one.events", 1);
    produce(f, "one.events", 0, 0);
    flush(f);
    store_ksrc *s = open_src(f, "one.events", 0, NULL, 1, 16);
    ev_event ev;
    sk_error err = {0};
    int rc;
    while ((rc = store_ksrc_next(s, &ev, &err)) == 0)
        store_ksrc_wait(s, 100);
    assert_int_equal(rc, 1);
    char id[EV_UUID_TEXT_SIZE];
    ev_uuid_format(&ev.event_id, id);
    assert_string_equal(id, "01a230f1-f6ca-78b4-b17a-d0d987b0753b");
    ev_uuid_format(&ev.command_id, id);
    assert_string_equal(id, "01a230f1-f6ca-7533-bd0c-b648da07ee01");
    assert_true(ev_uuid_is_nil(&ev.correlation_id));
    assert_true(ev_str_eq(ev.stream_id, "s-0"));
    assert_true(ev_str_eq(ev.type, "Thing"));
    assert_int_equal(ev.version, 1);
    assert_int_equal(ev.occurred_at, 1796117493450577);
    assert_int_equal(ev.schema_id, 7);
    assert_int_equal(ev.payload_size, 3);
    assert_memory_equal(ev.payload, "ab\0", 3);
    assert_int_equal(ev.metadata_count, 1);
    assert_true(ev_str_eq(ev.metadata[0].key, "principal"));
    assert_true(ev_str_eq(ev.metadata[0].value, "alice"));
    store_ksrc_close(s);
}

static void drops_a_run_published_twice(void **state)
{
    fixture *f = *state;
    topic(f, "dup.events", 2);
    /* the relay restarted from its checkpoint at 5: 5..9 come again on partition 0 */
    for (uint64_t p = 0; p < 10; p++)
        produce(f, "dup.events", (int32_t)(p % 2), p);
    for (uint64_t p = 5; p < 15; p++)
        produce(f, "dup.events", (int32_t)(p % 2), p);
    flush(f);
    store_ksrc *s = open_src(f, "dup.events", 0, NULL, 1, 2);
    int rc;
    sk_error err = {0};
    assert_int_equal(read_upto(s, 0, 1000, &rc, &err), 15);
    assert_int_equal(rc, 0);
    assert_true(store_ksrc_at_end(s));
    store_ksrc_close(s);
}

static void refuses_a_missing_position(void **state)
{
    fixture *f = *state;
    topic(f, "gap.events", 2);
    for (uint64_t p = 0; p < 10; p++)
        if (p != 4)
            produce(f, "gap.events", (int32_t)(p % 2), p);
    flush(f);
    store_ksrc *s = open_src(f, "gap.events", 0, NULL, 1, 16);
    int rc;
    sk_error err = {0};
    assert_int_equal(read_upto(s, 0, 1000, &rc, &err), 4);
    assert_int_equal(rc, SK_ECORRUPT);
    assert_non_null(strstr(err.message, "position 4 is missing"));
    assert_false(store_ksrc_at_end(s));
    store_ksrc_close(s);
}

static void resumes_from_its_checkpoint(void **state)
{
    fixture *f = *state;
    topic(f, "resume.events", 3);
    for (uint64_t p = 0; p < 600; p++)
        produce(f, "resume.events", (int32_t)((p / 5) % 3), p);
    flush(f);
    store_ksrc *s = open_src(f, "resume.events", 0, NULL, 0, 32);
    int rc;
    sk_error err = {0};
    assert_int_equal(read_upto(s, 0, 250, &rc, &err), 250);
    char text[256];
    assert_int_equal(store_ksrc_checkpoint(s, text, sizeof text), 0);
    assert_int_equal(strncmp(text, "resume.events ", 14), 0);
    assert_int_equal(store_ksrc_checkpoint(s, text, 10), -ENOSPC);
    assert_int_equal(store_ksrc_checkpoint(s, text, sizeof text), 0);
    store_ksrc_close(s);
    /* live (not until_end): the rest, from exactly 250 */
    s = open_src(f, "resume.events", 250, text, 0, 32);
    assert_int_equal(store_ksrc_position(s), 250);
    assert_int_equal(read_upto(s, 250, 350, &rc, &err), 600);
    /* caught up: nothing more, and stop wakes a waiter */
    ev_event ev;
    assert_int_equal(store_ksrc_next(s, &ev, &err), 0);
    store_ksrc_stop(s);
    assert_int_equal(store_ksrc_wait(s, 10000), SK_ECANCELED);
    assert_int_equal(store_ksrc_next(s, &ev, &err), SK_ECANCELED);
    store_ksrc_close(s);
    /* another topic's text is ignored: read from the start, dropping below 590 */
    s = open_src(f, "resume.events", 590, "other.events 0:100,1:100,2:100", 0, 32);
    assert_int_equal(read_upto(s, 590, 10, &rc, &err), 600);
    store_ksrc_close(s);
}

static void refuses_a_value_not_in_wire_format(void **state)
{
    fixture *f = *state;
    topic(f, "bad.events", 1);
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "position", -1, "0", 1);
    produce_raw(f, "bad.events", 0, "xyz", 3, h);
    flush(f);
    store_ksrc *s = open_src(f, "bad.events", 0, NULL, 1, 16);
    int rc;
    sk_error err = {0};
    read_upto(s, 0, 1, &rc, &err);
    assert_int_equal(rc, SK_ECORRUPT);
    assert_non_null(strstr(err.message, "offset 0"));
    store_ksrc_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merges_skewed_partitions_with_a_tiny_buffer),
        cmocka_unit_test(decodes_every_envelope_field),
        cmocka_unit_test(drops_a_run_published_twice),
        cmocka_unit_test(refuses_a_missing_position),
        cmocka_unit_test(resumes_from_its_checkpoint),
        cmocka_unit_test(refuses_a_value_not_in_wire_format),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
