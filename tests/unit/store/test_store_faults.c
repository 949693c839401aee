/*
 * test_store_faults.c -- storage faults through the I/O seam: a failed fdatasync is
 * sticky and acknowledges nothing; ENOSPC rejects the batch cleanly and the log stays
 * writable; short writes are retried; a new segment's directory entry is synced.
 */
#include "storetest.h"

#include <errno.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* A store_io that forwards to POSIX but fails chosen calls. */
typedef struct faulty {
    store_io io;
    int fail_fdatasync;     /* next N fdatasync calls fail with EIO */
    int fail_pwrite_nospc;  /* next N pwrite calls fail with ENOSPC */
    int short_writes;       /* next N pwrite calls write half (at least 1 byte) */
    int nospc_after_short;  /* after a short write, the next pwrite fails with ENOSPC */
    _Atomic int sync_dirs;  /* the appender and the sealer both count */
    _Atomic int fdatasyncs; /* the syncer and the appender (a cut) both count */
    /* Pipeline tests (appender, syncer and test threads): */
    _Atomic int nospc_at_write;    /* the Nth pwrite from now fails with ENOSPC (0: none) */
    _Atomic int eio_at_sync;       /* the Nth fdatasync from now fails with EIO (0: none) */
    int sync_delay_us;             /* each fdatasync takes at least this long */
    _Atomic bool segment_fd[1024]; /* fds of open segment files (*.log) */
} faulty;

static const store_io *posix(void)
{
    return store_io_posix();
}

static int f_open(void *ctx, const char *p, int fl, int m)
{
    faulty *f = ctx;
    int fd = posix()->open(NULL, p, fl, m);
    size_t len = strlen(p);
    if (fd >= 0 && fd < 1024)
        atomic_store(&f->segment_fd[fd], len > 4 && strcmp(p + len - 4, ".log") == 0);
    return fd;
}
static int f_close(void *ctx, int fd)
{
    return posix()->close(NULL, fd);
}
static ssize_t f_pread(void *ctx, int fd, void *b, size_t n, uint64_t o)
{
    return posix()->pread(NULL, fd, b, n, o);
}
static ssize_t f_pwrite(void *ctx, int fd, const void *b, size_t n, uint64_t o)
{
    faulty *f = ctx;
    bool segment = fd >= 0 && fd < 1024 && atomic_load(&f->segment_fd[fd]);
    if (segment && atomic_load(&f->nospc_at_write) > 0 &&
        atomic_fetch_sub(&f->nospc_at_write, 1) == 1)
        return -ENOSPC;
    if (f->fail_pwrite_nospc > 0) {
        f->fail_pwrite_nospc--;
        return -ENOSPC;
    }
    if (f->short_writes > 0 && n > 1) {
        f->short_writes--;
        ssize_t w = posix()->pwrite(NULL, fd, b, n / 2, o);
        if (f->nospc_after_short) {
            f->nospc_after_short = 0;
            f->fail_pwrite_nospc = 1;
        }
        return w;
    }
    return posix()->pwrite(NULL, fd, b, n, o);
}
static int f_fdatasync(void *ctx, int fd)
{
    faulty *f = ctx;
    f->fdatasyncs++;
    if (f->sync_delay_us)
        usleep((useconds_t)f->sync_delay_us);
    if (atomic_load(&f->eio_at_sync) > 0 && atomic_fetch_sub(&f->eio_at_sync, 1) == 1)
        return -EIO;
    if (f->fail_fdatasync > 0) {
        f->fail_fdatasync--;
        return -EIO;
    }
    return posix()->fdatasync(NULL, fd);
}
static int f_ftruncate(void *ctx, int fd, uint64_t s)
{
    return posix()->ftruncate(NULL, fd, s);
}
static int f_size(void *ctx, int fd, uint64_t *s)
{
    return posix()->file_size(NULL, fd, s);
}
static int f_rename(void *ctx, const char *a, const char *b)
{
    return posix()->rename(NULL, a, b);
}
static int f_unlink(void *ctx, const char *p)
{
    return posix()->unlink(NULL, p);
}
static int f_mkdir(void *ctx, const char *p, int m)
{
    return posix()->mkdir(NULL, p, m);
}
static int f_sync_dir(void *ctx, const char *p)
{
    ((faulty *)ctx)->sync_dirs++;
    return posix()->sync_dir(NULL, p);
}
static int f_list(void *ctx, const char *p, store_io_dirent_cb cb, void *c)
{
    return posix()->list_dir(NULL, p, cb, c);
}

