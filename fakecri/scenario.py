"""Scenarios: what the fake runtime does and when, as one frozen model that YAML and hypothesis share.

Theory of operation
-------------------
* ``Scenario`` is a frozen value. ``load``/``loads`` build it from YAML; the hypothesis strategy
  ``fakecri.strategies.scenarios()`` builds it directly; ``dumps`` writes it back as YAML
  (``loads(dumps(s)) == s``). Nothing else creates scenarios, so there is one model only.
* ``expand`` turns a scenario into a ``Plan``: the timeline, the generators' steps (drawn from
  ``random.Random`` seeded by the scenario's ``seed``, so the same scenario always expands to the
  same steps), the ``processes``, and a restart split into ``RuntimeDown``/``RuntimeUp`` -- all
  sorted by offset, ties kept in file order. The timeline runner only ever sees a plan.
* ``expand`` also validates: it replays the plan on a symbolic runtime (pods and containers by
  scenario-local name, their states, runtime up/down, active faults) and raises
  ``ScenarioError`` at the first step that a real runtime could not perform then (start before
  create, exit of a container that is not running, a reference to an undefined pod...). So a
  loaded scenario never fails half-way through a run for a reason visible in the file.
* Every error is one line: ``file:line: what is wrong (accepted: ...)``. Lines come from the
  YAML composer's node marks; steps remember the line they came from (a generated step, the
  line of its generator).

Offsets (``at``, ``end``, ...) are durations since the scenario started: Go duration strings
(``250ms``, ``1m30s``) or integer nanoseconds. Field names ending in ``_ns`` hold int ns.
See docs/scenarios.md for the YAML format and docs/scenario.schema.json for its JSON Schema.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fakecri.flavors import DEFAULT_FLAVOR, FLAVORS, Flavor, get_flavor
from fakecri.model import RuntimeModel
from sensor.duration import DurationError, format_duration, parse_duration
from sensor.yamlfile import MIB, Limits, YamlFileError, compose, construct, read_text, show

__all__ = [
    "ACTIONS",
    "API_VERSIONS",
    "CRI_METHODS",
    "DEFAULT_IMAGES",
    "EVENTS_MODES",
    "FAULTS",
    "HANDSHAKES",
    "LIST_NAMES",
    "MAX_STEPS",
    "Churn",
    "CloseEventStreams",
    "CreateContainer",
    "Distribution",
    "ExitContainer",
    "FaultStart",
    "FaultStop",
    "Generator",
    "LargeNode",
    "Plan",
    "Process",
    "Quirks",
    "RemoveContainer",
    "RemovePod",
    "RestartRuntime",
    "RunPod",
    "RuntimeDown",
    "RuntimeUp",
    "Scenario",
    "ScenarioError",
    "StartContainer",
    "Step",
    "StopContainer",
    "StopPod",
    "bundled",
    "bundled_dir",
    "dumps",
    "expand",
    "flavor_of",
    "load",
    "loads",
    "resolve",
    "summary_of",
    "to_dict",
]

HANDSHAKES = ("none", "cmux", "cmux-settings")
EVENTS_MODES = ("stream", "eof", "error", "unimplemented", "stream-then-closed")
API_VERSIONS = ("v1", "v1alpha2")
#: Images every scenario preloads unless it lists its own.
DEFAULT_IMAGES = ("busybox", "registry.k8s.io/pause:3.6")
#: RPC names a fault's ``methods`` may name (fakecri.server serves exactly these; a test checks it).
CRI_METHODS = (
    "Version", "Status", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
    "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "ListContainers",
    "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog", "ExecSync", "ContainerStats",
    "ListContainerStats", "UpdateRuntimeConfig", "GetContainerEvents",
    "ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo",
)
LIST_NAMES = ("containers", "sandboxes")
#: Upper bound on expanded steps, so a typo in a rate cannot eat the machine.
MAX_STEPS = 2_000_000

# ---- limits: what `fakecri serve` can serve (docs/scenarios.md, "Limits") ------------------------------
#: A scenario file: a regular file of at most 4 MiB, 32 levels deep, 200,000 YAML nodes, no aliases.
SCENARIO_LIMITS = Limits(max_bytes=4 * MIB, max_depth=32, max_nodes=200_000)
#: Offsets and durations: at most 30 days, so that start + offset (+ a lifetime, + the
#: future_timestamps fault's hour) stays far inside the int64 nanosecond timestamps of the CRI.
MAX_OFFSET_NS = 720 * 3600 * 1_000_000_000
#: Offsets of an expanded plan (generated exits and removals come a lifetime after their arrival).
MAX_PLAN_NS = 2**62
INT32 = (-(2**31), 2**31 - 1)  #: ContainerStatus.exit_code
UINT32 = (0, 2**32 - 1)  #: PodSandboxMetadata.attempt, ContainerMetadata.attempt
MAX_SEED = 2**64 - 1
MAX_PID = 4_194_304  #: Linux's PID_MAX_LIMIT
MAX_NAME = 253  #: pod, container, namespace, prefix (a Kubernetes DNS subdomain is at most 253)
MAX_TEXT = 4096  #: any other string: images, uids, labels, annotations, reasons, argv items
MAX_SOCKET_BYTES = 107  #: sun_path is 108 bytes, NUL included
MAX_LARGE_NODE = 100_000  #: large_node containers (and pods): the scale the sensor is tested at
MAX_PODS = 10_000  #: pods a churn generator runs
MAX_RATE = 100_000.0  #: churn arrivals per second
MIN_RATE = 1e-6  #: one every 11.6 days; a smaller rate makes the first gap overflow
MAX_WEIGHT = 1e6  #: churn exit-code weight
MAX_LATENCY_MS = 60_000.0  #: latency fault
MAX_COUNT = 1_000_000  #: fault counts
MAX_ARGV = 1024  #: process argv items
MAX_LABELS = 256  #: labels or annotations of one pod or container
_ACCEPTED_DURATION = "a Go duration such as 250ms, 1.5s, 1m30s, or an integer of nanoseconds"


# ---- errors -----------------------------------------------------------------------------------


class ScenarioError(ValueError):
    """A bad scenario: ``str(e)`` is ``file:line: problem (accepted: ...)``."""

    def __init__(self, file: str, line: int | None, problem: str, accepted: str = "") -> None:
        self.file = file
        self.line = line
        self.problem = problem
        self.accepted = accepted
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {problem}" + (f" (accepted: {accepted})" if accepted else ""))


# ---- the model --------------------------------------------------------------------------------
# Every step has ``at_ns`` (offset since the scenario started) and ``line`` (where it came from;
# not part of equality, so a loaded scenario equals one built in code).


def _line() -> Any:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class RunPod:
    at_ns: int
    pod: str
    namespace: str = "default"
    uid: str | None = None  #: None: derived from seed, name and occurrence (set by ``expand``)
    attempt: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class StopPod:
    at_ns: int
    pod: str
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class RemovePod:
    at_ns: int
    pod: str
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class CreateContainer:
    at_ns: int
    container: str  #: scenario-local name, also the CRI metadata name
    pod: str
    image: str = "busybox"
    attempt: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    start: bool = False  #: start it at the same instant
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class StartContainer:
    at_ns: int
    container: str
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class ExitContainer:
    at_ns: int
    container: str
    code: int = 0
    reason: str | None = None  #: None: Completed for 0, Error otherwise (OOMKilled must be named)
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class StopContainer:
    at_ns: int
    container: str
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class RemoveContainer:
    at_ns: int
    container: str
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class RestartRuntime:
    at_ns: int
    downtime_ns: int = 500_000_000
    keep_state: bool = True
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class FaultStart:
    at_ns: int
    fault: str
    params: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class FaultStop:
    at_ns: int
    fault: str
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class CloseEventStreams:
    """The runtime ends every GetContainerEvents stream (containerd: subscriber buffer overflow)."""

    at_ns: int
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class Process:
    """A process exec'd inside a running container; the analytics stage sees it ``delay_ns`` later."""

    at_ns: int
    container: str
    argv: tuple[str, ...]
    delay_ns: int = 0
    pid: int | None = None  #: None: assigned by the harness
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class RuntimeDown:
    """Plan only: first half of a ``RestartRuntime``."""

    at_ns: int
    keep_state: bool
    up_at_ns: int
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class RuntimeUp:
    """Plan only: second half of a ``RestartRuntime``."""

    at_ns: int
    keep_state: bool
    line: int | None = _line()


