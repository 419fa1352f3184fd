"""``crisensor run`` as a real subprocess against a hostile runtime: it keeps running through
every fault, writes only schema-valid events and no phantom, prints no traceback, says what
happened in its metrics (scraped over HTTP) and its log, and exits 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hostile_cri import (
    GARBAGE,
    WRONG_WIRE_TYPE,
    HostileCri,
    check_events,
    container,
    event,
    pod_status,
    sandbox,
    status_of,
    truncated,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.01)


@pytest.fixture
def crisensor(tmp_path: Path) -> Iterator[Callable[..., SimpleNamespace]]:
    """``crisensor(server, events="off")``: ``crisensor run`` against ``server``; ``stop()`` sends
    SIGTERM and returns (exit code, stderr); ``events()``; ``metric(name, **labels)`` scraped."""
    procs: list[subprocess.Popen[str]] = []

    def start(server: HostileCri, events: str = "off") -> SimpleNamespace:
        out = tmp_path / "events.jsonl"
        cfg = tmp_path / "sensor.yaml"
        cfg.write_text(f"crisensor:\n  enabled: true\n  addr: {server.addr}\n  poll_interval: 50ms\n"
                       f"  rpc_timeout: 1s\n  events: {events}\n  resync_interval: 1m\n"
                       "  processes: 'off'\n")  # execs of unrelated containers on this node are not the point
        (tmp_path / "analytics.yaml").write_text("{}\n")
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "sensor.cli", "run", "--config", str(cfg), "--analytics-config",
                                 str(tmp_path / "analytics.yaml"), "--output", str(out), "--metrics-addr",
                                 f"127.0.0.1:{port}"],
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(proc)

        def lines() -> list[dict]:
            return [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []

        def metric(name: str, **labels: str) -> float:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                       if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

        def wait_alive(cond: Callable[[], object], what: str) -> None:
            def check() -> object:
                assert proc.poll() is None, f"crisensor exited ({proc.returncode}) before {what}"
                return cond()
            wait(check, what=what)

        def stop() -> tuple[int, str]:
            if proc.poll() is not None:
                pytest.fail(f"crisensor exited ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
            return proc.returncode, err

        return SimpleNamespace(proc=proc, events=lines, metric=metric, stop=stop, wait=wait_alive)

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_crisensor_run_survives_lists_that_stop_decoding(hostile, crisensor) -> None:  # type: ignore[no-untyped-def]
    """The issue's reproduction: good lists, then bytes that do not decode (garbage, truncated, a
    wrong wire type), then good lists again -- plus statuses that do not decode, unknown states,
    empty and duplicate IDs and an answer that never comes."""
    server = hostile()
    server.sandboxes = [sandbox("sb1")]
    server.containers = [container("c0", "sb1"), container("c1", "sb1")]
    s = crisensor(server)
    s.wait(lambda: server.calls["ListContainers"] >= 3, "three good lists")
    good = server.honest("ListContainers")
    server.fault("ListContainers", GARBAGE, truncated(good), WRONG_WIRE_TYPE, GARBAGE)
    s.wait(lambda: not server.faults["ListContainers"], "the malformed burst served")
    n = server.calls["ListContainers"]
    s.wait(lambda: server.calls["ListContainers"] >= n + 3, "good lists after the burst")
    # a second kind of trouble each: a status that does not decode, odd records, a hang
    server.fault("ContainerStatus", GARBAGE)
    server.containers += [container("c2", "sb1"), container("", "sb1"), container("c3", "sb1", state=7),
                          container("c0", "sb1", state=2)]
    server.sandboxes += [sandbox("sb2", state=5), sandbox("")]
    s.wait(lambda: not server.faults["ContainerStatus"], "the malformed status served")
    server.fault("ListPodSandbox", server.hang)
    s.wait(lambda: not server.faults["ListPodSandbox"], "the hang served")
    n = server.calls["ListContainers"]
    s.wait(lambda: server.calls["ListContainers"] >= n + 3, "good lists after the hang")
    assert s.proc.poll() is None, "crisensor exited"
    assert s.metric("crisensor_malformed_responses_total", method="ListContainers") == 4
    assert s.metric("crisensor_malformed_responses_total", method="ContainerStatus") == 1
    assert s.metric("crisensor_rpc_errors_total", method="ListPodSandbox", code="DEADLINE_EXCEEDED") >= 1
    assert s.metric("crisensor_dropped_records_total", kind="container", reason="empty_id") >= 1
    assert s.metric("crisensor_dropped_records_total", kind="container", reason="duplicate_id") >= 1
    assert s.metric("crisensor_unknown_enum_values_total", enum="ContainerState") >= 1
    assert s.metric("crisensor_unknown_enum_values_total", enum="PodSandboxState") >= 1
    code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err, err
    assert err.count("ListContainers answered bytes that do not decode") == 1, err  # once per burst
    assert err.count("ContainerStatus answered bytes that do not decode") == 1, err
    ids = {"sb1", "sb2", "c0", "c1", "c2", "c3"}
    check_events(s.events(), served=ids, alive=ids)


def test_crisensor_run_survives_a_hostile_event_stream(hostile, crisensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile(stream=True)
    server.sandboxes = [sandbox("sb1")]
    c = container("c0", "sb1")
    server.containers = [c]
    s = crisensor(server, events="on")
    s.wait(lambda: server.calls["GetContainerEvents"] >= 1 and server.calls["ListContainers"] >= 1, "subscribed")
    lists = server.calls["ListContainers"]
    pod = pod_status(server.sandboxes[0])
    server.events.put(GARBAGE)
    server.events.put(event("c0", 9, status=status_of(c), pod=pod))  # a ContainerEventType from the future
    server.events.put(event("", 1, status=status_of(container("", "sb1")), pod=pod))
    server.events.put(truncated(event("c0", 2, status=status_of(c), pod=pod)))
    c5 = container("c5", "sb1", state=0)
    server.containers.append(c5)
    server.events.put(event("c5", 0, status=status_of(c5), pod=pod))  # a good one: applied
    s.wait(lambda: any(e.get("container_id") == "c5" for e in s.events()), "the good event applied")
    s.wait(lambda: server.calls["ListContainers"] > lists, "a list after the skipped events")
    # c5 may come first from the list the unknown event type asks for: wait for the stream to be read
    s.wait(lambda: s.metric("crisensor_malformed_responses_total", method="GetContainerEvents") >= 2,
           "both malformed messages counted")
    assert s.metric("crisensor_malformed_responses_total", method="GetContainerEvents") == 2
    assert s.metric("crisensor_unknown_enum_values_total", enum="ContainerEventType") == 1
    assert s.metric("crisensor_dropped_records_total", kind="event", reason="empty_id") == 1
    assert server.calls["GetContainerEvents"] == 1  # the stream was never dropped
    code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err, err
    assert "ContainerEventType 9, which this sensor does not know" in err
    check_events(s.events(), served={"sb1", "c0", "c5"}, alive={"sb1", "c0", "c5"})


def test_crisensor_run_rides_out_a_flapping_socket(hostile, crisensor) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    server.sandboxes = [sandbox("sb1")]
    server.containers = [container("c0", "sb1"), container("c1", "sb1", state=2)]
    s = crisensor(server)
    s.wait(lambda: server.calls["ListContainers"] >= 2, "first lists")
    for _ in range(5):
        server.stop()
        time.sleep(0.2)
        n = server.calls["ListContainers"]
        server.start()
        s.wait(lambda n=n: server.calls["ListContainers"] > n, "a list after the restart")
    s.wait(lambda: s.metric("crisensor_reconnects_total") >= 5, "five reconnects")
    code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err, err
    events = s.events()
    check_events(events, served={"sb1", "c0", "c1"}, alive={"sb1", "c0"})
    assert [e["type"] for e in events].count("sensor.connected") == 6
    assert all(e["type"] != "container.destroyed" for e in events)


@pytest.mark.parametrize(("answer", "detail"), [(GARBAGE, "ListContainersResponse does not decode (DecodeError)"),
                                                (WRONG_WIRE_TYPE, "ListContainersResponse.containers (field 1) "
                                                                  "sent as varint")])
def test_crisensor_snapshot_of_an_answer_that_does_not_decode_is_one_line(hostile, answer, detail) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    server.sandboxes = [sandbox("sb1")]
    server.always["ListContainers"] = lambda _req: answer
    p = subprocess.run([sys.executable, "-m", "sensor.cli", "snapshot", "--addr", server.addr], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr == f"crisensor: ListContainers: MALFORMED: {detail}\n"


def test_crisensor_snapshot_leaves_out_records_with_empty_ids(hostile) -> None:  # type: ignore[no-untyped-def]
    server = hostile()
    server.sandboxes = [sandbox("sb1"), sandbox("")]
    server.containers = [container("c0", "sb1"), container("", "sb1", state=7)]
    p = subprocess.run([sys.executable, "-m", "sensor.cli", "snapshot", "--json", "--addr", server.addr],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    snap = json.loads(p.stdout)
    assert [s["id"] for s in snap["sandboxes"]] == ["sb1"] and [c["id"] for c in snap["containers"]] == ["c0"]
