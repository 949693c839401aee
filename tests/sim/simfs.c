/*
 * simfs.c -- the simulated disk (SQLite's test6.c and TigerBeetle's VOPR are the models).
 *
 * Each file (inode) has two contents: `cur`, what reads see (the page cache), and `dur`,
 * what is on the platter as of its last successful fdatasync, plus a dirty bit per
 * 512-byte sector written since. Each directory entry exists in the current namespace and,
 * once its directory has been synced, in the durable one.
 *
 * Faults, all from one seeded generator so a seed replays exactly:
 *  - pwrite: a short write (a prefix, no error); EIO or ENOSPC, sometimes after a prefix
 *    reached the file (the prefix is returned, the next write fails, as the kernel does);
 *  - fdatasync: EIO, after which each dirty sector is either dropped from the cache or
 *    kept in it but marked clean, so it will never reach the disk (Linux's behaviour,
 *    which is why a retried fdatasync may lie);
 *  - torn writes never change bytes that were already durable (powersafe overwrite);
 *  - ftruncate, sync_dir: EIO;
 *  - a crash at a chosen call: every later call fails until simfs_reboot, which keeps,
 *    drops or tears (garbage or zeros) each unsynced sector, picks a file size between the
 *    durable and the current one, and keeps a random prefix of the directory changes made
 *    since their directory was last synced (a journaling file system commits them in
 *    order, each whole: a renamed file is under its old name or its new one, never both).
 */
#include "tests/sim/simfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTOR 512

typedef struct inode {
    uint8_t *cur, *dur;
    size_t cur_len, dur_len, cap;
    uint8_t *dirty; /* one byte per sector of cap */
    struct inode *next_all;
} inode;

typedef struct entry {
    char *path;
    inode *ino;
} entry;

typedef struct names {
    entry *e;
    size_t n, cap;
} names;

/* A directory change not yet synced: what may or may not survive a crash. */
typedef enum dirop_kind { DIROP_CREATE, DIROP_RENAME, DIROP_UNLINK } dirop_kind;

typedef struct dirop {
    dirop_kind kind;
    char *path, *to; /* to: the new name of a rename */
    inode *ino;
} dirop;

struct simfs {
    store_io io;     /* what the log calls: the simulation, or the tracing layer over it */
    store_io sim_io; /* the simulation itself */
    uint64_t rng;
    int verbose; /* 1: faults and crashes; 2: every call too */
    names cur, dur;
    dirop *ops; /* unsynced directory changes, oldest first */
    size_t nops, ops_cap;
    char **dirs;
    size_t ndirs;
    inode **fds;
    size_t nfds;
    inode *all;
    simfs_faults faults;
    bool faults_on;
    int pending_err;
    uint64_t calls, crash_at;
    bool crashed;
    bool held; /* checks running: no faults, and the crash clock stands still */
};

