"""Benchmark: the seed's trade-off measured on real execs in real containerd containers.

    python -m bench.bench_enrichment [--windows 0s,25ms,100ms,270ms,500ms] [--containers 20]
                                     [--json FILE] [--plot FILE.png]

For each ``event_reorder_window``, with ``crisensor.lookup_on_miss`` off (the seed's polling alone)
and on (ask the runtime about an unknown container at once), ``crisensor run --processes proc
--events off`` polls a private
real containerd every 250 ms while containers start whose first processes exec at once
(scripts/realruntime/execs.py: ``sh -c '/bin/echo marker; sleep 0.4'``). Reported per window: the
share of those execs enriched with the right container and pod, the wrongly enriched ones (must be
0: G10), and the delay the analytics stage added before each exec left it (``released_ns -
observed_ns``, p50/p99). Needs root and Debian's containerd (``make test`` as root installs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import write_result

DEFAULT_JSON = Path(__file__).parent / "results" / "enrichment.json"
ROOT = Path(__file__).resolve().parents[1]


def _realruntime() -> Any:
    """scripts/realruntime as the package ``crisensor_realruntime`` (as the tests load it)."""
    name = "crisensor_realruntime"
    if name not in sys.modules:
        pkg = ROOT / "scripts" / "realruntime"
        spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    import crisensor_realruntime.containerd as containerd  # type: ignore[import-not-found]
    import crisensor_realruntime.execs as execs  # type: ignore[import-not-found]

    return containerd, execs


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for mode, label in (("off", "polling only"), ("on", "with lookup on miss")):
        mine = [r for r in rows if r.get("lookup_on_miss") == mode]
        if mine:
            ax.plot([r["window_ms"] for r in mine], [r["right_pct"] for r in mine], marker="o",
                    label=f"enriched right, {label} (%)")
    base = [r for r in rows if r.get("lookup_on_miss") == "off"] or rows
    xs = [r["window_ms"] for r in base]
    ax.set_xlabel("event_reorder_window (ms), polling every 250 ms")
    ax.set_ylabel("enriched right (%)")
    ax.set_ylim(0, 105)
    ax2 = ax.twinx()
    ax2.plot(xs, [r["delay_ms_p50"] for r in base], marker="s", color="tab:gray", linestyle=":",
             label="delay added p50 (ms)")
    ax2.set_ylabel("delay added, p50 (ms)")
    fig.legend(loc="lower right", bbox_to_anchor=(0.88, 0.18), fontsize="small")
    ax.set_title("Real execs at container start, real containerd 1.6")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_enrichment", description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", default="0s,25ms,100ms,270ms,500ms")
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--lookup", default="off,on", help="crisensor.lookup_on_miss values to run (default off,on)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--plot", type=Path, help="also draw the curve (needs matplotlib)")
    args = ap.parse_args(argv)
    from sensor.duration import parse_duration

    containerd, execs = _realruntime()
    why = containerd.containerd_unavailable_reason()
    if why:
        print(f"bench_enrichment: skipped: {why}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="crisensor-bench-") as tmp, containerd.running_containerd(Path(tmp)) as h:
        for lookup, w in [(m, w) for m in args.lookup.split(",") if m for w in args.windows.split(",") if w]:
            run = execs.run_execs(h, Path(tmp) / f"events-{lookup}-{w}.jsonl", w, containers=args.containers,
                                  extra=["--lookup-on-miss", lookup])
            got = execs.score(run)
            got["window_ms"] = parse_duration(w) / 1e6
            got["lookup_on_miss"] = lookup
            got.pop("wrong_examples")
            got["unsure"] = len(got["unsure"])
            rows.append(got)
            print(f"lookup {lookup:>3}, window {w:>6}: {got['right']:3}/{got['execs']:3} execs enriched right "
                  f"({got['right_pct']:5.1f}%), wrong {got['wrong']}, delay added p50 {got['delay_ms_p50']:.1f} ms "
                  f"p99 {got['delay_ms_p99']:.1f} ms")
    write_result(args.json, {"benchmark": "enrichment", "poll_interval_ms": 250, "runtime": "containerd 1.6",
                             "rows": rows})
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
