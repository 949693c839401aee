/*
 * test_deciders.c -- every rule of the sample domain's deciders, accepted and rejected,
 * and evolve folding the events back into the state the next decision sees; a failed
 * allocation anywhere in a decide or an evolve is reported, never swallowed.
 */
#include "commands/commands.h"
#include "tests/unit/faultalloc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const cmd_handler *find(const char *command)
{
    return cmd_handler_find(cmd_domains, command);
}

typedef struct given {
    const char *type;
    const char *payload;
} given;

/* Folds history into a fresh state of the command's aggregate, decides cmd, and leaves
 * the result in *out. */
static const cmd_handler *decide(const char *command, const given *history, const char *cmd,
                                 cmd_result *out)
{
    const cmd_handler *h = find(command);
    assert_non_null(h);
    void *state = cmd_state_new(h->aggregate);
    assert_non_null(state);
    for (const given *g = history; g && g->type; g++) {
        json_t *p = json_loads(g->payload, 0, NULL);
        assert_non_null(p);
        assert_int_equal(h->aggregate->evolve(state, g->type, p), 0);
        json_decref(p);
    }
    json_t *c = json_loads(cmd, 0, NULL);
    assert_non_null(c);
    memset(out, 0, sizeof *out);
    assert_int_equal(h->decide(state, c, out), 0);
    json_decref(c);
    cmd_state_free(h->aggregate, state);
    return h;
}

static void expect_event(const char *command, const given *history, const char *cmd,
                         const char *type, const char *field, long long value)
{
    cmd_result r;
    decide(command, history, cmd, &r);
    if (r.rejected || r.count != 1 || strcmp(r.events[0].type, type) != 0)
        fail_msg("%s %s: want %s, got %s%s (%zu events)", command, cmd, type,
                 r.rejected ? "rejection " : "", r.rejected ? r.reason : "", r.count);
    if (field)
        assert_int_equal(json_integer_value(json_object_get(r.events[0].payload, field)), value);
    cmd_result_clear(&r);
}

static void expect_reject(const char *command, const given *history, const char *cmd,
                          const char *reason)
{
    cmd_result r;
    decide(command, history, cmd, &r);
    if (!r.rejected || strcmp(r.reason, reason) != 0)
        fail_msg("%s %s: want rejection %s, got %s", command, cmd, reason,
                 r.rejected ? r.reason : "acceptance");
    assert_int_equal(r.count, 0);
    assert_true(strlen(r.message) > 0);
    cmd_result_clear(&r);
}

static void expect_nothing(const char *command, const given *history, const char *cmd)
{
    cmd_result r;
    decide(command, history, cmd, &r);
    assert_false(r.rejected);
    assert_int_equal(r.count, 0);
    cmd_result_clear(&r);
}

static const given lamp[] = {
    {"ProductRegistered", "{\"sku\":\"L\",\"name\":\"Lamp\",\"price_cents\":500}"},
    {"ProductRestocked", "{\"sku\":\"L\",\"quantity\":10}"},
    {"StockReserved", "{\"sku\":\"L\",\"order_id\":\"o1\",\"quantity\":4}"},
    {"StockReserved", "{\"sku\":\"L\",\"order_id\":\"o2\",\"quantity\":3}"},
    {"StockReleased", "{\"sku\":\"L\",\"order_id\":\"o2\",\"quantity\":3}"},
    {"StockReserved", "{\"sku\":\"L\",\"order_id\":\"o3\",\"quantity\":2}"},
    {"StockCommitted", "{\"sku\":\"L\",\"order_id\":\"o3\",\"quantity\":2}"},
    {NULL, NULL},
}; /* on hand 8, reserved 4 (o1): 4 available */

