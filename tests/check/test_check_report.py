"""The checker's report and input parsing, against literal expected text and tables.

Expected values here are written out by hand (not computed with the code under test), so a
change in wording, rounding or ordering shows up as a diff.
"""

from __future__ import annotations

import json

import pytest

from fakecri.check import CheckParams, GuaranteeResult, ParseFailure, Report, Violation, check, load_events_jsonl
from fakecri.check import parse_event as parse
from fakecri.check.report import TimeFormat, ms, offset
from fakecri.truth import (
    ContainerTransition,
    FaultWindow,
    ProcessEvent,
    RpcServed,
    RuntimeTransition,
    SandboxTransition,
)
from sensor.events import Event

B = 1_000_000_000_000  # a base time, ns
P = 100_000_000


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (None, "never"),
        (B, "+0.000000s"),
        (B + 1_250_000_000, "+1.250000s"),
        (B + 999, "+0.000000s"),  # below a microsecond: truncated
        (B + 1_000, "+0.000001s"),
        (B - 1_000, "-0.000001s"),
        (B - 2_500_000_000, "-2.500000s"),
        (B + 61_000_123_456, "+61.000123s"),
        (B + 2_000_000_000, "+2.000000s"),
        (B + 999_999_999, "+0.999999s"),
    ],
)
def test_time_format(ns, text):
    assert TimeFormat(B)(ns) == text


def test_window_ms_offset():
    assert TimeFormat(B).window((B, B + 1_000_000)) == "[+0.000000s, +0.001000s]"
    assert ms(1_234_567) == "1.235ms"
    assert ms(0) == "0.000ms"
    assert ms(1_000_000_000) == "1000.000ms"
    assert offset(999_999) == "999999 ns"
    assert offset(-999_999) == "-999999 ns"
    assert offset(1_000_000) == "1.000ms"
    assert offset(-2_000_000) == "-2.000ms"


def _event(**kw) -> Event:
    base = {
        "type": "container.exited",
        "time_ns": B + 2_000_000,
        "window_ns": (B + 1_000_000, B + 3_000_000),
        "observed_ns": B + 4_000_000,
        "source": "poll",
        "container_id": "c1",
        "synthetic": True,
        "why": "gone",
        "seq": 7,
    }
    base.update(kw)
    return Event(**base)


TRUTH = (
    (3, ContainerTransition("c1", "exited", B + 2_000_000, "sb1")),
    (4, SandboxTransition("sb1", "notready", B + 5_000_000)),
    (5, RpcServed("ContainerStatus", "v1", B + 6_000_000, B + 6_500_000, "NOT_FOUND", "c1")),
    (6, RpcServed("ListContainers", "v1", B + 7_000_000, B + 7_001_000, "OK")),
    (7, RuntimeTransition("down", B + 8_000_000)),
    (8, FaultWindow("zero_timestamps", "start", B + 9_000_000)),
    (9, ProcessEvent("c1", B + 10_000_000, B + 10_000_000, 42)),
)


def _report(**kw) -> Report:
    v1 = Violation("G2", "first G2", (_event(),), TRUTH)
    v2 = Violation("G2", "second G2", (_event(type="sandbox.ready", sandbox_id="sb1", container_id=None, why=None,
                                              synthetic=False, seq=8, source="resync"),))
    v3 = Violation("G5", "only G5")
    results = {
        "G1": GuaranteeResult("G1", True, [], {"events": 2}, "2 events"),
        "G2": GuaranteeResult("G2", False, [v1, v2], {}, "due  "),
        "G5": GuaranteeResult("G5", False, [v3], {}, ""),
    }
    args = {
        "params": CheckParams(poll_interval_ns=P),
        "results": results,
        "parse_failures": [ParseFailure(3, "not JSON: Expecting value", "{oops")],
        "counts": {"events": 3, "truth_records": 7, "container_incarnations": 1, "sandbox_incarnations": 1},
        "start_ns": B,
        "end_ns": B + 20_000_000,
        "notes": ["a note"],
    }
    args.update(kw)
    return Report(**args)


