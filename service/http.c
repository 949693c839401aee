/*
 * http.c -- the HTTP side of `skald serve`, on libmicrohttpd.
 *
 * One request's life: the first call of the access handler matches the route, checks
 * the token and the declared body (size, type) and may answer at once (401, 404, 413,
 * ...); the next calls collect the body (a body past --body-max is discarded as it comes
 * and answered 413); the last call runs the route. A command's route queues it and
 * returns 1: the connection is suspended and the log's completer thread resumes it when
 * the events are durable, and the handler, called once more, sends the answer. The
 * epoll thread therefore never waits for the disk.
 *
 * Before the route is even looked up, framing.c checks the request's head (an ambiguous
 * one is 400 and the connection closes) and conn_guard.c's deadline runs: a request must
 * have arrived whole within --request-timeout. A connection past --conn-max (the
 * reserve) is served only for /healthz, /readyz or a valid token. HEAD is GET without
 * the body: the GET route runs and libmicrohttpd sends its headers (with the GET body's
 * Content-Length) and no body.
 */
#include "service/serve_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct svc_server {
    struct MHD_Daemon *daemon;
    svc_app *app;
    svc_conn_guard *conns;
    char *tls_cert, *tls_key;
    atomic_bool stopping; /* set by svc_server_stop: new connections are refused */
};

/*
 * How a stop refuses new connections while the answers in flight are sent. Not with
 * MHD_quiesce_daemon: in libmicrohttpd 0.9.75 it removes the listening socket from the
 * epoll set while the daemon's own thread, seeing the daemon quiesced, removes it too,
 * and whichever comes second aborts the process ("Failed to remove listen FD from epoll
 * set"; a SIGTERM in the feed test ended so under ASan). An accept policy that says no
 * once the stop began touches nothing the daemon's thread does.
 */
static enum MHD_Result accept_unless_stopping(void *cls, const struct sockaddr *addr,
                                              socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    const svc_server *srv = cls;
    return atomic_load(&srv->stopping) ? MHD_NO : MHD_YES;
}

/* Modern TLS only: 1.2 and 1.3, forward-secret key exchange (ECDHE), AEAD ciphers; no
 * CBC, no RC4/3DES, no SHA-1 MACs, no static-RSA key exchange (GnuTLS priority syntax). */
const char svc_tls_priorities_default[] =
    "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%SERVER_PRECEDENCE";

int svc_parse_u64(const char *text, uint64_t *out)
{
    char *end;
    if (!text || !*text || text[0] == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || v >= STORE_EXPECT_ANY)
        return -1;
    *out = v;
    return 0;
}

