"""Reading YAML that may be hostile: bounded files, no aliases, capped depth and node count.

Theory of operation
-------------------
The sensor's config files and fakecri's scenarios are small, hand-written YAML. PyYAML's own
``yaml.compose``/``yaml.safe_load`` trust their input: an alias bomb (nine levels of anchors, each
aliased ten times) expands to 10**9 nodes (minutes, then ``MemoryError``); ten thousand nested
``[`` end in ``RecursionError`` in the recursive composer; ``/dev/zero`` is read until memory runs
out and a FIFO blocks ``open`` forever. So this module does both halves itself:

* ``read_text`` accepts only a regular file of at most ``limits.max_bytes``: it ``stat``s the path
  before opening, opens with ``O_NONBLOCK`` (a FIFO cannot hang the open), ``fstat``s the open file
  (the path may have been swapped) and reads at most ``max_bytes + 1`` bytes (the file may grow).
* ``compose`` walks PyYAML's parser *events* (the scanner and parser are iterative state machines)
  and builds the node tree itself, without recursion and without expanding anything: an alias is
  refused outright (neither file format needs one; anchors alone are harmless and ignored), a
  collection nested deeper than ``max_depth`` or a document of more than ``max_nodes`` nodes is
  refused at the event that crosses the line, so a bomb costs no more than the limit.
* ``construct`` turns a node into Python values with PyYAML's safe constructor (its recursion is
  bounded by the depth cap) and reports the values the constructor chokes on (an integer of 5,000
  digits, the 30th of February) as the same kind of error.

Every failure is a ``YamlFileError``: a problem, the accepted form and (where known) a 1-based line;
callers add the file name in their own one-line error style (``sensor.config``, ``fakecri.scenario``).
The sensor never imports fakecri, so this module lives here and fakecri imports it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["MIB", "Limits", "YamlFileError", "compose", "construct", "duplicate_key", "read_text", "show"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """What a file may cost: bytes on disk, nesting depth of collections, nodes in the document."""

    max_bytes: int = MIB
    max_depth: int = 32
    max_nodes: int = 10_000

    def size_text(self) -> str:
        """``1 MiB`` or ``4 MiB`` (a byte count when not whole MiB)."""
        if self.max_bytes % MIB == 0:
            return f"{self.max_bytes // MIB} MiB"
        return f"{self.max_bytes} bytes"


class YamlFileError(ValueError):
    """A file or document refused. ``missing``: the path does not exist (a default path may be absent)."""

    def __init__(self, problem: str, accepted: str, line: int | None = None, *, missing: bool = False) -> None:
        self.problem = problem
        self.accepted = accepted
        self.line = line
        self.missing = missing
        super().__init__(f"{problem} (accepted: {accepted})")


def show(value: Any, limit: int = 80) -> str:
    """Any YAML value as one bounded line (an integer too long to print is described, not printed)."""
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, int):
        try:
            text = str(value)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            text = f"an integer of {value.bit_length()} bits"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (ValueError, TypeError, RecursionError):
            text = f"a {type(value).__name__}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- files ---------------------------------------------------------------------------------------

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a file of an unknown type"  # none on Linux: every non-regular mode is in _KINDS


def _check(st: os.stat_result, limits: Limits, what: str) -> None:
    accepted = f"a regular {what} file of at most {limits.size_text()}"
    if not stat.S_ISREG(st.st_mode):
        raise YamlFileError(f"is {_kind(st.st_mode)}, not a regular file", accepted)
    if st.st_size > limits.max_bytes:
        raise YamlFileError(f"is {st.st_size} bytes, more than {limits.size_text()}", accepted)


def _os_error(exc: OSError, what: str) -> YamlFileError:
    if exc.errno == errno.ENOENT:
        return YamlFileError("no such file", f"an existing {what} file", missing=True)
    return YamlFileError(f"cannot read: {exc.strerror or exc}", f"a readable {what} file")


def read_text(path: str, limits: Limits, what: str = "YAML") -> str:
    """The UTF-8 text of a regular file of at most ``limits.max_bytes``; ``YamlFileError`` otherwise."""
    if "\x00" in path:
        raise YamlFileError("the path contains a NUL byte", f"a {what} file path")
    try:
        before = os.stat(path)
    except OSError as exc:
        raise _os_error(exc, what) from None
    _check(before, limits, what)  # refuse a FIFO or a device before even opening it
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, what) from None
    try:
        _check(os.fstat(fd), limits, what)  # the path may have been swapped between stat and open
        chunks: list[bytes] = []
        got = 0
        while got <= limits.max_bytes:
            chunk = os.read(fd, min(limits.max_bytes + 1 - got, 256 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise _os_error(exc, what) from None
    finally:
        os.close(fd)
    if got > limits.max_bytes:
        raise YamlFileError(f"grew past {limits.size_text()} while being read",
                            f"a regular {what} file of at most {limits.size_text()}")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", "UTF-8 YAML") from None


# ---- documents -----------------------------------------------------------------------------------

_COLLECTION_STARTS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_COLLECTION_ENDS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _line(event: yaml.Event) -> int | None:
    mark = event.start_mark
    return None if mark is None else mark.line + 1


def _yaml_error(exc: yaml.YAMLError, accepted: str) -> YamlFileError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unparseable"
        return YamlFileError(f"invalid YAML: {problem}", accepted, None if mark is None else mark.line + 1)
    return YamlFileError(f"invalid YAML: {exc}", accepted)


def compose(text: str, limits: Limits, accepted: str = "a YAML mapping") -> yaml.Node | None:
    """The single document of ``text`` as a PyYAML node tree (``None`` when empty), built from parser
    events with no alias expansion, no recursion, and the depth and node caps of ``limits``.
    ``accepted`` is the form quoted in syntax errors."""
    if len(text) > limits.max_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise YamlFileError(f"the document is more than {limits.size_text()}",
                            f"a document of at most {limits.size_text()}")
    try:
        loader = yaml.SafeLoader(text)  # checks the characters of a str document at once
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlFileError(f"invalid YAML: character #x{exc.character:04x} is not allowed ({exc.reason})",
                            "printable UTF-8 text", line) from None
    try:
        return _build(loader, limits)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, accepted) from None
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader, limits: Limits) -> yaml.Node | None:
    loader.get_event()  # StreamStart
    if loader.check_event(yaml.StreamEndEvent):
        return None
    loader.get_event()  # DocumentStart
    root: yaml.Node | None = None
    stack: list[yaml.Node] = []
    pending_key: list[yaml.Node | None] = []  # per open mapping: its key waiting for a value
    nodes = 0
    while True:
        event = loader.get_event()
        if isinstance(event, yaml.DocumentEndEvent):
            break
        if isinstance(event, _COLLECTION_ENDS):
            stack.pop().end_mark = event.end_mark
            pending_key.pop()
            continue
        if isinstance(event, yaml.AliasEvent):
            raise YamlFileError(f"YAML alias *{event.anchor} refused: these files have no need for aliases, and "
                                "expanding them is how alias bombs eat memory",
                                "the value written out in full (no &anchor / *alias)", _line(event))
        nodes += 1
        if nodes > limits.max_nodes:
            raise YamlFileError(f"more than {limits.max_nodes} YAML nodes",
                                f"a document of at most {limits.max_nodes} scalars, lists and mappings", _line(event))
        node: yaml.Node
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        else:
            if len(stack) >= limits.max_depth:
                raise YamlFileError(f"nested more than {limits.max_depth} levels deep",
                                    f"lists and mappings nested at most {limits.max_depth} levels", _line(event))
            cls = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(cls, None, event.implicit)
            node = cls(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if not stack:
            root = node
        elif isinstance(stack[-1], yaml.SequenceNode):
            stack[-1].value.append(node)
        elif pending_key[-1] is None:
            pending_key[-1] = node
        else:
            stack[-1].value.append((pending_key[-1], node))
            pending_key[-1] = None
        if isinstance(event, _COLLECTION_STARTS):
            stack.append(node)
            pending_key.append(None)
    if not loader.check_event(yaml.StreamEndEvent):
        extra = loader.peek_event()
        raise YamlFileError("more than one YAML document (a second '---')", "a single YAML document", _line(extra))
    return root


def duplicate_key(root: yaml.Node | None) -> tuple[str, int, int] | None:
    """The first key given twice in one mapping anywhere under ``root``, as (dotted path, first line,
    second line), or ``None``. PyYAML keeps the last of two equal keys without a word, which silently
    merges or drops settings. Keys compare as written, stripped and case-folded (viper's keys are
    case-insensitive); the duplicate reported is the one whose second occurrence comes first."""
    found: list[tuple[int, int, str]] = []
    todo: list[tuple[yaml.Node, str]] = [] if root is None else [(root, "")]
    while todo:
        node, path = todo.pop()
        if isinstance(node, yaml.SequenceNode):
            todo.extend((child, f"{path}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                name = str(key_node.value).strip() if isinstance(key_node, yaml.ScalarNode) else "?"
                sub = f"{path}.{name}" if path else name
                line = key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode):
                    folded = name.casefold()
                    if folded in lines:
                        found.append((line, lines[folded], sub))
                    lines.setdefault(folded, line)
                todo.append((value_node, sub))
    if not found:
        return None
    line, first, path = min(found)
    return path, first, line


def construct(node: yaml.Node) -> Any:
    """``node`` as Python values (PyYAML's safe constructor); a value it cannot build is a ``YamlFileError``."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(f"invalid YAML value: {problem}", "plain scalars, lists and mappings",
                            node.start_mark.line + 1) from None
    except (ValueError, OverflowError, TypeError) as exc:
        # e.g. an integer of 5,000 digits (over Python's int max str digits), a timestamp on 30 February
        problem = str(exc)
        if "integer string conversion" in problem:
            problem = f"a number of more than {sys.get_int_max_str_digits()} digits"
        problem = " ".join(problem.split())[:100]
        raise YamlFileError(f"invalid YAML value: {problem}", "plain scalars, lists and mappings",
                            node.start_mark.line + 1) from None
    finally:
        loader.dispose()
