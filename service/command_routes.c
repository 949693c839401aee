/*
 * command_routes.c -- POST /v1/commands/{Type} and POST /v1/commands:batch.
 *
 * A command: parse the body, take expected_version / command_id out of it, claim the
 * idempotency key, refuse past --queue-max, submit to the bus; the bus's done callback
 * (on the log's completer thread, or at once for answers that need no append) turns the
 * outcome into the answer and resumes the connection. A batch submits each line the same
 * way and answers when the last line is done.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDEM_KEY_MAX 128
#define BATCH_MAX    1000

/* One command in flight: alone (a request's state) or a line of a batch. */
typedef struct command_call {
    svc_request *rq;
    struct batch *batch; /* NULL when alone */
    char command[EV_TYPE_MAX + 1];
    char key[IDEM_KEY_MAX + 200]; /* the idempotency key, scoped; "" if none */
    int64_t started_us;
    cmd_context ctx;
    ev_metadata_entry meta[4];
    char traceparent[64], idem_header[IDEM_KEY_MAX + 1];
    cmd_outcome out;
    unsigned status; /* the answer, once done */
    char *answer;
    int replayed;
} command_call;

typedef struct batch {
    svc_request *rq;
    command_call *calls;
    size_t count;
    atomic_size_t remaining;
} batch;

/* ---- outcome to answer ---- */

/* The answer to a command that was appended, written directly: it is made for every
 * command, and a jansson tree dumped to text cost the completer more than the rest of
 * its work on the answer. NULL when out of memory. */
static char *success_text(const cmd_outcome *o)
{
    char cid[EV_UUID_TEXT_SIZE], eid[EV_UUID_TEXT_SIZE];
    ev_uuid_format(&o->command_id, cid);
    ev_json_out j = {0};
    ev_json_out_lit(&j, "{\"command_id\":\"");
    ev_json_out_lit(&j, cid);
    ev_json_out_lit(&j, "\",\"stream_id\":");
    ev_json_out_str(&j, o->stream_id);
    ev_json_out_lit(&j, ",\"events\":[");
    for (uint32_t i = 0; i < o->count; i++) {
        ev_uuid_format(&o->event_ids[i], eid);
        ev_json_out_lit(&j, i ? ",{\"event_id\":\"" : "{\"event_id\":\"");
        ev_json_out_lit(&j, eid);
        ev_json_out_lit(&j, "\",\"type\":");
        ev_json_out_str(&j, o->event_types[i]);
        ev_json_out_fmt(&j, ",\"version\":%llu,\"position\":%llu}",
                        (unsigned long long)o->first_version + i,
                        (unsigned long long)o->first_position + i);
    }
    ev_json_out_fmt(&j, "],\"position\":%llu}", (unsigned long long)o->position);
    return ev_json_out_take(&j, NULL);
}

/* The HTTP status, metrics outcome and problem JSON of a command that was not appended
 * (an appended one is answered by success_text). */
static json_t *outcome_json(const cmd_outcome *o, unsigned *status, svc_outcome *kind)
{
    const char *field = o->err.field;
    switch (o->status) {
    case SK_ENOTFOUND:
        *status = 404, *kind = SVC_OUT_INVALID;
        return svc_problem_json(404, "unknown_command", "type", o->err.message);
    case SK_EBADINPUT:
    case SK_ETOOBIG:
        *status = 400, *kind = SVC_OUT_INVALID;
        return svc_problem_json(400, "invalid_field", field, o->err.message);
    case SK_ECONFLICT: {
        *status = 409, *kind = SVC_OUT_CONFLICT;
        json_t *p =
            svc_problem_json(409, "wrong_expected_version", "expected_version", o->err.message);
        json_object_set_new(p, "current_version", json_integer((json_int_t)o->stream_version));
        return p;
    }
    case SK_EREJECTED:
        *status = 422, *kind = SVC_OUT_REJECTED;
        return svc_problem_json(422, o->decision.reason, o->decision.field, o->decision.message);
    case SK_ESCHEMA:
        *status = 500, *kind = SVC_OUT_ERROR;
        return svc_problem_json(500, "internal", NULL, o->err.message);
    case SK_EBUSY:
        *status = 503, *kind = SVC_OUT_OVERLOADED;
        return svc_problem_json(503, "overloaded", NULL, "the append queue is full; retry");
    case -ENOSPC:
    case -EDQUOT:
    case -EFBIG:
        *status = 503, *kind = SVC_OUT_ERROR;
        return svc_problem_json(503, "storage_full", NULL,
                                "the disk is full: nothing of this command was written; retry "
                                "once space is freed (GET /readyz says when)");
    default:
        *status = 503, *kind = SVC_OUT_ERROR;
        return svc_problem_json(503, "unavailable", NULL, o->err.message);
    }
}

