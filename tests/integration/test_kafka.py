"""The relay against a real Apache Kafka broker (tools/kafka): every event reaches the
topic once, in version order per key, and decodes (Confluent wire format, python3-avro)
to the payload `skaldctl log dump --json` shows; a broker outage during load loses
nothing and duplicates nothing; a SIGKILL of `skald serve` during publication loses
nothing and duplicates only what the event_id/position headers let a consumer drop;
a second client (KafkaJS + avsc, test_kafka_js.mjs) decodes a mixed load and matches the
log dump; `skaldctl kafka republish --from P` publishes P.. a second time.

The broker is started once for the module and stopped at the end; each test publishes
to a topic of its own. Every wait is bounded. Scale with SKALD_KAFKA_EVENTS (default
100000 for the first test; the others use a fifth of it) and SKALD_KAFKA_OUTAGE_S
(default 30)."""
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skaldtest as st  # noqa: E402

import avro.io  # noqa: E402
import avro.schema  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402

SKALDCTL = None
KAFKA_TOOL = os.path.join(st.SOURCE, "tools", "kafka")
EVENTS = int(os.environ.get("SKALD_KAFKA_EVENTS", "100000"))
OUTAGE_S = float(os.environ.get("SKALD_KAFKA_OUTAGE_S", "30"))
PRODUCTS = 1000


