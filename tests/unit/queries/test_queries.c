/*
 * test_queries.c -- the query engine against the sample models: declarations load (and
 * bad ones are refused naming file and query), parameters are checked, pages come in the
 * declared order and every row exactly once under concurrent inserts, cursors cannot be
 * forged or reused elsewhere, and min_position waits through the source.
 *
 * The read model here is built by the test itself (the @tables of orders.sql in a temp
 * file, rows inserted directly, _skald_projection written by hand) and served through a
 * fake qry_source, so projections/ is not needed.
 */
#define _XOPEN_SOURCE 700
#include "queries/queries_int.h"

#include <errno.h>
#include <pthread.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define MODELS SKALD_SOURCE_DIR "/projections/models"

typedef struct fake_source {
    char path[4096];
    uint64_t generation;
    int live_rc;
    int wait_rc;
    int64_t applied;
    int wait_calls;
    uint64_t wait_position;
    int wait_timeout_ms;
} fake_source;

static int fake_live_db(void *ctx, const char *model, char *path, size_t size, uint64_t *gen)
{
    fake_source *f = ctx;
    if (f->live_rc)
        return f->live_rc;
    if (strcmp(model, "orders") != 0)
        return SK_EBUSY;
    snprintf(path, size, "%s", f->path);
    *gen = f->generation;
    return 0;
}

static int fake_wait(void *ctx, const char *model, uint64_t position, int timeout_ms,
                     int64_t *applied_out)
{
    fake_source *f = ctx;
    f->wait_calls++;
    f->wait_position = position;
    f->wait_timeout_ms = timeout_ms;
    *applied_out = f->applied;
    return f->wait_rc;
}

typedef struct fixture {
    char dir[64];
    fake_source src;
    qry_engine *q;
    sqlite3 *db; /* the writer's connection to the test read model */
} fixture;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(path);
}

/* The @tables section of a model file. */
static char *tables_of(const char *file)
{
    char *text = NULL;
    size_t size = 0;
    assert_int_equal(ev_read_file(file, &text, &size), 0);
    char *start = strstr(text, "-- @tables\n");
    assert_non_null(start);
    start += strlen("-- @tables\n");
    char *end = strstr(start, "\n-- @");
    if (end)
        end[1] = 0;
    char *out = strdup(start);
    free(text);
    return out;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

static void set_next_position(sqlite3 *db, long long next)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "INSERT OR REPLACE INTO _skald_projection(key, value) VALUES ('next_position', %lld)",
             next);
    exec_ok(db, sql);
}

static sqlite3 *make_orders_db(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=WAL");
    char *tables = tables_of(MODELS "/orders.sql");
    exec_ok(db, tables);
    free(tables);
    exec_ok(db, "CREATE TABLE _skald_projection (key TEXT PRIMARY KEY, value)");
    set_next_position(db, 100);
    return db;
}

