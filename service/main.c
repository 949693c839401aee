/*
 * main.c -- the `skald` binary: reads the command line and hands each subcommand to the
 * service layer. It owns the process-level rules every Skald binary follows: `--help`
 * prints usage on stdout and exits 0; a usage error names the problem, points at
 * `skald --help` on stderr and exits 2; a runtime failure exits 1.
 *
 * Subcommands: `serve` (the HTTP service, service/serve.c), `seed` (a sample of the order
 * domain, service/seed.c) and `version`.
 */
#include "service/service.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SKALD_VERSION
#define SKALD_VERSION "0.0.0"
#endif

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static const char USAGE[] =
    "Usage: skald COMMAND [OPTIONS]\n"
    "\n"
    "Skald: an event-sourced CQRS service over a durable, segmented event log.\n"
    "\n"
    "Commands:\n"
    "  serve      run the HTTP service (skald serve --help)\n"
    "  seed       append a sample of the order domain to a data directory\n"
    "  version    print the version\n"
    "\n"
    "skald seed --data DIR [--schemas DIR] [--command-schemas DIR] [--orders N] [--seed S]\n"
    "           [--if-empty]\n"
    "  Through the command bus, as a client would: registers 50 products and stocks them,\n"
    "  opens 100 customers, then posts N PlaceOrder commands and runs the OrderFulfillment\n"
    "  saga in this process until every order is confirmed or cancelled\n"
    "  (insufficient_stock, credit_limit_exceeded). Every append is durable (fsync=always).\n"
    "  The same seed gives every product, customer and order stream the same history\n"
    "  (ids of events, commands and correlations, times and log positions aside).\n"
    "  --data DIR      the data directory; the log is DIR/log, schema ids DIR/schemas\n"
    "  --schemas DIR   the events' .avsc files (default $SKALD_SCHEMAS, else the installed\n"
    "                  share/skald/events/schemas)\n"
    "  --command-schemas DIR  the commands' .avsc files (default the installed\n"
    "                  share/skald/commands/schemas)\n"
    "  --orders N      orders to place, 1..10000000 (default 1000)\n"
    "  --seed S        the seed of every random choice (default 42)\n"
    "  --if-empty      leave a log that already holds events alone (exit 0)\n"
    "\n"
    "Options:\n"
    "  -h, --help      print this help and exit\n"
    "  --version       print the version and exit\n"
    "\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage error.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("skald: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'skald --help'\n", stderr);
    return EXIT_USAGE;
}

static int print_usage(void)
{
    fputs(USAGE, stdout);
    return EXIT_OK;
}

static int print_version(void)
{
    printf("skald %s\n", SKALD_VERSION);
    return EXIT_OK;
}

/* Decimal digits only, within [min, max]; 0 or -EINVAL. */
static int parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (!text || text[0] < '0' || text[0] > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *end != '\0' || value < min || value > max)
        return -EINVAL;
    *out = value;
    return 0;
}

static void print_seed_failure(int rc, const sk_error *err)
{
    const char *message = err->message[0] ? err->message : sk_strerror(rc);
    fprintf(stderr, "skald seed: %s [%s]", message, sk_err_name(rc));
    if (err->field[0])
        fprintf(stderr, " (field %s)", err->field);
    fputc('\n', stderr);
}

static void print_seed_report(const svc_seed_options *opt, const svc_seed_report *r)
{
    if (r->skipped) {
        printf("skald seed: %s/log already holds %" PRIu64 " events; left as it is "
               "(--if-empty)\n",
               opt->data_dir, r->next_position);
        return;
    }
    double seconds = (double)r->elapsed_us / 1e6;
    printf("skald seed: %" PRIu64 " events at positions %" PRIu64 "..%" PRIu64
           " in %.2f s (%.0f events/s, fsync=always): %" PRIu64 " products, %" PRIu64
           " customers, %" PRIu64 " orders (%" PRIu64 " confirmed, %" PRIu64 " cancelled), %" PRIu64
           " restocks\n",
           r->events, r->first_position, r->next_position - 1, seconds,
           seconds > 0 ? (double)r->events / seconds : 0.0, r->products, r->customers, r->orders,
           r->confirmed, r->cancelled, r->restocks);
}

