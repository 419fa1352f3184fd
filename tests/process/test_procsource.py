"""The kernel process source's shell: a socketpair stands in for netlink, then the real kernel."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import time

import pytest

from sensor import cnproc
from sensor.exectrack import ExecTracker
from sensor.procsource import ClockOffset, KernelProcessSource, ProcFS, probe
from tests.process.test_exectrack import A, FakeProc


def _wait(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


def test_clock_offset_takes_the_narrowest_bracket() -> None:
    monos = iter([100, 150, 1000, 1002, 2000, 2030])
    walls = iter([10_000, 50_000, 90_000])
    off = ClockOffset.measure(lambda: next(monos), lambda: next(walls), samples=3)
    assert off.offset_ns == 50_000 - 1001 and off.error_ns == 1
    assert off.to_wall(5) == 5 + off.offset_ns


def test_clock_offset_on_this_machine_matches_the_clocks() -> None:
    off = ClockOffset.measure()
    assert abs(off.to_wall(time.monotonic_ns()) - time.time_ns()) < 50_000_000


def test_events_flow_from_the_socket_to_poll_and_progress_moves() -> None:
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    proc = FakeProc({10: (A, ("/bin/sh",), "/bin/sh")})
    src = KernelProcessSource(sock=ours, tracker=ExecTracker(proc, lambda m: m + 7), clock=ClockOffset())
    p0 = src.progress_ns()
    src.start()
    try:
        kernel.send(cnproc.encode_event(cnproc.Exec(mono_ns=5, cpu=0, pid=10, tgid=10)))
        kernel.send(cnproc.encode_event(cnproc.Exec(mono_ns=6, cpu=0, pid=99, tgid=99)))  # gone: counted
        assert _wait(lambda: src.tracker.counts["execs"] == 2)
        (ev,) = src.poll(time.time_ns())
        assert (ev.container_id, ev.time_ns, ev.argv) == (A, 12, ("/bin/sh",))
        assert src.tracker.counts["gone"] == 1
        # the reader notes its drain just after counting: a later poll (with nothing new) shows it
        assert _wait(lambda: src.poll(time.time_ns()) == [] and src.progress_ns() > p0)
        assert src.poll(time.time_ns()) == []
    finally:
        t0 = time.monotonic()
        src.close()
        closed_in = time.monotonic() - t0
    assert closed_in < 1.0, closed_in
    assert src._thread is not None and not src._thread.is_alive()


class _OverflowingSock:
    """A socketpair end whose first recv fails with ENOBUFS, as netlink does on overflow."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.failed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def recv(self, n: int) -> bytes:
        if not self.failed:
            self.failed = True
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        return self.sock.recv(n)

    def getsockname(self) -> tuple[int, int]:
        return (0, 0)

    def send(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        self.sock.close()


def test_a_kernel_buffer_overflow_is_a_reported_gap_and_forgets_caches() -> None:
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    gaps: list[tuple[int, int, str]] = []
    tracker = ExecTracker(FakeProc({10: (A, (), "")}))
    tracker.known[10] = object()  # type: ignore[assignment]
    src = KernelProcessSource(sock=_OverflowingSock(ours), tracker=tracker,  # type: ignore[arg-type]
                              on_gap=lambda lo, hi, why: gaps.append((lo, hi, why)), clock=ClockOffset())
    src.start()
    try:
        kernel.send(cnproc.encode_event(cnproc.Exec(mono_ns=5, cpu=0, pid=10, tgid=10)))
        assert _wait(lambda: bool(gaps) and tracker.counts["execs"] == 1)
    finally:
        src.close()
    (lo, hi, why) = gaps[0]
    assert lo <= hi and "dropped" in why and src.drops == 1
    assert len(src.poll(time.time_ns())) == 1


def test_an_overrun_message_is_a_gap_too() -> None:
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    gaps: list[str] = []
    src = KernelProcessSource(sock=ours, tracker=ExecTracker(FakeProc()), on_gap=lambda lo, hi, why: gaps.append(why),
                              clock=ClockOffset())
    src.start()
    try:
        kernel.send(cnproc.decode.__globals__["_NLMSGHDR"].pack(16, cnproc.NLMSG_OVERRUN, 0, 0, 0))
        assert _wait(lambda: bool(gaps))
    finally:
        src.close()
    assert "overrun" in gaps[0]


def test_the_queue_is_bounded_and_overflow_is_a_gap() -> None:
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    gaps: list[str] = []
    src = KernelProcessSource(sock=ours, tracker=ExecTracker(FakeProc({10: (A, (), "")})), max_queued=3,
                              on_gap=lambda lo, hi, why: gaps.append(why), clock=ClockOffset())
    src.start()
    try:
        for t in range(5):
            kernel.send(cnproc.encode_event(cnproc.Exec(mono_ns=t, cpu=0, pid=10, tgid=10)))
        assert _wait(lambda: src.tracker.counts["execs"] == 5)
    finally:
        src.close()
    assert [e.time_ns for e in src.poll(0)] == [2, 3, 4]
    assert gaps and "dropped" in gaps[0]


def test_procfs_reads_this_process_and_says_none_for_a_gone_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fs = ProcFS()
    me = os.getpid()
    assert fs.cgroup(me) is not None and "::" in fs.cgroup(me)  # type: ignore[operator]
    assert fs.cmdline(me) and fs.exe(me)
    child = subprocess.Popen(["/bin/true"])
    child.wait()
    assert fs.cgroup(child.pid) is None and fs.cmdline(child.pid) is None and fs.exe(child.pid) is None


needs_root = pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true",
                                reason="the proc connector needs root (CAP_NET_ADMIN); runs in CI as root")


