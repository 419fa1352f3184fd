"""``crisensor_poll_rpc_wait_seconds``: the part of each poll spent in its CRI calls (lists and
statuses), so that an operator can tell a slow runtime from a slow sensor. Latency injected into
one method at a time must show up in it, and it never exceeds the poll's own duration."""

from __future__ import annotations

import io
from pathlib import Path

from fakecri.clock import VirtualClock
from fakecri.faults import FaultPolicy
from fakecri.flavors import get_flavor
from fakecri.kubelet import populate
from fakecri.model import RuntimeModel
from fakecri.server import FakeCriServer
from sensor.client import CriClient
from sensor.metrics import Metrics
from sensor.output import Emitter
from sensor.poller import Poller

MS = 1_000_000


def _hist(metrics: Metrics, name: str) -> tuple[float, float]:
    reg = metrics.registry
    return reg.get_sample_value(f"{name}_count") or 0.0, reg.get_sample_value(f"{name}_sum") or 0.0


def test_injected_latency_in_lists_and_statuses_is_counted_as_the_runtimes(tmp_path: Path) -> None:
    clock = VirtualClock()
    model = RuntimeModel(clock, get_flavor("containerd-1.7"), seed=3)
    model.pull_image("busybox")
    faults = FaultPolicy(model)
    server = FakeCriServer(model, str(tmp_path / "rt.sock"), policy=faults).start()
    metrics = Metrics()
    poller = Poller(CriClient(server.addr, clock=clock.now_ns, rpc_timeout_s=5), Emitter(io.StringIO()),
                    poll_interval_ns=250 * MS, now_ns=clock.now_ns, metrics=metrics)
    try:
        populate(model, 6, per_pod=3)
        assert poller.step()
        before = _hist(metrics, "crisensor_poll_rpc_wait_seconds")[1]

        faults.start("latency", {"ms": 80, "methods": ["ListContainers"]})
        clock.advance(250 * MS)
        assert poller.step()
        faults.stop("latency")
        after_list = _hist(metrics, "crisensor_poll_rpc_wait_seconds")[1]
        assert after_list - before >= 0.08  # the slow list is the runtime's

        victim = next(c for c in model.containers.values() if c.state == "running")
        model.exit_container(victim.id, 3)  # the next poll asks its status (the exit code)
        faults.start("latency", {"ms": 80, "methods": ["ContainerStatus"]})
        clock.advance(250 * MS)
        assert poller.step()
        faults.stop("latency")
        after_status = _hist(metrics, "crisensor_poll_rpc_wait_seconds")[1]
        assert after_status - after_list >= 0.08  # and so is a slow status call

        polls, poll_sum = _hist(metrics, "crisensor_poll_duration_seconds")
        waits, wait_sum = _hist(metrics, "crisensor_poll_rpc_wait_seconds")
        assert polls == waits == 3
        assert wait_sum <= poll_sum  # a share of the poll, never more
    finally:
        poller.client.close()
        server.stop(grace=None)
