/*
 * log.c -- the one logger of every layer: one JSON object per line on stderr.
 *
 * The lower layers (store/, commands/, ...) report through sk_log with a subsystem, a
 * message and string fields; they never write to stderr themselves. What becomes of a
 * message is the program's choice: by default sk_log_write_fields writes it, and a program
 * may install its own sink instead (the simulation traces or drops them; a test collects
 * them). The service writes its own lines through the same writer, so every line of a
 * Skald process has one shape:
 *
 *   {"ts":"2026-01-02T03:04:05.678901Z","level":"error","subsystem":"store",
 *    "msg":"log entered the failed state ...","dir":"/data/log",...}
 *
 * Lines are written directly as text (json_out.c escapes the strings and writes bytes
 * that are not UTF-8 as U+FFFD), each formatted whole and written with one write(2), so
 * lines from different threads never interleave. The level is checked before anything
 * is formatted.
 *
 * A thread that answers many requests in a run (the log's completer: every append of a
 * group commit) may hold its lines between sk_log_hold and sk_log_release: they are
 * gathered whole and written together, so a run costs one write(2) instead of one per
 * line. Lines still never interleave, since each write carries whole lines. A line at
 * error level or above goes out at once, with what was held before it: an assertion's
 * line must reach the file before the abort that follows it.
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

/* The lines of a thread between sk_log_hold and sk_log_release (see above). */
#define HELD_FLUSH_BYTES ((size_t)64 * 1024)
static _Thread_local struct {
    bool on;
    ev_json_out out;
} held;

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

/* The time of a line, "2026-01-02T03:04:05.678901Z". */
static void format_now(char when[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(when, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, 40 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

static void write_oom_line(void)
{
    static const char oom[] = "{\"level\":\"error\",\"msg\":\"out of memory formatting a "
                              "log line\"}\n";
    ssize_t w = write(STDERR_FILENO, oom, sizeof oom - 1);
    (void)w; /* nowhere to report a failed log write */
}

/* Writes the held lines in one write and empties the buffer (keeping its memory). */
static void held_write(void)
{
    if (held.out.buf.size > 0) {
        ssize_t w = write(STDERR_FILENO, held.out.buf.data, held.out.buf.size);
        (void)w; /* nowhere to report a failed log write */
    }
    held.out.buf.size = 0;
}

void sk_log_hold(void)
{
    held.on = true;
}

void sk_log_release(void)
{
    held_write();
    ev_buf_free(&held.out.buf);
    held.on = false;
}

static void format_line(ev_json_out *o, sk_log_level level, const char *subsystem,
                        const char *message, const sk_log_field *fields, size_t count)
{
    char when[40];
    format_now(when);
    ev_json_out_lit(o, "{\"ts\":\"");
    ev_json_out_lit(o, when);
    ev_json_out_lit(o, "\",\"level\":\"");
    ev_json_out_lit(o, sk_log_level_name(level));
    ev_json_out_lit(o, "\",\"subsystem\":");
    ev_json_out_str(o, subsystem ? subsystem : "");
    ev_json_out_lit(o, ",\"msg\":");
    ev_json_out_str(o, message ? message : "");
    for (size_t i = 0; i < count; i++) {
        const char *key = fields[i].key;
        if (strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 || strcmp(key, "subsystem") == 0 ||
            strcmp(key, "msg") == 0)
            continue; /* the line's own keys are not repeated */
        ev_json_out_raw(o, ",", 1);
        ev_json_out_str(o, key);
        ev_json_out_raw(o, ":", 1);
        if (fields[i].number)
            ev_json_out_lit(o, fields[i].value);
        else
            ev_json_out_str(o, fields[i].value);
    }
    ev_json_out_raw(o, "}\n", 2);
}

void sk_log_write_fields(sk_log_level level, const char *subsystem, const char *message,
                         const sk_log_field *fields, size_t count)
{
    if (!sk_log_enabled(level))
        return;
    if (held.on) {
        size_t start = held.out.buf.size;
        format_line(&held.out, level, subsystem, message, fields, count);
        if (held.out.failed) { /* the lines before this one are whole: they go out */
            held.out.buf.size = start;
            held.out.failed = false;
            held_write();
            write_oom_line();
        } else if (level >= SK_LOG_ERROR || held.out.buf.size >= HELD_FLUSH_BYTES) {
            held_write(); /* an error (or an assertion before its abort) is not held */
        }
        return;
    }
    ev_json_out line = {0};
    format_line(&line, level, subsystem, message, fields, count);
    if (line.failed) {
        write_oom_line();
    } else {
        ssize_t w = write(STDERR_FILENO, line.buf.data, line.buf.size);
        (void)w; /* nowhere to report a failed log write */
    }
    ev_buf_free(&line.buf);
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
            fields[count++] = (sk_log_field){key, value, false};
    }
    va_end(ap);
    sk_log_fn fn = atomic_load(&sink_fn);
    if (fn)
        fn(atomic_load(&sink_ctx), level, subsystem, message, fields, count);
    else
        sk_log_write_fields(level, subsystem, message, fields, count);
}
