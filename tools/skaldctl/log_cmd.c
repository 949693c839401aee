/*
 * log_cmd.c -- `skaldctl log info|verify|dump|tail|repair`.
 *
 * Everything but repair opens the log read-only (it never writes, and it works on a log
 * that is damaged or in use by a running service); repair works on the closed directory.
 * tail follows a running service's log from another process through a subscription on
 * the read-only log, which sees only what the service has made durable.
 */
#include "tools/skaldctl/skaldctl.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char INFO_USAGE[] =
    "Usage: skaldctl log info --data DIR [--json]\n"
    "Shows the log's segments (file, first and next position, bytes), its first and last\n"
    "position, total bytes, number of streams, and whether damage was met opening it.\n";
static const char VERIFY_USAGE[] =
    "Usage: skaldctl log verify --data DIR [--json]\n"
    "Reads every record of every segment and checks its length, CRC and format, that\n"
    "positions run on without gap, and each sealed segment's index files. Prints every\n"
    "fault with its file and byte offset. Exit status: 0 clean, 3 faults found, 1 error.\n";
static const char DUMP_USAGE[] =
    "Usage: skaldctl log dump --data DIR [--from P] [--limit N] [--stream S] [--json]\n"
    "                         [--schemas DIR]\n"
    "Prints events in position order (or one stream's, in version order, with --stream)\n"
    "with their payloads decoded to JSON through the data directory's schema registry.\n"
    "  --from P     first position (with --stream: first version; default the start)\n"
    "  --limit N    at most N events\n"
    "  --stream S   only stream S\n"
    "  --json       one JSON object per event: the envelope and \"payload\"\n"
    "  --schemas    the .avsc files (default $SKALD_SCHEMAS, else the installed ones)\n";
static const char TAIL_USAGE[] =
    "Usage: skaldctl log tail --data DIR [--from P] [--stream S] [--json] [--schemas DIR]\n"
    "Follows the log as the running service appends to it, printing each event once it is\n"
    "durable, as `log dump` prints it, until SIGINT or SIGTERM (then exit status 0).\n"
    "  --from P     first position (also with --stream); default the durable head when\n"
    "               tail starts, so only events appended after it are shown (as tail -f)\n"
    "  --stream S   only stream S\n"
    "  --json       one JSON object per event: the envelope and \"payload\"\n"
    "  --schemas    the .avsc files (default $SKALD_SCHEMAS, else the installed ones)\n";
static const char REPAIR_USAGE[] =
    "Usage: skaldctl log repair --data DIR --truncate-at P [--yes]\n"
    "Removes every event at position P and after (cut back to the start of the append\n"
    "that holds P, so appends stay whole), and the indexes and checkpoint the next open\n"
    "rebuilds. For damage that `log verify` or the service reported: P is the position it\n"
    "names. Stop the service first. Asks for confirmation on a terminal; without one,\n"
    "--yes is required.\n";

static int open_ro(const ctl_opts *o, store_log **log)
{
    char dir[4096];
    store_config cfg;
    store_config_init(&cfg, ctl_log_dir(o, dir, sizeof dir));
    cfg.read_only = 1;
    sk_error err = {0};
    int rc = store_log_open(&cfg, log, &err);
    if (rc)
        return ctl_fail("cannot open the log in %s: %s (is --data the data directory?)", dir,
                        err.message[0] ? err.message : sk_strerror(rc));
    return 0;
}

typedef struct seg_print {
    bool json;
    json_t *list;
} seg_print;

static int print_segment(void *ctx, const store_segment_info *s)
{
    seg_print *p = ctx;
    if (p->json)
        json_array_append_new(p->list, json_pack("{s:s, s:I, s:I, s:I}", "file", s->name,
                                                 "first_position", (json_int_t)s->first_position,
                                                 "next_position", (json_int_t)s->next_position,
                                                 "bytes", (json_int_t)s->bytes));
    else
        printf("  %-26s %14" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n", s->name, s->first_position,
               s->next_position, s->bytes);
    return 0;
}