static int f_lock(void *ctx, const char *p)
{
    return posix()->lock_dir(NULL, p);
}
static void f_unlock(void *ctx, int h)
{
    posix()->unlock_dir(NULL, h);
}

static void faulty_init(faulty *f)
{
    memset(f, 0, sizeof *f);
    f->io = (store_io){f,           f_open,      f_close, f_pread,  f_pwrite,
                       f_fdatasync, f_ftruncate, f_size,  f_rename, f_unlink,
                       f_mkdir,     f_sync_dir,  f_list,  f_lock,   f_unlock};
}

static store_log *open_faulty(const char *dir, faulty *f, uint64_t segment_bytes)
{
    store_config cfg;
    store_config_init(&cfg, dir);
    cfg.io = &f->io;
    if (segment_bytes)
        cfg.segment_bytes_max = segment_bytes;
    store_log *log = NULL;
    sk_error err;
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    return log;
}

static int append(store_log *log, uint64_t n)
{
    st_event e;
    st_make(&e, "f", n, 50);
    sk_error err;
    return store_log_append(log, ev_str_of("s"), STORE_EXPECT_ANY, &e.ev, 1, NULL, &err);
}

static void test_failed_fdatasync_is_sticky(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    faulty f;
    faulty_init(&f);
    store_log *log = open_faulty(dir, &f, 0);
    for (uint64_t i = 0; i < 5; i++)
        assert_int_equal(append(log, i), 0);
    f.fail_fdatasync = 1;
    int syncs_before = f.fdatasyncs;
    assert_int_equal(append(log, 5), SK_EFAILED); /* never acknowledged */
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_int_equal(st.state, STORE_STATE_FAILED);
    assert_int_equal(append(log, 6), SK_EFAILED); /* refused, no retry of the fsync */
    assert_int_equal(f.fdatasyncs, syncs_before + 1);
    sk_error err;
    assert_int_equal(store_log_recover(log, &err), 0);
    assert_int_equal(store_log_head(log), 5); /* the unacknowledged event is gone */
    assert_int_equal(append(log, 5), 0);
    assert_int_equal(store_log_head(log), 6);
    store_log_close(log);
    log = st_open(dir, 0);
    assert_int_equal(store_log_head(log), 6);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

typedef struct outcomes {
    int ok, failed, other;
} outcomes;

static void count_outcome(void *ctx, const store_append_result *res)
{
    outcomes *o = ctx;
    o->ok += res->status == 0;
    o->failed += res->status == SK_EFAILED;
    o->other += res->status != 0 && res->status != SK_EFAILED;
}

/* Several appends and a barrier wait in one batch whose fdatasync fails: every one
 * completes with SK_EFAILED (manual commit makes the batch deterministic), none is
 * acknowledged. */
static void test_failed_fdatasync_fails_the_whole_batch(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    faulty f;
    faulty_init(&f);
    store_config cfg;
    store_config_init(&cfg, dir);
    cfg.io = &f.io;
    cfg.manual_commit = 1;
    store_log *log = NULL;
    sk_error err;
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    outcomes o = {0};
    st_event e;
    for (uint64_t i = 0; i < 4; i++) {
        st_make(&e, "f", i, 50);
        assert_int_equal(store_log_append_async(log, ev_str_of("s"), STORE_EXPECT_ANY, &e.ev, 1,
                                                count_outcome, &o, &err),
                         0);
    }
    assert_int_equal(store_log_commit(log), 4);
    assert_int_equal(o.ok, 4);
    f.fail_fdatasync = 1;
    for (uint64_t i = 4; i < 14; i++) {
        st_make(&e, "f", i, 50);
        assert_int_equal(store_log_append_async(log, ev_str_of(i % 2 ? "s" : "t"), STORE_EXPECT_ANY,
                                                &e.ev, 1, count_outcome, &o, &err),
                         0);
    }
    /* a barrier behind them vouches for nothing: it fails with the batch */
    assert_int_equal(
        store_log_barrier_async(log, ev_str_of("s"), STORE_EXPECT_ANY, count_outcome, &o, &err), 0);
    store_log_commit(log);
    assert_int_equal(o.ok, 4);
    assert_int_equal(o.failed, 11);
    assert_int_equal(o.other, 0);
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_int_equal(st.state, STORE_STATE_FAILED);
    st_make(&e, "f", 14, 50);
    assert_int_equal(store_log_append_async(log, ev_str_of("s"), STORE_EXPECT_ANY, &e.ev, 1,
                                            count_outcome, &o, &err),
                     SK_EFAILED);
    assert_int_equal(store_log_recover(log, &err), 0);
    assert_int_equal(store_log_head(log), 4);
    assert_int_equal(store_log_stream_version(log, ev_str_of("s")), 4);
    assert_int_equal(store_log_stream_version(log, ev_str_of("t")), 0);
    st_make(&e, "f", 4, 50);
    int rc = store_log_append_async(log, ev_str_of("s"), STORE_EXPECT_ANY, &e.ev, 1, count_outcome,
                                    &o, &err);
    store_log_get_stats(log, &st);
    if (rc != 0)
        fail_msg("append after recover: %d (%s), state %d", rc, err.message, (int)st.state);
    assert_int_equal(store_log_commit(log), 1);
    assert_int_equal(o.ok, 5);
    store_log_close(log);
    log = st_open(dir, 0);
    assert_int_equal(store_log_head(log), 5);
    store_reader *r;
    assert_int_equal(store_reader_open(log, 0, &r), 0);
    ev_event ev;
    for (uint64_t i = 0; i < 5; i++) {
        assert_int_equal(store_reader_next(r, &ev, &err), 1);
        char want[16];
        int n = snprintf(want, sizeof want, "f:%llu:", (unsigned long long)i);
        assert_memory_equal(ev.payload, want, (size_t)n);
    }
    assert_int_equal(store_reader_next(r, &ev, &err), 0);
    store_reader_close(r);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

static void test_enospc_rejects_batch_cleanly(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    faulty f;
    faulty_init(&f);
    store_log *log = open_faulty(dir, &f, 0);
    for (uint64_t i = 0; i < 3; i++)
        assert_int_equal(append(log, i), 0);
    char seg[4400];
    st_last_segment(dir, seg, sizeof seg);
    struct stat before, after;
    assert_int_equal(stat(seg, &before), 0);
    f.fail_pwrite_nospc = 1;
    int syncs = f.fdatasyncs;
    assert_int_equal(append(log, 3), -ENOSPC);
    /* The cut is made durable before the append is reported as failed, so a crash cannot
     * bring part of the batch back. */
    assert_int_equal(f.fdatasyncs, syncs + 1);
    f.short_writes = 1;
    f.nospc_after_short = 1; /* half the batch reaches the file, then the disk is full */
    assert_int_equal(append(log, 3), -ENOSPC);
    assert_int_equal(stat(seg, &after), 0);
    assert_int_equal(after.st_size, before.st_size); /* nothing half-written left */
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_int_equal(st.state, STORE_STATE_OK);
    assert_int_equal(store_log_head(log), 3);
    assert_int_equal(append(log, 3), 0); /* space again: the log goes on */
    store_log_close(log);
    log = st_open(dir, 0);
    assert_int_equal(store_log_head(log), 4);
    store_reader *r;
    assert_int_equal(store_reader_open(log, 0, &r), 0);
    ev_event ev;
    sk_error err;
    for (uint64_t i = 0; i < 4; i++) {
        assert_int_equal(store_reader_next(r, &ev, &err), 1);
        char want[16];
        int n = snprintf(want, sizeof want, "f:%llu:", (unsigned long long)i);
        assert_memory_equal(ev.payload, want, (size_t)n);
    }
    store_reader_close(r);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

static void test_short_writes_are_retried(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    faulty f;
    faulty_init(&f);
    store_log *log = open_faulty(dir, &f, 0);
    f.short_writes = 50;
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(append(log, i), 0);
    assert_true(f.short_writes < 50);
    store_log_close(log);
    store_verify_report rep;
    assert_int_equal(store_log_verify(dir, NULL, NULL, NULL, NULL, &rep), 0);
    assert_int_equal(rep.records, 10);
    st_rmrf(dir);
    free(dir);
}

static void test_new_segment_directory_entry_is_synced(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    faulty f;
    faulty_init(&f);
    store_log *log = open_faulty(dir, &f, 1024);
    int at_open = f.sync_dirs;
    assert_true(at_open >= 1); /* segment 0 was created */
    uint64_t i = 0;
    store_log_stats st;
    do {
        assert_int_equal(append(log, i++), 0);
        store_log_get_stats(log, &st);
    } while (st.segments < 3 && i < 1000);
    assert_int_equal(st.segments, 3);
    /* Each rollover syncs the directory for the new segment (and for the renamed index
     * and checkpoint files): at least one sync per new segment. */
    assert_true(f.sync_dirs >= at_open + 2);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

static void test_one_writer_per_directory(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *a = st_open(dir, 0);
    assert_non_null(a);
    store_config cfg;
    store_config_init(&cfg, dir);
    store_log *b = NULL;
    sk_error err;
    assert_int_equal(store_log_open(&cfg, &b, &err), SK_EBUSY);
    assert_null(b);
    assert_non_null(strstr(err.message, "in use"));
    assert_int_equal(store_log_repair(dir, NULL, 0, &err), SK_EBUSY);
    cfg.read_only = 1; /* readers (skaldctl) take no lock */
    assert_int_equal(store_log_open(&cfg, &b, &err), 0);
    store_log_close(b);
    assert_int_equal(append(a, 0), 0);
    store_log_close(a);
    cfg.read_only = 0;
    assert_int_equal(store_log_open(&cfg, &b, &err), 0); /* released at close */
    assert_int_equal(store_log_head(b), 1);
    store_log_close(b);
    st_rmrf(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------
 * The pipeline: while one group is in fdatasync the appender writes the next. A fault in
 * the middle must leave exactly the acknowledged appends in the log, each stream's
 * versions without a gap, and the answers in agreement with what is read back.
 */
#define PIPE_APPENDS 3000
#define PIPE_STREAMS 7

typedef struct pipe_result {
    _Atomic int done;
    int status;
    uint64_t version;
} pipe_result;

static void on_pipe_result(void *ctx, const store_append_result *res)
{
    pipe_result *r = ctx;
    r->status = res->status;
    r->version = res->first_version;
    atomic_store(&r->done, 1);
}

static void pipe_stream_name(uint64_t i, char *out, size_t size)
{
    snprintf(out, size, "p%llu", (unsigned long long)(i % PIPE_STREAMS));
}

/* Appends PIPE_APPENDS events (asynchronously, in bursts so several batches are in
 * flight) and waits for every answer. */
static void pipe_run(store_log *log, pipe_result *res)
{
    for (uint64_t i = 0; i < PIPE_APPENDS; i++) {
        st_event e;
        st_make(&e, "f", i, 40);
        char name[16];
        pipe_stream_name(i, name, sizeof name);
        sk_error err;
        int rc;
        while ((rc = store_log_append_async(log, ev_str_of(name), STORE_EXPECT_ANY, &e.ev, 1,
                                            on_pipe_result, &res[i], &err)) == SK_EBUSY)
            usleep(100);
        if (rc != 0) { /* refused at once (the log failed): an answer too */
            res[i].status = rc;
            atomic_store(&res[i].done, 1);
        }
        if (i % 200 == 199)
            usleep(1000);
    }
    for (uint64_t i = 0; i < PIPE_APPENDS; i++)
        while (!atomic_load(&res[i].done))
            usleep(100);
}

/* Reopens dir and checks it holds exactly the appends answered 0, at the versions their
 * answers gave, every stream numbered 1, 2, 3, ... */
static void pipe_check(const char *dir, const pipe_result *res, int *ok_out, int *failed_out)
{
    int ok = 0, failed = 0;
    bool *seen = calloc(PIPE_APPENDS, sizeof *seen);
    assert_non_null(seen);
    store_log *log = st_open(dir, 0);
    for (uint64_t s = 0; s < PIPE_STREAMS; s++) {
        char name[16];
        pipe_stream_name(s, name, sizeof name);
        store_reader *r;
        assert_int_equal(store_reader_open_stream(log, ev_str_of(name), 1, &r), 0);
        ev_event ev;
        sk_error err;
        uint64_t want_version = 1;
        while (store_reader_next(r, &ev, &err) == 1) {
            assert_int_equal(ev.version, want_version++);
            unsigned long long i = 0;
            assert_int_equal(sscanf((const char *)ev.payload, "f:%llu:", &i), 1);
            assert_true(i < PIPE_APPENDS && i % PIPE_STREAMS == s && !seen[i]);
            seen[i] = true;
            assert_int_equal(res[i].status, 0); /* in the log: it was acknowledged */
            assert_int_equal(res[i].version, ev.version);
        }
        store_reader_close(r);
    }
    for (uint64_t i = 0; i < PIPE_APPENDS; i++) {
        if (res[i].status == 0)
            assert_true(seen[i]); /* acknowledged: in the log */
        ok += res[i].status == 0;
        failed += res[i].status != 0;
    }
    store_log_close(log);
    free(seen);
    *ok_out = ok;
    *failed_out = failed;
}

static void test_pipeline_enospc_keeps_order(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    faulty f;
    faulty_init(&f);
    f.sync_delay_us = 2000; /* the appender writes while a group syncs */
    atomic_store(&f.nospc_at_write, 3);
    store_log *log = open_faulty(dir, &f, (uint64_t)64 * 1024); /* rolls too */
    pipe_result *res = calloc(PIPE_APPENDS, sizeof *res);
    assert_non_null(res);
    pipe_run(log, res);
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_int_equal(st.state, STORE_STATE_OK);
    assert_int_equal(append(log, 0), 0); /* and it still takes appends */
    store_log_close(log);
    int ok, failed, nospc = 0, first = -1, last = -1;
    for (int i = 0; i < PIPE_APPENDS; i++) {
        if (res[i].status != -ENOSPC)
            continue;
        nospc++;
        last = i;
        if (first < 0)
            first = i;
    }
    pipe_check(dir, res, &ok, &failed);
    assert_true(nospc > 0);
    assert_int_equal(failed, nospc); /* nothing failed but the batch that met ENOSPC */
    /* One batch: a run of consecutive appends (how long depends on how many queued
     * while the first groups synced, up to all of them on a loaded machine). */
    assert_int_equal(last - first + 1, nospc);
    assert_true(first > 0); /* the batches written before it are kept */
    free(res);
    st_rmrf(dir);
    free(dir);
}

static void test_pipeline_failed_fdatasync_keeps_only_acknowledged(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    faulty f;
    faulty_init(&f);
    f.sync_delay_us = 2000;
    atomic_store(&f.eio_at_sync, 2); /* the first group is durable, the second fails */
    store_log *log = open_faulty(dir, &f, 0);
    pipe_result *res = calloc(PIPE_APPENDS, sizeof *res);
    assert_non_null(res);
    pipe_run(log, res);
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_int_equal(st.state, STORE_STATE_FAILED);
    store_log_close(log); /* cuts back to what was durable */
    int ok, failed;
    pipe_check(dir, res, &ok, &failed);
    assert_true(ok > 0);
    assert_true(failed > 0);
    free(res);
    st_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_fdatasync_is_sticky),
        cmocka_unit_test(test_failed_fdatasync_fails_the_whole_batch),
        cmocka_unit_test(test_enospc_rejects_batch_cleanly),
        cmocka_unit_test(test_short_writes_are_retried),
        cmocka_unit_test(test_new_segment_directory_entry_is_synced),
        cmocka_unit_test(test_one_writer_per_directory),
        cmocka_unit_test(test_pipeline_enospc_keeps_order),
        cmocka_unit_test(test_pipeline_failed_fdatasync_keeps_only_acknowledged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
