"""``crisensor`` on a closed stdout and a full disk: a quiet exit 0, or one line naming the output,
the errno and (for ``run``) how many events were not written, exit 1; never a traceback.

The subprocess tests run every command that writes against a real ``fakecri serve``; the emitter's
accounting (which thread fails, how many events are lost) is checked directly, with hypothesis.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sensor.events import Event
from sensor.metrics import Metrics
from sensor.output import Emitter, GuardedOutput, OutputError, run_guarded
from tests.output_checks import assert_one_line, assert_quiet, closed_pipe

ROOT = Path(__file__).resolve().parents[2]
CRISENSOR = [sys.executable, "-m", "sensor.cli"]
T0 = 1_700_000_000_000_000_000
SCENARIO = """\
# A few containers, idle.
flavor: containerd-1.7
timeline:
  - {at: 0s, run_pod: web}
  - {at: 0s, create: {name: a, pod: web, image: busybox, start: true}}
  - {at: 0s, create: {name: b, pod: web, image: busybox, start: true}}
end: 1s
"""


@pytest.fixture(scope="module")
def addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("rt")
    (d / "s.yaml").write_text(SCENARIO, encoding="utf-8")
    sock = d / "cri.sock"
    p = subprocess.Popen([sys.executable, "-m", "fakecri.cli", "serve", str(d / "s.yaml"), "--socket", str(sock),
                          "--start", "now"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert p.poll() is None and time.monotonic() < deadline, "fakecri serve did not start"
        time.sleep(0.05)
    time.sleep(0.3)  # the timeline's first steps
    yield f"unix://{sock}"
    p.send_signal(signal.SIGTERM)
    p.wait(20)


def run(args: list[str], stdout: int, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRISENSOR, *args], stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          text=True, timeout=timeout, cwd=ROOT)


def commands(addr: str) -> dict[str, list[str]]:
    return {
        "help": ["--help"],
        "run": ["run", "--enable", "--addr", addr, "--events", "off"],
        "snapshot": ["snapshot", "--addr", addr],
        "snapshot-json": ["snapshot", "--addr", addr, "--json"],
        "doctor": ["doctor", "--addr", addr],
        "tune": ["tune", "fast_exit", "--poll-interval", "100ms", "--window", "0ms", "--phases", "1"],
    }


NAMES = ["help", "run", "snapshot", "snapshot-json", "doctor", "tune"]


@pytest.mark.parametrize("name", NAMES)
def test_closed_stdout_is_a_quiet_exit_0(addr: str, name: str) -> None:
    with closed_pipe() as w:
        assert_quiet(run(commands(addr)[name], w))


@pytest.mark.parametrize("name", NAMES)
def test_full_stdout_is_one_line_and_exit_1(addr: str, name: str) -> None:
    with open("/dev/full", "w") as full:
        line = assert_one_line(run(commands(addr)[name], full.fileno()), "stdout")
    if name == "run":
        assert re.search(r"cannot write events to stdout: .*; [1-9]\d* events not written$", line), line


def test_run_with_output_on_a_full_disk_names_the_file_and_counts(addr: str) -> None:
    r = run(["run", "--enable", "--addr", addr, "--events", "off", "--output", "/dev/full"], subprocess.DEVNULL)
    line = assert_one_line(r, "/dev/full")
    assert re.fullmatch(r"crisensor: cannot write events to /dev/full: \[Errno 28\] No space left on device; "
                        r"[1-9]\d* events not written", line), line


def test_tune_json_on_a_full_disk_is_one_line_and_exit_1() -> None:
    r = run(["tune", "fast_exit", "--poll-interval", "100ms", "--window", "0ms", "--phases", "1", "--json",
             "/dev/full"], subprocess.DEVNULL)
    assert_one_line(r, "/dev/full")


@pytest.mark.parametrize("stdout", ["closed", "full"])
def test_demo(stdout: str) -> None:
    demo = [sys.executable, "-m", "sensor.demo"]
    if stdout == "closed":
        with closed_pipe() as w:
            r = subprocess.run(demo, stdout=w, stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT)
        assert_quiet(r)
    else:
        with open("/dev/full", "w") as full:
            r = subprocess.run(demo, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT)
        assert_one_line(r, "stdout")


# ---- the emitter's accounting ---------------------------------------------------------------------


class FailingStream:
    """Accepts ``room`` lines, then every write (line-buffered) or flush fails with ``code``."""

    name = "/var/log/events"

    def __init__(self, room: int, *, line_buffering: bool, code: int = errno.ENOSPC) -> None:
        self.room = room
        self.line_buffering = line_buffering
        self.code = code
        self.buffered: list[str] = []
        self.landed: list[str] = []

    def write(self, s: str) -> int:
        lines = s.splitlines(keepends=True)  # many lines per write: on a full disk a prefix lands
        if self.line_buffering:
            for line in lines:
                self._land(line)
        else:
            self.buffered.extend(lines)
        return len(s)

    def flush(self) -> None:
        while self.buffered:
            self._land(self.buffered[0])
            self.buffered.pop(0)

    def _land(self, s: str) -> None:
        if len(self.landed) >= self.room:
            raise OSError(self.code, os.strerror(self.code))
        self.landed.append(s)


def _ev(i: int) -> Event:
    return Event(type="sensor.connected", time_ns=T0 + i, window_ns=(T0 + i, T0 + i), observed_ns=T0 + i)


@given(batches=st.lists(st.integers(0, 6), max_size=8), room=st.integers(0, 30), line_buffering=st.booleans())
@example(batches=[3, 3], room=3, line_buffering=False)  # fails exactly at a batch boundary
@example(batches=[5], room=2, line_buffering=True)
def test_every_event_is_either_written_or_counted(batches: list[int], room: int, line_buffering: bool) -> None:
    out = FailingStream(room, line_buffering=line_buffering)
    failures: list[OutputError] = []
    counted: list[int] = []
    emitter = Emitter(out, on_failure=failures.append, on_unwritten=counted.append)  # type: ignore[arg-type]
    seen: list[Event] = []
    emitter.listeners.append(seen.append)
    n = 0
    for size in batches:
        emitter.emit([_ev(n + i) for i in range(size)])
        n += size
    assert [e.seq for e in seen] == list(range(1, n + 1))  # numbering and listeners go on regardless
    assert sum(counted) == emitter.unwritten
    assert len(out.landed) + emitter.unwritten >= n  # nothing lost without being counted
    # ... and only the failing write's lines can be counted though they landed (one write per batch)
    assert len(out.landed) + emitter.unwritten <= n + (max(batches, default=0) if line_buffering else room)
    assert all(line.endswith("\n") for line in out.landed)  # whole lines
    if n <= room:
        assert failures == [] and emitter.failure is None and emitter.unwritten == 0
    else:
        assert len(failures) == 1 and failures[0] is emitter.failure
        assert str(emitter.failure) == (f"cannot write events to /var/log/events: [Errno 28] No space left on device; "
                                        f"{emitter.unwritten} events not written")


def test_a_closed_pipe_is_not_an_error_and_a_failure_from_the_stream_thread_stops_the_sensor() -> None:
    stop = threading.Event()
    metrics = Metrics()
    out = FailingStream(1, line_buffering=True, code=errno.EPIPE)
    emitter = Emitter(out, on_failure=lambda _: stop.set(),  # type: ignore[arg-type]
                      on_unwritten=metrics.events_unwritten.inc)
    emitter.emit([_ev(0)])
    t = threading.Thread(target=emitter.emit, args=([_ev(1), _ev(2)],))  # as the stream reader would
    t.start()
    t.join()
    assert stop.is_set() and emitter.failure is not None and emitter.failure.closed
    assert metrics.registry.get_sample_value("crisensor_events_unwritten_total") == 2
    assert emitter.close() and emitter.emit([_ev(3)]) == []  # closed: nothing more is written or numbered


def test_run_guarded_maps_output_failures_to_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    def fails(code: int) -> int:
        raise OutputError("/x", OSError(code, os.strerror(code)))

    assert run_guarded("prog", lambda: fails(errno.EPIPE)) == 0
    assert capsys.readouterr().err == ""
    assert run_guarded("prog", lambda: fails(errno.EIO)) == 1
    assert capsys.readouterr().err == "prog: cannot write events to /x: [Errno 5] Input/output error\n"
    assert run_guarded("prog", lambda: 3) == 3


def test_guarded_output_names_the_output() -> None:
    g = GuardedOutput(FailingStream(0, line_buffering=True), "stdout")
    with pytest.raises(OutputError, match=r"^cannot write output to stdout: \[Errno 28\]"):
        g.write("x\n")
