"""CRI call sequences shared by the differential fidelity test (real containerd vs fakecri).

Theory of operation
-------------------
A *sequence* is a small function ``seq(r: Recorder) -> None`` that drives one scenario through
the CRI stubs of one API version (``r.b``, a :class:`Bundle`) and writes down what it saw:

* ``r.rt(method, request)`` / ``r.img(method, request)`` make one RuntimeService/ImageService call
  and record a :class:`Step`: the gRPC status code, the *shape* of the response and the error text;
* ``r.note(label, value)`` records a derived fact (a timestamp rule, a key set, a pid rule).

The same function runs against real containerd and against fakecri's ``containerd-1.6`` flavour;
``tests/realruntime/test_differential.py`` compares the two recordings step by step.

The *shape* of a response is what must agree between two runtimes, not the values that cannot:

* which fields are populated (``ListFields()``, recursively; unknown field numbers too);
* enum values by name (``state``, ``network``...), exit codes, reasons, names, labels' keys;
* timestamps only as ``"ns"`` (set, and a plausible nanosecond Unix time) -- unset ones are
  absent like any other zero field;
* IDs and digests masked as ``<id>``; sizes, pids and IPs as ``<n>``/``<ip>``; the pod log root
  as ``<logs>``; verbose ``info`` maps as ``{key: top-level JSON keys}``;
* list answers scoped to the sequence's own pods and images (a real containerd may hold other
  tests' objects), order-free.

A process exits by itself on both runtimes (fakecri interprets the command): sequences call
``r.wait_exited(cid, code)``, which asks the bundle's ``exit_process`` hook (none by default: a
bundle may script an exit) and then polls ``ContainerStatus`` (unrecorded) until EXITED.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.unknown_fields import UnknownFieldSet

#: Any real CRI timestamp in ns is later than 2001-01-01.
NS_2001 = 978_307_200 * 10**9
NS_DAY = 86_400 * 10**9

NETWORK_POD, NETWORK_NODE = 0, 2
STATE_CREATED, STATE_RUNNING, STATE_EXITED = 0, 1, 2
SANDBOX_READY, SANDBOX_NOTREADY = 0, 1

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CRI_LOG = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] .*")
_TIME_FIELDS = frozenset({"created_at", "started_at", "finished_at", "timestamp"})
_NUMBER_FIELDS = frozenset({"size", "used_bytes", "inodes_used", "value", "pid"})
_IP_FIELDS = frozenset({"ip"})


@dataclass
class Bundle:
    """One runtime + one API version, as the sequences see it."""

    runtime: str  # "containerd" (real) or "fakecri"
    api: str  # "v1" or "v1alpha2"
    pb: ModuleType
    rt: Any  # RuntimeServiceStub
    img: Any  # ImageServiceStub
    channel: grpc.Channel
    busybox_image: str
    pause_image: str
    log_root: str  # parent of every pod's log_directory
    cgroup_parent: str
    #: make a started container's process exit with this code (optional: both runtimes run the command)
    exit_process: Callable[[str, int], None] = lambda cid, code: None
    timeout: float = 60.0


@dataclass(frozen=True)
class Step:
    label: str
    code: str  # gRPC status code name, "OK", or "NOTE"
    shape: Any  # normalised response (None on error) or the noted value
    text: str = ""  # error details with IDs masked ("" when OK)


def mask(text: str, log_root: str = "") -> str:
    """IDs/digests -> ``<id>``, the pod log root -> ``<logs>``."""
    if log_root:
        text = text.replace(log_root, "<logs>")
    return _HEX64.sub("<id>", text)


def _time_shape(v: int) -> str:
    now = time.time_ns()
    return "ns" if NS_2001 < v < now + NS_DAY else f"not-ns:{v}"


def info_shape(info: Any) -> dict[str, Any]:
    """Verbose ``info`` map: ``{key: sorted top-level keys of its JSON object, or the JSON type}``."""
    out: dict[str, Any] = {}
    for k, v in info.items():
        try:
            doc = json.loads(v)
        except ValueError:
            out[k] = "text"
            continue
        out[k] = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
    return out


class Shaper:
    """Normalises protobuf messages to comparable shapes (see the module docstring)."""

    def __init__(self, log_root: str, keep: Callable[[str, Any], bool] | None = None) -> None:
        self.log_root = log_root
        self.keep = keep or (lambda field_name, item: True)

    def scalar(self, fd: FieldDescriptor, v: Any) -> Any:
        name = fd.name
        if fd.type == FieldDescriptor.TYPE_ENUM:
            ev = fd.enum_type.values_by_number.get(v)
            return ev.name if ev is not None else v
        if name in _TIME_FIELDS:
            return _time_shape(v)
        if name in _NUMBER_FIELDS:
            return "<n>"
        if name in _IP_FIELDS:
            return "<ip>"
        if isinstance(v, str):
            return mask(v, self.log_root)
        if isinstance(v, bytes):
            return f"<{len(v)} bytes>"
        return v

    def shape(self, msg: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fd, value in msg.ListFields():
            name = fd.name
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                out[name] = info_shape(value) if name == "info" else {"keys": sorted(value)}
            elif fd.type == FieldDescriptor.TYPE_MESSAGE:
                if fd.is_repeated:
                    items = [self.shape(v) for v in value if self.keep(name, v)]
                    out[name] = sorted(items, key=lambda d: json.dumps(d, sort_keys=True))
                else:
                    out[name] = self.shape(value)
            elif fd.is_repeated:
                out[name] = sorted(self.scalar(fd, v) for v in value)
            else:
                out[name] = self.scalar(fd, value)
        unknown = sorted({f.field_number for f in UnknownFieldSet(msg)})
        if unknown:
            out["<unknown fields>"] = unknown
        return out


class Recorder:
    """Runs CRI calls for a sequence and records each outcome as a :class:`Step`."""

    def __init__(self, bundle: Bundle, name: str) -> None:
        self.b = bundle
        self.pb = bundle.pb
        self.name = name
        self.steps: list[Step] = []
        self.sandboxes: list[str] = []  # this sequence's pods: lists are scoped to them
        self.images = {bundle.busybox_image, bundle.pause_image}
        self.shaper = Shaper(bundle.log_root, self._keep)
        self._labels: set[str] = set()

    # ---- recording ----------------------------------------------------------------------------

    def _keep(self, field_name: str, item: Any) -> bool:
        if field_name == "containers":
            return item.pod_sandbox_id in self.sandboxes
        if field_name == "items":
            return item.id in self.sandboxes
        if field_name == "images":
            return bool(set(item.repo_tags) & self.images)
        return True

    def _label(self, label: str) -> str:
        base, n = label, 2
        while label in self._labels:
            label, n = f"{base} #{n}", n + 1
        self._labels.add(label)
        return label

    def _call(self, service: Any, method: str, req: Any, label: str | None) -> Any:
        label = self._label(label or method)
        try:
            resp = getattr(service, method)(req, timeout=self.b.timeout)
        except grpc.RpcError as e:
            self.steps.append(Step(label, e.code().name, None, mask(e.details() or "", self.b.log_root)))
            return None
        self.steps.append(Step(label, "OK", self.shaper.shape(resp)))
        return resp

    def rt(self, method: str, req: Any, label: str | None = None) -> Any:
        """One RuntimeService call, recorded; returns the response or None on error."""
        return self._call(self.b.rt, method, req, label)

    def img(self, method: str, req: Any, label: str | None = None) -> Any:
        """One ImageService call, recorded."""
        return self._call(self.b.img, method, req, label)

    def raw_stream(self, path: str, label: str) -> None:
        """A server-streaming call by method path with an empty request: records how it ends."""
        call = self.b.channel.unary_stream(path, request_serializer=lambda m: b"",
                                           response_deserializer=lambda raw: raw)
        code = "OK"
        text = ""
        try:
            for _ in call(b"", timeout=2.0):
                code = "STREAMING"
                break
        except grpc.RpcError as e:
            code, text = e.code().name, mask(e.details() or "")
        self.steps.append(Step(self._label(label), code, None, text))

    def note(self, label: str, value: Any) -> None:
        self.steps.append(Step(self._label(label), "NOTE", value))

    # ---- building blocks ------------------------------------------------------------------------

    def pod_config(self, name: str, *, network: int = NETWORK_NODE, labels: dict[str, str] | None = None) -> Any:
        pb = self.pb
        full = f"{self.name}-{name}-{self.b.api}".replace("_", "-")
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=full, uid=f"uid-{full}", namespace="crisensor-diff"),
            hostname="" if network == NETWORK_NODE else full[:63],  # NODE network: containerd 1.6 wants ""
            log_directory=f"{self.b.log_root}/{full}",
            labels={"crisensor-diff": self.name, **(labels or {})},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.b.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=network)),
            ),
        )

    def run_pod(self, name: str, *, network: int = NETWORK_NODE, labels: dict[str, str] | None = None,
                label: str | None = None) -> tuple[str, Any]:
        config = self.pod_config(name, network=network, labels=labels)
        resp = self.rt("RunPodSandbox", self.pb.RunPodSandboxRequest(config=config), label or f"RunPodSandbox {name}")
        if resp is None:
            raise AssertionError(f"{self.b.runtime}: RunPodSandbox {name} failed: {self.steps[-1]}")
        self.sandboxes.append(resp.pod_sandbox_id)
        return resp.pod_sandbox_id, config

    def container_config(self, name: str, command: list[str], labels: dict[str, str] | None = None) -> Any:
        pb = self.pb
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.b.busybox_image),
            command=command,
            log_path=f"{name}.log",
            labels={"crisensor-diff": self.name, "c": name, **(labels or {})},
        )

    def create(self, sid: str, pod: Any, name: str, command: list[str], *, labels: dict[str, str] | None = None,
               label: str | None = None) -> str:
        req = self.pb.CreateContainerRequest(pod_sandbox_id=sid, config=self.container_config(name, command, labels),
                                             sandbox_config=pod)
        resp = self.rt("CreateContainer", req, label or f"CreateContainer {name}")
        if resp is None:
            raise AssertionError(f"{self.b.runtime}: CreateContainer {name} failed: {self.steps[-1]}")
        return resp.container_id

    def start(self, cid: str, label: str | None = None) -> Any:
        return self.rt("StartContainer", self.pb.StartContainerRequest(container_id=cid), label)

    def status(self, cid: str, label: str | None = None, *, verbose: bool = False) -> Any:
        return self.rt("ContainerStatus", self.pb.ContainerStatusRequest(container_id=cid, verbose=verbose), label)

    def pod_status(self, sid: str, label: str | None = None, *, verbose: bool = False) -> Any:
        return self.rt("PodSandboxStatus", self.pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=verbose),
                       label)

    def list_containers(self, label: str | None = None, **filter_fields: Any) -> Any:
        pb = self.pb
        req = pb.ListContainersRequest(filter=pb.ContainerFilter(**filter_fields)) if filter_fields else \
            pb.ListContainersRequest()
        return self.rt("ListContainers", req, label)

    def list_pods(self, label: str | None = None, **filter_fields: Any) -> Any:
        pb = self.pb
        req = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**filter_fields)) if filter_fields else \
            pb.ListPodSandboxRequest()
        return self.rt("ListPodSandbox", req, label)

    def unrecorded_status(self, cid: str) -> Any:
        return self.b.rt.ContainerStatus(self.pb.ContainerStatusRequest(container_id=cid),
                                         timeout=self.b.timeout).status

    def wait_exited(self, cid: str, code: int, timeout: float = 20.0) -> Any:
        """Let the process exit with ``code`` (fake) and wait until the runtime shows EXITED."""
        self.b.exit_process(cid, code)
        deadline = time.monotonic() + timeout
        while True:
            st = self.unrecorded_status(cid)
            if st.state == STATE_EXITED:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.b.runtime}: container {cid} did not exit within {timeout}s")
            time.sleep(0.01)

    def time_rules(self, label: str, st: Any, *, sandbox_created_at: int = 0, ran_a_while: bool = True) -> None:
        """Timestamp rules of one ContainerStatus: which are set, units, order."""
        rules: dict[str, Any] = {}
        for name in ("created_at", "started_at", "finished_at"):
            v = getattr(st, name)
            rules[name] = _time_shape(v) if v else 0
        if st.started_at:
            rules["created<=started"] = st.created_at <= st.started_at
        if st.finished_at:
            rules["created<=finished"] = st.created_at <= st.finished_at
            if st.started_at and ran_a_while:  # an instant exit may stamp finished_at before started_at
                rules["started<=finished"] = st.started_at <= st.finished_at
        if sandbox_created_at:
            rules["sandbox<=created"] = sandbox_created_at <= st.created_at
        self.note(label, rules)

    def info_note(self, label: str, resp: Any, *keys: str) -> None:
        """Values of some verbose-info JSON keys, as booleans/types (e.g. pid > 0)."""
        doc = json.loads(resp.info["info"]) if resp is not None and "info" in resp.info else {}
        out: dict[str, Any] = {}
        for k in keys:
            v = doc.get(k, "<absent>")
            out[k] = (v > 0) if isinstance(v, int) and not isinstance(v, bool) and k == "pid" else v
        self.note(label, out)

    def exec_note(self, label: str, cid: str, cmd: list[str], timeout: int = 0) -> None:
        """One ExecSync, recorded with its output's values (not only their sizes)."""
        req = self.pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout)
        try:
            resp = self.b.rt.ExecSync(req, timeout=self.b.timeout)
        except grpc.RpcError as e:
            self.steps.append(Step(self._label(label), e.code().name, None, mask(e.details() or "", self.b.log_root)))
            return
        self.steps.append(Step(self._label(label), "OK", {"stdout": resp.stdout.decode(errors="replace"),
                                                          "stderr": resp.stderr.decode(errors="replace"),
                                                          "exit_code": resp.exit_code}))

    def log_note(self, label: str, pod: Any, name: str, settle: float = 3.0) -> None:
        """The container's CRI log file: its lines per stream as ``tag text`` (the order between
        the two streams is not fixed even in a real runtime), and whether every line is
        ``<RFC3339Nano> <stream> <F|P> <text>``."""
        path = f"{pod.log_directory}/{name}.log"
        deadline = time.monotonic() + settle
        data, last = b"", None
        while time.monotonic() < deadline:  # the runtime's log writer may finish a moment after the exit
            with contextlib.suppress(OSError), open(path, "rb") as f:
                data = f.read()
            if data == last:
                break
            last = data
            time.sleep(0.2)
        lines = data.splitlines()
        well_formed = all(_CRI_LOG.fullmatch(line) for line in lines)
        per_stream: dict[str, list[str]] = {"stdout": [], "stderr": []}
        for line in lines:
            parts = line.split(b" ", 3) + [b""] * 4
            per_stream.setdefault(parts[1].decode(errors="replace"), []).append(
                f"{parts[2].decode(errors='replace')} {parts[3].decode(errors='replace')}")
        self.note(label, {"file": bool(data) or os.path.exists(path), "well_formed": well_formed, **per_stream})

    def spec_note(self, label: str, resp: Any, ids: dict[str, str]) -> None:
        """The verbose runtimeSpec's shape: keys, annotations (IDs, pid and paths masked),
        namespaces, cgroupsPath pattern, mount destinations, process keys and env names."""
        if resp is None or "info" not in resp.info:
            self.note(label, "<no info>")
            return
        spec = json.loads(resp.info["info"]).get("runtimeSpec", {})

        def m(v: Any) -> Any:
            text = json.dumps(v)
            for value, name in ids.items():
                text = text.replace(value, name)
            text = re.sub(r"/proc/\d+/", "/proc/<pid>/", mask(text, self.b.log_root))
            text = re.sub(r'"[^"]*/netns/cni-[0-9a-f-]+"', '"<netns>/cni-<uuid>"', text)
            return json.loads(text)

        linux = spec.get("linux", {})
        process = spec.get("process", {})
        self.note(label, {
            "keys": sorted(spec), "linux_keys": sorted(linux), "process_keys": sorted(process),
            "annotations": m(spec.get("annotations", {})),
            "namespaces": m(linux.get("namespaces", [])),
            "cgroupsPath": m(linux.get("cgroupsPath", "<absent>")),
            "resources": m(linux.get("resources", "<absent>")),
            "mounts": sorted(x.get("destination", "") for x in spec.get("mounts", [])),
            "args": process.get("args"), "env": sorted(e.split("=", 1)[0] for e in process.get("env", [])),
            "hostname": "hostname" in spec, "root": spec.get("root"),
        })

    def cleanup(self) -> None:
        """Remove this sequence's pods (and so their containers); unrecorded, errors ignored."""
        pb = self.pb
        for sid in self.sandboxes:
            for req, method in ((pb.StopPodSandboxRequest(pod_sandbox_id=sid), "StopPodSandbox"),
                                (pb.RemovePodSandboxRequest(pod_sandbox_id=sid), "RemovePodSandbox")):
                with contextlib.suppress(grpc.RpcError):
                    getattr(self.b.rt, method)(req, timeout=self.b.timeout)


