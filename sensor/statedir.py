"""The state directory: the I/O shell of ``sensor.state`` (crash-safe resume, G9; docs/state.md).

Theory of operation
-------------------
Three files in ``--state-dir`` (``crisensor.state_dir``)::

    lock       flock(2)ed while a sensor runs; holds its pid. A second sensor refuses to start.
    snapshot   one checksummed line: the whole image (``sensor.state.Image``), generation G.
    journal    a checksummed header line naming G, then one checksummed line per emitted batch.

Writes are atomic where they replace and append-only where they add:

* a batch costs one ``write(2)`` to the journal (``O_APPEND``), no fsync: what a killed process
  wrote is in the page cache and survives it (SIGKILL, OOM, a DaemonSet restart). The journal is
  ``fdatasync``ed at most once per ``sync_interval_ns`` (1 s) and at exit, so a power cut loses at
  most that much: the restarted sensor then repeats those events (never loses them);
* compaction (when the journal outgrows ``max(compact_min_bytes, the snapshot)``, and at every
  start) writes ``snapshot.tmp`` (G+1), fsyncs it, renames it over ``snapshot``, fsyncs the
  directory, then does the same with a fresh ``journal`` naming G+1. A kill between the two renames
  leaves a journal naming G beside a snapshot of G+1: stale, ignored (the snapshot holds it all).
  So the state is at most about twice the snapshot, and the snapshot is bounded by what exists.

Reading: the snapshot's checksum, then each journal line's. A bad LAST journal line is a torn
append (a crash mid-write): dropped, with one log line. Anything else that does not check out --
a bad snapshot, a bad line before the last, an unknown format -- is corruption: the files are moved
to ``corrupt-<time>/`` (the newest ``CORRUPT_KEPT`` are kept), one line is logged, and the sensor
starts fresh with a ``sensor.gap`` (``cause: "state lost"``), never a crash, never invented events.

``Keeper`` ties it to the sensor: ``PersistingEmitter`` (an ``Emitter``) calls ``before_emit``
(the resume relabelling of ``sensor.state``) and ``after_emit`` (the journal line) around every
batch. Lifecycle batches come under the poller's lock, so reading the engine there is safe; the
process source's batches only move ``seq``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.output import Emitter, OutputError
from sensor.state import (
    CorruptState,
    Image,
    Resumption,
    capture,
    decode_line,
    delta,
    encode_json,
    encode_line,
    highest_seq,
    restore,
)

log = logging.getLogger("crisensor")

LOCK = "lock"
SNAPSHOT = "snapshot"
JOURNAL = "journal"
TMP = ".tmp"
CORRUPT_PREFIX = "corrupt-"
#: Corrupt states set aside and kept for inspection (older ones are deleted).
CORRUPT_KEPT = 3
SYNC_INTERVAL_NS = 1_000_000_000
COMPACT_MIN_BYTES = 1 << 20
#: A steady-state poll (no events) updates the persisted poll times at most this often.
POLL_NOTE_NS = 1_000_000_000


class StateDirError(Exception):
    """The state directory cannot be used: ``str()`` is the one line users see; ``exit_code`` 2
    (unusable path: configuration) or 1 (in use by another sensor: runtime)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Loaded:
    """What ``StateDir.load`` found: an image (``None``: empty directory, a first start) or a
    problem (the state was set aside; ``lost_lo`` is when the old state last shows the sensor alive,
    ``seq_floor`` the highest seq any readable line named)."""

    image: Image | None
    problem: str | None = None
    lost_lo: int = 0
    seq_floor: int = 0
    aside: str | None = None


