"""Round trips over a real unix socket, for both CRI API versions, and the status-code table."""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import grpc
import pytest

from fakecri.kubelet import populate
from fakecri.server import FakeCriServer
from fakecri.truth import RpcServed

BOTH = [("containerd-1.7", "v1"), ("containerd-1.7", "v1alpha2"), ("crio-1.13", "v1alpha2"), ("crio-1.26", "v1")]


def run_pod(f: SimpleNamespace, name: str = "web", labels: dict[str, str] | None = None) -> str:
    pb = f.pb
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
                              labels=labels or {})
    return f.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=5).pod_sandbox_id


def create(f: SimpleNamespace, sid: str, name: str = "app", labels: dict[str, str] | None = None) -> str:
    pb = f.pb
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox"),
                             labels=labels or {})
    return f.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg), timeout=5).container_id


@pytest.mark.parametrize(("flavor", "api"), BOTH)
def test_lifecycle_round_trip(serve, flavor: str, api: str) -> None:  # type: ignore[no-untyped-def]
    f = serve(flavor, api)
    pb, rt = f.pb, f.rt
    v = rt.Version(pb.VersionRequest(), timeout=5)
    assert (v.version, v.runtime_api_version) == ("0.1.0", api)
    assert v.runtime_name == f.model.flavor.runtime_name and v.runtime_version
    sid = run_pod(f)
    f.clock.advance(1_000)
    cid = create(f, sid)
    f.clock.advance(1_000)
    rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=5)
    f.clock.advance(1_000)
    st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=5).status
    assert st.state == pb.CONTAINER_RUNNING
    assert st.started_at - st.created_at == 1_000  # ns, exactly as the clock moved
    assert st.finished_at == 0 and st.exit_code == 0
    rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=5)
    st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=5).status
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137 and st.reason == "Error"
    assert st.finished_at == st.started_at + 1_000
    items = rt.ListContainers(pb.ListContainersRequest(), timeout=5).containers
    assert [(c.id, c.pod_sandbox_id, c.metadata.name) for c in items] == [(cid, sid, "app")]
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=5)
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=5)
    ps = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=5).status
    assert ps.state == pb.SANDBOX_NOTREADY
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=5)
    assert not rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=5).items
    rpcs = [r for r in f.model.truth if isinstance(r, RpcServed)]
    assert {r.api for r in rpcs} == {api} and all(r.code == "OK" for r in rpcs)


@pytest.mark.parametrize(("flavor", "api"), BOTH)
def test_filters(serve, flavor: str, api: str) -> None:  # type: ignore[no-untyped-def]
    f = serve(flavor, api)
    pb, rt = f.pb, f.rt
    s1, s2 = run_pod(f, "a", {"app": "a"}), run_pod(f, "b")
    c1, c2 = create(f, s1, "x", {"tier": "web"}), create(f, s2, "y")
    rt.StartContainer(pb.StartContainerRequest(container_id=c2), timeout=5)

    def ids(**flt: object) -> list[str]:
        req = pb.ListContainersRequest(filter=pb.ContainerFilter(**flt))
        return [c.id for c in rt.ListContainers(req, timeout=5).containers]

    assert ids(id=c1) == [c1]
    assert ids(pod_sandbox_id=s2) == [c2]
    assert ids(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)) == [c2]
    assert ids(label_selector={"tier": "web"}) == [c1]
    req = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector={"app": "a"}))
    assert [s.id for s in rt.ListPodSandbox(req, timeout=5).items] == [s1]