# ==================================================================================== sequences

UNKNOWN_ID = "0" * 64


def seq_version(r: Recorder) -> None:
    pb = r.pb
    r.rt("Version", pb.VersionRequest(version="0.1.0"))
    r.rt("Version", pb.VersionRequest(), "Version (empty request)")


def seq_status(r: Recorder) -> None:
    pb = r.pb
    r.rt("Status", pb.StatusRequest())
    r.rt("Status", pb.StatusRequest(verbose=True), "Status verbose")


def seq_images(r: Recorder) -> None:
    pb = r.pb
    r.img("ListImages", pb.ListImagesRequest())
    r.img("ListImages", pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image=r.b.busybox_image))),
          "ListImages filter busybox")
    r.img("ListImages", pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image="nonexistent:1"))),
          "ListImages filter unknown")
    r.img("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image="nonexistent:1")), "ImageStatus unknown")
    r.img("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=r.b.busybox_image)), "ImageStatus busybox")
    r.img("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=r.b.pause_image), verbose=True),
          "ImageStatus pause verbose")
    by_id = r.b.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=r.b.busybox_image)),
                                timeout=r.b.timeout).image.id
    r.img("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=by_id)), "ImageStatus by ID")


def seq_unknown_ids(r: Recorder) -> None:
    pb = r.pb
    for ref, what in ((UNKNOWN_ID, "unknown"), ("", "empty")):
        r.rt("ContainerStatus", pb.ContainerStatusRequest(container_id=ref), f"ContainerStatus {what}")
        r.rt("StartContainer", pb.StartContainerRequest(container_id=ref), f"StartContainer {what}")
        r.rt("StopContainer", pb.StopContainerRequest(container_id=ref), f"StopContainer {what}")
        r.rt("RemoveContainer", pb.RemoveContainerRequest(container_id=ref), f"RemoveContainer {what}")
        r.rt("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=ref), f"PodSandboxStatus {what}")
        r.rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=ref), f"StopPodSandbox {what}")
        r.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=ref), f"RemovePodSandbox {what}")
    cfg = r.pod_config("ghost")
    req = pb.CreateContainerRequest(pod_sandbox_id=UNKNOWN_ID, config=r.container_config("c", ["true"]),
                                    sandbox_config=cfg)
    r.rt("CreateContainer", req, "CreateContainer in unknown sandbox")


