"""G9, exactly once across sensor restarts (fakecri/check/restarts.py), on hand-built truth: a
sensor killed at +450 ms and started again at +600 ms (reports count from the first list, +100 ms).
The one that kept its state passes G1-G9; one that forgot it fails G9 (and only G9 among the order
rules: its duplicates and its seq starting over are G9's), and so do the subtler slips: no gap, two
gaps, the wrong why."""

from __future__ import annotations

from dataclasses import replace

from checkworld import World, at

from fakecri.check import CheckParams, check
from sensor.events import WHY_CREATED_BEFORE_FIRST_SEEN, WHY_SENSOR_DOWN, WHY_VANISHED_DURING_OUTAGE, Event

MS = 1_000_000
LISTS = (100, 200, 300, 400, 700, 800, 900)
PARAMS = CheckParams(poll_interval_ns=100 * MS, end_ns=at(1000), sensor_restarts=((at(450), at(600)),))


def _truth() -> list:
    w = World().sandbox("sb1", 0).container("c1", 10, 20).container("c2", 10, 20, 500, 520)
    for t in LISTS:
        w.rpc("ListPodSandbox", t).rpc("ListContainers", t)
    return w.records


def _ev(type_: str, oid: str | None, t: float, lo: float, hi: float, obs: float, **kw) -> Event:
    kind = type_.split(".")[0]
    return Event(type=type_, time_ns=at(t), window_ns=(at(lo), at(hi)), observed_ns=at(obs), source="poll",
                 container_id=oid if kind == "container" else None,
                 sandbox_id=oid if kind == "sandbox" else ("sb1" if kind == "container" else None), **kw)


def _first_run() -> list[Event]:
    forged = {"synthetic": True, "why": WHY_CREATED_BEFORE_FIRST_SEEN}
    return [
        _ev("sensor.connected", None, 100, 100, 100, 102),
        _ev("sandbox.ready", "sb1", 0, 0, 101, 102),
        _ev("container.created", "c1", 10, 0, 101, 102, **forged),
        _ev("container.running", "c1", 20, 10, 101, 102),
        _ev("container.created", "c2", 10, 0, 101, 102, **forged),
        _ev("container.running", "c2", 20, 10, 101, 102),
    ]


def _resumed() -> list[Event]:
    return [
        _ev("sensor.connected", None, 650, 650, 650, 650),
        _ev("sensor.gap", None, 401, 400, 701, 702, info={"cause": "sensor restart"}),
        _ev("container.exited", "c2", 550, 400, 701, 702, synthetic=True, why=WHY_SENSOR_DOWN),
        _ev("container.destroyed", "c2", 550, 400, 701, 702),
    ]


def _numbered(events: list[Event], start: int = 1) -> list[Event]:
    return [e.with_seq(start + i) for i, e in enumerate(events)]


def test_a_sensor_that_kept_its_state_passes_g1_to_g9() -> None:
    report = check(_truth(), _numbered(_first_run() + _resumed()), PARAMS)
    assert report.ok, report.render()
    assert sorted(report.results) == [f"G{i}" for i in range(1, 10)]
    m = report["G9"].measures
    assert m["restarts"] == 1 and m["gaps_required"] == 1 and m["forged_while_down_checked"] == 1


def test_a_sensor_that_forgets_its_state_fails_g9() -> None:
    forgetful = [
        _ev("sensor.connected", None, 650, 650, 650, 650),
        _ev("sandbox.ready", "sb1", 0, 0, 701, 702),
        _ev("container.created", "c1", 10, 0, 701, 702, synthetic=True, why=WHY_CREATED_BEFORE_FIRST_SEEN),
        _ev("container.running", "c1", 20, 10, 701, 702),
    ]
    report = check(_truth(), _numbered(_first_run()) + _numbered(forgetful), PARAMS)
    assert "G9" in report.failed and "G1" not in report.failed and "G6" not in report.failed, report.render()
    messages = [v.message for v in report["G9"].violations]
    assert sum("emitted again after the sensor restart at +0.350000s" in m for m in messages) == 3, messages
    assert any("seq 1 follows seq 6 across the sensor restart" in m for m in messages), messages
    assert any("no single sensor.gap covers the sensor's downtime" in m for m in messages), messages
    assert "G9 exactly once across restarts" in report.render()


def test_without_restarts_g9_is_not_judged_and_duplicates_stay_g1s() -> None:
    events = _numbered(_first_run() + _resumed())
    report = check(_truth(), events, replace(PARAMS, sensor_restarts=()))
    assert "G9" not in report.results
    again = _numbered(_first_run() + _first_run()[1:2])
    assert "G1" in check(_truth(), again, replace(PARAMS, sensor_restarts=())).failed


def test_a_downtime_needs_one_gap_that_covers_it() -> None:
    split = [e for e in _resumed() if e.type != "sensor.gap"]
    two = [_ev("sensor.gap", None, 401, 400, 500, 702, info={"cause": "sensor restart"}),
           _ev("sensor.gap", None, 500, 500, 701, 702, info={"cause": "sensor restart"})]
    report = check(_truth(), _numbered(_first_run() + split[:1] + two + split[1:]), PARAMS)
    assert report.failed == ["G9"], report.render()
    assert "no single sensor.gap covers" in report["G9"].violations[0].message


def test_what_vanished_while_the_sensor_was_down_says_so() -> None:
    wrong = [replace(e, why=WHY_VANISHED_DURING_OUTAGE) if e.synthetic else e for e in _resumed()]
    report = check(_truth(), _numbered(_first_run() + wrong), PARAMS)
    assert report.failed == ["G9"], report.render()
    assert f"instead of {WHY_SENSOR_DOWN!r}" in report["G9"].violations[0].message


def test_late_reports_across_the_downtime_are_not_g2_or_g7_failures() -> None:
    """c2's end was due one poll after it was gone (+0.520s) -- while the sensor was down; it is
    due one poll after the restarted sensor's first list instead."""
    report = check(_truth(), _numbered(_first_run() + _resumed()), PARAMS)
    assert report["G2"].ok and report["G7"].ok
    no_restart = check(_truth(), _numbered(_first_run() + _resumed()), replace(PARAMS, sensor_restarts=()))
    assert not no_restart["G7"].ok or not no_restart["G2"].ok


def test_what_only_a_killed_sensor_was_shown_and_is_gone_before_the_restart_owes_nothing() -> None:
    """c3 lives from +420 to +520 ms; a list answered at +440 ms showed it, 10 ms before the kill,
    before any event for it was due. The restarted sensor never sees it: no G2 duty (G9 rules)."""
    w = World().sandbox("sb1", 0).container("c1", 10, 20).container("c2", 10, 20, 500, 520)
    w.container("c3", 420, 425, 500, 520)
    for t in (*LISTS, 440):
        w.rpc("ListPodSandbox", t).rpc("ListContainers", t)
    events = _numbered(_first_run() + _resumed())
    report = check(w.records, events, PARAMS)
    assert report.ok, report.render()
    unexcused = check(w.records, events, replace(PARAMS, sensor_restarts=()))
    assert any("c3" in v.message for v in unexcused["G2"].violations), unexcused.render()
