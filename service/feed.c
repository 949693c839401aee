/*
 * feed.c -- the live feed's engine: a few feed threads follow the log for every open
 * GET /v1/events/stream and hand the text to libmicrohttpd through bounded buffers.
 *
 * Why threads of their own: a stream waits far longer than it works, and libmicrohttpd's
 * threads must never wait for the disk. Each stream (a "client") has a store subscription;
 * each feed thread (FEED_THREADS of them) waits on the subscriptions of its clients with
 * one epoll set, reads what became durable, keeps what the client's filters want, and
 * appends it to the client's buffer as SSE text. The content-reader callback of the
 * client's response (an MHD thread) drains that buffer; when it is empty the callback
 * suspends the connection, and the feed thread resumes it when it appends. Nothing polls.
 *
 * A client's buffer is bounded (--feed-buffer). When the next message does not fit, the
 * feed thread stops reading that client's subscription (its epoll interest is switched
 * off) until the callback has drained the buffer to half, and then goes on; catching up
 * from far back therefore runs at the client's pace. A client whose buffer stays full for
 * FEED_STALL_MS is slow: it gets "event: overflow" with the position to resume from,
 * after what is already in its buffer, and the stream ends. The socket's send buffer is
 * capped to the same size, since the kernel would otherwise let it grow to megabytes.
 * Writers never wait for a client: each client reads the log through its own
 * subscription.
 *
 * Rendering an event (Avro payload to JSON) costs far more than reading it, and clients
 * following the head all want the same events: each feed thread keeps the text of the
 * last FEED_CACHE_SLOTS events it rendered, by position.
 *
 * Lifetime of a client: two references, the response's (dropped when libmicrohttpd frees
 * the response: the connection is done with it) and the feed thread's (dropped when the
 * thread has seen that, or when it exits). The last one frees the client and makes room
 * under --feed-max. The thread closes the subscription (always before the log closes).
 *
 * Locks: client->mu guards the buffer and the suspended/end state between the feed thread
 * and the MHD thread of the connection; thread->mu guards the thread's ready list (clients
 * handed over, drained, or gone). Neither is held while taking the other, and
 * MHD_resume_connection is called with neither held.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FEED_THREADS     2
#define FEED_CACHE_SLOTS 4096 /* a power of two */
#define FEED_PASS_EVENTS 512  /* events read for one client before the others get a turn */
#define FEED_STALL_MS    2000 /* a buffer full this long means a slow client */
#define FEED_BUFFER_MIN  16384
#define FEED_EPOLL_BATCH 64

_Static_assert((FEED_CACHE_SLOTS & (FEED_CACHE_SLOTS - 1)) == 0, "slots by position mask");

#define FEED_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "skald: %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum feed_end { END_NONE = 0, END_STOP, END_OVERFLOW, END_ERROR };

typedef struct feed_thread feed_thread;

typedef struct feed_client {
    /* set at open, then read-only */
    svc_feed *feed;
    feed_thread *thread;
    struct MHD_Connection *conn;
    svc_feed_spec spec;
    size_t stream_id_len, prefix_len, type_len;

    /* feed thread only */
    store_sub *sub;                    /* NULL once the stream ended */
    struct feed_client *prev, *next;   /* the thread's clients */
    struct feed_client *busy_next;     /* more to read after its pass */
    struct feed_client *taken_next;    /* in the ready list being worked through */
    struct feed_client *grave_next;    /* dropped, its last reference let go after the pass */
    bool registered, dropped, in_busy; /* dropped: gone, and off the thread's lists */
    bool watching;                     /* its sub fd is in the epoll set with EPOLLIN */
    char *pending;                     /* a message that did not fit, with its position */
    size_t pending_len;
    uint64_t pending_position;
    int64_t full_since_ms; /* 0: not waiting for room */
    int64_t heartbeat_ms;  /* when a heartbeat is due */

    /* guarded by thread->mu */
    struct feed_client *ready_next;
    bool ready_queued;
    bool gone; /* the response was freed: the connection is done with this client */

    /* guarded by mu */
    pthread_mutex_t mu;
    char *buf; /* text to send: buf[head .. head + len) */
    size_t head, len, alloc;
    bool suspended; /* the connection waits in on_read for text */
    bool want_room; /* the feed thread waits for len <= limit / 2 */
    int end;        /* enum feed_end: after buf (and tail), the stream ends */
    char tail[96];  /* the overflow message, sent after buf */
    size_t tail_len, tail_sent;

    atomic_int refs;
} feed_client;

