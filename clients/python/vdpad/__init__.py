"""A Python client for vdpad (docs/protocol.md): `Client`, `VdpadError`, and a pytest plugin
(`vdpad.pytest_plugin`, registered as the `vdpad` plugin) whose `vdpad_daemon` fixture starts a private
daemon for a test."""
from .client import Batch, Client, ConnectionClosed, DeviceSession, Pending, VdpadError, default_socket_paths

__all__ = ["Batch", "Client", "ConnectionClosed", "DeviceSession", "Pending", "VdpadError", "default_socket_paths"]
__version__ = "0.1.0"
