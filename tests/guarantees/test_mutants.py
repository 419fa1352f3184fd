"""The mutation suite: each deliberately broken sensor (mutants.py) is caught, by the right guarantee.

Every mutant is the real sensor with one part swapped. Each runs against a bundled scenario on the
virtual clock (fast, deterministic), and the unmutated sensor must pass the same scenario, so the
verdict is about the bug and nothing else. One mutant also goes through ``fakecri verify`` as a
real subprocess wrapping ``crisensor``, to prove the command-line path catches it too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from guaranteerig import Parts, run_scenario
from mutants import MUTANTS, Mutant, main

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted({m.scenario for m in MUTANTS.values()})


def test_the_suite_covers_every_required_bug() -> None:
    assert {m.name: m.catches for m in MUTANTS.values()} == {
        "never-forge-exited": "G2",
        "duplicate-after-reconnect": "G6",
        "failed-list-as-empty": "G5",
        "wrong-windows": "G4",
        "drop-sandbox-events": "G2",
        "forged-as-seen": "G3",
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_real_sensor_passes_each_mutant_scenario(scenario: str) -> None:
    run = run_scenario(scenario, Parts())
    assert run.report.ok, run.report.render()


#: The violation that names each bug: (guarantee, words in its message).
EVIDENCE = {
    "never-forge-exited": ("G2", "no container.exited"),
    "duplicate-after-reconnect": ("G6", "emitted again"),
    "failed-list-as-empty": ("G5", "still alive"),
    "wrong-windows": ("G4", "misses the true time"),
    "drop-sandbox-events": ("G2", "no sandbox.ready"),
    "forged-as-seen": ("G3", "synthetic:false"),
}


@pytest.mark.parametrize("mutant", MUTANTS.values(), ids=lambda m: m.name)
def test_each_mutant_is_caught_by_its_guarantee(mutant: Mutant) -> None:
    run = run_scenario(mutant.scenario, mutant.parts)
    report = run.report
    assert not report.ok, f"{mutant.name} ({mutant.bug}) went unnoticed:\n{report.render()}"
    assert mutant.catches in report.failed, report.render()
    guarantee, words = EVIDENCE[mutant.name]
    assert any(words in v.message for v in report[guarantee].violations), report.render()


def test_mutants_command_refuses_an_unknown_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-mutant"]) == 2
    assert "never-forge-exited" in capsys.readouterr().err


@pytest.mark.slow
def test_fakecri_verify_catches_a_mutant_subprocess(tmp_path: Path) -> None:
    """``fakecri verify fast_exit -- python -m tests.guarantees.mutants never-forge-exited run ...``:
    real time, real processes; the report names G2 and the exit code is 1."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "fakecri.cli", "verify", "fast_exit", "--report", str(report),
           "--allowance", "150ms", "--", sys.executable, "-m", "tests.guarantees.mutants", "never-forge-exited",
           "run", "--enable", "--addr", "{addr}", "--poll-interval", "{poll_interval}", "--events", "off"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "guarantee check: FAIL (G2)" in r.stdout, r.stdout + r.stderr
    assert "no container.exited" in r.stdout
    doc = json.loads(report.read_text())
    assert doc["ok"] is False and doc["failed"] == ["G2"]
    assert doc["verify"]["exit_code"] == 1 and doc["verify"]["command_exit"] == 0
