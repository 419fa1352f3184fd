"""The guarantee checker on hand-built histories: a correct sensor passes, each broken one fails
with the guarantee it breaks named."""

from __future__ import annotations

import dataclasses
import json

import pytest
from checkworld import MS, T0, VANISHED, World, at, find, renumber, simulate

from fakecri.check import CheckParams, Report, check, load_events_jsonl
from fakecri.truth import RpcServed
from sensor.events import Event

P = 100 * MS
PARAMS = CheckParams(poll_interval_ns=P)


def basic_world() -> World:
    """One pod, four containers (one invisible to 100 ms polling), an ID reused, a runtime restart."""
    return (
        World()
        .sandbox("sb1", 5, notready=720, destroyed=760)  # goes while the runtime is down
        .container("c1", 10, 12, 450, 530)  # seen running, seen exited, seen gone
        .container("c2", 130, 131, 160, 170)  # lives 40 ms between two polls: invisible
        .container("c3", 210, 215, 330, 340)  # exits and is removed between polls: forged exit
        .container("c1", 560, 562)  # the ID c1 again: a second incarnation
        .container("c4", 605, 607)  # created just before the outage
        .runtime(650, 790)
    )


@pytest.fixture(scope="module")
def good():
    return simulate(basic_world(), poll_ms=100, until_ms=1000)


def run(sim_or_truth, events=None, params=PARAMS) -> Report:
    if events is None:
        return check(sim_or_truth.truth, sim_or_truth.events, params)
    return check(sim_or_truth.truth, events, params)


def replace(events, i, **changes) -> list[Event]:
    out = list(events)
    out[i] = dataclasses.replace(out[i], **changes)
    return out


def assert_fails(report: Report, guarantee: str) -> None:
    assert guarantee in report.failed, report.render()
    assert any(v.guarantee == guarantee for v in report.violations)


# -- a correct sensor ----------------------------------------------------------------------------


def test_correct_sensor_passes_everything(good):
    report = run(good)
    assert report.ok, report.render()
    assert [(e.type, e.container_id or e.sandbox_id, e.synthetic) for e in good.events] == [
        ("sensor.connected", None, False),
        ("sandbox.ready", "sb1", False),
        ("container.created", "c1", True),  # first seen running: never seen in state created
        ("container.running", "c1", False),
        ("container.created", "c3", True),
        ("container.running", "c3", False),
        ("container.exited", "c3", True),  # exited and removed between polls
        ("container.destroyed", "c3", False),  # a list showed it gone
        ("container.exited", "c1", False),
        ("container.destroyed", "c1", False),
        ("container.created", "c1", True),  # second incarnation of c1
        ("container.running", "c1", False),
        ("sensor.gap", None, False),
        ("sandbox.notready", "sb1", True),
        ("sandbox.destroyed", "sb1", False),
        ("container.created", "c4", True),
        ("container.running", "c4", False),
    ]
    assert good.events[find(good.events, "sandbox.notready")].why == VANISHED
    g8 = report["G8"].measures
    assert (g8["total"], g8["missed"], g8["invisible"]) == (3, 1, 1)
    assert report["G6"].measures["gaps_required"] == 1
    assert report["G4"].measures["exact_checked"] >= 8


def test_report_is_json_and_readable(good):
    events = replace(good.events, find(good.events, "container.exited", "c3"), synthetic=False)
    report = run(good, events)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["failed"] == ["G3"]
    assert d["guarantees"]["G3"]["violations"][0]["events"][0]["type"] == "container.exited"
    text = report.render()
    assert "G1 order" in text and "PASS" in text
    assert "G3 honest flags" in text and "FAIL" in text
    assert "[G3] container c3" in text and "seq=7 container.exited c3" in text


def test_events_as_json_dicts_and_unparseable_lines(good):
    lines = [e.to_json() for e in good.events]
    lines.insert(3, "{not json")
    lines.insert(5, json.dumps({"v": 1, "seq": 99, "type": "container.teleported"}))
    lines.append("")
    events, failures = load_events_jsonl(lines)
    assert [f.line for f in failures] == [4, 6]
    report = check(good.truth, events, PARAMS, failures)
    assert not report.ok
    assert report.failed == []  # every guarantee holds; only the output format is broken
    assert "FORMAT FAIL" in report.render()
    # parsed dicts are accepted too, and a bad one is reported rather than raised
    dicts = [json.loads(line) for line in lines if line.strip() and line != "{not json"]
    report = check(good.truth, dicts, PARAMS)
    assert [f.line for f in report.parse_failures] == [5]
    assert "unknown type" in report.parse_failures[0].error


