"""The state core: what a sensor persists to resume after a restart, how it is encoded, and what the
first poll after a restart emits (G9, docs/state.md). Pure: no files, no clock; ``sensor.statedir``
does the I/O.

Theory of operation
-------------------
What is persisted (an *image*): the last ``seq`` written, every tracked container and sandbox
record of the diff engine (its metadata, the state last announced, the state last listed, its
time bounds), the times of the last successful list (``poll``: ``sent_ns``/``received_ns``), the
runtime's identity (name, version and an *instance marker*: the socket's inode and ctime and the
serving process's start time) and the last time the sensor was known alive.

Rule 1 -- output first, then the journal. A batch of events is written to the output, then one
journal line records its effect: the new ``seq`` and the records of the objects the batch named
(``None`` for a destroyed one). The engine is the authority; the journal line is read from it
after the batch, so nothing is derived twice. The one window where a kill makes a restarted
sensor repeat a batch is between those two writes (two consecutive system calls).

Rule 2 -- encoding. Every line is ``<crc32 hex> <json>\\n``; a line whose checksum does not match
is corrupt. Records are JSON arrays in the order of a *layout* (field names per record type)
written once per file, so a record costs its values only and a newer sensor reading an older
file maps fields by name (missing ones take their defaults; an unknown layout is a corrupt state).

Rule 3 -- resume. ``restore`` loads an image into a fresh engine as if its last list had just been
committed and the connection then lost: the first successful list after the restart is a resync.
The engine then does what it does after any outage -- nothing for objects still as announced, the
transitions since for the others, forged ends for what vanished, one ``sensor.gap`` from the last
list before the restart to the first one after it -- and ``Resumption.rewrite`` relabels that one
batch: the gap's ``cause`` is ``sensor restart`` (with the runtime's identity before and now when
it changed: ``runtime_restarted``), and every event the resync forged says ``why: "happened
while the sensor was down"``. What the restarted sensor sees itself stays ``synthetic: false``
(DESIGN.md section 4: ``synthetic`` is true iff the sensor never saw that state).

Rule 4 -- a state that cannot be trusted is not used. A corrupt image (bad checksum, unknown
format) is set aside by the shell and the sensor starts from an empty engine -- announcing what
exists as a first start does, never forging ends from a state it cannot read -- with one
``sensor.gap`` (``cause: "state lost"``) from the last moment the old state shows the sensor alive
(0 when unknown) to its first list. ``seq`` continues above the highest value any readable line
names.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from operator import attrgetter
from typing import Any

from sensor.diff import DiffEngine, _Container, _Sandbox
from sensor.events import (
    WHY_CONTAINER_ID_REUSED,
    WHY_SANDBOX_ID_REUSED,
    WHY_SENSOR_DOWN,
    Event,
    Pod,
)
from sensor.snapshot import ContainerSnap, SandboxSnap, Snapshot

__all__ = [
    "FORMAT",
    "CorruptState",
    "Image",
    "Resumption",
    "capture",
    "decode_line",
    "delta",
    "encode_json",
    "encode_line",
    "restore",
]

#: The state format; a file of another format is not read (set aside, fresh start).
FORMAT = 1

#: Field layouts, per record type: written into every file, read back by name.
_TYPES: dict[str, type] = {"container": _Container, "sandbox": _Sandbox, "csnap": ContainerSnap,
                           "ssnap": SandboxSnap, "pod": Pod}
#: Nested values per record type: field -> layout name.
_NESTED: dict[str, dict[str, str]] = {"container": {"snap": "csnap"}, "sandbox": {"snap": "ssnap", "pod": "pod"}}
#: whys a resync forges that mean "it changed while the sensor could not see": relabelled on resume
_KEPT_WHYS = (WHY_CONTAINER_ID_REUSED, WHY_SANDBOX_ID_REUSED)


class CorruptState(ValueError):
    """A line or image that cannot be trusted: ``str()`` says what is wrong, in one line."""


def layout() -> dict[str, list[str]]:
    return {name: [f.name for f in fields(cls)] for name, cls in _TYPES.items()}


# --- lines ----------------------------------------------------------------------------------------


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def encode_line(obj: dict[str, Any], raw: Mapping[str, bytes] | None = None) -> bytes:
    """One checksummed line: ``<crc32 of the JSON, 8 hex digits> <JSON>\\n``. ``raw``: members
    already encoded as JSON (``encode_json``), appended to ``obj``'s (which must not be empty)."""
    body = encode_json(obj)
    if raw:
        body = body[:-1] + b"".join(b',"%s":%s' % (k.encode(), v) for k, v in raw.items()) + b"}"
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_line(line: bytes) -> Any:
    """The object of one line (with or without its newline); ``CorruptState`` when torn or altered."""
    line = line.rstrip(b"\n")
    if len(line) < 10 or line[8:9] != b" ":
        raise CorruptState("a line is torn or not a state line")
    body = line[9:]
    if line[:8].strip(b"0123456789abcdef"):  # int() would also take " 1f" or "A0" for the same value
        raise CorruptState("a line has no checksum")
    crc = int(line[:8], 16)
    if zlib.crc32(body) != crc:
        raise CorruptState("checksum mismatch")
    try:
        return json.loads(body)
    except ValueError:
        raise CorruptState("a checksummed line is not JSON") from None


