"""Benchmark: the analytics stage's reorder buffer and enrichment (DESIGN.md section 7 target:
>= 500,000 events/s on one core; memory flat over 1M lifecycles).

    python -m bench.bench_reorder [--events N] [--runs R] [--lifecycles L] [--window 25ms] [--json FILE]

What is measured (CPU time of this one thread, ``time.thread_time``; median of ``--runs``):

* ``reorder (fixed)``: ``ReorderBuffer.push_many`` + ``advance`` over N process events;
* ``reorder (watermark)``: the same through ``WatermarkReorder`` with one source whose progress
  trails the clock by the window (so both modes hold the same items);
* ``stage (fixed)`` / ``stage (watermark)``: ``AnalyticsStage`` -- reorder + enrichment -- over N
  events of which ~8% are lifecycle events of ~1000 live containers (ID reuse included) and the
  rest exec events inside them;
* ``stage + to_dict``: the fixed stage plus serializing every output to its documented dict.

Input is realistic bounded disorder: events happen at a steady rate; each arrives a random delay
(0..window) later, and arrivals are pushed in 1 ms batches (one ``push_many`` + one ``advance``
per batch), so lateness never exceeds the window and nothing is late. Generating the input is not
timed; it is ``gc.freeze()``-d so that the collector does not rescan a million pre-built inputs that
a real sensor would never hold (the stage's own garbage is still collected as usual).

The memory check runs ``--lifecycles`` container lifecycles (created, running, 1 exec, exited,
destroyed: 5 events each; 1000 live containers, 1 s lifetimes, so 1000 lifecycles/s of event time
and container IDs reused) through a fixed-window stage, generating events on the fly, and samples
the traced Python heap (``tracemalloc``) and RSS every 10%. Warm-up lasts until the first ended
incarnations age out of the enricher's 10 s retention (~11,000 lifecycles); *flat* means every later
sample is within 10% (+64 KiB) of the first later one.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import write_result
from sensor.duration import parse_duration
from sensor.enrich import AnalyticsStage, Enricher
from sensor.events import Event, Pod
from sensor.process import ProcessEvent
from sensor.reorder import ReorderBuffer, WatermarkReorder

BASE_NS = 1_700_000_000_000_000_000
TICK_NS = 1_000_000  # arrivals are pushed in 1 ms batches
DEFAULT_JSON = Path(__file__).parent / "results" / "reorder.json"

Batch = tuple[int, list[Any]]


# --- input ----------------------------------------------------------------------------------------


def _batches(items: list[Any], window_ns: int, rng: random.Random) -> list[Batch]:
    """Give each item an arrival in (time, time + window - tick], rounded up to the next tick."""
    span = max(1, window_ns - TICK_NS)
    keyed = sorted(((it.time_ns + rng.randrange(span)) // TICK_NS * TICK_NS + TICK_NS, n, it)
                   for n, it in enumerate(items))
    out: list[Batch] = []
    for now, _, it in keyed:
        if not out or out[-1][0] != now:
            out.append((now, []))
        out[-1][1].append(it)
    return out


def process_input(n: int, window_ns: int, seed: int = 1) -> list[Batch]:
    """``n`` exec events, 10 µs apart, over 1000 container IDs."""
    rng = random.Random(seed)
    items = [ProcessEvent(f"c{i % 1000:04d}", BASE_NS + i * 10_000, i, ("/bin/sh", "-c", "true")) for i in range(n)]
    return _batches(items, window_ns, rng)


def _container_event(typ: str, cid: str, t: int, k: int) -> Event:
    return Event(
        type=typ, time_ns=t, window_ns=(t, t), observed_ns=t, container_id=cid, sandbox_id=f"sb{k % 1000:04d}",
        name=f"app-{k}", attempt=0, image="registry.example/app:1", image_ref="sha256:" + "0" * 64,
        labels={"app": "bench", "k": str(k % 1000)}, pod=Pod(f"pod-{k % 1000}", "default", f"uid-{k}"),
    )


def lifecycle(k: int, t0: int, lifetime_ns: int, execs: int, cid: str) -> list[Any]:
    """One container lifecycle: created, running, ``execs`` exec events, exited, destroyed."""
    out: list[Any] = [_container_event("container.created", cid, t0, k),
                      _container_event("container.running", cid, t0 + 1_000_000, k)]
    step = max(1, (lifetime_ns - 3_000_000) // max(1, execs))
    out += [ProcessEvent(cid, t0 + 2_000_000 + j * step, 1000 + j, ("/bin/true",)) for j in range(execs)]
    out += [_container_event("container.exited", cid, t0 + lifetime_ns - 500_000, k),
            _container_event("container.destroyed", cid, t0 + lifetime_ns, k)]
    return out


def stage_input(n: int, window_ns: int, containers: int = 1000, seed: int = 2) -> list[Batch]:
    """~``n`` events: lifecycles of ~``containers`` live containers (IDs reused: 1000 ID slots), each
    with 46 execs, so ~8% of the events are lifecycle events."""
    rng = random.Random(seed)
    execs = 46
    per = execs + 4
    lifecycles = max(1, n // per)
    lifetime = 500_000_000  # 0.5 s; a new one starts every lifetime/containers ns
    gap = lifetime // containers
    items: list[Any] = []
    for k in range(lifecycles):
        items += lifecycle(k, BASE_NS + k * gap, lifetime - rng.randrange(gap), execs, f"c{k % (2 * containers):05d}")
    return _batches(items[:n], window_ns, rng)


# --- runs -----------------------------------------------------------------------------------------


def _drive(batches: list[Batch], push_many: Callable, advance: Callable, progress: Callable | None,
           lag_ns: int) -> int:
    out = 0
    for now, items in batches:
        out += len(push_many(items, now))
        if progress is not None:
            progress("src", now - lag_ns)
        out += len(advance(now))
    return out


def run_once(kind: str, batches: list[Batch], window_ns: int) -> tuple[float, int, dict]:
    watermark = kind.endswith("watermark")
    reorder = (WatermarkReorder(["src"], max_delay_ns=10 * window_ns) if watermark else ReorderBuffer(window_ns))
    progress = reorder.progress if watermark else None
    target: Any = reorder
    if kind.startswith("stage"):
        target = AnalyticsStage(reorder, Enricher())
        progress = target.progress if watermark else None
    last = batches[-1][0] + 20 * window_ns
    t0 = time.thread_time()
    if kind == "stage + to_dict":
        out = 0
        for now, items in batches:
            for r in target.push_many(items, now):
                r.to_dict()
                out += 1
            for r in target.advance(now):
                r.to_dict()
                out += 1
    else:
        out = _drive(batches, target.push_many, target.advance, progress, window_ns)
    dt = time.thread_time() - t0
    if progress is not None:
        progress("src", last)
    out += len(target.advance(last))
    return dt, out, target.stats


KINDS = ("reorder (fixed)", "reorder (watermark)", "stage (fixed)", "stage (watermark)", "stage + to_dict")


def throughput(n: int, runs: int, window_ns: int) -> dict[str, Any]:
    proc = process_input(n, window_ns)
    mixed = stage_input(n, window_ns)
    gc.collect()
    gc.freeze()
    results: dict[str, Any] = {}
    try:
        for kind in KINDS:
            batches = proc if kind.startswith("reorder") else mixed
            total = sum(len(b) for _, b in batches)
            rates = []
            stats: dict = {}
            for _ in range(runs):
                dt, out, stats = run_once(kind, batches, window_ns)
                if out != total:
                    raise AssertionError(f"{kind}: {out} released of {total} pushed")
                rates.append(total / dt)
            results[kind] = {"events": total, "events_per_s": statistics.median(rates),
                             "runs_events_per_s": [round(r) for r in rates], "stats": stats}
    finally:
        gc.unfreeze()
    return results


# --- memory -------------------------------------------------------------------------------------


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


LIFETIME_NS = 1_000_000_000  # memory check: 1 s lifetimes, 1000 live -> 1000 lifecycles/s (fakecri's target)


def _lifecycle_stream(lifecycles: int, containers: int, window_ns: int, seed: int = 3) -> Iterator[Batch]:
    """Batches of arrivals, generated on the fly: nothing but the stage holds events."""
    rng = random.Random(seed)
    lifetime = LIFETIME_NS
    gap = lifetime // containers
    pending: dict[int, list[Any]] = {}
    span = max(1, window_ns - TICK_NS)
    next_k = 0
    now = BASE_NS
    while next_k < lifecycles or pending:
        now += TICK_NS
        # create every lifecycle that starts by now: its events arrive at this tick or later
        while next_k < lifecycles and BASE_NS + next_k * gap <= now:
            for it in lifecycle(next_k, BASE_NS + next_k * gap, lifetime, 1, f"c{next_k % (2 * containers):05d}"):
                at = (it.time_ns + rng.randrange(span)) // TICK_NS * TICK_NS + TICK_NS
                pending.setdefault(at, []).append(it)
            next_k += 1
        yield now, pending.pop(now, [])


def memory(lifecycles: int, window_ns: int, containers: int = 1000, trace: bool = False) -> dict[str, Any]:
    """Run ``lifecycles`` lifecycles through a stage; sample its memory every 10% (module docstring).

    The measure is the traced Python heap with ``trace`` (``tracemalloc``: exact, ~5x slower), else
    ``sys.getallocatedblocks()`` (pymalloc blocks in use: cheap, and just as flat or not); RSS is
    sampled either way."""
    enricher = Enricher()
    stage = AnalyticsStage(ReorderBuffer(window_ns), enricher)
    # steady state begins once the first ended incarnations age out of the enricher's retention
    warmup = (enricher.retention_ns + LIFETIME_NS) * containers // LIFETIME_NS
    samples: list[dict[str, Any]] = []
    every = max(1, lifecycles // 10)
    gc.collect()
    if trace:
        tracemalloc.start()
    base_blocks = sys.getallocatedblocks()
    base_traced = tracemalloc.get_traced_memory()[0] if trace else 0
    events = 0
    seen = 0
    now = 0
    t0 = time.thread_time()
    for now, items in _lifecycle_stream(lifecycles, containers, window_ns):
        events += len(stage.push_many(items, now)) + len(stage.advance(now))
        seen += sum(1 for it in items if type(it) is Event and it.type == "container.destroyed")
        if seen >= every * (len(samples) + 1):
            st = stage.stats
            samples.append({
                "lifecycles": seen,
                "blocks": sys.getallocatedblocks() - base_blocks,
                "traced_bytes": tracemalloc.get_traced_memory()[0] - base_traced if trace else None,
                "rss_bytes": _rss_bytes(),
                "held": st["reorder"]["held"],
                "incarnations": st["enrich"]["incarnations"],
            })
    events += len(stage.advance(now + 2 * window_ns))
    peak_traced = tracemalloc.get_traced_memory()[1] - base_traced if trace else None
    if trace:
        tracemalloc.stop()
    dt = time.thread_time() - t0
    measure = "traced_bytes" if trace else "blocks"
    steady = [s[measure] for s in samples if s["lifecycles"] > warmup]
    # flat: after warm-up, the measure stays within 10% (+1024 blocks or 64 KiB) of its first steady sample
    slack = 65536 if trace else 1024
    flat = max(steady) <= 1.10 * steady[0] + slack if len(steady) >= 2 else None
    return {
        "lifecycles": lifecycles,
        "events": events,
        "seconds_cpu": dt,
        "warmup_lifecycles": warmup,
        "measure": measure,
        "peak_traced_bytes": peak_traced,
        "peak_rss_bytes": max([_peak_rss_bytes() or 0, *(s["rss_bytes"] or 0 for s in samples)]) or None,
        "samples": samples,
        "flat": flat,
        "enrich": stage.stats["enrich"],
        "reorder": stage.stats["reorder"],
    }


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# --- report -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_reorder", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events per throughput run (default 1,000,000)")
    ap.add_argument("--runs", type=int, default=5, help="runs per row; the median is reported (default 5)")
    ap.add_argument("--lifecycles", type=int, default=1_000_000,
                    help="container lifecycles in the memory check (default 1,000,000; 0 skips it)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="memory check measures the traced Python heap (exact, ~5x slower) instead of "
                         "allocated blocks")
    ap.add_argument("--window", default="25ms", help="event_reorder_window (Go duration, default 25ms)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = ap.parse_args(argv)
    window_ns = parse_duration(args.window)
    result: dict[str, Any] = {
        "benchmark": "reorder",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "window_ns": window_ns,
        "target_events_per_s": 500_000,
    }

    # memory first, so that peak RSS is the memory check's and not the throughput inputs'
    if args.lifecycles > 0:
        how = "tracemalloc" if args.tracemalloc else "sys.getallocatedblocks"
        print(f"memory check: {args.lifecycles:,} lifecycles (5 events each, 1000 live), measured by {how}")
        mem = memory(args.lifecycles, window_ns, trace=args.tracemalloc)
        print(f"{'lifecycles':>12} {'blocks':>10} {'traced KiB':>11} {'RSS MiB':>8} {'held':>6} {'incarnations':>13}")
        for s in mem["samples"]:
            rss = "?" if s["rss_bytes"] is None else f"{s['rss_bytes'] / 2**20:.1f}"
            traced = "-" if s["traced_bytes"] is None else f"{s['traced_bytes'] / 1024:,.0f}"
            print(f"{s['lifecycles']:>12,} {s['blocks']:>10,} {traced:>11} {rss:>8} {s['held']:>6,} "
                  f"{s['incarnations']:>13,}")
        flat = "n/a (run more lifecycles than the warm-up)" if mem["flat"] is None else mem["flat"]
        peak = [] if mem["peak_traced_bytes"] is None else [f"peak traced {mem['peak_traced_bytes'] / 2**20:.1f} MiB"]
        if mem["peak_rss_bytes"] is not None:
            peak.append(f"peak RSS {mem['peak_rss_bytes'] / 2**20:.1f} MiB")
        print(f"{'; '.join(peak)}; {mem['events']:,} events in {mem['seconds_cpu']:.0f} s CPU; "
              f"warm-up {mem['warmup_lifecycles']:,} lifecycles; flat: {flat}\n")
        result["memory"] = mem

    print(f"throughput: {args.events:,} events, window {args.window}, median of {args.runs} runs "
          f"(CPU time, one thread)")
    tp = throughput(args.events, args.runs, window_ns)
    print(f"{'':22} {'events/s':>12} {'min':>12} {'max':>12}  held max")
    for kind, r in tp.items():
        st = r["stats"]["reorder"] if "reorder" in r["stats"] else r["stats"]
        print(f"{kind:22} {r['events_per_s']:>12,.0f} {min(r['runs_events_per_s']):>12,} "
              f"{max(r['runs_events_per_s']):>12,}  {st['max_held']:,}")
    result["throughput"] = tp
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
