/*
 * log.c -- the one logger of every layer: one JSON object per line on stderr.
 *
 * The lower layers (store/, commands/, ...) report through sk_log with a subsystem, a
 * message and string fields; they never write to stderr themselves. What becomes of a
 * message is the program's choice: by default sk_log_write_json writes it, and a program
 * may install its own sink instead (the simulation traces or drops them; a test collects
 * them). The service writes its own lines through the same writer, so every line of a
 * Skald process has one shape:
 *
 *   {"ts":"2026-01-02T03:04:05.678901Z","level":"error","subsystem":"store",
 *    "msg":"log entered the failed state ...","dir":"/data/log",...}
 *
 * Strings are escaped by jansson, and each line is formatted whole and written with one
 * write(2), so lines from different threads never interleave. The level is checked before
 * anything is formatted.
 */
#include "events/events.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error", "notice", "fatal"};
_Static_assert(sizeof level_names / sizeof level_names[0] == SK_LOG_FATAL + 1,
               "a name for every level");

static atomic_int min_level = SK_LOG_INFO;
static _Atomic(sk_log_fn) sink_fn;
static _Atomic(void *) sink_ctx;

void sk_log_set_sink(sk_log_fn fn, void *ctx)
{
    atomic_store(&sink_ctx, ctx);
    atomic_store(&sink_fn, fn);
}

void sk_log_set_level(sk_log_level level)
{
    atomic_store(&min_level, (int)level);
}

int sk_log_enabled(sk_log_level level)
{
    return level >= SK_LOG_NOTICE || (int)level >= atomic_load(&min_level);
}

const char *sk_log_level_name(sk_log_level level)
{
    return (unsigned)level <= SK_LOG_FATAL ? level_names[level] : "error";
}

int sk_log_level_parse(const char *text, sk_log_level *out)
{
    for (int i = 0; i <= SK_LOG_ERROR; i++)
        if (strcmp(text, level_names[i]) == 0) {
            *out = (sk_log_level)i;
            return 0;
        }
    return SK_EBADINPUT;
}

void sk_log_write_json(sk_log_level level, const char *subsystem, const char *message,
                       const json_t *fields)
{
    if (!sk_log_enabled(level))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%06ldZ", ts.tv_nsec / 1000);
    json_t *line =
        json_pack("{s:s, s:s, s:s, s:s}", "ts", when, "level", sk_log_level_name(level),
                  "subsystem", subsystem ? subsystem : "", "msg", message ? message : "");
    if (line && fields)
        json_object_update(line, (json_t *)fields);
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(line);
    if (!text) { /* out of memory: still say something, unformatted */
        static const char oom[] = "{\"level\":\"error\",\"msg\":\"out of memory formatting a "
                                  "log line\"}\n";
        ssize_t w = write(STDERR_FILENO, oom, sizeof oom - 1);
        (void)w; /* nowhere to report a failed log write */
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the terminator: written by length, not as a string */
    ssize_t w = write(STDERR_FILENO, text, len + 1);
    (void)w; /* nowhere to report a failed log write */
    free(text);
}

/* The default sink: the fields as a JSON object, then sk_log_write_json. */
static void write_fields(sk_log_level level, const char *subsystem, const char *message,
                         const sk_log_field *fields, size_t count)
{
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < count; i++)
        if (json_object_set_new(obj, fields[i].key, json_string(fields[i].value)) != 0)
            break; /* out of memory: the line goes out with the fields it has */
    sk_log_write_json(level, subsystem, message, obj);
    json_decref(obj);
}

#define FIELDS_MAX 16

void sk_log(sk_log_level level, const char *subsystem, const char *message, ...)
{
    if (!sk_log_enabled(level))
        return;
    sk_log_field fields[FIELDS_MAX];
    size_t count = 0;
    va_list ap;
    va_start(ap, message);
    const char *key;
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        if (value && *value && count < FIELDS_MAX)
            fields[count++] = (sk_log_field){key, value};
    }
    va_end(ap);
    sk_log_fn fn = atomic_load(&sink_fn);
    if (fn)
        fn(atomic_load(&sink_ctx), level, subsystem, message, fields, count);
    else
        write_fields(level, subsystem, message, fields, count);
}
