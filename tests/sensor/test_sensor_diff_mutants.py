"""sensor.diff: behaviour that mutation testing found unpinned (docs/guarantees.md, "Mutation scores").

Each test names the rule it pins; together with the other diff tests they kill the non-equivalent
mutants of sensor/diff.py.
"""

from __future__ import annotations

from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot, StreamEvent

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
SB = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", T0 + 1 * MS)
SB2 = SandboxSnap("s2", "pod2", "ns", "uid-2", 0, "ready", T0 + 2 * MS)


def csnap(cid: str, state: str, created: int, sandbox: str = "s1") -> ContainerSnap:
    return ContainerSnap(cid, sandbox, "app", 0, "busybox", "sha256:b", state, created)  # type: ignore[arg-type]


def ev(cid: str, kind: str, t: int, *, created: int, started: int = 0, finished: int = 0,
       sandbox: SandboxSnap | None = SB) -> StreamEvent:
    state = {"created": "created", "started": "running", "stopped": "exited"}[kind]
    status = csnap(cid, state, created, sandbox.id if sandbox else "")
    detail = ContainerDetail(cid, started, finished, 0 if finished else None, None)
    return StreamEvent(cid, kind, t, status, detail, sandbox)  # type: ignore[arg-type]


def gone(oid: str, t: int, sandbox: SandboxSnap | None = None) -> StreamEvent:
    return StreamEvent(oid, "deleted", t, None, None, sandbox)  # type: ignore[arg-type]


def poll(e: DiffEngine, t: int, sandboxes=(SB,), containers=(), details=None) -> list[Event]:  # type: ignore[no-untyped-def]
    e.begin(Snapshot(tuple(sandboxes), tuple(containers), t, t + MS))
    return e.finish(details or {}, t + 2 * MS)


def types(events: list[Event]) -> list[str]:
    return [x.type for x in events]


# --- begin_changes (the fast path's delta) --------------------------------------------------------


def test_begin_changes_needs_a_committed_list() -> None:
    e = DiffEngine()
    assert e.settled  # nothing pending, nothing streamed: settled, but no base list yet
    assert e.begin_changes(Snapshot((), (), T0, T0), gone_containers=(), gone_sandboxes=(), named=set) is None
    poll(e, T0)
    assert e.stream_touched() == (set(), set())
    e.stream(ev("c1", "created", T0 + 5 * MS, created=T0 + 5 * MS), T0 + 6 * MS)
    assert not e.settled  # the stream moved a record: no whole repeat, but a delta that shows it again
    assert e.stream_touched() == ({"c1"}, set())
    listed = Snapshot((), (csnap("c1", "created", T0 + 5 * MS),), T0 + 10 * MS, T0 + 11 * MS)
    assert e.begin_changes(listed, gone_containers=(), gone_sandboxes=(), named=lambda: {"s1"}) == []
    assert e.stream_touched() is None  # mid-poll
    e.failed(T0 + 12 * MS, "status lost")
    assert e.stream_touched() is None  # a dropped delta left marks behind: the next list is begun whole
    assert e.begin_changes(listed, gone_containers=(), gone_sandboxes=(), named=lambda: {"s1"}) is None
    e.begin(Snapshot((SB,), listed.containers, T0 + 20 * MS, T0 + 21 * MS))
    assert types(e.finish({}, T0 + 22 * MS)) == ["sensor.gap"]  # the failed poll; c1 was announced by the stream
    assert e.settled and e.stream_touched() == (set(), set())


def test_a_delta_after_the_stream_ends_what_the_stream_created_and_the_list_lacks() -> None:
    """A container known from the stream only, absent from the next list, vanished: the delta's
    count of listed records leaves it out, so ``finish`` looks for it (as ``begin`` would)."""
    for fast in (False, True):
        e = DiffEngine()
        poll(e, T0, containers=(csnap("c0", "running", T0),))
        e.stream(ev("c1", "started", T0 + 5 * MS, created=T0 + 4 * MS, started=T0 + 5 * MS), T0 + 6 * MS)
        listed = Snapshot((SB,), (csnap("c0", "running", T0),), T0 + 10 * MS, T0 + 11 * MS)
        if fast:
            assert e.begin_changes(Snapshot((), (), T0 + 10 * MS, T0 + 11 * MS), gone_containers=(),
                                   gone_sandboxes=(), named=lambda: {"s1"}) == []
        else:
            assert e.begin(listed) == []
        assert types(e.finish({}, T0 + 12 * MS)) == ["container.exited", "container.destroyed"], fast
        assert e.table_sizes() == (1, 1)


