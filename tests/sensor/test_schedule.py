"""The poll schedule (sensor.schedule) and Poller.run's use of it, on a virtual clock."""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sensor.output import Emitter
from sensor.poller import Poller
from sensor.schedule import Ticks

I = 0.25  # noqa: E741 - the interval, as in the docs' formulas


def simulate(interval: float, durations: list[float]) -> tuple[list[float], list[int]]:
    """Tick starts and the slots each tick ran past, for ticks that take ``durations``."""
    t = 100.0
    ticks = Ticks(interval, t)
    starts, missed = [], []
    for d in durations:
        starts.append(t)
        t += d
        wait, m = ticks.after(t)
        assert wait >= 0
        missed.append(m)
        t += wait
    return starts, missed


@given(st.lists(st.floats(0.0, 4 * I, allow_nan=False), min_size=1, max_size=60))
@example([I * 1.08] + [I * 0.8] * 5)  # one slightly late tick: the next starts at once, then on time
@example([I, I, 2 * I, 3 * I + 1e-9])  # ends exactly on a slot: in time
def test_a_late_tick_is_followed_at_once_and_an_on_time_one_waits_for_its_slot(durations: list[float]) -> None:
    starts, missed = simulate(I, durations)
    for i in range(len(starts) - 1):
        gap, d = starts[i + 1] - starts[i], durations[i]
        # the next tick starts at max(its slot, the end of this one): never later, never sooner
        assert math.isclose(gap, max(I, d), rel_tol=1e-9, abs_tol=1e-9)
    for d, m in zip(durations, missed, strict=True):
        q = d / I  # a tick ran past the slots at +1, +2 ... intervals that it reached
        expected = 0 if q <= 1 else math.floor(q)
        assert m == expected or (abs(q - round(q)) < 1e-9 and abs(m - expected) <= 1)  # float ties


@given(st.lists(st.one_of(st.floats(0.0, I * 0.99), st.floats(I * 1.01, 3 * I)), min_size=2, max_size=40))
def test_on_time_ticks_keep_the_rate_without_drift(durations: list[float]) -> None:
    """Between two late ticks the starts are anchor + k * interval exactly (no accumulated error)."""
    starts, missed = simulate(I, durations)
    anchor = starts[0]
    k = 0
    for i, s in enumerate(starts):
        if i and missed[i - 1]:
            anchor, k = s, 0
        assert s == pytest.approx(anchor + k * I, abs=1e-9)
        k += 1


def test_a_tick_that_ran_past_several_slots_counts_them_and_does_not_queue() -> None:
    starts, missed = simulate(I, [2.5 * I, 0.1, 0.1])
    assert missed == [2, 0, 0]  # ran past the slots at +1 I and +2 I
    assert starts[1] - starts[0] == pytest.approx(2.5 * I)  # at once, not at +3 I
    assert starts[2] - starts[1] == pytest.approx(I)  # then one per interval: no catching up


def test_restart_anchors_the_next_ticks() -> None:
    ticks = Ticks(I, 0.0)
    ticks.restart(10.0)
    assert ticks.after(10.1) == (pytest.approx(0.15), 0)
    with pytest.raises(ValueError, match="interval must be > 0"):
        Ticks(0.0, 0.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class StubClient:
    connected = True

    def cancel(self) -> None:  # pragma: no cover - interrupt is not called here
        pass


def test_poller_run_starts_the_next_poll_at_once_after_an_overrun(tmp_path: Any) -> None:
    """Poller.run on a virtual clock: a poll that took 1.1 intervals is followed at once by the
    next (the old schedule waited for the slot after, so the next poll covered two intervals)."""
    durations = [0.1, 0.3, 0.2, 0.1, 0.55, 0.05]
    clock, stop = Clock(), threading.Event()
    with open(tmp_path / "out.jsonl", "w") as out:
        p = Poller(StubClient(), Emitter(out), poll_interval_ns=int(I * 1e9))  # type: ignore[arg-type]
        p.monotonic = clock
        starts: list[float] = []

        def step() -> bool:
            starts.append(clock.t)
            clock.t += durations[len(starts) - 1]
            if len(starts) == len(durations):
                stop.set()
            return True

        def wait(stop_: threading.Event, seconds: float, *, step_on_wake: bool = True) -> bool:
            clock.t += seconds
            return stop_.is_set()

        p.step = step  # type: ignore[method-assign]
        p._wait = wait  # type: ignore[method-assign]
        p.run(stop)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    assert gaps == [0.25, 0.3, 0.25, 0.25, 0.55]
    assert p.overruns == 1 + 2  # 0.3 ran past one slot; 0.55 past two
    assert p.metrics.overruns._value.get() == 3
