"""Records the QEMU 7.2 trace kept as a test fixture: boot (DRIVER_OK), guest reset, restart, reset, quit,
on a vdpasim_net device, through `vdpad-run --record --anonymize`.

    python3 tests/qemu/record_trace.py Tests/Fixtures/qemu-7.2-boot-reset-restart.jsonl

The replay test (EndToEndTests/ReplayTests.swift) plays it against every mgmtdev, legacy and not."""
import os
import sys
import time

from test_vmm import DRIVER_FEATURES, RINGS, VDPAD_RUN, Daemon
from vdpad_qemu import Qemu, VirtioNetPci

out = os.path.abspath(sys.argv[1])
if os.path.exists(out):
    os.remove(out)
d = Daemon({"vdpa0": {"mgmtdev": "vdpasim_net", "mac": "52:54:00:12:34:56"}})
try:
    q = Qemu(VDPAD_RUN, d.socket, "vdpa0", extra=("-qtest-log", "/dev/null"), run_args=("--record", out, "--anonymize"))
    pci = VirtioNetPci(q.qt)
    for _ in range(2):
        pci.start(DRIVER_FEATURES, RINGS)
        pci.set_status(0)
        d.wait(lambda: d.rpc.call("get_status", device="vdpa0")["status"] == 3)
    assert q.quit() == 0
    time.sleep(0.2)
finally:
    d.stop()
print(f"{sum(1 for _ in open(out))} calls recorded in {out}")
