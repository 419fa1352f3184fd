"""``crisensor run --metrics-addr`` as a user runs it (issue 14 item 10): the listen address, IPv6
literals, a failed ``Version`` in the RPC error metric, no ``*_created`` series; and the DaemonSet's
explicit address."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def free_port(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    return inodes


def listening_hosts(port: int, pid: int) -> set[str]:
    """The addresses process ``pid`` listens on at TCP ``port`` (from /proc/net). Only its own
    sockets: another process may listen on the same port number at another address (containerd's
    stream server on 127.0.0.1, in CI), which says nothing about the sensor."""
    mine = _socket_inodes(pid)
    hosts = set()
    for name, width in (("tcp", 8), ("tcp6", 32)):
        for row in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port and len(addr) == width and inode in mine:
                hosts.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]) if width == 8
                          else socket.inet_ntop(socket.AF_INET6, b"".join(
                              bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, 32, 8))))
    return hosts


def scrape(url: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def fakecri(tmp_path: Path) -> Iterator[str]:
    """A ``fakecri serve`` whose Version calls all fail UNAVAILABLE (quirk on for the whole run)."""
    scenario = tmp_path / "no-version.yaml"
    scenario.write_text("# Version always fails\nquirks:\n  unavailable: {methods: [Version]}\ntimeline: []\n")
    sock = tmp_path / "cri.sock"
    proc = subprocess.Popen([sys.executable, "-m", "fakecri.cli", "serve", str(scenario), "--socket", str(sock),
                             "--start", "now"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def run_sensor(tmp_path: Path, addr: str, metrics_addr: str) -> subprocess.Popen[str]:
    (tmp_path / "sensor.yaml").write_text("crisensor:\n  poll_interval: 50ms\n")
    (tmp_path / "analytics.yaml").write_text("")
    return subprocess.Popen([sys.executable, "-m", "sensor.cli", "run", "--config", str(tmp_path / "sensor.yaml"),
                             "--analytics-config", str(tmp_path / "analytics.yaml"), "--processes", "off",
                             "--enable", "--addr", addr, "--metrics-addr", metrics_addr, "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    return err


def test_port_alone_listens_on_loopback_and_counts_failed_version(tmp_path: Path, fakecri: str) -> None:
    port = free_port()
    sensor = run_sensor(tmp_path, fakecri, f":{port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            text = scrape(f"http://127.0.0.1:{port}/metrics")
            if 'crisensor_rpc_errors_total{code="UNAVAILABLE",method="Version"}' in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert listening_hosts(port, sensor.pid) == {"127.0.0.1"}
        assert "_created" not in text, [line for line in text.splitlines() if "_created" in line][:3]
        assert "crisensor_runtime_up 0.0" in text
    finally:
        stop(sensor)


def test_ipv6_literal(tmp_path: Path) -> None:
    try:
        port = free_port(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    sensor = run_sensor(tmp_path, f"unix://{tmp_path}/absent.sock", f"[::1]:{port}")
    try:
        assert "crisensor_runtime_up" in scrape(f"http://[::1]:{port}/metrics")
        assert listening_hosts(port, sensor.pid) == {"::1"}
    finally:
        stop(sensor)


@pytest.mark.parametrize("value", ["::1:9464", "[::1]9464", "[]:9464", "localhost", ":0", ":99999"])
def test_bad_metrics_addr_is_one_line(tmp_path: Path, value: str) -> None:
    (tmp_path / "empty.yaml").write_text("")
    r = subprocess.run([sys.executable, "-m", "sensor.cli", "run", "--config", str(tmp_path / "empty.yaml"),
                        "--enable", "--addr", f"unix://{tmp_path}/absent.sock", "--metrics-addr", value],
                       capture_output=True, text=True, timeout=30, env=ENV)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"crisensor: --metrics-addr: {value!r} is not HOST:PORT (accepted: ")
    assert "[::1]:9464" in r.stderr


def test_daemonset_sets_the_pod_ip_explicitly() -> None:
    ds = yaml.safe_load((ROOT / "deploy/kubernetes/base/daemonset.yaml").read_text())
    c = ds["spec"]["template"]["spec"]["containers"][0]
    addr = c["args"][c["args"].index("--metrics-addr") + 1]
    assert addr == "$(POD_IP):9464"  # kubelet expands $(VAR) in args from the container's env
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def _wakeups(tid: int, pid: int | str = "self") -> int:
    """Times a thread (of this process by default) went to sleep and was woken (its voluntary
    context switches)."""
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


def test_the_metrics_server_sleeps_until_a_scrape() -> None:
    """Idle streaming wakes for nothing but its resyncs (docs/performance.md): the metrics thread
    blocks until a scrape arrives. prometheus-client's own server wakes twice a second."""
    from sensor.metrics import Metrics

    m = Metrics()
    port = free_port()
    t = m.serve("127.0.0.1", port)
    assert "crisensor_poll_duration_seconds" in scrape(f"http://127.0.0.1:{port}/metrics")
    assert t.native_id is not None
    time.sleep(0.2)  # the scrape's own wake-ups are over
    before = _wakeups(t.native_id)
    time.sleep(1.6)  # three wake-ups of a 0.5 s poll loop
    assert _wakeups(t.native_id) - before == 0
    assert "crisensor_poll_duration_seconds" in scrape(f"http://127.0.0.1:{port}/metrics")


def test_the_main_thread_sleeps_until_there_is_something_to_do(tmp_path: Path, fakecri: str) -> None:
    """``crisensor run``'s main thread wakes for a signal, the poll loop's end or a failed output,
    each of which pokes its self-pipe (``sensor.wakeup``), and never by the clock: a periodic check
    would be a wake-up of an idle sensor's own (docs/performance.md, "Idle streaming"). SIGTERM still
    ends it at once."""
    port = free_port()
    sensor = run_sensor(tmp_path, fakecri, f":{port}")
    try:
        scrape(f"http://127.0.0.1:{port}/metrics")  # up: the main thread is in its wait
        time.sleep(0.5)
        before = _wakeups(sensor.pid, sensor.pid)
        time.sleep(2.5)
        assert _wakeups(sensor.pid, sensor.pid) - before == 0
    finally:
        t = time.monotonic()
        stop(sensor)
    assert sensor.returncode == 0
    assert time.monotonic() - t < 5
