/*
 * sagas.h -- the saga orchestrator: long-running business processes driven by events,
 * with compensations, timers, retries and crash recovery.
 *
 * Definitions (engine and definitions apart by file name): a saga_def names the event
 * that starts it, how its id is derived from that event, its steps (the commands each
 * sends, a compensation per command, a timeout, a retry policy), the commands that end it
 * after compensating, and a version. sagas/definitions.c is the table a program runs
 * (saga_definitions); a new saga adds a definition file and one line there.
 *
 * Calling sequence
 *   saga_config cfg; saga_config_init(&cfg); fill log, events, dir, defs, send
 *   saga_engine_open(&cfg, &eng, &err)     loads the checkpoint, resumes unfinished sagas
 *   saga_engine_start(eng, &err)           starts the orchestrator thread
 *   saga_engine_retry / saga_engine_abort  from any thread (admin)
 *   saga_engine_close(eng)                 stops the thread, writes the checkpoint
 *
 * Writes: everything the orchestrator writes goes through cfg.send, which the program
 * wires to its command path (the service: idempotency store, then the command bus). Its
 * own state goes to `$saga-<id>` through the internal commands StartSaga, StartSagaStep,
 * FinishSagaStep and ChangeSagaState (commands/saga_journal.c), conditional on the
 * stream version it last saw. docs/sagas.md gives the states, keys and retry rules.
 *
 * Errors: 0 or a negative code (negated errno, or SK_E* from events.h); err says why.
 * Threads: one orchestrator thread owns every saga; the send callback's done may run on
 * any thread (it only queues the answer for the orchestrator).
 */
#ifndef SKALD_SAGAS_H
#define SKALD_SAGAS_H

#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------
 * Definitions.
 */
/* Commands one step sends: one per order line, and PlaceOrder allows 100. */
#define SAGA_CMDS_MAX  128
#define SAGA_STEPS_MAX 16
#define SAGA_ID_MAX    190 /* "$saga-" + id fits EV_STREAM_ID_MAX */
/* A saga that runs its course writes about 14 journal events; one retried by an admin or
 * compensating at length writes more, and only such a saga is snapshotted by default. */
#define SAGA_SNAPSHOT_EVERY_DEFAULT 32

typedef struct saga_cmd {
    const char *command; /* static: "ReserveStock" */
    json_t *body;        /* owned by the list */
} saga_cmd;

/* The commands a step (or a compensation) sends, in order; the index of a command in its
 * list is part of its idempotency key, so a builder must give the same list every time
 * for the same saga data. */
typedef struct saga_cmd_list {
    saga_cmd cmds[SAGA_CMDS_MAX];
    size_t count;
} saga_cmd_list;

/* Adds a command; takes body (also on failure). -ENOMEM when body is NULL, -ENOSPC when
 * the list is full. */
int saga_cmd_add(saga_cmd_list *l, const char *command, json_t *body);
void saga_cmd_list_clear(saga_cmd_list *l);

typedef struct saga_retry {
    uint32_t attempts_max; /* sends of one command before the step fails (>= 1) */
    uint32_t backoff_ms;   /* before the second attempt; doubles each time, with jitter */
    uint32_t backoff_max_ms;
} saga_retry;

typedef struct saga_step_def {
    const char *name; /* "reserve_stock": shown in the admin list */
    /* The commands of the step, from the saga's data (the start event's payload, borrowed). */
    int (*commands)(const json_t *data, saga_cmd_list *out);
    /* The compensation of the step's command `index` (one that succeeded, or whose
     * outcome is unknown because the step timed out or was aborted): commands appended to
     * out. NULL: the step cannot be compensated (a pivot: it retries until done). A
     * compensation must be harmless when the command it undoes never took effect. */
    int (*compensate)(const json_t *data, size_t index, saga_cmd_list *out);
    uint32_t timeout_ms; /* 0: no timeout */
    saga_retry retry;    /* transient failures (503, a failed log, a lost answer) */
} saga_step_def;

typedef struct saga_def {
    const char *type;        /* "OrderFulfillment": the saga id is "<type>-<key>" */
    uint32_t version;        /* a saga finishes on the version it started with */
    const char *start_event; /* "OrderPlaced" */
    /* The key of the saga an event starts ("o-17" from OrderPlaced): 0 and out filled, 1
     * when this event starts no saga, or a negative code. */
    int (*key)(const json_t *payload, char *out, size_t size);
    /* Event types in the start event's stream that mean the process already ended
     * without a saga (a log written by the old seeder): no saga starts then. NULL-ended. */
    const char *const *end_events;
    const saga_step_def *steps;
    size_t nsteps;
    /* Sent after the compensations (CancelOrder with the reason); may add none. */
    int (*on_compensated)(const json_t *data, const char *reason, saga_cmd_list *out);
} saga_def;

/* The definitions this program runs, NULL-terminated (sagas/definitions.c). */
extern const saga_def *const saga_definitions[];
/* Definitions only tests run (sagas/test_definitions.c), NULL-terminated. */
extern const saga_def *const saga_test_definitions[];

/* ---------------------------------------------------------------------------------------
 * Sending: the program's command path.
 */
typedef enum saga_answer_kind {
    SAGA_ANSWER_OK = 0,    /* done (with or without events) */
    SAGA_ANSWER_REJECTED,  /* a business rule (422): never retried */
    SAGA_ANSWER_CONFLICT,  /* expected version (journal writes): the saga is reloaded */
    SAGA_ANSWER_TRANSIENT, /* 503, a failed log, a busy key: retried with backoff */
    SAGA_ANSWER_FATAL      /* a bad command or an internal error: the step fails */
} saga_answer_kind;

