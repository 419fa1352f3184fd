"""The sensor's own metric types (sensor/metrics.py), against prometheus-client's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1, 2.5, 5)
seconds = st.one_of(st.sampled_from([0.0, *BOUNDS]), st.floats(0, 100, allow_nan=False))


@given(st.lists(st.lists(seconds, max_size=20), max_size=5))
def test_a_batch_histogram_exposes_what_prometheus_clients_own_would(batches: list[list[float]]) -> None:
    """``BatchHistogram`` stands in for ``prometheus_client.Histogram`` (the reorder lateness, one
    batch per emitted poll): the same series, bucket for bucket, a value on a bound in its bucket."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from sensor.metrics import BatchHistogram

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lateness_seconds", "Lateness.", BOUNDS)
    ours.register(batch)
    reference = Histogram("lateness_seconds", "Lateness.", buckets=BOUNDS, registry=theirs)
    for values in batches:
        batch.observe_many(values)
        for v in values:
            reference.observe(v)

    def series(r: CollectorRegistry) -> dict[str, float]:
        return {s.name + str(sorted(s.labels.items())): s.value for m in r.collect() for s in m.samples}

    got, want = series(ours), series(theirs)
    assert got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k]) for k in want)
    text = generate_latest(ours).decode()
    assert 'lateness_seconds_bucket{le="0.25"}' in text and 'lateness_seconds_bucket{le="+Inf"}' in text
