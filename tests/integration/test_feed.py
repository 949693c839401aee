"""The live feed, GET /v1/events/stream (docs/http-api.md, Live feed): events in order with
id = position and data = the /v1/events envelope; the filters; where a stream starts
(Last-Event-ID wins over from_position, else the head) and that a dropped connection
resumes with no gap and no duplicate; the heartbeat; overflow of a client that never
reads, while the server and other clients carry on; the stream limit (503); the token as
?access_token=, never in the log; role gating; bad parameters (400 naming them); SIGTERM
with streams open (exit 0, which under ASan also means no leak). Every wait is bounded."""
import json
import os
import socket
import tempfile
import time
import unittest

import skaldtest
from skaldtest import Server, wait_for

TOKEN = "feed-reader-0123456789"
TOKENS = "%s reader dora\nprod-0123456789abcdef producer alice\n" % TOKEN


class Sse:
    """One stream over a raw socket, HTTP/1.0 (no chunking): read_event() parses one
    message at a time, each read bounded by the socket timeout."""

    def __init__(self, port, query="", headers=None, rcvbuf=None, timeout=10):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        lines = ["GET /v1/events/stream%s HTTP/1.0" % query, "Host: 127.0.0.1"]
        lines += ["%s: %s" % kv for kv in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.closed = False
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        first, *rest = head.decode().split("\r\n")
        self.status = int(first.split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in rest)}

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            raise EOFError("the server closed the stream")
        self.buf += chunk

    def body(self):
        """The rest of a non-stream answer (a problem), parsed."""
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        return json.loads(self.buf)

    def read_message(self):
        """The next message as a dict of its fields; comments under ':'."""
        while b"\n\n" not in self.buf:
            self._fill()
        block, self.buf = self.buf.split(b"\n\n", 1)
        msg = {}
        for line in block.decode().split("\n"):
            key, _, value = line.partition(":")
            msg.setdefault(key, value[1:] if value.startswith(" ") else value)
        return msg

    def read_event(self):
        """The next message that is not a comment."""
        while True:
            m = self.read_message()
            if "" not in m:
                return m

    def events(self, count):
        out = []
        while len(out) < count:
            m = self.read_event()
            assert "event" not in m, m
            out.append((int(m["id"]), json.loads(m["data"])))
        return out

    def close(self):
        self.sock.close()


def restock(srv, sku, n):
    """n RestockProduct commands in one batch request; the positions of their events."""
    text = "\n".join(json.dumps({"type": "RestockProduct", "body": {"sku": sku, "quantity": 1}})
                     for _ in range(n)) + "\n"
    s, _, b = srv.request("POST", "/v1/commands:batch", text,
                          {"Content-Type": "application/x-ndjson"})
    assert s == 200, (s, b)
    out = [json.loads(l) for l in b.splitlines() if l.strip()]
    assert all(o["status"] == 200 for o in out), out
    return sorted(o["result"]["position"] for o in out)


def log_events(srv, frm, count):
    """The envelopes /v1/events gives from position frm."""
    s, _, b = srv.request("GET", "/v1/events?from_position=%d&limit=%d" % (frm, count))
    assert s == 200, (s, b)
    return b["events"]


