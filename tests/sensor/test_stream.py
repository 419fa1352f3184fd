"""Event streaming end to end: the real poller reads fakecri's GetContainerEvents over a real socket,
on a virtual clock, through every runtime behaviour of DESIGN.md section 6."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

import fakecri.server
from bench.bench_stream import react, run_virtual
from fakecri.clock import VirtualClock
from fakecri.flavors import get_flavor
from fakecri.model import CriError, RuntimeModel
from fakecri.server import CallPolicy, FakeCriServer
from fakecri.truth import RpcServed
from sensor.client import CriClient
from sensor.output import Emitter
from sensor.poller import Poller

MS = 1_000_000
TICK = 250 * MS


class Policy(CallPolicy):
    """Records how many subscribers the runtime had at each list; refuses the stream or loses
    stream events on demand."""

    def __init__(self) -> None:
        self.server: FakeCriServer | None = None
        self.subscribers_at_list: list[int] = []
        self.refuse_stream = False
        self.lose: Callable[[str, str, str], bool] = lambda kind, oid, tr: False

    def before_call(self, method: str, api: str, target: str | None) -> None:
        if method == "ListContainers" and self.server is not None:
            self.subscribers_at_list.append(len(self.server.hub._subs))
        if method == "GetContainerEvents" and self.refuse_stream:
            raise CriError("UNKNOWN", "pod events are not enabled in this runtime")

    def stream_event(self, kind: str, obj_id: str, transition: str) -> bool:
        return not self.lose(kind, obj_id, transition)


@pytest.fixture
def srig(tmp_path) -> Iterator[Callable[..., SimpleNamespace]]:  # type: ignore[no-untyped-def]
    """``srig(flavor, events="auto", resync_ms=10_000, **flavor_changes)``: fakecri + a streaming poller."""
    made: list[SimpleNamespace] = []

    def make(flavor: str = "containerd-1.7", events: str = "auto", resync_ms: int = 10_000,
             **changes: object) -> SimpleNamespace:
        clock = VirtualClock()
        f = get_flavor(flavor)
        model = RuntimeModel(clock, f.replace(**changes) if changes else f, seed=5)
        model.pull_image("busybox")
        policy = Policy()
        server = FakeCriServer(model, str(tmp_path / f"s{len(made)}.sock"), policy=policy).start()
        policy.server = server
        out = io.StringIO()
        client = CriClient(server.addr, clock=clock.now_ns, rpc_timeout_s=2)
        poller = Poller(client, Emitter(out), poll_interval_ns=TICK, now_ns=clock.now_ns, events=events,
                        resync_interval_ns=resync_ms * MS)

        def tick(n: int = 1, by: int = TICK) -> None:
            """Advance ``by`` and step, ``n`` times, letting the stream catch up around each."""
            for _ in range(n):
                clock.advance(by)
                react(poller, server.hub)
                poller.step()
                react(poller, server.hub)

        def settle() -> None:
            react(poller, server.hub)

        ns = SimpleNamespace(clock=clock, model=model, server=server, client=client, poller=poller, policy=policy,
                             tick=tick, settle=settle,
                             events=lambda: [json.loads(line) for line in out.getvalue().splitlines()])
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.poller.close()
        ns.client.close()
        ns.server.stop(grace=None)


def of(events: list[dict], cid: str) -> list[tuple[str, str]]:
    return [(e["type"].split(".")[1], e["source"]) for e in events if cid in (e["container_id"], e["sandbox_id"])
            and e["type"].startswith("container." if e["container_id"] == cid else "sandbox.")]


def run_pod(m: RuntimeModel, name: str = "web"):  # type: ignore[no-untyped-def]
    return m.run_pod_sandbox(name, "default", f"uid-{name}")


def start(m: RuntimeModel, sandbox_id: str, name: str):  # type: ignore[no-untyped-def]
    c = m.create_container(sandbox_id, name, 0, "busybox")
    m.start_container(c.id)
    return c


def no_duplicates(events: list[dict]) -> None:
    keys = Counter((e["container_id"] or e["sandbox_id"], e["type"]) for e in events
                   if e["type"].startswith(("container.", "sandbox.")))
    assert max(keys.values(), default=1) == 1, [k for k, n in keys.items() if n > 1]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))


# --- the scenarios: zero missed lifecycles, every guarantee -------------------------------------------------


@pytest.mark.parametrize("scenario", ["containerd_1_7_events", "crio_1_26_events", "churn_storm", "fast_exit"])
def test_scenario_streams_with_zero_misses_and_every_guarantee(scenario: str) -> None:
    run = run_virtual(scenario, "stream")
    assert run.report.ok, run.report.render()
    g8 = run.report.results["G8"].measures
    assert g8["total"] > 0 and g8["missed"] == 0 and g8["stream_missed"] == 0
    assert run.report.results["G7"].measures["via_stream"] > 0
    assert run.rpc_count.get("GetContainerEvents", 0) >= 1
    sources = Counter(e.source for e in run.events)
    assert sources["stream"] > sources["poll"] + sources["resync"]


def test_containerd_close_mid_run_resubscribes_and_resyncs_at_once() -> None:
    run = run_virtual("containerd_1_7_events", "stream")
    assert run.rpc_count["GetContainerEvents"] == 2  # subscribed, closed at 1 s, resubscribed
    # "blink" was created at the very instant the runtime dropped its subscribers: the immediate
    # resync list found it, the new stream saw the rest
    blink = next(e.container_id for e in run.events if e.name == "blink")
    got = [(e.type.split(".")[1], e.source) for e in run.events if e.container_id == blink]
    assert got == [("created", "resync"), ("running", "resync"), ("exited", "stream"), ("destroyed", "stream")]


def test_polling_the_same_scenario_misses_what_streaming_sees() -> None:
    run = run_virtual("containerd_1_7_events", "poll")
    assert run.report.ok, run.report.render()
    assert run.report.results["G8"].measures["missed"] >= 1
    assert "GetContainerEvents" not in run.rpc_count


# --- subscribe before the first list; sandboxes and containers from the stream -------------------------------


def test_subscribes_before_the_first_list_and_streams_everything(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig()
    m = r.model
    early = run_pod(m, "early")
    r.poller.step()
    r.settle()
    assert r.policy.subscribers_at_list == [1]  # the stream was open when the first list was taken
    assert r.poller.plan.streaming
    sb = run_pod(m)
    c = start(m, sb.id, "app")
    m.exit_container(c.id, 3)
    m.remove_container(c.id)
    m.stop_pod_sandbox(sb.id)
    m.remove_pod_sandbox(sb.id)
    r.settle()
    ev = r.events()
    no_duplicates(ev)
    assert of(ev, early.id) == [("ready", "poll")]
    assert of(ev, c.id) == [("created", "stream"), ("running", "stream"), ("exited", "stream"),
                            ("destroyed", "stream")]
    assert of(ev, sb.id) == [("ready", "stream"), ("notready", "stream"), ("destroyed", "stream")]
    exited = next(e for e in ev if e["container_id"] == c.id and e["type"] == "container.exited")
    assert (exited["exit_code"], exited["synthetic"]) == (3, False)
    assert all(e["observed_ns"] - e["time_ns"] == 0 for e in ev if e["source"] == "stream")  # virtual clock
    assert r.client.rpc_count["ListContainers"] == 1  # nothing but the stream since the first list


def test_reconciling_list_every_resync_interval(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig(resync_ms=1000)
    r.poller.step()
    r.tick(12)  # 3 s
    assert r.client.rpc_count["ListContainers"] == 1 + 3
    assert r.poller.polls == 4


# --- every fallback path ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "level"), [("auto", logging.INFO), ("on", logging.ERROR)])
def test_unimplemented_polls_and_says_so_once(srig, caplog, mode: str, level: int) -> None:  # type: ignore[no-untyped-def]
    r = srig("containerd-1.6", events=mode)
    caplog.set_level(logging.INFO, logger="crisensor")
    r.poller.step()
    r.settle()
    sb = run_pod(r.model)
    c = start(r.model, sb.id, "app")
    r.tick(8)
    assert r.client.rpc_count["GetContainerEvents"] == 1  # never retried on this connection
    assert r.client.rpc_count["ListContainers"] == 9  # polling every tick
    assert of(r.events(), c.id) == [("created", "poll"), ("running", "poll")]
    said = [rec for rec in caplog.records if "GetContainerEvents" in rec.getMessage()]
    assert len(said) == 1 and said[0].levelno == level
    assert "UNIMPLEMENTED" in said[0].getMessage()
    if mode == "on":
        assert "crisensor.events is on" in said[0].getMessage()


def test_v1alpha2_runtime_is_never_asked_for_a_stream(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig("containerd-1.5")
    r.poller.step()
    r.tick(3)
    assert "GetContainerEvents" not in r.client.rpc_count
    assert r.poller.plan.state == "unsupported"


def test_events_off_never_streams(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig(events="off")
    r.poller.step()
    r.tick(3)
    assert "GetContainerEvents" not in r.client.rpc_count and r.client.rpc_count["ListContainers"] == 4


def test_eof_polls_retries_rarely_and_streams_once_the_runtime_offers_it(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig("crio-1.26", resync_ms=1000)  # CRI-O without enable_pod_events: EOF at once
    r.poller.step()
    r.settle()
    assert not r.poller.plan.streaming and "enable_pod_events" in r.poller.plan.reason
    r.tick(7)
    assert r.client.rpc_count["GetContainerEvents"] == 2  # at 0 and after one resync_interval
    assert r.client.rpc_count["ListContainers"] == 8
    # CRI-O restarted with enable_pod_events: the sensor reconnects and streams again
    r.server.stop(grace=None)
    r.model.flavor = r.model.flavor.replace(events="stream")
    r.server.start()
    for _ in range(20):
        r.tick()
        if r.poller.plan.streaming:
            break
    assert r.poller.plan.streaming
    sb = run_pod(r.model)
    c = start(r.model, sb.id, "app")
    r.settle()
    assert of(r.events(), c.id) == [("created", "stream"), ("running", "stream")]
    no_duplicates(r.events())


def test_error_polls_and_returns_to_streaming_once_offered(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig(resync_ms=1000)
    r.policy.refuse_stream = True  # newer CRI-O without enable_pod_events: an error at once
    r.poller.step()
    r.settle()
    assert not r.poller.plan.streaming and "refused" in r.poller.plan.reason
    sb = run_pod(r.model)
    a = start(r.model, sb.id, "a")
    r.tick(2)
    r.policy.refuse_stream = False  # the runtime offers it again (no restart)
    r.tick(4)
    assert r.poller.plan.streaming
    b = start(r.model, sb.id, "b")
    r.settle()
    ev = r.events()
    assert of(ev, a.id) == [("created", "poll"), ("running", "poll")]
    assert of(ev, b.id) == [("created", "stream"), ("running", "stream")]
    assert r.client.rpc_count["GetContainerEvents"] == 2
    no_duplicates(ev)


def test_subscription_closed_resubscribes_and_resyncs_at_once(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig()
    sb = run_pod(r.model)
    r.poller.step()
    r.settle()
    lists = r.client.rpc_count["ListContainers"]
    r.server.hub.close_all()  # containerd drops its subscribers: UNAVAILABLE "subscription closed"
    c = start(r.model, sb.id, "between")  # nobody subscribed at this instant
    r.settle()
    assert r.poller.plan.streaming  # resubscribed at once...
    assert r.client.rpc_count["ListContainers"] == lists + 1  # ...and listed at once
    r.model.exit_container(c.id, 0)
    r.settle()
    ev = r.events()
    assert of(ev, c.id) == [("created", "resync"), ("running", "resync"), ("exited", "stream")]
    assert r.client.rpc_count["GetContainerEvents"] == 2
    no_duplicates(ev)


def test_nil_pod_sandbox_status(srig, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    r = srig()
    sb = run_pod(r.model)
    r.poller.step()
    r.settle()
    # every event now comes with a nil pod sandbox status, as containerd sends once a sandbox is gone
    monkeypatch.setattr(fakecri.server.convert, "pod_sandbox_status", lambda *a, **k: None)
    c = start(r.model, sb.id, "app")  # unknown container, no sandbox: only a list can place it
    r.settle()
    r.model.exit_container(c.id, 0)
    r.model.remove_container(c.id)
    r.model.stop_pod_sandbox(sb.id)
    r.model.remove_pod_sandbox(sb.id)
    r.settle()
    ev = r.events()
    assert of(ev, c.id) == [("created", "resync"), ("running", "resync"), ("exited", "stream"),
                            ("destroyed", "stream")]
    assert of(ev, sb.id) == [("ready", "poll"), ("notready", "stream"), ("destroyed", "stream")]
    no_duplicates(ev)


def test_runtime_restart_resubscribes_before_the_resync_list(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig()
    m = r.model
    sb = run_pod(m)
    keep = start(m, sb.id, "keep")
    gone = start(m, sb.id, "gone")
    r.poller.step()
    r.settle()
    r.server.stop(grace=None)  # the runtime goes away: socket removed, stream cut
    r.tick(2)
    assert not r.poller.plan.streaming
    m.exit_container(gone.id, 0)
    m.remove_container(gone.id)
    new = start(m, sb.id, "new")
    r.server.start()
    for _ in range(20):
        r.tick()
        if r.poller.plan.streaming:
            break
    assert r.policy.subscribers_at_list[0] == 1 and r.policy.subscribers_at_list[-1] == 1
    m.exit_container(keep.id, 0)
    r.settle()
    ev = r.events()
    no_duplicates(ev)
    assert of(ev, keep.id) == [("created", "poll"), ("running", "poll"), ("exited", "stream")]
    assert of(ev, gone.id) == [("created", "poll"), ("running", "poll"), ("exited", "resync"),
                               ("destroyed", "resync")]
    assert next(e for e in ev if e["container_id"] == gone.id and e["type"] == "container.exited")["why"] == \
        "vanished during outage"
    assert of(ev, new.id) == [("created", "resync"), ("running", "resync")]
    assert [e["type"] for e in ev].count("sensor.gap") == 1
    assert [e["type"] for e in ev].count("sensor.connected") == 2


# --- exactly once across stream and reconciling list -----------------------------------------------------


def test_what_the_stream_loses_the_resync_list_reports_once(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig(resync_ms=1000)
    m = r.model
    sb = run_pod(m)
    r.poller.step()
    r.settle()
    x = start(m, sb.id, "x")
    hiding = [True]
    r.policy.lose = lambda kind, oid, tr: (oid == x.id and tr == "destroyed") or (oid != x.id and hiding[0])
    z = start(m, sb.id, "z")  # the stream loses z's creation and start...
    hiding[0] = False
    m.exit_container(x.id, 0)
    m.remove_container(x.id)  # ...and x's deletion
    r.settle()
    r.tick(4)  # the reconciling list at 1 s
    m.exit_container(z.id, 2)  # streamed again
    r.tick(4)  # and another reconciling list finds nothing new
    ev = r.events()
    no_duplicates(ev)
    assert of(ev, x.id) == [("created", "stream"), ("running", "stream"), ("exited", "stream"),
                            ("destroyed", "resync")]
    assert of(ev, z.id) == [("created", "resync"), ("running", "resync"), ("exited", "stream")]
    assert r.client.rpc_count["ListContainers"] == 3


# --- ownership: shutdown cancels and joins the reader ------------------------------------------------------


def test_shutdown_cancels_the_reader(srig) -> None:  # type: ignore[no-untyped-def]
    r = srig()
    stop = threading.Event()
    worker = threading.Thread(target=r.poller.run, args=(stop,))
    worker.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if r.poller.reader is not None and r.poller.reader.subscribed.is_set() and r.poller.plan.streaming:
            break
        time.sleep(0.005)
    reader = r.poller.reader
    assert reader is not None and reader.thread.is_alive()
    t0 = time.monotonic()
    stop.set()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - t0 < 1.0
    assert not reader.thread.is_alive() and r.poller.reader is None
    assert reader.end is not None and reader.end.code == "CANCELLED"
    for _ in range(200):  # the runtime saw the client cancel the stream
        streams = [rec for rec in r.model.truth if isinstance(rec, RpcServed) and rec.method == "GetContainerEvents"]
        if streams:
            break
        time.sleep(0.005)
    assert [s.code for s in streams] == ["CANCELLED"]
    r.poller.close()  # idempotent


def test_reader_failure_is_an_ended_stream_not_a_crash(srig, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    r = srig()
    sb = run_pod(r.model)
    r.poller.step()
    r.settle()

    def broken(resp, tally=None):  # type: ignore[no-untyped-def]
        raise ValueError("unreadable")

    monkeypatch.setattr("sensor.stream.stream_event", broken)
    start(r.model, sb.id, "app")
    r.settle()
    monkeypatch.undo()
    r.tick()  # the stream ended INTERNAL before it delivered anything: polling meanwhile
    assert not r.poller.plan.streaming and "INTERNAL: ValueError: unreadable" in r.poller.plan.reason
    assert next(e for e in r.events() if e["name"] == "app")["source"] == "poll"  # it never streamed
    r.tick(40)  # the stream is tried again after resync_interval, and works
    assert r.poller.plan.streaming and r.client.rpc_count["GetContainerEvents"] == 2


# --- crisensor run ------------------------------------------------------------------------------------------


def test_crisensor_run_streams_and_exits_cleanly_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import subprocess
    import sys

    from fakecri.clock import RealClock

    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    model.pull_image("busybox")
    server = FakeCriServer(model, str(tmp_path / "rt.sock")).start()
    out = tmp_path / "events.jsonl"
    cfg = tmp_path / "sensor.yaml"
    cfg.write_text(f"crisensor:\n  enabled: true\n  addr: {server.addr}\n  events: on\n  resync_interval: 1m\n"
                   "  processes: 'off'\n")
    (tmp_path / "analytics.yaml").write_text("{}\n")
    proc = subprocess.Popen([sys.executable, "-m", "sensor.cli", "run", "--config", str(cfg), "--analytics-config",
                             str(tmp_path / "analytics.yaml"), "--output", str(out)],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def lines() -> list[dict]:
            return [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []

        def listed() -> bool:
            return any(isinstance(r, RpcServed) and r.method == "ListPodSandbox" for r in model.truth)

        deadline = time.monotonic() + 20
        while not (server.hub._subs and listed()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.hub._subs and listed(), "crisensor never subscribed and listed"
        sb = run_pod(model)
        c = start(model, sb.id, "app")
        while len([e for e in lines() if e["container_id"] == c.id]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop(grace=None)
    assert proc.returncode == 0, err
    assert of(lines(), c.id) == [("created", "stream"), ("running", "stream")]
    assert "events on" in err
    streams = [r for r in model.truth if isinstance(r, RpcServed) and r.method == "GetContainerEvents"]
    assert [s.code for s in streams] == ["CANCELLED"]  # the sensor cancelled its stream on the way out
