"""The diff engine: consecutive snapshots in, lifecycle events out (the sensor's PLEG relist).

Theory of operation
-------------------
Sans-IO: the caller does every RPC and reads every clock; the engine only sees values. One poll::

    need = engine.begin(snapshot)            # a SUCCESSFUL ListPodSandbox + ListContainers
    details = client.status(need)            # ContainerStatus for those IDs only
    events = engine.finish(details, now_ns)  # events in a valid emission order, seq still 0

and on trouble ``engine.failed(now_ns, error)`` (a list failed or timed out) or
``engine.reset_connection(now_ns)`` (the connection was lost; the runtime may have restarted).

Rule 1 -- only a successful list is evidence. A failed or timed-out list is never read as
"everything is gone"; it only makes the engine blind until the next success, which then reports
the blind interval as a ``sensor.gap`` event and forges what vanished meanwhile with
``why: "vanished during outage"`` (source ``resync`` after a reconnect, else ``poll``).

Rule 2 -- steady state is cheap. ``begin`` compares each listed container's ``(state,
created_at)`` with the tracked record and builds nothing for unchanged ones; ``ContainerStatus`` is
requested only for containers that are new or moved forward to running/exited. Each tracked
container costs one small slotted record (plus the latest ``ContainerSnap``, kept for metadata).
Destroyed objects are forgotten, so memory is bounded by what currently exists.

Rule 3 -- what to emit is ``sensor.lifecycle``'s business. The engine turns each object into one
observation (listed state, ``gone``, ``replaced``) and the lifecycle tables say which events that
gives, forged (``synthetic: true`` + ``why``) or seen.

Rule 4 -- times are honest (G4). Let ``prev``/``cur`` be the previous/this successful snapshot.
A change first observed in ``cur`` happened in ``[prev.sent_ns, cur.received_ns]`` (``lo = 0``
without a previous snapshot). ``place`` narrows and fills that window per event:

* the runtime's own times (``created_at`` from the list, ``started_at``/``finished_at`` from
  status; ``0`` = unset) are used verbatim as ``time_ns``. A reported time in the past of
  ``cur.received_ns`` but before the window's ``lo`` widens the window to include it; a reported
  time in the FUTURE of ``cur.received_ns`` (a runtime clock quirk) stays as ``time_ns``, but the
  window remains the poll-derived one -- so then ``time_ns`` lies outside ``window_ns``. Where
  ``lo`` is 0 (first snapshot) an event's own reported time becomes ``lo``;
* an event's window is also bounded by reported times of its neighbours: nothing happens before
  an earlier lifecycle step's reported time (``floor``) or after a later one's (a forged running
  lies in ``[created_at, finished_at]``). Only past times (``<= cur.received_ns``) bound anything.
  A replaced incarnation ends no later than its successor's ``created_at`` (``cap``);
* without a reported time, ``time_ns`` is the window's midpoint (the estimate with the smallest
  worst-case error, and unbiased for changes uniform in time), raised where the window allows to
  the object's previous event time (``after``) -- for a container also to its sandbox's ``ready``
  time, for a sandbox's end to its containers' latest event time -- so consumers that order by
  ``time_ns`` (the reorder buffer) keep each lifecycle's order and the sandbox nesting. With
  ``lo == 0`` (nothing known about the past) it is ``cur.sent_ns`` (``origin``): the object
  existed by the runtime's answer, which came no earlier, and every later change comes after it;
* ``observed_ns`` is the ``now_ns`` given to ``finish``.

Rule 5 -- status calls may lose races. ``details[id] is None`` (NotFound) or a missing key (the call
failed) fall back to the list's state with estimated times and null exit code; a NotFound never
produces ``destroyed`` -- only a later successful list that lacks the container does. CRI-O's
``exit_code: -1`` means unknown (null). ``finished_at`` seen in a status while the list said
``running`` is ignored: the engine announces only what a list showed; status only adds times.

Emission order of one ``finish``: ``sensor.gap``; ends of vanished/replaced containers; ends of
vanished/replaced sandboxes; new/changed sandboxes; new/changed containers -- so ``sandbox.ready``
precedes its containers' ``created`` and a container's ``destroyed`` precedes its sandbox's. A
sandbox that vanished while a listed container still names it (the two lists are separate RPCs)
keeps its end pending until no listed container names it. Duplicate IDs in one list: the first
wins. ID reuse (a known ID listed with a different ``created_at``, both non-zero and in the past --
a zero or future one is a timestamp quirk and proves nothing -- or in a state earlier
than already announced): the old incarnation's end is forged (``why: "container ID reused"``) and
the new one starts from scratch. The engine assigns no ``seq``; the emitter does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sensor.events import WHY_EXITED_AND_REMOVED, WHY_STOPPED_AND_REMOVED, WHY_VANISHED_DURING_OUTAGE, Event, Pod
from sensor.lifecycle import Step, container_steps, is_regression, sandbox_steps
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot

__all__ = ["DiffEngine", "EngineStateError", "place"]

_RANK = {"created": 0, "running": 1, "exited": 2, "destroyed": 3}
_NEEDS_STATUS = ("running", "exited")
_MISSING = object()


class EngineStateError(RuntimeError):
    """The engine's calls were made out of order (e.g. ``finish`` without ``begin``)."""


