"""Handshake quirks through the relay: old cmux starves grpcio, raw HTTP/2 gets through; fixed cmux works."""

from __future__ import annotations

import socket
import time

import grpc
import pytest
from scenarioclient import code_of, connect, h2_unary, pb_of

from fakecri.pytest_plugin import fakecri  # noqa: F401 -- the fixture, also without the entry point
from sensor.handshake import CLIENT_PREFACE, EMPTY_SETTINGS


def test_old_cmux_times_grpcio_out_but_answers_a_client_that_sends_first(fakecri) -> None:  # noqa: F811
    h = fakecri.start("crio_1_13_old_handshake")
    assert h.handshake == "cmux" and h.flavor.apis == ("v1alpha2",)
    c = connect(h.addr, "v1alpha2")
    t0 = time.monotonic()
    assert code_of(lambda: c.rt.Version(c.pb.VersionRequest(), timeout=1)) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 >= 0.9
    c.close()
    assert h.relay is not None and h.relay.forwarded == 0  # never even connected to the backend
    pb = pb_of("v1alpha2")
    status, resp = h2_unary(h.socket, "/runtime.v1alpha2.RuntimeService/Version", pb.VersionRequest(),
                            pb.VersionResponse)
    assert status == "0"
    assert (resp.runtime_name, resp.runtime_version, resp.runtime_api_version) == ("cri-o", "1.13.11", "v1alpha2")
    status, resp = h2_unary(h.socket, "/runtime.v1alpha2.RuntimeService/ListContainers",
                            pb.ListContainersRequest(), pb.ListContainersResponse)
    assert status == "0" and [x.metadata.name for x in resp.containers] == ["app"]


def test_old_cmux_sends_nothing_before_headers(fakecri) -> None:  # noqa: F811
    h = fakecri.start("crio_1_13_old_handshake")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.3)
    s.connect(h.socket)
    s.sendall(CLIENT_PREFACE + EMPTY_SETTINGS)  # what grpcio sends before it waits
    with pytest.raises(TimeoutError):
        s.recv(100)
    s.close()


def test_fixed_cmux_sends_empty_settings_at_once_and_grpcio_works(fakecri) -> None:  # noqa: F811
    h = fakecri.start("crio_1_16_fixed_handshake")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(h.socket)
    assert s.recv(100) == EMPTY_SETTINGS  # before the client sent a single byte
    s.close()
    c = connect(h.addr, "v1alpha2")
    for _ in range(3):  # the connection stays healthy: the server never saw a stray SETTINGS ACK
        v = c.rt.Version(c.pb.VersionRequest(), timeout=2)
        assert v.runtime_version == "1.16.6"
        assert len(c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=2).containers) == 1
    h.advance("600ms")
    assert len(c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=2).containers) == 2
    c.close()


def test_handshake_quirk_is_in_the_truth(fakecri) -> None:  # noqa: F811
    h = fakecri.start("crio_1_16_fixed_handshake")
    first = h.truth.records()[0]
    assert (first.kind, first.fault, first.phase, first.params) == ("fault", "handshake", "start",
                                                                    {"mode": "cmux-settings"})
