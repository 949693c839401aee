/*
 * serve.c -- `skald serve`: open everything, listen, wait for a signal, drain, close.
 *
 * Start-up order is the order of dependence: the event registry, the log (its opening is
 * the recovery), snapshots, the bus, tokens, the idempotency journal; only then does the
 * server listen, and /readyz turns 200 after the first successful listen. Shutdown walks
 * back: stop accepting, let commands in flight finish (bounded), close the bus, close
 * the log (flush + checkpoint), sync the idempotency journal.
 *
 * Signals are blocked in every thread and taken synchronously by the main thread with
 * sigtimedwait, which also ticks once a second to sync the idempotency journal.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

extern const char svc_openapi_doc[];
extern const size_t svc_openapi_doc_len;

#define DRAIN_TIMEOUT_MS    30000
#define FEED_END_TIMEOUT_MS 2000 /* for the feed's streams to send their last bytes */

static int fail(const char *what, const sk_error *err, int rc)
{
    svc_log(SK_LOG_ERROR, what, "error", err && err->message[0] ? err->message : sk_strerror(rc),
            "code", sk_err_name(rc), SVC_END);
    return 1;
}

/* The flag's folder, else the one this binary ships (ev_shipped_path). */
static int schemas_dir(const char *given, const char *what, char *out, size_t size, sk_error *err)
{
    if (given) {
        snprintf(out, size, "%s", given);
        return 0;
    }
    int rc = ev_shipped_path(what, out, size);
    if (rc)
        return sk_error_set(err, rc, "", "no %s folder at %s (installed?); pass --%s", what, out,
                            strcmp(what, "events/schemas") == 0 ? "schemas" : "command-schemas");
    return 0;
}

/* The projections and queries roles: the engines, each with what it needs. */
static int open_read_side(svc_app *app, const char *schemas, sk_error *err)
{
    (void)schemas;
    char models[4096], dir[4096];
    snprintf(dir, sizeof dir, "%s/projections", svc_cfg.data_dir);
    if (!(svc_cfg.roles & (SVC_SERVES_PROJECTIONS | SVC_SERVES_QUERIES)))
        return 0;
    if (svc_cfg.models_dir) {
        snprintf(models, sizeof models, "%s", svc_cfg.models_dir);
    } else if (ev_shipped_path("projections/models", models, sizeof models) != 0) {
        return sk_error_set(err, -ENOENT, "", "no read models at %s (installed?); pass --models",
                            models);
    }
    int rc = 0;
    if (svc_cfg.roles & SVC_SERVES_PROJECTIONS) {
        proj_config pc = {.log = app->log, .events = app->events, .models_dir = models, .dir = dir};
        proj_source kafka; /* a read replica (replica.c): copied by proj_engine_open */
        if (svc_cfg.source_kafka) {
            rc = svc_replica_source(app, &kafka, err);
            pc.source = &kafka;
        }
        if (rc == 0)
            rc = proj_engine_open(&pc, &app->projections, err);
        if (rc == 0)
            rc = proj_engine_start(app->projections, err);
    }
    if (rc == 0 && (svc_cfg.roles & SVC_SERVES_QUERIES)) {
        snprintf(app->projections_dir, sizeof app->projections_dir, "%s", dir);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return sk_error_set(err, -errno, "", "cannot create %s", dir);
        qry_source src;
        if (app->projections)
            svc_model_source_engine(app->projections, &src);
        else
            svc_model_source_dir(app->projections_dir, &src);
        char secret[4200];
        snprintf(secret, sizeof secret, "%s/cursor.key", dir);
        rc = qry_engine_open(models, &src, secret, &app->queries, err);
        if (rc == 0 &&
            svc_work_pool_start(SVC_QUERY_THREADS, SVC_QUERY_QUEUE_MAX, &app->query_pool) != 0)
            rc = sk_error_set(err, -ENOMEM, "", "cannot start the query threads");
    }
    return rc;
}

