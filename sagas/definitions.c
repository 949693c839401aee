/*
 * definitions.c -- the registration table: which sagas this build runs.
 *
 * Not engine code: the one file a new saga edits (one line), beside adding its own
 * definition file. A program that runs other sagas may define saga_definitions itself.
 */
#include "sagas/sagas.h"

#include <stddef.h>

extern const saga_def saga_order_fulfillment; /* sagas/order_fulfillment.c */

const saga_def *const saga_definitions[] = {
    &saga_order_fulfillment,
    NULL,
};
