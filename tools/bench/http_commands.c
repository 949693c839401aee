/*
 * http_commands.c -- `skald-bench http-commands`: commands per second over HTTP, end to
 * end and durable, against the same server's no-op endpoint.
 *
 * Starts `skald serve` (fsync=always, one HTTP thread since wrk shares the machine, no
 * tokens: loopback) on a data directory in the
 * work directory, registers and stocks --streams products through the batch endpoint,
 * then runs wrk twice for --duration seconds with --connections connections: once with
 * a 50/50 mix of PlaceOrder (a new order of 1-3 lines over random products) and
 * RestockProduct (a random product), once against POST /v1/noop with a body of the same
 * size. wrk's Lua done() hook prints the counts and the latency percentile; non-2xx
 * answers are counted and reported, never hidden. /metrics read before and after the
 * commands run gives the server's side: cache hits, group commit sizes, fdatasync time.
 * The server is stopped with SIGTERM and must exit 0.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The mix (also traced-commands'). Orders get ids unique to this run (a nonce from the
 * bench) and the thread. */
const char bench_commands_lua[] =
    "local streams, nonce = 10000, 'x'\n"
    "local counter, tid = 0, 0\n"
    "local headers = {['Content-Type'] = 'application/json'}\n"
    "local next_tid = 0\n"
    "function setup(thread) next_tid = next_tid + 1; thread:set('tid', next_tid) end\n"
    "function init(args) streams = tonumber(args[1]); nonce = args[2]\n"
    "  math.randomseed(tonumber(args[3]) + (tid or 0)) end\n"
    "function request()\n"
    "  counter = counter + 1\n"
    "  if counter % 2 == 0 then\n"
    "    return wrk.format('POST', '/v1/commands/RestockProduct', headers,\n"
    "      '{\"sku\":\"b' .. math.random(0, streams - 1) .. '\",\"quantity\":1}')\n"
    "  end\n"
    "  local lines = {}\n"
    "  for i = 1, math.random(1, 3) do\n"
    "    lines[i] = '{\"sku\":\"b' .. math.random(0, streams - 1) ..\n"
    "      '\",\"quantity\":' .. math.random(1, 5) .. ',\"unit_price_cents\":' ..\n"
    "      math.random(100, 9999) .. '}'\n"
    "  end\n"
    "  return wrk.format('POST', '/v1/commands/PlaceOrder', headers,\n"
    "    '{\"order_id\":\"' .. nonce .. '-' .. tostring(tid) .. '-' .. counter ..\n"
    "    '\",\"customer_id\":\"c' .. math.random(0, 99) .. '\",\"lines\":[' ..\n"
    "    table.concat(lines, ',') .. ']}')\n"
    "end\n" BENCH_WRK_DONE_LUA;

static const char NOOP_LUA[] =
    "local headers = {['Content-Type'] = 'application/json'}\n"
    "function request() return wrk.format('POST', '/v1/noop', headers,\n"
    "  '{\"order_id\":\"x-1-1\",\"customer_id\":\"c1\",\"lines\":[{\"sku\":\"b1\",\"quantity\":1,"
    "\"unit_price_cents\":100}]}') end\n" BENCH_WRK_DONE_LUA;

static int http_post(uint16_t port, const char *path, const char *ctype, const char *body,
                     size_t len)
{
    return bench_http_request(port, "POST", path, ctype, body, len, NULL, 0);
}

/* What the server's /metrics says about the log and the cache (counters and sums). */
typedef struct server_stats {
    double cache_hits, cache_misses, batches, batch_events, fsyncs, fsync_s;
} server_stats;

static int read_server_stats(uint16_t port, server_stats *out)
{
    size_t size = (size_t)256 * 1024;
    char *text = malloc(size);
    if (!text)
        return -ENOMEM;
    text[0] = '\0';
    int status = bench_http_request(port, "GET", "/metrics", "text/plain", "", 0, text, size);
    if (status == 200)
        *out = (server_stats){
            bench_metric(text, "skald_aggregate_cache_total{result=\"hit\"}"),
            bench_metric(text, "skald_aggregate_cache_total{result=\"miss\"}"),
            bench_metric(text, "skald_append_batch_events_count"),
            bench_metric(text, "skald_append_batch_events_sum"),
            bench_metric(text, "skald_fsync_duration_seconds_count"),
            bench_metric(text, "skald_fsync_duration_seconds_sum"),
        };
    free(text);
    if (status != 200) {
        fprintf(stderr, "skald-bench: GET /metrics answered %d\n", status);
        return -EIO;
    }
    return 0;
}

/* The server's side of the commands run: where its time went, for whoever tunes it. */
static void print_server_side(const server_stats *a, const server_stats *b, double seconds)
{
    double hits = b->cache_hits - a->cache_hits, misses = b->cache_misses - a->cache_misses;
    double batches = b->batches - a->batches, events = b->batch_events - a->batch_events;
    double fsyncs = b->fsyncs - a->fsyncs, fsync_s = b->fsync_s - a->fsync_s;
    printf("server:   aggregate cache hits %.0f%% of %.0f; %.0f group commits of %.1f events "
           "on average; fdatasync %.2f ms on average, busy %.0f%% of the run\n",
           hits + misses > 0 ? 100 * hits / (hits + misses) : 0, hits + misses, batches,
           batches > 0 ? events / batches : 0, fsyncs > 0 ? 1e3 * fsync_s / fsyncs : 0,
           seconds > 0 ? 100 * fsync_s / seconds : 0);
}

