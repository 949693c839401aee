/*
 * events_int.h -- declarations shared inside events/ only.
 */
#ifndef SKALD_EVENTS_INT_H
#define SKALD_EVENTS_INT_H

#include "events/events.h"

#include <avro.h>
#include <stdbool.h>

/* Deepest nesting of records, arrays, maps and unions that payloads may use. */
#define EV_SCHEMA_DEPTH_MAX 32

typedef enum ev_kind {
    EV_K_NULL,
    EV_K_BOOLEAN,
    EV_K_INT,
    EV_K_LONG,
    EV_K_FLOAT,
    EV_K_DOUBLE,
    EV_K_BYTES,
    EV_K_STRING,
    EV_K_RECORD,
    EV_K_ENUM,
    EV_K_ARRAY,
    EV_K_MAP,
    EV_K_UNION,
    EV_K_FIXED,
    EV_K_INVALID,
} ev_kind;

/*
 * A schema compiled for the payload walks (schema_tree.c). A node is a type; a use is a
 * type where a field, an item or a union branch takes it, with the input limits that
 * hold there (the field's attributes first, then the type's).
 */
typedef struct ev_limits {
    long long min, max;               /* integers: "minimum", "maximum" */
    long long min_length, max_length; /* strings and bytes; fixed: its size */
    long long min_items, max_items;   /* arrays */
    bool id;                          /* "format": "id" (the id alphabet) */
} ev_limits;

struct ev_node;
typedef struct ev_use {
    const struct ev_node *node;
    ev_limits lim;
} ev_use;

typedef struct ev_field {
    const char *name;
    ev_use type;
    const json_t *dflt; /* NULL: the field is required */
} ev_field;

typedef struct ev_node {
    ev_kind kind;
    const json_t *def;          /* its definition in the schema's JSON */
    const char *name;           /* records, enums, fixed */
    size_t count;               /* fields, branches or symbols */
    ev_field *fields;           /* records */
    ev_use *branches;           /* unions */
    ev_use items;               /* arrays (items) and maps (values) */
    const json_t *symbols;      /* enums: the symbols in index order */
    const json_t *enum_default; /* enums: the symbol that stands for unknown ones, or NULL */
    size_t size;                /* fixed */
} ev_node;

typedef struct ev_tree {
    ev_use root;
    ev_node **nodes; /* every node, for freeing; a named type is one node */
    size_t count, cap;
} ev_tree;

int ev_tree_build(ev_tree *t, const json_t *names, const json_t *root); /* 0 or -ENOMEM */
void ev_tree_free(ev_tree *t);

/*
 * One schema version. The schema is kept as parsed JSON (names, defaults and the
 * maxLength attribute live there), compiled for the payload walks, and as avro-c's schema
 * and value interface (the reference encoder and decoder). Immutable once built.
 */
typedef struct ev_schema {
    uint32_t id;
    char *type;      /* the record's name: the event type */
    char *canonical; /* compact JSON with sorted keys: identifies the version */
    json_t *root;    /* the parsed schema */
    json_t *names;   /* name (short and full) -> definition, for references */
    ev_tree tree;
    avro_schema_t avro;
    avro_value_iface_t *iface;
} ev_schema;

/* Parses schema text. On failure err says why (origin names the file for messages). */
int ev_schema_parse(const char *text, size_t size, const char *origin, ev_schema **out,
                    sk_error *err);
void ev_schema_free(ev_schema *s);

/* Follows a named reference; returns the definition node (NULL if unknown). */
const json_t *ev_schema_deref(const json_t *names, const json_t *node);
ev_kind ev_schema_kind(const json_t *names, const json_t *node);
const char *ev_kind_name(ev_kind kind);

/* Path building for error messages: "lines[2].sku". */
typedef struct ev_path {
    char text[256];
    size_t len;
} ev_path;
size_t ev_path_push_field(ev_path *p, const char *name);
size_t ev_path_push_index(ev_path *p, size_t index);
void ev_path_pop(ev_path *p, size_t len);

/*
 * Reshapes a JSON value into the shape of a schema node.
 * strict: input from a client (unknown fields are errors, numbers must fit, strings
 *   obey their limits). Otherwise: resolution of a decoded older version (unknown fields
 *   are dropped).
 * Missing fields take the field's default in both modes. 0 and *out (the caller's), or
 * SK_EBADINPUT (err->field = path) when the value does not fit, or -ENOMEM: an allocation
 * failed, which is never the value's fault.
 */
typedef struct ev_coerce_opts {
    bool strict;
    bool ints_as_real; /* the JSON was parsed with JSON_DECODE_INT_AS_REAL */
    bool check_only;   /* check without building the value: *out gets json_null() */
    ev_buf *emit;      /* check and append the value's Avro binary here (implies check_only) */
} ev_coerce_opts;
int ev_coerce(const ev_schema *s, const json_t *value, const ev_coerce_opts *opts, json_t **out,
              sk_error *err);

/* Checks that data is exactly one well-formed value of the schema, without allocating
 * anything proportional to what the data claims. 0 or SK_ECORRUPT (err says where). */
int ev_avro_check(const ev_schema *s, const uint8_t *data, size_t size, sk_error *err);

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not valid (util.c). */
size_t ev_utf8_seq(const unsigned char *p, size_t left);

/* Avro's binary encoding, appended to b (avro_write.c): 0 or -ENOMEM. */
int ev_avro_put_long(ev_buf *b, int64_t x); /* int, long, enum index, count, union branch */
int ev_avro_put_float(ev_buf *b, float x);
int ev_avro_put_double(ev_buf *b, double x);
int ev_avro_put_bytes(ev_buf *b, const void *data, size_t size); /* string or bytes */

/* Avro binary that ev_avro_check passed to JSON, in one walk (avro_read.c): 0, or
 * SK_ECORRUPT when a string is not UTF-8 (or memory ran out building the JSON). */
int ev_avro_read(const ev_schema *s, const uint8_t *data, size_t size, json_t **out, sk_error *err);
/* A bytes or fixed value as a JSON string: its bytes if they are UTF-8, else Latin-1. */
json_t *ev_bytes_json(const uint8_t *p, size_t n);

/* Binary <-> JSON through avro-c. The JSON given to encode must already be coerced.
 * Payloads are encoded by the coerce walk in one pass (ev_coerce_opts.emit) and decoded
 * by ev_avro_read; avro-c stays as the reference the tests hold both to. */
int ev_avro_encode(const ev_schema *s, const json_t *value, ev_buf *out, sk_error *err);
int ev_avro_decode(const ev_schema *s, const uint8_t *data, size_t size, json_t **out,
                   sk_error *err);

/* Can data written with `writer` be read with `reader`? 0, or SK_ESCHEMA naming the field. */
int ev_schema_can_read(const ev_schema *reader, const ev_schema *writer, sk_error *err);
/* Both ways (FULL compatibility): may `next` replace `prev` as the newest version? */
int ev_schema_check_change(const ev_schema *prev, const ev_schema *next, sk_error *err);

/* The version behind an id, and the newest version of a type (NULL if unknown). */
const ev_schema *ev_registry_schema(const ev_registry *reg, uint32_t id);
const ev_schema *ev_registry_newest(const ev_registry *reg, const char *type);

#endif /* SKALD_EVENTS_INT_H */
