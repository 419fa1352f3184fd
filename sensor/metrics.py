"""Prometheus metrics for the sensor (served only with ``--metrics-addr``).

Each sensor owns its own registry, so several sensors in one process (tests) do not collide.
"""

from __future__ import annotations

import math
import socket
import threading
from bisect import bisect_left
from collections import Counter as Counts
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, repeat
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

# prometheus-client adds a ``*_created`` timestamp series to every counter and histogram: noise here
# (the sensor's start time is in process_start_time_seconds), and twice the series to store.
disable_created_metrics()


#: Finer around common poll intervals (100-500 ms): whether a poll fits its interval is the question.
POLL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1, 2.5)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.poll_seconds = Histogram(
            "crisensor_poll_duration_seconds", "Wall time of one poll (lists + status calls + diff).",
            buckets=POLL_BUCKETS, registry=r)
        self.poll_rpc_seconds = Histogram(
            "crisensor_poll_rpc_wait_seconds",
            "Wall time of one successful poll spent waiting for its CRI calls (the lists, and the status "
            "calls but while the events that need no answer are written): the runtime's share of "
            "crisensor_poll_duration_seconds; the rest is the sensor's own work.",
            buckets=POLL_BUCKETS, registry=r)
        self.rpc_errors = Counter("crisensor_rpc_errors_total", "Failed CRI calls by method and gRPC code.",
                                  ["method", "code"], registry=r)
        self.cri_calls = CallCounts()
        r.register(self.cri_calls)
        self.synthetic = Counter("crisensor_synthetic_events_total", "Forged events by why.", ["why"], registry=r)
        self.events = Counter("crisensor_events_total", "Events emitted by type and source.", ["type", "source"],
                              registry=r)
        self.tracked = Gauge("crisensor_containers_tracked", "Containers the diff engine tracks.", registry=r)
        self.runtime_up = Gauge("crisensor_runtime_up", "1 while the runtime answers, else 0.", registry=r)
        self.reconnects = Counter("crisensor_reconnects_total", "Successful reconnections after a loss.",
                                  registry=r)
        # What the runtime sent that the sensor could not take as it came (sensor.wire; docs/events.md).
        self.malformed = Counter("crisensor_malformed_responses_total",
                                 "CRI answers that did not decode, by method; each counts as a failed call "
                                 "(a list: a failed poll, never an empty runtime).", ["method"], registry=r)
        self.dropped = Counter("crisensor_dropped_records_total",
                               "Records left out of a snapshot or stream, by kind (container, sandbox, event) and "
                               "reason (empty_id; duplicate_id: an ID listed twice in one answer, the first wins).",
                               ["kind", "reason"], registry=r)
        self.unknown_enums = Counter("crisensor_unknown_enum_values_total",
                                     "Records carrying an enum value this sensor does not know, by enum "
                                     "(ContainerState, PodSandboxState, ContainerEventType).", ["enum"], registry=r)
        self.events_unwritten = Counter("crisensor_events_unwritten_total",
                                        "Events not written because the output failed (full disk, I/O error, "
                                        "closed pipe); the sensor stops at the first failure.", registry=r)
        self.lookups = Counter("crisensor_lookups_total", "Lookups of containers an exec named before any poll "
                               "announced them (crisensor.lookup_on_miss), by result: found, not_found, failed, "
                               "unknown_state.", ["result"], registry=r)
        self.status_skipped = Counter("crisensor_status_skipped_total",
                                      "ContainerStatus calls left out because a poll needed more than its budget "
                                      "(the containers' start times are estimated).", registry=r)
        self.overruns = Counter("crisensor_schedule_overruns_total",
                                "Poll slots a poll ran past (the next poll then starts at once, late).", registry=r)
        # The analytics stage (sensor.analytics.Pipeline; docs/analytics.md).
        self.analytics_released = Counter("crisensor_analytics_released_total",
                                          "Items the analytics stage released, by kind (lifecycle, process).",
                                          ["kind"], registry=r)
        self.reorder_late = Counter("crisensor_reorder_late_total",
                                    "Items that reached the reorder stage after their slot and were released at "
                                    "once, flagged late, by kind (lifecycle, process). Lifecycle events late under "
                                    "a fixed window: event_reorder_window is shorter than the poll's lateness.",
                                    ["kind"], registry=r)
        self.reorder_forced = Counter("crisensor_reorder_forced_total",
                                      "Items released before their slot, by reason (overflow, cap, flush).",
                                      ["reason"], registry=r)
        self.reorder_overflow = Counter("crisensor_reorder_overflow_total",
                                        "Items released early because the reorder stage held max_events.",
                                        registry=r)
        self.reorder_held = Gauge("crisensor_reorder_held", "Items the reorder stage holds.", registry=r)
        self.reorder_lateness = BatchHistogram(
            "crisensor_reorder_lateness_seconds",
            "Lateness of container lifecycle events (observed_ns - time_ns): a fixed event_reorder_window "
            "shorter than this leaves process events unenriched.",
            (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1, 2.5, 5))
        r.register(self.reorder_lateness)
        self.unenriched = Counter("crisensor_enrich_unenriched_total",
                                  "Process events released without container metadata, by why_unenriched.",
                                  ["why"], registry=r)

    def serve(self, host: str, port: int) -> threading.Thread:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread that sleeps until a scrape comes.
        prometheus-client's own server looks for a shutdown request every 0.5 s: two wake-ups a
        second on a sensor that is otherwise idle between resyncs (docs/performance.md, "Idle
        streaming"). This one is never shut down; it ends with the process."""
        server = _server_class(host, port)
        httpd = make_server(host, port, make_wsgi_app(self.registry), server, handler_class=_QuietHandler)
        t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": None}, name="crisensor-metrics",
                             daemon=True)
        t.start()
        return t


class BatchHistogram:
    """A histogram observed a batch at a time (``observe_many``), exposed as prometheus-client's own
    ``Histogram`` would expose it. Every lifecycle event's lateness is observed: ~900 of them in a
    churning poll, where ``Histogram.observe`` costs 1.3 us each (its lock and bucket walk per value);
    here a batch is bucketed by one C-level ``bisect`` pass and counted under one lock (0.15 us)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(float(b) for b in buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Iterable[float]) -> None:
        values = list(values)
        if not values:
            return
        hits = Counts(map(bisect_left, repeat(self.bounds), values))  # le: the first bound >= v
        total = math.fsum(values)
        with self._lock:
            for i, n in hits.items():
                self._counts[i] += n
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative = list(accumulate(counts))
        buckets = [(floatToGoString(b), n) for b, n in zip(self.bounds, cumulative, strict=False)]
        buckets.append(("+Inf", cumulative[-1]))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


class CallCounts:
    """``crisensor_cri_calls_total{method}``: the CRI calls the sensor issued, the load it puts on the
    runtime. Read at scrape time from the client's own counts (``CriClient.rpc_count``, set as
    ``source``): a labelled counter's ``inc`` would cost more per status call than the count itself."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("crisensor_cri_calls", "CRI calls issued, by method.", labels=["method"])
        counts = dict(self.source()) if self.source is not None else {}  # one copy, in C: no torn read
        for method, n in sorted(counts.items()):
            family.add_metric([method], n)
        yield family


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged (stderr is the sensor's log)."""


def _server_class(host: str, port: int) -> type[ThreadingWSGIServer]:
    """A threading WSGI server of the address family ``host`` resolves to first (``::1``: IPv6)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return type("MetricsServer", (ThreadingWSGIServer,), {"address_family": family})
