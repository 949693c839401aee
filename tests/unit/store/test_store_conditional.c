/*
 * test_store_conditional.c -- conditional appends: 16 threads race on one stream with the
 * version they last saw; exactly one wins each version, the losers learn the current
 * version, and the stream reads back 1..n without a gap. Barriers complete after the
 * appends queued before them, with the stream's version and last position.
 */
#include "storetest.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define RACERS 16

typedef struct racer {
    store_log *log;
    int id;
    int rounds;
    int wins, losses;
    int anomalies;       /* outcomes the contract forbids; asserted on the main thread */
    char anomaly[128];   /* the first of them */
    uint64_t *winner_of; /* version -> racer id + 1, shared */
} racer;

static void note_anomaly(racer *r, const char *what, int rc, uint64_t seen, uint64_t version)
{
    if (r->anomalies++ == 0)
        snprintf(r->anomaly, sizeof r->anomaly, "racer %d: %s (rc %d, saw %llu, got %llu)", r->id,
                 what, rc, (unsigned long long)seen, (unsigned long long)version);
}

/* Each round appends expecting the version last seen; a conflict tells the current one.
 * cmocka's asserts must not run off the main thread, so outcomes are recorded. */
static void *race(void *arg)
{
    racer *r = arg;
    uint64_t seen = store_log_stream_version(r->log, ev_str_of("hot"));
    for (int i = 0; i < r->rounds; i++) {
        st_event e;
        st_make(&e, "racer", (uint64_t)r->id, 10);
        store_append_result res;
        sk_error err;
        int rc = store_log_append(r->log, ev_str_of("hot"), seen, &e.ev, 1, &res, &err);
        if (rc == 0) {
            if (res.first_version != seen + 1 || res.stream_version != seen + 1)
                note_anomaly(r, "won with an unexpected version", rc, seen, res.first_version);
            else if (__atomic_exchange_n(&r->winner_of[res.first_version], (uint64_t)r->id + 1,
                                         __ATOMIC_RELAXED) != 0)
                note_anomaly(r, "a second winner of one version", rc, seen, res.first_version);
            r->wins++;
        } else if (rc != SK_ECONFLICT) {
            note_anomaly(r, "neither success nor conflict", rc, seen, 0);
            return NULL;
        } else {
            if (res.stream_version <= seen) /* someone else must have moved it on */
                note_anomaly(r, "conflict without a newer version", rc, seen, res.stream_version);
            r->losses++;
        }
        seen = res.stream_version;
    }
    return NULL;
}

static void test_one_winner_per_version(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = st_open(dir, 0);
    int rounds = (int)(200 * st_scale()) + 5;
    uint64_t *winner_of = calloc((size_t)RACERS * (size_t)rounds + 2, sizeof(uint64_t));
    racer r[RACERS];
    pthread_t th[RACERS];
    for (int i = 0; i < RACERS; i++) {
        r[i] = (racer){.log = log, .id = i, .rounds = rounds, .winner_of = winner_of};
        pthread_create(&th[i], NULL, race, &r[i]);
    }
    int wins = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        if (r[i].anomalies)
            fail_msg("%d anomalies; first: %s", r[i].anomalies, r[i].anomaly);
        assert_int_equal(r[i].wins + r[i].losses, rounds);
        wins += r[i].wins;
    }
    assert_true(wins >= rounds); /* every round has a winner among the 16 */
    uint64_t version = store_log_stream_version(log, ev_str_of("hot"));
    assert_int_equal(version, (uint64_t)wins);
    assert_int_equal(store_log_head(log), (uint64_t)wins);
    store_reader *reader;
    assert_int_equal(store_reader_open_stream(log, ev_str_of("hot"), 1, &reader), 0);
    ev_event ev;
    sk_error err;
    for (uint64_t v = 1; v <= version; v++) {
        assert_int_equal(store_reader_next(reader, &ev, &err), 1);
        assert_int_equal(ev.version, v);
        assert_true(winner_of[v] > 0);
        char want[32];
        int n = snprintf(want, sizeof want, "racer:%llu:", (unsigned long long)(winner_of[v] - 1));
        assert_memory_equal(ev.payload, want, (size_t)n);
    }
    assert_int_equal(store_reader_next(reader, &ev, &err), 0);
    store_reader_close(reader);
    store_log_close(log);
    free(winner_of);
    st_rmrf(dir);
    free(dir);
}

