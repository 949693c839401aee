"""At least 40 malformed requests, each answered with a 4xx (problem+json where the server
can answer at all) and none changing the log: its head is the same before and after.

FRAMING is a table of raw requests whose head is ambiguous (RFC 9112: request smuggling,
obs-fold, bare CR, missing Host, ...): each gets its status, the connection is closed, and
nothing after the head is ever run, so a request hidden in a body never executes."""
import json
import socket
import time
import unittest

import skaldtest
from skaldtest import Server, raw_request

J = {"Content-Type": "application/json"}
LINE = {"sku": "S", "quantity": 1, "unit_price_cents": 1}


def order(**over):
    body = {"order_id": "m1", "customer_id": "c", "lines": [dict(LINE)]}
    body.update(over)
    return body


# (name, command, body (dict/str/bytes), extra headers, expected status, expected field)
CASES = [
    ("not json", "RestockProduct", "{sku:", None, 400, None),
    ("truncated json", "RestockProduct", '{"sku":"S","quantity":', None, 400, None),
    ("empty body", "RestockProduct", "", None, 400, None),
    ("array body", "RestockProduct", "[1,2]", None, 400, None),
    ("number body", "RestockProduct", "42", None, 400, None),
    ("string body", "RestockProduct", '"sku"', None, 400, None),
    ("null body", "RestockProduct", "null", None, 400, None),
    ("duplicate key", "RestockProduct", '{"sku":"S","sku":"T","quantity":1}', None, 400, None),
    ("missing sku", "RestockProduct", {"quantity": 1}, None, 400, "sku"),
    ("missing quantity", "RestockProduct", {"sku": "S"}, None, 400, "quantity"),
    ("unknown field", "RestockProduct", {"sku": "S", "quantity": 1, "colour": "red"}, None, 400,
     "colour"),
    ("quantity as string", "RestockProduct", {"sku": "S", "quantity": "1"}, None, 400, "quantity"),
    ("quantity as float", "RestockProduct", {"sku": "S", "quantity": 1.5}, None, 400, "quantity"),
    ("quantity as bool", "RestockProduct", {"sku": "S", "quantity": True}, None, 400, "quantity"),
    ("quantity null", "RestockProduct", {"sku": "S", "quantity": None}, None, 400, "quantity"),
    ("quantity zero", "RestockProduct", {"sku": "S", "quantity": 0}, None, 400, "quantity"),
    ("quantity negative", "RestockProduct", {"sku": "S", "quantity": -1}, None, 400, "quantity"),
    ("quantity 2^63", "RestockProduct", '{"sku":"S","quantity":9223372036854775808}', None, 400,
     None),
    ("quantity 1e400", "RestockProduct", '{"sku":"S","quantity":1e400}', None, 400, None),
    ("sku as number", "RestockProduct", {"sku": 7, "quantity": 1}, None, 400, "sku"),
    ("sku empty", "RestockProduct", {"sku": "", "quantity": 1}, None, 400, "sku"),
    ("sku too long", "RestockProduct", {"sku": "x" * 129, "quantity": 1}, None, 400, "sku"),
    ("sku as object", "RestockProduct", {"sku": {"a": 1}, "quantity": 1}, None, 400, "sku"),
    ("negative price", "RegisterProduct", {"sku": "S", "name": "n", "price_cents": -5}, None, 400,
     "price_cents"),
    ("negative credit", "OpenCustomer", {"customer_id": "c", "name": "n",
                                         "credit_limit_cents": -1}, None, 400,
     "credit_limit_cents"),
    ("zero amount", "AuthorizePayment", {"customer_id": "c", "order_id": "o",
                                         "amount_cents": 0}, None, 400, "amount_cents"),
    ("no lines", "PlaceOrder", order(lines=[]), None, 400, "lines"),
    ("101 lines", "PlaceOrder", order(lines=[dict(LINE)] * 101), None, 400, "lines"),
    ("1000 lines", "PlaceOrder", order(lines=[dict(LINE)] * 1000), None, 400, "lines"),
    ("line quantity 0", "PlaceOrder", order(lines=[{**LINE, "quantity": 0}]), None, 400,
     "lines[0].quantity"),
    ("line price negative", "PlaceOrder", order(lines=[dict(LINE), {**LINE, "unit_price_cents": -1}]),
     None, 400, "lines[1].unit_price_cents"),
    ("line missing sku", "PlaceOrder", order(lines=[{"quantity": 1, "unit_price_cents": 1}]), None,
     400, "lines[0].sku"),
    ("line unknown field", "PlaceOrder", order(lines=[{**LINE, "gift": True}]), None, 400,
     "lines[0].gift"),
    ("lines not array", "PlaceOrder", order(lines={"sku": "S"}), None, 400, "lines"),
    ("invalid utf-8", "RestockProduct", b'{"sku":"\xff\xfe","quantity":1}', None, 400, None),
    ("NUL in string", "RestockProduct", '{"sku":"a\\u0000b","quantity":1}', None, 400, None),
    ("deep nesting", "RestockProduct", "[" * 100000 + "]" * 100000, None, 400, None),
    ("expected_version negative", "RestockProduct", {"sku": "S", "quantity": 1,
                                                     "expected_version": -1}, None, 400,
     "expected_version"),
    ("expected_version string", "RestockProduct", {"sku": "S", "quantity": 1,
                                                   "expected_version": "1"}, None, 400,
     "expected_version"),
    ("command_id not uuid", "RestockProduct", {"sku": "S", "quantity": 1, "command_id": "abc"},
     None, 400, "command_id"),
    ("bad If-Match", "RestockProduct", {"sku": "S", "quantity": 1}, {"If-Match": "W/\"1\""}, 400,
     "If-Match"),
    ("If-Match negative", "RestockProduct", {"sku": "S", "quantity": 1}, {"If-Match": "-3"}, 400,
     "If-Match"),
    ("empty Idempotency-Key", "RestockProduct", {"sku": "S", "quantity": 1},
     {"Idempotency-Key": ""}, 400, "Idempotency-Key"),
    ("1000-char Idempotency-Key", "RestockProduct", {"sku": "S", "quantity": 1},
     {"Idempotency-Key": "k" * 1000}, 400, "Idempotency-Key"),
    ("Idempotency-Key with space", "RestockProduct", {"sku": "S", "quantity": 1},
     {"Idempotency-Key": "a b"}, 400, "Idempotency-Key"),
    ("bad traceparent", "RestockProduct", {"sku": "S", "quantity": 1},
     {"traceparent": "00-xyz-01"}, 400, "traceparent"),
    ("zero trace id", "RestockProduct", {"sku": "S", "quantity": 1},
     {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"}, 400, "traceparent"),
    ("bad X-Correlation-Id", "RestockProduct", {"sku": "S", "quantity": 1},
     {"X-Correlation-Id": "not-a-uuid"}, 400, "X-Correlation-Id"),
    ("wrong content type", "RestockProduct", {"sku": "S", "quantity": 1},
     {"Content-Type": "text/plain"}, 415, None),
    ("no content type", "RestockProduct", '{"sku":"S","quantity":1}', {"Content-Type": ""}, 415,
     None),
    # issue 11 item 4: ids outside the id alphabet (events/events.h EV_ID_CHARS) are refused
    # at the command, naming the field, wherever the field sits
    ("sku with slash", "RegisterProduct", {"sku": "a/b", "name": "n", "price_cents": 1}, None,
     400, "sku"),
    ("sku with escape sequence", "RegisterProduct", {"sku": "\u001b[2J", "name": "n",
                                                     "price_cents": 1}, None, 400, "sku"),
    ("sku with bell", "RestockProduct", {"sku": "S\u0007", "quantity": 1}, None, 400, "sku"),
    ("sku with newline", "RestockProduct", {"sku": "S\nT", "quantity": 1}, None, 400, "sku"),
    ("sku with space", "RestockProduct", {"sku": "S T", "quantity": 1}, None, 400, "sku"),
    ("sku with percent", "RestockProduct", {"sku": "S%2fT", "quantity": 1}, None, 400, "sku"),
    ("sku with DEL", "RestockProduct", {"sku": "S\u007f", "quantity": 1}, None, 400, "sku"),
    ("sku with C1 control", "RestockProduct", {"sku": "S\u0085", "quantity": 1}, None, 400,
     "sku"),
    ("sku not ascii", "RestockProduct", {"sku": "S\u00e9", "quantity": 1}, None, 400, "sku"),
    ("sku with question mark", "RestockProduct", {"sku": "S?x=1", "quantity": 1}, None, 400,
     "sku"),
    ("sku with hash", "RestockProduct", {"sku": "S#x", "quantity": 1}, None, 400, "sku"),
    ("sku with backslash", "RestockProduct", {"sku": "S\\T", "quantity": 1}, None, 400, "sku"),
    ("customer_id with slash", "OpenCustomer", {"customer_id": "../x", "name": "n",
                                                "credit_limit_cents": 1}, None, 400,
     "customer_id"),
    ("order_id with newline", "ReserveStock", {"sku": "S", "order_id": "o\n1", "quantity": 1},
     None, 400, "order_id"),
    ("line sku with slash", "PlaceOrder", order(lines=[dict(LINE), {**LINE, "sku": "x/y"}]), None,
     400, "lines[1].sku"),
    ("order_id with tab", "PlaceOrder", order(order_id="m\t1"), None, 400, "order_id"),
    # issue 11 item 2: a sum past 2^63-1 is a 422 overflow naming the field, nothing appended
    ("restock past 2^63-1", "RestockProduct", {"sku": "S", "quantity": 9223372036854775807},
     None, 422, "quantity"),
    ("order total past 2^63-1", "PlaceOrder",
     order(lines=[dict(LINE), {**LINE, "quantity": 2, "unit_price_cents": 4611686018427387904}]),
     None, 422, "lines[1]"),
    ("unknown command", "DropTables", {"sku": "S"}, None, 404, "type"),
    ("command name too long", "X" * 500, {"sku": "S"}, None, 404, None),
]


B = b'{"sku":"S","quantity":1}'
HIDDEN_BODY = b'{"sku":"SMUG","name":"smuggled","price_cents":1}'
HIDDEN = (b"POST /v1/commands/RegisterProduct HTTP/1.1\r\nHost: x\r\n"
          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(HIDDEN_BODY)
          + HIDDEN_BODY)
POST = b"POST /v1/commands/RestockProduct HTTP/1.1\r\nContent-Type: application/json\r\n"


def cl(n):
    return b"Content-Length: %d\r\n" % n


# (name, raw request, status, field named in the problem (or None), answered by Skald with
# problem+json (False: libmicrohttpd refuses it first, with its own page), connection closed)
FRAMING = [
    ("two Content-Length, short first: smuggles", POST + b"Host: x\r\n" + cl(len(B)) +
     cl(len(B) + len(HIDDEN)) + b"\r\n" + B + HIDDEN, 400, "Content-Length", True, True),
    ("two Content-Length, long first: smuggles", POST + b"Host: x\r\n" + cl(len(B) + len(HIDDEN))
     + cl(len(B)) + b"\r\n" + B + HIDDEN, 400, "Content-Length", True, True),
    ("two equal Content-Length", POST + b"Host: x\r\n" + cl(len(B)) + cl(len(B)) + b"\r\n" + B,
     400, "Content-Length", True, True),
    ("Content-Length as a list", POST + b"Host: x\r\nContent-Length: %d, %d\r\n\r\n" % (
        len(B), len(B)) + B, 400, None, False, True),
    ("Content-Length with a sign", POST + b"Host: x\r\nContent-Length: +%d\r\n\r\n" % len(B) + B,
     400, None, False, True),
    ("chunked and Content-Length: smuggles", POST + b"Host: x\r\nTransfer-Encoding: chunked\r\n"
     + cl(len(B) + 7) + b"\r\n%x\r\n" % len(B) + B + b"\r\n0\r\n\r\n" + HIDDEN, 400,
     "Transfer-Encoding", True, True),
    ("Content-Length and chunked: smuggles", POST + b"Host: x\r\n" + cl(5) +
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN, 400, "Transfer-Encoding", True,
     True),
    ("Transfer-Encoding twice", POST + b"Host: x\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding", True, True),
    ("Transfer-Encoding gzip", POST + b"Host: x\r\nTransfer-Encoding: gzip\r\n\r\n" + B, 501,
     "Transfer-Encoding", True, True),
    ("Transfer-Encoding on HTTP/1.0", POST.replace(b"1.1", b"1.0") +
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding", True, True),
    ("HTTP/1.1 without Host", POST + cl(len(B)) + b"\r\n" + B, 400, "Host", True, True),
    ("two Host", POST + b"Host: x\r\nHost: y\r\n" + cl(len(B)) + b"\r\n" + B, 400, "Host", True,
     True),
    ("two Authorization", POST + b"Host: x\r\nAuthorization: Bearer a\r\n"
     b"Authorization: Bearer b\r\n" + cl(len(B)) + b"\r\n" + B, 400, "Authorization", True,
     True),
    ("obs-fold", POST + b"Host: x\r\nX-Note: a\r\n  folded\r\n" + cl(len(B)) + b"\r\n" + B, 400,
     None, True, True),
    ("obs-fold onto Content-Length: smuggles", POST + b"Host: x\r\n" + cl(len(B)) +
     b" %d\r\n\r\n" % len(HIDDEN) + B + HIDDEN, 400, None, True, True),
    ("obs-fold as the first field", POST + b" X-Note: a\r\nHost: x\r\n" + cl(len(B)) + b"\r\n" + B,
     400, None, True, True),
    ("bare CR in a value", POST + b"Host: x\rX-Hidden: 1\r\n" + cl(len(B)) + b"\r\n" + B, 400,
     "Host", True, True),
    ("space before the colon", POST + b"Host: x\r\nContent-Length : %d\r\n\r\n" % len(B) + B, 400,
     None, True, True),
    ("control character in a name", POST + b"Host: x\r\nX-\x01A: b\r\n" + cl(len(B)) + b"\r\n" +
     B, 400, None, True, True),
    ("empty field name", POST + b"Host: x\r\n: b\r\n" + cl(len(B)) + b"\r\n" + B, 400, None, True,
     True),
    ("empty field name ends the head: smuggles", b"GET /healthz HTTP/1.1\r\nHost: x\r\n: x\r\n" +
     HIDDEN, 400, None, True, True),
    ("lone colon line ends the head: smuggles", b"GET /healthz HTTP/1.1\r\nHost: x\r\n:\r\n\r\n" +
     HIDDEN, 400, None, True, True),
    ("empty field name first", b"GET /healthz HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n" + HIDDEN, 400,
     None, True, True),
    ("repeated query parameter", b"GET /v1/events?limit=1&limit=2000 HTTP/1.1\r\nHost: x\r\n"
     b"Connection: close\r\n\r\n", 400, "limit", True, True),
    ("repeated query parameter, stream", b"GET /v1/streams/product-S?from_version=1&"
     b"from_version=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, "from_version",
     True, True),
]


def exchange(port, data, wait_s=5):
    """Sends data on a new connection; (first response's status, headers, body, whatever
    came after it, closed by the server)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait_s)
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out, closed = b"", False
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            out += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    sock.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1]) if lines[0].startswith(b"HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    n = int(headers.get("content-length", "0"))
    return status, headers, rest[:n], rest[n:], closed


class Malformed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        skaldtest.register(cls.srv, "S", 5)
        s, _, b = cls.srv.command("OpenCustomer", {"customer_id": "c", "name": "n",
                                                   "credit_limit_cents": 100})
        assert s == 200, b

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0
        cls.srv.cleanup()

    def test_each_case_is_4xx_and_changes_nothing(self):
        self.assertGreaterEqual(len(CASES), 40)
        head = self.srv.head()
        for name, ctype, body, headers, status, field in CASES:
            with self.subTest(name):
                h = dict(J)
                h.update(headers or {})
                if h.get("Content-Type") == "":
                    del h["Content-Type"]
                if isinstance(body, dict):
                    body = json.dumps(body)
                s, rh, b = self.srv.request("POST", "/v1/commands/" + ctype, body, h)
                self.assertEqual(s, status, b)
                self.assertEqual(rh["content-type"], "application/problem+json")
                self.assertEqual(b["status"], status)
                self.assertTrue(b["type"].endswith("/" + b["code"]))
                if field:
                    self.assertEqual(b.get("field"), field, b)
        self.assertEqual(self.srv.head(), head)

    def test_paths_that_cannot_name_anything(self):
        """issue 11 item 4: invalid UTF-8 in a path was a 500 "out of memory" in text/plain,
        and %00 cut the id short (product-S%00zzz read product-S)."""
        head = self.srv.head()
        for path in ("/v1/streams/%ff", "/v1/streams/product-%c3%28", "/v1/streams/%ed%a0%80",
                     "/v1/streams/%f8%88%80%80%80", "/v1/streams/%c0%af",
                     "/v1/streams/product-S%00zzz", "/v1/streams/%00",
                     "/v1/streams/product-S%0a", "/v1/streams/product-S%1b%5b2J",
                     "/v1/streams/product-S%7f", "/v1/streams/product-S%c2%85",
                     "/v1/queries/%ff", "/v1/projections/%00x", "/dashboard/%ff",
                     "/nowhere/%ff", "/v1/commands/Restock%00Product"):
            with self.subTest(path):
                method = "POST" if path.startswith("/v1/commands/") else "GET"
                body = '{"sku":"S","quantity":1}' if method == "POST" else None
                s, h, b = self.srv.request(method, path, body, J if body else None)
                self.assertEqual(s, 400, b)
                self.assertEqual(h["content-type"], "application/problem+json")
                self.assertEqual(b["code"], "invalid_path")
                self.assertEqual(b["field"], "path")
        # a %00 in a query argument stays visible and fails that parameter's own check
        s, _, b = self.srv.request("GET", "/v1/streams/product-S?limit=1%00")
        self.assertEqual(s, 400, b)
        self.assertEqual(b["field"], "limit")
        # what the alphabet allows reads back through a URL as written
        for sku in ("a-b.c_d~e", "x!$&'()*+,;=:@y"):
            s, _, b = self.srv.command("RegisterProduct", {"sku": sku, "name": "n",
                                                           "price_cents": 1})
            self.assertEqual(s, 200, b)
            s, _, b = self.srv.request("GET", "/v1/streams/" + b["stream_id"])
            self.assertEqual(s, 200, b)
            self.assertEqual(b["version"], 1)
            self.assertEqual(b["events"][0]["payload"]["sku"], sku)
        self.assertEqual(self.srv.head(), head + 2)
    def test_framing_is_strict(self):
        head = self.srv.head()
        for name, raw, status, field, ours, closes in FRAMING:
            with self.subTest(name):
                s, h, body, after, closed = exchange(self.srv.port, raw)
                self.assertEqual(s, status, body[:300])
                if ours:
                    self.assertEqual(h["content-type"], "application/problem+json")
                    problem = json.loads(body)
                    self.assertEqual(problem["status"], status)
                    self.assertEqual(problem.get("field"), field, problem)
                if closes:
                    self.assertTrue(closed, "the connection stayed open")
                if closes and ours:  # (libmicrohttpd 0.9.75 sends its own page's head twice)
                    self.assertEqual(after, b"", "a second answer: the hidden request ran")
        # nothing ran: neither the framed request nor the one hidden in its body
        self.assertEqual(self.srv.head(), head)
        self.assertEqual(self.srv.request("GET", "/v1/streams/product-SMUG")[2].get("events", []),
                         [])

    def test_bare_lf_is_accepted(self):
        # RFC 9112 section 2.2: a recipient MAY take a bare LF as a line end (libmicrohttpd
        # does); the request is read as if it had CRLF
        s, h, body, _, _ = exchange(self.srv.port, b"GET /healthz HTTP/1.1\nHost: x\n"
                                                   b"Connection: close\n\n")
        self.assertEqual((s, json.loads(body)), (200, {"status": "ok"}))
        # and a well-framed request on a kept-alive connection is answered twice
        s, _, body, after, _ = exchange(self.srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
        self.assertEqual(s, 200)
        self.assertIn(b"HTTP/1.1 200", after)

    def test_hostile_transport(self):
        head = self.srv.head()
        port = self.srv.port
        # 100 MB announced: refused from Content-Length before the body is read
        t0 = time.time()
        out = raw_request(port, b"POST /v1/commands/RestockProduct HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
                          + b"{" * 65536)
        self.assertIn(b" 413 ", out.split(b"\r\n")[0])
        self.assertLess(time.time() - t0, 10)
        # 100 MB streamed without a length (chunked): read, dropped, then 413
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"POST /v1/commands/RestockProduct HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b"7" * 0x100000 + b"\r\n"
        sent = 0
        try:
            for _ in range(100):
                sock.sendall(chunk)
                sent += 1
            sock.sendall(b"0\r\n\r\n")
            reply = sock.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            reply = b" 413 "  # closed while we still sent: also refused
        sock.close()
        self.assertIn(b" 413 ", reply.split(b"\r\n")[0] if b"\r\n" in reply else reply)
        # a 64 KiB header and thousands of headers: the buffer is bounded (431, or closed)
        for req in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
                    b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n"):
            out = raw_request(port, req)
            status_line = out.split(b"\r\n")[0]
            self.assertTrue(out == b"" or b" 431 " in status_line or b" 400 " in status_line
                            or b" 413 " in status_line, status_line)
        # garbage instead of HTTP
        out = raw_request(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        self.assertTrue(out == b"" or out.split(b" ")[1].startswith(b"4"), out[:80])
        self.assertEqual(self.srv.head(), head)
        self.assertEqual(self.srv.request("GET", "/healthz")[0], 200)


if __name__ == "__main__":
    skaldtest.main(globals())
