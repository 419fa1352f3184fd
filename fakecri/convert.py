"""Translate between the runtime model and CRI protobuf messages.

Both API versions share message shapes for everything the fake serves, so each function takes
the generated ``pb`` module (``cri_api.v1.api_pb2`` or ``cri_api.v1alpha2.api_pb2``) as its first
argument instead of being written twice.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from types import ModuleType
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict

from fakecri import ocispec
from fakecri.flavors import Flavor
from fakecri.model import Container, Image, Sandbox
from sensor.wire import varint

CONTAINER_STATE = {"created": 0, "running": 1, "exited": 2, "unknown": 3}
CONTAINER_STATE_NAME = {v: k for k, v in CONTAINER_STATE.items()}
SANDBOX_STATE = {"ready": 0, "notready": 1}
SANDBOX_STATE_NAME = {v: k for k, v in SANDBOX_STATE.items()}


def message_dict(msg: Any) -> dict[str, Any]:
    """A request message as JSON-able dict with proto field names (stored in verbose ``info``)."""
    return MessageToDict(msg, preserving_proto_field_name=True)


def sandbox_info(flavor: Flavor, s: Sandbox) -> dict[str, str]:
    spec = ocispec.sandbox_spec(flavor, s)
    if flavor.info_shape == "containerd":
        info: dict[str, Any] = {
            "pid": s.pid if s.state == "ready" else 0,
            "processStatus": "running" if s.state == "ready" else "deleted",  # containerd deletes the task
            "netNamespaceClosed": s.state != "ready" and s.network != "NODE",  # NODE: no netns of its own
            "image": "registry.k8s.io/pause:3.6",
            "snapshotKey": s.id,
            "snapshotter": "overlayfs",
            "runtimeHandler": s.runtime_handler,
            "runtimeType": "io.containerd.runc.v2",
            "runtimeOptions": None,
            "config": s.config,
            "runtimeSpec": spec,
            "cniResult": None if s.network == "NODE" else {"Interfaces": {"eth0": {"IPConfigs": [{"IP": s.ip}]}}},
        }
    else:
        info = {"image": "registry.k8s.io/pause:3.6", "pid": s.pid, "runtimeSpec": spec}
    return {"info": json.dumps(info)}


def container_info(flavor: Flavor, c: Container, sb: Sandbox | None = None,
                   host_name: str = "") -> dict[str, str]:
    """Verbose ContainerStatus ``info``; ``sb`` (the container's sandbox) fills the runtimeSpec's
    namespaces, cgroupsPath and CRI annotations (``fakecri.ocispec``)."""
    cfg = c.config
    spec = ocispec.container_spec(flavor, c, sb, host_name)
    if flavor.info_shape == "containerd":
        info: dict[str, Any] = {
            "sandboxID": c.sandbox_id,
            "pid": c.pid,
            "removing": False,
            "snapshotKey": c.id,
            "snapshotter": "overlayfs",
            "runtimeType": "io.containerd.runc.v2",
            "runtimeOptions": None,
            "config": cfg,
            "runtimeSpec": spec,
        }
    else:
        info = {"sandboxID": c.sandbox_id, "pid": c.pid, "runtimeSpec": spec, "privileged": False}
    return {"info": json.dumps(info)}


def pod_sandbox(pb: ModuleType, s: Sandbox) -> Any:
    return pb.PodSandbox(
        id=s.id,
        metadata=pb.PodSandboxMetadata(name=s.name, uid=s.uid, namespace=s.namespace, attempt=s.attempt),
        state=SANDBOX_STATE[s.state],
        created_at=s.created_at,
        labels=s.labels,
        annotations=s.annotations,
        runtime_handler=s.runtime_handler,
    )


def pod_sandbox_status(pb: ModuleType, s: Sandbox, flavor: Flavor | None = None) -> Any:
    ns_mode = 2 if s.network == "NODE" else 0  # NamespaceMode: POD=0, CONTAINER=1, NODE=2, TARGET=3
    # containerd reports no IP once the sandbox's network namespace is closed (StopPodSandbox)
    ip = "" if flavor is not None and flavor.runtime_name == "containerd" and s.state != "ready" else s.ip
    return pb.PodSandboxStatus(
        id=s.id,
        metadata=pb.PodSandboxMetadata(name=s.name, uid=s.uid, namespace=s.namespace, attempt=s.attempt),
        state=SANDBOX_STATE[s.state],
        created_at=s.created_at,
        network=pb.PodSandboxNetworkStatus(ip=ip),
        linux=pb.LinuxPodSandboxStatus(
            namespaces=pb.Namespace(options=pb.NamespaceOption(network=ns_mode, pid=0, ipc=0))
        ),
        labels=s.labels,
        annotations=s.annotations,
        runtime_handler=s.runtime_handler,
    )


def container(pb: ModuleType, c: Container) -> Any:
    return pb.Container(
        id=c.id,
        pod_sandbox_id=c.sandbox_id,
        metadata=pb.ContainerMetadata(name=c.name, attempt=c.attempt),
        image=pb.ImageSpec(image=c.image),
        image_ref=c.image_ref,
        state=CONTAINER_STATE[c.state],
        created_at=c.created_at,
        labels=c.labels,
        annotations=c.annotations,
    )


def container_resources(pb: ModuleType, c: Container) -> Any:
    """containerd reports the container's Linux resources (set, even when all zero), as configured;
    a memory limit without a swap limit gets swap = memory (runc's default)."""
    res = ParseDict(c.config.get("linux", {}).get("resources", {}), pb.LinuxContainerResources(),
                    ignore_unknown_fields=True)
    if res.memory_limit_in_bytes and not res.memory_swap_limit_in_bytes:
        res.memory_swap_limit_in_bytes = res.memory_limit_in_bytes
    return pb.ContainerResources(linux=res)


def container_status(pb: ModuleType, c: Container, flavor: Flavor) -> Any:
    exit_code = c.exit_code if c.state == "exited" else 0
    resources = container_resources(pb, c) if flavor.runtime_name == "containerd" else None
    mounts = [ParseDict(m, pb.Mount(), ignore_unknown_fields=True) for m in c.config.get("mounts", [])]
    return pb.ContainerStatus(
        id=c.id,
        metadata=pb.ContainerMetadata(name=c.name, attempt=c.attempt),
        state=CONTAINER_STATE[c.state],
        created_at=c.created_at,
        started_at=c.started_at,
        finished_at=c.finished_at,
        exit_code=exit_code,
        image=pb.ImageSpec(image=c.image),
        image_ref=c.image_ref,
        reason=c.reason if c.state == "exited" else "",
        message=c.message,
        labels=c.labels,
        annotations=c.annotations,
        log_path=c.log_path,
        resources=resources,
        mounts=mounts,  # the configured mounts, as runtimes report them
    )


def image(pb: ModuleType, img: Image) -> Any:
    return pb.Image(id=img.id, repo_tags=img.repo_tags, repo_digests=img.repo_digests, size=img.size,
                    pinned=img.pinned)


def labels_of(filter_msg: Any) -> dict[str, str]:
    return dict(filter_msg.label_selector) if filter_msg is not None else {}


# --- list answers from cached entries ------------------------------------------------------------


def list_entry(pb: ModuleType, response: str, field: str, msg: Any) -> bytes:
    """``msg`` serialized as one entry of a list answer (tag, length, message), exactly as inside a
    whole ``response`` (protobuf concatenates repeated entries): built through a one-entry response,
    so that even map fields come out in the order the whole answer would put them in."""
    return getattr(pb, response)(**{field: [msg]}).SerializeToString()


class ListCache:
    """Each object's list entry -- serialized bytes, per API version -- kept until the object
    changes, so that a 10,000-container ``ListContainers`` answer is a join of cached bytes instead
    of 10,000 conversions (~100 ms of GIL-holding work that also ruined the timeline's jitter).

    Theory: the fields of a list entry (IDs, names, image, labels, annotations, ``created_at``,
    state) are fixed when the model creates an object, except its state, and the model changes a
    state only through ``_set_*_state``, which calls its ``on_change`` listeners. ``changed`` is such
    a listener: it forgets the object's entry, under the model lock, and the next list that shows
    the object builds it again (``entries``). So a cached entry is always the object's current
    one, and ``entries``/``every_entry`` -- also under the model lock -- give a consistent answer.
    Built on demand, an entry costs one build per list that shows a change, not one per change: a
    churning container is created, started, exited and removed between two lists at 1,000
    lifecycles a second, and the timeline thread that applies those steps no longer builds
    entries nobody lists. The whole unfiltered answer is kept too, until anything changes
    (``version``).

    ``parts`` (containers): the entry's bytes around its state field, built once per object; a
    changed entry is then a concatenation, not a message built and serialized (~13 us each, ~750
    per list at 1,000 lifecycles a second, all under the model lock). Messages are built only for
    a policy that reshapes answers (``messages``), and kept like the entries.
    """

    def __init__(self, build: Callable[[ModuleType, Any], Any], response: str, field: str,
                 parts: Callable[[ModuleType, Any], tuple[bytes, bytes]] | None = None) -> None:
        self._build = build
        self._parts = parts
        self._response, self._field = response, field
        self._by_api: dict[ModuleType, dict[str, bytes]] = {}
        self._msgs: dict[ModuleType, dict[str, Any]] = {}
        self._parts_by_api: dict[ModuleType, dict[str, tuple[bytes, bytes]]] = {}
        self._whole: dict[ModuleType, tuple[int, bytes]] = {}  # unfiltered answer, at a version
        #: Bumped by every change: an unfiltered answer taken at the same version is the same.
        self.version = 0

    def _make(self, pb: ModuleType, obj: Any) -> bytes:
        if self._parts is None:
            return list_entry(pb, self._response, self._field, self._build(pb, obj))
        known = self._parts_by_api.setdefault(pb, {})
        parts = known.get(obj.id)
        if parts is None:
            parts = known[obj.id] = self._parts(pb, obj)
        return state_entry(parts, CONTAINER_STATE[obj.state])

    def entries(self, pb: ModuleType, items: list[Any]) -> list[bytes]:
        """The entry bytes of each item, in order. Call under the model lock."""
        return _cached(self._by_api.setdefault(pb, {}), items, lambda obj: self._make(pb, obj))

    def messages(self, pb: ModuleType, items: list[Any]) -> list[Any]:
        """The entry message of each item, in order (for a policy that reshapes answers). Call
        under the model lock."""
        return _cached(self._msgs.setdefault(pb, {}), items, lambda obj: self._build(pb, obj))

    def every_entry(self, pb: ModuleType, table: dict[str, Any]) -> tuple[list[bytes], int]:
        """``entries`` of every object of ``table`` (the model's ID -> object dict, in its order) and
        the version they were taken at. Call under the model lock."""
        got: list[Any] = list(map(self._by_api.setdefault(pb, {}).get, table))
        return (self.entries(pb, list(table.values())) if None in got else got), self.version

    def whole(self, pb: ModuleType, got: list[bytes], version: int) -> bytes:
        """The unfiltered answer made of ``got`` (from ``every_entry`` at ``version``): the one kept
        from an earlier call if nothing changed since, else joined now (and kept)."""
        kept = self._whole.get(pb)
        if kept is not None and kept[0] == version:
            return kept[1]
        answer = b"".join(got)
        self._whole[pb] = (version, answer)
        return answer

    def changed(self, obj: Any, transition: str) -> None:
        """``RuntimeModel.on_change`` hook for this cache's kind (called under the model lock)."""
        self.version += 1
        self._whole.clear()
        for cache in self._by_api.values():
            cache.pop(obj.id, None)
        for msgs in self._msgs.values():
            msgs.pop(obj.id, None)
        if transition == "destroyed":  # the truth's name for a removal (model.on_change)
            for parts in self._parts_by_api.values():
                parts.pop(obj.id, None)

    def size(self) -> int:
        return sum(len(c) for c in self._by_api.values())


#: A container's state field (``state = 6``, varint) by value; proto3 leaves out the default (0).
_STATE_FIELD = {0: b"", 1: b"\x30\x01", 2: b"\x30\x02", 3: b"\x30\x03"}


def container_parts(pb: ModuleType, c: Container) -> tuple[bytes, bytes]:
    """A container's list entry payload before and after its state field: fields 1-5, then 7-9 (the
    payload of ``list_entry`` for the container in the CREATED state, split where field 6 goes)."""
    whole = container(pb, c)
    whole.state = 0
    entry = list_entry(pb, "ListContainersResponse", "containers", whole)
    payload = memoryview(entry)[len(entry) - whole.ByteSize():]  # after the entry's tag and length
    pos = 0
    while pos < len(payload) and payload[pos] >> 3 < 6:  # fields 1-5: strings and messages (wire type 2)
        pos += 1
        size, pos = _read_varint(payload, pos)
        pos += size
    return bytes(payload[:pos]), bytes(payload[pos:])


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def state_entry(parts: tuple[bytes, bytes], state: int) -> bytes:
    """The list entry (tag, length, payload) of a container from its ``container_parts``."""
    payload = parts[0] + _STATE_FIELD[state] + parts[1]
    return b"\x0a" + varint(len(payload)) + payload


def _cached(cache: dict[str, Any], items: list[Any], make: Callable[[Any], Any]) -> list[Any]:
    """``cache``'s value for each item's ID, in order; what is missing is made and kept."""
    got: list[Any] = list(map(cache.get, map(_ID, items)))
    if None in got:
        for i, hit in enumerate(got):
            if hit is None:
                got[i] = cache[items[i].id] = make(items[i])
    return got


_ID = operator.attrgetter("id")
