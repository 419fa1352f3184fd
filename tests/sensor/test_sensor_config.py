"""sensor.config: every default, every error (one line naming file, key, value, accepted form)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import sensor.config as config_module
from sensor.config import ConfigError, SensorConfig, load_config


@pytest.fixture(autouse=True)
def no_system_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default paths point into an empty temp dir, so tests never read /etc."""
    monkeypatch.setattr(config_module, "DEFAULT_SENSOR_PATH", str(tmp_path / "etc" / "capsule8-sensor.yaml"))
    monkeypatch.setattr(config_module, "DEFAULT_ANALYTICS_PATH", str(tmp_path / "etc" / "capsule8-analytics.yaml"))


def write(tmp_path: Path, text: str, name: str = "capsule8-sensor.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def load(tmp_path: Path, sensor: str | None = None, analytics: str | None = None, overrides=None, env=None):
    s = write(tmp_path, sensor) if sensor is not None else None
    a = write(tmp_path, analytics, "capsule8-analytics.yaml") if analytics is not None else None
    return load_config(s, a, overrides or {}, env or {})


def error(tmp_path: Path, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    assert isinstance(info.value, ValueError)
    return info.value


ENABLED = "crisensor:\n  enabled: true\n  addr: unix:///run/crio/crio.sock\n"


# --- defaults --------------------------------------------------------------------------------------


def test_missing_default_files_mean_defaults() -> None:
    cfg = load_config(None, None, {}, {})
    assert cfg == SensorConfig()
    assert cfg.enabled is False
    assert cfg.addr == "" and cfg.socket_path == ""
    assert cfg.poll_interval_ns == 250_000_000
    assert cfg.handshake == "require" and cfg.handshake_source == "default"
    assert cfg.events == "auto"
    assert cfg.max_recv_bytes == 16 * 1024 * 1024
    assert cfg.rpc_timeout_ns == 2_000_000_000
    assert cfg.resync_interval_ns == 10_000_000_000
    assert cfg.event_reorder_window_ns == 25_000_000
    assert cfg.sensor_path is None and cfg.analytics_path is None


def test_default_path_is_read_when_present(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "capsule8-sensor.yaml").write_text(ENABLED)
    (etc / "capsule8-analytics.yaml").write_text("event_reorder_window: 270ms\n")
    cfg = load_config(None, None, {}, {})
    assert cfg.enabled and cfg.socket_path == "/run/crio/crio.sock"
    assert cfg.event_reorder_window_ns == 270_000_000
    assert cfg.sensor_path == str(etc / "capsule8-sensor.yaml")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "crisensor:\n", "other_component:\n  x: 1\n"])
def test_empty_files_and_sections_mean_defaults(tmp_path: Path, text: str) -> None:
    cfg = load(tmp_path, sensor=text, analytics="")
    assert dataclasses.replace(cfg, sensor_path=None, analytics_path=None) == SensorConfig()


def test_empty_value_takes_the_default(tmp_path: Path) -> None:
    cfg = load(tmp_path, sensor="crisensor:\n  poll_interval:\n  events:\n")
    assert cfg.poll_interval_ns == 250_000_000 and cfg.events == "auto"


def test_the_seed_example(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        sensor="crisensor:\n    enabled: true\n    addr: unix://var/run/crio/crio.sock\n    poll_interval: 250ms\n",
        analytics="event_reorder_window: 270ms\n",
    )
    assert cfg.enabled is True
    assert cfg.addr == "unix:///var/run/crio/crio.sock"
    assert cfg.socket_path == "/var/run/crio/crio.sock"
    assert cfg.poll_interval_ns == 250_000_000
    assert cfg.event_reorder_window_ns == 270_000_000


def test_every_key(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        sensor=(
            "crisensor:\n  enabled: true\n  addr: unix:///run/containerd/containerd.sock\n"
            "  poll_interval: 1m30s\n  handshake: auto\n  events: off\n  max_recv_bytes: 33554432\n"
            "  rpc_timeout: 500ms\n  resync_interval: 1m\n"
        ),
    )
    assert cfg.socket_path == "/run/containerd/containerd.sock"
    assert cfg.poll_interval_ns == 90_000_000_000
    assert cfg.handshake == "auto" and cfg.events == "off"
    assert cfg.max_recv_bytes == 33554432
    assert cfg.rpc_timeout_ns == 500_000_000 and cfg.resync_interval_ns == 60_000_000_000


@pytest.mark.parametrize(
    ("addr", "path"),
    [
        ("unix:///var/run/crio/crio.sock", "/var/run/crio/crio.sock"),
        ("unix://var/run/crio/crio.sock", "/var/run/crio/crio.sock"),  # the seed's spelling
        ("unix:////run//x.sock", "/run/x.sock"),
        ("unix://./run/../x.sock", "/x.sock"),
    ],
)
def test_addr_is_resolved_to_an_absolute_path(tmp_path: Path, addr: str, path: str) -> None:
    cfg = load(tmp_path, sensor=f"crisensor:\n  enabled: true\n  addr: {addr}\n")
    assert cfg.socket_path == path and cfg.addr == "unix://" + path