class Feed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--feed-heartbeat-ms", "300")
        skaldtest.register(cls.srv, "f1")
        skaldtest.register(cls.srv, "f2")
        s, _, b = cls.srv.command("OpenCustomer", {"customer_id": "c1", "name": "c",
                                                   "credit_limit_cents": 100})
        assert s == 200, b

    @classmethod
    def tearDownClass(cls):
        try:
            assert cls.srv.stop() == 0, cls.srv.read_log()
        finally:
            cls.srv.cleanup()

    def test_from_zero_matches_events(self):
        c = Sse(self.srv.port, "?from_position=0")
        try:
            self.assertEqual(c.status, 200)
            self.assertTrue(c.headers["content-type"].startswith("text/event-stream"))
            self.assertEqual(c.headers["cache-control"], "no-cache")
            restock(self.srv, "f1", 5)
            head = self.srv.head()
            got = c.events(head)
            want = log_events(self.srv, 0, head)
            self.assertEqual([i for i, _ in got], list(range(head)))
            self.assertEqual([d for _, d in got], want)  # exactly the /v1/events envelope
        finally:
            c.close()

    def test_default_starts_at_head_and_continues_live(self):
        restock(self.srv, "f1", 3)
        head = self.srv.head()
        c = Sse(self.srv.port)
        try:
            self.assertEqual(c.read_message(), {"": "connected"})
            pos = restock(self.srv, "f2", 2)
            self.assertEqual(pos[0], head)  # nothing older than the head is sent
            self.assertEqual([i for i, _ in c.events(2)], pos)
            pos = restock(self.srv, "f2", 1)  # still live afterwards
            self.assertEqual([i for i, _ in c.events(1)], pos)
        finally:
            c.close()

    def test_filters(self):
        frm = self.srv.head()
        by_stream = Sse(self.srv.port, "?stream_id=product-f2&from_position=%d" % frm)
        by_prefix = Sse(self.srv.port, "?stream_prefix=customer-&from_position=%d" % frm)
        by_type = Sse(self.srv.port, "?type=ProductRegistered&from_position=%d" % frm)
        both = Sse(self.srv.port, "?stream_prefix=product-&type=ProductRestocked&from_position=%d"
                   % frm)
        try:
            restock(self.srv, "f1", 2)
            p2 = restock(self.srv, "f2", 2)
            s, _, b = self.srv.command("OpenCustomer", {"customer_id": "c2", "name": "c",
                                                       "credit_limit_cents": 5})
            self.assertEqual(s, 200, b)
            skaldtest.register(self.srv, "f3")
            reg = self.srv.head() - 1
            got = by_stream.events(2)
            self.assertEqual([i for i, _ in got], p2)
            self.assertTrue(all(d["stream_id"] == "product-f2" for _, d in got))
            self.assertEqual(by_prefix.events(1)[0][1]["stream_id"], "customer-c2")
            self.assertEqual(by_type.events(1)[0][0], reg)
            got = both.events(4)
            self.assertTrue(all(d["type"] == "ProductRestocked" for _, d in got))
            # nothing else came through: the next event of each is a later one
            p = restock(self.srv, "f2", 1)
            self.assertEqual(by_stream.events(1)[0][0], p[0])
        finally:
            for c in (by_stream, by_prefix, by_type, both):
                c.close()

    def test_resume_after_drop_no_gap_no_duplicate(self):
        frm = self.srv.head()
        positions = restock(self.srv, "f1", 40)
        c = Sse(self.srv.port, "?from_position=%d" % frm)
        first = c.events(15)
        c.close()  # dropped mid-stream
        more = restock(self.srv, "f1", 10)
        # Last-Event-ID wins over from_position (EventSource keeps the URL)
        c = Sse(self.srv.port, "?from_position=%d" % frm,
                headers={"Last-Event-ID": str(first[-1][0])})
        try:
            rest = c.events(len(positions) + len(more) - 15)
            ids = [i for i, _ in first + rest]
            self.assertEqual(ids, positions + more)
        finally:
            c.close()

    def test_heartbeat(self):
        c = Sse(self.srv.port, timeout=5)
        try:
            self.assertEqual(c.read_message(), {"": "connected"})
            t0 = time.time()
            self.assertEqual(c.read_message(), {"": "heartbeat"})  # --feed-heartbeat-ms 300
            self.assertEqual(c.read_message(), {"": "heartbeat"})
            self.assertLess(time.time() - t0, 3)
        finally:
            c.close()

    def test_bad_parameters(self):
        for query, headers, field in [
                ("?from_position=x", {}, "from_position"),
                ("?from_position=-1", {}, "from_position"),
                ("?from_position=999999999", {}, "from_position"),
                ("", {"Last-Event-ID": "abc"}, "Last-Event-ID"),
                ("?from_position=0", {"Last-Event-ID": "99999999"}, "Last-Event-ID"),
                ("?type=NoSuchEvent", {}, "type"),
                ("?stream_id=", {}, "stream_id"),
                ("?stream_prefix=" + "x" * 300, {}, "stream_prefix")]:
            c = Sse(self.srv.port, query, headers)
            try:
                self.assertEqual(c.status, 400, query)
                self.assertEqual(c.headers["content-type"], "application/problem+json")
                self.assertEqual(c.body()["field"], field, query)
            finally:
                c.close()

    def test_http11_chunked(self):
        """What EventSource does: HTTP/1.1, so the stream is chunked."""
        conn = self.srv.conn(timeout=10)
        try:
            conn.request("GET", "/v1/events/stream?from_position=0")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.readline(), b": connected\n")
            self.assertEqual(r.readline(), b"\n")
            self.assertEqual(r.readline(), b"id: 0\n")
            self.assertTrue(r.readline().startswith(b"data: {"))
        finally:
            conn.close()


