/*
 * faults.c -- storage faults injected into a running `skald serve`, for tests.
 *
 * With SKALD_FAULT_FILE=PATH in its environment, `skald serve` opens its log through
 * this wrapper of the real I/O seam. Before each fdatasync the wrapper looks for PATH; a
 * file there holding "fdatasync-eio N" makes the next N fdatasync calls fail with EIO,
 * and is removed once read. This is how the integration tests make the log fail and
 * watch it recover in place (recovery.c) in the real binary. Without the variable the
 * wrapper is never used, so production I/O takes no detour.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static store_io faulty_io;
static const char *fault_file;
static atomic_int fdatasync_failures;

/* Reads and removes the control file, if there is one. */
static void read_fault_file(void)
{
    FILE *f = fopen(fault_file, "r");
    if (!f)
        return;
    int n = 0;
    if (fscanf(f, "fdatasync-eio %d", &n) == 1 && n > 0)
        atomic_fetch_add(&fdatasync_failures, n);
    fclose(f);
    unlink(fault_file);
}

static int faulty_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    read_fault_file();
    int left = atomic_load(&fdatasync_failures);
    while (left > 0 && !atomic_compare_exchange_weak(&fdatasync_failures, &left, left - 1)) {
    }
    if (left > 0)
        return -EIO;
    return store_io_posix()->fdatasync(NULL, fd);
}

const store_io *svc_faults_io(void)
{
    fault_file = getenv("SKALD_FAULT_FILE");
    if (!fault_file || !fault_file[0])
        return NULL;
    faulty_io = *store_io_posix();
    faulty_io.fdatasync = faulty_fdatasync;
    return &faulty_io;
}
