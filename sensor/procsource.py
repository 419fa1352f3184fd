"""The kernel process source: the proc connector's socket, a reader thread, ``/proc`` reads.

Theory of operation
-------------------
The thin shell around ``sensor.cnproc`` (the wire format) and ``sensor.exectrack`` (attribution).
``KernelProcessSource`` is a ``sensor.process.ProcessSource``: ``poll(now_ns)`` hands over the exec
events its reader thread has queued; ``progress_ns()`` says how far that is complete.

* Socket. ``NETLINK_CONNECTOR`` datagram socket bound to the proc connector's multicast group,
  then ``PROC_CN_MCAST_LISTEN``; the kernel's ack says whether it listens. It needs
  CAP_NET_ADMIN and the host's PID, user and network namespaces (a DaemonSet with hostPID and
  hostNetwork); ``probe`` names what is missing. The receive buffer is raised (``SO_RCVBUFFORCE``
  as root, else ``SO_RCVBUF``) so that bursts queue in the kernel rather than drop.
* Reader thread. Owned by the source: ``start`` starts it, ``close`` wakes it through a pipe
  (no polling timeout), unsubscribes, closes the socket and joins it. It decodes each datagram,
  feeds the tracker (which reads ``/proc``) and queues the exec events.
* Drops are never silent. ``ENOBUFS`` on ``recv`` (the kernel's buffer overflowed) and
  ``NLMSG_OVERRUN`` mean lost messages: the tracker forgets its caches (``ExecTracker.lost``), the
  drop is counted, and ``on_gap(lo_ns, hi_ns, why)`` is called with the blind interval -- from the
  last message read before the loss to the moment it was noticed -- which ``crisensor run``
  writes as a ``sensor.gap`` event. The queue to ``poll`` is bounded too (``max_queued``); past it
  the oldest exec is dropped and reported the same way.
* Time. The kernel stamps messages with ``CLOCK_MONOTONIC``; ``ClockOffset`` maps them to wall
  time with an offset measured by bracketing one ``time_ns`` read between two monotonic reads
  (the narrowest of several brackets wins; its width bounds the error, ~1 µs here) and measured
  again every ``REMEASURE_S`` so that a stepped wall clock (NTP) is followed.
* Progress. The reader notes the wall time each time it has drained the socket (it is about to
  block); every exec before that instant has been queued. ``progress_ns`` is the last such note
  taken before ``poll`` drained the queue, less ``SKEW_NS`` for messages of other CPUs.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sensor import cnproc
from sensor.exectrack import ExecTracker
from sensor.process import ProcessEvent

__all__ = ["ClockOffset", "KernelProcessSource", "ProcFS", "open_connector", "probe"]

log = logging.getLogger("crisensor")

#: Receive buffer asked for: 8 MiB holds ~100,000 messages of 76 bytes (plus kernel overhead).
RCVBUF_BYTES = 8 << 20
#: The wall-clock offset is measured again this often.
REMEASURE_S = 10.0
#: Allowance for messages of other CPUs queued a little out of order.
SKEW_NS = 1_000_000
#: Exec events queued for ``poll`` at most.
MAX_QUEUED = 100_000
#: How long ``open_connector`` waits for the kernel's ack.
ACK_WAIT_S = 1.0


@dataclass
class ClockOffset:
    """Maps the kernel's monotonic ns to wall-clock ns: ``wall = mono + offset_ns``."""

    offset_ns: int = 0
    error_ns: int = 0

    @classmethod
    def measure(cls, mono: Callable[[], int] = time.monotonic_ns, wall: Callable[[], int] = time.time_ns,
                samples: int = 7) -> ClockOffset:
        best: tuple[int, int] | None = None
        for _ in range(samples):
            a = mono()
            w = wall()
            b = mono()
            width = b - a
            if best is None or width < best[0]:
                best = (width, w - (a + b) // 2)
        assert best is not None
        return cls(offset_ns=best[1], error_ns=(best[0] + 1) // 2)

    def to_wall(self, mono_ns: int) -> int:
        return mono_ns + self.offset_ns


class ProcFS:
    """``/proc`` as ``ExecTracker`` reads it: raw ``os`` calls (cheap), None when the process is gone."""

    def __init__(self, root: str = "/proc") -> None:
        self.root = root

    def _read(self, pid: int, name: str) -> bytes | None:
        try:
            fd = os.open(f"{self.root}/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if len(chunks) > 16:  # 1 MiB of cmdline or cgroup text is not a process we can describe
                    break
            return b"".join(chunks)
        except OSError:
            return None  # ESRCH: it exited while we read
        finally:
            os.close(fd)

    def cgroup(self, pid: int) -> str | None:
        raw = self._read(pid, "cgroup")
        return None if raw is None else raw.decode("utf-8", "replace")

    def cmdline(self, pid: int) -> tuple[str, ...] | None:
        raw = self._read(pid, "cmdline")
        if raw is None:
            return None
        return tuple(a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")) if raw else ()

    def exe(self, pid: int) -> str | None:
        try:
            return os.readlink(f"{self.root}/{pid}/exe")
        except OSError:
            return None


class ConnectorError(Exception):
    """The proc connector cannot be used; the message names the missing privilege or feature."""


def _explain(e: OSError, step: str) -> str:
    if e.errno in (errno.EPERM, errno.EACCES):
        return (f"the proc connector refused to {step} ({e.strerror}): it needs CAP_NET_ADMIN and the host's "
                "PID, user and network namespaces (run as root on the host, or a DaemonSet with hostPID, "
                "hostNetwork and CAP_NET_ADMIN)")
    if e.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
        return (f"this kernel has no proc connector ({e.strerror}): it needs CONFIG_CONNECTOR and "
                "CONFIG_PROC_EVENTS, or a network namespace where netlink connectors exist (hostNetwork)")
    return f"the proc connector failed to {step}: {e.strerror or e}"


def open_connector(rcvbuf: int = RCVBUF_BYTES) -> socket.socket:
    """A subscribed proc-connector socket, or ``ConnectorError`` saying why not."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, cnproc.NETLINK_CONNECTOR)
    except OSError as e:
        raise ConnectorError(_explain(e, "open a socket")) from None
    try:
        for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError:
                continue
        try:
            sock.bind((0, cnproc.CN_IDX_PROC))
        except OSError as e:
            raise ConnectorError(_explain(e, "join its multicast group")) from None
        port = sock.getsockname()[0]
        try:
            sock.send(cnproc.subscribe_message(port))
        except OSError as e:
            raise ConnectorError(_explain(e, "subscribe")) from None
        _await_ack(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def _await_ack(sock: socket.socket) -> None:
    """The kernel answers a subscribe with an ack (err 0) or an error; events may come first."""
    deadline = time.monotonic() + ACK_WAIT_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise ConnectorError("the proc connector did not acknowledge the subscription within "
                                 f"{ACK_WAIT_S:.0f} s (is this the host's network namespace? it needs hostNetwork)")
        try:
            data = sock.recv(65536)
        except OSError as e:
            raise ConnectorError(_explain(e, "acknowledge the subscription")) from None
        for msg in cnproc.decode(data):
            if isinstance(msg, cnproc.Ack):
                if msg.err:
                    raise ConnectorError(_explain(OSError(msg.err, os.strerror(msg.err)), "subscribe"))
                return
            if isinstance(msg, cnproc.NetlinkError):
                raise ConnectorError(_explain(OSError(msg.errno, os.strerror(msg.errno)), "subscribe"))


def probe() -> str | None:
    """None if this process can subscribe to the proc connector, else the reason it cannot."""
    try:
        sock = open_connector(rcvbuf=1 << 16)
    except ConnectorError as e:
        return str(e)
    _unsubscribe(sock)
    sock.close()
    return None


def _unsubscribe(sock: socket.socket) -> None:
    if getattr(sock, "family", None) != socket.AF_NETLINK:
        return  # a stand-in socket (tests): nothing subscribed
    with contextlib.suppress(OSError):
        sock.send(cnproc.subscribe_message(sock.getsockname()[0], listen=False))


GapCallback = Callable[[int, int, str], None]


class KernelProcessSource:
    """Exec events from the kernel (see the module docstring). ``sock`` and ``tracker`` may be
    injected (tests feed a socketpair and a fake ``/proc``)."""

    def __init__(self, *, sock: socket.socket | None = None, tracker: ExecTracker | None = None,
                 on_gap: GapCallback | None = None, now_ns: Callable[[], int] = time.time_ns,
                 max_queued: int = MAX_QUEUED, clock: ClockOffset | None = None) -> None:
        self.clock = clock or ClockOffset.measure()
        self.tracker = tracker or ExecTracker(ProcFS(), self.clock.to_wall)
        self.sock = sock
        self.on_gap = on_gap
        self.now_ns = now_ns
        self.max_queued = max_queued
        self.drops = 0  # loss episodes (ENOBUFS, overrun, queue overflow)
        self.datagrams = 0
        self._queue: collections.deque[ProcessEvent] = collections.deque()
        #: Set whenever exec events were queued: the analytics ticker waits on it.
        self.ready = threading.Event()
        #: Called with the container ID of every exec in a container (``sensor.lookup``).
        self.on_exec: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self._drained_ns = now_ns()
        self._progress = self._drained_ns - SKEW_NS
        self._last_msg_ns = self._drained_ns
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._remeasure_at = time.monotonic() + REMEASURE_S
        self.error: str | None = None

    # --- ProcessSource -----------------------------------------------------------------------------

    def poll(self, now_ns: int) -> list[ProcessEvent]:
        with self._lock:
            self._progress = self._drained_ns - SKEW_NS
            out = list(self._queue)
            self._queue.clear()
        return out

    def progress_ns(self) -> int:
        return self._progress

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> KernelProcessSource:
        if self.sock is None:
            self.sock = open_connector()
        self._thread = threading.Thread(target=self._run, name="crisensor-processes", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 1.0) -> None:
        """Wake the reader, unsubscribe, join it, close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.sock is not None:
            _unsubscribe(self.sock)
            self.sock.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- the reader thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        sock = self.sock
        assert sock is not None
        sock.setblocking(False)
        while not self._closed:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                with self._lock:
                    self._drained_ns = self.now_ns()
                try:
                    ready = select.select([sock, self._wake_r], [], [])[0]
                except (OSError, ValueError):
                    return
                if self._wake_r in ready:
                    return
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self._lost("the kernel dropped process events (receive buffer overflow)")
                    continue
                if not self._closed:
                    self.error = f"proc connector read failed: {e.strerror or e}"
                    log.error("crisensor: %s; process events stop", self.error)
                return
            self.datagrams += 1
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        now = self.now_ns()
        if time.monotonic() >= self._remeasure_at:
            fresh = ClockOffset.measure()
            self.clock.offset_ns, self.clock.error_ns = fresh.offset_ns, fresh.error_ns
            self._remeasure_at = time.monotonic() + REMEASURE_S
        tracker = self.tracker
        out: list[ProcessEvent] = []
        for msg in cnproc.decode(data):
            if isinstance(msg, cnproc.Overrun):
                self._lost("the kernel reported an overrun on the proc connector")
            ev = tracker.feed(msg, now)
            if ev is not None:
                out.append(ev)
                if self.on_exec is not None and ev.container_id is not None:
                    self.on_exec(ev.container_id)
        self._last_msg_ns = now
        if out:
            with self._lock:
                self._queue.extend(out)
                over = len(self._queue) - self.max_queued
                if over > 0:
                    first_lost = self._queue[0].time_ns
                    for _ in range(over):
                        self._queue.popleft()
                    last_lost = self._queue[0].time_ns if self._queue else now
            self.ready.set()
            if over > 0:
                self.drops += 1
                self._gap(first_lost, last_lost, f"{over} process events dropped: nobody consumed them in time")

    def _lost(self, why: str) -> None:
        self.drops += 1
        self.tracker.lost()
        self._gap(self._last_msg_ns, self.now_ns(), why)

    def _gap(self, lo: int, hi: int, why: str) -> None:
        log.warning("crisensor: %s; blind to processes for %.1f ms", why, max(0, hi - lo) / 1e6)
        if self.on_gap is not None:
            self.on_gap(lo, max(lo, hi), why)
