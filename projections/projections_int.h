/*
 * projections_int.h -- declarations shared inside projections/ only.
 */
#ifndef SKALD_PROJECTIONS_INT_H
#define SKALD_PROJECTIONS_INT_H

#include "projections/projections.h"
#include "trace/trace.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

/* ---------------------------------------------------------------------------------------
 * A model file, parsed (model.c).
 */
typedef enum proj_bind_kind {
    PROJ_BIND_STREAM_ID = 0,
    PROJ_BIND_TYPE,
    PROJ_BIND_VERSION,
    PROJ_BIND_POSITION,
    PROJ_BIND_EVENT_ID,
    PROJ_BIND_COMMAND_ID,
    PROJ_BIND_CORRELATION_ID,
    PROJ_BIND_OCCURRED_AT,
    PROJ_BIND_OCCURRED_AT_US,
    PROJ_BIND_PAYLOAD, /* a payload field, by name */
} proj_bind_kind;

/* One `-- @on Type` section: its statements, one SQL text each. */
typedef struct proj_handler {
    char *type;
    char **sqls;
    size_t count;
    int line; /* of the section line, for messages */
} proj_handler;

typedef struct proj_model {
    char *name; /* the file name without .sql */
    char *path;
    uint64_t hash;    /* FNV-1a 64 of the file's bytes */
    char *tables_sql; /* the @tables section */
    proj_handler *handlers;
    size_t nhandlers;
} proj_model;

/* Parses path; checks every statement against the tables and every parameter against the
 * envelope and the event type's newest schema. */
int proj_model_load(const char *path, const ev_registry *events, proj_model **out, sk_error *err);
void proj_model_free(proj_model *m); /* accepts NULL */
/* Envelope parameter names -> kind; -1 if name is not one. */
int proj_envelope_kind(const char *name);

/* ---------------------------------------------------------------------------------------
 * A generation: one database file of a model, with its prepared statements (generation.c).
 */
typedef struct proj_param {
    proj_bind_kind kind;
    char *field; /* PROJ_BIND_PAYLOAD */
} proj_param;

typedef struct proj_prepared {
    sqlite3_stmt *stmt;
    proj_param *params; /* params[i] binds index i + 1 */
    int nparams;
} proj_prepared;

typedef struct proj_gen_handler {
    const proj_handler *def;
    proj_prepared *stmts;
} proj_gen_handler;

typedef struct proj_gen {
    uint64_t number;
    char path[4096];
    sqlite3 *db;
    uint64_t next_position; /* everything before it is applied (committed) */
    proj_gen_handler *handlers;
    size_t nhandlers;
    sqlite3_stmt *set_meta;
    /* Each event's savepoint, prepared once: parsing the three texts for every event cost
     * a tenth of the engine's CPU. */
    sqlite3_stmt *savepoint, *release, *rollback_to;
} proj_gen;

/* Creates (number's file must not exist) or opens a generation's database; creating runs
 * the model's tables and writes its meta. */
int proj_gen_open(const char *dir, const proj_model *m, uint64_t number, bool create,
                  proj_gen **out, sk_error *err);
void proj_gen_close(proj_gen *g, bool remove_files); /* accepts NULL */
/* Reads a meta value as text (NULL if absent; caller frees) from an open generation. */
char *proj_gen_meta(proj_gen *g, const char *key);
int proj_gen_set_meta(proj_gen *g, const char *key, const char *value);
int proj_gen_set_meta_u64(proj_gen *g, const char *key, uint64_t value);
void proj_gen_path(const char *dir, const char *model, uint64_t number, char *out, size_t size);

/* What apply met: the event that failed, if one did. */
typedef struct proj_failure {
    bool failed;
    uint64_t position;
    char type[EV_TYPE_MAX + 1];
    char stream_id[EV_STREAM_ID_MAX + 1];
    char message[512];
} proj_failure;

/* Applies up to max events from a source's reader to g in one transaction with its
 * checkpoint (next_position, and the source's text as source_checkpoint). Returns
 * the number applied (> 0), 0 when sub had nothing (caught up), or an error. A failing
 * statement commits the events before it and fills *failure (the return is then the
 * events applied before it, possibly 0). */
int proj_gen_apply(proj_gen *g, const proj_source *src, void *reader, const ev_registry *events,
                   uint32_t max, tr_span *span, proj_failure *failure, int64_t *last_occurred_us,
                   sk_error *err);

/* ---------------------------------------------------------------------------------------
 * One model at run time (engine.c: state and control; worker.c: the thread).
 */
typedef struct proj {
    proj_engine *engine;
    proj_model *model;
    /* Guards everything below that other threads read or ask for. */
    pthread_mutex_t mu;
    pthread_cond_t applied; /* broadcast when the live generation moves or is replaced */
    proj_gen *live;         /* serves queries; applied to unless a rebuild runs */
    proj_gen *building;     /* a rebuild's generation, or NULL */
    uint64_t live_next;     /* live->next_position, as other threads may read it */
    uint64_t building_next;
    proj_state state;
    proj_failure failure; /* while failed */
    json_t *skipped;      /* positions skipped by an admin (of the generation applied to) */
    json_t *history;      /* [{"at","what","position"}], newest last */
    bool want_rebuild, want_resume, want_stop;
    int64_t want_skip; /* a position, or -1 */
    int ctl_fd;        /* eventfd: a request above is waiting for the worker */
    /* The worker's own: a reader of the engine's source. */
    void *reader;
    pthread_t thread;
    bool thread_running;
    int64_t last_occurred_us;
    uint64_t rate_start_ns, rate_events;
    double rate; /* events per second over the last full second; guarded by mu */
} proj;

struct proj_engine {
    proj_config cfg;
    proj_source src; /* cfg.source, or the log's (source.c) */
    char *dir;
    int lock_fd; /* DIR/LOCK, held while open */
    proj *models;
    size_t count;
};

/* source.c: the default source, the log through subscriptions (ctx is the store_log). */
void proj_source_log(store_log *log, proj_source *out);

/* worker.c */
int proj_worker_start(proj *p, sk_error *err);
void proj_worker_stop(proj *p);
/* Wakes the worker for a request (after setting its flag under p->mu). */
void proj_worker_poke(proj *p);
/* Applies until p has caught up with the durable head (swapping a finished rebuild in) or
 * failed; on the caller's thread. */
int proj_worker_catch_up(proj *p, sk_error *err);
/* Starts a rebuild generation (under p->mu). */
int proj_start_rebuild(proj *p, const char *why, sk_error *err);
/* Appends {"at","what","position"} to p's history (under p->mu) and to the generation
 * applied to. */
void proj_note(proj *p, const char *what, int64_t position);
/* The generation events are applied to: the rebuild's, or the live one. */
static inline proj_gen *proj_target(const proj *p)
{
    return p->building ? p->building : p->live;
}

#endif /* SKALD_PROJECTIONS_INT_H */
