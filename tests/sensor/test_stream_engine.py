"""The diff engine's stream input (sensor.diff rule 6) and the stream plan, without sockets."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.diff import DiffEngine, EngineStateError
from sensor.events import Event
from sensor.lifecycle import CONTAINER_ORDER
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot, StreamEvent
from sensor.stream import HEALTHY_NS, StreamEnd, StreamPlan, classify

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
SB = SandboxSnap("s1", "pod", "ns", "uid", 0, "ready", T0 + 1 * MS)


def csnap(cid: str, state: str, created: int, sandbox: str = "s1") -> ContainerSnap:
    return ContainerSnap(cid, sandbox, "app", 0, "busybox", "sha256:b", state, created)  # type: ignore[arg-type]


def ev(cid: str, kind: str, t: int, *, state: str | None = None, created: int = T0 + 10 * MS, started: int = 0,
       finished: int = 0, code: int | None = None, sandbox: SandboxSnap | None = SB) -> StreamEvent:
    """A container event as containerd sends it: the container's status (unless deleted) and the pod's."""
    status = detail = None
    if kind != "deleted":
        status = csnap(cid, state or {"created": "created", "started": "running", "stopped": "exited"}[kind], created,
                       sandbox.id if sandbox else "")
        detail = ContainerDetail(cid, started, finished, code, "Completed" if code == 0 else None)
    return StreamEvent(cid, kind, t, status, detail, sandbox)  # type: ignore[arg-type]


def base(engine: DiffEngine, t: int, sandboxes=(SB,), containers=()) -> list[Event]:  # type: ignore[no-untyped-def]
    engine.begin(Snapshot(tuple(sandboxes), tuple(containers), t, t + MS))
    return engine.finish({}, t + MS)


def kinds(events: list[Event]) -> list[tuple[str | None, str, str]]:
    return [(e.container_id or e.sandbox_id, e.type, e.source) for e in events]


def test_a_streamed_lifecycle_has_exact_times_and_honest_windows() -> None:
    e = DiffEngine()
    base(e, T0)
    c0, s0, f0 = T0 + 10 * MS, T0 + 11 * MS, T0 + 20 * MS
    out = e.stream(ev("c1", "created", c0, created=c0), c0 + 1000)
    out += e.stream(ev("c1", "started", s0, started=s0), s0 + 1000)
    out += e.stream(ev("c1", "stopped", f0, started=s0, finished=f0, code=0), f0 + 1000)
    out += e.stream(ev("c1", "deleted", T0 + 30 * MS), T0 + 30 * MS + 1000)
    assert kinds(out) == [("c1", "container." + s, "stream") for s in CONTAINER_ORDER]
    assert [x.time_ns for x in out] == [c0, s0, f0, T0 + 30 * MS]
    assert not any(x.synthetic for x in out)
    assert out[2].exit_code == 0 and out[2].reason == "Completed"
    for x in out:
        assert x.window_ns[0] <= x.time_ns <= x.window_ns[1] == x.observed_ns
    # each window starts where the sensor last knew the previous state
    assert out[1].window_ns[0] == c0 and out[2].window_ns[0] == s0 and out[3].window_ns[0] == f0
    assert e.table_sizes() == (0, 1)


def test_events_before_the_base_list_are_held_and_applied_after_it() -> None:
    e = DiffEngine()
    assert e.stream(ev("c1", "created", T0 + 10 * MS), T0 + 10 * MS) == []
    assert e.held == 1
    out = base(e, T0 + 20 * MS)  # the list does not show c1 (say it was created after the answer)
    assert kinds(out) == [("s1", "sandbox.ready", "poll"), ("c1", "container.created", "stream")]
    assert e.held == 0


def test_held_events_for_what_the_base_list_shows_are_not_repeated() -> None:
    e = DiffEngine()
    e.stream(ev("c1", "created", T0 + 10 * MS), T0 + 10 * MS)
    out = base(e, T0 + 20 * MS, containers=[csnap("c1", "created", T0 + 10 * MS)])
    assert kinds(out) == [("s1", "sandbox.ready", "poll"), ("c1", "container.created", "poll")]


def test_reconnect_drops_held_events_and_holds_until_the_resync_list() -> None:
    e = DiffEngine()
    base(e, T0)
    e.stream(ev("c1", "created", T0 + 10 * MS), T0 + 10 * MS)
    e.reset_connection(T0 + 20 * MS)
    assert e.stream(ev("c1", "started", T0 + 30 * MS, started=T0 + 30 * MS), T0 + 30 * MS) == []
    assert e.held == 1
    e.reset_connection(T0 + 31 * MS)
    assert e.held == 0


def test_late_events_about_a_destroyed_container_are_ignored() -> None:
    e = DiffEngine()
    c = csnap("c1", "running", T0 + 10 * MS)
    base(e, T0 + 20 * MS, containers=[c])
    e.begin(Snapshot((SB,), (), T0 + 100 * MS, T0 + 101 * MS))  # gone from a list
    out = e.finish({}, T0 + 101 * MS)
    assert [x.type for x in out] == ["container.exited", "container.destroyed"]
    # ...while its stream events were still in flight
    assert e.stream(ev("c1", "stopped", T0 + 50 * MS, started=T0 + 11 * MS, finished=T0 + 50 * MS, code=0),
                    T0 + 102 * MS) == []
    assert e.stream(ev("c1", "deleted", T0 + 60 * MS), T0 + 102 * MS) == []
    # an ID reused by a new incarnation (another created_at) is not a late event
    out = e.stream(ev("c1", "created", T0 + 200 * MS, created=T0 + 200 * MS), T0 + 200 * MS)
    assert kinds(out) == [("c1", "container.created", "stream")]


def test_a_stale_event_after_a_poll_gives_nothing() -> None:
    e = DiffEngine()
    base(e, T0, containers=[csnap("c1", "exited", T0 + 10 * MS)])
    assert e.stream(ev("c1", "started", T0 + 11 * MS, started=T0 + 11 * MS), T0 + 2 * MS) == []


def test_nil_pod_sandbox_status_for_an_unknown_container_asks_for_a_list() -> None:
    e = DiffEngine()
    base(e, T0)
    assert e.stream(ev("c9", "created", T0 + 10 * MS, sandbox=None), T0 + 10 * MS) == []
    assert e.resync_wanted
    e.begin(Snapshot((SB,), (csnap("c9", "created", T0 + 10 * MS),), T0 + 20 * MS, T0 + 21 * MS))
    out = e.finish({}, T0 + 21 * MS, source="resync")
    assert kinds(out) == [("c9", "container.created", "resync")]
    assert not e.resync_wanted
    # for a container it knows, a nil pod sandbox status is no obstacle
    out = e.stream(ev("c9", "started", T0 + 30 * MS, started=T0 + 30 * MS, sandbox=None), T0 + 30 * MS)
    assert kinds(out) == [("c9", "container.running", "stream")]
    assert out[0].sandbox_id == "s1" and out[0].pod is not None


def test_deleted_of_an_unknown_container_announces_nothing() -> None:
    e = DiffEngine()
    base(e, T0)
    assert e.stream(ev("c9", "deleted", T0 + 10 * MS, sandbox=None), T0 + 10 * MS) == []
    assert not e.resync_wanted


def test_sandbox_transitions_streamed_as_container_events() -> None:
    e = DiffEngine()
    base(e, T0, sandboxes=())
    s2 = SandboxSnap("s2", "web", "ns", "u2", 0, "ready", T0 + 10 * MS)
    out = e.stream(StreamEvent("s2", "created", T0 + 10 * MS, None, None, s2), T0 + 10 * MS)
    out += e.stream(ev("c1", "created", T0 + 20 * MS, created=T0 + 20 * MS, sandbox=s2), T0 + 20 * MS)
    # the sandbox's deletion waits for a list while a tracked container names it
    assert e.stream(StreamEvent("s2", "deleted", T0 + 25 * MS, None, None, None), T0 + 25 * MS) == []
    assert e.resync_wanted
    out += e.stream(ev("c1", "deleted", T0 + 30 * MS, sandbox=replace(s2, state="notready")), T0 + 30 * MS)
    out += e.stream(StreamEvent("s2", "stopped", T0 + 29 * MS, None, None, replace(s2, state="notready")),
                    T0 + 31 * MS)
    out += e.stream(StreamEvent("s2", "deleted", T0 + 40 * MS, None, None, None), T0 + 40 * MS)  # nil status
    assert kinds(out) == [
        ("s2", "sandbox.ready", "stream"),
        ("c1", "container.created", "stream"),
        ("c1", "container.exited", "stream"),
        ("c1", "container.destroyed", "stream"),
        ("s2", "sandbox.notready", "stream"),
        ("s2", "sandbox.destroyed", "stream"),
    ]
    assert out[2].synthetic and out[2].why == "exited and removed between polls"
    assert out[0].time_ns == T0 + 10 * MS and out[-1].time_ns == T0 + 40 * MS
    assert e.table_sizes() == (0, 0)


def test_a_missed_start_is_forged_from_the_status() -> None:
    e = DiffEngine()
    base(e, T0)
    out = e.stream(ev("c1", "stopped", T0 + 30 * MS, created=T0 + 10 * MS, started=T0 + 12 * MS,
                      finished=T0 + 30 * MS, code=1), T0 + 31 * MS)
    assert [(x.type, x.synthetic, x.why, x.time_ns) for x in out] == [
        ("container.created", True, "created before first seen", T0 + 10 * MS),
        ("container.running", True, "ran between polls", T0 + 12 * MS),
        ("container.exited", False, None, T0 + 30 * MS),
    ]


def test_stream_during_a_poll_is_a_usage_error() -> None:
    e = DiffEngine()
    base(e, T0)
    e.begin(Snapshot((SB,), (), T0 + 10 * MS, T0 + 11 * MS))
    with pytest.raises(EngineStateError, match="between begin"):
        e.stream(ev("c1", "created", T0 + 10 * MS), T0 + 10 * MS)


def test_streamed_changes_unsettle_the_engine_until_the_next_finish() -> None:
    e = DiffEngine()
    base(e, T0)
    assert e.settled
    e.stream(ev("c1", "created", T0 + 10 * MS), T0 + 10 * MS)
    assert not e.settled
    base(e, T0 + 20 * MS, containers=[csnap("c1", "created", T0 + 10 * MS)])
    assert e.settled


# --- exactly once, whatever the interleaving ----------------------------------------------------------------


@st.composite
def histories(draw):  # type: ignore[no-untyped-def]
    """Container lifecycles on one pod, the stream losing some events, polls at random instants."""
    n = draw(st.integers(1, 6))
    changes: list[tuple[int, str, str]] = []  # (time, container, transition)
    for i in range(n):
        t = draw(st.integers(1, 50)) * MS
        steps = draw(st.integers(1, 4))
        for tr in CONTAINER_ORDER[:steps]:
            changes.append((T0 + t, f"c{i}", tr))
            t += draw(st.integers(1, 20)) * MS
    changes.sort()
    drops = draw(st.sets(st.integers(0, len(changes) - 1), max_size=3))
    polls = sorted(draw(st.sets(st.integers(1, 130), min_size=1, max_size=5)))
    lag = draw(st.integers(0, 3))  # stream events arrive this many changes late (applied after a poll)
    return changes, drops, polls, lag


@given(histories())
def test_exactly_once_and_in_order_across_stream_and_polls(h) -> None:  # type: ignore[no-untyped-def]
    changes, drops, polls, lag = h
    e = DiffEngine()
    state: dict[str, dict] = {}
    out: list[Event] = []
    pending: list[StreamEvent] = []
    poll_at = [T0 + p * MS for p in polls]
    base(e, T0)

    def poll(t: int) -> None:
        live = [csnap(c, s["state"], s["created"]) for c, s in state.items() if s["state"] != "destroyed"]
        need = e.begin(Snapshot((SB,), tuple(live), t, t))
        details = {c: ContainerDetail(c, state[c].get("running", 0), state[c].get("exited", 0),
                                      0 if "exited" in state[c] else None, None)  # as sensor.client: code once exited
                   for c in need}
        out.extend(e.finish(details, t, source="resync"))

    def deliver(upto: int) -> None:
        while len(pending) > upto:
            x = pending.pop(0)
            out.extend(e.stream(x, max(x.time_ns, out[-1].observed_ns if out else 0)))

    for i, (t, c, tr) in enumerate(changes):
        while poll_at and poll_at[0] < t:
            poll(poll_at.pop(0))
        s = state.setdefault(c, {"created": t})
        s["state"] = tr
        s[tr] = t
        if i not in drops:
            kind = {"created": "created", "running": "started", "exited": "stopped", "destroyed": "deleted"}[tr]
            st_ = "exited" if tr == "destroyed" else tr
            pending.append(ev(c, kind, t, state=st_, created=s["created"], started=s.get("running", 0),
                              finished=s.get("exited", 0), code=0))
        deliver(lag)
    deliver(0)
    for t in poll_at:
        poll(t)
    poll(T0 + 200 * MS)  # a last list reconciles everything
    per: dict[str, list[str]] = {}
    for x in out:
        if x.container_id:
            per.setdefault(x.container_id, []).append(x.type.split(".")[1])
        assert x.window_ns[0] <= x.window_ns[1]
    for c, types in per.items():
        assert types == sorted(types, key=CONTAINER_ORDER.index), (c, types)
        assert len(types) == len(set(types)), (c, types)
    for c, s in state.items():  # the last list reconciled everything: nothing lost, nothing invented
        if s["state"] != "destroyed" or c in per:
            assert per[c][-1] == s["state"], (c, per[c], s)
        for tr in per.get(c, ()):
            x = next(x for x in out if x.container_id == c and x.type == "container." + tr)
            if tr in s:
                assert x.window_ns[0] <= s[tr] <= x.window_ns[1], (c, tr, x)
            if not x.synthetic and x.source == "stream":
                assert tr in s and x.time_ns == s[tr], (c, tr, x)


# --- the plan -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("end", "lived", "outcome"), [
    (StreamEnd("UNIMPLEMENTED", "unknown method", 0), 0, "unimplemented"),
    (StreamEnd("OK", "", 0), 0, "refused"),  # EOF at once: CRI-O without enable_pod_events
    (StreamEnd("UNKNOWN", "pod events are not enabled", 0), 0, "refused"),
    (StreamEnd("UNAVAILABLE", "subscription closed", 0), 0, "closed"),
    (StreamEnd("OK", "", 5), 0, "closed"),  # a working stream that ended
    (StreamEnd("INTERNAL", "", 0), HEALTHY_NS, "closed"),
    (StreamEnd("CANCELLED", "", 3), 0, "cancelled"),
])
def test_classify(end: StreamEnd, lived: int, outcome: str) -> None:
    assert classify(end, lived) == outcome


def test_plan_resubscribes_with_backoff_and_polls_meanwhile() -> None:
    p = StreamPlan("auto", 10_000 * MS)
    p.connected(0, "v1")
    assert p.due(0)
    delays = []
    now = 0
    for _ in range(8):
        p.opened(now)
        assert p.list_period_ns(250 * MS) == 10_000 * MS
        assert p.ended(StreamEnd("UNAVAILABLE", "subscription closed", 0), now) == "closed"
        assert p.list_period_ns(250 * MS) == 250 * MS
        delays.append(p.retry_at_ns - now)
        now = p.retry_at_ns
    assert delays == [0, 100 * MS, 200 * MS, 400 * MS, 800 * MS, 1600 * MS, 3200 * MS, 5000 * MS]
    p.opened(now)  # a stream that lived long enough resets the backoff
    p.ended(StreamEnd("UNAVAILABLE", "subscription closed", 0), now + HEALTHY_NS)
    assert p.retry_at_ns == now + HEALTHY_NS


def test_plan_refused_retries_every_resync_interval_and_unimplemented_waits_for_a_reconnect() -> None:
    p = StreamPlan("on", 10_000 * MS)
    p.connected(0, "v1")
    p.opened(0)
    assert p.ended(StreamEnd("OK", "", 0), 0) == "refused"
    assert not p.due(9_999 * MS) and p.due(10_000 * MS)
    assert "enable_pod_events" in p.reason
    p.opened(10_000 * MS)
    assert p.ended(StreamEnd("UNIMPLEMENTED", "", 0), 10_000 * MS) == "unimplemented"
    assert not p.due(10**15)
    p.connected(10**15, "v1")  # a restarted runtime may have been upgraded
    assert p.due(10**15)
    p.connected(10**15, "v1alpha2")
    assert p.state == "unsupported" and "v1alpha2" in p.reason


def test_plan_off_never_streams() -> None:
    p = StreamPlan("off", 10_000 * MS)
    p.connected(0, "v1")
    assert not p.due(0) and p.list_period_ns(250 * MS) == 250 * MS
    with pytest.raises(ValueError, match="no transition from 'off'"):
        p.opened(0)
