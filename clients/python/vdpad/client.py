"""The connection to vdpad: requests, replies, errors, batches, events, eventfds.

Every method of the protocol is a typed method of `Client` (generated into
`_methods.py` from the daemon's OpenRPC document); `Client.call` reaches any
method by name.  Standard library only.
"""
from __future__ import annotations

import array
import contextlib
import json
import os
import socket
from typing import Any, Iterator, Optional, Sequence

from ._methods import GeneratedMethods

SYSTEM_SOCKET = "/run/vdpad/vdpad.sock"


def default_socket_paths() -> list[str]:
    """Where a client looks when no path is given, as vdpad-cli does (docs/protocol.md §1)."""
    env = os.environ.get("VDPAD_SOCKET")
    if env:
        return [env]
    if os.getuid() == 0:
        return [SYSTEM_SOCKET]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return [SYSTEM_SOCKET, os.path.join(runtime, "vdpad.sock") if runtime else "./.vdpad/vdpad.sock"]


class VdpadError(Exception):
    """An error reply.  `code` is JSON-RPC's (−errno for a domain error), `errno` its name ("EEXIST"),
    `kernel_errno` what the kernel would have returned where it differs (the IOTLB methods: "EFAULT"),
    `field` the param a -32602 names, `data` the whole data object."""

    def __init__(self, code: int, message: str, data: Optional[dict] = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data or {}
        self.errno: Optional[str] = self.data.get("errno")
        self.kernel_errno: Optional[str] = self.data.get("kernel_errno")
        self.field: Optional[str] = self.data.get("field")

    @property
    def errno_value(self) -> Optional[int]:
        """The errno number (22 for EINVAL), for a domain error."""
        return -self.code if self.errno else None


class ConnectionClosed(VdpadError):
    def __init__(self, path: str):
        super().__init__(-32000, f"vdpad closed the connection on {path}")


class Batch:
    """Requests sent as one JSON-RPC batch when the `with` block ends; each call returns a `Pending`."""

    def __init__(self, client: "Client"):
        self.client, self.requests, self.pending = client, [], []

    def call(self, method: str, **params: Any) -> "Pending":
        request = self.client._request(method, params)
        self.requests.append(request)
        pending = Pending(request["id"])
        self.pending.append(pending)
        return pending

    def __getattr__(self, method: str):
        return lambda **params: self.call(method, **params)


class Pending:
    """A batched call's outcome, filled in when the batch returns: `.result`, or `.error` (a VdpadError)."""

    def __init__(self, id_: int):
        self.id, self.result, self.error, self.done = id_, None, None, False

    def value(self) -> Any:
        if self.error:
            raise self.error
        return self.result


class Client(GeneratedMethods):
    """One connection to vdpad.  Not shared between threads: open one per thread."""

    def __init__(self, path: Optional[str] = None, timeout: Optional[float] = 10.0):
        self.path, self.timeout = None, timeout
        failures = []
        for candidate in [path] if path else default_socket_paths():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(candidate)
            except OSError as e:
                sock.close()
                failures.append(f"{candidate}: {e.strerror or e}")
                continue
            self.sock, self.path = sock, candidate
            break
        else:
            raise ConnectionError("no vdpad answers on " + " nor ".join(failures))
        self._buffer = b""
        self._next_id = 0
        self.notifications: list[dict] = []

    # -- plumbing -------------------------------------------------------------

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, params: dict) -> dict:
        self._next_id += 1
        request = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        clean = {k: v for k, v in params.items() if v is not None}
        if clean:
            request["params"] = clean
        return request

    def _send(self, message: Any, fds: Sequence[int] = ()) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        if fds:
            # The descriptors travel with the request's first bytes (docs/protocol.md §5.5).
            sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            data = data[sent:]
        if data:
            self.sock.sendall(data)

    def _read(self) -> Any:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(self.path)
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _reply(self) -> Any:
        """The next reply, keeping notifications that arrive meanwhile in `notifications`."""
        while True:
            message = self._read()
            if isinstance(message, dict) and "method" in message and "id" not in message:
                self.notifications.append(message)
                continue
            return message

    @staticmethod
    def _error(reply: dict) -> VdpadError:
        e = reply["error"]
        return VdpadError(e["code"], e["message"], e.get("data"))

    # -- calls ----------------------------------------------------------------

    def call(self, method: str, *, pass_fds: Sequence[int] = (), **params: Any) -> Any:
        """Calls `method` with by-name `params` (None values are left out) and returns its result; raises
        VdpadError for an error reply.  `pass_fds` sends descriptors (eventfds) with the request."""
        request = self._request(method, params)
        self._send(request, pass_fds)
        reply = self._reply()
        if reply.get("id") != request["id"]:
            raise VdpadError(-32603, f"reply out of order: {reply}")
        if "error" in reply:
            raise self._error(reply)
        return reply.get("result")

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """`with client.batch() as b: p = b.map(...)` sends every call as one batch at the end of the block."""
        b = Batch(self)
        yield b
        if not b.requests:
            return
        self._send(b.requests)
        replies = self._reply()
        if isinstance(replies, dict):  # the whole batch was refused (max_batch, …)
            raise self._error(replies)
        by_id = {r.get("id"): r for r in replies}
        for p in b.pending:
            r = by_id.get(p.id)
            if r is None:
                p.error = VdpadError(-32603, "no reply for this request")
            elif "error" in r:
                p.error = self._error(r)
            else:
                p.result = r.get("result")
            p.done = True

    def events(self, *types: str, since: Optional[int] = None, timeout: Optional[float] = None) -> Iterator[dict]:
        """Subscribes (to `types`, or all) at once, and returns an iterator of each event's params as it
        arrives (after those with seq > `since`, when given); `timeout` ends it after that many idle seconds."""
        self.call("subscribe", events=list(types) if types else None)
        backlog = self.call("get_events", since=since)["events"] if since is not None else []
        return self._event_stream(backlog, timeout)

    def _event_stream(self, backlog: list, timeout: Optional[float]) -> Iterator[dict]:
        yield from backlog
        while self.notifications:
            yield self.notifications.pop(0)["params"]
        previous = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                try:
                    message = self._read()
                except socket.timeout:
                    return
                if isinstance(message, dict) and message.get("method") == "event":
                    yield message["params"]
        finally:
            if self.sock.fileno() != -1:  # the iterator may outlive the connection
                self.sock.settimeout(previous)

    @contextlib.contextmanager
    def session(self, device: str) -> Iterator["DeviceSession"]:
        """Opens `device` for this connection and closes it when the block ends, even on an exception
        (a closed connection would release it too: docs/protocol.md §6)."""
        self.call("open", device=device)
        try:
            yield DeviceSession(self, device)
        finally:
            with contextlib.suppress(VdpadError, OSError):
                self.call("close", device=device)


class DeviceSession:
    """The typed methods with `device` filled in: `dev.map(iova=…, size=…, addr=…, perm="rw")`."""

    def __init__(self, client: Client, device: str):
        self.client, self.device = client, device

    def __getattr__(self, name: str):
        method = getattr(self.client, name)
        return lambda *args, **kwargs: method(self.device, *args, **kwargs)

    def call(self, method: str, **params: Any) -> Any:
        return self.client.call(method, device=self.device, **params)
