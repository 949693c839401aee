/*
 * test_idempotency.c -- the idempotency store on its own: claim, finish, replay, mismatch,
 * busy, release; a reopen keeps the answers; keys expire with the window; journal files
 * rotate per period and a file is deleted only once all its keys have expired (on a
 * clock the test moves, not by sleeping); a failed journal write or fdatasync, injected
 * through the I/O seam, refuses keyed commands until the journal is rewritten, and loses
 * no answer.
 */
#include "commands/commands.h"

#include <errno.h>
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *w)
{
    (void)st, (void)flag, (void)w;
    return remove(path);
}

static int journal_files(const char *data)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/idempotency", data);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, "journal-", 8) == 0;
    closedir(d);
    return n;
}

/* A clock the test moves, and a disk whose writes and fdatasyncs fail on demand. */
typedef struct harness {
    int64_t now_us;
    store_io io;
    int fail_writes, fail_syncs; /* with this negated errno; 0: succeed */
    cmd_idem_config cfg;
} harness;

static int64_t test_now(void *ctx)
{
    return ((harness *)ctx)->now_us;
}

static ssize_t failing_pwrite(void *ctx, int fd, const void *buf, size_t size, uint64_t offset)
{
    harness *h = ctx;
    if (h->fail_writes)
        return h->fail_writes;
    return store_io_posix()->pwrite(NULL, fd, buf, size, offset);
}

static int failing_fdatasync(void *ctx, int fd)
{
    harness *h = ctx;
    if (h->fail_syncs)
        return h->fail_syncs;
    return store_io_posix()->fdatasync(NULL, fd);
}

static void harness_init(harness *h, const char *data, uint64_t window_s, int64_t period_us)
{
    memset(h, 0, sizeof *h);
    h->now_us = 1700000000ll * 1000000;
    h->io = *store_io_posix(); /* its calls ignore ctx */
    h->io.ctx = h;
    h->io.pwrite = failing_pwrite;
    h->io.fdatasync = failing_fdatasync;
    cmd_idem_config_init(&h->cfg, data);
    h->cfg.window_s = window_s;
    h->cfg.period_us = period_us;
    h->cfg.io = &h->io;
    h->cfg.now_us = test_now;
    h->cfg.clock_ctx = h;
}