typedef struct cache_slot {
    uint64_t position; /* UINT64_MAX: empty */
    char *text;
    size_t len;
} cache_slot;

struct feed_thread {
    svc_feed *feed;
    pthread_t tid;
    int epfd, wakefd;
    /* feed thread only */
    feed_client *clients, *busy;
    /* Dropped clients whose last reference goes at the end of the loop's pass: an epoll
     * event of the same batch may still name one (pump then sees it has no sub). */
    feed_client *graveyard;
    cache_slot *cache;
    int64_t next_scan_ms;
    /* guarded by mu */
    pthread_mutex_t mu;
    feed_client *ready;
    bool running;
};

struct svc_feed {
    svc_app *app;
    feed_thread threads[FEED_THREADS];
    int nthreads;
    bool started[FEED_THREADS];
    atomic_uint next_thread;
    atomic_uint active; /* open streams, against --feed-max */
    atomic_bool stopping;
    atomic_uint_fast64_t opened_total, overflow_total;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void client_unref(feed_client *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    FEED_ASSERT(c->sub == NULL);
    svc_feed *feed = c->feed;
    free(c->pending);
    free(c->buf);
    pthread_mutex_destroy(&c->mu);
    free(c);
    atomic_fetch_sub(&feed->active, 1);
}

/* Hands c to its thread's ready list (from any thread); gone: the response was freed.
 * false if the thread has exited. Setting gone and queueing happen under one lock, so
 * the thread that sees gone also sees whether the client is still queued. */
static bool thread_notify(feed_thread *t, feed_client *c, bool gone)
{
    pthread_mutex_lock(&t->mu);
    c->gone |= gone;
    bool running = t->running;
    if (running && !c->ready_queued) {
        c->ready_queued = true;
        c->ready_next = t->ready;
        t->ready = c;
    }
    pthread_mutex_unlock(&t->mu);
    if (running) {
        uint64_t one = 1;
        ssize_t n = write(t->wakefd, &one, sizeof one);
        (void)n; /* a full eventfd counter is already a pending wake-up */
    }
    return running;
}

/* ---------------------------------------------------------------------------------------
 * The MHD side: the content reader and the response's free callback.
 */
static ssize_t on_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    feed_client *c = cls;
    size_t limit = svc_cfg.feed_buffer_bytes;
    pthread_mutex_lock(&c->mu);
    if (c->len) {
        size_t n = c->len < max ? c->len : max;
        memcpy(out, c->buf + c->head, n);
        c->head += n;
        c->len -= n;
        if (c->len == 0)
            c->head = 0;
        bool room = c->want_room && c->len <= limit / 2;
        if (room)
            c->want_room = false;
        pthread_mutex_unlock(&c->mu);
        if (room)
            thread_notify(c->thread, c, false);
        return (ssize_t)n;
    }
    if (c->end) {
        size_t n = c->tail_len - c->tail_sent;
        n = n < max ? n : max;
        memcpy(out, c->tail + c->tail_sent, n);
        c->tail_sent += n;
        int end = c->end;
        pthread_mutex_unlock(&c->mu);
        if (n)
            return (ssize_t)n;
        /* a failed stream is cut, not ended, so the client sees it and reconnects */
        return end == END_ERROR ? MHD_CONTENT_READER_END_WITH_ERROR
                                : MHD_CONTENT_READER_END_OF_STREAM;
    }
    c->suspended = true;
    MHD_suspend_connection(c->conn);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void on_response_free(void *cls)
{
    feed_client *c = cls;
    thread_notify(c->thread, c, true);
    client_unref(c);
}

/* Resumes the connection if it waits for text (feed thread). */
static void wake_connection(feed_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool resume = c->suspended && (c->len || c->end);
    if (resume)
        c->suspended = false;
    pthread_mutex_unlock(&c->mu);
    /* still suspended until this call, so the connection is alive */
    if (resume)
        MHD_resume_connection(c->conn);
}

/* ---------------------------------------------------------------------------------------
 * The feed thread.
 */

/* Appends one message; false when it does not fit (the buffer holds at most
 * --feed-buffer bytes, or one message of any size when empty). */
static bool client_append(feed_client *c, const char *text, size_t n)
{
    size_t limit = svc_cfg.feed_buffer_bytes;
    bool ok = true;
    pthread_mutex_lock(&c->mu);
    if (c->len && c->len + n > limit) {
        c->want_room = true;
        ok = false;
    } else {
        if (c->head + c->len + n > c->alloc && c->head) {
            memmove(c->buf, c->buf + c->head, c->len);
            c->head = 0;
        }
        if (c->len + n > c->alloc) {
            size_t want = c->alloc ? c->alloc : FEED_BUFFER_MIN;
            while (want < c->len + n)
                want *= 2;
            if (want > limit && c->len + n <= limit)
                want = limit;
            char *grown = realloc(c->buf, want);
            if (grown) {
                c->buf = grown;
                c->alloc = want;
            } else {
                ok = false; /* treated as no room: the client waits, then overflows */
                c->want_room = c->len > 0;
            }
        }
        if (ok) {
            memcpy(c->buf + c->head + c->len, text, n);
            c->len += n;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* Switches the epoll interest in c's subscription on or off (it stays in the set). */
static void watch(feed_thread *t, feed_client *c, bool on)
{
    if (!c->sub || c->watching == on)
        return;
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = c};
    int rc = epoll_ctl(t->epfd, EPOLL_CTL_MOD, store_sub_fd(c->sub), &ev);
    FEED_ASSERT(rc == 0);
    c->watching = on;
}

/* Ends the stream: no more reading; what is buffered, then tail, then the end. */
static void client_end(feed_thread *t, feed_client *c, int why, const char *tail)
{
    if (c->sub) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, store_sub_fd(c->sub), NULL);
        store_sub_close(c->sub);
        c->sub = NULL;
        c->watching = false;
    }
    free(c->pending);
    c->pending = NULL;
    c->full_since_ms = 0;
    pthread_mutex_lock(&c->mu);
    if (!c->end) {
        c->end = why;
        if (tail)
            c->tail_len = (size_t)snprintf(c->tail, sizeof c->tail, "%s", tail);
    }
    pthread_mutex_unlock(&c->mu);
    wake_connection(c);
}

static bool matches(const feed_client *c, const ev_event *ev)
{
    const svc_feed_spec *s = &c->spec;
    if (c->stream_id_len && (ev->stream_id.len != c->stream_id_len ||
                             memcmp(ev->stream_id.ptr, s->stream_id, c->stream_id_len) != 0))
        return false;
    if (c->prefix_len && (ev->stream_id.len < c->prefix_len ||
                          memcmp(ev->stream_id.ptr, s->stream_prefix, c->prefix_len) != 0))
        return false;
    if (c->type_len &&
        (ev->type.len != c->type_len || memcmp(ev->type.ptr, s->type, c->type_len) != 0))
        return false;
    return true;
}

/* The SSE message of ev ("id: P\ndata: ENVELOPE\n\n"), rendered once per thread; the
 * slot's text stays valid until the next render on this thread. */
static const cache_slot *render(feed_thread *t, const ev_event *ev, sk_error *err)
{
    cache_slot *s = &t->cache[ev->position & (FEED_CACHE_SLOTS - 1)];
    if (s->position == ev->position && s->text)
        return s;
    json_t *o = svc_event_json(t->feed->app, ev, err);
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!json)
        return NULL;
    size_t jlen = strlen(json);
    char *text = malloc(jlen + 48);
    if (!text) {
        free(json);
        return NULL;
    }
    int n =
        snprintf(text, jlen + 48, "id: %llu\ndata: %s\n\n", (unsigned long long)ev->position, json);
    free(json);
    free(s->text);
    s->text = text;
    s->len = (size_t)n;
    s->position = ev->position;
    return s;
}

