"""The first hour of a new user (issue "first-run"), each point through the real CLIs as real processes.

* ``fakecri serve`` waits for its first client before the scenario starts (``--start``), and
  replays it with fresh IDs (``--repeat``/``--loop``) while one sensor stays attached;
* a flavour carries its quirks by default (crio-1.13: the old cmux handshake), a flag turns one off;
* ``fakecri verify`` learns the sensor's mode and says which bounds it applied, and sets
  ``process.exec`` lines aside;
* ``--version`` on both CLIs; ``-q`` before or after the subcommand.
"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from scenarioclient import connect

from fakecri import verify
from fakecri.check import CheckParams, check, load_events_jsonl
from fakecri.truth import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
MS = 1_000_000
FAKECRI = [PY, "-m", "fakecri.cli"]
CRISENSOR = [PY, "-m", "sensor.cli"]


class Served:
    """``fakecri serve ...`` running, its stderr collected line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*FAKECRI, "serve", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                if text in line:
                    return line
            assert self.proc.poll() is None or self._reader.is_alive(), f"serve ended: {self.lines}"
            assert time.monotonic() < deadline, f"no line with {text!r} in {self.lines}"
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code


@pytest.fixture
def served() -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for s in running:
        s.stop()


def kinds(truth: Path) -> list[str]:
    return [json.loads(line)["kind"] for line in truth.read_text().splitlines()]


# ---- 1. serve waits for its first client; --repeat/--loop replay with fresh IDs ----------------


def test_serve_waits_for_the_first_list_then_plays_the_whole_scenario(tmp_path: Path, served: list[Served]) -> None:
    sock, truth = tmp_path / "cri.sock", tmp_path / "truth.jsonl"
    s = Served("fast_exit", "--socket", str(sock), "--truth", str(truth), "--speed", "4")
    served.append(s)
    waiting = s.wait_line("waiting for a client")
    assert waiting.startswith(f"fakecri: waiting for a client on unix://{sock} ")
    time.sleep(1.0)  # well past the scenario's end at speed 4 (375 ms), had it started at once
    assert not {"container", "sandbox"} & set(kinds(truth)), "the scenario started before anyone listed"
    c = connect(f"unix://{sock}")
    c.rt.Version(c.pb.VersionRequest(), timeout=5)  # not a list: still waiting
    time.sleep(0.2)
    assert "container" not in kinds(truth)
    before = time.time_ns()
    assert c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers == []  # offset 0 is now
    s.wait_line("reached its end")
    c.close()
    assert s.stop() == 0
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    created = [r for r in records if r["kind"] == "container" and r["transition"] == "created"]
    assert len(created) == 3 and all(r["time_ns"] >= before for r in created)  # the whole scenario, after the list
    assert sum("waiting for a client" in line for line in s.lines) == 1


