/*
 * config.c -- `skald serve` options: each flag also read from a SKALD_* variable, the flag
 * winning. One table drives parsing, the environment and --help, so they cannot drift.
 */
#include "service/serve_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

svc_config svc_cfg;

typedef enum opt_kind {
    OPT_ROLES,
    OPT_STR,
    OPT_U32,
    OPT_U64,
    OPT_LISTEN,
    OPT_FSYNC,
    OPT_LEVEL,
    OPT_SNAPSHOT_RULES,
    OPT_SOURCE,
    OPT_TRACE_EXPORTER,
    OPT_RATIO
} opt_kind;

typedef struct opt_def {
    const char *flag; /* "--data" */
    const char *env;  /* "SKALD_DATA" */
    opt_kind kind;
    void *target;
    uint64_t min, max;
    const char *help;
} opt_def;

static char listen_text[96] = "127.0.0.1:8080";
static const char *listen_ptr = listen_text;
static const char *fsync_text = "always";
static const char *level_text = "info";
static bool roles_given; /* --roles or SKALD_ROLES was set */

static const opt_def opts[] = {
    {"--data", "SKALD_DATA", OPT_STR, &svc_cfg.data_dir, 0, 0,
     "data directory: log/, schemas/, snapshots.db, idempotency/ (required)"},
    {"--listen", "SKALD_LISTEN", OPT_LISTEN, &listen_ptr, 0, 0,
     "HOST:PORT to listen on (default 127.0.0.1:8080; port 0 picks a free one)"},
    {"--schemas", "SKALD_SCHEMAS", OPT_STR, &svc_cfg.schemas_dir, 0, 0,
     "event schemas folder (default: the installed share/skald/events/schemas)"},
    {"--command-schemas", "SKALD_COMMAND_SCHEMAS", OPT_STR, &svc_cfg.command_schemas_dir, 0, 0,
     "command body schemas folder (default: the installed share/skald/commands/schemas)"},
    {"--tokens", "SKALD_TOKENS", OPT_STR, &svc_cfg.tokens_file, 0, 0,
     "bearer tokens file, lines 'TOKEN ROLE[,ROLE] PRINCIPAL' (without it: loopback only)"},
    {"--tls-cert", "SKALD_TLS_CERT", OPT_STR, &svc_cfg.tls_cert, 0, 0,
     "PEM certificate: serve HTTPS (with --tls-key)"},
    {"--tls-key", "SKALD_TLS_KEY", OPT_STR, &svc_cfg.tls_key, 0, 0, "PEM private key"},
    {"--fsync", "SKALD_FSYNC", OPT_FSYNC, &fsync_text, 0, 0,
     "always | interval | never (default always: acknowledged means on disk)"},
    {"--threads", "SKALD_THREADS", OPT_U32, &svc_cfg.threads, 1, 64,
     "HTTP threads, each with its own epoll loop (default: the number of cores)"},
    {"--queue-max", "SKALD_QUEUE_MAX", OPT_U32, &svc_cfg.queue_max, 1, 1000000,
     "commands in flight before new ones get 503 + Retry-After (default 4096)"},
    {"--body-max", "SKALD_BODY_MAX", OPT_U64, &svc_cfg.body_max, 64, 64ull << 20,
     "largest request body in bytes; larger gets 413 (default 1048576)"},
    {"--timeout", "SKALD_TIMEOUT", OPT_U32, &svc_cfg.timeout_s, 1, 3600,
     "seconds without a byte before a connection is closed (default 30)"},
    {"--request-timeout", "SKALD_REQUEST_TIMEOUT", OPT_U32, &svc_cfg.request_timeout_s, 1, 3600,
     "seconds for a request's head and body to arrive, however slowly (default 30)"},
    {"--conn-max", "SKALD_CONN_MAX", OPT_U32, &svc_cfg.conn_max, 1, 1000000,
     "open connections served in full (default 4096)"},
    {"--conn-reserve", "SKALD_CONN_RESERVE", OPT_U32, &svc_cfg.conn_reserve, 0, 100000,
     "connections past --conn-max for /healthz, /readyz and valid tokens (default 64)"},
    {"--reserve-timeout-ms", "SKALD_RESERVE_TIMEOUT_MS", OPT_U32, &svc_cfg.reserve_timeout_ms, 50,
     600000, "milliseconds for a request to arrive on a reserve connection (default 2000)"},
    {"--conn-per-ip", "SKALD_CONN_PER_IP", OPT_U32, &svc_cfg.conn_per_ip, 1, 1000000,
     "open connections from one client address; more are closed at once (default 1024)"},
    {"--pending-body-max", "SKALD_PENDING_BODY_MAX", OPT_U64, &svc_cfg.pending_body_max, 1024,
     1ull << 40,
     "bytes all request bodies may hold together; past it 503 + Retry-After (default "
     "67108864)"},
    {"--tls-priorities", "SKALD_TLS_PRIORITIES", OPT_STR, &svc_cfg.tls_priorities, 0, 0,
     "GnuTLS priorities (default: TLS 1.2/1.3, ECDHE, AEAD; docs/operations.md)"},
    {"--idempotency-window", "SKALD_IDEMPOTENCY_WINDOW", OPT_U64, &svc_cfg.idempotency_window_s, 1,
     365ull * 86400, "seconds an Idempotency-Key is remembered (default 86400)"},
    {"--snapshot-every", "SKALD_SNAPSHOT_EVERY", OPT_U32, &svc_cfg.snapshot_every, 0, 1000000,
     "events between snapshots of an aggregate, 0 for none (default 100)"},
    {"--snapshot-every-type", "SKALD_SNAPSHOT_EVERY_TYPE", OPT_SNAPSHOT_RULES, NULL, 0, 0,
     "per aggregate type, e.g. Product=50,Order=0 (overrides --snapshot-every)"},
    {"--cache-max", "SKALD_CACHE_MAX", OPT_U32, &svc_cfg.cache_max, 0, 100000000,
     "hot aggregates kept in memory (default 10000)"},
    {"--roles", "SKALD_ROLES", OPT_ROLES, &svc_cfg.roles, 0, 0,
     "what this process runs, from commands,projections,queries,feed,relay (default: all;\n"
     "relay only with --kafka-brokers)"},
    {"--models", "SKALD_MODELS", OPT_STR, &svc_cfg.models_dir, 0, 0,
     "read models' SQL files (default: the installed share/skald/projections/models)"},
    {"--feed-max", "SKALD_FEED_MAX", OPT_U32, &svc_cfg.feed_max, 1, 100000,
     "concurrent live-feed streams; more get 503 + Retry-After (default 1000)"},
    {"--feed-buffer", "SKALD_FEED_BUFFER", OPT_U64, &svc_cfg.feed_buffer_bytes, 4096, 64ull << 20,
     "bytes buffered per feed stream; a client that leaves it full 2 s overflows (default "
     "1048576)"},
    {"--feed-heartbeat-ms", "SKALD_FEED_HEARTBEAT_MS", OPT_U32, &svc_cfg.feed_heartbeat_ms, 100,
     3600000, "a ': heartbeat' comment on a feed stream silent this long (default 15000)"},
    {"--kafka-brokers", "SKALD_KAFKA_BROKERS", OPT_STR, &svc_cfg.kafka_brokers, 0, 0,
     "HOST:PORT,... of Kafka: turns the relay role on (default: no Kafka)"},
    {"--kafka-topic-prefix", "SKALD_KAFKA_TOPIC_PREFIX", OPT_STR, &svc_cfg.kafka_topic_prefix, 0, 0,
     "the relay publishes to <prefix>.events (default skald)"},
    {"--kafka-partitions", "SKALD_KAFKA_PARTITIONS", OPT_U32, &svc_cfg.kafka_partitions, 1, 10000,
     "partitions when the relay creates the topic (default 6)"},
    {"--kafka-replication", "SKALD_KAFKA_REPLICATION", OPT_U32, &svc_cfg.kafka_replication, 1, 32,
     "replication factor when the relay creates the topic (default 1)"},
    {"--kafka-config", "SKALD_KAFKA_CONFIG", OPT_STR, &svc_cfg.kafka_config, 0, 0,
     "file of extra librdkafka settings, NAME=VALUE lines (SASL, TLS, compression)"},
    {"--source", "SKALD_SOURCE", OPT_SOURCE, NULL, 0, 0,
     "log | kafka: where the read models' events come from (default log; kafka: a read\n"
     "replica of <prefix>.events on --kafka-brokers, roles projections,queries, no log)"},
    {"--trace-exporter", "SKALD_TRACE_EXPORTER", OPT_TRACE_EXPORTER, NULL, 0, 0,
     "none | otlp | zipkin: where spans go (default none: no spans recorded)"},
    {"--trace-endpoint", "SKALD_TRACE_ENDPOINT", OPT_STR, &svc_cfg.trace_endpoint, 0, 0,
     "http://HOST:PORT/PATH spans are POSTed to (default: 127.0.0.1:4318/v1/traces for\n"
     "otlp, 127.0.0.1:9411/api/v2/spans for zipkin)"},
    {"--trace-sample", "SKALD_TRACE_SAMPLE", OPT_RATIO, &svc_cfg.trace_sample, 0, 0,
     "ratio 0..1 of new traces recorded; an incoming traceparent decides for its own\n"
     "(default 1)"},
    {"--port-file", "SKALD_PORT_FILE", OPT_STR, &svc_cfg.port_file, 0, 0,
     "write the bound port here once ready"},
    {"--log-level", "SKALD_LOG_LEVEL", OPT_LEVEL, &level_text, 0, 0,
     "debug | info | warn | error (default info: one line per command)"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static void print_help(void)
{
    printf("Usage: skald serve --data DIR [--listen HOST:PORT] [options]\n"
           "\n"
           "Runs the HTTP service: commands, reads of the log, health and metrics\n"
           "(docs/http-api.md). Every option can also be set with the environment variable\n"
           "shown; a flag wins over its variable.\n"
           "\n");
    for (size_t i = 0; i < NOPTS; i++)
        printf("  %-22s %-26s %s\n", opts[i].flag, opts[i].env, opts[i].help);
    printf("  %-22s %-26s %s\n", "-h, --help", "", "print this help and exit");
    printf("\nSIGTERM or SIGINT: stop accepting, finish commands in flight, flush the log,\n"
           "exit 0. Exit status: 0 clean stop, 1 runtime failure, 2 usage error.\n");
}

static int usage_error(const char *flag, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *flag, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "skald serve: %s: ", flag);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'skald serve --help'\n", stderr);
    return -1;
}

static const char *const role_names[] = {"commands", "projections", "queries",
                                         "relay",    "sagas",       "feed"};

const char *svc_role_name(unsigned role)
{
    for (unsigned i = 0; i < 6; i++)
        if (role == 1u << i)
            return role_names[i];
    return "unknown";
}

int svc_roles_parse(const char *text, unsigned *out, sk_error *err)
{
    unsigned roles = 0;
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, ",");
        unsigned bit = 0;
        for (unsigned i = 0; i < 6 && !bit; i++)
            if (strlen(role_names[i]) == n && strncmp(p, role_names[i], n) == 0)
                bit = 1u << i;
        if (!bit)
            return sk_error_set(
                err, SK_EBADINPUT, "roles",
                "'%.*s' is not a role (commands, projections, queries, feed, relay)", (int)n, p);
        if (!(bit & SVC_SERVES_ALL))
            return sk_error_set(err, SK_EBADINPUT, "roles",
                                "the %s role does not exist in this version yet",
                                svc_role_name(bit));
        roles |= bit;
        p += n;
        if (*p == ',')
            p++;
    }
    if (!roles)
        return sk_error_set(err, SK_EBADINPUT, "roles", "name at least one role");
    *out = roles;
    return 0;
}

