"""The enricher (sensor/enrich.py): as-of lookups over container incarnations, ID reuse,
unenriched reasons, retention."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.enrich import (
    WHY_DESTROYED_BEFORE,
    WHY_NOT_YET_SEEN,
    WHY_UNKNOWN_CONTAINER,
    ContainerMeta,
    Enricher,
    exec_record,
)
from sensor.events import Event, Pod
from sensor.process import ProcessEvent
from sensor.reorder import Released


def cev(typ: str, cid: str, t: int, name: str = "app", pod: Pod | None = None, **kw: object) -> Event:
    return Event(type="container." + typ, time_ns=t, window_ns=(t, t), observed_ns=t, container_id=cid,
                 sandbox_id="sb-" + name, name=name, attempt=0, image=f"img/{name}:1", image_ref="sha256:x",
                 labels={"app": name}, pod=pod if pod is not None else Pod(f"pod-{name}", "default", "uid-" + name),
                 **kw)  # type: ignore[arg-type]


def lifecycle(en: Enricher, cid: str, start: int, end: int | None, name: str) -> None:
    en.apply(cev("created", cid, start, name))
    en.apply(cev("running", cid, start + 1, name))
    if end is not None:
        en.apply(cev("exited", cid, end - 1, name))
        en.apply(cev("destroyed", cid, end, name))


def test_as_of_lookup_with_id_reuse() -> None:
    en = Enricher()
    lifecycle(en, "c1", 100, 200, "first")
    lifecycle(en, "c1", 300, None, "second")
    assert en.lookup("c1", 100).name == "first"  # type: ignore[union-attr]
    assert en.lookup("c1", 200).name == "first"  # both ends inclusive  # type: ignore[union-attr]
    assert en.lookup("c1", 250) is None
    assert en.lookup("c1", 300).name == "second"  # type: ignore[union-attr]
    assert en.lookup("c1", 10**12).name == "second"  # type: ignore[union-attr]
    assert en.lookup("c1", 99) is None
    assert en.lookup("c2", 150) is None
    whys = {t: en.enrich(ProcessEvent("c1", t, 1)).why_unenriched for t in (99, 150, 250, 350)}
    assert whys == {99: WHY_NOT_YET_SEEN, 150: None, 250: WHY_DESTROYED_BEFORE, 350: None}
    assert en.enrich(ProcessEvent("c2", 150, 1)).why_unenriched == WHY_UNKNOWN_CONTAINER


def test_enriched_and_unenriched_values_and_dicts() -> None:
    en = Enricher()
    lifecycle(en, "c1", 100, None, "web")
    ok = en.enrich(ProcessEvent("c1", 150, 42, ("/bin/sh", "-c", "id"), observed_ns=160))
    assert ok.enriched and ok.why_unenriched is None
    assert (ok.name, ok.image, ok.pod, ok.labels) == ("web", "img/web:1", Pod("pod-web", "default", "uid-web"),
                                                      {"app": "web"})
    d = ok.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d == {
        "v": 1, "type": "process.exec", "container_id": "c1", "time_ns": 150, "observed_ns": 160, "pid": 42,
        "ppid": None, "argv": ["/bin/sh", "-c", "id"], "exe": None, "enrichment": "ok", "why": None,
        "sandbox_id": "sb-web",
        "name": "web", "attempt": 0, "image": "img/web:1", "image_ref": "sha256:x", "labels": {"app": "web"},
        "pod": {"name": "pod-web", "namespace": "default", "uid": "uid-web"},
    }
    bad = en.enrich(ProcessEvent("nope", 150, 1))
    assert not bad.enriched and bad.name is None and bad.labels == {} and bad.pod is None
    assert bad.to_dict()["enrichment"] == "unknown-container" and bad.to_dict()["why"] == WHY_UNKNOWN_CONTAINER
    late = exec_record(Released(bad, True, False, 999))
    assert late["enrichment"] == "late" and late["why"].endswith(WHY_UNKNOWN_CONTAINER) and late["late"] is True
    assert exec_record(Released(ok, True, False, 999))["enrichment"] == "ok"  # late but found: ok
    assert exec_record(Released(bad, False, False, 999))["enrichment"] == "unknown-container"
    assert en.stats["enriched"] == 1 and en.stats["unenriched_by_why"][WHY_UNKNOWN_CONTAINER] == 1


def test_reuse_without_destroyed_closes_the_old_incarnation() -> None:
    en = Enricher()
    en.apply(cev("created", "c1", 100, "old"))
    en.apply(cev("created", "c1", 300, "new"))
    assert en.lookup("c1", 299).name == "old"  # type: ignore[union-attr]
    assert en.lookup("c1", 300).name == "new"  # type: ignore[union-attr]


def test_late_created_of_an_older_incarnation_is_inserted_before_the_newer() -> None:
    en = Enricher()
    lifecycle(en, "c1", 300, None, "new")
    en.apply(cev("created", "c1", 100, "old"))  # arrived late
    en.apply(cev("destroyed", "c1", 200, "old"))
    assert en.lookup("c1", 150).name == "old"  # type: ignore[union-attr]
    assert en.lookup("c1", 250) is None
    assert en.lookup("c1", 300).name == "new"  # type: ignore[union-attr]


def test_running_without_created_opens_a_provisional_incarnation_that_created_adopts() -> None:
    en = Enricher()
    en.apply(cev("running", "c1", 150, "app"))
    assert en.lookup("c1", 150).name == "app"  # type: ignore[union-attr]
    assert en.lookup("c1", 120) is None
    en.apply(cev("created", "c1", 100, "app"))
    assert en.lookup("c1", 120).name == "app"  # type: ignore[union-attr]
    assert en.stats["incarnations"] == 1


def test_a_later_event_fills_a_pod_the_created_lacked() -> None:
    en = Enricher()
    created = Event(type="container.created", time_ns=100, window_ns=(100, 100), observed_ns=100,
                    container_id="c1", name="app")
    en.apply(created)
    assert en.lookup("c1", 100).pod is None  # type: ignore[union-attr]
    en.apply(cev("running", "c1", 110, "app"))
    assert en.lookup("c1", 120).pod == Pod("pod-app", "default", "uid-app")  # type: ignore[union-attr]


def test_non_container_events_are_ignored() -> None:
    en = Enricher()
    en.apply(Event(type="sandbox.ready", time_ns=1, window_ns=(1, 1), observed_ns=1, sandbox_id="s"))
    en.apply(Event(type="sensor.gap", time_ns=1, window_ns=(1, 2), observed_ns=2))
    assert en.stats["applied"] == 0 and en.stats["containers"] == 0


def test_retention_forgets_ended_incarnations_by_event_time() -> None:
    en = Enricher(retention_ns=1000)
    lifecycle(en, "gone", 100, 200, "gone")
    lifecycle(en, "live", 150, None, "live")
    en.apply(cev("running", "other", 1200, "other"))  # horizon 1200: 200 is exactly 1000 ago: kept
    assert en.lookup("gone", 150) is not None
    en.apply(cev("running", "other", 1201, "other"))  # now more than 1000 ago: forgotten
    assert en.lookup("gone", 150) is None
    assert en.enrich(ProcessEvent("gone", 150, 1)).why_unenriched == WHY_UNKNOWN_CONTAINER
    assert en.lookup("live", 10_000) is not None  # alive containers are never forgotten
    assert en.stats["expired"] == 1 and en.stats["containers"] == 2


def test_memory_is_bounded_under_churn() -> None:
    en = Enricher(retention_ns=10_000)
    for k in range(5000):
        lifecycle(en, f"c{k % 50}", k * 100, k * 100 + 90, f"n{k}")
    # alive: none; ended within the last 10_000 ns: ~100 incarnations
    assert en.stats["incarnations"] <= 10_000 // 100 + 2
    assert en.stats["expired"] >= 5000 - 102


@st.composite
def incarnations(draw: st.DrawFn) -> list[tuple[int, int | None]]:
    """Disjoint [start, end] intervals for one container ID (the last one may be open)."""
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=1000), min_size=0, max_size=12, unique=True)))
    out: list[tuple[int, int | None]] = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False)]
    if len(cuts) % 2:
        out.append((cuts[-1], None))
    return out


@settings(max_examples=300, deadline=None)
@given(incarnations(), st.lists(st.integers(min_value=-10, max_value=1100), max_size=30))
def test_lookup_returns_the_incarnation_alive_at_the_time(
    incs: list[tuple[int, int | None]], probes: list[int]
) -> None:
    en = Enricher(retention_ns=10**9)
    events = []
    for k, (start, end) in enumerate(incs):
        events.append(cev("created", "c", start, f"i{k}"))
        if end is not None:
            events.append(cev("destroyed", "c", end, f"i{k}"))
    for ev in sorted(events, key=lambda e: e.time_ns):  # the order the reorder buffer releases them
        en.apply(ev)
    for t in probes:
        alive = [k for k, (s, e) in enumerate(incs) if s <= t and (e is None or t <= e)]
        meta = en.lookup("c", t)
        if alive:
            assert isinstance(meta, ContainerMeta) and meta.name == f"i{alive[-1]}"
        else:
            assert meta is None
            why = en.enrich(ProcessEvent("c", t, 1)).why_unenriched
            if not incs:
                assert why == WHY_UNKNOWN_CONTAINER
            elif t < incs[0][0]:
                assert why == WHY_NOT_YET_SEEN
            else:
                assert why == WHY_DESTROYED_BEFORE


def test_no_history_keeps_nothing_and_leaves_a_stray_process_event_unenriched() -> None:
    """``crisensor run`` without a process source: the stage still orders and counts lifecycle events
    (its metrics), but nothing would read the history, so none is kept."""
    from sensor.enrich import AnalyticsStage, NoHistory
    from sensor.reorder import ReorderBuffer

    en = NoHistory()
    stage = AnalyticsStage(ReorderBuffer(10), en)
    released = []
    for t, typ in enumerate(("created", "running", "exited", "destroyed")):
        released += stage.push(cev(typ, "c1", 100 + t, "web"), 100 + t)
    released += stage.advance(10_000)
    assert [r.item.type for r in released] == ["container.created", "container.running", "container.exited",
                                               "container.destroyed"]
    assert en.stats["containers"] == 0 and en.stats["incarnations"] == 0 and en.stats["applied"] == 0
    stray = en.enrich(ProcessEvent("c1", 101, 7))
    assert not stray.enriched and stray.why_unenriched == WHY_UNKNOWN_CONTAINER
