"""The analytics stage in a running sensor: lifecycle events, process events and progress in, releases out.

Theory of operation
-------------------
``sensor.enrich.AnalyticsStage`` is the pure core (a reorder buffer feeding an enricher). This
module is its thin shell: it decides *when* things are pushed, who reports progress and where
releases go. It reads no clock of its own (``now_ns`` is injected) and starts no thread; whoever
owns the clock calls ``tick``::

    pipeline = Pipeline.from_config(cfg, source=my_process_source, metrics=metrics, watermark=True)
    pipeline.sinks.append(lambda released: write(released.to_dict()))
    pipeline.attach(emitter)                 # lifecycle events, as the emitter numbers them
    poller = ProgressPoller(client, emitter, poll_interval_ns=cfg.poll_interval_ns)
    poller.on_poll.append(pipeline.on_poll)  # progress("poll", t) after each successful poll
    ...
    pipeline.tick()                          # pull process events, release what is due
    pipeline.close()                         # shutdown: flush

* Lifecycle events: ``attach`` adds ``push`` to the ``Emitter``'s batch listeners, so every event
  the sensor writes is also pushed, unchanged, at the pipeline's clock (one push per emitted
  batch). ``crisensor run``'s JSON output is not touched.
* Process events: from an optional ``sensor.process.ProcessSource``, pulled by ``tick``.
* Progress (watermark mode only; a no-op with a fixed window): ``ProgressPoller`` is a ``Poller``
  that calls its ``on_poll`` callbacks after each successful poll with the time the poll *started*.
  That is at most the snapshot's ``sent_ns`` (the list request goes out after the step starts),
  so the promise "everything before this time has been seen" is never stronger than the poll can
  keep; on a virtual clock the two are equal. ``on_poll`` reports ``progress("poll", t)`` and
  ticks. A process source reports ``progress("process", source.progress_ns())`` at every tick. An
  event stream would report ``progress("stream", t)`` through ``progress`` after registering
  itself with ``register_source``.
* Releases go to every callable in ``sinks``, one ``sensor.reorder.Released`` at a time, in
  release order, and are returned by the call that released them.
* Metrics (``sensor.metrics.Metrics``, optional): released items by kind, late items by kind,
  forced releases by reason (overflow, cap, flush), overflows, unenriched process events by why,
  items held, and the lateness of lifecycle events (``observed_ns - time_ns``: the window a fixed
  buffer would need).

Thread-safety: one lock around the stage. The emitter calls ``push`` from the poll thread (and
from an event-stream thread where streaming is on); ``tick`` may come from a third.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from sensor.config import SensorConfig
from sensor.enrich import AnalyticsStage, EnrichedProcess, Enricher
from sensor.events import Event
from sensor.metrics import Metrics
from sensor.output import Emitter
from sensor.poller import Poller
from sensor.process import ProcessSource
from sensor.reorder import DEFAULT_MAX_DELAY_NS, DEFAULT_MAX_EVENTS, Released, ReorderBuffer, Timed, WatermarkReorder

__all__ = ["POLL_SOURCE", "PROCESS_SOURCE", "STREAM_SOURCE", "Pipeline", "ProgressPoller", "Ticker"]

#: Names of the watermark's sources.
POLL_SOURCE = "poll"
PROCESS_SOURCE = "process"
STREAM_SOURCE = "stream"

Sink = Callable[[Released], None]


class ProgressPoller(Poller):
    """A ``Poller`` that reports progress: after each successful poll it calls every callable in
    ``on_poll`` with the time the poll started (see the module docstring). A poll that failed, or
    whose status calls lost the connection, reports nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_poll: list[Callable[[int], None]] = []

    def step(self) -> bool:
        started = self.now_ns()
        ok = super().step()
        if ok and self.client.connected:
            for callback in self.on_poll:
                callback(started)
        return ok


