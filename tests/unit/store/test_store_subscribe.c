/*
 * test_store_subscribe.c -- subscriptions: order and exactly-once across rollovers, waits
 * with deadlines, stop from another thread, many subscribers (also one thread waiting on
 * many), the durable head in each fsync mode, recovery in place under open readers, and
 * a read-only log following its writer.
 */
#include "storetest.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <time.h>
#include <cmocka.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A seam that can fail fdatasync and counts the calls. */
typedef struct sync_ctl {
    _Atomic int fail_next;
    _Atomic int calls;
} sync_ctl;

/* Whether fd is a segment file: the fault is meant for an append's fdatasync, not for
 * the sealer thread syncing a sealed segment's index files at the same moment. */
static int is_segment_fd(int fd)
{
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 4)
        return 0;
    target[n] = '\0';
    return strcmp(target + n - 4, ".log") == 0;
}

static int ctl_fdatasync(void *ctx, int fd)
{
    sync_ctl *c = ctx;
    atomic_fetch_add(&c->calls, 1);
    if (is_segment_fd(fd) && atomic_exchange(&c->fail_next, 0))
        return -EIO;
    return store_io_posix()->fdatasync(NULL, fd);
}

static void ctl_io(store_io *io, sync_ctl *c)
{
    *io = *store_io_posix();
    io->ctx = c;
    io->fdatasync = ctl_fdatasync;
}

static store_log *open_mode(const char *dir, store_fsync_mode mode, uint32_t interval_ms,
                            uint64_t segment_bytes, const store_io *io)
{
    store_config cfg;
    store_config_init(&cfg, dir);
    cfg.fsync_mode = mode;
    cfg.fsync_interval_ms = interval_ms;
    if (segment_bytes)
        cfg.segment_bytes_max = segment_bytes;
    cfg.io = io;
    store_log *log = NULL;
    sk_error err = {0};
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    return log;
}

static int append_n(store_log *log, const char *stream, uint64_t n, size_t extra)
{
    st_event e;
    st_make(&e, stream, n, extra);
    sk_error err = {0};
    return store_log_append(log, ev_str_of(stream), STORE_EXPECT_ANY, &e.ev, 1, NULL, &err);
}

/* Reads what is available; checks each event is the next position. */
static uint64_t drain_sub(store_sub *sub, uint64_t *expect)
{
    ev_event ev;
    sk_error err = {0};
    uint64_t n = 0;
    int rc;
    while ((rc = store_sub_next(sub, &ev, &err)) == 1) {
        assert_int_equal(ev.position, *expect);
        (*expect)++;
        n++;
    }
    assert_int_equal(rc, 0);
    return n;
}

static void test_order_across_rollovers(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = open_mode(dir, STORE_FSYNC_ALWAYS, 10, 4096, NULL);
    for (uint64_t i = 0; i < 50; i++)
        assert_int_equal(append_n(log, "a", i, 100), 0);
    store_sub *from0, *from20, *future;
    assert_int_equal(store_sub_open(log, 0, &from0), 0);
    assert_int_equal(store_sub_open(log, 20, &from20), 0);
    assert_int_equal(store_sub_open(log, 120, &future), 0);
    uint64_t e0 = 0, e20 = 20, ef = 120;
    assert_int_equal(drain_sub(from0, &e0), 50);
    assert_int_equal(drain_sub(from20, &e20), 30);
    assert_int_equal(drain_sub(future, &ef), 0);
    for (uint64_t i = 50; i < 150; i++)
        assert_int_equal(append_n(log, i % 2 ? "a" : "b", i, 100), 0);
    assert_true(st_count_files(dir, ".log") > 5); /* the events span many segments */
    assert_int_equal(drain_sub(from0, &e0), 100);
    assert_int_equal(drain_sub(from20, &e20), 100);
    assert_int_equal(drain_sub(future, &ef), 30);
    assert_int_equal(store_sub_position(from0), 150);
    store_sub_close(from0);
    store_sub_close(from20);
    store_sub_close(future);
    assert_int_equal(store_log_close(log), 0);
    st_rmrf(dir);
    free(dir);
}

