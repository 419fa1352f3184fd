"""Boundaries of the guarantee checker: the exact instants where a verdict flips.

Each test builds a correct history with the simulated perfect sensor, then moves one event (or
window edge) to the last instant that is still correct and to the first that is not: the first
must pass, the second must fail with the guarantee named. These pin the comparisons in
``fakecri.check`` (mutation testing found them unpinned: docs/guarantees.md, "Mutation scores").
"""

from __future__ import annotations

import dataclasses

from checkworld import MS, VANISHED, World, at, find, renumber, simulate

from fakecri.check import CheckParams, Report, check
from fakecri.truth import ContainerTransition
from sensor.events import Event

P = 100 * MS
PARAMS = CheckParams(poll_interval_ns=P)
SLACK = P + PARAMS.latency_allowance_ns


def run(sim, events=None, params=PARAMS) -> Report:
    return check(sim.truth, sim.events if events is None else events, params)


def moved(events, i, **changes):
    out = list(events)
    out[i] = dataclasses.replace(out[i], **changes)
    return out


# -- G2: late events -----------------------------------------------------------------------------


def _predates_sensor():
    """c1 exists before the sensor's first list (at 50 ms): G7 does not measure it, only G2 can
    judge how late its events come."""
    w = World().sandbox("sb1", 1).container("c1", 10, 12)
    return simulate(w, poll_ms=100, phase_ms=50, until_ms=600)


def test_g2_created_exactly_at_deadline_is_on_time_one_ns_later_is_late():
    sim = _predates_sensor()
    assert run(sim).ok
    i = find(sim.events, "container.created", "c1")
    deadline = at(51) + SLACK  # first list answer that showed it was sent at 51 ms
    assert run(sim, moved(sim.events, i, observed_ns=deadline)).ok
    report = run(sim, moved(sim.events, i, observed_ns=deadline + 1))
    assert report.failed == ["G2"], report.render()
    (v,) = report["G2"].violations
    assert "container.created only at" in v.message and "due by" in v.message
    assert v.events[0].type == "container.created"


def test_g2_late_with_grace():
    sim = _predates_sensor()
    i = find(sim.events, "sandbox.ready", "sb1")
    params = dataclasses.replace(PARAMS, completeness_grace_ns=5 * MS)
    deadline = at(51) + SLACK + 5 * MS
    assert run(sim, moved(sim.events, i, observed_ns=deadline), params).ok
    report = run(sim, moved(sim.events, i, observed_ns=deadline + 1), params)
    assert report.failed == ["G2"], report.render()
    assert "sandbox.ready only at" in report["G2"].violations[0].message


def test_g2_late_and_missing_in_one_violation():
    """Late running and no created: one violation for the incarnation names both."""
    sim = _predates_sensor()
    ev = list(sim.events)
    i = find(ev, "container.running", "c1")
    ev = moved(ev, i, observed_ns=at(400))
    del ev[find(ev, "container.created", "c1")]
    report = run(sim, renumber(ev))
    assert "G2" in report.failed
    (v,) = report["G2"].violations
    assert "no container.created" in v.message and "container.running only at" in v.message


# -- G4: window shape ----------------------------------------------------------------------------


def test_g4_inverted_window_is_flagged_even_around_the_true_time():
    """window (hi, lo): both ends straddle the true time, so only the inverted-window rule can see it."""
    sim = _predates_sensor()
    i = find(sim.events, "container.running", "c1")
    ev = sim.events[i]
    t = at(12)
    assert ev.window_ns == (t, t)
    assert run(sim, moved(sim.events, i, window_ns=(t, t))).ok  # a point window is not inverted
    report = run(sim, moved(sim.events, i, window_ns=(t + 1, t - 1)))
    assert report.failed == ["G4"], report.render()
    (v,) = report["G4"].violations
    assert v.guarantee == "G4"
    assert "inverted window_ns" in v.message and v.events == (moved(sim.events, i, window_ns=(t + 1, t - 1))[i],)
    assert report["G4"].measures["windows_checked"] == len([e for e in sim.events if e.type != "sensor.connected"])


