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

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Both scripts end by printing one line the benchmark parses. */
#define WRK_DONE_LUA                                                                               \
    "function done(summary, latency, requests)\n"                                                  \
    "  local e = summary.errors\n"                                                                 \
    "  io.write(string.format('WRK requests=%d duration_us=%d non2xx=%d sockerr=%d "               \
    "p50_us=%d p99_us=%d\\n', summary.requests, summary.duration, e.status,\n"                     \
    "    e.connect + e.read + e.write + e.timeout, latency:percentile(50),\n"                      \
    "    latency:percentile(99)))\n"                                                               \
    "end\n"

/* The mix. Orders get ids unique to this run (a nonce from the bench) and the thread. */
static const char COMMANDS_LUA[] =
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
    "end\n" WRK_DONE_LUA;

static const char NOOP_LUA[] =
    "local headers = {['Content-Type'] = 'application/json'}\n"
    "function request() return wrk.format('POST', '/v1/noop', headers,\n"
    "  '{\"order_id\":\"x-1-1\",\"customer_id\":\"c1\",\"lines\":[{\"sku\":\"b1\",\"quantity\":1,"
    "\"unit_price_cents\":100}]}') end\n" WRK_DONE_LUA;

typedef struct wrk_result {
    uint64_t requests, duration_us, non2xx, sockerr, p50_us, p99_us;
} wrk_result;

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -EIO;
}

/* The skald binary: --skald, else ../../service/skald from skald-bench's own path. */
static int find_skald(const bench_opts *opts, char *out, size_t size)
{
    if (opts->skald) {
        snprintf(out, size, "%s", opts->skald);
        return 0;
    }
    char self[BENCH_PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -errno;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(out, size, "%s/../../service/skald", self);
    if (access(out, X_OK) != 0) {
        fprintf(stderr, "skald-bench: no skald binary at %s; pass --skald PATH\n", out);
        return -ENOENT;
    }
    return 0;
}

/* One blocking HTTP/1.1 request on a fresh connection; the answer's status, or < 0.
 * With reply (size > 0), the start of the whole answer, headers included, NUL-terminated. */
static int http_request(uint16_t port, const char *method, const char *path, const char *ctype,
                        const char *body, size_t len, char *reply, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    char head[512];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, ctype, len);
    int rc = 0;
    if (write(fd, head, (size_t)n) != n)
        rc = -EIO;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, body + off, len - off);
        if (w <= 0)
            rc = -EIO;
        else
            off += (size_t)w;
    }
    char status_line[64], drain[4096];
    if (!reply || size == 0) {
        reply = status_line;
        size = sizeof status_line;
    }
    /* read until close (so the server has finished a whole batch), keeping the start */
    size_t have = 0;
    ssize_t got = 1;
    while (rc == 0 && got > 0) {
        if (have + 1 < size) {
            got = read(fd, reply + have, size - 1 - have);
            have += got > 0 ? (size_t)got : 0;
        } else {
            got = read(fd, drain, sizeof drain);
        }
    }
    close(fd);
    reply[have] = '\0';
    if (rc)
        return rc;
    return have > 12 ? atoi(reply + 9) : -EIO;
}

static int http_post(uint16_t port, const char *path, const char *ctype, const char *body,
                     size_t len)
{
    return http_request(port, "POST", path, ctype, body, len, NULL, 0);
}

/* What the server's /metrics says about the log and the cache (counters and sums). */
typedef struct server_stats {
    double cache_hits, cache_misses, batches, batch_events, fsyncs, fsync_s;
} server_stats;

/* The value of the sample whose line starts with name (name includes any labels). */
static double metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    const char *line = text;
    while (line && *line) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

