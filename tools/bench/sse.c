/*
 * sse.c -- `skald-bench sse`: how late the live feed delivers, with --clients streams open
 * while commands are posted at a fixed --rate.
 *
 * Starts `skald serve` (http-commands' set-up: fsync=always, one HTTP thread), registers
 * and stocks --streams products, opens --clients streams of GET /v1/events/stream (from
 * the head, HTTP/1.0 so the body is the bare event stream), then posts RestockProduct
 * (one event each) for --duration seconds on a fixed schedule, open loop: command i is
 * due at start + i / rate, spread over POSTERS keep-alive connections, each sent when due
 * whatever the answers before it did. One thread reads every stream with epoll.
 *
 * Lag of an event = the time its id reached the last of the clients minus the time its
 * command's answer was read (0 if some client saw it before the answer arrived). The
 * figures: p50, p99 and the largest lag over every posted event; events_per_s is the
 * rate the commands were actually answered at, and errors counts failed commands and
 * events some client never got. Both ends run on the same machine as the server.
 */
#include "tools/bench/bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POSTERS         32
#define CLIENT_BUF      ((size_t)256 * 1024)
#define DRAIN_TIMEOUT_S 10 /* after the last command, for every client to get every event */

typedef struct sse_client {
    int fd;
    char *buf;
    size_t len;
} sse_client;

typedef struct run {
    const bench_opts *opts;
    uint16_t port;
    uint64_t base, total; /* positions base .. base + total - 1 are the posted events */
    uint64_t start_ns;
    /* posters write their own slots; read after they are joined */
    uint64_t *answer_ns;      /* by position - base */
    _Atomic uint64_t failed;  /* commands not answered 200 */
    _Atomic uint64_t late;    /* commands sent more than 10 ms after they were due */
    _Atomic uint64_t last_ns; /* the last answer */
    /* the reader thread's */
    uint64_t *seen_ns; /* by position - base: when the last client got it */
    uint32_t *seen;    /* by position - base: how many clients got it */
    uint64_t complete; /* events every client got */
    _Atomic int posting_done;
} run;

typedef struct poster {
    run *r;
    uint32_t index;
    pthread_t tid;
} poster;

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one answer on a keep-alive connection; its status, and the "position" of the body
 * in *position. */
static int read_answer(int fd, char *buf, size_t size, uint64_t *position)
{
    size_t have = 0;
    char *body = NULL;
    size_t want = 0;
    for (;;) {
        if (have + 1 >= size)
            return -EIO;
        ssize_t n = read(fd, buf + have, size - 1 - have);
        if (n <= 0)
            return -EIO;
        have += (size_t)n;
        buf[have] = '\0';
        if (!body) {
            char *end = strstr(buf, "\r\n\r\n");
            if (!end)
                continue;
            body = end + 4;
            char *cl = strcasestr(buf, "Content-Length:");
            if (!cl || cl > end)
                return -EIO;
            want = (size_t)(body - buf) + strtoull(cl + 15, NULL, 10);
        }
        if (have >= want)
            break;
    }
    char *p = strstr(body, "\"position\":");
    *position = p ? strtoull(p + 11, NULL, 10) : UINT64_MAX;
    return atoi(buf + 9);
}

