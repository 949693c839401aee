/*
 * projection_cmd.c -- `skaldctl projection list|status|rebuild|resume|skip`.
 *
 * Two ways to reach the read models:
 *   --server URL (or $SKALD_SERVER): a running `skald serve`, through its HTTP API
 *     (/v1/projections...), with --token (or $SKALD_TOKEN) when it has a tokens file;
 *   --data DIR: offline, on a data directory no server is running projections on (the
 *     projection engine's lock in DIR/projections refuses a second one): the log is read
 *     read-only and the work is done here, then the command returns.
 * `rebuild` waits until the new generation serves (a progress bar on a terminal, progress
 * lines otherwise) unless --no-wait. Output is text, or the API's JSON with --json.
 */
#include "tools/skaldctl/skaldctl.h"

#include "projections/projections.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: skaldctl projection list              (--server URL | --data DIR) [--json]\n"
    "       skaldctl projection status NAME       (--server URL | --data DIR) [--json]\n"
    "       skaldctl projection rebuild NAME      (--server URL | --data DIR) [--no-wait]\n"
    "       skaldctl projection resume NAME       (--server URL | --data DIR)\n"
    "       skaldctl projection skip NAME --position P  (--server URL | --data DIR)\n"
    "The read models' state, and the admin's ways on (docs/projections.md).\n"
    "  --server URL   a running server, e.g. http://127.0.0.1:8080 (or $SKALD_SERVER)\n"
    "  --token T      its bearer token, role admin for rebuild/resume/skip ($SKALD_TOKEN)\n"
    "  --data DIR     offline: a data directory with no server running its projections\n"
    "  --models DIR   offline: the model files (default: the installed ones)\n"
    "  --schemas DIR  offline: the event schemas (default: the installed ones)\n"
    "  --position P   skip: the failed event's position\n"
    "  --no-wait      rebuild: return once it has started\n"
    "  --json         print the API's JSON\n";

typedef struct proj_opts {
    const char *server, *token, *data, *models, *schemas;
    const char *verb, *name;
    int64_t position;
    bool json, no_wait;
} proj_opts;

static int http_call(const proj_opts *o, const char *method, const char *path, const char *body,
                     ctl_http_reply *out, sk_error *err)
{
    return ctl_http_call(o->server, o->token, method, path, body, out, err);
}

/* ---------------------------------------------------------------------------------------
 * Offline: the engine on a data directory.
 */
typedef struct offline {
    store_log *log;
    ev_registry *events;
    proj_engine *engine;
} offline;

static int offline_open(const proj_opts *o, offline *off, sk_error *err)
{
    char path[4096], models[4096], schemas[4096];
    snprintf(models, sizeof models, "%s", o->models ? o->models : "");
    snprintf(schemas, sizeof schemas, "%s", o->schemas ? o->schemas : "");
    if (!o->models && ev_shipped_path("projections/models", models, sizeof models) != 0)
        return sk_error_set(err, -ENOENT, "models", "no models at %s; pass --models", models);
    if (!o->schemas && ev_shipped_path("events/schemas", schemas, sizeof schemas) != 0)
        return sk_error_set(err, -ENOENT, "schemas", "no schemas at %s; pass --schemas", schemas);
    int rc = ev_registry_open_readonly(schemas, o->data, &off->events, err);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/log", o->data);
    store_config lc;
    store_config_init(&lc, path);
    lc.read_only = 1;
    rc = store_log_open(&lc, &off->log, err);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/projections", o->data);
    proj_config pc = {.log = off->log, .events = off->events, .models_dir = models, .dir = path};
    return proj_engine_open(&pc, &off->engine, err);
}

static void offline_close(offline *off)
{
    proj_engine_close(off->engine);
    store_log_close(off->log);
    ev_registry_destroy(off->events);
}

/* ---------------------------------------------------------------------------------------
 * Output.
 */
static void print_status(const json_t *st)
{
    const json_t *err = json_object_get(st, "last_error");
    printf("%-18s %-11s generation %-4" JSON_INTEGER_FORMAT " position %-10" JSON_INTEGER_FORMAT
           " lag %" JSON_INTEGER_FORMAT "\n",
           json_string_value(json_object_get(st, "name")),
           json_string_value(json_object_get(st, "state")),
           json_integer_value(json_object_get(st, "generation")),
           json_integer_value(json_object_get(st, "position")),
           json_integer_value(json_object_get(st, "lag_events")));
    if (json_is_object(err))
        printf("  failed at position %" JSON_INTEGER_FORMAT " (%s on %s): %s\n",
               json_integer_value(json_object_get(err, "position")),
               json_string_value(json_object_get(err, "type")),
               json_string_value(json_object_get(err, "stream_id")),
               json_string_value(json_object_get(err, "message")));
    const json_t *skipped = json_object_get(st, "skipped");
    if (json_array_size(skipped) > 0) {
        char *text = json_dumps(skipped, JSON_COMPACT);
        printf("  skipped positions: %s\n", text ? text : "?");
        free(text);
    }
}

