/*
 * test_store_crc32c.c -- CRC32C on known answers (RFC 3720's test vectors and the
 * standard "123456789" check value), through both paths: the dispatching store_crc32c
 * (SSE4.2 on x86-64) and the table-driven one, which x86-64 machines never run otherwise.
 * The two must agree at every length and alignment, and chain across pieces.
 *
 * crc32c.c is compiled into this test directly, so its static table path is reachable
 * without adding a test-only entry point to store/.
 */
#include "store/crc32c.c" /* NOLINT(bugprone-suspicious-include): the static paths */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* The table path with the same pre- and post-inversion as store_crc32c. */
static uint32_t crc_table_path(uint32_t crc, const void *data, size_t size)
{
    return ~crc_soft(~crc, data, size);
}

typedef uint32_t (*crc_fn)(uint32_t crc, const void *data, size_t size);

static void check_known_answers(crc_fn crc)
{
    assert_int_equal(crc(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc(0, "", 0), 0);
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    assert_int_equal(crc(0, buf, sizeof buf), 0x8A9136AAu); /* RFC 3720 B.4: zeros */
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(crc(0, buf, sizeof buf), 0x62A8AB43u); /* ones */
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(crc(0, buf, sizeof buf), 0x46DD794Eu); /* incrementing */
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(crc(0, buf, sizeof buf), 0x113FDB5Cu); /* decrementing */
}

static void test_dispatching_path(void **state)
{
    (void)state;
    check_known_answers(store_crc32c);
}

static void test_table_path(void **state)
{
    (void)state;
    check_known_answers(crc_table_path);
}

/* Every length 0..200 at every alignment 0..7, in one piece and in two: the hardware
 * loop (8 bytes at a time, then a byte tail) and the table loop agree. */
static void test_paths_agree_and_chain(void **state)
{
    (void)state;
    uint8_t data[256];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < sizeof data; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (uint8_t)x;
    }
    for (size_t align = 0; align < 8; align++)
        for (size_t len = 0; len <= 200; len++) {
            const uint8_t *p = data + align;
            uint32_t whole = store_crc32c(0, p, len);
            assert_int_equal(whole, crc_table_path(0, p, len));
            size_t cut = len / 3;
            assert_int_equal(store_crc32c(store_crc32c(0, p, cut), p + cut, len - cut), whole);
            assert_int_equal(crc_table_path(crc_table_path(0, p, cut), p + cut, len - cut), whole);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatching_path),
        cmocka_unit_test(test_table_path),
        cmocka_unit_test(test_paths_agree_and_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
