"""Configuration: the seed's two YAML files (plus overrides and environment) -> ``SensorConfig``.

Theory of operation
-------------------
``load_config`` is pure apart from reading the two files: it takes the paths, a dict of overrides
(the CLI's flags) and the environment as arguments, and returns a frozen ``SensorConfig`` or raises
``ConfigError``. Nothing here opens sockets or reads ``os.environ`` unless ``env`` is omitted.

Sources, lowest precedence first::

    defaults  <  files  <  environment (GRPC_GO_REQUIRE_HANDSHAKE)  <  overrides

* ``/etc/capsule8/capsule8-sensor.yaml`` holds the ``crisensor:`` mapping. The file is shared with
  the rest of the Capsule8 sensor, so other top-level sections are ignored, except a near-miss of
  ``crisensor`` (``crisenser:``), which is an error rather than a silently disabled sensor. The
  dotted spelling of the seed's docs (top-level ``crisensor.poll_interval: 150ms``) is accepted
  too, as the original's viper did. Keys are case-insensitive (viper lowercased them).
  Inside ``crisensor:``, an unknown key is an error naming the accepted keys.
* ``/etc/capsule8/capsule8-analytics.yaml`` holds ``event_reorder_window`` at the top level; other
  top-level keys belong to the analytics engine and are ignored (a near-miss is an error).
* A file missing at its DEFAULT path means defaults; a path given explicitly must exist.
* A key written with an empty value (``poll_interval:``) takes its default.

Every error is a ``ConfigError`` whose ``str`` is one line::

    <file>[:<line>]: <key>: <what is wrong> (accepted: <accepted form>)

e.g. ``capsule8-sensor.yaml:4: crisensor.poll_interval: "fast" is not a Go duration: ...
(accepted: e.g. 150ms, 1s, 1m30s; ...)``. Line numbers come from node marks; files are read and composed
by ``sensor.yamlfile`` (regular files of at most 1 MiB, no aliases, depth and node caps).
``docs/config.md`` documents every key.
"""

from __future__ import annotations

import difflib
import functools
import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from sensor.duration import ACCEPTED as DURATION_ACCEPTED
from sensor.duration import DurationError, format_duration, parse_duration
from sensor.yamlfile import MIB, Limits, YamlFileError, compose, construct, duplicate_key, read_text, show

__all__ = [
    "CONTAINERD_SOCKET",
    "CRIO_SOCKET",
    "DEFAULT_ANALYTICS_PATH",
    "DEFAULT_SENSOR_PATH",
    "DEFAULT_SOCKETS",
    "EVENTS_MODES",
    "HANDSHAKE_ENV",
    "HANDSHAKE_MODES",
    "LOOKUP_MODES",
    "POLL_FLOOR_NS",
    "PROCESSES_MODES",
    "PROCESSES_SCOPES",
    "ConfigError",
    "SensorConfig",
    "load_config",
]

DEFAULT_SENSOR_PATH = "/etc/capsule8/capsule8-sensor.yaml"
DEFAULT_ANALYTICS_PATH = "/etc/capsule8/capsule8-analytics.yaml"
CRIO_SOCKET = "/var/run/crio/crio.sock"
CONTAINERD_SOCKET = "/var/run/containerd/containerd.sock"
DEFAULT_SOCKETS: Mapping[str, str] = {"cri-o": CRIO_SOCKET, "containerd": CONTAINERD_SOCKET}

HANDSHAKE_MODES = ("require", "off", "auto")
EVENTS_MODES = ("auto", "on", "off")
PROCESSES_MODES = ("auto", "proc", "off")
LOOKUP_MODES = ("on", "off")
PROCESSES_SCOPES = ("containers", "all")
HANDSHAKE_ENV = "GRPC_GO_REQUIRE_HANDSHAKE"
#: GRPC_GO_REQUIRE_HANDSHAKE values (grpc-go 1.17-1.19) and the handshake mode each one forces.
_HANDSHAKE_ENV_VALUES = {"on": "require", "off": "off", "hybrid": "auto"}

