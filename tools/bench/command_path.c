/*
 * command_path.c -- `skald-bench command-path`: the CPU one command costs the thread that
 * submits it, in-process, without HTTP or wrk: the part of http-commands' HTTP thread that
 * Skald's own code decides (finding or loading the aggregate, deciding, encoding, queueing
 * the append).
 *
 * The bus runs as `skald serve` sets it up (a cache of 10,000 aggregates, a snapshot every
 * 100 events) over a log with fsync=never (the disk is not what is measured: the
 * submitting thread's CPU is). --streams products are registered and stocked, then
 * --events commands of http-commands' mix (PlaceOrder with 1-3 random lines, a new order
 * each; RestockProduct of a random product) are submitted from one thread with
 * --connections in flight, each body made as text and parsed as the HTTP layer does.
 *
 * The baseline, measured in the same run: making, parsing and checking the same bodies
 * against their command schemas, and nothing else. The two alternate in ten slices, so a
 * change in the machine's speed during the run (the VMs this runs on drift by a third)
 * falls on both alike. ratio = baseline CPU / command CPU; a faster decision path raises it.
 */
#include "commands/commands.h"
#include "tools/bench/bench.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define SLICES         10
#define CACHE_MAX      10000 /* skald serve's --cache-max default */
#define SNAPSHOT_EVERY 100   /* skald serve's --snapshot-every default */
#define BODY_MAX       512

typedef struct cp_slot {
    cmd_outcome out;
    json_t *body;
    bool used;
} cp_slot;

typedef struct cp_env {
    bench_bus b;
    ev_registry *commands; /* the baseline's checks */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t inflight;
    uint64_t failed;
    int first_failure;
} cp_env;

static double thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int env_open(cp_env *env, const char *work)
{
    int rc = bench_bus_open(&env->b, work, SNAPSHOT_EVERY, CACHE_MAX, "command-path");
    if (rc)
        return rc;
    char cmds[BENCH_PATH_MAX];
    snprintf(cmds, sizeof cmds, "%s/commands/schemas", bench_source_dir());
    sk_error err = {0};
    rc = ev_registry_open(cmds, NULL, &env->commands, &err);
    if (rc) {
        fprintf(stderr, "skald-bench: command-path set-up: %s\n", err.message);
        bench_bus_close(&env->b);
    }
    return rc;
}

static void env_close(cp_env *env)
{
    ev_registry_destroy(env->commands);
    bench_bus_close(&env->b);
}

static void done(void *ctx, cmd_outcome *out)
{
    cp_env *env = ctx;
    pthread_mutex_lock(&env->mu);
    if (out->status && env->failed++ == 0)
        env->first_failure = out->status;
    env->inflight--;
    pthread_cond_signal(&env->cv);
    pthread_mutex_unlock(&env->mu);
}

/* Waits until fewer than limit commands are in flight (0: until none is). */
static void wait_below(cp_env *env, uint32_t limit)
{
    pthread_mutex_lock(&env->mu);
    while (limit ? env->inflight >= limit : env->inflight > 0)
        pthread_cond_wait(&env->cv, &env->mu);
    pthread_mutex_unlock(&env->mu);
}

/* Command number k of the mix as text into body; its name. The same k and seed give the
 * same body, so the baseline parses what the commands run parsed. */
static const char *make_body(uint64_t k, uint32_t products, unsigned *seed, char *body)
{
    if (rand_r(seed) & 1) {
        int lines = 1 + rand_r(seed) % 3;
        int len =
            snprintf(body, BODY_MAX, "{\"order_id\":\"o%llu\",\"customer_id\":\"c1\",\"lines\":[",
                     (unsigned long long)k);
        for (int l = 0; l < lines; l++)
            len += snprintf(body + len, (size_t)(BODY_MAX - len),
                            "%s{\"sku\":\"b%u\",\"quantity\":1,\"unit_price_cents\":100}",
                            l ? "," : "", (unsigned)rand_r(seed) % products);
        snprintf(body + len, (size_t)(BODY_MAX - len), "]}");
        return "PlaceOrder";
    }
    snprintf(body, BODY_MAX, "{\"sku\":\"b%u\",\"quantity\":1}", (unsigned)rand_r(seed) % products);
    return "RestockProduct";
}

/* Runs one command synchronously (the set-up); 0 or its status. */
static int run_one(cp_env *env, const char *command, const char *text)
{
    json_t *body = json_loads(text, 0, NULL);
    if (!body)
        return -ENOMEM;
    cmd_outcome out;
    int rc = cmd_bus_execute(env->b.bus, command, body, STORE_EXPECT_ANY, NULL, &out);
    cmd_outcome_clear(&out);
    json_decref(body);
    return rc;
}

