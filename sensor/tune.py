"""``crisensor tune``: how long must ``event_reorder_window`` be? Sweep poll_interval x window over a scenario.

Theory of operation
-------------------
Two halves, the second pure:

1. ``run_sensor`` -- for one poll interval ``P`` and one *phase* (the offset of the first poll),
   serve the scenario on a virtual clock (``fakecri.harness.Harness``) and run the real sensor
   against it over the real socket: a ``sensor.analytics.ProgressPoller`` with a ``CriClient``,
   polling at ``phase + k * P``. Each poll's list RPCs take ``rpc_ns`` of virtual time (the
   scenario moves on while the answer travels), so a transition at ``t`` is observed at the first
   poll after ``t`` plus ``rpc_ns``: its lateness is up to ``P + rpc_ns``. A ``SensorRun`` keeps
   what the sensor emitted, when each poll completed, and the truth (with its process events).
2. ``replay`` -- feed one ``SensorRun`` through a ``sensor.analytics.Pipeline`` (the library the
   sensor uses) in time order: lifecycle events at their ``observed_ns``, the truth's process events
   at their ``deliver_ns`` (``TruthProcessSource``), ``on_poll`` at each poll's completion, and a
   tick at every instant something is due, so ``released_ns`` is exact. Replaying costs
   milliseconds, so every run goes through every window, the watermark and the ceiling.

What is measured, per (poll interval, setting), pooled over the phases:

* **accuracy**: the share of process events enriched with the container the truth says they ran
  in at their own time (sandbox, name, attempt, image, labels and pod all equal). Unenriched and
  wrongly enriched events both count against it.
* **delay**: ``released_ns - observed_ns`` of process events -- what the stage adds before a
  response action can fire; median (shown) and p99.
* **visibility** (G8): the share of completed container lifecycles the sensor reported at all,
  beside the physical bound ``mean(min(1, L / P))``.
* **ceiling**: the accuracy when everything is held until the end -- the best any window can do
  (a container the sensor never saw cannot enrich anything).
* **knee**: the smallest window that enriches as many process events correctly as the ceiling:
  the shortest window that is *enough*. Physics puts it at the lateness of the ``created`` events
  that matter -- up to ``P + rpc`` minus how soon after its start a container's first exec comes
  (less when containers live shorter than ``P``: a container is only seen by a poll during its life).

Phases: ``phases`` first polls at ``(k + 1/2) * P / phases``, ``k = 0..phases-1`` -- a
deterministic stand-in for "the sensor started at a random moment", which turns step functions
of a small scenario into curves. Everything runs on virtual clocks: the same arguments give the
same table, byte for byte (except where a scenario's ``hang`` fault waits out a real RPC deadline).

Scenarios without ``processes:`` (e.g. ``churn_storm``) get synthetic ones (``with_execs``): an
exec 1 ms after each container starts (its entrypoint) and one every ``exec_every`` while it
runs, each delivered ``exec_delay`` after it happened. They go through the scenario's own
``processes:`` machinery, so the harness records them in the truth like authored ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensor.duration import DurationError, format_duration, parse_duration
from sensor.enrich import WHY_UNENRICHED, AnalyticsStage, ContainerMeta, EnrichedProcess
from sensor.events import Event
from sensor.output import OutputError
from sensor.reorder import Released, ReorderBuffer, WatermarkReorder

if TYPE_CHECKING:
    from fakecri.scenario import Scenario
    from fakecri.truth import TruthRecord

__all__ = [
    "DEFAULT_EXEC_DELAY",
    "DEFAULT_EXEC_EVERY",
    "DEFAULT_PHASES",
    "DEFAULT_POLL_INTERVALS",
    "DEFAULT_RPC_TIME",
    "DEFAULT_WINDOWS",
    "PLOT_HINT",
    "SEED_ADVICE_WINDOW_NS",
    "SEED_DEFAULT_WINDOW_NS",
    "Cell",
    "Progress",
    "Row",
    "SensorRun",
    "TuneError",
    "TuneResult",
    "add_tune_parser",
    "cmd_tune",
    "figure",
    "format_table",
    "phases_of",
    "plot",
    "progress_line",
    "replay",
    "run_sensor",
    "sweep",
    "with_execs",
]

MS = 1_000_000
DEFAULT_POLL_INTERVALS = "100ms,250ms,500ms"
DEFAULT_WINDOWS = "0,25ms,50ms,100ms,150ms,200ms,250ms,270ms,300ms,400ms,500ms,550ms"
DEFAULT_PHASES = 16
#: Virtual time each poll's list RPCs take (ListContainers + ListPodSandbox on a busy node).
DEFAULT_RPC_TIME = "10ms"
DEFAULT_EXEC_EVERY = "50ms"
DEFAULT_EXEC_DELAY = "1ms"
#: Watermark mode's safety cap in tune (a stuck source never holds an event longer).
WATERMARK_CAP_NS = 1_000_000_000
#: "Hold everything to the end": a window longer than any scenario.
_HOLD_ALL_NS = 10**15
_ENTRYPOINT_AFTER_NS = 1 * MS
_EXEC_ARGV = ("/bin/sh", "-c", "exec")
PLOT_HINT = "--plot needs matplotlib, which is not installed (accepted: pip install 'crisensor[plot]')"


class TuneError(ValueError):
    """Bad flags or input: ``str`` is one line (the CLI prints it and exits 2)."""


# --- 1. synthetic process events --------------------------------------------------------------------


def with_execs(scenario: Scenario, every_ns: int, delay_ns: int) -> Scenario:
    """``scenario`` as is if it has ``processes:``; else with an exec 1 ms after each container
    starts and every ``every_ns`` while it runs, each delivered ``delay_ns`` later."""
    from dataclasses import replace

    from fakecri import scenario as sc

    if scenario.processes:
        return scenario
    if every_ns <= 0:
        raise TuneError(f"--exec-every: must be > 0 (got {format_duration(every_ns)})")
    plan = sc.expand(scenario)
    pod_of: dict[str, str] = {}
    running: dict[str, int] = {}  # container name -> start offset
    spans: list[tuple[str, int, int]] = []

    def end(name: str, at: int) -> None:
        start = running.pop(name, None)
        if start is not None:
            spans.append((name, start, at))

    for st in plan.steps:
        if isinstance(st, sc.CreateContainer):
            pod_of[st.container] = st.pod
            if st.start:
                running[st.container] = st.at_ns
        elif isinstance(st, sc.StartContainer):
            running[st.container] = st.at_ns
        elif isinstance(st, sc.ExitContainer | sc.StopContainer | sc.RemoveContainer):
            end(st.container, st.at_ns)
        elif isinstance(st, sc.StopPod | sc.RemovePod):
            for name in [n for n in running if pod_of.get(n) == st.pod]:
                end(name, st.at_ns)
        elif isinstance(st, sc.RuntimeDown) and not st.keep_state:
            for name in list(running):
                end(name, st.at_ns)
    for name in list(running):
        end(name, plan.end_ns + 1)  # still running at the end: execs up to the end itself
    procs = []
    for name, start, stop in spans:
        t = start + _ENTRYPOINT_AFTER_NS
        while t < stop and t <= plan.end_ns:  # strictly before the exit: it sorts after a tie
            procs.append(sc.Process(at_ns=t, container=name, argv=_EXEC_ARGV, delay_ns=delay_ns))
            t += every_ns
    procs.sort(key=lambda p: p.at_ns)
    return replace(scenario, processes=tuple(procs))


# --- 2. running the sensor ------------------------------------------------------------------------


@dataclass(frozen=True)
class SensorRun:
    """What one sensor run on a virtual clock produced (times are virtual wall-clock ns)."""

    poll_interval_ns: int
    phase_ns: int
    start_ns: int  #: the scenario's offset 0
    end_ns: int  #: the scenario's end (absolute)
    events: tuple[Event, ...]  #: everything the sensor emitted, in emission order
    polls: tuple[tuple[int, int], ...]  #: (completed_ns, started_ns) of each successful poll
    truth: tuple[Any, ...]  #: the harness's truth records (container transitions, processes...)


def run_sensor(scenario: Scenario, poll_interval_ns: int, phase_ns: int, rpc_ns: int, socket: str) -> SensorRun:
    """Serve ``scenario`` on a virtual clock at ``socket`` and poll it with the real sensor at
    ``phase_ns + k * poll_interval_ns`` until two polls past its end (module docstring)."""
    from fakecri.harness import Harness
    from sensor.analytics import ProgressPoller
    from sensor.client import CriClient
    from sensor.output import Emitter

    class RpcTimedClient(CriClient):
        """A ``CriClient`` whose lists take ``rpc_ns`` of the harness's virtual time: the
        ListContainers answer is taken when the poll starts and reaches the sensor ``rpc_ns``
        later (the scenario moves on meanwhile). Every RPC goes through ``_call``, whichever
        list path the poller takes."""

        def _call(self, fn: Callable[..., Any], req: Any, method: str) -> Any:
            answer = super()._call(fn, req, method)
            if method == "ListContainers" and rpc_ns:
                h.advance(rpc_ns)
            return answer

    h = Harness(scenario, socket=socket, record_rpcs=False)
    h.start()
    # old CRI-O withholds its HTTP/2 preface: connect as GRPC_GO_REQUIRE_HANDSHAKE=off users do
    client = RpcTimedClient(h.addr, clock=h.clock.now_ns, handshake="auto" if h.handshake != "none" else "require")
    try:
        events: list[Event] = []
        emitter = Emitter(None)
        emitter.listeners.append(events.append)
        poller = ProgressPoller(client, emitter, poll_interval_ns=poll_interval_ns, now_ns=h.clock.now_ns)
        polls: list[tuple[int, int]] = []
        poller.on_poll.append(lambda started: polls.append((h.clock.now_ns(), started)))
        last = h.end_ns + 2 * poll_interval_ns
        t = phase_ns
        while t <= last:
            h.advance_to(t)
            poller.step()
            t += poll_interval_ns
        return SensorRun(poll_interval_ns, phase_ns, h.start_ns, h.start_ns + h.end_ns, tuple(events),
                         tuple(polls), tuple(h.truth.records()))
    finally:
        client.close()
        time.sleep(0.005)  # let the closed channel's transport go before the server cuts it (no GOAWAY log line)
        h.server.stop(grace=None)  # nothing is in flight: do not wait out the harness's grace period
        h.stop()


# --- 3. the truth, as the measures need it --------------------------------------------------------------


def _meta_key(sandbox_id: Any, name: Any, attempt: Any, image: Any, labels: Any, pod: Any) -> tuple[Any, ...]:
    return (sandbox_id, name, attempt, image, tuple(sorted((labels or {}).items())),
            None if pod is None else (pod.name, pod.namespace, pod.uid))


def _sensor_key(c: ContainerMeta) -> tuple[Any, ...]:
    return _meta_key(c.sandbox_id, c.name, c.attempt, c.image, c.labels, c.pod)


class _TruthIndex:
    """Container incarnations of a truth: which container ran under an ID at a time, and lifetimes."""

    def __init__(self, records: Iterable[TruthRecord], end_ns: int) -> None:
        from fakecri.truth import ContainerTransition

        self.by_id: dict[str, list[list[Any]]] = {}  # id -> [[created, destroyed or None, key], ...]
        for r in records:
            if not isinstance(r, ContainerTransition):
                continue
            incs = self.by_id.setdefault(r.container_id, [])
            if r.transition == "created":
                incs.append([r.time_ns, None, _meta_key(r.sandbox_id, r.name, r.attempt, r.image, r.labels, r.pod)])
            elif r.transition == "destroyed" and incs and incs[-1][1] is None:
                incs[-1][1] = r.time_ns
        self.end_ns = end_ns

    def at(self, container_id: str, t: int) -> tuple[Any, ...] | None:
        for created, destroyed, key in reversed(self.by_id.get(container_id, ())):
            if created <= t:
                return key if destroyed is None or t <= destroyed else None
        return None

    def completed(self) -> list[tuple[str, int, int]]:
        """(id, created, destroyed) of every incarnation that ended within the scenario."""
        return [(cid, c, d) for cid, incs in self.by_id.items() for c, d, _ in incs
                if d is not None and d <= self.end_ns]


def _visibility(run: SensorRun, index: _TruthIndex) -> tuple[int, int, float]:
    """(seen, completed, expected seen by physics) over completed lifecycles (G8)."""
    windows: dict[str, list[tuple[int, int]]] = {}
    for e in run.events:
        if e.container_id is not None and e.type.startswith("container."):
            windows.setdefault(e.container_id, []).append(e.window_ns)
    seen = total = 0
    expected = 0.0
    for cid, created, destroyed in index.completed():
        total += 1
        expected += min(1.0, (destroyed - created) / run.poll_interval_ns)
        seen += any(lo <= destroyed and hi >= created for lo, hi in windows.get(cid, ()))
    return seen, total, expected


# --- 4. replaying a run through the analytics stage ---------------------------------------------------


@dataclass
class Cell:
    """One setting's measures, pooled over phases. ``window_ns``: None for watermark mode."""

    mode: str  # "window" | "watermark" | "ceiling"
    window_ns: int | None
    total: int = 0
    correct: int = 0
    wrong: int = 0  #: enriched, but not with the container the truth says
    unenriched: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WHY_UNENRICHED, 0))
    late: int = 0  #: process events that arrived after their slot
    forced: int = 0  #: process events released before their slot (overflow, cap, flush)
    lifecycle_late: int = 0  #: lifecycle events that arrived after their slot (window < their lateness)
    delays_ns: list[int] = field(default_factory=list, repr=False)

    @property
    def accuracy(self) -> float:
        """Percent of process events enriched correctly (100 when there are none)."""
        return 100.0 * self.correct / self.total if self.total else 100.0

    def delay_ns(self, q: float) -> int:
        """The ``q`` quantile (0..1) of the delay added to process events (nearest rank)."""
        d = sorted(self.delays_ns)
        if not d:
            return 0
        return d[min(len(d) - 1, max(0, math.ceil(q * len(d)) - 1))]

    def add(self, other: Cell) -> None:
        self.total += other.total
        self.correct += other.correct
        self.wrong += other.wrong
        for k, v in other.unenriched.items():
            self.unenriched[k] = self.unenriched.get(k, 0) + v
        self.late += other.late
        self.forced += other.forced
        self.lifecycle_late += other.lifecycle_late
        self.delays_ns += other.delays_ns

    def to_dict(self) -> dict[str, Any]:
        held = self.mode == "ceiling"  # held to the end: its delays mean nothing
        return {"mode": self.mode, "window_ns": self.window_ns, "accuracy_pct": round(self.accuracy, 3),
                "process_events": self.total, "correct": self.correct, "wrong": self.wrong,
                "unenriched_by_why": dict(self.unenriched), "late": self.late, "forced": self.forced,
                "lifecycle_late": self.lifecycle_late,
                "delay_p50_ns": None if held else self.delay_ns(0.5),
                "delay_p99_ns": None if held else self.delay_ns(0.99),
                "delay_max_ns": None if held else max(self.delays_ns, default=0)}


