"""Drive an unmodified QEMU's vhost-vdpa backend against vdpad, without a guest OS.

QEMU runs under vdpad-run (libvdpad-vhost.so preloaded) with its virtio-net-pci
device on `-netdev type=vhost-vdpa`.  This module is the guest driver, speaking
QEMU's qtest text protocol (`-qtest unix:…`): PCI config through 0xcf8/0xcfc,
the modern virtio-pci capabilities, feature negotiation, three split rings in
guest RAM, DRIVER_OK.  It also speaks JSON-RPC to vdpad, to assert vdpad's own
view at each step.  Standard library only.
"""
import json
import os
import socket
import struct
import subprocess
import tempfile
import time

PAGE = 4096
VIRTIO_VENDOR = 0x1AF4
VIRTIO_NET_MODERN = 0x1041
# virtio_pci_common_cfg offsets
DEVICE_FEATURE_SELECT, DEVICE_FEATURE, DRIVER_FEATURE_SELECT, DRIVER_FEATURE = 0x00, 0x04, 0x08, 0x0C
NUM_QUEUES, DEVICE_STATUS, QUEUE_SELECT, QUEUE_SIZE = 0x12, 0x14, 0x16, 0x18
QUEUE_ENABLE, QUEUE_DESC, QUEUE_DRIVER, QUEUE_DEVICE = 0x1C, 0x20, 0x28, 0x30
ACK, DRIVER, DRIVER_OK, FEATURES_OK = 1, 2, 4, 8


class Vdpad:
    """A minimal JSON-RPC client for vdpad (one connection per call: the test is an admin)."""

    def __init__(self, path):
        self.path = path

    def call(self, method, **params):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.path)
            s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def iotlb(self, device, asid=0, layer="session"):
        entries, first = [], 0
        while first is not None:
            page = self.call("dump_iotlb", device=device, asid=asid, layer=layer, first=first, limit=65536)
            entries += page["entries"]
            first = page["next"]
        return entries


class QTest:
    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def cmd(self, line):
        self.conn.sendall((line + "\n").encode())
        while True:
            while b"\n" not in self.buf:
                chunk = self.conn.recv(4096)
                if not chunk:
                    raise RuntimeError(f"qtest closed during {line!r}")
                self.buf += chunk
            reply, self.buf = self.buf.split(b"\n", 1)
            reply = reply.decode()
            if reply.startswith("IRQ"):
                continue
            if not reply.startswith("OK"):
                raise RuntimeError(f"qtest {line!r}: {reply}")
            return reply[3:].strip()

    def outl(self, port, v): self.cmd(f"outl 0x{port:x} 0x{v:x}")
    def inl(self, port): return int(self.cmd(f"inl 0x{port:x}"), 16)
    def readb(self, a): return int(self.cmd(f"readb 0x{a:x}"), 16)
    def readw(self, a): return int(self.cmd(f"readw 0x{a:x}"), 16)
    def readl(self, a): return int(self.cmd(f"readl 0x{a:x}"), 16)
    def writeb(self, a, v): self.cmd(f"writeb 0x{a:x} 0x{v:x}")
    def writew(self, a, v): self.cmd(f"writew 0x{a:x} 0x{v:x}")
    def writel(self, a, v): self.cmd(f"writel 0x{a:x} 0x{v:x}")
    def writeq(self, a, v): self.cmd(f"writeq 0x{a:x} 0x{v:x}")


