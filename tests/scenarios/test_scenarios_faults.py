"""Every fault, observed by a plain grpcio client, and recorded in the truth as a window."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
from scenarioclient import code_of, connect

from fakecri import scenario as sc
from fakecri.pytest_plugin import fakecri  # noqa: F401 -- the fixture, also without the entry point
from fakecri.truth import ContainerTransition, FaultWindow, RpcServed

MS = 1_000_000
HOUR = 3600 * 1000 * MS


def world(fault: str, params: dict[str, Any] | None = None) -> sc.Scenario:
    """A pod with a running "app" and an exited "done"; ``fault`` is on from 100 ms to 200 ms."""
    return sc.Scenario(name=f"fault-{fault}", seed=1, timeline=(
        sc.RunPod(at_ns=0, pod="web"),
        sc.CreateContainer(at_ns=0, container="app", pod="web", start=True),
        sc.CreateContainer(at_ns=0, container="done", pod="web", start=True),
        sc.ExitContainer(at_ns=50 * MS, container="done", code=3),
        sc.FaultStart(at_ns=100 * MS, fault=fault, params=params or {}),
        sc.FaultStop(at_ns=200 * MS, fault=fault),
    ), end_ns=300 * MS)


def windows(h: Any, fault: str) -> list[tuple[str, int]]:
    return [(r.phase, r.time_ns - h.start_ns) for r in h.truth if isinstance(r, FaultWindow) and r.fault == fault]


def lst(c: Any, timeout: float = 5) -> Any:
    return c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=timeout).containers


def test_latency_delays_the_named_methods_only(fakecri) -> None:  # noqa: F811
    h = fakecri.start(world("latency", {"ms": 150, "methods": ["ListContainers"]}))
    c = connect(h.addr)
    lst(c)
    h.advance_to("100ms")
    t0 = time.monotonic()
    lst(c)
    assert time.monotonic() - t0 >= 0.15
    t0 = time.monotonic()
    c.rt.Version(c.pb.VersionRequest(), timeout=5)
    assert time.monotonic() - t0 < 0.15
    h.advance_to("200ms")
    t0 = time.monotonic()
    lst(c)
    assert time.monotonic() - t0 < 0.15
    c.close()
    assert windows(h, "latency") == [("start", 100 * MS), ("stop", 200 * MS)]


def test_hang_blocks_until_the_deadline_and_stop_releases(fakecri) -> None:  # noqa: F811
    h = fakecri.start(world("hang", {"methods": ["ListContainers"]}))
    c = connect(h.addr)
    h.advance_to("100ms")
    t0 = time.monotonic()
    assert code_of(lambda: lst(c, timeout=0.5)) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.45 <= time.monotonic() - t0 < 3
    assert c.rt.Version(c.pb.VersionRequest(), timeout=2).runtime_name == "containerd"  # other methods answer
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(code_of(lambda: lst(c, timeout=10))))
    t.start()
    time.sleep(0.3)
    assert not result  # still hanging
    h.advance_to("200ms")  # fault_stop releases it: a late answer
    t.join(5)
    assert result == [grpc.StatusCode.OK]
    c.close()
    codes = [r.code for r in h.truth if isinstance(r, RpcServed) and r.method == "ListContainers"]
    assert "DEADLINE_EXCEEDED" in codes


def test_unavailable_window(fakecri) -> None:  # noqa: F811
    h = fakecri.start(world("unavailable"))
    c = connect(h.addr)
    h.advance_to("100ms")
    assert [code_of(lambda: lst(c)) for _ in range(4)] == [grpc.StatusCode.UNAVAILABLE] * 4
    h.advance_to("200ms")
    assert code_of(lambda: lst(c)) == grpc.StatusCode.OK
    c.close()


def test_unavailable_burst_ends_by_itself(fakecri) -> None:  # noqa: F811
    s = world("unavailable", {"count": 2})
    s = sc.Scenario(**{**s.__dict__, "timeline": s.timeline[:-1]})  # no fault_stop: the burst ends it
    h = fakecri.start(s)
    c = connect(h.addr)
    h.advance_to("100ms")
    codes = [code_of(lambda: lst(c)) for _ in range(3)]
    assert codes == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK]
    c.close()
    assert windows(h, "unavailable") == [("start", 100 * MS), ("stop", 100 * MS)]


def test_id_reuse(fakecri) -> None:  # noqa: F811
    h = fakecri.start("id_reuse")
    old = h.container_id("old")
    h.run_to_end()
    assert h.container_id("new") == old
    created = [r.name for r in h.truth if isinstance(r, ContainerTransition) and r.container_id == old
               and r.transition == "created"]
    assert created == ["old", "new"]


def test_duplicate_ids(fakecri) -> None:  # noqa: F811
    h = fakecri.start(world("duplicate_ids"))
    c = connect(h.addr)
    h.advance_to("100ms")
    ids = [x.id for x in lst(c)]
    assert len(ids) == 3 and len(set(ids)) == 2
    sb = c.rt.ListPodSandbox(c.pb.ListPodSandboxRequest(), timeout=5).items
    assert len(sb) == 2 and sb[0].id == sb[1].id
    c.close()


def test_missing_metadata(fakecri) -> None:  # noqa: F811
    h = fakecri.start(world("missing_metadata"))
    c = connect(h.addr)
    assert all(x.HasField("metadata") for x in lst(c))
    h.advance_to("100ms")
    items = lst(c)
    assert len(items) == 2 and not any(x.HasField("metadata") for x in items)
    c.close()


def test_zero_timestamps(fakecri) -> None:  # noqa: F811
    h = fakecri.start(world("zero_timestamps"))
    c = connect(h.addr)
    h.advance_to("100ms")
    assert [x.created_at for x in lst(c)] == [0, 0]
    st = c.rt.ContainerStatus(c.pb.ContainerStatusRequest(container_id=h.container_id("done")), timeout=5).status
    assert (st.created_at, st.started_at, st.finished_at) == (0, 0, 0)
    c.close()


def test_future_timestamps(fakecri) -> None:  # noqa: F811
    h = fakecri.start(world("future_timestamps"))
    c = connect(h.addr)
    h.advance_to("100ms")
    now = h.clock.now_ns()
    assert [x.created_at for x in lst(c)] == [now + HOUR] * 2
    st = c.rt.ContainerStatus(c.pb.ContainerStatusRequest(container_id=h.container_id("app")), timeout=5).status
    assert (st.created_at, st.started_at, st.finished_at) == (now + HOUR, now + HOUR, 0)  # unset stays unset
    c.close()


def test_notfound_race_really_removes_a_listed_exited_container(fakecri) -> None:  # noqa: F811
    h = fakecri.start(world("notfound_race", {"count": 1}))
    c = connect(h.addr)
    h.advance_to("100ms")
    listed = {x.metadata.name: x.id for x in lst(c)}
    assert set(listed) == {"app", "done"}
    code = code_of(lambda: c.rt.ContainerStatus(c.pb.ContainerStatusRequest(container_id=listed["done"]),
                                                timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: c.rt.ContainerStatus(c.pb.ContainerStatusRequest(container_id=listed["app"]),
                                                timeout=5)) == grpc.StatusCode.OK
    assert {x.metadata.name for x in lst(c)} == {"app"}
    c.close()
    gone = [r for r in h.truth if isinstance(r, ContainerTransition) and r.container_id == listed["done"]]
    assert gone[-1].transition == "destroyed"
    assert windows(h, "notfound_race") == [("start", 100 * MS), ("stop", 100 * MS)]


def test_quirk_faults_are_on_from_the_start(fakecri) -> None:  # noqa: F811
    s = sc.Scenario(quirks=sc.Quirks(faults={"duplicate_ids": {"lists": ["containers"]}}), timeline=(
        sc.RunPod(at_ns=0, pod="web"), sc.CreateContainer(at_ns=0, container="app", pod="web")))
    h = fakecri.start(s)
    c = connect(h.addr)
    assert len(lst(c)) == 2
    assert len(c.rt.ListPodSandbox(c.pb.ListPodSandboxRequest(), timeout=5).items) == 1
    c.close()
    assert windows(h, "duplicate_ids") == [("start", 0)]


def test_flaky_runtime_scenario_end_to_end(fakecri) -> None:  # noqa: F811
    h = fakecri.start("flaky_runtime")
    c = connect(h.addr)
    t0 = time.monotonic()
    lst(c)
    assert time.monotonic() - t0 >= 0.02  # latency
    h.advance_to("1200ms")
    assert [code_of(lambda: lst(c)) for _ in range(4)][-2:] == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK]
    h.advance_to("2s")
    assert code_of(lambda: lst(c, timeout=0.3)) == grpc.StatusCode.DEADLINE_EXCEEDED
    h.advance_to("3200ms")  # the exit at 3.1 s shows after containerd-1.7's state lag
    job = h.container_id("job")
    assert job in {x.id for x in lst(c)}
    assert code_of(lambda: c.rt.ContainerStatus(c.pb.ContainerStatusRequest(container_id=job), timeout=5)) == \
        grpc.StatusCode.NOT_FOUND
    h.run_to_end()
    c.close()
    assert h.skipped == []
