"""A running Linux guest under QEMU 10.0 does not notice vdpad restarting (issue 23, docs/restart.md): its
frame loop (tests/guest/frames.c `loop`) on a vdpasim_net device and its disk loop (tests/guest/blkcheck.c
`loop`) on a vdpasim_blk device through vhost-vdpa-device-pci run while vdpad — supervised by the stand-in
service manager of tests/restart (file descriptor store, socket activation, notify protocol) — is killed with
SIGKILL and started again, and then upgraded in place (daemon_upgrade).  The guest sees a pause, nothing
else: no frame lost or damaged, every block read back intact, no device reset, no error in its kernel log,
no vhost error from QEMU; the same QEMU connections are served throughout.

Run by scripts/test.sh with the rest of tests/qemu."""
import os
import subprocess
import sys
import tempfile
import time
import unittest

import guest
from test_vmm import ROOT, VDPAD_RUN, qemu10, vhost_errors

sys.path.insert(0, os.path.join(ROOT, "tests", "restart"))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from manager import ServiceManager  # noqa: E402
from vdpad.client import Client  # noqa: E402

SCRIPT = """
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for c in all default eth0; do echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done 2>/dev/null
ip link set eth0 up
sleep 1
/bin/frames eth0 loop &
/bin/blkcheck /dev/vda loop &
wait
"""

CONFIG = """
log_level = "debug"
[[devices]]
name = "n0"
mgmtdev = "vdpasim_net"
mac = "02:00:00:00:00:42"

[[devices]]
name = "b0"
mgmtdev = "vdpasim_blk"
"""

# What a guest kernel says when a virtio device goes wrong (loglevel=4 puts warnings and worse on the console).
KERNEL_TROUBLE = ("virtio", "vhost", "reset", "timeout", "timed out", "blk_update_request", "I/O error", "hung", "NETDEV WATCHDOG")


