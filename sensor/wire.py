"""The runtime's bytes in, plain values out: every CRI answer the sensor reads is decoded here.

Theory of operation
-------------------
The sensor never lets grpcio deserialize an answer: grpcio logs a traceback for bytes that do not
parse and reports them as a gRPC ``INTERNAL`` error, indistinguishable from a runtime's own. Every
call is made with raw bytes out, and this module decodes them (pure: bytes and protobuf classes
in, values or one exception out), so a hostile or buggy runtime meets three rules:

Rule 1 -- bytes that are not the message are a failed call. ``parse`` raises ``MalformedResponse``
(a ``CriCallError`` with code ``MALFORMED``) for bytes protobuf cannot parse, and also for a
*known* field sent with the wrong wire type: protobuf keeps such a field as an unknown field and
carries on, so ``ListContainers`` answered with field 1 as a varint would parse as an empty list
-- "everything is gone". Unknown field *numbers* are a newer runtime's additions and are ignored.
The check covers the answer and each list entry (of an event, the status it is about; the pod's
other containers' statuses are not read: ``event_reader``), not deeper messages: a
wrong wire type deeper down only blanks a metadata field (an empty name, no image), never an ID,
a state or a time.

Rule 2 -- records the sensor cannot attribute are dropped, counted. A container or sandbox with an
empty ``id`` (no event may name it: the event schema requires an ID) and any later record repeating
an ID already listed in the same answer (the first wins, as in ``DiffEngine.begin``) are left out
of the snapshot; ``Tally`` counts them for the poller's metrics and log.

Rule 3 -- enum values the sensor does not know are read as kubelet reads them, and counted. CRI
enums are open (proto3): a newer runtime may send a ``ContainerState`` past ``CONTAINER_UNKNOWN``,
a ``PodSandboxState`` past ``SANDBOX_NOTREADY``, a ``ContainerEventType`` past ``DELETED``. A
container or sandbox state it does not know is ``unknown`` (for containers CRI's own "the runtime
cannot say"), which announces nothing new (``sensor.lifecycle``): not ``notready``, since a later
``ready`` would then read as a regression -- ID reuse -- and forge a destroyed sandbox that still
exists. A stream event type it does not know is not applied at all (``UnusableEvent``: the poller
lists instead). Each one is counted in ``Tally.unknown`` under its enum's name and value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from sys import intern
from typing import Any, Generic, TypeVar

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap

__all__ = [
    "CONTAINERS",
    "CONTAINER_STATES",
    "SANDBOXES",
    "SANDBOX_STATES",
    "UNKNOWN_EXIT",
    "CriCallError",
    "EventView",
    "ListKind",
    "MalformedResponse",
    "Tally",
    "UnusableEvent",
    "container_detail",
    "container_snap",
    "event_reader",
    "parse",
    "sandbox_snap",
    "split_entries",
    "varint",
]

CONTAINER_STATES = ("created", "running", "exited", "unknown")
SANDBOX_STATES = ("ready", "notready")
#: CRI-O reports -1 when it does not know a container's exit code.
UNKNOWN_EXIT = -1
#: The enum names counted in ``Tally.unknown`` (and the metric's ``enum`` label).
CONTAINER_STATE_ENUM = "ContainerState"
SANDBOX_STATE_ENUM = "PodSandboxState"
EVENT_TYPE_ENUM = "ContainerEventType"

_WIRE_TYPES = ("varint", "64-bit", "length-delimited", "start-group", "end-group", "32-bit")


class CriCallError(Exception):
    """An RPC failed. ``code`` is the gRPC status-code name; ``method`` the RPC."""

    def __init__(self, method: str, code: str, details: str) -> None:
        super().__init__(f"{method}: {code}: {details}")
        self.method = method
        self.code = code
        self.details = details


class MalformedResponse(CriCallError):
    """The runtime answered with bytes that are not the expected message (rule 1); a failed call."""

    def __init__(self, method: str, details: str) -> None:
        super().__init__(method, "MALFORMED", details)


class UnusableEvent(Exception):
    """A stream event the sensor cannot apply (an unknown event type, an empty ID). ``reason`` is
    ``unknown_enum`` or ``empty_id``; for ``unknown_enum``, ``enum``/``value`` name what was unknown."""

    def __init__(self, reason: str, message: str, enum: str = "", value: int = 0) -> None:
        super().__init__(message)
        self.reason, self.enum, self.value = reason, enum, value


@dataclass
class Tally:
    """What decoding dropped or read loosely since the last ``take`` (rules 2 and 3): counts only,
    the poller turns them into metrics and log lines."""

    #: (kind: container | sandbox, reason: empty_id | duplicate_id) -> records dropped
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (enum name, value) -> records carrying that value
    unknown: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: method -> malformed answers that did not fail a list (``ContainerStatus``: that call failed)
    malformed: Counter[str] = field(default_factory=Counter)

    def take(self) -> Tally:
        """Hand over the counts and start again from zero."""
        out = Tally(self.dropped, self.unknown, self.malformed)
        self.dropped, self.unknown, self.malformed = Counter(), Counter(), Counter()
        return out

    def merge(self, other: Tally) -> None:
        self.dropped.update(other.dropped)
        self.unknown.update(other.unknown)
        self.malformed.update(other.malformed)

    def __bool__(self) -> bool:
        return bool(self.dropped or self.unknown or self.malformed)


# --- rule 1: parsing ------------------------------------------------------------------------------------


def _check_wire_types(msg: Any, method: str) -> None:
    """Raise ``MalformedResponse`` if a known field of ``msg`` came with the wrong wire type."""
    unknown = UnknownFieldSet(msg)
    if not len(unknown):
        return
    known = msg.DESCRIPTOR.fields_by_number
    for f in unknown:
        if f.field_number in known:
            wt = _WIRE_TYPES[f.wire_type] if 0 <= f.wire_type < len(_WIRE_TYPES) else str(f.wire_type)
            raise MalformedResponse(method, f"{msg.DESCRIPTOR.name}.{known[f.field_number].name} "
                                            f"(field {f.field_number}) sent as {wt}")


def parse(cls: Any, raw: bytes, method: str, *, nested: str | None = None) -> Any:
    """``cls.FromString(raw)``, or ``MalformedResponse`` (rule 1). ``nested``: a message field (or
    repeated message field) whose message(s) are checked too: the list's entries, the status."""
    msg = _decode(cls, raw, method)
    _check_wire_types(msg, method)
    if nested is not None:
        inner = getattr(msg, nested)
        for item in (inner,) if isinstance(inner, Message) else inner:
            _check_wire_types(item, method)
    return msg


