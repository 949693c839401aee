/*
 * test_events_threads.c -- the registry is shared read-only by every thread that encodes
 * or decodes (the HTTP layer encodes each command on its own worker). Many threads encode,
 * decode and refuse payloads at once through one registry; every result must be exact,
 * and the TSan build must see no race.
 */
#include "events/events.h"
#include "testutil.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define THREADS     8
#define ROUNDS      200
#define DEADLINE_US (60 * 1000000LL)

typedef struct worker {
    const ev_registry *reg;
    int64_t deadline_us;
    int seed;
    int rounds_done;
    int failures;
    char first_failure[256];
} worker;

static void note_failure(worker *w, const char *what, int round)
{
    if (w->failures++ == 0)
        snprintf(w->first_failure, sizeof w->first_failure, "thread %d round %d: %s", w->seed,
                 round, what);
}

/* An order whose values depend on the thread and round, so that mixed-up buffers show. */
static json_t *make_order(int seed, int round)
{
    json_t *lines = json_array();
    int n = 1 + (seed + round) % 5;
    for (int i = 0; i < n; i++)
        json_array_append_new(lines,
                              json_pack("{s:s+, s:I, s:I}", "sku", "sku-", i % 2 ? "odd" : "even",
                                        "quantity", (json_int_t)seed * 1000 + round + i,
                                        "unit_price_cents", (json_int_t)round * 7 + i));
    char order_id[64];
    snprintf(order_id, sizeof order_id, "o-%d-%d", seed, round);
    return json_pack("{s:s, s:s, s:o, s:I}", "order_id", order_id, "customer_id", "c-1", "lines",
                     lines, "total_cents", (json_int_t)seed * 100000 + round);
}

/* Encodes and decodes one order; 0 when the decoded JSON equals the input. */
static int round_trip(const ev_registry *reg, int seed, int round)
{
    json_t *in = make_order(seed, round), *out = NULL;
    ev_buf buf = {0};
    uint32_t id = 0;
    sk_error err;
    int rc = ev_payload_from_json(reg, "OrderPlaced", in, &buf, &id, &err);
    if (rc == 0)
        rc = ev_payload_to_json(reg, id, buf.data, buf.size, &out, &err);
    if (rc == 0 && !json_equal(in, out))
        rc = -1;
    json_decref(in);
    json_decref(out);
    ev_buf_free(&buf);
    return rc;
}

/* A payload with a bad nested field must be refused with that field's path. */
static int refusal_names_field(const ev_registry *reg, int round)
{
    char text[256], want[32];
    int line = round % 3;
    snprintf(text, sizeof text,
             "{\"order_id\":\"o\",\"customer_id\":\"c\",\"total_cents\":1,\"lines\":["
             "{\"sku\":\"a\",\"quantity\":1,\"unit_price_cents\":1},"
             "{\"sku\":\"b\",\"quantity\":%s,\"unit_price_cents\":1},"
             "{\"sku\":\"c\",\"quantity\":%s,\"unit_price_cents\":%s}]}",
             line == 1 ? "\"x\"" : "1", line == 2 ? "1.5" : "1", line == 0 ? "true" : "1");
    snprintf(want, sizeof want, "lines[%d].%s", line == 0 ? 2 : line,
             line == 0 ? "unit_price_cents" : "quantity");
    ev_buf buf = {0};
    uint32_t id = 0;
    sk_error err;
    sk_error_clear(&err);
    int rc = ev_payload_from_json_text(reg, "OrderPlaced", text, strlen(text), &buf, &id, &err);
    ev_buf_free(&buf);
    return rc == SK_EBADINPUT && strcmp(err.field, want) == 0 ? 0 : -1;
}

static void *work(void *arg)
{
    worker *w = arg;
    for (int round = 0; round < ROUNDS && ev_now_us() < w->deadline_us; round++) {
        if (round_trip(w->reg, w->seed, round) != 0)
            note_failure(w, "round trip differs or fails", round);
        if (refusal_names_field(w->reg, round) != 0)
            note_failure(w, "refusal names the wrong field", round);
        w->rounds_done++;
    }
    return NULL;
}

static void test_threads_share_one_registry(void **state)
{
    (void)state;
    char schemas[4096];
    snprintf(schemas, sizeof schemas, "%s/events/schemas", tu_source_dir());
    ev_registry *reg = NULL;
    sk_error err;
    assert_int_equal(ev_registry_open(schemas, NULL, &reg, &err), 0);

    worker workers[THREADS];
    pthread_t tids[THREADS];
    int64_t deadline = ev_now_us() + DEADLINE_US;
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (worker){.reg = reg, .deadline_us = deadline, .seed = i + 1};
        assert_int_equal(pthread_create(&tids[i], NULL, work, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(tids[i], NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        if (workers[i].failures)
            fail_msg("%d failures; first: %s", workers[i].failures, workers[i].first_failure);
        assert_int_equal(workers[i].rounds_done, ROUNDS);
    }
    ev_registry_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_share_one_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
