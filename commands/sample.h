/*
 * sample.h -- the sample domain (order fulfillment): its aggregates' handler tables.
 *
 * Domain code, not engine: only the domain's own files, commands/domains.c and the
 * domain's tests include this. Everything else reaches the domain through cmd_domains.
 */
#ifndef SKALD_COMMANDS_SAMPLE_H
#define SKALD_COMMANDS_SAMPLE_H

#include "commands/commands.h"

extern const cmd_handler_table cmd_product_handlers;  /* commands/product.c */
extern const cmd_handler_table cmd_customer_handlers; /* commands/customer.c */
extern const cmd_handler_table cmd_order_handlers;    /* commands/order.c */

/* The three above as one domain. */
extern const cmd_domain cmd_sample_domain; /* commands/sample.c */

#endif