# -- G1 order ------------------------------------------------------------------------------------


def test_out_of_order_fails_g1(good):
    ev = list(good.events)
    i, j = find(ev, "container.created", "c3"), find(ev, "container.running", "c3")
    ev[i], ev[j] = ev[j], ev[i]
    report = run(good, renumber(ev))
    assert report.failed == ["G1"], report.render()
    assert "comes after container.running" in report["G1"].violations[0].message


def test_event_after_destroyed_fails_g1(good):
    ev = list(good.events)
    i = find(ev, "container.destroyed", "c3")
    ev.insert(i + 1, dataclasses.replace(ev[find(ev, "container.running", "c3")]))
    assert_fails(run(good, renumber(ev)), "G1")


def test_seq_must_increase(good):
    ev = list(good.events)
    ev[4] = dataclasses.replace(ev[4], seq=ev[3].seq)
    report = run(good, ev)
    assert report.failed == ["G1"]
    assert "seq must strictly increase" in report["G1"].violations[0].message


def test_duplicate_without_outage_fails_g1(good):
    ev = list(good.events)
    i = find(ev, "container.running", "c1")
    ev.insert(i + 1, ev[i])
    report = run(good, renumber(ev))
    assert report.failed == ["G1"]
    assert "twice" in report["G1"].violations[0].message


# -- G2 completeness -----------------------------------------------------------------------------


def test_never_forging_exited_fails_g2(good):
    ev = [e for e in good.events if not (e.type == "container.exited" and e.synthetic)]
    report = run(good, renumber(ev))
    assert report.failed == ["G2"], report.render()
    (v,) = report["G2"].violations
    assert "container c3" in v.message and "no container.exited" in v.message
    assert {r.transition for _, r in v.truth if r.kind == "container"} >= {"exited", "destroyed"}


def test_dropped_sandbox_events_fail_g2(good):
    ev = [e for e in good.events if not e.type.startswith("sandbox.")]
    report = run(good, renumber(ev))
    assert report.failed == ["G2"]
    (v,) = report["G2"].violations
    assert v.message.startswith("sandbox sb1") and "no sandbox.ready, sandbox.notready, sandbox.destroyed" in v.message


def test_missing_created_for_visible_container_fails_g2(good):
    ev = [e for e in good.events if e.container_id != "c3"]
    report = run(good, renumber(ev))
    assert_fails(report, "G2")
    assert "container c3" in report["G2"].violations[0].message


def test_id_reuse_unnoticed_fails_g2():
    """A sensor that keys on the ID alone misses the second incarnation of c1."""
    w = World().sandbox("sb1", 1).container("c1", 10, 12, 150, 160).container("c1", 170, 175)
    sim = simulate(w, poll_ms=100, until_ms=600)
    naive = [e for e in sim.events if not (e.container_id == "c1" and e.observed_ns >= at(200))]
    report = run(sim, renumber(naive))
    assert report.ok is False and "G2" in report.failed
    assert any("c1…" not in v.message and "#1" in v.message for v in report["G2"].violations)


# -- G3 honest flags -----------------------------------------------------------------------------


def test_forged_events_marked_seen_fail_g3(good):
    i = find(good.events, "container.exited", "c3")
    report = run(good, replace(good.events, i, synthetic=False, why=None))
    assert report.failed == ["G3"]
    (v,) = report["G3"].violations
    assert v.event_seqs == (good.events[i].seq,)
    assert "never" not in v.message and "in state exited" in v.message


def test_created_first_seen_running_must_be_synthetic(good):
    i = find(good.events, "container.created", "c3")
    report = run(good, replace(good.events, i, synthetic=False, why=None))
    assert report.failed == ["G3"]


def test_destroyed_claimed_seen_before_any_list_showed_it_gone_fails_g3():
    w = World().sandbox("sb1", 1).container("c1", 10, 12, 140, 150)
    sim = simulate(w, poll_ms=100, until_ms=500)
    ev = list(sim.events)
    i = find(ev, "container.destroyed", "c1")
    ev[i] = dataclasses.replace(ev[i], observed_ns=at(160), window_ns=(at(100), at(160)), time_ns=at(160))
    report = run(sim, ev)
    assert "G3" in report.failed, report.render()
    assert "gone" in report["G3"].violations[0].message