static void test_wait_deadline(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = open_mode(dir, STORE_FSYNC_ALWAYS, 10, 0, NULL);
    store_sub *sub;
    assert_int_equal(store_sub_open(log, 0, &sub), 0);
    uint64_t expect = 0;
    assert_int_equal(drain_sub(sub, &expect), 0);
    uint64_t t0 = now_ms();
    assert_int_equal(store_sub_wait(sub, 80), 0);
    assert_true(now_ms() - t0 >= 70);
    assert_int_equal(append_n(log, "a", 0, 10), 0);
    assert_int_equal(store_sub_wait(sub, 5000), 1); /* signalled: returns at once */
    assert_int_equal(drain_sub(sub, &expect), 1);
    store_sub_close(sub);
    assert_int_equal(store_log_close(log), 0);
    st_rmrf(dir);
    free(dir);
}

typedef struct waiter_arg {
    store_sub *sub;
    int wait_rc, next_rc;
} waiter_arg;

static void *wait_forever(void *p)
{
    waiter_arg *a = p;
    ev_event ev;
    sk_error err = {0};
    while ((a->next_rc = store_sub_next(a->sub, &ev, &err)) >= 0)
        if (a->next_rc == 0 && (a->wait_rc = store_sub_wait(a->sub, -1)) < 0)
            break;
    return NULL;
}

static void test_stop_from_another_thread(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = open_mode(dir, STORE_FSYNC_ALWAYS, 10, 0, NULL);
    store_sub *sub;
    assert_int_equal(store_sub_open(log, 0, &sub), 0);
    waiter_arg a = {sub, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_forever, &a);
    assert_int_equal(append_n(log, "a", 0, 10), 0);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    store_sub_stop(sub);
    pthread_join(t, NULL);
    assert_true(a.wait_rc == SK_ECANCELED || a.next_rc == SK_ECANCELED);
    ev_event ev;
    sk_error err = {0};
    assert_int_equal(store_sub_next(sub, &ev, &err), SK_ECANCELED);
    assert_int_equal(store_sub_wait(sub, 1000), SK_ECANCELED);
    store_sub_close(sub);
    assert_int_equal(store_log_close(log), 0);
    st_rmrf(dir);
    free(dir);
}

/* Many subscribers on their own threads, one thread on many through epoll, while two
 * appenders run: each sees every event once, in order. */
#define SUBS_THREADS 6
#define SUBS_EPOLL   16

typedef struct tail_arg {
    store_sub *sub;
    uint64_t start, total, seen;
    int error;
} tail_arg;

static void *tail_thread(void *p)
{
    tail_arg *a = p;
    ev_event ev;
    sk_error err = {0};
    uint64_t expect = a->start;
    while (a->seen < a->total) {
        int rc = store_sub_next(a->sub, &ev, &err);
        if (rc == 1) {
            if (ev.position != expect++)
                a->error = 1;
            a->seen++;
        } else if (rc == 0) {
            if (store_sub_wait(a->sub, 10000) != 1)
                a->error = 2;
        } else {
            a->error = rc;
            break;
        }
    }
    return NULL;
}

typedef struct epoll_arg {
    store_sub *subs[SUBS_EPOLL];
    uint64_t total, seen[SUBS_EPOLL];
    int error;
} epoll_arg;