int svc_host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
        return 1;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static int parse_listen(const char *flag, const char *text)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof svc_cfg.listen_host)
        return usage_error(flag, "'%s' is not HOST:PORT", text);
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port > 65535)
        return usage_error(flag, "'%s' has no valid port (0..65535)", text);
    memcpy(svc_cfg.listen_host, text, (size_t)(colon - text));
    svc_cfg.listen_host[colon - text] = '\0';
    struct in_addr a;
    if (strcmp(svc_cfg.listen_host, "localhost") == 0)
        snprintf(svc_cfg.listen_host, sizeof svc_cfg.listen_host, "127.0.0.1");
    else if (inet_pton(AF_INET, svc_cfg.listen_host, &a) != 1)
        return usage_error(flag, "'%s': the host must be an IPv4 address or localhost", text);
    svc_cfg.listen_port = (uint16_t)port;
    return 0;
}

int svc_snapshot_rules_parse(const char *text, cmd_snapshot_rule *rules, size_t *count,
                             sk_error *err)
{
    *count = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char digits[16];
        size_t name_len = eq ? (size_t)(eq - p) : 0, num_len = eq ? len - name_len - 1 : 0;
        if (*count == CMD_SNAPSHOT_RULES_MAX || !eq || name_len == 0 ||
            name_len >= sizeof rules->aggregate || num_len == 0 || num_len >= sizeof digits)
            return sk_error_set(err, SK_EBADINPUT, "", "'%.*s' is not NAME=EVENTS (at most %d)",
                                (int)len, p, CMD_SNAPSHOT_RULES_MAX);
        memcpy(digits, eq + 1, num_len);
        digits[num_len] = '\0';
        char *stop;
        unsigned long every = strtoul(digits, &stop, 10);
        if (*stop || digits[0] == '-' || every > 1000000)
            return sk_error_set(err, SK_EBADINPUT, "", "'%s' is not a number of events 0..1000000",
                                digits);
        memcpy(rules[*count].aggregate, p, name_len);
        rules[*count].aggregate[name_len] = '\0';
        if (!cmd_aggregate_find(cmd_domains, rules[*count].aggregate))
            return sk_error_set(err, SK_EBADINPUT, "", "no aggregate '%s'",
                                rules[*count].aggregate);
        rules[*count].every = (uint32_t)every;
        (*count)++;
        p += len + (end ? 1 : 0);
    }
    return 0;
}

