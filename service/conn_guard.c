/*
 * conn_guard.c -- keeps slow, silent and greedy connections from locking others out.
 *
 * libmicrohttpd's --timeout is an idle timeout: every byte received resets it, so a
 * client sending one byte every few seconds holds its connection (and a slot under the
 * connection cap) for ever. This file adds what it lacks:
 *
 *   - a deadline for a whole request: from the moment a connection is accepted (or its
 *     previous request ended) its next request's headers and body must have arrived
 *     within --request-timeout seconds, however the bytes trickle in. Once the route
 *     runs there is no deadline (a command waiting for the disk, a live feed);
 *   - a reserve: libmicrohttpd admits --conn-max + --conn-reserve connections; one
 *     accepted while --conn-max or more are open is a reserve connection. Its request
 *     must arrive within --reserve-timeout-ms, and it may only reach /healthz, /readyz or
 *     present a valid token (http.c checks that); so when the cap is full of attackers,
 *     a probe or a client with a token still gets in;
 *   - a budget for request bodies: the bytes held in request bodies, summed over every
 *     connection, stay under --pending-body-max (http.c takes from it as a body grows
 *     and gives back when the request ends).
 * The per-IP limit (--conn-per-ip) is libmicrohttpd's own.
 *
 * How a connection is closed: a reaper thread looks at the deadlines every
 * GUARD_TICK_MS and shuts the socket down (shutdown(2), not close): the connection's
 * own thread sees end of file and closes it the usual way. libmicrohttpd reports the
 * close (MHD_CONNECTION_NOTIFY_CLOSED) before it closes the descriptor, and the slot is
 * released under guard->mu, the lock the reaper holds while it shuts a socket down; so
 * the reaper never touches a descriptor number that was closed and reused.
 *
 * Slots: a fixed array, one per connection libmicrohttpd may admit, and a free list.
 * Their deadline is atomic: the connection's thread writes it, the reaper reads it.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define GUARD_TICK_MS 100

#define GUARD_ASSERT(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "skald: %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct svc_conn_slot {
    int fd;                     /* guarded by guard->mu; -1 when free */
    bool reserve;               /* set at start, read-only after */
    atomic_int_fast64_t due_us; /* monotonic deadline; 0: none */
    svc_conn_slot *next_free;   /* guarded by guard->mu */
};

struct svc_conn_guard {
    svc_conn_limits lim;
    pthread_mutex_t mu; /* guards the slots' fd, the free list, open, stop */
    pthread_cond_t wake;
    svc_conn_slot *slots, *free;
    size_t nslots;
    uint32_t open; /* connections with a slot */
    bool stop;
    pthread_t reaper;
    atomic_uint_fast64_t body_bytes; /* held in request bodies, all connections */
    atomic_uint_fast64_t reserve_total, deadline_total, body_refused_total, untracked_total;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t first_deadline(const svc_conn_guard *g, bool reserve)
{
    return now_us() + (reserve ? (int64_t)g->lim.reserve_timeout_ms * 1000
                               : (int64_t)g->lim.request_timeout_s * 1000000);
}

static void *reaper_main(void *arg)
{
    svc_conn_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        int64_t now = now_us();
        for (size_t i = 0; i < g->nslots; i++) {
            svc_conn_slot *s = &g->slots[i];
            int64_t due = atomic_load(&s->due_us);
            if (s->fd < 0 || due == 0 || due > now)
                continue;
            atomic_store(&s->due_us, 0); /* once */
            (void)shutdown(s->fd, SHUT_RDWR);
            atomic_fetch_add(&g->deadline_total, 1);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += GUARD_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->wake, &g->mu, &until);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int svc_conn_guard_create(const svc_conn_limits *lim, svc_conn_guard **out)
{
    GUARD_ASSERT(lim->conn_max > 0);
    svc_conn_guard *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->lim = *lim;
    g->nslots = (size_t)lim->conn_max + lim->conn_reserve;
    g->slots = calloc(g->nslots, sizeof *g->slots);
    if (!g->slots) {
        free(g);
        return -ENOMEM;
    }
    for (size_t i = g->nslots; i-- > 0;) {
        g->slots[i].fd = -1;
        g->slots[i].next_free = g->free;
        g->free = &g->slots[i];
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->wake, NULL);
    int rc = pthread_create(&g->reaper, NULL, reaper_main, g);
    if (rc != 0) {
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->mu);
        free(g->slots);
        free(g);
        return -rc;
    }
    *out = g;
    return 0;
}

void svc_conn_guard_destroy(svc_conn_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->reaper, NULL);
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->mu);
    free(g->slots);
    free(g);
}

