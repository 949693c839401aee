/*
 * recovery.c -- a failed log recovers in place, without a restart.
 *
 * When an fdatasync or a write fails, the log enters FAILED and refuses appends (503;
 * /readyz says why). The main thread's tick calls svc_recovery_tick once a second; while
 * the log is FAILED it runs store_log_recover, which drops every byte not known to be
 * durable and reopens the log through recovery. Readers and subscriptions stay open
 * across it. If the disk still fails, the next try waits twice as long, up to a limit,
 * so a dead disk is not hammered. After a recovery, every cached aggregate is reloaded
 * from the log before its next command: with fsync=interval|never the recovery may have
 * dropped events that were acknowledged but not yet synced.
 */
#include "service/serve_int.h"

#include <stdio.h>
#include <time.h>

#define RECOVERY_BACKOFF_MIN_MS 1000
#define RECOVERY_BACKOFF_MAX_MS 30000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void svc_recovery_tick(svc_app *app, svc_recovery *rec)
{
    store_log_stats st;
    store_log_get_stats(app->log, &st);
    if (st.state != STORE_STATE_FAILED) {
        rec->backoff_ms = 0;
        return;
    }
    uint64_t now = now_ms();
    if (rec->backoff_ms && now < rec->next_try_ms)
        return;
    sk_error err = {0};
    int rc = store_log_recover(app->log, &err);
    if (rc == 0) {
        cmd_bus_invalidate_cache(app->bus);
        rec->backoff_ms = 0;
        svc_log(SK_LOG_NOTICE, "the log recovered in place; appends are accepted again", SVC_END);
        return;
    }
    rec->backoff_ms = rec->backoff_ms ? rec->backoff_ms * 2 : RECOVERY_BACKOFF_MIN_MS;
    if (rec->backoff_ms > RECOVERY_BACKOFF_MAX_MS)
        rec->backoff_ms = RECOVERY_BACKOFF_MAX_MS;
    rec->next_try_ms = now + rec->backoff_ms;
    char wait[32];
    snprintf(wait, sizeof wait, "%u", rec->backoff_ms);
    svc_log(SK_LOG_ERROR, "the log could not recover; trying again later", "error",
            err.message[0] ? err.message : sk_strerror(rc), "retry_in_ms", wait, SVC_END);
}
