"""The runtime model against a deliberately simple reference, driven by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from fakecri.clock import VirtualClock
from fakecri.flavors import FLAVORS, get_flavor
from fakecri.model import CriError, RuntimeModel
from fakecri.truth import ContainerTransition, SandboxTransition

ORDER = {"created": 0, "running": 1, "exited": 2, "destroyed": 3}


def new_model(flavor: str = "containerd-1.7") -> tuple[RuntimeModel, VirtualClock]:
    clock = VirtualClock()
    m = RuntimeModel(clock, get_flavor(flavor), seed=1)
    m.pull_image("busybox")
    return m, clock


def test_lifecycle_records_exact_times() -> None:
    m, clock = new_model()
    s = m.run_pod_sandbox("web", "default", "uid-1")
    clock.advance(10)
    c = m.create_container(s.id, "app", 0, "busybox")
    clock.advance(10)
    m.start_container(c.id)
    clock.advance(10)
    m.exit_container(c.id, 3)
    clock.advance(10)
    m.remove_container(c.id)
    recs = [r for r in m.truth if isinstance(r, ContainerTransition)]
    assert [(r.transition, r.time_ns - s.created_at) for r in recs] == [
        ("created", 10), ("running", 20), ("exited", 30), ("destroyed", 40)]
    assert recs[2].exit_code == 3 and recs[2].reason == "Error"
    assert c.created_at == s.created_at + 10 and c.started_at == c.created_at + 10
    assert c.finished_at == c.started_at + 10


@pytest.mark.parametrize(("code", "reason", "want"), [(0, None, "Completed"), (1, None, "Error"),
                                                      (137, "OOMKilled", "OOMKilled")])
def test_exit_reasons(code: int, reason: str | None, want: str) -> None:
    m, _ = new_model()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    m.start_container(c.id)
    m.exit_container(c.id, code, reason)
    assert (c.exit_code, c.reason) == (code, want)


def test_unknown_ids() -> None:
    m, _ = new_model("crio-1.26")
    m.stop_container("nope")  # idempotent
    m.remove_container("nope")
    m.stop_pod_sandbox("nope")
    m.remove_pod_sandbox("nope")
    for call in (m.container_status, m.start_container, m.pod_sandbox_status):
        with pytest.raises(CriError) as e:
            call("nope")
        assert e.value.code == "NOT_FOUND"


def test_containerd_stop_unknown_is_not_found() -> None:
    m, _ = new_model("containerd-1.6")
    with pytest.raises(CriError) as e:
        m.stop_container("nope")
    assert e.value.code == "NOT_FOUND"
    m.remove_container("nope")  # remove stays idempotent


def test_prefix_ids_and_filters() -> None:
    m, _ = new_model()
    s = m.run_pod_sandbox("p", "ns", "u", labels={"app": "a"})
    c1 = m.create_container(s.id, "one", 0, "busybox", labels={"tier": "web"})
    c2 = m.create_container(s.id, "two", 0, "busybox")
    m.start_container(c2.id)
    assert m.container_status(c1.id[:12]) is c1
    assert m.list_containers(state="running") == [c2]
    assert m.list_containers(label_selector={"tier": "web"}) == [c1]
    assert m.list_containers(sandbox_id=s.id[:8]) == [c1, c2]
    assert m.list_pod_sandbox(label_selector={"app": "b"}) == []


def test_illegal_transitions() -> None:
    m, _ = new_model()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    m.start_container(c.id)
    with pytest.raises(CriError) as e:
        m.start_container(c.id)
    assert e.value.code == "UNKNOWN" and "CONTAINER_RUNNING" in e.value.message
    with pytest.raises(CriError) as e:
        m.create_container(s.id, "c", 0, "busybox")
    assert "reserve container name" in e.value.message
    with pytest.raises(CriError) as e:
        m.create_container(s.id, "d", 0, "never-pulled")
    assert e.value.code == "NOT_FOUND"


def test_remove_running_forces_or_refuses() -> None:
    m, _ = new_model()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    m.start_container(c.id)
    m.remove_container(c.id)
    kinds = [r.transition for r in m.truth if isinstance(r, ContainerTransition)]
    assert kinds == ["created", "running", "exited", "destroyed"]
    strict = RuntimeModel(VirtualClock(), get_flavor("crio-1.26").replace(remove_running="refuse"))
    strict.pull_image("busybox")
    s2 = strict.run_pod_sandbox("p", "ns", "u")
    c2 = strict.create_container(s2.id, "c", 0, "busybox")
    strict.start_container(c2.id)
    with pytest.raises(CriError):
        strict.remove_container(c2.id)


def test_remove_sandbox_takes_its_containers() -> None:
    m, _ = new_model()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    m.start_container(c.id)
    m.remove_pod_sandbox(s.id)
    assert not m.containers and not m.sandboxes
    sb = [r.transition for r in m.truth if isinstance(r, SandboxTransition)]
    assert sb == ["ready", "notready", "destroyed"]


def test_lose_state_records_everything_gone() -> None:
    m, _ = new_model()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    m.start_container(c.id)
    m.lose_state()
    last = [r for r in m.truth if isinstance(r, ContainerTransition)][-1]
    assert last.transition == "destroyed" and not m.containers


def test_every_flavor_is_consistent() -> None:
    for f in FLAVORS.values():
        assert set(f.apis) <= {"v1", "v1alpha2"}
        if f.events != "unimplemented":
            assert "v1" in f.apis, f.name


class ModelVersusReference(RuleBasedStateMachine):
    """Arbitrary call sequences: results match a tiny reference, and invariants hold."""

    sandboxes = Bundle("sandboxes")
    containers = Bundle("containers")

    def __init__(self) -> None:
        super().__init__()
        self.model, self.clock = new_model()
        self.ref_c: dict[str, str] = {}  # id -> state
        self.ref_s: dict[str, str] = {}
        self.ref_pod: dict[str, str] = {}  # container id -> its sandbox id, as the reference saw it created
        self.n = 0

    def _code(self, fn, *args) -> str:  # type: ignore[no-untyped-def]
        try:
            fn(*args)
            return "OK"
        except CriError as e:
            return e.code

    @rule(target=sandboxes, dt=st.integers(0, 5))
    def run_pod(self, dt: int) -> str:
        self.clock.advance(dt)
        self.n += 1
        s = self.model.run_pod_sandbox(f"p{self.n}", "ns", f"u{self.n}")
        self.ref_s[s.id] = "ready"
        return s.id

    @rule(target=containers, sid=sandboxes, dt=st.integers(0, 5))
    def create(self, sid: str, dt: int) -> str:
        self.clock.advance(dt)
        self.n += 1
        # containerd: a stopped sandbox has no task any more -> NOT_FOUND, like an unknown one
        want = "OK" if self.ref_s.get(sid) == "ready" else "NOT_FOUND"
        try:
            c = self.model.create_container(sid, f"c{self.n}", 0, "busybox")
        except CriError as e:
            assert e.code == want
            return "missing"
        assert want == "OK"
        self.ref_c[c.id] = "created"
        self.ref_pod[c.id] = sid
        return c.id

    @rule(cid=containers)
    def start(self, cid: str) -> None:
        want = {"created": "OK", None: "NOT_FOUND"}.get(self.ref_c.get(cid), "UNKNOWN")
        in_stopped_pod = want == "OK" and self.ref_s.get(self.ref_pod[cid]) != "ready"
        if in_stopped_pod:
            want = "UNKNOWN"  # containerd: the start fails and leaves it EXITED (StartError)
        assert self._code(self.model.start_container, cid) == want
        if want == "OK":
            self.ref_c[cid] = "running"
        elif in_stopped_pod:
            self.ref_c[cid] = "exited"

    @rule(cid=containers, code=st.integers(0, 255))
    def exit(self, cid: str, code: int) -> None:
        if self.ref_c.get(cid) == "running":
            self.model.exit_container(cid, code)
            self.ref_c[cid] = "exited"
            assert self.model.containers[cid].exit_code == code

    @rule(cid=containers)
    def stop(self, cid: str) -> None:
        want = "NOT_FOUND" if cid not in self.ref_c else "OK"  # containerd: unknown -> NOT_FOUND
        assert self._code(self.model.stop_container, cid) == want
        if self.ref_c.get(cid) == "running":
            self.ref_c[cid] = "exited"

    @rule(cid=consumes(containers))
    def remove(self, cid: str) -> None:
        assert self._code(self.model.remove_container, cid) == "OK"
        self.ref_c.pop(cid, None)

    @rule(sid=sandboxes)
    def stop_pod(self, sid: str) -> None:
        if sid in self.ref_s:
            self.model.stop_pod_sandbox(sid)
            self.ref_s[sid] = "notready"
            for cid in self._containers_of(sid):  # running ones are killed; created and exited stay
                if self.ref_c[cid] == "running":
                    self.ref_c[cid] = "exited"

    @rule(sid=consumes(sandboxes))
    def remove_pod(self, sid: str) -> None:
        self.model.remove_pod_sandbox(sid)
        self.ref_s.pop(sid, None)
        for cid in self._containers_of(sid):  # its containers go with it
            del self.ref_c[cid]

    def _containers_of(self, sid: str) -> list[str]:
        return [cid for cid in self.ref_c if self.ref_pod[cid] == sid]

    @invariant()
    def states_match_reference(self) -> None:
        assert {c.id: c.state for c in self.model.list_containers()} == self.ref_c
        assert {s.id: s.state for s in self.model.list_pod_sandbox()} == self.ref_s

    @invariant()
    def truth_is_a_lifecycle(self) -> None:
        last: dict[str, int] = {}
        for r in self.model.truth:
            if isinstance(r, ContainerTransition):
                assert ORDER[r.transition] > last.get(r.container_id, -1)
                last[r.container_id] = ORDER[r.transition]
        for c in self.model.containers.values():
            assert c.created_at > 0
            assert (c.started_at > 0) == (c.state in ("running", "exited")) or c.state == "exited"
            assert (c.finished_at > 0) == (c.state == "exited")


TestModelVersusReference = ModelVersusReference.TestCase
TestModelVersusReference.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
