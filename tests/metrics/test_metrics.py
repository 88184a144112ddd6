"""vdpad's metrics as a monitoring stack reads them.

The exposition of `vdpad-cli metrics` and of the daemon's textfile is parsed with the reference parser
(prometheus_client, pinned in .venv) and checked against the daemon's own counters after a known sequence of
calls; Debian's prometheus-node-exporter, on loopback, serves the textfile and is scraped over HTTP.
Run by scripts/test.sh with .venv's pytest; the daemon is the built binary on sockets in temporary directories.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vdpad import Client

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, ".build", "debug")
VDPAD = os.environ.get("VDPAD_BINARY", os.path.join(BUILD, "vdpad"))
CLI = os.path.join(os.path.dirname(VDPAD), "vdpad-cli")
NODE_EXPORTER = shutil.which("prometheus-node-exporter")


class Daemon:
    """The built vdpad on a socket in a temporary directory, with a config of `extra` TOML lines."""

    def __init__(self, directory, extra=""):
        self.socket = os.path.join(directory, "vdpad.sock")
        config = os.path.join(directory, "vdpad.toml")
        with open(config, "w") as f:
            f.write(extra + '\n[[devices]]\nname = "vdpa0"\nmgmtdev = "vdpasim_net"\n'
                    '\n[[devices]]\nname = "m0"\nmgmtdev = "mlx5_net"\nmax_vqp = 2\n')
        self.log = open(os.path.join(directory, "vdpad.log"), "wb")
        self.process = subprocess.Popen([VDPAD, "--config", config, "--socket", self.socket,
                                         "--state-dir", os.path.join(directory, "state")],
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            assert self.process.poll() is None and time.monotonic() < deadline, "vdpad did not start"
            time.sleep(0.02)

    def client(self):
        return Client(self.socket)

    def stop(self):
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


@pytest.fixture
def directory():
    with tempfile.TemporaryDirectory(prefix="vdpad-metrics-") as d:
        yield d


def samples(text):
    """{(name, frozenset(labels)): value} and {family: (type, help)} as the reference parser reads them."""
    values, families = {}, {}
    for family in text_string_to_metric_families(text):
        families[family.name] = (family.type, family.documentation)
        for s in family.samples:
            values[(s.name, frozenset(s.labels.items()))] = s.value
    return values, families


def exercise(c):
    """A known sequence on vdpa0: open, 3 maps in ASID 0 and 1 in ASID 1, 1 unmap, FEATURES_OK, a clean reset."""
    c.open("vdpa0")
    c.set_backend_features("vdpa0", features=["IOTLB_MSG_V2", "IOTLB_BATCH", "IOTLB_ASID"])
    for i in range(3):
        c.map("vdpa0", iova=0x100000 * (i + 1), size=0x1000, addr=0x7F0000000000 + 0x1000 * i, perm="rw")
    c.map("vdpa0", asid=1, iova=0x1000, size=0x1000, addr=0x7F0000100000, perm="ro")
    assert c.unmap("vdpa0", iova=0x300000, size=0x1000) == {"removed": 1}
    c.set_features("vdpa0", features=["VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", "MAC"])
    c.set_status("vdpa0", status=11)  # ACKNOWLEDGE | DRIVER | FEATURES_OK


def check_against_the_daemon(text, c):
    values, families = samples(text)
    v = lambda name, **labels: values[(name, frozenset(labels.items()))]
    # Types and help as Prometheus's conventions want them: counters end in _total (the family drops it).
    assert families["vdpad_map_calls"][0] == "counter" and families["vdpad_map_calls"][1]
    assert families["vdpad_iotlb_entries"][0] == "gauge"
    assert families["vdpad_queue_received_desc"][0] == "counter"
    for name, (kind, documentation) in families.items():
        assert name.startswith("vdpad_") and documentation, name
    device = c.get_device("vdpa0")
    stats = device["stats"]
    assert v("vdpad_map_calls_total", device="vdpa0") == stats["map_calls"] == 4
    assert v("vdpad_unmap_calls_total", device="vdpa0") == stats["unmap_calls"] == 1
    assert v("vdpad_resets_total", device="vdpa0", kind="clean") == stats["resets_clean"]
    assert v("vdpad_device_owner_pid", device="vdpa0") == device["owner"]["pid"] == os.getpid()
    assert v("vdpad_device_status", device="vdpa0") == device["status"] == 11
    assert v("vdpad_device_info", device="vdpa0", mgmtdev="vdpasim_net") == 1
    assert v("vdpad_device_owner_pid", device="m0") == 0
    for a in device["asids"]:
        assert v("vdpad_iotlb_entries", device="vdpa0", asid=str(a["asid"]), layer="session") == a["session_entries"]
        assert v("vdpad_iotlb_entries", device="vdpa0", asid=str(a["asid"]), layer="device") == a["device_entries"]
    assert v("vdpad_iotlb_entries", device="vdpa0", asid="0", layer="session") == 2
    # Every queue of every device, with the types vstats names; vdpa0's agree with get_vstats.
    assert v("vdpad_queue_received_desc_total", device="m0", qidx="4", queue_type="control_vq") == 0
    assert v("vdpad_queue_received_desc_total", device="m0", qidx="3", queue_type="tx") == 0
    for q in range(3):
        vstats = c.get_vstats("vdpa0", qidx=q)
        labels = dict(device="vdpa0", qidx=str(q), queue_type=vstats["queue_type"])
        for key in ("received_desc", "completed_desc", "bytes", "drops", "errors"):
            assert v(f"vdpad_queue_{key}_total", **labels) == vstats[key]
    assert v("vdpad_devices") == 2


def test_cli_metrics_parse_and_match(directory):
    d = Daemon(directory)
    try:
        with d.client() as c:
            exercise(c)
            out = subprocess.run([CLI, "-s", d.socket, "metrics"], capture_output=True, text=True, check=True).stdout
            check_against_the_daemon(out, c)
            assert c.metrics()["format"] == "text/plain; version=0.0.4"
    finally:
        d.stop()


def test_cli_vstats_in_iproute2_grammar(directory):
    d = Daemon(directory)
    try:
        with d.client() as c:
            exercise(c)
            run = lambda *a: subprocess.run([CLI, "-s", d.socket, *a], capture_output=True, text=True)
            human = run("dev", "vstats", "show", "vdpa0", "qidx", "2")
            assert human.returncode == 0, human.stderr
            assert human.stdout.splitlines()[1].split() == ["queue_type", "control_vq", "queue_index", "2", "received_desc", "0",
                                                            "completed_desc", "0", "bytes", "0", "drops", "0", "errors", "0"]
            j = run("-j", "dev", "vstats", "show", "vdpa0", "qidx", "1")
            assert '"vstats":{"vdpa0":{"queue_index":1,"queue_type":"tx"' in j.stdout.replace(" ", ""), j.stdout
            for qidx, errno in (("3", "EINVAL"), ("0x8001", "ERANGE")):
                r = run("dev", "vstats", "show", "vdpa0", "qidx", qidx)
                assert r.returncode != 0 and errno in r.stderr, r.stderr
            r = run("dev", "vstats", "show", "m0", "qidx", "0")
            assert r.returncode != 0 and "EAGAIN" in r.stderr, r.stderr
    finally:
        d.stop()


def wait_for(path, predicate=lambda text: True, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
            if predicate(text):
                return text
        time.sleep(0.1)
    raise AssertionError(f"{path} was not written in {seconds} s")


def test_textfile_is_written_atomically_and_current(directory):
    textfile = os.path.join(directory, "prom", "vdpad.prom")
    os.mkdir(os.path.dirname(textfile))
    d = Daemon(directory, f'metrics_textfile = "{textfile}"\nmetrics_interval_s = 1\n')
    try:
        wait_for(textfile)
        assert oct(os.stat(textfile).st_mode & 0o777) == "0o644"
        with d.client() as c:
            exercise(c)
            text = wait_for(textfile, lambda t: 'vdpad_device_status{device="vdpa0"} 11' in t)
            check_against_the_daemon(text, c)
        assert os.listdir(os.path.dirname(textfile)) == ["vdpad.prom"], "no temporary file is left behind"
    finally:
        d.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_node_exporter_scrapes_the_textfile(directory):
    assert NODE_EXPORTER, "scripts/setup.sh installs prometheus-node-exporter"
    collector = os.path.join(directory, "textfile")
    os.mkdir(collector)
    d = Daemon(directory, f'metrics_textfile = "{collector}/vdpad.prom"\nmetrics_interval_s = 1\n')
    port = free_port()
    exporter = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                                 "--collector.textfile", f"--collector.textfile.directory={collector}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with d.client() as c:
            exercise(c)
            wait_for(os.path.join(collector, "vdpad.prom"), lambda t: 'vdpad_map_calls_total{device="vdpa0"} 4' in t)
            deadline = time.monotonic() + 15
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        scraped = r.read().decode()
                    break
                except OSError:
                    assert exporter.poll() is None and time.monotonic() < deadline, exporter.stderr.read()
                    time.sleep(0.1)
            values, _ = samples(scraped)
            # node_exporter read the file without error and serves vdpad's series with the daemon's values.
            assert values[("node_textfile_scrape_error", frozenset())] == 0
            assert values[("vdpad_map_calls_total", frozenset({("device", "vdpa0")}))] == c.get_device("vdpa0")["stats"]["map_calls"]
            assert values[("vdpad_iotlb_entries", frozenset({("device", "vdpa0"), ("asid", "1"), ("layer", "session")}))] == 1
            assert ("vdpad_queue_received_desc_total", frozenset({("device", "m0"), ("qidx", "4"), ("queue_type", "control_vq")})) in values
    finally:
        exporter.terminate()
        exporter.wait(10)
        d.stop()