RENDERED = """\
guarantee check: FAIL (G2, G5)
  3 events, 7 truth records, 1 container / 1 sandbox incarnations; mode=poll poll_interval=100.000ms; \
times below are relative to the run start (1000000000000 ns)
FORMAT FAIL  1 unreadable event line(s)
G1 order                        PASS  2 events
G2 completeness                 FAIL  2 violation(s); due
G5 no phantoms                  FAIL  1 violation(s);
note: a note
  line 3: not JSON: Expecting value: {oops

first 3 of 3 violation(s):
[G2] first G2
    event seq=7 container.exited c1 time=+0.002000s window=[+0.001000s, +0.003000s] observed=+0.004000s \
synthetic=true why='gone' source=poll
    truth #3 container.exited c1 at +0.002000s
    truth #4 sandbox.notready sb1 at +0.005000s
    truth #5 rpc ContainerStatus NOT_FOUND target=c1 answer taken +0.006000s sent +0.006500s
    truth #6 rpc ListContainers OK answer taken +0.007000s sent +0.007001s
    truth #7 runtime down at +0.008000s
    truth #8 fault zero_timestamps start at +0.009000s
    truth #9 process at +0.010000s
[G5] only G5
[G2] second G2
    event seq=8 sandbox.ready sb1 time=+0.002000s window=[+0.001000s, +0.003000s] observed=+0.004000s \
synthetic=false source=resync
"""


def test_render_literal():
    assert _report().render() == RENDERED


def test_render_limits_and_defaults():
    r = _report(parse_failures=[ParseFailure(i, "bad", "x") for i in range(1, 4)], counts={}, notes=[])
    text = r.render(max_violations=2)
    lines = text.splitlines()
    assert lines[1].startswith("  0 events, 0 truth records, 0 container / 0 sandbox incarnations;")
    assert "FORMAT FAIL  3 unreadable event line(s)" in lines
    assert [ln for ln in lines if ln.startswith("  line ")] == ["  line 1: bad: x", "  line 2: bad: x"]
    assert "first 2 of 3 violation(s):" in lines
    assert [ln for ln in lines if ln.startswith("[")] == ["[G2] first G2", "[G5] only G5"]
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_render_pass_and_unreadable_only():
    ok = {"G1": GuaranteeResult("G1", True, [], {}, "")}
    r = _report(results=ok, parse_failures=[], notes=[])
    assert r.ok and r.failed == []
    assert r.render().splitlines()[0] == "guarantee check: PASS"
    assert r.render().splitlines()[-1] == "G1 order                        PASS"
    bad = _report(results=ok)
    assert not bad.ok and bad.failed == []
    assert bad.render().splitlines()[0] == "guarantee check: FAIL (unreadable events)"


def test_report_to_dict_literal():
    r = _report()
    d = r.to_dict()
    assert d["ok"] is False and d["failed"] == ["G2", "G5"]
    assert d["params"] == {
        "poll_interval_ns": P,
        "mode": "poll",
        "latency_allowance_ns": 50_000_000,
        "stream_latency_ns": 10_000_000,
        "start_ns": None,
        "end_ns": None,
        "completeness_grace_ns": 0,
    }
    assert (d["start_ns"], d["end_ns"]) == (B, B + 20_000_000)
    assert d["counts"] == {"events": 3, "truth_records": 7, "container_incarnations": 1, "sandbox_incarnations": 1}
    assert d["parse_failures"] == [{"line": 3, "error": "not JSON: Expecting value", "text": "{oops"}]
    assert d["notes"] == ["a note"]
    assert list(d["guarantees"]) == ["G1", "G2", "G5"]
    assert d["guarantees"]["G1"] == {
        "guarantee": "G1",
        "name": "order",
        "ok": True,
        "summary": "2 events",
        "violations": [],
        "measures": {"events": 2},
        "notes": [],
    }
    v = d["guarantees"]["G2"]["violations"][0]
    assert set(v) == {"guarantee", "message", "events", "truth"}
    assert (v["guarantee"], v["message"]) == ("G2", "first G2")
    assert v["events"][0]["seq"] == 7 and v["events"][0]["why"] == "gone" and v["events"][0]["v"] == 1
    assert v["truth"][0] == {
        "seq": 3,
        "kind": "container",
        "container_id": "c1",
        "transition": "exited",
        "time_ns": B + 2_000_000,
        "sandbox_id": "sb1",
        "name": "",
        "attempt": 0,
        "image": "",
        "image_ref": "",
        "labels": {},
        "pod": None,
        "exit_code": None,
        "reason": None,
    }
    assert [t["seq"] for t in v["truth"]] == [3, 4, 5, 6, 7, 8, 9]
    json.dumps(d)
    assert r.violations[0].event_seqs == (7,) and r.violations[0].truth_seqs == (3, 4, 5, 6, 7, 8, 9)


# -- reading events ------------------------------------------------------------------------------


