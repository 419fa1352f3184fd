"""The real sensor against the fake runtime on one virtual clock, judged by the guarantee checker.

Two drivers share the assembly of the sensor (``Sensor``: the real ``Poller`` + ``CriClient`` +
``DiffEngine`` + ``Emitter`` talking gRPC over the harness's real unix socket, reading the
harness's ``VirtualClock``):

* ``run_scenario`` plays a scenario (bundled name, path or ``Scenario``) and polls every
  ``poll_interval`` on the scenario's own clock, a poll at offset 0 after the steps due then;
* ``History`` is a runtime history built call by call (pods, containers, churn bursts, restarts,
  faults, time), with the sensor polling at fixed ticks ``t0 + k * P`` whenever time passes one.
  Every call is also written to ``History.script`` as the Python line that repeats it, so a
  history hypothesis found can be pasted into a plain test.

``Parts`` says which classes make up the sensor, so a broken sensor (tests/guarantees/mutants.py)
is the real one with one part swapped.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakecri import scenario as sc
from fakecri.check import GUARANTEES, CheckParams, Report, check
from fakecri.harness import Harness, bundled_path
from fakecri.model import Container, CriError, Sandbox
from sensor.client import CriClient
from sensor.config import SensorConfig
from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.output import Emitter
from sensor.poller import Poller

MS = 1_000_000
POLL_INTERVAL_NS = 250 * MS
#: Real seconds a call may take: ample for a local socket even on a loaded machine, yet small, so a
#: ``hang`` fault (flaky_runtime) costs little wall time.
RPC_TIMEOUT_S = 1.0
#: Guarantees judged while a history is still running (G7 and G8 are judged at its end).
STEP_GUARANTEES = ("G1", "G2", "G3", "G4", "G5", "G6")


SHIPPED_ENGINE = functools.partial(DiffEngine, state_lag_ns=SensorConfig().state_lag_ns)


@dataclass(frozen=True)
class Parts:
    """The classes the sensor is assembled from (a mutant swaps one)."""

    client: type[CriClient] = CriClient
    emitter: type[Emitter] = Emitter
    #: as ``crisensor run`` builds it: with the configured state lag bound (the fake's flavours lag)
    engine: Callable[[], Any] = SHIPPED_ENGINE


class Sensor:
    """The real poll loop over the real socket, on the harness's clock; ``events`` as emitted."""

    def __init__(self, addr: str, now_ns: Callable[[], int], poll_interval_ns: int, parts: Parts = Parts()) -> None:
        self.events: list[Event] = []
        self.emitter = parts.emitter(None)
        self.emitter.listeners.append(self.events.append)
        self.client = parts.client(addr, clock=now_ns, rpc_timeout_s=RPC_TIMEOUT_S)
        self.poller = Poller(self.client, self.emitter, poll_interval_ns=poll_interval_ns, now_ns=now_ns,
                             engine=parts.engine())

    def poll(self) -> bool:
        return self.poller.step()

    def close(self) -> None:
        close = getattr(self.poller, "close", None)  # joins an event-stream reader, if any
        if close is not None:
            close()
        self.client.close()


def _socket_dir() -> str:
    return tempfile.mkdtemp(prefix="fcg-", dir="/tmp")  # unix socket paths are limited to 107 bytes


def judge(truth: list[Any], events: list[Event], poll_interval_ns: int, end_ns: int,
          guarantees: tuple[str, ...] = tuple(GUARANTEES)) -> tuple[Report, list[str]]:
    """The report, and which of ``guarantees`` failed (unreadable events count as a failure)."""
    report = check(truth, events, CheckParams(poll_interval_ns=poll_interval_ns, end_ns=end_ns))
    failed = [g for g in report.failed if g in guarantees]
    if report.parse_failures:
        failed.append("format")
    return report, failed


@dataclass
class ScenarioRun:
    truth: list[Any]
    events: list[Event]
    report: Report
    skipped: list[Any] = field(default_factory=list)


def run_scenario(scenario: str | sc.Scenario, parts: Parts = Parts(), *, poll_interval_ns: int = POLL_INTERVAL_NS,
                 tail_ns: int | None = None, flavor: str | None = None) -> ScenarioRun:
    """Play ``scenario`` on a virtual clock with the sensor polling every ``poll_interval_ns``
    from offset 0 until ``tail_ns`` (default two intervals) after the scenario's end; judge it."""
    if isinstance(scenario, str) and "/" not in scenario and not scenario.endswith(".yaml"):
        scenario = str(bundled_path(scenario))
    tmp = _socket_dir()
    try:
        h = Harness(scenario, socket=f"{tmp}/cri.sock", flavor=flavor, clock="virtual")
        h.start()
        sensor = Sensor(h.addr, h.clock.now_ns, poll_interval_ns, parts)
        try:
            end = h.end_ns + (2 * poll_interval_ns if tail_ns is None else tail_ns)
            t = 0
            while t <= end:
                h.advance_to(t)
                sensor.poll()
                t += poll_interval_ns
        finally:
            sensor.close()
            h.stop()
        truth = h.truth.records()
        report = check(truth, sensor.events, CheckParams(poll_interval_ns=poll_interval_ns,
                                                         end_ns=h.clock.now_ns()))
        return ScenarioRun(truth, sensor.events, report, list(h.skipped))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class HistoryFailure(AssertionError):
    """A guarantee broke; the message holds the history as Python lines and the report."""


