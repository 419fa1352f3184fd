"""Process events: exec events inside containers, and the pluggable sources they come from.

Theory of operation
-------------------
The analytics stage (``sensor.reorder`` + ``sensor.enrich``) enriches each process event with the
metadata of the container it ran in, as of the event's own time. Process events come from some
other sensor (eBPF, audit, a runtime hook...) through a ``ProcessSource``. The source is
pull-based and sans-IO: the caller reads its clock and calls ``poll(now_ns)``; nothing here blocks
or sleeps. A source also states its *progress*: ``progress_ns()`` is a time ``P`` such that every
event with ``time_ns <= P`` has already been returned by ``poll``. Watermark mode
(``sensor.reorder.WatermarkReorder``) releases an event once every source has passed its time.

The sources: ``sensor.procsource.KernelProcessSource`` (the kernel's proc connector, what
``crisensor run`` uses) and, for simulations only, ``fakecri.processes.TruthProcessSource`` (it
replays a fakecri ground truth). This module imports nothing of fakecri: the production path
(``run``, ``snapshot``, ``doctor``) runs where fakecri is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["PROCESS_EXEC", "ProcessEvent", "ProcessSource"]

#: ``type`` of an enriched process event in the analytics output (docs/analytics.md).
PROCESS_EXEC = "process.exec"


@dataclass(frozen=True, slots=True)
class ProcessEvent:
    """One exec. ``time_ns``: when it happened; ``observed_ns``: when the sensor got it;
    ``container_id`` None: a host process (kept only on request); ``ppid``/``exe`` None: not known."""

    container_id: str | None
    time_ns: int
    pid: int
    argv: tuple[str, ...] = ()
    observed_ns: int = 0
    ppid: int | None = None
    exe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "time_ns": self.time_ns,
            "observed_ns": self.observed_ns,
            "pid": self.pid,
            "argv": list(self.argv),
            "ppid": self.ppid,
            "exe": self.exe,
        }


@runtime_checkable
class ProcessSource(Protocol):
    """A pull-based source of process events (see the module docstring)."""

    def poll(self, now_ns: int) -> list[ProcessEvent]:
        """Events delivered since the last poll, up to ``now_ns``, in delivery order."""
        ...

    def progress_ns(self) -> int:
        """Every event with ``time_ns <=`` this has been returned by ``poll`` already."""
        ...
