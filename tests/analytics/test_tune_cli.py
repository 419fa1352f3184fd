"""``crisensor tune`` as a user runs it (issue 14 item 11): a progress line with an ETA on a
terminal's stderr and none on a pipe; a readable chart (units on both axes, the seed's 25 ms
default and 270 ms advice marked)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from fakecri import scenario as sc
from sensor import tune

TUNE = [sys.executable, "-m", "sensor.cli", "tune", "fast_exit", "--poll-interval", "250ms", "--window", "0,270ms",
        "--phases", "3"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_progress_and_eta_on_a_terminal() -> None:
    master, slave = os.openpty()
    proc = subprocess.Popen(TUNE, stdout=subprocess.PIPE, stderr=slave, env=ENV)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0
    text = seen.decode()
    print(repr(text[-300:]))
    assert "crisensor tune: [" in text and "0/3 runs 0% ETA --" in text
    assert "3/3 runs 100% ETA 0s" in text and "\r" in text
    assert text.endswith("\r\x1b[K")  # the line is wiped before the table is read
    assert b"watermark" in out and b"ETA" not in out


def test_no_progress_on_a_pipe() -> None:
    r = subprocess.run(TUNE, capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and "watermark" in r.stdout


@pytest.mark.parametrize(("done", "total", "elapsed", "want"), [
    (0, 48, 0.0, "[........................] 0/48 runs 0% ETA --"),
    (12, 48, 30.0, "[######..................] 12/48 runs 25% ETA 1m30s"),
    (48, 48, 120.0, "[########################] 48/48 runs 100% ETA 0s"),
])
def test_progress_line(done: int, total: int, elapsed: float, want: str) -> None:
    assert tune.progress_line(done, total, elapsed) == f"crisensor tune: {want}"


def test_the_chart_has_units_and_marks_the_seed_values(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # in the test extra: installed wherever the tests are
    result = tune.sweep(sc.load("fast_exit"), [250 * tune.MS], [0, 25 * tune.MS, 270 * tune.MS], phases=1)
    fig = tune.figure(result)
    (ax,) = fig.axes
    assert "(ms)" in ax.get_xlabel() and "(%)" in ax.get_ylabel()
    marks = {line.get_label(): line.get_xdata()[0] for line in ax.get_lines() if "seed" in line.get_label()}
    assert marks == {"seed default: event_reorder_window 25 ms": 25.0,
                     "seed advice at 250 ms polling: event_reorder_window 270 ms": 270.0}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(label in legend for label in marks)
    png = tmp_path / "t.png"
    r = subprocess.run([*TUNE, "--plot", str(png)], capture_output=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
