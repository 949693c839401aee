/*
 * paths.c -- what a request's path may hold, checked before any route sees it.
 *
 * libmicrohttpd percent-decodes the path in place and hands it on as a C string, so
 * `%00` cut it short (`/v1/streams/product-A%00zzz` read `product-A`), and bytes that
 * are not UTF-8 (`%ff`) reached routes that put the path into JSON, which refused it
 * (500 "out of memory", text/plain). Here the decoding leaves `%00` as it is, and every
 * path that is not valid UTF-8 or holds a control character (after decoding) is a 400
 * problem naming the path. Query arguments go through the same decoder, so a `%00` in
 * one stays three visible characters and fails that parameter's own check.
 */
#include "service/serve_int.h"

#include <string.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t svc_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *out = s;
    for (const char *in = s; *in;) {
        int hi = in[0] == '%' ? hex_value(in[1]) : -1;
        int lo = hi >= 0 ? hex_value(in[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) { /* %00 stays as it is: a NUL would cut the string */
            *out++ = (char)(hi * 16 + lo);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}

/* The length of the UTF-8 sequence at s (1..4), or 0 if it is not a valid one (overlong
 * forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_sequence(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || s[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

int svc_path_check(svc_request *rq, const char *url)
{
    const unsigned char *p = (const unsigned char *)url;
    while (*p) {
        size_t n = utf8_sequence(p);
        if (n == 0) {
            svc_problem(rq, 400, "invalid_path", "path",
                        "the path is not valid UTF-8 (byte %zu, after percent-decoding)",
                        (size_t)(p - (const unsigned char *)url));
            return -1;
        }
        if (*p < 0x20 || *p == 0x7f || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) ||
            (p[0] == '%' && p[1] == '0' && p[2] == '0')) {
            svc_problem(rq, 400, "invalid_path", "path",
                        "the path holds a control character or a NUL (%%00) at byte %zu",
                        (size_t)(p - (const unsigned char *)url));
            return -1;
        }
        p += n;
    }
    return 0;
}
