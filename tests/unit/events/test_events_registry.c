/*
 * test_events_registry.c -- stable schema ids, schema evolution with resolution, refusal
 * of incompatible changes, and the small value types (errors, UUIDs).
 */
#include "events/events.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SHIP_V1                                                                                    \
    "{\"type\":\"record\",\"name\":\"Shipped\",\"fields\":[{\"name\":\"order_id\",\"type\":"       \
    "\"string\"}]}"
#define SHIP_V2                                                                                    \
    "{\"type\":\"record\",\"name\":\"Shipped\",\"fields\":[{\"name\":\"order_id\",\"type\":"       \
    "\"string\"},{\"name\":\"carrier\",\"type\":\"string\",\"default\":\"post\"}]}"
#define ALPHA                                                                                      \
    "{\"type\":\"record\",\"name\":\"Alpha\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]}"
#define BETA                                                                                       \
    "{\"type\":\"record\",\"name\":\"Beta\",\"fields\":[{\"name\":\"b\",\"type\":\"long\"}]}"

static uint32_t id_of(ev_registry *reg, const char *type)
{
    uint32_t id = 0;
    assert_int_equal(ev_registry_latest(reg, type, &id), 0);
    return id;
}

static ev_registry *open_ok(const char *src, const char *data)
{
    ev_registry *reg = NULL;
    sk_error err;
    int rc = ev_registry_open(src, data, &reg, &err);
    if (rc != 0)
        fail_msg("open failed: %s", err.message);
    return reg;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(sk_err_name(SK_ECORRUPT), "SK_ECORRUPT");
    assert_string_equal(sk_err_name(SK_ECONFLICT), "SK_ECONFLICT");
    assert_string_equal(sk_err_name(-EIO), "EIO");
    assert_string_equal(sk_strerror(SK_EBUSY), "queue is full; retry later");
    assert_non_null(strstr(sk_strerror(-ENOSPC), "space"));
    sk_error err;
    assert_int_equal(sk_error_set(&err, SK_EBADINPUT, "lines[0].sku", "bad %d", 7), SK_EBADINPUT);
    assert_string_equal(err.field, "lines[0].sku");
    assert_string_equal(err.message, "bad 7");
}

static void test_uuid(void **state)
{
    (void)state;
    ev_uuid a, b, back;
    char text[EV_UUID_TEXT_SIZE];
    ev_uuid_generate(&a);
    ev_uuid_format(&a, text);
    assert_int_equal(strlen(text), 36);
    assert_int_equal(text[14], '7'); /* version 7 */
    assert_int_equal(ev_uuid_parse(text, &back), 0);
    assert_memory_equal(a.bytes, back.bytes, 16);
    assert_int_equal(ev_uuid_parse("not-a-uuid", &back), SK_EBADINPUT);
    for (int i = 0; i < 10000; i++) {
        ev_uuid_generate(&b);
        assert_memory_not_equal(a.bytes, b.bytes, 16);
        assert_false(ev_uuid_is_nil(&b));
    }
}

static void test_ids_are_stable(void **state)
{
    (void)state;
    char *src = tu_tempdir(), *data = tu_tempdir();
    tu_write(src, "Beta.avsc", BETA);
    tu_write(src, "Shipped.avsc", SHIP_V1);
    ev_registry *reg = open_ok(src, data);
    uint32_t beta = id_of(reg, "Beta"), ship = id_of(reg, "Shipped");
    assert_int_equal(beta, 1); /* sorted by file name on a fresh data directory */
    assert_int_equal(ship, 2);
    ev_registry_destroy(reg);

    /* Restart: same ids. */
    reg = open_ok(src, data);
    assert_int_equal(id_of(reg, "Beta"), beta);
    assert_int_equal(id_of(reg, "Shipped"), ship);
    ev_registry_destroy(reg);

    /* A new file that sorts first, and a rename that changes the listing order. */
    tu_write(src, "Alpha.avsc", ALPHA);
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s/Beta.avsc", src);
    snprintf(to, sizeof to, "%s/zz-Beta.avsc", src);
    assert_int_equal(rename(from, to), 0);
    reg = open_ok(src, data);
    assert_int_equal(id_of(reg, "Beta"), beta);
    assert_int_equal(id_of(reg, "Shipped"), ship);
    assert_int_equal(id_of(reg, "Alpha"), 3);
    assert_int_equal(ev_registry_count(reg), 3);
    ev_registry_destroy(reg);

    /* Whitespace and key order are not a new version. */
    tu_write(src, "Shipped.avsc",
             "{ \"fields\": [ {\"type\": \"string\", \"name\": \"order_id\"} ],\n"
             "  \"name\": \"Shipped\", \"type\": \"record\" }");
    reg = open_ok(src, data);
    assert_int_equal(id_of(reg, "Shipped"), ship);
    assert_int_equal(ev_registry_count(reg), 3);
    ev_registry_destroy(reg);
    tu_rmrf(src);
    tu_rmrf(data);
}

