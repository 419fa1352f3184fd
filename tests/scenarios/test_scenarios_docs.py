"""The pytest example in docs/scenarios.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from fakecri.pytest_plugin import fakecri  # noqa: F401 -- the fixture, also without the entry point

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"


def test_the_documented_fixture_example_passes(fakecri) -> None:  # noqa: F811
    text = DOC.read_text()
    section = text[text.index("## From pytest"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    ns: dict = {}
    exec(compile(code, str(DOC), "exec"), ns)
    tests = [v for k, v in ns.items() if k.startswith("test_")]
    assert len(tests) == 1
    tests[0](fakecri)
