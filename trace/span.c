/*
 * span.c -- recording one span: a fixed record filled by its one owner thread and handed
 * to the exporter's queue at its end. Every function accepts NULL, so that call sites
 * never test whether tracing is on or the span was sampled.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

/*
 * Spans are reused. A record is about 4 KiB (its attributes and links are inline), so each
 * malloc was a large request that glibc served after consolidating the small chunks
 * jansson had freed, and it was freed on the exporter's thread: tr_span_start was 7% of the
 * HTTP thread in traced-commands. Records come back here when exported or dropped; the
 * pool is static, so a span that ends after the tracer stopped still has a home, and it
 * keeps nothing under AddressSanitizer (EV_UNDER_ASAN).
 */
#define SPAN_POOL_MAX 1024

static struct {
    pthread_mutex_t mu;
    uint32_t count;
    tr_span *kept[SPAN_POOL_MAX];
} pool = {PTHREAD_MUTEX_INITIALIZER, 0, {NULL}};

tr_span *tr_span_alloc(void)
{
    tr_span *s = NULL;
    pthread_mutex_lock(&pool.mu);
    if (pool.count)
        s = pool.kept[--pool.count];
    pthread_mutex_unlock(&pool.mu);
    return s ? s : malloc(sizeof *s);
}

void tr_span_release(tr_span *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&pool.mu);
    bool kept = !EV_UNDER_ASAN && pool.count < SPAN_POOL_MAX;
    if (kept)
        pool.kept[pool.count++] = s;
    pthread_mutex_unlock(&pool.mu);
    if (!kept)
        free(s);
}

void tr_spans_drain(void)
{
    pthread_mutex_lock(&pool.mu);
    while (pool.count)
        free(pool.kept[--pool.count]);
    pthread_mutex_unlock(&pool.mu);
}

static tr_span *span_new(const char *name, tr_kind kind)
{
    tr_span *s = tr_span_alloc();
    if (!s) {
        tr_count_dropped(1);
        return NULL;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    s->kind = kind;
    s->has_parent = false;
    s->batch = false;
    s->error = false;
    s->nattrs = s->nlinks = s->links_dropped = 0;
    s->end_us = 0;
    s->start_us = ev_now_us();
    s->ctx = (tr_ctx){.valid = true, .flags = TR_FLAG_SAMPLED};
    tr_random_ids(s->ctx.span_id, sizeof s->ctx.span_id);
    return s;
}

tr_span *tr_span_start(const char *name, tr_kind kind, const tr_ctx *parent)
{
    if (!tr_enabled())
        return NULL;
    bool child = parent && parent->valid;
    if (child ? !(parent->flags & TR_FLAG_SAMPLED) : !tr_sample_root())
        return NULL;
    tr_span *s = span_new(name, kind);
    if (!s)
        return NULL;
    if (child) {
        memcpy(s->ctx.trace_id, parent->trace_id, sizeof s->ctx.trace_id);
        memcpy(s->parent_id, parent->span_id, sizeof s->parent_id);
        s->has_parent = true;
    } else {
        tr_random_ids(s->ctx.trace_id, sizeof s->ctx.trace_id);
    }
    return s;
}

tr_span *tr_span_start_batch(const char *name, tr_kind kind)
{
    if (!tr_enabled())
        return NULL;
    tr_span *s = span_new(name, kind);
    if (s)
        s->batch = true;
    return s;
}

tr_ctx tr_span_ctx(const tr_span *s)
{
    return s ? s->ctx : (tr_ctx){0};
}

static tr_attr *attr_slot(tr_span *s, const char *key)
{
    for (uint32_t i = 0; i < s->nattrs; i++)
        if (strcmp(s->attrs[i].key, key) == 0)
            return &s->attrs[i];
    if (s->nattrs == TR_ATTRS_MAX)
        return NULL;
    tr_attr *a = &s->attrs[s->nattrs++];
    a->key = key;
    return a;
}

void tr_span_attr_str(tr_span *s, const char *key, const char *value)
{
    tr_attr *a = s ? attr_slot(s, key) : NULL;
    if (!a)
        return;
    a->is_int = false;
    size_t n = value ? strlen(value) : 0;
    if (n >= sizeof a->s) { /* cut, but never inside a UTF-8 sequence */
        n = sizeof a->s - 1;
        while (n > 0 && ((unsigned char)value[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(a->s, value ? value : "", n);
    a->s[n] = '\0';
}

void tr_span_attr_int(tr_span *s, const char *key, int64_t value)
{
    tr_attr *a = s ? attr_slot(s, key) : NULL;
    if (!a)
        return;
    a->is_int = true;
    a->i = value;
}

void tr_span_link(tr_span *s, const tr_ctx *linked)
{
    if (!s || !linked || !linked->valid)
        return;
    if (s->nlinks == TR_LINKS_MAX) {
        s->links_dropped++;
        return;
    }
    s->links[s->nlinks++] = *linked;
}

void tr_span_link_event(tr_span *s, const ev_event *ev)
{
    if (!s)
        return;
    tr_ctx c = tr_ctx_of_event(ev);
    tr_span_link(s, &c);
}

void tr_span_set_error(tr_span *s, const char *message)
{
    if (!s)
        return;
    s->error = true;
    if (message && *message)
        tr_span_attr_str(s, "error.message", message);
}

/* A batch span is kept if a link is sampled, and sits in the trace of its sampled links
 * when they all share one (see tr_span_start_batch): unsampled traces are in no backend,
 * so an unsampled neighbour in the batch does not take the span out of the trace. */
static bool settle_batch(tr_span *s)
{
    const tr_ctx *first = NULL;
    bool one_trace = true;
    for (uint32_t i = 0; i < s->nlinks; i++) {
        if (!(s->links[i].flags & TR_FLAG_SAMPLED))
            continue;
        if (!first)
            first = &s->links[i];
        else if (memcmp(s->links[i].trace_id, first->trace_id, 16) != 0)
            one_trace = false;
    }
    if (!first)
        return false;
    if (one_trace) {
        memcpy(s->ctx.trace_id, first->trace_id, 16);
        memcpy(s->parent_id, first->span_id, 8);
        s->has_parent = true;
    } else {
        tr_random_ids(s->ctx.trace_id, sizeof s->ctx.trace_id);
    }
    return true;
}

void tr_span_end(tr_span *s)
{
    if (!s)
        return;
    s->end_us = ev_now_us();
    if (s->batch && !settle_batch(s)) {
        tr_span_release(s);
        return;
    }
    if (s->links_dropped)
        tr_span_attr_int(s, "skald.links_dropped", s->links_dropped);
    tr_submit(s);
}
