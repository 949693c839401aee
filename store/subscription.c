/*
 * subscription.c -- tailing the log: the durable head, and subscriptions woken when it
 * moves.
 *
 * The durable head is the position below which every record survives a crash. The
 * appender moves it after each fdatasync (fsync=always: every group commit; interval:
 * every periodic sync and every segment roll) or, with fsync=never, with the written
 * head. It also writes it to the file DURABLE, so a process that opened the log read-only
 * can follow the writer without reading past it:
 *
 *   DURABLE: u64 position, u64 position ^ STORE_DURABLE_CHECK, both little-endian.
 *
 * The file is rewritten in place (one 16-byte pwrite, never synced): the second word
 * lets a reader reject a torn read and try again. Its value never runs ahead of the
 * data: it is written after the fdatasync that made the data durable.
 *
 * A subscription is a position reader that stops at the durable head, plus an eventfd.
 * When the reader has caught up, the subscription is "armed" (under readers_mu) and the
 * appender writes its eventfd once the durable head passes it; a subscription that is
 * busy reading costs the appender nothing. Arming increments subs_armed before reading
 * the durable head, and the appender stores the durable head before reading subs_armed
 * (all sequentially consistent), so a wake-up is never lost between the two.
 *
 * A subscription on a log opened read-only (a follower in another process) waits on an
 * inotify watch of the log directory instead, and on each wake-up reads DURABLE and
 * brings its log up to it (store_log_follow). Its descriptor is an epoll set of the
 * inotify descriptor and the eventfd, so store_sub_stop wakes it as well.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#define STORE_DURABLE_CHECK 0x534b414c44445552ull /* "SKALDDUR" */

struct store_sub {
    store_log *log;
    store_reader *reader;
    struct store_sub *prev, *next; /* in log->subs; guarded by readers_mu */
    int efd;                       /* eventfd: signalled by the appender or by stop */
    int ifd;                       /* follower only: inotify on the log directory, or -1 */
    int pfd;                       /* follower only: epoll set of efd and ifd, or -1 */
    bool armed;                    /* guarded by readers_mu */
    uint64_t armed_at;             /* its position when armed; guarded by readers_mu */
    _Atomic int stopped;
    uint64_t delivered_end; /* one past the last position delivered; 0 if none */
};

/* ---------------------------------------------------------------------------------------
 * The DURABLE file.
 */
int store_durable_file_open(store_log *log)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", log->dir, STORE_DURABLE_FILE);
    int fd = log->io->open(log->io->ctx, path, O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        return fd;
    log->durable_fd = fd;
    return 0;
}

void store_durable_file_close(store_log *log)
{
    if (log->durable_fd >= 0)
        log->io->close(log->io->ctx, log->durable_fd);
    log->durable_fd = -1;
}

/* A failure here is not the log's: the data is durable whatever the file says, and a
 * follower only lags until the next write succeeds. So it is not an error. */
static void durable_file_write(store_log *log, uint64_t position)
{
    if (log->durable_fd < 0)
        return;
    uint8_t buf[16];
    store_put_u64(buf, position);
    store_put_u64(buf + 8, position ^ STORE_DURABLE_CHECK);
    (void)log->io->pwrite(log->io->ctx, log->durable_fd, buf, sizeof buf, 0);
}

/* The writer's durable head from DURABLE: 0 and *out, -ENOENT if there is no such file,
 * -EAGAIN if it could not be read whole. */
