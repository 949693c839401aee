/*
 * serve_int.h -- private to service/: the pieces of `skald serve`.
 *
 *   config.c       flags and SKALD_* variables -> svc_config (the process-wide config)
 *   logline.c      one JSON object per log line
 *   auth.c         the tokens file, constant-time lookup, roles
 *   metrics.c      counters and histograms, rendered in Prometheus text format
 *   http.c         libmicrohttpd: requests, bodies, suspension, responses, problems
 *   framing.c      the strict checks of a request's head (RFC 9112) before any route
 *   conn_guard.c   request deadlines, the reserve past --conn-max, the body budget
 *   spares.c       requests' blocks reused instead of freed (fewer large mallocs)
 *   routes.c       the route table and the small routes (health, metrics, ...)
 *   command_routes.c  commands and the NDJSON batch
 *   read_routes.c  reads of a stream and of the log
 *   feed.c         the live feed's threads and buffers; feed_routes.c its route
 *   relay.c        the relay role: its settings file, start and stop, metrics, readiness
 *   dashboard.c    the page at / and its files, compiled in
 *   serve.c        start-up, signals, drain, shutdown
 */
#ifndef SKALD_SERVE_INT_H
#define SKALD_SERVE_INT_H

#include "commands/commands.h"
#include "projections/projections.h"
#include "queries/queries.h"
#include "sagas/sagas.h"
#include "service/service.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "trace/trace.h"

/* ---- config.c ---- */
typedef struct svc_config {
    const char *data_dir;
    char listen_host[64];
    uint16_t listen_port;
    tr_exporter_kind trace_exporter; /* --trace-exporter (below); here, it fills a hole */
    const char *schemas_dir;
    const char *command_schemas_dir;
    const char *tokens_file;
    const char *tls_cert, *tls_key;
    store_fsync_mode fsync_mode;
    uint32_t threads;
    uint32_t queue_max;
    uint64_t body_max;
    uint32_t timeout_s;
    /* Connections (conn_guard.c): --conn-max open, --conn-reserve more for probes and
     * tokens, at most --conn-per-ip from one address; a request's head and body must
     * arrive within --request-timeout (--reserve-timeout-ms in the reserve); request
     * bodies hold at most --pending-body-max bytes in all. */
    uint32_t conn_max, conn_reserve, conn_per_ip;
    uint32_t request_timeout_s, reserve_timeout_ms;
    uint64_t pending_body_max;
    const char *tls_priorities; /* GnuTLS priority string (--tls-priorities) */
    uint64_t idempotency_window_s;
    uint32_t snapshot_every;
    cmd_snapshot_rule snapshot_rules[CMD_SNAPSHOT_RULES_MAX]; /* --snapshot-every-type */
    size_t nsnapshot_rules;
    uint32_t cache_max;
    const char *port_file;
    sk_log_level log_level; /* --log-level; also set with sk_log_set_level */
    unsigned roles;         /* SVC_SERVES_*: what this process runs (--roles) */
    const char *models_dir; /* --models: the read models' SQL files */
    /* the live feed: --feed-max streams at once, --feed-buffer bytes each before it waits
     * (then overflows), a heartbeat after --feed-heartbeat-ms of silence */
    uint32_t feed_max;
    uint64_t feed_buffer_bytes;
    uint32_t feed_heartbeat_ms;
    /* The relay (--kafka-*): it runs only with brokers given. */
    const char *kafka_brokers;
    const char *kafka_topic_prefix; /* NULL: "skald" */
    uint32_t kafka_partitions;      /* when the relay creates the topic */
    uint32_t kafka_replication;
    const char *kafka_config; /* a file of extra librdkafka settings, NAME=VALUE lines */
    /* --source: where the projections read events. false: the local log; true: the
     * relay's topic <prefix>.events on --kafka-brokers (a read replica, no local log). */
    bool source_kafka;
    /* Tracing (--trace-*; docs/tracing.md): spans exported when an exporter is set. */
    const char *trace_endpoint; /* NULL: the exporter's default local endpoint */
    double trace_sample;        /* parent-based ratio of new traces; default 1 */
} svc_config;

/* Process roles (--roles): what one `skald serve` runs. `commands` also serves the log's
 * own reads (/v1/streams, /v1/events). */
