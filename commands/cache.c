/*
 * cache.c -- the hot aggregates of one stripe: a hash table plus two recency lists.
 *
 * The bus keeps one cache per stripe and touches it only under that stripe's lock, so
 * nothing here locks. It is a segmented LRU with a frequency filter at its door
 * (commands_int.h says how). Eviction walks from the least recent end and skips entries
 * with appends in flight (their state is ahead of the log); the entry just added is never
 * evicted.
 */
#include "commands/commands_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bus picks a stream's stripe from its hash modulo CMD_STRIPES, so every stream in one
 * stripe's cache has the same low bits: the bucket comes from the bits above them. (The
 * low bits used 1 bucket in 64, and lookups walked long chains; FNV-1a's high half is
 * poorly mixed for names that differ in their last characters.) */
static size_t bucket_of(const cmd_cache *cache, uint64_t hash)
{
    return (size_t)(hash / CMD_STRIPES) & (cache->nbuckets - 1);
}

/* ---- the frequency sketch ---- */

/* Column of hash in sketch row `row`: the hash remixed per row (splitmix64's finalizer),
 * so the rows collide on different streams. */
static size_t sketch_column(const cmd_cache *cache, uint64_t hash, unsigned row)
{
    uint64_t x = hash + (row + 1) * UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return row * (cache->sketch_mask + 1) + (size_t)(x & cache->sketch_mask);
}

/* How often hash was looked up lately: the smallest of its counts. */
static unsigned sketch_estimate(const cmd_cache *cache, uint64_t hash)
{
    unsigned least = 15;
    for (unsigned r = 0; r < CMD_SKETCH_ROWS; r++) {
        unsigned n = cache->sketch[sketch_column(cache, hash, r)];
        if (n < least)
            least = n;
    }
    return least;
}

/* Counts one lookup of hash. Only the smallest counts grow (conservative update), which
 * keeps the estimate of a rare stream from being raised by the common ones it collides
 * with; counts stop at 15. Every sample_period lookups all counts are halved. */
static void sketch_count(cmd_cache *cache, uint64_t hash)
{
    unsigned least = sketch_estimate(cache, hash);
    if (least < 15)
        for (unsigned r = 0; r < CMD_SKETCH_ROWS; r++) {
            uint8_t *n = &cache->sketch[sketch_column(cache, hash, r)];
            if (*n == least)
                (*n)++;
        }
    if (++cache->samples < cache->sample_period)
        return;
    size_t cells = CMD_SKETCH_ROWS * (cache->sketch_mask + 1);
    for (size_t i = 0; i < cells; i++)
        cache->sketch[i] >>= 1;
    cache->samples /= 2;
}

int cmd_cache_init(cmd_cache *cache, size_t capacity)
{
    memset(cache, 0, sizeof *cache);
    cache->capacity = capacity ? capacity : 1;
    /* 80% protected, as in the segmented LRUs of databases and caching libraries */
    cache->protected_max = cache->capacity - cache->capacity / 5;
    cache->nbuckets = 8;
    while (cache->nbuckets < cache->capacity * 2)
        cache->nbuckets *= 2;
    cache->buckets = calloc(cache->nbuckets, sizeof *cache->buckets);
    /* Eight counts per entry in each row: between two halvings (ten lookups per entry)
     * about one lookup lands on each count, so the least of four rows is seldom raised by
     * others' lookups. */
    size_t width = 64;
    while (width < cache->capacity * 8)
        width *= 2;
    cache->sketch_mask = width - 1;
    cache->sample_period = cache->capacity * 10;
    /* A fifth: at saturation a saga comes back to its new order and journal streams some
     * dozens of adds to their stripe later; with a twentieth they were gone by then
     * (skald-bench saga: cache hits fell from 59% to 44% of lookups), with a fifth 62%. */
    cache->window = cache->capacity / 5 ? cache->capacity / 5 : 1;
    cache->sketch = calloc(CMD_SKETCH_ROWS, width);
    if (!cache->buckets || !cache->sketch) {
        free(cache->buckets);
        free(cache->sketch);
        memset(cache, 0, sizeof *cache);
        return -ENOMEM;
    }
    return 0;
}

static void entry_free(cmd_cache_entry *e)
{
    json_decref(e->state);
    free(e);
}

static void list_free(cmd_cache_list *l)
{
    cmd_cache_entry *e = l->head;
    while (e) {
        cmd_cache_entry *next = e->next;
        entry_free(e);
        e = next;
    }
}

void cmd_cache_free(cmd_cache *cache)
{
    list_free(&cache->probation);
    list_free(&cache->protected_);
    free(cache->buckets);
    free(cache->sketch);
    memset(cache, 0, sizeof *cache);
}

static cmd_cache_list *list_of(cmd_cache *cache, const cmd_cache_entry *e)
{
    return e->protected_ ? &cache->protected_ : &cache->probation;
}

static void list_unlink(cmd_cache_list *l, cmd_cache_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
    l->count--;
}

