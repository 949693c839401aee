"""Tracing (docs/tracing.md) against real backends: one order placed with a traceparent
is one trace in a real Zipkin server (tools/zipkin), read back through Zipkin's own API,
from the HTTP span through the decision, the group commit, the projection batch and every
saga step to OrderConfirmed; the OTLP JSON is decoded by OpenTelemetry's protobuf
definitions (tests/integration/otlp_decode.cjs), not by Skald; a dead backend and one
answering 500 cost nothing but counted drops; sampling is parent-based; bad flags are
refused. Every wait is bounded.
"""
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skaldtest  # noqa: E402
from skaldtest import Server, wait_for  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACE = "00-%s-%s-01" % (TRACE_ID, CALLER_SPAN)
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
STEP_COMMANDS = ["ReserveStock", "AuthorizePayment", "CommitStock", "ConfirmOrder"]
NPM_MODULES = os.path.join(skaldtest.SOURCE, ".cache", "npm", "node_modules")


def ok(srv, ctype, body, headers=None):
    s, h, b = srv.command(ctype, body, headers)
    assert s == 200, (ctype, s, b)
    return h, b


def setup_domain(srv):
    """Products and a customer, in an unsampled trace: none of it is recorded."""
    hdr = {"traceparent": UNSAMPLED}
    for sku in ("A", "B"):
        ok(srv, "RegisterProduct", {"sku": sku, "name": "n", "price_cents": 100}, hdr)
        ok(srv, "RestockProduct", {"sku": sku, "quantity": 10}, hdr)
    ok(srv, "OpenCustomer", {"customer_id": "c1", "name": "c", "credit_limit_cents": 10000},
       hdr)


def place_order(srv, oid, headers):
    return ok(srv, "PlaceOrder", {"order_id": oid, "customer_id": "c1", "lines": [
        {"sku": "A", "quantity": 2, "unit_price_cents": 100},
        {"sku": "B", "quantity": 1, "unit_price_cents": 100}]}, headers)


def order_confirmed(srv, oid):
    wait_for(lambda: [e["type"] for e in srv.stream("order-" + oid)][-1] == "OrderConfirmed",
             30, "order %s to be confirmed" % oid)




