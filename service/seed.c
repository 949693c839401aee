/*
 * seed.c -- fills a data directory with a believable history of the order domain, so that
 * a fresh checkout has something to inspect (tools/run) and the later layers have events
 * to project, query and replay.
 *
 * The seed is a client of the domain, not a second copy of its rules. It posts commands
 * through the same path as a keyed HTTP command (svc_send_keyed: the idempotency store,
 * the command bus, its deciders), and runs the OrderFulfillment saga in this process (the
 * sagas runtime of `skald serve`, service/saga_wiring.c): it registers and stocks the
 * products, opens the customers, then posts only PlaceOrder; the saga reserves, pays,
 * commits and confirms, or compensates and cancels, exactly as it would in production.
 * When an order was refused for lack of stock, its products get a delivery now and then.
 *
 * Pipelining with determinism. Orders run concurrently, except that an order waits until
 * every earlier order that shares its customer or one of its products has ended (its
 * saga reached a terminal state, and the deliveries it led to were answered). So every
 * business stream sees the same commands in the same order on every run of one seed, and
 * the deciders give the same outcomes: the per-stream history is a function of the seed,
 * while positions in the log interleave differently from run to run. Every random choice
 * (names, prices, limits, lines, deliveries) is drawn when an order is planned, in plan
 * order, never when an answer arrives. At most SEED_WINDOW orders are planned and not yet
 * ended; the longest chain (a popular product's orders) bounds the run's length.
 *
 * How the seed knows an order ended: it tails the log through a subscription (as every
 * consumer does) and reads the saga journal's SagaStateChanged events; the answers to
 * its own commands come back through an eventfd. Nothing polls. The seed ends when every
 * seeded saga has ended, so the first `skald serve` afterwards has none to resume.
 *
 * Timestamps are the real ones: events are stamped by the bus when they are appended, so
 * a seed's history spans the seconds it ran, not days.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEED_WINDOW           1024 /* orders planned and not yet ended */
#define SEED_ORDER_LINES_MAX  4
#define SEED_RESTOCK_PERCENT  30 /* chance that a product of a refused order gets a delivery */
#define SEED_TRACEPARENT_SIZE 56 /* "00-" 32 hex "-" 16 hex "-01" and the NUL */
#define SEED_STALL_US         (120 * 1000000LL) /* no progress this long: the seed fails */
#define SEED_SAGA_PREFIX      "$saga-OrderFulfillment-"
#define SEED_PRINCIPAL        "seed"
#define US_PER_S              1000000LL

_Static_assert((SEED_WINDOW & (SEED_WINDOW - 1)) == 0, "the window is a power of two");

/* Stays on in release builds: cheap, one condition, no side effects. */
#define SEED_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            sk_log(SK_LOG_FATAL, "seed", "assertion failed", "condition", #cond, SK_LOG_END);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

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
 * The sample. Products and customers are what an order waits on: each remembers the last
 * planned order that holds it.
 */
struct order;

typedef struct product {
    char sku[16];
    char name[64];
    int64_t price_cents;
    struct order *last; /* the newest planned order with a line of it, until it ends */
} product;

typedef struct customer {
    char id[EV_UUID_TEXT_SIZE];
    char name[64];
    int64_t limit_cents;
    struct order *last;
} customer;

typedef struct order_line {
    product *product;
    int64_t quantity;
    int64_t restock; /* a delivery if the order is refused for lack of stock; 0: none */
} order_line;

/* One planned order, in slot (number % SEED_WINDOW) of the window. */
typedef struct order {
    uint64_t number; /* plan order, from 0 */
    char id[EV_UUID_TEXT_SIZE];
    customer *customer;
    order_line lines[SEED_ORDER_LINES_MAX];
    uint32_t line_count;
    struct order *next[SEED_ORDER_LINES_MAX + 1]; /* the order after this one on each resource */
    uint32_t next_count;
    uint32_t waits;      /* earlier orders (per shared resource) not yet ended */
    uint32_t restocks;   /* deliveries posted and not yet answered */
    int state;           /* ORDER_* */
    struct order *hnext; /* in the table of posted orders, by id */
    ev_uuid correlation_id;
} order;

