"""An unmodified VMM drives vdpad devices through libvdpad-vhost.so (issue 14).

* QEMU 7.2 (Debian's qemu-system-x86) with `-netdev type=vhost-vdpa` under
  vdpad-run, driven through qtest with no guest OS: netdev init,
  FEATURES_OK, DRIVER_OK, guest reset, restart, quit — against vdpasim_net,
  mlx5_net and a legacy vdpasim_net, asserting vdpad's own view each step.
* tests/preload/vmm_probe.c, a tiny VMM in C, for what QEMU 7.2 cannot show:
  a vdpasim_blk device through the kernel's sequence, every errno edge,
  two threads on one fd, a VMM killed mid-batch.
* Failures: no daemon, a device owned elsewhere, the daemon restarted under
  a running QEMU.

Run by scripts/test.sh (python3 -m unittest discover -s tests/qemu).  Needs
the debug build (vdpad, vdpad-cli, vdpad-run) and libvdpad-vhost.so next to
vdpad-run (make -C preload OUT=.build/debug).
"""
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from vdpad_qemu import ACK, DRIVER, DRIVER_OK, FEATURES_OK, Qemu, Vdpad, VirtioNetPci

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PRODUCTS = os.environ.get("VDPAD_PRODUCTS", os.path.join(ROOT, ".build", "debug"))
VDPAD, VDPAD_RUN = os.path.join(PRODUCTS, "vdpad"), os.path.join(PRODUCTS, "vdpad-run")
LIBRARY = os.path.join(PRODUCTS, "libvdpad-vhost.so")

VERSION_1, ACCESS_PLATFORM, MAC, STATUS, MTU = 1 << 32, 1 << 33, 1 << 5, 1 << 16, 1 << 3
# What the qtest driver asks for: the guest side of what QEMU then sets on the device.
DRIVER_FEATURES = VERSION_1 | MAC | STATUS | MTU
RINGS = {0: (0x10000, 0x11000, 0x12000), 1: (0x20000, 0x21000, 0x22000)}
# QEMU 7.2's `-M pc -m 256` memory map as vhost-vdpa sees it (docs/vmm.md, QEMU 7.2's start sequence).
RAM_LAYOUT = [(0x0, 0xC0000, "rw"), (0xC0000, 0x20000, "ro"), (0xE0000, 0x10000, "rw"), (0xF0000, 0x10000, "ro"),
              (0x100000, 0xFF00000, "rw"), (0xFFFF0000, 0x10000, "ro")]


