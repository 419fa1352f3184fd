"""Benchmark: polling vs event streaming on the same scenarios (G7 latency, G8 misses, RPC load).

    python -m bench.bench_stream [--scenarios a,b,...] [--poll-interval 250ms] [--no-real] [--json FILE]

For each scenario (default: containerd_1_7_events, crio_1_26_events, churn_storm, fast_exit, all
served as their own flavour; churn_storm and fast_exit are containerd-1.7) and each mode
(``poll``: ``crisensor.events: off``; ``stream``: ``on``), the real sensor (``Poller``) watches
``fakecri`` over a real unix socket twice:

* on the VIRTUAL clock (deterministic): G8 -- containers that completed a lifecycle in the run and
  got no ``container.created`` -- and the load on the runtime: RPCs the sensor issued
  (``CriClient.rpc_count``) per second of scenario time. ``drive`` advances the harness to each
  step's instant and to each poll tick, and after each lets the stream reader catch up
  (``settle``), so streamed events are observed at the virtual instant they were sent;
* on the REAL clock: G7 -- latency ``observed_ns - truth time`` of every event for a transition
  inside the run (p50/p99/max), and of the streamed ones alone; the sensor runs ``Poller.run``
  on its own thread, as ``crisensor run`` does.

Every run is also judged by ``fakecri.check`` (``CheckParams(mode=...)``); failed guarantees are
printed. Results go to ``bench/results/stream.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakecri.check import CheckParams, check
from fakecri.harness import Harness, bundled_path
from fakecri.server import EventHub
from fakecri.truth import ContainerTransition
from sensor.client import CriClient
from sensor.duration import parse_duration
from sensor.events import Event
from sensor.output import Emitter
from sensor.poller import Poller

DEFAULT_JSON = Path(__file__).parent / "results" / "stream.json"
SCENARIOS = ("containerd_1_7_events", "crio_1_26_events", "churn_storm", "fast_exit")
MS = 1_000_000
MODES = {"poll": "off", "stream": "on"}


# --- driving the real sensor on a virtual clock ------------------------------------------------------


def settle(poller: Poller, hub: EventHub, timeout_s: float = 5.0) -> None:
    """Wait until the poller's stream reader has applied every event the fake runtime queued for
    it (or its stream ended). fakecri names the subscription in its response headers
    (``StreamReader.subscription``) and counts what it queued (``EventHub.sent``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = poller.reader
        if r is None or r.ended.is_set():
            return
        key = r.subscription
        if key is not None:
            sent = hub.sent(int(key))
            if sent is not None and r.received >= sent:
                return
            # sent is None: the runtime closed the subscription; the reader will see the end
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stream reader did not catch up within {timeout_s} s "
                               f"(received {r.received}, subscription {key})")
        time.sleep(0.0002)


def react(poller: Poller, hub: EventHub, limit: int = 20) -> None:
    """Settle, then run the steps the reader asked for (its stream ended, or a list is wanted)."""
    settle(poller, hub)
    for _ in range(limit):
        if not poller.take_wake():
            return
        poller.step()
        settle(poller, hub)