static void test_evolution_reads_old_events_with_defaults(void **state)
{
    (void)state;
    char *src = tu_tempdir(), *data = tu_tempdir();
    tu_write(src, "Shipped.avsc", SHIP_V1);
    ev_registry *reg = open_ok(src, data);
    ev_buf old = {0};
    uint32_t v1 = 0;
    sk_error err;
    const char *doc = "{\"order_id\":\"o-9\"}";
    assert_int_equal(ev_payload_from_json_text(reg, "Shipped", doc, strlen(doc), &old, &v1, &err),
                     0);
    ev_registry_destroy(reg);

    tu_write(src, "Shipped.avsc", SHIP_V2);
    reg = open_ok(src, data);
    uint32_t v2 = id_of(reg, "Shipped");
    assert_int_not_equal(v1, v2);
    ev_schema_info info;
    assert_int_equal(ev_registry_find(reg, v1, &info), 0); /* old version kept */
    assert_false(info.latest);
    json_t *j = NULL;
    assert_int_equal(ev_payload_to_json(reg, v1, old.data, old.size, &j, &err), 0);
    assert_string_equal(json_string_value(json_object_get(j, "order_id")), "o-9");
    assert_string_equal(json_string_value(json_object_get(j, "carrier")), "post");
    json_decref(j);
    /* As written, the old shape. */
    assert_int_equal(ev_payload_to_json_as_written(reg, v1, old.data, old.size, &j, &err), 0);
    assert_null(json_object_get(j, "carrier"));
    json_decref(j);
    ev_registry_destroy(reg);

    /* Reverting the file makes the old version the newest again; no new id. */
    tu_write(src, "Shipped.avsc", SHIP_V1);
    reg = open_ok(src, data);
    assert_int_equal(id_of(reg, "Shipped"), v1);
    assert_int_equal(ev_registry_count(reg), 2);
    ev_registry_destroy(reg);
    ev_buf_free(&old);
    tu_rmrf(src);
    tu_rmrf(data);
}

static void expect_refused(const char *v1, const char *v2, const char *field)
{
    char *src = tu_tempdir(), *data = tu_tempdir();
    tu_write(src, "Shipped.avsc", v1);
    ev_registry_destroy(open_ok(src, data));
    char store[4200];
    snprintf(store, sizeof store, "%s/schemas", data);
    size_t before = count_files(store);
    tu_write(src, "Shipped.avsc", v2);
    ev_registry *reg = NULL;
    sk_error err;
    assert_int_equal(ev_registry_open(src, data, &reg, &err), SK_ESCHEMA);
    assert_null(reg);
    if (!strstr(err.message, "Shipped") || !strstr(err.message, field) ||
        !strstr(err.message, "Shipped.avsc"))
        fail_msg("message does not name schema, file and field '%s': %s", field, err.message);
    assert_string_equal(err.field, field);
    assert_int_equal(count_files(store), before); /* nothing stored */
    assert_int_equal(ev_registry_open_readonly(src, data, &reg, &err), SK_ESCHEMA);
    tu_rmrf(src);
    tu_rmrf(data);
}

static void test_incompatible_changes_are_refused(void **state)
{
    (void)state;
    /* A field added without a default: new code cannot read old events. */
    expect_refused(SHIP_V1,
                   "{\"type\":\"record\",\"name\":\"Shipped\",\"fields\":[{\"name\":\"order_id\","
                   "\"type\":\"string\"},{\"name\":\"weight\",\"type\":\"long\"}]}",
                   "weight");
    /* A field without a default removed: old consumers cannot read new events. */
    expect_refused("{\"type\":\"record\",\"name\":\"Shipped\",\"fields\":[{\"name\":\"order_id\","
                   "\"type\":\"string\"},{\"name\":\"weight\",\"type\":\"long\"}]}",
                   SHIP_V1, "weight");
    /* A type changed. */
    expect_refused(SHIP_V1,
                   "{\"type\":\"record\",\"name\":\"Shipped\",\"fields\":[{\"name\":\"order_id\","
                   "\"type\":\"long\"}]}",
                   "order_id");
    /* Even a promotion is one-way: long -> int is not readable, int -> long breaks old
     * readers. */
    expect_refused("{\"type\":\"record\",\"name\":\"Shipped\",\"fields\":[{\"name\":\"n\","
                   "\"type\":\"int\"}]}",
                   "{\"type\":\"record\",\"name\":\"Shipped\",\"fields\":[{\"name\":\"n\","
                   "\"type\":\"long\"}]}",
                   "n");
}

static void test_bad_schema_files(void **state)
{
    (void)state;
    char *src = tu_tempdir();
    ev_registry *reg = NULL;
    sk_error err;
    tu_write(src, "Broken.avsc", "{\"type\":\"record\",");
    assert_int_equal(ev_registry_open(src, NULL, &reg, &err), SK_ESCHEMA);
    assert_non_null(strstr(err.message, "Broken.avsc"));
    tu_write(src, "Broken.avsc", "\"string\"");
    assert_int_equal(ev_registry_open(src, NULL, &reg, &err), SK_ESCHEMA);
    assert_non_null(strstr(err.message, "named record"));
    tu_write(src, "Broken.avsc", ALPHA);
    tu_write(src, "Copy.avsc", ALPHA);
    assert_int_equal(ev_registry_open(src, NULL, &reg, &err), SK_ESCHEMA);
    assert_non_null(strstr(err.message, "already defined"));
    tu_rmrf(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_ids_are_stable),
        cmocka_unit_test(test_evolution_reads_old_events_with_defaults),
        cmocka_unit_test(test_incompatible_changes_are_refused),
        cmocka_unit_test(test_bad_schema_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