enum {
    SVC_SERVES_COMMANDS = 1u << 0,
    SVC_SERVES_PROJECTIONS = 1u << 1,
    SVC_SERVES_QUERIES = 1u << 2,
    SVC_SERVES_RELAY = 1u << 3,
    SVC_SERVES_SAGAS = 1u << 4,
    SVC_SERVES_FEED = 1u << 5,
};
/* The roles that exist in this version: the default of --roles. The relay runs only
 * when --kafka-brokers is given (without it the default leaves it out). */
#define SVC_SERVES_ALL                                                                             \
    (SVC_SERVES_COMMANDS | SVC_SERVES_PROJECTIONS | SVC_SERVES_QUERIES | SVC_SERVES_FEED |         \
     SVC_SERVES_RELAY | SVC_SERVES_SAGAS)
/* "commands,queries" -> bits; SK_EBADINPUT naming an unknown or not yet available role. */
int svc_roles_parse(const char *text, unsigned *out, sk_error *err);
const char *svc_role_name(unsigned role);

/* The process-wide configuration (the one global the style allows). */
extern svc_config svc_cfg;

/* Fills svc_cfg from argv (after "serve") and the environment. 0, 1 when --help was
 * printed, or -1 after printing a usage error naming the flag. */
int svc_config_parse(int argc, char **argv);
/* Parses "Product=50,Order=0" into rules, each naming an aggregate of cmd_domains;
 * SK_EBADINPUT with a message naming the part at fault. */
int svc_snapshot_rules_parse(const char *text, cmd_snapshot_rule *rules, size_t *count,
                             sk_error *err);
/* 1 if host is a loopback address or "localhost". */
int svc_host_is_loopback(const char *host);

/* ---- logline.c ---- */
/* The service's log lines, through the one logger of events/log.c (subsystem "service"):
 * {"ts","level","subsystem","msg", ...fields} on stderr, from key, value pairs (at most
 * 16; a value marked number is written unquoted). String values and the message have
 * any access_token= value redacted. */
void svc_log_kv(sk_log_level level, const char *msg, const sk_log_field *fields, size_t count);
/* The same with string fields given as key, value pairs ending with SVC_END (NULL or
 * empty values are left out). */
void svc_log(sk_log_level level, const char *msg, ...);
#define SVC_END SK_LOG_END /* ends svc_log's pairs */

/* ---- auth.c ---- */
enum { SVC_ROLE_PRODUCER = 1, SVC_ROLE_READER = 2, SVC_ROLE_ADMIN = 4 };
/* In a route's roles, not a role: the token may also come as ?access_token= (EventSource
 * cannot send headers). No token carries it. */
enum { SVC_AUTH_QUERY_TOKEN = 1u << 8 };
typedef struct svc_auth svc_auth;
int svc_auth_load(const char *path, svc_auth **out, sk_error *err);
void svc_auth_free(svc_auth *auth);
/* Looks the bearer token up in constant time with respect to the tokens' contents.
 * 1 and *roles, *principal (borrowed) when known; 0 otherwise. */
int svc_auth_check(const svc_auth *auth, const char *token, unsigned *roles,
                   const char **principal);

/* ---- metrics.c ---- */
typedef enum svc_outcome {
    SVC_OUT_OK = 0,
    SVC_OUT_REJECTED,   /* 422 */
    SVC_OUT_CONFLICT,   /* 409 */
    SVC_OUT_INVALID,    /* 400, 404, 413, 415 */
    SVC_OUT_REPLAYED,   /* idempotent repeat */
    SVC_OUT_OVERLOADED, /* 503 queue full */
    SVC_OUT_ERROR,      /* 5xx */
    SVC_OUT_COUNT
} svc_outcome;
typedef struct svc_metrics svc_metrics;
int svc_metrics_create(const cmd_domain *const *domains, svc_metrics **out);
void svc_metrics_free(svc_metrics *m);
/* command: a known command name or anything else (counted as "unknown"). */
void svc_metrics_command(svc_metrics *m, const char *command, svc_outcome outcome, double seconds);
void svc_metrics_batch(void *m, const store_batch_stats *st); /* a store_batch_cb */
void svc_metrics_http(svc_metrics *m, unsigned status);
/* Renders everything; the caller frees the string. */
char *svc_metrics_render(svc_metrics *m, store_log *log, cmd_bus *bus, uint64_t in_flight);

