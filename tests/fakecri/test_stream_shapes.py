"""Event stream shapes recorded on real containerd 1.7/2.1, emulated by the matching flavours.

The recordings (tests/fidelity/recordings, compared message by message in
tests/fidelity/test_recorded_differential.py) showed: a sandbox's CREATED is followed by STARTED;
on 2.1 its DELETED carries its last status (NOTREADY), on 1.7 none; on 1.7 every subscriber is fed
from one queue -- each event goes to one of them, and a closed subscription still takes the next
event (tests/realruntime/test_recorded_live.py shows both on the real runtimes).
"""

from __future__ import annotations

import queue

import pytest

import cri_api
from fakecri.clock import VirtualClock
from fakecri.flavors import get_flavor
from fakecri.model import RuntimeModel
from fakecri.server import EventHub

PB = cri_api.api("v1").pb2
NAMES = {0: "CREATED", 1: "STARTED", 2: "STOPPED", 3: "DELETED"}


def hub_for(flavor: str) -> tuple[RuntimeModel, EventHub]:
    m = RuntimeModel(VirtualClock(), get_flavor(flavor), seed=3)
    m.pull_image("busybox")
    return m, EventHub(m)


def drain(q: queue.SimpleQueue) -> list:  # type: ignore[type-arg]
    out = []
    while not q.empty():
        out.append(q.get())
    return out


def lifecycle(m: RuntimeModel) -> None:
    s = m.run_pod_sandbox("web", "default", "uid-1")
    c = m.create_container(s.id, "app", 0, "busybox")
    m.start_container(c.id)
    m.exit_container(c.id, 3)
    m.remove_container(c.id)
    m.stop_pod_sandbox(s.id)
    m.remove_pod_sandbox(s.id)


@pytest.mark.parametrize("flavor", ["containerd-1.7", "containerd-2.0", "containerd-2.1"])
def test_a_sandbox_is_created_then_started(flavor: str) -> None:
    m, hub = hub_for(flavor)
    _, q = hub.subscribe(PB)
    lifecycle(m)
    evs = drain(q)
    assert [NAMES[e.container_event_type] for e in evs[:2]] == ["CREATED", "STARTED"]
    assert all(e.HasField("pod_sandbox_status") for e in evs[:2])
    assert len(evs) == 8


@pytest.mark.parametrize(("flavor", "with_status"), [("containerd-1.7", False), ("containerd-2.1", True)])
def test_the_sandbox_deleted_event_and_its_status(flavor: str, with_status: bool) -> None:
    m, hub = hub_for(flavor)
    _, q = hub.subscribe(PB)
    lifecycle(m)
    last = drain(q)[-1]
    assert NAMES[last.container_event_type] == "DELETED"
    assert last.HasField("pod_sandbox_status") is with_status
    if with_status:
        assert last.pod_sandbox_status.state == PB.SANDBOX_NOTREADY


def test_17_subscribers_share_one_queue_and_21_broadcasts() -> None:
    for flavor, shared in (("containerd-1.7", True), ("containerd-2.1", False)):
        m, hub = hub_for(flavor)
        (_, qa), (_, qb) = hub.subscribe(PB), hub.subscribe(PB)
        lifecycle(m)
        a, b = len(drain(qa)), len(drain(qb))
        assert (a + b, bool(a and b)) == (8, True) if shared else (a, b) == (8, 8), flavor


def test_17_a_closed_subscription_takes_the_next_event() -> None:
    m, hub = hub_for("containerd-1.7")
    old, _ = hub.subscribe(PB)
    hub.unsubscribe(old)
    _, q = hub.subscribe(PB)
    lifecycle(m)
    evs = drain(q)
    assert [NAMES[e.container_event_type] for e in evs[:1]] == ["STARTED"]  # the sandbox's CREATED went to the ghost
    assert len(evs) == 7
    m2, hub2 = hub_for("containerd-2.1")
    old, _ = hub2.subscribe(PB)
    hub2.unsubscribe(old)
    _, q2 = hub2.subscribe(PB)
    lifecycle(m2)
    assert len(drain(q2)) == 8


def test_recorded_releases_flavours_serve_the_same_apis() -> None:
    """rr/test_recorded_live.py::test_api_versions holds the real ones to the same sets."""
    assert get_flavor("containerd-1.7").apis == ("v1", "v1alpha2")
    assert get_flavor("containerd-2.1").apis == ("v1",)
    assert get_flavor("containerd-2.1").runtime_version.startswith("v2.1.")
    assert get_flavor("containerd-1.7").runtime_version.startswith("v1.7.")
