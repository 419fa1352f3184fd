"""G9, exactly once across sensor restarts: the sensor was killed and started again (``fakecri verify
--restart-sensor-at``) and its runs' outputs are judged as one stream (docs/guarantees.md).

A *downtime* is ``[down_ns, up_ns]``: from the kill to the restarted process's start
(``CheckParams.sensor_restarts``). The restarted sensor is blind until its first list after
``up_ns``; that list ends the *blind stretch*. Other guarantees make room for it: a deadline (G2, G7)
that falls in or after a blind stretch that began before it is moved to one poll interval (plus
allowance) after the first list that ends it, and G8 leaves out incarnations that lived across one.
A sighting shown to a sensor killed before the event it calls for was due, of an incarnation gone
before the restarted sensor's first list, creates no G2 duty: neither run could announce it.
What G9 itself requires:

* no type twice per incarnation across a restart (a restarted sensor re-announces nothing);
* ``seq`` strictly increasing across a restart (it continues);
* every downtime inside one ``sensor.gap`` window (the sensor had listed before it and listed again
  after it in time to say so);
* ends forged for incarnations gone during a downtime say ``why: "happened while the sensor was
  down"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .observations import RpcLog
from .report import GuaranteeResult, Violation

if TYPE_CHECKING:
    from .guarantees import Context

DOWN = "happened while the sensor was down"


@dataclass(frozen=True)
class Downtime:
    down_ns: int
    up_ns: int
    #: the first OK list after ``up_ns`` was taken / sent (None: it never listed again)
    relist_ns: int | None
    relist_end_ns: int | None


def downtimes(restarts: tuple[tuple[int, int], ...], log: RpcLog) -> list[Downtime]:
    out = []
    for down, up in sorted(restarts):
        after = log.any_list.first_after(up)
        out.append(Downtime(down, up, None if after is None else after[1].time_ns,
                            None if after is None else after[1].end_ns))  # type: ignore[union-attr]
    return out


def across(downs: list[Downtime], a: int, b: int) -> Downtime | None:
    """The downtime that began between two instants (``a < down_ns <= b``), if any."""
    for d in downs:
        if a < d.down_ns <= b:
            return d
    return None


def past_downtime(downs: list[Downtime], start: int, deadline: int, slack: int) -> int | None:
    """``deadline`` for something due from ``start``, moved past every blind stretch that begins
    before it ends: to ``slack`` after the list that ends the stretch. None: the sensor never
    listed again after it (nothing can be due)."""
    for d in downs:
        blind_end = d.relist_end_ns if d.relist_end_ns is not None else None
        if d.down_ns > deadline or (blind_end is not None and blind_end < start):
            continue
        if blind_end is None:
            return None
        deadline = max(deadline, blind_end + slack)
    return deadline


def unacted(downs: list[Downtime], t: int, gone_ns: int | None, slack: int) -> bool:
    """Whether a sighting at ``t`` creates no duty: it was shown to a sensor that was killed before
    the event was due (``t`` within ``slack`` before the kill, or after it: a stream the runtime had
    not yet seen closed), and the incarnation was gone before the restarted sensor's first list --
    what neither run could announce."""
    for d in downs:
        if d.down_ns - slack < t <= (d.relist_ns if d.relist_ns is not None else t):
            return gone_ns is not None and (d.relist_ns is None or gone_ns <= d.relist_ns)
    return False


def lived_across(downs: list[Downtime], lo: int, hi: int) -> bool:
    """Whether ``[lo, hi]`` overlaps a blind stretch (kill to the first list after the restart)."""
    return any(d.down_ns <= hi and lo <= (d.relist_end_ns if d.relist_end_ns is not None else hi) for d in downs)


def g9_restarts(ctx: Context) -> GuaranteeResult:
    fmt, log = ctx.fmt, ctx.log
    downs = ctx.downtimes
    vs: list[Violation] = []
    dups = [d for d in ctx.duplicates if d.restart is not None]
    for d in dups:
        r = d.restart
        assert r is not None
        vs.append(Violation(
            "G9",
            f"{d.inc.label}: {d.again.type} emitted again after the sensor restart at {fmt(r.down_ns)} (seq "
            f"{d.first.seq}, then seq {d.again.seq}): a restarted sensor must remember what it announced",
            (d.first, d.again), d.inc.truth(d.inc.lifecycle.transition_of(d.again.type))))
    seq_breaks = 0
    prev = None
    for ev in ctx.events:
        if prev is not None and ev.seq <= prev.seq:
            r = across(downs, prev.observed_ns, ev.observed_ns)
            if r is not None:
                seq_breaks += 1
                vs.append(Violation(
                    "G9", f"seq {ev.seq} follows seq {prev.seq} across the sensor restart at {fmt(r.down_ns)}: "
                          "seq must continue across restarts", (prev, ev)))
        prev = ev
    gaps = [ev for ev in ctx.events if ev.type == "sensor.gap"]
    required = relabel_checked = 0
    for d in downs:
        span = fmt.window((d.down_ns, d.up_ns))
        if d.relist_end_ns is None or d.relist_end_ns + ctx.slack > ctx.end_ns:
            continue  # it did not list again in time to say anything
        if not log.any_list.times or log.any_list.times[0] >= d.down_ns:
            continue  # it had not listed before it was killed: no visibility was lost
        required += 1
        covering = [g for g in gaps if g.window_ns[0] <= d.down_ns and d.up_ns <= g.window_ns[1]]
        if not covering:
            near = [g for g in gaps if g.window_ns[0] <= d.up_ns and d.down_ns <= g.window_ns[1]]
            vs.append(Violation(
                "G9", f"no single sensor.gap covers the sensor's downtime {span} (killed, then started again; it "
                      f"listed again at {fmt(d.relist_ns)}): a restarted sensor must state the interval it could not "
                      "see", tuple(near[:2])))
        for pop in ctx.pops:
            lc = pop.lifecycle
            for inc in pop.gone_between(d.down_ns, d.relist_ns or d.up_ns):
                if not any(e.observed_ns < d.down_ns for e in inc.events):
                    continue  # not announced before the kill: nothing of it to resume
                for ev in inc.events:
                    if ev.observed_ns < d.up_ns or not ev.synthetic:
                        continue
                    if ev.type not in (lc.event_type(lc.stop), lc.event_type("destroyed")):
                        continue
                    relabel_checked += 1
                    if DOWN in (ev.why or "").lower() or "reused" in (ev.why or ""):
                        continue
                    vs.append(Violation(
                        "G9", f"{inc.label} vanished while the sensor was down {span}, but its forged {ev.type} "
                              f"(seq {ev.seq}) says why={ev.why!r} instead of {DOWN!r}", (ev,),
                        inc.truth("destroyed")))
    return GuaranteeResult(
        "G9", not vs, vs,
        {"restarts": len(downs), "gaps_required": required, "duplicates_across_restarts": len(dups),
         "seq_breaks_across_restarts": seq_breaks, "forged_while_down_checked": relabel_checked},
        f"{len(downs)} sensor restart(s) ({required} needing a gap), {len(dups)} duplicates across them, "
        f"{seq_breaks} seq breaks")