def seq_lifecycle(r: Recorder) -> None:
    """created -> running -> exited(3) -> removed; pod ready -> notready -> removed."""
    pb = r.pb
    sid, pod = r.run_pod("life")
    ps = r.pod_status(sid, "PodSandboxStatus ready")
    r.list_pods("ListPodSandbox ready")
    cid = r.create(sid, pod, "app", ["sh", "-c", "sleep 0.5; exit 3"])
    st = r.status(cid, "ContainerStatus created")
    r.time_rules("times created", st.status, sandbox_created_at=ps.status.created_at)
    r.list_containers("ListContainers created")
    r.start(cid)
    st = r.status(cid, "ContainerStatus running")
    r.time_rules("times running", st.status)
    r.list_containers("ListContainers running")
    r.wait_exited(cid, 3)
    st = r.status(cid, "ContainerStatus exited")
    r.time_rules("times exited", st.status)
    r.list_containers("ListContainers exited")
    r.rt("RemoveContainer", pb.RemoveContainerRequest(container_id=cid))
    r.status(cid, "ContainerStatus removed")
    r.list_containers("ListContainers removed")
    r.rt("RemoveContainer", pb.RemoveContainerRequest(container_id=cid), "RemoveContainer again")
    r.rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    r.pod_status(sid, "PodSandboxStatus notready")
    r.list_pods("ListPodSandbox notready")
    r.rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sid), "StopPodSandbox again")
    r.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    r.pod_status(sid, "PodSandboxStatus removed")
    r.list_pods("ListPodSandbox removed")
    r.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sid), "RemovePodSandbox again")