class VirtioNetPci:
    """The modern virtio-pci transport of one device, driven over qtest."""

    BAR_BASE = 0xE0000000

    def __init__(self, qt):
        self.qt = qt
        self.devfn = self.find()
        self.caps = self.capabilities()
        self.map_bars()

    def cfg_addr(self, reg):
        return 0x80000000 | (self.devfn << 8) | (reg & 0xFC)

    def cfg_read(self, reg, size=4):
        self.qt.outl(0xCF8, self.cfg_addr(reg))
        v = self.qt.inl(0xCFC) >> (8 * (reg & 3))
        return v & ((1 << (8 * size)) - 1)

    def cfg_write32(self, reg, v):
        self.qt.outl(0xCF8, self.cfg_addr(reg))
        self.qt.outl(0xCFC, v)

    def find(self):
        for devfn in range(0, 256, 8):
            self.devfn = devfn
            ident = self.cfg_read(0)
            if ident & 0xFFFF == VIRTIO_VENDOR and ident >> 16 == VIRTIO_NET_MODERN:
                return devfn
        raise RuntimeError("no modern virtio-net-pci device on bus 0")

    def capabilities(self):
        caps, ptr = {}, self.cfg_read(0x34, 1)
        while ptr:
            cap_id, nxt = self.cfg_read(ptr, 1), self.cfg_read(ptr + 1, 1)
            if cap_id == 0x09:  # vendor specific: a virtio structure
                cfg_type, bar = self.cfg_read(ptr + 3, 1), self.cfg_read(ptr + 4, 1)
                offset = self.cfg_read(ptr + 8)
                extra = self.cfg_read(ptr + 16) if cfg_type == 2 else 0
                caps.setdefault(cfg_type, (bar, offset, extra))
            ptr = nxt
        return caps

    def map_bars(self):
        bars = {bar for bar, _, _ in self.caps.values()}
        self.bar_addr = {}
        for k, bar in enumerate(sorted(bars)):
            addr = self.BAR_BASE + k * 0x100000
            self.cfg_write32(0x10 + 4 * bar, addr)
            if self.cfg_read(0x10 + 4 * bar) & 0x6 == 0x4:  # 64-bit BAR: the upper half
                self.cfg_write32(0x14 + 4 * bar, 0)
            self.bar_addr[bar] = addr
        self.cfg_write32(0x04, self.cfg_read(0x04) | 0x6)  # memory space + bus master
        bar, off, _ = self.caps[1]
        self.common = self.bar_addr[bar] + off
        bar, off, _ = self.caps[4]
        self.device_cfg = self.bar_addr[bar] + off

    def status(self):
        return self.qt.readb(self.common + DEVICE_STATUS)

    def set_status(self, v):
        self.qt.writeb(self.common + DEVICE_STATUS, v)

    def device_features(self):
        f = 0
        for sel in (0, 1):
            self.qt.writel(self.common + DEVICE_FEATURE_SELECT, sel)
            f |= self.qt.readl(self.common + DEVICE_FEATURE) << (32 * sel)
        return f

    def set_driver_features(self, f):
        for sel in (0, 1):
            self.qt.writel(self.common + DRIVER_FEATURE_SELECT, sel)
            self.qt.writel(self.common + DRIVER_FEATURE, (f >> (32 * sel)) & 0xFFFFFFFF)

    def mac(self):
        return ":".join(f"{self.qt.readb(self.device_cfg + k):02x}" for k in range(6))

    def link_status(self):
        return self.qt.readw(self.device_cfg + 6)

    def start(self, features, rings):
        """Reset, negotiate `features` (masked by the offer), place `rings` ({vq: (desc, driver, device)}),
        DRIVER_OK.  Returns (negotiated features, {vq: queue size})."""
        self.set_status(0)
        self.set_status(ACK)
        self.set_status(ACK | DRIVER)
        negotiated = features & self.device_features()
        self.set_driver_features(negotiated)
        self.set_status(ACK | DRIVER | FEATURES_OK)
        if not self.status() & FEATURES_OK:
            raise RuntimeError("the device refused FEATURES_OK")
        sizes = {}
        for vq, (desc, driver, device) in rings.items():
            self.qt.writew(self.common + QUEUE_SELECT, vq)
            sizes[vq] = self.qt.readw(self.common + QUEUE_SIZE)
            self.qt.writeq(self.common + QUEUE_DESC, desc)
            self.qt.writeq(self.common + QUEUE_DRIVER, driver)
            self.qt.writeq(self.common + QUEUE_DEVICE, device)
            self.qt.writew(self.common + QUEUE_ENABLE, 1)
        self.set_status(ACK | DRIVER | FEATURES_OK | DRIVER_OK)
        return negotiated, sizes


class Qemu:
    """QEMU 7.2 under vdpad-run, its qtest connection, its QMP socket and its stderr."""

    def __init__(self, vdpad_run, socket_path, device, memory_mb=256, extra=(), run_args=(), qemu=("qemu-system-x86_64",), env=None):
        self.dir = tempfile.mkdtemp(prefix="vdpad-qemu-")
        bios = os.path.join(self.dir, "hlt.bin")
        with open(bios, "wb") as f:
            f.write(b"\xf4" * 65536)  # HLT everywhere: no firmware touches PCI
        qtest_path, self.qmp_path = os.path.join(self.dir, "qtest.sock"), os.path.join(self.dir, "qmp.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(qtest_path)
        listener.listen(1)
        self.stderr_path = os.path.join(self.dir, "qemu.err")
        self.memory = memory_mb << 20
        args = [vdpad_run, "-s", socket_path, "--device", f"/dev/vhost-vdpa-0={device}", *run_args, "--",
                *qemu, "-M", "pc", "-accel", "tcg", "-m", str(memory_mb), "-bios", bios,
                "-nodefaults", "-display", "none", "-serial", "none", "-monitor", "none",
                "-qtest", f"unix:{qtest_path}", "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0",
                "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,mac=52:54:00:aa:bb:01", *extra]
        self.started = time.monotonic()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
        listener.settimeout(30)
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            self.proc.kill()
            raise RuntimeError(f"QEMU never connected to qtest: {self.stderr()}")
        finally:
            listener.close()
        conn.settimeout(60)
        self.qt = QTest(conn)

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def qmp(self, command):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.qmp_path)
            f = s.makefile("rwb")
            json.loads(f.readline())  # greeting
            for c in ({"execute": "qmp_capabilities"}, {"execute": command}):
                f.write((json.dumps(c) + "\n").encode())
                f.flush()
                json.loads(f.readline())

    def quit(self, timeout=30):
        self.qmp("quit")
        status = self.proc.wait(timeout)
        self.qt.conn.close()
        return status

    def close(self):
        """Whatever happened: no QEMU left behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.qt.conn.close()
