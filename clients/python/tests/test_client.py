"""The client against the real daemon (started by the plugin's vdpad_daemon fixture)."""
import os
import sys

import pytest

import vdpad
from vdpad import VdpadError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import generate  # noqa: E402  (clients/python/generate.py)


def test_generated_methods_are_current(openrpc_document):
    """vdpad/_methods.py is what generate.py makes of docs/openrpc.json (the daemon's rpc.discover)."""
    generate.COMPONENTS = openrpc_document["components"]["schemas"]
    with open(os.path.join(os.path.dirname(vdpad.__file__), "_methods.py")) as f:
        assert f.read() == generate.generate(openrpc_document), "run python3 clients/python/generate.py"


def test_every_method_served_has_a_typed_method(vdpad_client):
    served = vdpad_client.rpc_get_methods()
    assert sorted(vdpad.Client.METHODS) == served
    for name in served:
        assert callable(getattr(vdpad_client, generate.identifier(name)))


def test_discovery_document_is_the_file(vdpad_client, openrpc_document):
    assert vdpad_client.rpc_discover() == openrpc_document


def test_a_vmm_like_session(vdpad_daemon):
    vdpad_daemon.add_device("t0", "vdpasim_net")
    with vdpad_daemon.client() as c, c.session("t0") as dev:
        dev.set_backend_features(features=["IOTLB_MSG_V2", "IOTLB_BATCH", "IOTLB_ASID", "IOTLB_PERSIST"])
        assert dev.map(iova=0x100000, size=0x10000, addr=0x7F0000000000, perm="rw") == {}
        dev.reset()
        assert dev.translate(access="write", asid=0, iova=0x100010, size=16) == {
            "segments": [{"iova": 0x100010, "size": 16, "addr": 0x7F0000000010}]}
        assert dev.unmap(iova="0x100000", size=1) == {"removed": 1}
    with vdpad_daemon.client() as c:
        assert c.get_device("t0")["owner"] is None, "the session ended with the block"


def test_errors_carry_errno_and_kernel_errno(vdpad_daemon):
    vdpad_daemon.add_device("t0", "vdpasim_net")
    with vdpad_daemon.client() as c, c.session("t0") as dev:
        dev.map(iova=0, size=4096, addr=0, perm="rw")
        with pytest.raises(VdpadError) as e:
            dev.map(iova=0, size=1, addr=0, perm="rw")
        assert (e.value.code, e.value.errno, e.value.kernel_errno, e.value.errno_value) == (-17, "EEXIST", "EFAULT", 17)
        with pytest.raises(VdpadError) as e:
            dev.map(iova=0, size={"no": 1}, addr=0, perm="rw")
        assert (e.value.code, e.value.field) == (-32602, "size")
    with vdpad_daemon.client() as other, pytest.raises(VdpadError) as e:
        other.get_device("nosuch")
    assert e.value.errno == "ENODEV"


def test_batches(vdpad_daemon):
    vdpad_daemon.add_device("t0", "vdpasim_net")
    with vdpad_daemon.client() as c, c.session("t0"):
        with c.batch() as b:
            ok = [b.map(device="t0", iova=k * 4096, size=4096, addr=k, perm="ro") for k in range(100)]
            clash = b.map(device="t0", iova=0, size=1, addr=0, perm="ro")
        assert all(p.done and p.value() == {} for p in ok)
        with pytest.raises(VdpadError) as e:
            clash.value()
        assert e.value.errno == "EEXIST"
        assert len(c.dump_iotlb("t0", asid=0)["entries"]) == 100


def test_events(vdpad_daemon):
    with vdpad_daemon.client() as watcher:
        stream = watcher.events("device_added", timeout=5)
        vdpad_daemon.add_device("t1", "mlx5_net")
        event = next(stream)
        assert (event["type"], event["device"], event["mgmtdev"]) == ("device_added", "t1", "mlx5_net")


def test_eventfds_pass_with_scm_rights(vdpad_daemon):
    vdpad_daemon.add_device("t0", "vdpasim_net")
    kick = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        with vdpad_daemon.client() as c, c.session("t0") as dev:
            c.call("set_vring_kick", device="t0", vq=0, pass_fds=[kick])
            assert dev.get_vring(vq=0)["kick"] is True
            dev.set_vring_kick(vq=0, unset=True)
            assert dev.get_vring(vq=0)["kick"] is False
    finally:
        os.close(kick)


def test_default_socket_paths(monkeypatch):
    monkeypatch.setenv("VDPAD_SOCKET", "/x/y.sock")
    assert vdpad.default_socket_paths() == ["/x/y.sock"]
    monkeypatch.delenv("VDPAD_SOCKET")
    assert vdpad.default_socket_paths()[0] == "/run/vdpad/vdpad.sock"


def test_no_daemon_is_a_clear_error(tmp_path):
    with pytest.raises(ConnectionError, match="no vdpad answers on"):
        vdpad.Client(str(tmp_path / "none.sock"))