def place(
    reported: Sequence[int], lo: int, hi: int, *, floor: int = 0, cap: int = 0, after: int = 0, origin: int = 0
) -> list[tuple[int, int, int]]:
    """``(time_ns, window_lo, window_hi)`` for consecutive lifecycle steps of one object.

    ``reported[i]`` is the runtime's time for step i (0: not reported). ``[lo, hi]`` is the poll
    window. ``floor``: the latest reported time of an already announced earlier step (0: none).
    ``cap``: an upper bound from a later event outside this batch (0: none), e.g. the new
    incarnation's ``created_at`` when an ID was reused. ``after``: the object's previous event time;
    estimates are not placed before it (when the window allows). ``origin``: the estimate for a
    window with no lower bound (0: use its ``hi``). See the module docstring, rule 4.
    """
    lo = min(lo, hi)
    sane = [r if 0 < r <= hi else 0 for r in reported]
    run_lo = max(lo, floor if floor <= hi else 0)
    top = cap if 0 < cap <= hi and cap >= run_lo else hi
    out: list[tuple[int, int, int]] = []
    prev_time = after
    for i, r in enumerate(reported):
        s = sane[i]
        lo_i = run_lo
        if s and (lo_i == 0 or s < lo_i):
            lo_i = s
        hi_i = top
        for later in sane[i + 1 :]:
            if later and lo_i <= later < hi_i:
                hi_i = later
        if s > hi_i:
            hi_i = s
        if r > 0:
            t = r
        else:
            t = (min(origin, hi_i) if origin else hi_i) if lo_i == 0 else (lo_i + hi_i) // 2
            if t < prev_time <= hi_i:
                t = prev_time
        out.append((t, lo_i, hi_i))
        prev_time = t
        run_lo = max(run_lo, s)
    return out


@dataclass(slots=True)
class _Container:
    snap: ContainerSnap  # latest listed incarnation (metadata for later events)
    listed: str  # state in the last successful list
    announced: str  # last lifecycle state announced
    floor_ns: int  # latest sane runtime-reported time of an announced step (0: none)
    last_ns: int  # time_ns of its last event (estimates never go before it)
    gen: int  # poll generation in which it was last listed
    created_ns: int = 0  # its created_at, once reported in the past of a snapshot (identity for ID reuse)


@dataclass(slots=True)
class _Sandbox:
    snap: SandboxSnap
    listed: str
    announced: str
    pod: Pod
    floor_ns: int
    last_ns: int
    gen: int
    created_ns: int = 0
    gone_lo: int | None = None  # set while its end waits for its listed containers
    child_ns: int = 0  # latest time_ns of its containers' events: its end is placed no earlier
    ready_ns: int = 0  # time_ns of its ready event: its containers' estimates are placed no earlier


@dataclass(slots=True)
class _Pending:
    snapshot: Snapshot
    gen: int
    sb_new: dict[str, SandboxSnap] = field(default_factory=dict)
    sb_changed: list[tuple[_Sandbox, SandboxSnap]] = field(default_factory=list)
    sb_replaced: list[tuple[_Sandbox, SandboxSnap]] = field(default_factory=list)
    sb_matched: int = 0
    c_new: dict[str, ContainerSnap] = field(default_factory=dict)
    c_changed: list[tuple[_Container, ContainerSnap]] = field(default_factory=list)
    c_replaced: list[tuple[_Container, ContainerSnap]] = field(default_factory=list)
    c_matched: int = 0


@dataclass(frozen=True, slots=True)
class _Ctx:
    lo: int
    hi: int
    origin: int
    now: int
    source: str
    blind: bool