static void log_command(const command_call *c, svc_outcome kind)
{
    sk_log_level level = kind == SVC_OUT_ERROR ? SK_LOG_ERROR : SK_LOG_INFO;
    if (!sk_log_enabled(level))
        return;
    char cid[EV_UUID_TEXT_SIZE], corr[EV_UUID_TEXT_SIZE], status[16], us[24];
    snprintf(status, sizeof status, "%u", c->status);
    snprintf(us, sizeof us, "%lld", (long long)(ev_now_us() - c->started_us));
    sk_log_field f[8] = {{"request_id", c->rq->request_id, false},
                         {"command", c->command, false},
                         {"status", status, true},
                         {"us", us, true}};
    size_t n = 4;
    if (!ev_uuid_is_nil(&c->out.command_id)) {
        ev_uuid_format(&c->out.command_id, cid);
        f[n++] = (sk_log_field){"command_id", cid, false};
    }
    if (!ev_uuid_is_nil(&c->ctx.correlation_id)) {
        ev_uuid_format(&c->ctx.correlation_id, corr);
        f[n++] = (sk_log_field){"correlation_id", corr, false};
    }
    if (*c->out.stream_id)
        f[n++] = (sk_log_field){"stream_id", c->out.stream_id, false};
    if (c->status >= 400 && c->out.err.message[0])
        f[n++] = (sk_log_field){"detail", c->out.err.message, false};
    svc_log_kv(level, "command", f, n);
}

static void batch_line_done(batch *b);

/* Records the answer of a call (text, taken; NULL when it could not be made), remembers
 * it under its key, and hands it on. */
static void call_answered(command_call *c, unsigned status, char *answer, svc_outcome kind)
{
    svc_app *app = c->rq->app;
    c->answer = answer;
    if (!c->answer) { /* out of memory building the answer: say so, whatever it was */
        status = 500;
        kind = SVC_OUT_ERROR;
    }
    c->status = status;
    if (*c->key) {
        /* business outcomes are remembered; conflicts and failures may be retried; a
         * journal failure is not this answer's: the command happened and is answered
         * as it came out (the store logged it, refuses the next keyed commands and
         * reports it in /readyz until the journal is rewritten) */
        if ((status == 200 || status == 422) && c->answer)
            (void)cmd_idem_finish(app->idem, c->key, status, c->answer,
                                  status == 200 && c->out.count ? c->out.position + 1 : 0);
        else
            cmd_idem_release(app->idem, c->key);
    }
    svc_metrics_command(app->metrics, c->command, kind,
                        (double)(ev_now_us() - c->started_us) / 1e6);
    log_command(c, kind);
    if (c->batch) {
        batch_line_done(c->batch);
        return;
    }
    svc_request *rq = c->rq;
    rq->replayed = c->replayed;
    if (c->answer)
        svc_answer(rq, status, status >= 400 ? "application/problem+json" : "application/json",
                   c->answer, strlen(c->answer));
    else
        svc_problem(rq, 500, "internal", NULL, "out of memory");
    c->answer = NULL; /* the request owns it now */
    svc_request_done(rq);
}

/* The same with the answer as JSON (taken). */
static void call_finished(command_call *c, unsigned status, json_t *answer, svc_outcome kind)
{
    char *text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);
    call_answered(c, status, text, kind);
}

