"""sensor.diff against a tiny reference runtime: hypothesis searches for a G1-G6 counterexample.

The reference runtime keeps every container and sandbox incarnation with the exact (virtual,
integer) time of each transition. Polls happen at arbitrary times, take arbitrary time, and may
fail; status calls may lose a NotFound race or fail; lists may carry duplicate IDs; the runtime
may restart (keeping or losing its state) and reuse container IDs. After every poll the checker
holds the engine's events against the truth.

The runtime also streams (``GetContainerEvents``): every transition queues an event with the
statuses of that moment; the sensor receives queued events late (after polls that already showed
more), loses some, and loses the queue on a reconnect. Streamed events are checked as they come.

State lag (DESIGN.md section 6): a container's exit becomes visible to List/Status only ``lag`` ns
after it happened, and the ``finished_at`` reported then is earlier than polls that still showed
it running. Windows must contain the true time of every transition (G4), also of a forged exit the
runtime never reported: the engine is told the largest lag (``LAG_BOUND``) and reaches that far back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import jsonschema
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot, StreamEvent

SCHEMA = json.loads((Path(__file__).parents[2] / "sensor" / "schema" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
T0 = 1_700_000_000_000_000_000
C_RANK = {"created": 0, "running": 1, "exited": 2, "destroyed": 3}
S_RANK = {"ready": 0, "notready": 1, "destroyed": 2}
MAX_LIVE = 10
HOUR = 3_600_000_000_000
#: the largest state lag the reference runtime gives an exit; the engine is configured with it
LAG_BOUND = 150
#: what a poll meets: mostly success; sometimes a failed list, a runtime restart (state kept or lost)
CHANGES = ("start", "exit", "remove")
OUTCOMES = ("ok",) * 7 + ("failed", "failed", "restart keeping state", "restart losing state")


@dataclass(eq=False)
class Sandbox:
    sid: str
    created: int
    stopped: int | None = None
    removed: int | None = None

    def state(self) -> str | None:
        if self.removed is not None:
            return None
        return "ready" if self.stopped is None else "notready"

    def truth(self, transition: str) -> int | None:
        return {"ready": self.created, "notready": self.stopped, "destroyed": self.removed}[transition]

    def snap(self, future: int = 0) -> SandboxSnap:
        created = future or self.created
        return SandboxSnap(self.sid, "pod-" + self.sid, "ns", "uid-" + self.sid, 0, self.state(), created)  # type: ignore[arg-type]


@dataclass(eq=False)
class Container:
    cid: str
    sandbox: Sandbox
    created: int
    report_times: bool  # False: the runtime reports 0 for every timestamp (a quirk)
    unknown_exit: bool  # True: the runtime reports exit_code -1 (CRI-O)
    started: int | None = None
    exited: int | None = None
    removed: int | None = None
    exit_code: int = 0
    lag: int = 0  # state lag: List/Status show the exit this long after it happened

    def state(self) -> str | None:
        if self.removed is not None:
            return None
        if self.exited is not None:
            return "exited"
        return "created" if self.started is None else "running"

    def shown(self, at: int) -> str | None:
        """The state List/Status report at ``at`` (the exit shows ``lag`` late)."""
        st = self.state()
        if st == "exited" and at < self.exited + self.lag:  # type: ignore[operator]
            return "running"
        return st

    def visible_exit(self) -> int | None:
        """When the CRI first showed the end: the exit after its lag, or the removal before that."""
        if self.exited is None:
            return self.removed
        shown = self.exited + self.lag
        return shown if self.removed is None else min(shown, self.removed)

    def truth(self, transition: str) -> int | None:
        if transition == "exited" and self.exited is None:
            return self.removed  # removed without ever exiting: its end is its removal
        return {"created": self.created, "running": self.started, "exited": self.exited, "destroyed": self.removed}[
            transition
        ]

    def snap(self, future: int = 0, at: int | None = None) -> ContainerSnap:
        return ContainerSnap(
            self.cid,
            self.sandbox.sid,
            "ctr-" + self.cid,
            0,
            "img",
            "sha256:img",
            (self.state() if at is None else self.shown(at)),  # type: ignore[arg-type]
            (future or self.created) if self.report_times else 0,
        )

    def detail(self, future: int = 0, at: int | None = None) -> ContainerDetail:
        def shown(t: int | None) -> int:
            return 0 if t is None or not self.report_times else (future or t)

        exited = self.exited is not None and (at is None or self.shown(at) != "running")
        started, finished = shown(self.started), shown(self.exited if exited else None)
        code = None if not exited else (-1 if self.unknown_exit else self.exit_code)
        return ContainerDetail(self.cid, started, finished, code, "Error" if exited else None)


@dataclass
class Checker:
    """What the sensor has said so far, per incarnation."""

    announced: dict[object, list[str]] = field(default_factory=dict)
    seen: dict[object, set[str]] = field(default_factory=dict)  # states in successful lists or status answers
    current_c: dict[str, Container] = field(default_factory=dict)  # cid -> incarnation being announced
    current_s: dict[str, Sandbox] = field(default_factory=dict)
    last_time: dict[object, int] = field(default_factory=dict)  # time_ns of each object's last event


class DiffMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.engine = DiffEngine(state_lag_ns=LAG_BOUND)
        self.sandboxes: list[Sandbox] = []
        self.containers: list[Container] = []
        self.next_id = 0
        self.check = Checker()
        self.had_success = False
        self.last_sent = 0
        self.status_at = 0
        self.failed_since = 0
        self.reset_since = False
        self.future_timestamps = False  # the fault is on: set times are reported as now + 1 h
        self.ever_future = False
        self.ever_reused = False
        # the event stream: (event, the incarnation it is about) in the order the runtime sent them
        self.queue: list[tuple[StreamEvent, Container | Sandbox]] = []
        self.lag_ns = 0  # state lag given to containers created from now on

    # --- the event stream ----------------------------------------------------------------------

    def _future(self) -> int:
        return self.now + HOUR if self.future_timestamps else 0

    def _emit_container(self, c: Container, kind: str) -> None:
        sb = c.sandbox
        sb_status = None if sb.removed is not None else sb.snap(self._future())
        status = detail = None
        if kind != "deleted":  # containerd: the container's status as of the event
            status, detail = c.snap(self._future()), c.detail(self._future())
        self.queue.append((StreamEvent(c.cid, kind, self.now, status, detail, sb_status), c))  # type: ignore[arg-type]

    def _emit_sandbox(self, sb: Sandbox, kind: str) -> None:
        status = None if kind == "deleted" else sb.snap(self._future())
        self.queue.append((StreamEvent(sb.sid, kind, self.now, None, None, status), sb))  # type: ignore[arg-type]

    @rule(n=st.integers(1, 4))
    def deliver_stream(self, n: int) -> None:
        """The sensor receives the oldest queued events, one at a time."""
        for _ in range(min(n, len(self.queue))):
            ev, obj = self.queue.pop(0)
            self.now += 1
            events = self.engine.stream(ev, self.now)
            self._check_streamed(events, obj)

    @rule(n=st.integers(1, 3), lag=st.sampled_from([0, 0, 5, 40, LAG_BOUND]))
    def lose_stream_events(self, n: int, lag: int) -> None:
        """The stream drops events (the polls must make up for them); exits start lagging."""
        del self.queue[:n]
        self.lag_ns = lag

    # --- the reference runtime ---------------------------------------------------------------

    def live_sandboxes(self) -> list[Sandbox]:
        return [s for s in self.sandboxes if s.removed is None]

    def live_containers(self) -> list[Container]:
        return [c for c in self.containers if c.removed is None]

    def _remove_container(self, c: Container) -> None:
        if c.state() == "running":
            c.exited = self.now
            c.exit_code = 137
            self._emit_container(c, "stopped")
        c.removed = self.now
        self._emit_container(c, "deleted")

    # Rules are few and always enabled (a disabled rule costs hypothesis a redraw): container rules
    # fall back to creating a container, sandbox and trouble operations are one rule each so that
    # they are picked less often than container churn and polls.

    @initialize()
    def first_sandboxes(self) -> None:
        for _ in range(2):
            self.next_id += 1
            self.now += 1
            self.sandboxes.append(Sandbox(f"s{self.next_id}", self.now))

    @rule(
        dt=st.integers(1, 100),
        k=st.integers(0, 99),
        zero_ts=st.booleans(),
        unknown_exit=st.booleans(),
        reuse=st.booleans(),
    )
    def create_container(self, dt: int, k: int, zero_ts: bool, unknown_exit: bool, reuse: bool) -> None:
        self.now += dt
        if len(self.live_containers()) >= MAX_LIVE:
            self._remove_container(self.live_containers()[k % MAX_LIVE])
            return
        ready = [s for s in self.sandboxes if s.state() == "ready"]
        if not ready:
            self.next_id += 1
            ready = [Sandbox(f"s{self.next_id}", self.now)]
            self.sandboxes.append(ready[0])
            self._emit_sandbox(ready[0], "created")
            self.now += 1
        live_ids = {c.cid for c in self.live_containers()}
        # ID reuse only among incarnations that report created_at: with no timestamps a reused ID
        # in an unchanged state is indistinguishable from the old container, for any sensor.
        reusable = [c.cid for c in self.containers if c.report_times and c.cid not in live_ids]
        if reuse and reusable and not self.ever_future:
            self.ever_reused = True
            cid, zero_ts = reusable[k % len(reusable)], False
        else:
            self.next_id += 1
            cid = f"c{self.next_id}"
        self.containers.append(Container(cid, ready[k % len(ready)], self.now, not zero_ts, unknown_exit,
                                         lag=self.lag_ns))
        self._emit_container(self.containers[-1], "created")

    @rule(
        dt=st.integers(1, 100),
        k=st.integers(0, 99),
        transition=st.sampled_from(["start", "exit", "remove"]),
        code=st.sampled_from([0, 1, 137]),
    )
    def change_container(self, dt: int, k: int, transition: str, code: int) -> None:
        if transition == "start":
            cs = [c for c in self.containers if c.state() == "created" and c.sandbox.state() == "ready"]
        elif transition == "exit":
            cs = [c for c in self.containers if c.state() == "running"]
        else:
            cs = self.live_containers()
        if not cs:
            self.create_container(dt, k, False, False, False)
            return
        self.now += dt
        c = cs[k % len(cs)]
        if transition == "start":
            c.started = self.now
            self._emit_container(c, "started")
        elif transition == "exit":
            c.exited, c.exit_code = self.now, code
            self._emit_container(c, "stopped")
        else:
            self._remove_container(c)

    @rule(dt=st.integers(1, 100), k=st.integers(0, 99), op=st.sampled_from(["create", "stop", "remove"]))
    def change_sandbox(self, dt: int, k: int, op: str) -> None:
        self.now += dt
        live = self.live_sandboxes()
        ready = [s for s in live if s.state() == "ready"]
        if op == "create" or not live or (op == "stop" and not ready):
            self.next_id += 1
            self.sandboxes.append(Sandbox(f"s{self.next_id}", self.now))
            self._emit_sandbox(self.sandboxes[-1], "created")
            return
        sb = (ready if op == "stop" else live)[k % len(ready if op == "stop" else live)]
        for c in self.live_containers():
            if c.sandbox is sb:
                if op == "remove":
                    self._remove_container(c)
                elif c.state() == "running":
                    c.exited, c.exit_code = self.now, 137
                    self._emit_container(c, "stopped")
        if sb.stopped is None:
            sb.stopped = self.now
            self._emit_sandbox(sb, "stopped")
        if op == "remove":
            sb.removed = self.now
            self._emit_sandbox(sb, "deleted")

    @rule(
        dt=st.integers(1, 100),
        k=st.integers(0, 99),
        transition=st.sampled_from(["start", "exit", "remove"]),
        code=st.sampled_from([0, 1, 137]),
    )
    def change_another_container(self, dt: int, k: int, transition: str, code: int) -> None:
        self.change_container(dt, k, transition, code)  # the same rule twice: churn twice as often

    @rule()
    def toggle_future_timestamps(self) -> None:
        # ID reuse under future timestamps is undetectable by any sensor (a reused ID in an unchanged
        # state, with an untrustworthy created_at), so a run has one or the other.
        if not self.ever_reused:
            self.future_timestamps = not self.future_timestamps
            self.ever_future = True

    def _trouble(self, kind: str) -> None:
        if kind == "failed":
            self.engine.failed(self.now, "ListContainers: DEADLINE_EXCEEDED")
            self.failed_since += 1
            return
        if kind == "restart losing state":
            for c in self.live_containers():
                self._remove_container(c)
            for s in self.live_sandboxes():
                s.stopped = self.now if s.stopped is None else s.stopped
                s.removed = self.now
        self.queue.clear()  # the old connection's stream is gone; the resync list covers it
        self.engine.reset_connection(self.now)
        self.reset_since = self.reset_since or self.had_success

    # --- the sensor's poll, and the checks -------------------------------------------------------

    @rule(
        gap=st.integers(1, 300),
        a=st.integers(0, 20),
        b=st.integers(0, 20),
        race=st.integers(-1, 9),
        status_fail=st.integers(0, 3),
        dup=st.booleans(),
        outcome=st.sampled_from(OUTCOMES),
        early=st.integers(-1, 20),
        late=st.integers(-1, 20),
        split=st.integers(-1, 6),
    )
    def poll(
        self, gap: int, a: int, b: int, race: int, status_fail: int, dup: bool, outcome: str, early: int, late: int,
        split: int = -1,
    ) -> None:
        """One poll: sent, the runtime's answer instant, received. The runtime keeps changing while
        the request is in flight: ``early`` changes land before the answer (visible in it), ``late``
        ones after it (visible only to the next poll). ``split`` >= 0: the poller's way, status
        calls only for the first ``split`` IDs, and ``finish_early`` before their answers."""
        self.now += gap
        sent = self.now
        if outcome != "ok":
            self.now += a + b
            self._trouble(outcome)
            return
        if early >= 0:
            self.change_container(a // 2, early, CHANGES[early % 3], 1)
        self.now = answer = max(sent + a, self.now)
        listed_s = {s.sid: s for s in self.live_sandboxes()}
        listed_c = {c.cid: c for c in self.live_containers()}
        future = answer + HOUR if self.future_timestamps else 0  # the quirk: now + 1 h for every set time
        snaps = [c.snap(future, answer) for c in listed_c.values()]
        sandbox_snaps = tuple(s.snap(future) for s in listed_s.values())
        if dup and snaps:  # a runtime quirk: the same ID twice, the later copy wrong
            snaps.append(replace(snaps[0], state="created" if snaps[0].state != "created" else "exited"))
        listed_state: dict[object, str] = {}
        for obj in [*listed_s.values(), *listed_c.values()]:
            listed_state[obj] = obj.shown(answer) if isinstance(obj, Container) else obj.state()  # type: ignore[assignment]
            self.check.seen.setdefault(obj, set()).add(listed_state[obj])
        if late >= 0:
            self.change_container(max(1, b // 2), late, CHANGES[late % 3], 0)
        self.now = received = max(answer + b, self.now)

        held = self.engine.held
        need = self.engine.begin(Snapshot(sandbox_snaps, tuple(snaps), sent, received))
        assert len(set(need)) == len(need)
        for cid in need:
            assert listed_state[listed_c[cid]] in ("running", "exited")
        if race >= 0 and need:  # removed between the list and its status call
            self.now += 1
            self._remove_container(listed_c[need[race % len(need)]])
        details: dict[str, ContainerDetail | None] = {}
        provided: set[str] = set()
        asked = need if split < 0 else need[:split]
        early_events = self.engine.finish_early(set(asked), self.now) if split >= 0 else []
        self.early_now = self.now  # their observed_ns
        self.status_at = self.now  # when the status answers were taken
        for i, cid in enumerate(asked):
            c = listed_c[cid]
            if c.removed is not None:
                details[cid] = None
            elif status_fail and i % 4 < status_fail:
                continue  # the status call failed
            else:
                details[cid] = c.detail(self.now + HOUR if self.future_timestamps else 0, at=self.now)
                provided.add(cid)
                if c.shown(self.now) == "exited":  # a status answer that shows the exit is an observation of it
                    self.check.seen.setdefault(c, set()).add("exited")
        self.now += 1
        late_events = self.engine.finish(details, self.now)
        if split >= 0:  # the rest is the awaited containers' (and held stream events, applied last)
            assert all(e.container_id in asked for e in late_events if e.source != "stream"), late_events
        else:
            self.early_now = self.now
        events = early_events + late_events
        self.cur_received = received
        self._check(events, sent, answer, listed_s, listed_c, listed_state, provided, held)
        self.had_success, self.last_sent = True, sent
        self.failed_since, self.reset_since = 0, False

    def _check(
        self,
        events: list[Event],
        sent: int,
        answer: int,
        listed_s: dict[str, Sandbox],
        listed_c: dict[str, Container],
        listed_state: dict[object, str],
        provided: set[str],
        held: int = 0,
    ) -> None:
        ck = self.check
        streamed = [e for e in events if e.source == "stream"]  # held stream events, applied after the list
        assert held or not streamed
        events = events[: len(events) - len(streamed)]
        blind = self.had_success and (self.failed_since > 0 or self.reset_since)
        if blind:
            gap = events[0]
            assert gap.type == "sensor.gap" and gap.window_ns == (self.last_sent, self.cur_received)
            assert gap.info is not None and gap.info["failed_polls"] == self.failed_since
            events = events[1:]
        source = "resync" if self.reset_since and self.had_success else "poll"
        for seq, e in enumerate(events, 1):
            VALIDATOR.validate(e.with_seq(seq).to_dict())
            assert e.type != "sensor.gap"
            assert e.source == source and e.observed_ns in (self.early_now, self.now)
            lo, hi = e.window_ns
            assert lo <= e.time_ns <= hi, e  # G4 rule 3: always, whatever the runtime reports
            kind, transition = e.type.split(".")
            if kind == "container":
                self._check_container(e, transition, answer, listed_c, provided)
            else:
                self._check_sandbox(e, transition, answer, listed_s)

        # completeness: everything listed is announced up to its listed state ...
        for cid, c in listed_c.items():
            assert ck.current_c.get(cid) is c, f"{cid} listed but not announced"
            if listed_state[c] not in ck.announced[c]:
                # a list lagging behind an exit the stream already announced: its ``running`` is older
                # than that ``exited`` and cannot follow it (G1); with no times the stream's exit could
                # not tell a lost start from a start that failed, so ``running`` stays unannounced
                assert listed_state[c] == "running" and ck.announced[c][-1] == "exited", (c, ck.announced[c])
                assert c.exited is not None and c.exited <= answer < c.exited + c.lag, "not a lagging list"
                assert not c.report_times, "the stream's status proved the start: running is owed"
            if listed_state[c] == "exited" and cid in provided and c.report_times and c.started is not None:
                assert "running" in ck.announced[c]  # what the status proved is not dropped
        for sid, s in listed_s.items():
            assert ck.current_s.get(sid) is s and listed_state[s] in ck.announced[s]
        # ... and everything seen and gone by now is destroyed, and then forgotten
        for obj in ck.seen:
            removed = obj.removed  # type: ignore[attr-defined]
            if removed is not None and removed <= answer:
                assert ck.announced[obj][-1] == "destroyed", obj
        if not streamed:
            assert self.engine.table_sizes() == (len(listed_c), len(listed_s))
        self._check_streamed(streamed, None)

    def _incarnation(self, e: Event, hint: Container | Sandbox | None, kind: type) -> Container | Sandbox | None:
        """The incarnation a streamed ``created``/``ready`` announces: the one the delivered event is
        about (or its sandbox), else (held events) one not yet announced with that ID -- in that
        sandbox, created at the event's time if one was."""
        oid = e.container_id if kind is Container else e.sandbox_id
        if isinstance(hint, Container) and kind is Sandbox:
            hint = hint.sandbox
        if isinstance(hint, kind) and (hint.cid if isinstance(hint, Container) else hint.sid) == oid:
            return hint
        if kind is Container:
            fresh: list = [c for c in self.containers if c.cid == oid and c.sandbox.sid == e.sandbox_id]
        else:
            fresh = [s for s in self.sandboxes if s.sid == oid]
        fresh = [o for o in fresh if o not in self.check.announced and o.created <= self.now]
        exact = [o for o in fresh if o.created == e.time_ns]
        return (exact or fresh or [None])[-1]

    def _check_streamed(self, events: list[Event], hint: Container | Sandbox | None) -> None:
        """Events a stream event gave (or held ones, applied after a list): G1, G4, G5, and never a
        destroyed incarnation again."""
        ck = self.check
        for seq, e in enumerate(events, 1):
            VALIDATOR.validate(e.with_seq(seq).to_dict())
            assert e.source == "stream" and e.observed_ns == self.now, e
            lo, hi = e.window_ns
            assert lo <= e.time_ns <= hi, e  # G4 rule 3
            kind, transition = e.type.split(".")
            obj: Container | Sandbox | None
            if kind == "container":
                cid = e.container_id
                assert cid is not None
                if transition == "created":
                    assert cid not in ck.current_c, ("created before the previous incarnation was destroyed", e)
                    obj = self._incarnation(e, hint, Container)
                    assert isinstance(obj, Container), ("phantom", e)
                    ck.current_c[cid] = obj
                    ck.announced[obj] = []
                    sandbox = ck.current_s.get(obj.sandbox.sid)
                    assert sandbox is obj.sandbox and "ready" in ck.announced[sandbox], "created before its sandbox"
                else:
                    obj = ck.current_c.get(cid)
                    assert obj is not None, f"{e.type} for a container never created"
                history = ck.announced[obj]
                assert not history or C_RANK[transition] > C_RANK[history[-1]], (history, transition)  # G1
                history.append(transition)
                truth = obj.truth(transition)
                assert truth is not None and truth <= self.now, (e, truth)  # G5: nothing before it happened
                assert lo <= truth <= hi, (e, truth)  # G4 rule 1, also under state lag
                if transition == "destroyed":
                    del ck.current_c[cid]
            else:
                sid = e.sandbox_id
                assert sid is not None
                if transition == "ready":
                    assert sid not in ck.current_s, ("ready before the previous incarnation was destroyed", e)
                    obj = self._incarnation(e, hint, Sandbox)
                    assert isinstance(obj, Sandbox), ("phantom", e)
                    ck.current_s[sid] = obj
                    ck.announced[obj] = []
                else:
                    obj = ck.current_s.get(sid)
                    assert obj is not None, f"{e.type} for a sandbox never ready"
                history = ck.announced[obj]
                assert not history or S_RANK[transition] > S_RANK[history[-1]], (history, transition)
                history.append(transition)
                truth = obj.truth(transition)
                assert truth is not None and truth <= self.now and lo <= truth <= hi, (e, truth)
                if transition == "destroyed":
                    assert not any(c.sandbox is obj for c in ck.current_c.values()), "destroyed before its containers"
                    del ck.current_s[sid]
            if not e.synthetic:
                ck.seen.setdefault(obj, set()).add(transition)
            ck.last_time[obj] = max(ck.last_time.get(obj, 0), e.time_ns)

    def _check_container(
        self, e: Event, transition: str, answer: int, listed_c: dict[str, Container], provided: set[str]
    ) -> None:
        ck = self.check
        cid = e.container_id
        assert cid is not None
        if transition == "created":
            c = listed_c.get(cid)
            assert c is not None, "phantom: created for a container not in the list"
            assert cid not in ck.current_c, "created before the previous incarnation was destroyed"
            assert c not in ck.announced, "an incarnation created twice (a destroyed one revived)"
            ck.current_c[cid] = c
            ck.announced[c] = []
            sandbox = ck.current_s.get(c.sandbox.sid)
            assert sandbox is c.sandbox and "ready" in ck.announced[sandbox], "created before its sandbox.ready"
        else:
            c = ck.current_c.get(cid)  # type: ignore[assignment]
            assert c is not None, f"{e.type} for a container never created"
        history = ck.announced[c]
        assert not history or C_RANK[transition] > C_RANK[history[-1]], (history, transition)  # G1
        history.append(transition)
        # time-ordered consumers (the reorder buffer) keep the lifecycle order and sandbox nesting
        if not self.ever_future:
            assert e.time_ns >= ck.last_time.get(c, 0), (e, ck.last_time.get(c))
            assert e.time_ns >= ck.last_time[c.sandbox] or ck.announced[c.sandbox][-1] != "ready", e
        ck.last_time[c] = e.time_ns
        if transition == "destroyed":
            del ck.current_c[cid]
        assert e.sandbox_id == c.sandbox.sid and e.pod is not None and e.pod.uid == "uid-" + c.sandbox.sid
        truth = c.truth(transition)
        assert truth is not None, f"{transition} forged for a container that never did it"
        assert e.window_ns[0] <= truth <= e.window_ns[1], (e, truth)  # G4, also under state lag
        reported = c.report_times and listed_c.get(cid) is c and (transition == "created" or cid in provided)
        reported = reported and not self.ever_future
        if reported and transition != "destroyed":
            assert e.time_ns == truth  # G4: the runtime's own time, verbatim
        if transition == "exited" and not e.synthetic and cid in provided:
            assert e.exit_code == (None if c.unknown_exit else c.exit_code)
        if transition != "destroyed":  # G3
            assert e.synthetic == (transition not in ck.seen.get(c, set())), (e, ck.seen.get(c))
            assert (e.why is None) != e.synthetic
            if e.synthetic:
                assert e.why == self._expected_why(transition, c, listed_c.get(cid)), e
        assert c.state() != "running" or transition != "exited" or c.exited is not None  # G5
        if transition == "exited":
            seen_by = max(answer, self.status_at) if cid in provided else answer  # G5: no exit before it happened
            assert (c.exited is not None and c.exited <= seen_by) or (c.removed is not None and c.removed <= answer)
        if transition == "destroyed":
            assert c.removed is not None and c.removed <= answer  # G5: never while it exists
            replaced = listed_c.get(cid) not in (None, c)
            assert e.synthetic == replaced and (e.why == "container ID reused") == replaced  # G3

    def _expected_why(self, transition: str, c: Container, listed: Container | None) -> str:
        if transition == "created":
            return "created before first seen"
        if transition == "running":
            return "ran between polls"
        if listed is not None and listed is not c:
            return "container ID reused"
        blind = self.had_success and (self.failed_since > 0 or self.reset_since)
        return "vanished during outage" if blind else "exited and removed between polls"

    def _check_sandbox(self, e: Event, transition: str, answer: int, listed_s: dict[str, Sandbox]) -> None:
        ck = self.check
        sid = e.sandbox_id
        assert sid is not None
        if transition == "ready":
            s = listed_s.get(sid)
            assert s is not None and sid not in ck.current_s and s not in ck.announced
            ck.current_s[sid] = s
            ck.announced[s] = []
        else:
            s = ck.current_s.get(sid)  # type: ignore[assignment]
            assert s is not None
        history = ck.announced[s]
        assert not history or S_RANK[transition] > S_RANK[history[-1]]
        history.append(transition)
        if not self.ever_future:
            assert e.time_ns >= ck.last_time.get(s, 0)
        ck.last_time[s] = e.time_ns
        if transition == "destroyed" and not self.ever_future:
            children = [t for c, t in ck.last_time.items() if isinstance(c, Container) and c.sandbox is s]
            assert e.time_ns >= max(children, default=0), "sandbox.destroyed placed before its containers' ends"
        truth = s.truth(transition)
        assert truth is not None and e.window_ns[0] <= truth <= e.window_ns[1], (e, truth)
        if transition == "ready" and not self.ever_future:
            assert e.time_ns == s.created
        if transition != "destroyed":
            assert e.synthetic == (transition not in ck.seen.get(s, set()))
            if e.synthetic and transition == "ready":
                assert e.why == "created before first seen"
            elif e.synthetic:
                blind = self.had_success and (self.failed_since > 0 or self.reset_since)
                assert e.why == ("vanished during outage" if blind else "stopped and removed between polls")
        else:
            assert not e.synthetic and s.removed is not None and s.removed <= answer
            assert not any(c.sandbox is s for c in ck.current_c.values()), "sandbox destroyed before its containers"
            del ck.current_s[sid]

    @invariant()
    def engine_never_tracks_more_than_exists_or_existed(self) -> None:
        tracked_c, tracked_s = self.engine.table_sizes()
        assert tracked_c <= len(self.containers) and tracked_s <= len(self.sandboxes)


