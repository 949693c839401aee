"""16 clients race on one stream, each command carrying the version it read as
expected_version: exactly one winner per version, no gap, and every 200 is one event.
The server runs two HTTP threads, so the race is real on both cores; a second test runs
clients on separate streams at once and checks each stream is whole."""
import threading
import time
import unittest

import skaldtest
from skaldtest import Server


class Race(unittest.TestCase):
    def test_one_winner_per_version(self):
        srv = Server("--threads", "2")
        try:
            skaldtest.register(srv, "R")
            wins, conflicts, errors = [], [0], []
            lock = threading.Lock()
            deadline = time.time() + 60

            def client(n):
                c = srv.conn()
                version = 1
                for _ in range(60):  # attempts, bounded; and the deadline
                    if time.time() > deadline:
                        break
                    s, _, b = srv.command("RestockProduct", {"sku": "R", "quantity": 1,
                                                             "expected_version": version}, conn=c)
                    with lock:
                        if s == 200:
                            wins.append((b["events"][0]["version"], version, n))
                            version = b["events"][0]["version"]
                        elif s == 409:
                            conflicts[0] += 1
                            version = b["current_version"]
                        else:
                            errors.append((s, b))
                c.close()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(90)
            self.assertEqual(errors, [])
            self.assertGreater(conflicts[0], 0, "16 racers never conflicted: no race happened")
            versions = sorted(v for v, _, _ in wins)
            self.assertEqual(len(versions), len(set(versions)), "two winners for one version")
            for new, expected, _ in wins:
                self.assertEqual(new, expected + 1)
            events = srv.stream("product-R")
            self.assertEqual([e["version"] for e in events], list(range(1, len(events) + 1)))
            self.assertEqual(len(events), 1 + len(wins))
            self.assertEqual(versions, list(range(2, len(events) + 1)))
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()

    def test_streams_in_parallel(self):
        srv = Server("--threads", "2")
        try:
            for i in range(8):
                skaldtest.register(srv, "S%d" % i)
            oks = [0] * 8

            def client(n):
                c = srv.conn()
                for _ in range(50):
                    s, _, b = srv.command("RestockProduct", {"sku": "S%d" % n, "quantity": 2},
                                          conn=c)
                    oks[n] += s == 200
                c.close()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(90)
            self.assertEqual(oks, [50] * 8)
            for i in range(8):
                events = srv.stream("product-S%d" % i)
                self.assertEqual([e["version"] for e in events], list(range(1, 52)))
            s, _, b = srv.command("ReserveStock", {"sku": "S3", "order_id": "o", "quantity": 101})
            self.assertEqual((s, b["code"]), (422, "insufficient_stock"))
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.cleanup()


if __name__ == "__main__":
    skaldtest.main(globals())
