"""Real execs in real containers, watched by a real ``crisensor run --processes proc``.

One run: start the sensor (polling, no event stream, a given ``event_reorder_window``), wait until
it has connected, start ``containers`` busybox containers in one pod, each running
``sh -c '/bin/echo marker-N; sleep 0.4'`` (three execs at its start, the echo gone almost at
once), a little apart so that their starts fall on every phase of the poll interval; wait for
them to exit, SIGTERM the sensor and read what it wrote. ``score`` says how many execs of those
containers came out enriched with the right container and pod, how many wrongly (G10), and the
delay the analytics stage added (``released_ns - observed_ns``). The test
(tests/realruntime/test_processes_vs_containerd.py) and the window benchmark
(bench/bench_enrichment.py) both run it.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .containerd import ContainerdHandle
from .cri import Cri

ROOT = Path(__file__).resolve().parents[2]
POD = "execs"
POD_NAMESPACE = "crisensor-test"


@dataclass
class ExecRun:
    events: list[dict[str, Any]]
    made: dict[str, str]  # container id -> name
    sandbox_id: str
    returncode: int | None
    stderr: str
    window: str
    extra: list[str] = field(default_factory=list)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_execs(handle: ContainerdHandle, out: Path, window: str, *, containers: int = 12, poll: str = "250ms",
              extra: list[str] | None = None, spacing_s: float = 0.15) -> ExecRun:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "sensor.cli", "run", "--enable", "--addr", handle.addr, "--processes", "proc",
            "--events", "off", "--poll-interval", poll, "--reorder-window", window, "--output", str(out),
            *(extra or [])]
    sensor = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    cri = Cri(handle, "v1")
    made: dict[str, str] = {}
    sid = ""
    try:
        deadline = time.monotonic() + 20
        while not any(e.get("type") == "sensor.connected" for e in _lines(out)):
            if sensor.poll() is not None or time.monotonic() > deadline:
                sensor.kill()
                err = sensor.communicate()[1]
                raise RuntimeError(f"the sensor never connected: {err.strip()[-2000:]}")
            time.sleep(0.05)
        sid, pod_config = cri.run_pod(POD)
        for i in range(containers):
            name = f"exec-{i}"
            made[cri.run_container(sid, pod_config, name, ["sh", "-c", f"/bin/echo marker-{i}; sleep 0.4"])] = name
            time.sleep(spacing_s)
        for cid in made:
            cri.wait_exited(cid)
        time.sleep(1.0)  # the last polls and windows
    finally:
        if sid:
            cri.remove_pod(sid)
        cri.close()
        sensor.send_signal(signal.SIGTERM)
        try:
            _, err = sensor.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            sensor.kill()
            _, err = sensor.communicate()
    return ExecRun(_lines(out), made, sid, sensor.returncode, err, window, list(extra or []))


def score(run: ExecRun) -> dict[str, Any]:
    """Execs of the run's containers: enriched right, wrong (another container's data), unsure."""
    execs = [e for e in run.events if e.get("type") == "process.exec" and e.get("container_id") in run.made]
    right: list[dict[str, Any]] = []
    wrong: list[tuple[dict[str, Any], tuple[Any, ...]]] = []
    for e in execs:
        if e["enrichment"] != "ok":
            continue
        want = (run.made[e["container_id"]], run.sandbox_id, POD, POD_NAMESPACE)
        pod = e.get("pod") or {}
        got = (e.get("name"), e.get("sandbox_id"), pod.get("name"), pod.get("namespace"))
        (right.append(e) if got == want else wrong.append((e, want)))
    delays = sorted((e["released_ns"] - e["observed_ns"]) / 1e6 for e in execs)
    return {
        "window": run.window,
        "execs": len(execs),
        "containers": len(run.made),
        "containers_seen": len({e["container_id"] for e in execs}),
        "right": len(right),
        "wrong": len(wrong),
        "wrong_examples": [w[0] for w in wrong[:3]],
        "right_pct": 100.0 * len(right) / len(execs) if execs else 0.0,
        "unsure": [(e["argv"], e["why"]) for e in execs if e["enrichment"] != "ok"],
        "delay_ms_p50": statistics.median(delays) if delays else None,
        "delay_ms_p99": delays[min(len(delays) - 1, int(0.99 * len(delays)))] if delays else None,
    }
