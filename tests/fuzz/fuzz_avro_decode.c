/*
 * fuzz_avro_decode.c -- libFuzzer target over the Avro decoder: arbitrary bytes as the
 * payload of each schema. The bounds check must stop anything avro-c would mishandle
 * (huge lengths, truncation, bad indexes) before it reaches avro-c: no crash, no leak,
 * no large allocation.
 */
#include "events/events.h"

#include <stdlib.h>

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
    json_t *out = NULL;
    sk_error err;
    int rc = ev_payload_to_json(reg, info.id, data + 1, size - 1, &out, &err);
    if (rc == 0)
        json_decref(out);
    else if (rc != SK_ECORRUPT)
        abort();
    return 0;
}
