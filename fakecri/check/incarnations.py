"""Incarnations: one lifetime of one container or sandbox ID, and which events belong to it.

Theory of operation
-------------------
Truth is a list of transitions per ID. IDs can be reused (a fault the fake injects), so the unit
the checker judges is an *incarnation*: the transitions from one ``created`` (``ready`` for a
sandbox) up to and including the next ``destroyed``. A ``created`` after a ``destroyed`` for the
same ID starts the next incarnation.

The sensor's events are assigned to incarnations of their ID, walking the events in emission order
and never going back:

1. an event whose ``window_ns`` lower bound lies after the current incarnation was destroyed
   (``lo > destroyed``) belongs to a later incarnation: the transition it announces certainly
   happened after the current one was gone;
2. a ``created``/``ready`` event after the current incarnation already got its ``destroyed`` event
   starts the next incarnation (the sensor says: this is a new one);
3. a ``created``/``ready`` event whose window starts at or after the next incarnation's creation
   belongs to the next one if the current one already has its ``created`` event or was destroyed
   by then (``lo >= destroyed``: a tie between one destroy and the next create).

4. among the current incarnation and later ones already created when the event was observed,
   the event goes to the one it describes best: for a ``created``/``ready`` event, the creation
   time equals ``time_ns`` (``created_at`` is in every answer); failing that, for a polled event
   that reports the object present (not ``destroyed``, not a forged stop), it existed when the
   latest list answer before the event was taken; failing that, it lived > 0 ns;
   failing that, lies in ``window_ns``; failing that, the incarnation has no event of this type
   yet (ties: the earliest). This settles ties such as a window starting exactly at the previous
   incarnation's destroy, and keeps a duplicate with the current one;
5. an event whose window ends before the current incarnation was created (``hi < created``)
   belongs to the latest earlier incarnation created by then (e.g. a late duplicate about the
   previous one); this does not move the walk back.

Everything else stays with the current incarnation; duplicates are judged by G1/G6, not hidden here.

State lag
---------
A transition the runtime showed late (a truth record's ``shown_ns``: the fake's ``state_lag``
quirk) has two times: when it happened (``times``: what G4 and G5 judge) and when answers first
showed it (``shown``). States -- what an answer could show, what the sensor was obliged to report
and when -- follow the shown times.

States and ties
---------------
An incarnation is in state S from the time of transition S up to the time of its next transition.
Truth times are exact, but an observation (an RPC answer) taken at the very nanosecond of a
transition may show either side of it: the checker does not know which came first. So each
question is asked two ways: certain answers (strictly between transitions; :meth:`Incarnation.certain_state`
is None on a tie) back *obligations* (what the sensor must report), possible ones (closed intervals, both
sides of a tie; ``observations.RpcLog.seen``) back *permissions* (what the sensor may claim to have seen).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fakecri.truth import ContainerTransition, SandboxTransition, TruthRecord
from sensor.events import Event

#: Far future: "never" for times that did not happen within the run.
FOREVER = 1 << 62

ABSENT = "absent"  # state before the first transition


@dataclass(frozen=True)
class Lifecycle:
    """One kind of object the sensor reports, as a table the checker reads.

    ``transitions`` are in lifecycle order; the event type of transition ``t`` is
    ``f"{kind}.{t}"``. ``stop`` is the transition that must be forged if it was not seen before the
    object vanished. ``reported`` says which RPC answers carry the runtime's own timestamp of a
    transition (CRI: ``created_at`` in lists and statuses; ``started_at``/``finished_at`` only in
    ``ContainerStatus``).
    """

    kind: str
    transitions: tuple[str, ...]
    stop: str
    list_method: str
    status_method: str
    reported: dict[str, tuple[str, ...]]

    @property
    def first(self) -> str:
        return self.transitions[0]

    def event_type(self, transition: str) -> str:
        return f"{self.kind}.{transition}"

    def transition_of(self, event_type: str) -> str:
        return event_type.split(".", 1)[1]

    def rank(self, event_type: str) -> int:
        return self.transitions.index(self.transition_of(event_type))


CONTAINER = Lifecycle(
    kind="container",
    transitions=("created", "running", "exited", "destroyed"),
    stop="exited",
    list_method="ListContainers",
    status_method="ContainerStatus",
    reported={
        "created": ("list", "status"),  # created_at
        "running": ("status",),  # started_at
        "exited": ("status",),  # finished_at
    },
)

SANDBOX = Lifecycle(
    kind="sandbox",
    transitions=("ready", "notready", "destroyed"),
    stop="notready",
    list_method="ListPodSandbox",
    status_method="PodSandboxStatus",
    reported={"ready": ("list", "status")},  # created_at
)

@dataclass
class Incarnation:
    """One lifetime of one ID, with the sensor's events assigned to it (in emission order)."""

    lifecycle: Lifecycle
    id: str
    index: int
    times: dict[str, int] = field(default_factory=dict)
    records: dict[str, tuple[int, TruthRecord]] = field(default_factory=dict)
    #: transitions answers showed later than they happened (state lag): when they first showed them
    shown: dict[str, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    reused: bool = False  # the ID has more than one incarnation

    # -- truth -----------------------------------------------------------------------------------

    @property
    def created_ns(self) -> int:
        return self.times[self.lifecycle.first]

    @property
    def gone_ns(self) -> int | None:
        return self.times.get("destroyed")

    @property
    def end_ns(self) -> int:
        """Destroyed time, or FOREVER if it outlived the run."""
        gone = self.gone_ns
        return FOREVER if gone is None else gone

    def effective(self, transition: str) -> int | None:
        """Truth time of ``transition``. The stop transition of an object destroyed without one
        (e.g. lost in a runtime restart) is taken to have happened when it was destroyed."""
        t = self.times.get(transition)
        if t is None and transition == self.lifecycle.stop:
            return self.gone_ns
        return t

    def visible(self, transition: str) -> int | None:
        """When answers first showed ``transition`` (its effective time unless it lagged)."""
        return self.shown.get(transition, self.effective(transition))

    def truth(self, *transitions: str) -> tuple[tuple[int, TruthRecord], ...]:
        """Evidence: the truth records of these transitions (those that exist)."""
        out = []
        for t in transitions:
            rec = self.records.get(t)
            if rec is not None and rec not in out:
                out.append(rec)
        return tuple(out)

    @property
    def label(self) -> str:
        suffix = f"#{self.index}" if self.reused else ""
        return f"{self.lifecycle.kind} {short_id(self.id)}{suffix}"

    # -- states ----------------------------------------------------------------------------------

    def _boundaries(self) -> list[tuple[int, str]]:
        return [(self.shown.get(t, self.times[t]), t) for t in self.lifecycle.transitions if t in self.times]

    def state_interval(self, state: str) -> tuple[int, int] | None:
        """Closed interval ``[entered, left]`` of ``state`` (``left`` = FOREVER if never left)."""
        b = self._boundaries()
        for i, (t, name) in enumerate(b):
            if name == state:
                return (t, b[i + 1][0] if i + 1 < len(b) else FOREVER)
        return None

    def certain_state(self, t: int) -> str | None:
        """The state at ``t``; None when ``t`` is exactly a transition time (a tie)."""
        b = self._boundaries()
        if any(t == start for start, _ in b):
            return None
        state = ABSENT
        for start, name in b:
            if start < t:
                state = name
        return state

    # -- the sensor's events ---------------------------------------------------------------------

    def first_event(self, event_type: str) -> Event | None:
        for ev in self.events:
            if ev.type == event_type:
                return ev
        return None


def short_id(id_: str) -> str:
    return id_ if len(id_) <= 13 else id_[:12] + "…"


@dataclass
class Population:
    """All incarnations of one lifecycle, indexed by ID and by destroy time."""

    lifecycle: Lifecycle
    by_id: dict[str, list[Incarnation]]
    notes: list[str]

    def __post_init__(self) -> None:
        self.all = [inc for incs in self.by_id.values() for inc in incs]
        gone = sorted((inc.gone_ns, i) for i, inc in enumerate(self.all) if inc.gone_ns is not None)
        self._gone_times = [g for g, _ in gone]
        self._gone_order = [self.all[i] for _, i in gone]

    def gone_between(self, lo: int, hi: int) -> list[Incarnation]:
        """Incarnations destroyed within the closed interval ``[lo, hi]``."""
        a = bisect_left(self._gone_times, lo)
        b = bisect_right(self._gone_times, hi)
        return self._gone_order[a:b]


def split(records: Iterable[tuple[int, TruthRecord]], lifecycle: Lifecycle) -> Population:
    """Split one kind of truth transitions into incarnations per ID (see module doc)."""
    rec_type = ContainerTransition if lifecycle is CONTAINER else SandboxTransition
    per_id: dict[str, list[tuple[int, TruthRecord]]] = {}
    for seq, rec in records:
        if isinstance(rec, rec_type):
            oid = rec.container_id if isinstance(rec, ContainerTransition) else rec.sandbox_id
            per_id.setdefault(oid, []).append((seq, rec))
    notes: list[str] = []
    by_id: dict[str, list[Incarnation]] = {}
    for oid, recs in per_id.items():
        recs.sort(key=lambda sr: (sr[1].time_ns, sr[0]))
        incs: list[Incarnation] = []
        cur: Incarnation | None = None
        for seq, rec in recs:
            tr = rec.transition  # type: ignore[union-attr]
            if tr not in lifecycle.transitions:
                notes.append(f"truth #{seq}: unknown {lifecycle.kind} transition {tr!r} ignored")
                continue
            if cur is None or (tr == lifecycle.first and lifecycle.first in cur.times):
                cur = Incarnation(lifecycle, oid, len(incs))
                incs.append(cur)
                if tr != lifecycle.first:
                    notes.append(
                        f"truth #{seq}: {lifecycle.kind} {short_id(oid)} has {tr!r} without "
                        f"{lifecycle.first!r}; assuming it was {lifecycle.first} then"
                    )
                    cur.times[lifecycle.first] = rec.time_ns
            if tr in cur.records:
                notes.append(f"truth #{seq}: repeated {tr!r} for {lifecycle.kind} {short_id(oid)} ignored")
                continue
            cur.times[tr] = rec.time_ns
            cur.records[tr] = (seq, rec)
            shown = getattr(rec, "shown_ns", None)
            if shown is not None and shown > rec.time_ns:
                cur.shown[tr] = shown
            if tr == "destroyed":
                cur = None
        for inc in incs:
            inc.reused = len(incs) > 1
        by_id[oid] = incs
    return Population(lifecycle, by_id, notes)


def assign(events: Iterable[Event], population: Population,
           listed_at: Callable[[str, int], int | None] | None = None) -> list[Event]:
    """Attach each of ``events`` (of this lifecycle, in emission order) to an incarnation of its ID.
    ``listed_at(list_method, t)``: when the latest OK list answer at or before ``t`` was taken.

    Returns the events whose ID never existed in truth (phantoms, judged by G5).
    """
    lc = population.lifecycle
    cursor: dict[str, int] = {}
    phantoms: list[Event] = []
    destroyed_type = lc.event_type("destroyed")
    first_type = lc.event_type(lc.first)
    for ev in events:
        oid = ev.container_id if lc is CONTAINER else ev.sandbox_id
        incs = population.by_id.get(oid or "")
        if not incs:
            phantoms.append(ev)
            continue
        i = cursor.get(oid, 0)  # type: ignore[arg-type]
        lo = ev.window_ns[0]
        while i + 1 < len(incs):
            cur, nxt = incs[i], incs[i + 1]
            has = {e.type for e in cur.events}
            if (
                lo > cur.end_ns
                or (ev.type == first_type and destroyed_type in has)
                or (ev.type == first_type and lo >= nxt.created_ns and (first_type in has or lo >= cur.end_ns))
            ):
                i += 1
                continue
            break
        i = _best_fit(ev, incs, i, lc, listed_at)
        cursor[oid] = i  # type: ignore[index]
        j = i
        while j > 0 and ev.window_ns[1] < incs[j].created_ns:
            j -= 1  # rule 5: it certainly happened before this incarnation existed
        incs[j].events.append(ev)
    return phantoms


def _best_fit(ev: Event, incs: list[Incarnation], i: int, lc: Lifecycle,
              listed_at: Callable[[str, int], int | None] | None = None) -> int:
    """Rule 4: among the cursor's incarnation and later ones the sensor could know of (created by
    ``observed_ns``), pick the one the event describes best: its creation time equals the
    ``time_ns`` of a ``created``/``ready`` event (``created_at`` is in every answer, and a sensor
    copies it verbatim; other times may be estimates that coincide by chance), then -- for a
    polled event that reports the object as present (all but ``destroyed`` and a forged stop) --
    it (possibly) existed when the latest list answer before the event was taken, then it lived
    for more than 0 ns, then its transition time lies in ``window_ns``, then it has no event of
    this type yet. Ties go to the earliest."""
    tr = lc.transition_of(ev.type)
    lo, hi = ev.window_ns
    anchor = None
    if listed_at is not None and ev.source != "stream" and tr != "destroyed" and not (tr == lc.stop and ev.synthetic):
        anchor = listed_at(lc.list_method, ev.observed_ns)
    best, best_score = i, None
    for j in range(i, len(incs)):
        inc = incs[j]
        if j > i and inc.created_ns > ev.observed_ns:
            break
        t = inc.effective(tr)
        exact = tr == lc.first and t == ev.time_ns
        lived = inc.created_ns < inc.end_ns  # a zero-length lifetime can only tie with its successor
        present = anchor is not None and inc.created_ns <= anchor <= inc.end_ns
        score = (exact, present, lived, t is not None and lo <= t <= hi, all(e.type != ev.type for e in inc.events))
        if best_score is None or score > best_score:
            best, best_score = j, score
    return best
