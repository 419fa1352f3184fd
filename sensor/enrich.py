"""Enrichment: process events get the metadata of their container as of their own time.

Theory of operation
-------------------
Sans-IO like the rest of the analytics stage: lifecycle events and process events in, values out.

Rule 1 -- incarnations. A container ID can be reused, so the ``Enricher`` keeps, per ID, a list of
*incarnations* sorted by start, each ``[start_ns, end_ns]`` with the container's metadata
(``ContainerMeta``: sandbox_id, name, attempt, image, image_ref, labels, pod):

* ``container.created`` at ``t`` starts an incarnation at ``t`` (an older one still open is
  closed at ``t``: the ID was reused without its ``destroyed`` reaching us);
* ``container.destroyed`` at ``t`` ends the incarnation alive at ``t``, at the upper bound of the
  event's window (a process event proves the container existed; the end may be an estimate);
* ``container.running``/``exited`` for an ID with no incarnation alive at ``t`` start a
  *provisional* one at ``t`` (the stage started mid-stream, or ``created`` was lost); a later
  ``created`` at ``t' <= t`` adopts it and moves its start back to ``t'``. They also fill a pod
  the ``created`` lacked (its sandbox was not known yet).

Every container event carries the metadata (DESIGN.md section 4), so whichever arrives first
is enough. Sandbox and sensor events are ignored.

Rule 2 -- as-of lookups. ``lookup(id, t)`` is the incarnation with the latest start ``<= t``, if
``t <= end`` (both ends inclusive). ``enrich`` turns a ``sensor.process.ProcessEvent`` into an
``EnrichedProcess``; when no incarnation fits, it is flagged ``enriched=False`` with
``why_unenriched`` -- never dropped:

* ``"unknown container"``: no incarnation of this ID is known: the container's ``created`` has
  not been applied yet (a reorder window shorter than its lateness), it was forgotten (Rule 3),
  or the ID never was a container;
* ``"container not yet seen at event time"``: the ID is known, but only from incarnations that
  started after the event (e.g. the event predates a reused ID's newer incarnation);
* ``"container destroyed before event time"``: the latest incarnation started before the event
  ended before it too, and no newer one is known (yet).

Rule 3 -- bounded memory. An ended incarnation is forgotten once the enricher's *horizon* -- the
largest ``time_ns`` of any lifecycle event applied -- is more than ``retention_ns`` past its end
(default 10 s, far longer than any reorder window; event time, not wall time, so that replays are
deterministic). Memory is then bounded by the containers alive plus those ended within
``retention_ns``; every container seen gets its ``destroyed`` (guarantee G2).

``AnalyticsStage`` wires a reorder buffer to an enricher: lifecycle events update the enricher
when the buffer RELEASES them, and process events are enriched when released. That is the point
of the window: a process event whose container's ``created`` arrives later than the window
allows is released first and comes out unenriched. ``docs/analytics.md`` has the output format.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sensor.events import Event, Pod
from sensor.process import PROCESS_EXEC, ProcessEvent
from sensor.reorder import Released, ReorderBuffer, Timed, WatermarkReorder

__all__ = [
    "DEFAULT_RETENTION_NS",
    "ENRICHMENT_HOST",
    "ENRICHMENT_LATE",
    "ENRICHMENT_OK",
    "ENRICHMENT_UNKNOWN",
    "PROCESS_SCHEMA_VERSION",
    "WHY_DESTROYED_BEFORE",
    "WHY_NOT_YET_SEEN",
    "WHY_UNENRICHED",
    "WHY_UNKNOWN_CONTAINER",
    "AnalyticsStage",
    "ContainerMeta",
    "EnrichedProcess",
    "Enricher",
    "NoHistory",
    "exec_record",
]

#: Ended incarnations are kept this long (event time) for late process events: 10 s.
DEFAULT_RETENTION_NS = 10_000_000_000
#: ``v`` of a ``process.exec`` object (docs/analytics.md).
PROCESS_SCHEMA_VERSION = 1

WHY_UNKNOWN_CONTAINER = "unknown container"
WHY_NOT_YET_SEEN = "container not yet seen at event time"
WHY_DESTROYED_BEFORE = "container destroyed before event time"
WHY_UNENRICHED = (WHY_UNKNOWN_CONTAINER, WHY_NOT_YET_SEEN, WHY_DESTROYED_BEFORE)
#: ``enrichment`` of a ``process.exec`` (DESIGN.md section 4): found; not found when the window
#: closed; not found and the exec itself reached the stage after its window had closed.
ENRICHMENT_OK = "ok"
ENRICHMENT_UNKNOWN = "unknown-container"
ENRICHMENT_LATE = "late"
#: ``enrichment`` of a host process's exec (``crisensor.processes_scope: all``): nothing to enrich.
ENRICHMENT_HOST = "host"
#: ``why`` prefix of a late exec: the window could not help it.
WHY_LATE_EXEC = "the exec reached the analytics stage after its window had closed"


def exec_record(released: Released) -> dict[str, Any]:
    """The ``process.exec`` JSON object of one released process event, as ``crisensor run`` writes
    it: ``enrichment`` is ``late`` when the exec came too late for the window to help it."""
    d = released.to_dict()
    if released.late and d["enrichment"] == ENRICHMENT_UNKNOWN:
        d["enrichment"] = ENRICHMENT_LATE
        d["why"] = f"{WHY_LATE_EXEC}; {d['why']}"
    return d

_new = tuple.__new__
_OPEN = 1 << 62  # end_ns of an incarnation not ended: beyond any time (int compare, no None test)


class ContainerMeta(NamedTuple):
    """A container incarnation's metadata, as its lifecycle events reported it. A NamedTuple (not a
    frozen dataclass) because one is built per ``created``: ~4x cheaper, and just as immutable."""

    container_id: str
    sandbox_id: str | None = None
    name: str | None = None
    attempt: int | None = None
    image: str | None = None
    image_ref: str | None = None
    labels: dict[str, str] | None = None
    pod: Pod | None = None

    @classmethod
    def from_event(cls, ev: Event) -> ContainerMeta:
        return _new(cls, (ev.container_id or "", ev.sandbox_id, ev.name, ev.attempt, ev.image, ev.image_ref,
                          ev.labels, ev.pod))


class EnrichedProcess(NamedTuple):
    """A process event plus its container's metadata as of ``process.time_ns`` (``container`` is
    None and ``why_unenriched`` says why when there is none). A NamedTuple: built once per event."""

    process: ProcessEvent
    container: ContainerMeta | None
    why_unenriched: str | None

    @property
    def enriched(self) -> bool:
        return self.container is not None

    @property
    def time_ns(self) -> int:
        return self.process.time_ns

    @property
    def container_id(self) -> str:
        return self.process.container_id

    @property
    def name(self) -> str | None:
        return None if self.container is None else self.container.name

    @property
    def image(self) -> str | None:
        return None if self.container is None else self.container.image

    @property
    def pod(self) -> Pod | None:
        return None if self.container is None else self.container.pod

    @property
    def labels(self) -> dict[str, str]:
        c = self.container
        return {} if c is None or c.labels is None else c.labels

    def to_dict(self) -> dict[str, Any]:
        """The documented ``process.exec`` object (docs/analytics.md); JSON-able."""
        p = self.process
        c = self.container
        pod = None if c is None else c.pod
        return {
            "v": PROCESS_SCHEMA_VERSION,
            "type": PROCESS_EXEC,
            "container_id": p.container_id,
            "time_ns": p.time_ns,
            "observed_ns": p.observed_ns,
            "pid": p.pid,
            "ppid": p.ppid,
            "argv": list(p.argv),
            "exe": p.exe,
            "enrichment": ENRICHMENT_OK if c is not None else ENRICHMENT_HOST if p.container_id is None
            else ENRICHMENT_UNKNOWN,
            "why": None if p.container_id is None else self.why_unenriched,
            "sandbox_id": None if c is None else c.sandbox_id,
            "name": None if c is None else c.name,
            "attempt": None if c is None else c.attempt,
            "image": None if c is None else c.image,
            "image_ref": None if c is None else c.image_ref,
            "labels": {} if c is None or c.labels is None else dict(c.labels),
            "pod": None if pod is None else {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        }


class _Incarnation:
    __slots__ = ("end_ns", "meta", "provisional", "start_ns")

    def __init__(self, start_ns: int, meta: ContainerMeta, provisional: bool) -> None:
        self.start_ns = start_ns
        self.end_ns = _OPEN  # not ended (yet): alive at any t >= start_ns
        self.meta = meta
        self.provisional = provisional


class Enricher:
    """Container metadata history from lifecycle events; as-of lookups (module docstring)."""

    def __init__(self, retention_ns: int = DEFAULT_RETENTION_NS) -> None:
        if retention_ns < 0:
            raise ValueError(f"retention_ns must be >= 0 (got {retention_ns})")
        self.retention_ns = retention_ns
        self._by_id: dict[str, list[_Incarnation]] = {}
        self._expiry: list[tuple[int, int, str, _Incarnation]] = []  # heap (end_ns, n, id, incarnation)
        self._n = 0
        self._horizon = -(1 << 62)
        self._applied = 0
        self._enriched = 0
        self._unenriched: dict[str, int] = dict.fromkeys(WHY_UNENRICHED, 0)
        self._expired = 0

    # --- lifecycle events ----------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Update the history with one lifecycle event (non-container events are ignored)."""
        cid = event.container_id
        if cid is None or not event.type.startswith("container."):
            return
        self._applied += 1
        t = event.time_ns
        typ = event.type
        if typ == "container.created":
            self._created(cid, t, event)
        elif typ == "container.destroyed":
            self._destroyed(cid, t, max(t, event.window_ns[1]))
        else:
            self._seen(cid, t, event)
        if t > self._horizon:
            self._horizon = t
            if self._expiry and self._expiry[0][0] < t - self.retention_ns:
                self.expire(t)

    def _created(self, cid: str, t: int, ev: Event) -> None:
        incs = self._by_id.get(cid)
        meta = ContainerMeta.from_event(ev)
        if incs is None:
            self._by_id[cid] = [_Incarnation(t, meta, False)]
            return
        i = len(incs)
        while i > 0 and incs[i - 1].start_ns > t:  # incs[:i] start <= t < incs[i:]
            i -= 1
        if i > 0 and incs[i - 1].start_ns == t:  # the same created again: keep the first, fill gaps
            self._fill(incs[i - 1], meta)
            return
        if i < len(incs) and incs[i].provisional and (i == 0 or _ended_by(incs[i - 1], t)):
            inc = incs[i]  # adopt the provisional incarnation that running/exited opened
            inc.start_ns, inc.meta, inc.provisional = t, meta, False
            return
        inc = _Incarnation(t, meta, False)
        if i > 0 and incs[i - 1].end_ns == _OPEN:
            self._close(cid, incs[i - 1], t)  # reused without a destroyed in between
        if i < len(incs):
            self._close(cid, inc, incs[i].start_ns)  # a late created of an older incarnation
        incs.insert(i, inc)

    def _destroyed(self, cid: str, t: int, hi: int) -> None:
        """End the incarnation alive at ``t`` -- at ``hi``, the window's upper bound: a process
        event inside the container proves it still existed then, and a forged end's ``t`` is
        only an estimate. A successor incarnation's start still bounds it."""
        inc = self._at_or_before(cid, t)
        if inc is not None:
            later = [x.start_ns for x in self._by_id[cid] if x.start_ns > inc.start_ns]
            self._close(cid, inc, min([hi, *later]))

    def _seen(self, cid: str, t: int, ev: Event) -> None:
        inc = self._at_or_before(cid, t)
        if inc is not None and t <= inc.end_ns:
            if inc.meta.pod is None and ev.pod is not None:
                self._fill(inc, ContainerMeta.from_event(ev))
            return
        incs = self._by_id.setdefault(cid, [])
        i = len(incs)
        while i > 0 and incs[i - 1].start_ns > t:
            i -= 1
        new = _Incarnation(t, ContainerMeta.from_event(ev), True)
        if i < len(incs):
            self._close(cid, new, incs[i].start_ns)
        incs.insert(i, new)

    def _at_or_before(self, cid: str, t: int) -> _Incarnation | None:
        incs = self._by_id.get(cid)
        if incs:
            if incs[-1].start_ns <= t:
                return incs[-1]
            for inc in reversed(incs):
                if inc.start_ns <= t:
                    return inc
        return None

    @staticmethod
    def _fill(inc: _Incarnation, meta: ContainerMeta) -> None:
        if inc.meta.pod is None and meta.pod is not None:
            inc.meta = meta

    def _close(self, cid: str, inc: _Incarnation, t: int) -> None:
        inc.end_ns = min(inc.end_ns, t)
        n = self._n
        self._n = n + 1
        heapq.heappush(self._expiry, (t, n, cid, inc))

    def expire(self, now_ns: int) -> int:
        """Forget incarnations that ended before ``now_ns - retention_ns``; returns how many.
        ``apply`` calls this itself as its horizon moves."""
        bound = now_ns - self.retention_ns
        heap = self._expiry
        n = 0
        while heap and heap[0][0] < bound:
            _, _, cid, inc = heapq.heappop(heap)
            incs = self._by_id.get(cid)
            if incs is None or inc.end_ns >= bound:
                continue
            for i, x in enumerate(incs):
                if x is inc:
                    del incs[i]
                    n += 1
                    break
            if not incs:
                del self._by_id[cid]
        self._expired += n
        return n

    # --- lookups -------------------------------------------------------------------------------

    def lookup(self, container_id: str, time_ns: int) -> ContainerMeta | None:
        """The metadata of the incarnation of ``container_id`` alive at ``time_ns``, if known."""
        return self._resolve(container_id, time_ns)[0]

    def _resolve(self, cid: str, t: int) -> tuple[ContainerMeta | None, str | None]:
        incs = self._by_id.get(cid)
        if not incs:
            return None, WHY_UNKNOWN_CONTAINER
        for inc in reversed(incs):
            if inc.start_ns <= t:
                if t <= inc.end_ns:
                    return inc.meta, None
                return None, WHY_DESTROYED_BEFORE
        return None, WHY_NOT_YET_SEEN

    def enrich(self, process: ProcessEvent) -> EnrichedProcess:
        """``process`` with its container's metadata as of ``process.time_ns``, or flagged."""
        incs = self._by_id.get(process.container_id)
        if incs:
            inc = incs[-1]  # fast path: the newest incarnation, alive at the event's time
            t = process.time_ns
            if inc.start_ns <= t <= inc.end_ns:
                self._enriched += 1
                return _new(EnrichedProcess, (process, inc.meta, None))
        meta, why = self._resolve(process.container_id, process.time_ns)
        if meta is not None:
            self._enriched += 1
            return _new(EnrichedProcess, (process, meta, None))
        self._unenriched[why] += 1  # type: ignore[index]
        return _new(EnrichedProcess, (process, None, why))

    # --- introspection -------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: ``containers`` (IDs known), ``incarnations`` (held), ``applied`` (container
        events), ``enriched``, ``unenriched`` (total) and ``unenriched_by_why``, ``expired``."""
        return {
            "containers": len(self._by_id),
            "incarnations": sum(len(v) for v in self._by_id.values()),
            "applied": self._applied,
            "enriched": self._enriched,
            "unenriched": sum(self._unenriched.values()),
            "unenriched_by_why": dict(self._unenriched),
            "expired": self._expired,
        }


class NoHistory(Enricher):
    """The enricher of a stage no process event reaches (``crisensor run`` without a process
    source): it keeps no history. Under 1,000 lifecycles a second the history cost ~5% of a churning
    poll's work, and it held every ended incarnation for ``retention_ns`` (~10,000 of them at 10 s)
    for nobody. A process event pushed anyway is released unenriched (``unknown_container``)."""

    def apply(self, event: Event) -> None:
        """Nothing is kept."""


def _ended_by(inc: _Incarnation, t: int) -> bool:
    return inc.end_ns <= t


class AnalyticsStage:
    """A reorder buffer feeding an enricher (module docstring). Every call returns ``Released``
    values in release order: lifecycle ``Event``s as they were, process events as
    ``EnrichedProcess``; ``released.to_dict()`` is the documented JSON object."""

    def __init__(self, reorder: ReorderBuffer | WatermarkReorder, enricher: Enricher | None = None) -> None:
        self.reorder = reorder
        self.enricher = Enricher() if enricher is None else enricher

    def push(self, item: Timed, now_ns: int) -> list[Released]:
        """Push a lifecycle event or process event; returns what comes out at once (late, overflow)."""
        out = self.reorder.push(item, now_ns)
        return self._rewrap(out) if out else []

    def push_many(self, items: Iterable[Timed], now_ns: int) -> list[Released]:
        """Push a batch (e.g. one poll's events, or one ``ProcessSource.poll``), in order."""
        out = self.reorder.push_many(items, now_ns)
        return self._rewrap(out) if out else out

    def advance(self, now_ns: int) -> list[Released]:
        """Everything due at ``now_ns``, lifecycle events applied and process events enriched in
        release order."""
        in_order, forced = self.reorder.take_due(now_ns)
        now = self.reorder.now_ns
        out = self._release(in_order, False, now) if in_order else in_order
        if forced:
            out += self._release(forced, True, now)
        return out

    def flush(self, now_ns: int) -> list[Released]:
        """Shutdown: release everything still held (``forced`` where before its slot)."""
        return self._rewrap(self.reorder.flush(now_ns))

    def progress(self, source: str, t_ns: int) -> None:
        """Watermark mode only: ``source`` has delivered everything up to ``t_ns``."""
        if not isinstance(self.reorder, WatermarkReorder):
            raise TypeError("progress() needs a WatermarkReorder; this stage has a fixed window")
        self.reorder.progress(source, t_ns)

    def _rewrap(self, released: Sequence[Released]) -> list[Released]:
        """The stage's view of already-wrapped releases (late, overflow, flush): the rare path."""
        out = []
        for r in released:
            item = r.item
            if type(item) is ProcessEvent:
                r = r._replace(item=self.enricher.enrich(item))
            elif type(item) is Event:
                self.enricher.apply(item)
            out.append(r)
        return out

    def _release(self, items: list[Any], forced: bool, now: int | None) -> list[Released]:
        """Wrap items released in order, applying and enriching as they go. The hot loop: it
        inlines ``Enricher.enrich``'s fast path (the newest incarnation, alive at the event's time)."""
        enricher = self.enricher
        by_id = enricher._by_id
        apply = enricher.apply
        enrich = enricher.enrich
        out: list[Released] = []
        append = out.append
        other = 0  # items that did not take the fast path (they count themselves)
        for item in items:
            cls = type(item)
            if cls is ProcessEvent:
                incs = by_id.get(item.container_id)
                if incs:
                    inc = incs[-1]
                    if inc.start_ns <= item.time_ns <= inc.end_ns:
                        append(_new(Released, (_new(EnrichedProcess, (item, inc.meta, None)), False, forced, now)))
                        continue
                append(_new(Released, (enrich(item), False, forced, now)))
            else:
                if cls is Event:
                    apply(item)
                append(_new(Released, (item, False, forced, now)))
            other += 1
        enricher._enriched += len(items) - other
        return out

    @property
    def stats(self) -> dict[str, Any]:
        return {"reorder": self.reorder.stats, "enrich": self.enricher.stats}
