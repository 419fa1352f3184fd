"""sensor.diff: the gaps a mutation audit found (issue 13), one regression test each.

* G5 phantoms: a late stream event about a destroyed incarnation must never bring it back, whatever
  happened to its ID since (a newer incarnation streamed, listed, or created and deleted unseen);
* G4 time rule: ``time_ns`` always lies in ``window_ns``, also when the runtime reports a time in the
  future of the sensor's clock or out of order (docs/events.md, "Times");
* sandbox ID reuse is recognised on every path: the list (also when timestamps are zero), the
  sandbox's own stream events, and a container event that names a reused sandbox;
* a status answer that shows an exit with zero timestamps is an observation of the exit (G3).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot, StreamEvent

SCHEMA = json.loads((Path(__file__).parents[2] / "sensor" / "schema" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
MS = 1_000_000
T0 = 1_700_000_000_000_000_000
SB = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", T0 + 1 * MS)
SB_NEW = SandboxSnap("s1", "pod", "ns", "uid-2", 0, "ready", T0 + 150 * MS)  # the same ID, a new pod


def csnap(cid: str, state: str, created: int, sandbox: str = "s1") -> ContainerSnap:
    return ContainerSnap(cid, sandbox, "app", 0, "busybox", "sha256:b", state, created)  # type: ignore[arg-type]


def ev(cid: str, kind: str, t: int, *, created: int, started: int = 0, finished: int = 0,
       sandbox: SandboxSnap | None = SB) -> StreamEvent:
    state = {"created": "created", "started": "running", "stopped": "exited", "deleted": "exited"}[kind]
    status = csnap(cid, state, created, sandbox.id if sandbox else "")
    detail = ContainerDetail(cid, started, finished, 0 if finished else None, None)
    return StreamEvent(cid, kind, t, status, detail, sandbox)  # type: ignore[arg-type]


def sb_ev(kind: str, t: int, s: SandboxSnap) -> StreamEvent:
    return StreamEvent(s.id, kind, t, None, None, s)  # type: ignore[arg-type]


def poll(e: DiffEngine, t: int, sandboxes=(SB,), containers=(), details=None) -> list[Event]:  # type: ignore[no-untyped-def]
    e.begin(Snapshot(tuple(sandboxes), tuple(containers), t, t + MS))
    return checked(e.finish(details or {}, t + 2 * MS))


def checked(events: list[Event]) -> list[Event]:
    for k, x in enumerate(events, 1):
        VALIDATOR.validate(x.with_seq(k).to_dict())
        lo, hi = x.window_ns
        assert lo <= x.time_ns <= hi, x  # G4: the estimate lies in the certain interval
    return events


def types(events: list[Event]) -> list[str]:
    return [x.type for x in events]


# --- G5: no phantoms from late stream events --------------------------------------------------------


def test_a_late_event_after_an_unattributable_new_incarnation_does_not_resurrect_the_old_one() -> None:
    e = DiffEngine()
    x = T0 + 10 * MS
    poll(e, T0 + 20 * MS, containers=[csnap("c1", "running", x)], details={})
    assert types(poll(e, T0 + 100 * MS)) == ["container.exited", "container.destroyed"]
    # a new incarnation of c1 whose pod sandbox status is nil: it cannot be attributed (a list will)
    assert e.stream(ev("c1", "created", T0 + 120 * MS, created=T0 + 120 * MS, sandbox=None), T0 + 121 * MS) == []
    assert e.resync_wanted
    # ... and then a late event about the destroyed incarnation
    late = ev("c1", "stopped", T0 + 50 * MS, created=x, started=T0 + 11 * MS, finished=T0 + 50 * MS)
    assert e.stream(late, T0 + 122 * MS) == []
    assert e.table_sizes() == (0, 1)


def test_a_late_event_after_an_unseen_new_sandbox_incarnation_does_not_resurrect_the_old_one() -> None:
    e = DiffEngine()
    poll(e, T0 + 20 * MS)
    assert types(poll(e, T0 + 100 * MS, sandboxes=())) == ["sandbox.notready", "sandbox.destroyed"]
    # a new incarnation of s1 created and deleted before the sensor saw it: nothing to announce
    assert e.stream(sb_ev("deleted", T0 + 160 * MS, SB_NEW), T0 + 161 * MS) == []
    # ... and then a late event about the destroyed incarnation: it stays destroyed
    assert e.stream(sb_ev("stopped", T0 + 60 * MS, SB), T0 + 162 * MS) == []
    assert e.table_sizes() == (0, 0)


def test_a_late_event_about_an_incarnation_a_list_replaced_is_ignored() -> None:
    e = DiffEngine()
    old, new = T0 + 10 * MS, T0 + 150 * MS
    poll(e, T0 + 20 * MS, containers=[csnap("c1", "running", old)])
    out = poll(e, T0 + 200 * MS, containers=[csnap("c1", "running", new)])
    assert types(out) == ["container.exited", "container.destroyed", "container.created", "container.running"]
    # the old incarnation's stop, still in flight: neither ends the new one nor revives the old one
    late = ev("c1", "stopped", T0 + 100 * MS, created=old, started=T0 + 11 * MS, finished=T0 + 100 * MS)
    assert e.stream(late, T0 + 203 * MS) == []
    assert e.stream(ev("c1", "deleted", T0 + 120 * MS, created=old), T0 + 204 * MS) == []
    assert e.table_sizes() == (1, 1)
    # the new incarnation's own events still count
    out = e.stream(ev("c1", "stopped", T0 + 300 * MS, created=new, started=T0 + 151 * MS, finished=T0 + 300 * MS),
                   T0 + 301 * MS)
    assert types(checked(out)) == ["container.exited"] and out[0].time_ns == T0 + 300 * MS


def test_a_late_event_about_an_unseen_earlier_incarnation_does_not_end_the_tracked_one() -> None:
    """c1 was created at 8 ms and deleted at 10 ms between polls; the list shows c1 created at 11 ms.
    The stream's late events about the first one predate the tracked incarnation: a live ID is unique,
    so they are about an earlier one, and must neither end the tracked c1 nor announce the old one."""
    e = DiffEngine()
    poll(e, T0)
    new = T0 + 11 * MS
    poll(e, T0 + 12 * MS, containers=[csnap("c1", "created", new)])
    assert e.stream(ev("c1", "created", T0 + 8 * MS, created=T0 + 8 * MS), T0 + 20 * MS) == []
    assert e.stream(StreamEvent("c1", "deleted", T0 + 10 * MS, None, None, SB), T0 + 21 * MS) == []
    assert e.table_sizes() == (1, 1)
    out = e.stream(ev("c1", "started", T0 + 30 * MS, created=new, started=T0 + 30 * MS), T0 + 31 * MS)
    assert types(checked(out)) == ["container.running"]


def test_a_streamed_container_the_list_replaces_ends_within_what_is_known_of_it() -> None:
    """c1 was created at 9 ms and removed at 13 ms between polls; the stream tells of it late (it is
    announced), then the list shows a new c1. The old one never was in a list: its end is bounded by
    its own times only, not by the last list (which it may have predated)."""
    e = DiffEngine()
    poll(e, T0 + 16 * MS)
    assert types(e.stream(ev("c1", "created", T0 + 9 * MS, created=T0 + 9 * MS), T0 + 20 * MS)) == ["container.created"]
    out = poll(e, T0 + 30 * MS, containers=[csnap("c1", "created", T0 + 22 * MS)])
    assert [(x.type, x.why) for x in out][:2] == [("container.exited", "container ID reused"),
                                                  ("container.destroyed", "container ID reused")]
    assert out[0].window_ns[0] <= T0 + 13 * MS <= out[0].window_ns[1]


# --- sandbox ID reuse on every path ------------------------------------------------------------------


def test_a_reused_sandbox_id_with_zero_timestamps_is_told_apart_by_its_metadata() -> None:
    e = DiffEngine()
    zero = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", 0)
    poll(e, T0 + 20 * MS, sandboxes=[zero])
    out = poll(e, T0 + 100 * MS, sandboxes=[SandboxSnap("s1", "other", "ns", "uid-2", 0, "ready", 0)])
    assert [(x.type, x.why) for x in out] == [("sandbox.notready", "sandbox ID reused"),
                                              ("sandbox.destroyed", "sandbox ID reused"), ("sandbox.ready", None)]
    assert out[-1].pod is not None and out[-1].pod.uid == "uid-2"
    # missing metadata (an empty uid) proves nothing
    assert poll(e, T0 + 200 * MS, sandboxes=[SandboxSnap("s1", "", "", "", 0, "ready", 0)]) == []


def test_a_reused_container_id_without_metadata_or_times_is_told_apart_by_its_labels() -> None:
    """Missing metadata and future created_at hide everything but the labels, which are immutable too:
    a different non-empty label set under a known ID is another container (found by a random-seed
    run: the first incarnation got no destroyed, G2)."""
    e = DiffEngine()
    first = ContainerSnap("c1", "s1", "app", 0, "busybox", "sha256:b", "exited", T0 + 5 * MS, {"c": "one"})
    assert types(poll(e, T0 + 20 * MS, containers=[first])) == [
        "sandbox.ready", "container.created", "container.exited"]
    hidden = T0 + 3_600_000 * MS  # future_timestamps: proves nothing
    second = ContainerSnap("c1", "s1", "", 0, "busybox", "sha256:b", "exited", hidden, {"c": "two"})
    out = poll(e, T0 + 100 * MS, containers=[second])
    assert [(x.type, x.why) for x in out][:1] == [("container.destroyed", "container ID reused")]
    assert types(out)[1:] == ["container.created", "container.exited"]
    assert out[1].labels == {"c": "two"}
    # the same labels (or none at all) with the name missing prove nothing: no event
    same = ContainerSnap("c1", "s1", "", 0, "busybox", "sha256:b", "exited", hidden, {"c": "two"})
    assert poll(e, T0 + 200 * MS, containers=[same]) == []
    bare = ContainerSnap("c1", "s1", "", 0, "busybox", "sha256:b", "exited", hidden, {})
    assert poll(e, T0 + 300 * MS, containers=[bare]) == []


def test_a_reused_sandbox_id_without_metadata_is_told_apart_by_its_labels() -> None:
    e = DiffEngine()
    poll(e, T0 + 20 * MS, sandboxes=[SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", 0, {"app": "a"})])
    out = poll(e, T0 + 100 * MS, sandboxes=[SandboxSnap("s1", "", "", "", 0, "ready", 0, {"app": "b"})])
    assert [(x.type, x.why) for x in out] == [("sandbox.notready", "sandbox ID reused"),
                                              ("sandbox.destroyed", "sandbox ID reused"), ("sandbox.ready", None)]
    # metadata present on both sides decides alone: equal metadata, other labels, is the same sandbox
    e2 = DiffEngine()
    poll(e2, T0 + 20 * MS, sandboxes=[SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", 0, {"app": "a"})])
    assert poll(e2, T0 + 100 * MS, sandboxes=[SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", 0,
                                                            {"app": "b"})]) == []


def test_a_container_event_naming_a_reused_sandbox_is_not_attributed_to_the_old_pod() -> None:
    e = DiffEngine()
    poll(e, T0 + 20 * MS)
    # s1 was removed and created again (a new pod under the same ID) between polls; the stream
    # announces a container in the new pod before the list has shown the new sandbox
    out = e.stream(ev("c9", "created", T0 + 160 * MS, created=T0 + 160 * MS, sandbox=SB_NEW), T0 + 161 * MS)
    assert all(x.pod is None or x.pod.uid == "uid-2" for x in out), out
    assert out == [] and e.resync_wanted  # a list sorts out both incarnations
    out = poll(e, T0 + 200 * MS, sandboxes=[SB_NEW], containers=[csnap("c9", "created", T0 + 160 * MS)])
    assert types(out) == ["sandbox.notready", "sandbox.destroyed", "sandbox.ready", "container.created"]
    assert out[-1].pod is not None and out[-1].pod.uid == "uid-2"


def test_a_sandbox_event_with_other_metadata_is_another_incarnation() -> None:
    e = DiffEngine()
    zero = SandboxSnap("s1", "pod", "ns", "uid-1", 0, "ready", 0)
    poll(e, T0 + 20 * MS, sandboxes=[zero])
    other = SandboxSnap("s1", "pod", "ns", "uid-2", 0, "notready", 0)
    assert e.stream(sb_ev("stopped", T0 + 60 * MS, other), T0 + 61 * MS) == []
    assert e.resync_wanted


# --- G4: time_ns lies in window_ns -------------------------------------------------------------------


def test_a_future_reported_time_is_not_copied_outside_the_window() -> None:
    e = DiffEngine()
    poll(e, T0 + 100 * MS)
    future = T0 + 3_600_000 * MS
    (created,) = poll(e, T0 + 200 * MS, containers=[csnap("c1", "created", future)])
    assert created.window_ns == (T0 + 100 * MS, T0 + 201 * MS)  # the poll window: honest
    assert created.window_ns[0] <= created.time_ns <= created.window_ns[1]
    # the same for a streamed event's own time and a status time
    out = e.stream(ev("c1", "started", future, created=future, started=future), T0 + 300 * MS)
    assert types(checked(out)) == ["container.running"]


def test_state_lag_finished_before_the_last_poll_that_showed_running() -> None:
    """DESIGN.md section 6: the list said running at T0+200ms, the process had exited at T0+150ms."""
    e = DiffEngine()
    started, finished = T0 + 50 * MS, T0 + 150 * MS
    poll(e, T0 + 100 * MS, containers=[csnap("c1", "running", T0 + 10 * MS)], details={"c1": ContainerDetail(
        "c1", started, 0, None, None)})
    assert poll(e, T0 + 200 * MS, containers=[csnap("c1", "running", T0 + 10 * MS)]) == []
    (exited,) = poll(e, T0 + 300 * MS, containers=[csnap("c1", "exited", T0 + 10 * MS)],
                     details={"c1": ContainerDetail("c1", started, finished, 0, "Completed")})
    assert exited.time_ns == finished and exited.window_ns[0] <= finished


def test_state_lag_after_a_streamed_exit_is_not_id_reuse() -> None:
    """The stream announced the exit; List still shows the container running for a while (state lag,
    DESIGN.md section 6). The same created_at: the same container, no phantom new incarnation."""
    e = DiffEngine()
    created, started, finished = T0 + 10 * MS, T0 + 11 * MS, T0 + 50 * MS
    poll(e, T0 + 20 * MS, containers=[csnap("c1", "running", created)],
         details={"c1": ContainerDetail("c1", started, 0, None, None)})
    out = e.stream(ev("c1", "stopped", finished, created=created, started=started, finished=finished), T0 + 51 * MS)
    assert types(checked(out)) == ["container.exited"]
    assert poll(e, T0 + 60 * MS, containers=[csnap("c1", "running", created)]) == []  # lagging
    assert poll(e, T0 + 80 * MS, containers=[csnap("c1", "exited", created)],
                details={"c1": ContainerDetail("c1", started, finished, 0, None)}) == []
    assert types(poll(e, T0 + 100 * MS)) == ["container.destroyed"]


def test_state_lag_with_future_timestamps_after_a_streamed_exit() -> None:
    """Found by `make deep`: the runtime stamps every time an hour ahead (a quirk) and its List lags
    behind the exit the stream announced. The changing created_at proves nothing; the list did not
    go back from what the last list showed: no phantom new incarnation. The stream event's own time
    places the exit, not the status's future finished_at."""
    e = DiffEngine()
    hour = 3_600_000 * MS
    created, started, finished = T0 + 10 * MS, T0 + 11 * MS, T0 + 50 * MS
    poll(e, T0 + 20 * MS, containers=[csnap("c1", "running", created)],
         details={"c1": ContainerDetail("c1", started, 0, None, None)})
    quirky = ev("c1", "stopped", finished, created=created + hour, started=started + hour, finished=finished + hour)
    (exited,) = checked(e.stream(quirky, T0 + 60 * MS))
    assert exited.type == "container.exited" and exited.time_ns == finished
    assert poll(e, T0 + 70 * MS, containers=[csnap("c1", "running", T0 + 70 * MS + hour)]) == []  # lagging
    assert types(poll(e, T0 + 100 * MS)) == ["container.destroyed"]


# --- G3: a status that shows the exit is an observation of it ----------------------------------------


def test_a_status_showing_an_exit_with_zero_timestamps_is_seen() -> None:
    e = DiffEngine()
    out = poll(e, T0 + 100 * MS, containers=[csnap("c1", "running", 0)],
               details={"c1": ContainerDetail("c1", 0, 0, 3, "Error")})
    assert [(x.type, x.synthetic) for x in out][1:] == [
        ("container.created", True), ("container.running", False), ("container.exited", False)]
    assert out[-1].exit_code == 3
