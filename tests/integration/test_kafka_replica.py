"""Read replicas fed by Kafka and restore from Kafka, against a real broker (tools/kafka).

- The writer (all roles, with the relay) and TWO replicas (`--source=kafka`, roles
  projections,queries, no log) run at once; after a mixed load (a seeded sample with
  orders, then live commands: products, customers, orders run by the saga, restocks)
  every read model of each replica equals the writer's (a canonical dump: every table but
  Skald's own meta table, rows sorted).
- A `min_position` query on a replica waits for a command just posted to the writer and
  sees its effect.
- A replica SIGKILLed while it applies a load resumes from its checkpoint (position plus
  partition offsets, in the projection's transaction): same generation, models equal to
  the writer's again (a duplicate would double a count, a gap would miss one).
- `skaldctl restore --from-kafka` rebuilds a log that passes `log verify` and whose
  `log dump --json` equals the writer's; a topic with a position missing is refused
  (exit 1, the position named, no DIR/log left).
- Usage errors: --source=kafka without brokers or with the commands role.

The broker is started once for the module and stopped at the end. Every wait is bounded.
"""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skaldtest as st  # noqa: E402

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

SKALDCTL = None
KAFKA_TOOL = os.path.join(st.SOURCE, "tools", "kafka")
MODELS = ("customer_credit", "inventory", "orders", "sagas", "sales_by_day")


class Broker:
    """The module's broker, in a directory of its own under /tmp."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="skald-kafka-replica-")
        self.env = {**os.environ, "SKALD_KAFKA_DIR": self.dir}
        self.bootstrap = None
        out = subprocess.run([KAFKA_TOOL, "start"], env=self.env, capture_output=True,
                             text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError("tools/kafka start failed:\n" + out.stderr)
        for line in out.stdout.splitlines():
            if line.startswith("KAFKA_BOOTSTRAP="):
                self.bootstrap = line.split("=", 1)[1]

    def stop(self):
        subprocess.run([KAFKA_TOOL, "stop"], env=self.env, capture_output=True, timeout=120)


BROKER = None


def setUpModule():
    global BROKER
    BROKER = Broker()


def tearDownModule():
    if BROKER:
        BROKER.stop()




def ok(srv, ctype, body):
    s, _, b = srv.command(ctype, body)
    assert s == 200, (ctype, s, b)
    return b


def query(srv, name, **params):
    return srv.request("GET", "/v1/queries/%s?%s" % (name, urllib.parse.urlencode(params)))


def dump_model(data, name):
    """A canonical dump of a model's live generation: every table but Skald's own meta
    table, its rows sorted."""
    pdir = os.path.join(data, "projections")
    best = None
    for f in sorted(os.listdir(pdir)):
        if f.startswith(name + ".") and f.endswith(".db"):
            path = os.path.join(pdir, f)
            con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
            live = con.execute("SELECT value FROM _skald_projection WHERE key='live'").fetchone()
            con.close()
            if live and str(live[0]) == "1":
                best = path
    assert best, "no live generation of %s in %s" % (name, pdir)
    con = sqlite3.connect("file:%s?mode=ro" % best, uri=True)
    out = {}
    for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                            "AND name NOT LIKE '\\_skald%' ESCAPE '\\' ORDER BY name"):
        out[t] = sorted(con.execute('SELECT * FROM "%s"' % t).fetchall(), key=repr)
    con.close()
    return out


def meta(data, name, key):
    path = os.path.join(data, "projections", "%s.000001.db" % name)
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    row = con.execute("SELECT value FROM _skald_projection WHERE key=?", (key,)).fetchone()
    con.close()
    return row[0] if row else None


def live_load(srv, tag, n):
    """n rounds of mixed commands: a product and a customer, a restock, an order the
    saga runs (confirmed, or cancelled when stock or credit runs out)."""
    for i in range(n):
        sku, cust = "%s-p%d" % (tag, i % 7), "%s-c%d" % (tag, i % 5)
        if i < 7:
            ok(srv, "RegisterProduct", {"sku": sku, "name": "n", "price_cents": 100 + i})
        if i < 5:
            ok(srv, "OpenCustomer", {"customer_id": cust, "name": "c",
                                     "credit_limit_cents": 50000})
        ok(srv, "RestockProduct", {"sku": sku, "quantity": 3})
        ok(srv, "PlaceOrder", {"order_id": "%s-o%d" % (tag, i), "customer_id": cust,
                               "lines": [{"sku": sku, "quantity": 1 + i % 4,
                                          "unit_price_cents": 100}]})


def settle(writer, replicas, timeout_s=120):
    """Until the writer's log stops moving (sagas finish their orders), the relay has
    published all of it and every replica's models have applied it. The head."""
    deadline = time.time() + timeout_s
    while True:
        head = writer.head()
        st.wait_for(lambda: st.metric(writer, "skald_relay_published_position") >= head,
                    max(1, deadline - time.time()), "the relay to publish up to %d" % head)
        for r in replicas:
            for m in MODELS:
                wait_applied(r, m, head - 1, max(1, int(deadline - time.time())))
        time.sleep(0.3)
        if writer.head() == head:
            return head
        if time.time() > deadline:
            raise AssertionError("the writer's log did not settle in %d s" % timeout_s)


