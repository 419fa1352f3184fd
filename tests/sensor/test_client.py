"""The CRI client against the fake runtime: negotiation, limits, deadlines, handshakes, errors."""

from __future__ import annotations

import pytest

from fakecri.clock import RealClock
from fakecri.flavors import get_flavor
from fakecri.kubelet import populate
from fakecri.model import RuntimeModel
from fakecri.relay import Relay
from fakecri.server import FakeCriServer
from sensor.client import ConnectError, CriCallError, CriClient


@pytest.fixture
def runtime(tmp_path):  # type: ignore[no-untyped-def]
    servers: list = []

    def start(flavor: str, handshake: str | None = None) -> str:
        model = RuntimeModel(RealClock(), get_flavor(flavor))
        backend = str(tmp_path / f"b{len(servers)}.sock")
        server = FakeCriServer(model, backend).start()
        servers.append(server)
        if handshake is None:
            return server.addr
        public = str(tmp_path / f"p{len(servers)}.sock")
        relay = Relay(public, backend, handshake).start()
        servers.append(relay)
        return f"unix://{public}"

    yield start
    for s in reversed(servers):
        s.stop()


@pytest.mark.parametrize(("flavor", "api"), [("containerd-1.5", "v1alpha2"), ("containerd-1.6", "v1"),
                                             ("containerd-2.0", "v1"), ("crio-1.13", "v1alpha2"),
                                             ("crio-1.26", "v1")])
def test_negotiates_newest_served_api(runtime, flavor: str, api: str) -> None:  # type: ignore[no-untyped-def]
    client = CriClient(runtime(flavor))
    info = client.connect()
    assert info.api == api and info.runtime_api_version == api
    assert info.runtime_name == get_flavor(flavor).runtime_name
    assert client.list().containers == ()
    client.close()


def test_missing_socket_is_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = CriClient(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(ConnectError) as e:
        client.connect()
    assert str(e.value) == (f"connection error: socket {tmp_path}/nothing.sock does not exist "
                            "(is the runtime running? check crisensor.addr)")


def test_old_crio_without_the_variable_fails_like_the_original(runtime) -> None:  # type: ignore[no-untyped-def]
    client = CriClient(runtime("crio-1.13", "cmux"), rpc_timeout_s=0.5)
    with pytest.raises(ConnectError) as e:
        client.connect()
    msg = str(e.value)
    assert msg.startswith("connection error context deadline exceeded")
    assert "GRPC_GO_REQUIRE_HANDSHAKE=off" in msg


@pytest.mark.parametrize("handshake", ["off", "auto"])
@pytest.mark.parametrize("quirk", ["cmux", "cmux-settings", None])
def test_shim_reaches_old_and_new_runtimes(runtime, handshake: str, quirk: str | None) -> None:  # type: ignore[no-untyped-def]
    client = CriClient(runtime("crio-1.13", quirk), handshake=handshake, rpc_timeout_s=2)
    assert client.connect().runtime_name == "cri-o"
    for _ in range(3):  # the connection keeps working after the first call (no stray SETTINGS ACK)
        assert client.list().sandboxes == ()
    shim = client._shim
    # auto only injects SETTINGS where the runtime withholds its own
    assert shim.injected >= 1 if (handshake == "off" or quirk == "cmux") else shim.injected == 0
    client.close()


def test_dead_runtime_is_detected_through_the_shim(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # a socket file nobody listens on
    s.close()
    for handshake in ("off", "auto"):
        client = CriClient(f"unix://{path}", handshake=handshake, rpc_timeout_s=0.5)
        with pytest.raises(ConnectError):
            client.connect()
        client.close()


def test_large_lists_need_the_16mib_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    populate(model, 10_000)
    with FakeCriServer(model, str(tmp_path / "big.sock")) as server:
        client = CriClient(server.addr, rpc_timeout_s=30)
        client.connect()
        assert len(client.list().containers) == 10_000
        client.close()
        small = CriClient(server.addr, rpc_timeout_s=30, max_recv_bytes=4 * 1024 * 1024)
        small.connect()
        with pytest.raises(CriCallError) as e:
            small.list()
        small.close()
        assert e.value.code == "RESOURCE_EXHAUSTED" and e.value.method == "ListContainers"


def test_status_notfound_is_none_and_other_errors_absent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    model.pull_image("busybox")
    sb = model.run_pod_sandbox("p", "ns", "u")
    c = model.create_container(sb.id, "c", 0, "busybox")
    with FakeCriServer(model, str(tmp_path / "s.sock")) as server:
        client = CriClient(server.addr)
        client.connect()
        details, err = client.status([c.id, "0" * 64])
        assert err is None
        assert details["0" * 64] is None
        assert details[c.id] is not None and details[c.id].started_at == 0
        client.close()


def test_status_fan_out_gives_what_one_call_after_the_other_gives(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ContainerStatus calls in flight together (sensor.fanout) answer exactly as sequential ones,
    NotFound included, whatever the number in flight."""
    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    model.pull_image("busybox")
    sb = model.run_pod_sandbox("p", "ns", "u")
    ids = []
    for i in range(40):
        c = model.create_container(sb.id, f"c{i}", 0, "busybox")
        if i % 3:
            model.start_container(c.id)
        if i % 3 == 2:
            model.stop_container(c.id)
        ids.append(c.id)
    ids[5:5] = ["f" * 64]  # unknown: NotFound, in the middle
    with FakeCriServer(model, str(tmp_path / "s.sock")) as server:
        client = CriClient(server.addr)
        client.connect()
        answers = []
        for flight in (1, 4, 16, 64):
            client.status_in_flight = flight
            answers.append(client.status(ids))
        client.close()
    assert all(a == answers[0] for a in answers)
    details, err = answers[0]
    assert err is None and details["f" * 64] is None and len(details) == len(ids)
    assert details[ids[2]] is not None and details[ids[2]].finished_at > 0  # c2: exited


def test_call_counts_lose_nothing_when_threads_issue_at_once() -> None:
    """``rpc_count`` (``crisensor_cri_calls_total``) is bumped by the poll, status, stream and lookup
    threads; a read-then-store that a thread switch splits would lose counts. Switching threads every
    microsecond makes such a split near certain without the lock."""
    import sys
    import threading

    client = CriClient("unix:///nonexistent.sock")
    per_thread, threads = 50_000, 4
    go = threading.Barrier(threads)

    def bump() -> None:
        go.wait()
        for _ in range(per_thread):
            client._counted("ContainerStatus")

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=bump) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(before)
    assert client.rpc_count == {"ContainerStatus": per_thread * threads}
