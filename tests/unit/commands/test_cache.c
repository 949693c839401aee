/*
 * test_cache.c -- the aggregate cache of one stripe: lookups find what was added, the
 * least recent entry without appends in flight is evicted, aggregates used again survive a
 * flood of one-shot ones (the segmented LRU and its frequency filter, whose counts fade),
 * and the streams of one stripe (which share the low bits of their hash) spread over the
 * hash table's buckets.
 */
#include "commands/commands_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define NAMES 256

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
        assert_non_null(cmd_cache_add(&c, names[i], NULL, json_object(), i));
    assert_int_equal(cmd_cache_count(&c), NAMES);
    /* 256 entries in 512 buckets: a fair hash gives chains of a few entries; the low bits
     * alone (all equal within the stripe) used 8 buckets, with chains of 30 or more */
    size_t longest = longest_chain(&c);
    print_message("longest chain: %zu of %zu buckets\n", longest, c.nbuckets);
    assert_true(longest <= 8);
    for (unsigned i = 0; i < NAMES; i++) {
        cmd_cache_entry *e = cmd_cache_get(&c, names[i]);
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
    cmd_cache_entry *a = cmd_cache_add(&c, "a", NULL, json_object(), 1);
    assert_non_null(a);
    atomic_store(&a->pending, 1); /* an append in flight: a's state is ahead of the log */
    assert_non_null(cmd_cache_add(&c, "b", NULL, json_object(), 1));
    assert_null(cmd_cache_get(&c, "c")); /* looked up more than b: admitted */
    assert_null(cmd_cache_get(&c, "c"));
    assert_non_null(cmd_cache_add(&c, "c", NULL, json_object(), 1));
    /* over capacity: b is the least recent without appends in flight */
    assert_non_null(cmd_cache_get(&c, "a"));
    assert_null(cmd_cache_get(&c, "b"));
    assert_non_null(cmd_cache_get(&c, "c"));
    atomic_store(&a->pending, 0);
    cmd_cache_free(&c);
}

/* A new stream seen once, arriving at a full cache, as the bus adds it: a miss, then the
 * add. Returns the entry. */
static cmd_cache_entry *add_one_shot(cmd_cache *c, const char *name)
{
    assert_null(cmd_cache_get(c, name));
    cmd_cache_entry *e = cmd_cache_add(c, name, NULL, json_object(), 1);
    assert_non_null(e);
    return e;
}

/* n orders order-0..order-(n-1), each a new stream seen once, into a cache of capacity
 * 10: refused, but the last `window` (2) of them are held beyond capacity rather than
 * pushing another entry out. */
static void add_orders(cmd_cache *c, int n)
{
    char name[32];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "order-%d", i);
        add_one_shot(c, name);
        assert_true(cmd_cache_count(c) <= 10 + c->window);
    }
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
        assert_non_null(cmd_cache_add(&c, name, NULL, json_object(), 1));
        assert_non_null(cmd_cache_get(&c, name));
    }
    assert_int_equal(c.protected_.count, 8);
    add_orders(&c, 100); /* a hundred orders, each used once */
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "product-%d", i);
        assert_non_null(cmd_cache_get(&c, name));
    }
    assert_non_null(cmd_cache_get(&c, "order-99"));
    assert_null(cmd_cache_get(&c, "order-97"));
    /* a ninth reused entry pushes the least recent protected one back to probation */
    assert_int_equal(c.protected_.count, 8);
    assert_true(c.probation.tail && !c.probation.tail->protected_);
    assert_string_equal(c.probation.head->stream_id, "product-0");
    cmd_cache_free(&c);
}

/* Ten products, each looked up and added, then used twice: eight end up protected and
 * two (the least recent) in probation. */
static void add_reused_products(cmd_cache *c)
{
    char name[32];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "product-%d", i);
        assert_null(cmd_cache_get(c, name)); /* the miss that loads it */
        assert_non_null(cmd_cache_add(c, name, NULL, json_object(), 1));
        assert_non_null(cmd_cache_get(c, name));
        assert_non_null(cmd_cache_get(c, name));
    }
    assert_int_equal(c->protected_.count, 8);
    assert_int_equal(c->probation.count, 2);
}

