/*
 * test_store_fsync_modes.c -- fsync=interval and fsync=never acknowledge after the write
 * and still keep everything across a clean close; interval mode syncs on its own while
 * the log is idle, and never mode only when a segment is sealed or the log closes.
 */
#include "storetest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>
#include <cmocka.h>

static void run_mode(store_fsync_mode mode, uint64_t *fsyncs_idle)
{
    char *dir = st_tempdir();
    store_config cfg;
    store_config_init(&cfg, dir);
    cfg.fsync_mode = mode;
    cfg.fsync_interval_ms = 5;
    store_log *log = NULL;
    sk_error err;
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    for (uint64_t i = 0; i < 200; i++) {
        st_event e;
        st_make(&e, "m", i, 20);
        assert_int_equal(
            store_log_append(log, ev_str_of("s"), STORE_EXPECT_ANY, &e.ev, 1, NULL, &err), 0);
    }
    store_log_stats before = {0}, after;
    store_log_get_stats(log, &before);
    st_event last; /* acknowledged after the write, before any sync: a sync must follow */
    st_make(&last, "m", 200, 20);
    assert_int_equal(
        store_log_append(log, ev_str_of("s"), STORE_EXPECT_ANY, &last.ev, 1, NULL, &err), 0);
    after = before;
    /* Idle: only the interval timer may sync. Wait up to 2 s for it (a loaded machine),
     * or 50 ms to see that fsync=never does not. */
    int waits = mode == STORE_FSYNC_INTERVAL ? 200 : 5;
    struct timespec pause = {0, 10000000L};
    for (int i = 0; i < waits; i++) {
        nanosleep(&pause, NULL);
        store_log_get_stats(log, &after);
        if (after.fsyncs > before.fsyncs && mode == STORE_FSYNC_INTERVAL)
            break;
    }
    *fsyncs_idle = after.fsyncs - before.fsyncs;
    assert_int_equal(store_log_close(log), 0);
    log = NULL;
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    assert_int_equal(store_log_head(log), 201);
    assert_int_equal(store_log_stream_version(log, ev_str_of("s")), 201);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

static void test_interval_syncs_while_idle(void **state)
{
    (void)state;
    uint64_t idle = 0;
    run_mode(STORE_FSYNC_INTERVAL, &idle);
    assert_true(idle >= 1);
}

static void test_never_does_not_sync_while_idle(void **state)
{
    (void)state;
    uint64_t idle = 0;
    run_mode(STORE_FSYNC_NEVER, &idle);
    assert_int_equal(idle, 0);
}

static void test_mode_names(void **state)
{
    (void)state;
    store_fsync_mode m;
    assert_int_equal(store_fsync_mode_parse("interval", &m), 0);
    assert_int_equal(m, STORE_FSYNC_INTERVAL);
    assert_string_equal(store_fsync_mode_name(STORE_FSYNC_NEVER), "never");
    assert_int_equal(store_fsync_mode_parse("sometimes", &m), SK_EBADINPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interval_syncs_while_idle),
        cmocka_unit_test(test_never_does_not_sync_while_idle),
        cmocka_unit_test(test_mode_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