uint64_t simfs_rand(simfs *fs)
{
    uint64_t z = (fs->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static bool chance(simfs *fs, uint32_t ppm)
{
    return fs->faults_on && !fs->held && ppm && simfs_rand(fs) % 1000000 < ppm;
}

static void trace(simfs *fs, const char *what, const char *detail)
{
    if (fs->verbose)
        fprintf(stderr, "simfs #%llu: %s %s\n", (unsigned long long)fs->calls, what, detail);
}

/* Counts the call; false if the machine has crashed (the call must fail with EIO). */
static bool alive(simfs *fs)
{
    if (fs->crashed)
        return false;
    if (fs->held)
        return true;
    fs->calls++;
    if (fs->crash_at && fs->calls >= fs->crash_at) {
        fs->crashed = true;
        trace(fs, "CRASH", "");
        return false;
    }
    return true;
}

static inode *inode_new(simfs *fs)
{
    inode *ino = calloc(1, sizeof *ino);
    if (!ino)
        abort();
    ino->next_all = fs->all;
    fs->all = ino;
    return ino;
}

static void inode_reserve(inode *ino, size_t len)
{
    if (len <= ino->cap)
        return;
    size_t cap = ino->cap ? ino->cap : 4096;
    while (cap < len)
        cap *= 2;
    ino->cur = realloc(ino->cur, cap);
    ino->dur = realloc(ino->dur, cap);
    ino->dirty = realloc(ino->dirty, cap / SECTOR + 1);
    if (!ino->cur || !ino->dur || !ino->dirty)
        abort();
    memset(ino->cur + ino->cap, 0, cap - ino->cap);
    memset(ino->dur + ino->cap, 0, cap - ino->cap);
    memset(ino->dirty + ino->cap / SECTOR, 0, cap / SECTOR + 1 - ino->cap / SECTOR);
    ino->cap = cap;
}

static entry *find(names *ns, const char *path)
{
    for (size_t i = 0; i < ns->n; i++)
        if (strcmp(ns->e[i].path, path) == 0)
            return &ns->e[i];
    return NULL;
}

static void put(names *ns, const char *path, inode *ino)
{
    entry *e = find(ns, path);
    if (e) {
        e->ino = ino;
        return;
    }
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? ns->cap * 2 : 32;
        ns->e = realloc(ns->e, ns->cap * sizeof *ns->e);
        if (!ns->e)
            abort();
    }
    ns->e[ns->n].path = strdup(path);
    ns->e[ns->n].ino = ino;
    ns->n++;
}

static void del(names *ns, const char *path)
{
    entry *e = find(ns, path);
    if (!e)
        return;
    free(e->path);
    *e = ns->e[--ns->n];
}

static void dir_of(const char *path, char *out, size_t size)
{
    snprintf(out, size, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = '\0';
}

static void journal(simfs *fs, dirop_kind kind, const char *path, const char *to, inode *ino)
{
    if (fs->nops == fs->ops_cap) {
        fs->ops_cap = fs->ops_cap ? fs->ops_cap * 2 : 32;
        fs->ops = realloc(fs->ops, fs->ops_cap * sizeof *fs->ops);
        if (!fs->ops)
            abort();
    }
    fs->ops[fs->nops++] = (dirop){kind, strdup(path), to ? strdup(to) : NULL, ino};
}

static void dirop_free(dirop *op)
{
    free(op->path);
    free(op->to);
}

/* A synced directory's changes are durable: drop them from the journal. */
static void journal_forget_dir(simfs *fs, const char *dir)
{
    char d[4096];
    size_t kept = 0;
    for (size_t i = 0; i < fs->nops; i++) {
        dir_of(fs->ops[i].path, d, sizeof d);
        if (strcmp(d, dir) == 0)
            dirop_free(&fs->ops[i]);
        else
            fs->ops[kept++] = fs->ops[i];
    }
    fs->nops = kept;
}

static void dirop_apply(names *ns, const dirop *op)
{
    switch (op->kind) {
    case DIROP_CREATE:
        put(ns, op->path, op->ino);
        break;
    case DIROP_RENAME:
        del(ns, op->path);
        put(ns, op->to, op->ino);
        break;
    case DIROP_UNLINK:
        del(ns, op->path);
        break;
    }
}

static inode *ino_of(simfs *fs, int fd)
{
    return fd >= 0 && (size_t)fd < fs->nfds ? fs->fds[fd] : NULL;
}

/* The common start of a call on a descriptor: counts it (the crash clock), and finds
 * the file. 0, -EIO after a crash, or -EBADF. */
static int start_call(simfs *fs, int fd, inode **out)
{
    *out = ino_of(fs, fd);
    if (!alive(fs))
        return -EIO;
    return *out ? 0 : -EBADF;
}

static int s_open(void *ctx, const char *path, int flags, int mode)
{
    simfs *fs = ctx;
    if (!alive(fs))
        return -EIO;
    entry *e = find(&fs->cur, path);
    inode *ino = e ? e->ino : NULL;
    if (!ino) {
        if (!(flags & O_CREAT))
            return -ENOENT;
        char dir[4096];
        dir_of(path, dir, sizeof dir);
        bool dir_ok = false;
        for (size_t i = 0; i < fs->ndirs; i++)
            dir_ok |= strcmp(fs->dirs[i], dir) == 0;
        if (!dir_ok)
            return -ENOENT;
        ino = inode_new(fs);
        put(&fs->cur, path, ino);
        journal(fs, DIROP_CREATE, path, NULL, ino);
    }
    if (flags & O_TRUNC)
        ino->cur_len = 0;
    for (size_t i = 0; i < fs->nfds; i++) {
        if (!fs->fds[i]) {
            fs->fds[i] = ino;
            return (int)i;
        }
    }
    fs->fds = realloc(fs->fds, (fs->nfds + 1) * sizeof *fs->fds);
    if (!fs->fds)
        abort();
    fs->fds[fs->nfds] = ino;
    return (int)fs->nfds++;
}

static int s_close(void *ctx, int fd)
{
    simfs *fs = ctx;
    if (fd >= 0 && (size_t)fd < fs->nfds)
        fs->fds[fd] = NULL; /* closing works even after a crash: nothing reaches disk */
    return fs->crashed ? -EIO : 0;
}

static ssize_t s_pread(void *ctx, int fd, void *buf, size_t size, uint64_t offset)
{
    simfs *fs = ctx;
    inode *ino;
    int err = start_call(fs, fd, &ino);
    if (err)
        return err;
    if (offset >= ino->cur_len)
        return 0;
    size_t n = ino->cur_len - offset < size ? ino->cur_len - offset : size;
    memcpy(buf, ino->cur + offset, n);
    return (ssize_t)n;
}

static void write_bytes(inode *ino, const void *buf, size_t n, uint64_t offset)
{
    inode_reserve(ino, offset + n);
    if (offset > ino->cur_len)
        memset(ino->cur + ino->cur_len, 0, offset - ino->cur_len);
    memcpy(ino->cur + offset, buf, n);
    for (uint64_t s = offset / SECTOR; s <= (offset + n - 1) / SECTOR && n; s++)
        ino->dirty[s] = 1;
    if (offset + n > ino->cur_len)
        ino->cur_len = offset + n;
}

/* Background writeback: the kernel may write a dirty sector to disk at any time, without
 * an fdatasync, size included. So data that was written and then cut off by a truncate
 * that was never synced can come back after a crash. */
static void maybe_writeback(simfs *fs, inode *ino)
{
    if (!chance(fs, fs->faults.writeback) || ino->cur_len == 0)
        return;
    size_t s = (size_t)(simfs_rand(fs) % ((ino->cur_len + SECTOR - 1) / SECTOR));
    if (!ino->dirty[s])
        return;
    size_t from = s * SECTOR, to = from + SECTOR < ino->cur_len ? from + SECTOR : ino->cur_len;
    memcpy(ino->dur + from, ino->cur + from, to - from);
    if (to > ino->dur_len) {
        if (from > ino->dur_len)
            memset(ino->dur + ino->dur_len, 0, from - ino->dur_len);
        ino->dur_len = to;
    }
    ino->dirty[s] = 0;
    trace(fs, "writeback", "");
}

static ssize_t s_pwrite(void *ctx, int fd, const void *buf, size_t size, uint64_t offset)
{
    simfs *fs = ctx;
    inode *ino;
    int err = start_call(fs, fd, &ino);
    if (err)
        return err;
    if (fs->pending_err) {
        int e = fs->pending_err;
        fs->pending_err = 0;
        trace(fs, "pwrite fails after a prefix", e == -EIO ? "EIO" : "ENOSPC");
        return e;
    }
    if (size > 1 && chance(fs, fs->faults.short_write)) {
        size_t n = 1 + (size_t)(simfs_rand(fs) % (size - 1));
        trace(fs, "short write", "");
        write_bytes(ino, buf, n, offset);
        return (ssize_t)n;
    }
    err = chance(fs, fs->faults.write_eio)     ? -EIO
          : chance(fs, fs->faults.write_nospc) ? -ENOSPC
                                               : 0;
    if (err) {
        size_t prefix = size > 1 && simfs_rand(fs) % 2 ? (size_t)(simfs_rand(fs) % size) : 0;
        trace(fs, err == -EIO ? "pwrite EIO" : "pwrite ENOSPC", prefix ? "after a prefix" : "");
        if (prefix) {
            write_bytes(ino, buf, prefix, offset);
            fs->pending_err = err;
            return (ssize_t)prefix;
        }
        return err;
    }
    write_bytes(ino, buf, size, offset);
    maybe_writeback(fs, ino);
    return (ssize_t)size;
}

static int s_fdatasync(void *ctx, int fd)
{
    simfs *fs = ctx;
    inode *ino;
    int err = start_call(fs, fd, &ino);
    if (err)
        return err;
    size_t sectors = ino->cap / SECTOR + 1;
    if (chance(fs, fs->faults.fsync_eio)) {
        trace(fs, "fdatasync EIO", "(dirty pages dropped or kept, all marked clean)");
        for (size_t s = 0; s < sectors && s * SECTOR < ino->cur_len; s++) {
            if (!ino->dirty[s])
                continue;
            if (simfs_rand(fs) % 2) {
                size_t from = s * SECTOR, to = from + SECTOR;
                if (to > ino->cur_len)
                    to = ino->cur_len;
                memcpy(ino->cur + from, ino->dur + from, to - from);
            }
            ino->dirty[s] = 0;
        }
        return -EIO;
    }
    /* Only dirty sectors are written: one marked clean by an earlier failure never reaches
     * the disk, though reads still see it. */
    for (size_t s = 0; s < sectors && s * SECTOR < ino->cur_len; s++) {
        if (!ino->dirty[s])
            continue;
        size_t from = s * SECTOR, to = from + SECTOR < ino->cur_len ? from + SECTOR : ino->cur_len;
        memcpy(ino->dur + from, ino->cur + from, to - from);
    }
    ino->dur_len = ino->cur_len;
    memset(ino->dirty, 0, sectors);
    return 0;
}

static int s_ftruncate(void *ctx, int fd, uint64_t size)
{
    simfs *fs = ctx;
    inode *ino;
    int err = start_call(fs, fd, &ino);
    if (err)
        return err;
    if (chance(fs, fs->faults.meta_eio)) {
        trace(fs, "ftruncate EIO", "");
        return -EIO;
    }
    inode_reserve(ino, size + 1);
    if (size > ino->cur_len)
        memset(ino->cur + ino->cur_len, 0, size - ino->cur_len);
    ino->cur_len = size;
    for (size_t s = size / SECTOR; s < ino->cap / SECTOR + 1; s++)
        ino->dirty[s] = 1; /* the new size is not durable until synced */
    return 0;
}

static int s_file_size(void *ctx, int fd, uint64_t *size_out)
{
    simfs *fs = ctx;
    inode *ino;
    int err = start_call(fs, fd, &ino);
    if (err)
        return err;
    *size_out = ino->cur_len;
    return 0;
}

static int s_rename(void *ctx, const char *from, const char *to)
{
    simfs *fs = ctx;
    if (!alive(fs))
        return -EIO;
    entry *e = find(&fs->cur, from);
    if (!e)
        return -ENOENT;
    inode *ino = e->ino;
    del(&fs->cur, from);
    put(&fs->cur, to, ino);
    journal(fs, DIROP_RENAME, from, to, ino);
    return 0;
}

static int s_unlink(void *ctx, const char *path)
{
    simfs *fs = ctx;
    if (!alive(fs))
        return -EIO;
    entry *e = find(&fs->cur, path);
    if (!e)
        return -ENOENT;
    journal(fs, DIROP_UNLINK, path, NULL, e->ino);
    del(&fs->cur, path);
    return 0;
}

static int s_mkdir(void *ctx, const char *path, int mode)
{
    simfs *fs = ctx;
    if (!alive(fs))
        return -EIO;
    for (size_t i = 0; i < fs->ndirs; i++)
        if (strcmp(fs->dirs[i], path) == 0)
            return -EEXIST;
    fs->dirs = realloc(fs->dirs, (fs->ndirs + 1) * sizeof *fs->dirs);
    fs->dirs[fs->ndirs++] = strdup(path);
    return 0; /* directories are durable at once: the log's tests are about files */
}

/* Makes the current entries of dir the durable ones. */
static int s_sync_dir(void *ctx, const char *dir)
{
    simfs *fs = ctx;
    if (!alive(fs))
        return -EIO;
    if (chance(fs, fs->faults.meta_eio)) {
        trace(fs, "sync_dir EIO", dir);
        return -EIO;
    }
    char d[4096];
    for (size_t i = fs->dur.n; i > 0; i--) {
        dir_of(fs->dur.e[i - 1].path, d, sizeof d);
        if (strcmp(d, dir) == 0 && !find(&fs->cur, fs->dur.e[i - 1].path))
            del(&fs->dur, fs->dur.e[i - 1].path);
    }
    for (size_t i = 0; i < fs->cur.n; i++) {
        dir_of(fs->cur.e[i].path, d, sizeof d);
        if (strcmp(d, dir) == 0)
            put(&fs->dur, fs->cur.e[i].path, fs->cur.e[i].ino);
    }
    journal_forget_dir(fs, dir);
    return 0;
}

static int s_list_dir(void *ctx, const char *dir, store_io_dirent_cb cb, void *cb_ctx)
{
    simfs *fs = ctx;
    if (!alive(fs))
        return -EIO;
    char d[4096];
    size_t n = fs->cur.n;
    char **copy = calloc(n + 1, sizeof *copy);
    for (size_t i = 0; i < n; i++) {
        dir_of(fs->cur.e[i].path, d, sizeof d);
        if (strcmp(d, dir) == 0)
            copy[i] = strdup(strrchr(fs->cur.e[i].path, '/') + 1);
    }
    int stop = 0;
    for (size_t i = 0; i < n; i++) {
        if (copy[i] && !stop)
            stop = cb(cb_ctx, copy[i]);
        free(copy[i]);
    }
    free(copy);
    return 0;
}

/* -vv: every call and its result, through a layer over the simulated calls. */
static int t_open(void *ctx, const char *path, int flags, int mode)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.open(fs, path, flags, mode);
    fprintf(stderr, "simfs #%llu: open %s%s -> %d\n", (unsigned long long)fs->calls, path,
            flags & O_CREAT ? " (create)" : "", rc);
    return rc;
}

static int t_close(void *ctx, int fd)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.close(fs, fd);
    fprintf(stderr, "simfs #%llu: close %d -> %d\n", (unsigned long long)fs->calls, fd, rc);
    return rc;
}

