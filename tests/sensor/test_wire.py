"""Fuzzing the CRI wire decoders (sensor.wire, sensor.fastpath) against protobuf's own parser.

For arbitrary bytes and for mutations of valid answers (a byte flipped, inserted or dropped, the
end cut off), every way the sensor decodes a list -- the plain decode, the fast path's whole
decode, its delta against a previous list -- gives protobuf's answer, or a clean
``MalformedResponse``; never any other exception. A clean error where protobuf parsed the bytes is
allowed only for the one reason ``sensor.wire`` adds (rule 1): a known field sent with the wrong
wire type. The same for stream events and ``ContainerStatus`` answers.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import cri_api
from sensor.fastpath import _CONTAINERS, _SANDBOXES
from sensor.stream import stream_event
from sensor.wire import (
    CONTAINERS,
    SANDBOXES,
    MalformedResponse,
    Tally,
    UnusableEvent,
    container_snap,
    event_reader,
    exited_ids,
    parse,
    sandbox_snap,
    split_entries,
    varint,
)

PB = cri_api.api("v1").pb2
KINDS = {"containers": (CONTAINERS, _CONTAINERS, container_snap), "sandboxes": (SANDBOXES, _SANDBOXES, sandbox_snap)}
IDS = st.sampled_from(["", "a", "b", "c", "abcdef0123"])
TIMES = st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 1_700_000_000_000_000_000])


@st.composite
def container_msgs(draw: st.DrawFn) -> Any:
    return PB.Container(id=draw(IDS), pod_sandbox_id=draw(IDS), state=draw(st.integers(-3, 9)),
                        created_at=draw(TIMES), metadata=PB.ContainerMetadata(name=draw(IDS), attempt=draw(
                            st.integers(0, 2**32 - 1))), image=PB.ImageSpec(image=draw(IDS)), image_ref=draw(IDS),
                        labels=draw(st.dictionaries(IDS, IDS, max_size=2)))


@st.composite
def sandbox_msgs(draw: st.DrawFn) -> Any:
    return PB.PodSandbox(id=draw(IDS), state=draw(st.integers(-3, 9)), created_at=draw(TIMES),
                         metadata=PB.PodSandboxMetadata(name=draw(IDS), namespace=draw(IDS), uid=draw(IDS)),
                         labels=draw(st.dictionaries(IDS, IDS, max_size=2)))


def answer(kind: str, items: list[Any]) -> bytes:
    if kind == "containers":
        return PB.ListContainersResponse(containers=items).SerializeToString()
    return PB.ListPodSandboxResponse(items=items).SerializeToString()


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few byte-level mutations."""
    b = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut", "tag"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == "flip" and b:
            b[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            b.insert(i, draw(st.integers(0, 255)))
        elif op == "delete" and b:
            del b[i]
        elif op == "cut":
            del b[i:]
        elif op == "tag" and b:  # the same field number, another wire type: the kind of damage protobuf skips
            b[i] = (b[i] & ~7) | draw(st.sampled_from([0, 1, 5]))
    return bytes(b)


@st.composite
def wire_cases(draw: st.DrawFn) -> tuple[str, bytes, bytes]:
    """(kind, a valid base list, bytes to decode: arbitrary, a mutation of a list, or a valid list)."""
    kind = draw(st.sampled_from(list(KINDS)))
    msgs = container_msgs() if kind == "containers" else sandbox_msgs()
    base = answer(kind, draw(st.lists(msgs, max_size=4)))
    other = answer(kind, draw(st.lists(msgs, max_size=4)))
    raw = draw(st.one_of(st.binary(max_size=64), mutated(other), mutated(base), st.just(other)))
    return kind, base, raw


def wrong_wire_type(msg: Any) -> bool:
    """True when ``msg`` (or one of its list entries) holds a known field as an unknown one."""
    from google.protobuf.unknown_fields import UnknownFieldSet

    def bad(m: Any) -> bool:
        known = m.DESCRIPTOR.fields_by_number
        return any(f.field_number in known for f in UnknownFieldSet(m))

    items = list(getattr(msg, "containers", None) or getattr(msg, "items", None) or [])
    return bad(msg) or any(bad(i) for i in items)


def protobuf_answer(kind: str, raw: bytes) -> tuple[Any, list[Any] | None]:
    """(the parsed message or None, its records as the sensor keeps them -- or None if it does not parse)."""
    wire, _, snap = KINDS[kind]
    cls = PB.ListContainersResponse if kind == "containers" else PB.ListPodSandboxResponse
    try:
        msg = cls.FromString(raw)
    except Exception:
        return None, None
    return msg, wire.keep([snap(i) for i in getattr(msg, wire.field)])


def decoders(kind: str, base: bytes) -> dict[str, Any]:
    """Every way the sensor decodes a list answer, each raw -> the records it keeps."""
    wire, fast, _ = KINDS[kind]

    def delta(raw: bytes) -> list[Any]:
        _, ref = fast.full(PB, base, Tally())
        if ref is None:  # a base with repeats is no reference: the fast path decodes whole
            return fast.full(PB, raw, Tally())[0]
        d = fast.delta(PB, raw, ref, Tally())
        if d is None:  # an entry or ID repeated: the fast path falls back to the whole decode
            return fast.full(PB, raw, Tally())[0]
        return list(d.index.snaps.values())

    return {"plain": lambda raw: wire.decode(PB, raw, Tally()), "full": lambda raw: fast.full(PB, raw, Tally())[0],
            "delta": delta}


def by_id(snaps: list[Any]) -> dict[str, Any]:
    return {s.id: s for s in snaps}


@given(wire_cases())
@example(("containers", b"", b"\x08\x01"))  # field 1 as a varint: protobuf reads an empty list
@example(("containers", b"", b"\x0a\x02\x08\x05"))  # an entry whose id (field 1) is a varint: id "" to protobuf
@example(("sandboxes", b"", b"\x0a\x03\x0a\x01\xff"))  # an ID that is not UTF-8
def test_list_decoders_agree_with_protobuf_or_fail_cleanly(case: tuple[str, bytes, bytes]) -> None:
    kind, base, raw = case
    msg, expected = protobuf_answer(kind, raw)
    for name, decode in decoders(kind, base).items():
        try:
            got = decode(raw)
        except MalformedResponse as e:
            assert e.code == "MALFORMED" and e.method == KINDS[kind][0].method
            assert msg is None or wrong_wire_type(msg), f"{name}: refused bytes protobuf reads cleanly: {e}"
            continue
        assert expected is not None, f"{name}: accepted bytes protobuf refuses"
        if name == "delta":  # the index holds the list's records (order is the engine's business)
            assert by_id(got) == by_id(expected)
        else:
            assert got == expected, name


@given(st.one_of(st.binary(max_size=64), st.builds(lambda e: e, st.just(b"")),
                 mutated(PB.ListContainersResponse(containers=[PB.Container(id="a", state=1)]).SerializeToString())))
def test_split_entries_is_clean(raw: bytes) -> None:
    try:
        entries = split_entries(raw, "ListContainers")
    except MalformedResponse:
        return
    for e in entries:
        assert isinstance(e, bytes)


@st.composite
def event_bytes(draw: st.DrawFn) -> bytes:
    c = draw(container_msgs())
    resp = PB.ContainerEventResponse(container_id=draw(IDS), container_event_type=draw(st.integers(-2, 9)),
                                     created_at=draw(TIMES))
    if draw(st.booleans()):
        resp.containers_statuses.append(PB.ContainerStatus(id=c.id, state=c.state, created_at=c.created_at,
                                                           started_at=draw(TIMES), finished_at=draw(TIMES),
                                                           exit_code=draw(st.integers(-(2**31), 2**31 - 1))))
    if draw(st.booleans()):
        resp.pod_sandbox_status.CopyFrom(PB.PodSandboxStatus(id=draw(IDS), state=draw(st.integers(-2, 5))))
    valid = resp.SerializeToString()
    return draw(st.one_of(st.just(valid), mutated(valid), st.binary(max_size=48)))


@given(event_bytes())
@example(b"\x10\x07\x0a\x01a")  # ContainerEventType 7
@example(b"\x10\x01")  # an empty container_id
def test_stream_events_decode_or_are_skipped_cleanly(raw: bytes) -> None:
    try:
        msg = parse(PB.ContainerEventResponse, raw, "GetContainerEvents", nested="containers_statuses")
    except MalformedResponse:
        return
    tally = Tally()
    try:
        ev = stream_event(msg, tally)
    except UnusableEvent as e:
        assert e.reason in ("unknown_enum", "empty_id")
        assert (e.reason == "empty_id") == (not msg.container_id and 0 <= msg.container_event_type <= 3)
        return
    assert ev.container_id and ev.type in ("created", "started", "stopped", "deleted")
    assert ev.sandbox is None or ev.sandbox.id
    odd_container = ev.container is not None and not 0 <= msg.containers_statuses[0].state < 4
    odd_sandbox = ev.sandbox is not None and not 0 <= msg.pod_sandbox_status.state < 2
    assert sum(tally.unknown.values()) == odd_container + odd_sandbox


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (``number``, wire type 2) as an encoder writes it."""
    return bytes([number << 3 | 2]) + varint(len(payload)) + payload


@st.composite
def status_entries(draw: st.DrawFn, ids: st.SearchStrategy[str] = IDS) -> bytes:
    """One ``ContainerStatus`` as a runtime may encode it: in field order, with the ID after other
    fields, or with the ID field twice (protobuf keeps the last)."""
    st_msg = PB.ContainerStatus(id=draw(ids), state=draw(st.integers(-3, 9)), created_at=draw(TIMES),
                                started_at=draw(TIMES), finished_at=draw(TIMES),
                                exit_code=draw(st.integers(-(2**31), 2**31 - 1)),
                                metadata=PB.ContainerMetadata(name=draw(IDS)), labels=draw(
                                    st.dictionaries(IDS, IDS, max_size=2)))
    shape = draw(st.sampled_from(["ordered", "ordered", "id last", "id twice"]))
    if shape == "ordered":
        return st_msg.SerializeToString()
    rest = PB.ContainerStatus()
    rest.CopyFrom(st_msg)
    rest.ClearField("id")
    if shape == "id last":
        return rest.SerializeToString() + PB.ContainerStatus(id=st_msg.id).SerializeToString()
    return PB.ContainerStatus(id=draw(ids)).SerializeToString() + rest.SerializeToString() + PB.ContainerStatus(
        id=st_msg.id).SerializeToString()


@st.composite
def pod_events(draw: st.DrawFn) -> bytes:
    """A ``ContainerEventResponse`` as containerd sends it: the statuses of the pod's containers
    (several, IDs repeating, in any encoding above), sometimes none about the event's container."""
    cid = draw(IDS)
    head = PB.ContainerEventResponse(container_id=cid, container_event_type=draw(st.integers(-1, 4)),
                                     created_at=draw(TIMES))
    ids = st.one_of(st.just(cid), IDS)  # the pod's statuses: the event's container's often among them
    if draw(st.booleans()):
        head.pod_sandbox_status.CopyFrom(PB.PodSandboxStatus(id=draw(IDS), state=draw(st.integers(-1, 3)),
                                                             created_at=draw(TIMES)))
    raw = head.SerializeToString() + b"".join(_field(5, e) for e in draw(st.lists(status_entries(ids), max_size=5)))
    return draw(st.one_of(st.just(raw), mutated(raw)))


def _whole(raw: bytes) -> tuple[Any, Tally] | Exception:
    """What the sensor read before ``event_reader``: the whole message, every status checked."""
    tally = Tally()
    try:
        return stream_event(parse(PB.ContainerEventResponse, raw, "GetContainerEvents",
                                  nested="containers_statuses"), tally), tally
    except (MalformedResponse, UnusableEvent) as e:
        return e


@given(st.one_of(pod_events(), event_bytes()))
@example(PB.ContainerEventResponse(container_id="a", container_event_type=1).SerializeToString()
         + _field(5, PB.ContainerStatus(id="b").SerializeToString())
         + _field(5, PB.ContainerStatus(state=2).SerializeToString() + PB.ContainerStatus(id="a").SerializeToString()))
@example(PB.ContainerEventResponse(container_id="a", container_event_type=2).SerializeToString()
         + _field(5, PB.ContainerStatus(id="a").SerializeToString() + PB.ContainerStatus(id="b").SerializeToString())
         + _field(5, PB.ContainerStatus(id="a", exit_code=3).SerializeToString()))
@example(PB.ContainerEventResponse(container_id="a", container_event_type=2).SerializeToString()  # the first
         + _field(5, PB.ContainerStatus(state=2).SerializeToString() + PB.ContainerStatus(id="a").SerializeToString())
         + _field(5, PB.ContainerStatus(id="a", exit_code=3).SerializeToString()))  # not the one led by its ID
def test_the_event_reader_reads_what_the_whole_message_says(raw: bytes) -> None:
    """``event_reader`` (one status parsed) against protobuf's whole parse: the same event and the
    same counts, or the same error -- except that a status the event is not about is not checked,
    so bytes that fail only there give the event the whole parse would give unchecked."""
    before = _whole(raw)
    tally = Tally()
    try:
        view = event_reader(PB)(raw)
        now: tuple[Any, Tally] | Exception = stream_event(view, tally), tally
    except (MalformedResponse, UnusableEvent) as e:
        now = e
    if isinstance(now, Exception):
        assert isinstance(before, Exception), f"refused what the whole message gives: {now}"
        # the same error; or the whole parse failed in a status and the event itself is unusable
        assert type(now) is type(before) or (isinstance(now, UnusableEvent) and isinstance(before, MalformedResponse))
        return
    if isinstance(before, Exception):  # it failed in a status the event is not about, not read now:
        assert isinstance(before, MalformedResponse)  # the event is the message's with that status alone
        alone = PB.ContainerEventResponse(container_id=view.container_id,
                                          container_event_type=view.container_event_type,
                                          created_at=view.created_at, containers_statuses=view.containers_statuses)
        if view.HasField("pod_sandbox_status"):
            alone.pod_sandbox_status.CopyFrom(view.pod_sandbox_status)
        before = _whole(alone.SerializeToString())
    assert now == before


def test_a_broken_status_of_another_container_does_not_lose_the_event() -> None:
    """containerd sends the whole pod's statuses with every event: one of them damaged (its state
    field as a length-delimited string) made the event unusable and the sensor list; now only the
    status the event is about is read."""
    raw = (PB.ContainerEventResponse(container_id="a", container_event_type=1, created_at=5).SerializeToString()
           + _field(5, b"\x0a\x01b" + _field(4, b"x"))  # state (field 4, a varint) sent as bytes
           + _field(5, PB.ContainerStatus(id="a", state=1, started_at=5).SerializeToString()))
    with pytest.raises(MalformedResponse, match="sent as length-delimited"):
        parse(PB.ContainerEventResponse, raw, "GetContainerEvents", nested="containers_statuses")
    ev = stream_event(event_reader(PB)(raw))
    assert (ev.container_id, ev.type, ev.container and ev.container.state) == ("a", "started", "running")
    with pytest.raises(MalformedResponse):  # the status it is about, damaged the same way: refused
        event_reader(PB)(raw.replace(b"\x0a\x01b", b"\x0a\x01a", 1)[:-len(_field(5, PB.ContainerStatus(
            id="a", state=1, started_at=5).SerializeToString()))])


@given(st.one_of(st.binary(max_size=48), mutated(PB.ContainerStatusResponse(
    status=PB.ContainerStatus(id="a", state=2, exit_code=1, started_at=1, finished_at=2)).SerializeToString())))
def test_status_answers_decode_or_fail_cleanly(raw: bytes) -> None:
    try:
        msg = parse(PB.ContainerStatusResponse, raw, "ContainerStatus", nested="status")
    except MalformedResponse:
        try:
            PB.ContainerStatusResponse.FromString(raw)
        except Exception:
            return
        return  # protobuf read it: a wrong wire type (rule 1), checked for lists above
    assert msg == PB.ContainerStatusResponse.FromString(raw)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_known_field_with_the_wrong_wire_type_is_malformed_not_empty(kind: str) -> None:
    wire = KINDS[kind][0]
    assert protobuf_answer(kind, b"\x08\x01")[1] == []  # protobuf: "everything is gone"
    with pytest.raises(MalformedResponse, match="wrong wire type"):
        split_entries(b"\x08\x01", wire.method)
    with pytest.raises(MalformedResponse, match="sent as varint"):
        wire.decode(PB, b"\x08\x01")


def _protobuf_exits(entries: list[bytes]) -> list[str]:
    """The IDs protobuf reads as exited containers, entry by entry (an entry it refuses: none)."""
    out = []
    for e in entries:
        try:
            m = PB.Container.FromString(e)
        except Exception:
            continue
        if m.state == PB.CONTAINER_EXITED and m.id:
            out.append(m.id)
    return out


@given(st.lists(container_msgs(), max_size=6))
def test_the_exit_hint_names_exactly_the_exited_entries(msgs: list[Any]) -> None:
    entries = split_entries(answer("containers", msgs))
    assert exited_ids(entries) == _protobuf_exits(entries) == [m.id for m in msgs if m.state == 2 and m.id]


@given(st.lists(st.one_of(st.binary(max_size=32), container_msgs().map(lambda m: m.SerializeToString()).flatmap(
    mutated)), max_size=6))
@example([b"\x0a\x01\xff\x30\x02"])  # an ID that is not UTF-8: no hint
def test_the_exit_hint_misses_no_exit_protobuf_reads_in_damaged_entries(entries: list[bytes]) -> None:
    """A hint may name an entry whose nested fields are damaged (decoding judges it); never miss one."""
    got = exited_ids(entries)
    assert set(_protobuf_exits(entries)) <= set(got)
