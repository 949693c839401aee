/*
 * io.c -- the I/O seam: every file operation of store/ goes through a store_io.
 *
 * store_io_posix() is the real thing. Tests and the storage-fault simulation supply their
 * own store_io to inject short writes, EIO, ENOSPC, torn writes and crashes. The helpers
 * below (write-all, read-full, atomic file replacement) are written once, over the seam,
 * so that the retry and sync rules are the same for segments, indexes and checkpoints.
 */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int posix_open(void *ctx, const char *path, int flags, int mode)
{
    int fd = open(path, flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
}

static int posix_close(void *ctx, int fd)
{
    return close(fd) < 0 ? -errno : 0;
}

static ssize_t posix_pread(void *ctx, int fd, void *buf, size_t size, uint64_t offset)
{
    ssize_t n;
    do {
        n = pread(fd, buf, size, (off_t)offset);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t posix_pwrite(void *ctx, int fd, const void *buf, size_t size, uint64_t offset)
{
    ssize_t n;
    do {
        n = pwrite(fd, buf, size, (off_t)offset);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static int posix_fdatasync(void *ctx, int fd)
{
    return fdatasync(fd) < 0 ? -errno : 0;
}

static int posix_ftruncate(void *ctx, int fd, uint64_t size)
{
    return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}

static int posix_file_size(void *ctx, int fd, uint64_t *size_out)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *size_out = (uint64_t)st.st_size;
    return 0;
}

static int posix_rename(void *ctx, const char *from, const char *to)
{
    return rename(from, to) < 0 ? -errno : 0;
}

static int posix_unlink(void *ctx, const char *path)
{
    return unlink(path) < 0 ? -errno : 0;
}

static int posix_mkdir(void *ctx, const char *path, int mode)
{
    return mkdir(path, (mode_t)mode) < 0 ? -errno : 0;
}

static int posix_sync_dir(void *ctx, const char *path)
{
    return ev_fsync_dir(path);
}

static int posix_list_dir(void *ctx, const char *path, store_io_dirent_cb cb, void *cb_ctx)
{
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (cb(cb_ctx, e->d_name) != 0)
            break;
    }
    closedir(d);
    return rc;
}

/* An advisory flock on <dir>/LOCK: released by the kernel when the process dies, so a
 * crash never leaves a stale lock behind. */
static int posix_lock_dir(void *ctx, const char *path)
{
    char lock[4096];
    snprintf(lock, sizeof lock, "%s/LOCK", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int rc = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static void posix_unlock_dir(void *ctx, int handle)
{
    if (handle >= 0)
        close(handle); /* closing the descriptor releases the flock */
}

static const store_io posix_io = {
    .ctx = NULL,
    .open = posix_open,
    .close = posix_close,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .fdatasync = posix_fdatasync,
    .ftruncate = posix_ftruncate,
    .file_size = posix_file_size,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .mkdir = posix_mkdir,
    .sync_dir = posix_sync_dir,
    .list_dir = posix_list_dir,
    .lock_dir = posix_lock_dir,
    .unlock_dir = posix_unlock_dir,
};

const store_io *store_io_posix(void)
{
    return &posix_io;
}

int store_io_write_all(const store_io *io, int fd, const void *buf, size_t size, uint64_t offset,
                       size_t *written_out)
{
    const uint8_t *p = buf;
    size_t done = 0;
    int rc = 0;
    /* A zero-byte write would loop forever; treat it like ENOSPC, as the kernel does. */
    while (done < size) {
        ssize_t n = io->pwrite(io->ctx, fd, p + done, size - done, offset + done);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n == 0) {
            rc = -ENOSPC;
            break;
        }
        done += (size_t)n;
    }
    if (written_out)
        *written_out = done;
    return rc;
}

ssize_t store_io_read_full(const store_io *io, int fd, void *buf, size_t size, uint64_t offset)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < size) {
        ssize_t n = io->pread(io->ctx, fd, p + done, size - done, offset + done);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int store_io_write_file_atomic(const store_io *io, const char *dir, const char *name,
                               const void *data, size_t size)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = io->open(io->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fd;
    int rc = store_io_write_all(io, fd, data, size, 0, NULL);
    if (rc == 0)
        rc = io->fdatasync(io->ctx, fd);
    int crc = io->close(io->ctx, fd);
    if (rc == 0)
        rc = crc;
    if (rc == 0)
        rc = io->rename(io->ctx, tmp, path);
    if (rc == 0)
        rc = io->sync_dir(io->ctx, dir);
    if (rc != 0)
        io->unlink(io->ctx, tmp);
    return rc;
}

int store_io_read_file(const store_io *io, const char *path, size_t max_size, uint8_t **out,
                       size_t *size_out)
{
    int fd = io->open(io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    uint64_t size = 0;
    int rc = io->file_size(io->ctx, fd, &size);
    uint8_t *buf = NULL;
    if (rc == 0 && size > max_size)
        rc = SK_ETOOBIG;
    if (rc == 0) {
        buf = malloc(size ? size : 1);
        if (!buf)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        ssize_t n = store_io_read_full(io, fd, buf, size, 0);
        if (n < 0)
            rc = (int)n;
        else if ((uint64_t)n != size)
            rc = SK_ECORRUPT;
    }
    io->close(io->ctx, fd);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *size_out = size;
    return 0;
}