static void add_order(sqlite3 *db, const char *id, const char *customer, const char *status,
                      long long total, const char *placed_at, int lines)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO orders (order_id, customer_id, status, "
                                        "total_cents, placed_at) VALUES (?, ?, ?, ?, ?)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, customer, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, total);
    sqlite3_bind_text(st, 5, placed_at, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    for (int i = 0; i < lines; i++) {
        char sql[300];
        snprintf(sql, sizeof sql, "INSERT INTO order_lines VALUES ('%s', %d, 'sku-%d', %d, %d)", id,
                 i, i, i + 1, 100 * (i + 1));
        exec_ok(db, sql);
    }
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/skald-qry-test-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->src.path, sizeof fx->src.path, "%s/orders.1.db", fx->dir);
    fx->src.generation = 1;
    fx->src.applied = -1;
    fx->db = make_orders_db(fx->src.path);
    char secret[128];
    snprintf(secret, sizeof secret, "%s/cursor.key", fx->dir);
    qry_source src = {&fx->src, fake_live_db, fake_wait};
    sk_error err;
    int rc = qry_engine_open(MODELS, &src, secret, &fx->q, &err);
    if (rc)
        fail_msg("qry_engine_open: %s", err.message);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    qry_engine_close(fx->q);
    sqlite3_close(fx->db);
    nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* Runs a query with "name=value" arguments (NULL-terminated); returns its code. */
static int run(fixture *fx, const char *query, json_t **answer, qry_error *qerr, ...)
{
    qry_param params[16];
    char buf[16][600];
    size_t n = 0;
    va_list ap;
    va_start(ap, qerr);
    const char *arg;
    while ((arg = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 16);
        snprintf(buf[n], sizeof buf[n], "%s", arg);
        char *eq = strchr(buf[n], '=');
        assert_non_null(eq);
        *eq = 0;
        params[n].name = buf[n];
        params[n].value = eq + 1;
        n++;
    }
    va_end(ap);
    *answer = NULL;
    return qry_run(fx->q, query, params, n, answer, qerr);
}

static void expect_bad(fixture *fx, const char *query, const char *field, ...)
{
    qry_param params[16];
    char buf[16][5000];
    size_t n = 0;
    va_list ap;
    va_start(ap, field);
    const char *arg;
    while ((arg = va_arg(ap, const char *)) != NULL) {
        snprintf(buf[n], sizeof buf[n], "%s", arg);
        char *eq = strchr(buf[n], '=');
        *eq = 0;
        params[n].name = buf[n];
        params[n].value = eq + 1;
        n++;
    }
    va_end(ap);
    json_t *answer = NULL;
    qry_error qerr;
    int rc = qry_run(fx->q, query, params, n, &answer, &qerr);
    if (rc != SK_EBADINPUT || strcmp(qerr.err.field, field) != 0)
        fail_msg("%s: expected SK_EBADINPUT naming %s, got %d naming '%s' (%s)", query, field, rc,
                 qerr.err.field, qerr.err.message);
    assert_null(answer);
    assert_true(strlen(qerr.err.message) > 0);
}

/* ---------------------------------------------------------------------------------------
 */

static void test_sha256_vectors(void **state)
{
    (void)state;
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    uint8_t out[32];
    qry_sha256 s;
    qry_sha256_init(&s);
    qry_sha256_update(&s, "abc", 3);
    qry_sha256_final(&s, out);
    assert_memory_equal(out, abc, 32);
    /* 448 bits: the padding spills into a second block (FIPS 180-4 example). */
    static const uint8_t two[32] = {0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8,
                                    0xe5, 0xc0, 0x26, 0x93, 0x0c, 0x3e, 0x60, 0x39,
                                    0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff, 0x21, 0x67,
                                    0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb, 0x06, 0xc1};
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    qry_sha256_init(&s);
    for (const char *c = m; *c; c++) /* byte by byte: the block boundary mid-update */
        qry_sha256_update(&s, c, 1);
    qry_sha256_final(&s, out);
    assert_memory_equal(out, two, 32);
    /* RFC 4231, test case 2. */
    static const uint8_t hmac[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                     0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                     0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                     0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    const char *data = "what do ya want for nothing?";
    qry_hmac_sha256((const uint8_t *)"Jefe", 4, data, strlen(data), out);
    assert_memory_equal(out, hmac, 32);
}

static void test_load_samples(void **state)
{
    fixture *fx = *state;
    assert_int_equal(qry_count(fx->q), 8);
    const char *want[] = {"customer_credit", "inventory",    "orders",      "order",
                          "order_counts",    "sales_by_day", "saga_counts", "sagas"};
    for (size_t i = 0; i < 8; i++) {
        bool found = false;
        for (size_t j = 0; j < qry_count(fx->q); j++) {
            json_t *d = qry_describe(fx->q, j);
            assert_non_null(d);
            if (strcmp(json_string_value(json_object_get(d, "name")), want[i]) == 0)
                found = true;
            if (strcmp(json_string_value(json_object_get(d, "name")), "orders") == 0) {
                assert_string_equal(json_string_value(json_object_get(d, "model")), "orders");
                json_t *p = json_array_get(json_object_get(d, "params"), 0);
                assert_string_equal(json_string_value(json_object_get(p, "name")), "status");
                assert_int_equal(json_array_size(json_object_get(p, "in")), 3);
                json_t *o = json_array_get(json_object_get(d, "order"), 0);
                assert_string_equal(json_string_value(json_object_get(o, "direction")), "desc");
            }
            json_decref(d);
        }
        assert_true(found);
    }
    /* The secret was created, 32 bytes, mode 0600. */
    char path[128];
    snprintf(path, sizeof path, "%s/cursor.key", fx->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_unknown_query_and_no_database(void **state)
{
    fixture *fx = *state;
    json_t *a;
    qry_error qerr;
    assert_int_equal(run(fx, "nope", &a, &qerr, (const char *)NULL), SK_ENOTFOUND);
    assert_null(a);
    /* inventory's database does not exist yet in the fake source */
    assert_int_equal(run(fx, "inventory", &a, &qerr, (const char *)NULL), SK_EBUSY);
    fx->src.live_rc = SK_EBUSY;
    assert_int_equal(run(fx, "orders", &a, &qerr, (const char *)NULL), SK_EBUSY);
    fx->src.live_rc = 0;
}

static void test_filters_and_order(void **state)
{
    fixture *fx = *state;
    add_order(fx->db, "o-3", "c-1", "placed", 300, "2026-01-02T00:00:00.000000Z", 1);
    add_order(fx->db, "o-1", "c-1", "confirmed", 100, "2026-01-03T00:00:00.000000Z", 1);
    add_order(fx->db, "o-2", "c-2", "placed", 200, "2026-01-03T00:00:00.000000Z", 1);
    add_order(fx->db, "o-4", "c-2", "cancelled", 400, "2026-01-01T00:00:00.000000Z", 0);
    set_next_position(fx->db, 43);
    json_t *a;
    qry_error qerr;
    assert_int_equal(run(fx, "orders", &a, &qerr, (const char *)NULL), 0);
    json_t *items = json_object_get(a, "items");
    assert_int_equal(json_array_size(items), 4);
    /* newest placed_at first, then order_id */
    const char *want[] = {"o-1", "o-2", "o-3", "o-4"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(items, i), "order_id")), want[i]);
    json_t *first = json_array_get(items, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "total_cents")), 100);
    assert_true(json_is_null(json_object_get(first, "cancel_reason")));
    assert_true(json_is_null(json_object_get(a, "next_cursor")));
    assert_int_equal(json_integer_value(json_object_get(a, "position")), 42);
    json_decref(a);

    assert_int_equal(run(fx, "orders", &a, &qerr, "status=placed", (const char *)NULL), 0);
    items = json_object_get(a, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "order_id")),
                        "o-2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 1), "order_id")),
                        "o-3");
    json_decref(a);

    assert_int_equal(
        run(fx, "orders", &a, &qerr, "customer_id=c-2", "status=cancelled", (const char *)NULL), 0);
    items = json_object_get(a, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "order_id")),
                        "o-4");
    json_decref(a);
}

