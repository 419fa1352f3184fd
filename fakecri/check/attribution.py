"""G10 no wrong attribution: an exec is never enriched with another container's data.

Theory of operation
-------------------
Pure. Truth gives, per container ID, its *incarnations* (``created`` .. ``destroyed``, both ends
inclusive; an ID may be reused) with the metadata the runtime held for each, and the process
records (``process``: container ID, pid, time). The sensor gives ``process.exec`` objects. Each
exec is matched to the truth process with the same ``pid`` and ``time_ns`` (a source reports the
kernel's time; the fake's replay source reports the truth's); then:

* an exec with no matching truth process is a violation (an exec that never ran) if it names a
  container of the truth; one that names no container of the truth is *foreign* -- a real process
  of the machine the sensor runs on (its kernel source sees them all), not the fake's to judge --
  and is counted, not judged;
* ``container_id`` must be the truth process's container;
* when ``enrichment`` is ``ok``, the metadata it carries -- ``sandbox_id``, ``name``,
  ``attempt``, ``image``, ``pod`` -- must equal that of the incarnation alive at the exec's
  time. An exec enriched while no incarnation was alive is a violation too;
* an exec that is not ``ok`` is never a violation: saying "unsure" is what G10 asks for. How
  many were enriched is reported as a measure (``enriched``, ``unsure``), not judged here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fakecri.truth import ContainerTransition, ProcessEvent, TruthRecord

__all__ = ["AttributionCheck", "Incarnation", "check_attribution"]

#: The metadata fields G10 compares.
FIELDS = ("sandbox_id", "name", "attempt", "image", "pod")


@dataclass(frozen=True)
class Incarnation:
    container_id: str
    start_ns: int
    end_ns: int | None  # None: still alive at the end of the truth
    meta: Mapping[str, Any]

    def alive_at(self, t: int) -> bool:
        return self.start_ns <= t and (self.end_ns is None or t <= self.end_ns)


@dataclass(frozen=True)
class AttributionCheck:
    """Violations (one line each) and measures of one G10 judgement."""

    violations: tuple[str, ...]
    measures: Mapping[str, int]

    @property
    def ok(self) -> bool:
        return not self.violations


def _meta(rec: ContainerTransition) -> dict[str, Any]:
    pod = None if rec.pod is None else {"name": rec.pod.name, "namespace": rec.pod.namespace, "uid": rec.pod.uid}
    return {"sandbox_id": rec.sandbox_id, "name": rec.name, "attempt": rec.attempt, "image": rec.image, "pod": pod}


def incarnations(truth: Iterable[TruthRecord]) -> dict[str, list[Incarnation]]:
    """Per container ID, its incarnations in order of creation."""
    out: dict[str, list[Incarnation]] = {}
    for rec in truth:
        if not isinstance(rec, ContainerTransition):
            continue
        incs = out.setdefault(rec.container_id, [])
        if rec.transition == "created":
            if incs and incs[-1].end_ns is None:  # reused without a destroyed in truth: close it
                last = incs[-1]
                incs[-1] = Incarnation(last.container_id, last.start_ns, rec.time_ns, last.meta)
            incs.append(Incarnation(rec.container_id, rec.time_ns, None, _meta(rec)))
        elif rec.transition == "destroyed" and incs and incs[-1].end_ns is None:
            last = incs[-1]
            incs[-1] = Incarnation(last.container_id, last.start_ns, rec.time_ns, last.meta)
    return out


def check_attribution(truth: Sequence[TruthRecord], execs: Iterable[Mapping[str, Any]]) -> AttributionCheck:
    """Judge ``execs`` (``process.exec`` objects as the sensor wrote them) against ``truth``."""
    incs = incarnations(truth)
    ran: dict[tuple[int, int], ProcessEvent] = {}
    for rec in truth:
        if isinstance(rec, ProcessEvent):
            ran[(rec.pid, rec.time_ns)] = rec
    violations: list[str] = []
    enriched = unsure = foreign = 0
    for ex in execs:
        key = (ex.get("pid"), ex.get("time_ns"))
        what = f"exec pid {key[0]} at {key[1]}"
        real = ran.get(key)  # type: ignore[arg-type]
        if real is None and ex.get("container_id") not in incs:
            foreign += 1
            continue
        if real is None:
            violations.append(f"{what}: no such exec ran (container {ex.get('container_id')!r})")
            continue
        if ex.get("container_id") != real.container_id:
            violations.append(f"{what}: attributed to container {ex.get('container_id')!r}, "
                              f"but it ran in {real.container_id!r}")
            continue
        if ex.get("enrichment") != "ok":
            unsure += 1
            continue
        enriched += 1
        alive = [i for i in incs.get(real.container_id, ()) if i.alive_at(real.time_ns)]
        if not alive:
            violations.append(f"{what}: enriched, but no incarnation of {real.container_id!r} was alive then")
            continue
        want = alive[-1].meta
        wrong = [f"{k} {ex.get(k)!r} (truth: {want[k]!r})" for k in FIELDS if ex.get(k) != want[k]]
        if wrong:
            violations.append(f"{what} in {real.container_id!r}: enriched with another container's data: "
                              + ", ".join(wrong))
    return AttributionCheck(tuple(violations), {"execs": enriched + unsure, "enriched": enriched, "unsure": unsure,
                                                "foreign": foreign})