def _code(call, req) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        call(req, timeout=5)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def test_status_codes_containerd(serve) -> None:  # type: ignore[no-untyped-def]
    """One row per status code a lifecycle client meets, as containerd answers."""
    f = serve("containerd-1.6", "v1")
    pb, rt = f.pb, f.rt
    sid = run_pod(f)
    cid = create(f, sid)
    rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=5)
    table = [
        (rt.ContainerStatus, pb.ContainerStatusRequest(container_id="missing"), grpc.StatusCode.NOT_FOUND),
        (rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id="missing"), grpc.StatusCode.NOT_FOUND),
        (rt.StartContainer, pb.StartContainerRequest(container_id="missing"), grpc.StatusCode.NOT_FOUND),
        (rt.StopContainer, pb.StopContainerRequest(container_id="missing"), grpc.StatusCode.NOT_FOUND),
        (rt.RemoveContainer, pb.RemoveContainerRequest(container_id="missing"), grpc.StatusCode.OK),
        (rt.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id="missing"), grpc.StatusCode.OK),
        (rt.StartContainer, pb.StartContainerRequest(container_id=cid), grpc.StatusCode.UNKNOWN),
        (rt.ExecSync, pb.ExecSyncRequest(container_id=cid, cmd=["true"]), grpc.StatusCode.OK),
        (rt.GetContainerEvents, pb.GetEventsRequest(), None),
        (rt.Attach, pb.AttachRequest(container_id=cid), grpc.StatusCode.UNIMPLEMENTED),
        (f.img.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image="nothere")), grpc.StatusCode.OK),
        (f.img.RemoveImage, pb.RemoveImageRequest(image=pb.ImageSpec(image="nothere")), grpc.StatusCode.OK),
    ]
    for call, req, want in table:
        if want is None:  # containerd 1.6 does not implement the event stream
            with pytest.raises(grpc.RpcError) as e:
                next(iter(call(req, timeout=5)))
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
            continue
        assert _code(call, req) == want, type(req).__name__


def test_status_codes_crio_idempotent_stop(serve) -> None:  # type: ignore[no-untyped-def]
    f = serve("crio-1.26", "v1")
    pb, rt = f.pb, f.rt
    assert _code(rt.StopContainer, pb.StopContainerRequest(container_id="missing")) == grpc.StatusCode.OK
    assert _code(rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id="missing")) == grpc.StatusCode.OK
    assert _code(rt.ContainerStatus, pb.ContainerStatusRequest(container_id="missing")) == grpc.StatusCode.NOT_FOUND


def test_unserved_api_is_unimplemented(serve) -> None:  # type: ignore[no-untyped-def]
    f = serve("crio-1.26", "v1alpha2")  # CRI-O 1.26 dropped v1alpha2
    assert _code(f.rt.Version, f.pb.VersionRequest()) == grpc.StatusCode.UNIMPLEMENTED
    g = serve("containerd-1.5", "v1")
    assert _code(g.rt.Version, g.pb.VersionRequest()) == grpc.StatusCode.UNIMPLEMENTED


def test_verbose_info_is_flavour_shaped_json(serve) -> None:  # type: ignore[no-untyped-def]
    import json

    for flavor, keys in (("containerd-1.7", {"sandboxID", "pid", "runtimeSpec", "snapshotKey", "config"}),
                         ("crio-1.26", {"sandboxID", "pid", "runtimeSpec", "privileged"})):
        f = serve(flavor, "v1")
        sid = run_pod(f)
        cid = create(f, sid)
        info = f.rt.ContainerStatus(f.pb.ContainerStatusRequest(container_id=cid, verbose=True), timeout=5).info
        assert keys <= set(json.loads(info["info"]))
        pinfo = f.rt.PodSandboxStatus(f.pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True), timeout=5)
        assert "runtimeSpec" in json.loads(pinfo.info["info"])
        st = f.rt.Status(f.pb.StatusRequest(verbose=True), timeout=5)
        assert {(c.type, c.status) for c in st.status.conditions} == {("RuntimeReady", True), ("NetworkReady", True)}
        # JSON values, except containerd's lastCNILoadStatus* which are plain text ("OK"), as real containerd sends
        assert all(json.loads(v) is not None for k, v in st.info.items() if not k.startswith("lastCNILoadStatus"))


