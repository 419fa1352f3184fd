"""Benchmark: the sensor's memory over 1,000,000 container lifecycles (DESIGN.md section 7: flat).

    python -m bench.bench_memory [--lifecycles N] [--per-poll K] [--lifetime POLLS] [--tracemalloc] [--json FILE]

Pure core, no sockets: a synthetic node where every poll starts ``K`` containers (new IDs, never
reused), ends the ``K`` started ``POLLS`` polls earlier (listed ``exited``), and removes the ``K``
that exited one poll earlier. So ~K x POLLS containers are live, and K lifecycles complete per
poll (default 100 x 10: 1,000 live, 10,000 polls for 1M lifecycles). Each poll is a successful
list, ``begin``, ContainerStatus details for the IDs the engine asks about, and ``finish``; the
events are dropped. Two sensors take the same node:

* ``engine``: ``DiffEngine.begin`` on ``Snapshot`` values (what ``CriClient.list`` hands it);
* ``fast path``: ``sensor.fastpath.FastPath`` on the serialized answers (the poller's default),
  whose index keeps the last list's entry bytes.

Every 10% the benchmark samples ``sys.getallocatedblocks()`` (or, with ``--tracemalloc``, the traced
Python heap: exact, several times slower), RSS, and the engine's tracked records. Warm-up lasts until
the engine's bounded tables are full (its ``TOMBSTONES`` of destroyed objects, plus the node's own
fill-up); *flat* means every sample after it stays within 10% (+1024 blocks, or +64 KiB traced) of
the first one after it.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

from bench import write_result
from bench.bench_poll import machine
from bench.bench_reorder import _peak_rss_bytes, _rss_bytes

DEFAULT_JSON = Path(__file__).parent / "results" / "memory.json"
T0 = 1_700_000_000_000_000_000
POLL_NS = 250_000_000
SANDBOXES = 10


class SyntheticNode:
    """The node's current list, as snapshot values and as serialized entries (built on change)."""

    def __init__(self, per_poll: int, lifetime: int, encode: bool) -> None:
        import cri_api

        self.pb = cri_api.api("v1").pb2
        self.per_poll, self.lifetime, self.encode = per_poll, lifetime, encode
        self.snaps: dict[str, Any] = {}  # ID -> ContainerSnap, in list order
        self.entries: dict[str, bytes] = {}  # ID -> serialized list entry
        self.started: deque[list[str]] = deque()
        self.exited: list[str] = []
        self.made = 0
        self.completed = 0
        from sensor.snapshot import SandboxSnap

        self.sandboxes = tuple(SandboxSnap(f"sb{i:03d}", f"pod-{i}", "default", f"uid-{i}", 0, "ready", T0)
                               for i in range(SANDBOXES))
        self.sandbox_answer = self.pb.ListPodSandboxResponse(items=[
            self.pb.PodSandbox(id=s.id, metadata=self.pb.PodSandboxMetadata(name=s.name, namespace=s.namespace,
                                                                           uid=s.uid),
                               state=0, created_at=s.created_at) for s in self.sandboxes]).SerializeToString()

    def _set(self, cid: str, sandbox: str, state: str, created: int) -> None:
        from sensor.snapshot import ContainerSnap

        labels = {"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": sandbox}
        snap = ContainerSnap(cid, sandbox, "app", 0, "busybox", "sha256:1", state, created, labels)  # type: ignore[arg-type]
        self.snaps[cid] = snap
        if self.encode:
            pb = self.pb
            msg = pb.Container(id=cid, pod_sandbox_id=sandbox, metadata=pb.ContainerMetadata(name="app"),
                               image=pb.ImageSpec(image="busybox"), image_ref="sha256:1",
                               state={"running": 1, "exited": 2}[state], created_at=created, labels=labels)
            self.entries[cid] = pb.ListContainersResponse(containers=[msg]).SerializeToString()

    def step(self, now: int) -> None:
        """One poll's worth of change: remove, exit, start."""
        for cid in self.exited:
            del self.snaps[cid]
            self.entries.pop(cid, None)
            self.completed += 1
        self.exited = []
        if len(self.started) >= self.lifetime:
            for cid in self.started.popleft():
                s = self.snaps[cid]
                self._set(cid, s.sandbox_id, "exited", s.created_at)
                self.exited.append(cid)
        batch = []
        for _ in range(self.per_poll):
            cid = f"{self.made:064x}"
            self._set(cid, f"sb{self.made % SANDBOXES:03d}", "running", now - 1000)
            batch.append(cid)
            self.made += 1
        self.started.append(batch)

    def details(self, need: list[str], now: int) -> dict[str, Any]:
        from sensor.snapshot import ContainerDetail

        out = {}
        for cid in need:
            s = self.snaps[cid]
            exited = s.state == "exited"
            out[cid] = ContainerDetail(cid, s.created_at + 1, now - 1 if exited else 0, 0 if exited else None,
                                       "Completed" if exited else None)
        return out


