"""pytest glue for the real-containerd fixture (used by tests/realruntime/conftest.py).

Where containerd cannot run (not root, packages missing) tests are skipped with the reason;
with ``CI=true`` they FAIL with it instead, so CI never silently skips the real runtime.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import containerd as rr


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(reason: str) -> None:
    msg = f"real containerd unavailable: {reason}"
    if in_ci():
        pytest.fail(msg + " (CI=true: the real-runtime tests must run in CI)", pytrace=False)
    pytest.skip(msg)


def image_cache(config: pytest.Config | None, fallback: Path) -> Path:
    cache = getattr(config, "cache", None)
    return Path(cache.mkdir("crisensor-images")) if cache is not None else fallback


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_runs_teardown() -> Iterator[None]:
    """While active, SIGTERM raises KeyboardInterrupt (so fixture teardown still runs) -- only if
    nobody else handles SIGTERM and we are in the main thread; restored afterwards."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def containerd_or_skip(tmpdir: Path, config: pytest.Config | None = None, **kwargs) -> Iterator[rr.ContainerdHandle]:
    """``running_containerd`` that turns "cannot run here" into skip (or fail under CI).

    On exit ``running_containerd`` raises if anything was left behind; this checks once more
    from the outside (processes, mounts, bridge, CNI cache) and fails the test if so.
    """
    reason = rr.containerd_unavailable_reason(kwargs.get("release", "1.6"))
    if reason:
        skip_or_fail(reason)
    with contextlib.ExitStack() as stack:
        if not rr.path_fits_socket(tmpdir):  # e.g. a long --basetemp: use a short private dir instead
            tmpdir = Path(tempfile.mkdtemp(prefix="crisensor-cd-", dir="/tmp"))
            stack.callback(shutil.rmtree, tmpdir, ignore_errors=True)  # runs after the teardown
        try:
            handle = stack.enter_context(
                rr.running_containerd(tmpdir, image_cache=image_cache(config, Path(tmpdir) / "images"), **kwargs)
            )
        except rr.ContainerdUnavailable as e:
            skip_or_fail(str(e))
        yield handle
    left = rr.find_leftovers(handle)
    assert not left, f"containerd teardown left: {left}"
