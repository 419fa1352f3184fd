"""The gRPC shell: serve a ``RuntimeModel`` as CRI RuntimeService + ImageService on a unix socket.

Every handler is the same three steps: ask the ``CallPolicy`` (faults: latency, hangs, errors),
call the model, convert the result. ``CriError`` becomes the gRPC status the real runtime
returns. Every served call is written to the truth as an ``rpc`` record, because the verifier
needs to know what a client could have seen and when.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from types import ModuleType
from typing import Any

import grpc

import cri_api
from fakecri import convert, stats
from fakecri.clock import VirtualClock
from fakecri.flavors import Flavor
from fakecri.model import Container, CriError, RuntimeModel, Sandbox
from fakecri.reaper import Reaper
from fakecri.relay import SocketIdentity, claim_socket_path, release_socket_path, socket_identity
from fakecri.truth import RpcServed

log = logging.getLogger("fakecri")

#: gRPC's default receive limit is 4 MiB; the server sends whatever it must (like a real runtime),
#: and takes requests up to this size.
MAX_RECV_BYTES = 16 * 1024 * 1024

_EVENT_TYPE = {"created": 0, "running": 1, "exited": 2, "destroyed": 3}
_STREAM_END = object()


_call = threading.local()


def _taken(model: RuntimeModel) -> None:
    """Note the instant the current call's answer read the model (call under ``model.lock``): the
    truth dates the answer there, not at the call's arrival. A call that waited for the lock while
    a step was applied shows that step, so its answer must not be dated before it."""
    _call.taken_ns = model.clock.now_ns()


def current_context() -> grpc.ServicerContext | None:
    """The gRPC context of the call the current thread serves (for ``CallPolicy`` hooks that need
    the client's deadline, such as a hang that lasts until the deadline passes)."""
    return getattr(_call, "context", None)


class CallPolicy:
    """Fault hooks the server consults. The default injects nothing; scenarios subclass it."""

    def before_call(self, method: str, api: str, target: str | None) -> None:
        """Called before every RPC: may sleep (latency, hang) or raise ``CriError``."""

    def shapes_lists(self) -> bool:
        """Whether ``shape_containers``/``shape_sandboxes`` may change a list now: if not, a list is
        answered from cached bytes without building its messages. By default, whether a subclass
        overrides either (a subclass that knows when it shapes says so itself)."""
        cls = type(self)
        return cls.shape_containers is not CallPolicy.shape_containers or (
            cls.shape_sandboxes is not CallPolicy.shape_sandboxes)

    def shape_containers(self, items: list[Any], pb: ModuleType) -> list[Any]:
        """Rewrite a ListContainers answer (duplicate IDs, missing metadata, odd timestamps)."""
        return items

    def shape_sandboxes(self, items: list[Any], pb: ModuleType) -> list[Any]:
        return items

    def shape_status(self, status: Any, pb: ModuleType) -> Any:
        return status

    def stream_event(self, kind: str, obj_id: str, transition: str) -> bool:
        """Whether GetContainerEvents subscribers get this change; ``False`` loses it (a runtime
        that drops an event). ``kind`` is ``container`` or ``sandbox``, ``transition`` a truth name."""
        return True


#: Initial-metadata key under which GetContainerEvents names its subscription (sent right after
#: subscribing, so a client knows it is subscribed; tests pair it with ``EventHub.sent``).
SUBSCRIPTION_HEADER = "fakecri-subscription"


def _status_key(c: Container) -> tuple[Any, ...]:
    """What a container's converted status depends on that can change (the rest is fixed at create)."""
    return (c.state, c.started_at, c.finished_at, c.exit_code, c.reason, c.message, c.revision)


class EventHub:
    """Fans model changes out to GetContainerEvents subscribers, in model order, with no gap.

    Each event goes out serialized (the server passes ``bytes`` answers through): the event's own
    fields, then the status of every container of its pod, as containerd sends them. A container's
    status is serialized once per state (``_entry``) and reused by every event of its pod until it
    changes: under churn a pod of ~65 containers took ~1 ms of conversion per event, thousands of
    events a second, and the stream fell seconds behind the timeline."""

    def __init__(self, model: RuntimeModel, policy: CallPolicy | None = None) -> None:
        self._model = model
        self.policy = policy or CallPolicy()
        self._subs: dict[int, tuple[ModuleType, queue.SimpleQueue[Any]]] = {}
        self._sent: dict[int, int] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._ghosts = 0  # closed subscriptions that still take one event (Flavor.events_shared)
        self._turn = 0  # round robin over subscribers (Flavor.events_shared)
        #: (API module, container ID) -> (_status_key, the status as a containers_statuses entry)
        self._entries: dict[tuple[ModuleType, str], tuple[tuple[Any, ...], bytes]] = {}
        self._pbs: set[ModuleType] = set()  # the API modules _entries holds entries for
        model.on_change(self._on_change)

    def _entry(self, pb: ModuleType, c: Container) -> bytes:
        key = _status_key(c)
        got = self._entries.get((pb, c.id))
        if got is None or got[0] != key:
            self._pbs.add(pb)
            status = convert.container_status(pb, c, self._model.flavor)
            got = self._entries[(pb, c.id)] = (key, pb.ContainerEventResponse(containers_statuses=[status])
                                               .SerializeToString())
        return got[1]

    def subscribe(self, pb: ModuleType) -> tuple[int, queue.SimpleQueue[Any]]:
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._lock:
            self._next += 1
            self._subs[self._next] = (pb, q)
            self._sent[self._next] = 0
            return self._next, q

    def unsubscribe(self, key: int) -> None:
        with self._lock:
            if self._subs.pop(key, None) is not None and self._model.flavor.events_shared:
                self._ghosts += 1
            self._sent.pop(key, None)

    def sent(self, key: int) -> int | None:
        """Responses queued so far for subscription ``key``; ``None`` once it is closed. A test that
        drives a client on a virtual clock waits until the client has read this many."""
        with self._lock:
            return self._sent.get(key)

    def close_all(self, reason: object = _STREAM_END) -> None:
        """End every open stream (runtime shutdown); ``reason`` is put on each queue."""
        with self._lock:
            subs, self._subs, self._sent = list(self._subs.values()), {}, {}
        for _, q in subs:
            q.put(reason)

    def _takers(self, subs: list[tuple[int, tuple[ModuleType, queue.SimpleQueue[Any]]]],
                ) -> list[tuple[int, tuple[ModuleType, queue.SimpleQueue[Any]]]]:
        """Who gets one event: every subscriber, or with ``events_shared`` one of them in turn -- or
        a closed subscription that still takes it (lost)."""
        if not self._model.flavor.events_shared:
            return subs
        with self._lock:
            if self._ghosts:
                self._ghosts -= 1
                return []
            self._turn += 1
            return [subs[self._turn % len(subs)]] if subs else []

    def _on_change(self, kind: str, obj: Container | Sandbox, transition: str) -> None:
        if kind == "container" and transition == "destroyed":  # its status is never sent again
            for pb in self._pbs:
                self._entries.pop((pb, obj.id), None)
        if (kind == "container" and transition not in _EVENT_TYPE) or not self.policy.stream_event(kind, obj.id,
                                                                                                    transition):
            return
        model = self._model
        flavor = model.flavor
        with self._lock:
            subs = list(self._subs.items())
        if not subs and not (flavor.events_shared and self._ghosts):
            return
        sandbox_id = obj.sandbox_id if isinstance(obj, Container) else obj.id
        sb = model.sandboxes.get(sandbox_id)
        members = model.pod_containers(sandbox_id)
        # Sandbox transitions are announced as container events whose ID is the sandbox's, as containerd
        # does: RunPodSandbox CREATED, its stop STOPPED, RemovePodSandbox DELETED.
        event_type = {"ready": 0, "notready": 2}.get(transition, _EVENT_TYPE.get(transition, 0))
        started = kind == "sandbox" and transition == "ready" and flavor.sandbox_started_event
        types = (0, 1) if started else (event_type,)  # a new sandbox: CREATED, then STARTED
        if sb is None and kind == "sandbox" and flavor.deleted_sandbox_status:
            sb = dataclasses.replace(obj, state="notready")  # type: ignore[arg-type]  # its last status
        for t in types:
            for key, (pb, q) in self._takers(subs):
                head = pb.ContainerEventResponse(
                    container_id=obj.id,
                    container_event_type=t,
                    created_at=model.event_time_ns(),  # a late scenario step's own instant (backdated)
                    pod_sandbox_status=convert.pod_sandbox_status(pb, sb) if sb is not None else None,
                ).SerializeToString()
                # fields 1-4, then 5 (containers_statuses) once per member: the message's own layout
                q.put(head + b"".join([self._entry(pb, c) for c in members]))
                with self._lock:
                    if key in self._sent:
                        self._sent[key] += 1


class Handlers:
    """One method per RPC, written once for both API versions (``pb`` is the version's module)."""

    def __init__(self, model: RuntimeModel, policy: CallPolicy, hub: EventHub) -> None:
        self.model = model
        self.policy = policy
        self.hub = hub
        # List answers are built from entries cached per object until it changes (convert.ListCache).
        self.sandbox_entries = convert.ListCache(convert.pod_sandbox, "ListPodSandboxResponse", "items")
        self.container_entries = convert.ListCache(convert.container, "ListContainersResponse", "containers",
                                                   parts=convert.container_parts)
        model.on_change(self._entry_changed)

    def _entry_changed(self, kind: str, obj: Container | Sandbox, transition: str) -> None:
        cache = self.container_entries if kind == "container" else self.sandbox_entries
        cache.changed(obj, transition)

    def _list_answer(self, cache: convert.ListCache, pb: ModuleType, table: dict[str, Any] | None,
                     list_items: Callable[[], list[Any]], shape: Callable[[list[Any], ModuleType], list[Any]],
                     response: Any, field: str) -> Any:
        """A list answer: the cached entries' bytes joined (the server's serializer passes ``bytes``
        through), unless the policy reshapes lists (``CallPolicy.shapes_lists``) and changes this
        one: then the shaped message. ``table``: the model's ID -> object dict when the request has
        no filter (every object, in the model's order: what ``list_items`` would return, without a
        pass in Python)."""
        version = None
        msgs = None
        with self.model.lock:  # a consistent answer: the cache changes only under this lock
            _taken(self.model)
            items = None
            if table is not None:
                got, version = cache.every_entry(pb, table)
            else:
                items = list_items()
                got = cache.entries(pb, items)
            if self.policy.shapes_lists():
                msgs = cache.messages(pb, list(table.values()) if items is None else items)  # type: ignore[union-attr]
        if msgs is not None:
            shaped = shape(msgs, pb)  # policies return the same list when they change nothing
            if shaped is not msgs:
                return response(**{field: shaped})
        if version is not None:
            return cache.whole(pb, got, version)
        return b"".join(got)

    @property
    def flavor(self) -> Flavor:
        return self.model.flavor

    # runtime service -------------------------------------------------------------------------
    def Version(self, pb: ModuleType, api: str, req: Any) -> Any:
        f = self.flavor
        return pb.VersionResponse(version=f.kubelet_api_version, runtime_name=f.runtime_name,
                                  runtime_version=f.runtime_version, runtime_api_version=api)

    def Status(self, pb: ModuleType, api: str, req: Any) -> Any:
        conds = [pb.RuntimeCondition(type="RuntimeReady", status=True),
                 pb.RuntimeCondition(type="NetworkReady", status=True)]
        info: dict[str, str] = {}
        if req.verbose:
            import json

            info = {
                "config": json.dumps({"fakecri": {"flavor": self.flavor.name, "apis": list(self.flavor.apis)},
                                      "runtimeConfig": self.model.runtime_config}),
                "golang": json.dumps("go1.20.14"),
                "lastCNILoadStatus": json.dumps("OK"),
            }
            if self.flavor.info_shape == "containerd":  # as containerd 1.6: CNI config + plain-text load status
                info["cniconfig"] = json.dumps({"PluginDirs": ["/opt/cni/bin"], "PluginConfDir": "/etc/cni/net.d",
                                                "PluginMaxConfNum": 1, "Prefix": "eth", "Networks": []})
                info["lastCNILoadStatus"] = info["lastCNILoadStatus.default"] = "OK"
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conds), info=info)

    def RunPodSandbox(self, pb: ModuleType, api: str, req: Any) -> Any:
        cfg = req.config
        md = cfg.metadata
        network = "POD"
        if cfg.HasField("linux") and cfg.linux.security_context.namespace_options.network == 2:
            network = "NODE"
        s = self.model.run_pod_sandbox(
            md.name, md.namespace, md.uid, md.attempt, labels=cfg.labels, annotations=cfg.annotations,
            hostname=cfg.hostname, log_directory=cfg.log_directory, runtime_handler=req.runtime_handler,
            network=network, config=convert.message_dict(cfg))
        return pb.RunPodSandboxResponse(pod_sandbox_id=s.id)

    def StopPodSandbox(self, pb: ModuleType, api: str, req: Any) -> Any:
        self.model.stop_pod_sandbox(req.pod_sandbox_id)
        return pb.StopPodSandboxResponse()

    def RemovePodSandbox(self, pb: ModuleType, api: str, req: Any) -> Any:
        self.model.remove_pod_sandbox(req.pod_sandbox_id)
        return pb.RemovePodSandboxResponse()

    def PodSandboxStatus(self, pb: ModuleType, api: str, req: Any) -> Any:
        with self.model.lock:
            try:
                s = self.model.pod_sandbox_status(req.pod_sandbox_id)
            except CriError as e:
                if self.flavor.runtime_name == "containerd":  # containerd 1.6 leaves the ID out of this one
                    raise CriError(e.code, e.message.replace(f' "{req.pod_sandbox_id}"', "", 1)) from None
                raise
            _taken(self.model)
            info = convert.sandbox_info(self.flavor, s) if req.verbose else {}
            status = convert.pod_sandbox_status(pb, s, self.flavor)
        return pb.PodSandboxStatusResponse(status=status, info=info)

    def ListPodSandbox(self, pb: ModuleType, api: str, req: Any) -> Any:
        f = req.filter if req.HasField("filter") else None
        state = None
        if f is not None and f.HasField("state"):
            state = convert.SANDBOX_STATE_NAME.get(f.state.state)
        return self._list_answer(
            self.sandbox_entries, pb, self.model.sandboxes if f is None else None,
            lambda: self.model.list_pod_sandbox(id=f.id if f else "", state=state,
                                                label_selector=convert.labels_of(f)),
            self.policy.shape_sandboxes, pb.ListPodSandboxResponse, "items")

    def CreateContainer(self, pb: ModuleType, api: str, req: Any) -> Any:
        cfg = req.config
        log_path = cfg.log_path
        if log_path and self.flavor.runtime_name == "containerd":  # relative to the pod's log_directory
            log_path = os.path.join(req.sandbox_config.log_directory, log_path)
        c = self.model.create_container(
            req.pod_sandbox_id, cfg.metadata.name, cfg.metadata.attempt, cfg.image.image,
            labels=cfg.labels, annotations=cfg.annotations, log_path=log_path,
            config=convert.message_dict(cfg))
        return pb.CreateContainerResponse(container_id=c.id)

    def StartContainer(self, pb: ModuleType, api: str, req: Any) -> Any:
        self.model.start_container(req.container_id)
        return pb.StartContainerResponse()

    def StopContainer(self, pb: ModuleType, api: str, req: Any) -> Any:
        self.model.stop_container(req.container_id, req.timeout)
        return pb.StopContainerResponse()

    def RemoveContainer(self, pb: ModuleType, api: str, req: Any) -> Any:
        self.model.remove_container(req.container_id)
        return pb.RemoveContainerResponse()

    def ListContainers(self, pb: ModuleType, api: str, req: Any) -> Any:
        f = req.filter if req.HasField("filter") else None
        state = None
        if f is not None and f.HasField("state"):
            state = convert.CONTAINER_STATE_NAME.get(f.state.state)
        return self._list_answer(
            self.container_entries, pb, self.model.containers if f is None else None,
            lambda: self.model.list_containers(id=f.id if f else "", state=state,
                                               sandbox_id=f.pod_sandbox_id if f else "",
                                               label_selector=convert.labels_of(f)),
            self.policy.shape_containers, pb.ListContainersResponse, "containers")

    def ContainerStatus(self, pb: ModuleType, api: str, req: Any) -> Any:
        with self.model.lock:
            c = self.model.container_status(req.container_id)
            _taken(self.model)
            info = convert.container_info(self.flavor, c, self.model.sandboxes.get(c.sandbox_id),
                                          self.model.processes.host_name) if req.verbose else {}
            status = convert.container_status(pb, c, self.flavor)
        status = self.policy.shape_status(status, pb)
        return pb.ContainerStatusResponse(status=status, info=info)

    def UpdateContainerResources(self, pb: ModuleType, api: str, req: Any) -> Any:
        linux = convert.message_dict(req.linux) if req.HasField("linux") else {}
        with _lookup_text("failed to find container: not found"):
            self.model.update_container_resources(req.container_id, linux)
        return pb.UpdateContainerResourcesResponse()

    def ReopenContainerLog(self, pb: ModuleType, api: str, req: Any) -> Any:
        self.model.reopen_container_log(req.container_id)
        return pb.ReopenContainerLogResponse()

    def ExecSync(self, pb: ModuleType, api: str, req: Any) -> Any:
        res = self.model.exec_sync(req.container_id, list(req.cmd), req.timeout)
        _wait_for(res.duration_ns, real=not isinstance(self.model.clock, VirtualClock))
        if res.error is not None:
            raise res.error
        return pb.ExecSyncResponse(stdout=res.stdout, stderr=res.stderr, exit_code=res.exit_code)

    def Exec(self, pb: ModuleType, api: str, req: Any) -> Any:
        return self._streaming("Exec", req.container_id, 'failed to find container "{}" in store: not found')

    def Attach(self, pb: ModuleType, api: str, req: Any) -> Any:
        return self._streaming("Attach", req.container_id, "failed to find container in store: not found")

    def PortForward(self, pb: ModuleType, api: str, req: Any) -> Any:
        with _lookup_text(f'failed to find sandbox "{req.pod_sandbox_id}": not found'):
            sb = self.model.pod_sandbox_status(req.pod_sandbox_id)
        if sb.state != "ready":
            raise CriError("UNKNOWN", "sandbox container is not running")
        raise CriError("UNIMPLEMENTED", "method PortForward not implemented")

    def _streaming(self, method: str, container_id: str, not_found: str) -> Any:
        """Exec/Attach: fakecri serves no streaming endpoint; after the checks a real runtime makes
        (the container exists and runs), it answers as a Go runtime answers an RPC it does not
        implement (docs/fidelity.md)."""
        with _lookup_text(not_found.format(container_id)):
            c = self.model.container_status(container_id)
        if c.state != "running":
            raise CriError("UNKNOWN", f"container is in CONTAINER_{c.state.upper()} state")
        raise CriError("UNIMPLEMENTED", f"method {method} not implemented")

    def _stats(self, pb: ModuleType, c: Container) -> Any:
        return stats.container_stats(pb, c, self.model.clock.now_ns())

    def ContainerStats(self, pb: ModuleType, api: str, req: Any) -> Any:
        with _lookup_text("failed to find container: not found"):
            c = self.model.container_status(req.container_id)
        return pb.ContainerStatsResponse(stats=stats.one(pb, c, self.model.clock.now_ns()))

    def ListContainerStats(self, pb: ModuleType, api: str, req: Any) -> Any:
        f = req.filter if req.HasField("filter") else None
        items = self.model.list_containers(id=f.id if f else "", sandbox_id=f.pod_sandbox_id if f else "",
                                           label_selector=convert.labels_of(f))
        return pb.ListContainerStatsResponse(stats=[self._stats(pb, c) for c in items])

    def UpdateRuntimeConfig(self, pb: ModuleType, api: str, req: Any) -> Any:
        self.model.runtime_config = convert.message_dict(req.runtime_config)
        return pb.UpdateRuntimeConfigResponse()

    # image service ---------------------------------------------------------------------------
    def ListImages(self, pb: ModuleType, api: str, req: Any) -> Any:
        want = req.filter.image.image if req.HasField("filter") else ""
        if self.flavor.runtime_name == "containerd":
            want = ""  # containerd's ListImages ignores the filter and lists every image
        with self.model.lock:
            imgs = list(self.model.images.values())
        if want:
            hit = self.model.resolve_image(want)
            imgs = [hit] if hit is not None else []
        return pb.ListImagesResponse(images=[convert.image(pb, i) for i in imgs])

    def ImageStatus(self, pb: ModuleType, api: str, req: Any) -> Any:
        img = self.model.resolve_image(req.image.image)
        if img is None:
            return pb.ImageStatusResponse()  # CRI: absent image -> unset field, not an error
        info: dict[str, str] = {}
        if req.verbose and self.flavor.info_shape == "containerd":
            import json

            layer = "sha256:" + img.id.removeprefix("sha256:")[::-1]
            info["info"] = json.dumps({"chainID": layer, "imageSpec": {
                "created": "1970-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
                "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                "rootfs": {"type": "layers", "diff_ids": [layer]}}})
        return pb.ImageStatusResponse(image=convert.image(pb, img), info=info)

    def PullImage(self, pb: ModuleType, api: str, req: Any) -> Any:
        return pb.PullImageResponse(image_ref=self.model.pull_image(req.image.image).id)

    def RemoveImage(self, pb: ModuleType, api: str, req: Any) -> Any:
        self.model.remove_image(req.image.image)
        return pb.RemoveImageResponse()

    def ImageFsInfo(self, pb: ModuleType, api: str, req: Any) -> Any:
        with self.model.lock:
            used = sum(i.size for i in self.model.images.values())
            n = len(self.model.images)
        fs = pb.FilesystemUsage(timestamp=self.model.clock.now_ns(),
                                fs_id=pb.FilesystemIdentifier(mountpoint="/var/lib/fakecri/images"),
                                used_bytes=pb.UInt64Value(value=used), inodes_used=pb.UInt64Value(value=n))
        return pb.ImageFsInfoResponse(image_filesystems=[fs])


RUNTIME_RPCS = ("Version", "Status", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
                "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
                "ListContainers", "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog", "ExecSync",
                "ContainerStats", "ListContainerStats", "UpdateRuntimeConfig")
#: The streaming-session RPCs: served (answered as containerd would, without a streaming server)
#: but not targets for scenario faults.
STREAMING_RPCS = ("Exec", "Attach", "PortForward")
IMAGE_RPCS = ("ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo")
_TARGET_FIELDS = ("container_id", "pod_sandbox_id")


@contextlib.contextmanager
def _lookup_text(text: str) -> Iterator[None]:
    """A NOT_FOUND from the lookup, worded as the calling RPC words it in containerd 1.6."""
    try:
        yield
    except CriError as e:
        if e.code != "NOT_FOUND":
            raise
        raise CriError("NOT_FOUND", text) from None


def _wait_for(duration_ns: int | None, *, real: bool) -> None:
    """Let a command's time pass before answering: its duration on a real clock (nothing on a
    virtual one); a command that never ends holds the call until the client gives up."""
    context = current_context()
    if (duration_ns is not None and (not real or duration_ns <= 0)) or (context is None and duration_ns is None):
        return
    done = threading.Event()
    if context is not None and not context.add_callback(done.set):
        return  # the call is already over
    deadline = None if duration_ns is None else time.monotonic() + duration_ns / 1e9
    while context is None or context.is_active():  # in steps: a client that leaves frees the worker
        left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
        if left <= 0 or done.wait(left):
            return


def _target(req: Any) -> str | None:
    for name in _TARGET_FIELDS:
        with contextlib.suppress(AttributeError, ValueError):
            value = getattr(req, name)
            if value:
                return str(value)
    return None


class UnknownMethod(grpc.GenericRpcHandler):
    """Answers calls nobody registered as grpc-go does (every real CRI runtime is Go): UNIMPLEMENTED
    with "unknown method M for service S" / "unknown service S" -- grpcio would say "Method not found!"."""

    def __init__(self, apis: tuple[str, ...]) -> None:
        self.services = {f"runtime.{api}.{svc}" for api in apis for svc in ("RuntimeService", "ImageService")}

    def service(self, handler_call_details: Any) -> Any:
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        text = f"unknown method {method} for service {service}" if service in self.services \
            else f"unknown service {service}"

        def abort(request: bytes, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, text)

        return grpc.unary_unary_rpc_method_handler(abort)


#: RPCs whose handlers may answer with already serialized ``bytes`` (``Handlers._list_answer``).
BYTES_ANSWERS = frozenset({"ListContainers", "ListPodSandbox", "GetContainerEvents"})


def _passthrough(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def serializer(response: Any) -> bytes:
        return response if type(response) is bytes else serialize(response)

    return serializer


def _with_bytes_answers(method: str, handler: Any) -> Any:
    if handler is None or method.rpartition("/")[2] not in BYTES_ANSWERS:
        return handler
    return handler._replace(response_serializer=_passthrough(handler.response_serializer))


class _BytesGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self.inner = inner
        self._patched: dict[str, Any] = {}

    def service(self, handler_call_details: Any) -> Any:
        method = handler_call_details.method
        handler = self._patched.get(method)
        if handler is None:
            handler = _with_bytes_answers(method, self.inner.service(handler_call_details))
            if handler is not None:  # only this service's methods are remembered
                self._patched[method] = handler
        return handler


class _BytesAnswers:
    """Stands in for the ``grpc.Server`` given to a generated ``add_*_to_server``: the handlers it
    registers for ``BYTES_ANSWERS`` send a ``bytes`` answer as it is (any other answer is serialized
    as before)."""

    def __init__(self, server: grpc.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(tuple(_BytesGeneric(h) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: _with_bytes_answers(name, h) for name, h in handlers.items()})


def _private_twin(path: str) -> str:
    """A fresh hidden name beside ``path`` (same directory, so a hard link to it works), or ``path``
    itself when the twin would be over the unix socket path limit."""
    d = os.path.dirname(path)
    while True:
        twin = os.path.join(d, f".fakecri-{secrets.token_hex(4)}")
        if len(twin.encode()) > _SUN_PATH_MAX:
            return path
        if not os.path.lexists(twin):
            return twin


#: Longest unix socket path Linux accepts (sun_path is 108 bytes, NUL included).
_SUN_PATH_MAX = 107


class FakeCriServer:
    """gRPC server for one model on one unix socket. ``start``/``stop`` may be repeated (restarts)."""

    def __init__(self, model: RuntimeModel, socket_path: str, *, policy: CallPolicy | None = None,
                 socket_mode: int = 0o660, max_workers: int = 32) -> None:
        self.model = model
        self.socket_path = os.path.abspath(socket_path)
        self.policy = policy or CallPolicy()
        self.socket_mode = socket_mode
        self.max_workers = max_workers
        self.hub = EventHub(model, self.policy)
        self.handlers = Handlers(model, self.policy, self.hub)
        self._server: grpc.Server | None = None
        self._bound: SocketIdentity | None = None  # the socket this server created (stop removes only it)
        self.reaper = Reaper(model)  # applies process exits on a real clock
        self._streams_close_unavailable = model.flavor.events == "stream-then-closed"

    @property
    def addr(self) -> str:
        return f"unix://{self.socket_path}"

    # ---- plumbing ------------------------------------------------------------------------------

    def _unary(self, name: str, pb: ModuleType, api: str) -> Callable[[Any, Any, grpc.ServicerContext], Any]:
        handler = getattr(self.handlers, name)
        model, policy = self.model, self.policy

        def call(_self: Any, req: Any, context: grpc.ServicerContext) -> Any:
            _call.context = context
            target = _target(req)
            try:
                policy.before_call(name, api, target)
                model.settle()
                _call.taken_ns = None
                t0 = model.clock.now_ns()
                resp = handler(pb, api, req)
            except CriError as e:
                now = model.clock.now_ns()
                model.truth.record(RpcServed(name, api, now, now, e.code, target))
                context.abort(getattr(grpc.StatusCode, e.code), e.message)
            # dated when it read the model (lists and statuses), else when it began
            taken = _call.taken_ns or t0
            model.truth.record(RpcServed(name, api, taken, max(taken, model.clock.now_ns()), "OK", target))
            return resp

        call.__name__ = name
        return call

    def _events(self, pb: ModuleType, api: str) -> Callable[[Any, Any, grpc.ServicerContext], Iterator[Any]]:
        model, hub, policy = self.model, self.hub, self.policy
        mode = model.flavor.events

        def GetContainerEvents(_self: Any, req: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            _call.context = context
            try:
                policy.before_call("GetContainerEvents", api, None)
            except CriError as e:
                context.abort(getattr(grpc.StatusCode, e.code), e.message)
            t0 = model.clock.now_ns()
            if mode == "unimplemented":
                model.truth.record(RpcServed("GetContainerEvents", api, t0, t0, "UNIMPLEMENTED"))
                context.abort(grpc.StatusCode.UNIMPLEMENTED, "method GetContainerEvents not implemented")
            if mode == "error":
                model.truth.record(RpcServed("GetContainerEvents", api, t0, t0, "UNKNOWN"))
                context.abort(grpc.StatusCode.UNKNOWN, "pod events are not enabled in this runtime")
            if mode == "eof":
                model.truth.record(RpcServed("GetContainerEvents", api, t0, t0, "OK"))
                return
            with model.lock:  # subscribe under the model lock: no change falls between
                key, q = hub.subscribe(pb)
                t0 = model.clock.now_ns()
            # Headers right away, so a client can know it is subscribed before it lists (grpc-go
            # runtimes send them only with the first event; a client must not depend on this).
            context.send_initial_metadata(((SUBSCRIPTION_HEADER, str(key)),))
            closed = threading.Event()
            context.add_callback(lambda: (closed.set(), q.put(_STREAM_END)))
            code = "CANCELLED"
            try:
                while True:
                    item = q.get()
                    if item is _STREAM_END:
                        if closed.is_set():
                            return
                        if mode == "stream-then-closed":
                            code = "UNAVAILABLE"
                            context.abort(grpc.StatusCode.UNAVAILABLE, "subscription closed")
                        code = "OK"
                        return
                    yield item
            finally:
                hub.unsubscribe(key)
                model.truth.record(RpcServed("GetContainerEvents", api, t0, model.clock.now_ns(), code))

        return GetContainerEvents

    def _servicers(self, api: str) -> list[tuple[Any, Callable[[Any, grpc.Server], None]]]:
        mods = cri_api.api(api)
        pb, pb_grpc = mods.pb2, mods.pb2_grpc
        runtime_ns: dict[str, Any] = {n: self._unary(n, pb, api) for n in RUNTIME_RPCS + STREAMING_RPCS}
        if hasattr(pb, "GetEventsRequest"):
            runtime_ns["GetContainerEvents"] = self._events(pb, api)
        image_ns = {n: self._unary(n, pb, api) for n in IMAGE_RPCS}
        runtime_cls = type(f"Runtime_{api}", (pb_grpc.RuntimeServiceServicer,), runtime_ns)
        image_cls = type(f"Image_{api}", (pb_grpc.ImageServiceServicer,), image_ns)
        def add_runtime(servicer: Any, server: grpc.Server) -> None:
            pb_grpc.add_RuntimeServiceServicer_to_server(servicer, _BytesAnswers(server))

        return [(runtime_cls(), add_runtime), (image_cls(), pb_grpc.add_ImageServiceServicer_to_server)]

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeCriServer:
        claim_socket_path(self.socket_path)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="fakecri"),
            options=[("grpc.max_receive_message_length", MAX_RECV_BYTES),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.so_reuseport", 0)],
        )
        for api in self.model.flavor.apis:
            for servicer, add in self._servicers(api):
                add(servicer, server)
        server.add_generic_rpc_handlers((UnknownMethod(self.model.flavor.apis),))  # consulted last
        # gRPC removes whatever socket sits at its listening path when it shuts down -- also one that
        # someone else put there since. So it listens on a private name, and the public path is a
        # hard link to that socket, made only if the path is still free; stop removes the public
        # path only while it is still this socket (release_socket_path).
        private = _private_twin(self.socket_path)
        if server.add_insecure_port(f"unix://{private}") == 0:
            raise OSError(f"could not listen on {self.socket_path}")
        server.start()
        os.chmod(private, self.socket_mode)
        if private != self.socket_path:
            try:
                os.link(private, self.socket_path)
            except FileExistsError:
                server.stop(None)
                raise FileExistsError(f"{self.socket_path} was taken by someone else while this server started; "
                                      "refusing to replace it") from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(private)
        self._bound = socket_identity(self.socket_path)
        self._server = server
        self.reaper.start()
        log.info("fakecri %s serving %s on %s", self.model.flavor.name, "+".join(self.model.flavor.apis),
                 self.socket_path)
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving; open event streams end (UNAVAILABLE "subscription closed" where the flavour does)."""
        self.hub.close_all()
        self.reaper.stop()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        release_socket_path(self.socket_path, self._bound)
        self._bound = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    def __enter__(self) -> FakeCriServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