/* Registers and stocks products b0..b<n-1>, 1,000 commands per batch request. */
int bench_preload(uint16_t port, uint32_t n)
{
    size_t cap = (size_t)1000 * 160;
    char *body = malloc(cap);
    if (!body)
        return -ENOMEM;
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++)
        for (uint32_t first = 0; first < n && rc == 0; first += 1000) {
            size_t len = 0;
            for (uint32_t i = first; i < n && i < first + 1000; i++)
                len += (size_t)snprintf(
                    body + len, cap - len,
                    pass == 0 ? "{\"type\":\"RegisterProduct\",\"body\":{\"sku\":\"b%u\","
                                "\"name\":\"bench\",\"price_cents\":100}}\n"
                              : "{\"type\":\"RestockProduct\",\"body\":{\"sku\":\"b%u\","
                                "\"quantity\":1000000000}}\n",
                    i);
            int status = http_post(port, "/v1/commands:batch", "application/x-ndjson", body, len);
            if (status != 200) {
                fprintf(stderr, "skald-bench: preload batch answered %d\n", status);
                rc = -EIO;
            }
        }
    free(body);
    return rc;
}

int bench_http_commands(const bench_opts *opts)
{
    char skald[BENCH_PATH_MAX], work[BENCH_PATH_MAX], cmd_lua[BENCH_PATH_MAX],
        noop_lua[BENCH_PATH_MAX];
    int rc = bench_skald_find(opts, skald, sizeof skald);
    if (rc)
        return rc;
    if ((rc = bench_workdir_create(opts->dir, work, sizeof work)) != 0)
        return rc;
    bench_print_where("work directory", work);
    bench_path_join(cmd_lua, sizeof cmd_lua, work, "commands.lua");
    bench_path_join(noop_lua, sizeof noop_lua, work, "noop.lua");
    if ((rc = bench_file_write(cmd_lua, bench_commands_lua)) != 0 ||
        (rc = bench_file_write(noop_lua, NOOP_LUA)))
        return rc;
    uint16_t port = 0;
    pid_t pid = bench_serve_start_roles(skald, work, "commands", &port);
    if (pid < 0)
        return -EIO;
    printf("server: %s serve --fsync always on 127.0.0.1:%u\n", skald, port);
    uint64_t t0 = bench_now_ns();
    rc = bench_preload(port, opts->streams);
    printf("preload: %u products registered and stocked in %.2f s (batch endpoint)\n",
           opts->streams, bench_seconds(bench_now_ns() - t0));
    bench_wrk_result cmds = {0}, noop = {0};
    server_stats before = {0}, after = {0};
    char wrk_args[64]; /* the Lua script's init(): products, an order id nonce, a seed */
    snprintf(wrk_args, sizeof wrk_args, "%u n%lld %lld", opts->streams, (long long)time(NULL),
             (long long)getpid());
    double cpu0 = 0, cpu1 = 0, http0 = 0, http1 = 0; /* the server's CPU over the commands run */
    if (rc == 0)
        rc = read_server_stats(port, &before);
    if (rc == 0) {
        cpu0 = bench_cpu_seconds(pid, NULL);
        http0 = bench_cpu_seconds(pid, "MHD");
        rc = bench_wrk_run(opts, port, cmd_lua, wrk_args, &cmds);
        cpu1 = bench_cpu_seconds(pid, NULL);
        http1 = bench_cpu_seconds(pid, "MHD");
    }
    if (rc == 0)
        rc = read_server_stats(port, &after);
    if (rc == 0)
        rc = bench_wrk_run(opts, port, noop_lua, wrk_args, &noop);
    int stop = bench_serve_stop(pid);
    if (rc == 0 && stop != 0) {
        fprintf(stderr, "skald-bench: skald serve did not exit 0 after SIGTERM\n");
        rc = stop;
    }
    if (rc != 0)
        return rc;
    double c = bench_wrk_per_s(&cmds), n = bench_wrk_per_s(&noop);
    printf("commands: %" PRIu64 " in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms, non-2xx %" PRIu64
           ", socket errors %" PRIu64 "\n",
           cmds.requests, cmds.duration_us / 1e6, c, cmds.p50_us / 1e3, cmds.p99_us / 1e3,
           cmds.non2xx, cmds.sockerr);
    print_server_side(&before, &after, cmds.duration_us / 1e6);
    double per = cmds.requests ? 1e6 / (double)cmds.requests : 0;
    double cpu_us = cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) * per : -1;
    double http_us = http0 >= 0 && http1 >= 0 ? (http1 - http0) * per : -1;
    printf("cpu:      server %.1f us per command, of it the HTTP thread %.1f (from /proc, over "
           "the commands run)\n",
           cpu_us, http_us);
    printf("noop:     %" PRIu64 " in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms, non-2xx %" PRIu64
           "\n",
           noop.requests, noop.duration_us / 1e6, n, noop.p50_us / 1e3, noop.p99_us / 1e3,
           noop.non2xx);
    printf("wrk: %u thread(s), %u connections, %u s per run; goal: >= 50000 commands/s, "
           "p99 < 5 ms, ratio >= 0.5\n",
           opts->wrk_threads, opts->connections, opts->duration_s);
    printf("BENCH http-commands commands_per_s=%.0f p99_ms=%.2f noop_per_s=%.0f ratio=%.2f "
           "cpu_us=%.1f http_cpu_us=%.1f errors=%" PRIu64 "\n",
           c, cmds.p99_us / 1e3, n, n > 0 ? c / n : 0, cpu_us, http_us, cmds.non2xx + cmds.sockerr);
    if (!opts->keep)
        bench_workdir_remove(work);
    else
        printf("kept: %s\n", work);
    return 0;
}
