/*
 * storetest.h -- helpers the store tests share: temporary directories, events with
 * checkable payloads, and directory copies.
 */
#ifndef SKALD_STORETEST_H
#define SKALD_STORETEST_H

#define _XOPEN_SOURCE 700
#include "store/store.h"

#include <dirent.h>
#include <stdbool.h>
#include <sched.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline char *st_tempdir(void)
{
    char *p = strdup("/tmp/skald-store-test-XXXXXX");
    if (p && !mkdtemp(p)) {
        free(p);
        p = NULL;
    }
    return p;
}

static inline int st_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(path);
}

static inline void st_rmrf(const char *dir)
{
    nftw(dir, st_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Copies every regular file of from into to (created). */
static inline void st_copy_dir(const char *from, const char *to)
{
    mkdir(to, 0755);
    DIR *d = opendir(from);
    struct dirent *e;
    char buf[8192];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char a[8400], b[8400];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        int in = open(a, O_RDONLY), out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ssize_t n;
        while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n)
                abort();
        if (in >= 0)
            close(in);
        if (out >= 0)
            close(out);
    }
    if (d)
        closedir(d);
}

static inline size_t st_count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0, sl = strlen(suffix);
    while (d && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        n += l > sl && strcmp(e->d_name + l - sl, suffix) == 0;
    }
    if (d)
        closedir(d);
    return n;
}

/* Path of the highest-named segment (the active one) into out. */
static inline void st_last_segment(const char *dir, char *out, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char best[256] = "";
    while (d && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l == 24 && strcmp(e->d_name + 20, ".log") == 0 && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    }
    if (d)
        closedir(d);
    snprintf(out, size, "%s/%s", dir, best);
}

static inline void st_remove_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t sl = strlen(suffix);
    while (d && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
}

/* An event whose payload says what it is: "<tag>:<n>" padded to `extra` more bytes. */
typedef struct st_event {
    ev_event ev;
    char payload[4096];
} st_event;

static inline void st_make(st_event *e, const char *tag, uint64_t n, size_t extra)
{
    memset(e, 0, sizeof *e);
    int len = snprintf(e->payload, sizeof e->payload, "%s:%llu:", tag, (unsigned long long)n);
    if (extra > sizeof e->payload - (size_t)len)
        extra = sizeof e->payload - (size_t)len;
    memset(e->payload + len, 'x', extra);
    e->ev.type = ev_str_of("TestEvent");
    e->ev.schema_id = 1;
    e->ev.payload = (const uint8_t *)e->payload;
    e->ev.payload_size = (uint32_t)len + (uint32_t)extra;
}

static inline store_log *st_open(const char *dir, uint64_t segment_bytes)
{
    store_config cfg;
    store_config_init(&cfg, dir);
    if (segment_bytes)
        cfg.segment_bytes_max = segment_bytes;
    store_log *log = NULL;
    sk_error err = {0};
    if (store_log_open(&cfg, &log, &err) != 0) {
        fprintf(stderr, "open %s: %s\n", dir, err.message);
        return NULL;
    }
    return log;
}

/* The test scale: SKALD_TEST_SCALE (0 < s <= 1) shrinks counts for slow builds (TSan). */
static inline double st_scale(void)
{
    const char *s = getenv("SKALD_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 && v <= 1 ? v : 1.0;
}

#endif
