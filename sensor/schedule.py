"""When the next poll starts: fixed-rate ticks that never queue, and never make a late poll wait.

Why a late tick starts at once: a poll's work grows with the stretch of time its list covers (what
churned meanwhile). A tick that ran past its slot used to wait for the next free slot, so the
following poll covered two intervals, took about twice as long, overran in turn, and a churning
node stayed in that regime for good (docs/performance.md, "Churn"). Starting the next tick at once
keeps each poll's stretch as short as the machine allows, and the schedule re-anchors on that
start, so on-time ticks stay exactly ``anchor + k * interval`` (no drift) and ticks never queue up
to catch up.

Pure: the caller passes the monotonic time (``sensor.poller.Poller.run`` is the shell).
"""

from __future__ import annotations


class Ticks:
    """The schedule of one poll loop. ``after(now)`` when a tick has ended; ``restart(now)`` when a
    tick starts out of schedule (the first, after an outage, after an idle streaming sleep)."""

    __slots__ = ("anchor", "interval", "k")

    def __init__(self, interval_s: float, now: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"a tick interval must be > 0 s, not {interval_s!r}")
        self.interval = interval_s
        self.anchor = now  #: when tick 0 of the current run of on-time ticks started
        self.k = 0  #: ticks started since the anchor

    def restart(self, now: float) -> None:
        """A tick starts now; the next ones follow at ``interval``."""
        self.anchor, self.k = now, 0

    def next_slot(self) -> float:
        """When the next tick is due if the current one ends in time."""
        return self.anchor + (self.k + 1) * self.interval

    def after(self, now: float) -> tuple[float, int]:
        """The current tick ended at ``now``: (seconds to wait before the next tick, slots it ran
        past). Ran past none: wait for the next slot. Ran past some: the next tick starts now
        (wait 0) and the schedule re-anchors on it."""
        due = self.next_slot()
        if now <= due:
            self.k += 1
            return due - now, 0
        missed = int((now - due) // self.interval) + 1
        self.restart(now)
        return 0.0, missed
