/*
 * sample.c -- the sample domain (order fulfillment): its aggregates' tables as one domain.
 */
#include "commands/sample.h"

#include <stddef.h>

static const cmd_handler_table *const tables[] = {
    &cmd_product_handlers,
    &cmd_customer_handlers,
    &cmd_order_handlers,
    NULL,
};

const cmd_domain cmd_sample_domain = {"order fulfillment", tables};
