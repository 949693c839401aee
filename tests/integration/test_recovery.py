"""A failed log recovers in place in `skald serve`: an fdatasync failure injected through
the I/O seam (SKALD_FAULT_FILE) fails the commands of that batch with 503 and /readyz says
why; the server recovers without a restart (also when the disk keeps failing for a while,
backing off), every acknowledged event is still there and nothing of the failed batch is;
with fsync=interval the aggregate cache is reloaded, so the first command after recovery
decides on what the log holds."""
import os
import tempfile
import time
import unittest

import skaldtest
from skaldtest import Server


def metric(srv, name):
    _, _, text = srv.request("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


class Recovery(unittest.TestCase):
    def start(self, *extra):
        self.data = tempfile.mkdtemp(prefix="skald-it-")
        self.fault_file = os.path.join(self.data, "faults")
        self.srv = Server(*extra, data=self.data, env={"SKALD_FAULT_FILE": self.fault_file})
        self.srv.own_data = True

    def tearDown(self):
        self.srv.cleanup()

    def inject(self, failures):
        with open(self.fault_file + ".tmp", "w") as f:
            f.write("fdatasync-eio %d\n" % failures)
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
        self.assertEqual(metric(self.srv, "skald_log_recoveries_total"), 1)
        self.assertEqual(metric(self.srv, "skald_log_failed"), 0)
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
        self.assertEqual(metric(self.srv, "skald_log_recoveries_total"), 1)
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
        while metric(self.srv, "skald_log_recoveries_total") < 1 and time.time() < deadline:
            time.sleep(0.1)
        self.wait_ready(10)
        status, _, body = self.srv.command("RestockProduct", {"sku": "I", "quantity": 1},
                                           {"Idempotency-Key": "after-recovery"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["events"][0]["version"], 3)
        events = self.srv.stream("product-I")
        self.assertEqual([e["payload"].get("quantity") for e in events], [None, 10, 1])
        self.assertEqual(self.srv.stop(), 0)


if __name__ == "__main__":
    skaldtest.main(globals())
