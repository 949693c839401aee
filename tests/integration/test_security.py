"""Tokens and roles (401, 403, admin), principal and traceparent kept in the events'
metadata, loopback-only without tokens, HTTPS with libmicrohttpd's TLS (curl and Python
talk to it; TLS 1.0/1.1 and weak ciphers refused), idle connections closed after
--timeout, HEAD on every GET route answered like GET without the body."""
import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import skaldtest
from skaldtest import Server

TOKENS = """# token roles principal
prod-0123456789abcdef producer alice
read-0123456789abcdef reader bob
admin-0123456789abcdef admin carol
prod2-0123456789abcdef producer dave
"""
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def bearer(t):
    return {"Authorization": "Bearer " + t}


class Security(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="skald-sec-")
        cls.tokens = os.path.join(cls.dir, "tokens")
        with open(cls.tokens, "w") as f:
            f.write(TOKENS)

    def test_roles(self):
        srv = Server("--tokens", self.tokens)
        try:
            body = {"sku": "A", "name": "a", "price_cents": 1}
            s, h, b = srv.command("RegisterProduct", body)
            self.assertEqual((s, b["code"]), (401, "unauthorized"))
            self.assertIn("Bearer", h["www-authenticate"])
            s, _, b = srv.command("RegisterProduct", body, bearer("prod-0123456789abcdeX"))
            self.assertEqual(s, 401)
            s, _, b = srv.command("RegisterProduct", body, {"Authorization": "Basic eDp5"})
            self.assertEqual(s, 401)
            s, _, b = srv.command("RegisterProduct", body, bearer("read-0123456789abcdef"))
            self.assertEqual((s, b["code"]), (403, "forbidden"))
            head = srv.head()
            self.assertEqual(head, 0)  # nothing refused reached the log
            h = bearer("prod-0123456789abcdef")
            h["traceparent"] = TRACE
            s, _, b = srv.command("RegisterProduct", body, h)
            self.assertEqual(s, 200, b)
            s, _, b = srv.request("GET", "/v1/streams/product-A", headers=bearer("prod-0123456789abcdef"))
            self.assertEqual(s, 403)
            s, _, b = srv.request("GET", "/v1/events", headers=bearer("read-0123456789abcdef"))
            self.assertEqual(s, 200)
            meta = b["events"][0]["metadata"]
            self.assertEqual(meta["principal"], "alice")
            self.assertEqual(meta["traceparent"], TRACE)
            s, _, b = srv.command("RestockProduct", {"sku": "A", "quantity": 1},
                                  bearer("admin-0123456789abcdef"))
            self.assertEqual(s, 200)
            events = srv.stream("product-A", headers=bearer("admin-0123456789abcdef"))
            self.assertEqual(events[1]["metadata"]["principal"], "carol")
            for path in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json"):
                self.assertEqual(srv.request("GET", path)[0], 200, path)
            # tokens never reach the log output
            self.assertNotIn("prod-0123456789abcdef", srv.read_log())
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_command_id_is_scoped_by_principal(self):
        """issue 11 item 6: a command_id replayed the first answer to any principal. Now,
        like Idempotency-Key, it is one key per principal: another principal's use of the
        same command_id is its own command, decided on its own."""
        srv = Server("--tokens", self.tokens)
        try:
            alice, dave = bearer("prod-0123456789abcdef"), bearer("prod2-0123456789abcdef")
            cid = "0b2f4c1e-8f1a-4a57-9d55-2d7c1a0e9b11"
            body = {"sku": "CID", "name": "n", "price_cents": 1, "command_id": cid}
            s, h, first = srv.command("RegisterProduct", body, alice)
            self.assertEqual(s, 200, first)
            self.assertNotIn("idempotent-replayed", h)
            # carol, same command_id and body: not alice's answer, her own decision
            carol = bearer("admin-0123456789abcdef")
            s, h, b = srv.command("RegisterProduct", body, carol)
            self.assertEqual((s, b.get("code")), (422, "already_exists"), b)
            self.assertNotIn("idempotent-replayed", h)
            # dave, same command_id, another body: not idempotency_key_reused, his command
            s, h, b = srv.command("RegisterProduct", dict(body, sku="CID2"), dave)
            self.assertEqual(s, 200, b)
            self.assertNotIn("idempotent-replayed", h)
            self.assertEqual(b["stream_id"], "product-CID2")
            # alice's retry still gets her first answer, byte for byte
            s, h, b = srv.command("RegisterProduct", body, alice)
            self.assertEqual(s, 200, b)
            self.assertEqual(h.get("idempotent-replayed"), "true")
            self.assertEqual(b, first)
            # and dave's retry his
            s, h, b = srv.command("RegisterProduct", dict(body, sku="CID2"), dave)
            self.assertEqual((s, h.get("idempotent-replayed")), (200, "true"), b)
            self.assertEqual(b["stream_id"], "product-CID2")
            self.assertEqual(srv.head(), 2)
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_a_token_listed_twice_refuses_start(self):
        """issue 11 item 6: a token listed twice silently took the later line's role."""
        path = os.path.join(self.dir, "tokens-twice")
        with open(path, "w") as f:
            f.write("# token roles principal\n"
                    "same-0123456789abcdef reader bob\n"
                    "other-0123456789abcdef producer alice\n"
                    "\n"
                    "same-0123456789abcdef admin mallory\n")
        data = tempfile.mkdtemp(prefix="skald-sec-")
        r = subprocess.run([skaldtest.SKALD, "serve", "--data", data, "--tokens", path,
                            "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("line 5", r.stderr)
        self.assertIn("line 2", r.stderr)
        self.assertNotIn("same-0123456789abcdef", r.stderr)  # never the secret itself

    def test_loopback_only_without_tokens(self):
        data = tempfile.mkdtemp(prefix="skald-sec-")
        r = subprocess.run([skaldtest.SKALD, "serve", "--data", data, "--listen", "0.0.0.0:0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--tokens", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(data, "log")))
        r = subprocess.run([skaldtest.SKALD, "serve", "--data", data, "--tokens", "/nonexistent",
                            "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(data, "log")))
        # with tokens a wildcard bind is allowed (we still only talk to loopback)
        srv = Server("--tokens", self.tokens, "--listen", "0.0.0.0:0")
        try:
            self.assertEqual(srv.request("GET", "/healthz")[0], 200)
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_tls(self):
        cert, key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        srv = Server("--tls-cert", cert, "--tls-key", key)
        try:
            r = subprocess.run(["curl", "-sS", "--cacert", cert, "-X", "POST", "-H",
                                "Content-Type: application/json", "-d",
                                '{"sku":"T","name":"t","price_cents":1}',
                                "https://localhost:%d/v1/commands/RegisterProduct" % srv.port],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('"stream_id":"product-T"', r.stdout)
            ctx = ssl.create_default_context(cafile=cert)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"GET /v1/streams/product-T HTTP/1.1\r\nHost: localhost\r\n"
                                b"Connection: close\r\n\r\n")
                    reply = b""
                    while True:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        reply += chunk
            self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply[:100])
            self.assertIn(b'"ProductRegistered"', reply)
            # plain HTTP to the TLS port gets no answer
            out = skaldtest.raw_request(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 5)
            self.assertNotIn(b"200", out)
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_tls_refuses_old_versions_and_weak_ciphers(self):
        cert, key = os.path.join(self.dir, "cert2.pem"), os.path.join(self.dir, "key2.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        srv = Server("--tls-cert", cert, "--tls-key", key)

        def handshake(version=None, ciphers=None):
            """The negotiated (version, cipher), or None when the server refused."""
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            # the client must be willing, or the test would prove nothing about the server
            ctx.set_ciphers((ciphers or "ALL") + ":@SECLEVEL=0")
            if version:
                ctx.minimum_version = ctx.maximum_version = version
            else:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
                    with ctx.wrap_socket(raw) as tls:
                        return tls.version(), tls.cipher()[0]
            except (ssl.SSLError, ConnectionResetError, OSError):
                return None

        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1, TLSv1_1
                old = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
            for v in old:
                self.assertIsNone(handshake(v), "%s was negotiated" % v)
            self.assertEqual(handshake(ssl.TLSVersion.TLSv1_2)[0], "TLSv1.2")
            self.assertEqual(handshake(ssl.TLSVersion.TLSv1_3)[0], "TLSv1.3")
            # TLS 1.2: CBC, SHA-1 and static-RSA key exchange refused, ECDHE + AEAD taken
            for weak in ("AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384",
                         "AES128-GCM-SHA256", "DHE-RSA-AES128-GCM-SHA256"):
                self.assertIsNone(handshake(ciphers=weak), weak)
            for strong in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                           "ECDHE-RSA-CHACHA20-POLY1305"):
                self.assertEqual(handshake(ciphers=strong), ("TLSv1.2", strong))
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()
        # a priority string GnuTLS rejects stops the start, naming the option
        r = subprocess.run([skaldtest.SKALD, "serve", "--data", tempfile.mkdtemp(prefix="skald-sec-"),
                            "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
                            "--tls-priorities", "NOT-A-PRIORITY"],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--tls-priorities", r.stderr)

    def test_head_answers_like_get_on_every_get_route(self):
        srv = Server()
        try:
            skaldtest.register(srv, "H", 3)
            s, _, b = srv.command("OpenCustomer", {"customer_id": "h", "name": "n",
                                                   "credit_limit_cents": 100})
            self.assertEqual(s, 200, b)
            with open(os.path.join(skaldtest.SOURCE, "docs", "openapi.json")) as f:
                paths = json.load(f)["paths"]
            fill = {"stream_id": "product-H", "name": "inventory", "file": "app.js",
                    "saga_id": "01a23000-0000-7000-8000-000000000000"}
            targets = []
            for path, ops in paths.items():
                if "get" not in ops:
                    continue
                for k, v in fill.items():
                    path = path.replace("{%s}" % k, v)
                self.assertNotIn("{", path, "no value to fill in " + path)
                targets.append(path)
            targets += ["/v1/streams/product-none", "/no/such/route", "/v1/noop",
                        "/v1/events?limit=1", "/v1/queries/inventory?sku=H"]
            self.assertGreater(len(targets), 20)
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            skip = {"date", "x-request-id", "content-length"}
            for path in targets:
                if path == "/v1/events/stream":
                    continue  # streamed: below
                with self.subTest(path):
                    for attempt in range(5):  # /metrics and status pages may change between
                        conn.request("GET", path)
                        g = conn.getresponse()
                        gbody = g.read()
                        conn.request("HEAD", path)
                        h = conn.getresponse()
                        self.assertEqual(h.read(), b"")
                        if int(h.getheader("content-length", "-1")) == len(gbody):
                            break
                    self.assertEqual(h.status, g.status, path)
                    self.assertEqual({k.lower(): v for k, v in h.getheaders()
                                      if k.lower() not in skip},
                                     {k.lower(): v for k, v in g.getheaders()
                                      if k.lower() not in skip}, path)
                    self.assertEqual(int(h.getheader("content-length")), len(gbody), path)
            # the same connection still frames answers right: no body was sent for a HEAD
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            self.assertEqual((r.status, r.read()), (200, b'{"status":"ok"}'))
            # the live feed: HEAD answers its headers and ends, closing the connection
            # (libmicrohttpd 0.9.75 would follow a HEAD answer of unknown length with a
            # last chunk, which a kept-alive client would take for the next answer)
            conn.request("HEAD", "/v1/events/stream")
            r = conn.getresponse()
            self.assertEqual((r.status, r.read()), (200, b""))
            self.assertEqual(r.getheader("content-type"), "text/event-stream")
            self.assertEqual(r.getheader("connection"), "close")
            conn.request("GET", "/healthz")
            self.assertEqual(conn.getresponse().read(), b'{"status":"ok"}')
            conn.close()
            # 405 names HEAD with GET
            s, h, _ = srv.request("POST", "/healthz")
            self.assertEqual((s, h["allow"]), (405, "GET, HEAD"))
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_idle_connection_times_out(self):
        srv = Server("--timeout", "2")
        try:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
            t0 = time.time()
            sock.sendall(b"POST /v1/commands/RestockProduct HTTP/1.1\r\nHost: x\r\n")  # and stall
            data = sock.recv(4096)  # the server closes: b"" (or an error status)
            waited = time.time() - t0
            sock.close()
            self.assertFalse(data.startswith(b"HTTP/1.1 2"))
            self.assertGreaterEqual(waited, 1.5)
            self.assertLess(waited, 12)
            self.assertEqual(srv.request("GET", "/healthz")[0], 200)
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()


if __name__ == "__main__":
    skaldtest.main(globals())
