"""vdpad killed with SIGKILL at random points and started again by a stand-in
service manager (manager.py), 100 times, while one client connection — never
reopened — maps 10,000 ranges in two ASIDs, opens and closes batches, sets
vrings and has eventfds bound: every call is answered exactly once (a map
applied twice would answer EEXIST, a lost one would never answer), and at the
end the device holds every mapping, vring and binding the client set.
docs/restart.md; docs/testing.md lists it."""

import array
import ctypes
import json
import mmap
import os
import random
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "clients", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from manager import BINARY, ServiceManager  # noqa: E402
from vdpad.client import Client  # noqa: E402

KILLS = int(os.environ.get("VDPAD_RESTART_KILLS", "100"))
UPGRADES = 25
RANGES = 10_000
PAGE = 4096


def in_background(work):
    """Runs `work` on a thread while the test's client works: the thread, an event set when it ends, and the
    exceptions it raised (for the test thread to report)."""
    done = threading.Event()
    failures = []

    def run():
        try:
            work()
        except Exception as e:
            failures.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done, failures


@unittest.skipUnless(os.path.exists(BINARY), "build vdpad first (swift build)")
class RandomKills(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.manager = ServiceManager(self.tmp.name)
        self.manager.start()

    def tearDown(self):
        self.manager.stop()
        self.tmp.cleanup()

    def test_sessions_survive_random_kills(self):
        rng = random.Random(int(os.environ.get("VDPAD_RESTART_SEED", "2026")))
        c = Client(self.manager.socket_path, timeout=60)
        c.call("add_device", name="r0", mgmtdev="vdpasim_net")
        c.call("open", device="r0")
        c.call("set_backend_features", device="r0", features=["IOTLB_MSG_V2", "IOTLB_BATCH", "IOTLB_ASID"])
        c.call("set_features", device="r0", features=["VERSION_1", "ACCESS_PLATFORM"])
        kicks = [os.eventfd(0) for _ in range(3)]
        vrings = {}
        for vq in range(3):
            c.call("set_vring_kick", device="r0", vq=vq, pass_fds=[kicks[vq]])

        # The killer: SIGKILL at a random moment, then a start, KILLS times, while the client works.
        batch_sent = threading.Event()

        def killer():
            for k in range(KILLS):
                if k % 2 == 0:
                    time.sleep(rng.uniform(0.005, 0.06))
                else:
                    # Right after a long round was sent: the kill lands while the daemon is answering it.
                    batch_sent.clear()
                    batch_sent.wait(1.0)
                    time.sleep(rng.uniform(0.0008, 0.003))
                self.manager.kill()
                self.manager.start()

        thread, done, failures = in_background(killer)
        expected = {0: {}, 1: {}}
        n = 0
        step = 0
        while not done.is_set() or n < RANGES:
            step += 1
            if n >= RANGES and step % 13 == 0:
                # Mappings all made: long rounds go on (maps of a scratch range, unmapped in the same text).
                with c.batch() as b:
                    extra = [b.map(device="r0", asid=1, iova=(1 << 40) + k * PAGE, size=PAGE, addr=k * PAGE, perm="ro") for k in range(1000)]
                    undo = b.unmap(device="r0", asid=1, iova=1 << 40, size=1000 * PAGE)
                    batch_sent.set()
                for p in extra:
                    p.value()
                self.assertEqual(undo.value(), {"removed": 1000})
                continue
            asid = step % 2
            if n < RANGES and step % 13 == 0:
                # A JSON-RPC batch of 200 maps in one text: a long round, where a kill lands mid-round (the
                # journal then holds its operations with no commit, and the new process answers it again).
                pending = []
                with c.batch() as b:
                    for _ in range(200):
                        if n >= RANGES:
                            break
                        iova = n * PAGE
                        pending.append(b.map(device="r0", asid=asid, iova=iova, size=PAGE, addr=0x4000_0000 + iova, perm="rw"))
                        expected[asid][iova] = 0x4000_0000 + iova
                        n += 1
                    batch_sent.set()  # the batch goes out as the block ends
                for p in pending:
                    p.value()  # raises the error of a map that was applied twice (EEXIST) or went unanswered
            elif n < RANGES and step % 7 == 0:
                # A batch of maps, committed at its end (its state is journaled too).
                c.call("batch_begin", device="r0", asid=asid)
                for _ in range(5):
                    if n >= RANGES:
                        break
                    iova = n * PAGE
                    c.call("map", device="r0", asid=asid, iova=iova, size=PAGE, addr=0x4000_0000 + iova, perm="rw")
                    expected[asid][iova] = 0x4000_0000 + iova
                    n += 1
                c.call("batch_end", device="r0", asid=asid)
            elif n < RANGES:
                iova = n * PAGE
                c.call("map", device="r0", asid=asid, iova=iova, size=PAGE, addr=0x4000_0000 + iova, perm="rw")
                expected[asid][iova] = 0x4000_0000 + iova
                n += 1
                if step % 11 == 0:
                    # An unmap of the range just mapped, and the map again: both exactly once.
                    c.call("unmap", device="r0", asid=asid, iova=iova, size=PAGE)
                    c.call("map", device="r0", asid=asid, iova=iova, size=PAGE, addr=0x4000_0000 + iova, perm="rw")
            else:
                vq = step % 3
                num = 1 << rng.randint(4, 8)
                c.call("set_vring", device="r0", vq=vq, num=num, base=step % 65536)
                vrings[vq] = (num, step % 65536)
        thread.join()
        self.assertEqual(failures, [])
        self.assertGreaterEqual(self.manager.starts, KILLS + 1)

        for asid in (0, 1):
            got = {}
            first = 0
            while True:
                page = c.call("dump_iotlb", device="r0", asid=asid, first=first, limit=65536)
                for e in page["entries"]:
                    got[e["iova"]] = e["addr"]
                if page.get("next") is None:
                    break
                first = page["next"]
            self.assertEqual(got, expected[asid], f"ASID {asid}")
        for vq, (num, base) in vrings.items():
            ring = c.call("get_vring", device="r0", vq=vq)
            self.assertEqual((ring["num"], ring["base"]), (num, base))
        for vq in range(3):
            self.assertTrue(c.call("get_vring", device="r0", vq=vq)["kick"], f"vq {vq} kick binding")
        c.close()
        for fd in kicks:
            os.close(fd)

    def test_passed_descriptors_survive_a_kill(self):
        """A descriptor passed ahead of its request (SCM_RIGHTS with the first bytes of the text, the rest not sent
        yet) is in the store as pass.ID.N: after a SIGKILL, or an upgrade in place, the new process gives it to the
        request when the rest of the text comes, on the same connection; once a committed request took it, it
        leaves the store."""
        c = Client(self.manager.socket_path, timeout=60)
        c.call("add_device", name="p0", mgmtdev="vdpasim_net")
        c.call("open", device="p0")

        def passed_names():
            with self.manager.lock:
                return sorted(name for name in self.manager.store if name.startswith("pass."))

        for k in range(3):
            text = json.dumps({"jsonrpc": "2.0", "id": 1000 + k, "method": "set_vring_kick", "params": {"device": "p0", "vq": k}})
            head, tail = text[:20].encode(), (text[20:] + "\n").encode()
            fd = os.eventfd(0)
            c.sock.sendmsg([head], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            os.close(fd)
            deadline = time.monotonic() + 5
            while not passed_names() and time.monotonic() < deadline:
                time.sleep(0.005)
            self.assertEqual(len(passed_names()), 1, "the descriptor is in the store before any request took it")
            if k == 1:
                with Client(self.manager.socket_path, timeout=60) as admin:  # an upgrade in place instead of a kill
                    admin.call("daemon_upgrade")
                    admin.call("ping")
            else:
                self.manager.kill()
                self.manager.start()
            c.sock.sendall(tail)
            reply = c._reply()
            self.assertEqual(reply.get("result"), {}, f"the request takes the descriptor passed before the restart: {reply}")
            self.assertTrue(c.call("get_vring", device="p0", vq=k)["kick"])
            deadline = time.monotonic() + 5
            while passed_names() and time.monotonic() < deadline:
                time.sleep(0.005)
            self.assertEqual(passed_names(), [], "taken by a committed request: out of the store")
        c.close()

    def test_descriptors_in_flight_survive_upgrades(self):
        """While a client passes an eventfd with every call, vdpad is upgraded in place again and again: no call
        is answered EBADF (an upgrade parks every reader between rounds first, so no descriptor is ever between its
        receive and the store when the exec comes)."""
        c = Client(self.manager.socket_path, timeout=60)
        c.call("add_device", name="u0", mgmtdev="vdpasim_net")
        c.call("open", device="u0")
        def upgrader():
            with Client(self.manager.socket_path, timeout=60) as admin:
                for _ in range(UPGRADES):
                    time.sleep(0.02)
                    admin.call("daemon_upgrade")
                    admin.call("ping")

        thread, done, failures = in_background(upgrader)
        calls = 0
        while not done.is_set():
            fd = os.eventfd(0)
            try:
                c.call("set_vring_kick" if calls % 2 == 0 else "set_vring_call", device="u0", vq=calls % 3, pass_fds=[fd])
            finally:
                os.close(fd)
            calls += 1
        thread.join()
        self.assertEqual(failures, [])
        self.assertGreater(calls, UPGRADES)
        c.close()

    def test_subscriptions_come_back(self):
        """A connection subscribed to events keeps its subscription across a kill and an upgrade in place: the
        events after the restart reach it, numbered above those before it."""
        watcher = Client(self.manager.socket_path, timeout=60)
        stream = watcher.events("device_added", timeout=10)
        other = Client(self.manager.socket_path, timeout=60)
        other.call("add_device", name="e0", mgmtdev="vdpasim_net")
        before = next(stream)
        self.assertEqual(before["device"], "e0")
        self.manager.kill()
        self.manager.start()
        other.call("add_device", name="e1", mgmtdev="vdpasim_net")
        other.call("del_device", name="e0")  # a type the watcher did not ask for: not sent to it
        other.call("add_device", name="e2", mgmtdev="vdpasim_net")
        after = [next(stream), next(stream)]
        self.assertEqual([e["device"] for e in after], ["e1", "e2"])
        self.assertTrue(all(e["type"] == "device_added" for e in after), after)
        self.assertGreater(after[0]["seq"], before["seq"], "numbers go on increasing after a restart")
        other.call("daemon_upgrade")
        other.call("add_device", name="e3", mgmtdev="vdpasim_net")
        last = next(stream)
        self.assertEqual(last["device"], "e3")
        self.assertGreater(last["seq"], after[1]["seq"])
        watcher.close()
        other.close()

    def test_queue_names_come_back(self):
        """An idle mlx5_net with two pairs whose last driver took no MQ names vq 2 its control queue (R23) — and so
        does the daemon started after a kill or an upgrade, not the offered layout's (docs/restart.md)."""
        c = Client(self.manager.socket_path, timeout=60)
        c.call("add_device", name="x0", mgmtdev="mlx5_net", max_vqp=2)
        c.call("open", device="x0")
        c.call("set_features", device="x0", features=(1 << 32) | (1 << 33) | (1 << 17) | (1 << 5))  # VERSION_1, ACCESS_PLATFORM, CTRL_VQ, MAC
        c.call("set_status", device="x0", status=0xB)
        c.call("reset", device="x0")
        c.call("close", device="x0")

        def names():
            return [q["queue_type"] for q in c.call("get_device", device="x0")["queues"]]

        self.assertEqual(names(), ["rx", "tx", "control_vq", "tx", "rx"])
        self.manager.kill()
        self.manager.start()
        self.assertEqual(names(), ["rx", "tx", "control_vq", "tx", "rx"], "after a kill")
        c.call("daemon_upgrade")
        self.assertEqual(names(), ["rx", "tx", "control_vq", "tx", "rx"], "after an upgrade")
        c.close()

    def test_shared_memory_comes_back(self):
        """A VMM's shared regions (share_memory) come back after SIGKILLs, mapped again from their files in the
        store; one whose mapping the VMM dropped while no daemon ran is left out; an unshare takes the file out
        of the store."""
        c = Client(self.manager.socket_path, timeout=60)
        c.call("add_device", name="m0", mgmtdev="vdpasim_net")
        c.call("open", device="m0")
        size = 1 << 20
        regions = []
        for k in range(2):
            fd = os.memfd_create(f"guest{k}")
            os.ftruncate(fd, size)
            m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            view = (ctypes.c_char * size).from_buffer(m)
            addr = ctypes.addressof(view)
            c.call("share_memory", device="m0", addr=addr, size=size, pass_fds=[fd])
            os.close(fd)
            regions.append((m, view, addr))

        def shared():
            return sorted((r["addr"], r["size"]) for r in c.call("get_device", device="m0")["shared_memory"]["regions"])

        def stored_files():
            with self.manager.lock:
                return sum(1 for name in self.manager.store if name.startswith("fd."))

        both = sorted((addr, size) for _, _, addr in regions)
        self.assertEqual(shared(), both)
        deadline = time.monotonic() + 5
        while stored_files() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(stored_files(), 2, "each region's file is in the store")
        for _ in range(3):
            self.manager.kill()
            self.manager.start()
            self.assertEqual(shared(), both, "mapped again after a restart")
        # The VMM drops its mapping of the second region while no daemon runs: that region does not come back.
        self.manager.kill()
        m, view, addr = regions.pop()
        del view
        m.close()
        self.manager.start()
        self.assertEqual(shared(), [(regions[0][2], size)])
        deadline = time.monotonic() + 5
        while stored_files() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(stored_files(), 1, "the file of the region left out leaves the store")
        self.assertEqual(c.call("unshare_memory", device="m0", addr=regions[0][2], size=size), {"removed": 1})
        c.call("ping")
        deadline = time.monotonic() + 5
        while stored_files() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(stored_files(), 0, "an unshared region's file leaves the store")
        c.close()
        del regions


if __name__ == "__main__":
    unittest.main()
