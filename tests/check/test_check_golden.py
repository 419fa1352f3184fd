"""Every guarantee's verdict, measures, summary and evidence on fixed histories, written out.

The histories are ``test_check.basic_world`` played by the simulated perfect sensor, then broken
in one way per guarantee. The expected values were checked by hand against docs/guarantees.md
(e.g. G8: c2 lives 40 ms of a 100 ms interval, so p = 0.4, expected misses 0.6, variance 0.24,
allowed 0.6 + max(3 * 0.49, 2) = 2.6). Evidence is compared by truth seq and event seq.
"""

from __future__ import annotations

import dataclasses

import pytest
from checkworld import MS, World, at, find, renumber, simulate
from test_check import basic_world

from fakecri.check import CheckParams, check
from sensor.events import Event

P = 100 * MS
PARAMS = CheckParams(poll_interval_ns=P)


@pytest.fixture(scope="module")
def good():
    return simulate(basic_world(), poll_ms=100, until_ms=1000)


def replaced(events, type_, oid, **kw):
    out = list(events)
    i = find(out, type_, oid)
    out[i] = dataclasses.replace(out[i], **kw)
    return out


def verdict(report, g):
    r = report[g]
    assert all(v.guarantee == g for v in r.violations)
    return r.summary, r.measures, [(v.message, v.event_seqs, v.truth_seqs) for v in r.violations]


def test_good_run_measures(good):
    r = check(good.truth, good.events, PARAMS)
    assert r.ok and r.failed == [] and r.notes == []
    assert [v[:2] for v in (verdict(r, g) for g in r.results)] == [
        ("17 events over 5 incarnations",
         {"events": 17, "incarnations_with_events": 5, "seq_breaks": 0, "out_of_order": 0, "duplicates": 0}),
        ("12 container + 3 sandbox events due (4 containers, 1 sandboxes visible)",
         {"containers_visible": 4, "containers_events_due": 12, "containers_incomplete": 0,
          "sandboxes_visible": 1, "sandboxes_events_due": 3, "sandboxes_incomplete": 0}),
        ("6 synthetic, 9 seen; 4x 'created and changed state between polls', "
         "1x 'exited and removed between polls', 1x 'vanished during outage'",
         {"synthetic_true": 6, "synthetic_false": 9, "synthetic_by_why": {
             "created and changed state between polls": 4, "exited and removed between polls": 1,
             "vanished during outage": 1}}),
        ("15 windows, 10 exact times checked", {"windows_checked": 15, "exact_checked": 10, "exact_exempt_fault": 0}),
        ("0 events for unknown IDs, 0 premature or unreal transitions",
         {"phantom_ids": 0, "phantom_events": 0, "premature_or_unreal": 0}),
        ("1 outages (1 needing a gap), 1 gap events, 1 incarnations vanished during outages",
         {"outages": 1, "gaps_required": 1, "gap_events": 1, "duplicates_after_outage": 0,
          "vanished_during_outage": 1}),
        ("15 events, latency p50 82.000ms p99 197.000ms max 197.000ms",
         {"events_measured": 15, "via_poll": 15, "via_stream": 0, "poll_bound_ms": 150.0, "stream_bound_ms": 60.0,
          "p50_ms": 82.0, "p90_ms": 195.0, "p99_ms": 197.0, "max_ms": 197.0}),
        ("missed 1/3 completed containers (expected 0.6 ± 0.5, allowed 2.6); 1 never visible",
         {"mode": "poll", "total": 3, "missed": 1, "invisible": 1, "invisible_and_no_events": 1,
          "visible_but_missed": 0, "excluded_outage": 0, "actual_miss_rate": pytest.approx(1 / 3),
          "expected_miss_rate": pytest.approx(0.2), "expected_missed": pytest.approx(0.6),
          "stddev_missed": pytest.approx(0.24**0.5), "allowed_missed": pytest.approx(2.6), "stream_missed": 0}),
    ]
    assert r.counts == {
        "events": 17, "events_readable": 17,
        "events_by_type": {"sensor.connected": 1, "sandbox.ready": 1, "container.created": 4,
                           "container.running": 4, "container.exited": 2, "container.destroyed": 2,
                           "sensor.gap": 1, "sandbox.notready": 1, "sandbox.destroyed": 1},
        "truth_records": len(good.truth), "truth_records_after_end": 0, "container_incarnations": 5,
        "sandbox_incarnations": 1, "rpc_records": len([t for t in good.truth if t.kind == "rpc"]), "outages": 1,
        "synthetic_by_why": {"created and changed state between polls": 4, "exited and removed between polls": 1,
                             "vanished during outage": 1},
    }
    assert (r.start_ns, r.end_ns) == (at(0), at(1001))


