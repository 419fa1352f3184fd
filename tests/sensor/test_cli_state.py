"""``crisensor run --state-dir`` as users run it (docs/state.md): real subprocesses, real sockets,
SIGKILL. A restart resumes; a corrupt state is set aside with one line; a second sensor on the same
directory refuses; an unusable path is a usage error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fakecri.clock import RealClock
from fakecri.flavors import get_flavor
from fakecri.model import RuntimeModel
from fakecri.server import FakeCriServer
from sensor.events import WHY_SENSOR_DOWN
from tests.sensor.test_cli import _wait_for

CLI = [sys.executable, "-m", "sensor.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _sensor(tmp_path: Path, addr: str, state: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    (tmp_path / "s.yaml").write_text("{}\n")
    return subprocess.Popen([*CLI, "run", "--config", str(tmp_path / "s.yaml"), "--enable", "--addr", addr,
                             "--poll-interval", "50ms", "--events", "off", "--processes", "off",
                             "--state-dir", str(state), "--output", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _types(events: list[dict[str, Any]], cid: str) -> list[str]:
    return [e["type"] for e in events if e.get("container_id") == cid]


def test_a_restart_resumes_exactly_once(tmp_path: Path) -> None:
    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    model.pull_image("busybox")
    out, state = tmp_path / "events.jsonl", tmp_path / "state"
    with FakeCriServer(model, str(tmp_path / "rt.sock")) as server:
        sb = model.run_pod_sandbox("web", "default", "u1")
        keep = model.create_container(sb.id, "keep", 0, "busybox")
        model.start_container(keep.id)
        stop = model.create_container(sb.id, "stop", 0, "busybox")
        model.start_container(stop.id)
        gone = model.create_container(sb.id, "gone", 0, "busybox")
        model.start_container(gone.id)
        first = _sensor(tmp_path, server.addr, state, out)
        try:
            _wait_for(lambda: sum(e["type"] == "container.running" for e in _events(out)) == 3)
        finally:
            first.kill()  # SIGKILL: no chance to write anything more
            first.communicate(timeout=20)
        killed_at = time.time_ns()
        before = _events(out)
        model.stop_container(stop.id)  # while the sensor is down: one exits, one goes, one comes
        model.stop_container(gone.id)
        model.remove_container(gone.id)
        new = model.create_container(sb.id, "new", 0, "busybox")
        model.start_container(new.id)
        second = _sensor(tmp_path, server.addr, state, out)
        try:
            _wait_for(lambda: "container.running" in _types(_events(out), new.id))
            _wait_for(lambda: "container.destroyed" in _types(_events(out), gone.id))
        finally:
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=20)
    assert second.returncode == 0, err
    events = _events(out)
    after = events[len(before):]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)) and after[0]["seq"] == before[-1]["seq"] + 1, "seq continues"
    assert [e["type"] for e in after][:2] == ["sensor.connected", "sensor.gap"]
    gap = after[1]
    assert gap["info"]["cause"] == "sensor restart" and gap["info"]["runtime_restarted"] is False
    assert gap["window_ns"][0] <= killed_at <= gap["window_ns"][1]
    assert _types(after, keep.id) == [], "an unchanged container is not announced again"
    assert not [e for e in after if e["type"].startswith("sandbox.")]
    assert _types(after, stop.id) == ["container.exited"]  # seen exited by the restarted sensor
    gone_after = [e for e in after if e.get("container_id") == gone.id]
    assert [e["type"] for e in gone_after] == ["container.exited", "container.destroyed"]
    assert gone_after[0]["synthetic"] and gone_after[0]["why"] == WHY_SENSOR_DOWN
    new_after = [e for e in after if e.get("container_id") == new.id]
    assert [e["type"] for e in new_after] == ["container.created", "container.running"]
    assert new_after[0]["why"] == WHY_SENSOR_DOWN  # created while down, first seen running
    for e in after:
        if e["type"].startswith("container.") and e["synthetic"]:
            assert e["window_ns"][0] <= killed_at, "windows of what happened while down cover the downtime"


def test_a_corrupt_state_is_set_aside_in_one_line_and_the_sensor_starts_fresh(tmp_path: Path) -> None:
    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    model.pull_image("busybox")
    out, state = tmp_path / "events.jsonl", tmp_path / "state"
    state.mkdir()
    (state / "snapshot").write_bytes(b'00000000 {"format":1,"seq":41}\n')  # a checksum that does not match
    (state / "journal").write_bytes(b"garbage\n")
    with FakeCriServer(model, str(tmp_path / "rt.sock")) as server:
        sb = model.run_pod_sandbox("web", "default", "u1")
        c = model.create_container(sb.id, "app", 0, "busybox")
        model.start_container(c.id)
        proc = _sensor(tmp_path, server.addr, state, out, "-q")
        try:
            _wait_for(lambda: "container.running" in _types(_events(out), c.id))
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "corrupt state" in lines[0] and "snapshot: checksum mismatch" in lines[0] and "set aside in" in lines[0]
    assert "Traceback" not in err
    aside = [p for p in state.iterdir() if p.name.startswith("corrupt-")]
    assert len(aside) == 1 and (aside[0] / "snapshot").exists() and (aside[0] / "journal").exists()
    events = _events(out)
    assert [e["type"] for e in events][:3] == ["sensor.connected", "sensor.gap", "sandbox.ready"]
    gap = events[1]
    assert gap["info"]["cause"] == "state lost" and "checksum" in gap["info"]["state_problem"]
    assert _types(events, c.id) == ["container.created", "container.running"]  # announced afresh, nothing forged
    assert not [e for e in events if e["type"] in ("container.exited", "container.destroyed")]
    # the fresh state works: a restart now resumes
    assert (state / "snapshot").exists() and (state / "journal").exists()


def test_a_second_sensor_on_the_same_state_dir_refuses_in_one_line(tmp_path: Path) -> None:
    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    state = tmp_path / "state"
    with FakeCriServer(model, str(tmp_path / "rt.sock")) as server:
        first = _sensor(tmp_path, server.addr, state, tmp_path / "a.jsonl")
        try:
            _wait_for(lambda: "sensor.connected" in (tmp_path / "a.jsonl").read_text()
                      if (tmp_path / "a.jsonl").exists() else False)
            second = _sensor(tmp_path, server.addr, state, tmp_path / "b.jsonl")
            _, err = second.communicate(timeout=20)
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=20)
    assert second.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"state dir {state} is in use by another crisensor (pid {first.pid}" in lines[0]
    assert not (tmp_path / "b.jsonl").exists() or (tmp_path / "b.jsonl").read_text() == ""
    assert first.returncode == 0


def test_an_unusable_state_dir_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "s.yaml").write_text("{}\n")
    r = subprocess.run([*CLI, "run", "--config", str(tmp_path / "s.yaml"), "--enable", "--addr", f"unix://{tmp_path}/x.sock",
                        "--state-dir", str(tmp_path / "file" / "state")], capture_output=True, text=True,
                       timeout=30, env=ENV)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "state dir" in lines[0] and "cannot use it" in lines[0] and "accepted" in lines[0]
