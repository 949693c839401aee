/*
 * schemas_cmd.c -- `skaldctl schemas list|check`: the registry's versions and whether
 * the .avsc files may replace the stored ones (never writes).
 */
#include "tools/skaldctl/skaldctl.h"

#include <stdlib.h>
#include <string.h>

static const char LIST_USAGE[] =
    "Usage: skaldctl schemas list --data DIR [--schemas DIR] [--json]\n"
    "Lists every schema version with its id and type, marking the one new events use.\n"
    "Versions the .avsc files would add are listed too (not stored: list never writes).\n";
static const char CHECK_USAGE[] =
    "Usage: skaldctl schemas check [--data DIR] [--schemas DIR]\n"
    "Checks that every .avsc file parses and is compatible both ways with the version\n"
    "stored in the data directory (without --data: that the files parse). Exit 0 when the\n"
    "service would accept them, 1 with the schema and field at fault otherwise.\n";

static int schemas_list(const ctl_opts *o)
{
    ev_registry *reg = NULL;
    sk_error err = {0};
    if (ev_registry_open_readonly(o->schemas, o->data, &reg, &err) != 0)
        return ctl_fail("%s", err.message);
    for (size_t i = 0; i < ev_registry_count(reg); i++) {
        ev_schema_info info;
        ev_registry_at(reg, i, &info);
        if (o->json)
            printf("{\"id\":%u,\"type\":\"%s\",\"latest\":%s,\"schema\":%s}\n", info.id, info.type,
                   info.latest ? "true" : "false", info.schema_json);
        else
            printf("%6u  %-24s %s\n", info.id, info.type, info.latest ? "latest" : "");
    }
    ev_registry_destroy(reg);
    return CTL_OK;
}

static int schemas_check(const ctl_opts *o)
{
    ev_registry *reg = NULL;
    sk_error err = {0};
    if (ev_registry_open_readonly(o->schemas, o->data, &reg, &err) != 0)
        return ctl_fail("%s", err.message);
    printf("%zu schema versions; the files in %s are compatible\n", ev_registry_count(reg),
           o->schemas);
    ev_registry_destroy(reg);
    return CTL_OK;
}

int ctl_schemas(int argc, char **argv)
{
    static const char USAGE[] = "Usage: skaldctl schemas list|check [OPTIONS]\n";
    static const ctl_subcommand SUBS[] = {
        {"list", "data,schemas,json", LIST_USAGE, schemas_list},
        {"check", "?data,schemas", CHECK_USAGE, schemas_check},
    };
    return ctl_dispatch(argc, argv, USAGE, SUBS, sizeof SUBS / sizeof SUBS[0]);
}
