"""The diff engine: consecutive snapshots in, lifecycle events out (the sensor's PLEG relist).

Theory of operation
-------------------
Sans-IO: the caller does every RPC and reads every clock; the engine only sees values. One poll::

    need = engine.begin(snapshot)            # a SUCCESSFUL ListPodSandbox + ListContainers
    details = client.status(need)            # ContainerStatus for those IDs only
    events = engine.finish(details, now_ns)  # events in a valid emission order, seq still 0

or, to write what needs no status answer while the calls are in flight (sensor.poller)::

    need = engine.begin(snapshot)
    early = engine.finish_early(asked, now_ns)  # everything but the containers in ``asked``
    details = client.status(asked)              # meanwhile, on another thread
    events = engine.finish(details, now_ns)     # the containers in ``asked``; commits the poll

and on trouble ``engine.failed(now_ns, error)`` (a list failed or timed out) or
``engine.reset_connection(now_ns)`` (the connection was lost; the runtime may have restarted).

Rule 1 -- only a successful list is evidence. A failed or timed-out list is never read as
"everything is gone"; it only makes the engine blind until the next success, which then reports
the blind interval as a ``sensor.gap`` event and forges what vanished meanwhile with
``why: "vanished during outage"`` (source ``resync`` after a reconnect, else ``poll``).

Rule 2 -- steady state is cheap. ``begin`` compares each listed container's ``(state,
created_at)`` with the tracked record and builds nothing for unchanged ones; ``ContainerStatus`` is
requested only for containers that are new or moved forward to running/exited -- on the very first
snapshot only for exited ones: a container already running when the sensor starts started at an
unknown time in its past, and asking 10,000 of them one ``started_at`` each took seconds (its
``running`` is placed in ``[created_at, list]`` like any unreported time). Exited containers come
first in the list ``begin`` returns: a caller that cannot afford every status call (the poller's
status budget) keeps their exit codes and loses only start times, which are then estimated. Each tracked
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
  ``cur.received_ns`` but before the window's ``lo`` widens the window to include it, so that
  ``time_ns`` always lies in ``window_ns`` (G4) whatever order the runtime reports times in (state
  lag: a ``finished_at`` before the last poll that showed running). A reported time in the FUTURE
  of ``cur.received_ns`` (a runtime clock quirk) is no time: the step is estimated like an
  unreported one, inside the poll-derived window, which stays honest. Where ``lo`` is 0 (first
  snapshot) an event's own reported time becomes ``lo``;
* state lag (DESIGN.md section 6): List/Status show a container running (or created) for a while
  after its process exited (or started). A ``running``/``exited`` step with no reported time may
  therefore predate the last list that showed the earlier state: its ``lo`` is lowered by the
  engine's ``state_lag_ns`` (configured, measured per runtime: docs/realruntime.md), never below
  the container's ``created_at``. Not below its reported ``started_at`` either? No: that is stamped
  once the start returned, and an instant exit's ``finished_at`` can precede it (seen on containerd);
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
``exit_code: -1`` means unknown (null). A status answer is newer than the list: one that shows
the exit (a ``finished_at``, or an exit code, which ``sensor.client`` sets only for an exited
status -- so also with zero timestamps) for a container the list said was ``running`` is
observed as exited (with its exit code and times), not ignored.

Rule 6 -- the event stream feeds the same tables (``engine.stream(event, now_ns)``). Where the
runtime serves ``GetContainerEvents``, each ``StreamEvent`` is one more observation of one object:
``created``/``started``/``stopped``/``deleted`` are observed as ``created``/``running``/``exited``
(``exited+ran`` when its status reports ``started_at``)/``gone`` -- for a sandbox (an event whose
ID is a sandbox's) ``ready``/``ready``/``notready``/``gone`` -- or as the later state its status
already shows. Every event it produces has ``source: "stream"``. What keeps the two sources
exactly-once and in lifecycle order:

* the caller holds one lock around the engine, across a whole poll (list, status, ``finish``)
  *including its RPCs*, and emits under it: every stream event applied before a poll happened
  before its list, so a list is never older than what the stream announced -- but for state lag:
  a list still showing ``running`` after a streamed exit is no change, and if that exit carried no
  ``started_at`` (a lost start looks like a failed one) ``running`` stays unannounced, since it
  cannot follow ``exited`` (G1). An event applied
  after a poll may be older than its list: an observation earlier than the announced state gives
  no steps, and a destroyed incarnation -- vanished, or replaced under its ID, in a list or in the
  stream -- leaves a *tombstone* (its ID and ``created_at``; the latest ``TOMB_DEPTH`` per ID,
  ``TOMBSTONES`` IDs per kind) so that a late event about it is ignored and never brings it back
  (G5), also once its ID names a newer incarnation. An event about an untracked ID with a
  tombstone starts a new incarnation only if its status proves one: a past ``created_at`` unlike
  every buried one. A list that shows a tombstoned ID again is believed;
* the list is the base, the stream the increments: while there is no base for the current
  connection (before the first successful list; after ``reset_connection`` until the resync
  list) stream events are *held*, and ``finish`` applies them after the list's own events;
* the stream announces only what it can attribute: an unknown container needs its status and its
  pod sandbox's (containerd sends a nil pod sandbox status once the sandbox is gone), an unknown
  sandbox its status; a ``deleted`` of an unknown object announces nothing; a sandbox status that
  shows another incarnation of a tracked sandbox (another ``created_at``, or other pod metadata),
  in a sandbox's event or a container's, announces nothing; a sandbox's
  ``deleted`` while tracked containers still name it waits for a list. Those cases set
  ``resync_wanted``: the caller should list soon, and that list reports what the stream could not
  (``finish(..., source="resync")``);
* times: ``created_at``/``started_at``/``finished_at`` from the statuses are used verbatim; a seen
  step with no such time (``destroyed``, ``notready``) takes the response's ``created_at``, the
  event time. The window is ``[lo, now_ns]``, ``lo`` being the last time the sensor knew the
  previous state: the latest of the object's reported times, its last streamed event's
  ``window_ns[0]`` (both kept as ``floor_ns``) and the ``sent_ns`` of the last list that showed it.
  An object first seen in the stream starts from its own reported times, as in rule 4;
* a record the stream created, changed or removed is not as the last committed list showed it, so
  the engine is not ``settled`` until the next ``finish``, and names such records
  (``stream_touched``): the list fast path shows the engine their entries again, changed or not
  (``sensor.fastpath``, rule 4).

Emission order of one ``finish``: ``sensor.gap``; ends of vanished/replaced containers; ends of
vanished/replaced sandboxes; new/changed sandboxes; new/changed containers -- so ``sandbox.ready``
precedes its containers' ``created`` and a container's ``destroyed`` precedes its sandbox's. A
sandbox that vanished while a listed container still names it (the two lists are separate RPCs)
keeps its end pending until no listed container names it. Duplicate IDs in one list: the first
wins. ID reuse (a known ID listed with a different ``created_at``, both non-zero and in the past --
a zero or future one is a timestamp quirk and proves nothing -- or, unless its known ``created_at``
is unchanged, in a state earlier than the last list showed; an earlier state than the *stream*
announced is state lag, DESIGN.md section 6, and gives no steps): the old
incarnation's end is forged (``why: "container ID reused"``) and
the new one starts from scratch. Sandboxes alike: a pod sandbox never changes its pod's name,
namespace, UID or attempt, so other metadata under a known ID is a reused ID too (missing metadata
proves nothing). Held stream events (rule 6) come last. The engine assigns no
``seq``; the emitter does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sensor.events import (
    WHY_EXITED_AND_REMOVED,
    WHY_STOPPED_AND_REMOVED,
    WHY_VANISHED_DURING_OUTAGE,
    Event,
    Pod,
    new_event,
)
from sensor.lifecycle import Step, container_steps, is_regression, sandbox_steps
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot, StreamEvent

__all__ = ["HELD_MAX", "TOMBSTONES", "TOMB_DEPTH", "DiffEngine", "EngineStateError", "place"]

_RANK = {"created": 0, "running": 1, "exited": 2, "destroyed": 3}
_NEEDS_STATUS = ("running", "exited")
_MISSING = object()
#: What a stream event type is observed as (rule 6), for containers and for sandboxes.
_STREAM_OBSERVATION = {"created": "created", "started": "running", "stopped": "exited", "deleted": "gone"}
_SANDBOX_STREAM_OBSERVATION = {"created": "ready", "started": "ready", "stopped": "notready", "deleted": "gone"}
#: Destroyed IDs remembered per kind, so that late stream events about them are ignored (rule 6),
#: with the ``created_at`` of their last ``TOMB_DEPTH`` incarnations.
TOMBSTONES = 16_384
TOMB_DEPTH = 4
#: Stream events held while there is no base list; past this many the base list covers them.
HELD_MAX = 65_536
#: IDs per kind the stream may touch between two lists and the next list still be a delta
#: (``stream_touched``); past it the delta would decode most of a 10,000-container list anyway.
TOUCHED_MAX = 16_384


class EngineStateError(RuntimeError):
    """The engine's calls were made out of order (e.g. ``finish`` without ``begin``)."""


