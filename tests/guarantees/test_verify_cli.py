"""``fakecri verify``: any sensor command against a scenario in real time (fakecri/verify.py).

Real processes and real sockets throughout; the scenarios are short so each run takes seconds.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fakecri import verify
from fakecri.cli import main

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def _readme_example() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^fakecri verify scenarios/\S+ -- crisensor run .*$", text, re.M)
    assert m, "README.md lost its copy-paste fakecri verify example"
    return shlex.split(m.group(0))


def test_the_readme_example_passes() -> None:
    """The README's line, run as written -- with the two console scripts spelled ``python -m``
    (this checkout may not be pip-installed)."""
    argv = _readme_example()
    i = argv.index("crisensor")
    cmd = [PY, "-m", "fakecri.cli", *argv[1:i], PY, "-m", "sensor.cli", *argv[i + 1 :]]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("guarantee check: PASS"), r.stdout
    assert "the sensor listed the runtime; scenario started" in r.stderr


def test_cri_addr_from_the_environment_and_unreadable_lines_fail(tmp_path: Path) -> None:
    """The sensor takes its address from $CRI_ADDR; one stray line on stdout fails the check
    (FORMAT FAIL, with its line number) although every guarantee holds."""
    script = ('echo "starting up"; exec "$0" -m sensor.cli run --enable --addr "$CRI_ADDR" --processes off '
              '--poll-interval 250ms --events off')
    report = tmp_path / "r.json"
    r = subprocess.run([PY, "-m", "fakecri.cli", "verify", "fast_exit", "--grace", "1500ms", "--report", str(report),
                        "--allowance", "150ms",
                        "--", "sh", "-c", script, PY], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FORMAT FAIL  1 unreadable event line(s)" in r.stdout
    assert "line 1: not JSON" in r.stdout and "starting up" in r.stdout
    assert all(f"{g} " in r.stdout for g in ("G1", "G8"))
    doc = json.loads(report.read_text())
    assert doc["ok"] is False and doc["failed"] == [] and len(doc["parse_failures"]) == 1
    assert doc["counts"]["events_readable"] > 0


def test_substitution_touches_only_the_placeholders() -> None:
    got = verify.substitute(["--a={addr}", "{socket}", "{poll_interval}", "{x}", '{"k": 1}'],
                            "unix:///s/cri.sock", "/s/cri.sock", 100_000_000)
    assert got == ["--a=unix:///s/cri.sock", "/s/cri.sock", "100ms", "{x}", '{"k": 1}']


def _bad_scenario(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("flavor: containerd-1.7\ntimeline:\n  - {at: 0s, start: ghost}\n")
    return str(path)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["fast_exit", "--", "no-such-sensor-here", "run"], "command not found: no-such-sensor-here"),
        (["fast_exit", "--", "./no/such/sensor"], "command not found: ./no/such/sensor"),
        (["fast_exit"], "no command to verify"),
        (["fast_exit", "--poll-interval", "soon", "--", "true"], "--poll-interval"),
        (["fast_exit", "--speed", "0", "--", "true"], "--speed must be a number > 0"),
        (["no_such_scenario", "--", "true"], "no bundled scenario 'no_such_scenario'"),
        (["fast_exit", "--report", "/no/such/dir/r.json", "--", "true"], "--report /no/such/dir/r.json"),
        (["BAD", "--", "true"], "bad.yaml:3:"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], expect: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    args = [_bad_scenario(tmp_path) if a == "BAD" else a for a in args]
    assert main(["verify", *args]) == 2
    err = capsys.readouterr().err
    assert expect in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_a_sensor_that_never_lists_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """``crisensor run`` without ``--enable`` exits 0 at once: verify must not call that a pass."""
    assert main(["verify", "fast_exit", "--", PY, "-m", "sensor.cli", "run", "--addr", "{addr}"]) == 1
    err = capsys.readouterr().err
    assert "before it listed the runtime" in err
    assert "pass --enable" in err  # the command's stderr tail explains why


def test_start_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    assert main(["verify", "fast_exit", "--start-timeout", "300ms", "--", PY, "-c", "import time; time.sleep(30)"]) == 1
    assert "did not list the runtime within 300ms" in capsys.readouterr().err
    assert time.monotonic() - t0 < 10  # the sleeper got SIGTERM


STUBBORN = textwrap.dedent("""
    import os, signal, time
    from sensor.client import CriClient
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    c = CriClient(os.environ["CRI_ADDR"])
    c.connect()
    c.list()
    time.sleep(60)
""")


def test_a_sensor_that_ignores_sigterm_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text("flavor: containerd-1.7\ntimeline:\n  - {at: 0s, run_pod: web}\nend: 100ms\n")
    monkeypatch.setattr(verify, "KILL_AFTER_S", 0.5)
    monkeypatch.chdir(ROOT)
    t0 = time.monotonic()
    outcome = verify.run(verify.Options(str(scenario), [PY, "-c", STUBBORN], grace_ns=0), out=io.StringIO(),
                         err=io.StringIO())
    assert outcome.command_exit == -9
    assert time.monotonic() - t0 < 10
    # It listed once, before the timeline started (that list started it), and never again: it saw
    # nothing, so it owed nothing.
    assert outcome.exit_code == 0 and outcome.report is not None and outcome.report.ok
