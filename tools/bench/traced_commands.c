/*
 * traced_commands.c -- `skald-bench traced-commands`: what tracing costs the commands.
 *
 * The http-commands load (PlaceOrder + RestockProduct through wrk, fsync=always, the
 * commands role, one HTTP thread) against two servers started side by side on data
 * directories of their own: one with --trace-exporter zipkin at --trace-sample 1 (every
 * request recorded: the server span, command.decide, command.append and log.commit) whose
 * endpoint is a sink in this process, one without tracing. Runs alternate, traced then
 * untraced, --runs times, so that drift of the machine hits both alike; the figures are
 * the means. The sink reads each POST whole and answers 202, so the cost measured is
 * Skald's (recording, queueing, encoding, sending), not a backend's. The traced server's
 * /metrics says how many spans were exported and dropped: a ratio bought with drops
 * would be no result, so both are printed. Each server's CPU time per command (from
 * /proc) is printed too: on a machine shared with other work the rates swing from run
 * to run, the CPU a command costs much less.
 */
#include "tools/bench/bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the sink: one thread, one connection at a time (the exporter sends one batch per
 * connection, from one thread) ---- */
typedef struct sink {
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    atomic_uint_fast64_t posts, bytes;
} sink;

/* Reads one request (headers, then Content-Length bytes) and answers 202. */
static void serve_one(sink *s, int c)
{
    char buf[65536];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        ssize_t n = poll(&p, 1, 2000) > 0 ? read(c, buf + have, sizeof buf - 1 - have) : -1;
        if (n <= 0)
            return;
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (!end && have == sizeof buf - 1)
            return;
    }
    char *cl = strcasestr(buf, "Content-Length:");
    size_t length = cl ? strtoull(cl + 15, NULL, 10) : 0;
    size_t got = have - (size_t)(end + 4 - buf);
    while (got < length) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        ssize_t n = poll(&p, 1, 2000) > 0 ? read(c, buf, sizeof buf) : -1;
        if (n <= 0)
            return;
        got += (size_t)n;
    }
    static const char answer[] = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n"
                                 "Connection: close\r\n\r\n";
    ssize_t w = write(c, answer, sizeof answer - 1);
    (void)w;
    atomic_fetch_add(&s->posts, 1);
    atomic_fetch_add(&s->bytes, length);
}

static void *sink_main(void *arg)
{
    sink *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        serve_one(s, c);
        close(c);
    }
    return NULL;
}

static int sink_start(sink *s)
{
    memset(s, 0, sizeof *s);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 64) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &len) != 0) {
        int rc = -errno;
        if (s->fd >= 0)
            close(s->fd);
        return rc;
    }
    s->port = ntohs(a.sin_port);
    int rc = -pthread_create(&s->thread, NULL, sink_main, s);
    if (rc)
        close(s->fd);
    return rc;
}