class DiffEngine:
    """Diff consecutive CRI snapshots into lifecycle events. See the module docstring."""

    def __init__(self) -> None:
        self._containers: dict[str, _Container] = {}
        self._sandboxes: dict[str, _Sandbox] = {}
        self._prev: Snapshot | None = None
        self._pending: _Pending | None = None
        self._gen = 0
        self._failures = 0
        self._last_error: str | None = None
        self._resync = False

    # --- introspection ------------------------------------------------------------------------

    @property
    def last_success(self) -> Snapshot | None:
        """The times (``sent_ns``, ``received_ns``) of the last snapshot committed by ``finish``; its
        lists are not kept (the tracked records hold what is needed)."""
        return self._prev

    @property
    def failures(self) -> int:
        """Failed polls since the last success."""
        return self._failures

    @property
    def blind_since_ns(self) -> int | None:
        """``received_ns`` of the last success while the engine is blind (failures or reconnect)."""
        if self._prev is not None and (self._failures or self._resync):
            return self._prev.received_ns
        return None

    def table_sizes(self) -> tuple[int, int]:
        """``(tracked containers, tracked sandboxes)``: bounded by what currently exists."""
        return len(self._containers), len(self._sandboxes)

    # --- inputs -------------------------------------------------------------------------------

    def begin(self, snapshot: Snapshot) -> list[str]:
        """Take one successful list result; return the container IDs that need ContainerStatus."""
        if self._pending is not None:
            raise EngineStateError("begin() called again before finish(): call finish() (or failed()) first")
        self._gen += 1
        gen = self._gen
        p = _Pending(snapshot, gen)
        self._pending = p
        hi = snapshot.received_ns

        sandboxes = self._sandboxes
        for s in snapshot.sandboxes:
            st = sandboxes.get(s.id)
            if st is None:
                if s.id not in p.sb_new:
                    p.sb_new[s.id] = s
                continue
            if st.gen == gen:
                continue  # duplicate ID in this list: the first wins
            st.gen = gen
            st.gone_lo = None
            p.sb_matched += 1
            if s.state == st.listed and s.created_at == st.snap.created_at:
                continue
            if _reused(st.created_ns, s.created_at, hi) or is_regression("sandbox", st.announced, s.state):
                p.sb_replaced.append((st, s))
            else:
                p.sb_changed.append((st, s))

        need: list[str] = []
        containers = self._containers
        for c in snapshot.containers:
            t = containers.get(c.id)
            if t is None:
                if c.id not in p.c_new:
                    p.c_new[c.id] = c
                    if c.state in _NEEDS_STATUS:
                        need.append(c.id)
                continue
            if t.gen == gen:
                continue
            t.gen = gen
            p.c_matched += 1
            if c.state == t.listed and c.created_at == t.snap.created_at:
                continue  # the steady state: nothing built
            if _reused(t.created_ns, c.created_at, hi) or is_regression("container", t.announced, c.state):
                p.c_replaced.append((t, c))
                if c.state in _NEEDS_STATUS:
                    need.append(c.id)
            else:
                p.c_changed.append((t, c))
                if c.state in _NEEDS_STATUS and _RANK[c.state] > _RANK[t.announced]:
                    need.append(c.id)
        return need

    def failed(self, now_ns: int, error: str) -> None:
        """A list failed or timed out: the engine is blind until the next success. Drops a pending begin()."""
        self._pending = None
        self._failures += 1
        self._last_error = error

    def reset_connection(self, now_ns: int) -> None:
        """The connection was lost or re-established: the next successful snapshot is a resync."""
        self._pending = None
        if self._prev is not None:
            self._resync = True

    def finish(self, details: Mapping[str, ContainerDetail | None], now_ns: int) -> list[Event]:
        """Complete the poll begun by ``begin``: ``details[id]`` per requested ID (``None``:
        NotFound; missing: the call failed). Returns events in emission order, ``seq`` 0."""
        p = self._pending
        if p is None:
            raise EngineStateError("finish() called without begin(): feed a successful snapshot first")
        self._pending = None
        cur, prev = p.snapshot, self._prev
        blind = prev is not None and (self._failures > 0 or self._resync)
        source = "resync" if self._resync else "poll"
        ctx = _Ctx(
            lo=0 if prev is None else min(prev.sent_ns, cur.received_ns),
            hi=cur.received_ns,
            origin=cur.sent_ns,
            now=now_ns,
            source=source,
            blind=blind,
        )
        out: list[Event] = []
        if blind and prev is not None:
            out.append(self._gap(prev, cur, ctx))

        # 1. ends of vanished and replaced containers (before their sandboxes end)
        containers = self._containers
        c_why = WHY_VANISHED_DURING_OUTAGE if blind else WHY_EXITED_AND_REMOVED
        if p.c_matched < len(containers):
            for t in [t for t in containers.values() if t.gen != p.gen]:
                self._end_container(t, container_steps(t.announced, "gone", vanished_why=c_why), ctx, 0, out)
                del containers[t.snap.id]
        fresh = list(p.c_new.values())
        for t, c in p.c_replaced:
            self._end_container(t, container_steps(t.announced, "replaced"), ctx, c.created_at, out)
            del containers[t.snap.id]
            fresh.append(c)

        # 2. ends of vanished and replaced sandboxes
        sandboxes = self._sandboxes
        s_why = WHY_VANISHED_DURING_OUTAGE if blind else WHY_STOPPED_AND_REMOVED
        if p.sb_matched < len(sandboxes):
            gone = [st for st in sandboxes.values() if st.gen != p.gen]
            named = {c.sandbox_id for c in cur.containers}
            for st in gone:
                if st.snap.id in named:
                    if st.gone_lo is None:
                        st.gone_lo = ctx.lo  # its end waits until no listed container names it
                    continue
                lo = ctx.lo if st.gone_lo is None else st.gone_lo
                self._end_sandbox(st, sandbox_steps(st.announced, "gone", vanished_why=s_why), lo, 0, ctx, out)
                del sandboxes[st.snap.id]
        sb_fresh = list(p.sb_new.values())
        for st, s in p.sb_replaced:
            self._end_sandbox(st, sandbox_steps(st.announced, "replaced"), ctx.lo, s.created_at, ctx, out)
            del sandboxes[st.snap.id]
            sb_fresh.append(s)

        # 3. new and changed sandboxes (before their containers' created)
        for s in sb_fresh:
            pod = Pod(s.name, s.namespace, s.uid)
            steps = sandbox_steps(None, s.state)
            first = len(out)
            floor, last = self._sandbox_events(s, pod, steps, _sandbox_reported(steps, s), ctx.lo, 0, 0, 0, ctx, out)
            sandboxes[s.id] = _Sandbox(
                s,
                s.state,
                steps[-1].state,
                pod,
                floor,
                last,
                p.gen,
                _past(s.created_at, ctx.hi),
                ready_ns=out[first].time_ns,
            )
        for st, s in p.sb_changed:
            steps = sandbox_steps(st.announced, s.state)
            reported = _sandbox_reported(steps, s)
            st.floor_ns, st.last_ns = self._sandbox_events(
                s, st.pod, steps, reported, ctx.lo, st.floor_ns, st.last_ns, 0, ctx, out
            )
            st.snap, st.listed = s, s.state
            st.created_ns = st.created_ns or _past(s.created_at, ctx.hi)
            if steps:
                st.announced = steps[-1].state

        # 4. new and changed containers
        for c in fresh:
            steps, reported, detail = _container_plan(None, c, details)
            floor, last = self._container_events(c, steps, reported, detail, ctx, 0, 0, 0, out)
            containers[c.id] = _Container(c, c.state, steps[-1].state, floor, last, p.gen, _past(c.created_at, ctx.hi))
        for t, c in p.c_changed:
            steps, reported, detail = _container_plan(t.announced, c, details)
            t.floor_ns, t.last_ns = self._container_events(
                c, steps, reported, detail, ctx, t.floor_ns, t.last_ns, 0, out
            )
            t.snap, t.listed = c, c.state
            t.created_ns = t.created_ns or _past(c.created_at, ctx.hi)
            if steps:
                t.announced = steps[-1].state

        self._prev = Snapshot((), (), cur.sent_ns, cur.received_ns)  # only its times are needed later
        self._failures = 0
        self._last_error = None
        self._resync = False
        return out

    # --- event building -----------------------------------------------------------------------

    def _gap(self, prev: Snapshot, cur: Snapshot, ctx: _Ctx) -> Event:
        # Like every window, an outer bound: the blindness began after the last answer was taken
        # (>= prev.sent_ns) and ended before this one came back (<= cur.received_ns).
        lo = prev.sent_ns
        return Event(
            type="sensor.gap",
            time_ns=prev.received_ns,
            window_ns=(lo, max(lo, cur.received_ns)),
            observed_ns=ctx.now,
            source=ctx.source,
            info={
                "cause": "reconnect" if self._resync else "failed polls",
                "failed_polls": self._failures,
                "last_error": self._last_error,
            },
        )

    def _end_container(self, t: _Container, steps: Sequence[Step], ctx: _Ctx, cap: int, out: list[Event]) -> None:
        self._container_events(t.snap, steps, [0] * len(steps), None, ctx, t.floor_ns, t.last_ns, cap, out)

    def _end_sandbox(self, st: _Sandbox, steps: Sequence[Step], lo: int, cap: int, ctx: _Ctx, out: list[Event]) -> None:
        after = max(st.last_ns, st.child_ns)  # after its containers' ends, for time-ordered consumers
        self._sandbox_events(st.snap, st.pod, steps, [0] * len(steps), lo, st.floor_ns, after, cap, ctx, out)

    def _container_events(
        self,
        c: ContainerSnap,
        steps: Sequence[Step],
        reported: list[int],
        detail: ContainerDetail | None,
        ctx: _Ctx,
        floor: int,
        after: int,
        cap: int,
        out: list[Event],
    ) -> tuple[int, int]:
        """Emit ``steps`` for one container; return its new ``(floor_ns, last_ns)``."""
        if not steps:
            return floor, after
        sb = self._sandboxes.get(c.sandbox_id)
        pod = None
        if sb is not None:
            pod = sb.pod
            after = max(after, sb.ready_ns)  # no estimate before its sandbox was ready
        times = place(reported, ctx.lo, ctx.hi, floor=floor, cap=cap, after=after, origin=ctx.origin)
        for step, (tm, lo, hi) in zip(steps, times, strict=True):
            exit_code = reason = None
            if step.state == "exited" and step.why is None and detail is not None:
                exit_code = None if detail.exit_code == -1 else detail.exit_code
                reason = detail.reason or None
            out.append(
                Event(
                    type="container." + step.state,
                    time_ns=tm,
                    window_ns=(lo, hi),
                    observed_ns=ctx.now,
                    source=ctx.source,
                    container_id=c.id,
                    sandbox_id=c.sandbox_id,
                    name=c.name,
                    attempt=c.attempt,
                    image=c.image,
                    image_ref=c.image_ref,
                    labels=dict(c.labels),
                    pod=pod,
                    exit_code=exit_code,
                    reason=reason,
                    synthetic=step.why is not None,
                    why=step.why,
                )
            )
        last = times[-1][0]
        if sb is not None and last > sb.child_ns:
            sb.child_ns = last
        return max([floor, *(r for r in reported if 0 < r <= ctx.hi)]), last

    def _sandbox_events(
        self,
        s: SandboxSnap,
        pod: Pod,
        steps: Sequence[Step],
        reported: list[int],
        lo: int,
        floor: int,
        after: int,
        cap: int,
        ctx: _Ctx,
        out: list[Event],
    ) -> tuple[int, int]:
        """Emit ``steps`` for one sandbox; return its new ``(floor_ns, last_ns)``."""
        if not steps:
            return floor, after
        times = place(reported, lo, ctx.hi, floor=floor, cap=cap, after=after, origin=ctx.origin)
        for step, (tm, wlo, whi) in zip(steps, times, strict=True):
            out.append(
                Event(
                    type="sandbox." + step.state,
                    time_ns=tm,
                    window_ns=(wlo, whi),
                    observed_ns=ctx.now,
                    source=ctx.source,
                    sandbox_id=s.id,
                    attempt=s.attempt,
                    labels=dict(s.labels),
                    pod=pod,
                    synthetic=step.why is not None,
                    why=step.why,
                )
            )
        return max([floor, *(r for r in reported if 0 < r <= ctx.hi)]), times[-1][0]


