"""Real execs in REAL containerd containers, through ``crisensor run --processes proc``.

The seed's advice, live: a container's first process execs the moment the container starts,
before any poll has announced the container; with polling at 250 ms and an
``event_reorder_window`` of 270 ms, the analytics stage holds each exec long enough for the poll
that announces its container, and the exec comes out enriched with that container's data as of
its own time. Each container here runs ``sh -c '/bin/echo marker; sleep 0.4'`` (the shell, the
echo, the sleep: execs at start, some of them gone before ``/proc`` can be read). Every exec of
these containers must name the right container, pod and sandbox or say it is unsure (G10: never
another container's data), and >= 95% must be enriched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from tests.realruntime.test_containerd_smoke import Cri

pytestmark = [pytest.mark.realruntime, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = 12


def _sensor(addr: str, out: Path, window: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "sensor.cli", "run", "--enable", "--addr", addr,
                             "--processes", "proc", "--events", "off", "--poll-interval", "250ms",
                             "--reorder-window", window, "--output", str(out)],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


WINDOW = os.environ.get("CRISENSOR_TEST_WINDOW", "270ms")  # another window shows the test can fail


def test_execs_at_container_start_are_enriched_right_with_the_advised_window(real_containerd, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the proc connector needs root")
    out = tmp_path / "events.jsonl"
    sensor = _sensor(real_containerd.addr, out, WINDOW)
    cri = Cri(real_containerd, "v1")
    made: dict[str, str] = {}  # container id -> name
    sid = ""
    try:
        deadline = time.monotonic() + 20
        while not any(e.get("type") == "sensor.connected" for e in _lines(out)):
            assert sensor.poll() is None, sensor.stderr.read() if sensor.stderr else ""
            assert time.monotonic() < deadline, "the sensor never connected"
            time.sleep(0.05)
        sid, pod_config = cri.run_pod("execs")
        for i in range(CONTAINERS):
            name = f"exec-{i}"
            cid = cri.run_container(sid, pod_config, name, ["sh", "-c", f"/bin/echo marker-{i}; sleep 0.4"])
            made[cid] = name
            time.sleep(0.15)  # starts spread over the poll interval's phases
        for cid in made:
            cri.wait_exited(cid)
        time.sleep(1.0)  # the last polls and windows
    finally:
        if sid:
            cri.remove_pod(sid)
        cri.close()
        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=10)
    assert sensor.returncode == 0, err
    assert "Traceback" not in err, err
    events = _lines(out)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    schema = jsonschema.Draft202012Validator(json.loads((ROOT / "sensor/schema/process-exec.schema.json").read_text()))
    for e in events:
        if e["type"] == "process.exec":
            schema.validate(e)
    execs = [e for e in events if e["type"] == "process.exec" and e["container_id"] in made]
    assert len(execs) >= CONTAINERS, f"only {len(execs)} execs in {CONTAINERS} containers: {events[-5:]}"
    wrong = []
    ok = 0
    for e in execs:
        if e["enrichment"] != "ok":
            continue
        want = (made[e["container_id"]], sid, "execs", "crisensor-test")
        got = (e["name"], e["sandbox_id"], (e["pod"] or {}).get("name"), (e["pod"] or {}).get("namespace"))
        if got != want:
            wrong.append((e, want))
        else:
            ok += 1
    print(f"\n{ok}/{len(execs)} execs in {CONTAINERS} containers enriched right with a {WINDOW} window; "
          f"not enriched: {[(e['argv'], e['why']) for e in execs if e['enrichment'] != 'ok']}")
    assert not wrong, wrong
    assert ok >= 0.95 * len(execs), f"{ok}/{len(execs)} enriched"
    firsts = {e["container_id"] for e in execs}
    assert firsts == set(made), "every container's first process was seen"
