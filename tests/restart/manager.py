"""A stand-in for the service manager (docs/restart.md): what systemd does for
vdpad, as its documentation says, in a test's own process — a listening socket
passed by socket activation, NOTIFY_SOCKET datagrams read (READY=1, STATUS=,
FDSTORE=1 / FDSTOREREMOVE=1 with FDNAME= and SCM_RIGHTS), and at each start
the stored descriptors passed back with LISTEN_FDS, LISTEN_PID and
LISTEN_FDNAMES, the listening socket first under the name "vdpad"."""

import array
import os
import signal
import socket
import subprocess
import select
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("VDPAD_BINARY", os.path.join(ROOT, ".build", "debug", "vdpad"))


class ServiceManager:
    def __init__(self, directory: str, config: str = ""):
        self.directory = directory
        self.socket_path = os.path.join(directory, "vdpad.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.socket_path)
        self.listener.listen(64)
        self.notify_path = os.path.join(directory, "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        self.config_path = os.path.join(directory, "vdpad.toml")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.store: dict[str, int] = {}  # FDNAME → our copy of the descriptor
        self.ready = 0
        self.statuses: list[str] = []
        self.process: subprocess.Popen | None = None
        self.log = open(os.path.join(directory, "vdpad.log"), "ab")
        self.starts = 0
        # Read as they come, as systemd does: a notify socket left unread fills, and the daemon's next
        # notification would wait for room.
        self.lock = threading.Lock()
        self.closing = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while not self.closing:
            ready, _, _ = select.select([self.notify], [], [], 0.05)
            if ready and not self.closing:
                self.drain()

    # The notify protocol.
    def drain(self) -> None:
        with self.lock:
            self._drain()

    def _drain(self) -> None:
        while True:
            fds = array.array("i")
            try:
                data, ancdata, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(253 * fds.itemsize))
            except (BlockingIOError, OSError):
                return
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            name = fields.get("FDNAME", "stored")
            if fields.get("FDSTOREREMOVE") == "1":
                old = self.store.pop(name, None)
                if old is not None:
                    os.close(old)
            if fields.get("FDSTORE") == "1":
                for fd in fds:
                    # systemd keeps several under one name; vdpad removes a name before it stores it again.
                    old = self.store.pop(name, None)
                    if old is not None:
                        os.close(old)
                    self.store[name] = fd
            else:
                for fd in fds:
                    os.close(fd)
            if fields.get("READY") == "1":
                self.ready += 1
            if "STATUS" in fields:
                self.statuses.append(fields["STATUS"])

    def start(self, timeout: float = 30.0) -> None:
        with self.lock:
            self._drain()
            names = ["vdpad"] + list(self.store)
            fds = [self.listener.fileno()] + [os.dup(fd) for fd in self.store.values()]
            ready_before = self.ready

        def place_descriptors():
            high = [os.dup(fd) for fd in fds]
            moved = [os.dup2(h, 1000 + i) for i, h in enumerate(high)]
            for i in range(len(moved)):
                os.dup2(1000 + i, 3 + i, inheritable=True)

        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(names))
        # LISTEN_PID must be vdpad's own pid: the shell exports its $$, then becomes vdpad.
        self.process = subprocess.Popen(
            ["sh", "-c", 'export LISTEN_PID=$$; exec "$@"', "sh", BINARY, "--config", self.config_path,
             "--state-dir", os.path.join(self.directory, "state")],
            env=env, preexec_fn=place_descriptors, close_fds=False, stdout=self.log, stderr=self.log)
        for fd in fds[1:]:
            os.close(fd)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while self.ready == ready_before:
            if self.process.poll() is not None:
                raise RuntimeError(f"vdpad exited with {self.process.returncode} (log: {self.log.name})")
            if time.monotonic() > deadline:
                raise TimeoutError("vdpad sent no READY=1")
            time.sleep(0.002)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.drain()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.closing = True
        self.reader.join()
        self.drain()
        for fd in self.store.values():
            os.close(fd)
        self.store.clear()
        self.listener.close()
        self.notify.close()
        self.log.close()
