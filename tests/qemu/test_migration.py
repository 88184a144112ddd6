"""Live migration of a running Linux guest between two unmodified QEMU 10.0 processes, each on its own vdpad
daemon, its traffic flowing (issue 22): guest RAM memory-backend-memfd,share=on, a vdpasim_net device on each
side (mlx5_net in two tests, one with two queue pairs; private RAM in one), the guest's AF_PACKET loop
(tests/guest/frames.c `loop`) sending frames with sequence numbers and checksums through the migration, QMP
`migrate` over a Unix socket.  And the same migration cancelled midway.

Both QEMUs record their calls (vdpad-run --record): the device's share of the downtime — the source's SUSPEND
to the destination's last queue enabled — is read from the two records, which carry one clock (`mono`).

Run by scripts/test.sh with the rest of tests/qemu."""
import json
import os
import socket
import subprocess
import tempfile
import time
import unittest

import guest
from test_vmm import ROOT, VDPAD_RUN, Daemon, qemu10, vhost_errors

FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")

LOOP = """
for c in all default eth0; do echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done 2>/dev/null
ip link set eth0 up
sleep 1
/bin/frames eth0 loop
"""


def loop(pairs):
    """The guest's script: the frame loop, on the last vCPU — so on the last queue pair (virtio_net's XPS)."""
    return LOOP if pairs == 1 else LOOP.replace("/bin/frames", f"taskset {1 << (pairs - 1)} /bin/frames")