def test_begin_changes_ends_a_gone_sandbox_among_several() -> None:
    third = SandboxSnap("s3", "pod3", "ns", "uid-3", 0, "ready", T0 + 3 * MS)
    e = DiffEngine()
    poll(e, T0, sandboxes=(SB, SB2, third))
    need = e.begin_changes(Snapshot((), (), T0 + 100 * MS, T0 + 101 * MS), gone_containers=(),
                           gone_sandboxes=("s2",), named=set)
    assert need == []
    assert types(e.finish({}, T0 + 102 * MS)) == ["sandbox.notready", "sandbox.destroyed"]
    assert e.table_sizes() == (0, 2)


def test_a_dropped_delta_keeps_what_the_committed_list_showed_of_a_sandbox() -> None:
    """Plain and fast engines agree after a dropped begin: a streamed change of a sandbox that the
    dropped list showed changed is bounded by the committed list, on both paths."""
    outs = []
    early, early2 = (SandboxSnap(s.id, s.name, "ns", s.uid, 0, "ready", T0 - 50 * MS) for s in (SB, SB2))
    for fast in (False, True):
        e = DiffEngine()
        poll(e, T0, sandboxes=(early, early2))
        changed = SandboxSnap("s2", "pod2", "ns", "uid-2", 0, "notready", T0 - 50 * MS)
        if fast:
            e.begin_changes(Snapshot((changed,), (), T0 + 100 * MS, T0 + 101 * MS), gone_containers=(),
                            gone_sandboxes=("s1",), named=set)
        else:
            e.begin(Snapshot((changed,), (), T0 + 100 * MS, T0 + 101 * MS))
        e.failed(T0 + 102 * MS, "status lost")
        out = e.stream(StreamEvent("s2", "stopped", 0, None, None, changed), T0 + 110 * MS)
        out += e.stream(StreamEvent("s1", "stopped", 0, None, None, early), T0 + 111 * MS)
        assert [x.window_ns[0] for x in out] == [T0, T0], out  # the committed list's sent_ns
        outs.append(out)
    assert outs[0] == outs[1]


# --- streamed changes unsettle the engine ----------------------------------------------------------


def test_every_streamed_change_unsettles_the_engine() -> None:
    def fresh() -> DiffEngine:
        e = DiffEngine()
        poll(e, T0 + 8 * MS, containers=[csnap("c1", "created", T0 + 5 * MS)])
        assert e.settled
        return e

    e = fresh()  # a container's change
    e.stream(ev("c1", "started", T0 + 10 * MS, created=T0 + 5 * MS, started=T0 + 10 * MS), T0 + 11 * MS)
    assert not e.settled
    e = fresh()  # a new incarnation under a known ID
    assert types(e.stream(ev("c1", "created", T0 + 20 * MS, created=T0 + 20 * MS), T0 + 21 * MS)) == [
        "container.exited", "container.destroyed", "container.created"]
    assert not e.settled
    e = fresh()  # a new sandbox
    s3 = SandboxSnap("s3", "pod3", "ns", "uid-3", 0, "ready", T0 + 30 * MS)
    out = e.stream(StreamEvent("s3", "created", T0 + 30 * MS, None, None, s3), T0 + 31 * MS)
    assert types(out) == ["sandbox.ready"]
    assert not e.settled
    e = fresh()  # a sandbox's change
    stopped = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "notready", T0 + 1 * MS)
    assert types(e.stream(StreamEvent("s1", "stopped", T0 + 40 * MS, None, None, stopped), T0 + 41 * MS)) == [
        "sandbox.notready"]
    assert not e.settled


# --- ID reuse streamed ------------------------------------------------------------------------------


def test_a_streamed_new_incarnation_ends_the_old_one_before_its_creation() -> None:
    e = DiffEngine()
    poll(e, T0 + 8 * MS, containers=[csnap("c1", "running", T0 + 5 * MS)], details={"c1": ContainerDetail(
        "c1", T0 + 6 * MS, 0, None, None)})
    new = T0 + 50 * MS
    out = e.stream(ev("c1", "created", new, created=new), T0 + 60 * MS)
    assert [(x.type, x.why) for x in out] == [("container.exited", "container ID reused"),
                                              ("container.destroyed", "container ID reused"),
                                              ("container.created", None)]
    for x in out[:2]:  # the old incarnation ended before the new one was created, after the list
        assert T0 + 6 * MS <= x.window_ns[0] <= x.time_ns <= x.window_ns[1] <= new and x.observed_ns == T0 + 60 * MS
    assert out[2].time_ns == new
    assert e.table_sizes() == (1, 1)
    # the old incarnation is buried: its late events stay ignored
    assert e.stream(ev("c1", "stopped", T0 + 40 * MS, created=T0 + 5 * MS, finished=T0 + 40 * MS),
                    T0 + 61 * MS) == []


