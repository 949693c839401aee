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
#include <getopt.h>
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
    {"traced-commands", bench_traced_commands,
     "http-commands with every request traced (zipkin exporter, sample 1, to a local sink) "
     "against an untraced server, alternating --runs times (default 3)"},
    {"command-path", bench_command_path,
     "CPU per command of the thread that submits it, in-process (no HTTP): http-commands' "
     "mix over --streams products, --connections in flight; baseline: making, parsing and "
     "checking the same bodies"},
    {"aggregate-load", bench_aggregate_load,
     "microseconds to load an aggregate with a snapshot at histories of 100 .. "
     "--history-max events; must stay flat (a full replay shown beside it)"},
    {"subscribe", bench_subscribe,
     "--subscribers threads tail the log from 0 while log-append's appenders run "
     "(fsync=always); subscriber rate against the durable append rate, wake-up p99"},
    {"sse", bench_sse,
     "--clients streams of the live feed while RestockProduct is posted at --rate/s for "
     "--duration s (fsync=always); lag from a command's answer to its event at every client"},
    {"relay", bench_relay,
     "the Kafka relay publishing --events events (--streams keys) to a broker (--brokers, "
     "else one started with tools/kafka); baseline: librdkafka producing the same messages"},
    {"saga", bench_saga,
     "orders from PlaceOrder's answer to OrderConfirmed durable, through the saga "
     "(fsync=always): --events orders at saturation, then --duration s at 1,000 orders/s "
     "for the latency"},
    {"uuid-text", bench_uuid_text,
     "ns to format and parse an id as text: Skald's ev_uuid_* against libuuid's "
     "uuid_unparse_lower/uuid_parse; ratio = libuuid's time over Skald's"},
    {"queries", bench_queries,
     "named queries over HTTP (wrk: order by id, a customer's orders) while --command-rate "
     "commands/s arrive (fsync=always); baseline: the no-op endpoint under the same load"},
    {"projection-catchup", bench_projection_catchup,
     "events/s folding a sample-domain log into every sample read model "
     "(proj_engine_open + proj_engine_catch_up); baseline: one prepared SQLite INSERT per "
     "event, 4096 per transaction"},
    {"rebuild", bench_rebuild,
     "seconds to rebuild every sample read model from the whole sample-domain log "
     "(proj_rebuild + proj_engine_catch_up until all run at the head)"},
    {"idempotency", bench_idempotency,
     "keyed commands claimed and answered by --threads threads, a sync a second: the "
     "idempotency journal against a SQLite table with an expiry index; ratio = SQLite/journal"},
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
            "                       (default 1000000; subscribe 5000000); command-path: commands\n"
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
            "  --brokers HOST:PORT  relay: a running Kafka (default: start one with\n"
            "                       tools/kafka in the work directory, stopped at the end)\n"
            "  --skald PATH         http-commands, queries: the skald binary (default: the\n"
            "                       build tree's, found from skald-bench's own path)\n"
            "  --connections C      http-commands, queries: wrk connections (default 64);\n"
            "                       command-path: commands in flight\n"
            "  --duration S         http-commands, queries: seconds per wrk run (default 10);\n"
            "                       subscribe: the appenders stop after S s (default 60)\n"
            "  --wrk-threads T      http-commands, queries: wrk threads (default 1)\n"
            "  --command-rate R     queries: commands/s sent during the runs (default 5000)\n"
            "  --orders N           queries: orders placed before the runs (default 5000)\n"
            "  --customers N        queries: customers the orders spread over (default 100)\n"
            "  --history-max N      aggregate-load: longest history (default 100000)\n"
            "  --clients C          sse: feed streams open (default 100)\n"
            "  --rate R             sse: commands posted per second (default 2000);\n"
            "                       --streams defaults to 1000 products there\n"
            "  --keys N             idempotency: keyed commands (default 200000); --threads\n"
            "                       threads claim them (default 8)\n"
            "  --body-bytes B       idempotency: the remembered answer (default 200)\n"
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

