"""What a new user trips over in the first hour (issue 14 items 7-9), through the real CLIs.

Each case runs ``crisensor`` or ``fakecri`` as a subprocess and reads its one stderr line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
ADDR = "unix:///nonexistent/cri.sock"


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60, env=ENV)


def one_line(r: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def write(tmp_path: Path, text: str, name: str = "sensor.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# --- item 7: the disabled message and flag errors ---------------------------------------------------


def test_disabled_names_both_ways_to_enable(tmp_path: Path) -> None:
    cfg = write(tmp_path, f"crisensor:\n  addr: {ADDR}\n")
    line = one_line(run("sensor.cli", "run", "--config", cfg), code=0)
    assert "--enable" in line and f"crisensor.enabled: true in {cfg}" in line, line


@pytest.mark.parametrize(("flag", "value", "key"), [
    ("--poll-interval", "fast", "crisensor.poll_interval"),
    ("--reorder-window", "soon", "event_reorder_window"),
    ("--events", "maybe", "crisensor.events"),
    ("--handshake", "sometimes", "crisensor.handshake"),
    ("--addr", "/var/run/crio/crio.sock", "crisensor.addr"),
    ("--processes-scope", "some", "crisensor.processes_scope"),
    ("--lookup-on-miss", "perhaps", "crisensor.lookup_on_miss"),
])
def test_flag_errors_name_the_flag_as_typed(tmp_path: Path, flag: str, value: str, key: str) -> None:
    cfg = write(tmp_path, f"crisensor:\n  enabled: true\n  addr: {ADDR}\n")
    line = one_line(run("sensor.cli", "run", "--config", cfg, "--analytics-config", write(tmp_path, "{}\n", "a.yaml"),
                        flag, value))
    assert line.startswith(f"crisensor: {flag}: "), line
    assert "override" not in line and key not in line.split("(accepted")[0], line
    assert "(accepted: " in line


def test_enable_without_an_address_names_the_flag(tmp_path: Path) -> None:
    line = one_line(run("sensor.cli", "run", "--config", write(tmp_path, "crisensor:\n"), "--enable"))
    assert line.startswith("crisensor: --enable: crisensor.addr is unset"), line
    assert "unix://" in line


# --- item 8: a floor under the poll interval ------------------------------------------------------


@pytest.mark.parametrize("value", ["1ns", "9ms", "9999999ns", "0s"])
def test_poll_interval_below_10ms_is_refused_by_flag(tmp_path: Path, value: str) -> None:
    cfg = write(tmp_path, f"crisensor:\n  enabled: true\n  addr: {ADDR}\n")
    line = one_line(run("sensor.cli", "run", "--config", cfg, "--poll-interval", value))
    assert line.startswith(f'crisensor: --poll-interval: "{value}" is not >= 10ms and <= 1h'), line
    assert "(accepted: a Go duration >= 10ms and <= 1h" in line


def test_poll_interval_below_10ms_is_refused_in_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, f"crisensor:\n  enabled: true\n  addr: {ADDR}\n  poll_interval: 1ns\n")
    line = one_line(run("sensor.cli", "run", "--config", cfg))
    assert line == (f'crisensor: {cfg}:4: crisensor.poll_interval: "1ns" is not >= 10ms and <= 1h '
                    "(accepted: a Go duration >= 10ms and <= 1h, e.g. 150ms, 1s, 1m30s)")


def test_poll_interval_of_10ms_is_accepted(tmp_path: Path) -> None:
    # snapshot loads the same config; the runtime is absent, so it fails at runtime (exit 1), not config (2)
    cfg = write(tmp_path, f"crisensor:\n  addr: {ADDR}\n  poll_interval: 10ms\n")
    r = run("sensor.cli", "snapshot", "--config", cfg)
    assert r.returncode == 1, r.stderr


# --- item 9: duplicate keys anywhere --------------------------------------------------------------


@pytest.mark.parametrize(("text", "where", "key", "lines"), [
    # the crisensor: section twice used to be merged silently
    (f"crisensor:\n  enabled: true\nother:\n  x: 1\ncrisensor:\n  addr: {ADDR}\n", 5, "crisensor", (1, 5)),
    (f"crisensor:\n  addr: {ADDR}\n  enabled: false\n  enabled: true\n", 4, "crisensor.enabled", (3, 4)),
    # a section of another Capsule8 component, nested in a list: still a mistake worth a line
    (f"crisensor:\n  addr: {ADDR}\nother:\n  a:\n    - b: 1\n      b: 2\n", 6, "other.a[0].b", (5, 6)),
    # keys are case-insensitive (viper)
    (f"crisensor:\n  addr: {ADDR}\nCriSensor:\n  enabled: true\n", 3, "crisensor", (1, 3)),
])
def test_duplicate_keys_in_the_sensor_config(tmp_path: Path, text: str, where: int, key: str,
                                             lines: tuple[int, int]) -> None:
    cfg = write(tmp_path, text)
    line = one_line(run("sensor.cli", "run", "--config", cfg, "--enable"))
    assert line == (f"crisensor: {cfg}:{where}: {key}: given twice (lines {lines[0]} and {lines[1]}) "
                    "(accepted: each key once)"), line


def test_duplicate_keys_in_the_analytics_config(tmp_path: Path) -> None:
    cfg = write(tmp_path, f"crisensor:\n  addr: {ADDR}\n")
    analytics = write(tmp_path, "event_reorder_window: 25ms\nengine:\n  rules:\n    a: 1\n    a: 2\n", "a.yaml")
    line = one_line(run("sensor.cli", "run", "--config", cfg, "--analytics-config", analytics, "--enable"))
    assert line == (f"crisensor: {analytics}:5: engine.rules.a: given twice (lines 4 and 5) "
                    "(accepted: each key once)"), line


@pytest.mark.parametrize(("text", "where", "key", "first"), [
    ("flavor: containerd-1.7\nflavor: crio-1.13\ntimeline: []\n", 2, "flavor", 1),
    ("flavor: containerd-1.7\ntimeline:\n  - at: 0s\n    at: 1s\n    run: {pod: a, container: b}\n", 4, "at", 3),
])
def test_duplicate_keys_in_a_scenario(tmp_path: Path, text: str, where: int, key: str, first: int) -> None:
    path = write(tmp_path, text, "s.yaml")
    r = run("fakecri.cli", "validate", path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    out = (r.stdout + r.stderr).strip()
    assert f"s.yaml:{where}:" in out and f'duplicate key "{key}" (first at line {first})' in out, out
