"""sensor.yamlfile: the bounded reader and the event-walking composer, unit by unit.

(The same refusals through the real CLIs, and fuzzing of the loaders: tests/hostile/test_hostile_config.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from sensor.config import CONFIG_LIMITS
from sensor.yamlfile import Limits, YamlFileError, compose, construct, read_text

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


