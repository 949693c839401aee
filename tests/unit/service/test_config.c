/*
 * test_config.c -- `skald serve` options that are parsed into more than a string: the
 * per-aggregate snapshot rules (--snapshot-every-type).
 */
#include "service/serve_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

static void test_snapshot_rules(void **state)
{
    (void)state;
    cmd_snapshot_rule rules[CMD_SNAPSHOT_RULES_MAX];
    size_t n = 99;
    sk_error err;
    assert_int_equal(svc_snapshot_rules_parse("Product=3,Customer=0", rules, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rules[0].aggregate, "Product");
    assert_int_equal(rules[0].every, 3);
    assert_string_equal(rules[1].aggregate, "Customer");
    assert_int_equal(rules[1].every, 0);
    assert_int_equal(svc_snapshot_rules_parse("Product", rules, &n, &err), SK_EBADINPUT);
    assert_int_equal(svc_snapshot_rules_parse("Product=-1", rules, &n, &err), SK_EBADINPUT);
    assert_int_equal(svc_snapshot_rules_parse("=5", rules, &n, &err), SK_EBADINPUT);
    assert_int_equal(svc_snapshot_rules_parse("Nothing=5", rules, &n, &err), SK_EBADINPUT);
    assert_non_null(strstr(err.message, "Nothing"));
    assert_int_equal(svc_snapshot_rules_parse("", rules, &n, &err), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
