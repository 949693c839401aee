/*
 * bus_env.c -- a command bus over a fresh log in a work directory, for the benchmarks that
 * drive the bus in-process (aggregate-load, command-path): the sample domain, the source
 * tree's event and command schemas, SQLite snapshots, fsync=never (the disk is not what
 * they measure).
 */
#include "tools/bench/bench.h"

#include <string.h>

const char *bench_source_dir(void)
{
    const char *s = getenv("SKALD_SOURCE_DIR");
    return s ? s : SKALD_SOURCE_DIR;
}

int bench_bus_open(bench_bus *b, const char *work, uint32_t snapshot_every, uint32_t cache_max,
                   const char *name)
{
    memset(b, 0, sizeof *b);
    char schemas[BENCH_PATH_MAX], cmds[BENCH_PATH_MAX], path[BENCH_PATH_MAX];
    snprintf(schemas, sizeof schemas, "%s/events/schemas", bench_source_dir());
    snprintf(cmds, sizeof cmds, "%s/commands/schemas", bench_source_dir());
    sk_error err = {0};
    int rc = ev_registry_open(schemas, work, &b->events, &err);
    if (rc == 0)
        rc = bench_path_join(path, sizeof path, work, "log");
    if (rc == 0)
        rc = bench_log_open(path, STORE_FSYNC_NEVER, 0, &b->log);
    if (rc == 0)
        rc = bench_path_join(path, sizeof path, work, "snapshots.db");
    if (rc == 0)
        rc = store_snapshots_open(path, 0, &b->snaps, &err);
    cmd_bus_config bc = {.log = b->log,
                         .events = b->events,
                         .command_schemas_dir = cmds,
                         .domains = cmd_domains,
                         .snapshots = b->snaps,
                         .snapshot_every = snapshot_every,
                         .cache_max = cache_max};
    if (rc == 0)
        rc = cmd_bus_create(&bc, &b->bus, &err);
    if (rc) {
        fprintf(stderr, "skald-bench: %s set-up: %s\n", name,
                err.message[0] ? err.message : sk_strerror(rc));
        bench_bus_close(b);
    }
    return rc;
}

void bench_bus_close(bench_bus *b)
{
    cmd_bus_destroy(b->bus);
    store_snapshots_close(b->snaps);
    store_log_close(b->log);
    ev_registry_destroy(b->events);
    memset(b, 0, sizeof *b);
}