class Pipeline:
    """An ``AnalyticsStage`` wired to the sensor: see the module docstring."""

    def __init__(self, stage: AnalyticsStage, *, source: ProcessSource | None = None,
                 now_ns: Callable[[], int] = time.time_ns, metrics: Metrics | None = None,
                 sinks: Iterable[Sink] = ()) -> None:
        self.stage = stage
        self.source = source
        self.now_ns = now_ns
        self.metrics = metrics
        self.sinks: list[Sink] = list(sinks)
        self.watermark = isinstance(stage.reorder, WatermarkReorder)
        #: Called after every ``push`` with ``next_release_ns()`` (the ``Ticker`` wakes up if that
        #: is sooner than it planned: with a fixed window it sleeps until something is due).
        self.on_due: Callable[[int | None], None] | None = None
        self._lock = threading.Lock()
        self._forced_seen = {"overflow": 0, "capped": 0, "flushed": 0}
        if self.watermark and source is not None and PROCESS_SOURCE not in stage.reorder.sources:
            stage.reorder.register(PROCESS_SOURCE)

    @classmethod
    def from_config(cls, cfg: SensorConfig, *, source: ProcessSource | None = None, watermark: bool = False,
                    metrics: Metrics | None = None, now_ns: Callable[[], int] = time.time_ns,
                    max_delay_ns: int | None = DEFAULT_MAX_DELAY_NS, max_events: int = DEFAULT_MAX_EVENTS,
                    enricher: Enricher | None = None) -> Pipeline:
        """A pipeline with ``event_reorder_window`` (fixed window) or, with ``watermark``, a
        ``WatermarkReorder`` whose sources are the poller and (if given) the process source."""
        if watermark:
            sources = [POLL_SOURCE] + ([PROCESS_SOURCE] if source is not None else [])
            reorder: ReorderBuffer | WatermarkReorder = WatermarkReorder(sources, max_delay_ns=max_delay_ns,
                                                                         max_events=max_events)
        else:
            reorder = ReorderBuffer(cfg.event_reorder_window_ns, max_events=max_events)
        return cls(AnalyticsStage(reorder, enricher), source=source, now_ns=now_ns, metrics=metrics)

    # --- wiring -------------------------------------------------------------------------------

    def attach(self, emitter: Emitter) -> None:
        """Push every event ``emitter`` emits from now on (its JSON output is unchanged)."""
        emitter.batch_listeners.append(self.push)

    def register_source(self, name: str) -> None:
        """Watermark mode: a new source (e.g. ``"stream"`` when a stream opens) holds the watermark
        until it reports progress."""
        if self.watermark:
            with self._lock:
                self.stage.reorder.register(name)

    def unregister_source(self, name: str) -> None:
        """Watermark mode: a source is gone (a stream ended); the watermark may move on."""
        if self.watermark:
            with self._lock:
                self.stage.reorder.unregister(name)

    # --- input --------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Emitter listener: push one lifecycle event at the pipeline's clock."""
        self.push([event])

    def push(self, items: Iterable[Timed], now_ns: int | None = None) -> list[Released]:
        """Push lifecycle or process events; returns (and sinks) what comes out at once (late,
        overflow). Lifecycle events are timed for the lateness metric."""
        now = self.now_ns() if now_ns is None else now_ns
        items = list(items)
        m = self.metrics
        if m is not None:
            m.reorder_lateness.observe_many([max(0, it.observed_ns - it.time_ns) / 1e9 for it in items
                                             if type(it) is Event and it.container_id is not None])
        with self._lock:
            out = self.stage.push_many(items, now)
            due = self.stage.reorder.next_release_ns()
            released = self._deliver(out)
        if self.on_due is not None:
            self.on_due(due)
        return released

    def on_poll(self, started_ns: int) -> list[Released]:
        """``ProgressPoller`` callback: a poll that started at ``started_ns`` succeeded. Reports
        ``progress("poll", started_ns)`` in watermark mode, then ticks."""
        if self.watermark:
            with self._lock:
                self.stage.progress(POLL_SOURCE, started_ns)
        return self.tick()

    def progress(self, source: str, t_ns: int) -> None:
        """Watermark mode: ``source`` has delivered everything up to ``t_ns`` (a no-op otherwise)."""
        if self.watermark:
            with self._lock:
                self.stage.progress(source, t_ns)

    # --- output -------------------------------------------------------------------------------

    def tick(self, now_ns: int | None = None) -> list[Released]:
        """Pull the process source, report its progress, release everything due at ``now_ns``."""
        now = self.now_ns() if now_ns is None else now_ns
        with self._lock:
            out: list[Released] = []
            if self.source is not None:
                batch = self.source.poll(now)
                if batch:
                    out += self.stage.push_many(batch, now)
                if self.watermark:
                    self.stage.progress(PROCESS_SOURCE, self.source.progress_ns())
            out += self.stage.advance(now)
            return self._deliver(out)

    def next_release_ns(self) -> int | None:
        """When ``tick`` will next release something by the clock alone (None: nothing held, or in
        watermark mode nothing until progress or the cap). For the caller's timer."""
        with self._lock:
            return self.stage.reorder.next_release_ns()

    def close(self, now_ns: int | None = None) -> list[Released]:
        """Shutdown: pull the source a last time and release everything still held."""
        now = self.now_ns() if now_ns is None else now_ns
        with self._lock:
            out: list[Released] = []
            if self.source is not None:
                out += self.stage.push_many(self.source.poll(now), now)
            out += self.stage.flush(now)
            return self._deliver(out)

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self.stage.stats

    def _deliver(self, released: list[Released]) -> list[Released]:
        """Metrics and sinks for one call's releases (called under the lock)."""
        if not released:
            return released
        m = self.metrics
        if m is not None:
            # Counted per label, then added once: a labelled child's lookup costs more than the count.
            counts: Counter[tuple[Any, str]] = Counter()
            forced = False
            for r in released:
                item = r.item
                kind = "process" if type(item) is EnrichedProcess else "lifecycle"
                counts[m.analytics_released, kind] += 1
                if r.late:
                    counts[m.reorder_late, kind] += 1
                forced = forced or r.forced
                if kind == "process" and item.why_unenriched is not None:
                    counts[m.unenriched, item.why_unenriched] += 1
            for (metric, label), n in counts.items():
                metric.labels(label).inc(n)
            if forced:
                stats = self.stage.reorder.stats
                for key, reason in (("overflow", "overflow"), ("capped", "cap"), ("flushed", "flush")):
                    delta = stats[key] - self._forced_seen[key]
                    if delta:
                        self._forced_seen[key] = stats[key]
                        m.reorder_forced.labels(reason).inc(delta)
                        if key == "overflow":
                            m.reorder_overflow.inc(delta)
            m.reorder_held.set(len(self.stage.reorder))
        for sink in self.sinks:
            for r in released:
                sink(r)
        return released


