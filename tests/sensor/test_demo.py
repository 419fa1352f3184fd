"""``make demo`` runs ``python -m sensor.demo``: it must show the forged exit of fast_exit's job."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_prints_the_forged_exit() -> None:
    r = subprocess.run([sys.executable, "-m", "sensor.demo"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "web/job" in line and line.split()[0].isdigit()]
    exited = next(line for line in rows if "container.exited" in line)
    assert " * " in exited and exited.rstrip().endswith("exited and removed between polls")
    assert any("container.destroyed" in line for line in rows)
    assert "# ground truth" in r.stdout


def test_demo_json_mode_prints_only_events() -> None:
    r = subprocess.run([sys.executable, "-m", "sensor.demo", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    forged = [e for e in events if e["type"] == "container.exited" and e["name"] == "job"]
    assert forged and forged[0]["synthetic"] is True


def test_demo_rejects_an_unknown_scenario() -> None:
    r = subprocess.run([sys.executable, "-m", "sensor.demo", "nonesuch"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("demo: no bundled scenario 'nonesuch' (accepted: ")
