/*
 * faults.c -- storage faults injected into a running `skald serve`, for tests.
 *
 * With SKALD_FAULT_FILE=PATH in its environment, `skald serve` opens its log through
 * this wrapper of the real I/O seam. Before each fdatasync and each pwrite the wrapper
 * looks for PATH, reads it and removes it. Each line of it is one fault:
 *
 *   fdatasync-eio N     the next N fdatasync calls fail with EIO (added to any left)
 *   enospc N            the next N pwrite calls fail with ENOSPC, as on a full disk
 *                       (sets the count: "enospc 0" frees the disk again)
 *   fdatasync-sleep MS  the next fdatasync takes MS milliseconds longer (a slow disk:
 *                       keeps a command in flight, e.g. across a SIGTERM)
 *
 * This is how the integration tests make the log fail, fill up and recover in the real
 * binary. Without the variable the wrapper is never used, so production I/O takes no
 * detour.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static store_io faulty_io;
static const char *fault_file;
static atomic_int fdatasync_failures, pwrite_enospc, fdatasync_sleep_ms;

/* Reads and removes the control file, if there is one. */
static void read_fault_file(void)
{
    FILE *f = fopen(fault_file, "r");
    if (!f)
        return;
    char kind[32];
    int n = 0;
    while (fscanf(f, "%31s %d", kind, &n) == 2) {
        if (strcmp(kind, "fdatasync-eio") == 0 && n > 0)
            atomic_fetch_add(&fdatasync_failures, n);
        else if (strcmp(kind, "enospc") == 0 && n >= 0)
            atomic_store(&pwrite_enospc, n);
        else if (strcmp(kind, "fdatasync-sleep") == 0 && n > 0)
            atomic_store(&fdatasync_sleep_ms, n);
    }
    fclose(f);
    unlink(fault_file);
}

/* Takes one from *counter if it is above 0; 1 if it did. */
static int take_one(atomic_int *counter)
{
    int left = atomic_load(counter);
    while (left > 0 && !atomic_compare_exchange_weak(counter, &left, left - 1)) {
    }
    return left > 0;
}

static int faulty_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    read_fault_file();
    int ms = atomic_exchange(&fdatasync_sleep_ms, 0);
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    if (take_one(&fdatasync_failures))
        return -EIO;
    return store_io_posix()->fdatasync(NULL, fd);
}

static ssize_t faulty_pwrite(void *ctx, int fd, const void *buf, size_t size, uint64_t offset)
{
    (void)ctx;
    read_fault_file();
    if (take_one(&pwrite_enospc))
        return -ENOSPC;
    return store_io_posix()->pwrite(NULL, fd, buf, size, offset);
}

const store_io *svc_faults_io(void)
{
    fault_file = getenv("SKALD_FAULT_FILE");
    if (!fault_file || !fault_file[0])
        return NULL;
    faulty_io = *store_io_posix();
    faulty_io.fdatasync = faulty_fdatasync;
    faulty_io.pwrite = faulty_pwrite;
    return &faulty_io;
}
