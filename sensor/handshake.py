"""HTTP/2 handshake bytes: a pure frame scanner and the SETTINGS-injection state machine.

Why this exists (DESIGN.md section 6)
-------------------------------------
Old CRI-O (<= 1.15.1) put ``cmux`` in front of its gRPC server. cmux sends nothing -- not even
the HTTP/2 server preface (a SETTINGS frame) -- until it has seen the client's first HEADERS
frame. gRPC clients that wait for the server preface before sending a request (gRPC C-core and
so grpcio always, grpc-go >= 1.17 by default) therefore hang until their deadline. Fixed CRI-O
sends an empty SETTINGS frame itself while sniffing. Two byte-level shells use this module:

* ``fakecri.relay`` emulates both CRI-O behaviours in front of the fake's gRPC server;
* the sensor's ``GRPC_GO_REQUIRE_HANDSHAKE=off`` shim sits between grpcio and an old CRI-O and
  does what fixed CRI-O does: give the client an empty SETTINGS at once.

Whoever injects a SETTINGS frame must also remove the client's ACK for it: the server behind
never sent that SETTINGS, and a gRPC C-core server fails the connection on a stray ACK
("Received unexpected settings ack"). Because a client acknowledges SETTINGS frames in the
order it received them, and the injected frame reaches the client before any byte of the real
server, the client's *first* SETTINGS ACK is always the one for the injected frame.

Theory of operation
-------------------
Rule 1: no I/O. Bytes go in (``feed``) and bytes or frame descriptions come out; the caller
owns the sockets. So every behaviour is testable without a socket, and any chunking of the same
byte stream gives the same result (a hypothesis test checks this).

Rule 2: only frame *headers* are parsed. A frame is a 9-byte header (24-bit payload length,
8-bit type, 8-bit flags, 1 reserved bit + 31-bit stream ID) followed by ``length`` payload
bytes; the scanner skips payloads without buffering them, so its memory use is at most one
partial header (8 bytes).

Rule 3: the client-to-server stream starts with the fixed 24-byte client preface
(``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``); anything else is not HTTP/2 and raises
``HandshakeError`` (cmux would route such bytes elsewhere; we just refuse them).

``SettingsInjector`` states (client-to-server direction)::

    state        on                         -> state        output
    preface      24 preface bytes            -> frames       forwarded
    frames       frame != SETTINGS+ACK       -> frames       forwarded (HEADERS also sets headers_seen)
    frames       first SETTINGS+ACK          -> frames       dropped   (ack_dropped = True)
    frames       headers_seen and ack_dropped -> passthrough  (no more parsing)
    passthrough  any bytes                   -> passthrough  forwarded unchanged

While the ACK has not been dropped yet, a frame header is released only once all 9 bytes are
known (it might be the ACK); everything else is forwarded as soon as it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACK",
    "CLIENT_PREFACE",
    "EMPTY_SETTINGS",
    "FRAME_HEADER_LEN",
    "FRAME_TYPES",
    "HEADERS",
    "SETTINGS",
    "Frame",
    "FrameScanner",
    "HandshakeError",
    "Preface",
    "SettingsInjector",
    "frame_header",
]

#: The client connection preface (RFC 9113 section 3.4).
CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LEN = 9

FRAME_TYPES = {
    0x0: "DATA", 0x1: "HEADERS", 0x2: "PRIORITY", 0x3: "RST_STREAM", 0x4: "SETTINGS", 0x5: "PUSH_PROMISE",
    0x6: "PING", 0x7: "GOAWAY", 0x8: "WINDOW_UPDATE", 0x9: "CONTINUATION",
}
HEADERS = 0x1
SETTINGS = 0x4
#: The ACK flag of SETTINGS and PING frames.
ACK = 0x1


def frame_header(length: int, type_: int, flags: int = 0, stream_id: int = 0) -> bytes:
    """The 9-byte header of a frame (the caller appends ``length`` payload bytes)."""
    if not 0 <= length < 1 << 24 or not 0 <= type_ < 256 or not 0 <= flags < 256 or not 0 <= stream_id < 1 << 31:
        raise ValueError(f"frame header field out of range: {length=} {type_=} {flags=} {stream_id=}")
    return length.to_bytes(3, "big") + bytes((type_, flags)) + stream_id.to_bytes(4, "big")


#: An empty SETTINGS frame: what fixed CRI-O sends while it sniffs, and what the shim injects.
EMPTY_SETTINGS = frame_header(0, SETTINGS)


class HandshakeError(ValueError):
    """The byte stream is not HTTP/2 (a bad client preface)."""


@dataclass(frozen=True)
class Preface:
    """The client preface, at byte offsets ``[start, end)`` of the stream."""

    start: int
    end: int


@dataclass(frozen=True)
class Frame:
    """A frame whose header starts at byte offset ``start`` of the stream.

    Reported as soon as its 9-byte header is complete; the payload may still be in flight.
    """

    start: int
    length: int
    type: int
    flags: int
    stream_id: int

    @property
    def end(self) -> int:
        """Offset one past the frame's last payload byte."""
        return self.start + FRAME_HEADER_LEN + self.length

    @property
    def type_name(self) -> str:
        return FRAME_TYPES.get(self.type, f"0x{self.type:x}")

    @property
    def is_headers(self) -> bool:
        return self.type == HEADERS

    @property
    def is_settings_ack(self) -> bool:
        return self.type == SETTINGS and bool(self.flags & ACK)