static void command_done(void *ctx, cmd_outcome *out)
{
    command_call *c = ctx;
    svc_app *app = c->rq->app;
    svc_storage_note(app, out->status, out->count);
    atomic_fetch_sub(&app->in_flight, 1);
    if (out->status == 0) {
        call_answered(c, 200, success_text(out), SVC_OUT_OK);
        return;
    }
    unsigned status;
    svc_outcome kind;
    json_t *answer = outcome_json(out, &status, &kind);
    if (status == 503) /* overloaded, or the log failed: it recovers in place (recovery.c) */
        c->rq->retry_after = svc_storage_error(out->status) ? 5 : 1;
    call_finished(c, status, answer, kind);
}

/* ---- starting a command ---- */

/* If-Match: "N" or N (a weak W/ tag is refused: versions are exact). */
static int parse_if_match(const char *h, uint64_t *out)
{
    char buf[32];
    size_t n = strlen(h);
    if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
        if (n - 2 >= sizeof buf)
            return -1;
        memcpy(buf, h + 1, n - 2);
        buf[n - 2] = '\0';
        return svc_parse_u64(buf, out);
    }
    return svc_parse_u64(h, out);
}

/* W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero. */
static int traceparent_valid(const char *t)
{
    if (strlen(t) != 55 || t[2] != '-' || t[35] != '-' || t[52] != '-')
        return 0;
    for (int i = 0; i < 55; i++) {
        if (i == 2 || i == 35 || i == 52)
            continue;
        if (!strchr("0123456789abcdef", t[i]) || t[i] == '\0')
            return 0;
    }
    return strncmp(t, "ff", 2) != 0 && strspn(t + 3, "0") < 32 && strspn(t + 36, "0") < 16;
}

static int idem_key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > IDEM_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x21 || k[i] > 0x7e)
            return 0;
    return 1;
}

/* Problem for a call that never reached the bus. */
static void call_refused(command_call *c, unsigned status, const char *code, const char *field,
                         const char *detail)
{
    sk_error_set(&c->out.err, SK_EBADINPUT, field ? field : "", "%s", detail); /* for the log */
    call_finished(c, status, svc_problem_json(status, code, field, detail),
                  status == 503 ? SVC_OUT_OVERLOADED : SVC_OUT_INVALID);
}

/*
 * Runs one command: body is taken. expected is from If-Match or the batch line (ANY if
 * none); a body field overrides nothing: both given and different is an error.
 * idem_key: the client's key ("" if none).
 */
