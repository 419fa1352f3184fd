"""SIGTERM/SIGINT end ``crisensor run`` within a second at any scale, also mid-snapshot or with a
hung runtime: in-flight RPCs are cancelled, what was emitted is flushed, exit 0.

Real processes as an operator runs them: ``fakecri serve`` with a large node and injected latency
(a first snapshot that would take many seconds), ``crisensor run`` against it, a signal sent while
the runtime is answering the snapshot's calls. The bound asserted (3 s) is generous; the measured
figure is printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKECRI = [sys.executable, "-m", "fakecri.cli"]
CRISENSOR = [sys.executable, "-m", "sensor.cli"]
#: The issue's bound is 1 s; slack for a loaded CI machine.
EXIT_BOUND_S = 3.0

#: ~2,000 exited containers, each ContainerStatus 50 ms late: their poll's status fan-out (16 in
#: flight) alone takes over 6 s, so a sensor that waits for its poll to finish cannot meet the bound.
SLOW_NODE = """\
# A node whose runtime answers ContainerStatus slowly, and a poll that must ask it 2,000 times: served
# with --start first-list, ~2,000 containers start and exit within the next second and stay listed,
# and every exit's status is asked whatever the poll's budgets (an exit code cannot be estimated),
# so the fan-out is under way whatever the machine's speed.
flavor: containerd-1.7
seed: 7
quirks:
  latency: {ms: 50, methods: [ContainerStatus]}
generators:
  - churn: {start: 300ms, duration: 400ms, rate: 5000, lifetime: {uniform: [10ms, 50ms]},
            removal_delay: {uniform: [60s, 61s]}, pods: 20}
end: 2s
"""

#: ListContainers never answers (until a 60 s cap the sensor's 30 s deadline comes before).
HUNG_RUNTIME = """\
# A runtime whose ListContainers hangs.
flavor: containerd-1.7
quirks:
  hang: {methods: [ListContainers], max: 60s}
timeline:
  - {at: 0s, run_pod: web}
