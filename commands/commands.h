/*
 * commands.h -- the command side: aggregates as deciders.
 *
 * An aggregate is a decider: decide(state, command) -> events or a rejection, and
 * evolve(state, event) -> state. Both are pure: no I/O, no clock, no randomness, so the
 * same history and command always give the same answer (which is what makes replay,
 * snapshots and the saga's retries safe). Commands and events are the JSON shapes of
 * their schemas; the state is the aggregate's own C struct (typed: no JSON tree to build,
 * walk and free on every command), with a JSON form for snapshots and tools.
 *
 * Calling sequence (what the command bus below does with each command):
 *   h = cmd_handler_find(cmd_domains, "ReserveStock")     unknown -> 404
 *   cmd_stream_id(h, cmd, buf, size)                      "product-SKU-1"
 *   state = cmd_state_new(h->aggregate); for each event: h->aggregate->evolve(state, ...)
 *                                                         (in place)
 *   h->decide(state, cmd, &result)                        events, or rejected + reason
 *   cmd_result_clear(&result); cmd_state_free(h->aggregate, state)
 *
 * Engine and domain apart: the engine (bus.c, cache.c, load.c, result.c and this header)
 * knows no domain. A domain adds files (commands/product.c, ...) that export handler
 * tables, gathers them into a cmd_domain, and is listed in the registration table
 * cmd_domains (commands/domains.c); no engine file changes for a new domain.
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
    char field[64];    /* the field at fault, when one is ("quantity"); else "" */
    cmd_event events[CMD_EVENTS_MAX];
    size_t count; /* 0 with rejected false: the command changes nothing */
} cmd_result;

/* Adds an event; takes ownership of payload (also on failure). -ENOMEM when payload is
 * NULL (so `return cmd_result_add(out, T, json_pack(...))` reports a failed json_pack),
 * -ENOSPC when the result is full. */
