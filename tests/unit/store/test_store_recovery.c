/*
 * test_store_recovery.c -- the log reopens after its last segment is cut at every byte
 * offset inside its last append: nothing of that append survives (appends are atomic),
 * everything before it does, and the log takes appends again. Missing or damaged index
 * files and checkpoint are rebuilt.
 */
#include "storetest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SEGMENT_BYTES 4096

/* Appends 60 single-event appends over 3 streams, then one 3-event append. Returns the
 * number of events before the last append. */
static uint64_t build(const char *dir)
{
    store_log *log = st_open(dir, SEGMENT_BYTES);
    assert_non_null(log);
    st_event e[3];
    char stream[16];
    sk_error err;
    for (uint64_t i = 0; i < 60; i++) {
        snprintf(stream, sizeof stream, "s-%llu", (unsigned long long)(i % 3));
        st_make(&e[0], stream, i, 40);
        assert_int_equal(
            store_log_append(log, ev_str_of(stream), STORE_EXPECT_ANY, &e[0].ev, 1, NULL, &err), 0);
    }
    uint64_t before = store_log_head(log);
    ev_event evs[3];
    for (int k = 0; k < 3; k++) {
        st_make(&e[k], "last", (uint64_t)k, 40);
        evs[k] = e[k].ev;
    }
    assert_int_equal(
        store_log_append(log, ev_str_of("s-last"), STORE_EXPECT_ANY, evs, 3, NULL, &err), 0);
    store_log_close(log);
    return before;
}

/* Every event below `count` is readable with the payload it was written with. */
static void check_prefix(store_log *log, uint64_t count)
{
    assert_int_equal(store_log_head(log), count);
    store_reader *r;
    assert_int_equal(store_reader_open(log, 0, &r), 0);
    ev_event ev;
    sk_error err;
    for (uint64_t i = 0; i < count; i++) {
        assert_int_equal(store_reader_next(r, &ev, &err), 1);
        char want[64];
        int n = snprintf(want, sizeof want, "s-%llu:%llu:", (unsigned long long)(i % 3),
                         (unsigned long long)i);
        assert_int_equal(ev.position, i);
        assert_memory_equal(ev.payload, want, (size_t)n);
    }
    assert_int_equal(store_reader_next(r, &ev, &err), 0);
    store_reader_close(r);
}

static void test_cut_at_every_offset_of_the_last_append(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    char base[4200], work[4200], seg[4400];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    uint64_t before = build(base);
    st_last_segment(base, seg, sizeof seg);
    assert_true(st_count_files(base, ".log") >= 2);
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    /* The last append is three records of equal size at the end of the segment. */
    store_log *log = st_open(base, SEGMENT_BYTES);
    store_reader *r;
    assert_int_equal(store_reader_open(log, before, &r), 0);
    ev_event ev;
    sk_error err;
    size_t last_size = 0;
    while (store_reader_next(r, &ev, &err) == 1)
        last_size += 8 + 92 + ev.stream_id.len + ev.type.len + ev.payload_size;
    store_reader_close(r);
    store_log_close(log);
    assert_true(last_size > 0 && (off_t)last_size <= st.st_size);
    off_t start = st.st_size - (off_t)last_size;
    const char *name = strrchr(seg, '/') + 1;
    for (off_t cut = start; cut < st.st_size; cut++) {
        st_rmrf(work);
        st_copy_dir(base, work);
        char path[8800];
        snprintf(path, sizeof path, "%s/%s", work, name);
        assert_int_equal(truncate(path, cut), 0);
        log = st_open(work, SEGMENT_BYTES);
        if (!log)
            fail_msg("open failed after a cut at offset %lld", (long long)cut);
        check_prefix(log, before);
        assert_int_equal(store_log_stream_version(log, ev_str_of("s-last")), 0);
        st_event e;
        st_make(&e, "s-0", before, 5);
        assert_int_equal(
            store_log_append(log, ev_str_of("after"), STORE_EXPECT_NO_STREAM, &e.ev, 1, NULL, &err),
            0);
        store_log_close(log);
        log = st_open(work, SEGMENT_BYTES);
        assert_int_equal(store_log_head(log), before + 1);
        assert_int_equal(store_log_stream_version(log, ev_str_of("after")), 1);
        store_log_close(log);
    }
    /* The whole file: all of it is there. */
    log = st_open(base, SEGMENT_BYTES);
    assert_int_equal(store_log_head(log), before + 3);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

static void reads_match(const char *dir, uint64_t count)
{
    store_log *log = st_open(dir, SEGMENT_BYTES);
    assert_non_null(log);
    assert_int_equal(store_log_head(log), count);
    for (int s = 0; s < 3; s++) {
        char stream[16];
        snprintf(stream, sizeof stream, "s-%d", s);
        assert_int_equal(store_log_stream_version(log, ev_str_of(stream)), 20);
        store_reader *r;
        assert_int_equal(store_reader_open_stream(log, ev_str_of(stream), 1, &r), 0);
        ev_event ev;
        sk_error err;
        for (uint64_t v = 1; v <= 20; v++) {
            assert_int_equal(store_reader_next(r, &ev, &err), 1);
            assert_int_equal(ev.version, v);
            assert_int_equal(ev.position, (v - 1) * 3 + (uint64_t)s);
        }
        assert_int_equal(store_reader_next(r, &ev, &err), 0);
        store_reader_close(r);
    }
    /* A read from the middle, through the sparse index. */
    store_reader *r;
    assert_int_equal(store_reader_open(log, 37, &r), 0);
    ev_event ev;
    sk_error err;
    assert_int_equal(store_reader_next(r, &ev, &err), 1);
    assert_int_equal(ev.position, 37);
    store_reader_close(r);
    store_log_close(log);
}

static void test_missing_and_damaged_indexes_are_rebuilt(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    uint64_t before = build(dir);
    uint64_t total = before + 3;
    assert_true(st_count_files(dir, ".index") >= 1);
    reads_match(dir, total);
    st_remove_suffix(dir, ".index");
    st_remove_suffix(dir, ".sidx");
    char ckp[4200];
    snprintf(ckp, sizeof ckp, "%s/checkpoint", dir);
    unlink(ckp);
    reads_match(dir, total);
    assert_true(st_count_files(dir, ".index") >= 1); /* written again */
    /* Garbage in every index file and the checkpoint. */
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if ((l > 6 && strcmp(e->d_name + l - 6, ".index") == 0) ||
            (l > 5 && strcmp(e->d_name + l - 5, ".sidx") == 0) ||
            strcmp(e->d_name, "checkpoint") == 0) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            FILE *f = fopen(p, "r+");
            fseek(f, 20, SEEK_SET);
            fputs("garbage garbage garbage", f);
            fclose(f);
        }
    }
    closedir(d);
    reads_match(dir, total);
    st_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_at_every_offset_of_the_last_append),
        cmocka_unit_test(test_missing_and_damaged_indexes_are_rebuilt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
