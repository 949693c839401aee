/*
 * sample_log.c -- a log of the sample domain (order fulfillment) for the projection
 * benchmarks, made cheaply enough that building a million events takes seconds.
 *
 * The history is the shape of what `skald seed` makes through the deciders and the saga
 * (service/seed.c; the seed itself is too slow for a million events), played by hand:
 * the sample domain's events without the sagas' own journal streams: products
 * registered and restocked, customers opened, then orders one after the other, each an
 * OrderPlaced of 1-5 lines of distinct products, a StockReserved per line, then
 *   - most:      PaymentAuthorized, StockCommitted per line, OrderConfirmed;
 *   - some:      StockReleased per line, OrderCancelled (insufficient_stock);
 *   - a few:     PaymentAuthorized, PaymentRefunded, StockReleased per line,
 *                OrderCancelled (step_timeout);
 * and now and then a ProductRestocked of a product. Every event type any sample model
 * has a statement for occurs, and every statement succeeds (ids are unique where a table
 * has them as a key, products and customers exist before they are used).
 *
 * Payloads are encoded once per type and shape with ev_payload_from_json_text, with
 * placeholder ids of the real ids' width; the encoder copies strings verbatim into the
 * Avro binary, so each placeholder is found there once and an event's ids are written
 * over it in place (an Avro string is its length then its bytes: same width, same
 * length prefix). Numbers are fixed per shape (a quantity of 2 at 500 cents a unit), so
 * no varint changes width. Every choice comes from a splitmix64 generator with a fixed
 * seed: two runs of one N emit the same events (ids aside, which the log generates).
 * occurred_at is a simulated clock over the 30 days before now, so sales_by_day has
 * days to count.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define LINES_MAX        5
#define SLOTS_MAX        (2 + LINES_MAX)
#define LINE_QUANTITY    2
#define LINE_PRICE_CENTS 500
#define RESTOCK_QUANTITY 100
#define HISTORY_DAYS     30
#define US_PER_DAY       (86400LL * 1000000LL)

/* Placeholders and the ids written over them: the same width each. */
#define ORDER_PH        "O########" /* "O" and 8 digits */
#define CUSTOMER_PH     "C######"   /* "C" and 6 digits */
#define SKU_WIDTH       7           /* "S" and 6 digits; placeholder "S<a..e>#####" */
#define ORDER_DIGITS    8
#define CUSTOMER_DIGITS 6
#define SKU_DIGITS      6

_Static_assert(sizeof ORDER_PH - 1 == 1 + ORDER_DIGITS, "order placeholder width");
_Static_assert(sizeof CUSTOMER_PH - 1 == 1 + CUSTOMER_DIGITS, "customer placeholder width");
_Static_assert(SKU_WIDTH == 1 + SKU_DIGITS, "sku width");
_Static_assert(LINES_MAX <= 26, "one placeholder letter per line");

typedef enum slot_kind { SLOT_ORDER, SLOT_CUSTOMER, SLOT_SKU } slot_kind;

/* One payload shape, encoded once; its ids are rewritten per event. */
typedef struct tmpl {
    const char *type;
    ev_buf buf;
    uint32_t schema_id;
    uint32_t nslots;
    uint32_t offset[SLOTS_MAX]; /* of each placeholder in buf */
    slot_kind kind[SLOTS_MAX];
    uint32_t line[SLOTS_MAX]; /* SLOT_SKU: which line's product */
    int order_lines;          /* OrderPlaced: its skus are the order's lines */
} tmpl;

enum {
    T_PRODUCT_REGISTERED,
    T_PRODUCT_RESTOCKED,
    T_CUSTOMER_OPENED,
    T_STOCK_RESERVED,
    T_STOCK_COMMITTED,
    T_STOCK_RELEASED,
    T_ORDER_CONFIRMED,
    T_CANCELLED_STOCK,
    T_CANCELLED_TIMEOUT,
    T_ORDER_PLACED,                                    /* + lines - 1 */
    T_PAYMENT_AUTHORIZED = T_ORDER_PLACED + LINES_MAX, /* + lines - 1 */
    T_PAYMENT_REFUNDED = T_PAYMENT_AUTHORIZED + LINES_MAX,
    T_COUNT = T_PAYMENT_REFUNDED + LINES_MAX,
};

struct bench_sample {
    const ev_registry *events;
    uint64_t events_max;
    uint32_t products, customers;
    tmpl t[T_COUNT];
    /* Per run. */
    uint64_t rng;
    int64_t clock_us, step_us;
    uint64_t emitted;
    bench_sample_emit emit;
    void *ctx;
    bench_sample_counts counts;
};

