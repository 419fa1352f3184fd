"""Run every benchmark, one after the other: ``python -m bench`` (``make bench``).

    python -m bench [--quick] [--only poll,latency,...]

Each benchmark prints its table and writes ``bench/results/<name>.json``; docs/performance.md says
what each measures. ``--quick`` runs smaller versions (minutes instead of ~15 minutes), fit for a
smoke run, not for the numbers in the docs. A benchmark that fails is reported and the others still
run; the exit status is 0 either way, because benchmarks never fail a build on noise.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback

#: (name, module, default arguments, --quick arguments)
BENCHMARKS: tuple[tuple[str, str, list[str], list[str]], ...] = (
    ("process", "bench.bench_process", [], ["--quick"]),
    ("poll", "bench.bench_poll", [], ["--polls", "10", "--churn-polls", "5"]),
    ("latency", "bench.bench_latency", [], ["--duration", "5s", "--large", "0"]),
    ("fake", "bench.bench_fake", [], ["--rates", "1000", "--duration", "4s"]),
    ("memory", "bench.bench_memory", [], ["--lifecycles", "60000"]),
    ("reorder", "bench.bench_reorder", [], ["--events", "200000", "--runs", "2", "--lifecycles", "30000"]),
    ("stream", "bench.bench_stream", [], ["--scenarios", "fast_exit", "--no-real"]),
    ("execs", "bench.bench_execs", [], ["--execs", "2000", "--storm", "2000"]),
    ("enrichment", "bench.bench_enrichment", [], ["--windows", "0s,270ms", "--containers", "6"]),
    ("real", "bench.bench_real", [], ["--containers", "6", "--duration", "3s"]),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test, not the documented numbers)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(b[0] for b in BENCHMARKS)}")
    args = ap.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    unknown = only - {b[0] for b in BENCHMARKS}
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))} (accepted: {', '.join(b[0] for b in BENCHMARKS)})")
    failed: list[str] = []
    for name, module, full, quick in BENCHMARKS:
        if only and name not in only:
            continue
        argv_b = quick if args.quick else full
        print(f"\n=== {name}: python -m {module} {' '.join(argv_b)}".rstrip(), flush=True)
        t0 = time.monotonic()
        try:
            importlib.import_module(module).main(argv_b)
        except Exception:  # report and go on: one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
        print(f"=== {name}: {time.monotonic() - t0:.0f} s", flush=True)
    if failed:
        print(f"\nbenchmarks that failed (reported above): {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
