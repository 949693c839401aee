/*
 * exporter.c -- the thread that takes spans off the queue in batches (up to batch_max,
 * or whatever gathered within the flush interval), encodes them for the chosen backend
 * and POSTs them. A batch the backend does not take (no answer, refused, not 2xx) is
 * dropped and counted, never retried: a retry would only hold later spans back, and
 * the commands never wait for any of this.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

struct tr_exporter {
    tr_config cfg;
    char endpoint[1024], service[128];
    tr_url url;
    tr_queue *q;
    tr_span **batch; /* exporter thread only */
    atomic_bool stopping;
    pthread_t thread;
};

static void export_batch(tr_exporter *x, uint32_t n)
{
    char *body = x->cfg.exporter == TR_EXPORTER_ZIPKIN ? tr_zipkin_encode(x->batch, n, x->service)
                                                       : tr_otlp_encode(x->batch, n, x->service);
    int status = body ? tr_http_post(&x->url, body, strlen(body), x->cfg.timeout_ms) : -ENOMEM;
    if (status >= 200 && status < 300) {
        tr_count_exported(n);
    } else {
        tr_count_dropped(n);
        tr_count_batch_failed();
        char why[32];
        snprintf(why, sizeof why, "%d", status);
        sk_log(SK_LOG_DEBUG, "trace", "span export failed", "endpoint", x->endpoint, "status",
               status > 0 ? why : sk_strerror(status), SK_LOG_END);
    }
    free(body);
    for (uint32_t i = 0; i < n; i++)
        tr_span_release(x->batch[i]);
}

static void *exporter_main(void *arg)
{
    tr_exporter *x = arg;
    for (;;) {
        bool stop = atomic_load(&x->stopping);
        uint32_t n =
            tr_queue_pop(x->q, x->batch, x->cfg.batch_max, stop ? 0 : x->cfg.flush_interval_ms);
        if (n)
            export_batch(x, n);
        else if (stop)
            return NULL;
    }
}

int tr_exporter_start(const tr_config *cfg, tr_queue *q, tr_exporter **out, sk_error *err)
{
    tr_exporter *x = calloc(1, sizeof *x);
    if (!x)
        return -ENOMEM;
    x->cfg = *cfg;
    x->q = q;
    snprintf(x->endpoint, sizeof x->endpoint, "%s", cfg->endpoint);
    snprintf(x->service, sizeof x->service, "%s", cfg->service_name);
    x->cfg.endpoint = x->endpoint;
    x->cfg.service_name = x->service;
    int rc = tr_url_parse(x->endpoint, &x->url);
    if (rc) {
        sk_error_set(err, rc, "trace_endpoint", "'%s' is not an http://host:port/path URL",
                     cfg->endpoint);
        free(x);
        return rc;
    }
    x->batch = calloc(cfg->batch_max, sizeof *x->batch);
    if (!x->batch) {
        free(x);
        return -ENOMEM;
    }
    rc = -pthread_create(&x->thread, NULL, exporter_main, x);
    if (rc) {
        free(x->batch);
        free(x);
        return rc;
    }
    *out = x;
    return 0;
}

void tr_exporter_stop(tr_exporter *x)
{
    if (!x)
        return;
    atomic_store(&x->stopping, true);
    tr_queue_wake(x->q);
    pthread_join(x->thread, NULL);
    free(x->batch);
    free(x);
}
