/*
 * source.c -- the workers' default source: the local log, through subscriptions.
 *
 * A worker reads through a proj_source (projections.h) so that a read replica can feed
 * the same workers from a Kafka topic instead; this file is the writer's case, a thin
 * wrapper over store_sub_* with nothing to checkpoint beyond the position.
 */
#include "projections/projections_int.h"

static int log_open(void *ctx, uint64_t position, const char *resume, void **reader, sk_error *err)
{
    (void)resume; /* the position is all the log needs */
    store_sub *sub = NULL;
    int rc = store_sub_open(ctx, position, &sub);
    if (rc)
        return sk_error_set(err, rc, "", "cannot subscribe to the log: %s", sk_strerror(rc));
    *reader = sub;
    return 0;
}

static int log_next(void *reader, ev_event *out, sk_error *err)
{
    return store_sub_next(reader, out, err);
}

static int log_fd(void *reader)
{
    return store_sub_fd(reader);
}

static uint64_t log_position(void *reader)
{
    return store_sub_position(reader);
}

static uint64_t log_head(void *ctx)
{
    return store_log_durable_head(ctx);
}

static void log_close(void *reader)
{
    store_sub_close(reader);
}

void proj_source_log(store_log *log, proj_source *out)
{
    *out = (proj_source){.ctx = log,
                         .open = log_open,
                         .next = log_next,
                         .fd = log_fd,
                         .position = log_position,
                         .checkpoint = NULL,
                         .head = log_head,
                         .close = log_close};
}