static ssize_t t_pread(void *ctx, int fd, void *buf, size_t size, uint64_t offset)
{
    simfs *fs = ctx;
    ssize_t rc = fs->sim_io.pread(fs, fd, buf, size, offset);
    fprintf(stderr, "simfs #%llu: pread %d %zu@%llu -> %zd\n", (unsigned long long)fs->calls, fd,
            size, (unsigned long long)offset, rc);
    return rc;
}

static ssize_t t_pwrite(void *ctx, int fd, const void *buf, size_t size, uint64_t offset)
{
    simfs *fs = ctx;
    ssize_t rc = fs->sim_io.pwrite(fs, fd, buf, size, offset);
    fprintf(stderr, "simfs #%llu: pwrite %d %zu@%llu -> %zd\n", (unsigned long long)fs->calls, fd,
            size, (unsigned long long)offset, rc);
    return rc;
}

static int t_fdatasync(void *ctx, int fd)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.fdatasync(fs, fd);
    fprintf(stderr, "simfs #%llu: fdatasync %d -> %d\n", (unsigned long long)fs->calls, fd, rc);
    return rc;
}

static int t_ftruncate(void *ctx, int fd, uint64_t size)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.ftruncate(fs, fd, size);
    fprintf(stderr, "simfs #%llu: ftruncate %d %llu -> %d\n", (unsigned long long)fs->calls, fd,
            (unsigned long long)size, rc);
    return rc;
}

