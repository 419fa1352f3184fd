"""Fixtures for the hostile-runtime suite: a ``HostileCri`` on a temp socket, and the real sensor
(``Poller`` in process, or ``crisensor run`` as a subprocess) pointed at it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from hostile_cri import HostileCri

from sensor.client import CriClient
from sensor.metrics import Metrics
from sensor.output import Emitter
from sensor.poller import Poller

MS = 1_000_000


@pytest.fixture
def hostile(tmp_path) -> Iterator[Callable[..., HostileCri]]:  # type: ignore[no-untyped-def]
    """``hostile(stream=False)``: a started ``HostileCri`` (stopped at teardown)."""
    made: list[HostileCri] = []

    def make(stream: bool = False) -> HostileCri:
        server = HostileCri(str(tmp_path / f"hostile{len(made)}.sock"), stream=stream).start()
        made.append(server)
        return server

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def sensor(caplog) -> Iterator[Callable[..., SimpleNamespace]]:  # type: ignore[no-untyped-def]
    """``sensor(server, fast=True, events="off", rpc_timeout_s=2)``: the real ``Poller`` on a real
    client, real clock; ``events()`` parses what it wrote, ``metric(name, **labels)`` reads a sample."""
    caplog.set_level(logging.INFO)
    made: list[SimpleNamespace] = []

    def make(server: HostileCri, *, fast: bool = True, events: str = "off", rpc_timeout_s: float = 2.0,
             max_recv_bytes: int = 16 * 1024 * 1024) -> SimpleNamespace:
        out = io.StringIO()
        client = CriClient(server.addr, rpc_timeout_s=rpc_timeout_s, max_recv_bytes=max_recv_bytes)
        metrics = Metrics()
        poller = Poller(client, Emitter(out), poll_interval_ns=50 * MS, metrics=metrics, fast=fast, events=events,
                        resync_interval_ns=60_000 * MS)

        def metric(name: str, **labels: str) -> float:
            return metrics.registry.get_sample_value(name, labels) or 0.0

        ns = SimpleNamespace(client=client, poller=poller, metrics=metrics, metric=metric,
                             events=lambda: [json.loads(x) for x in out.getvalue().splitlines()])
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.poller.close()
        ns.client.close()
    # never a traceback: no log record carries one (grpcio logs one when it fails to deserialize)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
