/*
 * kafka_int.h -- declarations shared by the Kafka files of store/ (library skald_relay),
 * kept apart from store_int.h so that the log's own files never see librdkafka.
 */
#ifndef SKALD_STORE_KAFKA_INT_H
#define SKALD_STORE_KAFKA_INT_H

#include "store/store_int.h"

#include <librdkafka/rdkafka.h>

/* kafka_event.c: one message of the relay's topic back into an event. 0 and *out (its
 * strings and payload point into m: valid while m lives), or SK_ECORRUPT with err naming
 * the partition, the offset and the field. */
int store_kafka_event_decode(const rd_kafka_message_t *m, ev_event *out, sk_error *err);

#endif /* SKALD_STORE_KAFKA_INT_H */
