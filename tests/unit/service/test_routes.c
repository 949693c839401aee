/*
 * test_routes.c -- the OpenAPI document and the route table agree: every route the
 * server has is documented with its method, and every documented path and method is
 * one route. A route with a "{}" segment may be documented by concrete paths instead of
 * one template: tools/gen-openapi writes /v1/queries/NAME for each named query.
 */
#include "service/serve_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

extern const char svc_openapi_doc[];

/* How a documented path matches a route: NONE; TEMPLATE, each "{}" of the route is a
 * "{name}" segment of the document ("/v1/commands/{}" and "/v1/commands/{type}"), the rest
 * equal; CONCRETE, the same but some "{}" is a fixed segment, as the router would match it
 * ("/v1/queries/{}" and "/v1/queries/orders": one documented operation per named query). */
enum { NONE, TEMPLATE, CONCRETE };

static int match_path(const char *route, const char *doc)
{
    int how = TEMPLATE;
    for (;;) {
        const char *hole = strstr(route, "{}");
        if (!hole)
            return strcmp(route, doc) == 0 ? how : NONE;
        size_t n = (size_t)(hole - route);
        if (strncmp(route, doc, n) != 0)
            return NONE;
        doc += n;
        size_t len = strcspn(doc, "/");
        if (len == 0)
            return NONE;
        if (doc[0] == '{' && doc[len - 1] == '}' && len > 2 && !memchr(doc + 1, '{', len - 2)) {
            /* a template: "{name}" */
        } else if (memchr(doc, '{', len) || memchr(doc, '}', len)) {
            return NONE;
        } else {
            how = CONCRETE;
        }
        route = hole + 2;
        doc += len;
    }
}

static void lower(const char *in, char *out, size_t size)
{
    size_t i = 0;
    for (; in[i] && i + 1 < size; i++)
        out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    out[i] = '\0';
}

/* Every route is documented: by exactly one templated path, or (a route with "{}") by
 * one or more concrete paths and no template. */
static void every_route_is_documented(void **state)
{
    (void)state;
    json_t *doc = json_loads(svc_openapi_doc, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    json_t *paths = json_object_get(doc, "paths");
    for (size_t i = 0; i < svc_nroutes; i++) {
        char method[16];
        lower(svc_routes[i].method, method, sizeof method);
        int templated = 0, concrete = 0;
        const char *p;
        json_t *item;
        json_object_foreach(paths, p, item)
        {
            if (!json_object_get(item, method))
                continue;
            int how = match_path(svc_routes[i].path, p);
            templated += how == TEMPLATE;
            concrete += how == CONCRETE;
        }
        if (templated + concrete == 0)
            fail_msg("route %s %s is not in docs/openapi.json", svc_routes[i].method,
                     svc_routes[i].path);
        if (templated > 1 || (templated && concrete))
            fail_msg("route %s %s is documented %d times (%d templated)", svc_routes[i].method,
                     svc_routes[i].path, templated + concrete, templated);
    }
    json_decref(doc);
}

static void every_documented_route_exists(void **state)
{
    (void)state;
    json_t *doc = json_loads(svc_openapi_doc, 0, NULL);
    assert_non_null(doc);
    const char *p, *m;
    json_t *item, *op;
    size_t operations = 0;
    json_object_foreach(json_object_get(doc, "paths"), p, item)
    {
        json_object_foreach(item, m, op)
        {
            if (strcmp(m, "parameters") == 0 || strcmp(m, "summary") == 0 ||
                strcmp(m, "description") == 0)
                continue;
            operations++;
            int routes = 0;
            for (size_t i = 0; i < svc_nroutes; i++) {
                char method[16];
                lower(svc_routes[i].method, method, sizeof method);
                if (strcmp(method, m) == 0 && match_path(svc_routes[i].path, p) != NONE)
                    routes++;
            }
            if (routes != 1)
                fail_msg("docs/openapi.json documents %s %s, which matches %d routes", m, p,
                         routes);
        }
    }
    assert_true(operations >= svc_nroutes);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_is_documented),
        cmocka_unit_test(every_documented_route_exists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
