"""fakecri.scenario: the YAML format, its one-line errors, expansion, and the hypothesis strategy."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from fakecri import scenario as sc
from fakecri.server import IMAGE_RPCS, RUNTIME_RPCS
from fakecri.strategies import scenarios

SCHEMA = json.loads((Path(sc.__file__).parent / "scenario.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
MS = 1_000_000


def load_text(tmp_path: Path, text: str, name: str = "bad.yaml") -> sc.Scenario:
    p = tmp_path / name
    p.write_text(text)
    return sc.load(p)


def error_of(tmp_path: Path, text: str) -> sc.ScenarioError:
    with pytest.raises(sc.ScenarioError) as e:
        load_text(tmp_path, text)
    return e.value


# ---- loading -----------------------------------------------------------------------------------


def test_a_full_scenario_loads_into_the_model(tmp_path: Path) -> None:
    s = load_text(tmp_path, """\
# One line summary.
# More text.
flavor: crio-1.26
seed: 4
quirks: {handshake: cmux-settings, events: stream, duplicate_ids: true, latency: {ms: 3}}
images: [busybox, alpine:3.19]
timeline:
  - {at: 0, run_pod: {name: web, namespace: prod, labels: {tier: front}}}
  - at: 250ms
    create: {name: app, pod: web, image: alpine:3.19, labels: {a: b}}
  - {at: 0.3s, start: app}
  - {at: 1s, exit: {container: app, reason: OOMKilled}}
  - {at: 1s, fault_start: {name: unavailable, count: 2}}
  - {at: 1100ms, remove: {container: app}}
  - {at: 1100ms, close_event_streams: true}
  - {at: 2s, restart_runtime: {downtime: 100ms, keep_state: false}}
processes:
  - {at: 400ms, container: app, argv: [ls, -l], delay: 5ms, pid: 77}
