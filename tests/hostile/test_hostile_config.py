"""Config files that attack the loader: bombs through the real CLI, and fuzzing of the loaders.

Each bomb is refused by ``crisensor run`` (as ``--config`` and as ``--analytics-config``) with exit
2, one stderr line naming the file, no traceback, and within a generous time bound (the issue asks
for "within a second"; the bound is 5 s for a loaded CI machine, the measured time is printed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from sensor.config import CONFIG_LIMITS, ConfigError, SensorConfig, load_config
from sensor.duration import MAX_TEXT, DurationError, parse_duration
from sensor.yamlfile import Limits, YamlFileError, compose, construct, read_text

BOUND_S = 5.0


def alias_bomb() -> str:
    """Nine levels of anchors, each level aliasing the one below nine times (9**9 leaves when expanded)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BOMBS: dict[str, tuple[str, str]] = {
    # name: (file content or a special kind, what the one line must say)
    "alias": (alias_bomb(), "alias"),
    "deep_flow": ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 32 levels"),
    "deep_block": ("".join(" " * i + f"k{i}:\n" for i in range(200)), "nested more than 32 levels"),
    "duration_5000_digits": ("", "too long (5002 characters; at most 64)"),
    "big_2mib": ("# padding\n" * (2 * 1024 * 1024 // 10 + 1), "more than 1 MiB"),
    "dev_zero": ("/dev/zero", "is a character device, not a regular file"),
    "fifo": ("", "is a FIFO (named pipe), not a regular file"),
}


def make_bomb(tmp_path: Path, name: str, analytics: bool) -> str:
    content, _ = BOMBS[name]
    if name == "dev_zero":
        return "/dev/zero"
    path = tmp_path / f"{name}.yaml"
    if name == "fifo":
        os.mkfifo(path)
    elif name == "duration_5000_digits":
        value = "9" * 5000 + "ms"
        path.write_text(f"event_reorder_window: {value}\n" if analytics else f"crisensor:\n  poll_interval: {value}\n")
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize("analytics", [False, True], ids=["config", "analytics-config"])
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_cli_refuses_bomb_in_one_line(tmp_path: Path, name: str, analytics: bool) -> None:
    path = make_bomb(tmp_path, name, analytics)
    args = ["--analytics-config", path] if analytics else ["--config", path]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sensor.cli", "run", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    print(f"{name} ({'analytics' if analytics else 'config'}): exit {proc.returncode} in {took:.2f} s: {proc.stderr!r}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert path in lines[0] and BOMBS[name][1] in lines[0]
    assert took < BOUND_S


# ---- the reader ------------------------------------------------------------------------------------


def test_read_text_refuses_a_file_that_is_too_big(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(b"a" * 101)
    assert read_text(str(path), Limits(max_bytes=101)) == "a" * 101
    with pytest.raises(YamlFileError, match="is 101 bytes, more than 100 bytes"):
        read_text(str(path), Limits(max_bytes=100))


def test_read_text_missing_and_nul(tmp_path: Path) -> None:
    with pytest.raises(YamlFileError, match="no such file") as info:
        read_text(str(tmp_path / "nope"), CONFIG_LIMITS)
    assert info.value.missing
    with pytest.raises(YamlFileError, match="NUL byte") as info:
        read_text("a\x00b", CONFIG_LIMITS)
    assert not info.value.missing


def test_read_text_refuses_a_socket_and_a_directory(tmp_path: Path) -> None:
    import socket

    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(YamlFileError, match="is a socket, not a regular file"):
            read_text(str(sock_path), CONFIG_LIMITS)
    with pytest.raises(YamlFileError, match="is a directory, not a regular file"):
        read_text(str(tmp_path), CONFIG_LIMITS)


def test_read_text_unreadable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "f.yaml"
    path.write_text("a: 1\n")
    path.chmod(0)
    with pytest.raises(YamlFileError, match="cannot read"):
        read_text(str(path), CONFIG_LIMITS)


# ---- the composer ----------------------------------------------------------------------------------


def _shape(node: yaml.Node | None) -> object:
    """A node tree as comparable plain data: (tag, value or children, line)."""
    if node is None:
        return None
    if isinstance(node, yaml.ScalarNode):
        return (node.tag, node.value, node.start_mark.line)
    if isinstance(node, yaml.SequenceNode):
        return (node.tag, [_shape(n) for n in node.value], node.start_mark.line)
    return (node.tag, [(_shape(k), _shape(v)) for k, v in node.value], node.start_mark.line)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                     st.floats(allow_nan=False), st.text(max_size=20))
_DOCS = st.recursive(_SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                         max_size=4), max_leaves=30)


@given(_DOCS, st.booleans())
def test_compose_builds_what_pyyaml_composes(doc: object, flow: bool) -> None:
    """Without aliases, the event walker builds the very tree PyYAML's recursive composer builds."""
    text = yaml.safe_dump({"root": doc}, default_flow_style=flow, allow_unicode=True)
    ours = compose(text, Limits(max_bytes=10 * 1024 * 1024, max_nodes=10**6))
    assert _shape(ours) == _shape(yaml.compose(text, Loader=yaml.SafeLoader))
    assert construct(ours) == yaml.safe_load(text)


def test_compose_limits_are_exact() -> None:
    deep = Limits(max_bytes=1000, max_depth=3, max_nodes=100)
    assert compose("[[[1]]]", deep) is not None  # 3 collections deep is allowed
    with pytest.raises(YamlFileError, match="nested more than 3 levels") as info:
        compose("a:\n  b:\n    - [1]\n", deep)
    assert info.value.line == 3
    limits = Limits(max_bytes=1000, max_depth=3, max_nodes=5)
    assert compose("[1, 2, 3, 4]", limits) is not None  # 5 nodes: the list and four scalars
    with pytest.raises(YamlFileError, match="more than 5 YAML nodes"):
        compose("[1, 2, 3, 4, 5]", limits)
    with pytest.raises(YamlFileError, match="more than 1000 bytes"):
        compose("#" * 1001, limits)
    assert compose("#" * 1000, limits) is None
    assert compose("", limits) is None


def test_compose_refuses_aliases_but_not_anchors() -> None:
    assert construct(compose("a: &x 1\nb: 2\n", CONFIG_LIMITS)) == {"a": 1, "b": 2}
    with pytest.raises(YamlFileError, match=r"alias \*x refused") as info:
        compose("a: &x 1\nb: *x\n", CONFIG_LIMITS)
    assert info.value.line == 2


def test_compose_refuses_a_second_document() -> None:
    with pytest.raises(YamlFileError, match="more than one YAML document") as info:
        compose("a: 1\n---\nb: 2\n", CONFIG_LIMITS)
    assert info.value.line == 2
    assert construct(compose("---\na: 1\n...\n", CONFIG_LIMITS)) == {"a": 1}


@pytest.mark.parametrize(("text", "problem"), [
    ("a: " + "9" * 5000, "a number of more than 4300 digits"),
    ("a: 2001-02-30", "day is out of range"),
    ("a: !!python/object:os.system x", "could not determine a constructor"),
])
def test_construct_reports_values_it_cannot_build(text: str, problem: str) -> None:
    with pytest.raises(YamlFileError, match=problem) as info:
        construct(compose(text, CONFIG_LIMITS))
    assert info.value.line == 1


# ---- fuzzing the loaders -----------------------------------------------------------------------------


def _load(tmp_path: Path, sensor: str | None = None, analytics: str | None = None) -> SensorConfig | ConfigError:
    paths = []
    for name, text in (("s.yaml", sensor), ("a.yaml", analytics)):
        if text is None:
            paths.append(str(tmp_path / "absent" / name))
            continue
        p = tmp_path / name
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        paths.append(str(p))
    try:
        return load_config(paths[0] if sensor is not None else None, paths[1] if analytics is not None else None,
                           {}, {})
    except ConfigError as err:
        text = str(err)
        assert "\n" not in text and text.startswith(err.file)
        return err


_KEYS = st.sampled_from(["crisensor", "enabled", "addr", "poll_interval", "handshake", "events", "max_recv_bytes",
                         "rpc_timeout", "resync_interval", "event_reorder_window", "crisensor.poll_interval",
                         "crisenser", "other"])
_VALUES = st.one_of(_SCALARS, st.sampled_from(["250ms", "1h", "0", "1.5s", "unix:///x.sock", "auto", "off", "9" * 70,
                                               "0x" + "f" * 50, "2001-02-30", "1e999"]))
_CONFIG_DOCS = st.recursive(_VALUES, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_KEYS, kids,
                                                                                               max_size=4),
                            max_leaves=20)
