/*
 * test_store_verify.c -- a flipped bit anywhere in a record is found by verify; damage in
 * the middle of the log refuses a read-write open with the segment and offset named, and
 * repair at the named position lets the log open again.
 */
#include "storetest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SEGMENT_BYTES 2048

typedef struct faults {
    int count;
    char segment[64];
    uint64_t offset;
} faults;

static void on_fault(void *ctx, const char *segment, uint64_t offset, const char *what)
{
    faults *f = ctx;
    if (f->count++ == 0) {
        snprintf(f->segment, sizeof f->segment, "%s", segment);
        f->offset = offset;
    }
}

static uint64_t build(const char *dir, int appends)
{
    store_log *log = st_open(dir, SEGMENT_BYTES);
    st_event e;
    sk_error err;
    for (int i = 0; i < appends; i++) {
        st_make(&e, "v", (uint64_t)i, 30);
        assert_int_equal(store_log_append(log, ev_str_of(i % 2 ? "odd" : "even"), STORE_EXPECT_ANY,
                                          &e.ev, 1, NULL, &err),
                         0);
    }
    uint64_t head = store_log_head(log);
    store_log_close(log);
    return head;
}

static void flip(const char *path, long offset, int bit)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, offset, SEEK_SET);
    int c = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(c ^ (1 << bit), f);
    fclose(f);
}

static void test_intact_log_verifies(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    uint64_t n = build(dir, 100);
    faults f = {0};
    store_verify_report rep;
    assert_int_equal(store_log_verify(dir, NULL, on_fault, NULL, &f, &rep), 0);
    assert_int_equal(f.count, 0);
    assert_int_equal(rep.records, n);
    assert_true(rep.segments >= 3);
    assert_int_equal(rep.faults, 0);
    st_rmrf(dir);
    free(dir);
}

typedef struct file_list {
    char names[64][64];
    int count;
} file_list;

/* Names in dir ending in suffix, into l. */
static void list_files(const char *dir, const char *suffix, file_list *l)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    size_t sl = strlen(suffix);
    while ((e = readdir(d)) != NULL && l->count < 64) {
        size_t len = strlen(e->d_name);
        if (len > sl && len < 64 && strcmp(e->d_name + len - sl, suffix) == 0)
            snprintf(l->names[l->count++], 64, "%s", e->d_name);
    }
    closedir(d);
}

/* Flips one bit at every byte of dir/name in turn, runs verify (which only reads), and
 * flips it back. With is_segment the first fault must name that segment at or before the
 * flipped byte. Ends with the log intact again. */
static void flip_every_byte(const char *dir, const char *name, bool is_segment)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 0);
    for (long off = 0; off < st.st_size; off++) {
        int bit = (int)(off % 8);
        flip(path, off, bit);
        faults f = {0};
        store_verify_report rep;
        int rc = store_log_verify(dir, NULL, on_fault, NULL, &f, &rep);
        flip(path, off, bit);
        if (rc != SK_ECORRUPT || f.count == 0 || rep.faults == 0)
            fail_msg("%s: flipped bit %d at offset %ld not found (rc %d, %d faults)", name, bit,
                     off, rc, f.count);
        if (is_segment && (strcmp(f.segment, name) != 0 || f.offset > (uint64_t)off))
            fail_msg("%s: flipped bit at offset %ld reported as %s offset %llu", name, off,
                     f.segment, (unsigned long long)f.offset);
    }
}

/* Every byte of every segment (sealed and active) and of every index file, one at a time. */
static void test_every_flipped_bit_is_found(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    build(dir, 30); /* about 14 records a segment: two sealed segments and the active one */
    file_list segs = {0}, idx = {0};
    list_files(dir, ".log", &segs);
    list_files(dir, ".index", &idx);
    list_files(dir, ".sidx", &idx);
    assert_true(segs.count >= 3);
    assert_true(idx.count >= 2);
    for (int i = 0; i < segs.count; i++)
        flip_every_byte(dir, segs.names[i], true);
    for (int i = 0; i < idx.count; i++)
        flip_every_byte(dir, idx.names[i], false);
    store_verify_report rep;
    assert_int_equal(store_log_verify(dir, NULL, NULL, NULL, NULL, &rep), 0);
    assert_int_equal(rep.records, 30);
    st_rmrf(dir);
    free(dir);
}