static void test_product(void **state)
{
    (void)state;
    const char *reg = "{\"sku\":\"L\",\"name\":\"Lamp\",\"price_cents\":500}";
    expect_event("RegisterProduct", NULL, reg, "ProductRegistered", "price_cents", 500);
    expect_reject("RegisterProduct", lamp, reg, "already_exists");
    expect_event("RestockProduct", lamp, "{\"sku\":\"L\",\"quantity\":5}", "ProductRestocked",
                 "quantity", 5);
    expect_reject("RestockProduct", NULL, "{\"sku\":\"L\",\"quantity\":5}", "not_found");
    expect_event("ReserveStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o9\",\"quantity\":4}",
                 "StockReserved", "quantity", 4);
    expect_reject("ReserveStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o9\",\"quantity\":5}",
                  "insufficient_stock");
    expect_reject("ReserveStock", NULL, "{\"sku\":\"L\",\"order_id\":\"o9\",\"quantity\":1}",
                  "not_found");
    expect_nothing("ReserveStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o1\",\"quantity\":4}");
    expect_event("ReleaseStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o1\"}", "StockReleased",
                 "quantity", 4);
    expect_nothing("ReleaseStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o2\"}");
    expect_nothing("ReleaseStock", NULL, "{\"sku\":\"L\",\"order_id\":\"o1\"}");
    expect_event("CommitStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o1\"}", "StockCommitted",
                 "quantity", 4);
    expect_reject("CommitStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o3\"}", "no_reservation");
}

static const given ada[] = {
    {"CustomerOpened", "{\"customer_id\":\"c\",\"name\":\"Ada\",\"credit_limit_cents\":1000}"},
    {"PaymentAuthorized", "{\"customer_id\":\"c\",\"order_id\":\"o1\",\"amount_cents\":600}"},
    {"PaymentAuthorized", "{\"customer_id\":\"c\",\"order_id\":\"o2\",\"amount_cents\":300}"},
    {"PaymentRefunded", "{\"customer_id\":\"c\",\"order_id\":\"o2\",\"amount_cents\":300}"},
    {NULL, NULL},
}; /* limit 1000, used 600 */

static void test_customer(void **state)
{
    (void)state;
    const char *open = "{\"customer_id\":\"c\",\"name\":\"Ada\",\"credit_limit_cents\":1000}";
    expect_event("OpenCustomer", NULL, open, "CustomerOpened", "credit_limit_cents", 1000);
    expect_reject("OpenCustomer", ada, open, "already_exists");
    expect_event("AuthorizePayment", ada,
                 "{\"customer_id\":\"c\",\"order_id\":\"o3\",\"amount_cents\":400}",
                 "PaymentAuthorized", "amount_cents", 400);
    expect_reject("AuthorizePayment", ada,
                  "{\"customer_id\":\"c\",\"order_id\":\"o3\",\"amount_cents\":401}",
                  "credit_limit_exceeded");
    expect_reject("AuthorizePayment", NULL,
                  "{\"customer_id\":\"c\",\"order_id\":\"o3\",\"amount_cents\":1}", "not_found");
    expect_nothing("AuthorizePayment", ada,
                   "{\"customer_id\":\"c\",\"order_id\":\"o1\",\"amount_cents\":600}");
    expect_event("RefundPayment", ada, "{\"customer_id\":\"c\",\"order_id\":\"o1\"}",
                 "PaymentRefunded", "amount_cents", 600);
    expect_nothing("RefundPayment", ada, "{\"customer_id\":\"c\",\"order_id\":\"o2\"}");
}

static const given placed[] = {
    {"OrderPlaced", "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[],\"total_cents\":7}"},
    {NULL, NULL},
};
static const given confirmed[] = {
    {"OrderPlaced", "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[],\"total_cents\":7}"},
    {"OrderConfirmed", "{\"order_id\":\"o\"}"},
    {NULL, NULL},
};
static const given cancelled[] = {
    {"OrderPlaced", "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[],\"total_cents\":7}"},
    {"OrderCancelled", "{\"order_id\":\"o\",\"reason\":\"x\"}"},
    {NULL, NULL},
};

