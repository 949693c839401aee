/*
 * params.c -- checks a request's parameters against a query's declaration before anything
 * touches a database: every bad input is a 400 naming the parameter, never a SQLite error
 * or a silently ignored typo. Also the fingerprint that ties a cursor to the parameter
 * values of the call that made it.
 */
#include "queries/queries_int.h"

#include <errno.h>
#include <string.h>

/* Strict decimal: an optional '-', digits only, no spaces, no overflow. */
static bool parse_int(const char *s, long long *out)
{
    const char *p = s[0] == '-' ? s + 1 : s;
    if (!*p)
        return false;
    for (const char *c = p; *c; c++)
        if (*c < '0' || *c > '9')
            return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF), with no
 * NUL; answers are JSON and values are bound as SQLite text. */
static bool valid_utf8(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s;
        int n;
        unsigned min;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            min = 0x80;
            c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            min = 0x800;
            c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return false;
        }
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (s[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

static int out_of_range(sk_error *err, const char *name, const char *query, long long lo,
                        long long hi)
{
    return sk_error_set(err, SK_EBADINPUT, name,
                        "%s (query '%s') must be an integer from %lld to %lld", name, query, lo,
                        hi);
}

static int parse_reserved(const qry_decl *d, const char *name, const char *value, qry_args *a,
                          sk_error *err)
{
    long long v = 0;
    if (strcmp(name, "cursor") == 0) {
        if (strlen(value) > QRY_CURSOR_MAX || !*value)
            return sk_error_set(err, SK_EBADINPUT, name, "cursor is not a cursor of query '%s'",
                                d->name);
        a->cursor = value;
        return 0;
    }
    bool is_int = parse_int(value, &v);
    if (strcmp(name, "limit") == 0) {
        if (!is_int || v < 1 || v > QRY_LIMIT_MAX)
            return out_of_range(err, name, d->name, 1, QRY_LIMIT_MAX);
        a->limit = (int)v;
    } else if (strcmp(name, "timeout_ms") == 0) {
        if (!is_int || v < 0 || v > QRY_TIMEOUT_MS_MAX)
            return out_of_range(err, name, d->name, 0, QRY_TIMEOUT_MS_MAX);
        a->timeout_ms = (int)v;
    } else {
        if (!is_int || v < 0)
            return out_of_range(err, name, d->name, 0, INT64_MAX);
        a->has_min_position = true;
        a->min_position = (uint64_t)v;
    }
    return 0;
}

static int parse_declared(const qry_decl *d, size_t i, const char *value, qry_args *a,
                          sk_error *err)
{
    const qry_param_decl *pd = &d->params[i];
    const char *name = pd->name;
    if (pd->type == QRY_INTEGER) {
        if (!parse_int(value, &a->ints[i]))
            return sk_error_set(err, SK_EBADINPUT, name,
                                "%s (query '%s') must be an integer, not '%.64s'", name, d->name,
                                value);
    } else if (!valid_utf8(value)) {
        return sk_error_set(err, SK_EBADINPUT, name, "%s (query '%s') is not valid UTF-8", name,
                            d->name);
    }
    if (pd->in_count) {
        bool found = false;
        for (size_t j = 0; j < pd->in_count && !found; j++) {
            long long v = 0;
            found = pd->type == QRY_INTEGER ? parse_int(pd->in[j], &v) && v == a->ints[i]
                                            : strcmp(pd->in[j], value) == 0;
        }
        if (!found) {
            char list[200] = "";
            size_t used = 0;
            for (size_t j = 0; j < pd->in_count && used < sizeof list; j++) {
                int n = snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", pd->in[j]);
                used += n > 0 ? (size_t)n : 0;
            }
            return sk_error_set(err, SK_EBADINPUT, name, "%s (query '%s') must be one of: %s", name,
                                d->name, list);
        }
    }
    a->values[i] = value;
    return 0;
}

int qry_args_parse(const qry_decl *d, const qry_param *params, size_t count, qry_args *out,
                   sk_error *err)
{
    static const char *const reserved[] = {"limit", "cursor", "min_position", "timeout_ms"};
    enum { NRESERVED = sizeof reserved / sizeof *reserved };
    QRY_ASSERT(d && out);
    QRY_ASSERT(params || count == 0);
    qry_args a;
    memset(&a, 0, sizeof a);
    a.limit = QRY_LIMIT_DEFAULT;
    a.timeout_ms = QRY_TIMEOUT_MS_DEFAULT;
    bool seen_reserved[NRESERVED] = {false};
    for (size_t k = 0; k < count; k++) {
        const char *name = params[k].name, *value = params[k].value;
        QRY_ASSERT(name);
        size_t r = 0, i = 0;
        while (r < NRESERVED && strcmp(reserved[r], name) != 0)
            r++;
        while (r == NRESERVED && i < d->param_count && strcmp(d->params[i].name, name) != 0)
            i++;
        char shown[QRY_NAME_MAX];
        snprintf(shown, sizeof shown, "%s", name);
        if (r == NRESERVED && i == d->param_count)
            return sk_error_set(err, SK_EBADINPUT, shown,
                                "query '%s' has no parameter '%s' (see GET /v1/queries)", d->name,
                                shown);
        bool *seen = r < NRESERVED ? &seen_reserved[r] : NULL;
        if ((seen && *seen) || (!seen && a.values[i]))
            return sk_error_set(err, SK_EBADINPUT, shown, "%s is given more than once", shown);
        if (!value)
            return sk_error_set(err, SK_EBADINPUT, shown, "%s needs a value (%s=...)", shown,
                                shown);
        if (strlen(value) > QRY_VALUE_MAX)
            return sk_error_set(err, SK_EBADINPUT, shown, "%s is longer than %d bytes", shown,
                                QRY_VALUE_MAX);
        int rc =
            seen ? parse_reserved(d, name, value, &a, err) : parse_declared(d, i, value, &a, err);
        if (rc)
            return rc;
        if (seen)
            *seen = true;
    }
    for (size_t i = 0; i < d->param_count; i++)
        if (d->params[i].required && !a.values[i])
            return sk_error_set(err, SK_EBADINPUT, d->params[i].name,
                                "query '%s' needs parameter %s", d->name, d->params[i].name);
    *out = a;
    return 0;
}

void qry_args_fingerprint(const qry_decl *d, const qry_args *a, char out[QRY_FINGERPRINT_HEX + 1])
{
    qry_sha256 s;
    qry_sha256_init(&s);
    qry_sha256_update(&s, d->name, strlen(d->name) + 1);
    for (size_t i = 0; i < d->param_count; i++) {
        char num[32];
        const char *v = a->values[i];
        if (v && d->params[i].type == QRY_INTEGER) {
            snprintf(num, sizeof num, "%lld", a->ints[i]); /* "007" continues "7" */
            v = num;
        }
        uint8_t given = v != NULL;
        uint64_t len = v ? strlen(v) : 0;
        qry_sha256_update(&s, d->params[i].name, strlen(d->params[i].name) + 1);
        qry_sha256_update(&s, &given, 1);
        qry_sha256_update(&s, &len, sizeof len);
        if (v)
            qry_sha256_update(&s, v, len);
    }
    uint8_t h[32];
    qry_sha256_final(&s, h);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < QRY_FINGERPRINT_HEX / 2; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[QRY_FINGERPRINT_HEX] = 0;
}