class Daemon:
    """The built vdpad on a private socket, with devices added by RPC."""

    def __init__(self, devices):
        self.dir = tempfile.mkdtemp(prefix="vdpad-vmm-")
        self.socket = os.path.join(self.dir, "vdpad.sock")
        self.start()
        for name, params in devices.items():
            self.rpc.call("add_device", name=name, **params)

    def start(self):
        with open(os.path.join(self.dir, "vdpad.log"), "ab") as log:
            self.proc = subprocess.Popen([VDPAD, "--socket", self.socket, "--state-dir", os.path.join(self.dir, "state")],
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline:
                raise RuntimeError("vdpad did not start")
            time.sleep(0.02)
        self.rpc = Vdpad(self.socket)
        self.wait(lambda: self.rpc.call("ping") == "pong")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    @staticmethod
    def wait(condition, seconds=10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if condition():
                    return True
            except (OSError, RuntimeError):
                pass
            time.sleep(0.05)
        return False


def vhost_errors(text):
    return [line for line in text.splitlines() if "vhost" in line.lower() and not line.startswith("[")]


def qemu72_on_mlx5(cvq):
    """The one vhost error QEMU 7.2 prints on an mlx5_net device, as on mlx5 hardware: at a stop it reads the
    control queue's base after its reset (a 7.2 quirk), and mlx5 has no control queue once the reset cleared the
    features (is_index_valid), so that GET_VRING_BASE is EINVAL (R61); QEMU reports it and carries on.  QEMU 10
    reads every base before it resets."""
    return [f"qemu-system-x86_64: vhost VQ {cvq} ring restore failed: -22: Invalid argument (22)"]


def setUpModule():
    # Not a skip: without the library nothing here is tested, and that is a failure.
    for path in (VDPAD, VDPAD_RUN, LIBRARY):
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing: swift build && make -C preload OUT={PRODUCTS}")


class QemuTests(unittest.TestCase):
    """QEMU 7.2, unmodified, through qtest: vdpad's view after every step."""

    def run_lifecycle(self, mgmtdev, **attributes):
        d = Daemon({"dev0": {"mgmtdev": mgmtdev, **attributes}})
        try:
            q = Qemu(VDPAD_RUN, d.socket, "dev0", extra=("-qtest-log", "/dev/null"))
            self.addCleanup(q.close)
            pci = VirtioNetPci(q.qt)  # qtest answers once the machine, netdev included, is up
            # Netdev init: the device is claimed by QEMU's open() (its pid: vdpad-run exec'd it).
            self.assertEqual(d.rpc.call("get_device", device="dev0")["owner"]["pid"], q.proc.pid)
            offered = d.rpc.call("get_features", device="dev0")["mask"]
            config = d.rpc.call("get_config", device="dev0")
            # QEMU wrote its MAC with SET_CONFIG; vdpa_sim keeps it, mlx5 ignores it (R49).
            expected_mac = config["mac"] if mgmtdev == "mlx5_net" else "52:54:00:aa:bb:01"
            self.assertEqual(pci.mac(), expected_mac)
            self.assertEqual(config["mac"], expected_mac)
            self.assertEqual(pci.link_status() & 1, 1)

            for round_ in ("boot", "restart"):
                started = time.monotonic()
                negotiated, sizes = pci.start(DRIVER_FEATURES, RINGS)
                start_ms = (time.monotonic() - started) * 1000
                self.assertEqual(pci.status(), ACK | DRIVER | FEATURES_OK | DRIVER_OK)
                dev = d.rpc.call("get_device", device="dev0")
                self.assertEqual(dev["status"], 0xF, round_)
                # QEMU sets the guest's features that vhost handles (MAC is QEMU's own) plus ACCESS_PLATFORM
                # (QEMU 7.2's start sequence, step 2).
                features = dev["features"]["mask"]
                self.assertEqual(features & ~(negotiated | ACCESS_PLATFORM), 0, round_)
                self.assertEqual(features & (VERSION_1 | ACCESS_PLATFORM | STATUS), VERSION_1 | ACCESS_PLATFORM | STATUS, round_)
                self.assertEqual(dev["backend_features"]["acked"]["mask"], 0x6, "7.2 acks MSG_V2 and BATCH only")
                entries = [(e["iova"], e["size"], e["perm"]) for e in d.rpc.iotlb("dev0")]
                self.assertEqual(entries, RAM_LAYOUT, round_)
                # BATCH_END committed the table to the device (mlx5's DMA MR gives way to it, R14/R20).
                device_layer = d.rpc.call("dump_iotlb", device="dev0", asid=0, layer="device")
                self.assertEqual(device_layer["device_mapping"], "table")
                self.assertEqual([(e["iova"], e["size"], e["perm"]) for e in device_layer["entries"]], RAM_LAYOUT)
                for vq, (desc, driver, device) in RINGS.items():
                    ring = d.rpc.call("get_vring", device="dev0", vq=vq)
                    self.assertEqual((ring["desc"], ring["driver"], ring["device_area"], ring["num"]),
                                     (desc, driver, device, sizes[vq]), f"{round_} vq {vq}")
                    self.assertTrue(ring["ready"] and ring["kick"] and ring["call"], f"{round_} vq {vq}: {ring}")
                # Guest reset: QEMU stops vhost (GET_VRING_BASE, SET_STATUS 0, unmaps everything).
                pci.set_status(0)
                self.assertTrue(d.wait(lambda: d.rpc.call("get_status", device="dev0")["status"] == ACK | DRIVER))
                self.assertEqual(d.rpc.iotlb("dev0"), [], f"{round_}: QEMU unmapped guest RAM at stop")
                self.assertFalse(d.rpc.call("get_vring", device="dev0", vq=0)["ready"])
            self.assertEqual(q.quit(), 0)
            self.assertTrue(d.wait(lambda: d.rpc.call("get_device", device="dev0")["owner"] is None), "released at exit")
            self.assertEqual(vhost_errors(q.stderr()), [])
            return start_ms
        finally:
            d.stop()

    def test_vdpasim_net(self):
        start_ms = self.run_lifecycle("vdpasim_net")
        print(f"\n  QEMU device start (DRIVER_OK write to its answer) with vdpad: {start_ms:.1f} ms", end="")

    def test_mlx5_net(self):
        self.run_lifecycle("mlx5_net")

    def test_legacy_parent(self):
        self.run_lifecycle("vdpasim_net", legacy=True)

    def test_link_down_reaches_the_guest(self):
        d = Daemon({"dev0": {"mgmtdev": "vdpasim_net"}})
        try:
            q = Qemu(VDPAD_RUN, d.socket, "dev0", extra=("-qtest-log", "/dev/null"))
            self.addCleanup(q.close)
            pci = VirtioNetPci(q.qt)
            d.rpc.call("set_link", device="dev0", link="down")
            self.assertEqual(pci.link_status() & 1, 0, "the guest reads the link-status field from vdpad's config")
            d.rpc.call("set_link", device="dev0", link="up")
            self.assertEqual(pci.link_status() & 1, 1)
            self.assertEqual(q.quit(), 0)
        finally:
            d.stop()

    def test_device_owned_elsewhere(self):
        d = Daemon({"dev0": {"mgmtdev": "vdpasim_net"}})
        try:
            with socket.socket(socket.AF_UNIX) as holder:
                holder.connect(d.socket)
                holder.sendall(b'{"jsonrpc":"2.0","id":1,"method":"open","params":{"device":"dev0"}}\n')
                holder.recv(4096)
                # vdpad-run refuses with a clear message before starting anything.
                r = subprocess.run([VDPAD_RUN, "-s", d.socket, "--device", "/dev/vhost-vdpa-0=dev0", "--", "true"],
                                   capture_output=True, text=True)
                self.assertEqual(r.returncode, 1)
                self.assertIn("dev0 is owned by another session", r.stderr)
                # Preloaded by hand, QEMU's open() fails with EBUSY (R34) and QEMU exits cleanly.
                env = dict(os.environ, LD_PRELOAD=LIBRARY, VDPAD_SOCKET=d.socket, VDPAD_VHOST_DEVICES="/dev/vhost-vdpa-0=dev0")
                r = subprocess.run(["qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-nodefaults", "-display", "none",
                                    "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0"],
                                   capture_output=True, text=True, env=env, timeout=60)
                self.assertEqual(r.returncode, 1)
                self.assertIn("Device or resource busy", r.stderr)
                self.assertIn("libvdpad-vhost: dev0 is owned by another session", r.stderr)
        finally:
            d.stop()

    def test_no_daemon(self):
        missing = os.path.join(tempfile.mkdtemp(), "none.sock")
        r = subprocess.run([VDPAD_RUN, "-s", missing, "--device", "/dev/vhost-vdpa-0=dev0", "--", "true"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"no vdpad answers on {missing}", r.stderr)
        env = dict(os.environ, LD_PRELOAD=LIBRARY, VDPAD_SOCKET=missing, VDPAD_VHOST_DEVICES="/dev/vhost-vdpa-0=dev0")
        r = subprocess.run(["qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-nodefaults", "-display", "none",
                            "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0"],
                           capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"libvdpad-vhost: no vdpad answers on {missing}", r.stderr)

    def test_daemon_restarted_under_qemu(self):
        d = Daemon({"dev0": {"mgmtdev": "vdpasim_net"}})
        try:
            q = Qemu(VDPAD_RUN, d.socket, "dev0", extra=("-qtest-log", "/dev/null"))
            self.addCleanup(q.close)
            pci = VirtioNetPci(q.qt)
            pci.start(DRIVER_FEATURES, RINGS)
            d.stop()
            d.start()  # the device comes back from the state file, unowned
            self.assertIsNone(d.rpc.call("get_device", device="dev0")["owner"])
            # QEMU's next vhost calls fail (EIO from the library): it reports them and keeps running.
            pci.set_status(0)
            self.assertEqual(q.quit(), 0)
            self.assertIsNone(d.rpc.call("get_device", device="dev0")["owner"])
        finally:
            d.stop()


QEMU10 = os.path.join(os.environ.get("VDPAD_CACHE", os.path.expanduser("~/.cache/vdpad")), "qemu-10")


def qemu10():
    """QEMU 10.0 from bookworm-backports, unpacked by scripts/fetch-qemu10.sh: its command and environment."""
    binary = os.path.join(QEMU10, "usr", "bin", "qemu-system-x86_64")
    if not os.path.exists(binary):
        raise RuntimeError(f"{binary} is missing: scripts/fetch-qemu10.sh (run by scripts/setup.sh) fetches it")
    env = dict(os.environ, QEMU_MODULE_DIR=os.path.join(QEMU10, "usr", "lib", "x86_64-linux-gnu", "qemu"))
    return (binary, "-L", os.path.join(QEMU10, "usr", "share", "qemu")), env


CTRL_VQ, CTRL_MAC_ADDR = 1 << 17, 1 << 23
CVQ_RINGS = {**RINGS, 2: (0x30000, 0x31000, 0x32000)}


class Qemu10Tests(unittest.TestCase):
    """QEMU 10.0 isolates its CVQ in ASID 1 and sends the MAC through a shadow CVQ at every device start;
    vdpad's data path serves it (issue 17), so the start completes with no 10 s wait."""

    def run_cvq(self, mgmtdev):
        command, env = qemu10()
        d = Daemon({"c0": {"mgmtdev": mgmtdev}})
        try:
            q = Qemu(VDPAD_RUN, d.socket, "c0", extra=("-qtest-log", "/dev/null"), qemu=command, env=env)
            self.addCleanup(q.close)
            pci = VirtioNetPci(q.qt)
            starts = []
            for round_ in (1, 2):
                started = time.monotonic()
                negotiated, _ = pci.start(DRIVER_FEATURES | CTRL_VQ | CTRL_MAC_ADDR, CVQ_RINGS)
                self.assertTrue(d.wait(lambda: all(r["ready"] for r in d.rpc.call("get_device", device="c0")["vrings"])),
                                "the data queues are enabled once the CVQ state load succeeded")
                starts.append(time.monotonic() - started)
                self.assertLess(starts[-1], 5, "no 10 s wait for the CVQ ack")
                self.assertTrue(negotiated & CTRL_VQ)
                dev = d.rpc.call("get_device", device="c0")
                self.assertTrue(dev["status"] & DRIVER_OK)
                cvq_group = dev["vq_groups"][-1]
                self.assertEqual(dev["group_asid"][cvq_group], 1, "the CVQ's group is bound to ASID 1")
                asid1 = [(e["iova"], e["size"], e["perm"]) for e in d.rpc.iotlb("c0", asid=1)]
                self.assertEqual(asid1, [(0x1000, 0x1000, "ro"), (0x2000, 0x1000, "rw"), (0x3000, 0x1000, "ro"), (0x4000, 0x1000, "rw")],
                                 "the shadow CVQ's four pages in ASID 1")
                self.assertEqual([(e["iova"], e["size"], e["perm"]) for e in d.rpc.iotlb("c0", asid=0)], RAM_LAYOUT, "guest RAM in ASID 0")
                self.assertEqual(d.rpc.call("get_config", device="c0")["mac"], "52:54:00:aa:bb:01", "the MAC QEMU sent")
                self.assertEqual(dev["stats"]["cvq_successes"], round_, "one successful control command per start")
                self.assertEqual(dev["stats"]["cvq_errors"], 0)
                self.assertEqual((dev["stats"]["atomic_index_stores"], dev["stats"]["copied_index_stores"]), (round_, 0),
                                 "every used idx stored by the library's agent as one aligned store")
                pci.set_status(0)
                self.assertTrue(d.wait(lambda: d.rpc.call("get_status", device="c0")["status"] & DRIVER_OK == 0))
            self.assertEqual(q.quit(), 0)
            self.assertTrue(d.wait(lambda: d.rpc.call("get_device", device="c0")["owner"] is None), "released at exit")
            self.assertEqual(vhost_errors(q.stderr()), [])
            return starts
        finally:
            d.stop()

    def test_vdpasim_net(self):
        starts = self.run_cvq("vdpasim_net")
        print(f"\n  QEMU 10.0 device start with the CVQ served by vdpad: {starts[0] * 1000:.1f} ms, restart {starts[1] * 1000:.1f} ms", end="")

    def test_mlx5_net(self):
        self.run_cvq("mlx5_net")


class GuestTests(unittest.TestCase):
    """A Linux guest (Debian's kernel + busybox, scripts/fetch-guest.sh) boots under TCG on a vdpad device."""

    GUEST = os.path.join(os.environ.get("VDPAD_CACHE", os.path.expanduser("~/.cache/vdpad")), "guest")

    def test_linux_guest_sees_vdpads_nic(self):
        kernel, initrd = os.path.join(self.GUEST, "vmlinuz"), os.path.join(self.GUEST, "initrd.img")
        self.assertTrue(os.path.exists(kernel) and os.path.exists(initrd), "scripts/fetch-guest.sh prepares the guest")
        # mlx5 ignores QEMU's SET_CONFIG of its MAC (R49), so what the guest shows is vdpad's own.
        d = Daemon({"g0": {"mgmtdev": "mlx5_net", "mac": "02:00:00:00:00:42", "mtu": 4000}})
        try:
            d.rpc.call("set_link", device="g0", link="down")
            serial = os.path.join(d.dir, "serial.txt")
            started = time.monotonic()
            qemu = subprocess.Popen(
                [VDPAD_RUN, "-s", d.socket, "--device", "/dev/vhost-vdpa-0=g0", "--", "qemu-system-x86_64", "-M", "pc",
                 "-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
                 "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet",
                 "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0",
                 # host_mtu makes QEMU offer MTU; the value the guest reads is the device's (vdpad's) config.
                 "-device", "virtio-net-pci,netdev=n0,host_mtu=9000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.addCleanup(lambda: qemu.poll() is None and qemu.kill())

            def guest_line():
                with open(serial, errors="replace") as f:
                    return next((l for l in f if l.startswith("VDPAD-GUEST ") and "VDPAD-GUEST-UP" not in l), None)
            self.assertTrue(d.wait(lambda: os.path.exists(serial) and guest_line() is not None, seconds=120), "the guest came up")
            boot_s = time.monotonic() - started
            # While the guest runs: the device is live and guest RAM is mapped in ASID 0.
            dev = d.rpc.call("get_device", device="g0")
            self.assertEqual(dev["status"], 0xF)
            ram = [e for e in d.rpc.iotlb("g0") if e["iova"] == 0x100000]
            self.assertEqual([(e["size"], e["perm"]) for e in ram], [(0xFF00000, "rw")], "guest RAM above 1 MiB")
            fields = dict(kv.split("=", 1) for kv in guest_line().split()[1:])
            self.assertEqual(fields["driver"], "virtio_net")
            self.assertEqual(fields["mac"], "02:00:00:00:00:42")
            self.assertEqual(fields["mtu"], "4000")
            self.assertEqual(fields["carrier"], "0", "link down in vdpad's config")
            self.assertEqual(qemu.wait(120), 0)
            _, err = qemu.communicate()
            self.assertEqual(vhost_errors(err), qemu72_on_mlx5(2))
            self.assertTrue(d.wait(lambda: d.rpc.call("get_device", device="g0")["owner"] is None))
            print(f"\n  Linux guest on vdpad: up in {boot_s:.1f} s (TCG)", end="")
        finally:
            d.stop()


class Guest10Tests(unittest.TestCase):
    """A Linux guest under QEMU 10.0: `ip link set eth0 address` travels through QEMU's shadow CVQ to vdpad."""

    def test_guest_mac_change_reaches_vdpad(self):
        command, env = qemu10()
        kernel, initrd = os.path.join(GuestTests.GUEST, "vmlinuz"), os.path.join(GuestTests.GUEST, "initrd.img")
        d = Daemon({"g0": {"mgmtdev": "vdpasim_net", "mac": "02:00:00:00:00:42"}})
        try:
            serial = os.path.join(d.dir, "serial.txt")
            qemu = subprocess.Popen(
                [VDPAD_RUN, "-s", d.socket, "--device", "/dev/vhost-vdpa-0=g0", "--", *command, "-M", "pc",
                 "-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
                 "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet",
                 "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0",
                 "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:00:42"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            self.addCleanup(lambda: qemu.poll() is None and qemu.kill())
            self.assertEqual(qemu.wait(120), 0)
            qemu.communicate()
            with open(serial, errors="replace") as f:
                lines = [l for l in f if l.startswith("VDPAD-GUEST-MAC ")]
            self.assertEqual(len(lines), 1, "the guest changed its MAC")
            self.assertIn("mac=02:12:34:56:78:9a", lines[0])
            self.assertEqual(d.rpc.call("get_config", device="g0")["mac"], "02:12:34:56:78:9a",
                             "the MAC the guest set, through QEMU's shadow CVQ and vdpad's data path")
            stats = d.rpc.call("get_device", device="g0")["stats"]
            self.assertGreaterEqual(stats["cvq_successes"], 2, "QEMU's MAC at start, then the guest's")
        finally:
            d.stop()


class ProbeTests(unittest.TestCase):
    """vmm_probe: a C VMM under vdpad-run, for block devices and the hostile cases."""

    @classmethod
    def setUpClass(cls):
        cls.probe = os.path.join(tempfile.mkdtemp(), "vmm_probe")
        subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", cls.probe,
                        os.path.join(ROOT, "tests", "preload", "vmm_probe.c")], check=True)

    def probe_command(self, d, device, mode, *args):
        """vmm_probe MODE under vdpad-run, with /dev/vhost-vdpa-7 for `device` on `d`."""
        return [VDPAD_RUN, "-s", d.socket, "--device", f"/dev/vhost-vdpa-7={device}", "--", self.probe, mode, "/dev/vhost-vdpa-7", *args]

    def probe_run(self, d, device, mode, *args, **kwargs):
        return subprocess.run(self.probe_command(d, device, mode, *args), capture_output=True, text=True, **kwargs)

    def test_block_device_kernel_sequence(self):
        d = Daemon({"blk0": {"mgmtdev": "vdpasim_blk"}})
        try:
            r = self.probe_run(d, "blk0", "blk")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertTrue(d.wait(lambda: d.rpc.call("get_device", device="blk0")["owner"] is None))
        finally:
            d.stop()

    def test_the_ioctl_benchmark_reaches_the_daemon(self):
        # scripts/bench-preload.sh's measurement: every GET_VRING_BASE answered by the daemon (it once measured
        # the owner gate's EPERM, in nanoseconds, without anyone noticing).
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}})
        try:
            r = self.probe_run(d, "n0", "bench", "200", timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("ns mean over 200", r.stdout)
            self.assertGreaterEqual(d.rpc.call("get_stats")["requests"], 1200, "each ioctl a request (warm-up included)")
            # The poll benchmark's ppolls find no pipe ready (a failure is counted otherwise) through the library.
            r = self.probe_run(d, "n0", "poll-bench", "200", timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("ns through the library", r.stdout)
            self.assertNotIn("checks failed", r.stdout)
        finally:
            d.stop()

    def test_a_closed_file_can_be_opened_again_at_once(self):
        # The kernel releases the device inside close(): an open() right after it never meets the old session
        # (EBUSY) — the library tells the daemon before close() returns, not when the connection's end is seen.
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}})
        try:
            r = self.probe_run(d, "n0", "reopen", "1000", timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertTrue(d.wait(lambda: d.rpc.call("get_device", device="n0")["owner"] is None))
        finally:
            d.stop()

    def test_an_owner_killed_and_reaped_leaves_the_device_free(self):
        # The kernel releases a dead process's file before it can be reaped: a harness that kills its VMM with
        # SIGKILL, waits for it and starts the next one at once never meets EBUSY (vdpad asks the owner's connection
        # whether its client hung up, rather than waiting to read the end).
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}})
        try:
            r = self.probe_run(d, "n0", "killed-owner", "1000", timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            d.stop()

    def test_a_close_does_not_hang_on_a_stopped_daemon(self):
        # The file's last close tells the daemon (so an open right after finds the device free), but waits for
        # its answer at most 2 s: a stopped daemon makes close() slow, never stuck; the end of the connection,
        # read once the daemon runs again, releases the device all the same.
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}})
        try:
            p = subprocess.Popen(self.probe_command(d, "n0", "close-later"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline().strip(), "ready")
            d.proc.send_signal(signal.SIGSTOP)

            def stopped():  # every thread of the daemon, not just the signal sent
                task = f"/proc/{d.proc.pid}/task"
                return all(open(f"{task}/{t}/stat").read().rsplit(")", 1)[1].split()[0] == "T" for t in os.listdir(task))

            self.assertTrue(d.wait(stopped), "the daemon stops")
            try:
                out, _ = p.communicate("go\n", timeout=20)
            finally:
                d.proc.send_signal(signal.SIGCONT)
            self.assertEqual(p.returncode, 0, out)
            took = int(out.split("closed in ")[1].split()[0])
            self.assertTrue(1900 <= took < 6000, out)
            self.assertTrue(d.wait(lambda: d.rpc.call("get_device", device="n0")["owner"] is None))
        finally:
            d.stop()

    def test_net_device_kernel_sequence(self):
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}})
        try:
            r = self.probe_run(d, "n0", "net")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            d.stop()

    def test_control_queue_served(self):
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}, "m0": {"mgmtdev": "mlx5_net"}})
        try:
            for device in ("n0", "m0"):
                for mode in ("cvq", "cvq-asid1"):
                    r = self.probe_run(d, device, mode, timeout=30)
                    self.assertEqual(r.returncode, 0, f"{device} {mode}: {r.stdout}{r.stderr}")
            stats = d.rpc.call("get_device", device="n0")["stats"]
            self.assertEqual((stats["cvq_requests"], stats["cvq_successes"], stats["cvq_errors"]), (2, 2, 0))
            self.assertEqual((stats["atomic_index_stores"], stats["copied_index_stores"]), (2, 0))
            # The same run in the CVQ's queue counters (get_vstats' fields): 2 fetched, 2 completed, each an
            # 8-byte MAC_ADDR_SET read and a 1-byte ack written.
            cvq = d.rpc.call("get_device", device="n0")["queues"][2]
            self.assertEqual((cvq["queue_type"], cvq["received_desc"], cvq["completed_desc"], cvq["bytes"], cvq["errors"]),
                             ("control_vq", 2, 2, 18, 0))
        finally:
            d.stop()

    def test_data_queues_loop_frames_and_serve_blocks(self):
        # The data path over the VMM's private memory (process_vm_readv/writev): vdpa_sim_net's loopback on the
        # first queue pair, vdpa_sim_blk's request queue over its RAM disk; the queue counters agree.
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}, "b0": {"mgmtdev": "vdpasim_blk"}, "m0": {"mgmtdev": "mlx5_net"}})
        try:
            for device in ("n0", "m0"):
                r = self.probe_run(d, device, "net-loop", timeout=60)
                self.assertEqual(r.returncode, 0, f"{device}: {r.stdout}{r.stderr}")
                queues = d.rpc.call("get_device", device=device)["queues"]
                rx, tx = queues[0], queues[1]
                self.assertEqual((tx["queue_type"], tx["received_desc"], tx["completed_desc"]), ("tx", 3, 3), device)
                self.assertEqual((rx["queue_type"], rx["received_desc"], rx["completed_desc"], rx["drops"]), ("rx", 2, 2, 1), device)
                self.assertEqual(rx["bytes"], (12 + 1514) + (12 + 100), device)
            r = self.probe_run(d, "b0", "blk-io", timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            q = d.rpc.call("get_device", device="b0")["queues"][0]
            self.assertEqual((q["queue_type"], q["received_desc"], q["completed_desc"], q["errors"]), ("request", 5, 5, 1))
            self.assertEqual(q["bytes"], 2048 + 2048 + 20)
        finally:
            d.stop()

    def test_owner_gate_perm_and_invalidate_of_size_zero(self):
        # Three of the four differences a real 6.12 kernel showed (issue 25): the owner gate before SET_OWNER (R41,
        # R5), perm 0 and 7 stored as given (edge #14), INVALIDATE of size 0 (R2, corrected).
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}})
        try:
            r = self.probe_run(d, "n0", "owner-gate", timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)  # every check is the probe's; it prints each failure
            self.assertEqual(d.rpc.call("get_device", device="n0")["stats"]["map_calls"], 6, "only the owner's six maps landed")
        finally:
            d.stop()

    def test_data_queues_on_shared_memory(self):
        # The same frames and requests on a memfd the preload library shares with vdpad, mapped at IOVA 1 GiB (not
        # at its address): every access goes through vdpad's mapping of the file, none through process_vm_readv;
        # the probe's munmap at the end tells vdpad to drop the region.
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}, "b0": {"mgmtdev": "vdpasim_blk"}})
        try:
            for device, mode, done in (("n0", "net-loop-shared", 3 + 2), ("b0", "blk-io-shared", 5)):
                r = self.probe_run(d, device, mode, timeout=60)
                self.assertEqual(r.returncode, 0, f"{device}: {r.stdout}{r.stderr}")
                dev = d.rpc.call("get_device", device=device)
                stats = dev["stats"]
                self.assertGreater(stats["shared_accesses"], 0, device)
                self.assertEqual(stats["process_vm_accesses"], 0, f"{device}: nothing copied through process_vm")
                self.assertEqual(stats["atomic_index_stores"], done, f"{device}: one per used entry")
                self.assertEqual(stats["copied_index_stores"], 0, f"{device}: every used idx is one release store")
                self.assertEqual((stats["unshares"], stats["shares_refused"]), (1, 0), f"{device}: the munmap reached vdpad")
                self.assertEqual(dev["shared_memory"], {"regions": [], "bytes": 0}, "the session ended")
            rx, tx = d.rpc.call("get_device", device="n0")["queues"][:2]
            self.assertEqual((tx["completed_desc"], rx["completed_desc"], rx["drops"]), (3, 2, 1))
            q = d.rpc.call("get_device", device="b0")["queues"][0]
            self.assertEqual((q["received_desc"], q["completed_desc"], q["errors"]), (5, 5, 1))
        finally:
            d.stop()

    def test_private_memory_is_not_shared(self):
        # VDPAD_VHOST_SHARE=0: the same run on the memfd, every access through process_vm_readv/writev.
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}})
        try:
            r = self.probe_run(d, "n0", "net-loop-shared", timeout=60, env={**os.environ, "VDPAD_VHOST_SHARE": "0"})
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            stats = d.rpc.call("get_device", device="n0")["stats"]
            self.assertEqual((stats["shared_accesses"], stats["unshares"]), (0, 0))
            self.assertGreater(stats["process_vm_accesses"], 0)
        finally:
            d.stop()

    def test_block_backing_file_keeps_the_data(self):
        # A vdpasim_blk device with a backing file: what the VMM wrote is in the file after it exits, at its offset.
        backing = os.path.join(tempfile.mkdtemp(), "disk.img")
        d = Daemon({"b1": {"mgmtdev": "vdpasim_blk", "backing": backing}})
        try:
            r = self.probe_run(d, "b1", "blk-io", timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            d.stop()
        with open(backing, "rb") as f:
            f.seek(8 * 512)
            written = f.read(2048)
        self.assertEqual(os.path.getsize(backing), 0x40000 * 512)
        self.assertEqual(written, bytes((i * 7 + 1) & 0xFF for i in range(2048)))

    def test_control_queue_gates_and_a_hostile_vmm(self):
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}, "n1": {"mgmtdev": "vdpasim_net"}})
        try:
            r = self.probe_run(d, "n0", "cvq-gates", timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # As vdpasim_handle_cvq counts them: a descriptor loop nothing (vringh refuses the chain before the
            # request is counted), a command in an unmapped buffer a request and an error, 10,000 kicks nothing;
            # a good command after them is served, and another device's RPCs are answered meanwhile.
            p = subprocess.Popen(self.probe_command(d, "n1", "cvq-evil"), stdout=subprocess.PIPE, text=True)
            for _ in range(20):
                self.assertEqual(d.rpc.call("get_config", device="n0")["link"], "up")
            out, _ = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, out)
            stats = d.rpc.call("get_device", device="n1")["stats"]
            self.assertEqual((stats["cvq_requests"], stats["cvq_successes"], stats["cvq_errors"]), (2, 1, 1))
            # The unreadable command is received and an error but never completed; the good one completes.
            cvq = d.rpc.call("get_device", device="n1")["queues"][2]
            self.assertEqual((cvq["received_desc"], cvq["completed_desc"], cvq["errors"]), (2, 1, 1))
        finally:
            d.stop()

    def test_two_threads_one_fd(self):
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}})
        try:
            r = self.probe_run(d, "n0", "threads")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            d.stop()

    def test_killed_mid_batch(self):
        d = Daemon({"n0": {"mgmtdev": "vdpasim_net"}, "n1": {"mgmtdev": "vdpasim_net"}})
        try:
            # Another VMM's device, which must not be disturbed.
            other = socket.socket(socket.AF_UNIX)
            other.connect(d.socket)
            other.sendall(b'{"jsonrpc":"2.0","id":1,"method":"open","params":{"device":"n1"}}\n'
                          b'{"jsonrpc":"2.0","id":2,"method":"map","params":{"device":"n1","iova":0,"size":4096,"addr":4096,"perm":"rw"}}\n')
            time.sleep(0.2)
            p = subprocess.Popen(self.probe_command(d, "n0", "hold", "500"), stdout=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline().strip(), "mapped")
            self.assertEqual(len(d.rpc.iotlb("n0")), 500)
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stdout.close()
            self.assertTrue(d.wait(lambda: d.rpc.call("get_device", device="n0")["owner"] is None), "released")
            dev = d.rpc.call("get_device", device="n0")
            self.assertEqual(dev["asids"][0]["session_entries"], None, "the batch's table went with the session")
            self.assertEqual(len(d.rpc.iotlb("n1")), 1, "the other VMM's device is untouched")
            self.assertIsNotNone(d.rpc.call("get_device", device="n1")["owner"])
            other.close()
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
