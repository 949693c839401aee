/*
 * commands.h -- the command side: aggregates as deciders.
 *
 * An aggregate is a decider: decide(state, command) -> events or a rejection, and
 * evolve(state, event) -> state. Both are pure: no I/O, no clock, no randomness, so the
 * same history and command always give the same answer (which is what makes replay,
 * snapshots and the saga's retries safe). State is a JSON object owned by the caller;
 * commands and events are the JSON shapes of their schemas.
 *
 * Calling sequence (the command bus, a later part of this layer, does this):
 *   h = cmd_handler_find(tables, n, "ReserveStock")       unknown -> 404
 *   h->stream_id(cmd, buf)                                "product-SKU-1"
 *   state = h->aggregate->initial(); for each event: state = evolve(state, ...)
 *   h->decide(state, cmd, &result)                        events, or rejected + reason
 *   cmd_result_clear(&result)
 *
 * A domain adds files (commands/product.c, ...) that export a table of handlers; no
 * engine file changes for a new domain.
 */
#ifndef SKALD_COMMANDS_H
#define SKALD_COMMANDS_H

#include "store/store.h"

#include <stdbool.h>

#define CMD_EVENTS_MAX 16

typedef struct cmd_event {
    const char *type; /* static string: the event type */
    json_t *payload;  /* owned by the result */
} cmd_event;

typedef struct cmd_result {
    bool rejected;     /* a business rule refused the command (HTTP 422) */
    char reason[64];   /* machine-readable: "insufficient_stock" */
    char message[256]; /* for a person */
    cmd_event events[CMD_EVENTS_MAX];
    size_t count; /* 0 with rejected false: the command changes nothing */
} cmd_result;

/* Adds an event; takes ownership of payload (also on failure, -ENOSPC when full). */
int cmd_result_add(cmd_result *r, const char *type, json_t *payload);
/* Marks the command rejected; returns nothing new (reason is a static code). */
void cmd_result_reject(cmd_result *r, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Frees the payloads; the result may be reused. */
void cmd_result_clear(cmd_result *r);

typedef struct cmd_aggregate {
    const char *name;          /* "Product" */
    const char *stream_prefix; /* "product-" */
    uint32_t state_version;    /* version of the state's shape, for snapshots */
    json_t *(*initial)(void);
    /* Applies one event to state in place (state is owned by the caller). Unknown event
     * types leave it unchanged. */
    void (*evolve)(json_t *state, const char *type, const json_t *payload);
} cmd_aggregate;

typedef struct cmd_handler {
    const char *command; /* "RegisterProduct" */
    const cmd_aggregate *aggregate;
    const char *id_field; /* the command field that names the stream: "sku" */
    /* Decides; state and cmd are borrowed; out starts cleared. */
    void (*decide)(const json_t *state, const json_t *cmd, cmd_result *out);
} cmd_handler;

typedef struct cmd_handler_table {
    const cmd_handler *handlers;
    size_t count;
} cmd_handler_table;

/* The handler for a command name across tables, or NULL (HTTP 404). */
const cmd_handler *cmd_handler_find(const cmd_handler_table *tables, size_t ntables,
                                    const char *command);
/* "<prefix><id>" for the command's stream into out; SK_EBADINPUT if the id field is
 * missing or empty, SK_ETOOBIG if the stream id would exceed EV_STREAM_ID_MAX. */
int cmd_stream_id(const cmd_handler *h, const json_t *cmd, char *out, size_t size);

/* The sample domain: order fulfillment. */
extern const cmd_handler_table cmd_product_handlers;
extern const cmd_handler_table cmd_customer_handlers;
extern const cmd_handler_table cmd_order_handlers;

#endif /* SKALD_COMMANDS_H */