def drive(h: Harness, poller: Poller, *, tick_ns: int, end_ns: int | None = None) -> None:
    """Run a virtual-clock harness to offset ``end_ns`` (default: the scenario's end + 2 ticks),
    stepping the poller at every multiple of ``tick_ns`` (offset 0 included) and reacting to the
    stream at every step's instant (see ``settle``/``react``). May be called again to go on."""
    hub = h.server.hub
    runner = h.runner
    assert runner is not None, "start() the harness first"
    end = h.end_ns + 2 * tick_ns if end_ns is None else end_ns
    now = h.offset_ns
    if now == 0:
        poller.step()
        react(poller, hub)
    next_tick = (now // tick_ns + 1) * tick_ns
    while True:
        nxt = runner.next_at_ns
        t = next_tick if nxt is None else min(nxt, next_tick)
        if t > end:
            break
        h.advance_to(t)
        react(poller, hub)
        if t == next_tick:
            poller.step()
            react(poller, hub)
            next_tick += tick_ns
    h.advance_to(max(end, h.offset_ns))
    react(poller, hub)


# --- one run ----------------------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    mode: str
    clock: str
    duration_s: float
    events: list[Event]
    truth: list[Any]
    rpc_count: dict[str, int]
    report: Any = None
    measures: dict[str, Any] = field(default_factory=dict)
    idle_rpc_per_s: float | None = None  # RPCs per second on the idle node after the scenario


def _socket() -> str:
    return os.path.join(tempfile.mkdtemp(prefix="bst-", dir="/tmp"), "cri.sock")


def _sensor(h: Harness, mode: str, poll_interval_ns: int, resync_interval_ns: int,
            now_ns: Any) -> tuple[CriClient, Poller, list[Event]]:
    events: list[Event] = []
    emitter = Emitter(None)
    emitter.listeners.append(events.append)
    client = CriClient(h.addr, clock=now_ns, rpc_timeout_s=2)
    poller = Poller(client, emitter, poll_interval_ns=poll_interval_ns, now_ns=now_ns, events=MODES[mode],
                    resync_interval_ns=resync_interval_ns)
    return client, poller, events


def run_virtual(scenario: str, mode: str, *, poll_interval_ns: int = 250 * MS,
                resync_interval_ns: int = 10_000 * MS, flavor: str | None = None, idle_ns: int = 0) -> Run:
    """The real sensor against ``scenario`` on a virtual clock (deterministic); judged. With
    ``idle_ns``, the sensor then watches the idle node that long more, for the steady-state load."""
    h = Harness(bundled_path(scenario), socket=_socket(), flavor=flavor)
    h.start()
    client, poller, events = _sensor(h, mode, poll_interval_ns, resync_interval_ns, h.clock.now_ns)
    idle = None
    try:
        drive(h, poller, tick_ns=poll_interval_ns)
        end = h.clock.now_ns()
        counts = dict(client.rpc_count)
        if idle_ns:
            before = sum(client.rpc_count.values())
            drive(h, poller, tick_ns=poll_interval_ns, end_ns=h.offset_ns + idle_ns)
            idle = (sum(client.rpc_count.values()) - before) / (idle_ns / 1e9)
        poller.close()  # the stream's truth record is written when it ends
    finally:
        poller.close()
        client.close()
        h.server.stop(grace=None)
        h.stop()
    run = Run(scenario, mode, "virtual", (end - h.start_ns) / 1e9, events, list(h.truth.records()), counts)
    run.idle_rpc_per_s = idle
    run.report = check(run.truth, events, CheckParams(poll_interval_ns=poll_interval_ns, mode=mode, end_ns=end))
    return run


def run_real(scenario: str, mode: str, *, poll_interval_ns: int = 250 * MS,
             resync_interval_ns: int = 10_000 * MS, flavor: str | None = None) -> Run:
    """The real sensor (``Poller.run`` on its own thread) against ``scenario`` in real time; judged."""
    h = Harness(bundled_path(scenario), socket=_socket(), flavor=flavor, clock="real")
    h.start()
    client, poller, events = _sensor(h, mode, poll_interval_ns, resync_interval_ns, time.time_ns)
    stop = threading.Event()
    worker = threading.Thread(target=poller.run, args=(stop,), name="bench-sensor")
    try:
        worker.start()
        h.wait_end(timeout=h.end_ns / 1e9 + 30)
        time.sleep(2 * poll_interval_ns / 1e9)  # the last polls
        end = time.time_ns()
        stop.set()
        worker.join(10)
    finally:
        stop.set()
        worker.join(10)
        client.close()
        h.server.stop(grace=None)
        h.stop()
    run = Run(scenario, mode, "real", (end - h.start_ns) / 1e9, events, list(h.truth.records()),
              dict(client.rpc_count))
    run.report = check(run.truth, events, CheckParams(poll_interval_ns=poll_interval_ns, mode=mode, end_ns=end))
    return run


# --- measures ---------------------------------------------------------------------------------------


def _pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q / 100 * len(values) + 0.5) - 1))
    return values[k] / 1e6


def latencies(run: Run) -> dict[str, Any]:
    """observed_ns - truth time for the first event of each container transition in the run."""
    first: dict[tuple[str, str], int] = {}
    for r in run.truth:
        if isinstance(r, ContainerTransition):
            first.setdefault((r.container_id, r.transition), r.time_ns)  # IDs are not reused here
    lat: list[int] = []
    streamed: list[int] = []
    seen: set[tuple[str, str]] = set()
    for e in run.events:
        if not e.type.startswith("container.") or e.container_id is None:
            continue
        key = (e.container_id, e.type.split(".", 1)[1])
        t = first.get(key)
        if t is None or key in seen or e.observed_ns < t:
            continue
        seen.add(key)
        lat.append(e.observed_ns - t)
        if e.source == "stream":
            streamed.append(e.observed_ns - t)
    return {"events": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "max_ms": max(lat) / 1e6 if lat else None, "streamed": len(streamed),
            "stream_p50_ms": _pct(streamed, 50), "stream_p99_ms": _pct(streamed, 99)}


