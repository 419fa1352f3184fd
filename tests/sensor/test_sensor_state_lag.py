"""State lag (DESIGN.md section 6, issue 15): windows hold the true time although List/Status lag.

Real containerd keeps reporting a container RUNNING for tens of milliseconds after its process
exited (measured: docs/realruntime.md#state-lag). An exit the sensor never saw -- exited and removed
between two polls -- was placed after "the last poll that showed it running", which can be after
the exit: a broken G4 promise. The engine's ``state_lag_ns`` reaches that far back.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sensor.config import ConfigError, load_config
from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot, StreamEvent

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
SB = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", T0 + 1 * MS)


def csnap(state: str, created: int = T0 + 10 * MS) -> ContainerSnap:
    return ContainerSnap("c1", "s1", "app", 0, "busybox", "sha256:b", state, created)  # type: ignore[arg-type]


def poll(e: DiffEngine, t: int, containers=(), details=None) -> list[Event]:  # type: ignore[no-untyped-def]
    e.begin(Snapshot((SB,), tuple(containers), t, t + MS))
    out = e.finish(details or {}, t + 2 * MS)
    for x in out:
        assert x.window_ns[0] <= x.time_ns <= x.window_ns[1], x
    return out


def exit_unseen(lag_ns: int, *, started: int, lagging_poll: int, next_poll: int) -> Event:
    """Seen running at ``lagging_poll`` (its process may already have exited), gone at ``next_poll``."""
    e = DiffEngine(state_lag_ns=lag_ns)
    poll(e, T0 + 20 * MS, [csnap("running")], {"c1": ContainerDetail("c1", started, 0, None, None)})
    assert poll(e, lagging_poll, [csnap("running")]) == []
    out = poll(e, next_poll)
    assert [x.type for x in out] == ["container.exited", "container.destroyed"]
    assert out[0].synthetic
    return out[0]


def test_an_unseen_exit_reaches_back_by_the_state_lag() -> None:
    """The issue's case: the process exited at T0+150ms, the list at T0+200ms still said running."""
    truth = T0 + 150 * MS
    exited = exit_unseen(100 * MS, started=T0 + 18 * MS, lagging_poll=T0 + 200 * MS, next_poll=T0 + 300 * MS)
    assert exited.window_ns == (T0 + 100 * MS, T0 + 301 * MS)
    assert exited.window_ns[0] <= truth <= exited.window_ns[1]


def test_without_a_lag_bound_the_window_misses_the_exit() -> None:
    """The old behaviour, kept reachable with ``state_lag: 0``: the window starts at the lagging poll."""
    exited = exit_unseen(0, started=T0 + 18 * MS, lagging_poll=T0 + 200 * MS, next_poll=T0 + 300 * MS)
    assert exited.window_ns[0] == T0 + 200 * MS > T0 + 150 * MS


def test_the_lag_reaches_to_created_at_not_only_to_the_reported_start() -> None:
    """Real containerd stamps started_at once the start returned: an instant exit's finished_at can
    precede it (measured: up to 4 ms on 1.6). Only created_at bounds the lag's reach."""
    exited = exit_unseen(500 * MS, started=T0 + 15 * MS, lagging_poll=T0 + 200 * MS, next_poll=T0 + 300 * MS)
    assert exited.window_ns[0] == T0 + 10 * MS


def test_a_reported_finished_at_is_used_verbatim_and_not_widened() -> None:
    e = DiffEngine(state_lag_ns=100 * MS)
    started, finished = T0 + 18 * MS, T0 + 150 * MS
    poll(e, T0 + 20 * MS, [csnap("running")], {"c1": ContainerDetail("c1", started, 0, None, None)})
    assert poll(e, T0 + 200 * MS, [csnap("running")]) == []
    (exited,) = poll(e, T0 + 300 * MS, [csnap("exited")], {"c1": ContainerDetail("c1", started, finished, 0, None)})
    assert exited.time_ns == finished and exited.window_ns[0] == finished and not exited.synthetic


def test_a_streamed_exit_without_finished_at_reaches_back_too() -> None:
    """A stream event carries no finished_at (a runtime quirk): its time is the event's, after the exit."""
    e = DiffEngine(state_lag_ns=100 * MS)
    poll(e, T0 + 20 * MS, [csnap("running")], {"c1": ContainerDetail("c1", T0 + 18 * MS, 0, None, None)})
    poll(e, T0 + 200 * MS, [csnap("running")])
    status, detail = csnap("exited"), ContainerDetail("c1", T0 + 18 * MS, 0, None, None)
    out = e.stream(StreamEvent("c1", "stopped", T0 + 260 * MS, status, detail, SB), T0 + 261 * MS)
    assert [x.type for x in out] == ["container.exited"]
    assert out[0].window_ns[0] <= T0 + 250 * MS  # a lo from the lagging list would be T0+200ms


@given(lag_ms=st.integers(0, 400), exit_ms=st.integers(31, 999), poll_ms=st.integers(50, 250),
       started_ms=st.integers(11, 19))
@example(lag_ms=73, exit_ms=127, poll_ms=100, started_ms=15)  # the worst case at a 100 ms poll
def test_every_unseen_exit_within_the_lag_is_inside_its_window(lag_ms: int, exit_ms: int, poll_ms: int,
                                                               started_ms: int) -> None:
    """Polls every ``poll_ms``; the runtime shows the exit ``lag_ms`` late and the container is removed
    right when it shows: whatever the timing, the forged or seen exit's window holds the true time."""
    truth = T0 + exit_ms * MS
    shown = truth + lag_ms * MS
    e = DiffEngine(state_lag_ns=lag_ms * MS)
    detail_running = ContainerDetail("c1", T0 + started_ms * MS, 0, None, None)
    poll(e, T0 + 20 * MS, [csnap("running")], {"c1": detail_running})
    t = T0 + 20 * MS
    exits: list[Event] = []
    while not exits:
        t += poll_ms * MS
        if t < shown:
            assert poll(e, t, [csnap("running")], {"c1": detail_running}) == []
        else:  # removed as soon as it showed exited: gone
            exits = [x for x in poll(e, t) if x.type == "container.exited"]
    assert exits[0].window_ns[0] <= truth <= exits[0].window_ns[1]


def test_state_lag_config_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "sensor.yaml"
    path.write_text("crisensor:\n  enabled: true\n  addr: unix:///run/x.sock\n  state_lag: 80ms\n")
    assert load_config(str(path), None).state_lag_ns == 80 * MS
    path.write_text("crisensor:\n  enabled: true\n  addr: unix:///run/x.sock\n")
    assert load_config(str(path), None).state_lag_ns == 1000 * MS
    path.write_text("crisensor:\n  enabled: true\n  addr: unix:///run/x.sock\n  state_lag: -1s\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path), None)
    assert "crisensor.state_lag" in str(err.value) and "\n" not in str(err.value)
