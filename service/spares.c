/*
 * spares.c -- blocks a request takes and gives back (its svc_request and its
 * command_call), kept for the next request instead of freed.
 *
 * Why: both are larger than 1 KiB (1.3 and 3 KiB), so each calloc is a "large" request
 * for glibc's malloc, which first consolidates every fast-bin chunk that jansson's small
 * frees left behind. perf of `skald-bench http-commands` found that consolidation and
 * the calloc at 4-5% of the HTTP thread (docs/benchmarks.md). A LIFO of at most `max`
 * blocks under a mutex (one HTTP thread takes, the same thread gives back in
 * on_completed; uncontended) costs a memset. Blocks past `max` are freed, so a burst of
 * connections does not stay allocated, and svc_spares_destroy frees the rest.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct svc_spares {
    pthread_mutex_t mu;
    size_t size, max, count;
    void **blocks;
};

int svc_spares_create(size_t size, size_t max, svc_spares **out)
{
    svc_spares *s = calloc(1, sizeof *s);
    void **blocks = calloc(max ? max : 1, sizeof *blocks);
    if (!s || !blocks) {
        free(s);
        free(blocks);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->size = size;
    s->max = EV_UNDER_ASAN ? 0 : max; /* a block used after its request must be reported */
    s->blocks = blocks;
    *out = s;
    return 0;
}

void svc_spares_destroy(svc_spares *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->count; i++)
        free(s->blocks[i]);
    free(s->blocks);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void *svc_spares_take(svc_spares *s, size_t size)
{
    if (!s || size > s->size)
        return calloc(1, size);
    void *b = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->count)
        b = s->blocks[--s->count];
    pthread_mutex_unlock(&s->mu);
    if (!b)
        return calloc(1, s->size); /* full size: it may come back for a larger taker */
    memset(b, 0, size);
    return b;
}

void svc_spares_give(svc_spares *s, void *block)
{
    if (!block)
        return;
    if (s) {
        pthread_mutex_lock(&s->mu);
        int kept = s->count < s->max;
        if (kept)
            s->blocks[s->count++] = block;
        pthread_mutex_unlock(&s->mu);
        if (kept)
            return;
    }
    free(block);
}