static int show(const proj_opts *o, json_t *v)
{
    if (o->json) {
        char *text = json_dumps(v, JSON_COMPACT);
        printf("%s\n", text ? text : "null");
        free(text);
    } else if (json_is_array(json_object_get(v, "projections"))) {
        json_t *st;
        size_t i;
        json_array_foreach(json_object_get(v, "projections"), i, st)
        {
            print_status(st);
        }
    } else {
        print_status(v);
    }
    return CTL_OK;
}

/* ---------------------------------------------------------------------------------------
 * The verbs.
 */
static int run_online(const proj_opts *o)
{
    char path[512], body[64] = "";
    const char *method = "GET";
    if (strcmp(o->verb, "list") == 0) {
        snprintf(path, sizeof path, "/v1/projections");
    } else if (strcmp(o->verb, "status") == 0) {
        snprintf(path, sizeof path, "/v1/projections/%s", o->name);
    } else {
        method = "POST";
        snprintf(path, sizeof path, "/v1/projections/%s/%s", o->name, o->verb);
        if (strcmp(o->verb, "skip") == 0)
            snprintf(body, sizeof body, "{\"position\":%" PRId64 "}", o->position);
    }
    ctl_http_reply r = {0};
    sk_error err = {0};
    if (http_call(o, method, path, body[0] ? body : NULL, &r, &err) != 0)
        return ctl_fail("%s", err.message);
    if (r.status >= 300) {
        const char *detail = json_string_value(json_object_get(r.body, "detail"));
        int rc = ctl_fail("%s %s: %d %s", method, path, r.status, detail ? detail : "");
        json_decref(r.body);
        return rc;
    }
    bool wait = strcmp(o->verb, "rebuild") == 0 && !o->no_wait;
    for (int polls = 0; wait && polls < 36000; polls++) { /* at most an hour */
        json_t *rebuild = json_object_get(r.body, "rebuild");
        if (!json_is_object(rebuild) && polls > 0)
            break;
        if (json_is_object(rebuild))
            ctl_progress("rebuild",
                         (uint64_t)json_integer_value(json_object_get(rebuild, "position")) + 1,
                         (uint64_t)json_integer_value(json_object_get(r.body, "position")) + 1 +
                             (uint64_t)json_integer_value(json_object_get(r.body, "lag_events")));
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        json_decref(r.body);
        r.body = NULL;
        snprintf(path, sizeof path, "/v1/projections/%s", o->name);
        if (http_call(o, "GET", path, NULL, &r, &err) != 0 || r.status != 200) {
            ctl_progress_end();
            return ctl_fail("lost the server while waiting: %s", err.message);
        }
    }
    if (wait)
        ctl_progress_end();
    int rc = show(o, r.body);
    json_decref(r.body);
    return rc;
}

/* The engine catches up on a thread of its own while this one reports the progress of
 * the named model (its status is safe to read from any thread). */
typedef struct catch_up_job {
    proj_engine *engine;
    sk_error err;
    int rc;
    _Atomic int done;
} catch_up_job;

static void *catch_up_main(void *arg)
{
    catch_up_job *j = arg;
    j->rc = proj_engine_catch_up(j->engine, &j->err);
    atomic_store(&j->done, 1);
    return NULL;
}

static int catch_up_with_progress(offline *off, const char *name, sk_error *err)
{
    catch_up_job j = {.engine = off->engine};
    pthread_t t;
    if (pthread_create(&t, NULL, catch_up_main, &j) != 0)
        return proj_engine_catch_up(off->engine, err);
    uint64_t total = store_log_durable_head(off->log);
    bool shown = false;
    while (!atomic_load(&j.done)) {
        json_t *st = proj_status_json(off->engine, name);
        json_t *rebuild = json_object_get(st, "rebuild");
        json_int_t at =
            json_integer_value(json_object_get(json_is_object(rebuild) ? rebuild : st, "position"));
        json_decref(st);
        ctl_progress(name, (uint64_t)(at + 1), total);
        shown = true;
        struct timespec ts = {0, 200000000};
        nanosleep(&ts, NULL);
    }
    pthread_join(t, NULL);
    if (shown)
        ctl_progress_end();
    if (j.rc)
        *err = j.err;
    return j.rc;
}