class Broker:
    """The module's broker, in a directory of its own under /tmp."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="skald-kafka-")
        self.env = {**os.environ, "SKALD_KAFKA_DIR": self.dir}
        self.bootstrap = self._run("start", timeout=300)

    def _run(self, *args, timeout=120):
        out = subprocess.run([KAFKA_TOOL, *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError("tools/kafka %s failed:\n%s" % (" ".join(args), out.stderr))
        for line in out.stdout.splitlines():
            if line.startswith("KAFKA_BOOTSTRAP="):
                return line.split("=", 1)[1]
        return None

    def pause(self):
        """Stops the broker, keeping its data, so that resume brings the same one back."""
        self._run("stop", "--keep-data")

    def resume(self):
        self._run("start", timeout=300)

    def stop(self):
        self._run("stop")


BROKER = None


def setUpModule():
    global BROKER
    BROKER = Broker()


def tearDownModule():
    if BROKER:
        BROKER.stop()




def batch(srv, lines):
    body = "\n".join(json.dumps(x) for x in lines) + "\n"
    s, _, text = srv.request("POST", "/v1/commands:batch", body,
                             {"Content-Type": "application/x-ndjson"})
    assert s == 200, (s, text)
    for line in text.splitlines():
        assert json.loads(line)["status"] == 200, line


def load(srv, events, tag):
    """About `events` events over PRODUCTS streams: each product registered, then
    restocked in batches of 1,000 commands (one per product)."""
    products = min(PRODUCTS, events)
    batch(srv, [{"type": "RegisterProduct", "body": {"sku": "%s-%04d" % (tag, i), "name": "p",
                                                     "price_cents": 100}}
                for i in range(products)])
    done = products
    while done < events:
        n = min(products, events - done)
        batch(srv, [{"type": "RestockProduct", "body": {"sku": "%s-%04d" % (tag, i),
                                                        "quantity": 1}} for i in range(n)])
        done += n


def wait_published(srv, timeout_s):
    """Until the relay's checkpoint in memory reaches the log's head."""
    def caught_up():
        return st.metric(srv, "skald_relay_published_position") >= srv.head()
    st.wait_for(caught_up, timeout_s, "the relay to publish up to the head")


def read_topic(topic, timeout_s=120):
    """Every message of the topic, read from the beginning up to the high watermarks:
    a list of (partition, offset, key, headers dict, value)."""
    c = Consumer({"bootstrap.servers": BROKER.bootstrap, "group.id": "t-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=30)
        parts = sorted(md.topics[topic].partitions)
        high = {}
        for p in parts:
            _, high[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        nxt = {p: 0 for p in parts}
        out = []
        deadline = time.time() + timeout_s
        while any(nxt[p] < high[p] for p in parts):
            if time.time() > deadline:
                raise AssertionError("timed out reading %s: at %s of %s" % (topic, nxt, high))
            for m in c.consume(10000, 1.0):
                if m.error():
                    raise AssertionError("consumer error: %s" % m.error())
                hdr = {k: (v.decode() if v is not None else "") for k, v in (m.headers() or [])}
                out.append((m.partition(), m.offset(), m.key().decode(), hdr, m.value()))
                nxt[m.partition()] = m.offset() + 1
        return out
    finally:
        c.close()


def log_dump(data):
    out = subprocess.run([SKALDCTL, "log", "dump", "--data", data, "--json"], capture_output=True,
                         text=True, timeout=300, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def schemas_by_id(data):
    """The writer schemas by id, from `skaldctl schemas export` (what a consumer gets)."""
    out = subprocess.run([SKALDCTL, "schemas", "export", "--data", data], capture_output=True,
                         text=True, timeout=60, check=True)
    schemas = {}
    for line in out.stdout.splitlines():
        x = json.loads(line)
        assert x["subject"] == "skald.events-skald.events." + x["type"], x["subject"]
        assert x["body"]["schemaType"] == "AVRO" and x["body"]["id"] == x["id"]
        schemas[x["id"]] = avro.schema.parse(x["body"]["schema"])
    return schemas


def decode(value, schemas):
    """Confluent wire format -> (schema id, the payload as a dict)."""
    assert value[0] == 0, "magic byte %d" % value[0]
    sid = int.from_bytes(value[1:5], "big")
    reader = avro.io.DatumReader(schemas[sid])
    return sid, reader.read(avro.io.BinaryDecoder(io.BytesIO(value[5:])))


def expected_headers(ev):
    """Every header a message of this log dump line must have, and no other."""
    h = {"event_id": ev["event_id"], "position": str(ev["position"]),
         "stream_id": ev["stream_id"], "version": str(ev["version"]), "type": ev["type"],
         "occurred_at": str(ev["occurred_at_us"]), "command_id": ev["command_id"] or "",
         "correlation_id": ev["correlation_id"] or ""}
    h.update({"meta." + k: v for k, v in ev["metadata"].items()})
    return h


def match_log_dump(tc, first, data):
    """Every event of `skaldctl log dump --json` decodes (python3-avro, the exported
    schemas) from its message to the dump's payload, with the event's schema id and every
    envelope field as its headers (and no other header); nothing else is in the topic."""
    schemas = schemas_by_id(data)
    dump = log_dump(data)
    for ev in dump:
        hdr, value = first[ev["event_id"]][0]
        sid, payload = decode(value, schemas)
        tc.assertEqual(sid, ev["schema_id"])
        tc.assertEqual(payload, ev["payload"])
        tc.assertEqual(hdr, expected_headers(ev))
    tc.assertEqual(len(first), len(dump))
    return dump


def mixed_load(srv, orders):
    """Every event type the sample domain has: products, a customer, orders placed with a
    traceparent and a correlation id (their sagas reserve stock, authorize payment and
    confirm), some cancelled. Waits until the sagas are quiet (the head stops moving)."""
    for i in range(20):
        st.register(srv, "M-%02d" % i, 1000)
    s, _, body = srv.command("OpenCustomer", {"customer_id": "mc", "name": "m",
                                              "credit_limit_cents": 10 ** 9})
    assert s == 200, body
    for i in range(orders):
        hdrs = {"traceparent": "00-%032x-%016x-01" % (i + 1, i + 1),
                "X-Correlation-Id": str(uuid.uuid4())}
        s, _, body = srv.command("PlaceOrder", {"order_id": "mo-%d" % i, "customer_id": "mc",
                                                "lines": [{"sku": "M-%02d" % (i % 20),
                                                           "quantity": 1 + i % 3,
                                                           "unit_price_cents": 250}]}, hdrs)
        assert s == 200, body
    wait_quiet(srv)
    for i in range(0, orders, 5):  # a confirmed order refuses (422): that is fine too
        srv.command("CancelOrder", {"order_id": "mo-%d" % i, "reason": "test"})
    wait_quiet(srv)


def wait_quiet(srv):
    """Until the log's head has not moved for 2 s (the sagas have nothing left to do)."""
    last = [-1, time.time()]

    def quiet():
        h = srv.head()
        if h != last[0]:
            last[:] = [h, time.time()]
        return time.time() - last[1] > 2
    st.wait_for(quiet, 120, "the sagas to finish")


