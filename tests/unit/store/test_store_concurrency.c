/*
 * test_store_concurrency.c -- 8 threads append at once (asynchronously, many in flight,
 * and synchronously): positions are unique and contiguous, each thread's stream gets
 * versions 1..k in order, and every acknowledged event is readable after a reopen.
 * Also run under ThreadSanitizer (scaled down by SKALD_TEST_SCALE).
 */
#include "storetest.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>
#include <cmocka.h>

#define THREADS 8
#define WINDOW  1000

typedef struct worker {
    store_log *log;
    uint64_t count;
    uint64_t *positions; /* by sequence number */
    uint64_t *versions;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t in_flight, done, failures;
    int id;
    bool async;
} worker;

typedef struct ticket {
    worker *w;
    uint64_t seq;
} ticket;

static void on_done(void *ctx, const store_append_result *res)
{
    ticket *t = ctx;
    worker *w = t->w;
    w->positions[t->seq] = res->status == 0 ? res->first_position : UINT64_MAX;
    w->versions[t->seq] = res->status == 0 ? res->first_version : 0;
    pthread_mutex_lock(&w->mu);
    w->failures += res->status != 0;
    w->in_flight--;
    w->done++;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    free(t);
}

/* No single wait in this test may outlast this: a store that stops completing appends is a
 * failure, reported by aborting (completions still in flight point into the workers). */
#define WAIT_LIMIT_S 240

static struct timespec deadline_from_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += WAIT_LIMIT_S;
    return t;
}

static void give_up(const worker *w, const char *what)
{
    fprintf(stderr, "worker %d: %s for %d s (done %llu of %llu)\n", w->id, what, WAIT_LIMIT_S,
            (unsigned long long)w->done, (unsigned long long)w->count);
    abort();
}

/* Waits (w->mu held) until at most `limit` appends of w are in flight. */
static void wait_in_flight(worker *w, uint64_t limit)
{
    struct timespec deadline = deadline_from_now();
    while (w->in_flight > limit)
        if (pthread_cond_timedwait(&w->cond, &w->mu, &deadline) == ETIMEDOUT)
            give_up(w, "no completion");
}

static int append_async(worker *w, const char *stream, const st_event *e, ticket *t)
{
    sk_error err;
    time_t until = time(NULL) + WAIT_LIMIT_S;
    int rc;
    while ((rc = store_log_append_async(w->log, ev_str_of(stream), STORE_EXPECT_ANY, &e->ev, 1,
                                        on_done, t, &err)) == SK_EBUSY)
        if (time(NULL) > until)
            give_up(w, "queue full");
        else
            sched_yield();
    return rc;
}

