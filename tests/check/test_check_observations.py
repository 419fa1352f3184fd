"""What the checker takes the sensor to have seen, on one small hand-written truth.

Every expected ``Sighting`` / outage / incarnation below is written out by hand from the
definitions in docs/guarantees.md (sections 2.1-2.3), not computed with the checker.
"""

from __future__ import annotations

import pytest

from fakecri.check.incarnations import ABSENT, CONTAINER, FOREVER, SANDBOX, Incarnation, short_id, split
from fakecri.check.observations import Outage, RpcLog, Sighting
from fakecri.truth import ContainerTransition, FaultWindow, RpcServed, RuntimeTransition, SandboxTransition

LC, ST, PS = "ListContainers", "ContainerStatus", "PodSandboxStatus"

TRUTH = [
    SandboxTransition("sb1", "ready", 10),  # 0
    ContainerTransition("c1", "created", 20, "sb1"),  # 1
    ContainerTransition("c1", "running", 30, "sb1"),  # 2
    RpcServed(LC, "v1", 30, 31, "OK"),  # 3  taken at the very ns c1 started: a tie
    RpcServed(LC, "v1", 50, 52, "OK"),  # 4
    RpcServed(ST, "v1", 60, 61, "OK", "c1"),  # 5
    ContainerTransition("c1", "exited", 70, "sb1"),  # 6
    RpcServed(LC, "v1", 80, 81, "OK"),  # 7
    ContainerTransition("c1", "destroyed", 90, "sb1"),  # 8
    RpcServed(ST, "v1", 95, 96, "NOT_FOUND", "c1"),  # 9
    RpcServed(LC, "v1", 100, 101, "UNAVAILABLE"),  # 10
    RpcServed(LC, "v1", 120, 121, "OK"),  # 11
    RpcServed("GetContainerEvents", "v1", 130, 200, "UNAVAILABLE"),  # 12 a stream open (130, 200)
    ContainerTransition("c2", "created", 140, "sb1"),  # 13
    RpcServed("GetContainerEvents", "v1", 200, 260, "OK"),  # 14 the next stream, touching the first
    ContainerTransition("c2", "running", 200, "sb1"),  # 15 at the instant one stream ends, the next opens
    RpcServed(ST, "v1", 210, 212, "OK", "c2"),  # 16
    FaultWindow("zero_timestamps", "start", 300),  # 17
    FaultWindow("zero_timestamps", "stop", 310),  # 18
    FaultWindow("other", "start", 320),  # 19
    FaultWindow("future_timestamps", "start", 400),  # 20 never stopped
    RpcServed("GetContainerEvents", "v1", 500, 900, "UNIMPLEMENTED"),  # 21 never open
    RpcServed("Version", "v1", 510, 511, "UNAVAILABLE"),  # 22 a lone health check
    RpcServed(PS, "v1", 520, 521, "OK", "sb1"),  # 23
]
END = 1000


def ref(i):
    return (i, TRUTH[i])


@pytest.fixture(scope="module")
def world():
    refs = list(enumerate(TRUTH))
    cs, ss = split(refs, CONTAINER), split(refs, SANDBOX)
    return RpcLog(refs, END), cs.by_id["c1"][0], cs.by_id["c2"][0], ss.by_id["sb1"][0]


def test_incarnation_states(world):
    _, c1, c2, sb1 = world
    assert c1.times == {"created": 20, "running": 30, "exited": 70, "destroyed": 90}
    assert (c1.created_ns, c1.gone_ns, c1.end_ns) == (20, 90, 90)
    assert (c2.gone_ns, c2.end_ns) == (None, FOREVER)
    assert c1.state_interval("running") == (30, 70)
    assert c1.state_interval("destroyed") == (90, FOREVER)
    assert c2.state_interval("running") == (200, FOREVER)
    assert c2.state_interval("exited") is None
    table = {19: ABSENT, 20: None, 25: "created", 30: None, 31: "running", 90: None, 91: "destroyed"}
    for t, certain in table.items():
        assert c1.certain_state(t) == certain, t
    assert c1.effective("exited") == 70 and c2.effective("exited") is None and sb1.effective("notready") is None
    assert [r[0] for r in c1.truth("exited", "created", "exited", "paused")] == [6, 1]
    assert (c1.label, sb1.label) == ("container c1", "sandbox sb1")


