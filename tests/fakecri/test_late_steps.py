"""A scenario step the real-time timeline applies late still happens at its instant.

On a busy machine the timeline thread gets the CPU (and the model lock) milliseconds after a
step's instant. ``RuntimeModel.backdated`` dates what the step changes at that instant -- what
answers report and what the truth records -- and records when answers started showing it as
``shown_ns``; the runner reports both the truth's error (``jitter``) and the lateness.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from fakecri.clock import RealClock, VirtualClock
from fakecri.flavors import get_flavor
from fakecri.harness import Harness
from fakecri.model import RuntimeModel
from fakecri.timeline import Runner
from fakecri.truth import ContainerTransition, SandboxTransition

MS = 1_000_000


def model() -> tuple[RuntimeModel, VirtualClock]:
    clock = VirtualClock()
    m = RuntimeModel(clock, get_flavor("containerd-1.6"), seed=1)  # 1.6: no state lag
    m.pull_image("busybox")
    return m, clock


def test_a_late_change_happens_at_its_instant_and_shows_from_now() -> None:
    m, clock = model()
    clock.advance(10 * MS)
    at = clock.now_ns() - 4 * MS
    announced: list[int] = []  # what the event stream stamps each change with
    m.on_change(lambda kind, obj, tr: announced.append(m.event_time_ns()))
    with m.backdated(at) as used:
        s = m.run_pod_sandbox("web", "default", "uid-1")
        c = m.create_container(s.id, "app", 0, "busybox")
        m.start_container(c.id)
    assert used == at
    assert (s.created_at, c.created_at, c.started_at) == (at, at, at)  # what answers report
    assert announced == [at, at, at]
    recs = [r for r in m.truth if isinstance(r, ContainerTransition | SandboxTransition)]
    assert [(r.transition, r.time_ns, r.shown_ns) for r in recs] == [
        ("ready", at, clock.now_ns()), ("created", at, clock.now_ns()), ("running", at, clock.now_ns())]


def test_a_late_change_is_never_dated_before_a_recorded_one() -> None:
    m, clock = model()
    clock.advance(10 * MS)
    s = m.run_pod_sandbox("web", "default", "uid-1")
    first = clock.now_ns()
    clock.advance(10 * MS)
    with m.backdated(first - 5 * MS) as used:
        m.stop_pod_sandbox(s.id)
    assert used == first  # the truth's order stays its time order
    stop = [r for r in m.truth if isinstance(r, SandboxTransition) and r.transition == "notready"]
    assert [(r.time_ns, r.shown_ns) for r in stop] == [(first, clock.now_ns())]


def test_a_change_on_time_has_no_shown_time() -> None:
    m, clock = model()
    clock.advance(10 * MS)
    with m.backdated(clock.now_ns()) as used:
        m.run_pod_sandbox("web", "default", "uid-1")
    assert used == clock.now_ns()
    assert [r.shown_ns for r in m.truth if isinstance(r, SandboxTransition)] == [None]


def test_only_the_applying_thread_is_backdated() -> None:
    m, clock = model()
    clock.advance(10 * MS)
    seen: list[int] = []
    with m.backdated(clock.now_ns() - 4 * MS):
        t = threading.Thread(target=lambda: seen.append(m._now()))
        t.start()
        t.join()
        mine = m._now()
    assert seen == [clock.now_ns()] and mine == clock.now_ns() - 4 * MS


@dataclass(frozen=True)
class Step:
    at_ns: int


def test_the_runner_dates_late_steps_at_their_instant_and_reports_both_figures() -> None:
    clock = RealClock()
    start = clock.now_ns()
    dated: list[int] = []
    instants: list[int] = []

    def apply(step: Step) -> None:
        if step.at_ns == 0:
            time.sleep(0.15)  # the next steps fall due meanwhile: they are applied >= 100 ms late

    class Hook:
        def __init__(self, step: Step, at: int) -> None:
            self.at = at
            instants.append(start + step.at_ns)

        def __enter__(self) -> int:
            dated.append(self.at)
            return self.at

        def __exit__(self, *exc: object) -> None:
            return None

    r = Runner([Step(0), Step(20 * MS), Step(40 * MS)], apply, clock=clock, start_ns=start, end_ns=50 * MS,
               backdate=Hook)
    r.start()
    assert r.wait_end(10)
    r.stop()
    assert min(r.jitter_ns[1:]) >= 100 * MS
    # Dated at their instants: within the few ms between the runner's start and start_ns, far from
    # the >= 100 ms they were applied late.
    assert len(dated) == 3 and all(abs(d - i) < 20 * MS for d, i in zip(dated, instants, strict=True))
    j = r.jitter_summary()
    assert j["late_max_ns"] >= 100 * MS and j["max_ns"] == max(r.truth_jitter_ns)
    assert r.truth_jitter_ns == [0, 0, 0]  # the hook used the instant it was given


SCENARIO = """\
flavor: containerd-1.6
timeline:
  - {at: 0ms, run_pod: web}
  - {at: 50ms, create: {name: app, pod: web, start: true}}
  - {at: 150ms, exit: {container: app, code: 3}}
end: 400ms
"""


def test_a_step_held_up_by_a_busy_runtime_keeps_its_instant_in_answers_and_truth(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "late.yaml"
    path.write_text(SCENARIO)
    h = Harness(str(path), socket=str(tmp_path / "cri.sock"), clock="real")
    h.start(hold=True)
    released: list[int] = []

    def busy() -> None:  # holds the model from before the exit's instant to well after it
        while h.clock.now_ns() < h.start_ns + 100 * MS:
            time.sleep(0.002)
        with h.model.lock:
            time.sleep(0.2)
            released.append(h.clock.now_ns())

    try:
        h.release()
        t = threading.Thread(target=busy)
        t.start()
        assert h.wait_end(10)
        t.join()
        exit_rec = next(r for r in h.truth if isinstance(r, ContainerTransition) and r.transition == "exited")
        assert abs(exit_rec.time_ns - (h.start_ns + 150 * MS)) < 20 * MS  # its instant, not ~300 ms
        assert exit_rec.shown_ns is not None and exit_rec.shown_ns >= released[0]
        c = h.model.containers[exit_rec.container_id]
        assert c.finished_at == exit_rec.time_ns and c.exit_code == 3  # what Status reports
    finally:
        h.stop()