static void *run(void *arg)
{
    worker *w = arg;
    char stream[32];
    snprintf(stream, sizeof stream, "thread-%d", w->id);
    for (uint64_t i = 0; i < w->count; i++) {
        st_event e;
        st_make(&e, stream, i, 60);
        if (!w->async) {
            store_append_result res;
            sk_error err;
            int rc =
                store_log_append(w->log, ev_str_of(stream), STORE_EXPECT_ANY, &e.ev, 1, &res, &err);
            w->positions[i] = rc == 0 ? res.first_position : UINT64_MAX;
            w->versions[i] = rc == 0 ? res.first_version : 0;
            w->failures += rc != 0;
            continue;
        }
        pthread_mutex_lock(&w->mu);
        wait_in_flight(w, WINDOW - 1);
        w->in_flight++;
        pthread_mutex_unlock(&w->mu);
        ticket *t = malloc(sizeof *t);
        *t = (ticket){w, i};
        if (append_async(w, stream, &e, t) != 0) {
            free(t);
            pthread_mutex_lock(&w->mu);
            w->in_flight--;
            w->failures++;
            pthread_mutex_unlock(&w->mu);
        }
    }
    pthread_mutex_lock(&w->mu);
    wait_in_flight(w, 0);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Thread t's stream holds versions 1..count with its own payloads, read by version. */
static void check_stream(store_log *log, int t, uint64_t count)
{
    char stream[32];
    snprintf(stream, sizeof stream, "thread-%d", t);
    store_reader *r;
    assert_int_equal(store_reader_open_stream(log, ev_str_of(stream), 1, &r), 0);
    ev_event ev;
    sk_error err;
    for (uint64_t v = 1; v <= count; v++) {
        assert_int_equal(store_reader_next(r, &ev, &err), 1);
        assert_int_equal(ev.version, v);
        char want[64];
        int n = snprintf(want, sizeof want, "%s:%llu:", stream, (unsigned long long)(v - 1));
        assert_memory_equal(ev.payload, want, (size_t)n);
    }
    assert_int_equal(store_reader_next(r, &ev, &err), 0);
    store_reader_close(r);
}

static void run_threads(bool async, uint64_t per_thread)
{
    char *dir = st_tempdir();
    store_log *log = st_open(dir, 1 << 20); /* several segments */
    assert_non_null(log);
    worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.log = log, .count = per_thread, .id = i, .async = async};
        w[i].positions = calloc(per_thread, sizeof(uint64_t));
        w[i].versions = calloc(per_thread, sizeof(uint64_t));
        pthread_mutex_init(&w[i].mu, NULL);
        pthread_cond_init(&w[i].cond, NULL);
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    uint64_t total = per_thread * THREADS;
    assert_int_equal(store_log_head(log), total);
    uint8_t *seen = calloc(total, 1);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(w[i].failures, 0);
        for (uint64_t k = 0; k < per_thread; k++) {
            uint64_t p = w[i].positions[k];
            assert_true(p < total);
            assert_int_equal(seen[p], 0); /* unique */
            seen[p] = 1;
            assert_int_equal(w[i].versions[k], k + 1); /* in order within the stream */
            if (k > 0)
                assert_true(p > w[i].positions[k - 1]);
        }
    }
    free(seen); /* every slot of 0..total-1 was filled once: contiguous */
    /* A stream read across the sealed segments, while the last one's index files may still
     * be being written. */
    for (int i = 0; i < THREADS; i += 3)
        check_stream(log, i, per_thread);
    assert_int_equal(store_log_close(log), 0);
    /* Closed: every sealed segment has its index files. */
    size_t segments = st_count_files(dir, ".log");
    if (async)
        assert_true(segments > 1);
    assert_int_equal(st_count_files(dir, ".sidx"), segments - 1);
    assert_int_equal(st_count_files(dir, ".index"), segments - 1);

    /* Reopen: every acknowledged event is there with its own payload. */
    log = st_open(dir, 1 << 20);
    assert_int_equal(store_log_head(log), total);
    store_reader *r;
    assert_int_equal(store_reader_open(log, 0, &r), 0);
    ev_event ev;
    sk_error err;
    for (uint64_t p = 0; p < total; p++) {
        assert_int_equal(store_reader_next(r, &ev, &err), 1);
        assert_int_equal(ev.position, p);
        /* The view is not NUL-terminated: copy before parsing. */
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)ev.stream_id.len, ev.stream_id.ptr);
        int t = atoi(name + strlen("thread-"));
        if (t < 0 || t >= THREADS) {
            fail_msg("position %llu holds stream %s", (unsigned long long)p, name);
            return;
        }
        char want[64];
        int n =
            snprintf(want, sizeof want, "thread-%d:%llu:", t, (unsigned long long)(ev.version - 1));
        assert_memory_equal(ev.payload, want, (size_t)n);
        assert_int_equal(w[t].positions[ev.version - 1], p);
    }
    assert_int_equal(store_reader_next(r, &ev, &err), 0);
    store_reader_close(r);
    store_log_close(log);
    for (int i = 0; i < THREADS; i++) {
        free(w[i].positions);
        free(w[i].versions);
        pthread_mutex_destroy(&w[i].mu);
        pthread_cond_destroy(&w[i].cond);
    }
    st_rmrf(dir);
    free(dir);
}

static void test_async_8_threads(void **state)
{
    (void)state;
    run_threads(true, (uint64_t)(100000 * st_scale()));
}

static void test_sync_8_threads(void **state)
{
    (void)state;
    run_threads(false, (uint64_t)(2000 * st_scale()) + 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_async_8_threads),
        cmocka_unit_test(test_sync_8_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
