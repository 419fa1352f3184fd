"""The proc connector decoder: real-shaped datagrams, every truncation, arbitrary bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sensor import cnproc
from sensor.cnproc import Ack, Exec, Exit, Fork, Malformed, NetlinkError, Overrun, Unknown, decode

#: Datagrams captured from this machine's kernel (6.18): the subscribe ack, a fork, an exec, an exit.
REAL = {
    "ack": "4c0000000300000099030000000000000100000001000000990300000100000028000000000000000000000039d7241a38"
           "000000000000000000000000000000000000000000000000000000",
    "fork": "4c000000030000009a0300000000000001000000010000009a03000000000000280000000100000000000000f869261a38"
            "000000051f0000051f00002e1f00002e1f00000000000000000000",
    "exec": "4c000000030000009b0300000000000001000000010000009b03000000000000280000000200000000000000a859291a38"
            "0000002e1f00002e1f000000000000000000000000000000000000",
    "exit": "4c000000030000009c0300000000000001000000010000009c03000000000000280000000000008000000000240b301a38"
            "0000002e1f00002e1f00000000000011000000051f0000051f0000",
}


def _exec(pid: int = 7389, mono: int = 173596722020, cpu: int = 1) -> Exec:
    return Exec(mono_ns=mono, cpu=cpu, pid=pid, tgid=pid)


def test_real_kernel_datagrams_decode() -> None:
    got = {name: decode(bytes.fromhex(raw)) for name, raw in REAL.items()}
    assert got["ack"] == [Ack(0)]
    assert got["fork"] == [Fork(mono_ns=0x381A2669F8, cpu=0, parent_pid=7941, parent_tgid=7941, child_pid=7982,
                                child_tgid=7982)]
    assert got["exec"] == [Exec(mono_ns=0x381A2959A8, cpu=0, pid=7982, tgid=7982)]
    assert got["exit"] == [Exit(mono_ns=0x381A300B24, cpu=0, pid=7982, tgid=7982, exit_code=0, exit_signal=17,
                                parent_pid=7941, parent_tgid=7941)]
    # and the encoder writes what the kernel wrote, but for the header's seq/pid fields
    assert cnproc.encode_event(got["exec"][0])[36:] == bytes.fromhex(REAL["exec"])[36:]


@pytest.mark.parametrize("ev", [
    _exec(),
    Fork(mono_ns=1, cpu=0, parent_pid=62, parent_tgid=1, child_pid=7390, child_tgid=4955),
    Exit(mono_ns=2**63, cpu=3, pid=7389, tgid=7389, exit_code=0x100, exit_signal=17, parent_pid=7348,
         parent_tgid=7348),
    Ack(5),
])
def test_round_trip(ev: object) -> None:
    assert decode(cnproc.encode_event(ev)) == [ev]  # type: ignore[arg-type]


def test_kernel_sized_messages_are_76_bytes() -> None:
    # What recv returned on this machine for each event: 16 + 20 + 16 + 24.
    assert len(cnproc.encode_event(_exec())) == 76


def test_several_messages_in_one_datagram() -> None:
    a, b = cnproc.encode_event(_exec(1)), cnproc.encode_event(_exec(2))
    assert decode(a + b) == [_exec(1), _exec(2)]


def test_subscribe_message_layout() -> None:
    msg = cnproc.subscribe_message(1234)
    length, typ, _flags, _seq, port = struct.unpack_from("=IHHII", msg)
    assert (length, typ, port) == (len(msg), 3, 1234) and len(msg) == 40
    idx, val, _s, _a, clen, _f = struct.unpack_from("=IIIIHH", msg, 16)
    assert (idx, val, clen) == (1, 1, 4)
    assert struct.unpack_from("=I", msg, 36) == (cnproc.PROC_CN_MCAST_LISTEN,)
    assert struct.unpack_from("=I", cnproc.subscribe_message(1, listen=False), 36) == (cnproc.PROC_CN_MCAST_IGNORE,)


def test_unknown_what_is_unknown_not_malformed() -> None:
    raw = bytearray(cnproc.encode_event(_exec()))
    struct.pack_into("=I", raw, 36, 0x200)  # PROC_EVENT_COMM
    (msg,) = decode(bytes(raw))
    assert msg == Unknown(what=0x200, mono_ns=173596722020)


def test_other_connector_is_unknown() -> None:
    raw = bytearray(cnproc.encode_event(_exec()))
    struct.pack_into("=I", raw, 16, 7)
    assert decode(bytes(raw)) == [Unknown(what=-1)]


def test_netlink_error_and_overrun() -> None:
    err = struct.pack("=IHHII", 20, 2, 0, 0, 0) + struct.pack("=i", -105)
    assert decode(err) == [NetlinkError(105)]
    assert decode(struct.pack("=IHHII", 20, 2, 0, 0, 0) + struct.pack("=i", 0)) == [Ack(0)]
    assert decode(struct.pack("=IHHII", 16, 4, 0, 0, 0)) == [Overrun()]


@pytest.mark.parametrize("cut", range(1, 76))
def test_every_truncation_is_malformed_or_a_shorter_exact_event(cut: int) -> None:
    raw = cnproc.encode_event(_exec())[:cut]
    out = decode(raw)
    assert len(out) == 1 and isinstance(out[0], Malformed)


def test_lengths_that_lie_are_malformed() -> None:
    raw = bytearray(cnproc.encode_event(_exec()))
    struct.pack_into("=H", raw, 32, 200)  # connector length past the message
    assert isinstance(decode(bytes(raw))[0], Malformed)
    struct.pack_into("=I", raw, 0, 8)  # netlink length shorter than its own header
    assert isinstance(decode(bytes(raw))[0], Malformed)


@given(st.binary(max_size=300))
@example(b"")
@example(b"\x00" * 16)
@example(struct.pack("=IHHII", 36, 3, 0, 0, 0) + struct.pack("=IIIIHH", 1, 1, 0, 0, 0, 0))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for msg in decode(data):
        assert isinstance(msg, Ack | Exec | Exit | Fork | Unknown | NetlinkError | Overrun | Malformed)


_events = st.one_of(
    st.builds(Exec, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(-2**31, 2**31 - 1),
              st.integers(-2**31, 2**31 - 1)),
    st.builds(Fork, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), *[st.integers(-2**31, 2**31 - 1)] * 4),
    st.builds(Exit, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(-2**31, 2**31 - 1),
              st.integers(-2**31, 2**31 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
              st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1)),
)


@given(st.lists(_events, max_size=5), st.data())
def test_streams_of_events_round_trip_and_corruption_stays_contained(evs: list, data: st.DataObject) -> None:
    raw = b"".join(cnproc.encode_event(e) for e in evs)
    assert decode(raw) == evs
    if raw:
        # flip one byte: decoding still never raises, and what precedes the damaged message survives
        i = data.draw(st.integers(0, len(raw) - 1))
        bad = raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]
        out = decode(bad)
        intact = i // 76
        assert out[:intact] == evs[:intact]


@given(st.binary(min_size=76, max_size=76), st.sampled_from([0, 1, 2, 0x80000000, 0x200]), st.booleans())
def test_the_fast_path_agrees_with_the_general_decoder(noise: bytes, what: int, realistic: bool) -> None:
    data = bytearray(noise)
    if realistic:  # valid headers, arbitrary fields: the fast path's territory
        data[:52] = cnproc.encode_event(_exec())[:52]
        struct.pack_into("=I", data, 36, what)
    assert decode(bytes(data)) == cnproc.decode_all(bytes(data))