def test_a_status_naming_an_earlier_incarnation_is_ignored_without_an_event_time() -> None:
    e = DiffEngine()
    poll(e, T0 + 100 * MS, containers=[csnap("c1", "created", T0 + 50 * MS)])
    assert e.stream(ev("c1", "started", 0, created=T0 + 10 * MS, started=T0 + 11 * MS), T0 + 110 * MS) == []
    assert e.table_sizes() == (1, 1) and not e.resync_wanted


def test_without_usable_times_a_reused_id_asks_for_a_list() -> None:
    """An ID with a destroyed incarnation, listed again as a new one; an event with neither a status
    time nor an event time may be about either: a list tells."""
    e = DiffEngine()
    poll(e, T0 + 10 * MS, sandboxes=(SB, SB2), containers=[csnap("c1", "created", T0 + 5 * MS)])
    poll(e, T0 + 100 * MS, sandboxes=(SB2,))  # c1 and s1 destroyed: tombstones
    s1_new = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", T0 + 150 * MS)
    poll(e, T0 + 200 * MS, sandboxes=(SB2, s1_new), containers=[csnap("c1", "created", T0 + 150 * MS, "s2")])
    assert e.stream(StreamEvent("c1", "deleted", 0, None, None, None), T0 + 210 * MS) == []
    assert e.resync_wanted and e.table_sizes() == (1, 2)
    poll(e, T0 + 300 * MS, sandboxes=(SB2, s1_new), containers=[csnap("c1", "created", T0 + 150 * MS, "s2")])
    assert not e.resync_wanted
    assert e.stream(StreamEvent("s1", "deleted", 0, None, None, None), T0 + 310 * MS) == []
    assert e.resync_wanted and e.table_sizes() == (1, 2)


def test_an_unseen_incarnation_that_ended_stays_ended() -> None:
    """A new incarnation created and deleted before the sensor saw it is buried: its late events
    announce nothing."""
    e = DiffEngine()
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", T0 + 5 * MS)])
    poll(e, T0 + 100 * MS)  # c1 destroyed
    c_new = T0 + 120 * MS
    status = csnap("c1", "exited", c_new)
    assert e.stream(StreamEvent("c1", "deleted", T0 + 130 * MS, status, None, SB), T0 + 131 * MS) == []
    assert e.stream(ev("c1", "created", c_new, created=c_new), T0 + 132 * MS) == []
    poll(e, T0 + 200 * MS, sandboxes=())  # s1 destroyed
    sb_new = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "notready", T0 + 220 * MS)
    assert e.stream(StreamEvent("s1", "deleted", T0 + 230 * MS, None, None, sb_new), T0 + 231 * MS) == []
    assert e.stream(StreamEvent("s1", "created", T0 + 220 * MS, None, None, sb_new), T0 + 232 * MS) == []
    assert e.table_sizes() == (0, 0)


def test_a_streamed_new_incarnation_that_cannot_be_attributed_still_unsettles() -> None:
    """The old incarnation's end is forged from the stream; the new one has no pod sandbox status."""
    e = DiffEngine()
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", T0 + 5 * MS)])
    out = e.stream(ev("c1", "created", T0 + 50 * MS, created=T0 + 50 * MS, sandbox=None), T0 + 51 * MS)
    assert types(out) == ["container.exited", "container.destroyed"]
    assert e.resync_wanted and not e.settled and e.table_sizes() == (0, 1)


def test_a_sandbox_listed_in_an_earlier_state_is_lag_or_reuse_by_its_creation_time() -> None:
    stopped = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "notready", T0 + 1 * MS)
    e = DiffEngine()
    poll(e, T0 + 10 * MS, sandboxes=(stopped,))
    assert poll(e, T0 + 20 * MS, sandboxes=(SB,)) == []  # the same created_at: lag, not a new sandbox
    zero_stopped = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "notready", 0)
    zero = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", 0)
    e = DiffEngine()
    poll(e, T0 + 10 * MS, sandboxes=(zero_stopped,))
    assert [x.why for x in poll(e, T0 + 20 * MS, sandboxes=(zero,))] == [
        "sandbox ID reused", None]  # no creation time: an earlier state is a new sandbox


