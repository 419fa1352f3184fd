"""The eight guarantees (DESIGN.md section 5), one function each; docs/guarantees.md is their spec.

Every function takes the shared :class:`Context` (truth split into incarnations, the sensor's events
assigned to them, the RPC log) and returns a :class:`GuaranteeResult`. They only read the context,
so the order they run in does not matter. Each violation carries the least evidence that shows it:
the offending events, the truth transitions involved, and the RPC/outage records that made
something due.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sensor.events import Event

from .incarnations import ABSENT, CONTAINER, Incarnation, Lifecycle, Population
from .observations import Outage, Ref, RpcLog
from .params import CheckParams
from .report import GuaranteeResult, TimeFormat, Violation, ms, offset
from .restarts import Downtime, across, downtimes, lived_across, past_downtime, unacted

VANISHED = "vanished during outage"
REPORTED_FIELD = {"created": "created_at", "ready": "created_at", "running": "started_at", "exited": "finished_at"}


@dataclass
class Duplicate:
    inc: Incarnation
    first: Event
    again: Event
    outage: Outage | None  # an outage between the two: judged by G6, else G1
    restart: Downtime | None = None  # a sensor restart between the two: judged by G9 (before G6)


@dataclass
class Context:
    params: CheckParams
    start_ns: int
    end_ns: int
    events: list[Event]  # readable events, in emission order
    pops: list[Population]
    phantoms: list[Event]
    log: RpcLog
    fmt: TimeFormat

    def __post_init__(self) -> None:
        self.incs: list[Incarnation] = [inc for pop in self.pops for inc in pop.all]
        self.downtimes = downtimes(self.params.sensor_restarts, self.log)  # G9: the sensor was killed
        self.duplicates = _duplicates(self)

    @property
    def slack(self) -> int:
        """One poll interval plus the allowance: how long after a revealing answer an event may come."""
        return self.params.poll_interval_ns + self.params.latency_allowance_ns

    def in_state(self, inc: Incarnation, t: int) -> str:
        """The state an early event (G5) was announced in: never ``destroyed``, since the
        transition it announces lies after ``t``."""
        s = inc.certain_state(t)
        if s is None:
            return "changing state at that very instant"
        return "not yet created" if s == ABSENT else s


def _transition(inc: Incarnation, ev: Event) -> str:
    return inc.lifecycle.transition_of(ev.type)


def _next_transition(lc: Lifecycle, tr: str) -> str | None:
    i = lc.transitions.index(tr)
    return lc.transitions[i + 1] if i + 1 < len(lc.transitions) else None


def _duplicates(ctx: Context) -> list[Duplicate]:
    out = []
    for inc in ctx.incs:
        first: dict[str, Event] = {}
        for ev in inc.events:
            if ev.type in first:
                f = first[ev.type]
                restart = across(ctx.downtimes, f.observed_ns, ev.observed_ns)
                outage = None if restart else ctx.log.outage_overlapping(f.observed_ns, ev.observed_ns)
                out.append(Duplicate(inc, f, ev, outage, restart))
            else:
                first[ev.type] = ev
    return out


# -- G1 order ------------------------------------------------------------------------------------


def g1_order(ctx: Context) -> GuaranteeResult:
    vs: list[Violation] = []
    prev: Event | None = None
    seq_breaks = 0
    for ev in ctx.events:
        if prev is not None and ev.seq <= prev.seq and not across(ctx.downtimes, prev.observed_ns, ev.observed_ns):
            seq_breaks += 1
            vs.append(Violation("G1", f"seq {ev.seq} follows seq {prev.seq}: seq must strictly increase", (prev, ev)))
        prev = ev
    out_of_order = 0
    for inc in ctx.incs:
        lc = inc.lifecycle
        seen: set[str] = set()
        top: Event | None = None
        for ev in inc.events:
            if ev.type in seen:
                continue  # a duplicate: below
            seen.add(ev.type)
            if top is not None and lc.rank(ev.type) < lc.rank(top.type):
                out_of_order += 1
                order = " < ".join(lc.transitions)
                vs.append(
                    Violation(
                        "G1",
                        f"{inc.label}: {ev.type} (seq {ev.seq}) comes after {top.type} (seq {top.seq}); "
                        f"lifecycle order is {order}, nothing after destroyed",
                        (top, ev),
                        inc.truth(_transition(inc, top), _transition(inc, ev)),
                    )
                )
            else:
                top = ev
    dups = [d for d in ctx.duplicates if d.outage is None and d.restart is None]
    for d in dups:
        vs.append(
            Violation(
                "G1",
                f"{d.inc.label}: {d.again.type} emitted twice (seq {d.first.seq} and seq {d.again.seq}), "
                "no outage in between",
                (d.first, d.again),
                d.inc.truth(_transition(d.inc, d.again)),
            )
        )
    n = sum(1 for inc in ctx.incs if inc.events)
    return GuaranteeResult(
        "G1",
        not vs,
        vs,
        {
            "events": len(ctx.events),
            "incarnations_with_events": n,
            "seq_breaks": seq_breaks,
            "out_of_order": out_of_order,
            "duplicates": len(dups),
        },
        f"{len(ctx.events)} events over {n} incarnations",
    )


# -- G2 completeness -----------------------------------------------------------------------------


def g2_completeness(ctx: Context) -> GuaranteeResult:
    log, fmt = ctx.log, ctx.fmt
    slack = ctx.slack + ctx.params.completeness_grace_ns
    vs: list[Violation] = []
    m: Counter[str] = Counter()
    for inc in ctx.incs:
        lc = inc.lifecycle
        k = "containers" if lc is CONTAINER else "sandboxes"
        vis = log.first_visible(inc)
        if vis is not None:
            m[f"{k}_visible"] += 1
        if vis is not None and ctx.downtimes and unacted(ctx.downtimes, vis.time_ns, inc.gone_ns, ctx.slack):
            vis = None  # shown to a sensor killed before it was due, and gone before its restart looked (G9)
        known = vis is not None or bool(inc.events)
        if not known:
            continue
        due: dict[str, tuple[int, Ref]] = {}  # transition -> (deadline, record that made it due)
        if vis is not None:
            due[lc.first] = (vis.end_ns + slack, vis.ref)
        for tr in lc.transitions[1:-1]:
            s = log.first_certain_in(inc, tr)
            if s is not None and not (ctx.downtimes and unacted(ctx.downtimes, s.time_ns, inc.gone_ns, ctx.slack)):
                due[tr] = (s.end_ns + slack, s.ref)
        if inc.gone_ns is not None:
            shown_gone = log.lists[lc.list_method].first_after(inc.visible("destroyed"))  # type: ignore[arg-type]
            if shown_gone is not None:
                dl = shown_gone[1].end_ns + slack  # type: ignore[union-attr]
                for tr in (lc.stop, "destroyed"):
                    if tr not in due or due[tr][0] > dl:
                        due[tr] = (dl, shown_gone)
        missing, late = [], []
        refs: list[Ref] = []
        for tr, (deadline, ref) in due.items():
            if ctx.downtimes:  # the sensor was killed before it was due: due after its first list again
                moved = past_downtime(ctx.downtimes, deadline - slack, deadline, slack)
                if moved is None:
                    continue
                deadline = moved
            if deadline > ctx.end_ns:
                continue  # the run ended before it was due
            m[f"{k}_events_due"] += 1
            ev = inc.first_event(lc.event_type(tr))
            if ev is None:
                missing.append(tr)
            elif ev.observed_ns > deadline:
                late.append((ev, deadline))
            else:
                continue
            if ref not in refs:
                refs.append(ref)
        if not missing and not late:
            continue
        parts = []
        if missing:
            parts.append("no " + ", ".join(lc.event_type(t) for t in missing))
        for ev, deadline in late:
            parts.append(f"{ev.type} only at {fmt(ev.observed_ns)} (due by {fmt(deadline)})")
        how = f"visible from {fmt(vis.time_ns)}" if vis is not None else "reported by the sensor"
        gone = f", gone at {fmt(inc.gone_ns)}" if inc.gone_ns is not None else ""
        m[f"{k}_incomplete"] += 1
        vs.append(
            Violation(
                "G2",
                f"{inc.label} ({how}{gone}): {'; '.join(parts)}",
                tuple(ev for ev, _ in late),
                inc.truth(*missing, *(lc.transition_of(ev.type) for ev, _ in late), lc.first, "destroyed")
                + tuple(refs[:2]),
            )
        )
    measures = {
        f"{k}_{what}": m.get(f"{k}_{what}", 0)
        for k in ("containers", "sandboxes")
        for what in ("visible", "events_due", "incomplete")
    }
    notes = []
    if ctx.log.count == 0:
        notes.append("truth has no rpc records: nothing counts as visible, so nothing is due")
    return GuaranteeResult(
        "G2",
        not vs,
        vs,
        measures,
        f"{measures['containers_events_due']} container + {measures['sandboxes_events_due']} sandbox events due "
        f"({measures['containers_visible']} containers, {measures['sandboxes_visible']} sandboxes visible)",
        notes,
    )


# -- G3 honest flags -----------------------------------------------------------------------------


def g3_honest_flags(ctx: Context) -> GuaranteeResult:
    vs: list[Violation] = []
    whys: Counter[str] = Counter()
    n_true = n_false = 0
    for ev in ctx.events:
        if not ev.synthetic:
            continue
        n_true += 1
        why = (ev.why or "").strip()
        if why:
            whys[why] += 1
        else:
            vs.append(Violation("G3", f"seq {ev.seq} {ev.type} is synthetic:true but gives no why", (ev,)))
    for inc in ctx.incs:
        for ev in inc.events:
            if ev.synthetic:
                continue
            n_false += 1
            tr = _transition(inc, ev)
            if inc.effective(tr) is None:
                continue  # never happened at all: G5
            s = ctx.log.seen(inc, tr)
            if s is not None and s.time_ns <= ev.observed_ns:
                continue
            what = "gone" if tr == "destroyed" else f"in state {tr}"
            later = f" (first shown at {ctx.fmt(s.time_ns)})" if s is not None else ""
            vs.append(
                Violation(
                    "G3",
                    f"{inc.label}: {ev.type} (seq {ev.seq}) says synthetic:false, but no answer showed it "
                    f"{what} by {ctx.fmt(ev.observed_ns)}{later}",
                    (ev,),
                    inc.truth(tr, _next_transition(inc.lifecycle, tr) or tr),
                )
            )
    n_false += sum(1 for ev in ctx.phantoms if not ev.synthetic)
    return GuaranteeResult(
        "G3",
        not vs,
        vs,
        {"synthetic_true": n_true, "synthetic_false": n_false, "synthetic_by_why": dict(whys.most_common())},
        f"{n_true} synthetic, {n_false} seen; " + ", ".join(f"{n}x {w!r}" for w, n in whys.most_common(3)),
    )


# -- G4 true times -------------------------------------------------------------------------------


def g4_true_times(ctx: Context) -> GuaranteeResult:
    log, fmt = ctx.log, ctx.fmt
    vs: list[Violation] = []
    m: Counter[str] = Counter()
    for inc in ctx.incs:
        for ev in inc.events:
            tr = _transition(inc, ev)
            t = inc.effective(tr)
            if t is None:
                continue
            m["windows_checked"] += 1
            lo, hi = ev.window_ns
            truth = inc.truth(tr) or inc.truth("destroyed")
            if lo > hi:
                vs.append(Violation("G4", f"{inc.label}: {ev.type} (seq {ev.seq}) has an inverted window_ns", (ev,)))
                continue
            shown = inc.visible(tr) if tr not in inc.lifecycle.reported else t
            if not (lo <= t <= hi or (shown is not None and t <= hi and lo <= shown)):
                # a transition no answer dates (destroyed, notready) and answers showed late: the
                # window may lie anywhere from when it happened to when answers showed it
                off = lo - t if t < lo else t - hi
                vs.append(
                    Violation(
                        "G4",
                        f"{inc.label}: {ev.type} (seq {ev.seq}) window {fmt.window(ev.window_ns)} misses the "
                        f"true time {fmt(t)} by {offset(off)}",
                        (ev,),
                        truth,
                    )
                )
                continue
            fault = log.timestamp_fault(min(t, ev.observed_ns), ev.observed_ns)
            if fault is not None:
                m["exact_exempt_fault"] += 1
                continue
            rep = log.first_report(inc, tr, ev.observed_ns)
            if rep is not None:
                m["exact_checked"] += 1
                if ev.time_ns != t:
                    vs.append(
                        Violation(
                            "G4",
                            f"{inc.label}: {ev.type} (seq {ev.seq}) time_ns {fmt(ev.time_ns)} differs by "
                            f"{ev.time_ns - t:+d} ns from the {REPORTED_FIELD[tr]} the runtime reported "
                            f"({fmt(t)}, in a {rep.ref[1].method} answer)",  # type: ignore[union-attr]
                            (ev,),
                            (*truth, rep.ref),
                        )
                    )
                    continue
            if not lo <= ev.time_ns <= hi:
                out = lo - ev.time_ns if ev.time_ns < lo else ev.time_ns - hi
                vs.append(
                    Violation(
                        "G4",
                        f"{inc.label}: {ev.type} (seq {ev.seq}) time_ns {fmt(ev.time_ns)} lies {offset(out)} outside "
                        f"its own window {fmt.window(ev.window_ns)}",
                        (ev,),
                        truth,
                    )
                )
    measures = {k: m.get(k, 0) for k in ("windows_checked", "exact_checked", "exact_exempt_fault")}
    return GuaranteeResult(
        "G4",
        not vs,
        vs,
        measures,
        f"{measures['windows_checked']} windows, {measures['exact_checked']} exact times checked"
        + (f", {measures['exact_exempt_fault']} exempt (timestamp fault)" if measures["exact_exempt_fault"] else ""),
    )


# -- G5 no phantoms ------------------------------------------------------------------------------

_NEVER = {
    "running": "it never ran",
    "exited": "it was still alive at the end of the run",
    "notready": "it was still ready at the end of the run",
    "destroyed": "it still existed at the end of the run",
}


def g5_no_phantoms(ctx: Context) -> GuaranteeResult:
    fmt = ctx.fmt
    vs: list[Violation] = []
    by_id: dict[tuple[str, str], list[Event]] = {}
    for ev in ctx.phantoms:
        kind = ev.type.split(".", 1)[0]
        oid = ev.container_id if kind == "container" else ev.sandbox_id
        by_id.setdefault((kind, oid or "(no id)"), []).append(ev)
    for (kind, oid), evs in by_id.items():
        vs.append(
            Violation(
                "G5",
                f"{kind} {oid} never existed in truth, yet {len(evs)} event(s) name it (first: {evs[0].type})",
                (evs[0],),
            )
        )
    for inc in ctx.incs:
        for ev in inc.events:
            tr = _transition(inc, ev)
            t = inc.effective(tr)
            if t is None:
                if ev.observed_ns > ctx.end_ns:
                    continue  # truth after the run is unknown
                msg = f"{inc.label}: {ev.type} (seq {ev.seq}) at {fmt(ev.observed_ns)}, but {_NEVER[tr]}"
            elif ev.observed_ns < t:
                msg = (
                    f"{inc.label}: {ev.type} (seq {ev.seq}) at {fmt(ev.observed_ns)}, but that only happened at "
                    f"{fmt(t)}; it was {ctx.in_state(inc, ev.observed_ns)} then"
                )
            else:
                continue
            context = ctx.log.failed_between(ev.observed_ns - ctx.slack, ev.observed_ns)[-1:]
            vs.append(Violation("G5", msg, (ev,), inc.truth(*inc.lifecycle.transitions) + tuple(context)))
    return GuaranteeResult(
        "G5",
        not vs,
        vs,
        {"phantom_ids": len(by_id), "phantom_events": len(ctx.phantoms), "premature_or_unreal": len(vs) - len(by_id)},
        f"{len(ctx.phantoms)} events for unknown IDs, {len(vs) - len(by_id)} premature or unreal transitions",
    )


# -- G6 exactly once across outages --------------------------------------------------------------


def _covers(windows: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """Whether the union of the closed ``windows`` contains ``[lo, hi]`` (touching windows join).
    An instant outage (``lo == hi``) still needs a window that contains it."""
    reach: int | None = None  # everything in [lo, reach] is covered
    for a, b in sorted(windows):
        if a > (lo if reach is None else reach):
            return False  # a hole just before a
        reach = b if reach is None else max(reach, b)
        if reach >= hi:
            return True
    return False


def _describe(o: Outage) -> str:
    what = []
    if o.runtime:
        what.append("runtime down")
    n = sum(1 for _, r in o.records if r.kind == "rpc")
    if n:
        what.append(f"{n} failed list call(s)")
    return " + ".join(what)


def g6_outages(ctx: Context) -> GuaranteeResult:
    log, fmt, p = ctx.log, ctx.fmt, ctx.params
    vs: list[Violation] = []
    dups = [d for d in ctx.duplicates if d.outage is not None and d.restart is None]
    for d in dups:
        vs.append(
            Violation(
                "G6",
                f"{d.inc.label}: {d.again.type} emitted again (seq {d.first.seq}, then seq {d.again.seq}) after the "
                f"outage {fmt.window((d.outage.lo, d.outage.hi))}",  # type: ignore[union-attr]
                (d.first, d.again),
                d.inc.truth(_transition(d.inc, d.again)) + d.outage.evidence(),  # type: ignore[union-attr]
            )
        )
    gaps = [ev for ev in ctx.events if ev.type == "sensor.gap"]
    required = vanished = 0
    for o in log.outages:
        after = log.any_list.first_after(o.hi)
        if after is None:
            continue
        deadline = after[1].end_ns + ctx.slack + p.completeness_grace_ns  # type: ignore[union-attr]
        if deadline > ctx.end_ns:
            continue
        if not (o.failed_rpcs or (o.runtime and o.hi - o.lo >= p.poll_interval_ns)):
            continue  # short, and nothing failed: a polling sensor cannot have noticed
        had_view = bool(log.any_list.times) and log.any_list.times[0] < o.lo
        if o.lo < ctx.start_ns or not had_view:
            continue  # no OK list before it: the sensor had no visibility to lose yet
        required += 1
        span = fmt.window((o.lo, o.hi))
        near = [g for g in gaps if g.window_ns[0] <= o.hi and o.lo <= g.window_ns[1]]
        on_time = [g for g in near if g.observed_ns <= deadline]
        if not _covers([g.window_ns for g in near], o.lo, o.hi):
            vs.append(
                Violation(
                    "G6",
                    f"no sensor.gap covers the outage {span} ({_describe(o)}); the sensor polled successfully "
                    f"again at {fmt(after[1].time_ns)}",
                    tuple(near[:2]),
                    (*o.evidence(), after),
                )
            )
        elif not _covers([g.window_ns for g in on_time], o.lo, o.hi):
            vs.append(
                Violation(
                    "G6",
                    f"the sensor.gap for the outage {span} came only at {fmt(near[-1].observed_ns)} (due by "
                    f"{fmt(deadline)})",
                    tuple(near[:2]),
                    (*o.evidence(), after),
                )
            )
        for pop in ctx.pops:
            lc = pop.lifecycle
            for inc in pop.gone_between(o.lo, o.hi):
                vis = log.first_visible(inc)
                if not ((vis is not None and vis.time_ns < o.lo) or any(e.observed_ns < o.lo for e in inc.events)):
                    continue
                later = pop.by_id[inc.id][inc.index + 1 :]
                if later and later[0].created_ns <= after[1].time_ns:
                    continue  # its ID was reused by then: the sensor sees a replacement, not a vanishing
                look = log.lists[lc.list_method].first_after(o.hi, strict=False)
                if look is not None and inc.visible("destroyed") == look[1].time_ns:  # type: ignore[union-attr]
                    continue  # gone at the very ns a list was taken as the outage ended: a tie, either why
                vanished += 1
                for ev in inc.events:
                    if ev.type not in (lc.event_type(lc.stop), lc.event_type("destroyed")) or not ev.synthetic:
                        continue
                    if VANISHED in (ev.why or "").lower():
                        continue
                    vs.append(
                        Violation(
                            "G6",
                            f"{inc.label} vanished during the outage {span}, but its forged {ev.type} (seq {ev.seq}) "
                            f"says why={ev.why!r} instead of {VANISHED!r}",
                            (ev,),
                            (*inc.truth("destroyed"), *o.evidence()),
                        )
                    )
    return GuaranteeResult(
        "G6",
        not vs,
        vs,
        {
            "outages": len(log.outages),
            "gaps_required": required,
            "gap_events": len(gaps),
            "duplicates_after_outage": len(dups),
            "vanished_during_outage": vanished,
        },
        f"{len(log.outages)} outages ({required} needing a gap), {len(gaps)} gap events, "
        f"{vanished} incarnations vanished during outages",
    )


# -- G7 latency ----------------------------------------------------------------------------------


def _percentile(sorted_values: list[int], pct: float) -> int:
    k = max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def _poll_deadline(ctx: Context, lc: Lifecycle, t: int) -> int | None:
    p = ctx.params
    base = t + ctx.slack
    lists = ctx.log.lists[lc.list_method]
    nxt = lists.first_after(t)
    if nxt is not None and nxt[1].time_ns <= base:
        base += ctx.log.poll_end(nxt) - nxt[1].time_ns  # that poll's RPC time: its list's and what it asked after
    o = ctx.log.outage_overlapping(t, base)
    if o is None:
        return base
    after = lists.first_after(o.hi)
    if after is None:
        return None  # never saw the runtime again: nothing to judge
    return max(base, after[1].end_ns + p.poll_interval_ns + p.latency_allowance_ns)  # type: ignore[union-attr]


def g7_latency(ctx: Context) -> GuaranteeResult:
    p, fmt = ctx.params, ctx.fmt
    vs: list[Violation] = []
    lat: list[int] = []
    by_how: Counter[str] = Counter()
    for inc in ctx.incs:
        lc = inc.lifecycle
        done: set[str] = set()
        for ev in inc.events:
            if ev.type in done:
                continue
            done.add(ev.type)
            tr = _transition(inc, ev)
            t = inc.visible(tr)  # from when the runtime showed it: its own state lag is not the sensor's
            if t is None or t < ctx.start_ns or ev.observed_ns < t:
                continue
            stream = ctx.log.stream_open(t, certain=True) if p.mode == "stream" and lc is CONTAINER else None
            if stream is not None:
                how = "stream"
                deadline: int | None = t + p.stream_latency_ns + p.latency_allowance_ns
            else:
                how = "poll"
                deadline = _poll_deadline(ctx, lc, t)
            if deadline is not None and ctx.downtimes:  # the sensor was down: due after its first list again
                deadline = past_downtime(ctx.downtimes, t, deadline, ctx.slack)
            latency = ev.observed_ns - t
            lat.append(latency)
            by_how[how] += 1
            if deadline is not None and ev.observed_ns > deadline:
                vs.append(
                    Violation(
                        "G7",
                        f"{inc.label}: {ev.type} (seq {ev.seq}) came {ms(latency)} after the transition at {fmt(t)}; "
                        f"{how} bound was {ms(deadline - t)}",
                        (ev,),
                        inc.truth(tr) or inc.truth("destroyed"),
                    )
                )
    lat.sort()
    measures: dict[str, Any] = {
        "events_measured": len(lat),
        "via_poll": by_how["poll"],
        "via_stream": by_how["stream"],
        "poll_bound_ms": (p.poll_interval_ns + p.latency_allowance_ns) / 1e6,
        "stream_bound_ms": (p.stream_latency_ns + p.latency_allowance_ns) / 1e6,
    }
    for name, pct in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("max_ms", 100)):
        measures[name] = _percentile(lat, pct) / 1e6 if lat else None
    summary = (
        f"{len(lat)} events, latency p50 {measures['p50_ms']:.3f}ms p99 {measures['p99_ms']:.3f}ms "
        f"max {measures['max_ms']:.3f}ms"
        if lat
        else "no events to measure"
    )
    return GuaranteeResult("G7", not vs, vs, measures, summary)


# -- G8 measured blindness -----------------------------------------------------------------------


def g8_blindness(ctx: Context) -> GuaranteeResult:
    p, log = ctx.params, ctx.log
    period = p.poll_interval_ns
    vs: list[Violation] = []
    containers = next(pop for pop in ctx.pops if pop.lifecycle is CONTAINER)
    created_type = CONTAINER.event_type("created")
    total = missed = invisible = both = excluded = 0
    expected = var = 0.0
    missed_incs: list[Incarnation] = []
    for inc in containers.all:
        gone = inc.gone_ns
        if gone is None or inc.created_ns < ctx.start_ns or gone > ctx.end_ns:
            continue
        if (log.outage_overlapping(inc.created_ns, gone) is not None
                or lived_across(ctx.downtimes, inc.created_ns, gone)):
            excluded += 1
            continue
        total += 1
        prob = min(1.0, (gone - inc.created_ns) / period)
        expected += 1 - prob
        var += prob * (1 - prob)
        seen = inc.first_event(created_type) is not None
        visible = log.first_visible(inc) is not None
        missed += not seen
        invisible += not visible
        both += not seen and not visible
        if not seen:
            missed_incs.append(inc)
    sd = math.sqrt(var)
    allowed = expected + max(3 * sd, 2)
    stream_missed = 0
    if p.mode == "poll":
        if missed > allowed:
            worst = sorted(missed_incs, key=lambda i: i.created_ns - (i.gone_ns or 0))[:3]
            vs.append(
                Violation(
                    "G8",
                    f"missed {missed} of {total} completed containers, physics allows at most {allowed:.1f} "
                    f"(expected {expected:.1f} ± {sd:.1f} at poll_interval {ms(period)}); the sensor is blinder "
                    "than polling explains",
                    (),
                    tuple(r for inc in worst for r in inc.truth("created", "destroyed")),
                )
            )
    else:
        slack = p.stream_latency_ns + p.latency_allowance_ns + p.completeness_grace_ns
        for inc in containers.all:
            if inc.created_ns < ctx.start_ns or inc.created_ns + slack > ctx.end_ns:
                continue
            if lived_across(ctx.downtimes, inc.created_ns, inc.gone_ns or inc.created_ns):
                continue
            stream = log.stream_open(inc.created_ns, certain=True)
            if stream is None or inc.first_event(created_type) is not None:
                continue
            stream_missed += 1
            vs.append(
                Violation(
                    "G8",
                    f"{inc.label} was created at {ctx.fmt(inc.created_ns)} while an event stream was open, but got "
                    f"no {created_type}",
                    (),
                    (*inc.truth("created", "destroyed"), stream),
                )
            )
    measures = {
        "mode": p.mode,
        "total": total,
        "missed": missed,
        "invisible": invisible,
        "invisible_and_no_events": both,
        "visible_but_missed": missed - both,
        "excluded_outage": excluded,
        "actual_miss_rate": missed / total if total else 0.0,
        "expected_miss_rate": expected / total if total else 0.0,
        "expected_missed": expected,
        "stddev_missed": sd,
        "allowed_missed": allowed,
        "stream_missed": stream_missed,
    }
    return GuaranteeResult(
        "G8",
        not vs,
        vs,
        measures,
        f"missed {missed}/{total} completed containers (expected {expected:.1f} ± {sd:.1f}, "
        f"allowed {allowed:.1f}); {invisible} never visible",
    )


ALL = (g1_order, g2_completeness, g3_honest_flags, g4_true_times, g5_no_phantoms, g6_outages, g7_latency, g8_blindness)
