/*
 * faultalloc.h -- an allocation-failure countdown for tests, after SQLite's
 * (sqlite3_test_control(SQLITE_TESTCTL_FAULT_INSTALL), test_malloc.c): arm it with n, and
 * the allocation after the next n succeeds returns NULL; with persist, every one after it
 * fails too, until disarmed. It covers what jansson allocates (json_set_alloc_funcs),
 * which is every allocation a decider or an evolve makes.
 *
 * The usual loop runs an operation with n = 0, 1, 2, ... until it completes without the
 * fault being hit, checking after each failed run that the failure was reported (never
 * swallowed) and that nothing leaked (ASan/LSan):
 *
 *   faultalloc_install();
 *   for (int n = 0;; n++) {
 *       faultalloc_arm(n, 0);
 *       int rc = operation();
 *       int hit = faultalloc_disarm();
 *       if (!hit) { assert rc == 0; break; }
 *       assert rc == -ENOMEM (or the error it must become);
 *   }
 */
#ifndef SKALD_TESTS_FAULTALLOC_H
#define SKALD_TESTS_FAULTALLOC_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>

static atomic_long faultalloc_remaining; /* allocations still to succeed */
static atomic_bool faultalloc_armed, faultalloc_persist, faultalloc_hit;

static void *faultalloc_malloc(size_t size)
{
    if (atomic_load(&faultalloc_armed)) {
        long left = atomic_fetch_sub(&faultalloc_remaining, 1);
        if (left == 0 || (left < 0 && atomic_load(&faultalloc_persist))) {
            atomic_store(&faultalloc_hit, 1);
            return NULL;
        }
    }
    return malloc(size);
}

/* Routes jansson's allocations through the countdown; call before any JSON is made. */
static inline void faultalloc_install(void)
{
    json_set_alloc_funcs(faultalloc_malloc, free);
}

static inline void faultalloc_arm(long n, int persist)
{
    atomic_store(&faultalloc_remaining, n);
    atomic_store(&faultalloc_persist, persist != 0);
    atomic_store(&faultalloc_hit, 0);
    atomic_store(&faultalloc_armed, 1);
}

/* Disarms; 1 if an allocation failed since faultalloc_arm. */
static inline int faultalloc_disarm(void)
{
    atomic_store(&faultalloc_armed, 0);
    return atomic_load(&faultalloc_hit);
}

#endif
