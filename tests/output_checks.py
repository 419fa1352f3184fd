"""What a CLI prints when its output fails: shared by the crisensor and fakecri output-error suites."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def closed_pipe() -> Iterator[int]:
    """The write end of a pipe nobody reads any more: every write fails with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    try:
        yield w
    finally:
        os.close(w)


def assert_quiet(r: subprocess.CompletedProcess[str], code: int = 0) -> None:
    """A closed output: the command ends with ``code``, says nothing about it, prints no traceback."""
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert "cannot write" not in r.stderr, r.stderr


def assert_one_line(r: subprocess.CompletedProcess[str], output: str) -> str:
    """A full disk: exit 1 and exactly one line naming ``output`` and the errno."""
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if "cannot write" in line]
    assert len(lines) == 1, r.stderr
    assert f"to {output}: [Errno 28] No space left on device" in lines[0], lines[0]
    return lines[0]