def test_g1_golden(good):
    ev = list(good.events)
    ev[5], ev[6] = ev[6], ev[5]  # c3 exited before running
    ev = renumber(ev)
    ev[1] = dataclasses.replace(ev[1], seq=1)  # a seq that does not increase
    ev.append(dataclasses.replace(good.events[3], seq=99))  # c1 running again, no outage
    r = check(good.truth, ev, PARAMS)
    assert r.failed == ["G1"]
    assert verdict(r, "G1") == (
        "18 events over 5 incarnations",
        {"events": 18, "incarnations_with_events": 5, "seq_breaks": 1, "out_of_order": 1, "duplicates": 1},
        [
            ("seq 1 follows seq 1: seq must strictly increase", (1, 1), ()),
            ("container c3: container.running (seq 7) comes after container.exited (seq 6); lifecycle order is "
             "created < running < exited < destroyed, nothing after destroyed", (6, 7), (19, 15)),
            ("container c1#0: container.running emitted twice (seq 4 and seq 99), no outage in between", (4, 99), (4,)),
        ],
    )


def test_g1_counts_every_break(good):
    ev = renumber(list(good.events))
    ev = [dataclasses.replace(e, seq=1) for e in ev[:3]] + ev[3:]  # two breaks
    r = check(good.truth, ev, PARAMS)
    assert r["G1"].measures["seq_breaks"] == 2
    sb = [e for e in good.events if e.sandbox_id == "sb1" and e.type.startswith("sandbox.")]
    rest = [e for e in good.events if e not in sb]
    backwards = renumber(rest + list(reversed(sb)))  # destroyed, notready, ready: two steps back
    r = check(good.truth, backwards, PARAMS)
    assert r["G1"].measures["out_of_order"] == 2
    assert [v.message.split(";")[0] for v in r["G1"].violations] == [
        "sandbox sb1: sandbox.notready (seq 16) comes after sandbox.destroyed (seq 15)",
        "sandbox sb1: sandbox.ready (seq 17) comes after sandbox.destroyed (seq 15)",
    ]


def test_g2_golden(good):
    ev = [e for e in good.events if not (e.container_id == "c3" and e.type in ("container.created",
                                                                                "container.running"))]
    ev = renumber(replaced(ev, "container.created", "c4", observed_ns=at(990)))
    r = check(good.truth, ev, PARAMS)
    assert r.failed == ["G2", "G7"]
    assert verdict(r, "G2") == (
        "12 container + 3 sandbox events due (4 containers, 1 sandboxes visible)",
        {"containers_visible": 4, "containers_events_due": 12, "containers_incomplete": 2,
         "sandboxes_visible": 1, "sandboxes_events_due": 3, "sandboxes_incomplete": 0},
        [
            ("container c3 (visible from +0.300000s, gone at +0.340000s): no container.created, container.running",
             (), (14, 15, 20, 17)),
            ("container c4 (visible from +0.800000s): container.created only at +0.990000s (due by +0.951000s)",
             (14,), (33, 40)),
        ],
    )


def test_g2_for_an_invisible_incarnation_the_sensor_named(good):
    """c2 was never visible, but the sensor reported its creation: it knew it, so its end is due."""
    ev = list(good.events)
    ev.insert(4, dataclasses.replace(good.events[2], container_id="c2", time_ns=at(130), window_ns=(at(130), at(130)),
                                     observed_ns=at(135), synthetic=True, why="a hunch"))
    r = check(good.truth, renumber(ev), PARAMS)
    assert "G2" in r.failed
    (v,) = r["G2"].violations
    assert v.message == ("container c2 (reported by the sensor, gone at +0.170000s): no container.exited, "
                         "container.destroyed")
    assert r["G2"].measures["containers_visible"] == 4 and r["G2"].measures["containers_events_due"] == 14


def test_g3_golden(good):
    ev = replaced(good.events, "container.exited", "c3", synthetic=False, why=None)
    ev = replaced(ev, "container.created", "c4", why=" ")
    r = check(good.truth, ev, PARAMS)
    assert r.failed == ["G3"]
    assert verdict(r, "G3") == (
        "5 synthetic, 10 seen; 3x 'created and changed state between polls', 1x 'vanished during outage'",
        {"synthetic_true": 5, "synthetic_false": 10, "synthetic_by_why": {
            "created and changed state between polls": 3, "vanished during outage": 1}},
        [
            ("seq 16 container.created is synthetic:true but gives no why", (16,), ()),
            ("container c3: container.exited (seq 7) says synthetic:false, but no answer showed it in state exited "
             "by +0.402000s", (7,), (19, 20)),
        ],
    )


