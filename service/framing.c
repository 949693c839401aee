/*
 * framing.c -- the head of a request checked as RFC 9112 wants, before any route runs.
 *
 * Why: libmicrohttpd 0.9.75 is lenient where leniency lets a request be smuggled. With
 * two Content-Length headers it frames the body by the first, so bytes the client meant
 * as body become a second request; with Transfer-Encoding and Content-Length both it
 * goes by Transfer-Encoding while a proxy in front may go by the length. An ambiguous
 * head is therefore refused (400, connection closed, nothing read after it):
 *
 *   - Content-Length twice (even with equal values), or not all digits;
 *   - Transfer-Encoding with Content-Length, twice, or on HTTP/1.0; one other than
 *     "chunked" is 501 (the only coding libmicrohttpd decodes);
 *   - Host missing on HTTP/1.1, or twice;
 *   - Authorization twice (which token would count?);
 *   - a field name that is not an RFC 9110 token, a field value holding CR, LF or NUL
 *     (a bare CR inside a line: RFC 9112 section 2.2 lets a recipient reject it);
 *   - a field with an empty name (libmicrohttpd ends the head there: head_ends_cleanly);
 *   - obs-fold (a line starting with SP or HTAB continuing the previous field). RFC 9112
 *     section 5.2 lets a server reject it or replace it with SP; libmicrohttpd 0.9.75 does
 *     neither: it appends the continuation to the field *name* in a copy elsewhere in its
 *     memory pool. A field parsed in place has its value right after its name in the
 *     read buffer ("name\0" then optional SP/HTAB then the value); a folded one does not,
 *     and that is how it is found here.
 * A bare LF as line end is accepted (libmicrohttpd does; RFC 9112 section 2.2 allows it).
 * docs/http-api.md ("Framing") says what a client sees.
 */
#include "service/serve_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct head_scan {
    unsigned content_length, transfer_encoding, host, authorization;
    const char *te;       /* the Transfer-Encoding value */
    const char *last_end; /* where the last field's value ends */
    const char *bad_name; /* the first field at fault, and why */
    const char *bad_why;
} head_scan;

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* 1 if the value follows its name in place: "name\0", then SP/HTAB, then the value. The
 * bytes looked at lie between two pointers into the same read buffer, and at most a
 * line's worth of them. */
static int parsed_in_place(const char *key, size_t key_size, const char *value)
{
    const char *p = key + key_size;
    if (value <= p || (size_t)(value - p) > 4096 || *p != '\0')
        return 0;
    for (p++; p < value; p++)
        if (*p != ' ' && *p != '\t')
            return 0;
    return 1;
}

static int is_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return n > 0;
}

static const char *field_fault(const char *key, size_t key_size, const char *value,
                               size_t value_size)
{
    if (!is_token(key, key_size))
        return "has a name that is not a token (empty, or with a space or a control "
               "character, or a folded line appended to it)";
    if (strlen(value) != value_size || strpbrk(value, "\r\n"))
        return "holds CR, LF or NUL in its value";
    if (!parsed_in_place(key, key_size, value))
        return "is folded over more than one line (obs-fold)";
    return NULL;
}

static enum MHD_Result scan_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    head_scan *h = cls;
    const char *why = !key || !value ? "has an empty name or no value"
                                     : field_fault(key, key_size, value, value_size);
    if (why && !h->bad_why) {
        h->bad_name = key && !strstr(why, "obs-fold") ? key : NULL; /* folded: name garbled */
        h->bad_why = why;
    }
    if (!key || !value)
        return MHD_YES;
    h->last_end = value + value_size;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        h->content_length++;
        if ((value_size == 0 || strspn(value, "0123456789") != value_size) && !h->bad_why) {
            h->bad_name = key;
            h->bad_why = "Content-Length is not a number of bytes";
        }
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        h->transfer_encoding++;
        h->te = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        h->host++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0) {
        h->authorization++;
    }
    return MHD_YES;
}

/* 1 if the head ended with an empty line. libmicrohttpd 0.9.75 ends it early at a line
 * whose name is empty (": x" or ":"): it cuts the name off at the colon and then takes
 * the line for the empty one, so the fields after it, and any body, are read as the next
 * request. Its parser works in place, turning line ends into NULs, and the head's bytes
 * run from the method to method + header size; after the last field's value (or the
 * request line) only the NULs of two line ends may follow: 2 (LF LF) to 4 (CRLF CRLF).
 * One case looks the same as a good end and passes: a ":" line ended by a bare LF after
 * a CRLF line (NULs either way). */