enum { ORDER_FREE = 0, ORDER_WAITING, ORDER_POSTED, ORDER_RESTOCKING };

/* A command's answer on its way from the completer thread to the seed's thread. */
typedef struct seed_call {
    struct seed_call *next;
    struct seed_ctx *s;
    order *order; /* NULL: a catalog command */
    char command[32];
    saga_answer answer;
} seed_call;

typedef struct seed_ctx {
    const svc_seed_options *opt;
    sk_error *err;
    sample_rng rng;
    svc_app app;        /* log, events, bus, idem, metrics, sagas: what `skald serve` opens */
    store_sub *sub;     /* the seed's own tail: which sagas ended */
    int evfd;           /* answers arrived */
    pthread_mutex_t mu; /* guards done */
    seed_call *done;
    uint32_t calls;   /* commands posted and not yet answered (seed thread) */
    uint64_t planned; /* orders planned so far */
    uint64_t ended;   /* orders whose saga and deliveries are done */
    uint64_t key_seq; /* the seed's idempotency keys: k/seed/<seed>/<n> */
    int64_t progress_us;
    int failed;
    order window[SEED_WINDOW];
    order *posted[SEED_WINDOW]; /* posted orders by id (chained): whose saga may end */
    product products[SVC_SEED_PRODUCTS];
    customer customers[SVC_SEED_CUSTOMERS];
    svc_seed_report report;
} seed_ctx;

static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------------------------------
 * Posting commands.
 */

/* W3C trace context: the trace is the business process, the span a random one. */
static void format_traceparent(const ev_uuid *trace, char out[SEED_TRACEPARENT_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    ev_uuid span;
    ev_uuid_generate(&span);
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
        *p++ = hex[span.bytes[i] >> 4];
        *p++ = hex[span.bytes[i] & 15];
    }
    memcpy(p, "-01", 4);
}

/* Runs on any thread: hands the answer to the seed's thread. */
static void call_done(void *op, const saga_answer *a)
{
    seed_call *c = op;
    seed_ctx *s = c->s;
    c->answer = *a;
    uint64_t one = 1;
    /* the signal goes out under the lock: once the seed's thread took c from the list,
     * this call no longer touches s, which may then be freed */
    pthread_mutex_lock(&s->mu);
    c->next = s->done;
    s->done = c;
    ssize_t w = write(s->evfd, &one, sizeof one);
    pthread_mutex_unlock(&s->mu);
    (void)w; /* a failed write leaves the counter readable anyway */
}

/* Posts one command (body is taken) for order o (NULL: the catalog), correlated with the
 * order's business process or with a fresh one. */
static int post(seed_ctx *s, order *o, const char *command, json_t *body)
{
    if (!body)
        return sk_error_set(s->err, -ENOMEM, "", "out of memory");
    seed_call *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(body);
        return sk_error_set(s->err, -ENOMEM, "", "out of memory");
    }
    c->s = s;
    c->order = o;
    snprintf(c->command, sizeof c->command, "%s", command);
    char key[96], traceparent[SEED_TRACEPARENT_SIZE];
    snprintf(key, sizeof key, "k/" SEED_PRINCIPAL "/%" PRIu64 "/%" PRIu64, s->opt->seed,
             s->key_seq++);
    saga_send sd = {.command = command,
                    .body = body,
                    .idem_key = key,
                    .expected_version = STORE_EXPECT_ANY,
                    .traceparent = traceparent};
    if (o)
        sd.correlation_id = o->correlation_id;
    else
        ev_uuid_generate(&sd.correlation_id);
    format_traceparent(&sd.correlation_id, traceparent);
    s->calls++;
    int rc = svc_send_keyed(&s->app, SEED_PRINCIPAL, &sd, call_done, c);
    json_decref(body);
    if (rc) {
        s->calls--;
        free(c);
        return sk_error_set(s->err, rc, "", "cannot post %s: %s", command, sk_strerror(rc));
    }
    return 0;
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

static json_t *restock_body(const product *p, int64_t quantity)
{
    return json_pack("{s:s, s:I}", "sku", p->sku, "quantity", (json_int_t)quantity);
}

