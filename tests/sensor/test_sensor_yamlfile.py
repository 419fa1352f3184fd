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
from sensor.yamlfile import Limits, YamlFileError, compose, construct, read_text, show

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




# ---- exact messages and edges (they also kill the mutants of `make mutate`) --------------------------


def test_size_text() -> None:
    assert Limits(max_bytes=1024 * 1024).size_text() == "1 MiB"
    assert Limits(max_bytes=4 * 1024 * 1024).size_text() == "4 MiB"
    assert Limits(max_bytes=1024 * 1024 + 1).size_text() == "1048577 bytes"
    assert (CONFIG_LIMITS.max_bytes, CONFIG_LIMITS.max_depth, CONFIG_LIMITS.max_nodes) == (1024 * 1024, 32, 10_000)
    assert (Limits().max_bytes, Limits().max_depth, Limits().max_nodes) == (1024 * 1024, 32, 10_000)


def test_show() -> None:
    assert [show(v) for v in (None, True, False, 5, -5, "a b", [1, "x"], {"k": None})] == \
        ["null", "true", "false", "5", "-5", '"a b"', '[1, "x"]', '{"k": null}']
    assert show(10**5000) == "an integer of 16610 bits"
    assert show("é") == '"é"'
    assert show("a\n  b\u2028c") == '"a\\n b c"'  # one line, whatever the value holds
    assert show(" x\ty ") == '" x\\ty "'
    assert show("x" * 100) == '"' + "x" * 76 + "..."
    assert show("x" * 78) == '"' + "x" * 78 + '"'  # exactly at the limit: kept whole
    assert show("x" * 10, limit=8) == '"xxxx...'
    assert show(object()).startswith('"<object object')
    assert show(float("nan")) == "NaN"