def test_bare_on_off_mean_what_was_written(tmp_path: Path) -> None:
    # YAML 1.1 reads bare on/off as booleans; the modes are what the user wrote.
    cfg = load(tmp_path, sensor="crisensor:\n  handshake: off\n  events: on\n")
    assert cfg.handshake == "off" and cfg.events == "on"
    assert cfg.handshake_source.endswith("capsule8-sensor.yaml")


@pytest.mark.parametrize("word", ["true", "True", "yes", "on", '"true"'])
def test_enabled_accepts_yaml_booleans(tmp_path: Path, word: str) -> None:
    assert load(tmp_path, sensor=f"crisensor:\n  enabled: {word}\n  addr: unix:///x.sock\n").enabled is True


def test_dotted_keys_and_case_like_viper(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, sensor="crisensor.enabled: true\nCRISensor.Addr: unix:///x.sock\ncrisensor.poll_interval: 1s\n"
    )
    assert cfg.enabled and cfg.socket_path == "/x.sock" and cfg.poll_interval_ns == 1_000_000_000


def test_other_top_level_sections_are_ignored(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, sensor="telemetry:\n  enabled: false\n" + ENABLED, analytics="alerts: [a]\nevent_reorder_window: 0\n"
    )
    assert cfg.enabled and cfg.event_reorder_window_ns == 0


def test_env_off_forces_handshake_off(tmp_path: Path) -> None:
    cfg = load(tmp_path, sensor=ENABLED + "  handshake: require\n", env={"GRPC_GO_REQUIRE_HANDSHAKE": "off"})
    assert cfg.handshake == "off" and cfg.handshake_source == "env GRPC_GO_REQUIRE_HANDSHAKE"


@pytest.mark.parametrize(("value", "mode"), [("OFF", "off"), ("on", "require"), ("hybrid", "auto"), ("", "require")])
def test_env_values(tmp_path: Path, value: str, mode: str) -> None:
    assert load(tmp_path, sensor=ENABLED, env={"GRPC_GO_REQUIRE_HANDSHAKE": value}).handshake == mode


def test_overrides_win_over_files_and_env(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        sensor=ENABLED,
        overrides={"crisensor.poll_interval": "100ms", "handshake": "auto", "event_reorder_window": "50ms"},
        env={"GRPC_GO_REQUIRE_HANDSHAKE": "off"},
    )
    assert cfg.poll_interval_ns == 100_000_000
    assert cfg.handshake == "auto" and cfg.handshake_source == "override"
    assert cfg.event_reorder_window_ns == 50_000_000


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SensorConfig().enabled = True  # type: ignore[misc]


# --- errors ----------------------------------------------------------------------------------------


def test_the_documented_example(tmp_path: Path) -> None:
    err = error(tmp_path, sensor=ENABLED + "  poll_interval: fast\n")
    assert str(err).startswith(str(tmp_path / "capsule8-sensor.yaml") + ":4: crisensor.poll_interval: ")
    assert '"fast" is not a Go duration' in str(err)
    assert str(err).endswith("(accepted: a Go duration >= 10ms and <= 1h, e.g. 150ms, 1s, 1m30s)")
    assert (err.key, err.line) == ("crisensor.poll_interval", 4)


@pytest.mark.parametrize(
    ("line", "key", "fragment"),
    [
        ("poll_interval: 0", "crisensor.poll_interval", '"0" is not >= 10ms'),
        ("poll_interval: -1s", "crisensor.poll_interval", '"-1s" is not >= 10ms'),
        ("poll_interval: 9999999ns", "crisensor.poll_interval", '"9999999ns" is not >= 10ms'),
        ("poll_interval: 250", "crisensor.poll_interval", "missing unit"),
        ("poll_interval: 1.5", "crisensor.poll_interval", "missing unit"),
        ("poll_interval: true", "crisensor.poll_interval", "not a Go duration"),
        ("poll_interval: [1s]", "crisensor.poll_interval", "not a Go duration"),
        ("rpc_timeout: 0s", "crisensor.rpc_timeout", "is not > 0"),
        ("rpc_timeout: soon", "crisensor.rpc_timeout", "not a Go duration"),
        ("resync_interval: 10", "crisensor.resync_interval", "missing unit"),
        ("handshake: maybe", "crisensor.handshake", '"maybe" is not one of require | off | auto'),
        ("events: yes", "crisensor.events", '"yes" is not one of auto | on | off'),
        ("events: 3", "crisensor.events", "is not one of"),
        ("max_recv_bytes: 16MiB", "crisensor.max_recv_bytes", '"16MiB" is not a positive integer'),
        ("max_recv_bytes: 0", "crisensor.max_recv_bytes", "0 is not a positive integer"),
        ("max_recv_bytes: true", "crisensor.max_recv_bytes", "true is not a positive integer"),
        ("enabled: maybe", "crisensor.enabled", '"maybe" is not a boolean'),
        ("enabled: [true]", "crisensor.enabled", "is not a boolean"),
        ("pol_interval: 1s", "crisensor.pol_interval", "unknown key"),
        ("addr: tcp://127.0.0.1:10010", "crisensor.addr", '"tcp://127.0.0.1:10010" does not start with unix://'),
        ("addr: /var/run/crio/crio.sock", "crisensor.addr", "does not start with unix://"),
        ("addr: unix://", "crisensor.addr", "names no socket path"),
        ("addr: 42", "crisensor.addr", "42 is not a string"),
    ],
)
def test_bad_values(tmp_path: Path, line: str, key: str, fragment: str) -> None:
    err = error(tmp_path, sensor=f"crisensor:\n  # a comment\n  {line}\n")
    assert err.key == key and err.line == 3
    assert fragment in str(err)
    assert f":3: {key}: " in str(err)
    assert "(accepted: " in str(err)