static int seed_product(seed_ctx *s, uint32_t index)
{
    product *p = &s->products[index];
    /* Distinct names: the material cycles fastest, the item shifts with every cycle. */
    size_t material = index % COUNT_OF(MATERIALS);
    size_t item = (index / COUNT_OF(MATERIALS) + 3 * material) % COUNT_OF(ITEMS);
    snprintf(p->sku, sizeof p->sku, "SKU-%04u", index + 1);
    snprintf(p->name, sizeof p->name, "%s %s", MATERIALS[material], ITEMS[item]);
    p->price_cents = rng_range(&s->rng, 5, 250) * 100 - 1;
    int rc = post(s, NULL, "RegisterProduct",
                  json_pack("{s:s, s:s, s:I}", "sku", p->sku, "name", p->name, "price_cents",
                            (json_int_t)p->price_cents));
    if (rc == 0)
        rc = post(s, NULL, "RestockProduct", restock_body(p, rng_range(&s->rng, 20, 200)));
    if (rc == 0) {
        s->report.products++;
        s->report.restocks++;
    }
    return rc;
}

static int seed_customer(seed_ctx *s, uint32_t index)
{
    customer *c = &s->customers[index];
    rng_uuid_text(&s->rng, c->id);
    snprintf(c->name, sizeof c->name, "%s %s",
             FIRST_NAMES[rng_range(&s->rng, 0, COUNT_OF(FIRST_NAMES) - 1)],
             LAST_NAMES[rng_range(&s->rng, 0, COUNT_OF(LAST_NAMES) - 1)]);
    /* Credit grows with the run's length: confirmed orders keep their payments, so with a
     * fixed limit a long run would end with every customer exhausted. */
    int64_t scale = (s->opt->orders - 1) / 1000 + 1;
    c->limit_cents = rng_range(&s->rng, 20, 200) * 10000 * scale;
    int rc = post(s, NULL, "OpenCustomer",
                  json_pack("{s:s, s:s, s:I}", "customer_id", c->id, "name", c->name,
                            "credit_limit_cents", (json_int_t)c->limit_cents));
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

/* Chooses the customer, 1..SEED_ORDER_LINES_MAX lines of distinct products, and the
 * delivery each line's product gets if the order is refused for lack of stock. */
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
        int64_t restock =
            rng_percent(&s->rng, SEED_RESTOCK_PERCENT) ? rng_range(&s->rng, 50, 300) : 0;
        o->lines[o->line_count++] = (order_line){p, quantity, restock};
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
            lines = NULL;
        }
    }
    o->state = ORDER_POSTED;
    order **bucket = &s->posted[ev_hash_str(o->id) & (SEED_WINDOW - 1)];
    o->hnext = *bucket;
    *bucket = o;
    s->report.orders++;
    /* "o" hands the lines reference to the new object (and drops it if packing fails). */
    return post(s, o, "PlaceOrder",
                json_pack("{s:s, s:s, s:o}", "order_id", o->id, "customer_id", o->customer->id,
                          "lines", lines));
}

/* o waits behind *last (if it has not ended) and becomes the resource's last holder. */
static void queue_behind(order **last, order *o)
{
    if (*last) {
        order *before = *last;
        before->next[before->next_count++] = o;
        o->waits++;
    }
    *last = o;
}

/* Plans the next order into its window slot and posts it unless it waits. */
static int plan_next(seed_ctx *s)
{
    order *o = &s->window[s->planned & (SEED_WINDOW - 1)];
    SEED_ASSERT(o->state == ORDER_FREE);
    plan_order(s, o);
    o->number = s->planned++;
    o->state = ORDER_WAITING;
    queue_behind(&o->customer->last, o);
    for (uint32_t i = 0; i < o->line_count; i++)
        queue_behind(&o->lines[i].product->last, o);
    return o->waits ? 0 : place_order(s, o);
}

