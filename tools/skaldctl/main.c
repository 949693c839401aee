/*
 * main.c -- skaldctl, the admin tool: dispatch, shared option parsing and output.
 *
 * Every subcommand takes --help; usage errors exit 2 with the problem named and a hint;
 * failures exit 1 with the file at fault and what to do; `log verify` exits 3 when it
 * finds damage. --json makes output one JSON object per line for scripts.
 */
#include "tools/skaldctl/skaldctl.h"

#include <errno.h>
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
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            o->help = true;
            fputs(usage, stdout);
            return CTL_OK;
        }
        if (strncmp(a, "--", 2) != 0)
            return ctl_usage_error(usage, "unexpected argument '%s'", a);
        const char *name = a + 2;
        if (!allowed_flag(allowed, name))
            return ctl_usage_error(usage, "unknown option '%s'", a);
        bool takes_value =
            strcmp(name, "json") != 0 && strcmp(name, "yes") != 0 && strcmp(name, "all") != 0;
        const char *val = NULL;
        if (takes_value) {
            if (i + 1 >= argc)
                return ctl_usage_error(usage, "%s needs a value", a);
            val = argv[++i];
        }
        int rc = 0;
        if (strcmp(name, "data") == 0)
            o->data = val;
        else if (strcmp(name, "schemas") == 0)
            o->schemas = val;
        else if (strcmp(name, "stream") == 0)
            o->stream = val;
        else if (strcmp(name, "json") == 0)
            o->json = true;
        else if (strcmp(name, "yes") == 0)
            o->yes = true;
        else if (strcmp(name, "all") == 0)
            o->all = true;
        else if (strcmp(name, "aggregate") == 0)
            o->aggregate = val;
        else if (strcmp(name, "from") == 0)
            rc = parse_u64(usage, a, val, &o->from), o->has_from = true;
        else if (strcmp(name, "limit") == 0)
            rc = parse_u64(usage, a, val, &o->limit), o->has_limit = true;
        else if (strcmp(name, "truncate-at") == 0)
            rc = parse_u64(usage, a, val, &o->truncate_at), o->has_truncate = true;
        if (rc)
            return rc;
    }
    /* A leading '?' in allowed makes --data optional. */
    if (allowed[0] != '?' && allowed_flag(allowed, "data") && (!o->data || !*o->data))
        return ctl_usage_error(usage, "no data directory: pass --data DIR or set SKALD_DATA");
    return CTL_OK;
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
    if (strcmp(argv[1], "projection") == 0)
        return ctl_projection(argc, argv);
    if (strcmp(argv[1], "saga") == 0)
        return ctl_saga(argc, argv);
    return ctl_usage_error(NULL, "unknown command '%s'", argv[1]);
}