def place(
    reported: Sequence[int], lo: int, hi: int, *, floor: int = 0, cap: int = 0, after: int = 0, origin: int = 0
) -> list[tuple[int, int, int]]:
    """``(time_ns, window_lo, window_hi)`` for consecutive lifecycle steps of one object.

    ``reported[i]`` is the runtime's time for step i (0: not reported; one after ``hi`` is a clock
    quirk and counts as not reported). ``[lo, hi]`` is the poll window. Every ``time_ns`` lies in its
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
    for i, s in enumerate(sane):
        lo_i = run_lo
        if s and (lo_i == 0 or s < lo_i):
            lo_i = s
        hi_i = top
        for later in sane[i + 1 :]:
            if later and lo_i <= later < hi_i:
                hi_i = later
        if s > hi_i:
            hi_i = s
        if s:
            t = s
        else:  # not reported, or in the future of hi (a clock quirk, not a time): estimated
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
    # a certain lower bound for its next transition: the latest sane runtime-reported time of an
    # announced step, or its last streamed event's window_ns[0] (0: none)
    floor_ns: int
    last_ns: int  # time_ns of its last event (estimates never go before it)
    gen: int  # poll generation in which it was last listed (0: never listed, known from the stream)
    created_ns: int = 0  # its created_at, once reported in the past of a snapshot (identity for ID reuse)
    # the committed generation it was listed in, saved when a begin re-marks ``gen``: a begin that is
    # then dropped (``failed``) must not make the engine forget that the committed list showed it;
    # 0 while no committed list has shown it (known from the stream, or new in the list begun now)
    base: int = 0
    # a successful list has shown this incarnation (False: known from the stream only): then it
    # existed after that list's sent_ns, which bounds its end (an unlisted one may predate it)
    was_listed: bool = False


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
    base: int = 0  # as _Container.base
    was_listed: bool = False  # as _Container.was_listed
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
    named: Callable[[], Collection[str]] | None = None  # begin_changes: sandbox IDs the whole list names
    ctx: _Ctx | None = None  # set by finish_early: the poll's context, its rest waits for status answers
    later_new: list[ContainerSnap] = field(default_factory=list)  # ... new containers awaiting theirs
    later_changed: list[tuple[_Container, ContainerSnap]] = field(default_factory=list)  # ... changed ones


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

    _stream_source = "stream"  # the source of what stream() emits: "stream", or "lookup"

    def __init__(self, state_lag_ns: int = 0) -> None:
        #: how long List/Status may lag behind a container's process (rule 4, state lag)
        self.state_lag_ns = state_lag_ns
        self._containers: dict[str, _Container] = {}
        self._sandboxes: dict[str, _Sandbox] = {}
        self._prev: Snapshot | None = None
        self._pending: _Pending | None = None
        #: How many of the IDs the last ``begin`` returned (they come first) are exited containers:
        #: their statuses carry exit codes, which nothing can estimate (sensor.poller asks them all).
        self.exits_needed = 0
        self._gen = 0
        self._failures = 0
        self._last_error: str | None = None
        self._resync = False
        # rule 6: the last committed generation, tombstones (ID -> created_ns of its destroyed
        # incarnations, IDs oldest first), held stream events, whether the stream saw something only a
        # list can place, and whether it changed records since the last finish
        self._committed_gen = 0
        self._tombs: dict[str, tuple[int, ...]] = {}
        self._sb_tombs: dict[str, tuple[int, ...]] = {}
        self._held: list[StreamEvent] = []
        self._want_list = False
        # IDs whose records the stream created, changed, replaced or removed since the last finish
        # (containers, sandboxes): what a list delta must show the engine again (begin_changes)
        self._touched: tuple[set[str], set[str]] = (set(), set())
        self._touched_over = False  # more than TOUCHED_MAX: the next list is begun whole
        self._finished_gen = 0  # generation of the last finish (-1: a begin_changes is pending)

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

    @property
    def resync_wanted(self) -> bool:
        """The stream showed something only a list can place (rule 6): list soon. Cleared by ``finish``."""
        return self._want_list

    @property
    def held(self) -> int:
        """Stream events held until the base list (rule 6)."""
        return len(self._held)

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
        committed = self._committed_gen

        sandboxes = self._sandboxes
        for s in snapshot.sandboxes:
            st = sandboxes.get(s.id)
            if st is None:
                if s.id not in p.sb_new:
                    p.sb_new[s.id] = s
                continue
            if st.gen == gen:
                continue  # duplicate ID in this list: the first wins
            if st.gen == committed:
                st.base = committed
            st.gen = gen
            st.gone_lo = None
            p.sb_matched += 1
            same = _same_sandbox(st.snap, s)
            if same and s.state == st.listed and s.created_at == st.snap.created_at:
                st.was_listed = True
                continue
            if not same or _reused(st.created_ns, s.created_at, hi) or (
                    is_regression("sandbox", st.listed, s.state) and not _known_same(st.created_ns, s.created_at)):
                p.sb_replaced.append((st, s))
            else:
                st.was_listed = True
                p.sb_changed.append((st, s))

        need: list[str] = []
        need_exited: list[str] = []
        seen_before = self._prev is not None  # False: the first snapshot; its running containers need no status
        containers = self._containers
        for c in snapshot.containers:
            t = containers.get(c.id)
            if t is None:
                if c.id not in p.c_new:
                    p.c_new[c.id] = c
                    if c.state in _NEEDS_STATUS and (seen_before or c.state == "exited"):
                        (need_exited if c.state == "exited" else need).append(c.id)
                continue
            if t.gen == gen:
                continue
            if t.gen == committed:
                t.base = committed
            t.gen = gen
            p.c_matched += 1
            same = _same_container(t.snap, c)
            if same and c.state == t.listed and c.created_at == t.snap.created_at:
                t.was_listed = True
                continue  # the steady state: nothing built
            if not same or _reused(t.created_ns, c.created_at, hi) or (
                    is_regression("container", t.listed, c.state) and not _known_same(t.created_ns, c.created_at)):
                p.c_replaced.append((t, c))
                if c.state in _NEEDS_STATUS:
                    (need_exited if c.state == "exited" else need).append(c.id)
            else:
                t.was_listed = True
                p.c_changed.append((t, c))
                if c.state in _NEEDS_STATUS and _RANK[c.state] > _RANK[t.announced]:
                    (need_exited if c.state == "exited" else need).append(c.id)
        self.exits_needed = len(need_exited)
        return need_exited + need  # exited first: what a status budget always asks (sensor.poller)

    def failed(self, now_ns: int, error: str) -> None:
        """A list failed or timed out: the engine is blind until the next success. Drops a pending begin()."""
        self._pending = None
        self._failures += 1
        self._last_error = error

    def reset_connection(self, now_ns: int) -> None:
        """The connection was lost or re-established: the next successful snapshot is a resync.
        Held stream events belonged to the old connection's stream: dropped (the resync list covers them)."""
        self._pending = None
        self._held.clear()
        if self._prev is not None:
            self._resync = True

    def finish_early(self, awaiting: Collection[str], now_ns: int, *, source: str | None = None) -> list[Event]:
        """The first part of a split ``finish``: the events of everything but the containers in
        ``awaiting`` -- the IDs whose status calls are still in flight -- so that the caller can
        write them while it waits (sensor.poller). ``finish(details, ...)`` then gives the awaited
        containers' events and commits the poll; nothing else may come between the two.

        The events are those ``finish`` would give, with the awaited containers' listed events
        moved after the rest (each object's own events, and the nesting of containers in their
        sandboxes, keep their order: the awaited ones are new or changed listed containers, the
        last group ``finish`` emits). Containers not awaited are placed without a status answer,
        as ``finish`` places one whose status was not asked."""
        p = self._pending
        if p is None:
            raise EngineStateError("finish_early() called without begin(): feed a successful snapshot first")
        if p.ctx is not None:
            raise EngineStateError("finish_early() called twice for one poll: call finish() next")
        out: list[Event] = []
        self._settle(p, {}, now_ns, source, awaiting, out)
        return out

    def finish(self, details: Mapping[str, ContainerDetail | None], now_ns: int, *,
               source: str | None = None) -> list[Event]:
        """Complete the poll begun by ``begin``: ``details[id]`` per requested ID (``None``:
        NotFound; missing: the call failed). Returns events in emission order, ``seq`` 0.

        ``source`` labels the poll's events: ``poll`` (default) or ``resync`` for a reconciling
        poll beside the event stream; the first poll after ``reset_connection`` is always ``resync``.
        After ``finish_early`` it gives only the awaited containers' events (``source`` as given
        there), and ``details`` is read only for them.
        """
        p = self._pending
        if p is None:
            raise EngineStateError("finish() called without begin(): feed a successful snapshot first")
        self._pending = None
        out: list[Event] = []
        if p.ctx is None:
            self._settle(p, details, now_ns, source, (), out)
        else:
            self._listed_containers(p.later_new, p.later_changed, details, replace(p.ctx, now=now_ns), p.gen, out)
        self._prev = Snapshot((), (), p.snapshot.sent_ns, p.snapshot.received_ns)  # only its times are needed later
        self._failures = 0
        self._last_error = None
        self._resync = False
        self._finished_gen = p.gen
        self._committed_gen = p.gen
        self._touched, self._touched_over = (set(), set()), False
        if self._held:  # rule 6: the stream's increments on top of this base
            held, self._held = self._held, []
            for ev in held:
                self._apply_stream(ev, now_ns, out)
        return out

    def _settle(self, p: _Pending, details: Mapping[str, ContainerDetail | None], now_ns: int, source: str | None,
                awaiting: Collection[str], out: list[Event]) -> None:
        """The poll's events in ``finish``'s order, but those of listed containers in ``awaiting``,
        which are kept in ``p`` for ``finish``. Commits nothing."""
        cur, prev = p.snapshot, self._prev
        blind = prev is not None and (self._failures > 0 or self._resync)
        source = "resync" if self._resync else (source or "poll")
        self._want_list = False
        ctx = _Ctx(
            lo=0 if prev is None else min(prev.sent_ns, cur.received_ns),
            hi=cur.received_ns,
            origin=cur.sent_ns,
            now=now_ns,
            source=source,
            blind=blind,
        )
        p.ctx = ctx
        if blind and prev is not None:
            out.append(self._gap(prev, cur, ctx))

        # 1. ends of vanished and replaced containers (before their sandboxes end)
        containers = self._containers
        c_why = WHY_VANISHED_DURING_OUTAGE if blind else WHY_EXITED_AND_REMOVED
        if p.c_matched < len(containers):
            for t in [t for t in containers.values() if t.gen != p.gen]:
                # never listed (known from the stream only): it may have ended before the previous
                # list, so only its own floor_ns bounds its end (rule 6)
                self._end_container(t, container_steps(t.announced, "gone", vanished_why=c_why),
                                    ctx if t.gen else replace(ctx, lo=0), 0, out)
                del containers[t.snap.id]
                _bury(self._tombs, t.snap.id, t.created_ns)
        fresh = list(p.c_new.values())
        for t, c in p.c_replaced:  # never in a list (known from the stream): only its floor bounds its end
            end_ctx = ctx if t.was_listed else replace(ctx, lo=0)
            self._end_container(t, container_steps(t.announced, "replaced"), end_ctx, c.created_at, out)
            del containers[t.snap.id]
            _bury(self._tombs, t.snap.id, t.created_ns)  # late stream events about it stay ignored
            fresh.append(c)

        # 2. ends of vanished and replaced sandboxes
        sandboxes = self._sandboxes
        s_why = WHY_VANISHED_DURING_OUTAGE if blind else WHY_STOPPED_AND_REMOVED
        if p.sb_matched < len(sandboxes):
            gone = [st for st in sandboxes.values() if st.gen != p.gen]
            named = p.named() if p.named is not None else {c.sandbox_id for c in cur.containers}
            for st in gone:
                if st.snap.id in named:
                    if st.gone_lo is None:
                        st.gone_lo = ctx.lo  # its end waits until no listed container names it
                    st.base = 0  # this committed list does not show it (the delta reuses gen numbers)
                    continue
                lo = (ctx.lo if st.gen else 0) if st.gone_lo is None else st.gone_lo
                self._end_sandbox(st, sandbox_steps(st.announced, "gone", vanished_why=s_why), lo, 0, ctx, out)
                del sandboxes[st.snap.id]
                _bury(self._sb_tombs, st.snap.id, st.created_ns)
        sb_fresh = list(p.sb_new.values())
        for st, s in p.sb_replaced:
            lo = ctx.lo if st.was_listed else 0
            self._end_sandbox(st, sandbox_steps(st.announced, "replaced"), lo, s.created_at, ctx, out)
            del sandboxes[st.snap.id]
            _bury(self._sb_tombs, st.snap.id, st.created_ns)
            sb_fresh.append(s)

        # 3. new and changed sandboxes (before their containers' created)
        for s in sb_fresh:
            if self._sb_tombs:
                _revive(self._sb_tombs, s.id, _past(s.created_at, ctx.hi))  # listed: a list is believed
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
                was_listed=True,
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
        changed = p.c_changed
        if awaiting:
            p.later_new = [c for c in fresh if c.id in awaiting]
            p.later_changed = [tc for tc in changed if tc[1].id in awaiting]
            if p.later_new:
                fresh = [c for c in fresh if c.id not in awaiting]
            if p.later_changed:
                changed = [tc for tc in changed if tc[1].id not in awaiting]
        self._listed_containers(fresh, changed, details, ctx, p.gen, out)

    def _listed_containers(self, fresh: list[ContainerSnap], changed: list[tuple[_Container, ContainerSnap]],
                           details: Mapping[str, ContainerDetail | None], ctx: _Ctx, gen: int,
                           out: list[Event]) -> None:
        """Step 4 of ``finish``: the events of new and changed listed containers."""
        containers = self._containers
        for c in fresh:
            if self._tombs:
                _revive(self._tombs, c.id, _past(c.created_at, ctx.hi))
            steps, reported, detail, newer = _container_plan(None, c, details)
            cctx = replace(ctx, hi=max(ctx.hi, ctx.now)) if newer else ctx
            floor, last = self._container_events(c, steps, reported, detail, cctx, 0, 0, 0, out)
            containers[c.id] = _Container(c, c.state, steps[-1].state, floor, last, gen, _past(c.created_at, ctx.hi),
                                          was_listed=True)
        for t, c in changed:
            steps, reported, detail, newer = _container_plan(t.announced, c, details)
            cctx = replace(ctx, hi=max(ctx.hi, ctx.now)) if newer else ctx
            t.floor_ns, t.last_ns = self._container_events(
                c, steps, reported, detail, cctx, t.floor_ns, t.last_ns, 0, out
            )
            t.snap, t.listed = c, c.state
            t.created_ns = t.created_ns or _past(c.created_at, ctx.hi)
            if steps:
                t.announced = steps[-1].state

    def knows(self, container_id: str) -> bool:
        """Whether the container is tracked (announced and not yet destroyed)."""
        return container_id in self._containers

    def stream(self, event: StreamEvent, now_ns: int, *, source: str = "stream") -> list[Event]:
        """Apply one event of the runtime's event stream (rule 6); ``now_ns`` is when the sensor
        received it. Returns events in emission order (``source: "stream"``), or none when the
        event is held (no base list yet), stale, or cannot be placed (then ``resync_wanted``).

        ``source="lookup"``: the event is what a lookup of one container found (``sensor.lookup``):
        the same observation of its current state, reported as such."""
        self._stream_source = source
        if self._pending is not None:
            raise EngineStateError("stream() called between begin() and finish(): apply stream events "
                                   "before or after a poll, under the same lock")
        if self._prev is None or self._resync:
            if len(self._held) >= HELD_MAX:
                self._held.clear()  # the base list, when it comes, shows where all of them led
                self._want_list = True
            self._held.append(event)
            return []
        out: list[Event] = []
        self._apply_stream(event, now_ns, out)
        return out

    # --- the list fast path (sensor.fastpath) -------------------------------------------------

    @property
    def settled(self) -> bool:
        """True while the tracked records are exactly what the last ``finish`` left: no ``begin``
        pending or dropped since (``failed``/``reset_connection`` change no record). Then every
        tracked container -- and every tracked sandbox whose end is not pending -- was listed in the
        list that ``finish`` committed, as it is recorded: ``begin_changes``'s precondition."""
        return (self._pending is None and self._finished_gen == self._gen and not self._touched_over
                and not self._touched[0] and not self._touched[1])

    def stream_touched(self) -> tuple[set[str], set[str]] | None:
        """The IDs (containers, sandboxes) whose records the event stream created, changed, replaced
        or removed since the last ``finish``, when nothing else moved the records since (no ``begin``
        pending or dropped): what ``begin_changes`` needs besides the list's changes. ``None``
        otherwise (the caller then uses ``begin``). Both empty: ``settled``. The engine's own sets:
        read, do not keep."""
        if self._pending is not None or self._finished_gen != self._gen or self._touched_over:
            return None
        return self._touched

    def _touch(self, kind: int, oid: str) -> None:
        """The stream changed the record of ``oid`` (``kind`` 0: a container, 1: a sandbox). Past
        ``TOUCHED_MAX`` IDs a delta would decode most of the list anyway: the sets stop growing."""
        touched = self._touched[kind]
        if len(touched) < TOUCHED_MAX:
            touched.add(oid)
        else:
            self._touched_over = True

    def repeat(self, sent_ns: int, received_ns: int) -> bool:
        """The list just taken repeats the committed one entry for entry (the steady state; the fast
        path knows it from the answers' bytes): ``begin`` and ``finish`` in one step. True when that
        is all it takes -- ``settled``, not blind, no stream event held -- and then no event is due
        and the list's times are committed. False changes nothing (the caller goes through
        ``begin_changes``). tests/perf/test_fastpath_equivalence.py holds it to the plain path.

        Why nothing else is due: ``begin`` would match every listed object unchanged and ``finish``
        build nothing for them. Its one scan, for sandboxes the list leaves out whose end waits until
        no listed container names them, would only set again what the committed list's ``finish``
        set: the same list names the same sandboxes."""
        if not self.settled or self._prev is None or self._failures or self._resync or self._held:
            return False
        self._prev = Snapshot((), (), sent_ns, received_ns)
        self._want_list = False
        self.exits_needed = 0
        return True

    def begin_changes(
        self,
        changes: Snapshot,
        *,
        gone_containers: Collection[str],
        gone_sandboxes: Collection[str],
        named: Callable[[], Collection[str]],
    ) -> list[str] | None:
        """``begin`` for a list given as its difference from the list the last ``finish`` committed.

        ``changes`` holds, in list order, the objects whose list entry is new or differs from the
        committed list; ``gone_*`` the IDs listed then and absent now; every other object of the
        committed list is listed again exactly as then, and no ID is listed twice. ``named()`` is the
        set of sandbox IDs the whole container list names. After event-stream events
        (``stream_touched``), ``changes`` also holds every listed object whose ID the stream touched,
        changed entry or not. The result -- IDs that need status, then ``finish``'s events -- is the
        same as ``begin`` on the whole list (tests/perf prove it), at a cost that grows with the
        changes, not the list. Returns ``None`` and does nothing when ``stream_touched`` is ``None``
        (the caller then uses ``begin``).

        How: ``begin`` skips an unchanged listed object after marking it listed in this generation.
        The delta reuses the committed generation, in which every unchanged object is already marked
        (but those the stream created since: never listed); it unmarks the changed and gone ones and
        lets ``begin`` see only the changed ones. An object the stream touched and the list shows
        unchanged is one ``begin`` would find as its record says -- unless the stream removed or
        replaced it, which is why those are in ``changes`` too.
        """
        touched = self.stream_touched()
        if touched is None or self._prev is None:
            return None
        gen = self._gen
        containers, sandboxes = self._containers, self._sandboxes
        unlisted = 0
        for cid in gone_containers:
            t = containers.get(cid)
            if t is not None and t.gen == gen:
                t.gen, t.base = -1, gen
                unlisted += 1
        for c in changes.containers:  # base: shown in the committed list (a replaced one's end needs it)
            t = containers.get(c.id)
            if t is not None:
                t.base = gen if t.gen == gen else t.base
                t.gen = -1
        for sid in gone_sandboxes:
            st = sandboxes.get(sid)
            if st is not None:
                st.base = gen if st.gen == gen else st.base
                st.gen = -1
        for s in changes.sandboxes:
            st = sandboxes.get(s.id)
            if st is not None:
                st.base = gen if st.gen == gen else st.base
                st.gen = -1
        self._gen = gen - 1  # begin() steps it back to gen
        self._finished_gen = -1  # unsettled until finish: a dropped delta leaves marks behind
        need = self.begin(changes)
        p = self._pending
        assert p is not None and p.gen == gen
        if touched[0]:  # records the stream created since are marked with no list: count the marked
            p.c_matched = sum(1 for t in containers.values() if t.gen == gen)
        else:
            p.c_matched = len(containers) - unlisted
        p.sb_matched = sum(1 for st in sandboxes.values() if st.gen == gen)
        p.named = named
        return need

    # --- the event stream (rule 6) ------------------------------------------------------------

    def _apply_stream(self, ev: StreamEvent, now: int, out: list[Event]) -> None:
        cid = ev.container_id
        sb = ev.sandbox
        if (sb is not None and sb.id == cid) or cid in self._sandboxes or cid in self._sb_tombs:
            self._stream_sandbox(ev, now, out)
        else:
            self._stream_container(ev, now, out)

    def _stream_ctx(self, rec: _Container | _Sandbox | None, floor: int, now: int) -> _Ctx:
        """Window context for a streamed change of an object: ``lo`` is the last time the sensor knew
        its announced state (rule 6), ``hi`` when the sensor received the event. ``rec`` is its record
        (``None``: first seen now); the last committed list showed it if it is marked with that list's
        generation, or was before a begin that was then dropped."""
        cg = self._committed_gen
        shown = rec is not None and cg > 0 and cg in (rec.gen, rec.base)
        listed = self._prev.sent_ns if self._prev is not None and shown else 0
        return _Ctx(lo=min(max(floor, listed), now), hi=now, origin=now, now=now, source=self._stream_source,
                    blind=False)

    def _stream_sandbox(self, ev: StreamEvent, now: int, out: list[Event]) -> None:
        sid = ev.container_id
        observation = _SANDBOX_STREAM_OBSERVATION[ev.type]
        s = ev.sandbox if ev.sandbox is not None and ev.sandbox.id == sid else None
        st = self._sandboxes.get(sid)
        tomb = self._sb_tombs.get(sid)
        if st is not None:
            older = _older(tomb, st.created_ns, 0 if s is None else s.created_at, ev.time_ns, now)
            if older is None:
                self._want_list = True  # about this incarnation or a destroyed one? A list tells
            if older is not False:
                return  # a late event about an incarnation already destroyed
        if st is not None and s is not None and (_reused(st.created_ns, s.created_at, now)
                                                 or not _same_sandbox(st.snap, s)):
            self._want_list = True  # a new sandbox under a known ID: a list sorts out both
            return
        if st is None:
            if tomb is not None and (s is None or _dead(tomb, s.created_at, now)):
                return  # a late event about a sandbox already destroyed (or one it cannot be told from)
            if observation == "gone":
                if s is not None and _past(s.created_at, now):  # gone before it was seen: late events
                    _bury(self._sb_tombs, sid, s.created_at)  # about this incarnation announce nothing
                return  # nothing known about it but its end
            assert s is not None  # untracked and unburied: routed here by its own status (_apply_stream)
            self._stream_new_sandbox(s, "notready" if s.state == "notready" else observation, ev.time_ns, now, out)
            return
        if observation == "gone":
            if any(t.snap.sandbox_id == sid for t in self._containers.values()):
                self._want_list = True  # its containers' ends were not streamed: a list places them
                return
            steps = sandbox_steps(st.announced, "gone", vanished_why=WHY_STOPPED_AND_REMOVED)
        else:
            steps = sandbox_steps(st.announced, observation)
        if not steps:
            return  # nothing new
        self._touch(1, sid)
        reported = [0] * (len(steps) - 1) + [ev.time_ns]
        ctx = self._stream_ctx(st, st.floor_ns, now)
        after = max(st.last_ns, st.child_ns) if observation == "gone" else st.last_ns
        _, st.last_ns = self._sandbox_events(st.snap, st.pod, steps, reported, ctx.lo, st.floor_ns, after, 0, ctx, out)
        if observation == "gone":
            del self._sandboxes[sid]
            _bury(self._sb_tombs, sid, st.created_ns)
            return
        st.floor_ns = max(st.floor_ns, out[-1].window_ns[0])
        st.announced = steps[-1].state  # listed stays what the last list showed: a lagging list is not a change
        if s is not None:
            st.snap = s

    def _stream_new_sandbox(self, s: SandboxSnap, observation: str, event_ns: int, now: int,
                            out: list[Event]) -> None:
        self._touch(1, s.id)
        pod = Pod(s.name, s.namespace, s.uid)
        steps = sandbox_steps(None, observation)
        reported = _sandbox_reported(steps, s)
        if len(steps) > 1:
            reported[-1] = event_ns  # notready: the event time
        first = len(out)
        floor, last = self._sandbox_events(s, pod, steps, reported, 0, 0, 0, 0, self._stream_ctx(None, 0, now), out)
        floor = max(_past(s.created_at, now), out[-1].window_ns[0])
        self._sandboxes[s.id] = _Sandbox(s, "", steps[-1].state, pod, floor, last, 0,  # "": never listed
                                         _past(s.created_at, now), ready_ns=out[first].time_ns)

    def _stream_container(self, ev: StreamEvent, now: int, out: list[Event]) -> None:
        cid = ev.container_id
        c, d = ev.container, ev.detail
        observation = _STREAM_OBSERVATION[ev.type]
        if observation != "gone" and c is not None and c.state in _RANK and _RANK[c.state] > _RANK[observation]:
            observation = c.state  # its status already shows a later state
        if observation == "exited" and d is not None and d.started_at > 0:
            observation = "exited+ran"
        containers = self._containers
        t = containers.get(cid)
        tomb = self._tombs.get(cid)
        if t is not None:
            older = _older(tomb, t.created_ns, 0 if c is None else c.created_at, ev.time_ns, now)
            if older is None:
                self._want_list = True  # about this incarnation or a destroyed one? A list tells
            if older is not False:
                return  # a late event about an incarnation already destroyed (e.g. replaced in a list)
        if t is not None and c is not None and _reused(t.created_ns, c.created_at, now):
            self._touch(0, cid)  # a new incarnation under a known ID: the old one's end is forged
            self._end_container(t, container_steps(t.announced, "replaced"),
                                self._stream_ctx(t, t.floor_ns, now), c.created_at, out)
            del containers[cid]
            _bury(self._tombs, cid, t.created_ns)
            t, tomb = None, None  # the new incarnation is proven different from every buried one
        if t is None:
            if tomb is not None and (c is None or _dead(tomb, c.created_at, now)):
                return  # a late event about a container already destroyed (or one it cannot be told from)
            if observation == "gone":
                if c is not None and _past(c.created_at, now):  # gone before it was seen: late events
                    _bury(self._tombs, cid, c.created_at)  # about this incarnation announce nothing
                return  # nothing known about it but its end
            if c is None or not c.sandbox_id:
                self._want_list = True  # no status, or a nil pod sandbox status: cannot attribute it
                return
            sb = ev.sandbox
            tracked = self._sandboxes.get(c.sandbox_id)
            if tracked is None:
                if sb is None or sb.id != c.sandbox_id or c.sandbox_id in self._sb_tombs:
                    self._want_list = True
                    return
                self._stream_new_sandbox(sb, sb.state, ev.time_ns, now, out)
            elif sb is not None and sb.id == c.sandbox_id and (
                    _reused(tracked.created_ns, sb.created_at, now) or not _same_sandbox(tracked.snap, sb)):
                self._want_list = True  # its pod is a new sandbox under a known ID: a list sorts that out
                return
            self._touch(0, cid)
            steps = container_steps(None, observation)
            reported, exact = _stream_reported(steps, c, d, ev.time_ns, now)
            _, last = self._container_events(c, steps, reported, d, self._stream_ctx(None, 0, now), 0, 0, 0, out)
            floor = _stream_floor(0, reported, exact, out[-1], now)
            containers[cid] = _Container(c, "", steps[-1].state, floor, last, 0, _past(c.created_at, now))  # unlisted
            return
        steps = container_steps(t.announced, observation)
        if not steps:
            return  # nothing new: an event older than what is announced
        self._touch(0, cid)
        meta = t.snap if c is None else c
        if meta.sandbox_id != t.snap.sandbox_id:
            meta = replace(meta, sandbox_id=t.snap.sandbox_id)
        reported, exact = _stream_reported(steps, meta, d, ev.time_ns, now)
        ctx = self._stream_ctx(t, t.floor_ns, now)
        _, t.last_ns = self._container_events(meta, steps, reported, d, ctx, t.floor_ns, t.last_ns, 0, out)
        if observation == "gone":
            del containers[cid]
            _bury(self._tombs, cid, t.created_ns or _past(meta.created_at, now))
            sb = self._sandboxes.get(meta.sandbox_id)
            if sb is not None and sb.gone_lo is not None:
                self._want_list = True  # its sandbox's end waited for it: a list completes that
            return
        t.floor_ns = _stream_floor(t.floor_ns, reported, exact, out[-1], now)
        t.snap = meta
        t.announced = steps[-1].state  # listed stays what the last list showed: a lagging list is not a change
        t.created_ns = t.created_ns or _past(meta.created_at, now)

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
        if self.state_lag_ns:
            times = _lagged(steps, reported, times, _past(c.created_at, ctx.hi), self.state_lag_ns)
        for step, (tm, lo, hi) in zip(steps, times, strict=True):
            exit_code = reason = None
            if step.state == "exited" and step.why is None and detail is not None:
                exit_code = None if detail.exit_code == -1 else detail.exit_code
                reason = detail.reason or None
            out.append(new_event("container." + step.state, tm, (lo, hi), ctx.now, ctx.source, c.id, c.sandbox_id,
                                 c.name, c.attempt, c.image, c.image_ref, dict(c.labels), pod, exit_code, reason,
                                 step.why is not None, step.why))
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
            out.append(new_event("sandbox." + step.state, tm, (wlo, whi), ctx.now, ctx.source, None, s.id, None,
                                 s.attempt, None, None, dict(s.labels), pod, None, None, step.why is not None,
                                 step.why))
        return max([floor, *(r for r in reported if 0 < r <= ctx.hi)]), times[-1][0]