end: 3s
""", "full.yaml")
    assert s.name == "full" and s.summary == "One line summary." and s.flavor == "crio-1.26"
    assert s.quirks == sc.Quirks(handshake="cmux-settings", events="stream",
                                 faults={"duplicate_ids": {}, "latency": {"ms": 3.0}})
    assert s.timeline[0] == sc.RunPod(at_ns=0, pod="web", namespace="prod", labels={"tier": "front"})
    assert s.timeline[2] == sc.StartContainer(at_ns=300 * MS, container="app")
    assert s.timeline[3] == sc.ExitContainer(at_ns=1000 * MS, container="app", code=137, reason="OOMKilled")
    assert s.timeline[7] == sc.RestartRuntime(at_ns=2000 * MS, downtime_ns=100 * MS, keep_state=False)
    assert s.processes == (sc.Process(at_ns=400 * MS, container="app", argv=("ls", "-l"), delay_ns=5 * MS, pid=77),)
    assert s.end_ns == 3000 * MS and s.timeline[0].line == 8
    plan = sc.expand(s)
    kinds = [type(st).__name__ for st in plan.steps]
    assert kinds == ["RunPod", "CreateContainer", "StartContainer", "Process", "ExitContainer", "FaultStart",
                     "RemoveContainer", "CloseEventStreams", "RuntimeDown", "RuntimeUp"]
    assert plan.flavor.events == "stream" and plan.end_ns == 3000 * MS


def test_an_empty_file_is_an_empty_runtime(tmp_path: Path) -> None:
    s = load_text(tmp_path, "# nothing but a comment\n")
    assert s.timeline == () and s.flavor == sc.DEFAULT_FLAVOR and s.images == sc.DEFAULT_IMAGES
    assert sc.expand(s).end_ns == 0


# ---- errors: file:line: what (accepted: ...) -------------------------------------------------------

BAD = [
    ("flavour: crio-1.13\n", 1, 'unknown key "flavour"', "flavor"),
    ("flavor: crio-9\n", 1, 'flavor: "crio-9" is not one of', "crio-1.13"),
    ("timeline:\n  - {at: \"250\", start: x}\n", 2, 'at: "250" is not a duration: missing unit', "250ms"),
    ("timeline:\n  - {at: -1s, run_pod: a}\n", 2, 'is negative', "Go duration"),
    ("timeline:\n  - {at: 1s}\n", 2, "needs exactly one action, found 0", "run_pod"),
    ("timeline:\n  - {at: 1s, run_pod: a, stop_pod: a}\n", 2, "needs exactly one action, found 2", "run_pod"),
    ("timeline:\n  - {run_pod: a}\n", 2, 'a timeline step is missing "at"', "at"),
    ("timeline:\n  - {at: 0s, run_pod: web}\n  - at: 1s\n    start: app\n", 3,
     'start at 1s: no container "app" exists then', "no container exists"),
    ("timeline:\n  - {at: 0s, run_pod: web}\n  - {at: 1s, create: {name: app, pod: web}}\n"
     "  - {at: 2s, exit: app}\n", 4, 'exit at 2s: container "app" is created, not running', "after start"),
    ("timeline:\n  - {at: 0s, run_pod: web}\n  - {at: 1s, create: {name: app, pod: db}}\n", 3,
     'no pod "db" exists then', "pods that exist then: web"),
    ("timeline:\n  - {at: 0s, run_pod: web}\n  - {at: 1s, create: {name: app, pod: web, image: nginx}}\n", 3,
     'image "nginx" is not preloaded', "busybox"),
    ("timeline:\n  - {at: 2s, run_pod: web}\n  - {at: 1s, create: {name: app, pod: web}}\n", 3,
     'no pod "web" exists then', "no pod exists"),
    ("timeline:\n  - {at: 0s, restart_runtime: {downtime: 1s}}\n  - {at: 500ms, run_pod: web}\n", 3,
     "the runtime is down from 0s to 1s (restart_runtime at line 2)", "only exit"),
    ("timeline:\n  - {at: 0s, fault_start: {name: latency}}\n", 2, 'fault latency needs "ms"', "ms:"),
    ("timeline:\n  - {at: 0s, fault_start: {name: hang, methods: [ListPods]}}\n", 2,
     'fault hang: methods: "ListPods" is not one of', "ListContainers"),
    ("timeline:\n  - {at: 0s, fault_stop: hang}\n", 2, "fault hang is not on", "fault_start"),
    ("timeline:\n  - {at: 0s, fault_start: slowness}\n", 2, '"slowness" is not one of', "latency"),
    ("quirks: {handshake: cmux2}\n", 1, 'quirks.handshake: "cmux2"', "cmux-settings"),
    ("flavor: containerd-1.6\ntimeline:\n  - {at: 0s, close_event_streams: true}\n", 3,
     "events: unimplemented, no streams to close", "stream-then-closed"),
    ("timeline:\n  - {at: 2s, run_pod: web}\nend: 1s\n", 2, "is after the scenario's end (1s)", "end of at least 2s"),
    ("generators:\n  - churn: {duration: 1s, rate: 0, lifetime: 1s}\n", 2, "churn.rate must be a number > 0", "> 0"),
    ("generators:\n  - churn: {duration: 1s, rate: 5, lifetime: {normal: 1s}}\n", 2,
     "churn.lifetime must name one distribution", "exponential"),
    ("generators:\n  - churn: {duration: 1s, rate: 5, lifetime: 1s, pods: [web]}\n", 2,
     'no pod "web" exists then', "no pod exists"),
    ("processes:\n  - {at: 1s, container: app, argv: [ls]}\n", 2, 'no container "app" exists then', "container"),
    ("seed: [1]\n", 1, "seed must be an integer >= 0", "integer"),
    ("timeline:\n  - {at: 0s, run_pod: a}\n  - {at: 0s, run_pod: a}\n", 3, 'pod "a" already exists', "remove_pod"),
    ("a: 1\na: 2\n", 2, 'duplicate key "a"', "each key once"),
    ("timeline: [\n", 2, "not valid YAML", "YAML mapping"),
    ("- 1\n", 1, "the scenario must be a mapping, not a list", "flavor"),
]


@pytest.mark.parametrize(("text", "line", "problem", "accepted"), BAD)
def test_bad_scenarios_give_one_line_with_file_line_and_accepted(tmp_path: Path, text: str, line: int,
                                                                 problem: str, accepted: str) -> None:
    e = error_of(tmp_path, text)
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'bad.yaml'}:{line}: "), msg
    assert problem in msg, msg
    assert "(accepted: " in msg and accepted in msg.split("(accepted: ", 1)[1], msg
    assert e.line == line


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(sc.ScenarioError, match=r"nope\.yaml: cannot read: .*\(accepted: "):
        sc.load(tmp_path / "nope.yaml")


# ---- expansion ----------------------------------------------------------------------------------

CHURN = """\
seed: {seed}
generators:
  - churn: {{start: 100ms, duration: 2s, rate: 40, lifetime: {{exponential: 200ms}},
             exit_codes: {{0: 3, 1: 1}}, removal_delay: {{uniform: [0s, 50ms]}}, pods: 3}}
  - large_node: {{containers: 30, pods: 4}}
