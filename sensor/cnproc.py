"""The kernel's proc connector wire format: netlink datagrams in, typed process events out.

Theory of operation
-------------------
Sans-IO, like ``h11``: ``decode(datagram)`` takes the bytes of one ``recv`` on a
``NETLINK_CONNECTOR`` socket and returns what they say; ``subscribe_message`` builds the bytes
that ask the kernel to start (or stop) sending. No socket, no clock, no ``/proc`` here; the shell
(``sensor.procsource``) does the I/O. ``decode`` never raises: bytes that do not parse become a
``Malformed`` value naming the offset and the problem, so hostile or truncated input is counted,
never fatal.

Layout (all integers in host byte order, as the kernel writes them)::

    nlmsghdr   len u32, type u16, flags u16, seq u32, pid u32                 16 bytes
    cn_msg     idx u32, val u32, seq u32, ack u32, len u16, flags u16          20 bytes
    proc_event what u32, cpu u32, timestamp_ns u64, then the event's fields    16 + ...

One datagram may carry several netlink messages, each padded to 4 bytes. ``timestamp_ns`` is the
kernel's monotonic clock (nanoseconds since boot, ``CLOCK_MONOTONIC``), not wall time: the shell
converts it with a measured offset (``sensor.procsource.ClockOffset``).

Only proc-connector messages (``idx == CN_IDX_PROC``, ``val == CN_VAL_PROC``) are decoded;
``NLMSG_ERROR`` with a non-zero errno is reported as ``NetlinkError``, ``NLMSG_OVERRUN`` as
``Overrun``; everything else the kernel may add later (new ``what`` values) is ``Unknown``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "CN_IDX_PROC",
    "CN_VAL_PROC",
    "NETLINK_CONNECTOR",
    "PROC_CN_MCAST_IGNORE",
    "PROC_CN_MCAST_LISTEN",
    "Ack",
    "Exec",
    "Exit",
    "Fork",
    "Malformed",
    "Message",
    "NetlinkError",
    "Overrun",
    "Unknown",
    "decode",
    "encode_event",
    "subscribe_message",
]

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

PROC_EVENT_NONE = 0x00000000
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_PROC_EVENT = struct.Struct("=IIQ")
_FORK = struct.Struct("=iiii")
_EXEC = struct.Struct("=ii")
_EXIT = struct.Struct("=iiIIii")
_ACK = struct.Struct("=I")
_ERRNO = struct.Struct("=i")
_OP = struct.Struct("=I")

#: Where a proc_event starts inside one netlink message.
_EVENT_AT = _NLMSGHDR.size + _CN_MSG.size
#: The three headers at once, for the common case: one message per datagram, the size the kernel
#: sends (every exec costs one ``decode``; one unpack instead of three halves it).
_HEADERS = struct.Struct("=IHHII" "IIIIHH" "IIQ")
_KERNEL_SIZE = _HEADERS.size + 24


@dataclass(frozen=True, slots=True)
class Fork:
    """``parent`` (tgid) created ``child_pid`` in thread group ``child_tgid``."""

    mono_ns: int
    cpu: int
    parent_pid: int
    parent_tgid: int
    child_pid: int
    child_tgid: int


@dataclass(frozen=True, slots=True)
class Exec:
    """Thread ``pid`` of process ``tgid`` called execve successfully."""

    mono_ns: int
    cpu: int
    pid: int
    tgid: int


@dataclass(frozen=True, slots=True)
class Exit:
    """Thread ``pid`` of ``tgid`` exited; ``exit_code`` is the wait status, as ``waitpid`` gives it."""

    mono_ns: int
    cpu: int
    pid: int
    tgid: int
    exit_code: int
    exit_signal: int
    parent_pid: int
    parent_tgid: int


@dataclass(frozen=True, slots=True)
class Ack:
    """The kernel's answer to a subscribe request: ``err`` 0 means it is listening."""

    err: int


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-formed message this decoder does not interpret (another ``what``, another connector)."""

    what: int
    mono_ns: int = 0


@dataclass(frozen=True, slots=True)
class NetlinkError:
    """``NLMSG_ERROR`` carrying a (positive) errno."""

    errno: int


@dataclass(frozen=True, slots=True)
class Overrun:
    """``NLMSG_OVERRUN``: the kernel says data was lost."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """Bytes that do not parse; ``offset`` is where in the datagram the problem is."""

    offset: int
    problem: str


Message = Fork | Exec | Exit | Ack | Unknown | NetlinkError | Overrun | Malformed


def _align4(n: int) -> int:
    return (n + 3) & ~3


def decode(data: bytes) -> list[Message]:
    """Every message of one datagram, in order. Never raises; stops at the first malformed one."""
    if len(data) == _KERNEL_SIZE:
        length, typ, _f, _s, _p, idx, val, _cs, _ca, clen, _cf, what, cpu, ts = _HEADERS.unpack_from(data)
        if (length == _KERNEL_SIZE and typ == NLMSG_DONE and idx == CN_IDX_PROC and val == CN_VAL_PROC
                and clen == 40):
            if what == PROC_EVENT_EXEC:
                return [Exec(ts, cpu, *_EXEC.unpack_from(data, _HEADERS.size))]
            if what == PROC_EVENT_FORK:
                return [Fork(ts, cpu, *_FORK.unpack_from(data, _HEADERS.size))]
            if what == PROC_EVENT_EXIT:
                return [Exit(ts, cpu, *_EXIT.unpack_from(data, _HEADERS.size))]
    return decode_all(data)


def decode_all(data: bytes) -> list[Message]:
    """``decode`` without its fast path for the kernel's usual datagram (the tests compare them)."""
    out: list[Message] = []
    off = 0
    end = len(data)
    while off < end:
        if end - off < _NLMSGHDR.size:
            out.append(Malformed(off, f"{end - off} trailing bytes, shorter than a netlink header"))
            break
        length, typ, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > end:
            out.append(Malformed(off, f"netlink length {length} does not fit the {end - off} bytes left"))
            break
        out.append(_message(data, off, length, typ))
        off += _align4(length)
    return out