def _lagged(steps: Sequence[Step], reported: Sequence[int], times: list[tuple[int, int, int]], created: int,
            lag: int) -> list[tuple[int, int, int]]:
    """Rule 4, state lag: an unreported ``running``/``exited`` step's window reaches ``lag`` further
    back, not below the container's ``created_at`` (0: unknown), which precedes its process."""
    out = list(times)
    for i, step in enumerate(steps):
        tm, lo, hi = out[i]
        if step.state in _NEEDS_STATUS and not 0 < reported[i] <= hi and lo > created:
            out[i] = (tm, max(lo - lag, created), hi)
    return out


def _same_container(old: ContainerSnap, new: ContainerSnap) -> bool:
    """Immutable identity: a container never changes sandbox, name or attempt, so a listed ID that
    does is a reused ID -- the one sign of reuse left when timestamps are zero or wrong. Missing
    metadata (an empty name, a runtime quirk) proves nothing; then the labels, immutable as well and
    carried outside the metadata, still tell two containers apart (an empty set proves nothing)."""
    if old.sandbox_id != new.sandbox_id:
        return False
    if old.name and new.name:
        return old.name == new.name and old.attempt == new.attempt
    return not old.labels or not new.labels or old.labels == new.labels


def _same_sandbox(old: SandboxSnap, new: SandboxSnap) -> bool:
    """Immutable identity, as ``_same_container``: a pod sandbox never changes its pod's name,
    namespace, UID or attempt, so a listed ID that does is a reused ID. Missing metadata (empty
    strings) proves nothing; then differing non-empty label sets (immutable too) do."""
    if old.uid and new.uid and old.uid != new.uid:
        return False
    if old.name and new.name and (old.name != new.name or old.attempt != new.attempt):
        return False
    if old.namespace and new.namespace and old.namespace != new.namespace:
        return False
    if old.name and new.name and old.uid and new.uid:
        return True
    return not old.labels or not new.labels or old.labels == new.labels