def test_visibility(world):
    log, c1, c2, sb1 = world
    # certain: strictly between created and destroyed; the tie with "running" does not matter here
    assert log.first_visible(c1) == Sighting(30, 31, "list", ref(3))
    # c2: created while a stream was strictly open; lists after it: 11 is before it
    assert log.first_visible(c2) == Sighting(140, 140, "stream", ref(12))
    # sandboxes: no stream; no OK ListPodSandbox at all, but a status answer
    assert log.first_visible(sb1) == Sighting(520, 521, "status", ref(23))


def test_certain_states(world):
    log, c1, c2, _ = world
    assert log.first_certain_in(c1, "created") is None  # the only answer in [20, 30] is the tie at 30
    assert log.first_certain_in(c1, "running") == Sighting(50, 52, "list", ref(4))
    assert log.first_certain_in(c1, "exited") == Sighting(80, 81, "list", ref(7))
    assert log.first_certain_in(c1, "destroyed") == Sighting(120, 121, "list", ref(11))  # any state: gone too
    # c2 started at the instant one stream ended and the next opened: not certainly open
    assert log.first_certain_in(c2, "running") == Sighting(210, 212, "status", ref(16))
    assert log.first_certain_in(c2, "created") == Sighting(140, 140, "stream", ref(12))


def test_possible_sightings(world):
    log, c1, c2, sb1 = world
    assert log.seen(c1, "created") == Sighting(30, 31, "list", ref(3))  # the tie counts here
    assert log.seen(c1, "running") == Sighting(30, 31, "list", ref(3))
    assert log.seen(c1, "exited") == Sighting(80, 81, "list", ref(7))
    # gone: the NOT_FOUND status at 95 comes before the next OK list (120)
    assert log.seen(c1, "destroyed") == Sighting(95, 96, "status", ref(9))
    assert log.seen(c2, "running") == Sighting(200, 200, "stream", ref(12))  # touching streams: possibly open
    assert log.seen(c2, "exited") is None
    assert log.seen(sb1, "ready") == Sighting(520, 521, "status", ref(23))


def test_seen_gone_by_list_taken_at_the_destroy_instant():
    recs = [
        ContainerTransition("c", "created", 0, "s"),
        ContainerTransition("c", "destroyed", 10, "s"),
        RpcServed(LC, "v1", 10, 11, "OK"),
        RpcServed(ST, "v1", 5, 6, "NOT_FOUND", "c"),  # before the destroy: not a gone sighting
        RpcServed(ST, "v1", 10, 12, "NOT_FOUND", "c"),
    ]
    refs = list(enumerate(recs))
    log = RpcLog(refs, 100)
    c = split(refs, CONTAINER).by_id["c"][0]
    assert log.seen(c, "destroyed") == Sighting(10, 11, "list", refs[2])
    log2 = RpcLog([r for r in refs if r[0] != 2], 100)
    assert log2.seen(c, "destroyed") == Sighting(10, 12, "status", refs[4])


def test_reported_times(world):
    log, c1, c2, sb1 = world
    assert log.first_report(c1, "created", 31) == Sighting(30, 31, "list", ref(3))
    assert log.first_report(c1, "created", 30) is None  # not sent yet
    assert log.first_report(c1, "running", 61) == Sighting(60, 61, "status", ref(5))  # lists do not carry started_at
    assert log.first_report(c1, "running", 60) is None
    assert log.first_report(c1, "exited", 10**9) is None  # no status answer while exited
    assert log.first_report(c1, "destroyed", 10**9) is None
    assert log.first_report(c2, "running", 212) == Sighting(210, 212, "status", ref(16))
    assert log.first_report(c2, "running", 211) is None
    assert log.first_report(sb1, "ready", 521) == Sighting(520, 521, "status", ref(23))
    assert log.first_report(sb1, "notready", 10**9) is None