def warmup_lifecycles(per_poll: int, lifetime: int) -> int:
    """Lifecycles until the engine's bounded tables are full: its tombstones of destroyed objects
    (``sensor.diff.TOMBSTONES``, where the engine keeps them) plus the node's own fill-up."""
    import sensor.diff

    return getattr(sensor.diff, "TOMBSTONES", 0) + per_poll * (lifetime + 2)


def run(kind: str, lifecycles: int, per_poll: int, lifetime: int, trace: bool) -> dict[str, Any]:
    from sensor.diff import DiffEngine
    from sensor.fastpath import FastPath, Listing
    from sensor.snapshot import Snapshot

    node = SyntheticNode(per_poll, lifetime, encode=kind == "fast path")
    engine = DiffEngine()
    fast = FastPath()
    pb = node.pb
    samples: list[dict[str, Any]] = []
    every = max(1, lifecycles // 10)
    gc.collect()
    if trace:
        tracemalloc.start()
    base_blocks = sys.getallocatedblocks()
    base_traced = tracemalloc.get_traced_memory()[0] if trace else 0
    events = polls = 0
    now = T0
    t0 = time.process_time()
    while node.completed < lifecycles:
        now += POLL_NS
        node.step(now)
        if kind == "fast path":
            listing = Listing(node.sandbox_answer, b"".join(node.entries.values()), now - 2_000_000, now - 1_000_000)
            need = fast.begin(engine, listing, pb)
        else:
            need = engine.begin(Snapshot(node.sandboxes, tuple(node.snaps.values()), now - 2_000_000, now - 1_000_000))
        events += len(engine.finish(node.details(need, now), now))
        polls += 1
        if node.completed >= every * (len(samples) + 1):
            samples.append({
                "lifecycles": node.completed,
                "blocks": sys.getallocatedblocks() - base_blocks,
                "traced_bytes": tracemalloc.get_traced_memory()[0] - base_traced if trace else None,
                "rss_bytes": _rss_bytes(),
                "tracked": engine.table_sizes()[0],
            })
    cpu = time.process_time() - t0
    if trace:
        tracemalloc.stop()
    measure = "traced_bytes" if trace else "blocks"
    slack = 65536 if trace else 1024
    steady = [s[measure] for s in samples if s["lifecycles"] > warmup_lifecycles(per_poll, lifetime)]
    flat = max(steady) <= 1.10 * steady[0] + slack if len(steady) >= 2 else None
    return {"kind": kind, "lifecycles": node.completed, "polls": polls, "events": events, "cpu_s": cpu,
            "measure": measure, "samples": samples, "flat": flat,
            "warmup_lifecycles": warmup_lifecycles(per_poll, lifetime), "fast_path_levels": dict(fast.counts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lifecycles", type=int, default=1_000_000, help="lifecycles per sensor (default 1,000,000)")
    ap.add_argument("--per-poll", type=int, default=100, help="containers started (and ended) per poll (default 100)")
    ap.add_argument("--lifetime", type=int, default=10, help="polls a container runs (default 10)")
    ap.add_argument("--tracemalloc", action="store_true", help="measure the traced Python heap (exact, slower)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "memory", "machine": machine(), "per_poll": args.per_poll,
                              "lifetime_polls": args.lifetime, "runs": []}
    how = "tracemalloc" if args.tracemalloc else "sys.getallocatedblocks"
    print(f"sensor memory: {args.lifecycles:,} lifecycles, {args.per_poll} started and ended per poll, "
          f"~{args.per_poll * args.lifetime:,} live; measured by {how}")
    for kind in ("engine", "fast path"):
        r = run(kind, args.lifecycles, args.per_poll, args.lifetime, args.tracemalloc)
        result["runs"].append(r)
        print(f"\n{kind}: {r['polls']:,} polls, {r['events']:,} events, {r['cpu_s']:.0f} s CPU")
        print(f"{'lifecycles':>12} {'blocks':>10} {'traced KiB':>11} {'RSS MiB':>8} {'tracked':>8}")
        for s in r["samples"]:
            rss = "?" if s["rss_bytes"] is None else f"{s['rss_bytes'] / 2**20:.1f}"
            traced = "-" if s["traced_bytes"] is None else f"{s['traced_bytes'] / 1024:,.0f}"
            print(f"{s['lifecycles']:>12,} {s['blocks']:>10,} {traced:>11} {rss:>8} {s['tracked']:>8,}")
        flat = "n/a (run more lifecycles than the warm-up)" if r["flat"] is None else r["flat"]
        print(f"warm-up {r['warmup_lifecycles']:,} lifecycles (tombstones + fill-up); flat after it: {flat}",
              flush=True)
    peak = _peak_rss_bytes()
    result["peak_rss_bytes"] = peak
    if peak:
        print(f"\npeak RSS {peak / 2**20:.1f} MiB")
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
