"""``--version`` text for both command lines: what a bug report needs in three lines.

The package version (from the installed metadata), the CRI API versions the program speaks, and
the Python and grpcio versions it runs on -- the two things that decide which HTTP/2 handshake a
client does (docs/install.md).
"""

from __future__ import annotations

import platform
from collections.abc import Iterable

DIST = "crisensor"  #: the distribution both ``crisensor`` and ``fakecri`` ship in (pyproject.toml)


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:  # run from a checkout that was never pip-installed
        return "unknown (not installed; pip install -e .)"


def grpcio_version() -> str:
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio is a hard dependency
        return "not installed"
    return str(getattr(grpc, "__version__", "unknown"))


def version_text(prog: str, apis: Iterable[str], how: str) -> str:
    """``prog VERSION`` / ``CRI API: runtime.v1, ... (how)`` / ``Python X, grpcio Y``."""
    api_list = ", ".join(f"runtime.{a}" for a in apis)
    return (f"{prog} {package_version()}\n"
            f"CRI API: {api_list} ({how})\n"
            f"Python {platform.python_version()}, grpcio {grpcio_version()}")
