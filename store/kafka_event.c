/*
 * kafka_event.c -- one Kafka message of the relay's topic back into an event.
 *
 * The relay (relay.c) writes each event as: key = stream_id; value = 0x00, the schema id
 * as 4 bytes big-endian, the Avro payload; headers = every envelope field as UTF-8 text
 * (docs/kafka.md, "Each message"). This file reverses that, checking every field, so a
 * replica or a restore rebuilds exactly the envelope the log had. The views it fills
 * point into the message: they live as long as the message does.
 */
#include "store/kafka_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_PREFIX "meta."

/* A header value as a NUL-terminated decimal or UUID text, in buf. */
static int header_text(const void *value, size_t size, char *buf, size_t buf_size)
{
    if (!value || size >= buf_size)
        return -1;
    memcpy(buf, value, size);
    buf[size] = '\0';
    return 0;
}

static int parse_u64(const void *value, size_t size, uint64_t *out)
{
    char text[24], *end;
    if (header_text(value, size, text, sizeof text) || !size || text[0] == '-')
        return -1;
    *out = strtoull(text, &end, 10);
    return *end ? -1 : 0;
}

static int parse_i64(const void *value, size_t size, int64_t *out)
{
    char text[24], *end;
    if (header_text(value, size, text, sizeof text) || !size)
        return -1;
    *out = strtoll(text, &end, 10);
    return *end ? -1 : 0;
}

/* An id header: empty means nil (no command, no process). */
static int parse_uuid(const void *value, size_t size, ev_uuid *out)
{
    char text[EV_UUID_TEXT_SIZE];
    if (size == 0) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    if (header_text(value, size, text, sizeof text))
        return -1;
    return ev_uuid_parse(text, out) ? -1 : 0;
}

static ev_str view(const void *value, size_t size)
{
    return (ev_str){value ? value : "", (uint32_t)size};
}

enum { H_EVENT_ID = 1, H_POSITION = 2, H_STREAM = 4, H_VERSION = 8, H_TYPE = 16, H_AT = 32 };
#define H_REQUIRED (H_EVENT_ID | H_POSITION | H_STREAM | H_VERSION | H_TYPE | H_AT)

/* One header into ev; the bit it set, 0 for a header nobody needs, -1 if bad. */
static int take_header(const char *name, const void *value, size_t size, ev_event *ev)
{
    if (strcmp(name, "event_id") == 0)
        return parse_uuid(value, size, &ev->event_id) || !size ? -1 : H_EVENT_ID;
    if (strcmp(name, "position") == 0)
        return parse_u64(value, size, &ev->position) ? -1 : H_POSITION;
    if (strcmp(name, "stream_id") == 0) {
        ev->stream_id = view(value, size);
        return size && size <= EV_STREAM_ID_MAX ? H_STREAM : -1;
    }
    if (strcmp(name, "version") == 0)
        return parse_u64(value, size, &ev->version) || ev->version == 0 ? -1 : H_VERSION;
    if (strcmp(name, "type") == 0) {
        ev->type = view(value, size);
        return size && size <= EV_TYPE_MAX ? H_TYPE : -1;
    }
    if (strcmp(name, "occurred_at") == 0)
        return parse_i64(value, size, &ev->occurred_at) ? -1 : H_AT;
    if (strcmp(name, "command_id") == 0)
        return parse_uuid(value, size, &ev->command_id);
    if (strcmp(name, "correlation_id") == 0)
        return parse_uuid(value, size, &ev->correlation_id);
    if (strncmp(name, META_PREFIX, strlen(META_PREFIX)) == 0) {
        const char *key = name + strlen(META_PREFIX);
        if (ev->metadata_count == EV_METADATA_MAX || !*key || strlen(key) > EV_METADATA_KEY_MAX ||
            size > EV_METADATA_VALUE_MAX)
            return -1;
        ev->metadata[ev->metadata_count].key = ev_str_of(key);
        ev->metadata[ev->metadata_count].value = view(value, size);
        ev->metadata_count++;
    }
    return 0;
}

int store_kafka_event_decode(const rd_kafka_message_t *m, ev_event *out, sk_error *err)
{
    ev_event ev;
    memset(&ev, 0, sizeof ev);
    const uint8_t *v = m->payload;
    if (!v || m->len < 5 || v[0] != 0 || m->len - 5 > EV_PAYLOAD_MAX)
        return sk_error_set(err, SK_ECORRUPT, "value",
                            "partition %" PRId32 " offset %" PRId64
                            ": the value is not Confluent wire format (0x00, schema id, Avro)",
                            m->partition, m->offset);
    ev.schema_id = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
    ev.payload = v + 5;
    ev.payload_size = (uint32_t)(m->len - 5);
    rd_kafka_headers_t *h = NULL;
    int seen = 0;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &value, &size) == 0; i++) {
            int bit = take_header(name, value, size, &ev);
            if (bit < 0)
                return sk_error_set(err, SK_ECORRUPT, name,
                                    "partition %" PRId32 " offset %" PRId64
                                    ": header %s is not valid",
                                    m->partition, m->offset, name);
            seen |= bit;
        }
    }
    if ((seen & H_REQUIRED) != H_REQUIRED)
        return sk_error_set(err, SK_ECORRUPT, "headers",
                            "partition %" PRId32 " offset %" PRId64
                            ": a header of the envelope is missing (event_id, position, "
                            "stream_id, version, type, occurred_at)",
                            m->partition, m->offset);
    *out = ev;
    return 0;
}
