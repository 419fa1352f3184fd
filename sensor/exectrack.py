"""From kernel process messages to attributed exec events: fork parents, /proc reads, counters.

Theory of operation
-------------------
Pure apart from the ``ProcReader`` it is handed (the shell gives it ``/proc``; tests give it a
dict). ``ExecTracker.feed(message, now_ns)`` takes one decoded proc-connector message
(``sensor.cnproc``) and returns the ``ProcessEvent`` it produces, if any:

* ``Fork`` of a new process (``child_pid == child_tgid``) records ``child -> parent``. Threads are
  ignored: they share their process's cgroup and identity.
* ``Exec`` reads ``/proc/<tgid>/cgroup`` and attributes it (``sensor.cgroup``); then ``cmdline``
  and ``exe``, best-effort. If the process is already gone (a short-lived ``/bin/echo``), its
  **fork parent** stands in -- the attribution this tracker cached for the parent, or the parent's
  own ``/proc`` entry if it is still alive -- because a forked child starts in its parent's cgroup.
  One level only: a process whose parent is unknown too is counted as ``gone``, never guessed.
* ``Exit`` of a process forgets it (its fork parent and cached attribution), so a reused PID
  starts clean; its children keep what was known of it at their fork, but no longer read its
  PID live (that PID may be another process's by then).
* If the kernel dropped messages (``Overrun``, or the shell saw ``ENOBUFS``), exits may be among
  them: ``lost()`` forgets every cached attribution and fork parent, because a stale entry could
  attribute a reused PID to the wrong container (G10).

Inheritance: an exec whose fork parent was known to be in container X at the fork (read at the
parent's own exec, or inherited by it) is attributed to X without reading its cgroup file. A
forked child starts in its parent's cgroup, and only a privileged writer of ``cgroup.procs`` can
move it out of a container's (runtimes never do: ``runc exec`` and a container's start place a
process whose parent is on the host, which is always read). This halves the cost of an exec in a
container; only container attributions are inherited, host ones never (that is where runc moves
processes into containers).

Host processes (not in a container) are dropped and counted unless ``keep_host``; then their
``container_id`` is ``None``. Processes in a runtime's monitor (CRI-O's conmon) or with
conflicting cgroup lines are dropped and counted the same way: they are nobody's container.

Both maps are bounded (``max_tracked``): past it the oldest entries go first, and a process whose
parent was evicted is counted as ``gone`` when it cannot be read -- never attributed by a guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sensor.cgroup import Attribution, attribute
from sensor.cnproc import Exec, Exit, Fork, Malformed, Message, NetlinkError, Overrun, Unknown
from sensor.process import ProcessEvent

__all__ = ["DEFAULT_MAX_TRACKED", "ExecTracker", "ProcReader"]

#: Fork parents and attributions kept at most (a node rarely has more live processes).
DEFAULT_MAX_TRACKED = 65_536


class ProcReader(Protocol):
    """What the tracker reads of ``/proc``; each returns None when the process is gone."""

    def cgroup(self, pid: int) -> str | None: ...

    def cmdline(self, pid: int) -> tuple[str, ...] | None: ...

    def exe(self, pid: int) -> str | None: ...


@dataclass(slots=True)
class _Parent:
    """A child's fork parent: its tgid, what was known of it at the fork, and whether it may be read."""

    tgid: int
    at_fork: Attribution | None
    alive: bool = True


