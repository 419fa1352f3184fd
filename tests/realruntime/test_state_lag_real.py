"""G4 against the runtime's own times, on REAL containerd 1.6, 1.7 and 2.1 (issue 15, state lag).

Real containerd keeps listing a container RUNNING for tens of milliseconds after its process
exited (the shim reports the exit asynchronously), so the ``finished_at`` it reports afterwards can
lie before the last poll that showed the container running. The sensor's windows are a promise:
here they are held against what the runtime itself says.

Churn: three workers, each in its own pod, start busybox containers that live 0 to 1 s and exit
with codes 0-255, wait until containerd shows EXITED (as the issue's measurement did; a removal
racing the exit fails on 1.7/2.x), read ContainerStatus and remove them. Three sensors (the real
``Poller`` + ``DiffEngine`` with the shipped ``crisensor.state_lag``) poll the same runtime at 50,
150 and 250 ms. For every container event the runtime's own time -- ``created_at``,
``started_at``, ``finished_at`` -- must lie in ``window_ns``; for ``destroyed`` the window must meet
the [sent, received] span of the RemoveContainer call; sandboxes alike (``created_at`` for ready,
the StopPodSandbox/RemovePodSandbox spans). A fourth sensor without the bound (``state_lag: 0``,
the engine before issue 15) runs alongside and its misses are printed, not asserted (they depend on
timing): on this machine it missed in most runs.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from crisensor_realruntime.cri import Cri

from sensor.client import CriClient
from sensor.config import SensorConfig
from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.output import Emitter
from sensor.poller import Poller

pytestmark = [pytest.mark.realruntime, pytest.mark.slow]

MS = 1_000_000
POLLS_MS = (50, 150, 250)
WORKERS = 3
CHURN_S = 5.0


@dataclass
class Truth:
    """What the runtime reported per object, and the spans of the test's own calls."""

    times: dict[tuple[str, str], int] = field(default_factory=dict)  # (id, transition) -> reported ns
    spans: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # (id, transition) -> call span
    codes: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    sent = time.time_ns()
    out = fn(*args, **kwargs)
    return out, (sent, time.time_ns())


def _remove(cri: Cri, cid: str) -> tuple[int, int]:
    """RemoveContainer, retried while it races the exit (UNKNOWN "container is still running")."""
    for _ in range(100):
        try:
            _, span = _timed(cri.rt.RemoveContainer, cri.pb.RemoveContainerRequest(container_id=cid), timeout=30)
            return span
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNKNOWN or "still running" not in (e.details() or ""):
                raise
            time.sleep(0.01)
    raise AssertionError(f"RemoveContainer {cid} kept racing the exit")


