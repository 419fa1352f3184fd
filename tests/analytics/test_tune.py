"""``crisensor tune``: the real sensor against fakecri scenarios on a virtual clock, replayed through
the analytics stage per reorder window. It must reproduce the seed's advice -- at 250 ms polling
a window slightly longer than the poll interval plus the list RPC is needed for correct
enrichment -- and show watermark mode reaching the same accuracy at a smaller median delay."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from fakecri import scenario as sc
from sensor import cli
from sensor.tune import PLOT_HINT, TuneResult, format_table, sweep, with_execs

MS = 1_000_000
P = 250 * MS
RPC = 10 * MS
WINDOWS = [0, 100 * MS, 150 * MS, 200 * MS, 250 * MS, 270 * MS, 400 * MS]


def acc(result: TuneResult, window_ns: int) -> float:
    return next(c.accuracy for c in result.rows[0].windows if c.window_ns == window_ns)


@pytest.fixture(scope="module")
def fast_exit() -> TuneResult:
    return sweep(sc.load("fast_exit"), [P], WINDOWS, phases=16, rpc_ns=RPC)


@pytest.fixture(scope="module")
def churn() -> TuneResult:
    return sweep(sc.load("churn_storm"), [P], WINDOWS, phases=8, rpc_ns=RPC)


# --- the knee --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fast_exit", "churn"])
def test_the_knee_sits_near_the_poll_interval(request: pytest.FixtureRequest, name: str) -> None:
    result: TuneResult = request.getfixturevalue(name)
    row = result.rows[0]
    long = acc(result, 400 * MS)
    assert acc(result, 270 * MS) == long == row.ceiling.accuracy  # window >= P + rpc: as good as it gets
    assert acc(result, 100 * MS) < long - 10  # window well under P: clearly worse
    assert acc(result, 150 * MS) < long - 5
    assert acc(result, 0) < acc(result, 100 * MS) < acc(result, 200 * MS) < long  # it rises up to the knee
    assert row.knee_ns is not None and P - 50 * MS <= row.knee_ns <= P + RPC + 20 * MS


def test_churn_reproduces_the_seed_advice_of_270ms_at_250ms_polling(churn: TuneResult) -> None:
    """Containers whose first exec comes 1 ms after start: the created's lateness reaches P + rpc
    = 260 ms, so 250 ms is not quite enough and 270 ms is."""
    assert churn.rows[0].knee_ns == 270 * MS
    assert acc(churn, 250 * MS) < acc(churn, 270 * MS)


@pytest.mark.parametrize("name", ["fast_exit", "churn"])
def test_watermark_matches_the_long_window_at_a_smaller_median_delay(request: pytest.FixtureRequest,
                                                                      name: str) -> None:
    result: TuneResult = request.getfixturevalue(name)
    row = result.rows[0]
    wm = row.watermark
    assert wm.accuracy >= acc(result, 400 * MS) - 0.5
    knee_delay = next(c for c in row.windows if c.window_ns == 270 * MS).delay_ns(0.5)
    assert wm.delay_ns(0.5) < 0.6 * knee_delay  # median: about half of the window it replaces
    assert wm.delay_ns(0.99) <= P + RPC + 5 * MS  # worst case: one poll interval plus the RPC, no more
    assert wm.late == 0 and wm.forced == 0


def test_visibility_matches_the_g8_bound(churn: TuneResult) -> None:
    row = churn.rows[0]
    assert row.completed > 1000  # 8 phases x ~150 containers
    assert abs(row.visibility - row.visibility_bound) < 3


def test_the_ceiling_is_what_polling_lets_the_sensor_see(churn: TuneResult) -> None:
    """Execs in containers the sensor never saw cannot be enriched by any window."""
    ceiling = churn.rows[0].ceiling
    assert ceiling.unenriched["unknown container"] > 0
    assert ceiling.wrong == 0  # never enriched with the wrong container
    assert ceiling.correct + sum(ceiling.unenriched.values()) == ceiling.total


# --- synthetic execs ---------------------------------------------------------------------------------


def test_scenarios_with_processes_keep_them() -> None:
    s = sc.load("fast_exit")
    assert with_execs(s, 50 * MS, MS) is s


def test_synthetic_execs_fall_inside_running_containers() -> None:
    s = with_execs(sc.load("churn_storm"), 50 * MS, 2 * MS)
    assert len(s.processes) > 300
    assert all(p.delay_ns == 2 * MS for p in s.processes)
    plan = sc.expand(s)  # validates: every process is in a running container
    starts = {st.container: st.at_ns for st in plan.steps if isinstance(st, sc.CreateContainer)}
    firsts: dict[str, int] = {}
    for p in s.processes:
        firsts.setdefault(p.container, p.at_ns)
    assert all(firsts[c] == starts[c] + MS for c in firsts)  # the entrypoint, 1 ms after start


# --- output --------------------------------------------------------------------------------------


def test_table_format(fast_exit: TuneResult) -> None:
    text = format_table(fast_exit)
    lines = text.splitlines()
    assert lines[0].startswith("crisensor tune: fast_exit (containerd-1.7, 1.5s, 3 containers, 2 process events)")
    head = next(line for line in lines if line.lstrip().startswith("poll"))
    assert head.split() == ["poll", "seen", "G8", "|", "0", "100ms", "150ms", "200ms", "250ms", "270ms", "400ms",
                            "|", "watermark", "|", "ceiling"]
    row = next(line for line in lines if line.lstrip().startswith("250ms"))
    cells = row.split()
    assert cells[0] == "250ms" and cells[3] == "|" and cells[-2] == "|" and cells[-4] == "|"
    for cell in [*cells[4:11], cells[12]]:
        assert re.fullmatch(r"(100|\d{1,2}\.\d)/\d+", cell), cell
    assert cells[9] == "100/230"  # 270 ms: all 32 correct; median added delay 270 - 40 ms delivery delay
    assert re.search(r"poll_interval 250ms: knee \d+ms .*watermark [\d.]+% at delay p50 \d+ ms / p99 \d+ ms",
                     text)


def run_cli(*args: str) -> int:
    return cli.main(["tune", *args])


def test_cli_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tune.json"
    assert run_cli("fast_exit", "--poll-interval", "250ms", "--window", "270ms,0", "--phases", "2",
                   "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert "watermark" in printed and "270ms" in printed
    data = json.loads(out.read_text())
    assert data["scenario"] == "fast_exit" and data["phases"] == 2 and data["rpc_ns"] == 10 * MS
    assert data["windows_ns"] == [0, 270 * MS]  # sorted
    (row,) = data["rows"]
    assert row["poll_interval_ns"] == P and row["knee_ns"] == 270 * MS
    assert set(row["visibility"]) == {"seen", "completed", "seen_pct", "g8_bound_pct"}
    cell = row["windows"][1]
    assert cell["mode"] == "window" and cell["window_ns"] == 270 * MS and cell["process_events"] == 4
    assert {"accuracy_pct", "correct", "wrong", "unenriched_by_why", "late", "forced", "delay_p50_ns",
            "delay_p99_ns"} <= set(cell)
    assert row["watermark"]["mode"] == "watermark" and row["ceiling"]["mode"] == "ceiling"


def test_plot_without_matplotlib_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert run_cli("fast_exit", "--plot", str(tmp_path / "t.png")) == 2
    err = capsys.readouterr()
    assert err.out == ""  # it fails before the sweep, not after it
    assert err.err.strip().splitlines() == [f"crisensor: tune: {PLOT_HINT}"]
    assert "pip install 'crisensor[plot]'" in err.err
    assert not (tmp_path / "t.png").exists()


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    assert run_cli("fast_exit", "--poll-interval", "250ms", "--window", "0,270ms", "--phases", "2",
                   "--plot", str(png)) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "needle"), [
    (["fast_exit", "--poll-interval", "fast"], "--poll-interval"),
    (["fast_exit", "--poll-interval", "0"], "--poll-interval"),
    (["fast_exit", "--window", "25ms,-5ms"], "--window"),
    (["fast_exit", "--window", "250"], "--window"),
    (["fast_exit", "--phases", "0"], "--phases"),
    (["fast_exit", "--phases", "many"], "--phases"),
    (["fast_exit", "--poll-interval", "100ms,250ms", "--rpc-time", "100ms"], "--rpc-time"),
    (["fast_exit", "--rpc-time", "5ms,10ms"], "--rpc-time"),
    (["fast_exit", "--plot", "chart.jpg"], "--plot"),
    (["churn_storm", "--exec-every", "0"], "--exec-every"),
    (["no_such_scenario"], "no_such_scenario"),
])
def test_bad_flags_are_one_line_and_exit_2(args: list[str], needle: str, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # "no_such_scenario" is neither a file here nor bundled
    if "--plot" in args:
        pytest.importorskip("matplotlib")  # without it, the plot hint comes first
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("crisensor: tune: ") and needle in err[0]
    assert "accepted" in err[0]
