"""Benchmark: the kernel process source (DESIGN.md section 7: <= 20 us CPU per exec in the
shell + decoder + attribution path; no silent drops at 10,000 execs/s).

    python -m bench.bench_execs [--execs N] [--storm N] [--workers W] [--json FILE]

Two parts:

* ``cpu``: the path one exec takes, on this machine's real ``/proc``, timed with the thread's
  CPU clock (median of 5 runs of N execs each):
  ``decode`` (``sensor.cnproc`` only), ``host`` (decode + read ``/proc/PID/cgroup`` + attribute: a
  host process, dropped there), ``container`` (the same for a process whose cgroup file names a
  container -- a stand-in ``/proc`` entry, since the machine need not run containers -- plus
  ``cmdline`` and ``exe`` of a live process). PIDs are live processes of this benchmark.
* ``storm``: the real source subscribed to the real kernel (root only) while W shell loops exec
  ``/bin/true`` N times in all, as fast as this machine forks. It reports the exec rate reached,
  the execs the source saw versus those the storm made, the losses it reported (``ENOBUFS``,
  overruns: each a gap, never silent), and the reader thread's CPU per exec (from
  ``/proc/self/task/TID/stat``, so the storm's own processes are not counted).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import write_result
from sensor import cnproc
from sensor.exectrack import ExecTracker
from sensor.procsource import KernelProcessSource, ProcFS, probe

DEFAULT_JSON = Path(__file__).parent / "results" / "execs.json"
CID = "c0ffee" * 10 + "c0ff"


class _ContainerCgroup(ProcFS):
    """The real ``/proc`` for everything but ``cgroup``, which is read from a file shaped like a
    containerd container's (the same read cost: one small procfs-sized file)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def cgroup(self, pid: int) -> str | None:
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.read(fd, 65536).decode()
        finally:
            os.close(fd)


def _per_exec_us(fn: Any, n: int, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.thread_time()
        fn(n)
        times.append((time.thread_time() - t0) / n * 1e6)
    return statistics.median(times)


def cpu(n: int) -> dict[str, float]:
    sleepers = [subprocess.Popen(["/bin/sleep", "60"]) for _ in range(16)]
    try:
        pids = [p.pid for p in sleepers]
        grams = [cnproc.encode_event(cnproc.Exec(mono_ns=i, cpu=0, pid=p, tgid=p)) for i, p in enumerate(pids)]
        with tempfile.NamedTemporaryFile("w", suffix=".cgroup", delete=False) as f:
            f.write("".join(f"{i}:c{i}:/k8s.io/{CID}\n" for i in range(9, 0, -1)) + f"0::/k8s.io/{CID}\n")
        host = ExecTracker(ProcFS())
        container = ExecTracker(_ContainerCgroup(f.name))

        def decode(k: int) -> None:
            for i in range(k):
                cnproc.decode(grams[i & 15])

        def through(tracker: ExecTracker) -> Any:
            def run(k: int) -> None:
                for i in range(k):
                    for m in cnproc.decode(grams[i & 15]):
                        tracker.feed(m, 0)
            return run

        # A child of a container process: the fork, the exec and the exit it costs, attribution
        # inherited from the parent (sensor.exectrack, "Inheritance").
        child = ExecTracker(_ContainerCgroup(f.name))
        child.feed(cnproc.Exec(mono_ns=0, cpu=0, pid=os.getpid(), tgid=os.getpid()), 0)
        life = [cnproc.encode_event(cnproc.Fork(0, 0, os.getpid(), os.getpid(), p, p)) + grams[i]
                + cnproc.encode_event(cnproc.Exit(0, 0, p, p, 0, 17, os.getpid(), os.getpid()))
                for i, p in enumerate(pids)]

        def inherited(k: int) -> None:
            for i in range(k):
                for m in cnproc.decode(life[i & 15]):
                    child.feed(m, 0)

        out = {"decode_us": _per_exec_us(decode, n), "host_us": _per_exec_us(through(host), n),
               "container_us": _per_exec_us(through(container), n), "inherited_us": _per_exec_us(inherited, n)}
        assert child.counts["inherited"] > 0
        assert container.counts["emitted"] > 0 and host.counts["host"] > 0
        os.unlink(f.name)
        return out
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def _thread_cpu_s(tid: int) -> float:
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def storm(total: int, workers: int) -> dict[str, Any]:
    why = probe()
    if why is not None:
        return {"skipped": why}
    gaps: list[str] = []
    src = KernelProcessSource(on_gap=lambda lo, hi, w: gaps.append(w))
    src.tracker.keep_host = True  # count every exec of the storm, not only container ones
    src.start()
    assert src._thread is not None
    tid = src._thread.native_id
    marker = f"/bin/true storm-{os.getpid()}"
    per = total // workers
    try:
        time.sleep(0.2)
        c0 = _thread_cpu_s(tid)
        t0 = time.monotonic()
        loops = [subprocess.Popen(["/bin/sh", "-c", f"i=0; while [ $i -lt {per} ]; do {marker}; i=$((i+1)); done"])
                 for _ in range(workers)]
        for p in loops:
            p.wait()
        wall = time.monotonic() - t0
        time.sleep(0.5)  # let the reader drain
        c1 = _thread_cpu_s(tid)
        seen = 0
        for ev in src.poll(time.time_ns()):
            if ev.argv[:2] == ("/bin/true", f"storm-{os.getpid()}") or (ev.exe or "").endswith("/true"):
                seen += 1
        counts = dict(src.tracker.counts)
    finally:
        src.close()
    made = per * workers
    return {"execs_made": made, "rate_per_s": made / wall, "execs_seen": seen,
            "gone_before_read": counts.get("gone", 0),
            "via_parent": counts.get("via_parent", 0), "losses_reported": src.drops, "gaps": gaps[:5],
            "reader_cpu_us_per_exec": (c1 - c0) / max(1, counts.get("execs", 1)) * 1e6,
            "execs_decoded": counts.get("execs", 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_execs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--execs", type=int, default=20_000, help="execs per CPU run (default 20000)")
    ap.add_argument("--storm", type=int, default=20_000, help="execs in the storm (default 20000; 0 skips it)")
    ap.add_argument("--workers", type=int, default=4, help="shell loops in the storm (default 4)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args(argv)
    c = cpu(args.execs)
    print("process source, CPU per exec (median of 5 runs, this thread's CPU clock)")
    print(f"  decode only                          {c['decode_us']:7.1f} us")
    print(f"  host process (decode+cgroup+drop)    {c['host_us']:7.1f} us")
    print(f"  container entrypoint (+cmdline, exe) {c['container_us']:7.1f} us   target <= 20 us")
    print("  container child: fork+exec+exit,")
    print(f"    attribution inherited              {c['inherited_us']:7.1f} us   target <= 20 us")
    s: dict[str, Any] = {}
    if args.storm:
        s = storm(args.storm, args.workers)
        if "skipped" in s:
            print(f"storm: skipped: {s['skipped']}")
        else:
            print(f"storm: {s['execs_made']} execs at {s['rate_per_s']:.0f}/s; source saw {s['execs_seen']} "
                  f"(decoded {s['execs_decoded']}), {s['gone_before_read']} gone before /proc could be read "
                  f"({s['via_parent']} attributed through the fork parent), losses reported: {s['losses_reported']}; "
                  f"reader thread {s['reader_cpu_us_per_exec']:.1f} us CPU per exec")
    write_result(args.json, {"benchmark": "execs", "python": sys.version.split()[0], "machine": platform.machine(),
                             "cpus": os.cpu_count(), "cpu": c, "storm": s})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