def _reused(old_created_ns: int, new_created_at: int, hi: int) -> bool:
    """A different incarnation: both creation times known and in the past, and different. A zero or
    future ``created_at`` (timestamp quirks) proves nothing: it changes while the object does not."""
    return old_created_ns > 0 and 0 < new_created_at <= hi and old_created_ns != new_created_at


def _known_same(created_ns: int, created_at: int) -> bool:
    """The same incarnation by its known creation time. Then a list showing an earlier state than
    announced is state lag (an exit the stream announced, not yet in List/Status: DESIGN.md
    section 6), not ID reuse: it gives no steps."""
    return created_ns > 0 and created_at == created_ns


def _past(t: int, hi: int) -> int:
    return t if 0 < t <= hi else 0


def _bury(tombs: dict[str, tuple[int, ...]], oid: str, created_ns: int) -> None:
    """Remember a destroyed incarnation (rule 6): its ID and ``created_ns`` (0: unknown), the last
    ``TOMB_DEPTH`` per ID, forgetting the oldest ID beyond ``TOMBSTONES``."""
    tombs[oid] = (*tombs.pop(oid, ())[1 - TOMB_DEPTH:], created_ns)
    if len(tombs) > TOMBSTONES:
        del tombs[next(iter(tombs))]


def _revive(tombs: dict[str, tuple[int, ...]], oid: str, created_ns: int) -> None:
    """A list shows ``oid`` (a list is believed): an incarnation it shows is not dead; without a
    usable ``created_at`` it may be any of them, so the ID's tombstone goes."""
    tomb = tombs.get(oid)
    if tomb is not None and (not created_ns or created_ns in tomb):
        del tombs[oid]