static void test_order_lines_are_json(void **state)
{
    fixture *fx = *state;
    add_order(fx->db, "o-9", "c-1", "placed", 500, "2026-01-02T00:00:00.000000Z", 3);
    json_t *a;
    qry_error qerr;
    assert_int_equal(run(fx, "order", &a, &qerr, "order_id=o-9", (const char *)NULL), 0);
    json_t *items = json_object_get(a, "items");
    assert_int_equal(json_array_size(items), 1);
    json_t *lines = json_object_get(json_array_get(items, 0), "lines");
    assert_true(json_is_array(lines));
    assert_int_equal(json_array_size(lines), 3);
    json_t *l2 = json_array_get(lines, 2);
    assert_string_equal(json_string_value(json_object_get(l2, "sku")), "sku-2");
    assert_int_equal(json_integer_value(json_object_get(l2, "quantity")), 3);
    assert_int_equal(json_integer_value(json_object_get(l2, "unit_price_cents")), 300);
    json_decref(a);
}

static void test_empty_match(void **state)
{
    fixture *fx = *state;
    add_order(fx->db, "o-1", "c-1", "placed", 100, "2026-01-02T00:00:00.000000Z", 0);
    json_t *a;
    qry_error qerr;
    assert_int_equal(run(fx, "orders", &a, &qerr, "customer_id=nobody", (const char *)NULL), 0);
    assert_true(json_is_array(json_object_get(a, "items")));
    assert_int_equal(json_array_size(json_object_get(a, "items")), 0);
    assert_true(json_is_null(json_object_get(a, "next_cursor")));
    json_decref(a);
    assert_int_equal(run(fx, "order", &a, &qerr, "order_id=o-404", (const char *)NULL), 0);
    assert_int_equal(json_array_size(json_object_get(a, "items")), 0);
    json_decref(a);
}

/* 1,000 orders over 100 distinct times (ties broken by order_id). */
static void add_many(sqlite3 *db, int count, const char *prefix)
{
    exec_ok(db, "BEGIN");
    for (int i = 0; i < count; i++) {
        char id[32], at[40];
        snprintf(id, sizeof id, "%s-%04d", prefix, i);
        snprintf(at, sizeof at, "2026-01-01T00:%02d:%02d.000000Z", (i % 100) / 60, (i % 100) % 60);
        add_order(db, id, i % 2 ? "c-odd" : "c-even", i % 3 ? "placed" : "confirmed", i, at, 0);
    }
    exec_ok(db, "COMMIT");
}

/* Pages through `orders` with limit 7; calls between(n) after each page. Returns the ids in
 * the order received (caller frees the array). */
static json_t *page_all(fixture *fx, void (*between)(fixture *, int))
{
    json_t *seen = json_array();
    char cursor_arg[QRY_CURSOR_MAX + 16] = "";
    for (int page = 0;; page++) {
        json_t *a;
        qry_error qerr;
        int rc = cursor_arg[0]
                     ? run(fx, "orders", &a, &qerr, "limit=7", cursor_arg, (const char *)NULL)
                     : run(fx, "orders", &a, &qerr, "limit=7", (const char *)NULL);
        if (rc)
            fail_msg("page %d: %d %s", page, rc, qerr.err.message);
        json_t *items = json_object_get(a, "items");
        assert_true(json_array_size(items) <= 7);
        size_t i;
        json_t *row;
        json_array_foreach(items, i, row)
        {
            json_array_append_new(
                seen, json_pack("[s,s]", json_string_value(json_object_get(row, "placed_at")),
                                json_string_value(json_object_get(row, "order_id"))));
        }
        json_t *next = json_object_get(a, "next_cursor");
        if (json_is_null(next)) {
            json_decref(a);
            break;
        }
        assert_int_equal(json_array_size(items), 7);
        snprintf(cursor_arg, sizeof cursor_arg, "cursor=%s", json_string_value(next));
        json_decref(a);
        if (between)
            between(fx, page);
    }
    return seen;
}