def test_streams(world):
    log = world[0]
    table = [  # t, certainly open, possibly open
        (129, None, None),
        (130, None, ref(12)),
        (131, ref(12), ref(12)),
        (199, ref(12), ref(12)),
        (200, None, ref(12)),  # the first ends, the next begins: possibly open, not certainly
        (201, ref(14), ref(12)),  # closed spans merge when touching: the span keeps its first stream
        (260, None, ref(12)),
        (261, None, None),
        (600, None, None),  # UNIMPLEMENTED: never open
    ]
    for t, certain, possible in table:
        assert (log.stream_open(t, certain=True), log.stream_open(t, certain=False)) == (certain, possible), t


def test_lists_failures_faults(world):
    log = world[0]
    assert [log.listed_at(LC, t) for t in (29, 30, 49, 50, 99, 10**9)] == [None, 30, 30, 50, 80, 120]
    assert log.listed_at("ListPodSandbox", 10**9) is None
    assert log.failed_between(96, 96) == [ref(9)]
    assert log.failed_between(95, 95) == []
    assert log.failed_between(97, 101) == [ref(10)]
    assert log.failed_between(101, 200) == [ref(10), ref(12)]
    assert log.failed_between(202, 1000) == [ref(22), ref(21)]  # by when they were sent
    assert log.count == 13
    assert [(f.name, f.lo, f.hi) for f in log.faults] == [
        ("zero_timestamps", 300, 310), ("other", 320, END), ("future_timestamps", 400, END)]
    assert log.timestamp_fault(290, 299) is None
    assert log.timestamp_fault(290, 300).name == "zero_timestamps"
    assert log.timestamp_fault(310, 311).name == "zero_timestamps"
    assert log.timestamp_fault(311, 399) is None  # "other" is not a timestamp fault
    assert log.timestamp_fault(400, 400).name == "future_timestamps"


def test_outages(world):
    log = world[0]
    # the failed list at 100 (sent 101); the lone failed Version at 510 is a health check, not an outage
    assert [(o.lo, o.hi, o.runtime, o.failed_rpcs) for o in log.outages] == [(100, 101, False, True)]
    assert log.outages[0].evidence() == (ref(10),)
    o = log.outages[0]
    assert [log.outage_overlapping(a, b) for a, b in ((90, 99), (90, 100), (101, 110), (102, 110))] == [
        None, o, o, None]


def test_outage_building():
    recs = [
        RpcServed(LC, "v1", 0, 1, "OK"),  # 0
        RuntimeTransition("down", 10),  # 1
        RpcServed("Version", "v1", 15, 16, "UNAVAILABLE"),  # 2 reconnect refused while down: part of it
        RuntimeTransition("up", 20),  # 3
        RpcServed("Version", "v1", 25, 27, "UNAVAILABLE"),  # 4 still refused after up, no OK list yet
        RpcServed(LC, "v1", 30, 31, "OK"),  # 5
        RpcServed(LC, "v1", 40, 45, "UNAVAILABLE"),  # 6
        RpcServed("ListPodSandbox", "v1", 42, 50, "DEADLINE_EXCEEDED"),  # 7 ends after the next OK is taken
        RpcServed(LC, "v1", 48, 49, "OK"),  # 8 cuts the run at 48
        RuntimeTransition("down", 60),  # 9 short, no call hit it
        RuntimeTransition("up", 61),  # 10
        RuntimeTransition("down", 70),  # 11 never up again
        RpcServed("ContainerStatus", "v1", 80, 81, "UNAVAILABLE", "x"),  # 12
    ]
    refs = list(enumerate(recs))
    log = RpcLog(refs, 100)
    got = [(o.lo, o.hi, o.runtime, o.failed_rpcs, [s for s, _ in o.records]) for o in log.outages]
    assert got == [
        (10, 27, True, True, [1, 3, 2, 4]),
        (40, 48, False, True, [6, 7]),
        (60, 61, True, False, [9, 10]),
        (70, 100, True, True, [11]),
    ]
    assert log.outages[0].evidence() == (refs[1], refs[4])
    assert Outage(1, 2).evidence() == ()


