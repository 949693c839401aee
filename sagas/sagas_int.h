/*
 * sagas_int.h -- private to sagas/: one saga in memory, and the pieces that share it.
 *
 *   saga_state.c    the fold: a saga's state from its `$saga-<id>` events (the same code
 *                   applies a journal write once it is durable, and replays a stream)
 *   saga_store.c    reading a saga's stream; the checkpoint file
 *   faults.c        command lists, fault injection from the environment
 *   orchestrator.c  the thread: tail, start, steps, retries, timers, admin
 */
#ifndef SKALD_SAGAS_INT_H
#define SKALD_SAGAS_INT_H

#include "sagas/sagas.h"
#include "trace/trace.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* Stays on in release builds: cheap, one condition, no side effects. */
#define SAGA_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            sk_log(SK_LOG_FATAL, "sagas", "assertion failed", "condition", #cond, SK_LOG_END);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum {
    SAGA_STARTING = 0, /* StartSaga not yet answered: in memory only */
    SAGA_RUNNING,
    SAGA_COMPENSATING,
    SAGA_COMPLETED,
    SAGA_COMPENSATED,
    SAGA_STUCK,
    SAGA_ABORTED,
};
enum { PHASE_FORWARD = 0, PHASE_COMPENSATE, PHASE_FINAL };
enum { RES_NONE = 0, RES_OK, RES_REJECTED, RES_UNKNOWN, RES_FAILED };

/* The commands of the step in progress: what each is waiting for. */
typedef struct saga_run {
    saga_cmd_list list;
    uint8_t res[SAGA_CMDS_MAX];
    uint8_t inflight[SAGA_CMDS_MAX];
    uint32_t attempts[SAGA_CMDS_MAX];
    int64_t next_try_us[SAGA_CMDS_MAX]; /* 0: not waiting to be sent */
    char reason[SAGA_CMDS_MAX][64];
    /* for a compensation or the final step: which forward command each one undoes */
    uint32_t undoes[SAGA_CMDS_MAX];
} saga_run;

typedef struct saga_rt {
    /* ---- the fold's (saga_state.c): what the stream says ---- */
    const saga_def *def;              /* NULL: this build lacks the version it started with */
    json_t *data;                     /* the start event's payload */
    uint8_t *fwd_res[SAGA_STEPS_MAX]; /* results of finished forward steps */
    uint32_t fwd_count[SAGA_STEPS_MAX];
    uint64_t start_position;
    uint64_t version;      /* of the stream */
    uint64_t snap_version; /* of its newest snapshot (0: none) */
    int64_t deadline_us;
    int64_t updated_us;
    ev_uuid corr;
    uint32_t def_version;
    uint32_t retries; /* admin retries: part of the keys of the commands after one */
    int state;
    int phase, step;
    int fwd_done;    /* forward steps finished ok */
    int failed_step; /* -1: none */
    int comp_next;   /* the forward step to compensate next; -1: none left */
    bool aborting;   /* an admin aborted it: it ends `aborted` */
    bool open;       /* a step started and not finished */
    bool comp_failed, final_done;
    char id[SAGA_ID_MAX + 1];
    char type[65];
    char subject[129];
    char traceparent[64];
    char reason[256]; /* the last error */
    char cause[256];  /* why it compensates: the forward step's failure */

    /* ---- the orchestrator's (orchestrator.c) ---- */
    struct saga_rt *hnext, *prev, *next;
    saga_run *run;          /* the step in progress; NULL between steps */
    json_t *jbody;          /* the journal write in flight, kept to be retried */
    struct admin_op *admin; /* waiting for the journal */
    uint64_t gen;           /* bumped when the run is dropped: answers of older runs are ignored */
    int64_t step_started_us;
    int64_t jnext_try_us;
    uint32_t jattempts;
    int refs; /* answers still to come */
    bool journal_busy;
    bool removed;
    char jcommand[32];
} saga_rt;

/* saga_state.c */
saga_rt *saga_rt_create(const char *id);
void saga_rt_free(saga_rt *s);
/* Applies one journal event (type and payload, borrowed). defs: where the definition is
 * looked up at SagaStarted. 0 or -ENOMEM. */
int saga_apply(saga_rt *s, const saga_def *const *defs, const saga_def *const *extra,
               const char *type, const json_t *payload, int64_t at_us);
int saga_state_parse(const char *name);
/* The fold as JSON (a snapshot's state; the caller's), NULL when out of memory; and back
 * into a fresh saga_rt: 0, -ENOMEM, or SK_ECORRUPT for a state that is not one. */
json_t *saga_fold_to_json(const saga_rt *s);
int saga_fold_from_json(saga_rt *s, const saga_def *const *defs, const saga_def *const *extra,
                        const json_t *j);
bool saga_terminal(int state);
const char *saga_phase_name(int phase);

/* saga_store.c */
/* Where sagas are read from: the log, and the snapshots (NULL: none). */
typedef struct saga_source {
    store_log *log;
    const ev_registry *events;
    store_snapshots *snaps;
    const saga_def *const *defs, *const *extra;
    /* The orchestrator saves a snapshot only once a stream has grown by this many events,
     * so a shorter stream is read without the snapshot lookup, a SQLite query (0: always
     * look, for snapshots saved under another setting). */
    uint32_t snapshot_every;
} saga_source;
/* Replays `$saga-<id>` into s (fresh from saga_rt_create): from its snapshot, if a usable
 * one exists, and the events after it; else from its first event. *replayed_out (may be
 * NULL) gets the events read from the stream, *from_snapshot_out (may be NULL) whether a
 * snapshot was used. 0, SK_ENOTFOUND (no such stream), or the read's error. */
int saga_load(const saga_source *src, saga_rt *s, uint64_t *replayed_out, bool *from_snapshot_out,
              sk_error *err);
/* Saves s's fold as the snapshot of its stream (s->snap_version follows). */
int saga_snapshot_save(store_snapshots *snaps, saga_rt *s, sk_error *err);
/* Forgets the snapshot of an ended saga. */
void saga_snapshot_drop(store_snapshots *snaps, saga_rt *s);
/* The aggregate name and state version saga snapshots carry (a snapshot with another
 * state version is ignored: the fold changed shape). */
#define SAGA_SNAPSHOT_AGGREGATE     "SagaState"
#define SAGA_SNAPSHOT_STATE_VERSION 1
/* DATA/sagas/checkpoint.json: {"position": P, "open": [ids]}. Missing: position 0, no ids
 * (*open_out NULL). *open_out is the caller's (a JSON array). */
int saga_checkpoint_read(const char *dir, uint64_t *position_out, json_t **open_out, sk_error *err);
int saga_checkpoint_write(const char *dir, uint64_t position, const json_t *open);

/* ---- tracing.c: saga.step spans (docs/tracing.md) ---- */
/* Opens the span of one attempt of a step's command, a child of the saga's context;
 * writes the context the command carries into traceparent (TR_TRACEPARENT_SIZE bytes).
 * NULL when not traced (traceparent untouched). */
tr_span *saga_trace_step_begin(const saga_rt *s, const char *command, uint32_t attempt,
                               char *traceparent);
void saga_trace_step_end(tr_span *span, const saga_answer *a);

#endif