class Limits(unittest.TestCase):
    """Servers of their own: a small buffer, a small limit, tokens, roles."""

    def start(self, *args, **kw):
        srv = Server(*args, **kw)
        self.addCleanup(srv.cleanup)
        return srv

    def stop(self, srv):
        self.assertEqual(srv.stop(), 0, srv.read_log())

    def test_overflow_of_a_client_that_never_reads(self):
        srv = self.start("--feed-buffer", "16384", "--feed-heartbeat-ms", "60000")
        skaldtest.register(srv, "o1")
        frm = srv.head()
        slow = Sse(srv.port, "?from_position=%d" % frm, rcvbuf=4096, timeout=15)
        good = Sse(srv.port, "?from_position=%d" % frm)
        try:
            # far more than the buffer and the sockets hold; the writers are not held up
            positions = []
            for _ in range(6):
                positions += restock(srv, "o1", 500)
            self.assertEqual([i for i, _ in good.events(len(positions))], positions)
            self.assertEqual(srv.head(), positions[-1] + 1)

            def overflowed():
                return "skald_feed_overflows_total 1\n" in srv.request("GET", "/metrics")[2]
            # a buffer left full for 2 s overflows
            wait_for(overflowed, 10, "the slow client's overflow")
            # now read the slow one: what was buffered, in order, then the overflow
            ids = []
            while True:
                m = slow.read_event()
                if m.get("event") == "overflow":
                    resume = json.loads(m["data"])["resume_from"]
                    break
                ids.append(int(m["id"]))
            self.assertGreater(len(ids), 0)
            self.assertLess(len(ids), len(positions))
            self.assertEqual(ids, positions[:len(ids)])
            self.assertEqual(resume, ids[-1] + 1)  # no gap, no duplicate on resume
            self.assertRaises(EOFError, slow.read_message)  # and the stream ended
            # the good client and the server carry on
            p = restock(srv, "o1", 1)
            self.assertEqual(good.events(1)[0][0], p[0])
            again = Sse(srv.port, "?from_position=%d" % resume)
            self.assertEqual(again.events(1)[0][0], resume)
            again.close()
        finally:
            slow.close()
            good.close()
        self.stop(srv)

    def test_stream_limit(self):
        srv = self.start("--feed-max", "2", "--feed-heartbeat-ms", "200")
        a, b = Sse(srv.port), Sse(srv.port)
        try:
            c = Sse(srv.port)
            self.assertEqual(c.status, 503)
            self.assertIn("retry-after", c.headers)
            self.assertEqual(c.body()["code"], "too_many_streams")
            c.close()
            # other routes are not affected
            self.assertEqual(srv.request("GET", "/healthz")[0], 200)
        finally:
            a.close()
            b.close()
        # a closed stream is noticed at its next write (here: a heartbeat), and its
        # place is free again

        def place_free():
            c = Sse(srv.port)
            ok = c.status == 200
            c.close()
            return ok
        wait_for(place_free, 10, "a stream's place to be free again")
        self.stop(srv)

    def test_access_token_and_roles(self):
        d = tempfile.mkdtemp(prefix="skald-feed-")
        tokens = os.path.join(d, "tokens")
        with open(tokens, "w") as f:
            f.write(TOKENS)
        os.chmod(tokens, 0o600)
        srv = self.start("--tokens", tokens, "--log-level", "debug")
        self.assertEqual(Sse(srv.port).status, 401)
        self.assertEqual(Sse(srv.port, "?access_token=wrong-0123456789abc").status, 401)
        c = Sse(srv.port, "?access_token=" + TOKEN)
        h = Sse(srv.port, headers={"Authorization": "Bearer " + TOKEN})
        try:
            self.assertEqual((c.status, h.status), (200, 200))
            s, _, b = srv.command("RegisterProduct", {"sku": "t1", "name": "t", "price_cents": 1},
                                  {"Authorization": "Bearer prod-0123456789abcdef"})
            self.assertEqual(s, 200, b)
            self.assertEqual(c.events(1)[0][1]["metadata"]["principal"], "alice")
            self.assertEqual(h.events(1)[0][0], 0)
            # other routes do not take a token from the URL
            s, _, _ = srv.request("GET", "/v1/events?access_token=" + TOKEN)
            self.assertEqual(s, 401)
        finally:
            c.close()
            h.close()
        self.stop(srv)
        log = srv.read_log()
        self.assertIn("feed: stream opened", log)  # debug lines were written
        self.assertNotIn(TOKEN, log)

    def test_roles_without_feed(self):
        srv = self.start("--roles", "commands,projections,queries")
        c = Sse(srv.port)
        try:
            self.assertEqual(c.status, 404)
            self.assertEqual(c.body()["code"], "not_served")
        finally:
            c.close()
        self.stop(srv)

    def test_feed_role_alone_follows_another_process(self):
        writer = self.start("--roles", "commands")
        feed = self.start("--roles", "feed", data=writer.data)
        c = Sse(feed.port, "?from_position=0")
        try:
            skaldtest.register(writer, "r1")
            self.assertEqual([i for i, _ in c.events(1)], [0])
        finally:
            c.close()
        self.stop(feed)
        self.stop(writer)

    def test_sigterm_with_streams_open(self):
        srv = self.start()
        skaldtest.register(srv, "s1")
        idle = Sse(srv.port)
        busy = Sse(srv.port, "?from_position=0")
        try:
            busy.events(1)
            self.assertEqual(srv.stop(), 0, srv.read_log())
            for c in (idle, busy):  # each stream ends, cleanly
                with self.assertRaises(EOFError):
                    while True:
                        c.read_message()
        finally:
            idle.close()
            busy.close()


if __name__ == "__main__":
    skaldtest.main(globals())