def seq_exit_zero(r: Recorder) -> None:
    sid, pod = r.run_pod("zero")
    cid = r.create(sid, pod, "ok", ["sh", "-c", "sleep 0.2"])
    r.start(cid)
    r.wait_exited(cid, 0)
    st = r.status(cid, "ContainerStatus exited 0")
    r.time_rules("times exited 0", st.status)


def seq_start_twice(r: Recorder) -> None:
    sid, pod = r.run_pod("twice")
    cid = r.create(sid, pod, "app", ["sh", "-c", "sleep 0.5; exit 1"])
    r.start(cid, "StartContainer first")
    r.start(cid, "StartContainer while running")
    r.wait_exited(cid, 1)
    r.start(cid, "StartContainer after exit")
    r.status(cid, "ContainerStatus after failed restarts")


def seq_stop(r: Recorder) -> None:
    """Stop a running container, stop it again, stop a created (never started) one."""
    pb = r.pb
    sid, pod = r.run_pod("stop")
    cid = r.create(sid, pod, "sleeper", ["sleep", "1000"])
    r.start(cid)
    r.rt("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=0), "StopContainer running")
    st = r.status(cid, "ContainerStatus stopped")
    r.time_rules("times stopped", st.status)
    r.rt("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=0), "StopContainer stopped")
    r.status(cid, "ContainerStatus stopped twice")
    idle = r.create(sid, pod, "idle", ["sleep", "1000"])
    r.rt("StopContainer", pb.StopContainerRequest(container_id=idle, timeout=0), "StopContainer created")
    st = r.status(idle, "ContainerStatus created after stop")
    r.time_rules("times created after stop", st.status)
    r.start(idle, "StartContainer after stop-while-created")
    r.status(idle, "ContainerStatus started after stop-while-created")


def seq_remove_running(r: Recorder) -> None:
    pb = r.pb
    sid, pod = r.run_pod("rmrun")
    cid = r.create(sid, pod, "sleeper", ["sleep", "1000"])
    r.start(cid)
    r.rt("RemoveContainer", pb.RemoveContainerRequest(container_id=cid), "RemoveContainer running")
    r.status(cid, "ContainerStatus after remove")
    r.list_containers("ListContainers after remove")
    idle = r.create(sid, pod, "idle", ["sleep", "1000"])
    r.rt("RemoveContainer", pb.RemoveContainerRequest(container_id=idle), "RemoveContainer created")
    r.status(idle, "ContainerStatus after remove created")


def seq_remove_pod_with_containers(r: Recorder) -> None:
    """RemovePodSandbox without StopPodSandbox while it holds running, created and exited containers."""
    pb = r.pb
    sid, pod = r.run_pod("rmpod")
    running = r.create(sid, pod, "running", ["sleep", "1000"])
    r.start(running)
    created = r.create(sid, pod, "created", ["sleep", "1000"])
    exited = r.create(sid, pod, "exited", ["sh", "-c", "exit 2"])
    r.start(exited)
    r.wait_exited(exited, 2)
    r.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sid), "RemovePodSandbox with containers")
    for cid, what in ((running, "running"), (created, "created"), (exited, "exited")):
        r.status(cid, f"ContainerStatus {what} after pod removal")
    r.list_containers("ListContainers after pod removal")
    r.pod_status(sid, "PodSandboxStatus after removal")


