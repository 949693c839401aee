/*
 * fuzz_cursor.c -- libFuzzer target over the cursor decoder, the one part of the query
 * engine that reads bytes a client chose. The first byte picks the mode:
 *   even: the rest is the cursor text as a client sends it (almost never passes the MAC:
 *         this drives the base64url decoder and the length checks);
 *   odd:  the rest is signed with the fuzzer's secret first, so the JSON checks behind
 *         the MAC (query, fingerprint, key count and types) see arbitrary payloads.
 * Anything the decoder accepts must have the promised shape.
 */
#include "queries/queries_int.h"

#include <string.h>

static const uint8_t secret[QRY_SECRET_SIZE] = {0x5a, 0x1d};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = NULL;
    if (data[0] & 1) {
        if (qry_cursor_seal(secret, data + 1, size - 1, &text) != 0)
            abort();
    } else {
        text = malloc(size);
        if (!text)
            abort();
        memcpy(text, data + 1, size - 1);
        text[size - 1] = 0;
    }
    json_t *keys = NULL;
    sk_error err;
    size_t key_count = (size_t)(data[0] >> 1) % 4;
    int rc = qry_cursor_decode(secret, text, "orders", "fp", key_count, &keys, &err);
    if (rc == 0) {
        if (!json_is_array(keys) || json_array_size(keys) != key_count)
            abort();
        for (size_t i = 0; i < key_count; i++) {
            json_t *v = json_array_get(keys, i);
            if (!json_is_string(v) && !json_is_number(v))
                abort();
        }
    } else if (rc != SK_EBADINPUT || strcmp(err.field, "cursor") != 0) {
        abort();
    }
    json_decref(keys);
    free(text);
    return 0;
}
