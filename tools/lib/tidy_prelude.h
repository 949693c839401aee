/*
 * tidy_prelude.h -- force-included by tools/test when clang-tidy analyses a source file
 * (never by a compiler build).
 *
 * Skald's functions report errors with `return sk_error_set(err, SK_EFOO, ...)`, and
 * sk_error_set is documented to return its code. The static analyzer cannot see that: it
 * does not inline variadic functions, so it assumes such a return may be 0 and then
 * reports every out parameter that such a path leaves unwritten as used uninitialised.
 * This macro states the contract where the analyzer can read it. The file that defines
 * sk_error_set is analysed without this prelude.
 */
#ifndef SKALD_TIDY_PRELUDE_H
#define SKALD_TIDY_PRELUDE_H

#include "events/events.h"

#define sk_error_set(err, code, ...) (sk_error_set((err), (code), __VA_ARGS__), (code))

#endif
