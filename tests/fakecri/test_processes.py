"""Containers run what they say: exits, CRI log files, ExecSync, verbose runtimeSpec, stats --
through real gRPC on a real unix socket, for every flavour that serves runtime.v1 (issue 18)."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import cri_api
from fakecri.clock import RealClock, VirtualClock
from fakecri.flavors import FLAVORS, get_flavor
from fakecri.harness import Harness
from fakecri.model import RuntimeModel
from fakecri.server import FakeCriServer
from fakecri.truth import ContainerTransition

V1_FLAVORS = [name for name, f in FLAVORS.items() if "v1" in f.apis]
LOG_LINE = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) (stdout|stderr) ([FP]) (.*)$")
S = 1_000_000_000


@pytest.fixture
def cri(tmp_path) -> Iterator[Callable[..., SimpleNamespace]]:  # type: ignore[no-untyped-def]
    """``cri(flavor, clock)``: a served model (its own clock) with v1 stubs on a real socket."""
    started: list[tuple[FakeCriServer, grpc.Channel]] = []

    def start(flavor: str = "containerd-1.7", clock: str = "virtual", api: str = "v1") -> SimpleNamespace:
        clk = VirtualClock() if clock == "virtual" else RealClock()
        # exits show at once here: these tests are about processes (state lag: test_state_lag_quirk.py)
        model = RuntimeModel(clk, get_flavor(flavor).replace(state_lag_ns=0), seed=3)
        model.pull_image("busybox")
        server = FakeCriServer(model, str(tmp_path / f"p{len(started)}.sock")).start()
        channel = grpc.insecure_channel(server.addr)
        started.append((server, channel))
        mods = cri_api.api(api)
        return SimpleNamespace(model=model, clock=clk, server=server, pb=mods.pb2,
                               logs=tmp_path / f"logs{len(started)}",
                               rt=mods.pb2_grpc.RuntimeServiceStub(channel))

    yield start
    for server, channel in started:
        channel.close()
        server.stop(grace=None)


def pod(f: SimpleNamespace, name: str = "web", *, network: int = 0, cgroup_parent: str = "/kubepods/pod-x") -> tuple:
    pb = f.pb
    cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"), hostname=name,
        log_directory=str(f.logs / name),
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=network))))
    return f.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=5).pod_sandbox_id, cfg


def run(f: SimpleNamespace, sid: str, pod_cfg, name: str, command: list[str], *, start: bool = True,  # type: ignore[no-untyped-def]
        **config) -> str:
    pb = f.pb
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox"),
                             command=command, log_path=f"{name}.log", **config)
    cid = f.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg, sandbox_config=pod_cfg),
                               timeout=5).container_id
    if start:
        f.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=5)
    return cid


def status(f: SimpleNamespace, cid: str, verbose: bool = False):  # type: ignore[no-untyped-def]
    return f.rt.ContainerStatus(f.pb.ContainerStatusRequest(container_id=cid, verbose=verbose), timeout=5)


def wait_exited(f: SimpleNamespace, cid: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        st = status(f, cid).status
        if st.state == f.pb.CONTAINER_EXITED:
            return st
        assert time.monotonic() < deadline, f"container did not exit: {st}"
        time.sleep(0.01)


def log_lines(path: Path) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for line in path.read_bytes().splitlines():
        m = LOG_LINE.match(line)
        assert m is not None, f"not a CRI log line: {line!r}"
        out.append((m.group(2), m.group(3), m.group(4)))
    return out


# ------------------------------------------------------------------------------- the "done when"


@pytest.mark.parametrize(("flavor", "api"), [(n, "v1") for n in V1_FLAVORS] + [
    (n, "v1alpha2") for n, fl in FLAVORS.items() if fl.apis == ("v1alpha2",)])
def test_sh_c_echo_hi_exit_3_exits_logs_and_execs(cri, flavor: str, api: str) -> None:  # type: ignore[no-untyped-def]
    """``sh -c "echo hi; exit 3"`` exits by itself with code 3, its log holds ``stdout F hi``, and
    ExecSync ``echo x`` answers ``x`` -- against every v1 flavour (and the v1alpha2-only ones), over
    real gRPC, on a real clock."""
    f = cri(flavor, "real", api)
    pb = f.pb
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sh", "-c", "echo hi; exit 3"])
    st = wait_exited(f, cid)
    assert (st.exit_code, st.reason) == (3, "Error")
    assert st.started_at <= st.finished_at
    listed = f.rt.ListContainers(pb.ListContainersRequest(), timeout=5).containers
    assert [(c.id, c.state) for c in listed] == [(cid, pb.CONTAINER_EXITED)]
    assert log_lines(f.logs / "web" / "app.log") == [(b"stdout", b"F", b"hi")]
    exited = [r for r in f.model.truth.records() if isinstance(r, ContainerTransition) and r.transition == "exited"]
    assert [(r.container_id, r.exit_code, r.reason, r.time_ns) for r in exited] == [(cid, 3, "Error", st.finished_at)]

    sleeper = run(f, sid, cfg, "sleeper", ["sleep", "1000"])
    resp = f.rt.ExecSync(pb.ExecSyncRequest(container_id=sleeper, cmd=["echo", "x"]), timeout=5)
    assert (resp.stdout, resp.stderr, resp.exit_code) == (b"x\n", b"", 0)


@pytest.mark.parametrize("flavor", [n for n in V1_FLAVORS if FLAVORS[n].events in ("stream", "stream-then-closed")])
def test_a_container_that_exits_by_itself_is_streamed_as_exited(cri, flavor: str) -> None:  # type: ignore[no-untyped-def]
    """The sensor's view: GetContainerEvents announces the exit without anyone asking (real clock)."""
    f = cri(flavor, "real")
    pb = f.pb
    stream = f.rt.GetContainerEvents(pb.GetEventsRequest(), timeout=10)
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sh", "-c", "sleep 0.2; exit 4"])
    for ev in stream:
        if ev.container_id == cid and ev.container_event_type == pb.CONTAINER_STOPPED_EVENT:
            mine = [s for s in ev.containers_statuses if s.id == cid]
            assert [(s.state, s.exit_code) for s in mine] == [(pb.CONTAINER_EXITED, 4)]
            break
    stream.cancel()