def test_an_unknown_sandbox_without_status_asks_for_a_list() -> None:
    e = DiffEngine()
    poll(e, T0)
    assert e.stream(StreamEvent("s9", "created", T0 + 5 * MS, None, None, None), T0 + 6 * MS) == []
    assert e.resync_wanted


# --- objects known only from the stream -------------------------------------------------------------


def test_a_late_streamed_container_ends_within_its_own_times() -> None:
    """Created at 9 ms and deleted at 13 ms, before the list at 16 ms; the stream tells late. Its
    forged exit is bounded by what is known of it, not by the list it never was in."""
    e = DiffEngine()
    poll(e, T0 + 16 * MS)
    assert types(e.stream(ev("c1", "created", T0 + 9 * MS, created=T0 + 9 * MS), T0 + 20 * MS)) == [
        "container.created"]
    out = e.stream(gone("c1", T0 + 13 * MS, SB), T0 + 21 * MS)
    assert types(out) == ["container.exited", "container.destroyed"]
    assert out[0].window_ns[0] <= T0 + 9 * MS


def test_a_late_streamed_sandbox_ends_within_its_own_times() -> None:
    e = DiffEngine()
    poll(e, T0 + 16 * MS, sandboxes=())
    s9 = SandboxSnap("s9", "pod9", "ns", "uid-9", 0, "ready", T0 + 9 * MS)
    assert types(e.stream(StreamEvent("s9", "created", T0 + 9 * MS, None, None, s9), T0 + 20 * MS)) == [
        "sandbox.ready"]
    out = poll(e, T0 + 30 * MS, sandboxes=())
    assert types(out) == ["sandbox.notready", "sandbox.destroyed"]
    assert out[0].window_ns[0] <= T0 + 9 * MS


# --- polls ------------------------------------------------------------------------------------------


def test_a_list_catching_up_with_the_stream_asks_no_status() -> None:
    e = DiffEngine()
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", T0 + 5 * MS)])
    e.stream(ev("c1", "started", T0 + 12 * MS, created=T0 + 5 * MS, started=T0 + 12 * MS), T0 + 13 * MS)
    assert e.begin(Snapshot((SB,), (csnap("c1", "running", T0 + 5 * MS),), T0 + 20 * MS, T0 + 21 * MS)) == []
    assert e.finish({}, T0 + 22 * MS) == []


def test_first_snapshot_sandbox_windows_start_at_their_created_at_and_events_carry_metadata() -> None:
    e = DiffEngine()
    (ready,) = poll(e, T0 + 10 * MS)
    assert ready.window_ns == (T0 + 1 * MS, T0 + 11 * MS) and ready.time_ns == T0 + 1 * MS
    assert ready.attempt == 0 and ready.pod is not None
    again = SandboxSnap("s1", "pod", "ns", "uid-1", 3, "ready", T0 + 1 * MS)  # attempt 3: reused by metadata
    out = poll(e, T0 + 20 * MS, sandboxes=(again,))
    assert [x.attempt for x in out] == [0, 0, 3]
    stopped = SandboxSnap("s1", "pod", "ns", "uid-1", 3, "notready", T0 + 1 * MS)
    (notready,) = poll(e, T0 + 30 * MS, sandboxes=(stopped,))
    assert notready.type == "sandbox.notready" and notready.pod is not None and notready.pod.uid == "uid-1"


def test_a_status_showing_the_exit_of_a_known_running_container_is_seen() -> None:
    e = DiffEngine()
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", T0 + 5 * MS)])
    assert e.begin(Snapshot((SB,), (csnap("c1", "running", T0 + 5 * MS),), T0 + 20 * MS, T0 + 21 * MS)) == ["c1"]
    out = e.finish({"c1": ContainerDetail("c1", T0 + 12 * MS, T0 + 22 * MS, 1, "Error")}, T0 + 23 * MS)
    assert [(x.type, x.synthetic, x.exit_code, x.time_ns) for x in out] == [
        ("container.running", False, None, T0 + 12 * MS), ("container.exited", False, 1, T0 + 22 * MS)]
    assert out[-1].window_ns[1] == T0 + 23 * MS  # the status answer came after the list


def test_a_created_at_equal_to_the_answer_time_bounds_the_next_step() -> None:
    e = DiffEngine()
    poll(e, T0 + 9 * MS, containers=[csnap("c1", "created", T0 + 10 * MS)])  # received at T0 + 10 ms
    (running,) = poll(e, T0 + 20 * MS, containers=[csnap("c1", "running", T0 + 10 * MS)], details={})
    assert running.window_ns[0] == T0 + 10 * MS


