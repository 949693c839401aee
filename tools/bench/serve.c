/*
 * serve.c -- what the HTTP benchmarks (http-commands, queries) share: a real `skald serve`
 * as a child process on a data directory in the work directory, blocking HTTP/1.1
 * requests to it, its /metrics samples, and wrk runs whose Lua done() hook prints one
 * line (BENCH_WRK_DONE_LUA) that bench_wrk_run parses.
 */
#include "tools/bench/bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int bench_file_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -EIO;
}

int bench_skald_find(const bench_opts *opts, char *out, size_t size)
{
    if (opts->skald) {
        snprintf(out, size, "%s", opts->skald);
        return 0;
    }
    char self[BENCH_PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -errno;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(out, size, "%s/../../service/skald", self);
    if (access(out, X_OK) != 0) {
        fprintf(stderr, "skald-bench: no skald binary at %s; pass --skald PATH\n", out);
        return -ENOENT;
    }
    return 0;
}

int bench_http_request(uint16_t port, const char *method, const char *path, const char *ctype,
                       const char *body, size_t len, char *reply, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    char head[512];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, ctype, len);
    int rc = 0;
    if (n < 0 || (size_t)n >= sizeof head || write(fd, head, (size_t)n) != n)
        rc = -EIO;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, body + off, len - off);
        if (w <= 0)
            rc = -EIO;
        else
            off += (size_t)w;
    }
    char status_line[64], drain[4096];
    if (!reply || size == 0) {
        reply = status_line;
        size = sizeof status_line;
    }
    /* read until close (so the server has finished a whole batch), keeping the start */
    size_t have = 0;
    ssize_t got = 1;
    while (rc == 0 && got > 0) {
        if (have + 1 < size) {
            got = read(fd, reply + have, size - 1 - have);
            have += got > 0 ? (size_t)got : 0;
        } else {
            got = read(fd, drain, sizeof drain);
        }
    }
    close(fd);
    reply[have] = '\0';
    if (rc)
        return rc;
    return have > 12 ? atoi(reply + 9) : -EIO;
}

double bench_metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    const char *line = text;
    while (line && *line) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

pid_t bench_serve_start(const char *skald, const char *work, uint16_t *port)
{
    return bench_serve_start_roles(skald, work, NULL, port);
}

pid_t bench_serve_start_roles(const char *skald, const char *work, const char *roles,
                              uint16_t *port)
{
    char data[BENCH_PATH_MAX], port_file[BENCH_PATH_MAX], log[BENCH_PATH_MAX];
    bench_path_join(data, sizeof data, work, "data");
    bench_path_join(port_file, sizeof port_file, work, "port");
    bench_path_join(log, sizeof log, work, "serve.log");
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        /* one HTTP thread: wrk runs on the same two cores (two threads measured slower
         * here, docs/benchmarks.md) */
        if (roles)
            execl(skald, skald, "serve", "--data", data, "--listen", "127.0.0.1:0", "--port-file",
                  port_file, "--fsync", "always", "--threads", "1", "--roles", roles, (char *)NULL);
        else
            execl(skald, skald, "serve", "--data", data, "--listen", "127.0.0.1:0", "--port-file",
                  port_file, "--fsync", "always", "--threads", "1", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; pid > 0 && i < 300; i++) {
        FILE *f = fopen(port_file, "r");
        unsigned p = 0;
        if (f) {
            int got = fscanf(f, "%u", &p);
            fclose(f);
            if (got == 1 && p) {
                *port = (uint16_t)p;
                return pid;
            }
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "skald-bench: skald serve exited at start; see %s\n", log);
            return -1;
        }
        usleep(100000);
    }
    fprintf(stderr, "skald-bench: skald serve did not start in 30 s; see %s\n", log);
    if (pid > 0)
        kill(pid, SIGKILL), waitpid(pid, NULL, 0);
    return -1;
}

int bench_serve_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 600; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -ECHILD;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -ETIMEDOUT;
}

int bench_wrk_run(const bench_opts *opts, uint16_t port, const char *script, const char *args,
                  bench_wrk_result *out)
{
    char cmd[3 * BENCH_PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "wrk -t%u -c%u -d%us --latency -s '%s' http://127.0.0.1:%u/ -- %s 2>&1",
             opts->wrk_threads, opts->connections, opts->duration_s, script, port, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -errno;
    char line[512];
    int have_metric = 0;
    while (fgets(line, sizeof line, p)) {
        if (strncmp(line, "WRK ", 4) == 0 &&
            sscanf(line,
                   "WRK requests=%" SCNu64 " duration_us=%" SCNu64 " non2xx=%" SCNu64
                   " sockerr=%" SCNu64 " p50_us=%" SCNu64 " p99_us=%" SCNu64,
                   &out->requests, &out->duration_us, &out->non2xx, &out->sockerr, &out->p50_us,
                   &out->p99_us) == 6)
            have_metric = 1;
    }
    int status = pclose(p);
    if (!have_metric || status != 0) {
        fprintf(stderr, "skald-bench: wrk failed (exit %d); is wrk installed? (%s)\n", status, cmd);
        return -EIO;
    }
    return 0;
}

double bench_wrk_per_s(const bench_wrk_result *r)
{
    return r->duration_us ? (double)r->requests * 1e6 / (double)r->duration_us : 0;
}
