/*
 * test_events_json.c -- JSON -> Avro -> JSON: every domain schema round-trips, malformed
 * input is refused with the field at fault named, and the bounds check stops hostile
 * binary before avro-c.
 */
#include "events/events.h"
#include "testutil.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const char *probe_schema =
    "{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"skald.test\",\"fields\":["
    "{\"name\":\"id\",\"type\":{\"type\":\"string\",\"maxLength\":8}},"
    "{\"name\":\"count\",\"type\":\"int\"},"
    "{\"name\":\"total\",\"type\":\"long\"},"
    "{\"name\":\"ratio\",\"type\":\"double\"},"
    "{\"name\":\"flag\",\"type\":\"boolean\"},"
    "{\"name\":\"color\",\"type\":{\"type\":\"enum\",\"name\":\"Color\",\"symbols\":[\"RED\","
    "\"GREEN\"]}},"
    "{\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"long\"}},"
    "{\"name\":\"items\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","
    "\"name\":\"Item\",\"fields\":[{\"name\":\"sku\",\"type\":\"string\"},{\"name\":\"qty\","
    "\"type\":\"long\"}]}}},"
    "{\"name\":\"nothing\",\"type\":{\"type\":\"array\",\"items\":\"null\"},\"default\":[]}"
    "]}";

static const char *good_probe =
    "{\"id\":\"p1\",\"count\":3,\"total\":9000000000,\"ratio\":0.5,\"flag\":true,"
    "\"color\":\"RED\",\"note\":\"hi\",\"tags\":{\"a\":1},\"items\":[{\"sku\":\"s\",\"qty\":1}]}";

typedef tu_fixture fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    tu_write(f->dir, "Probe.avsc", probe_schema);
    char domain[4096];
    snprintf(domain, sizeof domain, "%s/events/schemas", tu_source_dir());
    sk_error err;
    /* The probe schema and the domain schemas in one registry: copy the domain files. */
    const char *types[] = {"ProductRegistered", "ProductRestocked", "StockReserved",
                           "StockReleased",     "StockCommitted",   "CustomerOpened",
                           "PaymentAuthorized", "PaymentRefunded",  "OrderPlaced",
                           "OrderConfirmed",    "OrderCancelled"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char src[4200], text[16384];
        snprintf(src, sizeof src, "%s/%s.avsc", domain, types[i]);
        FILE *in = fopen(src, "r");
        assert_non_null(in);
        size_t n = fread(text, 1, sizeof text - 1, in);
        fclose(in);
        text[n] = '\0';
        char name[256];
        snprintf(name, sizeof name, "%s.avsc", types[i]);
        tu_write(f->dir, name, text);
    }
    assert_int_equal(ev_registry_open(f->dir, NULL, &f->reg, &err), 0);
    *state = f;
    return 0;
}

/* Encodes text as type; returns the code and leaves err for the caller to check. */
static int encode(fixture *f, const char *type, const char *text, size_t len, sk_error *err)
{
    ev_buf buf = {0};
    uint32_t id = 0;
    sk_error_clear(err);
    int rc = ev_payload_from_json_text(f->reg, type, text, len, &buf, &id, err);
    if (rc != 0)
        assert_int_equal(buf.size, 0);
    ev_buf_free(&buf);
    return rc;
}

