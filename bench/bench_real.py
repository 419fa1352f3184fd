"""Benchmark: real containerd 1.6 / 1.7 / 2.1 -- state lag, and transition -> sensor output latency.

    python -m bench.bench_real [--releases 1.6,1.7,2.1] [--containers 20] [--duration 8s] [--json FILE]

Needs root (a private containerd per release: scripts/realruntime, docs/realruntime.md); 1.7 and
2.1 are fetched from Debian trixie/sid into /var/cache/crisensor-containerd on first use.

**State lag** (DESIGN.md section 6): ``--containers`` busybox containers (``sh -c 'sleep 0.X'``) run
one after the other while this process asks ``ContainerStatus`` every 2 ms; the lag is the time
from the ``finished_at`` containerd reports to the first answer that shows EXITED. Where the
runtime streams (1.7, 2.1), the arrival of its ``CONTAINER_STOPPED_EVENT`` minus ``finished_at`` too.

**Latency**: the real sensor (``Poller.run``, fast path, one ``CriClient``) watches the runtime
while three workers churn containers (lives 0-1 s, removed once EXITED) for ``--duration``:
polling at 100 ms (``events: off``) and, where offered, streaming (``events: on``). Latency =
``observed_ns`` of the sensor's event minus the runtime's own time of the transition
(``created_at``, ``started_at``, ``finished_at``; for ``destroyed`` the end of the RemoveContainer
call), per container event the sensor reported. The runtime's own lag is part of it: it is what
an operator waits for.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import write_result
from bench.bench_poll import machine

DEFAULT_JSON = Path(__file__).parent / "results" / "real.json"
MS = 1_000_000
TRANSITIONS = ("created", "running", "exited", "destroyed")


def realruntime() -> Any:
    """scripts/realruntime as the package ``crisensor_realruntime`` (as tests/realruntime loads it)."""
    name = "crisensor_realruntime"
    if name not in sys.modules:
        pkg = Path(__file__).resolve().parents[1] / "scripts" / "realruntime"
        spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    import crisensor_realruntime.containerd as rr  # type: ignore[import-not-found]
    import crisensor_realruntime.cri as cri  # type: ignore[import-not-found]

    return rr, cri


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q / 100 * len(v)) - 1))]


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": pct(values, 50), "p99_ms": pct(values, 99), "max_ms": max(values, default=None)}


# --- state lag ------------------------------------------------------------------------------------


def stream_stops(addr: str, stop: threading.Event, out: dict[str, int]) -> threading.Thread:
    """Record when each CONTAINER_STOPPED_EVENT arrives (v1 GetContainerEvents)."""
    import grpc

    import cri_api

    mods = cri_api.api("v1")
    channel = grpc.insecure_channel(addr)
    stub = mods.pb2_grpc.RuntimeServiceStub(channel)
    call = stub.GetContainerEvents(mods.pb2.GetEventsRequest())

    def run() -> None:
        with contextlib.suppress(grpc.RpcError):
            for ev in call:
                if ev.container_event_type == 2:  # CONTAINER_STOPPED_EVENT
                    out.setdefault(ev.container_id, time.time_ns())
                if stop.is_set():
                    break
        channel.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    stop_cb = stop.set
    t.cancel = lambda: (stop_cb(), call.cancel())  # type: ignore[attr-defined]
    return t


def measure_lag(handle: Any, cri_mod: Any, n: int, streams: bool) -> dict[str, Any]:
    c = cri_mod.Cri(handle, "v1")
    sid, pod = c.run_pod(f"lag-{time.time_ns() % 10**6}")
    arrivals: dict[str, int] = {}
    stop = threading.Event()
    reader = stream_stops(handle.addr, stop, arrivals) if streams else None
    status_lag, stream_lag = [], []
    rng = random.Random(1)
    try:
        for i in range(n):
            life = rng.choice([0.0, 0.05, 0.2])
            cid = c.run_container(sid, pod, f"c{i}", ["sh", "-c", f"sleep {life}"])
            while True:
                st = c.status(cid).status
                seen = time.time_ns()
                if st.state == 2:
                    status_lag.append((seen - st.finished_at) / MS)
                    break
                time.sleep(0.002)
            time.sleep(0.05)
            if cid in arrivals:
                stream_lag.append((arrivals[cid] - st.finished_at) / MS)
            c.rt.RemoveContainer(c.pb.RemoveContainerRequest(container_id=cid), timeout=30)
    finally:
        if reader is not None:
            reader.cancel()  # type: ignore[attr-defined]
        c.remove_pod(sid)
        c.close()
    out = {"status": summary(status_lag)}
    if streams:
        out["stream"] = summary(stream_lag)
    return out


# --- latency --------------------------------------------------------------------------------------


def churn(handle: Any, cri_mod: Any, k: int, until: float, times: dict[tuple[str, str], int]) -> None:
    import grpc

    c = cri_mod.Cri(handle, "v1")
    rng = random.Random(k)
    sid, pod = c.run_pod(f"lat-{k}-{time.time_ns() % 10**6}")
    n = 0
    try:
        while time.monotonic() < until:
            life = rng.choice([0.0, rng.uniform(0, 1.0)])
            cid = c.run_container(sid, pod, f"c{n}", ["sh", "-c", f"sleep {life:.3f}; exit {rng.randrange(256)}"])
            n += 1
            st = c.wait_exited(cid)
            for _ in range(100):
                try:
                    c.rt.RemoveContainer(c.pb.RemoveContainerRequest(container_id=cid), timeout=30)
                    break
                except grpc.RpcError:
                    time.sleep(0.01)
            times[(cid, "created")], times[(cid, "running")] = st.created_at, st.started_at
            times[(cid, "exited")], times[(cid, "destroyed")] = st.finished_at, time.time_ns()
    finally:
        c.remove_pod(sid)
        c.close()


def measure_latency(handle: Any, cri_mod: Any, events_mode: str, poll_ns: int, duration_s: float) -> dict[str, Any]:
    from sensor.client import CriClient
    from sensor.config import SensorConfig
    from sensor.diff import DiffEngine
    from sensor.events import Event
    from sensor.output import Emitter
    from sensor.poller import Poller

    client = CriClient(handle.addr, api_preference=("v1",), rpc_timeout_s=5.0)
    events: list[Event] = []
    emitter = Emitter()
    emitter.listeners.append(events.append)
    poller = Poller(client, emitter, poll_interval_ns=poll_ns, events=events_mode,
                    engine=DiffEngine(state_lag_ns=SensorConfig().state_lag_ns))
    stop = threading.Event()
    t = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(0.5)
    times: dict[tuple[str, str], int] = {}
    until = time.monotonic() + duration_s
    workers = [threading.Thread(target=churn, args=(handle, cri_mod, k, until, times)) for k in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    time.sleep(poll_ns / 1e9 * 2 + 0.2)
    stop.set()
    t.join(10)
    client.close()
    lat: dict[str, list[float]] = {tr: [] for tr in TRANSITIONS}
    sources: dict[str, int] = {}
    for e in events:
        if not e.type.startswith("container.") or e.container_id is None:
            continue
        tr = e.type.split(".", 1)[1]
        ref = times.get((e.container_id, tr))
        if ref:
            lat[tr].append((e.observed_ns - ref) / MS)
            sources[e.source] = sources.get(e.source, 0) + 1
    every = [v for vs in lat.values() for v in vs]
    return {"events": events_mode, "poll_interval_ms": poll_ns / MS, "containers": len(times) // 4,
            "all": summary(every), "by_transition": {tr: summary(v) for tr, v in lat.items()}, "sources": sources}


def run_release(release: str, n: int, duration_s: float) -> dict[str, Any]:
    rr, cri_mod = realruntime()
    reason = rr.containerd_unavailable_reason(release)
    if reason:
        return {"release": release, "skipped": reason}
    with tempfile.TemporaryDirectory(prefix="crb-", dir="/tmp") as tmp, \
            rr.running_containerd(tmp, release=release) as h:
        version = rr.cri_version(h.socket)["runtime_version"]
        streams = release != "1.6"
        out: dict[str, Any] = {"release": release, "runtime_version": version}
        out["state_lag"] = measure_lag(h, cri_mod, n, streams)
        out["latency"] = [measure_latency(h, cri_mod, "off", 100 * MS, duration_s)]
        if streams:
            out["latency"].append(measure_latency(h, cri_mod, "on", 100 * MS, duration_s))
        return out


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    from sensor.duration import parse_duration

    ap = argparse.ArgumentParser(prog="python -m bench.bench_real", description=__doc__.split("\n\n")[0])
    ap.add_argument("--releases", default="1.6,1.7,2.1")
    ap.add_argument("--containers", type=int, default=20, help="containers for the state lag measurement")
    ap.add_argument("--duration", default="8s", help="churn time per latency run")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args(argv)
    duration_s = parse_duration(args.duration) / 1e9
    rows = [run_release(r, args.containers, duration_s) for r in args.releases.split(",") if r]
    print(f"{'runtime':<16} {'lag status p50/p99/max ms':<28} {'lag stream p50/p99':<20} {'mode':<8} "
          f"{'latency p50/p99 ms':<20} {'events':<7} per transition p50/p99 ms")
    for row in rows:
        if "skipped" in row:
            print(f"containerd {row['release']}: skipped: {row['skipped']}")
            continue
        s, st = row["state_lag"]["status"], row["state_lag"].get("stream")
        for lat in row["latency"]:
            a = lat["all"]
            print(f"{row['runtime_version']:<16} {_f(s['p50_ms'])}/{_f(s['p99_ms'])}/{_f(s['max_ms']):<18} "
                  f"{(_f(st['p50_ms']) + '/' + _f(st['p99_ms'])) if st else '-':<20} "
                  f"{'stream' if lat['events'] == 'on' else 'poll ' + str(int(lat['poll_interval_ms'])):<8} "
                  f"{_f(a['p50_ms'])}/{_f(a['p99_ms']):<14} {a['n']:<7} "
                  + " ".join(f"{tr[:4]} {_f(v['p50_ms'])}/{_f(v['p99_ms'])}" for tr, v in lat["by_transition"].items()))
    write_result(args.json, {"benchmark": "real", "machine": machine(), "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
