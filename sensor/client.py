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
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

import cri_api
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot
from sensor.wire import (  # noqa: F401 - re-exported: the client's API since before sensor.wire
    CONTAINER_STATE_ENUM,
    CONTAINER_STATES,
    CONTAINERS,
    SANDBOX_STATES,
    SANDBOXES,
    UNKNOWN_EXIT,
    CriCallError,
    MalformedResponse,
    Tally,
    container_detail,
    container_snap,
    event_reader,
    note_state,
    parse,
    sandbox_snap,
)

#: ContainerStatus calls a poll keeps in flight at once (docs/performance.md, "First snapshot").
STATUS_IN_FLIGHT = 16


class ConnectError(Exception):
    """Could not reach or negotiate with the runtime. ``str()`` is the one line users see."""

    #: the CRI call that failed (Version), for the RPC error metric; ``None`` when none was made
    call: CriCallError | None = None


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
                 api_preference: Iterable[str] = cri_api.API_VERSIONS) -> None:
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
        #: Count of RPCs issued, by method (the load on the runtime: ``crisensor_cri_calls_total``).
        #: The poll, status, stream and lookup threads all issue calls: ``_counted`` takes a lock.
        self.rpc_count: dict[str, int] = {}
        self._count_lock = threading.Lock()
        #: What decoding dropped or read loosely, and malformed status answers (``sensor.wire``);
        #: the poller takes it after every poll.
        self.tally = Tally()
        self._raws: dict[str, Any] = {}  # path -> multicallable with raw answers, for _raw_channel
        self._raw_channel: grpc.Channel | None = None
        #: (channel, ListContainers, its request, ListPodSandbox, its request) for ``list_bytes``
        self._lists: tuple[Any, ...] | None = None
        self.cancelled = False  #: set by ``cancel``: every call fails at once with CANCELLED
        #: ContainerStatus calls in flight at once (``status``); 1 = one after the other.
        self.status_in_flight = STATUS_IN_FLIGHT
        #: IDs the last ``status`` call did not ask about because its ``until`` had passed.
        self.status_unasked = 0

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
            mods = cri_api.api(api)
            stub = mods.pb2_grpc.RuntimeServiceStub(self._channel)
            try:
                v = parse(mods.pb2.VersionResponse, self._call(self._unary(api, "Version", mods.pb2.VersionRequest),
                                                               mods.pb2.VersionRequest(version="0.1.0"), "Version"),
                          "Version")
            except CriCallError as e:
                last = e
                if e.code == "UNIMPLEMENTED":
                    continue
                self.close()
                err = ConnectError(f"connection error: Version: {e.code}: {e.details}")
                err.call = e
                raise err from None
            self._rt, self._pb = stub, mods.pb2
            self.info = RuntimeInfo(api, v.runtime_name, v.runtime_version, v.runtime_api_version)
            return self.info
        self.close()
        err = ConnectError(f"runtime speaks none of the CRI API versions {', '.join(self.api_preference)} "
                           f"({last.details if last else 'no answer'})")
        err.call = last
        raise err

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

    def _counted(self, method: str) -> None:
        """One more call of ``method`` in ``rpc_count``; a read-then-store from two threads at once
        would lose one."""
        with self._count_lock:
            self.rpc_count[method] = self.rpc_count.get(method, 0) + 1

    def _call(self, fn: Callable[..., Any], req: Any, method: str) -> Any:
        self._counted(method)
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

    def _unary(self, api: str, method: str, request_cls: Any, *, stream: bool = False) -> Any:
        """The multicallable for ``method`` that hands back the answer's bytes: every answer is
        decoded by ``sensor.wire`` (grpcio would log a traceback for bytes that do not parse)."""
        channel = self._channel
        if channel is None:
            raise ConnectError("not connected")
        if self._raw_channel is not channel:
            self._raws, self._raw_channel = {}, channel
        path = f"/runtime.{api}.RuntimeService/{method}"
        fn = self._raws.get(path)
        if fn is None:
            make = channel.unary_stream if stream else channel.unary_unary
            fn = self._raws[path] = make(path, request_serializer=request_cls.SerializeToString)
        return fn

    def _api(self) -> str:
        if self.info is None:
            raise ConnectError("not connected")
        return self.info.api

    def list_raw(self) -> tuple[Any, Any, int, int]:
        """ListContainers + ListPodSandbox; returns (sandboxes, containers, sent_ns, received_ns).

        Containers first: a container created between the two calls then finds its sandbox in
        the second answer (the reverse order would report it with no pod).
        """
        pb = self.pb
        sandboxes, containers, sent, received = self.list_bytes()
        return (parse(pb.ListPodSandboxResponse, sandboxes, SANDBOXES.method, nested=SANDBOXES.field).items,
                parse(pb.ListContainersResponse, containers, CONTAINERS.method, nested=CONTAINERS.field).containers,
                sent, received)

    def list(self) -> Snapshot:
        """Both lists, decoded (``sensor.wire``: what it drops is counted in ``tally``). Raises
        ``CriCallError`` -- ``MalformedResponse`` for an answer that does not decode."""
        pb = self.pb
        sandboxes, containers, sent, received = self.list_bytes()
        return Snapshot(tuple(SANDBOXES.decode(pb, sandboxes, self.tally)),
                        tuple(CONTAINERS.decode(pb, containers, self.tally)), sent, received)

    def list_bytes(self) -> tuple[bytes, bytes, int, int]:
        """``list_raw`` without decoding: (ListPodSandbox answer, ListContainers answer, sent_ns,
        received_ns), the answers as serialized bytes, for ``sensor.fastpath``."""
        lists = self._lists
        if lists is None or lists[0] is not self._channel:  # made once per connection: every poll asks this
            pb, api = self.pb, self._api()
            lists = self._lists = (
                self._channel,
                self._unary(api, "ListContainers", pb.ListContainersRequest), pb.ListContainersRequest(),
                self._unary(api, "ListPodSandbox", pb.ListPodSandboxRequest), pb.ListPodSandboxRequest())
        _, list_containers, containers_req, list_sandboxes, sandboxes_req = lists
        sent = self.now_ns()
        containers = self._call(list_containers, containers_req, "ListContainers")
        sandboxes = self._call(list_sandboxes, sandboxes_req, "ListPodSandbox")
        return sandboxes, containers, sent, self.now_ns()

    def lookup(self, cid: str) -> tuple[ContainerSnap | None, ContainerDetail | None, SandboxSnap | None]:
        """One container by ID, for ``sensor.lookup``: ``ListContainers`` filtered by the ID (it
        carries the sandbox ID, which ``ContainerStatus`` does not), ``ListPodSandbox`` filtered by
        its sandbox, and ``ContainerStatus`` for the exact times. ``(None, None, None)`` when the
        runtime does not have it (any more). Raises ``CriCallError``."""
        pb, api = self.pb, self._api()
        raw = self._call(self._unary(api, "ListContainers", pb.ListContainersRequest),
                         pb.ListContainersRequest(filter=pb.ContainerFilter(id=cid)), "ListContainers")
        container = next((c for c in CONTAINERS.decode(pb, raw, self.tally) if c.id == cid), None)
        if container is None:
            return None, None, None
        raw = self._call(self._unary(api, "ListPodSandbox", pb.ListPodSandboxRequest),
                         pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=container.sandbox_id)),
                         "ListPodSandbox")
        sandbox = next((s for s in SANDBOXES.decode(pb, raw, self.tally) if s.id == container.sandbox_id), None)
        details, _ = self.status([cid])
        return container, details.get(cid), sandbox

    def status(self, ids: Iterable[str], *, until: float | None = None, must: int = 0, tally: Tally | None = None,
               on_issued: Callable[[], None] | None = None
               ) -> tuple[dict[str, ContainerDetail | None], CriCallError | None]:
        """ContainerStatus per ID: NotFound -> ``None`` (removed since the list); other errors -> absent.

        Up to ``status_in_flight`` calls are in flight at once (``sensor.fanout``): a poll that needs
        hundreds of statuses (churn, a first snapshot with many exited containers) waits for the
        runtime's throughput, not for hundreds of round trips one after the other. Stops issuing at the
        first connection-level error (UNAVAILABLE, DEADLINE_EXCEEDED), cancels what is still in flight
        and returns that error with what it had, so the caller can still finish the poll with partial
        details. ``until`` (``time.monotonic()``): issue no call after it; IDs not asked by then are
        absent from the result, and counted in ``status_unasked``. The first ``must`` IDs are asked
        whatever the time (exits: their codes cannot be estimated). What decoding drops is counted in
        ``tally`` (default: ``self.tally``; another thread's calls count in their own). ``on_issued()``
        is called once no more calls will be issued (``sensor.fanout``).
        """
        import time

        from sensor.fanout import fan_out

        out: dict[str, ContainerDetail | None] = {}
        counts = self.tally if tally is None else tally
        pb = self.pb
        fn = self._unary(self._api(), "ContainerStatus", pb.ContainerStatusRequest)
        timeout = self.rpc_timeout_s

        ids = list(ids)
        issued = 0

        def start(cid: str) -> Any:
            nonlocal issued
            issued += 1
            self._counted("ContainerStatus")
            self._refuse_if_cancelled("ContainerStatus")
            try:
                return fn.future(pb.ContainerStatusRequest(container_id=cid), timeout=timeout)
            except ValueError:  # "Cannot invoke RPC on closed channel!": cancel() won the race
                self._refuse_if_cancelled("ContainerStatus")
                raise

        def take(cid: str, future: Any) -> CriCallError | None:
            try:
                raw = future.result()
            except grpc.RpcError as e:
                code = _code(e)
                if code == "NOT_FOUND":
                    out[cid] = None
                elif code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    return CriCallError("ContainerStatus", code, _details(e))
                elif code == "CANCELLED" and self.cancelled:
                    return CriCallError("ContainerStatus", "CANCELLED", "the sensor is stopping")
                return None
            try:
                st = parse(pb.ContainerStatusResponse, raw, "ContainerStatus", nested="status").status
            except MalformedResponse as e:
                counts.malformed[e.method] += 1  # as a failed call: the list's state stands
                return None
            note_state(counts, CONTAINER_STATE_ENUM, st.state)
            out[cid] = container_detail(st)
            return None

        more = None if until is None else (lambda: issued < must or time.monotonic() < until)
        try:
            err = fan_out(ids, start, take, self.status_in_flight, more=more, issued=on_issued)
        except CriCallError as e:  # cancelled before or while issuing
            err = e
        self.status_unasked = 0 if err is not None else len(ids) - issued
        return out, err

    def version(self) -> Any:
        pb = self.pb
        return parse(pb.VersionResponse, self._call(self._unary(self._api(), "Version", pb.VersionRequest),
                                                    pb.VersionRequest(), "Version"), "Version")

    def events(self) -> Any:
        """Open GetContainerEvents (v1 only). The caller iterates (each item an answer's bytes, which
        ``event_decoder()`` reads) and cancels."""
        if self.info is None or self.info.api != "v1":
            raise CriCallError("GetContainerEvents", "UNIMPLEMENTED", "runtime.v1alpha2 has no event stream")
        self._counted("GetContainerEvents")
        self._refuse_if_cancelled("GetContainerEvents")
        pb = self.pb
        try:
            return self._unary("v1", "GetContainerEvents", pb.GetEventsRequest, stream=True)(pb.GetEventsRequest())
        except ValueError:  # the channel was closed by cancel()
            self._refuse_if_cancelled("GetContainerEvents")
            raise

    def event_decoder(self) -> Callable[[bytes], Any]:
        """Reads one ``GetContainerEvents`` answer's bytes for ``stream_event`` (``wire.event_reader``:
        the event and the one status it is about) or raises ``MalformedResponse``. Bound to this
        connection's API (the reader thread may outlive it)."""
        return event_reader(self.pb)


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
