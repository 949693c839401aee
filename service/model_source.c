/*
 * model_source.c -- where the query engine finds the read models (a qry_source).
 *
 * With the projections role in the same process the answer comes from the projection
 * engine: the live generation's path, and a wait on its condition variable. A process
 * that runs the queries role alone (beside a projections process on the same data
 * directory) reads the directory instead: the live generation is the newest
 * NAME.<n>.db whose _skald_projection says live = 1, and a wait for a position watches
 * the directory with inotify (every commit writes the database's WAL) until the model's
 * next_position passes it or the deadline comes: no polling.
 */
#include "service/serve_int.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

static int engine_live_db(void *ctx, const char *model, char *path, size_t size, uint64_t *gen)
{
    return proj_live_db(ctx, model, path, size, gen);
}

static int engine_wait(void *ctx, const char *model, uint64_t position, int timeout_ms,
                       int64_t *applied)
{
    return proj_wait_applied(ctx, model, position, timeout_ms, applied);
}

void svc_model_source_engine(proj_engine *e, qry_source *out)
{
    *out = (qry_source){e, engine_live_db, engine_wait};
}

/* A meta value of a database file, as an integer; -1 if it cannot be read. */
static int64_t meta_int(const char *path, const char *key)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT value FROM _skald_projection WHERE key = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int dir_live_db(void *ctx, const char *model, char *path, size_t size, uint64_t *gen)
{
    const char *dir = ctx;
    DIR *d = opendir(dir);
    uint64_t best = 0;
    size_t mlen = strlen(model);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char *end = NULL;
        if (strncmp(e->d_name, model, mlen) != 0 || e->d_name[mlen] != '.')
            continue;
        uint64_t n = strtoull(e->d_name + mlen + 1, &end, 10);
        char candidate[4096];
        snprintf(candidate, sizeof candidate, "%s/%s", dir, e->d_name);
        if (end && strcmp(end, ".db") == 0 && n > best && meta_int(candidate, "live") == 1)
            best = n;
    }
    if (d)
        closedir(d);
    if (!best)
        return SK_EBUSY;
    snprintf(path, size, "%s/%s.%06" PRIu64 ".db", dir, model, best);
    *gen = best;
    return 0;
}

static int64_t applied_now(void *ctx, const char *model)
{
    char path[4096];
    uint64_t gen;
    if (dir_live_db(ctx, model, path, sizeof path, &gen) != 0)
        return -1;
    return meta_int(path, "next_position") - 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int dir_wait(void *ctx, const char *model, uint64_t position, int timeout_ms,
                    int64_t *applied)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd >= 0 && inotify_add_watch(fd, ctx, IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0) {
        close(fd);
        fd = -1;
    }
    int64_t deadline = now_ms() + timeout_ms;
    int rc = -ETIMEDOUT;
    for (;;) {
        *applied = applied_now(ctx, model);
        if (*applied >= (int64_t)position) {
            rc = 0;
            break;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0 || fd < 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) > 0) {
            char buf[4096];
            while (read(fd, buf, sizeof buf) > 0) {
            }
        }
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

void svc_model_source_dir(const char *projections_dir, qry_source *out)
{
    *out = (qry_source){(void *)projections_dir, dir_live_db, dir_wait};
}
