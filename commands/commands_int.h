/*
 * commands_int.h -- private to commands/: JSON accessors the deciders share, the cache of
 * hot aggregates, the bus itself.
 */
#ifndef SKALD_COMMANDS_INT_H
#define SKALD_COMMANDS_INT_H

#include "commands/commands.h"
#include "trace/trace.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/*
 * One aggregate kept in memory: its state after every append queued so far (durable or
 * still in flight). `pending` counts the queued appends not yet completed; an entry with
 * pending appends is never evicted, since the next command must see what they added. A
 * failed append marks the entry stale: the next command reloads it from the log.
 * Everything but `pending` and `stale` is guarded by the stripe lock of its stream; those
 * two are also written by the log's completer thread, which touches nothing else and
 * decrements `pending` last.
 */
typedef struct cmd_cache_entry {
    struct cmd_cache_entry *hnext;       /* hash chain */
    struct cmd_cache_entry *prev, *next; /* its segment's recency list */
    bool protected_;                     /* in the protected segment (hit since added) */
    uint64_t hash;                       /* ev_hash_str(stream_id): its stripe and bucket */
    const cmd_aggregate *agg;
    void *state;             /* agg's typed state (cmd_state_new) */
    uint64_t version;        /* stream version the state includes */
    uint64_t since_snapshot; /* events added since the last snapshot (or the load) */
    atomic_uint pending;
    atomic_bool stale;
    /* bumped by each reload: a failed append queued before the reload must not mark the
     * reloaded state stale (it was built without that append) */
    atomic_uint generation;
    /* the status of the last append for this stream that failed (0: none yet): an append
     * queued behind it at the version it would have left conflicts, and a command that
     * named no expected version is answered with this cause, not a 409 it did not cause.
     * Written and read by the completer thread only (completions run in commit order). */
    int last_failure;
    char stream_id[EV_STREAM_ID_MAX + 1];
} cmd_cache_entry;

/* A recency list: head is the most recent. */
typedef struct cmd_cache_list {
    cmd_cache_entry *head, *tail;
    size_t count;
} cmd_cache_list;

/*
 * The entries of one stripe, bounded by capacity (pinned entries may exceed it briefly):
 * a segmented LRU. New entries enter `probation`; a hit moves an entry to `protected`,
 * which holds at most protected_max (the least recent go back to probation). Eviction
 * takes probation's least recent first, so a stream of one-shot aggregates (a new order
 * per command) cycles through probation without pushing out the ones used again and again.
 */
typedef struct cmd_cache {
    cmd_cache_entry **buckets;
    size_t nbuckets; /* a power of two */
    cmd_cache_list probation, protected_;
    size_t capacity, protected_max;
} cmd_cache;

/* Entries held: both segments. */
static inline size_t cmd_cache_count(const cmd_cache *cache)
{
    return cache->probation.count + cache->protected_.count;
}

int cmd_cache_init(cmd_cache *cache, size_t capacity); /* 0 or -ENOMEM */
void cmd_cache_free(cmd_cache *cache);
/* The entry of stream_id, whose ev_hash_str is hash (the bus has it from choosing the
 * stripe), now the most recent; or NULL. */
cmd_cache_entry *cmd_cache_get(cmd_cache *cache, const char *stream_id, uint64_t hash);
/* Marks every entry stale, so each is reloaded from the log before its next use. */
void cmd_cache_mark_all_stale(cmd_cache *cache);
/* Adds an entry holding state (taken) and evicts the least recent unpinned entries past
 * capacity. NULL on -ENOMEM (state is freed). */
cmd_cache_entry *cmd_cache_add(cmd_cache *cache, const char *stream_id, uint64_t hash,
                               const cmd_aggregate *agg, void *state, uint64_t version);

#define CMD_STRIPES 64

struct cmd_bus {
    store_log *log;
    const ev_registry *events;
    ev_registry *commands;
    store_snapshots *snapshots;
    uint32_t snapshot_every;
    cmd_snapshot_rule rules[CMD_SNAPSHOT_RULES_MAX];
    size_t nrules;
    const cmd_domain *const *domains; /* borrowed: the config's */
    pthread_mutex_t stripes[CMD_STRIPES];
    cmd_cache caches[CMD_STRIPES]; /* caches[i] is guarded by stripes[i] */
    atomic_uint_fast64_t cache_hits, cache_misses, snapshot_loads, snapshots_saved,
        snapshot_failures;
};

/* Events between snapshots for agg: its rule, else the bus's default; 0 = never. */
uint32_t cmd_snapshot_every(const cmd_bus *bus, const cmd_aggregate *agg);
/* Loads a stream's state (snapshot + tail, or full replay); *replayed gets the number of
 * events applied after the snapshot (all of them without one). A stream shorter than
 * the aggregate's snapshot interval is replayed without looking for a snapshot. */
int cmd_load_state(cmd_bus *bus, const cmd_aggregate *agg, const char *stream_id, int use_snapshot,
                   void **state_out, uint64_t *version_out, uint64_t *replayed, sk_error *err);
