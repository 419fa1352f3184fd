"""The sensor's heap (sensor/heap.py): capped malloc arenas, a collector frozen after the first snapshot."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sensor.cli
from sensor.heap import ARENAS, FreezeOnce, keep_freed_memory, limit_arenas

#: A child that starts threads which each allocate (every new thread that mallocs gets an arena of
#: its own while glibc's limit allows), then prints glibc's per-arena statistics.
CHILD = textwrap.dedent("""
    import ctypes, sys, threading
    from sensor.heap import limit_arenas
    if sys.argv[1] == "cap":
        assert limit_arenas()  # the sensor's own cap (ARENAS)
    held = []
    together = threading.Barrier(6)  # all alive at once: an ended thread's arena goes to the next
    def work():
        together.wait()
        held.append([bytes(300_000) for _ in range(4)])
        together.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctypes.CDLL(None).malloc_stats()
""")


def _arenas(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(sensor.cli.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return len(re.findall(r"^Arena \d+:", r.stderr, re.M))


def _glibc() -> bool:
    import ctypes

    return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc(), reason="glibc's malloc only")
def test_capped_threads_share_the_sensors_arenas_where_uncapped_ones_take_their_own() -> None:
    assert ARENAS == 1  # what docs/performance.md ("Memory") measured
    assert _arenas("cap") == ARENAS
    assert _arenas("free") > 2  # the test can tell: without the cap the threads spread out


def test_the_operators_own_setting_wins() -> None:
    assert limit_arenas(2, env={"MALLOC_ARENA_MAX": "8"}) is False
    assert keep_freed_memory(env={"MALLOC_TRIM_THRESHOLD_": "131072"}) is False
    assert keep_freed_memory(env={"MALLOC_MMAP_THRESHOLD_": "131072"}) is False


#: A child that allocates one answer-sized buffer (8 MB) and prints how many more chunks glibc mapped
#: apart (``mallinfo2().hblks``): a buffer mapped apart is unmapped when freed, and the next one faults in anew.
MAPPED = textwrap.dedent("""
    import ctypes, sys
    from sensor.heap import keep_freed_memory
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                         "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    before = libc.mallinfo2().hblks  # what the interpreter's start-up mapped
    answer = bytes(8_000_000)
    print(libc.mallinfo2().hblks - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc(), reason="glibc's malloc only")
def test_answers_stay_in_the_arena_instead_of_being_mapped_apart() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(sensor.cli.__file__).parents[1])}

    def mapped(mode: str) -> int:
        r = subprocess.run([sys.executable, "-c", MAPPED, mode], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return int(r.stdout)

    assert mapped("keep") == 0
    assert mapped("default") >= 1  # the test can tell: glibc's default maps it apart


def test_run_caps_the_arenas_before_anything_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(sensor.cli, "limit_arenas", lambda *a: calls.append("arenas") or True)
    monkeypatch.setattr(sensor.cli, "keep_freed_memory", lambda *a: calls.append("thresholds") or True)
    cfg = tmp_path / "sensor.yaml"
    cfg.write_text("crisensor:\n  enabled: false\n")
    assert sensor.cli.main(["-q", "run", "--config", str(cfg)]) == 0
    assert calls == ["arenas", "thresholds"]


def test_the_collector_is_frozen_once_after_the_first_successful_poll() -> None:
    frozen: list[int] = []
    hook = FreezeOnce(lambda: frozen.append(1))
    hook(1_000)
    hook(2_000)
    assert frozen == [1] and hook.done


def test_freezing_hides_what_exists_from_the_collector() -> None:
    import gc

    held = [[i] for i in range(1000)]
    before = gc.get_freeze_count()
    try:
        FreezeOnce()(0)
        assert gc.get_freeze_count() >= before + len(held)
    finally:
        gc.unfreeze()


#: ``crisensor run`` with ``sensor.heap.FreezeOnce`` recording its calls in a file (argv[1]), the rest argv[2:].
RECORDING_RUN = textwrap.dedent("""
    import sys
    import sensor.cli, sensor.heap
    class Recording(sensor.heap.FreezeOnce):
        def __init__(self):
            super().__init__(lambda: open(sys.argv[1], "a").write("frozen\\n"))
    sensor.cli.FreezeOnce = Recording
    sys.exit(sensor.cli.main(sys.argv[2:]))
""")


def test_run_freezes_the_collector_once_after_its_first_snapshot(tmp_path: Path) -> None:
    import json
    import os
    import signal

    from fakecri.clock import RealClock
    from fakecri.flavors import get_flavor
    from fakecri.model import RuntimeModel
    from fakecri.server import FakeCriServer
    from tests.sensor.test_cli import _wait_for, write

    model = RuntimeModel(RealClock(), get_flavor("containerd-1.7"))
    model.pull_image("busybox")
    sb = model.run_pod_sandbox("web", "default", "u1")
    model.start_container(model.create_container(sb.id, "app", 0, "busybox").id)
    marks, out = tmp_path / "frozen", tmp_path / "events.jsonl"
    with FakeCriServer(model, str(tmp_path / "rt.sock")) as server:
        proc = subprocess.Popen([sys.executable, "-c", RECORDING_RUN, str(marks), "-q", "run", "--config",
                                 write(tmp_path, "{}\n"), "--enable", "--addr", server.addr, "--poll-interval",
                                 "50ms", "--output", str(out), "--processes", "off"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(Path(sensor.cli.__file__).parents[1])})
        try:
            _wait_for(lambda: marks.exists())
            types = [json.loads(line)["type"] for line in out.read_text().splitlines()]
            assert "container.running" in types  # frozen after the first snapshot was written
            later = model.create_container(sb.id, "later", 0, "busybox")  # more polls follow: no second freeze
            model.start_container(later.id)
            _wait_for(lambda: any(e["type"] == "container.running" and e.get("container_id") == later.id
                                  for e in map(json.loads, out.read_text().splitlines())))
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert marks.read_text() == "frozen\n"
