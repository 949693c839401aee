/*
 * saga.c -- `skald-bench saga`: orders through the OrderFulfillment saga, from
 * PlaceOrder's answer to OrderConfirmed being durable.
 *
 * Starts `skald serve` with every role (fsync=always), registers --streams products and
 * 100 customers with stock and credit enough that every order confirms, and opens the
 * same log read-only in this process: a subscription (which shows durable events only)
 * stamps each OrderConfirmed as it arrives. Then
 *   1. saturation: --events orders of one line each, posted through the batch endpoint
 *      by two threads (100 orders a batch, at most WINDOW unconfirmed), timed from the
 *      first post to the last OrderConfirmed: orders_per_s;
 *   2. latency: --duration seconds at a fixed 1,000 orders/s (a batch of 10 every 10 ms,
 *      on an absolute schedule); each order's latency is from its batch's answer to its
 *      OrderConfirmed: p50_ms, p99_ms.
 * Each order is about 8 commands and 10 events of the domain plus the saga's journal.
 * The server is stopped with SIGTERM and must exit 0.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CUSTOMERS  100
#define BATCH      100
#define WINDOW     20000
#define RATE       1000 /* orders per second in the latency run */
#define RATE_BATCH 10
#define WAIT_S     120

typedef struct run {
    uint16_t port;
    uint32_t products;
    uint64_t total; /* orders of both phases */
    uint64_t *answered_ns, *confirmed_ns;
    atomic_uint_fast64_t next; /* saturation: the next order to post */
    uint64_t saturation;       /* orders in the saturation phase */
    atomic_uint_fast64_t confirmed;
    atomic_int failed;
    store_sub *sub;
} run;

static size_t order_line(char *out, size_t size, uint64_t n, uint32_t products)
{
    return (size_t)snprintf(out, size,
                            "{\"type\":\"PlaceOrder\",\"body\":{\"order_id\":\"b%" PRIu64
                            "\",\"customer_id\":\"c%" PRIu64 "\",\"lines\":[{\"sku\":\"b%" PRIu64
                            "\",\"quantity\":1,\"unit_price_cents\":100}]}}\n",
                            n, n % CUSTOMERS, n % products);
}

/* Posts orders [first, first + count) in one batch and stamps their answer. */
static int post_orders(run *r, uint64_t first, uint64_t count)
{
    char body[BATCH * 200];
    body[0] = '\0';
    size_t len = 0;
    for (uint64_t n = first; n < first + count; n++)
        len += order_line(body + len, sizeof body - len, n, r->products);
    int status = bench_http_request(r->port, "POST", "/v1/commands:batch", "application/x-ndjson",
                                    body, len, NULL, 0);
    uint64_t now = bench_now_ns();
    for (uint64_t n = first; n < first + count; n++)
        r->answered_ns[n] = now;
    if (status != 200) {
        fprintf(stderr, "skald-bench: an order batch answered %d\n", status);
        atomic_store(&r->failed, 1);
        return -EIO;
    }
    return 0;
}

static void *saturate(void *arg)
{
    run *r = arg;
    while (!atomic_load(&r->failed)) {
        uint64_t first = atomic_fetch_add(&r->next, BATCH);
        if (first >= r->saturation)
            break;
        uint64_t count = r->saturation - first < BATCH ? r->saturation - first : BATCH;
        while (first > atomic_load(&r->confirmed) + WINDOW && !atomic_load(&r->failed))
            usleep(1000);
        if (post_orders(r, first, count) != 0)
            break;
    }
    return NULL;
}

