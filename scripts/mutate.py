"""Mutation testing of chosen modules with mutmut, in a scratch copy of the project.

    python scripts/mutate.py --mutate sensor/config.py sensor/duration.py \
        --tests tests/sensor/test_sensor_config.py tests/sensor/test_sensor_duration.py

Why a scratch copy: mutmut 3 reads its settings from ``[tool.mutmut]`` or ``setup.cfg`` in the
working directory and writes its ``mutants/`` tree there. Running it in ``build/mutate/<name>`` with
a generated ``setup.cfg`` keeps the project's own configuration free of it, lets every module set
have its own settings and its own cached results, and leaves the checkout untouched.

At the end it prints one line per mutated file: mutants, killed, survived (with their names, for
``mutmut show NAME`` inside the scratch directory), and the raw kill rate. Which survivors are
equivalent (no test could ever kill them) is a judgement recorded in docs/guarantees.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What the tests need beside the mutated package (copied, never mutated).
COPY = ("sensor", "fakecri", "cri_api", "protos", "scenarios", "tests", "pyproject.toml")


def _cfg_list(items: list[str]) -> str:
    return "\n" + "\n".join(f"    {i}" for i in items)


def prepare(work: Path, mutate: list[str], tests: list[str]) -> None:
    """A fresh copy of the project in ``work`` with a setup.cfg that tells mutmut what to do."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.sock", "mutants")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, work / name)
    packages = sorted({m.split("/", 1)[0] + "/" for m in mutate})
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths ={_cfg_list(packages)}\n"
        f"only_mutate ={_cfg_list(mutate)}\n"
        f"also_copy ={_cfg_list([c + '/' for c in COPY if (ROOT / c).is_dir() and c + '/' not in packages])}\n"
        f"pytest_add_cli_args_test_selection ={_cfg_list(tests)}\n"
        f"pytest_add_cli_args ={_cfg_list(['-p', 'no:cacheprovider', '-p', 'no:randomly', '-x', '-q'])}\n"
    )


def summarize(work: Path) -> int:
    """Per file: mutants, killed, survived; from ``mutmut results --all true``."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                         capture_output=True, text=True, check=False).stdout
    status: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in out.splitlines():
        m = re.match(r"\s*([\w.]+__mutmut_\d+):\s*(.+)$", line)
        if not m:
            continue
        name, state = m.group(1), m.group(2).strip()
        module = re.sub(r"\.(x|xǁ)[^.]*$", "", name.rsplit("__mutmut_", 1)[0])
        status[module][state] += 1
        if state == "survived":
            survivors[module].append(name)
    for module in sorted(status):
        c = status[module]
        total = sum(c.values())
        killed = c["killed"] + c["timeout"]
        print(f"{module}: {total} mutants, {killed} killed, {c['survived']} survived, "
              f"other {dict((k, v) for k, v in c.items() if k not in ('killed', 'timeout', 'survived'))}; "
              f"raw score {killed / total:.1%}" if total else f"{module}: no mutants")
        for name in survivors[module]:
            print(f"  survived: {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutate", nargs="+", required=True, help="files to mutate, e.g. sensor/config.py")
    p.add_argument("--tests", nargs="+", required=True, help="test files (or pytest selections) that must kill them")
    p.add_argument("--name", help="scratch directory name under build/mutate (default: from the first file)")
    p.add_argument("--max-children", default="1", help="parallel mutant runs (default 1: the machine is shared)")
    p.add_argument("--summary-only", action="store_true", help="print the summary of the last run only")
    args = p.parse_args(argv)
    work = ROOT / "build" / "mutate" / (args.name or Path(args.mutate[0]).stem)
    if not args.summary_only:
        prepare(work, args.mutate, args.tests)
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", args.max_children], cwd=work,
                       check=False)
    return summarize(work)


if __name__ == "__main__":
    sys.exit(main())