static int set_opt(const opt_def *o, const char *value)
{
    sk_error err;
    char *end;
    unsigned long long v;
    switch (o->kind) {
    case OPT_STR:
        if (!*value)
            return usage_error(o->flag, "%s", "must not be empty");
        *(const char **)o->target = value;
        return 0;
    case OPT_LISTEN:
        return parse_listen(o->flag, value);
    case OPT_FSYNC:
        if (store_fsync_mode_parse(value, &svc_cfg.fsync_mode) != 0)
            return usage_error(o->flag, "'%s' is not always, interval or never", value);
        return 0;
    case OPT_LEVEL:
        if (sk_log_level_parse(value, &svc_cfg.log_level) != 0)
            return usage_error(o->flag, "'%s' is not debug, info, warn or error", value);
        return 0;
    case OPT_ROLES:
        if (svc_roles_parse(value, &svc_cfg.roles, &err) != 0)
            return usage_error(o->flag, "%s", err.message);
        roles_given = true;
        return 0;
    case OPT_SOURCE:
        if (strcmp(value, "log") != 0 && strcmp(value, "kafka") != 0)
            return usage_error(o->flag, "'%s' is not log or kafka", value);
        svc_cfg.source_kafka = strcmp(value, "kafka") == 0;
        return 0;
    case OPT_SNAPSHOT_RULES:
        if (svc_snapshot_rules_parse(value, svc_cfg.snapshot_rules, &svc_cfg.nsnapshot_rules,
                                     &err) != 0)
            return usage_error(o->flag, "%s", err.message);
        return 0;
    case OPT_TRACE_EXPORTER:
        if (tr_exporter_parse(value, &svc_cfg.trace_exporter) != 0)
            return usage_error(o->flag, "'%s' is not none, otlp or zipkin", value);
        return 0;
    case OPT_RATIO: {
        errno = 0;
        double r = strtod(value, &end);
        if (errno || *end || end == value || !(r >= 0 && r <= 1))
            return usage_error(o->flag, "'%s' is not a ratio in 0..1", value);
        *(double *)o->target = r;
        return 0;
    }
    case OPT_U32:
    case OPT_U64:
        errno = 0;
        v = strtoull(value, &end, 10);
        if (errno || *end || end == value || value[0] == '-' || v < o->min || v > o->max) {
            return usage_error(o->flag, "'%s' is not a whole number in %llu..%llu", value,
                               (unsigned long long)o->min, (unsigned long long)o->max);
        }
        if (o->kind == OPT_U32)
            *(uint32_t *)o->target = (uint32_t)v;
        else
            *(uint64_t *)o->target = v;
        return 0;
    }
    return -1;
}

