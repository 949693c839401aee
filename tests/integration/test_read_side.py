"""The read side of `skald serve`: projections into SQLite and named queries.

- read-your-writes: min_position answers right after a command; an unreachable one is 504;
- the seeded log's read models keep every invariant of the sample domain (checked through
  the queries);
- paging 10,000 rows while writes continue returns every earlier row exactly once;
- a forged or fuzzed cursor is a 400, never a crash; bad parameters name themselves;
- a projection broken on purpose fails alone, names the event, and resume, skip and a
  changed file each get it going again, recorded in its history;
- SIGKILL under load, restart: every read model equals a fresh rebuild, table by table;
- a rebuild under a steady stream of commands and queries answers every query with data
  consistent with the position it reports;
- roles: a commands-only process does not serve queries; a second process with
  projections,queries follows the first one's log from the same data directory.
"""
import json
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import argparse

import skaldtest
from skaldtest import Server

SKALDCTL = None  # set from --skaldctl

MODELS = os.path.join(skaldtest.SOURCE, "projections", "models")


def q(srv, name, **params):
    path = "/v1/queries/" + name
    if params:
        path += "?" + urllib.parse.urlencode(params)
    return srv.request("GET", path)


def all_pages(srv, name, limit=200, **params):
    items, cursor = [], None
    for _ in range(10000):
        p = dict(params, limit=limit)
        if cursor:
            p["cursor"] = cursor
        s, _, b = q(srv, name, **p)
        assert s == 200, (s, b)
        items += b["items"]
        cursor = b["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


def wait_state(srv, name, pred, seconds=60):
    deadline = time.time() + seconds
    st = None
    while time.time() < deadline:
        s, _, st = srv.request("GET", "/v1/projections/" + name)
        assert s == 200, (s, st)
        if pred(st):
            return st
        time.sleep(0.05)
    raise AssertionError("projection %s never reached the state: %s" % (name, st))


def caught_up(srv, name, seconds=30):
    head = srv.head() - 1
    s, _, b = q(srv, name, min_position=head, timeout_ms=seconds * 1000, limit=1)
    assert s == 200, (s, b)
    return head


def dump_model(data, name):
    """A canonical dump of every table of a model's live generation."""
    pdir = os.path.join(data, "projections")
    best = None
    for f in os.listdir(pdir):
        if f.startswith(name + ".") and f.endswith(".db"):
            path = os.path.join(pdir, f)
            con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
            live = con.execute("SELECT value FROM _skald_projection WHERE key='live'").fetchone()
            if live and str(live[0]) == "1":
                best = max(best or "", path)
            con.close()
    con = sqlite3.connect("file:%s?mode=ro" % best, uri=True)
    out = {}
    for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                            "AND name <> '_skald_projection' ORDER BY name"):
        out[t] = sorted(con.execute("SELECT * FROM %s" % t).fetchall(), key=repr)
    con.close()
    return out


def batch(srv, lines):
    body = "\n".join(json.dumps(l) for l in lines) + "\n"
    s, _, b = srv.request("POST", "/v1/commands:batch", body,
                          {"Content-Type": "application/x-ndjson"})
    assert s == 200, (s, b)
    return b