# -- G6: outage edges ----------------------------------------------------------------------------

DOWN, UP = 650, 790  # the runtime is down [DOWN, UP]; polls every 100 ms, the first OK one after is at 800


def _outage_world(c2_destroyed: float | None = None) -> World:
    w = World().sandbox("sb1", 5).container("c1", 10, 12).runtime(DOWN, UP)
    if c2_destroyed is not None:
        w.container("c2", 20, 22, destroyed=c2_destroyed)  # lost without an exit
    return w


def _outage_sim(c2_destroyed: float | None = None):
    sim = simulate(_outage_world(c2_destroyed), poll_ms=100, until_ms=1200)
    assert run(sim).ok, run(sim).render()
    return sim


def test_g6_gap_exactly_covering_the_outage_passes_one_ns_short_fails():
    sim = _outage_sim()
    i = find(sim.events, "sensor.gap")
    assert run(sim, moved(sim.events, i, window_ns=(at(DOWN), at(UP)))).ok
    for short in ((at(DOWN) + 1, at(UP)), (at(DOWN), at(UP) - 1)):
        report = run(sim, moved(sim.events, i, window_ns=short))
        assert report.failed == ["G6"], (short, report.render())
        assert "no sensor.gap covers the outage" in report["G6"].violations[0].message


def test_g6_touching_gaps_cover_a_hole_does_not():
    sim = _outage_sim()
    i = find(sim.events, "sensor.gap")
    mid = at(700)
    two = [*sim.events[: i + 1], dataclasses.replace(sim.events[i]), *sim.events[i + 1 :]]
    touching = moved(moved(two, i, window_ns=(at(DOWN), mid)), i + 1, window_ns=(mid, at(UP)))
    assert run(sim, renumber(touching)).ok
    hole = moved(touching, i + 1, window_ns=(mid + 1, at(UP)))
    report = run(sim, renumber(hole))
    assert report.failed == ["G6"], report.render()
    # given out of order, the union still counts
    swapped = [*touching[:i], touching[i + 1], touching[i], *touching[i + 2 :]]
    assert run(sim, renumber(swapped)).ok


def test_g6_gap_exactly_at_its_deadline_is_on_time_one_ns_later_is_late():
    sim = _outage_sim()
    i = find(sim.events, "sensor.gap")
    deadline = at(801) + SLACK  # the first OK list after the outage was sent at 801 ms
    assert run(sim, moved(sim.events, i, observed_ns=deadline)).ok
    report = run(sim, moved(sim.events, i, observed_ns=deadline + 1))
    assert report.failed == ["G6"], report.render()
    assert "came only at" in report["G6"].violations[0].message
    grace = dataclasses.replace(PARAMS, completeness_grace_ns=1)
    assert run(sim, moved(sim.events, i, observed_ns=deadline + 1), grace).ok


def test_g6_vanished_at_the_very_instants_the_outage_starts_and_ends():
    """Destroyed exactly when the runtime went down, or exactly when it came back: both are during
    the outage, so the forged exit must say so. One ns before the outage it is an ordinary exit."""
    for when in (DOWN, UP):
        sim = _outage_sim(when)
        i = find(sim.events, "container.exited", "c2")
        assert sim.events[i].why == VANISHED and sim.events[i].synthetic
        report = run(sim, moved(sim.events, i, why="exited and removed between polls"))
        assert report.failed == ["G6"], (when, report.render())
        assert "vanished during the outage" in report["G6"].violations[0].message
        assert report["G6"].measures["vanished_during_outage"] == 1
    sim = _outage_sim(DOWN - 1e-6)  # one ns before
    i = find(sim.events, "container.exited", "c2")
    report = run(sim, moved(sim.events, i, why="exited and removed between polls"))
    assert report.ok, report.render()
    assert report["G6"].measures["vanished_during_outage"] == 0


