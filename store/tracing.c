/*
 * tracing.c -- the log's span (docs/tracing.md): `log.commit`, one per group commit,
 * linked to the command of each append it carried (the traceparent of the append's
 * first event), with its events, bytes and write and fdatasync times. It is a batch
 * span: recorded when one of its commands is sampled, inside that trace when all its
 * commands share one (trace.h, tr_span_start_batch).
 */
#include "store/store_int.h"

tr_span *store_trace_commit_begin(const store_append_req *reqs, uint32_t appends)
{
    if (!tr_enabled())
        return NULL;
    tr_span *s = tr_span_start_batch("log.commit", TR_KIND_INTERNAL);
    for (const store_append_req *r = reqs; s && r; r = r->next)
        tr_span_link(s, &r->trace);
    tr_span_attr_int(s, "skald.appends", appends);
    return s;
}

void store_trace_commit_end(tr_span *s, size_t events, uint64_t bytes, uint64_t write_ns,
                            uint64_t fsync_ns)
{
    if (!s)
        return;
    tr_span_attr_int(s, "skald.events", (int64_t)events);
    tr_span_attr_int(s, "skald.bytes", (int64_t)bytes);
    tr_span_attr_int(s, "skald.write_us", (int64_t)(write_ns / 1000));
    tr_span_attr_int(s, "skald.fsync_us", (int64_t)(fsync_ns / 1000));
    if (events && !bytes)
        tr_span_set_error(s, "the batch was not written");
    tr_span_end(s);
}