class ReadSide(unittest.TestCase):
    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()

    def start(self, *extra, data=None, env=None):
        if "--roles" not in extra:  # orders here are driven by hand: no saga runs them
            extra = (*extra, "--roles", "commands,projections,queries")
        srv = Server(*extra, data=data, env=env)
        if data:
            srv.own_data = False
        self.servers.append(srv)
        return srv

    def test_read_your_writes_and_errors(self):
        srv = self.start()
        s, _, b = srv.command("RegisterProduct", {"sku": "RW", "name": "Rw", "price_cents": 5})
        self.assertEqual(s, 200, b)
        s, _, page = q(srv, "inventory", sku="RW", min_position=b["position"])
        self.assertEqual(s, 200, page)
        self.assertGreaterEqual(page["position"], b["position"])
        self.assertEqual(page["items"], [{"sku": "RW", "name": "Rw", "on_hand": 0, "reserved": 0,
                                          "available": 0}])
        s, _, p = q(srv, "inventory", min_position=b["position"] + 1000, timeout_ms=200)
        self.assertEqual(s, 504, p)
        self.assertEqual(p["position"], page["position"])
        s, _, p = q(srv, "inventory", sku="nothing-here")
        self.assertEqual((s, p["items"], p["next_cursor"]), (200, [], None))
        for params, field in [({"nope": "1"}, "nope"), ({"limit": "0"}, "limit"),
                              ({"limit": "1001"}, "limit"), ({"min_position": "x"}, "min_position"),
                              ({"status": "lost"}, "status")]:
            name = "orders" if field == "status" else "inventory"
            s, _, p = q(srv, name, **params)
            self.assertEqual((s, p.get("field")), (400, field), (params, p))
        s, _, p = srv.request("GET", "/v1/queries/inventory?sku=a&sku=b")
        self.assertEqual((s, p.get("field")), (400, "sku"))
        s, _, p = srv.request("GET", "/v1/queries/no_such_query")
        self.assertEqual(s, 404)
        s, _, p = srv.request("GET", "/v1/queries/order")
        self.assertEqual((s, p.get("field")), (400, "order_id"))
        rnd = random.Random(7)
        for i in range(200):
            junk = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzABCDEFGH0123456789-_=.%")
                           for _ in range(rnd.randint(0, 120)))
            s, _, p = srv.request("GET", "/v1/queries/inventory?cursor=" + urllib.parse.quote(junk))
            self.assertEqual((s, p.get("field")), (400, "cursor"), junk)
        self.assertEqual(srv.stop(), 0)

    def test_waiting_queries_block_nothing_else(self):
        # One HTTP thread: queries waiting for a position that never comes must not hold it.
        srv = self.start("--threads", "1")
        s, _, b = srv.command("RegisterProduct", {"sku": "W", "name": "w", "price_cents": 1})
        results = []

        def waiter():
            results.append(q(srv, "inventory", min_position=b["position"] + 10 ** 6,
                             timeout_ms=3000)[0])

        waiters = [threading.Thread(target=waiter) for _ in range(3)]
        for t in waiters:
            t.start()
        time.sleep(0.3)
        t0 = time.time()
        s, _, _ = srv.command("RestockProduct", {"sku": "W", "quantity": 1})
        s2, _, page = q(srv, "inventory", sku="W")
        self.assertEqual((s, s2), (200, 200))
        self.assertLess(time.time() - t0, 1.5, "a waiting query held the HTTP thread")
        for t in waiters:
            t.join()
        self.assertEqual(results, [504, 504, 504])
        self.assertEqual(srv.stop(), 0)

    def test_seeded_invariants_through_queries(self):
        data = tempfile.mkdtemp(prefix="skald-it-")
        try:
            subprocess.run([skaldtest.SKALD, "seed", "--data", data, "--orders", "300"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            srv = self.start(data=data)
            for name in ("inventory", "customer_credit", "orders", "sales_by_day"):
                caught_up(srv, name)
            inv = all_pages(srv, "inventory")
            self.assertGreater(len(inv), 0)
            for p in inv:
                self.assertGreaterEqual(p["available"], 0, p)
                self.assertEqual(p["available"], p["on_hand"] - p["reserved"], p)
                self.assertEqual(p["reserved"], 0, p)  # every order ended
            credit = all_pages(srv, "customer_credit")
            for c in credit:
                self.assertLessEqual(c["used_cents"], c["limit_cents"], c)
                self.assertEqual(c["available_cents"], c["limit_cents"] - c["used_cents"])
            orders = all_pages(srv, "orders")
            self.assertEqual(len(orders), 300)
            self.assertEqual({o["status"] for o in orders} - {"confirmed", "cancelled"}, set())
            keys = [(o["placed_at"], o["order_id"]) for o in orders]
            self.assertEqual(keys, sorted(keys, key=lambda k: (_neg(k[0]), k[1])))
            confirmed = [o for o in orders if o["status"] == "confirmed"]
            sales = all_pages(srv, "sales_by_day")
            self.assertEqual(sum(d["orders"] for d in sales), len(confirmed))
            self.assertEqual(sum(d["revenue_cents"] for d in sales),
                             sum(o["total_cents"] for o in confirmed))
            one = confirmed[0]
            s, _, b = q(srv, "order", order_id=one["order_id"])
            self.assertEqual(s, 200, b)
            lines = b["items"][0]["lines"]
            self.assertTrue(lines and all({"sku", "quantity", "unit_price_cents"} <= set(l)
                                          for l in lines))
            self.assertEqual(sum(l["quantity"] * l["unit_price_cents"] for l in lines),
                             one["total_cents"])
            self.assertEqual(srv.stop(), 0)
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def test_paging_under_writes(self):
        srv = self.start()
        before = ["S%05d" % i for i in range(10000)]
        for i in range(0, len(before), 1000):
            batch(srv, [{"type": "RegisterProduct", "body": {"sku": s, "name": s, "price_cents": 1}}
                        for s in before[i:i + 1000]])
        caught_up(srv, "inventory")
        stop = threading.Event()

        def writer():
            n = 0
            while not stop.is_set() and n < 2000:
                batch(srv, [{"type": "RegisterProduct",
                             "body": {"sku": "S%05d-%d" % (random.randrange(10000), n + k),
                                      "name": "x", "price_cents": 1}} for k in range(50)])
                n += 50

        t = threading.Thread(target=writer)
        t.start()
        try:
            items = all_pages(srv, "inventory", limit=97)
        finally:
            stop.set()
            t.join()
        skus = [i["sku"] for i in items]
        self.assertEqual(len(skus), len(set(skus)), "a row came twice")
        self.assertEqual(skus, sorted(skus))
        missing = set(before) - set(skus)
        self.assertEqual(missing, set(), "rows that existed before the first page are missing")
        self.assertEqual(srv.stop(), 0)

    def test_broken_projection_fails_alone_and_the_ways_on(self):
        models = tempfile.mkdtemp(prefix="skald-models-")
        try:
            for f in os.listdir(MODELS):
                shutil.copy(os.path.join(MODELS, f), models)
            fragile = os.path.join(models, "fragile.sql")
            with open(fragile, "w") as f:
                f.write("-- @tables\nCREATE TABLE stock (sku TEXT PRIMARY KEY, "
                        "qty INTEGER NOT NULL CHECK (qty <= 50));\n"
                        "-- @on ProductRegistered\nINSERT INTO stock VALUES (:sku, 0);\n"
                        "-- @on ProductRestocked\n"
                        "UPDATE stock SET qty = qty + :quantity WHERE sku = :sku;\n"
                        "-- @query fragile\n-- @order sku ASC\nSELECT sku, qty FROM stock\n")
            srv = self.start("--models", models)
            skaldtest.register(srv, "F", 10)
            s, _, bad = srv.command("RestockProduct", {"sku": "F", "quantity": 100})
            self.assertEqual(s, 200)
            st = wait_state(srv, "fragile", lambda st: st["state"] == "failed")
            self.assertEqual(st["last_error"]["position"], bad["position"])
            self.assertEqual(st["last_error"]["type"], "ProductRestocked")
            self.assertIn("CHECK", st["last_error"]["message"])
            caught_up(srv, "inventory")  # the others go on
            s, _, page = q(srv, "fragile")
            self.assertEqual(page["items"], [{"sku": "F", "qty": 10}])  # last good data
            self.assertEqual(page["position"], bad["position"] - 1)
            s, _, p = srv.request("POST", "/v1/projections/fragile/skip",
                                  {"position": bad["position"] + 1})
            self.assertEqual(s, 409, p)
            s, _, p = srv.request("POST", "/v1/projections/fragile/resume")
            self.assertEqual(s, 202, p)
            wait_state(srv, "fragile", lambda st: st["state"] == "failed" and
                       any(h["what"] == "resumed" for h in st["history"]))
            s, _, p = srv.request("POST", "/v1/projections/fragile/skip",
                                  {"position": bad["position"]})
            self.assertEqual(s, 202, p)
            st = wait_state(srv, "fragile", lambda st: st["state"] == "running")
            self.assertEqual(st["skipped"], [bad["position"]])
            s, _, more = srv.command("RestockProduct", {"sku": "F", "quantity": 35})
            s, _, page = q(srv, "fragile", min_position=more["position"])
            self.assertEqual(s, 200, page)
            self.assertEqual(page["items"], [{"sku": "F", "qty": 45}], page)
            # a changed file: rebuilt beside at start-up, and then the restock of 100 counts
            self.assertEqual(srv.stop(), 0)
            with open(fragile) as f:
                text = f.read()
            with open(fragile, "w") as f:
                f.write(text.replace("qty <= 50", "qty <= 500"))
            srv2 = self.start("--models", models, data=srv.data)
            st = wait_state(srv2, "fragile", lambda st: st["state"] == "running" and
                            st["generation"] == 2)
            self.assertTrue(any("changed" in h["what"] for h in st["history"]), st["history"])
            s, _, page = q(srv2, "fragile", min_position=more["position"])
            self.assertEqual(page["items"], [{"sku": "F", "qty": 145}])
            self.assertEqual(srv2.stop(), 0)
        finally:
            shutil.rmtree(models, ignore_errors=True)

    def test_sigkill_under_load_equals_rebuild(self):
        srv = self.start()
        skaldtest.register(srv, "K", 1000000)
        batch(srv, [{"type": "OpenCustomer", "body": {"customer_id": "c%d" % i, "name": "n",
                                                       "credit_limit_cents": 10 ** 9}}
                    for i in range(20)])
        stop = threading.Event()

        def load():
            i = 0
            while not stop.is_set() and i < 20000:
                lines = []
                for k in range(40):
                    oid = "o%d" % (i + k)
                    lines.append({"type": "PlaceOrder", "body": {
                        "order_id": oid, "customer_id": "c%d" % (k % 20), "lines": [
                            {"sku": "K", "quantity": 1, "unit_price_cents": 3}]}})
                    lines.append({"type": "ReserveStock",
                                  "body": {"sku": "K", "order_id": oid, "quantity": 1}})
                try:
                    batch(srv, lines)
                except Exception:
                    return
                i += 40

        t = threading.Thread(target=load)
        t.start()
        time.sleep(1.5)
        srv.kill()
        stop.set()
        t.join()
        srv2 = self.start(data=srv.data)
        names = ["orders", "inventory", "customer_credit", "sales_by_day"]
        for n in names:
            caught_up(srv2, n)
        before = {n: dump_model(srv2.data, n) for n in names}
        for n in names:
            s, _, p = srv2.request("POST", "/v1/projections/%s/rebuild" % n)
            self.assertEqual(s, 202, p)
        for n in names:
            wait_state(srv2, n, lambda st: st["state"] == "running" and st["rebuild"] is None
                       and st["generation"] == 2)
        after = {n: dump_model(srv2.data, n) for n in names}
        for n in names:
            self.assertEqual(before[n], after[n], n)
        self.assertEqual(srv2.stop(), 0)

    def test_rebuild_under_load_answers_consistently(self):
        srv = self.start()
        skaldtest.register(srv, "R", 0)
        positions = []
        lock = threading.Lock()
        stop = threading.Event()

        def restock():
            c = srv.conn()
            while not stop.is_set() and len(positions) < 3000:
                s, _, b = srv.command("RestockProduct", {"sku": "R", "quantity": 1}, conn=c)
                if s == 200:
                    with lock:
                        positions.append(b["position"])
            c.close()

        for _ in range(200):
            srv.command("RestockProduct", {"sku": "R", "quantity": 1})
        t = threading.Thread(target=restock)
        t.start()
        answers = []
        try:
            s, _, p = srv.request("POST", "/v1/projections/inventory/rebuild")
            self.assertEqual(s, 202, p)
            deadline = time.time() + 60
            rebuilt = False
            while time.time() < deadline and not (rebuilt and len(answers) > 50):
                s, _, page = q(srv, "inventory", sku="R")
                self.assertEqual(s, 200, page)
                self.assertEqual(len(page["items"]), 1, page)  # never a half-built empty page
                answers.append((page["position"], page["items"][0]["on_hand"]))
                s, _, st = srv.request("GET", "/v1/projections/inventory")
                rebuilt = st["generation"] == 2 and st["rebuild"] is None
            self.assertTrue(rebuilt, "the rebuild did not finish")
        finally:
            stop.set()
            t.join()
        # on_hand at position P = restocks at positions <= P (quantity 1 each)
        restocks = sorted(self._restock_positions(srv))
        import bisect
        for pos, on_hand in answers:
            self.assertEqual(on_hand, bisect.bisect_right(restocks, pos), (pos, on_hand))
        self.assertEqual(srv.stop(), 0)

    def _restock_positions(self, srv):
        return [e["position"] for e in srv.stream("product-R") if e["type"] == "ProductRestocked"]

    def test_roles(self):
        srv = self.start("--roles", "commands")
        s, _, p = q(srv, "inventory")
        self.assertEqual((s, p["code"]), (404, "not_served"))
        s, _, b = srv.command("RegisterProduct", {"sku": "X", "name": "x", "price_cents": 1})
        self.assertEqual(s, 200)
        reader = self.start("--roles", "projections,queries", data=srv.data)
        s, _, page = q(reader, "inventory", min_position=b["position"], timeout_ms=10000)
        self.assertEqual(s, 200, page)
        self.assertEqual([i["sku"] for i in page["items"]], ["X"])
        s, _, b2 = srv.command("RestockProduct", {"sku": "X", "quantity": 3})
        s, _, page = q(reader, "inventory", min_position=b2["position"], timeout_ms=10000)
        self.assertEqual(page["items"][0]["on_hand"], 3)  # followed live, another process
        s, _, p = reader.command("RegisterProduct", {"sku": "Y", "name": "y", "price_cents": 1})
        self.assertEqual((s, p["code"]), (404, "not_served"))
        self.assertEqual(reader.stop(), 0)
        self.assertEqual(srv.stop(), 0)


class Skaldctl(unittest.TestCase):
    def ctl(self, *args, env=None):
        return subprocess.run([SKALDCTL, "projection", *args], capture_output=True, timeout=120,
                              env={**os.environ, **(env or {})}, text=True)

    def test_online_and_offline(self):
        srv = Server()
        try:
            skaldtest.register(srv, "P", 4)
            url = "http://127.0.0.1:%d" % srv.port
            r = self.ctl("list", "--server", url, "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            names = {p["name"] for p in json.loads(r.stdout)["projections"]}
            self.assertTrue({"orders", "inventory", "customer_credit", "sales_by_day"} <= names)
            r = self.ctl("rebuild", "inventory", env={"SKALD_SERVER": url})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("inventory", r.stdout)
            self.assertIn("running", r.stdout)
            self.assertIn("generation 2", r.stdout)
            r = self.ctl("resume", "inventory", "--server", url)
            self.assertEqual(r.returncode, 1)  # not failed: 409, said on stderr
            self.assertIn("409", r.stderr)
            r = self.ctl("skip", "inventory", "--server", url)
            self.assertEqual(r.returncode, 2)  # --position is required
            r = self.ctl("status", "inventory", "--data", srv.data)
            self.assertEqual(r.returncode, 1)  # the server holds the projections
            self.assertIn("in use", r.stderr)
            self.assertEqual(srv.stop(), 0)
            r = self.ctl("rebuild", "orders", "--data", srv.data, "--models", MODELS, "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            st = json.loads(r.stdout)
            self.assertEqual((st["state"], st["generation"]), ("running", 2))
            self.assertEqual(st["position"], srv_head_position(srv.data))
            r = self.ctl("status", "nope", "--data", srv.data, "--models", MODELS)
            self.assertEqual(r.returncode, 1)
            r = self.ctl("frobnicate")
            self.assertEqual(r.returncode, 2)
        finally:
            srv.cleanup()


def srv_head_position(data):
    out = subprocess.run([SKALDCTL, "log", "info", "--data", data, "--json"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return json.loads(out)["next_position"] - 1


def _neg(text):
    """Sorts RFC 3339 text descending inside an ascending sort."""
    return tuple(-ord(c) for c in text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--skaldctl", required=True)
    args, _ = ap.parse_known_args()
    SKALDCTL = os.path.abspath(args.skaldctl)
    skaldtest.main(globals())
