/*
 * skaldctl.h -- shared by the files of the admin tool: option parsing, output helpers and
 * the subcommand entry points. Each subcommand returns the process exit status.
 */
#ifndef SKALD_SKALDCTL_H
#define SKALD_SKALDCTL_H

#include "store/store.h"

#include <stdbool.h>
#include <stdio.h>

/* Exit statuses, documented in docs/skaldctl.md. */
enum {
    CTL_OK = 0,
    CTL_FAILED = 1, /* the command could not do its work; the message says why */
    CTL_USAGE = 2,  /* the command line is wrong */
    CTL_FAULTS = 3, /* verify found damage */
};

typedef struct ctl_opts {
    const char *data;    /* --data DIR or $SKALD_DATA */
    const char *schemas; /* --schemas DIR or $SKALD_SCHEMAS or the shipped ones (ev_shipped_path) */
    bool json;
    bool yes;
    bool help;
    bool has_from, has_limit, has_truncate;
    uint64_t from, limit, truncate_at;
    const char *stream;
    const char *aggregate; /* --aggregate NAME */
    bool all;              /* --all */
    const char *topic;     /* --topic NAME */
    const char *out;       /* --out DIR */
    bool from_kafka;       /* --from-kafka */
    const char *brokers;   /* --brokers HOST:PORT,... */
    const char *to;        /* --to DIR */
} ctl_opts;

/* Parses argv[first..] into opts with getopt_long, allowing only the flags named in
 * `allowed` (a string like "data,json,from"; a leading '?' makes --data optional). --name
 * VALUE and --name=VALUE both work. Prints the error and returns CTL_USAGE on a bad
 * command line; on --help prints usage, sets opts->help and returns CTL_OK. */
int ctl_parse(int argc, char **argv, int first, const char *allowed, const char *usage,
              ctl_opts *opts);
/* One subcommand of a command group ("log", "schemas", "snapshot"). */
typedef struct ctl_subcommand {
    const char *name;             /* "info" */
    const char *allowed;          /* its options, as ctl_parse takes them */
    const char *usage;            /* printed by --help */
    int (*run)(const ctl_opts *); /* the exit status */
} ctl_subcommand;

/* Runs `skaldctl GROUP SUB [OPTIONS]` (argv[1] is the group): finds SUB in subs, parses
 * its options with ctl_parse and runs it. `usage` is the group's (for GROUP --help). The
 * exit status: the subcommand's, or CTL_USAGE for a missing or unknown SUB (printed). */
int ctl_dispatch(int argc, char **argv, const char *usage, const ctl_subcommand *subs,
                 size_t count);
int ctl_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "<data>/log" into buf. */
const char *ctl_log_dir(const ctl_opts *o, char *buf, size_t size);
/* A one-line progress report on stderr: a bar on a terminal, a plain line otherwise. */
void ctl_progress(const char *what, uint64_t done, uint64_t total);
void ctl_progress_end(void);

int ctl_log(int argc, char **argv);
int ctl_schemas(int argc, char **argv);
int ctl_snapshot(int argc, char **argv);
int ctl_projection(int argc, char **argv);
int ctl_kafka(int argc, char **argv);
int ctl_saga(int argc, char **argv);
int ctl_restore(int argc, char **argv); /* restore_cmd.c; links skald_relay (librdkafka) */

/* http.c: one request to a running server (--server URL, --token T or NULL). 0 and *out
 * (out->body NULL if the answer is not JSON; the caller's), or a negative code with err. */
typedef struct ctl_http_reply {
    int status;
    json_t *body;
} ctl_http_reply;
int ctl_http_call(const char *server, const char *token, const char *method, const char *path,
                  const char *body, ctl_http_reply *out, sk_error *err);

#endif
