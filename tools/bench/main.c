/*
 * main.c -- the skald-bench command line: `skald-bench --help`, `skald-bench list`,
 * `skald-bench NAME [options]`.
 *
 * Exit codes: 0 the benchmark ran (its last line is "BENCH NAME key=value ..."), 1 it
 * failed at run time, 2 the command line is wrong. Goals are reported, never enforced by
 * the exit code: a slow machine is not an error.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

/* subscribe's defaults: about 10-20 s of appends on a 2-core machine, and a bound on the
 * time whatever the machine. */
#define SUBSCRIBE_EVENTS_DEFAULT     5000000
#define SUBSCRIBE_DURATION_DEFAULT_S 60

typedef struct bench_def {
    const char *name;
    int (*run)(const bench_opts *opts);
    const char *summary;
} bench_def;

static const bench_def benches[] = {
    {"log-append", bench_log_append,
     "durable appends (fsync=always) from --threads appenders, each with --window in flight; "
     "baseline: pwrite+fdatasync of the same batches"},
    {"log-read", bench_log_read,
     "sequential read of the whole log with CRC checks; baseline: pread + crc32c of the "
     "segment files"},
    {"stream-read", bench_stream_read,
     "microseconds to read one stream from logs of N/100, N/10 and N events; must not grow"},
    {"http-commands", bench_http_commands,
     "PlaceOrder + RestockProduct over HTTP (wrk, fsync=always) over --streams products; "
     "baseline: the same server's no-op endpoint"},
    {"aggregate-load", bench_aggregate_load,
     "microseconds to load an aggregate with a snapshot at histories of 100 .. "
     "--history-max events; must stay flat (a full replay shown beside it)"},
    {"subscribe", bench_subscribe,
     "--subscribers threads tail the log from 0 while log-append's appenders run "
     "(fsync=always); subscriber rate against the durable append rate, wake-up p99"},
    {"saga", bench_saga,
     "orders from PlaceOrder's answer to OrderConfirmed durable, through the saga "
     "(fsync=always): --events orders at saturation, then --duration s at 1,000 orders/s "
     "for the latency"},
    {"uuid-text", bench_uuid_text,
     "ns to format and parse an id as text: Skald's ev_uuid_* against libuuid's "
     "uuid_unparse_lower/uuid_parse; ratio = libuuid's time over Skald's"},
};
#define BENCH_COUNT (sizeof benches / sizeof benches[0])

static void usage(FILE *out)
{
    fprintf(out, "Usage: skald-bench NAME [options]\n"
                 "       skald-bench list\n"
                 "       skald-bench --help\n"
                 "\n"
                 "Benchmarks of Skald's log, each against a baseline measured in the same run on\n"
                 "the same file system. Each ends with one line 'BENCH NAME key=value ...'.\n"
                 "\n"
                 "Benchmarks:\n");
    for (size_t i = 0; i < BENCH_COUNT; i++)
        fprintf(out, "  %-12s %s\n", benches[i].name, benches[i].summary);
    fprintf(out,
            "\n"
            "Options:\n"
            "  --dir DIR            create the work directory (skald-bench-XXXXXX) inside DIR;\n"
            "                       default: the current directory. The log and the raw\n"
            "                       baseline files both live there, so they share a file system.\n"
            "  --events N           events to append or read; for stream-read the largest log\n"
            "                       (default 1000000; subscribe 5000000)\n"
            "  --threads T          concurrent appenders, log-append and subscribe (default 8)\n"
            "  --subscribers S      subscribe: subscriber threads (default 8)\n"
            "  --window W           appends in flight per appender (default 4096)\n"
            "  --streams S          streams the events spread over (default 10000)\n"
            "  --payload-bytes B    payload per event (default 77: a 200-byte record)\n"
            "  --runs R             repetitions: log-read best of R (default 3), stream-read\n"
            "                       median of R (default 50)\n"
            "  --read-bytes B       buffer of log-read's raw baseline (default 262144,\n"
            "                       the store reader's chunk)\n"
            "  --stream-events K    stream-read: events in the stream read (default 100)\n"
            "  --log DIR            log-read: read this existing log (read-only) instead of\n"
            "                       building one\n"
            "  --keep               keep the work directory and print its path\n"
            "  --skald PATH         http-commands: the skald binary (default: the build\n"
            "                       tree's, found from skald-bench's own path)\n"
            "  --connections C      http-commands: wrk connections (default 64)\n"
            "  --duration S         http-commands: seconds per wrk run (default 10);\n"
            "                       subscribe: the appenders stop after S s (default 60)\n"
            "  --wrk-threads T      http-commands: wrk threads (default 1)\n"
            "  --history-max N      aggregate-load: longest history (default 100000)\n"
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 ran (goals are reported, not enforced), 1 failed, 2 usage error.\n"
            "See docs/benchmarks.md.\n");
}

/* Prints the problem and the hint on stderr; evaluates to the usage exit code. A macro so
 * that every format is a literal the compiler checks. */
#define usage_error(...)                                                                           \
    (fputs("skald-bench: ", stderr), fprintf(stderr, __VA_ARGS__),                                 \
     fputs("\nTry 'skald-bench --help'\n", stderr), EXIT_USAGE)

