/*
 * logline.c -- the service's log lines. There is one writer for the whole process,
 * sk_log_write_json (events/log.c): the service's own lines go through it with the
 * subsystem "service", and the lower layers' messages (store/, commands/) reach it
 * through sk_log, whose level the service sets from --log-level (serve.c).
 */
#include "service/serve_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBSYSTEM "service"

void svc_log_fields(sk_log_level level, const char *msg, const json_t *fields)
{
    sk_log_write_json(level, SUBSYSTEM, msg, fields);
}

void svc_log(sk_log_level level, const char *msg, ...)
{
    if (!sk_log_enabled(level))
        return;
    json_t *fields = json_object();
    va_list ap;
    va_start(ap, msg);
    const char *key;
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        if (fields && value && *value && json_object_set_new(fields, key, json_string(value)) != 0)
            break; /* out of memory: the line goes out with the fields it has */
    }
    va_end(ap);
    sk_log_write_json(level, SUBSYSTEM, msg, fields);
    json_decref(fields);
}