def test_too_many_held_events_ask_for_the_base_list() -> None:
    from sensor.diff import HELD_MAX

    e = DiffEngine()
    x = ev("c1", "created", T0, created=T0)
    for _ in range(HELD_MAX):
        e.stream(x, T0)
    assert not e.resync_wanted and e.held == HELD_MAX
    e.stream(x, T0)
    assert e.resync_wanted and e.held == 1


def test_a_container_in_an_unknown_sandbox_brings_the_sandbox_from_its_event() -> None:
    e = DiffEngine()
    poll(e, T0, sandboxes=())
    wrong_pod = StreamEvent("c1", "created", T0 + 5 * MS, csnap("c1", "created", T0 + 5 * MS, "s1"), None, SB2)
    assert e.stream(wrong_pod, T0 + 6 * MS) == []  # the container names s1, its event carries s2
    assert e.resync_wanted and e.table_sizes() == (0, 0)
    out = e.stream(ev("c2", "created", T0 + 7 * MS, created=T0 + 7 * MS, sandbox=SB), T0 + 8 * MS)
    assert [(x.type, x.sandbox_id) for x in out] == [("sandbox.ready", "s1"), ("container.created", "s1")]


def test_a_relisted_id_without_a_creation_time_forgets_its_tombstone() -> None:
    e = DiffEngine()
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", T0 + 5 * MS)])
    poll(e, T0 + 20 * MS)  # destroyed: buried
    poll(e, T0 + 30 * MS, containers=[csnap("c1", "created", 0)])  # listed again, created_at unknown
    out = e.stream(ev("c1", "started", T0 + 40 * MS, created=0, started=T0 + 40 * MS), T0 + 41 * MS)
    assert types(out) == ["container.running"] and not e.resync_wanted


def test_a_streamed_sandbox_end_is_placed_after_its_containers_ends() -> None:
    e = DiffEngine()
    poll(e, T0)
    e.stream(ev("c1", "created", T0 + 5 * MS, created=T0 + 5 * MS), T0 + 6 * MS)
    (_, destroyed) = e.stream(gone("c1", T0 + 90 * MS, SB), T0 + 91 * MS)
    out = e.stream(gone("s1", 0), T0 + 100 * MS)
    assert types(out) == ["sandbox.notready", "sandbox.destroyed"]
    assert all(x.time_ns >= destroyed.time_ns == T0 + 90 * MS for x in out)


def test_a_sandbox_the_stream_destroyed_stays_destroyed() -> None:
    e = DiffEngine()
    poll(e, T0 + 10 * MS)
    assert types(e.stream(gone("s1", T0 + 20 * MS), T0 + 21 * MS)) == ["sandbox.notready", "sandbox.destroyed"]
    stopped = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "notready", T0 + 1 * MS)
    assert e.stream(StreamEvent("s1", "stopped", T0 + 15 * MS, None, None, stopped), T0 + 22 * MS) == []
    assert e.table_sizes() == (0, 0)


def test_a_list_lagging_behind_a_streamed_exit_asks_no_status() -> None:
    e = DiffEngine()
    created = T0 + 5 * MS
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", created)])
    e.stream(ev("c1", "stopped", T0 + 15 * MS, created=created, started=T0 + 12 * MS, finished=T0 + 15 * MS),
             T0 + 16 * MS)
    assert e.begin(Snapshot((SB,), (csnap("c1", "running", created),), T0 + 20 * MS, T0 + 21 * MS)) == []
    assert e.finish({}, T0 + 22 * MS) == []


def test_a_replaced_then_destroyed_id_keeps_both_incarnations_buried() -> None:
    e = DiffEngine()
    old, new = T0 + 5 * MS, T0 + 50 * MS
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", old)])
    poll(e, T0 + 60 * MS, containers=[csnap("c1", "created", new)])  # replaced
    poll(e, T0 + 100 * MS)  # the new one destroyed
    assert e.stream(ev("c1", "started", T0 + 20 * MS, created=old, started=T0 + 20 * MS), T0 + 101 * MS) == []
    assert e.stream(ev("c1", "started", T0 + 70 * MS, created=new, started=T0 + 70 * MS), T0 + 102 * MS) == []
    assert e.table_sizes() == (0, 1)


