/*
 * util.c -- the plumbing every benchmark shares: its work directory, the file system it
 * runs on, clocks, percentiles, stream names and payloads.
 *
 * A benchmark's figures only mean something next to the file system they were taken on
 * (fdatasync on tmpfs costs nothing), so the work directory is printed with its file
 * system, and both the store and its raw baseline write inside it.
 */
#include "tools/bench/bench.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

void bench_opts_init(bench_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->events = 1000000;
    opts->threads = 8;
    opts->subscribers = 8;
    opts->window = 4096;
    opts->streams = 10000;
    opts->payload_bytes = 77;
    opts->runs = 3;
    opts->read_bytes = 256u << 10; /* store/reader.c reads 256 KiB at a time */
    opts->stream_events = 100;
    opts->connections = 64;
    opts->duration_s = 10;
    opts->wrk_threads = 1;
    opts->history_max = 100000;
    opts->command_rate = 5000;
    opts->orders = 5000;
    opts->customers = 100;
    opts->clients = 100;
    opts->rate = 2000;
    opts->keys = 200000;
    opts->body_bytes = 200;
}

int bench_path_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return 0;
}

int bench_workdir_create(const char *parent, char *out, size_t size)
{
    int rc = bench_path_join(out, size, parent ? parent : ".", "skald-bench-XXXXXX");
    if (rc < 0)
        return rc;
    if (!mkdtemp(out))
        return -errno;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -errno;
}

int bench_workdir_remove(const char *path)
{
    /* Depth first, never following symlinks: children go before their directory. */
    int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc == -1)
        return -errno;
    return rc;
}

const char *bench_fs_name(const char *path, int *durable_out)
{
    static const struct {
        unsigned long magic;
        const char *name;
        int durable;
    } known[] = {
        {0xEF53, "ext2/3/4", 1},  {0x58465342, "xfs", 1},   {0x9123683E, "btrfs", 1},
        {0x01021994, "tmpfs", 0}, {0x858458F6, "ramfs", 0}, {0x794C7630, "overlayfs", 1},
        {0x2FC12FC1, "zfs", 1},   {0xF2F52010, "f2fs", 1},  {0x6969, "nfs", 1},
        {0x65735546, "fuse", 1},  {0x01161970, "gfs2", 1},  {0x5346544E, "ntfs", 1},
    };
    struct statfs sf;
    *durable_out = 1;
    if (statfs(path, &sf) != 0)
        return "unknown";
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if ((unsigned long)sf.f_type == known[i].magic) {
            *durable_out = known[i].durable;
            return known[i].name;
        }
    }
    return "other";
}

void bench_print_where(const char *what, const char *path)
{
    int durable;
    const char *fs = bench_fs_name(path, &durable);
    printf("%s: %s (file system: %s)\n", what, path, fs);
    if (!durable)
        printf("warning: fdatasync is a no-op on %s; durable figures mean nothing here\n", fs);
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double bench_seconds(uint64_t ns)
{
    return (double)ns / 1e9;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void bench_sort_u64(uint64_t *values, size_t count)
{
    qsort(values, count, sizeof *values, cmp_u64);
}

uint64_t bench_percentile(uint64_t *values, size_t count, double pct)
{
    if (count == 0)
        return 0;
    bench_sort_u64(values, count);
    /* Nearest rank: the smallest value with at least pct% of the values at or below it. */
    size_t rank = (size_t)((pct / 100.0) * (double)count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > count)
        rank = count;
    return values[rank - 1];
}

int bench_stream_names_init(bench_stream_names *sn, uint32_t count)
{
    sn->names = calloc(count, sizeof *sn->names);
    if (!sn->names)
        return -ENOMEM;
    sn->count = count;
    for (uint32_t i = 0; i < count; i++)
        snprintf(sn->names[i], sizeof sn->names[i], "stream-%06u", i % 1000000u);
    return 0;
}

void bench_stream_names_free(bench_stream_names *sn)
{
    free(sn->names);
    sn->names = NULL;
    sn->count = 0;
}

ev_str bench_stream_name(const bench_stream_names *sn, uint64_t index)
{
    const char *name = sn->names[index % sn->count];
    return (ev_str){name, (uint32_t)strlen(name)};
}

uint8_t *bench_payload_create(uint32_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (!p)
        return NULL;
    uint32_t x = 2463534242u; /* xorshift32: bytes that do not compress to nothing */
    for (uint32_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

int bench_log_open(const char *dir, store_fsync_mode mode, uint32_t queue_min, store_log **out)
{
    store_config cfg;
    sk_error err;
    sk_error_clear(&err);
    store_config_init(&cfg, dir);
    cfg.fsync_mode = mode;
    if (cfg.queue_appends_max < queue_min)
        cfg.queue_appends_max = queue_min;
    int rc = store_log_open(&cfg, out, &err);
    if (rc < 0)
        fprintf(stderr, "skald-bench: cannot open the log in %s: %s (%s)\n", dir,
                err.message[0] ? err.message : sk_strerror(rc), sk_err_name(rc));
    return rc;
}

double bench_stat_ticks(const char *path)
{
    char text[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strrchr(text, ')'); /* the name may hold spaces */
    unsigned long long utime, stime;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime);
}

/* 1 if the thread /proc/<pid>/task/<tid> is named with the prefix. */
static int thread_named(const char *task_dir, const char *prefix)
{
    char path[600], name[64] = "";
    snprintf(path, sizeof path, "%s/comm", task_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int ok = fgets(name, sizeof name, f) != NULL;
    fclose(f);
    return ok && strncmp(name, prefix, strlen(prefix)) == 0;
}

double bench_cpu_seconds(pid_t pid, const char *thread)
{
    char path[600];
    double ticks = 0;
    if (!thread) {
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        ticks = bench_stat_ticks(path);
    } else {
        char dir[64];
        snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
        DIR *d = opendir(dir);
        if (!d)
            return -1;
        int named = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.')
                continue;
            char task[400];
            snprintf(task, sizeof task, "%s/%s", dir, e->d_name);
            snprintf(path, sizeof path, "%s/stat", task);
            if (!thread_named(task, thread))
                continue;
            double t = bench_stat_ticks(path);
            named += t >= 0;
            ticks += t > 0 ? t : 0;
        }
        closedir(d);
        if (!named) /* no such thread: unknown, not zero */
            return -1;
    }
    return ticks < 0 ? -1 : ticks / (double)sysconf(_SC_CLK_TCK);
}
