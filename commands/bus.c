/*
 * bus.c -- the command bus (engine): one command from JSON body to durable events.
 *
 *   1. find the handler (unknown command: SK_ENOTFOUND);
 *   2. check the body against the command's schema (SK_EBADINPUT naming the field);
 *   3. lock the stream's stripe, so commands for one stream are serialized;
 *   4. rebuild the aggregate: read its stream, decode each payload to JSON through the
 *      event registry (older schema versions are resolved to the newest), evolve;
 *   5. check expected_version (SK_ECONFLICT with the current version);
 *   6. decide (SK_EREJECTED with the reason);
 *   7. encode the events and append them with the version of step 4.
 */
#include "commands/commands.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES    64
#define TABLES_MAX 16

struct cmd_bus {
    store_log *log;
    const ev_registry *events;
    ev_registry *commands;
    cmd_handler_table tables[TABLES_MAX];
    size_t ntables;
    pthread_mutex_t stripes[STRIPES];
};

int cmd_bus_create(const cmd_bus_config *cfg, cmd_bus **out, sk_error *err)
{
    if (cfg->ntables > TABLES_MAX)
        return sk_error_set(err, -EINVAL, "", "at most %d handler tables", TABLES_MAX);
    cmd_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return -ENOMEM;
    int rc = ev_registry_open(cfg->command_schemas_dir, NULL, &bus->commands, err);
    if (rc) {
        free(bus);
        return rc;
    }
    bus->log = cfg->log;
    bus->events = cfg->events;
    memcpy(bus->tables, cfg->tables, cfg->ntables * sizeof *cfg->tables);
    bus->ntables = cfg->ntables;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&bus->stripes[i], NULL);
    *out = bus;
    return 0;
}

void cmd_bus_destroy(cmd_bus *bus)
{
    if (!bus)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&bus->stripes[i]);
    ev_registry_destroy(bus->commands);
    free(bus);
}

static unsigned stripe_of(const char *stream)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = stream; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h % STRIPES;
}

void cmd_outcome_clear(cmd_outcome *out)
{
    cmd_result_clear(&out->decision);
    memset(out, 0, sizeof *out);
}

/* Rebuilds the aggregate's state from its stream; *version_out is the stream version. */
static int load(cmd_bus *bus, const cmd_handler *h, const char *stream, json_t **state_out,
                uint64_t *version_out, sk_error *err)
{
    store_reader *r;
    int rc = store_reader_open_stream(bus->log, ev_str_of(stream), 1, &r);
    if (rc)
        return sk_error_set(err, rc, "", "cannot read stream %s: %s", stream, sk_strerror(rc));
    json_t *state = h->aggregate->initial();
    uint64_t version = 0;
    ev_event ev;
    while ((rc = store_reader_next(r, &ev, err)) == 1) {
        json_t *payload = NULL;
        rc = ev_payload_to_json(bus->events, ev.schema_id, ev.payload, ev.payload_size, &payload,
                                err);
        if (rc)
            break;
        char type[EV_TYPE_MAX + 1];
        memcpy(type, ev.type.ptr, ev.type.len);
        type[ev.type.len] = '\0';
        h->aggregate->evolve(state, type, payload);
        json_decref(payload);
        version = ev.version;
    }
    store_reader_close(r);
    if (rc < 0) {
        json_decref(state);
        return rc;
    }
    *state_out = state;
    *version_out = version;
    return 0;
}