/* A read replica (--source=kafka): the read side only, fed by the topic. */
static int open_replica(svc_app *app, const char *schemas, sk_error *err)
{
    int rc = svc_metrics_create(cmd_domains, &app->metrics);
    if (rc)
        return sk_error_set(err, rc, "", "out of memory");
    return open_read_side(app, schemas, err);
}

static int open_app(svc_app *app, sk_error *err)
{
    const char *d = svc_cfg.data_dir;
    int rc;
    /* configuration first: a bad tokens file must leave the data directory untouched */
    if (svc_cfg.tokens_file && (rc = svc_auth_load(svc_cfg.tokens_file, &app->auth, err)) != 0)
        return rc;
    if (mkdir(d, 0755) != 0 && errno != EEXIST)
        return sk_error_set(err, -errno, "", "cannot create data directory %s: %s", d,
                            strerror(errno));
    char schemas[4096], command_schemas[4096];
    if ((rc = schemas_dir(svc_cfg.schemas_dir, "events/schemas", schemas, sizeof schemas, err)) ||
        (rc = schemas_dir(svc_cfg.command_schemas_dir, "commands/schemas", command_schemas,
                          sizeof command_schemas, err)))
        return rc;
    rc = ev_registry_open(schemas, d, &app->events, err);
    if (rc)
        return rc;
    char path[4096];
    if (svc_cfg.source_kafka) /* a read replica: no log; events come from Kafka */
        return open_replica(app, schemas, err);
    snprintf(path, sizeof path, "%s/log", d);
    store_config lc;
    store_config_init(&lc, path);
    lc.fsync_mode = svc_cfg.fsync_mode;
    lc.io = svc_faults_io();
    /* Only the commands role writes the log; other roles follow it, also from another
     * process on the same data directory (store.h, Subscriptions). */
    lc.read_only = !(svc_cfg.roles & SVC_SERVES_COMMANDS);
    rc = store_log_open(&lc, &app->log, err);
    if (rc)
        return rc;
    rc = svc_metrics_create(cmd_domains, &app->metrics);
    if (rc)
        return sk_error_set(err, rc, "", "out of memory");
    rc = open_read_side(app, schemas, err);
    if (rc == 0 && (svc_cfg.roles & SVC_SERVES_FEED))
        rc = svc_feed_create(app, &app->feed, err);
    if (rc == 0)
        rc = svc_relay_start(app, err);
    if (rc || !(svc_cfg.roles & SVC_SERVES_COMMANDS))
        return rc;
    snprintf(path, sizeof path, "%s/snapshots.db", d);
    rc = store_snapshots_open(path, 0, &app->snapshots, err);
    if (rc)
        return rc;

    store_log_set_batch_observer(app->log, svc_metrics_batch, app->metrics);
    cmd_bus_config bc = {
        .log = app->log,
        .events = app->events,
        .command_schemas_dir = command_schemas,
        .domains = cmd_domains,
        .snapshots = app->snapshots,
        .snapshot_every = svc_cfg.snapshot_every,
        .cache_max = svc_cfg.cache_max,
        .snapshot_rules = svc_cfg.snapshot_rules,
        .nsnapshot_rules = svc_cfg.nsnapshot_rules,
    };
    rc = cmd_bus_create(&bc, &app->bus, err);
    if (rc)
        return rc;
    cmd_idem_config ic;
    cmd_idem_config_init(&ic, d);
    ic.window_s = svc_cfg.idempotency_window_s;
    ic.log = app->log;
    rc = cmd_idem_open(&ic, &app->idem, err);
    if (rc)
        return rc;
    app->openapi = svc_openapi_doc;
    app->openapi_len = svc_openapi_doc_len;
    return svc_sagas_open(app, err);
}