static void log_end(const feed_client *c, const char *msg, const char *detail)
{
    svc_log(SK_LOG_WARN, msg, "request_id", c->spec.request_id, "detail", detail, SVC_END);
}

/* Reads c's subscription into its buffer, at most FEED_PASS_EVENTS events. */
static void pump(feed_thread *t, feed_client *c, int64_t now)
{
    if (!c->sub)
        return;
    bool appended = false, full = false;
    int i = 0;
    for (; i < FEED_PASS_EVENTS; i++) {
        if (c->pending) {
            if (!client_append(c, c->pending, c->pending_len)) {
                full = true;
                break;
            }
            free(c->pending);
            c->pending = NULL;
            appended = true;
            continue;
        }
        ev_event ev;
        sk_error err = {0};
        int rc = store_sub_next(c->sub, &ev, &err);
        if (rc == 0)
            break; /* caught up: its fd is signalled when more is durable */
        if (rc < 0) {
            if (rc != SK_ECANCELED)
                log_end(c, "feed: the subscription failed; the stream ends", err.message);
            client_end(t, c, rc == SK_ECANCELED ? END_STOP : END_ERROR, NULL);
            return;
        }
        if (!matches(c, &ev))
            continue;
        const cache_slot *s = render(t, &ev, &err);
        if (!s) {
            log_end(c, "feed: cannot render an event; the stream ends",
                    err.message[0] ? err.message : "out of memory");
            client_end(t, c, END_ERROR, NULL);
            return;
        }
        if (client_append(c, s->text, s->len)) {
            appended = true;
            continue;
        }
        /* keep it until there is room: the slot may be reused before then */
        c->pending = malloc(s->len);
        if (!c->pending) {
            client_end(t, c, END_ERROR, NULL);
            return;
        }
        memcpy(c->pending, s->text, s->len);
        c->pending_len = s->len;
        c->pending_position = ev.position;
        full = true;
        break;
    }
    if (full) {
        /* on_read hands it back when the buffer is half empty; else it overflows */
        if (!c->full_since_ms) {
            c->full_since_ms = now;
            if (now + FEED_STALL_MS < t->next_scan_ms)
                t->next_scan_ms = now + FEED_STALL_MS;
        }
        watch(t, c, false);
    } else {
        c->full_since_ms = 0;
        watch(t, c, true);
        if (i == FEED_PASS_EVENTS && !c->in_busy) {
            /* there may be more: come back after the others had their turn */
            c->in_busy = true;
            c->busy_next = t->busy;
            t->busy = c;
        }
    }
    if (appended) {
        c->heartbeat_ms = now + svc_cfg.feed_heartbeat_ms;
        wake_connection(c);
    }
}

