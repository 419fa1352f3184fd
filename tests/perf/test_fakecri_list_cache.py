"""fakecri's list answers from cached entries (convert.ListCache) are the answers it built before.

Before the cache, every ``ListContainers``/``ListPodSandbox`` converted every model object to a
message and serialized the whole response. Now the handler joins cached serialized entries. These
tests hold the new answers, byte for byte, against that old construction, while the model goes
through every kind of change, for both API versions, with and without filters and fault shaping.
"""

from __future__ import annotations

from typing import Any

import pytest

import cri_api
from fakecri import convert
from fakecri.clock import VirtualClock
from fakecri.faults import FaultPolicy
from fakecri.flavors import get_flavor
from fakecri.kubelet import populate
from fakecri.model import RuntimeModel
from fakecri.server import FakeCriServer
from sensor.client import CriClient

MS = 1_000_000
APIS = ("v1", "v1alpha2")


def old_containers(pb: Any, model: RuntimeModel, **filters: Any) -> bytes:
    items = model.list_containers(**filters)
    return pb.ListContainersResponse(containers=[convert.container(pb, c) for c in items]).SerializeToString()


def old_sandboxes(pb: Any, model: RuntimeModel, **filters: Any) -> bytes:
    items = model.list_pod_sandbox(**filters)
    return pb.ListPodSandboxResponse(items=[convert.pod_sandbox(pb, s) for s in items]).SerializeToString()


def churn(model: RuntimeModel, clock: VirtualClock, step: int) -> None:
    """One round of every kind of change: create, start, exit, remove, stop/remove a pod, ID reuse."""
    live = list(model.containers.values())
    sandboxes = [s for s in model.sandboxes.values() if s.state == "ready"]
    clock.advance(MS)
    if sandboxes:
        s = sandboxes[step % len(sandboxes)]
        c = model.create_container(s.id, f"new-{step}", 0, "busybox", labels={"step": str(step)})
        if step % 2:
            model.start_container(c.id)
    for k, c in enumerate(live[step % 3 :: 7]):
        clock.advance(1000)
        if c.state == "running":
            model.exit_container(c.id, k % 3)
        elif c.state in ("created", "exited"):
            model.remove_container(c.id)
    if step % 4 == 3 and sandboxes:
        model.stop_pod_sandbox(sandboxes[0].id)
    if step % 5 == 4:
        gone = [s for s in model.sandboxes.values() if s.state == "notready"]
        if gone:
            model.remove_pod_sandbox(gone[0].id)
    if step % 6 == 5:
        removed = live[0].id if live and live[0].id not in model.containers else None
        if removed:
            model.reuse_ids.append(removed)
    if step == 8:
        s = model.run_pod_sandbox("after", "default", "u-after", labels={"a": "b"})
        model.create_container(s.id, "c", 0, "busybox")


@pytest.mark.parametrize("api", APIS)
def test_cached_answers_are_the_old_answers_byte_for_byte(api: str) -> None:
    pb = cri_api.api(api).pb2
    clock = VirtualClock()
    model = RuntimeModel(clock, get_flavor("containerd-1.7"), seed=7)
    populate(model, 120, per_pod=12)  # before the server exists: entries are built on first list
    server = FakeCriServer(model, "/tmp/unused-fakecri-cache.sock")  # not started: handlers only
    h = server.handlers
    any_sandbox = next(iter(model.sandboxes))
    req = pb.ListContainersRequest
    cases = [
        (lambda: h.ListContainers(pb, api, req()), lambda: old_containers(pb, model)),
        (lambda: h.ListPodSandbox(pb, api, pb.ListPodSandboxRequest()), lambda: old_sandboxes(pb, model)),
        (lambda: h.ListContainers(pb, api, req(filter=pb.ContainerFilter(state=pb.ContainerStateValue(state=1)))),
         lambda: old_containers(pb, model, state="running")),
        (lambda: h.ListContainers(pb, api, req(filter=pb.ContainerFilter(pod_sandbox_id=any_sandbox))),
         lambda: old_containers(pb, model, sandbox_id=any_sandbox)),
        (lambda: h.ListContainers(pb, api, req(filter=pb.ContainerFilter(
            label_selector={"io.kubernetes.container.name": "worker-3"}))),
         lambda: old_containers(pb, model, label_selector={"io.kubernetes.container.name": "worker-3"})),
        (lambda: h.ListPodSandbox(pb, api, pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
            state=pb.PodSandboxStateValue(state=1)))), lambda: old_sandboxes(pb, model, state="notready")),
    ]
    for step in range(12):
        for new, old in cases:
            got, want = new(), old()
            assert isinstance(got, bytes)
            assert got == want
        churn(model, clock, step)
    model.lose_state()
    assert h.ListContainers(pb, api, req()) == old_containers(pb, model) == b""
    assert h.container_entries.size() == 0 and h.sandbox_entries.size() == 0  # nothing kept for the gone


def test_fault_shaping_still_applies_and_leaves_the_cache_alone() -> None:
    pb = cri_api.api("v1").pb2
    clock = VirtualClock()
    model = RuntimeModel(clock, get_flavor("crio-1.26"), seed=8)
    populate(model, 20, per_pod=5)
    faults = FaultPolicy(model)
    h = FakeCriServer(model, "/tmp/unused-fakecri-cache.sock", policy=faults).handlers
    plain = h.ListContainers(pb, "v1", pb.ListContainersRequest())
    for fault in ("duplicate_ids", "missing_metadata", "zero_timestamps", "future_timestamps"):
        faults.start(fault)
        shaped = h.ListContainers(pb, "v1", pb.ListContainersRequest())
        assert not isinstance(shaped, bytes)  # a message: the policy changed the list
        assert shaped.SerializeToString() != plain
        faults.stop(fault)
        assert h.ListContainers(pb, "v1", pb.ListContainersRequest()) == plain  # cached entries untouched


@pytest.mark.parametrize("api", APIS)
def test_over_the_socket_the_answer_is_the_old_answer(tmp_path, api: str) -> None:  # type: ignore[no-untyped-def]
    pb = cri_api.api(api).pb2
    clock = VirtualClock()
    model = RuntimeModel(clock, get_flavor("containerd-1.6"), seed=9)
    server = FakeCriServer(model, str(tmp_path / "rt.sock")).start()
    client = CriClient(server.addr, clock=clock.now_ns, api_preference=(api,))
    try:
        client.connect()
        populate(model, 200, per_pod=20)  # after the server exists: entries built as objects change
        for step in range(4):
            sandboxes, containers, _, _ = client.list_bytes()
            assert containers == old_containers(pb, model)
            assert sandboxes == old_sandboxes(pb, model)
            snap = client.list()  # the decoding client reads the same
            assert len(snap.containers) == len(model.containers)
            churn(model, clock, step)
    finally:
        client.close()
        server.stop(grace=None)


def test_an_unchanged_node_answers_with_the_answer_it_kept() -> None:
    pb = cri_api.api("v1").pb2
    clock = VirtualClock()
    model = RuntimeModel(clock, get_flavor("containerd-1.7"), seed=10)
    populate(model, 30, per_pod=10)
    h = FakeCriServer(model, "/tmp/unused-fakecri-cache.sock").handlers
    req = pb.ListContainersRequest()
    first = h.ListContainers(pb, "v1", req)
    assert h.ListContainers(pb, "v1", req) is first  # nothing changed: not even joined again
    c = next(iter(model.containers.values()))
    model.exit_container(c.id, 0)
    second = h.ListContainers(pb, "v1", req)
    assert second != first and second == old_containers(pb, model)
    assert h.ListContainers(pb, "v1", req) is second
