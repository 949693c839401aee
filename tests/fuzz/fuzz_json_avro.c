/*
 * fuzz_json_avro.c -- libFuzzer target over JSON-to-Avro (the path every command's body
 * takes). The first byte picks the event type; the rest is the JSON text. Whatever is
 * accepted must decode back to equal JSON, so the fuzzer checks round trips too.
 */
#include "events/events.h"

#include <stdlib.h>
#include <string.h>

static ev_registry *reg;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    sk_error err;
    if (ev_registry_open(SKALD_SOURCE_DIR "/events/schemas", NULL, &reg, &err) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    ev_schema_info info;
    if (ev_registry_at(reg, data[0] % ev_registry_count(reg), &info) != 0)
        abort();
    ev_buf buf = {0};
    uint32_t id = 0;
    sk_error err;
    int rc = ev_payload_from_json_text(reg, info.type, (const char *)data + 1, size - 1, &buf, &id,
                                       &err);
    if (rc == 0) {
        json_t *back = NULL;
        if (ev_payload_to_json(reg, id, buf.data, buf.size, &back, &err) != 0)
            abort(); /* what we encoded must decode */
        json_t *again = NULL;
        ev_buf buf2 = {0};
        if (ev_payload_from_json(reg, info.type, back, &buf2, &id, &err) != 0)
            abort(); /* and re-encode to the same bytes */
        if (buf2.size != buf.size || memcmp(buf2.data, buf.data, buf.size) != 0)
            abort();
        ev_buf_free(&buf2);
        json_decref(again);
        json_decref(back);
    } else if (rc != SK_EBADINPUT) {
        abort();
    }
    ev_buf_free(&buf);
    return 0;
}
