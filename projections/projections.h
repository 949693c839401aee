/*
 * projections.h -- read models built from the log: each a SQL file (docs/projections.md)
 * applied by a worker into its own SQLite database.
 *
 * Calling sequence
 *   proj_config cfg = {log, events, models_dir, dir};
 *   proj_engine_open(&cfg, &e, &err)       parses every model file, opens (or creates) each
 *                                          live database, starts a rebuild where a file
 *                                          changed
 *   proj_engine_start(e, &err)             one worker thread per model, each tailing the log
 *                                          through a subscription; or, without threads,
 *   proj_engine_catch_up(e, &err)          apply everything durable now, on this thread
 *   proj_status_json / proj_rebuild / proj_resume / proj_skip    from any thread
 *   proj_live_db / proj_wait_applied       for the query engine (queries/), any thread
 *   proj_engine_close(e)                   stops the workers, closes every database
 *
 * Error rules: 0 or a negative code; sk_error names what is wrong.
 *   SK_ENOTFOUND  no model of that name
 *   SK_EBUSY      a rebuild of it is already running
 *   SK_ECONFLICT  resume/skip of a model that is not failed, or skip of another position
 *   SK_EBADINPUT  a model file that does not parse, or names a parameter its event lacks
 */
#ifndef SKALD_PROJECTIONS_H
#define SKALD_PROJECTIONS_H

#include "store/store.h"

#include <jansson.h>
#include <stdint.h>

typedef struct proj_engine proj_engine;

/*
 * Where the workers read events: the local log through subscriptions (the default), or
 * another source that delivers the same events in position order (a read replica's Kafka
 * topic: service/ wires store_ksrc_* into one). Each worker opens its own reader at its
 * target generation's checkpoint and owns it. A reader's calls are those of a store_sub:
 * next returns 1 with an event (views valid until its next call), 0 when it has nothing
 * now (then fd becomes readable when it may have more), or a negative code.
 */
typedef struct proj_source {
    void *ctx; /* borrowed; outlives the engine */
    /* Opens a reader delivering events from position on; resume is the text checkpoint
     * gave when position was committed (NULL if none: a new generation). */
    int (*open)(void *ctx, uint64_t position, const char *resume, void **reader, sk_error *err);
    int (*next)(void *reader, ev_event *out, sk_error *err);
    int (*fd)(void *reader);
    uint64_t (*position)(void *reader); /* of the next event it delivers */
    /* Optional: text stored in the batch's transaction with its position, given back to
     * open on resume. 0, or a negative code (the batch then fails). */
    int (*checkpoint)(void *reader, char *buf, size_t size);
    uint64_t (*head)(void *ctx); /* events known to exist, for lag */
    void (*close)(void *reader); /* accepts NULL */
} proj_source;

typedef struct proj_config {
    store_log *log;            /* borrowed: the log the workers tail (NULL with a source) */
    const proj_source *source; /* NULL: the log; else copied at open */
    const ev_registry *events; /* borrowed: decodes payloads */
    const char *models_dir;    /* the model files, *.sql (borrowed during open) */
    const char *dir;           /* where the databases live, DIR/projections (created) */
    uint32_t batch_events_max; /* events per transaction; 0: 4096 */
} proj_config;

typedef enum proj_state {
    PROJ_RUNNING = 0,
    PROJ_REBUILDING, /* a new generation catches up; the old one answers queries */
    PROJ_FAILED,     /* a statement failed; waits for resume, skip or a changed file */
    PROJ_STOPPED,
} proj_state;

const char *proj_state_name(proj_state state);

/* Ownership: *out belongs to the caller (proj_engine_close); on error nothing is left. */
int proj_engine_open(const proj_config *cfg, proj_engine **out, sk_error *err);
int proj_engine_start(proj_engine *e, sk_error *err);
/* Without threads: applies every durable event to every model (finishing rebuilds and
 * swapping them in); a failed model stops there and is reported in its status. */
int proj_engine_catch_up(proj_engine *e, sk_error *err);
void proj_engine_close(proj_engine *e); /* accepts NULL */

size_t proj_count(const proj_engine *e);
const char *proj_name(const proj_engine *e, size_t index); /* lives as long as e */

/* {"name","state","generation","position","lag_events","lag_seconds","events_per_s",
 *  "last_error":null|{...},"file_hash","skipped":[...],"history":[...],
 *  "rebuild":null|{"generation","position"}}; NULL if no such model. Caller owns it. */
json_t *proj_status_json(proj_engine *e, const char *name);

/* Starts building a new generation from position 0 beside the live one. */
int proj_rebuild(proj_engine *e, const char *name, sk_error *err);
/* A failed model retries its failed event. */
int proj_resume(proj_engine *e, const char *name, sk_error *err);
/* A failed model skips exactly its failed event (position must be it). */
int proj_skip(proj_engine *e, const char *name, uint64_t position, sk_error *err);

/* The live database of a model: its path and generation. SK_ENOTFOUND, or SK_EBUSY if it
 * has none yet. */
int proj_live_db(proj_engine *e, const char *name, char *path, size_t size, uint64_t *generation);
/* Waits (at most timeout_ms) until the live generation has applied position; 0 or
 * -ETIMEDOUT; *applied_out gets the last position applied (-1: none). */
int proj_wait_applied(proj_engine *e, const char *name, uint64_t position, int timeout_ms,
                      int64_t *applied_out);

#endif /* SKALD_PROJECTIONS_H */
