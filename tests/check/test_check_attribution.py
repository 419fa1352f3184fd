"""G10: the attribution checker passes an honest enricher and catches enrichers that guess."""

from __future__ import annotations

from typing import Any

from fakecri.check.attribution import check_attribution
from fakecri.truth import ContainerTransition, PodRef, ProcessEvent, TruthRecord
from sensor.enrich import ContainerMeta, Enricher
from sensor.events import Event, Pod
from sensor.process import ProcessEvent as Exec

POD_A = PodRef("web-0", "default", "uid-a")
POD_B = PodRef("web-0", "default", "uid-b")  # the same pod name, recreated


def created(cid: str, t: int, name: str, attempt: int, sandbox: str, pod: PodRef) -> ContainerTransition:
    return ContainerTransition(cid, "created", t, sandbox, name=name, attempt=attempt, image=f"img/{name}",
                               pod=pod)


def destroyed(cid: str, t: int, sandbox: str) -> ContainerTransition:
    return ContainerTransition(cid, "destroyed", t, sandbox)


#: c1 is created, destroyed, and its ID reused (another name); "web" is removed and recreated as c2
#: with the same name in a new pod; execs happen in every incarnation.
TRUTH: list[TruthRecord] = [
    created("c1", 100, "web", 0, "sb1", POD_A),
    ProcessEvent("c1", 150, 150, pid=10),
    destroyed("c1", 200, "sb1"),
    created("c1", 300, "db", 0, "sb1", POD_A),
    ProcessEvent("c1", 350, 350, pid=10),  # the same PID again: PID reuse
    created("c2", 400, "web", 1, "sb2", POD_B),
    ProcessEvent("c2", 450, 450, pid=11),
    ProcessEvent("c1", 460, 900, pid=12),  # delivered late: after c2 "web" exists
]


def _events(truth: list[TruthRecord]) -> list[Event]:
    out = []
    for r in truth:
        if isinstance(r, ContainerTransition):
            pod = None if r.pod is None else Pod(r.pod.name, r.pod.namespace, r.pod.uid)
            out.append(Event(type=f"container.{r.transition}", time_ns=r.time_ns, window_ns=(r.time_ns, r.time_ns),
                             observed_ns=r.time_ns, container_id=r.container_id, sandbox_id=r.sandbox_id,
                             name=r.name or None, attempt=r.attempt, image=r.image or None, pod=pod))
    return out


def _sensor(enricher: Enricher) -> list[dict[str, Any]]:
    """Every lifecycle event applied first (an infinitely patient window), then each exec enriched."""
    for e in _events(TRUTH):
        enricher.apply(e)
    return [enricher.enrich(Exec(r.container_id, r.time_ns, r.pid)).to_dict() for r in TRUTH
            if isinstance(r, ProcessEvent)]


class LatestKnown(Enricher):
    """Broken: the latest incarnation of the ID, whatever the exec's time."""

    def lookup(self, container_id: str, time_ns: int) -> ContainerMeta | None:
        return super().lookup(container_id, 10**18)

    def _resolve(self, cid: str, t: int) -> tuple[ContainerMeta | None, str | None]:
        return super()._resolve(cid, 10**18)


class ByName(Enricher):
    """Broken: the latest container with the name the exec's container had when first seen."""

    def _resolve(self, cid: str, t: int) -> tuple[ContainerMeta | None, str | None]:
        meta, why = super()._resolve(cid, t)
        if meta is None:
            return meta, why
        newest = None
        for other in list(self._by_id):
            m, _ = super()._resolve(other, 10**18)
            if m is not None and m.name == meta.name:
                newest = m
        return newest, None


def test_an_honest_enricher_passes() -> None:
    got = check_attribution(TRUTH, _sensor(Enricher()))
    assert got.ok, got.violations
    assert got.measures == {"execs": 4, "enriched": 4, "unsure": 0, "foreign": 0}


def test_an_enricher_that_takes_the_latest_incarnation_is_caught() -> None:
    got = check_attribution(TRUTH, _sensor(LatestKnown()))
    assert not got.ok
    assert any("pid 10 at 150" in v and "'db'" in v for v in got.violations), got.violations


def test_an_enricher_that_attributes_by_name_is_caught() -> None:
    got = check_attribution(TRUTH, _sensor(ByName()))
    assert not got.ok
    assert any("pid 10 at 150" in v and "attempt 1" in v for v in got.violations), got.violations


def test_unsure_is_never_a_violation_and_wrong_ids_and_invented_execs_are() -> None:
    execs = _sensor(Enricher())
    execs[0] = {**execs[0], "enrichment": "unknown-container", "name": None}
    assert check_attribution(TRUTH, execs).ok
    wrong_id = [{**execs[1], "container_id": "c2"}]
    assert "ran in 'c1'" in check_attribution(TRUTH, wrong_id).violations[0]
    invented = [{**execs[1], "pid": 999}]
    assert "no such exec ran" in check_attribution(TRUTH, invented).violations[0]
    foreign = [{**execs[1], "pid": 999, "container_id": "a-real-container-of-this-machine"},
               {**execs[1], "pid": 998, "container_id": None, "enrichment": "host"}]
    got = check_attribution(TRUTH, foreign)
    assert got.ok and got.measures["foreign"] == 2
    dead = [{**execs[0], "time_ns": 250}]
    assert "no such exec" in check_attribution(TRUTH, dead).violations[0]
    truth_gap = [*TRUTH, ProcessEvent("c1", 250, 250, pid=13)]
    enriched_in_gap = [{**_sensor(Enricher())[0], "time_ns": 250, "pid": 13}]
    assert "no incarnation" in check_attribution(truth_gap, enriched_in_gap).violations[0]


def test_the_report_carries_g10_when_execs_are_given_and_fails_a_guessing_enricher() -> None:
    from fakecri.check import CheckParams, check

    params = CheckParams(poll_interval_ns=100)
    assert "G10" not in check(TRUTH, [], params).results  # no execs given: not judged
    honest = check(TRUTH, [], params, execs=_sensor(Enricher()))
    assert honest["G10"].ok and "4 exec(s): 4 enriched" in honest["G10"].summary
    broken = check(TRUTH, [], params, execs=_sensor(LatestKnown()))
    assert "G10" in broken.failed and not broken.ok
    assert "G10 no wrong attribution" in broken.render() and "[G10]" in broken.render()
