"""The process emulator: runs each container's command through ``fakecri.shell`` on the model's clock.

Theory of operation
-------------------
* When the model starts a container, ``start`` interprets its ``command`` + ``args`` (with the
  container's emulated files and environment) and schedules what the process does: each write
  to stdout/stderr and, unless it runs until stopped, its exit -- as instants on the model's
  clock (start time + the interpreter's offsets). Nothing here sleeps or reads the clock.
* The model asks ``pop_due(now)`` for what has fallen due, in time order: writes go to the
  container's CRI log file (``fakecri.logs``) here; an exit is handed back for the model to
  apply at its exact instant (so the truth, the lists and the event stream all see the same
  EXITED transition, as for a scenario's scripted exit).
* A process that ends any other way (StopContainer, a pod stop, a scripted exit) is ``ended``:
  its pending writes and exit are dropped, the partial lines left are flushed as ``P`` lines
  and the log file is closed.
* A container with no command (scenario containers, or a client relying on the image's
  entrypoint) keeps the old behaviour: it runs until stopped, writes nothing, and nothing is
  reported. A command the interpreter cannot read also runs until stopped, and is reported once
  in fakecri's log (per distinct command).
* ExecSync runs through the same interpreter with the same files and environment; files a
  command writes (``echo x > /tmp/f``) stay for later execs and ``cat`` (the container's
  writable layer).
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fakecri.logs import LineSplitter, LogFiles
from fakecri.shell import FileSystem, Run, interpret

if TYPE_CHECKING:
    from fakecri.model import Container, Sandbox

log = logging.getLogger("fakecri.processes")

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def read_host_file(path: str) -> bytes | None:
    """A host file's bytes (bind mounts, /etc/hosts, /etc/resolv.conf), or None if unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None


def argv_of(config: dict[str, Any]) -> list[str]:
    """The process a container runs: ``command`` + ``args`` (images without an entrypoint, as the
    busybox tests use: ``args`` alone is the command)."""
    return [str(a) for a in config.get("command", [])] + [str(a) for a in config.get("args", [])]


def env_of(config: dict[str, Any], hostname: str) -> list[tuple[str, str]]:
    """The process environment as containerd builds it: PATH, HOSTNAME, then the config's envs."""
    env = [("PATH", PATH), ("HOSTNAME", hostname)]
    for kv in config.get("envs", []):
        env.append((str(kv.get("key", "")), str(kv.get("value", ""))))
    return env


@dataclass
class _Proc:
    cid: str
    gen: int
    splitter: LineSplitter = field(default_factory=LineSplitter)


class ProcessEmulator:
    """The model's running processes (see the module docstring). Called under the model's lock."""

    def __init__(self, logs: LogFiles | None = None, *, host_reader: Callable[[str], bytes | None] = read_host_file,
                 host_name: str | None = None) -> None:
        self.logs = logs if logs is not None else LogFiles()
        self.host_reader = host_reader
        self.host_name = host_name if host_name is not None else socket.gethostname()
        #: (due_ns, n, container ID, generation, write or None for the exit)
        self._heap: list[tuple[int, int, str, int, Any]] = []
        self._procs: dict[str, _Proc] = {}
        self._files: dict[str, FileSystem] = {}
        self._n = 0
        self._gen = 0
        self._reported: set[tuple[str, ...]] = set()
        #: Called when something new is scheduled (the real-time reaper recomputes its wait).
        self.wakeup: Callable[[], None] | None = None

    # ---- the container's world -------------------------------------------------------------

    def hostname(self, sb: Sandbox | None) -> str:
        return sb.hostname if sb is not None and sb.hostname else self.host_name

    def files(self, c: Container, sb: Sandbox | None) -> FileSystem:
        fs = self._files.get(c.id)
        if fs is None:
            base: dict[str, bytes] = {"/etc/hostname": (self.hostname(sb) + "\n").encode()}
            for path in ("/etc/hosts", "/etc/resolv.conf"):
                data = self.host_reader(path)
                if data is not None:
                    base[path] = data
            mounts = {str(m.get("container_path", "")): str(m.get("host_path", ""))
                      for m in c.config.get("mounts", []) if m.get("container_path") and m.get("host_path")}
            fs = self._files[c.id] = FileSystem(base, mounts, self.host_reader)
        return fs

    def environment(self, c: Container, sb: Sandbox | None) -> dict[str, str]:
        return {"HOME": "/root", **dict(env_of(c.config, self.hostname(sb)))}

    def log_path(self, c: Container, sb: Sandbox | None) -> str:
        if not c.log_path or os.path.isabs(c.log_path) or sb is None:
            return c.log_path
        return os.path.join(sb.log_directory, c.log_path)  # CRI-O keeps it relative in the status

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, c: Container, sb: Sandbox | None, now: int) -> Run | None:
        """Schedule what ``c``'s process does from ``now``; None when it has no command of its own."""
        argv = argv_of(c.config)
        if c.config:  # a container a client created: its log file exists from the start, as containerd's
            self.logs.open(c.id, self.log_path(c, sb))
        if not argv:
            return None
        run = interpret(argv, self.files(c, sb), self.environment(c, sb), stdin_open=bool(c.config.get("stdin")))
        if not run.interpreted:
            key = tuple(argv)
            if key not in self._reported:
                self._reported.add(key)
                log.warning("fakecri cannot interpret the command %s (%s): the container runs until it is "
                            "stopped", argv, run.why)
            return run
        self._gen += 1
        proc = self._procs[c.id] = _Proc(c.id, self._gen)
        for w in run.writes:
            self._push(now + w.offset_ns, c.id, proc.gen, w)
        if run.exit_code is not None and run.exit_offset_ns is not None:
            self._push(now + run.exit_offset_ns, c.id, proc.gen, run.exit_code)
        if self.wakeup is not None:
            self.wakeup()
        return run

    def _push(self, due: int, cid: str, gen: int, what: Any) -> None:
        self._n += 1
        heapq.heappush(self._heap, (due, self._n, cid, gen, what))

    def next_due(self) -> int | None:
        """When the next scheduled write or exit falls due (ns), or None."""
        heap = self._heap
        while heap:
            due, _, cid, gen, _ = heap[0]
            proc = self._procs.get(cid)
            if proc is not None and proc.gen == gen:
                return due
            heapq.heappop(heap)  # its process has ended
        return None

    @property
    def pending(self) -> bool:
        return bool(self._heap)

    def pop_due(self, now: int) -> tuple[str, int, int] | None:
        """Apply due writes (to the log files) up to the first due exit, which is returned as
        ``(container ID, exit code, due time)`` for the model to apply; None when nothing is left."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, cid, gen, what = heapq.heappop(heap)
            proc = self._procs.get(cid)
            if proc is None or proc.gen != gen:
                continue
            if isinstance(what, int):
                return cid, what, due
            self.logs.write(cid, proc.splitter.feed(due, what.stream, what.data))
        return None

    def ended(self, cid: str, now: int) -> None:
        """The container's process is gone (any way): flush partial lines, close the log."""
        proc = self._procs.pop(cid, None)
        if proc is not None:
            self.logs.write(cid, proc.splitter.close(now))
        self.logs.close(cid)

    def forget(self, cid: str) -> None:
        """The container was removed."""
        self.ended(cid, 0)
        self._files.pop(cid, None)

    def reopen(self, cid: str) -> None:
        self.logs.reopen(cid)

    def exec(self, c: Container, sb: Sandbox | None, argv: list[str]) -> Run:
        return interpret(argv, self.files(c, sb), self.environment(c, sb))
