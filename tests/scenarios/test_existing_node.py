"""``large_node: {existing: true}``: the node a sensor is deployed to is there before its first list.

Without it, ``fakecri verify`` and ``fakecri serve`` start the timeline at the client's first list,
so a large node at offset 0 reached the sensor as one burst of thousands of new containers after
that list -- a different test from a sensor starting on a full node.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scenarioclient import connect

from fakecri import scenario as sc
from fakecri.harness import Harness
from fakecri.truth import ContainerTransition, SandboxTransition

NODE = """\
flavor: containerd-1.7
seed: 3
generators:
  - large_node: {containers: 6, pods: 2, existing: true}
timeline:
  - {at: 0s, run_pod: late}
  - {at: 50ms, create: {name: c, pod: late, start: true}}
end: 100ms
"""


def test_an_existing_node_leads_the_plan_and_is_counted() -> None:
    plan = sc.expand(sc.loads(NODE))
    assert plan.found == 8  # two pods, six containers
    found = plan.steps[:plan.found]
    assert [type(s) for s in found] == [sc.RunPod] * 2 + [sc.CreateContainer] * 6
    assert all(s.at_ns == 0 for s in found)
    assert [s.pod for s in plan.steps[plan.found:] if isinstance(s, sc.RunPod)] == ["late"]


def test_existing_and_at_together_are_one_error_line() -> None:
    with pytest.raises(sc.ScenarioError) as e:
        sc.loads(NODE.replace("existing: true", "existing: true, at: 1s"))
    assert e.value.line == 4
    assert "an existing node has no offset" in str(e.value) and "existing: true" in str(e.value)
    with pytest.raises(sc.ScenarioError, match=r"large_node\.existing"):
        sc.loads(NODE.replace("existing: true", "existing: maybe"))


def test_existing_survives_a_round_trip() -> None:
    s = sc.loads(NODE)
    again = sc.loads(sc.dumps(s))
    assert again.generators == s.generators and again.generators[0].existing  # type: ignore[union-attr]


def test_the_first_list_of_a_held_runtime_shows_the_whole_node(tmp_path: Path) -> None:
    h = Harness(sc.loads(NODE), socket=str(tmp_path / "cri.sock"), clock="real")
    viewed = h.first_view()
    h.start(hold=True)
    try:
        c = connect(h.addr)
        try:
            first = c.rt.ListContainers(c.pb.ListContainersRequest(), timeout=5).containers
            pods = c.rt.ListPodSandbox(c.pb.ListPodSandboxRequest(), timeout=5).items
        finally:
            c.close()
        assert viewed.is_set()
        assert sorted(x.metadata.name for x in first) == [f"node-{i}" for i in range(6)]
        assert all(x.state == c.pb.CONTAINER_RUNNING for x in first)
        assert sorted(p.metadata.name for p in pods) == ["node-pod-0", "node-pod-1"]  # not the timeline's pod
        h.release()
        assert h.wait_end(10)
        assert "late" in h.pods and "c" in h.containers
    finally:
        h.stop()
    start = h.start_ns
    records = h.truth.records()
    born = [r for r in records if isinstance(r, ContainerTransition) and r.transition == "created"]
    born += [r for r in records if isinstance(r, SandboxTransition) and r.transition == "ready"]
    assert len(born) == 6 + 1 + 2 + 1
    before = [r for r in born if r.time_ns < start]
    assert len(before) == 8  # the node: recorded before the timeline started, the timeline's after
    assert all(r.time_ns >= start for r in born if r not in before)


def test_a_replay_finds_a_fresh_node_again(tmp_path: Path) -> None:
    with Harness(sc.loads(NODE), socket=str(tmp_path / "cri.sock"), clock="virtual") as h:
        assert len(h.model.containers) == 6  # found at start, before any step of the timeline
        h.run_to_end()
        first = set(h.model.containers)
        assert len(first) == 7
        h.replay()
        h.run_to_end()
        again = set(h.model.containers)
        assert len(again) == 7 and not first & again  # the old node was removed, a new one found
