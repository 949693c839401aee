/*
 * queries.c -- `skald-bench queries`: named queries over HTTP while commands keep arriving,
 * against the same server's no-op endpoint under the same command load.
 *
 * Starts `skald serve` (bench_serve_start: all roles, fsync=always, one HTTP thread) on a
 * data directory in the work directory and loads it through the batch endpoint: 1,000
 * products (registered and stocked), --customers customers (opened) and --orders orders
 * (PlaceOrder o0..o<N-1> over the customers, 1-3 lines each). It then waits until the
 * `orders` read model has applied the last of them (GET /v1/queries/orders with
 * min_position = the position of the last batch's last event) and checks that one order
 * and one customer's page come back.
 *
 * Then a load thread sends --command-rate commands per second for the rest of the run: one
 * NDJSON batch every 10 ms on one keep-alive connection, half PlaceOrder (new orders of
 * the same customers, so the model keeps growing and the projection keeps writing) and
 * half RestockProduct. It is paced against the clock; when the server answers late it
 * sends what fell due at once, and a backlog of more than a second is dropped (counted
 * as missed) rather than sent as one burst. What it achieved is measured and reported.
 * After a second of load alone, wrk runs twice for --duration seconds with --connections
 * connections: first a 50/50 mix of GET /v1/queries/order?order_id=<random preloaded>
 * and GET /v1/queries/orders?customer_id=<random>&limit=20, then POST /v1/noop with the
 * body `{}`. Non-2xx answers, socket errors and commands the load saw refused are
 * counted and printed; any of them fails the run (exit 1) after the BENCH line.
 *
 * Where the time goes is printed too: the CPU of each server thread, of the load thread,
 * and the machine's idle share during each wrk run (from /proc), and the `orders` model's
 * lag at the end of each run (/metrics).
 */
#include "tools/bench/bench.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PRODUCTS        1000
#define BATCH_LINES_MAX 1000        /* the batch endpoint's bound */
#define TICK_NS         10000000ull /* the load sends one batch per tick */
#define BACKLOG_MAX_NS  1000000000ull
#define LOAD_REPLY_MAX  ((size_t)1 << 20)
#define THREADS_MAX     256

/* Orders o0..o<orders-1> and customers c0..c<customers-1> exist when wrk starts. */
static const char QUERIES_LUA[] =
    "local orders, customers = 1, 1\n"
    "local counter, tid, next_tid = 0, 0, 0\n"
    "function setup(thread) next_tid = next_tid + 1; thread:set('tid', next_tid) end\n"
    "function init(args) orders = tonumber(args[1]); customers = tonumber(args[2])\n"
    "  math.randomseed(tonumber(args[3]) + (tid or 0)) end\n"
    "function request()\n"
    "  counter = counter + 1\n"
    "  if counter % 2 == 0 then\n"
    "    return wrk.format('GET', '/v1/queries/orders?customer_id=c' ..\n"
    "      math.random(0, customers - 1) .. '&limit=20')\n"
    "  end\n"
    "  return wrk.format('GET', '/v1/queries/order?order_id=o' .. math.random(0, orders - 1))\n"
    "end\n" BENCH_WRK_DONE_LUA;

static const char NOOP_LUA[] =
    "local headers = {['Content-Type'] = 'application/json'}\n"
    "function request() return wrk.format('POST', '/v1/noop', headers, '{}') end\n"
    "function init(args) end\n" BENCH_WRK_DONE_LUA;

/* An NDJSON batch being built. */
typedef struct ndjson {
    char *text;
    size_t len, cap;
    uint32_t lines;
} ndjson;

