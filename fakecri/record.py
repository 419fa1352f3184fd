"""``fakecri record``: drive fixed CRI call sequences against any runtime and record what it says.

Theory of operation
-------------------
A *sequence* is a list of actions on one pod (``SEQUENCES``): run the pod, create/start
containers with a given life and exit code, stop or remove them in some order, stop or remove the
pod, wait until a container shows EXITED. The same sequences run against a real runtime (its
processes really run ``sh -c 'sleep L; exit N'``) and against fakecri (whose emulator runs the same
commands; ``Target.exit_process`` is for a fake without one).

While a sequence runs, one ``GetContainerEvents`` stream (opened before it, runtime.v1) is read on
a thread, and after every action the recorder takes a *snapshot*: ListPodSandbox, ListContainers
(both scoped to the sequence's pod) and the status of the pod and of each of its containers.

Everything recorded is *normalised* so that two runtimes can be compared message by message and a
recording can be checked in: IDs become names (``<pod>``, ``<c:app>``; an unknown one ``<id>``),
timestamps become ``"<t>"`` (set) or stay ``0`` (unset), pids, IPs, sizes become ``"<n>"``,
verbose ``info`` maps keep their keys, log paths lose their directory; field presence is kept
(``ListFields``: unset fields are absent, as on the wire). The result is plain JSON.

The recorder is an I/O shell around two pure parts: ``normalise`` (message -> JSON shape) and
``compare`` (two recordings -> differences).
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor

import cri_api

#: Fields that hold times (ns), numbers that differ per run, and addresses.
_TIME_FIELDS = frozenset({"created_at", "started_at", "finished_at", "timestamp"})
_NUMBER_FIELDS = frozenset({"size", "pid", "used_bytes", "inodes_used", "value"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: What may differ between two runs of one runtime and is never compared.
_UNCOMPARED = frozenset({"annotations", "image_ref", "image_id", "log_path", "mounts", "ip", "additional_ips",
                         "user", "resources", "info"})
RECORDING_FORMAT = 1


# ============================================================================ sequences (data)


@dataclass(frozen=True)
class Act:
    """One action: ``op`` and its arguments (container name, life in seconds, exit code...)."""

    op: str  # run_pod | create | start | wait_exited | stop | remove | stop_pod | remove_pod | remove_racing
    name: str = ""
    life_s: float = 0.0
    code: int = 0
    memory_mb: int = 0  # create: a memory limit (OOM)


def _c(name: str, life: float, code: int, **kw: Any) -> Act:
    return Act("create", name, life, code, **kw)


#: The fixed sequences (issue 15): lifetimes and exit codes, stop/remove orders, removal races,
#: sandbox stop/remove with containers inside. Lives are short: the whole set takes seconds.
SEQUENCES: dict[str, tuple[Act, ...]] = {
    "lifecycle": (Act("run_pod"), _c("app", 0.3, 3), Act("start", "app"), Act("wait_exited", "app"),
                  Act("remove", "app"), Act("stop_pod"), Act("remove_pod")),
    "instant_exit": (Act("run_pod"), _c("quick", 0, 0), Act("start", "quick"), Act("wait_exited", "quick"),
                     Act("remove", "quick"), Act("remove_pod")),
    "exit_255": (Act("run_pod"), _c("bad", 0.1, 255), Act("start", "bad"), Act("wait_exited", "bad"),
                 Act("stop_pod"), Act("remove_pod")),
    "stop_running": (Act("run_pod"), _c("sleeper", 1000, 0), Act("start", "sleeper"), Act("stop", "sleeper"),
                     Act("remove", "sleeper"), Act("remove_pod")),
    "remove_running": (Act("run_pod"), _c("sleeper", 1000, 0), Act("start", "sleeper"), Act("remove", "sleeper"),
                       Act("stop_pod"), Act("remove_pod")),
    "never_started": (Act("run_pod"), _c("idle", 1000, 0), Act("remove", "idle"), Act("remove_pod")),
    "remove_race": (Act("run_pod"), _c("racer", 0.2, 7), Act("start", "racer"), Act("remove_racing", "racer"),
                    Act("remove_pod")),
    "pod_teardown": (Act("run_pod"), _c("running", 1000, 0), Act("start", "running"), _c("done", 0, 2),
                     Act("start", "done"), Act("wait_exited", "done"), _c("created", 1000, 0), Act("stop_pod"),
                     Act("remove_pod")),
    "pod_removed_running": (Act("run_pod"), _c("running", 1000, 0), Act("start", "running"), Act("remove_pod")),
}


# ============================================================================ normalising (pure)


class Names:
    """Real IDs -> stable placeholders (``<pod>``, ``<c:NAME>``), per sequence."""

    def __init__(self) -> None:
        self.by_id: dict[str, str] = {}

    def add(self, real: str, placeholder: str) -> None:
        self.by_id[real] = placeholder

    def text(self, s: str) -> str:
        for real, ph in self.by_id.items():
            if real in s:
                s = s.replace(real, ph)
        return _HEX64.sub("<id>", s)


def normalise(msg: Any, names: Names) -> dict[str, Any]:
    """A protobuf message as a comparable JSON shape (module docstring)."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        n = fd.name
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            out[n] = sorted(value)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE and fd.is_repeated:
            items = [normalise(v, names) for v in value]
            # the order of a pod's containers is a Go map's: compared as a set
            out[n] = sorted(items, key=lambda d: json.dumps(d, sort_keys=True)) if n == "containers_statuses" else items
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            out[n] = normalise(value, names)
        elif fd.is_repeated:
            out[n] = [_scalar(fd, v, names) for v in value]
        else:
            out[n] = _scalar(fd, value, names)
    return out


