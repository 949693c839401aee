"""Bounded start-up: the idempotency reconciliation scans the log from a checkpoint that
moves with the log (a mark in the journal, written every few seconds), so a start after a
SIGKILL reads only the events since that mark, not every event since the last start; keyed
answers still replay after it."""
import glob
import json
import os
import time
import unittest

import skaldtest
from skaldtest import Server


def journal_mark(data):
    """The highest mark line {"p": N} in the idempotency journal, or -1."""
    best = -1
    for path in glob.glob(os.path.join(data, "idempotency", "journal-*.jsonl")):
        with open(path) as f:
            for line in f:
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                if "k" not in o and "p" in o:
                    best = max(best, o["p"])
    return best


def events_scanned(srv):
    """events_scanned of the last "idempotency keys loaded" line of the server's log."""
    value = None
    for line in srv.read_log().splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("msg") == "idempotency keys loaded":
            value = int(o["events_scanned"])
    return value


class Startup(unittest.TestCase):
    def test_start_after_sigkill_scans_a_bounded_tail(self):
        srv = Server()
        try:
            keyed = srv.command("RegisterProduct", {"sku": "K0", "name": "k", "price_cents": 1},
                                {"Idempotency-Key": "startup-1"})
            self.assertEqual(keyed[0], 200)
            for i in range(300):
                s, _, b = srv.command("RegisterProduct",
                                      {"sku": "P%d" % i, "name": "p", "price_cents": i})
                self.assertEqual(s, 200, b)
            head = srv.head()
            deadline = time.time() + 15
            while journal_mark(srv.data) < head and time.time() < deadline:
                time.sleep(0.1)
            self.assertGreaterEqual(journal_mark(srv.data), head,
                                    "the journal's mark did not reach the head in 15 s")
            data = srv.data
            srv.kill()
            srv = Server(data=data)
            srv.own_data = True
            self.assertEqual(events_scanned(srv), 0)  # was 301: every event since the start
            s, h, b = srv.command("RegisterProduct", {"sku": "K0", "name": "k", "price_cents": 1},
                                  {"Idempotency-Key": "startup-1"})
            self.assertEqual((s, b), (200, keyed[2]))
            self.assertEqual(h.get("idempotent-replayed"), "true")
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    skaldtest.main(globals())
