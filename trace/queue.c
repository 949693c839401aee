/*
 * queue.c -- the bounded queue between the threads that end spans and the exporter: a
 * ring of pointers under one mutex held for a few instructions. A producer never waits
 * for the consumer: when the ring is full the span is refused (the tracer drops and
 * counts it), so a slow or dead backend costs commands nothing. The consumer is woken
 * only when a batch has gathered (or at stop); otherwise it polls at the flush interval.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "trace/trace_int.h"

struct tr_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tr_span **ring; /* guarded by mu */
    uint32_t capacity, head, count;
    uint32_t wake_at; /* a push reaching this count signals the consumer */
    bool woken;
};

int tr_queue_create(uint32_t capacity, tr_queue **out)
{
    if (capacity == 0)
        return SK_EBADINPUT;
    tr_queue *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->ring = calloc(capacity, sizeof *q->ring);
    if (!q->ring) {
        free(q);
        return -ENOMEM;
    }
    q->capacity = capacity;
    q->wake_at = capacity;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = q;
    return 0;
}

void tr_queue_destroy(tr_queue *q)
{
    if (!q)
        return;
    for (uint32_t i = 0; i < q->count; i++)
        tr_span_release(q->ring[(q->head + i) % q->capacity]);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->ring);
    free(q);
}

int tr_queue_push(tr_queue *q, tr_span *s)
{
    pthread_mutex_lock(&q->mu);
    if (q->count == q->capacity) {
        pthread_mutex_unlock(&q->mu);
        return SK_EBUSY;
    }
    q->ring[(q->head + q->count) % q->capacity] = s;
    bool signal = ++q->count == q->wake_at;
    pthread_mutex_unlock(&q->mu);
    if (signal)
        pthread_cond_signal(&q->cv);
    return 0;
}

uint32_t tr_queue_pop(tr_queue *q, tr_span **out, uint32_t max, uint32_t wait_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->mu);
    q->wake_at = max < q->capacity ? max : q->capacity;
    while (q->count < max && !q->woken)
        if (pthread_cond_timedwait(&q->cv, &q->mu, &until) == ETIMEDOUT)
            break;
    q->woken = false;
    uint32_t n = q->count < max ? q->count : max;
    for (uint32_t i = 0; i < n; i++)
        out[i] = q->ring[(q->head + i) % q->capacity];
    if (n) /* n > 0 implies capacity > 0; said for the analyzer */
        q->head = (q->head + n) % q->capacity;
    q->count -= n;
    pthread_mutex_unlock(&q->mu);
    return n;
}

uint32_t tr_queue_depth(tr_queue *q)
{
    pthread_mutex_lock(&q->mu);
    uint32_t n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void tr_queue_wake(tr_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->woken = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
