"""What the sensor could have seen: the runtime's answers (truth ``rpc`` records), outages and faults.

Theory of operation
-------------------
A sensor learns about the runtime only from RPC answers, and truth records each one with the
instant its answer was taken (``time_ns``), when it was sent (``end_ns``) and its status code.

* An OK ``ListContainers``/``ListPodSandbox`` answer taken at ``t`` shows every incarnation that
  existed at ``t``, in its state at ``t``, and shows an incarnation destroyed before ``t`` as gone.
  Lists are assumed unfiltered.
* An OK ``ContainerStatus``/``PodSandboxStatus`` answer for ``target`` shows that incarnation; a
  ``NOT_FOUND`` one after it was destroyed shows it gone.
* A ``GetContainerEvents`` record spans the stream: opened at ``time_ns``, closed at ``end_ns``
  (``code`` is how it ended). While open, every transition is delivered. A stream answered
  ``UNIMPLEMENTED`` was never open.

A :class:`Sighting` is one such observation of one incarnation. "Certain" sightings (the answer was
taken strictly between two transitions) back obligations; "possible" ones (ties included) back
permissions. See ``incarnations`` for the tie rule.

An *outage* is a stretch in which the sensor could not see: the runtime was down (``runtime`` down
to up), or a run of consecutive list calls failed (from the first failed answer to the last one's
end, but not past the next OK answer). Failed ``Version`` calls (reconnect attempts) belong to such
a run, and also start one right after the runtime was down (no OK list in between): a sensor whose
reconnect is refused is still blind. Overlapping stretches are merged.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

from fakecri.truth import FaultWindow, RpcServed, RuntimeTransition, TruthRecord

from .incarnations import CONTAINER, Incarnation

LIST_METHODS = ("ListContainers", "ListPodSandbox")
#: The call every CRI client makes to (re)connect: while it fails, the sensor cannot list.
CONNECT_METHOD = "Version"
STREAM_METHOD = "GetContainerEvents"
OK = "OK"
NOT_FOUND = "NOT_FOUND"
NEVER_OPEN = ("UNIMPLEMENTED",)

#: Fault windows inside which the runtime's own timestamps cannot be trusted (G4 exact-time rule off).
TIMESTAMP_FAULTS = ("zero_timestamps", "future_timestamps")

Ref = tuple[int, TruthRecord]  # (truth seq, record): evidence


def _code(rec: RpcServed) -> str:
    return (rec.code or "").upper()


@dataclass(frozen=True)
class Sighting:
    """One observation of one incarnation: when the answer was taken and sent, and how."""

    time_ns: int
    end_ns: int
    via: str  # "list" | "status" | "stream"
    ref: Ref


class _Sorted:
    """RPC answers sorted by ``time_ns``, searchable by time."""

    def __init__(self, refs: Iterable[Ref]) -> None:
        self.refs: list[Ref] = sorted(refs, key=lambda r: (r[1].time_ns, r[0]))
        self.times = [r[1].time_ns for r in self.refs]

    def first_after(self, t: int, *, strict: bool = True) -> Ref | None:
        i = bisect_right(self.times, t) if strict else bisect_left(self.times, t)
        return self.refs[i] if i < len(self.refs) else None

    def between(self, lo: int, hi: int, *, closed: bool) -> Iterable[Ref]:
        """Answers with ``lo < t < hi`` (``lo <= t <= hi`` if ``closed``), in time order."""
        i = bisect_left(self.times, lo) if closed else bisect_right(self.times, lo)
        while i < len(self.refs):
            t = self.times[i]
            if t > hi or (not closed and t >= hi):
                return
            yield self.refs[i]
            i += 1


class _Spans:
    """Stream intervals merged into disjoint spans, each with the stream that opened it.

    Open intervals ``(s, e)`` merge only when they overlap (``touching=False``: at the instant one
    stream ends and the next begins nothing is certainly open); closed ones also when they touch.
    """

    def __init__(self, streams: list[Ref], *, touching: bool) -> None:
        self.spans: list[tuple[int, int, Ref]] = []
        for ref in streams:  # sorted by start
            s, e = ref[1].time_ns, ref[1].end_ns  # type: ignore[union-attr]
            if self.spans and (s <= self.spans[-1][1] if touching else s < self.spans[-1][1]):
                lo, hi, first = self.spans[-1]
                self.spans[-1] = (lo, max(hi, e), first)
            else:
                self.spans.append((s, e, ref))
        self.los = [lo for lo, _, _ in self.spans]


@dataclass
class Outage:
    """A stretch ``[lo, hi]`` in which the sensor was blind, with the records that show it."""

    lo: int
    hi: int
    records: list[Ref] = field(default_factory=list)
    runtime: bool = False  # the runtime was down (truth ``runtime`` records)
    failed_rpcs: bool = False  # some RPC answered with an error (or ended) inside it

    def evidence(self) -> tuple[Ref, ...]:
        """The first and last record: enough to show the stretch."""
        recs = sorted(self.records, key=lambda r: r[0])
        return tuple(recs[:1] + recs[-1:]) if len(recs) > 1 else tuple(recs)


@dataclass(frozen=True)
class Fault:
    name: str
    lo: int
    hi: int


class RpcLog:
    """Index over the truth's ``rpc``, ``runtime`` and ``fault`` records."""

    def __init__(self, records: Iterable[Ref], end_ns: int) -> None:
        ok_lists: dict[str, list[Ref]] = {m: [] for m in LIST_METHODS}
        lists: list[Ref] = []
        connects: list[Ref] = []
        status: dict[tuple[str, str], list[Ref]] = {}
        notfound: dict[tuple[str, str], list[Ref]] = {}
        self.streams: list[Ref] = []
        self.failed: list[Ref] = []
        runtime: list[Ref] = []
        faults: list[Ref] = []
        answers: list[Ref] = []
        self.count = 0
        for seq, rec in records:
            if isinstance(rec, RuntimeTransition):
                runtime.append((seq, rec))
            elif isinstance(rec, FaultWindow):
                faults.append((seq, rec))
            elif isinstance(rec, RpcServed):
                self.count += 1
                if rec.method != STREAM_METHOD:  # a stream's record spans its whole life
                    answers.append((seq, rec))
                code = _code(rec)
                if code != OK:
                    self.failed.append((seq, rec))
                if rec.method in LIST_METHODS:
                    lists.append((seq, rec))
                    if code == OK:
                        ok_lists[rec.method].append((seq, rec))
                elif rec.method == CONNECT_METHOD:
                    connects.append((seq, rec))
                elif rec.method == STREAM_METHOD:
                    if code not in NEVER_OPEN:
                        self.streams.append((seq, rec))
                elif rec.target is not None:
                    key = (rec.method, rec.target)
                    if code == OK:
                        status.setdefault(key, []).append((seq, rec))
                    elif code == NOT_FOUND:
                        notfound.setdefault(key, []).append((seq, rec))
        self.lists = {m: _Sorted(refs) for m, refs in ok_lists.items()}
        self.any_list = _Sorted(r for refs in ok_lists.values() for r in refs)
        #: every answer, by when it was taken: what a poll asked after its list (G7's RPC time)
        self.answers = _Sorted(answers)
        self._poll_ends: dict[int, int] = {}
        self.status = {k: _Sorted(v) for k, v in status.items()}
        self.notfound = {k: _Sorted(v) for k, v in notfound.items()}
        self.streams.sort(key=lambda r: (r[1].time_ns, r[0]))
        self.failed.sort(key=lambda r: (r[1].end_ns, r[0]))  # type: ignore[union-attr]
        self._failed_ends = [r[1].end_ns for r in self.failed]  # type: ignore[union-attr]
        self.faults = _fault_windows(faults, end_ns)
        self.outages = _outages(lists, connects, runtime, self, end_ns)
        self._outage_his = [o.hi for o in self.outages]
        self._open_certain = _Spans(self.streams, touching=False)
        self._open_possible = _Spans(self.streams, touching=True)

    # -- generic lookups -------------------------------------------------------------------------

    def _status(self, method: str, target: str) -> _Sorted | None:
        return self.status.get((method, target))

    def stream_open(self, t: int, *, certain: bool) -> Ref | None:
        """A stream open at ``t`` (strictly inside it if ``certain``)."""
        spans = self._open_certain if certain else self._open_possible
        i = bisect_right(spans.los, t) - 1
        if i < 0:
            return None
        lo, hi, ref = spans.spans[i]
        return ref if ((lo < t < hi) if certain else (lo <= t <= hi)) else None

    def poll_end(self, listed: Ref) -> int:
        """When the poll that got the OK list answer ``listed`` had its last answer: the latest
        ``end_ns`` of the answers taken from ``listed`` on, before the next list of its method or
        of the method the sensor lists first (its next poll). A poll's status calls are RPC time
        as much as its lists (G7)."""
        seq, rec = listed
        got = self._poll_ends.get(seq)
        if got is not None:
            return got
        t = rec.time_ns
        first = self.any_list.refs[0][1].method  # type: ignore[union-attr]  # the method each poll starts with
        nxt = [r[1].time_ns for r in (self.lists[rec.method].first_after(t),  # type: ignore[union-attr]
                                      self.lists[first].first_after(t)) if r is not None]
        hi = min(nxt, default=None)
        end = rec.end_ns  # type: ignore[union-attr]
        for _, a in self.answers.between(t, hi if hi is not None else 1 << 62, closed=False):
            end = max(end, a.end_ns)  # type: ignore[union-attr]
        self._poll_ends[seq] = end
        return end

    def listed_at(self, method: str, t: int) -> int | None:
        """When the latest OK ``method`` list answer at or before ``t`` was taken (None: none)."""
        times = self.lists[method].times
        i = bisect_right(times, t) - 1
        return times[i] if i >= 0 else None

    def failed_between(self, lo: int, hi: int) -> list[Ref]:
        """Non-OK answers sent within ``[lo, hi]``."""
        a = bisect_left(self._failed_ends, lo)
        b = bisect_right(self._failed_ends, hi)
        return self.failed[a:b]

    def outage_overlapping(self, lo: int, hi: int) -> Outage | None:
        """The first outage that overlaps ``[lo, hi]`` (outages are disjoint and sorted)."""
        i = bisect_left(self._outage_his, lo)
        if i < len(self.outages) and self.outages[i].lo <= hi:
            return self.outages[i]
        return None

    def timestamp_fault(self, lo: int, hi: int) -> Fault | None:
        for f in self.faults:
            if f.name in TIMESTAMP_FAULTS and f.lo <= hi and lo <= f.hi:
                return f
        return None

    # -- sightings of one incarnation ------------------------------------------------------------

    def _sightings(
        self, inc: Incarnation, lo: int, hi: int, *, closed: bool, sources: tuple[str, ...]
    ) -> Iterable[Sighting]:
        """List/status sightings of ``inc`` with answers taken in (lo, hi) / [lo, hi]."""
        lc = inc.lifecycle
        if "list" in sources:
            for ref in self.lists[lc.list_method].between(lo, hi, closed=closed):
                yield Sighting(ref[1].time_ns, ref[1].end_ns, "list", ref)  # type: ignore[union-attr]
        if "status" in sources:
            st = self._status(lc.status_method, inc.id)
            if st is not None:
                for ref in st.between(lo, hi, closed=closed):
                    yield Sighting(ref[1].time_ns, ref[1].end_ns, "status", ref)  # type: ignore[union-attr]

    def _first(self, sightings: Iterable[Sighting], key=lambda s: s.time_ns) -> Sighting | None:
        best = None
        for s in sightings:
            if best is None or key(s) < key(best):
                best = s
        return best

    def _first_each(self, inc: Incarnation, lo: int, hi: int, *, closed: bool) -> Iterable[Sighting]:
        """The earliest list and the earliest status sighting in the interval."""
        for src in ("list", "status"):
            s = next(iter(self._sightings(inc, lo, hi, closed=closed, sources=(src,))), None)
            if s is not None:
                yield s

    def first_visible(self, inc: Incarnation) -> Sighting | None:
        """Earliest certain sighting of ``inc`` in any state: the sensor could see it from then.

        Streams count for containers only (what a runtime streams about sandboxes varies).
        """
        # from when answers showed it (a step applied late shows from then) until they stopped
        lo = inc.visible(inc.lifecycle.first)
        hi = inc.visible("destroyed") if inc.gone_ns is not None else inc.end_ns
        assert lo is not None and hi is not None
        cands = list(self._first_each(inc, lo, hi, closed=False))
        if inc.lifecycle is CONTAINER:
            ref = self.stream_open(lo, certain=True)
            if ref is not None:
                cands.append(Sighting(lo, lo, "stream", ref))
        return self._first(cands, key=lambda s: s.end_ns)

    def first_certain_in(self, inc: Incarnation, state: str) -> Sighting | None:
        """Earliest sighting that certainly showed ``inc`` in ``state`` (not ``destroyed``)."""
        iv = inc.state_interval(state)
        if iv is None or iv[0] >= iv[1]:
            return None
        cands = list(self._first_each(inc, iv[0], iv[1], closed=False))
        if inc.lifecycle is CONTAINER:
            ref = self.stream_open(iv[0], certain=True)
            if ref is not None:
                cands.append(Sighting(iv[0], iv[0], "stream", ref))
        return self._first(cands, key=lambda s: s.end_ns)

    def seen(self, inc: Incarnation, state: str) -> Sighting | None:
        """Earliest sighting that possibly showed ``inc`` in ``state`` (ties count; streams too).

        ``destroyed`` is seen as *gone*: an OK list taken at or after the destroy time, a NOT_FOUND
        status for it, or an open stream at the destroy.
        """
        lc = inc.lifecycle
        iv = inc.state_interval(state)
        if iv is None:
            return None
        cands: list[Sighting] = []
        if state == "destroyed":
            ref = self.lists[lc.list_method].first_after(iv[0], strict=False)
            if ref is not None:
                cands.append(Sighting(ref[1].time_ns, ref[1].end_ns, "list", ref))  # type: ignore[union-attr]
            nf = self.notfound.get((lc.status_method, inc.id))
            if nf is not None:
                ref = nf.first_after(iv[0], strict=False)
                if ref is not None:
                    cands.append(Sighting(ref[1].time_ns, ref[1].end_ns, "status", ref))  # type: ignore[union-attr]
        else:
            cands.extend(self._first_each(inc, iv[0], iv[1], closed=True))
        ref = self.stream_open(iv[0], certain=False)
        if ref is not None:
            cands.append(Sighting(iv[0], iv[0], "stream", ref))
        return self._first(cands)

    def first_report(self, inc: Incarnation, transition: str, by_end_ns: int) -> Sighting | None:
        """Earliest certain answer that carried the runtime's own timestamp of ``transition`` and
        was sent by ``by_end_ns`` (so the sensor could have used it)."""
        sources = inc.lifecycle.reported.get(transition, ())
        t = inc.shown.get(transition, inc.times.get(transition))  # answers carry it once they show it
        if not sources or t is None:
            return None
        hi = min(inc.end_ns, by_end_ns + 1)
        for s in self._sightings(inc, t, hi, closed=False, sources=sources):
            if s.end_ns <= by_end_ns:
                return s
        return None