def test_unknown_key_names_the_accepted_keys(tmp_path: Path) -> None:
    err = error(tmp_path, sensor="crisensor:\n  colour: blue\n")
    assert "crisensor.colour: unknown key" in str(err)
    for key in (
        "enabled",
        "addr",
        "poll_interval",
        "handshake",
        "events",
        "max_recv_bytes",
        "rpc_timeout",
        "resync_interval",
    ):
        assert f"crisensor.{key}" in str(err)


def test_unknown_dotted_key(tmp_path: Path) -> None:
    assert "crisensor.colour: unknown key" in str(error(tmp_path, sensor="crisensor.colour: blue\n"))


def test_near_miss_of_the_section_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, sensor="crisenser:\n  enabled: true\n")
    assert 'crisenser: unknown key (did you mean "crisensor"?)' in str(err)


def test_near_miss_in_analytics_file(tmp_path: Path) -> None:
    err = error(tmp_path, analytics="event_reorder_windw: 30ms\n")
    assert "capsule8-analytics.yaml:1: event_reorder_windw: unknown key" in str(err)


def test_duplicate_key(tmp_path: Path) -> None:
    err = error(tmp_path, sensor="crisensor:\n  poll_interval: 1s\ncrisensor.poll_interval: 2s\n")
    assert "given twice (lines 2 and 3)" in str(err)


def test_addr_required_when_enabled(tmp_path: Path) -> None:
    err = error(tmp_path, sensor="crisensor:\n  enabled: true\n")
    assert err.key == "crisensor.addr" and err.line == 2
    assert "when crisensor.enabled is true" in str(err) and "unix:///var/run/crio/crio.sock" in str(err)


def test_invalid_yaml(tmp_path: Path) -> None:
    err = error(tmp_path, sensor="crisensor:\n  enabled: true\n   addr: [x\n")
    assert "invalid YAML" in str(err) and err.line is not None
    assert "(accepted: YAML such as" in str(err)


def test_every_file_error_states_the_accepted_form(tmp_path: Path) -> None:
    for kwargs in ({"sensor": "crisensor: [\n"}, {"analytics": "a: [\n"}, {"sensor": "- 1\n"}):
        assert "(accepted: " in str(error(tmp_path, **kwargs))
    for path in (str(tmp_path / "nope.yaml"), str(tmp_path)):
        with pytest.raises(ConfigError, match=r"\(accepted: "):
            load_config(path, None, {}, {})


def test_tabs_are_invalid_yaml(tmp_path: Path) -> None:
    assert "invalid YAML" in str(error(tmp_path, sensor="crisensor:\n\tenabled: true\n"))


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just words\n", "a scalar")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    err = error(tmp_path, sensor=text)
    assert f"the top level is {kind}, not a mapping" in str(err) and err.line == 1


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    err = error(tmp_path, sensor="crisensor: true\n")
    assert "crisensor: is a scalar, not a mapping" in str(err)


def test_analytics_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "not a mapping" in str(error(tmp_path, analytics="[1, 2]\n"))


def test_bad_reorder_window(tmp_path: Path) -> None:
    err = error(tmp_path, analytics="event_reorder_window: -5ms\n")
    assert 'event_reorder_window: "-5ms" is not >= 0' in str(err) and err.line == 1


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file") as info:
        load_config(str(tmp_path / "nope.yaml"), None, {}, {})
    assert str(tmp_path / "nope.yaml") in str(info.value)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(None, str(tmp_path / "nope.yaml"), {}, {})


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path), None, {}, {})


def test_non_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "capsule8-sensor.yaml"
    path.write_bytes(b"crisensor:\n  addr: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(path), None, {}, {})


def test_bad_env_value(tmp_path: Path) -> None:
    err = error(tmp_path, sensor=ENABLED, env={"GRPC_GO_REQUIRE_HANDSHAKE": "sometimes"})
    assert str(err).startswith('environment: GRPC_GO_REQUIRE_HANDSHAKE: "sometimes" is not a known value')


def test_bad_override(tmp_path: Path) -> None:
    assert str(error(tmp_path, overrides={"poll_interval": "fast"})).startswith(
        'override: crisensor.poll_interval: "fast" is not a Go duration'
    )
    assert "override: colour: unknown key" in str(error(tmp_path, overrides={"colour": "x"}))
    assert "override: crisensor.addr" in str(error(tmp_path, overrides={"enabled": "true"}))
