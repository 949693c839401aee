/*
 * saga_journal.h -- the saga journal: the internal aggregate whose streams (`$saga-<id>`)
 * hold each saga's state as events, so the orchestrator writes through the command bus
 * like everything else (the bus stays the log's only writer).
 *
 * Domain code, not engine: only commands/domains.c and this aggregate's tests include
 * it. Its commands (StartSaga, StartSagaStep, FinishSagaStep, ChangeSagaState) are
 * internal: the HTTP service refuses them (cmd_handler_internal), only the saga
 * orchestrator sends them.
 */
#ifndef SKALD_COMMANDS_SAGA_JOURNAL_H
#define SKALD_COMMANDS_SAGA_JOURNAL_H

#include "commands/commands.h"

extern const cmd_handler_table cmd_saga_journal_handlers; /* commands/saga_journal.c */
extern const cmd_domain cmd_saga_journal_domain;          /* commands/saga_journal.c */

#endif