static void ndjson_add(ndjson *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ndjson_add(ndjson *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->text + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    BENCH_ASSERT(n > 0 && (size_t)n < b->cap - b->len);
    b->len += (size_t)n;
    b->lines++;
}

static void add_place_order(ndjson *b, char prefix, uint64_t id, uint32_t customer, unsigned *seed)
{
    char lines[256];
    size_t len = 0;
    int count = 1 + rand_r(seed) % 3;
    for (int i = 0; i < count; i++)
        len += (size_t)snprintf(lines + len, sizeof lines - len,
                                "%s{\"sku\":\"p%d\",\"quantity\":%d,\"unit_price_cents\":%d}",
                                i ? "," : "", rand_r(seed) % PRODUCTS, 1 + rand_r(seed) % 5,
                                100 + rand_r(seed) % 9900);
    ndjson_add(b,
               "{\"type\":\"PlaceOrder\",\"body\":{\"order_id\":\"%c%" PRIu64
               "\",\"customer_id\":\"c%u\",\"lines\":[%s]}}\n",
               prefix, id, customer, lines);
}

/* The answer's lines: how many have status 200, and the largest "position" seen. */
static void count_answers(const char *body, uint64_t *ok, uint64_t *failed, int64_t *position)
{
    for (const char *line = body; line && *line;) {
        if (strncmp(line, "{\"status\":200", 13) == 0)
            (*ok)++;
        else if (*line == '{')
            (*failed)++;
        const char *end = strchr(line, '\n');
        const char *pos = strstr(line, "\"position\":");
        while (pos && (!end || pos < end)) {
            int64_t p = strtoll(pos + 11, NULL, 10);
            if (p > *position)
                *position = p;
            pos = strstr(pos + 11, "\"position\":");
        }
        line = end ? end + 1 : NULL;
    }
}

/* Sends one batch on a fresh connection; 0 if every line was accepted. */
static int post_batch(uint16_t port, const ndjson *b, char *reply, int64_t *position)
{
    int status = bench_http_request(port, "POST", "/v1/commands:batch", "application/x-ndjson",
                                    b->text, b->len, reply, LOAD_REPLY_MAX);
    const char *body = status == 200 ? strstr(reply, "\r\n\r\n") : NULL;
    uint64_t ok = 0, failed = 0;
    if (body)
        count_answers(body + 4, &ok, &failed, position);
    if (!body || failed || ok != b->lines) {
        fprintf(stderr,
                "skald-bench: preload batch answered %d with %" PRIu64 " of %u lines "
                "accepted\n",
                status, ok, b->lines);
        return -EIO;
    }
    return 0;
}

/* Products, customers and orders through the batch endpoint; the last event's position. */
static int preload(uint16_t port, uint32_t customers, uint32_t orders, int64_t *head)
{
    ndjson b = {.cap = (size_t)BATCH_LINES_MAX * 400};
    b.text = malloc(b.cap);
    char *reply = malloc(LOAD_REPLY_MAX);
    int rc = b.text && reply ? 0 : -ENOMEM;
    unsigned seed = 1;
    /* pass 0 registers the products, 1 stocks them, 2 opens customers, 3 places orders */
    uint32_t counts[4] = {PRODUCTS, PRODUCTS, customers, orders};
    for (int pass = 0; pass < 4 && rc == 0; pass++) {
        for (uint32_t i = 0; i < counts[pass] && rc == 0; i++) {
            if (pass == 0)
                ndjson_add(&b,
                           "{\"type\":\"RegisterProduct\",\"body\":{\"sku\":\"p%u\","
                           "\"name\":\"bench\",\"price_cents\":100}}\n",
                           i);
            else if (pass == 1)
                ndjson_add(&b,
                           "{\"type\":\"RestockProduct\",\"body\":{\"sku\":\"p%u\","
                           "\"quantity\":1000000000}}\n",
                           i);
            else if (pass == 2)
                ndjson_add(&b,
                           "{\"type\":\"OpenCustomer\",\"body\":{\"customer_id\":\"c%u\","
                           "\"name\":\"bench\",\"credit_limit_cents\":1000000000000}}\n",
                           i);
            else
                add_place_order(&b, 'o', i, i % customers, &seed);
            if (b.lines == BATCH_LINES_MAX || i + 1 == counts[pass]) {
                rc = post_batch(port, &b, reply, head);
                b.len = 0;
                b.lines = 0;
            }
        }
    }
    free(reply);
    free(b.text);
    return rc;
}

/* GET path into a buffer of size; the status, or < 0. */
static int get(uint16_t port, const char *path, char *reply, size_t size)
{
    return bench_http_request(port, "GET", path, "application/json", "", 0, reply, size);
}

/* Waits until the orders model has applied position head, then checks one order and one
 * customer's page. */
static int catch_up_and_check(uint16_t port, int64_t head, uint32_t customers)
{
    char path[256], reply[16384];
    int status = 0;
    snprintf(path, sizeof path,
             "/v1/queries/orders?min_position=%" PRId64 "&limit=1"
             "&timeout_ms=30000",
             head);
    for (int i = 0; i < 4 && status != 200; i++)
        status = get(port, path, reply, sizeof reply);
    if (status != 200) {
        fprintf(stderr,
                "skald-bench: the orders model did not reach position %" PRId64
                " in 2 min (last answer %d)\n",
                head, status);
        return -ETIMEDOUT;
    }
    status = get(port, "/v1/queries/order?order_id=o0", reply, sizeof reply);
    if (status != 200 || !strstr(reply, "\"order_id\":\"o0\"") || !strstr(reply, "\"lines\":[{")) {
        fprintf(stderr, "skald-bench: GET /v1/queries/order?order_id=o0 answered %d: %s\n", status,
                reply);
        return -EIO;
    }
    snprintf(path, sizeof path, "/v1/queries/orders?customer_id=c%u&limit=20", customers - 1);
    status = get(port, path, reply, sizeof reply);
    snprintf(path, sizeof path, "\"customer_id\":\"c%u\"", customers - 1);
    if (status != 200 || !strstr(reply, path)) {
        fprintf(stderr, "skald-bench: GET /v1/queries/orders?customer_id=c%u answered %d: %s\n",
                customers - 1, status, reply);
        return -EIO;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The paced command load: one thread, one keep-alive connection.
 */
typedef struct load {
    uint16_t port;
    uint32_t rate;      /* commands per second wanted */
    uint32_t customers; /* PlaceOrder picks one of c0..c<customers-1> */
    pthread_t thread;
    _Atomic int stop;
    /* written by the load thread, read by the benchmark between phases */
    _Atomic uint64_t accepted; /* command lines answered 200 */
    _Atomic uint64_t refused;  /* command lines answered otherwise */
    _Atomic uint64_t missed;   /* commands that fell due but were dropped as backlog */
    _Atomic uint64_t batches;  /* batches answered */
    _Atomic uint64_t batch_ns; /* their round trips, summed */
    _Atomic uint64_t batch_max_ns;
    _Atomic int error; /* a connection or protocol failure that stopped the load */
} load;

static int connect_loopback(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        int rc = -errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads one answer with a Content-Length from a keep-alive connection into buf (NUL-ended);
 * its status, or < 0. *body_out points into buf. */
static int read_answer(int fd, char *buf, size_t size, const char **body_out)
{
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have + 1 >= size)
            return -E2BIG;
        ssize_t got = read(fd, buf + have, size - 1 - have);
        if (got <= 0)
            return got < 0 ? -errno : -EPIPE;
        have += (size_t)got;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t body_len = 0;
    for (char *h = strchr(buf, '\n'); h && h < end; h = strchr(h + 1, '\n'))
        if (strncasecmp(h + 1, "content-length:", 15) == 0)
            body_len = strtoull(h + 16, NULL, 10);
    size_t total = (size_t)(end + 4 - buf) + body_len;
    if (total + 1 > size)
        return -E2BIG;
    while (have < total) {
        ssize_t got = read(fd, buf + have, total - have);
        if (got <= 0)
            return got < 0 ? -errno : -EPIPE;
        have += (size_t)got;
    }
    buf[have] = '\0';
    *body_out = end + 4;
    return have > 12 ? atoi(buf + 9) : -EIO;
}

static void sleep_until(uint64_t t_ns)
{
    struct timespec ts = {(time_t)(t_ns / 1000000000u), (long)(t_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void *load_main(void *arg)
{
    load *l = arg;
    ndjson b = {.cap = (size_t)BATCH_LINES_MAX * 400};
    b.text = malloc(b.cap);
    char *reply = malloc(LOAD_REPLY_MAX);
    int fd = connect_loopback(l->port), rc = fd < 0 ? fd : 0;
    if (!b.text || !reply)
        rc = -ENOMEM;
    unsigned seed = (unsigned)getpid();
    char head[256];
    uint64_t start = bench_now_ns(), due_sent = 0, ticks = 0, next_order = 0, restocks = 0;
    while (rc == 0 && !atomic_load(&l->stop)) {
        uint64_t now = bench_now_ns(), due = (uint64_t)l->rate * ((now - start) / TICK_NS) / 100;
        if (due - due_sent > (uint64_t)l->rate * BACKLOG_MAX_NS / 1000000000u) {
            /* the server is a second behind: drop the backlog, keep the pace from here */
            atomic_fetch_add(&l->missed, due - due_sent);
            due_sent = due;
        }
        uint64_t count = due - due_sent;
        if (count > BATCH_LINES_MAX)
            count = BATCH_LINES_MAX;
        if (count == 0) {
            ticks = (now - start) / TICK_NS + 1;
            sleep_until(start + ticks * TICK_NS);
            continue;
        }
        b.len = 0;
        b.lines = 0;
        for (uint64_t i = 0; i < count; i++) {
            if ((next_order + restocks) % 2 == 0)
                add_place_order(&b, 'l', next_order++, (uint32_t)rand_r(&seed) % l->customers,
                                &seed);
            else
                restocks++, ndjson_add(&b,
                                       "{\"type\":\"RestockProduct\",\"body\":{\"sku\":\"p%d\","
                                       "\"quantity\":1}}\n",
                                       rand_r(&seed) % PRODUCTS);
        }
        int n = snprintf(head, sizeof head,
                         "POST /v1/commands:batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: application/x-ndjson\r\nContent-Length: %zu\r\n\r\n",
                         b.len);
        uint64_t t0 = bench_now_ns();
        const char *body = NULL;
        if ((rc = write_all(fd, head, (size_t)n)) != 0 || (rc = write_all(fd, b.text, b.len)))
            break;
        int status = read_answer(fd, reply, LOAD_REPLY_MAX, &body);
        uint64_t rtt = bench_now_ns() - t0;
        if (status < 0) {
            rc = status;
            break;
        }
        uint64_t ok = 0, failed = 0;
        int64_t position = -1;
        if (status == 200)
            count_answers(body, &ok, &failed, &position);
        if (ok + failed != count) /* a refused batch (503...) refuses every line */
            failed = count - ok;
        atomic_fetch_add(&l->accepted, ok);
        atomic_fetch_add(&l->refused, failed);
        atomic_fetch_add(&l->batches, 1);
        atomic_fetch_add(&l->batch_ns, rtt);
        if (rtt > atomic_load(&l->batch_max_ns))
            atomic_store(&l->batch_max_ns, rtt);
        due_sent += count;
    }
    atomic_store(&l->error, rc);
    if (fd >= 0)
        close(fd);
    free(reply);
    free(b.text);
    return NULL;
}

/* What the load did between two looks. */
typedef struct load_mark {
    uint64_t t_ns, accepted, refused, missed, batches, batch_ns;
} load_mark;

static load_mark load_look(load *l)
{
    return (load_mark){bench_now_ns(),           atomic_load(&l->accepted),
                       atomic_load(&l->refused), atomic_load(&l->missed),
                       atomic_load(&l->batches), atomic_load(&l->batch_ns)};
}

static double load_rate(const load_mark *a, const load_mark *b)
{
    return b->t_ns > a->t_ns
               ? (double)(b->accepted - a->accepted) / bench_seconds(b->t_ns - a->t_ns)
               : 0;
}

static void print_load(const char *what, const load *l, const load_mark *a, const load_mark *b)
{
    uint64_t batches = b->batches - a->batches;
    printf("load:     during %s %.0f commands/s accepted of %u wanted; refused %" PRIu64
           ", missed (backlog dropped) %" PRIu64 "; batch round trip mean %.2f ms\n",
           what, load_rate(a, b), l->rate, b->refused - a->refused, b->missed - a->missed,
           batches ? (double)(b->batch_ns - a->batch_ns) / 1e6 / (double)batches : 0);
}

/* ---------------------------------------------------------------------------------------
 * Where the CPU goes: per-thread times from /proc, and the machine's idle share.
 */
typedef struct cpu_look {
    uint64_t t_ns;
    uint32_t count;
    int tid[THREADS_MAX];
    uint64_t ticks[THREADS_MAX]; /* utime + stime, clock ticks */
    uint64_t idle, total;        /* /proc/stat's first line, clock ticks */
} cpu_look;

static void cpu_read(int pid, cpu_look *c)
{
    char dir[64], path[384];
    snprintf(dir, sizeof dir, "/proc/%d/task", pid);
    c->count = 0;
    c->t_ns = bench_now_ns();
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) && c->count < THREADS_MAX;) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
        double ticks = bench_stat_ticks(path);
        if (ticks >= 0) {
            c->tid[c->count] = atoi(e->d_name);
            c->ticks[c->count++] = (uint64_t)ticks;
        }
    }
    if (d)
        closedir(d);
    c->idle = c->total = 0;
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                    &v[4], &v[5], &v[6], &v[7]) == 8) {
        c->idle = v[3] + v[4];
        for (int i = 0; i < 8; i++)
            c->total += v[i];
    }
    if (f)
        fclose(f);
}

/* Prints the threads of a and b that used at least 2% of a core in between, busiest first. */
static void cpu_print(const char *who, const cpu_look *a, const cpu_look *b)
{
    double hz = (double)sysconf(_SC_CLK_TCK), s = bench_seconds(b->t_ns - a->t_ns);
    double share[THREADS_MAX];
    for (uint32_t i = 0; i < b->count; i++) {
        uint64_t before = 0;
        for (uint32_t j = 0; j < a->count; j++)
            if (a->tid[j] == b->tid[i])
                before = a->ticks[j];
        share[i] = s > 0 ? 100.0 * (double)(b->ticks[i] - before) / hz / s : 0;
    }
    printf("cpu:      %s threads (%% of one core):", who);
    double total = 0;
    for (uint32_t shown = 0; shown < b->count; shown++) {
        uint32_t top = 0;
        for (uint32_t i = 1; i < b->count; i++)
            if (share[i] > share[top])
                top = i;
        if (share[top] < 2)
            break;
        printf(" %d:%.0f", b->tid[top], share[top]);
        total += share[top];
        share[top] = -1;
    }
    if (total > 0)
        printf(" (total %.0f)\n", total);
    else
        printf(" each under 2%%\n");
}

static void cpu_print_machine(const cpu_look *a, const cpu_look *b)
{
    uint64_t total = b->total - a->total;
    printf("cpu:      machine idle %.0f%% (of %ld cores)\n",
           total ? 100.0 * (double)(b->idle - a->idle) / (double)total : 0,
           sysconf(_SC_NPROCESSORS_ONLN));
}

/* The orders model's lag in events (skald_projection_lag_events), or -1. */
static double orders_lag(uint16_t port)
{
    size_t size = (size_t)256 * 1024;
    char *text = malloc(size);
    double lag = -1;
    if (text && get(port, "/metrics", text, size) == 200)
        lag = bench_metric(text, "skald_projection_lag_events{projection=\"orders\"}");
    free(text);
    return lag;
}

/* Other work on the machine shares the cores with the server, wrk and the load. */
static void print_loadavg(void)
{
    char text[128] = "";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fgets(text, sizeof text, f))
        printf("machine:  %ld cores, load average %.14s before the run (other work shares "
               "them)\n",
               sysconf(_SC_NPROCESSORS_ONLN), text);
    if (f)
        fclose(f);
}

