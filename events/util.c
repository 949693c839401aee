/*
 * util.c -- small value types every layer uses: string views, UUIDs, growable buffers and
 * the wall clock.
 *
 * Event ids are generated for every event on the append path, so ev_uuid_generate must be
 * cheap and must not serialise threads: libuuid's uuid_generate makes several system
 * calls and takes a process-wide lock per id (it capped the log at about 270,000 events/s
 * in skald-bench log-append). Ids here are UUIDv7 (RFC 9562): 48 bits of Unix
 * milliseconds, then 74 random bits from a per-thread xoshiro256** generator seeded once
 * from getrandom(2). They sort by time, which keeps indexes on them compact, and two
 * threads never share generator state.
 */
#include "events/events.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

ev_str ev_str_of(const char *cstr)
{
    ev_str s = {cstr ? cstr : "", cstr ? (uint32_t)strlen(cstr) : 0};
    return s;
}

int ev_str_eq(ev_str a, const char *cstr)
{
    size_t n = strlen(cstr);
    return a.len == n && (n == 0 || memcmp(a.ptr, cstr, n) == 0);
}

uint64_t ev_hash_add(uint64_t hash, const void *data, size_t size)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < size; i++)
        hash = (hash ^ p[i]) * 0x100000001b3ull;
    return hash;
}

uint64_t ev_hash_str(const char *cstr)
{
    return ev_hash_add(EV_HASH_INIT, cstr, strlen(cstr));
}

int64_t ev_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

typedef struct uuid_rng {
    uint64_t s[4];
    int seeded;
} uuid_rng;

static uint64_t rng_next(uuid_rng *r)
{
    if (!r->seeded) {
        if (getrandom(r->s, sizeof r->s, 0) != (ssize_t)sizeof r->s) {
            /* No entropy source: fall back to time and address, still unique per thread. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            r->s[0] = (uint64_t)ts.tv_nsec ^ 0x9E3779B97F4A7C15ull;
            r->s[1] = (uint64_t)(uintptr_t)r;
            r->s[2] = (uint64_t)ts.tv_sec;
            r->s[3] = 0xD1B54A32D192ED03ull;
        }
        r->seeded = 1;
    }
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void ev_uuid_generate(ev_uuid *out)
{
    static _Thread_local uuid_rng r;
    uint64_t ms = (uint64_t)(ev_now_us() / 1000);
    uint64_t a = rng_next(&r), b = rng_next(&r);
    for (int i = 0; i < 6; i++)
        out->bytes[i] = (uint8_t)(ms >> (8 * (5 - i)));
    out->bytes[6] = (uint8_t)(0x70 | (a & 0x0f)); /* version 7 */
    out->bytes[7] = (uint8_t)(a >> 8);
    out->bytes[8] = (uint8_t)(0x80 | ((a >> 16) & 0x3f)); /* RFC 4122 variant */
    for (int i = 9; i < 16; i++)
        out->bytes[i] = (uint8_t)(b >> (8 * (i - 9)));
}

void ev_uuid_format(const ev_uuid *id, char out[EV_UUID_TEXT_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[id->bytes[i] >> 4];
        *p++ = hex[id->bytes[i] & 15];
    }
    *p = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ev_uuid_parse(const char *text, ev_uuid *out)
{
    if (!text || strlen(text) != 36)
        return SK_EBADINPUT;
    ev_uuid id;
    const char *p = text;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            if (*p != '-')
                return SK_EBADINPUT;
            p++;
        }
        int hi = hexval(p[0]), lo = hexval(p[1]);
        if (hi < 0 || lo < 0)
            return SK_EBADINPUT;
        id.bytes[i] = (uint8_t)(hi << 4 | lo);
        p += 2;
    }
    *out = id;
    return 0;
}

int ev_uuid_is_nil(const ev_uuid *id)
{
    for (int i = 0; i < 16; i++)
        if (id->bytes[i])
            return 0;
    return 1;
}

int ev_buf_reserve(ev_buf *buf, size_t extra)
{
    if (buf->cap - buf->size >= extra)
        return 0;
    size_t need = buf->size + extra, cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(buf->data, cap);
    if (!p)
        return -ENOMEM;
    buf->data = p;
    buf->cap = cap;
    return 0;
}

int ev_buf_append(ev_buf *buf, const void *data, size_t size)
{
    int rc = ev_buf_reserve(buf, size);
    if (rc)
        return rc;
    if (size)
        memcpy(buf->data + buf->size, data, size);
    buf->size += size;
    return 0;
}

void ev_buf_free(ev_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->size = buf->cap = 0;
}

int ev_read_file(const char *path, char **out, size_t *size_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (cap - size < 4096) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                free(buf);
                fclose(f);
                return SK_ETOOBIG;
            }
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = p;
        }
        size_t n = fread(buf + size, 1, cap - size, f);
        size += n;
        if (n == 0)
            break;
    }
    int rc = ferror(f) ? -EIO : 0;
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[size] = '\0'; /* the loop always leaves room */
    *out = buf;
    *size_out = size;
    return 0;
}

int ev_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

#ifndef SKALD_DATA_FROM_BIN
#define SKALD_DATA_FROM_BIN "../share/skald"
#endif

/* The directory of the running binary into out; 0 or -errno. */
static int exe_dir(char *out, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", out, size - 1);
    if (n <= 0)
        return n < 0 ? -errno : -ENOENT;
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (!slash)
        return -ENOENT;
    *slash = '\0';
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ev_shipped_path(const char *what, char *out, size_t size)
{
    char dir[4096];
    int rc = exe_dir(dir, sizeof dir);
    if (rc)
        return rc;
    int n = snprintf(out, size, "%s/" SKALD_DATA_FROM_BIN "/%s", dir, what);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    if (is_dir(out))
        return 0;
#if defined(SKALD_SOURCE_DIR) && defined(SKALD_BUILD_DIR)
    size_t len = strlen(SKALD_BUILD_DIR);
    if (strncmp(dir, SKALD_BUILD_DIR, len) == 0 && (dir[len] == '/' || dir[len] == '\0')) {
        n = snprintf(out, size, "%s/%s", SKALD_SOURCE_DIR, what);
        if (n < 0 || (size_t)n >= size)
            return -ENAMETOOLONG;
        return is_dir(out) ? 0 : -ENOENT;
    }
#endif
    return -ENOENT; /* out names the installed location looked at */
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not valid. */
size_t ev_utf8_seq(const unsigned char *p, size_t left)
{
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    unsigned cp = c & (0x3F >> (n - 1));
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}