static void start_call(command_call *c, json_t *body, uint64_t expected, const char *idem_key)
{
    svc_request *rq = c->rq;
    svc_app *app = rq->app;
    c->started_us = ev_now_us();
    if (!json_is_object(body)) {
        json_decref(body);
        call_refused(c, 400, "invalid_json", NULL, "the body must be a JSON object");
        return;
    }
    json_t *ev = json_object_get(body, "expected_version");
    if (ev) {
        json_int_t v = json_is_integer(ev) ? json_integer_value(ev) : -1;
        if (v < 0 || (expected != STORE_EXPECT_ANY && (uint64_t)v != expected)) {
            json_decref(body);
            call_refused(c, 400, "invalid_field", "expected_version",
                         "expected_version must be an integer >= 0 (and agree with "
                         "If-Match)");
            return;
        }
        expected = (uint64_t)v;
        json_object_del(body, "expected_version");
    }
    json_t *cid = json_object_get(body, "command_id");
    if (cid) {
        if (!json_is_string(cid) ||
            ev_uuid_parse(json_string_value(cid), &c->ctx.command_id) != 0 ||
            ev_uuid_is_nil(&c->ctx.command_id)) {
            json_decref(body);
            call_refused(c, 400, "invalid_field", "command_id",
                         "command_id must be a UUID in text form");
            return;
        }
        json_object_del(body, "command_id");
    }
    /* a command_id names the command itself (its events carry it), so it wins over a
     * header key: a retry that repeats it is caught with or without the header. Both are
     * scoped by the principal: another principal's command_id is another key, so it can
     * neither read nor block the first principal's answer (issue 11) */
    if (cid) {
        char text[EV_UUID_TEXT_SIZE];
        ev_uuid_format(&c->ctx.command_id, text);
        snprintf(c->key, sizeof c->key, "c/%s/%s", rq->principal, text);
    } else if (*idem_key) {
        snprintf(c->key, sizeof c->key, "k/%s/%s", rq->principal, idem_key);
    }
    if (*c->key) {
        unsigned status;
        char *first = NULL;
        /* the request is its command and canonical body, however the JSON was spelled
         * and whether it came alone or in a batch */
        char *canonical = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        uint64_t fp = cmd_idem_fingerprint(c->command, canonical ? canonical : "",
                                           canonical ? strlen(canonical) : 0);
        free(canonical);
        cmd_idem_state st = cmd_idem_begin(app->idem, c->key, fp, &status, &first);
        if (st != CMD_IDEM_NEW) {
            json_decref(body);
            if (st == CMD_IDEM_DONE) {
                c->replayed = 1;
                *c->key = '\0'; /* nothing to remember: it is the first answer */
                call_answered(c, status, first, SVC_OUT_REPLAYED); /* as it was sent */
                return;
            }
            *c->key = '\0'; /* the claim is someone else's, or was not made */
            if (st == CMD_IDEM_UNAVAILABLE) {
                rq->retry_after = 1;
                call_refused(c, 503, "idempotency_unavailable", "Idempotency-Key",
                             "the idempotency journal cannot be written, so a keyed "
                             "command could not be answered the same way twice; "
                             "retry (GET /readyz says why)");
                return;
            }
            if (st == CMD_IDEM_BUSY) {
                rq->retry_after = 1;
                call_refused(c, 409, "request_in_progress", "Idempotency-Key",
                             "a request with this key is still running; retry");
                return;
            }
            call_refused(c, 422, "idempotency_key_reused", "Idempotency-Key",
                         "this key was used for a different request");
            return;
        }
    }
    if (atomic_load(&app->draining)) {
        json_decref(body);
        rq->retry_after = 1;
        call_refused(c, 503, "shutting_down", NULL,
                     "the server is shutting down (SIGTERM); retry, on another instance or "
                     "once it is back");
        return;
    }
    if (atomic_load(&app->in_flight) >= svc_cfg.queue_max) {
        json_decref(body);
        rq->retry_after = 1;
        call_refused(c, 503, "overloaded", NULL,
                     "too many commands in flight; retry after a second");
        return;
    }
    if (*c->key)
        c->meta[c->ctx.metadata_count++] =
            (ev_metadata_entry){ev_str_of(CMD_META_IDEMPOTENCY), ev_str_of(c->key)};
    c->ctx.metadata = c->meta;
    atomic_fetch_add(&app->in_flight, 1);
    if (!rq->counted) { /* once per request: a batch's lines share theirs */
        rq->counted = 1;
        atomic_fetch_add(&app->unsent, 1);
    }
    cmd_bus_submit(app->bus, c->command, body, expected, &c->ctx, &c->out, command_done, c);
    json_decref(body);
}

/* Headers shared by a command and every line of a batch: principal, traceparent,
 * correlation id. 0, or -1 after answering 400. */
static int read_context(svc_request *rq, command_call *c)
{
    c->meta[c->ctx.metadata_count++] =
        (ev_metadata_entry){ev_str_of(EV_META_PRINCIPAL), ev_str_of(rq->principal)};
    const char *tp = svc_header(rq, "traceparent");
    if (tp) {
        if (!traceparent_valid(tp)) {
            svc_problem(rq, 400, "invalid_header", "traceparent",
                        "traceparent must be 00-<32 hex>-<16 hex>-<2 hex> (W3C trace context)");
            return -1;
        }
        snprintf(c->traceparent, sizeof c->traceparent, "%s", tp);
    }
    svc_tracing_context(rq, c->traceparent, sizeof c->traceparent); /* the request's span */
    if (c->traceparent[0])
        c->meta[c->ctx.metadata_count++] =
            (ev_metadata_entry){ev_str_of(EV_META_TRACEPARENT), ev_str_of(c->traceparent)};
    const char *corr = svc_header(rq, "X-Correlation-Id");
    if (corr && ev_uuid_parse(corr, &c->ctx.correlation_id) != 0) {
        svc_problem(rq, 400, "invalid_header", "X-Correlation-Id",
                    "X-Correlation-Id must be a UUID in text form");
        return -1;
    }
    return 0;
}

