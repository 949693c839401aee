/*
 * main.c -- skaldctl, the admin tool: dispatch, shared option parsing and output.
 *
 * Every subcommand takes --help; usage errors exit 2 with the problem named and a hint;
 * failures exit 1 with the file at fault and what to do; `log verify` exits 3 when it
 * finds damage. --json makes output one JSON object per line for scripts.
 */
#include "tools/skaldctl/skaldctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: skaldctl COMMAND SUBCOMMAND [OPTIONS]\n"
    "\n"
    "Inspect, verify and repair a Skald data directory.\n"
    "\n"
    "  log info      segments, positions, bytes and streams of the log\n"
    "  log verify    check every record's CRC, the positions and the indexes\n"
    "  log dump      print events with their payloads decoded to JSON\n"
    "  log tail      follow the running service's log, printing new events\n"
    "  log repair    drop everything from a position on (after damage)\n"
    "  schemas list  the schema versions and their ids\n"
    "  schemas check check the .avsc files against the stored versions\n"
    "  schemas export  Schema Registry request bodies, one per schema version\n"
    "  kafka status  the relay's checkpoint and its lag behind the log\n"
    "  restore --from-kafka\n"
    "                rebuild a log from the relay's Kafka topic\n"
    "  snapshot list|verify|purge|take\n"
    "                aggregate snapshots: list, compare with a replay, delete, take one\n"
    "  projection list|status|rebuild|resume|skip\n"
    "  saga list|show|retry|abort\n"
    "                the read models, through a running server or offline\n"
    "\n"
    "Run 'skaldctl COMMAND SUBCOMMAND --help' for the options of each.\n"
    "The data directory comes from --data DIR or $SKALD_DATA.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error, 3 verify found damage.\n";

int ctl_usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;
    fputs("skaldctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'skaldctl --help'", stderr);
    if (usage)
        fputs(" or the subcommand's --help", stderr);
    fputs(".\n", stderr);
    return CTL_USAGE;
}

int ctl_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("skaldctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CTL_FAILED;
}

static bool allowed_flag(const char *allowed, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = allowed; (p = strstr(p, name)) != NULL; p += n)
        if ((p == allowed || p[-1] == ',' || p[-1] == '?') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

static int parse_u64(const char *usage, const char *flag, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!text || !*text || *text == '-')
        return ctl_usage_error(usage, "%s needs a non-negative integer", flag);
    unsigned long long v = strtoull(text, &end, 10);
    if (*end || errno)
        return ctl_usage_error(usage, "%s: '%s' is not a non-negative integer", flag, text);
    *out = v;
    return 0;
}

/* Every option of every subcommand; ctl_parse admits those its caller names. */
enum {
    OPT_DATA = 256,
    OPT_SCHEMAS,
    OPT_STREAM,
    OPT_JSON,
    OPT_YES,
    OPT_ALL,
    OPT_AGGREGATE,
    OPT_FROM,
    OPT_LIMIT,
    OPT_TRUNCATE_AT,
    OPT_TOPIC,
    OPT_OUT,
    OPT_FROM_KAFKA,
    OPT_BROKERS,
    OPT_TO,
};

static const struct option LONG_OPTIONS[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"schemas", required_argument, NULL, OPT_SCHEMAS},
    {"stream", required_argument, NULL, OPT_STREAM},
    {"json", no_argument, NULL, OPT_JSON},
    {"yes", no_argument, NULL, OPT_YES},
    {"all", no_argument, NULL, OPT_ALL},
    {"aggregate", required_argument, NULL, OPT_AGGREGATE},
    {"from", required_argument, NULL, OPT_FROM},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"truncate-at", required_argument, NULL, OPT_TRUNCATE_AT},
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"out", required_argument, NULL, OPT_OUT},
    {"from-kafka", no_argument, NULL, OPT_FROM_KAFKA},
    {"brokers", required_argument, NULL, OPT_BROKERS},
    {"to", required_argument, NULL, OPT_TO},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *option_name(int code)
{
    for (const struct option *o = LONG_OPTIONS; o->name; o++)
        if (o->val == code)
            return o->name;
    return "?";
}

/* Stores one option's value; 0 or CTL_USAGE (printed). */
static int apply_option(int code, const char *flag, const char *val, const char *usage, ctl_opts *o)
{
    switch (code) {
    case OPT_DATA:
        o->data = val;
        return 0;
    case OPT_SCHEMAS:
        o->schemas = val;
        return 0;
    case OPT_STREAM:
        o->stream = val;
        return 0;
    case OPT_JSON:
        o->json = true;
        return 0;
    case OPT_YES:
        o->yes = true;
        return 0;
    case OPT_ALL:
        o->all = true;
        return 0;
    case OPT_AGGREGATE:
        o->aggregate = val;
        return 0;
    case OPT_TOPIC:
        o->topic = val;
        return 0;
    case OPT_OUT:
        o->out = val;
        return 0;
    case OPT_FROM_KAFKA:
        o->from_kafka = true;
        return 0;
    case OPT_BROKERS:
        o->brokers = val;
        return 0;
    case OPT_TO:
        o->to = val;
        return 0;
    case OPT_FROM:
        o->has_from = true;
        return parse_u64(usage, flag, val, &o->from);
    case OPT_LIMIT:
        o->has_limit = true;
        return parse_u64(usage, flag, val, &o->limit);
    default:
        o->has_truncate = true;
        return parse_u64(usage, flag, val, &o->truncate_at);
    }
}

