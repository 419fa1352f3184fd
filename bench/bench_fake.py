"""Benchmark: fakecri's capacity -- container lifecycles per second on a 10,000-container node while
it answers polls at 4 Hz, and the ground truth's timing jitter (DESIGN.md section 7 targets:
>= 1,000 lifecycles/s, jitter p99 <= 5 ms).

    python -m bench.bench_fake [--rates 1000,2000] [--containers 10000] [--duration 10s] [--json FILE]

Per rate, a child process serves a scenario through ``fakecri.harness.Harness`` on the real clock:
``large_node`` puts ``--containers`` running containers in 100 pods at offset 0; from offset 6 s a
``churn`` generator starts containers at the rate (Poisson arrivals), each running 0.5-2 s and
removed 50-250 ms after it exits, for ``--duration``. So the node holds ~10,000 + 1.3 x rate
containers while churning. This process is the client: every 250 ms it lists (ListContainers +
ListPodSandbox, answers undecoded), as a sensor at 4 Hz would, and times each answer.

Reported per rate: the lifecycles the harness completed on schedule (churn containers destroyed per
second of churn), the jitter of the churn's steps (``Runner.truth_jitter_ns``, below) and how late
they were applied (``Runner.jitter_ns``; the ``large_node`` set-up at offset 0 is applied back to back and is
not churn, so it is left out), steps that failed, the fake's process CPU during the churn, and the
list answers' wall time and size. The rate is *sustained* when the jitter p99 stays <= 5 ms.

The jitter is the ground truth's timing error: the instant a churn step's transitions are dated at
(what the truth records and the runtime reports) minus its scheduled instant. A step the timeline
thread applies late is still dated at its instant (``RuntimeModel.backdated``) unless a transition
recorded meanwhile forbids it, so this is near zero; how late steps were applied -- hence from when
answers showed them, each late transition's ``shown_ns`` -- is reported beside it (``late``).

Each rate runs twice: with the fake's process as ``fakecri serve`` runs it (``default``), and
``tuned`` (``tune_for_real_time``: a 0.5 ms thread switch interval, and ``gc.freeze()`` after set-up).

A second table times one ``ListContainers`` answer at 10,000 containers inside the server: the
cached path (``convert.ListCache``, in use) against the conversion it replaced (convert every
container, build the response, serialize).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import write_result
from bench.bench_poll import machine

DEFAULT_JSON = Path(__file__).parent / "results" / "fake.json"
CHURN_START_S = 6.0
POLL_S = 0.25
TARGET_JITTER_MS = 5.0
TARGET_RATE = 1000

SCENARIO = """\
flavor: containerd-1.7
seed: 7
generators:
  - large_node: {{containers: {containers}, pods: 100}}
  - churn:
      start: {start}ms
      duration: {duration}ms
      rate: {rate}
      lifetime: {{uniform: [500ms, 2s]}}
      removal_delay: {{uniform: [50ms, 250ms]}}
      pods: 20
      prefix: churn