static int log_info(const ctl_opts *o)
{
    store_log *log;
    if (open_ro(o, &log))
        return CTL_FAILED;
    store_log_stats st;
    store_log_get_stats(log, &st);
    char dir[4096];
    ctl_log_dir(o, dir, sizeof dir);
    seg_print p = {.json = o->json, .list = json_array()};
    if (!o->json) {
        printf("log:            %s\n", dir);
        printf("segments:       %u\n", st.segments);
        printf("first position: %" PRIu64 "\n", st.first_position);
        if (st.next_position > st.first_position)
            printf("last position:  %" PRIu64 "\n", st.next_position - 1);
        else
            printf("last position:  (empty log)\n");
        printf("events:         %" PRIu64 "\n", st.next_position - st.first_position);
        printf("bytes:          %" PRIu64 "\n", st.bytes);
        printf("streams:        %" PRIu64 "\n", st.streams);
        if (st.corrupt)
            printf("damage:         at position %" PRIu64
                   "; events after it are not shown. Run `skaldctl log verify --data %s`\n",
                   st.corrupt_position, o->data);
        char marker[4200], text[1024] = "";
        snprintf(marker, sizeof marker, "%s/DAMAGED", dir);
        FILE *m = fopen(marker, "r");
        if (m) {
            size_t n = fread(text, 1, sizeof text - 1, m);
            text[n] = '\0';
            fclose(m);
            printf("refused:        writes are refused until repair: %s\n", text);
        }
        printf("  %-26s %14s %14s %14s\n", "SEGMENT", "FIRST", "NEXT", "BYTES");
    }
    store_log_segments(log, print_segment, &p);
    if (o->json) {
        json_t *j = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:o}", "log", dir, "first_position",
            (json_int_t)st.first_position, "next_position", (json_int_t)st.next_position, "events",
            (json_int_t)(st.next_position - st.first_position), "bytes", (json_int_t)st.bytes,
            "streams", (json_int_t)st.streams, "damaged", st.corrupt, "segments", p.list);
        if (st.corrupt)
            json_object_set_new(j, "damage_position",
                                json_integer((json_int_t)st.corrupt_position));
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(j);
    } else {
        json_decref(p.list);
    }
    store_log_close(log);
    return CTL_OK;
}

typedef struct verify_out {
    bool json;
} verify_out;

static void on_fault(void *ctx, const char *segment, uint64_t offset, const char *what)
{
    const verify_out *v = ctx;
    ctl_progress_end();
    if (v->json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:s}", "fault", "damage", "file", segment, "offset",
                              (json_int_t)offset, "what", what);
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(j);
    } else {
        printf("FAULT %s offset %" PRIu64 ": %s\n", segment, offset, what);
    }
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    ctl_progress("verifying segments", done, total);
}

static int log_verify(const ctl_opts *o)
{
    char dir[4096];
    ctl_log_dir(o, dir, sizeof dir);
    verify_out v = {.json = o->json};
    store_verify_report rep = {0};
    int rc = store_log_verify(dir, NULL, on_fault, on_progress, &v, &rep);
    ctl_progress_end();
    if (rc != 0 && rc != SK_ECORRUPT)
        return ctl_fail("cannot verify %s: %s (is --data the data directory?)", dir,
                        sk_strerror(rc));
    if (o->json) {
        printf("{\"segments\":%" PRIu64 ",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"faults\":%" PRIu64 "}\n",
               rep.segments, rep.records, rep.bytes, rep.faults);
    } else {
        printf("%s: %" PRIu64 " segments, %" PRIu64 " records, %" PRIu64 " bytes: %s\n", dir,
               rep.segments, rep.records, rep.bytes,
               rep.faults ? "DAMAGED" : "every record and index checks out");
        if (rep.faults)
            printf("%" PRIu64 " fault(s). To drop the damaged part and everything after it, stop "
                   "the service, save a copy of %s, and run `skaldctl log repair --data %s "
                   "--truncate-at P` with the first damaged position (from `skaldctl log info`).\n",
                   rep.faults, dir, o->data);
    }
    return rep.faults ? CTL_FAULTS : CTL_OK;
}

/* Text output never hands the terminal a control character from the log: a stream id or
 * type written before the id alphabet existed (or by another tool) may hold ESC, BEL or a
 * newline. Printable ASCII goes out as it is, a backslash as \\, any other byte as \xHH. */
static void print_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\')
            fputs("\\\\", stdout);
        else if (c >= 0x20 && c < 0x7f)
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}

static void print_event(const ctl_opts *o, const ev_registry *reg, const ev_event *ev)
{
    json_t *payload = NULL;
    sk_error err = {0};
    int rc =
        reg ? ev_payload_to_json(reg, ev->schema_id, ev->payload, ev->payload_size, &payload, &err)
            : SK_ENOTFOUND;
    if (rc != 0)
        payload = json_pack("{s:s}", "error", err.message[0] ? err.message : sk_strerror(rc));
    if (o->json) {
        json_t *j = ev_envelope_to_json(ev);
        json_object_set_new(j, "payload", payload);
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(j);
        return;
    }
    json_t *env = ev_envelope_to_json(ev);
    /* ASCII only: a payload string holding an escape sequence or a C1 control reaches the
     * terminal as \u001b, never as the sequence itself */
    char *p = json_dumps(payload, JSON_COMPACT | JSON_ENSURE_ASCII);
    printf("%-8" PRIu64 " ", ev->position);
    print_escaped(ev->stream_id.ptr, ev->stream_id.len);
    printf("@%" PRIu64 " ", ev->version);
    print_escaped(ev->type.ptr, ev->type.len);
    printf(" %s ", json_string_value(json_object_get(env, "occurred_at")));
    /* JSON_ENSURE_ASCII leaves DEL (0x7f) as it is; inside a JSON string \u007f is the
     * same character */
    for (const char *c = p ? p : "null"; *c; c++)
        if (*c == 0x7f)
            fputs("\\u007f", stdout);
        else
            putchar(*c);
    putchar('\n');
    free(p);
    json_decref(env);
    json_decref(payload);
}