int ctl_parse(int argc, char **argv, int first, const char *allowed, const char *usage, ctl_opts *o)
{
    memset(o, 0, sizeof *o);
    o->data = getenv("SKALD_DATA");
    o->schemas = getenv("SKALD_SCHEMAS");
    static char shipped[4096];
    if (!o->schemas) {
        /* on failure shipped names the folder looked for, which opening it then reports */
        (void)ev_shipped_path("events/schemas", shipped, sizeof shipped);
        o->schemas = shipped;
    }
    /* getopt_long over argv[first..], with the subcommand in the place of argv[0]. A
     * leading '-' returns operands in order (as code 1), so a stray one is named where it
     * stands; ':' reports a missing value as ':' rather than printing getopt's message. */
    int sub_argc = argc - first + 1;
    char **sub_argv = argv + first - 1;
    int code;
    opterr = 0;
    optind = 1;
    while ((code = getopt_long(sub_argc, sub_argv, "-:h", LONG_OPTIONS, NULL)) != -1) {
        const char *arg = sub_argv[optind - 1];
        if (code == 'h') {
            o->help = true;
            fputs(usage, stdout);
            return CTL_OK;
        }
        if (code == 1)
            return ctl_usage_error(usage, "unexpected argument '%s'", optarg);
        if (code == ':')
            return ctl_usage_error(usage, "%s needs a value", arg);
        if (code == '?') {
            if (optopt > 0 && optopt < 256)
                return ctl_usage_error(usage, "unknown option '-%c'", optopt);
            return ctl_usage_error(usage, "unknown option '%s'", arg);
        }
        const char *name = option_name(code);
        if (!allowed_flag(allowed, name))
            return ctl_usage_error(usage, "unknown option '--%s'", name);
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", name);
        int rc = apply_option(code, flag, optarg, usage, o);
        if (rc)
            return rc;
    }
    if (optind < sub_argc) /* after "--" */
        return ctl_usage_error(usage, "unexpected argument '%s'", sub_argv[optind]);
    /* A leading '?' in allowed makes --data optional. */
    if (allowed[0] != '?' && allowed_flag(allowed, "data") && (!o->data || !*o->data))
        return ctl_usage_error(usage, "no data directory: pass --data DIR or set SKALD_DATA");
    return CTL_OK;
}

int ctl_dispatch(int argc, char **argv, const char *usage, const ctl_subcommand *subs, size_t count)
{
    const char *group = argv[1];
    if (argc < 3) {
        char names[256] = "";
        for (size_t i = 0; i < count; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     subs[i].name);
        return ctl_usage_error(usage, "%s needs a subcommand: %s", group, names);
    }
    if (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0) {
        fputs(usage, stdout);
        return CTL_OK;
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp(argv[2], subs[i].name) != 0)
            continue;
        ctl_opts o;
        int rc = ctl_parse(argc, argv, 3, subs[i].allowed, subs[i].usage, &o);
        if (rc || o.help)
            return rc;
        return subs[i].run(&o);
    }
    return ctl_usage_error(usage, "unknown %s subcommand '%s'", group, argv[2]);
}

const char *ctl_log_dir(const ctl_opts *o, char *buf, size_t size)
{
    snprintf(buf, size, "%s/log", o->data);
    return buf;
}

static int progress_shown;

void ctl_progress(const char *what, uint64_t done, uint64_t total)
{
    if (isatty(2)) {
        int width = 30, filled = total ? (int)(done * (uint64_t)width / total) : width;
        fprintf(stderr, "\r%s [%.*s%*s] %llu/%llu", what, filled, "##############################",
                width - filled, "", (unsigned long long)done, (unsigned long long)total);
        progress_shown = 1;
    } else {
        fprintf(stderr, "%s: %llu of %llu\n", what, (unsigned long long)done,
                (unsigned long long)total);
    }
}

void ctl_progress_end(void)
{
    if (progress_shown)
        fputc('\n', stderr);
    progress_shown = 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return ctl_usage_error(NULL, "no command given");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(USAGE, stdout);
        return CTL_OK;
    }
    if (strcmp(argv[1], "log") == 0)
        return ctl_log(argc, argv);
    if (strcmp(argv[1], "schemas") == 0)
        return ctl_schemas(argc, argv);
    if (strcmp(argv[1], "snapshot") == 0)
        return ctl_snapshot(argc, argv);
    if (strcmp(argv[1], "kafka") == 0)
        return ctl_kafka(argc, argv);
    if (strcmp(argv[1], "projection") == 0)
        return ctl_projection(argc, argv);
    if (strcmp(argv[1], "saga") == 0)
        return ctl_saga(argc, argv);
    if (strcmp(argv[1], "restore") == 0)
        return ctl_restore(argc, argv);
    return ctl_usage_error(NULL, "unknown command '%s'", argv[1]);
}
