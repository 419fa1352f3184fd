"""The real sensor (``Poller`` + ``CriClient`` over a real unix socket) against a hostile runtime.

Each test: the sensor keeps running, emits only schema-valid events, never a phantom (no end for an
object still served, no event for an ID never served as valid), logs no traceback (the ``sensor``
fixture checks that), and the metrics say what happened.
"""

from __future__ import annotations

import time

import pytest
from hostile_cri import (
    GARBAGE,
    INT64_MAX,
    PB,
    WRONG_WIRE_TYPE,
    check_events,
    container,
    event,
    pod_status,
    sandbox,
    status_of,
    truncated,
)

BAD_ANSWERS = {"garbage": lambda good: GARBAGE, "truncated": truncated, "wrong wire type": lambda good: WRONG_WIRE_TYPE}


def populate(server, n: int = 2) -> tuple[set[str], set[str]]:  # type: ignore[no-untyped-def]
    """One ready sandbox with ``n`` running containers; returns (sandbox IDs, container IDs)."""
    server.sandboxes = [sandbox("sb1")]
    server.containers = [container(f"c{i}", "sb1") for i in range(n)]
    return {"sb1"}, {c.id for c in server.containers}


def served(sandboxes: set[str], containers: set[str]) -> dict[str, set[str]]:
    ids = sandboxes | containers
    return {"served": ids, "alive": ids}


def ends(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] in ("container.exited", "container.destroyed", "sandbox.destroyed")]


# --- item 2: answers that do not decode ------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("method", ["ListContainers", "ListPodSandbox"])
@pytest.mark.parametrize("bad", list(BAD_ANSWERS))
def test_a_list_that_does_not_decode_after_good_ones_is_a_failed_poll(hostile, sensor, fast, method, bad) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    sbs, cs = populate(server)
    s = sensor(server, fast=fast)
    for _ in range(3):
        assert s.poller.step()
    server.fault(method, *[lambda _req, m=method: BAD_ANSWERS[bad](server.honest(m))] * 3)
    for _ in range(3):
        assert s.poller.step() is False  # a failed poll, not a crash
    assert s.metric("crisensor_malformed_responses_total", method=method) == 3
    assert s.poller.engine.failures == 3
    assert s.poller.step()  # the next good list resumes
    events = s.events()
    check_events(events, **served(sbs, cs))
    assert not ends(events)
    gap = [e for e in events if e["type"] == "sensor.gap"]
    assert len(gap) == 1 and gap[0]["info"]["failed_polls"] == 3 and "MALFORMED" in gap[0]["info"]["last_error"]


