/*
 * simfs.h -- an in-memory file system behind the store's I/O seam, with a crash model
 * and fault injection driven by a seeded generator, for the storage-fault simulation.
 */
#ifndef SKALD_SIMFS_H
#define SKALD_SIMFS_H

#include "store/store.h"

#include <stdbool.h>

typedef struct simfs simfs;

/* Fault probabilities in parts per million per call. */
typedef struct simfs_faults {
    uint32_t short_write;
    uint32_t write_eio;
    uint32_t write_nospc;
    uint32_t fsync_eio;
    uint32_t meta_eio;  /* ftruncate, sync_dir */
    uint32_t writeback; /* the kernel writes one dirty sector to disk on its own */
} simfs_faults;

/* verbose 1 traces faults, crashes and reboots on stderr; 2 also every call. */
simfs *simfs_create(uint64_t seed, int verbose);
void simfs_destroy(simfs *fs);
const store_io *simfs_io(simfs *fs);

void simfs_set_faults(simfs *fs, const simfs_faults *faults); /* NULL: none */
/* Every call from the `after`-th on fails with EIO, as if the machine stopped there. */
void simfs_crash_after(simfs *fs, uint64_t after);
bool simfs_crashed(const simfs *fs);
/* While held (the simulation checking what the log holds), no fault is injected and calls
 * do not advance the crash clock. */
void simfs_hold(simfs *fs, bool held);
/* The machine restarts: unsynced data is kept, dropped or torn per 512-byte sector, and a
 * random prefix of the unsynced directory changes persists. Open descriptors are gone. */
void simfs_reboot(simfs *fs);
uint64_t simfs_calls(const simfs *fs);
uint64_t simfs_rand(simfs *fs);

#endif