static void list_push_tail(cmd_cache_list *l, cmd_cache_entry *e)
{
    e->next = NULL;
    e->prev = l->tail;
    if (l->tail)
        l->tail->next = e;
    l->tail = e;
    if (!l->head)
        l->head = e;
    l->count++;
}

static void list_push_head(cmd_cache_list *l, cmd_cache_entry *e)
{
    e->prev = NULL;
    e->next = l->head;
    if (l->head)
        l->head->prev = e;
    l->head = e;
    if (!l->tail)
        l->tail = e;
    l->count++;
}

/* Moves e to the head of protected, demoting protected's least recent past its bound. */
static void promote(cmd_cache *cache, cmd_cache_entry *e)
{
    list_unlink(list_of(cache, e), e);
    e->protected_ = true;
    e->refused = false; /* used again: it earned its place */
    list_push_head(&cache->protected_, e);
    while (cache->protected_.count > cache->protected_max && cache->protected_.tail) {
        cmd_cache_entry *old = cache->protected_.tail;
        list_unlink(&cache->protected_, old);
        old->protected_ = false;
        list_push_head(&cache->probation, old);
    }
}

cmd_cache_entry *cmd_cache_get(cmd_cache *cache, const char *stream_id)
{
    uint64_t hash = ev_hash_str(stream_id);
    sketch_count(cache, hash);
    cmd_cache_entry *e = cache->buckets[bucket_of(cache, hash)];
    while (e && strcmp(e->stream_id, stream_id) != 0)
        e = e->hnext;
    if (e && e != cache->protected_.head)
        promote(cache, e);
    return e;
}

void cmd_cache_mark_all_stale(cmd_cache *cache)
{
    for (cmd_cache_entry *e = cache->probation.head; e; e = e->next)
        atomic_store(&e->stale, true);
    for (cmd_cache_entry *e = cache->protected_.head; e; e = e->next)
        atomic_store(&e->stale, true);
}

static void remove_entry(cmd_cache *cache, cmd_cache_entry *e)
{
    cmd_cache_entry **p = &cache->buckets[bucket_of(cache, e->hash)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    list_unlink(list_of(cache, e), e);
    entry_free(e);
}

/* Evicts from l's least recent end, skipping entries with appends in flight and keep.
 * A refused entry that cannot go yet (in use, appends in flight, or among the last
 * `window` added) raises *allowance: it waits for its own turn and pushes no other entry
 * out in the meantime. */
static void evict_from(cmd_cache *cache, cmd_cache_list *l, const cmd_cache_entry *keep,
                       size_t *allowance)
{
    cmd_cache_entry *e = l->tail;
    while (cmd_cache_count(cache) > cache->capacity + *allowance && e) {
        cmd_cache_entry *prev = e->prev;
        bool young = e->refused && cache->adds - e->added_at < cache->window;
        if (e != keep && atomic_load(&e->pending) == 0 && !young)
            remove_entry(cache, e);
        else if (e->refused)
            (*allowance)++;
        e = prev;
    }
}

/* Whether e, about to be added, goes to probation's head: there is room, or its stream
 * was looked up more often lately than the entry it would push out. A tie keeps the one
 * already in (as Caffeine does), so one-shot streams do not displace each other's
 * betters. */
static bool admitted(const cmd_cache *cache, const cmd_cache_entry *e)
{
    if (cmd_cache_count(cache) < cache->capacity)
        return true;
    const cmd_cache_entry *victim =
        cache->probation.tail ? cache->probation.tail : cache->protected_.tail;
    /* the one eviction would take for it: entries with appends in flight stay, refused
     * ones leave anyway (a few looked at) */
    for (int i = 0; i < 8 && victim && (victim->refused || atomic_load(&victim->pending) > 0); i++)
        victim = victim->prev;
    return !victim || sketch_estimate(cache, e->hash) > sketch_estimate(cache, victim->hash);
}

cmd_cache_entry *cmd_cache_add(cmd_cache *cache, const char *stream_id, const cmd_aggregate *agg,
                               json_t *state, uint64_t version)
{
    cmd_cache_entry *e = calloc(1, sizeof *e);
    if (!e) {
        json_decref(state);
        return NULL;
    }
    snprintf(e->stream_id, sizeof e->stream_id, "%s", stream_id);
    e->hash = ev_hash_str(stream_id);
    e->agg = agg;
    e->state = state;
    e->version = version;
    atomic_init(&e->pending, 0);
    atomic_init(&e->stale, false);
    atomic_init(&e->generation, 0);
    size_t b = bucket_of(cache, e->hash);
    e->hnext = cache->buckets[b];
    cache->buckets[b] = e;
    e->added_at = ++cache->adds;
    e->refused = !admitted(cache, e);
    if (e->refused)
        list_push_tail(&cache->probation, e);
    else
        list_push_head(&cache->probation, e);
    /* the new entry is the caller's: never evicted here */
    size_t allowance = 0;
    evict_from(cache, &cache->probation, e, &allowance);
    evict_from(cache, &cache->protected_, e, &allowance);
    return e;
}