def _scalar(fd: FieldDescriptor, v: Any, names: Names) -> Any:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        ev = fd.enum_type.values_by_number.get(v)
        return ev.name if ev is not None else v
    if fd.name in _TIME_FIELDS:
        return "<t>"
    if fd.name in _NUMBER_FIELDS:
        return "<n>"
    if fd.name == "log_path":
        return v.rsplit("/", 1)[-1]
    if isinstance(v, str):
        return names.text(v)
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    return v


# ============================================================================ comparing (pure)


@dataclass(frozen=True)
class Difference:
    sequence: str
    where: str  # e.g. "events[3].pod_sandbox_status", "after remove app: ListContainers"
    real: Any
    fake: Any

    def __str__(self) -> str:
        return f"{self.sequence}: {self.where}: recorded={_short(self.real)} fake={_short(self.fake)}"


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True)
    return s if len(s) <= 160 else s[:157] + "..."


def _strip(v: Any) -> Any:
    """Drop what is never compared (``_UNCOMPARED``), recursively."""
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if k not in _UNCOMPARED}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def _walk(seq: str, where: str, a: Any, b: Any, out: list[Difference]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(Difference(seq, f"{where}.{k}", a.get(k, "<absent>"), b.get(k, "<absent>")))
            else:
                _walk(seq, f"{where}.{k}", a[k], b[k], out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(seq, f"{where}[{i}]", x, y, out)
    elif a != b:
        out.append(Difference(seq, where, a, b))


def event_line(ev: Mapping[str, Any]) -> str:
    """One event as a short line: type, ID, which statuses are present (for messages and docs)."""
    cs = ev.get("containers_statuses", [])
    states = ",".join(f"{c.get('metadata', {}).get('name', '?')}={c.get('state', 'CONTAINER_CREATED')}" for c in cs)
    sb = "pod_sandbox_status" if "pod_sandbox_status" in ev else "no pod_sandbox_status"
    return f"{ev.get('container_event_type', 'CONTAINER_CREATED_EVENT')} {ev.get('container_id')} ({sb}; [{states}])"


def event_lines(events: list[Mapping[str, Any]]) -> tuple[list[str], set[int]]:
    """``event_line`` per event, except that a run of consecutive same-type events about different
    containers (a pod's containers removed by one RemovePodSandbox, in Go map order: it varies run
    to run) is one line with the IDs sorted and no statuses; returns the lines and the indexes of
    the events in such runs (their fields are not compared one by one)."""
    lines: list[str] = []
    grouped: set[int] = set()
    i = 0
    while i < len(events):
        kind = events[i].get("container_event_type", "CONTAINER_CREATED_EVENT")
        j = i
        while (j + 1 < len(events) and str(events[j + 1].get("container_id", "")).startswith("<c:")
               and str(events[i].get("container_id", "")).startswith("<c:")
               and events[j + 1].get("container_event_type", "CONTAINER_CREATED_EVENT") == kind):
            j += 1
        if j > i:
            ids = sorted(str(e.get("container_id")) for e in events[i:j + 1])
            lines.append(f"{kind} x{j - i + 1} {{{', '.join(ids)}}} (any order)")
            grouped.update(range(i, j + 1))
        else:
            lines.append(event_line(events[i]))
        i = j + 1
    return lines, grouped


def compare(recorded: Mapping[str, Any], fake: Mapping[str, Any]) -> list[Difference]:
    """Message-by-message differences between two recordings of the same sequences: the event
    stream (types and order, IDs, statuses present, their shapes; see ``event_lines`` for the one
    order that is free) and every snapshot."""
    out: list[Difference] = []
    for seq, rec in recorded["sequences"].items():
        got = fake["sequences"].get(seq)
        if got is None:
            out.append(Difference(seq, "sequence", "present", "<absent>"))
            continue
        ra, fa = rec.get("events"), got.get("events")
        if isinstance(ra, list) and isinstance(fa, list):
            (rl, grouped), (fl, _) = event_lines(ra), event_lines(fa)
            if rl != fl:
                out.append(Difference(seq, "events (type, id, statuses)", rl, fl))
            else:
                for i, (x, y) in enumerate(zip(ra, fa, strict=True)):
                    if i not in grouped:
                        _walk(seq, f"events[{i}]", _strip(x), _strip(y), out)
        elif ra != fa:
            out.append(Difference(seq, "events", ra, fa))
        rs, fs = rec["steps"], got["steps"]
        if [s["label"] for s in rs] != [s["label"] for s in fs]:
            out.append(Difference(seq, "steps", [s["label"] for s in rs], [s["label"] for s in fs]))
            continue
        for x, y in zip(rs, fs, strict=True):
            if x["outcome"] != y["outcome"]:
                out.append(Difference(seq, f"{x['label']}: outcome", x["outcome"], y["outcome"]))
            _walk(seq, f"after {x['label']}", _strip(x["answers"]), _strip(y["answers"]), out)
    return out


# ============================================================================ the recorder (I/O)


@dataclass
class Target:
    """A runtime to record: its socket, images, and how its processes exit."""

    addr: str
    busybox_image: str
    pause_image: str = ""
    log_root: str = "/tmp/fakecri-record-logs"
    cgroup_parent: str = ""
    #: make a started container's process exit (fakecri); a real one exits by itself
    exit_process: Callable[[str, int], None] | None = None
    #: whether a container's process has exited (fakecri); None: watch its pid in /proc (real)
    process_gone: Callable[[str], bool] | None = None
    timeout_s: float = 30.0


@dataclass
class _Run:
    seq: str
    names: Names = field(default_factory=Names)
    ids: dict[str, str] = field(default_factory=dict)  # container name -> id
    sid: str = ""
    pod_config: Any = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    timers: list[threading.Timer] = field(default_factory=list)


class Recorder:
    """Runs ``SEQUENCES`` against one runtime over runtime.v1; see the module docstring."""

    def __init__(self, target: Target) -> None:
        self.t = target
        mods = cri_api.api("v1")
        self.pb = mods.pb2
        self.channel = grpc.insecure_channel(target.addr)
        self.rt = mods.pb2_grpc.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    # -- the stream --

    @contextlib.contextmanager
    def _stream(self) -> Iterator[tuple[queue.SimpleQueue[Any], list[str]]]:
        """Events as they arrive; ``status[0]`` says how the stream went (``streaming``, a code)."""
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        status = ["streaming"]
        call = self.rt.GetContainerEvents(self.pb.GetEventsRequest())

        def read() -> None:
            try:
                for ev in call:
                    q.put(ev)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.CANCELLED:
                    status[0] = e.code().name
            else:
                status[0] = "ended"

        th = threading.Thread(target=read, name="record-events", daemon=True)
        th.start()
        time.sleep(0.2)  # subscribed (a runtime that refuses has answered by now)
        try:
            yield q, status
        finally:
            call.cancel()
            th.join(5)

    # -- actions --

    def _pod(self, run: _Run) -> Any:
        pb = self.pb
        name = f"rec-{run.seq}".replace("_", "-")
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="fakecri-record"),
            log_directory=f"{self.t.log_root}/{name}",
            labels={"fakecri-record": run.seq},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.t.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(network=2))),
        )

    def _container(self, a: Act) -> Any:
        pb = self.pb
        if a.life_s >= 1000:
            cmd = ["sleep", "1000"]
        elif a.life_s == 0:
            cmd = ["sh", "-c", f"exit {a.code}"]
        else:
            cmd = ["sh", "-c", f"sleep {a.life_s}; exit {a.code}"]
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=a.name),
                                 image=pb.ImageSpec(image=self.t.busybox_image),
                                 command=cmd, log_path=f"{a.name}.log", labels={"c": a.name})
        if a.memory_mb:
            cfg.linux.resources.memory_limit_in_bytes = a.memory_mb << 20
        return cfg

    def _do(self, run: _Run, a: Act, acts: Mapping[str, Act]) -> str:
        """Apply one action; return the gRPC outcome (``OK`` or a code and masked text)."""
        pb, rt, to = self.pb, self.rt, self.t.timeout_s
        try:
            if a.op == "run_pod":
                run.pod_config = self._pod(run)
                run.sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=run.pod_config), timeout=to).pod_sandbox_id
                run.names.add(run.sid, "<pod>")
            elif a.op == "create":
                req = pb.CreateContainerRequest(pod_sandbox_id=run.sid, config=self._container(a),
                                                sandbox_config=run.pod_config)
                cid = rt.CreateContainer(req, timeout=to).container_id
                run.ids[a.name] = cid
                run.names.add(cid, f"<c:{a.name}>")
            elif a.op == "start":
                rt.StartContainer(pb.StartContainerRequest(container_id=run.ids[a.name]), timeout=to)
                spec = acts[a.name]
                if self.t.exit_process is not None and spec.life_s < 1000:
                    timer = threading.Timer(spec.life_s, self.t.exit_process, (run.ids[a.name], spec.code))
                    timer.start()
                    run.timers.append(timer)
            elif a.op == "wait_exited":
                self._wait_exited(run.ids[a.name])
            elif a.op == "stop":
                rt.StopContainer(pb.StopContainerRequest(container_id=run.ids[a.name], timeout=0), timeout=to)
            elif a.op == "remove":
                rt.RemoveContainer(pb.RemoveContainerRequest(container_id=run.ids[a.name]), timeout=to)
            elif a.op == "remove_racing":
                return self._remove_racing(run, acts[a.name])
            elif a.op == "stop_pod":
                rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=run.sid), timeout=to)
            elif a.op == "remove_pod":
                rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=run.sid), timeout=to)
            else:  # pragma: no cover
                raise ValueError(f"unknown action {a.op!r}")
        except grpc.RpcError as e:
            return f"{e.code().name}: {run.names.text(e.details() or '')}"
        return "OK"

    def _wait_exited(self, cid: str) -> None:
        deadline = time.monotonic() + 20
        while self.rt.ContainerStatus(self.pb.ContainerStatusRequest(container_id=cid),
                                      timeout=self.t.timeout_s).status.state != 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {cid} did not exit")
            time.sleep(0.005)

    def _gone(self, cid: str) -> Callable[[], bool]:
        if self.t.process_gone is not None:
            return lambda: self.t.process_gone(cid)  # type: ignore[misc]
        info = self.rt.ContainerStatus(self.pb.ContainerStatusRequest(container_id=cid, verbose=True),
                                       timeout=self.t.timeout_s).info
        pid = json.loads(info.get("info", "{}")).get("pid", 0)

        def gone() -> bool:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
            except OSError:
                return True

        return gone

    def _remove_racing(self, run: _Run, spec: Act) -> str:
        """RemoveContainer the moment the container's process has exited (before the runtime has
        handled the exit), retried until it succeeds: the outcome of the first try (the race:
        UNKNOWN "container is still running, to stop first" on containerd 1.7/2.x)."""
        cid, pb = run.ids[spec.name], self.pb
        deadline = time.monotonic() + spec.life_s + 10
        gone = self._gone(cid)
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.0005)
        first = None
        while time.monotonic() < deadline:
            try:
                self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=self.t.timeout_s)
                return first or "OK"
            except grpc.RpcError as e:
                first = first or f"{e.code().name}: {run.names.text(e.details() or '')}"
                time.sleep(0.005)
        raise TimeoutError(f"RemoveContainer {cid} kept failing: {first}")

    def _snapshot(self, run: _Run) -> dict[str, Any]:
        pb, rt, to, names = self.pb, self.rt, self.t.timeout_s, run.names
        ans: dict[str, Any] = {}
        pods = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=to).items
        ans["ListPodSandbox"] = [normalise(s, names) for s in pods if s.id == run.sid]
        cs = rt.ListContainers(pb.ListContainersRequest(), timeout=to).containers
        mine = sorted((c for c in cs if c.pod_sandbox_id == run.sid), key=lambda c: c.metadata.name)
        ans["ListContainers"] = [normalise(c, names) for c in mine]
        try:
            ans["PodSandboxStatus"] = normalise(
                rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=run.sid), timeout=to), names)
        except grpc.RpcError as e:
            ans["PodSandboxStatus"] = e.code().name
        for name in sorted(run.ids):
            try:
                st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=run.ids[name]), timeout=to)
                ans[f"ContainerStatus {name}"] = normalise(st, names)
            except grpc.RpcError as e:
                ans[f"ContainerStatus {name}"] = e.code().name
        return ans

    def run(self, seq: str) -> dict[str, Any]:
        acts = SEQUENCES[seq]
        specs = {a.name: a for a in acts if a.op == "create"}
        run = _Run(seq)
        try:
            with self._stream() as (q, status):
                for a in acts:
                    outcome = self._do(run, a, specs)
                    label = f"{a.op} {a.name}".strip()
                    run.steps.append({"label": label, "outcome": outcome, "answers": self._snapshot(run)})
                time.sleep(0.4)  # events that come late (the runtime's state lag) still count
                raw = []
                while not q.empty():
                    raw.append(q.get())
                ours = {run.sid, *run.ids.values()}
                events: Any = [normalise(e, run.names) for e in raw if e.container_id in ours]
                if status[0] != "streaming" and not events:
                    events = status[0]
        finally:
            for timer in run.timers:
                timer.cancel()
            with contextlib.suppress(grpc.RpcError):
                if run.sid:
                    self.rt.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=run.sid), timeout=30)
        return {"steps": run.steps, "events": events}

    def record(self, only: list[str] | None = None) -> dict[str, Any]:
        v = self.rt.Version(self.pb.VersionRequest(), timeout=self.t.timeout_s)
        out: dict[str, Any] = {
            "format": RECORDING_FORMAT,
            "runtime": {"runtime_name": v.runtime_name, "runtime_version": v.runtime_version,
                        "runtime_api_version": v.runtime_api_version},
            "image": self.t.busybox_image,
            "sequences": {},
        }
        for seq in only or list(SEQUENCES):
            out["sequences"][seq] = self.run(seq)
        return out


