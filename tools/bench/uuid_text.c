/*
 * uuid_text.c -- skald-bench uuid-text: the text form of ids, Skald's own (ev_uuid_format,
 * ev_uuid_parse) against libuuid's (uuid_unparse_lower, uuid_parse), on the same ids.
 *
 * Every command answered over HTTP formats its command id and each event id, and a
 * command_id in a body is parsed, so this is the per-command cost of the choice. The
 * ids are generated first (ev_uuid_generate: UUIDv7, kept either way) so only the text
 * conversion is timed; each side runs three times, alternating, and the best run counts.
 * BENCH uuid-text ev_format_ns= ev_parse_ns= libuuid_format_ns= libuuid_parse_ns=
 * ratio= (libuuid's format+parse time over Skald's: above 1, libuuid is slower).
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#define IDS 4096

static volatile unsigned sink; /* keeps the conversions from being optimised away */

typedef struct timing {
    double format_ns, parse_ns;
} timing;

static void run_ev(const ev_uuid *ids, uint64_t rounds, timing *t)
{
    char text[EV_UUID_TEXT_SIZE];
    ev_uuid back;
    uint64_t start = bench_now_ns();
    for (uint64_t r = 0; r < rounds; r++)
        for (int i = 0; i < IDS; i++) {
            ev_uuid_format(&ids[i], text);
            sink += (unsigned char)text[35];
        }
    uint64_t mid = bench_now_ns();
    static char texts[IDS][EV_UUID_TEXT_SIZE];
    for (int i = 0; i < IDS; i++)
        ev_uuid_format(&ids[i], texts[i]);
    uint64_t pstart = bench_now_ns();
    for (uint64_t r = 0; r < rounds; r++)
        for (int i = 0; i < IDS; i++) {
            if (ev_uuid_parse(texts[i], &back) == 0)
                sink += back.bytes[15];
        }
    uint64_t end = bench_now_ns();
    double n = (double)rounds * IDS;
    t->format_ns = (double)(mid - start) / n;
    t->parse_ns = (double)(end - pstart) / n;
}

static void run_libuuid(const ev_uuid *ids, uint64_t rounds, timing *t)
{
    char text[EV_UUID_TEXT_SIZE];
    uuid_t back;
    uint64_t start = bench_now_ns();
    for (uint64_t r = 0; r < rounds; r++)
        for (int i = 0; i < IDS; i++) {
            uuid_unparse_lower(ids[i].bytes, text);
            sink += (unsigned char)text[35];
        }
    uint64_t mid = bench_now_ns();
    static char texts[IDS][EV_UUID_TEXT_SIZE];
    for (int i = 0; i < IDS; i++)
        uuid_unparse_lower(ids[i].bytes, texts[i]);
    uint64_t pstart = bench_now_ns();
    for (uint64_t r = 0; r < rounds; r++)
        for (int i = 0; i < IDS; i++) {
            if (uuid_parse(texts[i], back) == 0)
                sink += back[15];
        }
    uint64_t end = bench_now_ns();
    double n = (double)rounds * IDS;
    t->format_ns = (double)(mid - start) / n;
    t->parse_ns = (double)(end - pstart) / n;
}

static double best(double a, double b)
{
    return a < b ? a : b;
}

int bench_uuid_text(const bench_opts *opts)
{
    ev_uuid *ids = malloc(IDS * sizeof *ids);
    if (!ids)
        return -ENOMEM;
    for (int i = 0; i < IDS; i++)
        ev_uuid_generate(&ids[i]);
    /* --events sets the conversions per side and run (default 1,000,000 x 3) */
    uint64_t rounds = opts->events / IDS ? opts->events / IDS : 1;
    timing ev = {1e18, 1e18}, lib = {1e18, 1e18};
    for (int run = 0; run < 3; run++) {
        timing t;
        run_ev(ids, rounds, &t);
        ev.format_ns = best(ev.format_ns, t.format_ns);
        ev.parse_ns = best(ev.parse_ns, t.parse_ns);
        run_libuuid(ids, rounds, &t);
        lib.format_ns = best(lib.format_ns, t.format_ns);
        lib.parse_ns = best(lib.parse_ns, t.parse_ns);
        printf("run %d: ev format %.1f ns parse %.1f ns; libuuid format %.1f ns parse %.1f ns\n",
               run + 1, ev.format_ns, ev.parse_ns, lib.format_ns, lib.parse_ns);
    }
    free(ids);
    printf("BENCH uuid-text ids=%llu ev_format_ns=%.1f ev_parse_ns=%.1f libuuid_format_ns=%.1f "
           "libuuid_parse_ns=%.1f ratio=%.2f\n",
           (unsigned long long)rounds * IDS, ev.format_ns, ev.parse_ns, lib.format_ns, lib.parse_ns,
           (lib.format_ns + lib.parse_ns) / (ev.format_ns + ev.parse_ns));
    return 0;
}
