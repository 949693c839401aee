/*
 * secret.c -- the key cursors are signed with: 32 random bytes in a file of the data
 * directory, so cursors stay valid across restarts and between processes sharing it.
 * A missing file is created atomically (written beside it, then linked in place, so two
 * processes starting at once agree on one secret) with mode 0600 from getrandom(2).
 */
#include "queries/queries_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_secret(const char *path, uint8_t out[QRY_SECRET_SIZE], sk_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        if (rc == -ENOENT)
            return rc; /* the caller creates it */
        return sk_error_set(err, rc, "", "%s: cannot open the cursor secret: %s", path,
                            sk_strerror(rc));
    }
    uint8_t buf[QRY_SECRET_SIZE + 1];
    size_t got = 0;
    int rc = 0;
    while (got < sizeof buf) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (rc)
        return sk_error_set(err, rc, "", "%s: cannot read the cursor secret: %s", path,
                            sk_strerror(rc));
    if (got != QRY_SECRET_SIZE)
        return sk_error_set(err, SK_ECORRUPT, "",
                            "%s: the cursor secret must be exactly %d bytes (remove the file to "
                            "make a new one; outstanding cursors become invalid)",
                            path, QRY_SECRET_SIZE);
    memcpy(out, buf, QRY_SECRET_SIZE);
    return 0;
}

static int create_secret(const char *path, sk_error *err)
{
    uint8_t key[QRY_SECRET_SIZE];
    if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key)
        return sk_error_set(err, -errno, "", "getrandom failed: %s", strerror(errno));
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return sk_error_set(err, -ENAMETOOLONG, "", "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return sk_error_set(err, -errno, "", "%s: cannot create: %s", tmp, strerror(errno));
    int rc = 0;
    if (write(fd, key, sizeof key) != (ssize_t)sizeof key || fsync(fd) != 0)
        rc = errno ? -errno : -EIO;
    close(fd);
    if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST)
        rc = -errno; /* EEXIST: another process made it first; read theirs */
    unlink(tmp);
    memset(key, 0, sizeof key);
    if (rc)
        return sk_error_set(err, rc, "", "%s: cannot create the cursor secret: %s", path,
                            sk_strerror(rc));
    return 0;
}

int qry_secret_load(const char *path, uint8_t out[QRY_SECRET_SIZE], sk_error *err)
{
    QRY_ASSERT(path && out);
    int rc = read_secret(path, out, err);
    if (rc != -ENOENT)
        return rc;
    rc = create_secret(path, err);
    if (rc)
        return rc;
    rc = read_secret(path, out, err);
    return rc == -ENOENT ? sk_error_set(err, rc, "", "%s: vanished after creation", path) : rc;
}
