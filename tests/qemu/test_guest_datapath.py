"""Linux guests move data through vdpad devices (issue 21): frames through a net device's loopback under
Debian's QEMU 7.2 and QEMU 10.0, and a disk through vdpasim_blk under QEMU 10.0's vhost-vdpa-device-pci —
with guest RAM shared with vdpad (memory-backend-memfd,share=on) and with private RAM (the process_vm
fallback).  The guests run tests/guest's programs (guest.py) and report on the serial console.

Run by scripts/test.sh with the rest of tests/qemu."""
import os
import subprocess
import tempfile
import time
import unittest

import guest
from test_vmm import VDPAD_RUN, Daemon, qemu10, vhost_errors

FRAMES = 200  # to its own MAC; a tenth as many to broadcast and to a foreign MAC

FRAMES_SCRIPT = f"""
for c in all default eth0; do echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done 2>/dev/null
ip link set eth0 up
sleep 1
/bin/frames eth0 {FRAMES}
s=/sys/class/net/eth0/statistics
echo "VDPAD-NIC tx_packets=$(cat $s/tx_packets) rx_packets=$(cat $s/rx_packets)"
poweroff -f
"""


def memory(shared):
    """QEMU's guest RAM: a memfd shared with vdpad, or QEMU's default private RAM."""
    if shared:
        return ["-object", "memory-backend-memfd,id=ram,size=256M,share=on", "-machine", "memory-backend=ram", "-m", "256"]
    return ["-m", "256"]


class FrameLoopTests(unittest.TestCase):
    """A guest's AF_PACKET program sends frames with sequence numbers and checksums on eth0: every frame to its
    own MAC and to broadcast comes back intact, none to a foreign MAC does, and vdpad's vstats agree."""

    def run_guest(self, qemu, env, shared, mgmtdev="vdpasim_net"):
        d = Daemon({"g0": {"mgmtdev": mgmtdev, "mac": "02:00:00:00:00:42"}})
        self.addCleanup(d.stop)
        serial = os.path.join(d.dir, "serial.txt")
        started = time.monotonic()
        p = subprocess.Popen(
            [VDPAD_RUN, "-s", d.socket, "--device", "/dev/vhost-vdpa-0=g0", "--", *qemu, "-M", "pc", "-accel", "tcg",
             *memory(shared), "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
             "-kernel", guest.KERNEL, "-initrd", guest.initrd(d.dir, FRAMES_SCRIPT, ["frames"]),
             "-append", "console=ttyS0 panic=-1 quiet",
             "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0",
             "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:00:42"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.assertEqual(p.wait(180), 0)
        _, err = p.communicate()
        self.assertEqual(vhost_errors(err), [])
        report, nic = guest.lines(serial, "VDPAD-FRAMES"), guest.lines(serial, "VDPAD-NIC")
        self.assertEqual(len(report), 1, f"the guest's program reported (serial: {guest.tail(serial)})")
        r, n = report[0], nic[0]
        tenth = FRAMES // 10
        self.assertEqual(r["own"], f"{FRAMES}/{FRAMES}", "every frame to its own MAC came back")
        self.assertEqual(r["intact"], str(FRAMES), "every one intact (sequence, length, checksum)")
        self.assertEqual(r["broadcast"], f"{tenth}/{tenth}")
        self.assertEqual(r["foreign"], f"0/{tenth}", "a frame to another MAC is dropped by the receive filter")
        # vdpad's counters against the guest's: the NIC sent only the program's frames (IPv6 is off, no IPv4).
        queues = d.rpc.call("get_device", device="g0")["queues"]
        rx, tx = queues[0], queues[1]
        sent = int(r["sent"])
        self.assertEqual(sent, FRAMES + 2 * tenth)
        self.assertEqual(int(n["tx_packets"]), sent, "the guest's NIC sent the program's frames and nothing else")
        self.assertEqual((tx["received_desc"], tx["completed_desc"]), (sent, sent), "vstats tx: every frame fetched and completed")
        self.assertEqual(rx["completed_desc"], FRAMES + tenth, "vstats rx: a buffer per frame that came back")
        self.assertEqual(int(n["rx_packets"]), rx["completed_desc"], "the guest received what vdpad delivered")
        self.assertEqual(rx["drops"], tenth, "vstats rx: the foreign frames dropped")
        stats = d.rpc.call("get_device", device="g0")["stats"]
        return stats, time.monotonic() - started

    def test_qemu72_shared_memory(self):
        stats, seconds = self.run_guest(["qemu-system-x86_64"], None, shared=True)
        self.assertGreater(stats["shared_accesses"], 0)
        self.assertEqual(stats["process_vm_accesses"], 0, "every ring and buffer in the shared guest RAM")
        self.assertEqual(stats["copied_index_stores"], 0)
        print(f"\n  QEMU 7.2 guest, shared RAM: {FRAMES + 2 * FRAMES // 10} frames checked in {seconds:.1f} s", end="")

    def test_qemu72_private_memory(self):
        stats, _ = self.run_guest(["qemu-system-x86_64"], None, shared=False)
        self.assertEqual(stats["shared_accesses"], 0)
        self.assertGreater(stats["process_vm_accesses"], 0)

    def test_qemu10_shared_memory(self):
        command, env = qemu10()
        # QEMU 10 isolates the CVQ in ASID 1 behind its own shadow ring (in QEMU's private memory): those
        # accesses go through process_vm; the data queues' rings and buffers are in the shared guest RAM.
        stats, seconds = self.run_guest(command, env, shared=True)
        self.assertGreater(stats["shared_accesses"], 0)
        print(f"\n  QEMU 10.0 guest, shared RAM: frames checked in {seconds:.1f} s", end="")

    def test_qemu10_private_memory(self):
        command, env = qemu10()
        stats, _ = self.run_guest(command, env, shared=False)
        self.assertEqual(stats["shared_accesses"], 0)


if __name__ == "__main__":
    unittest.main()
