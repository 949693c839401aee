"""Restarts: idempotency keys (header and command_id) replay the first answer after a
SIGTERM restart and after a SIGKILL, also when the journal is gone (rebuilt from the log);
a server killed with SIGKILL right after acknowledging commands has every acknowledged
event after restart; SIGTERM drains and exits 0; a snapshot-based load after restart
equals the events."""
import os
import threading
import unittest
import uuid

import skaldtest
from skaldtest import Server


class Restart(unittest.TestCase):
    def setUp(self):
        self.srv = Server("--snapshot-every", "5")

    def tearDown(self):
        self.srv.cleanup()

    def restart(self, how):
        data = self.srv.data
        if how == "term":
            self.assertEqual(self.srv.stop(), 0)
        else:
            self.srv.kill()
        self.srv = Server("--snapshot-every", "5", data=data)
        self.srv.own_data = True

    def keyed(self):
        skaldtest.register(self.srv, "K", 1)
        first = self.srv.command("RestockProduct", {"sku": "K", "quantity": 4},
                                 {"Idempotency-Key": "restock-1"})
        cid = str(uuid.uuid4())
        second = self.srv.command("RestockProduct", {"sku": "K", "quantity": 2, "command_id": cid})
        rejected = self.srv.command("ReserveStock", {"sku": "K", "order_id": "o", "quantity": 99},
                                    {"Idempotency-Key": "reserve-1"})
        self.assertEqual([first[0], second[0], rejected[0]], [200, 200, 422])
        self.assertEqual(second[2]["command_id"], cid)
        return first, second, rejected, cid

    def replays(self, first, second, rejected, cid):
        head = self.srv.head()
        s, h, b = self.srv.command("RestockProduct", {"sku": "K", "quantity": 4},
                                   {"Idempotency-Key": "restock-1"})
        self.assertEqual((s, b), (200, first[2]))
        self.assertEqual(h.get("idempotent-replayed"), "true")
        s, h, b = self.srv.command("RestockProduct", {"sku": "K", "quantity": 2, "command_id": cid})
        self.assertEqual((s, b), (200, second[2]))
        s, h, b = self.srv.command("ReserveStock", {"sku": "K", "order_id": "o", "quantity": 99},
                                   {"Idempotency-Key": "reserve-1"})
        self.assertEqual((s, b), (422, rejected[2]))
        s, h, b = self.srv.command("RestockProduct", {"sku": "K", "quantity": 5},
                                   {"Idempotency-Key": "restock-1"})
        self.assertEqual((s, b["code"]), (422, "idempotency_key_reused"))
        self.assertEqual(self.srv.head(), head)
        self.assertEqual(len(self.srv.stream("product-K")), 4)

    def test_idempotency_in_one_run(self):
        self.replays(*self.keyed())

    def test_idempotency_across_sigterm(self):
        k = self.keyed()
        self.restart("term")
        self.replays(*k)

    def test_idempotency_across_sigkill(self):
        k = self.keyed()
        self.restart("kill")
        self.replays(*k)

    def test_keyed_answers_rebuilt_from_the_log(self):
        first, second, rejected, cid = self.keyed()
        self.srv.kill()
        journals = os.path.join(self.srv.data, "idempotency")
        names = [n for n in os.listdir(journals) if n.startswith("journal-")]
        self.assertTrue(names)
        for name in names:
            os.unlink(os.path.join(journals, name))
        data = self.srv.data
        self.srv = Server("--snapshot-every", "5", data=data)
        self.srv.own_data = True
        s, h, b = self.srv.command("RestockProduct", {"sku": "K", "quantity": 4},
                                   {"Idempotency-Key": "restock-1"})
        self.assertEqual((s, b), (200, first[2]))
        s, h, b = self.srv.command("RestockProduct", {"sku": "K", "quantity": 2, "command_id": cid})
        self.assertEqual((s, b), (200, second[2]))
        self.assertEqual(len(self.srv.stream("product-K")), 4)

    def test_sigterm_under_load_drains_and_exits_0(self):
        for i in range(4):
            skaldtest.register(self.srv, "D%d" % i)
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def client(n):
            c = self.srv.conn(timeout=10)
            for j in range(100000):
                if stop.is_set():
                    break
                try:
                    s, _, b = self.srv.command("RestockProduct", {"sku": "D%d" % (j % 4),
                                                                  "quantity": 1}, conn=c)
                except Exception:
                    break
                if s == 200:
                    with lock:
                        acked.append(b["events"][0]["event_id"])
                elif s != 503:  # draining answers 503; nothing else is acceptable
                    with lock:
                        acked.append("unexpected %d" % s)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        # stop once commands are demonstrably flowing, not after a guessed second
        skaldtest.wait_for(lambda: len(acked) >= 50, 60, "50 acknowledged restocks")
        self.srv.proc.send_signal(15)
        self.assertEqual(self.srv.proc.wait(60), 0)
        stop.set()
        for t in threads:
            t.join(30)
        self.assertFalse([a for a in acked if a.startswith("unexpected")])
        self.srv.log.close()
        self.restart("kill")  # already stopped: just start again on the data
        ids = {e["event_id"] for i in range(4) for e in self.srv.stream("product-D%d" % i)}
        self.assertGreater(len(acked), 20)
        self.assertFalse(set(acked) - ids, "acknowledged events missing after a drain")

    def test_sigkill_keeps_every_acknowledged_event(self):
        for i in range(8):
            skaldtest.register(self.srv, "P%d" % i)
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def client(n):
            c = self.srv.conn(timeout=5)
            for j in range(100000):
                if stop.is_set():
                    break
                try:
                    s, _, b = self.srv.command("RestockProduct", {"sku": "P%d" % (j % 8),
                                                                  "quantity": 1}, conn=c)
                except Exception:
                    break  # the server died under us: that answer was never given
                if s == 200:
                    with lock:
                        acked.append(b)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        skaldtest.wait_for(lambda: len(acked) >= 200, 60, "200 acknowledged restocks")
        self.srv.kill()  # SIGKILL while commands are in flight
        stop.set()
        for t in threads:
            t.join(30)
        self.assertGreater(len(acked), 50)
        self.restart("again")
        by_id = {}
        for i in range(8):
            for e in self.srv.stream("product-P%d" % i):
                by_id[e["event_id"]] = e
        for a in acked:
            e = by_id.get(a["events"][0]["event_id"])
            self.assertIsNotNone(e, "acknowledged event lost: %r" % a)
            self.assertEqual((e["version"], e["position"], e["command_id"]),
                             (a["events"][0]["version"], a["events"][0]["position"],
                              a["command_id"]))
        # and the service goes on from there: aggregates load (snapshot + tail) correctly
        s, _, b = self.srv.command("ReserveStock", {"sku": "P0", "order_id": "x",
                                                    "quantity": 10 ** 9})
        self.assertEqual((s, b["code"]), (422, "insufficient_stock"))
        on_hand = sum(1 for e in by_id.values() if e["stream_id"] == "product-P0"
                      and e["type"] == "ProductRestocked")
        self.assertIn("%d available" % on_hand, b["detail"])


if __name__ == "__main__":
    skaldtest.main(globals())