def test_synthetic_without_why_fails_g3(good):
    i = find(good.events, "container.exited", "c3")
    report = run(good, replace(good.events, i, why="  "))
    assert report.failed == ["G3"]
    assert "no why" in report["G3"].violations[0].message


# -- G4 true times -------------------------------------------------------------------------------


def test_wrong_window_fails_g4(good):
    i = find(good.events, "container.exited", "c3")
    e = good.events[i]
    report = run(good, replace(good.events, i, window_ns=(at(350), at(400)), time_ns=at(400)))
    assert report.failed == ["G4"], report.render()
    (v,) = report["G4"].violations
    assert "misses the true time" in v.message and v.event_seqs == (e.seq,)
    assert [r.transition for _, r in v.truth] == ["exited"]


def test_wrong_time_ns_where_runtime_reported_it_fails_g4(good):
    i = find(good.events, "container.created", "c1")
    bad = replace(good.events, i, time_ns=at(11), window_ns=(at(5), at(15)))
    report = run(good, bad)
    assert report.failed == ["G4"]
    (v,) = report["G4"].violations
    assert "differs by +1000000 ns from the created_at" in v.message
    assert any(r.kind == "rpc" and r.method == "ListContainers" for _, r in v.truth)


def test_wrong_started_at_fails_g4(good):
    i = find(good.events, "container.running", "c1")
    report = run(good, replace(good.events, i, time_ns=at(13), window_ns=(at(10), at(100))))
    assert report.failed == ["G4"]
    assert "started_at" in report["G4"].violations[0].message


def test_timestamp_fault_window_relaxes_exact_rule():
    w = World().sandbox("sb1", 1).container("c1", 10, 12).fault("zero_timestamps", 0, 300)
    sim = simulate(w, poll_ms=100, until_ms=500)
    i = find(sim.events, "container.created", "c1")
    # the runtime said created_at=0; the sensor kept its own window and estimate
    bad = replace(sim.events, i, time_ns=at(100), window_ns=(at(0), at(100)))
    report = run(sim, bad)
    assert report.ok, report.render()
    assert report["G4"].measures["exact_exempt_fault"] >= 1
    # but the window must still hold the true time
    report = run(sim, replace(sim.events, i, time_ns=at(100), window_ns=(at(50), at(100))))
    assert report.failed == ["G4"]


# -- G5 no phantoms ------------------------------------------------------------------------------


def test_failed_list_read_as_empty_fails_g5():
    """The runtime answers UNAVAILABLE at 300 ms; a broken sensor reads that as 'all gone'."""
    w = World().sandbox("sb1", 1).container("c1", 10, 12)
    sim = simulate(w, poll_ms=100, until_ms=600, fail_polls={3})
    ev = [e for e in sim.events if e.type != "sensor.gap"]
    obs = at(302)
    i = find(ev, "container.running", "c1") + 1
    ev[i:i] = [
        Event(
            "container.exited",
            at(300),
            (at(200), at(300)),
            obs,
            container_id="c1",
            synthetic=True,
            why="exited and removed between polls",
        ),
        Event("container.destroyed", at(300), (at(200), at(300)), obs, container_id="c1"),
    ]
    report = run(sim, renumber(ev))
    assert "G5" in report.failed, report.render()
    msgs = [v.message for v in report["G5"].violations]
    assert any("container.destroyed" in m and "still existed at the end of the run" in m for m in msgs)
    assert any("container.exited" in m for m in msgs)
    # the evidence shows the failed answer next to the wrong event
    v = next(v for v in report["G5"].violations if "destroyed" in v.message)
    assert any(r.kind == "rpc" and r.code == "UNAVAILABLE" for _, r in v.truth)


def test_destroyed_before_it_happened_fails_g5():
    w = World().sandbox("sb1", 1).container("c1", 10, 12, 250, 450)
    sim = simulate(w, poll_ms=100, until_ms=700)
    i = find(sim.events, "container.destroyed", "c1")
    ev = replace(sim.events, i, observed_ns=at(402), window_ns=(at(300), at(400)), time_ns=at(400))
    ev = sorted(ev, key=lambda e: e.observed_ns)
    report = run(sim, renumber(ev))
    assert_fails(report, "G5")
    assert "only happened at" in report["G5"].violations[0].message


def test_event_for_unknown_container_fails_g5(good):
    ev = list(good.events)
    ev.append(Event("container.created", at(900), (at(900), at(900)), at(902), container_id="ghost"))
    report = run(good, renumber(ev))
    assert report.failed == ["G5"]
    assert "ghost never existed" in report["G5"].violations[0].message


