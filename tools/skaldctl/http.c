/*
 * http.c -- skaldctl's small HTTP/1.1 client: one request per connection, plain HTTP
 * (for TLS use curl). Shared by the commands that talk to a running server
 * (projection, saga).
 */
#include "tools/skaldctl/skaldctl.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int connect_to(const char *url, char *host, size_t host_size, sk_error *err)
{
    if (strncmp(url, "http://", 7) != 0)
        return sk_error_set(err, SK_EBADINPUT, "server", "--server must be http://HOST:PORT");
    const char *h = url + 7, *colon = strrchr(h, ':');
    size_t hlen = colon ? (size_t)(colon - h) : strcspn(h, "/");
    if (hlen == 0 || hlen >= host_size)
        return sk_error_set(err, SK_EBADINPUT, "server", "no host in %s", url);
    snprintf(host, host_size, "%.*s", (int)hlen, h);
    char port[16] = "80";
    if (colon)
        snprintf(port, sizeof port, "%.*s", (int)strcspn(colon + 1, "/"), colon + 1);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return sk_error_set(err, -EHOSTUNREACH, "server", "cannot resolve %s", host);
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return sk_error_set(err, -ECONNREFUSED, "server", "cannot connect to %s", url);
    return fd;
}

int ctl_http_call(const char *server, const char *token, const char *method, const char *path,
                  const char *body, ctl_http_reply *out, sk_error *err)
{
    char host[256];
    int fd = connect_to(server, host, sizeof host, err);
    if (fd < 0)
        return fd;
    char head[2048];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, host, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", body ? strlen(body) : 0);
    int rc = 0;
    if (write(fd, head, (size_t)n) != n || (body && write(fd, body, strlen(body)) < 0))
        rc = sk_error_set(err, -errno, "server", "cannot send to %s", server);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    while (rc == 0) {
        if (cap - len < 4096) {
            char *g = realloc(buf, cap = cap ? cap * 2 : 16384);
            if (!g) {
                rc = -ENOMEM;
                break;
            }
            buf = g;
        }
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    if (rc == 0 && (!buf || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1))
        rc = sk_error_set(err, -EPROTO, "server", "no HTTP answer from %s", server);
    if (rc == 0) {
        buf[len] = '\0';
        const char *b = strstr(buf, "\r\n\r\n");
        out->body = b ? json_loads(b + 4, 0, NULL) : NULL;
    }
    free(buf);
    return rc;
}
