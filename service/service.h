/*
 * service.h -- the top layer of Skald: what the `skald` binary runs.
 *
 * Two jobs: the HTTP service (`skald serve`: commands, reads of the log, health and
 * metrics, as docs/http-api.md describes) and seeding a data directory with a realistic
 * sample of the order domain (`skald seed`). Everything here may use every layer below
 * (commands/, store/, events/, and queries/, sagas/, projections/ as they arrive);
 * nothing below includes this header. The pieces of `skald serve` (configuration, the
 * log lines, tokens, metrics, the idempotency store, the HTTP server and its routes) are
 * private to the layer: service/serve_int.h lists them, file by file.
 *
 * Calling sequence
 *   skald serve:  svc_serve_main(argc, argv)          runs until SIGTERM/SIGINT
 *   skald seed:   svc_seed_options opt; svc_seed_options_init(&opt, data_dir);
 *                 adjust opt.orders etc.; svc_seed_run(&opt, &report, &err)
 *
 * Error rules
 *   svc_serve_main returns a process exit status (0 clean stop, 1 runtime failure, 2 usage
 *   error) and reports through its JSON log lines on stderr. svc_seed_run returns 0 or a
 *   negative code (negated errno, or SK_E* from events.h); on failure err (may be NULL)
 *   names what failed: the file, the stream or the field.
 *
 * Process-wide effects
 *   svc_serve_main blocks SIGTERM and SIGINT in every thread (it takes them with
 *   sigtimedwait), ignores SIGPIPE, and routes the lower layers' log messages into its log
 *   lines. Neither function calls exit().
 */
#ifndef SKALD_SERVICE_H
#define SKALD_SERVICE_H

#include "events/events.h"

#include <stdint.h>

/* The sample's fixed shape. */
#define SVC_SEED_PRODUCTS   50
#define SVC_SEED_CUSTOMERS  100
#define SVC_SEED_ORDERS_MAX 10000000u

typedef struct svc_seed_options {
    const char *data_dir;            /* the Skald data directory (created if missing); borrowed */
    const char *schemas_dir;         /* the .avsc folder; NULL: $SKALD_SCHEMAS or the shipped one
                                        (ev_shipped_path) */
    const char *command_schemas_dir; /* the commands' .avsc folder; NULL: the shipped one */
    uint32_t orders;                 /* orders to place, 1..SVC_SEED_ORDERS_MAX; default 1000 */
    uint64_t seed;                   /* decides every choice of the sample; default 42 */
    int if_empty;                    /* 1: a log that already holds events is left alone */
} svc_seed_options;

void svc_seed_options_init(svc_seed_options *opt, const char *data_dir);

typedef struct svc_seed_report {
    int skipped;             /* 1 if if_empty found events and appended nothing */
    uint64_t products;       /* registered */
    uint64_t customers;      /* opened */
    uint64_t orders;         /* placed */
    uint64_t confirmed;      /* orders that ended confirmed */
    uint64_t cancelled;      /* orders that ended cancelled (any reason) */
    uint64_t restocks;       /* ProductRestocked events, the first stocking included */
    uint64_t events;         /* appended by this run (the sagas' journals included) */
    uint64_t first_position; /* of the first event appended (or the head if none) */
    uint64_t next_position;  /* the log's head afterwards */
    int64_t elapsed_us;      /* wall time of the appends, opening and closing included */
} svc_seed_report;

/*
 * Opens the schema registry (ids kept in data_dir/schemas/), the log (data_dir/log/,
 * fsync=always), the command bus, the idempotency store and the saga orchestrator, as
 * `skald serve` does, and posts the sample through them: SVC_SEED_PRODUCTS products
 * registered and stocked, SVC_SEED_CUSTOMERS customers opened with a credit limit, then
 * opt->orders PlaceOrder commands, each driven to confirmed or cancelled by the
 * OrderFulfillment saga; returns once every saga ended. Nothing else may write the log
 * meanwhile. Fails with SK_ECONFLICT (err names the stream) if the sample's streams
 * already exist and if_empty is off.
 * Ownership: opt and its strings are borrowed for the call; *out is written on success.
 */
int svc_seed_run(const svc_seed_options *opt, svc_seed_report *out, sk_error *err);

/*
 * `skald serve`: parses argv (the words after "serve") and SKALD_* variables, runs the
 * HTTP service until SIGTERM/SIGINT. Returns the process exit status: 0 after a clean
 * drain, 1 on a runtime failure, 2 on a usage error (already printed).
 */
int svc_serve_main(int argc, char **argv);

#endif /* SKALD_SERVICE_H */
