/*
 * test_store_streams.c -- reading one stream across segment rollovers: exactly its events
 * in version order, from any version, the same after a reopen (indexes from disk) and
 * after the index files are deleted.
 */
#include "storetest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define STREAMS 7
#define EVENTS  3000

/* Checks stream s holds exactly the events of the first `appended` appends. */
static void check_stream_after(store_log *log, int s, uint64_t from, uint64_t appended)
{
    char name[16];
    snprintf(name, sizeof name, "st-%d", s);
    uint64_t count = appended / STREAMS + ((uint64_t)s < appended % STREAMS);
    assert_int_equal(store_log_stream_version(log, ev_str_of(name)), count);
    store_reader *r;
    assert_int_equal(store_reader_open_stream(log, ev_str_of(name), from, &r), 0);
    ev_event ev;
    sk_error err;
    for (uint64_t v = from; v <= count; v++) {
        assert_int_equal(store_reader_next(r, &ev, &err), 1);
        assert_true(ev_str_eq(ev.stream_id, name));
        assert_int_equal(ev.version, v);
        uint64_t i = (v - 1) * STREAMS + (uint64_t)s; /* the global append number */
        assert_int_equal(ev.position, i);
        char want[32];
        int n = snprintf(want, sizeof want, "st:%llu:", (unsigned long long)i);
        assert_memory_equal(ev.payload, want, (size_t)n);
    }
    assert_int_equal(store_reader_next(r, &ev, &err), 0);
    store_reader_close(r);
}

static void check_stream(store_log *log, int s, uint64_t from)
{
    check_stream_after(log, s, from, EVENTS);
}

static void check_all(store_log *log)
{
    for (int s = 0; s < STREAMS; s++) {
        check_stream(log, s, 1);
        check_stream(log, s, 200);
        check_stream(log, s, EVENTS / STREAMS);
    }
    store_reader *r;
    assert_int_equal(store_reader_open_stream(log, ev_str_of("nobody"), 1, &r), 0);
    ev_event ev;
    sk_error err;
    assert_int_equal(store_reader_next(r, &ev, &err), 0);
    store_reader_close(r);
    assert_int_equal(store_log_stream_version(log, ev_str_of("nobody")), 0);
}

/* Appends event i to stream "<prefix>-<i mod streams>", its payload made from prefix. */
static void append_nth(store_log *log, const char *prefix, uint64_t i, uint64_t streams)
{
    char name[16];
    snprintf(name, sizeof name, "%s-%d", prefix, (int)(i % streams));
    st_event e;
    st_make(&e, prefix, i, 20);
    sk_error err;
    assert_int_equal(store_log_append(log, ev_str_of(name), STORE_EXPECT_ANY, &e.ev, 1, NULL, &err),
                     0);
}

static void test_stream_reads_across_rollover(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = st_open(dir, 4096);
    for (uint64_t i = 0; i < EVENTS; i++) {
        append_nth(log, "st", i, STREAMS);
        if (i % 500 == 0) /* reads while the log grows see exactly what is committed */
            for (int s = 0; s < STREAMS; s++)
                check_stream_after(log, s, 1, i + 1);
    }
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_true(st.segments > 20);
    check_all(log);
    store_log_close(log);
    log = st_open(dir, 4096);
    check_all(log);
    store_log_close(log);
    st_remove_suffix(dir, ".sidx");
    st_remove_suffix(dir, ".index");
    log = st_open(dir, 4096);
    check_all(log);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

/* Thousands of streams, two events each, over segments of a few hundred streams: each
 * sealed segment's stream index (sorted by hash at its roll) finds every stream's events,
 * in version order, before and after a reopen. */
#define MANY           3000
#define MANY_SEG_BYTES ((uint64_t)64 << 10)

static void check_many(store_log *log)
{
    for (int k = 0; k < MANY; k++) {
        char name[16];
        snprintf(name, sizeof name, "m-%d", k);
        assert_int_equal(store_log_stream_version(log, ev_str_of(name)), 2);
        store_reader *r;
        assert_int_equal(store_reader_open_stream(log, ev_str_of(name), 1, &r), 0);
        ev_event ev;
        sk_error err;
        for (uint64_t v = 1; v <= 2; v++) {
            assert_int_equal(store_reader_next(r, &ev, &err), 1);
            assert_true(ev_str_eq(ev.stream_id, name));
            assert_int_equal(ev.version, v);
            assert_int_equal(ev.position, (v - 1) * MANY + (uint64_t)k);
        }
        assert_int_equal(store_reader_next(r, &ev, &err), 0);
        store_reader_close(r);
    }
}

static void test_many_streams_per_segment(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = st_open(dir, MANY_SEG_BYTES);
    for (uint64_t i = 0; i < (uint64_t)MANY * 2; i++)
        append_nth(log, "m", i, MANY);
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_true(st.segments > 4);
    check_many(log);
    store_log_close(log);
    log = st_open(dir, MANY_SEG_BYTES);
    check_many(log);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_reads_across_rollover),
        cmocka_unit_test(test_many_streams_per_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
