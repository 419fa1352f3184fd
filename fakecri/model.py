"""The runtime model: a CRI runtime's state machine, pure, with an injected clock.

Theory of operation
-------------------
* The model takes calls (mirroring CRI RPCs, with plain Python arguments) and time (from the
  injected clock) in, and hands results and ground truth out. It knows nothing of gRPC or
  protobuf: ``fakecri.convert`` and ``fakecri.server`` translate.
* Everything that changes a container's or sandbox's state goes through ``_set_state``, which
  consults ``CONTAINER_TRANSITIONS``/``SANDBOX_TRANSITIONS`` and records one truth record. So the
  truth is complete by construction: there is no other way to change state.
* Errors are ``CriError(code, message)``; ``code`` is a gRPC status-code name. Which code a real
  runtime gives for which mistake is written once, here, with the flavour deciding the few places
  where CRI-O and containerd differ.
* Timestamps are wall-clock ns from the clock; 0 means unset, as in the CRI.
* State lag (the flavour's ``state_lag_ns``, DESIGN.md section 6): a process that exits by itself
  (``exit_container(..., lagged=True)``) is *pending*: its truth time is taken then, but List,
  Status and the event stream keep showing it running until ``reveal_exit`` (the harness calls it
  ``state_lag_ns`` later). Stop, Remove (containerd stops a running container first, and that
  waits until the exit is handled: recorded on 1.7 and 2.1), a pod stop or a lost state reveal it
  at once. The truth
  record carries both times: ``time_ns`` (the exit) and ``shown_ns`` (when answers first showed it).
* Late steps (``backdated``): the real-time timeline applies a scenario step when it gets the CPU,
  which on a busy machine is milliseconds after its instant. The step still happens *at* its
  instant -- the times answers report and the truth records are the scenario's -- and is shown
  from when it was applied, recorded as ``shown_ns`` like a state lag. So the truth is as exact as
  the scenario however loaded the machine, and a checker judges deadlines from what answers showed.
* IDs are 64 hex digits from an RNG: seeded (``seed=N``), a run is repeatable byte for byte;
  unseeded (``seed=None``), every instance draws fresh IDs, as two real runtimes would. Like
  containerd, any unique ID prefix is accepted where an ID is expected.
* Containers a client creates run their command through ``fakecri.emulator`` (an interpreter
  for a documented shell subset): output is written to the CRI log file and a process that ends
  by itself exits at its exact instant. Due processes are applied by ``settle`` -- called first
  by every call that reads or changes containers, so an answer never shows a process running
  past its exit -- and a real-time reaper (``fakecri.reaper``) calls it when nobody asks.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fakecri.clock import Clock
from fakecri.emulator import ProcessEmulator
from fakecri.flavors import Flavor
from fakecri.truth import ContainerTransition, PodRef, SandboxTransition, Truth

#: Container state machine: state -> {action: new state}. ``removed`` is not a state a client can
#: see; it is where a container goes when it leaves the runtime.
#: ``start_error``: containerd marks a container whose start failed (e.g. its sandbox is stopped)
#: EXITED with reason ``StartError`` and exit code 128, without it ever running.
CONTAINER_TRANSITIONS: dict[str, dict[str, str]] = {
    "created": {"start": "running", "remove": "removed", "start_error": "exited"},
    "running": {"exit": "exited"},
    "exited": {"remove": "removed"},
}
#: Sandbox state machine.
SANDBOX_TRANSITIONS: dict[str, dict[str, str]] = {
    "ready": {"stop": "notready"},
    "notready": {"remove": "removed"},
}
#: Truth names for the states a transition enters.
_CONTAINER_TRUTH = {"created": "created", "running": "running", "exited": "exited", "removed": "destroyed"}
_SANDBOX_TRUTH = {"ready": "ready", "notready": "notready", "removed": "destroyed"}

REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_OOM = "OOMKilled"
#: Exit code of a container killed by SIGKILL (stop with timeout 0, forced removal, OOM).
SIGKILL_EXIT = 137


class CriError(Exception):
    """A CRI call failed: ``code`` is the gRPC status-code name a real runtime would use."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Image:
    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    size: int
    pinned: bool = False


