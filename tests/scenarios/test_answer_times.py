"""An answer is dated (the truth's ``rpc`` ``time_ns``) when it read the runtime, not when it arrived.

A call that waits for the model lock while a step is applied answers with that step. Dated at its
arrival, the truth said the answer was taken before the step happened, and the checker called a
sensor that reported what it was shown dishonest (G3: ``synthetic: false`` for a state "no answer
showed").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
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


class _WatchedLock:
    """The model's lock, telling (``asked``) when a thread other than ``owner`` asks for it: the
    call is then certainly waiting, past the instant it arrived."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.owner: int | None = None
        self.asked = threading.Event()

    def __enter__(self) -> Any:
        if self.owner is not None and threading.get_ident() != self.owner:
            self.asked.set()
        return self.inner.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self.inner.__exit__(*exc)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """The scenario played to its end, its lock watched, and a client."""
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    h = Harness(str(path), socket=str(tmp_path / "cri.sock"), clock="real")
    h.start()
    c = connect(h.addr)
    try:
        assert h.wait_end(10)
        lock = _WatchedLock(h.model.lock)
        h.model.lock = lock  # type: ignore[assignment]
        yield SimpleNamespace(h=h, c=c, lock=lock)
    finally:
        c.close()
        h.stop()


def _step_while_a_call_waits(rt: SimpleNamespace, step: Callable[[], object]) -> threading.Thread:
    """Hold the model lock until a call waits for it, then apply ``step`` and let go."""
    holding = threading.Event()

    def run() -> None:
        with rt.lock:
            rt.lock.owner = threading.get_ident()
            holding.set()
            assert rt.lock.asked.wait(10), "no call came for the lock"
            step()
        rt.lock.owner = None

    t = threading.Thread(target=run)
    t.start()
    assert holding.wait(5)
    return t


def _answer(h: Harness, method: str) -> RpcServed:
    return [r for r in h.truth.records() if isinstance(r, RpcServed) and r.method == method and r.code == "OK"][-1]


def _transition(h: Harness, cid: str, transition: str) -> ContainerTransition:
    return next(r for r in h.truth.records() if isinstance(r, ContainerTransition)
                and r.container_id == cid and r.transition == transition)


def test_a_list_that_waited_for_a_step_is_dated_after_it(runtime: SimpleNamespace) -> None:
    h, c, m = runtime.h, runtime.c, runtime.h.model
    pod = h.pods["web"]
    t = _step_while_a_call_waits(runtime, lambda: m.start_container(m.create_container(pod.id, "new", 0, "busybox").id))
    listed = c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=10).containers
    t.join()
    assert sorted(x.metadata.name for x in listed) == ["new", "old"]  # it waited, and shows the step
    new = next(x.id for x in listed if x.metadata.name == "new")
    answer = _answer(h, "ListContainers")
    assert answer.time_ns >= _transition(h, new, "running").time_ns, "the answer is dated before what it shows"
    assert answer.end_ns >= answer.time_ns


def test_a_status_that_waited_for_an_exit_is_dated_after_it(runtime: SimpleNamespace) -> None:
    h, c = runtime.h, runtime.c
    old = h.containers["old"]
    t = _step_while_a_call_waits(runtime, lambda: h.model.exit_container(old.id, 3))
    got = c.rt.ContainerStatus(c.pb.ContainerStatusRequest(container_id=old.id), timeout=10).status
    t.join()
    assert got.state == c.pb.CONTAINER_EXITED and got.exit_code == 3
    assert _answer(h, "ContainerStatus").time_ns >= _transition(h, old.id, "exited").time_ns, (
        "the answer is dated before what it shows")
