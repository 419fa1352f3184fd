"""Container log files in the CRI log format, as containerd writes them.

Theory of operation
-------------------
* Each line is ``<RFC3339Nano time> <stream> <tag> <text>\\n`` (the kubelet's CRI log format):
  ``stream`` is ``stdout``/``stderr``, ``tag`` ``F`` for a full line, ``P`` for a partial one.
* ``LineSplitter`` is the pure part: it takes a process's writes (time, stream, bytes) and
  hands out log lines the way containerd's log redirector does, recorded against real
  containerd 1.6 here: a line is written when its newline arrives (stamped with that time, so
  ``echo -n a; sleep 1; echo b`` gives one line ``ab`` one second later); a line longer than
  16 KiB (``max_container_log_line_size``) is cut into ``P`` pieces; what is left without a
  newline when the stream closes (the process exited or was killed) is written as ``P``.
  stdout and stderr are split independently.
* ``LogFiles`` is the thin I/O shell: one open file per container, opened (parent directories
  created, append mode) when the container starts, closed when it exits, and reopened by
  ``ReopenContainerLog`` -- so a client that renames the file for rotation sees the new lines in
  a fresh file only after it asked for the reopen, as with a real runtime. Nothing is rotated.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

log = logging.getLogger("fakecri.logs")

#: containerd's default ``max_container_log_line_size``.
MAX_LINE = 16 * 1024


@dataclass(frozen=True)
class LogLine:
    time_ns: int
    stream: str  # stdout or stderr
    partial: bool
    text: bytes


def rfc3339nano(t_ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: fraction digits without trailing zeros, none if zero."""
    secs, frac = divmod(t_ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def format_line(line: LogLine) -> bytes:
    tag = b"P" if line.partial else b"F"
    return b"%s %s %s %s\n" % (rfc3339nano(line.time_ns).encode(), line.stream.encode(), tag, line.text)


class LineSplitter:
    """Turns a process's writes into CRI log lines (see the module docstring)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def feed(self, time_ns: int, stream: str, data: bytes) -> list[LogLine]:
        buf = self._buf[stream] + data
        out: list[LogLine] = []
        while True:
            nl = buf.find(b"\n")
            if 0 <= nl <= self.max_line:
                out.append(LogLine(time_ns, stream, False, buf[:nl]))
                buf = buf[nl + 1:]
            elif len(buf) > self.max_line:
                out.append(LogLine(time_ns, stream, True, buf[:self.max_line]))
                buf = buf[self.max_line:]
            else:
                break
        self._buf[stream] = buf
        return out

    def close(self, time_ns: int) -> list[LogLine]:
        """The streams closed: what is left becomes ``P`` lines (stdout first)."""
        out = [LogLine(time_ns, s, True, b) for s, b in self._buf.items() if b]
        self._buf = {"stdout": b"", "stderr": b""}
        return out


class LogFiles:
    """Open container log files, by container ID. Errors are logged once per path, never raised:
    a client's unwritable log directory must not take the runtime's container down."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[str, IO[bytes]]] = {}
        self._failed: set[str] = set()

    def open(self, cid: str, path: str) -> None:
        self.close(cid)
        if not path:
            return
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._open[cid] = (path, open(path, "ab", buffering=0))  # noqa: SIM115 (closed by close())
        except (OSError, ValueError) as e:  # ValueError: a NUL in the path
            if path not in self._failed:
                self._failed.add(path)
                log.warning("cannot open container log %s: %s", path, e)

    def write(self, cid: str, lines: list[LogLine]) -> None:
        held = self._open.get(cid)
        if held is None or not lines:
            return
        try:
            held[1].write(b"".join(map(format_line, lines)))
        except OSError as e:
            if held[0] not in self._failed:
                self._failed.add(held[0])
                log.warning("cannot write container log %s: %s", held[0], e)

    def reopen(self, cid: str) -> None:
        held = self._open.get(cid)
        if held is not None:
            self.open(cid, held[0])

    def close(self, cid: str) -> None:
        held = self._open.pop(cid, None)
        if held is not None:
            held[1].close()

    def close_all(self) -> None:
        for cid in list(self._open):
            self.close(cid)
