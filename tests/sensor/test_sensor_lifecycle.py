"""sensor.lifecycle: the transition tables."""

from __future__ import annotations

import pytest

from sensor.events import WHY_STRINGS, WHY_VANISHED_DURING_OUTAGE
from sensor.lifecycle import (
    CONTAINER_OBSERVATIONS,
    CONTAINER_ORDER,
    CONTAINER_TRANSITIONS,
    SANDBOX_OBSERVATIONS,
    SANDBOX_ORDER,
    SANDBOX_TRANSITIONS,
    LifecycleError,
    Step,
    container_steps,
    is_regression,
    sandbox_steps,
)


def show(steps: tuple[Step, ...]) -> list[tuple[str, bool]]:
    return [(s.state, s.synthetic) for s in steps]


def test_examples_from_the_brief() -> None:
    assert show(container_steps(None, "exited+ran")) == [("created", True), ("running", True), ("exited", False)]
    assert show(container_steps(None, "exited")) == [("created", True), ("exited", False)]
    assert show(container_steps("running", "gone")) == [("exited", True), ("destroyed", False)]
    assert [s.why for s in container_steps(None, "exited+ran")] == [
        "created before first seen",
        "ran between polls",
        None,
    ]
    assert container_steps("running", "gone")[0].why == "exited and removed between polls"


def test_vanished_why_is_the_callers() -> None:
    steps = container_steps("created", "gone", vanished_why=WHY_VANISHED_DURING_OUTAGE)
    assert [(s.state, s.why) for s in steps] == [("exited", "vanished during outage"), ("destroyed", None)]
    steps = sandbox_steps("ready", "gone", vanished_why=WHY_VANISHED_DURING_OUTAGE)
    assert [(s.state, s.why) for s in steps] == [("notready", "vanished during outage"), ("destroyed", None)]


def test_id_reuse_forges_both_ends() -> None:
    assert [(s.state, s.why) for s in container_steps("running", "replaced")] == [
        ("exited", "container ID reused"),
        ("destroyed", "container ID reused"),
    ]
    assert [(s.state, s.why) for s in sandbox_steps("notready", "replaced")] == [("destroyed", "sandbox ID reused")]


def test_sandbox_forging() -> None:
    assert [(s.state, s.why) for s in sandbox_steps(None, "notready")] == [
        ("ready", "created before first seen"),
        ("notready", None),
    ]
    assert [(s.state, s.why) for s in sandbox_steps("ready", "gone")] == [
        ("notready", "stopped and removed between polls"),
        ("destroyed", None),
    ]


@pytest.mark.parametrize(
    ("table", "order", "observations"),
    [
        (CONTAINER_TRANSITIONS, CONTAINER_ORDER, CONTAINER_OBSERVATIONS),
        (SANDBOX_TRANSITIONS, SANDBOX_ORDER, SANDBOX_OBSERVATIONS),
    ],
)
def test_tables_are_complete_and_ordered(table, order, observations) -> None:
    assert set(table) == {None, *order}
    for last, row in table.items():
        if last == "destroyed":
            assert row == {}
            continue
        assert set(row) == set(observations), last
        start = -1 if last is None else order.index(last)
        for observation, steps in row.items():
            ranks = [order.index(state) for state, _ in steps]
            assert ranks == sorted(set(ranks)), (last, observation)  # lifecycle order, each at most once
            assert all(r > start for r in ranks), (last, observation)  # only forward
            for _state, why in steps:
                assert why is None or why in WHY_STRINGS or why == "<vanished>"
            if steps and observation not in ("gone", "replaced", "unknown"):
                assert steps[-1][1] is None  # the observed state itself is seen


def test_gone_never_forges_running() -> None:
    assert "running" not in [s.state for s in container_steps("created", "gone")]


def test_nothing_after_destroyed() -> None:
    with pytest.raises(LifecycleError, match="nothing follows destroyed"):
        container_steps("destroyed", "running")
    with pytest.raises(LifecycleError, match="accepted observations"):
        sandbox_steps("ready", "exited")


def test_regressions() -> None:
    assert is_regression("container", "exited", "running")
    assert is_regression("container", "running", "created")
    assert not is_regression("container", "running", "exited")
    assert not is_regression("container", "exited", "unknown")
    assert not is_regression("container", None, "created")
    assert is_regression("sandbox", "notready", "ready")
    assert not is_regression("sandbox", "ready", "notready")
    assert container_steps("exited", "running") == ()