def _good() -> dict:
    return {
        "v": 1,
        "seq": 1,
        "type": "container.created",
        "container_id": "c1",
        "time_ns": 5,
        "window_ns": [5, 5],
        "observed_ns": 6,
        "synthetic": False,
        "source": "poll",
    }


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"type": "container.paused"}, "unknown type 'container.paused'"),
        ({"v": 99}, "unsupported event schema version 99 (accepted: 1)"),
        ({"seq": None}, "seq must be an integer (got None)"),
        ({"seq": True}, "seq must be an integer (got True)"),
        ({"time_ns": 1.5}, "time_ns must be an integer (got 1.5)"),
        ({"observed_ns": "7"}, "observed_ns must be an integer (got '7')"),
        ({"window_ns": [1, 2, 3]}, "window_ns must be [lo, hi] integers (got [1, 2, 3])"),
        ({"window_ns": [1, "2"]}, "window_ns must be [lo, hi] integers (got [1, '2'])"),
        ({"window_ns": [1, False]}, "window_ns must be [lo, hi] integers (got [1, False])"),
        ({"window_ns": "12"}, "window_ns must be [lo, hi] integers (got '12')"),
        ({"synthetic": "yes"}, "synthetic must be true or false (got 'yes')"),
        ({"synthetic": 0}, "synthetic must be true or false (got 0)"),
        ({"source": "magic"}, "source must be one of"),
        ({"container_id": ""}, "container.created needs a container_id"),
        ({"container_id": 5}, "container.created needs a container_id"),
        ({"type": "sandbox.ready", "sandbox_id": None}, "sandbox.ready needs a sandbox_id"),
        ({"type": "sandbox.ready", "sandbox_id": ""}, "sandbox.ready needs a sandbox_id"),
        ({"pod": {"name": "x"}}, "missing field 'namespace'"),
        ({"pod": 5}, "malformed event:"),
    ],
)
def test_parse_event_refuses(change, error):
    d = {**_good(), **change}
    with pytest.raises(ValueError) as e:
        parse(d)
    assert str(e.value).startswith(error), str(e.value)


def test_parse_event_accepts():
    assert parse(_good()).seq == 1
    sb = parse({**_good(), "type": "sandbox.ready", "sandbox_id": "s1", "container_id": None})
    assert sb.sandbox_id == "s1"
    gap = parse({**_good(), "type": "sensor.gap", "container_id": None, "window_ns": (1, 2)})
    assert gap.window_ns == (1, 2)
    no_synth = dict(_good())
    del no_synth["synthetic"]
    assert parse(no_synth).synthetic is False
    with pytest.raises(ValueError, match="must be a JSON object, not list"):
        parse([1, 2])  # type: ignore[arg-type]


def test_load_events_jsonl_lines_and_clipping():
    long = "x" * 300
    lines = [json.dumps(_good()) + "\n", "\n", "   \n", "{not json\n", json.dumps([1]) + "\n", long + "\n",
             json.dumps({**_good(), "seq": "s"}) + "\n"]
    events, failures = load_events_jsonl(lines)
    assert [e.seq for e in events] == [1]
    assert [(f.line, f.error.split(":")[0]) for f in failures] == [
        (4, "not JSON"), (5, "an event must be a JSON object, not list"), (6, "not JSON"),
        (7, "seq must be an integer (got 's')")]
    assert failures[0].text == "{not json"
    assert failures[1].text == "[1]"
    assert failures[3].text == json.dumps({**_good(), "seq": "s"})
    assert failures[2].text == "x" * 200 + "…"
    assert failures[0].error == "not JSON: Expecting property name enclosed in double quotes"


def test_check_parses_dicts_and_reports_failures_by_position():
    bad = {**_good(), "seq": 2, "window_ns": None}
    r = check([], [_good(), bad, {**_good(), "seq": 3, "blob": "y" * 300}], CheckParams(poll_interval_ns=P))
    assert [(f.line, f.error) for f in r.parse_failures] == [(2, "window_ns must be [lo, hi] integers (got None)")]
    assert r.parse_failures[0].text == json.dumps(bad)
    assert r.counts["events"] == 3 and r.counts["events_readable"] == 2
    r2 = check([], [{**_good(), "window_ns": None, "blob": "y" * 300}], CheckParams(poll_interval_ns=P))
    assert len(r2.parse_failures[0].text) == 201 and r2.parse_failures[0].text.endswith("…")


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"poll_interval_ns": 0}, "poll_interval_ns must be > 0 (got 0)"),
        ({"poll_interval_ns": -1}, "poll_interval_ns must be > 0 (got -1)"),
        ({"mode": "push"}, "mode must be one of ('poll', 'stream') (got 'push')"),
        ({"latency_allowance_ns": -1}, "latency_allowance_ns must be >= 0 (got -1)"),
        ({"stream_latency_ns": -1}, "stream_latency_ns must be >= 0 (got -1)"),
        ({"completeness_grace_ns": -1}, "completeness_grace_ns must be >= 0 (got -1)"),
        ({"start_ns": 10, "end_ns": 9}, "end_ns (9) is before start_ns (10)"),
    ],
)
def test_params_refused(kw, error):
    with pytest.raises(ValueError) as e:
        CheckParams(**{"poll_interval_ns": P, **kw})
    assert str(e.value) == error