def seq_stop_pod_with_containers(r: Recorder) -> None:
    """StopPodSandbox kills running containers; created ones stay; then start/create in a stopped pod."""
    pb = r.pb
    sid, pod = r.run_pod("stoppod")
    running = r.create(sid, pod, "running", ["sleep", "1000"])
    r.start(running)
    created = r.create(sid, pod, "created", ["sleep", "1000"])
    r.rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sid), "StopPodSandbox with containers")
    st = r.status(running, "ContainerStatus running after pod stop")
    r.time_rules("times killed by pod stop", st.status)
    r.status(created, "ContainerStatus created after pod stop")
    ps = r.pod_status(sid, "PodSandboxStatus stopped", verbose=True)
    r.info_note("sandbox info stopped", ps, "pid", "processStatus", "netNamespaceClosed")
    r.list_pods("ListPodSandbox stopped")
    r.list_containers("ListContainers in stopped pod")
    r.start(created, "StartContainer in stopped pod")
    st = r.status(created, "ContainerStatus after start in stopped pod")
    r.time_rules("times start failed", st.status)
    late = pb.CreateContainerRequest(pod_sandbox_id=sid, config=r.container_config("late", ["true"]),
                                     sandbox_config=pod)
    r.rt("CreateContainer", late, "CreateContainer in stopped pod")
    r.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sid))


def seq_filters(r: Recorder) -> None:
    """ListContainers/ListPodSandbox filters: id, ID prefix, state, sandbox id (+prefix), labels."""
    sid_a, pod_a = r.run_pod("fa", labels={"tier": "a"})
    sid_b, pod_b = r.run_pod("fb", labels={"tier": "b"})
    run_a = r.create(sid_a, pod_a, "run-a", ["sleep", "1000"], labels={"role": "web"})
    r.start(run_a)
    created_a = r.create(sid_a, pod_a, "created-a", ["sleep", "1000"], labels={"role": "db"})
    exit_b = r.create(sid_b, pod_b, "exit-b", ["sh", "-c", "exit 4"], labels={"role": "web"})
    r.start(exit_b)
    r.wait_exited(exit_b, 4)
    pb = r.pb
    sv = pb.ContainerStateValue
    r.list_containers("ListContainers all")
    r.list_containers("filter id", id=run_a)
    r.list_containers("filter id prefix", id=run_a[:12])
    r.list_containers("filter unknown id", id=UNKNOWN_ID)
    r.list_containers("filter state running", state=sv(state=STATE_RUNNING))
    r.list_containers("filter state created", state=sv(state=STATE_CREATED))
    r.list_containers("filter state exited", state=sv(state=STATE_EXITED))
    r.list_containers("filter sandbox", pod_sandbox_id=sid_a)
    r.list_containers("filter sandbox prefix", pod_sandbox_id=sid_b[:12])
    r.list_containers("filter unknown sandbox", pod_sandbox_id=UNKNOWN_ID)
    r.list_containers("filter label", label_selector={"role": "web"})
    r.list_containers("filter two labels", label_selector={"role": "web", "c": "exit-b"})
    r.list_containers("filter label mismatch", label_selector={"role": "none"})
    r.list_containers("filter id+state mismatch", id=created_a, state=sv(state=STATE_RUNNING))
    r.list_containers("filter sandbox+label", pod_sandbox_id=sid_a, label_selector={"role": "db"})
    pv = pb.PodSandboxStateValue
    r.list_pods("ListPodSandbox all")
    r.list_pods("pod filter id", id=sid_a)
    r.list_pods("pod filter id prefix", id=sid_b[:12])
    r.list_pods("pod filter unknown id", id=UNKNOWN_ID)
    r.list_pods("pod filter ready", state=pv(state=SANDBOX_READY))
    r.list_pods("pod filter label", label_selector={"tier": "b"})
    r.rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sid_b))
    r.list_pods("pod filter notready", state=pv(state=SANDBOX_NOTREADY))
    r.list_pods("pod filter ready after stop", state=pv(state=SANDBOX_READY))
    r.status(run_a[:12], "ContainerStatus by ID prefix")
    r.pod_status(sid_a[:12], "PodSandboxStatus by ID prefix")


def seq_names(r: Recorder) -> None:
    """Name reservations: a pod/container name is unique until the holder is removed."""
    pb = r.pb
    sid, pod = r.run_pod("names")
    r.rt("RunPodSandbox", pb.RunPodSandboxRequest(config=pod), "RunPodSandbox same name")
    cid = r.create(sid, pod, "dup", ["true"])
    r.rt("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=r.container_config("dup", ["true"]),
                                                      sandbox_config=pod), "CreateContainer same name")
    r.rt("RemoveContainer", pb.RemoveContainerRequest(container_id=cid))
    again = r.rt("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=r.container_config("dup", ["true"]), sandbox_config=pod),
        "CreateContainer name after removal")
    r.note("name reusable after removal", again is not None)
    bad = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="badimg"), image=pb.ImageSpec(image="nonexistent:1"))
    r.rt("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=bad, sandbox_config=pod),
         "CreateContainer unknown image")


