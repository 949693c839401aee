/*
 * seed.c -- fills a data directory with a believable history of the order domain, so that
 * a fresh checkout has something to inspect (tools/run) and the later layers have events
 * to project, query and replay.
 *
 * The sample plays the OrderFulfillment saga by hand. It registers and stocks the
 * products, opens the customers with a credit limit, then places orders: OrderPlaced,
 * StockReserved per line, PaymentAuthorized, StockCommitted per line and OrderConfirmed;
 * or, when a line lacks stock, the credit would be exceeded or a step "times out", the
 * compensations in reverse order (StockReleased, PaymentRefunded) and OrderCancelled with
 * the reason. Products running low are restocked now and then. The domain rules hold at
 * every step: available stock (restocked - committed - reserved) never goes negative and
 * a customer's used credit (authorized - refunded) never exceeds the limit.
 *
 * Being the log's only writer, the seed keeps every product and customer in memory and
 * knows each stream's version, so every append carries its exact expected version and
 * many appends can be in flight at once: with fsync=always, one append at a time would
 * cost one fdatasync per event, while the appender's group commit makes a few thousand
 * events a matter of seconds. The appender keeps queue order, so log positions tell the
 * story in the order it is written here.
 *
 * Determinism: every choice (names, prices, limits, which customer orders what, which
 * orders fail) comes from one splitmix64 generator seeded by opt->seed. Only event ids,
 * command ids, correlation ids and the wall clock differ between two runs of one seed.
 * occurred_at is a simulated clock spread over the SEED_HISTORY_DAYS before now, so that
 * read models by day have more than one day to show.
 */
#include "service/service.h"
#include "commands/commands.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SEED_HISTORY_DAYS     30
#define SEED_IN_FLIGHT_MAX    4096 /* appends queued and not yet completed */
#define SEED_ORDER_LINES_MAX  4
#define SEED_LOW_STOCK        5  /* available units below which a delivery may come */
#define SEED_TIMEOUT_PERCENT  2  /* orders whose commit step "times out" after payment */
#define SEED_RESTOCK_PERCENT  30 /* chance that a product running low gets a delivery */
#define SEED_TRACEPARENT_SIZE 56 /* "00-" 32 hex "-" 16 hex "-01" and the NUL */
#define US_PER_S              1000000LL

_Static_assert(SEED_IN_FLIGHT_MAX < 65536, "stays below the log's default queue bound");

/* ---------------------------------------------------------------------------------------
 * The random source: splitmix64, small and the same on every platform.
 */
typedef struct sample_rng {
    uint64_t state;
} sample_rng;

