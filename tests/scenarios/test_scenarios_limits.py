"""Hostile scenarios: what ``fakecri validate`` accepts, ``fakecri serve`` can serve.

* Every number and string a scenario carries is checked against the CRI field it ends up in
  (int32 exit codes, uint32 attempts, int64 ns timestamps, UTF-8 strings) and against what the fake
  can do in reasonable time and memory; the error names the file, the line, the YAML path and the
  accepted range.
* The YAML bombs of the sensor's config files (alias bomb, deep nesting, /dev/zero, a FIFO, a
  5,000-digit duration, a file over the size cap) are refused by ``fakecri validate`` and
  ``fakecri serve`` in one line, with exit 2 and no traceback.
* A property: documents drawn near every limit either fail validation in one line or run to their
  end on the fake runtime, every object converting to protobuf messages of both API versions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cri_api.v1 import api_pb2 as v1
from cri_api.v1alpha2 import api_pb2 as v1alpha2
from fakecri import convert
from fakecri import scenario as sc
from fakecri.harness import Harness
from fakecri.timeline import Runner

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
BOUND_S = 5.0

RUN = "  - {at: 0s, run_pod: p}\n"
CREATE = RUN + "  - {at: 1s, create: {name: c, pod: p, start: true}}\n"


def error_of(text: str) -> sc.ScenarioError:
    with pytest.raises(sc.ScenarioError) as info:
        sc.loads(text, "bad.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("bad.yaml"), msg
    return info.value


OUT_OF_RANGE = [
    # (document, line, problem, accepted)
    (f"timeline:\n{CREATE}  - {{at: 2s, exit: {{container: c, code: 2147483648}}}}\n", 4,
     "timeline[2].exit.code must be an integer >= -2147483648 and <= 2147483647, not 2147483648", "-2147483648.."),
    (f"timeline:\n{CREATE}  - {{at: 2s, exit: {{container: c, code: -2147483649}}}}\n", 4,
     "timeline[2].exit.code must be an integer", "..2147483647"),
    (f"timeline:\n{RUN}  - {{at: 1s, create: {{name: c, pod: p, attempt: 4294967296}}}}\n", 3,
     "timeline[1].create.attempt must be an integer >= 0 and <= 4294967295", "0..4294967295"),
    ("timeline:\n  - {at: 0s, run_pod: {name: p, attempt: 4294967296}}\n", 2,
     "timeline[0].run_pod.attempt must be an integer >= 0 and <= 4294967295", "0..4294967295"),
    ("timeline:\n  - {at: 9223372036854775807, run_pod: p}\n", 2,
     "timeline[0].at: 9223372036854775807 is more than 720h0m0s", "from 0 to 720h0m0s (30 days)"),
    ("timeline:\n  - {at: 721h, run_pod: p}\n", 2, 'timeline[0].at: "721h" is more than 720h0m0s', "30 days"),
    ("timeline:\n  - {at: -1s, run_pod: p}\n", 2, 'timeline[0].at: "-1s" is negative', "from 0 to 720h0m0s"),
    ("timeline:\n  - {at: " + "9" * 5000 + "s, run_pod: p}\n", 2, "too long (5001 characters; at most 64)",
     "a Go duration"),
    ("timeline:\n  - {at: " + "9" * 5000 + ", run_pod: p}\n", 2, "a number of more than 4300 digits", "plain scalars"),
    ("end: 100000h\n", 1, 'end: "100000h" is more than 720h0m0s', "30 days"),
    ("generators:\n  - large_node: {containers: 1000000, pods: 10}\n", 2,
     "generators[0].large_node.containers must be an integer >= 1 and <= 100000, not 1000000", "1..100000"),
    ("generators:\n  - large_node: {containers: 10, pods: 1000000}\n", 2,
     "generators[0].large_node.pods must be an integer >= 1 and <= 100000", "1..100000"),
    ("generators:\n  - churn: {duration: 1s, rate: 1.0e-300, lifetime: 1s}\n", 2,
     "generators[0].churn.rate must be a number > 0, from 1e-06 to 100000", "from 1e-06 to 100000"),
    ("generators:\n  - churn: {duration: 1s, rate: 1.0e+9, lifetime: 1s}\n", 2,
     "generators[0].churn.rate must be a number > 0", "to 100000"),
    ("generators:\n  - churn: {duration: 1s, rate: 5, lifetime: 1s, pods: 1000000}\n", 2,
     "generators[0].churn.pods must be an integer >= 1 and <= 10000", "1..10000"),
    ("generators:\n  - churn: {duration: 1s, rate: 5, lifetime: 1s, exit_codes: [0, 2147483648]}\n", 2,
     "generators[0].churn.exit_codes[1] must be an integer >= -2147483648", "..2147483647"),
    ("generators:\n  - churn: {duration: 1s, rate: 5, lifetime: 1s, exit_codes: {4294967296: 1}}\n", 2,
     "churn.exit_codes: 4294967296 is not an exit code", "code: weight"),
    ("generators:\n  - churn: {duration: 1s, rate: 5, lifetime: 1s, exit_codes: {0: 1.0e+300}}\n", 2,
     "generators[0].churn.exit_codes.0 must be a number >= 0 and <= 1e+06", "<= 1e+06"),
    ("generators:\n  - churn: {duration: 1s, rate: 5, lifetime: {exponential: 1000000h}}\n", 2,
     'generators[0].churn.lifetime.exponential: "1000000h" is more than 720h0m0s', "30 days"),
    ("quirks:\n  latency: {ms: 1.0e+300}\n", 2, "quirks.latency.ms must be a number >= 0 and <= 60000", "<= 60000"),
    ("quirks:\n  unavailable: {count: 100000000000}\n", 2,
     "quirks.unavailable.count must be an integer >= 1 and <= 1000000", "1..1000000"),
    ("quirks:\n  hang: {max: 10000h}\n", 2, 'quirks.hang.max: "10000h" is more than 720h0m0s', "30 days"),
    ("seed: 18446744073709551616\n", 1, "seed must be an integer >= 0 and <= 18446744073709551615", "0.."),
    (f"timeline:\n{CREATE}processes:\n  - {{at: 1s, container: c, argv: [ls], pid: 4194305}}\n", 5,
     "processes[0].pid must be an integer >= 1 and <= 4194304", "1..4194304"),
    (f"timeline:\n{CREATE}processes:\n  - {{at: 1s, container: c, argv: [{', '.join(['x'] * 1025)}]}}\n", 5,
     "processes[0].argv has 1025 items, more than 1024", "at most 1024"),
    ("timeline:\n  - {at: 0s, run_pod: " + "p" * 254 + "}\n", 2,
     "timeline[0].run_pod is 254 characters long, more than 253", "at most 253 characters"),
    ('timeline:\n  - {at: 0s, run_pod: {name: p, labels: {app: "\\ud800"}}}\n', 2,
     "timeline[0].run_pod.labels.app is not valid Unicode (character #xd800)", "in UTF-8"),
    ('timeline:\n  - {at: 0s, run_pod: {name: p, labels: {"\\udfff": x}}}\n', 2,
     "timeline[0].run_pod.labels: a key is not valid Unicode", "in UTF-8"),
    ("timeline:\n  - {at: 0s, run_pod: {name: p, labels: {" + ", ".join(f"k{i}: v" for i in range(257)) + "}}}\n",
     2, "timeline[0].run_pod.labels has 257 entries, more than 256", "at most 256"),
    (f"timeline:\n{RUN}  - {{at: 1s, create: {{name: c, pod: p, image: {'x' * 4097}}}}}\n", 3,
     "timeline[1].create.image is 4097 characters long, more than 4096", "at most 4096 characters"),
    ("socket: /" + "s" * 107 + "\n", 1, "socket is 108 bytes long, more than 107", "at most 107 bytes"),
    ('socket: "/tmp/a\\0b"\n', 1, "socket contains a NUL byte", "at most 107 bytes"),
    ("name: &a x\nflavor: *a\n", 2, "YAML alias *a refused", "no &anchor / *alias"),
    ("timeline: " + "[" * 40 + "]" * 40 + "\n", 1, "nested more than 32 levels deep", "at most 32 levels"),
]


@pytest.mark.parametrize(("text", "line", "problem", "accepted"), OUT_OF_RANGE,
                         ids=[p for _, _, p, _ in OUT_OF_RANGE])
def test_out_of_range_values_are_refused_with_path_and_range(text: str, line: int, problem: str,
                                                             accepted: str) -> None:
    e = error_of(text)
    assert e.line == line, str(e)
    assert problem in str(e), str(e)
    assert accepted in e.accepted, str(e)


def test_values_at_the_limits_are_accepted() -> None:
    text = f"""\