static int preload(cp_env *env, uint32_t products)
{
    char text[BODY_MAX];
    int rc = 0;
    for (uint32_t i = 0; i < products && rc == 0; i++) {
        snprintf(text, sizeof text, "{\"sku\":\"b%u\",\"name\":\"bench\",\"price_cents\":100}", i);
        rc = run_one(env, "RegisterProduct", text);
        snprintf(text, sizeof text, "{\"sku\":\"b%u\",\"quantity\":1000000000}", i);
        if (rc == 0)
            rc = run_one(env, "RestockProduct", text);
    }
    if (rc)
        fprintf(stderr, "skald-bench: command-path: stocking the products: %s\n", sk_strerror(rc));
    return rc;
}

/* The baseline slice: commands [from, to) made, parsed and checked; its CPU seconds. */
static double baseline_slice(cp_env *env, uint64_t from, uint64_t to, uint32_t products,
                             unsigned seed, uint64_t *refused)
{
    char text[BODY_MAX];
    double t0 = thread_cpu_s();
    for (uint64_t k = from; k < to; k++) {
        const char *command = make_body(k, products, &seed, text);
        json_t *body = json_loads(text, 0, NULL);
        sk_error err = {0};
        if (!body || ev_payload_check_json(env->commands, command, body, &err) != 0)
            (*refused)++;
        json_decref(body);
    }
    return thread_cpu_s() - t0;
}

/* The commands slice: [from, to) submitted with window in flight; its CPU seconds. */
static double command_slice(cp_env *env, cp_slot *slots, uint32_t window, uint64_t from,
                            uint64_t to, uint32_t products, unsigned seed)
{
    char text[BODY_MAX];
    double t0 = thread_cpu_s();
    for (uint64_t k = from; k < to; k++) {
        wait_below(env, window);
        cp_slot *s = &slots[k % window];
        if (s->used) { /* its command completed: the wait above saw it */
            cmd_outcome_clear(&s->out);
            json_decref(s->body);
        }
        const char *command = make_body(k, products, &seed, text);
        s->body = json_loads(text, 0, NULL);
        s->used = true;
        pthread_mutex_lock(&env->mu);
        env->inflight++;
        pthread_mutex_unlock(&env->mu);
        cmd_bus_submit(env->b.bus, command, s->body, STORE_EXPECT_ANY, NULL, &s->out, done, env);
    }
    wait_below(env, 0);
    return thread_cpu_s() - t0;
}

int bench_command_path(const bench_opts *opts)
{
    char work[BENCH_PATH_MAX];
    int rc = bench_workdir_create(opts->dir, work, sizeof work);
    if (rc)
        return rc;
    bench_print_where("work directory", work);
    cp_env env = {0};
    pthread_mutex_init(&env.mu, NULL);
    pthread_cond_init(&env.cv, NULL);
    uint32_t window = opts->connections;
    cp_slot *slots = calloc(window, sizeof *slots);
    rc = slots ? env_open(&env, work) : -ENOMEM;
    if (rc == 0)
        rc = preload(&env, opts->streams);
    double base_s = 0, cmd_s = 0;
    uint64_t refused = 0;
    cmd_bus_stats before = {0}, after = {0};
    if (rc == 0) {
        cmd_bus_get_stats(env.b.bus, &before);
        uint64_t n = opts->events;
        for (int s = 0; s < SLICES; s++) {
            uint64_t from = n * (uint64_t)s / SLICES, to = n * (uint64_t)(s + 1) / SLICES;
            unsigned seed = 7919u * (unsigned)(s + 1);
            base_s += baseline_slice(&env, from, to, opts->streams, seed, &refused);
            cmd_s += command_slice(&env, slots, window, from, to, opts->streams, seed);
        }
        cmd_bus_get_stats(env.b.bus, &after);
    }
    for (uint32_t i = 0; slots && i < window; i++)
        if (slots[i].used) {
            cmd_outcome_clear(&slots[i].out);
            json_decref(slots[i].body);
        }
    free(slots);
    env_close(&env); /* also after a failed or skipped open: all of it accepts NULL */
    pthread_mutex_destroy(&env.mu);
    pthread_cond_destroy(&env.cv);
    if (rc == 0) {
        double n = (double)opts->events;
        uint64_t hits = after.cache_hits - before.cache_hits;
        uint64_t misses = after.cache_misses - before.cache_misses;
        printf("commands: %llu (%u products, %u in flight), cache hits %.0f%%, %llu failed "
               "(first: %s), %llu baseline bodies refused\n",
               (unsigned long long)opts->events, opts->streams, window,
               hits + misses ? 100.0 * (double)hits / (double)(hits + misses) : 0.0,
               (unsigned long long)env.failed, env.failed ? sk_strerror(env.first_failure) : "-",
               (unsigned long long)refused);
        uint64_t errors = env.failed + refused;
        printf("BENCH command-path us_per_command=%.2f baseline_us=%.2f ratio=%.3f errors=%llu\n",
               cmd_s * 1e6 / n, base_s * 1e6 / n, cmd_s > 0 ? base_s / cmd_s : 0.0,
               (unsigned long long)errors);
    }
    if (!opts->keep)
        bench_workdir_remove(work);
    else
        printf("kept: %s\n", work);
    return rc;
}