def _entries_class() -> Any:
    """A message with ``repeated bytes entries = 1``: parses any message's field-1 entries unparsed."""
    fdp = descriptor_pb2.FileDescriptorProto(name="sensor_wire_entries.proto", package="sensor.wire",
                                             syntax="proto3")
    msg = fdp.message_type.add(name="Entries")
    msg.field.add(name="entries", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
                  label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("sensor.wire.Entries"))


_Entries = _entries_class()


def split_entries(raw: bytes, method: str = "list") -> list[bytes]:
    """The serialized field-1 entries of a list answer, in order (each entry's bytes, no tag/length).
    ``MalformedResponse`` where the answer does not parse or field 1 has the wrong wire type."""
    try:
        msg = _Entries.FromString(raw)
    except Exception as e:
        raise MalformedResponse(method, f"list answer does not decode ({type(e).__name__})") from None
    unknown = UnknownFieldSet(msg)
    if len(unknown) and any(f.field_number == 1 for f in unknown):
        raise MalformedResponse(method, "the list field (field 1) has the wrong wire type")
    return list(msg.entries)


# --- conversion (rule 3) --------------------------------------------------------------------------------


# Strings that repeat across records (sandbox IDs, images, names, label keys, and label values such
# as a pod's name, namespace and UID, the same on every container of the pod) are interned: one
# copy per distinct string instead of one per record -- ~40% of a tracked container's memory
# (docs/performance.md, "Memory"). Interned strings are freed with their last user.


def _head_classes() -> Any:
    """Messages that read a few fields of a real one and leave the rest as bytes (or unread): the same
    wire format, so one C parse gives just those. ``EventHead`` is ``ContainerEventResponse`` with
    its two message fields left as bytes: the event's own fields, the pod sandbox status unparsed and
    each container status unparsed; its field types match the real message's wire types, so
    ``_check_wire_types`` on a head catches what it catches on the real message. ``StatusId`` reads a
    status's ID; ``ContainerHead`` a list entry's ID and state (``exited_ids``)."""
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="sensor_wire_event_head.proto", package="sensor.wire",
                                             syntax="proto3")
    msg = fdp.message_type.add(name="EventHead")
    for name, number, kind, label in (("container_id", 1, f.TYPE_STRING, f.LABEL_OPTIONAL),
                                      ("container_event_type", 2, f.TYPE_INT32, f.LABEL_OPTIONAL),
                                      ("created_at", 3, f.TYPE_INT64, f.LABEL_OPTIONAL),
                                      # repeated: a message field sent twice is merged, bytes would not be
                                      ("pod_sandbox_status", 4, f.TYPE_BYTES, f.LABEL_REPEATED),
                                      ("containers_statuses", 5, f.TYPE_BYTES, f.LABEL_REPEATED)):
        msg.field.add(name=name, number=number, type=kind, label=label)
    ids = fdp.message_type.add(name="StatusId")
    ids.field.add(name="id", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    head = fdp.message_type.add(name="ContainerHead")
    head.field.add(name="id", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    head.field.add(name="state", number=6, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"sensor.wire.{name}"))
                 for name in ("EventHead", "StatusId", "ContainerHead"))


