/*
 * domains.c -- the registration table: which domains this build runs.
 *
 * Not engine code: it is the one file a new domain edits (one line), beside adding its
 * own files. The engine, the service and the tools reach every domain through
 * cmd_domains only. A program that runs other domains may define cmd_domains itself;
 * the linker then leaves this file out of the static library.
 */
#include "commands/saga_journal.h"
#include "commands/sample.h"

#include <stddef.h>

const cmd_domain *const cmd_domains[] = {
    &cmd_sample_domain,
    &cmd_saga_journal_domain, /* internal: the sagas' own streams */
    NULL,
};