def test_g4_golden(good):
    ev = replaced(good.events, "container.exited", "c3", window_ns=(at(350), at(400)), time_ns=at(400))
    ev = replaced(ev, "container.running", "c1", time_ns=good.events[3].time_ns + 5)
    ev = replaced(ev, "container.destroyed", "c3", time_ns=at(450))
    r = check(good.truth, ev, PARAMS)
    assert r.failed == ["G4"]
    assert verdict(r, "G4") == (
        "15 windows, 10 exact times checked",
        {"windows_checked": 15, "exact_checked": 10, "exact_exempt_fault": 0},
        [
            ("container c1#0: container.running (seq 4) time_ns +0.012000s differs by +5 ns from the started_at the "
             "runtime reported (+0.012000s, in a ContainerStatus answer)", (4,), (4, 7)),
            ("container c3: container.exited (seq 7) window [+0.350000s, +0.400000s] misses the true time "
             "+0.330000s by 20.000ms", (7,), (19,)),
            ("container c3: container.destroyed (seq 8) time_ns +0.450000s lies 50.000ms outside its own window "
             "[+0.300000s, +0.400000s]", (8,), (20,)),
        ],
    )


def test_g4_window_misses_early_side_and_exempt_count():
    w = World().sandbox("sb1", 1).container("c1", 10, 12).fault("zero_timestamps", 0)
    sim = simulate(w, poll_ms=100, until_ms=500)
    ev = replaced(sim.events, "container.running", "c1", window_ns=(at(13), at(20)), time_ns=at(15))
    r = check(sim.truth, ev, PARAMS)
    assert r["G4"].measures == {"windows_checked": 3, "exact_checked": 0, "exact_exempt_fault": 2}
    assert r["G4"].summary == "3 windows, 0 exact times checked, 2 exempt (timestamp fault)"
    (v,) = r["G4"].violations
    assert v.message.endswith("misses the true time +0.012000s by 1.000ms")
    r = check(sim.truth, replaced(sim.events, "container.running", "c1", window_ns=(at(12) + 1, at(20))), PARAMS)
    assert r["G4"].violations[0].message.endswith("by 1 ns")
    r = check(sim.truth, replaced(sim.events, "container.running", "c1", window_ns=(at(0), at(12) - 3)), PARAMS)
    assert r["G4"].violations[0].message.endswith("by 3 ns")


def test_g5_golden(good):
    ev = list(good.events)
    ev.append(dataclasses.replace(good.events[3], container_id="ghost", seq=50))
    ev.append(dataclasses.replace(good.events[3], container_id="ghost", seq=51))
    ev = replaced(ev, "container.destroyed", "c3", observed_ns=at(335))
    ev.append(dataclasses.replace(good.events[16], type="container.exited", seq=60, observed_ns=at(900)))
    ev.append(dataclasses.replace(good.events[1], sandbox_id="nosuch", seq=61))
    r = check(good.truth, ev, PARAMS)
    assert r.failed == ["G3", "G5"]
    assert verdict(r, "G5") == (
        "3 events for unknown IDs, 2 premature or unreal transitions",
        {"phantom_ids": 2, "phantom_events": 3, "premature_or_unreal": 2},
        [
            ("container ghost never existed in truth, yet 2 event(s) name it (first: container.running)", (50,), ()),
            ("sandbox nosuch never existed in truth, yet 1 event(s) name it (first: sandbox.ready)", (61,), ()),
            ("container c3: container.destroyed (seq 8) at +0.335000s, but that only happened at +0.340000s; it "
             "was exited then", (8,), (14, 15, 19, 20)),
            ("container c4: container.exited (seq 60) at +0.900000s, but it was still alive at the end of the run",
             (60,), (33, 34)),
        ],
    )


def test_g5_evidence_includes_the_failed_answer_just_before():
    w = World().sandbox("sb1", 1).container("c1", 10, 12)
    sim = simulate(w, poll_ms=100, until_ms=600, fail_polls={3})
    failed = next(i for i, r in enumerate(sim.truth) if r.kind == "rpc" and r.code != "OK")
    ev = list(sim.events)
    ev.append(dataclasses.replace(ev[find(ev, "container.running", "c1")], type="container.exited", seq=90,
                                  observed_ns=at(350)))
    r = check(sim.truth, ev, PARAMS)
    (v,) = r["G5"].violations
    assert v.truth_seqs[-1] == failed
    assert v.message == ("container c1: container.exited (seq 90) at +0.350000s, but it was still alive at the end "
                         "of the run")
    ev[-1] = dataclasses.replace(ev[-1], observed_ns=at(301) + P + PARAMS.latency_allowance_ns + 1)
    (v,) = check(sim.truth, ev, PARAMS)["G5"].violations
    assert failed not in v.truth_seqs  # more than one slack after it: not shown as the cause


