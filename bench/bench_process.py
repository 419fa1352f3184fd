"""Benchmark: what the operator pays -- the real ``crisensor run`` process next to the transport floor
(DESIGN.md section 7, issue "pay only what the transport costs").

    python -m bench.bench_process [--sizes 1000,10000] [--window 12s] [--repeats 3] [--churn-rate 1000]
                                  [--churn 10000] [--quick] [--json FILE]

Every figure is taken from outside, as an operator's ``top`` would: ``fakecri serve`` runs in one
process, the measured client in another, and this process reads the client's CPU -- per thread from
``/proc/PID/task/*/schedstat`` (ns; ``/proc/PID/stat``'s utime + stime, in 10 ms ticks but counting
ended threads too, when a thread ended during the window) -- and ``/proc/PID/status`` (VmHWM: peak RSS).
Two clients take turns against the same fake, in the same run:

* ``sensor``: ``crisensor run`` (processes off, output to a file), polling every 250 ms
  (``events: off``) or streaming (``events: on``, a reconciling list every ``resync_interval``);
* ``floor``: ``python -m bench.bench_process floor``, the transport floor: a grpcio client that
  fetches the same ListContainers + ListPodSandbox answers at the same rate and decodes nothing
  (``poll``), or holds a GetContainerEvents stream open and reads its items undecoded (``stream``).
  Under churn the polling floor also makes, after each poll's lists, as many ContainerStatus calls
  as the sensor made per poll in the same run (``crisensor_cri_calls_total``; the sensor's
  ``status_in_flight`` at once, for IDs the runtime does not have: most of the sensor's exits answer
  NotFound under this churn too), and times its polls as the sensor's histogram does;
* ``resync``: the stream floor that also fetches the two lists once per resync period, as the
  streaming sensor does (``resync`` floor minus ``floor`` is the resync's amortized transport cost).

Cases, per node size (``large_node``: kubelet-shaped containers, 100 per pod, containerd-1.7):

* ``poll idle``: CPU per poll over ``--window`` after the first snapshot; peak RSS; the first
  snapshot's wall time (from the ``sensor.connected`` event's time to the moment the first poll's
  last event is in the output file, seen within 20 ms; ``first_snapshot_diffed_s`` stops at that
  event's ``observed_ns``, before the events are written) and the process's time from spawn to it;
* ``stream idle``: CPU per second with an open, idle stream (the sensor's resyncs included), next to
  both stream floors. The window is a whole number of resync periods (``RESYNC_PERIOD_S``: the
  sensor lists half a tick early), so every client's window holds exactly as many resyncs whatever
  its phase -- a 12 s window held one or two, which moved a figure by a third;
* ``poll churn`` / ``stream churn`` (``--churn`` node size only): the node churns ``--churn-rate``
  container lifecycles/s (each runs 0.5-2 s, is removed 50-250 ms after it exits); the sensor's poll
  wall times come from its own histogram (``--metrics-addr``, scraped at the churn's start and
  end: the share of polls <= 250 ms, and p50/p99 interpolated within buckets), and so does each
  poll's wait in CRI calls (``crisensor_poll_rpc_wait_seconds``): the means of the two tell the
  runtime's share of a poll from the sensor's own work, and the events emitted by source
  (``crisensor_events_total``: through the stream, or announced by a list); the fake's
  ground-truth jitter is the one ``fakecri serve`` prints at the scenario's end. The churn floor's
  poll times (the transport's share of a churning poll: lists and status calls, nothing decoded)
  are reported beside the sensor's.

Sensor and floor alternate ``--repeats`` times per case; the table shows medians and the median of
the per-pair ratios, so a machine whose load changes over the run moves both sides of a ratio.
The machine's load average is recorded before and after. ``--quick`` is the CI-sized version
(1,000 containers, short windows, no churn).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import write_result

DEFAULT_JSON = Path(__file__).parent / "results" / "process.json"
POLL_S = 0.25
RESYNC_S = 10.0
#: the streaming sensor's reconciling lists come every resync_interval less half a poll tick
RESYNC_PERIOD_S = RESYNC_S - POLL_S / 2
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PODS_PER = 100  # containers per pod

NODE = """\
flavor: containerd-1.7
seed: 11
generators:
  - large_node: {{containers: {containers}, pods: {pods}, existing: true}}
{churn}end: {end}
"""
CHURN = """\
  - churn:
      start: {start}ms
      duration: {duration}ms
      rate: {rate}
      lifetime: {{uniform: [500ms, 2s]}}
      removal_delay: {{uniform: [50ms, 250ms]}}
      pods: 20
      prefix: churn