static void sleep_until(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void *poster_main(void *arg)
{
    poster *p = arg;
    run *r = p->r;
    int fd = connect_to(r->port);
    char req[512], buf[4096];
    uint64_t interval_ns = 1000000000u / r->opts->rate;
    for (uint64_t i = p->index; i < r->total; i += POSTERS) {
        uint64_t due = r->start_ns + i * interval_ns;
        sleep_until(due);
        if (bench_now_ns() > due + 10000000u)
            atomic_fetch_add(&r->late, 1);
        char body[96];
        int blen = snprintf(body, sizeof body, "{\"sku\":\"b%" PRIu64 "\",\"quantity\":1}",
                            i % r->opts->streams);
        int n = snprintf(req, sizeof req,
                         "POST /v1/commands/RestockProduct HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                         blen, body);
        uint64_t position = UINT64_MAX;
        int status = fd < 0 ? fd : write_all(fd, req, (size_t)n);
        if (status == 0)
            status = read_answer(fd, buf, sizeof buf, &position);
        uint64_t now = bench_now_ns();
        if (status != 200 || position < r->base || position >= r->base + r->total) {
            atomic_fetch_add(&r->failed, 1);
            if (status < 0) { /* the connection broke: a new one for the rest */
                if (fd >= 0)
                    close(fd);
                fd = connect_to(r->port);
            }
            continue;
        }
        r->answer_ns[position - r->base] = now;
        uint64_t last = atomic_load(&r->last_ns);
        while (now > last && !atomic_compare_exchange_weak(&r->last_ns, &last, now))
            ;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* Opens one stream and waits for its first comment (the server has the subscription). */
static int open_client(uint16_t port, sse_client *c)
{
    c->buf = malloc(CLIENT_BUF);
    c->len = 0;
    c->fd = connect_to(port);
    if (!c->buf || c->fd < 0)
        return c->fd < 0 ? c->fd : -ENOMEM;
    static const char req[] = "GET /v1/events/stream HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write_all(c->fd, req, sizeof req - 1) != 0)
        return -EIO;
    char *end = NULL;
    while (!end || !strstr(end, "\n\n")) {
        ssize_t n = read(c->fd, c->buf + c->len, CLIENT_BUF - 1 - c->len);
        if (n <= 0)
            return -EIO;
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        end = strstr(c->buf, "\r\n\r\n");
    }
    if (strncmp(c->buf, "HTTP/1.0 200", 12) != 0 && strncmp(c->buf, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "skald-bench: the stream answered: %.80s\n", c->buf);
        return -EIO;
    }
    c->len = 0; /* nothing but the headers and the first comment came yet */
    return fcntl(c->fd, F_SETFL, O_NONBLOCK) == 0 ? 0 : -errno;
}

/* Reads what is there, counting each complete "id: N" line. */
static int client_read(run *r, sse_client *c, uint32_t clients)
{
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->len, CLIENT_BUF - c->len);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -EIO;
        uint64_t now = bench_now_ns();
        c->len += (size_t)n;
        size_t at = 0;
        for (;;) {
            char *nl = memchr(c->buf + at, '\n', c->len - at);
            if (!nl)
                break;
            if (strncmp(c->buf + at, "id: ", 4) == 0) {
                uint64_t pos = strtoull(c->buf + at + 4, NULL, 10);
                if (pos >= r->base && pos < r->base + r->total) {
                    uint64_t i = pos - r->base;
                    r->seen_ns[i] = now;
                    if (++r->seen[i] == clients)
                        r->complete++;
                }
            }
            at = (size_t)(nl - c->buf) + 1;
        }
        memmove(c->buf, c->buf + at, c->len - at);
        c->len -= at;
    }
}

static int read_streams(run *r, sse_client *clients, uint32_t count)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    for (uint32_t i = 0; i < count; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, clients[i].fd, &ev);
    }
    int rc = 0;
    uint64_t deadline = 0;
    struct epoll_event evs[64];
    while (r->complete < r->total) {
        if (!deadline && atomic_load(&r->posting_done))
            deadline = bench_now_ns() + (uint64_t)DRAIN_TIMEOUT_S * 1000000000u;
        if (deadline && bench_now_ns() > deadline)
            break;
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n && rc == 0; i++)
            rc = client_read(r, &clients[evs[i].data.u32], count);
        if (rc)
            break;
    }
    close(ep);
    return rc;
}

static uint64_t head_position(uint16_t port)
{
    size_t size = (size_t)256 * 1024;
    char *text = malloc(size);
    uint64_t head = UINT64_MAX;
    if (text &&
        bench_http_request(port, "GET", "/metrics", "text/plain", "", 0, text, size) == 200) {
        char *p = strstr(text, "\nskald_log_head_position ");
        if (p)
            head = strtoull(p + 25, NULL, 10);
    }
    free(text);
    return head;
}

static void *posting_main(void *arg)
{
    poster *ps = arg;
    run *r = ps[0].r;
    for (uint32_t i = 0; i < POSTERS; i++)
        pthread_create(&ps[i].tid, NULL, poster_main, &ps[i]);
    for (uint32_t i = 0; i < POSTERS; i++)
        pthread_join(ps[i].tid, NULL);
    atomic_store(&r->posting_done, 1);
    return NULL;
}

static int measure(run *r, sse_client *clients)
{
    const bench_opts *o = r->opts;
    uint32_t opened = 0;
    int rc = 0;
    for (; opened < o->clients && rc == 0; opened++)
        rc = open_client(r->port, &clients[opened]);
    if (rc)
        fprintf(stderr, "skald-bench: could not open stream %u: %s\n", opened, strerror(-rc));
    poster ps[POSTERS];
    pthread_t posting;
    if (rc == 0) {
        printf("streams:  %u open; posting %" PRIu64 " RestockProduct at %u/s over %d "
               "connections\n",
               o->clients, r->total, o->rate, POSTERS);
        fflush(stdout);
        r->start_ns = bench_now_ns() + 50000000u;
        for (uint32_t i = 0; i < POSTERS; i++)
            ps[i] = (poster){.r = r, .index = i};
        pthread_create(&posting, NULL, posting_main, ps);
        rc = read_streams(r, clients, o->clients);
        pthread_join(posting, NULL);
    }
    for (uint32_t i = 0; i < o->clients; i++) {
        if (clients[i].fd >= 0)
            close(clients[i].fd);
        free(clients[i].buf);
    }
    return rc;
}