static void overflow(feed_thread *t, feed_client *c)
{
    char tail[96], pos[24];
    snprintf(tail, sizeof tail, "event: overflow\ndata: {\"resume_from\":%llu}\n\n",
             (unsigned long long)c->pending_position);
    snprintf(pos, sizeof pos, "%llu", (unsigned long long)c->pending_position);
    atomic_fetch_add(&t->feed->overflow_total, 1);
    svc_log(SK_LOG_WARN, "feed: a slow client's buffer stayed full; overflow sent, stream ends",
            "request_id", c->spec.request_id, "resume_from", pos, SVC_END);
    client_end(t, c, END_OVERFLOW, tail);
}

/* Heartbeats and overflows that are due; sets the time of the next scan. */
static void scan(feed_thread *t, int64_t now)
{
    int64_t next = now + svc_cfg.feed_heartbeat_ms;
    for (feed_client *c = t->clients; c; c = c->next) {
        if (!c->sub)
            continue;
        if (c->full_since_ms && now - c->full_since_ms >= FEED_STALL_MS) {
            overflow(t, c);
            continue;
        }
        if (c->full_since_ms && c->full_since_ms + FEED_STALL_MS < next)
            next = c->full_since_ms + FEED_STALL_MS;
        if (now >= c->heartbeat_ms) {
            pthread_mutex_lock(&c->mu);
            bool idle = c->len == 0;
            pthread_mutex_unlock(&c->mu);
            if (idle && client_append(c, ": heartbeat\n\n", 13))
                wake_connection(c);
            c->heartbeat_ms = now + svc_cfg.feed_heartbeat_ms;
        }
        if (c->heartbeat_ms < next)
            next = c->heartbeat_ms;
    }
    t->next_scan_ms = next;
}

