"""The harness: bundled scenarios served, exact virtual time, determinism, restarts, streams, real time."""

from __future__ import annotations

import os
import threading

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from scenarioclient import code_of, connect, h2_unary, pb_of

from fakecri import scenario as sc
from fakecri.harness import Harness
from fakecri.pytest_plugin import fakecri  # noqa: F401 -- the fixture, also without the entry point
from fakecri.strategies import scenarios
from fakecri.truth import ContainerTransition, ProcessEvent, RpcServed, RuntimeTransition

MS = 1_000_000


@pytest.mark.parametrize("name", sorted(sc.bundled()))
def test_every_bundled_scenario_serves_to_its_end(fakecri, name: str) -> None:  # noqa: F811
    h = fakecri.start(name)
    api = h.flavor.apis[0]
    if h.handshake == "cmux":  # grpcio cannot get through; a client that sends first can
        pb = pb_of(api)
        status, v = h2_unary(h.socket, f"/runtime.{api}.RuntimeService/Version", pb.VersionRequest(),
                             pb.VersionResponse)
        assert status == "0" and v.runtime_api_version == api
    else:
        c = connect(h.addr, api)
        assert c.rt.Version(c.pb.VersionRequest(), timeout=5).runtime_api_version == api
        n0 = len(c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=10).containers)
        assert n0 == len(h.model.containers)
        c.close()
    h.run_to_end()
    assert h.offset_ns == h.end_ns and h.runner is not None and h.runner.done
    assert h.skipped == []
    assert os.path.exists(h.socket)  # serving after the end, too


def test_virtual_clock_applies_each_step_at_its_exact_instant(fakecri) -> None:  # noqa: F811
    h = fakecri.start("fast_exit")
    start = h.start_ns
    c = connect(h.addr)
    assert [x.metadata.name for x in c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers] == []
    assert h.advance("250ms") == 3  # app and job: create with start; job's first process
    assert [x.metadata.name for x in c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers] == \
        ["app", "job"]
    # job: second process, exit, remove -- which meets the exit still pending (containerd-1.7's state
    # lag, 50 ms) and shows it first, as containerd's RemoveContainer stops the container first; the
    # exit's reveal step then finds nothing to do
    assert h.advance_to(500 * MS) == 4
    assert [x.metadata.name for x in c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers] == \
        ["app"]
    c.close()
    job = [r for r in h.truth if isinstance(r, ContainerTransition) and r.name == "job"]
    assert [(r.transition, r.time_ns - start) for r in job] == [
        ("created", 100 * MS), ("running", 100 * MS), ("exited", 380 * MS), ("destroyed", 381 * MS)]
    assert job[2].shown_ns is not None and job[2].shown_ns - start == 381 * MS
    assert job[0].labels["app"] == "job" and job[0].labels["io.kubernetes.pod.name"] == "web"
    procs = [r for r in h.truth if isinstance(r, ProcessEvent)]
    assert [p.container_id for p in procs] == [job[0].container_id] * 2
    assert procs[1].argv == ("/bin/sh", "-c", "echo done") and procs[1].deliver_ns == procs[1].time_ns + 40 * MS
    assert (procs[0].time_ns - start, procs[0].deliver_ns - start) == (120 * MS, 125 * MS)
    with pytest.raises(ValueError, match="cannot go back"):
        h.advance_to(100 * MS)


def _poll_once(addr: str) -> None:
    c = connect(addr)
    code_of(lambda: c.rt.ListPodSandbox(c.pb.ListPodSandboxRequest(), timeout=5))
    code_of(lambda: c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5))
    c.close()


def _drive(tmp_path, name: str, n: int) -> str:  # type: ignore[no-untyped-def]
    """Run a scenario with a fixed client routine (poll every 250 ms) and return its truth."""
    with Harness(name, socket=str(tmp_path / f"d{n}.sock")) as h:
        while h.offset_ns < h.end_ns:
            # A fresh channel per poll: grpcio's reconnect backoff runs in real time, which would
            # make "is the runtime reachable" depend on the machine's speed, not on the timeline.
            _poll_once(h.addr)
            h.advance("250ms")
        return h.truth.dumps()