static void sink_stop(sink *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* ---- the servers ---- */

/* Starts skald serve (commands role) in work/<name>, tracing to the sink when given. */
static pid_t start_server(const char *skald, const char *work, const char *name, const sink *to,
                          uint16_t *port)
{
    char dir[BENCH_PATH_MAX], endpoint[96];
    bench_path_join(dir, sizeof dir, work, name);
    if (mkdir(dir, 0755) != 0)
        return -1;
    /* the child inherits these: the bench's environment is the server's configuration */
    if (to) {
        snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u/api/v2/spans", to->port);
        setenv("SKALD_TRACE_EXPORTER", "zipkin", 1);
        setenv("SKALD_TRACE_SAMPLE", "1", 1);
        setenv("SKALD_TRACE_ENDPOINT", endpoint, 1);
    }
    pid_t pid = bench_serve_start_roles(skald, dir, "commands", port);
    unsetenv("SKALD_TRACE_EXPORTER");
    unsetenv("SKALD_TRACE_SAMPLE");
    unsetenv("SKALD_TRACE_ENDPOINT");
    return pid;
}

static double span_metric(uint16_t port, const char *result)
{
    size_t size = (size_t)256 * 1024;
    char name[96], *text = malloc(size);
    if (!text)
        return -1;
    snprintf(name, sizeof name, "skald_trace_spans_total{result=\"%s\"}", result);
    int status = bench_http_request(port, "GET", "/metrics", "text/plain", "", 0, text, size);
    double v = status == 200 ? bench_metric(text, name) : -1;
    free(text);
    return v;
}

int bench_traced_commands(const bench_opts *opts)
{
    char skald[BENCH_PATH_MAX], work[BENCH_PATH_MAX], lua[BENCH_PATH_MAX];
    int rc = bench_skald_find(opts, skald, sizeof skald);
    if (rc || (rc = bench_workdir_create(opts->dir, work, sizeof work)) != 0)
        return rc;
    bench_print_where("work directory", work);
    bench_path_join(lua, sizeof lua, work, "commands.lua");
    if ((rc = bench_file_write(lua, bench_commands_lua)) != 0)
        return rc;
    sink snk;
    if ((rc = sink_start(&snk)) != 0)
        return rc;
    uint16_t tport = 0, uport = 0;
    pid_t traced = start_server(skald, work, "traced", &snk, &tport);
    pid_t untraced = traced > 0 ? start_server(skald, work, "untraced", NULL, &uport) : -1;
    if (traced < 0 || untraced < 0) {
        if (traced > 0)
            bench_serve_stop(traced);
        sink_stop(&snk);
        return -EIO;
    }
    printf("servers: traced (zipkin, sample 1, sink on 127.0.0.1:%u) on %u, untraced on %u\n",
           snk.port, tport, uport);
    rc = bench_preload(tport, opts->streams);
    if (rc == 0)
        rc = bench_preload(uport, opts->streams);
    double tsum = 0, usum = 0, tcpu = 0, ucpu = 0;
    uint64_t errors = 0, tcmds = 0, ucmds = 0;
    for (uint32_t run = 0; run < opts->runs && rc == 0; run++) {
        /* a nonce per run: a run must not place the order ids of the one before it */
        char args[64];
        snprintf(args, sizeof args, "%u n%lld-%u %lld", opts->streams, (long long)time(NULL), run,
                 (long long)getpid());
        bench_wrk_result t = {0}, u = {0};
        double c0 = bench_cpu_seconds(traced, NULL);
        rc = bench_wrk_run(opts, tport, lua, args, &t);
        double c1 = bench_cpu_seconds(traced, NULL), c2 = bench_cpu_seconds(untraced, NULL);
        if (rc == 0)
            rc = bench_wrk_run(opts, uport, lua, args, &u);
        double c3 = bench_cpu_seconds(untraced, NULL);
        if (rc)
            break;
        tsum += bench_wrk_per_s(&t);
        usum += bench_wrk_per_s(&u);
        tcpu += c1 - c0;
        ucpu += c3 - c2;
        tcmds += t.requests;
        ucmds += u.requests;
        errors += t.non2xx + t.sockerr + u.non2xx + u.sockerr;
        printf("run %u: traced %.0f/s (p99 %.2f ms, %.1f us CPU each), untraced %.0f/s (p99 "
               "%.2f ms, %.1f us CPU each)\n",
               run + 1, bench_wrk_per_s(&t), t.p99_us / 1e3,
               t.requests ? 1e6 * (c1 - c0) / (double)t.requests : 0, bench_wrk_per_s(&u),
               u.p99_us / 1e3, u.requests ? 1e6 * (c3 - c2) / (double)u.requests : 0);
    }
    double exported = span_metric(tport, "exported"), dropped = span_metric(tport, "dropped");
    int s1 = bench_serve_stop(traced), s2 = bench_serve_stop(untraced);
    sink_stop(&snk);
    if (rc == 0 && (s1 || s2)) {
        fprintf(stderr, "skald-bench: a skald serve did not exit 0 after SIGTERM\n");
        rc = -ECHILD;
    }
    if (rc)
        return rc;
    double t = tsum / opts->runs, u = usum / opts->runs;
    printf("spans: %.0f exported, %.0f dropped; sink took %" PRIu64 " POSTs, %" PRIu64 " bytes\n",
           exported, dropped, (uint64_t)atomic_load(&snk.posts), (uint64_t)atomic_load(&snk.bytes));
    printf("wrk: %u thread(s), %u connections, %u s per run, %u runs each; goal: ratio >= 0.9\n",
           opts->wrk_threads, opts->connections, opts->duration_s, opts->runs);
    double tus = tcmds ? 1e6 * tcpu / (double)tcmds : 0,
           uus = ucmds ? 1e6 * ucpu / (double)ucmds : 0;
    printf("cpu: the traced server used %.1f us per command, the untraced %.1f (ratio %.2f)\n", tus,
           uus, tus > 0 ? uus / tus : 0);
    printf("BENCH traced-commands commands_per_s=%.0f untraced_per_s=%.0f ratio=%.2f "
           "cpu_us=%.1f untraced_cpu_us=%.1f spans_dropped=%.0f errors=%" PRIu64 "\n",
           t, u, u > 0 ? t / u : 0, tus, uus, dropped, errors);
    if (!opts->keep)
        bench_workdir_remove(work);
    else
        printf("kept: %s\n", work);
    return 0;
}
