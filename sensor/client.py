"""The CRI client: a thin gRPC shell that hands the pure core plain snapshots.

Why it looks like this:
* API negotiation: ``Version`` on runtime.v1 first; UNIMPLEMENTED means the runtime only speaks
  runtime.v1alpha2 (containerd 1.5, CRI-O before 1.26), so try that.
* Every RPC has a deadline (``rpc_timeout``); a list that fails or times out raises
  ``CriUnavailable``/``CriCallError`` and is never read as an empty runtime.
* Responses up to ``max_recv_bytes`` (16 MiB by default, like the kubelet) are accepted: a
  10,000-container list is ~6 MB, over gRPC's 4 MiB default.
* The connection goes through ``HandshakeShim`` when ``handshake`` is ``off`` or ``auto`` (old
  CRI-O never sends its HTTP/2 preface, and grpcio always waits for it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

import protos
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot

CONTAINER_STATES = ("created", "running", "exited", "unknown")
SANDBOX_STATES = ("ready", "notready")
#: CRI-O reports -1 when it does not know a container's exit code.
UNKNOWN_EXIT = -1


class CriCallError(Exception):
    """An RPC failed. ``code`` is the gRPC status-code name; ``method`` the RPC."""

    def __init__(self, method: str, code: str, details: str) -> None:
        super().__init__(f"{method}: {code}: {details}")
        self.method = method
        self.code = code
        self.details = details


class ConnectError(Exception):
    """Could not reach or negotiate with the runtime. ``str()`` is the one line users see."""


@dataclass(frozen=True)
class RuntimeInfo:
    api: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


def socket_path(addr: str) -> str:
    """``unix:///run/x.sock`` -> ``/run/x.sock``."""
    return addr.removeprefix("unix://") if addr.startswith("unix://") else addr


def _code(e: grpc.RpcError) -> str:
    code = e.code() if hasattr(e, "code") else None
    return code.name if code is not None else "UNKNOWN"


def _details(e: grpc.RpcError) -> str:
    return (e.details() if hasattr(e, "details") else "") or ""


