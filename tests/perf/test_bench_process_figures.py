"""``bench_process``'s reading of the sensor's poll histograms (the churn rows of docs/performance.md)."""

from __future__ import annotations

import pytest

from bench.bench_process import POLL_HIST, RPC_HIST, poll_figures


def _hist(counts: dict[str, float], total: float) -> dict[str, float]:
    return {**counts, "sum": total}


def test_poll_figures_are_the_polls_between_two_scrapes() -> None:
    before = {POLL_HIST: _hist({"0.1": 1, "0.25": 1, "0.5": 1, "+Inf": 1}, 0.05),
              RPC_HIST: _hist({"0.1": 1, "0.25": 1, "0.5": 1, "+Inf": 1}, 0.02)}
    # four more polls: 0.2, 0.2, 0.2 and 0.4 s long, of which 0.1 s each in CRI calls
    after = {POLL_HIST: _hist({"0.1": 1, "0.25": 4, "0.5": 5, "+Inf": 5}, 0.05 + 1.0),
             RPC_HIST: _hist({"0.1": 5, "0.25": 5, "0.5": 5, "+Inf": 5}, 0.02 + 0.4)}
    got = poll_figures(before, after)
    assert got["polls"] == 4
    assert got["polls_le_250ms"] == 0.75
    assert got["poll_mean_ms"] == pytest.approx(250.0)
    assert got["rpc_mean_ms"] == pytest.approx(100.0)
    assert 100 < got["poll_p50_ms"] <= 250 < got["poll_p99_ms"] <= 500
    assert got["rpc_p99_ms"] <= 100


def test_no_polls_between_scrapes_gives_no_figures() -> None:
    same = {POLL_HIST: _hist({"+Inf": 3}, 0.3), RPC_HIST: _hist({"+Inf": 3}, 0.1)}
    got = poll_figures(same, same)
    assert got["polls"] == 0 and got["polls_le_250ms"] is None
    assert got["poll_mean_ms"] is None and got["rpc_p50_ms"] is None


def test_events_by_source_are_read_from_the_counter_and_differenced() -> None:
    """The churn rows say how many events came through the stream and how many the lists (polls,
    resyncs) announced: ``crisensor_events_total`` summed over types, per source."""
    from bench.bench_process import EVENTS, _by_source, parse_metrics

    def text(poll: int, stream: int) -> str:
        return ("# HELP crisensor_events_total Events emitted by type and source.\n"
                "# TYPE crisensor_events_total counter\n"
                f'crisensor_events_total{{source="poll",type="container.created"}} {poll}.0\n'
                f'crisensor_events_total{{source="poll",type="container.running"}} {poll}.0\n'
                f'crisensor_events_total{{source="stream",type="container.exited"}} {stream}.0\n'
                'crisensor_poll_duration_seconds_bucket{le="0.25"} 3.0\n'
                'crisensor_poll_duration_seconds_bucket{le="+Inf"} 4.0\n'
                "crisensor_poll_duration_seconds_sum 0.9\n")

    before, after = parse_metrics(text(10, 5)), parse_metrics(text(30, 5))
    assert before[EVENTS] == {"poll": 20.0, "stream": 5.0}
    assert before[POLL_HIST] == {"0.25": 3.0, "+Inf": 4.0, "sum": 0.9}
    got = poll_figures(before, after)
    assert got["events_by_source"] == {"poll": 40.0}  # the stream sent nothing in between
    assert _by_source({"stream": 1234.4, "resync": 56.0}) == "; events/s by source: resync 56, stream 1,234"
    assert _by_source(None) == ""


def test_cri_calls_are_read_per_method() -> None:
    from bench.bench_process import CALLS, parse_metrics

    text = ("# TYPE crisensor_cri_calls_total counter\n"
            'crisensor_cri_calls_total{method="ContainerStatus"} 84.0\n'
            'crisensor_cri_calls_total{method="ListContainers"} 3.0\n')
    assert parse_metrics(text)[CALLS] == {"ContainerStatus": 84.0, "ListContainers": 3.0}


def test_the_churn_floors_polls_are_windowed_and_bucketed_as_the_sensors() -> None:
    import io
    from types import SimpleNamespace

    from bench.bench_process import floor_poll_figures

    out = io.StringIO('{"polls": [[0.2, 9.0], [1.0, 0.1], [2.0, 0.2], [3.0, 0.3], [9.0, 5.0]]}\n')
    got = floor_poll_figures(SimpleNamespace(stdout=out), 0.5, 3.5)  # type: ignore[arg-type]
    assert got["polls"] == 3 and got["polls_le_250ms"] == pytest.approx(2 / 3)
    assert got["poll_mean_ms"] == pytest.approx(200.0)
    assert 150 < got["poll_p50_ms"] <= 200 and 250 < got["poll_p99_ms"] <= 300
    assert floor_poll_figures(SimpleNamespace(stdout=io.StringIO("")), 0, 1) == {}  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_churn_floor_makes_its_status_calls_after_every_polls_lists(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The floor's figures stand for the transport of a churning poll only if it really makes the
    status calls: the runtime's own record of what it served says so, per poll."""
    import json
    import signal
    import subprocess
    import sys
    import time
    from collections import Counter

    from fakecri.harness import Harness
    from fakecri.truth import RpcServed

    with Harness(socket=str(tmp_path / "cri.sock"), clock="real") as h:
        proc = subprocess.Popen([sys.executable, "-m", "bench.bench_process", "floor", "--addr", h.addr,
                                 "--statuses", "7"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        time.sleep(0.8)
        proc.send_signal(signal.SIGTERM)
        polls = json.loads(proc.stdout.read())["polls"]
        assert proc.wait(10) == 0
        served = Counter((r.method, r.code) for r in h.model.truth if isinstance(r, RpcServed))
    assert len(polls) >= 2 and all(0 < wall < 0.25 for _, wall in polls)
    assert served[("ContainerStatus", "NOT_FOUND")] == 7 * len(polls)
    assert served[("ListContainers", "OK")] == len(polls) + 1  # and the one before "ready"