static void claims_and_replays(void **state)
{
    (void)state;
    char data[] = "/tmp/skald-idem-XXXXXX";
    assert_non_null(mkdtemp(data));
    harness h;
    harness_init(&h, data, 3600, 0);
    cmd_idem *idem;
    sk_error err;
    assert_int_equal(cmd_idem_open(&h.cfg, &idem, &err), 0);
    unsigned status = 0;
    char *body = NULL;
    assert_int_equal(cmd_idem_begin(idem, "k/a/1", 7, &status, &body), CMD_IDEM_NEW);
    assert_int_equal(cmd_idem_begin(idem, "k/a/1", 7, &status, &body), CMD_IDEM_BUSY);
    assert_int_equal(cmd_idem_finish(idem, "k/a/1", 200, "{\"x\":1}", 5), 0);
    assert_int_equal(cmd_idem_begin(idem, "k/a/1", 7, &status, &body), CMD_IDEM_DONE);
    assert_int_equal(status, 200);
    assert_string_equal(body, "{\"x\":1}");
    free(body);
    assert_int_equal(cmd_idem_begin(idem, "k/a/1", 8, &status, &body), CMD_IDEM_MISMATCH);
    /* a released claim (a 409, a 5xx) can be claimed again */
    assert_int_equal(cmd_idem_begin(idem, "k/a/2", 7, &status, &body), CMD_IDEM_NEW);
    cmd_idem_release(idem, "k/a/2");
    assert_int_equal(cmd_idem_begin(idem, "k/a/2", 7, &status, &body), CMD_IDEM_NEW);
    cmd_idem_release(idem, "k/a/2");
    assert_int_equal(cmd_idem_close(idem), 0);

    assert_int_equal(cmd_idem_open(&h.cfg, &idem, &err), 0);
    assert_int_equal(cmd_idem_begin(idem, "k/a/1", 7, &status, &body), CMD_IDEM_DONE);
    assert_string_equal(body, "{\"x\":1}");
    free(body);
    assert_int_equal(cmd_idem_begin(idem, "k/a/2", 7, &status, &body), CMD_IDEM_NEW);
    cmd_idem_release(idem, "k/a/2");
    assert_int_equal(cmd_idem_close(idem), 0);
    assert_int_equal(journal_files(data), 1); /* compacted into one file at open */
    nftw(data, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void files_rotate_and_expire(void **state)
{
    (void)state;
    char data[] = "/tmp/skald-idem-XXXXXX";
    assert_non_null(mkdtemp(data));
    harness h;
    /* window 1 s, a new file every 200 ms; the clock starts 50 ms into a period */
    harness_init(&h, data, 1, 200000);
    h.now_us += 50000;
    cmd_idem *idem;
    sk_error err;
    assert_int_equal(cmd_idem_open(&h.cfg, &idem, &err), 0);
    unsigned status;
    char *body;
    char key[32];
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "k/r/%d", i);
        assert_int_equal(cmd_idem_begin(idem, key, 1, &status, &body), CMD_IDEM_NEW);
        assert_int_equal(cmd_idem_finish(idem, key, 200, "{}", 0), 0);
        h.now_us += 200000; /* one period per key */
        assert_int_equal(cmd_idem_sync(idem), 0);
    }
    /* seven files were started (at open, then one per period); the first one's keys are
     * past its period + the window (1.2 s < 1.25 s): it went, the six others stay */
    assert_int_equal(journal_files(data), 6);
    /* keys younger than the window still replay */
    assert_int_equal(cmd_idem_begin(idem, "k/r/5", 1, &status, &body), CMD_IDEM_DONE);
    free(body);
    h.now_us += 1500000;
    assert_int_equal(cmd_idem_sync(idem), 0);
    h.now_us += 200000;
    assert_int_equal(cmd_idem_sync(idem), 0);
    /* all expired: gone from memory, and only the current file is left */
    assert_int_equal(cmd_idem_begin(idem, "k/r/5", 1, &status, &body), CMD_IDEM_NEW);
    cmd_idem_release(idem, "k/r/5");
    assert_int_equal(journal_files(data), 1);
    assert_int_equal(cmd_idem_close(idem), 0);
    nftw(data, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* A failed write (EIO, ENOSPC) or fdatasync puts the journal in the failed state: keyed
 * commands are refused until a rewrite succeeds, /readyz's reason names the failure, and
 * no remembered answer is lost -- not the one whose line failed, not the ones before. */
static void journal_failures_refuse_keys_until_rewritten(void **state)
{
    (void)state;
    const int errors[] = {-EIO, -ENOSPC};
    for (int which = 0; which < 3; which++) {
        char data[] = "/tmp/skald-idem-XXXXXX";
        assert_non_null(mkdtemp(data));
        harness h;
        harness_init(&h, data, 3600, 0);
        cmd_idem *idem;
        sk_error err;
        unsigned status;
        char *body;
        char why[512];
        assert_int_equal(cmd_idem_open(&h.cfg, &idem, &err), 0);
        assert_int_equal(cmd_idem_begin(idem, "k/f/1", 1, &status, &body), CMD_IDEM_NEW);
        assert_int_equal(cmd_idem_finish(idem, "k/f/1", 200, "{\"n\":1}", 0), 0);
        assert_int_equal(cmd_idem_begin(idem, "k/f/2", 2, &status, &body), CMD_IDEM_NEW);
        int injected;
        if (which < 2) { /* the answer's own write fails */
            injected = h.fail_writes = errors[which];
            assert_int_equal(cmd_idem_finish(idem, "k/f/2", 422, "{\"n\":2}", 0), injected);
        } else { /* the line is written, its fdatasync fails */
            injected = h.fail_syncs = -EIO;
            assert_int_equal(cmd_idem_finish(idem, "k/f/2", 422, "{\"n\":2}", 0), 0);
            assert_int_equal(cmd_idem_sync(idem), injected);
        }
        /* failed: keyed commands refused, the reason says what and why */
        assert_int_equal(cmd_idem_health(idem, why, sizeof why), injected);
        assert_non_null(strstr(why, "journal-"));
        assert_int_equal(cmd_idem_begin(idem, "k/f/3", 3, &status, &body), CMD_IDEM_UNAVAILABLE);
        /* the disk is still failing: the rewrite fails too and the state stays */
        assert_int_equal(cmd_idem_sync(idem), injected);
        assert_int_equal(cmd_idem_begin(idem, "k/f/3", 3, &status, &body), CMD_IDEM_UNAVAILABLE);
        /* the disk recovers: the next tick rewrites the journal and keys are accepted */
        h.fail_writes = h.fail_syncs = 0;
        assert_int_equal(cmd_idem_sync(idem), 0);
        assert_int_equal(cmd_idem_health(idem, why, sizeof why), 0);
        assert_int_equal(cmd_idem_begin(idem, "k/f/3", 3, &status, &body), CMD_IDEM_NEW);
        cmd_idem_release(idem, "k/f/3");
        assert_int_equal(cmd_idem_close(idem), 0);
        /* both answers survive a restart: the rewrite saved the one whose line failed */
        assert_int_equal(cmd_idem_open(&h.cfg, &idem, &err), 0);
        assert_int_equal(cmd_idem_begin(idem, "k/f/1", 1, &status, &body), CMD_IDEM_DONE);
        assert_string_equal(body, "{\"n\":1}");
        free(body);
        assert_int_equal(cmd_idem_begin(idem, "k/f/2", 2, &status, &body), CMD_IDEM_DONE);
        assert_int_equal(status, 422);
        assert_string_equal(body, "{\"n\":2}");
        free(body);
        assert_int_equal(cmd_idem_close(idem), 0);
        nftw(data, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claims_and_replays),
        cmocka_unit_test(files_rotate_and_expire),
        cmocka_unit_test(journal_failures_refuse_keys_until_rewritten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
