"""Linux guests that run a test's own script: the cached guest (scripts/fetch-guest.sh) with an initramfs
appended that holds /test.sh and the static programs of tests/guest (the kernel unpacks concatenated
archives in order, so the appended files are added to the guest's own).  The guest's /init loads the
virtio and ext4 modules, then runs /test.sh, whose lines on the serial console the test parses."""
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUEST = os.path.join(os.environ.get("VDPAD_CACHE", os.path.expanduser("~/.cache/vdpad")), "guest")
KERNEL, BASE_INITRD = os.path.join(GUEST, "vmlinuz"), os.path.join(GUEST, "initrd.img")
_BUILT = os.path.join(tempfile.gettempdir(), "vdpad-guest-programs")


def program(name, folder="guest"):
    """tests/FOLDER/NAME.c built static (cached by the source's hash), for the guest to run."""
    source = os.path.join(ROOT, "tests", folder, name + ".c")
    with open(source, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    out = os.path.join(_BUILT, f"{name}-{digest}")
    if not os.path.exists(out):
        os.makedirs(_BUILT, exist_ok=True)
        subprocess.run(["cc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out + ".tmp", source], check=True)
        os.replace(out + ".tmp", out)
    return out


def initrd(directory, script, programs=(), base=BASE_INITRD, folder="guest"):
    """The guest's initramfs (`base`) with /test.sh (`script`, a shell script's body) and /bin/<name> for each
    program of tests/FOLDER appended; returns its path inside `directory`."""
    root = tempfile.mkdtemp(dir=directory)
    os.makedirs(os.path.join(root, "bin"))
    with open(os.path.join(root, "test.sh"), "w") as f:
        f.write("#!/bin/sh\n" + script)
    os.chmod(os.path.join(root, "test.sh"), 0o755)
    for name in programs:
        shutil.copy(program(name, folder), os.path.join(root, "bin", name))
    names = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    overlay = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=names, capture_output=True, check=True).stdout
    path = os.path.join(directory, "initrd-test.img")
    with open(base, "rb") as first, open(path, "wb") as out:
        out.write(first.read())
        out.write(gzip.compress(overlay, compresslevel=1))  # compressed as the base is: the kernel takes both in turn
    return path


def lines(serial, prefix):
    """The serial console's lines that start with `prefix`, as dicts of their key=value fields."""
    if not os.path.exists(serial):
        return []
    with open(serial, errors="replace") as f:
        return [dict(kv.split("=", 1) for kv in l.split()[1:] if "=" in kv) for l in f if l.startswith(prefix + " ")]


def tail(serial, size=2000):
    """The end of the serial console, for a failure's message."""
    if not os.path.exists(serial):
        return "(no serial output)"
    with open(serial, errors="replace") as f:
        return f.read()[-size:]