end: 1s
"""


def _wait_for(path: Path, needle: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if path.exists() and needle in path.read_text(encoding="utf-8", errors="replace"):
            return
        assert proc.poll() is None, f"{what} ended early (exit {proc.returncode})"
        assert time.monotonic() < deadline, f"{what}: {needle!r} did not appear in {path} within {timeout:.0f} s"
        time.sleep(0.02)


class Rig:
    def __init__(self, tmp: Path, scenario: str) -> None:
        self.tmp = tmp
        self.socket = tmp / "cri.sock"
        self.truth = tmp / "truth.jsonl"
        self.events = tmp / "events.jsonl"
        self.errors = tmp / "sensor.err"
        (tmp / "scenario.yaml").write_text(scenario, encoding="utf-8")
        self.procs: list[subprocess.Popen[bytes]] = []

    def serve(self, start: str = "now") -> None:
        p = subprocess.Popen([*FAKECRI, "serve", str(self.tmp / "scenario.yaml"), "--socket", str(self.socket),
                              "--truth", str(self.truth), "--start", start], stdout=subprocess.DEVNULL,
                             stderr=open(self.tmp / "fakecri.err", "wb"))  # noqa: SIM115
        self.procs.append(p)
        _wait_for(self.tmp / "fakecri.err", "serving", p, "fakecri serve")

    def sensor(self, *extra: str, config: str = "") -> subprocess.Popen[bytes]:
        args = [*CRISENSOR, "run", "--enable", "--addr", f"unix://{self.socket}", "--events", "off",
                "--output", str(self.events), "--processes", "off", *extra]
        if config:
            (self.tmp / "sensor.yaml").write_text(config, encoding="utf-8")
            args += ["--config", str(self.tmp / "sensor.yaml")]
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.errors, "wb"))  # noqa: SIM115
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[type[Rig]]:
    made: list[Rig] = []

    def make(scenario: str) -> Rig:
        r = Rig(tmp_path, scenario)
        made.append(r)
        return r

    yield make  # type: ignore[misc]
    for r in made:
        r.close()


def _signal_and_time(proc: subprocess.Popen[bytes], sig: int) -> float:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"crisensor run did not exit within 30 s of {signal.Signals(sig).name}")
    return time.monotonic() - t0


def _events_are_whole(path: Path) -> list[dict[str, object]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the output ends in a partial line"
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_status_fan_out_exits_0_within_a_second(rig, sig: int) -> None:  # type: ignore[no-untyped-def]
    r = rig(SLOW_NODE)
    r.serve(start="first-list")
    sensor = r.sensor()
    _wait_for(r.truth, '"method":"ContainerStatus"', sensor, "crisensor run")  # the fan-out is under way
    took = _signal_and_time(sensor, sig)
    print(f"\n{signal.Signals(sig).name} during the status calls for 2,000 slow containers: exit {sensor.returncode} "
          f"after {took * 1000:.0f} ms")
    err = r.errors.read_text(encoding="utf-8")
    assert sensor.returncode == 0, err
    assert took < EXIT_BOUND_S, f"took {took:.2f} s to exit"
    assert "Traceback" not in err and "connection lost" not in err, err
    events = _events_are_whole(r.events)
    assert [e["type"] for e in events[:1]] == ["sensor.connected"], "what was emitted before the signal is lost"


def test_sigterm_while_decoding_a_10k_container_list_exits_0_within_a_second(rig) -> None:  # type: ignore[no-untyped-def]
    """CPU-bound, not waiting on the runtime: the list of the bundled 10,000-container node is being
    decoded and diffed when the signal comes (no RPC to cancel; the loop is left behind)."""
    r = rig((ROOT / "scenarios" / "large_node_10k.yaml").read_text(encoding="utf-8"))
    r.serve()
    sensor = r.sensor()
    _wait_for(r.truth, '"method":"ListPodSandbox"', sensor, "crisensor run")  # both lists answered
    took = _signal_and_time(sensor, signal.SIGTERM)
    print(f"\nSIGTERM while the first list of 10,000 containers is processed: exit {sensor.returncode} after "
          f"{took * 1000:.0f} ms")
    err = r.errors.read_text(encoding="utf-8")
    assert sensor.returncode == 0, err
    assert took < EXIT_BOUND_S, f"took {took:.2f} s to exit"
    assert "Traceback" not in err, err
    _events_are_whole(r.events)


def test_sigterm_while_the_runtime_hangs_exits_0_within_a_second(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig(HUNG_RUNTIME)
    r.serve()
    # A 30 s deadline: a sensor that only waits for its call to time out stays 30 s.
    sensor = r.sensor(config="crisensor:\n  rpc_timeout: 30s\n")
    _wait_for(r.events, "sensor.connected", sensor, "crisensor run")
    time.sleep(0.3)  # the first ListContainers is hanging now
    took = _signal_and_time(sensor, signal.SIGTERM)
    print(f"\nSIGTERM while ListContainers hangs: exit {sensor.returncode} after {took * 1000:.0f} ms")
    err = r.errors.read_text(encoding="utf-8")
    assert sensor.returncode == 0, err
    assert took < EXIT_BOUND_S, f"took {took:.2f} s to exit"
    assert "Traceback" not in err, err
    assert [e["type"] for e in _events_are_whole(r.events)] == ["sensor.connected"]


def test_sigterm_while_idle_exits_0_at_once(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig("# An idle runtime.\nflavor: containerd-1.7\ntimeline:\n  - {at: 0s, run_pod: web}\nend: 1s\n")
    r.serve()
    sensor = r.sensor("--poll-interval", "5s")
    _wait_for(r.events, "sandbox.ready", sensor, "crisensor run")
    took = _signal_and_time(sensor, signal.SIGTERM)
    print(f"\nSIGTERM while idle: exit {sensor.returncode} after {took * 1000:.0f} ms")
    assert sensor.returncode == 0 and took < EXIT_BOUND_S
    assert "sandbox.ready" in [e["type"] for e in _events_are_whole(r.events)]


def test_exit_codes_are_in_the_help() -> None:
    for cmd in (CRISENSOR, [*CRISENSOR, "run"], FAKECRI):
        out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=30, env=dict(os.environ))
        assert out.returncode == 0
        text = " ".join(out.stdout.split())
        assert "exit codes:" in text and "0 ok" in text and "1 runtime failure" in text and "2 usage" in text, text


def test_interrupt_cuts_a_status_fan_out_short_from_another_thread(fakecri, caplog) -> None:  # type: ignore[no-untyped-def]
    """The mechanism, in process: ``Poller.interrupt`` (what the CLI calls on a signal) ends a poll
    blocked in a ContainerStatus call that would hang for 30 s, and starts no further status call."""
    import logging
    import threading

    from sensor.client import CriClient
    from sensor.output import Emitter
    from sensor.poller import Poller

    h = fakecri.start(ROOT / "scenarios" / "fast_exit.yaml", clock="real")
    for i in range(5):  # exited containers: they need ContainerStatus on the first poll
        sb = h.model.run_pod_sandbox(f"p{i}", "default", f"uid-{i}", 0)
        c = h.model.create_container(sb.id, "app", 0, "busybox")
        h.model.start_container(c.id)
        h.model.stop_container(c.id)
    h.faults.start("hang", {"methods": ["ContainerStatus"], "max": 30_000_000_000})
    client = CriClient(h.addr, rpc_timeout_s=30)
    poller = Poller(client, Emitter(None), poll_interval_ns=250_000_000)
    stop = threading.Event()
    loop = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    caplog.set_level(logging.INFO, logger="crisensor")
    loop.start()
    deadline = time.monotonic() + 20
    while client.rpc_count.get("ContainerStatus", 0) == 0:  # the first status call is hanging now
        assert time.monotonic() < deadline and loop.is_alive()
        time.sleep(0.01)
    time.sleep(0.2)
    issued = client.rpc_count["ContainerStatus"]  # the calls in flight (sensor.fanout), all hanging
    t0 = time.monotonic()
    stop.set()
    poller.interrupt()
    loop.join(EXIT_BOUND_S)
    took = time.monotonic() - t0
    print(f"\ninterrupt during a hung ContainerStatus: the poll loop returned after {took * 1000:.0f} ms")
    assert not loop.is_alive(), "the poll loop still waits for the hung call"
    assert client.rpc_count["ContainerStatus"] == issued, "status calls went on after the interrupt"
    assert "connection lost" not in caplog.text
    client.close()
