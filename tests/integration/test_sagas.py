"""The saga orchestrator (OrderFulfillment) against the real server: the happy path, each
failure point compensating exactly what was done, a step timeout, kills at named points of
the orchestrator with restarts, and a saga whose command is not idempotent by itself
(RestockProduct) showing no doubling across kills and lost answers. Every wait is bounded.
"""
import argparse
import json
import os
import subprocess
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skaldtest  # noqa: E402
from skaldtest import Server, wait_for  # noqa: E402

SKALDCTL = None  # set from --skaldctl
OLD_SEED_LOG = None  # set from --old-seed-log: writes a log shaped like the old seeder's
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def ok(srv, ctype, body, headers=None):
    s, _, b = srv.command(ctype, body, headers)
    assert s == 200, (ctype, s, b)
    return b


def product_state(srv, sku):
    """on_hand and reservations, folded from the product's stream."""
    on_hand, reserved = 0, {}
    for e in srv.stream("product-" + sku):
        p = e["payload"]
        if e["type"] == "ProductRestocked":
            on_hand += p["quantity"]
        elif e["type"] == "StockReserved":
            assert p["order_id"] not in reserved, "reserved twice for one order"
            reserved[p["order_id"]] = p["quantity"]
        elif e["type"] == "StockReleased":
            reserved.pop(p["order_id"], None)
        elif e["type"] == "StockCommitted":
            on_hand -= p["quantity"]
            reserved.pop(p["order_id"], None)
    return on_hand, reserved


def customer_state(srv, cid):
    payments = {}
    for e in srv.stream("customer-" + cid):
        p = e["payload"]
        if e["type"] == "PaymentAuthorized":
            assert p["order_id"] not in payments, "authorized twice for one order"
            payments[p["order_id"]] = p["amount_cents"]
        elif e["type"] == "PaymentRefunded":
            payments.pop(p["order_id"], None)
    return payments


def order_status(srv, oid):
    types = [e["type"] for e in srv.stream("order-" + oid)]
    return types[-1] if types else None


def saga_events(srv, oid):
    s, _, b = srv.request("GET", "/v1/streams/%s?limit=1000" % urllib.parse.quote(
        "$saga-OrderFulfillment-" + oid, safe=""))
    return b["events"] if s == 200 else []


def saga_state(srv, oid):
    state = None
    for e in saga_events(srv, oid):
        if e["type"] == "SagaStateChanged":
            state = e["payload"]["state"]
        elif e["type"] == "SagaStarted":
            state = "running"
    return state


def ended(srv, oid, timeout=30):
    wait_for(lambda: saga_state(srv, oid) in ("completed", "compensated", "aborted"), timeout,
             "saga of %s to end" % oid)
    return saga_state(srv, oid)


def setup_domain(srv, stock=None, credit=10000):
    for sku, qty in (stock or {"A": 10, "B": 10, "C": 10}).items():
        skaldtest.register(srv, sku, qty)
    ok(srv, "OpenCustomer", {"customer_id": "c1", "name": "c", "credit_limit_cents": credit})


def place(srv, oid, lines, headers=None):
    return ok(srv, "PlaceOrder", {"order_id": oid, "customer_id": "c1", "lines": [
        {"sku": s, "quantity": q, "unit_price_cents": 100} for s, q in lines]}, headers)


