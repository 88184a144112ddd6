"""vdpad against a real kernel (issue 25): one scripted list of vhost-vdpa calls (tests/kernel/vhost_probe.c)
runs against Linux 6.12's own vhost_vdpa — Debian's bookworm-backports kernel booted under TCG
(scripts/fetch-kernel612.sh), on a VDUSE virtio-blk device made by tests/kernel/vduse_blk.c — and against
vdpad's vdpasim_blk through libvdpad-vhost.so; the transcripts must agree on every call but those whose
answer the parent decides (PARENT below, each with its reason) and those vdpad answers otherwise on
purpose (DELIBERATE).  The kernel's transcript is kept as a fixture (tests/kernel/fixtures), so the
comparison with vdpad also runs from it; the live guest's must equal it.  A device made for 6.8 must
differ exactly where 6.8 does (docs/kernel-rules.md, "By kernel version").

Run by scripts/test.sh with the rest of tests/qemu.  VDPAD_RECORD_KERNEL_FIXTURE=1 rewrites the fixture
from the live guest."""
import os
import subprocess
import tempfile
import unittest

import guest
from test_vmm import ROOT, VDPAD_RUN, Daemon

KERNEL_DIR = os.path.join(os.environ.get("VDPAD_CACHE", os.path.expanduser("~/.cache/vdpad")), "kernel-6.12")
FIXTURE = os.path.join(ROOT, "tests", "kernel", "fixtures", "linux-6.12-vduse-blk.txt")

# Calls whose answer the parent decides, not the vhost-vdpa layer: VDUSE (as 6.12 has it) against vdpa_sim_blk.
PARENT = {
    "GET_FEATURES": "the virtio features the parent offers (the VDUSE device's own set; vdpa_sim_blk's)",
    "GET_CONFIG_SIZE": "the parent's config size (the VDUSE device gave 60 bytes; vdpa_sim_blk has 96)",
    "GET_BACKEND_FEATURES": "offered by the parent's ops: VDUSE has no suspend, resume or reset_map",
    "GET_VRING_GROUP 0": "VDUSE on 6.12 has no get_vq_group (EOPNOTSUPP); vdpa_sim_blk has one group",
    "SET_GROUP_ASID 0 0": "VDUSE on 6.12 has no set_group_asid (EOPNOTSUPP)",
    "GET_VRING_SIZE 0": "VDUSE has get_vq_size (256); no parent vdpad models has it in the ops vhost-vdpa gets",
    "SUSPEND": "VDUSE has no suspend op (EOPNOTSUPP); vdpa_sim has",
    "RESUME": "VDUSE has no resume op (EOPNOTSUPP); vdpa_sim has",
    "SET_FEATURES without ACCESS_PLATFORM": "vdpa_sim refuses a driver without it (EINVAL); VDUSE takes any",
    "GET_FEATURES after SET_FEATURES": "the virtio features the parent offers, as GET_FEATURES",
}

# Where vdpad answers otherwise on purpose (docs/protocol.md §7), each with its reason.
DELIBERATE = {
    "SET_FEATURES a bit not offered": "EINVAL: the virtio spec forbids it (the kernel takes it; vdpa_sim masks it off)",
}

# Where a 6.8 device answers otherwise than 6.12 (beyond PARENT): R59/R60 after SUSPEND before DRIVER_OK marked
# the device suspended on 6.8 (R66), so ring changes while running are accepted, and the base read back is the
# one set; GET_VRING_SIZE does not exist yet (R46).
DIFFERENT_ON_68 = {"SET_VRING_BASE while running", "SET_VRING_ADDR while running", "GET_VRING_BASE while running"}


def parse(lines):
    """Transcript lines → [(step, call, answer)]; comments and the end marker are left out."""
    calls = []
    for l in lines:
        l = l.strip()
        if not l or l.startswith("#") or l == "end":
            continue
        step, rest = l.split(" ", 1)
        call, answer = rest.split(" r=", 1)
        calls.append((int(step), call, "r=" + answer))
    return calls


def differences(a, b, ignore=()):
    """The calls where two transcripts answer otherwise, as (call, a's answer, b's answer)."""
    if [(s, c) for s, c, _ in a] != [(s, c) for s, c, _ in b]:
        raise AssertionError("the transcripts are not of the same list of calls")
    return [(c, x, y) for (_, c, x), (_, _, y) in zip(a, b) if x != y and c not in ignore]


class KernelDifferentialTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="vdpad-kernel-")
        # On the host the probe goes through the preload library: dynamically linked (a static binary ignores LD_PRELOAD).
        cls.probe = os.path.join(cls.work, "vhost_probe")
        subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", cls.probe,
                        os.path.join(ROOT, "tests", "kernel", "vhost_probe.c")], check=True)
        with open(FIXTURE) as f:
            cls.fixture = parse(f)

    def vdpad_transcript(self, kernel=None):
        params = {"mgmtdev": "vdpasim_blk", **({"kernel": kernel} if kernel else {})}
        d = Daemon({"b0": params})
        try:
            r = subprocess.run([VDPAD_RUN, "-s", d.socket, "--device", "/dev/vhost-vdpa-0=b0", "--", self.probe, "/dev/vhost-vdpa-0"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertTrue(r.stdout.rstrip().endswith("end"), r.stdout)
            return parse(r.stdout.splitlines())
        finally:
            d.stop()

    def test_vdpad_answers_as_linux_6_12(self):
        # The default device (kernel 6.12) against the kernel's transcript: no difference in the vhost-vdpa layer.
        mine = self.vdpad_transcript()
        self.assertEqual(len(mine), len(self.fixture))
        self.assertEqual(differences(self.fixture, mine, ignore={**PARENT, **DELIBERATE}), [])
        declared = differences(self.fixture, mine)
        self.assertEqual({c for c, _, _ in declared}, set(PARENT) | set(DELIBERATE), "each declared difference is one the test sees")
        print(f"\n  {len(mine)} calls: {len(mine) - len(declared)} the same as Linux 6.12, {len(declared) - len(DELIBERATE)} the parent's, "
              f"{len(DELIBERATE)} on purpose", end="")

    def test_a_68_device_differs_where_68_does(self):
        mine = self.vdpad_transcript("6.8")
        diff = differences(self.fixture, mine, ignore={**PARENT, **DELIBERATE})
        self.assertEqual({c for c, _, _ in diff}, DIFFERENT_ON_68, diff)
        size = next(a for _, c, a in mine if c == "GET_VRING_SIZE 0")
        self.assertEqual(size, "r=-1 e=ENOTTY", "GET_VRING_SIZE does not exist on 6.8 (R46)")

    def test_the_real_kernel_in_a_guest(self):
        # Linux 6.12 booted under TCG: vduse_blk makes /dev/vhost-vdpa-0, the probe runs against it.
        kernel, initrd = os.path.join(KERNEL_DIR, "vmlinuz"), os.path.join(KERNEL_DIR, "initrd.img")
        self.assertTrue(os.path.exists(kernel) and os.path.exists(initrd), "scripts/fetch-kernel612.sh prepares the guest")
        script = "/bin/vduse_blk vduse-blk0\n/bin/vhost_probe /dev/vhost-vdpa-0 | sed 's/^/VDPAD-PROBE /'\npoweroff -f\n"
        rd = guest.initrd(self.work, script, ["vduse_blk", "vhost_probe"], base=initrd, folder="kernel")
        r = subprocess.run(["qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-m", "512", "-nodefaults", "-display", "none",
                            "-no-reboot", "-serial", "stdio", "-kernel", kernel, "-initrd", rd,
                            "-append", "console=ttyS0 panic=-1 quiet loglevel=1"], capture_output=True, text=True, timeout=180)
        self.assertIn("VDPAD-VDUSE ready", r.stdout, r.stdout[-3000:])
        lines = [l[len("VDPAD-PROBE "):] for l in r.stdout.splitlines() if l.startswith("VDPAD-PROBE ")]
        self.assertEqual(lines[-1:], ["end"], r.stdout[-3000:])
        live = parse(lines)
        if os.environ.get("VDPAD_RECORD_KERNEL_FIXTURE") == "1":
            with open(FIXTURE) as f:
                header = [l for l in f if l.startswith("#")]
            with open(FIXTURE, "w") as f:
                f.writelines(header + [l + "\n" for l in lines])
        self.assertEqual(differences(self.fixture, live), [], "the kernel answers as its recorded transcript")
        self.assertEqual(differences(live, self.vdpad_transcript(), ignore={**PARENT, **DELIBERATE}), [], "vdpad answers as the live kernel")


if __name__ == "__main__":
    unittest.main()