def test_g6_reuse_exactly_at_the_first_list_after_the_outage_may_say_reused():
    """c2's ID is reused at the very instant of the first OK list after the outage (800 ms)."""
    for reuse_at, excused in ((800, True), (800 + 1e-6, False)):
        w = _outage_world(700).container("c2", reuse_at, reuse_at + 1)
        sim = simulate(w, poll_ms=100, until_ms=1200, tie_before=False)
        i = find(sim.events, "container.exited", "c2")
        report = run(sim, moved(sim.events, i, why="container ID reused"))
        assert report.ok is excused, (reuse_at, report.render())


def test_g6_duplicate_at_the_outage_edges():
    """A repeated event counts as "after reconnect" (G6) when the outage lies between the two
    copies, edges included; one ns outside, it is a plain duplicate (G1)."""
    sim = _outage_sim()
    ev = list(sim.events)
    i = find(ev, "container.running", "c1")
    again = ev[i]
    cases = [
        # (first copy observed, second copy observed, guarantee)
        (again.observed_ns, at(DOWN), "G6"),
        (again.observed_ns, at(DOWN) - 1, "G1"),
        (at(UP), at(900), "G6"),
        (at(UP) + 1, at(900), "G1"),
    ]
    for first, second, want in cases:
        ev2 = moved(ev, i, observed_ns=first)
        ev2.append(dataclasses.replace(again, observed_ns=second))
        report = run(sim, renumber(ev2))
        assert want in report.failed, (first, second, report.render())
        other = "G1" if want == "G6" else "G6"
        assert other not in report.failed, (first, second, report.render())


# -- G5: what an early event is told about the state it was in ---------------------------------


def test_g5_names_the_state_at_the_early_instant():
    sim = _predates_sensor()  # c1 created at 10 ms, running at 12 ms
    i = find(sim.events, "container.running", "c1")
    j = find(sim.events, "container.created", "c1")
    table = [
        (i, at(11), "(seq 4) at -0.039000s, but that only happened at -0.038000s;", "it was created then"),
        (i, at(10), "", "it was changing state at that very instant then"),
        (j, at(9), "", "it was not yet created then"),
        (i, at(12) - 1, "", "it was created then"),
    ]
    for k, observed, part, state in table:
        report = run(sim, moved(sim.events, k, observed_ns=observed))
        assert "G5" in report.failed, report.render()
        (v,) = report["G5"].violations
        assert v.message.endswith(state) and part in v.message, v.message
        assert report["G5"].measures == {"phantom_ids": 0, "phantom_events": 0, "premature_or_unreal": 1}
    assert "G5" not in run(sim, moved(sim.events, i, observed_ns=at(12))).failed  # at the very instant: not early


def test_g6_an_instant_outage_still_needs_a_gap():
    """Under a virtual clock a failed list can be answered in 0 ns: the outage is the single instant
    [t, t]. The sensor was blind then all the same, so a gap must contain that instant."""
    w = World().sandbox("sb1", 1).container("c1", 10, 12)
    sim = simulate(w, poll_ms=100, until_ms=600, fail_polls={2}, rpc_ms=0)
    assert run(sim).ok
    assert [(r.time_ns, r.end_ns) for r in sim.truth if r.kind == "rpc" and r.code != "OK"] == [(at(200), at(200))]
    report = run(sim, renumber([e for e in sim.events if e.type != "sensor.gap"]))
    assert report.failed == ["G6"], report.render()
    assert "no sensor.gap covers the outage [+0.200000s, +0.200000s] (1 failed list call(s))" in (
        report["G6"].violations[0].message)
    i = find(sim.events, "sensor.gap")
    for window, ok in (((at(200), at(200)), True), ((at(100), at(200)), True), ((at(200) + 1, at(300)), False),
                       ((at(100), at(200) - 1), False)):
        assert run(sim, moved(sim.events, i, window_ns=window)).ok is ok, window


