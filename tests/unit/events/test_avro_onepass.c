/*
 * test_avro_onepass.c -- the one-pass encoder (coerce.c writing through avro_write.c)
 * gives the same bytes as avro-c, and the one-pass decoder (avro_read.c) the same JSON,
 * for every kind of Avro value: a schema with every type, fixed documents at the edges
 * (varint widths, empty and large containers, unions, defaults, integers parsed as reals)
 * and a few thousand random ones, each encoded and decoded both ways; damaged bytes that
 * pass the bounds check decode alike too.
 */
#include "events/events_int.h"
#include "testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static const char *every_type_schema =
    "{\"type\":\"record\",\"name\":\"Every\",\"namespace\":\"skald.test\",\"fields\":["
    "{\"name\":\"n\",\"type\":\"null\"},"
    "{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"i\",\"type\":\"int\"},"
    "{\"name\":\"l\",\"type\":\"long\"},"
    "{\"name\":\"f\",\"type\":\"float\"},"
    "{\"name\":\"d\",\"type\":\"double\"},"
    "{\"name\":\"s\",\"type\":\"string\"},"
    "{\"name\":\"y\",\"type\":\"bytes\"},"
    "{\"name\":\"x\",\"type\":{\"type\":\"fixed\",\"name\":\"Four\",\"size\":4}},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"Color\",\"symbols\":[\"RED\","
    "\"GREEN\",\"BLUE\"]}},"
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
    "{\"name\":\"u\",\"type\":[\"null\",\"long\",\"double\",\"string\",\"Color\","
    "{\"type\":\"array\",\"items\":\"int\"}]},"
    "{\"name\":\"r\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\",\"name\":"
    "\"Inner\",\"fields\":[{\"name\":\"k\",\"type\":\"string\"},{\"name\":\"v\",\"type\":"
    "[\"null\",\"int\"],\"default\":null},{\"name\":\"w\",\"type\":\"double\",\"default\":"
    "2.5}]}}},"
    "{\"name\":\"dflt\",\"type\":{\"type\":\"map\",\"values\":\"Color\"},\"default\":"
    "{\"one\":\"GREEN\",\"two\":\"BLUE\"}}"
    "]}";

/* A record that holds itself: its compiled node points back at itself. */
static const char *chain_schema =
    "{\"type\":\"record\",\"name\":\"Chain\",\"namespace\":\"skald.test\",\"fields\":["
    "{\"name\":\"label\",\"type\":{\"type\":\"string\",\"maxLength\":4}},"
    "{\"name\":\"next\",\"type\":[\"null\",\"Chain\"],\"default\":null}]}";

typedef tu_fixture fixture;

static const ev_schema *every(const fixture *f)
{
    return ev_registry_newest(f->reg, "Every");
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    tu_write(f->dir, "Every.avsc", every_type_schema);
    tu_write(f->dir, "Chain.avsc", chain_schema);
    sk_error err;
    assert_int_equal(ev_registry_open(f->dir, NULL, &f->reg, &err), 0);
    assert_non_null(ev_registry_newest(f->reg, "Every"));
    *state = f;
    return 0;
}

/* Decodes data both ways: the same JSON, or both refuse. 1 when both decoded. */
static int expect_same_json(const ev_schema *s, const uint8_t *data, size_t size)
{
    sk_error err;
    if (ev_avro_check(s, data, size, &err) != 0)
        return 0; /* neither decoder is given what the bounds check refuses */
    json_t *ref = NULL, *got = NULL;
    int ref_rc = ev_avro_decode(s, data, size, &ref, &err);
    int rc = ev_avro_read(s, data, size, &got, &err);
    int both = ref_rc == 0 && rc == 0;
    if (both && !json_equal(ref, got)) {
        char *a = json_dumps(ref, JSON_COMPACT), *b = json_dumps(got, JSON_COMPACT);
        fail_msg("avro-c decoded %s, the one-pass decoder %s", a, b);
    }
    /* avro-c drops a map entry whose key is not UTF-8; the one-pass decoder refuses the
     * payload. Otherwise both refuse the same values (a string that is not UTF-8). */
    if (ref_rc != 0)
        assert_int_not_equal(rc, 0);
    json_decref(ref);
    json_decref(got);
    return both;
}

