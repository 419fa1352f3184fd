"""The bundled scenarios ship: a plain (non-editable) install lists and serves them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_lists_every_package_in_the_tree() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace(os.sep, ".")
             for top in ("sensor", "fakecri", "cri_api") for p in (ROOT / top).rglob("__init__.py")}
    assert found <= listed, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    assert cfg["package-dir"]["fakecri.bundled"] == "scenarios"


@pytest.mark.slow
def test_installed_package_finds_its_bundled_scenarios(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in ("sensor", "fakecri", "cri_api", "scenarios"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (target / "fakecri" / "bundled" / "fast_exit.yaml").is_file()
    assert (target / "fakecri" / "scenario.schema.json").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = [sys.executable, "-c", "import sys; from fakecri.cli import main; sys.exit(main(sys.argv[1:]))"]
    out = subprocess.run([*run, "scenarios"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "fast_exit" in out.stdout and "churn_storm" in out.stdout
    import fakecri.scenario as here  # the checkout's copy must not be what the subprocess used

    check = subprocess.run([*run[:2], "import fakecri.scenario as s; print(s.bundled_dir())"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=60)
    assert check.stdout.strip() == str(target / "fakecri" / "bundled")
    assert str(Path(here.__file__).parent) not in check.stdout
    ok = subprocess.run([*run, "validate", "fast_exit"], capture_output=True, text=True, env=env, cwd=tmp_path,
                        timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "ok fast_exit", ok.stdout + ok.stderr
