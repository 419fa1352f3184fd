"""Events: the sensor's output contract (DESIGN.md section 4), one JSON object per line.

An ``Event`` is a frozen value; ``to_json`` is the one serializer, and its field order is the
documented order. ``SCHEMA_VERSION`` is written into every event as ``v`` so that readers (the
verifier among them) can refuse a format they do not know. The JSON Schema lives in
``sensor/schema/event.schema.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

SCHEMA_VERSION = 1

CONTAINER_TYPES = ("container.created", "container.running", "container.exited", "container.destroyed")
SANDBOX_TYPES = ("sandbox.ready", "sandbox.notready", "sandbox.destroyed")
SENSOR_TYPES = ("sensor.connected", "sensor.gap")
EVENT_TYPES = CONTAINER_TYPES + SANDBOX_TYPES + SENSOR_TYPES

SOURCES = ("poll", "stream", "resync", "lookup")

# The ``why`` of a synthetic event: one fixed string per reason the sensor forged it (docs/events.md).
#: first seen in a later state (container running/exited/unknown, sandbox notready): created/ready forged
WHY_CREATED_BEFORE_FIRST_SEEN = "created before first seen"
#: first seen exited (or created, then exited) with a reported ``started_at``: running forged
WHY_RAN_BETWEEN_POLLS = "ran between polls"
#: a container absent from a successful list while created or running: exited forged
WHY_EXITED_AND_REMOVED = "exited and removed between polls"
#: a sandbox absent from a successful list while ready: notready forged
WHY_STOPPED_AND_REMOVED = "stopped and removed between polls"
#: like the two above, but the sensor was blind (failed polls or a lost connection) meanwhile
WHY_VANISHED_DURING_OUTAGE = "vanished during outage"
#: a container listed under a known ID with a different ``created_at``: the old one's end is forged
WHY_CONTAINER_ID_REUSED = "container ID reused"
#: the same for a sandbox ID
WHY_SANDBOX_ID_REUSED = "sandbox ID reused"
#: a restarted sensor resuming from its state directory (docs/state.md) forged what changed meanwhile
WHY_SENSOR_DOWN = "happened while the sensor was down"
WHY_STRINGS = (
    WHY_CREATED_BEFORE_FIRST_SEEN,
    WHY_RAN_BETWEEN_POLLS,
    WHY_EXITED_AND_REMOVED,
    WHY_STOPPED_AND_REMOVED,
    WHY_VANISHED_DURING_OUTAGE,
    WHY_CONTAINER_ID_REUSED,
    WHY_SANDBOX_ID_REUSED,
    WHY_SENSOR_DOWN,
)


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle event. ``seq`` is assigned at emission (0 until then)."""

    type: str
    time_ns: int
    window_ns: tuple[int, int]
    observed_ns: int
    source: str = "poll"
    container_id: str | None = None
    sandbox_id: str | None = None
    name: str | None = None
    attempt: int | None = None
    image: str | None = None
    image_ref: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    pod: Pod | None = None
    exit_code: int | None = None
    reason: str | None = None
    synthetic: bool = False
    why: str | None = None
    info: dict[str, Any] | None = None
    seq: int = 0

    def with_seq(self, seq: int) -> Event:
        # What ``dataclasses.replace(self, seq=seq)`` gives, without its per-call field walk: the
        # emitter numbers every event, 20,000 of them in a first snapshot of 10,000 containers.
        numbered = object.__new__(type(self))
        for put, value in zip(_EVENT_SETTERS, _event_values(self), strict=True):
            put(numbered, value)
        _SET_SEQ(numbered, seq)
        return numbered

    def numbered(self, seq: int) -> Event:
        """This event with ``seq``, for the emitter: itself, numbered in place, while it has no
        ``seq`` yet (an event is emitted once, right after the engine made it, before anything
        else holds it; ~20x cheaper than ``with_seq``'s copy), else a copy."""
        if self.seq:
            return self.with_seq(seq)
        _SET_SEQ(self, seq)
        return self

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "seq": self.seq,
            "type": self.type,
            "container_id": self.container_id,
            "sandbox_id": self.sandbox_id,
            "name": self.name,
            "attempt": self.attempt,
            "image": self.image,
            "image_ref": self.image_ref,
            "labels": self.labels,
            "pod": None
            if self.pod is None
            else {"name": self.pod.name, "namespace": self.pod.namespace, "uid": self.pod.uid},
            "time_ns": self.time_ns,
            "window_ns": [self.window_ns[0], self.window_ns[1]],
            "observed_ns": self.observed_ns,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "synthetic": self.synthetic,
            "why": self.why,
            "source": self.source,
        }
        if self.info is not None:
            d["info"] = self.info
        return d

    def to_json(self) -> str:
        """``json.dumps(self.to_dict(), separators=(",", ":"))``, byte for byte. orjson writes it ~8x
        faster (0.85 against 7 us an event; ~10 ms of a churning poll's ~900 events, ~150 ms of a
        first snapshot's 22,000 at 10,000 containers) wherever it writes the same bytes: no ``info``
        (free-form: a non-finite float, which orjson writes as ``null``), nothing outside ASCII and no
        DEL (the standard library escapes them), nothing orjson refuses (an int past 64 bits, a lone
        surrogate)."""
        d = self.to_dict()
        if self.info is None and _FAST is not None:
            try:
                raw = _FAST(d)
            except TypeError:  # orjson.JSONEncodeError
                pass
            else:
                if raw.isascii() and 127 not in raw:  # DEL: the standard library escapes it
                    return raw.decode("ascii")
        return _ENCODE(d)


