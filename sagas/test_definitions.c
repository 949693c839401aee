/*
 * test_definitions.c -- a saga only tests run (SKALD_SAGA_TEST_DEFINITIONS=1), apart
 * from the engine by file name.
 *
 * RestockOnRegister: a ProductRegistered whose name starts with "saga-restock:" sends
 * RestockProduct for the quantity after the colon. RestockProduct is not idempotent by
 * itself (each one adds stock), unlike the sample deciders, which forgive repeats; so
 * only the saga's idempotency keys keep a resend after a kill, or after an attempt whose
 * answer was lost, from restocking twice. The tests check on_hand is exactly the amount.
 */
#include "sagas/sagas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "saga-restock:"

static int key(const json_t *payload, char *out, size_t size)
{
    const char *name = json_string_value(json_object_get(payload, "name"));
    const char *sku = json_string_value(json_object_get(payload, "sku"));
    if (!name || !sku || strncmp(name, PREFIX, strlen(PREFIX)) != 0)
        return 1;
    snprintf(out, size, "%s", sku);
    return 0;
}

static int restock(const json_t *d, saga_cmd_list *out)
{
    const char *name = json_string_value(json_object_get(d, "name"));
    long long q = strtoll(name + strlen(PREFIX), NULL, 10);
    return saga_cmd_add(out, "RestockProduct",
                        json_pack("{s:s, s:I}", "sku", json_string_value(json_object_get(d, "sku")),
                                  "quantity", (json_int_t)(q > 0 ? q : 1)));
}

static const saga_step_def steps[] = {
    {"restock", restock, NULL, 0, {1000, 5, 200}},
};

static const saga_def restock_on_register = {
    .type = "RestockOnRegister",
    .version = 1,
    .start_event = "ProductRegistered",
    .key = key,
    .steps = steps,
    .nsteps = 1,
};

const saga_def *const saga_test_definitions[] = {&restock_on_register, NULL};
