"""Ground truth: every transition the fake runtime made, with its exact time.

The verifier judges a sensor against these records, so they are the fake's half of the contract
(the sensor's half is the event schema). One record per line when written as JSON lines; field
names follow the event schema where the concept is the same (``time_ns``, ``container_id``...).

Record kinds (``kind`` field):

``container``  transition in {created, running, exited, destroyed}; carries metadata on ``created``
               and ``exit_code``/``reason`` on ``exited``.
``sandbox``    transition in {ready, notready, destroyed}.
``runtime``    transition in {down, up}: the runtime restarted (``state_kept`` says whether
               containers survived).
``fault``      a fault or quirk window opening (``phase: start``) or closing (``phase: stop``).
``rpc``        one served RPC: method, API version, the instant its answer was taken (``time_ns``),
               when it was sent (``end_ns``), the gRPC status code name, and ``target`` (the
               container or sandbox ID of a per-object call such as ContainerStatus).
``process``    a process (exec) event inside a container, for the analytics stage.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal

from sensor.output import OutputError, stream_name

CONTAINER_TRANSITIONS = ("created", "running", "exited", "destroyed")
SANDBOX_TRANSITIONS = ("ready", "notready", "destroyed")


@dataclass(frozen=True)
class PodRef:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class ContainerTransition:
    container_id: str
    transition: str
    time_ns: int
    sandbox_id: str
    name: str = ""
    attempt: int = 0
    image: str = ""
    image_ref: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    pod: PodRef | None = None
    exit_code: int | None = None
    reason: str | None = None
    #: when List/Status/the stream first showed it, if later than ``time_ns`` (state lag, or a
    #: scenario step the real-time timeline applied late: ``RuntimeModel.backdated``); None: at
    #: once. Records are written in the order answers could show them, so such a record follows
    #: others with later ``time_ns``.
    shown_ns: int | None = None
    kind: Literal["container"] = "container"


@dataclass(frozen=True)
class SandboxTransition:
    sandbox_id: str
    transition: str
    time_ns: int
    pod: PodRef | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: as ``ContainerTransition.shown_ns`` (a scenario step the real-time timeline applied late)
    shown_ns: int | None = None
    kind: Literal["sandbox"] = "sandbox"


@dataclass(frozen=True)
class RuntimeTransition:
    transition: Literal["down", "up"]
    time_ns: int
    state_kept: bool = True
    kind: Literal["runtime"] = "runtime"


@dataclass(frozen=True)
class FaultWindow:
    fault: str
    phase: Literal["start", "stop"]
    time_ns: int
    params: dict[str, Any] = field(default_factory=dict)
    kind: Literal["fault"] = "fault"


@dataclass(frozen=True)
class RpcServed:
    method: str
    api: str
    time_ns: int
    end_ns: int
    code: str
    target: str | None = None
    kind: Literal["rpc"] = "rpc"


@dataclass(frozen=True)
class ProcessEvent:
    container_id: str
    time_ns: int
    deliver_ns: int
    pid: int
    argv: tuple[str, ...] = ()
    kind: Literal["process"] = "process"


TruthRecord = ContainerTransition | SandboxTransition | RuntimeTransition | FaultWindow | RpcServed | ProcessEvent

_KINDS: dict[str, type] = {
    "container": ContainerTransition,
    "sandbox": SandboxTransition,
    "runtime": RuntimeTransition,
    "fault": FaultWindow,
    "rpc": RpcServed,
    "process": ProcessEvent,
}


def to_dict(record: TruthRecord, seq: int) -> dict[str, Any]:
    """The JSON form of a record: ``seq`` first, then ``kind``, then the record's own fields."""
    body = asdict(record)
    if body.get("shown_ns", 0) is None:
        del body["shown_ns"]  # only lagged transitions carry it
    out: dict[str, Any] = {"seq": seq, "kind": body.pop("kind")}
    if "argv" in body:
        body["argv"] = list(body["argv"])
    out.update(body)
    return out


def to_json(record: TruthRecord, seq: int) -> str:
    return json.dumps(to_dict(record, seq), sort_keys=False, separators=(",", ":"))


def from_dict(data: dict[str, Any]) -> tuple[int, TruthRecord]:
    """Inverse of :func:`to_dict`; raises ``ValueError`` naming what is wrong."""
    data = dict(data)
    seq = data.pop("seq", None)
    kind = data.pop("kind", None)
    cls = _KINDS.get(kind)  # type: ignore[arg-type]
    if cls is None or not isinstance(seq, int):
        raise ValueError(f"not a truth record (need int 'seq' and 'kind' in {sorted(_KINDS)}): {data!r}")
    if data.get("pod") is not None:
        data["pod"] = PodRef(**data["pod"])
    if "argv" in data:
        data["argv"] = tuple(data["argv"])
    try:
        return seq, cls(**data)
    except TypeError as exc:
        raise ValueError(f"bad {kind} truth record: {exc}") from None


def read_jsonl(lines: Iterable[str]) -> list[TruthRecord]:
    """Parse a ``--truth`` file's lines; errors name the line number."""
    out: list[TruthRecord] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(from_dict(json.loads(line))[1])
        except (ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"truth line {lineno}: {exc}") from None
    return out


class Truth:
    """Append-only, thread-safe recorder of ground truth.

    Listeners are called synchronously under the recorder's lock, in record order; the gRPC
    event stream uses this to fan transitions out with no gap between "recorded" and "streamed".
    ``record_rpcs=False`` drops ``rpc`` records (huge soak runs do not need them).
    """

    def __init__(self, sink: IO[str] | None = None, *, record_rpcs: bool = True) -> None:
        self._records: list[TruthRecord] = []
        self._lock = threading.Lock()
        self._sink = sink
        self._listeners: list[Callable[[TruthRecord], None]] = []
        self.record_rpcs = record_rpcs
        #: The sink's first write error (records are still kept in memory; later ones are counted
        #: in its ``unwritten``). ``record`` runs in gRPC handlers and the timeline thread, so it
        #: never raises for the sink: ``on_sink_failure`` (``fakecri serve`` stops) is told once.
        self.sink_failure: OutputError | None = None
        self.on_sink_failure: Callable[[OutputError], None] | None = None

    def record(self, rec: TruthRecord) -> None:
        if isinstance(rec, RpcServed) and not self.record_rpcs:
            return
        failed: OutputError | None = None
        with self._lock:
            seq = len(self._records)
            self._records.append(rec)
            if self._sink is not None:
                if self.sink_failure is None:
                    try:
                        self._sink.write(to_json(rec, seq) + "\n")
                        self._sink.flush()
                    except (OSError, OutputError) as e:
                        err = e.error if isinstance(e, OutputError) else e
                        failed = self.sink_failure = OutputError(stream_name(self._sink), err, unwritten=1,
                                                                 what="truth", unit="records")
                else:
                    self.sink_failure.unwritten = (self.sink_failure.unwritten or 0) + 1
            for listener in list(self._listeners):
                listener(rec)
        if failed is not None and self.on_sink_failure is not None:
            self.on_sink_failure(failed)

    def subscribe(self, listener: Callable[[TruthRecord], None]) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def records(self) -> list[TruthRecord]:
        with self._lock:
            return list(self._records)

    def __iter__(self) -> Iterator[TruthRecord]:
        return iter(self.records())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def dumps(self) -> str:
        """All records as JSON lines (what ``--truth FILE`` would hold)."""
        with self._lock:
            return "".join(to_json(r, i) + "\n" for i, r in enumerate(self._records))
