/*
 * test_trace.c -- the trace layer without a backend: W3C traceparent parse and format
 * (the recommendation's invalid forms refused), URLs, the bounded queue refusing when
 * full, parent-based sampling, and the Zipkin and OTLP encodings of a span read back
 * with jansson. The export to real backends is tests/integration/test_tracing.py.
 */
#include "trace/trace_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const char *TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static void test_traceparent(void **state)
{
    (void)state;
    tr_ctx c = {0};
    assert_int_equal(tr_ctx_parse(TP, &c), 0);
    assert_true(c.valid);
    assert_int_equal(c.flags, 1);
    assert_int_equal(c.trace_id[0], 0x4b);
    assert_int_equal(c.span_id[7], 0xb7);
    char out[TR_TRACEPARENT_SIZE];
    tr_ctx_format(&c, out);
    assert_string_equal(out, TP);
    static const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    /* short */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* version */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   /* zero trace */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   /* zero span */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",   /* flags */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* long */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tr_ctx untouched = {.flags = 7};
        assert_int_equal(tr_ctx_parse(bad[i], &untouched), SK_EBADINPUT);
        assert_int_equal(untouched.flags, 7);
    }
    /* from an event's metadata */
    ev_event ev = {.metadata_count = 2};
    ev.metadata[0] = (ev_metadata_entry){ev_str_of("principal"), ev_str_of("p")};
    ev.metadata[1] = (ev_metadata_entry){ev_str_of(EV_META_TRACEPARENT), ev_str_of(TP)};
    tr_ctx e = tr_ctx_of_event(&ev);
    assert_true(e.valid);
    assert_memory_equal(e.span_id, c.span_id, 8);
    ev.metadata_count = 1;
    assert_false(tr_ctx_of_event(&ev).valid);
}