def test_split_notes_and_reuse():
    recs = [
        ContainerTransition("a" * 64, "running", 5, "s"),  # 0 no created: assumed created then
        ContainerTransition("a" * 64, "running", 6, "s"),  # 1 repeated
        ContainerTransition("a" * 64, "paused", 7, "s"),  # 2 unknown
        ContainerTransition("a" * 64, "destroyed", 8, "s"),  # 3
        ContainerTransition("a" * 64, "created", 8, "s"),  # 4 reused at the same instant
        ContainerTransition("b", "created", 9, "s"),  # 5
    ]
    pop = split(list(enumerate(recs)), CONTAINER)
    a0, a1 = pop.by_id["a" * 64]
    (b,) = pop.by_id["b"]
    assert (a0.times, a1.times) == ({"created": 5, "running": 5, "destroyed": 8}, {"created": 8})
    assert (a0.index, a1.index, a0.reused, a1.reused, b.reused) == (0, 1, True, True, False)
    assert a1.label == "container aaaaaaaaaaaa…#1" and b.label == "container b"
    assert short_id("x" * 13) == "x" * 13 and short_id("x" * 14) == "x" * 12 + "…"
    assert pop.notes == [
        "truth #0: container aaaaaaaaaaaa… has 'running' without 'created'; assuming it was created then",
        "truth #1: repeated 'running' for container aaaaaaaaaaaa… ignored",
        "truth #2: unknown container transition 'paused' ignored",
    ]
    assert pop.all == [a0, a1, b]
    assert pop.gone_between(8, 8) == [a0] and pop.gone_between(0, 7) == [] and pop.gone_between(9, 99) == []
    assert split(list(enumerate(recs)), SANDBOX).all == []


def test_lifecycle_tables():
    assert CONTAINER.first == "created" and SANDBOX.first == "ready"
    assert CONTAINER.event_type("exited") == "container.exited"
    assert SANDBOX.transition_of("sandbox.notready") == "notready"
    assert [CONTAINER.rank(f"container.{t}") for t in ("created", "running", "exited", "destroyed")] == [0, 1, 2, 3]
    assert Incarnation(SANDBOX, "s", 0, {"ready": 1}).first_event("sandbox.ready") is None


def test_reported_time_needs_a_certain_answer():
    recs = [
        ContainerTransition("c", "created", 0, "s"),
        ContainerTransition("c", "running", 10, "s"),
        RpcServed(ST, "v1", 10, 11, "OK", "c"),  # taken at the very ns it started: may predate it
        RpcServed(ST, "v1", 20, 21, "OK", "c"),
    ]
    refs = list(enumerate(recs))
    log = RpcLog(refs, 100)
    c = split(refs, CONTAINER).by_id["c"][0]
    assert log.first_report(c, "running", 15) is None
    assert log.first_report(c, "running", 21) == Sighting(20, 21, "status", refs[3])


