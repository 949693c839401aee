/*
 * tracing.c -- the orchestrator's span (docs/tracing.md): `saga.step`, one per attempt
 * of a step's command, a child of the context of the event that started the saga, so
 * the whole business process is one trace. The command goes out carrying the step
 * span's context, so its decision and its events continue the trace under the step.
 */
#include "sagas/sagas_int.h"

#include <string.h>

static const char *phase_name(int phase)
{
    return phase == PHASE_FORWARD ? "forward" : phase == PHASE_COMPENSATE ? "compensate" : "final";
}

tr_span *saga_trace_step_begin(const saga_rt *s, const char *command, uint32_t attempt,
                               char *traceparent)
{
    if (!tr_enabled())
        return NULL;
    tr_ctx parent = {0};
    if (tr_ctx_parse(s->traceparent, &parent) != 0)
        return NULL; /* a saga started by an event without context: not traced */
    tr_span *span = tr_span_start("saga.step", TR_KIND_INTERNAL, &parent);
    if (!span)
        return NULL;
    tr_span_attr_str(span, "skald.saga.id", s->id);
    tr_span_attr_str(span, "skald.saga.type", s->type);
    tr_span_attr_str(span, "skald.saga.phase", phase_name(s->phase));
    tr_span_attr_int(span, "skald.saga.step", s->step);
    tr_span_attr_str(span, "skald.command.type", command);
    tr_span_attr_int(span, "skald.attempt", attempt);
    tr_ctx ctx = tr_span_ctx(span);
    tr_ctx_format(&ctx, traceparent);
    return span;
}

void saga_trace_step_end(tr_span *span, const saga_answer *a)
{
    if (!span)
        return;
    static const char *const kinds[] = {"ok", "rejected", "conflict", "transient", "fatal"};
    unsigned k = (unsigned)a->kind;
    tr_span_attr_str(span, "skald.saga.answer", k < 5 ? kinds[k] : "unknown");
    if (a->kind != SAGA_ANSWER_OK)
        tr_span_set_error(span, a->reason);
    tr_span_end(span);
}
