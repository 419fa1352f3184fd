"""``fakecri serve/validate/scenarios`` as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scenarioclient import connect

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def fakecri(*args: str, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "fakecri.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=60, **kw)


def serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fakecri.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"fakecri serve exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_a_scenario_until_signalled(tmp_path: Path, sig: signal.Signals) -> None:
    sock, truth = tmp_path / "cri.sock", tmp_path / "truth.jsonl"
    proc = serve("scenarios/fast_exit.yaml", "--socket", str(sock), "--truth", str(truth), "--speed", "4",
                 "--start", "now")
    try:
        wait_for(sock, proc)
        c = connect(f"unix://{sock}")
        assert c.rt.Version(c.pb.VersionRequest(), timeout=5).runtime_name == "containerd"
        c.close()
        time.sleep(0.6)  # past the scenario's end at speed 4 (375 ms)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert not sock.exists()
    assert "reached its end" in err and "jitter p50" in err and "Traceback" not in err
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert {"sandbox", "container", "process", "rpc"} <= {r["kind"] for r in records}


def test_serve_exit_at_end_and_an_empty_runtime(tmp_path: Path) -> None:
    sock = tmp_path / "a.sock"
    done = fakecri("serve", "fast_exit", "--socket", str(sock), "--speed", "10", "--exit-at-end", "--start", "now")
    assert done.returncode == 0, done.stderr
    assert "scenario fast_exit reached its end" in done.stderr and not sock.exists()
    empty = tmp_path / "e.sock"
    proc = serve("--flavor", "crio-1.26", "--socket", str(empty))
    try:
        wait_for(empty, proc)
        c = connect(f"unix://{empty}")
        v = c.rt.Version(c.pb.VersionRequest(), timeout=5)
        assert (v.runtime_name, v.runtime_api_version) == ("cri-o", "v1")
        assert c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers == []
        c.close()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and not empty.exists()


def test_validate_prints_ok_or_the_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("timeline:\n  - {at: 1s, start: ghost}\n")
    r = fakecri("validate", "scenarios/fast_exit.yaml", str(bad))
    assert r.returncode == 2
    lines = r.stdout.splitlines()
    assert lines[0] == "ok scenarios/fast_exit.yaml"
    assert lines[1].startswith(f"{bad}:2: start at 1s: no container \"ghost\" exists then (accepted: ")
    assert len(lines) == 2 and "Traceback" not in r.stderr
    assert fakecri("validate", *sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml"))).returncode == 0


def test_scenarios_lists_the_bundled_ones_with_their_summary() -> None:
    r = fakecri("scenarios")
    assert r.returncode == 0
    rows = {line.split()[0]: line.split(None, 1)[1] for line in r.stdout.splitlines()}
    assert rows["fast_exit"] == "A container exits and is removed between two 250 ms polls."
    assert {"churn_storm", "crio_1_13_old_handshake", "crio_1_16_fixed_handshake", "containerd_1_6",
            "containerd_1_7_events", "runtime_restart", "flaky_runtime", "large_node_10k"} <= set(rows)


@pytest.mark.parametrize(("args", "expect"), [
    (["serve", "no/such.yaml"], "no/such.yaml: cannot read"),
    (["serve", "--flavor", "crio-9"], "unknown flavor 'crio-9' (accepted: "),
    (["serve", "fast_exit", "--speed", "0"], "--speed must be a number > 0"),
    (["serve", "--socket", "/proc/nope/cri.sock"], "fakecri: "),
])
def test_errors_are_one_line_and_exit_2(args: list[str], expect: str) -> None:
    r = fakecri(*args)
    assert r.returncode == 2
    assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_the_default_socket_is_one_path() -> None:
    from fakecri import cli, harness

    assert cli.DEFAULT_SOCKET == harness.DEFAULT_SOCKET