/* Encodes the decision's events and appends them at `version`. */
static int append(cmd_bus *bus, const cmd_context *ctx, uint64_t version, cmd_outcome *out)
{
    ev_buf bufs[CMD_EVENTS_MAX] = {{0}};
    ev_event evs[CMD_EVENTS_MAX];
    int rc = 0;
    size_t n = out->decision.count;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const cmd_event *e = &out->decision.events[i];
        memset(&evs[i], 0, sizeof evs[i]);
        rc = ev_payload_from_json(bus->events, e->type, e->payload, &bufs[i], &evs[i].schema_id,
                                  &out->err);
        ev_uuid_generate(&evs[i].event_id);
        evs[i].type = ev_str_of(e->type);
        evs[i].command_id = out->command_id;
        evs[i].correlation_id = ctx ? ctx->correlation_id : (ev_uuid){{0}};
        evs[i].metadata_count = ctx ? ctx->metadata_count : 0;
        for (uint32_t m = 0; m < evs[i].metadata_count && m < EV_METADATA_MAX; m++)
            evs[i].metadata[m] = ctx->metadata[m];
        evs[i].payload = bufs[i].data;
        evs[i].payload_size = (uint32_t)bufs[i].size;
        out->event_ids[i] = evs[i].event_id;
        out->event_types[i] = e->type;
    }
    store_append_result res = {0};
    if (rc == 0)
        rc =
            store_log_append(bus->log, ev_str_of(out->stream_id), version, evs, n, &res, &out->err);
    for (size_t i = 0; i < n; i++)
        ev_buf_free(&bufs[i]);
    if (rc == 0) {
        out->count = (uint32_t)n;
        out->first_position = res.first_position;
        out->first_version = res.first_version;
        out->stream_version = res.stream_version;
        out->position = res.first_position + n - 1;
    } else if (rc == SK_ECONFLICT) {
        out->stream_version = res.stream_version;
    }
    return rc;
}

static int decide_and_append(cmd_bus *bus, const cmd_handler *h, const json_t *body,
                             uint64_t expected_version, const cmd_context *ctx, cmd_outcome *out)
{
    json_t *state = NULL;
    uint64_t version = 0;
    int rc = load(bus, h, out->stream_id, &state, &version, &out->err);
    if (rc)
        return rc;
    out->stream_version = version;
    if (expected_version != STORE_EXPECT_ANY && expected_version != version) {
        json_decref(state);
        return sk_error_set(&out->err, SK_ECONFLICT, "expected_version",
                            "stream %s is at version %llu, not %llu", out->stream_id,
                            (unsigned long long)version, (unsigned long long)expected_version);
    }
    h->decide(state, body, &out->decision);
    json_decref(state);
    if (out->decision.rejected)
        return sk_error_set(&out->err, SK_EREJECTED, "", "%s", out->decision.message);
    if (out->decision.count == 0) {
        uint64_t head = store_log_head(bus->log);
        out->position = head ? head - 1 : 0;
        return 0;
    }
    rc = append(bus, ctx, version, out);
    for (size_t i = 0; i < out->decision.count; i++)
        json_decref(out->decision.events[i].payload);
    out->decision.count = 0;
    return rc;
}

int cmd_bus_execute(cmd_bus *bus, const char *command, const json_t *body,
                    uint64_t expected_version, const cmd_context *ctx, cmd_outcome *out)
{
    memset(out, 0, sizeof *out);
    const cmd_handler *h = cmd_handler_find(bus->tables, bus->ntables, command);
    if (!h)
        return out->status =
                   sk_error_set(&out->err, SK_ENOTFOUND, "type", "unknown command '%s'", command);
    ev_buf shape = {0};
    int rc = ev_payload_from_json(bus->commands, command, body, &shape, NULL, &out->err);
    ev_buf_free(&shape);
    if (rc)
        return out->status = rc;
    rc = cmd_stream_id(h, body, out->stream_id, sizeof out->stream_id);
    if (rc)
        return out->status = sk_error_set(&out->err, rc, h->id_field,
                                          "%s does not name a valid stream", h->id_field);
    out->command_id = ctx ? ctx->command_id : (ev_uuid){{0}};
    if (ev_uuid_is_nil(&out->command_id))
        ev_uuid_generate(&out->command_id);
    pthread_mutex_t *stripe = &bus->stripes[stripe_of(out->stream_id)];
    pthread_mutex_lock(stripe);
    rc = decide_and_append(bus, h, body, expected_version, ctx, out);
    pthread_mutex_unlock(stripe);
    return out->status = rc;
}