class ExecTracker:
    """See the module docstring. ``to_wall`` maps the kernel's monotonic ns to wall-clock ns."""

    def __init__(self, reader: ProcReader, to_wall: Callable[[int], int] | None = None, *, keep_host: bool = False,
                 max_tracked: int = DEFAULT_MAX_TRACKED) -> None:
        self.reader = reader
        self._to_wall: Callable[[int], int] = to_wall or (lambda mono: mono)
        self.keep_host = keep_host
        self.max_tracked = max_tracked
        self.parents: dict[int, _Parent] = {}  # child tgid -> its fork parent (insertion order = age)
        self.children: dict[int, set[int]] = {}  # parent tgid -> its live children forked since its last exit
        self.known: dict[int, Attribution] = {}  # tgid -> attribution read at its last exec
        #: ``execs`` seen; ``emitted``; dropped as ``host``/``monitor``/``ambiguous``/``unreadable``;
        #: ``gone`` (unreadable, no parent to stand in); ``via_parent``; ``malformed``; ``unknown``;
        #: ``overruns``; ``errors``.
        self.counts: Counter[str] = Counter()

    # --- input -----------------------------------------------------------------------------------

    def feed(self, msg: Message, now_ns: int) -> ProcessEvent | None:
        if isinstance(msg, Exec):
            return self._exec(msg, now_ns)
        if isinstance(msg, Fork):
            if msg.child_pid == msg.child_tgid:
                parent = msg.parent_tgid
                self._remember(self.parents, msg.child_tgid, _Parent(parent, self.known.get(parent)))
                kids = self.children.get(parent)
                if kids is None:
                    self._remember(self.children, parent, {msg.child_tgid})
                else:
                    kids.add(msg.child_tgid)
        elif isinstance(msg, Exit):
            if msg.pid == msg.tgid:
                self._exited(msg.tgid)
        elif isinstance(msg, Overrun):
            self.counts["overruns"] += 1
            self.lost()
        elif isinstance(msg, Malformed):
            self.counts["malformed"] += 1
        elif isinstance(msg, NetlinkError):
            self.counts["errors"] += 1
        elif isinstance(msg, Unknown):
            self.counts["unknown"] += 1
        return None

    def lost(self) -> None:
        """Messages were dropped (exits among them, maybe): forget every cached attribution."""
        self.known.clear()
        self.parents.clear()
        self.children.clear()

    def _exited(self, tgid: int) -> None:
        own = self.parents.pop(tgid, None)
        if own is not None:
            siblings = self.children.get(own.tgid)
            if siblings is not None:
                siblings.discard(tgid)
        self.known.pop(tgid, None)
        for child in self.children.pop(tgid, ()):
            rec = self.parents.get(child)
            if rec is not None and rec.tgid == tgid:
                rec.alive = False

    # --- one exec --------------------------------------------------------------------------------

    def _exec(self, msg: Exec, now_ns: int) -> ProcessEvent | None:
        self.counts["execs"] += 1
        tgid = msg.tgid
        parent = self.parents.get(tgid)
        ppid = None if parent is None else parent.tgid
        if parent is not None and parent.at_fork is not None and parent.at_fork.kind == "container":
            # Forked by a process known to be in a container: the child is in it too (see the
            # module docstring, "Inheritance"); the cgroup read is saved.
            found = parent.at_fork
            self._remember(self.known, tgid, found)
            self.counts["inherited"] += 1
            self.counts["emitted"] += 1
            return ProcessEvent(container_id=found.container_id, time_ns=self._to_wall(msg.mono_ns), pid=tgid,
                                argv=self.reader.cmdline(tgid) or (), observed_ns=now_ns, ppid=ppid,
                                exe=self.reader.exe(tgid))
        text = self.reader.cgroup(tgid)
        if text is not None:
            found = attribute(text)
            self._remember(self.known, tgid, found)
        else:
            found = self._parent_attribution(parent)
            if found is None:
                self.counts["gone"] += 1
                return None
        if found.kind != "container" and not (found.kind == "host" and self.keep_host):
            self.counts[found.kind] += 1
            return None  # dropped before paying for cmdline and exe
        if text is not None:
            argv = self.reader.cmdline(tgid) or ()
            exe = self.reader.exe(tgid)
        else:
            self.counts["via_parent"] += 1
            argv, exe = (), None
        self.counts["emitted"] += 1
        return ProcessEvent(container_id=found.container_id, time_ns=self._to_wall(msg.mono_ns),
                            pid=tgid, argv=argv, observed_ns=now_ns, ppid=ppid, exe=exe)

    def _parent_attribution(self, parent: _Parent | None) -> Attribution | None:
        """What stands in for a child that is gone: its parent as known at the fork, else the
        parent read live -- only while no exit of the parent was seen since the fork."""
        if parent is None:
            return None
        if parent.at_fork is not None:
            return parent.at_fork
        if not parent.alive:
            return None
        text = self.reader.cgroup(parent.tgid)
        return None if text is None else attribute(text)

    def _remember(self, table: dict[int, Any], key: int, value: Any) -> None:
        table.pop(key, None)  # re-inserted: it becomes the youngest
        table[key] = value
        while len(table) > self.max_tracked:
            del table[next(iter(table))]
