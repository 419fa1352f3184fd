"""Ask on a miss: the pure planner, and the poller's lookup against the fake runtime."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from sensor.lookup import LookupPlanner
from tests.sensor.test_poller import by_type, truth_time, validate

MS = 1_000_000


def test_planner_asks_once_per_id_per_interval_and_never_about_known_ones() -> None:
    p = LookupPlanner(250 * MS, max_queued=2)
    assert p.want("a", known=False, now_ns=0) and not p.want("a", known=False, now_ns=1)  # queued once
    assert not p.want("k", known=True, now_ns=0)
    assert p.want("b", known=False, now_ns=0)
    assert not p.want("c", known=False, now_ns=0) and p.dropped == 1  # bounded
    assert p.take(10) == "a" and p.take(10) == "b" and p.take(10) is None
    assert not p.want("a", known=False, now_ns=10 + 249 * MS)  # not found: not again within the interval
    assert p.want("a", known=False, now_ns=10 + 250 * MS)
    assert p.asked == 2


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans(), st.integers(0, 10 * MS), st.booleans()),
                max_size=200))
def test_planner_promises(ops: list[tuple[str, bool, int, bool]]) -> None:
    """Never more than one lookup of an ID per interval; never more queued than the bound."""
    p = LookupPlanner(3 * MS, max_queued=3)
    now = 0
    taken: dict[str, list[int]] = {}
    for cid, known, step, take in ops:
        now += step
        p.want(cid, known, now)
        assert p.pending() <= 3
        if take:
            got = p.take(now)
            if got is not None:
                taken.setdefault(got, []).append(now)
    for times in taken.values():
        assert all(b - a >= 3 * MS for a, b in itertools.pairwise(times))


def test_a_lookup_announces_a_container_no_poll_has_seen_and_the_next_poll_adds_nothing(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("web", "default", "u1")
    p.step()  # the base list: the sandbox
    clock.advance(30 * MS)
    c = m.create_container(sb.id, "app", 0, "busybox")
    m.start_container(c.id)
    clock.advance(5 * MS)
    assert not p.knows(c.id)
    got = p.lookup(c.id)
    assert [e.type for e in got] == ["container.created", "container.running"]
    assert {e.source for e in got} == {"lookup"}
    assert got[0].time_ns == truth_time(m, c.id, "created") and got[1].time_ns == truth_time(m, c.id, "running")
    # it was seen running, never created: created is forged, honestly flagged (G3)
    assert got[0].synthetic is True and got[1].synthetic is False
    assert got[0].pod is not None and got[0].pod.name == "web"
    assert p.knows(c.id)
    assert p.lookup(c.id) == []  # known now: not asked again
    clock.advance(250 * MS)
    p.step()
    events = r.events()
    validate(events)
    assert list(by_type(events, c.id)) == ["container.created", "container.running"]  # G1: nothing twice


def test_a_lookup_of_a_container_already_gone_emits_nothing(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("web", "default", "u1")
    p.step()
    c = m.create_container(sb.id, "app", 0, "busybox")
    m.start_container(c.id)
    m.exit_container(c.id, 0)
    m.remove_container(c.id)
    clock.advance(5 * MS)
    assert p.lookup(c.id) == []  # G5: NotFound is not an event
    assert p.lookup("f" * 64) == []
    assert p.metrics.lookups.labels("not_found")._value.get() == 2


def test_a_lookup_of_a_container_in_a_sandbox_no_poll_has_seen_announces_the_sandbox_too(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    p.step()
    sb = m.run_pod_sandbox("new", "default", "u2")
    c = m.create_container(sb.id, "app", 0, "busybox")
    m.start_container(c.id)
    clock.advance(5 * MS)
    got = p.lookup(c.id)
    assert [e.type for e in got] == ["sandbox.ready", "container.created", "container.running"]
    clock.advance(250 * MS)
    p.step()
    events = r.events()
    validate(events)
    assert sum(e["type"] == "sandbox.ready" for e in events) == 1


def test_the_lookup_thread_sleeps_until_an_exec_names_an_unknown_container() -> None:
    """No idle wake-ups; an ID queued by ``want`` is asked about at once."""
    import threading
    import time

    from sensor.lookup import LookupWorker

    asked: list[str] = []
    done = threading.Event()

    def lookup(cid: str) -> None:
        asked.append(cid)
        done.set()

    worker = LookupWorker(LookupPlanner(250_000_000), known=lambda cid: False, lookup=lookup).start()
    try:
        time.sleep(1.2)
        assert worker.rounds == 0, "woke up with nothing queued"
        worker.want("c1")
        assert done.wait(5)
        assert asked == ["c1"]
    finally:
        worker.close()
    assert not worker._thread.is_alive(), "close() did not wake and end the thread"