# --- records --------------------------------------------------------------------------------------


def _getters() -> dict[str, tuple[Any, tuple[tuple[int, str], ...], tuple[int, ...]]]:
    """Per record type: a C-speed getter of its fields in layout order, its nested fields (index,
    type) and the indexes of its mapping fields (labels: written as JSON objects)."""
    out = {}
    for name, cls in _TYPES.items():
        names = [f.name for f in fields(cls)]
        nested = tuple((names.index(k), v) for k, v in _NESTED.get(name, {}).items())
        maps = tuple(i for i, n in enumerate(names) if n == "labels")
        out[name] = (attrgetter(*names), nested, maps)
    return out


_GETTERS = _getters()


def _enc(kind: str, rec: Any) -> list[Any]:
    get, nested, maps = _GETTERS[kind]
    values = list(get(rec))
    for i in maps:
        if type(values[i]) is not dict:
            values[i] = dict(values[i])
    for i, sub in nested:
        if values[i] is not None:
            values[i] = _enc(sub, values[i])
    return values


def encode_record(rec: _Container | _Sandbox) -> list[Any]:
    """One record as a JSON array in ``layout()`` order (nested snapshots as arrays too)."""
    return _enc("container" if type(rec) is _Container else "sandbox", rec)


def _build(kind: str, values: Sequence[Any], lay: Mapping[str, Sequence[str]]) -> Any:
    """A record of type ``kind`` from ``values`` in the file's layout (by field name)."""
    cls = _TYPES[kind]
    names = lay.get(kind)
    if not isinstance(names, list) or not isinstance(values, list) or len(values) != len(names):
        raise CorruptState(f"a {kind} record does not match its layout")
    given = dict(zip(names, values, strict=True))
    nested = _NESTED.get(kind, {})
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in given:
            v = given[f.name]
            if f.name in nested and v is not None:
                v = _build(nested[f.name], v, lay)
            kwargs[f.name] = v
        elif f.default is MISSING and f.default_factory is MISSING:
            raise CorruptState(f"a {kind} record lacks {f.name} (written by an incompatible sensor)")
    for name, value in kwargs.items():
        accepted = _SCALARS[kind].get(name)
        if accepted is not None and not (type(value) in accepted or (value is None and None in accepted)):
            wanted = " or ".join("null" if t is None else t.__name__ for t in accepted)
            raise CorruptState(f"a {kind} record's {name} is {type(value).__name__}, not {wanted}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise CorruptState(f"a {kind} record does not build: {e}") from None


def _scalars() -> dict[str, dict[str, tuple[Any, ...]]]:
    """Per record type: the accepted JSON types of its scalar fields, from their annotations (a
    checksummed record of the wrong shape -- a hand edit, an incompatible sensor -- is corrupt, not
    a crash later in the engine)."""
    kinds = {"int": (int,), "str": (str,), "bool": (bool,), "int | None": (int, None), "str | None": (str, None)}
    return {name: {f.name: kinds[f.type] for f in fields(cls) if isinstance(f.type, str) and f.type in kinds}
            for name, cls in _TYPES.items()}


_SCALARS = _scalars()


# --- the image ------------------------------------------------------------------------------------


@dataclass
class Image:
    """Everything persisted (module docstring). Records are kept encoded (lists in ``layout``)."""

    seq: int = 0
    poll: tuple[int, int] | None = None
    runtime: dict[str, Any] | None = None
    alive_ns: int = 0
    containers: dict[str, list[Any]] = field(default_factory=dict)
    sandboxes: dict[str, list[Any]] = field(default_factory=dict)
    layout: dict[str, list[str]] = field(default_factory=layout)
    #: set while a start that found a corrupt state has not listed yet: ``{"lo": ns, "problem": text}``
    #: (a sensor killed before its first list still owes the ``state lost`` gap)
    lost: dict[str, Any] | None = None

    def to_obj(self, gen: int) -> dict[str, Any]:
        return {"format": FORMAT, "gen": gen, "seq": self.seq, "poll": self.poll, "runtime": self.runtime,
                "alive_ns": self.alive_ns, "lost": self.lost, "layout": self.layout, "c": self.containers,
                "s": self.sandboxes}

    @staticmethod
    def from_obj(obj: Any) -> tuple[Image, int]:
        """(image, generation) of a snapshot object; ``CorruptState`` when it is not one."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            got = obj.get("format") if isinstance(obj, dict) else None
            raise CorruptState(f"state format {got!r} is not {FORMAT}")
        try:
            poll = obj["poll"]
            img = Image(int(obj["seq"]), None if poll is None else (int(poll[0]), int(poll[1])), obj["runtime"],
                        int(obj["alive_ns"]), dict(obj["c"]), dict(obj["s"]), dict(obj["layout"]), obj.get("lost"))
            return img, int(obj["gen"])
        except (KeyError, TypeError, ValueError, IndexError):
            raise CorruptState("the snapshot lacks a field or has a wrong type") from None

    def apply(self, rec: Any) -> None:
        """Apply one journal record (``delta``'s object); ``CorruptState`` when it is not one."""
        if not isinstance(rec, dict) or not isinstance(rec.get("q"), int):
            raise CorruptState("a journal record has no seq")
        self.seq = max(self.seq, rec["q"])
        if "p" in rec:
            p = rec["p"]
            self.poll = None if p is None else (int(p[0]), int(p[1]))
        if "r" in rec:
            self.runtime = rec["r"]
        if "l" in rec:
            self.lost = rec["l"]
        if isinstance(rec.get("t"), int):
            self.alive_ns = max(self.alive_ns, rec["t"])
        for key, table in (("c", self.containers), ("s", self.sandboxes)):
            for oid, values in (rec.get(key) or {}).items():
                if values is None:
                    table.pop(oid, None)
                else:
                    table[oid] = values


def capture(engine: DiffEngine, image: Image) -> Image:
    """A full image of ``engine`` (compaction): its records, with ``image``'s other values."""
    return replace(image, containers={oid: encode_record(r) for oid, r in engine._containers.items()},
                   sandboxes={oid: encode_record(r) for oid, r in engine._sandboxes.items()}, layout=layout())


def delta(engine: DiffEngine, done: Sequence[Event], written: int, *,
          listed: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """The records a batch changed: ``({container_id: record or None}, {sandbox_id: record or None})``.

    ``done`` is the batch as numbered, ``written`` how many of its events reached the output (all,
    except when a shutdown cut the batch short). An object whose every event of the batch was
    written gets the engine's record (``None`` once destroyed). One whose later events were not
    written is recorded as announced up to its last written event and *listed* in that state, so
    that the first list after a restart announces the rest (rule 1: nothing lost, nothing twice).
    ``listed``: the batch comes from a list (only a list leaves a sandbox's end pending on its
    containers, and finding those costs a pass over the sandboxes).
    """
    containers, sandboxes = engine._containers, engine._sandboxes
    last: dict[tuple[str, str], Event] = {}  # the last written event per object
    cut: set[tuple[str, str]] = set()  # objects with events not written
    parents: set[str] = set()  # sandboxes of written container events: their child_ns moved
    for i, ev in enumerate(done):
        key = _key(ev)
        if key is None:
            continue
        if i >= written:
            cut.add(key)
            continue
        last[key] = ev
        if key[0] == "c" and ev.sandbox_id:
            parents.add(ev.sandbox_id)
    out: dict[str, dict[str, Any]] = {"c": {}, "s": {}}
    for (kind, oid), ev in last.items():
        rec = (containers if kind == "c" else sandboxes).get(oid)
        if (kind, oid) in cut:
            out[kind][oid] = _patched(rec, ev)
        else:
            out[kind][oid] = None if rec is None else encode_record(rec)
    s_out = out["s"]
    for sid in parents:
        st = sandboxes.get(sid)
        if sid not in s_out and st is not None:
            s_out[sid] = encode_record(st)
    if listed:
        for sid, st in sandboxes.items():  # a sandbox whose end waits for its containers changed too
            if st.gone_lo is not None and sid not in s_out:
                s_out[sid] = encode_record(st)
    return out["c"], s_out


def _key(ev: Event) -> tuple[str, str] | None:
    kind = ev.type.partition(".")[0]
    if kind == "container" and ev.container_id:
        return ("c", ev.container_id)
    if kind == "sandbox" and ev.sandbox_id:
        return ("s", ev.sandbox_id)
    return None


def _patched(rec: _Container | _Sandbox | None, ev: Event) -> list[Any] | None:
    """The record of an object whose events a shutdown cut short: announced (and listed) as of its
    last written event. Built from that event when the engine has already forgotten the object."""
    state = ev.type.partition(".")[2]
    if state == "destroyed":
        return None
    if rec is None:
        if ev.type.startswith("container."):
            snap: Any = ContainerSnap(ev.container_id or "", ev.sandbox_id or "", ev.name or "", ev.attempt or 0,
                                      ev.image or "", ev.image_ref or "", state, 0, dict(ev.labels))  # type: ignore[arg-type]
            rec = _Container(snap=snap, listed=state, announced=state, floor_ns=ev.window_ns[0], last_ns=ev.time_ns,
                             gen=1, was_listed=True)
        else:
            pod = ev.pod or Pod("", "", "")
            ssnap = SandboxSnap(ev.sandbox_id or "", pod.name, pod.namespace, pod.uid, ev.attempt or 0,
                                state, 0, dict(ev.labels))  # type: ignore[arg-type]
            rec = _Sandbox(snap=ssnap, listed=state, announced=state, pod=pod, floor_ns=ev.window_ns[0],
                           last_ns=ev.time_ns, gen=1, was_listed=True)
        return encode_record(rec)
    return encode_record(replace(rec, announced=state, listed=state))


def restore(engine: DiffEngine, image: Image) -> Snapshot | None:
    """Load ``image`` into a fresh ``engine`` (rule 3); returns the restored last-list times (the
    snapshot value ``engine.last_success`` holds until the first list after the restart), or None
    when the image has no list (nothing to resume: a first start)."""
    lay = image.layout
    cs: dict[str, Any] = {}
    for oid, values in image.containers.items():
        cs[oid] = _normalized(_build("container", values, lay))
    ss: dict[str, Any] = {}
    for oid, values in image.sandboxes.items():
        ss[oid] = _normalized(_build("sandbox", values, lay))
    if image.poll is None:
        return None
    engine._containers = cs
    engine._sandboxes = ss
    prev = Snapshot((), (), image.poll[0], image.poll[1])
    engine._prev = prev
    engine._resync = True  # the first list after the restart is a resync: a gap, forged ends
    engine._gen = engine._committed_gen = engine._finished_gen = 1
    return prev


def _normalized(rec: Any) -> Any:
    """Generations are per engine: a restored record was listed in generation 1 (the restored last
    list) unless it was known from the event stream only (0)."""
    rec.gen = 1 if rec.gen else 0
    rec.base = 0
    return rec


# --- the first batch after a restart --------------------------------------------------------------


@dataclass
class Resumption:
    """How the first list after a start is relabelled (rule 3 and 4). ``kind``: ``resume`` (the
    engine was restored) or ``lost`` (the state was set aside: a gap is added). Applies once."""

    kind: str
    restored: Snapshot | None = None
    runtime_before: dict[str, Any] | None = None
    lost_lo: int = 0
    problem: str = ""
    done: bool = False

    def due(self, last_success: Snapshot | None) -> bool:
        """The batch being emitted comes from the first list since the start."""
        return not self.done and last_success is not None and last_success is not self.restored

    def rewrite(self, events: list[Event], last_success: Snapshot, runtime_now: dict[str, Any] | None
                ) -> list[Event]:
        self.done = True
        if self.kind == "lost":
            first = events[0].observed_ns if events else last_success.received_ns
            gap = Event(type="sensor.gap", time_ns=self.lost_lo, window_ns=(self.lost_lo, last_success.received_ns),
                        observed_ns=first, source=events[0].source if events else "poll",
                        info={"cause": "state lost", "state_problem": self.problem, "failed_polls": 0,
                              "last_error": None})
            return [gap, *events]
        out: list[Event] = []
        gapped = False
        for ev in events:
            if ev.type == "sensor.gap" and not gapped:
                gapped = True
                info = dict(ev.info or {})
                info["cause"] = "sensor restart"
                info.update(runtime_change(self.runtime_before, runtime_now))
                ev = replace(ev, info=info)
            elif ev.synthetic and ev.source == "resync" and ev.why not in _KEPT_WHYS:
                ev = replace(ev, why=WHY_SENSOR_DOWN)
            out.append(ev)
        return out


def runtime_change(before: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a resume gap says about the runtime: ``runtime_restarted`` (its instance marker or
    identity changed while the sensor was down) and, if so, both identities."""
    if before is None or now is None:
        return {"runtime_restarted": None}
    changed = any(before.get(k) != now.get(k) for k in ("name", "version", "instance"))
    out: dict[str, Any] = {"runtime_restarted": changed}
    if changed:
        out["runtime_before"] = dict(before)
        out["runtime_now"] = dict(now)
    return out


def highest_seq(objs: Iterable[Any]) -> int:
    """The highest ``seq`` any readable state object names (a corrupt state's seq floor)."""
    top = 0
    for obj in objs:
        if isinstance(obj, dict):
            for key in ("seq", "q"):
                v = obj.get(key)
                if isinstance(v, int) and not isinstance(v, bool):
                    top = max(top, v)
    return top