static void test_order(void **state)
{
    (void)state;
    const char *place = "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[{\"sku\":\"a\","
                        "\"quantity\":2,\"unit_price_cents\":150},{\"sku\":\"b\",\"quantity\":1,"
                        "\"unit_price_cents\":99}]}";
    expect_event("PlaceOrder", NULL, place, "OrderPlaced", "total_cents", 399);
    /* the event's lines are the command's (shared, not copied): still whole once the
     * command is freed, which decide() does before this looks */
    cmd_result r;
    decide("PlaceOrder", NULL, place, &r);
    json_t *want = json_loads("[{\"sku\":\"a\",\"quantity\":2,\"unit_price_cents\":150},"
                              "{\"sku\":\"b\",\"quantity\":1,\"unit_price_cents\":99}]",
                              0, NULL);
    assert_int_equal(r.count, 1);
    assert_true(json_equal(json_object_get(r.events[0].payload, "lines"), want));
    json_decref(want);
    cmd_result_clear(&r);
    expect_reject("PlaceOrder", placed, place, "already_exists");
    expect_reject("PlaceOrder", NULL,
                  "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[{\"sku\":\"a\","
                  "\"quantity\":4611686018427387904,\"unit_price_cents\":4}]}",
                  "overflow");
    expect_event("ConfirmOrder", placed, "{\"order_id\":\"o\"}", "OrderConfirmed", NULL, 0);
    expect_reject("ConfirmOrder", NULL, "{\"order_id\":\"o\"}", "not_found");
    expect_reject("ConfirmOrder", confirmed, "{\"order_id\":\"o\"}", "invalid_state");
    expect_reject("ConfirmOrder", cancelled, "{\"order_id\":\"o\"}", "invalid_state");
    expect_event("CancelOrder", placed, "{\"order_id\":\"o\",\"reason\":\"no stock\"}",
                 "OrderCancelled", NULL, 0);
    expect_reject("CancelOrder", NULL, "{\"order_id\":\"o\",\"reason\":\"r\"}", "not_found");
    expect_reject("CancelOrder", confirmed, "{\"order_id\":\"o\",\"reason\":\"r\"}",
                  "invalid_state");
    expect_reject("CancelOrder", cancelled, "{\"order_id\":\"o\",\"reason\":\"r\"}",
                  "invalid_state");
}

/* The field an overflow names. */
static void expect_overflow(const char *command, const given *history, const char *cmd,
                            const char *field)
{
    expect_reject(command, history, cmd, "overflow");
    cmd_result r;
    decide(command, history, cmd, &r);
    assert_string_equal(r.field, field);
    cmd_result_clear(&r);
}

/* issue 11: a restock of 2^63-1 after a reservation was accepted and left the product at
 * -9223372036854775800 available. Every sum a decider makes is checked. */
static void test_arithmetic_never_wraps(void **state)
{
    (void)state;
    const char *max = "9223372036854775807";
    char cmd[256];
    snprintf(cmd, sizeof cmd, "{\"sku\":\"L\",\"quantity\":%s}", max);
    expect_overflow("RestockProduct", lamp, cmd, "quantity");
    /* the largest restock that fits is still taken */
    snprintf(cmd, sizeof cmd, "{\"sku\":\"L\",\"quantity\":%lld}", LLONG_MAX - 8);
    expect_event("RestockProduct", lamp, cmd, "ProductRestocked", "quantity", LLONG_MAX - 8);
    expect_overflow("PlaceOrder", NULL,
                    "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[{\"sku\":\"a\","
                    "\"quantity\":1,\"unit_price_cents\":1},{\"sku\":\"a\",\"quantity\":2,"
                    "\"unit_price_cents\":4611686018427387904}]}",
                    "lines[1]");
    expect_overflow("PlaceOrder", NULL,
                    "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[{\"sku\":\"a\","
                    "\"quantity\":1,\"unit_price_cents\":9223372036854775807},{\"sku\":\"b\","
                    "\"quantity\":1,\"unit_price_cents\":1}]}",
                    "lines[1]");
}