@pytest.mark.parametrize(
    ("type_", "source", "synthetic", "listed", "index"),
    [
        # a polled event reporting the object present goes to the incarnation the last list showed
        ("container.running", "poll", False, True, 1),
        ("container.exited", "poll", False, True, 1),
        # without a list to anchor it, or from a stream, the window decides (c#0 ran at 20)
        ("container.running", "poll", False, False, 0),
        ("container.running", "stream", False, True, 0),
        # ends are not "present": a destroyed, or a forged stop, goes by its window
        ("container.destroyed", "poll", False, True, 0),
        ("container.exited", "poll", True, True, 0),
    ],
)
def test_assignment_prefers_what_the_last_list_showed(type_, source, synthetic, listed, index):
    from fakecri.check.incarnations import assign
    from sensor.events import Event

    recs = [
        ContainerTransition("c", "created", 10, "s"),
        ContainerTransition("c", "running", 20, "s"),
        ContainerTransition("c", "destroyed", 100, "s"),
        ContainerTransition("c", "created", 150, "s"),  # the ID again; this one never runs
    ]
    pop = split(list(enumerate(recs)), CONTAINER)
    ev = Event(type_, 20, (15, 300), 300, source=source, container_id="c", synthetic=synthetic, why="w", seq=1)
    asked = []

    def listed_at(method, t):
        asked.append((method, t))
        return 250

    assert assign([ev], pop, listed_at if listed else None) == []
    assert [len(inc.events) for inc in pop.by_id["c"]] == [int(index == 0), int(index == 1)]
    if listed and index == 1:
        assert asked == [(LC, 300)]


def test_ties_and_earliest_sent():
    recs = [
        ContainerTransition("c", "created", 20, "s"),  # 0
        RpcServed(LC, "v1", 20, 21, "OK"),  # 1 at the creation instant: not certain
        RpcServed("GetContainerEvents", "v1", 20, 500, "OK"),  # 2 opens at the creation instant
        RpcServed(LC, "v1", 50, 60, "OK"),  # 3 taken first, sent last
        RpcServed(ST, "v1", 55, 56, "OK", "c"),  # 4 taken later, sent first
        ContainerTransition("c", "running", 70, "s"),  # 5
        ContainerTransition("c", "exited", 70, "s"),  # 6 the same ns: running lasted 0 ns
    ]
    refs = list(enumerate(recs))
    log = RpcLog(refs, 1000)
    c = split(refs, CONTAINER).by_id["c"][0]
    # the earliest *sent* certain answer: the sensor had it first
    assert log.first_visible(c) == Sighting(55, 56, "status", refs[4])
    assert log.first_certain_in(c, "created") == Sighting(55, 56, "status", refs[4])
    # a state that lasted 0 ns is never certainly seen, even with a stream open
    assert log.first_certain_in(c, "running") is None
    assert log.stream_open(70, certain=True) == refs[2]
    only_ties = RpcLog([refs[0], refs[1], refs[2]], 1000)
    assert only_ties.first_visible(c) is None


def test_assignment_rules_table():
    from fakecri.check.incarnations import assign
    from sensor.events import Event

    def pop_of(*recs):
        return split(list(enumerate(recs)), CONTAINER)

    def c(tr, t):
        return ContainerTransition("c", tr, t, "s")

    def ev(type_, time, window, observed, **kw):
        return Event(type_, time, window, observed, container_id="c", seq=kw.pop("seq", 1), **kw)

    reuse = (c("created", 10), c("running", 20), c("destroyed", 100), c("created", 150), c("running", 160))
    cases = [
        # the cursor never goes back: after #1's created, a running whose window fits #0 stays with #1
        (reuse, [ev("container.created", 150, (150, 150), 200), ev("container.running", 20, (15, 300), 300, seq=2)],
         None, [[], ["container.created", "container.running"]]),
        # seen at the very ns #1 was created, the exact created_at picks #1
        (reuse, [ev("container.created", 150, (90, 150), 150)], None, [[], ["container.created"]]),
        # an exact created_at wins over a window that fits both
        (reuse, [ev("container.created", 150, (5, 300), 300)], None, [[], ["container.created"]]),
        # only #1's transition lies in the window
        (reuse, [ev("container.running", 160, (150, 300), 300)], None, [[], ["container.running"]]),
        # window edges count: #0's running at exactly lo, and at exactly hi
        (reuse, [ev("container.running", 20, (20, 140), 300)], None, [["container.running"], []]),
        (reuse, [ev("container.running", 20, (19, 20), 300)], None, [["container.running"], []]),
        # everything equal: the one without such an event yet, else the earliest
        (reuse, [ev("container.running", 0, (0, 500), 300), ev("container.running", 0, (0, 500), 301, seq=2)], None,
         [["container.running"], ["container.running"]]),
        # a zero-length life loses to its successor
        ((c("created", 10), c("destroyed", 10), c("created", 10)), [ev("container.destroyed", 10, (5, 30), 40)], None,
         [[], ["container.destroyed"]]),
        # the last list was taken at the very ns #1 was created: #1 was (possibly) there
        (reuse, [ev("container.running", 20, (15, 300), 300)], 150, [[], ["container.running"]]),
        # ... or at the very ns #0 was destroyed: #0 was (possibly) still there
        ((c("created", 10), c("destroyed", 100), c("created", 150), c("running", 160)),
         [ev("container.running", 160, (90, 300), 300)], 100, [["container.running"], []]),
    ]
    for recs, events, anchor, want in cases:
        pop = pop_of(*recs)
        listed = None if anchor is None else (lambda m, t, a=anchor: a)
        assert assign(events, pop, listed) == []
        assert [[e.type for e in inc.events] for inc in pop.by_id["c"]] == want, (events, anchor)