/* The order's saga and deliveries are done: the orders behind it may go. */
static int end_order(seed_ctx *s, order *o)
{
    if (o->customer->last == o)
        o->customer->last = NULL;
    for (uint32_t i = 0; i < o->line_count; i++)
        if (o->lines[i].product->last == o)
            o->lines[i].product->last = NULL;
    o->state = ORDER_FREE;
    s->ended++;
    s->progress_us = monotonic_us();
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < o->next_count; i++) {
        order *n = o->next[i];
        SEED_ASSERT(n->waits > 0);
        if (--n->waits == 0)
            rc = place_order(s, n);
    }
    return rc;
}

/* The saga of order o ended in state (terminal) for reason. */
static int saga_ended(seed_ctx *s, order *o, const char *state, const char *reason)
{
    if (strcmp(state, "completed") == 0) {
        s->report.confirmed++;
    } else if (strcmp(state, "compensated") == 0) {
        s->report.cancelled++;
    } else {
        return sk_error_set(s->err, SK_ECONFLICT, "", "the saga of order %s ended %s (%s)", o->id,
                            state, reason);
    }
    o->state = ORDER_RESTOCKING;
    if (strcmp(reason, "insufficient_stock") == 0)
        for (uint32_t i = 0; i < o->line_count; i++) {
            if (!o->lines[i].restock)
                continue;
            int rc = post(s, o, "RestockProduct",
                          restock_body(o->lines[i].product, o->lines[i].restock));
            if (rc)
                return rc;
            o->restocks++;
            s->report.restocks++;
        }
    return o->restocks ? 0 : end_order(s, o);
}

