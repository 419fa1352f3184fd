"""The checker's verdict: one result per guarantee, each violation with its minimal evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fakecri import truth as truth_mod
from fakecri.truth import TruthRecord
from sensor.events import Event

from .params import CheckParams

GUARANTEES = {
    "G1": "order",
    "G2": "completeness",
    "G3": "honest flags",
    "G4": "true times",
    "G5": "no phantoms",
    "G6": "exactly once across outages",
    "G7": "latency",
    "G8": "measured blindness",
    "G9": "exactly once across restarts",
    "G10": "no wrong attribution",
}


class TimeFormat:
    """Renders ns timestamps relative to the run's start, e.g. ``+1.250000s``."""

    def __init__(self, base_ns: int) -> None:
        self.base_ns = base_ns

    def __call__(self, ns: int | None) -> str:
        if ns is None:
            return "never"
        d = ns - self.base_ns
        sign = "-" if d < 0 else "+"
        d = abs(d)
        return f"{sign}{d // 1_000_000_000}.{d % 1_000_000_000 // 1000:06d}s"

    def window(self, w: tuple[int, int]) -> str:
        return f"[{self(w[0])}, {self(w[1])}]"


def ms(ns: float) -> str:
    return f"{ns / 1e6:.3f}ms"


def offset(ns: int) -> str:
    """A time difference: exact ns when small (so a 1 ns error is visible), else ms."""
    return f"{ns} ns" if abs(ns) < 1_000_000 else ms(ns)


@dataclass(frozen=True)
class Violation:
    """One broken promise: a one-line ``message`` and the smallest evidence that shows it.

    ``events`` are the offending sensor events; ``truth`` the ``(truth seq, record)`` pairs
    (transitions of the incarnation, and the RPC answers or outage records that create the duty).
    """

    guarantee: str
    message: str
    events: tuple[Event, ...] = ()
    truth: tuple[tuple[int, TruthRecord], ...] = ()

    @property
    def event_seqs(self) -> tuple[int, ...]:
        return tuple(e.seq for e in self.events)

    @property
    def truth_seqs(self) -> tuple[int, ...]:
        return tuple(s for s, _ in self.truth)

    def to_dict(self) -> dict[str, Any]:
        return {
            "guarantee": self.guarantee,
            "message": self.message,
            "events": [e.to_dict() for e in self.events],
            "truth": [truth_mod.to_dict(rec, seq) for seq, rec in self.truth],
        }


@dataclass
class GuaranteeResult:
    """The verdict on one guarantee. ``measures`` is JSON-able (counts, rates, latencies)."""

    guarantee: str
    ok: bool
    violations: list[Violation] = field(default_factory=list)
    measures: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return GUARANTEES[self.guarantee]

    def to_dict(self) -> dict[str, Any]:
        return {
            "guarantee": self.guarantee,
            "name": self.name,
            "ok": self.ok,
            "summary": self.summary,
            "violations": [v.to_dict() for v in self.violations],
            "measures": self.measures,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ParseFailure:
    """An event line the checker could not read (itself a failure of the sensor's output)."""

    line: int  # 1-based position in the input
    error: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error, "text": self.text}