def test_g5_unreal_transitions_by_kind():
    w = World().sandbox("sb1", 1).container("c1", 10)  # never runs
    sim = simulate(w, poll_ms=100, until_ms=300)
    base = sim.events[find(sim.events, "container.created", "c1")]
    sbase = sim.events[find(sim.events, "sandbox.ready", "sb1")]
    extra = [
        dataclasses.replace(base, type="container.running", seq=90),
        dataclasses.replace(base, type="container.destroyed", seq=91),
        dataclasses.replace(sbase, type="sandbox.notready", seq=92),
    ]
    r = check(sim.truth, [*sim.events, *extra], PARAMS)
    assert [v.message.split(", but ")[1] for v in r["G5"].violations] == [
        "it never ran", "it still existed at the end of the run", "it was still ready at the end of the run"]
    late = dataclasses.replace(base, type="container.running", seq=93, observed_ns=at(10_000))
    r = check(sim.truth, [*sim.events, late], dataclasses.replace(PARAMS, end_ns=at(300)))
    assert r["G5"].ok  # observed after the run: truth after it is unknown


def test_g6_golden(good):
    ev = replaced(good.events, "sensor.gap", None, observed_ns=at(990))
    ev = replaced(ev, "sandbox.notready", "sb1", why="removed between polls")
    ev.append(dataclasses.replace(good.events[16], seq=70, observed_ns=at(990)))  # c4 again: no outage between
    ev.append(dataclasses.replace(good.events[11], seq=71, observed_ns=at(990)))  # c1#1 again, across the outage
    r = check(good.truth, ev, PARAMS)
    assert r.failed == ["G1", "G6"]
    assert verdict(r, "G6") == (
        "1 outages (1 needing a gap), 1 gap events, 1 incarnations vanished during outages",
        {"outages": 1, "gaps_required": 1, "gap_events": 1, "duplicates_after_outage": 1, "vanished_during_outage": 1},
        [
            ("container c1#1: container.running emitted again (seq 12, then seq 71) after the outage "
             "[+0.650000s, +0.790000s]", (12, 71), (29, 35, 38)),
            ("the sensor.gap for the outage [+0.650000s, +0.790000s] came only at +0.990000s (due by +0.951000s)",
             (13,), (35, 38, 39)),
            ("sandbox sb1 vanished during the outage [+0.650000s, +0.790000s], but its forged sandbox.notready "
             "(seq 14) says why='removed between polls' instead of 'vanished during outage'", (14,), (37, 35, 38)),
        ],
    )
    assert verdict(r, "G1")[2] == [
        ("container c4: container.running emitted twice (seq 17 and seq 70), no outage in between", (17, 70), (34,))]
    r = check(good.truth, renumber([e for e in good.events if e.type != "sensor.gap"]), PARAMS)
    assert verdict(r, "G6") == (
        "1 outages (1 needing a gap), 0 gap events, 1 incarnations vanished during outages",
        {"outages": 1, "gaps_required": 1, "gap_events": 0, "duplicates_after_outage": 0, "vanished_during_outage": 1},
        [("no sensor.gap covers the outage [+0.650000s, +0.790000s] (runtime down); the sensor polled successfully "
          "again at +0.800000s", (), (35, 38, 39))],
    )


def test_g7_golden(good):
    ev = replaced(good.events, "container.created", "c3", observed_ns=at(400))
    ev = replaced(ev, "container.running", "c3", observed_ns=at(400))
    r = check(good.truth, ev, PARAMS)
    assert r.failed == ["G7"]
    summary, measures, vs = verdict(r, "G7")
    assert summary == "15 events, latency p50 82.000ms p99 197.000ms max 197.000ms"
    assert vs == [
        ("container c3: container.created (seq 5) came 190.000ms after the transition at +0.210000s; poll bound "
         "was 151.000ms", (5,), (14,)),
        ("container c3: container.running (seq 6) came 185.000ms after the transition at +0.215000s; poll bound "
         "was 151.000ms", (6,), (15,)),
    ]
    assert measures["events_measured"] == 15 and measures["max_ms"] == 197.0


