/*
 * logline.c -- the service's log: one JSON object per line on stderr, so a collector can
 * parse it without guessing. Each line is formatted whole and written with one write(2),
 * so lines from different threads never interleave.
 */
#include "service/serve_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error", "notice"};

int svc_log_level_parse(const char *text, int *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(text, level_names[i]) == 0) {
            *out = i;
            return 0;
        }
    return SK_EBADINPUT;
}

void svc_log_fields(int level, const char *msg, const json_t *fields)
{
    if (level < svc_cfg.log_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%06ldZ", ts.tv_nsec / 1000);
    json_t *line = json_object();
    json_object_set_new(line, "ts", json_string(when));
    json_object_set_new(
        line, "level",
        json_string(level_names[level >= 0 && level <= SVC_LOG_NOTICE ? level : SVC_LOG_ERROR]));
    json_object_set_new(line, "msg", json_string(msg));
    if (fields)
        json_object_update(line, (json_t *)fields);
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (!text)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the terminator: written by length, not as a string */
    ssize_t w = write(STDERR_FILENO, text, len + 1);
    (void)w; /* nowhere to report a failed log write */
    free(text);
}

void svc_log(int level, const char *msg, ...)
{
    if (level < svc_cfg.log_level)
        return;
    json_t *fields = json_object();
    va_list ap;
    va_start(ap, msg);
    const char *key;
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        if (value && *value)
            json_object_set_new(fields, key, json_string(value));
    }
    va_end(ap);
    svc_log_fields(level, msg, fields);
    json_decref(fields);
}