@dataclass
class Report:
    """All eight verdicts. ``ok`` iff every guarantee holds and every event line was readable."""

    params: CheckParams
    results: dict[str, GuaranteeResult]
    parse_failures: list[ParseFailure]
    counts: dict[str, Any]
    start_ns: int
    end_ns: int
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.parse_failures and all(r.ok for r in self.results.values())

    def __getitem__(self, guarantee: str) -> GuaranteeResult:
        return self.results[guarantee]

    @property
    def failed(self) -> list[str]:
        """IDs of the failed guarantees, e.g. ``["G2", "G5"]``."""
        return [g for g, r in self.results.items() if not r.ok]

    @property
    def violations(self) -> list[Violation]:
        return [v for r in self.results.values() for v in r.violations]

    def _showcase(self) -> list[Violation]:
        """All violations, the first of each failed guarantee first (so none hides behind another)."""
        firsts = [r.violations[0] for r in self.results.values() if r.violations]
        return firsts + [v for r in self.results.values() for v in r.violations[1:]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed": self.failed,
            "params": self.params.to_dict(),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "counts": self.counts,
            "parse_failures": [p.to_dict() for p in self.parse_failures],
            "guarantees": {g: r.to_dict() for g, r in self.results.items()},
            "notes": list(self.notes),
        }

    def render(self, max_violations: int = 10) -> str:
        """A readable report: a verdict line per guarantee, then the first violations."""
        fmt = TimeFormat(self.start_ns)
        c = self.counts
        head = "PASS" if self.ok else f"FAIL ({', '.join(self.failed) or 'unreadable events'})"
        lines = [
            f"guarantee check: {head}",
            f"  {c.get('events', 0)} events, {c.get('truth_records', 0)} truth records, "
            f"{c.get('container_incarnations', 0)} container / {c.get('sandbox_incarnations', 0)} sandbox "
            f"incarnations; mode={self.params.mode} poll_interval={ms(self.params.poll_interval_ns)}; "
            f"times below are relative to the run start ({self.start_ns} ns)",
        ]
        if self.parse_failures:
            lines.append(f"FORMAT FAIL  {len(self.parse_failures)} unreadable event line(s)")
        for g, r in self.results.items():
            verdict = "PASS" if r.ok else "FAIL"
            nv = f"{len(r.violations)} violation(s); " if r.violations else ""
            lines.append(f"{g} {r.name:<28} {verdict}  {nv}{r.summary}".rstrip())
        for note in self.notes:
            lines.append(f"note: {note}")
        for p in self.parse_failures[:max_violations]:
            lines.append(f"  line {p.line}: {p.error}: {p.text}")
        vs = self._showcase()
        if vs:
            lines.append("")
            shown = vs[:max_violations]
            lines.append(f"first {len(shown)} of {len(vs)} violation(s):")
            for v in shown:
                lines.append(f"[{v.guarantee}] {v.message}")
                for ev in v.events:
                    lines.append(f"    event {_event_line(ev, fmt)}")
                for seq, rec in v.truth:
                    lines.append(f"    truth {_truth_line(seq, rec, fmt)}")
        return "\n".join(lines) + "\n"


def _event_line(ev: Event, fmt: TimeFormat) -> str:
    oid = ev.container_id if ev.type.startswith("container.") else ev.sandbox_id
    parts = [f"seq={ev.seq}", ev.type]
    if oid:
        parts.append(oid)
    parts += [
        f"time={fmt(ev.time_ns)}",
        f"window={fmt.window(ev.window_ns)}",
        f"observed={fmt(ev.observed_ns)}",
        f"synthetic={str(ev.synthetic).lower()}",
    ]
    if ev.why:
        parts.append(f"why={ev.why!r}")
    parts.append(f"source={ev.source}")
    return " ".join(parts)


def _truth_line(seq: int, rec: TruthRecord, fmt: TimeFormat) -> str:
    kind = rec.kind
    if kind == "container":
        return f"#{seq} container.{rec.transition} {rec.container_id} at {fmt(rec.time_ns)}"  # type: ignore[union-attr]
    if kind == "sandbox":
        return f"#{seq} sandbox.{rec.transition} {rec.sandbox_id} at {fmt(rec.time_ns)}"  # type: ignore[union-attr]
    if kind == "rpc":
        target = f" target={rec.target}" if rec.target else ""  # type: ignore[union-attr]
        return (
            f"#{seq} rpc {rec.method} {rec.code}{target} answer taken {fmt(rec.time_ns)} "  # type: ignore[union-attr]
            f"sent {fmt(rec.end_ns)}"  # type: ignore[union-attr]
        )
    if kind == "runtime":
        return f"#{seq} runtime {rec.transition} at {fmt(rec.time_ns)}"  # type: ignore[union-attr]
    if kind == "fault":
        return f"#{seq} fault {rec.fault} {rec.phase} at {fmt(rec.time_ns)}"  # type: ignore[union-attr]
    return f"#{seq} {kind} at {fmt(rec.time_ns)}"