def test_g8_golden():
    """Three long lives (p = 1) and one of 10 ms (p = 0.1), all missed: expected 0.9 misses,
    variance 0.09 (sd 0.3), allowed 0.9 + max(0.9, 2) = 2.9 < 4. c5 lives across a runtime
    restart: not counted."""
    w = (World().sandbox("sb1", 1).container("c1", 10, 11, 299, 300).container("c2", 20, 21, 399, 400)
         .container("c3", 30, 31, 499, 500).container("c4", 610, 611, 619, 620)
         .container("c5", 820, 821, 899, 900).runtime(800, 850))
    sim = simulate(w, poll_ms=100, until_ms=1000)
    blind = renumber([e for e in sim.events if e.type != "container.created"])
    r = check(sim.truth, blind, PARAMS)
    m = r["G8"].measures
    assert (m["total"], m["missed"], m["invisible"], m["invisible_and_no_events"], m["visible_but_missed"],
            m["excluded_outage"], m["stream_missed"]) == (4, 4, 1, 1, 3, 1, 0)
    assert (m["expected_missed"], m["stddev_missed"], m["allowed_missed"]) == (
        pytest.approx(0.9), pytest.approx(0.3), pytest.approx(2.9))
    assert (m["actual_miss_rate"], m["expected_miss_rate"]) == (1.0, pytest.approx(0.225))
    (v,) = r["G8"].violations
    assert v.message == (
        "missed 4 of 4 completed containers, physics allows at most 2.9 (expected 0.9 ± 0.3 at poll_interval "
        "100.000ms); the sensor is blinder than polling explains")
    longest_first = [(r.container_id, r.transition) for _, r in v.truth]
    assert longest_first == [("c3", "created"), ("c3", "destroyed"), ("c2", "created"), ("c2", "destroyed"),
                             ("c1", "created"), ("c1", "destroyed")]
    assert r["G8"].summary == ("missed 4/4 completed containers (expected 0.9 ± 0.3, allowed 2.9); 1 never visible")
    ok = check(sim.truth, sim.events, PARAMS)["G8"]
    assert ok.ok and ok.measures["missed"] == 1 and ok.measures["actual_miss_rate"] == 0.25


def test_g8_empty_population_and_stream_deadline():
    r = check([], [], PARAMS)
    assert r["G8"].measures["actual_miss_rate"] == 0.0 and r["G8"].measures["expected_miss_rate"] == 0.0
    w = World().sandbox("sb1", 1).container("c1", 100)
    w.rpc("GetContainerEvents", 0, "OK", end=1000).rpc("ListContainers", 0).rpc("ListPodSandbox", 0)
    truth = sorted(w.records, key=lambda r: r.time_ns)
    stream = CheckParams(poll_interval_ns=P, mode="stream")
    slack = stream.stream_latency_ns + stream.latency_allowance_ns
    for end, judged in ((at(100) + slack, True), (at(100) + slack - 1, False)):
        r = check(truth, [], dataclasses.replace(stream, end_ns=end))
        assert (r["G8"].measures["stream_missed"] == 1) is judged, end
        if judged:
            (v,) = r["G8"].violations
            assert v.message == ("container c1 was created at +0.100000s while an event stream was open, but got no "
                                 "container.created")


def test_g3_details():
    w = World().sandbox("sb1", 1).container("c1", 10, destroyed=150)  # never runs; gone at 150
    sim = simulate(w, poll_ms=100, until_ms=500)
    created = sim.events[find(sim.events, "container.created", "c1")]
    ev = [e for e in sim.events if e.container_id != "c1" or e.type == "container.created"]
    ev += [
        dataclasses.replace(created, type="container.running", seq=90, observed_ns=at(120)),  # never happened: G5
        dataclasses.replace(created, type="container.destroyed", seq=91, observed_ns=at(160),
                            window_ns=(at(100), at(160)), time_ns=at(160)),  # gone, but only shown at 200
        dataclasses.replace(created, type="container.exited", seq=92, observed_ns=at(210), synthetic=True, why=None),
    ]
    r = check(sim.truth, ev, PARAMS)
    assert [v.message for v in r["G3"].violations] == [
        "seq 92 container.exited is synthetic:true but gives no why",
        "container c1: container.destroyed (seq 91) says synthetic:false, but no answer showed it gone by "
        "+0.160000s (first shown at +0.200000s)",
    ]
    assert [v.truth_seqs for v in r["G3"].violations][1] == tuple(
        s for s, t in enumerate(sim.truth) if t.kind == "container" and t.transition == "destroyed")
    # observed at the very ns of the answer that showed it: fine
    ev[-2] = dataclasses.replace(ev[-2], observed_ns=at(200))
    assert [v.event_seqs for v in check(sim.truth, ev, PARAMS)["G3"].violations] == [(92,)]


def test_g3_counts_and_the_three_commonest_whys():
    w = World().sandbox("sb1", 1).container("c1", 10, 12)
    sim = simulate(w, poll_ms=100, until_ms=300)
    base = sim.events[find(sim.events, "container.created", "c1")]
    extra = [dataclasses.replace(base, container_id=f"x{i}", seq=50 + i, synthetic=True, why=why)
             for i, why in enumerate(["a", "b", "b", "c", "c", "c", "d", "d", "d", "d"])]
    extra.append(dataclasses.replace(base, container_id="y", seq=70, synthetic=False, why=None))  # a phantom, "seen"
    r = check(sim.truth, [*sim.events, *extra], PARAMS)
    g3 = r["G3"]
    assert g3.measures == {"synthetic_true": 11, "synthetic_false": 3, "synthetic_by_why": {
        "d": 4, "c": 3, "b": 2, "created and changed state between polls": 1, "a": 1}}
    assert g3.summary == "11 synthetic, 3 seen; 4x 'd', 3x 'c', 2x 'b'"


