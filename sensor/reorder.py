"""Reorder: hold events for a while and release them in ``time_ns`` order (the analytics stage's first half).

Theory of operation
-------------------
Sans-IO: the caller pushes items with the current time and asks what is due; nothing here reads
a clock, sleeps or blocks. An *item* is anything with an int ``time_ns``: a lifecycle
``sensor.events.Event`` or a ``sensor.process.ProcessEvent``. What comes out is a ``Released``
wrapper -- ``(item, late, forced, released_ns)`` -- so items are never copied or mutated::

    out = buf.push(item, now_ns)       # usually (): only a late or overflowed item comes out at once
    out = buf.push_many(items, now_ns) # the same for a batch (one poll's events)
    out = buf.advance(now_ns)          # everything due at now_ns, in (time_ns, arrival) order
    out = buf.flush(now_ns)            # shutdown: everything still held

The buffer's *clock* is the largest ``now_ns`` it was given (a smaller one is read as the clock:
time does not go back). Items are ordered by ``(time_ns, arrival)``: ties keep arrival order.

Rule 1 -- fixed window (``ReorderBuffer``). An item is *due* at ``time_ns + window_ns``: ``advance``
releases every held item with ``time_ns + window_ns <= now_ns``. An item whose slot has passed
when it arrives -- ``time_ns + window_ns < clock`` -- is *late*: released at once by ``push``,
``late=True``. Since every in-order release so far had ``time_ns + window_ns <= clock``, an item
that is not late sorts after all of them (ties: it arrived later), so the in-order releases form one
sorted sequence. Corollary (the hypothesis property): if every item arrives within the window of
its time (``arrival_ns - time_ns <= window_ns``), nothing is late and the output is sorted,
complete and exactly once.

Rule 2 -- watermark (``WatermarkReorder``). Each registered source reports *progress* ``P``: every
item it will ever deliver with ``time_ns <= P`` has been delivered. The watermark is the smallest
progress over all sources; ``advance`` releases every held item with ``time_ns <= watermark`` -- as
soon as every source has passed it, not a fixed time later. A safety cap, ``max_delay_ns``, bounds
the wait for a stuck source: an item still held at ``time_ns + max_delay_ns`` is released anyway,
``forced=True``. An item is late when it arrives with ``time_ns < max(watermark, clock -
max_delay_ns)``: a source broke its promise (or, for polling, a forged event's time reaches back
before the poll that found it). Ties at the watermark are not late: they still sort after what was
released.

Rule 3 -- nothing is dropped, memory is bounded. At most ``max_events`` items are held. Pushing one
more releases the oldest held item (smallest ``(time_ns, arrival)``, possibly the new one) at once
with ``forced=True``, counts it in ``stats["overflow"]`` and calls ``on_overflow(released)`` (hook
for a Prometheus counter). A forced item was released before its slot, so later in-order items may
sort before it; ``late`` stays reserved for items that arrived after their slot, and forced
releases never move the late threshold.

Cost: per item, one ``heapq`` push and pop of an int key ``(time_ns << 64) | arrival`` (O(log
held); int comparisons, and no GC-tracked tuple per held item), one dict insert and pop (key ->
item), and one ``Released``. The counters are derived (``pushed`` is the arrival counter), so the
hot path updates no statistics. ``bench/bench_reorder.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from heapq import heappop, heappush, heappushpop
from typing import Any, NamedTuple, Protocol

__all__ = ["DEFAULT_MAX_DELAY_NS", "DEFAULT_MAX_EVENTS", "Released", "ReorderBuffer", "Timed", "WatermarkReorder"]

DEFAULT_MAX_EVENTS = 1_000_000
#: Watermark mode's default safety cap: a stuck source delays an item by at most 1 s.
DEFAULT_MAX_DELAY_NS = 1_000_000_000

#: A held item's key is ``(time_ns << _SEQ_BITS) | arrival``: one int orders by (time, arrival), and
#: int comparisons in the heap are ~2x cheaper than tuple ones (and ints are not GC-tracked).
_SEQ_BITS = 64
_NEVER = -(1 << 62)  # "minus infinity" as an int: int-to-int comparisons stay fast
_FOREVER = 1 << 62


class Timed(Protocol):
    """What the buffers hold: anything with an int ``time_ns``."""

    @property
    def time_ns(self) -> int: ...


class Released(NamedTuple):
    """One released item. ``late``: it arrived after its slot; ``forced``: released before its slot
    (overflow, the watermark's ``max_delay_ns`` cap, or ``flush``). A NamedTuple because it is built
    once per event on the hot path (a frozen dataclass costs ~4x more)."""

    item: Any
    late: bool
    forced: bool
    released_ns: int

    @property
    def time_ns(self) -> int:
        return self.item.time_ns

    def to_dict(self) -> dict[str, Any]:
        """The item's own JSON form (``item.to_dict()``) plus ``late``, ``forced``, ``released_ns``."""
        d = self.item.to_dict()
        d["late"] = self.late
        d["forced"] = self.forced
        d["released_ns"] = self.released_ns
        return d


_new = tuple.__new__  # Released(...) without the NamedTuple __new__ wrapper: ~2x faster
_EMPTY: tuple[Released, ...] = ()

OnRelease = Callable[[Released], None]


class _Reorder:
    """Shared machinery: the heap, the late threshold, overflow and the counters."""

    # Set by subclasses: items with time_ns < _late_before are late. It is max(_wm, clock - _lag).
    _wm: int
    _lag: int

    def __init__(self, max_events: int, on_overflow: OnRelease | None, on_late: OnRelease | None) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1 (got {max_events})")
        self._heap: list[int] = []  # keys: (time_ns << _SEQ_BITS) | arrival
        self._items: dict[int, Any] = {}  # key -> item
        self._max = max_events
        self._on_overflow = on_overflow
        self._on_late = on_late
        self._now = _NEVER
        self._late_before = _NEVER
        self._seq = 0  # items that entered the heap (arrival counter)
        self._late_n = 0
        self._overflow_n = 0
        self._capped_n = 0
        self._flushed_n = 0
        self._max_held = 0

    # --- clock ---------------------------------------------------------------------------------

    def _set_clock(self, now_ns: int) -> None:
        if now_ns > self._now:
            self._now = now_ns
        lb = self._now - self._lag
        self._late_before = lb if lb > self._wm else self._wm

    @property
    def now_ns(self) -> int | None:
        """The buffer's clock: the largest ``now_ns`` given so far (None before any)."""
        return None if self._now == _NEVER else self._now

    # --- input ---------------------------------------------------------------------------------

    def push(self, item: Timed, now_ns: int) -> Sequence[Released]:
        """Hold ``item``; returns what this push releases at once (``()`` unless late or overflow)."""
        if now_ns > self._now:
            self._now = now_ns
            lb = now_ns - self._lag
            self._late_before = lb if lb > self._wm else self._wm
        t = item.time_ns
        if t < self._late_before:
            return [self._late(item)]
        key = (t << _SEQ_BITS) | self._seq
        self._seq += 1
        self._items[key] = item
        if len(self._heap) >= self._max:
            return [self._overflow(self._items.pop(heappushpop(self._heap, key)))]
        heappush(self._heap, key)
        return _EMPTY

    def push_many(self, items: Iterable[Timed], now_ns: int) -> list[Released]:
        """``push`` each item (in order) at ``now_ns``; returns what they release at once."""
        self._set_clock(now_ns)
        late_before = self._late_before
        heap = self._heap
        held = self._items
        seq = self._seq
        room = self._max - len(heap)
        out: list[Released] = []
        for item in items:
            t = item.time_ns
            if t < late_before:
                out.append(self._late(item))
                continue
            key = (t << _SEQ_BITS) | seq
            seq += 1
            held[key] = item
            if room > 0:
                heappush(heap, key)
                room -= 1
            else:
                out.append(self._overflow(held.pop(heappushpop(heap, key))))
        self._seq = seq
        return out

    def _late(self, item: Any) -> Released:
        self._late_n += 1
        r = _new(Released, (item, True, False, self._now))
        if self._on_late is not None:
            self._on_late(r)
        return r

    def _overflow(self, item: Any) -> Released:
        self._overflow_n += 1
        r = _new(Released, (item, False, True, self._now))
        if self._on_overflow is not None:
            self._on_overflow(r)
        return r

    # --- output --------------------------------------------------------------------------------

    def _pop_items(self, bound: int) -> list[Any]:
        """Take, in order, every held item with ``time_ns <= bound``."""
        heap = self._heap
        take = self._items.pop
        out: list[Any] = []
        append = out.append
        limit = (bound + 1) << _SEQ_BITS  # key < limit  <=>  time_ns <= bound
        while heap and heap[0] < limit:
            append(take(heappop(heap)))
        return out

    def take_due(self, now_ns: int) -> tuple[list[Any], list[Any]]:
        """``advance`` without the wrappers, for callers that wrap items themselves (the analytics
        stage): ``(in_order, forced)`` item lists, each in ``(time_ns, arrival)`` order, released at
        ``now_ns`` (the clock after the call)."""
        raise NotImplementedError  # pragma: no cover - overridden

    def advance(self, now_ns: int) -> list[Released]:
        """Release what is due at ``now_ns``: in-order items, then (watermark cap) forced ones."""
        in_order, forced = self.take_due(now_ns)
        now = self._now
        out = [_new(Released, (it, False, False, now)) for it in in_order]
        if forced:
            out += [_new(Released, (it, False, True, now)) for it in forced]
        return out

    def flush(self, now_ns: int) -> list[Released]:
        """Release everything: what is due as usual, the rest in order with ``forced=True``."""
        out = self.advance(now_ns)
        rest = self._pop_items(_FOREVER)
        self._flushed_n += len(rest)
        now = self._now
        out += [_new(Released, (it, False, True, now)) for it in rest]
        return out

    # --- introspection -------------------------------------------------------------------------

    def __len__(self) -> int:
        """Items held now."""
        return len(self._heap)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since creation (a fresh dict; cheap, nothing is counted on the hot path).

        ``pushed = released + held``; ``forced = overflow + capped + flushed``."""
        held = len(self._heap)
        pushed = self._seq + self._late_n
        forced = self._overflow_n + self._capped_n + self._flushed_n
        return {
            "pushed": pushed,
            "released": pushed - held,
            "held": held,
            "max_held": max(self._max_held, held),
            "late": self._late_n,
            "forced": forced,
            "overflow": self._overflow_n,
            "capped": self._capped_n,
            "flushed": self._flushed_n,
        }


class ReorderBuffer(_Reorder):
    """Fixed ``event_reorder_window``: an item is released at ``time_ns + window_ns`` (module docstring)."""

    def __init__(
        self,
        window_ns: int,
        max_events: int = DEFAULT_MAX_EVENTS,
        on_overflow: OnRelease | None = None,
        *,
        on_late: OnRelease | None = None,
    ) -> None:
        if window_ns < 0:
            raise ValueError(f"window_ns must be >= 0 (got {window_ns})")
        super().__init__(max_events, on_overflow, on_late)
        self.window_ns = window_ns
        self._wm = _NEVER
        self._lag = window_ns

    def take_due(self, now_ns: int) -> tuple[list[Any], list[Any]]:
        """Every held item with ``time_ns + window_ns <= now_ns``, in order (nothing is forced)."""
        self._set_clock(now_ns)
        if len(self._heap) > self._max_held:
            self._max_held = len(self._heap)
        return self._pop_items(self._now - self._lag), []

    def next_release_ns(self) -> int | None:
        """When ``advance`` will next release something (None: nothing held). For the caller's timer."""
        return (self._heap[0] >> _SEQ_BITS) + self._lag if self._heap else None


class WatermarkReorder(_Reorder):
    """Release an item as soon as every registered source has progressed past its time (module docstring).

    ``sources``: the names of the sources that must pass an item's time (e.g. ``"poll"``,
    ``"stream"``, ``"process"``); each starts with no progress. With no source registered nothing
    is released by the watermark, only by the cap. ``max_delay_ns=None`` disables the cap.
    """

    def __init__(
        self,
        sources: Iterable[str],
        max_delay_ns: int | None = DEFAULT_MAX_DELAY_NS,
        max_events: int = DEFAULT_MAX_EVENTS,
        on_overflow: OnRelease | None = None,
        *,
        on_late: OnRelease | None = None,
    ) -> None:
        if max_delay_ns is not None and max_delay_ns < 0:
            raise ValueError(f"max_delay_ns must be >= 0 or None (got {max_delay_ns})")
        super().__init__(max_events, on_overflow, on_late)
        self.max_delay_ns = max_delay_ns
        self._lag = _FOREVER if max_delay_ns is None else max_delay_ns
        self._wm = _NEVER
        self._progress: dict[str, int] = {}
        for name in sources:
            self.register(name)

    @property
    def sources(self) -> dict[str, int | None]:
        """Each registered source's progress (None: not reported yet)."""
        return {k: (None if v == _NEVER else v) for k, v in self._progress.items()}

    @property
    def watermark_ns(self) -> int | None:
        """The smallest progress over all sources (None until every source has reported). It never
        goes back: a source registered later holds it where it is until it catches up."""
        return None if self._wm == _NEVER else self._wm

    def register(self, source: str, progress_ns: int | None = None) -> None:
        """Add a source (e.g. a stream that just opened); it holds the watermark until it reports."""
        if source in self._progress:
            raise ValueError(f"source {source!r} is already registered")
        self._progress[source] = _NEVER if progress_ns is None else progress_ns
        self._recompute()

    def unregister(self, source: str) -> None:
        """Remove a source (e.g. a stream that ended); the watermark may jump forward."""
        self._known(source)
        del self._progress[source]
        self._recompute()

    def progress(self, source: str, t_ns: int) -> None:
        """``source`` has delivered every item with ``time_ns <= t_ns``. Progress never goes back:
        a smaller ``t_ns`` than already reported is ignored. Call ``advance`` to collect releases."""
        self._known(source)
        if t_ns > self._progress[source]:
            self._progress[source] = t_ns
            self._recompute()

    def _known(self, source: str) -> None:
        if source not in self._progress:
            raise KeyError(f"unknown source {source!r} (registered: {sorted(self._progress)})")

    def _recompute(self) -> None:
        wm = min(self._progress.values()) if self._progress else _NEVER
        # The watermark never goes back either (a source registered late cannot un-release items).
        if wm > self._wm:
            self._wm = wm
        self._set_clock(self._now)

    def take_due(self, now_ns: int) -> tuple[list[Any], list[Any]]:
        """Every held item with ``time_ns <= watermark``, in order; then, forced, every item held
        for ``max_delay_ns`` past its time."""
        self._set_clock(now_ns)
        if len(self._heap) > self._max_held:
            self._max_held = len(self._heap)
        in_order = self._pop_items(self._wm)
        forced = self._pop_items(self._now - self._lag)
        self._capped_n += len(forced)
        return in_order, forced

    def next_release_ns(self) -> int | None:
        """When the cap will force the next release (None: nothing held or no cap). Progress may
        release earlier."""
        if not self._heap or self.max_delay_ns is None:
            return None
        return (self._heap[0] >> _SEQ_BITS) + self._lag