seed: {sc.MAX_SEED}
socket: /{"s" * 106}
quirks:
  latency: {{ms: 60000}}
  unavailable: {{count: 1000000}}
timeline:
  - {{at: 0s, run_pod: {{name: {"p" * 253}, attempt: 4294967295, labels: {{app: "{"v" * 4096}"}}}}}}
  - {{at: 1s, create: {{name: c, pod: {"p" * 253}, attempt: 4294967295, start: true}}}}
  - {{at: 720h, exit: {{container: c, code: -2147483648}}}}
generators:
  - churn: {{start: 1s, duration: 1s, rate: 1.0e-6, lifetime: 720h, exit_codes: {{2147483647: 1000000}}}}
processes:
  - {{at: 2s, container: c, argv: [ls], pid: 4194304}}
end: 720h
"""
    s = sc.loads(text, "ok.yaml")
    assert s.timeline[2].code == -(2**31) and s.end_ns == sc.MAX_OFFSET_NS


# ---- bombs through the CLI ---------------------------------------------------------------------------


def _alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


BOMBS = {
    "alias": (_alias_bomb(), "alias *a0 refused"),
    "deep_flow": ("timeline: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 32 levels"),
    "duration_5000_digits": ("end: " + "9" * 5000 + "ms\n", "too long (5002 characters; at most 64)"),
    "big_5mib": ("# padding\n" * (5 * 1024 * 1024 // 10 + 1), "more than 4 MiB"),
    "dev_zero": ("/dev/zero", "is a character device, not a regular file"),
    "fifo": ("", "is a FIFO (named pipe), not a regular file"),
}


def _make(tmp_path: Path, name: str) -> str:
    content = BOMBS[name][0]
    if name == "dev_zero":
        return "/dev/zero"
    path = tmp_path / f"{name}.yaml"
    if name == "fifo":
        os.mkfifo(path)
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize("command", ["validate", "serve"])
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_cli_refuses_bomb_in_one_line(tmp_path: Path, name: str, command: str) -> None:
    path = _make(tmp_path, name)
    extra = ["--socket", str(tmp_path / "s.sock")] if command == "serve" else []
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "fakecri.cli", command, path, *extra], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    print(f"fakecri {command} {name}: exit {proc.returncode} in {took:.2f} s: {proc.stdout!r} {proc.stderr!r}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    # validate reports on stdout (one line per file); serve's usage errors go to stderr
    lines = (proc.stdout if command == "validate" else proc.stderr).splitlines()
    assert len(lines) == 1 and path in lines[0] and BOMBS[name][1] in lines[0], lines
    assert took < BOUND_S


# ---- validate accepts => serve can serve -------------------------------------------------------------


def _near(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Integers at, just inside and just outside both ends of [lo, hi], and anywhere between."""
    return st.one_of(st.integers(lo - 2, lo + 2), st.integers(hi - 2, hi + 2), st.integers(lo, hi))


