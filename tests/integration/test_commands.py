"""Commands over HTTP against a started server: the README tour, every command of the
sample domain accepted and every rejection code of the contract table reached, the
answer's exact shape, 404/405/409/413/415/503, the NDJSON batch, reads with paging,
health, readiness, metrics and the OpenAPI document."""
import json
import threading
import time
import unittest

import skaldtest
from skaldtest import Server, register

RESULT_KEYS = {"command_id", "stream_id", "events", "position"}
EVENT_KEYS = {"event_id", "type", "version", "position"}


class Commands(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # orders are driven step by step here: no saga runs them
        cls.srv = Server("--body-max", "65536", "--roles", "commands,projections,queries")

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0
        cls.srv.cleanup()

    def ok(self, ctype, body, headers=None):
        s, h, b = self.srv.command(ctype, body, headers)
        self.assertEqual(s, 200, b)
        self.assertEqual(set(b), RESULT_KEYS)
        for e in b["events"]:
            self.assertEqual(set(e), EVENT_KEYS)
        if b["events"]:
            self.assertEqual(b["position"], b["events"][-1]["position"])
        return b

    def rejected(self, ctype, body, code):
        s, h, b = self.srv.command(ctype, body)
        self.assertEqual(s, 422, b)
        self.assertEqual(h["content-type"], "application/problem+json")
        self.assertEqual(b["code"], code)
        self.assertEqual(b["status"], 422)
        return b

    def test_tour_and_contract_table(self):
        r = self.ok("RegisterProduct", {"sku": "T1", "name": "Anvil", "price_cents": 4999})
        self.assertEqual(r["stream_id"], "product-T1")
        self.assertEqual([(e["type"], e["version"]) for e in r["events"]],
                         [("ProductRegistered", 1)])
        self.rejected("RegisterProduct", {"sku": "T1", "name": "x", "price_cents": 1},
                      "already_exists")
        self.ok("RestockProduct", {"sku": "T1", "quantity": 10})
        self.rejected("RestockProduct", {"sku": "nope", "quantity": 1}, "not_found")
        self.ok("OpenCustomer", {"customer_id": "c1", "name": "Wile", "credit_limit_cents": 20000})
        self.rejected("OpenCustomer", {"customer_id": "c1", "name": "W", "credit_limit_cents": 1},
                      "already_exists")
        placed = self.ok("PlaceOrder", {"order_id": "o1", "customer_id": "c1", "lines": [
            {"sku": "T1", "quantity": 2, "unit_price_cents": 4999}]})
        self.assertEqual(placed["events"][0]["type"], "OrderPlaced")
        self.rejected("PlaceOrder", {"order_id": "o1", "customer_id": "c1", "lines": [
            {"sku": "T1", "quantity": 1, "unit_price_cents": 1}]}, "already_exists")
        self.rejected("ReserveStock", {"sku": "T1", "order_id": "o1", "quantity": 11},
                      "insufficient_stock")
        self.rejected("ReserveStock", {"sku": "zz", "order_id": "o1", "quantity": 1}, "not_found")
        self.ok("ReserveStock", {"sku": "T1", "order_id": "o1", "quantity": 2})
        self.rejected("CommitStock", {"sku": "T1", "order_id": "o9"}, "no_reservation")
        self.rejected("AuthorizePayment", {"customer_id": "c1", "order_id": "o1",
                                           "amount_cents": 20001}, "credit_limit_exceeded")
        self.rejected("AuthorizePayment", {"customer_id": "cX", "order_id": "o1",
                                           "amount_cents": 1}, "not_found")
        self.ok("AuthorizePayment", {"customer_id": "c1", "order_id": "o1", "amount_cents": 9998})
        self.ok("CommitStock", {"sku": "T1", "order_id": "o1"})
        self.ok("ConfirmOrder", {"order_id": "o1"})
        self.rejected("ConfirmOrder", {"order_id": "o1"}, "invalid_state")
        self.rejected("ConfirmOrder", {"order_id": "o404"}, "not_found")
        self.rejected("CancelOrder", {"order_id": "o1", "reason": "late"}, "invalid_state")
        self.rejected("CancelOrder", {"order_id": "o404", "reason": "x"}, "not_found")
        # the compensations: release, refund, cancel on a second order
        self.ok("PlaceOrder", {"order_id": "o2", "customer_id": "c1", "lines": [
            {"sku": "T1", "quantity": 1, "unit_price_cents": 4999}]})
        self.ok("ReserveStock", {"sku": "T1", "order_id": "o2", "quantity": 1})
        self.ok("AuthorizePayment", {"customer_id": "c1", "order_id": "o2", "amount_cents": 4999})
        released = self.ok("ReleaseStock", {"sku": "T1", "order_id": "o2"})
        self.assertEqual(len(released["events"]), 1)
        refunded = self.ok("RefundPayment", {"customer_id": "c1", "order_id": "o2"})
        self.assertEqual(len(refunded["events"]), 1)
        # nothing left to do: no events, and the position of the stream's own last event,
        # not the log's (the refund came after the release)
        again = self.ok("ReleaseStock", {"sku": "T1", "order_id": "o2"})
        self.assertEqual((again["events"], again["position"]), ([], released["position"]))
        again = self.ok("RefundPayment", {"customer_id": "c1", "order_id": "o2"})
        self.assertEqual((again["events"], again["position"]), ([], refunded["position"]))
        self.assertLess(released["position"], refunded["position"])
        self.ok("CancelOrder", {"order_id": "o2", "reason": "customer asked"})
        # the order's stream read back, with envelopes and payloads
        events = self.srv.stream("order-o1")
        self.assertEqual([e["type"] for e in events], ["OrderPlaced", "OrderConfirmed"])
        self.assertEqual(events[0]["payload"]["total_cents"], 9998)
        self.assertEqual(events[0]["command_id"], placed["command_id"])
        self.assertEqual(events[0]["position"], placed["position"])
        for k in ("event_id", "stream_id", "type", "version", "position", "occurred_at",
                  "command_id", "correlation_id", "schema_id", "metadata", "payload"):
            self.assertIn(k, events[0])
        self.assertEqual(events[0]["metadata"]["principal"], "anonymous")

    def test_command_log_lines(self):
        # one JSON line per command, written without jansson objects (logline.c):
        # numbers unquoted, the stream and, for a refusal, the detail
        r = self.ok("RegisterProduct", {"sku": "LOG1", "name": "Log \"line\" \u00e9",
                                        "price_cents": 1})
        self.rejected("RestockProduct", {"sku": "LOG-none", "quantity": 1}, "not_found")
        deadline = time.time() + 10
        mine = []
        while time.time() < deadline and len(mine) < 2:
            lines = [json.loads(l) for l in self.srv.read_log().splitlines()
                     if l.startswith("{") and '"msg":"command"' in l]
            mine = [l for l in lines if l.get("stream_id") in ("product-LOG1", "product-LOG-none")]
            time.sleep(0.05)
        self.assertEqual(len(mine), 2, mine)
        ok, refused = sorted(mine, key=lambda l: l["status"])
        self.assertEqual((ok["status"], ok["command"], ok["command_id"]),
                         (200, "RegisterProduct", r["command_id"]))
        self.assertIsInstance(ok["us"], int)
        self.assertEqual((refused["status"], refused["command"]), (422, "RestockProduct"))
        self.assertIn("not", refused["detail"])
        for l in mine:
            self.assertEqual((l["level"], l["subsystem"]), ("info", "service"))
            self.assertTrue(l["request_id"])

    def test_versions_conflict_409(self):
        register(self.srv, "V1", 5)
        s, _, b = self.srv.command("RestockProduct", {"sku": "V1", "quantity": 1,
                                                      "expected_version": 1})
        self.assertEqual(s, 409, b)
        self.assertEqual(b["code"], "wrong_expected_version")
        self.assertEqual(b["current_version"], 2)
        s, _, b = self.srv.command("RestockProduct", {"sku": "V1", "quantity": 1},
                                   {"If-Match": '"1"'})
        self.assertEqual((s, b["current_version"]), (409, 2))
        s, _, b = self.srv.command("RestockProduct", {"sku": "V1", "quantity": 1},
                                   {"If-Match": "2"})
        self.assertEqual(s, 200, b)
        self.assertEqual(b["events"][0]["version"], 3)
        s, _, b = self.srv.command("RestockProduct", {"sku": "V1", "quantity": 1,
                                                      "expected_version": 3})
        self.assertEqual(s, 200, b)
        # a new stream: expected_version 0 means "must not exist"
        s, _, b = self.srv.command("RegisterProduct", {"sku": "V1", "name": "n", "price_cents": 1,
                                                       "expected_version": 0})
        self.assertEqual((s, b["current_version"]), (409, 4))

    def test_404_405_413_415(self):
        s, h, b = self.srv.command("LaunchRocket", {"x": 1})
        self.assertEqual((s, b["code"], b["field"]), (404, "unknown_command", "type"))
        s, _, b = self.srv.request("GET", "/v1/nothing")
        self.assertEqual((s, b["code"]), (404, "not_found"))
        s, h, b = self.srv.request("GET", "/v1/commands/RegisterProduct")
        self.assertEqual((s, b["code"]), (405, "method_not_allowed"))
        self.assertEqual(h["allow"], "POST")
        s, _, b = self.srv.request("POST", "/v1/commands/RestockProduct",
                                   '{"sku":"a","quantity":1}', {"Content-Type": "text/plain"})
        self.assertEqual((s, b["code"]), (415, "unsupported_media_type"))
        big = json.dumps({"sku": "a", "name": "x" * 70000, "price_cents": 1})
        s, _, b = self.srv.request("POST", "/v1/commands/RegisterProduct", big,
                                   {"Content-Type": "application/json"})
        self.assertEqual((s, b["code"]), (413, "body_too_large"))

    def test_503_when_the_queue_is_full(self):
        srv = Server("--queue-max", "1")
        try:
            register(srv, "Q")
            statuses, retry = [], []
            lock = threading.Lock()

            def hammer():
                c = srv.conn()
                for _ in range(40):
                    s, h, b = srv.command("RestockProduct", {"sku": "Q", "quantity": 1}, conn=c)
                    with lock:
                        statuses.append(s)
                        if s == 503:
                            retry.append((h.get("retry-after"), b["code"]))
                c.close()
            threads = [threading.Thread(target=hammer) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            self.assertEqual(set(statuses) - {200, 503}, set())
            self.assertTrue(retry, "16 clients on --queue-max 1 never met a 503")
            self.assertEqual(retry[0], ("1", "overloaded"))
            # every 200 is one event: nothing half-done by the refusals
            self.assertEqual(len(srv.stream("product-Q")), 1 + statuses.count(200))
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_batch(self):
        register(self.srv, "B1", 3)
        lines = [
            {"type": "RestockProduct", "body": {"sku": "B1", "quantity": 2}},
            {"type": "ReserveStock", "body": {"sku": "B1", "order_id": "b", "quantity": 99}},
            {"type": "Nope", "body": {}},
            {"type": "RestockProduct", "body": {"sku": "B1", "quantity": -1}},
            {"type": "RestockProduct", "body": {"sku": "B1", "quantity": 1}, "expected_version": 1},
            {"type": "RestockProduct", "body": {"sku": "B1", "quantity": 1}, "idempotency_key": "bk"},
        ]
        text = "\n".join(json.dumps(l) for l in lines) + "\nnot json\n"
        s, h, b = self.srv.request("POST", "/v1/commands:batch", text,
                                   {"Content-Type": "application/x-ndjson"})
        self.assertEqual(s, 200, b)
        self.assertEqual(h["content-type"], "application/x-ndjson")
        out = [json.loads(l) for l in b.splitlines()]
        self.assertEqual([o["status"] for o in out], [200, 422, 404, 400, 409, 200, 400])
        self.assertEqual(out[0]["result"]["events"][0]["version"], 3)
        self.assertEqual(out[1]["problem"]["code"], "insufficient_stock")
        self.assertEqual(out[3]["problem"]["field"], "quantity")
        self.assertEqual(out[4]["problem"]["current_version"], 3)
        # the keyed line replays alone
        s, h, b2 = self.srv.command("RestockProduct", {"sku": "B1", "quantity": 1},
                                    {"Idempotency-Key": "bk"})
        self.assertEqual(s, 200)
        s, h, b = self.srv.request("POST", "/v1/commands:batch", "\n".join(
            [json.dumps(lines[0])] * 1001), {"Content-Type": "application/x-ndjson"})
        self.assertEqual(s, 400)

    def test_reads_page(self):
        register(self.srv, "R1", 1)
        for _ in range(24):
            self.ok("RestockProduct", {"sku": "R1", "quantity": 1})
        s, _, b = self.srv.request("GET", "/v1/streams/product-R1?from_version=3&limit=10")
        self.assertEqual(s, 200)
        self.assertEqual([e["version"] for e in b["events"]], list(range(3, 13)))
        self.assertEqual((b["next_version"], b["version"]), (13, 26))
        s, _, b = self.srv.request("GET", "/v1/streams/product-R1?from_version=20&limit=1000")
        self.assertEqual((len(b["events"]), b["next_version"]), (7, None))
        s, _, b = self.srv.request("GET", "/v1/streams/nobody-here")
        self.assertEqual((s, b["version"], b["events"], b["next_version"]), (200, 0, [], None))
        s, _, b = self.srv.request("GET", "/v1/events?from_position=0&limit=5")
        self.assertEqual([e["position"] for e in b["events"]], [0, 1, 2, 3, 4])
        self.assertEqual(b["next_position"], 5)
        head = b["head"]
        s, _, b = self.srv.request("GET", "/v1/events?from_position=%d" % (head - 1))
        self.assertEqual((len(b["events"]), b["next_position"]), (1, None))
        for q in ("limit=0", "limit=1001", "limit=x", "from_position=-1", "limit=1e3"):
            s, _, b = self.srv.request("GET", "/v1/events?" + q)
            self.assertEqual((s, b["code"]), (400, "invalid_parameter"), q)
        s, _, b = self.srv.request("GET", "/v1/streams/product-R1?from_version=0")
        self.assertEqual((s, b["field"]), (400, "from_version"))

    def test_health_metrics_openapi(self):
        self.assertEqual(self.srv.request("GET", "/healthz")[0], 200)
        self.assertEqual(self.srv.request("GET", "/readyz")[0], 200)
        register(self.srv, "M1")
        s, h, m = self.srv.request("GET", "/metrics")
        self.assertEqual(s, 200)
        self.assertTrue(h["content-type"].startswith("text/plain"))
        for family in ("skald_commands_total", "skald_command_duration_seconds_bucket",
                       "skald_append_batch_events_bucket", "skald_fsync_duration_seconds_bucket",
                       "skald_log_head_position", "skald_queue_depth"):
            self.assertIn(family, m)
        self.assertIn('skald_commands_total{type="RegisterProduct",outcome="ok"}', m)
        s, _, doc = self.srv.request("GET", "/v1/openapi.json")
        self.assertEqual((s, doc["openapi"]), (200, "3.1.0"))
        with open(skaldtest.SOURCE + "/docs/openapi.json") as f:
            self.assertEqual(doc, json.load(f))
        # every documented path answers something other than "no such route"
        for path, item in doc["paths"].items():
            for method in item:
                url = path.replace("{type}", "RegisterProduct").replace("{stream_id}", "x")
                ok = item[method].get("responses", {}).get("200", {}).get("content", {})
                if "text/event-stream" in ok:  # a stream never ends: its headers are enough
                    c = self.srv.conn(timeout=10)
                    c.request(method.upper(), url)
                    r = c.getresponse()
                    self.assertNotEqual(r.status, 405, (method, path))
                    if r.status == 404:  # a role this process does not run is still a route
                        self.assertNotEqual(json.loads(r.read()).get("code"), "not_found")
                    c.close()
                    continue
                s, _, b = self.srv.request(method.upper(), url, None,
                                           {"Content-Type": "application/json"})
                self.assertFalse(s == 404 and isinstance(b, dict) and b.get("code") == "not_found",
                                 (method, path))
                self.assertNotEqual(s, 405, (method, path))


if __name__ == "__main__":
    skaldtest.main(globals())
