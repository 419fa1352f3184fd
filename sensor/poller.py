"""The poll loop: relist, diff, emit (kubelet's PLEG shape), with an honest account of blindness.

Theory of operation
-------------------
``Poller.step()`` is one tick and does all the I/O of a tick: (re)connect if needed, list,
ask the diff engine which containers need ``ContainerStatus``, fetch those, let the engine turn
the result into events, emit them. It never sleeps, so tests drive it tick by tick on a
virtual clock. ``Poller.run()`` is the real-time schedule around it:

* Ticks are at ``start + k * poll_interval`` (fixed rate, no drift; ``sensor.schedule``). A
  tick that ran past its slot is followed at once by the next, which re-anchors the schedule; the
  slots it ran past are counted. Ticks never queue.
* A failed or timed-out list is reported to the engine as a failure, never as an empty list;
  so is one that does not decode (``MalformedResponse``, counted apart: ``sensor.wire``). What
  decoding dropped or read loosely (empty or repeated IDs, unknown enum values) is counted after
  every poll, and logged without flooding (``_note_input``).
* A lost connection (UNAVAILABLE, socket gone) is retried with exponential backoff and full
  jitter (100 ms doubling to 5 s); after reconnecting the engine resyncs, which yields a
  ``sensor.gap`` event and forged events for what vanished meanwhile.
* State changes are logged once (``connected``, ``connection lost: ...``), not on every retry.
* A poll's status calls run on a thread of their own (``_status_thread``) while the poll thread
  writes the events that need no answer (``DiffEngine.finish_early``): on a churning node the
  runtime answers a hundred exits' statuses in ~100 ms, and writing the poll's other ~800 events
  took ~40 ms after them. While start times may still be asked (``status_time_share``) it waits
  for those calls to go out first (``_StatusJobs.wait_issued``). An emitter that journals whole
  polls (``Emitter.whole_polls``: the state directory) gets them in one batch, after the answers.

Event streaming (``events``: ``crisensor.events``; docs/streaming.md). With ``auto`` or ``on`` the
poller also reads ``GetContainerEvents`` where the runtime serves it; ``sensor.stream`` holds the
decision table (``StreamPlan``) and the reader thread (``StreamReader``). What the poller adds:

* Ownership. The reader thread belongs to the poller: ``step`` starts it, joins it when it ended
  and cancels it on reconnect; ``close`` (which ``run`` calls on its way out) cancels and joins it.
* Order. After every (re)connect ``step`` subscribes first -- waiting at most
  ``SUBSCRIBE_WAIT_S`` for the response headers -- and lists second, so nothing falls between.
* One lock (``self.lock``) around the engine and the emitter: held across a whole poll, RPCs
  included, and around every stream event; that is what makes the two sources exactly-once and
  keeps each lifecycle in order (``sensor.diff``, rule 6).
* Cadence. While the stream is open a list is due every ``resync_interval`` (a reconciling list,
  ``source: "resync"``), at once after the stream was lost and resubscribed, and whenever the
  engine asks (``resync_wanted``); while it is not, every ``step`` lists, as without streaming.
  The reader wakes ``run`` when its stream ends or the engine wants a list.
* ``on`` differs from ``auto`` only in how loudly it says it is polling for want of a stream.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

from sensor.client import ConnectError, CriCallError, CriClient
from sensor.diff import DiffEngine
from sensor.duration import format_duration
from sensor.events import Event
from sensor.fastpath import FastPath, PlainPath
from sensor.heap import collector_paused
from sensor.metrics import Metrics
from sensor.output import Emitter
from sensor.schedule import Ticks
from sensor.snapshot import ContainerDetail, StreamEvent
from sensor.stream import SUBSCRIBE_WAIT_S, StreamEnd, StreamPlan, StreamReader
from sensor.wire import MalformedResponse, Tally, UnusableEvent

log = logging.getLogger("crisensor")

#: Errors that mean the connection (not just the call) is gone.
CONNECTION_CODES = frozenset({"UNAVAILABLE", "CANCELLED"})
#: How long ``close`` waits for the stream reader to end after cancelling its call.
READER_JOIN_S = 5.0
#: ``run`` checks ``stop`` at least this often while it sleeps (its shutdown latency).
STOP_CHECK_S = 0.05
#: ContainerStatus calls one poll makes at most (``Poller.status_budget``; docs/performance.md,
#: "Churn"), exits excepted: every exited container is asked (its exit code cannot be estimated), so
#: what a poll over budget leaves out are start times of containers it saw running: estimated inside
#: their window instead. At 1,000 container
#: lifecycles/s a 250 ms poll needs ~250 exits and ~250 starts; every status costs the runtime
#: ~0.5 ms (fakecri) and the sensor ~0.25 ms, so all 500 would not fit in the poll interval.
STATUS_BUDGET = 256
#: ... and, in ``crisensor run``, issues none but exits' after this share of the poll interval has passed
#: since the poll began (the same trade on a slow or busy machine, where 256 calls take longer than a poll
#: interval): polls keep their rate under churn. 30%, not more: the rest of a churning poll (the exits'
#: statuses, ~1,000 events to build and write) needs the remaining 70% -- at 50% one poll in 20 overran
#: a 250 ms interval at 1,000 lifecycles/s on 10,000 containers, at 30% none of ~200 (docs/performance.md).
STATUS_TIME_SHARE = 0.3
#: What a poll's status calls give: details by ID, and the error that ended them, if one did.
_Answers = tuple[dict[str, ContainerDetail | None], CriCallError | None]
#: Distinct unknown enum values logged (each once); past this many they are only counted.
UNKNOWN_LOGGED_MAX = 64


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

    def say(self, level: int, message: str, *, key: str | None = None) -> None:
        """Log ``message`` unless the last one said had the same ``key`` (default: the message)."""
        key = message if key is None else key
        if key != self._last:
            self._logger.log(level, "%s", message)
            self._last = key

    def reset(self) -> None:
        """The condition last said has cleared: the next message is logged even if it repeats."""
        self._last = None


class _StatusJobs:
    """One poll's status calls, on the status thread: the exits the fast path named before it decoded
    the list (``exits``), then whatever else the poll asks (``rest``). ``collect`` waits for all."""

    def __init__(self, thread: Callable[[], ThreadPoolExecutor], run: Callable[..., _Answers], t0: float) -> None:
        self._thread, self._run, self._t0 = thread, run, t0
        self._jobs: list[tuple[Future[_Answers], Tally]] = []
        self._ahead: set[str] = set()
        self._issued: threading.Event | None = None  # set once the last job issued its last call

    def _submit(self, ids: list[str], exits: int) -> None:
        tally = Tally()  # the poll thread's decoding counts in the client's own meanwhile
        self._issued = threading.Event()
        self._jobs.append((self._thread().submit(self._run, ids, exits, self._t0, tally, self._issued.set), tally))

    def wait_issued(self, until: float) -> None:
        """Wait until the calls are all issued or ``until`` (``time.monotonic()``) passed: while start
        times may still be asked (``status_time_share``), the status thread issues them without
        taking turns with the poll thread's writing. The jobs run one after the other: the last
        one's issuing ends last."""
        if self._issued is not None:
            self._issued.wait(max(0.0, until - time.monotonic()))

    def exits(self, ids: list[str]) -> None:
        """``FastPath.take``'s hint: ask these exits' statuses now (each ID once per poll)."""
        fresh = [i for i in ids if i not in self._ahead]
        self._ahead.update(fresh)
        if fresh:
            self._submit(fresh, len(fresh))

    def rest(self, asked: list[str], exits: int) -> None:
        """``asked`` (its first ``exits`` are exited containers) but what ``exits`` asked already."""
        if self._ahead:
            first = [i for i in asked[:exits] if i not in self._ahead]
            asked, exits = first + [i for i in asked[exits:] if i not in self._ahead], len(first)
        if asked:
            self._submit(asked, exits)

    def collect(self, into: Tally) -> _Answers:
        """Every answer (the first error among them), once all calls ended; counts merged ``into``."""
        details: dict[str, ContainerDetail | None] = {}
        err: CriCallError | None = None
        failure: BaseException | None = None
        for job, tally in self._jobs:
            try:
                got, e = job.result()
            except BaseException as x:  # raised once every call has ended
                failure = failure or x
                continue
            details.update(got)
            err = err or e
            into.merge(tally)
        self._jobs.clear()
        if failure is not None:
            raise failure
        return details, err