def replay(run: SensorRun, window_ns: int | None, *, index: _TruthIndex | None = None,
           mode: str | None = None) -> Cell:
    """Feed ``run`` through a ``Pipeline`` with a fixed ``window_ns`` (None: watermark mode) and
    measure it (module docstring)."""
    from sensor.analytics import POLL_SOURCE, Pipeline

    index = index or _TruthIndex(run.truth, run.end_ns)
    if window_ns is None:
        reorder: ReorderBuffer | WatermarkReorder = WatermarkReorder([POLL_SOURCE], max_delay_ns=WATERMARK_CAP_NS)
    else:
        reorder = ReorderBuffer(window_ns)
    now = [run.start_ns]
    released: list[Released] = []
    from fakecri.processes import TruthProcessSource  # simulations only: the sensor never needs fakecri
    from fakecri.truth import ProcessEvent as TruthProcess

    source = TruthProcessSource(run.truth)
    pipe = Pipeline(AnalyticsStage(reorder), source=source, now_ns=lambda: now[0], sinks=[released.append])
    batches: dict[int, list[Event]] = {}
    for e in run.events:
        batches.setdefault(e.observed_ns, []).append(e)
    polls = dict(run.polls)
    delivered = {r.deliver_ns for r in run.truth if isinstance(r, TruthProcess)}
    instants = sorted(set(batches) | set(polls) | delivered)
    for t in instants:
        while (due := pipe.next_release_ns()) is not None and due < t:
            pipe.tick(due)
        now[0] = t
        if t in batches:
            pipe.push(batches[t])
        if t in polls:
            pipe.on_poll(polls[t])
        else:
            pipe.tick()
    while (due := pipe.next_release_ns()) is not None:
        pipe.tick(max(due, now[0]))
    pipe.close(now[0])
    mode = mode or ("watermark" if window_ns is None else "window")
    cell = Cell(mode, None if mode == "ceiling" else window_ns)
    for r in released:
        item = r.item
        if type(item) is not EnrichedProcess:
            cell.lifecycle_late += r.late
            continue
        cell.total += 1
        cell.late += r.late
        cell.forced += r.forced
        cell.delays_ns.append(r.released_ns - item.process.observed_ns)
        if item.container is None:
            cell.unenriched[item.why_unenriched] = cell.unenriched.get(item.why_unenriched, 0) + 1
        elif _sensor_key(item.container) == index.at(item.process.container_id, item.process.time_ns):
            cell.correct += 1
        else:
            cell.wrong += 1
    return cell


