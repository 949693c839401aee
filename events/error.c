/*
 * error.c -- names and messages for Skald's error codes, and the sk_error detail struct.
 *
 * Codes are negative: negated errno values for system failures, SK_E* (below -1000) for
 * Skald's own. One X-macro list in events.h yields the enum, the names and the messages,
 * so the three can never disagree.
 */
#include "events/events.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sk_err_name(int err)
{
    switch (err) {
#define SK_ERRNO_NAME(name, value, msg)                                                            \
    case SK_E##name:                                                                               \
        return "SK_E" #name;
        SK_ERRNO_MAP(SK_ERRNO_NAME)
#undef SK_ERRNO_NAME
    case 0:
        return "OK";
    case -ENOENT:
        return "ENOENT";
    case -EIO:
        return "EIO";
    case -ENOSPC:
        return "ENOSPC";
    case -ENOMEM:
        return "ENOMEM";
    case -EINVAL:
        return "EINVAL";
    case -EACCES:
        return "EACCES";
    case -EEXIST:
        return "EEXIST";
    case -EDQUOT:
        return "EDQUOT";
    case -EFBIG:
        return "EFBIG";
    case -EAGAIN:
        return "EAGAIN";
    default:
        return "EUNKNOWN";
    }
}

const char *sk_strerror(int err)
{
    switch (err) {
#define SK_ERRNO_MSG(name, value, msg)                                                             \
    case SK_E##name:                                                                               \
        return msg;
        SK_ERRNO_MAP(SK_ERRNO_MSG)
#undef SK_ERRNO_MSG
    case 0:
        return "success";
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        /* strerrordesc_np is thread-safe and returns static text (glibc >= 2.32). */
        const char *s = strerrordesc_np(-err);
        if (s)
            return s;
    }
    return "unknown error";
}

int sk_error_set(sk_error *err, int code, const char *field, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

void sk_error_clear(sk_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}