static void test_middle_damage_refuses_open_until_repair(void **state)
{
    (void)state;
    char *dir = st_tempdir();
    uint64_t n = build(dir, 100);
    /* Damage the second record of the first (sealed) segment. */
    char first[4200];
    snprintf(first, sizeof first, "%s/00000000000000000000.log", dir);
    flip(first, 150, 3);
    store_config cfg;
    store_config_init(&cfg, dir);
    cfg.segment_bytes_max = SEGMENT_BYTES;
    cfg.verify_on_open = 1;
    store_log *log = NULL;
    sk_error err = {0};
    assert_int_equal(store_log_open(&cfg, &log, &err), SK_ECORRUPT);
    assert_null(log);
    if (!strstr(err.message, "00000000000000000000.log") || !strstr(err.message, "byte offset") ||
        !strstr(err.message, "repair --truncate-at 1"))
        fail_msg("message does not name segment, offset and repair: %s", err.message);
    /* Without verify_on_open the sealed segment is not re-read, but a reader meets it. */
    cfg.verify_on_open = 0;
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    store_reader *r;
    assert_int_equal(store_reader_open(log, 0, &r), 0);
    ev_event ev;
    assert_int_equal(store_reader_next(r, &ev, &err), 1);
    assert_int_equal(store_reader_next(r, &ev, &err), SK_ECORRUPT);
    assert_non_null(strstr(err.message, "00000000000000000000.log"));
    assert_non_null(strstr(err.message, "repair --truncate-at 1"));
    store_reader_close(r);
    store_log_close(log);
    /* What the reader met is not forgotten: the log now refuses writes until repaired. */
    assert_int_equal(store_log_open(&cfg, &log, &err), SK_ECORRUPT);
    assert_non_null(strstr(err.message, "a read found damage"));
    assert_non_null(strstr(err.message, "00000000000000000000.log"));
    cfg.read_only = 1; /* reading it stays possible */
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    store_log_close(log);
    cfg.read_only = 0;
    /* Damage in the middle of the active segment, with later batches after it: refused. */
    char *dir2 = st_tempdir();
    build(dir2, 10);
    char seg[4400];
    st_last_segment(dir2, seg, sizeof seg);
    flip(seg, 200, 1);
    store_config cfg2;
    store_config_init(&cfg2, dir2);
    log = NULL;
    assert_int_equal(store_log_open(&cfg2, &log, &err), SK_ECORRUPT);
    assert_null(log);
    const char *seg_name = strrchr(seg, '/') + 1;
    const char *at = strstr(err.message, "repair --truncate-at ");
    if (!at || !strstr(err.message, seg_name) || !strstr(err.message, "byte offset"))
        fail_msg("message does not name segment, offset and repair: %s", err.message);
    /* Offset 200 lies in the second record (each is about 150 bytes): position 1. */
    uint64_t p2 = at ? strtoull(at + strlen("repair --truncate-at "), NULL, 10) : UINT64_MAX;
    assert_int_equal(p2, 1);
    assert_int_equal(store_log_repair(dir2, NULL, p2, &err), 0);
    assert_int_equal(store_log_open(&cfg2, &log, &err), 0);
    assert_int_equal(store_log_head(log), p2);
    store_log_close(log);
    /* Repair at the position it names. */
    assert_int_equal(store_log_repair(dir, NULL, 1, &err), 0);
    cfg.verify_on_open = 1;
    assert_int_equal(store_log_open(&cfg, &log, &err), 0);
    assert_int_equal(store_log_head(log), 1);
    st_event e;
    st_make(&e, "after", 1, 3);
    assert_int_equal(
        store_log_append(log, ev_str_of("even"), STORE_EXPECT_ANY, &e.ev, 1, NULL, &err), 0);
    store_log_close(log);
    faults f = {0};
    store_verify_report rep;
    assert_int_equal(store_log_verify(dir, NULL, on_fault, NULL, &f, &rep), 0);
    assert_int_equal(rep.records, 2);
    assert_true(n > 2);
    st_rmrf(dir);
    st_rmrf(dir2);
    free(dir);
    free(dir2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intact_log_verifies),
        cmocka_unit_test(test_every_flipped_bit_is_found),
        cmocka_unit_test(test_middle_damage_refuses_open_until_repair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
