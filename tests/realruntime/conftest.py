"""Fixtures that run a REAL containerd (CRI plugin, runc, CNI bridge) -- see docs/realruntime.md.

``real_containerd`` (1.6, the system package), ``containerd_17`` and ``containerd_21`` (fetched from
Debian trixie/sid into a private cache; ``streaming_containerd`` runs a test on each) are session
scoped, each with its own root, state and socket, and yield a ``ContainerdHandle``: ``.addr`` ("unix://..."),
``.socket``, ``.busybox_image``, ``.pause_image``, ``.cgroup_parent``, ``.root``, ``.state``...
Where containerd cannot run (not root, packages missing) its tests are skipped with the reason;
with ``CI=true`` they FAIL with it instead, so CI never silently skips the real runtime. At
session end the teardown must leave no process, mount or bridge behind, or the session errors.

The helpers live in scripts/realruntime (not an installed package); they are imported here as
the package ``crisensor_realruntime``, which test modules can then import too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PKG = "crisensor_realruntime"


def _load_realruntime() -> None:
    if _PKG in sys.modules:
        return
    pkg_dir = Path(__file__).resolve().parents[2] / "scripts" / "realruntime"
    spec = importlib.util.spec_from_file_location(
        _PKG, pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PKG] = module
    spec.loader.exec_module(module)


_load_realruntime()

from crisensor_realruntime.pytest_support import containerd_or_skip, sigterm_runs_teardown  # noqa: E402

_timings: list[str] = []


def _containerd(release: str, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config):
    tmpdir = tmp_path_factory.mktemp(f"containerd-{release}")
    with sigterm_runs_teardown(), containerd_or_skip(tmpdir, pytestconfig, release=release) as handle:
        yield handle
    _timings.append(
        f"containerd {release}: started in {handle.start_seconds:.2f}s, torn down in {handle.teardown_seconds:.2f}s, "
        "nothing left behind"
    )


@pytest.fixture(scope="session")
def real_containerd(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config):
    """containerd 1.6: the system's Debian package (polling only)."""
    yield from _containerd("1.6", tmp_path_factory, pytestconfig)


@pytest.fixture(scope="session")
def containerd_17(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config):
    """containerd 1.7 from Debian trixie, fetched into /var/cache/crisensor-containerd (streams events)."""
    yield from _containerd("1.7", tmp_path_factory, pytestconfig)


@pytest.fixture(scope="session")
def containerd_21(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config):
    """containerd 2.1 from Debian sid, fetched into /var/cache/crisensor-containerd (v1 only, config v3)."""
    yield from _containerd("2.1", tmp_path_factory, pytestconfig)


@pytest.fixture(params=["1.7", "2.1"])
def streaming_containerd(request: pytest.FixtureRequest):
    """Each real containerd that serves GetContainerEvents, in turn."""
    return request.getfixturevalue({"1.7": "containerd_17", "2.1": "containerd_21"}[request.param])


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _timings:
        terminalreporter.write_line(line)