static void test_round_trip_domain(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *type, *json;
    } cases[] = {
        {"ProductRegistered", "{\"sku\":\"s-1\",\"name\":\"Kettle\",\"price_cents\":2599}"},
        {"ProductRestocked", "{\"sku\":\"s-1\",\"quantity\":40}"},
        {"StockReserved", "{\"sku\":\"s-1\",\"order_id\":\"o-1\",\"quantity\":2}"},
        {"StockReleased", "{\"sku\":\"s-1\",\"order_id\":\"o-1\",\"quantity\":2}"},
        {"StockCommitted", "{\"sku\":\"s-1\",\"order_id\":\"o-1\",\"quantity\":2}"},
        {"CustomerOpened", "{\"customer_id\":\"c-1\",\"name\":\"Ada\",\"credit_limit_cents\":0}"},
        {"PaymentAuthorized", "{\"customer_id\":\"c-1\",\"order_id\":\"o-1\",\"amount_cents\":5}"},
        {"PaymentRefunded", "{\"customer_id\":\"c-1\",\"order_id\":\"o-1\",\"amount_cents\":5}"},
        {"OrderPlaced", "{\"order_id\":\"o-1\",\"customer_id\":\"c-1\",\"lines\":[{\"sku\":\"s-1\","
                        "\"quantity\":2,\"unit_price_cents\":2599},{\"sku\":\"s-2\",\"quantity\":1,"
                        "\"unit_price_cents\":-0}],\"total_cents\":5198}"},
        {"OrderConfirmed", "{\"order_id\":\"o-1\"}"},
        {"OrderCancelled", "{\"order_id\":\"o-1\",\"reason\":\"payment declined: caf\xc3\xa9\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *in = json_loads(cases[i].json, 0, NULL);
        assert_non_null(in);
        ev_buf buf = {0};
        uint32_t id = 0, latest = 0;
        sk_error err;
        assert_int_equal(ev_payload_from_json(f->reg, cases[i].type, in, &buf, &id, &err), 0);
        assert_int_equal(ev_registry_latest(f->reg, cases[i].type, &latest), 0);
        assert_int_equal(id, latest);
        json_t *out = NULL;
        assert_int_equal(ev_payload_to_json(f->reg, id, buf.data, buf.size, &out, &err), 0);
        if (!json_equal(in, out)) {
            char *a = json_dumps(in, JSON_SORT_KEYS), *b = json_dumps(out, JSON_SORT_KEYS);
            fail_msg("%s: %s != %s", cases[i].type, a, b);
        }
        json_decref(in);
        json_decref(out);
        ev_buf_free(&buf);
    }
}

static void test_probe_round_trip_and_defaults(void **state)
{
    fixture *f = *state;
    sk_error err;
    ev_buf buf = {0};
    uint32_t id;
    assert_int_equal(
        ev_payload_from_json_text(f->reg, "Probe", good_probe, strlen(good_probe), &buf, &id, &err),
        0);
    json_t *out = NULL;
    assert_int_equal(ev_payload_to_json(f->reg, id, buf.data, buf.size, &out, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "total")), 9000000000LL);
    assert_string_equal(json_string_value(json_object_get(out, "note")), "hi");
    assert_true(json_is_array(json_object_get(out, "nothing"))); /* default [] applied */
    json_decref(out);
    ev_buf_free(&buf);
    /* A missing union field with a null default becomes null. */
    const char *no_note = "{\"id\":\"p1\",\"count\":3,\"total\":1,\"ratio\":1,\"flag\":false,"
                          "\"color\":\"GREEN\",\"tags\":{},\"items\":[]}";
    assert_int_equal(
        ev_payload_from_json_text(f->reg, "Probe", no_note, strlen(no_note), &buf, &id, &err), 0);
    assert_int_equal(ev_payload_to_json(f->reg, id, buf.data, buf.size, &out, &err), 0);
    assert_true(json_is_null(json_object_get(out, "note")));
    json_decref(out);
    ev_buf_free(&buf);
}

/* Replaces the value of `key` in the good probe document with `value` (raw JSON), or
 * removes the key when value is NULL, and returns the text. */