static void on_started(svc_conn_guard *g, struct MHD_Connection *conn, void **socket_context)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    pthread_mutex_lock(&g->mu);
    svc_conn_slot *s = ci ? g->free : NULL;
    if (s) {
        g->free = s->next_free;
        s->fd = ci->connect_fd;
        s->reserve = g->open >= g->lim.conn_max;
        atomic_store(&s->due_us, first_deadline(g, s->reserve));
        g->open++;
    }
    pthread_mutex_unlock(&g->mu);
    if (!s) /* libmicrohttpd admits at most nslots; kept in case that ever differs */
        atomic_fetch_add(&g->untracked_total, 1);
    else if (s->reserve)
        atomic_fetch_add(&g->reserve_total, 1);
    *socket_context = s;
}

static void on_closed(svc_conn_guard *g, void **socket_context)
{
    svc_conn_slot *s = *socket_context;
    if (!s)
        return;
    pthread_mutex_lock(&g->mu);
    s->fd = -1;
    atomic_store(&s->due_us, 0);
    s->next_free = g->free;
    g->free = s;
    g->open--;
    pthread_mutex_unlock(&g->mu);
    *socket_context = NULL;
}

void svc_conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode code)
{
    svc_conn_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        on_started(g, conn, socket_context);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        on_closed(g, socket_context);
}

svc_conn_slot *svc_conn_slot_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

bool svc_conn_is_reserve(const svc_conn_slot *s)
{
    return s && s->reserve;
}

void svc_conn_request_running(svc_conn_slot *s)
{
    if (s)
        atomic_store(&s->due_us, 0);
}

void svc_conn_request_ended(svc_conn_guard *g, svc_conn_slot *s)
{
    if (s)
        atomic_store(&s->due_us, first_deadline(g, s->reserve));
}

int svc_conn_body_take(svc_conn_guard *g, uint64_t bytes)
{
    uint64_t held = atomic_fetch_add(&g->body_bytes, bytes);
    if (held + bytes <= g->lim.pending_body_max)
        return 0;
    atomic_fetch_sub(&g->body_bytes, bytes);
    atomic_fetch_add(&g->body_refused_total, 1);
    return SK_EBUSY;
}

void svc_conn_body_give(svc_conn_guard *g, uint64_t bytes)
{
    GUARD_ASSERT(atomic_load(&g->body_bytes) >= bytes);
    atomic_fetch_sub(&g->body_bytes, bytes);
}

char *svc_metrics_conns(svc_conn_guard *g, char *text)
{
    if (!g || !text)
        return text;
    pthread_mutex_lock(&g->mu);
    uint32_t open = g->open;
    pthread_mutex_unlock(&g->mu);
    return svc_metrics_append(
        text,
        "# HELP skald_http_connections Open HTTP connections.\n"
        "# TYPE skald_http_connections gauge\n"
        "skald_http_connections %u\n"
        "# HELP skald_http_reserve_connections_total Connections accepted past --conn-max.\n"
        "# TYPE skald_http_reserve_connections_total counter\n"
        "skald_http_reserve_connections_total %llu\n"
        "# HELP skald_http_request_deadline_closes_total Connections closed because a request "
        "did not arrive in time.\n"
        "# TYPE skald_http_request_deadline_closes_total counter\n"
        "skald_http_request_deadline_closes_total %llu\n"
        "# HELP skald_http_body_bytes Bytes held in request bodies.\n"
        "# TYPE skald_http_body_bytes gauge\n"
        "skald_http_body_bytes %llu\n"
        "# HELP skald_http_body_refused_total Requests refused because bodies held "
        "--pending-body-max.\n"
        "# TYPE skald_http_body_refused_total counter\n"
        "skald_http_body_refused_total %llu\n",
        open, (unsigned long long)atomic_load(&g->reserve_total),
        (unsigned long long)atomic_load(&g->deadline_total),
        (unsigned long long)atomic_load(&g->body_bytes),
        (unsigned long long)atomic_load(&g->body_refused_total));
}
