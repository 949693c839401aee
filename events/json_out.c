/*
 * json_out.c -- JSON text written directly into a growable buffer, for output of a fixed
 * shape that is made often: spans (trace/), log lines (log.c) and command answers
 * (service/). Building jansson objects and dumping them cost more than the work they
 * reported (docs/benchmarks.md: the exporter's spans, the completer's answers and log
 * lines). Strings are escaped as RFC 8259 requires, and a byte that is not part of valid
 * UTF-8 is written as U+FFFD, so the text is always valid JSON whatever it was given. A
 * failed allocation is sticky: the result is NULL.
 */
#include "events/events_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ev_json_out_raw(ev_json_out *o, const char *text, size_t len)
{
    if (o->failed || ev_buf_reserve(&o->buf, len + 1) != 0) {
        o->failed = true;
        return;
    }
    memcpy(o->buf.data + o->buf.size, text, len);
    o->buf.size += len;
}

void ev_json_out_lit(ev_json_out *o, const char *text)
{
    ev_json_out_raw(o, text, strlen(text));
}

void ev_json_out_fmt(ev_json_out *o, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        o->failed = true;
        return;
    }
    ev_json_out_raw(o, tmp, (size_t)n);
}

/* The escape of a byte that may not appear as it is in a JSON string (NULL: it may). */
static const char *escape_of(unsigned char c, char buf[7])
{
    static const char hex[] = "0123456789abcdef";
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    default:
        if (c >= 0x20)
            return NULL;
        memcpy(buf, "\\u00", 4);
        buf[4] = hex[c >> 4];
        buf[5] = hex[c & 15];
        buf[6] = '\0';
        return buf;
    }
}

void ev_json_out_strn(ev_json_out *o, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    ev_json_out_raw(o, "\"", 1);
    while (p < end) {
        char buf[7];
        const char *esc = NULL;
        size_t n = 1;
        if (*p < 0x80)
            esc = escape_of(*p, buf);
        else if ((n = ev_utf8_seq(p, (size_t)(end - p))) == 0)
            esc = "\xEF\xBF\xBD", n = 1; /* U+FFFD for a byte that is not UTF-8 */
        if (!esc) {
            p += n;
            continue;
        }
        ev_json_out_raw(o, (const char *)run, (size_t)(p - run));
        ev_json_out_lit(o, esc);
        p += n;
        run = p;
    }
    ev_json_out_raw(o, (const char *)run, (size_t)(p - run));
    ev_json_out_raw(o, "\"", 1);
}

void ev_json_out_str(ev_json_out *o, const char *s)
{
    ev_json_out_strn(o, s, strlen(s));
}

char *ev_json_out_take(ev_json_out *o, size_t *len_out)
{
    size_t len = o->buf.size;
    ev_json_out_raw(o, "", 1); /* the NUL */
    if (o->failed) {
        ev_buf_free(&o->buf);
        return NULL;
    }
    if (len_out)
        *len_out = len;
    return (char *)o->buf.data; /* the caller frees it */
}