/* Closes in reverse order; returns the log's close status. */
static int close_app(svc_app *app)
{
    svc_feed_stop(app->feed, 0); /* its subscriptions close before the log */
    svc_feed_destroy(app->feed);
    svc_work_pool_stop(app->query_pool); /* answers what is queued: the server is stopped */
    qry_engine_close(app->queries);
    proj_engine_close(app->projections); /* its subscriptions close before the log */
    svc_replica_free(app);               /* the workers' source: after they stopped */
    svc_sagas_close(app);                /* it sends through the bus */
    /* flushes what is in flight, checkpoints, closes its subscription; after the engine,
     * since a replica's workers read the --kafka-config settings it keeps */
    svc_relay_stop(app);
    cmd_bus_destroy(app->bus);
    int rc = store_log_close(app->log);
    store_snapshots_close(app->snapshots);
    int irc = cmd_idem_close(app->idem);
    svc_auth_free(app->auth);
    svc_metrics_free(app->metrics);
    ev_registry_destroy(app->events);
    return rc ? rc : irc;
}

static int write_port_file(uint16_t port)
{
    if (!svc_cfg.port_file)
        return 0;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", svc_cfg.port_file);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0 || rename(tmp, svc_cfg.port_file) != 0)
        return -errno;
    return 0;
}

/* Waits for SIGTERM/SIGINT, syncing the idempotency journal and recovering a failed log
 * (recovery.c) about once a second. */
static int wait_for_signal(svc_app *app, const sigset_t *set)
{
    svc_recovery rec = {0};
    for (;;) {
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        if (app->idem)                      /* the commands role */
            (void)cmd_idem_sync(app->idem); /* a failure is logged, kept and shown in /readyz */
        if (app->bus)
            svc_recovery_tick(app, &rec);
    }
}

int svc_serve_main(int argc, char **argv)
{
    int prc = svc_config_parse(argc, argv);
    if (prc)
        return prc > 0 ? 0 : 2;
    /* every layer's messages become this process's JSON lines, at --log-level */
    sk_log_set_level(svc_cfg.log_level);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread started later inherits it */
    signal(SIGPIPE, SIG_IGN);

    svc_app app;
    memset(&app, 0, sizeof app);
    sk_error err = {0};
    int rc = svc_tracing_start(&err);
    if (rc) {
        fail("cannot start tracing", &err, rc);
        return 1;
    }
    rc = open_app(&app, &err);
    if (rc) {
        fail("start-up failed", &err, rc);
        close_app(&app);
        svc_tracing_stop();
        return 1;
    }
    svc_server *srv = NULL;
    uint16_t port = 0;
    rc = svc_server_start(&app, &srv, &port, &err);
    if (rc) {
        fail("cannot listen", &err, rc);
        close_app(&app);
        svc_tracing_stop();
        return 1;
    }
    atomic_store(&app.ready, true);
    char url[128];
    snprintf(url, sizeof url, "%s://%s:%u", svc_cfg.tls_cert ? "https" : "http",
             svc_cfg.listen_host, port);
    char roles[96] = "";
    for (unsigned bit = 1; bit <= SVC_SERVES_FEED; bit <<= 1)
        if (svc_cfg.roles & bit)
            snprintf(roles + strlen(roles), sizeof roles - strlen(roles), "%s%s",
                     roles[0] ? "," : "", svc_role_name(bit));
    svc_log(SK_LOG_NOTICE, "listening", "url", url, "data", svc_cfg.data_dir, "roles", roles,
            "fsync", store_fsync_mode_name(svc_cfg.fsync_mode), "auth",
            app.auth ? "tokens" : "none", SVC_END);
    if (write_port_file(port) != 0)
        svc_log(SK_LOG_ERROR, "cannot write the port file", "file", svc_cfg.port_file, SVC_END);

    int sig = wait_for_signal(&app, &set);
    atomic_store(&app.draining, true); /* before the line: a test waits for it */
    svc_log(SK_LOG_NOTICE, "stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", SVC_END);
    svc_feed_stop(app.feed, FEED_END_TIMEOUT_MS); /* streams end; no suspended connection */
    svc_server_stop(srv, DRAIN_TIMEOUT_MS);
    rc = close_app(&app);
    svc_tracing_stop(); /* after every thread that records spans has stopped */
    if (rc) {
        fail("shutdown: flushing the log failed", NULL, rc);
        return 1;
    }
    svc_log(SK_LOG_NOTICE, "stopped", SVC_END);
    return 0;
}
