/*
 * schemas_cmd.c -- `skaldctl schemas list|check|export`: the registry's versions, whether
 * the .avsc files may replace the stored ones (never writes the data directory), and the
 * versions as Schema Registry request bodies for Kafka consumers (docs/kafka.md).
 */
#include "tools/skaldctl/skaldctl.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char LIST_USAGE[] =
    "Usage: skaldctl schemas list --data DIR [--schemas DIR] [--json]\n"
    "Lists every schema version with its id and type, marking the one new events use.\n"
    "Versions the .avsc files would add are listed too (not stored: list never writes).\n";
static const char CHECK_USAGE[] =
    "Usage: skaldctl schemas check [--data DIR] [--schemas DIR]\n"
    "Checks that every .avsc file parses and is compatible both ways with the version\n"
    "stored in the data directory (without --data: that the files parse). Exit 0 when the\n"
    "service would accept them, 1 with the schema and field at fault otherwise.\n";

static const char EXPORT_USAGE[] =
    "Usage: skaldctl schemas export --data DIR [--schemas DIR] [--topic T] [--out DIR]\n"
    "Writes one Schema Registry request body per stored schema version, for consumers of\n"
    "the Kafka topic T (default skald.events). Subjects follow the topic-record-name\n"
    "strategy, <topic>-<namespace>.<Type> (one subject per event type: eleven record types\n"
    "in one subject would fail a registry's default compatibility check); each body is\n"
    "{\"schema\", \"schemaType\": \"AVRO\", \"id\", \"version\"} and carries Skald's schema id,\n"
    "which is what a registry in import mode needs for ids on the wire to resolve. With\n"
    "--out: DIR/<subject>/v<version>.json and DIR/index.json (subject, version, id, type,\n"
    "file: POST each body to /subjects/<subject>/versions in index order). Without it:\n"
    "one JSON line per version on stdout, {\"subject\", \"version\", \"id\", \"type\", "
    "\"body\"}.\n";

/* The record's namespace from its schema text ("" if it has none). */
static char *schema_namespace(const char *schema_json)
{
    json_t *s = json_loads(schema_json, 0, NULL);
    const char *ns = json_string_value(json_object_get(s, "namespace"));
    char *out = strdup(ns ? ns : "");
    json_decref(s);
    return out;
}

static int write_json_file(const char *path, json_t *value)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(value, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || rename(tmp, path) != 0)
        return -errno ? -errno : -EIO;
    return 0;
}

static int schemas_export(const ctl_opts *o)
{
    ev_registry *reg = NULL;
    sk_error err = {0};
    if (ev_registry_open_readonly(o->schemas, o->data, &reg, &err) != 0)
        return ctl_fail("%s", err.message);
    const char *topic = o->topic ? o->topic : "skald.events";
    if (o->out && mkdir(o->out, 0755) != 0 && errno != EEXIST) {
        ev_registry_destroy(reg);
        return ctl_fail("cannot create %s: %s", o->out, strerror(errno));
    }
    json_t *index = json_array();
    int rc = CTL_OK;
    for (size_t i = 0; i < ev_registry_count(reg) && rc == CTL_OK; i++) {
        ev_schema_info info;
        ev_registry_at(reg, i, &info);
        /* the version within the subject: 1 + the versions of this type with lower ids */
        int version = 1;
        for (size_t j = 0; j < i; j++) {
            ev_schema_info other;
            ev_registry_at(reg, j, &other);
            version += strcmp(other.type, info.type) == 0 && other.id < info.id;
        }
        char *ns = schema_namespace(info.schema_json);
        char subject[512];
        snprintf(subject, sizeof subject, "%s-%s%s%s", topic, ns, ns[0] ? "." : "", info.type);
        free(ns);
        json_t *body = json_pack("{s:s, s:s, s:i, s:i}", "schema", info.schema_json, "schemaType",
                                 "AVRO", "id", (json_int_t)info.id, "version", version);
        if (!o->out) {
            json_t *line =
                json_pack("{s:s, s:i, s:i, s:s, s:o}", "subject", subject, "version", version, "id",
                          (json_int_t)info.id, "type", info.type, "body", body);
            char *text = json_dumps(line, JSON_COMPACT | JSON_SORT_KEYS);
            printf("%s\n", text);
            free(text);
            json_decref(line);
            continue;
        }
        char dir[4200], file[4300], rel[1024];
        snprintf(dir, sizeof dir, "%s/%s", o->out, subject);
        snprintf(rel, sizeof rel, "%s/v%d.json", subject, version);
        snprintf(file, sizeof file, "%s/%s", o->out, rel);
        if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || write_json_file(file, body) != 0)
            rc = ctl_fail("cannot write %s: %s", file, strerror(errno));
        json_array_append_new(index, json_pack("{s:s, s:i, s:i, s:s, s:s}", "subject", subject,
                                               "version", version, "id", (json_int_t)info.id,
                                               "type", info.type, "file", rel));
        json_decref(body);
    }
    if (rc == CTL_OK && o->out) {
        char file[4200];
        snprintf(file, sizeof file, "%s/index.json", o->out);
        if (write_json_file(file, index) != 0)
            rc = ctl_fail("cannot write %s: %s", file, strerror(errno));
        else
            printf("%zu schema versions exported to %s\n", json_array_size(index), o->out);
    }
    json_decref(index);
    ev_registry_destroy(reg);
    return rc;
}

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
    static const char USAGE[] = "Usage: skaldctl schemas list|check|export [OPTIONS]\n";
    static const ctl_subcommand SUBS[] = {
        {"list", "data,schemas,json", LIST_USAGE, schemas_list},
        {"check", "?data,schemas", CHECK_USAGE, schemas_check},
        {"export", "data,schemas,topic,out", EXPORT_USAGE, schemas_export},
    };
    return ctl_dispatch(argc, argv, USAGE, SUBS, sizeof SUBS / sizeof SUBS[0]);
}