static void test_url(void **state)
{
    (void)state;
    tr_url u;
    assert_int_equal(tr_url_parse("http://127.0.0.1:9411/api/v2/spans", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "9411");
    assert_string_equal(u.path, "/api/v2/spans");
    assert_int_equal(tr_url_parse("http://collector", &u), 0);
    assert_string_equal(u.port, "80");
    assert_string_equal(u.path, "/");
    assert_int_equal(tr_url_parse("https://x/y", &u), SK_EBADINPUT);
    assert_int_equal(tr_url_parse("http://:80/y", &u), SK_EBADINPUT);
    assert_int_equal(tr_url_parse("http://x:8a/y", &u), SK_EBADINPUT);
    assert_int_equal(tr_url_parse("http://x:/y", &u), SK_EBADINPUT);
}

static void test_queue_refuses_when_full(void **state)
{
    (void)state;
    tr_queue *q;
    assert_int_equal(tr_queue_create(3, &q), 0);
    tr_span *s[4];
    for (int i = 0; i < 4; i++)
        s[i] = calloc(1, sizeof(tr_span));
    for (int i = 0; i < 3; i++)
        assert_int_equal(tr_queue_push(q, s[i]), 0);
    assert_int_equal(tr_queue_push(q, s[3]), SK_EBUSY);
    assert_int_equal(tr_queue_depth(q), 3);
    tr_span *out[8];
    assert_int_equal(tr_queue_pop(q, out, 2, 0), 2);
    assert_ptr_equal(out[0], s[0]);
    assert_ptr_equal(out[1], s[1]);
    assert_int_equal(tr_queue_push(q, s[3]), 0); /* wraps around the ring */
    assert_int_equal(tr_queue_pop(q, out, 8, 0), 2);
    assert_ptr_equal(out[0], s[2]);
    assert_ptr_equal(out[1], s[3]);
    assert_int_equal(tr_queue_pop(q, out, 8, 10), 0); /* empty: waits 10 ms, none */
    assert_int_equal(tr_queue_push(q, s[0]), 0);
    tr_queue_destroy(q); /* frees s[0] */
    for (int i = 1; i < 4; i++)
        free(s[i]);
}

/* A tracer whose exporter never gets to run a batch during the test (long flush
 * interval, large batch); its endpoint is a port nothing listens on. */
static void start_tracer(double ratio)
{
    tr_config c = {.exporter = TR_EXPORTER_ZIPKIN,
                   .endpoint = "http://127.0.0.1:1/api/v2/spans",
                   .sample_ratio = ratio,
                   .flush_interval_ms = 60000,
                   .timeout_ms = 100};
    sk_error err = {0};
    assert_int_equal(tr_tracer_start(&c, &err), 0);
    assert_true(tr_enabled());
}

static void test_sampling_follows_the_parent(void **state)
{
    (void)state;
    assert_null(tr_span_start("off", TR_KIND_INTERNAL, NULL)); /* no tracer: nothing */
    start_tracer(0);
    tr_ctx sampled, unsampled;
    assert_int_equal(tr_ctx_parse(TP, &sampled), 0);
    unsampled = sampled;
    unsampled.flags = 0;
    assert_null(tr_span_start("root", TR_KIND_INTERNAL, NULL));
    assert_null(tr_span_start("child", TR_KIND_INTERNAL, &unsampled));
    tr_span *s = tr_span_start("child", TR_KIND_INTERNAL, &sampled);
    assert_non_null(s);
    tr_ctx c = tr_span_ctx(s);
    assert_memory_equal(c.trace_id, sampled.trace_id, 16);
    assert_memory_not_equal(c.span_id, sampled.span_id, 8);
    assert_true(c.flags & TR_FLAG_SAMPLED);
    tr_span_end(s);
    tr_stats st;
    tr_get_stats(&st);
    assert_int_equal(st.spans_started, 1);
    assert_int_equal(st.queue_depth, 1);
    tr_ctx root = tr_ctx_new_root(); /* ratio 0: a context that says not sampled */
    assert_true(root.valid);
    assert_false(root.flags & TR_FLAG_SAMPLED);
    tr_tracer_stop(); /* exports the queued span (refused: counted as dropped) */
    tr_get_stats(&st);
    assert_int_equal(st.spans_dropped, 1);
    assert_int_equal(st.batches_failed, 1);
    assert_false(tr_enabled());
    /* a bad configuration is refused and starts nothing */
    tr_config bad = {.exporter = TR_EXPORTER_OTLP, .endpoint = "ftp://x", .sample_ratio = 1};
    sk_error err = {0};
    assert_int_equal(tr_tracer_start(&bad, &err), SK_EBADINPUT);
    assert_string_equal(err.field, "trace_endpoint");
    bad.endpoint = NULL;
    bad.sample_ratio = 2;
    assert_int_equal(tr_tracer_start(&bad, &err), SK_EBADINPUT);
    assert_false(tr_enabled());
}

static tr_span *sample_span(void)
{
    tr_ctx parent;
    assert_int_equal(tr_ctx_parse(TP, &parent), 0);
    tr_span *s = tr_span_start("POST /v1/commands/{}", TR_KIND_SERVER, &parent);
    assert_non_null(s);
    tr_span_attr_str(s, "http.route", "/v1/commands/{}");
    tr_span_attr_int(s, "http.response.status_code", 200);
    tr_span_attr_int(s, "http.response.status_code", 201); /* a key set twice keeps one */
    tr_span_link(s, &parent);
    s->start_us = 1700000000000000;
    s->end_us = s->start_us + 1500;
    return s;
}

static void test_zipkin_encoding(void **state)
{
    (void)state;
    start_tracer(1);
    tr_span *s = sample_span();
    char *text = tr_zipkin_encode(&s, 1, "skald");
    json_error_t jerr;
    json_t *arr = json_loads(text, 0, &jerr);
    assert_non_null(arr);
    json_t *o = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(o, "traceId")),
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(json_string_value(json_object_get(o, "parentId")), "00f067aa0ba902b7");
    assert_int_equal(strlen(json_string_value(json_object_get(o, "id"))), 16);
    assert_string_equal(json_string_value(json_object_get(o, "kind")), "SERVER");
    assert_string_equal(json_string_value(json_object_get(o, "name")), "POST /v1/commands/{}");
    assert_int_equal(json_integer_value(json_object_get(o, "timestamp")), 1700000000000000);
    assert_int_equal(json_integer_value(json_object_get(o, "duration")), 1500);
    json_t *tags = json_object_get(o, "tags");
    assert_string_equal(json_string_value(json_object_get(tags, "http.response.status_code")),
                        "201");
    assert_string_equal(json_string_value(json_object_get(tags, "links")),
                        "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "localEndpoint"), "serviceName")),
        "skald");
    json_decref(arr);
    free(text);
    free(s);
    tr_tracer_stop();
}

