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
    """The events queued, parsed: the hub queues each one serialized, as the server sends it."""
    out = []
    while not q.empty():
        out.append(PB.ContainerEventResponse.FromString(q.get()))
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


def test_each_event_carries_its_pods_statuses_as_they_are_now() -> None:
    """The hub serializes a container's status once per state and reuses it: every event must still
    show each member as it is at that event -- an exit's code, new resources -- and equal the message
    built from scratch."""
    from fakecri import convert

    m, hub = hub_for("containerd-2.1")
    _, q = hub.subscribe(PB)
    s = m.run_pod_sandbox("web", "default", "uid-1")
    a = m.create_container(s.id, "a", 0, "busybox")
    b = m.create_container(s.id, "b", 0, "busybox")
    m.start_container(b.id)
    m.start_container(a.id)  # b's running status is serialized for this event
    m.update_container_resources(b.id, {"cpu_shares": 512})  # no event: b's state stays the same
    m.exit_container(a.id, 7)  # this event shows a's exit and b's new resources
    evs = drain(q)
    last = evs[-1]
    by_id = {st.id: st for st in last.containers_statuses}
    assert by_id[a.id].state == PB.CONTAINER_EXITED and by_id[a.id].exit_code == 7
    assert by_id[b.id].resources.linux.cpu_shares == 512
    want = PB.ContainerEventResponse(
        container_id=a.id, container_event_type=2, created_at=last.created_at,
        pod_sandbox_status=convert.pod_sandbox_status(PB, m.sandboxes[s.id]),
        containers_statuses=[convert.container_status(PB, c, m.flavor) for c in m.pod_containers(s.id)])
    assert last == want
    m.exit_container(b.id, 0)
    m.remove_container(a.id)
    m.remove_container(b.id)
    assert not hub._entries, "a removed container's status is kept"