static int log_dump(const ctl_opts *o)
{
    ev_registry *reg = NULL;
    sk_error err = {0};
    if (ev_registry_open_readonly(o->schemas, o->data, &reg, &err) != 0)
        fprintf(stderr, "skaldctl: payloads are not decoded: %s\n", err.message);
    store_log *log;
    if (open_ro(o, &log)) {
        ev_registry_destroy(reg);
        return CTL_FAILED;
    }
    store_reader *r = NULL;
    int rc = o->stream ? store_reader_open_stream(log, ev_str_of(o->stream),
                                                  o->has_from ? o->from : 1, &r)
                       : store_reader_open(log, o->has_from ? o->from : 0, &r);
    uint64_t n = 0;
    ev_event ev;
    while (rc == 0 && (!o->has_limit || n < o->limit)) {
        int got = store_reader_next(r, &ev, &err);
        if (got <= 0) {
            rc = got;
            break;
        }
        print_event(o, reg, &ev);
        n++;
    }
    int status = CTL_OK;
    if (rc < 0)
        status = ctl_fail("reading the log stopped after %" PRIu64 " events: %s", n,
                          err.message[0] ? err.message : sk_strerror(rc));
    store_reader_close(r);
    store_log_close(log);
    ev_registry_destroy(reg);
    return status;
}

/* The signal thread of log tail: it takes SIGINT and SIGTERM (blocked in every thread)
 * and stops the subscription, which wakes the main thread wherever it is. */
typedef struct tail_signals {
    sigset_t set;
    store_sub *sub;
    _Atomic int signo; /* the signal taken, 0 until then */
} tail_signals;

static void *tail_signal_thread(void *arg)
{
    tail_signals *ts = arg;
    int signo = 0;
    if (sigwait(&ts->set, &signo) == 0)
        atomic_store(&ts->signo, signo);
    store_sub_stop(ts->sub);
    return NULL;
}

/* An event written with a schema id the registry does not know: the service registered
 * it after tail opened the registry (a newer build). Reopen it, at most once per new id,
 * so a tail left running keeps decoding across an upgrade. */
static void tail_refresh_registry(const ctl_opts *o, ev_registry **reg, uint32_t schema_id,
                                  uint32_t *reloaded_for)
{
    ev_schema_info info;
    if ((*reg && ev_registry_find(*reg, schema_id, &info) == 0) || schema_id <= *reloaded_for)
        return;
    *reloaded_for = schema_id;
    ev_registry *fresh = NULL;
    sk_error err = {0};
    if (ev_registry_open_readonly(o->schemas, o->data, &fresh, &err) == 0) {
        ev_registry_destroy(*reg);
        *reg = fresh;
    }
}