_TEXTS = st.one_of(st.text(max_size=6), st.sampled_from(["x" * 253, "x" * 254, "v" * 4096, "v" * 4097, "\ud800",
                                                        "a\x00b", "é" * 10]))
_OFFSETS = st.one_of(_near(0, sc.MAX_OFFSET_NS), st.sampled_from(["720h", "720h0m0.000000001s", "1s", "0"]))


@st.composite
def near_limit_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A pod, a container that runs and exits, a process, and a generator, with values near the limits."""
    t_run, t_create, t_proc, t_exit = sorted(draw(st.lists(_near(0, sc.MAX_OFFSET_NS), min_size=4, max_size=4)))
    labels = draw(st.dictionaries(_TEXTS, _TEXTS, max_size=2))
    doc: dict[str, Any] = {
        "seed": draw(_near(0, sc.MAX_SEED)),
        "timeline": [
            {"at": t_run, "run_pod": {"name": draw(st.sampled_from(["p", "p" * 253, "p" * 254])),
                                      "attempt": draw(_near(*sc.UINT32)), "labels": labels,
                                      "namespace": draw(st.sampled_from(["default", "n" * 253]))}},
            {"at": t_create, "create": {"name": "c", "pod": "POD", "attempt": draw(_near(*sc.UINT32)),
                                        "labels": labels, "annotations": labels, "start": True}},
            {"at": t_exit, "exit": {"container": "c", "code": draw(_near(*sc.INT32)),
                                    "reason": draw(st.sampled_from(["Error", "OOMKilled", "r" * 4096, "\udfff"]))}},
        ],
        "processes": [{"at": t_proc, "container": "c", "argv": [draw(_TEXTS)], "pid": draw(_near(1, sc.MAX_PID))}],
        "end": draw(_OFFSETS),
    }
    doc["timeline"][1]["create"]["pod"] = doc["timeline"][0]["run_pod"]["name"]
    if draw(st.booleans()):
        doc["generators"] = [{"churn": {
            "start": draw(_OFFSETS), "duration": draw(st.sampled_from([1, 10**9, "720h"])),
            "rate": draw(st.sampled_from([sc.MIN_RATE, sc.MIN_RATE / 2, 2.0, 1e-300])),
            "lifetime": {"exponential": draw(_OFFSETS)}, "removal_delay": {"uniform": ["0s", draw(_OFFSETS)]},
            "exit_codes": {draw(_near(*sc.INT32)): draw(st.sampled_from([1, sc.MAX_WEIGHT, sc.MAX_WEIGHT * 2]))},
            "pods": draw(st.integers(1, 3)), "prefix": draw(st.sampled_from(["ch", "c" * 254]))}}]
    else:
        doc["generators"] = [{"large_node": {"at": draw(_OFFSETS), "containers": draw(st.integers(1, 5)),
                                             "pods": draw(st.integers(1, 3))}}]
    return doc


def _serve_offline(s: sc.Scenario) -> int:
    """Run the whole plan on the fake runtime (virtual clock, no socket) and convert every object it
    holds after each step to the protobuf messages ``serve`` answers with, in both API versions."""
    h = Harness(s, clock="virtual", socket="/tmp/unused-limits.sock")
    converted = 0

    def apply(step: sc.Step) -> None:
        nonlocal converted
        h._apply(step)
        for pb in (v1, v1alpha2):
            with h.model.lock:
                for sb in h.model.sandboxes.values():
                    convert.pod_sandbox(pb, sb).SerializeToString()
                    convert.pod_sandbox_status(pb, sb, h.flavor).SerializeToString()
                    converted += 1
                for c in h.model.containers.values():
                    convert.container(pb, c).SerializeToString()
                    convert.container_status(pb, c, h.flavor).SerializeToString()
                    converted += 1

    runner = Runner(h.plan.steps, apply, clock=h.clock, start_ns=h.clock.now_ns(), end_ns=h.plan.end_ns)
    runner.run_to_end()
    return converted


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(near_limit_documents())
@example({"timeline": [{"at": 0, "run_pod": "p"}, {"at": 1, "create": {"name": "c", "pod": "p", "start": True}},
                       {"at": 2, "exit": {"container": "c", "code": 2**31 - 1}}]})
def test_what_validate_accepts_serve_can_serve(doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    try:
        s = sc.loads(text, "drawn.yaml")
    except sc.ScenarioError as e:
        assert "\n" not in str(e) and str(e).startswith("drawn.yaml")
        return
    assert _serve_offline(s) > 0


@pytest.mark.parametrize(("step", "problem"), [
    (sc.RunPod(at_ns=0, pod="p", attempt=2**32), r"attempt 4294967296 is outside 0\.\.4294967295"),
    (sc.RunPod(at_ns=-1, pod="p"), "offset -1 ns is outside 0..4611686018427387904"),
    (sc.RunPod(at_ns=2**62 + 1, pod="p"), "is outside 0..4611686018427387904"),
])
def test_scenarios_built_in_code_get_the_same_ranges(step: sc.Step, problem: str) -> None:
    with pytest.raises(sc.ScenarioError, match=problem):
        sc.expand(sc.Scenario(timeline=(step,)))


def test_an_exit_code_built_in_code_is_checked() -> None:
    steps = (sc.RunPod(at_ns=0, pod="p"), sc.CreateContainer(at_ns=0, container="c", pod="p", start=True),
             sc.ExitContainer(at_ns=1, container="c", code=2**31))
    with pytest.raises(sc.ScenarioError, match=r"code 2147483648 is outside -2147483648\.\.2147483647"):
        sc.expand(sc.Scenario(timeline=steps))
    procs = (sc.Process(at_ns=0, container="c", argv=("ls",), pid=0),)
    with pytest.raises(sc.ScenarioError, match=r"pid 0 is outside 1\.\.4194304"):
        sc.expand(sc.Scenario(timeline=steps[:2], processes=procs))