def record_fake(flavor: str, only: list[str] | None = None, *, busybox: str = "busybox") -> dict[str, Any]:
    """Record fakecri's ``flavor`` (real clock, in-process server on a private socket)."""
    import shutil
    import tempfile

    from fakecri.clock import RealClock
    from fakecri.flavors import get_flavor
    from fakecri.model import RuntimeModel
    from fakecri.server import FakeCriServer

    model = RuntimeModel(RealClock(), get_flavor(flavor), seed=15)
    model.pull_image(busybox)
    tmp = tempfile.mkdtemp(prefix="fcr-", dir="/tmp")
    server = FakeCriServer(model, f"{tmp}/cri.sock").start()
    def process_gone(cid: str) -> bool:
        c = model.containers.get(cid)
        return c is None or c.pending_exit is not None or c.state == "exited"

    # its containers run their commands (fakecri.emulator): they exit by themselves, shown after the lag
    rec = Recorder(Target(addr=server.addr, busybox_image=busybox, process_gone=process_gone))
    try:
        return rec.record(only)
    finally:
        rec.close()
        server.stop(grace=None)
        shutil.rmtree(tmp, ignore_errors=True)


def dumps(recording: Mapping[str, Any]) -> str:
    return json.dumps(recording, indent=1, sort_keys=True) + "\n"


__all__ = ["SEQUENCES", "Difference", "Names", "Recorder", "Target", "compare", "dumps", "normalise",
           "record_fake"]