static char *probe_with(const char *key, const char *value)
{
    json_t *j = json_loads(good_probe, 0, NULL);
    if (value)
        json_object_set_new(j, key, json_loads(value, JSON_DECODE_ANY, NULL));
    else
        json_object_del(j, key);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static void expect_field(fixture *f, const char *type, const char *text, size_t len,
                         const char *field, const char *words)
{
    sk_error err;
    int rc = encode(f, type, text, len, &err);
    if (rc != SK_EBADINPUT || strcmp(err.field, field) != 0 || !strstr(err.message, words))
        fail_msg("input %.*s: want field '%s' with '%s', got rc %d field '%s': %s", (int)len, text,
                 field, words, rc, err.field, err.message);
    /* The check-only walk that validates commands refuses it the same way. */
    json_t *j = json_loadb(text, len, 0, NULL);
    if (!j)
        return;
    sk_error check;
    sk_error_clear(&check);
    int check_rc = ev_payload_check_json(f->reg, type, j, &check);
    json_decref(j);
    if (check_rc != rc || strcmp(check.field, err.field) != 0 ||
        strcmp(check.message, err.message) != 0)
        fail_msg("input %.*s: the check says rc %d field '%s': %s", (int)len, text, check_rc,
                 check.field, check.message);
}

static void expect_probe(fixture *f, const char *key, const char *value, const char *field,
                         const char *words)
{
    char *text = probe_with(key, value);
    expect_field(f, "Probe", text, strlen(text), field, words);
    free(text);
}

static void test_malformed_payloads_name_the_field(void **state)
{
    fixture *f = *state;
    /* 1-17: one thing wrong each, in a field the schema declares. */
    expect_probe(f, "id", NULL, "id", "missing required field");
    expect_probe(f, "count", "\"3\"", "count", "expected an integer");
    expect_probe(f, "count", "3000000000", "count", "out of range for int");
    expect_probe(f, "count", "-2147483649", "count", "out of range for int");
    expect_probe(f, "total", "1.5", "total", "expected an integer");
    expect_probe(f, "total", "null", "total", "expected an integer");
    expect_probe(f, "ratio", "\"x\"", "ratio", "expected a number");
    expect_probe(f, "flag", "1", "flag", "expected a boolean");
    expect_probe(f, "id", "\"123456789\"", "id", "longer than its limit");
    expect_probe(f, "color", "\"BLUE\"", "color", "not a symbol");
    expect_probe(f, "note", "5", "note", "expected one of");
    expect_probe(f, "tags", "{\"a\":\"x\"}", "tags.a", "expected an integer");
    expect_probe(f, "tags", "[]", "tags", "expected an object");
    expect_probe(f, "items", "[{\"sku\":\"s\",\"qty\":1},{\"sku\":\"s\"}]", "items[1].qty",
                 "missing required field");
    expect_probe(f, "items", "[{\"sku\":\"s\",\"qty\":1,\"extra\":2}]", "items[0].extra",
                 "unknown field");
    expect_probe(f, "items", "[7]", "items[0]", "expected an object");
    expect_probe(f, "surprise", "true", "surprise", "unknown field");
    /* 18: a long beyond 64 bits is still named. */
    char *huge = probe_with("total", "1");
    char *at = strstr(huge, "\"total\":1");
    assert_non_null(at);
    char text[1024];
    snprintf(text, sizeof text, "%.*s\"total\":123456789012345678901234567890%s", (int)(at - huge),
             huge, at + strlen("\"total\":1"));
    expect_field(f, "Probe", text, strlen(text), "total", "out of range for long");
    free(huge);
    /* 19-20: invalid UTF-8 in a nested field and in a top-level one. */
    const char *bad_nested =
        "{\"id\":\"p1\",\"count\":3,\"total\":1,\"ratio\":1,\"flag\":true,"
        "\"color\":\"RED\",\"tags\":{},\"items\":[{\"sku\":\"a\xff\",\"qty\":1}]}";
    expect_field(f, "Probe", bad_nested, strlen(bad_nested), "items[0].sku", "invalid UTF-8");
    const char *bad_top = "{\"order_id\":\"o\xc3\x28\"}";
    expect_field(f, "OrderConfirmed", bad_top, strlen(bad_top), "order_id", "invalid UTF-8");
    /* 21-24: the domain schemas' own limits and shapes. */
    const char *no_lines =
        "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[],\"total_cents\":0}";
    expect_field(f, "OrderPlaced", no_lines, strlen(no_lines), "lines", "must have 1 to 100");
    const char *line_qty =
        "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[{\"sku\":\"s\",\"quantity\":\"2\","
        "\"unit_price_cents\":1}],\"total_cents\":2}";
    expect_field(f, "OrderPlaced", line_qty, strlen(line_qty), "lines[0].quantity",
                 "expected an integer");
    const char *not_object = "[1,2]";
    expect_field(f, "OrderConfirmed", not_object, strlen(not_object), "", "expected an object");
    const char *broken = "{\"order_id\":";
    expect_field(f, "OrderConfirmed", broken, strlen(broken), "", "invalid JSON");
    /* Unknown types are not a shape error; a good document passes the check. */
    sk_error err;
    json_t *good = json_loads(good_probe, 0, NULL);
    assert_int_equal(ev_payload_check_json(f->reg, "Probe", good, &err), 0);
    json_decref(good);
    assert_int_equal(encode(f, "NoSuchEvent", "{}", 2, &err), SK_ENOTFOUND);
}

/* The bytes of a valid Probe payload, for the binary tests. */
static ev_buf probe_bytes(fixture *f, uint32_t *id)
{
    ev_buf buf = {0};
    sk_error err;
    assert_int_equal(
        ev_payload_from_json_text(f->reg, "Probe", good_probe, strlen(good_probe), &buf, id, &err),
        0);
    return buf;
}

static void expect_corrupt(fixture *f, uint32_t id, const uint8_t *data, size_t size)
{
    json_t *out = NULL;
    sk_error err;
    int rc = ev_payload_to_json(f->reg, id, data, size, &out, &err);
    assert_int_equal(rc, SK_ECORRUPT);
    assert_null(out);
}

static void test_bounds_check_refuses_hostile_binary(void **state)
{
    fixture *f = *state;
    uint32_t id;
    ev_buf good = probe_bytes(f, &id);
    /* Every truncation of a valid payload is refused (avro-c leaks on these). */
    for (size_t n = 0; n < good.size; n++)
        expect_corrupt(f, id, good.data, n);
    /* Trailing bytes. */
    uint8_t more[4096];
    memcpy(more, good.data, good.size);
    more[good.size] = 0;
    expect_corrupt(f, id, more, good.size + 1);
    /* A string that claims 2^62 bytes (avro-c would malloc it first). */
    const uint8_t huge_string[] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'a'};
    expect_corrupt(f, id, huge_string, sizeof huge_string);
    /* A varint that never ends. */
    const uint8_t endless[] = {0x04, 'p', '1', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80};
    expect_corrupt(f, id, endless, sizeof endless);
    ev_buf_free(&good);

    /* Union index out of range: OrderCancelled has none, so patch the probe's note. */
    ev_buf buf = probe_bytes(f, &id);
    json_t *j = NULL;
    sk_error err;
    assert_int_equal(ev_payload_to_json(f->reg, id, buf.data, buf.size, &j, &err), 0);
    json_decref(j);
    /* Layout: id(3) count(1) total(5) ratio(8) flag(1) color(1) note: branch 1 -> 0x02. */
    size_t note_at = 3 + 1 + 5 + 8 + 1 + 1;
    assert_int_equal(buf.data[note_at], 0x02);
    buf.data[note_at] = 0x08; /* branch 4 of a 2-branch union */
    expect_corrupt(f, id, buf.data, buf.size);
    ev_buf_free(&buf);

    /* An array of nulls claiming a billion items in zero bytes. */
    ev_buf nul = probe_bytes(f, &id);
    assert_int_equal(nul.data[nul.size - 1], 0x00); /* the empty "nothing" array */
    nul.size--;
    const uint8_t billion[] = {0x80, 0xa8, 0xd6, 0xb9, 0x07, 0x00}; /* zigzag 1e9, then end */
    assert_int_equal(ev_buf_append(&nul, billion, sizeof billion), 0);
    expect_corrupt(f, id, nul.data, nul.size);
    ev_buf_free(&nul);
}

/* Every byte value, alone and after a valid prefix: an id takes exactly the bytes of
 * EV_ID_CHARS, and a refusal names the first byte outside it. */
static void test_id_alphabet_byte_by_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char id[3] = {'a', '7', (char)c};
        bool allowed = c != 0 && strchr(EV_ID_CHARS, c) != NULL;
        size_t bad = 99;
        assert_int_equal(ev_id_check(id + 2, 1, &bad), allowed ? 0 : SK_EBADINPUT);
        assert_int_equal(ev_id_check(id, 3, &bad), allowed ? 0 : SK_EBADINPUT);
        if (!allowed)
            assert_int_equal(bad, 2);
    }
    size_t bad = 99;
    assert_int_equal(ev_id_check("", 0, &bad), SK_EBADINPUT);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_domain, setup, tu_teardown),
        cmocka_unit_test_setup_teardown(test_probe_round_trip_and_defaults, setup, tu_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_payloads_name_the_field, setup, tu_teardown),
        cmocka_unit_test_setup_teardown(test_bounds_check_refuses_hostile_binary, setup,
                                        tu_teardown),
        cmocka_unit_test(test_id_alphabet_byte_by_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