static void unlink_client(feed_thread *t, feed_client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        t->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void register_client(feed_thread *t, feed_client *c, int64_t now)
{
    c->registered = true;
    c->next = t->clients;
    if (t->clients)
        t->clients->prev = c;
    t->clients = c;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    int rc = epoll_ctl(t->epfd, EPOLL_CTL_ADD, store_sub_fd(c->sub), &ev);
    FEED_ASSERT(rc == 0);
    c->watching = true;
    c->heartbeat_ms = now + svc_cfg.feed_heartbeat_ms;
    if (c->heartbeat_ms < t->next_scan_ms)
        t->next_scan_ms = c->heartbeat_ms;
}

/* Off the thread's lists, its subscription closed; the ref is dropped by the caller. */
static void drop_client(feed_thread *t, feed_client *c)
{
    client_end(t, c, END_STOP, NULL);
    unlink_client(t, c);
    if (c->in_busy) {
        for (feed_client **p = &t->busy; *p; p = &(*p)->busy_next)
            if (*p == c) {
                *p = c->busy_next;
                break;
            }
        c->in_busy = false;
    }
    c->dropped = true;
}

/* The clients handed to this thread: new ones, drained ones, gone ones. */
static void take_ready(feed_thread *t, int64_t now)
{
    uint64_t count;
    ssize_t n = read(t->wakefd, &count, sizeof count);
    (void)n;
    pthread_mutex_lock(&t->mu);
    feed_client *list = NULL;
    for (feed_client *c = t->ready; c; c = c->ready_next) {
        c->ready_queued = false;
        c->taken_next = list;
        list = c;
    }
    t->ready = NULL;
    pthread_mutex_unlock(&t->mu);
    while (list) {
        feed_client *c = list;
        list = c->taken_next;
        if (!c->registered)
            register_client(t, c, now);
        pthread_mutex_lock(&t->mu);
        bool gone = c->gone, queued = c->ready_queued;
        pthread_mutex_unlock(&t->mu);
        if (!gone) {
            pump(t, c, now);
            continue;
        }
        if (!c->dropped)
            drop_client(t, c);
        /* gone is the last notice a client gets; if it is queued again, the ref is
         * dropped when that entry is taken */
        if (!queued) {
            c->grave_next = t->graveyard;
            t->graveyard = c;
        }
    }
}

/* Lets go of the clients dropped during this pass. */
static void bury(feed_thread *t)
{
    while (t->graveyard) {
        feed_client *c = t->graveyard;
        t->graveyard = c->grave_next;
        client_unref(c);
    }
}

static void *feed_main(void *arg)
{
    feed_thread *t = arg;
    struct epoll_event evs[FEED_EPOLL_BATCH];
    while (!atomic_load(&t->feed->stopping)) {
        int64_t now = now_ms();
        int timeout = t->busy ? 0 : (int)(t->next_scan_ms > now ? t->next_scan_ms - now : 0);
        int n = epoll_wait(t->epfd, evs, FEED_EPOLL_BATCH, timeout);
        now = now_ms();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                take_ready(t, now);
            else
                pump(t, evs[i].data.ptr, now);
        }
        /* the clients whose last pass stopped at its limit, once each */
        feed_client *busy = t->busy;
        t->busy = NULL;
        while (busy) {
            feed_client *c = busy;
            busy = c->busy_next;
            c->in_busy = false;
            pump(t, c, now);
        }
        if (now >= t->next_scan_ms)
            scan(t, now);
        bury(t);
    }
    /* Stopping: nothing is queued from now on; every stream ends after what it has
     * buffered, and the thread lets go of its clients. */
    pthread_mutex_lock(&t->mu);
    t->running = false;
    pthread_mutex_unlock(&t->mu);
    take_ready(t, now_ms());
    while (t->clients) {
        feed_client *c = t->clients;
        drop_client(t, c);
        client_unref(c);
    }
    bury(t); /* the clients take_ready dropped: no longer among t->clients */
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Opening, stopping.
 */
int svc_feed_create(svc_app *app, svc_feed **out, sk_error *err)
{
    svc_feed *feed = calloc(1, sizeof *feed);
    if (!feed)
        return sk_error_set(err, -ENOMEM, "", "out of memory");
    feed->app = app;
    int rc = 0;
    for (int i = 0; i < FEED_THREADS && rc == 0; i++) {
        feed_thread *t = &feed->threads[i];
        t->feed = feed;
        pthread_mutex_init(&t->mu, NULL);
        t->epfd = epoll_create1(EPOLL_CLOEXEC);
        t->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        t->cache = calloc(FEED_CACHE_SLOTS, sizeof *t->cache);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (t->epfd < 0 || t->wakefd < 0 || !t->cache ||
            epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->wakefd, &ev) != 0) {
            rc = t->cache ? -errno : -ENOMEM;
        } else {
            for (size_t s = 0; s < FEED_CACHE_SLOTS; s++)
                t->cache[s].position = UINT64_MAX;
            t->next_scan_ms = now_ms() + svc_cfg.feed_heartbeat_ms;
            t->running = true;
            rc = -pthread_create(&t->tid, NULL, feed_main, t);
            if (rc)
                t->running = false;
            feed->started[i] = rc == 0;
        }
        feed->nthreads = i + 1;
    }
    if (rc) {
        svc_feed_stop(feed, 0);
        svc_feed_destroy(feed);
        return sk_error_set(err, rc, "", "cannot start the feed threads: %s", sk_strerror(rc));
    }
    *out = feed;
    return 0;
}

