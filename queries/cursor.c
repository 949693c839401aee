/*
 * cursor.c -- the opaque `cursor` a page hands back to continue after its last row.
 *
 * Format: base64url without padding (RFC 4648, section 5) of
 *     JSON || TAG
 * where JSON is {"q": query name, "k": [the @order values of the last row], "f": the
 * fingerprint of the call's declared parameter values (params.c)} and TAG is the first
 * QRY_MAC_SIZE bytes of HMAC-SHA-256(secret, "skald-cursor-v1\0" || JSON).
 *
 * Why a MAC: a client can only hand back what the engine made, so a cursor never carries
 * key values of the wrong type or count into the keyset condition, and a cursor of one
 * query (or of other filter values) never continues another. Every failure to decode is
 * SK_EBADINPUT naming `cursor`; the decoder reads only the text it is given and allocates
 * at most QRY_CURSOR_MAX bytes (tests/fuzz/fuzz_cursor.c drives it).
 */
#include "queries/queries_int.h"

#include <errno.h>
#include <string.h>

static const char domain[] = "skald-cursor-v1"; /* with its NUL */
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void tag_of(const uint8_t secret[QRY_SECRET_SIZE], const uint8_t *data, size_t size,
                   uint8_t tag[32])
{
    /* HMAC over domain || data without copying: the inner hash takes both pieces. */
    uint8_t pad[64], inner[32];
    qry_sha256 s;
    memset(pad, 0x36, sizeof pad);
    for (int i = 0; i < QRY_SECRET_SIZE; i++)
        pad[i] ^= secret[i];
    qry_sha256_init(&s);
    qry_sha256_update(&s, pad, sizeof pad);
    qry_sha256_update(&s, domain, sizeof domain);
    qry_sha256_update(&s, data, size);
    qry_sha256_final(&s, inner);
    memset(pad, 0x5c, sizeof pad);
    for (int i = 0; i < QRY_SECRET_SIZE; i++)
        pad[i] ^= secret[i];
    qry_sha256_init(&s);
    qry_sha256_update(&s, pad, sizeof pad);
    qry_sha256_update(&s, inner, sizeof inner);
    qry_sha256_final(&s, tag);
}

int qry_cursor_seal(const uint8_t secret[QRY_SECRET_SIZE], const void *payload, size_t size,
                    char **out)
{
    QRY_ASSERT(secret && out);
    size_t total = size + QRY_MAC_SIZE;
    uint8_t *raw = malloc(total);
    char *text = malloc((total + 2) / 3 * 4 + 1);
    if (!raw || !text) {
        free(raw);
        free(text);
        return -ENOMEM;
    }
    if (size)
        memcpy(raw, payload, size);
    uint8_t tag[32];
    tag_of(secret, payload, size, tag);
    memcpy(raw + size, tag, QRY_MAC_SIZE);
    size_t o = 0;
    for (size_t i = 0; i < total; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16;
        if (i + 1 < total)
            v |= (uint32_t)raw[i + 1] << 8;
        if (i + 2 < total)
            v |= raw[i + 2];
        text[o++] = b64[v >> 18];
        text[o++] = b64[(v >> 12) & 63];
        if (i + 1 < total)
            text[o++] = b64[(v >> 6) & 63];
        if (i + 2 < total)
            text[o++] = b64[v & 63];
    }
    text[o] = 0;
    free(raw);
    *out = text;
    return 0;
}

int qry_cursor_encode(const uint8_t secret[QRY_SECRET_SIZE], const char *query,
                      const char *fingerprint, json_t *keys, char **out)
{
    QRY_ASSERT(query && fingerprint && json_is_array(keys));
    json_t *obj = json_pack("{s:s, s:O, s:s}", "q", query, "k", keys, "f", fingerprint);
    char *json = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!json)
        return -ENOMEM;
    int rc = qry_cursor_seal(secret, json, strlen(json), out);
    free(json);
    return rc;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict base64url without padding: the alphabet only, no stray length, zero spare bits
 * (so each byte string has exactly one text). 0 or -1. */
static int b64_decode(const char *text, size_t len, uint8_t *out, size_t *size_out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(text[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1;
    *size_out = o;
    return 0;
}

static int refuse(sk_error *err, const char *query, const char *why)
{
    return sk_error_set(err, SK_EBADINPUT, "cursor",
                        "cursor is not a cursor of this call of "
                        "query '%s' (%s); start again without it",
                        query, why);
}

int qry_cursor_decode(const uint8_t secret[QRY_SECRET_SIZE], const char *text, const char *query,
                      const char *fingerprint, size_t key_count, json_t **keys_out, sk_error *err)
{
    QRY_ASSERT(secret && text && query && fingerprint && keys_out);
    size_t len = strnlen(text, QRY_CURSOR_MAX + 1);
    if (len == 0 || len > QRY_CURSOR_MAX)
        return refuse(err, query, "bad length");
    uint8_t *raw = malloc(len * 3 / 4 + 1);
    if (!raw)
        return sk_error_set(err, -ENOMEM, "", "out of memory");
    size_t size = 0;
    int rc = 0;
    json_t *obj = NULL;
    if (b64_decode(text, len, raw, &size) != 0) {
        rc = refuse(err, query, "not base64url");
        goto fail;
    }
    if (size < QRY_MAC_SIZE + 2) {
        rc = refuse(err, query, "too short");
        goto fail;
    }
    size -= QRY_MAC_SIZE;
    uint8_t tag[32], diff = 0;
    tag_of(secret, raw, size, tag);
    for (int i = 0; i < QRY_MAC_SIZE; i++) /* constant time */
        diff |= (uint8_t)(tag[i] ^ raw[size + i]);
    if (diff) {
        rc = refuse(err, query, "its signature does not match");
        goto fail;
    }
    json_error_t jerr;
    obj = json_loadb((const char *)raw, size, JSON_REJECT_DUPLICATES, &jerr);
    json_t *q = json_object_get(obj, "q"), *f = json_object_get(obj, "f");
    json_t *k = json_object_get(obj, "k");
    if (!json_is_object(obj) || !json_is_string(q) || !json_is_string(f) || !json_is_array(k)) {
        rc = refuse(err, query, "malformed");
        goto fail;
    }
    if (strcmp(json_string_value(q), query) != 0) {
        rc = refuse(err, query, "it belongs to another query");
        goto fail;
    }
    if (strcmp(json_string_value(f), fingerprint) != 0) {
        rc = refuse(err, query, "it was made with other parameter values");
        goto fail;
    }
    if (json_array_size(k) != key_count) {
        rc = refuse(err, query, "wrong number of keys");
        goto fail;
    }
    for (size_t i = 0; i < key_count; i++) {
        json_t *v = json_array_get(k, i);
        if (!json_is_string(v) && !json_is_integer(v) && !json_is_real(v)) {
            rc = refuse(err, query, "a key of the wrong type");
            goto fail;
        }
    }
    *keys_out = json_incref(k);
fail:
    json_decref(obj);
    free(raw);
    return rc;
}