static int run_seed(const svc_seed_options *opt)
{
    sk_error err;
    svc_seed_report report;
    sk_error_clear(&err);
    int rc = svc_seed_run(opt, &report, &err);
    if (rc) {
        print_seed_failure(rc, &err);
        return EXIT_RUNTIME;
    }
    print_seed_report(opt, &report);
    return EXIT_OK;
}

enum { SEED_DATA = 256, SEED_SCHEMAS, SEED_COMMAND_SCHEMAS, SEED_ORDERS, SEED_SEED, SEED_IF_EMPTY };

static const struct option SEED_OPTIONS[] = {
    {"data", required_argument, NULL, SEED_DATA},
    {"schemas", required_argument, NULL, SEED_SCHEMAS},
    {"command-schemas", required_argument, NULL, SEED_COMMAND_SCHEMAS},
    {"orders", required_argument, NULL, SEED_ORDERS},
    {"seed", required_argument, NULL, SEED_SEED},
    {"if-empty", no_argument, NULL, SEED_IF_EMPTY},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Stores one seed option's value; 0, or a usage error's exit code. */
static int apply_seed_option(int code, const char *value, svc_seed_options *opt)
{
    uint64_t number = 0;
    switch (code) {
    case SEED_DATA:
        opt->data_dir = value;
        return 0;
    case SEED_SCHEMAS:
        opt->schemas_dir = value;
        return 0;
    case SEED_COMMAND_SCHEMAS:
        opt->command_schemas_dir = value;
        return 0;
    case SEED_IF_EMPTY:
        opt->if_empty = 1;
        return 0;
    case SEED_ORDERS:
        if (parse_u64(value, 1, SVC_SEED_ORDERS_MAX, &number) != 0)
            return usage_error("--orders wants a whole number from 1 to %u, not '%s'",
                               SVC_SEED_ORDERS_MAX, value);
        opt->orders = (uint32_t)number;
        return 0;
    default:
        if (parse_u64(value, 0, UINT64_MAX, &number) != 0)
            return usage_error("--seed wants a whole number, not '%s'", value);
        opt->seed = number;
        return 0;
    }
}

/* The name of the long option with this code, for messages. */
static const char *seed_option_name(int code)
{
    for (const struct option *o = SEED_OPTIONS; o->name; o++)
        if (o->val == code)
            return o->name;
    return "?";
}

/* `skald seed [OPTIONS]`, argv[0] being "seed". getopt_long with a leading '-' (operands
 * come back in order as code 1, so a stray one is named) and ':' (a missing value comes
 * back as ':' instead of getopt's own message). */
static int cmd_seed(int argc, char **argv)
{
    svc_seed_options opt;
    svc_seed_options_init(&opt, NULL);
    int code;
    opterr = 0;
    optind = 1;
    while ((code = getopt_long(argc, argv, "-:h", SEED_OPTIONS, NULL)) != -1) {
        if (code == 'h')
            return print_usage();
        if (code == 1)
            return usage_error("seed: unexpected argument '%s'", optarg);
        if (code == '?')
            return usage_error("seed: unknown option '%s'", argv[optind - 1]);
        if (code == ':')
            return usage_error("option '--%s' needs a value", seed_option_name(optopt));
        int rc = apply_seed_option(code, optarg, &opt);
        if (rc)
            return rc;
    }
    if (optind < argc) /* after "--" */
        return usage_error("seed: unexpected argument '%s'", argv[optind]);
    if (!opt.data_dir || !*opt.data_dir)
        return usage_error("seed: --data DIR is required");
    return run_seed(&opt);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("a command is required (serve, seed, version)");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0)
        return print_usage();
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0)
        return print_version();
    if (strcmp(cmd, "seed") == 0)
        return cmd_seed(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return svc_serve_main(argc - 2, argv + 2);
    if (cmd[0] == '-')
        return usage_error("unknown option '%s'", cmd);
    return usage_error("unknown command '%s' (commands: serve, seed, version)", cmd);
}