static uint64_t rng_next(sample_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]; the modulo bias is far below anything a sample can show. */
static int64_t rng_range(sample_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static int rng_percent(sample_rng *r, int percent)
{
    return rng_range(r, 1, 100) <= percent;
}

/* A version-4 UUID made from the generator, so ids repeat with the seed. */
static void rng_uuid_text(sample_rng *r, char out[EV_UUID_TEXT_SIZE])
{
    ev_uuid id;
    uint64_t hi = rng_next(r), lo = rng_next(r);
    memcpy(id.bytes, &hi, 8);
    memcpy(id.bytes + 8, &lo, 8);
    id.bytes[6] = (uint8_t)((id.bytes[6] & 0x0f) | 0x40);
    id.bytes[8] = (uint8_t)((id.bytes[8] & 0x3f) | 0x80);
    ev_uuid_format(&id, out);
}

/* ---------------------------------------------------------------------------------------
 * The domain as the seed tracks it.
 */
typedef struct product {
    char sku[16];
    char name[64];
    int64_t price_cents;
    int64_t on_hand;  /* restocked - committed */
    int64_t reserved; /* held for orders not yet confirmed or cancelled */
    uint64_t version;
} product;

typedef struct customer {
    char id[EV_UUID_TEXT_SIZE];
    char name[64];
    int64_t limit_cents;
    int64_t used_cents; /* authorized - refunded */
    uint64_t version;
} customer;

typedef struct order_line {
    product *product;
    int64_t quantity;
} order_line;

typedef struct order {
    char id[EV_UUID_TEXT_SIZE];
    customer *customer;
    order_line lines[SEED_ORDER_LINES_MAX];
    uint32_t line_count;
    uint32_t reserved_count; /* lines[0..reserved_count) hold a reservation */
    int64_t total_cents;
    uint64_t version;
    ev_uuid correlation_id; /* the business process: one per order */
} order;

typedef struct seed_ctx {
    const svc_seed_options *opt;
    sk_error *err;
    sample_rng rng;
    ev_registry *reg;
    store_log *log;
    store_window *window; /* every append goes through it; destroyed after the log closes */
    ev_buf payload;       /* reused by every append */
    int64_t clock_us;     /* the simulated occurred_at of the next event */
    int64_t end_us;       /* the simulated clock never passes this (the real now) */
    uint64_t appended;    /* appends queued so far */
    product products[SVC_SEED_PRODUCTS];
    customer customers[SVC_SEED_CUSTOMERS];
    svc_seed_report report;
} seed_ctx;

/* ---------------------------------------------------------------------------------------
 * Appending one event.
 */

/* Moves the simulated clock forward by a random step in [lo_us, hi_us], never past now. */
static void clock_advance(seed_ctx *s, int64_t lo_us, int64_t hi_us)
{
    s->clock_us += rng_range(&s->rng, lo_us, hi_us);
    if (s->clock_us > s->end_us)
        s->clock_us = s->end_us;
}

/* W3C trace context: the trace is the business process, the span this one append. */
static void format_traceparent(const ev_uuid *trace, const ev_uuid *span,
                               char out[SEED_TRACEPARENT_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    memcpy(p, "00-", 3);
    p += 3;
    for (int i = 0; i < 16; i++) {
        *p++ = hex[trace->bytes[i] >> 4];
        *p++ = hex[trace->bytes[i] & 15];
    }
    *p++ = '-';
    /* The UUID's last 8 bytes: random in both v4 and v7 (v7 starts with the time). */
    for (int i = 8; i < 16; i++) {
        *p++ = hex[span->bytes[i] >> 4];
        *p++ = hex[span->bytes[i] & 15];
    }
    memcpy(p, "-01", 4);
}

/* Queues one append through the window (which waits while SEED_IN_FLIGHT_MAX are queued). */
static int queue_append(seed_ctx *s, const char *stream, uint64_t expected, const ev_event *ev)
{
    int rc = store_window_append(s->window, ev_str_of(stream), expected, ev, 1, s->err);
    if (rc)
        return rc;
    s->appended++;
    s->report.events++;
    return 0;
}

/*
 * Encodes payload (a JSON object; this call takes the reference) as the newest schema of
 * type and queues it on stream at `expected`, the stream's version before this event.
 */
static int emit(seed_ctx *s, const char *stream, uint64_t expected, const char *type,
                json_t *payload, const ev_uuid *correlation_id)
{
    uint32_t schema_id = 0;
    if (!payload)
        return -ENOMEM;
    s->payload.size = 0;
    int rc = ev_payload_from_json(s->reg, type, payload, &s->payload, &schema_id, s->err);
    json_decref(payload);
    if (rc)
        return rc;

    ev_event ev;
    char traceparent[SEED_TRACEPARENT_SIZE];
    memset(&ev, 0, sizeof ev);
    ev.type = ev_str_of(type);
    ev.occurred_at = s->clock_us;
    ev_uuid_generate(&ev.command_id);
    ev.correlation_id = *correlation_id;
    ev.schema_id = schema_id;
    format_traceparent(correlation_id, &ev.command_id, traceparent);
    ev.metadata[0] = (ev_metadata_entry){ev_str_of(EV_META_PRINCIPAL), ev_str_of("seed")};
    ev.metadata[1] = (ev_metadata_entry){ev_str_of(EV_META_TRACEPARENT), ev_str_of(traceparent)};
    ev.metadata_count = 2;
    ev.payload = s->payload.data;
    ev.payload_size = (uint32_t)s->payload.size;
    return queue_append(s, stream, expected, &ev);
}

/* ---------------------------------------------------------------------------------------
 * Streams. Each helper appends one event and moves the tracked version with it.
 */
static int emit_product(seed_ctx *s, product *p, const char *type, json_t *payload,
                        const ev_uuid *correlation_id)
{
    char stream[EV_STREAM_ID_MAX + 1];
    snprintf(stream, sizeof stream, "product-%s", p->sku);
    int rc = emit(s, stream, p->version, type, payload, correlation_id);
    if (rc == 0)
        p->version++;
    return rc;
}

static int emit_customer(seed_ctx *s, customer *c, const char *type, json_t *payload,
                         const ev_uuid *correlation_id)
{
    char stream[EV_STREAM_ID_MAX + 1];
    snprintf(stream, sizeof stream, "customer-%s", c->id);
    int rc = emit(s, stream, c->version, type, payload, correlation_id);
    if (rc == 0)
        c->version++;
    return rc;
}

static int emit_order(seed_ctx *s, order *o, const char *type, json_t *payload)
{
    char stream[EV_STREAM_ID_MAX + 1];
    snprintf(stream, sizeof stream, "order-%s", o->id);
    int rc = emit(s, stream, o->version, type, payload, &o->correlation_id);
    if (rc == 0)
        o->version++;
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Catalog and customers.
 */
static const char *const MATERIALS[] = {"Oak",    "Steel",  "Linen", "Ceramic", "Walnut",
                                        "Copper", "Bamboo", "Wool",  "Glass",   "Leather"};
static const char *const ITEMS[] = {"Desk Lamp",    "Side Table", "Throw Blanket", "Coffee Mug",
                                    "Bookshelf",    "Cushion",    "Wall Clock",    "Vase",
                                    "Serving Tray", "Stool"};
static const char *const FIRST_NAMES[] = {
    "Ada",  "Bjorn", "Chiara", "Dmitri", "Elif",  "Farah", "Gunnar", "Hana",  "Ines", "Jonas",
    "Kofi", "Lena",  "Mateo",  "Nadia",  "Oskar", "Priya", "Quinn",  "Ragna", "Sven", "Tove"};
static const char *const LAST_NAMES[] = {"Andersen", "Baptiste",  "Costa",  "Dahl",     "Eriksen",
                                         "Fischer",  "Garcia",    "Haugen", "Ibrahim",  "Jensen",
                                         "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor",
                                         "Petrov",   "Rossi",     "Sato",   "Tanaka",   "Varga"};
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(SVC_SEED_PRODUCTS <= COUNT_OF(MATERIALS) * COUNT_OF(ITEMS),
               "every product gets a distinct name");

static int restock(seed_ctx *s, product *p, int64_t quantity, const ev_uuid *correlation_id)
{
    int rc = emit_product(s, p, "ProductRestocked",
                          json_pack("{s:s, s:I}", "sku", p->sku, "quantity", (json_int_t)quantity),
                          correlation_id);
    if (rc == 0) {
        p->on_hand += quantity;
        s->report.restocks++;
    }
    return rc;
}

static int seed_product(seed_ctx *s, uint32_t index)
{
    product *p = &s->products[index];
    ev_uuid correlation_id;
    ev_uuid_generate(&correlation_id);
    /* Distinct names: the material cycles fastest, the item shifts with every cycle. */
    size_t material = index % COUNT_OF(MATERIALS);
    size_t item = (index / COUNT_OF(MATERIALS) + 3 * material) % COUNT_OF(ITEMS);
    snprintf(p->sku, sizeof p->sku, "SKU-%04u", index + 1);
    snprintf(p->name, sizeof p->name, "%s %s", MATERIALS[material], ITEMS[item]);
    p->price_cents = rng_range(&s->rng, 5, 250) * 100 - 1;
    clock_advance(s, 1 * US_PER_S, 30 * US_PER_S);
    int rc = emit_product(s, p, "ProductRegistered",
                          json_pack("{s:s, s:s, s:I}", "sku", p->sku, "name", p->name,
                                    "price_cents", (json_int_t)p->price_cents),
                          &correlation_id);
    if (rc == 0) {
        clock_advance(s, 1 * US_PER_S, 30 * US_PER_S);
        rc = restock(s, p, rng_range(&s->rng, 20, 200), &correlation_id);
    }
    if (rc == 0)
        s->report.products++;
    return rc;
}

static int seed_customer(seed_ctx *s, uint32_t index)
{
    customer *c = &s->customers[index];
    ev_uuid correlation_id;
    ev_uuid_generate(&correlation_id);
    rng_uuid_text(&s->rng, c->id);
    snprintf(c->name, sizeof c->name, "%s %s",
             FIRST_NAMES[rng_range(&s->rng, 0, COUNT_OF(FIRST_NAMES) - 1)],
             LAST_NAMES[rng_range(&s->rng, 0, COUNT_OF(LAST_NAMES) - 1)]);
    /* Credit grows with the run's length: confirmed orders keep their payments, so with a
     * fixed limit a long run would end with every customer exhausted. */
    int64_t scale = (s->opt->orders - 1) / 1000 + 1;
    c->limit_cents = rng_range(&s->rng, 20, 200) * 10000 * scale;
    clock_advance(s, 1 * US_PER_S, 60 * US_PER_S);
    int rc = emit_customer(s, c, "CustomerOpened",
                           json_pack("{s:s, s:s, s:I}", "customer_id", c->id, "name", c->name,
                                     "credit_limit_cents", (json_int_t)c->limit_cents),
                           &correlation_id);
    if (rc == 0)
        s->report.customers++;
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Orders.
 */

/* A tenth of the catalog sells half of the units, as shops tend to. */
static product *pick_product(seed_ctx *s)
{
    int64_t popular = SVC_SEED_PRODUCTS / 10;
    int64_t index = rng_percent(&s->rng, 50) ? rng_range(&s->rng, 0, popular - 1)
                                             : rng_range(&s->rng, 0, SVC_SEED_PRODUCTS - 1);
    return &s->products[index];
}

static int order_has(const order *o, const product *p)
{
    for (uint32_t i = 0; i < o->line_count; i++)
        if (o->lines[i].product == p)
            return 1;
    return 0;
}

/* Chooses the customer and 1..SEED_ORDER_LINES_MAX lines of distinct products. */
static void plan_order(seed_ctx *s, order *o)
{
    static const int line_weights[SEED_ORDER_LINES_MAX] = {45, 30, 15, 10};
    memset(o, 0, sizeof *o);
    rng_uuid_text(&s->rng, o->id);
    ev_uuid_generate(&o->correlation_id);
    o->customer = &s->customers[rng_range(&s->rng, 0, SVC_SEED_CUSTOMERS - 1)];
    uint32_t wanted = 1;
    for (int64_t roll = rng_range(&s->rng, 1, 100); wanted < SEED_ORDER_LINES_MAX; wanted++) {
        roll -= line_weights[wanted - 1];
        if (roll <= 0)
            break;
    }
    for (int tries = 0; o->line_count < wanted && tries < 8 * SEED_ORDER_LINES_MAX; tries++) {
        product *p = pick_product(s);
        if (order_has(o, p))
            continue;
        int64_t quantity =
            rng_percent(&s->rng, 5) ? rng_range(&s->rng, 4, 10) : rng_range(&s->rng, 1, 3);
        o->lines[o->line_count++] = (order_line){p, quantity};
        o->total_cents += quantity * p->price_cents;
    }
}

static int place_order(seed_ctx *s, order *o)
{
    json_t *lines = json_array();
    for (uint32_t i = 0; lines && i < o->line_count; i++) {
        const order_line *l = &o->lines[i];
        if (json_array_append_new(lines,
                                  json_pack("{s:s, s:I, s:I}", "sku", l->product->sku, "quantity",
                                            (json_int_t)l->quantity, "unit_price_cents",
                                            (json_int_t)l->product->price_cents)) != 0) {
            json_decref(lines);
            return -ENOMEM;
        }
    }
    /* "o" hands the lines reference to the new object (and drops it if packing fails). */
    json_t *payload =
        json_pack("{s:s, s:s, s:o, s:I}", "order_id", o->id, "customer_id", o->customer->id,
                  "lines", lines, "total_cents", (json_int_t)o->total_cents);
    int rc = emit_order(s, o, "OrderPlaced", payload);
    if (rc == 0)
        s->report.orders++;
    return rc;
}

static json_t *stock_payload(const order *o, const order_line *l)
{
    return json_pack("{s:s, s:s, s:I}", "sku", l->product->sku, "order_id", o->id, "quantity",
                     (json_int_t)l->quantity);
}

/* Reserves the lines in order; stops at the first that lacks stock. *all_out says whether
 * every line is reserved. */
static int reserve_lines(seed_ctx *s, order *o, int *all_out)
{
    *all_out = 0;
    for (uint32_t i = 0; i < o->line_count; i++) {
        order_line *l = &o->lines[i];
        clock_advance(s, 5000, 200000);
        if (l->product->on_hand - l->product->reserved < l->quantity)
            return 0;
        int rc =
            emit_product(s, l->product, "StockReserved", stock_payload(o, l), &o->correlation_id);
        if (rc)
            return rc;
        l->product->reserved += l->quantity;
        o->reserved_count++;
    }
    *all_out = 1;
    return 0;
}

static json_t *payment_payload(const order *o)
{
    return json_pack("{s:s, s:s, s:I}", "customer_id", o->customer->id, "order_id", o->id,
                     "amount_cents", (json_int_t)o->total_cents);
}

static int authorize_payment(seed_ctx *s, order *o)
{
    clock_advance(s, 20000, 800000);
    int rc =
        emit_customer(s, o->customer, "PaymentAuthorized", payment_payload(o), &o->correlation_id);
    if (rc == 0)
        o->customer->used_cents += o->total_cents;
    return rc;
}

/* The compensations of the steps done, newest first, then the cancellation. */
static int cancel_order(seed_ctx *s, order *o, const char *reason, int refund)
{
    int rc = 0;
    clock_advance(s, 100000, 5 * US_PER_S);
    if (refund) {
        rc = emit_customer(s, o->customer, "PaymentRefunded", payment_payload(o),
                           &o->correlation_id);
        if (rc)
            return rc;
        o->customer->used_cents -= o->total_cents;
    }
    while (o->reserved_count > 0) {
        order_line *l = &o->lines[o->reserved_count - 1];
        rc = emit_product(s, l->product, "StockReleased", stock_payload(o, l), &o->correlation_id);
        if (rc)
            return rc;
        l->product->reserved -= l->quantity;
        o->reserved_count--;
    }
    rc = emit_order(s, o, "OrderCancelled",
                    json_pack("{s:s, s:s}", "order_id", o->id, "reason", reason));
    if (rc == 0)
        s->report.cancelled++;
    return rc;
}

static int confirm_order(seed_ctx *s, order *o)
{
    clock_advance(s, 5000, 200000);
    for (uint32_t i = 0; i < o->line_count; i++) {
        order_line *l = &o->lines[i];
        int rc =
            emit_product(s, l->product, "StockCommitted", stock_payload(o, l), &o->correlation_id);
        if (rc)
            return rc;
        l->product->reserved -= l->quantity;
        l->product->on_hand -= l->quantity;
    }
    o->reserved_count = 0;
    int rc = emit_order(s, o, "OrderConfirmed", json_pack("{s:s}", "order_id", o->id));
    if (rc == 0)
        s->report.confirmed++;
    return rc;
}

/* Some products that ran low get a delivery; some stay short for a while. */
static int restock_low(seed_ctx *s, const order *o)
{
    for (uint32_t i = 0; i < o->line_count; i++) {
        product *p = o->lines[i].product;
        if (p->on_hand - p->reserved >= SEED_LOW_STOCK ||
            !rng_percent(&s->rng, SEED_RESTOCK_PERCENT))
            continue;
        ev_uuid correlation_id;
        ev_uuid_generate(&correlation_id);
        clock_advance(s, 60 * US_PER_S, 600 * US_PER_S);
        int rc = restock(s, p, rng_range(&s->rng, 50, 300), &correlation_id);
        if (rc)
            return rc;
    }
    return 0;
}

/* One order, start to end, as the OrderFulfillment saga would run it. */
static int run_order(seed_ctx *s, int64_t gap_us)
{
    order o;
    int all_reserved = 0;
    clock_advance(s, 0, 2 * gap_us);
    plan_order(s, &o);
    int rc = place_order(s, &o);
    if (rc == 0)
        rc = reserve_lines(s, &o, &all_reserved);
    if (rc)
        return rc;
    if (!all_reserved)
        rc = cancel_order(s, &o, "insufficient_stock", 0);
    else if (o.customer->limit_cents - o.customer->used_cents < o.total_cents)
        rc = cancel_order(s, &o, "credit_limit_exceeded", 0);
    else if ((rc = authorize_payment(s, &o)) == 0)
        rc = rng_percent(&s->rng, SEED_TIMEOUT_PERCENT) ? cancel_order(s, &o, "step_timeout", 1)
                                                        : confirm_order(s, &o);
    if (rc == 0)
        rc = restock_low(s, &o);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Opening, the run, closing.
 */
static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

static int make_dir(const char *path, sk_error *err)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    int rc = -errno;
    return sk_error_set(err, rc, "data", "cannot create the data directory %s: %s", path,
                        strerror(-rc));
}

static int open_data(seed_ctx *s)
{
    const svc_seed_options *opt = s->opt;
    char log_dir[PATH_MAX];
    const char *schemas = opt->schemas_dir;
    if (!schemas)
        schemas = getenv("SKALD_SCHEMAS");
    char shipped[4096];
    if (!schemas || !*schemas) {
        int rc = ev_shipped_path("events/schemas", shipped, sizeof shipped);
        if (rc)
            return sk_error_set(s->err, rc, "schemas",
                                "no events/schemas folder at %s (installed?); pass --schemas",
                                shipped);
        schemas = shipped;
    }
    int rc = make_dir(opt->data_dir, s->err);
    if (rc)
        return rc;
    if (snprintf(log_dir, sizeof log_dir, "%s/log", opt->data_dir) >= (int)sizeof log_dir)
        return sk_error_set(s->err, -ENAMETOOLONG, "data", "data directory path is too long");
    rc = ev_registry_open(schemas, opt->data_dir, &s->reg, s->err);
    if (rc)
        return rc;
    store_config cfg;
    store_config_init(&cfg, log_dir);
    cfg.fsync_mode = STORE_FSYNC_ALWAYS;
    return store_log_open(&cfg, &s->log, s->err);
}

/* Refuses to write the sample twice into one log: its product streams would conflict. */
static int check_fresh(seed_ctx *s)
{
    char stream[EV_STREAM_ID_MAX + 1];
    snprintf(stream, sizeof stream, "product-SKU-%04u", 1u);
    if (store_log_stream_version(s->log, ev_str_of(stream)) == 0)
        return 0;
    return sk_error_set(s->err, SK_ECONFLICT, "",
                        "the log already holds the sample (stream %s exists); seed an empty "
                        "data directory, or pass --if-empty to leave a seeded log alone",
                        stream);
}

static int append_sample(seed_ctx *s)
{
    int rc = store_window_create(s->log, SEED_IN_FLIGHT_MAX, NULL, NULL, &s->window);
    if (rc)
        return rc;
    int64_t span_us = (int64_t)SEED_HISTORY_DAYS * 86400 * US_PER_S;
    s->end_us = ev_now_us();
    s->clock_us = s->end_us - span_us;
    for (uint32_t i = 0; rc == 0 && i < SVC_SEED_PRODUCTS; i++)
        rc = seed_product(s, i);
    for (uint32_t i = 0; rc == 0 && i < SVC_SEED_CUSTOMERS; i++)
        rc = seed_customer(s, i);
    /* Orders fill most of what is left of the history at an even average pace; the rest
     * is for the steps inside the orders and the deliveries between them. */
    int64_t gap_us = (s->end_us - s->clock_us) / 10 * 9 / (int64_t)(s->opt->orders + 1);
    for (uint32_t i = 0; rc == 0 && i < s->opt->orders; i++)
        rc = run_order(s, gap_us);
    int drain_rc = store_window_drain(s->window);
    store_window_stats st;
    store_window_get_stats(s->window, &st);
    if (rc == 0)
        rc = drain_rc;
    if (rc != 0 && rc == st.first_error) /* an append failed after it was queued */
        sk_error_set(s->err, rc, "", "append %" PRIu64 " of %" PRIu64 " failed: %s",
                     st.first_failed_index + 1, s->appended, sk_strerror(rc));
    return rc;
}

void svc_seed_options_init(svc_seed_options *opt, const char *data_dir)
{
    memset(opt, 0, sizeof *opt);
    opt->data_dir = data_dir;
    opt->orders = 1000;
    opt->seed = 42;
}

static int seed_with(seed_ctx *s)
{
    int rc = open_data(s);
    if (rc)
        return rc;
    s->report.first_position = store_log_head(s->log);
    if (s->opt->if_empty && s->report.first_position > 0) {
        s->report.skipped = 1;
        s->report.next_position = s->report.first_position;
        return 0;
    }
    rc = check_fresh(s);
    if (rc == 0)
        rc = append_sample(s);
    return rc;
}

/* The seed writes no keyed command, but the idempotency store's start-up scan would not
 * know that: opening it here, once, leaves its journal's mark at the head, so the first
 * `skald serve` after a seed reads none of it (the scan's cost moves to the seed). */
static int mark_idempotency(const char *data_dir, store_log *log, sk_error *err)
{
    cmd_idem_config ic;
    cmd_idem_config_init(&ic, data_dir);
    ic.log = log;
    cmd_idem *idem = NULL;
    int rc = cmd_idem_open(&ic, &idem, err);
    int close_rc = cmd_idem_close(idem);
    return rc ? rc : close_rc;
}

int svc_seed_run(const svc_seed_options *opt, svc_seed_report *out, sk_error *err)
{
    if (!opt->data_dir || !*opt->data_dir)
        return sk_error_set(err, SK_EBADINPUT, "data", "a data directory is required");
    if (opt->orders == 0 || opt->orders > SVC_SEED_ORDERS_MAX)
        return sk_error_set(err, SK_EBADINPUT, "orders", "orders must be 1..%u",
                            SVC_SEED_ORDERS_MAX);
    seed_ctx *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->opt = opt;
    s->err = err;
    s->rng.state = opt->seed;
    int64_t start_us = monotonic_us();
    int rc = seed_with(s);
    if (rc == 0 && s->log)
        rc = mark_idempotency(opt->data_dir, s->log, err);
    if (s->log) {
        s->report.next_position = store_log_head(s->log);
        int close_rc = store_log_close(s->log);
        if (rc == 0 && close_rc != 0)
            rc = sk_error_set(err, close_rc, "", "closing the log failed: %s",
                              sk_strerror(close_rc));
    }
    s->report.elapsed_us = monotonic_us() - start_us;
    if (rc == 0)
        *out = s->report;
    ev_registry_destroy(s->reg);
    ev_buf_free(&s->payload);
    store_window_destroy(s->window); /* closing the log completed every append */
    free(s);
    return rc;
}