_EventHead, _StatusId, _ContainerHead = _head_classes()
_EXITED = CONTAINER_STATES.index("exited")  # ContainerState.CONTAINER_EXITED


def exited_ids(entries: Iterable[bytes]) -> list[str]:
    """The IDs of the ``ListContainers`` entries that show ``CONTAINER_EXITED``, from those two fields
    alone: a hint that lets a poll ask exits' statuses before it decodes the entries (sensor.poller).
    The decoding that follows judges the entries; one that does not parse here is left out."""
    out: list[str] = []
    parse = _ContainerHead.FromString
    for entry in entries:
        try:
            head = parse(entry)
        except Exception:  # a hint: decoding the entry reports what is wrong with it
            continue
        if head.state == _EXITED and head.id:
            out.append(head.id)
    return out


@dataclass(frozen=True, slots=True)
class EventView:
    """What ``stream.stream_event`` reads of a ``ContainerEventResponse``, as ``event_reader`` decodes
    it: the event's own fields, its pod sandbox status, and of ``containers_statuses`` only the status
    of the container the event is about (none, or one)."""

    container_id: str
    container_event_type: int
    created_at: int
    pod_sandbox_status: Any  # the API's PodSandboxStatus (empty when absent, as protobuf reads it)
    containers_statuses: tuple[Any, ...]
    has_sandbox: bool

    def HasField(self, name: str) -> bool:  # protobuf's name: stream_event reads either
        if name != "pod_sandbox_status":
            raise ValueError(f"EventView has no optional field {name!r}")
        return self.has_sandbox


def event_reader(pb: Any, method: str = "GetContainerEvents") -> Callable[[bytes], EventView]:
    """Decode one ``GetContainerEvents`` answer for ``stream_event``, or raise ``MalformedResponse``.

    Why not the whole message: containerd sends with every event the statuses of *all* the pod's
    containers, and the sensor uses one. On a pod of 60 containers one event was ~29 KB; parsing
    and checking every status cost ~130 us, so at 1,000 container lifecycles a second the reader
    fell seconds behind its stream. Here the event's fields are parsed with the statuses left as
    bytes, the status about ``container_id`` is found by its leading ``id`` field (how protobuf
    encoders write it: field 1 first) and only that one is parsed and checked (rule 1). A status the
    event is not about is not read, so its bytes cannot make the event unusable. Where the ID's bytes
    are not where that shortcut expects them (another field order, an ID field that comes twice --
    protobuf keeps the last --, the ID's bytes inside another status), each status's ID is parsed
    and the first match wins, as in protobuf's reading of the whole message. Where the ID's bytes
    appear in no status, none is about it; an encoder would have to write the ID field's length in
    more bytes than needed to hide one (no protobuf encoder does). ``tests/sensor/test_wire.py``
    holds this to the whole parse."""
    status_cls, sandbox_cls = pb.ContainerStatus, pb.PodSandboxStatus

    def read(raw: bytes) -> EventView:
        head = parse(_EventHead, raw, method)
        cid = head.container_id
        statuses = head.containers_statuses
        found: tuple[Any, ...] = ()
        if statuses:
            key = cid.encode()
            prefix = b"\x0a" + varint(len(key)) + key  # the ID field as encoders write it
            others = raw.count(prefix) - raw.startswith(prefix)  # past the event's own leading ID field
            status = None
            if others == 1:  # one status holds those bytes: the one, if they lead it (checked below)
                at = list(map(bytes.startswith, statuses, repeat(prefix)))
                if True in at:
                    status = parse(status_cls, statuses[at.index(True)], method)
            if status is not None and status.id == cid:
                found = (status,)
            elif others:  # another field order, or an ID field that comes twice (protobuf keeps the
                # last): read every status's ID, the first match wins
                k = next((i for i, e in enumerate(statuses) if parse(_StatusId, e, method).id == cid), None)
                found = () if k is None else (parse(status_cls, statuses[k], method),)
        parts = head.pod_sandbox_status  # not checked field by field: a deeper message (rule 1)
        sandbox = _decode(sandbox_cls, b"".join(parts), method) if parts else sandbox_cls()
        return EventView(cid, head.container_event_type, head.created_at, sandbox, found, bool(parts))

    return read