/* Takes the posted order whose id is id (len bytes) out of the table; NULL if none. */
static order *take_posted(seed_ctx *s, const char *id, size_t len)
{
    char key[EV_UUID_TEXT_SIZE];
    if (len >= sizeof key)
        return NULL;
    memcpy(key, id, len);
    key[len] = '\0';
    for (order **p = &s->posted[ev_hash_str(key) & (SEED_WINDOW - 1)]; *p; p = &(*p)->hnext)
        if (strcmp((*p)->id, key) == 0) {
            order *o = *p;
            *p = o->hnext;
            o->hnext = NULL;
            return o;
        }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * The seed's thread: answers and the tail.
 */
static int handle_answers(seed_ctx *s)
{
    uint64_t n;
    ssize_t r = read(s->evfd, &n, sizeof n);
    (void)r; /* nonblocking: EAGAIN when nothing came */
    pthread_mutex_lock(&s->mu);
    seed_call *c = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    int rc = 0;
    while (c) {
        seed_call *next = c->next;
        s->calls--;
        if (rc == 0 && c->answer.kind != SAGA_ANSWER_OK)
            rc = sk_error_set(s->err, SK_EREJECTED, "", "%s failed: %s %s", c->command,
                              c->answer.reason, c->answer.message);
        if (rc == 0 && c->order && strcmp(c->command, "RestockProduct") == 0 &&
            --c->order->restocks == 0)
            rc = end_order(s, c->order);
        free(c);
        c = next;
    }
    return rc;
}

/* One event of the tail: a terminal SagaStateChanged of a seeded order ends it. */
static int handle_event(seed_ctx *s, const ev_event *ev)
{
    size_t prefix = strlen(SEED_SAGA_PREFIX);
    if (!ev_str_eq(ev->type, "SagaStateChanged") || ev->stream_id.len <= prefix ||
        memcmp(ev->stream_id.ptr, SEED_SAGA_PREFIX, prefix) != 0)
        return 0;
    json_t *payload = NULL;
    int rc = ev_payload_to_json(s->app.events, ev->schema_id, ev->payload, ev->payload_size,
                                &payload, s->err);
    if (rc)
        return rc;
    const char *state = json_string_value(json_object_get(payload, "state"));
    const char *reason = json_string_value(json_object_get(payload, "reason"));
    if (state && (strcmp(state, "completed") == 0 || strcmp(state, "compensated") == 0 ||
                  strcmp(state, "aborted") == 0)) {
        order *o = take_posted(s, ev->stream_id.ptr + prefix, ev->stream_id.len - prefix);
        if (o)
            rc = saga_ended(s, o, state, reason ? reason : "");
    }
    json_decref(payload);
    return rc;
}

static int handle_tail(seed_ctx *s)
{
    ev_event ev;
    int rc;
    for (int n = 0; n < 4096 && (rc = store_sub_next(s->sub, &ev, s->err)) == 1; n++) {
        rc = handle_event(s, &ev);
        if (rc)
            return rc;
    }
    return rc < 0 ? rc : 0;
}

/* Waits for answers or the tail (bounded), then handles both. */
static int step(seed_ctx *s)
{
    struct pollfd fds[2] = {{.fd = s->evfd, .events = POLLIN},
                            {.fd = store_sub_fd(s->sub), .events = POLLIN}};
    (void)poll(fds, 2, 200);
    int rc = handle_answers(s);
    if (rc == 0)
        rc = handle_tail(s);
    if (rc == 0 && monotonic_us() - s->progress_us > SEED_STALL_US)
        rc = sk_error_set(s->err, -ETIMEDOUT, "",
                          "no order ended for %lld s (%" PRIu64 " of %u ended)",
                          SEED_STALL_US / US_PER_S, s->ended, s->opt->orders);
    if (rc == 0)
        (void)cmd_idem_sync(s->app.idem); /* at most once a second does any work */
    return rc;
}

static int run_sample(seed_ctx *s)
{
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < SVC_SEED_PRODUCTS; i++)
        rc = seed_product(s, i);
    for (uint32_t i = 0; rc == 0 && i < SVC_SEED_CUSTOMERS; i++)
        rc = seed_customer(s, i);
    s->progress_us = monotonic_us();
    while (rc == 0 && s->calls > 0) /* the catalog before any order */
        rc = step(s);
    while (rc == 0 && s->ended < s->opt->orders) {
        while (rc == 0 && s->planned < s->opt->orders &&
               s->window[s->planned & (SEED_WINDOW - 1)].state == ORDER_FREE)
            rc = plan_next(s);
        if (rc == 0)
            rc = step(s);
    }
    /* a failure leaves commands in flight: their answers still come, and are freed here
     * (only answers: nothing new is posted) */
    for (int64_t until = monotonic_us() + 10 * US_PER_S; s->calls > 0 && monotonic_us() < until;) {
        struct pollfd fd = {.fd = s->evfd, .events = POLLIN};
        (void)poll(&fd, 1, 100);
        sk_error ignored;
        sk_error *keep = s->err;
        s->err = &ignored;
        (void)handle_answers(s);
        s->err = keep;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Opening, the run, closing.
 */
static int make_dir(const char *path, sk_error *err)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    int rc = -errno;
    return sk_error_set(err, rc, "data", "cannot create the data directory %s: %s", path,
                        strerror(-rc));
}

/* The option's folder, else $env, else the one this binary ships. */
static int find_dir(const char *given, const char *env, const char *what, const char *field,
                    char *out, size_t size, sk_error *err)
{
    if (!given)
        given = env ? getenv(env) : NULL;
    if (given && *given) {
        snprintf(out, size, "%s", given);
        return 0;
    }
    int rc = ev_shipped_path(what, out, size);
    if (rc)
        return sk_error_set(err, rc, field, "no %s folder at %s (installed?); pass --%s", what, out,
                            field);
    return 0;
}

static int open_log(seed_ctx *s)
{
    const svc_seed_options *opt = s->opt;
    char schemas[4096], log_dir[PATH_MAX];
    int rc = find_dir(opt->schemas_dir, "SKALD_SCHEMAS", "events/schemas", "schemas", schemas,
                      sizeof schemas, s->err);
    if (rc == 0)
        rc = make_dir(opt->data_dir, s->err);
    if (rc)
        return rc;
    if (snprintf(log_dir, sizeof log_dir, "%s/log", opt->data_dir) >= (int)sizeof log_dir)
        return sk_error_set(s->err, -ENAMETOOLONG, "data", "data directory path is too long");
    rc = ev_registry_open(schemas, opt->data_dir, &s->app.events, s->err);
    if (rc)
        return rc;
    store_config cfg;
    store_config_init(&cfg, log_dir);
    cfg.fsync_mode = STORE_FSYNC_ALWAYS;
    return store_log_open(&cfg, &s->app.log, s->err);
}

/* What `skald serve` opens for the commands and sagas roles, minus HTTP and snapshots. */
static int open_command_path(seed_ctx *s)
{
    char command_schemas[4096];
    int rc = find_dir(s->opt->command_schemas_dir, NULL, "commands/schemas", "command-schemas",
                      command_schemas, sizeof command_schemas, s->err);
    if (rc)
        return rc;
    if (svc_metrics_create(cmd_domains, &s->app.metrics) != 0)
        return sk_error_set(s->err, -ENOMEM, "", "out of memory");
    cmd_bus_config bc = {
        .log = s->app.log,
        .events = s->app.events,
        .command_schemas_dir = command_schemas,
        .domains = cmd_domains,
        .cache_max = 4096,
    };
    rc = cmd_bus_create(&bc, &s->app.bus, s->err);
    if (rc)
        return rc;
    cmd_idem_config ic;
    cmd_idem_config_init(&ic, s->opt->data_dir);
    ic.log = s->app.log;
    rc = cmd_idem_open(&ic, &s->app.idem, s->err);
    if (rc)
        return rc;
    s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->evfd < 0)
        return sk_error_set(s->err, -errno, "", "cannot create an eventfd");
    rc = store_sub_open(s->app.log, store_log_head(s->app.log), &s->sub);
    if (rc)
        return sk_error_set(s->err, rc, "", "cannot subscribe to the log");
    return svc_sagas_start(&s->app, s->opt->data_dir, 0, s->err);
}

