/*
 * logline.c -- the service's log lines. There is one writer for the whole process,
 * sk_log_write_fields (events/log.c): the service's own lines go through it with the
 * subsystem "service", and the lower layers' messages (store/, commands/) reach it
 * through sk_log, whose level the service sets from --log-level (serve.c).
 *
 * Tokens are never logged: the live feed takes one in its URL (?access_token=, for
 * EventSource), so every string value that goes out here, the message included, has the
 * value of any access_token= replaced, whoever wrote the line (libmicrohttpd's own
 * messages come through svc_log too).
 */
#include "service/serve_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBSYSTEM "service"

#define TOKEN_PARAM "access_token="

/* A copy of text with the value of every access_token= replaced; NULL when there is none
 * (or no memory: then the caller drops the text rather than log a token). */
static char *redacted(const char *text, int *found)
{
    *found = strstr(text, TOKEN_PARAM) != NULL;
    if (!*found)
        return NULL;
    size_t cap = strlen(text) + 1, len = 0;
    for (const char *p = text; (p = strstr(p, TOKEN_PARAM)); p++)
        cap += 8; /* "REDACTED" at most per occurrence */
    char *out = malloc(cap);
    if (!out)
        return NULL;
    const char *p = text;
    for (const char *at; (at = strstr(p, TOKEN_PARAM));) {
        size_t keep = (size_t)(at - p) + strlen(TOKEN_PARAM);
        memcpy(out + len, p, keep);
        len += keep;
        memcpy(out + len, "REDACTED", 8);
        len += 8;
        p = at + strlen(TOKEN_PARAM);
        p += strcspn(p, "&# \t\r\n\"'");
    }
    memcpy(out + len, p, strlen(p) + 1);
    return out;
}

#define KV_MAX 16

void svc_log_kv(sk_log_level level, const char *msg, const sk_log_field *fields, size_t count)
{
    if (!sk_log_enabled(level))
        return;
    if (count > KV_MAX)
        count = KV_MAX;
    sk_log_field safe[KV_MAX];
    char *copies[KV_MAX + 1] = {NULL};
    int found;
    copies[KV_MAX] = redacted(msg, &found);
    bool dropped = found && !copies[KV_MAX];
    for (size_t i = 0; i < count && !dropped; i++) {
        safe[i] = fields[i];
        found = 0;
        copies[i] = fields[i].number ? NULL : redacted(fields[i].value, &found);
        if (copies[i])
            safe[i].value = copies[i];
        dropped = found && !copies[i]; /* no memory to redact it: drop the line, not leak */
    }
    if (!dropped)
        sk_log_write_fields(level, SUBSYSTEM, copies[KV_MAX] ? copies[KV_MAX] : msg, safe, count);
    for (size_t i = 0; i <= KV_MAX; i++)
        free(copies[i]);
}

void svc_log(sk_log_level level, const char *msg, ...)
{
    if (!sk_log_enabled(level))
        return;
    sk_log_field fields[KV_MAX];
    size_t count = 0;
    va_list ap;
    va_start(ap, msg);
    const char *key;
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        if (value && *value && count < KV_MAX)
            fields[count++] = (sk_log_field){key, value, false};
    }
    va_end(ap);
    svc_log_kv(level, msg, fields, count);
}
