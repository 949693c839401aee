/*
 * dashboard.c -- the operators' page at / and its assets at /dashboard/NAME.
 *
 * The files are those of service/dashboard/, compiled into the binary by service/embed.cmake (as
 * docs/openapi.json is), so a server with no network and no install tree still serves
 * them, and a binary always serves the page it was built with. They need no token: the
 * page itself asks for one when the API answers 401, and holds nothing secret.
 *
 * Every answer carries a strict Content-Security-Policy: only this origin's scripts and
 * styles, no inline code, no framing, fetches and the feed to this origin only. So data
 * the page shows (order ids, product names) can never run as script even if a bug put it
 * into markup.
 */
#include "service/serve_int.h"

#include <stdlib.h>
#include <string.h>

extern const char svc_dashboard_index_html[], svc_dashboard_app_js[], svc_dashboard_style_css[];
extern const size_t svc_dashboard_index_html_len, svc_dashboard_app_js_len,
    svc_dashboard_style_css_len;

typedef struct asset {
    const char *name; /* the NAME of /dashboard/NAME */
    const char *type;
    const char *data;
    const size_t *len;
} asset;

static const asset assets[] = {
    {"index.html", "text/html; charset=utf-8", svc_dashboard_index_html,
     &svc_dashboard_index_html_len},
    {"app.js", "text/javascript; charset=utf-8", svc_dashboard_app_js, &svc_dashboard_app_js_len},
    {"style.css", "text/css; charset=utf-8", svc_dashboard_style_css, &svc_dashboard_style_css_len},
};

static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/* name, value pairs ending with NULL: static, as svc_request.headers wants */
static const char *const asset_headers[] = {
    "Content-Security-Policy",
    csp,
    "X-Content-Type-Options",
    "nosniff",
    "X-Frame-Options",
    "DENY",
    "Referrer-Policy",
    "no-referrer",
    /* the page is small and changes with the binary: always revalidate */
    "Cache-Control",
    "no-cache",
    NULL,
};

static int answer_asset(svc_request *rq, const char *name)
{
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++) {
        if (strcmp(assets[i].name, name) != 0)
            continue;
        size_t len = *assets[i].len;
        char *copy = malloc(len + 1);
        if (!copy) {
            svc_problem(rq, 503, "unavailable", NULL, "out of memory");
            return 0;
        }
        memcpy(copy, assets[i].data, len + 1);
        rq->headers = asset_headers;
        svc_answer(rq, 200, assets[i].type, copy, len);
        return 0;
    }
    svc_problem(rq, 404, "unknown_file", NULL, "no dashboard file '%s'", name);
    return 0;
}

int svc_route_dashboard(svc_request *rq)
{
    return answer_asset(rq, "index.html");
}

int svc_route_dashboard_asset(svc_request *rq)
{
    return answer_asset(rq, rq->arg);
}