static int t_file_size(void *ctx, int fd, uint64_t *size_out)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.file_size(fs, fd, size_out);
    fprintf(stderr, "simfs #%llu: file_size %d -> %d (%llu)\n", (unsigned long long)fs->calls, fd,
            rc, rc == 0 ? (unsigned long long)*size_out : 0ull);
    return rc;
}

static int t_rename(void *ctx, const char *from, const char *to)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.rename(fs, from, to);
    fprintf(stderr, "simfs #%llu: rename %s %s -> %d\n", (unsigned long long)fs->calls, from, to,
            rc);
    return rc;
}

static int t_unlink(void *ctx, const char *path)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.unlink(fs, path);
    fprintf(stderr, "simfs #%llu: unlink %s -> %d\n", (unsigned long long)fs->calls, path, rc);
    return rc;
}

static int t_mkdir(void *ctx, const char *path, int mode)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.mkdir(fs, path, mode);
    fprintf(stderr, "simfs #%llu: mkdir %s -> %d\n", (unsigned long long)fs->calls, path, rc);
    return rc;
}

static int t_sync_dir(void *ctx, const char *path)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.sync_dir(fs, path);
    fprintf(stderr, "simfs #%llu: sync_dir %s -> %d\n", (unsigned long long)fs->calls, path, rc);
    return rc;
}