/* Stamps each OrderConfirmed "order-b<n>" as the subscription shows it (durable). */
static void *collect(void *arg)
{
    run *r = arg;
    ev_event ev;
    sk_error err;
    while (atomic_load(&r->confirmed) < r->total && !atomic_load(&r->failed)) {
        int rc = store_sub_next(r->sub, &ev, &err);
        if (rc == 0) {
            store_sub_wait(r->sub, 100);
            continue;
        }
        if (rc < 0)
            break;
        if (!ev_str_eq(ev.type, "OrderConfirmed") || ev.stream_id.len < 8 ||
            memcmp(ev.stream_id.ptr, "order-b", 7) != 0)
            continue;
        uint64_t n = 0;
        for (uint32_t i = 7; i < ev.stream_id.len; i++)
            n = n * 10 + (uint64_t)(ev.stream_id.ptr[i] - '0');
        if (n < r->total && r->confirmed_ns[n] == 0) {
            r->confirmed_ns[n] = bench_now_ns();
            atomic_fetch_add(&r->confirmed, 1);
        }
    }
    return NULL;
}

static int preload(uint16_t port, uint32_t products)
{
    size_t cap = (size_t)1000 * 200;
    char *body = malloc(cap);
    if (!body)
        return -ENOMEM;
    int rc = 0;
    for (int pass = 0; pass < 3 && rc == 0; pass++) {
        uint32_t n = pass == 2 ? CUSTOMERS : products;
        for (uint32_t first = 0; first < n && rc == 0; first += 1000) {
            size_t len = 0;
            for (uint32_t i = first; i < n && i < first + 1000; i++)
                len += (size_t)snprintf(
                    body + len, cap - len,
                    pass == 0   ? "{\"type\":\"RegisterProduct\",\"body\":{\"sku\":\"b%u\","
                                  "\"name\":\"bench\",\"price_cents\":100}}\n"
                    : pass == 1 ? "{\"type\":\"RestockProduct\",\"body\":{\"sku\":\"b%u\","
                                  "\"quantity\":1000000000}}\n"
                                : "{\"type\":\"OpenCustomer\",\"body\":{\"customer_id\":\"c%u\","
                                  "\"name\":\"bench\",\"credit_limit_cents\":1000000000000}}\n",
                    i);
            if (bench_http_request(port, "POST", "/v1/commands:batch", "application/x-ndjson", body,
                                   len, NULL, 0) != 200)
                rc = -EIO;
        }
    }
    free(body);
    return rc;
}