_ADDR_ACCEPTED = "unix:///path/to/socket, e.g. unix:///var/run/crio/crio.sock"


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """The sensor's whole configuration. Durations are int nanoseconds (``*_ns``)."""

    enabled: bool = False
    #: normalized dial target, always ``unix:///absolute/path`` (``""`` when unset)
    addr: str = ""
    #: the socket's absolute filesystem path (``""`` when unset)
    socket_path: str = ""
    poll_interval_ns: int = 250_000_000
    #: ``require``: wait for the server's HTTP/2 preface (grpcio's behaviour); ``off``: do not
    #: (old CRI-O, via the local shim); ``auto``: try ``require``, fall back to ``off``
    handshake: str = "require"
    #: where ``handshake`` came from: ``default``, a file path, ``env GRPC_GO_REQUIRE_HANDSHAKE``
    #: or ``override``
    handshake_source: str = "default"
    #: event streaming (GetContainerEvents): ``auto`` (use it when offered), ``on`` (required),
    #: ``off`` (poll only)
    events: str = "auto"
    #: the kernel process source (``sensor.procsource``): ``auto`` (the proc connector when this
    #: process may subscribe, else off with one log line), ``proc`` (required), ``off``
    processes: str = "auto"
    #: ask the runtime at once about a container an exec names before any poll announced it
    #: (``sensor.lookup``): ``on`` or ``off``
    lookup_on_miss: str = "on"
    #: which execs the process source reports: ``containers`` (execs of host processes are dropped
    #: and counted) or ``all`` (host execs too, ``container_id: null``, ``enrichment: "host"``)
    processes_scope: str = "containers"
    max_recv_bytes: int = 16 * MIB
    rpc_timeout_ns: int = 2_000_000_000
    resync_interval_ns: int = 10_000_000_000
    #: how long List/Status may still show a container running after its process exited (state
    #: lag, DESIGN.md section 6): an exit with no reported finished_at gets a window this much wider.
    #: Measured here up to 0.51 s (containerd 1.7 at load 7 on 2 cores): 1 s is twice the worst seen
    state_lag_ns: int = 1_000_000_000
    event_reorder_window_ns: int = 25_000_000
    #: the files actually read (``None``: the default path was missing, defaults used)
    sensor_path: str | None = None
    analytics_path: str | None = None


class ConfigError(ValueError):
    """A bad configuration. ``str(err)`` is one line: file[:line]: key: problem (accepted: ...)."""

    def __init__(
        self, file: str, key: str | None, problem: str, accepted: str | None = None, line: int | None = None
    ) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        self.accepted = accepted
        self.line = line
        where = file if line is None else f"{file}:{line}"
        parts = [where]
        if key:
            parts.append(key)
        text = ": ".join(parts) + ": " + problem
        if accepted:
            text += f" (accepted: {accepted})"
        super().__init__(" ".join(text.split()))  # guarantee one line


class _Bad(Exception):
    """A value parser's complaint; ``load_config`` adds file, key and line."""

    def __init__(self, problem: str, accepted: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.accepted = accepted


def _show(value: Any) -> str:
    """A value as the user wrote it, quoted, one line, bounded (also for a 5,000-digit integer)."""
    if isinstance(value, float):
        return repr(value)
    return show(value)


# --- value parsers: (raw value, raw scalar text or None) -> typed value, or raise _Bad -------------

_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _parse_bool(value: Any, _raw: str | None) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)) and str(value).strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[str(value).strip().lower()]
    raise _Bad(f"{_show(value)} is not a boolean", "true or false")