static json_t *parse_json(const char *text, size_t len, json_error_t *jerr)
{
    return json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, jerr);
}

_Static_assert(sizeof(command_call) <= SVC_SPARE_BYTES, "a command_call must fit a spare block");

static void call_free(void *state)
{
    command_call *c = state;
    svc_spares_give(c->rq->app->spares, c);
}

int svc_route_command(svc_request *rq)
{
    command_call *c = svc_spares_take(rq->app->spares, sizeof *c);
    if (!c) {
        svc_problem(rq, 503, "unavailable", NULL, "out of memory");
        return 0;
    }
    rq->state = c;
    rq->state_free = call_free;
    c->rq = rq;
    size_t n = strlen(rq->arg);
    if (n > EV_TYPE_MAX) {
        svc_problem(rq, 404, "unknown_command", "type", "no command has a name that long");
        return 0;
    }
    memcpy(c->command, rq->arg, n + 1);
    if (svc_command_internal(c->command)) { /* the sagas' own journal: not for clients */
        svc_problem(rq, 404, "unknown_command", "type", "no command %s", c->command);
        return 0;
    }
    if (read_context(rq, c) != 0)
        return 0;
    uint64_t expected = STORE_EXPECT_ANY;
    const char *im = svc_header(rq, MHD_HTTP_HEADER_IF_MATCH);
    if (im && parse_if_match(im, &expected) != 0) {
        svc_problem(rq, 400, "invalid_header", "If-Match",
                    "If-Match must be a stream version: \"N\" or N");
        return 0;
    }
    const char *key = svc_header(rq, "Idempotency-Key");
    if (key && !idem_key_valid(key)) {
        svc_problem(rq, 400, "invalid_header", "Idempotency-Key",
                    "Idempotency-Key must be 1..%d printable ASCII characters", IDEM_KEY_MAX);
        return 0;
    }
    snprintf(c->idem_header, sizeof c->idem_header, "%s", key ? key : "");
    json_error_t jerr;
    json_t *body = parse_json(rq->body, rq->body_len, &jerr);
    if (!body) {
        svc_problem(rq, 400, "invalid_json", NULL, "the body is not valid JSON: %s (at byte %d)",
                    jerr.text, jerr.position);
        return 0;
    }
    start_call(c, body, expected, c->idem_header);
    return 1; /* answered through svc_request_done, perhaps already */
}

/* ---- batch ---- */

static void batch_free(void *state)
{
    batch *b = state;
    if (!b)
        return;
    for (size_t i = 0; i < b->count; i++)
        free(b->calls[i].answer);
    free(b->calls);
    free(b);
}

static void batch_line_done(batch *b)
{
    if (atomic_fetch_sub(&b->remaining, 1) != 1)
        return;
    size_t len = 0;
    for (size_t i = 0; i < b->count; i++)
        len += (b->calls[i].answer ? strlen(b->calls[i].answer) : 4) + 40;
    char *text = malloc(len + 1);
    size_t at = 0;
    for (size_t i = 0; text && i < b->count; i++) {
        const command_call *c = &b->calls[i];
        at += (size_t)snprintf(text + at, len + 1 - at, "{\"status\":%u,\"%s\":%s}\n", c->status,
                               c->status == 200 ? "result" : "problem",
                               c->answer ? c->answer : "null");
    }
    if (text)
        svc_answer(b->rq, 200, "application/x-ndjson", text, at);
    else
        svc_problem(b->rq, 503, "unavailable", NULL, "out of memory");
    svc_request_done(b->rq);
}

static int known_line_field(const char *k)
{
    return strcmp(k, "type") == 0 || strcmp(k, "body") == 0 || strcmp(k, "expected_version") == 0 ||
           strcmp(k, "idempotency_key") == 0;
}