void svc_feed_stop(svc_feed *feed, uint32_t timeout_ms)
{
    if (!feed || atomic_exchange(&feed->stopping, true))
        return;
    for (int i = 0; i < feed->nthreads; i++) {
        feed_thread *t = &feed->threads[i];
        uint64_t one = 1;
        if (t->wakefd >= 0) {
            ssize_t n = write(t->wakefd, &one, sizeof one);
            (void)n;
        }
    }
    for (int i = 0; i < feed->nthreads; i++) {
        if (feed->started[i])
            pthread_join(feed->threads[i].tid, NULL);
        feed->started[i] = false;
    }
    /* the streams were ended; give their connections a moment to send the last bytes */
    for (uint32_t waited = 0; waited < timeout_ms && atomic_load(&feed->active); waited += 10)
        usleep(10000);
}

void svc_feed_destroy(svc_feed *feed)
{
    if (!feed)
        return;
    for (int i = 0; i < feed->nthreads; i++) {
        feed_thread *t = &feed->threads[i];
        FEED_ASSERT(!t->running);
        if (t->cache)
            for (size_t s = 0; s < FEED_CACHE_SLOTS; s++)
                free(t->cache[s].text);
        free(t->cache);
        if (t->epfd >= 0)
            close(t->epfd);
        if (t->wakefd >= 0)
            close(t->wakefd);
        pthread_mutex_destroy(&t->mu);
    }
    free(feed);
}

