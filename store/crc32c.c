/*
 * crc32c.c -- CRC32C (Castagnoli), the checksum of every log record.
 *
 * CRC32C rather than zlib's CRC32 because x86-64 computes it in hardware (SSE4.2): the
 * appender checksums every byte it writes and the readers every byte they read, so the
 * checksum must cost far less than the I/O it guards. Elsewhere (and on x86-64 without
 * SSE4.2) a table-driven version (one byte per step) runs; both give identical results,
 * which tests/unit/store/test_store_crc32c.c checks on known answers.
 */
#include "store/store_int.h"

#include <string.h>

#define CRC32C_POLY_REVERSED 0x82F63B78u

typedef struct crc_table {
    uint32_t t[256];
} crc_table;

static crc_table make_table(void)
{
    crc_table tab;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REVERSED : c >> 1;
        tab.t[i] = c;
    }
    return tab;
}

static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t n)
{
    /* Built on first use; the table is a pure function of the polynomial, so a race
     * between two first users writes the same values. */
    static crc_table tab;
    static _Atomic int ready;
    if (!ready) {
        tab = make_table();
        ready = 1;
    }
    while (n--)
        crc = tab.t[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

static int have_hw(void)
{
    static _Atomic int cached = -1;
    int v = cached;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        cached = v;
    }
    return v;
}
#endif

uint32_t store_crc32c(uint32_t crc, const void *data, size_t size)
{
    const uint8_t *p = data;
    crc = ~crc;
#if defined(__x86_64__)
    if (have_hw())
        return ~crc_hw(crc, p, size);
#endif
    return ~crc_soft(crc, p, size);
}
