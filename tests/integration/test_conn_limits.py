"""Connections cannot lock everyone out (issue 11 item 1): a request's head and body must
arrive within --request-timeout however slowly the bytes trickle in; one address holds
at most --conn-per-ip connections; past --conn-max a reserve serves /healthz, /readyz and
valid tokens; request bodies together hold at most --pending-body-max bytes.

Small limits keep it cheap; every loop is bounded in count and time (the whole file runs
in well under 90 s). Attackers connect from 127.0.0.2..127.0.0.5, the well-behaved client
from 127.0.0.1 (all loopback)."""
import os
import selectors
import socket
import sys
import tempfile
import time
import unittest

import skaldtest
from skaldtest import Server, wait_for

TOKEN = "admin-0123456789abcdef"
REQUEST_TIMEOUT_S = 2
PER_IP = 16


def connect(port, source="127.0.0.1", timeout=5):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


def metric(srv, name):
    return skaldtest.metric(srv, name, {"Authorization": "Bearer " + TOKEN})


def closed_by_server(sock, wait_s):
    """True if the server closed sock (EOF or reset) within wait_s."""
    sock.settimeout(wait_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except socket.timeout:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def get_healthz(port):
    """One request on a new connection from 127.0.0.1: (status, seconds)."""
    t0 = time.perf_counter()
    with connect(port, timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ")[1]) if reply else 0, time.perf_counter() - t0


class Attackers:
    """count connections from source kept open: the trickling ones send one byte of a
    request head every trickle_s; the others send nothing. A connection the server
    closes is opened again (bounded by the caller's loop)."""

    def __init__(self, port, source, count, trickle_s):
        self.port, self.source, self.trickle_s = port, source, trickle_s
        self.sel = selectors.DefaultSelector()
        self.lifetimes = []  # (trickling, seconds open) of the connections the server closed
        for i in range(count):
            self.open(trickling=i % 2 == 0)

    def open(self, trickling):
        s = socket.socket()
        s.bind((self.source, 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", self.port))
        now = time.monotonic()
        self.sel.register(s, selectors.EVENT_READ,
                          {"trickling": trickling, "opened": now, "next": now, "sent": 0})

    def step(self):
        """Sends what is due and replaces the connections the server closed."""
        now = time.monotonic()
        for key, _ in self.sel.select(timeout=0):
            try:
                data = key.fileobj.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self.lifetimes.append((key.data["trickling"], now - key.data["opened"]))
                self.sel.unregister(key.fileobj)
                key.fileobj.close()
                self.open(key.data["trickling"])
        head = b"POST /v1/commands/RestockProduct HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000
        for key in list(self.sel.get_map().values()):
            d = key.data
            if d["trickling"] and now >= d["next"]:
                try:
                    key.fileobj.send(head[d["sent"] % len(head):][:1])
                    d["sent"] += 1
                except OSError:
                    pass
                d["next"] = now + self.trickle_s

    def close(self):
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


class ConnLimits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="skald-conn-")
        cls.tokens = os.path.join(cls.dir, "tokens")
        with open(cls.tokens, "w") as f:
            f.write("%s admin carol\n" % TOKEN)

    def server(self, *extra, env=None):
        # one HTTP thread: libmicrohttpd splits --conn-max + --conn-reserve between its
        # threads, and the reserve test wants the whole cap in one place
        return Server("--threads", "1", "--tokens", self.tokens, "--timeout", "30",
                      "--request-timeout", str(REQUEST_TIMEOUT_S), "--conn-per-ip", str(PER_IP),
                      *extra, env=env)

    def test_trickle_and_silent_connections_do_not_lock_out(self):
        srv = self.server("--conn-max", "64", "--conn-reserve", "8")
        attackers = None
        try:
            # 40 connections from one address, more than --conn-per-ip, half of them
            # sending a byte every 0.5 s (the idle --timeout of 30 s never fires)
            attackers = Attackers(srv.port, "127.0.0.2", 40, 0.5)
            latencies, statuses, open_max = [], [], 0
            end = time.monotonic() + 4 * REQUEST_TIMEOUT_S
            for i in range(5000):
                if time.monotonic() > end:
                    break
                attackers.step()
                status, seconds = get_healthz(srv.port)
                statuses.append(status)
                latencies.append(seconds)
                if i % 50 == 0:
                    open_max = max(open_max, metric(srv, "skald_http_connections"))
                time.sleep(0.005)
            self.assertGreater(len(statuses), 100)
            self.assertEqual(set(statuses), {200}, "the well-behaved client was refused")
            latencies.sort()
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            sys.stderr.write("well-behaved client: %d requests, p99 %.1f ms, max %.1f ms\n" % (
                len(latencies), p99 * 1000, latencies[-1] * 1000))
            self.assertLess(p99, 0.100, "p99 %.1f ms over %d requests" % (p99 * 1000,
                                                                           len(latencies)))
            # the attacker never held more than --conn-per-ip (+ the scrape, the client)
            self.assertLessEqual(open_max, PER_IP + 2)
            # trickling and silent connections alike were closed at the request deadline,
            # not later: bytes arriving do not extend it
            for trickling in (True, False):
                held = [t for tr, t in attackers.lifetimes if tr == trickling]
                long_held = [t for t in held if t > 1.0]  # accepted, not refused per IP
                self.assertTrue(long_held, "no %s connection was accepted and closed" %
                                ("trickling" if trickling else "silent"))
                self.assertLess(max(held), REQUEST_TIMEOUT_S + 1.5, held)
                self.assertGreater(min(long_held), REQUEST_TIMEOUT_S - 0.5, long_held)
            self.assertGreater(metric(srv, "skald_http_request_deadline_closes_total"), 0)
        finally:
            if attackers:
                attackers.close()
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_reserve_serves_probes_and_tokens(self):
        # the reserve's settings from the environment (the SKALD_* names of the flags)
        srv = self.server("--conn-max", "24", "--request-timeout", "20",
                          env={"SKALD_CONN_RESERVE": "4", "SKALD_RESERVE_TIMEOUT_MS": "500"})
        fillers = []
        try:
            # --conn-max silent connections from three addresses (within --conn-per-ip)
            for i in range(24):
                fillers.append(connect(srv.port, "127.0.0.%d" % (2 + i // 8)))
            wait_for(lambda: metric(srv, "skald_http_connections") >= 25, 10,
                     "the fillers to be accepted")
            # past the cap: the probes get in ...
            self.assertEqual(srv.request("GET", "/healthz")[0], 200)
            self.assertEqual(srv.request("GET", "/readyz")[0], 200)
            # ... a request without a token does not, and the connection is closed ...
            s, h, b = srv.request("POST", "/v1/noop")
            self.assertEqual((s, b["code"]), (503, "overloaded"), b)
            self.assertEqual(h.get("retry-after"), "1")
            self.assertEqual(h.get("connection"), "close")
            # ... a valid token does
            s, _, b = srv.request("POST", "/v1/noop", headers={"Authorization": "Bearer " + TOKEN})
            self.assertEqual(s, 200, b)
            # a silent reserve connection is closed at the short reserve deadline
            t0 = time.monotonic()
            with connect(srv.port) as silent:
                self.assertTrue(closed_by_server(silent, 5))
            self.assertLess(time.monotonic() - t0, 2.0)
            self.assertGreater(metric(srv, "skald_http_reserve_connections_total"), 0)
        finally:
            for f in fillers:
                f.close()
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_idle_and_trickling_closed_at_request_deadline(self):
        srv = self.server()
        try:
            silent = connect(srv.port)
            trickle = connect(srv.port)
            t0 = time.monotonic()
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
            closed_at = None
            for i in range(40):  # at most 40 x 0.25 s
                try:
                    trickle.send(head[i:i + 1])
                except OSError:
                    closed_at = time.monotonic() - t0
                    break
                if closed_by_server(trickle, 0.25):
                    closed_at = time.monotonic() - t0
                    break
            self.assertIsNotNone(closed_at, "a trickling connection stayed open 10 s")
            self.assertGreater(closed_at, REQUEST_TIMEOUT_S - 0.5)
            self.assertLess(closed_at, REQUEST_TIMEOUT_S + 1.5)
            self.assertTrue(closed_by_server(silent, 2))
            self.assertLess(time.monotonic() - t0, REQUEST_TIMEOUT_S + 2)
            silent.close()
            trickle.close()
            # keep-alive: a request answered, then idle past the deadline, is closed too
            with connect(srv.port) as ka:
                ka.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertIn(b" 200 ", ka.recv(4096))
                t1 = time.monotonic()
                self.assertTrue(closed_by_server(ka, 6))
                self.assertLess(time.monotonic() - t1, REQUEST_TIMEOUT_S + 1.5)
            # a request within the deadline still works
            self.assertEqual(srv.request("GET", "/healthz")[0], 200)
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_body_budget(self):
        srv = self.server("--body-max", "65536", "--pending-body-max", "200000")
        held = []
        try:
            auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            head = (b"POST /v1/commands/RegisterProduct HTTP/1.1\r\nHost: x\r\n" + auth +
                    b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
            # without a token the body is never read: 401 at the head, nothing held
            with connect(srv.port, "127.0.0.7") as s:
                s.sendall(head.replace(auth, b"") + b"{" + b" " * 999)
                self.assertIn(b" 401 ", s.recv(65536).split(b"\r\n")[0])
            self.assertEqual(metric(srv, "skald_http_body_bytes"), 0)
            # three unfinished 60,000-byte bodies fit in 200,000 bytes ...
            for i in range(3):
                s = connect(srv.port, "127.0.0.%d" % (2 + i))
                s.sendall(head + b"{" + b" " * 999)
                held.append(s)
            wait_for(lambda: metric(srv, "skald_http_body_bytes") >= 3 * 60000, 5,
                     "three bodies to be held")
            # ... a fourth is refused at its head, and the connection is closed
            with connect(srv.port, "127.0.0.5") as s:
                s.sendall(head + b"{")
                reply = s.recv(65536)
                self.assertIn(b" 503 ", reply.split(b"\r\n")[0])
                self.assertIn(b"overloaded", reply)
                self.assertTrue(closed_by_server(s, 3))
            # a chunked body grows until the budget is spent, is dropped, then 503
            with connect(srv.port, "127.0.0.6") as s:
                s.sendall(b"POST /v1/commands/RegisterProduct HTTP/1.1\r\nHost: x\r\n" + auth +
                          b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(6):
                    s.sendall(b"2000\r\n" + b" " * 0x2000 + b"\r\n")
                s.sendall(b"0\r\n\r\n")
                reply = s.recv(65536)
                self.assertIn(b" 503 ", reply.split(b"\r\n")[0])
            self.assertLessEqual(metric(srv, "skald_http_body_bytes"), 200000)
            self.assertGreaterEqual(metric(srv, "skald_http_body_refused_total"), 2)
            # at the request deadline the held bodies go, and the budget with them
            for s in held:
                self.assertTrue(closed_by_server(s, REQUEST_TIMEOUT_S + 2))
            wait_for(lambda: metric(srv, "skald_http_body_bytes") == 0, 5, "the budget back")
            s, _, b = srv.command("RegisterProduct", {"sku": "B", "name": "b", "price_cents": 1},
                                  {"Authorization": "Bearer " + TOKEN})
            self.assertEqual(s, 200, b)
        finally:
            for s in held:
                s.close()
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()


if __name__ == "__main__":
    skaldtest.main(globals())