# ------------------------------------------------------------------------------- virtual clock: exact times


def test_sleeps_and_exits_at_exact_virtual_instants(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.7")
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sh", "-c", "echo a; sleep 2; echo -n b; echo c >&2; exit 1"])
    started = status(f, cid).status.started_at
    f.clock.advance(S)
    assert status(f, cid).status.state == f.pb.CONTAINER_RUNNING
    assert log_lines(f.logs / "web" / "app.log") == [(b"stdout", b"F", b"a")]
    f.clock.advance(5 * S)  # past the exit: the answer shows it at its own instant, not "now"
    st = status(f, cid).status
    assert (st.state, st.exit_code, st.reason, st.finished_at) == (f.pb.CONTAINER_EXITED, 1, "Error", started + 2 * S)
    # the unterminated "b" is closed as a partial line when the process ends, as containerd does
    assert log_lines(f.logs / "web" / "app.log") == [(b"stdout", b"F", b"a"), (b"stderr", b"F", b"c"),
                                                      (b"stdout", b"P", b"b")]
    stamps = [line.split(b" ", 1)[0] for line in (f.logs / "web" / "app.log").read_bytes().splitlines()]
    assert stamps == [b"2023-11-14T22:13:20Z", b"2023-11-14T22:13:22Z", b"2023-11-14T22:13:22Z"]


def test_exec_form_long_runner_and_stop_flushes_partial_line(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.7")
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sh", "-c", "printf half; sleep infinity"])
    f.clock.advance(3600 * S)
    assert status(f, cid).status.state == f.pb.CONTAINER_RUNNING
    f.rt.StopContainer(f.pb.StopContainerRequest(container_id=cid, timeout=0), timeout=5)
    st = status(f, cid).status
    assert (st.exit_code, st.reason) == (137, "Error")
    assert log_lines(f.logs / "web" / "app.log") == [(b"stdout", b"P", b"half")]


def test_uninterpretable_command_runs_until_stopped_and_is_reported_once(cri, caplog) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.7")
    sid, cfg = pod(f)
    with caplog.at_level(logging.WARNING, logger="fakecri.processes"):
        a = run(f, sid, cfg, "a", ["sh", "-c", "yes | head -n 3"])
        b = run(f, sid, cfg, "b", ["sh", "-c", "yes | head -n 3"])
    f.clock.advance(3600 * S)
    assert [status(f, c).status.state for c in (a, b)] == [f.pb.CONTAINER_RUNNING] * 2
    reports = [r.getMessage() for r in caplog.records if "cannot interpret" in r.getMessage()]
    assert len(reports) == 1 and "a pipe (|)" in reports[0]


def test_scenario_containers_without_a_command_keep_running(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Scenario-scripted lifecycles are unchanged: no command, nothing interpreted, no log file."""
    with Harness("fast_exit", socket=str(tmp_path / "h.sock")) as h:
        h.run_to_end()
        kinds = [r.transition for r in h.truth.records() if isinstance(r, ContainerTransition)]
    assert kinds and not h.model.processes.pending
    assert not any(p.startswith("/var/log/pods") for p in h.model.processes.logs._open)


def test_harness_settles_process_exits_between_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A client-created container exits at its own instant in a virtual-clock harness; the truth
    stays in time order and is the same in two runs."""
    dumps = []
    for n in range(2):
        with Harness("fast_exit", socket=str(tmp_path / f"h{n}.sock")) as h:
            mods = cri_api.api("v1")
            ch = grpc.insecure_channel(h.addr)
            f = SimpleNamespace(pb=mods.pb2, rt=mods.pb2_grpc.RuntimeServiceStub(ch), logs=tmp_path / f"l{n}")
            sid, cfg = pod(f, "client")
            cid = run(f, sid, cfg, "job", ["sh", "-c", "sleep 0.15; exit 2"])
            h.advance("1s")
            h.run_to_end()
            ch.close()
            recs = h.truth.records()
            dumps.append("".join(line for line in h.truth.dumps().splitlines(True) if '"kind":"rpc"' not in line))
        times = [r.time_ns for r in recs if not hasattr(r, "method")]
        assert times == sorted(times)
        exited = [r for r in recs if isinstance(r, ContainerTransition) and r.container_id == cid
                  and r.transition == "exited"]
        assert [(r.exit_code, r.time_ns - h.start_ns) for r in exited] == [(2, 150_000_000)]
    assert dumps[0] == dumps[1]


# ------------------------------------------------------------------------------- ExecSync


def test_exec_sync_subset_and_errors(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.6")
    pb = f.pb
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sleep", "1000"], envs=[pb.KeyValue(key="FOO", value="bar")])

    def ex(cmd: list[str], timeout: int = 0):  # type: ignore[no-untyped-def]
        try:
            r = f.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout), timeout=5)
            return r.stdout, r.stderr, r.exit_code
        except grpc.RpcError as e:
            return e.code().name, e.details()

    assert ex(["sh", "-c", "echo a; echo b >&2; exit 5"]) == (b"a\n", b"b\n", 5)
    assert ex(["sh", "-c", "echo $HOSTNAME $HOME $FOO"]) == (b"web /root bar\n", b"", 0)
    assert ex(["cat", "/etc/hostname"]) == (b"web\n", b"", 0)
    assert ex(["cat", "/nope"]) == (b"", b"cat: can't open '/nope': No such file or directory\n", 1)
    assert ex(["sh", "-c", "echo kept > /tmp/f"]) == (b"", b"", 0)
    assert ex(["cat", "/tmp/f"]) == (b"kept\n", b"", 0)  # the container's writable layer
    assert ex(["sh", "-c", "exit 300"]) == (b"", b"", 44)
    assert ex(["sleep", "5"], timeout=1) == (
        "DEADLINE_EXCEEDED", "failed to exec in container: timeout 1s exceeded: context deadline exceeded")
    code, text = ex(["nosuchcmd"])
    assert code == "UNKNOWN" and re.fullmatch(
        r'failed to exec in container: failed to start exec "[0-9a-f]{64}": OCI runtime exec failed: exec failed: '
        r'unable to start container process: exec: "nosuchcmd": executable file not found in \$PATH: unknown', text)
    assert "Traceback" not in ex(["sh", "-c", "a | b"])[1]
    f.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=5)
    assert ex(["echo"]) == ("UNKNOWN", "failed to exec in container: container is in CONTAINER_EXITED state")


def test_exec_sync_takes_the_commands_time_on_a_real_clock(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.7", "real")
    pb = f.pb
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sleep", "1000"])
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        f.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sleep", "infinity"], timeout=1), timeout=10)
    took = time.monotonic() - t0
    print(f"ExecSync with timeout 1 of 'sleep infinity' answered after {took:.3f}s")
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and took >= 0.9


def test_exec_attach_portforward_answer_without_python_text(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.6")
    pb = f.pb
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sleep", "1000"])
    unknown = "0" * 64

    def code(call, req):  # type: ignore[no-untyped-def]
        with pytest.raises(grpc.RpcError) as e:
            call(req, timeout=5)
        return e.value.code().name, e.value.details()

    assert code(f.rt.Exec, pb.ExecRequest(container_id=cid, cmd=["sh"], stdout=True)) == (
        "UNIMPLEMENTED", "method Exec not implemented")
    assert code(f.rt.Attach, pb.AttachRequest(container_id=cid, stdout=True)) == (
        "UNIMPLEMENTED", "method Attach not implemented")
    assert code(f.rt.PortForward, pb.PortForwardRequest(pod_sandbox_id=sid, port=[80])) == (
        "UNIMPLEMENTED", "method PortForward not implemented")
    assert code(f.rt.Exec, pb.ExecRequest(container_id=unknown, cmd=["sh"], stdout=True)) == (
        "NOT_FOUND", f'failed to find container "{unknown}" in store: not found')


# ------------------------------------------------------------------------------- logs


def test_reopen_container_log_starts_a_fresh_file_after_rotation(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.7")
    pb = f.pb
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sh", "-c", "echo one; sleep 1; echo two; sleep 1; echo three; sleep infinity"])
    path = f.logs / "web" / "app.log"
    status(f, cid)
    os.rename(path, str(path) + ".1")
    f.clock.advance(S)
    status(f, cid)  # "two" still goes to the renamed file: the runtime holds it open
    f.rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=5)
    f.clock.advance(S)
    status(f, cid)
    assert log_lines(Path(str(path) + ".1")) == [(b"stdout", b"F", b"one"), (b"stdout", b"F", b"two")]
    assert log_lines(path) == [(b"stdout", b"F", b"three")]
    f.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=5)
    with pytest.raises(grpc.RpcError) as e:
        f.rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNKNOWN, "container is not running")


# ------------------------------------------------------------------------------- verbose info, resources, stats


def test_verbose_info_carries_annotations_cgroups_path_and_namespaces(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.6")
    pb = f.pb
    sid, cfg = pod(f, "web", cgroup_parent="/kubepods/besteffort/pod-uid-web")
    cid = run(f, sid, cfg, "app", ["sleep", "1000"],
              mounts=[pb.Mount(container_path="/data", host_path="/srv/data", readonly=True)])
    spec = json.loads(status(f, cid, verbose=True).info["info"])["runtimeSpec"]
    sandbox = json.loads(f.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True),
                                               timeout=5).info["info"])
    spid = sandbox["pid"]
    assert spec["annotations"] == {
        "io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.image-name": "docker.io/library/busybox:latest", "io.kubernetes.cri.sandbox-id": sid,
        "io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "uid-web"}
    assert spec["linux"]["cgroupsPath"] == f"/kubepods/besteffort/pod-uid-web/{cid}"
    assert spec["linux"]["namespaces"] == [
        {"type": "pid", "path": f"/proc/{spid}/ns/pid"}, {"type": "ipc", "path": f"/proc/{spid}/ns/ipc"},
        {"type": "uts", "path": f"/proc/{spid}/ns/uts"}, {"type": "mount"},
        {"type": "network", "path": f"/proc/{spid}/ns/net"}]
    assert {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "rprivate", "ro"]} \
        in spec["mounts"]
    assert spec["process"]["args"] == ["sleep", "1000"] and spec["process"]["env"][1] == "HOSTNAME=web"
    sspec = sandbox["runtimeSpec"]
    assert sspec["annotations"]["io.kubernetes.cri.container-type"] == "sandbox"
    assert sspec["annotations"]["io.kubernetes.cri.sandbox-log-directory"] == str(f.logs / "web")
    assert sspec["linux"]["cgroupsPath"] == f"/kubepods/besteffort/pod-uid-web/{sid}"
    assert [n["type"] for n in sspec["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]

    node_sid, node_cfg = pod(f, "host", network=2, cgroup_parent="kubepods-besteffort.slice")
    node_cid = run(f, node_sid, node_cfg, "app", ["sleep", "1000"])
    spec = json.loads(status(f, node_cid, verbose=True).info["info"])["runtimeSpec"]
    assert spec["linux"]["cgroupsPath"] == f"kubepods-besteffort.slice:cri-containerd:{node_cid}"
    assert [n["type"] for n in spec["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]


def test_update_container_resources_is_reflected(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.6")
    pb = f.pb
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sleep", "1000"], linux=pb.LinuxContainerConfig(
        resources=pb.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=64 << 20)))
    f.rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(cpu_shares=256, memory_limit_in_bytes=128 << 20)),
        timeout=5)
    res = status(f, cid).status.resources.linux
    assert (res.cpu_shares, res.memory_limit_in_bytes, res.memory_swap_limit_in_bytes) == (256, 128 << 20, 128 << 20)
    spec = json.loads(status(f, cid, verbose=True).info["info"])["runtimeSpec"]
    assert spec["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}],
                                          "memory": {"limit": 128 << 20, "swap": 128 << 20}, "cpu": {"shares": 256}}