class Sagas(unittest.TestCase):
    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()

    def start(self, *extra, data=None, env=None):
        srv = Server(*extra, data=data, env=env)
        if data:
            srv.own_data = False
        self.servers.append(srv)
        return srv

    def test_happy_path_carries_correlation_and_trace(self):
        srv = self.start()
        setup_domain(srv)
        corr = "6f1b7d3e-9c0a-4b5e-8f7d-2a1c3b4d5e6f"
        place(srv, "o1", [("A", 2), ("B", 3)],
              {"traceparent": TRACE, "X-Correlation-Id": corr})
        self.assertEqual(ended(srv, "o1"), "completed")
        self.assertEqual(order_status(srv, "o1"), "OrderConfirmed")
        self.assertEqual(product_state(srv, "A"), (8, {}))
        self.assertEqual(product_state(srv, "B"), (7, {}))
        self.assertEqual(customer_state(srv, "c1"), {"o1": 500})
        # one id follows the order from PlaceOrder to OrderConfirmed
        confirmed = srv.stream("order-o1")[-1]
        self.assertEqual(confirmed["correlation_id"], corr)
        self.assertEqual(confirmed["metadata"]["traceparent"], TRACE)
        self.assertEqual(confirmed["metadata"]["saga_id"], "OrderFulfillment-o1")
        self.assertEqual(confirmed["metadata"]["attempt"], "1")
        self.assertTrue(confirmed["metadata"]["idempotency"].startswith("s/OrderFulfillment-o1/"))
        # the client cannot write a saga's journal
        s, _, b = srv.command("ChangeSagaState", {"saga_id": "OrderFulfillment-o1",
                                                  "state": "aborted", "reason": "", "by": "x"})
        self.assertEqual(s, 404, b)
        self.assertEqual(srv.stop(), 0)

    def test_reservation_rejected_releases_what_was_reserved(self):
        srv = self.start()
        setup_domain(srv, {"A": 10, "B": 1, "C": 10})
        place(srv, "o1", [("A", 2), ("B", 5), ("C", 1)])
        self.assertEqual(ended(srv, "o1"), "compensated")
        last = srv.stream("order-o1")[-1]
        self.assertEqual((last["type"], last["payload"]["reason"]),
                         ("OrderCancelled", "insufficient_stock"))
        for sku, on_hand in (("A", 10), ("B", 1), ("C", 10)):
            self.assertEqual(product_state(srv, sku), (on_hand, {}))
        released = [e for e in srv.stream("product-A") if e["type"] == "StockReleased"]
        self.assertEqual(len(released), 1)
        self.assertEqual([e for e in srv.stream("product-B") if e["type"] != "ProductRegistered"
                          and e["type"] != "ProductRestocked"], [])
        self.assertEqual(customer_state(srv, "c1"), {})
        self.assertEqual(srv.stream("customer-c1")[1:], [])  # no payment was tried
        self.assertEqual(srv.stop(), 0)

    def test_payment_declined_releases_everything(self):
        srv = self.start()
        setup_domain(srv, credit=300)
        place(srv, "o1", [("A", 2), ("B", 2)])
        self.assertEqual(ended(srv, "o1"), "compensated")
        last = srv.stream("order-o1")[-1]
        self.assertEqual(last["payload"]["reason"], "credit_limit_exceeded")
        self.assertEqual(product_state(srv, "A"), (10, {}))
        self.assertEqual(product_state(srv, "B"), (10, {}))
        self.assertEqual(customer_state(srv, "c1"), {})
        self.assertEqual(srv.stop(), 0)

    def test_step_timeout_compensates(self):
        srv = self.start(env={"SKALD_SAGA_DELAY": "authorize_payment:5000",
                              "SKALD_SAGA_STEP_TIMEOUT_MS": "300"})
        setup_domain(srv)
        place(srv, "o1", [("A", 1)])
        self.assertEqual(ended(srv, "o1"), "compensated")
        last = srv.stream("order-o1")[-1]
        self.assertEqual(last["payload"]["reason"], "timeout: authorize_payment")
        self.assertEqual(product_state(srv, "A"), (10, {}))
        self.assertEqual(customer_state(srv, "c1"), {})
        self.assertEqual(srv.stop(), 0)

    def test_timer_survives_a_restart(self):
        """The deadline is persisted: killed with the step open, the restarted orchestrator
        fires the same timer (the step's commands are held back by the delay fault)."""
        env = {"SKALD_SAGA_DELAY": "authorize_payment:60000", "SKALD_SAGA_STEP_TIMEOUT_MS": "1500"}
        srv = self.start(env=env)
        setup_domain(srv)
        place(srv, "o1", [("A", 1)])
        wait_for(lambda: any(e["type"] == "SagaStepStarted" and e["payload"]["step"] == 1
                             for e in saga_events(srv, "o1")), 30, "authorize step to start")
        srv.kill()
        srv2 = self.start(data=srv.data, env=env)
        self.assertEqual(ended(srv2, "o1"), "compensated")
        self.assertEqual(product_state(srv2, "A"), (10, {}))
        self.assertEqual(srv2.stop(), 0)

    def test_kills_at_each_point_resume_without_doubling(self):
        for point in ("after_start", "after_step_started", "after_send", "before_step_finished",
                      "after_step_finished"):
            with self.subTest(point=point):
                srv = self.start(env={"SKALD_SAGA_CRASH": point})
                setup_domain(srv)
                key = {"Idempotency-Key": "place-o1"}
                try:
                    place(srv, "o1", [("A", 2), ("B", 1)], key)
                except OSError:
                    pass  # the crash may beat the answer: posted again below, same key
                wait_for(lambda: srv.proc.poll() is not None, 30, "the crash at " + point)
                srv.kill()
                srv2 = self.start(data=srv.data)
                place(srv2, "o1", [("A", 2), ("B", 1)], key)
                self.assertEqual(ended(srv2, "o1"), "completed", point)
                self.assertEqual(product_state(srv2, "A"), (8, {}))
                self.assertEqual(product_state(srv2, "B"), (9, {}))
                self.assertEqual(customer_state(srv2, "c1"), {"o1": 300})
                self.assertEqual(srv2.stop(), 0)

    def test_compensation_resumes_after_a_kill(self):
        srv = self.start(env={"SKALD_SAGA_CRASH": "after_compensating"})
        setup_domain(srv, credit=100)
        try:
            place(srv, "o1", [("A", 2)], {"Idempotency-Key": "place-o1"})
        except OSError:
            pass  # the crash may beat the answer: posted again below, same key
        wait_for(lambda: srv.proc.poll() is not None, 30, "the crash")
        srv2 = self.start(data=srv.data)
        place(srv2, "o1", [("A", 2)], {"Idempotency-Key": "place-o1"})
        self.assertEqual(ended(srv2, "o1"), "compensated")
        self.assertEqual(product_state(srv2, "A"), (10, {}))
        self.assertEqual(srv2.stop(), 0)

    def test_replayed_start_event_starts_no_second_saga(self):
        srv = self.start()
        setup_domain(srv)
        place(srv, "o1", [("A", 1)])
        self.assertEqual(ended(srv, "o1"), "completed")
        first = len(saga_events(srv, "o1"))
        self.assertEqual(srv.stop(), 0)
        os.unlink(os.path.join(srv.data, "sagas", "checkpoint.json"))  # tail from 0 again
        srv2 = self.start(data=srv.data)
        place(srv2, "o2", [("A", 1)])
        self.assertEqual(ended(srv2, "o2"), "completed")
        self.assertEqual(len(saga_events(srv2, "o1")), first)
        self.assertEqual(product_state(srv2, "A"), (8, {}))
        self.assertEqual(srv2.stop(), 0)

    def test_order_ended_without_saga_starts_none(self):
        """A log whose orders were driven by hand (as the old seeder did) starts no saga."""
        srv = self.start("--roles", "commands,projections,queries")
        setup_domain(srv)
        place(srv, "o1", [("A", 1)])
        ok(srv, "ReserveStock", {"sku": "A", "order_id": "o1", "quantity": 1})
        ok(srv, "CommitStock", {"sku": "A", "order_id": "o1"})
        ok(srv, "ConfirmOrder", {"order_id": "o1"})
        self.assertEqual(srv.stop(), 0)
        srv2 = self.start(data=srv.data)
        place(srv2, "o2", [("A", 1)])
        self.assertEqual(ended(srv2, "o2"), "completed")
        self.assertEqual(saga_events(srv2, "o1"), [])
        self.assertEqual(product_state(srv2, "A"), (8, {}))
        self.assertEqual(srv2.stop(), 0)

    def test_restock_saga_never_doubles(self):
        """RestockProduct adds stock each time it runs: only the keys stop a resend."""
        env = {"SKALD_SAGA_TEST_DEFINITIONS": "1", "SKALD_SAGA_FAIL": "RestockProduct:0.8",
               "SKALD_SAGA_SEED": "7"}
        srv = self.start(env=env)
        for i in range(20):
            ok(srv, "RegisterProduct", {"sku": "R%d" % i, "name": "saga-restock:%d" % (i + 1),
                                        "price_cents": 1})

        def restocked(s, i):
            return [e["payload"]["quantity"] for e in s.stream("product-R%d" % i)
                    if e["type"] == "ProductRestocked"]
        def done(s, sku):
            return any(e["type"] == "SagaStateChanged" for e in s.stream(
                "$saga-RestockOnRegister-" + sku))
        wait_for(lambda: all(done(srv, "R%d" % i) for i in range(20)), 60, "every restock saga")
        for i in range(20):
            self.assertEqual(restocked(srv, i), [i + 1])
        self.assertEqual(srv.stop(), 0)
        # killed right after sending, restarted: the resend is answered from the store
        env2 = {"SKALD_SAGA_TEST_DEFINITIONS": "1", "SKALD_SAGA_CRASH": "after_send"}
        srv2 = self.start(data=srv.data, env=env2)
        rk_body = {"sku": "RK", "name": "saga-restock:9", "price_cents": 1}
        try:
            ok(srv2, "RegisterProduct", rk_body, {"Idempotency-Key": "rk"})
        except OSError:
            pass  # the crash may beat the answer: posted again below, same key
        wait_for(lambda: srv2.proc.poll() is not None, 30, "the crash")
        srv3 = self.start(data=srv.data, env={"SKALD_SAGA_TEST_DEFINITIONS": "1"})
        ok(srv3, "RegisterProduct", rk_body, {"Idempotency-Key": "rk"})

        def rk():
            return [e["payload"]["quantity"] for e in srv3.stream("product-RK")
                    if e["type"] == "ProductRestocked"]
        wait_for(lambda: done(srv3, "RK"), 30, "the restock saga to end")
        self.assertEqual(rk(), [9])
        self.assertEqual(srv3.stop(), 0)

    def test_admin_stuck_retry_abort_list_show(self):
        # every ReleaseStock attempt fails: the compensation gives up and the saga is stuck
        env = {"SKALD_SAGA_FAIL": "ReleaseStock:1"}
        srv = self.start(env=env)
        setup_domain(srv, credit=100)
        place(srv, "o1", [("A", 2)])
        wait_for(lambda: saga_state(srv, "o1") == "stuck", 60, "the saga to be stuck")
        s, _, page = srv.request("GET", "/v1/sagas?state=stuck&min_position=%d" % (
            srv.head() - 1))
        self.assertEqual(s, 200, page)
        self.assertEqual([(i["saga_id"], i["order_id"], i["type"], i["step"]) for i in page["items"]],
                         [("OrderFulfillment-o1", "o1", "OrderFulfillment", "compensate:reserve_stock")])
        self.assertIn("retries_exhausted", page["items"][0]["last_error"])
        s, _, one = srv.request("GET", "/v1/sagas/OrderFulfillment-o1")
        self.assertEqual(s, 200, one)
        self.assertEqual((one["state"], one["order_id"]), ("stuck", "o1"))
        self.assertEqual(one["history"][0]["type"], "SagaStarted")
        url = "http://127.0.0.1:%d" % srv.port
        r = subprocess.run([SKALDCTL, "saga", "list", "--state", "stuck", "--server", url],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OrderFulfillment-o1", r.stdout)
        r = subprocess.run([SKALDCTL, "saga", "show", "OrderFulfillment-o1", "--server", url,
                            "--json"], capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, json.loads(r.stdout)["state"]), (0, "stuck"), r.stderr)
        r = subprocess.run([SKALDCTL, "saga", "abort", "nope", "--server", url],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("404", r.stderr)
        s, _, b = srv.request("POST", "/v1/sagas/OrderFulfillment-o2/abort")
        self.assertEqual(s, 404, b)
        s, _, b = srv.request("GET", "/v1/sagas/nope")
        self.assertEqual(s, 404, b)
        self.assertEqual(srv.stop(), 0)
        # the fault is gone; an admin retries: the compensation runs again, under new keys
        srv2 = self.start(data=srv.data)
        r = subprocess.run([SKALDCTL, "saga", "retry", "OrderFulfillment-o1", "--server",
                            "http://127.0.0.1:%d" % srv2.port], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ended(srv2, "o1"), "compensated")
        self.assertEqual(product_state(srv2, "A"), (10, {}))
        self.assertEqual(srv2.stream("order-o1")[-1]["payload"]["reason"], "credit_limit_exceeded")
        s, _, b = srv2.request("POST", "/v1/sagas/OrderFulfillment-o1/retry")
        self.assertEqual(s, 404, b)  # ended: no longer in flight
        wait_for(lambda: 'skald_sagas_ended_total{state="compensated"} 1' in
                 srv2.request("GET", "/metrics")[2], 10, "the metric (updated each second)")
        self.assertEqual(srv2.stop(), 0)

    def test_abort_compensates_a_running_saga(self):
        srv = self.start(env={"SKALD_SAGA_DELAY": "authorize_payment:60000"})
        setup_domain(srv)
        place(srv, "o1", [("A", 2), ("B", 1)])
        wait_for(lambda: any(e["type"] == "SagaStepStarted" and e["payload"]["step"] == 1
                             for e in saga_events(srv, "o1")), 30, "authorize step to start")
        s, _, b = srv.request("POST", "/v1/sagas/OrderFulfillment-o1/abort")
        self.assertEqual((s, b.get("state")), (200, "compensating"), b)
        self.assertEqual(ended(srv, "o1"), "aborted")
        self.assertEqual(srv.stream("order-o1")[-1]["payload"]["reason"], "aborted")
        self.assertEqual(product_state(srv, "A"), (10, {}))
        self.assertEqual(product_state(srv, "B"), (10, {}))
        self.assertEqual(customer_state(srv, "c1"), {})
        self.assertEqual(srv.stop(), 0)


    def test_metrics_after_a_few_sagas(self):
        """/metrics after three confirmed orders and one refused for stock: sagas by state,
        the step-latency histogram, retries (CommitStock answers lost 90% of the time: the
        pivot retries until done) and the compensation run."""
        srv = self.start(env={"SKALD_SAGA_FAIL": "CommitStock:0.9", "SKALD_SAGA_SEED": "5"})
        setup_domain(srv, stock={"A": 10, "B": 1})
        for i in range(3):
            place(srv, "ok%d" % i, [("A", 1)])
        place(srv, "short", [("A", 1), ("B", 5)])
        for i in range(3):
            self.assertEqual(ended(srv, "ok%d" % i), "completed")
        self.assertEqual(ended(srv, "short"), "compensated")

        def metrics():
            out = {}
            for line in srv.request("GET", "/metrics")[2].splitlines():
                if line.startswith("skald_saga"):
                    k, v = line.rsplit(" ", 1)
                    out[k] = float(v)
            return out
        wait_for(lambda: (metrics().get('skald_sagas_ended_total{state="compensated"}'),
                          metrics().get('skald_sagas_ended_total{state="completed"}')) == (1, 3),
                 10, "the metrics (refreshed each second)")
        m = metrics()
        self.assertEqual(m["skald_sagas_started_total"], 4)
        for state in ("running", "compensating", "stuck"):
            self.assertEqual(m['skald_sagas{state="%s"}' % state], 0)
        self.assertGreater(m["skald_saga_retries_total"], 0)
        # the short order: A reserved, B refused; A's reservation released, one step
        self.assertEqual(m["skald_saga_compensations_total"], 1)
        self.assertEqual(m["skald_saga_compensation_steps_total"], 1)
        # forward steps: three for each confirmed order, one for the refused one
        buckets = sorted((float(k.split('le="')[1].rstrip('"}').replace("+Inf", "inf")), v)
                         for k, v in m.items() if k.startswith("skald_saga_step_seconds_bucket"))
        self.assertEqual(len(buckets), 15)
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts))  # cumulative
        self.assertEqual(buckets[-1], (float("inf"), 10))
        self.assertEqual(m["skald_saga_step_seconds_count"], 10)
        self.assertGreater(m["skald_saga_step_seconds_sum"], 0)
        self.assertEqual(srv.stop(), 0)

    def test_resume_from_a_snapshot(self):
        """With a snapshot every 3 journal events, a saga killed after its first step is
        loaded from its snapshot after the restart, ends right, and its snapshot is
        dropped once it ended."""
        env = {"SKALD_SAGA_SNAPSHOT_EVERY": "3"}
        srv = self.start(env=dict(env, SKALD_SAGA_CRASH="after_step_finished"))
        setup_domain(srv)
        place(srv, "o1", [("A", 2), ("B", 1)])
        wait_for(lambda: srv.proc.poll() is not None, 30, "the crash")
        import sqlite3
        db = os.path.join(srv.data, "sagas", "snapshots.db")

        def snapshot_versions():
            c = sqlite3.connect(db)
            try:
                return [r[0] for r in c.execute(
                    "SELECT version FROM snapshots WHERE stream_id = ?",
                    ("$saga-OrderFulfillment-o1",))]
            finally:
                c.close()
        self.assertEqual(snapshot_versions(), [3])  # Started, StepStarted, StepFinished
        srv2 = self.start(data=srv.data, env=env)
        self.assertEqual(ended(srv2, "o1"), "completed")
        wait_for(lambda: "skald_saga_snapshot_loads_total 1" in
                 srv2.request("GET", "/metrics")[2], 10, "the snapshot load in the metrics")
        self.assertIn("skald_saga_snapshots_saved_total ", srv2.request("GET", "/metrics")[2])
        self.assertEqual(product_state(srv2, "A"), (8, {}))
        self.assertEqual(product_state(srv2, "B"), (9, {}))
        self.assertEqual(len([e for e in srv2.stream("customer-c1")
                              if e["type"] == "PaymentAuthorized"]), 1)
        self.assertEqual(srv2.stop(), 0)
        self.assertEqual(snapshot_versions(), [])  # ended: nothing left to shorten

    def test_log_of_the_seeder_starts_no_saga(self):
        """`skald seed` runs every saga to its end before it returns: serving its log for
        the first time resumes nothing, starts nothing and appends nothing."""
        import tempfile
        data = tempfile.mkdtemp(prefix="skald-it-")
        r = subprocess.run([skaldtest.SKALD, "seed", "--data", data, "--orders", "300"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        srv = self.start(data=data)
        srv.own_data = True
        head = srv.head()
        wait_for(lambda: "skald_saga_checkpoint_position %d" % head in
                 srv.request("GET", "/metrics")[2], 30, "the orchestrator to pass the seed")
        self.assertEqual(srv.head(), head)  # nothing appended
        s, _, b = srv.request("GET", "/v1/sagas?limit=1000&min_position=%d" % (head - 1))
        self.assertEqual(s, 200, b)
        self.assertEqual(len(b["items"]), 300)
        self.assertEqual({i["state"] for i in b["items"]} - {"completed", "compensated"}, set())
        self.assertEqual(srv.stop(), 0)

    def test_log_of_the_old_seeder_starts_no_saga(self):
        """A log the old seeder wrote (orders confirmed or cancelled, events appended straight
        into the log, no `$saga-` stream) served with the sagas role for the first time:
        no saga starts, nothing is reserved, paid or cancelled a second time; a new order
        on the same log still runs its saga."""
        import tempfile
        data = tempfile.mkdtemp(prefix="skald-it-")
        schemas = os.path.join(os.environ.get("SKALD_SOURCE_DIR", "."), "events", "schemas")
        r = subprocess.run([OLD_SEED_LOG, data, schemas, "40"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        srv = self.start(data=data)
        srv.own_data = True
        head = srv.head()
        self.assertGreater(head, 40 * 6)
        wait_for(lambda: "skald_saga_checkpoint_position %d" % head in
                 srv.request("GET", "/metrics")[2], 30, "the orchestrator to pass the old log")
        self.assertEqual(srv.head(), head)  # no saga journal, no command: nothing appended
        for n in (0, 1, 2, 3):
            self.assertEqual(saga_events(srv, "old-%d" % n), [])
        before_p1 = len(srv.stream("product-P1"))
        # the runtime is alive on this log: a new order runs its saga, and only its own
        place(srv, "new-1", [("P1", 1)])
        self.assertEqual(ended(srv, "new-1"), "completed")
        self.assertEqual(srv.stop(), 0)
        # again from the log's start (no checkpoint): still nothing for the old orders
        os.unlink(os.path.join(data, "sagas", "checkpoint.json"))
        srv2 = self.start(data=data)
        head2 = srv2.head()
        wait_for(lambda: "skald_saga_checkpoint_position %d" % head2 in
                 srv2.request("GET", "/metrics")[2], 30, "the orchestrator to pass the log")
        self.assertEqual(srv2.head(), head2)
        p1 = srv2.stream("product-P1")
        self.assertEqual(len(p1), before_p1 + 2)  # new-1's reservation and commit only
        reserved = [e["payload"]["order_id"] for e in p1 if e["type"] == "StockReserved"]
        self.assertEqual(len(reserved), len(set(reserved)), "a reservation was doubled")
        self.assertEqual(product_state(srv2, "P1")[1], {})
        paid = {"old-%d" % n: 300 for n in range(0, 40, 4)}
        paid["new-1"] = 100
        self.assertEqual(customer_state(srv2, "c1"), paid)  # each confirmed order paid once
        for n in range(40):
            types = [e["type"] for e in srv2.stream("order-old-%d" % n)]
            self.assertEqual(len(types), 2, types)  # placed, and ended once
        self.assertEqual(saga_events(srv2, "old-0"), [])
        self.assertEqual(srv2.stop(), 0)

if __name__ == "__main__":
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--skaldctl", required=True)
    ap.add_argument("--old-seed-log", required=True)
    args, _ = ap.parse_known_args()
    SKALDCTL = os.path.abspath(args.skaldctl)
    OLD_SEED_LOG = os.path.abspath(args.old_seed_log)
    skaldtest.main(globals())