static void sleep_until(uint64_t ns)
{
    uint64_t now = bench_now_ns();
    if (ns > now) {
        struct timespec ts = {(time_t)((ns - now) / 1000000000u), (long)((ns - now) % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

int bench_saga(const bench_opts *opts)
{
    char skald[BENCH_PATH_MAX], work[BENCH_PATH_MAX], logdir[BENCH_PATH_MAX];
    int rc = bench_skald_find(opts, skald, sizeof skald);
    if (rc)
        return rc;
    if ((rc = bench_workdir_create(opts->dir, work, sizeof work)) != 0)
        return rc;
    bench_print_where("work directory", work);
    run r = {.products = opts->streams};
    r.saturation = opts->events;
    r.total = r.saturation + (uint64_t)opts->duration_s * RATE;
    r.answered_ns = calloc(r.total, sizeof *r.answered_ns);
    r.confirmed_ns = calloc(r.total, sizeof *r.confirmed_ns);
    uint64_t *lat = calloc(r.total, sizeof *lat);
    if (!r.answered_ns || !r.confirmed_ns || !lat) {
        free(r.answered_ns);
        free(r.confirmed_ns);
        free(lat);
        return -ENOMEM;
    }
    pid_t pid = bench_serve_start_roles(skald, work, "commands,projections,queries,sagas", &r.port);
    if (pid < 0) {
        free(r.answered_ns);
        free(r.confirmed_ns);
        free(lat);
        return -EIO;
    }
    printf("server: %s serve --fsync always on 127.0.0.1:%u, every role\n", skald, r.port);
    store_log *log = NULL;
    sk_error err = {0};
    rc = preload(r.port, r.products);
    if (rc == 0) {
        store_config cfg;
        bench_path_join(logdir, sizeof logdir, work, "data/log");
        store_config_init(&cfg, logdir);
        cfg.read_only = 1;
        rc = store_log_open(&cfg, &log, &err);
    }
    if (rc == 0)
        rc = store_sub_open(log, store_log_head(log), &r.sub);
    pthread_t collector, senders[2];
    double orders_per_s = 0;
    if (rc == 0) {
        pthread_create(&collector, NULL, collect, &r);
        uint64_t t0 = bench_now_ns();
        for (int i = 0; i < 2; i++)
            pthread_create(&senders[i], NULL, saturate, &r);
        for (int i = 0; i < 2; i++)
            pthread_join(senders[i], NULL);
        for (int s = 0; s < WAIT_S * 100 && atomic_load(&r.confirmed) < r.saturation &&
                        !atomic_load(&r.failed);
             s++)
            usleep(10000);
        uint64_t last = 0;
        for (uint64_t n = 0; n < r.saturation; n++)
            last = r.confirmed_ns[n] > last ? r.confirmed_ns[n] : last;
        if (atomic_load(&r.confirmed) < r.saturation) {
            fprintf(stderr, "skald-bench: %" PRIu64 " of %" PRIu64 " orders confirmed in %d s\n",
                    (uint64_t)atomic_load(&r.confirmed), r.saturation, WAIT_S);
            rc = -ETIMEDOUT;
        }
        orders_per_s = last > t0 ? (double)r.saturation / bench_seconds(last - t0) : 0;
        printf("saturation: %" PRIu64 " orders confirmed in %.2f s = %.0f orders/s\n", r.saturation,
               last > t0 ? bench_seconds(last - t0) : 0.0, orders_per_s);
        /* the fixed-rate run, on an absolute schedule */
        uint64_t start = bench_now_ns(), n = r.saturation;
        for (uint64_t k = 0; rc == 0 && n < r.total; k++, n += RATE_BATCH) {
            sleep_until(start + k * (1000000000u / (RATE / RATE_BATCH)));
            rc = post_orders(&r, n, r.total - n < RATE_BATCH ? r.total - n : RATE_BATCH);
        }
        for (int s = 0;
             s < WAIT_S * 100 && atomic_load(&r.confirmed) < r.total && !atomic_load(&r.failed);
             s++)
            usleep(10000);
        if (rc == 0 && atomic_load(&r.confirmed) < r.total)
            rc = -ETIMEDOUT;
        atomic_store(&r.failed, 1); /* the collector stops */
        store_sub_stop(r.sub);
        pthread_join(collector, NULL);
    }
    size_t nlat = 0;
    for (uint64_t n = r.saturation; n < r.total; n++)
        if (r.confirmed_ns[n] && r.answered_ns[n])
            lat[nlat++] =
                r.confirmed_ns[n] > r.answered_ns[n] ? r.confirmed_ns[n] - r.answered_ns[n] : 0;
    double p50 = nlat ? (double)bench_percentile(lat, nlat, 50) / 1e6 : 0;
    double p99 = nlat ? (double)bench_percentile(lat, nlat, 99) / 1e6 : 0;
    store_sub_close(r.sub);
    store_log_close(log);
    int stop = bench_serve_stop(pid);
    if (rc == 0 && stop != 0) {
        fprintf(stderr, "skald-bench: skald serve did not exit 0 after SIGTERM\n");
        rc = stop;
    }
    free(r.answered_ns);
    free(r.confirmed_ns);
    free(lat);
    if (rc) {
        fprintf(stderr, "skald-bench: saga failed: %s %s (work directory kept: %s)\n",
                sk_strerror(rc), err.message, work);
        return rc;
    }
    printf("latency at %d orders/s for %u s: %zu orders, p50 %.2f ms, p99 %.2f ms "
           "(PlaceOrder's answer to OrderConfirmed durable)\n",
           RATE, opts->duration_s, nlat, p50, p99);
    printf("goal: >= 5000 orders/s, p99 < 50 ms\n");
    printf("BENCH saga orders_per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n", orders_per_s, p50, p99);
    if (!opts->keep)
        bench_workdir_remove(work);
    else
        printf("kept: %s\n", work);
    return 0;
}