/* Every option: a flag, a path or a whole number in [min, max] stored at `offset` in
 * bench_opts (a uint64_t if is_u64, else a uint32_t). getopt_long is given the same
 * table, each option's code being OPT_BASE + its index here. */
typedef enum { OPT_FLAG, OPT_PATH, OPT_NUMBER } opt_kind;

typedef struct opt_def {
    const char *name;
    opt_kind kind;
    int is_u64;
    uint64_t min, max;
    size_t offset;
} opt_def;

#define OPT_BASE 256

static const opt_def opt_defs[] = {
    {"keep", OPT_FLAG, 0, 0, 0, offsetof(bench_opts, keep)},
    {"dir", OPT_PATH, 0, 0, 0, offsetof(bench_opts, dir)},
    {"log", OPT_PATH, 0, 0, 0, offsetof(bench_opts, log_dir)},
    {"skald", OPT_PATH, 0, 0, 0, offsetof(bench_opts, skald)},
    {"brokers", OPT_PATH, 0, 0, 0, offsetof(bench_opts, brokers)},
    {"events", OPT_NUMBER, 1, 1, 1000000000, offsetof(bench_opts, events)},
    {"threads", OPT_NUMBER, 0, 1, 256, offsetof(bench_opts, threads)},
    {"subscribers", OPT_NUMBER, 0, 1, 256, offsetof(bench_opts, subscribers)},
    {"window", OPT_NUMBER, 0, 1, 65536, offsetof(bench_opts, window)},
    {"streams", OPT_NUMBER, 0, 1, 1000000, offsetof(bench_opts, streams)},
    {"payload-bytes", OPT_NUMBER, 0, 0, EV_PAYLOAD_MAX, offsetof(bench_opts, payload_bytes)},
    {"runs", OPT_NUMBER, 0, 1, 100000, offsetof(bench_opts, runs)},
    {"read-bytes", OPT_NUMBER, 0, 4096, 1u << 30, offsetof(bench_opts, read_bytes)},
    {"stream-events", OPT_NUMBER, 0, 1, 1000000, offsetof(bench_opts, stream_events)},
    {"connections", OPT_NUMBER, 0, 1, 10000, offsetof(bench_opts, connections)},
    {"duration", OPT_NUMBER, 0, 1, 3600, offsetof(bench_opts, duration_s)},
    {"wrk-threads", OPT_NUMBER, 0, 1, 64, offsetof(bench_opts, wrk_threads)},
    {"history-max", OPT_NUMBER, 1, 100, 10000000, offsetof(bench_opts, history_max)},
    {"keys", OPT_NUMBER, 1, 1, 100000000, offsetof(bench_opts, keys)},
    {"body-bytes", OPT_NUMBER, 0, 0, 65536, offsetof(bench_opts, body_bytes)},
    {"command-rate", OPT_NUMBER, 0, 100, 1000000, offsetof(bench_opts, command_rate)},
    {"orders", OPT_NUMBER, 0, 1, 10000000, offsetof(bench_opts, orders)},
    {"customers", OPT_NUMBER, 0, 1, 1000000, offsetof(bench_opts, customers)},
    {"clients", OPT_NUMBER, 0, 1, 10000, offsetof(bench_opts, clients)},
    {"rate", OPT_NUMBER, 0, 1, 1000000, offsetof(bench_opts, rate)},
};
#define OPT_COUNT (sizeof opt_defs / sizeof opt_defs[0])

/* Stores the value of opt_defs[index]; 0, or the exit code of a usage error (printed). */
static int apply_opt(bench_opts *opts, size_t index, const char *value)
{
    const opt_def *o = &opt_defs[index];
    char *field = (char *)opts + o->offset;
    if (o->kind == OPT_FLAG) {
        *(int *)(void *)field = 1;
        return 0;
    }
    if (o->kind == OPT_PATH) {
        if (!value[0])
            return usage_error("option '--%s' needs a path", o->name);
        *(const char **)(void *)field = value;
        return 0;
    }
    uint64_t v;
    if (parse_u64(value, o->min, o->max, &v) < 0)
        return usage_error("--%s must be a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'",
                           o->name, o->min, o->max, value);
    if (o->is_u64)
        *(uint64_t *)(void *)field = v;
    else
        *(uint32_t *)(void *)field = (uint32_t)v;
    return 0;
}

