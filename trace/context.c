/*
 * context.c -- W3C trace context (https://www.w3.org/TR/trace-context/): the
 * `traceparent` text, its parse and format, and fresh ids. Version 00 only; a context
 * with an all-zero trace or span id is invalid, as the recommendation says.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "trace/trace_int.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is invalid in traceparent */
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i];
    }
    return nonzero ? 0 : -1;
}

int tr_ctx_parse(const char *text, tr_ctx *out)
{
    tr_ctx c = {0};
    uint8_t flags;
    if (!text || strlen(text) != TR_TRACEPARENT_SIZE - 1 || text[2] != '-' || text[35] != '-' ||
        text[52] != '-')
        return SK_EBADINPUT;
    if (strncmp(text, "00", 2) != 0)
        return SK_EBADINPUT;
    if (unhex(text + 3, c.trace_id, 16) || unhex(text + 36, c.span_id, 8))
        return SK_EBADINPUT;
    if (hexval(text[53]) < 0 || hexval(text[54]) < 0)
        return SK_EBADINPUT;
    flags = (uint8_t)(hexval(text[53]) << 4 | hexval(text[54]));
    c.flags = flags;
    c.valid = true;
    *out = c;
    return 0;
}

void tr_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

void tr_ctx_format(const tr_ctx *c, char *out)
{
    memcpy(out, "00-", 3);
    tr_hex(c->trace_id, 16, out + 3);
    out[35] = '-';
    tr_hex(c->span_id, 8, out + 36);
    out[52] = '-';
    tr_hex(&c->flags, 1, out + 53);
}

tr_ctx tr_ctx_of_event(const ev_event *ev)
{
    tr_ctx c = {0};
    for (uint32_t i = 0; i < ev->metadata_count; i++) {
        const ev_metadata_entry *m = &ev->metadata[i];
        if (!ev_str_eq(m->key, EV_META_TRACEPARENT))
            continue;
        char text[TR_TRACEPARENT_SIZE];
        if (m->value.len != TR_TRACEPARENT_SIZE - 1)
            break;
        memcpy(text, m->value.ptr, m->value.len);
        text[m->value.len] = '\0';
        tr_ctx_parse(text, &c);
        break;
    }
    return c;
}

tr_ctx tr_ctx_new_root(void)
{
    tr_ctx c = {.valid = true};
    tr_random_ids(c.trace_id, sizeof c.trace_id);
    tr_random_ids(c.span_id, sizeof c.span_id);
    c.flags = tr_sample_root() ? TR_FLAG_SAMPLED : 0;
    return c;
}

/* xorshift64* per thread, seeded from the clock and the thread's stack address: ids need
 * to be unique, not secret, and a lock or a syscall per span would cost more. */
void tr_random_ids(uint8_t *bytes, size_t n)
{
    static _Thread_local uint64_t state;
    if (!state) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uintptr_t here = (uintptr_t)&ts;
        state = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)here ^
                0x9e3779b97f4a7c15ull;
    }
    int nonzero = 0;
    while (!nonzero) {
        for (size_t i = 0; i < n; i++) {
            if (i % 8 == 0) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
            }
            uint64_t r = state * 0x2545f4914f6cdd1dull;
            bytes[i] = (uint8_t)(r >> (8 * (i % 8)));
            nonzero |= bytes[i];
        }
    }
}

void tr_json_hex(ev_json_out *o, const uint8_t *bytes, size_t n)
{
    char text[33];
    if (n > 16)
        n = 16; /* trace and span ids are 16 and 8 bytes */
    tr_hex(bytes, n, text);
    ev_json_out_raw(o, "\"", 1);
    ev_json_out_raw(o, text, 2 * n);
    ev_json_out_raw(o, "\"", 1);
}