# --- 5. the sweep -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One poll interval: a cell per window, the watermark, the ceiling and G8 visibility."""

    poll_interval_ns: int
    windows: list[Cell]
    watermark: Cell
    ceiling: Cell
    seen: int = 0
    completed: int = 0
    expected_seen: float = 0.0

    @property
    def visibility(self) -> float:
        return 100.0 * self.seen / self.completed if self.completed else 100.0

    @property
    def visibility_bound(self) -> float:
        return 100.0 * self.expected_seen / self.completed if self.completed else 100.0

    @property
    def knee_ns(self) -> int | None:
        """The smallest window enriching as many events correctly as the ceiling (None: none does)."""
        for c in self.windows:
            if c.correct >= self.ceiling.correct:
                return c.window_ns
        return None


@dataclass
class TuneResult:
    scenario: str
    source: str
    flavor: str
    duration_ns: int
    rpc_ns: int
    phases: int
    windows_ns: list[int]
    rows: list[Row]
    synthetic_execs: dict[str, int] | None  #: {"every_ns", "delay_ns"} when tune added the execs
    containers: int = 0
    process_events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "source": self.source, "flavor": self.flavor,
            "duration_ns": self.duration_ns, "rpc_ns": self.rpc_ns, "phases": self.phases,
            "windows_ns": self.windows_ns, "containers": self.containers,
            "process_events_per_run": self.process_events, "synthetic_execs": self.synthetic_execs,
            "rows": [{
                "poll_interval_ns": row.poll_interval_ns,
                "visibility": {"seen": row.seen, "completed": row.completed,
                               "seen_pct": round(row.visibility, 3), "g8_bound_pct": round(row.visibility_bound, 3)},
                "knee_ns": row.knee_ns,
                "windows": [c.to_dict() for c in row.windows],
                "watermark": row.watermark.to_dict(),
                "ceiling": row.ceiling.to_dict(),
            } for row in self.rows],
        }


