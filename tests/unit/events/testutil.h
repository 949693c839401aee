/*
 * testutil.h -- small helpers the events tests share: temporary directories and files, and
 * a registry in one.
 */
#ifndef SKALD_TEST_EVENTS_UTIL_H
#define SKALD_TEST_EVENTS_UTIL_H

#define _XOPEN_SOURCE 700
#include "events/events.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline char *tu_tempdir(void)
{
    char *p = strdup("/tmp/skald-test-XXXXXX");
    if (p && !mkdtemp(p)) {
        free(p);
        p = NULL;
    }
    return p;
}

static inline int tu_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(path);
}

static inline void tu_rmrf(char *dir)
{
    if (dir)
        nftw(dir, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static inline void tu_write(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

static inline const char *tu_source_dir(void)
{
    const char *s = getenv("SKALD_SOURCE_DIR");
    return s ? s : SKALD_SOURCE_DIR;
}

/* A schema registry in a temporary directory, for the tests that write schemas there. */
typedef struct tu_fixture {
    char *dir;
    ev_registry *reg;
} tu_fixture;

static inline int tu_teardown(void **state)
{
    tu_fixture *f = *state;
    ev_registry_destroy(f->reg);
    tu_rmrf(f->dir);
    free(f);
    return 0;
}

#endif