static int head_ends_cleanly(svc_request *rq, const char *method, const char *version,
                             const char *last_end)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (!ci || !method || !version)
        return 1;
    uintptr_t start = (uintptr_t)method, end = start + ci->header_size;
    uintptr_t from = (uintptr_t)(version + strlen(version));
    if (last_end && (uintptr_t)last_end > from)
        from = (uintptr_t)last_end;
    if (from < start || from > end)
        return 1; /* not in place (a field was copied): nothing to tell from here */
    if (end - from < 2 || end - from > 4)
        return 0;
    for (size_t i = (size_t)(from - start); i < ci->header_size; i++)
        if (method[i] != '\0') /* from inside the head: index it from the method */
            return 0;
    return 1;
}

static int refuse(svc_request *rq, unsigned status, const char *field, const char *detail)
{
    rq->close = 1;
    svc_problem(rq, status, status == 501 ? "unsupported_transfer_coding" : "bad_framing", field,
                "%s; the connection is closed (RFC 9112)", detail);
    return -1;
}

int svc_framing_check(svc_request *rq, const char *method, const char *version)
{
    head_scan h = {0};
    MHD_get_connection_values_n(rq->conn, MHD_HEADER_KIND, scan_field, &h);
    if (!h.bad_why && !head_ends_cleanly(rq, method, version, h.last_end))
        h.bad_why = "has an empty name (a line starting with ':')";
    bool http11 = version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
    if (h.bad_why) {
        char detail[200];
        snprintf(detail, sizeof detail, "a header field %s", h.bad_why);
        /* the name may be garbage: name it only when it is a token */
        bool named = h.bad_name && is_token(h.bad_name, strlen(h.bad_name));
        return refuse(rq, 400, named ? h.bad_name : NULL, detail);
    }
    if (h.content_length > 1)
        return refuse(rq, 400, "Content-Length", "Content-Length is given more than once");
    if (h.transfer_encoding && h.content_length)
        return refuse(rq, 400, "Transfer-Encoding",
                      "Transfer-Encoding and Content-Length together frame the body two ways");
    if (h.transfer_encoding > 1)
        return refuse(rq, 400, "Transfer-Encoding", "Transfer-Encoding is given more than once");
    if (h.transfer_encoding && !http11)
        return refuse(rq, 400, "Transfer-Encoding", "Transfer-Encoding needs HTTP/1.1");
    if (h.transfer_encoding && strcasecmp(h.te, "chunked") != 0)
        return refuse(rq, 501, "Transfer-Encoding", "the only transfer coding taken is chunked");
    if (http11 && h.host != 1)
        return refuse(rq, 400, "Host",
                      h.host ? "Host is given more than once" : "an HTTP/1.1 request needs Host");
    if (h.host > 1)
        return refuse(rq, 400, "Host", "Host is given more than once");
    if (h.authorization > 1)
        return refuse(rq, 400, "Authorization", "Authorization is given more than once");
    return 0;
}

typedef struct query_scan {
    const char *names[64]; /* the first 64 distinct names; more are refused anyway */
    size_t count;
    const char *repeated;
    bool too_many;
} query_scan;

static enum MHD_Result scan_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    (void)value;
    query_scan *q = cls;
    if (!key || q->repeated)
        return MHD_YES;
    for (size_t i = 0; i < q->count; i++)
        if (strcmp(q->names[i], key) == 0) {
            q->repeated = key;
            return MHD_NO;
        }
    if (q->count == sizeof q->names / sizeof q->names[0]) {
        q->repeated = key; /* past 64 parameters: refused, named by the 65th */
        q->too_many = true;
        return MHD_NO;
    }
    q->names[q->count++] = key;
    return MHD_YES;
}

int svc_query_check(svc_request *rq)
{
    query_scan q = {.count = 0};
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, scan_query, &q);
    if (!q.repeated)
        return 0;
    if (q.too_many)
        svc_problem(rq, 400, "invalid_parameter", q.repeated, "at most %zu query parameters",
                    q.count);
    else
        svc_problem(rq, 400, "invalid_parameter", q.repeated,
                    "query parameter '%s' is given more than once; give it once", q.repeated);
    return -1;
}