/* Saves state (serialized) as the stream's snapshot at version. */
int cmd_save_snapshot(cmd_bus *bus, const cmd_aggregate *agg, const char *stream_id,
                      uint64_t version, const char *state_json, sk_error *err);

static inline const char *cmd_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static inline long long cmd_int(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

static inline bool cmd_bool(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

/* ---- typed state (state.c, amounts.c): what the domains' states are made of ---- */

/* A state from snapshot text (its JSON form): 0, -ENOMEM, or SK_EBADINPUT when the text
 * is not a state of agg. *out is the caller's (cmd_state_free). */
int cmd_state_parse(const cmd_aggregate *agg, const char *text, void **out);

/* Replaces the string *dst owns with a copy of src: 0, or -ENOMEM (*dst unchanged). */
static inline int cmd_strset(char **dst, const char *src)
{
    char *copy = strdup(src);
    if (!copy)
        return -ENOMEM;
    free(*dst);
    *dst = copy;
    return 0;
}

/* from_json readers: the value under key into *dst; SK_EBADINPUT when it is missing or
 * of another type (a snapshot that is not this state's shape), -ENOMEM. */
static inline int cmd_json_strset(char **dst, const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? cmd_strset(dst, s) : SK_EBADINPUT;
}

static inline int cmd_json_int(long long *dst, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return SK_EBADINPUT;
    *dst = json_integer_value(v);
    return 0;
}

static inline int cmd_json_bool(bool *dst, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_boolean(v))
        return SK_EBADINPUT;
    *dst = json_is_true(v);
    return 0;
}

/* Amounts by id (a product's reservations, a customer's payments); amounts.c. */
typedef struct cmd_amount {
    char *id; /* owned */
    long long amount;
} cmd_amount;
typedef struct cmd_amounts {
    cmd_amount *items;
    size_t count, cap;
} cmd_amounts;
/* The item of id, or NULL. */
const cmd_amount *cmd_amounts_get(const cmd_amounts *t, const char *id);
/* Sets id's amount, adding id if absent: 0 or -ENOMEM (t unchanged). */
int cmd_amounts_set(cmd_amounts *t, const char *id, long long amount);
/* Removes id if present. */
void cmd_amounts_del(cmd_amounts *t, const char *id);
/* The sum of the amounts into *out; false if it overflows. */
bool cmd_amounts_sum(const cmd_amounts *t, long long *out);
void cmd_amounts_free(cmd_amounts *t);
/* The table as a JSON object {id: amount}, or NULL when out of memory. */
json_t *cmd_amounts_to_json(const cmd_amounts *t);
/* Adds the members of a JSON object of integers: 0, -ENOMEM, or SK_EBADINPUT. */
int cmd_amounts_from_json(cmd_amounts *t, const json_t *obj);

/*
 * Checked arithmetic: every sum, difference and product a decider or an evolve makes over
 * quantities, amounts or counts goes through these, so no aggregate can wrap (issue 11).
 * A decider refuses a command whose arithmetic would overflow with cmd_result_overflow
 * (422 `overflow`, nothing appended). evolve cannot refuse an event the log already
 * holds: it uses the saturating forms, which stop at the 64-bit bounds instead of
 * wrapping (docs/schemas.md, "Arithmetic"). false/true: overflowed or not; *out is
 * written only when the result fits.
 */
static inline bool cmd_add(long long a, long long b, long long *out)
{
    long long r;
    if (__builtin_add_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

static inline bool cmd_sub(long long a, long long b, long long *out)
{
    long long r;
    if (__builtin_sub_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

static inline bool cmd_mul(long long a, long long b, long long *out)
{
    long long r;
    if (__builtin_mul_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

/* a + b, held at LLONG_MIN..LLONG_MAX: for evolve only. */
static inline long long cmd_add_sat(long long a, long long b)
{
    long long r;
    if (!__builtin_add_overflow(a, b, &r))
        return r;
    return b > 0 ? LLONG_MAX : LLONG_MIN;
}

/* a - b, held at the bounds: for evolve only. */
static inline long long cmd_sub_sat(long long a, long long b)
{
    long long r;
    if (!__builtin_sub_overflow(a, b, &r))
        return r;
    return b < 0 ? LLONG_MAX : LLONG_MIN;
}

/* ---- tracing.c: the bus's spans (docs/tracing.md); every call is cheap when off ---- */
/* Opens the thread's command.decide span, a child of ctx's traceparent. */
void cmd_trace_begin(const cmd_context *ctx, const char *command);
/* Ends it with the decision's outcome (rc: the decider's error, or 0). */
void cmd_trace_decided(const char *stream_id, int rc, const cmd_result *decision);
/* Ends it if no decision was made (out: why, or NULL once out is the completion's). */
void cmd_trace_finish(const cmd_outcome *out);
/* Points the event's traceparent (added if missing) at the decision's context; the text
 * lives until cmd_trace_finish on this thread. */
void cmd_trace_meta(ev_event *ev);
/* The command.append span: from queueing to the append's completion. */
tr_span *cmd_trace_wait_begin(const char *stream_id, size_t events);
void cmd_trace_wait_end(tr_span *s, int status, uint64_t first_position);

#endif