def skaldctl(*args, timeout=60):
    return subprocess.run([SKALDCTL, *args], capture_output=True, text=True, timeout=timeout)


def check_exactly_once_in_order(tc, msgs, head, allow_duplicates=False):
    """Every position 0..head-1 is in the topic; a second copy of an event (only with
    allow_duplicates) has the same headers and value as the first; per key, the first
    copies come in version order."""
    first = {}
    per_key = {}
    dups = 0
    for part, off, key, hdr, value in sorted(msgs, key=lambda m: (m[0], m[1])):
        eid = hdr["event_id"]
        if eid in first:
            dups += 1
            tc.assertTrue(allow_duplicates, "event %s published twice" % eid)
            tc.assertEqual(first[eid][0], (hdr, value), "a duplicate differs from the original")
            continue
        first[eid] = ((hdr, value), part)
        tc.assertEqual(key, hdr["stream_id"])
        prev = per_key.get(key)
        if prev is not None:
            tc.assertEqual(prev[0], part, "stream %s on two partitions" % key)
            tc.assertEqual(int(hdr["version"]), prev[1] + 1, "stream %s out of order" % key)
        per_key[key] = (part, int(hdr["version"]))
    positions = sorted(int(h["position"]) for (h, _), _ in first.values())
    tc.assertEqual(positions, list(range(head)), "positions missing or extra")
    return first, dups