int store_durable_file_read(store_log *log, uint64_t *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", log->dir, STORE_DURABLE_FILE);
    int fd = log->io->open(log->io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    int rc = -EAGAIN;
    for (int tries = 0; tries < 3 && rc == -EAGAIN; tries++) {
        uint8_t buf[16];
        ssize_t got = store_io_read_full(log->io, fd, buf, sizeof buf, 0);
        if (got < 0) {
            rc = (int)got;
        } else if (got == (ssize_t)sizeof buf &&
                   (store_get_u64(buf) ^ STORE_DURABLE_CHECK) == store_get_u64(buf + 8)) {
            *out = store_get_u64(buf);
            rc = 0;
        }
    }
    log->io->close(log->io->ctx, fd);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Moving the durable head and waking subscribers.
 */
static void signal_sub(store_sub *sub)
{
    uint64_t one = 1;
    ssize_t n = write(sub->efd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, so it is readable anyway */
}

/* Signals the armed subscriptions (all of them, or those below position). */
static void wake_armed(store_log *log, uint64_t position, bool all)
{
    if (atomic_load(&log->subs_armed) == 0)
        return;
    pthread_mutex_lock(&log->readers_mu);
    for (store_sub *sub = log->subs; sub; sub = sub->next) {
        if (!sub->armed || (!all && sub->armed_at >= position))
            continue;
        sub->armed = false;
        atomic_fetch_sub(&log->subs_armed, 1);
        signal_sub(sub);
    }
    pthread_mutex_unlock(&log->readers_mu);
}

void store_log_durable_advance(store_log *log, uint64_t position)
{
    SK_ASSERT(position >= atomic_load(&log->durable_head));
    SK_ASSERT(position <= atomic_load(&log->head));
    atomic_store(&log->durable_head, position);
    /* In-process subscribers first: the file is for followers in other processes, and
     * its write can take far longer than a wake-up (skald-bench subscribe saw 16 ms). */
    wake_armed(log, position, false);
    durable_file_write(log, position);
}

void store_log_durable_reset(store_log *log, uint64_t position)
{
    atomic_store(&log->durable_head, position);
    durable_file_write(log, position);
    wake_armed(log, position, true);
}

uint64_t store_log_durable_head(store_log *log)
{
    return atomic_load(&log->durable_head);
}

/* Read-only opens: the durable head is what the writer published, but never more than
 * this process has loaded (store_log_follow catches up to it). Without a DURABLE file
 * nobody is writing, so everything loaded counts. */
int store_log_durable_load(store_log *log)
{
    uint64_t published = 0, head = atomic_load(&log->head);
    int rc = store_durable_file_read(log, &published);
    atomic_store(&log->durable_head, rc == 0 && published < head ? published : head);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Subscriptions.
 */
static void drain(int fd)
{
    uint8_t buf[4096];
    while (fd >= 0 && read(fd, buf, sizeof buf) > 0) {
    }
}

static int open_follower_fds(store_sub *sub)
{
    store_log *log = sub->log;
    sub->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (sub->ifd < 0)
        return -errno;
    if (inotify_add_watch(sub->ifd, log->dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0)
        return -errno;
    sub->pfd = epoll_create1(EPOLL_CLOEXEC);
    if (sub->pfd < 0)
        return -errno;
    struct epoll_event e = {.events = EPOLLIN};
    if (epoll_ctl(sub->pfd, EPOLL_CTL_ADD, sub->efd, &e) < 0 ||
        epoll_ctl(sub->pfd, EPOLL_CTL_ADD, sub->ifd, &e) < 0)
        return -errno;
    return 0;
}

int store_sub_open(store_log *log, uint64_t from_position, store_sub **out)
{
    store_sub *sub = calloc(1, sizeof *sub);
    if (!sub)
        return -ENOMEM;
    sub->log = log;
    sub->ifd = sub->pfd = -1;
    sub->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = sub->efd < 0 ? -errno : 0;
    if (rc == 0 && log->cfg.read_only)
        rc = open_follower_fds(sub);
    if (rc == 0)
        rc = store_reader_open_durable(log, from_position, &sub->reader);
    if (rc != 0) {
        if (sub->efd >= 0)
            close(sub->efd);
        if (sub->ifd >= 0)
            close(sub->ifd);
        if (sub->pfd >= 0)
            close(sub->pfd);
        free(sub);
        return rc;
    }
    pthread_mutex_lock(&log->readers_mu);
    sub->next = log->subs;
    if (log->subs)
        log->subs->prev = sub;
    log->subs = sub;
    log->sub_count++;
    pthread_mutex_unlock(&log->readers_mu);
    *out = sub;
    return 0;
}

void store_sub_close(store_sub *sub)
{
    if (!sub)
        return;
    store_log *log = sub->log;
    pthread_mutex_lock(&log->readers_mu);
    if (sub->armed)
        atomic_fetch_sub(&log->subs_armed, 1);
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        log->subs = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    log->sub_count--;
    pthread_mutex_unlock(&log->readers_mu);
    store_reader_close(sub->reader);
    close(sub->efd);
    if (sub->ifd >= 0)
        close(sub->ifd);
    if (sub->pfd >= 0)
        close(sub->pfd);
    free(sub);
}

/* Arms the subscription unless the durable head has already passed it; true if armed. */
static bool arm(store_sub *sub)
{
    store_log *log = sub->log;
    bool armed = true;
    pthread_mutex_lock(&log->readers_mu);
    if (!sub->armed) {
        sub->armed = true;
        atomic_fetch_add(&log->subs_armed, 1);
    }
    sub->armed_at = store_reader_position(sub->reader);
    if (sub->armed_at < atomic_load(&log->durable_head)) {
        sub->armed = false;
        atomic_fetch_sub(&log->subs_armed, 1);
        armed = false;
    }
    pthread_mutex_unlock(&log->readers_mu);
    return armed;
}

/* The reader has caught up: 0 if the subscription waits now, 1 to read again, or an
 * error. */
static int caught_up(store_sub *sub)
{
    store_log *log = sub->log;
    if (atomic_load(&log->durable_head) < sub->delivered_end)
        return SK_ETRUNCATED;
    if (log->cfg.read_only) {
        /* Drain first: a change after the drain leaves the descriptor readable. */
        drain(sub->ifd);
        drain(sub->efd);
        if (atomic_load(&sub->stopped))
            return SK_ECANCELED;
        /* Another subscription of this log may have followed to where this one's wake-up
         * pointed (its inotify events are drained now): what counts is whether the
         * durable head is past this reader, not whether this call moved it. */
        int rc = store_log_follow(log);
        if (rc < 0)
            return rc;
        return store_reader_position(sub->reader) < atomic_load(&log->durable_head);
    }
    drain(sub->efd);
    if (atomic_load(&sub->stopped))
        return SK_ECANCELED;
    return arm(sub) ? 0 : 1;
}

int store_sub_next(store_sub *sub, ev_event *out, sk_error *err)
{
    for (;;) {
        if (atomic_load(&sub->stopped))
            return sk_error_set(err, SK_ECANCELED, "", "the subscription was stopped");
        int rc = store_reader_next(sub->reader, out, err);
        if (rc == 1) {
            sub->delivered_end = out->position + 1;
            return 1;
        }
        if (rc < 0)
            return rc;
        rc = caught_up(sub);
        if (rc == 0)
            return 0;
        if (rc < 0)
            return sk_error_set(err, rc, "", "subscription at position %llu: %s",
                                (unsigned long long)store_reader_position(sub->reader),
                                sk_strerror(rc));
    }
}

int store_sub_wait(store_sub *sub, int timeout_ms)
{
    if (atomic_load(&sub->stopped))
        return SK_ECANCELED;
    struct pollfd p = {.fd = store_sub_fd(sub), .events = POLLIN};
    int n;
    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (atomic_load(&sub->stopped))
        return SK_ECANCELED;
    return n > 0;
}

int store_sub_fd(const store_sub *sub)
{
    return sub->pfd >= 0 ? sub->pfd : sub->efd;
}

void store_sub_stop(store_sub *sub)
{
    atomic_store(&sub->stopped, 1);
    signal_sub(sub);
}

uint64_t store_sub_position(const store_sub *sub)
{
    return store_reader_position(sub->reader);
}