def test_a_malformed_burst_is_logged_once(hostile, sensor, caplog) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    populate(server)
    s = sensor(server)
    assert s.poller.step()
    server.fault("ListContainers", GARBAGE, truncated(server.honest("ListContainers")), GARBAGE)
    for _ in range(3):
        assert not s.poller.step()
    assert s.poller.step()
    lines = [r.getMessage() for r in caplog.records if "do not decode" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("crisensor: list failed: ListContainers answered bytes"), lines


@pytest.mark.parametrize("bad", list(BAD_ANSWERS))
def test_a_status_that_does_not_decode_is_a_failed_status_call(hostile, sensor, bad) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    s = sensor(server)
    assert s.poller.step()  # the first snapshot, empty: it would ask no status of a running container
    sbs, cs = populate(server, 1)
    server.fault("ContainerStatus", BAD_ANSWERS[bad](PB.ContainerStatusResponse(
        status=status_of(server.containers[0])).SerializeToString()))
    assert s.poller.step()
    assert s.metric("crisensor_malformed_responses_total", method="ContainerStatus") == 1
    events = s.events()
    check_events(events, **served(sbs, cs))
    running = next(e for e in events if e["type"] == "container.running")
    assert running["container_id"] == "c0"  # from the list; its times estimated (no status)


def test_version_that_does_not_decode_is_a_failed_connect(hostile, sensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    sbs, cs = populate(server, 1)
    s = sensor(server)
    server.fault("Version", GARBAGE)
    assert s.poller.step() is False
    assert not s.client.connected and s.poller.engine.failures == 1
    assert s.poller.step()
    check_events(s.events(), **served(sbs, cs))


# --- item 3: enum values the sensor does not know --------------------------------------------------------


def test_unknown_states_in_lists_are_tolerated_counted_and_logged_once(hostile, sensor, caplog) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    server.sandboxes = [sandbox("sb1"), sandbox("sb2", state=9)]
    server.containers = [container("c0", "sb1"), container("c1", "sb1", state=7)]
    s = sensor(server, fast=False)
    for _ in range(3):
        assert s.poller.step()
    assert s.metric("crisensor_unknown_enum_values_total", enum="ContainerState") == 3  # once per decode
    assert s.metric("crisensor_unknown_enum_values_total", enum="PodSandboxState") == 3
    logged = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert len(logged) == 2, logged
    events = s.events()
    check_events(events, served={"sb1", "sb2", "c0", "c1"}, alive={"sb1", "sb2", "c0", "c1"})
    assert [e["type"] for e in events if e.get("container_id") == "c1"] == ["container.created"]  # unknown: no more
    server.containers[1].state = 1  # the runtime makes up its mind
    assert s.poller.step()
    assert [e["type"] for e in s.events() if e.get("container_id") == "c1"] == ["container.created",
                                                                                "container.running"]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_an_unknown_sandbox_state_announces_nothing_and_ready_again_is_no_phantom(hostile, sensor, fast) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    sbs, cs = populate(server, 1)
    server.sandboxes.append(sandbox("sb2", state=9))  # first seen in a state the sensor does not know
    s = sensor(server, fast=fast)
    assert s.poller.step()
    server.sandboxes[0].state = 9  # a newer runtime's state, then READY again
    assert s.poller.step()
    server.sandboxes[0].state = 0
    assert s.poller.step()
    events = s.events()
    check_events(events, served=sbs | cs | {"sb2"}, alive=sbs | cs | {"sb2"})
    assert [e["type"] for e in events if e.get("sandbox_id") == "sb1" and e["type"].startswith("sandbox.")] == [
        "sandbox.ready"]
    sb2 = [(e["type"], e["synthetic"]) for e in events if e.get("sandbox_id") == "sb2"]
    assert sb2 == [("sandbox.ready", True)]  # forged: never seen ready
    assert s.metric("crisensor_unknown_enum_values_total", enum="PodSandboxState") >= 2


def test_unknown_event_type_is_skipped_counted_and_resynced_from_a_list(hostile, sensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile(stream=True)
    sbs, cs = populate(server, 1)
    s = sensor(server, events="auto")
    assert s.poller.step()
    assert s.poller.plan.streaming
    lists = server.calls["ListContainers"]
    c = server.containers[0]
    server.events.put(event(c.id, 7, status=status_of(c), pod=pod_status(server.sandboxes[0])))
    server.containers.append(container("c9", "sb1"))
    cs.add("c9")
    wait(lambda: s.metric("crisensor_unknown_enum_values_total", enum="ContainerEventType") == 1)
    wait(lambda: s.poller.take_wake())
    assert s.poller.step()  # the list the stream asked for
    assert server.calls["ListContainers"] == lists + 1
    assert s.poller.plan.streaming  # the stream goes on
    server.events.put(event(c.id, 1, status=status_of(c), pod=pod_status(server.sandboxes[0])))  # a good one
    wait(lambda: s.poller.stream_events == 1)
    events = s.events()
    check_events(events, served=sbs | cs, alive=sbs | cs)
    assert any(e["container_id"] == "c9" and e["source"] == "resync" for e in events)


def test_garbage_and_empty_ids_on_the_stream_are_skipped_and_counted(hostile, sensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile(stream=True)
    sbs, cs = populate(server, 1)
    s = sensor(server, events="auto")
    assert s.poller.step()
    c = server.containers[0]
    server.events.put(GARBAGE)
    server.events.put(event("", 1, status=status_of(container("", "sb1")), pod=pod_status(server.sandboxes[0])))
    server.events.put(truncated(event(c.id, 1, status=status_of(c), pod=pod_status(server.sandboxes[0]))))
    wait(lambda: s.metric("crisensor_malformed_responses_total", method="GetContainerEvents") == 2)
    wait(lambda: s.metric("crisensor_dropped_records_total", kind="event", reason="empty_id") == 1)
    assert s.poller.plan.streaming
    check_events(s.events(), **served(sbs, cs))


def test_absurd_times_on_the_stream_give_schema_valid_events(hostile, sensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile(stream=True)
    sbs, cs = populate(server, 0)
    s = sensor(server, events="auto")
    assert s.poller.step()
    pod = pod_status(server.sandboxes[0])
    for i, t in enumerate((0, -1, -(2**63), INT64_MAX, time.time_ns() + 10**18)):
        c = container(f"s{i}", "sb1", state=2, created_at=t)
        server.containers.append(c)
        cs.add(c.id)
        server.events.put(event(c.id, 2, created_at=t, pod=pod,
                                status=status_of(c, started_at=t, finished_at=INT64_MAX - i, exit_code=-(2**31))))
    wait(lambda: s.poller.stream_events == 5)
    assert s.poller.step()
    events = s.events()
    check_events(events, served=sbs | cs, alive=sbs)
    assert sum(e["type"] == "container.exited" for e in events) == 5


# --- item 7: empty and duplicate IDs ---------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_records_with_empty_ids_are_dropped_counted_and_logged_once_per_poll(hostile, sensor, caplog, fast) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    server.sandboxes = [sandbox("sb1"), sandbox("")]
    server.containers = [container("c0", "sb1"), container("", "sb1"), container("c2", "")]
    s = sensor(server, fast=fast)
    for _ in range(3):
        assert s.poller.step()
    assert s.metric("crisensor_dropped_records_total", kind="container", reason="empty_id") == 3
    assert s.metric("crisensor_dropped_records_total", kind="sandbox", reason="empty_id") == 3
    events = s.events()
    check_events(events, served={"sb1", "c0", "c2"}, alive={"sb1", "c0", "c2"})
    lines = [r.getMessage() for r in caplog.records if "with an empty id" in r.getMessage()]
    assert lines == ["crisensor: dropped 1 container record with an empty id, 1 sandbox record with an empty id "
                     "(a runtime bug; counted in crisensor_dropped_records_total)"]  # not repeated while the same


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_duplicate_ids_in_one_list_the_first_wins_and_is_counted(hostile, sensor, fast) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    sbs, cs = populate(server, 2)
    s = sensor(server, fast=fast)
    assert s.poller.step()
    server.containers.append(container("c0", "sb1", state=2))  # a second c0, exited
    server.sandboxes.append(sandbox("sb1"))
    for _ in range(2):
        assert s.poller.step()
    assert s.metric("crisensor_dropped_records_total", kind="container", reason="duplicate_id") == 2
    assert s.metric("crisensor_dropped_records_total", kind="sandbox", reason="duplicate_id") == 2
    events = s.events()
    check_events(events, **served(sbs, cs))


# --- absurd timestamps, huge answers, hangs, flapping ---------------------------------------------------


def test_absurd_timestamps_give_schema_valid_events(hostile, sensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    now = time.time_ns()
    server.sandboxes = [sandbox("sb0", created_at=0), sandbox("sbn", created_at=-5),
                        sandbox("sbf", created_at=now + 100 * 365 * 86400 * 10**9),
                        sandbox("sbm", created_at=INT64_MAX)]
    times = {"zero": 0, "negative": -(2**63), "future": now + 10**18, "max": INT64_MAX}
    server.containers = [container(k, "sb0", state=2, created_at=t) for k, t in times.items()]
    for c in server.containers:
        server.statuses[c.id] = status_of(c, started_at=c.created_at, finished_at=c.created_at, exit_code=-1)
    s = sensor(server)
    assert s.poller.step()
    server.containers = []
    server.sandboxes = []
    assert s.poller.step()
    events = s.events()
    check_events(events, served={"sb0", "sbn", "sbf", "sbm", *times}, alive=set())
    assert {e["container_id"] for e in events if e["type"] == "container.destroyed"} == set(times)


@pytest.mark.slow
def test_a_50_mb_list_is_a_clean_failure(hostile, sensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    sbs, cs = populate(server, 1)
    s = sensor(server)
    assert s.poller.step()
    huge = container("c-huge", "sb1")
    huge.labels["x"] = "a" * (50 * 1024 * 1024)
    big = PB.ListContainersResponse(containers=[*server.containers, huge]).SerializeToString()
    server.fault("ListContainers", big)
    assert s.poller.step() is False
    assert s.metric("crisensor_rpc_errors_total", method="ListContainers", code="RESOURCE_EXHAUSTED") == 1
    assert s.poller.step()
    check_events(s.events(), **served(sbs, cs))


def test_an_answer_that_never_comes_is_a_failed_poll(hostile, sensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    sbs, cs = populate(server)
    s = sensor(server, rpc_timeout_s=1.0)
    assert s.poller.step()
    server.fault("ListPodSandbox", server.hang)
    assert s.poller.step() is False
    assert s.metric("crisensor_rpc_errors_total", method="ListPodSandbox", code="DEADLINE_EXCEEDED") == 1
    server.fault("ContainerStatus", server.hang)
    server.containers.append(container("c9", "sb1"))
    cs.add("c9")
    assert s.poller.step()  # the status call timed out: the list's state stands
    assert s.poller.step()
    check_events(s.events(), **served(sbs, cs))


def test_a_flapping_socket_never_gives_phantoms(hostile, sensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    sbs, cs = populate(server)
    s = sensor(server, rpc_timeout_s=0.5)
    assert s.poller.step()
    for _ in range(4):
        server.stop()
        assert s.poller.step() is False
        server.start()
        wait(lambda: s.poller.step())
    events = s.events()
    check_events(events, **served(sbs, cs))
    assert s.metric("crisensor_reconnects_total") == 4
    assert [e["type"] for e in events].count("sensor.connected") == 5


def wait(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
