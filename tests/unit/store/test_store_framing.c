/*
 * test_store_framing.c -- every envelope field survives the round trip through a
 * record, and events past the limits are refused without changing the log.
 */
#include "storetest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void fill_event(ev_event *ev, uint8_t *payload, size_t size, uint32_t meta)
{
    memset(ev, 0, sizeof *ev);
    ev_uuid_generate(&ev->event_id);
    ev_uuid_generate(&ev->command_id);
    ev_uuid_generate(&ev->correlation_id);
    ev->type = ev_str_of("OrderPlaced");
    ev->occurred_at = 1700000000123456LL;
    ev->schema_id = 42;
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)(i * 31 + size);
    ev->payload = payload;
    ev->payload_size = (uint32_t)size;
    static const char *keys[] = {"traceparent", "principal", "k2", "k3", "k4", "k5", "k6", "k7",
                                 "k8",          "k9",        "ka", "kb", "kc", "kd", "ke", "kf"};
    ev->metadata_count = meta;
    for (uint32_t i = 0; i < meta; i++) {
        ev->metadata[i].key = ev_str_of(keys[i]);
        ev->metadata[i].value =
            ev_str_of(i == 0 ? "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : "alice");
    }
}

static void assert_same(const ev_event *want, const ev_event *got)
{
    assert_memory_equal(want->event_id.bytes, got->event_id.bytes, 16);
    assert_memory_equal(want->command_id.bytes, got->command_id.bytes, 16);
    assert_memory_equal(want->correlation_id.bytes, got->correlation_id.bytes, 16);
    assert_int_equal(want->type.len, got->type.len);
    assert_memory_equal(want->type.ptr, got->type.ptr, want->type.len);
    assert_int_equal(want->occurred_at, got->occurred_at);
    assert_int_equal(want->schema_id, got->schema_id);
    assert_int_equal(want->metadata_count, got->metadata_count);
    for (uint32_t i = 0; i < want->metadata_count; i++) {
        assert_int_equal(want->metadata[i].key.len, got->metadata[i].key.len);
        assert_memory_equal(want->metadata[i].key.ptr, got->metadata[i].key.ptr,
                            want->metadata[i].key.len);
        assert_int_equal(want->metadata[i].value.len, got->metadata[i].value.len);
        assert_memory_equal(want->metadata[i].value.ptr, got->metadata[i].value.ptr,
                            want->metadata[i].value.len);
    }
    assert_int_equal(want->payload_size, got->payload_size);
    if (want->payload_size)
        assert_memory_equal(want->payload, got->payload, want->payload_size);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    static const size_t sizes[] = {0, 1, 77, 4096, 65536, EV_PAYLOAD_MAX};
    enum { N = sizeof sizes / sizeof *sizes };
    static uint8_t payloads[N][EV_PAYLOAD_MAX];
    ev_event evs[N];
    for (int reopen = 0; reopen < 2; reopen++) {
        store_log *log = st_open(dir, 0);
        assert_non_null(log);
        if (!reopen) {
            for (size_t i = 0; i < N; i++) {
                fill_event(&evs[i], payloads[i], sizes[i], (uint32_t)(i * 3 % 17));
                store_append_result res;
                sk_error err;
                assert_int_equal(store_log_append(log, ev_str_of("order-7f3c"), STORE_EXPECT_ANY,
                                                  &evs[i], 1, &res, &err),
                                 0);
                assert_int_equal(res.first_position, i);
                assert_int_equal(res.first_version, i + 1);
            }
        }
        store_reader *r;
        assert_int_equal(store_reader_open(log, 0, &r), 0);
        ev_event got;
        sk_error err;
        for (size_t i = 0; i < N; i++) {
            assert_int_equal(store_reader_next(r, &got, &err), 1);
            assert_same(&evs[i], &got);
            assert_int_equal(got.position, i);
            assert_int_equal(got.version, i + 1);
            assert_true(ev_str_eq(got.stream_id, "order-7f3c"));
        }
        assert_int_equal(store_reader_next(r, &got, &err), 0);
        store_reader_close(r);
        assert_int_equal(store_log_close(log), 0);
    }
    st_rmrf(dir);
    free(dir);
}

static void test_limits_refused(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = st_open(dir, 0);
    static uint8_t big[EV_PAYLOAD_MAX + 1];
    ev_event ev;
    fill_event(&ev, big, 10, 0);
    sk_error err;
    char long_id[EV_STREAM_ID_MAX + 2];
    memset(long_id, 's', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(
        store_log_append(log, ev_str_of(long_id), STORE_EXPECT_ANY, &ev, 1, NULL, &err),
        SK_EBADINPUT);
    assert_string_equal(err.field, "stream_id");
    assert_int_equal(store_log_append(log, ev_str_of(""), STORE_EXPECT_ANY, &ev, 1, NULL, &err),
                     SK_EBADINPUT);
    ev.metadata_count = EV_METADATA_MAX + 1;
    assert_int_equal(store_log_append(log, ev_str_of("s"), STORE_EXPECT_ANY, &ev, 1, NULL, &err),
                     SK_EBADINPUT);
    assert_string_equal(err.field, "metadata");
    fill_event(&ev, big, sizeof big, 0);
    assert_int_equal(store_log_append(log, ev_str_of("s"), STORE_EXPECT_ANY, &ev, 1, NULL, &err),
                     SK_EBADINPUT);
    assert_string_equal(err.field, "payload");
    fill_event(&ev, big, 10, 0);
    ev.type = ev_str_of("");
    assert_int_equal(store_log_append(log, ev_str_of("s"), STORE_EXPECT_ANY, &ev, 1, NULL, &err),
                     SK_EBADINPUT);
    assert_int_equal(store_log_append(log, ev_str_of("s"), STORE_EXPECT_ANY, &ev, 0, NULL, &err),
                     SK_EBADINPUT);
    assert_int_equal(store_log_head(log), 0);
    assert_int_equal(store_log_stream_version(log, ev_str_of("s")), 0);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_limits_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
