"""The analytics stage end to end, pure: fakecri truth -> a virtual poller's lifecycle events and a
TruthProcessSource -> AnalyticsStage. Shows the window trade-off: a window shorter than the
lifecycle events' lateness leaves process events unenriched; one at least as long enriches them;
watermark mode enriches them at the delay of the poll itself."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fakecri.processes import TruthProcessSource
from fakecri.truth import ContainerTransition, PodRef, Truth
from fakecri.truth import ProcessEvent as TruthProcess
from sensor.enrich import WHY_UNKNOWN_CONTAINER, AnalyticsStage, EnrichedProcess, Enricher
from sensor.events import Event, Pod
from sensor.process import ProcessEvent, ProcessSource
from sensor.reorder import Released, ReorderBuffer, WatermarkReorder

MS = 1_000_000
POLL = 250 * MS


def scenario() -> list[Any]:
    """One container created at 1010 ms and an exec in it at 1020 ms, delivered 1 ms later; a second
    container whose ID is then reused. Polls run every 250 ms, so the created is seen at 1250 ms."""
    pod = PodRef("web-0", "default", "uid-web")
    return [
        ContainerTransition("c1", "created", 1010 * MS, "sb1", name="web", image="nginx:1", labels={"app": "web"},
                            pod=pod),
        ContainerTransition("c1", "running", 1012 * MS, "sb1"),
        TruthProcess("c1", 1020 * MS, 1021 * MS, 7, ("/bin/sh", "-c", "id")),
        TruthProcess("c1", 1400 * MS, 1401 * MS, 8, ("/bin/true",)),
        TruthProcess("ghost", 1300 * MS, 1301 * MS, 9),
    ]


def poll_view(truth: list[Any], until_ns: int) -> list[tuple[int, list[Event]]]:
    """What a poller sees: each container transition at the first poll at or after it, with the
    runtime's time as ``time_ns`` (what the diff engine reports; DESIGN.md G4)."""
    meta: dict[str, ContainerTransition] = {}
    polls: list[tuple[int, list[Event]]] = []
    for now in range(0, until_ns + 1, POLL):
        batch = []
        for rec in truth:
            if isinstance(rec, ContainerTransition) and now - POLL < rec.time_ns <= now:
                m = meta.setdefault(rec.container_id, rec)
                pod = None if m.pod is None else Pod(m.pod.name, m.pod.namespace, m.pod.uid)
                batch.append(Event(type="container." + rec.transition, time_ns=rec.time_ns,
                                   window_ns=(now - POLL, now), observed_ns=now, container_id=rec.container_id,
                                   sandbox_id=m.sandbox_id, name=m.name, image=m.image, labels=m.labels, pod=pod))
        polls.append((now, batch))
    return polls


def run(stage: AnalyticsStage, truth: list[Any], until_ns: int, tick_ns: int = MS) -> list[Released]:
    """Drive the stage on a virtual clock: polls every 250 ms, the process source every tick."""
    source = TruthProcessSource(truth)
    polls = dict(poll_view(truth, until_ns))
    watermark = isinstance(stage.reorder, WatermarkReorder)
    out: list[Released] = []
    for now in range(0, until_ns + 1, tick_ns):
        if now in polls:
            out += stage.push_many(polls[now], now)
            if watermark:
                stage.progress("poll", now)  # the poll at `now` completed: everything before it was seen
        out += stage.push_many(source.poll(now), now)
        if watermark:
            stage.progress("process", source.progress_ns())
        out += stage.advance(now)
    return out


def execs(out: list[Released]) -> dict[int, Released]:
    return {r.item.process.pid: r for r in out if isinstance(r.item, EnrichedProcess)}


def test_a_window_shorter_than_the_lateness_leaves_the_exec_unenriched() -> None:
    out = run(AnalyticsStage(ReorderBuffer(25 * MS)), scenario(), 2000 * MS)
    ex = execs(out)
    assert not ex[7].item.enriched and ex[7].item.why_unenriched == WHY_UNKNOWN_CONTAINER
    assert ex[7].released_ns == 1045 * MS  # the response delay it bought: 25 ms
    assert ex[8].item.enriched  # an exec after the created was seen is fine
    created = next(r for r in out if isinstance(r.item, Event) and r.item.type == "container.created")
    assert created.late and created.released_ns == 1250 * MS  # the created itself came too late


@pytest.mark.parametrize("window_ms", [240, 250, 270, 400])
def test_a_window_at_least_as_long_as_the_lateness_enriches_it(window_ms: int) -> None:
    out = run(AnalyticsStage(ReorderBuffer(window_ms * MS)), scenario(), 2000 * MS)
    ex = execs(out)
    assert ex[7].item.enriched and ex[7].item.name == "web" and ex[7].item.pod == Pod("web-0", "default", "uid-web")
    assert ex[7].released_ns == (1020 + window_ms) * MS
    assert not any(r.late for r in out)
    assert ex[9].item.why_unenriched == WHY_UNKNOWN_CONTAINER  # a container that never existed: flagged, kept
    times = [r.item.time_ns for r in out]
    assert times == sorted(times)