static uint64_t rng_next(bench_sample *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rng_below(bench_sample *s, uint32_t n)
{
    return (uint32_t)(rng_next(s) % n);
}

static void sku_placeholder(uint32_t line, char out[SKU_WIDTH + 1])
{
    snprintf(out, SKU_WIDTH + 1, "S%c#####", 'a' + (int)line);
}

/* Finds the one occurrence of ph in t's payload and records it as a slot. */
static int add_slot(tmpl *t, const char *ph, slot_kind kind, uint32_t line)
{
    size_t n = strlen(ph);
    const uint8_t *at = memmem(t->buf.data, t->buf.size, ph, n);
    if (!at || memmem(at + 1, t->buf.size - (size_t)(at + 1 - t->buf.data), ph, n))
        return SK_EBADINPUT;
    BENCH_ASSERT(t->nslots < SLOTS_MAX);
    t->offset[t->nslots] = (uint32_t)(at - t->buf.data);
    t->kind[t->nslots] = kind;
    t->line[t->nslots] = line;
    t->nslots++;
    return 0;
}

/* Encodes json as type and finds its placeholders: order, customer, and `lines` skus. */
static int make_tmpl(bench_sample *s, tmpl *t, const char *type, const char *json, int order,
                     int customer, uint32_t lines)
{
    sk_error err;
    sk_error_clear(&err);
    t->type = type;
    int rc = ev_payload_from_json_text(s->events, type, json, strlen(json), &t->buf, &t->schema_id,
                                       &err);
    if (rc < 0) {
        fprintf(stderr, "skald-bench: encoding a %s: %s\n", type, err.message);
        return rc;
    }
    if (order)
        rc = add_slot(t, ORDER_PH, SLOT_ORDER, 0);
    if (rc == 0 && customer)
        rc = add_slot(t, CUSTOMER_PH, SLOT_CUSTOMER, 0);
    for (uint32_t i = 0; rc == 0 && i < lines; i++) {
        char ph[SKU_WIDTH + 1];
        sku_placeholder(i, ph);
        rc = add_slot(t, ph, SLOT_SKU, i);
    }
    if (rc < 0)
        fprintf(stderr, "skald-bench: a %s payload does not hold its ids verbatim\n", type);
    return rc;
}

static int make_order_tmpls(bench_sample *s, uint32_t lines)
{
    char json[1024], ph[SKU_WIDTH + 1];
    int n =
        snprintf(json, sizeof json,
                 "{\"order_id\":\"" ORDER_PH "\",\"customer_id\":\"" CUSTOMER_PH "\",\"lines\":[");
    for (uint32_t i = 0; i < lines; i++) {
        sku_placeholder(i, ph);
        n += snprintf(json + n, sizeof json - (size_t)n,
                      "%s{\"sku\":\"%s\",\"quantity\":%d,\"unit_price_cents\":%d}", i ? "," : "",
                      ph, LINE_QUANTITY, LINE_PRICE_CENTS);
    }
    long total = (long)lines * LINE_QUANTITY * LINE_PRICE_CENTS;
    snprintf(json + n, sizeof json - (size_t)n, "],\"total_cents\":%ld}", total);
    int rc = make_tmpl(s, &s->t[T_ORDER_PLACED + lines - 1], "OrderPlaced", json, 1, 1, lines);
    s->t[T_ORDER_PLACED + lines - 1].order_lines = 1;
    snprintf(json, sizeof json,
             "{\"customer_id\":\"" CUSTOMER_PH "\",\"order_id\":\"" ORDER_PH
             "\",\"amount_cents\":%ld}",
             total);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_PAYMENT_AUTHORIZED + lines - 1], "PaymentAuthorized", json, 1, 1,
                       0);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_PAYMENT_REFUNDED + lines - 1], "PaymentRefunded", json, 1, 1, 0);
    return rc;
}

