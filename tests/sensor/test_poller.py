"""The poll loop end to end: fake runtime on a real socket, virtual clock, truth compared with events."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from fakecri.model import CriError
from fakecri.server import CallPolicy
from fakecri.truth import ContainerTransition
from tests.sensor.conftest import start_containers

MS = 1_000_000
SCHEMA = json.loads((Path(__file__).parents[2] / "sensor/schema/event.schema.json").read_text())


def by_type(events: list[dict], cid: str) -> dict[str, dict]:
    return {e["type"]: e for e in events if e["container_id"] == cid}


def truth_time(model, cid: str, transition: str) -> int:  # type: ignore[no-untyped-def]
    return next(r.time_ns for r in model.truth
                if isinstance(r, ContainerTransition) and r.container_id == cid and r.transition == transition)


def validate(events: list[dict]) -> None:
    for e in events:
        jsonschema.validate(e, SCHEMA)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))


def test_fast_exit_is_forged_with_a_true_window(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("batch", "default", "u1")
    p.step()
    clock.advance(50 * MS)
    c = m.create_container(sb.id, "job", 0, "busybox")
    m.start_container(c.id)
    clock.advance(50 * MS)
    m.exit_container(c.id, 0)
    clock.advance(50 * MS)
    m.remove_container(c.id)
    clock.advance(100 * MS)
    p.step()  # the container lived and died between two polls: invisible, so no events at all
    events = r.events()
    assert by_type(events, c.id) == {}
    # A container that is seen running, then exits and is removed between polls:
    c2 = m.create_container(sb.id, "job2", 0, "busybox")
    m.start_container(c2.id)
    clock.advance(250 * MS)
    p.step()
    clock.advance(100 * MS)
    m.exit_container(c2.id, 1)
    clock.advance(20 * MS)
    m.remove_container(c2.id)
    clock.advance(130 * MS)
    p.step()
    events = r.events()
    validate(events)
    got = by_type(events, c2.id)
    assert list(got) == ["container.created", "container.running", "container.exited", "container.destroyed"]
    exited, destroyed = got["container.exited"], got["container.destroyed"]
    assert exited["synthetic"] is True and exited["why"] == "exited and removed between polls"
    assert exited["exit_code"] is None
    lo, hi = exited["window_ns"]
    assert lo <= truth_time(m, c2.id, "exited") <= hi
    lo, hi = destroyed["window_ns"]
    assert lo <= truth_time(m, c2.id, "destroyed") <= hi
    assert got["container.created"]["time_ns"] == truth_time(m, c2.id, "created")  # runtime-reported
    assert got["container.running"]["time_ns"] == truth_time(m, c2.id, "running")


def test_exit_seen_carries_code_reason_and_true_time(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(sb.id, "c", 0, "busybox")
    m.start_container(c.id)
    p.step()
    clock.advance(100 * MS)
    m.exit_container(c.id, 137, "OOMKilled")
    clock.advance(150 * MS)
    p.step()
    ex = by_type(r.events(), c.id)["container.exited"]
    assert (ex["synthetic"], ex["exit_code"], ex["reason"]) == (False, 137, "OOMKilled")
    assert ex["time_ns"] == truth_time(m, c.id, "exited")


class Flaky(CallPolicy):
    def __init__(self) -> None:
        self.fail: str | None = None

    def before_call(self, method: str, api: str, target: str | None) -> None:
        if self.fail and method.startswith("List"):
            raise CriError(self.fail, "injected")


@pytest.mark.parametrize("code", ["UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED"])
def test_failed_list_is_never_read_as_empty(rig, code: str) -> None:  # type: ignore[no-untyped-def]
    policy = Flaky()
    r = rig(policy=policy)
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(sb.id, "c", 0, "busybox")
    m.start_container(c.id)
    p.step()
    policy.fail = code
    for _ in range(4):
        clock.advance(250 * MS)
        assert p.step() is False
    policy.fail = None
    clock.advance(250 * MS)
    while not p.step():  # reconnects where the code meant "connection lost"
        clock.advance(250 * MS)
    events = r.events()
    validate(events)
    types = [e["type"] for e in events if e["container_id"] == c.id]
    assert "container.exited" not in types and "container.destroyed" not in types
    gaps = [e for e in events if e["type"] == "sensor.gap"]
    assert len(gaps) == 1
    assert gaps[0]["window_ns"][0] < gaps[0]["window_ns"][1]


def test_runtime_restart_resyncs_without_duplicates(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    m, clock, p, server = r.model, r.clock, r.poller, r.server
    sb = m.run_pod_sandbox("p", "ns", "u")
    keep = m.create_container(sb.id, "keep", 0, "busybox")
    m.start_container(keep.id)
    gone = m.create_container(sb.id, "gone", 0, "busybox")
    m.start_container(gone.id)
    p.step()
    server.stop(grace=None)
    clock.advance(250 * MS)
    assert p.step() is False
    m.exit_container(gone.id, 0)
    m.remove_container(gone.id)
    server.start()
    clock.advance(250 * MS)
    while not p.step():
        clock.advance(250 * MS)
    events = r.events()
    validate(events)
    keep_types = [e["type"] for e in events if e["container_id"] == keep.id]
    assert keep_types == ["container.created", "container.running"]  # no duplicates after the resync
    gone_events = by_type(events, gone.id)
    assert gone_events["container.exited"]["why"] == "vanished during outage"
    assert gone_events["container.exited"]["synthetic"] is True
    assert [e["type"] for e in events].count("sensor.connected") == 2
    gap = next(e for e in events if e["type"] == "sensor.gap")
    assert gap["window_ns"][0] <= truth_time(m, gone.id, "destroyed") <= gap["window_ns"][1]


class RemoveOnStatus(CallPolicy):
    """The runtime removes the container between the list and the status call."""

    def __init__(self) -> None:
        self.model = None

    def before_call(self, method: str, api: str, target: str | None) -> None:
        if method == "ContainerStatus" and self.model is not None and target in self.model.containers:
            c = self.model.containers[target]
            if c.state == "running":
                self.model.exit_container(target, 0)
            self.model.remove_container(target)


def test_notfound_race_is_tolerated(rig) -> None:  # type: ignore[no-untyped-def]
    policy = RemoveOnStatus()
    r = rig(policy=policy)
    policy.model = r.model
    m, clock, p = r.model, r.clock, r.poller
    p.step()  # the first snapshot (it asks no status of running containers)
    clock.advance(250 * MS)
    sb = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(sb.id, "c", 0, "busybox")
    m.start_container(c.id)
    p.step()  # list shows it running; status finds it gone
    policy.model = None
    clock.advance(250 * MS)
    p.step()
    events = r.events()
    validate(events)
    types = [e["type"] for e in events if e["container_id"] == c.id]
    assert types == ["container.created", "container.running", "container.exited", "container.destroyed"]
    destroyed = by_type(events, c.id)["container.destroyed"]
    assert destroyed["observed_ns"] >= truth_time(m, c.id, "destroyed")


def test_memory_stays_bounded_under_churn(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("p", "ns", "u")
    for i in range(60):
        c = m.create_container(sb.id, f"c{i}", 0, "busybox")
        m.start_container(c.id)
        p.step()
        clock.advance(250 * MS)
        m.exit_container(c.id, 0)
        m.remove_container(c.id)
        p.step()
        clock.advance(250 * MS)
        assert p.engine.table_sizes() == (0, 1)


def test_a_poll_over_its_status_budget_keeps_exits_and_estimates_starts(rig) -> None:  # type: ignore[no-untyped-def]
    """At most ``status_budget`` ContainerStatus calls per poll (churn: docs/performance.md); the
    engine lists exited containers first, so their exit codes and times stay exact while the start
    times of the rest are estimated inside honest windows."""
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    p.status_budget = 2
    p.step()  # the first snapshot (empty)
    sb = m.run_pod_sandbox("p", "ns", "u")
    started = start_containers(m, sb.id, "run", 3)
    gone = m.create_container(sb.id, "quick", 0, "busybox")
    m.start_container(gone.id)
    clock.advance(50 * MS)
    m.exit_container(gone.id, 3, "Error")
    clock.advance(200 * MS)
    calls = r.client.rpc_count.get("ContainerStatus", 0)
    p.step()
    assert r.client.rpc_count["ContainerStatus"] - calls == 2
    assert p.metrics.status_skipped._value.get() == 2
    events = r.events()
    validate(events)
    ex = by_type(events, gone.id)["container.exited"]
    assert (ex["exit_code"], ex["time_ns"]) == (3, truth_time(m, gone.id, "exited"))
    exact = 0
    for cid in started:
        run = by_type(events, cid)["container.running"]
        assert run["window_ns"][0] <= truth_time(m, cid, "running") <= run["window_ns"][1]
        exact += run["time_ns"] == truth_time(m, cid, "running")
    assert exact == 1  # the one start the budget still had room for


def test_status_calls_stop_at_the_time_share_of_the_poll_but_exits_are_always_asked(rig) -> None:  # type: ignore[no-untyped-def]
    """``status_time_share`` (crisensor run: 30% of the poll interval): no status call for a start is
    issued after it, and what was not asked is placed like any unreported change (honest windows).
    Exits are asked whatever the time: an exit code cannot be estimated (found against real
    containerd: after a reconnect on a loaded machine the resync's exit came out without its code)."""
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    p.status_time_share = 0.0  # already past: the poll asks nothing it may leave out
    p.step()
    sb = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(sb.id, "c", 0, "busybox")
    m.start_container(c.id)
    runner = m.create_container(sb.id, "r", 0, "busybox")
    m.start_container(runner.id)
    clock.advance(50 * MS)
    m.exit_container(c.id, 3, "Error")
    clock.advance(200 * MS)
    p.step()
    assert r.client.rpc_count.get("ContainerStatus", 0) == 1  # the exit only
    assert p.metrics.status_skipped._value.get() == 1
    events = r.events()
    validate(events)
    ex = by_type(events, c.id)["container.exited"]
    assert (ex["exit_code"], ex["time_ns"]) == (3, truth_time(m, c.id, "exited"))
    run = by_type(events, runner.id)["container.running"]
    assert run["window_ns"][0] <= truth_time(m, runner.id, "running") <= run["window_ns"][1]


def test_exits_beyond_the_count_budget_are_still_asked(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    p.status_budget = 1
    p.step()
    sb = m.run_pod_sandbox("p", "ns", "u")
    quick = start_containers(m, sb.id, "q", 3)
    clock.advance(50 * MS)
    for i, cid in enumerate(quick):
        m.exit_container(cid, 10 + i, "Error")
    clock.advance(200 * MS)
    p.step()
    assert r.client.rpc_count.get("ContainerStatus", 0) == 3
    events = r.events()
    assert [by_type(events, cid)["container.exited"]["exit_code"] for cid in quick] == [10, 11, 12]


def test_cri_calls_metric_counts_what_the_runtime_served(rig) -> None:  # type: ignore[no-untyped-def]
    """``crisensor_cri_calls_total{method}`` is the load on the runtime: per method, as many calls
    as the fake recorded serving (the handshake, lists, status calls for exits)."""
    from collections import Counter

    from prometheus_client import generate_latest

    from fakecri.truth import RpcServed

    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("web", "default", "u1")
    gone = m.create_container(sb.id, "gone", 0, "busybox")
    m.start_container(gone.id)
    p.step()
    for cid in start_containers(m, sb.id, "c", 3)[:2]:
        m.exit_container(cid, 0)
    m.exit_container(gone.id, 0)
    clock.advance(250 * MS)
    p.step()
    m.remove_container(gone.id)
    clock.advance(250 * MS)
    p.step()
    served = Counter(rec.method for rec in m.truth if isinstance(rec, RpcServed))
    text = generate_latest(p.metrics.registry).decode()
    scraped = {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line.startswith("crisensor_cri_calls_total{")}
    assert served["ContainerStatus"] >= 3 and served["ListContainers"] == 3
    assert scraped == {k: float(v) for k, v in served.items()}


class CollectorSeen(CallPolicy):
    """Records, per ListContainers call, whether the cyclic collector was on (the fake serves from a
    thread of the sensor's own process here); ``fail`` makes the next list fail."""

    def __init__(self) -> None:
        self.seen: list[bool] = []
        self.fail = False

    def before_call(self, method: str, api: str, target: str | None) -> None:
        if method == "ListContainers":
            import gc

            self.seen.append(gc.isenabled())
            if self.fail:
                self.fail = False
                raise CriError("UNAVAILABLE", "injected")


def test_the_collector_runs_between_polls_not_inside_them(rig) -> None:  # type: ignore[no-untyped-def]
    """A poll allocates what it keeps (the first snapshot: a record per container) or drops by
    reference counting; a collection inside it only stretches the poll (sensor.heap). The collector
    is off while a poll runs -- a failed one too -- and on again after it."""
    import gc

    assert gc.isenabled()
    policy = CollectorSeen()
    r = rig(policy=policy)
    policy.fail = True
    assert r.poller.step() is False
    assert gc.isenabled()
    for _ in range(2):
        r.clock.advance(250 * MS)
        assert r.poller.step() is True
        assert gc.isenabled()
    assert policy.seen == [False, False, False]
    r.poller.pause_collector = False  # the switch this test relies on: the fake sees the collector on
    r.clock.advance(250 * MS)
    assert r.poller.step() is True
    assert policy.seen[-1] is True


def test_a_repeated_list_is_counted_timed_and_logged_like_any_poll(rig, caplog) -> None:  # type: ignore[no-untyped-def]
    """The steady state (the list repeats the last one byte for byte: ``FastPath.take`` returns None)
    ends the poll early, and still counts it, times it (``crisensor_poll_duration_seconds``, its CRI
    wait) and keeps the tracked gauge; "polling" is logged once, not per poll."""
    import logging

    from prometheus_client import generate_latest

    r = rig()
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("web", "default", "u1")
    start_containers(m, sb.id, "c", 3)
    with caplog.at_level(logging.INFO, logger="crisensor"):
        for _ in range(5):
            assert p.step() is True
            clock.advance(250 * MS)
    assert p.lists.counts["same"] >= 3  # the repeats took the early end
    assert p.polls == 5
    text = generate_latest(p.metrics.registry).decode()
    values = {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["crisensor_poll_duration_seconds_count"] == 5
    assert values["crisensor_poll_rpc_wait_seconds_count"] == 5
    assert values["crisensor_containers_tracked"] == 3
    assert [rec.getMessage() for rec in caplog.records].count("crisensor: polling") == 1