class Sink:
    """A trace backend stand-in on loopback: keeps every POST body, answers `status`."""

    def __init__(self, status=200):
        self.bodies, self.status, self.lock = [], status, threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with sink.lock:
                    sink.bodies.append((self.path, self.headers.get("Content-Type"), body))
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def taken(self):
        with self.lock:
            return list(self.bodies)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Tracing(unittest.TestCase):
    zipkin_dir = None
    zipkin_url = None

    @classmethod
    def setUpClass(cls):
        cls.zipkin_dir = tempfile.mkdtemp(prefix="skald-zipkin-")
        env = {**os.environ, "SKALD_ZIPKIN_DIR": os.path.join(cls.zipkin_dir, "server")}
        r = subprocess.run([os.path.join(skaldtest.SOURCE, "tools", "zipkin"), "start"],
                           env=env, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("tools/zipkin start failed:\n" + r.stderr)
        cls.zipkin_url = re.search(r"ZIPKIN_URL=(\S+)", r.stdout).group(1)
        cls.zipkin_env = env

    @classmethod
    def tearDownClass(cls):
        subprocess.run([os.path.join(skaldtest.SOURCE, "tools", "zipkin"), "stop"],
                       env=cls.zipkin_env, capture_output=True, timeout=60)
        shutil.rmtree(cls.zipkin_dir, ignore_errors=True)

    def setUp(self):
        self.servers, self.sinks = [], []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()
        for s in self.sinks:
            s.close()

    def start(self, *extra):
        srv = Server(*extra)
        self.servers.append(srv)
        return srv

    def sink(self, status=200):
        s = Sink(status)
        self.sinks.append(s)
        return s

    def zipkin_trace(self, trace_id):
        try:
            with urllib.request.urlopen("%s/api/v2/trace/%s" % (self.zipkin_url, trace_id),
                                        timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise

    def test_one_order_is_one_trace_in_zipkin(self):
        srv = self.start("--trace-exporter", "zipkin", "--trace-endpoint",
                         self.zipkin_url + "/api/v2/spans")
        setup_domain(srv)
        h, _ = place_order(srv, "o1", {"traceparent": TRACE})
        # the answer names the trace and the server span the caller's span is parent of
        m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", h["traceparent"])
        self.assertIsNotNone(m, h["traceparent"])
        self.assertEqual(m.group(1), TRACE_ID)
        http_id = m.group(2)
        order_confirmed(srv, "o1")

        def names(spans):
            return [s["name"] for s in spans]

        def complete():
            spans = self.zipkin_trace(TRACE_ID)
            steps = {s["tags"].get("skald.command.type") for s in spans
                     if s["name"] == "saga.step"}
            return (set(STEP_COMMANDS) <= steps and "projection.apply" in names(spans)
                    and "log.commit" in names(spans))
        wait_for(complete, 30, "the order's trace in Zipkin")
        spans = self.zipkin_trace(TRACE_ID)
        by_id = {s["id"]: s for s in spans}

        # the HTTP server span, child of the caller's span
        root = by_id[http_id]
        self.assertEqual(root["kind"], "SERVER")
        self.assertEqual(root["parentId"], CALLER_SPAN)
        self.assertEqual(root["localEndpoint"]["serviceName"], "skald")
        self.assertEqual(root["tags"]["http.request.method"], "POST")
        self.assertEqual(root["tags"]["http.route"], "/v1/commands/{}")
        self.assertEqual(root["tags"]["http.response.status_code"], "200")
        self.assertEqual(root["tags"]["enduser.id"], "anonymous")

        # the decision inside it, and the wait for the append inside that
        decide = [s for s in spans if s["name"] == "command.decide"
                  and s.get("parentId") == http_id]
        self.assertEqual(len(decide), 1, names(spans))
        decide = decide[0]
        self.assertEqual(decide["tags"]["skald.command.type"], "PlaceOrder")
        self.assertEqual(decide["tags"]["skald.stream_id"], "order-o1")
        self.assertEqual(decide["tags"]["skald.command.outcome"], "accepted")
        append = [s for s in spans if s["name"] == "command.append"
                  and s.get("parentId") == decide["id"]]
        self.assertEqual(len(append), 1, names(spans))
        self.assertGreaterEqual(append[0]["timestamp"], decide["timestamp"])

        # the group commit that carried it, linked to the decision
        link = "%s-%s" % (TRACE_ID, decide["id"])
        commits = [s for s in spans if s["name"] == "log.commit"
                   and link in s["tags"].get("links", "").split(",")]
        self.assertEqual(len(commits), 1, [s["tags"] for s in spans if s["name"] == "log.commit"])
        self.assertGreaterEqual(int(commits[0]["tags"]["skald.events"]), 1)
        self.assertGreater(int(commits[0]["tags"]["skald.bytes"]), 0)
        self.assertIn("skald.fsync_us", commits[0]["tags"])

        # a projection batch that applied OrderPlaced
        batches = [s for s in spans if s["name"] == "projection.apply"
                   and link in s["tags"].get("links", "").split(",")]
        self.assertGreaterEqual(len(batches), 1, names(spans))
        self.assertEqual(batches[0]["kind"], "CONSUMER")
        self.assertTrue(batches[0]["tags"]["skald.projection"])

        # every saga step, a child of the decision that placed the order, and each step's
        # command decided inside its step, through ConfirmOrder
        steps = [s for s in spans if s["name"] == "saga.step"]
        for s in steps:
            self.assertEqual(s["parentId"], decide["id"], s)
            self.assertEqual(s["tags"]["skald.saga.id"], "OrderFulfillment-o1")
            self.assertEqual(s["tags"]["skald.saga.answer"], "ok", s)
        for cmd in STEP_COMMANDS:
            step_ids = {s["id"] for s in steps if s["tags"]["skald.command.type"] == cmd}
            self.assertTrue(step_ids, cmd)
            decided = [s for s in spans if s["name"] == "command.decide"
                       and s.get("parentId") in step_ids]
            self.assertTrue(decided, "no decision under the %s step" % cmd)
            self.assertEqual(decided[0]["tags"]["skald.command.type"], cmd)
        # the confirmed order's event carries the ConfirmOrder decision's context
        confirmed = srv.stream("order-o1")[-1]
        tp = confirmed["metadata"]["traceparent"]
        self.assertTrue(tp.startswith("00-%s-" % TRACE_ID), tp)
        self.assertIn(tp.split("-")[2], {s["id"] for s in spans
                                         if s["name"] == "command.decide"
                                         and s["tags"]["skald.command.type"] == "ConfirmOrder"})
        # the unsampled set-up left nothing in the backend
        self.assertEqual(self.zipkin_trace(UNSAMPLED.split("-")[1]), [])
        self.assertEqual(skaldtest.metric(srv, 'skald_trace_spans_total{result="dropped"}'), 0)
        # every span recorded so far reaches the backend (each /metrics read adds its own)
        recorded = skaldtest.metric(srv, 'skald_trace_spans_total{result="recorded"}')
        wait_for(lambda: skaldtest.metric(srv, 'skald_trace_spans_total{result="exported"}') >= recorded,
                 10, "every recorded span exported")
        self.assertEqual(srv.stop(), 0)

    def test_otlp_json_decoded_by_opentelemetry_definitions(self):
        if not os.path.isdir(os.path.join(NPM_MODULES, "@opentelemetry",
                                          "otlp-proto-exporter-base")):
            self.fail("the OTLP decoder's npm packages are missing: run tools/test once "
                      "(its deps section installs SKALD_NPM_OTLP into .cache/npm)")
        sink = self.sink()
        srv = self.start("--trace-exporter", "otlp", "--trace-endpoint",
                         "http://127.0.0.1:%d/v1/traces" % sink.port)
        setup_domain(srv)
        place_order(srv, "o1", {"traceparent": TRACE})
        order_confirmed(srv, "o1")
        self.assertEqual(srv.stop(), 0)  # the exporter sends what is queued at stop
        bodies = sink.taken()
        self.assertTrue(bodies)
        tmp = tempfile.mkdtemp(prefix="skald-otlp-")
        try:
            files = []
            for i, (path, ctype, body) in enumerate(bodies):
                self.assertEqual(path, "/v1/traces")
                self.assertEqual(ctype, "application/json")
                files.append(os.path.join(tmp, "%d.json" % i))
                with open(files[-1], "wb") as f:
                    f.write(body)
            r = subprocess.run(["node", os.path.join(os.path.dirname(__file__),
                                                     "otlp_decode.cjs"), NPM_MODULES, *files],
                               capture_output=True, text=True, timeout=60)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        spans = json.loads(r.stdout)
        mine = [s for s in spans if s["traceId"] == TRACE_ID]
        self.assertTrue(all(s["service"] == "skald" and s["scope"] == "skald" for s in spans))
        server = [s for s in mine if s["parentSpanId"] == CALLER_SPAN]
        self.assertEqual(len(server), 1, mine)
        server = server[0]
        self.assertEqual(server["kind"], 2)  # SPAN_KIND_SERVER
        self.assertEqual(server["attributes"]["http.route"], "/v1/commands/{}")
        self.assertEqual(server["attributes"]["http.response.status_code"], "200")
        self.assertLess(int(server["start"]), int(server["end"]))
        decide = [s for s in mine if s["name"] == "command.decide"
                  and s["parentSpanId"] == server["spanId"]]
        self.assertEqual(len(decide), 1)
        # OTLP carries real links: the group commit names the decision
        commits = [s for s in spans if s["name"] == "log.commit" and
                   {"traceId": TRACE_ID, "spanId": decide[0]["spanId"]} in s["links"]]
        self.assertEqual(len(commits), 1)
        steps = {s["attributes"]["skald.command.type"] for s in mine if s["name"] == "saga.step"}
        self.assertTrue(set(STEP_COMMANDS) <= steps, steps)
        # every span is unique, and every parent in this trace is a span of it (but the
        # caller's)
        ids = [s["spanId"] for s in mine]
        self.assertEqual(len(ids), len(set(ids)))
        for s in mine:
            self.assertIn(s["parentSpanId"], set(ids) | {CALLER_SPAN}, s)

    def test_dead_or_failing_backend_costs_only_counted_drops(self):
        refusing = self.sink(status=500)
        closed = Sink()
        dead_port = closed.port
        closed.close()  # nothing listens there now
        for endpoint, why in (("http://127.0.0.1:%d/api/v2/spans" % dead_port, "dead"),
                              ("http://127.0.0.1:%d/api/v2/spans" % refusing.port, "500")):
            srv = self.start("--trace-exporter", "zipkin", "--trace-endpoint", endpoint)
            for i in range(20):
                ok(srv, "RegisterProduct", {"sku": "S%d" % i, "name": "n", "price_cents": 1})
            wait_for(lambda: skaldtest.metric(srv, 'skald_trace_spans_total{result="dropped"}') > 0, 10,
                     "drops counted (%s backend)" % why)
            self.assertEqual(skaldtest.metric(srv, 'skald_trace_spans_total{result="exported"}'), 0)
            self.assertGreater(skaldtest.metric(srv, "skald_trace_export_failures_total"), 0)
            # every command was answered and is in the log
            self.assertEqual(srv.head(), 20)
            self.assertEqual(srv.stop(), 0)
        self.assertTrue(refusing.taken(), "the refusing backend was never asked")

    def test_sampling_follows_the_parent(self):
        sink = self.sink()
        srv = self.start("--trace-exporter", "zipkin", "--trace-sample", "0", "--trace-endpoint",
                         "http://127.0.0.1:%d/api/v2/spans" % sink.port)
        # no traceparent and ratio 0: nothing recorded, yet the answer names a trace
        _, h, _ = srv.request("GET", "/healthz")
        self.assertRegex(h["traceparent"], r"^00-[0-9a-f]{32}-[0-9a-f]{16}-00$")
        self.assertEqual(skaldtest.metric(srv, 'skald_trace_spans_total{result="recorded"}'), 0)
        # an unsampled caller: nothing; a sampled caller: recorded despite the ratio
        ok(srv, "RegisterProduct", {"sku": "U", "name": "n", "price_cents": 1},
           {"traceparent": UNSAMPLED})
        self.assertEqual(skaldtest.metric(srv, 'skald_trace_spans_total{result="recorded"}'), 0)
        ok(srv, "RegisterProduct", {"sku": "S", "name": "n", "price_cents": 1},
           {"traceparent": TRACE})
        wait_for(lambda: skaldtest.metric(srv, 'skald_trace_spans_total{result="exported"}') >= 4, 10,
                 "the sampled command's spans exported")
        spans = [sp for _, _, b in sink.taken() for sp in json.loads(b)]
        self.assertEqual({sp["traceId"] for sp in spans}, {TRACE_ID})
        self.assertTrue({"command.decide", "command.append", "log.commit"} <=
                        {sp["name"] for sp in spans}, spans)
        self.assertEqual(srv.stop(), 0)

    def test_bad_flags_are_refused(self):
        for args, flag in ((["--trace-exporter", "jaeger"], "--trace-exporter"),
                           (["--trace-sample", "1.5"], "--trace-sample"),
                           (["--trace-sample", "x"], "--trace-sample"),
                           (["--trace-endpoint", "ftp://x/y"], "--trace-endpoint")):
            data = tempfile.mkdtemp(prefix="skald-it-")
            try:
                r = subprocess.run([skaldtest.SKALD, "serve", "--data", data, *args],
                                   capture_output=True, text=True, timeout=30)
            finally:
                shutil.rmtree(data, ignore_errors=True)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(flag, r.stderr)
        r = subprocess.run([skaldtest.SKALD, "serve", "--data", "/nonexistent"],
                           env={**os.environ, "SKALD_TRACE_EXPORTER": "bogus"},
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("SKALD_TRACE_EXPORTER", r.stderr)


if __name__ == "__main__":
    skaldtest.main(globals())