def test_g6_message_names_both_causes():
    w = World().sandbox("sb1", 1).container("c1", 10, 12).runtime(250, 330)
    sim = simulate(w, poll_ms=100, until_ms=800, fail_polls={2, 4})
    assert run(sim).ok
    report = run(sim, renumber([e for e in sim.events if e.type != "sensor.gap"]))
    (v,) = report["G6"].violations
    assert v.message == (
        "no sensor.gap covers the outage [+0.200000s, +0.401000s] (runtime down + 2 failed list call(s)); the sensor "
        "polled successfully again at +0.500000s"
    )


# -- G7: deadlines at the instant ---------------------------------------------------------------


def _hand_world(*lists, failed=()):
    """c1 created at 10 ms (no sandbox in truth); OK ListContainers at each of ``lists`` (ms, end
    +5 ms when given as (t, end)), failed ones at ``failed``."""
    w = World().container("c1", 10)
    for t in lists:
        t, end = t if isinstance(t, tuple) else (t, t + 1)
        w.rpc("ListContainers", t, end=end)
    for t in failed:
        w.rpc("ListContainers", t, "UNAVAILABLE")
    return sorted(w.records, key=lambda r: r.time_ns)


def _created(observed, **kw):
    return Event("container.created", at(10), (at(10), at(10)), observed, container_id="c1", seq=1, **kw)


def test_g7_list_taken_exactly_at_the_bound_adds_its_rpc_time():
    truth = _hand_world(0, (160, 165))  # 10 + 100 + 50 = 160: the next list is taken at the very bound
    assert "G7" not in check(truth, [_created(at(165))], PARAMS).failed
    report = check(truth, [_created(at(165) + 1)], PARAMS)
    assert report.failed == ["G7"], report.render()
    assert "poll bound was 155.000ms" in report["G7"].violations[0].message


def test_g7_after_an_outage_the_bound_runs_from_the_first_list_after_it():
    truth = _hand_world(0, (300, 302), failed=(100,))
    gap = Event("sensor.gap", at(1), (at(1), at(300)), at(302), seq=2)
    deadline = at(302) + SLACK
    report = check(truth, [_created(deadline), gap], PARAMS)
    assert "G7" not in report.failed, report.render()
    assert report["G7"].measures["events_measured"] == 1
    report = check(truth, [_created(deadline + 1), gap], PARAMS)
    assert "G7" in report.failed, report.render()
    assert "poll bound was 442.000ms" in report["G7"].violations[0].message


def test_g7_not_judged_when_no_list_ever_succeeds_after_the_outage():
    truth = _hand_world(0, failed=(100, 200))
    report = check(truth, [_created(at(5_000))], PARAMS)
    assert "G7" not in report.failed, report.render()
    assert report["G7"].measures["events_measured"] == 1


def test_g7_percentiles_are_nearest_rank():
    from fakecri.check.guarantees import _percentile

    assert [_percentile([10, 20, 30, 40], p) for p in (1, 25, 26, 50, 51, 75, 90, 99, 100)] == [
        10, 10, 20, 20, 30, 30, 40, 40, 40]
    assert [_percentile(list(range(101)), p) for p in (50, 99, 100)] == [50, 99, 100]
    assert _percentile([7], 50) == 7


# -- G2: the list that shows a destroy -----------------------------------------------------------


def _ends(observed, destroyed_lo=100):
    """c1 seen at 102 ms, then its forged exit and its destroy (gone by the list at 300 ms), both
    observed at ``observed``; the destroy's window starts at ``destroyed_lo`` ms."""
    return [
        _created(at(102)),
        Event("container.exited", at(200), (at(100), at(300)), observed, container_id="c1", seq=2,
              synthetic=True, why="exited and removed between polls"),
        Event("container.destroyed", at(200), (at(destroyed_lo), at(300)), observed, container_id="c1", seq=3),
    ]