def test_params_edges_accepted():
    CheckParams(poll_interval_ns=1, latency_allowance_ns=0, stream_latency_ns=0, completeness_grace_ns=0)
    CheckParams(poll_interval_ns=P, start_ns=10, end_ns=10)
    CheckParams(poll_interval_ns=P, start_ns=10)
    CheckParams(poll_interval_ns=P, end_ns=10, mode="stream")


def test_clip_keeps_exactly_the_limit_and_strips_only_the_newline():
    events, failures = load_events_jsonl(["y" * 200 + "\n", "[2]  \n", "\n[3]\n"])
    assert events == []
    assert [f.text for f in failures] == ["y" * 200, "[2]  ", "\n[3]"]


def test_render_shows_ten_violations_by_default():
    many = [Violation("G5", f"v{i}") for i in range(12)]
    r = _report(results={"G5": GuaranteeResult("G5", False, many, {}, "")}, parse_failures=[], notes=[])
    lines = r.render().splitlines()
    assert "first 10 of 12 violation(s):" in lines
    assert [ln for ln in lines if ln.startswith("[G5]")] == [f"[G5] v{i}" for i in range(10)]


def test_run_start_derivation():
    """start_ns: the first OK list answer or stream opening (any code but never-open), else the first
    OK answer of any call, else the first record."""
    from fakecri.truth import RpcServed as R

    def start(*recs):
        return check(list(recs), [], CheckParams(poll_interval_ns=P)).start_ns

    ver_ok = R("Version", "v1", 10, 11, "OK")
    assert start(ver_ok, R("ListContainers", "v1", 30, 31, "ok")) == 30  # a list view wins over an earlier Version
    stream = R("GetContainerEvents", "v1", 40, 90, "UNAVAILABLE")
    assert start(ver_ok, stream, R("ListPodSandbox", "v1", 50, 51, "OK")) == 40
    assert start(R("GetContainerEvents", "v1", 5, 6, "UNIMPLEMENTED"), R("ListContainers", "v1", 7, 8, "UNAVAILABLE"),
                 ver_ok) == 10  # no view: the first OK answer
    assert start(ContainerTransition("c", "created", 3, "s"), R("ListContainers", "v1", 7, 8, "UNAVAILABLE"),
                 ver_ok) == 10
    assert start(ContainerTransition("c", "created", 3, "s"), R("ListContainers", "v1", 7, 8, "UNAVAILABLE")) == 3


def test_check_notes_and_unserialisable_input():
    r = check([ContainerTransition("c", "created", 3, "s")], [{"v": 1, "seq": {1, 2}}], CheckParams(poll_interval_ns=P))
    assert r.notes == ["truth holds no rpc records (recorded with record_rpcs=False?): visibility cannot be judged"]
    assert r.parse_failures[0].text.startswith('{"v": 1, "seq": "{1, 2}"')
    _, failures = load_events_jsonl(["{badX\n", "[1]X\n", "{bad  \n"])
    assert [f.text for f in failures] == ["{badX", "[1]X", "{bad  "]


def test_check_anchors_assignment_on_the_last_list():
    """check() hands the assignment the list answers: a polled running reported while the last list
    showed the reused ID's second incarnation goes to that one (which never ran: G5)."""
    from fakecri.truth import RpcServed as R

    truth = [ContainerTransition("c", "created", 10, "s"), ContainerTransition("c", "running", 20, "s"),
             ContainerTransition("c", "destroyed", 100, "s"), ContainerTransition("c", "created", 150, "s"),
             R("ListContainers", "v1", 250, 251, "OK")]
    ev = Event("container.running", 20, (15, 300), 300, container_id="c", seq=1)
    r = check(truth, [ev], CheckParams(poll_interval_ns=P))
    assert [v.message for v in r["G5"].violations] == ["container c#1: container.running (seq 1) at +0.000000s, "
                                                       "but it never ran"]