def seq_verbose(r: Recorder) -> None:
    """Verbose info maps: keys, top-level JSON keys, and the pid rule per state."""
    sid, pod = r.run_pod("verbose")
    ps = r.pod_status(sid, "PodSandboxStatus verbose", verbose=True)
    r.info_note("sandbox info ready", ps, "pid", "processStatus", "netNamespaceClosed", "runtimeHandler")
    cid = r.create(sid, pod, "app", ["sh", "-c", "sleep 0.5; exit 0"])
    st = r.status(cid, "ContainerStatus verbose created", verbose=True)
    r.info_note("container info created", st, "pid", "removing")
    r.start(cid)
    st = r.status(cid, "ContainerStatus verbose running", verbose=True)
    r.info_note("container info running", st, "pid", "removing")
    r.wait_exited(cid, 0)
    st = r.status(cid, "ContainerStatus verbose exited", verbose=True)
    r.info_note("container info exited", st, "pid", "removing")


def seq_resources_mounts(r: Recorder) -> None:
    """ContainerStatus echoes configured Linux resources and mounts (containerd fills both)."""
    pb = r.pb
    sid, pod = r.run_pod("res")
    cfg = r.container_config("limited", ["sleep", "1000"])
    cfg.linux.resources.CopyFrom(pb.LinuxContainerResources(cpu_shares=512, cpu_period=100000, cpu_quota=50000,
                                                            memory_limit_in_bytes=64 << 20))
    cfg.mounts.append(pb.Mount(container_path="/data", host_path=r.b.log_root, readonly=True))
    resp = r.rt("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg, sandbox_config=pod),
                "CreateContainer with resources and a mount")
    cid = resp.container_id if resp is not None else UNKNOWN_ID
    r.status(cid, "ContainerStatus created with resources")
    r.start(cid)
    r.status(cid, "ContainerStatus running with resources")


def seq_pod_network(r: Recorder) -> None:
    """A POD-network sandbox gets an IP (CNI); the IP is gone once it is stopped."""
    pb = r.pb
    sid, _ = r.run_pod("podnet", network=NETWORK_POD)
    ps = r.pod_status(sid, "PodSandboxStatus pod network", verbose=True)
    r.info_note("sandbox info pod network", ps, "processStatus", "netNamespaceClosed")
    r.rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    ps = r.pod_status(sid, "PodSandboxStatus pod network stopped", verbose=True)
    r.info_note("sandbox info pod network stopped", ps, "pid", "processStatus", "netNamespaceClosed")


def seq_events(r: Recorder) -> None:
    """GetContainerEvents: containerd 1.6 does not implement it (v1); v1alpha2 has no such method."""
    api = r.b.api
    r.raw_stream(f"/runtime.{api}.RuntimeService/GetContainerEvents", "GetContainerEvents")