def wait_applied(srv, model, position, timeout_s):
    """Until the model's live generation has applied position (its status says so)."""
    def done():
        s, _, b = srv.request("GET", "/v1/projections/" + model)
        assert s == 200, (s, b)
        assert b["state"] in ("running", "rebuilding"), b
        return b["position"] >= position
    st.wait_for(done, timeout_s, "%s to apply position %d" % (model, position))


def log_dump(data):
    out = subprocess.run([SKALDCTL, "log", "dump", "--data", data, "--json"],
                         capture_output=True, text=True, timeout=300, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def restore(topic, to):
    return subprocess.run([SKALDCTL, "restore", "--from-kafka", "--brokers", BROKER.bootstrap,
                           "--topic", topic, "--to", to], capture_output=True, text=True,
                          timeout=300)


def read_topic(topic):
    """Every message of a topic up to its end: (key, headers list, value)."""
    c = Consumer({"bootstrap.servers": BROKER.bootstrap, "group.id": "t-read",
                  "enable.auto.commit": False})
    try:
        parts = sorted(c.list_topics(topic, timeout=30).topics[topic].partitions)
        high = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in parts}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        nxt, out = {p: 0 for p in parts}, []
        deadline = time.time() + 60
        while any(nxt[p] < high[p] for p in parts):
            assert time.time() < deadline, "timed out reading %s" % topic
            for m in c.consume(1000, 1.0):
                assert not m.error(), m.error()
                out.append((m.key(), m.headers(), m.value()))
                nxt[m.partition()] = m.offset() + 1
        return out
    finally:
        c.close()


