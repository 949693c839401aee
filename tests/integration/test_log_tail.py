"""`skaldctl log tail` against a running `skald serve`: it prints every acknowledged event
(position and event_id from the command answers) in position order, the JSON lines equal
to what `log dump --json` prints; events posted after it started show up without a
restart; --stream filters; without --from it starts at the durable head; SIGINT and
SIGTERM end it with exit status 0; bad options exit 2 and a missing data directory 1.
Every wait is bounded."""
import argparse
import json
import os
import queue
import signal
import subprocess
import threading
import time
import unittest

import skaldtest
from skaldtest import Server

SKALDCTL = None  # set from --skaldctl
WAIT_S = 15  # the most any one event may take to reach tail


class Timeout(AssertionError):
    pass


def acked(answer):
    """[(position, event_id)] of a command answer."""
    return [(e["position"], e["event_id"]) for e in answer["events"]]


class Tail:
    """One `skaldctl log tail` child; a thread moves its stdout lines to a queue."""

    def __init__(self, data, *args):
        self.proc = subprocess.Popen([SKALDCTL, "log", "tail", "--data", data, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode())
        self.lines.put(None)  # end of output

    def take(self, n, timeout=WAIT_S):
        """The next n lines, waiting at most timeout seconds in all."""
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise Timeout("tail printed %d of %d lines in %d s: %r" % (
                    len(out), n, timeout, out)) from None
            if line is None:
                raise AssertionError("tail ended after %d of %d lines (status %s): %s" % (
                    len(out), n, self.proc.poll(), self.stderr()))
            out.append(line)
        return out

    def nothing_more(self, wait=0.3):
        """True if no line comes within wait seconds."""
        try:
            line = self.lines.get(timeout=wait)
        except queue.Empty:
            return True
        self.lines.put(line)
        return False

    def stop(self, sig, timeout=10):
        """Sends sig; the exit status."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tail did not end within %d s of signal %d" % (timeout, sig))

    def stderr(self):
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read().decode("utf-8", "replace")

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()


class LogTail(unittest.TestCase):
    def setUp(self):
        self.srv = Server()
        self.tails = []

    def tearDown(self):
        for t in self.tails:
            t.cleanup()
        self.srv.cleanup()

    def tail(self, *args):
        t = Tail(self.srv.data, *args)
        self.tails.append(t)
        return t

    def post(self, ctype, body):
        s, _, b = self.srv.command(ctype, body)
        self.assertEqual(s, 200, b)
        return acked(b)

    def register(self, sku):
        return self.post("RegisterProduct", {"sku": sku, "name": "n " + sku, "price_cents": 100})

    def restock(self, sku, quantity):
        return self.post("RestockProduct", {"sku": sku, "quantity": quantity})

    def dump_json(self):
        """`log dump --json` lines by position."""
        r = subprocess.run([SKALDCTL, "log", "dump", "--data", self.srv.data, "--json"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return {json.loads(l)["position"]: l for l in r.stdout.decode().splitlines(True)}

    def check(self, lines, expected):
        got = [(e["position"], e["event_id"]) for e in map(json.loads, lines)]
        self.assertEqual(got, expected)

    def test_follows_every_acknowledged_event_then_sigint(self):
        before = self.register("A") + self.restock("A", 3)
        t = self.tail("--from", "0", "--json")
        first = t.take(len(before))
        self.check(first, before)
        # posted while tail waits: it follows the live log, no restart
        live = []
        for i in range(5):
            live += self.restock("A", i + 1) if i % 2 else self.register("L%d" % i)
            self.check(t.take(1), live[-1:])
        self.assertTrue(t.nothing_more())
        self.assertEqual(t.stop(signal.SIGINT), 0)
        self.assertEqual(t.stderr(), "")
        # each line exactly as `log dump --json` prints it
        dump = self.dump_json()
        for line in first:
            self.assertEqual(line, dump[json.loads(line)["position"]])

    def test_stream_filter_then_sigterm(self):
        self.register("A")
        expected = self.register("B")
        t = self.tail("--from", "0", "--json", "--stream", "product-B")
        self.check(t.take(1), expected)
        for q in (1, 2, 3):
            self.restock("A", q)
            expected += self.restock("B", q)
        # every product-A event precedes the last product-B one, so none can come later
        self.check(t.take(3), expected[1:])
        self.assertTrue(t.nothing_more())
        self.assertEqual(t.stop(signal.SIGTERM), 0)

    def test_default_starts_at_the_durable_head(self):
        old = self.register("A") + self.restock("A", 1)
        t = self.tail()
        # tail gives no sign that it is ready: post until it prints (bounded)
        posted, lines, deadline = [], [], time.monotonic() + WAIT_S
        while not lines and time.monotonic() < deadline:
            posted += self.restock("A", 1)
            try:
                lines = t.take(1, timeout=0.2)
            except Timeout:
                pass
        self.assertTrue(lines, "tail printed nothing in %d s" % WAIT_S)
        positions = [p for p, _ in posted]
        shown = int(lines[0].split()[0])
        self.assertIn(shown, positions)
        self.assertGreater(shown, max(p for p, _ in old))
        # text lines: position, stream@version, type, time, payload
        self.assertRegex(lines[0], r"^%d +product-A@\d+ ProductRestocked \S+Z \{" % shown)
        rest = t.take(len([p for p in positions if p > shown]))
        self.assertEqual([int(l.split()[0]) for l in rest], [p for p in positions if p > shown])
        self.assertEqual(t.stop(signal.SIGINT), 0)

    def test_dump_text_escapes_control_characters(self):
        """issue 11 item 4: text output of `log dump` never hands the terminal a control
        character from the log (ESC, BEL, DEL, the C1 CSI), whatever a payload holds."""
        hostile = "x\u001b[2J\u0007\u007f\u0085\u009b31m\nend"
        self.post("RegisterProduct", {"sku": "ESC", "name": hostile, "price_cents": 1})
        r = subprocess.run([SKALDCTL, "log", "dump", "--data", self.srv.data],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split(b"\n")
        self.assertEqual(lines[-1], b"")
        for line in lines[:-1]:
            for b in line:
                self.assertTrue(0x20 <= b < 0x7f, "byte 0x%02x in %r" % (b, line))
        line = [l for l in lines if b"product-ESC@1" in l][0]
        self.assertIn(b"\\u001b[2j\\u0007\\u007f\\u0085\\u009b31m\\nend", line.lower())
        # --json keeps the exact text
        r = subprocess.run([SKALDCTL, "log", "dump", "--data", self.srv.data, "--json"],
                           capture_output=True, timeout=30)
        dumped = [json.loads(l) for l in r.stdout.split(b"\n") if l]
        self.assertIn(hostile, [e["payload"].get("name") for e in dumped])

    def test_errors(self):
        for args, status in ((["--bogus"], 2), (["--from", "x"], 2), (["--limit", "3"], 2)):
            r = subprocess.run([SKALDCTL, "log", "tail", "--data", self.srv.data, *args],
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode, status, (args, r.stderr))
            self.assertIn(b"skaldctl: ", r.stderr)
            self.assertEqual(r.stdout, b"")
        missing = os.path.join(self.srv.data, "missing")
        r = subprocess.run([SKALDCTL, "log", "tail", "--data", missing],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"cannot open the log", r.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--skaldctl", required=True)
    args, _ = ap.parse_known_args()
    SKALDCTL = os.path.abspath(args.skaldctl)
    skaldtest.main(globals())
