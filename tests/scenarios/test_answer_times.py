"""An answer is dated (the truth's ``rpc`` ``time_ns``) when it read the runtime, not when it arrived.

A call that waits for the model lock while a step is applied answers with that step. Dated at its
arrival, the truth said the answer was taken before the step happened, and the checker called a
sensor that reported what it was shown dishonest (G3: ``synthetic: false`` for a state "no answer
showed").
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from scenarioclient import connect

from fakecri.harness import Harness
from fakecri.truth import ContainerTransition, RpcServed

SCENARIO = """\
flavor: containerd-1.6
timeline:
  - {at: 0ms, run_pod: web}
  - {at: 0ms, create: {name: old, pod: web, start: true}}
end: 50ms
"""


def _busy_step(h: Harness, step: object) -> tuple[threading.Thread, threading.Event]:
    """Hold the model lock for 300 ms, then apply ``step`` (a callable) before letting go."""
    holding = threading.Event()

    def run() -> None:
        with h.model.lock:
            holding.set()
            time.sleep(0.3)
            step()  # type: ignore[operator]

    t = threading.Thread(target=run)
    t.start()
    assert holding.wait(5)
    return t, holding


def _answer(h: Harness, method: str) -> RpcServed:
    return [r for r in h.truth.records() if isinstance(r, RpcServed) and r.method == method and r.code == "OK"][-1]


def test_a_list_that_waited_for_a_step_is_dated_after_it(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    h = Harness(str(path), socket=str(tmp_path / "cri.sock"), clock="real")
    h.start()
    c = connect(h.addr)
    try:
        assert h.wait_end(10)
        pod = h.pods["web"]
        t, _ = _busy_step(h, lambda: h.model.start_container(
            h.model.create_container(pod.id, "new", 0, "busybox").id))
        listed = c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=10).containers
        t.join()
        assert sorted(x.metadata.name for x in listed) == ["new", "old"]  # it waited, and shows the step
        new = next(x.id for x in listed if x.metadata.name == "new")
        born = next(r for r in h.truth.records() if isinstance(r, ContainerTransition)
                    and r.transition == "running" and r.container_id == new)
        answer = _answer(h, "ListContainers")
        assert answer.time_ns >= born.time_ns, "the answer is dated before what it shows"
        assert answer.end_ns >= answer.time_ns
    finally:
        c.close()
        h.stop()


def test_a_status_that_waited_for_an_exit_is_dated_after_it(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    h = Harness(str(path), socket=str(tmp_path / "cri.sock"), clock="real")
    h.start()
    c = connect(h.addr)
    try:
        assert h.wait_end(10)
        old = h.containers["old"]
        t, _ = _busy_step(h, lambda: h.model.exit_container(old.id, 3))
        got = c.rt.ContainerStatus(c.pb.ContainerStatusRequest(container_id=old.id), timeout=10).status
        t.join()
        assert got.state == c.pb.CONTAINER_EXITED and got.exit_code == 3
        exited = next(r for r in h.truth.records() if isinstance(r, ContainerTransition) and r.transition == "exited")
        assert _answer(h, "ContainerStatus").time_ns >= exited.time_ns, "the answer is dated before what it shows"
    finally:
        c.close()
        h.stop()
