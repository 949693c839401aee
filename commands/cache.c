/*
 * cache.c -- the hot aggregates of one stripe: a hash table plus two recency lists.
 *
 * The bus keeps one cache per stripe and touches it only under that stripe's lock, so
 * nothing here locks. It is a segmented LRU (commands_int.h says how). Eviction walks from
 * the least recent end and skips entries with appends in flight (their state is ahead of
 * the log); the entry just added is never evicted.
 */
#include "commands/commands_int.h"

#include <errno.h>
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
    return cache->buckets ? 0 : -ENOMEM;
}

static void entry_free(cmd_cache_entry *e)
{
    cmd_state_free(e->agg, e->state);
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
    list_push_head(&cache->protected_, e);
    while (cache->protected_.count > cache->protected_max && cache->protected_.tail) {
        cmd_cache_entry *old = cache->protected_.tail;
        list_unlink(&cache->protected_, old);
        old->protected_ = false;
        list_push_head(&cache->probation, old);
    }
}

cmd_cache_entry *cmd_cache_get(cmd_cache *cache, const char *stream_id, uint64_t hash)
{
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

/* Evicts from l's least recent end, skipping entries with appends in flight and keep. */
static void evict_from(cmd_cache *cache, cmd_cache_list *l, const cmd_cache_entry *keep)
{
    cmd_cache_entry *e = l->tail;
    while (cmd_cache_count(cache) > cache->capacity && e) {
        cmd_cache_entry *prev = e->prev;
        if (e != keep && atomic_load(&e->pending) == 0)
            remove_entry(cache, e);
        e = prev;
    }
}

cmd_cache_entry *cmd_cache_add(cmd_cache *cache, const char *stream_id, uint64_t hash,
                               const cmd_aggregate *agg, void *state, uint64_t version)
{
    cmd_cache_entry *e = calloc(1, sizeof *e);
    if (!e) {
        cmd_state_free(agg, state);
        return NULL;
    }
    size_t len = strnlen(stream_id, sizeof e->stream_id - 1);
    memcpy(e->stream_id, stream_id, len); /* calloc'd: the terminator is there */
    e->hash = hash;
    e->agg = agg;
    e->state = state;
    e->version = version;
    atomic_init(&e->pending, 0);
    atomic_init(&e->stale, false);
    atomic_init(&e->generation, 0);
    size_t b = bucket_of(cache, hash);
    e->hnext = cache->buckets[b];
    cache->buckets[b] = e;
    list_push_head(&cache->probation, e);
    /* the new entry is the caller's: never evicted here */
    evict_from(cache, &cache->probation, e);
    evict_from(cache, &cache->protected_, e);
    return e;
}
