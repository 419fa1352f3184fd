"""State lag against the fake (DESIGN.md section 6, issue 15): the checker catches the old sensor.

The fake's containerd and CRI-O flavours show a process's exit ``state_lag_ns`` late (measured on
real containerd: docs/realruntime.md#state-lag), as the real runtimes do; the truth keeps the
exit's own time. A container that exits just before a poll and is removed before the next one is
then listed running by that poll (the exit shows after it) and forged as exited by the next: a
sensor that bounds the exit by "the last poll that showed it running" (the old engine,
``state_lag: 0``) breaks G4, and the checker says so; the shipped sensor (``crisensor.state_lag``
default) keeps every window true.
"""

from __future__ import annotations

from guaranteerig import MS, Parts, run_scenario

from fakecri import scenario as sc
from fakecri.flavors import get_flavor
from sensor.diff import DiffEngine

P = 250 * MS


def _exit_before_a_poll(flavor: str, lag_ns: int | None = None) -> sc.Scenario:
    """Three containers, each exiting 10 ms before a poll tick and removed 100 ms after it (after
    the lag: a removal within it would show the exit at once)."""
    steps: list[sc.Step] = [sc.RunPod(at_ns=0, pod="web")]
    for i in range(3):
        name = f"c{i}"
        start = (i + 1) * 2 * P + 20 * MS
        steps += [sc.CreateContainer(at_ns=start, container=name, pod="web", start=True),
                  sc.ExitContainer(at_ns=start + P - 30 * MS, container=name, code=i + 1),
                  sc.RemoveContainer(at_ns=start + P + 80 * MS, container=name)]
    quirks = sc.Quirks(state_lag_ns=lag_ns) if lag_ns is not None else sc.Quirks()
    return sc.Scenario(name="exit-before-a-poll", flavor=flavor, quirks=quirks, timeline=tuple(steps),
                       end_ns=8 * P)


def _g4_misses(run) -> list[str]:  # type: ignore[no-untyped-def]
    return [v.message for v in run.report["G4"].violations if "misses the true time" in v.message]


def test_the_checker_catches_a_window_bounded_by_a_lagging_list() -> None:
    run = run_scenario(_exit_before_a_poll("containerd-1.7"), Parts(engine=DiffEngine), poll_interval_ns=P)
    misses = _g4_misses(run)
    assert len(misses) == 3, run.report.render()
    assert all("container.exited" in m for m in misses)


def test_the_shipped_sensor_keeps_g4_under_every_flavours_lag() -> None:
    for flavor in ("containerd-1.6", "containerd-1.7", "containerd-2.0", "crio-1.26"):
        assert get_flavor(flavor).state_lag_ns > 0
        run = run_scenario(_exit_before_a_poll(flavor), poll_interval_ns=P)
        assert run.report.ok, run.report.render()
        forged = [e for e in run.events if e.type == "container.exited"]
        assert len(forged) == 3 and all(e.synthetic for e in forged)


def test_without_the_quirk_the_old_sensor_passes() -> None:
    """``quirks: {state_lag: 0}`` gives the instant exits of the fake before issue 15."""
    run = run_scenario(_exit_before_a_poll("containerd-1.7", lag_ns=0), Parts(engine=DiffEngine), poll_interval_ns=P)
    assert run.report.ok, run.report.render()
    assert all(not e.synthetic for e in run.events if e.type == "container.exited")  # each exit was seen