class FrameScanner:
    """Incremental HTTP/2 frame-boundary scanner for one direction of a connection.

    ``feed(data)`` returns the ``Preface``/``Frame`` items whose headers completed within
    ``data``; offsets count bytes since the start of the stream. ``client=True`` expects the
    24-byte client preface first (client-to-server direction); ``client=False`` scans a
    server-to-client stream, which starts directly with frames.
    """

    def __init__(self, *, client: bool = True) -> None:
        self.offset = 0  #: bytes consumed so far
        self._preface_left = len(CLIENT_PREFACE) if client else 0
        self._header = bytearray()  # a partial frame header
        self._skip = 0  # payload bytes of the current frame still to come

    @property
    def preface_done(self) -> bool:
        return self._preface_left == 0

    @property
    def at_boundary(self) -> bool:
        """True when the bytes consumed so far end exactly between two frames."""
        return self.preface_done and not self._header and self._skip == 0

    @property
    def partial_header_len(self) -> int:
        """How many bytes of a not yet complete frame header end the stream so far (0..8)."""
        return len(self._header)

    def feed(self, data: bytes) -> list[Preface | Frame]:
        out: list[Preface | Frame] = []
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n:
            if self._preface_left:
                done = len(CLIENT_PREFACE) - self._preface_left
                take = min(self._preface_left, n - i)
                if bytes(view[i:i + take]) != CLIENT_PREFACE[done:done + take]:
                    raise HandshakeError(
                        f"not an HTTP/2 client preface at byte {self.offset + i}: "
                        f"{bytes(view[i:i + take])!r} (expected {CLIENT_PREFACE!r})")
                self._preface_left -= take
                i += take
                if not self._preface_left:
                    out.append(Preface(self.offset + i - len(CLIENT_PREFACE), self.offset + i))
            elif self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
            else:
                take = min(FRAME_HEADER_LEN - len(self._header), n - i)
                self._header += view[i:i + take]
                i += take
                if len(self._header) == FRAME_HEADER_LEN:
                    h = self._header
                    frame = Frame(start=self.offset + i - FRAME_HEADER_LEN, length=int.from_bytes(h[0:3], "big"),
                                  type=h[3], flags=h[4], stream_id=int.from_bytes(h[5:9], "big") & 0x7FFF_FFFF)
                    self._header = bytearray()
                    self._skip = frame.length
                    out.append(frame)
        self.offset += n
        return out


class SettingsInjector:
    """The client-to-server half of a relay or shim that injected an empty SETTINGS frame.

    ``feed(data)`` takes client bytes and returns the bytes to forward to the server: the same
    bytes, minus the client's first SETTINGS ACK frame if ``drop_first_ack`` (the ACK for the
    injected ``EMPTY_SETTINGS``, which the caller sends to the client itself, before any server
    byte). ``headers_seen`` turns true once the client's first HEADERS frame header has been
    fed -- the moment cmux starts answering. With ``drop_first_ack=False`` nothing is removed and
    the object only watches for HEADERS (old-cmux emulation).

    Concatenating ``feed`` results over any chunking of a stream gives the same bytes.
    """

    def __init__(self, *, drop_first_ack: bool = True) -> None:
        self.drop_first_ack = drop_first_ack
        self.headers_seen = False
        self.ack_dropped = False
        self.first_headers: Frame | None = None
        self._scanner = FrameScanner(client=True)
        self._held = bytearray()  # a partial frame header that might be the ACK
        self._dropping = 0  # payload bytes of the dropped frame still to discard

    @property
    def passthrough(self) -> bool:
        """True once nothing more will be inspected or removed: ``feed`` returns its input."""
        return self.headers_seen and (self.ack_dropped or not self.drop_first_ack)

    def feed(self, data: bytes) -> bytes:
        if self.passthrough:
            return bytes(data)
        out = bytearray()
        base = self._scanner.offset
        items = self._scanner.feed(data)
        watching_ack = self.drop_first_ack and not self.ack_dropped
        # Walk ``data`` alongside the items the scanner found in it.
        pos = 0  # next unhandled index into data
        for item in items:
            if isinstance(item, Preface):
                continue
            hdr_end = item.start + FRAME_HEADER_LEN - base  # index into data just past this header
            hdr_start = max(item.start - base, 0)
            # Bytes before this header (payload of earlier frames, preface) go out unchanged.
            if self._dropping:
                skip = min(self._dropping, hdr_start - pos)
                self._dropping -= skip
                pos += skip
            out += data[pos:hdr_start]
            if item.is_headers and not self.headers_seen:
                self.headers_seen = True
                self.first_headers = item
            if watching_ack and item.is_settings_ack:
                self._held.clear()
                self.ack_dropped = True
                watching_ack = False
                self._dropping = item.length  # an ACK has no payload; drop any anyway
            else:
                out += self._held
                self._held.clear()
                out += data[hdr_start:hdr_end]
            pos = hdr_end
        # The tail: payload bytes, then possibly the start of a header that is not complete yet.
        if self._dropping:
            skip = min(self._dropping, len(data) - pos)
            self._dropping -= skip
            pos += skip
        cut = len(data)
        if watching_ack:  # a partial header might be the ACK: hold it until it is complete
            cut -= min(self._scanner.partial_header_len, len(data) - pos)
        out += data[pos:cut]
        self._held += data[cut:]
        return bytes(out)

    def flush(self) -> bytes:
        """Bytes still held back (a partial frame header at end of stream)."""
        held, self._held = bytes(self._held), bytearray()
        return held