"""


def test_generators_expand_deterministically_by_seed(tmp_path: Path) -> None:
    a = sc.expand(load_text(tmp_path, CHURN.format(seed=1), "a.yaml"))
    b = sc.expand(load_text(tmp_path, CHURN.format(seed=1), "b.yaml"))
    c = sc.expand(load_text(tmp_path, CHURN.format(seed=2), "c.yaml"))
    assert a.steps == b.steps and a.steps != c.steps
    creates = [st for st in a.steps if isinstance(st, sc.CreateContainer)]
    churned = [st for st in creates if st.container.startswith("churn-")]
    assert 40 <= len(churned) <= 130  # ~80 arrivals expected
    assert len([st for st in creates if st.container.startswith("node-")]) == 30
    assert {st.pod for st in churned} <= {"churn-pod-0", "churn-pod-1", "churn-pod-2"}
    exits = [st for st in a.steps if isinstance(st, sc.ExitContainer)]
    assert {st.code for st in exits} == {0, 1}
    # every churned container: create <= exit <= remove, in plan order
    order = {(type(st).__name__, getattr(st, "container", "")): i for i, st in enumerate(a.steps)}
    for st in churned:
        if ("RemoveContainer", st.container) in order:
            assert order[("CreateContainer", st.container)] < order[("ExitContainer", st.container)] \
                < order[("RemoveContainer", st.container)]


def test_regular_arrivals_are_evenly_spaced() -> None:
    s = sc.Scenario(generators=(sc.Churn(duration_ns=1000 * MS, rate=10, arrivals="regular",
                                         lifetime=sc.Distribution(value_ns=5 * MS)),))
    ats = [st.at_ns for st in sc.expand(s).steps if isinstance(st, sc.CreateContainer)]
    assert ats == [i * 100 * MS for i in range(10)]


def test_generated_steps_after_the_end_are_dropped() -> None:
    s = sc.Scenario(generators=(sc.Churn(duration_ns=1000 * MS, rate=10, arrivals="regular",
                                         lifetime=sc.Distribution(value_ns=150 * MS)),), end_ns=1000 * MS)
    plan = sc.expand(s)
    assert max(st.at_ns for st in plan.steps) <= 1000 * MS
    assert sum(isinstance(st, sc.CreateContainer) for st in plan.steps) == 10
    assert sum(isinstance(st, sc.ExitContainer) for st in plan.steps) == 9  # the last one exits at 1.05 s


def test_pod_uids_are_derived_from_seed_and_name() -> None:
    s = sc.Scenario(seed=3, timeline=(sc.RunPod(at_ns=0, pod="a"), sc.RemovePod(at_ns=1, pod="a"),
                                      sc.RunPod(at_ns=2, pod="a")))
    uids = [st.uid for st in sc.expand(s).steps if isinstance(st, sc.RunPod)]
    assert len(set(uids)) == 2 and uids == [st.uid for st in sc.expand(s).steps if isinstance(st, sc.RunPod)]


# ---- one model: YAML and hypothesis -------------------------------------------------------------


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(scenarios())
def test_drawn_scenarios_are_valid_and_round_trip_through_yaml(s: sc.Scenario) -> None:
    sc.expand(s)
    text = sc.dumps(s)
    assert sc.loads(text) == s
    data = json.loads(json.dumps(yaml.safe_load(text)))
    VALIDATOR.validate(data)


def test_bundled_scenarios_match_the_json_schema() -> None:
    for name, path in sc.bundled().items():
        data = json.loads(json.dumps(yaml.safe_load(path.read_text())))
        errors = list(VALIDATOR.iter_errors(data))
        assert not errors, (name, errors[0].message)


def test_schema_and_loader_know_the_same_faults_and_methods() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert set(SCHEMA["properties"]["quirks"]["properties"]) == {*sc._QUIRK_KEYS, *sc.FAULTS}
    assert set(sc.CRI_METHODS) == {*RUNTIME_RPCS, *IMAGE_RPCS, "GetContainerEvents"}
