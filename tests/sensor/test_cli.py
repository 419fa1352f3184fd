"""``crisensor`` as users run it: real subprocesses, real sockets, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakecri.clock import RealClock
from fakecri.flavors import get_flavor
from fakecri.model import RuntimeModel
from fakecri.server import FakeCriServer

CLI = [sys.executable, "-m", "sensor.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def crisensor(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def write(tmp_path: Path, text: str, name: str = "sensor.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_disabled_says_so_and_exits_zero(tmp_path: Path) -> None:
    cfg = write(tmp_path, "crisensor:\n  enabled: false\n")
    r = crisensor("run", "--config", cfg, "--analytics-config", write(tmp_path, "{}\n", "a.yaml"))
    assert r.returncode == 0
    assert "disabled" in r.stderr and r.stdout == ""


@pytest.mark.parametrize(("text", "needle"), [
    ("crisensor:\n  enabled: true\n  addr: /var/run/crio/crio.sock\n", "crisensor.addr"),
    ("crisensor:\n  enabled: true\n  addr: unix:///x.sock\n  poll_interval: fast\n", "crisensor.poll_interval"),
    ("crisensor:\n  enabled: yes please\n", "crisensor.enabled"),
    ("crisensor:\n  enabled: true\n  addr: unix:///x.sock\n  pol_interval: 1s\n", "pol_interval"),
    ("crisensor: [\n", "YAML"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    r = crisensor("run", "--config", write(tmp_path, text))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle.lower() in lines[0].lower() and "accepted" in lines[0]
    assert "Traceback" not in r.stderr


def test_bad_flag_value_is_one_line(tmp_path: Path) -> None:
    r = crisensor("run", "--config", write(tmp_path, "crisensor:\n  enabled: true\n  addr: unix:///x.sock\n"),
                  "--poll-interval", "soon")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("crisensor: --poll-interval: ") and "crisensor.poll_interval" not in r.stderr


def _wait_for(pred, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_run_writes_events_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    model.pull_image("busybox")
    out = tmp_path / "events.jsonl"
    with FakeCriServer(model, str(tmp_path / "rt.sock")) as server:
        proc = subprocess.Popen([*CLI, "run", "--config", write(tmp_path, "{}\n"), "--enable", "--addr", server.addr,
                                 "--poll-interval", "50ms", "--output", str(out), "--processes", "off"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        try:
            _wait_for(lambda: out.exists() and "sensor.connected" in out.read_text())
            sb = model.run_pod_sandbox("web", "default", "u1")
            c = model.create_container(sb.id, "app", 0, "busybox")
            model.start_container(c.id)
            _wait_for(lambda: "container.running" in out.read_text())
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["type"] for e in events][:4] == ["sensor.connected", "sandbox.ready", "container.created",
                                               "container.running"]
    assert "connected to containerd" in err


def test_missing_socket_is_reported_once_and_retried(tmp_path: Path) -> None:
    proc = subprocess.Popen([*CLI, "run", "--config", write(tmp_path, "{}\n"), "--enable",
                             "--addr", f"unix://{tmp_path}/absent.sock"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    time.sleep(1.5)  # long enough for several retries; we check it did not give up or flood
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    lines = [line for line in err.splitlines() if "does not exist" in line]
    assert len(lines) == 1 and "absent.sock" in lines[0] and "retrying" in lines[0]


def test_snapshot_prints_a_table(tmp_path: Path) -> None:
    model = RuntimeModel(RealClock(), get_flavor("crio-1.26"))
    model.pull_image("busybox")
    sb = model.run_pod_sandbox("web", "default", "u1")
    c = model.create_container(sb.id, "app", 0, "busybox")
    model.start_container(c.id)
    model.exit_container(c.id, 3)
    with FakeCriServer(model, str(tmp_path / "rt.sock")) as server:
        r = crisensor("snapshot", "--config", write(tmp_path, "{}\n"), "--addr", server.addr)
        j = crisensor("snapshot", "--config", write(tmp_path, "{}\n"), "--addr", server.addr, "--json")
    assert r.returncode == 0, r.stderr
    assert "cri-o 1.26.4 (CRI v1)" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith(c.id[:13]))
    assert row.split()[1:3] == ["exited", "app"] and row.split()[-1] == "3"
    data = json.loads(j.stdout)
    assert data["containers"][0]["detail"]["exit_code"] == 3
