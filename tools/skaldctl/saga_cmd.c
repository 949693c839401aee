/*
 * saga_cmd.c -- `skaldctl saga list|show|retry|abort`, through a running server's admin
 * API (/v1/sagas..., docs/sagas.md).
 *
 * list pages through GET /v1/sagas (the sagas read model) following next_cursor; show
 * prints one saga with its history; retry and abort need a token with the admin role
 * when the server has a tokens file. Output is text, or the API's JSON with --json.
 * Exit codes: 0 done, 1 the server refused or could not be reached (the message says
 * why), 2 usage.
 */
#include "tools/skaldctl/skaldctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "Usage: skaldctl saga list [--state S] [--type T]  --server URL [--json]\n"
    "       skaldctl saga show ID                      --server URL [--json]\n"
    "       skaldctl saga retry ID                     --server URL\n"
    "       skaldctl saga abort ID                     --server URL\n"
    "The sagas' state, and the admin's ways on stuck or running ones (docs/sagas.md).\n"
    "  --server URL   a running server, e.g. http://127.0.0.1:8080 (or $SKALD_SERVER)\n"
    "  --token T      its bearer token, role admin for retry/abort ($SKALD_TOKEN)\n"
    "  --state S      list: running|compensating|completed|compensated|stuck|aborted\n"
    "  --type T       list: the saga type (OrderFulfillment)\n"
    "  --json         print the API's JSON\n";

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "-";
}

/* Query-string safe characters only: a saga id or a filter with others is refused. */
static int plain(const char *s)
{
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:", *s))
            return 0;
    return 1;
}

static int call(const char *server, const char *token, const char *method, const char *path,
                ctl_http_reply *r)
{
    sk_error err = {0};
    if (ctl_http_call(server, token, method, path, NULL, r, &err) != 0)
        return ctl_fail("%s", err.message);
    if (r->status >= 300) {
        const char *detail = json_string_value(json_object_get(r->body, "detail"));
        int rc = ctl_fail("%s %s: %d %s", method, path, r->status, detail ? detail : "");
        json_decref(r->body);
        r->body = NULL;
        return rc;
    }
    return CTL_OK;
}

static int list(const char *server, const char *token, const char *state, const char *type,
                bool json)
{
    char path[1024], cursor[600] = "";
    json_t *all = json_array();
    for (int pages = 0; pages < 100000; pages++) {
        snprintf(path, sizeof path, "/v1/sagas?limit=500%s%s%s%s%s%s", state ? "&state=" : "",
                 state ? state : "", type ? "&type=" : "", type ? type : "",
                 cursor[0] ? "&cursor=" : "", cursor);
        ctl_http_reply r = {0};
        int rc = call(server, token, "GET", path, &r);
        if (rc) {
            json_decref(all);
            return rc;
        }
        json_array_extend(all, json_object_get(r.body, "items"));
        const char *next = json_string_value(json_object_get(r.body, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next && plain(next) ? next : "");
        json_decref(r.body);
        if (!cursor[0])
            break;
    }
    if (json) {
        json_t *o = json_pack("{s:o}", "sagas", all);
        json_dumpf(o, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(o);
        return CTL_OK;
    }
    printf("%-40s %-18s %-13s %-28s %s\n", "SAGA", "TYPE", "STATE", "STEP", "LAST ERROR");
    size_t i;
    json_t *v;
    json_array_foreach(all, i, v)
    {
        printf("%-40s %-18s %-13s %-28s %s\n", str(v, "saga_id"), str(v, "type"), str(v, "state"),
               str(v, "step"), str(v, "last_error"));
    }
    json_decref(all);
    return CTL_OK;
}

int ctl_saga(int argc, char **argv)
{
    static const struct option longs[] = {
        {"server", required_argument, NULL, 's'},
        {"token", required_argument, NULL, 't'},
        {"state", required_argument, NULL, 'S'},
        {"type", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *server = getenv("SKALD_SERVER"), *token = getenv("SKALD_TOKEN");
    const char *state = NULL, *type = NULL, *id = NULL;
    bool json = false;
    if (argc < 3 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
        fputs(USAGE, argc < 3 ? stderr : stdout);
        return argc < 3 ? CTL_USAGE : CTL_OK;
    }
    const char *verb = argv[2];
    if (strcmp(verb, "list") != 0 && strcmp(verb, "show") != 0 && strcmp(verb, "retry") != 0 &&
        strcmp(verb, "abort") != 0)
        return ctl_usage_error(USAGE, "unknown saga command '%s'", verb);
    int first = 3;
    if (strcmp(verb, "list") != 0) {
        if (argc < 4 || argv[3][0] == '-')
            return ctl_usage_error(USAGE, "saga %s needs an ID", verb);
        id = argv[3];
        first = 4;
    }
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc - first + 1, argv + first - 1, "", longs, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'S':
            state = optarg;
            break;
        case 'T':
            type = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(USAGE, stdout);
            return CTL_OK;
        default:
            return ctl_usage_error(USAGE, "unknown or incomplete option '%s'",
                                   argv[first - 1 + optind - 1]);
        }
    }
    if (optind < argc - first + 1)
        return ctl_usage_error(USAGE, "unexpected argument '%s'", argv[first - 1 + optind]);
    if (!server)
        return ctl_usage_error(USAGE, "%s", "give --server URL (or $SKALD_SERVER)");
    if ((id && !plain(id)) || (state && !plain(state)) || (type && !plain(type)))
        return ctl_usage_error(USAGE, "%s", "ids and filters are letters, digits and -_.~:");
    if (!id)
        return list(server, token, state, type, json);
    char path[512];
    ctl_http_reply r = {0};
    bool show = strcmp(verb, "show") == 0;
    if (show)
        snprintf(path, sizeof path, "/v1/sagas/%s", id);
    else
        snprintf(path, sizeof path, "/v1/sagas/%s/%s", id, verb);
    int rc = call(server, token, show ? "GET" : "POST", path, &r);
    if (rc)
        return rc;
    if (json) {
        json_dumpf(r.body, stdout, JSON_INDENT(2));
        putchar('\n');
    } else if (!show) {
        printf("%s: %s\n", str(r.body, "saga_id"), str(r.body, "state"));
    } else {
        printf("saga       %s\ntype       %s\nstate      %s\nsubject    %s\nstep       %s\n"
               "last error %s\nupdated    %s\nhistory:\n",
               str(r.body, "saga_id"), str(r.body, "type"), str(r.body, "state"),
               str(r.body, "subject"), str(r.body, "step"), str(r.body, "last_error"),
               str(r.body, "updated_at"));
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(r.body, "history"), i, e)
        {
            char *p = json_dumps(json_object_get(e, "payload"), JSON_COMPACT);
            printf("  %4zu %s %-18s %s\n", i + 1, str(e, "occurred_at"), str(e, "type"),
                   p ? p : "");
            free(p);
        }
    }
    json_decref(r.body);
    return CTL_OK;
}