class Poller:
    def __init__(self, client: CriClient, emitter: Emitter, *, poll_interval_ns: int,
                 now_ns: Callable[[], int] = time.time_ns, engine: DiffEngine | None = None,
                 metrics: Metrics | None = None, fast: bool = True, events: str = "off",
                 resync_interval_ns: int = 10_000_000_000, subscribe_wait_s: float = SUBSCRIBE_WAIT_S,
                 stop_check_s: float | None = STOP_CHECK_S, status_budget: int = STATUS_BUDGET,
                 status_time_share: float | None = None) -> None:
        self.client = client
        self.emitter = emitter
        self.poll_interval_ns = poll_interval_ns
        self.now_ns = now_ns
        self.engine = engine or DiffEngine()
        self.metrics = metrics or Metrics()
        self.metrics.cri_calls.source = lambda: self.client.rpc_count
        #: How lists reach the engine: ``FastPath`` decodes only what changed (``sensor.fastpath``).
        self.lists: FastPath | PlainPath = FastPath() if fast else PlainPath()
        self.backoff = Backoff()
        self.state_log = StateLog(log)
        self.ever_connected = False
        self.overruns = 0
        self.polls = 0
        #: Held around every use of the engine and the emitter: polls (RPCs included) and stream events.
        self.lock = threading.Lock()
        self.plan = StreamPlan(events, resync_interval_ns)
        self.subscribe_wait_s = subscribe_wait_s
        #: How often ``run`` looks at ``stop`` while it sleeps; ``None``: never by itself -- whoever
        #: sets ``stop`` also calls ``interrupt`` (as ``crisensor run`` does), so an idle sensor
        #: sleeps until its next list (docs/performance.md, "Idle streaming").
        self.stop_check_s = stop_check_s
        self.monotonic: Callable[[], float] = time.monotonic  #: the schedule's clock (tests replace it)
        self.status_budget = status_budget
        #: ``STATUS_TIME_SHARE`` (``crisensor run`` sets it): status calls stop that far into the poll
        #: interval. ``None``: no time limit, so a poll's events never depend on how busy the machine is.
        self.status_time_share = status_time_share
        self.budget_log = StateLog(log)  # over the count budget (once per streak)
        self.time_log = StateLog(log)  # out of time for status calls (once per streak)
        self.reader: StreamReader | None = None
        self.stream_log = StateLog(log)
        self.input_log = StateLog(log)  # what the runtime sent that the sensor dropped (sensor.wire)
        self._unknown_logged: set[tuple[str, int]] = set()
        self.stream_events = 0  # stream events received (applied to the engine)
        self._wake = threading.Event()  # set by the reader: its stream ended, or the engine wants a list
        self._list_now = True  # list at the next step regardless of the cadence
        self._last_list_ns: int | None = None
        self._stream_seen = False  # a stream was open since the last list: that list reconciles
        self._announced: StreamReader | None = None  # the subscription last logged as streaming
        self._status_pool: ThreadPoolExecutor | None = None  # _status_thread
        #: The cyclic collector is off while a poll runs (``sensor.heap.collector_paused``).
        self.pause_collector = True

    # ---- one tick ----------------------------------------------------------------------------

    def _connect(self) -> bool:
        try:
            info = self.client.connect()
        except ConnectError as e:
            if e.call is not None:  # a failed Version counts like any other failed call
                self.metrics.rpc_errors.labels(e.call.method, e.call.code).inc()
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
        self.plan.connected(now, info.api)
        self._list_now = True  # the base (or resync) list, after subscribing
        self.emit([Event(type="sensor.connected", time_ns=now, window_ns=(now, now), observed_ns=now,
                         info={"addr": self.client.addr, "api": info.api, "runtime_name": info.runtime_name,
                               "runtime_version": info.runtime_version, "events": self.plan.mode,
                               "poll_interval_ns": self.poll_interval_ns})])
        return True

    def _lost(self, err: CriCallError) -> None:
        if getattr(self.client, "cancelled", False):  # interrupt(): a call cut short by shutdown, not a lost runtime
            return
        self.metrics.runtime_up.set(0)
        self.state_log.say(logging.ERROR, f"crisensor: connection lost ({err.method}: {err.code}: {err.details}); "
                                          "reconnecting")
        self.client.close()

    def step(self) -> bool:
        """One tick. Without event streaming, one poll. With it: tend the stream -- subscribe when
        due, always before listing -- then list only if a list is due (see the module docstring).
        Returns False when the runtime could not be listed (caller backs off)."""
        t0 = time.perf_counter()
        if self._wake.is_set():
            self._wake.clear()  # this step handles whatever the reader signalled so far
        if not self.client.connected:
            self._stop_stream()
            with self.lock:
                if not self._connect():
                    return False
        if self.plan.mode != "off":
            self._tend_stream()
            if not self._list_due():
                return True
        # no collection inside a poll: the collector runs between polls (sensor.heap)
        with self.lock, collector_paused() if self.pause_collector else nullcontext():
            return self._poll(t0)

    def _poll(self, t0: float) -> bool:
        """List, diff, emit; the caller holds ``self.lock``."""
        self._last_list_ns = self.now_ns()
        self._list_now = False
        reconciling = self._stream_seen and self.engine.last_success is not None
        self._stream_seen = self.plan.streaming
        jobs = _StatusJobs(self._status_thread, self._statuses, t0)
        try:
            t_list = time.perf_counter()
            listing = self.lists.list(self.client)
            waited = time.perf_counter() - t_list  # in the CRI calls: the runtime's share of the poll
            # the fast path decodes here: an undecodable answer fails the poll, as in client.list();
            # it names the exits it sees before it decodes them, and their statuses are asked at once
            try:
                need = self.lists.take(self.engine, listing, self.client.pb, self.client.tally,  # type: ignore[arg-type]
                                       exits=jobs.exits)
            except BaseException:
                jobs.collect(self.client.tally)  # no call outlives its poll
                raise
        except MalformedResponse as e:  # sensor.wire: a failed list, never an empty runtime
            self.metrics.malformed.labels(e.method).inc()
            self.engine.failed(self.now_ns(), str(e))
            self.state_log.say(logging.WARNING, f"crisensor: list failed: {e.method} answered bytes that do not "
                                                f"decode ({e.details}); will retry", key=f"malformed {e.method}")
            self._note_input(self.client.tally.take())
            return False
        except CriCallError as e:
            self.metrics.rpc_errors.labels(e.method, e.code).inc()
            self.engine.failed(self.now_ns(), str(e))
            if e.code in CONNECTION_CODES:
                self._lost(e)
            else:
                self.state_log.say(logging.WARNING, f"crisensor: list failed ({e}); will retry")
            return False
        # need is None: the list repeated the last one and the engine took it whole (sensor.fastpath)
        if need is None and not self.client.tally:  # the steady state: nothing asked, dropped or written
            self.input_log.reset()
            if not self.plan.streaming:
                self.state_log.say(logging.INFO, "crisensor: polling")
            return self._polled(t0, waited)
        source = "resync" if reconciling else None
        early: list[Event] = []
        asked = self._budget(need) if need else []
        exits = min(self.engine.exits_needed, len(asked))
        jobs.rest(asked, exits)  # the calls run on the status thread; this one settles what waits on none
        try:
            until = self._until(t0)
            if len(asked) > exits and until is not None:
                t_issue = time.perf_counter()
                jobs.wait_issued(until)  # start times are asked while the share lasts, not squeezed
                waited += time.perf_counter() - t_issue
            if asked:
                early = self.engine.finish_early(set(asked), self.now_ns(), source=source)
                if not self.emitter.whole_polls:
                    self.emit(early)
                    early = []
        finally:
            t_status = time.perf_counter()
            details, err = jobs.collect(self.client.tally)
            waited += time.perf_counter() - t_status
        tally = self.client.tally
        if tally:
            self._note_input(tally.take(), poll=True)
        else:  # what _note_input does with a poll that dropped nothing, without handing over empty counts
            self.input_log.reset()
        if need is not None:
            self.emit(early + self.engine.finish(details, self.now_ns(), source=source))
        if err is not None:
            self.metrics.rpc_errors.labels(err.method, err.code).inc()
            if err.code in CONNECTION_CODES:
                self._lost(err)
        elif not self.plan.streaming:
            self.state_log.say(logging.INFO, "crisensor: polling")
        return self._polled(t0, waited)

    def _polled(self, t0: float, waited: float) -> bool:
        """A successful poll's end: counted, and timed from ``t0`` (``waited`` of it in CRI calls)."""
        self.polls += 1
        self.metrics.poll_seconds.observe(time.perf_counter() - t0)
        self.metrics.poll_rpc_seconds.observe(waited)
        self.metrics.tracked.set(self.engine.table_sizes()[0])
        return True

    def _budget(self, need: list[str]) -> list[str]:
        """The IDs of ``need`` that get a status call: ``need`` lists exited containers first
        (sensor.diff); those are always asked, since an exit code cannot be estimated. The rest --
        start times, which can be -- get what is left of ``status_budget`` calls. What is left out
        is counted and logged once per streak."""
        exits = min(self.engine.exits_needed, len(need))
        room = max(0, self.status_budget - exits)
        if len(need) - exits > room:
            skipped = len(need) - exits - room
            need = need[: exits + room]
            self.metrics.status_skipped.inc(skipped)
            self.budget_log.say(logging.WARNING, f"crisensor: a poll needed {skipped + len(need)} ContainerStatus "
                                                 f"calls, over the budget of {self.status_budget}; the start times "
                                                 f"of {skipped} containers are estimated (counted in "
                                                 "crisensor_status_skipped_total)", key="over")
        else:
            self.budget_log.reset()
        return need

    def _status_thread(self) -> ThreadPoolExecutor:
        """The thread that makes a poll's status calls (one, idle between polls: no wake-ups)."""
        if self._status_pool is None:
            self._status_pool = ThreadPoolExecutor(1, thread_name_prefix="crisensor-status")
        return self._status_pool

    def _until(self, t0: float) -> float | None:
        """When (``time.monotonic()``) a poll begun at ``t0`` (``perf_counter``) stops issuing
        status calls for start times (``status_time_share``; None: never)."""
        share = self.status_time_share
        if share is None:
            return None
        return time.monotonic() - (time.perf_counter() - t0) + self.poll_interval_ns / 1e9 * share

    def _statuses(self, need: list[str], exits: int, t0: float, tally: Tally,
                  issued: Callable[[], None] | None = None
                  ) -> tuple[dict[str, ContainerDetail | None], CriCallError | None]:
        """ContainerStatus for ``need`` (its first ``exits`` are exited containers), on the status
        thread; what decoding drops counts in ``tally``; ``issued()`` once every call is out. With
        ``status_time_share``, none but the exits' issued past that share of the poll interval; what
        is left out is counted and logged once per streak (which a call of exits alone neither
        starts nor ends)."""
        share = self.status_time_share
        until = self._until(t0)
        details, err = self.client.status(need, until=until, must=exits, tally=tally, on_issued=issued)
        unasked = self.client.status_unasked if need and share is not None else 0
        if unasked:
            self.metrics.status_skipped.inc(unasked)
            self.time_log.say(logging.WARNING, f"crisensor: a poll ran out of time for {unasked} of its "
                                               f"{len(need)} ContainerStatus calls (over "
                                               f"{share:.0%} of the poll interval); the start times of "
                                               "those containers are estimated (counted in "
                                               "crisensor_status_skipped_total)", key="time")
        elif len(need) > exits:
            self.time_log.reset()
        return details, err

    def _note_input(self, tally: Tally, *, poll: bool = False) -> None:
        """Count (and log, without flooding) what decoding dropped or read loosely (``sensor.wire``).
        ``poll``: the tally of one whole poll -- at most one line about dropped records, repeated
        only when what was dropped changes; a poll that dropped nothing clears it."""
        m = self.metrics
        for (kind, reason), n in tally.dropped.items():
            m.dropped.labels(kind, reason).inc(n)
        for (enum, value), n in tally.unknown.items():
            m.unknown_enums.labels(enum).inc(n)
            if (enum, value) not in self._unknown_logged and len(self._unknown_logged) < UNKNOWN_LOGGED_MAX:
                self._unknown_logged.add((enum, value))
                read = {"ContainerState": "read as unknown", "PodSandboxState": "read as unknown",
                        "ContainerEventType": "event skipped; listing instead"}.get(enum, "ignored")
                log.warning("crisensor: the runtime sent %s %d, which this sensor does not know (%s; counted in "
                            "crisensor_unknown_enum_values_total, logged once)", enum, value, read)
        for method, n in tally.malformed.items():
            m.malformed.labels(method).inc(n)
            self.input_log.say(logging.WARNING, f"crisensor: {method} answered bytes that do not decode; "
                                                "treated as a failed call", key=f"malformed {method}")
        if tally.dropped:
            what = ", ".join(f"{n} {kind} record{'s' if n != 1 else ''} with "
                             f"{'an empty id' if reason == 'empty_id' else 'an id already listed (the first wins)'}"
                             for (kind, reason), n in sorted(tally.dropped.items()))
            self.input_log.say(logging.WARNING, f"crisensor: dropped {what} (a runtime bug; counted in "
                                                "crisensor_dropped_records_total)")
        elif poll and not tally.malformed:
            self.input_log.reset()

    # ---- the event stream ---------------------------------------------------------------------

    def _list_due(self) -> bool:
        if self._list_now or self.engine.resync_wanted or self._last_list_ns is None:
            return True
        # Every resync_interval while streaming, else every poll_interval -- with half a tick of
        # slack, so that a tick a hair early does not postpone the list by a tick, and a step the
        # reader woke right after a list does not list again.
        period = self.plan.list_period_ns(self.poll_interval_ns)
        return self.now_ns() >= self._last_list_ns + period - self.poll_interval_ns // 2

    def _tend_stream(self) -> None:
        """Reap a stream that ended, and subscribe when the plan says so (before any list)."""
        reader = self.reader
        if reader is not None and reader.ended.is_set():
            self._reap(reader)
        elif reader is not None and reader is not self._announced and not reader.call.done():
            self._announced = reader  # still up a step later: say so (once per subscription)
            info = self.client.info
            runtime = f"{info.runtime_name} {info.runtime_version}" if info else self.client.addr
            self.stream_log.say(logging.INFO, f"crisensor: streaming events from {runtime} (GetContainerEvents); "
                                              "reconciling list every "
                                              f"{format_duration(self.plan.resync_interval_ns)}")
        if self.reader is None and self.client.connected and self.plan.due(self.now_ns()):
            self._subscribe()

    def _subscribe(self) -> None:
        now = self.now_ns()
        try:
            call = self.client.events()
        except CriCallError as e:  # not connected on v1 after all
            self.plan.opened(now)
            self._say_outcome(self.plan.ended(StreamEnd(e.code, e.details, 0), now))
            return
        reader = StreamReader(call, on_event=self._on_stream_event, on_end=self._on_stream_end,
                              decode=self.client.event_decoder(), on_unusable=self._on_stream_unusable).start()
        self.plan.opened(now)
        self.reader = reader
        # grpcio started the call when it was invoked; the headers say the runtime has subscribed.
        # Runtimes that send them only with the first event make this wait time out: harmless.
        reader.subscribed.wait(self.subscribe_wait_s)
        if call.done():  # ended at once (UNIMPLEMENTED, EOF, an error): let the reader finish
            reader.ended.wait(self.subscribe_wait_s)
        if reader.ended.is_set():
            self._reap(reader)
            return
        self._stream_seen = True

    def _reap(self, reader: StreamReader) -> None:
        """The reader's stream ended: join the thread, let the plan judge the end."""
        if not reader.join(READER_JOIN_S):
            log.error("crisensor: event stream reader did not stop within %.0f s", READER_JOIN_S)
        self._wake.clear()  # its end (and any list it wanted: see _list_due) is handled here
        if self.reader is reader:
            self.reader = None
        end = reader.end or StreamEnd("CANCELLED", "", reader.received)
        if self.plan.state != "open":
            return
        if end.code not in ("OK", "CANCELLED"):
            self.metrics.rpc_errors.labels("GetContainerEvents", end.code).inc()
        outcome = self.plan.ended(end, self.now_ns())
        if outcome == "closed":
            self._list_now = True  # resubscribe, then list at once: catch what fell in between
        elif outcome in ("refused", "unimplemented"):
            self._stream_seen = False  # it never streamed: the next list is a plain poll
        self._say_outcome(outcome)

    def _say_outcome(self, outcome: str) -> None:
        if outcome == "cancelled":
            return
        every = format_duration(self.poll_interval_ns)
        retry = {"closed": "resubscribing; polling meanwhile",
                 "refused": f"polling every {every}; trying the stream again every "
                            f"{format_duration(self.plan.resync_interval_ns)}",
                 "unimplemented": f"polling every {every}"}[outcome]
        if self.plan.mode == "on" and outcome != "closed":  # closed: resubscribed at once, not a loss
            self.stream_log.say(logging.ERROR, f"crisensor: crisensor.events is on, but {self.plan.reason}; {retry} "
                                               "(blind between polls until the runtime streams events)")
        else:
            level = logging.INFO if outcome == "unimplemented" else logging.WARNING
            self.stream_log.say(level, f"crisensor: {self.plan.reason}; {retry}")

    def _on_stream_event(self, ev: StreamEvent) -> None:
        """Reader thread: apply one streamed event under the lock."""
        with self.lock:
            self.emit(self.engine.stream(ev, self.now_ns()))
            self.stream_events += 1
            want = self.engine.resync_wanted
        if want:
            self._wake.set()

    def _on_stream_unusable(self, problem: Exception | None, notes: Tally) -> None:
        """Reader thread: an event skipped (``problem``) or read loosely: count it, then list -- the
        list places what the stream could not (``sensor.wire``, rule 3)."""
        with self.lock:
            if isinstance(problem, MalformedResponse):
                notes.malformed[problem.method] += 1
            elif isinstance(problem, UnusableEvent):
                if problem.reason == "unknown_enum":
                    notes.unknown[(problem.enum, problem.value)] += 1
                else:
                    notes.dropped[("event", problem.reason)] += 1
            self._note_input(notes)
            self._list_now = True
        self._wake.set()

    def _on_stream_end(self, reader: StreamReader) -> None:
        self._wake.set()

    def _stop_stream(self) -> None:
        """Cancel the stream and join its reader (reconnect, shutdown)."""
        reader = self.reader
        if reader is None:
            return
        reader.cancel()
        self._reap(reader)

    def knows(self, container_id: str) -> bool:
        """Whether the engine tracks the container (read without the lock: a dict lookup)."""
        return self.engine.knows(container_id)

    def lookup(self, container_id: str) -> list[Event]:
        """Ask the runtime about one container an exec named (``sensor.lookup``) and apply what it
        says under the poll lock: its lifecycle events, ``source: "lookup"``; nothing when the
        runtime does not have it. A failed lookup is counted; the next poll catches up."""
        with self.lock:
            if not self.client.connected or self.engine.knows(container_id):
                return []
            try:
                container, detail, sandbox = self.client.lookup(container_id)
            except CriCallError as e:
                self.metrics.rpc_errors.labels(e.method, e.code).inc()
                self.metrics.lookups.labels("failed").inc()
                return []
            if container is None:
                self.metrics.lookups.labels("not_found").inc()
                return []
            kind = {"created": "created", "running": "started", "exited": "stopped"}.get(container.state)
            if kind is None:
                self.metrics.lookups.labels("unknown_state").inc()
                return []
            ev = StreamEvent(container_id, kind, 0, container=container, detail=detail, sandbox=sandbox)  # type: ignore[arg-type]
            self.metrics.lookups.labels("found").inc()
            return self.emit(self.engine.stream(ev, self.now_ns(), source="lookup"))

    def take_wake(self) -> bool:
        """True (once) when the reader asked for a step: its stream ended or a list is wanted.
        ``run`` reacts to it by itself; a driver that calls ``step`` by hand may poll this."""
        if self._wake.is_set():
            self._wake.clear()
            return True
        return False

    def close(self) -> None:
        """Stop the event stream: cancel its call and join the reader thread; end the status
        thread. Idempotent."""
        self._stop_stream()
        if self._status_pool is not None:
            self._status_pool.shutdown(wait=True)
            self._status_pool = None

    def interrupt(self) -> None:
        """Shutdown, from any thread, after setting the ``stop`` given to ``run``: cancel the RPCs in
        flight (lists, the status fan-out, the event stream) so that ``run`` returns at once instead
        of after the current poll -- seconds on a node of 10,000 containers. The poll cut short
        emits what it had (the engine takes partial details as after any failed call)."""
        self.client.cancel()
        reader = self.reader
        if reader is not None:
            reader.cancel()
        self._wake.set()  # _wait returns now rather than at its next STOP_CHECK_S

    def emit(self, events: list[Event]) -> list[Event]:
        if not events:
            return events
        if len(events) == 1:
            e = events[0]
            self.metrics.events.labels(e.type, e.source).inc()
            if e.synthetic and e.why:
                self.metrics.synthetic.labels(e.why).inc()
        elif events:  # counted per label first: a first snapshot emits 20,000 events at 10,000 containers
            for (kind, source), n in Counter((e.type, e.source) for e in events).items():
                self.metrics.events.labels(kind, source).inc(n)
            for why, n in Counter(e.why for e in events if e.synthetic and e.why).items():
                self.metrics.synthetic.labels(why).inc(n)
        return self.emitter.emit(events)

    # ---- real-time schedule -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll at a fixed rate until ``stop`` is set (``sensor.schedule``: a late poll is followed
        at once, the slots it ran past counted). On the way out the event stream, if any, is
        cancelled and its reader joined."""
        try:
            self._run(stop)
        finally:
            self.close()

    def _wait(self, stop: threading.Event, seconds: float, *, step_on_wake: bool = True) -> bool:
        """Sleep ``seconds``; True as soon as ``stop`` is set. A wake from the stream reader runs a
        ``step`` at once, without moving the schedule; with ``step_on_wake=False`` it ends the sleep
        instead (the caller's next step is what woke it)."""
        deadline = self.monotonic() + seconds
        while not stop.is_set():
            left = deadline - self.monotonic()
            if left <= 0:
                return False
            if self._wake.wait(left if self.stop_check_s is None else min(left, self.stop_check_s)):
                self._wake.clear()
                if not step_on_wake:
                    return stop.is_set()
                if not stop.is_set():
                    self.step()
        return True

    def _run(self, stop: threading.Event) -> None:
        ticks = Ticks(self.poll_interval_ns / 1e9, self.monotonic())
        while not stop.is_set():
            ok = self.step()
            if not ok and not self.client.connected:
                if self._wait(stop, self.backoff.next_delay()):
                    return
                ticks.restart(self.monotonic())  # re-anchor the schedule after an outage
                continue
            wait, missed = ticks.after(self.monotonic())
            if missed:  # the next step starts at once (sensor.schedule)
                self.overruns += missed
                self.metrics.overruns.inc(missed)
            idle = self._idle_s()
            if idle > wait:  # streaming and nothing to do: sleep through the ticks until the next list
                if self._wait(stop, idle, step_on_wake=False):
                    return
                ticks.restart(self.monotonic())  # what woke it (the list due, the reader) is the next step
                continue
            if self._wait(stop, wait):
                return

    def _idle_s(self) -> float:
        """Seconds until a step has something to do while an announced stream is open and idle (the
        next reconciling list); 0 otherwise. The reader wakes ``run`` for anything sooner."""
        reader = self.reader
        if (not self.plan.streaming or reader is None or reader is not self._announced or self._list_now
                or self.engine.resync_wanted or self._last_list_ns is None):
            return 0.0
        period = self.plan.list_period_ns(self.poll_interval_ns)
        due_ns = self._last_list_ns + period - self.poll_interval_ns // 2  # as _list_due
        return max(0.0, (due_ns - self.now_ns()) / 1e9)