def _end_due_by(truth, deadline, destroyed_lo=100) -> Report:
    """The end is on time at ``deadline`` and late one ns after it: the late report."""
    assert "G2" not in check(truth, _ends(deadline, destroyed_lo), PARAMS).failed
    report = check(truth, _ends(deadline + 1, destroyed_lo), PARAMS)
    assert "G2" in report.failed, report.render()
    return report


def test_g2_a_list_taken_at_the_destroy_instant_does_not_make_the_end_due():
    """A list taken at the very ns of the destroy may still show the container: the end becomes
    due only with the next list (at 300 ms, sent 301 ms)."""
    w = World().container("c1", 10, destroyed=200)
    for t in (0, 100, 200, 300):
        w.rpc("ListContainers", t)
    report = _end_due_by(sorted(w.records, key=lambda r: r.time_ns), at(301) + SLACK)
    assert "only at" in report["G2"].violations[0].message


def test_g2_a_destroy_applied_late_is_due_from_the_list_after_it_showed():
    """A removal the timeline applied late happened at 200 ms but answers showed it only from
    250 ms (``shown_ns``): the list at 230 ms still showed the container, so the end is due only
    with the list at 300 ms -- and is late one ns after that list's deadline."""
    w = World().container("c1", 10)
    w.records.append(ContainerTransition("c1", "destroyed", at(200), "sb1", shown_ns=at(250)))
    for t in (0, 100, 230, 300):
        w.rpc("ListContainers", t)
    _end_due_by(sorted(w.records, key=lambda r: r.time_ns), at(301) + SLACK, destroyed_lo=230)


# -- G3: evidence ------------------------------------------------------------------------------


def test_g3_evidence_is_the_claimed_transition_and_the_next():
    sim = simulate(World().sandbox("sb1", 1).container("c3", 210, 215, 330, 340), poll_ms=100, until_ms=600)
    assert run(sim).ok
    for type_, want in (
        ("container.exited", ["exited", "destroyed"]),
        ("container.created", ["created", "running"]),
    ):
        i = find(sim.events, type_, "c3")
        report = run(sim, moved(sim.events, i, synthetic=False, why=None))
        assert report.failed == ["G3"], report.render()
        (v,) = report["G3"].violations
        assert [r.transition for _, r in v.truth] == want, type_
    # a destroyed claimed seen before any list showed it gone: its evidence is the destroy alone
    i = find(sim.events, "container.destroyed", "c3")
    report = run(sim, moved(sim.events, i, observed_ns=at(341)))
    (v,) = report["G3"].violations
    assert [r.transition for _, r in v.truth] == ["destroyed"]


def test_g4_a_late_shown_destroy_may_be_placed_up_to_when_answers_showed_it():
    """No answer dates a destroy: applied late (at 200 ms, shown from 250 ms), a list at 230 ms
    still showed the container, so a window from 230 ms is right; one that starts after 250 ms is
    not. An exit's window stays strict: ``finished_at`` tells the sensor the true time."""
    w = World().container("c1", 10, 12)
    w.records.append(ContainerTransition("c1", "destroyed", at(200), "sb1", shown_ns=at(250)))
    truth = sorted(w.records, key=lambda r: r.time_ns)

    def destroyed(lo):
        return [Event("container.destroyed", at(lo + 5), (at(lo), at(300)), at(301), container_id="c1", seq=1)]

    def g4(events):
        return check(truth, events, PARAMS)["G4"]

    assert g4(destroyed(230)).ok and g4(destroyed(250)).ok
    bad = g4(destroyed(251))
    assert not bad.ok and "misses the true time" in bad.violations[0].message
    lagged_exit = World().container("c1", 10, 12)
    lagged_exit.records.append(ContainerTransition("c1", "exited", at(200), "sb1", exit_code=0, shown_ns=at(250)))
    exit_truth = sorted(lagged_exit.records, key=lambda r: r.time_ns)
    ev = Event("container.exited", at(240), (at(230), at(300)), at(301), container_id="c1", seq=1)
    assert not check(exit_truth, [ev], PARAMS)["G4"].ok