def test_g4_details():
    """Each rule on its own event, several in one incarnation (none hides the next)."""
    w = World().sandbox("sb1", 1).container("c1", 10, 12, destroyed=250)  # lost without an exit at 250
    sim = simulate(w, poll_ms=100, until_ms=500)
    ev = list(sim.events)
    i = find(ev, "container.created", "c1")
    t = at(10)
    ev[i] = dataclasses.replace(ev[i], window_ns=(t + 1, t - 1))  # inverted
    j = find(ev, "container.running", "c1")
    ev[j] = dataclasses.replace(ev[j], time_ns=at(11), window_ns=(at(11), at(12)))  # differs from started_at
    k = find(ev, "container.exited", "c1")
    ev[k] = dataclasses.replace(ev[k], window_ns=(at(240), at(300)), time_ns=at(239))  # before its own window
    r = check(sim.truth, renumber(ev), PARAMS)
    assert r.failed == ["G4"], r.render()
    msgs = [(v.message.split(": ", 1)[1], v.truth_seqs) for v in r["G4"].violations]
    destroyed = tuple(s for s, x in enumerate(sim.truth) if x.kind == "container" and x.transition == "destroyed")
    running = tuple(s for s, x in enumerate(sim.truth) if x.kind == "container" and x.transition == "running")
    assert [m for m, _ in msgs] == [
        "container.created (seq 3) has an inverted window_ns",
        "container.running (seq 4) time_ns +0.011000s differs by -1000000 ns from the started_at the runtime "
        "reported (+0.012000s, in a ContainerStatus answer)",
        "container.exited (seq 5) time_ns +0.239000s lies 1.000ms outside its own window [+0.240000s, +0.300000s]",
    ]
    assert msgs[2][1] == destroyed  # a lost container's stop: its evidence is the destroy
    assert msgs[1][1][0] == running[0]


def test_g8_three_sigma_bound():
    from test_check import churn_world

    sim = simulate(churn_world(), poll_ms=400, until_ms=5400, phase_ms=37)
    m = check(sim.truth, sim.events, PARAMS)["G8"].measures
    assert (m["total"], m["missed"]) == (59, 40)
    assert m["allowed_missed"] == pytest.approx(m["expected_missed"] + 3 * m["stddev_missed"])
    assert m["stddev_missed"] > 1  # 3 sigma, not the floor of 2, is the bound here
    assert (round(m["expected_missed"], 3), round(m["stddev_missed"], 3)) == (9.929, 2.206)


def test_g8_population_edges():
    """Counted: created at or after the run start, destroyed by the run end, no outage in its life.
    With every life longer than a poll interval nothing may be missed, except the floor of 2."""
    w = (World().sandbox("sb1", 1)
         .container("pre", 50, 51, 250, 260)  # created before the explicit start (100)
         .container("at_start", 100, 101, 300, 310)
         .container("lost", 120, 121, 400, 410).runtime(380, 395)  # an outage in its life
         .container("x1", 150, 151, 350, 360)
         .container("at_end", 400, 401, 590, 600))
    sim = simulate(w, poll_ms=100, until_ms=600, phase_ms=5)
    params = dataclasses.replace(PARAMS, start_ns=at(100), end_ns=at(600))
    blind = renumber([e for e in sim.events if e.type != "container.created"])
    r = check(sim.truth, blind, params)
    m = r["G8"].measures
    assert (m["total"], m["missed"], m["excluded_outage"], m["allowed_missed"]) == (3, 3, 1, 2.0), r.render()
    assert not r["G8"].ok
    two = renumber([e for e in sim.events if not (e.type == "container.created" and e.container_id == "x1")])
    r = check(sim.truth, two, params)
    assert (r["G8"].measures["missed"], r["G8"].ok) == (1, True)
    r = check(sim.truth, renumber([e for e in sim.events if not (
        e.type == "container.created" and e.container_id in ("x1", "at_start"))]), params)
    assert (r["G8"].measures["missed"], r["G8"].ok) == (2, True)  # exactly the allowed number


def test_g8_excluded_first_does_not_stop_the_count():
    w = (World().sandbox("sb1", 1).container("a_lost", 120, 121, 400, 410).runtime(380, 395)
         .container("b_lost", 130, 131, 390, 405).container("c", 400, 401, 550, 560))
    sim = simulate(w, poll_ms=100, until_ms=800)
    m = check(sim.truth, sim.events, PARAMS)["G8"].measures
    assert (m["total"], m["excluded_outage"]) == (1, 2)