def _fault_windows(faults: list[Ref], end_ns: int) -> list[Fault]:
    open_: dict[str, Ref] = {}
    out: list[Fault] = []
    for ref in sorted(faults, key=lambda r: (r[1].time_ns, r[0])):
        rec: FaultWindow = ref[1]  # type: ignore[assignment]
        if rec.phase == "start":
            open_.setdefault(rec.fault, ref)
        elif rec.phase == "stop" and rec.fault in open_:
            start = open_.pop(rec.fault)
            out.append(Fault(rec.fault, start[1].time_ns, rec.time_ns))
    for name, start in open_.items():
        out.append(Fault(name, start[1].time_ns, max(end_ns, start[1].time_ns)))
    return out


def _outages(lists: list[Ref], connects: list[Ref], runtime: list[Ref], log: RpcLog, end_ns: int) -> list[Outage]:
    raw: list[Outage] = []
    down: Ref | None = None
    for ref in sorted(runtime, key=lambda r: (r[1].time_ns, r[0])):
        rec: RuntimeTransition = ref[1]  # type: ignore[assignment]
        if rec.transition == "down" and down is None:
            down = ref
        elif rec.transition == "up" and down is not None:
            raw.append(Outage(down[1].time_ns, rec.time_ns, [down, ref], runtime=True))
            down = None
    if down is not None:
        raw.append(Outage(down[1].time_ns, max(end_ns, down[1].time_ns), [down], runtime=True))

    # Failed reconnects (Version) join a run of failed lists, or start one after a runtime outage
    # with no OK list since: a lone failed Version between OK lists (a health check) blinds nobody.
    downs = sorted(r[1].time_ns for r in runtime if r[1].transition == "down")  # type: ignore[union-attr]
    ok_times = sorted(r[1].time_ns for r in lists if _code(r[1]) == OK)  # type: ignore[arg-type]

    def after_down(t: int) -> bool:
        i = bisect_right(downs, t) - 1
        return i >= 0 and bisect_right(ok_times, t) == bisect_right(ok_times, downs[i])

    calls = sorted([*lists, *(r for r in connects if _code(r[1]) != OK)], key=lambda r: (r[1].time_ns, r[0]))  # type: ignore[arg-type]
    run: list[Ref] = []
    for ref in [*calls, None]:
        if ref is not None and _code(ref[1]) != OK:  # type: ignore[arg-type]
            if run or ref[1].method in LIST_METHODS or after_down(ref[1].time_ns):  # type: ignore[union-attr]
                run.append(ref)
            continue
        if run:
            lo = run[0][1].time_ns
            hi = max(r[1].end_ns for r in run)  # type: ignore[union-attr]
            if ref is not None:
                hi = min(hi, ref[1].time_ns)
            raw.append(Outage(lo, max(lo, hi), list(run), failed_rpcs=True))
            run = []

    raw.sort(key=lambda o: (o.lo, o.hi))
    merged: list[Outage] = []
    for o in raw:
        if merged and o.lo <= merged[-1].hi:
            m = merged[-1]
            m.hi = max(m.hi, o.hi)
            m.records.extend(o.records)
            m.runtime |= o.runtime
            m.failed_rpcs |= o.failed_rpcs
        else:
            merged.append(o)
    for o in merged:
        if not o.failed_rpcs and log.failed_between(o.lo, o.hi):
            o.failed_rpcs = True
    return merged