# -- G6 exactly once across outages --------------------------------------------------------------


def test_missing_gap_fails_g6(good):
    ev = [e for e in good.events if e.type != "sensor.gap"]
    report = run(good, renumber(ev))
    assert report.failed == ["G6"]
    (v,) = report["G6"].violations
    assert "no sensor.gap covers the outage" in v.message
    assert [r.kind for _, r in v.truth] == ["runtime", "runtime", "rpc"]


def test_gap_for_failed_lists_is_required():
    w = World().sandbox("sb1", 1).container("c1", 10, 12)
    sim = simulate(w, poll_ms=100, until_ms=600, fail_polls={2, 3})
    assert run(sim).ok
    report = run(sim, renumber([e for e in sim.events if e.type != "sensor.gap"]))
    assert report.failed == ["G6"]
    assert "2 failed list call(s)" in report["G6"].violations[0].message


def test_gap_too_short_fails_g6(good):
    i = find(good.events, "sensor.gap")
    report = run(good, replace(good.events, i, window_ns=(at(700), at(800))))
    assert report.failed == ["G6"]


def test_duplicates_after_reconnect_fail_g6(good):
    """After the outage the sensor resyncs and announces what it already knew, again."""
    ev = list(good.events)
    gap = find(ev, "sensor.gap")
    again = [
        dataclasses.replace(e, observed_ns=ev[gap].observed_ns, source="resync")
        for e in ev
        if e.container_id == "c1" and e.time_ns >= at(560) and e.type != "container.destroyed"
    ]
    ev[gap + 1 : gap + 1] = again
    report = run(good, renumber(ev))
    assert report.failed == ["G6"], report.render()
    assert all("emitted again" in v.message for v in report["G6"].violations)
    assert len(report["G6"].violations) == 2


def test_vanished_during_outage_needs_that_why(good):
    i = find(good.events, "sandbox.notready")
    report = run(good, replace(good.events, i, why="removed between polls"))
    assert report.failed == ["G6"]
    assert "vanished during the outage" in report["G6"].violations[0].message


# -- G7 latency ----------------------------------------------------------------------------------


def test_late_events_fail_g7(good):
    ev = list(good.events)
    i = find(ev, "container.created", "c3")
    # 400 ms: past 210 + 100 + 50 + 1 ms, but still within a poll interval of the poll that saw it
    ev[i] = dataclasses.replace(ev[i], observed_ns=at(400))
    ev[i + 1] = dataclasses.replace(ev[i + 1], observed_ns=at(400))
    report = run(good, ev)
    assert report.failed == ["G7"], report.render()
    assert "poll bound was 151.000ms" in report["G7"].violations[0].message
    assert "came 190.000ms after the transition" in report["G7"].violations[0].message


def test_stream_mode_latency_and_blindness():
    w = World().sandbox("sb1", 1).container("c1", 50, 51, 60, 70).container("c2", 150, 152)
    w.rpc("GetContainerEvents", 0, "UNAVAILABLE", end=1000)
    for t in range(0, 1001, 500):
        w.rpc("ListPodSandbox", t).rpc("ListContainers", t)
    streamed = [
        Event("sensor.connected", at(0), (at(0), at(0)), at(1)),
        Event("sandbox.ready", at(1), (at(1), at(1)), at(2), sandbox_id="sb1"),
    ]
    for cid, tr, t in (
        ("c1", "created", 50),
        ("c1", "running", 51),
        ("c1", "exited", 60),
        ("c1", "destroyed", 70),
        ("c2", "created", 150),
        ("c2", "running", 152),
    ):
        streamed.append(Event(f"container.{tr}", at(t), (at(t), at(t)), at(t + 2), source="stream", container_id=cid))
    truth = sorted(w.records, key=lambda r: r.time_ns)
    params = CheckParams(poll_interval_ns=500 * MS, mode="stream")
    assert check(truth, renumber(streamed), params).ok
    late = renumber(replace(streamed, 6, observed_ns=at(150 + 80)))
    report = check(truth, late, params)
    assert report.failed == ["G7"]
    assert "stream bound was 60.000ms" in report["G7"].violations[0].message
    missing = renumber([e for e in streamed if e.container_id != "c1"])
    report = check(truth, missing, params)
    assert "G8" in report.failed and "G2" in report.failed
    assert "while an event stream was open" in report["G8"].violations[0].message