def test_g7_measures_and_skips():
    # a hundred creations, reported 0.0 .. 9.9 ms after the fact: nearest-rank percentiles
    w = World()
    for i in range(100):
        w.container(f"k{i}", 10)
    w.rpc("ListContainers", 0).rpc("ListContainers", 100)
    ev = [Event("container.created", at(10), (at(10), at(10)), at(10) + i * 100_000, container_id=f"k{i}", seq=i + 1)
          for i in range(100)]
    m = check(w.records, ev, PARAMS)["G7"].measures
    assert (m["events_measured"], m["p50_ms"], m["p90_ms"], m["p99_ms"], m["max_ms"]) == (100, 4.9, 8.9, 9.8, 9.9)
    m = check(w.records, ev[:2], PARAMS)["G7"].measures
    assert (m["p50_ms"], m["max_ms"]) == (0.0, 0.1)
    m = check(w.records, ev[:10], PARAMS)["G7"].measures
    assert (m["p90_ms"], m["p99_ms"]) == (0.8, 0.9)
    assert check([], [], PARAMS)["G7"].summary == "no events to measure"


def test_g7_which_events_are_measured():
    w = World().container("c1", 0, 50, 80, 90).rpc("ListContainers", 0).rpc("ListContainers", 100)
    created = Event("container.created", at(0), (at(0), at(0)), at(1), container_id="c1", seq=1)
    ev = [
        created,
        dataclasses.replace(created, seq=2),  # a duplicate: not measured again
        Event("container.running", at(50), (at(50), at(50)), at(50), container_id="c1", seq=3),  # 0 latency
        Event("container.exited", at(80), (at(80), at(80)), at(79), container_id="c1", seq=4),  # early: G5's
        Event("container.destroyed", at(90), (at(90), at(90)), at(101), container_id="c1", seq=5),
    ]
    m = check(w.records, ev, PARAMS)["G7"].measures  # created at the very start_ns: measured
    assert (m["events_measured"], m["via_poll"], m["p50_ms"]) == (3, 3, 1.0)
    m = check(w.records, ev, dataclasses.replace(PARAMS, start_ns=at(1)))["G7"].measures
    assert m["events_measured"] == 2  # created before the run start: not measured, the rest still are


def test_g7_stream_bound_needs_a_stream_certainly_open_in_stream_mode():
    w = World().container("c1", 100, 200, 300, 400)
    w.rpc("ListContainers", 0).rpc("ListContainers", 500).rpc("GetContainerEvents", 100, "OK", end=1000)
    ev = [Event(f"container.{tr}", at(t), (at(t), at(t)), at(t) + 30 * MS, source="stream", container_id="c1",
                seq=i + 1) for i, (tr, t) in enumerate((("created", 100), ("running", 200), ("exited", 300),
                                                        ("destroyed", 400)))]
    stream = dataclasses.replace(PARAMS, mode="stream", stream_latency_ns=10 * MS)
    r = check(w.records, ev, stream)
    # created at the very ns the stream opened: not certainly open, so the poll bound applies to it
    assert (r["G7"].measures["via_stream"], r["G7"].measures["via_poll"]) == (3, 1)
    assert r["G7"].ok  # 30 ms < 60 ms stream bound
    r = check(w.records, ev, PARAMS)  # poll mode: the open stream does not matter
    assert (r["G7"].measures["via_stream"], r["G7"].measures["via_poll"]) == (0, 4)
    slow = [dataclasses.replace(e, observed_ns=e.time_ns + 61 * MS) for e in ev]
    r = check(w.records, slow, stream)
    assert [v.event_seqs for v in r["G7"].violations] == [(2,), (3,), (4,)]


def test_g7_evidence_for_a_lost_container_stop_is_the_destroy():
    w = World().container("c1", 0, 5, destroyed=150).rpc("ListContainers", 0).rpc("ListContainers", 100)
    w.rpc("ListContainers", 200).rpc("ListContainers", 400)
    ev = [Event("container.exited", at(150), (at(100), at(200)), at(380), container_id="c1", seq=1, synthetic=True,
                why="w")]
    r = check(w.records, ev, PARAMS)
    (v,) = r["G7"].violations
    assert [(x.kind, x.transition) for _, x in v.truth] == [("container", "destroyed")]


def test_g1_a_duplicate_does_not_hide_a_later_order_break(good):
    ev = list(good.events)
    ev.insert(find(ev, "container.exited", "c3"), dataclasses.replace(ev[find(ev, "container.created", "c3")]))
    ev.append(dataclasses.replace(ev[find(ev, "container.running", "c3")]))  # running after exited, destroyed
    r = check(good.truth, renumber(ev), PARAMS)
    m = r["G1"].measures
    assert (m["duplicates"], m["out_of_order"]) == (2, 0), r.render()  # the late running is a duplicate too
    ev = list(good.events)
    i = find(ev, "container.exited", "c3")
    ev.insert(i, dataclasses.replace(ev[find(ev, "container.created", "c3")]))  # a duplicate created
    ev.insert(i + 1, dataclasses.replace(ev[i + 1], type="container.destroyed"))  # destroyed before exited
    r = check(good.truth, renumber(ev), PARAMS)
    assert r["G1"].measures["out_of_order"] == 1, r.render()