static void set_defaults(void)
{
    memset(&svc_cfg, 0, sizeof svc_cfg);
    svc_cfg.fsync_mode = STORE_FSYNC_ALWAYS;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    svc_cfg.threads = cores > 1 ? (uint32_t)(cores < 64 ? cores : 64) : 1;
    svc_cfg.queue_max = 4096;
    svc_cfg.body_max = 1u << 20;
    svc_cfg.timeout_s = 30;
    svc_cfg.request_timeout_s = 30;
    svc_cfg.conn_max = 4096;
    svc_cfg.conn_reserve = 64;
    svc_cfg.reserve_timeout_ms = 2000;
    svc_cfg.conn_per_ip = 1024;
    svc_cfg.pending_body_max = 64ull << 20;
    svc_cfg.idempotency_window_s = 86400;
    svc_cfg.snapshot_every = 100;
    svc_cfg.cache_max = 10000;
    svc_cfg.log_level = SK_LOG_INFO;
    svc_cfg.roles = SVC_SERVES_ALL;
    svc_cfg.feed_max = 1000;
    svc_cfg.feed_buffer_bytes = 1u << 20;
    svc_cfg.feed_heartbeat_ms = 15000;
    svc_cfg.trace_sample = 1.0;
    parse_listen("--listen", listen_text);
}