end: {end}ms
"""


def _pct(values: list[int], q: float) -> int:
    from fakecri.timeline import percentile

    return percentile(sorted(values), q)


def tune_for_real_time(settle_at_s: float) -> None:
    """What the ``tuned`` rows do to the fake's process: thread switches every 0.5 ms instead of 5 ms
    (the timeline thread waits less for the GIL while a list is answered), and, once the set-up
    steps are applied, ``gc.freeze()`` (later full collections no longer rescan the 10,000-container
    model: they paused the process for 50-150 ms)."""
    import gc

    sys.setswitchinterval(0.0005)

    def freeze() -> None:
        time.sleep(settle_at_s)
        gc.collect()
        gc.freeze()

    threading.Thread(target=freeze, name="bench-gc-freeze", daemon=True).start()


def harness_main(conn: Any, containers: int, rate: float, duration_s: float, socket_path: str,
                 tuned: bool = False) -> None:
    """Child process: serve the scenario in real time; report what the runner measured."""
    from fakecri import scenario as sc
    from fakecri.harness import Harness

    start_ms = round(CHURN_START_S * 1000)
    text = SCENARIO.format(containers=containers, start=start_ms, duration=round(duration_s * 1000), rate=rate,
                           end=start_ms + round(duration_s * 1000) + 3000)
    h = Harness(sc.loads(text, name="bench_fake"), socket=socket_path, clock="real", record_rpcs=False)
    h.start()
    if tuned:
        tune_for_real_time(CHURN_START_S - 1.0)
    try:
        conn.send(("ready", None))
        runner = h.runner
        assert runner is not None
        # CPU of this process over the churn window (set-up excluded)
        cpu: dict[str, float] = {}

        def sample(key: str, at_s: float) -> None:
            wait = runner.start_ns / 1e9 + at_s - time.time()
            if wait > 0:
                time.sleep(wait)
            cpu[key] = time.process_time()
            cpu[key + "_wall"] = time.monotonic()

        t1 = threading.Thread(target=sample, args=("start", CHURN_START_S))
        t2 = threading.Thread(target=sample, args=("end", CHURN_START_S + duration_s))
        t1.start()
        t2.start()
        h.wait_end()
        t1.join()
        t2.join()
        steps = runner.steps[: len(runner.jitter_ns)]
        is_churn = [getattr(st, "container", "").startswith("churn-") for st in steps]
        churn = [j for c, j in zip(is_churn, runner.truth_jitter_ns, strict=True) if c]
        late = [j for c, j in zip(is_churn, runner.jitter_ns, strict=True) if c]
        setup = [j for c, j in zip(is_churn, runner.jitter_ns, strict=True) if not c]
        from fakecri.truth import ContainerTransition

        destroyed = sum(1 for r in h.truth.records() if isinstance(r, ContainerTransition)
                        and r.transition == "destroyed")
        conn.send(("done", {
            "churn_steps": len(churn),
            "jitter_p50_ns": _pct(churn, 50), "jitter_p99_ns": _pct(churn, 99),
            "jitter_p999_ns": _pct(churn, 99.9), "jitter_max_ns": max(churn, default=0),
            "late_p50_ns": _pct(late, 50), "late_p99_ns": _pct(late, 99), "late_max_ns": max(late, default=0),
            "setup_steps": len(setup), "setup_max_lag_ns": max(setup, default=0),
            "errors": len(runner.errors), "skipped": len(h.skipped),
            "destroyed": destroyed,
            "cpu_s": cpu["end"] - cpu["start"], "wall_s": cpu["end_wall"] - cpu["start_wall"],
            "runner_summary": runner.jitter_summary(),
        }))
    finally:
        h.stop()


def run_rate(containers: int, rate: float, duration_s: float, tuned: bool) -> dict[str, Any]:
    from sensor.client import CriClient

    d = tempfile.mkdtemp(prefix="bench-fake-")
    sock = os.path.join(d, "cri.sock")
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=harness_main, args=(child, containers, rate, duration_s, sock, tuned),
                       daemon=True)
    proc.start()
    try:
        assert conn.recv()[0] == "ready"
        t0 = time.monotonic()
        client = CriClient(f"unix://{sock}", rpc_timeout_s=30)
        client.connect()
        lists: list[tuple[float, float, int, int]] = []  # (offset s, wall s, containers answer bytes, ok)
        k = 0
        end = CHURN_START_S + duration_s
        while True:
            due = t0 + k * POLL_S
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            off = time.monotonic() - t0
            if off > end + 1:
                break
            w0 = time.perf_counter()
            try:
                _, cs, _, _ = client.list_bytes()
                lists.append((off, time.perf_counter() - w0, len(cs), 1))
            except Exception:  # a failed answer is part of the measurement
                lists.append((off, time.perf_counter() - w0, 0, 0))
            k += 1
        client.close()
        status, res = conn.recv()
        assert status == "done", res
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    during = [w for off, w, _, ok in lists if CHURN_START_S <= off <= end and ok]
    sizes = [n for off, _, n, ok in lists if CHURN_START_S <= off <= end and ok]
    # lifecycles: churn containers destroyed (the large node's are never removed) per churn second
    res["lifecycles_per_s"] = res["destroyed"] / duration_s
    res["rate"] = rate
    res["tuned"] = tuned
    res["polls"] = len(during)
    res["poll_failures"] = sum(1 for off, _, _, ok in lists if CHURN_START_S <= off <= end and not ok)
    res["list_wall_p50_ms"] = statistics.median(during) * 1e3 if during else None
    res["list_wall_max_ms"] = max(during) * 1e3 if during else None
    res["list_bytes_max"] = max(sizes, default=0)
    res["cpu_util"] = res["cpu_s"] / res["wall_s"] if res["wall_s"] else None
    res["sustained"] = res["jitter_p99_ns"] <= TARGET_JITTER_MS * 1e6 and res["errors"] == 0
    return res


def list_answer_cost(containers: int) -> dict[str, float]:
    """One ListContainers answer at ``containers``, in the server, cached vs the old conversion."""
    import cri_api
    from fakecri import convert
    from fakecri.clock import VirtualClock
    from fakecri.flavors import get_flavor
    from fakecri.kubelet import populate
    from fakecri.model import RuntimeModel
    from fakecri.server import FakeCriServer

    pb = cri_api.api("v1").pb2
    model = RuntimeModel(VirtualClock(), get_flavor("containerd-1.7"), seed=1)
    h = FakeCriServer(model, "/tmp/bench-fake-unused.sock").handlers
    populate(model, containers, per_pod=max(1, containers // 100))
    req = pb.ListContainersRequest()
    h.ListContainers(pb, "v1", req)  # warm the cache (built once; afterwards only on change)

    def old() -> bytes:
        items = model.list_containers()
        return pb.ListContainersResponse(containers=[convert.container(pb, c) for c in items]).SerializeToString()

    def new() -> bytes:
        return h.ListContainers(pb, "v1", req)

    sandbox = next(iter(model.sandboxes))
    made = [0]

    def change() -> None:  # one container more: the next answer is joined anew (not the kept one)
        made[0] += 1
        model.create_container(sandbox, f"extra-{made[0]}", 0, "busybox")

    out = {}
    for name, f, n, before in (("old", old, 5, None), ("cached_changed", new, 30, change),
                               ("cached_same", new, 30, None)):
        ts = []
        for _ in range(n):
            if before is not None:
                before()
            t = time.process_time()
            f()
            ts.append(time.process_time() - t)
        out[name + "_ms"] = statistics.median(ts) * 1e3
    out["ratio"] = out["old_ms"] / out["cached_changed_ms"]
    return out


def main(argv: list[str] | None = None) -> int:
    from sensor.duration import parse_duration

    ap = argparse.ArgumentParser(prog="python -m bench.bench_fake", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="1000,2000", help="churn rates to try, lifecycles/s (default 1000,2000)")
    ap.add_argument("--containers", type=int, default=10_000, help="the node's steady containers (default 10000)")
    ap.add_argument("--duration", default="10s", help="churn duration per rate (default 10s)")
    ap.add_argument("--process", default="default,tuned",
                    help="fake process settings to run: default, tuned or both (default both; see "
                         "tune_for_real_time)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = ap.parse_args(argv)
    duration_s = parse_duration(args.duration) / 1e9
    result: dict[str, Any] = {"benchmark": "fake", "machine": machine(), "containers": args.containers,
                              "duration_s": duration_s, "poll_interval_s": POLL_S,
                              "targets": {"lifecycles_per_s": TARGET_RATE, "jitter_p99_ms": TARGET_JITTER_MS}}
    print(f"fakecri capacity: {args.containers:,}-container node, polled at {1 / POLL_S:.0f} Hz, "
          f"{duration_s:.0f} s of churn per rate")
    print(f"{'process':>8} {'rate/s':>7} {'done/s':>7} {'jitter p50':>10} {'p99':>7} {'p99.9':>7} {'max':>7} "
          f"{'late p50':>8} {'p99':>7} {'errors':>6} {'fake CPU':>8} {'list p50':>8} {'list max':>8} {'answer':>8}"
          "  sustained")
    rows = []
    runs = [(p, float(r)) for p in args.process.split(",") if p for r in args.rates.split(",") if r]
    for process, rate in runs:
        r = run_rate(args.containers, rate, duration_s, tuned=process == "tuned")
        rows.append(r)
        print(f"{process:>8} {rate:>7.0f} {r['lifecycles_per_s']:>7.0f} {r['jitter_p50_ns'] / 1e6:>8.2f}ms "
              f"{r['jitter_p99_ns'] / 1e6:>5.2f}ms {r['jitter_p999_ns'] / 1e6:>5.2f}ms "
              f"{r['jitter_max_ns'] / 1e6:>5.1f}ms {r['late_p50_ns'] / 1e6:>6.2f}ms {r['late_p99_ns'] / 1e6:>5.2f}ms "
              f"{r['errors']:>6} {r['cpu_util'] * 100:>7.0f}% {r['list_wall_p50_ms']:>6.1f}ms "
              f"{r['list_wall_max_ms']:>6.1f}ms {r['list_bytes_max'] / 2**20:>6.1f}MB  {r['sustained']}", flush=True)
    result["rates"] = rows
    for process in ("default", "tuned"):
        ok = [r["lifecycles_per_s"] for r in rows if r["sustained"] and r["tuned"] == (process == "tuned")]
        result[f"sustained_lifecycles_per_s_{process}"] = max(ok) if ok else None
    cost = list_answer_cost(args.containers)
    result["list_answer"] = cost
    print(f"\nListContainers answer at {args.containers:,} containers, handler CPU (median): cached entries "
          f"{cost['cached_changed_ms']:.1f} ms after a change ({cost['cached_same_ms']:.2f} ms when nothing "
          f"changed), old conversion {cost['old_ms']:.1f} ms: {cost['ratio']:.0f}x")
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