"""


# --- /proc -------------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU of a whole process (every thread, live or ended), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """Each live thread's CPU time, ns (``/proc/PID/task/TID/schedstat``: the scheduler's own count,
    exact where ``/proc/PID/stat`` counts in 10 ms ticks)."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            out[tid] = int(f.read().split()[0])
    return out


@dataclass
class CpuMark:
    """A process's CPU at one instant, both ways: per live thread (ns) and in ticks (ended threads too)."""

    threads: dict[str, int]
    ticks_s: float

    @classmethod
    def take(cls, pid: int) -> CpuMark:
        return cls(thread_cpu_ns(pid), cpu_s(pid))

    def since(self, before: CpuMark) -> float:
        """CPU seconds between two marks: the per-thread count (a thread started meanwhile counts from
        zero); if a thread ended meanwhile its last part is not in that count, and then the tick count
        is taken when it is larger."""
        exact = sum(ns - before.threads.get(tid, 0) for tid, ns in self.threads.items()) / 1e9
        if set(before.threads) - set(self.threads):
            return max(exact, self.ticks_s - before.ticks_s)
        return exact


def status_mb(pid: int, key: str = "VmHWM") -> float:
    """A ``/proc/PID/status`` size (VmHWM: peak RSS; VmRSS: now), MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def machine_load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- processes ---------------------------------------------------------------------------------


def _tool(name: str, module: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Fake:
    """``fakecri serve`` on a generated node, in its own process."""

    containers: int
    workdir: str
    churn_rate: float = 0.0
    churn_start_s: float = 0.0
    churn_s: float = 0.0
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def sock(self) -> str:
        return os.path.join(self.workdir, "cri.sock")

    @property
    def addr(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> Fake:
        churn = ""
        if self.churn_rate:
            churn = CHURN.format(start=int(self.churn_start_s * 1000), duration=int(self.churn_s * 1000),
                                 rate=self.churn_rate)
        end = f"{int((self.churn_start_s + self.churn_s) * 1000) + 3000}ms" if self.churn_rate else "24h"
        path = os.path.join(self.workdir, "node.yaml")
        Path(path).write_text(NODE.format(containers=self.containers, pods=max(1, self.containers // PODS_PER),
                                          churn=churn, end=end))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock)
        self.errlog = open(os.path.join(self.workdir, "fake.log"), "w")  # noqa: SIM115 - closed in stop
        at_end = ["--exit-at-end"] if self.churn_rate else []  # then it prints the churn's jitter
        self.proc = subprocess.Popen([*_tool("fakecri", "fakecri.cli"), "serve", path, "--socket", self.sock,
                                      "--start", "now", *at_end], stdout=subprocess.DEVNULL, stderr=self.errlog,
                                     text=True)
        self._wait_listed()
        return self

    def _wait_listed(self) -> None:
        from sensor.client import CriClient
        from sensor.wire import split_entries

        deadline = time.monotonic() + 120
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                raise RuntimeError(f"fakecri did not start: {self.read_log()}")
            time.sleep(0.05)
        client = CriClient(self.addr, rpc_timeout_s=30)
        client.connect()
        try:
            while time.monotonic() < deadline:
                _, cs, _, _ = client.list_bytes()
                if len(split_entries(cs, "ListContainers")) >= self.containers:
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError("fakecri did not populate the node in time")

    def read_log(self) -> str:
        with contextlib.suppress(OSError):
            return Path(os.path.join(self.workdir, "fake.log")).read_text()
        return ""

    def jitter(self) -> dict[str, float] | None:
        """The ground-truth jitter ``fakecri serve`` printed at the scenario's end (p50/p99/max, ms)."""
        log = self.read_log()
        m = re.search(r"jitter p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms", log)
        if m is None:
            return None
        out = {"p50_ms": float(m[1]), "p99_ms": float(m[2]), "max_ms": float(m[3])}
        late = re.search(r"applied late p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms", log)
        if late is not None:
            out.update(late_p50_ms=float(late[1]), late_p99_ms=float(late[2]), late_max_ms=float(late[3]))
        return out

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.errlog.close()


@dataclass
class Client:
    """One measured client process: the sensor or the floor."""

    kind: str  # "sensor" | "floor"
    mode: str  # "poll" | "stream"
    proc: subprocess.Popen[str]
    spawned_ns: int
    output: str = ""
    metrics_port: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid


def spawn_sensor(fake: Fake, mode: str, workdir: str, *, metrics: bool = False) -> Client:
    cfg = os.path.join(workdir, "sensor.yaml")
    Path(cfg).write_text("crisensor:\n  enabled: true\n"
                         f"  addr: {fake.addr}\n  poll_interval: 250ms\n  processes: off\n"
                         f"  events: {'on' if mode == 'stream' else 'off'}\n  resync_interval: {RESYNC_S:g}s\n")
    out = os.path.join(workdir, f"events-{time.monotonic_ns()}.jsonl")
    port = _free_port() if metrics else 0
    argv = [*_tool("crisensor", "sensor.cli"), "-q", "run", "--config", cfg, "--output", out]
    if metrics:
        argv += ["--metrics-addr", f"127.0.0.1:{port}"]
    t = time.time_ns()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    return Client("sensor", mode, proc, t, out, port)


def spawn_floor(fake: Fake, mode: str, *, resync: bool = False, statuses: int = 0) -> Client:
    t = time.time_ns()
    argv = [sys.executable, "-m", "bench.bench_process", "floor", "--addr", fake.addr, "--mode", mode]
    if resync:
        argv += ["--resync", f"{RESYNC_PERIOD_S:g}"]
    if statuses:
        argv += ["--statuses", str(statuses)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return Client("resync" if resync else "floor", mode, proc, t)


def wait_first_snapshot(c: Client, expected_events: int, timeout_s: float = 120.0) -> dict[str, float]:
    """Wait until the sensor wrote its first poll's events (``expected_events`` lines incl.
    ``sensor.connected``); the first snapshot's wall time and the time from spawn to its end."""
    deadline = time.monotonic() + timeout_s
    lines = 0
    pos = 0
    last = b""
    first = b""
    while time.monotonic() < deadline:
        if c.proc.poll() is not None:
            raise RuntimeError("the sensor exited before its first snapshot")
        with contextlib.suppress(FileNotFoundError), open(c.output, "rb") as f:
            f.seek(pos)
            chunk = f.read()
            cut = chunk.rfind(b"\n") + 1
            if cut:
                block = chunk[:cut]
                pos += cut
                if not first:
                    first = block.split(b"\n", 1)[0]
                lines += block.count(b"\n")
                last = block[: -1].rsplit(b"\n", 1)[-1]
        if lines >= expected_events:
            seen = time.time_ns()  # its last event is written (within this loop's 20 ms)
            used = cpu_s(c.pid)  # the process's CPU so far: start-up and the first snapshot
            connected = json.loads(first)
            done = json.loads(last)
            return {"first_snapshot_s": (seen - connected["time_ns"]) / 1e9,
                    "first_snapshot_diffed_s": (done["observed_ns"] - connected["time_ns"]) / 1e9,
                    "spawn_to_snapshot_s": (seen - c.spawned_ns) / 1e9,
                    "startup_s": (connected["time_ns"] - c.spawned_ns) / 1e9,
                    "spawn_to_snapshot_cpu_s": used}
        time.sleep(0.02)
    raise RuntimeError(f"no first snapshot within {timeout_s:.0f} s ({lines} of {expected_events} events)")


def wait_floor_ready(c: Client) -> None:
    assert c.proc.stdout is not None
    line = c.proc.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError(f"the floor client did not start: {line!r}")


POLL_HIST = "crisensor_poll_duration_seconds"
RPC_HIST = "crisensor_poll_rpc_wait_seconds"  # the share of each poll spent in its CRI calls
EVENTS = "crisensor_events"  # emitted events by type and source (a counter)
CALLS = "crisensor_cri_calls"  # CRI calls issued by method (a counter)


def scrape(port: int) -> dict[str, dict[str, float]]:
    """The sensor's metrics as ``parse_metrics`` reads them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return parse_metrics(r.read().decode())


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """The sensor's poll histograms (``POLL_HIST``, ``RPC_HIST``): cumulative counts by upper bound
    (``+Inf`` too), and the sum under ``"sum"``; and under ``EVENTS`` the events emitted so far by
    source (``poll``, ``stream``, ``resync``...), all types together; under ``CALLS`` the CRI calls
    issued so far by method."""
    out: dict[str, dict[str, float]] = {POLL_HIST: {}, RPC_HIST: {}, EVENTS: {}, CALLS: {}}
    for m in re.finditer(r'^(\w+)_bucket\{le="([^"]+)"\} ([\d.e+]+)$', text, re.M):
        if m[1] in out:
            out[m[1]][m[2]] = float(m[3])
    for m in re.finditer(r'^(\w+)_sum ([\d.e+-]+)$', text, re.M):
        if m[1] in out:
            out[m[1]]["sum"] = float(m[2])
    for m in re.finditer(rf'^{EVENTS}_total\{{([^}}]*)\}} ([\d.e+]+)$', text, re.M):
        source = re.search(r'source="([^"]*)"', m[1])
        if source:
            out[EVENTS][source[1]] = out[EVENTS].get(source[1], 0.0) + float(m[2])
    for m in re.finditer(rf'^{CALLS}_total\{{method="([^"]*)"\}} ([\d.e+]+)$', text, re.M):
        out[CALLS][m[1]] = float(m[2])
    return out


def hist_quantile(before: dict[str, float], after: dict[str, float], q: float) -> float | None:
    """Quantile ``q`` (0-1) of the polls between two scrapes, linear within a bucket (seconds)."""
    bounds = sorted((float(k), after[k] - before.get(k, 0.0)) for k in after if k != "sum")
    total = bounds[-1][1] if bounds else 0
    if not total:
        return None
    want = q * total
    lo, below = 0.0, 0.0
    for ub, n in bounds:
        if n >= want:
            if ub == float("inf"):
                return lo
            return lo + (ub - lo) * ((want - below) / (n - below) if n > below else 1.0)
        lo, below = ub, n
    return lo


# --- the floor client (a subprocess) -------------------------------------------------------------


def floor_main(addr: str, mode: str, resync_s: float = 0.0, statuses: int = 0) -> int:
    """Fetch what the sensor fetches, decode nothing: the transport floor. Runs until SIGTERM.
    ``resync_s`` (stream mode): also fetch both lists every that many seconds, at a fixed rate.
    ``statuses`` (poll mode): also make that many ContainerStatus calls after each poll's lists; then
    each poll's start (``time.monotonic``) and wall time are printed as one JSON line on SIGTERM."""
    import threading

    import grpc

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    options = [("grpc.max_receive_message_length", 16 * 1024 * 1024), ("grpc.enable_retries", 0)]
    channel = grpc.insecure_channel(addr, options=options)
    grpc.channel_ready_future(channel).result(timeout=30)
    empty = b""  # the list requests, serialized: no filter
    lists = [channel.unary_unary(f"/runtime.v1.RuntimeService/{m}") for m in ("ListContainers", "ListPodSandbox")]
    if mode == "stream":
        call = channel.unary_stream("/runtime.v1.RuntimeService/GetContainerEvents")(empty)
        reader = threading.Thread(target=lambda: [None for _ in call], daemon=True)
        reader.start()
        kept = [fn(empty, timeout=30) for fn in lists] if resync_s else []
        print("ready", flush=True)
        start, k = time.monotonic(), 0
        while not stop.wait(start + (k + 1) * resync_s - time.monotonic() if resync_s else None):
            kept = [fn(empty, timeout=30) for fn in lists]
            k += 1
        del kept
        call.cancel()
        return 0
    # The answers are kept until the next poll's arrive, as the sensor keeps its last list: dropping
    # a 7 MB buffer at once makes the allocator hand it back to the kernel and fault it in again.
    kept = [fn(empty, timeout=30) for fn in lists]
    status = channel.unary_unary("/runtime.v1.RuntimeService/ContainerStatus")
    polls: list[tuple[float, float]] = []
    print("ready", flush=True)
    start, k = time.monotonic(), 0
    while not stop.is_set():
        t = time.monotonic()
        kept = [fn(empty, timeout=30) for fn in lists]
        if statuses:
            _status_calls(status, statuses)
            polls.append((t, time.monotonic() - t))
        k += 1
        due = start + k * POLL_S
        now = time.monotonic()
        if now > due:
            k += int((now - due) // POLL_S) + 1
            due = start + k * POLL_S
        stop.wait(due - now)
    del kept
    if statuses:
        print(json.dumps({"polls": polls}), flush=True)
    return 0


def _status_calls(status: Any, n: int) -> None:
    """``n`` ContainerStatus calls for IDs nobody has, ``STATUS_IN_FLIGHT`` at a time as the sensor
    makes them (``sensor.fanout``); every answer is waited for, none decoded."""
    from collections import deque

    from sensor.client import STATUS_IN_FLIGHT

    window: deque[Any] = deque()
    for _ in range(n):
        if len(window) >= STATUS_IN_FLIGHT:
            window.popleft().exception()
        window.append(status.future(b"\x0a\x40" + os.urandom(32).hex().encode(), timeout=30))
    for call in window:
        call.exception()


def floor_poll_figures(proc: subprocess.Popen[str], t0: float, t1: float) -> dict[str, Any]:
    """The churn floor's polls that began within ``[t0, t1]`` (its JSON line, read after SIGTERM),
    in the sensor's terms: through the same histogram buckets (``sensor.metrics.POLL_BUCKETS``)."""
    from sensor.metrics import POLL_BUCKETS

    assert proc.stdout is not None
    line = next((x for x in proc.stdout.read().splitlines() if x.startswith("{")), None)
    if line is None:
        return {}
    walls = [w for t, w in json.loads(line)["polls"] if t0 <= t <= t1]
    if not walls:
        return {}
    hist = {f"{b:g}": float(sum(1 for w in walls if w <= b)) for b in POLL_BUCKETS}
    hist["+Inf"] = float(len(walls))
    return {"polls": len(walls), "polls_le_250ms": hist["0.25"] / len(walls),
            "poll_p50_ms": (hist_quantile({}, hist, 0.5) or 0.0) * 1e3,
            "poll_p99_ms": (hist_quantile({}, hist, 0.99) or 0.0) * 1e3,
            "poll_mean_ms": statistics.fmean(walls) * 1e3}


# --- cases ---------------------------------------------------------------------------------------


def _expected(containers: int) -> int:
    return 1 + max(1, containers // PODS_PER) + 2 * containers  # connected, sandbox.ready, created + running


def measure(fake: Fake, kind: str, mode: str, window_s: float, workdir: str, *, settle_s: float = 1.0,
            metrics: bool = False, until: float | None = None, statuses: int = 0) -> dict[str, Any]:
    """One client's run: start, wait for its first snapshot, measure CPU over the window, stop."""
    c = (spawn_sensor(fake, mode, workdir, metrics=metrics) if kind == "sensor"
         else spawn_floor(fake, mode, resync=kind == "resync", statuses=statuses))
    row: dict[str, Any] = {"client": kind, "mode": mode}
    try:
        if kind == "sensor":
            row.update(wait_first_snapshot(c, _expected(fake.containers)))
        else:
            wait_floor_ready(c)
        time.sleep(settle_s)
        if until is not None:  # churn: the window is the churn's own
            time.sleep(max(0.0, until - time.monotonic()))
        h0 = scrape(c.metrics_port) if metrics else {}
        c0, t0 = CpuMark.take(c.pid), time.monotonic()
        time.sleep(window_s)
        c1, t1 = CpuMark.take(c.pid), time.monotonic()
        h1 = scrape(c.metrics_port) if metrics else {}
        used = c1.since(c0)
        row["cpu_s"] = used
        row["cpu_ticks_s"] = c1.ticks_s - c0.ticks_s
        row["wall_s"] = t1 - t0
        row["cpu_ms_per_s"] = used / (t1 - t0) * 1e3
        row["cpu_ms_per_poll"] = row["cpu_ms_per_s"] * POLL_S
        row["rss_mb"] = status_mb(c.pid, "VmRSS")
        row["peak_rss_mb"] = status_mb(c.pid, "VmHWM")
        if metrics and h1:
            row.update(poll_figures(h0, h1))
            row["events_per_s"] = {src: n / (t1 - t0) for src, n in row.pop("events_by_source").items()}
            statuses_made = h1[CALLS].get("ContainerStatus", 0.0) - h0[CALLS].get("ContainerStatus", 0.0)
            row["status_calls_per_poll"] = statuses_made / row["polls"] if row["polls"] else 0.0
    finally:
        _stop(c.proc)
        if c.output:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(c.output)
    if statuses:  # what the floor printed as it stopped
        row.update(floor_poll_figures(c.proc, t0, t1), status_calls_per_poll=statuses)
    return row


def idle_cases(containers: int, window_s: float, repeats: int, modes: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-process-") as d:
        fake = Fake(containers, d).start()
        try:
            for mode in modes:
                kinds, window = ("sensor", "floor"), window_s
                if mode == "stream":  # whole resync periods: as many resyncs in every window
                    kinds = ("sensor", "floor", "resync")
                    window = max(1, round(window_s / RESYNC_PERIOD_S)) * RESYNC_PERIOD_S
                for r in range(repeats):
                    for kind in kinds:
                        row = measure(fake, kind, mode, window, d)
                        row.update(containers=containers, case=f"{mode} idle", repeat=r, load=machine_load())
                        rows.append(row)
                        _say(row)
        finally:
            fake.stop()
    return rows


def churn_case(containers: int, rate: float, churn_s: float, mode: str, kind: str, statuses: int = 0
               ) -> dict[str, Any]:
    """One client against a node that churns ``rate`` lifecycles/s for ``churn_s`` seconds (the floor:
    with ``statuses`` ContainerStatus calls per poll)."""
    lead_s = 4.0 + containers / 2500  # the client starts and takes its first snapshot before the churn
    with tempfile.TemporaryDirectory(prefix="bench-process-") as d:
        fake = Fake(containers, d, churn_rate=rate, churn_start_s=lead_s, churn_s=churn_s)
        t0 = time.monotonic()
        fake.start()
        try:
            window = churn_s - 1.0
            row = measure(fake, kind, mode, window, d, settle_s=0.0, metrics=kind == "sensor",
                          until=t0 + lead_s + 1.0, statuses=statuses)
            if fake.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    fake.proc.wait(max(0.0, t0 + lead_s + churn_s + 15.0 - time.monotonic()))
        finally:
            fake.stop()
        row.update(containers=containers, case=f"{mode} churn", rate=rate, repeat=0, load=machine_load(),
                   fake_jitter=fake.jitter())
        _say(row)
        return row


def _say(row: dict[str, Any]) -> None:
    extra = ""
    if "first_snapshot_s" in row:
        extra += f" first snapshot {row['first_snapshot_s']:.2f} s"
    if row.get("poll_p99_ms") is not None:
        extra += f" poll p99 {row['poll_p99_ms']:.0f} ms"
    if row.get("poll_mean_ms") is not None and row.get("rpc_mean_ms") is not None:
        extra += (f" (p50 {row['poll_p50_ms']:.0f} ms, {row['polls_le_250ms']:.0%} within 250 ms; mean "
                  f"{row['poll_mean_ms']:.0f} ms of which {row['rpc_mean_ms']:.0f} ms in CRI calls)")
    if row.get("fake_jitter"):
        extra += f" fake jitter p99 {row['fake_jitter']['p99_ms']:.2f} ms"
    print(f"  {row['containers']:>6,} {row['case']:<12} {row['client']:<6} cpu {row['cpu_ms_per_s']:6.2f} ms/s "
          f"({row['cpu_ms_per_poll']:5.2f} ms/poll) peak RSS {row['peak_rss_mb']:6.1f} MB{extra}  "
          f"load {row['load'][0]}", flush=True)


# --- summary -------------------------------------------------------------------------------------


def _med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def poll_figures(h0: dict[str, dict[str, float]], h1: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The polls between two scrapes: how many, the share within 250 ms, p50/p99 of their duration
    and of their wait in CRI calls, and the means of both (the difference of the means is the
    sensor's own work per poll; quantiles do not subtract)."""
    p0, p1, r0, r1 = h0[POLL_HIST], h1[POLL_HIST], h0[RPC_HIST], h1[RPC_HIST]
    polls = p1.get("+Inf", 0) - p0.get("+Inf", 0)
    out: dict[str, Any] = {"polls": polls, "polls_le_250ms": (p1.get("0.25", 0) - p0.get("0.25", 0)) / polls
                           if polls else None}
    for key, b, a in (("poll", p0, p1), ("rpc", r0, r1)):
        for q in (50, 99):
            v = hist_quantile(b, a, q / 100)
            out[f"{key}_p{q}_ms"] = None if v is None else v * 1e3
        n = a.get("+Inf", 0) - b.get("+Inf", 0)
        out[f"{key}_mean_ms"] = (a.get("sum", 0) - b.get("sum", 0)) / n * 1e3 if n else None
    e0, e1 = h0.get(EVENTS, {}), h1.get(EVENTS, {})
    out["events_by_source"] = {src: n - e0.get(src, 0.0) for src, n in sorted(e1.items()) if n > e0.get(src, 0.0)}
    return out


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (size, case): medians of sensor and floor, and the median of per-repeat ratios."""
    out = []
    keys = sorted({(r["containers"], r["case"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for n, case in keys:
        sensor = [r for r in rows if (r["containers"], r["case"], r["client"]) == (n, case, "sensor")]
        floor = [r for r in rows if (r["containers"], r["case"], r["client"]) == (n, case, "floor")]
        pairs = [(s, f) for s in sensor for f in floor if f["repeat"] == s["repeat"]]
        line: dict[str, Any] = {"containers": n, "case": case, "runs": len(sensor)}
        for side, rs in (("sensor", sensor), ("floor", floor)):
            line[f"{side}_cpu_ms_per_s"] = _med([r["cpu_ms_per_s"] for r in rs])
            line[f"{side}_cpu_ms_per_poll"] = _med([r["cpu_ms_per_poll"] for r in rs])
            line[f"{side}_peak_rss_mb"] = _med([r["peak_rss_mb"] for r in rs])
        line["cpu_ratio"] = _med([s["cpu_ms_per_s"] / f["cpu_ms_per_s"] for s, f in pairs if f["cpu_ms_per_s"]])
        line["rss_over_floor_mb"] = _med([s["peak_rss_mb"] - f["peak_rss_mb"] for s, f in pairs])
        line["first_snapshot_s"] = _med([r.get("first_snapshot_s") for r in sensor])
        line["spawn_to_snapshot_s"] = _med([r.get("spawn_to_snapshot_s") for r in sensor])
        line["spawn_to_snapshot_cpu_s"] = _med([r.get("spawn_to_snapshot_cpu_s") for r in sensor])
        line["startup_s"] = _med([r.get("startup_s") for r in sensor])
        for key in ("poll_p50_ms", "poll_p99_ms", "poll_mean_ms", "rpc_p50_ms", "rpc_p99_ms", "rpc_mean_ms"):
            line[key] = _med([r.get(key) for r in sensor])
        line["polls_le_250ms"] = _med([r.get("polls_le_250ms") for r in sensor])
        line["status_calls_per_poll"] = _med([r.get("status_calls_per_poll") for r in sensor])
        for key in ("poll_p50_ms", "poll_p99_ms", "poll_mean_ms", "polls_le_250ms"):
            line[f"floor_{key}"] = _med([r.get(key) for r in floor])
        line["events_per_s"] = next((r["events_per_s"] for r in sensor if r.get("events_per_s")), None)
        jit = [r["fake_jitter"]["p99_ms"] for r in sensor + floor if r.get("fake_jitter")]
        line["fake_jitter_p99_ms"] = max(jit) if jit else None
        resync = [r for r in rows if (r["containers"], r["case"], r["client"]) == (n, case, "resync")]
        if resync:  # idle streaming: the target is the floor + the resync's transport cost + 0.5 ms/s
            line["resync_floor_cpu_ms_per_s"] = _med([r["cpu_ms_per_s"] for r in resync])
            line["resync_ms_per_s"] = _med([x["cpu_ms_per_s"] - f["cpu_ms_per_s"] for x in resync for f in floor
                                            if f["repeat"] == x["repeat"]])
            line["bound_ms_per_s"] = _med([x["cpu_ms_per_s"] + 0.5 for x in resync])
            line["over_bound_ms_per_s"] = _med([s["cpu_ms_per_s"] - x["cpu_ms_per_s"] - 0.5 for s in sensor
                                                for x in resync if x["repeat"] == s["repeat"]])
        line["loads"] = [r["load"][0] for r in sensor + floor + resync]
        out.append(line)
    return out


def _by_source(rates: dict[str, float] | None) -> str:
    """``; events/s by source: poll 1,234, stream 56`` (what came in through the stream, and what
    the lists had to announce), or nothing."""
    if not rates:
        return ""
    return "; events/s by source: " + ", ".join(f"{src} {n:,.0f}" for src, n in sorted(rates.items()))


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(summary: list[dict[str, Any]]) -> str:
    head = (f"{'containers':>10} {'case':<12} {'sensor ms/s':>11} {'floor ms/s':>10} {'ratio':>6} "
            f"{'sensor/poll':>11} {'floor/poll':>10} {'RSS sensor':>10} {'floor':>6} {'+MB':>6} "
            f"{'1st snap s':>10} {'poll p99':>8} {'jitter p99':>10}")
    lines = [head]
    for s in summary:
        lines.append(
            f"{s['containers']:>10,} {s['case']:<12} {_f(s['sensor_cpu_ms_per_s'], '11.2f')} "
            f"{_f(s['floor_cpu_ms_per_s'], '10.2f')} {_f(s['cpu_ratio'], '5.2f')}x "
            f"{_f(s['sensor_cpu_ms_per_poll'], '9.2f')}ms {_f(s['floor_cpu_ms_per_poll'], '8.2f')}ms "
            f"{_f(s['sensor_peak_rss_mb'], '8.1f')}MB {_f(s['floor_peak_rss_mb'], '6.1f')} "
            f"{_f(s['rss_over_floor_mb'], '+6.1f')} {_f(s['first_snapshot_s'], '10.2f')} "
            f"{_f(s['poll_p99_ms'], '6.0f'):>6}ms {_f(s['fake_jitter_p99_ms'], '8.2f'):>8}ms")
    for s in summary:
        if s.get("poll_mean_ms") is not None and s.get("rpc_mean_ms") is not None:
            lines.append(f"{s['containers']:>10,} {s['case']}: polls p50 {_f(s['poll_p50_ms'], '.0f')} ms, p99 "
                         f"{_f(s['poll_p99_ms'], '.0f')} ms, {_f(s['polls_le_250ms'], '.0%')} within 250 ms; mean "
                         f"{s['poll_mean_ms']:.0f} ms, of which {s['rpc_mean_ms']:.0f} ms waiting in CRI calls "
                         f"(p50 {_f(s['rpc_p50_ms'], '.0f')} ms) and {s['poll_mean_ms'] - s['rpc_mean_ms']:.0f} "
                         "ms the sensor's own work" + _by_source(s.get("events_per_s")))
        if s.get("floor_poll_p99_ms") is not None:
            lines.append(f"{s['containers']:>10,} {s['case']}: the floor's polls (the lists and "
                         f"{s['status_calls_per_poll']:.0f} status calls, as the sensor made per poll) p50 "
                         f"{_f(s['floor_poll_p50_ms'], '.0f')} ms, p99 {_f(s['floor_poll_p99_ms'], '.0f')} ms, "
                         f"{_f(s['floor_polls_le_250ms'], '.0%')} within 250 ms; mean "
                         f"{_f(s['floor_poll_mean_ms'], '.0f')} ms")
    for s in summary:
        if s.get("resync_ms_per_s") is not None:
            lines.append(f"{s['containers']:>10,} {s['case']}: the resyncs' transport cost "
                         f"{s['resync_ms_per_s']:.2f} ms/s (floor with resyncs {s['resync_floor_cpu_ms_per_s']:.2f}); "
                         f"bound floor + resyncs + 0.5 = {s['bound_ms_per_s']:.2f} ms/s, sensor "
                         f"{s['sensor_cpu_ms_per_s']:.2f} ({s['over_bound_ms_per_s']:+.2f} against it)")
    return "\n".join(lines)


def run(sizes: list[int], window_s: float, repeats: int, churn_size: int, churn_rate: float, churn_s: float,
        modes: list[str]) -> dict[str, Any]:
    from bench.bench_poll import machine

    load_before = machine_load()
    rows: list[dict[str, Any]] = []
    for n in sizes:
        print(f"{n:,} containers, idle: sensor and floor take turns ({repeats} each, {window_s:g} s windows)",
              flush=True)
        rows += idle_cases(n, window_s, repeats, modes)
    if churn_size and churn_rate:
        print(f"{churn_size:,} containers churning {churn_rate:g} lifecycles/s for {churn_s:g} s", flush=True)
        for mode in modes:
            sensor = churn_case(churn_size, churn_rate, churn_s, mode, "sensor")
            # the polling floor makes the status calls the sensor made (the stream carries exits' codes)
            statuses = round(sensor.get("status_calls_per_poll", 0.0)) if mode == "poll" else 0
            rows += [sensor, churn_case(churn_size, churn_rate, churn_s, mode, "floor", statuses)]
    summary = summarize(rows)
    return {"benchmark": "process", "machine": machine(), "load_before": load_before, "load_after": machine_load(),
            "poll_interval_s": POLL_S, "resync_interval_s": RESYNC_S, "rows": rows, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    from sensor.duration import parse_duration

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["floor"]:
        fp = argparse.ArgumentParser(prog="python -m bench.bench_process floor")
        fp.add_argument("--addr", required=True)
        fp.add_argument("--mode", choices=("poll", "stream"), default="poll")
        fp.add_argument("--resync", type=float, default=0.0, help="stream: also list every S seconds")
        fp.add_argument("--statuses", type=int, default=0, help="poll: ContainerStatus calls per poll")
        a = fp.parse_args(argv[1:])
        return floor_main(a.addr, a.mode, a.resync, a.statuses)
    ap = argparse.ArgumentParser(prog="python -m bench.bench_process", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000", help="node sizes for the idle cases (default 1000,10000)")
    ap.add_argument("--window", default="12s", help="measuring window per run (default 12s)")
    ap.add_argument("--repeats", type=int, default=3, help="sensor/floor pairs per idle case (default 3)")
    ap.add_argument("--modes", default="poll,stream", help="poll, stream or both (default both)")
    ap.add_argument("--churn", type=int, default=10_000, help="node size for the churn cases (0: none)")
    ap.add_argument("--churn-rate", type=float, default=1000, help="lifecycles/s in the churn cases (default 1000)")
    ap.add_argument("--churn-duration", default="12s", help="churn duration per run (default 12s)")
    ap.add_argument("--quick", action="store_true", help="1,000 containers, 4 s windows, one pair, no churn")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    window_s = parse_duration(args.window) / 1e9
    repeats, churn = args.repeats, args.churn
    if args.quick:
        sizes, window_s, repeats, churn = [1000], 4.0, 1, 0
    modes = [m for m in args.modes.split(",") if m]
    result = run(sizes, window_s, repeats, churn, args.churn_rate, parse_duration(args.churn_duration) / 1e9, modes)
    print()
    print(table(result["summary"]))
    print(f"\nload average before {result['load_before']}, after {result['load_after']} "
          f"({result['machine']['nproc']} CPUs)")
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

