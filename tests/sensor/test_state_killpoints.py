"""G9 under kills at arbitrary points: a hypothesis state machine runs the diff engine with a state
directory against a small reference runtime on a virtual clock, and "kills" the sensor -- abandons
its engine, keeper and files mid-operation -- between any two file system steps of the state
directory (``StateDir._step``: the journal append's fdatasync, every write, fsync, rename and
directory fsync of a compaction, including between writing a new snapshot or journal and renaming
it) or between polls. Then it starts a new sensor on the same directory and goes on.

What a kill can and cannot do here, as in a real SIGKILL: every ``write(2)`` that returned is in
the page cache and survives. One exception is modelled on purpose: a *torn* journal append (a
power cut in the middle of the write), in which case the batch's output is lost with it (the
consumer was on the machine that lost power). The one window where a restarted sensor repeats a
batch -- killed after writing the batch to its output and before the journal write starts
(docs/state.md) -- is not a kill point: the kill moves to the next step.

After every run (and at the end, after a final poll) the concatenated output must show G9: seq
strictly increasing across runs; per container and sandbox each type at most once, in lifecycle
order; every restart after a first list inside one ``sensor.gap`` (``cause: "sensor restart"``);
what the resync forged says ``happened while the sensor was down``; every window contains the true
time (G4); nothing invented (G5); nothing lost (G2: at the end, every container the sensor saw is
announced up to its current state, and every one it saw that is gone has its ``destroyed``). At
the end the output also goes through fakecri's guarantee checker with the restarts (G1-G6, G9).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fakecri.check import CheckParams, load_events_jsonl
from fakecri.check import check as fakecri_check
from fakecri.truth import ContainerTransition, PodRef, RpcServed, SandboxTransition
from sensor.diff import DiffEngine
from sensor.events import WHY_SENSOR_DOWN, Event
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot
from sensor.statedir import Keeper, PersistingEmitter, StateDir

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
RANK = {"created": 0, "running": 1, "exited": 2, "destroyed": 3}
SB = "sb-1"


#: A kill to arm with a poll or a start: after that many file system steps, torn (a power cut) or not.
KILL = st.none() | st.tuples(st.integers(0, 12), st.booleans())


class Killed(Exception):
    """The sensor process died here."""


@dataclass
class Plan:
    """When the running sensor dies: after ``countdown`` more file system steps (None: never)."""

    countdown: int | None = None
    torn: bool = False
    torn_hit: bool = False


class KillableDir(StateDir):
    def __init__(self, path: str, plan: Plan, now_ns: Any) -> None:
        super().__init__(path, compact_min_bytes=256, now_ns=now_ns, sync_interval_ns=5 * MS)
        self.plan = plan
        self._appending = False

    def _step(self, name: str) -> None:
        p = self.plan
        if p.countdown is None:
            return
        if p.countdown > 0:
            p.countdown -= 1
            return
        if name == "write" and self._appending and not p.torn:
            return  # between output and journal: not a kill point (module docstring); die at the next step
        p.countdown = None
        raise Killed(name)

    def _write(self, fd: int, data: bytes) -> None:
        p = self.plan
        if self._appending and p.torn and p.countdown == 0:
            os.write(fd, data[: max(1, len(data) // 2)])  # a torn append: half a line
            p.countdown = None
            p.torn_hit = True
            raise Killed("torn write")
        super()._write(fd, data)

    def append(self, line: bytes) -> None:
        self._appending = True
        try:
            super().append(line)
        finally:
            self._appending = False


@dataclass
class Box:
    cid: str
    created: int
    started: int | None = None
    exited: int | None = None
    removed: int | None = None

    def state(self) -> str | None:
        if self.removed is not None:
            return None
        return "exited" if self.exited is not None else "running" if self.started is not None else "created"

    def truth(self, state: str) -> int | None:
        return {"created": self.created, "running": self.started, "exited": self.exited,
                "destroyed": self.removed}[state]


class Sink:
    line_buffering = True

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.extend(text.splitlines(keepends=True))  # the emitter writes many lines at once
        return len(text)

    def flush(self) -> None:
        pass


@dataclass
class Sensor:
    keeper: Keeper
    emitter: PersistingEmitter
    engine: DiffEngine


@dataclass
class Run:
    started_ns: int
    killed_ns: int | None = None
    polled: bool = False  # a poll completed (its batch output) in this run


class KillPoints(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.t = T0
        self.boxes: dict[str, Box] = {}
        self.n = 0
        self.sink = Sink()
        self.plan = Plan()
        self.sensor: Sensor | None = None
        self.runs: list[Run] = []
        self.instance = 1
        self.dir = ""
        self.store: KillableDir | None = None
        self.ever_polled = False
        self.lists: list[int] = []  # sent_ns of every list the runtime answered (truth's rpc records)

    @initialize()
    def setup(self) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="killpoints-")
        self.start()

    def teardown(self) -> None:
        import shutil

        if self.store is not None:
            self.die()
        shutil.rmtree(self.dir, ignore_errors=True)

    def now(self) -> int:
        return self.t

    # -- the sensor's life ---------------------------------------------------------------------------

    def start(self) -> None:
        engine = DiffEngine()
        store = self.store = KillableDir(self.dir, self.plan, self.now)
        keeper = Keeper(store, engine, identify=lambda info: {"name": "fake", "version": "1",
                                                              "instance": {"boot": self.instance}}, now_ns=self.now)
        self.runs.append(Run(self.t))
        try:
            keeper.open()
            emitter = PersistingEmitter(self.sink, keeper=keeper)
            self.sensor = Sensor(keeper, emitter, engine)
            self.emit([Event(type="sensor.connected", time_ns=self.t, window_ns=(self.t, self.t), observed_ns=self.t,
                             info={"runtime_name": "fake", "runtime_version": "1"})])
        except Killed:
            self.die()
        except BaseException:
            self.die()  # a failure, not a kill: release the directory so that teardown reports it
            raise

    def die(self) -> None:
        """The process is gone: its descriptors close (releasing the lock), nothing else happens."""
        store = self.store
        assert store is not None
        for fd in (store._journal_fd, store._lock_fd):
            if fd is not None:
                os.close(fd)
        store._journal_fd = store._lock_fd = None
        self.sensor = None
        self.runs[-1].killed_ns = self.t

    def emit(self, events: list[Event]) -> None:
        assert self.sensor is not None
        before = len(self.sink.lines)
        try:
            self.sensor.emitter.emit(events)
        except Killed:
            if self.plan.torn_hit:
                del self.sink.lines[before:]  # a power cut: the output went with the torn journal line
                self.plan.torn_hit = False
            self.die()
            raise

    # -- rules -----------------------------------------------------------------------------------------

    @rule(dt=st.integers(1, 300 * MS))
    def create(self, dt: int) -> None:
        self.t += dt
        self.n += 1
        cid = f"c{self.n}"
        self.boxes[cid] = Box(cid, self.t)

    @rule(dt=st.integers(1, 300 * MS), data=st.data())
    def change(self, dt: int, data: st.DataObject) -> None:
        live = [b for b in self.boxes.values() if b.removed is None]
        if not live:
            return
        self.t += dt
        b = data.draw(st.sampled_from(live))
        if b.started is None and b.exited is None:
            if data.draw(st.booleans()):
                b.started = self.t
            else:
                b.exited = self.t  # exited without running (a failed start)
        elif b.exited is None:
            b.exited = self.t
        else:
            b.removed = self.t

    @precondition(lambda self: self.sensor is not None)
    @rule(dt=st.integers(1, 300 * MS), kill=KILL)
    def poll(self, dt: int, kill: tuple[int, bool] | None = None) -> None:
        """One poll; ``kill``: the sensor dies after that many more file system steps (torn or not)."""
        if kill is not None:
            self.plan.countdown, self.plan.torn = kill
        self.t += dt
        assert self.sensor is not None
        engine = self.sensor.engine
        sent = self.t
        snap = Snapshot((SandboxSnap(SB, "pod", "ns", "uid", 0, "ready", T0),),
                        tuple(ContainerSnap(b.cid, SB, "app-" + b.cid, 0, "img", "ref", b.state(), b.created)  # type: ignore[arg-type]
                              for b in self.boxes.values() if b.removed is None), sent, sent + 1)
        self.lists.append(sent)
        need = engine.begin(snap)
        details = {cid: ContainerDetail(cid, self.boxes[cid].started or 0, self.boxes[cid].exited or 0,
                                        0 if self.boxes[cid].exited else None, None) for cid in need}
        events = engine.finish(details, sent + 2)
        self.t += 3
        try:
            self.emit(events)
        except Killed:
            return
        self.runs[-1].polled = True
        self.ever_polled = True

    @precondition(lambda self: self.sensor is not None)
    @rule(steps=st.integers(0, 12), torn=st.booleans())
    def arm_kill(self, steps: int, torn: bool) -> None:
        """The sensor dies after ``steps`` more file system steps (in a later poll, or at start)."""
        self.plan.countdown = steps
        self.plan.torn = torn

    @precondition(lambda self: self.sensor is not None)
    @rule(dt=st.integers(0, 50 * MS))
    def kill_now(self, dt: int) -> None:
        self.t += dt
        assert self.sensor is not None
        self.plan.countdown = None
        self.die()

    @precondition(lambda self: self.sensor is None)
    @rule(dt=st.integers(1, 2_000 * MS), runtime_restarted=st.booleans(), kill=KILL)
    def restart(self, dt: int, runtime_restarted: bool, kill: tuple[int, bool] | None) -> None:
        """A new sensor on the same directory (it may die in its own start: the start compacts)."""
        self.t += dt
        if runtime_restarted:
            self.instance += 1
        if kill is not None:
            self.plan.countdown, self.plan.torn = kill
        self.start()

    # -- the judgement ---------------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.sink.lines]

    @invariant()
    def g9_holds(self) -> None:
        check(self.events(), self.boxes, self.runs, final=False)

    def final(self) -> None:
        """Bring a sensor up, let it poll twice without kills, and judge completeness too."""
        self.plan.countdown = None
        if self.sensor is None:
            self.t += 10 * MS
            self.start()
        self.poll(MS)
        self.poll(MS)
        check(self.events(), self.boxes, self.runs, final=True)
        self.judge_with_the_checker()

    def judge_with_the_checker(self) -> None:
        """The same output through fakecri's guarantee checker, G9 included, against the truth this
        machine kept (every transition, every list answered). Latency and blindness (G7, G8) are
        not what is tested: the poll interval given makes their bounds loose."""
        truth: list[Any] = [SandboxTransition(SB, "ready", T0, pod=PodRef("pod", "ns", "uid"))]
        for b in self.boxes.values():
            for tr in ("created", "running", "exited", "destroyed"):
                t = b.truth(tr)
                if t is not None:
                    extra: dict[str, Any] = {"name": "app-" + b.cid, "image": "img", "pod": PodRef("pod", "ns", "uid")}
                    truth.append(ContainerTransition(b.cid, tr, t, SB, **(extra if tr == "created" else {})))
        for sent in self.lists:
            truth += [RpcServed("ListPodSandbox", "v1", sent, sent + 1, "OK"),
                      RpcServed("ListContainers", "v1", sent, sent + 1, "OK")]
        truth.sort(key=lambda r: r.time_ns)
        restarts = tuple((run.killed_ns, nxt.started_ns) for run, nxt in zip(self.runs, self.runs[1:], strict=False)
                         if run.killed_ns is not None)
        params = CheckParams(poll_interval_ns=60_000 * MS, end_ns=self.t, sensor_restarts=restarts)
        events, failures = load_events_jsonl(self.sink.lines)
        report = fakecri_check(truth, events, params, failures)
        assert report.ok, report.render()


def check(events: list[dict[str, Any]], boxes: dict[str, Box], runs: list[Run], *, final: bool) -> None:
    seqs = [e["seq"] for e in events]
    assert all(a < b for a, b in itertools.pairwise(seqs)), f"seq not strictly increasing: {seqs}"
    per: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["type"].startswith("container."):
            per.setdefault(e["container_id"], []).append(e)
    for cid, evs in per.items():
        assert cid in boxes, f"{cid}: events for a container that never existed (G5)"
        b = boxes[cid]
        states = [e["type"].split(".")[1] for e in evs]
        assert len(states) == len(set(states)), f"{cid}: announced twice: {states}"
        assert [RANK[s] for s in states] == sorted(RANK[s] for s in states), f"{cid}: out of order: {states}"
        for e in evs:
            state = e["type"].split(".")[1]
            t = b.truth(state)
            if t is None:
                raise AssertionError(f"{cid}: {state} announced but it never happened (G5)")
            lo, hi = e["window_ns"]
            assert lo <= t <= hi, f"{cid}: {state} at {t} outside its window {e['window_ns']} (G4)"
            assert e["observed_ns"] >= t, f"{cid}: {state} announced before it happened (G5)"
    gaps = [e for e in events if e["type"] == "sensor.gap"]
    assert all(g["info"]["cause"] != "state lost" for g in gaps), "a kill corrupted the state"
    polled_before = False
    for run in runs:
        if run.killed_ns is not None and polled_before:
            later = [r for r in runs[runs.index(run) + 1:] if r.polled]
            if later:
                covering = [g for g in gaps if g["window_ns"][0] <= run.killed_ns <= g["window_ns"][1]
                            and g["info"]["cause"] == "sensor restart"]
                assert len(covering) == 1, f"the kill at {run.killed_ns} is not covered by one gap: {gaps}"
        polled_before = polled_before or run.polled
    for i, e in enumerate(events):
        if e["type"] == "sensor.gap" and e["info"]["cause"] == "sensor restart":
            for f in events[i + 1:]:
                if f["type"] in ("sensor.connected", "sensor.gap") or f["observed_ns"] != e["observed_ns"]:
                    break
                if f["synthetic"] and "reused" not in (f["why"] or ""):
                    assert f["why"] == WHY_SENSOR_DOWN, f
    if not final:
        return
    for cid, b in boxes.items():
        evs = per.get(cid, [])
        states = {e["type"].split(".")[1] for e in evs}
        state = b.state()
        if state is not None:
            assert state in states, f"{cid} is {state} but the sensor never said so: {sorted(states)} (G2)"
        elif evs:
            assert "destroyed" in states, f"{cid} is gone but has no destroyed: {sorted(states)} (G2)"


# The profile's counts (tests/conftest.py): 200 runs of up to 30 steps in ci, 5,000 of up to 60 in deep.
KillPoints.TestCase.settings = settings(settings.default, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class FinalCheck(KillPoints):
    """The same machine, with completeness judged once it is over (hypothesis' ``teardown`` runs
    after every example: bring the sensor up, poll, check, clean up)."""

    def teardown(self) -> None:
        try:
            if self.store is not None:  # setup ran
                self.final()
        finally:
            super().teardown()


TestKillPoints = FinalCheck.TestCase

