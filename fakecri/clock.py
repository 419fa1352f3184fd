"""Clocks: every core takes one of these instead of reading the time itself.

CRI timestamps are wall-clock nanoseconds since the Unix epoch, so a clock here hands out
wall-clock ns. ``RealClock`` is for ``fakecri serve``; ``VirtualClock`` is advanced explicitly by
tests, which makes whole timelines run instantly and deterministically.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

#: Where virtual time starts: 2023-11-14T22:13:20Z. Fixed so that runs are byte-for-byte repeatable.
VIRTUAL_EPOCH_NS = 1_700_000_000_000_000_000


class Clock(Protocol):
    def now_ns(self) -> int:
        """Current wall-clock time in ns since the Unix epoch."""
        ...


class RealClock:
    """The machine's wall clock."""

    def now_ns(self) -> int:
        return time.time_ns()


class VirtualClock:
    """A clock that only moves when told to. Thread-safe: gRPC handlers read it from other threads."""

    def __init__(self, start_ns: int = VIRTUAL_EPOCH_NS) -> None:
        self._now = start_ns
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._now

    def advance(self, delta_ns: int) -> int:
        """Move forward by ``delta_ns`` (>= 0) and return the new time."""
        if delta_ns < 0:
            raise ValueError(f"virtual time cannot go backwards (advance by {delta_ns} ns)")
        with self._lock:
            self._now += delta_ns
            return self._now

    def set(self, t_ns: int) -> None:
        """Jump to ``t_ns``, which must not be in the past."""
        with self._lock:
            if t_ns < self._now:
                raise ValueError(f"virtual time cannot go backwards ({t_ns} < {self._now})")
            self._now = t_ns