def test_container_stats_are_filled_for_running_containers(cri) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.6")
    pb = f.pb
    sid, cfg = pod(f)
    cid = run(f, sid, cfg, "app", ["sleep", "1000"], linux=pb.LinuxContainerConfig(
        resources=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20)))
    done = run(f, sid, cfg, "done", ["true"])
    f.clock.advance(S)
    s = f.rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid), timeout=5).stats
    assert s.attributes.id == cid and s.cpu.timestamp and s.cpu.usage_core_nano_seconds.value > 0
    assert s.memory.working_set_bytes.value > 0 and s.memory.available_bytes.value > 0
    assert s.writable_layer.fs_id.mountpoint
    with pytest.raises(grpc.RpcError) as e:
        f.rt.ContainerStats(pb.ContainerStatsRequest(container_id=done), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNKNOWN, "unexpected metrics response: []")
    listed = {x.attributes.id: x for x in f.rt.ListContainerStats(pb.ListContainerStatsRequest(), timeout=5).stats}
    assert listed[cid].HasField("cpu") and not listed[done].HasField("cpu") and listed[done].HasField("writable_layer")


# ------------------------------------------------------------------------------- IDs


def test_ids_are_fresh_per_instance_unless_the_scenario_fixes_a_seed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fakecri import scenario as sc

    base = sc.load(sc.bundled()["fast_exit"])
    unseeded = sc.Scenario(**{**base.__dict__, "seed": None})
    seeded = sc.Scenario(**{**base.__dict__, "seed": 5})

    def first_id(s: sc.Scenario, clock: str, n: int) -> str:
        return Harness(s, socket=str(tmp_path / f"{clock}{n}.sock"), clock=clock).model.new_id()  # type: ignore[arg-type]

    assert first_id(unseeded, "real", 1) != first_id(unseeded, "real", 2)
    assert first_id(seeded, "real", 3) == first_id(seeded, "real", 4)
    assert first_id(unseeded, "virtual", 5) == first_id(unseeded, "virtual", 6)  # virtual runs repeat byte for byte