def test_serve_start_now_does_not_wait(tmp_path: Path) -> None:
    r = subprocess.run([*FAKECRI, "serve", "fast_exit", "--socket", str(tmp_path / "c.sock"), "--speed", "10",
                        "--start", "now", "--exit-at-end"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "waiting" not in r.stderr and "reached its end" in r.stderr


def test_repeat_replays_with_fresh_ids_and_one_consistent_truth(tmp_path: Path, served: list[Served]) -> None:
    """Three runs of fast_exit while one polling sensor stays attached: no ID repeats, what a run
    left is removed before the next, and the sensor's events pass G1-G8 against the whole truth."""
    sock, truth, out = tmp_path / "cri.sock", tmp_path / "truth.jsonl", tmp_path / "events.jsonl"
    s = Served("fast_exit", "--socket", str(sock), "--truth", str(truth), "--repeat", "3", "--exit-at-end")
    served.append(s)
    s.wait_line("waiting for a client")
    sensor = subprocess.Popen([*CRISENSOR, "run", "-q", "--enable", "--addr", f"unix://{sock}", "--events", "off",
                               "--poll-interval", "100ms", "--output", str(out), "--processes", "off"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert s.proc.wait(60) == 0, s.lines
    finally:
        sensor.send_signal(signal.SIGTERM)
        sensor.wait(20)
    assert s.wait_line("run 3 of 3 started") and s.wait_line("reached its end (run 3 of 3)")
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    created = [r for r in records if r["kind"] == "container" and r["transition"] == "created"]
    assert len(created) == 9 and len({r["container_id"] for r in created}) == 9  # 3 containers x 3 runs, no ID twice
    pods = [r for r in records if r["kind"] == "sandbox" and r["transition"] == "ready"]
    assert len({r["sandbox_id"] for r in pods}) == 3 and len({r["pod"]["uid"] for r in pods}) == 3
    # runs 1 and 2 left "web" and "app" behind: removed before the next run began
    destroyed = {r["container_id"] for r in records if r["kind"] == "container" and r["transition"] == "destroyed"}
    assert len(destroyed) == 9 - 1  # all but the last run's app
    events, failures = load_events_jsonl(out.read_text().splitlines())
    report = check(read_jsonl(truth.read_text().splitlines()), events,
                   CheckParams(poll_interval_ns=100 * MS, latency_allowance_ns=300 * MS), failures)
    assert report.ok, report.render()


def test_loop_runs_until_signalled(tmp_path: Path, served: list[Served]) -> None:
    s = Served("fast_exit", "--socket", str(tmp_path / "c.sock"), "--loop", "--speed", "10", "--start", "now")
    served.append(s)
    s.wait_line("run 3 started")
    assert s.stop() == 0
    assert not (tmp_path / "c.sock").exists()


@pytest.mark.parametrize(("args", "expect"), [
    (["--repeat", "0"], "--repeat must be a whole number >= 1, not 0"),
    (["--repeat", "2", "--loop"], "--repeat and --loop exclude each other"),
])
def test_repeat_usage_errors(tmp_path: Path, args: list[str], expect: str) -> None:
    r = subprocess.run([*FAKECRI, "serve", "fast_exit", "--socket", str(tmp_path / "c.sock"), *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and expect in r.stderr, r.stderr


# ---- 2. a flavour carries its quirks by default -------------------------------------------------


def test_crio_113_withholds_its_preface_by_default_and_a_flag_turns_it_off(tmp_path: Path,
                                                                           served: list[Served]) -> None:
    old = tmp_path / "old.sock"
    s = Served("--flavor", "crio-1.13", "--socket", str(old))
    served.append(s)
    assert "handshake cmux" in s.wait_line("serving an empty runtime")
    r = subprocess.run([*CRISENSOR, "snapshot", "--addr", f"unix://{old}"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 1 and "context deadline exceeded" in r.stderr, r.stderr  # as against the real one
    ok = subprocess.run([*CRISENSOR, "snapshot", "--addr", f"unix://{old}", "--handshake", "auto"],
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ok.returncode == 0 and "cri-o 1.13.11 (CRI v1alpha2)" in ok.stdout, ok.stderr
    plain = tmp_path / "plain.sock"
    p = Served("--flavor", "crio-1.13", "--handshake", "none", "--socket", str(plain))
    served.append(p)
    assert "handshake" not in p.wait_line("serving an empty runtime")
    r = subprocess.run([*CRISENSOR, "snapshot", "--addr", f"unix://{plain}"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr


def test_crio_126_streams_with_the_events_flag(tmp_path: Path, served: list[Served]) -> None:
    """crio-1.26 ends the event stream at once by default (no enable_pod_events); --events stream
    is the CRI-O configured with it."""
    from scenarioclient import connect as dial

    for events, streams in ((None, False), ("stream", True)):
        sock = tmp_path / f"{events}.sock"
        s = Served("--flavor", "crio-1.26", "--socket", str(sock), *(["--events", events] if events else []))
        served.append(s)
        s.wait_line("serving")
        c = dial(f"unix://{sock}")
        call = c.rt.GetContainerEvents(c.pb.GetEventsRequest(), timeout=0.5)
        try:
            next(iter(call))
            ended = "event"
        except StopIteration:
            ended = "eof"
        except grpc.RpcError as e:
            ended = e.code().name
        c.close()
        assert ended == ("DEADLINE_EXCEEDED" if streams else "eof")


# ---- 4. verify learns the sensor's mode ---------------------------------------------------------


def _verify(tmp_path: Path, *args: str, sensor: list[str]) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp_path / "report.json"
    r = subprocess.run([*FAKECRI, "verify", "fast_exit", "--grace", "600ms", "--allowance", "150ms", "--report",
                        str(report), *args, "--", *sensor], capture_output=True, text=True, cwd=ROOT, timeout=90)
    return r, json.loads(report.read_text())


def test_verify_judges_a_streaming_sensor_as_streaming_and_says_why(tmp_path: Path) -> None:
    r, doc = _verify(tmp_path, sensor=[*CRISENSOR, "run", "--enable", "--addr", "{addr}", "--poll-interval", "200ms"])
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("guarantee check: PASS; judged as streaming (sensor.connected says events: auto) "
                            "every 200ms (sensor.connected says so): G7 <= 10ms+150ms"), first
    assert doc["params"]["mode"] == "stream" and doc["params"]["poll_interval_ns"] == 200 * MS
    assert doc["verify"]["judged"]["mode_why"] == "sensor.connected says events: auto"


def test_verify_mode_flag_wins_and_process_exec_lines_are_set_aside(tmp_path: Path) -> None:
    exec_line = json.dumps({"v": 1, "seq": 0, "type": "process.exec", "pid": 7, "ppid": 1, "argv": ["true"],
                            "time_ns": 1, "observed_ns": 1, "container_id": None, "enrichment": "unknown-container"})
    script = f"echo '{exec_line}'; exec \"$@\""
    r, doc = _verify(tmp_path, "--mode", "poll", sensor=["sh", "-c", script, "sh", *CRISENSOR, "run", "--enable",
                                                         "--addr", "{addr}", "--poll-interval", "100ms",
                                                         "--events", "off", "--processes", "off"])
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("guarantee check: PASS; judged as polling (--mode poll given) every 100ms "
                            "(sensor.connected says so): G7 <= 100ms+150ms"), first
    assert "FORMAT FAIL" not in r.stdout and doc["parse_failures"] == []
    assert "note: 1 process.exec line(s): judged by G10" in r.stdout and doc["verify"]["process_exec_lines"] == 1
    assert "1 exec(s) in no container of this runtime not judged" in r.stdout  # a host exec: not the fake's


@pytest.mark.parametrize(("info", "opened", "mode", "why"), [
    ({"events": "off"}, True, "poll", "sensor.connected says events: off"),
    ({"events": "on"}, False, "stream", "sensor.connected says events: on"),
    ({"mode": "poll", "events": "auto"}, True, "poll", "sensor.connected says mode: poll"),
    ({}, True, "stream", "it opened GetContainerEvents; sensor.connected names no mode"),
    (None, False, "poll", "it opened no event stream; sensor.connected names no mode"),
])
def test_judged_as_prefers_flags_then_the_sensor_then_the_truth(info: dict | None, opened: bool, mode: str,
                                                                why: str) -> None:
    from fakecri.truth import RpcServed

    truth = [RpcServed("GetContainerEvents", "v1", 1, 2, "OK")] if opened else []
    got = verify.judged_as(verify.Options("s", ["x"]), info, truth)
    assert (got.mode, got.mode_why) == (mode, why)
    assert verify.judged_as(verify.Options("s", ["x"], mode="poll"), info, truth).mode == "poll"
    assert got.poll_interval_ns == 250 * MS
    assert verify.judged_as(verify.Options("s", ["x"]), {"poll_interval_ns": 5 * MS}, []).poll_interval_ns == 5 * MS


# ---- 5. --version; 6. global flags after the subcommand ------------------------------------------


@pytest.mark.parametrize("cli", [FAKECRI, CRISENSOR], ids=["fakecri", "crisensor"])
def test_version(cli: list[str]) -> None:
    from importlib import metadata

    r = subprocess.run([*cli, "--version"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stderr
    name, api, runtime = r.stdout.splitlines()
    assert name == f"{'fakecri' if cli is FAKECRI else 'crisensor'} {metadata.version('crisensor')}"
    assert api.startswith("CRI API: runtime.v1, runtime.v1alpha2 (")
    assert runtime == f"Python {platform.python_version()}, grpcio {grpc.__version__}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_the_subcommand(tmp_path: Path, where: str) -> None:
    args = ["snapshot", "--addr", f"unix://{tmp_path}/none.sock"]
    argv = ["-q", *args] if where == "before" else [*args, "-q"]
    r = subprocess.run([*CRISENSOR, *argv], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr  # reached the runtime check: parsed


def test_every_subcommand_takes_quiet() -> None:
    from sensor.cli import build_parser

    p = build_parser()
    for name in ("run", "snapshot", "doctor", "tune"):
        assert p.parse_args([name, "-q", *(["churn_storm"] if name == "tune" else [])]).quiet is True
    assert p.parse_args(["-q", "snapshot"]).quiet is True and p.parse_args(["snapshot"]).quiet is False

