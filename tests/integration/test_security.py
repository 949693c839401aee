"""Tokens and roles (401, 403, admin), principal and traceparent kept in the events'
metadata, loopback-only without tokens, HTTPS with libmicrohttpd's TLS (curl and Python
talk to it), idle connections closed after --timeout."""
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