def test_a_pending_sandbox_end_is_not_shown_by_the_committed_delta() -> None:
    """The delta path reuses generation numbers: a sandbox whose end waits for its containers must
    not look listed in the committed list; plain and fast engines place its streamed stop alike."""
    early = SandboxSnap("s2", "pod2", "ns", "uid-2", 0, "ready", T0 - 50 * MS)
    child = csnap("c1", "created", T0 - 40 * MS, "s2")
    outs = []
    for fast in (False, True):
        e = DiffEngine()
        poll(e, T0, sandboxes=(SB, early), containers=[child])
        if fast:
            e.begin_changes(Snapshot((), (), T0 + 100 * MS, T0 + 101 * MS), gone_containers=(),
                            gone_sandboxes=("s2",), named=lambda: {"s2"})
        else:
            e.begin(Snapshot((SB,), (child,), T0 + 100 * MS, T0 + 101 * MS))
        assert e.finish({}, T0 + 102 * MS) == []  # its end waits for c1
        stopped = SandboxSnap("s2", "pod2", "ns", "uid-2", 0, "notready", T0 - 50 * MS)
        out = e.stream(StreamEvent("s2", "stopped", 0, None, None, stopped), T0 + 110 * MS)
        assert [x.window_ns[0] for x in out] == [T0 - 50 * MS]  # not the committed list's sent_ns
        outs.append(out)
    assert outs[0] == outs[1]


def test_a_late_streamed_sandbox_a_list_replaces_ends_within_its_own_times() -> None:
    e = DiffEngine()
    poll(e, T0 + 16 * MS, sandboxes=())
    s9 = SandboxSnap("s9", "pod9", "ns", "uid-9", 0, "ready", T0 + 9 * MS)
    e.stream(StreamEvent("s9", "created", T0 + 9 * MS, None, None, s9), T0 + 20 * MS)
    s9_new = SandboxSnap("s9", "pod9", "ns", "uid-9", 0, "ready", T0 + 22 * MS)
    out = poll(e, T0 + 30 * MS, sandboxes=(s9_new,))
    assert [(x.type, x.why) for x in out][:2] == [("sandbox.notready", "sandbox ID reused"),
                                                  ("sandbox.destroyed", "sandbox ID reused")]
    assert out[0].window_ns[0] <= T0 + 9 * MS


def test_begin_changes_ends_every_gone_container_and_sees_changed_sandboxes() -> None:
    e = DiffEngine()
    cs = [csnap(f"c{i}", "created", T0 - 10 * MS) for i in range(3)]
    poll(e, T0, sandboxes=(SB, SB2), containers=cs)
    stopped = SandboxSnap("s2", "pod2", "ns", "uid-2", 0, "notready", T0 + 2 * MS)
    assert e.begin_changes(Snapshot((stopped,), (), T0 + 100 * MS, T0 + 101 * MS), gone_containers=("c0", "c1"),
                           gone_sandboxes=(), named=lambda: {"s1"}) == []
    out = e.finish({}, T0 + 102 * MS)
    assert sorted((x.container_id or x.sandbox_id, x.type) for x in out) == [
        ("c0", "container.destroyed"), ("c0", "container.exited"), ("c1", "container.destroyed"),
        ("c1", "container.exited"), ("s2", "sandbox.notready")]
    assert e.table_sizes() == (1, 2)


def test_sandbox_events_predating_the_tracked_incarnation_are_ignored() -> None:
    e = DiffEngine()
    s1 = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", T0 + 11 * MS)
    poll(e, T0 + 12 * MS, sandboxes=(s1,))
    earlier = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "notready", T0 + 8 * MS)
    assert e.stream(StreamEvent("s1", "stopped", T0 + 9 * MS, None, None, earlier), T0 + 20 * MS) == []
    assert e.stream(StreamEvent("s1", "stopped", 0, None, None, earlier), T0 + 21 * MS) == []  # by its status
    assert e.stream(StreamEvent("s1", "deleted", T0 + 10 * MS, None, None, None), T0 + 22 * MS) == []  # by time
    assert e.table_sizes() == (0, 1) and not e.resync_wanted


def test_a_buried_sandbox_id_ignores_statusless_events_and_admits_a_proven_new_one() -> None:
    e = DiffEngine()
    poll(e, T0 + 10 * MS)
    poll(e, T0 + 20 * MS, sandboxes=())  # s1 destroyed: buried
    assert e.stream(StreamEvent("s1", "stopped", T0 + 15 * MS, None, None, None), T0 + 21 * MS) == []
    s1_new = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", T0 + 30 * MS)
    out = e.stream(StreamEvent("s1", "created", T0 + 30 * MS, None, None, s1_new), T0 + 31 * MS)
    assert types(out) == ["sandbox.ready"] and out[0].window_ns[0] == T0 + 30 * MS == out[0].time_ns


