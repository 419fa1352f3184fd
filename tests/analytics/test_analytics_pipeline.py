"""``sensor.analytics``: the stage wired to a running sensor -- emitter listener, poll progress from
``ProgressPoller`` (the real poller over a real socket on a virtual clock), process source, sinks
and Prometheus metrics."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from fakecri.clock import VirtualClock
from fakecri.flavors import get_flavor
from fakecri.model import RuntimeModel
from fakecri.processes import TruthProcessSource
from fakecri.server import FakeCriServer
from fakecri.truth import ProcessEvent as TruthProcess
from sensor.analytics import Pipeline, ProgressPoller
from sensor.client import CriClient
from sensor.config import SensorConfig
from sensor.enrich import AnalyticsStage, EnrichedProcess
from sensor.events import Event
from sensor.metrics import Metrics
from sensor.output import Emitter
from sensor.process import ProcessEvent
from sensor.reorder import Released, ReorderBuffer

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def created(cid: str, t: int, observed: int) -> Event:
    return Event(type="container.created", time_ns=t, window_ns=(t, t), observed_ns=observed, container_id=cid,
                 name="web", image="nginx:1")


@pytest.fixture
def rig(tmp_path) -> Iterator[SimpleNamespace]:  # type: ignore[no-untyped-def]
    """A fake runtime and a ProgressPoller on one virtual clock, over a real unix socket."""
    clock = VirtualClock()
    model = RuntimeModel(clock, get_flavor("containerd-1.7"), seed=3)
    model.pull_image("busybox")
    server = FakeCriServer(model, str(tmp_path / "rt.sock")).start()
    out = io.StringIO()
    emitter = Emitter(out)
    client = CriClient(server.addr, clock=clock.now_ns, rpc_timeout_s=2)
    poller = ProgressPoller(client, emitter, poll_interval_ns=250 * MS, now_ns=clock.now_ns)
    yield SimpleNamespace(clock=clock, model=model, server=server, client=client, poller=poller, emitter=emitter,
                          out=out)
    client.close()
    server.stop(grace=None)


def test_attach_pushes_what_the_emitter_writes_and_leaves_its_output_unchanged() -> None:
    now = [T0]
    plain, tapped = io.StringIO(), io.StringIO()
    emitter = Emitter(tapped)
    got: list[Released] = []
    pipe = Pipeline(AnalyticsStage(ReorderBuffer(25 * MS)), now_ns=lambda: now[0], sinks=[got.append])
    pipe.attach(emitter)
    ev = created("c1", T0 - 5 * MS, T0)
    Emitter(plain).emit([ev])
    emitter.emit([ev])
    assert tapped.getvalue() == plain.getvalue()  # the sensor's JSON lines are untouched
    assert got == [] and pipe.next_release_ns() == T0 + 20 * MS
    assert pipe.tick(T0 + 19 * MS) == []
    (r,) = pipe.tick(T0 + 20 * MS)
    assert got == [r] and r.item.seq == 1 and not r.late and r.released_ns == T0 + 20 * MS
    pipe.on_poll(T0)  # fixed window: progress is meaningless and ignored, the call just ticks


def test_attach_pushes_each_emitted_batch_once_in_seq_order_and_counts_it() -> None:
    now = [T0]
    emitter = Emitter(io.StringIO())
    metrics = Metrics()
    got: list[Released] = []
    pipe = Pipeline(AnalyticsStage(ReorderBuffer(25 * MS)), now_ns=lambda: now[0], sinks=[got.append],
                    metrics=metrics)
    pushes: list[int] = []
    push = pipe.push
    pipe.push = lambda items, now_ns=None: pushes.append(len(items)) or push(items, now_ns)  # type: ignore[method-assign]
    pipe.attach(emitter)
    emitter.emit([created(f"c{i}", T0 - (10 - i) * MS, T0) for i in range(5)])
    emitter.emit([created("c9", T0 - MS, T0)])
    emitter.emit_records([{"type": "sensor.note"}])  # not a lifecycle event: not pushed
    assert pushes == [5, 1]  # one push per batch, not per event
    released = pipe.tick(T0 + 25 * MS)
    assert [r.item.seq for r in released] == [1, 2, 3, 4, 5, 6] and got == released
    assert sample(metrics, "crisensor_analytics_released_total", kind="lifecycle") == 6


def test_progress_poller_reports_successful_polls_only(rig) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []
    rig.poller.on_poll.append(seen.append)
    start = rig.clock.now_ns()
    assert rig.poller.step()
    rig.clock.advance(250 * MS)
    assert rig.poller.step()
    assert seen == [start, start + 250 * MS]  # the time each poll started (= its list's sent_ns here)
    rig.server.stop(grace=None)
    rig.clock.advance(250 * MS)
    assert not rig.poller.step()
    assert seen == [start, start + 250 * MS]  # a failed poll promises nothing


def test_watermark_pipeline_releases_an_exec_enriched_when_the_poll_that_saw_its_container_completes(
        rig) -> None:  # type: ignore[no-untyped-def]
    m, clock = rig.model, rig.clock
    source = TruthProcessSource()
    pipe = Pipeline.from_config(SensorConfig(), watermark=True, source=source, now_ns=clock.now_ns)
    got: list[Released] = []
    pipe.sinks.append(got.append)
    pipe.attach(rig.emitter)
    rig.poller.on_poll.append(pipe.on_poll)
    assert rig.poller.step()
    sb = m.run_pod_sandbox("web-0", "default", "uid-web")
    clock.advance(10 * MS)
    c = m.create_container(sb.id, "web", 0, "busybox")
    m.start_container(c.id)
    t_exec = clock.advance(10 * MS)
    source.feed(TruthProcess(c.id, t_exec, t_exec + MS, 7, ("/bin/sh",)))
    clock.advance(MS)
    assert pipe.tick() == []  # the exec is in, but no poll has passed its time yet
    t_poll = clock.advance(229 * MS)
    assert rig.poller.step()  # sees the container, reports progress, ticks
    (ex,) = [r for r in got if isinstance(r.item, EnrichedProcess)]
    assert ex.item.enriched and ex.item.name == "web" and ex.item.pod.name == "web-0"
    assert ex.released_ns == t_poll and not ex.late and not ex.forced
    assert [json.loads(line)["type"] for line in rig.out.getvalue().splitlines()] == [
        "sensor.connected", "sandbox.ready", "container.created", "container.running"]
    times = [r.item.time_ns for r in got]
    assert times == sorted(times)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_metrics_count_late_forced_overflow_and_unenriched() -> None:
    metrics = Metrics()
    now = [T0]
    pipe = Pipeline.from_config(SensorConfig(event_reorder_window_ns=25 * MS), metrics=metrics, max_events=2,
                                now_ns=lambda: now[0])
    pipe.push([created("c1", T0 - 240 * MS, T0)])  # 240 ms late for a 25 ms window
    assert sample(metrics, "crisensor_reorder_late_total", kind="lifecycle") == 1
    assert sample(metrics, "crisensor_reorder_lateness_seconds_count") == 1
    assert sample(metrics, "crisensor_reorder_lateness_seconds_bucket", le="0.25") == 1
    assert sample(metrics, "crisensor_reorder_lateness_seconds_bucket", le="0.2") == 0
    pipe.push([ProcessEvent("ghost", T0 + 1, 1), ProcessEvent("c1", T0 + 2, 2)])
    pipe.push([ProcessEvent("c1", T0 + 3, 3)])  # a third item: the oldest held goes out early
    assert sample(metrics, "crisensor_reorder_overflow_total") == 1
    assert sample(metrics, "crisensor_reorder_forced_total", reason="overflow") == 1
    assert sample(metrics, "crisensor_enrich_unenriched_total", why="unknown container") == 1
    assert sample(metrics, "crisensor_reorder_held") == 2
    pipe.close(T0 + 5 * MS)  # before their slots: flushed
    assert sample(metrics, "crisensor_reorder_forced_total", reason="flush") == 2
    assert sample(metrics, "crisensor_analytics_released_total", kind="process") == 3
    assert sample(metrics, "crisensor_analytics_released_total", kind="lifecycle") == 1
    assert sample(metrics, "crisensor_reorder_held") == 0
    assert sample(metrics, "crisensor_enrich_unenriched_total", why="unknown container") == 1  # c1 is known


def test_watermark_cap_is_counted_as_forced() -> None:
    metrics = Metrics()
    pipe = Pipeline.from_config(SensorConfig(), watermark=True, metrics=metrics, max_delay_ns=100 * MS)
    pipe.push([created("c1", T0, T0)], now_ns=T0)
    assert pipe.tick(T0 + 99 * MS) == []  # no poll progress yet
    (r,) = pipe.tick(T0 + 100 * MS)
    assert r.forced
    assert sample(metrics, "crisensor_reorder_forced_total", reason="cap") == 1


def test_sources_can_come_and_go_in_watermark_mode() -> None:
    pipe = Pipeline.from_config(SensorConfig(), watermark=True, max_delay_ns=None)
    pipe.register_source("stream")
    pipe.push([created("c1", T0, T0)], now_ns=T0)
    pipe.on_poll(T0 + 1)
    assert pipe.tick(T0 + 2) == []  # the stream has not reported yet
    pipe.progress("stream", T0)
    assert len(pipe.tick(T0 + 3)) == 1
    pipe.unregister_source("stream")
    assert pipe.stats["reorder"]["released"] == 1
    fixed = Pipeline(AnalyticsStage(ReorderBuffer(0)))
    fixed.register_source("stream")  # no-ops with a fixed window
    fixed.progress("stream", T0)


def test_the_ticker_releases_a_held_exec_when_its_window_closes_and_flushes_on_close() -> None:
    import threading
    import time

    from sensor.analytics import Ticker
    from sensor.reorder import ReorderBuffer

    class Source:
        def __init__(self) -> None:
            self.ready = threading.Event()
            self.items: list[ProcessEvent] = []

        def poll(self, now_ns: int) -> list[ProcessEvent]:
            out, self.items = self.items, []
            return out

        def progress_ns(self) -> int:
            return 0

    released: list = []
    src = Source()
    pipe = Pipeline(AnalyticsStage(ReorderBuffer(50_000_000)), source=src, sinks=[released.append])
    ticker = Ticker(pipe, src.ready, idle_s=5.0).start()  # a long idle sleep: only the signals wake it
    try:
        now = time.time_ns()
        src.items.append(ProcessEvent("c", now, 1))
        src.ready.set()
        deadline = time.monotonic() + 5
        while not released and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(released) == 1 and released[0].released_ns >= now + 50_000_000
        src.items.append(ProcessEvent("c", time.time_ns() + 10**12, 2))  # held far in the future
        src.ready.set()
        time.sleep(0.05)
        assert len(released) == 1
    finally:
        ticker.close()
    assert len(released) == 2 and released[1].forced  # flushed at close


def test_with_a_fixed_window_the_ticker_sleeps_until_something_is_held_and_wakes_when_it_is_due() -> None:
    """No wake-up while nothing is held (an idle node costs no ticks), and a lifecycle event the
    emitter pushes meanwhile is released when its window closes, not at some later tick."""
    import threading
    import time

    from sensor.analytics import TICKER_IDLE_S, Ticker
    from sensor.reorder import ReorderBuffer

    released: list = []
    ready = threading.Event()
    pipe = Pipeline(AnalyticsStage(ReorderBuffer(50 * MS)), sinks=[released.append])
    ticker = Ticker(pipe, ready).start()
    try:
        time.sleep(3 * TICKER_IDLE_S)
        assert ticker.ticks == 0, "ticked with nothing held and nothing queued"
        now = time.time_ns()
        pipe.push([created("c1", now, now)])
        deadline = time.monotonic() + 5
        while not released and time.monotonic() < deadline:
            time.sleep(0.005)
        assert [r.item.container_id for r in released] == ["c1"]
        assert now + 50 * MS <= released[0].released_ns < now + 50 * MS + 1_000 * MS
        ticks = ticker.ticks
        time.sleep(3 * TICKER_IDLE_S)
        assert ticker.ticks == ticks, "ticked again with nothing held"
    finally:
        ticker.close()


#: ``crisensor run`` recording the enricher its analytics stage was given (argv[1]), the rest argv[2:].
RECORDING_RUN = """
import sys
import sensor.analytics, sensor.cli
made = sensor.analytics.Pipeline.from_config
def record(*a, **kw):
    open(sys.argv[1], "a").write(type(kw.get("enricher")).__name__ + "\\n")
    return made(*a, **kw)
sensor.analytics.Pipeline.from_config = record
sys.exit(sensor.cli.main(sys.argv[2:]))
"""


def test_run_without_a_process_source_keeps_no_enrichment_history(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import sensor.cli
    from fakecri.harness import Harness
    from tests.sensor.test_cli import _wait_for, write

    marks = tmp_path / "enricher"
    with Harness(socket=str(tmp_path / "cri.sock"), clock="real") as h:
        proc = subprocess.Popen([sys.executable, "-c", RECORDING_RUN, str(marks), "-q", "run", "--config",
                                 write(tmp_path, "{}\n"), "--enable", "--addr", h.addr, "--processes", "off",
                                 "--output", str(tmp_path / "out.jsonl")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(Path(sensor.cli.__file__).parents[1])})
        try:
            _wait_for(lambda: marks.exists())
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert marks.read_text() == "NoHistory\n"