Step = (RunPod | StopPod | RemovePod | CreateContainer | StartContainer | ExitContainer | StopContainer
        | RemoveContainer | RestartRuntime | FaultStart | FaultStop | CloseEventStreams | Process
        | RuntimeDown | RuntimeUp)

#: YAML action name -> step class (timeline entries).
ACTIONS: dict[str, type] = {
    "run_pod": RunPod, "stop_pod": StopPod, "remove_pod": RemovePod, "create": CreateContainer,
    "start": StartContainer, "exit": ExitContainer, "stop": StopContainer, "remove": RemoveContainer,
    "restart_runtime": RestartRuntime, "fault_start": FaultStart, "fault_stop": FaultStop,
    "close_event_streams": CloseEventStreams,
}
_ACTION_OF = {cls: name for name, cls in ACTIONS.items()}
_ACTION_OF.update({Process: "process", RuntimeDown: "restart_runtime", RuntimeUp: "restart_runtime"})


@dataclass(frozen=True, kw_only=True)
class Distribution:
    """A duration drawn at random: ``fixed`` (value), ``uniform`` (lo..hi) or ``exponential`` (mean)."""

    kind: str = "fixed"
    value_ns: int = 0  #: fixed: the value; exponential: the mean
    lo_ns: int = 0
    hi_ns: int = 0

    def sample(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return self.value_ns
        if self.kind == "uniform":
            return rng.randint(self.lo_ns, self.hi_ns)
        return round(rng.expovariate(1.0 / self.value_ns)) if self.value_ns else 0


@dataclass(frozen=True, kw_only=True)
class Churn:
    """Containers arriving at ``rate`` per second for ``duration_ns``: each is created and started,
    exits after ``lifetime``, and is removed ``removal_delay`` later."""

    start_ns: int = 0
    duration_ns: int
    rate: float
    arrivals: str = "poisson"  #: poisson (exponential gaps) or regular (1/rate gaps)
    lifetime: Distribution
    exit_codes: tuple[tuple[int, float], ...] = ((0, 1.0),)  #: (code, weight)
    removal_delay: Distribution = Distribution()
    pods: tuple[str, ...] | int = 1  #: names of pods from the timeline, or how many new pods to run at start
    image: str = "busybox"
    prefix: str | None = None  #: container names are PREFIX-N; None: churn, churn2, churn3...
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class LargeNode:
    """``containers`` containers created and running across ``pods`` pods at offset ``at_ns``.

    ``existing``: the node as a client first finds it -- its steps (at offset 0) are applied before
    the timeline starts, so the first list a client gets (the one ``fakecri serve`` and ``verify``
    wait for) already shows the whole node, as on a node a sensor is deployed to."""

    at_ns: int = 0
    containers: int
    pods: int
    image: str = "busybox"
    prefix: str = "node"
    existing: bool = False
    line: int | None = _line()


Generator = Churn | LargeNode


@dataclass(frozen=True, kw_only=True)
class Quirks:
    handshake: str | None = None  #: none | cmux | cmux-settings; None: the flavour's (fakecri.flavors)
    apis: tuple[str, ...] | None = None  #: None: the flavour's
    events: str | None = None  #: None: the flavour's GetContainerEvents behaviour
    state_lag_ns: int | None = None  #: None: the flavour's state lag (0 turns it off)
    faults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  #: on for the whole run
    line: int | None = _line()


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str = "scenario"
    flavor: str = DEFAULT_FLAVOR
    socket: str | None = None
    #: None: not fixed -- expansion draws as from 0, and runtime IDs are fresh per instance on a real
    #: clock (on a virtual clock they derive from 0: a virtual run is always repeatable).
    seed: int | None = None
    quirks: Quirks = Quirks()
    images: tuple[str, ...] = DEFAULT_IMAGES
    timeline: tuple[Step, ...] = ()
    generators: tuple[Generator, ...] = ()
    processes: tuple[Process, ...] = ()
    end_ns: int | None = None  #: None: the last step's offset
    #: Where it was loaded from (for error messages) and the first line of its header comment.
    source: str = field(default="<scenario>", compare=False)
    summary: str = field(default="", compare=False)
    line_of: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Plan:
    """A scenario expanded and validated: every step in the order the runner applies it."""

    scenario: Scenario
    flavor: Flavor  #: with the scenario's apis/events overrides applied
    steps: tuple[Step, ...]
    end_ns: int
    #: the first ``found`` steps (existing large nodes, at offset 0) are the runtime as a client first
    #: finds it: applied before the timeline starts
    found: int = 0

    def __len__(self) -> int:
        return len(self.steps)


def flavor_of(scenario: Scenario, override: str | None = None) -> Flavor:
    """The flavour a scenario runs as: named (or ``override``), with its quirk overrides applied."""
    f = get_flavor(override or scenario.flavor)
    changes: dict[str, Any] = {}
    if scenario.quirks.apis is not None:
        changes["apis"] = tuple(scenario.quirks.apis)
    if scenario.quirks.events is not None:
        changes["events"] = scenario.quirks.events
    if scenario.quirks.state_lag_ns is not None:
        changes["state_lag_ns"] = scenario.quirks.state_lag_ns
    return f.replace(**changes) if changes else f


# ---- faults: names and parameters ----------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    kind: str  # number | count | duration | methods | lists
    required: bool = False


#: Fault name -> its parameters (fakecri.faults implements them; docs/scenarios.md explains them).
FAULTS: dict[str, dict[str, _Param]] = {
    "latency": {"ms": _Param("number", required=True), "methods": _Param("methods")},
    "hang": {"methods": _Param("methods"), "max": _Param("duration")},
    "unavailable": {"count": _Param("count"), "methods": _Param("methods")},
    "id_reuse": {"count": _Param("count")},
    "duplicate_ids": {"lists": _Param("lists")},
    "missing_metadata": {"lists": _Param("lists")},
    "zero_timestamps": {},
    "future_timestamps": {},
    "notfound_race": {"count": _Param("count")},
}
_PARAM_FORMS = {
    "number": "a number >= 0",
    "count": "an integer >= 1",
    "duration": _ACCEPTED_DURATION,
    "methods": "a list of CRI method names such as ListContainers, ContainerStatus",
    "lists": "a list of: containers, sandboxes",
}


# ---- YAML with line numbers --------------------------------------------------------------------


@dataclass
class _Y:
    """A YAML node: ``value`` is dict[key, _Y], list[_Y] or a scalar; ``line`` is 1-based."""

    value: Any
    line: int
    key_lines: dict[Any, int] = field(default_factory=dict)
    path: str = ""  #: where in the document, e.g. ``timeline[3].exit.code``

    def get(self, key: str) -> _Y | None:
        return self.value.get(key) if isinstance(self.value, dict) else None


def _compose(text: str, file: str) -> _Y | None:
    try:
        node = compose(text, SCENARIO_LIMITS, "a YAML mapping such as 'flavor: containerd-1.7'")
        return None if node is None else _convert(node, file, "")
    except YamlFileError as e:  # "not valid YAML" is this format's wording (docs/scenarios.md)
        raise ScenarioError(file, e.line, e.problem.replace("invalid YAML", "not valid YAML", 1), e.accepted) from None


def _convert(node: yaml.Node, file: str, path: str) -> _Y:
    """Nodes -> ``_Y`` (recursion bounded by ``SCENARIO_LIMITS.max_depth``)."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, _Y] = {}
        key_lines: dict[Any, int] = {}
        for k_node, v_node in node.value:
            key = construct(k_node) if isinstance(k_node, yaml.ScalarNode) else None
            kline = k_node.start_mark.line + 1
            if key is None or isinstance(key, list | dict):
                raise ScenarioError(file, kline, "a mapping key must be a plain value", "a name such as 'at'")
            if key in out:
                raise ScenarioError(file, kline, f"duplicate key {_q(str(key))} (first at line "
                                    f"{key_lines[key]})", "each key once per mapping")
            name = key if isinstance(key, str) and len(key) <= 40 else show(key, 40)
            out[key] = _convert(v_node, file, f"{path}.{name}" if path else name)
            key_lines[key] = kline
        return _Y(out, line, key_lines, path)
    if isinstance(node, yaml.SequenceNode):
        return _Y([_convert(n, file, f"{path}[{i}]") for i, n in enumerate(node.value)], line, path=path)
    return _Y(construct(node), line, path=path)


# ---- the parser ----------------------------------------------------------------------------------

_TOP_KEYS = ("name", "flavor", "socket", "seed", "quirks", "images", "timeline", "generators", "processes", "end")
_QUIRK_KEYS = ("handshake", "apis", "events", "state_lag")


def _q(value: Any) -> str:
    """A value quoted for an error message: one line, bounded (also a 5,000-digit integer)."""
    return show(value, 120)


class _Parser:
    def __init__(self, file: str) -> None:
        self.file = file

    def err(self, y: _Y | int | None, problem: str, accepted: str = "") -> ScenarioError:
        line = y.line if isinstance(y, _Y) else y
        return ScenarioError(self.file, line, problem, accepted)

    # -- shapes
    def mapping(self, y: _Y, what: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, _Y]:
        if not isinstance(y.value, dict):
            raise self.err(y, f"{what} must be a mapping, not {_kind(y.value)}",
                           f"a mapping with keys {', '.join(allowed)}" if allowed else "a mapping")
        for key in y.value:
            if key not in allowed:
                raise self.err(y.key_lines[key], f"unknown key {_q(key)} in {what}", ", ".join(allowed))
        for key in required:
            if key not in y.value:
                raise self.err(y, f"{what} is missing {_q(key)}", f"{what} with keys {', '.join(required)}")
        return y.value

    def seq(self, y: _Y, what: str, accepted: str) -> list[_Y]:
        if isinstance(y.value, list):
            return y.value
        raise self.err(y, f"{what} must be a list, not {_kind(y.value)}", accepted)

    def text(self, value: Any, y: _Y | int | None, what: str, accepted: str, max_len: int = MAX_TEXT) -> str:
        """A string the CRI can carry: valid UTF-8 (no lone surrogates from a YAML escape), bounded."""
        if len(value) > max_len:
            raise self.err(y, f"{what} is {len(value)} characters long, more than {max_len}",
                           f"{accepted}, at most {max_len} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise self.err(y, f"{what} is not valid Unicode (character #x{ord(value[e.start]):04x})",
                           f"{accepted}, in UTF-8") from None
        return value

    def string(self, y: _Y, what: str, accepted: str = "a non-empty string", max_len: int = MAX_TEXT) -> str:
        if isinstance(y.value, str) and y.value:
            return self.text(y.value, y, y.path or what, accepted, max_len)
        raise self.err(y, f"{what} must be a non-empty string, not {_kind(y.value)} {_q(y.value)}", accepted)

    def socket(self, y: _Y) -> str:
        accepted = f"a unix socket path of at most {MAX_SOCKET_BYTES} bytes, such as /tmp/fakecri.sock"
        path = self.string(y, "socket", accepted)
        if "\x00" in path:
            raise self.err(y, "socket contains a NUL byte", accepted)
        if len(path.encode()) > MAX_SOCKET_BYTES:
            raise self.err(y, f"socket is {len(path.encode())} bytes long, more than {MAX_SOCKET_BYTES}", accepted)
        return path

    def name(self, y: _Y, what: str) -> str:
        return self.string(y, what, "a name such as web or app-1", MAX_NAME)

    def choice(self, y: _Y, what: str, options: Sequence[str]) -> str:
        if isinstance(y.value, str) and y.value in options:
            return y.value
        raise self.err(y, f"{what}: {_q(y.value)} is not one of the accepted values", ", ".join(options))

    def boolean(self, y: _Y, what: str) -> bool:
        if isinstance(y.value, bool):
            return y.value
        raise self.err(y, f"{what} must be true or false, not {_q(y.value)}", "true, false")

    def integer(self, y: _Y, what: str, lo: int, hi: int) -> int:
        v = y.value
        if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi:
            return v
        label = y.path or what
        raise self.err(y, f"{label} must be an integer >= {lo} and <= {hi}, not {_q(v)}", f"an integer {lo}..{hi}")

    def number(self, y: _Y, what: str, *, hi: float, lo: float = 0.0, positive: bool = False) -> float:
        v = y.value  # compared before any float(): a 400-digit integer must not overflow
        if isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi and (v > 0 or not positive):
            return float(v)
        form = f"a number > 0, from {lo:g} to {hi:g}" if positive else f"a number >= {lo:g} and <= {hi:g}"
        raise self.err(y, f"{y.path or what} must be {form}, not {_q(v)}", form)

    def duration(self, y: _Y, what: str) -> int:
        v = y.value
        label = y.path or what
        accepted = f"{_ACCEPTED_DURATION}, from 0 to {format_duration(MAX_OFFSET_NS)} (30 days)"
        if isinstance(v, int) and not isinstance(v, bool):
            ns = v
        elif isinstance(v, str):
            try:
                ns = parse_duration(v.strip())
            except DurationError as e:
                raise self.err(y, f"{label}: {_q(v)} is not a duration: {e.problem}", accepted) from None
        else:
            raise self.err(y, f"{label}: {_q(v)} is not a duration", accepted)
        if ns < 0:
            raise self.err(y, f"{label}: {_q(v)} is negative", accepted)
        if ns > MAX_OFFSET_NS:
            raise self.err(y, f"{label}: {_q(v)} is more than {format_duration(MAX_OFFSET_NS)}", accepted)
        return ns

    def labels(self, y: _Y, what: str) -> dict[str, str]:
        m = y.value
        if not isinstance(m, dict):
            raise self.err(y, f"{what} must be a mapping of strings, not {_kind(m)}", "key: value pairs")
        label = y.path or what
        if len(m) > MAX_LABELS:
            raise self.err(y, f"{label} has {len(m)} entries, more than {MAX_LABELS}",
                           f"at most {MAX_LABELS} key: value pairs")
        out: dict[str, str] = {}
        for k, v in m.items():
            if not isinstance(k, str) or not isinstance(v.value, str | int | float | bool):
                raise self.err(v, f"{what}: {_q(k)} must map to a string", "key: value pairs of strings")
            key = self.text(k, y.key_lines[k], f"{label}: a key", "key: value pairs of strings")
            out[key] = self.text(v.value if isinstance(v.value, str) else _q(v.value), v, v.path or what,
                                 "key: value pairs of strings")
        return out

    # -- sections
    def scenario(self, root: _Y | None, name: str, summary: str) -> Scenario:
        if root is None:
            return Scenario(name=name, source=self.file, summary=summary)
        top = self.mapping(root, "the scenario", _TOP_KEYS)
        line_of = dict(root.key_lines)
        kw: dict[str, Any] = {"name": name}
        if "name" in top:
            kw["name"] = self.name(top["name"], "name")
        if "flavor" in top:
            kw["flavor"] = self.choice(top["flavor"], "flavor", list(FLAVORS))
        if "socket" in top:
            kw["socket"] = self.socket(top["socket"])
        if "seed" in top:
            kw["seed"] = self.integer(top["seed"], "seed", 0, MAX_SEED)
        if "quirks" in top:
            kw["quirks"] = self.quirks(top["quirks"])
        if "images" in top:
            imgs = self.seq(top["images"], "images", "a list of image references such as busybox")
            kw["images"] = tuple(self.string(i, "an image", "an image reference such as busybox") for i in imgs)
        if "timeline" in top:
            kw["timeline"] = tuple(self.step(s) for s in self.seq(top["timeline"], "timeline",
                                                                   "a list of steps such as '- {at: 1s, start: app}'"))
        if "generators" in top:
            kw["generators"] = tuple(self.generator(g) for g in self.seq(
                top["generators"], "generators", "a list of '- churn: {...}' or '- large_node: {...}'"))
        if "processes" in top:
            kw["processes"] = tuple(self.process(p) for p in self.seq(
                top["processes"], "processes", "a list of '- {at: 1s, container: app, argv: [sh]}'"))
        if "end" in top:
            kw["end_ns"] = self.duration(top["end"], "end")
        return Scenario(**kw, source=self.file, summary=summary, line_of=line_of)

    def quirks(self, y: _Y) -> Quirks:
        allowed = (*_QUIRK_KEYS, *FAULTS)
        m = self.mapping(y, "quirks", allowed)
        kw: dict[str, Any] = {"line": y.line}
        if "handshake" in m:
            kw["handshake"] = self.choice(m["handshake"], "quirks.handshake", HANDSHAKES)
        if "apis" in m:
            apis = self.seq(m["apis"], "quirks.apis", "a list of v1, v1alpha2")
            kw["apis"] = tuple(self.choice(a, "quirks.apis", API_VERSIONS) for a in apis)
            if not kw["apis"] or len(set(kw["apis"])) != len(kw["apis"]):
                raise self.err(m["apis"], "quirks.apis must name each served version once, at least one",
                               "[v1], [v1alpha2] or [v1, v1alpha2]")
        if "events" in m:
            kw["events"] = self.choice(m["events"], "quirks.events", EVENTS_MODES)
        if "state_lag" in m:  # a duration; false (or 0) turns the flavour's off
            lag = m["state_lag"]
            kw["state_lag_ns"] = 0 if lag.value is False else self.duration(lag, "quirks.state_lag")
        faults: dict[str, dict[str, Any]] = {}
        for name in FAULTS:
            if name in m:
                v = m[name]
                if v.value is False:
                    continue
                faults[name] = {} if v.value is True or v.value is None else self.fault_params(name, v, ())
        kw["faults"] = faults
        return Quirks(**kw)

    def fault_params(self, name: str, y: _Y, skip: Sequence[str]) -> dict[str, Any]:
        spec = FAULTS[name]
        m = self.mapping(y, f"fault {name}", (*skip, *spec))
        out: dict[str, Any] = {}
        for key, p in spec.items():
            if key not in m:
                if p.required:
                    raise self.err(y, f"fault {name} needs {_q(key)}", f"{key}: {_PARAM_FORMS[p.kind]}")
                continue
            v = m[key]
            what = f"fault {name}: {key}"
            if p.kind == "number":
                out[key] = self.number(v, what, hi=MAX_LATENCY_MS)
            elif p.kind == "count":
                out[key] = self.integer(v, what, 1, MAX_COUNT)
            elif p.kind == "duration":
                out[key] = self.duration(v, what)
            else:
                options = CRI_METHODS if p.kind == "methods" else LIST_NAMES
                items = self.seq(v, what, _PARAM_FORMS[p.kind])
                out[key] = [self.choice(i, what, options) for i in items]
        return out

    def step(self, y: _Y) -> Step:
        allowed = ("at", *ACTIONS)
        m = self.mapping(y, "a timeline step", allowed, ("at",))
        actions = [k for k in m if k != "at"]
        if len(actions) != 1:
            raise self.err(y, f"a timeline step needs exactly one action, found {len(actions)}"
                           + (f" ({', '.join(actions)})" if actions else ""), ", ".join(ACTIONS))
        action = actions[0]
        at = self.duration(m["at"], "at")
        v = m[action]
        line = y.line
        if action in ("run_pod",):
            if isinstance(v.value, str):
                return RunPod(at_ns=at, pod=self.name(v, "run_pod"), line=line)
            a = self.mapping(v, "run_pod", ("name", "namespace", "uid", "attempt", "labels"), ("name",))
            return RunPod(at_ns=at, pod=self.name(a["name"], "run_pod.name"),
                          namespace=self.name(a["namespace"], "run_pod.namespace") if "namespace" in a else "default",
                          uid=self.string(a["uid"], "run_pod.uid") if "uid" in a else None,
                          attempt=self.integer(a["attempt"], "run_pod.attempt", *UINT32) if "attempt" in a else 0,
                          labels=self.labels(a["labels"], "run_pod.labels") if "labels" in a else {}, line=line)
        if action in ("stop_pod", "remove_pod"):
            if isinstance(v.value, dict):
                v = self.mapping(v, action, ("pod",), ("pod",))["pod"]
            cls = StopPod if action == "stop_pod" else RemovePod
            return cls(at_ns=at, pod=self.name(v, action), line=line)
        if action == "create":
            a = self.mapping(v, "create", ("name", "pod", "image", "attempt", "labels", "annotations", "start"),
                             ("name", "pod"))
            return CreateContainer(
                at_ns=at, container=self.name(a["name"], "create.name"), pod=self.name(a["pod"], "create.pod"),
                image=self.string(a["image"], "create.image", "an image reference") if "image" in a else "busybox",
                attempt=self.integer(a["attempt"], "create.attempt", *UINT32) if "attempt" in a else 0,
                labels=self.labels(a["labels"], "create.labels") if "labels" in a else {},
                annotations=self.labels(a["annotations"], "create.annotations") if "annotations" in a else {},
                start=self.boolean(a["start"], "create.start") if "start" in a else False, line=line)
        if action in ("start", "stop", "remove"):
            if isinstance(v.value, dict):
                v = self.mapping(v, action, ("container",), ("container",))["container"]
            cls = {"start": StartContainer, "stop": StopContainer, "remove": RemoveContainer}[action]
            return cls(at_ns=at, container=self.name(v, action), line=line)
        if action == "exit":
            if isinstance(v.value, str):
                return ExitContainer(at_ns=at, container=self.name(v, "exit"), line=line)
            a = self.mapping(v, "exit", ("container", "code", "reason"), ("container",))
            reason = self.string(a["reason"], "exit.reason", "Completed, Error, OOMKilled or any text") \
                if "reason" in a else None
            code = self.integer(a["code"], "exit.code", *INT32) if "code" in a else (
                137 if reason == "OOMKilled" else 0)
            return ExitContainer(at_ns=at, container=self.name(a["container"], "exit.container"), code=code,
                                 reason=reason, line=line)
        if action == "restart_runtime":
            a = {} if v.value is None or v.value is True else self.mapping(
                v, "restart_runtime", ("downtime", "keep_state"))
            return RestartRuntime(
                at_ns=at,
                downtime_ns=self.duration(a["downtime"], "restart_runtime.downtime") if "downtime" in a
                else RestartRuntime.__dataclass_fields__["downtime_ns"].default,
                keep_state=self.boolean(a["keep_state"], "restart_runtime.keep_state") if "keep_state" in a
                else True, line=line)
        if action == "fault_start":
            if isinstance(v.value, str):
                name = self.choice(v, "fault_start", list(FAULTS))
                if any(p.required for p in FAULTS[name].values()):
                    raise self.err(v, f"fault {name} needs parameters",
                                   f"fault_start: {{name: {name}, " + ", ".join(
                                       f"{k}: ..." for k, p in FAULTS[name].items() if p.required) + "}")
                return FaultStart(at_ns=at, fault=name, line=line)
            a = self.mapping(v, "fault_start", ("name", *sorted({k for s in FAULTS.values() for k in s})), ("name",))
            name = self.choice(a["name"], "fault_start.name", list(FAULTS))
            return FaultStart(at_ns=at, fault=name, params=self.fault_params(name, v, ("name",)), line=line)
        if action == "fault_stop":
            if isinstance(v.value, dict):
                v = self.mapping(v, "fault_stop", ("name",), ("name",))["name"]
            return FaultStop(at_ns=at, fault=self.choice(v, "fault_stop", list(FAULTS)), line=line)
        # close_event_streams
        if v.value not in (None, True, {}):
            raise self.err(v, "close_event_streams takes no value", "close_event_streams: true")
        return CloseEventStreams(at_ns=at, line=line)

    def distribution(self, y: _Y, what: str) -> Distribution:
        if not isinstance(y.value, dict):
            return Distribution(kind="fixed", value_ns=self.duration(y, what))
        accepted = "a duration, {fixed: 100ms}, {uniform: [50ms, 150ms]} or {exponential: 100ms}"
        m = y.value
        if len(m) != 1 or next(iter(m)) not in ("fixed", "uniform", "exponential"):
            raise self.err(y, f"{what} must name one distribution", accepted)
        kind, v = next(iter(m.items()))
        if kind == "uniform":
            pair = self.seq(v, f"{what}.uniform", "[min, max]")
            if len(pair) != 2:
                raise self.err(v, f"{what}.uniform needs two durations", "[min, max]")
            lo, hi = self.duration(pair[0], f"{what}.uniform"), self.duration(pair[1], f"{what}.uniform")
            if lo > hi:
                raise self.err(v, f"{what}.uniform: min > max", "[min, max] with min <= max")
            return Distribution(kind="uniform", lo_ns=lo, hi_ns=hi)
        return Distribution(kind=kind, value_ns=self.duration(v, f"{what}.{kind}"))

    def generator(self, y: _Y) -> Generator:
        m = self.mapping(y, "a generator", ("churn", "large_node"))
        if len(m) != 1:
            raise self.err(y, "a generator entry needs exactly one of churn, large_node", "churn, large_node")
        kind, v = next(iter(m.items()))
        line = y.line
        if kind == "large_node":
            a = self.mapping(v, "large_node", ("at", "containers", "pods", "image", "prefix", "existing"),
                             ("containers", "pods"))
            existing = self.boolean(a["existing"], "large_node.existing") if "existing" in a else False
            if existing and "at" in a:
                raise self.err(a["at"], "large_node.at and large_node.existing: an existing node has no offset",
                               "existing: true (the node is there before the timeline starts), or at: DURATION")
            return LargeNode(existing=existing,
                at_ns=self.duration(a["at"], "large_node.at") if "at" in a else 0,
                containers=self.integer(a["containers"], "large_node.containers", 1, MAX_LARGE_NODE),
                pods=self.integer(a["pods"], "large_node.pods", 1, MAX_LARGE_NODE),
                image=self.string(a["image"], "large_node.image") if "image" in a else "busybox",
                prefix=self.name(a["prefix"], "large_node.prefix") if "prefix" in a else "node", line=line)
        a = self.mapping(v, "churn", ("start", "duration", "rate", "arrivals", "lifetime", "exit_codes",
                                      "removal_delay", "pods", "image", "prefix"), ("duration", "rate", "lifetime"))
        kw: dict[str, Any] = {
            "duration_ns": self.duration(a["duration"], "churn.duration"),
            "rate": self.number(a["rate"], "churn.rate", positive=True, lo=MIN_RATE, hi=MAX_RATE),
            "lifetime": self.distribution(a["lifetime"], "churn.lifetime"),
            "line": line,
        }
        if "start" in a:
            kw["start_ns"] = self.duration(a["start"], "churn.start")
        if "arrivals" in a:
            kw["arrivals"] = self.choice(a["arrivals"], "churn.arrivals", ("poisson", "regular"))
        if "exit_codes" in a:
            kw["exit_codes"] = self.exit_codes(a["exit_codes"])
        if "removal_delay" in a:
            kw["removal_delay"] = self.distribution(a["removal_delay"], "churn.removal_delay")
        if "pods" in a:
            p = a["pods"]
            if isinstance(p.value, list):
                if not p.value:
                    raise self.err(p, "churn.pods is empty", "a list of pod names, or a number of new pods")
                if len(p.value) > MAX_PODS:
                    raise self.err(p, f"{p.path} names {len(p.value)} pods, more than {MAX_PODS}",
                                   f"at most {MAX_PODS} pod names")
                kw["pods"] = tuple(self.name(i, "churn.pods") for i in p.value)
            else:
                kw["pods"] = self.integer(p, "churn.pods", 1, MAX_PODS)
        if "image" in a:
            kw["image"] = self.string(a["image"], "churn.image")
        if "prefix" in a:
            kw["prefix"] = self.name(a["prefix"], "churn.prefix")
        return Churn(**kw)

    def exit_codes(self, y: _Y) -> tuple[tuple[int, float], ...]:
        accepted = "a list of codes such as [0, 1], or a mapping code: weight such as {0: 9, 137: 1}"
        if isinstance(y.value, list):
            codes = [(self.integer(i, "churn.exit_codes", *INT32), 1.0) for i in y.value]
        elif isinstance(y.value, dict):
            codes = []
            for k, w in y.value.items():
                if not isinstance(k, int) or isinstance(k, bool) or not INT32[0] <= k <= INT32[1]:
                    raise self.err(y.key_lines[k], f"churn.exit_codes: {_q(k)} is not an exit code", accepted)
                codes.append((k, self.number(w, f"churn.exit_codes[{k}]", hi=MAX_WEIGHT)))
        else:
            raise self.err(y, "churn.exit_codes has the wrong shape", accepted)
        if not codes or sum(w for _, w in codes) <= 0:
            raise self.err(y, "churn.exit_codes needs at least one code with a weight > 0", accepted)
        return tuple(codes)

    def process(self, y: _Y) -> Process:
        a = self.mapping(y, "a process", ("at", "container", "argv", "delay", "pid"), ("at", "container", "argv"))
        argv_y = a["argv"]
        if isinstance(argv_y.value, str):
            argv: tuple[str, ...] = (self.string(argv_y, "process.argv", "a string"),)
        else:
            items = self.seq(argv_y, "process.argv", "a list of strings such as [/bin/sh, -c, 'echo hi']")
            if len(items) > MAX_ARGV:
                raise self.err(argv_y, f"{argv_y.path} has {len(items)} items, more than {MAX_ARGV}",
                               f"at most {MAX_ARGV} strings")
            argv = tuple(self.string(i, "process.argv", "a string") for i in items)
            if not argv:
                raise self.err(argv_y, "process.argv is empty", "a list of strings such as [/bin/sh]")
        return Process(at_ns=self.duration(a["at"], "process.at"),
                       container=self.name(a["container"], "process.container"), argv=argv,
                       delay_ns=self.duration(a["delay"], "process.delay") if "delay" in a else 0,
                       pid=self.integer(a["pid"], "process.pid", 1, MAX_PID) if "pid" in a else None, line=y.line)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


# ---- loading -------------------------------------------------------------------------------------


def summary_of(text: str) -> str:
    """The first line of a scenario's header comment ('' if it has none)."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            return ""
        body = line.lstrip("#").strip()
        if body:
            return body
    return ""


def loads(text: str, file: str = "<string>", *, name: str | None = None) -> Scenario:
    """Parse and validate a scenario; raises ``ScenarioError``."""
    root = _compose(text, file)
    stem = name or (Path(file).stem if not file.startswith("<") else "scenario")
    scenario = _Parser(file).scenario(root, stem, summary_of(text))
    expand(scenario)  # validates
    return scenario


def load(path: str | Path) -> Scenario:
    """Read, parse and validate a scenario file (a path, or the name of a bundled scenario)."""
    p = resolve(path)
    try:
        text = read_text(str(p), SCENARIO_LIMITS, "scenario")
    except YamlFileError as e:
        problem = "cannot read: no such file" if e.missing else e.problem
        accepted = f"{e.accepted}, or a bundled scenario name (see 'fakecri scenarios')" if e.missing else e.accepted
        raise ScenarioError(str(path), None, problem, accepted) from None
    return loads(text, str(path))


def bundled_dir() -> Path:
    """Where the bundled scenarios live: ``fakecri/bundled`` when installed (pyproject maps the
    top-level ``scenarios/`` there), ``scenarios/`` beside the package in a checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "bundled"
    return installed if installed.is_dir() else here.parent / "scenarios"


def bundled() -> dict[str, Path]:
    """Bundled scenarios by name (file stem), sorted."""
    d = bundled_dir()
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def resolve(ref: str | Path) -> Path:
    """A scenario path as given if it exists, else the bundled scenario of that name."""
    p = Path(ref)
    if p.exists():
        return p
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent in (Path("."), Path("scenarios")):
        found = bundled().get(name)
        if found is not None:
            return found
    return p


# ---- expansion and validation -------------------------------------------------------------------


def _pod_uid(seed: int, pod: str, occurrence: int) -> str:
    digest = hashlib.sha256(f"{seed}/{pod}/{occurrence}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _expand_generator(s: Scenario, gi: int, g: Generator, churn_index: int) -> Iterator[Step]:
    rng = random.Random(f"{s.seed or 0}:{gi}")
    if isinstance(g, LargeNode):
        pods = [f"{g.prefix}-pod-{j}" for j in range(g.pods)]
        for p in pods:
            yield RunPod(at_ns=g.at_ns, pod=p, line=g.line)
        for i in range(g.containers):
            yield CreateContainer(at_ns=g.at_ns, container=f"{g.prefix}-{i}", pod=pods[i % g.pods], image=g.image,
                                  start=True, line=g.line)
        return
    prefix = g.prefix or ("churn" if churn_index == 0 else f"churn{churn_index + 1}")
    if isinstance(g.pods, int):
        pods = [f"{prefix}-pod-{j}" for j in range(g.pods)]
        for p in pods:
            yield RunPod(at_ns=g.start_ns, pod=p, line=g.line)
    else:
        pods = list(g.pods)
    codes = [c for c, _ in g.exit_codes]
    weights = [w for _, w in g.exit_codes]
    end = g.start_ns + g.duration_ns
    gap_ns = 1e9 / g.rate
    t = float(g.start_ns)
    n = 0
    while True:
        t += rng.expovariate(g.rate) * 1e9 if g.arrivals == "poisson" else (gap_ns if n else 0.0)
        at = round(t)
        if at >= end:
            return
        if n * 3 > MAX_STEPS:
            raise ScenarioError(s.source, g.line, f"churn expands to more than {MAX_STEPS} steps",
                                "rate * duration under about 600000 containers")
        pod = pods[rng.randrange(len(pods))]
        life = g.lifetime.sample(rng)
        code = rng.choices(codes, weights)[0]
        delay = g.removal_delay.sample(rng)
        name = f"{prefix}-{n}"
        yield CreateContainer(at_ns=at, container=name, pod=pod, image=g.image, start=True, line=g.line)
        yield ExitContainer(at_ns=at + life, container=name, code=code, line=g.line)
        yield RemoveContainer(at_ns=at + life + delay, container=name, line=g.line)
        n += 1


def expand(s: Scenario, *, flavor: str | None = None) -> Plan:
    """Expand generators, split restarts, sort by offset, and validate; raises ``ScenarioError``.

    ``flavor`` overrides the scenario's flavour (``fakecri serve --flavor``).
    """
    err_file = s.source
    try:
        fl = flavor_of(s, flavor)
    except ValueError as e:
        raise ScenarioError(err_file, s.line_of.get("flavor"), str(e).split(" (accepted")[0],
                            ", ".join(FLAVORS)) from None
    explicit: list[Step] = []
    for st in s.timeline:
        if isinstance(st, RestartRuntime):
            up = st.at_ns + st.downtime_ns
            explicit.append(RuntimeDown(at_ns=st.at_ns, keep_state=st.keep_state, up_at_ns=up, line=st.line))
            explicit.append(RuntimeUp(at_ns=up, keep_state=st.keep_state, line=st.line))
        elif isinstance(st, RuntimeDown | RuntimeUp):
            raise ScenarioError(err_file, st.line, "RuntimeDown/RuntimeUp are plan steps", "restart_runtime")
        else:
            explicit.append(st)
    last_explicit = max((st.at_ns for st in [*explicit, *s.processes]), default=0)
    if s.end_ns is not None and s.end_ns < last_explicit:
        late = max([*explicit, *s.processes], key=lambda st: st.at_ns)
        raise ScenarioError(err_file, late.line, f"{_ACTION_OF[type(late)]} at {format_duration(late.at_ns)} is after "
                            f"the scenario's end ({format_duration(s.end_ns)})",
                            f"steps at offsets up to end, or an end of at least {format_duration(last_explicit)}")
    found: list[Step] = []  # existing large nodes: the runtime before the timeline starts
    generated: list[Step] = []
    churns = 0
    for gi, g in enumerate(s.generators):
        (found if isinstance(g, LargeNode) and g.existing else generated).extend(_expand_generator(s, gi, g, churns))
        churns += isinstance(g, Churn)
        if len(found) + len(generated) > MAX_STEPS:
            raise ScenarioError(err_file, g.line, f"generators expand to more than {MAX_STEPS} steps",
                                "fewer containers, a lower rate or a shorter duration")
    end = s.end_ns if s.end_ns is not None else max(last_explicit, max((st.at_ns for st in generated), default=0))
    generated = [st for st in generated if st.at_ns <= end]  # a generated step after the end never happens
    rank = {RuntimeUp: 0}
    order = sorted(enumerate([*explicit, *generated, *s.processes]),
                   key=lambda p: (p[1].at_ns, rank.get(type(p[1]), 1), p[0]))
    steps = _assign_uids(s, [*found, *(st for _, st in order)])
    _Checker(s, fl).run(steps)
    return Plan(scenario=s, flavor=fl, steps=tuple(steps), end_ns=end, found=len(found))


def _assign_uids(s: Scenario, steps: list[Step]) -> list[Step]:
    seen: dict[str, int] = {}
    out: list[Step] = []
    for st in steps:
        if isinstance(st, RunPod) and st.uid is None:
            n = seen.get(st.pod, 0)
            seen[st.pod] = n + 1
            st = replace(st, uid=_pod_uid(s.seed or 0, st.pod, n))
        out.append(st)
    return out


class _Checker:
    """Replays a plan on a symbolic runtime and rejects the first impossible step."""

    ALLOWED_WHILE_DOWN = (ExitContainer, Process, FaultStart, FaultStop, RuntimeUp)

    def __init__(self, s: Scenario, fl: Flavor) -> None:
        self.s = s
        self.fl = fl
        self.pods: dict[str, str] = {}  # name -> ready | notready
        self.containers: dict[str, tuple[str, str]] = {}  # name -> (state, pod)
        self.down: RuntimeDown | None = None
        self.faults: set[str] = set(s.quirks.faults)
        self.images = {RuntimeModel.normalize_image(i) for i in s.images}

    def fail(self, st: Step, problem: str, accepted: str) -> ScenarioError:
        what = _ACTION_OF[type(st)]
        return ScenarioError(self.s.source, st.line, f"{what} at {format_duration(st.at_ns)}: {problem}", accepted)

    def _known(self, table: Mapping[str, Any], kind: str) -> str:
        names = sorted(table)
        if not names:
            return f"no {kind} exists at that time"
        shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
        return f"{kind}s that exist then: {shown}"

    def pod(self, st: Step, name: str) -> str:
        if name not in self.pods:
            raise self.fail(st, f"no pod {_q(name)} exists then", self._known(self.pods, "pod"))
        return self.pods[name]

    def container(self, st: Step, name: str) -> str:
        if name not in self.containers:
            raise self.fail(st, f"no container {_q(name)} exists then", self._known(self.containers, "container"))
        return self.containers[name][0]

    def need_state(self, st: Step, name: str, want: tuple[str, ...], accepted: str) -> None:
        state = self.container(st, name)
        if state not in want:
            raise self.fail(st, f"container {_q(name)} is {state}, not {' or '.join(want)}", accepted)

    def run(self, steps: Sequence[Step]) -> None:
        quirks = self.s.quirks
        for name, params in quirks.faults.items():
            _check_fault_params(self.s, quirks.line, name, params)
        for img in self.s.images:
            if not img:
                raise ScenarioError(self.s.source, self.s.line_of.get("images"), "empty image name", "busybox")
        for st in steps:
            self.step(st)

    #: Step fields that end up in a CRI integer field, and its range (scenarios built in code skip the parser).
    RANGES = (("attempt", UINT32), ("code", INT32), ("pid", (1, MAX_PID)))

    def ranges(self, st: Step) -> None:
        if not 0 <= st.at_ns <= MAX_PLAN_NS:
            raise self.fail(st, f"offset {st.at_ns} ns is outside 0..{MAX_PLAN_NS}",
                            f"offsets from 0 to {format_duration(MAX_OFFSET_NS)} in a scenario")
        for name, (lo, hi) in self.RANGES:
            value = getattr(st, name, None)
            if value is not None and not lo <= value <= hi:
                raise self.fail(st, f"{name} {value} is outside {lo}..{hi}", f"{name} from {lo} to {hi}")

    def step(self, st: Step) -> None:
        self.ranges(st)
        if self.down is not None and not isinstance(st, self.ALLOWED_WHILE_DOWN):
            d = self.down
            raise self.fail(st, f"the runtime is down from {format_duration(d.at_ns)} to "
                            f"{format_duration(d.up_at_ns)} (restart_runtime at line {d.line})",
                            "only exit, processes, fault_start and fault_stop while the runtime is down")
        if isinstance(st, RunPod):
            if st.pod in self.pods:
                raise self.fail(st, f"pod {_q(st.pod)} already exists", "a pod name not in use (remove_pod first)")
            self.pods[st.pod] = "ready"
        elif isinstance(st, StopPod):
            self.pod(st, st.pod)
            self.pods[st.pod] = "notready"
            for name, (state, pod) in self.containers.items():
                if pod == st.pod and state == "running":
                    self.containers[name] = ("exited", pod)
        elif isinstance(st, RemovePod):
            self.pod(st, st.pod)
            del self.pods[st.pod]
            for name in [n for n, (_, p) in self.containers.items() if p == st.pod]:
                del self.containers[name]
        elif isinstance(st, CreateContainer):
            if self.pod(st, st.pod) != "ready":
                raise self.fail(st, f"pod {_q(st.pod)} is not ready (stopped)", "create in a pod that is ready")
            if st.container in self.containers:
                raise self.fail(st, f"container {_q(st.container)} already exists",
                                "a container name not in use (remove it first)")
            if RuntimeModel.normalize_image(st.image) not in self.images:
                raise self.fail(st, f"image {_q(st.image)} is not preloaded",
                                "an image listed under images: " + ", ".join(self.s.images))
            self.containers[st.container] = ("running" if st.start else "created", st.pod)
        elif isinstance(st, StartContainer):
            self.need_state(st, st.container, ("created",), "start a container once, after create")
            pod = self.containers[st.container][1]
            if self.pods.get(pod) != "ready":
                raise self.fail(st, f"pod {_q(pod)} of container {_q(st.container)} is not ready (stopped)",
                                "start a container while its pod is ready")
            self.containers[st.container] = ("running", pod)
        elif isinstance(st, ExitContainer):
            self.need_state(st, st.container, ("running",), "exit a running container (after start)")
            self.containers[st.container] = ("exited", self.containers[st.container][1])
        elif isinstance(st, StopContainer):
            self.need_state(st, st.container, ("running",), "stop a running container")
            self.containers[st.container] = ("exited", self.containers[st.container][1])
        elif isinstance(st, RemoveContainer):
            state = self.container(st, st.container)
            if state == "running" and self.fl.remove_running == "refuse":
                raise self.fail(st, f"{self.fl.name} refuses to remove a running container",
                                "stop or exit before remove")
            del self.containers[st.container]
        elif isinstance(st, RuntimeDown):
            self.down = st
            if not st.keep_state:
                self.pods.clear()
                self.containers.clear()
        elif isinstance(st, RuntimeUp):
            self.down = None
        elif isinstance(st, FaultStart):
            if st.fault in self.faults:
                raise self.fail(st, f"fault {st.fault} is already on", "fault_stop before starting it again")
            _check_fault_params(self.s, st.line, st.fault, st.params)
            self.faults.add(st.fault)
        elif isinstance(st, FaultStop):
            if st.fault not in self.faults:
                raise self.fail(st, f"fault {st.fault} is not on", "fault_stop after fault_start of the same fault")
            self.faults.discard(st.fault)
        elif isinstance(st, CloseEventStreams):
            if self.fl.events not in ("stream", "stream-then-closed"):
                raise self.fail(st, f"flavor {self.fl.name} has events: {self.fl.events}, no streams to close",
                                "close_event_streams with events: stream or stream-then-closed")
            if "v1" not in self.fl.apis:
                raise self.fail(st, "GetContainerEvents needs the v1 API, which is not served",
                                "close_event_streams with apis including v1")
        elif isinstance(st, Process):
            self.need_state(st, st.container, ("running",), "processes in a running container")
        else:  # pragma: no cover - the union above is exhaustive
            raise self.fail(st, f"unknown step {type(st).__name__}", ", ".join(ACTIONS))


def _check_fault_params(s: Scenario, line: int | None, name: str, params: Mapping[str, Any]) -> None:
    """Parameters of a fault built in code (hypothesis) get the same checks as parsed ones."""
    spec = FAULTS.get(name)
    if spec is None:
        raise ScenarioError(s.source, line, f"unknown fault {_q(name)}", ", ".join(FAULTS))
    for key in params:
        if key not in spec:
            raise ScenarioError(s.source, line, f"unknown parameter {_q(key)} for fault {name}",
                                ", ".join(spec) or "no parameters")
    for key, p in spec.items():
        if p.required and key not in params:
            raise ScenarioError(s.source, line, f"fault {name} needs {_q(key)}", f"{key}: {_PARAM_FORMS[p.kind]}")


# ---- writing -------------------------------------------------------------------------------------


def _dur(ns: int) -> str:
    return format_duration(ns)


def _dist(d: Distribution) -> Any:
    if d.kind == "fixed":
        return _dur(d.value_ns)
    if d.kind == "uniform":
        return {"uniform": [_dur(d.lo_ns), _dur(d.hi_ns)]}
    return {"exponential": _dur(d.value_ns)}


def _fault_params_out(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        kind = FAULTS[name][k].kind
        out[k] = _dur(v) if kind == "duration" else list(v) if isinstance(v, list | tuple) else v
    return out


def _step_out(st: Step) -> dict[str, Any]:
    at = {"at": _dur(st.at_ns)}
    if isinstance(st, RunPod):
        body: dict[str, Any] = {"name": st.pod}
        if st.namespace != "default":
            body["namespace"] = st.namespace
        if st.uid is not None:
            body["uid"] = st.uid
        if st.attempt:
            body["attempt"] = st.attempt
        if st.labels:
            body["labels"] = dict(st.labels)
        return {**at, "run_pod": body if len(body) > 1 else st.pod}
    if isinstance(st, StopPod | RemovePod):
        return {**at, _ACTION_OF[type(st)]: st.pod}
    if isinstance(st, CreateContainer):
        body = {"name": st.container, "pod": st.pod, "image": st.image}
        if st.attempt:
            body["attempt"] = st.attempt
        if st.labels:
            body["labels"] = dict(st.labels)
        if st.annotations:
            body["annotations"] = dict(st.annotations)
        if st.start:
            body["start"] = True
        return {**at, "create": body}
    if isinstance(st, StartContainer | StopContainer | RemoveContainer):
        return {**at, _ACTION_OF[type(st)]: st.container}
    if isinstance(st, ExitContainer):
        body = {"container": st.container, "code": st.code}
        if st.reason is not None:
            body["reason"] = st.reason
        return {**at, "exit": body}
    if isinstance(st, RestartRuntime):
        return {**at, "restart_runtime": {"downtime": _dur(st.downtime_ns), "keep_state": st.keep_state}}
    if isinstance(st, FaultStart):
        return {**at, "fault_start": {"name": st.fault, **_fault_params_out(st.fault, st.params)}}
    if isinstance(st, FaultStop):
        return {**at, "fault_stop": st.fault}
    if isinstance(st, CloseEventStreams):
        return {**at, "close_event_streams": True}
    raise TypeError(f"{type(st).__name__} cannot appear in a scenario's timeline")


def to_dict(s: Scenario) -> dict[str, Any]:
    """The YAML form of a scenario as plain data (what ``dumps`` writes)."""
    out: dict[str, Any] = {"name": s.name, "flavor": s.flavor}
    if s.socket is not None:
        out["socket"] = s.socket
    if s.seed is not None:
        out["seed"] = s.seed
    q = s.quirks
    quirks: dict[str, Any] = {}
    if q.handshake is not None:
        quirks["handshake"] = q.handshake
    if q.apis is not None:
        quirks["apis"] = list(q.apis)
    if q.events is not None:
        quirks["events"] = q.events
    if q.state_lag_ns is not None:
        quirks["state_lag"] = _dur(q.state_lag_ns)
    for name, params in q.faults.items():
        quirks[name] = _fault_params_out(name, params) if params else True
    if quirks:
        out["quirks"] = quirks
    out["images"] = list(s.images)
    if s.timeline:
        out["timeline"] = [_step_out(st) for st in s.timeline]
    gens: list[dict[str, Any]] = []
    for g in s.generators:
        if isinstance(g, LargeNode):
            node: dict[str, Any] = {"existing": True} if g.existing else {"at": _dur(g.at_ns)}
            gens.append({"large_node": {**node, "containers": g.containers, "pods": g.pods,
                                        "image": g.image, "prefix": g.prefix}})
        else:
            body: dict[str, Any] = {"start": _dur(g.start_ns), "duration": _dur(g.duration_ns), "rate": g.rate,
                                    "arrivals": g.arrivals, "lifetime": _dist(g.lifetime),
                                    "exit_codes": {c: w for c, w in g.exit_codes},
                                    "removal_delay": _dist(g.removal_delay),
                                    "pods": g.pods if isinstance(g.pods, int) else list(g.pods), "image": g.image}
            if g.prefix is not None:
                body["prefix"] = g.prefix
            gens.append({"churn": body})
    if gens:
        out["generators"] = gens
    if s.processes:
        procs = []
        for p in s.processes:
            body = {"at": _dur(p.at_ns), "container": p.container, "argv": list(p.argv), "delay": _dur(p.delay_ns)}
            if p.pid is not None:
                body["pid"] = p.pid
            procs.append(body)
        out["processes"] = procs
    if s.end_ns is not None:
        out["end"] = _dur(s.end_ns)
    return out


def dumps(s: Scenario) -> str:
    """The scenario as YAML, with its summary as the header comment. ``loads(dumps(s)) == s``."""
    head = f"# {s.summary}\n" if s.summary else ""
    return head + yaml.safe_dump(to_dict(s), sort_keys=False, allow_unicode=True, default_flow_style=None)