class CriClient:
    """One connection to a CRI runtime. Not thread-safe: the poll loop owns it."""

    def __init__(self, addr: str, *, rpc_timeout_s: float = 2.0, max_recv_bytes: int = 16 * 1024 * 1024,
                 handshake: str = "require", clock: Callable[[], int] | None = None,
                 api_preference: Iterable[str] = protos.API_VERSIONS) -> None:
        import time

        self.addr = addr
        self.rpc_timeout_s = rpc_timeout_s
        self.max_recv_bytes = max_recv_bytes
        self.handshake = handshake
        self.now_ns = clock or time.time_ns
        self.api_preference = tuple(api_preference)
        self.info: RuntimeInfo | None = None
        self._channel: grpc.Channel | None = None
        self._shim: Any = None
        self._rt: Any = None
        self._pb: Any = None
        #: Count of RPCs issued, by method (load on the runtime; metrics read it).
        self.rpc_count: dict[str, int] = {}
        self._raw_lists: tuple[Any, Any, Any] | None = None  # (channel, ListContainers, ListPodSandbox) undecoded
        self.cancelled = False  #: set by ``cancel``: every call fails at once with CANCELLED

    # ---- connection --------------------------------------------------------------------------

    def _open_channel(self) -> grpc.Channel:
        target = self.addr
        if self.handshake in ("off", "auto"):
            from sensor.shim import HandshakeShim

            self._shim = HandshakeShim(socket_path(self.addr), mode=self.handshake).start()
            target = self._shim.addr
        options = [
            ("grpc.max_receive_message_length", self.max_recv_bytes),
            ("grpc.max_send_message_length", self.max_recv_bytes),
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        return grpc.insecure_channel(target, options=options)

    def connect(self) -> RuntimeInfo:
        """Open the channel and negotiate the API version. Raises ``ConnectError``."""
        self.close()
        if self.cancelled:
            raise ConnectError("not connecting: the sensor is stopping")
        probe_socket(socket_path(self.addr))
        self._channel = self._open_channel()
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.rpc_timeout_s)
        except grpc.FutureTimeoutError:
            self.close()
            hint = ""
            if self.handshake == "require":
                hint = (" (hint: if the runtime is CRI-O older than 1.14.11/1.15.2/1.16 it withholds its HTTP/2 "
                        "preface; set GRPC_GO_REQUIRE_HANDSHAKE=off or crisensor.handshake: auto)")
            raise ConnectError(f"connection error context deadline exceeded{hint}") from None
        last: CriCallError | None = None
        for api in self.api_preference:
            mods = protos.api(api)
            stub = mods.pb2_grpc.RuntimeServiceStub(self._channel)
            try:
                v = self._call(stub.Version, mods.pb2.VersionRequest(version="0.1.0"), "Version")
            except CriCallError as e:
                last = e
                if e.code == "UNIMPLEMENTED":
                    continue
                self.close()
                raise ConnectError(f"connection error: Version: {e.code}: {e.details}") from None
            self._rt, self._pb = stub, mods.pb2
            self.info = RuntimeInfo(api, v.runtime_name, v.runtime_version, v.runtime_api_version)
            return self.info
        self.close()
        raise ConnectError(f"runtime speaks none of the CRI API versions {', '.join(self.api_preference)} "
                           f"({last.details if last else 'no answer'})")

    def cancel(self) -> None:
        """Shutdown, from any thread: end every RPC in flight now (closing the channel cancels them)
        and fail every later one at once with CANCELLED, so that the poll loop -- even in the middle
        of thousands of ContainerStatus calls -- returns without waiting for the runtime."""
        self.cancelled = True
        channel = self._channel
        if channel is not None:
            channel.close()

    def _refuse_if_cancelled(self, method: str) -> None:
        if self.cancelled:
            raise CriCallError(method, "CANCELLED", "the sensor is stopping")

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._shim is not None:
            self._shim.stop()
            self._shim = None
        self._rt = self._pb = None

    @property
    def connected(self) -> bool:
        return self._rt is not None

    # ---- calls -------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], req: Any, method: str) -> Any:
        self.rpc_count[method] = self.rpc_count.get(method, 0) + 1
        self._refuse_if_cancelled(method)
        try:
            return fn(req, timeout=self.rpc_timeout_s)
        except grpc.RpcError as e:
            raise CriCallError(method, _code(e), _details(e)) from None
        except ValueError:  # "Cannot invoke RPC on closed channel!": cancel() won the race
            self._refuse_if_cancelled(method)
            raise

    @property
    def pb(self) -> Any:
        if self._pb is None:
            raise ConnectError("not connected")
        return self._pb

    def list_raw(self) -> tuple[Any, Any, int, int]:
        """ListContainers + ListPodSandbox; returns (sandboxes, containers, sent_ns, received_ns).

        Containers first: a container created between the two calls then finds its sandbox in
        the second answer (the reverse order would report it with no pod).
        """
        pb = self.pb
        sent = self.now_ns()
        containers = self._call(self._rt.ListContainers, pb.ListContainersRequest(), "ListContainers").containers
        sandboxes = self._call(self._rt.ListPodSandbox, pb.ListPodSandboxRequest(), "ListPodSandbox").items
        return sandboxes, containers, sent, self.now_ns()

    def list(self) -> Snapshot:
        sandboxes, containers, sent, received = self.list_raw()
        return Snapshot(
            sandboxes=tuple(sandbox_snap(s) for s in sandboxes),
            containers=tuple(container_snap(c) for c in containers),
            sent_ns=sent,
            received_ns=received,
        )

    def list_bytes(self) -> tuple[bytes, bytes, int, int]:
        """``list_raw`` without decoding: (ListPodSandbox answer, ListContainers answer, sent_ns,
        received_ns), the answers as serialized bytes, for ``sensor.fastpath``."""
        pb = self.pb
        raw = self._raw_lists
        if raw is None or raw[0] is not self._channel:
            assert self._channel is not None and self.info is not None
            service = f"/runtime.{self.info.api}.RuntimeService/"
            raw = self._raw_lists = (
                self._channel,
                self._channel.unary_unary(service + "ListContainers",
                                          request_serializer=pb.ListContainersRequest.SerializeToString),
                self._channel.unary_unary(service + "ListPodSandbox",
                                          request_serializer=pb.ListPodSandboxRequest.SerializeToString),
            )
        sent = self.now_ns()
        containers = self._call(raw[1], pb.ListContainersRequest(), "ListContainers")
        sandboxes = self._call(raw[2], pb.ListPodSandboxRequest(), "ListPodSandbox")
        return sandboxes, containers, sent, self.now_ns()

    def status(self, ids: Iterable[str]) -> tuple[dict[str, ContainerDetail | None], CriCallError | None]:
        """ContainerStatus per ID: NotFound -> ``None`` (removed since the list); other errors -> absent.

        Stops at the first connection-level error (UNAVAILABLE, DEADLINE_EXCEEDED) and returns it
        with what it had, so the caller can still finish the poll with partial details.
        """
        out: dict[str, ContainerDetail | None] = {}
        pb = self.pb
        for cid in ids:
            if self.cancelled:  # shutdown: do not start thousands of calls that would fail anyway
                return out, CriCallError("ContainerStatus", "CANCELLED", "the sensor is stopping")
            try:
                st = self._call(self._rt.ContainerStatus, pb.ContainerStatusRequest(container_id=cid),
                                "ContainerStatus").status
            except CriCallError as e:
                if e.code == "NOT_FOUND":
                    out[cid] = None
                elif e.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    return out, e
                continue
            out[cid] = container_detail(st)
        return out, None

    def version(self) -> Any:
        return self._call(self._rt.Version, self.pb.VersionRequest(), "Version")

    def events(self) -> Any:
        """Open GetContainerEvents (v1 only). The caller iterates and cancels."""
        if self.info is None or self.info.api != "v1":
            raise CriCallError("GetContainerEvents", "UNIMPLEMENTED", "runtime.v1alpha2 has no event stream")
        self.rpc_count["GetContainerEvents"] = self.rpc_count.get("GetContainerEvents", 0) + 1
        self._refuse_if_cancelled("GetContainerEvents")
        try:
            return self._rt.GetContainerEvents(self.pb.GetEventsRequest())
        except ValueError:  # the channel was closed by cancel()
            self._refuse_if_cancelled("GetContainerEvents")
            raise


