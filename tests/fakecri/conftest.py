"""Shared fixtures for the fake runtime's own tests: a served model on a temp socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import grpc
import pytest

import cri_api
from fakecri.clock import VirtualClock
from fakecri.flavors import get_flavor
from fakecri.model import RuntimeModel
from fakecri.server import FakeCriServer


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., SimpleNamespace]]:  # type: ignore[no-untyped-def]
    """``serve(flavor, api)`` -> namespace with model, clock, server, rt/img stubs and pb module."""
    started: list[tuple[FakeCriServer, grpc.Channel]] = []

    def start(flavor: str = "containerd-1.7", api: str = "v1", **channel_opts: int) -> SimpleNamespace:
        clock = VirtualClock()
        model = RuntimeModel(clock, get_flavor(flavor), seed=7)
        model.pull_image("busybox")
        server = FakeCriServer(model, str(tmp_path / f"cri-{len(started)}.sock")).start()
        channel = grpc.insecure_channel(server.addr, options=list(channel_opts.items()))
        started.append((server, channel))
        mods = cri_api.api(api)
        return SimpleNamespace(model=model, clock=clock, server=server, pb=mods.pb2, api=api,
                               rt=mods.pb2_grpc.RuntimeServiceStub(channel),
                               img=mods.pb2_grpc.ImageServiceStub(channel))

    yield start
    for server, channel in started:
        channel.close()
        server.stop(grace=None)