static int run_offline(const proj_opts *o)
{
    offline off = {0};
    sk_error err = {0};
    int rc = offline_open(o, &off, &err);
    if (rc == 0) {
        if (strcmp(o->verb, "rebuild") == 0)
            rc = proj_rebuild(off.engine, o->name, &err);
        else if (strcmp(o->verb, "resume") == 0)
            rc = proj_resume(off.engine, o->name, &err);
        else if (strcmp(o->verb, "skip") == 0)
            rc = proj_skip(off.engine, o->name, (uint64_t)o->position, &err);
    }
    bool works = strcmp(o->verb, "list") != 0 && strcmp(o->verb, "status") != 0;
    if (rc == 0 && works)
        rc = catch_up_with_progress(&off, o->name, &err);
    json_t *out = NULL;
    if (rc == 0 && o->name) {
        out = proj_status_json(off.engine, o->name);
        if (!out)
            rc = sk_error_set(&err, SK_ENOTFOUND, "", "no projection named %s", o->name);
    } else if (rc == 0) {
        json_t *list = json_array();
        for (size_t i = 0; i < proj_count(off.engine); i++)
            json_array_append_new(list, proj_status_json(off.engine, proj_name(off.engine, i)));
        out = json_pack("{s:o}", "projections", list);
    }
    offline_close(&off);
    if (rc != 0)
        return ctl_fail("%s", err.message[0] ? err.message : sk_strerror(rc));
    rc = show(o, out);
    json_decref(out);
    return rc;
}

int ctl_projection(int argc, char **argv)
{
    static const struct option longs[] = {
        {"server", required_argument, NULL, 's'},  {"token", required_argument, NULL, 't'},
        {"data", required_argument, NULL, 'd'},    {"models", required_argument, NULL, 'm'},
        {"schemas", required_argument, NULL, 'S'}, {"position", required_argument, NULL, 'p'},
        {"no-wait", no_argument, NULL, 'n'},       {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    proj_opts o = {
        .server = getenv("SKALD_SERVER"), .token = getenv("SKALD_TOKEN"), .position = -1};
    if (argc < 3 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
        fputs(USAGE, argc < 3 ? stderr : stdout);
        return argc < 3 ? CTL_USAGE : CTL_OK;
    }
    o.verb = argv[2];
    static const char *const verbs[] = {"list", "status", "rebuild", "resume", "skip"};
    bool known = false;
    for (size_t i = 0; i < 5; i++)
        known |= strcmp(o.verb, verbs[i]) == 0;
    if (!known)
        return ctl_usage_error(USAGE, "unknown projection command '%s'", o.verb);
    int first = 3;
    if (strcmp(o.verb, "list") != 0) {
        if (argc < 4 || argv[3][0] == '-')
            return ctl_usage_error(USAGE, "projection %s needs a NAME", o.verb);
        o.name = argv[3];
        first = 4;
    }
    optind = 0;
    opterr = 0;
    int c;
    char *end;
    while ((c = getopt_long(argc - first + 1, argv + first - 1, "", longs, NULL)) != -1) {
        switch (c) {
        case 's':
            o.server = optarg;
            break;
        case 't':
            o.token = optarg;
            break;
        case 'd':
            o.data = optarg;
            break;
        case 'm':
            o.models = optarg;
            break;
        case 'S':
            o.schemas = optarg;
            break;
        case 'n':
            o.no_wait = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            fputs(USAGE, stdout);
            return CTL_OK;
        case 'p':
            errno = 0;
            o.position = (int64_t)strtoll(optarg, &end, 10);
            if (errno || *end || o.position < 0)
                return ctl_usage_error(USAGE, "--position: '%s' is not a position", optarg);
            break;
        default:
            return ctl_usage_error(USAGE, "unknown or incomplete option '%s'",
                                   argv[first - 1 + optind - 1]);
        }
    }
    if (optind < argc - first + 1)
        return ctl_usage_error(USAGE, "unexpected argument '%s'", argv[first - 1 + optind]);
    if (strcmp(o.verb, "skip") == 0 && o.position < 0)
        return ctl_usage_error(USAGE, "%s", "projection skip needs --position P");
    if (o.data && o.server && getenv("SKALD_SERVER") != o.server)
        return ctl_usage_error(USAGE, "%s", "give --server or --data, not both");
    if (o.data)
        return run_offline(&o);
    if (!o.server)
        return ctl_usage_error(USAGE, "%s", "give --server URL (or $SKALD_SERVER) or --data DIR");
    return run_online(&o);
}