static void check_sorted_unique(json_t *seen)
{
    for (size_t i = 1; i < json_array_size(seen); i++) {
        json_t *p = json_array_get(seen, i - 1), *c = json_array_get(seen, i);
        int t = strcmp(json_string_value(json_array_get(p, 0)),
                       json_string_value(json_array_get(c, 0)));
        /* placed_at DESC, order_id ASC, strictly: no row twice */
        assert_true(t > 0 || (t == 0 && strcmp(json_string_value(json_array_get(p, 1)),
                                               json_string_value(json_array_get(c, 1))) < 0));
    }
}

static bool contains(json_t *seen, const char *id)
{
    for (size_t i = 0; i < json_array_size(seen); i++)
        if (strcmp(json_string_value(json_array_get(json_array_get(seen, i), 1)), id) == 0)
            return true;
    return false;
}

static void test_paging_every_row_once(void **state)
{
    fixture *fx = *state;
    add_many(fx->db, 1000, "o");
    json_t *seen = page_all(fx, NULL);
    assert_int_equal(json_array_size(seen), 1000);
    check_sorted_unique(seen);
    json_decref(seen);
}

static void insert_between(fixture *fx, int page)
{
    /* rows before, among and after the pages already read */
    char id[32];
    snprintf(id, sizeof id, "new-%04d-a", page);
    add_order(fx->db, id, "c-new", "placed", 1, "2026-01-01T00:01:39.000000Z", 0); /* newest */
    snprintf(id, sizeof id, "new-%04d-b", page);
    add_order(fx->db, id, "c-new", "placed", 1, "2026-01-01T00:00:50.000000Z", 0); /* middle */
    snprintf(id, sizeof id, "new-%04d-c", page);
    add_order(fx->db, id, "c-new", "placed", 1, "2025-12-31T00:00:00.000000Z", 0); /* oldest */
}

static void test_paging_under_inserts(void **state)
{
    fixture *fx = *state;
    add_many(fx->db, 1000, "o");
    json_t *seen = page_all(fx, insert_between);
    check_sorted_unique(seen); /* no duplicates, still in order */
    for (int i = 0; i < 1000; i++) {
        char id[32];
        snprintf(id, sizeof id, "o-%04d", i);
        assert_true(contains(seen, id)); /* every row that existed before: once */
    }
    assert_true(contains(seen, "new-0000-c")); /* older than every page read so far */
    json_decref(seen);
}

static char *first_cursor(fixture *fx, const char *extra)
{
    json_t *a;
    qry_error qerr;
    int rc = extra ? run(fx, "orders", &a, &qerr, "limit=2", extra, (const char *)NULL)
                   : run(fx, "orders", &a, &qerr, "limit=2", (const char *)NULL);
    assert_int_equal(rc, 0);
    json_t *next = json_object_get(a, "next_cursor");
    assert_true(json_is_string(next));
    char *c = strdup(json_string_value(next));
    json_decref(a);
    return c;
}