/* ---- http.c / routes.c / serve.c ---- */
typedef struct svc_server svc_server;
typedef struct svc_feed svc_feed;

/* Everything the routes use. */
typedef struct svc_app {
    store_log *log;
    ev_registry *events;
    store_snapshots *snapshots;
    cmd_bus *bus;
    svc_auth *auth; /* NULL: no tokens file */
    svc_metrics *metrics;
    cmd_idem *idem;
    proj_engine *projections;         /* NULL without the projections role */
    qry_engine *queries;              /* NULL without the queries role */
    struct svc_work_pool *query_pool; /* runs the queries, off the HTTP threads */
    svc_feed *feed;                   /* NULL without the feed role */
    saga_engine *sagas;               /* NULL without the sagas role */
    store_relay *relay;               /* NULL without the relay role (or without --kafka-brokers) */
    struct svc_replica *replica;      /* --source=kafka: the projections' Kafka source */
    char projections_dir[4096];       /* DATA/projections */
    const char *openapi;              /* the document served at /v1/openapi.json */
    size_t openapi_len;
    struct svc_conn_guard *conns;   /* set by svc_server_start */
    struct svc_spares *spares;      /* set by svc_server_start: requests' blocks (spares.c) */
    atomic_uint_fast64_t in_flight; /* commands accepted and not answered */
    /* commands accepted whose request libmicrohttpd has not completed (answer sent or
     * connection gone): a stop waits for these too, so an answer decided is also sent */
    atomic_uint_fast64_t unsent;
    atomic_bool ready;
    atomic_bool draining;
    /* storage.c: the last append that failed for want of space (0: none since the last
     * append that wrote), its error, and how many did */
    atomic_int_fast64_t storage_full_us;
    atomic_int storage_error;
    atomic_uint_fast64_t storage_full_total;
} svc_app;

/* ---- storage.c ---- */
/* 1 for the errors of a full disk (ENOSPC, EDQUOT, EFBIG). */
int svc_storage_error(int status);
/* After each command's append: status its outcome, events how many it wrote. */
void svc_storage_note(svc_app *app, int status, uint32_t events);
/* 1 and why while the disk counts as full (for /readyz); else 0. */
int svc_storage_full(svc_app *app, char *why, size_t size);
/* Appends skald_storage_full and skald_storage_full_total to text (taken; NULL on
 * -ENOMEM). */