/* Parses a decimal in [min, max]; 0 or -EINVAL. */
static int parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!text || text[0] < '0' || text[0] > '9')
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

typedef struct num_opt {
    const char *flag;
    uint64_t min, max;
    size_t offset; /* of the field in bench_opts */
    int is_u64;
} num_opt;

static const num_opt num_opts[] = {
    {"--events", 1, 1000000000, offsetof(bench_opts, events), 1},
    {"--threads", 1, 256, offsetof(bench_opts, threads), 0},
    {"--subscribers", 1, 256, offsetof(bench_opts, subscribers), 0},
    {"--window", 1, 65536, offsetof(bench_opts, window), 0},
    {"--streams", 1, 1000000, offsetof(bench_opts, streams), 0},
    {"--payload-bytes", 0, EV_PAYLOAD_MAX, offsetof(bench_opts, payload_bytes), 0},
    {"--runs", 1, 100000, offsetof(bench_opts, runs), 0},
    {"--read-bytes", 4096, 1u << 30, offsetof(bench_opts, read_bytes), 0},
    {"--stream-events", 1, 1000000, offsetof(bench_opts, stream_events), 0},
    {"--connections", 1, 10000, offsetof(bench_opts, connections), 0},
    {"--duration", 1, 3600, offsetof(bench_opts, duration_s), 0},
    {"--wrk-threads", 1, 64, offsetof(bench_opts, wrk_threads), 0},
    {"--history-max", 100, 10000000, offsetof(bench_opts, history_max), 1},
};

/* 1 if flag is a numeric option (value stored), 0 if not one, or an exit code. */
static int parse_num_opt(bench_opts *opts, const char *flag, const char *value)
{
    for (size_t i = 0; i < sizeof num_opts / sizeof num_opts[0]; i++) {
        const num_opt *o = &num_opts[i];
        if (strcmp(flag, o->flag) != 0)
            continue;
        uint64_t v;
        if (!value)
            return -usage_error("option '%s' needs a value", flag);
        if (parse_u64(value, o->min, o->max, &v) < 0)
            return -usage_error("%s must be a whole number from %" PRIu64 " to %" PRIu64
                                ", not '%s'",
                                flag, o->min, o->max, value);
        char *field = (char *)opts + o->offset;
        if (o->is_u64)
            *(uint64_t *)(void *)field = v;
        else
            *(uint32_t *)(void *)field = (uint32_t)v;
        return 1;
    }
    return 0;
}

/* Fills opts from argv[first..]; 0, or the exit code of a usage error (printed). */
static int parse_opts(int argc, char **argv, int first, const char *name, bench_opts *opts)
{
    int runs_set = 0, events_set = 0, duration_set = 0;
    for (int i = first; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(flag, "--keep") == 0) {
            opts->keep = 1;
            continue;
        }
        if (strcmp(flag, "--dir") == 0 || strcmp(flag, "--log") == 0 ||
            strcmp(flag, "--skald") == 0) {
            if (!value || !value[0])
                return usage_error("option '%s' needs a path", flag);
            if (strcmp(flag, "--dir") == 0)
                opts->dir = value;
            else if (strcmp(flag, "--log") == 0)
                opts->log_dir = value;
            else
                opts->skald = value;
            i++;
            continue;
        }
        int rc = parse_num_opt(opts, flag, value);
        if (rc < 0)
            return -rc;
        if (rc == 0)
            return usage_error("unknown option '%s'", flag);
        runs_set |= strcmp(flag, "--runs") == 0;
        events_set |= strcmp(flag, "--events") == 0;
        duration_set |= strcmp(flag, "--duration") == 0;
        i++;
    }
    if (!runs_set && strcmp(name, "stream-read") == 0)
        opts->runs = 50;
    if (!events_set && strcmp(name, "subscribe") == 0)
        opts->events = SUBSCRIBE_EVENTS_DEFAULT;
    if (!duration_set && strcmp(name, "subscribe") == 0)
        opts->duration_s = SUBSCRIBE_DURATION_DEFAULT_S;
    if (strcmp(name, "stream-read") == 0 && opts->events / 100 < opts->stream_events)
        return usage_error("stream-read needs --events of at least 100 x --stream-events");
    if (opts->log_dir && strcmp(name, "log-read") != 0)
        return usage_error("--log applies to log-read only, not to %s", name);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("%s", "missing the benchmark NAME");
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "list") == 0) {
        for (size_t i = 0; i < BENCH_COUNT; i++)
            printf("%-12s %s\n", benches[i].name, benches[i].summary);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    }
    for (size_t i = 0; i < BENCH_COUNT; i++) {
        if (strcmp(name, benches[i].name) != 0)
            continue;
        bench_opts opts;
        bench_opts_init(&opts);
        int rc = parse_opts(argc, argv, 2, name, &opts);
        if (rc != 0)
            return rc;
        rc = benches[i].run(&opts);
        fflush(stdout);
        return rc == 0 ? 0 : 1;
    }
    return usage_error("unknown benchmark '%s' (skald-bench list shows them)", name);
}