def test_events_stream_lifecycle(serve) -> None:  # type: ignore[no-untyped-def]
    f = serve("containerd-1.7", "v1")
    pb, rt = f.pb, f.rt
    sid = run_pod(f)
    stream = rt.GetContainerEvents(pb.GetEventsRequest(), timeout=10)
    # The subscription starts when the first message is requested; make one happen in a thread.
    import threading

    got: list = []

    def read() -> None:
        try:
            for ev in stream:
                got.append(ev)
                if len(got) == 4:
                    return
        except grpc.RpcError:
            return

    t = threading.Thread(target=read)
    t.start()
    import time

    for _ in range(200):  # wait until the server has the subscriber (no sleeps standing in for it)
        if f.server.hub._subs:
            break
        time.sleep(0.01)
    cid = create(f, sid)
    rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=5)
    rt.StopContainer(pb.StopContainerRequest(container_id=cid), timeout=5)
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=5)
    t.join(10)
    stream.cancel()
    assert [e.container_event_type for e in got] == [pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT,
                                                      pb.CONTAINER_STOPPED_EVENT, pb.CONTAINER_DELETED_EVENT]
    assert all(e.container_id == cid and e.pod_sandbox_status.id == sid for e in got)
    assert got[1].containers_statuses[0].state == pb.CONTAINER_RUNNING


def test_server_stop_ends_stream_with_subscription_closed(serve) -> None:  # type: ignore[no-untyped-def]
    f = serve("containerd-1.7", "v1")
    stream = f.rt.GetContainerEvents(f.pb.GetEventsRequest(), timeout=10)
    import threading
    import time

    codes: list = []

    def read() -> None:
        try:
            for _ in stream:
                pass
        except grpc.RpcError as e:
            codes.append((e.code(), e.details()))

    t = threading.Thread(target=read)
    t.start()
    for _ in range(200):
        if f.server.hub._subs:
            break
        time.sleep(0.01)
    f.server.stop(grace=1)
    t.join(10)
    assert codes == [(grpc.StatusCode.UNAVAILABLE, "subscription closed")]


def test_socket_safety(tmp_path, serve) -> None:  # type: ignore[no-untyped-def]
    f = serve()
    mode = stat.S_IMODE(os.stat(f.server.socket_path).st_mode)
    assert mode == 0o660 and stat.S_ISSOCK(os.stat(f.server.socket_path).st_mode)
    # a second server may not take over a live socket
    with pytest.raises(FileExistsError, match="in use"):
        FakeCriServer(f.model, f.server.socket_path).start()
    # a regular file is never replaced
    plain = tmp_path / "plain.sock"
    plain.write_text("precious")
    with pytest.raises(FileExistsError, match="not a socket"):
        FakeCriServer(f.model, str(plain)).start()
    assert plain.read_text() == "precious"
    # a stale socket (nobody listening) is replaced; the socket goes away on stop
    import socket as so

    stale = tmp_path / "stale.sock"
    s = so.socket(so.AF_UNIX)
    s.bind(str(stale))
    s.close()
    server = FakeCriServer(f.model, str(stale)).start()
    server.stop()
    assert not stale.exists()


def test_ten_thousand_containers_need_a_raised_limit(serve) -> None:  # type: ignore[no-untyped-def]
    f = serve("containerd-1.7", "v1", **{"grpc.max_receive_message_length": 16 * 1024 * 1024})
    populate(f.model, 10_000)
    resp = f.rt.ListContainers(f.pb.ListContainersRequest(), timeout=30)
    assert len(resp.containers) == 10_000 and resp.ByteSize() > 4 * 1024 * 1024
    # The same call from a client that keeps gRPC's default 4 MiB receive limit:
    import cri_api

    channel = grpc.insecure_channel(f.server.addr)
    stub = cri_api.api("v1").pb2_grpc.RuntimeServiceStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.ListContainers(f.pb.ListContainersRequest(), timeout=30)
    channel.close()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in e.value.details()