# ------------------------------------------------------------------------------- model property


@given(st.lists(st.tuples(st.integers(0, 3_000), st.integers(0, 255), st.integers(0, 4_000),
                          st.sampled_from(["wait", "stop", "remove", "pod"])), min_size=1, max_size=6))
@example([(0, 3, 0, "wait")])
@example([(1_000, 7, 1_000, "stop")])  # stopped at the very instant it would have exited
def test_processes_exit_once_at_their_own_instant(plan: list[tuple[int, int, int, str]]) -> None:
    """Containers ``sh -c "sleep X; exit N"`` started at once; after ``then`` ms something happens
    (nothing, StopContainer, RemoveContainer, StopPodSandbox). A process the client did not end
    first exits exactly at start + X with N; every container exits at most once; truth in time order."""
    clock = VirtualClock()
    m = RuntimeModel(clock, get_flavor("containerd-1.7"), seed=1)
    m.pull_image("busybox")
    sandboxes = [m.run_pod_sandbox(f"p{i}", "ns", f"u{i}") for i in range(len(plan))]
    t0 = clock.now_ns()
    cids = []
    for i, (sleep_ms, code, _, _) in enumerate(plan):
        c = m.create_container(sandboxes[i].id, "c", 0, "busybox",
                               config={"command": ["sh", "-c", f"sleep {sleep_ms / 1000}; exit {code}"]})
        m.start_container(c.id)
        cids.append(c.id)
    ms = 1_000_000
    for t, i in sorted((then, i) for i, (_, _, then, _) in enumerate(plan)):
        clock.set(t0 + t * ms)
        action = plan[i][3]
        if action == "stop":
            m.stop_container(cids[i])
        elif action == "remove":
            m.remove_container(cids[i])
        elif action == "pod":
            m.stop_pod_sandbox(sandboxes[i].id)
    clock.set(t0 + 10_000 * ms)
    m.settle()
    recs = [r for r in m.truth.records() if isinstance(r, ContainerTransition)]
    shown = [r.shown_ns or r.time_ns for r in recs]  # in the order answers showed them (state lag)
    assert shown == sorted(shown)
    for i, (sleep_ms, code, then, action) in enumerate(plan):
        exits = [(r.exit_code, r.time_ns - t0) for r in recs if r.container_id == cids[i] and r.transition == "exited"]
        if action == "wait" or sleep_ms * ms < then * ms or (sleep_ms == then and action != "wait"):
            assert exits == [(code, sleep_ms * ms)]
        else:
            assert exits == [(137, then * ms)]