class History:
    """A runtime history built call by call, watched by the real sensor on the same virtual clock.

    Objects are named ``p1``, ``c2``... in creation order (one counter for both). Every method
    that changes the runtime or time appends the Python line that repeats it to ``script``.
    Operations a real runtime would refuse are not offered here: callers (the state machine)
    pick only legal targets, e.g. ``live_containers("running")`` for ``exit``.
    """

    def __init__(self, *, poll_interval_ns: int = POLL_INTERVAL_NS, flavor: str = "containerd-1.7",
                 parts: Parts = Parts()) -> None:
        self.poll_interval_ns = poll_interval_ns
        self._tmp = _socket_dir()
        self.h = Harness(None, socket=f"{self._tmp}/cri.sock", flavor=flavor, clock="virtual")
        self.h.start()
        self.model = self.h.model
        self.clock = self.h.clock
        self.sensor = Sensor(self.h.addr, self.clock.now_ns, poll_interval_ns, parts)
        self.t0 = self.clock.now_ns()
        self.next_poll_ns = self.t0
        self.up = True
        self.keep_state = True
        self.pods: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self._serial = 0
        self.script: list[str] = [f"hi = History(poll_interval_ns={poll_interval_ns // MS} * MS, flavor={flavor!r})"]
        self._closed = False
        self._races: dict[str, tuple[Container, int, int]] = {}
        self._policy_before_call = self.h.faults.before_call
        self.h.faults.before_call = self._before_call  # type: ignore[method-assign]
        self._to(self.t0)  # the first poll

    # ---- bookkeeping -------------------------------------------------------------------------

    def _note(self, line: str) -> None:
        self.script.append(f"hi.{line}")

    def _name(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}{self._serial}"

    @property
    def now_ms(self) -> float:
        return (self.clock.now_ns() - self.t0) / MS

    def live_pods(self, *states: str) -> list[str]:
        out = []
        for name, s in self.pods.items():
            if self.model.sandboxes.get(s.id) is s and (not states or s.state in states):
                out.append(name)
        return out

    def live_containers(self, *states: str) -> list[str]:
        out = []
        for name, c in self.containers.items():
            if self.model.containers.get(c.id) is c and (not states or c.state in states):
                out.append(name)
        return out

    # ---- time --------------------------------------------------------------------------------

    def _to(self, target_ns: int) -> None:
        while self.next_poll_ns <= target_ns:
            self.clock.set(max(self.clock.now_ns(), self.next_poll_ns))  # a race may have moved it on
            self.sensor.poll()
            self.next_poll_ns += self.poll_interval_ns
        self.clock.set(max(self.clock.now_ns(), target_ns))

    def advance(self, ms: float) -> None:
        """Let ``ms`` pass; the sensor polls at every tick on the way (a tick landing exactly at
        the end is polled before anything else happens at that instant)."""
        self._note(f"advance({ms!r})")
        self._to(self.clock.now_ns() + round(ms * MS))

    # ---- sandboxes and containers ------------------------------------------------------------

    def run_pod(self) -> str:
        name = self._name("p")
        self._note("run_pod()")
        self.pods[name] = self.model.run_pod_sandbox(name, "default", f"uid-{name}", labels={"app": name})
        return name

    def stop_pod(self, pod: str) -> None:
        self._note(f"stop_pod({pod!r})")
        self.model.stop_pod_sandbox(self.pods[pod].id)

    def remove_pod(self, pod: str) -> None:
        self._note(f"remove_pod({pod!r})")
        self.model.remove_pod_sandbox(self.pods[pod].id)

    def create(self, pod: str, start: bool = False) -> str:
        name = self._name("c")
        self._note(f"create({pod!r}, start={start!r})")
        with self.model.lock:
            c = self.model.create_container(self.pods[pod].id, name, 0, "busybox", labels={"c": name})
            self.containers[name] = c
            if start:
                self.model.start_container(c.id)
        return name

    def start(self, container: str) -> None:
        """Start it; in a stopped pod containerd refuses and marks it exited (StartError) instead."""
        self._note(f"start({container!r})")
        with contextlib.suppress(CriError):
            self.model.start_container(self.containers[container].id)

    def exit(self, container: str, code: int = 0) -> None:
        self._note(f"exit({container!r}, code={code!r})")
        self.model.exit_container(self.containers[container].id, code)

    def stop(self, container: str) -> None:
        self._note(f"stop({container!r})")
        self.model.stop_container(self.containers[container].id)

    def remove(self, container: str) -> None:
        self._note(f"remove({container!r})")
        self.model.remove_container(self.containers[container].id)

    def churn(self, pod: str, lifetime_ms: float, removal_ms: float, code: int = 0) -> str:
        """A container created and started now, exited ``lifetime_ms`` later and removed
        ``removal_ms`` after that (polls due meanwhile happen)."""
        name = self._name("c")
        self._note(f"churn({pod!r}, lifetime_ms={lifetime_ms!r}, removal_ms={removal_ms!r}, code={code!r})")
        with self.model.lock:
            c = self.model.create_container(self.pods[pod].id, name, 0, "busybox", labels={"c": name})
            self.containers[name] = c
            self.model.start_container(c.id)
        self._to(self.clock.now_ns() + round(lifetime_ms * MS))
        if self.model.containers.get(c.id) is c and c.state == "running":  # a fault may have removed it
            self.model.exit_container(c.id, code)
        self._to(self.clock.now_ns() + round(removal_ms * MS))
        if self.model.containers.get(c.id) is c:
            self.model.remove_container(c.id)
        return name

    def race_exit(self, container: str, code: int = 0, after_ms: float = 1.0) -> None:
        """Arm a race: when the sensor next asks ContainerStatus for this container, ``after_ms``
        pass, it exits, and ``after_ms`` later the answer is taken -- the container exited after
        the list that showed it running and before its status (the clock moves on as if the
        calls took that long). Real runtimes do this to every sensor."""
        self._note(f"race_exit({container!r}, code={code!r}, after_ms={after_ms!r})")
        self._races[self.containers[container].id] = (self.containers[container], code, round(after_ms * MS))

    def _before_call(self, method: str, api: str, target: str | None) -> None:
        self._policy_before_call(method, api, target)
        race = self._races.pop(target, None) if method == "ContainerStatus" and target else None
        if race is not None:
            c, code, after_ns = race
            self.clock.advance(after_ns)
            if self.model.containers.get(c.id) is c and c.state == "running":
                self.model.exit_container(c.id, code)
            self.clock.advance(after_ns)

    # ---- the runtime -------------------------------------------------------------------------

    def runtime_down(self, keep_state: bool = True) -> None:
        self._note(f"runtime_down(keep_state={keep_state!r})")
        self.h.runtime_down(keep_state=keep_state)
        self.up, self.keep_state = False, keep_state

    def runtime_up(self) -> None:
        self._note("runtime_up()")
        self.h.runtime_up(keep_state=self.keep_state)
        self.up = True

    def fault_start(self, fault: str, **params: Any) -> None:
        self._note(f"fault_start({fault!r}{''.join(f', {k}={v!r}' for k, v in params.items())})")
        self.h.faults.start(fault, params)

    def fault_stop(self, fault: str) -> None:
        self._note(f"fault_stop({fault!r})")
        self.h.faults.stop(fault)

    def active_faults(self) -> list[str]:
        return sorted(self.h.faults.active())

    # ---- judging -----------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        return self.sensor.events

    def report(self, guarantees: tuple[str, ...] = tuple(GUARANTEES)) -> tuple[Report, list[str]]:
        """Judge everything so far: the run ends now (obligations due later are not required)."""
        return judge(self.h.truth.records(), self.events, self.poll_interval_ns, self.clock.now_ns(), guarantees)

    def assert_holds(self, guarantees: tuple[str, ...] = STEP_GUARANTEES) -> Report:
        report, failed = self.report(guarantees)
        if failed:
            raise HistoryFailure(
                f"{', '.join(failed)} broken at +{self.now_ms:.3f} ms after this history:\n    "
                + "\n    ".join(self.script) + "\n\n" + report.render(max_violations=6))
        return report

    def settle(self) -> None:
        """End the history: the runtime comes back, faults stop, and two poll intervals pass,
        so everything the sensor owes is due."""
        self._note("settle()")
        if not self.up:
            self.h.runtime_up(keep_state=self.keep_state)
            self.up = True
        for name in self.active_faults():
            self.h.faults.stop(name)
        self._to(self.clock.now_ns() + 2 * self.poll_interval_ns + 1)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.sensor.close()
        self.h.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
