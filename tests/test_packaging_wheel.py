"""A built wheel is a working install (issue 14 item 13): it carries both JSON schemas, declares
``sensor.schema`` (setuptools warned "Package 'sensor.schema' is absent from the `packages`
configuration"), and, installed into a fresh venv, its ``crisensor snapshot`` reads its ``fakecri serve``.

The fresh venv gets only the wheel; its dependencies (grpcio, protobuf, ...) come from this
project's venv through a ``.pth`` line, as no index is reachable offline. The project's own
editable install is not on that path (its finder is activated by a ``.pth`` file of the project's
venv, which a path added by ``.pth`` does not process), and the test checks that ``sensor`` is
imported from the fresh venv.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: an in-tree build leaves build/ behind, whose stale files a later wheel would carry.
    src = tmp_path_factory.mktemp("src") / "crisensor"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                              ".hypothesis", ".ruff_cache", ".pytest_cache", "*.sock"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w",
                        str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheels = list(out.glob("crisensor-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], r.stdout + r.stderr


def test_the_wheel_carries_the_schemas_and_declares_their_package(built: tuple[Path, str]) -> None:
    wheel, log = built
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"sensor/schema/event.schema.json", "sensor/schema/process-exec.schema.json",
            "fakecri/scenario.schema.json"} <= names
    assert "is absent from the `packages` configuration" not in log, [
        line for line in log.splitlines() if "absent" in line]


def test_the_wheel_ships_the_cri_stubs_under_a_project_specific_name(built: tuple[Path, str]) -> None:
    """The generated code is ``cri_api``; a generic top-level ``protos`` would collide with other projects."""
    wheel, _ = built
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist() if "/" in name}
    assert {"cri_api", "sensor", "fakecri"} <= tops
    assert "protos" not in tops
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"cri_api/v1/api_pb2.py", "cri_api/v1/api_pb2_grpc.py", "cri_api/v1alpha2/api_pb2.py"} <= names


def test_the_installed_wheel_snapshots_fakecri(built: tuple[Path, str], tmp_path: Path) -> None:
    wheel, _ = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py, bin_ = venv / "bin" / "python", venv / "bin"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(py), "-c", "import importlib.resources as r, json, sensor; print(sensor.__file__); "
                            "print(json.loads((r.files('sensor.schema') / 'event.schema.json').read_text())['title'])"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert where.returncode == 0, where.stderr
    assert where.stdout.splitlines()[0].startswith(str(venv)), where.stdout

    sock = tmp_path / "cri.sock"
    serve = subprocess.Popen([str(bin_ / "fakecri"), "serve", "fast_exit", "--socket", str(sock)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert serve.poll() is None and time.monotonic() < deadline, serve.stderr.read() if serve.stderr else ""
            time.sleep(0.05)
        for _ in range(100):  # the first list starts the scenario's clock: the pod comes right after it
            snap = subprocess.run([str(bin_ / "crisensor"), "snapshot", "--addr", f"unix://{sock}"],
                                  capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
            if snap.returncode != 0 or "web" in snap.stdout:
                break
            time.sleep(0.1)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(10)
    assert snap.returncode == 0, snap.stderr
    assert snap.stdout.startswith("# containerd") and "web" in snap.stdout, snap.stdout