def _older(tomb: tuple[int, ...] | None, created_ns: int, status_created_at: int, event_ns: int,
           hi: int) -> bool | None:
    """Whether an event about a tracked ID (its incarnation created at ``created_ns``, 0: unknown) is
    about an earlier incarnation of the ID -- destroyed, seen or not, since a live ID is unique: its
    status's ``created_at`` or else its own time (the runtime's clock, like ``created_at``) predates
    the tracked incarnation, or names a buried one. ``None``: it cannot tell although the ID is
    known to have had other incarnations (no usable times)."""
    usable = 0 < status_created_at <= hi
    if created_ns and (usable or event_ns > 0):
        return (status_created_at if usable else event_ns) < created_ns
    if tomb is None:
        return False  # the only incarnation known
    if usable:
        return status_created_at in tomb
    return None


def _dead(tomb: tuple[int, ...], created_at: int, hi: int) -> bool:
    """An event about an untracked, destroyed ID is about a destroyed incarnation unless it proves
    otherwise: a usable ``created_at`` different from every buried one (all of them known)."""
    return not 0 < created_at <= hi or 0 in tomb or created_at in tomb


def _stream_reported(steps: Sequence[Step], c: ContainerSnap, d: ContainerDetail | None,
                     event_ns: int, now: int) -> tuple[list[int], int]:
    """Runtime-reported times per step from a streamed status (0: none), and how many of them are
    the runtime's own transition times: a last step without one -- or with one in the future of
    ``now``, a clock quirk -- takes the event's time (the response's ``created_at``), which comes
    after the transition."""
    reported: list[int] = []
    for step in steps:
        if step.state == "created":
            reported.append(c.created_at)
        elif d is None or step.state == "destroyed":
            reported.append(0)
        elif step.state == "running":
            reported.append(d.started_at)
        else:  # exited
            reported.append(d.finished_at)
    exact = len(reported)
    if reported and not 0 < reported[-1] <= now:
        reported[-1] = event_ns
        exact -= 1
    return reported, exact


