"""sensor.diff: one test per synthetic case; every emitted event is validated against the schema."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import pytest

from sensor.diff import DiffEngine, EngineStateError, place
from sensor.events import Event, from_dict
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot

SCHEMA = json.loads((Path(__file__).parents[2] / "sensor" / "schema" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

T0 = 1_700_000_000_000_000_000


def sb(sid: str = "s1", state: str = "ready", created_at: int = T0 + 1, name: str = "pod") -> SandboxSnap:
    return SandboxSnap(sid, name, "default", "uid-" + sid, 0, state, created_at, {"app": "web"})  # type: ignore[arg-type]


def ct(
    cid: str = "c1", state: str = "running", created_at: int = T0 + 2, sandbox: str = "s1", name: str = "app"
) -> ContainerSnap:
    return ContainerSnap(cid, sandbox, name, 0, "nginx:1", "sha256:abc", state, created_at, {"k": "v"})  # type: ignore[arg-type]


def det(cid: str = "c1", started: int = 0, finished: int = 0, code: int | None = None, reason: str | None = None):
    return ContainerDetail(cid, started, finished, code, reason)


class Harness:
    """Drives an engine like the poll loop would, validating every event."""

    def __init__(self) -> None:
        self.engine = DiffEngine()
        self.seq = 0
        self.need: list[str] = []

    def poll(
        self,
        sent: int,
        received: int,
        sandboxes: tuple[SandboxSnap, ...] = (),
        containers: tuple[ContainerSnap, ...] = (),
        details: Mapping[str, ContainerDetail | None] | None = None,
        now: int | None = None,
    ) -> list[Event]:
        self.need = self.engine.begin(Snapshot(sandboxes, containers, sent, received))
        events = self.engine.finish(details or {}, received + 1 if now is None else now)
        for e in events:
            assert e.seq == 0  # the engine assigns no seq
            self.seq += 1
            d = e.with_seq(self.seq).to_dict()
            VALIDATOR.validate(d)
            assert from_dict(json.loads(json.dumps(d))) == e.with_seq(self.seq)
            assert e.window_ns[0] <= e.window_ns[1]
        return events


def kinds(events: list[Event]) -> list[tuple[str, bool, str | None]]:
    return [(e.type, e.synthetic, e.why) for e in events]


@pytest.fixture
def h() -> Harness:
    return Harness()


# --- first sight --------------------------------------------------------------------------------


def test_first_seen_created(h: Harness) -> None:
    events = h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="created"),))
    assert kinds(events) == [("sandbox.ready", False, None), ("container.created", False, None)]
    assert h.need == []  # a created container needs no status call
    created = events[1]
    assert created.time_ns == T0 + 2 and created.window_ns == (T0 + 2, T0 + 110)
    assert created.observed_ns == T0 + 111 and created.source == "poll"
    assert created.pod is not None and created.pod.name == "pod" and created.pod.uid == "uid-s1"
    assert (created.name, created.image, created.image_ref, created.labels) == (
        "app",
        "nginx:1",
        "sha256:abc",
        {"k": "v"},
    )
    assert events[0].sandbox_id == "s1" and events[0].labels == {"app": "web"} and events[0].time_ns == T0 + 1


def test_first_seen_running(h: Harness) -> None:
    # The first snapshot asks no status of running containers (seconds at 10,000): started_at is not
    # reported, so running is placed in [created_at, list] like any unreported time.
    events = h.poll(T0 + 100, T0 + 110, (sb(),), (ct(),))
    assert h.need == []
    assert kinds(events) == [
        ("sandbox.ready", False, None),
        ("container.created", True, "created before first seen"),
        ("container.running", False, None),
    ]
    assert events[1].time_ns == T0 + 2 and events[2].time_ns == (T0 + 2 + T0 + 110) // 2
    assert events[2].window_ns == (T0 + 2, T0 + 110)


def test_running_after_the_first_snapshot_asks_status(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(cid="c0"),))
    events = h.poll(T0 + 200, T0 + 210, (sb(),), (ct(cid="c0"), ct()), {"c1": det(started=T0 + 150)})
    assert h.need == ["c1"]
    assert events[-1].type == "container.running" and events[-1].time_ns == T0 + 150


def test_first_snapshot_asks_status_of_exited_only(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(cid="c0", state="created"), ct(cid="c1"), ct(cid="c2", state="exited")))
    assert h.need == ["c2"]


def test_first_seen_exited_that_ran(h: Harness) -> None:
    events = h.poll(
        T0 + 100,
        T0 + 110,
        (sb(),),
        (ct(state="exited"),),
        {"c1": det(started=T0 + 10, finished=T0 + 20, code=137, reason="OOMKilled")},
    )
    assert kinds(events)[1:] == [
        ("container.created", True, "created before first seen"),
        ("container.running", True, "ran between polls"),
        ("container.exited", False, None),
    ]
    created, running, exited = events[1:]
    assert running.time_ns == T0 + 10 and running.window_ns == (T0 + 2, T0 + 20)  # bounded by finished_at
    assert exited.time_ns == T0 + 20 and (exited.exit_code, exited.reason) == (137, "OOMKilled")
    assert created.exit_code is None and running.exit_code is None


def test_first_seen_exited_never_ran(h: Harness) -> None:
    events = h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="exited"),), {"c1": det(finished=T0 + 30, code=128)})
    assert kinds(events)[1:] == [
        ("container.created", True, "created before first seen"),
        ("container.exited", False, None),
    ]
    assert events[2].exit_code == 128


def test_exit_code_minus_one_is_unknown(h: Harness) -> None:
    events = h.poll(
        T0 + 100, T0 + 110, (sb(),), (ct(state="exited"),), {"c1": det(started=T0 + 5, finished=T0 + 9, code=-1)}
    )
    assert events[-1].type == "container.exited" and events[-1].exit_code is None and events[-1].reason is None


def test_created_then_exited_between_polls_forges_running(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="created"),))
    events = h.poll(
        T0 + 200, T0 + 210, (sb(),), (ct(state="exited"),), {"c1": det(started=T0 + 150, finished=T0 + 160, code=0)}
    )
    assert h.need == ["c1"]
    assert kinds(events) == [("container.running", True, "ran between polls"), ("container.exited", False, None)]
    assert events[0].time_ns == T0 + 150 and events[0].window_ns == (T0 + 100, T0 + 160)
    assert events[1].exit_code == 0 and events[1].window_ns == (T0 + 150, T0 + 210)  # after started_at


def test_normal_lifecycle(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="created"),))
    ev = h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="running"),), {"c1": det(started=T0 + 150)})
    assert kinds(ev) == [("container.running", False, None)] and ev[0].time_ns == T0 + 150
    ev = h.poll(
        T0 + 300,
        T0 + 310,
        (sb(),),
        (ct(state="exited"),),
        {"c1": det(started=T0 + 150, finished=T0 + 250, code=1, reason="Error")},
    )
    assert kinds(ev) == [("container.exited", False, None)] and (ev[0].exit_code, ev[0].reason) == (1, "Error")
    ev = h.poll(T0 + 400, T0 + 410, (sb(),), ())
    assert kinds(ev) == [("container.destroyed", False, None)]
    assert ev[0].window_ns == (T0 + 300, T0 + 410) and ev[0].exit_code is None


# --- vanishing ----------------------------------------------------------------------------------


def test_vanished_while_running(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(),), {"c1": det(started=T0 + 50)})
    events = h.poll(T0 + 200, T0 + 210, (sb(),), ())
    assert kinds(events) == [
        ("container.exited", True, "exited and removed between polls"),
        ("container.destroyed", False, None),
    ]
    for e in events:
        assert e.window_ns == (T0 + 100, T0 + 210)
        assert e.time_ns == T0 + 155  # midpoint estimate
        assert e.exit_code is None and e.pod is not None


def test_vanished_while_created(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="created"),))
    events = h.poll(T0 + 200, T0 + 210, (sb(),), ())
    assert kinds(events) == [
        ("container.exited", True, "exited and removed between polls"),
        ("container.destroyed", False, None),
    ]  # no running is invented


def test_vanished_after_exit(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="exited"),), {"c1": det(started=T0 + 5, finished=T0 + 9)})
    assert kinds(h.poll(T0 + 200, T0 + 210, (sb(),), ())) == [("container.destroyed", False, None)]


def test_failed_list_is_not_gone(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(),), {"c1": det(started=T0 + 50)})
    h.engine.failed(T0 + 300, "ListContainers: DEADLINE_EXCEEDED")
    h.engine.failed(T0 + 500, "ListContainers: UNAVAILABLE")
    assert h.engine.failures == 2 and h.engine.blind_since_ns == T0 + 110
    events = h.poll(T0 + 600, T0 + 610, (sb(),), (ct(),))
    assert kinds(events) == [("sensor.gap", False, None)]  # the container is still there: nothing else
    gap = events[0]
    assert gap.window_ns == (T0 + 100, T0 + 610) and gap.time_ns == T0 + 110
    assert gap.info == {"cause": "failed polls", "failed_polls": 2, "last_error": "ListContainers: UNAVAILABLE"}
    assert h.engine.failures == 0 and h.engine.blind_since_ns is None


def test_failed_polls_then_vanished(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(),), {"c1": det(started=T0 + 50)})
    h.engine.failed(T0 + 300, "boom")
    events = h.poll(T0 + 600, T0 + 610, (sb(),), ())
    assert kinds(events) == [
        ("sensor.gap", False, None),
        ("container.exited", True, "vanished during outage"),
        ("container.destroyed", False, None),
    ]
    assert events[1].source == "poll" and events[1].window_ns == (T0 + 100, T0 + 610)


def test_no_gap_before_the_first_success(h: Harness) -> None:
    h.engine.failed(T0, "connection refused")
    h.engine.reset_connection(T0 + 1)
    events = h.poll(T0 + 100, T0 + 110, (sb(),), ())
    assert kinds(events) == [("sandbox.ready", False, None)] and events[0].source == "poll"


def test_failed_drops_a_pending_begin(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(),), {"c1": det(started=T0 + 50)})
    h.engine.begin(Snapshot((sb(),), (), T0 + 200, T0 + 210))
    h.engine.failed(T0 + 220, "status calls timed out")
    with pytest.raises(EngineStateError):
        h.engine.finish({}, T0 + 230)
    assert h.engine.table_sizes() == (1, 1)  # nothing was committed
    events = h.poll(T0 + 300, T0 + 310, (sb(),), (ct(),))
    assert kinds(events) == [("sensor.gap", False, None)]


def test_notfound_race_falls_back_to_the_list(h: Harness) -> None:
    events = h.poll(T0 + 100, T0 + 110, (sb(),), (ct(),), {"c1": None})
    assert kinds(events)[1:] == [
        ("container.created", True, "created before first seen"),
        ("container.running", False, None),
    ]
    running = events[2]
    assert running.window_ns == (T0 + 2, T0 + 110) and running.time_ns == (T0 + 2 + T0 + 110) // 2
    events = h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="exited"),), {"c1": None})
    assert kinds(events) == [("container.exited", False, None)]
    assert events[0].exit_code is None and events[0].window_ns == (T0 + 100, T0 + 210)
    # only a later successful list that lacks it may destroy it
    assert kinds(h.poll(T0 + 300, T0 + 310, (sb(),), ())) == [("container.destroyed", False, None)]


def test_failed_status_call_is_like_notfound(h: Harness) -> None:
    events = h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="exited"),), {})
    assert kinds(events)[1:] == [
        ("container.created", True, "created before first seen"),
        ("container.exited", False, None),
    ]
    assert events[-1].exit_code is None


# --- identity quirks ----------------------------------------------------------------------------


def test_id_reuse(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(created_at=T0 + 2),), {"c1": det(started=T0 + 3)})
    events = h.poll(T0 + 200, T0 + 210, (sb(),), (ct(created_at=T0 + 150, state="created"),))
    assert kinds(events) == [
        ("container.exited", True, "container ID reused"),
        ("container.destroyed", True, "container ID reused"),
        ("container.created", False, None),
    ]
    exited, destroyed, created = events
    assert exited.window_ns == (T0 + 100, T0 + 150) and destroyed.window_ns == (T0 + 100, T0 + 150)
    assert created.time_ns == T0 + 150
    assert h.engine.table_sizes() == (1, 1)


def test_state_regression_is_id_reuse_even_without_timestamps(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="exited", created_at=0),), {"c1": det(finished=T0 + 5)})
    events = h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="running", created_at=0),), {"c1": det(started=T0 + 180)})
    assert h.need == ["c1"]
    assert kinds(events) == [
        ("container.destroyed", True, "container ID reused"),
        ("container.created", True, "created before first seen"),
        ("container.running", False, None),
    ]


def test_duplicate_ids_first_wins(h: Harness) -> None:
    events = h.poll(
        T0 + 100,
        T0 + 110,
        (sb(), sb(state="notready")),
        (ct(state="created"), ct(state="exited"), ct(state="running")),
    )
    assert kinds(events) == [("sandbox.ready", False, None), ("container.created", False, None)]
    assert h.need == []
    assert h.poll(T0 + 200, T0 + 210, (sb(), sb()), (ct(state="created"), ct(state="running"))) == []


def test_missing_metadata_is_still_reported(h: Harness) -> None:
    bare_sb = SandboxSnap("s1", "", "", "", 0, "ready", 0)
    bare = ContainerSnap("c1", "s1", "", 0, "", "", "created", 0)
    events = h.poll(T0 + 100, T0 + 110, (bare_sb,), (bare,))
    assert kinds(events) == [("sandbox.ready", False, None), ("container.created", False, None)]
    assert events[1].name == "" and events[1].labels == {}
    # nothing known about its past: lo 0, and the estimate is the snapshot's sent_ns
    assert events[1].time_ns == T0 + 100 and events[1].window_ns == (0, T0 + 110)


def test_unknown_state(h: Harness) -> None:
    events = h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="unknown"),))
    assert kinds(events)[1:] == [("container.created", True, "created before first seen")]
    assert h.need == []
    assert h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="unknown"),)) == []
    ev = h.poll(T0 + 300, T0 + 310, (sb(),), (ct(state="running"),), {"c1": det(started=T0 + 250)})
    assert kinds(ev) == [("container.running", False, None)]


def test_container_without_a_known_sandbox(h: Harness) -> None:
    events = h.poll(T0 + 100, T0 + 110, (), (ct(state="created", sandbox="elsewhere"),))
    assert events[0].pod is None and events[0].sandbox_id == "elsewhere"


# --- outages ------------------------------------------------------------------------------------


def test_outage_gap_and_vanished_during_outage(h: Harness) -> None:
    h.poll(
        T0 + 100,
        T0 + 110,
        (sb(), sb("s2")),
        (ct(), ct("c2", sandbox="s2")),
        {"c1": det(started=T0 + 3), "c2": det(started=T0 + 4)},
    )
    h.engine.failed(T0 + 200, "UNAVAILABLE: socket closed")
    h.engine.reset_connection(T0 + 300)
    # the runtime came back with c1 and s1 kept, c2/s2 lost
    events = h.poll(T0 + 400, T0 + 410, (sb(),), (ct(),))
    assert kinds(events) == [
        ("sensor.gap", False, None),
        ("container.exited", True, "vanished during outage"),
        ("container.destroyed", False, None),
        ("sandbox.notready", True, "vanished during outage"),
        ("sandbox.destroyed", False, None),
    ]
    assert all(e.source == "resync" for e in events)
    assert events[0].window_ns == (T0 + 100, T0 + 410)
    assert events[0].info is not None and events[0].info["cause"] == "reconnect"
    assert [e.container_id for e in events[1:3]] == ["c2", "c2"]
    # exactly once: the kept container is not announced again, and the next poll is ordinary
    assert h.poll(T0 + 500, T0 + 510, (sb(),), (ct(),)) == []


def test_reconnect_with_nothing_lost_is_just_a_gap(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="created"),))
    h.engine.reset_connection(T0 + 150)
    assert h.engine.blind_since_ns == T0 + 110
    assert kinds(h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="created"),))) == [("sensor.gap", False, None)]


# --- sandboxes and ordering ---------------------------------------------------------------------


def test_sandbox_first_seen_notready(h: Harness) -> None:
    events = h.poll(T0 + 100, T0 + 110, (sb(state="notready"),))
    assert kinds(events) == [("sandbox.ready", True, "created before first seen"), ("sandbox.notready", False, None)]
    assert events[0].time_ns == T0 + 1 and events[1].window_ns == (T0 + 1, T0 + 110)


def test_sandbox_vanished_while_ready(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),))
    events = h.poll(T0 + 200, T0 + 210, ())
    assert kinds(events) == [
        ("sandbox.notready", True, "stopped and removed between polls"),
        ("sandbox.destroyed", False, None),
    ]


def test_sandbox_stopped_then_removed(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),))
    assert kinds(h.poll(T0 + 200, T0 + 210, (sb(state="notready"),))) == [("sandbox.notready", False, None)]
    assert kinds(h.poll(T0 + 300, T0 + 310, ())) == [("sandbox.destroyed", False, None)]


def test_sandbox_ready_precedes_created_and_destroyed_follows(h: Harness) -> None:
    events = h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="created"), ct("c2", state="created")))
    assert [e.type for e in events] == ["sandbox.ready", "container.created", "container.created"]
    events = h.poll(T0 + 200, T0 + 210, (), ())
    types = [(e.type, e.container_id) for e in events]
    assert types.index(("sandbox.destroyed", None)) > types.index(("container.destroyed", "c1"))
    assert types.index(("sandbox.destroyed", None)) > types.index(("container.destroyed", "c2"))


def test_sandbox_end_waits_for_its_listed_containers(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="created"),))
    # the sandbox list no longer has s1, but the (later) container list still names it
    assert h.poll(T0 + 200, T0 + 210, (), (ct(state="created"),)) == []
    events = h.poll(T0 + 300, T0 + 310, (), ())
    assert [e.type for e in events] == [
        "container.exited",
        "container.destroyed",
        "sandbox.notready",
        "sandbox.destroyed",
    ]
    assert events[3].window_ns[0] == T0 + 100  # from when it was first missing


def test_sandbox_id_reuse(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(created_at=T0 + 1),))
    events = h.poll(T0 + 200, T0 + 210, (sb(created_at=T0 + 150),))
    assert kinds(events) == [
        ("sandbox.notready", True, "sandbox ID reused"),
        ("sandbox.destroyed", True, "sandbox ID reused"),
        ("sandbox.ready", False, None),
    ]


# --- times --------------------------------------------------------------------------------------


def test_future_timestamp_keeps_the_poll_window(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),))
    future = T0 + 10_000
    events = h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="created", created_at=future),))
    # a time in the future of the answer is no time: estimated inside the (honest) poll window
    assert events[0].time_ns == T0 + 155 and events[0].window_ns == (T0 + 100, T0 + 210)


def test_changing_future_timestamps_are_not_id_reuse(h: Harness) -> None:
    # the future-timestamps quirk: every answer says "now + 1 h", so created_at changes every poll
    h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="created", created_at=T0 + 50),))
    for k in range(1, 4):
        future = T0 + 3_600_000_000_000 + k * 100
        quirky = (sb(created_at=future),), (ct(state="created", created_at=future),)
        assert h.poll(T0 + 100 + k * 100, T0 + 110 + k * 100, *quirky) == []
    assert h.poll(T0 + 500, T0 + 510, (sb(),), (ct(state="created", created_at=T0 + 50),)) == []


def test_zero_then_real_created_at_is_the_same_container(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(created_at=0),), (ct(state="created", created_at=0),))
    assert h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="created", created_at=T0 + 50),)) == []
    # once a real created_at is known, a different one is a new incarnation
    events = h.poll(T0 + 300, T0 + 310, (sb(),), (ct(state="created", created_at=T0 + 250),))
    assert [e.type for e in events] == ["container.exited", "container.destroyed", "container.created"]


def test_past_timestamp_widens_the_window(h: Harness) -> None:
    h.poll(T0 + 100, T0 + 110, (sb(),))
    events = h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="created", created_at=T0 + 50),))
    assert events[0].time_ns == T0 + 50 and events[0].window_ns == (T0 + 50, T0 + 210)


def test_window_contains_the_truth_across_a_lifecycle(h: Harness) -> None:
    truth = {"created": T0 + 130, "running": T0 + 140, "exited": T0 + 260, "destroyed": T0 + 380}
    h.poll(T0 + 100, T0 + 110, (sb(),))
    seen = h.poll(T0 + 200, T0 + 205, (sb(),), (ct(created_at=0),), {"c1": det(started=0)})  # zero timestamps
    seen += h.poll(T0 + 300, T0 + 310, (sb(),), (ct(state="exited", created_at=0),), {"c1": None})
    seen += h.poll(T0 + 400, T0 + 410, (sb(),), ())
    assert [e.type.split(".")[1] for e in seen] == list(truth)
    for e in seen:
        lo, hi = e.window_ns
        assert lo <= truth[e.type.split(".")[1]] <= hi, e
        assert lo <= e.time_ns <= hi
    assert [e.time_ns for e in seen] == sorted(e.time_ns for e in seen)


def test_place_rules() -> None:
    # no previous snapshot, nothing reported: lo 0, estimate origin (the snapshot's sent_ns) or hi
    assert place([0], 0, 100) == [(100, 0, 100)]
    assert place([0], 0, 100, origin=90) == [(90, 0, 100)]
    # first snapshot: the own reported time becomes lo
    assert place([40], 0, 100) == [(40, 40, 100)]
    # forged step between two reported ones
    assert place([10, 0, 30], 0, 100) == [(10, 10, 30), (20, 10, 30), (30, 10, 100)]
    # midpoint, never before the previous event
    assert place([0, 0], 50, 100) == [(75, 50, 100), (75, 50, 100)]
    # a reported time before lo widens the window; a future one is no time (estimated inside it)
    assert place([20], 50, 100) == [(20, 20, 100)]
    assert place([500], 50, 100) == [(75, 50, 100)]
    assert place([500], 0, 100, origin=90) == [(90, 0, 100)]
    # floor from an earlier announced step, cap from a later event
    assert place([0], 50, 100, floor=70) == [(85, 70, 100)]
    assert place([0], 50, 100, cap=60) == [(55, 50, 60)]
    # an estimate is not placed before the object's previous event (when the window allows)
    assert place([0], 50, 100, after=90) == [(90, 50, 100)]
    assert place([0], 50, 100, after=120) == [(75, 50, 100)]


# --- protocol, memory, steady state ---------------------------------------------------------------


def test_call_order_is_enforced() -> None:
    engine = DiffEngine()
    with pytest.raises(EngineStateError, match="without begin"):
        engine.finish({}, 0)
    engine.begin(Snapshot((), (), 1, 2))
    with pytest.raises(EngineStateError, match="before finish"):
        engine.begin(Snapshot((), (), 3, 4))


def test_steady_state_needs_no_status_and_emits_nothing(h: Harness) -> None:
    containers = tuple(ct(f"c{i}", state=("created", "running", "exited")[i % 3]) for i in range(300))
    details = {c.id: det(c.id, started=T0 + 5, finished=T0 + 6 if c.state == "exited" else 0) for c in containers}
    first = h.poll(T0 + 100, T0 + 110, (sb(),), containers, details)
    assert len(h.need) == 100 and len(first) == 1 + 100 * 1 + 100 * 2 + 100 * 3  # first snapshot: exited only
    for k in range(3):
        assert h.poll(T0 + 200 + k * 100, T0 + 210 + k * 100, (sb(),), containers) == []
        assert h.need == []


def test_memory_is_bounded_under_endless_churn(h: Harness) -> None:
    t = T0
    sizes = []
    for i in range(3000):
        t += 100
        live = tuple(ct(f"c{j}", state="running", created_at=t - 50, sandbox=f"s{j % 7}") for j in range(i, i + 5))
        sandboxes = tuple(sb(f"s{k}") for k in range(7))
        h.engine.begin(Snapshot(sandboxes, live, t, t + 10))
        h.engine.finish({}, t + 11)
        sizes.append(h.engine.table_sizes())
    assert max(sizes) == (5, 7)
    assert sizes[-1] == (5, 7)


def test_status_showing_the_exit_wins_over_the_list(h: Harness) -> None:
    """The list said running, the (later) status answer already shows the exit: the exit is seen."""
    events = h.poll(T0 + 100, T0 + 110, (sb(),), (ct(state="running"),),
                    {"c1": det(started=T0 + 5, finished=T0 + 105, code=2, reason="Error")})
    assert [e.type for e in events][1:] == ["container.created", "container.running", "container.exited"]
    exited = events[-1]
    assert (exited.synthetic, exited.exit_code, exited.reason, exited.time_ns) == (False, 2, "Error", T0 + 105)
    assert h.poll(T0 + 200, T0 + 210, (sb(),), (ct(state="exited"),),
                  {"c1": det(started=T0 + 5, finished=T0 + 105, code=2, reason="Error")}) == []
