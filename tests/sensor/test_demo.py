"""``make demo`` runs ``python -m sensor.demo``: it must show the forged exit of fast_exit's job."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest


def test_demo_prints_the_forged_exit() -> None:
    r = subprocess.run([sys.executable, "-m", "sensor.demo"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "web/job" in line and line.split()[0].isdigit()]
    exited = next(line for line in rows if "container.exited" in line)
    assert " * " in exited and exited.rstrip().endswith("exited and removed between polls")
    assert any("container.destroyed" in line for line in rows)
    assert "# ground truth" in r.stdout


def test_demo_json_mode_prints_only_events() -> None:
    r = subprocess.run([sys.executable, "-m", "sensor.demo", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    forged = [e for e in events if e["type"] == "container.exited" and e["name"] == "job"]
    assert forged and forged[0]["synthetic"] is True


def test_demo_rejects_an_unknown_scenario() -> None:
    r = subprocess.run([sys.executable, "-m", "sensor.demo", "nonesuch"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("demo: no bundled scenario 'nonesuch' (accepted: ")


#: every number of the summary with its unit ("2 of 3 containers" is one count)
UNITS = re.compile(r"\d+ of \d+ containers|\d+ (ms|containers?|forged events?|container\.[a-z]+)\b")


@pytest.mark.parametrize(("interval", "all_seen"), [("250ms", None), ("20ms", True)])
def test_demo_ends_with_a_one_sentence_summary(interval: str, all_seen: bool | None) -> None:
    r = subprocess.run([sys.executable, "-m", "sensor.demo", "--poll-interval", interval], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    last = r.stdout.rstrip("\n").splitlines()[-1]
    print(last)
    assert last.startswith(f"# summary: polling every {interval[:-2]} ms saw ")
    assert last.endswith(".") and last.count(". ") == 0  # one sentence
    assert not re.search(r"\d", UNITS.sub("", last)), f"a number without its unit: {last}"
    # fast_exit: job's exit and removal fall between two polls and are forged
    assert re.search(r"\(\d+ container\.created and [12] container\.exited\)", last), last
    assert "forged events (marked *) recovered" in last and re.search(r"window of at most \d+ ms\.$", last)
    # blink lives 51 ms: at 250 ms polling sees it with probability about 1/5, at 20 ms always
    if all_seen or "saw all" in last:
        assert "saw all 3 containers" in last
    else:
        assert re.search(r"saw 2 of 3 containers: 1 container \(blink\) lived 5\d ms \(less than one poll "
                         r"interval\) and was never seen;", last), last


def test_demo_summary_in_json_mode_goes_to_stderr() -> None:
    r = subprocess.run([sys.executable, "-m", "sensor.demo", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr.rstrip("\n").splitlines()[-1].startswith("# summary: polling every 250 ms saw ")
    assert "summary" not in r.stdout
