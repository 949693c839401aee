/*
 * events.h -- the lowest layer of Skald: errors, the event envelope, and Avro payloads.
 *
 * Everything above (store/, commands/, ...) speaks in these types. Nothing here does I/O
 * except the schema registry, which reads the .avsc files and keeps its id table in the
 * data directory.
 *
 * Calling sequence
 *   ev_registry_open(schemas_dir, data_dir, &reg, &err)   once, at startup
 *   ev_registry_latest(reg, "OrderPlaced", &id)            which schema encodes new events
 *   ev_payload_from_json(reg, "OrderPlaced", json, &buf, &id, &err)   JSON -> Avro binary
 *   ev_payload_to_json(reg, id, data, size, &json, &err)   Avro binary (any version) -> JSON
 *   ev_registry_destroy(reg)
 *
 * Error rules
 *   Every function that can fail returns 0 or a negative code: a negated errno for system
 *   failures, or one of the SK_E* codes below. Results go out through parameters marked
 *   out, written only on success. Where a person needs detail (which field, which file),
 *   the function takes an sk_error and fills it on failure; sk_error may be NULL.
 *
 * Thread safety
 *   An ev_registry is immutable after ev_registry_open returns: any number of threads may
 *   encode and decode through one registry at the same time.
 */
#ifndef SKALD_EVENTS_H
#define SKALD_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------
 * Errors. Skald's own codes sit below -1000, apart from negated errno values.
 * One list yields the enum, the name and the message.
 */
#define SK_ERRNO_MAP(X)                                                                            \
    X(CORRUPT, -1001, "stored data is corrupt")                                                    \
    X(CONFLICT, -1002, "expected version does not match the stream's version")                     \
    X(REJECTED, -1003, "rejected by a business rule")                                              \
    X(BADINPUT, -1004, "input does not match its schema")                                          \
    X(SCHEMA, -1005, "schema is invalid or incompatible")                                          \
    X(NOTFOUND, -1006, "not found")                                                                \
    X(FAILED, -1007, "log is in the failed state; it must be reopened through recovery")           \
    X(READONLY, -1008, "log is open read-only")                                                    \
    X(BUSY, -1009, "queue is full; retry later")                                                   \
    X(CLOSED, -1010, "log is closing")                                                             \
    X(TOOBIG, -1011, "value exceeds its size limit")                                               \
    X(CANCELED, -1012, "stopped by another thread")                                                \
    X(TRUNCATED, -1013, "the log was cut back below this reader's position")

enum {
#define SK_ERRNO_ENUM(name, value, msg) SK_E##name = (value),
    SK_ERRNO_MAP(SK_ERRNO_ENUM)
#undef SK_ERRNO_ENUM
};

/* A short, stable name ("SK_ECORRUPT", "EIO") and a sentence. Both static; never NULL. */
const char *sk_err_name(int err);
const char *sk_strerror(int err);

/* Detail for a person: which field or file, and what is wrong with it. */
typedef struct sk_error {
    int code;          /* the same code the function returned */
    char field[256];   /* JSON path of the field at fault ("lines[2].quantity"), or "" */
    char message[512]; /* a sentence naming the file, schema or field and what to do */
} sk_error;

/* Fills err (if not NULL) and returns code, so a caller can write
 * `return sk_error_set(err, SK_EBADINPUT, "sku", "missing required field");`. */