static void test_expectations(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_log *log = st_open(dir, 0);
    st_event e;
    st_make(&e, "x", 0, 1);
    store_append_result res;
    sk_error err;
    assert_int_equal(
        store_log_append(log, ev_str_of("s"), STORE_EXPECT_NO_STREAM, &e.ev, 1, &res, &err), 0);
    assert_int_equal(
        store_log_append(log, ev_str_of("s"), STORE_EXPECT_NO_STREAM, &e.ev, 1, &res, &err),
        SK_ECONFLICT);
    assert_int_equal(res.stream_version, 1);
    assert_string_equal(err.field, "expected_version");
    assert_int_equal(store_log_append(log, ev_str_of("s"), 5, &e.ev, 1, &res, &err), SK_ECONFLICT);
    assert_int_equal(store_log_append(log, ev_str_of("s"), 1, &e.ev, 1, &res, &err), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(
            store_log_append(log, ev_str_of("s"), STORE_EXPECT_ANY, &e.ev, 1, &res, &err), 0);
    assert_int_equal(res.stream_version, 7);
    assert_int_equal(store_log_head(log), 7);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

#define RESULTS_MAX 8

/* The results of a manual commit's appends and barriers, in completion order. */
typedef struct results {
    store_append_result r[RESULTS_MAX];
    int n;
} results;

static void keep_result(void *ctx, const store_append_result *res)
{
    results *rs = ctx;
    if (rs->n < RESULTS_MAX)
        rs->r[rs->n++] = *res;
}

static void queue_append(store_log *log, const char *stream, uint64_t expected, size_t count,
                         results *rs)
{
    st_event e[2];
    ev_event evs[2];
    for (size_t i = 0; i < count; i++) {
        st_make(&e[i], stream, i, 10);
        evs[i] = e[i].ev;
    }
    sk_error err;
    assert_int_equal(
        store_log_append_async(log, ev_str_of(stream), expected, evs, count, keep_result, rs, &err),
        0);
}

static void queue_barrier(store_log *log, const char *stream, uint64_t expected, results *rs)
{
    sk_error err;
    assert_int_equal(
        store_log_barrier_async(log, ev_str_of(stream), expected, keep_result, rs, &err), 0);
}

static void test_barriers(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    store_config cfg;
    store_config_init(&cfg, dir);
    cfg.manual_commit = 1; /* each commit is one batch, so "the same batch" is certain */
    store_log *log = NULL;
    sk_error err;
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    results rs = {0};
    queue_append(log, "s", STORE_EXPECT_ANY, 2, &rs); /* positions 0, 1 */
    queue_append(log, "t", STORE_EXPECT_ANY, 1, &rs); /* position 2 */
    queue_append(log, "s", STORE_EXPECT_ANY, 1, &rs); /* position 3 */
    assert_int_equal(store_log_commit(log), 3);

    /* later batches: the committed stream */
    rs.n = 0;
    queue_barrier(log, "s", STORE_EXPECT_ANY, &rs);
    queue_barrier(log, "s", 2, &rs);
    queue_barrier(log, "nothing", STORE_EXPECT_ANY, &rs);
    assert_int_equal(store_log_commit(log), 3);
    assert_int_equal(rs.n, 3);
    assert_int_equal(rs.r[0].status, 0);
    assert_int_equal(rs.r[0].count, 0);
    assert_int_equal(rs.r[0].stream_version, 3);
    assert_int_equal(rs.r[0].last_position, 3);
    assert_int_equal(rs.r[1].status, SK_ECONFLICT);
    assert_int_equal(rs.r[1].stream_version, 3);
    assert_int_equal(rs.r[2].status, 0);
    assert_int_equal(rs.r[2].stream_version, 0);
    store_log_stats st;
    store_log_get_stats(log, &st);
    assert_int_equal(st.streams, 2); /* a barrier makes no stream exist */
    assert_int_equal(store_log_head(log), 4);

    /* the same batch: a barrier sees the appends queued before it, in order */
    rs.n = 0;
    queue_append(log, "s", 3, 2, &rs);  /* positions 4, 5 */
    queue_barrier(log, "s", 5, &rs);    /* after them */
    queue_barrier(log, "t", 1, &rs);    /* untouched */
    queue_append(log, "s", 99, 1, &rs); /* conflicts */
    queue_barrier(log, "s", 6, &rs);    /* rests on the conflicting append */
    assert_int_equal(store_log_commit(log), 5);
    assert_int_equal(rs.n, 5);
    assert_int_equal(rs.r[0].status, 0);
    assert_int_equal(rs.r[0].last_position, 5);
    assert_int_equal(rs.r[1].status, 0);
    assert_int_equal(rs.r[1].stream_version, 5);
    assert_int_equal(rs.r[1].last_position, 5);
    assert_int_equal(rs.r[2].status, 0);
    assert_int_equal(rs.r[2].stream_version, 1);
    assert_int_equal(rs.r[2].last_position, 2);
    assert_int_equal(rs.r[3].status, SK_ECONFLICT);
    assert_int_equal(rs.r[4].status, SK_ECONFLICT);
    assert_int_equal(rs.r[4].stream_version, 5);
    assert_int_equal(store_log_head(log), 6);

    /* a stream id out of bounds is refused up front */
    assert_int_equal(
        store_log_barrier_async(log, ev_str_of(""), STORE_EXPECT_ANY, keep_result, &rs, &err),
        SK_EBADINPUT);
    store_log_close(log);
    st_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_winner_per_version),
        cmocka_unit_test(test_expectations),
        cmocka_unit_test(test_barriers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