def _parse_addr(value: Any, _raw: str | None) -> str:
    """Return the normalized ``unix:///abs`` target ('' stays '')."""
    if not isinstance(value, str):
        raise _Bad(f"{_show(value)} is not a string", _ADDR_ACCEPTED)
    addr = value.strip()
    if addr == "":
        return ""
    if not addr.startswith("unix://"):
        raise _Bad(f"{_show(value)} does not start with unix://", _ADDR_ACCEPTED)
    path = addr[len("unix://") :]
    if not path.strip("/"):
        raise _Bad(f"{_show(value)} names no socket path", _ADDR_ACCEPTED)
    if "\x00" in path:
        raise _Bad(f"{_show(value)} contains a NUL byte", _ADDR_ACCEPTED)
    # unix://var/run/crio/crio.sock (the seed's docs) means /var/run/crio/crio.sock: always absolute.
    path = posixpath.normpath("/" + path.lstrip("/"))
    return "unix://" + path


def _parse_duration_in(minimum_ns: int, maximum: str, value: Any, raw: str | None) -> int:
    """A Go duration in ``[minimum_ns, maximum]`` (an upper bound keeps sleeps and deadlines sane:
    no OverflowError from a 292-year timeout, no poll loop that never polls)."""
    low = {0: ">= 0", 1: "> 0"}.get(minimum_ns) or f">= {format_duration(minimum_ns)}"
    span = f"{low} and <= {maximum}"
    accepted = f"a Go duration {span}, {DURATION_ACCEPTED}"
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise _Bad(f"{_show(value)} is not a Go duration", accepted)
    text = raw if raw is not None else (value if isinstance(value, str) else _show(value))
    try:
        ns = parse_duration(text)
    except DurationError as exc:
        raise _Bad(f"{_show(text)} is not a Go duration: {exc.problem}", accepted) from None
    if not minimum_ns <= ns <= parse_duration(maximum):
        raise _Bad(f"{_show(text)} is not {span}", accepted)
    return ns


def _parse_enum(modes: tuple[str, ...], value: Any, raw: str | None) -> str:
    # YAML 1.1 reads a bare `off`/`on` as a boolean; the text as written is what the user meant.
    text = raw if raw is not None else value
    if isinstance(text, bool):
        text = "on" if text else "off"
    if isinstance(text, str) and text.strip().lower() in modes:
        return text.strip().lower()
    accepted = " | ".join(modes)
    raise _Bad(f"{_show(text)} is not one of {accepted}", accepted)


# The parsers of the key table are partials of module-level functions, not closures made at import,
# so that every line of them runs (and can be mutation-tested) when a value is parsed.
def _duration_parser(minimum_ns: int, maximum: str) -> Callable[[Any, str | None], int]:
    return functools.partial(_parse_duration_in, minimum_ns, maximum)


def _enum_parser(modes: tuple[str, ...]) -> Callable[[Any, str | None], str]:
    return functools.partial(_parse_enum, modes)


#: gRPC keeps message size limits in a C int.
MAX_RECV_BYTES = 2**31 - 1


