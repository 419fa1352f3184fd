"""Ask on a miss: when an exec names a container the sensor does not know yet, ask the runtime at once.

Theory of operation
-------------------
Without it, an exec at a container's start waits in the reorder window for the next poll to
announce its container, so the window must cover a poll interval. With it, the window only has to
cover one lookup: ``ListContainers`` filtered by the ID (it carries the sandbox ID, which
``ContainerStatus`` does not), ``ListPodSandbox`` filtered by that sandbox, and ``ContainerStatus``
for the exact times. What the lookup learns goes to the diff engine as an observation of the
container's current state (``DiffEngine.stream(..., source="lookup")``), so its lifecycle events
are emitted once (G1: the next poll finds it tracked) and say ``source: "lookup"``; a lookup that
finds nothing (the container is already gone) emits nothing (G5).

``LookupPlanner`` is the pure core: which IDs to ask about, and when. It is given every exec's
container ID (``want``) and whether the sensor already tracks it (``known``), and it promises:

* at most one lookup per ID per ``min_interval_ns`` (the poll interval): an ID still unknown after
  its lookup (not found) is not asked about again before the next poll could have shown it;
* at most ``max_queued`` IDs waiting; past that, IDs are dropped and counted, never queued without
  bound (a storm of execs in unknown cgroups cannot grow memory);
* an ID is queued once however many of its execs arrive meanwhile.

``LookupWorker`` is the shell: one thread owned by ``crisensor run`` that takes IDs from the
planner and calls ``lookup(cid)`` (the poller's, which holds the poll lock while it asks).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["LookupPlanner", "LookupWorker"]

log = logging.getLogger("crisensor")

#: IDs waiting for a lookup at most.
MAX_QUEUED = 64


class LookupPlanner:
    """See the module docstring. Not thread-safe by itself: ``LookupWorker`` holds a lock around it."""

    def __init__(self, min_interval_ns: int, *, max_queued: int = MAX_QUEUED) -> None:
        self.min_interval_ns = min_interval_ns
        self.max_queued = max_queued
        self._queue: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._last: dict[str, int] = {}  # cid -> when its last lookup was taken
        self.dropped = 0
        self.asked = 0

    def want(self, cid: str, known: bool, now_ns: int) -> bool:
        """An exec named ``cid``; True when a lookup of it was queued."""
        if known or cid in self._queue:
            return False
        last = self._last.get(cid)
        if last is not None and now_ns - last < self.min_interval_ns:
            return False
        if len(self._queue) >= self.max_queued:
            self.dropped += 1
            return False
        self._queue[cid] = None
        return True

    def take(self, now_ns: int) -> str | None:
        """The next ID to ask about (oldest first), or None."""
        if not self._queue:
            return None
        cid, _ = self._queue.popitem(last=False)
        self._last[cid] = now_ns
        self.asked += 1
        self._expire(now_ns)
        return cid

    def pending(self) -> int:
        return len(self._queue)

    def _expire(self, now_ns: int) -> None:
        """Forget rate-limit entries older than the interval (bounded memory)."""
        if len(self._last) > 4 * self.max_queued:
            horizon = now_ns - self.min_interval_ns
            for cid in [c for c, t in self._last.items() if t < horizon]:
                del self._last[cid]


class LookupWorker:
    """The thread that asks (module docstring). ``known(cid)`` says whether the sensor tracks it;
    ``lookup(cid)`` asks the runtime and applies the answer."""

    def __init__(self, planner: LookupPlanner, known: Callable[[str], bool], lookup: Callable[[str], object],
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self.planner = planner
        self.known = known
        self.lookup = lookup
        self.now_ns = now_ns
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self.rounds = 0  # times the thread woke up
        self._thread = threading.Thread(target=self._run, name="crisensor-lookup", daemon=True)

    def start(self) -> LookupWorker:
        self._thread.start()
        return self

    def want(self, cid: str) -> None:
        """Called for every exec in a container (the process source's reader thread)."""
        with self._lock:
            queued = self.planner.want(cid, self.known(cid), self.now_ns())
        if queued:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait()  # set by want() when it queued an ID, and by close(): no idle wake-ups
            self._wake.clear()
            self.rounds += 1
            while not self._stop:
                with self._lock:
                    cid = self.planner.take(self.now_ns())
                if cid is None:
                    break
                if self.known(cid):
                    continue  # a poll announced it meanwhile
                try:
                    self.lookup(cid)
                except Exception:  # a lookup must never end the sensor: the next poll catches up
                    log.debug("crisensor: lookup of %s failed", cid, exc_info=True)

    def close(self, timeout_s: float = 1.0) -> None:
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
