"""The timeline runner: applies a plan's steps at their offsets, on a virtual or a real clock.

Theory of operation
-------------------
A ``Runner`` owns a cursor into a sorted step list and an ``apply(step)`` callback (the harness
supplies it; the runner knows nothing of models or sockets). Two drivers move the cursor:

* **virtual** (``advance_to``/``advance``/``run_to_end``): the caller's thread applies every due
  step in order, with the ``VirtualClock`` SET to the step's exact scheduled instant first, so
  every truth record carries exactly the scheduled time and a whole timeline runs instantly and
  repeatably. After the last due step the clock is set to the requested offset.
* **real time** (``start``): a thread owned by the runner sleeps until each step's instant
  (offset divided by ``speed``) and applies it. The runner measures the ground-truth timing
  lateness -- actual apply time minus scheduled time -- for every step (``jitter_ns``). Steps that
  fell due together (or while the runner was catching up) are applied back to back. With a
  ``backdate`` hook, a late step is applied inside ``backdate(step, instant)``, which may date it
  at its scheduled instant (the harness does so for model steps: ``RuntimeModel.backdated``); the
  ground truth's own timing error -- the instant used minus the scheduled one -- is then
  ``truth_jitter_ns``. ``stop`` ends the thread and waits for it; ``ended`` is set once the
  scenario's end has passed.

Offsets are ns since the scenario started; ``start_ns`` is that start on the clock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from fakecri.clock import Clock, VirtualClock

log = logging.getLogger("fakecri.timeline")


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


class Runner:
    def __init__(self, steps: Sequence[Any], apply: Callable[[Any], None], *, clock: Clock, start_ns: int,
                 end_ns: int, speed: float = 1.0,
                 backdate: Callable[[Any, int], AbstractContextManager[int]] | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, not {speed}")
        self.steps = list(steps)
        self.apply = apply
        self.clock = clock
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.speed = speed
        self.cursor = 0  #: index of the next step to apply
        self.jitter_ns: list[int] = []  #: real-time mode: actual - scheduled apply time, per step
        #: real-time mode: the instant a step's transitions were dated at - its scheduled instant
        self.truth_jitter_ns: list[int] = []
        self.backdate = backdate
        self.errors: list[tuple[Any, BaseException]] = []  #: real-time mode: steps that raised
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one driver at a time

    @property
    def done(self) -> bool:
        """True when every step has been applied."""
        return self.cursor >= len(self.steps)

    @property
    def next_at_ns(self) -> int | None:
        return self.steps[self.cursor].at_ns if not self.done else None

    @property
    def offset_ns(self) -> int:
        """Where the clock is, as an offset since the scenario started (unscaled by speed)."""
        return round((self.clock.now_ns() - self.start_ns) * self.speed)

    # ---- virtual time ------------------------------------------------------------------------

    def _virtual(self) -> VirtualClock:
        if not isinstance(self.clock, VirtualClock):
            raise RuntimeError("advance()/advance_to() need a virtual clock (this runner runs in real time)")
        return self.clock

    def advance_to(self, offset_ns: int) -> int:
        """Apply every step due at or before ``offset_ns``, each at its exact instant; then set the
        clock to ``offset_ns``. Returns how many steps were applied."""
        clock = self._virtual()
        target = self.start_ns + offset_ns
        if target < clock.now_ns():
            raise ValueError(f"cannot go back in time: offset {offset_ns} ns is before the clock "
                             f"({clock.now_ns() - self.start_ns} ns)")
        n = 0
        with self._lock:
            while not self.done and self.steps[self.cursor].at_ns <= offset_ns:
                step = self.steps[self.cursor]
                clock.set(self.start_ns + step.at_ns)
                self.cursor += 1
                self.apply(step)
                n += 1
            clock.set(target)
            if offset_ns >= self.end_ns and self.done:
                self.ended.set()
        return n

    def advance(self, delta_ns: int) -> int:
        return self.advance_to(self._virtual().now_ns() - self.start_ns + delta_ns)

    def run_to_end(self) -> int:
        return self.advance_to(max(self.end_ns, self._virtual().now_ns() - self.start_ns))

    # ---- real time ---------------------------------------------------------------------------

    def start(self) -> Runner:
        if self._thread is not None:
            raise RuntimeError("runner already started")
        self._stop.clear()
        t0 = time.monotonic_ns()
        self._thread = threading.Thread(target=self._run, args=(t0,), name="fakecri-timeline", daemon=True)
        self._thread.start()
        return self

    def _scheduled(self, t0_mono: int, offset_ns: int) -> int:
        return t0_mono + round(offset_ns / self.speed)

    def _run(self, t0_mono: int) -> None:
        while not self.done and not self._stop.is_set():
            step = self.steps[self.cursor]
            due = self._scheduled(t0_mono, step.at_ns)
            wait = due - time.monotonic_ns()
            if wait > 0 and self._stop.wait(wait / 1e9):
                return
            now = time.monotonic_ns()
            while now < due:  # Event.wait may return a hair early
                now = time.monotonic_ns()
            wall = self.clock.now_ns()  # read together: the step's instant is ``wall - late``
            late = now - due
            self.jitter_ns.append(late)
            self.cursor += 1
            try:
                if self.backdate is not None:
                    at = wall - late  # the step's instant on the model's clock
                    with self.backdate(step, at) as used:
                        self.apply(step)
                    self.truth_jitter_ns.append(max(0, used - at))
                else:
                    self.truth_jitter_ns.append(late)
                    self.apply(step)
            except Exception as e:  # keep the runtime serving; the error is reported
                log.warning("step at %d ns failed: %s", step.at_ns, e)
                self.errors.append((step, e))
        if self._stop.is_set():
            return
        wait = self._scheduled(t0_mono, self.end_ns) - time.monotonic_ns()
        if wait > 0 and self._stop.wait(wait / 1e9):
            return
        self.ended.set()

    def wait_end(self, timeout: float | None = None) -> bool:
        return self.ended.wait(timeout)

    def stop(self) -> None:
        """Stop the real-time thread (if any) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def jitter_summary(self) -> dict[str, int]:
        """Real-time timing over all applied steps, in ns: the truth's error against the scenario
        (``p50_ns``, ``p99_ns``, ``max_ns``) and how late steps were applied, hence shown
        (``late_p50_ns``, ``late_p99_ns``, ``late_max_ns``); ``count`` steps."""
        truth, late = sorted(self.truth_jitter_ns), sorted(self.jitter_ns)
        return {"count": len(late), "p50_ns": percentile(truth, 50), "p99_ns": percentile(truth, 99),
                "max_ns": truth[-1] if truth else 0, "late_p50_ns": percentile(late, 50),
                "late_p99_ns": percentile(late, 99), "late_max_ns": late[-1] if late else 0}