def _decode(cls: Any, raw: bytes, method: str) -> Any:
    """``cls.FromString(raw)``, or ``MalformedResponse``; no wire-type check (a deeper message)."""
    try:
        return cls.FromString(raw)
    except Exception as e:  # DecodeError, and whatever else the C parser may raise on hostile input
        raise MalformedResponse(method, f"{cls.DESCRIPTOR.name} does not decode ({type(e).__name__})") from None


def varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf varint, in as few bytes as encoders write it."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _labels(labels: Any) -> dict[str, str]:
    return {intern(k): intern(v) for k, v in labels.items()}


def sandbox_snap(s: Any) -> SandboxSnap:
    md = s.metadata
    return SandboxSnap(id=s.id, name=intern(md.name), namespace=intern(md.namespace), uid=intern(md.uid),
                       attempt=md.attempt, state=SANDBOX_STATES[s.state] if 0 <= s.state < 2 else "unknown",
                       created_at=s.created_at, labels=_labels(s.labels))


def container_snap(c: Any) -> ContainerSnap:
    return ContainerSnap(id=c.id, sandbox_id=intern(c.pod_sandbox_id), name=intern(c.metadata.name),
                         attempt=c.metadata.attempt, image=intern(c.image.image), image_ref=intern(c.image_ref),
                         state=CONTAINER_STATES[c.state] if 0 <= c.state < 4 else "unknown",
                         created_at=c.created_at, labels=_labels(c.labels))


def container_detail(st: Any) -> ContainerDetail:
    exited = st.state == 2
    code: int | None = st.exit_code if exited and st.exit_code != UNKNOWN_EXIT else None
    return ContainerDetail(id=st.id, started_at=st.started_at, finished_at=st.finished_at, exit_code=code,
                           reason=(st.reason or None) if exited else None)


_LIMITS = {CONTAINER_STATE_ENUM: len(CONTAINER_STATES), SANDBOX_STATE_ENUM: len(SANDBOX_STATES)}
_STATE = attrgetter("state")
_ID = attrgetter("id")


def note_state(tally: Tally | None, enum: str, value: int) -> None:
    """Count a state value the sensor does not know (rule 3)."""
    if tally is not None and not 0 <= value < _LIMITS[enum]:
        tally.unknown[(enum, value)] += 1


# --- the two lists ---------------------------------------------------------------------------------------

S = TypeVar("S", ContainerSnap, SandboxSnap)


class ListKind(Generic[S]):
    """How to decode one kind of list answer (``ListContainers`` or ``ListPodSandbox``)."""

    def __init__(self, method: str, response: str, field_name: str, entry: str, kind: str, enum: str,
                 snap: Callable[[Any], S]) -> None:
        self.method, self.response, self.field, self.entry = method, response, field_name, entry
        self.kind, self.enum, self.snap = kind, enum, snap

    def decode_all(self, pb: Any, raw: bytes, tally: Tally | None = None) -> list[S]:
        """Every entry's value, in list order, none dropped (``keep`` drops)."""
        items = getattr(parse(getattr(pb, self.response), raw, self.method, nested=self.field), self.field)
        if tally is not None:
            for v in map(_STATE, items):
                note_state(tally, self.enum, v)
        return list(map(self.snap, items))

    def decode_one(self, pb: Any, entry: bytes, tally: Tally | None = None) -> S:
        item = parse(getattr(pb, self.entry), entry, self.method)
        note_state(tally, self.enum, item.state)
        return self.snap(item)

    def keep(self, snaps: Iterable[S], tally: Tally | None = None) -> list[S]:
        """``snaps`` without empty IDs and repeated IDs (rule 2), counted in ``tally``."""
        snaps = list(snaps)
        ids = set(map(_ID, snaps))
        if len(ids) == len(snaps) and "" not in ids:
            return snaps  # the common case, checked in C
        out, seen = [], set()
        for s in snaps:
            if not s.id:
                reason = "empty_id"
            elif s.id in seen:
                reason = "duplicate_id"
            else:
                seen.add(s.id)
                out.append(s)
                continue
            if tally is not None:
                tally.dropped[(self.kind, reason)] += 1
        return out

    def decode(self, pb: Any, raw: bytes, tally: Tally | None = None) -> list[S]:
        """The snapshot's records: ``decode_all`` then ``keep``."""
        return self.keep(self.decode_all(pb, raw, tally), tally)


CONTAINERS: ListKind[ContainerSnap] = ListKind("ListContainers", "ListContainersResponse", "containers", "Container",
                                               "container", CONTAINER_STATE_ENUM, container_snap)
SANDBOXES: ListKind[SandboxSnap] = ListKind("ListPodSandbox", "ListPodSandboxResponse", "items", "PodSandbox",
                                            "sandbox", SANDBOX_STATE_ENUM, sandbox_snap)