static int t_list_dir(void *ctx, const char *path, store_io_dirent_cb cb, void *cb_ctx)
{
    simfs *fs = ctx;
    int rc = fs->sim_io.list_dir(fs, path, cb, cb_ctx);
    fprintf(stderr, "simfs #%llu: list_dir %s -> %d\n", (unsigned long long)fs->calls, path, rc);
    return rc;
}

simfs *simfs_create(uint64_t seed, int verbose)
{
    simfs *fs = calloc(1, sizeof *fs);
    if (!fs)
        abort();
    fs->rng = seed * 0x2545F4914F6CDD1Dull + 1;
    fs->verbose = verbose;
    fs->sim_io = (store_io){fs,          s_open,      s_close,  s_pread,  s_pwrite, s_fdatasync,
                            s_ftruncate, s_file_size, s_rename, s_unlink, s_mkdir,  s_sync_dir,
                            s_list_dir,  NULL,        NULL}; /* one process: no directory lock */
    fs->io = fs->sim_io;
    if (verbose > 1)
        fs->io = (store_io){fs,          t_open,      t_close,     t_pread,  t_pwrite,
                            t_fdatasync, t_ftruncate, t_file_size, t_rename, t_unlink,
                            t_mkdir,     t_sync_dir,  t_list_dir,  NULL,     NULL};
    return fs;
}