def qmp(path, *commands):
    """Runs QMP commands on `path`; their replies (events skipped)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        f = s.makefile("rwb")
        json.loads(f.readline())  # greeting
        replies = []
        for c in ({"execute": "qmp_capabilities"},) + commands:
            f.write((json.dumps(c) + "\n").encode())
            f.flush()
            while True:
                r = json.loads(f.readline())
                if "event" not in r:
                    replies.append(r)
                    break
        return replies[1:]


class Side:
    """One host: a vdpad daemon with a net device (vdpasim_net unless said), and a QEMU 10.0 on it."""

    def __init__(self, test, initrd, incoming=None, mgmtdev="vdpasim_net", pairs=1, shared=True):
        self.daemon = Daemon({"m0": {"mgmtdev": mgmtdev, "mac": "02:00:00:00:00:42", **({"max_vqp": pairs} if pairs > 1 else {})}})
        test.addCleanup(self.daemon.stop)
        d = self.daemon.dir
        self.serial, self.qmp_path, self.record = (os.path.join(d, n) for n in ("serial.txt", "qmp.sock", "record.jsonl"))
        self.err_path = os.path.join(d, "qemu.err")
        command, env = qemu10()
        self.err_file = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [VDPAD_RUN, "-s", self.daemon.socket, "--device", "/dev/vhost-vdpa-0=m0", "--record", self.record, "--anonymize", "--", *command,
             "-M", "pc", "-accel", "tcg",
             *(["-object", "memory-backend-memfd,id=ram,size=256M,share=on", "-machine", "memory-backend=ram"] if shared else []),
             "-m", "256", "-smp", str(pairs), "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{self.serial}",
             "-qmp", f"unix:{self.qmp_path},server=on,wait=off", "-kernel", guest.KERNEL, "-initrd", initrd,
             "-append", "console=ttyS0 panic=-1 quiet", "-netdev", f"type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0,queues={pairs}",
             "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:00:42" + (f",mq=on,vectors={2 * pairs + 2}" if pairs > 1 else ""),
             *(["-incoming", incoming] if incoming else [])],
            stdout=subprocess.DEVNULL, stderr=self.err_file, env=env)
        test.addCleanup(self.stop)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.err_file.close()

    def qmp(self, *commands):
        return qmp(self.qmp_path, *commands)

    def loop_lines(self):
        return guest.lines(self.serial, "VDPAD-LOOP")

    def calls(self):
        with open(self.record) as f:
            return [json.loads(l) for l in f if l.strip()]

    def owner(self):
        return self.daemon.rpc.call("get_device", device="m0")["owner"]


class MigrationTests(unittest.TestCase):
    def wait(self, condition, seconds, what):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        self.fail(f"timed out waiting for {what}")

    def start(self, mgmtdev="vdpasim_net", pairs=1, shared=True):
        source = Side(self, guest.initrd(self.dirs(), loop(pairs), ["frames"]), mgmtdev=mgmtdev, pairs=pairs, shared=shared)
        self.wait(lambda: len(source.loop_lines()) >= 2, 120, "the guest's frame loop on the source")
        return source

    def dirs(self):
        return tempfile.mkdtemp(prefix="vdpad-migration-")

    def test_a_running_guest_moves_with_its_traffic(self):
        self.migrate("vdpasim_net")

    def test_a_running_guest_moves_between_mlx5_net_devices(self):
        # The hardware's rules on both sides: the rings kept across the reset (R69), a base refused while a queue
        # runs, the queue taking new addresses and indexes at resume (R60) — QEMU 10's flow meets none of them wrong.
        self.migrate("mlx5_net")

    def test_a_multiqueue_guest_moves_with_its_second_pair(self):
        # mlx5_net with max_vqp 2 (QEMU queues=2, mq=on, two vCPUs), the loop on the second vCPU so its frames use
        # the second pair: the destination's QEMU brings the pairs back through the control queue
        # (MQ_VQ_PAIRS_SET in ASID 1) before the guest runs, and the frames go on on vq 2 and 3 there.  The source
        # QEMU 10.0 prints its known lines for the second pair at the stop (MultiQueueGuestTests says why).
        self.migrate("mlx5_net", pairs=2, source_errors=[
            f"qemu-system-x86_64: vhost VQ {vq} ring restore failed: -1: Operation not permitted (1)" for vq in (2, 3)])

    def test_a_guest_on_private_memory_moves(self):
        # QEMU's default RAM, not shared with vdpad: both devices reach it through process_vm and the store agent.
        dst = self.migrate("vdpasim_net", shared=False)
        self.assertEqual((dst["stats"]["shared_accesses"], dst["stats"]["copied_index_stores"]), (0, 0))
        self.assertGreater(dst["stats"]["process_vm_accesses"], 0)

    def migrate(self, mgmtdev, pairs=1, source_errors=(), shared=True):
        """Migrates a guest running its frame loop; the destination's device (get_device) once the source is gone."""
        source = self.start(mgmtdev, pairs, shared)
        initrd = self.dirs()
        destination = Side(self, guest.initrd(initrd, loop(pairs), ["frames"]),
                           incoming=f"unix:{os.path.join(initrd, 'migration.sock')}", mgmtdev=mgmtdev, pairs=pairs, shared=shared)
        self.wait(lambda: os.path.exists(destination.qmp_path) and destination.qmp({"execute": "query-status"}), 30, "the destination")
        self.assertEqual(source.qmp({"execute": "migrate", "arguments": {"uri": f"unix:{os.path.join(initrd, 'migration.sock')}"}}),
                         [{"return": {}}])
        state = {}

        def done():
            state.update(source.qmp({"execute": "query-migrate"})[0]["return"])
            return state.get("status") in ("completed", "failed", "cancelled")
        self.wait(done, 120, "the migration")
        self.assertEqual(state["status"], "completed", state)
        self.assertIn("downtime", state, "query-migrate reports the downtime")
        self.assertEqual(destination.qmp({"execute": "query-status"})[0]["return"]["status"], "running")
        # The loop goes on at the destination: its counters (in the guest's memory) carry on; every frame sent after
        # the switch comes back intact, and the memory written before the migration is intact.  (A frame in flight
        # while QEMU restarts the device — at the switch to shadow rings, or at the switch itself — may be lost, as a
        # NIC may drop one: it is counted in the first line after the switch, and never again.)
        self.wait(lambda: len(destination.loop_lines()) >= 3, 60, "the frame loop on the destination")
        after = destination.loop_lines()
        first, last = after[0], after[-1]
        self.assertGreater(int(last["n"]), int(first["n"]), "frames were sent after the switch")
        self.assertEqual((last["lost"], last["bad"], last["mem"]), (first["lost"], "0", "ok"), f"after the switch: {first} → {last}")
        self.assertLessEqual(int(last["lost"]), 2, f"at most a frame per device restart: {last}")
        dst = destination.daemon.rpc.call("get_device", device="m0")
        tx = 2 * pairs - 1  # the last pair's TX queue: the loop's vCPU's
        self.assertGreater(dst["queues"][tx]["completed_desc"], 0, "the destination's device carries the frames now")
        self.assertEqual(dst["active_queue_pairs"], pairs, "the pairs the guest turned on, restored by the destination QEMU")
        # The source QEMU's exit releases its device; the destination's stays owned.
        source.qmp({"execute": "quit"})
        self.assertEqual(source.proc.wait(30), 0)
        self.wait(lambda: source.owner() is None, 10, "the source device's release")
        self.assertIsNotNone(destination.owner())
        # The device's share of the downtime, from the two records (one clock): the source's SUSPEND to the
        # destination's last queue enabled.
        suspend = [c["mono"] for c in source.calls() if c["method"] == "suspend"]
        enabled = [c["mono"] for c in destination.calls() if c["method"] == "set_vring" and c["params"].get("ready") is True]
        self.assertTrue(suspend, "QEMU 10 suspended the source device")
        window_ms = (max(enabled) - suspend[-1]) * 1000
        self.assertGreater(window_ms, 0)
        gap = max(int(l["gap_ms"]) for l in after)
        print(f"\n  migration ({mgmtdev}{f', {pairs} pairs' if pairs > 1 else ''}{'' if shared else ', private RAM'}): QEMU downtime {state['downtime']} ms, device window {window_ms:.0f} ms "
              f"(SUSPEND → last queue enabled), the guest's longest frame wait {gap} ms, {last['n']} frames, "
              f"{last['lost']} lost in the restarts, none after", end="")
        for side, expected in ((source, list(source_errors)), (destination, [])):
            with open(side.err_path) as f:
                self.assertEqual(vhost_errors(f.read()), expected)
        if os.environ.get("VDPAD_RECORD_MIGRATION_FIXTURES") == "1" and mgmtdev == "vdpasim_net":  # Tests/Fixtures keeps these
            for side, name in ((source, "source"), (destination, "destination")):
                with open(side.record) as f, open(os.path.join(FIXTURES, f"qemu-10.0-migration-{name}.jsonl"), "w") as out:
                    out.write(f.read())
        return dst

    def test_a_cancelled_migration_leaves_the_guest_at_the_source(self):
        source = self.start()
        initrd = self.dirs()
        destination = Side(self, guest.initrd(initrd, LOOP, ["frames"]), incoming=f"unix:{os.path.join(initrd, 'migration.sock')}")
        self.wait(lambda: os.path.exists(destination.qmp_path) and destination.qmp({"execute": "query-status"}), 30, "the destination")
        # Slow enough to be cancelled midway: 1 MiB/s for 256 MiB of RAM.
        source.qmp({"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1 << 20}},
                   {"execute": "migrate", "arguments": {"uri": f"unix:{os.path.join(initrd, 'migration.sock')}"}})
        self.wait(lambda: source.qmp({"execute": "query-migrate"})[0]["return"].get("status") == "active", 30, "an active migration")
        time.sleep(1)
        source.qmp({"execute": "migrate_cancel"})
        self.wait(lambda: source.qmp({"execute": "query-migrate"})[0]["return"].get("status") == "cancelled", 30, "the cancel")
        self.assertEqual(source.qmp({"execute": "query-status"})[0]["return"]["status"], "running")
        count = len(source.loop_lines())
        self.wait(lambda: len(source.loop_lines()) >= count + 1, 30, "a line after the cancel")
        first = source.loop_lines()[count]
        self.wait(lambda: int(source.loop_lines()[-1]["n"]) > int(first["n"]) + 100, 60, "the loop going on at the source")
        last = source.loop_lines()[-1]
        # As at the destination above: nothing lost after the cancel; the restarts around it may have cost a frame.
        self.assertEqual((last["lost"], last["bad"], last["mem"]), (first["lost"], "0", "ok"), f"{first} → {last}")
        self.assertLessEqual(int(last["lost"]), 2, last)
        self.assertIsNotNone(source.owner(), "the source device is still the source QEMU's")
        # QEMU 10 suspended and restarted the device to move its data queues to shadow rings when the migration
        # began, and back when it was cancelled: the device runs again, not suspended.
        dev = source.daemon.rpc.call("get_device", device="m0")
        self.assertEqual((dev["status"], dev["suspended"]), (0xF, False))
        # The destination's incoming migration failed: its QEMU ends, and its device is released.
        self.assertNotEqual(destination.proc.wait(60), 0)
        self.wait(lambda: destination.owner() is None, 10, "the destination device's release")


    def test_a_destination_without_its_device_fails_before_the_source_stops(self):
        # The destination's device is owned by another session, or missing: its QEMU stops at open (EBUSY, R34;
        # ENODEV) and never listens, so the source's migrate fails at once and the guest goes on at the source.
        source = self.start()
        initrd = self.dirs()
        holder = Daemon({"m0": {"mgmtdev": "vdpasim_net"}})
        self.addCleanup(holder.stop)
        taken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        taken.connect(holder.socket)
        self.addCleanup(taken.close)
        taken.sendall(b'{"jsonrpc":"2.0","id":1,"method":"open","params":{"device":"m0"}}\n')
        self.assertIn(b'"result"', taken.recv(4096))
        command, env = qemu10()
        uri = f"unix:{os.path.join(initrd, 'migration.sock')}"
        # m0 is owned by `taken` (EBUSY at open); nosuch does not exist (ENODEV): each stops before it listens.
        for device, said in (("m0", "owned"), ("nosuch", "nosuch")):
            p = subprocess.run(
                [VDPAD_RUN, "-s", holder.socket, "--device", f"/dev/vhost-vdpa-0={device}", "--", *command, "-M", "pc", "-accel",
                 "tcg", "-m", "256", "-nodefaults", "-display", "none", "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0",
                 "-device", "virtio-net-pci,netdev=n0", "-incoming", uri], capture_output=True, text=True, env=env, timeout=60)
            self.assertNotEqual(p.returncode, 0, device)
            self.assertIn(said, p.stderr + p.stdout)
        reply = source.qmp({"execute": "migrate", "arguments": {"uri": uri}})[0]
        # migrate answers at once and connects in the background: under load query-migrate can still say "setup"
        # for a moment before the refused connection fails it.
        def status():
            return source.qmp({"execute": "query-migrate"})[0]["return"].get("status")
        if "error" not in reply:
            self.wait(lambda: status() not in ("setup", "active"), 30, "the migration to end")
        self.assertTrue("error" in reply or status() == "failed", f"{reply} {status()}")
        self.assertEqual(source.qmp({"execute": "query-status"})[0]["return"]["status"], "running")
        n = int(source.loop_lines()[-1]["n"])
        self.wait(lambda: int(source.loop_lines()[-1]["n"]) > n + 100, 60, "the loop going on at the source")
        dev = source.daemon.rpc.call("get_device", device="m0")
        self.assertEqual((dev["status"] & 0x4, dev["suspended"]), (0x4, False), "the source device still runs")
        self.assertEqual([c for c in source.calls() if c["method"] == "suspend"], [], "and was never stopped")


if __name__ == "__main__":
    unittest.main()