DiffMachine.TestCase.settings = settings(
    max_examples=3 * settings.default.max_examples // 4,  # 150 in the ci profile
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestDiffAgainstReferenceRuntime = DiffMachine.TestCase


def test_found_by_make_deep_a_lagging_list_shows_running_after_a_streamed_exit_with_no_times() -> None:
    """Found by a random-seed ``make deep`` run. c4's runtime reports no times; the stream loses its
    start and delivers its exit, which cannot tell a lost start from a failed one, so the engine
    announces created -> exited. The next list, lagging (state lag 5 ns), still shows it running:
    older than the announced exit, so no change (``running`` after ``exited`` would break G1). The
    checker accepts exactly that history and nothing looser (see ``_check``)."""
    state = DiffMachine()
    state.first_sandboxes()
    state.lose_stream_events(lag=5, n=1)
    state.change_sandbox(dt=1, k=0, op="create")
    state.create_container(dt=1, k=0, reuse=False, unknown_exit=False, zero_ts=True)
    state.lose_stream_events(lag=0, n=1)
    state.create_container(dt=1, k=0, reuse=False, unknown_exit=False, zero_ts=False)
    state.create_container(dt=1, k=0, reuse=False, unknown_exit=False, zero_ts=False)
    state.poll(a=0, b=0, dup=False, early=1, gap=1, late=0, outcome="ok", race=0, status_fail=0)
    state.deliver_stream(n=4)
    state.lose_stream_events(lag=0, n=1)
    state.change_another_container(code=0, dt=1, k=0, transition="exit")
    state.deliver_stream(n=1)
    state.poll(a=0, b=0, dup=False, early=0, gap=1, late=0, outcome="ok", race=0, status_fail=0)