def test_a_deleted_event_buries_an_unknown_incarnation() -> None:
    e = DiffEngine()
    poll(e, T0 + 10 * MS)
    s9 = SandboxSnap("s9", "pod9", "ns", "uid-9", 0, "notready", T0 + 12 * MS)
    assert e.stream(StreamEvent("s9", "deleted", T0 + 14 * MS, None, None, s9), T0 + 15 * MS) == []
    assert e.stream(StreamEvent("s9", "created", T0 + 12 * MS, None, None, s9), T0 + 16 * MS) == []  # late
    c9 = csnap("c9", "exited", T0 + 12 * MS)
    assert e.stream(StreamEvent("c9", "deleted", T0 + 14 * MS, c9, None, SB), T0 + 17 * MS) == []
    assert e.stream(ev("c9", "created", T0 + 12 * MS, created=T0 + 12 * MS), T0 + 18 * MS) == []  # late
    assert e.table_sizes() == (0, 1)


def test_containers_listed_in_a_streamed_sandbox_are_placed_after_its_ready() -> None:
    e = DiffEngine()
    poll(e, T0, sandboxes=())
    s9 = SandboxSnap("s9", "pod9", "ns", "uid-9", 0, "ready", T0 + 80 * MS)
    (ready,) = e.stream(StreamEvent("s9", "created", T0 + 80 * MS, None, None, s9), T0 + 81 * MS)
    out = poll(e, T0 + 100 * MS, sandboxes=(s9,), containers=[csnap("c1", "created", 0, "s9")])
    assert types(out) == ["container.created"] and out[0].time_ns >= ready.time_ns == T0 + 80 * MS


def test_stream_and_list_details_survivors_pin() -> None:
    """Small rules, one assertion each (the second mutation run's survivors)."""
    # a vanished sandbox ends after the last list that showed it; a forged notready says why
    e = DiffEngine()
    early = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", T0 - 50 * MS)
    poll(e, T0, sandboxes=(early,))
    out = poll(e, T0 + 100 * MS, sandboxes=())
    assert out[0].window_ns[0] == T0
    e = DiffEngine()
    poll(e, T0 + 10 * MS)
    out = e.stream(gone("s1", T0 + 20 * MS), T0 + 21 * MS)
    assert [(x.synthetic, x.why) for x in out] == [(True, "stopped and removed between polls"), (False, None)]
    # a streamed stop bounds nothing after it by when it was received
    e = DiffEngine()
    poll(e, T0)
    stopped = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "notready", T0 + 1 * MS)
    e.stream(StreamEvent("s1", "stopped", T0 + 40 * MS, None, None, stopped), T0 + 41 * MS)
    (destroyed,) = poll(e, T0 + 100 * MS, sandboxes=())
    assert destroyed.window_ns[0] <= T0 + 40 * MS
    # a container first seen in the stream: window from its created_at, its exit code, its attempt
    e = DiffEngine()
    poll(e, T0)
    out = e.stream(ev("c1", "stopped", T0 + 30 * MS, created=T0 + 10 * MS, started=T0 + 20 * MS,
                      finished=T0 + 30 * MS), T0 + 31 * MS)
    assert out[0].window_ns[0] == T0 + 10 * MS and out[-1].exit_code == 0 and out[0].attempt == 0
    # a sandbox first seen stopped, through a container's event
    e = DiffEngine()
    poll(e, T0, sandboxes=())
    s9 = SandboxSnap("s9", "pod9", "ns", "uid-9", 0, "notready", T0 + 5 * MS)
    out = e.stream(ev("c1", "created", T0 + 6 * MS, created=T0 + 6 * MS, sandbox=s9), T0 + 9 * MS)
    assert types(out) == ["sandbox.ready", "sandbox.notready", "container.created"]
    assert out[1].time_ns == T0 + 6 * MS