static int make_tmpls(bench_sample *s)
{
    char stock[256];
    snprintf(stock, sizeof stock,
             "{\"sku\":\"Sa#####\",\"order_id\":\"" ORDER_PH "\",\"quantity\":%d}", LINE_QUANTITY);
    char restock[128];
    snprintf(restock, sizeof restock, "{\"sku\":\"Sa#####\",\"quantity\":%d}", RESTOCK_QUANTITY);
    static const char *const registered =
        "{\"sku\":\"Sa#####\",\"name\":\"Oak Desk Lamp\",\"price_cents\":500}";
    static const char *const opened =
        "{\"customer_id\":\"" CUSTOMER_PH "\",\"name\":\"Ada Andersen\",\"credit_limit_cents\":"
        "1000000000}";
    int rc = make_tmpl(s, &s->t[T_PRODUCT_REGISTERED], "ProductRegistered", registered, 0, 0, 1);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_PRODUCT_RESTOCKED], "ProductRestocked", restock, 0, 0, 1);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_CUSTOMER_OPENED], "CustomerOpened", opened, 0, 1, 0);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_STOCK_RESERVED], "StockReserved", stock, 1, 0, 1);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_STOCK_COMMITTED], "StockCommitted", stock, 1, 0, 1);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_STOCK_RELEASED], "StockReleased", stock, 1, 0, 1);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_ORDER_CONFIRMED], "OrderConfirmed",
                       "{\"order_id\":\"" ORDER_PH "\"}", 1, 0, 0);
    if (rc == 0)
        rc =
            make_tmpl(s, &s->t[T_CANCELLED_STOCK], "OrderCancelled",
                      "{\"order_id\":\"" ORDER_PH "\",\"reason\":\"insufficient_stock\"}", 1, 0, 0);
    if (rc == 0)
        rc = make_tmpl(s, &s->t[T_CANCELLED_TIMEOUT], "OrderCancelled",
                       "{\"order_id\":\"" ORDER_PH "\",\"reason\":\"step_timeout\"}", 1, 0, 0);
    for (uint32_t lines = 1; rc == 0 && lines <= LINES_MAX; lines++)
        rc = make_order_tmpls(s, lines);
    return rc;
}

