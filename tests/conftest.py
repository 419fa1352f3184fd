"""Hypothesis profiles for the whole suite; pick one with ``HYPOTHESIS_PROFILE`` (default ``ci``).

| profile | max_examples | stateful steps | deadline | use |
|---|---|---|---|---|
| ``ci``   | 200   | 30 | none | CI (derandomized under ``CI=true``) and plain ``pytest`` |
| ``dev``  | 20    | 20 | none | quick local iterations; mutation runs (derandomized under ``CI=true``) |
| ``deep`` | 5,000 | 60 | none | long bug hunts: ``HYPOTHESIS_PROFILE=deep pytest tests/guarantees`` |

Tests that set their own ``max_examples`` keep it (hypothesis: explicit settings win over the
profile). Those that scale with the profile derive their count from ``settings.default``: the
runtime-history machine (tests/guarantees/test_histories.py) runs a quarter of it -- 50 histories
of up to 30 steps in ``ci``, 1,250 of up to 60 in ``deep`` -- because each history drives the real
sensor over a real socket and checks the guarantees after every step.

No deadline anywhere: many properties here do real socket I/O, whose timing is not the property.
``deep`` also lifts pytest-timeout's per-test limit (pyproject: 300 s), which a deep search exceeds.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Under CI=true the ci profile is derandomized: a CI verdict is reproducible and never hangs on a
# lucky draw; local runs (and the deep profile) keep searching new examples.
settings.register_profile("ci", max_examples=200, stateful_step_count=30, deadline=None, print_blob=True,
                          derandomize=os.environ.get("CI") == "true")
settings.register_profile("dev", max_examples=20, stateful_step_count=20, deadline=None,
                          derandomize=os.environ.get("CI") == "true")
settings.register_profile(
    "deep",
    max_examples=5_000,
    stateful_step_count=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,  # a search: every run draws new examples
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PROFILE == "deep" and config.pluginmanager.hasplugin("timeout"):
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(0))
