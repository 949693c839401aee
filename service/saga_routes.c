/*
 * saga_routes.c -- the saga admin API (filled in below).
 */
#include "service/serve_int.h"

int svc_route_sagas(svc_request *rq)
{
    svc_problem(rq, 501, "not_implemented", NULL, "not yet");
    return 0;
}
int svc_route_saga(svc_request *rq)
{
    svc_problem(rq, 501, "not_implemented", NULL, "not yet");
    return 0;
}
int svc_route_saga_action(svc_request *rq)
{
    svc_problem(rq, 501, "not_implemented", NULL, "not yet");
    return 0;
}
char *svc_metrics_sagas(saga_engine *e, char *text)
{
    (void)e;
    return text;
}
