/*
 * test_routes.c -- the OpenAPI document and the route table agree: every route the
 * server has is documented with its method, and every documented path and method is a
 * route.
 */
#include "service/serve_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

extern const char svc_openapi_doc[];

/* "/v1/commands/{}" -> the document's "/v1/commands/{type}" shape: any {name}. */
/* "{}" in a route stands for one path segment, "{name}" in the document. */
static int same_path(const char *route, const char *doc)
{
    while (*route && *doc) {
        if (route[0] == '{' && route[1] == '}') {
            if (*doc != '{')
                return 0;
            const char *close = strchr(doc, '}');
            if (!close || memchr(doc, '/', (size_t)(close - doc)))
                return 0;
            route += 2;
            doc = close + 1;
            continue;
        }
        if (*route++ != *doc++)
            return 0;
    }
    return *route == '\0' && *doc == '\0';
}

static void lower(const char *in, char *out, size_t size)
{
    size_t i = 0;
    for (; in[i] && i + 1 < size; i++)
        out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    out[i] = '\0';
}

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
        int documented = 0;
        const char *p;
        json_t *item;
        json_object_foreach(paths, p, item) if (same_path(svc_routes[i].path, p) &&
                                                json_object_get(item, method)) documented = 1;
        if (!documented)
            fail_msg("route %s %s is not in docs/openapi.json", svc_routes[i].method,
                     svc_routes[i].path);
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
            int documented = 0;
            for (size_t i = 0; i < svc_nroutes; i++) {
                char method[16];
                lower(svc_routes[i].method, method, sizeof method);
                if (strcmp(method, m) == 0 && same_path(svc_routes[i].path, p))
                    documented = 1;
            }
            if (!documented)
                fail_msg("docs/openapi.json documents %s %s, which the server does not have", m, p);
        }
    }
    assert_int_equal(operations, svc_nroutes);
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
