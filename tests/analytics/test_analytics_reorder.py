"""The reorder buffers (sensor/reorder.py): hypothesis properties for the fixed window and the
watermark, plus the edges (ties, window 0, overflow, hooks, flush)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.reorder import Released, ReorderBuffer, WatermarkReorder


@dataclass(frozen=True)
class Item:
    time_ns: int
    ident: int
    source: str = "a"

    def to_dict(self) -> dict[str, Any]:
        return {"time_ns": self.time_ns, "ident": self.ident}


def drive(buf: ReorderBuffer | WatermarkReorder, arrivals: list[tuple[int, Item]], batch: list[bool],
          end_ns: int) -> list[Released]:
    """Push items at their arrival (sorted), with an ``advance`` at every arrival; in batches where
    ``batch`` says so (push_many of every item with the same arrival), else one by one."""
    out: list[Released] = []
    i = 0
    n = 0
    while i < len(arrivals):
        now = arrivals[i][0]
        j = i
        while j < len(arrivals) and arrivals[j][0] == now:
            j += 1
        group = [it for _, it in arrivals[i:j]]
        out += buf.advance(now)  # what was due before these arrive
        if batch[n % len(batch)]:
            out += buf.push_many(group, now)
        else:
            for it in group:
                out += buf.push(it, now)
        out += buf.advance(now)
        i = j
        n += 1
    out += buf.advance(end_ns)
    return out


WINDOW = st.integers(min_value=0, max_value=50)


@st.composite
def bounded_input(draw: st.DrawFn, unbounded: bool = False) -> tuple[int, list[tuple[int, Item]], list[bool]]:
    window = draw(WINDOW)
    times = draw(st.lists(st.integers(min_value=0, max_value=100), max_size=60))
    max_delay = 200 if unbounded else window
    delays = draw(st.lists(st.integers(min_value=0, max_value=max_delay), min_size=len(times), max_size=len(times)))
    items = [Item(t, n) for n, t in enumerate(times)]
    # stable sort by arrival: the generation order breaks ties, so arrival order is known
    arrivals = sorted(((t + d, it) for it, t, d in zip(items, times, delays, strict=True)), key=lambda p: p[0])
    batch = draw(st.lists(st.booleans(), min_size=1, max_size=5))
    return window, arrivals, batch


@settings(max_examples=3 * settings.default.max_examples // 2, deadline=None)  # 300 in ci
@given(bounded_input())
def test_bounded_lateness_gives_sorted_complete_exactly_once_output(data: Any) -> None:
    window, arrivals, batch = data
    buf = ReorderBuffer(window)
    end = max((a for a, _ in arrivals), default=0) + window + 1
    out = drive(buf, arrivals, batch, end)
    # complete and exactly once
    assert sorted(r.item.ident for r in out) == sorted(it.ident for _, it in arrivals)
    # nothing late or forced
    assert not any(r.late or r.forced for r in out)
    # sorted by time_ns, ties in arrival order
    arrival_rank = {it.ident: k for k, (_, it) in enumerate(arrivals)}
    keys = [(r.item.time_ns, arrival_rank[r.item.ident]) for r in out]
    assert keys == sorted(keys)
    # each released at its slot: not before time + window, and at the first advance that reached it
    advances = sorted({a for a, _ in arrivals} | {end})
    for r in out:
        due = r.item.time_ns + window
        assert r.released_ns >= due
        assert r.released_ns == min(a for a in advances if a >= due)
    assert len(buf) == 0
    assert buf.stats["pushed"] == buf.stats["released"] == len(arrivals)


@settings(max_examples=3 * settings.default.max_examples // 2, deadline=None)  # 300 in ci
@given(bounded_input(unbounded=True))
def test_unbounded_lateness_drops_nothing_and_flags_exactly_the_out_of_slot_items(data: Any) -> None:
    window, arrivals, batch = data
    buf = ReorderBuffer(window)
    end = max((a for a, _ in arrivals), default=0) + window + 1
    out = drive(buf, arrivals, batch, end)
    assert sorted(r.item.ident for r in out) == sorted(it.ident for _, it in arrivals)
    arrival_of = {it.ident: a for a, it in arrivals}
    for r in out:
        assert r.late == (arrival_of[r.item.ident] > r.item.time_ns + window)
        if r.late:
            assert r.released_ns == arrival_of[r.item.ident]  # released at once
    assert not any(r.forced for r in out)
    # the in-order releases still form one sorted sequence
    arrival_rank = {it.ident: k for k, (_, it) in enumerate(arrivals)}
    keys = [(r.item.time_ns, arrival_rank[r.item.ident]) for r in out if not r.late]
    assert keys == sorted(keys)
    assert buf.stats["late"] == sum(r.late for r in out)


@settings(deadline=None)  # the profile's count: 200 in ci
@given(bounded_input(unbounded=True), st.integers(min_value=1, max_value=8))
def test_overflow_bounds_memory_counts_and_drops_nothing(data: Any, max_events: int) -> None:
    window, arrivals, _ = data
    seen: list[Released] = []
    buf = ReorderBuffer(window, max_events=max_events, on_overflow=seen.append)
    out: list[Released] = []
    for now, it in arrivals:
        out += buf.push(it, now)
        assert len(buf) <= max_events
    out += buf.flush(10_000)
    assert sorted(r.item.ident for r in out) == sorted(it.ident for _, it in arrivals)
    overflowed = [r for r in out if r.forced and r.released_ns < 10_000]
    assert buf.stats["overflow"] == len(overflowed) == len(seen)
    assert buf.stats["max_held"] <= max_events
    assert buf.stats["forced"] == buf.stats["overflow"] + buf.stats["flushed"]


def test_overflow_releases_the_oldest_held_item_early() -> None:
    buf = ReorderBuffer(100, max_events=2)
    assert buf.push(Item(50, 1), 0) == ()
    assert buf.push(Item(10, 2), 0) == ()
    (r,) = buf.push(Item(30, 3), 0)
    assert (r.item.ident, r.forced, r.late, r.released_ns) == (2, True, False, 0)
    (r,) = buf.push(Item(5, 4), 0)  # the new item is the oldest: it goes straight through
    assert (r.item.ident, r.forced) == (4, True)
    assert [x.item.ident for x in buf.advance(150)] == [3, 1]


def test_release_boundary_is_time_plus_window_inclusive() -> None:
    buf = ReorderBuffer(25)
    buf.push(Item(100, 1), 100)
    assert buf.advance(124) == []
    assert buf.next_release_ns() == 125
    (r,) = buf.advance(125)
    assert (r.item.ident, r.late, r.released_ns) == (1, False, 125)
    # arriving exactly at its slot is not late; one ns after is
    assert buf.push(Item(100, 2), 125) == ()
    (late,) = buf.push(Item(100, 3), 126)
    assert late.late and late.released_ns == 126
    assert [r.item.ident for r in buf.advance(126)] == [2]


def test_ties_keep_arrival_order_and_a_tie_after_release_is_not_late() -> None:
    buf = ReorderBuffer(10)
    buf.push_many([Item(5, 1), Item(5, 2)], 6)
    buf.push(Item(5, 3), 7)
    assert [r.item.ident for r in buf.advance(15)] == [1, 2, 3]
    assert buf.push(Item(5, 4), 15) == ()  # equal time, arrived later: still sorted after 1..3
    assert [r.item.ident for r in buf.advance(15)] == [4]


def test_window_zero_releases_at_the_event_time_and_clock_never_goes_back() -> None:
    buf = ReorderBuffer(0)
    buf.push(Item(10, 1), 10)
    assert [r.item.ident for r in buf.advance(10)] == [1]
    buf.advance(20)
    (r,) = buf.push(Item(15, 2), 12)  # a stale now_ns is read as the clock (20): late
    assert r.late and r.released_ns == 20
    assert buf.now_ns == 20


def test_late_hook_stats_and_to_dict() -> None:
    late: list[Released] = []
    buf = ReorderBuffer(5, on_late=late.append)
    buf.advance(100)
    (r,) = buf.push(Item(1, 1), 100)
    assert late == [r]
    assert r.to_dict() == {"time_ns": 1, "ident": 1, "late": True, "forced": False, "released_ns": 100}
    assert r.time_ns == 1
    assert buf.stats == {"pushed": 1, "released": 1, "held": 0, "max_held": 0, "late": 1, "forced": 0,
                         "overflow": 0, "capped": 0, "flushed": 0}


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="window_ns"):
        ReorderBuffer(-1)
    with pytest.raises(ValueError, match="max_events"):
        ReorderBuffer(1, max_events=0)
    with pytest.raises(ValueError, match="max_delay_ns"):
        WatermarkReorder(["a"], max_delay_ns=-1)


# --- watermark --------------------------------------------------------------------------------------


@st.composite
def watermark_input(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, Any]]]:
    """A script of ("push", Item) and ("progress", (source, t)) steps where every source keeps its
    promise: it reports progress p only after pushing all its items with time <= p."""
    sources = draw(st.lists(st.sampled_from(["poll", "stream", "proc"]), min_size=1, max_size=3, unique=True))
    script: list[tuple[str, Any]] = []
    ident = 0
    for src in sources:
        times = sorted(draw(st.lists(st.integers(min_value=0, max_value=100), max_size=20)))
        # each source delivers its items in any order within chunks, then reports progress to
        # just below the next chunk's earliest time
        cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(times)), max_size=4)))
        chunks = [times[a:b] for a, b in zip([0, *cuts], [*cuts, len(times)], strict=True)]
        steps: list[tuple[str, Any]] = []
        for k, chunk in enumerate(chunks):
            chunk = draw(st.permutations(chunk))
            for t in chunk:
                steps.append(("push", Item(t, ident, src)))
                ident += 1
            later = [c for c in chunks[k + 1:] if c]
            p = (min(later[0]) - 1) if later else 1000
            steps.append(("progress", (src, p)))
        script.append(("source", steps))
    # interleave the sources' scripts, keeping each one's own order
    merged: list[tuple[str, Any]] = []
    queues = [steps for _, steps in script]
    while any(queues):
        k = draw(st.sampled_from([i for i, q in enumerate(queues) if q]))
        merged.append(queues[k].pop(0))
    return sources, merged


@settings(deadline=None)  # the profile's count: 200 in ci
@given(watermark_input())
def test_watermark_releases_as_soon_as_every_source_passed_and_in_order(data: Any) -> None:
    sources, script = data
    buf = WatermarkReorder(sources, max_delay_ns=None)
    out: list[Released] = []
    progress = dict.fromkeys(sources, None)
    pushed: list[Item] = []
    for now, (kind, arg) in enumerate(script):
        if kind == "push":
            out += buf.push(arg, now)
            pushed.append(arg)
        else:
            buf.progress(*arg)
            progress[arg[0]] = arg[1]
        out += buf.advance(now)
        wm = None if None in progress.values() else min(progress.values())  # type: ignore[type-var]
        # as soon as: nothing held is at or below the watermark
        if wm is not None:
            assert all(it.time_ns > wm for it in _held(buf, pushed, out))
        else:
            assert out == []
    assert sorted(r.item.ident for r in out) == sorted(it.ident for it in pushed)  # all sources end at 1000
    assert not any(r.late or r.forced for r in out)
    rank = {it.ident: k for k, it in enumerate(pushed)}
    keys = [(r.item.time_ns, rank[r.item.ident]) for r in out]
    assert keys == sorted(keys)


def _held(buf: WatermarkReorder, pushed: list[Item], out: list[Released]) -> list[Item]:
    gone = {r.item.ident for r in out}
    held = [it for it in pushed if it.ident not in gone]
    assert len(held) == len(buf)
    return held


def test_watermark_waits_for_the_slowest_source_then_releases_at_once() -> None:
    buf = WatermarkReorder(["poll", "proc"], max_delay_ns=None)
    buf.push_many([Item(10, 1), Item(30, 2), Item(20, 3)], 35)
    buf.progress("poll", 100)
    assert buf.advance(35) == [] and buf.watermark_ns is None
    buf.progress("proc", 25)
    assert [r.item.ident for r in buf.advance(36)] == [1, 3]
    assert buf.watermark_ns == 25
    buf.progress("proc", 24)  # progress never goes back
    assert buf.sources == {"poll": 100, "proc": 25}
    # a broken promise is late; a tie with the watermark is not (still sorted)
    (late,) = buf.push(Item(24, 4), 37)
    assert late.late
    assert buf.push(Item(25, 5), 37) == ()
    assert [r.item.ident for r in buf.advance(37)] == [5]


def test_watermark_cap_forces_release_after_max_delay() -> None:
    buf = WatermarkReorder(["stuck"], max_delay_ns=50)
    buf.push(Item(10, 1), 12)
    assert buf.next_release_ns() == 60
    assert buf.advance(59) == []
    (r,) = buf.advance(60)
    assert (r.item.ident, r.forced, r.late) == (1, True, False)
    assert buf.stats["capped"] == 1 == buf.stats["forced"]
    (late,) = buf.push(Item(9, 2), 60)  # its cap has passed as well: late
    assert late.late


def test_watermark_sources_register_unregister_and_unknown() -> None:
    buf = WatermarkReorder(["poll"], max_delay_ns=None)
    buf.push(Item(10, 1), 0)
    buf.progress("poll", 10)
    buf.register("stream")
    assert buf.watermark_ns == 10  # the newcomer cannot un-release; it holds the watermark
    buf.push(Item(20, 2), 0)
    buf.progress("poll", 30)
    assert [r.item.ident for r in buf.advance(1)] == [1]
    buf.unregister("stream")  # the stream ended: the watermark jumps to poll's progress
    assert [r.item.ident for r in buf.advance(2)] == [2]
    with pytest.raises(KeyError, match="unknown source 'nope'"):
        buf.progress("nope", 1)
    with pytest.raises(ValueError, match="already registered"):
        buf.register("poll")


def test_flush_releases_everything_held_forced_in_order() -> None:
    buf = ReorderBuffer(100)
    buf.push_many([Item(50, 1), Item(10, 2), Item(200, 3)], 60)
    out = buf.flush(110)
    assert [(r.item.ident, r.forced) for r in out] == [(2, False), (1, True), (3, True)]
    assert buf.stats["flushed"] == 2 and len(buf) == 0


# --- edges found by mutation testing (docs/guarantees.md, "Mutation scores") ----------------------


def test_push_many_overflow_is_push_overflow() -> None:
    """A batch that does not fit releases the oldest held items at once, forced, through the hook --
    the same as pushing the batch one by one."""
    batch = [Item(50, 1), Item(10, 2), Item(30, 3), Item(5, 4), Item(40, 5)]
    results = []
    for many in (True, False):
        hooked: list[Released] = []
        buf = ReorderBuffer(100, max_events=2, on_overflow=hooked.append)
        buf.push(Item(20, 0), 0)
        out = buf.push_many(batch, 0) if many else [r for it in batch for r in buf.push(it, 0)]
        assert hooked == out and all(r.forced and not r.late and r.released_ns == 0 for r in out)
        assert len(buf) == 2 and buf.stats["overflow"] == 4
        results.append(([r.item.ident for r in out], [r.item.ident for r in buf.flush(1000)]))
    assert results[0] == results[1] == ([2, 0, 4, 3], [5, 1])
    buf = ReorderBuffer(100, max_events=3)
    (r,) = buf.push_many([Item(40, 1), Item(30, 2), Item(20, 3), Item(50, 4)], 0)  # fills every free slot first
    assert r.item.ident == 3 and len(buf) == 3


def test_advance_returns_in_order_and_capped_items_together() -> None:
    buf = WatermarkReorder(["poll"], max_delay_ns=50)
    buf.push_many([Item(10, 1), Item(40, 2)], 10)
    buf.progress("poll", 10)
    out = buf.advance(95)  # 1 is below the watermark, 2 is past its cap
    assert [(r.item.ident, r.forced, r.released_ns) for r in out] == [(1, False, 95), (2, True, 95)]
    buf.push(Item(100, 3), 95)
    assert [r.item.ident for r in buf.advance(150)] == [3]
    assert buf.stats["capped"] == 2  # counted across advances


def test_flush_counts_accumulate_and_flushed_items_are_not_late() -> None:
    buf = ReorderBuffer(100)
    for k in range(2):
        buf.push(Item(10 + k, k), 0)
        (r,) = buf.flush(5)
        assert (r.late, r.forced, r.released_ns) == (False, True, 5)
    assert buf.stats["flushed"] == 2


def test_next_release_is_none_when_nothing_can_release() -> None:
    assert ReorderBuffer(7).next_release_ns() is None
    wm = WatermarkReorder(["a"], max_delay_ns=None)
    assert wm.next_release_ns() is None
    wm.push(Item(5, 1), 0)
    assert wm.next_release_ns() is None  # no cap: only progress releases it
    assert WatermarkReorder(["a"]).next_release_ns() is None
    assert ReorderBuffer(7).window_ns == 7


def test_watermark_parameters_and_hooks() -> None:
    late: list[Released] = []
    over: list[Released] = []
    buf = WatermarkReorder(["a"], max_delay_ns=0, max_events=1, on_overflow=over.append, on_late=late.append)
    assert buf.max_delay_ns == 0  # zero is a valid cap: release at the item's time
    buf.push(Item(10, 1), 5)
    (o,) = buf.push(Item(11, 2), 5)
    assert over == [o] and o.item.ident == 1
    (lt,) = buf.push(Item(1, 3), 5)
    assert late == [lt] and lt.late


def test_watermark_register_with_progress_and_no_sources() -> None:
    buf = WatermarkReorder([], max_delay_ns=None)
    assert buf.watermark_ns is None and buf.sources == {}
    buf.register("poll", 40)
    assert buf.watermark_ns == 40 and buf.sources == {"poll": 40}
    buf.unregister("poll")  # the last source gone: the watermark stays where it was
    assert buf.watermark_ns == 40 and buf.sources == {}


def test_the_watermark_makes_items_late_even_within_the_cap() -> None:
    """Late threshold = max(watermark, clock - max_delay): below the watermark is late although the
    cap has not passed."""
    buf = WatermarkReorder(["a"], max_delay_ns=1000)
    buf.progress("a", 50)
    buf.advance(60)
    (r,) = buf.push(Item(49, 1), 60)
    assert r.late
    assert buf.push(Item(50, 2), 60) == ()
    assert buf.push_many([Item(30, 3), Item(51, 4)], 61)[0].item.ident == 3
