/*
 * test_events_log.c -- the one logger: a sink gets every layer's messages with their
 * fields, the level is applied before anything reaches it, and the default writer emits
 * one valid JSON object per line whatever the strings hold (store/ used to print
 * unescaped text into hand-built JSON).
 */
#include "events/events.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

typedef struct seen {
    int count;
    sk_log_level level;
    char subsystem[32], message[128], fields[256];
} seen;

static void collect(void *ctx, sk_log_level level, const char *subsystem, const char *message,
                    const sk_log_field *fields, size_t count)
{
    seen *s = ctx;
    s->count++;
    s->level = level;
    snprintf(s->subsystem, sizeof s->subsystem, "%s", subsystem);
    snprintf(s->message, sizeof s->message, "%s", message);
    s->fields[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(s->fields);
        snprintf(s->fields + n, sizeof s->fields - n, "%s=%s;", fields[i].key, fields[i].value);
    }
}

static void test_sink_and_level(void **state)
{
    (void)state;
    seen s = {0};
    sk_log_set_sink(collect, &s);
    sk_log_set_level(SK_LOG_WARN);
    sk_log(SK_LOG_INFO, "store", "below the level", "k", "v", SK_LOG_END);
    assert_int_equal(s.count, 0);
    sk_log(SK_LOG_ERROR, "store", "failed", "dir", "/d", "empty", "", "none", (const char *)NULL,
           "error", "EIO", SK_LOG_END);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.level, SK_LOG_ERROR);
    assert_string_equal(s.subsystem, "store");
    assert_string_equal(s.message, "failed");
    assert_string_equal(s.fields, "dir=/d;error=EIO;");      /* empty and NULL values left out */
    sk_log(SK_LOG_NOTICE, "store", "recovered", SK_LOG_END); /* notice always passes */
    assert_int_equal(s.count, 2);
    sk_log_set_sink(NULL, NULL);
    sk_log_set_level(SK_LOG_INFO);
    sk_log_level l;
    assert_int_equal(sk_log_level_parse("warn", &l), 0);
    assert_int_equal(l, SK_LOG_WARN);
    assert_int_equal(sk_log_level_parse("loud", &l), SK_EBADINPUT);
}

/* Sends fd 2 to a temporary file until stderr_back; returns the file. */
static FILE *stderr_to_tmp(int *saved)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    *saved = dup(2);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    return tmp;
}

static void stderr_back(int saved)
{
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
}