_EVENT_FIELDS = tuple(f.name for f in fields(Event))
_event_values = attrgetter(*_EVENT_FIELDS)
#: The slots' own setters: how ``with_seq`` fills a copy of a frozen event (``__init__`` and
#: ``dataclasses.replace`` cost 2-5 times as much per event).
_EVENT_SETTERS = tuple(vars(Event)[name].__set__ for name in _EVENT_FIELDS)
_SET_SEQ = vars(Event)["seq"].__set__
(_SET_TYPE, _SET_TIME, _SET_WINDOW, _SET_OBSERVED, _SET_SOURCE, _SET_CONTAINER_ID, _SET_SANDBOX_ID, _SET_NAME,
 _SET_ATTEMPT, _SET_IMAGE, _SET_IMAGE_REF, _SET_LABELS, _SET_POD, _SET_EXIT_CODE, _SET_REASON, _SET_SYNTHETIC,
 _SET_WHY, _SET_INFO, _) = _EVENT_SETTERS
_NEW = object.__new__


def new_event(type: str, time_ns: int, window_ns: tuple[int, int], observed_ns: int, source: str,
              container_id: str | None, sandbox_id: str | None, name: str | None, attempt: int | None,
              image: str | None, image_ref: str | None, labels: dict[str, str], pod: Pod | None,
              exit_code: int | None, reason: str | None, synthetic: bool, why: str | None) -> Event:
    """``Event(...)`` with every field but ``info`` and ``seq`` given, in field order: what the diff
    engine makes for each listed change. The frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``; the slots' own setters cost 40% of that (2.8 against 7 us an event:
    ~60 ms of a first snapshot's 22,000 events at 10,000 containers)."""
    e = _NEW(Event)
    _SET_TYPE(e, type)
    _SET_TIME(e, time_ns)
    _SET_WINDOW(e, window_ns)
    _SET_OBSERVED(e, observed_ns)
    _SET_SOURCE(e, source)
    _SET_CONTAINER_ID(e, container_id)
    _SET_SANDBOX_ID(e, sandbox_id)
    _SET_NAME(e, name)
    _SET_ATTEMPT(e, attempt)
    _SET_IMAGE(e, image)
    _SET_IMAGE_REF(e, image_ref)
    _SET_LABELS(e, labels)
    _SET_POD(e, pod)
    _SET_EXIT_CODE(e, exit_code)
    _SET_REASON(e, reason)
    _SET_SYNTHETIC(e, synthetic)
    _SET_WHY(e, why)
    _SET_INFO(e, None)
    _SET_SEQ(e, 0)
    return e


def _compact_encoder() -> Any:
    """``json.dumps(d, separators=(",", ":"))`` with its C encoder built once: ``dumps`` builds an
    encoder per call when given separators, and ``JSONEncoder.encode`` a C encoder per call (~25% of
    an event's serialization; a first snapshot of 10,000 containers writes 20,000 events). Events
    hold no cycles, so the circular-reference check is left out. Same output, byte for byte."""
    from json.encoder import c_make_encoder, encode_basestring_ascii

    if c_make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(separators=(",", ":")).encode

    def default(o: Any) -> Any:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    chunks = c_make_encoder(None, default, encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda d: "".join(chunks(d, 0))


_ENCODE = _compact_encoder()
try:
    from orjson import dumps as _FAST
except ImportError:  # a platform without its wheel: the standard library's encoder, same bytes
    _FAST = None


def from_dict(d: dict[str, Any]) -> Event:
    """Parse one event as written by :meth:`Event.to_json` (the verifier uses this for any sensor)."""
    if d.get("v") != SCHEMA_VERSION:
        raise ValueError(f"unsupported event schema version {d.get('v')!r} (accepted: {SCHEMA_VERSION})")
    pod = d.get("pod")
    window = d.get("window_ns") or [d.get("time_ns"), d.get("time_ns")]
    return Event(
        type=d["type"],
        time_ns=d["time_ns"],
        window_ns=(window[0], window[1]),
        observed_ns=d["observed_ns"],
        source=d.get("source", "poll"),
        container_id=d.get("container_id"),
        sandbox_id=d.get("sandbox_id"),
        name=d.get("name"),
        attempt=d.get("attempt"),
        image=d.get("image"),
        image_ref=d.get("image_ref"),
        labels=d.get("labels") or {},
        pod=None if pod is None else Pod(pod["name"], pod["namespace"], pod["uid"]),
        exit_code=d.get("exit_code"),
        reason=d.get("reason"),
        synthetic=bool(d.get("synthetic", False)),
        why=d.get("why"),
        info=d.get("info"),
        seq=d["seq"],
    )