static size_t option_index(const char *name)
{
    size_t i = 0;
    while (i < OPT_COUNT && strcmp(opt_defs[i].name, name) != 0)
        i++;
    BENCH_ASSERT(i < OPT_COUNT);
    return i;
}

/* Fills opts from argv[first..] with getopt_long; 0, or the exit code of a usage error
 * (printed); *help_out is set when --help was given (usage printed). */
static int parse_opts(int argc, char **argv, int first, const char *name, bench_opts *opts,
                      int *help_out)
{
    struct option longopts[OPT_COUNT + 2];
    for (size_t i = 0; i < OPT_COUNT; i++)
        longopts[i] = (struct option){
            opt_defs[i].name, opt_defs[i].kind == OPT_FLAG ? no_argument : required_argument, NULL,
            OPT_BASE + (int)i};
    longopts[OPT_COUNT] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[OPT_COUNT + 1] = (struct option){NULL, 0, NULL, 0};
    uint8_t given[OPT_COUNT] = {0};
    /* The benchmark's name stands in argv[0]'s place. A leading '-' returns operands in
     * order (code 1); ':' reports a missing value as ':' instead of getopt's message. */
    int sub_argc = argc - first + 1;
    char **sub_argv = argv + first - 1;
    int code;
    opterr = 0;
    optind = 1;
    while ((code = getopt_long(sub_argc, sub_argv, "-:h", longopts, NULL)) != -1) {
        if (code == 'h') {
            usage(stdout);
            *help_out = 1;
            return 0;
        }
        if (code == 1)
            return usage_error("unexpected argument '%s'", optarg);
        if (code == '?')
            return usage_error("unknown option '%s'", sub_argv[optind - 1]);
        if (code == ':') {
            size_t index = (size_t)(optopt - OPT_BASE);
            if (optopt < OPT_BASE || index >= OPT_COUNT)
                return usage_error("option '%s' needs a value", sub_argv[optind - 1]);
            return usage_error("option '--%s' needs %s", opt_defs[index].name,
                               opt_defs[index].kind == OPT_PATH ? "a path" : "a value");
        }
        size_t index = (size_t)(code - OPT_BASE);
        BENCH_ASSERT(code >= OPT_BASE && index < OPT_COUNT);
        int rc = apply_opt(opts, index, optarg);
        if (rc != 0)
            return rc;
        given[index] = 1;
    }
    if (optind < sub_argc) /* after "--" */
        return usage_error("unexpected argument '%s'", sub_argv[optind]);
    if (!given[option_index("streams")] && strcmp(name, "sse") == 0)
        opts->streams = 1000;
    if (!given[option_index("runs")] && strcmp(name, "stream-read") == 0)
        opts->runs = 50;
    if (!given[option_index("events")] && strcmp(name, "subscribe") == 0)
        opts->events = SUBSCRIBE_EVENTS_DEFAULT;
    if (!given[option_index("duration")] && strcmp(name, "subscribe") == 0)
        opts->duration_s = SUBSCRIBE_DURATION_DEFAULT_S;
    if (opts->brokers && strcmp(name, "relay") != 0)
        return usage_error("--brokers applies to relay only, not to %s", name);
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
    for (size_t i = 0; i < BENCH_COUNT; i++) {
        if (strcmp(name, benches[i].name) != 0)
            continue;
        bench_opts opts;
        bench_opts_init(&opts);
        int help = 0;
        int rc = parse_opts(argc, argv, 2, name, &opts, &help);
        if (rc != 0 || help)
            return rc;
        rc = benches[i].run(&opts);
        fflush(stdout);
        return rc == 0 ? 0 : 1;
    }
    return usage_error("unknown benchmark '%s' (skald-bench list shows them)", name);
}