def test_records_out_of_time_order_and_same_instant():
    """Truth is in recording order (an answer is recorded when sent), not in time order: every
    index sorts by time, ties by truth seq."""
    recs = [
        ContainerTransition("c", "created", 0, "s"),  # 0
        RpcServed(LC, "v1", 50, 90, "OK"),  # 1 sent last, taken second
        RpcServed(LC, "v1", 40, 60, "OK"),  # 2 taken first
        RpcServed(LC, "v1", 50, 55, "OK"),  # 3 taken at the same ns as 1
        RpcServed("GetContainerEvents", "v1", 10, 30, "UNAVAILABLE"),  # 4
        RpcServed("GetContainerEvents", "v1", 10, 20, "UNAVAILABLE"),  # 5 opened at the same ns
        RpcServed(LC, "v1", 70, 80, "UNAVAILABLE"),  # 6
        RpcServed("ListPodSandbox", "v1", 75, 80, "UNAVAILABLE"),  # 7 sent at the same ns as 6
        FaultWindow("zero_timestamps", "stop", 300),  # 8 a stop without a start: ignored
        FaultWindow("zero_timestamps", "start", 200),  # 9 recorded after its stop... (out of order)
        FaultWindow("zero_timestamps", "start", 250),  # 10 already open: ignored
        FaultWindow("zero_timestamps", "stop", 400),  # 11
    ]
    refs = list(enumerate(recs))
    log = RpcLog(refs, 1000)
    assert [log.listed_at(LC, t) for t in (39, 40, 49, 50)] == [None, 40, 40, 50]
    assert log.lists[LC].refs == [refs[2], refs[1], refs[3]]
    assert log.streams == [refs[4], refs[5]]
    assert log.failed_between(0, 100) == [refs[5], refs[4], refs[6], refs[7]]
    assert [(f.name, f.lo, f.hi) for f in log.faults] == [("zero_timestamps", 200, 300)]
    c = split(refs, CONTAINER).by_id["c"][0]
    assert log.first_visible(c) == Sighting(40, 60, "list", refs[2])  # the first list taken


def test_reported_time_from_a_later_answer_sent_sooner():
    recs = [
        ContainerTransition("c", "created", 0, "s"),
        ContainerTransition("c", "running", 10, "s"),
        RpcServed(ST, "v1", 20, 100, "OK", "c"),  # taken first, sent late
        RpcServed(ST, "v1", 30, 31, "OK", "c"),
        RpcServed(ST, "v1", 40, 41, "OK", "c"),
    ]
    refs = list(enumerate(recs))
    log = RpcLog(refs, 1000)
    c = split(refs, CONTAINER).by_id["c"][0]
    assert log.first_report(c, "running", 50) == Sighting(30, 31, "status", refs[3])
    assert log.first_report(c, "running", 100) == Sighting(20, 100, "status", refs[2])
    assert log.first_report(c, "running", 30) is None


