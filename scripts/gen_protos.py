#!/usr/bin/env python3
"""Regenerate the committed Python stubs for the CRI protos.

The ``.proto`` sources live in ``protos/<version>/api.proto``; the stubs are the
importable package ``cri_api`` (a project-specific name: a top-level ``protos``
module would collide with other projects). For every API version this copies
the source to ``<staging>/cri_api/<version>/api.proto`` and runs::

    python -m grpc_tools.protoc -I <staging> --python_out=<out> \\
        --grpc_python_out=<out> --pyi_out=<out> cri_api/<version>/api.proto

so the generated gRPC module imports its messages as
``from cri_api.v1 import api_pb2`` and works from any working directory.

The stubs are committed so that a plain ``pip install`` needs no protoc.
Run this script after editing a ``.proto`` file (needs ``grpcio-tools``)::

    python scripts/gen_protos.py            # rewrite cri_api/*/api_pb2*.py(i)
    python scripts/gen_protos.py --check    # exit 1 if the committed stubs are stale
    python scripts/gen_protos.py --out DIR  # write under DIR/cri_api/... instead
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("v1", "v1alpha2")
PACKAGE = "cri_api"  # the importable name of the generated stubs
GENERATED = ("api_pb2.py", "api_pb2_grpc.py", "api_pb2.pyi")


def generate(out: Path) -> list[Path]:
    """Compile every ``protos/<version>/api.proto`` into ``out/cri_api/<version>``; return the files written."""
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as staging:
        for version in VERSIONS:
            proto = f"{PACKAGE}/{version}/api.proto"
            (Path(staging) / PACKAGE / version).mkdir(parents=True)
            shutil.copyfile(ROOT / "protos" / version / "api.proto", Path(staging) / proto)
            (out / PACKAGE / version).mkdir(parents=True, exist_ok=True)
            cmd = [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{staging}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                f"--pyi_out={out}",
                proto,
            ]
            result = subprocess.run(cmd, cwd=staging, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise SystemExit(f"protoc failed for protos/{version}/api.proto:\n{result.stderr.strip()}")
            written += [out / PACKAGE / version / name for name in GENERATED]
    return written


def stale_files() -> list[str]:
    """Committed generated files that differ from a fresh generation (repo-relative paths)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = []
        for path in fresh:
            rel = path.relative_to(tmp)
            committed = ROOT / rel
            if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
                stale.append(str(rel))
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="only report stale stubs (exit 1 if any)")
    group.add_argument("--out", type=Path, help="write under OUT/cri_api/... instead of the repository")
    args = parser.parse_args(argv)

    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated CRI stubs (run `python scripts/gen_protos.py`):", *stale, sep="\n  ")
            return 1
        print("generated CRI stubs are up to date")
        return 0

    for path in generate(args.out or ROOT):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