def phases_of(poll_interval_ns: int, phases: int) -> list[int]:
    """First-poll offsets: ``(k + 1/2) * P / phases`` for ``k < phases``."""
    return [(2 * k + 1) * poll_interval_ns // (2 * phases) for k in range(phases)]


def sweep(scenario: Scenario, poll_intervals_ns: Sequence[int], windows_ns: Sequence[int], *,
          phases: int = DEFAULT_PHASES, rpc_ns: int = 10 * MS, exec_every_ns: int = 50 * MS,
          exec_delay_ns: int = 1 * MS, workers: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> TuneResult:
    """Run the sensor for every (poll interval, phase) and replay each run through every setting.
    ``progress(done, total)`` is called (from worker threads, serialized) after each run."""
    from fakecri import scenario as sc

    synthetic = None if scenario.processes else {"every_ns": exec_every_ns, "delay_ns": exec_delay_ns}
    scenario = with_execs(scenario, exec_every_ns, exec_delay_ns)
    plan = sc.expand(scenario)
    jobs = [(p, ph) for p in poll_intervals_ns for ph in phases_of(p, phases)]
    workers = workers or min(4, len(jobs), (os.cpu_count() or 1) * 2)
    finished = [0]
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="crisensor-tune-") as tmp:

        def one(job: tuple[int, tuple[int, int]]) -> tuple[int, Cell, Cell, list[Cell], tuple[int, int, float]]:
            n, (p, ph) = job
            run = run_sensor(scenario, p, ph, rpc_ns, os.path.join(tmp, f"rt{n}.sock"))
            if not run.polls:
                raise TuneError(f"{scenario.source}: the sensor never completed a poll of the scenario's runtime "
                                f"(poll_interval {format_duration(p)}, first poll at {format_duration(ph)}) "
                                "(accepted: a scenario the sensor can poll; check it with 'fakecri serve' and "
                                "'crisensor snapshot')")
            index = _TruthIndex(run.truth, run.end_ns)
            cells = [replay(run, w, index=index) for w in windows_ns]
            wm = replay(run, None, index=index)
            ceiling = replay(run, _HOLD_ALL_NS, index=index, mode="ceiling")
            if progress is not None:
                with lock:
                    finished[0] += 1
                    progress(finished[0], len(jobs))
            return p, wm, ceiling, cells, _visibility(run, index)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, enumerate(jobs)))
    rows: dict[int, Row] = {}
    for p, wm, ceiling, cells, (seen, completed, expected) in results:
        row = rows.get(p)
        if row is None:
            row = rows[p] = Row(p, [Cell("window", w) for w in windows_ns], Cell("watermark", None),
                                Cell("ceiling", None))
        for acc, c in zip(row.windows, cells, strict=True):
            acc.add(c)
        row.watermark.add(wm)
        row.ceiling.add(ceiling)
        row.seen += seen
        row.completed += completed
        row.expected_seen += expected
    containers = sum(1 for st in plan.steps if isinstance(st, sc.CreateContainer))
    return TuneResult(scenario=scenario.name, source=scenario.source, flavor=plan.flavor.name,
                      duration_ns=plan.end_ns, rpc_ns=rpc_ns, phases=phases, windows_ns=list(windows_ns),
                      rows=[rows[p] for p in poll_intervals_ns], synthetic_execs=synthetic,
                      containers=containers, process_events=len(scenario.processes))


