"""The poll loop: relist, diff, emit (kubelet's PLEG shape), with an honest account of blindness.

Theory of operation
-------------------
``Poller.step()`` is one tick and does all the I/O of a tick: (re)connect if needed, list,
ask the diff engine which containers need ``ContainerStatus``, fetch those, let the engine turn
the result into events, emit them. It never sleeps, so tests drive it tick by tick on a
virtual clock. ``Poller.run()`` is the real-time schedule around it:

* Ticks are at ``start + k * poll_interval`` (fixed rate, no drift). A tick that starts late
  because the previous one overran skips the missed slots and counts them; it never queues.
* A failed or timed-out list is reported to the engine as a failure, never as an empty list.
* A lost connection (UNAVAILABLE, socket gone) is retried with exponential backoff and full
  jitter (100 ms doubling to 5 s); after reconnecting the engine resyncs, which yields a
  ``sensor.gap`` event and forged events for what vanished meanwhile.
* State changes are logged once (``connected``, ``connection lost: ...``), not on every retry.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sensor.client import ConnectError, CriCallError, CriClient
from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.metrics import Metrics
from sensor.output import Emitter

log = logging.getLogger("crisensor")

#: Errors that mean the connection (not just the call) is gone.
CONNECTION_CODES = frozenset({"UNAVAILABLE", "CANCELLED"})


@dataclass
class Backoff:
    """Exponential backoff with full jitter, as in gRPC's connection-backoff spec."""

    base_s: float = 0.1
    cap_s: float = 5.0
    attempt: int = 0
    rng: random.Random = random.Random()  # noqa: RUF009 - seeded by callers that need repeatability

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class StateLog:
    """Logs a message only when it differs from the last one (no log flood while retrying)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._last: str | None = None

    def say(self, level: int, message: str) -> None:
        if message != self._last:
            self._logger.log(level, "%s", message)
            self._last = message


class Poller:
    def __init__(self, client: CriClient, emitter: Emitter, *, poll_interval_ns: int,
                 now_ns: Callable[[], int] = time.time_ns, engine: DiffEngine | None = None,
                 metrics: Metrics | None = None) -> None:
        self.client = client
        self.emitter = emitter
        self.poll_interval_ns = poll_interval_ns
        self.now_ns = now_ns
        self.engine = engine or DiffEngine()
        self.metrics = metrics or Metrics()
        self.backoff = Backoff()
        self.state_log = StateLog(log)
        self.ever_connected = False
        self.overruns = 0
        self.polls = 0

    # ---- one tick ----------------------------------------------------------------------------

    def _connect(self) -> bool:
        try:
            info = self.client.connect()
        except ConnectError as e:
            self.metrics.runtime_up.set(0)
            self.state_log.say(logging.ERROR, f"crisensor: {e}; retrying")
            self.engine.failed(self.now_ns(), str(e))
            return False
        now = self.now_ns()
        self.backoff.reset()
        self.metrics.runtime_up.set(1)
        self.state_log.say(logging.INFO, f"crisensor: connected to {info.runtime_name} {info.runtime_version} "
                                         f"(CRI {info.api}) at {self.client.addr}")
        if self.ever_connected:
            self.metrics.reconnects.inc()
            self.engine.reset_connection(now)
        self.ever_connected = True
        self.emit([Event(type="sensor.connected", time_ns=now, window_ns=(now, now), observed_ns=now,
                         info={"addr": self.client.addr, "api": info.api, "runtime_name": info.runtime_name,
                               "runtime_version": info.runtime_version})])
        return True

    def _lost(self, err: CriCallError) -> None:
        self.metrics.runtime_up.set(0)
        self.state_log.say(logging.ERROR, f"crisensor: connection lost ({err.method}: {err.code}: {err.details}); "
                                          "reconnecting")
        self.client.close()

    def step(self) -> bool:
        """One poll. Returns False when the runtime could not be listed (caller backs off)."""
        t0 = time.perf_counter()
        if not self.client.connected and not self._connect():
            return False
        try:
            snapshot = self.client.list()
        except CriCallError as e:
            self.metrics.rpc_errors.labels(e.method, e.code).inc()
            self.engine.failed(self.now_ns(), str(e))
            if e.code in CONNECTION_CODES:
                self._lost(e)
            else:
                self.state_log.say(logging.WARNING, f"crisensor: list failed ({e}); will retry")
            return False
        need = self.engine.begin(snapshot)
        details, err = self.client.status(need) if need else ({}, None)
        events = self.engine.finish(details, self.now_ns())
        self.emit(events)
        if err is not None:
            self.metrics.rpc_errors.labels(err.method, err.code).inc()
            if err.code in CONNECTION_CODES:
                self._lost(err)
        else:
            self.state_log.say(logging.INFO, "crisensor: polling")
        self.polls += 1
        self.metrics.poll_seconds.observe(time.perf_counter() - t0)
        self.metrics.tracked.set(self.engine.table_sizes()[0])
        return True

    def emit(self, events: list[Event]) -> list[Event]:
        for e in events:
            self.metrics.events.labels(e.type, e.source).inc()
            if e.synthetic and e.why:
                self.metrics.synthetic.labels(e.why).inc()
        return self.emitter.emit(events)

    # ---- real-time schedule -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll at a fixed rate until ``stop`` is set. Missed slots are skipped and counted."""
        interval = self.poll_interval_ns / 1e9
        start = time.monotonic()
        k = 0
        while not stop.is_set():
            ok = self.step()
            if not ok and not self.client.connected:
                if stop.wait(self.backoff.next_delay()):
                    return
                start, k = time.monotonic(), 0  # re-anchor the schedule after an outage
                continue
            k += 1
            now = time.monotonic()
            due = start + k * interval
            if now > due:
                missed = int((now - due) // interval) + 1
                self.overruns += missed
                self.metrics.overruns.inc(missed)
                k += missed
                due = start + k * interval
            if stop.wait(max(0.0, due - now)):
                return
