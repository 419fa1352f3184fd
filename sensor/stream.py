"""The event stream: ``GetContainerEvents`` read on a thread the poller owns, and when to use it.

Theory of operation
-------------------
Three parts, each small:

* ``stream_event`` converts one ``ContainerEventResponse`` -- or the ``EventView`` that
  ``sensor.wire.event_reader`` decodes from its bytes, the named container's status alone -- into
  a plain ``StreamEvent`` (the diff engine never sees protobuf). The named container's status is
  picked out of ``containers_statuses``; a nil ``pod_sandbox_status`` becomes ``None``.
* ``StreamPlan`` is the pure decision table: whether to subscribe now, how to read the way a
  stream ended, and how often to list. It takes times in and reads no clock.
* ``StreamReader`` is the I/O: one thread per subscription, started, cancelled and joined by the
  ``Poller`` (nothing fire-and-forget). It hands every event to the poller's callback, which
  applies it to the diff engine under the poller's lock, and reports the end.

Subscribing before the first list. grpcio starts a call when it is invoked, so the poller opens
the stream, then waits (at most ``SUBSCRIBE_WAIT_S``) for the response headers, then lists: every
change after the list is then on the stream. ``fakecri`` sends headers as soon as it has
subscribed. Runtimes written in Go (containerd, CRI-O) send them only with the first event: there
the wait simply times out, harmlessly -- the list goes ahead, and what falls between list and
subscription (a fraction of a millisecond) is caught by the next reconciling list.

How a stream ends decides what happens next (``StreamPlan.TRANSITIONS``)::

    outcome        seen as                                     next
    unimplemented  UNIMPLEMENTED (no GetContainerEvents;        poll only, until a reconnect
                   also runtime.v1alpha2: no stream at all)
    refused        ends at once, nothing delivered: EOF         poll; try again every
                   (CRI-O without enable_pod_events) or an      resync_interval
                   error (newer CRI-O)
    closed         UNAVAILABLE ("subscription closed":          resubscribe with backoff (at once,
                   containerd overflow or restart), or any      then 100 ms doubling to 5 s;
                   end after it worked                          reset after a stream lived 1 s),
                                                                then list at once
    cancelled      CANCELLED: the sensor closed it              (shutdown or reconnect)

While a stream is open the poller lists every ``resync_interval`` (a *reconciling* list: what it
finds is reported with ``source: "resync"``); otherwise every ``poll_interval``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sensor.snapshot import STREAM_EVENT_TYPES, ContainerSnap, SandboxSnap, StreamEvent
from sensor.wire import (
    CONTAINER_STATE_ENUM,
    CONTAINER_STATES,
    EVENT_TYPE_ENUM,
    SANDBOX_STATE_ENUM,
    SANDBOX_STATES,
    MalformedResponse,
    Tally,
    UnusableEvent,
    container_detail,
    note_state,
)

__all__ = [
    "CLOSED_BACKOFF_CAP_NS",
    "HEALTHY_NS",
    "SUBSCRIBE_WAIT_S",
    "StreamEnd",
    "StreamPlan",
    "StreamReader",
    "classify",
    "stream_event",
]

log = logging.getLogger("crisensor")

#: How long the poller waits for the stream's response headers before its first list.
SUBSCRIBE_WAIT_S = 0.25
#: A stream open at least this long counted as healthy: its end restarts the resubscribe backoff.
HEALTHY_NS = 1_000_000_000
#: Resubscribe backoff after a closed stream: 0 the first time, then 100 ms doubling to this cap.
CLOSED_BACKOFF_BASE_NS = 100_000_000
CLOSED_BACKOFF_CAP_NS = 5_000_000_000
SUBSCRIPTION_HEADER = "fakecri-subscription"


# --- conversion -------------------------------------------------------------------------------------


def _sandbox(st: Any) -> SandboxSnap:
    md = st.metadata
    return SandboxSnap(id=st.id, name=md.name, namespace=md.namespace, uid=md.uid, attempt=md.attempt,
                       state=SANDBOX_STATES[st.state] if 0 <= st.state < 2 else "unknown",
                       created_at=st.created_at, labels=dict(st.labels))


def _container(st: Any, sandbox_id: str) -> ContainerSnap:
    return ContainerSnap(id=st.id, sandbox_id=sandbox_id, name=st.metadata.name, attempt=st.metadata.attempt,
                         image=st.image.image, image_ref=st.image_ref,
                         state=CONTAINER_STATES[st.state] if 0 <= st.state < 4 else "unknown",
                         created_at=st.created_at, labels=dict(st.labels))


def stream_event(resp: Any, tally: Tally | None = None) -> StreamEvent:
    """One ``ContainerEventResponse`` (either API module's) -> ``StreamEvent``.

    Raises ``UnusableEvent`` for an event the sensor cannot apply: a ``ContainerEventType`` it does
    not know, or an empty ``container_id`` (sensor.wire, rules 2 and 3). A pod sandbox status with an
    empty ID counts as nil; state values it does not know are read as in a list, counted in ``tally``.
    """
    kind = resp.container_event_type
    if not 0 <= kind < len(STREAM_EVENT_TYPES):
        raise UnusableEvent("unknown_enum", f"{EVENT_TYPE_ENUM} {kind} (known: 0-{len(STREAM_EVENT_TYPES) - 1})",
                            EVENT_TYPE_ENUM, kind)
    if not resp.container_id:
        raise UnusableEvent("empty_id", "an event with an empty container_id")
    has_sandbox = resp.HasField("pod_sandbox_status") and bool(resp.pod_sandbox_status.id)
    sandbox = _sandbox(resp.pod_sandbox_status) if has_sandbox else None
    status = next((st for st in resp.containers_statuses if st.id == resp.container_id), None)
    if has_sandbox:
        note_state(tally, SANDBOX_STATE_ENUM, resp.pod_sandbox_status.state)
    if status is not None:
        note_state(tally, CONTAINER_STATE_ENUM, status.state)
    return StreamEvent(
        container_id=resp.container_id,
        type=STREAM_EVENT_TYPES[kind],
        time_ns=resp.created_at,
        container=None if status is None else _container(status, sandbox.id if sandbox else ""),
        detail=None if status is None else container_detail(status),
        sandbox=sandbox,
    )


# --- the plan (pure) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEnd:
    """How one subscription ended: gRPC code name (``OK`` for EOF), details, events delivered."""

    code: str
    details: str
    received: int


def classify(end: StreamEnd, lived_ns: int) -> str:
    """``unimplemented`` | ``refused`` | ``closed`` | ``cancelled`` (see the module docstring)."""
    if end.code == "CANCELLED":
        return "cancelled"
    if end.code == "UNIMPLEMENTED":
        return "unimplemented"
    if end.code == "UNAVAILABLE" or end.received > 0 or lived_ns >= HEALTHY_NS:
        return "closed"
    return "refused"


class StreamPlan:
    """When to subscribe and how often to list; pure (times in, no clock, no I/O).

    ``mode`` is ``crisensor.events``: ``off`` never streams; ``auto`` and ``on`` stream where the
    runtime serves v1 events and poll otherwise (``on`` only logs louder: see ``Poller``).
    """

    #: {state: {input: new state}}; ``connected`` (a new connection) leaves every state but ``off``
    #: for ``idle`` -- or ``unsupported`` on runtime.v1alpha2.
    TRANSITIONS: dict[str, dict[str, str]] = {
        "off": {},
        "idle": {"open": "open"},
        "open": {"closed": "idle", "refused": "idle", "cancelled": "idle", "unimplemented": "unsupported"},
        "unsupported": {},
    }

    def __init__(self, mode: str, resync_interval_ns: int) -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"events mode {mode!r} (accepted: auto, on, off)")
        self.mode = mode
        self.resync_interval_ns = resync_interval_ns
        self.state = "off" if mode == "off" else "idle"
        self.retry_at_ns = 0
        self.opened_ns = 0
        self.closed_in_row = 0
        #: Why the sensor is not streaming (empty while it is, or before the first try).
        self.reason = "crisensor.events is off" if mode == "off" else ""

    def _go(self, what: str) -> None:
        new = self.TRANSITIONS[self.state].get(what)
        if new is None:
            raise ValueError(f"stream plan: no transition from {self.state!r} on {what!r} "
                             f"(accepted: {', '.join(self.TRANSITIONS[self.state]) or 'none'})")
        self.state = new

    @property
    def streaming(self) -> bool:
        return self.state == "open"

    def connected(self, now_ns: int, api: str) -> None:
        """A (new) connection: subscribe at once, before its first list."""
        if self.mode == "off":
            return
        self.closed_in_row = 0
        if api != "v1":
            self.state = "unsupported"
            self.reason = f"runtime.{api} has no event stream (GetContainerEvents is CRI v1 only)"
            return
        self.state = "idle"
        self.retry_at_ns = now_ns

    def due(self, now_ns: int) -> bool:
        """Subscribe now?"""
        return self.state == "idle" and now_ns >= self.retry_at_ns

    def opened(self, now_ns: int) -> None:
        self._go("open")
        self.opened_ns = now_ns
        self.reason = ""

    def ended(self, end: StreamEnd, now_ns: int) -> str:
        """The open stream ended: returns the outcome and plans the next subscription."""
        outcome = classify(end, now_ns - self.opened_ns)
        self._go(outcome)
        what = f"{end.code}: {end.details}" if end.details else end.code
        if outcome == "closed":
            if now_ns - self.opened_ns >= HEALTHY_NS:
                self.closed_in_row = 0
            delay = 0 if self.closed_in_row == 0 else min(
                CLOSED_BACKOFF_CAP_NS, CLOSED_BACKOFF_BASE_NS * 2 ** (self.closed_in_row - 1))
            self.closed_in_row += 1
            self.retry_at_ns = now_ns + delay
            self.reason = f"event stream closed ({what})"
        elif outcome == "refused":
            self.retry_at_ns = now_ns + self.resync_interval_ns
            self.reason = ("runtime ended the event stream at once (EOF: CRI-O without enable_pod_events?)"
                           if end.code == "OK" else f"runtime refused the event stream ({what})")
        elif outcome == "unimplemented":
            self.reason = f"runtime does not serve GetContainerEvents ({what})"
        else:
            self.retry_at_ns = now_ns
            self.reason = "event stream cancelled by the sensor"
        return outcome

    def list_period_ns(self, poll_interval_ns: int) -> int:
        """How often to list: ``resync_interval`` while streaming, else ``poll_interval``."""
        return self.resync_interval_ns if self.streaming else poll_interval_ns


# --- the reader (I/O) -------------------------------------------------------------------------------


class StreamReader:
    """Reads one ``GetContainerEvents`` call on its own thread. Owned by the ``Poller``, which
    starts it, cancels it and joins it; the callbacks run on the reader's thread.

    ``on_event(StreamEvent)`` applies one event; ``on_end(reader)`` reports the end (``end`` is
    set by then). ``received`` counts events applied; ``metadata`` holds the response headers
    (``subscribed`` is set when they came, or when the call ended without them).

    ``decode`` turns each item of the call into a ``ContainerEventResponse`` (the client's
    ``event_decoder``: items are the answers' bytes; ``None``: items are messages already). An item
    that does not decode (``MalformedResponse``) or cannot be applied (``UnusableEvent``) is skipped
    and reported with ``on_unusable(problem, notes)``, as is one read loosely (``problem`` ``None``,
    ``notes`` non-empty): the stream goes on, and the owner lists to learn what it missed.
    """

    def __init__(self, call: Any, *, on_event: Callable[[StreamEvent], None],
                 on_end: Callable[[StreamReader], None], name: str = "crisensor-stream",
                 decode: Callable[[Any], Any] | None = None,
                 on_unusable: Callable[[Exception | None, Tally], None] | None = None) -> None:
        self.call = call
        self.on_event = on_event
        self.on_end = on_end
        self.decode = decode
        self.on_unusable = on_unusable
        self.subscribed = threading.Event()
        self.ended = threading.Event()
        self.metadata: tuple[tuple[str, str], ...] = ()
        self.received = 0
        self.end: StreamEnd | None = None
        # daemon only as a last resort against a wedged call at interpreter exit; the owner joins it
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> StreamReader:
        self.thread.start()
        return self

    @property
    def subscription(self) -> str | None:
        """The subscription name fakecri sends in its headers (tests use it; real runtimes send none)."""
        return next((v for k, v in self.metadata if k == SUBSCRIPTION_HEADER), None)

    def cancel(self) -> None:
        self.call.cancel()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has ended."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        import grpc

        code, details = "OK", ""
        try:
            md = self.call.initial_metadata()  # blocks until headers (or the end) arrive
            self.metadata = tuple((m.key, m.value) for m in md or ())
            self.subscribed.set()
            for item in self.call:
                notes = Tally()
                try:
                    ev = stream_event(item if self.decode is None else self.decode(item), notes)
                except (MalformedResponse, UnusableEvent) as e:
                    if self.on_unusable is not None:
                        self.on_unusable(e, notes)
                    continue
                if notes and self.on_unusable is not None:
                    self.on_unusable(None, notes)
                self.on_event(ev)
                self.received += 1
        except grpc.RpcError as e:
            c = e.code() if hasattr(e, "code") else None
            code = c.name if c is not None else "UNKNOWN"
            details = (e.details() if hasattr(e, "details") else "") or ""
        except Exception as e:  # a bug applying an event: end this stream (one line; the trace at debug)
            log.error("crisensor: event stream reader failed (%s: %s); ending the stream", type(e).__name__, e)
            log.debug("crisensor: event stream reader failure", exc_info=True)
            code, details = "INTERNAL", f"{type(e).__name__}: {e}"
            self.call.cancel()
        finally:
            self.end = StreamEnd(code, details, self.received)
            self.subscribed.set()
            self.ended.set()
            self.on_end(self)
