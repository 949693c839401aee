/*
 * test_cache.c -- the aggregate cache of one stripe: lookups find what was added, the
 * least recent entry without appends in flight is evicted, aggregates used again survive a
 * flood of one-shot ones (the segmented LRU), and the streams of one stripe (which share
 * the low bits of their hash) spread over the hash table's buckets.
 */
#include "commands/commands_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define NAMES 256

/* The cache frees states through their aggregate: one whose state is a bare counter. */
static const cmd_aggregate plain = {
    .name = "Plain", .stream_prefix = "plain-", .state_size = sizeof(long long)};

/* NAMES stream names that the bus puts in stripe 0 (the low bits of their hash are 0). */
static void stripe0_names(char names[NAMES][64])
{
    unsigned found = 0;
    for (unsigned counter = 0; found < NAMES; counter++) {
        snprintf(names[found], 64, "product-SKU-%06u", counter);
        if (ev_hash_str(names[found]) % CMD_STRIPES == 0)
            found++;
    }
}

static size_t longest_chain(const cmd_cache *c)
{
    size_t longest = 0;
    for (size_t b = 0; b < c->nbuckets; b++) {
        size_t len = 0;
        for (const cmd_cache_entry *e = c->buckets[b]; e; e = e->hnext)
            len++;
        if (len > longest)
            longest = len;
    }
    return longest;
}

static void test_one_stripe_spreads_over_the_buckets(void **state)
{
    (void)state;
    static char names[NAMES][64];
    stripe0_names(names);
    cmd_cache c;
    assert_int_equal(cmd_cache_init(&c, NAMES), 0);
    for (unsigned i = 0; i < NAMES; i++)
        assert_non_null(
            cmd_cache_add(&c, names[i], ev_hash_str(names[i]), &plain, cmd_state_new(&plain), i));
    assert_int_equal(cmd_cache_count(&c), NAMES);
    /* 256 entries in 512 buckets: a fair hash gives chains of a few entries; the low bits
     * alone (all equal within the stripe) used 8 buckets, with chains of 30 or more */
    size_t longest = longest_chain(&c);
    print_message("longest chain: %zu of %zu buckets\n", longest, c.nbuckets);
    assert_true(longest <= 8);
    for (unsigned i = 0; i < NAMES; i++) {
        cmd_cache_entry *e = cmd_cache_get(&c, names[i], ev_hash_str(names[i]));
        assert_non_null(e);
        assert_int_equal(e->version, i);
    }
    cmd_cache_free(&c);
}

static void test_eviction_skips_pending_entries(void **state)
{
    (void)state;
    cmd_cache c;
    assert_int_equal(cmd_cache_init(&c, 2), 0);
    cmd_cache_entry *a = cmd_cache_add(&c, "a", ev_hash_str("a"), &plain, cmd_state_new(&plain), 1);
    assert_non_null(a);
    atomic_store(&a->pending, 1); /* an append in flight: a's state is ahead of the log */
    assert_non_null(cmd_cache_add(&c, "b", ev_hash_str("b"), &plain, cmd_state_new(&plain), 1));
    assert_non_null(cmd_cache_add(&c, "c", ev_hash_str("c"), &plain, cmd_state_new(&plain), 1));
    /* over capacity: b is the least recent without appends in flight */
    assert_non_null(cmd_cache_get(&c, "a", ev_hash_str("a")));
    assert_null(cmd_cache_get(&c, "b", ev_hash_str("b")));
    assert_non_null(cmd_cache_get(&c, "c", ev_hash_str("c")));
    atomic_store(&a->pending, 0);
    cmd_cache_free(&c);
}

static void test_reused_entries_survive_one_shot_ones(void **state)
{
    (void)state;
    cmd_cache c;
    assert_int_equal(cmd_cache_init(&c, 10), 0);
    assert_int_equal(c.protected_max, 8);
    char name[32];
    for (int i = 0; i < 8; i++) { /* eight products, each used twice */
        snprintf(name, sizeof name, "product-%d", i);
        assert_non_null(
            cmd_cache_add(&c, name, ev_hash_str(name), &plain, cmd_state_new(&plain), 1));
        assert_non_null(cmd_cache_get(&c, name, ev_hash_str(name)));
    }
    assert_int_equal(c.protected_.count, 8);
    for (int i = 0; i < 100; i++) { /* a hundred orders, each used once */
        snprintf(name, sizeof name, "order-%d", i);
        assert_non_null(
            cmd_cache_add(&c, name, ev_hash_str(name), &plain, cmd_state_new(&plain), 1));
        assert_true(cmd_cache_count(&c) <= 10);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "product-%d", i);
        assert_non_null(cmd_cache_get(&c, name, ev_hash_str(name)));
    }
    assert_non_null(cmd_cache_get(&c, "order-99", ev_hash_str("order-99")));
    assert_null(cmd_cache_get(&c, "order-97", ev_hash_str("order-97")));
    /* a ninth reused entry pushes the least recent protected one back to probation */
    assert_int_equal(c.protected_.count, 8);
    assert_true(c.probation.tail && !c.probation.tail->protected_);
    assert_string_equal(c.probation.head->stream_id, "product-0");
    cmd_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_stripe_spreads_over_the_buckets),
        cmocka_unit_test(test_eviction_skips_pending_entries),
        cmocka_unit_test(test_reused_entries_survive_one_shot_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