int bench_sample_create(const ev_registry *events, uint64_t events_max, bench_sample **out)
{
    BENCH_ASSERT(events_max > 0);
    bench_sample *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->events = events;
    s->events_max = events_max;
    /* About one product and one customer per thousand events (seed: 100 and 50 for
     * 1,000 orders), at least 10 each, so orders share products as a shop's do. */
    uint64_t per = events_max / 1000;
    s->products = (uint32_t)(per < 10 ? 10 : per > 100000 ? 100000 : per);
    s->customers = s->products;
    int rc = make_tmpls(s);
    if (rc < 0) {
        bench_sample_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

void bench_sample_destroy(bench_sample *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < T_COUNT; i++)
        ev_buf_free(&s->t[i].buf);
    free(s);
}

/* Writes value as `digits` decimal digits at dst (the leading letter stays). */
static void put_digits(char *dst, int digits, uint64_t value)
{
    for (int i = digits - 1; i >= 0; i--) {
        dst[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

/* An order as the run plays it. */
typedef struct order_plan {
    uint64_t id;
    uint32_t customer;
    uint32_t lines;
    uint32_t sku[LINES_MAX];
} order_plan;

/* Emits one event of template ti on the stream of (kind, id); 1 once events_max are out. */
static int emit(bench_sample *s, int ti, slot_kind kind, uint64_t id, const order_plan *o,
                uint32_t sku)
{
    if (s->emitted == s->events_max)
        return 1;
    tmpl *t = &s->t[ti];
    for (uint32_t i = 0; i < t->nslots; i++) {
        char *dst = (char *)t->buf.data + t->offset[i];
        if (t->kind[i] == SLOT_ORDER)
            put_digits(dst + 1, ORDER_DIGITS, o ? o->id : id);
        else if (t->kind[i] == SLOT_CUSTOMER)
            put_digits(dst + 1, CUSTOMER_DIGITS, o ? o->customer : id);
        else {
            dst[0] = 'S';
            put_digits(dst + 1, SKU_DIGITS, t->order_lines && o ? o->sku[t->line[i]] : sku);
        }
    }
    char stream[32];
    int n = kind == SLOT_ORDER      ? snprintf(stream, sizeof stream, "order-O%08" PRIu64, id)
            : kind == SLOT_CUSTOMER ? snprintf(stream, sizeof stream, "customer-C%06" PRIu64, id)
                                    : snprintf(stream, sizeof stream, "product-S%06" PRIu64, id);
    ev_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = ev_str_of(t->type);
    ev.schema_id = t->schema_id;
    ev.occurred_at = s->clock_us;
    ev.payload = t->buf.data;
    ev.payload_size = (uint32_t)t->buf.size;
    s->clock_us += s->step_us;
    s->emitted++;
    int rc = s->emit(s->ctx, (ev_str){stream, (uint32_t)n}, &ev);
    return rc < 0 ? rc : s->emitted == s->events_max;
}

/* The stream-level helpers: product, customer and order events. */
#define EMIT(call)                                                                                 \
    do {                                                                                           \
        int emit_rc_ = (call);                                                                     \
        if (emit_rc_ != 0)                                                                         \
            return emit_rc_;                                                                       \
    } while (0)

static int setup_catalog(bench_sample *s)
{
    for (uint32_t p = 0; p < s->products; p++) {
        s->counts.products++; /* counted before: an emit that answers 1 did emit */
        EMIT(emit(s, T_PRODUCT_REGISTERED, SLOT_SKU, p, NULL, p));
        EMIT(emit(s, T_PRODUCT_RESTOCKED, SLOT_SKU, p, NULL, p));
    }
    for (uint32_t c = 0; c < s->customers; c++) {
        s->counts.customers++;
        EMIT(emit(s, T_CUSTOMER_OPENED, SLOT_CUSTOMER, c, NULL, 0));
    }
    return 0;
}

static void plan(bench_sample *s, order_plan *o, uint64_t id)
{
    static const uint32_t weights[LINES_MAX] = {40, 25, 15, 12, 8}; /* percent */
    memset(o, 0, sizeof *o);
    o->id = id;
    o->customer = rng_below(s, s->customers);
    uint32_t roll = rng_below(s, 100);
    o->lines = 1;
    for (uint32_t acc = weights[0]; roll >= acc && o->lines < LINES_MAX; o->lines++)
        acc += weights[o->lines];
    for (uint32_t i = 0; i < o->lines; i++) {
        uint32_t p;
        int dup;
        do { /* distinct products: the reservation key is (sku, order_id) */
            p = rng_below(s, s->products);
            dup = 0;
            for (uint32_t j = 0; j < i; j++)
                dup |= o->sku[j] == p;
        } while (dup);
        o->sku[i] = p;
    }
}

static int lines_event(bench_sample *s, int ti, const order_plan *o)
{
    for (uint32_t i = 0; i < o->lines; i++)
        EMIT(emit(s, ti, SLOT_SKU, o->sku[i], o, o->sku[i]));
    return 0;
}

/* One order, start to end: placed, reserved, then confirmed or cancelled. */
static int run_order(bench_sample *s, uint64_t id)
{
    order_plan o;
    plan(s, &o, id);
    uint32_t k = o.lines - 1, outcome = rng_below(s, 100);
    s->counts.orders++;
    EMIT(emit(s, T_ORDER_PLACED + (int)k, SLOT_ORDER, id, &o, 0));
    EMIT(lines_event(s, T_STOCK_RESERVED, &o));
    if (outcome < 8) { /* a line lacked stock: release, cancel */
        EMIT(lines_event(s, T_STOCK_RELEASED, &o));
        s->counts.cancelled++;
        EMIT(emit(s, T_CANCELLED_STOCK, SLOT_ORDER, id, &o, 0));
    } else {
        EMIT(emit(s, T_PAYMENT_AUTHORIZED + (int)k, SLOT_CUSTOMER, o.customer, &o, 0));
        if (outcome < 11) { /* a step timed out after payment: refund, release, cancel */
            EMIT(emit(s, T_PAYMENT_REFUNDED + (int)k, SLOT_CUSTOMER, o.customer, &o, 0));
            EMIT(lines_event(s, T_STOCK_RELEASED, &o));
            s->counts.cancelled++;
            EMIT(emit(s, T_CANCELLED_TIMEOUT, SLOT_ORDER, id, &o, 0));
        } else {
            EMIT(lines_event(s, T_STOCK_COMMITTED, &o));
            s->counts.confirmed++;
            EMIT(emit(s, T_ORDER_CONFIRMED, SLOT_ORDER, id, &o, 0));
        }
    }
    if (rng_below(s, 100) < 10) { /* a delivery now and then */
        uint32_t p = rng_below(s, s->products);
        EMIT(emit(s, T_PRODUCT_RESTOCKED, SLOT_SKU, p, NULL, p));
    }
    return 0;
}

int bench_sample_run(bench_sample *s, bench_sample_emit emit_cb, void *ctx,
                     bench_sample_counts *counts_out)
{
    s->rng = 42;
    s->emitted = 0;
    s->emit = emit_cb;
    s->ctx = ctx;
    memset(&s->counts, 0, sizeof s->counts);
    int64_t span_us = HISTORY_DAYS * US_PER_DAY;
    s->clock_us = ev_now_us() - span_us;
    s->step_us = span_us / (int64_t)s->events_max;
    int rc = setup_catalog(s);
    for (uint64_t id = 0; rc == 0; id++)
        rc = run_order(s, id);
    if (rc < 0)
        return rc;
    *counts_out = s->counts;
    return 0;
}