def test_stream_changes_of_listed_containers_survivors_pin() -> None:
    created, started = T0 - 50 * MS, T0 - 40 * MS
    c1 = csnap("c1", "running", created)
    # a listed container's streamed end: its forged exit is bounded by the last list
    e = DiffEngine()
    poll(e, T0, containers=[c1], details={"c1": ContainerDetail("c1", started, 0, None, None)})
    out = e.stream(gone("c1", T0 + 50 * MS, SB), T0 + 51 * MS)
    assert out[0].window_ns[0] == T0
    # ... and stays destroyed
    assert e.stream(ev("c1", "stopped", T0 + 45 * MS, created=created, started=started, finished=T0 + 45 * MS),
                    T0 + 52 * MS) == []
    # a streamed reuse, then the new incarnation destroyed: the old one stays buried
    e = DiffEngine()
    poll(e, T0, containers=[c1], details={"c1": ContainerDetail("c1", started, 0, None, None)})
    e.stream(ev("c1", "created", T0 + 20 * MS, created=T0 + 20 * MS), T0 + 21 * MS)
    poll(e, T0 + 100 * MS)
    assert e.stream(ev("c1", "stopped", T0 + 10 * MS, created=created, started=started, finished=T0 + 10 * MS),
                    T0 + 101 * MS) == []
    # a container whose sandbox's end waits for it: its streamed end asks for the list that completes it
    e = DiffEngine()
    poll(e, T0, containers=[c1], details={"c1": ContainerDetail("c1", started, 0, None, None)})
    poll(e, T0 + 100 * MS, sandboxes=(), containers=[c1])  # s1 gone from the list, c1 still names it
    e.stream(gone("c1", T0 + 120 * MS, None), T0 + 121 * MS)
    assert e.resync_wanted


def test_list_identity_survivors_pin() -> None:
    # another name under a known ID is another container (zero timestamps)
    e = DiffEngine()
    poll(e, T0, containers=[csnap("c1", "created", 0)])
    renamed = ContainerSnap("c1", "s1", "other", 0, "busybox", "sha256:b", "created", 0)
    assert [x.why for x in poll(e, T0 + 100 * MS, containers=[renamed])][:1] == ["container ID reused"]
    # a real created_at that turns zero (a quirk) is the same container
    e = DiffEngine()
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", T0 + 5 * MS)])
    assert poll(e, T0 + 100 * MS, containers=[csnap("c1", "created", 0)]) == []
    # a list lagging behind a streamed exit, with a status that shows it: nothing new
    e = DiffEngine()
    poll(e, T0 + 10 * MS, containers=[csnap("c1", "created", T0 + 5 * MS)])
    e.stream(ev("c1", "stopped", T0 + 15 * MS, created=T0 + 5 * MS, started=T0 + 12 * MS, finished=T0 + 15 * MS),
             T0 + 16 * MS)
    e.begin(Snapshot((SB,), (csnap("c1", "running", T0 + 5 * MS),), T0 + 20 * MS, T0 + 21 * MS))
    assert e.finish({"c1": ContainerDetail("c1", T0 + 12 * MS, T0 + 15 * MS, 0, None)}, T0 + 22 * MS) == []


def test_stream_during_a_poll_says_how_to_use_it() -> None:
    import pytest

    from sensor.diff import EngineStateError

    e = DiffEngine()
    poll(e, T0)
    e.begin(Snapshot((SB,), (), T0 + 10 * MS, T0 + 11 * MS))
    with pytest.raises(EngineStateError, match="apply stream events before or after a poll, under the same lock"):
        e.stream(ev("c1", "created", T0 + 10 * MS, created=T0 + 10 * MS), T0 + 12 * MS)


def test_past_touched_max_stream_ids_the_next_list_is_begun_whole(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The IDs the stream touched are kept for the next list's delta up to TOUCHED_MAX per kind:
    past that a delta would decode most of the list anyway, and the sets stop growing."""
    from sensor import diff

    monkeypatch.setattr(diff, "TOUCHED_MAX", 2)
    e = DiffEngine()
    poll(e, T0)
    for i, cid in enumerate(("c1", "c2")):
        e.stream(ev(cid, "created", T0 + (5 + i) * MS, created=T0 + 5 * MS), T0 + 10 * MS)
    assert e.stream_touched() == ({"c1", "c2"}, set())
    e.stream(ev("c3", "created", T0 + 8 * MS, created=T0 + 5 * MS), T0 + 10 * MS)
    assert e.stream_touched() is None
    assert e.begin_changes(Snapshot((), (), T0 + 20 * MS, T0 + 21 * MS), gone_containers=(), gone_sandboxes=(),
                           named=lambda: {"s1"}) is None
    cs = tuple(csnap(c, "created", T0 + 5 * MS) for c in ("c1", "c2", "c3"))
    e.begin(Snapshot((SB,), cs, T0 + 20 * MS, T0 + 21 * MS))
    assert e.finish({}, T0 + 22 * MS) == []
    assert e.stream_touched() == (set(), set())  # a finish starts counting again
