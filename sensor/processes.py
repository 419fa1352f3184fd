"""``crisensor.processes``: whether ``run`` has a kernel process source, and how it reports.

``start_processes(mode, emitter, metrics)`` is the one place the choice is made:

* ``off``: no source; the analytics stage only sees lifecycle events.
* ``auto``: the proc connector if this process may subscribe, else one log line saying which
  privilege is missing, and no source.
* ``proc``: the proc connector or a ``ProcessesUnavailable`` error (``crisensor run`` exits 1 with
  that one line).

The source's losses (``ENOBUFS``, overruns, an unconsumed queue) become ``sensor.gap`` events
with ``info.source: "processes"``, and its tracker's counters are served as
``crisensor_process_execs_total{outcome}`` (read at scrape time: the reader thread pays nothing).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator
from typing import Any

from sensor.enrich import EnrichedProcess, exec_record
from sensor.events import Event
from sensor.metrics import Metrics
from sensor.output import Emitter

__all__ = ["ExecWriter", "ProcessesUnavailable", "start_processes"]

log = logging.getLogger("crisensor")


class ProcessesUnavailable(Exception):
    """``crisensor.processes: proc`` and the proc connector cannot be used (the message says why)."""


class ExecWriter:
    """Writes released execs as ``process.exec`` through the emitter (same ``seq`` sequence), from
    the analytics ticker's thread (``sensor.analytics.Ticker``) after each tick.

    The pipeline's sink only queues: sinks run under the pipeline's lock, and the emitter calls the
    pipeline (its listener) under the emitter's lock, so writing from a sink would take the two
    locks in both orders (a deadlock, seen with lookups emitting while the ticker released)."""

    def __init__(self, pipeline: Any, emitter: Emitter, ready: Any = None) -> None:
        from sensor.analytics import Ticker

        self.emitter = emitter
        self._queue: collections.deque[Any] = collections.deque()
        pipeline.sinks.append(self._queue_exec)
        self.ticker = Ticker(pipeline, ready, after_tick=self.write)

    def _queue_exec(self, released: Any) -> None:
        if type(released.item) is EnrichedProcess:
            self._queue.append(released)

    def write(self) -> int:
        batch = []
        while self._queue:
            batch.append(exec_record(self._queue.popleft()))
        if batch:
            self.emitter.emit_records(batch)
        return len(batch)

    def start(self) -> ExecWriter:
        self.ticker.start()
        return self

    def close(self) -> None:
        """Release (and write) every exec still held."""
        self.ticker.close()


class _ExecCounts:
    """A Prometheus collector over the tracker's counters."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        fam = CounterMetricFamily("crisensor_process_execs", "Exec events from the kernel by outcome: emitted "
                                  "(in a container), host (dropped: not in a container), gone (exited before /proc "
                                  "could be read, no fork parent to stand in), via_parent, monitor, ambiguous, "
                                  "unreadable, malformed, unknown, overruns.", labels=["outcome"])
        for outcome, n in sorted(self.source.tracker.counts.items()):
            fam.add_metric([outcome], n)
        yield fam
        losses = CounterMetricFamily("crisensor_process_losses", "Times process events were lost (kernel buffer "
                                     "overflow, overrun, queue overflow); each is a sensor.gap event.")
        losses.add_metric([], self.source.drops)
        yield losses


def start_processes(mode: str, emitter: Emitter, metrics: Metrics | None = None, *, keep_host: bool = False) -> Any:
    """A started ``KernelProcessSource``, or None (see the module docstring)."""
    if mode == "off":
        return None
    from sensor.procsource import ConnectorError, KernelProcessSource

    def gap(lo: int, hi: int, why: str) -> None:
        now = time.time_ns()
        emitter.emit([Event(type="sensor.gap", time_ns=lo, window_ns=(lo, max(lo, hi)), observed_ns=now,
                            info={"source": "processes", "cause": why})])

    try:
        source = KernelProcessSource(on_gap=gap)
        source.tracker.keep_host = keep_host
        source.start()
    except ConnectorError as e:
        if mode == "proc":
            raise ProcessesUnavailable(f"crisensor.processes is proc, but {e}") from None
        log.warning("crisensor: no process events (crisensor.processes auto): %s", e)
        return None
    if metrics is not None:
        metrics.registry.register(_ExecCounts(source))  # type: ignore[arg-type]
    log.info("crisensor: process events from the kernel's proc connector (clock offset measured to +-%d ns)",
             source.clock.error_ns)
    return source
