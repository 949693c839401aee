/*
 * test_idempotency.c -- the idempotency store on its own: claim, finish, replay, mismatch,
 * busy, release; a reopen keeps the answers; keys expire with the window; journal files
 * rotate per period and a file is deleted only once all its keys have expired.
 */
#include "service/serve_int.h"

#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void claims_and_replays(void **state)
{
    (void)state;
    char data[] = "/tmp/skald-idem-XXXXXX";
    assert_non_null(mkdtemp(data));
    svc_idem *idem;
    sk_error err;
    assert_int_equal(svc_idem_open(data, 3600, 0, NULL, &idem, &err), 0);
    unsigned status = 0;
    char *body = NULL;
    assert_int_equal(svc_idem_begin(idem, "k/a/1", 7, &status, &body), SVC_IDEM_NEW);
    assert_int_equal(svc_idem_begin(idem, "k/a/1", 7, &status, &body), SVC_IDEM_BUSY);
    svc_idem_finish(idem, "k/a/1", 200, "{\"x\":1}", 5);
    assert_int_equal(svc_idem_begin(idem, "k/a/1", 7, &status, &body), SVC_IDEM_DONE);
    assert_int_equal(status, 200);
    assert_string_equal(body, "{\"x\":1}");
    free(body);
    assert_int_equal(svc_idem_begin(idem, "k/a/1", 8, &status, &body), SVC_IDEM_MISMATCH);
    /* a released claim (a 409, a 5xx) can be claimed again */
    assert_int_equal(svc_idem_begin(idem, "k/a/2", 7, &status, &body), SVC_IDEM_NEW);
    svc_idem_release(idem, "k/a/2");
    assert_int_equal(svc_idem_begin(idem, "k/a/2", 7, &status, &body), SVC_IDEM_NEW);
    svc_idem_release(idem, "k/a/2");
    assert_int_equal(svc_idem_close(idem), 0);

    assert_int_equal(svc_idem_open(data, 3600, 0, NULL, &idem, &err), 0);
    assert_int_equal(svc_idem_begin(idem, "k/a/1", 7, &status, &body), SVC_IDEM_DONE);
    assert_string_equal(body, "{\"x\":1}");
    free(body);
    assert_int_equal(svc_idem_begin(idem, "k/a/2", 7, &status, &body), SVC_IDEM_NEW);
    svc_idem_release(idem, "k/a/2");
    assert_int_equal(svc_idem_close(idem), 0);
    assert_int_equal(journal_files(data), 1); /* compacted into one file at open */
    nftw(data, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void files_rotate_and_expire(void **state)
{
    (void)state;
    char data[] = "/tmp/skald-idem-XXXXXX";
    assert_non_null(mkdtemp(data));
    svc_idem *idem;
    sk_error err;
    /* window 1 s, a new file every 200 ms */
    assert_int_equal(svc_idem_open(data, 1, 200000, NULL, &idem, &err), 0);
    unsigned status;
    char *body;
    char key[32];
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "k/r/%d", i);
        assert_int_equal(svc_idem_begin(idem, key, 1, &status, &body), SVC_IDEM_NEW);
        svc_idem_finish(idem, key, 200, "{}", 0);
        usleep(210000);
        svc_idem_sync(idem);
    }
    /* files hold keys up to ~1.2 s old: the oldest went, several remain */
    int files = journal_files(data);
    assert_in_range(files, 2, 7);
    /* keys younger than the window still replay */
    assert_int_equal(svc_idem_begin(idem, "k/r/5", 1, &status, &body), SVC_IDEM_DONE);
    free(body);
    usleep(1500000);
    svc_idem_sync(idem);
    usleep(210000);
    svc_idem_sync(idem);
    /* all expired: gone from memory, and only the current file is left */
    assert_int_equal(svc_idem_begin(idem, "k/r/5", 1, &status, &body), SVC_IDEM_NEW);
    svc_idem_release(idem, "k/r/5");
    assert_int_equal(journal_files(data), 1);
    assert_int_equal(svc_idem_close(idem), 0);
    nftw(data, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claims_and_replays),
        cmocka_unit_test(files_rotate_and_expire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
