/*
 * relay_checkpoint.c -- the Kafka relay's checkpoint: how far Kafka has everything.
 *
 * File DATA/relay.checkpoint, little-endian:
 *   8 magic "SKLDRLY1", u32 format (1), u32 topic length, u64 next position,
 *   i64 written at (µs since the epoch), the topic's bytes, u32 CRC32C of all before it.
 * `next position` is the first event Kafka has not acknowledged: every event below it
 * is in the topic. The relay replaces the file atomically (temp file, fdatasync, rename,
 * directory sync), so a crash leaves the old file or the new one, never a torn one; a
 * CRC failure therefore means damage, reported as SK_ECORRUPT rather than guessed
 * around (starting from 0 would republish the whole log, which a person should decide).
 *
 * It lives in skald_store, not skald_relay, so that tools read it without librdkafka.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RCKP_MAGIC  "SKLDRLY1"
#define RCKP_HEADER 32
_Static_assert(RCKP_HEADER == 8 + 4 + 4 + 8 + 8, "relay checkpoint header layout");

int store_relay_checkpoint_write(const char *data_dir, uint64_t position, const char *topic)
{
    size_t tlen = strlen(topic);
    SK_ASSERT(tlen <= STORE_RELAY_TOPIC_MAX);
    uint8_t buf[RCKP_HEADER + STORE_RELAY_TOPIC_MAX + 4];
    memcpy(buf, RCKP_MAGIC, 8);
    store_put_u32(buf + 8, 1);
    store_put_u32(buf + 12, (uint32_t)tlen);
    store_put_u64(buf + 16, position);
    store_put_u64(buf + 24, (uint64_t)ev_now_us());
    memcpy(buf + RCKP_HEADER, topic, tlen);
    store_put_u32(buf + RCKP_HEADER + tlen, store_crc32c(0, buf, RCKP_HEADER + tlen));
    return store_io_write_file_atomic(store_io_posix(), data_dir, STORE_RELAY_CHECKPOINT_FILE, buf,
                                      RCKP_HEADER + tlen + 4);
}

int store_relay_checkpoint_read(const char *data_dir, uint64_t *position_out, char *topic,
                                size_t topic_size)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", data_dir, STORE_RELAY_CHECKPOINT_FILE);
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = store_io_read_file(store_io_posix(), path, RCKP_HEADER + STORE_RELAY_TOPIC_MAX + 4,
                                &buf, &size);
    if (rc == -ENOENT)
        return SK_ENOTFOUND;
    if (rc == SK_ETOOBIG)
        return SK_ECORRUPT;
    if (rc)
        return rc;
    uint32_t tlen = size >= RCKP_HEADER ? store_get_u32(buf + 12) : 0;
    if (size < RCKP_HEADER + 4 || memcmp(buf, RCKP_MAGIC, 8) != 0 || store_get_u32(buf + 8) != 1 ||
        tlen > STORE_RELAY_TOPIC_MAX || size != RCKP_HEADER + tlen + 4 ||
        store_get_u32(buf + RCKP_HEADER + tlen) != store_crc32c(0, buf, RCKP_HEADER + tlen)) {
        free(buf);
        return SK_ECORRUPT;
    }
    *position_out = store_get_u64(buf + 16);
    if (topic && topic_size > 0) {
        size_t n = tlen < topic_size - 1 ? tlen : topic_size - 1;
        memcpy(topic, buf + RCKP_HEADER, n);
        topic[n] = '\0';
    }
    free(buf);
    return 0;
}
