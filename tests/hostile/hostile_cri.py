"""A hostile CRI runtime under test control: real gRPC (runtime.v1) on a real unix socket.

Every method is a generic handler that returns raw bytes (no serializer), so a test can make any
answer anything: the honest message built from ``sandboxes``/``containers``, garbage, a truncated
message, a wrong wire type, a 50 MB list, or no answer at all (``hang``). ``faults[method]`` is a
queue of one-shot answers consumed before the honest one; ``always[method]`` replaces the honest
answer until removed. ``stop``/``start`` flap the socket. ``events`` feeds ``GetContainerEvents``
(served only with ``stream=True``): each item is an answer's bytes, ``None`` ends the stream.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import jsonschema

import cri_api

PB = cri_api.api("v1").pb2
SERVICE = "runtime.v1.RuntimeService"
INT64_MAX = 2**63 - 1
SCHEMA = json.loads((Path(__file__).parents[2] / "sensor" / "schema" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

#: Answers that are not the message: 0xff is field 31 with wire type 7 (no such wire type).
GARBAGE = b"\xff\xff\xff\xff\x00garbage"
#: Field 1 (the list) as a varint: protobuf skips it as unknown -- an "empty" list.
WRONG_WIRE_TYPE = b"\x08\x01"

Answer = Callable[[bytes], bytes]


def truncated(raw: bytes) -> bytes:
    """``raw`` without its last 3 bytes: its last length-delimited field ends short. (A cut at an entry
    boundary would be a valid, shorter list: no decoder can tell, only gRPC's framing.)"""
    return raw[:-3] if len(raw) > 3 else b"\x0a\x05"


def sandbox(sid: str, *, state: int = 0, created_at: int | None = None) -> Any:
    return PB.PodSandbox(id=sid, state=state, created_at=time.time_ns() if created_at is None else created_at,
                         metadata=PB.PodSandboxMetadata(name=f"pod-{sid}", namespace="default", uid=f"uid-{sid}"))


def container(cid: str, sid: str, *, state: int = 1, created_at: int | None = None) -> Any:
    return PB.Container(id=cid, pod_sandbox_id=sid, state=state,
                        created_at=time.time_ns() if created_at is None else created_at,
                        metadata=PB.ContainerMetadata(name=f"app-{cid}"), image=PB.ImageSpec(image="busybox"),
                        image_ref="sha256:1")


def event(cid: str, kind: int, *, status: Any = None, pod: Any = None, created_at: int | None = None) -> bytes:
    resp = PB.ContainerEventResponse(container_id=cid, container_event_type=kind,
                                     created_at=time.time_ns() if created_at is None else created_at)
    if status is not None:
        resp.containers_statuses.append(status)
    if pod is not None:
        resp.pod_sandbox_status.CopyFrom(pod)
    return resp.SerializeToString()


def status_of(c: Any, *, started_at: int | None = None, finished_at: int | None = None, exit_code: int = 0) -> Any:
    """``c``'s status: started at its ``created_at`` (if it ran), finished 1 ns later (if exited)."""
    if started_at is None:
        started_at = c.created_at if c.state in (1, 2) else 0
    if finished_at is None:
        finished_at = min(INT64_MAX, c.created_at + 1) if c.state == 2 else 0
    return PB.ContainerStatus(id=c.id, metadata=c.metadata, state=c.state, created_at=c.created_at,
                              started_at=started_at, finished_at=finished_at, exit_code=exit_code, image=c.image,
                              image_ref=c.image_ref)


def pod_status(s: Any) -> Any:
    return PB.PodSandboxStatus(id=s.id, metadata=s.metadata, state=s.state, created_at=s.created_at)


class HostileCri:
    """See the module docstring."""

    def __init__(self, path: str, *, stream: bool = False) -> None:
        self.path = path
        self.addr = f"unix://{path}"
        self.stream = stream
        self.sandboxes: list[Any] = []
        self.containers: list[Any] = []
        self.statuses: dict[str, Any] = {}  # ID -> ContainerStatus served instead of status_of(container)
        self.faults: dict[str, deque[Answer]] = {}
        self.always: dict[str, Answer] = {}
        self.calls: Counter[str] = Counter()
        self.events: queue.Queue[bytes | None] = queue.Queue()
        self.release = threading.Event()  # set on stop: hung handlers return
        self._server: grpc.Server | None = None
        self._lock = threading.Lock()

    # ---- control ---------------------------------------------------------------------------------

    def fault(self, method: str, *answers: Answer | bytes) -> None:
        """Queue one-shot answers for ``method`` (bytes are returned as they are)."""
        q = self.faults.setdefault(method, deque())
        for a in answers:
            q.append(a if callable(a) else (lambda _req, b=a: b))

    def hang(self, _request: bytes) -> bytes:
        """An answer that never comes (until the server stops)."""
        self.release.wait(60)
        return b""

    def honest(self, method: str) -> bytes:
        with self._lock:
            if method == "ListContainers":
                return PB.ListContainersResponse(containers=self.containers).SerializeToString()
            if method == "ListPodSandbox":
                return PB.ListPodSandboxResponse(items=self.sandboxes).SerializeToString()
        raise KeyError(method)

    def start(self) -> HostileCri:
        self.release.clear()
        server = grpc.server(ThreadPoolExecutor(max_workers=16),
                             options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        handlers = {m: grpc.unary_unary_rpc_method_handler(self._unary(m))
                    for m in ("Version", "ListContainers", "ListPodSandbox", "ContainerStatus")}
        if self.stream:
            handlers["GetContainerEvents"] = grpc.unary_stream_rpc_method_handler(self._events)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_insecure_port(f"unix:{self.path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self.release.set()
        self.events.put(None)
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        Path(self.path).unlink(missing_ok=True)
        self.events = queue.Queue()

    # ---- handlers --------------------------------------------------------------------------------

    def _unary(self, method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls[method] += 1
            q = self.faults.get(method)
            if q:
                return q.popleft()(request)
            if method in self.always:
                return self.always[method](request)
            if method == "Version":
                return PB.VersionResponse(version="0.1.0", runtime_name="hostile", runtime_version="1.0",
                                          runtime_api_version="v1").SerializeToString()
            if method == "ContainerStatus":
                cid = PB.ContainerStatusRequest.FromString(request).container_id
                with self._lock:
                    c = next((c for c in self.containers if c.id == cid and cid), None)
                    st = self.statuses.get(cid)
                if c is None:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"container {cid!r} not found")
                return PB.ContainerStatusResponse(status=st or status_of(c)).SerializeToString()
            return self.honest(method)

        return handle

    def _events(self, request: bytes, context: grpc.ServicerContext) -> Any:
        self.calls["GetContainerEvents"] += 1
        context.send_initial_metadata((("fakecri-subscription", "hostile"),))
        events = self.events
        while context.is_active():
            try:
                item = events.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                return
            yield item


def schema_errors(events: list[dict]) -> list[str]:
    """Every event that fails the sensor's own JSON Schema, with the reason."""
    return [f"{e.get('seq')}: {err.message}" for e in events for err in VALIDATOR.iter_errors(e)]


def check_events(events: list[dict], *, served: set[str], alive: set[str]) -> None:
    """The hostile suite's invariants: schema-valid; no event for an ID never served as valid; no
    ``exited``/``destroyed`` (or sandbox end) for an object still served; ``seq`` increasing."""
    assert not schema_errors(events), schema_errors(events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "seq not strictly increasing"
    for e in events:
        oid = e.get("container_id") if e["type"].startswith("container.") else e.get("sandbox_id")
        if e["type"].startswith(("container.", "sandbox.")):
            assert oid in served, f"event for an ID never served as valid: {e}"
        if e["type"] in ("container.exited", "container.destroyed", "sandbox.destroyed"):
            assert oid not in alive, f"phantom: {e['type']} for {oid}, which the runtime still serves"