# -- G8 measured blindness -----------------------------------------------------------------------


def churn_world(n: int = 60, seed: int = 7) -> World:
    """``n`` containers living 20..200 ms, started at random instants (a fixed seed)."""
    import random

    rnd = random.Random(seed)
    w = World().sandbox("sb1", 1)
    for i in range(n):
        c = rnd.uniform(10, 5000)
        life = rnd.uniform(20, 200)
        w.container(f"churn{i}", c, c + 1, c + life - 1, c + life)
    return w


def test_physics_of_polling_passes_g8():
    sim = simulate(churn_world(), poll_ms=100, until_ms=5400, phase_ms=37)
    report = run(sim)
    assert report.ok, report.render()
    m = report["G8"].measures
    assert m["total"] >= 55 and 0 < m["missed"] <= m["allowed_missed"]
    assert m["missed"] == m["invisible"] == m["invisible_and_no_events"]


def test_blind_beyond_physics_fails_g8():
    """The sensor claims 100 ms polling but polls every 400 ms."""
    sim = simulate(churn_world(), poll_ms=400, until_ms=5400, phase_ms=37)
    report = run(sim)
    assert_fails(report, "G8")
    m = report["G8"].measures
    assert m["missed"] > m["allowed_missed"]
    assert "blinder than polling explains" in report["G8"].violations[0].message


# -- edges ---------------------------------------------------------------------------------------


def test_run_window_limits_obligations(good):
    """Ending the judged run right after the destroy: events not yet due are not required."""
    ev = [
        e for e in good.events if not (e.container_id == "c3" and e.type in ("container.exited", "container.destroyed"))
    ]
    params = dataclasses.replace(PARAMS, end_ns=at(420))
    report = check(good.truth, renumber([e for e in ev if e.observed_ns <= at(420)]), params)
    assert report.ok, report.render()
    assert report.counts["truth_records_after_end"] > 0


def test_no_rpc_records_is_noted_not_crashed(good):
    truth = [r for r in good.truth if not isinstance(r, RpcServed)]
    report = check(truth, good.events, PARAMS)
    assert any("no rpc records" in n for n in report.notes)
    assert report["G2"].ok


def test_params_are_validated():
    with pytest.raises(ValueError, match="poll_interval_ns"):
        CheckParams(poll_interval_ns=0)
    with pytest.raises(ValueError, match="mode"):
        CheckParams(poll_interval_ns=P, mode="push")  # type: ignore[arg-type]


def test_empty_inputs():
    report = check([], [], PARAMS)
    assert report.ok
    assert report.start_ns == 0 and report.end_ns == 0
    assert T0 > 0


def test_late_duplicate_about_previous_incarnation_is_assigned_to_it():
    """After c1 was reused, a repeated destroyed whose window ends before the new c1 was created
    is about the old one: a duplicate there (G1), not a phantom destroy of the new one (G5)."""
    w = World().sandbox("sb1", 1).container("c1", 10, 12, 150, 160).container("c1", 250, 255)
    sim = simulate(w, poll_ms=100, until_ms=600)
    assert run(sim).ok
    ev = list(sim.events)
    old = ev[find(ev, "container.destroyed", "c1")]
    ev.append(dataclasses.replace(old, window_ns=(at(100), at(200)), observed_ns=at(450)))
    report = run(sim, renumber(ev))
    assert report.failed == ["G1"], report.render()
    assert "container c1#0" in report["G1"].violations[0].message


def test_render_shows_every_failed_guarantee(good):
    ev = [e for e in good.events if e.type != "sensor.gap"]
    ev += [dataclasses.replace(ev[-1], container_id=f"ghost{i}") for i in range(20)]
    text = run(good, renumber(ev)).render(max_violations=2)
    assert "[G5]" in text and "[G6]" in text


def test_id_reused_during_outage_may_say_reused():
    """c1 is removed and its ID reused while the runtime is down: after the outage the sensor sees
    a new created_at under a known ID and may call the old one's end a reuse, not a vanishing."""
    w = World().sandbox("sb1", 1).container("c1", 10, 12, 250, 260).container("c1", 280, 285).runtime(220, 390)
    sim = simulate(w, poll_ms=100, until_ms=700)
    assert run(sim).ok
    ev = list(sim.events)
    i = find(ev, "container.exited", "c1")
    assert ev[i].why == VANISHED
    assert run(sim, replace(ev, i, why="container ID reused")).ok