def test_read_text_messages_are_exact(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a" * 11)
    with pytest.raises(YamlFileError) as info:
        read_text(str(big), Limits(max_bytes=10), "sensor config")
    assert str(info.value) == ("is 11 bytes, more than 10 bytes "
                               "(accepted: a regular sensor config file of at most 10 bytes)")
    assert (info.value.line, info.value.missing) == (None, False)
    with pytest.raises(YamlFileError) as info:
        read_text(str(tmp_path), CONFIG_LIMITS, "scenario")
    assert str(info.value) == "is a directory, not a regular file (accepted: a regular scenario file of at most 1 MiB)"
    with pytest.raises(YamlFileError) as info:
        read_text(str(tmp_path / "nope"), CONFIG_LIMITS, "scenario")
    assert (str(info.value), info.value.missing) == ("no such file (accepted: an existing scenario file)", True)
    with pytest.raises(YamlFileError) as info:
        read_text("a\x00b", CONFIG_LIMITS, "scenario")
    assert str(info.value) == "the path contains a NUL byte (accepted: a scenario file path)"
    with pytest.raises(YamlFileError) as info:
        read_text(str(tmp_path / "nope" / "x"), CONFIG_LIMITS)
    assert info.value.missing
    notdir = tmp_path / "file"
    notdir.write_text("")
    with pytest.raises(YamlFileError) as info:
        read_text(str(notdir / "x"), CONFIG_LIMITS, "scenario")
    assert str(info.value) == "cannot read: Not a directory (accepted: a readable scenario file)"
    assert not info.value.missing
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: \xff\n")
    with pytest.raises(YamlFileError) as info:
        read_text(str(bad), CONFIG_LIMITS)
    assert str(info.value) == "not UTF-8 text (invalid start byte at byte 3) (accepted: UTF-8 YAML)"


def test_read_text_defaults_and_devices() -> None:
    with pytest.raises(YamlFileError) as info:
        read_text("/dev/null", CONFIG_LIMITS)
    assert str(info.value) == ("is a character device, not a regular file "
                               "(accepted: a regular YAML file of at most 1 MiB)")


def test_read_text_stops_at_the_cap_of_a_file_that_grows() -> None:
    """A /proc file is a regular file of size 0 that reads as more: the reader stops at the cap."""
    status = "/proc/self/status"
    if not os.path.exists(status):
        pytest.skip("no /proc")
    with pytest.raises(YamlFileError) as info:
        read_text(status, Limits(max_bytes=10))
    assert str(info.value) == ("grew past 10 bytes while being read "
                               "(accepted: a regular YAML file of at most 10 bytes)")
    assert "Name:" in read_text(status, Limits(max_bytes=1024 * 1024))


def test_read_text_reads_a_file_of_many_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    text = "# é\n" * 200_000  # 1 MB: several reads
    path.write_text(text)
    assert read_text(str(path), Limits(max_bytes=2 * 1024 * 1024)) == text


def test_compose_error_messages_are_exact() -> None:
    with pytest.raises(YamlFileError) as info:
        compose("a: 1\nb: [\n", CONFIG_LIMITS, "a mapping")
    assert (info.value.problem, info.value.accepted, info.value.line) == (
        "invalid YAML: expected the node content, but found '<stream end>'", "a mapping", 3)
    with pytest.raises(YamlFileError) as info:
        compose("a: 1\nb: \x00\n", CONFIG_LIMITS)
    assert (info.value.problem, info.value.accepted, info.value.line) == (
        "invalid YAML: character #x0000 is not allowed (special characters are not allowed)",
        "printable UTF-8 text", 2)
    with pytest.raises(YamlFileError) as info:
        compose("a: 1\n", Limits(max_bytes=4))
    assert str(info.value) == "the document is more than 4 bytes (accepted: a document of at most 4 bytes)"
    with pytest.raises(YamlFileError) as info:
        compose("éé", Limits(max_bytes=3))  # 2 characters, 4 bytes
    assert info.value.problem == "the document is more than 3 bytes"
    with pytest.raises(YamlFileError) as info:
        compose("[[1]]", Limits(max_depth=1))
    assert str(info.value) == ("nested more than 1 levels deep "
                               "(accepted: lists and mappings nested at most 1 levels)")
    with pytest.raises(YamlFileError) as info:
        compose("[1, 2]", Limits(max_nodes=2))
    assert str(info.value) == ("more than 2 YAML nodes "
                               "(accepted: a document of at most 2 scalars, lists and mappings)")
    assert info.value.line == 1
    with pytest.raises(YamlFileError) as info:
        compose("a: 1\n--- 2\n", CONFIG_LIMITS)
    assert str(info.value) == "more than one YAML document (a second '---') (accepted: a single YAML document)"


@pytest.mark.parametrize("text", [
    "a: ! 5\n", "! [1]\n", "!!set {a, b}\n", "!!omap [a: 1]\n", "? a\n", "a: {b: [c, {d: e}]}\n", "- - - x\n",
    "!!str 5\n", "&x a: &y [1]\n",
])
def test_compose_matches_pyyaml_on_tags_and_shapes(text: str) -> None:
    ours = compose(text, CONFIG_LIMITS)
    theirs = yaml.compose(text, Loader=yaml.SafeLoader)
    assert _shape(ours) == _shape(theirs)
    assert ours.end_mark.index == theirs.end_mark.index
    assert type(ours) is type(theirs)
    assert construct(ours) == yaml.safe_load(text)


def test_construct_error_messages_are_exact() -> None:
    with pytest.raises(YamlFileError) as info:
        construct(compose("\n[!!python/name:os.system x]\n", CONFIG_LIMITS))
    assert info.value.line == 2
    assert info.value.accepted == "plain scalars, lists and mappings"
    assert info.value.problem.startswith("invalid YAML value: could not determine a constructor for the tag ")
    with pytest.raises(YamlFileError) as info:
        construct(compose("a: 2001-02-30", CONFIG_LIMITS))
    assert str(info.value) == ("invalid YAML value: day is out of range for month "
                               "(accepted: plain scalars, lists and mappings)")
    with pytest.raises(YamlFileError) as info:
        construct(compose("a: " + "9" * 5000, CONFIG_LIMITS))
    assert info.value.problem == "invalid YAML value: a number of more than 4300 digits"


def test_every_kind_of_file_has_a_name() -> None:
    import stat

    from sensor import yamlfile

    names = {mode: yamlfile._kind(mode) for mode in (stat.S_IFDIR, stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK,
                                                     stat.S_IFSOCK, 0)}
    assert names == {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)",
                     stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket",
                     0: "a file of an unknown type"}
