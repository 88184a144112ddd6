"""Signals around an upgrade in place (docs/restart.md): a SIGTERM sent while
vdpad re-executes itself, or right after, stops it cleanly (exit status 0,
"stopped" in its log) — never lost (a daemon that never stops) and never the
default action (killed between the old image and the new one's signal set-up).
Before vdpad blocked its signals and took them with sigwaitinfo, a SIGTERM
right after an upgrade was seen lost."""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from manager import BINARY  # noqa: E402

ROUNDS = 12


@unittest.skipUnless(os.path.exists(BINARY), "build vdpad first (swift build)")
class SignalsAroundUpgrade(unittest.TestCase):
    def start(self, directory):
        path = os.path.join(directory, "vdpad.sock")
        with open(os.path.join(directory, "vdpad.log"), "wb") as log:
            process = subprocess.Popen(
                [BINARY, "--config", "/dev/null", "--socket", path, "--state-dir", os.path.join(directory, "state")],
                stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                return process, s
            except OSError:
                s.close()
                self.assertIsNone(process.poll(), "vdpad exited before it listened")
                self.assertLess(time.monotonic(), deadline, "vdpad never listened")
                time.sleep(0.01)

    def check_stops(self, process, directory, label):
        try:
            status = process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            self.fail(f"{label}: the SIGTERM was lost (vdpad still ran 10 s later)")
        with open(os.path.join(directory, "vdpad.log"), errors="replace") as f:
            log = f.read()
        self.assertEqual(status, 0, f"{label}: vdpad ended with {status}, not a clean stop\n{log[-2000:]}")

    def test_sigterm_during_and_after_upgrade(self):
        rng = random.Random(7)
        for k in range(ROUNDS):
            with tempfile.TemporaryDirectory() as directory:
                process, s = self.start(directory)
                self.addCleanup(s.close)
                request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "daemon_upgrade", "params": {}}) + "\n"
                s.sendall(request.encode())
                after = k % 2 == 1
                if after:
                    # The answer comes from the new process: then the signal.
                    s.settimeout(30)
                    with s.makefile() as f:
                        reply = json.loads(f.readline())
                    self.assertIn("result", reply, reply)
                else:
                    time.sleep(rng.uniform(0, 0.03))  # somewhere in the quiesce, the exec, or the new start
                process.send_signal(15)
                self.check_stops(process, directory, f"round {k} ({'after' if after else 'during'} the upgrade)")


if __name__ == "__main__":
    unittest.main()