static void test_cursors_are_checked(void **state)
{
    fixture *fx = *state;
    add_many(fx->db, 30, "o");
    char *c = first_cursor(fx, (const char *)NULL);
    char arg[QRY_CURSOR_MAX + 16];

    /* the genuine one continues, also with another limit */
    snprintf(arg, sizeof arg, "cursor=%s", c);
    json_t *a;
    qry_error qerr;
    assert_int_equal(run(fx, "orders", &a, &qerr, arg, "limit=3", (const char *)NULL), 0);
    assert_int_equal(json_array_size(json_object_get(a, "items")), 3);
    json_decref(a);

    /* each character changed in turn */
    size_t len = strlen(c);
    for (size_t i = 0; i < len; i++) {
        char t[QRY_CURSOR_MAX + 1];
        memcpy(t, c, len + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        snprintf(arg, sizeof arg, "cursor=%s", t);
        expect_bad(fx, "orders", "cursor", arg, (const char *)NULL);
    }
    /* truncated, extended, garbage, empty, too long */
    snprintf(arg, sizeof arg, "cursor=%.*s", (int)len - 1, c);
    expect_bad(fx, "orders", "cursor", arg, (const char *)NULL);
    snprintf(arg, sizeof arg, "cursor=%sAA", c);
    expect_bad(fx, "orders", "cursor", arg, (const char *)NULL);
    expect_bad(fx, "orders", "cursor", "cursor=not a cursor!", (const char *)NULL);
    expect_bad(fx, "orders", "cursor", "cursor=", (const char *)NULL);
    expect_bad(fx, "orders", "cursor", "cursor=eyJxIjoib3JkZXJzIiwiayI6WyJ4IiwieSJdfQ",
               (const char *)NULL);
    char big[QRY_CURSOR_MAX + 20] = "cursor=";
    memset(big + 7, 'A', QRY_CURSOR_MAX + 4);
    big[QRY_CURSOR_MAX + 11] = 0;
    expect_bad(fx, "orders", "cursor", big, (const char *)NULL);

    /* forged: a well-formed payload signed with another secret */
    uint8_t other[QRY_SECRET_SIZE] = {1, 2, 3};
    json_t *keys = json_pack("[s,s]", "2026-01-01T00:00:00.000000Z", "o-0000");
    char *forged = NULL;
    char fp[QRY_FINGERPRINT_HEX + 1] = "00000000000000000000000000000000";
    assert_int_equal(qry_cursor_encode(other, "orders", fp, keys, &forged), 0);
    json_decref(keys);
    snprintf(arg, sizeof arg, "cursor=%s", forged);
    expect_bad(fx, "orders", "cursor", arg, (const char *)NULL);
    free(forged);

    /* another query's cursor, and the same query's with other filter values */
    snprintf(arg, sizeof arg, "cursor=%s", c);
    expect_bad(fx, "order", "cursor", "order_id=o-0001", arg, (const char *)NULL);
    expect_bad(fx, "customer_credit", "cursor", arg, (const char *)NULL);
    expect_bad(fx, "orders", "cursor", "status=placed", arg, (const char *)NULL);
    free(c);
    c = first_cursor(fx, "status=placed");
    snprintf(arg, sizeof arg, "cursor=%s", c);
    expect_bad(fx, "orders", "cursor", arg, (const char *)NULL);
    expect_bad(fx, "orders", "cursor", "status=confirmed", arg, (const char *)NULL);
    assert_int_equal(run(fx, "orders", &a, &qerr, "status=placed", arg, (const char *)NULL), 0);
    json_decref(a);
    free(c);
}

static void test_cursor_decoder_never_crashes(void **state)
{
    (void)state;
    uint8_t secret[QRY_SECRET_SIZE] = {9};
    srand(7);
    for (int i = 0; i < 20000; i++) {
        char text[64];
        size_t len = (size_t)(rand() % 63);
        for (size_t j = 0; j < len; j++)
            text[j] = (char)(rand() % 2 ? "AZaz09-_"[rand() % 8] : rand() % 255 + 1);
        text[len] = 0;
        json_t *keys = NULL;
        sk_error err;
        int rc = qry_cursor_decode(secret, text, "orders", "f", 2, &keys, &err);
        assert_int_equal(rc, SK_EBADINPUT);
        assert_string_equal(err.field, "cursor");
        assert_null(keys);
    }
    /* signed payloads of the wrong shape pass the MAC and still fail cleanly */
    const char *bad[] = {"",
                         "[]",
                         "{}",
                         "{\"q\":\"orders\",\"f\":\"f\",\"k\":[1]}",
                         "{\"q\":\"orders\",\"f\":\"f\",\"k\":[null,1]}",
                         "{\"q\":\"orders\",\"f\":\"f\",\"k\":[{},1]}",
                         "{\"q\":\"orders\",\"f\":\"g\",\"k\":[1,2]}",
                         "{\"q\":\"orders\",\"q\":\"orders\",\"f\":\"f\",\"k\":[1,2]}",
                         "nul\0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *text = NULL;
        assert_int_equal(qry_cursor_seal(secret, bad[i], strlen(bad[i]), &text), 0);
        json_t *keys = NULL;
        sk_error err;
        assert_int_equal(qry_cursor_decode(secret, text, "orders", "f", 2, &keys, &err),
                         SK_EBADINPUT);
        free(text);
    }
    char *text = NULL;
    const char *good = "{\"q\":\"orders\",\"f\":\"f\",\"k\":[\"x\",2.5]}";
    assert_int_equal(qry_cursor_seal(secret, good, strlen(good), &text), 0);
    json_t *keys = NULL;
    assert_int_equal(qry_cursor_decode(secret, text, "orders", "f", 2, &keys, NULL), 0);
    assert_int_equal(json_array_size(keys), 2);
    json_decref(keys);
    free(text);
}

static void test_bad_parameters(void **state)
{
    fixture *fx = *state;
    expect_bad(fx, "orders", "colour", "colour=red", (const char *)NULL);
    expect_bad(fx, "orders", "status", "status=placed", "status=placed", (const char *)NULL);
    expect_bad(fx, "orders", "limit", "limit=5", "limit=5", (const char *)NULL);
    expect_bad(fx, "orders", "status", "status=shipped", (const char *)NULL);
    expect_bad(fx, "order", "order_id", (const char *)NULL);
    expect_bad(fx, "order", "order_id", "limit=5", (const char *)NULL);
    expect_bad(fx, "orders", "limit", "limit=0", (const char *)NULL);
    expect_bad(fx, "orders", "limit", "limit=1001", (const char *)NULL);
    expect_bad(fx, "orders", "limit", "limit=ten", (const char *)NULL);
    expect_bad(fx, "orders", "limit", "limit=", (const char *)NULL);
    expect_bad(fx, "orders", "limit", "limit= 5", (const char *)NULL);
    expect_bad(fx, "orders", "limit", "limit=5x", (const char *)NULL);
    expect_bad(fx, "orders", "limit", "limit=99999999999999999999999", (const char *)NULL);
    expect_bad(fx, "orders", "timeout_ms", "timeout_ms=30001", (const char *)NULL);
    expect_bad(fx, "orders", "timeout_ms", "timeout_ms=-1", (const char *)NULL);
    expect_bad(fx, "orders", "min_position", "min_position=-1", (const char *)NULL);
    expect_bad(fx, "orders", "min_position", "min_position=1.5", (const char *)NULL);
    expect_bad(fx, "orders", "customer_id", "customer_id=\xff\xfe", (const char *)NULL);
    /* a parameter without a value */
    qry_param p = {"status", NULL};
    json_t *a = NULL;
    qry_error qerr;
    assert_int_equal(qry_run(fx->q, "orders", &p, 1, &a, &qerr), SK_EBADINPUT);
    assert_string_equal(qerr.err.field, "status");
    /* the limits themselves are fine */
    assert_int_equal(run(fx, "orders", &a, &qerr, "limit=1", (const char *)NULL), 0);
    json_decref(a);
    assert_int_equal(run(fx, "orders", &a, &qerr, "limit=1000", "timeout_ms=0", (const char *)NULL),
                     0);
    json_decref(a);
    assert_int_equal(fx->src.wait_calls, 0); /* no min_position: no wait */
}

static void test_min_position(void **state)
{
    fixture *fx = *state;
    json_t *a;
    qry_error qerr;
    fx->src.wait_rc = -ETIMEDOUT;
    fx->src.applied = 41;
    assert_int_equal(
        run(fx, "orders", &a, &qerr, "min_position=77", "timeout_ms=250", (const char *)NULL),
        -ETIMEDOUT);
    assert_null(a);
    assert_int_equal(qerr.position, 41);
    assert_int_equal(fx->src.wait_position, 77);
    assert_int_equal(fx->src.wait_timeout_ms, 250);
    assert_non_null(strstr(qerr.err.message, "41"));

    /* reached: the answer's position is the database's (next_position 100 - 1) */
    fx->src.wait_rc = 0;
    fx->src.applied = 99;
    assert_int_equal(run(fx, "orders", &a, &qerr, "min_position=77", (const char *)NULL), 0);
    assert_int_equal(fx->src.wait_timeout_ms, QRY_TIMEOUT_MS_DEFAULT);
    assert_int_equal(json_integer_value(json_object_get(a, "position")), 99);
    json_decref(a);

    /* the source says yes but the database is behind: never answered as if it were not */
    assert_int_equal(run(fx, "orders", &a, &qerr, "min_position=150", (const char *)NULL),
                     -ETIMEDOUT);
    assert_int_equal(qerr.position, 99);
}

static void test_generation_swap(void **state)
{
    fixture *fx = *state;
    json_t *a;
    qry_error qerr;
    add_order(fx->db, "old", "c", "placed", 1, "2026-01-01T00:00:00.000000Z", 0);
    assert_int_equal(run(fx, "orders", &a, &qerr, (const char *)NULL), 0);
    assert_int_equal(json_array_size(json_object_get(a, "items")), 1);
    json_decref(a);
    char path[4096];
    snprintf(path, sizeof path, "%s/orders.2.db", fx->dir);
    sqlite3 *db2 = make_orders_db(path);
    add_order(db2, "new-1", "c", "placed", 1, "2026-01-01T00:00:00.000000Z", 0);
    add_order(db2, "new-2", "c", "placed", 1, "2026-01-01T00:00:00.000000Z", 0);
    snprintf(fx->src.path, sizeof fx->src.path, "%s", path);
    fx->src.generation = 2;
    assert_int_equal(run(fx, "orders", &a, &qerr, (const char *)NULL), 0);
    assert_int_equal(json_array_size(json_object_get(a, "items")), 2);
    json_decref(a);
    sqlite3_close(db2);
}

/* The pooled connections cannot write, even with SQL the declarations never saw. */
static void test_connections_are_read_only(void **state)
{
    fixture *fx = *state;
    qry_conn *c = NULL;
    sk_error err;
    size_t m = 0;
    while (strcmp(fx->q->models[m].name, "orders") != 0)
        m++;
    assert_int_equal(qry_pool_get(fx->q, m, &c, &err), 0);
    static const char insert[] = "INSERT INTO orders (order_id, customer_id, status, "
                                 "total_cents, placed_at) VALUES ('x', 'c', 'placed', 1, 't')";
    const char *writes[] = {insert,
                            "DELETE FROM orders",
                            "DROP TABLE orders",
                            "PRAGMA query_only=0",
                            "ATTACH '/tmp/skald-qry-attach.db' AS a",
                            "CREATE TABLE x (a)"};
    for (size_t i = 0; i < sizeof writes / sizeof *writes; i++)
        assert_int_not_equal(sqlite3_exec(c->db, writes[i], NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(access("/tmp/skald-qry-attach.db", F_OK), -1);
    qry_pool_put(fx->q, m, c, true);
    /* the model is untouched and the connection still reads */
    json_t *a;
    qry_error qerr;
    add_order(fx->db, "o-1", "c-1", "placed", 100, "2026-01-02T00:00:00.000000Z", 0);
    assert_int_equal(run(fx, "orders", &a, &qerr, (const char *)NULL), 0);
    assert_int_equal(json_array_size(json_object_get(a, "items")), 1);
    json_decref(a);
}

/* Several threads page through the same model at once, sharing the connection pool. */
static void *pager(void *arg)
{
    fixture *fx = arg;
    for (int i = 0; i < 5; i++) {
        json_t *seen = page_all(fx, NULL);
        size_t n = json_array_size(seen);
        json_decref(seen);
        if (n != 300)
            return (void *)1; /* checked on the main thread: cmocka is not thread-safe */
    }
    return NULL;
}

static void test_threads_share_the_pool(void **state)
{
    fixture *fx = *state;
    add_many(fx->db, 300, "o");
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, pager, fx), 0);
    for (int i = 0; i < 4; i++) {
        void *bad = NULL;
        pthread_join(t[i], &bad);
        assert_null(bad);
    }
}

/* ---------------------------------------------------------------------------------------
 * Declarations that must not load.
 */

static const char tables[] = "-- @tables\n"
                             "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL);\n";

static int load_one(const char *text, sk_error *err)
{
    char dir[] = "/tmp/skald-qry-decl-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], secret[128];
    snprintf(path, sizeof path, "%s/m.sql", dir);
    snprintf(secret, sizeof secret, "%s/key", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    fake_source fs = {0};
    qry_source src = {&fs, fake_live_db, fake_wait};
    qry_engine *q = NULL;
    int rc = qry_engine_open(dir, &src, secret, &q, err);
    qry_engine_close(q);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}

static void test_bad_declarations(void **state)
{
    (void)state;
    static const struct {
        const char *query, *why;
    } cases[] = {
        {"-- @query w\n-- @order id ASC\nINSERT INTO t VALUES ('a', 1) RETURNING id\n", "read"},
        {"-- @query w\n-- @order id ASC\nDELETE FROM t RETURNING id\n", "read"},
        {"-- @query w\n-- @order id ASC\nUPDATE t SET n = 1 RETURNING id\n", "read"},
        {"-- @query w\n-- @order id ASC\nPRAGMA writable_schema\n", "read"},
        {"-- @query w\n-- @order id ASC\nATTACH 'x.db' AS x\n", "read"},
        {"-- @query w\n-- @order id ASC\nSELECT id FROM t; DELETE FROM t\n", "statement"},
        {"-- @query w\n-- @order id ASC\nSELECT id FROM t WHERE n = :n\n", ":n"},
        {"-- @query w\n-- @param n integer optional\n-- @order id ASC\nSELECT id FROM t\n",
         "never uses"},
        {"-- @query w\n-- @order n ASC\nSELECT id FROM t\n", "not a result column"},
        {"-- @query w\n-- @order id ASC\n-- @json x\nSELECT id FROM t\n", "not a result column"},
        {"-- @query w\nSELECT id FROM t\n", "@order"},
        {"-- @query w\n-- @order id SIDEWAYS\nSELECT id FROM t\n", "ASC or DESC"},
        {"-- @query w\n-- @order id ASC\nSELECT id FROM t WHERE id = ?\n", "positional"},
        {"-- @query w\n-- @param limit integer optional\n-- @order id ASC\nSELECT id FROM t\n",
         "reserved"},
        {"-- @query w\n-- @param s txt optional\n-- @order id ASC\nSELECT id FROM t\n", "type"},
        {"-- @query w\n-- @param n integer optional in(1,x)\n-- @order id ASC\n"
         "SELECT id FROM t WHERE n = :n\n",
         "not an integer"},
        {"-- @query w\n-- @order id ASC\nSELECT id, n AS id FROM t\n", "two result columns"},
        {"-- @query w\n-- @order id ASC\nSELECT id FROM nowhere\n", "prepare"},
        {"-- @query w\n-- @order id ASC\nSELECT id FROM t\n-- @param n integer optional\n",
         "after the SELECT"},
        {"-- @query w\n-- @order id ASC\nSELECT id FROM t\n-- @query w\n-- @order id ASC\n"
         "SELECT id FROM t\n",
         "twice"},
        {"-- @query w\n-- @order id ASC\n-- @prams x\nSELECT id FROM t\n", "unknown section"},
        {"-- @query w\n-- @order id ASC\n\n", "no SELECT"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s", tables, cases[i].query);
        sk_error err;
        int rc = load_one(text, &err);
        if (rc != SK_ESCHEMA || !strstr(err.message, cases[i].why) || !strstr(err.message, "m.sql"))
            fail_msg("case %zu: rc %d, message '%s' (wanted '%s')", i, rc, err.message,
                     cases[i].why);
        if (strstr(cases[i].query, "@query w") && !strstr(err.message, "query 'w'") &&
            strcmp(cases[i].why, "unknown section") != 0)
            fail_msg("case %zu: '%s' does not name the query", i, err.message);
    }
    /* and a good one with every directive loads */
    char text[1024];
    snprintf(text, sizeof text,
             "%s-- @on Whatever\nINSERT INTO t VALUES (:id, 1);\n"
             "-- @query good\n-- a comment\n-- @param n integer optional in(1, 2,3)\n"
             "-- @param s text required\n-- @order n DESC, id\n-- @json j\n"
             "SELECT id, n, '[1]' AS j FROM t -- trailing comment\n"
             "WHERE (:n IS NULL OR n = :n) AND id >= :s;\n",
             tables);
    sk_error err;
    int rc = load_one(text, &err);
    if (rc)
        fail_msg("good declaration refused: %s", err.message);
}

/* A query with an integer parameter, run for real. */
static void test_integer_parameter(void **state)
{
    (void)state;
    char dir[] = "/tmp/skald-qry-int-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], secret[128], db_path[128];
    snprintf(path, sizeof path, "%s/orders.sql", dir);
    snprintf(secret, sizeof secret, "%s/key", dir);
    snprintf(db_path, sizeof db_path, "%s/orders.7.db", dir);
    FILE *f = fopen(path, "w");
    fputs("-- @tables\nCREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, r REAL);\n"
          "-- @query big\n-- @param min integer required\n-- @order n DESC, id ASC\n"
          "SELECT id, n, r FROM t WHERE n >= :min\n",
          f);
    fclose(f);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    exec_ok(db, "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, r REAL);"
                "CREATE TABLE _skald_projection (key TEXT PRIMARY KEY, value);"
                "INSERT INTO _skald_projection VALUES ('next_position', 0);"
                "INSERT INTO t VALUES ('a', 5, 0.1), ('b', 10, NULL), ('c', 10, 2.5), "
                "('d', -3, 1e300)");
    fake_source fs = {.generation = 7};
    snprintf(fs.path, sizeof fs.path, "%s", db_path);
    qry_source src = {&fs, fake_live_db, fake_wait};
    qry_engine *q = NULL;
    sk_error err;
    assert_int_equal(qry_engine_open(dir, &src, secret, &q, &err), 0);
    qry_param p[2] = {{"min", "5"}, {"limit", "2"}};
    json_t *a = NULL;
    qry_error qerr;
    assert_int_equal(qry_run(q, "big", p, 2, &a, &qerr), 0);
    json_t *items = json_object_get(a, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "id")), "b");
    assert_true(json_is_null(json_object_get(json_array_get(items, 0), "r")));
    assert_true(json_real_value(json_object_get(json_array_get(items, 1), "r")) == 2.5);
    assert_int_equal(json_integer_value(json_object_get(a, "position")), -1);
    char cursor[QRY_CURSOR_MAX];
    snprintf(cursor, sizeof cursor, "%s", json_string_value(json_object_get(a, "next_cursor")));
    json_decref(a);
    /* "05" is the same value as "5": the cursor continues */
    qry_param p2[2] = {{"min", "05"}, {"cursor", cursor}};
    assert_int_equal(qry_run(q, "big", p2, 2, &a, &qerr), 0);
    items = json_object_get(a, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "id")), "a");
    json_decref(a);
    qry_param bad[1] = {{"min", "five"}};
    assert_int_equal(qry_run(q, "big", bad, 1, &a, &qerr), SK_EBADINPUT);
    assert_string_equal(qerr.err.field, "min");
    qry_engine_close(q);
    sqlite3_close(db);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test_setup_teardown(test_load_samples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_query_and_no_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_lines_are_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging_every_row_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging_under_inserts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursors_are_checked, setup, teardown),
        cmocka_unit_test(test_cursor_decoder_never_crashes),
        cmocka_unit_test_setup_teardown(test_bad_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connections_are_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_share_the_pool, setup, teardown),
        cmocka_unit_test(test_bad_declarations),
        cmocka_unit_test(test_integer_parameter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
