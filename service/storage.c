/*
 * storage.c -- a full disk, reported as what it is.
 *
 * An append that meets ENOSPC (or EDQUOT, EFBIG) fails only its own batch: the log cuts
 * the file back and stays writable (docs/log-format.md), so neither its state nor
 * skald_log_failed changes, and before this file clients saw a bare 503 `unavailable`
 * while /readyz said 200. Now every such failure is counted and stamped; the command gets
 * 503 `storage_full` with Retry-After, and /readyz answers 503 `storage_full` (and the
 * gauge skald_storage_full is 1) from the failure until an append succeeds again, or
 * until STORAGE_FULL_HOLD_US passed without another one. The hold is what lets a
 * process nobody sends commands to (a balancer took it out on the first 503) become
 * ready again once space is freed: the next command then finds out.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORAGE_FULL_HOLD_US (10 * 1000000LL)

int svc_storage_error(int status)
{
    return status == -ENOSPC || status == -EDQUOT || status == -EFBIG;
}

void svc_storage_note(svc_app *app, int status, uint32_t events)
{
    if (svc_storage_error(status)) {
        atomic_store(&app->storage_error, status);
        atomic_store(&app->storage_full_us, ev_now_us());
        atomic_fetch_add(&app->storage_full_total, 1);
    } else if (status == 0 && events > 0 && atomic_load(&app->storage_full_us) != 0) {
        atomic_store(&app->storage_full_us, 0); /* something was written: there is room */
    }
}

int svc_storage_full(svc_app *app, char *why, size_t size)
{
    int64_t at = atomic_load(&app->storage_full_us);
    if (at == 0)
        return 0;
    int64_t ago = ev_now_us() - at;
    if (ago >= STORAGE_FULL_HOLD_US)
        return 0;
    snprintf(why, size,
             "the disk is full: an append failed with %s %.1f s ago (the log cut it back and "
             "stays writable); free space under the data directory",
             sk_strerror(atomic_load(&app->storage_error)), (double)ago / 1e6);
    return 1;
}

char *svc_metrics_storage(svc_app *app, char *text)
{
    if (!text)
        return NULL;
    char why[256];
    return svc_metrics_append(
        text,
        "# HELP skald_storage_full 1 while appends fail because the disk is full.\n"
        "# TYPE skald_storage_full gauge\n"
        "skald_storage_full %d\n"
        "# HELP skald_storage_full_total Appends that failed because the disk was "
        "full.\n"
        "# TYPE skald_storage_full_total counter\n"
        "skald_storage_full_total %llu\n",
        svc_storage_full(app, why, sizeof why),
        (unsigned long long)atomic_load(&app->storage_full_total));
}