/* Encodes j both ways and requires the same outcome and, when accepted, the same bytes. */
static void expect_same_bytes(const ev_schema *s, const json_t *j, bool ints_as_real)
{
    ev_coerce_opts ref_opts = {.strict = true, .ints_as_real = ints_as_real};
    json_t *clean = NULL;
    sk_error ref_err, err;
    ev_buf ref = {0};
    int ref_rc = ev_coerce(s, j, &ref_opts, &clean, &ref_err);
    if (ref_rc == 0) {
        ref_rc = ev_avro_encode(s, clean, &ref, &ref_err);
        json_decref(clean);
    }
    ev_buf out = {0};
    assert_int_equal(ev_buf_append(&out, "prefix", 6), 0); /* appends after what is there */
    json_t *none = NULL;
    ev_coerce_opts opts = {.strict = true, .ints_as_real = ints_as_real, .emit = &out};
    int rc = ev_coerce(s, j, &opts, &none, &err);
    assert_int_equal(rc, ref_rc);
    assert_memory_equal(out.data, "prefix", 6);
    if (rc == 0 &&
        (out.size - 6 != ref.size || (ref.size && memcmp(out.data + 6, ref.data, ref.size) != 0))) {
        char *text = json_dumps(j, JSON_COMPACT);
        fail_msg("%s: %zu bytes one-pass, %zu through avro-c", text, out.size - 6, ref.size);
    }
    if (rc != 0)
        assert_string_equal(err.field, ref_err.field);
    else
        assert_int_equal(expect_same_json(s, out.data + 6, out.size - 6), 1);
    ev_buf_free(&out);
    ev_buf_free(&ref);
}

static void expect_text(fixture *f, const char *text, size_t flags, bool ints_as_real)
{
    json_error_t jerr;
    json_t *j = json_loads(text, flags, &jerr);
    if (!j)
        fail_msg("bad test JSON: %s: %s", text, jerr.text);
    expect_same_bytes(every(f), j, ints_as_real);
    json_decref(j);
}

#define BASE                                                                                       \
    "\"n\":null,\"b\":true,\"i\":1,\"l\":2,\"f\":0.5,\"d\":-0.25,\"s\":\"s\",\"y\":\"\","          \
    "\"x\":\"abcd\",\"e\":\"RED\",\"a\":[],\"m\":{},\"u\":null,\"r\":[]"