class RestartUnderAGuest(unittest.TestCase):
    def wait(self, condition, seconds, what):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except (OSError, ValueError, KeyError, IndexError):
                pass
            time.sleep(0.25)
        self.fail(f"timed out waiting for {what} (serial: {guest.tail(self.serial)})")

    def serial_lines(self):
        """Every line the guest has written to its serial console so far."""
        with open(self.serial, errors="replace") as f:
            return f.read().splitlines()

    def loops(self):
        return guest.lines(self.serial, "VDPAD-LOOP"), guest.lines(self.serial, "VDPAD-DISK")

    def advance(self, what):
        """Waits for both loops to report two more lines, and returns the last of each (on a time-out, with what
        vdpad says of the devices)."""
        frames, disk = self.loops()
        try:
            self.wait(lambda: len(self.loops()[0]) >= len(frames) + 2 and len(self.loops()[1]) >= len(disk) + 2, 60,
                      f"both loops going on {what}")
        except AssertionError as e:
            with Client(self.manager.socket_path, timeout=5) as admin:
                devices = {n: {k: v for k, v in admin.call("get_device", device=n).items() if k in ("vrings", "queues", "status", "suspended", "stats")} for n in ("b0",)}
            raise AssertionError(f"{e}\ndevices: {devices}") from None
        frames, disk = self.loops()
        return frames[-1], disk[-1]

    @staticmethod
    def shared(manager):
        """Each device's shared regions, as get_device lists them."""
        with Client(manager.socket_path) as admin:
            return {n: admin.call("get_device", device=n)["shared_memory"]["regions"] for n in ("n0", "b0")}

    def start_guest(self, config, devices, script, programs, options):
        """vdpad on `config` under the stand-in service manager, and QEMU 10.0 under vdpad-run (`devices`: its --device
        arguments) booting the test guest on shared RAM with `script` and tests/guest's `programs`, `options` its own
        (devices, vCPUs); QEMU's stderr goes to a file that `stop_guest` reads.  Returns the manager and QEMU."""
        work = tempfile.mkdtemp(prefix="vdpad-restart-")
        manager = self.manager = ServiceManager(work, config)
        self.addCleanup(manager.stop)
        manager.start()
        self.serial = os.path.join(work, "serial.txt")
        command, env = qemu10()
        self.err_path = os.path.join(work, "qemu.err")
        err = open(self.err_path, "w")
        self.addCleanup(err.close)
        qemu = subprocess.Popen(
            [VDPAD_RUN, "-s", manager.socket_path, *devices, "--", *command, "-M", "pc", "-accel", "tcg",
             "-object", "memory-backend-memfd,id=ram,size=256M,share=on", "-machine", "memory-backend=ram", "-m", "256",
             "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{self.serial}", "-kernel", guest.KERNEL,
             "-initrd", guest.initrd(work, script, programs), "-append", "console=ttyS0 panic=-1 loglevel=4", *options],
            stdout=subprocess.DEVNULL, stderr=err, env=env)
        self.addCleanup(lambda: qemu.poll() is None and qemu.kill())
        return manager, qemu

    def stop_guest(self, qemu):
        """Kills QEMU; the vhost errors it printed."""
        qemu.kill()
        qemu.wait()
        with open(self.err_path) as f:
            return vhost_errors(f.read())

    def test_kill_and_upgrade_under_a_running_guest(self):
        manager, qemu = self.start_guest(
            CONFIG, ["--device", "/dev/vhost-vdpa-0=n0", "--device", "/dev/vhost-vdpa-1=b0"], SCRIPT, ["frames", "blkcheck"],
            ["-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0", "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:00:42",
             "-device", "vhost-vdpa-device-pci,vhostdev=/dev/vhost-vdpa-1"])
        self.wait(lambda: len(self.loops()[0]) >= 2 and len(self.loops()[1]) >= 2, 180, "both loops in the guest")
        boot_lines = len(self.serial_lines())
        frames0, disk0 = self.advance("before any restart")
        shared0 = self.shared(manager)
        self.assertTrue(shared0["n0"], "QEMU shares the guest's RAM with vdpad")

        # SIGKILL at an arbitrary moment, then a start by the service manager (as Restart=on-failure does).
        manager.kill()
        time.sleep(0.3)  # the guest keeps kicking a daemon that is not there
        manager.start()
        frames1, disk1 = self.advance("after the kill")
        self.assertEqual(self.shared(manager), shared0, "the shared regions are mapped again after the kill")

        # An upgrade in place, asked for as an operator would (vdpad-cli daemon upgrade).
        pid = manager.process.pid
        with Client(manager.socket_path) as admin:
            self.assertEqual(admin.call("daemon_upgrade")["pid"], pid)
        frames2, disk2 = self.advance("after the upgrade")
        self.assertEqual(self.shared(manager), shared0, "the shared regions are mapped again after the upgrade")
        with Client(manager.socket_path) as admin:
            stats = admin.call("get_device", device="n0")["stats"]
        print(f"\n  after the upgrade: {stats['shared_accesses']} shared accesses, {stats['process_vm_accesses']} through process_vm", end="")
        # The counters start again with the process; a few accesses outside the guest's RAM (QEMU's own buffers for
        # the control queue) always take process_vm, the frames must not.
        self.assertGreater(stats["shared_accesses"], 100 * max(1, stats["process_vm_accesses"]),
                           "the frames go through the shared RAM, not the fallback")
        self.assertEqual(manager.process.poll(), None, "the upgraded daemon is the same process")
        with Client(manager.socket_path) as admin:
            self.assertEqual(admin.call("get_version")["pid"], pid)
            devices = {d["name"]: d for d in admin.call("list_devices")}
        self.assertTrue(all(devices[n]["owner"] for n in ("n0", "b0")), f"QEMU still owns both devices: {devices}")

        # Nothing but a pause: every frame back and intact, every block read back intact, the guest's memory intact.
        for line in (frames0, frames1, frames2):
            self.assertEqual((line["lost"], line["bad"], line["mem"]), ("0", "0", "ok"), line)
        self.assertGreater(int(frames2["n"]), int(frames1["n"]) > int(frames0["n"]))
        for line in (disk0, disk1, disk2):
            self.assertEqual(line["bad"], "0", line)
        self.assertGreater(int(disk2["n"]), int(disk1["n"]))
        self.assertGreater(int(disk1["n"]), int(disk0["n"]))
        after_boot = self.serial_lines()[boot_lines:]
        trouble = [l for l in after_boot if not l.startswith("VDPAD-") and any(t.lower() in l.lower() for t in KERNEL_TROUBLE)]
        self.assertEqual(trouble, [], "the guest's kernel said nothing about its devices")
        self.assertEqual(self.stop_guest(qemu), [])
        print(f"\n  restart: frames {frames0['n']} → {frames2['n']}, longest frame wait {frames2['gap_ms']} ms; "
              f"disk writes {disk0['n']} → {disk2['n']}, longest write+read {disk2['gap_ms']} ms", end="")

    MQ_SCRIPT = """
for c in all default eth0; do echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done 2>/dev/null
ip link set eth0 up
sleep 1
taskset 2 /bin/frames eth0 loop
"""

    MQ_CONFIG = """
[[devices]]
name = "m0"
mgmtdev = "mlx5_net"
mac = "02:00:00:00:00:42"
max_vqp = 2
"""

    def test_kill_and_upgrade_under_a_multiqueue_guest(self):
        # mlx5_net with two queue pairs (QEMU queues=2, mq=on, two vCPUs), the loop on the second vCPU, so on the
        # second pair: that pair exists only because the guest's MQ_VQ_PAIRS_SET said so through the control queue
        # (vq 4 with MQ), which the journal keeps — after a kill and after an upgrade the frames go on on vq 2 and 3.
        manager, qemu = self.start_guest(
            self.MQ_CONFIG, ["--device", "/dev/vhost-vdpa-0=m0"], self.MQ_SCRIPT, ["frames"],
            ["-smp", "2", "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0,queues=2",
             "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:00:42,mq=on,vectors=6"])

        def advance(count, seconds, what):
            before = len(guest.lines(self.serial, "VDPAD-LOOP"))
            self.wait(lambda: len(guest.lines(self.serial, "VDPAD-LOOP")) >= before + count, seconds, f"the loop going on {what}")
            with Client(manager.socket_path) as admin:
                d = admin.call("get_device", device="m0")
            self.assertEqual(d["active_queue_pairs"], 2, what)
            self.assertGreater(d["queues"][3]["completed_desc"], 0, f"the second pair carries the frames {what}")
            self.assertEqual(d["queues"][1]["completed_desc"], 0, what)
            return guest.lines(self.serial, "VDPAD-LOOP")[-1]

        lines = [advance(3, 180, "before any restart")]
        manager.kill()
        time.sleep(0.3)
        manager.start()
        lines.append(advance(3, 60, "after the kill"))
        with Client(manager.socket_path) as admin:
            admin.call("daemon_upgrade")
        lines.append(advance(3, 60, "after the upgrade"))
        for line in lines:
            self.assertEqual((line["lost"], line["bad"], line["mem"]), ("0", "0", "ok"), line)
        self.assertGreater(int(lines[2]["n"]), int(lines[1]["n"]) > int(lines[0]["n"]))
        self.assertEqual(self.stop_guest(qemu), [])


if __name__ == "__main__":
    unittest.main()
