"""Fixtures for the sensor's shell tests: a fake runtime on a temp socket, on a virtual clock."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from fakecri.clock import VirtualClock
from fakecri.flavors import get_flavor
from fakecri.model import RuntimeModel
from fakecri.server import CallPolicy, FakeCriServer
from sensor.client import CriClient
from sensor.output import Emitter
from sensor.poller import Poller

MS = 1_000_000


def start_containers(model: RuntimeModel, sandbox_id: str, prefix: str, count: int) -> list[str]:
    """Create and start ``count`` containers named ``prefix0``... in the sandbox; their IDs."""
    ids = []
    for i in range(count):
        c = model.create_container(sandbox_id, f"{prefix}{i}", 0, "busybox")
        model.start_container(c.id)
        ids.append(c.id)
    return ids


@pytest.fixture
def rig(tmp_path) -> Iterator[Callable[..., SimpleNamespace]]:  # type: ignore[no-untyped-def]
    """``rig(flavor, policy=None, handshake="require")``: fake runtime + sensor poller on one virtual clock."""
    made: list[SimpleNamespace] = []

    def make(flavor: str = "containerd-1.7", policy: CallPolicy | None = None, handshake: str = "require",
             poll_interval_ns: int = 250 * MS) -> SimpleNamespace:
        clock = VirtualClock()
        model = RuntimeModel(clock, get_flavor(flavor), seed=3)
        model.pull_image("busybox")
        server = FakeCriServer(model, str(tmp_path / f"rt{len(made)}.sock"), policy=policy).start()
        out = io.StringIO()
        client = CriClient(server.addr, clock=clock.now_ns, handshake=handshake, rpc_timeout_s=2)
        poller = Poller(client, Emitter(out), poll_interval_ns=poll_interval_ns, now_ns=clock.now_ns)
        ns = SimpleNamespace(clock=clock, model=model, server=server, client=client, poller=poller, out=out,
                             events=lambda: [json.loads(line) for line in out.getvalue().splitlines()])
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.client.close()
        ns.server.stop(grace=None)
