"""Memory per tracked container (docs/performance.md, "Memory"): what the fast path and the diff
engine keep for a kubelet-shaped node, and the mechanisms that keep it small -- no second copy of
the list's entry bytes, interned repeated strings."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

import cri_api
from fakecri.clock import VirtualClock
from fakecri.flavors import get_flavor
from fakecri.kubelet import populate
from fakecri.model import RuntimeModel
from fakecri.server import FakeCriServer
from sensor import fastpath
from sensor.diff import DiffEngine
from sensor.fastpath import FastPath, Listing
from sensor.snapshot import ContainerSnap, SandboxSnap

PB = cri_api.api("v1").pb2
T0 = 1_700_000_000_000_000_000
#: Bytes kept per tracked container beyond the last answer itself. Measured: ~760 at 10,000 and
#: ~800 at 2,000; before the entry bytes were dropped and strings interned, ~2,300.
BOUND_PER_CONTAINER = 1_200


def node_answers(containers: int) -> tuple[bytes, bytes]:
    model = RuntimeModel(VirtualClock(), get_flavor("containerd-1.7"), seed=1)
    handlers = FakeCriServer(model, "/tmp/unused-footprint.sock").handlers
    populate(model, containers, per_pod=100)
    return (bytes(handlers.ListPodSandbox(PB, "v1", PB.ListPodSandboxRequest())),
            bytes(handlers.ListContainers(PB, "v1", PB.ListContainersRequest())))


def kept_per_container(containers: int) -> tuple[float, FastPath, DiffEngine]:
    sandboxes, answer = node_answers(containers)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fast, engine = FastPath(), DiffEngine()
        fast.begin(engine, Listing(sandboxes, answer, T0, T0 + 1), PB)
        engine.finish({}, T0 + 2)
        # a second poll with an equal answer in a new buffer, as grpcio hands one over
        again = bytes(bytearray(answer))
        fast.begin(engine, Listing(bytes(bytearray(sandboxes)), again, T0 + 10, T0 + 11), PB)
        engine.finish({}, T0 + 12)
        del again
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return kept / containers, fast, engine


def test_a_tracked_container_costs_under_the_bound() -> None:
    per, _fast, engine = kept_per_container(2_000)
    print(f"\nkept per tracked container at 2,000: {per:.0f} bytes (bound {BOUND_PER_CONTAINER})")
    assert engine.table_sizes()[0] == 2_000
    assert per < BOUND_PER_CONTAINER


def test_containers_of_one_pod_share_their_repeated_strings() -> None:
    from sensor.wire import container_snap

    _, answer = node_answers(200)
    a, b = (container_snap(c) for c in PB.ListContainersResponse.FromString(answer).containers[:2])
    assert a.sandbox_id is b.sandbox_id and a.image is b.image and a.image_ref is b.image_ref
    shared = set(a.labels) & set(b.labels)
    assert shared and all(next(k for k in a.labels if k == key) is next(k for k in b.labels if k == key)
                          for key in shared)
    assert a.labels["io.kubernetes.pod.uid"] is b.labels["io.kubernetes.pod.uid"]


def test_a_hash_collision_is_not_taken_for_an_unchanged_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries are known by their hash and confirmed against the kept answer: when a changed entry's
    hash equals the old one's (forced here: the hash is the length, and exited is as long as running),
    the change is still seen."""
    from tests.perf.test_fastpath_equivalence import encode

    monkeypatch.setattr(fastpath, "hash", len, raising=False)
    sb = SandboxSnap("s1", "pod", "ns", "u", 0, "ready", T0 - 9)
    running = ContainerSnap("a", "s1", "n", 0, "img", "sha256:1", "running", T0 - 8)
    exited = ContainerSnap("a", "s1", "n", 0, "img", "sha256:1", "exited", T0 - 8)
    fast, engine = FastPath(), DiffEngine()
    fast.begin(engine, encode([sb], [running], T0, T0 + 1), PB)
    engine.finish({}, T0 + 2)
    fast.begin(engine, encode([sb], [running], T0 + 10, T0 + 11), PB)
    assert engine.finish({}, T0 + 12) == []
    need = fast.begin(engine, encode([sb], [exited], T0 + 20, T0 + 21), PB)
    events = engine.finish({}, T0 + 22)
    assert need == ["a"] and [e.type for e in events] == ["container.exited"]
    assert fast.counts["delta"] == 1
