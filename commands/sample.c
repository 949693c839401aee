/*
 * sample.c -- the sample domain (order fulfillment) as one list of handler tables, for
 * whoever runs the whole domain: the service, skaldctl, tests.
 */
#include "commands/commands.h"

const cmd_handler_table *cmd_sample_domain(size_t *count)
{
    static cmd_handler_table tables[3];
    tables[0] = cmd_product_handlers;
    tables[1] = cmd_customer_handlers;
    tables[2] = cmd_order_handlers;
    *count = 3;
    return tables;
}