static void *epoll_thread(void *p)
{
    epoll_arg *a = p;
    int ep = epoll_create1(0);
    for (int i = 0; i < SUBS_EPOLL; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, store_sub_fd(a->subs[i]), &e);
    }
    int done = 0;
    bool ready[SUBS_EPOLL];
    for (int i = 0; i < SUBS_EPOLL; i++)
        ready[i] = true;
    uint64_t deadline = now_ms() + 60000;
    while (done < SUBS_EPOLL && now_ms() < deadline) {
        for (int i = 0; i < SUBS_EPOLL; i++) {
            ev_event ev;
            sk_error err = {0};
            while (ready[i] && store_sub_next(a->subs[i], &ev, &err) == 1) {
                if (ev.position != a->seen[i]++)
                    a->error = 1;
                if (a->seen[i] == a->total)
                    done++;
            }
            ready[i] = false;
        }
        struct epoll_event evs[SUBS_EPOLL];
        int n = epoll_wait(ep, evs, SUBS_EPOLL, 1000);
        for (int k = 0; k < n; k++)
            ready[evs[k].data.u32] = true;
    }
    if (done < SUBS_EPOLL)
        a->error = 3;
    close(ep);
    return NULL;
}

typedef struct append_arg {
    store_log *log;
    const char *stream;
    uint64_t count;
} append_arg;

static void *append_thread(void *p)
{
    append_arg *a = p;
    for (uint64_t i = 0; i < a->count; i++)
        if (append_n(a->log, a->stream, i, 40) != 0)
            abort();
    return NULL;
}

