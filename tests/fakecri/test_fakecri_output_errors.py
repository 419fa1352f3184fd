"""Every ``fakecri`` command that writes: a closed stdout ends it quietly (exit 0, or ``verify``'s
verdict), a full disk is one line naming the output and the errno (exit 1); never a traceback.

Real subprocesses: "closed" is a pipe whose read end is closed before the command starts (what
``| head -1`` becomes once head has its line), "full" is ``/dev/full`` (ENOSPC on every write).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.output_checks import assert_one_line, assert_quiet, closed_pipe

ROOT = Path(__file__).resolve().parents[2]
FAKECRI = [sys.executable, "-m", "fakecri.cli"]
SCENARIO = str(ROOT / "scenarios" / "fast_exit.yaml")


def run(args: list[str], stdout: int, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FAKECRI, *args], stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          text=True, timeout=timeout, cwd=ROOT)


STDOUT_COMMANDS = {
    "help": ["--help"],
    "scenarios": ["scenarios"],
    "validate": ["validate", SCENARIO],
    "validate-bad": ["validate", str(ROOT / "pyproject.toml")],
}


@pytest.mark.parametrize("name", STDOUT_COMMANDS)
def test_closed_stdout_is_a_quiet_exit_0(name: str) -> None:
    with closed_pipe() as w:
        assert_quiet(run(STDOUT_COMMANDS[name], w))


@pytest.mark.parametrize("name", STDOUT_COMMANDS)
def test_full_stdout_is_one_line_and_exit_1(name: str) -> None:
    with open("/dev/full", "w") as full:
        assert_one_line(run(STDOUT_COMMANDS[name], full.fileno()), "stdout")


def test_serve_truth_on_a_full_disk_stops_with_one_line_counting_the_records(tmp_path: Path) -> None:
    r = run(["serve", SCENARIO, "--socket", str(tmp_path / "cri.sock"), "--truth", "/dev/full", "--exit-at-end",
              "--start", "now"],
            subprocess.DEVNULL)
    line = assert_one_line(r, "/dev/full")
    assert line.startswith("fakecri: cannot write truth to /dev/full") and "records not written" in line
    assert not (tmp_path / "cri.sock").exists()


def test_serve_truth_into_a_closed_pipe_is_a_quiet_exit_0(tmp_path: Path) -> None:
    with closed_pipe() as w:
        r = run(["serve", SCENARIO, "--socket", str(tmp_path / "cri.sock"), "--truth", "/dev/stdout",
                 "--exit-at-end", "--start", "now"], w)
    assert_quiet(r)


def _verify(tmp_path: Path, stdout: int, *extra: str) -> subprocess.CompletedProcess[str]:
    sensor = [sys.executable, "-m", "sensor.cli", "run", "--enable", "--addr", "{addr}", "--poll-interval", "100ms"]
    return run(["verify", SCENARIO, "--poll-interval", "100ms", "--grace", "300ms", *extra, "--", *sensor], stdout)


def test_verify_with_a_closed_stdout_keeps_its_verdict_and_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    with closed_pipe() as w:
        r = _verify(tmp_path, w, "--report", str(report))
    assert_quiet(r)  # our sensor passes: the verdict is 0
    assert '"ok": true' in report.read_text(encoding="utf-8")


def test_verify_report_on_a_full_disk_is_one_line_and_exit_1(tmp_path: Path) -> None:
    r = _verify(tmp_path, subprocess.DEVNULL, "--report", "/dev/full")
    line = assert_one_line(r, "/dev/full")
    assert line.startswith("fakecri: cannot write the report to /dev/full")


def test_verify_report_printed_to_a_full_stdout_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        assert_one_line(_verify(tmp_path, full.fileno()), "stdout")