int bench_sse(const bench_opts *opts)
{
    char skald[BENCH_PATH_MAX], work[BENCH_PATH_MAX];
    int rc = bench_skald_find(opts, skald, sizeof skald);
    if (rc)
        return rc;
    if ((rc = bench_workdir_create(opts->dir, work, sizeof work)) != 0)
        return rc;
    bench_print_where("work directory", work);
    uint16_t port = 0;
    pid_t pid = bench_serve_start(skald, work, &port);
    if (pid < 0)
        return -EIO;
    printf("server:   %s serve --fsync always --threads 1 on 127.0.0.1:%u\n", skald, port);
    run r = {.opts = opts, .total = (uint64_t)opts->rate * opts->duration_s};
    sse_client *clients = calloc(opts->clients, sizeof *clients);
    r.answer_ns = calloc(r.total, sizeof *r.answer_ns);
    r.seen_ns = calloc(r.total, sizeof *r.seen_ns);
    r.seen = calloc(r.total, sizeof *r.seen);
    rc = clients && r.answer_ns && r.seen_ns && r.seen ? 0 : -ENOMEM;
    for (uint32_t i = 0; clients && i < opts->clients; i++)
        clients[i].fd = -1;
    if (rc == 0)
        rc = bench_preload(port, opts->streams);
    if (rc == 0 && (r.base = head_position(port)) == UINT64_MAX)
        rc = -EIO;
    r.port = port;
    if (rc == 0)
        rc = measure(&r, clients);
    int stop = bench_serve_stop(pid);
    if (rc == 0 && stop != 0) {
        fprintf(stderr, "skald-bench: skald serve did not exit 0 after SIGTERM\n");
        rc = stop;
    }
    uint64_t *lags = rc == 0 ? malloc(r.total * sizeof *lags) : NULL;
    if (rc == 0 && !lags)
        rc = -ENOMEM;
    if (rc == 0) {
        uint64_t n = 0, missing = 0;
        for (uint64_t i = 0; i < r.total; i++) {
            if (!r.answer_ns[i])
                continue; /* counted in failed */
            if (r.seen[i] < opts->clients) {
                missing++;
                continue;
            }
            lags[n++] = r.seen_ns[i] > r.answer_ns[i] ? r.seen_ns[i] - r.answer_ns[i] : 0;
        }
        double secs = bench_seconds(atomic_load(&r.last_ns) - r.start_ns);
        double p50 = n ? bench_percentile(lags, n, 50) / 1e6 : 0;
        double p99 = n ? bench_percentile(lags, n, 99) / 1e6 : 0;
        double max = n ? bench_percentile(lags, n, 100) / 1e6 : 0;
        uint64_t failed = atomic_load(&r.failed), late = atomic_load(&r.late);
        printf("commands: %" PRIu64 " answered in %.1f s = %.0f/s; failed %" PRIu64
               ", sent > 10 ms late %" PRIu64 "\n",
               r.total - failed, secs, secs > 0 ? (double)(r.total - failed) / secs : 0, failed,
               late);
        printf("feed:     %u clients; %" PRIu64 " events to each = %.0f deliveries/s; lag to the "
               "last client p50 %.2f ms, p99 %.2f ms, max %.2f ms; missing %" PRIu64 "\n",
               opts->clients, n, secs > 0 ? (double)n * opts->clients / secs : 0, p50, p99, max,
               missing);
        printf("goal: lag p99 < 50 ms at 100 clients and 2000 commands/s\n");
        printf("BENCH sse clients=%u events_per_s=%.0f lag_p50_ms=%.2f lag_p99_ms=%.2f "
               "lag_max_ms=%.2f errors=%" PRIu64 "\n",
               opts->clients, secs > 0 ? (double)(r.total - failed) / secs : 0, p50, p99, max,
               failed + missing);
    }
    free(lags);
    free(clients);
    free(r.answer_ns);
    free(r.seen_ns);
    free(r.seen);
    if (!opts->keep)
        bench_workdir_remove(work);
    else
        printf("kept: %s\n", work);
    return rc;
}