def _reused(old_created_ns: int, new_created_at: int, hi: int) -> bool:
    """A different incarnation: both creation times known and in the past, and different. A zero or
    future ``created_at`` (timestamp quirks) proves nothing: it changes while the object does not."""
    return old_created_ns > 0 and 0 < new_created_at <= hi and old_created_ns != new_created_at


def _past(t: int, hi: int) -> int:
    return t if 0 < t <= hi else 0


def _sandbox_reported(steps: Sequence[Step], s: SandboxSnap) -> list[int]:
    return [s.created_at if step.state == "ready" else 0 for step in steps]


def _container_plan(
    last: str | None, c: ContainerSnap, details: Mapping[str, ContainerDetail | None]
) -> tuple[Sequence[Step], list[int], ContainerDetail | None]:
    """(steps, reported time per step, status detail or None) for a listed container."""
    detail: ContainerDetail | None = None
    if c.state in _NEEDS_STATUS:
        d = details.get(c.id, _MISSING)
        if isinstance(d, ContainerDetail):
            detail = d
    observation = c.state
    if c.state == "exited" and detail is not None and detail.started_at > 0:
        observation = "exited+ran"
    steps = container_steps(last, observation)
    reported: list[int] = []
    for step in steps:
        if step.state == "created":
            reported.append(c.created_at)
        elif detail is None:
            reported.append(0)
        elif step.state == "running":
            reported.append(detail.started_at)
        else:  # exited
            reported.append(detail.finished_at)
    return steps, reported, detail