@dataclass
class Sandbox:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: str
    created_at: int
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    log_directory: str = ""
    runtime_handler: str = ""
    network: str = "POD"  # POD or NODE, from linux.security_context.namespace_options.network
    ip: str = ""
    pid: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def pod(self) -> PodRef:
        return PodRef(self.name, self.namespace, self.uid)


@dataclass
class Container:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    image: str
    image_ref: str
    state: str
    created_at: int
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_path: str = ""
    pid: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    #: an exit not shown yet (state lag): (exited at, exit code, reason or None)
    pending_exit: tuple[int, int, str | None] | None = None
    #: bumped by a change no transition announces (UpdateContainerResources): what caches a
    #: converted status keys on, beside the state and its times
    revision: int = 0


T = TypeVar("T", Sandbox, Container)


@dataclass(frozen=True)
class ExecResult:
    """An ExecSync answer: output and exit code after ``duration_ns`` (None: the command never ends,
    the caller waits until the client gives up); ``error`` is raised instead once that time is over."""

    stdout: bytes
    stderr: bytes
    exit_code: int
    duration_ns: int | None
    error: CriError | None = None


def go_duration(seconds: int) -> str:
    """Go's ``time.Duration.String`` for whole seconds: ``1s``, ``1m30s``, ``2h0m0s``."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _matches(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    return not selector or all(labels.get(k) == v for k, v in selector.items())


#: Length of every container and sandbox ID (``new_id``: 64 hex digits, as containerd's).
ID_LEN = 64


class RuntimeModel:
    """A CRI runtime's state: sandboxes, containers and images. Thread-safe (one lock)."""

    def __init__(self, clock: Clock, flavor: Flavor, truth: Truth | None = None, seed: int | None = None) -> None:
        self.clock = clock
        self.flavor = flavor
        self.truth = truth if truth is not None else Truth()
        self.lock = threading.RLock()
        self._rng = random.Random(seed if seed is not None else secrets.randbits(128))
        #: The containers' processes (command interpreter, log files, scheduled exits).
        self.processes = ProcessEmulator()
        self._next_pid = 1000
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self.images: dict[str, Image] = {}
        self.runtime_config: dict[str, Any] = {}
        #: A fixed ExecSync answer (stdout, stderr, exit_code) for every exec, or None: run the command.
        self.exec_result: tuple[bytes, bytes, int] | None = None
        #: Container IDs that ``create_container`` hands out next, before drawing random ones (ID-reuse
        #: fault). Sandboxes never take them.
        self.reuse_ids: list[str] = []
        self._listeners: list[Callable[[str, Container | Sandbox, str], None]] = []
        #: (sandbox ID, name, attempt) -> container ID: the name-reservation check without a scan.
        self._names: dict[tuple[str, str, int], str] = {}
        #: sandbox ID -> its containers, in creation order: a pod's containers without a scan of all.
        self._members: dict[str, dict[str, Container]] = {}
        #: (shown at, container ID): emulated process exits waiting out the flavour's state lag
        self._reveals: list[tuple[int, str]] = []
        #: The latest truth time recorded so far: a step applied late is never dated before it.
        self._latest_ns = 0
        #: (thread, instant) while ``backdated`` applies a late step: that thread's "now".
        self._as_of: tuple[int, int] | None = None

    # ---- helpers -----------------------------------------------------------------------------

    def new_id(self) -> str:
        return f"{self._rng.getrandbits(256):064x}"

    def _new_container_id(self) -> str:
        """Next container ID: a reusable one first (ID-reuse fault), skipping any that are live."""
        while self.reuse_ids:
            cid = self.reuse_ids.pop(0)
            if cid not in self.containers:
                return cid
        return self.new_id()

    def _pid(self) -> int:
        self._next_pid += 1
        return self._next_pid

    def _backdated_to(self) -> int | None:
        """The instant this thread's late step is applied at (``backdated``), else ``None``."""
        as_of = self._as_of
        return as_of[1] if as_of is not None and as_of[0] == threading.get_ident() else None

    def _now(self) -> int:
        """The model's "now": the clock's, or the instant a late step is applied at (``backdated``)."""
        at = self._backdated_to()
        return self.clock.now_ns() if at is None else at

    def event_time_ns(self) -> int:
        """When the change being announced happened (for listeners: the event stream's ``created_at``)."""
        return self._now()

    def _shown(self, time_ns: int, shown_ns: int | None = None) -> int | None:
        """A transition's ``shown_ns``: ``shown_ns`` (a state lag's reveal), or under ``backdated``
        now -- it happened at the step's instant but answers show it only from now; ``None`` when
        answers showed it at once."""
        if self._backdated_to() is not None:
            shown_ns = max(shown_ns or 0, self.clock.now_ns())
        return shown_ns if shown_ns is not None and shown_ns > time_ns else None

    def _record(self, rec: ContainerTransition | SandboxTransition) -> None:
        self._latest_ns = max(self._latest_ns, rec.time_ns)
        self.truth.record(rec)

    @contextmanager
    def backdated(self, at_ns: int) -> Iterator[int]:
        """Apply a scenario step that fell due at ``at_ns`` (clock time) but runs late: everything
        the calling thread does in the block happens at that instant -- what answers report and
        what the truth records -- and shows from when it is done (``shown_ns``). Never earlier than
        the latest transition already recorded, so the truth's order stays its time order. Yields
        the instant used. Holds the model lock: no answer sees a step half done."""
        with self.lock:
            now = self.clock.now_ns()
            used = min(now, max(at_ns, self._latest_ns))
            if used >= now:
                yield now
                return
            self._as_of = (threading.get_ident(), used)
            try:
                yield used
            finally:
                self._as_of = None

    def on_change(self, listener: Callable[[str, Container | Sandbox, str], None]) -> None:
        """Call ``listener(kind, obj, truth_transition)`` after every state change (event stream)."""
        self._listeners.append(listener)

    @staticmethod
    def _resolve(table: Mapping[str, T], ref: str, what: str) -> T:
        """Find by full ID or unique prefix, as containerd does; unknown -> NOT_FOUND, "" -> UNKNOWN."""
        if not ref:  # containerd's truncindex refuses an empty prefix (texts as containerd 1.6 words them)
            raise CriError("UNKNOWN", f'an error occurred when try to find {what} "": Prefix can\'t be empty')
        if ref in table:
            return table[ref]
        if len(ref) < ID_LEN:  # every ID is 64 hex digits: a ref that long is a prefix only of itself
            hits = [v for k, v in table.items() if k.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise CriError("UNKNOWN", f"ambiguous {what} id prefix {ref!r}: {len(hits)} matches")
        raise CriError("NOT_FOUND", f'an error occurred when try to find {what} "{ref}": not found')

    def pod_containers(self, sandbox_id: str) -> list[Container]:
        """The containers of one sandbox, in creation order (the event stream sends their statuses
        with every event of the pod: a scan of all containers per event fell behind under churn)."""
        return list(self._members.get(sandbox_id, {}).values())

    def find_container(self, ref: str) -> Container:
        return self._resolve(self.containers, ref, "container")

    def find_sandbox(self, ref: str) -> Sandbox:
        return self._resolve(self.sandboxes, ref, "sandbox")

    def _set_container_state(self, c: Container, action: str, now: int, shown_ns: int | None = None) -> None:
        new = CONTAINER_TRANSITIONS.get(c.state, {}).get(action)
        if new is None:
            raise CriError("UNKNOWN", f"container {c.id} is in {c.state.upper()} state; cannot {action}")
        c.state = new
        sb = self.sandboxes.get(c.sandbox_id)
        rec = ContainerTransition(
            container_id=c.id,
            transition=_CONTAINER_TRUTH[new],
            time_ns=now,
            sandbox_id=c.sandbox_id,
            name=c.name,
            attempt=c.attempt,
            image=c.image,
            image_ref=c.image_ref,
            labels=dict(c.labels),
            pod=sb.pod if sb else None,
            exit_code=c.exit_code if new == "exited" else None,
            reason=c.reason if new == "exited" else None,
            shown_ns=self._shown(now, shown_ns),
        )
        if new == "removed":
            del self.containers[c.id]
            members = self._members.get(c.sandbox_id)
            if members is not None:
                members.pop(c.id, None)
                if not members:
                    del self._members[c.sandbox_id]
            if self._names.get((c.sandbox_id, c.name, c.attempt)) == c.id:
                del self._names[(c.sandbox_id, c.name, c.attempt)]
            self.processes.forget(c.id)
        elif new == "exited":
            self.processes.ended(c.id, now)
        self._record(rec)
        for listener in self._listeners:
            listener("container", c, rec.transition)

    def _record_container_created(self, c: Container) -> None:
        sb = self.sandboxes[c.sandbox_id]
        rec = ContainerTransition(
            container_id=c.id, transition="created", time_ns=c.created_at, sandbox_id=c.sandbox_id,
            name=c.name, attempt=c.attempt, image=c.image, image_ref=c.image_ref,
            labels=dict(c.labels), pod=sb.pod, shown_ns=self._shown(c.created_at),
        )
        self._record(rec)
        for listener in self._listeners:
            listener("container", c, "created")

    def _set_sandbox_state(self, s: Sandbox, action: str, now: int) -> None:
        new = SANDBOX_TRANSITIONS.get(s.state, {}).get(action)
        if new is None:
            raise CriError("UNKNOWN", f"sandbox {s.id} is in {s.state.upper()} state; cannot {action}")
        s.state = new
        if new == "removed":
            del self.sandboxes[s.id]
        rec = SandboxTransition(sandbox_id=s.id, transition=_SANDBOX_TRUTH[new], time_ns=now, pod=s.pod,
                                labels=dict(s.labels), shown_ns=self._shown(now))
        self._record(rec)
        for listener in self._listeners:
            listener("sandbox", s, rec.transition)

    # ---- sandboxes ---------------------------------------------------------------------------

    def run_pod_sandbox(self, name: str, namespace: str, uid: str, attempt: int = 0, *,
                        labels: Mapping[str, str] | None = None,
                        annotations: Mapping[str, str] | None = None, hostname: str = "",
                        log_directory: str = "", runtime_handler: str = "", network: str = "POD",
                        config: Mapping[str, Any] | None = None) -> Sandbox:
        with self.lock:
            self.settle()
            if not name:
                raise CriError("UNKNOWN", "sandbox config must include metadata")
            for s in self.sandboxes.values():
                if (s.name, s.namespace, s.uid, s.attempt) == (name, namespace, uid, attempt):
                    raise CriError(
                        "UNKNOWN",
                        f"failed to reserve sandbox name \"{name}_{namespace}_{uid}_{attempt}\": "
                        f"name \"{name}_{namespace}_{uid}_{attempt}\" is reserved for \"{s.id}\"",
                    )
            now = self._now()
            sid = self.new_id()
            n = self._next_pid
            ip = "" if network == "NODE" else f"10.88.{(n // 250) % 250}.{2 + n % 250}"
            s = Sandbox(sid, name, namespace, uid, attempt, "ready", now, dict(labels or {}),
                        dict(annotations or {}), hostname, log_directory, runtime_handler, network, ip,
                        self._pid(), dict(config or {}))
            self.sandboxes[sid] = s
            self._record(SandboxTransition(sandbox_id=sid, transition="ready", time_ns=now, pod=s.pod,
                                           labels=dict(s.labels), shown_ns=self._shown(now)))
            for listener in self._listeners:
                listener("sandbox", s, "ready")
            return s

    def stop_pod_sandbox(self, ref: str) -> None:
        with self.lock:
            self.settle()
            try:
                s = self.find_sandbox(ref)
            except CriError as e:
                if e.code == "NOT_FOUND" and self.flavor.stop_unknown == "ok":
                    return
                raise
            now = self._now()
            for c in self.pod_containers(s.id):
                if c.pending_exit is not None:
                    self._reveal(c, now)
                elif c.state == "running":
                    self._exit(c, SIGKILL_EXIT, REASON_ERROR, now)
            if s.state == "ready":
                self._set_sandbox_state(s, "stop", now)

    def remove_pod_sandbox(self, ref: str) -> None:
        with self.lock:
            self.settle()
            try:
                s = self.find_sandbox(ref)
            except CriError as e:
                if e.code == "NOT_FOUND":
                    return  # idempotent in every runtime
                raise
            self.stop_pod_sandbox(s.id)
            now = self._now()
            for c in self.pod_containers(s.id):
                self._set_container_state(c, "remove", now)
            self._set_sandbox_state(s, "remove", now)

    def pod_sandbox_status(self, ref: str) -> Sandbox:
        with self.lock:
            self.settle()
            return self.find_sandbox(ref)

    def list_pod_sandbox(self, *, id: str = "", state: str | None = None,
                         label_selector: Mapping[str, str] | None = None) -> list[Sandbox]:
        with self.lock:
            self.settle()
            return [
                s for s in self.sandboxes.values()
                if (not id or s.id.startswith(id)) and (state is None or s.state == state)
                and _matches(s.labels, label_selector)
            ]

    # ---- containers --------------------------------------------------------------------------

    def create_container(self, sandbox_ref: str, name: str, attempt: int, image: str, *,
                         labels: Mapping[str, str] | None = None,
                         annotations: Mapping[str, str] | None = None, log_path: str = "",
                         config: Mapping[str, Any] | None = None) -> Container:
        with self.lock:
            self.settle()
            try:
                s = self.find_sandbox(sandbox_ref)
            except CriError as e:
                raise CriError(e.code, e.message.replace("an error occurred when try to find sandbox",
                                                         "failed to find sandbox id", 1)) from None
            if s.state != "ready":
                if self.flavor.runtime_name == "containerd":  # its sandbox task is gone once stopped
                    raise CriError("NOT_FOUND", "failed to get sandbox container task: no running task found: "
                                                f"task {s.id} not found: not found")
                raise CriError("UNKNOWN", f"sandbox container {s.id!r} is not running")
            if not name:
                raise CriError("UNKNOWN", "container config must include metadata")
            if not image:  # containerd parses "" as a digest before it looks anything up
                raise CriError("UNKNOWN", 'failed to resolve image "": ambiguous digest string')
            img = self.resolve_image(image)
            if img is None:
                raise CriError("NOT_FOUND", f'failed to resolve image "{image}": not found')
            held = self._names.get((s.id, name, attempt))
            c = self.containers.get(held) if held is not None else None
            if c is not None and c.sandbox_id == s.id and (c.name, c.attempt) == (name, attempt):
                raise CriError(
                    "UNKNOWN",
                    f"failed to reserve container name \"{name}_{s.name}_{s.namespace}_{s.uid}_{attempt}\": "
                    f"name \"{name}_{s.name}_{s.namespace}_{s.uid}_{attempt}\" is reserved for \"{c.id}\"",
                )
            now = self._now()
            cid = self._new_container_id()
            if cid in self.containers:
                raise CriError("UNKNOWN", f"container id {cid} is already in use")
            shown = image if image.startswith("sha256:") else (img.repo_tags[0] if img.repo_tags else image)
            c = Container(cid, s.id, name, attempt, shown, img.id, "created", now,
                          labels=dict(labels or {}), annotations=dict(annotations or {}),
                          log_path=log_path, config=dict(config or {}))
            self.containers[cid] = c
            self._members.setdefault(s.id, {})[cid] = c
            self._names[(s.id, name, attempt)] = cid
            self._record_container_created(c)
            return c

    def start_container(self, ref: str) -> None:
        with self.lock:
            self.settle()
            c = self.find_container(ref)
            if c.state != "created":
                raise CriError("UNKNOWN", f'failed to set starting state for container "{c.id}": '
                                          f"container is in CONTAINER_{c.state.upper()} state")
            now = self._now()
            sb = self.sandboxes.get(c.sandbox_id)
            if self.flavor.runtime_name == "containerd" and (sb is None or sb.state != "ready"):
                # containerd 1.6: the failed start leaves the container EXITED (StartError, 128), never run
                msg = f'sandbox container "{c.sandbox_id}" is not running'
                c.finished_at, c.exit_code, c.reason, c.message = now, 128, "StartError", msg
                self._set_container_state(c, "start_error", now)
                raise CriError("UNKNOWN", msg)
            c.started_at = now
            c.pid = self._pid()
            self._set_container_state(c, "start", now)
            self.processes.start(c, sb, now)

    def settle(self) -> None:
        """Apply every process exit (and log write) that has fallen due by now, each at its own
        instant, so the truth and the answers agree with what the processes did. With the
        flavour's state lag an exit is pending first and shows ``state_lag_ns`` later."""
        if not self.processes.pending and not self._reveals:
            return
        with self.lock:
            now = self._now()
            lag = self.flavor.state_lag_ns
            while (hit := self.processes.pop_due(now)) is not None:
                cid, code, due = hit
                c = self.containers.get(cid)
                if c is not None and c.state == "running" and c.pending_exit is None:
                    if lag > 0:
                        c.pending_exit = (due, code, None)
                        heapq.heappush(self._reveals, (due + lag, cid))
                    else:
                        self._exit(c, code, None, due)
            while self._reveals and self._reveals[0][0] <= now:
                at, cid = heapq.heappop(self._reveals)
                c = self.containers.get(cid)
                if c is not None and c.pending_exit is not None and c.pending_exit[0] + lag == at:
                    self._reveal(c, at)  # shown at its own instant

    def next_due(self) -> int | None:
        """When the next process event or state-lag reveal falls due (ns), or None (the reaper)."""
        due = self.processes.next_due()
        if self._reveals:
            due = self._reveals[0][0] if due is None else min(due, self._reveals[0][0])
        return due

    def _exit(self, c: Container, exit_code: int, reason: str | None, now: int, shown_ns: int | None = None) -> None:
        c.finished_at = now
        c.exit_code = exit_code
        c.reason = reason or (REASON_COMPLETED if exit_code == 0 else REASON_ERROR)
        c.pid = 0
        self._set_container_state(c, "exit", now, shown_ns)

    def exit_container(self, ref: str, exit_code: int = 0, reason: str | None = None, *,
                       lagged: bool = False) -> None:
        """The container's process ends by itself (scenario step); OOM kills pass ``OOMKilled``.
        ``lagged`` with a flavour that has state lag: pending until ``reveal_exit`` (module docstring)."""
        with self.lock:
            self.settle()
            c = self.find_container(ref)
            if c.state != "running" or c.pending_exit is not None:
                raise CriError("FAILED_PRECONDITION", f"container {c.id} is not running")
            now = self._now()
            if lagged and self.flavor.state_lag_ns > 0:
                c.pending_exit = (now, exit_code, reason)
                return
            self._exit(c, exit_code, reason, now)

    def reveal_exit(self, ref: str) -> bool:
        """Show a pending exit (state lag over); False if there was none (stopped or removed meanwhile)."""
        with self.lock:
            c = self.containers.get(ref)
            if c is None or c.pending_exit is None:
                return False
            self._reveal(c, self._now())
            return True

    def _reveal(self, c: Container, now: int) -> None:
        assert c.pending_exit is not None
        at, code, reason = c.pending_exit
        c.pending_exit = None
        self._exit(c, code, reason, at, shown_ns=now)

    def stop_container(self, ref: str, timeout: int = 0) -> None:
        with self.lock:
            self.settle()
            try:
                c = self.find_container(ref)
            except CriError as e:
                if e.code == "NOT_FOUND" and self.flavor.stop_unknown == "ok":
                    return
                raise
            if c.pending_exit is not None:  # containerd's Stop waits until the exit is processed
                self._reveal(c, self._now())
            elif c.state == "running":
                self._exit(c, SIGKILL_EXIT, REASON_ERROR, self._now())

    def remove_container(self, ref: str) -> None:
        with self.lock:
            self.settle()
            try:
                c = self.find_container(ref)
            except CriError as e:
                if e.code == "NOT_FOUND":
                    return
                raise
            now = self._now()
            if c.pending_exit is not None:  # containerd stops it first, which waits for the exit to show
                self._reveal(c, now)
            if c.state == "running":
                if self.flavor.remove_running == "refuse":
                    raise CriError("UNKNOWN", f"container {c.id!r} is running, stop it before removing")
                self._exit(c, SIGKILL_EXIT, REASON_ERROR, now)
            self._set_container_state(c, "remove", now)

    def container_status(self, ref: str) -> Container:
        with self.lock:
            self.settle()
            return self.find_container(ref)

    def list_containers(self, *, id: str = "", state: str | None = None, sandbox_id: str = "",
                        label_selector: Mapping[str, str] | None = None) -> list[Container]:
        with self.lock:
            self.settle()
            return [
                c for c in self.containers.values()
                if (not id or c.id.startswith(id)) and (state is None or c.state == state)
                and (not sandbox_id or c.sandbox_id.startswith(sandbox_id))
                and _matches(c.labels, label_selector)
            ]

    def exec_sync(self, ref: str, cmd: Iterable[str], timeout_s: int = 0) -> ExecResult:
        """ExecSync through the interpreter, in the container's files and environment. Texts are
        containerd 1.6's; the answer says how long the command runs, for the shell to wait."""
        with self.lock:
            self.settle()
            try:
                c = self.find_container(ref)
            except CriError as e:
                if e.code == "NOT_FOUND":
                    raise CriError("NOT_FOUND", f'failed to exec in container: failed to find container "{ref}" '
                                                "in store: not found") from None
                raise
            if c.state != "running":
                raise CriError("UNKNOWN",
                               f"failed to exec in container: container is in CONTAINER_{c.state.upper()} state")
            if self.exec_result is not None:  # a scenario fixed the answer
                out, err, code = self.exec_result
                return ExecResult(out, err, code, 0)
            argv = list(cmd)
            exec_id = secrets.token_hex(32)  # not from the seeded RNG: an exec must not shift later IDs
            failed = f'failed to exec in container: failed to start exec "{exec_id}": OCI runtime exec failed: ' \
                     "exec failed: "
            if not argv:
                raise CriError("UNKNOWN", failed + "args must not be empty: unknown")
            run = self.processes.exec(c, self.sandboxes.get(c.sandbox_id), argv)
            if not run.interpreted:
                if run.unknown_command:
                    raise CriError("UNKNOWN", failed + "unable to start container process: exec: "
                                   f'"{run.unknown_command}": executable file not found in $PATH: unknown')
                raise CriError("UNIMPLEMENTED", f"failed to exec in container: fakecri cannot interpret {argv}: "
                                                f"{run.why}")
            limit = timeout_s * 1_000_000_000
            if timeout_s > 0 and (run.exit_offset_ns is None or run.exit_offset_ns > limit):
                text = f"timeout {go_duration(timeout_s)} exceeded: context deadline exceeded"
                return ExecResult(b"", b"", 0, limit,
                                  CriError("DEADLINE_EXCEEDED", f"failed to exec in container: {text}"))
            return ExecResult(run.output("stdout"), run.output("stderr"), run.exit_code or 0, run.exit_offset_ns)

    def update_container_resources(self, ref: str, resources: Mapping[str, Any]) -> Container:
        """UpdateContainerResources: containerd applies the non-zero fields onto the container's
        resources (ContainerStatus and the verbose runtimeSpec show them)."""
        with self.lock:
            self.settle()
            c = self.find_container(ref)
            linux = c.config.setdefault("linux", {})
            current = dict(linux.get("resources", {}))
            current.update({k: v for k, v in resources.items() if v not in (0, "0", "", None, [], {})})
            if "memory_limit_in_bytes" in resources and "memory_swap_limit_in_bytes" not in resources:
                current.pop("memory_swap_limit_in_bytes", None)  # swap follows the new memory limit again
            linux["resources"] = current
            c.revision += 1
            return c

    def reopen_container_log(self, ref: str) -> None:
        with self.lock:
            self.settle()
            c = self.find_container(ref)
            if c.state != "running":
                raise CriError("UNKNOWN", "container is not running")
            self.processes.reopen(c.id)

    # ---- images ------------------------------------------------------------------------------

    @staticmethod
    def normalize_image(ref: str) -> str:
        """``busybox`` -> ``docker.io/library/busybox:latest`` (the reference a runtime stores)."""
        if ref.startswith("sha256:") or "@" in ref:
            return ref
        name, tag = ref, "latest"
        last = ref.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = ref.rsplit(":", 1)
        first = name.split("/", 1)[0]
        if "/" not in name:
            name = f"docker.io/library/{name}"
        elif "." not in first and ":" not in first and first != "localhost":
            name = f"docker.io/{name}"
        return f"{name}:{tag}"

    def pull_image(self, ref: str) -> Image:
        with self.lock:
            norm = self.normalize_image(ref)
            found = self.resolve_image(ref)
            if found is not None:
                return found
            digest = hashlib.sha256(norm.encode()).hexdigest()
            repo = norm.rsplit(":", 1)[0]
            img = Image(f"sha256:{digest}", [norm], [f"{repo}@sha256:{digest[::-1]}"],
                        size=1_000_000 + int(digest[:5], 16))
            self.images[img.id] = img
            return img

    def resolve_image(self, ref: str) -> Image | None:
        with self.lock:
            if ref in self.images:
                return self.images[ref]
            norm = self.normalize_image(ref)
            for img in self.images.values():
                if norm in img.repo_tags or ref in img.repo_digests or img.id.startswith(f"sha256:{ref}"):
                    return img
            return None

    def remove_image(self, ref: str) -> None:
        with self.lock:
            img = self.resolve_image(ref)
            if img is not None:
                del self.images[img.id]

    # ---- runtime-level faults ----------------------------------------------------------------

    def lose_state(self) -> None:
        """A restart that loses state: every container and sandbox is gone (truth says so)."""
        with self.lock:
            self.settle()
            now = self._now()
            for c in list(self.containers.values()):
                if c.pending_exit is not None:
                    self._reveal(c, now)
                elif c.state == "running":
                    self._exit(c, SIGKILL_EXIT, REASON_ERROR, now)
                self._set_container_state(c, "remove", now)
            for s in list(self.sandboxes.values()):
                if s.state == "ready":
                    self._set_sandbox_state(s, "stop", now)
                self._set_sandbox_state(s, "remove", now)