int sk_error_set(sk_error *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sk_error_clear(sk_error *err);

/* ---------------------------------------------------------------------------------------
 * Logging: one logger for every layer (events/log.c).
 *
 * Layers report with sk_log(level, subsystem, message, key, value, ..., SK_LOG_END): the
 * values are strings, NULL or "" ones are left out, at most 16 are kept. Nothing is
 * formatted below the level set with sk_log_set_level (default info); notice and fatal
 * always pass. Where the message goes is the program's choice: a sink installed with
 * sk_log_set_sink gets every message that passes the level (from any thread, so it must
 * be thread-safe; fields are borrowed for the call); with none, sk_log_write_fields writes
 * it as one JSON line on stderr, the shape the service writes all its lines in.
 */
typedef enum sk_log_level {
    SK_LOG_DEBUG = 0,
    SK_LOG_INFO,
    SK_LOG_WARN,
    SK_LOG_ERROR,
    SK_LOG_NOTICE, /* always written: start, stop, entering and leaving failed states */
    SK_LOG_FATAL   /* always written: an assertion failed; the process aborts */
} sk_log_level;

typedef struct sk_log_field {
    const char *key;
    const char *value;
    bool number; /* value is the text of a JSON number, written unquoted */
} sk_log_field;

typedef void (*sk_log_fn)(void *ctx, sk_log_level level, const char *subsystem, const char *message,
                          const sk_log_field *fields, size_t count);

#define SK_LOG_END ((const char *)NULL) /* ends sk_log's key, value pairs */
void sk_log(sk_log_level level, const char *subsystem, const char *message, ...);
/* Installs fn (NULL: back to sk_log_write_fields). Process-wide; ctx is borrowed. */
void sk_log_set_sink(sk_log_fn fn, void *ctx);
void sk_log_set_level(sk_log_level level);
int sk_log_enabled(sk_log_level level); /* 1 if a message at level would be written */
/* "debug" | "info" | "warn" | "error" -> level; 0 or SK_EBADINPUT. */
int sk_log_level_parse(const char *text, sk_log_level *out);
const char *sk_log_level_name(sk_log_level level);
/* The JSON line writer: {"ts","level","subsystem","msg", ...fields} on stderr in one
 * write, if level passes, written as text (no JSON objects are built): what sk_log writes
 * by default, and the service's lines. Keys ts, level, subsystem and msg among fields are
 * left out. */
void sk_log_write_fields(sk_log_level level, const char *subsystem, const char *message,
                         const sk_log_field *fields, size_t count);
/* Between these, sk_log_write_fields gathers the calling thread's lines and writes them
 * together at sk_log_release (or each 64 KiB, or at once from error level up): for a
 * thread that answers a run of requests at once. Lines go out late by at most the run,
 * never interleaved or split. */
void sk_log_hold(void);
void sk_log_release(void);

/* ---------------------------------------------------------------------------------------
 * Small value types.
 */

/* 1 when built with AddressSanitizer. Pools of reused blocks keep nothing then, so a block
 * used after it was given back is a use-after-free that ASan reports. */
#if defined(__SANITIZE_ADDRESS__)
#define EV_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EV_UNDER_ASAN 1
#endif
#endif
#ifndef EV_UNDER_ASAN
#define EV_UNDER_ASAN 0
#endif

/* A byte string that is not NUL-terminated: a borrowed view. */
typedef struct ev_str {
    const char *ptr;
    uint32_t len;
} ev_str;

ev_str ev_str_of(const char *cstr); /* view of a C string (NULL gives the empty view) */
int ev_str_eq(ev_str a, const char *cstr);

/* FNV-1a, 64-bit: ev_hash_add(EV_HASH_INIT, data, size), chainable over several pieces.
 * The log's stream index stores these values, so the function never changes. */
#define EV_HASH_INIT 0xcbf29ce484222325ull
uint64_t ev_hash_add(uint64_t hash, const void *data, size_t size);
/* Reads a whole file (at most 16 MiB) into *out (malloc'd, NUL-terminated; *size_out
 * excludes the NUL). 0, -errno, SK_ETOOBIG or -ENOMEM. */
int ev_read_file(const char *path, char **out, size_t *size_out);
/* ev_hash_add(EV_HASH_INIT, ...) of a C string. */
uint64_t ev_hash_str(const char *cstr);
/* fsync of a directory, so the entries created, renamed or removed in it are durable: the
 * one helper every layer uses (store/ reaches it through its I/O seam's sync_dir).
 * 0 or -errno. */
int ev_fsync_dir(const char *path);
/*
 * Where a file Skald ships (the schemas: "events/schemas", "commands/schemas") is, for
 * the running binary: under the install prefix, <bindir>/../share/skald/<what> (what
 * `cmake --install` lays out), when that exists; else, for a binary that runs from the
 * build tree, the source tree's <what>. An installed binary never looks in the source
 * tree. 0 and the path in out, or -ENOENT (out names where it looked).
 */
int ev_shipped_path(const char *what, char *out, size_t size);

typedef struct ev_uuid {
    uint8_t bytes[16];
} ev_uuid;

#define EV_UUID_TEXT_SIZE 37 /* 36 characters and the NUL */
void ev_uuid_generate(ev_uuid *out);
void ev_uuid_format(const ev_uuid *id, char out[EV_UUID_TEXT_SIZE]);
int ev_uuid_parse(const char *text, ev_uuid *out); /* 0, or SK_EBADINPUT */
int ev_uuid_is_nil(const ev_uuid *id);

/* A growable byte buffer owned by whoever holds it; free with ev_buf_free. */
typedef struct ev_buf {
    uint8_t *data;
    size_t size;
    size_t cap;
} ev_buf;

int ev_buf_reserve(ev_buf *buf, size_t extra); /* 0 or -ENOMEM */
int ev_buf_append(ev_buf *buf, const void *data, size_t size);
void ev_buf_free(ev_buf *buf);

/*
 * JSON text written directly (json_out.c), for output of a fixed shape made often (spans,
 * log lines, answers): append pieces, then take the NUL-terminated text. Strings are
 * escaped, and bytes that are not UTF-8 become U+FFFD, so the text is always valid JSON.
 * A failed allocation is sticky: take returns NULL. Start from {0}.
 */
typedef struct ev_json_out {
    ev_buf buf;
    bool failed;
} ev_json_out;
void ev_json_out_raw(ev_json_out *o, const char *text, size_t len); /* as it is */
void ev_json_out_lit(ev_json_out *o, const char *text);             /* as it is */
void ev_json_out_fmt(ev_json_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ev_json_out_str(ev_json_out *o, const char *s); /* a quoted, escaped string */
void ev_json_out_strn(ev_json_out *o, const char *s, size_t len);
/* The text for the caller to free (its length in *len_out if not NULL), or NULL. */
char *ev_json_out_take(ev_json_out *o, size_t *len_out);

/* ---------------------------------------------------------------------------------------
 * The event envelope. Every event in the log carries all of these fields.
 */

/* Limits, enforced where events enter the log; the log format relies on them. */
#define EV_STREAM_ID_MAX      200        /* bytes */
#define EV_TYPE_MAX           128        /* bytes */
#define EV_METADATA_MAX       16         /* entries */
#define EV_METADATA_KEY_MAX   64         /* bytes */
#define EV_METADATA_VALUE_MAX 1024       /* bytes */
#define EV_PAYLOAD_MAX        (1u << 20) /* bytes of Avro binary */

/*
 * The id alphabet, defined once: the characters an id a client names (a command's
 * `sku`, `order_id`, `customer_id`, any schema string marked "format": "id", and the id
 * part of every stream a command targets) may hold. They are RFC 3986's path characters
 * that need no percent-encoding: letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @.
 * So every such id reads back through a URL as it was written, and none can hold a '/',
 * a '%', a space, a control character or bytes that are not ASCII. docs/schemas.md.
 */
#define EV_ID_CHARS                                                                                \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
/* 0 if id[0..len) is non-empty and all in EV_ID_CHARS; else SK_EBADINPUT with *bad_at the
 * offset of the first byte outside it (len for an empty id). */
int ev_id_check(const char *id, size_t len, size_t *bad_at);

typedef struct ev_metadata_entry {
    ev_str key;
    ev_str value;
} ev_metadata_entry;

/* Reserved metadata keys. */
#define EV_META_TRACEPARENT "traceparent"
#define EV_META_PRINCIPAL   "principal"

/*
 * One event. All strings and the payload are borrowed views: who fills the struct says
 * how long they live (for events read from the log: until the reader's next call).
 */
typedef struct ev_event {
    ev_uuid event_id;
    ev_str stream_id;       /* the aggregate, e.g. "order-7f3c..." */
    ev_str type;            /* e.g. "OrderPlaced"; names the Avro record schema */
    uint64_t version;       /* 1-based position within its stream */
    uint64_t position;      /* 0-based offset in the node's global log */
    int64_t occurred_at;    /* microseconds since the Unix epoch */
    ev_uuid command_id;     /* causation */
    ev_uuid correlation_id; /* the business process (e.g. the saga); nil if none */
    uint32_t schema_id;     /* the writer schema of payload */
    uint32_t metadata_count;
    ev_metadata_entry metadata[EV_METADATA_MAX];
    const uint8_t *payload; /* Avro binary of the event's record schema */
    uint32_t payload_size;
} ev_event;

/* Checks the limits above and that stream_id and type are non-empty. 0 or SK_EBADINPUT
 * (err names the field: "stream_id", "type", "metadata.<key>", "payload"). */
int ev_event_check(const ev_event *ev, sk_error *err);

/* Microseconds since the epoch, from CLOCK_REALTIME. */
int64_t ev_now_us(void);

/* The envelope as a JSON object (event_id, stream_id, type, version, position,
 * occurred_at as RFC 3339 text and occurred_at_us, command_id, correlation_id, schema_id,
 * metadata). The payload is not included; see ev_payload_to_json. Caller owns the result. */
json_t *ev_envelope_to_json(const ev_event *ev);

/* ---------------------------------------------------------------------------------------
 * Schema registry.
 *
 * Each event type has one record schema in `<schemas_dir>/<Type>.avsc`. The registry gives
 * every distinct schema version a stable 32-bit id, kept in `<data_dir>/schemas/`: once an
 * id is given it never changes (a restart, a new schema file or a different file order
 * leaves it alone), and every old version stays loadable by its id so that events written
 * with it can still be read. A changed .avsc becomes a new version of its type only if it
 * is compatible both ways with the newest version (new fields have defaults; no field
 * without a default is removed; no type changes except Avro's promotions); otherwise the
 * registry refuses to open, naming the schema and the field.
 */
typedef struct ev_registry ev_registry;

/* Opens the registry. data_dir NULL keeps ids in memory only (tests). On SK_ESCHEMA err
 * names the .avsc file and the field. Ownership: *out belongs to the caller (destroy it). */
int ev_registry_open(const char *schemas_dir, const char *data_dir, ev_registry **out,
                     sk_error *err);
/* Opens read-only: checks everything ev_registry_open checks but writes nothing (for
 * `skaldctl schemas check` and for reading a log without touching its data directory). */
int ev_registry_open_readonly(const char *schemas_dir, const char *data_dir, ev_registry **out,
                              sk_error *err);
void ev_registry_destroy(ev_registry *reg); /* accepts NULL */

typedef struct ev_schema_info {
    uint32_t id;
    const char *type;        /* "OrderPlaced" */
    const char *schema_json; /* the schema text as registered (canonical JSON) */
    int latest;              /* 1 if new events of this type are written with it */
} ev_schema_info;

/* Number of schema versions, and each in id order. Strings live as long as the registry. */
size_t ev_registry_count(const ev_registry *reg);
int ev_registry_at(const ev_registry *reg, size_t index, ev_schema_info *out);
int ev_registry_find(const ev_registry *reg, uint32_t id, ev_schema_info *out); /* NOTFOUND */
/* The id new events of this type are written with. SK_ENOTFOUND for an unknown type. */
int ev_registry_latest(const ev_registry *reg, const char *type, uint32_t *id_out);

/* ---------------------------------------------------------------------------------------
 * Payloads.
 */

/* Upper bound on the length of any string field unless the field declares "maxLength". */
#define EV_STRING_MAX 65536

/* Checks value against the newest schema of type exactly as ev_payload_from_json does
 * (same errors, same field paths) without encoding it. */
int ev_payload_check_json(const ev_registry *reg, const char *type, const json_t *value,
                          sk_error *err);
/*
 * JSON -> Avro binary of the type's newest schema, appended to out. On SK_EBADINPUT,
 * err->field is the path of the first field at fault ("lines[0].quantity") and the message
 * says what is wrong: missing, wrong type, not in the schema, integer out of range, string
 * too long, invalid UTF-8. SK_ENOTFOUND for an unknown type. Nothing is appended on error.
 */
int ev_payload_from_json(const ev_registry *reg, const char *type, const json_t *value, ev_buf *out,
                         uint32_t *schema_id_out, sk_error *err);

/* The same from JSON text (which may be invalid JSON or invalid UTF-8; both are reported
 * with the field at fault where one can be named). */
int ev_payload_from_json_text(const ev_registry *reg, const char *type, const char *text,
                              size_t size, ev_buf *out, uint32_t *schema_id_out, sk_error *err);

/*
 * Avro binary written with schema `schema_id` -> JSON in the shape of the type's newest
 * schema (fields the writer lacked get the reader's defaults; Avro's promotions apply).
 * The binary is untrusted: it is bounds-checked before avro-c sees it, and bad data gives
 * SK_ECORRUPT, never a crash or a large allocation. Caller owns *out.
 */
int ev_payload_to_json(const ev_registry *reg, uint32_t schema_id, const uint8_t *data, size_t size,
                       json_t **out, sk_error *err);

/* The same, but decoded in the writer's own shape (no resolution). */
int ev_payload_to_json_as_written(const ev_registry *reg, uint32_t schema_id, const uint8_t *data,
                                  size_t size, json_t **out, sk_error *err);

#endif /* SKALD_EVENTS_H */
