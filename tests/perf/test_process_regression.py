"""Regression guard for what the operator pays (bench.bench_process, 1,000 containers): the real
``crisensor run`` and the transport-floor client take turns against one ``fakecri serve`` in this
run, and the sensor must stay within a gross factor of the floor. Never an absolute time: a slow or
busy CI machine slows both sides alike. Today's figures (docs/performance.md): ~1.1-1.3x the
floor's CPU per poll and ~+15-20 MB of RSS over it; the bounds are far above that, so only a gross
regression (e.g. every list decoded whole again: ~3.5x) fails."""

from __future__ import annotations

import pytest

from bench import bench_process

#: Sensor CPU per poll over the floor's, same run: the bound.
GROSS_CPU_RATIO = 3.0
#: Sensor peak RSS over the floor's, MB, at 1,000 containers.
GROSS_RSS_OVER_MB = 60.0

pytestmark = [pytest.mark.slow, pytest.mark.bench]


def test_steady_polling_stays_near_the_transport_floor() -> None:
    result = bench_process.run(sizes=[1000], window_s=6.0, repeats=1, churn_size=0, churn_rate=0, churn_s=0,
                               modes=["poll"])
    (line,) = result["summary"]
    print("\n" + bench_process.table(result["summary"]))
    print(f"load average {result['load_before']} -> {result['load_after']}")
    assert line["first_snapshot_s"] is not None  # the sensor took its first snapshot
    assert line["floor_cpu_ms_per_poll"] > 0, "the floor measured no CPU at all: the window is too short"
    assert line["cpu_ratio"] < GROSS_CPU_RATIO, (
        f"steady polling costs {line['cpu_ratio']:.2f}x the transport floor (bound {GROSS_CPU_RATIO}x)")
    assert line["rss_over_floor_mb"] < GROSS_RSS_OVER_MB, (
        f"the sensor's peak RSS is {line['rss_over_floor_mb']:.1f} MB over the floor's (bound {GROSS_RSS_OVER_MB} MB)")
