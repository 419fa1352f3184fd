"""A poll writes the events that need no status answer while its status calls are in flight
(``DiffEngine.finish_early``): under churn the writing overlaps the runtime's answers instead of
following them. The runtime here holds every ContainerStatus until the rest of the poll's events
are in the output (or a deadline passes); an emitter that journals whole polls gets them all at
once, after the answers."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest

from fakecri.server import CallPolicy
from sensor.output import Emitter
from tests.sensor.conftest import start_containers

MS = 1_000_000
WAIT_S = 1.0  # how long a held status call waits for the output to show the poll's other events (the rig's
# status deadline is 2 s)


class HoldStatus(CallPolicy):
    """Holds each ContainerStatus until ``ready()`` is true; records whether it became so."""

    def __init__(self) -> None:
        self.ready: object = None  # Callable[[], bool] | None
        self.seen: list[bool] = []

    def before_call(self, method: str, api: str, target: str | None) -> None:
        if method != "ContainerStatus" or self.ready is None:
            return
        deadline = time.monotonic() + WAIT_S
        while not self.ready() and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.005)
        self.seen.append(bool(self.ready()))  # type: ignore[operator]


class WholePolls(Emitter):
    whole_polls = True


def _types(out: io.StringIO, cid: str) -> list[str]:
    return [e["type"] for e in map(json.loads, out.getvalue().splitlines()) if e.get("container_id") == cid]


@pytest.mark.parametrize("whole", [False, True], ids=["early", "whole-polls"])
def test_events_that_need_no_status_are_written_while_the_status_calls_wait(rig, whole: bool) -> None:  # type: ignore[no-untyped-def]
    policy = HoldStatus()
    r = rig(policy=policy)
    m, clock, p = r.model, r.clock, r.poller
    if whole:
        p.emitter = WholePolls(r.out)
    sb = m.run_pod_sandbox("p", "ns", "u")
    ends = m.create_container(sb.id, "ends", 0, "busybox")
    m.start_container(ends.id)
    goes = m.create_container(sb.id, "goes", 0, "busybox")
    m.start_container(goes.id)
    assert p.step()  # the first snapshot: both running, no status asked
    clock.advance(250 * MS)
    m.exit_container(ends.id, 7)  # needs its status: the exit code
    m.exit_container(goes.id, 0)
    m.remove_container(goes.id)  # gone: ended from the list alone
    new = m.create_container(sb.id, "new", 0, "busybox")  # created: no status needed
    policy.ready = lambda: "container.destroyed" in _types(r.out, goes.id) and _types(r.out, new.id)
    done = threading.Event()
    stepper = threading.Thread(target=lambda: (p.step(), done.set()))
    stepper.start()
    stepper.join(10)
    assert done.is_set(), "the poll did not finish"
    assert policy.seen == [not whole], policy.seen
    assert _types(r.out, goes.id)[-2:] == ["container.exited", "container.destroyed"]
    assert _types(r.out, new.id) == ["container.created"]
    exited = [e for e in map(json.loads, r.out.getvalue().splitlines())
              if e.get("container_id") == ends.id and e["type"] == "container.exited"]
    assert [e["exit_code"] for e in exited] == [7]  # the awaited answer still reached its event
    seqs = [e["seq"] for e in map(json.loads, r.out.getvalue().splitlines())]
    assert seqs == sorted(set(seqs))


class SeenStatus(CallPolicy):
    """Records the IDs of the ContainerStatus calls the runtime has received."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def before_call(self, method: str, api: str, target: str | None) -> None:
        if method == "ContainerStatus" and target:
            self.asked.add(target)


def test_exits_statuses_are_asked_before_the_changed_entries_are_decoded(rig, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The fast path names the exits it sees in the changed entries' bytes (``FastPath.take``'s
    ``exits``) and their calls go out at once: decoding here waits until the runtime has the call."""
    import sensor.fastpath as fastpath

    policy = SeenStatus()
    r = rig(policy=policy)
    m, clock, p = r.model, r.clock, r.poller
    sb = m.run_pod_sandbox("p", "ns", "u")
    ends = m.create_container(sb.id, "ends", 0, "busybox")
    m.start_container(ends.id)
    assert p.step()  # the first snapshot; the next poll is a delta
    assert p.step()
    clock.advance(250 * MS)
    m.exit_container(ends.id, 3)
    waited: list[bool] = []
    wire = fastpath._CONTAINERS.wire
    plain = wire.decode_one

    def decode_one(pb, entry, tally=None):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + WAIT_S
        while ends.id not in policy.asked and time.monotonic() < deadline:
            time.sleep(0.005)
        waited.append(ends.id in policy.asked)
        return plain(pb, entry, tally)

    monkeypatch.setattr(wire, "decode_one", decode_one)
    assert p.step()
    assert waited == [True], "the exit's status was not asked before its entry was decoded"
    monkeypatch.undo()
    assert [e["exit_code"] for e in r.events() if e.get("container_id") == ends.id
            and e["type"] == "container.exited"] == [3]
    assert p.lists.counts["delta"] >= 1  # the path under test


def test_status_jobs_ask_only_what_the_early_exits_did_not() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sensor.poller import _StatusJobs
    from sensor.wire import Tally

    calls: list[tuple[list[str], int]] = []

    def run(ids: list[str], exits: int, t0: float, tally: Tally, issued: object) -> tuple[dict[str, None], None]:
        calls.append((ids, exits))
        issued()  # type: ignore[operator]
        tally.dropped[("container", "empty_id")] += 1
        return dict.fromkeys(ids), None

    with ThreadPoolExecutor(1) as pool:
        jobs = _StatusJobs(lambda: pool, run, 0.0)
        jobs.exits(["a", "b"])
        jobs.exits(["b", "x"])  # only x is new
        jobs.rest(["a", "c", "x", "s1", "b", "s2"], 3)  # exits a, c, x; then starts (and a stray b)
        jobs.wait_issued(time.monotonic() + 5)
        into = Tally()
        details, err = jobs.collect(into)
    assert calls == [(["a", "b"], 2), (["x"], 1), (["c", "s1", "s2"], 1)]
    assert set(details) == {"a", "b", "x", "c", "s1", "s2"} and err is None
    assert into.dropped[("container", "empty_id")] == 3


def test_start_times_are_asked_while_the_time_share_lasts_however_much_the_poll_has_to_write(
        rig, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The poll thread holds the GIL while it settles and writes a big poll; start times are asked
    only within ``status_time_share`` of the interval, so it lets the status thread issue them
    first (``_StatusJobs.wait_issued``). Here settling holds the GIL past the share, in one C call."""
    policy = SeenStatus()
    r = rig(policy=policy, poll_interval_ns=1_000 * MS)
    m, clock, p = r.model, r.clock, r.poller
    p.status_time_share = 0.3  # as crisensor run sets it: start times asked in the first 300 ms
    assert p.step()  # the first snapshot: nothing yet
    sb = m.run_pod_sandbox("p", "ns", "u")
    started = start_containers(m, sb.id, "c", 20)
    clock.advance(1_000 * MS)
    engine = p.engine
    plain = engine.finish_early

    def busy_finish_early(*args, **kwargs):  # type: ignore[no-untyped-def]
        sum(range(15_000_000))  # one C loop of ~0.45 s: no other thread runs meanwhile
        return plain(*args, **kwargs)

    monkeypatch.setattr(engine, "finish_early", busy_finish_early)
    assert p.step()
    assert set(started) <= policy.asked, f"{len(set(started) - policy.asked)} start times not asked"
    assert p.metrics.registry.get_sample_value("crisensor_status_skipped_total") == 0