def _message(data: bytes, off: int, length: int, typ: int) -> Message:
    body = off + _NLMSGHDR.size
    if typ == NLMSG_ERROR:
        if length < _NLMSGHDR.size + _ERRNO.size:
            return Malformed(off, "NLMSG_ERROR without an errno")
        (err,) = _ERRNO.unpack_from(data, body)
        return Ack(0) if err == 0 else NetlinkError(-err)
    if typ == NLMSG_OVERRUN:
        return Overrun()
    if typ != NLMSG_DONE:  # the connector sends its payload as NLMSG_DONE; NOOP and others carry none
        return Unknown(what=-typ)
    if length < _EVENT_AT:
        return Malformed(off, f"netlink length {length} too short for a connector message")
    idx, val, _seq, _ack, clen, _cflags = _CN_MSG.unpack_from(data, body)
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
        return Unknown(what=-1)
    payload = off + _EVENT_AT
    avail = min(clen, off + length - payload)
    if clen > off + length - payload:
        return Malformed(off, f"connector length {clen} exceeds the {off + length - payload} bytes of its message")
    return _proc_event(data, payload, avail, off)


def _proc_event(data: bytes, at: int, avail: int, off: int) -> Message:
    if avail < _PROC_EVENT.size:
        return Malformed(off, f"proc_event of {avail} bytes, shorter than its {_PROC_EVENT.size}-byte header")
    what, cpu, ts = _PROC_EVENT.unpack_from(data, at)
    fields = at + _PROC_EVENT.size
    room = avail - _PROC_EVENT.size
    shape = {PROC_EVENT_FORK: _FORK, PROC_EVENT_EXEC: _EXEC, PROC_EVENT_EXIT: _EXIT, PROC_EVENT_NONE: _ACK}.get(what)
    if shape is None:
        return Unknown(what=what, mono_ns=ts)
    if room < shape.size:
        return Malformed(off, f"event 0x{what:x} has {room} bytes of fields, needs {shape.size}")
    values = shape.unpack_from(data, fields)
    if what == PROC_EVENT_EXEC:
        return Exec(ts, cpu, *values)
    if what == PROC_EVENT_FORK:
        return Fork(ts, cpu, *values)
    if what == PROC_EVENT_EXIT:
        return Exit(ts, cpu, *values)
    return Ack(values[0])


def subscribe_message(port_id: int, *, listen: bool = True, seq: int = 0) -> bytes:
    """The datagram that starts (``listen``) or stops the kernel's proc events for ``port_id``."""
    op = _OP.pack(PROC_CN_MCAST_LISTEN if listen else PROC_CN_MCAST_IGNORE)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, 0, len(op), 0) + op
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, seq, port_id) + cn


def encode_event(ev: Fork | Exec | Exit | Ack, *, seq: int = 0) -> bytes:
    """The datagram the kernel would send for ``ev`` (for tests, benchmarks and replays)."""
    if isinstance(ev, Exec):
        what, mono, cpu, fields = PROC_EVENT_EXEC, ev.mono_ns, ev.cpu, _EXEC.pack(ev.pid, ev.tgid)
    elif isinstance(ev, Fork):
        what, mono, cpu = PROC_EVENT_FORK, ev.mono_ns, ev.cpu
        fields = _FORK.pack(ev.parent_pid, ev.parent_tgid, ev.child_pid, ev.child_tgid)
    elif isinstance(ev, Exit):
        what, mono, cpu = PROC_EVENT_EXIT, ev.mono_ns, ev.cpu
        fields = _EXIT.pack(ev.pid, ev.tgid, ev.exit_code, ev.exit_signal, ev.parent_pid, ev.parent_tgid)
    else:
        what, mono, cpu, fields = PROC_EVENT_NONE, 0, 0, _ACK.pack(ev.err)
    # The kernel sizes every proc_event as the whole union (24 bytes of fields): pad like it does.
    body = _PROC_EVENT.pack(what, cpu, mono) + fields.ljust(24, b"\0")
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, 0, len(body), 0) + body
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, seq, 0) + cn