static int read_server_stats(uint16_t port, server_stats *out)
{
    size_t size = (size_t)256 * 1024;
    char *text = malloc(size);
    if (!text)
        return -ENOMEM;
    text[0] = '\0';
    int status = http_request(port, "GET", "/metrics", "text/plain", "", 0, text, size);
    if (status == 200)
        *out = (server_stats){
            metric(text, "skald_aggregate_cache_total{result=\"hit\"}"),
            metric(text, "skald_aggregate_cache_total{result=\"miss\"}"),
            metric(text, "skald_append_batch_events_count"),
            metric(text, "skald_append_batch_events_sum"),
            metric(text, "skald_fsync_duration_seconds_count"),
            metric(text, "skald_fsync_duration_seconds_sum"),
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

static pid_t start_server(const char *skald, const char *work, const char *roles, uint16_t *port)
{
    char data[BENCH_PATH_MAX], port_file[BENCH_PATH_MAX], log[BENCH_PATH_MAX];
    bench_path_join(data, sizeof data, work, "data");
    bench_path_join(port_file, sizeof port_file, work, "port");
    bench_path_join(log, sizeof log, work, "serve.log");
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        /* one HTTP thread: wrk runs on the same two cores (two threads measured slower
         * here, docs/benchmarks.md) */
        execl(skald, skald, "serve", "--data", data, "--listen", "127.0.0.1:0", "--port-file",
              port_file, "--fsync", "always", "--threads", "1", "--roles", roles, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; pid > 0 && i < 300; i++) {
        FILE *f = fopen(port_file, "r");
        unsigned p = 0;
        if (f) {
            int got = fscanf(f, "%u", &p);
            fclose(f);
            if (got == 1 && p) {
                *port = (uint16_t)p;
                return pid;
            }
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "skald-bench: skald serve exited at start; see %s\n", log);
            return -1;
        }
        usleep(100000);
    }
    fprintf(stderr, "skald-bench: skald serve did not start in 30 s; see %s\n", log);
    if (pid > 0)
        kill(pid, SIGKILL), waitpid(pid, NULL, 0);
    return -1;
}

/* Registers and stocks products b0..b<n-1>, 1,000 commands per batch request. */
static int preload(uint16_t port, uint32_t n)
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

static int run_wrk(const bench_opts *opts, uint16_t port, const char *script, uint32_t streams,
                   wrk_result *out)
{
    char cmd[2 * BENCH_PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "wrk -t%u -c%u -d%us --latency -s '%s' http://127.0.0.1:%u/ -- %u n%lld %lld "
             "2>&1",
             opts->wrk_threads, opts->connections, opts->duration_s, script, port, streams,
             (long long)time(NULL), (long long)getpid());
    FILE *p = popen(cmd, "r");
    if (!p)
        return -errno;
    char line[512];
    int have_metric = 0;
    while (fgets(line, sizeof line, p)) {
        if (strncmp(line, "WRK ", 4) == 0 &&
            sscanf(line,
                   "WRK requests=%" SCNu64 " duration_us=%" SCNu64 " non2xx=%" SCNu64
                   " sockerr=%" SCNu64 " p50_us=%" SCNu64 " p99_us=%" SCNu64,
                   &out->requests, &out->duration_us, &out->non2xx, &out->sockerr, &out->p50_us,
                   &out->p99_us) == 6)
            have_metric = 1;
    }
    int status = pclose(p);
    if (!have_metric || status != 0) {
        fprintf(stderr, "skald-bench: wrk failed (exit %d); is wrk installed? (%s)\n", status, cmd);
        return -EIO;
    }
    return 0;
}

static double per_s(const wrk_result *r)
{
    return r->duration_us ? (double)r->requests * 1e6 / (double)r->duration_us : 0;
}

static int stop_server(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 600; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -ECHILD;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -ETIMEDOUT;
}

int bench_http_commands(const bench_opts *opts)
{
    char skald[BENCH_PATH_MAX], work[BENCH_PATH_MAX], cmd_lua[BENCH_PATH_MAX],
        noop_lua[BENCH_PATH_MAX];
    int rc = find_skald(opts, skald, sizeof skald);
    if (rc)
        return rc;
    if ((rc = bench_workdir_create(opts->dir, work, sizeof work)) != 0)
        return rc;
    bench_print_where("work directory", work);
    bench_path_join(cmd_lua, sizeof cmd_lua, work, "commands.lua");
    bench_path_join(noop_lua, sizeof noop_lua, work, "noop.lua");
    if ((rc = write_file(cmd_lua, COMMANDS_LUA)) != 0 || (rc = write_file(noop_lua, NOOP_LUA)))
        return rc;
    uint16_t port = 0;
    /* no sagas: their orders (of customers that do not exist) would add work that is not
     * the commands' own; skald-bench saga measures them */
    pid_t pid = start_server(skald, work, "commands,projections,queries", &port);
    if (pid < 0)
        return -EIO;
    printf("server: %s serve --fsync always on 127.0.0.1:%u\n", skald, port);
    uint64_t t0 = bench_now_ns();
    rc = preload(port, opts->streams);
    printf("preload: %u products registered and stocked in %.2f s (batch endpoint)\n",
           opts->streams, bench_seconds(bench_now_ns() - t0));
    wrk_result cmds = {0}, noop = {0};
    server_stats before = {0}, after = {0};
    if (rc == 0)
        rc = read_server_stats(port, &before);
    if (rc == 0)
        rc = run_wrk(opts, port, cmd_lua, opts->streams, &cmds);
    if (rc == 0)
        rc = read_server_stats(port, &after);
    if (rc == 0)
        rc = run_wrk(opts, port, noop_lua, opts->streams, &noop);
    int stop = stop_server(pid);
    if (rc == 0 && stop != 0) {
        fprintf(stderr, "skald-bench: skald serve did not exit 0 after SIGTERM\n");
        rc = stop;
    }
    if (rc != 0)
        return rc;
    double c = per_s(&cmds), n = per_s(&noop);
    printf("commands: %" PRIu64 " in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms, non-2xx %" PRIu64
           ", socket errors %" PRIu64 "\n",
           cmds.requests, cmds.duration_us / 1e6, c, cmds.p50_us / 1e3, cmds.p99_us / 1e3,
           cmds.non2xx, cmds.sockerr);
    print_server_side(&before, &after, cmds.duration_us / 1e6);
    printf("noop:     %" PRIu64 " in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms, non-2xx %" PRIu64
           "\n",
           noop.requests, noop.duration_us / 1e6, n, noop.p50_us / 1e3, noop.p99_us / 1e3,
           noop.non2xx);
    printf("wrk: %u thread(s), %u connections, %u s per run; goal: >= 50000 commands/s, "
           "p99 < 5 ms, ratio >= 0.5\n",
           opts->wrk_threads, opts->connections, opts->duration_s);
    printf("BENCH http-commands commands_per_s=%.0f p99_ms=%.2f noop_per_s=%.0f ratio=%.2f "
           "errors=%" PRIu64 "\n",
           c, cmds.p99_us / 1e3, n, n > 0 ? c / n : 0, cmds.non2xx + cmds.sockerr);
    if (!opts->keep)
        bench_workdir_remove(work);
    else
        printf("kept: %s\n", work);
    return 0;
}

/* ---- for skald-bench saga (bench.h) ---- */

int bench_find_skald(const bench_opts *opts, char *out, size_t size)
{
    return find_skald(opts, out, size);
}

pid_t bench_skald_start(const char *skald, const char *work, const char *roles, uint16_t *port)
{
    return start_server(skald, work, roles, port);
}

int bench_skald_stop(pid_t pid)
{
    return stop_server(pid);
}

int bench_http_post(uint16_t port, const char *path, const char *ctype, const char *body,
                    size_t len, char *reply, size_t size)
{
    return http_request(port, "POST", path, ctype, body, len, reply, size);
}