# --- 6. output -------------------------------------------------------------------------------------


PROGRESS_WIDTH = 24


def progress_line(done: int, total: int, elapsed_s: float) -> str:
    """``[#####.....]  12/48 runs  25%  ETA 1m30s``: the ETA assumes the runs left take as long as
    the runs done (they are the same scenario at other poll intervals and phases)."""
    filled = PROGRESS_WIDTH * done // total if total else PROGRESS_WIDTH
    eta = "ETA --" if done == 0 else f"ETA {format_duration(round(elapsed_s / done * (total - done)) * 10**9)}"
    pct = 100 * done // total if total else 100
    return f"crisensor tune: [{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {done}/{total} runs {pct}% {eta}"


class Progress:
    """Redraws ``progress_line`` in place on a terminal; says nothing when the stream is not one
    (a log file or a pipe gets no carriage returns)."""

    def __init__(self, stream: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.shown = False
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())

    def __call__(self, done: int, total: int) -> None:
        if self.enabled:
            self.stream.write("\r" + progress_line(done, total, self.clock() - self.started) + "\x1b[K")
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")  # the table follows on stdout: leave no half line behind
            self.stream.flush()


def _ms(ns: int) -> str:
    return format_duration(ns) if ns else "0"


def _pct(x: float) -> str:
    return "100" if x >= 99.95 else f"{x:.1f}"


