"""pytest plugin: `vdpad_daemon` starts a private vdpad on a socket in a temporary directory for one test;
`vdpad_client` is a connected Client.  The binary is VDPAD_BINARY, else `vdpad` on PATH.

    def test_map(vdpad_daemon):
        vdpad_daemon.add_device("t0", "vdpasim_net")
        with vdpad_daemon.client() as c, c.session("t0") as dev:
            dev.map(iova=0, size=4096, addr=0x1000, perm="rw")
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from .client import Client, VdpadError


class PrivateDaemon:
    def __init__(self, binary: str, directory: str):
        self.directory = directory
        self.socket = os.path.join(directory, "vdpad.sock")
        self.log_path = os.path.join(directory, "vdpad.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([binary, "--socket", self.socket, "--state-dir", os.path.join(directory, "state")],
                                            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                with Client(self.socket, timeout=2) as c:
                    if c.ping() == "pong":
                        break
            except (OSError, ConnectionError, VdpadError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"vdpad did not start: {self.log()}")
                time.sleep(0.02)

    def client(self, **kwargs) -> Client:
        return Client(self.socket, **kwargs)

    def add_device(self, name: str, mgmtdev: str, **attributes) -> dict:
        with self.client() as c:
            return c.add_device(name, mgmtdev=mgmtdev, **attributes)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def vdpad_daemon():
    binary = os.environ.get("VDPAD_BINARY") or shutil.which("vdpad")
    if not binary:
        pytest.fail("no vdpad binary: set VDPAD_BINARY or put vdpad on PATH")
    with tempfile.TemporaryDirectory(prefix="vdpad-pytest-") as directory:
        daemon = PrivateDaemon(binary, directory)
        try:
            yield daemon
        finally:
            daemon.stop()


@pytest.fixture
def vdpad_client(vdpad_daemon):
    with vdpad_daemon.client() as c:
        yield c