/* --source=kafka: a read replica has no log, so only the roles that need none. */
static int check_replica(void)
{
    if (!svc_cfg.kafka_brokers)
        return usage_error("--source", "%s",
                           "kafka needs --kafka-brokers (or SKALD_KAFKA_BROKERS)");
    if (!roles_given) {
        svc_cfg.roles = SVC_SERVES_PROJECTIONS | SVC_SERVES_QUERIES;
        return 0;
    }
    unsigned need_log = SVC_SERVES_COMMANDS | SVC_SERVES_RELAY | SVC_SERVES_SAGAS | SVC_SERVES_FEED;
    if (svc_cfg.roles & need_log) {
        for (unsigned bit = 1; bit <= SVC_SERVES_FEED; bit <<= 1)
            if (svc_cfg.roles & need_log & bit)
                return usage_error("--roles",
                                   "the %s role needs a local log; with --source=kafka run only "
                                   "projections,queries",
                                   svc_role_name(bit));
    }
    if (!(svc_cfg.roles & SVC_SERVES_PROJECTIONS))
        return usage_error("--source", "%s", "kafka feeds the projections role: add it to --roles");
    return 0;
}

int svc_config_parse(int argc, char **argv)
{
    set_defaults();
    roles_given = false;
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = getenv(opts[i].env);
        if (v && *v && set_opt(&opts[i], v) != 0)
            return usage_error(opts[i].env, "%s", "(from the environment) is invalid");
    }
    for (int a = 0; a < argc; a++) {
        if (strcmp(argv[a], "-h") == 0 || strcmp(argv[a], "--help") == 0) {
            print_help();
            return 1;
        }
        const opt_def *o = NULL;
        for (size_t i = 0; i < NOPTS && !o; i++)
            if (strcmp(argv[a], opts[i].flag) == 0)
                o = &opts[i];
        if (!o)
            return usage_error(argv[a], "%s", "unknown option");
        if (a + 1 >= argc)
            return usage_error(o->flag, "%s", "needs a value");
        if (set_opt(o, argv[++a]) != 0)
            return -1;
    }
    if (!svc_cfg.data_dir)
        return usage_error("--data", "%s", "is required (or set SKALD_DATA)");
    if (svc_cfg.source_kafka && check_replica() != 0)
        return -1;
    if ((svc_cfg.roles & SVC_SERVES_RELAY) && !svc_cfg.kafka_brokers) {
        if (roles_given)
            return usage_error("--roles", "%s", "the relay role needs --kafka-brokers");
        svc_cfg.roles &= ~(unsigned)SVC_SERVES_RELAY; /* the default runs without Kafka */
    }
    if (svc_cfg.pending_body_max < svc_cfg.body_max + 1)
        return usage_error("--pending-body-max", "must be larger than --body-max (%llu)",
                           (unsigned long long)svc_cfg.body_max);
    if (svc_cfg.trace_endpoint && strncmp(svc_cfg.trace_endpoint, "http://", 7) != 0)
        return usage_error("--trace-endpoint", "'%s' is not an http:// URL",
                           svc_cfg.trace_endpoint);
    if (!svc_cfg.tls_cert != !svc_cfg.tls_key)
        return usage_error("--tls-cert", "%s", "and --tls-key go together");
    if (!svc_cfg.tokens_file && !svc_host_is_loopback(svc_cfg.listen_host))
        return usage_error("--listen",
                           "refusing to listen on %s without --tokens: anyone who can "
                           "reach it could post commands. Give a tokens file or listen "
                           "on 127.0.0.1",
                           svc_cfg.listen_host);
    return 0;
}