/*
 * A log that already holds an event whose sum overflows (written before the checks, or
 * by another tool): evolve neither crashes nor wraps. It saturates at the 64-bit bound,
 * leaves every other part of the state as it was, and the next decision that would go
 * past the bound is refused (docs/schemas.md, Arithmetic).
 */
static const given lamp_past_max[] = {
    {"ProductRegistered", "{\"sku\":\"L\",\"name\":\"Lamp\",\"price_cents\":500}"},
    {"ProductRestocked", "{\"sku\":\"L\",\"quantity\":10}"},
    {"StockReserved", "{\"sku\":\"L\",\"order_id\":\"o1\",\"quantity\":7}"},
    {"ProductRestocked", "{\"sku\":\"L\",\"quantity\":9223372036854775807}"},
    {NULL, NULL},
};
static const given ada_past_max[] = {
    {"CustomerOpened",
     "{\"customer_id\":\"c\",\"name\":\"Ada\",\"credit_limit_cents\":9223372036854775807}"},
    {"PaymentAuthorized",
     "{\"customer_id\":\"c\",\"order_id\":\"o1\",\"amount_cents\":9223372036854775807}"},
    {"PaymentAuthorized",
     "{\"customer_id\":\"c\",\"order_id\":\"o2\",\"amount_cents\":9223372036854775807}"},
    {NULL, NULL},
};

static void test_evolve_over_an_overflowing_log(void **state)
{
    (void)state;
    const cmd_handler *h = find("RestockProduct");
    void *typed = cmd_state_new(h->aggregate);
    for (const given *g = lamp_past_max; g->type; g++) {
        json_t *p = json_loads(g->payload, 0, NULL);
        assert_int_equal(h->aggregate->evolve(typed, g->type, p), 0);
        json_decref(p);
    }
    json_t *st = h->aggregate->to_json(typed);
    cmd_state_free(h->aggregate, typed);
    assert_true(json_integer_value(json_object_get(st, "on_hand")) == LLONG_MAX);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "reserved"), "o1")), 7);
    assert_string_equal(json_string_value(json_object_get(st, "name")), "Lamp");
    json_decref(st);
    /* the stream still works: what fits is decided, what does not is refused */
    expect_event("ReserveStock", lamp_past_max,
                 "{\"sku\":\"L\",\"order_id\":\"o2\",\"quantity\":5}", "StockReserved", "quantity",
                 5);
    expect_event("CommitStock", lamp_past_max, "{\"sku\":\"L\",\"order_id\":\"o1\"}",
                 "StockCommitted", "quantity", 7);
    expect_overflow("RestockProduct", lamp_past_max, "{\"sku\":\"L\",\"quantity\":1}", "quantity");
    /* two payments whose sum is past 2^63-1: a new one is refused, a refund still works */
    expect_overflow("AuthorizePayment", ada_past_max,
                    "{\"customer_id\":\"c\",\"order_id\":\"o3\",\"amount_cents\":1}",
                    "amount_cents");
    expect_event("RefundPayment", ada_past_max, "{\"customer_id\":\"c\",\"order_id\":\"o2\"}",
                 "PaymentRefunded", "amount_cents", LLONG_MAX);
    /* a commit past the lower bound is held there, not wrapped to a huge stock */
    static const given below[] = {
        {"ProductRegistered", "{\"sku\":\"L\",\"name\":\"Lamp\",\"price_cents\":1}"},
        {"StockCommitted", "{\"sku\":\"L\",\"order_id\":\"o\",\"quantity\":9223372036854775807}"},
        {"StockCommitted", "{\"sku\":\"L\",\"order_id\":\"p\",\"quantity\":9223372036854775807}"},
        {NULL, NULL},
    };
    expect_reject("ReserveStock", below, "{\"sku\":\"L\",\"order_id\":\"q\",\"quantity\":1}",
                  "insufficient_stock");
}