/* Refuses to write the sample twice into one log: its product streams would conflict. */
static int check_fresh(seed_ctx *s)
{
    char stream[EV_STREAM_ID_MAX + 1];
    snprintf(stream, sizeof stream, "product-SKU-%04u", 1u);
    if (store_log_stream_version(s->app.log, ev_str_of(stream)) == 0)
        return 0;
    return sk_error_set(s->err, SK_ECONFLICT, "",
                        "the log already holds the sample (stream %s exists); seed an empty "
                        "data directory, or pass --if-empty to leave a seeded log alone",
                        stream);
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
    int rc = open_log(s);
    if (rc)
        return rc;
    s->report.first_position = store_log_head(s->app.log);
    if (s->opt->if_empty && s->report.first_position > 0) {
        s->report.skipped = 1;
        s->report.next_position = s->report.first_position;
        return 0;
    }
    rc = check_fresh(s);
    if (rc == 0)
        rc = open_command_path(s);
    if (rc == 0)
        rc = run_sample(s);
    return rc;
}

/* The idempotency store's start-up scan begins at its journal's mark: opening it once
 * more here, after the run, leaves the mark at the head, so the first `skald serve` after
 * a seed reads none of the seeded log (the scan's cost moves to the seed). */
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

/* Closes in the order `skald serve` does; the log's close status (or rc's). */
static int close_all(seed_ctx *s, int rc)
{
    svc_sagas_close(&s->app); /* writes its checkpoint: nothing left open */
    store_sub_close(s->sub);
    cmd_bus_destroy(s->app.bus);
    int idem_rc = cmd_idem_close(s->app.idem);
    if (rc == 0 && idem_rc)
        rc = sk_error_set(s->err, idem_rc, "", "the idempotency journal failed: %s",
                          sk_strerror(idem_rc));
    if (rc == 0 && s->app.log && !s->report.skipped)
        rc = mark_idempotency(s->opt->data_dir, s->app.log, s->err);
    if (s->app.log) {
        s->report.next_position = store_log_head(s->app.log);
        int close_rc = store_log_close(s->app.log);
        if (rc == 0 && close_rc != 0)
            rc = sk_error_set(s->err, close_rc, "", "closing the log failed: %s",
                              sk_strerror(close_rc));
    }
    svc_metrics_free(s->app.metrics);
    ev_registry_destroy(s->app.events);
    if (s->evfd >= 0)
        close(s->evfd);
    return rc;
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
    s->evfd = -1;
    pthread_mutex_init(&s->mu, NULL);
    int64_t start_us = monotonic_us();
    int rc = close_all(s, seed_with(s));
    s->report.events = s->report.next_position - s->report.first_position;
    s->report.elapsed_us = monotonic_us() - start_us;
    if (rc == 0)
        *out = s->report;
    pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
}