class StateDir:
    """The files (module docstring). Every file system step goes through ``_step`` first, so that
    tests can stop a sensor between any two of them (tests/sensor/test_state_killpoints.py)."""

    def __init__(self, path: str, *, sync_interval_ns: int = SYNC_INTERVAL_NS,
                 compact_min_bytes: int = COMPACT_MIN_BYTES, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self.sync_interval_ns = sync_interval_ns
        self.compact_min_bytes = compact_min_bytes
        self.now_ns = now_ns
        self.gen = 0
        self.snapshot_bytes = 0
        self.journal_bytes = 0
        self._lock_fd: int | None = None
        self._journal_fd: int | None = None
        self._synced_ns = 0
        self._unsynced = False

    # -- steps (a seam for kill-point tests) ------------------------------------------------------

    def _step(self, name: str) -> None:
        """Called before each file system step; tests raise here to abandon the sensor."""

    def _write(self, fd: int, data: bytes) -> None:
        self._step("write")
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def _fsync(self, fd: int) -> None:
        self._step("fsync")
        os.fsync(fd)

    def _rename(self, src: str, dst: str) -> None:
        self._step("rename")
        os.rename(src, dst)

    def _sync_dir(self) -> None:
        self._step("fsync-dir")
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- lock ------------------------------------------------------------------------------------

    def lock(self) -> None:
        """Create the directory if needed and take its lock; ``StateDirError`` when another sensor
        holds it (exit 1) or the directory is unusable (exit 2)."""
        where = f"state dir {self.path}"
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            fd = os.open(self._file(LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StateDirError(f"{where}: cannot use it: {e.strerror or e} (accepted: a writable directory, "
                                "or one that can be created; crisensor.state_dir / --state-dir)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_small(fd).strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateDirError(f"{where} is in use by another crisensor (pid {holder}, lock "
                                    f"{self._file(LOCK)}); stop it, or give each sensor its own state dir",
                                    exit_code=1) from None
            raise StateDirError(f"{where}: cannot lock {self._file(LOCK)}: {e.strerror or e}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        """Sync the journal and release the lock (idempotent)."""
        if self._journal_fd is not None:
            if self._unsynced:
                with contextlib.suppress(OSError):
                    os.fdatasync(self._journal_fd)
            os.close(self._journal_fd)
            self._journal_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # -- reading ---------------------------------------------------------------------------------

    def load(self) -> Loaded:
        """Read the state (module docstring). Never raises for what the files hold."""
        for name in (SNAPSHOT + TMP, JOURNAL + TMP):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(name))
        snap = _read(self._file(SNAPSHOT))
        journal = _read(self._file(JOURNAL))
        if snap is None and journal is None:
            return Loaded(None)
        try:
            if snap is None:
                raise CorruptState("journal: there is no snapshot beside it")
            try:
                image, gen = Image.from_obj(decode_line(snap))
            except CorruptState as e:
                raise CorruptState(f"snapshot: {e}") from None
            self.gen = gen
            if journal is not None:
                self._replay(image, gen, journal)
            return Loaded(image)
        except CorruptState as e:
            return self._set_aside(str(e), [snap, journal])

    def _replay(self, image: Image, gen: int, journal: bytes) -> None:
        lines = journal.split(b"\n")
        torn = lines[-1] != b""  # the last write did not complete its line
        lines = [ln for ln in lines if ln] if not torn else [ln for ln in lines[:-1] if ln] + [lines[-1]]
        if not lines:
            return
        try:
            head = decode_line(lines[0])
        except CorruptState as e:
            if len(lines) == 1:
                return  # a torn header: the compaction that wrote it did not finish renaming anyway
            raise CorruptState(f"journal header: {e}") from None
        of = head.get("journal_of") if isinstance(head, dict) else None
        if not isinstance(of, int):
            raise CorruptState("journal header names no snapshot generation")
        if of < gen:
            return  # stale: a compaction renamed the snapshot but not yet the journal
        if of > gen:
            raise CorruptState(f"journal of generation {of} beside a snapshot of {gen}")
        if head.get("layout") != image.layout:
            raise CorruptState("journal header's record layout differs from the snapshot's")
        for i, line in enumerate(lines[1:], 2):
            try:
                image.apply(decode_line(line))
            except CorruptState as e:
                if i == len(lines):
                    log.warning("crisensor: state dir %s: the journal's last line is torn (%s; a crash while "
                                "writing it); ignored", self.path, e)
                    return
                raise CorruptState(f"journal line {i}: {e}") from None

    def _set_aside(self, problem: str, contents: Iterable[bytes | None]) -> Loaded:
        floor = highest_seq(_readable(contents))
        mtimes = []
        for name in (SNAPSHOT, JOURNAL):
            with contextlib.suppress(OSError):
                mtimes.append(os.stat(self._file(name)).st_mtime_ns)
        aside = self._file(f"{CORRUPT_PREFIX}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}")
        os.makedirs(aside, exist_ok=True)
        for name in (SNAPSHOT, JOURNAL):
            if os.path.exists(self._file(name)):
                os.rename(self._file(name), os.path.join(aside, name))
        self._sync_dir()
        old = sorted(n for n in os.listdir(self.path) if n.startswith(CORRUPT_PREFIX))
        for name in old[:-CORRUPT_KEPT]:
            shutil.rmtree(self._file(name), ignore_errors=True)
        log.error("crisensor: state dir %s: corrupt state (%s); set aside in %s; starting fresh, a sensor.gap "
                  "covers what is unknown", self.path, problem, aside)
        return Loaded(None, problem, max(mtimes, default=0), floor, aside)

    # -- writing ---------------------------------------------------------------------------------

    def append(self, line: bytes) -> None:
        """One journal line; fdatasync when ``sync_interval_ns`` has passed since the last."""
        assert self._journal_fd is not None, "compact() opens the journal"
        self._write(self._journal_fd, line)
        self.journal_bytes += len(line)
        now = self.now_ns()
        if now - self._synced_ns >= self.sync_interval_ns:
            self._step("fdatasync")
            os.fdatasync(self._journal_fd)
            self._synced_ns = now
            self._unsynced = False
        else:
            self._unsynced = True

    def compaction_due(self) -> bool:
        return self.journal_bytes > max(self.compact_min_bytes, self.snapshot_bytes)

    def compact(self, image: Image) -> None:
        """Replace snapshot and journal with ``image`` as generation G+1 (module docstring)."""
        gen = self.gen + 1
        data = encode_line(image.to_obj(gen))
        self._replace(SNAPSHOT, data)
        self.gen, self.snapshot_bytes = gen, len(data)
        head = encode_line({"format": image.to_obj(gen)["format"], "journal_of": gen, "layout": image.layout})
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
        self._replace(JOURNAL, head)
        self._journal_fd = os.open(self._file(JOURNAL), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.journal_bytes = len(head)
        self._synced_ns, self._unsynced = self.now_ns(), False

    def _replace(self, name: str, data: bytes) -> None:
        tmp = self._file(name + TMP)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self._write(fd, data)
            self._fsync(fd)
        finally:
            os.close(fd)
        self._rename(tmp, self._file(name))
        self._sync_dir()


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _read_small(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode(errors="replace")
    except OSError:
        return ""


def _readable(contents: Iterable[bytes | None]) -> list[Any]:
    out = []
    for data in contents:
        for line in (data or b"").split(b"\n"):
            with contextlib.suppress(CorruptState):
                out.append(decode_line(line))
    return out


# --- the runtime's identity -----------------------------------------------------------------------


def instance_marker(socket_path: str) -> dict[str, Any]:
    """What tells one runtime process from the next on the same socket: the socket file's inode and
    ctime (a restarted runtime recreates it) and, where the kernel tells (SO_PEERCRED) and /proc
    shows it, the serving process's pid and start time (clock ticks since boot)."""
    out: dict[str, Any] = {}
    try:
        st = os.stat(socket_path)
        out["socket_ino"] = st.st_ino
        out["socket_ctime_ns"] = st.st_ctime_ns
    except OSError:
        return out
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(socket_path)
            pid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
        if pid > 0:
            out["pid"] = pid
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            out["pid_start"] = int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        pass
    return out


# --- the keeper -----------------------------------------------------------------------------------


class Keeper:
    """The sensor's state: opened once at start (``open``), then fed every batch by
    ``PersistingEmitter``. ``identify(info)`` gives the runtime's identity from a
    ``sensor.connected`` event's ``info`` (tests inject it; the CLI uses ``instance_marker``)."""

    def __init__(self, store: StateDir, engine: DiffEngine, *,
                 identify: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
                 now_ns: Callable[[], int] = time.time_ns, poll_note_ns: int = POLL_NOTE_NS) -> None:
        self.store = store
        self.engine = engine
        self.identify = identify or (lambda info: {"name": info.get("runtime_name"),
                                                   "version": info.get("runtime_version")})
        self.now_ns = now_ns
        self.poll_note_ns = poll_note_ns
        self.seq = 0
        self.resumption: Resumption | None = None
        self.loaded: Loaded | None = None
        self._image = Image()  # values beside the records (seq, poll, runtime, alive_ns, lost)
        self._runtime_now: dict[str, Any] | None = None
        self._poll_noted_ns = 0
        self._pending: tuple[int, dict[str, bytes]] | None = None  # before_emit's encoded records
        self._listed_seen: Any = None  # engine.last_success when a batch was last encoded
        self._lock = threading.Lock()

    def open(self) -> Keeper:
        """Lock, load, restore the engine, compact (a start always writes a fresh snapshot)."""
        self.store.lock()
        loaded = self.store.load()
        image = loaded.image
        restored = None
        if image is not None:
            try:
                restored = restore(self.engine, image)
            except CorruptState as e:
                floor = image.seq
                loaded = self.store._set_aside(f"snapshot: {e}", [])
                loaded.seq_floor = max(loaded.seq_floor, floor)
                image = None
        self.loaded = loaded
        lost = None
        if image is not None:
            self.seq = image.seq
            lost = image.lost
            self._image = Image(image.seq, image.poll if restored else None, image.runtime, image.alive_ns,
                                lost=lost)
            if restored is not None and lost is None:
                self.resumption = Resumption("resume", restored, image.runtime)
        elif loaded.problem is not None:
            self.seq = loaded.seq_floor
            lost = {"lo": loaded.lost_lo, "problem": loaded.problem}
            self._image = Image(self.seq, lost=lost)
        if lost is not None:
            self.resumption = Resumption("lost", lost_lo=int(lost.get("lo") or 0), problem=str(lost.get("problem")))
        self.store.compact(capture(self.engine, self._image))
        return self

    def close(self) -> None:
        self.store.close()

    def before_emit(self, events: list[Event]) -> list[Event]:
        """Relabel the first list after a restart (``sensor.state``, rule 3), and encode the records
        the batch changes now, before it is written: after the write only the small part of the
        journal line is left to build, so a kill between the two writes has a window of two system
        calls, whatever the batch's size."""
        with self._lock:
            for ev in events:
                if ev.type == "sensor.connected" and ev.info is not None:
                    self._runtime_now = self.identify(ev.info)
            r = self.resumption
            if r is not None and r.due(self.engine.last_success):
                events = r.rewrite(events, self.engine.last_success, self._runtime_now)  # type: ignore[arg-type]
            self._pending = (len(events), self._encoded(events, len(events)))
            return events

    def _encoded(self, batch: list[Event], written: int) -> dict[str, bytes]:
        last = self.engine.last_success
        listed = last is not self._listed_seen  # a list since the last batch: look for pending ends
        self._listed_seen = last
        c, s = delta(self.engine, batch, written, listed=listed and bool(batch))
        return {k: encode_json(v) for k, v in (("c", c), ("s", s)) if v}

    def after_emit(self, batch: list[Event], written: int, *, lifecycle: bool) -> None:
        """Journal what ``batch`` (numbered; its first ``written`` events reached the output) changed."""
        with self._lock:
            img = self._image
            small: dict[str, Any] = {}
            if written and batch[written - 1].seq > img.seq:
                img.seq = batch[written - 1].seq
                small["q"] = img.seq
            now = self.now_ns()
            raw: dict[str, bytes] = {}
            if lifecycle:
                pending, self._pending = self._pending, None
                if pending is not None and pending[0] == written == len(batch):
                    raw = pending[1]
                elif written:
                    raw = self._encoded(batch, written)  # a shutdown cut the batch short
                # the list's times (and what the resumption settles) only once its whole batch is out:
                # a batch cut short by a shutdown must be derived again, with windows from the old list
                if written == len(batch) and (self.resumption is None or self.resumption.done):
                    if img.lost is not None:
                        img.lost = None
                        small["l"] = None
                    if self._runtime_now is not None and self._runtime_now != img.runtime:
                        img.runtime = small["r"] = self._runtime_now
                    last = self.engine.last_success
                    poll = None if last is None else (last.sent_ns, last.received_ns)
                    if poll != img.poll and (raw or "r" in small or now - self._poll_noted_ns >= self.poll_note_ns):
                        img.poll = poll
                        small["p"] = poll
                        self._poll_noted_ns = now
            if not small and not raw:
                return
            small["q"] = img.seq
            small["t"] = img.alive_ns = now
            self.store.append(encode_line(small, raw))
            if lifecycle and self.store.compaction_due():
                self.store.compact(capture(self.engine, img))


class PersistingEmitter(Emitter):
    """An ``Emitter`` whose every batch is journalled by a ``Keeper`` after it was written (rule 1
    of ``sensor.state``); ``seq`` continues from the state. Nothing is journalled once the output
    has failed (the sensor is stopping; a restart repeats what may not have been written)."""

    whole_polls = True  # a batch is journalled with the records of a list the engine committed

    def __init__(self, out: IO[str] | None = None, *, keeper: Keeper, **kwargs: Any) -> None:
        super().__init__(out, **kwargs)
        self.keeper = keeper
        self.seq = keeper.seq

    def emit(self, events: Iterable[Event], *, notify: bool = True) -> list[Event]:
        batch = list(events)
        # the engine's batches come from the poller, under its lock; the process source's records and
        # gaps come from its own threads and only move seq
        lifecycle = notify and not (batch and all(_from_processes(e) for e in batch))
        try:
            if lifecycle:
                batch = self.keeper.before_emit(batch)
            done = super().emit(batch, notify=notify)
            if self.failure is None:
                self.keeper.after_emit(done + batch[len(done):], len(done), lifecycle=lifecycle)
        except OSError as e:  # the state cannot keep up with the output: stop, as for a failed output
            self._state_failed(e)
            return []
        return done

    def _state_failed(self, err: OSError) -> None:
        with self._lock:
            if self.failure is not None:
                return
            self.failure = OutputError(os.path.join(self.keeper.store.path, JOURNAL), err, what="the state",
                                       unwritten=0, unit="events")
        if self.on_failure is not None:
            self.on_failure(self.failure)


def _from_processes(ev: Event) -> bool:
    """A ``sensor.gap`` of the process source (``sensor.processes``): not the engine's."""
    return ev.type == "sensor.gap" and ev.info is not None and ev.info.get("source") == "processes"


def open_keeper(path: str, engine: DiffEngine, *, socket_path: str = "") -> Keeper:
    """The CLI's keeper: the runtime's identity includes ``instance_marker(socket_path)``."""

    def identify(info: Mapping[str, Any]) -> dict[str, Any]:
        return {"name": info.get("runtime_name"), "version": info.get("runtime_version"),
                "instance": instance_marker(socket_path) if socket_path else {}}

    keeper = Keeper(StateDir(path), engine, identify=identify)
    try:
        return keeper.open()
    except OSError as e:
        keeper.close()
        raise StateDirError(f"state dir {path}: cannot read or write it: {e.strerror or e}"
                            f"{': ' + e.filename if e.filename else ''}", exit_code=1) from None