def test_seen_counts_a_status_answer_at_the_transition_instant():
    recs = [
        ContainerTransition("c", "created", 0, "s"),
        ContainerTransition("c", "running", 10, "s"),
        RpcServed(ST, "v1", 10, 11, "OK", "c"),
    ]
    refs = list(enumerate(recs))
    log = RpcLog(refs, 1000)
    c = split(refs, CONTAINER).by_id["c"][0]
    assert log.seen(c, "running") == Sighting(10, 11, "status", refs[2])
    assert log.seen(c, "created") == Sighting(10, 11, "status", refs[2])
    assert log.first_certain_in(c, "running") is None


def test_a_step_applied_late_is_visible_only_from_when_answers_showed_it():
    """A late scenario step happens at its instant but answers show it only once applied
    (``shown_ns``): a list taken in between did not show the container, so nothing was due."""
    truth = [
        ContainerTransition("c", "created", 100, "sb1", shown_ns=110),  # 0
        RpcServed(LC, "v1", 105, 106, "OK"),  # 1 before the step was applied: empty
        RpcServed(LC, "v1", 120, 121, "OK"),  # 2 shows it
        ContainerTransition("c", "destroyed", 200, "sb1", shown_ns=210),  # 3
        RpcServed(LC, "v1", 205, 206, "OK"),  # 4 still shows it: the removal was not applied yet
    ]
    refs = list(enumerate(truth))
    c = split(refs, CONTAINER).by_id["c"][0]
    log = RpcLog(refs, 1000)
    assert log.first_visible(c) == Sighting(120, 121, "list", refs[2])
    only_late = [r for i, r in refs if i != 2]
    c = split(list(enumerate(only_late)), CONTAINER).by_id["c"][0]
    log = RpcLog(list(enumerate(only_late)), 1000)
    assert log.first_visible(c) == Sighting(205, 206, "list", (3, only_late[3]))  # shown until 210


def test_a_polls_rpc_time_runs_to_its_last_answer_before_the_next_poll():
    """G7's RPC time: from the list that showed a change to the last answer its poll got (status
    calls included), never into the next poll -- whichever list method the sensor asks first."""
    PL = "ListPodSandbox"
    truth = [
        RpcServed(PL, "v1", 100, 102, "OK"),  # 0 poll 1 (sandboxes first)
        RpcServed(LC, "v1", 103, 110, "OK"),  # 1
        RpcServed(ST, "v1", 111, 130, "OK", "c1"),  # 2
        RpcServed(ST, "v1", 131, 140, "NOT_FOUND", "c2"),  # 3 a failed one is RPC time too
        RpcServed("GetContainerEvents", "v1", 135, 900, "OK"),  # 4 a stream's life is not
        RpcServed(PL, "v1", 350, 352, "OK"),  # 5 poll 2
        RpcServed(LC, "v1", 353, 360, "OK"),  # 6
        RpcServed(ST, "v1", 361, 365, "OK", "c1"),  # 7
    ]
    refs = list(enumerate(truth))
    log = RpcLog(refs, 1000)
    assert log.poll_end(refs[1]) == 140  # the containers' list: its statuses, not poll 2's sandbox list
    assert log.poll_end(refs[0]) == 140  # the sandboxes' list: the whole poll
    assert log.poll_end(refs[6]) == 365  # the last poll: to its last answer
    flipped = [RpcServed(LC, "v1", 100, 102, "OK"), RpcServed(PL, "v1", 103, 110, "OK"),
               RpcServed(ST, "v1", 111, 130, "OK", "c1"), RpcServed(LC, "v1", 350, 352, "OK"),
               RpcServed(PL, "v1", 353, 360, "OK")]
    refs = list(enumerate(flipped))
    log = RpcLog(refs, 1000)
    assert log.poll_end(refs[0]) == 130 and log.poll_end(refs[1]) == 130  # containers first
