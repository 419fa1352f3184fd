"""The top-level Containerfile: structure checks, and its build step rehearsed without a container engine.

HONEST LIMIT: the image is NOT built in CI (no container engine can run on CI's machine, and the
base image cannot be pulled). What these tests do prove: the file's structure (pinned base, non-root
USER, the ENTRYPOINT, no secrets, no remote ADD/curl), that every path it COPYs exists, that those
paths hold everything ``pip install .`` needs (``test_copied_context_installs``), and that the
installed ``crisensor`` entry point runs. What they do not prove: that the base image tag exists,
that pip inside it resolves the same wheels, or that the image starts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Containerfile ends inside a continued line"
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def build_args() -> dict[str, str]:
    args = {}
    for word, rest in instructions():
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def resolved_from(rest: str) -> str:
    image = rest.split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m.group(1)], image)


def test_base_image_is_pinned_to_a_patch_release() -> None:
    froms = [resolved_from(rest) for word, rest in instructions() if word == "FROM"]
    assert len(froms) == 2, "expected a build stage and a runtime stage"
    for image in froms:
        assert re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image
        assert ":latest" not in image


def test_final_stage_runs_as_non_root_and_enters_crisensor_run() -> None:
    final = stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage sets no USER (it would run as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} (numeric, so runAsNonRoot can verify it)"
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert len(entry) == 1 and json.loads(entry[0]) == ["crisensor", "run"]
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=build /opt/crisensor /opt/crisensor"], "the runtime stage takes only the venv"


def test_no_secrets_and_nothing_fetched_outside_pip() -> None:
    secret_words = re.compile(r"(passw(or)?d|secret|token|api[_-]?key|private[_-]?key|credential|aws_|"
                              r"BEGIN [A-Z ]*PRIVATE KEY|://[^/\s:@]+:[^/\s@]+@)", re.IGNORECASE)
    for word, rest in instructions():
        assert word != "ADD", "use COPY: ADD can fetch URLs and unpack archives"
        assert not secret_words.search(rest), f"{word} {rest}"
        if word == "RUN":
            assert not re.search(r"\b(curl|wget)\b", rest), f"RUN fetches outside pip: {rest}"
        if word == "COPY":
            assert not re.search(r"(\.ssh|id_rsa|\.netrc|\.env\b|pip\.conf|\.git\b)", rest), rest


def _copied_sources() -> list[str]:
    out = []
    for word, rest in stages()[0]:
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            out += [s.rstrip("/") for s in sources]
    return out


def test_copied_paths_exist_and_cover_the_package() -> None:
    sources = _copied_sources()
    for s in sources:
        assert (REPO / s).exists(), f"COPY {s}: no such path in the build context"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    packages = setuptools.get("packages", [])
    if isinstance(packages, dict):  # packages.find
        packages = [p.rstrip(".*") for p in packages["find"]["include"]]
    mapped = setuptools.get("package-dir", {})
    needed = {mapped[p].split("/")[0] if p in mapped else p.split(".")[0] for p in packages}
    assert needed <= set(sources), f"pip install . needs {sorted(needed)}; the Containerfile copies {sources}"
    assert project["project"]["readme"] in sources
    assert "crisensor" in project["project"]["scripts"]


@pytest.mark.slow
def test_copied_context_installs(tmp_path: Path) -> None:
    """Rehearse the build stage's `pip install .` on exactly the files the Containerfile COPYs.

    Offline (--no-deps --no-build-isolation: the dependencies are this test run's own), so it shows
    that the copied context is complete and the entry point works, not that PyPI resolves."""
    context = tmp_path / "context"
    context.mkdir()
    for s in _copied_sources():
        src = REPO / s
        if src.is_dir():
            shutil.copytree(src, context / s, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, context / s)
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-cache-dir", "--target", str(target), str(context)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    script = target / "bin" / "crisensor"
    assert script.exists(), "the crisensor console script was not installed"
    env = {**os.environ, "PYTHONPATH": str(target)}
    help_run = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=60)
    assert help_run.returncode == 0, help_run.stderr
    assert "run" in help_run.stdout