def test_g2_an_obligation_due_exactly_at_the_run_end_is_judged():
    sim = _predates_sensor()
    ev = renumber([e for e in sim.events if e.type != "container.created"])
    deadline = at(51) + SLACK
    at_end = check(sim.truth, [e for e in ev if e.observed_ns <= deadline],
                   dataclasses.replace(PARAMS, end_ns=deadline))
    assert "G2" in at_end.failed, at_end.render()
    before = check(sim.truth, [e for e in ev if e.observed_ns < deadline],
                   dataclasses.replace(PARAMS, end_ns=deadline - 1))
    assert "G2" not in before.failed, before.render()


# -- G5: the run's end and the evidence ----------------------------------------------------------


def test_g5_unreal_event_judged_at_the_run_end_not_after():
    sim = _predates_sensor()  # c1 never exits
    running = sim.events[find(sim.events, "container.running", "c1")]
    last = max(r.end_ns if r.kind == "rpc" else r.time_ns for r in sim.truth)
    unreal = dataclasses.replace(running, type="container.exited", seq=90, observed_ns=last + 5)
    r = run(sim, [*sim.events, unreal])  # the event itself ends the run: still judged
    assert r.end_ns == last + 5 and r.failed == ["G5"], r.render()
    early = dataclasses.replace(running, seq=91, observed_ns=at(11))
    params = dataclasses.replace(PARAMS, end_ns=last + 4)
    r = run(sim, [*sim.events, unreal, early], params)
    (v,) = r["G5"].violations  # the unreal one is after the run; the early one after it is still judged
    assert v.event_seqs == (91,)


def test_g5_evidence_shows_only_the_last_failed_answer():
    w = World().sandbox("sb1", 1).container("c1", 10, 12)
    sim = simulate(w, poll_ms=100, until_ms=600, fail_polls={2, 3})
    failed = [i for i, r in enumerate(sim.truth) if r.kind == "rpc" and r.code != "OK"]
    assert len(failed) == 2
    running = sim.events[find(sim.events, "container.running", "c1")]
    r = run(sim, [*sim.events, dataclasses.replace(running, type="container.exited", seq=90, observed_ns=at(350))])
    (v,) = r["G5"].violations
    assert [s for s in v.truth_seqs if s in failed] == [failed[1]]


def test_g5_event_without_an_id():
    sim = _predates_sensor()
    running = sim.events[find(sim.events, "container.running", "c1")]
    r = run(sim, [*sim.events, dataclasses.replace(running, container_id=None, seq=90)])
    assert r["G5"].violations[0].message == (
        "container (no id) never existed in truth, yet 1 event(s) name it (first: container.running)")


# -- G6: which outages need a gap ---------------------------------------------------------------


def _no_gaps(events):
    return renumber([e for e in events if e.type != "sensor.gap"])


def test_g6_runtime_restart_needs_a_gap_from_one_poll_interval():
    """No call failed (the sim records nothing while the runtime is down): a restart of exactly one
    poll interval needs a gap, one 1 ns shorter does not."""
    for up, needed in ((350, True), (350 - 1e-6, False)):
        w = World().sandbox("sb1", 1).container("c1", 10, 12).runtime(250, up)
        sim = simulate(w, poll_ms=100, until_ms=800, phase_ms=60)
        r = run(sim, _no_gaps(sim.events))
        assert r["G6"].measures["gaps_required"] == int(needed), r.render()
        assert ("G6" in r.failed) is needed, r.render()


def test_g6_short_blips_nobody_noticed_and_later_outages():
    """A runtime restart shorter than a poll interval that no call hit needs no gap; a later real
    outage still does (the first one must not stop the search)."""
    w = World().sandbox("sb1", 1).container("c1", 10, 12).runtime(120, 150).runtime(420, 560)
    sim = simulate(w, poll_ms=100, until_ms=900)
    r = run(sim, _no_gaps(sim.events))
    assert r["G6"].measures["outages"] == 2 and r["G6"].measures["gaps_required"] == 1
    (v,) = r["G6"].violations
    assert "no sensor.gap covers the outage [+0.420000s, +0.560000s] (runtime down)" in v.message