def _cell(c: Cell) -> str:
    return f"{_pct(c.accuracy)}/{round(c.delay_ns(0.5) / MS)}"


def format_table(result: TuneResult) -> str:
    """The table ``crisensor tune`` prints (docs/analytics.md explains every column)."""
    execs = (f"{result.process_events} process events" if result.synthetic_execs is None else
             f"{result.process_events} synthetic execs (1 ms after start, then every "
             f"{format_duration(result.synthetic_execs['every_ns'])}, delivered "
             f"{format_duration(result.synthetic_execs['delay_ns'])} later)")
    lines = [
        f"crisensor tune: {result.scenario} ({result.flavor}, {format_duration(result.duration_ns)}, "
        f"{result.containers} containers, {execs})",
        f"virtual clock; {result.phases} first-poll phases per poll interval; "
        f"list RPC {format_duration(result.rpc_ns)}",
        "cells: enrichment accuracy % / median delay added to process events (ms)",
        "",
    ]
    heads = [_ms(w) for w in result.windows_ns]
    width = max(8, *(len(_cell(c)) for row in result.rows for c in [*row.windows, row.watermark]))
    head = f"{'poll':>6} {'seen':>5} {'G8':>5} |" + "".join(f" {h:>{width}}" for h in heads)
    head += f" | {'watermark':>{max(width, 9)}} | {'ceiling':>7}"
    lines.append(head)
    lines.append("-" * len(head))
    for row in result.rows:
        line = f"{_ms(row.poll_interval_ns):>6} {_pct(row.visibility):>5} {_pct(row.visibility_bound):>5} |"
        line += "".join(f" {_cell(c):>{width}}" for c in row.windows)
        line += f" | {_cell(row.watermark):>{max(width, 9)}} | {_pct(row.ceiling.accuracy):>7}"
        lines.append(line)
    lines.append("")
    lines.append("seen: container lifecycles the sensor reported; G8: the bound min(1, L/P); ceiling: accuracy "
                 "holding everything; knee: the smallest window as accurate as the ceiling")
    for row in result.rows:
        knee = row.knee_ns
        wm = row.watermark
        knee_text = f"knee {_ms(knee)}" if knee is not None else f"knee beyond {_ms(max(result.windows_ns))}"
        lines.append(f"poll_interval {_ms(row.poll_interval_ns)}: {knee_text} (poll_interval + list RPC = "
                     f"{_ms(row.poll_interval_ns + result.rpc_ns)}); watermark {_pct(wm.accuracy)}% at delay "
                     f"p50 {round(wm.delay_ns(0.5) / MS)} ms / p99 {round(wm.delay_ns(0.99) / MS)} ms")
    return "\n".join(lines)