def test_a_log_path_the_node_cannot_open_does_not_fail_the_container(cri, caplog) -> None:  # type: ignore[no-untyped-def]
    f = cri("containerd-1.7")
    pb = f.pb
    sid, cfg = pod(f)
    cfg.log_directory = "/proc/no-such-dir"
    with caplog.at_level(logging.WARNING, logger="fakecri.logs"):
        for name, log_path in (("a", "x.log"), ("b", "bad\x00name.log")):
            c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox"),
                                   command=["sh", "-c", "echo hi; cat /data/\x00"], log_path=log_path,
                                   mounts=[pb.Mount(container_path="/data", host_path="/tmp")])
            cid = f.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=c, sandbox_config=cfg),
                                       timeout=5).container_id
            f.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=5)
            assert status(f, cid).status.exit_code == 1  # cat failed; the container ran
    assert sum("cannot open container log" in r.getMessage() for r in caplog.records) == 2


# ------------------------------------------------------------------------------- as a user runs it


def test_fakecri_serve_runs_a_clients_container_and_reports_what_it_cannot_interpret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``fakecri serve`` (a real subprocess, real clock): a client's container exits by itself and
    logs; an uninterpretable one runs on and fakecri says so once on stderr; IDs differ per run."""
    import signal
    import subprocess
    import sys

    def serve(n: int) -> tuple[subprocess.Popen[str], SimpleNamespace]:
        sock = tmp_path / f"s{n}.sock"
        proc = subprocess.Popen([sys.executable, "-m", "fakecri.cli", "serve", "--socket", str(sock)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "fakecri serve did not start"
            time.sleep(0.05)
        mods = cri_api.api("v1")
        channel = grpc.insecure_channel(f"unix://{sock}")
        return proc, SimpleNamespace(pb=mods.pb2, rt=mods.pb2_grpc.RuntimeServiceStub(channel), channel=channel,
                                     logs=tmp_path / f"logs{n}")

    ids = []
    for n in range(2):
        proc, f = serve(n)
        try:
            f.rt.ListContainers(f.pb.ListContainersRequest(), timeout=10)  # starts the (empty) timeline
            img = cri_api.api("v1").pb2_grpc.ImageServiceStub(f.channel)
            img.PullImage(f.pb.PullImageRequest(image=f.pb.ImageSpec(image="busybox")), timeout=10)
            sid, cfg = pod(f)
            ids.append(sid)
            cid = run(f, sid, cfg, "app", ["sh", "-c", "echo hi; sleep 0.2; exit 3"])
            odd = run(f, sid, cfg, "odd", ["sh", "-c", "yes | head"])
            run(f, sid, cfg, "odd2", ["sh", "-c", "yes | head"])
            st = wait_exited(f, cid)
            assert (st.exit_code, st.finished_at - st.started_at) == (3, 200_000_000)
            assert log_lines(f.logs / "web" / "app.log") == [(b"stdout", b"F", b"hi")]
            assert status(f, odd).status.state == f.pb.CONTAINER_RUNNING
        finally:
            f.channel.close()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert err.count("cannot interpret") == 1 and "a pipe (|)" in err and "Traceback" not in err, err
    assert ids[0] != ids[1]
