"""The guarantee checker: judges a sensor's events against the fake runtime's ground truth.

Pure: no sockets, no clock. ``fakecri verify`` feeds it the JSON lines any sensor wrote; the
hypothesis suites feed it ``Event`` values directly. docs/guarantees.md is the specification of
every rule; the modules are laid out the way the rules are built:

* ``incarnations`` -- truth split into lifetimes per ID, and the sensor's events assigned to them;
* ``observations`` -- what the sensor could have seen (RPC answers, streams), outages, fault windows;
* ``guarantees``   -- G1..G8, one function each;
* ``report``       -- the verdict: ``Report`` / ``GuaranteeResult`` / ``Violation``.

Use::

    events, failures = load_events_jsonl(open("events.jsonl"))
    report = check(truth.records(), events, CheckParams(poll_interval_ns=250_000_000), failures)
    print(report.render())
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from fakecri.truth import RpcServed, TruthRecord
from sensor.events import (
    CONTAINER_TYPES,
    EVENT_TYPES,
    SANDBOX_TYPES,
    SCHEMA_VERSION,
    SOURCES,
    Event,
    from_dict,
)

from . import guarantees, incarnations
from .attribution import check_attribution
from .observations import LIST_METHODS, NEVER_OPEN, STREAM_METHOD, RpcLog
from .params import CheckParams
from .report import GUARANTEES, GuaranteeResult, ParseFailure, Report, TimeFormat, Violation
from .restarts import g9_restarts

__all__ = [
    "GUARANTEES",
    "CheckParams",
    "GuaranteeResult",
    "ParseFailure",
    "Report",
    "Violation",
    "check",
    "load_events_jsonl",
    "parse_event",
]

_TEXT_LIMIT = 200


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_event(d: Mapping[str, Any]) -> Event:
    """One event object -> ``Event``, via ``sensor.events.from_dict`` plus the checks the checker
    relies on. Raises ``ValueError`` naming the first problem."""
    if not isinstance(d, Mapping):
        raise ValueError(f"an event must be a JSON object, not {type(d).__name__}")
    if d.get("v") == SCHEMA_VERSION and d.get("type") not in EVENT_TYPES:
        raise ValueError(f"unknown type {d.get('type')!r}")
    try:
        ev = from_dict(dict(d))
    except KeyError as exc:
        raise ValueError(f"missing field {exc.args[0]!r}") from None
    except (TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"malformed event: {exc}") from None
    # from_dict accepts only SCHEMA_VERSION, whose types were checked above
    for name in ("seq", "time_ns", "observed_ns"):
        if not _is_int(getattr(ev, name)):
            raise ValueError(f"{name} must be an integer (got {getattr(ev, name)!r})")
    w = d.get("window_ns")
    if not (isinstance(w, list | tuple) and len(w) == 2 and all(_is_int(x) for x in w)):
        raise ValueError(f"window_ns must be [lo, hi] integers (got {w!r})")
    if "synthetic" in d and not isinstance(d["synthetic"], bool):
        raise ValueError(f"synthetic must be true or false (got {d['synthetic']!r})")
    if ev.source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES} (got {ev.source!r})")
    if ev.type in CONTAINER_TYPES and not (isinstance(ev.container_id, str) and ev.container_id):
        raise ValueError(f"{ev.type} needs a container_id")
    if ev.type in SANDBOX_TYPES and not (isinstance(ev.sandbox_id, str) and ev.sandbox_id):
        raise ValueError(f"{ev.type} needs a sandbox_id")
    return ev


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + "…"


def load_events_jsonl(lines: Iterable[str]) -> tuple[list[Event], list[ParseFailure]]:
    """Read a sensor's JSON-lines output. Blank lines are skipped; every other line that is not a
    valid event becomes a ``ParseFailure`` (with its 1-based line number) instead of an exception."""
    events: list[Event] = []
    failures: list[ParseFailure] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(parse_event(json.loads(line)))
        except json.JSONDecodeError as exc:
            failures.append(ParseFailure(lineno, f"not JSON: {exc.msg}", _clip(line.rstrip("\n"))))
        except ValueError as exc:
            failures.append(ParseFailure(lineno, str(exc), _clip(line.rstrip("\n"))))
    return events, failures


def _attribution_result(truth: list[TruthRecord], execs: list[Mapping[str, Any]]) -> GuaranteeResult:
    judged = check_attribution(truth, execs)
    m = judged.measures
    summary = (f"{m['execs']} exec(s): {m['enriched']} enriched, {m['unsure']} said they were unsure"
               if m["execs"] or judged.violations else "no process events of this runtime's containers to judge")
    if m["foreign"]:
        summary += f"; {m['foreign']} exec(s) in no container of this runtime not judged"
    return GuaranteeResult("G10", judged.ok, [Violation("G10", v) for v in judged.violations], dict(m), summary)


def _time_bounds(truth: list[tuple[int, TruthRecord]], events: list[Event], params: CheckParams) -> tuple[int, int]:
    times = [r.time_ns for _, r in truth] + [r.end_ns for _, r in truth if isinstance(r, RpcServed)]
    times += [e.observed_ns for e in events]
    end = params.end_ns if params.end_ns is not None else max(times, default=0)
    if params.start_ns is not None:
        start = params.start_ns
    else:
        rpcs = [r for _, r in truth if isinstance(r, RpcServed)]
        views = [r.time_ns for r in rpcs if r.method in LIST_METHODS and r.code.upper() == "OK"]
        views += [r.time_ns for r in rpcs if r.method == STREAM_METHOD and r.code.upper() not in NEVER_OPEN]
        ok = [r.time_ns for r in rpcs if r.code.upper() == "OK"]
        start = min(views or ok or times or [0])
    return start, max(start, end)


def check(
    truth: Iterable[TruthRecord],
    events: Iterable[Event | Mapping[str, Any]],
    params: CheckParams,
    parse_failures: Iterable[ParseFailure] = (),
    execs: Iterable[Mapping[str, Any]] | None = None,
) -> Report:
    """Judge ``events`` (in the order the sensor wrote them; ``Event`` values or parsed JSON objects)
    against ``truth`` (records in the order they were recorded; a record's position is its truth
    seq). Unreadable events are reported as ``ParseFailure`` and left out of the guarantees.
    ``execs``: the sensor's ``process.exec`` objects, judged for G10 (``attribution``); without
    them G10 is not part of the report."""
    truth_refs = list(enumerate(truth))
    failures = list(parse_failures)
    parsed: list[Event] = []
    for i, item in enumerate(events, 1):
        if isinstance(item, Event):
            parsed.append(item)
            continue
        try:
            parsed.append(parse_event(item))
        except ValueError as exc:
            failures.append(ParseFailure(i, str(exc), _clip(json.dumps(item, default=str))))

    start, end = _time_bounds(truth_refs, parsed, params)
    # The observed run ends at end_ns: what truth says happened after it is not judged.
    in_run = [(s, r) for s, r in truth_refs if r.time_ns <= end]
    pops = [incarnations.split(in_run, lc) for lc in (incarnations.CONTAINER, incarnations.SANDBOX)]
    log = RpcLog(in_run, end)
    phantoms: list[Event] = []
    for pop in pops:
        kind = pop.lifecycle.kind + "."
        phantoms += incarnations.assign((e for e in parsed if e.type.startswith(kind)), pop, log.listed_at)
    ctx = guarantees.Context(params, start, end, parsed, pops, phantoms, log, TimeFormat(start))
    results = {}
    for rule in guarantees.ALL:
        r = rule(ctx)
        results[r.guarantee] = r
    if params.sensor_restarts:
        results["G9"] = g9_restarts(ctx)
    if execs is not None:
        results["G10"] = _attribution_result([r for _, r in truth_refs], list(execs))

    notes = [n for pop in pops for n in pop.notes]
    if log.count == 0:
        notes.append("truth holds no rpc records (recorded with record_rpcs=False?): visibility cannot be judged")
    counts = {
        "events": len(parsed) + len(failures),
        "events_readable": len(parsed),
        "events_by_type": dict(Counter(e.type for e in parsed)),
        "truth_records": len(truth_refs),
        "truth_records_after_end": len(truth_refs) - len(in_run),
        "container_incarnations": len(pops[0].all),
        "sandbox_incarnations": len(pops[1].all),
        "rpc_records": log.count,
        "outages": len(log.outages),
        "synthetic_by_why": results["G3"].measures["synthetic_by_why"],
    }
    return Report(params, results, failures, counts, start, end, notes)