def churn_worker(cri: Cri, k: int, truth: Truth, rng: random.Random, until: float) -> None:
    pb = cri.pb
    (sid, pod), span = _timed(cri.run_pod, f"lag-{k}-{time.time_ns() % 10**6}")
    st = cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=10).status
    with truth.lock:
        truth.times[(sid, "ready")] = st.created_at
    n = 0
    while time.monotonic() < until:
        life = rng.choice([0.0, 0.0, rng.uniform(0, 0.3), rng.uniform(0, 1.0)])
        code = rng.randrange(256)
        cmd = ["sh", "-c", f"exit {code}"] if life == 0 else ["sh", "-c", f"sleep {life:.3f}; exit {code}"]
        cid = cri.run_container(sid, pod, f"c{n}", cmd)
        n += 1
        st = cri.wait_exited(cid)
        span = _remove(cri, cid)
        with truth.lock:
            truth.times[(cid, "created")] = st.created_at
            truth.times[(cid, "running")] = st.started_at
            truth.times[(cid, "exited")] = st.finished_at
            truth.spans[(cid, "destroyed")] = span
            truth.codes[cid] = st.exit_code
    _, stop = _timed(cri.rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    _, rm = _timed(cri.rt.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    with truth.lock:
        truth.spans[(sid, "notready")] = stop
        truth.spans[(sid, "destroyed")] = rm


@contextlib.contextmanager
def sensors(addr: str, lags_ns: list[tuple[int, int]]) -> Iterator[list[list[Event]]]:
    """One polling sensor per (poll interval, state lag bound), each in its own thread."""
    stop = threading.Event()
    threads, clients, outs = [], [], []
    for poll_ns, lag_ns in lags_ns:
        client = CriClient(addr, api_preference=("v1",), rpc_timeout_s=5.0)
        events: list[Event] = []
        emitter = Emitter()
        emitter.listeners.append(events.append)
        poller = Poller(client, emitter, poll_interval_ns=poll_ns, events="off",
                        engine=DiffEngine(state_lag_ns=lag_ns))
        t = threading.Thread(target=poller.run, args=(stop,), daemon=True)
        t.start()
        threads.append(t)
        clients.append(client)
        outs.append(events)
    try:
        yield outs
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for c in clients:
            c.close()


def misses(events: list[Event], truth: Truth) -> list[str]:
    out = []
    for e in events:
        oid = e.container_id or e.sandbox_id
        tr = e.type.split(".", 1)[1]
        if oid is None or e.type.startswith("sensor."):
            continue
        lo, hi = e.window_ns
        t = truth.times.get((oid, tr))
        if t:
            if not lo <= t <= hi:
                off = (lo - t) if t < lo else (t - hi)
                side = "before" if t < lo else "after"
                out.append(f"{e.type} {oid[:12]} window misses the runtime's time by {off / MS:.1f} ms ({side};"
                           f" window {(hi - lo) / MS:.1f} ms, time_ns - runtime's {(e.time_ns - t) / MS:.1f} ms,"
                           f" synthetic={e.synthetic}, source={e.source})")
            continue
        span = truth.spans.get((oid, tr))
        if span is not None and (hi < span[0] or lo > span[1]):
            out.append(f"{e.type} {oid[:12]} window misses the call that made it")
    return out


@pytest.mark.parametrize("release", ["1.6", "1.7", "2.1"])
def test_windows_hold_the_runtimes_own_times(release, request):
    fixture = {"1.6": "real_containerd", "1.7": "containerd_17", "2.1": "containerd_21"}[release]
    handle = request.getfixturevalue(fixture)
    bound = SensorConfig().state_lag_ns
    truth = Truth()
    until = time.monotonic() + CHURN_S
    specs = [(p * MS, bound) for p in POLLS_MS] + [(100 * MS, 0)]
    with sensors(handle.addr, specs) as outs:
        time.sleep(0.3)  # every sensor has its first snapshot
        workers = []
        for k in range(WORKERS):
            cri = Cri(handle, "v1")
            t = threading.Thread(target=churn_worker, args=(cri, k, truth, random.Random(f"{release}-{k}"), until))
            t.start()
            workers.append((t, cri))
        for t, cri in workers:
            t.join(120)
            cri.close()
        time.sleep(0.6)  # two slow polls after the last removal
    exits = sum(1 for (_, tr) in truth.times if tr == "exited")
    lags = sorted(t for (oid, tr), t in truth.times.items() if tr == "exited")
    assert exits >= 10 and lags
    report = []
    for (poll_ns, lag_ns), events in zip(specs, outs, strict=True):
        got = misses(events, truth)
        forged = sum(1 for e in events if e.type == "container.exited" and e.synthetic)
        seen = {e.container_id for e in events if e.type == "container.created"}
        report.append((poll_ns, lag_ns, len(events), forged, got, seen))
    print(f"\ncontainerd {release}: {exits} containers churned")
    for poll_ns, lag_ns, n, forged, got, _ in report:
        print(f"  poll {poll_ns // MS} ms, state_lag {lag_ns // MS} ms: {n} events, {forged} forged exits, "
              f"{len(got)} windows missing the runtime's time" + (f" (e.g. {got[0]})" if got else ""))
    for poll_ns, lag_ns, _, _, got, seen in report:
        if lag_ns:
            assert not got, f"poll {poll_ns // MS} ms: " + "; ".join(got[:5])
            assert seen <= {cid for (cid, tr) in truth.times if tr == "created"}  # no phantoms (G8 may miss some)
