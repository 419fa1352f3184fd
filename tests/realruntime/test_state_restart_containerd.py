"""``crisensor run --state-dir`` against REAL containerd 1.6, SIGKILLed and restarted while
containers churn (G9, docs/state.md): nothing announced twice, nothing lost, ``seq`` continues, the
downtime is one ``sensor.gap``, what vanished meanwhile is forged with ``why: "happened while the
sensor was down"``.

Churn: two pods; three long-lived containers (one of them stopped and removed while the sensor is
down); short ones (``sleep 0.05-0.3``) created one after another, each removed once it has exited.
The sensor is killed in the middle of the churn and started again a second later with the same
arguments.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from crisensor_realruntime.cri import Cri

from sensor.events import WHY_SENSOR_DOWN

pytestmark = [pytest.mark.realruntime, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ORDER = {"created": 0, "running": 1, "exited": 2, "destroyed": 3}


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _start(handle: Any, out: Path, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "sensor.cli", "run", "--enable", "--addr", handle.addr,
                             "--poll-interval", "100ms", "--processes", "off", "--state-dir", str(state),
                             "--output", str(out)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def _wait(pred, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


class Churn:
    def __init__(self, cri: Cri, pods: list[tuple[str, Any]], rng: random.Random) -> None:
        self.cri, self.pods, self.rng = cri, pods, rng
        self.short: dict[str, tuple[float, float | None]] = {}  # id -> (created, removed) wall times
        self.waiting: list[str] = []
        self.n = 0

    def step(self) -> None:
        """Start one short container; remove those that have exited."""
        pb = self.cri.pb
        sid, config = self.rng.choice(self.pods)
        self.n += 1
        t = time.time()
        command = ["sh", "-c", f"sleep 0.{self.rng.randint(5, 30):02d}"]
        cid = self.cri.run_container(sid, config, f"short-{self.n}", command)
        self.short[cid] = (t, None)
        self.waiting.append(cid)
        exited = pb.ContainerState.Value("CONTAINER_EXITED")
        for c in list(self.waiting):
            if self.cri.status(c).status.state == exited:
                self.cri.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=c), timeout=30)
                self.short[c] = (self.short[c][0], time.time())
                self.waiting.remove(c)

    def finish(self) -> None:
        for c in list(self.waiting):
            self.cri.wait_exited(c)
            self.cri.rt.RemoveContainer(self.cri.pb.RemoveContainerRequest(container_id=c), timeout=30)
            self.short[c] = (self.short[c][0], time.time())
        self.waiting.clear()


def test_a_sensor_restarted_while_containers_churn_loses_and_repeats_nothing(real_containerd, tmp_path) -> None:
    h = real_containerd
    out, state = tmp_path / "events.jsonl", tmp_path / "state"
    cri = Cri(h, "v1")
    pods: list[tuple[str, Any]] = []
    sensor = _start(h, out, state)
    errs: list[str] = []
    try:
        _wait(lambda: any(e["type"] == "sensor.connected" for e in _lines(out)))
        pods = [cri.run_pod(f"state-{i}") for i in range(2)]
        long = [cri.run_container(pods[i % 2][0], pods[i % 2][1], f"long-{i}", ["sleep", "600"]) for i in range(3)]
        _wait(lambda: sum(e["type"] == "container.running" and e["container_id"] in long for e in _lines(out)) == 3)
        churn = Churn(cri, pods, random.Random(16))
        for _ in range(8):
            churn.step()
        sensor.send_signal(signal.SIGKILL)
        errs.append(sensor.communicate(timeout=20)[1])
        killed = time.time_ns()
        doomed = long.pop()  # stopped and removed while the sensor is down
        cri.rt.StopContainer(cri.pb.StopContainerRequest(container_id=doomed, timeout=0), timeout=30)
        cri.rt.RemoveContainer(cri.pb.RemoveContainerRequest(container_id=doomed), timeout=30)
        for _ in range(4):
            churn.step()
        restarted = time.time_ns()
        sensor = _start(h, out, state)
        for _ in range(8):
            churn.step()
        churn.finish()
        time.sleep(1.0)  # the last polls
    finally:
        for sid, _ in pods:
            cri.remove_pod(sid)
        cri.close()
        if sensor.poll() is None:
            time.sleep(0.5)  # the pods' ends
            sensor.send_signal(signal.SIGTERM)
            errs.append(sensor.communicate(timeout=20)[1])
    assert sensor.returncode == 0, errs
    assert not any("Traceback" in e for e in errs), errs
    events = _lines(out)
    seqs = [e["seq"] for e in events]
    assert all(a < b for a, b in itertools.pairwise(seqs)), "seq strictly increasing across the restart"
    per: dict[str, list[str]] = {}
    for e in events:
        if e["type"].startswith("container."):
            per.setdefault(e["container_id"], []).append(e["type"].split(".")[1])
    for cid, states in per.items():
        assert len(states) == len(set(states)), f"{cid} announced twice: {states}"
        assert [ORDER[s] for s in states] == sorted(ORDER[s] for s in states), f"{cid}: {states}"
    gaps = [e for e in events if e["type"] == "sensor.gap"]
    assert len(gaps) == 1 and gaps[0]["info"]["cause"] == "sensor restart", gaps
    assert gaps[0]["window_ns"][0] <= killed and restarted <= gaps[0]["window_ns"][1]
    assert gaps[0]["info"]["runtime_restarted"] is False
    for cid in long:  # alive across the restart: announced by the first run only (ended with their pods)
        assert per[cid][:2] == ["created", "running"], per[cid]
        first = [e for e in events if e.get("container_id") == cid][:2]
        assert all(e["observed_ns"] < killed for e in first)
    doomed_events = [e for e in events if e.get("container_id") == doomed]
    assert [e["type"] for e in doomed_events] == ["container.created", "container.running", "container.exited",
                                                  "container.destroyed"]
    assert doomed_events[2]["synthetic"] and doomed_events[2]["why"] == WHY_SENSOR_DOWN
    assert doomed_events[2]["window_ns"][0] <= killed
    for cid, (_, _removed) in churn.short.items():
        if cid in per:  # announced: its end too (nothing lost)
            assert per[cid][-1] == "destroyed", f"{cid}: {per[cid]}"
    seen = sum(1 for cid in churn.short if cid in per)
    print(f"\n{len(events)} events, {seen}/{len(churn.short)} short containers seen, "
          f"{sum(len(s) for s in per.values())} container events, gap {gaps[0]['window_ns']}")
    # the sandboxes: ready once each, and their ends after the pods were removed
    for sid, _ in pods:
        types = [e["type"] for e in events if e.get("sandbox_id") == sid and e["type"].startswith("sandbox.")]
        assert types.count("sandbox.ready") == 1, types
