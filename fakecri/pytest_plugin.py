"""pytest plugin: the ``fakecri`` fixture (registered through the ``pytest11`` entry point).

    def test_sees_fast_exit(fakecri):
        h = fakecri.start("fast_exit")          # bundled name, a path, or a Scenario
        client = MyCriClient(h.addr)            # unix:///.../cri.sock
        client.poll()
        h.advance("250ms")                      # virtual clock: apply due steps exactly
        client.poll()
        h.run_to_end()
        assert any(r.kind == "container" for r in h.truth)

``fakecri.start(scenario=None, flavor=None, clock="virtual", **options)`` returns a started
``fakecri.harness.Harness``; every harness started through the fixture is stopped when the test
ends. ``flavor=None`` means the scenario's flavour, or ``containerd-1.7`` with no scenario.

This module imports only pytest at import time, so installing the package cannot slow down or
break unrelated test suites; the harness (grpc and all) is imported on first ``start``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fakecri.harness import Harness
    from fakecri.scenario import Scenario

#: Longest socket path we put under tmp_path before falling back to a short temp directory.
_MAX_SOCKET = 100


class FakeCri:
    """What the ``fakecri`` fixture yields: a factory for harnesses, cleaned up after the test."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._short_dir: str | None = None
        self.harnesses: list[Harness] = []

    def _socket_path(self) -> str:
        name = f"cri{len(self.harnesses)}.sock"
        path = str(self._tmp_path / name)
        if len(os.path.abspath(path)) + len(".backend") + 2 <= _MAX_SOCKET:
            return path
        if self._short_dir is None:  # deep tmp_path: unix socket paths are limited to 107 bytes
            self._short_dir = tempfile.mkdtemp(prefix="fakecri-")
        return os.path.join(self._short_dir, name)

    def start(self, scenario: str | os.PathLike[str] | Scenario | None = None, *, flavor: str | None = None,
              clock: str = "virtual", socket: str | None = None, **options: Any) -> Harness:
        """Start a fake runtime (see ``fakecri.harness.Harness`` for ``options``)."""
        from fakecri.harness import Harness

        h = Harness(scenario, socket=socket or self._socket_path(), flavor=flavor, clock=clock,  # type: ignore[arg-type]
                    **options)
        self.harnesses.append(h)
        h.start()
        return h

    @property
    def harness(self) -> Harness:
        """The most recently started harness."""
        if not self.harnesses:
            raise RuntimeError("call fakecri.start(...) first")
        return self.harnesses[-1]

    def close(self) -> None:
        for h in reversed(self.harnesses):
            h.stop()
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)


@pytest.fixture
def fakecri(tmp_path: Path) -> Iterator[FakeCri]:
    """A factory for fake CRI runtimes: ``fakecri.start(scenario=None, flavor=None, clock="virtual")``."""
    handle = FakeCri(tmp_path)
    try:
        yield handle
    finally:
        handle.close()
