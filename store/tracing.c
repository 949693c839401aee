/*
 * tracing.c -- the log's span (docs/tracing.md): `log.commit`, one per group commit,
 * linked to the command of each append it carried (the traceparent of the append's
 * first event), with its events, bytes and write and fdatasync times. It is a batch
 * span: recorded when one of its commands is sampled, inside that trace when all its
 * commands share one (trace.h, tr_span_start_batch). And `relay.publish`, one per event the
 * Kafka relay hands to the producer, ended by the broker's delivery report, with the
 * OpenTelemetry messaging attributes.
 */
#include "store/store_int.h"

#include <stdio.h>

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

tr_span *store_trace_publish_begin(const ev_event *ev, const char *topic)
{
    if (!tr_enabled())
        return NULL;
    tr_ctx parent = tr_ctx_of_event(ev);
    tr_span *s = tr_span_start("relay.publish", TR_KIND_PRODUCER, &parent);
    if (!s)
        return NULL;
    tr_span_link(s, &parent);
    char key[EV_STREAM_ID_MAX + 1];
    snprintf(key, sizeof key, "%.*s", (int)ev->stream_id.len, ev->stream_id.ptr);
    tr_span_attr_str(s, "messaging.system", "kafka");
    tr_span_attr_str(s, "messaging.operation.type", "send");
    tr_span_attr_str(s, "messaging.operation.name", "send");
    tr_span_attr_str(s, "messaging.destination.name", topic);
    tr_span_attr_str(s, "messaging.kafka.message.key", key);
    tr_span_attr_int(s, "skald.log.position", (int64_t)ev->position);
    return s;
}

void store_trace_publish_end(tr_span **s, const char *error, int32_t partition, int64_t offset)
{
    if (!*s)
        return;
    if (error) {
        tr_span_set_error(*s, error);
    } else {
        tr_span_attr_int(*s, "messaging.destination.partition.id", partition);
        tr_span_attr_int(*s, "messaging.kafka.offset", offset);
    }
    tr_span_end(*s);
    *s = NULL;
}