const store_io *simfs_io(simfs *fs)
{
    return &fs->io;
}

void simfs_set_faults(simfs *fs, const simfs_faults *faults)
{
    fs->faults_on = faults != NULL;
    if (faults)
        fs->faults = *faults;
    fs->pending_err = 0;
}

void simfs_hold(simfs *fs, bool held)
{
    fs->held = held;
}

void simfs_crash_after(simfs *fs, uint64_t after)
{
    fs->crash_at = after ? fs->calls + after : 0;
}

bool simfs_crashed(const simfs *fs)
{
    return fs->crashed;
}

uint64_t simfs_calls(const simfs *fs)
{
    return fs->calls;
}

/* What the disk holds for one file after the crash. */
static void settle(simfs *fs, inode *ino)
{
    size_t lo = ino->dur_len < ino->cur_len ? ino->dur_len : ino->cur_len;
    size_t hi = ino->dur_len < ino->cur_len ? ino->cur_len : ino->dur_len;
    size_t len = hi == lo ? lo : lo + (size_t)(simfs_rand(fs) % (hi - lo + 1));
    uint64_t pick = simfs_rand(fs) % 3;
    if (pick == 0)
        len = ino->dur_len;
    else if (pick == 1)
        len = ino->cur_len;
    inode_reserve(ino, len + 1);
    uint8_t *out = calloc(len + 1, 1);
    memcpy(out, ino->dur, len < ino->dur_len ? len : ino->dur_len);
    for (size_t s = 0; s * SECTOR < len; s++) {
        if (!ino->dirty[s])
            continue;
        size_t from = s * SECTOR, to = from + SECTOR < len ? from + SECTOR : len;
        switch (simfs_rand(fs) % 3) {
        case 0: /* the new data made it */
            for (size_t i = from; i < to; i++)
                out[i] = i < ino->cur_len ? ino->cur[i] : 0;
            break;
        case 1: /* the old data stayed */
            break;
        default: { /* torn: part of the sector is garbage or zeros, but only bytes that were
                    * not durable: disks keep a write from changing bytes outside it
                    * (SQLite's "powersafe overwrite"), so synced bytes sharing the sector
                    * survive. */
            size_t a = from + (size_t)(simfs_rand(fs) % (to - from));
            if (a < ino->dur_len)
                a = ino->dur_len < to ? ino->dur_len : to;
            bool zeros = simfs_rand(fs) % 2;
            for (size_t i = a; i < to; i++)
                out[i] = zeros ? 0 : (uint8_t)simfs_rand(fs);
        }
        }
    }
    memcpy(ino->cur, out, len);
    memcpy(ino->dur, out, len);
    ino->cur_len = ino->dur_len = len;
    memset(ino->dirty, 0, ino->cap / SECTOR + 1);
    free(out);
}