int svc_feed_open(svc_feed *feed, struct MHD_Connection *conn, const svc_feed_spec *spec,
                  struct MHD_Response **out, sk_error *err)
{
    if (atomic_load(&feed->stopping))
        return sk_error_set(err, SK_ECLOSED, "", "the server is shutting down");
    if (atomic_fetch_add(&feed->active, 1) >= svc_cfg.feed_max) {
        atomic_fetch_sub(&feed->active, 1);
        return sk_error_set(err, SK_EBUSY, "", "%u streams are open, the most this server serves",
                            (unsigned)svc_cfg.feed_max);
    }
    feed_client *c = calloc(1, sizeof *c);
    if (!c) {
        atomic_fetch_sub(&feed->active, 1);
        return sk_error_set(err, -ENOMEM, "", "out of memory");
    }
    c->feed = feed;
    c->conn = conn;
    c->spec = *spec;
    c->stream_id_len = strlen(spec->stream_id);
    c->prefix_len = strlen(spec->stream_prefix);
    c->type_len = strlen(spec->type);
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->refs, 2);
    unsigned at = atomic_fetch_add(&feed->next_thread, 1) % (unsigned)feed->nthreads;
    c->thread = &feed->threads[at];
    int rc = store_sub_open(feed->app->log, spec->from_position, &c->sub);
    /* the first bytes go out at once: the client sees the headers and knows it is live */
    if (rc == 0 && !client_append(c, ": connected\n\n", 13))
        rc = -ENOMEM;
    struct MHD_Response *resp = rc ? NULL
                                   : MHD_create_response_from_callback(
                                         MHD_SIZE_UNKNOWN, 4096, on_read, c, on_response_free);
    if (!resp) {
        store_sub_close(c->sub);
        c->sub = NULL;
        atomic_store(&c->refs, 1);
        client_unref(c);
        return sk_error_set(err, rc ? rc : -ENOMEM, "", "cannot open a subscription: %s",
                            sk_strerror(rc ? rc : -ENOMEM));
    }
    if (!thread_notify(c->thread, c, false)) {
        /* the thread has exited (shutdown): the response's free drops the last ref */
        store_sub_close(c->sub);
        c->sub = NULL;
        atomic_fetch_sub(&c->refs, 1);
        MHD_destroy_response(resp);
        return sk_error_set(err, SK_ECLOSED, "", "the server is shutting down");
    }
    /* The kernel's send buffer would otherwise grow to megabytes for a client that does
     * not read (autotuning), past the bound this buffer is meant to set. */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int sndbuf = (int)svc_cfg.feed_buffer_bytes;
    if (ci)
        (void)setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    atomic_fetch_add(&feed->opened_total, 1);
    *out = resp;
    return 0;
}

char *svc_metrics_feed(svc_feed *feed, char *text)
{
    if (!feed || !text)
        return text;
    return svc_metrics_append(
        text,
        "# HELP skald_feed_streams Open GET /v1/events/stream connections.\n"
        "# TYPE skald_feed_streams gauge\n"
        "skald_feed_streams %u\n"
        "# HELP skald_feed_overflows_total Streams ended because the client was "
        "too slow.\n"
        "# TYPE skald_feed_overflows_total counter\n"
        "skald_feed_overflows_total %llu\n",
        atomic_load(&feed->active), (unsigned long long)atomic_load(&feed->overflow_total));
}
