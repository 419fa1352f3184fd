"""Replaying a ground truth's process records as a ``sensor.process.ProcessSource`` (simulations).

``TruthProcessSource`` is the test and ``crisensor tune`` source: it replays the ``process``
records of a fakecri ground truth (``fakecri.truth.ProcessEvent``), delivering each one at its
``deliver_ns`` -- the scenario's configurable delivery delay -- and stamping ``observed_ns`` with
the ``now_ns`` of the poll that returned it. Its progress is exact (it knows every record it was
given), or, with ``delay_bound_ns``, the promise a real source would make: "nothing reaches me
later than ``delay_bound_ns`` after it happened". It lives on the fakecri side so that the sensor's
production path never imports fakecri.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from fakecri.truth import ProcessEvent as TruthProcess
from sensor.process import ProcessEvent

__all__ = ["TruthProcessSource"]


class TruthProcessSource:
    """Replays fakecri ``process`` truth records; each is delivered at its ``deliver_ns``.

    ``records`` may be any iterable of truth records (a ``fakecri.truth.Truth`` included); records
    of other kinds are ignored. ``feed`` adds records later, so ``truth.subscribe(source.feed)``
    follows a live recording. Exact progress assumes a record is fed no later than its
    ``time_ns`` (fakecri records a process event when it happens); a source that cannot promise
    that should be given ``delay_bound_ns``, and then progress is ``last poll - delay_bound_ns``.
    Before the first poll, progress is ``start_ns`` (default 0: nothing promised).
    """

    def __init__(self, records: Iterable[Any] = (), *, delay_bound_ns: int | None = None, start_ns: int = 0) -> None:
        if delay_bound_ns is not None and delay_bound_ns < 0:
            raise ValueError(f"delay_bound_ns must be >= 0 (got {delay_bound_ns})")
        self._delay_bound = delay_bound_ns
        self._by_deliver: list[tuple[int, int, TruthProcess]] = []  # heap (deliver_ns, n, record)
        self._by_time: list[tuple[int, int]] = []  # heap (time_ns, n) of undelivered records
        self._delivered: set[int] = set()  # n of delivered records still in _by_time (lazy deletion)
        self._n = 0
        self._last_poll_ns: int | None = None
        self._start_ns = start_ns
        self._progress = start_ns  # what progress_ns() last said: it never goes back
        for rec in records:
            self.feed(rec)

    def feed(self, record: Any) -> None:
        """Add one truth record (non-process records are ignored)."""
        if not isinstance(record, TruthProcess):
            return
        n = self._n
        self._n = n + 1
        heapq.heappush(self._by_deliver, (record.deliver_ns, n, record))
        heapq.heappush(self._by_time, (record.time_ns, n))

    def poll(self, now_ns: int) -> list[ProcessEvent]:
        if self._last_poll_ns is None or now_ns > self._last_poll_ns:
            self._last_poll_ns = now_ns
        out: list[ProcessEvent] = []
        heap = self._by_deliver
        while heap and heap[0][0] <= now_ns:
            _, n, rec = heapq.heappop(heap)
            self._delivered.add(n)
            out.append(ProcessEvent(rec.container_id, rec.time_ns, rec.pid, tuple(rec.argv), now_ns))
        by_time = self._by_time
        while by_time and by_time[0][1] in self._delivered:
            self._delivered.discard(heapq.heappop(by_time)[1])
        return out

    def progress_ns(self) -> int:
        last = self._last_poll_ns
        if last is None:
            return self._progress
        if self._delay_bound is not None:
            p = last - self._delay_bound
        elif self._by_time:
            p = min(last, self._by_time[0][0] - 1)
        else:
            p = last
        if p > self._progress:
            self._progress = p
        return self._progress

    def pending(self) -> int:
        """Records not delivered yet."""
        return len(self._by_deliver)