/* The file system's journal reached the disk up to some change: those changes persist,
 * in order and each whole; the later ones are lost. */
static void settle_dirs(simfs *fs)
{
    size_t keep = (size_t)(simfs_rand(fs) % (fs->nops + 1));
    for (size_t i = 0; i < fs->nops; i++) {
        if (i < keep)
            dirop_apply(&fs->dur, &fs->ops[i]);
        dirop_free(&fs->ops[i]);
    }
    if (fs->verbose)
        fprintf(stderr, "simfs: %zu of %zu unsynced directory changes persist\n", keep, fs->nops);
    fs->nops = 0;
}

void simfs_reboot(simfs *fs)
{
    settle_dirs(fs);
    for (size_t i = 0; i < fs->dur.n; i++) {
        inode *ino = fs->dur.e[i].ino;
        bool done = false;
        for (size_t j = 0; j < i; j++)
            done |= fs->dur.e[j].ino == ino;
        if (!done)
            settle(fs, ino);
    }
    for (size_t i = 0; i < fs->cur.n; i++)
        free(fs->cur.e[i].path);
    fs->cur.n = 0;
    for (size_t i = 0; i < fs->dur.n; i++)
        put(&fs->cur, fs->dur.e[i].path, fs->dur.e[i].ino);
    for (size_t i = 0; i < fs->nfds; i++)
        fs->fds[i] = NULL;
    fs->crashed = false;
    fs->crash_at = 0;
    fs->pending_err = 0;
    trace(fs, "REBOOT", "");
}

void simfs_destroy(simfs *fs)
{
    if (!fs)
        return;
    for (inode *ino = fs->all, *next; ino; ino = next) {
        next = ino->next_all;
        free(ino->cur);
        free(ino->dur);
        free(ino->dirty);
        free(ino);
    }
    for (size_t i = 0; i < fs->cur.n; i++)
        free(fs->cur.e[i].path);
    for (size_t i = 0; i < fs->dur.n; i++)
        free(fs->dur.e[i].path);
    for (size_t i = 0; i < fs->nops; i++)
        dirop_free(&fs->ops[i]);
    free(fs->ops);
    free(fs->cur.e);
    free(fs->dur.e);
    for (size_t i = 0; i < fs->ndirs; i++)
        free(fs->dirs[i]);
    free(fs->dirs);
    free(fs->fds);
    free(fs);
}