/* Parses one NDJSON line into its call's pieces and starts it. */
static void start_line(command_call *c, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *o = parse_json(line, len, &jerr);
    json_t *type = json_object_get(o, "type"), *body = json_object_get(o, "body");
    json_t *ev = json_object_get(o, "expected_version"),
           *key = json_object_get(o, "idempotency_key");
    const char *problem = NULL;
    if (!o || !json_is_object(o))
        problem = "line is not a JSON object";
    else if (!json_is_string(type) || json_string_length(type) == 0 ||
             json_string_length(type) > EV_TYPE_MAX)
        problem = "type must name a command";
    else if (!json_is_object(body))
        problem = "body must be an object";
    else if (ev && (!json_is_integer(ev) || json_integer_value(ev) < 0))
        problem = "expected_version must be an integer >= 0";
    else if (key && (!json_is_string(key) || !idem_key_valid(json_string_value(key))))
        problem = "idempotency_key must be 1..128 printable ASCII characters";
    else {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) if (!known_line_field(k)) problem = "unknown field";
    }
    if (problem) {
        json_decref(o);
        c->started_us = ev_now_us();
        call_refused(c, 400, o ? "invalid_field" : "invalid_json", NULL, problem);
        return;
    }
    snprintf(c->command, sizeof c->command, "%s", json_string_value(type));
    if (svc_command_internal(c->command)) {
        json_decref(o);
        c->started_us = ev_now_us();
        call_refused(c, 404, "unknown_command", "type", "no such command");
        return;
    }
    snprintf(c->idem_header, sizeof c->idem_header, "%s", key ? json_string_value(key) : "");
    uint64_t expected = ev ? (uint64_t)json_integer_value(ev) : STORE_EXPECT_ANY;
    json_incref(body);
    json_decref(o);
    start_call(c, body, expected, c->idem_header);
}

int svc_route_batch(svc_request *rq)
{
    size_t lines = 0;
    for (size_t i = 0; i < rq->body_len; i++)
        lines += rq->body[i] == '\n';
    lines++;
    if (lines > BATCH_MAX + 1) {
        svc_problem(rq, 400, "invalid_field", NULL, "at most %d commands per batch", BATCH_MAX);
        return 0;
    }
    batch *b = calloc(1, sizeof *b);
    command_call *calls = b ? calloc(lines, sizeof *calls) : NULL;
    if (!calls) {
        free(b);
        svc_problem(rq, 503, "unavailable", NULL, "out of memory");
        return 0;
    }
    b->rq = rq;
    b->calls = calls;
    rq->state = b;
    rq->state_free = batch_free;
    /* split first, so the count is final before any line can finish */
    const char *starts[BATCH_MAX + 1] = {0};
    size_t lens[BATCH_MAX + 1] = {0};
    const char *p = rq->body ? rq->body : "", *end = p + rq->body_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        size_t n = (size_t)(stop - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (n) {
            if (b->count == BATCH_MAX) {
                svc_problem(rq, 400, "invalid_field", NULL, "at most %d commands per batch",
                            BATCH_MAX);
                return 0;
            }
            starts[b->count] = p;
            lens[b->count++] = n;
        }
        p = stop + 1;
    }
    if (b->count == 0) {
        svc_problem(rq, 400, "invalid_json", NULL, "the batch has no lines");
        return 0;
    }
    command_call shared = {0};
    shared.rq = rq;
    if (read_context(rq, &shared) != 0)
        return 0;
    atomic_init(&b->remaining, b->count);
    for (size_t i = 0; i < b->count; i++) {
        command_call *c = &b->calls[i];
        *c = shared;
        c->batch = b;
        c->ctx.metadata = c->meta;
        /* the shared entries point into shared's buffers: repoint them at this call's */
        for (uint32_t m = 0; m < c->ctx.metadata_count; m++)
            if (c->meta[m].value.ptr == shared.traceparent)
                c->meta[m].value = ev_str_of(c->traceparent);
        start_line(c, starts[i], lens[i]);
    }
    return 1;
}