def _parse_bytes(value: Any, _raw: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_RECV_BYTES:
        raise _Bad(f"{_show(value)} is not a positive integer <= {MAX_RECV_BYTES}",
                   f"a byte count from 1 to {MAX_RECV_BYTES} (gRPC's limit), e.g. 16777216 (16 MiB)")
    return value


#: A shorter poll interval spins a core listing the runtime (and the runtime with it): refused.
POLL_FLOOR_NS = 10_000_000

#: crisensor.<key> -> (SensorConfig field, parser)
_CRISENSOR_KEYS: dict[str, tuple[str, Callable[[Any, str | None], Any]]] = {
    "enabled": ("enabled", _parse_bool),
    "addr": ("addr", _parse_addr),
    "poll_interval": ("poll_interval_ns", _duration_parser(POLL_FLOOR_NS, "1h")),
    "handshake": ("handshake", _enum_parser(HANDSHAKE_MODES)),
    "events": ("events", _enum_parser(EVENTS_MODES)),
    "processes": ("processes", _enum_parser(PROCESSES_MODES)),
    "lookup_on_miss": ("lookup_on_miss", _enum_parser(LOOKUP_MODES)),
    "processes_scope": ("processes_scope", _enum_parser(PROCESSES_SCOPES)),
    "max_recv_bytes": ("max_recv_bytes", _parse_bytes),
    "rpc_timeout": ("rpc_timeout_ns", _duration_parser(1, "1h")),
    "resync_interval": ("resync_interval_ns", _duration_parser(1, "24h")),
    "state_lag": ("state_lag_ns", _duration_parser(0, "1m")),
}
#: top-level key of the analytics file
_ANALYTICS_KEYS: dict[str, tuple[str, Callable[[Any, str | None], Any]]] = {
    "event_reorder_window": ("event_reorder_window_ns", _duration_parser(0, "1h")),
}
_CRISENSOR_ACCEPTED = ", ".join(f"crisensor.{k}" for k in _CRISENSOR_KEYS)


@dataclass(frozen=True, slots=True)
class _Setting:
    """One raw setting: where it came from, its value and (for YAML scalars) its text as written."""

    file: str
    line: int | None
    value: Any
    raw: str | None


# --- reading YAML ---------------------------------------------------------------------------------


#: A config file is a regular file of at most 1 MiB, at most 32 levels deep and 10,000 YAML nodes
#: (a real one has a few dozen), with no aliases: enough for any sensor config, and each refusal
#: takes well under a second (pure-Python PyYAML reads about 200 kB/s, capped by the node count).
CONFIG_LIMITS = Limits(max_bytes=MIB, max_depth=32, max_nodes=10_000)


def _read(path: str, explicit: bool, what: str) -> str | None:
    try:
        return read_text(path, CONFIG_LIMITS, what)
    except YamlFileError as exc:
        if exc.missing:
            if not explicit:
                return None
            raise ConfigError(path, None, f"no such file (the {what} file was given explicitly)",
                              "an existing file, or none for defaults") from None
        raise ConfigError(path, None, exc.problem, exc.accepted) from None


_SENSOR_EXAMPLE = 'YAML such as "crisensor:" followed by indented lines like "poll_interval: 250ms" (spaces, no tabs)'
_ANALYTICS_EXAMPLE = 'YAML such as "event_reorder_window: 25ms"'


def _compose(path: str, text: str, example: str) -> yaml.Node | None:
    try:
        return compose(text, CONFIG_LIMITS, example)
    except YamlFileError as exc:
        raise ConfigError(path, None, exc.problem, exc.accepted, line=exc.line) from None


def _construct(path: str, node: yaml.Node) -> Any:
    try:
        return construct(node)
    except YamlFileError as exc:
        raise ConfigError(path, None, exc.problem, exc.accepted, line=exc.line) from None


def _node_kind(node: yaml.Node | None) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a scalar"


def _setting(path: str, node: yaml.Node) -> _Setting | None:
    """A key's value node -> _Setting (``None`` for an empty value: take the default)."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        if node.tag == "tag:yaml.org,2002:null":
            return None
        return _Setting(path, line, _construct(path, node), node.value)
    return _Setting(path, line, _construct(path, node), None)


def _mapping_items(path: str, node: yaml.MappingNode, prefix: str) -> list[tuple[str, int, yaml.Node]]:
    """(lowercased key, line, value node) for each entry; non-string keys are errors."""
    out: list[tuple[str, int, yaml.Node]] = []
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:null":
            raise ConfigError(
                path,
                prefix.rstrip(".") or None,
                f"a key is {_node_kind(key_node)}, not a name",
                "plain names such as poll_interval",
                line=line,
            )
        out.append((key_node.value.strip().lower(), line, value_node))
    return out


def _near_miss(key: str, wanted: str) -> bool:
    return key != wanted and difflib.SequenceMatcher(None, key, wanted).ratio() >= 0.8


def _root_mapping(path: str, text: str, example: str, accepted: str) -> yaml.MappingNode | None:
    """The file's top-level mapping (``None`` for an empty file); anything else is a ConfigError."""
    root = _compose(path, text, example)
    twice = duplicate_key(root)  # anywhere in the file: PyYAML would silently keep the last
    if twice is not None:
        raise ConfigError(path, twice[0].lower(), f"given twice (lines {twice[1]} and {twice[2]})", "each key once",
                          line=twice[2])
    if root is not None and not isinstance(root, yaml.MappingNode):
        raise ConfigError(path, None, f"the top level is {_node_kind(root)}, not a mapping", accepted,
                          line=root.start_mark.line + 1)
    return root


def _sensor_settings(path: str, text: str) -> dict[str, _Setting]:
    root = _root_mapping(path, text, _SENSOR_EXAMPLE, "a mapping with a crisensor: section")
    if root is None:
        return {}
    found: dict[str, _Setting] = {}
    first_line: dict[str, int] = {}

    def put(key: str, line: int, node: yaml.Node) -> None:
        if key not in _CRISENSOR_KEYS:
            raise ConfigError(path, f"crisensor.{key}", "unknown key", _CRISENSOR_ACCEPTED, line=line)
        if key in first_line:
            raise ConfigError(
                path,
                f"crisensor.{key}",
                f"given twice (lines {first_line[key]} and {line})",
                "each key once",
                line=line,
            )
        first_line[key] = line
        setting = _setting(path, node)
        if setting is not None:
            found[key] = setting

    for key, line, node in _mapping_items(path, root, ""):
        if key == "crisensor":
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                continue
            if not isinstance(node, yaml.MappingNode):
                raise ConfigError(
                    path,
                    "crisensor",
                    f"is {_node_kind(node)}, not a mapping",
                    f"a mapping of {_CRISENSOR_ACCEPTED}",
                    line=node.start_mark.line + 1,
                )
            for sub, subline, subnode in _mapping_items(path, node, "crisensor."):
                put(sub, subline, subnode)
        elif key.startswith("crisensor."):
            put(key[len("crisensor.") :], line, node)
        elif _near_miss(key, "crisensor") or _near_miss(key.split(".")[0], "crisensor"):
            raise ConfigError(
                path,
                key,
                'unknown key (did you mean "crisensor"?)',
                "crisensor (other top-level sections belong to other Capsule8 components)",
                line=line,
            )
        # anything else belongs to another Capsule8 component
    return found


def _analytics_settings(path: str, text: str) -> dict[str, _Setting]:
    root = _root_mapping(path, text, _ANALYTICS_EXAMPLE, "a mapping such as event_reorder_window: 25ms")
    if root is None:
        return {}
    found: dict[str, _Setting] = {}
    seen_line: int | None = None
    for key, line, node in _mapping_items(path, root, ""):
        if key == "event_reorder_window":
            if seen_line is not None:
                raise ConfigError(path, key, f"given twice (lines {seen_line} and {line})", "each key once", line=line)
            seen_line = line
            setting = _setting(path, node)
            if setting is not None:
                found[key] = setting
        elif _near_miss(key, "event_reorder_window"):
            raise ConfigError(
                path, key, 'unknown key (did you mean "event_reorder_window"?)', "event_reorder_window", line=line
            )
    return found


# --- the entry point --------------------------------------------------------------------------------


def load_config(
    sensor_path: str | None,
    analytics_path: str | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> SensorConfig:
    """Read, validate and merge the configuration; raise ``ConfigError`` (one line) when it is bad.

    ``sensor_path``/``analytics_path``: ``None`` means the default path, where a missing file means
    defaults; an explicit path must exist. ``overrides``: ``{"crisensor.poll_interval": "100ms",
    "event_reorder_window": "50ms", ...}`` (bare crisensor key names are accepted too), values as a
    user would write them in YAML; they win over everything. ``env``: the environment to consult
    for ``GRPC_GO_REQUIRE_HANDSHAKE`` (``None``: ``os.environ``).
    """
    env = os.environ if env is None else env
    s_path = sensor_path if sensor_path is not None else DEFAULT_SENSOR_PATH
    a_path = analytics_path if analytics_path is not None else DEFAULT_ANALYTICS_PATH

    s_text = _read(s_path, sensor_path is not None, "sensor config")
    a_text = _read(a_path, analytics_path is not None, "analytics config")
    crisensor = {} if s_text is None else _sensor_settings(s_path, s_text)
    analytics = {} if a_text is None else _analytics_settings(a_path, a_text)

    values: dict[str, Any] = {}
    handshake_source = "default"

    def apply(
        table: Mapping[str, tuple[str, Callable[[Any, str | None], Any]]], prefix: str, settings: Mapping[str, _Setting]
    ) -> None:
        nonlocal handshake_source
        for key, setting in settings.items():
            field_name, parse = table[key]
            try:
                values[field_name] = parse(setting.value, setting.raw)
            except _Bad as bad:
                raise ConfigError(setting.file, prefix + key, bad.problem, bad.accepted, line=setting.line) from None
            if field_name == "handshake":
                handshake_source = "override" if setting.file == "override" else setting.file

    apply(_CRISENSOR_KEYS, "crisensor.", crisensor)
    apply(_ANALYTICS_KEYS, "", analytics)

    raw_env = env.get(HANDSHAKE_ENV)
    if raw_env is not None and raw_env.strip() != "":
        forced = _HANDSHAKE_ENV_VALUES.get(raw_env.strip().lower())
        if forced is None:
            raise ConfigError(
                "environment", HANDSHAKE_ENV, f"{_show(raw_env)} is not a known value", "off (or on, hybrid)"
            )
        values["handshake"] = forced
        handshake_source = f"env {HANDSHAKE_ENV}"

    if overrides:
        o_crisensor: dict[str, _Setting] = {}
        o_analytics: dict[str, _Setting] = {}
        for name, value in overrides.items():
            key = str(name).strip().lower()
            if key.startswith("crisensor."):
                key = key[len("crisensor.") :]
            setting = _Setting("override", None, value, value if isinstance(value, str) else None)
            if key in _CRISENSOR_KEYS:
                o_crisensor[key] = setting
            elif key in _ANALYTICS_KEYS:
                o_analytics[key] = setting
            else:
                raise ConfigError("override", str(name), "unknown key", f"{_CRISENSOR_ACCEPTED}, event_reorder_window")
        apply(_CRISENSOR_KEYS, "crisensor.", o_crisensor)
        apply(_ANALYTICS_KEYS, "", o_analytics)

    addr = values.get("addr", "")
    if values.get("enabled", False) and not addr:
        file, line = _missing_addr_where(crisensor, overrides or {})
        raise ConfigError(
            file,
            "crisensor.addr",
            '"" is not allowed when crisensor.enabled is true',
            _ADDR_ACCEPTED + " or unix:///var/run/containerd/containerd.sock",
            line=line,
        )
    socket_path = addr[len("unix://") :] if addr else ""
    return SensorConfig(
        **values,
        socket_path=socket_path,
        handshake_source=handshake_source,
        sensor_path=s_path if s_text is not None else None,
        analytics_path=a_path if a_text is not None else None,
    )


def _missing_addr_where(crisensor: Mapping[str, _Setting], overrides: Mapping[str, Any]) -> tuple[str, int | None]:
    """Where to point an 'addr missing' error: the addr (or enabled) line that made it so."""
    keys = {str(k).strip().lower().removeprefix("crisensor.") for k in overrides}
    if "addr" in keys or ("enabled" in keys and "addr" not in crisensor):
        return "override", None
    chosen = crisensor.get("addr") or crisensor["enabled"]
    return chosen.file, chosen.line