def summarize(virtual: Run, real: Run | None) -> dict[str, Any]:
    g8 = virtual.report.results["G8"].measures
    rpcs = sum(virtual.rpc_count.values())
    out: dict[str, Any] = {
        "scenario": virtual.scenario,
        "mode": virtual.mode,
        "completed": g8["total"],
        "missed": g8["missed"],
        "miss_rate": g8["actual_miss_rate"],
        "expected_poll_miss_rate": g8["expected_miss_rate"],
        "rpcs": rpcs,
        "rpc_per_s": rpcs / virtual.duration_s if virtual.duration_s else 0.0,
        "rpc_by_method": virtual.rpc_count,
        "idle_rpc_per_s": virtual.idle_rpc_per_s,
        "virtual_s": round(virtual.duration_s, 3),
        "sources": dict(Counter(e.source for e in virtual.events if e.type.startswith(("container.", "sandbox.")))),
        "failed_virtual": virtual.report.failed,
    }
    if real is not None:
        out["latency"] = latencies(real)
        out["g7"] = {k: real.report.results["G7"].measures[k] for k in ("p50_ms", "p99_ms", "max_ms")}
        out["failed_real"] = real.report.failed
    return out


def _f(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'scenario':<22} {'mode':<6} {'done':>5} {'missed':>6} {'miss%':>6} {'RPC/s':>7} {'idle/s':>6} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'strm p99':>8}  failed")
    lines = [head, "-" * len(head)]
    for r in rows:
        lat = r.get("latency", {})
        failed = sorted(set(r["failed_virtual"]) | set(r.get("failed_real", [])))
        lines.append(
            f"{r['scenario']:<22} {r['mode']:<6} {r['completed']:>5} {r['missed']:>6} "
            f"{100 * r['miss_rate']:>6.1f} {r['rpc_per_s']:>7.1f} {_f(r.get('idle_rpc_per_s'), '.2f'):>6} "
            f"{_f(lat.get('p50_ms')):>7} "
            f"{_f(lat.get('p99_ms')):>7} {_f(lat.get('max_ms')):>7} {_f(lat.get('stream_p99_ms'), '.2f'):>8}  "
            f"{','.join(failed) or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_stream", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--poll-interval", default="250ms")
    ap.add_argument("--resync-interval", default="10s")
    ap.add_argument("--no-real", action="store_true", help="skip the real-clock latency runs")
    ap.add_argument("--idle", default="60s", help="then watch the idle node this long (virtual) for the steady load")
    ap.add_argument("--json", default=str(DEFAULT_JSON))
    args = ap.parse_args(argv)
    poll = parse_duration(args.poll_interval)
    resync = parse_duration(args.resync_interval)
    rows = []
    for name in args.scenarios.split(","):
        for mode in MODES:
            virtual = run_virtual(name, mode, poll_interval_ns=poll, resync_interval_ns=resync,
                                  idle_ns=parse_duration(args.idle))
            real = None if args.no_real else run_real(name, mode, poll_interval_ns=poll, resync_interval_ns=resync)
            row = summarize(virtual, real)
            rows.append(row)
            for run in (virtual, real):
                if run is not None and run.report.failed:
                    print(f"# {name} {mode} ({run.clock} clock) failed {run.report.failed}:", file=sys.stderr)
                    for g in run.report.failed:
                        for v in run.report.results[g].violations[:3]:
                            print(f"#   {v.message}", file=sys.stderr)
    print(f"poll_interval {args.poll_interval}, resync_interval {args.resync_interval}; G8 and RPC/s on the virtual "
          f"clock (RPC/s over the scenario; idle/s over {args.idle} of idle node after it), latency (observed - "
          "truth, every container event) on the real clock")
    print(table(rows))
    out = {"poll_interval": args.poll_interval, "resync_interval": args.resync_interval,
           "python": platform.python_version(), "machine": platform.machine(), "rows": rows}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["Run", "drive", "latencies", "react", "run_real", "run_virtual", "settle", "summarize"]