def test_g2_message_evidence_and_notes(good):
    ev = [e for e in good.events if not (e.container_id == "c1" and (e.observed_ns < at(550)
                                                                      or e.type == "container.destroyed"))]
    r = check(good.truth, renumber(ev), PARAMS)
    (v,) = [v for v in r["G2"].violations if v.message.startswith("container c1#0")]
    assert v.message == ("container c1#0 (visible from +0.100000s, gone at +0.530000s): no container.created, "
                         "container.running, container.exited, container.destroyed")
    lists = [s for s, x in enumerate(good.truth) if x.kind == "rpc" and x.method == "ListContainers"]
    assert v.truth_seqs[-2:] == (lists[1], lists[5])  # the first two answers that made something due
    assert len(v.truth_seqs) == 4 + 2
    late = replaced(good.events, "container.running", "c3", observed_ns=at(600))
    late = [e for e in late if not (e.container_id == "c3" and e.type == "container.created")]
    r = check(good.truth, renumber(late), PARAMS)
    (v,) = r["G2"].violations
    assert v.message == ("container c3 (visible from +0.300000s, gone at +0.340000s): no container.created; "
                         "container.running only at +0.600000s (due by +0.451000s)")
    assert [x.transition for _, x in v.truth if x.kind == "container"] == ["created", "running", "destroyed"]
    assert r["G2"].notes == [] and check(good.truth, good.events, PARAMS)["G2"].notes == []
    bare = [x for x in good.truth if x.kind != "rpc"]
    assert check(bare, good.events, PARAMS)["G2"].notes == [
        "truth has no rpc records: nothing counts as visible, so nothing is due"]


def test_g6_nested_gaps_and_two_outages():
    w = World().sandbox("sb1", 1).container("c1", 10, 12).runtime(250, 380).runtime(620, 790)
    sim = simulate(w, poll_ms=100, until_ms=1200)
    assert run_ok(sim)
    r = check(sim.truth, renumber([e for e in sim.events if e.type != "sensor.gap"]), PARAMS)
    assert r["G6"].measures["gaps_required"] == 2 and len(r["G6"].violations) == 2
    i = find(sim.events, "sensor.gap")
    g = sim.events[i]
    parts = [dataclasses.replace(g, window_ns=(at(a), at(b))) for a, b in ((200, 330), (260, 270), (330, 400))]
    ev = renumber([*sim.events[:i], *parts, *sim.events[i + 1 :]])
    assert check(sim.truth, ev, PARAMS)["G6"].ok


def run_ok(sim):
    return check(sim.truth, sim.events, PARAMS).ok


def test_g6_who_must_say_vanished():
    """c1 is visible before the outage; c2 is created during it and never seen; both go during it."""
    w = (World().sandbox("sb1", 1).container("c1", 10, 12, destroyed=300).container("c2", 260, destroyed=310)
         .runtime(250, 380))
    sim = simulate(w, poll_ms=100, until_ms=800)
    assert run_ok(sim), check(sim.truth, sim.events, PARAMS).render()
    ev = list(sim.events)
    # a forged destroyed must say it too
    j = find(ev, "container.destroyed", "c1")
    ev[j] = dataclasses.replace(ev[j], synthetic=True, why="removed between polls")
    i = find(ev, "container.exited", "c1")
    ev[i] = dataclasses.replace(ev[i], why="exited and removed between polls")
    r = check(sim.truth, ev, PARAMS)
    assert [v.event_seqs for v in r["G6"].violations] == [(ev[i].seq,), (ev[j].seq,)]
    assert r["G6"].measures["vanished_during_outage"] == 1
    # a sensor that named c2 before the outage (a guess) must also say vanished for it
    named = dataclasses.replace(ev[find(ev, "container.created", "c1")], container_id="c2", time_ns=at(260),
                                window_ns=(at(260), at(260)), observed_ns=at(249), seq=0, synthetic=True, why="guess")
    forged = dataclasses.replace(ev[i], container_id="c2", seq=0, time_ns=at(310), window_ns=(at(200), at(400)))
    r = check(sim.truth, renumber([named, *sim.events, forged]), PARAMS)
    assert r["G6"].measures["vanished_during_outage"] == 2
    assert [v.message.split(" vanished")[0] for v in r["G6"].violations] == ["container c2"]