const char *svc_header(svc_request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const char *svc_query(svc_request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

void svc_answer(svc_request *rq, unsigned status, const char *type, char *body, size_t len)
{
    free(rq->answer);
    rq->status = status;
    rq->answer_type = type;
    rq->answer = body;
    rq->answer_len = len;
}

void svc_answer_json(svc_request *rq, unsigned status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text) {
        svc_answer(rq, 500, "text/plain", strdup("out of memory\n"), 14);
        return;
    }
    svc_answer(rq, status, status >= 400 ? "application/problem+json" : "application/json", text,
               strlen(text));
}

json_t *svc_problem_json(unsigned status, const char *code, const char *field, const char *detail)
{
    char type[160];
    snprintf(type, sizeof type, "https://skald.dev/problems/%s", code);
    json_t *p = json_object();
    json_object_set_new(p, "type", json_string(type));
    json_object_set_new(p, "title", json_string(code));
    json_object_set_new(p, "status", json_integer(status));
    json_object_set_new(p, "code", json_string(code));
    /* details may quote client input that is not UTF-8; never fail the answer for it */
    json_t *d = json_string(detail);
    json_object_set_new(p, "detail", d ? d : json_string("(detail not representable)"));
    if (field && *field) {
        json_t *f = json_string(field);
        if (f)
            json_object_set_new(p, "field", f);
    }
    return p;
}

void svc_problem(svc_request *rq, unsigned status, const char *code, const char *field,
                 const char *fmt, ...)
{
    char detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    svc_answer_json(rq, status, svc_problem_json(status, code, field, detail));
}

void svc_request_done(svc_request *rq)
{
    pthread_mutex_lock(&rq->mu);
    rq->ready = 1;
    int resume = rq->suspended;
    rq->suspended = 0;
    struct MHD_Connection *conn = rq->conn;
    pthread_mutex_unlock(&rq->mu);
    /* after the unlock, rq may be gone once the connection is resumed */
    if (resume)
        MHD_resume_connection(conn);
}

static enum MHD_Result send_answer(svc_request *rq)
{
    struct MHD_Response *resp = rq->response; /* a streamed answer (feed.c) */
    rq->response = NULL;
    /* libmicrohttpd 0.9.75 ends a HEAD answer of unknown length with the last chunk
     * ("0\r\n\r\n"), a body the client does not expect: close after it instead */
    if (resp && rq->head)
        rq->close = 1;
    if (!resp) {
        if (!rq->answer)
            svc_problem(rq, 500, "internal", NULL, "the route produced no answer");
        resp = MHD_create_response_from_buffer(rq->answer_len, rq->answer, MHD_RESPMEM_MUST_FREE);
        if (!resp)
            return MHD_NO;
        rq->answer = NULL; /* libmicrohttpd frees it now */
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rq->answer_type);
    MHD_add_response_header(resp, "X-Request-Id", rq->request_id);
    if (rq->retry_after) {
        char secs[16];
        snprintf(secs, sizeof secs, "%u", rq->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    if (rq->replayed)
        MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    for (const char *const *h = rq->headers; h && h[0]; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    if (rq->status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"skald\"");
    if (rq->status == 405 && rq->route)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                strcmp(rq->route->method, "GET") == 0 ? "GET, HEAD"
                                                                      : rq->route->method);
    if (rq->close) /* libmicrohttpd closes after this answer and reads nothing more */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    svc_metrics_http(rq->app->metrics, rq->status);
    svc_tracing_request_end(rq, resp);
    enum MHD_Result r = MHD_queue_response(rq->conn, rq->status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* "/v1/streams/{}" matches "/v1/streams/x" with arg "x"; "{}" stands for one path
 * segment (no '/') anywhere in the pattern. */
static int path_matches(const char *pattern, const char *url, char *arg, size_t arg_size)
{
    const char *hole = strstr(pattern, "{}");
    if (!hole)
        return strcmp(pattern, url) == 0;
    size_t n = (size_t)(hole - pattern);
    if (strncmp(pattern, url, n) != 0)
        return 0;
    const char *seg = url + n;
    size_t len = strcspn(seg, "/");
    if (len == 0 || len >= arg_size || strcmp(seg + len, hole + 2) != 0)
        return 0;
    snprintf(arg, arg_size, "%.*s", (int)len, seg);
    return 1;
}

/* The route for method and url; NULL with *path_known set when only the method differs.
 * HEAD finds the GET route. */
static const svc_route *find_route(const char *method, const char *url, char *arg, size_t arg_size,
                                   const svc_route **path_known)
{
    *path_known = NULL;
    if (strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)
        method = MHD_HTTP_METHOD_GET;
    for (size_t i = 0; i < svc_nroutes; i++) {
        if (!path_matches(svc_routes[i].path, url, arg, arg_size))
            continue;
        if (strcmp(svc_routes[i].method, method) == 0)
            return &svc_routes[i];
        *path_known = &svc_routes[i];
    }
    return NULL;
}

/* 0 if the token (if any is needed) grants the route; else answers 401/403. */
static int authorize(svc_request *rq)
{
    rq->principal = "anonymous";
    if (!rq->app->auth || rq->route->roles == 0)
        return 0;
    const char *h = svc_header(rq, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *token = h && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    /* EventSource cannot send headers: such routes take ?access_token= (never logged) */
    if (!h && (rq->route->roles & SVC_AUTH_QUERY_TOKEN))
        token = svc_query(rq, "access_token");
    unsigned roles = 0;
    const char *principal = NULL;
    if (!token || !svc_auth_check(rq->app->auth, token, &roles, &principal)) {
        svc_problem(rq, 401, "unauthorized", NULL,
                    (rq->route->roles & SVC_AUTH_QUERY_TOKEN)
                        ? "send 'Authorization: Bearer TOKEN' or ?access_token=TOKEN with a "
                          "token from the tokens file"
                        : "send 'Authorization: Bearer TOKEN' with a token from the tokens file");
        return -1;
    }
    rq->principal = principal;
    if (!(roles & (rq->route->roles | SVC_ROLE_ADMIN))) {
        svc_problem(rq, 403, "forbidden", NULL, "principal '%s' lacks the role this route needs",
                    principal);
        return -1;
    }
    return 0;
}

static void body_free(svc_request *rq)
{
    free(rq->body);
    rq->body = NULL;
    if (rq->body_cap && rq->app->conns)
        svc_conn_body_give(rq->app->conns, rq->body_cap);
    rq->body_len = rq->body_cap = 0;
}

static void refuse_over_budget(svc_request *rq)
{
    rq->retry_after = 1;
    rq->close = 1;
    svc_problem(rq, 503, "overloaded", NULL,
                "request bodies in progress hold --pending-body-max bytes; retry later");
}

/* Makes room for size more body bytes (and a NUL), taken from the body budget: 0,
 * SK_EBUSY past the budget (nothing changed), or -ENOMEM. Growth doubles, up to what
 * --body-max needs. The caller has checked that the body stays within --body-max. */
static int body_reserve(svc_request *rq, size_t size)
{
    size_t need = rq->body_len + size + 1;
    if (need <= rq->body_cap)
        return 0;
    /* 512, not 1024: glibc serves 1 KiB and more as a "large" request, which first
     * consolidates the fast bins, and most command bodies are a few hundred bytes */
    size_t cap = rq->body_cap ? rq->body_cap : 512;
    while (cap < need)
        cap *= 2;
    if (cap > svc_cfg.body_max + 1)
        cap = need > svc_cfg.body_max + 1 ? need : (size_t)svc_cfg.body_max + 1;
    if (rq->app->conns && svc_conn_body_take(rq->app->conns, cap - rq->body_cap) != 0)
        return SK_EBUSY;
    char *grown = realloc(rq->body, cap);
    if (!grown) {
        if (rq->app->conns)
            svc_conn_body_give(rq->app->conns, cap - rq->body_cap);
        return -ENOMEM;
    }
    rq->body = grown;
    rq->body_cap = cap;
    return 0;
}

/* A connection past --conn-max serves only the probes and holders of a valid token. */
static int reserve_admits(svc_request *rq)
{
    if (strcmp(rq->route->path, "/healthz") == 0 || strcmp(rq->route->path, "/readyz") == 0)
        return 1;
    const char *h = svc_header(rq, MHD_HTTP_HEADER_AUTHORIZATION);
    unsigned roles;
    const char *principal;
    return rq->app->auth && h && strncasecmp(h, "Bearer ", 7) == 0 &&
           svc_auth_check(rq->app->auth, h + 7, &roles, &principal);
}

/* 0 if the declared body may be read; else answers 413/415/503. A declared length is
 * taken from the body budget at once, so a client cannot promise a body, send part of
 * it and hold memory it never had to account for. */
static int check_body_headers(svc_request *rq)
{
    const char *len = svc_header(rq, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long declared = len ? strtoull(len, NULL, 10) : 0;
    if (declared > svc_cfg.body_max) {
        svc_problem(rq, 413, "body_too_large", NULL, "the body has %s bytes; at most %llu", len,
                    (unsigned long long)svc_cfg.body_max);
        return -1;
    }
    int rc = declared ? body_reserve(rq, (size_t)declared) : 0;
    if (rc == SK_EBUSY) {
        refuse_over_budget(rq);
        return -1;
    }
    if (rc) {
        svc_problem(rq, 503, "unavailable", NULL, "out of memory");
        return -1;
    }
    if (rq->route->body == SVC_BODY_NONE)
        return 0;
    const char *type = svc_header(rq, MHD_HTTP_HEADER_CONTENT_TYPE);
    const char *want =
        rq->route->body == SVC_BODY_NDJSON ? "application/x-ndjson" : "application/json";
    size_t n = strlen(want);
    if (!type || strncasecmp(type, want, n) != 0 || (type[n] != '\0' && type[n] != ';')) {
        svc_problem(rq, 415, "unsupported_media_type", NULL, "send Content-Type: %s", want);
        return -1;
    }
    return 0;
}

/* The first call: framing, route, reserve, token, declared body. 0 to go on, -1 when
 * answered. */
static int begin(svc_request *rq, const char *method, const char *url, const char *version)
{
    rq->head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (rq->head)
        method = MHD_HTTP_METHOD_GET; /* answered as GET; libmicrohttpd drops the body */
    if (svc_framing_check(rq, method, version) != 0)
        return -1;
    bool reserve = svc_conn_is_reserve(rq->slot);
    const svc_route *other;
    if (svc_path_check(rq, url) != 0)
        return -1;
    rq->route = find_route(method, url, rq->arg, sizeof rq->arg, &other);
    if (!rq->route) {
        rq->route = other;
        if (other)
            svc_problem(rq, 405, "method_not_allowed", NULL, "%s %s: use %s", method, url,
                        other->method);
        else
            svc_problem(rq, 404, "not_found", NULL, "no route %s %s", method, url);
        rq->close = reserve;
        return -1;
    }
    if (reserve && !reserve_admits(rq)) {
        rq->retry_after = 1;
        rq->close = 1;
        svc_problem(rq, 503, "overloaded", NULL,
                    "%u connections are open (--conn-max); past it only /healthz, /readyz and "
                    "requests with a valid token are served",
                    svc_cfg.conn_max);
        return -1;
    }
    if (reserve && !rq->app->auth)
        rq->close = 1; /* a probe in the reserve: make room again at once */
    if (svc_query_check(rq) != 0)
        return -1;
    if (rq->route->serves && !(svc_cfg.roles & rq->route->serves)) {
        svc_problem(rq, 404, "not_served", NULL,
                    "this process does not run the %s role (see --roles)",
                    svc_role_name(rq->route->serves));
        return -1;
    }
    if (authorize(rq) != 0 || check_body_headers(rq) != 0)
        return -1;
    return 0;
}

static int collect(svc_request *rq, const char *data, size_t size)
{
    if (rq->too_large || rq->over_budget)
        return 0;
    if (rq->body_len + size > svc_cfg.body_max) {
        rq->too_large = 1; /* keep reading (and dropping) so the answer can be sent */
        body_free(rq);
        return 0;
    }
    int rc = body_reserve(rq, size);
    if (rc == SK_EBUSY) {
        rq->over_budget = 1; /* the same: drop the rest, answer 503 at the end */
        body_free(rq);
        return 0;
    }
    if (rc)
        return rc;
    memcpy(rq->body + rq->body_len, data, size);
    rq->body_len += size;
    rq->body[rq->body_len] = '\0';
    return 0;
}

_Static_assert(sizeof(svc_request) <= SVC_SPARE_BYTES, "a svc_request must fit a spare block");

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    svc_app *app = cls;
    svc_request *rq = *con_cls;
    if (!rq) {
        rq = svc_spares_take(app->spares, sizeof *rq);
        if (!rq)
            return MHD_NO;
        rq->app = app;
        rq->conn = conn;
        rq->started_us = ev_now_us();
        rq->slot = svc_conn_slot_of(conn);
        pthread_mutex_init(&rq->mu, NULL);
        ev_uuid id;
        ev_uuid_generate(&id);
        ev_uuid_format(&id, rq->request_id);
        *con_cls = rq;
        int answered = begin(rq, method, url, version);
        svc_tracing_request_begin(rq, method);
        if (answered != 0) {
            svc_conn_request_running(rq->slot); /* answered: sending is not arriving */
            return send_answer(rq);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        int rc = collect(rq, upload_data, *upload_size);
        *upload_size = 0;
        return rc == 0 ? MHD_YES : MHD_NO;
    }
    if (!rq->ran) {
        rq->ran = 1;
        svc_conn_request_running(rq->slot);
        if (rq->over_budget) {
            refuse_over_budget(rq);
            return send_answer(rq);
        }
        if (rq->too_large) {
            svc_problem(rq, 413, "body_too_large", NULL, "the body is larger than %llu bytes",
                        (unsigned long long)svc_cfg.body_max);
            return send_answer(rq);
        }
        if (rq->route->run(rq) == 0)
            return send_answer(rq);
    }
    pthread_mutex_lock(&rq->mu);
    if (rq->ready) {
        pthread_mutex_unlock(&rq->mu);
        return send_answer(rq);
    }
    rq->suspended = 1;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&rq->mu);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    svc_request *rq = *con_cls;
    if (!rq)
        return;
    if (rq->counted)
        atomic_fetch_sub(&rq->app->unsent, 1);
    svc_conn_request_ended(rq->app->conns, rq->slot);
    svc_tracing_request_abandon(rq);
    if (rq->state_free)
        rq->state_free(rq->state);
    if (rq->response)
        MHD_destroy_response(rq->response);
    body_free(rq);
    free(rq->answer);
    pthread_mutex_destroy(&rq->mu);
    svc_spares_give(rq->app->spares, rq);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    svc_log(SK_LOG_WARN, "http", "detail", text, SVC_END);
}

static char *read_file(const char *path, sk_error *err)
{
    char *data = NULL;
    size_t size;
    int rc = ev_read_file(path, &data, &size);
    if (rc)
        sk_error_set(err, rc, "", "cannot read %s: %s", path, sk_strerror(rc));
    return data;
}

int svc_server_start(svc_app *app, svc_server **out, uint16_t *port, sk_error *err)
{
    svc_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return -ENOMEM;
    srv->app = app;
    svc_conn_limits lim = {
        .conn_max = svc_cfg.conn_max,
        .conn_reserve = svc_cfg.conn_reserve,
        .request_timeout_s = svc_cfg.request_timeout_s,
        .reserve_timeout_ms = svc_cfg.reserve_timeout_ms,
        .pending_body_max = svc_cfg.pending_body_max,
    };
    int rc = svc_conn_guard_create(&lim, &srv->conns);
    if (rc == 0) {
        rc = svc_spares_create(SVC_SPARE_BYTES, SVC_SPARES_MAX, &app->spares);
        if (rc)
            svc_conn_guard_destroy(srv->conns);
    }
    if (rc) {
        free(srv);
        return sk_error_set(err, rc, "", "cannot start the connection guard: %s", sk_strerror(rc));
    }
    app->conns = srv->conns;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(svc_cfg.listen_port);
    inet_pton(AF_INET, svc_cfg.listen_host, &addr.sin_addr);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (svc_cfg.tls_cert) {
        srv->tls_cert = read_file(svc_cfg.tls_cert, err);
        srv->tls_key = srv->tls_cert ? read_file(svc_cfg.tls_key, err) : NULL;
        if (!srv->tls_key) {
            free(srv->tls_cert);
            app->conns = NULL;
            svc_conn_guard_destroy(srv->conns);
            svc_spares_destroy(app->spares);
            app->spares = NULL;
            free(srv);
            return err->code ? err->code : -EINVAL;
        }
        flags |= MHD_USE_TLS;
    }
    /* optional options, ended early by an MHD_OPTION_END where one is not wanted */
    struct MHD_OptionItem extra[] = {
        {svc_cfg.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, svc_cfg.threads, NULL},
        {MHD_OPTION_END, 0, NULL},
        {MHD_OPTION_END, 0, NULL},
        {MHD_OPTION_END, 0, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    if (srv->tls_cert) {
        size_t at = svc_cfg.threads > 1 ? 1 : 0;
        const char *prio =
            svc_cfg.tls_priorities ? svc_cfg.tls_priorities : svc_tls_priorities_default;
        extra[at] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert};
        extra[at + 1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key};
        extra[at + 2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)prio};
    }
    srv->daemon = MHD_start_daemon(
        flags, 0, accept_unless_stopping, srv, on_request, app, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)svc_cfg.timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(svc_cfg.conn_max + svc_cfg.conn_reserve),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)svc_cfg.conn_per_ip,
        MHD_OPTION_NOTIFY_CONNECTION, svc_conn_guard_notify, srv->conns,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_ARRAY, extra,
        MHD_OPTION_UNESCAPE_CALLBACK, svc_unescape, NULL, MHD_OPTION_END);
    if (!srv->daemon) {
        free(srv->tls_cert);
        free(srv->tls_key);
        app->conns = NULL;
        svc_conn_guard_destroy(srv->conns);
        svc_spares_destroy(app->spares);
        app->spares = NULL;
        free(srv);
        return sk_error_set(err, -EADDRINUSE, "",
                            "cannot listen on %s:%u (in use, or TLS files or "
                            "--tls-priorities invalid)",
                            svc_cfg.listen_host, svc_cfg.listen_port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : svc_cfg.listen_port;
    *out = srv;
    return 0;
}

void svc_server_stop(svc_server *srv, uint32_t timeout_ms)
{
    if (!srv)
        return;
    atomic_store(&srv->stopping, true); /* no new connections (accept_unless_stopping) */
    for (uint32_t waited = 0; waited < timeout_ms; waited += 10) {
        /* in_flight reaches 0 when the last answer is decided, a moment before its
         * connection is resumed and the answer sent: wait for the sending too */
        if (atomic_load(&srv->app->in_flight) == 0 && atomic_load(&srv->app->unsent) == 0)
            break;
        usleep(10000);
    }
    MHD_stop_daemon(srv->daemon);
    srv->app->conns = NULL;
    svc_conn_guard_destroy(srv->conns);   /* every connection is closed now */
    svc_spares_destroy(srv->app->spares); /* and every request given back */
    srv->app->spares = NULL;
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv);
}