int cmd_result_add(cmd_result *r, const char *type, json_t *payload);
/* Marks the command rejected; returns nothing new (reason is a static code). */
void cmd_result_reject(cmd_result *r, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Rejects with reason "overflow" naming field (a JSON path): the command's arithmetic
 * would leave the 64-bit range (HTTP 422 with `field`). */
void cmd_result_overflow(cmd_result *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Frees the payloads; the result may be reused. */
void cmd_result_clear(cmd_result *r);

/*
 * An aggregate type. Its state is a struct of state_size bytes that the engine allocates
 * zeroed; all-zero bytes must be the state of a stream with no events. Whatever the state
 * points to (strings, tables) it owns, and release frees.
 */
typedef struct cmd_aggregate {
    const char *name;          /* "Product" */
    const char *stream_prefix; /* "product-" */
    uint32_t state_version;    /* version of the state's JSON shape, for snapshots */
    size_t state_size;         /* sizeof the state struct */
    /* Applies one event to state in place (state is owned by the caller). Unknown event
     * types leave it unchanged. 0, or -ENOMEM: then state is partly updated and must be
     * thrown away (the bus reloads the aggregate from the log). */
    int (*evolve)(void *state, const char *type, const json_t *payload);
    /* Frees what state owns, not state itself; NULL when it owns nothing. */
    void (*release)(void *state);
    /* The state's JSON form (snapshots, skaldctl): NULL when out of memory. */
    json_t *(*to_json)(const void *state);
    /* Fills a new (zeroed) state from its JSON form: 0, -ENOMEM, or SK_EBADINPUT when
     * json is not the shape to_json makes (the caller then frees state either way). */
    int (*from_json)(void *state, const json_t *json);
} cmd_aggregate;

/* A new stream's state of agg (zeroed state_size bytes), or NULL when out of memory. */
void *cmd_state_new(const cmd_aggregate *agg);
/* Frees a state made by cmd_state_new; accepts NULL. */
void cmd_state_free(const cmd_aggregate *agg, void *state);
/* The state's JSON form as compact text with sorted keys (a snapshot's), or NULL when out
 * of memory; the caller frees it. */
char *cmd_state_dump(const cmd_aggregate *agg, const void *state);

typedef struct cmd_handler {
    const char *command; /* "RegisterProduct" */
    const cmd_aggregate *aggregate;
    const char *id_field; /* the command field that names the stream: "sku" */
    /* Decides; state and cmd are borrowed; out starts cleared. 0 with events, with none,
     * or with out->rejected set (a business rule: 422); or a negative code (-ENOMEM) when
     * the decision could not be made: the caller clears out and answers an error, never
     * "done, nothing to change". */
    int (*decide)(const void *state, const json_t *cmd, cmd_result *out);
} cmd_handler;

/* The handlers of one aggregate. */
typedef struct cmd_handler_table {
    const cmd_handler *handlers;
    size_t count;
} cmd_handler_table;

/*
 * A domain: the handler tables of its aggregates. A domain file defines one (the sample
 * domain is commands/sample.c); the engine only ever sees it through cmd_domains.
 */
typedef struct cmd_domain {
    const char *name;                       /* "order fulfillment" */
    const cmd_handler_table *const *tables; /* NULL-terminated; static */
} cmd_domain;

/*
 * The registration table: the domains this program runs, NULL-terminated. It is defined
 * by commands/domains.c, a domain file (a program may link its own definition instead),
 * never by the engine: a new domain adds its files and one line there.
 */
extern const cmd_domain *const cmd_domains[];

/* The handler for a command name across domains (NULL-terminated), or NULL (HTTP 404). */
const cmd_handler *cmd_handler_find(const cmd_domain *const *domains, const char *command);
/* "<prefix><id>" for the command's stream into out; SK_EBADINPUT if the id field is
 * missing, empty or outside the id alphabet (EV_ID_CHARS), SK_ETOOBIG if the stream id would exceed
 * EV_STREAM_ID_MAX. */
int cmd_stream_id(const cmd_handler *h, const json_t *cmd, char *out, size_t size);

/* ---------------------------------------------------------------------------------------
 * The command bus: validate, load, decide, append.
 *
 *   cmd_bus_create(&cfg, &bus, &err)
 *   cmd_bus_execute(bus, "ReserveStock", body, STORE_EXPECT_ANY, &ctx, &outcome)
 *   cmd_outcome_clear(&outcome); cmd_bus_destroy(bus)
 *
 * Commands for one stream are serialized (a striped lock on the stream id); commands for
 * different streams run in parallel. The aggregate comes from a bounded cache of hot
 * aggregates, or is loaded from its newest usable snapshot plus the events after it; the
 * events are appended conditional on the version it was at, so nothing else can slip in
 * between (bus.c gives the steps).
 */
typedef struct cmd_bus cmd_bus;

/* A snapshot interval for one aggregate type, overriding cmd_bus_config.snapshot_every. */
typedef struct cmd_snapshot_rule {
    char aggregate[64]; /* "Product" */
    uint32_t every;     /* 0: never snapshot this type */
} cmd_snapshot_rule;
#define CMD_SNAPSHOT_RULES_MAX 16

typedef struct cmd_bus_config {
    store_log *log;            /* borrowed; outlives the bus; the bus must be its only writer */
    const ev_registry *events; /* event schemas; borrowed */
    const char *command_schemas_dir;  /* one .avsc per command: the shape of its body */
    const cmd_domain *const *domains; /* NULL-terminated (cmd_domains); borrowed, outlives
                                         the bus */
    store_snapshots *snapshots;       /* NULL: no snapshots; borrowed */
    uint32_t snapshot_every;          /* save a snapshot each time this many events were added
                                         since the last one (0: never) */
    uint32_t cache_max;               /* hot aggregates kept in memory (0: no cache) */
    const cmd_snapshot_rule *snapshot_rules; /* per aggregate type; copied */
    size_t nsnapshot_rules;
} cmd_bus_config;

typedef struct cmd_context {
    ev_uuid command_id;     /* nil: one is generated */
    ev_uuid correlation_id; /* nil: none */
    const ev_metadata_entry *metadata;
    uint32_t metadata_count;
} cmd_context;

typedef struct cmd_outcome {
    /* 0 done (count may be 0: nothing to change), SK_ENOTFOUND unknown command (404),
     * SK_EBADINPUT shape (400, err.field names the field), SK_EREJECTED business rule
     * (422, decision.reason), SK_ECONFLICT expected version (409, stream_version is the
     * current one), SK_ESCHEMA the bus's own work failed (a stream that cannot be rebuilt,
     * an event its schema refuses: 500), or a store error (SK_EBUSY, SK_EFAILED, ...: 503). */
    int status;
    sk_error err;
    cmd_result decision; /* reason and message when rejected; no events kept */
    char stream_id[EV_STREAM_ID_MAX + 1];
    ev_uuid command_id;
    uint32_t count;
    ev_uuid event_ids[CMD_EVENTS_MAX];
    const char *event_types[CMD_EVENTS_MAX];
    uint64_t first_position, first_version;
    uint64_t stream_version; /* after the command (or the current one) */
    uint64_t position;       /* of the last event; with none, of the stream's last event */
} cmd_outcome;

int cmd_bus_create(const cmd_bus_config *cfg, cmd_bus **out, sk_error *err);
void cmd_bus_destroy(cmd_bus *bus); /* accepts NULL */
/* After the log recovered in place (store_log_recover): a recovery may drop events that
 * were acknowledged but not yet durable (fsync=interval|never), so every cached aggregate
 * is reloaded from the log before its next command. Any thread. */
void cmd_bus_invalidate_cache(cmd_bus *bus);
/* Runs one command; the result is in *out (also for rejections), the return value is
 * out->status. body is borrowed. */
int cmd_bus_execute(cmd_bus *bus, const char *command, const json_t *body,
                    uint64_t expected_version, const cmd_context *ctx, cmd_outcome *out);
void cmd_outcome_clear(cmd_outcome *out);

/* The asynchronous form: validation, loading and deciding run in the caller's thread;
 * the append is queued and done(cb_ctx, out) runs once, on the log's completer thread
 * when an append was queued, or before cmd_bus_submit returns otherwise (a rejection, a
 * conflict, a command with no events). out must stay valid until done runs. Commands for
 * one stream are pipelined: the next one decides on the state the queued one leaves.
 * Returns 0 (done will run or has run) -- the outcome is in out->status. */
typedef void (*cmd_done_cb)(void *cb_ctx, cmd_outcome *out);
int cmd_bus_submit(cmd_bus *bus, const char *command, const json_t *body, uint64_t expected_version,
                   const cmd_context *ctx, cmd_outcome *out, cmd_done_cb done, void *cb_ctx);

/* The aggregate a stream belongs to, by its stream prefix; NULL if none. */
const cmd_aggregate *cmd_aggregate_of_stream(const cmd_domain *const *domains,
                                             const char *stream_id);
/* The aggregate named name ("Product"); NULL if none. */
const cmd_aggregate *cmd_aggregate_find(const cmd_domain *const *domains, const char *name);

/*
 * Rebuilds a stream's state outside the cache: from its newest snapshot whose
 * state_version is current (when use_snapshot and the bus has snapshots), plus the events
 * after it; or from the first event. *state_out is the state's JSON form (to_json),
 * the caller's; *version_out the stream version it includes. For tools and benchmarks;
 * commands use the cache.
 */
int cmd_bus_load(cmd_bus *bus, const cmd_aggregate *agg, const char *stream_id, int use_snapshot,
                 json_t **state_out, uint64_t *version_out, sk_error *err);
/* Replays the stream from its first event and saves a snapshot of it now. */
int cmd_bus_snapshot(cmd_bus *bus, const cmd_aggregate *agg, const char *stream_id, sk_error *err);

/* Replays events (from a reader) into state (agg's, from cmd_state_new) with agg->evolve,
 * decoding each payload through events, up to and including version upto (0: to the end).
 * *version_out gets the last version applied (unchanged if none). */
int cmd_replay(const ev_registry *events, const cmd_aggregate *agg, store_reader *reader,
               uint64_t upto, void *state, uint64_t *version_out, sk_error *err);

typedef struct cmd_bus_stats {
    uint64_t cache_hits, cache_misses, snapshot_loads, snapshots_saved;
    uint64_t snapshot_failures; /* saves that failed (a snapshot is a cache: never fatal) */
} cmd_bus_stats;
void cmd_bus_get_stats(cmd_bus *bus, cmd_bus_stats *out);

/* ---------------------------------------------------------------------------------------
 * Idempotency (commands/idempotency.c): answers remembered by key for a window, journaled
 * to survive restarts, so a retried command is answered the same way and appends nothing.
 *
 *   cmd_idem_config_init(&cfg, data_dir); adjust; cmd_idem_open(&cfg, &idem, &err)
 *   per keyed command: cmd_idem_begin -> run it -> cmd_idem_finish or cmd_idem_release
 *   about once a second, from one thread: cmd_idem_sync
 *   cmd_idem_close(idem)
 *
 * Every function but open/close/sync may be called from any thread.
 */
typedef struct cmd_idem cmd_idem;
typedef enum cmd_idem_state {
    CMD_IDEM_NEW = 0,
    CMD_IDEM_DONE,
    CMD_IDEM_BUSY,
    CMD_IDEM_MISMATCH,
    CMD_IDEM_UNAVAILABLE /* the journal failed: keyed commands are refused (503) */
} cmd_idem_state;
/* The metadata key under which a keyed command's events carry its scoped key. */
#define CMD_META_IDEMPOTENCY "idempotency"
typedef struct cmd_idem_config {
    const char *data_dir;               /* the journal is DATA/idempotency/; borrowed during open */
    uint64_t window_s;                  /* how long an answer is remembered; default 86400 */
    int64_t period_us;                  /* how long one journal file is appended to (0: an hour) */
    store_log *log;                     /* rebuilds answers the journal lacks from it; NULL: none */
    const store_io *io;                 /* NULL: store_io_posix(); tests inject failures */
    int64_t (*now_us)(void *clock_ctx); /* NULL: ev_now_us (tests move time by hand) */
    void *clock_ctx;
} cmd_idem_config;
void cmd_idem_config_init(cmd_idem_config *cfg, const char *data_dir);
/* Loads the journal and rebuilds, from cfg->log, the answers of keyed commands the
 * journal does not cover, then rewrites the journal compacted. *out is the caller's. */
int cmd_idem_open(const cmd_idem_config *cfg, cmd_idem **out, sk_error *err);
/* Syncs the journal; accepts NULL. 0, or the failure that left it failed (the answers in
 * memory since then were not saved). */
int cmd_idem_close(cmd_idem *idem);
/* Claims key for a request with fingerprint fp. NEW: the caller runs it and must call
 * cmd_idem_finish or cmd_idem_release. DONE: *status and *body (malloc'd copy) are the
 * first response. BUSY: the first is still running. MISMATCH: same key, other request.
 * UNAVAILABLE: the journal is failed (cmd_idem_health says why); nothing was claimed. */
cmd_idem_state cmd_idem_begin(cmd_idem *idem, const char *key, uint64_t fp, unsigned *status,
                              char **body);
/* Remembers the response of a claimed key and appends it to the journal; position: one
 * past the log position of the answer's last event, 0 if it has none. 0, -ENOMEM (the
 * claim is dropped: not remembered), or the journal's failure: remembered in memory,
 * not yet on disk, and the store is failed until cmd_idem_sync rewrites the journal. */
int cmd_idem_finish(cmd_idem *idem, const char *key, unsigned status, const char *body,
                    uint64_t position);
/* Forgets a claim whose response is not to be remembered (a 5xx, a 409). */
void cmd_idem_release(cmd_idem *idem, const char *key);
/* Called about once a second from one thread: fdatasyncs the journal if it has unsynced
 * lines, starts a new journal file each period and deletes files whose keys all expired,
 * and, when failed, tries to rewrite the journal (the way out of the failed state).
 * 0, or the failure the journal is still in. */
int cmd_idem_sync(cmd_idem *idem);
/* 0 while the journal is writable; else its failure, with why (for /readyz). */
int cmd_idem_health(cmd_idem *idem, char *why, size_t size);

/* A request's fingerprint: its command name and canonical body, hashed. */
uint64_t cmd_idem_fingerprint(const char *command, const void *body, size_t size);

#endif /* SKALD_COMMANDS_H */
