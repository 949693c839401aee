/*
 * envelope.c -- checks on an event's envelope and its JSON form for the HTTP API and
 * `skaldctl log dump`.
 */
#include "events/events.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Letters and digits, nearly every byte of an id, are answered without the strchr, which
 * costs a call per byte: a command's ids are checked twice (its body, then its events). */
static bool id_byte(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr(EV_ID_CHARS, c) != NULL;
}

int ev_id_check(const char *id, size_t len, size_t *bad_at)
{
    for (size_t i = 0; i < len; i++)
        if (!id_byte(id[i])) {
            *bad_at = i;
            return SK_EBADINPUT;
        }
    if (len == 0) {
        *bad_at = 0;
        return SK_EBADINPUT;
    }
    return 0;
}

int ev_event_check(const ev_event *ev, sk_error *err)
{
    if (ev->stream_id.len == 0 || ev->stream_id.len > EV_STREAM_ID_MAX)
        return sk_error_set(err, SK_EBADINPUT, "stream_id", "stream id must be 1 to %d bytes",
                            EV_STREAM_ID_MAX);
    if (ev->type.len == 0 || ev->type.len > EV_TYPE_MAX)
        return sk_error_set(err, SK_EBADINPUT, "type", "event type must be 1 to %d bytes",
                            EV_TYPE_MAX);
    if (ev->metadata_count > EV_METADATA_MAX)
        return sk_error_set(err, SK_EBADINPUT, "metadata", "at most %d metadata entries",
                            EV_METADATA_MAX);
    for (uint32_t i = 0; i < ev->metadata_count; i++) {
        const ev_metadata_entry *m = &ev->metadata[i];
        if (m->key.len == 0 || m->key.len > EV_METADATA_KEY_MAX)
            return sk_error_set(err, SK_EBADINPUT, "metadata",
                                "metadata keys must be 1 to %d bytes", EV_METADATA_KEY_MAX);
        if (m->value.len > EV_METADATA_VALUE_MAX)
            return sk_error_set(err, SK_EBADINPUT, "metadata",
                                "metadata value of '%.*s' exceeds %d bytes", (int)m->key.len,
                                m->key.ptr, EV_METADATA_VALUE_MAX);
    }
    if (ev->payload_size > EV_PAYLOAD_MAX)
        return sk_error_set(err, SK_EBADINPUT, "payload", "payload exceeds %u bytes",
                            EV_PAYLOAD_MAX);
    return 0;
}

static json_t *str_json(ev_str s)
{
    if (!s.ptr || s.len == 0)
        return json_string("");
    json_t *j = json_stringn(s.ptr ? s.ptr : "", s.len);
    /* Bytes from the log that are not UTF-8 still get shown, escaped as \u00XX. */
    if (!j) {
        char buf[4 * 1024 + 1];
        size_t n = 0;
        for (uint32_t i = 0; i < s.len && n + 4 < sizeof buf; i++) {
            unsigned char c = (unsigned char)s.ptr[i];
            n += (size_t)snprintf(buf + n, sizeof buf - n, c < 0x80 ? "%c" : "\\x%02x", c);
        }
        buf[n] = '\0';
        j = json_string(buf);
    }
    return j;
}

static json_t *uuid_json(const ev_uuid *id)
{
    if (ev_uuid_is_nil(id))
        return json_null();
    char text[EV_UUID_TEXT_SIZE];
    ev_uuid_format(id, text);
    return json_string(text);
}

static json_t *time_json(int64_t us)
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    struct tm tm;
    char buf[64];
    if (!gmtime_r(&secs, &tm))
        return json_null();
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%06ldZ", frac);
    return json_string(buf);
}

json_t *ev_envelope_to_json(const ev_event *ev)
{
    json_t *meta = json_object();
    for (uint32_t i = 0; i < ev->metadata_count; i++) {
        char key[EV_METADATA_KEY_MAX + 1];
        uint32_t n = ev->metadata[i].key.len;
        if (n > EV_METADATA_KEY_MAX)
            n = EV_METADATA_KEY_MAX;
        memcpy(key, ev->metadata[i].key.ptr, n);
        key[n] = '\0';
        json_object_set_new(meta, key, str_json(ev->metadata[i].value));
    }
    return json_pack("{s:o, s:o, s:o, s:I, s:I, s:o, s:I, s:o, s:o, s:I, s:o}", "event_id",
                     uuid_json(&ev->event_id), "stream_id", str_json(ev->stream_id), "type",
                     str_json(ev->type), "version", (json_int_t)ev->version, "position",
                     (json_int_t)ev->position, "occurred_at", time_json(ev->occurred_at),
                     "occurred_at_us", (json_int_t)ev->occurred_at, "command_id",
                     uuid_json(&ev->command_id), "correlation_id", uuid_json(&ev->correlation_id),
                     "schema_id", (json_int_t)ev->schema_id, "metadata", meta);
}
