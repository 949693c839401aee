/*
 * work_pool.c -- a few threads for requests whose work may block, so no HTTP thread ever
 * does: a query waiting for min_position (up to 30 s) or reading a large page would stall
 * every connection of its HTTP thread (one thread per core by default).
 *
 * A bounded FIFO queue (a full queue answers 503 at once rather than growing) and
 * svc_work_threads threads. A job's function answers its request and calls
 * svc_request_done; the route returned 1, so the connection waits suspended meanwhile.
 * Stopping runs what is queued (each job answers, so every suspended connection resumes)
 * and joins the threads.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdlib.h>

typedef struct work_item {
    struct work_item *next;
    svc_work_fn fn;
    void *arg;
} work_item;

struct svc_work_pool {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    work_item *head, *tail; /* guarded by mu */
    size_t queued, queue_max;
    bool stopping;
    pthread_t *threads;
    size_t nthreads;
};

static void *work_main(void *arg)
{
    svc_work_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->mu);
        if (!p->head)
            break;
        work_item *w = p->head;
        p->head = w->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        w->fn(w->arg);
        free(w);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int svc_work_pool_start(size_t threads, size_t queue_max, svc_work_pool **out)
{
    svc_work_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->queue_max = queue_max;
    p->threads = calloc(threads, sizeof *p->threads);
    int rc = p->threads ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < threads; i++) {
        rc = -pthread_create(&p->threads[i], NULL, work_main, p);
        if (rc == 0)
            p->nthreads++;
    }
    if (rc) {
        svc_work_pool_stop(p);
        return rc;
    }
    *out = p;
    return 0;
}

void svc_work_pool_stop(svc_work_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
}

int svc_work_submit(svc_work_pool *p, svc_work_fn fn, void *arg)
{
    work_item *w = malloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    *w = (work_item){NULL, fn, arg};
    pthread_mutex_lock(&p->mu);
    int rc = p->stopping || p->queued >= p->queue_max ? SK_EBUSY : 0;
    if (rc == 0) {
        if (p->tail)
            p->tail->next = w;
        else
            p->head = w;
        p->tail = w;
        p->queued++;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
    if (rc)
        free(w);
    return rc;
}