class KafkaReplica(unittest.TestCase):
    def setUp(self):
        self.servers = []
        self.dirs = []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()
        for d in self.dirs:
            subprocess.run(["rm", "-rf", d])

    def writer(self, prefix, data=None):
        srv = st.Server("--kafka-brokers", BROKER.bootstrap, "--kafka-topic-prefix", prefix,
                        data=data)
        srv.own_data = data is None
        self.servers.append(srv)
        return srv

    def replica(self, prefix, data=None):
        srv = st.Server("--source", "kafka", "--kafka-brokers", BROKER.bootstrap,
                        "--kafka-topic-prefix", prefix, "--roles", "projections,queries",
                        data=data)
        srv.own_data = False
        if data is None:
            self.dirs.append(srv.data)
        self.servers.append(srv)
        return srv

    def assert_models_equal(self, writer, replica):
        for m in MODELS:
            self.assertEqual(dump_model(replica.data, m), dump_model(writer.data, m),
                             "model %s differs on replica %s" % (m, replica.data))

    def test_1_two_replicas_restart_and_restore(self):
        t0 = time.time()
        data = tempfile.mkdtemp(prefix="skald-it-")
        subprocess.run([st.SKALD, "seed", "--data", data, "--orders", "200"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        w = self.writer("rep", data=data)
        w.own_data = True
        # the relay creates the topic; the replicas start once it is there
        st.wait_for(lambda: st.metric(w, "skald_relay_published_position") > 0, 60,
                    "the relay to publish")
        a, b = self.replica("rep"), self.replica("rep")
        live_load(w, "L", 40)
        head = settle(w, [a, b])
        print("settled at %d events in %.1f s" % (head, time.time() - t0), file=sys.stderr)
        for r in (a, b):
            self.assert_models_equal(w, r)
            self.assertTrue(meta(r.data, "orders", "source_checkpoint").startswith("rep.events "))

        # read-your-writes on a replica: the query waits for the command's position
        c = ok(w, "RegisterProduct", {"sku": "fresh", "name": "Fresh", "price_cents": 7})
        s, _, page = query(a, "inventory", sku="fresh", min_position=c["position"],
                           timeout_ms=30000)
        self.assertEqual(s, 200, page)
        self.assertGreaterEqual(page["position"], c["position"])
        self.assertEqual([i["sku"] for i in page["items"]], ["fresh"])

        # SIGKILL a replica while it applies a load; it resumes from its checkpoint
        done = threading.Event()
        errors = []

        def load():
            try:
                live_load(w, "K", 40)
            except Exception as e:  # reported below
                errors.append(e)
            done.set()
        t = threading.Thread(target=load)
        t.start()
        before = a.request("GET", "/v1/projections/orders")[2]["position"]
        st.wait_for(lambda: a.request("GET", "/v1/projections/orders")[2]["position"] > before + 20,
                    60, "replica A to apply part of the load")
        a.kill()
        t.join(120)
        self.assertFalse(errors, errors)
        a2 = self.replica("rep", data=a.data)
        head = settle(w, [a2, b])
        for r in (a2, b):
            self.assert_models_equal(w, r)
        s, _, status = a2.request("GET", "/v1/projections/orders")
        self.assertEqual(status["generation"], 1, "the replica rebuilt instead of resuming")
        # each worker of the restarted replica read the topic from its saved offsets
        lines = a2.read_log().splitlines()
        starts = [i for i, line in enumerate(lines) if '"read models from Kafka"' in line]
        self.assertEqual(len(starts), 2)
        opened = [json.loads(line) for line in lines[starts[1]:] if '"reading the topic"' in line]
        # one per model (the start-up's check that the topic is there comes before)
        self.assertEqual(len(opened), len(MODELS), opened)
        for o in opened:
            self.assertGreater(int(o["from_position"]), 0, o)
            self.assertGreater(int(o["partitions_from_checkpoint"]), 0, o)
        for r in (a2, b):
            self.assertEqual(r.stop(), 0)

        # restore: the topic gives back the writer's log, envelope for envelope
        self.assertEqual(w.stop(), 0)
        to = tempfile.mkdtemp(prefix="skald-restore-")
        self.dirs.append(to)
        out = restore("rep.events", to)
        self.assertEqual(out.returncode, 0, out.stderr)
        v = subprocess.run([SKALDCTL, "log", "verify", "--data", to], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        original, restored = log_dump(data), log_dump(to)
        self.assertEqual(len(restored), head)
        self.assertEqual(restored, original)
        print("test took %.1f s" % (time.time() - t0), file=sys.stderr)

    def test_2_restore_refuses_a_gap(self):
        w = self.writer("g")
        for i in range(12):
            st.register(w, "g%d" % i, quantity=i + 1)
        head = w.head()
        st.wait_for(lambda: st.metric(w, "skald_relay_published_position") >= head, 60,
                    "the relay to publish")
        self.assertEqual(w.stop(), 0)
        msgs = read_topic("g.events")
        self.assertEqual(len(msgs), head)
        # the same messages on three partitions, in position order as the relay produces
        # them, position 5 left out
        msgs.sort(key=lambda m: int(dict(m[1])["position"]))
        admin = AdminClient({"bootstrap.servers": BROKER.bootstrap})
        for f in admin.create_topics([NewTopic("gap.events", 3, 1)]).values():
            f.result(60)
        p = Producer({"bootstrap.servers": BROKER.bootstrap, "enable.idempotence": True})
        kept = 0
        for key, headers, value in msgs:
            if dict(headers)["position"] == b"5":
                continue
            p.produce("gap.events", value=value, key=key, headers=headers)
            kept += 1
        self.assertEqual(p.flush(60), 0)
        self.assertEqual(kept, head - 1)
        to = tempfile.mkdtemp(prefix="skald-restore-")
        self.dirs.append(to)
        out = restore("gap.events", to)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("position 5 is missing", out.stderr)
        self.assertFalse(os.path.exists(os.path.join(to, "log")), "a half-made log was left")
        self.assertEqual(os.listdir(to), [], "restore left files behind")
        # the whole topic restores
        out = restore("g.events", to)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(len(log_dump(to)), head)

    def test_3_usage_errors(self):
        d = tempfile.mkdtemp(prefix="skald-it-")
        self.dirs.append(d)
        cases = [
            (["--source", "kafka"], "--kafka-brokers"),
            (["--source", "kafka", "--kafka-brokers", BROKER.bootstrap, "--roles",
              "commands,projections"], "commands role"),
            (["--source", "kafka", "--kafka-brokers", BROKER.bootstrap, "--roles", "queries"],
             "projections"),
            (["--source", "disk"], "not log or kafka"),
        ]
        for args, said in cases:
            out = subprocess.run([st.SKALD, "serve", "--data", d, *args], capture_output=True,
                                 text=True, timeout=30)
            self.assertEqual(out.returncode, 2, (args, out.stderr))
            self.assertIn(said, out.stderr)
        self.assertFalse(os.path.exists(os.path.join(d, "log")))
        out = subprocess.run([SKALDCTL, "restore", "--brokers", "x", "--topic", "t", "--to", d],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("--from-kafka", out.stderr)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--skaldctl", required=True)
    args, rest = ap.parse_known_args()
    SKALDCTL = os.path.abspath(args.skaldctl)
    sys.argv = [sys.argv[0]] + rest
    st.main(globals())
