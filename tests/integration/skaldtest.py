"""Shared helpers for the integration tests of `skald serve`: start a server on a fresh
data directory (or an existing one), talk HTTP to it, stop it. Standard library only;
run with /usr/bin/python3. Every wait is bounded."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKALD = None  # set by main() from --skald
SOURCE = os.environ.get("SKALD_SOURCE_DIR", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))


class Server:
    """One `skald serve` process. data: reuse a directory (restarts)."""

    def __init__(self, *extra, data=None, env=None):
        self.own_data = data is None
        self.data = data or tempfile.mkdtemp(prefix="skald-it-")
        self.port_file = os.path.join(self.data, "port")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.log_path = os.path.join(self.data, "serve.log")
        self.log = open(self.log_path, "ab")
        cmd = [SKALD, "serve", "--data", self.data, "--listen", "127.0.0.1:0",
               "--port-file", self.port_file, *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     env={**os.environ, **(env or {})})
        self.port = None
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("skald serve exited with %d:\n%s" % (
                    self.proc.returncode, self.read_log()))
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    break
            time.sleep(0.05)
        if not self.port:
            self.kill()
            raise RuntimeError("skald serve did not start in 30 s:\n" + self.read_log())

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """(status, headers dict lower-cased, parsed JSON or text)."""
        c = conn or self.conn()
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if conn is None:
            c.close()
        ctype = hdrs.get("content-type", "")
        if "json" in ctype and "ndjson" not in ctype:
            return r.status, hdrs, json.loads(data)
        return r.status, hdrs, data.decode("utf-8", "replace")

    def command(self, ctype, body, headers=None, conn=None):
        return self.request("POST", "/v1/commands/" + ctype, body, headers, conn)

    def head(self):
        s, _, m = self.request("GET", "/metrics")
        for line in m.splitlines():
            if line.startswith("skald_log_head_position "):
                return int(line.split()[1])
        raise AssertionError("no skald_log_head_position in /metrics")

    def stream(self, stream_id, headers=None):
        """Every event of a stream, following next_version."""
        events, frm = [], 1
        for _ in range(10000):
            s, _, b = self.request("GET", "/v1/streams/%s?from_version=%d&limit=1000" % (
                stream_id, frm), headers=headers)
            assert s == 200, (s, b)
            events += b["events"]
            if b["next_version"] is None:
                return events
            frm = b["next_version"]
        raise AssertionError("stream paging did not end")

    def stop(self, timeout=30):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("SIGTERM did not stop skald serve in %d s" % timeout)
        self.log.close()
        if self.proc.returncode != 0:  # say why, or CI shows only the status
            sys.stderr.write("skald serve exited with %d; the end of its log:\n%s\n" % (
                self.proc.returncode, self.read_log()[-4000:]))
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def cleanup(self):
        self.kill()
        if self.own_data:
            shutil.rmtree(self.data, ignore_errors=True)



def wait_for(condition, timeout_s, what):
    """Polls condition() until it is true; fails the test naming what after timeout_s.
    Tests wait for the state they need, never for a guessed time."""
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out after %d s waiting for %s" % (timeout_s, what))
        time.sleep(0.01)

def register(srv, sku, quantity=0):
    s, _, b = srv.command("RegisterProduct", {"sku": sku, "name": "n " + sku, "price_cents": 100})
    assert s == 200, (s, b)
    if quantity:
        s, _, b = srv.command("RestockProduct", {"sku": sku, "quantity": quantity})
        assert s == 200, (s, b)


def raw_request(port, data, timeout=10):
    """Sends raw bytes, returns what came back before close or timeout (bytes)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and len(out) > 4096:
                break
    except (socket.timeout, ConnectionResetError):
        pass
    sock.close()
    return out



def metric(srv, name, headers=None):
    """The first sample of metric `name` (plain or with labels) in /metrics, as an int when
    it is integral, else a float."""
    s, _, text = srv.request("GET", "/metrics", headers=headers)
    assert s == 200, (s, text)
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            value = float(line.rsplit(" ", 1)[1])
            return int(value) if value.is_integer() else value
    raise AssertionError("no %s in /metrics" % name)

def main(module_globals):
    import argparse
    import unittest
    ap = argparse.ArgumentParser()
    ap.add_argument("--skald", required=True)
    args, rest = ap.parse_known_args()
    global SKALD
    SKALD = os.path.abspath(args.skald)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module_globals["__name__"]])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