static void test_edges_encode_as_avro_c_does(void **state)
{
    fixture *f = *state;
    static const char *const docs[] = {
        "{" BASE "}",
        /* varint widths, both signs, the ends of int and long */
        "{" BASE ",\"i\":-2147483648,\"l\":-9223372036854775808}",
        "{" BASE ",\"i\":2147483647,\"l\":9223372036854775807}",
        "{" BASE ",\"i\":63,\"l\":64}",
        "{" BASE ",\"i\":-64,\"l\":-65}",
        "{" BASE ",\"i\":8191,\"l\":8192}",
        "{" BASE ",\"i\":0,\"l\":4294967296}",
        /* reals: integers given for floats, negative zero, tiny and huge */
        "{" BASE ",\"f\":3,\"d\":-0.0}",
        "{" BASE ",\"f\":1e-40,\"d\":1.7976931348623157e308}",
        "{" BASE ",\"f\":3.4e38,\"d\":5e-324}",
        /* strings: empty, multi-byte, a length that needs two varint bytes */
        "{" BASE ",\"s\":\"\",\"y\":\"caf\xc3\xa9\"}",
        "{" BASE ",\"s\":\"0123456789012345678901234567890123456789012345678901234567890123"
        "4567890123456789012345678901234567890123456789012345678901234567890123456789\"}",
        "{" BASE ",\"b\":false,\"e\":\"BLUE\",\"x\":\"\xc3\xa9\xc3\xa9\"}",
        /* containers */
        "{" BASE ",\"a\":[0,-1,1,-9223372036854775808],\"m\":{\"k\":\"v\",\"\":\"\"}}",
        "{" BASE ",\"r\":[{\"k\":\"a\"},{\"k\":\"b\",\"v\":7,\"w\":1},{\"k\":\"c\",\"v\":null}]}",
        /* every branch of the union */
        "{" BASE ",\"u\":5}",
        "{" BASE ",\"u\":5.5}",
        "{" BASE ",\"u\":\"GREEN\"}",
        "{" BASE ",\"u\":[1,2,3]}",
        "{" BASE ",\"u\":[]}",
        "{" BASE ",\"dflt\":{}}",
        /* refused: the same field named both ways */
        "{" BASE ",\"i\":2147483648}",
        "{" BASE ",\"x\":\"abc\"}",
        "{" BASE ",\"e\":\"PINK\"}",
        "{" BASE ",\"u\":{}}",
        "{" BASE ",\"r\":[{\"k\":\"a\"},{\"v\":1}]}",
        "{" BASE ",\"m\":{\"k\":1}}",
        "{" BASE ",\"extra\":1}",
        "{\"n\":null}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
        expect_text(f, docs[i], 0, false);
    /* Integers parsed as reals (a body with an integer too big for jansson): the int, long
     * and union fields take them back as integers. */
    expect_text(f, "{" BASE ",\"i\":3,\"l\":-4,\"u\":6,\"a\":[7],\"d\":1e30}",
                JSON_DECODE_INT_AS_REAL, true);
    expect_text(f, "{" BASE ",\"i\":3.5}", JSON_DECODE_INT_AS_REAL, true);
}

static void test_recursive_record(void **state)
{
    fixture *f = *state;
    const ev_schema *chain = ev_registry_newest(f->reg, "Chain");
    assert_non_null(chain);
    static const char *const docs[] = {
        "{\"label\":\"a\"}",
        "{\"label\":\"a\",\"next\":{\"label\":\"b\",\"next\":{\"label\":\"c\"}}}",
        "{\"label\":\"a\",\"next\":{\"label\":\"toolong\"}}", /* the limit holds deep down */
        "{\"label\":\"a\",\"next\":{\"next\":null}}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        json_t *j = json_loads(docs[i], 0, NULL);
        assert_non_null(j);
        expect_same_bytes(chain, j, false);
        json_decref(j);
    }
}

/* A long of any magnitude: a random number of random bits, either sign. */
static long long random_long(unsigned *seed)
{
    int bits = rand_r(seed) % 64;
    unsigned long long x = ((unsigned long long)rand_r(seed) << 33) ^
                           ((unsigned long long)rand_r(seed) << 11) ^
                           (unsigned long long)rand_r(seed);
    x = bits ? x >> (64 - bits) : 0;
    return rand_r(seed) % 2 ? (long long)x : -(long long)(x >> 1);
}

static json_t *random_string(unsigned *seed)
{
    static const char *const pieces[] = {"a", "Z", "0", " ", "\xc3\xa9", "\xe2\x82\xac", "-"};
    size_t n = (size_t)(rand_r(seed) % 4 == 0 ? rand_r(seed) % 300 : rand_r(seed) % 12);
    char text[1024] = "";
    size_t len = 0;
    for (size_t k = 0; k < n; k++) {
        const char *p = pieces[rand_r(seed) % 7];
        memcpy(text + len, p, strlen(p));
        len += strlen(p);
    }
    return json_stringn(text, len);
}

static json_t *random_union(unsigned *seed)
{
    static const char *const colors[] = {"RED", "GREEN", "BLUE"};
    switch (rand_r(seed) % 6) {
    case 0:
        return json_null();
    case 1:
        return json_integer(random_long(seed));
    case 2:
        return json_real((double)random_long(seed) / 7.0);
    case 3:
        return random_string(seed);
    case 4:
        return json_string(colors[rand_r(seed) % 3]);
    default: {
        json_t *a = json_array();
        for (int k = rand_r(seed) % 5; k > 0; k--)
            json_array_append_new(a, json_integer((int32_t)random_long(seed)));
        return a;
    }
    }
}

static json_t *random_every(unsigned *seed)
{
    static const char *const colors[] = {"RED", "GREEN", "BLUE"};
    json_t *j = json_object();
    json_object_set_new(j, "n", json_null());
    json_object_set_new(j, "b", json_boolean(rand_r(seed) % 2));
    json_object_set_new(j, "i", json_integer((int32_t)random_long(seed)));
    json_object_set_new(j, "l", json_integer(random_long(seed)));
    json_object_set_new(j, "f", json_real((double)random_long(seed) / 3.0));
    json_object_set_new(j, "d", json_real((double)random_long(seed) / 1e9));
    json_object_set_new(j, "s", random_string(seed));
    json_object_set_new(j, "y", random_string(seed));
    json_object_set_new(j, "x", json_string("wxyz"));
    json_object_set_new(j, "e", json_string(colors[rand_r(seed) % 3]));
    json_t *a = json_array();
    int items = rand_r(seed) % 3 == 0 ? rand_r(seed) % 200 : rand_r(seed) % 4;
    for (int k = 0; k < items; k++)
        json_array_append_new(a, json_integer(random_long(seed)));
    json_object_set_new(j, "a", a);
    json_t *m = json_object();
    for (int k = rand_r(seed) % 5; k > 0; k--) {
        char key[16];
        snprintf(key, sizeof key, "k%d", rand_r(seed) % 100);
        json_object_set_new(m, key, random_string(seed));
    }
    json_object_set_new(j, "m", m);
    json_object_set_new(j, "u", random_union(seed));
    json_t *r = json_array();
    for (int k = rand_r(seed) % 4; k > 0; k--) {
        json_t *inner = json_pack("{s:s}", "k", "key");
        if (rand_r(seed) % 2)
            json_object_set_new(inner, "v", json_integer((int32_t)random_long(seed)));
        if (rand_r(seed) % 2)
            json_object_set_new(inner, "w", json_real((double)random_long(seed)));
        json_array_append_new(r, inner);
    }
    json_object_set_new(j, "r", r);
    return j;
}

static void test_random_documents_encode_as_avro_c_does(void **state)
{
    fixture *f = *state;
    unsigned seed = 20261202;
    for (int n = 0; n < 3000; n++) {
        json_t *j = random_every(&seed);
        expect_same_bytes(every(f), j, false);
        json_decref(j);
    }
}

/* Random documents' bytes with one byte changed: whatever passes the bounds check
 * decodes alike (or is refused by both). */
static void test_damaged_bytes_decode_alike(void **state)
{
    fixture *f = *state;
    unsigned seed = 7;
    int decoded = 0;
    for (int n = 0; n < 2000; n++) {
        json_t *j = random_every(&seed);
        ev_buf b = {0};
        json_t *none;
        sk_error err;
        ev_coerce_opts opts = {.strict = true, .emit = &b};
        assert_int_equal(ev_coerce(every(f), j, &opts, &none, &err), 0);
        json_decref(j);
        for (int k = 0; k < 4; k++) {
            size_t at = (size_t)rand_r(&seed) % b.size;
            uint8_t was = b.data[at];
            b.data[at] = (uint8_t)rand_r(&seed);
            decoded += expect_same_json(every(f), b.data, b.size);
            b.data[at] = was;
        }
        ev_buf_free(&b);
    }
    assert_true(decoded > 1000); /* most single-byte changes still make a value */
}

/* The sample domain's schemas too, through the public entry point the deciders use. */
static void test_domain_payloads_encode_as_avro_c_does(void **state)
{
    (void)state;
    char domain[4096];
    snprintf(domain, sizeof domain, "%s/events/schemas", tu_source_dir());
    ev_registry *reg;
    sk_error err;
    assert_int_equal(ev_registry_open(domain, NULL, &reg, &err), 0);
    const char *order = "{\"order_id\":\"o-1\",\"customer_id\":\"c-1\",\"lines\":[{\"sku\":\"s-1\","
                        "\"quantity\":2,\"unit_price_cents\":2599},{\"sku\":\"s-2\",\"quantity\":"
                        "1,\"unit_price_cents\":300}],\"total_cents\":5498}";
    json_t *j = json_loads(order, 0, NULL);
    expect_same_bytes(ev_registry_newest(reg, "OrderPlaced"), j, false);
    json_decref(j);
    j = json_loads("{\"sku\":\"s-1\",\"quantity\":40}", 0, NULL);
    expect_same_bytes(ev_registry_newest(reg, "ProductRestocked"), j, false);
    json_decref(j);
    ev_registry_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges_encode_as_avro_c_does),
        cmocka_unit_test(test_recursive_record),
        cmocka_unit_test(test_random_documents_encode_as_avro_c_does),
        cmocka_unit_test(test_damaged_bytes_decode_alike),
        cmocka_unit_test(test_domain_payloads_encode_as_avro_c_does),
    };
    return cmocka_run_group_tests(tests, setup, tu_teardown);
}