static void test_many_subscribers(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = open_mode(dir, STORE_FSYNC_ALWAYS, 10, 64 << 10, NULL);
    uint64_t per = (uint64_t)(2000 * st_scale()) + 20, total = 2 * per;
    tail_arg tails[SUBS_THREADS];
    pthread_t tt[SUBS_THREADS], et, at[2];
    epoll_arg ea = {.total = total};
    for (int i = 0; i < SUBS_THREADS; i++) {
        tails[i] = (tail_arg){.total = total};
        assert_int_equal(store_sub_open(log, 0, &tails[i].sub), 0);
        pthread_create(&tt[i], NULL, tail_thread, &tails[i]);
    }
    for (int i = 0; i < SUBS_EPOLL; i++)
        assert_int_equal(store_sub_open(log, 0, &ea.subs[i]), 0);
    pthread_create(&et, NULL, epoll_thread, &ea);
    append_arg aa[2] = {{log, "x", per}, {log, "y", per}};
    for (int i = 0; i < 2; i++)
        pthread_create(&at[i], NULL, append_thread, &aa[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(at[i], NULL);
    for (int i = 0; i < SUBS_THREADS; i++) {
        pthread_join(tt[i], NULL);
        assert_int_equal(tails[i].error, 0);
        assert_int_equal(tails[i].seen, total);
        store_sub_close(tails[i].sub);
    }
    pthread_join(et, NULL);
    assert_int_equal(ea.error, 0);
    for (int i = 0; i < SUBS_EPOLL; i++) {
        assert_int_equal(ea.seen[i], total);
        store_sub_close(ea.subs[i]);
    }
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_int_equal(st.readers, 0);
    assert_int_equal(st.subscriptions, 0);
    assert_int_equal(store_log_close(log), 0);
    st_rmrf(dir);
    free(dir);
}

/* fsync=interval: appends are acknowledged before they are durable; subscribers see
 * them only after the periodic fdatasync. */
static void test_interval_waits_for_the_sync(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    sync_ctl ctl = {0};
    store_io io;
    ctl_io(&io, &ctl);
    store_log *log = open_mode(dir, STORE_FSYNC_INTERVAL, 300, 0, &io);
    store_sub *sub;
    assert_int_equal(store_sub_open(log, 0, &sub), 0);
    uint64_t expect = 0;
    int syncs = atomic_load(&ctl.calls);
    assert_int_equal(append_n(log, "a", 0, 10), 0);
    assert_int_equal(append_n(log, "a", 1, 10), 0);
    uint64_t durable = store_log_durable_head(log);
    if (atomic_load(&ctl.calls) == syncs) {
        /* acknowledged, not yet synced: written head 2, durable head 0 */
        assert_int_equal(store_log_head(log), 2);
        assert_int_equal(durable, 0);
    }
    uint64_t seen = 0;
    for (int rounds = 0; seen < 2 && rounds < 10; rounds++) {
        seen += drain_sub(sub, &expect);
        assert_true(expect <= store_log_durable_head(log));
        if (seen < 2)
            assert_int_equal(store_sub_wait(sub, 5000), 1);
    }
    assert_int_equal(seen, 2);
    assert_true(atomic_load(&ctl.calls) > syncs);
    store_sub_close(sub);
    assert_int_equal(store_log_close(log), 0);
    st_rmrf(dir);
    free(dir);
}

/* fsync=never: nothing is synced, so subscribers follow the written head. */
static void test_never_follows_the_written_head(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    sync_ctl ctl = {0};
    store_io io;
    ctl_io(&io, &ctl);
    store_log *log = open_mode(dir, STORE_FSYNC_NEVER, 10, 0, &io);
    store_sub *sub;
    assert_int_equal(store_sub_open(log, 0, &sub), 0);
    int syncs = atomic_load(&ctl.calls);
    assert_int_equal(append_n(log, "a", 0, 10), 0);
    uint64_t expect = 0;
    assert_int_equal(drain_sub(sub, &expect), 1);
    assert_int_equal(atomic_load(&ctl.calls), syncs);
    store_sub_close(sub);
    assert_int_equal(store_log_close(log), 0);
    st_rmrf(dir);
    free(dir);
}

/* A failed fdatasync: the log recovers in place while a reader, a subscription and a
 * waiting subscriber stay open; none of them sees the failed batch, and all carry on. */
static void test_recover_in_place_keeps_readers(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    sync_ctl ctl = {0};
    store_io io;
    ctl_io(&io, &ctl);
    store_log *log = open_mode(dir, STORE_FSYNC_ALWAYS, 10, 2048, &io);
    for (uint64_t i = 0; i < 30; i++)
        assert_int_equal(append_n(log, "a", i, 100), 0);
    store_reader *reader, *stream_reader;
    store_sub *sub, *waiting;
    assert_int_equal(store_reader_open(log, 0, &reader), 0);
    assert_int_equal(store_reader_open_stream(log, ev_str_of("a"), 1, &stream_reader), 0);
    assert_int_equal(store_sub_open(log, 0, &sub), 0);
    assert_int_equal(store_sub_open(log, 30, &waiting), 0);
    ev_event ev;
    sk_error err = {0};
    for (int i = 0; i < 10; i++) {
        assert_int_equal(store_reader_next(reader, &ev, &err), 1);
        assert_int_equal(store_reader_next(stream_reader, &ev, &err), 1);
    }
    uint64_t expect = 0;
    assert_int_equal(drain_sub(sub, &expect), 30);
    tail_arg wa = {.sub = waiting, .start = 30, .total = 5};
    pthread_t wt;
    pthread_create(&wt, NULL, tail_thread, &wa);

    atomic_store(&ctl.fail_next, 1);
    assert_int_equal(append_n(log, "a", 999, 100), SK_EFAILED);
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_int_equal(st.state, STORE_STATE_FAILED);
    assert_int_equal(st.readers, 4);
    assert_int_equal(store_log_recover(log, &err), 0);
    assert_int_equal(store_log_head(log), 30);
    assert_int_equal(drain_sub(sub, &expect), 0);

    for (uint64_t i = 30; i < 60; i++)
        assert_int_equal(append_n(log, "a", i, 100), 0);
    assert_int_equal(drain_sub(sub, &expect), 30);
    uint64_t n = 10;
    while (store_reader_next(reader, &ev, &err) == 1) {
        assert_int_equal(ev.position, n);
        assert_int_not_equal(ev.payload[2], '9'); /* "a:999" never shows */
        n++;
    }
    assert_int_equal(n, 60);
    uint64_t v = 11;
    while (store_reader_next(stream_reader, &ev, &err) == 1)
        assert_int_equal(ev.version, v++);
    assert_int_equal(v, 61);
    pthread_join(wt, NULL);
    assert_int_equal(wa.error, 0);
    store_log_get_stats(log, &st);
    assert_int_equal(st.recoveries, 1);
    store_sub_close(sub);
    store_sub_close(waiting);
    store_reader_close(reader);
    store_reader_close(stream_reader);
    assert_int_equal(store_log_close(log), 0);
    st_rmrf(dir);
    free(dir);
}

/* A read-only log in "another process" follows the writer: it sees every event the
 * writer made durable, across rollovers, and none it did not. */
static void test_read_only_follows_the_writer(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *writer = open_mode(dir, STORE_FSYNC_ALWAYS, 10, 4096, NULL);
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(append_n(writer, "w", i, 100), 0);
    store_config cfg;
    store_config_init(&cfg, dir);
    cfg.read_only = 1;
    store_log *follower = NULL;
    sk_error err = {0};
    assert_int_equal(store_log_open(&cfg, &follower, &err), 0);
    store_sub *sub;
    assert_int_equal(store_sub_open(follower, 0, &sub), 0);
    uint64_t total = (uint64_t)(400 * st_scale()) + 150;
    tail_arg ta = {.sub = sub, .total = total};
    pthread_t tt, at;
    pthread_create(&tt, NULL, tail_thread, &ta);
    append_arg aa = {writer, "w2", total - 10};
    pthread_create(&at, NULL, append_thread, &aa);
    pthread_join(at, NULL);
    pthread_join(tt, NULL);
    assert_int_equal(ta.error, 0);
    assert_int_equal(ta.seen, total);
    assert_true(store_log_durable_head(follower) <= store_log_durable_head(writer));
    assert_true(st_count_files(dir, ".log") > 3);
    /* the follower's stream reads work on what it followed */
    store_reader *r;
    assert_int_equal(store_reader_open_stream(follower, ev_str_of("w2"), 1, &r), 0);
    ev_event ev;
    uint64_t v = 1;
    while (store_reader_next(r, &ev, &err) == 1)
        assert_int_equal(ev.version, v++);
    assert_int_equal(v, total - 10 + 1);
    store_reader_close(r);
    store_sub_close(sub);
    assert_int_equal(store_log_close(follower), 0);
    assert_int_equal(store_log_close(writer), 0);
    st_rmrf(dir);
    free(dir);
}

/* A gate in the I/O seam: once armed, the next call through it waits until it is opened. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int armed, waiting, open;
} gate;

static void gate_pass(gate *g)
{
    pthread_mutex_lock(&g->mu);
    if (g->armed) {
        g->armed = 0;
        g->waiting = 1;
        pthread_cond_broadcast(&g->cond);
        while (!g->open)
            pthread_cond_wait(&g->cond, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

/* Waits (at most 10 s) until a call is held at the gate. */
static void gate_wait_held(gate *g)
{
    uint64_t deadline = now_ms() + 10000;
    pthread_mutex_lock(&g->mu);
    while (!g->waiting && now_ms() < deadline) {
        pthread_mutex_unlock(&g->mu);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&g->mu);
    }
    int held = g->waiting;
    pthread_mutex_unlock(&g->mu);
    assert_true(held);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

/* The follower's seam: a gate on closing the DURABLE file (just after reading it) and one
 * on file_size (which store_log_follow calls holding log->mu). */
typedef struct follow_gates {
    gate durable_close, file_size;
    _Atomic int durable_fd;
} follow_gates;

static int fg_open(void *ctx, const char *path, int flags, int mode)
{
    follow_gates *g = ctx;
    int fd = store_io_posix()->open(NULL, path, flags, mode);
    size_t n = strlen(path);
    if (fd >= 0 && n >= 8 && strcmp(path + n - 8, "/DURABLE") == 0)
        atomic_store(&g->durable_fd, fd);
    return fd;
}

static int fg_close(void *ctx, int fd)
{
    follow_gates *g = ctx;
    if (fd == atomic_load(&g->durable_fd))
        gate_pass(&g->durable_close);
    return store_io_posix()->close(NULL, fd);
}

static int fg_file_size(void *ctx, int fd, uint64_t *size_out)
{
    gate_pass(&((follow_gates *)ctx)->file_size);
    return store_io_posix()->file_size(NULL, fd, size_out);
}

typedef struct next_arg {
    store_sub *sub;
    int rc;
    ev_event ev;
} next_arg;

static void *next_thread(void *p)
{
    next_arg *a = p;
    sk_error err = {0};
    a->rc = store_sub_next(a->sub, &a->ev, &err);
    return NULL;
}

/* Two subscriptions of one read-only log follow on two threads. B reads DURABLE (3) and
 * is held; the writer moves on to 5; A reads 5 and follows holding log->mu; B, let go,
 * waits for the lock. B must not then store its older 3 over A's 5: a durable head
 * moving back hides events already followed and answers SK_ETRUNCATED to a subscription
 * that delivered past it. store_log_follow read the head and durable head before taking
 * log->mu. */
static void test_follower_durable_head_never_moves_back(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *writer = open_mode(dir, STORE_FSYNC_ALWAYS, 10, 0, NULL);
    for (uint64_t i = 0; i < 2; i++)
        assert_int_equal(append_n(writer, "w", i, 10), 0);
    follow_gates g = {
        .durable_close = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER},
        .file_size = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER},
        .durable_fd = -1};
    store_io io = *store_io_posix();
    io.ctx = &g;
    io.open = fg_open;
    io.close = fg_close;
    io.file_size = fg_file_size;
    store_config cfg;
    store_config_init(&cfg, dir);
    cfg.read_only = 1;
    cfg.io = &io;
    store_log *follower = NULL;
    sk_error err = {0};
    assert_int_equal(store_log_open(&cfg, &follower, &err), 0);
    assert_int_equal(store_log_durable_head(follower), 2);
    store_sub *a_sub, *b_sub;
    assert_int_equal(store_sub_open(follower, 2, &a_sub), 0);
    assert_int_equal(store_sub_open(follower, 2, &b_sub), 0);

    assert_int_equal(append_n(writer, "w", 2, 10), 0); /* DURABLE: 3 */
    g.durable_close.armed = 1;
    next_arg b = {.sub = b_sub};
    pthread_t bt, at;
    pthread_create(&bt, NULL, next_thread, &b);
    gate_wait_held(&g.durable_close); /* B has read 3 */
    for (uint64_t i = 3; i < 5; i++)
        assert_int_equal(append_n(writer, "w", i, 10), 0); /* DURABLE: 5 */
    g.file_size.armed = 1;
    next_arg a = {.sub = a_sub};
    pthread_create(&at, NULL, next_thread, &a);
    gate_wait_held(&g.file_size); /* A has read 5 and holds log->mu */
    gate_open(&g.durable_close);  /* B goes on to wait for log->mu */
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    gate_open(&g.file_size);
    pthread_join(at, NULL);
    pthread_join(bt, NULL);
    assert_int_equal(a.rc, 1);
    assert_int_equal(b.rc, 1);
    assert_int_equal(store_log_durable_head(follower), 5);
    assert_int_equal(a.ev.position, 2);
    assert_int_equal(b.ev.position, 2);
    uint64_t a_next = 3, b_next = 3;
    assert_int_equal(drain_sub(a_sub, &a_next), 2);
    assert_int_equal(drain_sub(b_sub, &b_next), 2);
    store_sub_close(a_sub);
    store_sub_close(b_sub);
    assert_int_equal(store_log_close(follower), 0);
    assert_int_equal(store_log_close(writer), 0);
    st_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_across_rollovers),
        cmocka_unit_test(test_wait_deadline),
        cmocka_unit_test(test_stop_from_another_thread),
        cmocka_unit_test(test_many_subscribers),
        cmocka_unit_test(test_interval_waits_for_the_sync),
        cmocka_unit_test(test_never_follows_the_written_head),
        cmocka_unit_test(test_recover_in_place_keeps_readers),
        cmocka_unit_test(test_read_only_follows_the_writer),
        cmocka_unit_test(test_follower_durable_head_never_moves_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