/* Values that need escaping, a value cut inside multi-byte characters, and the tag
 * object's commas with links or an error and no attributes: every form parses. */
static void test_zipkin_escaping(void **state)
{
    (void)state;
    start_tracer(1);
    tr_span *s[2] = {sample_span(), tr_span_start("bare", TR_KIND_INTERNAL, NULL)};
    tr_span_attr_str(s[0], "skald.note", "a\"b\\c\nd\x01");
    char longer[301];
    for (int i = 0; i < 300; i += 2)
        memcpy(longer + i, "\xc3\xa9", 2); /* 150 x U+00E9 */
    longer[300] = '\0';
    tr_span_attr_str(s[0], "skald.long", longer);
    tr_span_set_error(s[1], NULL);
    s[1]->end_us = s[1]->start_us;
    char *text = tr_zipkin_encode(s, 2, "sk\"ald");
    json_error_t jerr;
    json_t *arr = json_loads(text, 0, &jerr); /* jansson refuses invalid UTF-8 too */
    assert_non_null(arr);
    json_t *tags = json_object_get(json_array_get(arr, 0), "tags");
    assert_string_equal(json_string_value(json_object_get(tags, "skald.note")), "a\"b\\c\nd\x01");
    const char *cut = json_string_value(json_object_get(tags, "skald.long"));
    assert_int_equal(strlen(cut), TR_ATTR_VALUE_MAX - 2); /* 63 whole characters */
    json_t *bare = json_array_get(arr, 1);
    assert_null(json_object_get(bare, "parentId"));
    assert_null(json_object_get(bare, "kind"));
    assert_int_equal(json_integer_value(json_object_get(bare, "duration")), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(bare, "tags"), "error")),
                        "true");
    json_decref(arr);
    free(text);
    free(s[0]);
    free(s[1]);
    tr_tracer_stop();
}

static void test_otlp_encoding(void **state)
{
    (void)state;
    start_tracer(1);
    tr_span *s = sample_span();
    char *text = tr_otlp_encode(&s, 1, "skald");
    json_error_t jerr;
    json_t *req = json_loads(text, 0, &jerr);
    assert_non_null(req);
    json_t *rs = json_array_get(json_object_get(req, "resourceSpans"), 0);
    json_t *attr =
        json_array_get(json_object_get(json_object_get(rs, "resource"), "attributes"), 0);
    assert_string_equal(json_string_value(json_object_get(attr, "key")), "service.name");
    json_t *span = json_array_get(
        json_object_get(json_array_get(json_object_get(rs, "scopeSpans"), 0), "spans"), 0);
    assert_string_equal(json_string_value(json_object_get(span, "parentSpanId")),
                        "00f067aa0ba902b7");
    assert_int_equal(json_integer_value(json_object_get(span, "kind")), 2);
    assert_string_equal(json_string_value(json_object_get(span, "startTimeUnixNano")),
                        "1700000000000000000");
    assert_string_equal(json_string_value(json_object_get(span, "endTimeUnixNano")),
                        "1700000000001500000");
    json_t *link = json_array_get(json_object_get(span, "links"), 0);
    assert_string_equal(json_string_value(json_object_get(link, "spanId")), "00f067aa0ba902b7");
    json_t *code = json_array_get(json_object_get(span, "attributes"), 1);
    assert_string_equal(json_string_value(json_object_get(code, "key")),
                        "http.response.status_code");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(code, "value"), "intValue")), "201");
    json_decref(req);
    free(text);
    free(s);
    tr_tracer_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_queue_refuses_when_full),
        cmocka_unit_test(test_sampling_follows_the_parent),
        cmocka_unit_test(test_zipkin_encoding),
        cmocka_unit_test(test_zipkin_escaping),
        cmocka_unit_test(test_otlp_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