def _stream_floor(floor: int, reported: Sequence[int], exact: int, last: Event, now: int) -> int:
    """A streamed container's new ``floor_ns``: the latest of its runtime-reported times (the first
    ``exact`` of ``reported``) and its last event's ``window_ns[0]``."""
    return max(floor, last.window_ns[0], *(r for r in reported[:exact] if 0 < r <= now))


def _sandbox_reported(steps: Sequence[Step], s: SandboxSnap) -> list[int]:
    return [s.created_at if step.state == "ready" else 0 for step in steps]


def _container_plan(
    last: str | None, c: ContainerSnap, details: Mapping[str, ContainerDetail | None]
) -> tuple[Sequence[Step], list[int], ContainerDetail | None, bool]:
    """(steps, reported time per step, status detail or None, newer) for a listed container.

    ``newer``: the status answer, which came after the list, already shows the exit of a
    container the list showed running. The list's ``running`` is then seen, and so is the exit;
    the exit's window must reach to when the status answer came back (``now``), not the list's.
    """
    detail: ContainerDetail | None = None
    if c.state in _NEEDS_STATUS:
        d = details.get(c.id, _MISSING)
        if isinstance(d, ContainerDetail):
            detail = d
    # the client sets an exit code only for an exited status: evidence even with zero timestamps
    newer = c.state == "running" and detail is not None and (detail.finished_at > 0 or detail.exit_code is not None)
    if newer:
        steps = tuple(container_steps(last, "running"))
        steps += tuple(container_steps(steps[-1].state if steps else last, "exited"))
    else:
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
    return steps, reported, detail, newer