def probe_socket(path: str) -> None:
    """Fail fast, with the real cause, where gRPC would only say "deadline exceeded"."""
    import errno
    import socket
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConnectError(f"connection error: socket {path} does not exist (is the runtime running? "
                           "check crisensor.addr)") from None
    except PermissionError:
        raise ConnectError(f"connection error: permission denied reaching {path} "
                           "(run 'crisensor doctor' for the fix)") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ConnectError(f"connection error: {path} is not a unix socket (check crisensor.addr)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise ConnectError(f"connection error: permission denied connecting to {path} "
                               "(run 'crisensor doctor' for the fix)") from None
        if e.errno == errno.ECONNREFUSED:
            raise ConnectError(f"connection error: nothing is listening on {path} (stale socket: "
                               "is the runtime running?)") from None
        raise ConnectError(f"connection error: cannot connect to {path}: {e.strerror}") from None
    finally:
        probe.close()


def sandbox_snap(s: Any) -> SandboxSnap:
    md = s.metadata
    return SandboxSnap(id=s.id, name=md.name, namespace=md.namespace, uid=md.uid, attempt=md.attempt,
                       state=SANDBOX_STATES[s.state] if 0 <= s.state < 2 else "notready",
                       created_at=s.created_at, labels=dict(s.labels))


def container_snap(c: Any) -> ContainerSnap:
    return ContainerSnap(id=c.id, sandbox_id=c.pod_sandbox_id, name=c.metadata.name, attempt=c.metadata.attempt,
                         image=c.image.image, image_ref=c.image_ref,
                         state=CONTAINER_STATES[c.state] if 0 <= c.state < 4 else "unknown",
                         created_at=c.created_at, labels=dict(c.labels))


def container_detail(st: Any) -> ContainerDetail:
    exited = st.state == 2
    code: int | None = st.exit_code if exited and st.exit_code != UNKNOWN_EXIT else None
    return ContainerDetail(id=st.id, started_at=st.started_at, finished_at=st.finished_at, exit_code=code,
                           reason=(st.reason or None) if exited else None)
