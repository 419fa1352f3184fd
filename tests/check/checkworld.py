"""Test helpers for the guarantee checker: hand-built truth, and a simulated perfect sensor.

``World`` builds ground truth by hand (times in ms after ``T0``). ``simulate`` then plays a
polling sensor against it: every ``poll_ms`` it "calls" ListPodSandbox + ListContainers (and
ContainerStatus for containers whose state changed), which adds the ``rpc`` records a fake runtime
would write, and diffs snapshots the way DESIGN.md describes, producing the events a correct
sensor would write. It is written independently of ``fakecri.check`` on purpose: it is the
reference the checker is tested against.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fakecri.clock import VIRTUAL_EPOCH_NS
from fakecri.truth import (
    ContainerTransition,
    FaultWindow,
    PodRef,
    RpcServed,
    RuntimeTransition,
    SandboxTransition,
    TruthRecord,
)
from sensor.events import Event

MS = 1_000_000
T0 = VIRTUAL_EPOCH_NS

VANISHED = "vanished during outage"

ORDER = {
    "container": ("created", "running", "exited", "destroyed"),
    "sandbox": ("ready", "notready", "destroyed"),
}
STOP = {"container": "exited", "sandbox": "notready"}


def at(ms: float) -> int:
    """``ms`` after T0, in ns."""
    return T0 + round(ms * MS)


@dataclass
class World:
    """Ground truth by hand. Times are ms after T0; ``None`` = the transition does not happen."""

    records: list[TruthRecord] = field(default_factory=list)

    def container(self, cid, created, running=None, exited=None, destroyed=None, *, sandbox="sb1", exit_code=0):
        for tr, t in (("created", created), ("running", running), ("exited", exited), ("destroyed", destroyed)):
            if t is None:
                continue
            extra = {}
            if tr == "created":
                extra = {"name": f"name-{cid}", "image": "busybox", "pod": PodRef("pod", "default", "uid-1")}
            if tr == "exited":
                extra = {"exit_code": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}
            self.records.append(ContainerTransition(cid, tr, at(t), sandbox, **extra))
        return self

    def sandbox(self, sid, ready, notready=None, destroyed=None):
        for tr, t in (("ready", ready), ("notready", notready), ("destroyed", destroyed)):
            if t is not None:
                self.records.append(SandboxTransition(sid, tr, at(t), pod=PodRef("pod", "default", sid)))
        return self

    def runtime(self, down, up=None, state_kept=True):
        self.records.append(RuntimeTransition("down", at(down), state_kept))
        if up is not None:
            self.records.append(RuntimeTransition("up", at(up), state_kept))
        return self

    def fault(self, name, start, stop=None):
        self.records.append(FaultWindow(name, "start", at(start)))
        if stop is not None:
            self.records.append(FaultWindow(name, "stop", at(stop)))
        return self

    def rpc(self, method, t, code="OK", *, target=None, dur=1.0, end=None):
        self.records.append(RpcServed(method, "v1", at(t), at(end) if end is not None else at(t + dur), code, target))
        return self

    def down_between(self, t: int) -> bool:
        downs = sorted(
            ((r.time_ns, r.transition) for r in self.records if isinstance(r, RuntimeTransition)),
            key=lambda x: x[0],  # stable: record order breaks ties
        )
        state = "up"
        for when, tr in downs:
            if when > t:
                break
            state = tr
        return state == "down"


@dataclass
class _Inc:
    kind: str
    id: str
    times: dict[str, int]

    def exists(self, t: int, tie_before: bool) -> bool:
        c, d = self.times[ORDER[self.kind][0]], self.times.get("destroyed")
        if tie_before:
            return c < t and (d is None or t <= d)
        return c <= t and (d is None or t < d)

    def state(self, t: int, tie_before: bool) -> str:
        s = ORDER[self.kind][0]
        for tr in ORDER[self.kind]:
            when = self.times.get(tr)
            if when is not None and (when < t if tie_before else when <= t):
                s = tr
        return s

    def happened(self, tr: str, t: int, tie_before: bool) -> int | None:
        when = self.times.get(tr)
        if when is None:
            return None
        return when if (when < t if tie_before else when <= t) else None


def incarnations(records: list[TruthRecord]) -> list[_Inc]:
    out: list[_Inc] = []
    cur: dict[tuple[str, str], _Inc] = {}
    for r in sorted(
        (r for r in records if isinstance(r, ContainerTransition | SandboxTransition)), key=lambda r: r.time_ns
    ):
        oid = r.container_id if isinstance(r, ContainerTransition) else r.sandbox_id
        key = (r.kind, oid)
        if r.transition == ORDER[r.kind][0]:
            cur[key] = _Inc(r.kind, oid, {})
            out.append(cur[key])
        cur[key].times[r.transition] = r.time_ns
    return out


@dataclass
class _Seen:
    inc: _Inc
    state: str
    last_t: int
    emitted: set[str] = field(default_factory=set)


@dataclass
class Sim:
    """The result of :func:`simulate`: full truth (with rpc records) and the perfect events."""

    truth: list[TruthRecord]
    events: list[Event]
    poll_times: list[int]


def simulate(
    world: World,
    *,
    poll_ms: float = 100,
    until_ms: float = 1000,
    phase_ms: float = 0,
    fail_polls: frozenset[int] | set[int] = frozenset(),
    status: bool = True,
    tie_before: bool = False,
    rpc_ms: float = 1,
) -> Sim:
    """Play a correct polling sensor against ``world``.

    Poll ``k`` is at ``phase_ms + k * poll_ms``; it fails if ``k`` is in ``fail_polls`` (an
    UNAVAILABLE ListPodSandbox is recorded) or the runtime is down then (nothing is recorded).
    ``tie_before`` decides which side of a transition an answer taken at the same ns shows.
    """
    incs = incarnations(world.records)
    rpcs: list[TruthRecord] = []
    events: list[Event] = []
    known: dict[tuple[str, str], _Seen] = {}
    rpc_ns = round(rpc_ms * MS)
    last_ok: int | None = None
    blind_since: int | None = None
    connected = False
    polls = []

    def emit(
        t_obs: int, type_: str, oid: str | None, kind: str | None, time_ns: int, window, *, synthetic=False, why=None
    ):
        events.append(
            Event(
                type=type_,
                time_ns=time_ns,
                window_ns=(window[0], window[1]),
                observed_ns=t_obs,
                source="poll",
                container_id=oid if kind == "container" else None,
                sandbox_id=oid if kind == "sandbox" else None,
                synthetic=synthetic,
                why=why,
                seq=len(events) + 1,
            )
        )

    k = 0
    while True:
        t = at(phase_ms + k * poll_ms)
        if t > at(until_ms):
            break
        polls.append(t)
        if world.down_between(t):
            blind_since = blind_since if blind_since is not None else (last_ok if last_ok is not None else t)
            k += 1
            continue
        if k in fail_polls:
            rpcs.append(RpcServed("ListPodSandbox", "v1", t, t + rpc_ns, "UNAVAILABLE"))
            blind_since = blind_since if blind_since is not None else (last_ok if last_ok is not None else t)
            k += 1
            continue
        rpcs.append(RpcServed("ListPodSandbox", "v1", t, t + rpc_ns, "OK"))
        rpcs.append(RpcServed("ListContainers", "v1", t, t + rpc_ns, "OK"))
        obs = t + rpc_ns + MS
        if not connected:
            emit(obs, "sensor.connected", None, None, t, (t, t))
            connected = True
        if blind_since is not None:
            emit(obs, "sensor.gap", None, None, blind_since, (blind_since, t))
        vanished = blind_since is not None
        blind_since = None
        last_ok = t
        now = {(i.kind, i.id): i for i in incs if i.exists(t, tie_before)}
        # gone (or replaced by a new incarnation of the same ID): forge what was not seen
        for key, seen in list(known.items()):
            cur = now.get(key)
            if cur is seen.inc:
                continue
            kind, oid = key
            stop = STOP[kind]
            if stop not in seen.emitted:
                why = (
                    VANISHED
                    if vanished
                    else ("exited and removed between polls" if kind == "container" else "removed between polls")
                )
                emit(obs, f"{kind}.{stop}", oid, kind, t, (seen.last_t, t), synthetic=True, why=why)
            emit(obs, f"{kind}.destroyed", oid, kind, t, (seen.last_t, t))
            del known[key]
        for key, inc in sorted(now.items(), key=lambda kv: (kv[0][0] != "sandbox", kv[0][1])):
            kind, oid = key
            state = inc.state(t, tie_before)
            seen = known.get(key)
            first = ORDER[kind][0]
            if seen is None:
                c = inc.times[first]
                why = None if state == first else f"{first} and changed state between polls"
                emit(obs, f"{kind}.{first}", oid, kind, c, (c, c), synthetic=state != first, why=why)
                seen = known[key] = _Seen(inc, first, c, {first})
            if state == seen.state:
                seen.last_t = t
                continue
            if kind == "container":
                started = finished = None
                if status:
                    rpcs.append(RpcServed("ContainerStatus", "v1", t, t + rpc_ns, "OK", oid))
                    started = inc.happened("running", t, tie_before)
                    finished = inc.happened("exited", t, tie_before)
                ran = state == "running" or started is not None
                if "running" not in seen.emitted and ran:
                    win = (started, started) if started is not None else (seen.last_t, t)
                    emit(
                        obs,
                        "container.running",
                        oid,
                        kind,
                        win[1],
                        win,
                        synthetic=state != "running",
                        why=None if state == "running" else "started and exited between polls",
                    )
                    seen.emitted.add("running")
                if state == "exited":
                    win = (finished, finished) if finished is not None else (seen.last_t, t)
                    emit(obs, "container.exited", oid, kind, win[1], win)
                    seen.emitted.add("exited")
            elif state == "notready":
                emit(obs, "sandbox.notready", oid, kind, t, (seen.last_t, t))
                seen.emitted.add("notready")
            seen.state = state
            seen.last_t = t
        k += 1
    truth = sorted([*world.records, *rpcs], key=lambda r: r.time_ns)
    return Sim(truth, events, polls)


def renumber(events: list[Event]) -> list[Event]:
    """Give events consecutive seqs in list order (after a test has edited the list)."""
    return [dataclasses.replace(e, seq=i + 1) for i, e in enumerate(events)]


def find(events: list[Event], type_: str, oid: str | None = None, nth: int = 0) -> int:
    """Index of the ``nth`` event of ``type_`` (for ``oid``) in ``events``."""
    hits = [
        i for i, e in enumerate(events) if e.type == type_ and (oid is None or oid in (e.container_id, e.sandbox_id))
    ]
    return hits[nth]