@needs_root
def test_the_real_kernel_delivers_an_exec_with_its_argv_and_wall_time() -> None:
    why = probe()
    assert why is None, why
    src = KernelProcessSource(tracker=None)
    src.tracker = ExecTracker(ProcFS(), src.clock.to_wall, keep_host=True)
    src.start()
    try:
        before = time.time_ns()
        proc = subprocess.Popen(["/bin/sleep", "0.3"])
        after_start = time.time_ns()
        found = []

        def seen() -> bool:
            found.extend(e for e in src.poll(time.time_ns()) if e.pid == proc.pid)
            return bool(found)

        assert _wait(seen), src.tracker.counts
        proc.wait()
    finally:
        src.close()
    ev = found[0]
    assert ev.argv == ("/bin/sleep", "0.3") and ev.exe is not None and ev.exe.endswith("sleep")
    assert ev.ppid == os.getpid()
    assert ev.container_id is None  # a host process, kept because keep_host
    assert before - 5_000_000 <= ev.time_ns <= after_start + 1_000_000_000
    assert ev.observed_ns >= ev.time_ns - 5_000_000


@needs_root
def test_crisensor_run_writes_host_execs_with_scope_all_and_none_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The whole path in a real subprocess: kernel -> tracker -> window -> process.exec lines."""
    import json
    import signal
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    results = {}
    for scope in ("all", "containers"):
        out = tmp_path / f"{scope}.jsonl"
        sensor = subprocess.Popen([sys.executable, "-m", "sensor.cli", "run", "--enable", "--addr",
                                   f"unix://{tmp_path}/no-runtime.sock", "--processes", "proc", "--processes-scope",
                                   scope, "--reorder-window", "10ms", "--output", str(out)],
                                  cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.PIPE,
                                  text=True)
        try:
            deadline = time.monotonic() + 15
            while "process events from the kernel" not in (sensor.stderr.readline() or ""):
                assert sensor.poll() is None and time.monotonic() < deadline
            marker = f"{os.getpid()}.{len(results)}"
            subprocess.run(["/bin/sleep", f"0.{len(results) + 1}"], check=True)
            subprocess.run(["/bin/echo", marker], check=True, stdout=subprocess.DEVNULL)
            time.sleep(0.5)
        finally:
            sensor.send_signal(signal.SIGTERM)
            _, err = sensor.communicate(timeout=10)
        assert sensor.returncode == 0 and "Traceback" not in err, err
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        results[scope] = [e for e in lines if e["type"] == "process.exec"]
    sleeps = [e for e in results["all"] if e["exe"] and e["exe"].endswith("sleep")]
    assert sleeps and all(e["container_id"] is None and e["enrichment"] == "host" for e in sleeps)
    assert all(e["container_id"] is not None for e in results["containers"])  # host execs dropped by default
