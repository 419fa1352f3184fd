"""sensor.config: the exact one-line error for each way a value, a key or a file can be wrong.

Every message is compared whole (file, line, key, problem and accepted form), and so are the
``ConfigError`` attributes: a message that loses its file, line or accepted form is a regression.
These tables are also what kills the mutants of ``make mutate`` (docs/guarantees.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import sensor.config as config_module
from sensor.config import ConfigError, load_config

ACC_ADDR = "unix:///path/to/socket, e.g. unix:///var/run/crio/crio.sock"
ACC_POLL = "a Go duration >= 10ms and <= 1h, e.g. 150ms, 1s, 1m30s"
ACC_RPC = "a Go duration > 0 and <= 1h, e.g. 150ms, 1s, 1m30s"
ACC_WINDOW = "a Go duration >= 0 and <= 1h, e.g. 150ms, 1s, 1m30s"
ACC_BYTES = "a byte count from 1 to 2147483647 (gRPC's limit), e.g. 16777216 (16 MiB)"
KEYS = ("crisensor.enabled, crisensor.addr, crisensor.poll_interval, crisensor.handshake, crisensor.events, "
        "crisensor.processes, crisensor.lookup_on_miss, crisensor.processes_scope, "
        "crisensor.max_recv_bytes, crisensor.rpc_timeout, crisensor.resync_interval, crisensor.state_lag")
NEAR = "crisensor (other top-level sections belong to other Capsule8 components)"
VALUE = "plain scalars, lists and mappings"


@pytest.fixture(autouse=True)
def no_system_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "DEFAULT_SENSOR_PATH", str(tmp_path / "etc" / "capsule8-sensor.yaml"))
    monkeypatch.setattr(config_module, "DEFAULT_ANALYTICS_PATH", str(tmp_path / "etc" / "capsule8-analytics.yaml"))


def check(err: ConfigError, file: str, line: int | None, key: str | None, problem: str, accepted: str) -> None:
    where = file if line is None else f"{file}:{line}"
    assert str(err) == f"{where}: {key + ': ' if key else ''}{problem} (accepted: {accepted})"
    assert (err.file, err.line, err.key, err.problem, err.accepted) == (file, line, key, problem, accepted)


SENSOR_ERRORS = [
    # (sensor file, line, key, problem, accepted)
    ("crisensor:\n  enabled: maybe\n", 2, "crisensor.enabled", '"maybe" is not a boolean', "true or false"),
    ("crisensor:\n  enabled: 1.5\n", 2, "crisensor.enabled", "1.5 is not a boolean", "true or false"),
    ("crisensor:\n  enabled: [1]\n", 2, "crisensor.enabled", "[1] is not a boolean", "true or false"),
    ("crisensor:\n  enabled: 2001-02-30\n", 2, None, "invalid YAML value: day is out of range for month", VALUE),
    ("crisensor:\n  enabled: [2001-02-30]\n", 2, None, "invalid YAML value: day is out of range for month", VALUE),
    ("crisensor:\n  enabled: true\n  addr: ''\n", 3, "crisensor.addr",
     '"" is not allowed when crisensor.enabled is true',
     ACC_ADDR + " or unix:///var/run/containerd/containerd.sock"),
    ("crisensor:\n  addr: ''\n  enabled: true\n", 2, "crisensor.addr",
     '"" is not allowed when crisensor.enabled is true',
     ACC_ADDR + " or unix:///var/run/containerd/containerd.sock"),
    ("crisensor:\n  enabled: true\n", 2, "crisensor.addr", '"" is not allowed when crisensor.enabled is true',
     ACC_ADDR + " or unix:///var/run/containerd/containerd.sock"),
    ("crisensor:\n  addr: unix:///\n", 2, "crisensor.addr", '"unix:///" names no socket path', ACC_ADDR),
    ("crisensor:\n  addr: unix://\n", 2, "crisensor.addr", '"unix://" names no socket path', ACC_ADDR),
    ('crisensor:\n  addr: "unix:///a\\0b"\n', 2, "crisensor.addr", '"unix:///a\\u0000b" contains a NUL byte', ACC_ADDR),
    ("crisensor:\n  addr: 5\n", 2, "crisensor.addr", "5 is not a string", ACC_ADDR),
    ("crisensor:\n  addr: tcp://x\n", 2, "crisensor.addr", '"tcp://x" does not start with unix://', ACC_ADDR),
    ("crisensor:\n  poll_interval: [1]\n", 2, "crisensor.poll_interval", "[1] is not a Go duration", ACC_POLL),
    ("crisensor:\n  poll_interval: {a: 1}\n", 2, "crisensor.poll_interval", '{"a": 1} is not a Go duration', ACC_POLL),
    ("crisensor:\n  poll_interval: true\n", 2, "crisensor.poll_interval", "true is not a Go duration", ACC_POLL),
    ("crisensor:\n  poll_interval: 2h\n", 2, "crisensor.poll_interval", '"2h" is not >= 10ms and <= 1h', ACC_POLL),
    ("crisensor:\n  poll_interval: 1h0m0.000000001s\n", 2, "crisensor.poll_interval",
     '"1h0m0.000000001s" is not >= 10ms and <= 1h', ACC_POLL),
    ("crisensor:\n  poll_interval: 0\n", 2, "crisensor.poll_interval", '"0" is not >= 10ms and <= 1h', ACC_POLL),
    ("crisensor:\n  poll_interval: fast\n", 2, "crisensor.poll_interval",
     '"fast" is not a Go duration: expected a number followed by a unit', ACC_POLL),
    ("crisensor:\n  rpc_timeout: 61m\n", 2, "crisensor.rpc_timeout", '"61m" is not > 0 and <= 1h', ACC_RPC),
    ("crisensor:\n  resync_interval: 25h\n", 2, "crisensor.resync_interval", '"25h" is not > 0 and <= 24h',
     "a Go duration > 0 and <= 24h, e.g. 150ms, 1s, 1m30s"),
    ("crisensor:\n  handshake: sometimes\n", 2, "crisensor.handshake",
     '"sometimes" is not one of require | off | auto', "require | off | auto"),
    ("crisensor:\n  events: 5\n", 2, "crisensor.events", '"5" is not one of auto | on | off', "auto | on | off"),
    ("crisensor:\n  max_recv_bytes: 2147483648\n", 2, "crisensor.max_recv_bytes",
     "2147483648 is not a positive integer <= 2147483647", ACC_BYTES),
    ("crisensor:\n  max_recv_bytes: 0\n", 2, "crisensor.max_recv_bytes", "0 is not a positive integer <= 2147483647",
     ACC_BYTES),
    ("crisensor: [\n", 2, None, "invalid YAML: expected the node content, but found '<stream end>'",
     'YAML such as "crisensor:" followed by indented lines like "poll_interval: 250ms" (spaces, no tabs)'),
    ("crisensor:\n  [a]: 1\n", 2, "crisensor", "a key is a list, not a name", "plain names such as poll_interval"),
    ("? [a]\n: 1\n", 1, None, "a key is a list, not a name", "plain names such as poll_interval"),
    ("? {a: 1}\n: 1\n", 1, None, "a key is a mapping, not a name", "plain names such as poll_interval"),
    ("crisensor:\n  ~: 1\n", 2, "crisensor", "a key is a scalar, not a name", "plain names such as poll_interval"),
    ("crisensor:\n  pol_interval: 1s\n", 2, "crisensor.pol_interval", "unknown key", KEYS),
    ("crisensor.pol_interval: 1s\n", 1, "crisensor.pol_interval", "unknown key", KEYS),
    ("crisensor:\n  poll_interval: 1s\n  poll_interval: 2s\n", 3, "crisensor.poll_interval",
     "given twice (lines 2 and 3)", "each key once"),
    ("crisensor:\n  poll_interval: 1s\ncrisensor.Poll_Interval: 2s\n", 3, "crisensor.poll_interval",
     "given twice (lines 2 and 3)", "each key once"),
    ("crisensor: 5\n", 1, "crisensor", "is a scalar, not a mapping", f"a mapping of {KEYS}"),
    ("crisensor:\n  - a\n", 2, "crisensor", "is a list, not a mapping", f"a mapping of {KEYS}"),
    ("crisenser:\n  enabled: true\n", 1, "crisenser", 'unknown key (did you mean "crisensor"?)', NEAR),
    ("crisenser.enabled: true\n", 1, "crisenser.enabled", 'unknown key (did you mean "crisensor"?)', NEAR),
    ("c.risensor: 1\n", 1, "c.risensor", 'unknown key (did you mean "crisensor"?)', NEAR),
    # a similarity of exactly 0.8 is a near miss (2 * 8 matching characters / 20)
    ("crisenXXXor: 1\n", 1, "crisenxxxor", 'unknown key (did you mean "crisensor"?)', NEAR),
    ("- 1\n", 1, None, "the top level is a list, not a mapping", "a mapping with a crisensor: section"),
    ("crisensor:\n  poll_interval: &a 1s\n  rpc_timeout: *a\n", 3, None,
     "YAML alias *a refused: these files have no need for aliases, and expanding them is how alias bombs eat memory",
     "the value written out in full (no &anchor / *alias)"),
]


@pytest.mark.parametrize(("text", "line", "key", "problem", "accepted"), SENSOR_ERRORS,
                         ids=[t[:40] for t, *_ in SENSOR_ERRORS])
def test_sensor_file_errors_are_exact(tmp_path: Path, text: str, line: int, key: str | None, problem: str,
                                      accepted: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), None, {}, {})
    check(info.value, str(path), line, key, problem, accepted)


ANALYTICS_ERRORS = [
    ("event_reorder_window: 2h\n", 1, "event_reorder_window", '"2h" is not >= 0 and <= 1h', ACC_WINDOW),
    ("event_reorder_window: -1ms\n", 1, "event_reorder_window", '"-1ms" is not >= 0 and <= 1h', ACC_WINDOW),
    ("event_reorder_window: fast\n", 1, "event_reorder_window",
     '"fast" is not a Go duration: expected a number followed by a unit', ACC_WINDOW),
    ("event_reorder_window: [1]\n", 1, "event_reorder_window", "[1] is not a Go duration", ACC_WINDOW),
    ("- 1\n", 1, None, "the top level is a list, not a mapping", "a mapping such as event_reorder_window: 25ms"),
    ("event_reorder_window: 1ms\nevent_reorder_window: 2ms\n", 2, "event_reorder_window",
     "given twice (lines 1 and 2)", "each key once"),
    ("event_reorder_window: 1ms\nEvent_Reorder_Window:\n", 2, "event_reorder_window",
     "given twice (lines 1 and 2)", "each key once"),
    ("event_reorder_windw: 1ms\n", 1, "event_reorder_windw", 'unknown key (did you mean "event_reorder_window"?)',
     "event_reorder_window"),
    # exactly 0.8 similar (2 * 16 / 40)
    ("event_reorXXXXwindow: 1ms\n", 1, "event_reorxxxxwindow",
     'unknown key (did you mean "event_reorder_window"?)', "event_reorder_window"),
    ("? [a]\n: 1\n", 1, None, "a key is a list, not a name", "plain names such as poll_interval"),
    ("event_reorder_window: 2001-02-30\n", 1, None, "invalid YAML value: day is out of range for month", VALUE),
]


@pytest.mark.parametrize(("text", "line", "key", "problem", "accepted"), ANALYTICS_ERRORS,
                         ids=[t[:40] for t, *_ in ANALYTICS_ERRORS])
def test_analytics_file_errors_are_exact(tmp_path: Path, text: str, line: int, key: str | None, problem: str,
                                         accepted: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(None, str(path), {}, {})
    check(info.value, str(path), line, key, problem, accepted)


OVERRIDE_ERRORS = [
    ({"poll_interval": 5}, "crisensor.poll_interval", '"5" is not a Go duration: missing unit', ACC_POLL),
    ({"handshake": True}, "crisensor.handshake", '"on" is not one of require | off | auto', "require | off | auto"),
    ({"bogus": 1}, "bogus", "unknown key", KEYS + ", event_reorder_window"),
    ({"event_reorder_window": "fast"}, "event_reorder_window",
     '"fast" is not a Go duration: expected a number followed by a unit', ACC_WINDOW),
    ({"crisensor.enabled": True}, "crisensor.addr", '"" is not allowed when crisensor.enabled is true',
     ACC_ADDR + " or unix:///var/run/containerd/containerd.sock"),
    ({"enabled": True}, "crisensor.addr", '"" is not allowed when crisensor.enabled is true',
     ACC_ADDR + " or unix:///var/run/containerd/containerd.sock"),
]


@pytest.mark.parametrize(("overrides", "key", "problem", "accepted"), OVERRIDE_ERRORS,
                         ids=[str(o) for o, *_ in OVERRIDE_ERRORS])
def test_override_errors_are_exact(overrides: dict, key: str, problem: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, None, overrides, {})
    check(info.value, "override", None, key, problem, accepted)


def test_missing_addr_points_at_what_made_it_missing(tmp_path: Path) -> None:
    accepted = ACC_ADDR + " or unix:///var/run/containerd/containerd.sock"
    problem = '"" is not allowed when crisensor.enabled is true'
    path = tmp_path / "s.yaml"
    # the file enables, the override empties the address: the override is to blame
    path.write_text("crisensor:\n  enabled: true\n  addr: unix:///x.sock\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), None, {"crisensor.addr": ""}, {})
    check(info.value, "override", None, "crisensor.addr", problem, accepted)
    # the file has an empty address, the override enables: the address line is to blame
    path.write_text("crisensor:\n  addr: ''\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), None, {"enabled": "yes"}, {})
    check(info.value, str(path), 2, "crisensor.addr", problem, accepted)


def test_environment_error_is_exact() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, None, {}, {"GRPC_GO_REQUIRE_HANDSHAKE": "sometimes"})
    check(info.value, "environment", None, "GRPC_GO_REQUIRE_HANDSHAKE", '"sometimes" is not a known value',
          "off (or on, hybrid)")


@pytest.mark.parametrize("which", ["sensor", "analytics"])
def test_file_errors_are_exact(tmp_path: Path, which: str) -> None:
    missing = str(tmp_path / "missing.yaml")
    args = (missing, None) if which == "sensor" else (None, missing)
    with pytest.raises(ConfigError) as info:
        load_config(*args, {}, {})
    check(info.value, missing, None, None, f"no such file (the {which} config file was given explicitly)",
          "an existing file, or none for defaults")
    args = (str(tmp_path), None) if which == "sensor" else (None, str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config(*args, {}, {})
    check(info.value, str(tmp_path), None, None, "is a directory, not a regular file",
          f"a regular {which} config file of at most 1 MiB")


# ---- values that are accepted ---------------------------------------------------------------------


@pytest.mark.parametrize(("addr", "want"), [
    ("", ""), ("  ", ""), ("unix:///X", "unix:///X"), ("unix:///XX.sock", "unix:///XX.sock"),
    ("unix://X/", "unix:///X"), (" unix:///a//b/../c.sock ", "unix:///a/c.sock"),
])
def test_addresses(tmp_path: Path, addr: str, want: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"crisensor:\n  addr: '{addr}'\n")
    cfg = load_config(str(path), None, {}, {})
    assert cfg.addr == want and cfg.socket_path == want.removeprefix("unix://")


@pytest.mark.parametrize(("text", "field", "want"), [
    ("crisensor:\n  poll_interval: 1h\n", "poll_interval_ns", 3_600_000_000_000),
    ("crisensor:\n  poll_interval: 10ms\n", "poll_interval_ns", 10_000_000),
    ("crisensor:\n  resync_interval: 24h\n", "resync_interval_ns", 86_400_000_000_000),
    ("crisensor:\n  max_recv_bytes: 1\n", "max_recv_bytes", 1),
    ("crisensor:\n  max_recv_bytes: 2147483647\n", "max_recv_bytes", 2147483647),
    ("crisensor:\n  handshake: ' Auto '\n", "handshake", "auto"),
    ("crisensor:\n  events: OFF\n", "events", "off"),
    ("crisensor:\n  events: on\n", "events", "on"),
    ("crisensor:\ncrisensor.poll_interval: 1s\n", "poll_interval_ns", 1_000_000_000),
])
def test_values_at_the_edges(tmp_path: Path, text: str, field: str, want: object) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert getattr(load_config(str(path), None, {}, {}), field) == want


def test_analytics_values_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("event_reorder_window: 1h\n")
    cfg = load_config(None, str(path), {"events": False}, {})
    assert (cfg.event_reorder_window_ns, cfg.analytics_path, cfg.sensor_path) == (3_600_000_000_000, str(path), None)
    assert cfg.events == "off"
    assert load_config(None, str(path), {"event_reorder_window": "0"}, {}).event_reorder_window_ns == 0


def test_handshake_source_is_only_set_by_handshake(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("crisensor:\n  poll_interval: 1s\n")
    assert load_config(str(path), None, {}, {}).handshake_source == "default"
    path.write_text("crisensor:\n  handshake: auto\n")
    assert load_config(str(path), None, {}, {}).handshake_source == str(path)
    assert load_config(str(path), None, {"handshake": "off"}, {}).handshake_source == "override"


def test_environment_is_read_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_GO_REQUIRE_HANDSHAKE", "off")
    cfg = load_config(None, None, {})
    assert (cfg.handshake, cfg.handshake_source) == ("off", "env GRPC_GO_REQUIRE_HANDSHAKE")


def test_parser_factories_build_the_table_parsers() -> None:
    """The key table is built at import; its factories must work when called again."""
    parse = config_module._duration_parser(1, "1h")
    assert parse("2s", "2s") == 2_000_000_000
    with pytest.raises(config_module._Bad, match=r'^"0" is not > 0 and <= 1h$'):
        parse(0, "0")
    enum = config_module._enum_parser(("a", "b"))
    assert enum("B", " B ") == "b"
    with pytest.raises(config_module._Bad, match=r'^"c" is not one of a \| b$'):
        enum("c", "c")