_YAMLISH = st.text(alphabet=st.sampled_from([*list("ab: -[]{},&*!|>'\"#\n\t0129.x%@`\\"), "\x00", "\ufeff", "é"]),
                   max_size=120)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@given(text=_YAMLISH)
@example(text="a: &x 1\nb: *x\n")
@example(text="\x00")
@example(text="[" * 40)
@example(text="crisensor: {max_recv_bytes: 0x" + "f" * 40 + "}")
@example(text="crisensor:\n  poll_interval: [1, 2]\n")
def test_yamlish_text_gives_a_config_or_one_error(fuzz_dir: Path, text: str) -> None:
    for sensor, analytics in ((text, None), (None, text)):
        got = _load(fuzz_dir, sensor, analytics)
        assert isinstance(got, SensorConfig | ConfigError)


@given(doc=_CONFIG_DOCS)
@example(doc={"crisensor": {"max_recv_bytes": 2**31}})
@example(doc={"crisensor": {"poll_interval": 10**5000}})
def test_structured_documents_give_a_config_or_one_error(fuzz_dir: Path, doc: object) -> None:
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except ValueError:  # an int too long to print: write the digits ourselves
        text = "crisensor:\n  poll_interval: " + "9" * 5000 + "\n"
    for sensor, analytics in ((text, None), (None, text)):
        got = _load(fuzz_dir, sensor, analytics)
        assert isinstance(got, SensorConfig | ConfigError)


@given(st.text(max_size=200))
@example("9" * 5000 + "s")
@example("." * 100)
@example("1" * 64 + "h")
def test_any_string_is_a_duration_or_a_duration_error(text: str) -> None:
    try:
        ns = parse_duration(text)
    except DurationError as err:
        assert "\n" not in str(err) and err.text == text
        assert len(str(err)) < 400
    else:
        assert len(text) <= MAX_TEXT
        assert -(2**63) <= ns < 2**63