static void test_one_shot_entries_do_not_push_out_reused_ones(void **state)
{
    (void)state;
    cmd_cache c;
    assert_int_equal(cmd_cache_init(&c, 10), 0);
    add_reused_products(&c);
    /* looked up once, against products looked up three times: not admitted, so it waits
     * at probation's tail and is the next to go */
    assert_ptr_equal(c.probation.tail, add_one_shot(&c, "order-first"));
    add_orders(&c, 100);
    char name[32];
    /* every product is still there, in probation too (a plain SLRU lost those two) */
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "product-%d", i);
        assert_non_null(cmd_cache_get(&c, name));
    }
    assert_non_null(cmd_cache_get(&c, "order-99"));
    assert_non_null(cmd_cache_get(&c, "order-98"));
    assert_null(cmd_cache_get(&c, "order-97"));
    /* a stream looked up more often than the entry it would push out is admitted */
    for (int i = 0; i < 5; i++)
        assert_null(cmd_cache_get(&c, "order-hot"));
    cmd_cache_entry *hot = cmd_cache_add(&c, "order-hot", NULL, json_object(), 1);
    assert_ptr_equal(c.probation.head, hot);
    cmd_cache_free(&c);
}

static void test_counts_fade_so_a_cold_entry_gives_way(void **state)
{
    (void)state;
    cmd_cache c;
    assert_int_equal(cmd_cache_init(&c, 10), 0);
    add_reused_products(&c);
    assert_ptr_equal(c.probation.tail, add_one_shot(&c, "order-early"));
    /* ten sample periods of lookups of other streams: every count is halved ten times */
    char name[32];
    for (size_t i = 0; i < 10 * c.sample_period; i++) {
        snprintf(name, sizeof name, "elsewhere-%zu", i);
        assert_null(cmd_cache_get(&c, name));
    }
    /* the products are no longer looked up more often than a new stream: it is admitted */
    cmd_cache_entry *late = add_one_shot(&c, "order-late");
    assert_ptr_equal(c.probation.head, late);
    assert_true(cmd_cache_count(&c) <= 10 + c.window);
    cmd_cache_free(&c);
}

/* Whether c holds stream_id, without counting a lookup or moving anything. */
static bool holds(const cmd_cache *c, const char *stream_id)
{
    for (size_t b = 0; b < c->nbuckets; b++)
        for (const cmd_cache_entry *e = c->buckets[b]; e; e = e->hnext)
            if (strcmp(e->stream_id, stream_id) == 0)
                return true;
    return false;
}

static void test_a_refused_entry_stays_for_a_window_of_adds(void **state)
{
    (void)state;
    cmd_cache c;
    assert_int_equal(cmd_cache_init(&c, 40), 0);
    assert_int_equal(c.window, 8);
    char name[32];
    for (int i = 0; i < 40; i++) { /* a full cache of streams looked up three times */
        snprintf(name, sizeof name, "product-%d", i);
        assert_null(cmd_cache_get(&c, name));
        assert_non_null(cmd_cache_add(&c, name, NULL, json_object(), 1));
        assert_non_null(cmd_cache_get(&c, name));
        assert_non_null(cmd_cache_get(&c, name));
    }
    /* a new order is refused, but one used again soon after (a saga's next step) must
     * still find it: it stays until `window` entries were added after it */
    assert_true(add_one_shot(&c, "order-0")->refused);
    for (int i = 1; i < 8; i++) {
        snprintf(name, sizeof name, "order-%d", i);
        add_one_shot(&c, name);
    }
    assert_true(holds(&c, "order-0"));
    assert_int_equal(cmd_cache_count(&c), 48);
    add_one_shot(&c, "order-8");
    assert_false(holds(&c, "order-0"));
    assert_true(holds(&c, "order-1") && holds(&c, "order-8"));
    for (int i = 0; i < 40; i++) { /* and it pushed none of the others out */
        snprintf(name, sizeof name, "product-%d", i);
        assert_true(holds(&c, name));
    }
    cmd_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_stripe_spreads_over_the_buckets),
        cmocka_unit_test(test_eviction_skips_pending_entries),
        cmocka_unit_test(test_reused_entries_survive_one_shot_ones),
        cmocka_unit_test(test_one_shot_entries_do_not_push_out_reused_ones),
        cmocka_unit_test(test_counts_fade_so_a_cold_entry_gives_way),
        cmocka_unit_test(test_a_refused_entry_stays_for_a_window_of_adds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
