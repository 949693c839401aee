/*
 * tracing.c -- the bus's spans (docs/tracing.md): `command.decide` (loading the
 * aggregate and deciding, a child of the context the command came with) and
 * `command.append` (from queueing the events to their durable acknowledgement: the wait
 * for the group commit). The events carry the decide span's context in their metadata,
 * so the group commit, the projections, the relay and the sagas link to or continue
 * from the decision that made them.
 *
 * One command is decided at a time per thread, under its stripe lock, so the decision's
 * span lives in thread-local storage from cmd_trace_begin to cmd_trace_finish; the bus
 * passes nothing extra through its functions.
 */
#include "commands/commands_int.h"

#include <string.h>

static _Thread_local struct {
    tr_span *decide; /* open until decided (or finished without a decision) */
    tr_ctx ctx;      /* the decision's context, for the events and the wait span */
    char traceparent[TR_TRACEPARENT_SIZE];
} cur;

static tr_ctx ctx_of(const cmd_context *ctx)
{
    tr_ctx c = {0};
    for (uint32_t i = 0; ctx && i < ctx->metadata_count; i++) {
        if (!ev_str_eq(ctx->metadata[i].key, EV_META_TRACEPARENT))
            continue;
        ev_event probe = {.metadata_count = 1};
        probe.metadata[0] = ctx->metadata[i];
        c = tr_ctx_of_event(&probe);
    }
    return c;
}

void cmd_trace_begin(const cmd_context *ctx, const char *command)
{
    cur.decide = NULL;
    cur.ctx = (tr_ctx){0};
    if (!tr_enabled())
        return;
    tr_ctx parent = ctx_of(ctx);
    cur.decide = tr_span_start("command.decide", TR_KIND_INTERNAL, &parent);
    if (!cur.decide)
        return;
    cur.ctx = tr_span_ctx(cur.decide);
    tr_ctx_format(&cur.ctx, cur.traceparent);
    tr_span_attr_str(cur.decide, "skald.command.type", command);
}

void cmd_trace_decided(const char *stream_id, int rc, const cmd_result *decision)
{
    if (!cur.decide)
        return;
    tr_span_attr_str(cur.decide, "skald.stream_id", stream_id);
    const char *outcome = rc                   ? "error"
                          : decision->rejected ? "rejected"
                          : decision->count    ? "accepted"
                                               : "unchanged";
    tr_span_attr_str(cur.decide, "skald.command.outcome", outcome);
    if (rc == 0 && decision->rejected)
        tr_span_attr_str(cur.decide, "skald.command.reason", decision->reason);
    if (rc == 0)
        tr_span_attr_int(cur.decide, "skald.events", (int64_t)decision->count);
    tr_span_end(cur.decide);
    cur.decide = NULL;
}

void cmd_trace_finish(const cmd_outcome *out)
{
    if (cur.decide) { /* refused before deciding: a conflict, a stream that would not load */
        if (out) {
            tr_span_attr_str(cur.decide, "skald.stream_id", out->stream_id);
            tr_span_attr_str(cur.decide, "skald.command.outcome",
                             out->status == SK_ECONFLICT ? "conflict" : "error");
        }
        tr_span_end(cur.decide);
    }
    cur.decide = NULL;
    cur.ctx = (tr_ctx){0};
}

void cmd_trace_meta(ev_event *ev)
{
    if (!cur.ctx.valid)
        return;
    for (uint32_t m = 0; m < ev->metadata_count; m++)
        if (ev_str_eq(ev->metadata[m].key, EV_META_TRACEPARENT)) {
            ev->metadata[m].value = ev_str_of(cur.traceparent);
            return;
        }
    if (ev->metadata_count < EV_METADATA_MAX)
        ev->metadata[ev->metadata_count++] =
            (ev_metadata_entry){ev_str_of(EV_META_TRACEPARENT), ev_str_of(cur.traceparent)};
}

tr_span *cmd_trace_wait_begin(const char *stream_id, size_t events)
{
    if (!cur.ctx.valid)
        return NULL;
    tr_span *s = tr_span_start("command.append", TR_KIND_INTERNAL, &cur.ctx);
    tr_span_attr_str(s, "skald.stream_id", stream_id);
    tr_span_attr_int(s, "skald.events", (int64_t)events);
    return s;
}

void cmd_trace_wait_end(tr_span *s, int status, uint64_t first_position)
{
    if (!s)
        return;
    if (status)
        tr_span_set_error(s, sk_strerror(status));
    else
        tr_span_attr_int(s, "skald.log.position", (int64_t)first_position);
    tr_span_end(s);
}