static void test_default_writer_escapes(void **state)
{
    (void)state;
    int saved;
    FILE *tmp = stderr_to_tmp(&saved);
    sk_log(SK_LOG_ERROR, "store", "quote \" backslash \\ newline \n end", "dir", "/a\"b\n\tc",
           SK_LOG_END);
    stderr_back(saved);
    rewind(tmp);
    char line[1024];
    assert_non_null(fgets(line, sizeof line, tmp));
    char extra[8];
    assert_null(fgets(extra, sizeof extra, tmp)); /* exactly one line */
    fclose(tmp);
    json_error_t jerr;
    json_t *obj = json_loads(line, 0, &jerr);
    if (!obj)
        fail_msg("not JSON (%s): %s", jerr.text, line);
    assert_string_equal(json_string_value(json_object_get(obj, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(obj, "subsystem")), "store");
    assert_string_equal(json_string_value(json_object_get(obj, "msg")),
                        "quote \" backslash \\ newline \n end");
    assert_string_equal(json_string_value(json_object_get(obj, "dir")), "/a\"b\n\tc");
    assert_non_null(json_object_get(obj, "ts"));
    json_decref(obj);
}

/* One line written by sk_log_write_fields, parsed back (fails the test if not JSON). */
static json_t *written_line(const sk_log_field *fields, size_t count, const char *message)
{
    int saved;
    FILE *tmp = stderr_to_tmp(&saved);
    sk_log_write_fields(SK_LOG_INFO, "service", message, fields, count);
    stderr_back(saved);
    rewind(tmp);
    char line[2048];
    assert_non_null(fgets(line, sizeof line, tmp));
    assert_int_equal(line[strlen(line) - 1], '\n');
    fclose(tmp);
    json_error_t jerr;
    json_t *obj = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        fail_msg("not JSON (%s): %s", jerr.text, line);
    return obj;
}

/* Held lines: nothing is written until the release, then every line whole, in order;
 * past 64 KiB they go out early, still as whole lines. */
static void test_held_lines(void **state)
{
    (void)state;
    int saved;
    FILE *tmp = stderr_to_tmp(&saved);
    char n[16];
    sk_log_hold();
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "%d", i);
        const sk_log_field f[] = {{"n", n, true}};
        sk_log_write_fields(SK_LOG_INFO, "service", "held", f, 1);
    }
    struct stat st;
    assert_int_equal(fstat(fileno(tmp), &st), 0);
    off_t size_held = st.st_size;
    /* an error is not held: it goes out at once, after the lines held before it */
    sk_log_write_fields(SK_LOG_ERROR, "service", "held error", NULL, 0);
    assert_int_equal(fstat(fileno(tmp), &st), 0);
    off_t size_error = st.st_size;
    sk_log_release();
    assert_int_equal(fstat(fileno(tmp), &st), 0);
    off_t size_released = st.st_size;
    /* a run longer than the flush size is written as it goes */
    sk_log_hold();
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 100; i++) {
        snprintf(n, sizeof n, "%d", 3 + i);
        const sk_log_field f[] = {{"n", n, true}, {"pad", big, false}};
        sk_log_write_fields(SK_LOG_INFO, "service", "held", f, 2);
    }
    assert_int_equal(fstat(fileno(tmp), &st), 0);
    off_t size_mid_run = st.st_size;
    sk_log_release();
    sk_log_write_fields(SK_LOG_INFO, "service", "after", NULL, 0); /* not held again */
    stderr_back(saved);
    assert_int_equal(size_held, 0);
    assert_true(size_error > 0);
    assert_int_equal(size_released, size_error); /* nothing was left to write */
    assert_true(size_mid_run > size_released);
    rewind(tmp);
    char line[2048];
    int count = 0;
    while (fgets(line, sizeof line, tmp)) {
        assert_int_equal(line[strlen(line) - 1], '\n');
        json_t *obj = json_loads(line, 0, NULL);
        assert_non_null(obj);
        if (count < 3)
            assert_int_equal(json_integer_value(json_object_get(obj, "n")), count);
        else if (count == 3)
            assert_string_equal(json_string_value(json_object_get(obj, "msg")), "held error");
        else if (count < 104)
            assert_int_equal(json_integer_value(json_object_get(obj, "n")), count - 1);
        else
            assert_string_equal(json_string_value(json_object_get(obj, "msg")), "after");
        json_decref(obj);
        count++;
    }
    assert_int_equal(count, 105);
    fclose(tmp);
}

static void test_fields_writer(void **state)
{
    (void)state;
    const sk_log_field fields[] = {
        {"status", "422", true},
        {"detail", "ctl \x01 \x1f tab\t \"q\" \\ caf\xc3\xa9 euro \xe2\x82\xac", false},
        {"cut", "ends in half a sequence \xe2\x82", false},
        {"bad", "\xff\xfe lone \x80", false},
        {"msg", "not a second msg", false},
        {"level", "not a second level", false},
    };
    json_t *obj = written_line(fields, sizeof fields / sizeof *fields, "command \x7f");
    assert_string_equal(json_string_value(json_object_get(obj, "subsystem")), "service");
    assert_string_equal(json_string_value(json_object_get(obj, "msg")), "command \x7f");
    assert_string_equal(json_string_value(json_object_get(obj, "level")), "info");
    assert_true(json_is_integer(json_object_get(obj, "status")));
    assert_int_equal(json_integer_value(json_object_get(obj, "status")), 422);
    assert_string_equal(json_string_value(json_object_get(obj, "detail")),
                        "ctl \x01 \x1f tab\t \"q\" \\ caf\xc3\xa9 euro \xe2\x82\xac");
    /* bytes that are not UTF-8 become U+FFFD, one each, and the line stays JSON */
    assert_string_equal(json_string_value(json_object_get(obj, "cut")),
                        "ends in half a sequence \xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(obj, "bad")),
                        "\xef\xbf\xbd\xef\xbf\xbd lone \xef\xbf\xbd");
    assert_int_equal(json_object_size(obj), 8); /* ts level subsystem msg status detail cut bad */
    json_decref(obj);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sink_and_level),
        cmocka_unit_test(test_default_writer_escapes),
        cmocka_unit_test(test_fields_writer),
        cmocka_unit_test(test_held_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