/* Appends printf-formatted lines to text; frees it and returns NULL when out of memory. */
char *svc_metrics_append(char *text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *svc_metrics_storage(svc_app *app, char *text);

/* A request in flight. Routes read it and answer through svc_answer* / svc_problem. */
/* The log's I/O seam with test faults when SKALD_FAULT_FILE is set (faults.c), else
 * NULL (the real one). */
const store_io *svc_faults_io(void);

/* Recovery of a failed log in place (recovery.c); main thread only. */
typedef struct svc_recovery {
    uint64_t next_try_ms; /* monotonic time of the next try */
    uint32_t backoff_ms;  /* 0 while the log is not failed */
} svc_recovery;
/* Called about once a second: recovers the log if it is FAILED and the backoff allows. */
void svc_recovery_tick(svc_app *app, svc_recovery *rec);

typedef struct svc_request svc_request;
enum { SVC_BODY_NONE = 0, SVC_BODY_JSON, SVC_BODY_NDJSON };
typedef struct svc_route {
    const char *method;
    const char *path; /* ending in "{}": the rest of the path is the route's argument */
    unsigned roles;   /* any of these (admin always); 0: no token needed */
    int body;         /* SVC_BODY_*: the Content-Type required */
    /* 0: answered; 1: the answer comes later from another thread (svc_request_done) */
    int (*run)(svc_request *rq);
    unsigned serves; /* the process role (SVC_SERVES_*) it belongs to; 0: every process */
} svc_route;
extern const svc_route svc_routes[];
extern const size_t svc_nroutes;

struct svc_request {
    svc_app *app;
    struct MHD_Connection *conn;
    const svc_route *route;
    char arg[1024]; /* the path argument, decoded */
    char request_id[EV_UUID_TEXT_SIZE];
    const char *principal;
    int64_t started_us;
    char *body;
    size_t body_len, body_cap; /* body_cap bytes are taken from the body budget */
    int too_large, ran;
    int over_budget;            /* the body budget was spent: 503 at the end */
    int close;                  /* answer with Connection: close (bad framing, reserve) */
    int head;                   /* a HEAD request, run as GET */
    int counted;                /* counted in app->unsent until completed */
    struct svc_conn_slot *slot; /* the connection's, or NULL */
    pthread_mutex_t mu;         /* guards suspended/ready between the HTTP and completer threads */
    int suspended, ready;
    unsigned status;
    char *answer; /* malloc'd; handed to libmicrohttpd */
    size_t answer_len;
    const char *answer_type;
    unsigned retry_after; /* seconds; 0: no header */
    int replayed;         /* Idempotent-Replayed: true */
    void *state;          /* the route's, freed with state_free */
    /* more answer headers: name, value pairs ending with NULL, static (the dashboard's) */
    const char *const *headers;
    /* a streamed answer (the feed's), sent instead of answer and taken by the server */
    struct MHD_Response *response;
    void (*state_free)(void *state);
    /* tracing (tracing.c): the server span (NULL when not recorded) and the context the
     * request propagates ("" when tracing is off) */
    tr_span *span;
    char traceparent[TR_TRACEPARENT_SIZE];
};

/* ---- tracing.c (docs/tracing.md) ---- */
/* Starts the process's tracer from svc_cfg; 0 or an error (err says which). */
int svc_tracing_start(sk_error *err);
void svc_tracing_stop(void);
/* The server span of a request whose route is known (after routing). */
void svc_tracing_request_begin(svc_request *rq, const char *method);
/* Before the answer is queued: status and principal on the span, the traceparent answer
 * header on resp; ends the span. */
void svc_tracing_request_end(svc_request *rq, struct MHD_Response *resp);
/* A request that ends without an answer (the client went away). */
void svc_tracing_request_abandon(svc_request *rq);
/* The traceparent the request's commands carry: its span's when tracing is on, else
 * the incoming one (left in out as the caller put it). */
void svc_tracing_context(const svc_request *rq, char *out, size_t size);

/* Sets the answer; body is taken (freed by the server). */
void svc_answer(svc_request *rq, unsigned status, const char *type, char *body, size_t len);
/* Sets a JSON answer; obj is taken. */
void svc_answer_json(svc_request *rq, unsigned status, json_t *obj);
/* A problem+json object (for batch lines too); detail formatted. */
json_t *svc_problem_json(unsigned status, const char *code, const char *field, const char *detail);
void svc_problem(svc_request *rq, unsigned status, const char *code, const char *field,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* From any thread, once the answer is set: the connection is resumed and answered. */
void svc_request_done(svc_request *rq);
const char *svc_header(svc_request *rq, const char *name);
/* Decimal digits only, below UINT64_MAX; 0 or -1. */
int svc_parse_u64(const char *text, uint64_t *out);
/* paths.c: libmicrohttpd's unescape callback (percent-decoding that keeps %00 as it is),
 * and the check of a decoded path: 0, or -1 after answering 400 invalid_path. */
size_t svc_unescape(void *cls, struct MHD_Connection *conn, char *s);
int svc_path_check(svc_request *rq, const char *url);
/* The routes of command_routes.c and read_routes.c. */
int svc_route_command(svc_request *rq);
int svc_route_batch(svc_request *rq);
int svc_route_stream(svc_request *rq);
int svc_route_events(svc_request *rq);
/* An event as GET /v1/events shows it: the envelope with the payload as JSON. Caller
 * owns the result; NULL with err set when the payload cannot be decoded. */
json_t *svc_event_json(svc_app *app, const ev_event *ev, sk_error *err);
/* The read side's routes (model_routes.c). */
int svc_route_projections(svc_request *rq);
int svc_route_projection(svc_request *rq);
int svc_route_projection_rebuild(svc_request *rq);
int svc_route_projection_resume(svc_request *rq);
int svc_route_projection_skip(svc_request *rq);
int svc_route_query(svc_request *rq);
/* Work that may block, off the HTTP threads (work_pool.c). Any thread may submit; fn
 * runs on a pool thread and must answer its request. SK_EBUSY when the queue is full or
 * the pool stops (fn never runs then). */
typedef struct svc_work_pool svc_work_pool;
typedef void (*svc_work_fn)(void *arg);
#define SVC_QUERY_THREADS   4
#define SVC_QUERY_QUEUE_MAX 4096
int svc_work_pool_start(size_t threads, size_t queue_max, svc_work_pool **out);
void svc_work_pool_stop(svc_work_pool *p); /* runs what is queued, joins; accepts NULL */
int svc_work_submit(svc_work_pool *p, svc_work_fn fn, void *arg);

/* Where queries find the read models (model_source.c): the projection engine of this
 * process, or (queries role alone) the files of a projections directory, borrowed. */
void svc_model_source_engine(proj_engine *e, qry_source *out);
void svc_model_source_dir(const char *projections_dir, qry_source *out);
/* Prometheus lines for every projection, appended to the /metrics text (taken, returned). */
char *svc_metrics_projections(proj_engine *e, char *text);
const char *svc_query(svc_request *rq, const char *name);

/* ---- feed.c / feed_routes.c: GET /v1/events/stream (docs/http-api.md, Live feed) ----
 * svc_feed_create at start-up (feed role); svc_feed_open per stream (MHD threads);
 * svc_feed_stop at shutdown before svc_server_stop (it ends every stream and closes the
 * subscriptions); svc_feed_destroy after svc_server_stop (the responses are gone). */
typedef struct svc_feed_spec {
    uint64_t from_position; /* the first position it may send */
    char stream_id[EV_STREAM_ID_MAX + 1], stream_prefix[EV_STREAM_ID_MAX + 1];
    char type[EV_TYPE_MAX + 1]; /* filters; empty: any */
    char request_id[EV_UUID_TEXT_SIZE];
} svc_feed_spec;
int svc_feed_create(svc_app *app, svc_feed **out, sk_error *err);
/* 0 and *out, the response to queue (taken by the caller); SK_EBUSY at --feed-max,
 * SK_ECLOSED while stopping, or the subscription's error. conn is borrowed. */
int svc_feed_open(svc_feed *feed, struct MHD_Connection *conn, const svc_feed_spec *spec,
                  struct MHD_Response **out, sk_error *err);
void svc_feed_stop(svc_feed *feed, uint32_t timeout_ms); /* accepts NULL */
void svc_feed_destroy(svc_feed *feed);                   /* accepts NULL */
/* The feed's lines appended to the /metrics text (taken, returned; NULL feed: as is). */
char *svc_metrics_feed(svc_feed *feed, char *text);
int svc_route_feed(svc_request *rq);
/* ---- replica.c ---- */
/* --source=kafka: a proj_source reading <prefix>.events (store_ksrc_*) into *out, and its
 * state in *app (freed by svc_replica_free, after the projection engine is closed). */
int svc_replica_source(svc_app *app, proj_source *out, sk_error *err);
void svc_replica_free(svc_app *app);
/* {"source":"kafka","topic","seen_head"} for /readyz; NULL when not a replica. */
json_t *svc_replica_status_json(const svc_app *app);

/* ---- relay.c ---- */
/* Starts store/'s relay if the role is on and brokers are given (else does nothing). */
int svc_relay_start(svc_app *app, sk_error *err);
/* Stops it (before the log closes); accepts an app without one. */
void svc_relay_stop(svc_app *app);
/* Reads a --kafka-config file into cfg's settings (kept until svc_relay_stop). */
int svc_relay_props_load(const char *path, store_relay_config *cfg, sk_error *err);
/* The relay's state for /readyz (caller owns), or NULL without a relay. */
json_t *svc_relay_status_json(store_relay *relay);
/* Prometheus lines of the relay appended to the /metrics text (taken, returned). */
char *svc_metrics_relay(store_relay *relay, char *text);
/* The sagas role (saga_wiring.c): opens and starts the orchestrator, its commands going
 * through app->idem and app->bus; 0 without the role. Close before the bus. */
int svc_sagas_open(svc_app *app, sk_error *err);
/* The same without the role check, for `skald seed` too: the orchestrator on
 * data_dir/sagas over app->log, app->events, app->bus, app->idem and app->metrics.
 * from_env: read the test knobs of docs/sagas.md (SKALD_SAGA_*); the seed passes 0. */
int svc_sagas_start(svc_app *app, const char *data_dir, int from_env, sk_error *err);
void svc_sagas_close(svc_app *app);
/* One command through the keyed command path (the idempotency store under s->idem_key if
 * not empty, then the bus), its events carrying principal, s->traceparent and, when
 * s->saga_id is not empty, the saga id and attempt. done runs once, on any thread (maybe
 * before this returns). 0, or -ENOMEM (done will not run). The saga's commands and the
 * seed's go this way. */
int svc_send_keyed(svc_app *app, const char *principal, const saga_send *s, saga_answer_cb done,
                   void *op);
/* 1 if command belongs to an internal aggregate (a `$` stream): not for HTTP clients. */
int svc_command_internal(const char *command);
/* The saga admin routes (saga_routes.c). */
int svc_route_sagas(svc_request *rq);
int svc_route_saga(svc_request *rq);
int svc_route_saga_retry(svc_request *rq);
int svc_route_saga_abort(svc_request *rq);
char *svc_metrics_sagas(saga_engine *e, char *text);

/* ---- dashboard.c: the page at / and its files at /dashboard/NAME (no token) ---- */
int svc_route_dashboard(svc_request *rq);
int svc_route_dashboard_asset(svc_request *rq);

/* ---- spares.c ----
 * Blocks of up to `size` bytes kept for reuse (at most `max`). take: a zeroed block of at
 * least `size` bytes (calloc when s is NULL or empty; NULL when out of memory); give: back
 * to the spares, or free past max (s NULL: free). */
typedef struct svc_spares svc_spares;
#define SVC_SPARE_BYTES 4096 /* a svc_request, a command_call */
#define SVC_SPARES_MAX  512  /* 2 MiB at most: 256 requests in flight with their calls */
int svc_spares_create(size_t size, size_t max, svc_spares **out);
void svc_spares_destroy(svc_spares *s);
void *svc_spares_take(svc_spares *s, size_t size);
void svc_spares_give(svc_spares *s, void *block);

/* ---- conn_guard.c ----
 * Create before the daemon starts (pass svc_conn_guard_notify as its
 * MHD_OPTION_NOTIFY_CONNECTION, the guard as its argument), destroy after it stopped. */
typedef struct svc_conn_guard svc_conn_guard;
typedef struct svc_conn_slot svc_conn_slot;
typedef struct svc_conn_limits {
    uint32_t conn_max, conn_reserve;
    uint32_t request_timeout_s, reserve_timeout_ms;
    uint64_t pending_body_max;
} svc_conn_limits;
int svc_conn_guard_create(const svc_conn_limits *lim, svc_conn_guard **out);
void svc_conn_guard_destroy(svc_conn_guard *g); /* accepts NULL */
void svc_conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode code);
/* The connection's slot (borrowed, valid while the connection is open), or NULL. */
svc_conn_slot *svc_conn_slot_of(struct MHD_Connection *conn);
/* 1 if the connection was accepted past --conn-max. */
bool svc_conn_is_reserve(const svc_conn_slot *s);
/* The route runs: no deadline until the request ends. Accept NULL slots. */
void svc_conn_request_running(svc_conn_slot *s);
/* The request ended: the next one's deadline starts now. */
void svc_conn_request_ended(svc_conn_guard *g, svc_conn_slot *s);
/* Takes bytes from the body budget: 0, or SK_EBUSY (nothing taken) past the cap. */
int svc_conn_body_take(svc_conn_guard *g, uint64_t bytes);
void svc_conn_body_give(svc_conn_guard *g, uint64_t bytes);
/* The guard's lines appended to the /metrics text (taken, returned; NULL guard: as is). */
char *svc_metrics_conns(svc_conn_guard *g, char *text);

/* ---- framing.c ----
 * 0 if the request's head is framed as RFC 9112 wants; else answers (400 problem naming
 * the header, 501 for an unknown transfer coding), sets rq->close and returns -1. */
int svc_framing_check(svc_request *rq, const char *method, const char *version);
/* 0 if no query parameter is repeated; else answers 400 naming it and returns -1. */
int svc_query_check(svc_request *rq);

/* The GnuTLS priorities used without --tls-priorities (http.c). */
extern const char svc_tls_priorities_default[];
int svc_server_start(svc_app *app, svc_server **out, uint16_t *port, sk_error *err);
/* Stops accepting, waits (bounded by timeout_ms) for requests in flight, stops. */
void svc_server_stop(svc_server *srv, uint32_t timeout_ms);

#endif /* SKALD_SERVE_INT_H */