#: The ticker's longest sleep in watermark mode, where progress (not a clock) releases items: it
#: bounds how long progress waits. With a fixed window it sleeps until an item is due.
TICKER_IDLE_S = 0.25
_AWAKE = -1  # Ticker._wake_ns while the ticker is not sleeping


class Ticker:
    """The pipeline's clock in a running sensor: one thread that calls ``pipeline.tick`` when the
    process source has queued events (``ready`` is set) or when the next held item is due
    (``pipeline.next_release_ns``), and sleeps otherwise -- no busy polling, and with a fixed window
    no wake-up at all while nothing is held: a push that holds something sooner than the ticker
    planned to wake wakes it (``Pipeline.on_due``). In watermark mode it also wakes every
    ``idle_s`` (progress releases items there). Owned by ``crisensor run``: ``start`` starts it,
    ``close`` wakes it, joins it and flushes the pipeline.

    ``after_tick`` runs after every tick (and after the final flush) outside the pipeline's lock:
    that is where releases are written. Sinks themselves run under the pipeline's lock, and the
    emitter calls the pipeline under its own, so a sink that wrote through the emitter could
    deadlock (lock order emitter -> pipeline against pipeline -> emitter); sinks only queue."""

    def __init__(self, pipeline: Pipeline, ready: threading.Event | None = None, *,
                 idle_s: float = TICKER_IDLE_S, after_tick: Callable[[], None] | None = None) -> None:
        self.pipeline = pipeline
        self.after_tick = after_tick
        self.ready = ready or threading.Event()
        self.idle_s = idle_s
        self.ticks = 0
        self._stop = threading.Event()
        self._wake_ns: int | None = _AWAKE  # when the sleeping ticker plans to wake (None: not by itself)
        self._thread = threading.Thread(target=self._run, name="crisensor-analytics", daemon=True)
        pipeline.on_due = self._due

    def _due(self, due_ns: int | None) -> None:
        """``Pipeline.on_due``: wake now if an item falls due before the planned wake-up."""
        planned = self._wake_ns
        if due_ns is not None and (planned is None or planned == _AWAKE or due_ns < planned):
            self.ready.set()  # awake: it may have looked before this push, so it looks again

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def _run(self) -> None:
        pipe = self.pipeline
        cap = self.idle_s if pipe.watermark else None
        while not self._stop.is_set():
            due = pipe.next_release_ns()
            now = pipe.now_ns()
            wait = cap if due is None else max(0.0, (due - now) / 1e9)
            if cap is not None and wait is not None:
                wait = min(wait, cap)
            self._wake_ns = None if wait is None else now + int(wait * 1e9)
            if self.ready.wait(wait):
                self.ready.clear()
            self._wake_ns = _AWAKE
            if self._stop.is_set():
                return
            pipe.tick()
            self.ticks += 1
            if self.after_tick is not None:
                self.after_tick()

    def close(self, timeout_s: float = 1.0) -> list[Released]:
        """Stop ticking and release everything still held (shutdown)."""
        self._stop.set()
        self.ready.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        out = self.pipeline.close()
        if self.after_tick is not None:
            self.after_tick()
        return out