def test_the_knee_is_the_lateness_of_the_created_event() -> None:
    """The created (1010 ms) is seen at the 1250 ms poll (lateness 240 ms); the exec (1020 ms) is
    enriched iff it is released no earlier than that: 1020 + window >= 1250."""
    enriched = {w: execs(run(AnalyticsStage(ReorderBuffer(w * MS)), scenario(), 2000 * MS))[7].item.enriched
                for w in (25, 100, 229, 230, 239, 240, 241, 270)}
    # exec 7 at 1020 is released at 1020 + w; the created arrives at 1250: enriched iff 1020 + w >= 1250
    assert enriched == {25: False, 100: False, 229: False, 230: True, 239: True, 240: True, 241: True, 270: True}


def test_watermark_mode_enriches_at_the_delay_of_the_poll() -> None:
    stage = AnalyticsStage(WatermarkReorder(["poll", "process"], max_delay_ns=1000 * MS))
    out = run(stage, scenario(), 2000 * MS)
    ex = execs(out)
    assert ex[7].item.enriched
    assert ex[7].released_ns == 1250 * MS  # as soon as the poll that saw its container completed
    assert not ex[7].forced and not any(r.late for r in out)
    assert ex[8].released_ns == 1500 * MS
    times = [r.item.time_ns for r in out]
    assert times == sorted(times)


def test_released_dicts_are_json_and_carry_the_flags() -> None:
    out = run(AnalyticsStage(ReorderBuffer(25 * MS)), scenario(), 2000 * MS)
    for r in out:
        d = r.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert d["late"] is r.late and d["forced"] is r.forced and d["released_ns"] == r.released_ns
    kinds = {r.to_dict()["type"] for r in out}
    assert kinds == {"container.created", "container.running", "process.exec"}


def test_fixed_stage_refuses_progress_and_reports_stats() -> None:
    stage = AnalyticsStage(ReorderBuffer(25 * MS), Enricher())
    with pytest.raises(TypeError, match="WatermarkReorder"):
        stage.progress("poll", 1)
    run(stage, scenario(), 2000 * MS)
    st = stage.stats
    assert st["reorder"]["pushed"] == st["reorder"]["released"] == 5
    assert st["enrich"]["enriched"] == 1 and st["enrich"]["unenriched"] == 2


def test_late_and_overflow_releases_are_enriched_too() -> None:
    stage = AnalyticsStage(ReorderBuffer(10, max_events=1))
    created = Event(type="container.created", time_ns=100, window_ns=(100, 100), observed_ns=100,
                    container_id="c", name="n")
    assert stage.push(created, 100) == []
    (forced,) = stage.push(ProcessEvent("c", 105, 1), 100)  # overflow: the created goes out early
    assert forced.forced and forced.item is created
    (late,) = stage.push(ProcessEvent("c", 50, 2), 200)
    assert late.late and late.item.why_unenriched == "container not yet seen at event time"
    (r,) = stage.flush(300)
    assert r.item.enriched and r.item.name == "n"


# --- the process source ------------------------------------------------------------------------------


def test_truth_source_delivers_at_deliver_ns_and_states_exact_progress() -> None:
    recs = [TruthProcess("a", 100, 130, 1), TruthProcess("a", 110, 115, 2), TruthProcess("b", 120, 200, 3)]
    src = TruthProcessSource(recs)
    assert isinstance(src, ProcessSource)
    assert src.progress_ns() == 0
    assert src.poll(114) == []
    assert src.progress_ns() == 99  # record 1 (time 100) is not delivered yet
    assert [(p.pid, p.observed_ns) for p in src.poll(130)] == [(2, 130), (1, 130)]
    assert src.progress_ns() == 119
    assert src.poll(199) == [] and src.progress_ns() == 119
    (p,) = src.poll(250)
    assert p == ProcessEvent("b", 120, 3, (), observed_ns=250)
    assert src.progress_ns() == 250 and src.pending() == 0


def test_truth_source_with_a_delay_bound_and_a_live_truth() -> None:
    truth = Truth()
    src = TruthProcessSource(truth, delay_bound_ns=50)
    unsubscribe = truth.subscribe(src.feed)
    truth.record(ContainerTransition("a", "created", 90, "sb"))  # ignored: not a process record
    truth.record(TruthProcess("a", 100, 120, 1, ("ls",)))
    assert [p.argv for p in src.poll(120)] == [("ls",)]
    assert src.progress_ns() == 70
    src.poll(110)  # an older now does not move progress back
    assert src.progress_ns() == 70
    unsubscribe()
    with pytest.raises(ValueError, match="delay_bound_ns"):
        TruthProcessSource(delay_bound_ns=-1)
