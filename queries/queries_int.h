/*
 * queries_int.h -- declarations shared inside queries/ only (and by its tests and fuzzer):
 * the parsed declaration of a query, the checked arguments of one call, cursors, the
 * connection pool and the SHA-256 the cursor MAC is built on.
 */
#ifndef SKALD_QUERIES_INT_H
#define SKALD_QUERIES_INT_H

#include "queries/queries.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* QRY_ASSERT stays on in release builds: cheap, one condition, no side effects. */
#define QRY_ASSERT(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Bounds on what a model file may declare; a file past them fails to load. */
#define QRY_NAME_MAX        64   /* bytes of a query, model, parameter or column name, NUL incl. */
#define QRY_QUERIES_MAX     256  /* queries over all model files */
#define QRY_PARAMS_MAX      16   /* declared parameters of one query */
#define QRY_IN_MAX          32   /* values of one in(...) list */
#define QRY_ORDER_MAX       8    /* @order columns */
#define QRY_COLUMNS_MAX     64   /* result columns */
#define QRY_VALUE_MAX       4096 /* bytes of one request parameter value */
#define QRY_CURSOR_MAX      4096 /* characters of a cursor */
#define QRY_POOL_IDLE_MAX   4    /* idle read connections kept per model */
#define QRY_SECRET_SIZE     32
#define QRY_MAC_SIZE        16 /* HMAC-SHA-256 truncated to 128 bits (RFC 2104, section 5) */
#define QRY_FINGERPRINT_HEX 32 /* hex digits of a parameter fingerprint (128 bits) */

/* The names the engine binds itself; a declared parameter may not use the prefix. */
#define QRY_RESERVED_PREFIX "_skald_"

typedef enum qry_type { QRY_TEXT, QRY_INTEGER } qry_type;

typedef struct qry_param_decl {
    char name[QRY_NAME_MAX];
    qry_type type;
    bool required;
    size_t in_count;      /* 0: any value */
    char *in[QRY_IN_MAX]; /* owned */
} qry_param_decl;

typedef struct qry_order_key {
    char column[QRY_NAME_MAX];
    bool desc;
    int column_index; /* its index among the result columns */
} qry_order_key;

/* One `-- @query` section, checked against its model's tables. Immutable once loaded. */
typedef struct qry_decl {
    char name[QRY_NAME_MAX];
    char model[QRY_NAME_MAX]; /* the file's name without .sql */
    char *file;               /* owned: the path it came from, for messages */
    int line;                 /* of its `-- @query` line */
    char *body;               /* owned: the SELECT as written */
    char *sql_first;          /* owned: the body wrapped for the first page */
    char *sql_next;           /* owned: the body wrapped for a page after a cursor */
    size_t param_count;
    qry_param_decl params[QRY_PARAMS_MAX];
    size_t order_count;
    qry_order_key order[QRY_ORDER_MAX];
    size_t column_count;
    char *columns[QRY_COLUMNS_MAX]; /* owned: result column names */
    bool column_json[QRY_COLUMNS_MAX];
    size_t model_index; /* into the engine's models */
} qry_decl;

/* declare.c: loads and checks every `-- @query` section of dir/\*.sql, in file-name order.
 * On failure err names the file, the query and what is wrong; nothing is returned.
 * Ownership: *out (count_out entries) belongs to the caller (qry_decls_free). */
int qry_decls_load(const char *dir, qry_decl **out, size_t *count_out, sk_error *err);
/* Parses and checks the sections of one file's text (file names it in messages), adding to
 * decls[*count] (capacity QRY_QUERIES_MAX). Exposed for tests. */
int qry_decls_parse(const char *file, const char *text, qry_decl *decls, size_t *count,
                    sk_error *err);
void qry_decls_free(qry_decl *decls, size_t count);
/* The authorizer every query is prepared under, at load and at run time: reading only. */
int qry_authorize(void *ctx, int action, const char *a, const char *b, const char *c,
                  const char *d);

