/*
 * http_client.c -- the smallest HTTP/1.1 client the exporters need: one POST per
 * connection (Connection: close), the status line read back, the whole exchange bounded
 * by one deadline with non-blocking sockets and poll. A batch every flush interval does
 * not need keep-alive, and a collector that hangs costs the exporter thread the timeout,
 * never a command.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "trace/trace_int.h"

int tr_url_parse(const char *text, tr_url *out)
{
    tr_url u = {.port = "80", .path = "/"};
    if (!text || strncmp(text, "http://", 7) != 0)
        return SK_EBADINPUT;
    const char *host = text + 7, *slash = strchr(host, '/');
    size_t hostport = slash ? (size_t)(slash - host) : strlen(host);
    const char *colon = memchr(host, ':', hostport);
    size_t hostlen = colon ? (size_t)(colon - host) : hostport;
    if (hostlen == 0 || hostlen >= sizeof u.host)
        return SK_EBADINPUT;
    memcpy(u.host, host, hostlen);
    if (colon) {
        size_t plen = hostport - hostlen - 1;
        if (plen == 0 || plen >= sizeof u.port || strspn(colon + 1, "0123456789") < plen)
            return SK_EBADINPUT;
        memcpy(u.port, colon + 1, plen);
        u.port[plen] = '\0';
    }
    if (slash && snprintf(u.path, sizeof u.path, "%s", slash) >= (int)sizeof u.path)
        return SK_EBADINPUT;
    *out = u;
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until the deadline; 0 or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)left);
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -errno;
    }
}

static int connect_to(const tr_url *url, int64_t deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(url->host, url->port, &hints, &res) != 0)
        return -EHOSTUNREACH;
    int fd = -1, rc = -ECONNREFUSED;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        rc = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline) : -errno;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr)
            rc = -soerr;
        if (rc != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd >= 0 ? fd : rc;
}

static int send_all(int fd, const char *p, size_t len, int64_t deadline)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc)
                return rc;
        } else {
            return -errno;
        }
    }
    return 0;
}

/* Reads until the status line is complete; the status, or a negative code. */
static int read_status(int fd, int64_t deadline)
{
    char buf[256];
    size_t have = 0;
    while (have < sizeof buf - 1) {
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n > 0) {
            have += (size_t)n;
            buf[have] = '\0';
            if (strchr(buf, '\n'))
                break;
        } else if (n == 0) {
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            int rc = wait_fd(fd, POLLIN, deadline);
            if (rc)
                return rc;
        } else {
            return -errno;
        }
    }
    buf[have] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status < 100)
        return -EPROTO;
    return status;
}

int tr_http_post(const tr_url *url, const char *body, size_t len, uint32_t timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    int fd = connect_to(url, deadline);
    if (fd < 0)
        return fd;
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      url->path, url->host, url->port, len);
    int rc = send_all(fd, head, (size_t)hl, deadline);
    if (rc == 0)
        rc = send_all(fd, body, len, deadline);
    if (rc == 0)
        rc = read_status(fd, deadline);
    close(fd);
    return rc;
}