/* One wrk run under the load, with the CPU looks around it. */
static int measure(const bench_opts *opts, uint16_t port, pid_t server, load *l, const char *what,
                   const char *script, const char *args, bench_wrk_result *out,
                   load_mark *load_before, load_mark *load_after)
{
    cpu_look *c = malloc(4 * sizeof *c);
    if (!c)
        return -ENOMEM;
    cpu_read(server, &c[0]);
    cpu_read(getpid(), &c[1]);
    *load_before = load_look(l);
    int rc = bench_wrk_run(opts, port, script, args, out);
    *load_after = load_look(l);
    cpu_read(server, &c[2]);
    cpu_read(getpid(), &c[3]);
    if (rc == 0) {
        printf("--- %s\n", what);
        cpu_print("server", &c[0], &c[2]);
        cpu_print("skald-bench (the load)", &c[1], &c[3]);
        cpu_print_machine(&c[0], &c[2]);
        print_load(what, l, load_before, load_after);
        printf("model:    orders lag %.0f events after the run\n", orders_lag(port));
    }
    free(c);
    return rc;
}

int bench_queries(const bench_opts *opts)
{
    char skald[BENCH_PATH_MAX], work[BENCH_PATH_MAX], queries_lua[BENCH_PATH_MAX],
        noop_lua[BENCH_PATH_MAX];
    int rc = bench_skald_find(opts, skald, sizeof skald);
    if (rc)
        return rc;
    if ((rc = bench_workdir_create(opts->dir, work, sizeof work)) != 0)
        return rc;
    bench_print_where("work directory", work);
    print_loadavg();
    bench_path_join(queries_lua, sizeof queries_lua, work, "queries.lua");
    bench_path_join(noop_lua, sizeof noop_lua, work, "noop.lua");
    if ((rc = bench_file_write(queries_lua, QUERIES_LUA)) != 0 ||
        (rc = bench_file_write(noop_lua, NOOP_LUA)) != 0)
        return rc;
    uint16_t port = 0;
    pid_t pid = bench_serve_start_roles(skald, work, "commands,projections,queries", &port);
    if (pid < 0)
        return -EIO;
    printf("server:   %s serve --fsync always --threads 1 on 127.0.0.1:%u (pid %d)\n", skald, port,
           (int)pid);
    uint64_t t0 = bench_now_ns();
    int64_t head = -1;
    rc = preload(port, opts->customers, opts->orders, &head);
    uint64_t t1 = bench_now_ns();
    if (rc == 0)
        rc = catch_up_and_check(port, head, opts->customers);
    if (rc == 0)
        printf("preload:  %u products, %u customers, %u orders (last position %" PRId64
               ") in %.2f s through the batch endpoint; orders model caught up %.2f s later\n",
               PRODUCTS, opts->customers, opts->orders, head, bench_seconds(t1 - t0),
               bench_seconds(bench_now_ns() - t1));

    load l = {.port = port, .rate = opts->command_rate, .customers = opts->customers};
    int load_started = 0;
    if (rc == 0 && (rc = -pthread_create(&l.thread, NULL, load_main, &l)) == 0)
        load_started = 1;
    load_mark a0 = load_look(&l), a1;
    if (rc == 0) {
        usleep(1000000); /* the load alone first, so wrk meets it in its steady state */
        a1 = load_look(&l);
        print_load("1 s alone", &l, &a0, &a1);
    }
    bench_wrk_result q = {0}, noop = {0};
    load_mark q0, q1, n0, n1;
    char args[64]; /* the query script's init(): orders, customers, a seed */
    snprintf(args, sizeof args, "%u %u %lld", opts->orders, opts->customers, (long long)getpid());
    if (rc == 0)
        rc = measure(opts, port, pid, &l, "queries", queries_lua, args, &q, &q0, &q1);
    if (rc == 0)
        rc = measure(opts, port, pid, &l, "noop", noop_lua, "", &noop, &n0, &n1);
    if (load_started) {
        atomic_store(&l.stop, 1);
        pthread_join(l.thread, NULL);
        if (rc == 0 && (rc = atomic_load(&l.error)) != 0)
            fprintf(stderr, "skald-bench: the command load failed: %s\n", strerror(-rc));
    }
    int stop = bench_serve_stop(pid);
    if (rc == 0 && stop != 0) {
        fprintf(stderr, "skald-bench: skald serve did not exit 0 after SIGTERM\n");
        rc = stop;
    }
    if (rc != 0) {
        fprintf(stderr, "skald-bench: queries failed; the server's log is in %s (kept)\n", work);
        return rc;
    }

    double qps = bench_wrk_per_s(&q), nps = bench_wrk_per_s(&noop), rate = load_rate(&q0, &q1);
    uint64_t load_refused = q1.refused - q0.refused + n1.refused - n0.refused;
    uint64_t errors = q.non2xx + q.sockerr + noop.non2xx + noop.sockerr + load_refused;
    printf("queries:  %" PRIu64 " in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms, non-2xx %" PRIu64
           ", socket errors %" PRIu64 "\n",
           q.requests, q.duration_us / 1e6, qps, q.p50_us / 1e3, q.p99_us / 1e3, q.non2xx,
           q.sockerr);
    printf("noop:     %" PRIu64 " in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms, non-2xx %" PRIu64
           ", socket errors %" PRIu64 "\n",
           noop.requests, noop.duration_us / 1e6, nps, noop.p50_us / 1e3, noop.p99_us / 1e3,
           noop.non2xx, noop.sockerr);
    printf("wrk: %u thread(s), %u connections, %u s per run; command load %u/s wanted; "
           "goal: ratio >= 0.5 (%s), p99 < 5 ms (%s)\n",
           opts->wrk_threads, opts->connections, opts->duration_s, opts->command_rate,
           nps > 0 && qps / nps >= 0.5 ? "met" : "NOT met", q.p99_us < 5000 ? "met" : "NOT met");
    printf("BENCH queries queries_per_s=%.0f p99_ms=%.2f noop_per_s=%.0f ratio=%.2f "
           "command_rate=%.0f errors=%" PRIu64 "\n",
           qps, q.p99_us / 1e3, nps, nps > 0 ? qps / nps : 0, rate, errors);
    fflush(stdout);
    if (errors) {
        fprintf(stderr,
                "skald-bench: queries: %" PRIu64 " requests or commands failed; the "
                "server's log is in %s (kept)\n",
                errors, work);
        return -EIO;
    }
    if (!opts->keep)
        bench_workdir_remove(work);
    else
        printf("kept: %s\n", work);
    return 0;
}
