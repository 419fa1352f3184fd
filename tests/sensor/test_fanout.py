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