def _wait_for_content(path: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if os.path.getsize(path):
                return
        time.sleep(0.02)


def seq_process_exit(r: Recorder) -> None:
    """Issue 18's "done when": ``sh -c "echo hi; exit 3"`` exits by itself with 3, logs ``stdout F hi``."""
    sid, pod = r.run_pod("exit3")
    cid = r.create(sid, pod, "app", ["sh", "-c", "echo hi; exit 3"])
    r.start(cid)
    r.wait_exited(cid, 3)
    st = r.status(cid, "ContainerStatus exited by itself")
    r.time_rules("times exited by itself", st.status, ran_a_while=False)
    r.list_containers("ListContainers exited by itself")
    r.log_note("log of echo hi; exit 3", pod, "app")


def seq_logs(r: Recorder) -> None:
    """Partial writes, both streams, a trailing line without newline; ReopenContainerLog."""
    pb = r.pb
    sid, pod = r.run_pod("logs")
    cid = r.create(sid, pod, "app", ["sh", "-c", "echo hi; echo -n part; sleep 0.3; printf 'a\\nb'; echo err >&2; "
                                                 "printf '%s-%d\\n' x 1 y 2; exit 3"])
    r.start(cid)
    r.wait_exited(cid, 3)
    r.log_note("log lines", pod, "app")
    long = r.create(sid, pod, "long", ["sh", "-c", "printf '%020000d\\n' 0; exit 0"])
    r.start(long)
    r.wait_exited(long, 0)
    r.log_note("log of a 20000-byte line", pod, "long")
    r.rt("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=cid), "ReopenContainerLog exited")
    run = r.create(sid, pod, "run", ["sh", "-c", "echo one; sleep 1000"])
    r.start(run)
    # containerd 1.6 can lose a line written while ReopenContainerLog swaps its writer: reopen once
    # the first line is in the file
    _wait_for_content(f"{pod.log_directory}/run.log")
    r.rt("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=run), "ReopenContainerLog running")
    r.rt("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=UNKNOWN_ID), "ReopenContainerLog unknown")
    r.rt("StopContainer", pb.StopContainerRequest(container_id=run, timeout=0))
    r.log_note("log of a stopped long runner", pod, "run")


def seq_exec_sync(r: Recorder) -> None:
    """ExecSync in a running container: output, exit codes, errors, the timeout."""
    pb = r.pb
    sid, pod = r.run_pod("exec", network=NETWORK_POD)
    cfg = r.container_config("app", ["sleep", "1000"])
    cfg.envs.append(pb.KeyValue(key="FOO", value="bar"))
    resp = r.rt("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg, sandbox_config=pod),
                "CreateContainer app")
    cid = resp.container_id if resp is not None else UNKNOWN_ID
    r.start(cid)
    r.exec_note("ExecSync echo x", cid, ["echo", "x"])
    r.exec_note("ExecSync sh both streams", cid, ["sh", "-c", "echo a; echo b >&2; exit 5"])
    r.exec_note("ExecSync env", cid, ["sh", "-c", "echo $HOSTNAME $HOME $FOO $PATH"])
    r.exec_note("ExecSync cat hostname", cid, ["cat", "/etc/hostname"])
    r.exec_note("ExecSync cat missing", cid, ["cat", "/nope"])
    r.exec_note("ExecSync cat hosts", cid, ["cat", "/etc/hosts"])
    r.exec_note("ExecSync cat resolv.conf", cid, ["cat", "/etc/resolv.conf"])
    r.exec_note("ExecSync hostname", cid, ["hostname"])
    r.exec_note("ExecSync -e", cid, ["sh", "-ec", "echo before; false; echo never"])
    r.exec_note("ExecSync redirections", cid, ["sh", "-c", "echo out 1>&2; echo err 2>/dev/null; echo x 2>&1"])
    r.exec_note("ExecSync write then read", cid, ["sh", "-c", "echo kept > /tmp/f"])
    r.exec_note("ExecSync read back", cid, ["cat", "/tmp/f"])
    r.exec_note("ExecSync exit 300", cid, ["sh", "-c", "exit 300"])
    r.exec_note("ExecSync sleep bad", cid, ["sleep", "x"])
    r.exec_note("ExecSync printf", cid, ["printf", "%s=%d\\n", "a", "1", "b", "2"])
    r.exec_note("ExecSync false || true", cid, ["sh", "-c", "false || echo $?; false; echo $?"])
    r.exec_note("ExecSync timeout", cid, ["sleep", "5"], timeout=1)
    r.exec_note("ExecSync unknown executable", cid, ["nosuchcmd"])
    r.exec_note("ExecSync empty", cid, [])
    r.exec_note("ExecSync unknown container", UNKNOWN_ID, ["echo", "x"])
    created = r.create(sid, pod, "idle", ["sleep", "1000"])
    r.exec_note("ExecSync created container", created, ["echo", "x"])
    r.rt("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=0))
    r.exec_note("ExecSync exited container", cid, ["echo", "x"])


def seq_streaming(r: Recorder) -> None:
    """Exec/Attach/PortForward: the lookups (unknown IDs) and the answer for a known one."""
    pb = r.pb
    sid, pod = r.run_pod("stream")
    cid = r.create(sid, pod, "app", ["sleep", "1000"])
    r.start(cid)
    r.rt("Exec", pb.ExecRequest(container_id=UNKNOWN_ID, cmd=["sh"], stdout=True), "Exec unknown")
    r.rt("Exec", pb.ExecRequest(container_id=cid, cmd=["sh"], stdout=True), "Exec running")
    r.rt("Attach", pb.AttachRequest(container_id=cid, stdout=True), "Attach running")
    r.rt("PortForward", pb.PortForwardRequest(pod_sandbox_id=sid, port=[80]), "PortForward")
    r.rt("Attach", pb.AttachRequest(container_id=UNKNOWN_ID, stdout=True), "Attach unknown")
    r.rt("PortForward", pb.PortForwardRequest(pod_sandbox_id=UNKNOWN_ID, port=[80]), "PortForward unknown")
    exited = r.create(sid, pod, "done", ["sh", "-c", "exit 0"])
    r.start(exited)
    r.wait_exited(exited, 0)
    r.rt("Exec", pb.ExecRequest(container_id=exited, cmd=["sh"], stdout=True), "Exec exited")
    r.rt("Attach", pb.AttachRequest(container_id=exited, stdout=True), "Attach exited")
    r.rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    r.rt("PortForward", pb.PortForwardRequest(pod_sandbox_id=sid, port=[80]), "PortForward stopped pod")


def seq_stats(r: Recorder) -> None:
    """ContainerStats/ListContainerStats for running (with a memory limit) and exited containers."""
    pb = r.pb
    sid, pod = r.run_pod("stats")
    cfg = r.container_config("run", ["sleep", "1000"])
    cfg.linux.resources.CopyFrom(pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20))
    resp = r.rt("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg, sandbox_config=pod),
                "CreateContainer run")
    run = resp.container_id if resp is not None else UNKNOWN_ID
    r.start(run)
    done = r.create(sid, pod, "done", ["sh", "-c", "exit 0"])
    r.start(done)
    r.wait_exited(done, 0)
    r.rt("ContainerStats", pb.ContainerStatsRequest(container_id=run), "ContainerStats running")
    r.rt("ContainerStats", pb.ContainerStatsRequest(container_id=done), "ContainerStats exited")
    r.rt("ContainerStats", pb.ContainerStatsRequest(container_id=UNKNOWN_ID), "ContainerStats unknown")
    r.rt("ListContainerStats", pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(pod_sandbox_id=sid)),
         "ListContainerStats of the pod")


def seq_update_resources(r: Recorder) -> None:
    """UpdateContainerResources shows in ContainerStatus and in the verbose runtimeSpec."""
    pb = r.pb
    sid, pod = r.run_pod("update")
    cfg = r.container_config("app", ["sleep", "1000"])
    cfg.linux.resources.CopyFrom(pb.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=64 << 20))
    resp = r.rt("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg, sandbox_config=pod),
                "CreateContainer app")
    cid = resp.container_id if resp is not None else UNKNOWN_ID
    r.start(cid)
    r.rt("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(cpu_shares=256, memory_limit_in_bytes=128 << 20)))
    st = r.status(cid, "ContainerStatus after update")
    r.note("resources after update", str(st.status.resources.linux) if st is not None else None)
    r.spec_note("runtimeSpec after update", r.status(cid, "ContainerStatus verbose after update", verbose=True),
                {sid: "<sandbox>", cid: "<container>", r.b.cgroup_parent: "<parent>"})
    r.rt("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
        container_id=UNKNOWN_ID, linux=pb.LinuxContainerResources(cpu_shares=256)), "UpdateContainerResources unknown")
    idle = r.create(sid, pod, "idle", ["sleep", "1000"])
    r.rt("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
        container_id=idle, linux=pb.LinuxContainerResources(cpu_shares=300)), "UpdateContainerResources created")
    r.status(idle, "ContainerStatus created after update")
    r.rt("ContainerStats", pb.ContainerStatsRequest(container_id=idle), "ContainerStats created")
    r.rt("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=idle), "ReopenContainerLog created")
    r.rt("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=0))
    r.rt("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(cpu_shares=400)), "UpdateContainerResources exited")
    r.status(cid, "ContainerStatus exited after update")


def seq_runtime_spec(r: Recorder) -> None:
    """Verbose info's runtimeSpec: annotations, cgroupsPath, namespaces, mounts (pod and node network)."""
    pb = r.pb
    for net, name in ((NETWORK_POD, "podnet"), (NETWORK_NODE, "nodenet")):
        sid, pod = r.run_pod(f"spec-{name}", network=net)
        cfg = r.container_config("app", ["sleep", "1000"])
        cfg.mounts.append(pb.Mount(container_path="/data", host_path=r.b.log_root, readonly=True))
        resp = r.rt("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg, sandbox_config=pod),
                    f"CreateContainer {name}")
        cid = resp.container_id if resp is not None else UNKNOWN_ID
        ids = {sid: "<sandbox>", cid: "<container>", r.b.cgroup_parent: "<parent>", pod.metadata.name: "<pod>",
               pod.metadata.uid: "<uid>", r.b.busybox_image: "<image>"}
        r.spec_note(f"container runtimeSpec created {name}", r.status(cid, f"ContainerStatus verbose {name}",
                                                                       verbose=True), ids)
        r.start(cid)
        r.spec_note(f"container runtimeSpec running {name}", r.status(cid, f"ContainerStatus verbose running {name}",
                                                                       verbose=True), ids)
        r.spec_note(f"sandbox runtimeSpec {name}", r.pod_status(sid, f"PodSandboxStatus verbose {name}", verbose=True),
                    ids)


def seq_validation(r: Recorder) -> None:
    """Requests a runtime must refuse: missing metadata, missing image."""
    pb = r.pb
    sid, pod = r.run_pod("valid")
    r.rt("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=pb.ContainerConfig(image=pb.ImageSpec(image=r.b.busybox_image)),
        sandbox_config=pod), "CreateContainer without metadata")
    r.rt("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=pb.ContainerConfig(metadata=pb.ContainerMetadata(name="noimage")),
        sandbox_config=pod), "CreateContainer without image")
    r.rt("RunPodSandbox", pb.RunPodSandboxRequest(config=pb.PodSandboxConfig()), "RunPodSandbox without metadata")


SEQUENCES: dict[str, Callable[[Recorder], None]] = {
    "version": seq_version,
    "status": seq_status,
    "images": seq_images,
    "unknown_ids": seq_unknown_ids,
    "lifecycle": seq_lifecycle,
    "exit_zero": seq_exit_zero,
    "start_twice": seq_start_twice,
    "stop": seq_stop,
    "remove_running": seq_remove_running,
    "remove_pod_with_containers": seq_remove_pod_with_containers,
    "stop_pod_with_containers": seq_stop_pod_with_containers,
    "filters": seq_filters,
    "names": seq_names,
    "verbose": seq_verbose,
    "resources_mounts": seq_resources_mounts,
    "pod_network": seq_pod_network,
    "events": seq_events,
    "process_exit": seq_process_exit,
    "logs": seq_logs,
    "exec_sync": seq_exec_sync,
    "streaming": seq_streaming,
    "stats": seq_stats,
    "update_resources": seq_update_resources,
    "runtime_spec": seq_runtime_spec,
    "validation": seq_validation,
}


def run_sequence(name: str, bundle: Bundle) -> list[Step]:
    """Run one sequence against one bundle; its pods are removed afterwards whatever happened."""
    r = Recorder(bundle, name)
    try:
        SEQUENCES[name](r)
    finally:
        r.cleanup()
    return r.steps


@dataclass
class Difference:
    label: str
    path: str
    real: Any
    fake: Any


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)

    def add(self, label: str, path: str, real: Any, fake: Any) -> None:
        self.differences.append(Difference(label, path, real, fake))


def _diff(label: str, path: str, a: Any, b: Any, out: Comparison) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.add(label, sub, "<absent>", b[k])
            elif k not in b:
                out.add(label, sub, a[k], "<absent>")
            else:
                _diff(label, sub, a[k], b[k], out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
        isinstance(x, dict) for x in a + b
    ):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(label, f"{path}[{i}]", x, y, out)
    elif a != b:
        out.add(label, path, a, b)


def compare(real: list[Step], fake: list[Step]) -> Comparison:
    """Step-by-step differences: code, text (masked), shape. Paths: ``code``, ``text``, ``shape.<field>``."""
    out = Comparison()
    fake_by_label = {s.label: s for s in fake}
    real_labels = [s.label for s in real]
    for s in real:
        f = fake_by_label.get(s.label)
        if f is None:
            out.add(s.label, "step", "present", "<absent>")
            continue
        if s.code != f.code:
            out.add(s.label, "code", s.code, f.code)
        if s.text != f.text:
            out.add(s.label, "text", s.text, f.text)
        _diff(s.label, "shape", s.shape, f.shape, out)
    for f in fake:
        if f.label not in real_labels:
            out.add(f.label, "step", "<absent>", "present")
    return out