def _require_matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TuneError(PLOT_HINT) from None
    return plt


#: marked on the chart: the seed's default event_reorder_window, and its advice for 250 ms polling
SEED_DEFAULT_WINDOW_NS = 25 * MS
SEED_ADVICE_WINDOW_NS = 270 * MS


def plot(result: TuneResult, path: str | os.PathLike[str]) -> None:
    """Write ``figure(result)`` as a PNG."""
    plt = _require_matplotlib()
    fig = figure(result)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


def figure(result: TuneResult) -> Any:
    """Accuracy vs window, a line per poll interval, its knee labelled; the watermark as a star at
    its median delay with a bar to its p99; dotted: poll_interval + list RPC; dashed grey: the
    seed's 25 ms default and its 270 ms advice. Axes carry their units (ms, %)."""
    plt = _require_matplotlib()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
    xs = [w / MS for w in result.windows_ns]
    for i, row in enumerate(result.rows):
        color = f"C{i}"
        ax.plot(xs, [c.accuracy for c in row.windows], marker="o", ms=3.5, color=color,
                label=f"poll_interval {_ms(row.poll_interval_ns)}")
        wm = row.watermark
        p50, p99 = wm.delay_ns(0.5) / MS, wm.delay_ns(0.99) / MS
        ax.errorbar([p50], [wm.accuracy], xerr=[[0], [p99 - p50]], color=color, capsize=4, linewidth=1)
        ax.plot([p50], [wm.accuracy], marker="*", ms=15, color=color, markeredgecolor="black", linestyle="none")
        ax.axvline((row.poll_interval_ns + result.rpc_ns) / MS, color=color, linestyle=":", linewidth=1)
        knee = row.knee_ns
        if knee is not None:
            acc = next(c.accuracy for c in row.windows if c.window_ns == knee)
            ax.annotate(f"knee {_ms(knee)}", (knee / MS, acc), textcoords="offset points", xytext=(4, -13),
                        fontsize=8, color=color)
    for ns, style, what in ((SEED_DEFAULT_WINDOW_NS, "--", "seed default"),
                            (SEED_ADVICE_WINDOW_NS, "-.", "seed advice at 250 ms polling")):
        ax.axvline(ns / MS, color="dimgrey", linestyle=style, linewidth=1.2,
                   label=f"{what}: event_reorder_window {ns // MS} ms")
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], marker="*", ms=12, color="grey", markeredgecolor="black", linestyle="none",
               label="watermark: at its median delay, bar to p99"),
        Line2D([], [], color="grey", linestyle=":", label="poll_interval + list RPC"),
    ]
    ax.set_xlabel("event_reorder_window (ms): the delay a fixed window adds to every process event")
    ax.set_ylabel("process events enriched correctly (%)")
    ax.set_title(f"crisensor tune {result.scenario}: enrichment accuracy vs reorder window "
                 f"(list RPC {format_duration(result.rpc_ns)})", fontsize=11)
    ax.set_ylim(0, 102)
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


# --- 7. the command ------------------------------------------------------------------------------


def _durations(flag: str, text: str, *, positive: bool) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            ns = parse_duration(part)
        except DurationError as e:
            raise TuneError(f"{flag}: {e}") from None
        if ns < 0 or (positive and ns == 0):
            raise TuneError(f"{flag}: {part!r} is not {'> 0' if positive else '>= 0'} "
                            "(accepted: a comma-separated list of Go durations such as 100ms,250ms)")
        out.append(ns)
    return sorted(set(out))