static int log_tail(const ctl_opts *o)
{
    /* Block the signals before any thread exists, so every thread inherits the mask and
     * only sigwait takes them. A SIGINT ignored by the parent (a background job of a
     * shell) stays ignored. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1); /* from the main thread: the tail ended on its own */
    struct sigaction old;
    if (sigaction(SIGINT, NULL, &old) != 0 || old.sa_handler != SIG_IGN)
        sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    ev_registry *reg = NULL;
    sk_error err = {0};
    if (ev_registry_open_readonly(o->schemas, o->data, &reg, &err) != 0)
        fprintf(stderr, "skaldctl: payloads are not decoded: %s\n", err.message);
    store_log *log;
    if (open_ro(o, &log)) {
        ev_registry_destroy(reg);
        return CTL_FAILED;
    }
    uint64_t from = o->has_from ? o->from : store_log_durable_head(log);
    store_sub *sub = NULL;
    int rc = store_sub_open(log, from, &sub);
    if (rc) {
        store_log_close(log);
        ev_registry_destroy(reg);
        return ctl_fail("cannot follow the log: %s", sk_strerror(rc));
    }
    tail_signals ts = {.set = set, .sub = sub};
    pthread_t thread;
    rc = pthread_create(&thread, NULL, tail_signal_thread, &ts);
    if (rc) {
        store_sub_close(sub);
        store_log_close(log);
        ev_registry_destroy(reg);
        return ctl_fail("cannot start the signal thread: %s", strerror(rc));
    }

    int status = CTL_OK;
    uint32_t reloaded_for = 0;
    ev_event ev;
    for (;;) {
        rc = store_sub_next(sub, &ev, &err);
        if (rc == 1) {
            if (!o->stream || ev_str_eq(ev.stream_id, o->stream)) {
                tail_refresh_registry(o, &reg, ev.schema_id, &reloaded_for);
                print_event(o, reg, &ev);
            }
            continue;
        }
        if (rc == 0) {
            /* Caught up: what this batch printed reaches a pipe before tail sleeps. */
            if (fflush(stdout) != 0) {
                status = ctl_fail("cannot write the events: %s", strerror(errno));
                break;
            }
            rc = store_sub_wait(sub, -1);
            if (rc >= 0 || rc == SK_ECANCELED)
                continue; /* store_sub_next answers SK_ECANCELED after a stop */
            status = ctl_fail("waiting for the log at position %" PRIu64 " failed: %s",
                              store_sub_position(sub), sk_strerror(rc));
            break;
        }
        if (rc != SK_ECANCELED)
            status =
                ctl_fail("following the log stopped at position %" PRIu64 ": %s",
                         store_sub_position(sub), err.message[0] ? err.message : sk_strerror(rc));
        break;
    }
    if (fflush(stdout) != 0 && status == CTL_OK)
        status = ctl_fail("cannot write the events: %s", strerror(errno));
    /* On an error no signal came: send the thread one so that it ends (SIGUSR1, blocked in
     * every thread like the others, so only its sigwait takes it). */
    if (atomic_load(&ts.signo) == 0)
        pthread_kill(thread, SIGUSR1);
    pthread_join(thread, NULL);
    store_sub_close(sub);
    store_log_close(log);
    ev_registry_destroy(reg);
    return status;
}

static bool confirm(const char *question)
{
    fprintf(stderr, "%s [y/N] ", question);
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return false;
    return line[0] == 'y' || line[0] == 'Y';
}

static int log_repair(const ctl_opts *o)
{
    if (!o->has_truncate)
        return ctl_usage_error(REPAIR_USAGE, "log repair needs --truncate-at P");
    store_log *log;
    if (open_ro(o, &log))
        return CTL_FAILED;
    store_log_stats st;
    store_log_get_stats(log, &st);
    store_log_close(log);
    char dir[4096];
    ctl_log_dir(o, dir, sizeof dir);
    char question[8400];
    snprintf(question, sizeof question,
             "Remove every event at position %" PRIu64 " and after from %s (the log reads "
             "%" PRIu64 " events up to %s)?",
             o->truncate_at, dir, st.next_position, st.corrupt ? "the damage" : "its end");
    if (!o->yes) {
        if (!isatty(0))
            return ctl_usage_error(REPAIR_USAGE,
                                   "repair removes data: pass --yes when not on a terminal");
        if (!confirm(question)) {
            fprintf(stderr, "skaldctl: nothing changed\n");
            return CTL_FAILED;
        }
    }
    sk_error err = {0};
    int rc = store_log_repair(dir, NULL, o->truncate_at, &err);
    if (rc)
        return ctl_fail("repair failed: %s", err.message);
    if (open_ro(o, &log))
        return CTL_FAILED;
    store_log_get_stats(log, &st);
    store_log_close(log);
    printf("repaired %s: the log now ends at position %" PRIu64 " (next position %" PRIu64 ")%s\n",
           dir, st.next_position ? st.next_position - 1 : 0, st.next_position,
           st.corrupt ? "; damage remains before it: run `skaldctl log verify`" : "");
    return st.corrupt ? CTL_FAILED : CTL_OK;
}

int ctl_log(int argc, char **argv)
{
    static const char LOG_USAGE[] = "Usage: skaldctl log info|verify|dump|tail|repair [OPTIONS]\n";
    static const ctl_subcommand SUBS[] = {
        {"info", "data,json", INFO_USAGE, log_info},
        {"verify", "data,json", VERIFY_USAGE, log_verify},
        {"dump", "data,json,from,limit,stream,schemas", DUMP_USAGE, log_dump},
        {"tail", "data,json,from,stream,schemas", TAIL_USAGE, log_tail},
        {"repair", "data,truncate-at,yes", REPAIR_USAGE, log_repair},
    };
    return ctl_dispatch(argc, argv, LOG_USAGE, SUBS, sizeof SUBS / sizeof SUBS[0]);
}
