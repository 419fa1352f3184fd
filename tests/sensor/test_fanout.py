"""sensor.fanout: bounded in-flight calls, results in issue order, the rest cancelled on an error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.fanout import fan_out


@dataclass
class Handle:
    cid: str
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.flight: set[str] = set()
        self.most = 0
        self.started: list[Handle] = []
        self.taken: list[str] = []

    def start(self, cid: str) -> Handle:
        self.flight.add(cid)
        self.most = max(self.most, len(self.flight))
        h = Handle(cid)
        self.started.append(h)
        return h

    def take(self, cid: str, h: Handle) -> str | None:
        assert h.cid == cid and not h.cancelled
        self.flight.discard(cid)
        self.taken.append(cid)
        return f"error at {cid}" if cid == self.fail_on else None


@given(n=st.integers(0, 60), limit=st.integers(-1, 20))
def test_every_id_is_taken_in_order_with_at_most_limit_in_flight(n: int, limit: int) -> None:
    ids = [f"c{i}" for i in range(n)]
    r = Recorder()
    assert fan_out(ids, r.start, r.take, limit) is None
    assert r.taken == ids
    assert r.most <= max(1, limit)
    assert not any(h.cancelled for h in r.started)


@given(n=st.integers(1, 60), limit=st.integers(1, 20), data=st.data())
def test_an_error_ends_the_fan_out_and_cancels_what_is_in_flight(n: int, limit: int, data: st.DataObject) -> None:
    ids = [f"c{i}" for i in range(n)]
    bad = data.draw(st.integers(0, n - 1))
    r = Recorder(fail_on=ids[bad])
    assert fan_out(ids, r.start, r.take, limit) == f"error at {ids[bad]}"
    assert r.taken == ids[: bad + 1]
    assert len(r.started) <= min(n, bad + limit)  # nothing issued beyond the window
    assert all(h.cancelled for h in r.started[bad + 1 :])


def test_an_exception_from_start_cancels_what_is_in_flight() -> None:
    r = Recorder()

    def start(cid: str) -> Handle:
        if cid == "c3":
            raise RuntimeError("stopping")
        return r.start(cid)

    with pytest.raises(RuntimeError):
        fan_out([f"c{i}" for i in range(10)], start, r.take, 8)
    assert [h.cid for h in r.started] == ["c0", "c1", "c2"] and all(h.cancelled for h in r.started)


@given(n=st.integers(0, 40), limit=st.integers(1, 8), stop_at=st.integers(0, 50), fail=st.integers(-1, 39))
def test_issued_is_called_once_as_soon_as_nothing_more_will_be_issued(n: int, limit: int, stop_at: int,
                                                                      fail: int) -> None:
    """After the last ``start`` and before the calls still in flight are taken -- whether the IDs
    ran out, ``more()`` said no, or an error ended the fan-out."""
    ids = [f"c{i}" for i in range(n)]
    r = Recorder(fail_on=ids[fail] if 0 <= fail < n else None)
    seen: list[tuple[int, int]] = []  # (started, taken) when issued() came
    fan_out(ids, r.start, r.take, limit, more=lambda: len(r.started) < stop_at,
            issued=lambda: seen.append((len(r.started), len(r.taken))))
    assert len(seen) == 1
    started, taken = seen[0]
    assert started == len(r.started)  # nothing was issued after it
    if r.fail_on is None:
        assert taken <= started == len(r.taken)  # what was still in flight was taken after it
        if started == n > 0:  # the IDs ran out: the last one issued was still in flight
            assert taken < started


def test_issued_is_called_when_start_raises() -> None:
    calls: list[int] = []

    def start(cid: str) -> Handle:
        raise RuntimeError("stopping")

    with pytest.raises(RuntimeError):
        fan_out(["c0"], start, Recorder().take, 4, issued=lambda: calls.append(1))
    assert calls == [1]