def _duration(flag: str, text: str) -> int:
    if "," in text:
        raise TuneError(f"{flag}: {text!r} is a list (accepted: one Go duration such as 10ms)")
    return _durations(flag, text, positive=False)[0]


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tune`` on a ``crisensor`` subparsers object."""
    p = subparsers.add_parser(
        "tune", help="sweep poll_interval x event_reorder_window over a scenario (virtual clock)",
        description="Run the sensor against a fakecri scenario on a virtual clock for each poll interval, "
                    "replay its events with the scenario's process events through the analytics stage for each "
                    "reorder window and in watermark mode, and print enrichment accuracy and added delay. "
                    "See docs/analytics.md.")
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file, or a bundled name such as fast_exit")
    p.add_argument("--poll-interval", default=DEFAULT_POLL_INTERVALS,
                   help=f"comma-separated Go durations (default {DEFAULT_POLL_INTERVALS})")
    p.add_argument("--window", default=DEFAULT_WINDOWS,
                   help=f"comma-separated event_reorder_window values (default {DEFAULT_WINDOWS})")
    p.add_argument("--phases", default=str(DEFAULT_PHASES),
                   help=f"first-poll phases averaged per poll interval (default {DEFAULT_PHASES})")
    p.add_argument("--rpc-time", default=DEFAULT_RPC_TIME,
                   help=f"virtual time each poll's list RPCs take (default {DEFAULT_RPC_TIME})")
    p.add_argument("--exec-every", default=DEFAULT_EXEC_EVERY,
                   help="for scenarios without processes: an exec 1 ms after each container starts, then one "
                        f"every this (default {DEFAULT_EXEC_EVERY})")
    p.add_argument("--exec-delay", default=DEFAULT_EXEC_DELAY,
                   help=f"for synthetic execs: delivery delay to the analytics stage (default {DEFAULT_EXEC_DELAY})")
    p.add_argument("--json", metavar="FILE", help="also write the full results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the chart (needs: pip install 'crisensor[plot]')")
    p.set_defaults(func=cmd_tune)
    return p


def cmd_tune(args: argparse.Namespace, *, out: Any = None) -> int:
    """``crisensor tune``: print the table; exit 2 with one line on bad input."""
    out = out or sys.stdout
    try:
        return _tune(args, out)
    except TuneError as e:
        print(f"crisensor: tune: {e}", file=sys.stderr)
        return 2


def _tune(args: argparse.Namespace, out: Any) -> int:
    from fakecri import scenario as sc

    polls = _durations("--poll-interval", args.poll_interval, positive=True)
    windows = _durations("--window", args.window, positive=False)
    rpc = _duration("--rpc-time", args.rpc_time)
    every = _duration("--exec-every", args.exec_every)
    delay = _duration("--exec-delay", args.exec_delay)
    try:
        phases = int(args.phases)
    except ValueError:
        phases = 0
    if not 1 <= phases <= 1000:
        raise TuneError(f"--phases: {args.phases!r} is not an integer from 1 to 1000 (accepted: e.g. 16)")
    if rpc >= min(polls):
        raise TuneError(f"--rpc-time: {format_duration(rpc)} is not shorter than the shortest poll interval "
                        f"({format_duration(min(polls))}) (accepted: e.g. 10ms)")
    if args.plot:
        _require_matplotlib()  # fail before the sweep, not after it
        if not str(args.plot).lower().endswith(".png"):
            raise TuneError(f"--plot: {args.plot!r} is not a .png file name (accepted: e.g. tune.png)")
    try:
        scenario = sc.load(args.scenario)
    except sc.ScenarioError as e:
        raise TuneError(str(e)) from None
    if every <= 0 and not scenario.processes:
        raise TuneError(f"--exec-every: {args.exec_every!r} is not > 0 (accepted: e.g. 50ms)")
    quiet = [logging.getLogger(n) for n in ("crisensor", "fakecri")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        # Every run connects, polls and lives through the scenario's faults: the sensor's log lines
        # are not news here (a run that never polls at all is an error of its own).
        lg.setLevel(logging.CRITICAL)
    progress = Progress(sys.stderr)
    progress(0, len(polls) * phases)
    try:
        result = sweep(scenario, polls, windows, phases=phases, rpc_ns=rpc, exec_every_ns=every,
                       exec_delay_ns=delay, progress=progress)
    finally:
        progress.close()
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
    print(format_table(result), file=out)
    if args.json:
        try:
            f = open(args.json, "w", encoding="utf-8")  # noqa: SIM115 -- closed by the with below
        except OSError as e:
            raise TuneError(f"--json: cannot write {args.json}: {e.strerror}") from None
        try:
            with f:  # opened: a failure now is the disk's (ENOSPC, EIO), a runtime failure (exit 1)
                f.write(json.dumps(result.to_dict(), indent=2) + "\n")
        except OSError as e:
            raise OutputError(str(args.json), e, what="the results") from None
    if args.plot:
        try:
            plot(result, args.plot)
        except OSError as e:
            raise TuneError(f"--plot: cannot write {args.plot}: {e.strerror}") from None
    return 0
