"""sensor.handshake: the pure frame scanner and the SETTINGS-injection state machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.handshake import (
    ACK,
    CLIENT_PREFACE,
    EMPTY_SETTINGS,
    HEADERS,
    SETTINGS,
    Frame,
    FrameScanner,
    HandshakeError,
    Preface,
    SettingsInjector,
    frame_header,
)

PING, DATA, WINDOW_UPDATE = 0x6, 0x0, 0x8


def frame(type_: int, payload: bytes = b"", flags: int = 0, stream: int = 0) -> bytes:
    return frame_header(len(payload), type_, flags, stream) + payload


SETTINGS_ACK = frame(SETTINGS, flags=ACK)
CLIENT_SETTINGS = frame(SETTINGS, b"\x00\x02\x00\x00\x00\x00\x00\x04\x00\x40\x00\x00")
HEADERS_1 = frame(HEADERS, b"\x83\x86\x44\x0f/runtime.v1/Version", flags=0x4, stream=1)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def test_empty_settings_is_the_nine_byte_frame() -> None:
    assert EMPTY_SETTINGS == b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    assert len(CLIENT_PREFACE) == 24


def test_scanner_reports_preface_and_frames_with_offsets() -> None:
    stream = CLIENT_PREFACE + CLIENT_SETTINGS + SETTINGS_ACK + HEADERS_1
    items = FrameScanner().feed(stream)
    assert items[0] == Preface(0, 24)
    frames = [i for i in items if isinstance(i, Frame)]
    assert [(f.type_name, f.flags, f.stream_id) for f in frames] == [("SETTINGS", 0, 0), ("SETTINGS", ACK, 0),
                                                                     ("HEADERS", 0x4, 1)]
    assert frames[0].start == 24 and frames[0].end == 24 + len(CLIENT_SETTINGS)
    assert frames[1].is_settings_ack and frames[2].is_headers
    assert frames[2].end == len(stream)


def test_scanner_reports_a_frame_as_soon_as_its_header_is_complete() -> None:
    sc = FrameScanner(client=False)
    big = frame(DATA, b"x" * 1000, stream=1)
    assert sc.feed(big[:8]) == []
    assert sc.partial_header_len == 8
    (f,) = sc.feed(big[8:20])
    assert f.length == 1000 and not sc.at_boundary
    assert sc.feed(big[20:]) == [] and sc.at_boundary


def test_scanner_rejects_a_non_http2_stream() -> None:
    with pytest.raises(HandshakeError, match="not an HTTP/2 client preface"):
        FrameScanner().feed(b"GET / HTTP/1.1\r\n\r\n")
    sc = FrameScanner()
    sc.feed(CLIENT_PREFACE[:10])
    with pytest.raises(HandshakeError):
        sc.feed(b"X")


def test_injector_drops_only_the_first_settings_ack() -> None:
    stream = CLIENT_PREFACE + CLIENT_SETTINGS + SETTINGS_ACK + HEADERS_1 + SETTINGS_ACK + frame(PING, b"12345678")
    inj = SettingsInjector()
    out = inj.feed(stream)
    assert out == CLIENT_PREFACE + CLIENT_SETTINGS + HEADERS_1 + SETTINGS_ACK + frame(PING, b"12345678")
    assert inj.headers_seen and inj.ack_dropped and inj.passthrough
    assert inj.first_headers is not None and inj.first_headers.stream_id == 1


def test_injector_holds_a_partial_header_until_it_knows_it() -> None:
    inj = SettingsInjector()
    assert inj.feed(CLIENT_PREFACE + CLIENT_SETTINGS + SETTINGS_ACK[:5]) == CLIENT_PREFACE + CLIENT_SETTINGS
    assert inj.feed(SETTINGS_ACK[5:]) == b""  # it was the ACK
    assert not inj.headers_seen
    # Once the ACK is gone nothing needs holding back: a partial header goes straight through.
    assert inj.feed(HEADERS_1[:3]) == HEADERS_1[:3]
    assert inj.feed(HEADERS_1[3:]) == HEADERS_1[3:] and inj.headers_seen


def test_injector_without_dropping_only_watches_for_headers() -> None:
    inj = SettingsInjector(drop_first_ack=False)
    head = CLIENT_PREFACE + CLIENT_SETTINGS + SETTINGS_ACK
    assert inj.feed(head) == head and not inj.headers_seen
    assert inj.feed(HEADERS_1) == HEADERS_1 and inj.headers_seen and inj.passthrough


def test_headers_before_the_ack_still_drops_the_ack() -> None:
    stream = CLIENT_PREFACE + CLIENT_SETTINGS + HEADERS_1 + frame(DATA, b"abc", stream=1) + SETTINGS_ACK + SETTINGS_ACK
    inj = SettingsInjector()
    out = inj.feed(stream)
    assert out == CLIENT_PREFACE + CLIENT_SETTINGS + HEADERS_1 + frame(DATA, b"abc", stream=1) + SETTINGS_ACK


def test_an_ack_with_a_payload_is_dropped_whole() -> None:
    odd_ack = frame(SETTINGS, b"\x00" * 6, flags=ACK)
    inj = SettingsInjector()
    assert inj.feed(CLIENT_PREFACE + odd_ack + HEADERS_1) == CLIENT_PREFACE + HEADERS_1


# ---- properties: any chunking of a frame stream gives the same output -----------------------------

_frames = st.one_of(
    st.builds(lambda p: frame(DATA, p, stream=1), st.binary(max_size=40)),
    st.builds(lambda p: frame(HEADERS, p, flags=0x4, stream=3), st.binary(max_size=40)),
    st.just(SETTINGS_ACK),
    st.just(CLIENT_SETTINGS),
    st.builds(lambda p: frame(PING, p), st.binary(min_size=8, max_size=8)),
    st.builds(lambda p: frame(WINDOW_UPDATE, p), st.binary(min_size=4, max_size=4)),
    st.builds(lambda p: frame(0xFA, p, flags=0xFF, stream=7), st.binary(max_size=10)),  # unknown type
)


def _reference(frames: list[bytes], drop: bool) -> tuple[bytes, bool]:
    """What the injector must output, computed frame by frame."""
    out = bytearray(CLIENT_PREFACE)
    dropped = False
    seen_headers = False
    for f in frames:
        if drop and not dropped and f[3] == SETTINGS and f[4] & ACK:
            dropped = True
            continue
        seen_headers = seen_headers or f[3] == HEADERS
        out += f
    return bytes(out), seen_headers


@given(st.lists(_frames, max_size=12), st.lists(st.integers(0, 10_000), max_size=20), st.booleans())
def test_any_chunking_gives_the_reference_output(frames: list[bytes], cuts: list[int], drop: bool) -> None:
    stream = CLIENT_PREFACE + b"".join(frames)
    want, headers = _reference(frames, drop)
    inj = SettingsInjector(drop_first_ack=drop)
    got = b"".join(inj.feed(c) for c in chunks(stream, cuts)) + inj.flush()
    assert got == want
    assert inj.headers_seen == headers


@given(st.lists(_frames, max_size=12), st.lists(st.integers(0, 10_000), max_size=20))
def test_scanner_finds_the_same_frames_in_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    stream = CLIENT_PREFACE + b"".join(frames)
    whole = FrameScanner().feed(stream)
    sc = FrameScanner()
    parts = [item for c in chunks(stream, cuts) for item in sc.feed(c)]
    assert parts == whole
    assert len([i for i in whole if isinstance(i, Frame)]) == len(frames)
    assert sc.at_boundary and sc.offset == len(stream)


@given(st.lists(_frames, max_size=12), st.lists(st.integers(0, 10_000), max_size=20))
def test_output_is_never_held_longer_than_a_partial_header(frames: list[bytes], cuts: list[int]) -> None:
    stream = CLIENT_PREFACE + b"".join(frames)
    inj = SettingsInjector()
    fed = b""
    out = b""
    for c in chunks(stream, cuts):
        fed += c
        out += inj.feed(c)
        want = _reference_prefix(fed)
        assert 0 <= len(want) - len(out) <= 8
        assert want.startswith(out)


def _reference_prefix(fed: bytes) -> bytes:
    """Reference output for a prefix of a stream: complete frame headers by the rule, then the raw tail."""
    out = bytearray(fed[:24])
    i, dropped = 24, False
    while i + 9 <= len(fed):
        length = int.from_bytes(fed[i:i + 3], "big")
        is_ack = fed[i + 3] == SETTINGS and fed[i + 4] & ACK
        end = i + 9 + length
        if is_ack and not dropped:
            dropped = True
        else:
            out += fed[i:end]
        i = end
    return bytes(out + fed[i:])
