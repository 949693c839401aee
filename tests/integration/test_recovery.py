"""A failed log recovers in place in `skald serve`: an fdatasync failure injected through
the I/O seam (SKALD_FAULT_FILE) fails the commands of that batch with 503 and /readyz says
why; the server recovers without a restart (also when the disk keeps failing for a while,
backing off), every acknowledged event is still there and nothing of the failed batch is;
with fsync=interval the aggregate cache is reloaded, so the first command after recovery
decides on what the log holds."""
import os
import signal
import tempfile
import threading
import time
import unittest

import skaldtest
from skaldtest import Server




class Recovery(unittest.TestCase):
    def start(self, *extra):
        self.data = tempfile.mkdtemp(prefix="skald-it-")
        self.fault_file = os.path.join(self.data, "faults")
        self.srv = Server(*extra, data=self.data, env={"SKALD_FAULT_FILE": self.fault_file})
        self.srv.own_data = True

    def tearDown(self):
        self.srv.cleanup()

    def inject(self, failures, kind="fdatasync-eio"):
        with open(self.fault_file + ".tmp", "w") as f:
            f.write("%s %d\n" % (kind, failures))
        os.rename(self.fault_file + ".tmp", self.fault_file)

    def wait_ready(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            status, _, _ = self.srv.request("GET", "/readyz")
            if status == 200:
                return
            time.sleep(0.1)
        self.fail("not ready again after %d s:\n%s" % (seconds, self.srv.read_log()))

    def test_recovers_in_place_after_a_failed_fdatasync(self):
        self.start()
        skaldtest.register(self.srv, "R", 10)
        self.inject(1)
        status, headers, body = self.srv.command("RestockProduct", {"sku": "R", "quantity": 5})
        self.assertEqual(status, 503, body)
        self.assertIn("retry-after", headers)
        status, _, body = self.srv.request("GET", "/readyz")
        if status == 503:  # the tick may already have recovered it
            self.assertIn("failed", body["detail"])
        self.wait_ready(10)
        status, _, body = self.srv.command("RestockProduct", {"sku": "R", "quantity": 7})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["events"][0]["version"], 3)  # the failed restock is not there
        events = self.srv.stream("product-R")
        self.assertEqual([e["type"] for e in events],
                         ["ProductRegistered", "ProductRestocked", "ProductRestocked"])
        self.assertEqual([e["payload"]["quantity"] for e in events[1:]], [10, 7])
        self.assertEqual(skaldtest.metric(self.srv, "skald_log_recoveries_total"), 1)
        self.assertEqual(skaldtest.metric(self.srv, "skald_log_failed"), 0)
        self.assertEqual(self.srv.stop(), 0)

    def test_keeps_trying_while_the_disk_fails(self):
        self.start()
        skaldtest.register(self.srv, "B", 1)
        self.inject(3)  # the batch's fdatasync, then recovery's own twice
        status, _, _ = self.srv.command("RestockProduct", {"sku": "B", "quantity": 5})
        self.assertEqual(status, 503)
        self.wait_ready(20)
        self.assertIn("could not recover", self.srv.read_log())
        status, _, body = self.srv.command("RestockProduct", {"sku": "B", "quantity": 2})
        self.assertEqual(status, 200, body)
        self.assertEqual(skaldtest.metric(self.srv, "skald_log_recoveries_total"), 1)
        self.assertEqual(self.srv.stop(), 0)

    def test_interval_recovery_reloads_cached_aggregates(self):
        # With fsync=interval a restock is acknowledged before its fdatasync; when that
        # fails, recovery drops it. The next command on the product must decide on the log
        # as it is now (version 2 after registration + restock), not on the cached state.
        self.start("--fsync", "interval")
        skaldtest.register(self.srv, "I", 10)
        time.sleep(0.2)  # the registration's periodic fdatasync (every 10 ms) has run
        self.inject(1)
        status, _, body = self.srv.command("RestockProduct", {"sku": "I", "quantity": 5})
        self.assertEqual(status, 200, body)  # acknowledged at write, lost at the sync
        self.assertEqual(body["events"][0]["version"], 3)
        deadline = time.time() + 10
        while skaldtest.metric(self.srv, "skald_log_recoveries_total") < 1 and time.time() < deadline:
            time.sleep(0.1)
        self.wait_ready(10)
        status, _, body = self.srv.command("RestockProduct", {"sku": "I", "quantity": 1},
                                           {"Idempotency-Key": "after-recovery"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["events"][0]["version"], 3)
        events = self.srv.stream("product-I")
        self.assertEqual([e["payload"].get("quantity") for e in events], [None, 10, 1])
        self.assertEqual(self.srv.stop(), 0)

    def test_disk_full_is_storage_full_never_a_conflict(self):
        """issue 11 item 5: while every append failed with ENOSPC, /readyz said 200,
        skald_log_failed stayed 0, clients got 503 without Retry-After, and commands that
        named no expected_version got 409 wrong_expected_version: a command pipelined
        behind a failed one for the same stream conflicted at its append."""
        self.start()
        skaldtest.register(self.srv, "F", 10)
        head = self.srv.head()
        self.inject(1000000, "enospc")  # every write fails until "enospc 0"
        answers, lock = [], threading.Lock()

        def client(n):
            conn = self.srv.conn()
            for i in range(6):  # bounded: 8 clients x 6 commands, one stream, pipelined
                s, h, b = self.srv.command("RestockProduct", {"sku": "F", "quantity": 1},
                                           conn=conn)
                with lock:
                    answers.append((s, h, b))
            conn.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(len(answers), 48)
        for s, h, b in answers:
            self.assertEqual((s, b["code"]), (503, "storage_full"), b)
            self.assertEqual(h.get("retry-after"), "5")
        s, h, b = self.srv.request("GET", "/readyz")
        self.assertEqual((s, b["code"]), (503, "storage_full"), b)
        self.assertIn("disk is full", b["detail"])
        self.assertIn("retry-after", h)
        self.assertEqual(skaldtest.metric(self.srv, "skald_storage_full"), 1)
        self.assertGreaterEqual(skaldtest.metric(self.srv, "skald_storage_full_total"), 1)
        self.assertEqual(skaldtest.metric(self.srv, "skald_log_failed"), 0)  # the log itself is fine
        self.assertEqual(self.srv.head(), head)  # nothing of a failed batch was kept
        # an expected_version that no longer holds is still the client's 409
        s, _, b = self.srv.command("RestockProduct", {"sku": "F", "quantity": 1,
                                                      "expected_version": 7})
        self.assertEqual((s, b["code"]), (409, "wrong_expected_version"), b)
        # space is back: the next command is written and the process is ready again
        self.inject(0, "enospc")
        s, _, b = self.srv.command("RestockProduct", {"sku": "F", "quantity": 3})
        self.assertEqual(s, 200, b)
        self.assertEqual(b["events"][0]["version"], 3)
        self.assertEqual(self.srv.request("GET", "/readyz")[0], 200)
        self.assertEqual(skaldtest.metric(self.srv, "skald_storage_full"), 0)
        events = self.srv.stream("product-F")
        self.assertEqual([e["payload"].get("quantity") for e in events], [None, 10, 3])
        self.assertEqual(self.srv.stop(), 0)

    def test_commands_refused_during_drain_are_shutting_down(self):
        """issue 11 item 5: during the SIGTERM drain a refused command got 503 overloaded."""
        self.start()
        skaldtest.register(self.srv, "D", 1)
        keep = self.srv.conn()  # open before SIGTERM: the drain serves it, new ones are not
        self.assertEqual(self.srv.request("GET", "/healthz", conn=keep)[0], 200)
        self.inject(3000, "fdatasync-sleep")  # the next group commit takes 3 s more
        slow = []
        t = threading.Thread(target=lambda: slow.append(self.srv.command(
            "RestockProduct", {"sku": "D", "quantity": 2})))
        t.start()
        skaldtest.wait_for(lambda: skaldtest.metric(self.srv, "skald_queue_depth") == 1, 10,
                           "the slow command in flight")
        self.srv.proc.send_signal(signal.SIGTERM)
        skaldtest.wait_for(lambda: '"stopping"' in self.srv.read_log(), 10, "the drain")
        s, h, b = self.srv.command("RestockProduct", {"sku": "D", "quantity": 1}, conn=keep)
        self.assertEqual((s, b["code"]), (503, "shutting_down"), b)
        self.assertEqual(h.get("retry-after"), "1")
        s, _, b = self.srv.request("GET", "/readyz", conn=keep)
        self.assertEqual((s, b["code"]), (503, "shutting_down"), b)
        t.join(30)
        self.assertEqual(slow[0][0], 200, slow)  # the one in flight was finished
        keep.close()
        self.assertEqual(self.srv.stop(), 0)


if __name__ == "__main__":
    skaldtest.main(globals())