/* params.c: one call's arguments, checked against its declaration. */
typedef struct qry_args {
    const char *values[QRY_PARAMS_MAX]; /* borrowed from the request; NULL: not given */
    long long ints[QRY_PARAMS_MAX];     /* for integer parameters that were given */
    int limit;
    int timeout_ms;
    bool has_min_position;
    uint64_t min_position;
    const char *cursor; /* borrowed; NULL: first page */
} qry_args;

/* 0, or SK_EBADINPUT with err->field naming the parameter. */
int qry_args_parse(const qry_decl *d, const qry_param *params, size_t count, qry_args *out,
                   sk_error *err);
/* A hash of the declared parameters' values (not limit, cursor, min_position, timeout_ms):
 * a cursor only continues the call it came from. out gets QRY_FINGERPRINT_HEX hex digits. */
void qry_args_fingerprint(const qry_decl *d, const qry_args *a, char out[QRY_FINGERPRINT_HEX + 1]);

/* cursor.c: base64url(JSON {"q","k","f"} || HMAC-SHA-256(secret, JSON)[0..16)). */
/* Signs payload and encodes it as a cursor (encode's last step; the fuzzer signs its own
 * payloads with it). *out is malloc'd. */
int qry_cursor_seal(const uint8_t secret[QRY_SECRET_SIZE], const void *payload, size_t size,
                    char **out);
/* keys is a JSON array of the last row's @order values (borrowed). *out is malloc'd. */
int qry_cursor_encode(const uint8_t secret[QRY_SECRET_SIZE], const char *query,
                      const char *fingerprint, json_t *keys, char **out);
/* 0 and *keys_out (a JSON array of key_count strings or numbers; caller owns it), or
 * SK_EBADINPUT naming "cursor" for anything else: bad encoding, bad MAC, another query,
 * other parameter values, a key of the wrong shape. Never reads past text's NUL. */
int qry_cursor_decode(const uint8_t secret[QRY_SECRET_SIZE], const char *text, const char *query,
                      const char *fingerprint, size_t key_count, json_t **keys_out, sk_error *err);

/* secret.c: reads the 32-byte secret, creating the file (mode 0600) if it is missing. */
int qry_secret_load(const char *path, uint8_t out[QRY_SECRET_SIZE], sk_error *err);

/* sha256.c */
typedef struct qry_sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t block_used;
} qry_sha256;
void qry_sha256_init(qry_sha256 *s);
void qry_sha256_update(qry_sha256 *s, const void *data, size_t size);
void qry_sha256_final(qry_sha256 *s, uint8_t out[32]);
void qry_hmac_sha256(const uint8_t *key, size_t key_size, const void *data, size_t size,
                     uint8_t out[32]);

/* pool.c: read-only connections to a model's live database, per model, keyed by the
 * generation the source reports; a rebuild's swap retires the older ones. */
typedef struct qry_conn {
    sqlite3 *db;
    uint64_t generation;
    sqlite3_stmt *position; /* reads next_position */
    sqlite3_stmt *begin;
    sqlite3_stmt *commit;
    sqlite3_stmt **stmts; /* 2 per query (first page, after a cursor), prepared lazily */
} qry_conn;

typedef struct qry_model {
    char name[QRY_NAME_MAX];
    uint64_t generation; /* of the idle connections */
    size_t idle_count;
    qry_conn *idle[QRY_POOL_IDLE_MAX];
} qry_model;

struct qry_engine {
    qry_source src;
    uint8_t secret[QRY_SECRET_SIZE];
    qry_decl *decls;
    size_t decl_count;
    qry_model *models;
    size_t model_count;
    pthread_mutex_t mu; /* guards every model's idle connections */
};

/* Takes an idle connection to the model's live database or opens one. SK_ENOTFOUND /
 * SK_EBUSY from the source; SK_EBUSY or -EIO when SQLite cannot open it. Ownership: *out
 * belongs to the caller until qry_pool_put. */
int qry_pool_get(qry_engine *q, size_t model_index, qry_conn **out, sk_error *err);
/* Gives a connection back: kept if its generation is still the newest seen and there is
 * room, closed otherwise. reusable false closes it (after an error it may be in). */
void qry_pool_put(qry_engine *q, size_t model_index, qry_conn *c, bool reusable);
void qry_pool_close_all(qry_engine *q);

#endif /* SKALD_QUERIES_INT_H */