/* Every accepted decision of the tests above, with its history. */
typedef struct accepted {
    const char *command;
    const given *history;
    const char *cmd;
} accepted;

static const accepted accepted_cases[] = {
    {"RegisterProduct", NULL, "{\"sku\":\"L\",\"name\":\"Lamp\",\"price_cents\":500}"},
    {"RestockProduct", lamp, "{\"sku\":\"L\",\"quantity\":5}"},
    {"ReserveStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o9\",\"quantity\":4}"},
    {"ReleaseStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o1\"}"},
    {"CommitStock", lamp, "{\"sku\":\"L\",\"order_id\":\"o1\"}"},
    {"OpenCustomer", NULL, "{\"customer_id\":\"c\",\"name\":\"Ada\",\"credit_limit_cents\":1}"},
    {"AuthorizePayment", ada, "{\"customer_id\":\"c\",\"order_id\":\"o3\",\"amount_cents\":4}"},
    {"RefundPayment", ada, "{\"customer_id\":\"c\",\"order_id\":\"o1\"}"},
    {"PlaceOrder", NULL,
     "{\"order_id\":\"o\",\"customer_id\":\"c\",\"lines\":[{\"sku\":\"a\",\"quantity\":2,"
     "\"unit_price_cents\":150},{\"sku\":\"b\",\"quantity\":1,\"unit_price_cents\":99}]}"},
    {"ConfirmOrder", placed, "{\"order_id\":\"o\"}"},
    {"CancelOrder", placed, "{\"order_id\":\"o\",\"reason\":\"no stock\"}"},
};

/* A decide that hits a failed allocation returns -ENOMEM and adds nothing: the bus then
 * answers an error, never "done, nothing to change" (which a 200 with no events said). */
static void test_decide_allocation_failures(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof accepted_cases / sizeof *accepted_cases; k++) {
        const accepted *a = &accepted_cases[k];
        const cmd_handler *h = find(a->command);
        void *st = cmd_state_new(h->aggregate);
        for (const given *g = a->history; g && g->type; g++) {
            json_t *p = json_loads(g->payload, 0, NULL);
            assert_int_equal(h->aggregate->evolve(st, g->type, p), 0);
            json_decref(p);
        }
        json_t *cmd = json_loads(a->cmd, 0, NULL);
        int failures = 0;
        for (long n = 0;; n++) {
            cmd_result r;
            memset(&r, 0, sizeof r);
            faultalloc_arm(n, 0);
            int rc = h->decide(st, cmd, &r);
            int hit = faultalloc_disarm();
            if (!hit) {
                assert_int_equal(rc, 0);
                assert_int_equal(r.count, 1);
                cmd_result_clear(&r);
                break;
            }
            if (rc != -ENOMEM)
                fail_msg("%s: allocation %ld failed and decide returned %d", a->command, n, rc);
            assert_int_equal(r.count, 0);
            assert_false(r.rejected);
            cmd_result_clear(&r);
            failures++;
        }
        assert_true(failures > 0); /* every accepted decision allocates its event */
        json_decref(cmd);
        cmd_state_free(h->aggregate, st);
    }
}

/* An evolve that hits a failed allocation says so (the bus then reloads the aggregate
 * from the log instead of keeping a state that drifted from it). */