class KafkaRelay(unittest.TestCase):
    def start(self, prefix, data=None, extra=()):
        srv = st.Server("--kafka-brokers", BROKER.bootstrap, "--kafka-topic-prefix", prefix,
                        *extra, data=data)
        return srv

    def test_1_every_event_once_in_order_and_decodable(self):
        srv = self.start("t1")
        try:
            t0 = time.time()
            load(srv, EVENTS, "A")
            head = srv.head()
            self.assertGreaterEqual(head, EVENTS)
            wait_published(srv, 240)
            print("published %d events in %.1f s" % (head, time.time() - t0), file=sys.stderr)
            s, _, ready = srv.request("GET", "/readyz")
            self.assertEqual(s, 200)
            self.assertEqual(ready["relay"]["state"], "running")
            self.assertEqual(ready["relay"]["lag_events"], 0)
            self.assertEqual(srv.stop(), 0)
            msgs = read_topic("t1.events")
            first, _ = check_exactly_once_in_order(self, msgs, head)
            match_log_dump(self, first, srv.data)
            # the checkpoint is at the head after a clean stop
            out = subprocess.run([SKALDCTL, "kafka", "status", "--data", srv.data, "--json"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            status = json.loads(out.stdout)
            self.assertEqual(status["topic"], "t1.events")
            self.assertEqual(status["checkpoint_position"], head)
            self.assertEqual(status["lag_events"], 0)
        finally:
            srv.cleanup()

    def test_2_broker_outage_loses_nothing(self):
        srv = self.start("t2")
        try:
            n = max(EVENTS // 5, 2000)
            load(srv, n // 2, "B")
            BROKER.pause()
            try:
                # commands go on while no broker answers, and the process stays ready
                t0 = time.time()
                load(srv, n - n // 2, "C")
                s, _, ready = srv.request("GET", "/readyz")
                self.assertEqual(s, 200)
                st.wait_for(lambda: srv.request("GET", "/readyz")[2]["relay"]["state"] ==
                            "broker_down", 60, "the relay to see the broker gone")
                self.assertGreater(st.metric(srv, "skald_relay_lag_events"), 0)
                time.sleep(max(0, OUTAGE_S - (time.time() - t0)))
            finally:
                BROKER.resume()
            head = srv.head()
            wait_published(srv, 240)
            s, _, ready = srv.request("GET", "/readyz")
            self.assertEqual(ready["relay"]["state"], "running")
            self.assertEqual(srv.stop(), 0)
            check_exactly_once_in_order(self, read_topic("t2.events"), head)
        finally:
            srv.cleanup()

    def test_3_sigkill_during_publication(self):
        srv = self.start("t3")
        data = srv.data
        try:
            n = max(EVENTS // 5, 2000)
            # SIGKILL in the middle of the load, while the relay publishes it
            errors = []

            def run():
                try:
                    load(srv, n, "D")
                except Exception as e:  # the server dies under it
                    errors.append(e)
            t = threading.Thread(target=run)
            t.start()
            st.wait_for(lambda: st.metric(srv, "skald_relay_published_position") >= n // 3, 120,
                        "the relay to publish a third of the load")
            srv.kill()
            t.join(60)
            srv2 = st.Server("--kafka-brokers", BROKER.bootstrap, "--kafka-topic-prefix", "t3",
                             data=data)
            try:
                load(srv2, 2000, "E")
                head = srv2.head()
                wait_published(srv2, 240)
                self.assertEqual(srv2.stop(), 0)
            finally:
                srv2.kill()
            _, dups = check_exactly_once_in_order(self, read_topic("t3.events"), head,
                                                  allow_duplicates=True)
            print("duplicates after SIGKILL: %d" % dups, file=sys.stderr)
        finally:
            srv.cleanup()

    def test_4_relay_publish_is_traced(self):
        """relay.publish (docs/tracing.md): one producer span per delivery, in the trace of
        the event it carries, with the messaging attributes and the broker's offset."""
        from test_tracing import Sink, TRACE, TRACE_ID
        sink = Sink()
        srv = self.start("t4", extra=("--trace-exporter", "zipkin", "--trace-endpoint",
                                      "http://127.0.0.1:%d/api/v2/spans" % sink.port))
        try:
            s, h, b = srv.command("RegisterProduct", {"sku": "traced", "name": "p",
                                                      "price_cents": 1}, {"traceparent": TRACE})
            self.assertEqual(s, 200, b)
            wait_published(srv, 120)

            def spans():
                return [sp for _, _, body in sink.taken() for sp in json.loads(body)]

            def publish_spans():
                return [sp for sp in spans() if sp["name"] == "relay.publish"
                        and sp["traceId"] == TRACE_ID]
            st.wait_for(lambda: publish_spans(), 20, "the relay.publish span")
            pub = publish_spans()
            self.assertEqual(len(pub), 1, pub)
            pub = pub[0]
            decide = [sp for sp in spans() if sp["name"] == "command.decide"
                      and sp["traceId"] == TRACE_ID]
            self.assertEqual(len(decide), 1)
            self.assertEqual(pub["kind"], "PRODUCER")
            self.assertEqual(pub["parentId"], decide[0]["id"])  # the event's context
            self.assertEqual(pub["tags"]["links"], "%s-%s" % (TRACE_ID, decide[0]["id"]))
            self.assertEqual(pub["tags"]["messaging.system"], "kafka")
            self.assertEqual(pub["tags"]["messaging.destination.name"], "t4.events")
            self.assertEqual(pub["tags"]["messaging.kafka.message.key"], "product-traced")
            self.assertNotIn("error", pub["tags"])
            # the broker's offset and partition on the span are where the message is
            msgs = [m for m in read_topic("t4.events") if m[2] == "product-traced"]
            self.assertEqual(len(msgs), 1)
            part, offset = msgs[0][0], msgs[0][1]
            self.assertEqual(int(pub["tags"]["messaging.destination.partition.id"]), part)
            self.assertEqual(int(pub["tags"]["messaging.kafka.offset"]), offset)
            self.assertEqual(msgs[0][3]["meta.traceparent"].split("-")[2], decide[0]["id"])
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.cleanup()
            sink.close()

    def test_6_kafkajs_consumer_matches_log_dump(self):
        """The second client: KafkaJS + avsc (tests/integration/test_kafka_js.mjs) decodes
        every message of a mixed load with the exported schemas and matches the log dump."""
        install = subprocess.run(
            ["bash", "-c", 'source "$1/tools/lib/common.sh" && source "$1/tools/lib/deps.sh" '
             '&& skald_npm_install "${SKALD_NPM_KAFKA[@]}"', "-", st.SOURCE],
            capture_output=True, text=True, timeout=300)
        self.assertEqual(install.returncode, 0, install.stdout + install.stderr)
        srv = self.start("t6")
        try:
            mixed_load(srv, 300)
            head = srv.head()
            wait_published(srv, 120)
            self.assertEqual(srv.stop(), 0)
            # the first client, python3-avro, on the same mixed load
            first, _ = check_exactly_once_in_order(self, read_topic("t6.events"), head)
            types = {ev["type"] for ev in match_log_dump(self, first, srv.data)}
            self.assertGreaterEqual(len(types), 8, types)  # a mixed load, not one type
            out = subprocess.run(
                ["node", os.path.join(st.SOURCE, "tests", "integration", "test_kafka_js.mjs"),
                 "--npm", os.path.join(st.SOURCE, ".cache", "npm"),
                 "--bootstrap", BROKER.bootstrap, "--topic", "t6.events", "--data", srv.data,
                 "--skaldctl", SKALDCTL], capture_output=True, text=True, timeout=300)
            print(out.stdout + out.stderr, file=sys.stderr)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("test_kafka_js: %d messages, %d events" % (head, head), out.stdout)
        finally:
            srv.cleanup()

    def test_5_republish_from_position(self):
        """`skaldctl kafka republish --from P`: refused while the relay runs and for a bad P;
        after it, the relay's next start publishes P.. a second time, nothing before P."""
        srv = self.start("t5")
        data = srv.data
        try:
            load(srv, 3000, "R")
            head = srv.head()
            wait_published(srv, 120)
            p = head // 3
            busy = skaldctl("kafka", "republish", "--data", data, "--from", str(p))
            self.assertEqual(busy.returncode, 1, busy.stdout)
            self.assertIn("a relay is running", busy.stderr)
            self.assertEqual(srv.stop(), 0)
            for bad, code, words in ((str(head + 1), 1, "beyond the log's head"),
                                     ("x", 2, "non-negative integer"),
                                     ("-1", 2, "non-negative integer")):
                out = skaldctl("kafka", "republish", "--data", data, "--from", bad)
                self.assertEqual(out.returncode, code, out.stdout + out.stderr)
                self.assertIn(words, out.stderr)
            self.assertIn("needs --from",
                          skaldctl("kafka", "republish", "--data", data).stderr)
            status = json.loads(skaldctl("kafka", "status", "--data", data, "--json").stdout)
            self.assertEqual(status["checkpoint_position"], head, "a refusal changed it")
            out = skaldctl("kafka", "republish", "--data", data, "--from", str(p))
            self.assertEqual(out.returncode, 0, out.stderr)
            status = json.loads(skaldctl("kafka", "status", "--data", data, "--json").stdout)
            self.assertEqual(status["checkpoint_position"], p)
            self.assertEqual(status["topic"], "t5.events")
            srv2 = self.start("t5", data=data)
            try:
                wait_published(srv2, 120)
                self.assertEqual(srv2.stop(), 0)
            finally:
                srv2.kill()
            msgs = read_topic("t5.events")
            first, dups = check_exactly_once_in_order(self, msgs, head, allow_duplicates=True)
            copies = {}
            for _, _, _, hdr, _ in msgs:
                copies[int(hdr["position"])] = copies.get(int(hdr["position"]), 0) + 1
            self.assertEqual(copies, {pos: 1 if pos < p else 2 for pos in range(head)})
            self.assertEqual(dups, head - p)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--skaldctl", required=True)
    args, rest = ap.parse_known_args()
    SKALDCTL = os.path.abspath(args.skaldctl)
    sys.argv = [sys.argv[0]] + rest
    st.main(globals())