@pytest.mark.parametrize("name", ["churn_storm", "runtime_restart"])
def test_same_seed_same_client_gives_the_same_bytes_of_truth(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    a, b = _drive(tmp_path, name, 1), _drive(tmp_path, name, 2)
    assert a == b
    assert a.count('"kind":"rpc"') > 10 and a.count('"kind":"container"') > 5


def test_a_different_seed_gives_different_truth(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = sc.load(sc.bundled()["churn_storm"])
    runs = []
    for seed in (1, 2):
        with Harness(sc.Scenario(**{**s.__dict__, "seed": seed}), socket=str(tmp_path / f"s{seed}.sock")) as h:
            h.run_to_end()
            runs.append(h.truth.dumps())
    assert runs[0] != runs[1]


def test_restart_removes_and_recreates_the_socket(fakecri) -> None:  # noqa: F811
    h = fakecri.start("runtime_restart")
    c = connect(h.addr)
    assert len(c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers) == 1
    h.advance_to("1s")
    assert not os.path.exists(h.socket) and not h.serving
    assert code_of(lambda: c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=1)) == \
        grpc.StatusCode.UNAVAILABLE
    h.advance_to("1500ms")
    assert os.path.exists(h.socket) and h.serving
    c.close()
    c = connect(h.addr)
    names = {x.metadata.name: x.state for x in c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers}
    assert names == {"app": c.pb.CONTAINER_RUNNING, "short": c.pb.CONTAINER_EXITED}  # state kept; exited while down
    h.advance_to("3s")  # second restart lost the state
    c.close()
    c = connect(h.addr)
    assert c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers == []
    h.run_to_end()
    assert [x.metadata.name for x in c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers] == \
        ["app"]
    c.close()
    rt = [(r.transition, r.time_ns - h.start_ns, r.state_kept) for r in h.truth if isinstance(r, RuntimeTransition)]
    assert rt == [("down", 1000 * MS, True), ("up", 1500 * MS, True), ("down", 2500 * MS, False),
                  ("up", 3000 * MS, False)]
    lost = [r for r in h.truth if isinstance(r, ContainerTransition) and r.time_ns - h.start_ns == 2500 * MS]
    assert {r.transition for r in lost} == {"exited", "destroyed"}


def _collect_events(c, out: list, done: threading.Event) -> None:  # type: ignore[no-untyped-def]
    try:
        for ev in c.rt.GetContainerEvents(c.pb.GetEventsRequest(), timeout=10):
            out.append(ev)
    except grpc.RpcError as e:
        out.append((e.code(), e.details()))
    done.set()


def test_close_event_streams_ends_streams_with_subscription_closed(fakecri) -> None:  # noqa: F811
    h = fakecri.start("containerd_1_7_events")
    c = connect(h.addr, "v1")
    got: list = []
    done = threading.Event()
    t = threading.Thread(target=_collect_events, args=(c, got, done))
    t.start()
    _wait_for_subscriber(h)
    h.advance_to("1s")
    assert done.wait(5)
    t.join()
    c.close()
    assert got[-1] == (grpc.StatusCode.UNAVAILABLE, "subscription closed")
    ids = {x.container_id for x in got[:-1]}
    assert h.containers["job"].id in ids and h.containers["app"].id in ids
    assert h.containers["blink"].id not in ids  # created at the instant the stream closed, after it


def test_crio_1_26_with_pod_events_streams(fakecri) -> None:  # noqa: F811
    h = fakecri.start("crio_1_26_events")
    c = connect(h.addr, "v1")
    got: list = []
    done = threading.Event()
    t = threading.Thread(target=_collect_events, args=(c, got, done))
    t.start()
    _wait_for_subscriber(h)
    h.run_to_end()
    h.server.hub.close_all()
    assert done.wait(5)
    t.join()
    c.close()
    job = h.containers["job"].id
    assert [e.container_event_type for e in got if not isinstance(e, tuple) and e.container_id == job] == [0, 1, 2, 3]


def _wait_for_subscriber(h: Harness) -> None:
    import time

    deadline = time.monotonic() + 5
    while not h.server.hub._subs:
        assert time.monotonic() < deadline, "the event stream never subscribed"
        time.sleep(0.01)


def test_real_clock_runs_the_timeline_and_measures_jitter(fakecri) -> None:  # noqa: F811
    h = fakecri.start("fast_exit", clock="real", speed=5.0)
    assert h.wait_end(10)
    j = h.jitter_summary()
    assert j["count"] == len(h.runner.steps) and j["max_ns"] < 500 * MS  # the plan + reveals (state lag)
    job = [r for r in h.truth if isinstance(r, ContainerTransition) and r.name == "job"]
    created = job[0].time_ns - h.start_ns
    assert 20 * MS <= created <= 20 * MS + 500 * MS  # 100 ms at speed 5
    assert [r.transition for r in job] == ["created", "running", "exited", "destroyed"]


def test_fixture_without_a_scenario_is_an_empty_runtime(fakecri) -> None:  # noqa: F811
    h = fakecri.start()
    assert h.flavor.name == "containerd-1.7" and h.model.containers == {}
    h2 = fakecri.start(flavor="crio-1.26")
    c = connect(h2.addr, "v1")
    assert c.rt.Version(c.pb.VersionRequest(), timeout=5).runtime_name == "cri-o"
    c.close()
    assert h.socket != h2.socket
    with pytest.raises(RuntimeError, match="virtual clock"):
        fakecri.start(clock="real").advance(1)


def test_rpc_truth_records_come_from_clients(fakecri) -> None:  # noqa: F811
    h = fakecri.start("oom")
    c = connect(h.addr)
    h.advance("700ms")
    st = c.rt.ContainerStatus(c.pb.ContainerStatusRequest(container_id=h.container_id("hog")), timeout=5).status
    assert (st.exit_code, st.reason) == (137, "OOMKilled")
    c.close()
    (rpc,) = [r for r in h.truth if isinstance(r, RpcServed)]
    assert (rpc.method, rpc.target, rpc.time_ns - h.start_ns, rpc.code) == ("ContainerStatus", st.id, 700 * MS, "OK")


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(s=scenarios(max_steps=15))
def test_drawn_scenarios_run_to_the_end_twice_the_same(tmp_path_factory, s: sc.Scenario) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("drawn")
    dumps = []
    for n in range(2):
        with Harness(s, socket=str(d / f"r{n}.sock")) as h:
            h.run_to_end()
            assert h.skipped == []
            dumps.append(h.truth.dumps())
            records = h.truth.records()
    assert dumps[0] == dumps[1]
    # records come in the order answers could show them: a lagged exit (state lag) keeps its own,
    # earlier time_ns and is recorded when it shows (shown_ns)
    times = [getattr(r, "shown_ns", None) or r.time_ns for r in records]
    assert times == sorted(times)
    seen: dict[str, list[str]] = {}
    for r in records:
        if isinstance(r, ContainerTransition):
            seen.setdefault(r.container_id, []).append(r.transition)
    order = ["created", "running", "exited", "destroyed"]
    for transitions in seen.values():  # a reused ID starts over at "created"
        for life in "|".join(transitions).replace("|created", "\ncreated").split("\n"):
            steps = life.split("|")
            assert steps == sorted(steps, key=order.index) and len(set(steps)) == len(steps), transitions