static void test_evolve_allocation_failures(void **state)
{
    (void)state;
    const given *histories[] = {lamp, ada, cancelled};
    const char *commands[] = {"RestockProduct", "OpenCustomer", "PlaceOrder"};
    for (size_t k = 0; k < 3; k++) {
        const cmd_aggregate *agg = find(commands[k])->aggregate;
        for (const given *g = histories[k]; g->type; g++) {
            json_t *p = json_loads(g->payload, 0, NULL);
            for (long n = 0;; n++) {
                void *st = cmd_state_new(agg);
                for (const given *before = histories[k]; before != g; before++) {
                    json_t *bp = json_loads(before->payload, 0, NULL);
                    assert_int_equal(agg->evolve(st, before->type, bp), 0);
                    json_decref(bp);
                }
                faultalloc_arm(n, 0);
                int rc = agg->evolve(st, g->type, p);
                int hit = faultalloc_disarm();
                cmd_state_free(agg, st);
                if (!hit) {
                    assert_int_equal(rc, 0);
                    break;
                }
                if (rc != -ENOMEM)
                    fail_msg("%s: allocation %ld failed and evolve returned %d", g->type, n, rc);
            }
            json_decref(p);
        }
    }
}

/* The state's JSON form, which snapshots hold: the same text the JSON states of earlier
 * releases wrote (a snapshot saved by one is still usable), read back into the same
 * state, and a text of another shape refused. */
typedef struct json_form {
    const char *command; /* names the aggregate */
    const given *history;
    const char *text; /* compact, sorted keys */
} json_form;

static const json_form forms[] = {
    {"RestockProduct", NULL, "{\"exists\":false,\"on_hand\":0,\"reserved\":{}}"},
    {"RestockProduct", lamp,
     "{\"exists\":true,\"name\":\"Lamp\",\"on_hand\":8,\"price_cents\":500,\"reserved\":{"
     "\"o1\":4},\"sku\":\"L\"}"},
    {"OpenCustomer", NULL, "{\"exists\":false,\"limit_cents\":0,\"payments\":{}}"},
    {"OpenCustomer", ada,
     "{\"customer_id\":\"c\",\"exists\":true,\"limit_cents\":1000,\"name\":\"Ada\","
     "\"payments\":{\"o1\":600}}"},
    {"PlaceOrder", NULL, "{\"status\":\"none\"}"},
    {"PlaceOrder", cancelled,
     "{\"customer_id\":\"c\",\"order_id\":\"o\",\"status\":\"cancelled\",\"total_cents\":7}"},
    {"StartSaga", NULL, "{\"exists\":false,\"state\":\"none\"}"},
};

static void test_state_json_forms(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof forms / sizeof *forms; k++) {
        const cmd_aggregate *agg = find(forms[k].command)->aggregate;
        void *st = cmd_state_new(agg);
        for (const given *g = forms[k].history; g && g->type; g++) {
            json_t *p = json_loads(g->payload, 0, NULL);
            assert_int_equal(agg->evolve(st, g->type, p), 0);
            json_decref(p);
        }
        char *text = cmd_state_dump(agg, st);
        assert_string_equal(text, forms[k].text);
        cmd_state_free(agg, st);
        /* read back: the same text again */
        json_t *json = json_loads(forms[k].text, 0, NULL);
        void *back = cmd_state_new(agg);
        assert_int_equal(agg->from_json(back, json), 0);
        char *again = cmd_state_dump(agg, back);
        assert_string_equal(again, forms[k].text);
        cmd_state_free(agg, back);
        json_decref(json);
        free(again);
        free(text);
    }
    /* shapes that are not a state: refused, and what was read so far is freed */
    static const struct {
        const char *command, *text;
    } bad[] = {
        {"RestockProduct", "{\"exists\":1,\"on_hand\":0,\"reserved\":{}}"},
        {"RestockProduct", "{\"exists\":true,\"sku\":\"L\",\"on_hand\":0,\"reserved\":{}}"},
        {"RestockProduct", "{\"exists\":false,\"on_hand\":0,\"reserved\":{\"o1\":\"4\"}}"},
        {"OpenCustomer", "{\"exists\":false,\"limit_cents\":0}"},
        {"PlaceOrder", "{\"status\":\"shipped\"}"},
        {"PlaceOrder", "{\"status\":\"placed\",\"order_id\":\"o\"}"},
        {"StartSaga", "{\"exists\":true}"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        const cmd_aggregate *agg = find(bad[k].command)->aggregate;
        json_t *json = json_loads(bad[k].text, 0, NULL);
        void *st = cmd_state_new(agg);
        if (agg->from_json(st, json) != SK_EBADINPUT)
            fail_msg("%s: %s was read as a state", agg->name, bad[k].text);
        cmd_state_free(agg, st);
        json_decref(json);
    }
}

