/*
 * json_out.c -- the JSON writer both encoders use: text appended to a growable buffer,
 * strings escaped as RFC 8259 requires. Building jansson objects for every span and
 * dumping them cost the exporter thread more CPU than the commands could spare on a
 * small machine (docs/benchmarks.md, traced-commands); a span's JSON is a fixed shape,
 * so it is written directly. A failed allocation is sticky: the result is NULL.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

void tr_out_raw(tr_out *o, const char *text, size_t len)
{
    if (o->failed || ev_buf_reserve(&o->buf, len + 1) != 0) {
        o->failed = true;
        return;
    }
    memcpy(o->buf.data + o->buf.size, text, len);
    o->buf.size += len;
}

void tr_out_lit(tr_out *o, const char *text)
{
    tr_out_raw(o, text, strlen(text));
}

void tr_out_fmt(tr_out *o, const char *fmt, ...)
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
    tr_out_raw(o, tmp, (size_t)n);
}

/* A JSON string: quotes, backslashes and control characters escaped; other bytes as they
 * are (span.c keeps attribute values whole UTF-8 sequences). */
void tr_out_str(tr_out *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    tr_out_raw(o, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        tr_out_raw(o, run, (size_t)(s - run));
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t n = 2;
        if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        tr_out_raw(o, esc, n);
        run = s + 1;
    }
    tr_out_raw(o, run, (size_t)(s - run));
    tr_out_raw(o, "\"", 1);
}

void tr_out_hex(tr_out *o, const uint8_t *bytes, size_t n)
{
    char text[33];
    tr_hex(bytes, n, text);
    tr_out_raw(o, "\"", 1);
    tr_out_raw(o, text, 2 * n);
    tr_out_raw(o, "\"", 1);
}

char *tr_out_take(tr_out *o)
{
    tr_out_raw(o, "", 1); /* the NUL */
    if (o->failed) {
        ev_buf_free(&o->buf);
        return NULL;
    }
    return (char *)o->buf.data; /* the caller frees it */
}