typedef struct saga_answer {
    saga_answer_kind kind;
    char reason[64];   /* the rejection code, or the error's name */
    char message[256]; /* for a person */
    uint64_t stream_version;
    uint64_t position; /* of the last event, if any */
    uint32_t count;    /* events appended */
} saga_answer;

typedef struct saga_send {
    const char *command;
    const json_t *body;        /* borrowed for the call */
    const char *idem_key;      /* "" for journal writes (they are conditional instead) */
    uint64_t expected_version; /* STORE_EXPECT_ANY, or the journal's version */
    ev_uuid correlation_id;    /* the business process's; nil: none */
    const char *traceparent;   /* "" if none */
    uint32_t attempt;          /* 1, 2, ...: carried in metadata */
    const char *saga_id;
} saga_send;

/* Called exactly once per send, on any thread, possibly before send returns; the answer
 * is borrowed for the call. */
typedef void (*saga_answer_cb)(void *op, const saga_answer *answer);
/* Starts one command. 0: done will run; a negative code: it will not (the orchestrator
 * treats that as a transient failure). */
typedef int (*saga_send_fn)(void *send_ctx, const saga_send *s, saga_answer_cb done, void *op);

/* ---------------------------------------------------------------------------------------
 * Fault injection (tests only; all off by default). docs/sagas.md lists the knobs.
 */
typedef struct saga_faults {
    char fail_command[64]; /* this command's attempts fail transiently ... */
    double fail_rate;      /* ... with this probability (0..1) */
    char delay_step[64];   /* this step's commands go out ... */
    uint32_t delay_ms;     /* ... this late */
    char crash_at[64];     /* the process ends (SIGKILL) at this named point */
    uint64_t seed;         /* for the rates (0: from the clock) */
} saga_faults;
/* Reads SKALD_SAGA_FAIL=Command:rate, SKALD_SAGA_DELAY=step:ms, SKALD_SAGA_CRASH=point,
 * SKALD_SAGA_SEED=n. 0 or SK_EBADINPUT naming the variable. */
int saga_faults_from_env(saga_faults *out, sk_error *err);

/* ---------------------------------------------------------------------------------------
 * The engine.
 */
typedef struct saga_engine saga_engine;

typedef struct saga_config {
    store_log *log;                    /* borrowed; tailed through a subscription */
    const ev_registry *events;         /* borrowed: decodes payloads */
    const char *dir;                   /* DATA/sagas: the checkpoint file (borrowed during open) */
    const saga_def *const *defs;       /* NULL-terminated; borrowed, outlives the engine */
    const saga_def *const *extra_defs; /* NULL-terminated or NULL (test definitions) */
    saga_send_fn send;
    void *send_ctx;
    uint32_t sagas_max;       /* in memory at once; the tail waits beyond (default 65536) */
    uint32_t step_timeout_ms; /* 0: the definitions'; else overrides every timeout */
    /* A saga's state is snapshotted (DATA/sagas/snapshots.db) each time its stream grew
     * by this many events since the last one, so loading it replays only what came after
     * (0: SAGA_SNAPSHOT_EVERY_DEFAULT). */
    uint32_t snapshot_every;
    saga_faults faults;
} saga_config;

void saga_config_init(saga_config *cfg);
int saga_engine_open(const saga_config *cfg, saga_engine **out, sk_error *err);
int saga_engine_start(saga_engine *eng, sk_error *err);
/* Stops the thread (answers still in flight are waited for, bounded), writes the
 * checkpoint, frees. Accepts NULL. */
void saga_engine_close(saga_engine *eng);

/* Admin, from any thread. done(ctx, status, message) runs once, on the orchestrator
 * thread, after the state change is durable: status 0, SK_ENOTFOUND (no such saga in
 * flight), SK_ECONFLICT (its state does not allow it: message says which it is). If the
 * call fails up front (-ENOMEM, SK_ECANCELED when closing) done never runs. */
typedef void (*saga_admin_cb)(void *ctx, int status, const char *message);
int saga_engine_retry(saga_engine *eng, const char *saga_id, saga_admin_cb done, void *ctx);
int saga_engine_abort(saga_engine *eng, const char *saga_id, saga_admin_cb done, void *ctx);

/* Upper bounds (seconds) of the step-latency histogram's buckets, and their count. */
#define SAGA_STEP_BUCKETS 14
extern const double saga_step_bounds_s[SAGA_STEP_BUCKETS];

typedef struct saga_stats {
    uint64_t started, completed, compensated, aborted, stuck_now, running_now, compensating_now;
    uint64_t retries;                             /* command attempts after the first */
    uint64_t compensations;                       /* compensation commands answered ok */
    uint64_t compensation_steps;                  /* compensation steps finished (any outcome) */
    uint64_t timeouts;                            /* steps that timed out */
    uint64_t step_latency_us_sum, steps_finished; /* forward steps: start to finish */
    /* forward steps per latency bucket (not cumulative); the last is +Inf */
    uint64_t step_buckets[SAGA_STEP_BUCKETS + 1];
    uint64_t snapshots_saved, snapshot_loads; /* the sagas' own snapshots */
    uint64_t checkpoint;                      /* the tail's position */
} saga_stats;
void saga_engine_get_stats(saga_engine *eng, saga_stats *out);

/* The name of a state: "running", "compensating", "completed", "compensated", "stuck",
 * "aborted". */
const char *saga_state_name(int state);

#endif /* SKALD_SAGAS_H */