static void test_lookup_and_stream_ids(void **state)
{
    (void)state;
    assert_null(find("LaunchRocket"));
    const cmd_handler *h = find("ReserveStock");
    char id[EV_STREAM_ID_MAX + 1];
    json_t *cmd = json_pack("{s:s}", "sku", "SKU-9");
    assert_int_equal(cmd_stream_id(h, cmd, id, sizeof id), 0);
    assert_string_equal(id, "product-SKU-9");
    json_decref(cmd);
    cmd = json_pack("{s:s}", "order_id", "o");
    assert_int_equal(cmd_stream_id(h, cmd, id, sizeof id), SK_EBADINPUT);
    json_decref(cmd);
    /* the engine holds every stream id to the id alphabet, whatever the schema says: none
     * that a URL cannot reach or that holds a control character (issue 11) */
    const char *bad[] = {"a/b",  "\x1b[2J",     "a\x07", "a\nb", "a b",
                         "a%00", "caf\xc3\xa9", "a\x7f", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cmd = json_pack("{s:s}", "sku", bad[i]);
        assert_non_null(cmd);
        if (cmd_stream_id(h, cmd, id, sizeof id) != SK_EBADINPUT)
            fail_msg("stream id accepted for sku %zu", i);
        json_decref(cmd);
    }
    cmd = json_pack("{s:s}", "sku", "A-z.0_9~!$&'()*+,;=:@");
    assert_int_equal(cmd_stream_id(h, cmd, id, sizeof id), 0);
    json_decref(cmd);
    /* the longest id that fits the stream id limit with its prefix, and one byte more */
    char sku[EV_STREAM_ID_MAX + 2];
    size_t fits = EV_STREAM_ID_MAX - strlen("product-");
    memset(sku, 'k', fits);
    sku[fits] = '\0';
    cmd = json_pack("{s:s}", "sku", sku);
    assert_int_equal(cmd_stream_id(h, cmd, id, sizeof id), 0);
    assert_int_equal(strlen(id), EV_STREAM_ID_MAX);
    assert_int_equal(strncmp(id, "product-kkk", 11), 0);
    char small[16];
    assert_int_equal(cmd_stream_id(h, cmd, small, sizeof small), SK_ETOOBIG);
    json_decref(cmd);
    sku[fits] = 'k';
    sku[fits + 1] = '\0';
    cmd = json_pack("{s:s}", "sku", sku);
    assert_int_equal(cmd_stream_id(h, cmd, id, sizeof id), SK_ETOOBIG);
    json_decref(cmd);
    /* All eleven commands of the contract table are there. */
    const char *all[] = {"RegisterProduct", "RestockProduct", "ReserveStock",     "ReleaseStock",
                         "CommitStock",     "OpenCustomer",   "AuthorizePayment", "RefundPayment",
                         "PlaceOrder",      "ConfirmOrder",   "CancelOrder"};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        assert_non_null(find(all[i]));
}

int main(void)
{
    faultalloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_product),
        cmocka_unit_test(test_customer),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_arithmetic_never_wraps),
        cmocka_unit_test(test_evolve_over_an_overflowing_log),
        cmocka_unit_test(test_decide_allocation_failures),
        cmocka_unit_test(test_evolve_allocation_failures),
        cmocka_unit_test(test_state_json_forms),
        cmocka_unit_test(test_lookup_and_stream_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