def test_g6_no_view_yet_then_a_real_outage():
    truth = _hand_world(0, 300, 500, 1000, failed=(400,))
    truth = sorted([*truth, *World().rpc("ListContainers", -100, "UNAVAILABLE").records], key=lambda r: r.time_ns)
    params = dataclasses.replace(PARAMS, start_ns=at(-200))
    r = check(truth, [_created(at(302))], params)
    assert r["G6"].measures["outages"] == 2 and r["G6"].measures["gaps_required"] == 1, r.render()
    assert "[+0.600000s, +0.601000s]" in r["G6"].violations[0].message


def test_g6_view_means_an_earlier_ok_list_and_the_run_start():
    # an outage between the first and the second OK list: the view from the first is lost
    truth = _hand_world(0, 200, 1000, failed=(100,))
    r = check(truth, [_created(at(202))], PARAMS)
    assert r["G6"].measures["gaps_required"] == 1 and "G6" in r.failed
    # a failure at the very ns of the first OK list: no view before it
    w = World().container("c1", 10).rpc("ListContainers", 100).rpc("ListPodSandbox", 100, "UNAVAILABLE")
    w.rpc("ListContainers", 300).rpc("ListContainers", 1000)
    r = check(w.records, [_created(at(101))], PARAMS)
    assert r["G6"].measures["gaps_required"] == 0, r.render()
    # an outage that begins exactly at an explicit run start, with a view before it: needs a gap
    truth = _hand_world(0, 200, 1000, failed=(100,))
    r = check(truth, [_created(at(202))], dataclasses.replace(PARAMS, start_ns=at(100)))
    assert r["G6"].measures["gaps_required"] == 1
    # ... one ns later than the outage began: not in the judged run
    r = check(truth, [_created(at(202))], dataclasses.replace(PARAMS, start_ns=at(100) + 1))
    assert r["G6"].measures["gaps_required"] == 0


def test_g6_gap_due_exactly_at_the_run_end():
    truth = _hand_world(0, 200, 1000, failed=(100,))
    deadline = at(201) + SLACK
    r = check(truth, [_created(at(202))], dataclasses.replace(PARAMS, end_ns=deadline))
    assert r["G6"].measures["gaps_required"] == 1
    r = check(truth, [_created(at(202))], dataclasses.replace(PARAMS, end_ns=deadline - 1))
    assert r["G6"].measures["gaps_required"] == 0


def test_g6_gaps_elsewhere_do_not_help_nor_hurt():
    sim = _outage_sim()
    i = find(sim.events, "sensor.gap")
    gap = sim.events[i]
    early = dataclasses.replace(gap, window_ns=(at(100), at(200)), seq=0)  # a gap for no outage, before it
    ev = renumber([*sim.events[:i], early, *sim.events[i:]])
    assert run(sim, ev).ok, run(sim, ev).render()
    # three partial gaps that leave holes: the evidence names the first two
    parts = [dataclasses.replace(gap, window_ns=(at(a), at(b))) for a, b in ((DOWN, 700), (710, 750), (760, UP))]
    ev = renumber([*sim.events[:i], *parts, *sim.events[i + 1 :]])
    r = run(sim, ev)
    (v,) = r["G6"].violations
    assert [e.window_ns for e in v.events] == [(at(DOWN), at(700)), (at(710), at(750))]


def test_g6_instant_outage_gap_starting_at_that_instant():
    w = World().sandbox("sb1", 1).container("c1", 10, 12)
    sim = simulate(w, poll_ms=100, until_ms=600, fail_polls={2}, rpc_ms=0)
    i = find(sim.events, "sensor.gap")
    assert run(sim, moved(sim.events, i, window_ns=(at(200), at(300)))).ok
