"""The harness: one scenario served for real -- model, gRPC server, quirk relay, faults, runner.

``Harness`` is what ``fakecri serve``, the pytest fixture and in-process users share::

    from fakecri.harness import Harness
    with Harness("scenarios/fast_exit.yaml", socket="/tmp/cri.sock") as h:   # virtual clock
        ...                        # a client talks to h.addr; steps at offset 0 are applied
        h.advance("250ms")         # apply every step due by then, each at its exact instant
        h.run_to_end()
        records = h.truth.records()

Theory of operation
-------------------
* ``fakecri.scenario.expand`` has validated the plan, so applying a step cannot fail for a reason
  visible in the scenario. It can still find the world changed by a client (a kubelet-like test
  client stopped a container) or by a fault (``notfound_race`` removed it): such a step is
  skipped and noted in ``skipped``, because the runtime would not do it either.
* Scenario-local names map to the model objects they created (``container_id``/``pod_id``); a
  step acts on an object only while that very object is still in the model, so a reused ID
  never redirects a step to another container.
* Containers and pods get the labels and annotations kubelet would set (``io.kubernetes.*``),
  under the scenario's own labels.
* ``restart_runtime`` stops the relay and the server (the socket disappears; open event streams
  end), loses the model's state if asked, and after the downtime starts both again. Truth gets
  ``runtime`` down/up records; quirks active for the whole run get ``fault`` start records at
  offset 0 (they never stop). The handshake quirk is the scenario's, else the flavour's own.
* Containers a client creates through CRI run their command (``fakecri.emulator``); their own
  exits are applied at their exact instants before each step and after each clock move
  (``RuntimeModel.settle``), so they interleave with the timeline in time order. Scenario
  containers have no command and live exactly as their steps say.
* IDs come from the scenario's ``seed``; without one, a virtual-clock run uses seed 0 (repeatable
  byte for byte) and a real-clock run draws fresh IDs, as a real runtime would.
* ``start(hold=True)`` + ``first_view()`` + ``release()`` start the timeline at a client's first
  list (``fakecri serve``'s default, ``fakecri verify``); ``replay()`` runs it again after its end
  with fresh IDs (``--repeat``/``--loop``). The virtual-clock paths use neither.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import sys
import threading
import uuid
import zlib
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from fakecri import scenario as sc
from fakecri.clock import Clock, RealClock, VirtualClock
from fakecri.faults import FaultPolicy
from fakecri.model import Container, CriError, RuntimeModel, Sandbox
from fakecri.relay import Relay
from fakecri.server import FakeCriServer
from fakecri.timeline import Runner
from fakecri.truth import FaultWindow, ProcessEvent, RpcServed, RuntimeTransition, Truth, TruthRecord
from sensor.duration import parse_duration

log = logging.getLogger("fakecri.harness")

DEFAULT_SOCKET = "/tmp/fakecri.sock"
#: Longest unix socket path Linux accepts (sun_path is 108 bytes, NUL included).
MAX_SOCKET_PATH = 107
_FIRST_PROCESS_PID = 30_000

ClockName = Literal["virtual", "real"]
#: The calls that show a client the runtime (the same set ``fakecri.check`` counts as a view).
VIEW_METHODS = ("ListContainers", "ListPodSandbox", "GetContainerEvents")


def is_view(rec: TruthRecord) -> bool:
    """An answer that showed a client the runtime: an OK list, or an event stream that opened."""
    if not isinstance(rec, RpcServed) or rec.method not in VIEW_METHODS:
        return False
    code = (rec.code or "").upper()
    return code != "UNIMPLEMENTED" if rec.method == "GetContainerEvents" else code == "OK"


def backend_path(public: str) -> str:
    """The private socket the gRPC server listens on behind a relay: a hidden file beside ``public``."""
    d, base = os.path.split(os.path.abspath(public))
    return os.path.join(d, f".{base}.backend")


def _ns(value: int | str) -> int:
    return parse_duration(value) if isinstance(value, str) else int(value)



@dataclass(frozen=True)
class RevealExit:
    """Internal timeline step: the runtime shows a pending exit (the flavour's state lag is over)."""

    at_ns: int
    container: str


#: Steps that only change the model (and state-lag reveals): applied late, they still happen at their
#: instant (``_backdate``).
_MODEL_STEPS = (sc.RunPod, sc.StopPod, sc.RemovePod, sc.CreateContainer, sc.StartContainer, sc.ExitContainer,
                sc.StopContainer, sc.RemoveContainer, RevealExit)


def tune_for_timing() -> None:
    """For a process that serves a real-time scenario (``fakecri serve``, ``fakecri verify``): keep
    ground-truth timing tight (docs/performance.md). What exists now -- the model, an existing node --
    is frozen out of the cyclic GC (full collections of a 10k node paused 50-150 ms) and threads
    switch every 0.5 ms, so the timeline thread does not wait 5 ms behind a list answer. Freed list
    answers stay in malloc's arenas (``sensor.heap.keep_freed_memory``): each new 7 MB answer of a
    changing 10,000-container node was mapped anew, and its page faults cost 10-15 ms per list."""
    from sensor.heap import keep_freed_memory

    keep_freed_memory()
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(0.0005)


class Harness:
    """A scenario served on a unix socket. ``start``/``stop`` (or ``with``); thread-safe reads."""

    def __init__(self, scenario: sc.Scenario | str | os.PathLike[str] | None = None, *, socket: str | None = None,
                 flavor: str | None = None, clock: ClockName | Clock = "virtual", speed: float = 1.0,
                 truth_sink: IO[str] | None = None, record_rpcs: bool = True) -> None:
        if scenario is None:
            scenario = sc.Scenario(flavor=flavor or sc.DEFAULT_FLAVOR, name="empty")
        elif not isinstance(scenario, sc.Scenario):
            scenario = sc.load(scenario)
        self.scenario: sc.Scenario = scenario
        self.plan: sc.Plan = sc.expand(scenario, flavor=flavor)
        if clock == "virtual":
            clock = VirtualClock()
        elif clock == "real":
            clock = RealClock()
        elif isinstance(clock, str):
            raise ValueError(f"unknown clock {clock!r} (accepted: virtual, real)")
        self.clock: Clock = clock
        self.truth = Truth(truth_sink, record_rpcs=record_rpcs)
        seed = scenario.seed
        if seed is None and isinstance(self.clock, VirtualClock):
            seed = 0  # a virtual run stays repeatable byte for byte; a real one gets fresh IDs
        self.model = RuntimeModel(self.clock, self.plan.flavor, self.truth, seed=seed)
        for image in scenario.images:
            self.model.pull_image(image)
        self.faults = FaultPolicy(self.model)
        self.socket = os.path.abspath(socket or scenario.socket or DEFAULT_SOCKET)
        #: The handshake quirk served: the scenario's, else the flavour's own (crio-1.13: cmux).
        self.handshake: str = scenario.quirks.handshake or self.plan.flavor.handshake
        server_path = self.socket if self.handshake == "none" else backend_path(self.socket)
        for path in {self.socket, server_path}:
            if len(path.encode()) > MAX_SOCKET_PATH:
                raise ValueError(f"socket path {path} is {len(path.encode())} bytes, over the unix limit of "
                                 f"{MAX_SOCKET_PATH} (pick a shorter --socket)")
        self.server = FakeCriServer(self.model, server_path, policy=self.faults)
        self.relay: Relay | None = None
        if self.handshake != "none":
            self.relay = Relay(self.socket, server_path, self.handshake)  # type: ignore[arg-type]
        self.start_ns = 0
        self.runner: Runner | None = None
        self.speed = speed
        self.serving = False  #: the runtime's socket is up (False during a restart's downtime)
        self.pods: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        #: Steps skipped because a client or a fault had already changed the object: (step, why).
        self.skipped: list[tuple[sc.Step, str]] = []
        self._next_pid = _FIRST_PROCESS_PID
        self._started = False
        #: Which run of the timeline this is (0 the first; ``replay`` starts the next one).
        self.repetition = 0
        #: Pods the timeline ran and did not remove (by ID), to tear down before a replay.
        self._own_pods: dict[str, Sandbox] = {}

    # ---- properties --------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """What a CRI client dials: ``unix:///path``."""
        return f"unix://{self.socket}"

    @property
    def flavor(self) -> Any:
        return self.plan.flavor

    @property
    def end_ns(self) -> int:
        return self.plan.end_ns

    @property
    def offset_ns(self) -> int:
        """Time since the scenario started (virtual or real ns)."""
        return self.clock.now_ns() - self.start_ns

    def container_id(self, name: str) -> str:
        """The runtime ID of the scenario container ``name`` (the latest one of that name)."""
        return self.containers[name].id

    def pod_id(self, name: str) -> str:
        return self.pods[name].id

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, *, hold: bool = False) -> Harness:
        """Serve the socket and start the timeline -- or, with ``hold=True``, serve an idle runtime
        until ``release()`` starts the timeline (``fakecri verify`` waits for the sensor's first list,
        so a sensor's start-up time does not eat the scenario's first steps)."""
        if self._started:
            raise RuntimeError("harness already started")
        self._started = True
        self._apply_found()
        try:
            self._up_sockets()
        except BaseException:
            self._down_sockets()
            raise
        if not hold:
            self.release()
        return self

    def release(self) -> None:
        """Start the timeline of a harness started with ``hold=True``: offset 0 is now."""
        if not self._started:
            raise RuntimeError("start() the harness first")
        if self.runner is not None:
            raise RuntimeError("the timeline is already running")
        # The timeline starts once the runtime answers: server start-up is not step jitter.
        self.start_ns = self.clock.now_ns()
        self.runner = Runner(self._timeline(), self._apply, clock=self.clock, start_ns=self.start_ns,
                             end_ns=self.plan.end_ns, speed=self.speed, backdate=self._backdate)
        self._record_quirks()
        if isinstance(self.clock, VirtualClock):
            self.runner.advance_to(0)
        else:
            self.runner.start()

    def first_view(self) -> threading.Event:
        """An event set once a client has seen the runtime: its first OK ``ListContainers`` or
        ``ListPodSandbox``, or an event stream that opened (``fakecri serve --start first-list``,
        ``fakecri verify``). Subscribe before ``start`` to miss nothing."""
        seen = threading.Event()
        self.truth.subscribe(lambda rec: seen.set() if not seen.is_set() and is_view(rec) else None)
        return seen

    def replay(self) -> None:
        """Run the timeline once more (``fakecri serve --repeat/--loop``), after the last run ended.

        What the last run left (its pods and their containers) is removed first, as a kubelet
        deleting the pods would: the truth records those transitions like any other. Container and
        sandbox IDs come fresh from the model's generator and pod UIDs are derived anew per
        repetition, so no ID repeats across repetitions and the truth of all of them stays one
        consistent history (a checker judges it like a single long scenario)."""
        runner = self._runner()
        runner.stop()
        with self.model.lock:
            for s in self._own_pods.values():
                if self.model.sandboxes.get(s.id) is s:
                    self.model.remove_pod_sandbox(s.id)
        self._own_pods.clear()
        self.pods.clear()
        self.containers.clear()
        self.repetition += 1
        self._apply_found()
        self.start_ns = self.clock.now_ns()
        self.runner = Runner(self._timeline(), self._apply, clock=self.clock, start_ns=self.start_ns,
                             end_ns=self.plan.end_ns, speed=self.speed, backdate=self._backdate)
        if isinstance(self.clock, VirtualClock):
            self.runner.advance_to(0)
        else:
            self.runner.start()

    def _pod_uid(self, uid: str) -> str:
        """The scenario's pod UID in the first run; a fresh one derived from it in each replay."""
        if self.repetition == 0:
            return uid
        digest = hashlib.sha256(f"{uid}#{self.repetition}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def stop(self) -> None:
        """Stop the runner, release hung calls, stop relay and server (sockets removed). Idempotent."""
        if self.runner is not None:
            self.runner.stop()
        self.faults.release_all()
        self._down_sockets()

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _up_sockets(self) -> None:
        self.server.start()
        if self.relay is not None:
            self.relay.start()
        self.serving = True

    def _down_sockets(self, grace: float | None = 0.2) -> None:
        self.serving = False
        if self.relay is not None:
            self.relay.stop()
        self.server.stop(grace)

    def _record_quirks(self) -> None:
        q, now = self.scenario.quirks, self.start_ns
        if self.handshake != "none":
            self.truth.record(FaultWindow("handshake", "start", now, {"mode": self.handshake}))
        if q.apis is not None:
            self.truth.record(FaultWindow("apis", "start", now, {"apis": list(self.plan.flavor.apis)}))
        if q.events is not None:
            self.truth.record(FaultWindow("events", "start", now, {"mode": self.plan.flavor.events}))
        for name, params in q.faults.items():
            self.faults.start(name, params)

    # ---- driving time ------------------------------------------------------------------------

    def _runner(self) -> Runner:
        if self.runner is None:
            raise RuntimeError("start() the harness first")
        return self.runner

    def advance_to(self, offset: int | str) -> int:
        """Virtual clock: apply every step due by ``offset`` (ns or ``"250ms"``), each at its exact
        instant, then set the clock there. Returns the number of steps applied."""
        applied = self._runner().advance_to(_ns(offset))
        self.model.settle()
        return applied

    def advance(self, delta: int | str) -> int:
        """Virtual clock: ``advance_to(now + delta)``."""
        applied = self._runner().advance(_ns(delta))
        self.model.settle()
        return applied

    def run_to_end(self) -> int:
        """Virtual clock: apply the rest of the timeline and move to the scenario's end."""
        applied = self._runner().run_to_end()
        self.model.settle()
        return applied

    def wait_end(self, timeout: float | None = None) -> bool:
        """Real clock: block until the scenario's end has passed (True) or ``timeout`` (False)."""
        return self._runner().wait_end(timeout)

    def jitter_summary(self) -> dict[str, int]:
        return self._runner().jitter_summary()

    # ---- applying steps ----------------------------------------------------------------------

    def _apply_found(self) -> None:
        """The runtime as a client first finds it (``large_node: {existing: true}``): applied now,
        before the timeline starts, so even the first list shows it."""
        for step in self.plan.steps[:self.plan.found]:
            self._apply(step)

    def _timeline(self) -> list[object]:
        """The plan's steps after the found ones, plus a ``RevealExit`` ``state_lag_ns`` after each
        exit (state lag)."""
        lag = self.plan.flavor.state_lag_ns
        steps: list[object] = list(self.plan.steps[self.plan.found:])
        if lag > 0:
            exits = [s for s in steps if isinstance(s, sc.ExitContainer)]
            steps += [RevealExit(s.at_ns + lag, s.container) for s in exits]
            steps.sort(key=lambda s: s.at_ns)  # type: ignore[attr-defined]  # stable: a plan's own order holds
        return steps

    def _live_container(self, step: sc.Step, name: str) -> Container | None:
        c = self.containers.get(name)
        if c is None or self.model.containers.get(c.id) is not c:
            self.skipped.append((step, f"container {name} is no longer in the runtime"))
            return None
        return c

    def _live_pod(self, step: sc.Step, name: str) -> Sandbox | None:
        s = self.pods.get(name)
        if s is None or self.model.sandboxes.get(s.id) is not s:
            self.skipped.append((step, f"pod {name} is no longer in the runtime"))
            return None
        return s

    def _backdate(self, step: sc.Step, at_ns: int) -> AbstractContextManager[int]:
        """A late step of the model's own (pods, containers) happens at its instant
        (``RuntimeModel.backdated``); the others -- the runtime going down or up, faults, stream
        cuts, process events -- act on sockets and clients now, so they are dated now."""
        if isinstance(step, _MODEL_STEPS):
            return self.model.backdated(at_ns)
        return nullcontext(self.clock.now_ns())

    def _apply(self, step: sc.Step) -> None:
        self.model.settle()  # processes that exited before this step's instant, at their own instants
        try:
            self._apply_step(step)
        except CriError as e:
            self.skipped.append((step, f"{e.code}: {e.message}"))
            log.info("step %s skipped: %s", step, e.message)

    def _apply_step(self, step: sc.Step) -> None:
        m = self.model
        if isinstance(step, sc.RunPod):
            uid = self._pod_uid(step.uid or "")
            labels = {"io.kubernetes.pod.name": step.pod, "io.kubernetes.pod.namespace": step.namespace,
                      "io.kubernetes.pod.uid": uid, **step.labels}
            self.pods[step.pod] = m.run_pod_sandbox(
                step.pod, step.namespace, uid, step.attempt, labels=labels,
                annotations={"kubernetes.io/config.source": "api"}, hostname=step.pod,
                log_directory=f"/var/log/pods/{step.namespace}_{step.pod}_{uid}")
            self._own_pods[self.pods[step.pod].id] = self.pods[step.pod]
        elif isinstance(step, sc.StopPod):
            if (s := self._live_pod(step, step.pod)) is not None:
                m.stop_pod_sandbox(s.id)
        elif isinstance(step, sc.RemovePod):
            if (s := self._live_pod(step, step.pod)) is not None:
                m.remove_pod_sandbox(s.id)
                self._own_pods.pop(s.id, None)
        elif isinstance(step, sc.CreateContainer):
            if (s := self._live_pod(step, step.pod)) is None:
                return
            labels = {"io.kubernetes.container.name": step.container, "io.kubernetes.pod.name": s.name,
                      "io.kubernetes.pod.namespace": s.namespace, "io.kubernetes.pod.uid": s.uid, **step.labels}
            annotations = {
                "io.kubernetes.container.hash": f"{zlib.crc32(step.container.encode()):08x}",
                "io.kubernetes.container.restartCount": str(step.attempt),
                "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                "io.kubernetes.container.terminationMessagePolicy": "File",
                "io.kubernetes.pod.terminationGracePeriod": "30",
                **step.annotations,
            }
            with m.lock:  # created and started at one instant, with nothing in between
                c = m.create_container(s.id, step.container, step.attempt, step.image, labels=labels,
                                       annotations=annotations,
                                       log_path=f"/var/log/pods/{s.namespace}_{s.name}_{s.uid}/{step.container}/"
                                                f"{step.attempt}.log")
                self.containers[step.container] = c
                if step.start:
                    m.start_container(c.id)
        elif isinstance(step, sc.StartContainer):
            if (c := self._live_container(step, step.container)) is not None:
                m.start_container(c.id)
        elif isinstance(step, sc.ExitContainer):
            if (c := self._live_container(step, step.container)) is not None:
                code, reason = step.code, step.reason
                if not self.serving and m.flavor.runtime_name == "containerd":
                    # containerd loses the code of a process that exits while it is down: after the
                    # restart it reports 255, Unknown (measured on 1.7 and 2.1, docs/realruntime.md)
                    code, reason = 255, "Unknown"
                m.exit_container(c.id, code, reason, lagged=True)
        elif isinstance(step, RevealExit):
            c = self.containers.get(step.container)
            if c is not None:
                m.reveal_exit(c.id)
        elif isinstance(step, sc.StopContainer):
            if (c := self._live_container(step, step.container)) is not None:
                m.stop_container(c.id)
        elif isinstance(step, sc.RemoveContainer):
            if (c := self._live_container(step, step.container)) is not None:
                m.remove_container(c.id)
        elif isinstance(step, sc.RuntimeDown):
            self.runtime_down(keep_state=step.keep_state)
        elif isinstance(step, sc.RuntimeUp):
            self.runtime_up(keep_state=step.keep_state)
        elif isinstance(step, sc.FaultStart):
            self.faults.start(step.fault, step.params)
        elif isinstance(step, sc.FaultStop):
            self.faults.stop(step.fault)
        elif isinstance(step, sc.CloseEventStreams):
            now = self.clock.now_ns()
            self.truth.record(FaultWindow("close_event_streams", "start", now))
            self.server.hub.close_all()
            self.truth.record(FaultWindow("close_event_streams", "stop", now))
        elif isinstance(step, sc.Process):
            if (c := self._live_container(step, step.container)) is None:
                return
            if c.state != "running":
                self.skipped.append((step, f"container {step.container} is {c.state}"))
                return
            pid = step.pid
            if pid is None:
                self._next_pid += 1
                pid = self._next_pid
            now = self.clock.now_ns()
            self.truth.record(ProcessEvent(c.id, now, now + step.delay_ns, pid, tuple(step.argv)))
        else:  # pragma: no cover
            raise TypeError(f"cannot apply {step!r}")

    def runtime_down(self, *, keep_state: bool = True) -> None:
        """The runtime goes away: socket removed, connections and streams cut; state lost if asked."""
        self.truth.record(RuntimeTransition("down", self.clock.now_ns(), keep_state))
        self.faults.release_all()
        self._down_sockets(grace=0)
        if not keep_state:
            self.model.lose_state()

    def runtime_up(self, *, keep_state: bool = True) -> None:
        """The runtime is back: server and relay listen again (a fresh socket file)."""
        self.faults.rearm()
        self._up_sockets()
        self.truth.record(RuntimeTransition("up", self.clock.now_ns(), keep_state))


def bundled_path(name: str) -> Path:
    """The path of a bundled scenario by name (``fast_exit``); ``KeyError`` lists the names."""
    found = sc.bundled().get(name)
    if found is None:
        raise KeyError(f"no bundled scenario {name!r} (accepted: {', '.join(sc.bundled())})")
    return found
