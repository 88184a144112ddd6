"""The README's first command works as written: scripts/run-daemon.sh builds vdpad, starts it on the default
config (vdpa0 of vdpasim_net) and serves; here on a socket in a temporary directory (its extra arguments go to
vdpad), stopped with SIGTERM.  The second command, scripts/test.sh, is what runs this test."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class RunDaemonTests(unittest.TestCase):
    def test_run_daemon_serves_the_default_config(self):
        with tempfile.TemporaryDirectory(prefix="vdpad-readme-") as d:
            sock = os.path.join(d, "vdpad.sock")
            log = open(os.path.join(d, "log"), "wb")
            p = subprocess.Popen([os.path.join(ROOT, "scripts", "run-daemon.sh"), "--socket", sock,
                                  "--state-dir", os.path.join(d, "state")], stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            try:
                deadline = time.monotonic() + 900  # a first release build on 2 cores

                def log_tail():
                    with open(os.path.join(d, "log"), errors="replace") as f:
                        return f.read()[-2000:]

                while not os.path.exists(sock):
                    if p.poll() is not None:
                        self.fail("run-daemon.sh exited: " + log_tail())
                    self.assertLess(time.monotonic(), deadline, "no socket")
                    time.sleep(0.2)
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(sock)
                    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"list_devices"}\n')
                    reply = json.loads(s.makefile().readline())
                self.assertEqual([(x["name"], x["mgmtdev"]) for x in reply["result"]], [("vdpa0", "vdpasim_net")])
            finally:
                os.killpg(p.pid, signal.SIGTERM)
                self.assertEqual(p.wait(30), 0)
                log.close()


if __name__ == "__main__":
    unittest.main()
