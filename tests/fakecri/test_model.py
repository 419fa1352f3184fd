"""The runtime model: literal tables of what each call answers, records and tells listeners, and
arbitrary call sequences against a deliberately simple reference (hypothesis).

Every expected value is written out by hand from the CRI behaviour the model documents, never
computed with the model itself."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from fakecri.clock import VirtualClock
from fakecri.flavors import FLAVORS, get_flavor
from fakecri.model import CriError, RuntimeModel
from fakecri.truth import ContainerTransition, PodRef, SandboxTransition

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
    def each_pods_containers_are_indexed_in_creation_order(self) -> None:
        every = list(self.model.containers.values())
        for sid in {c.sandbox_id for c in every} | set(self.model.sandboxes):
            assert self.model.pod_containers(sid) == [c for c in every if c.sandbox_id == sid]

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
# 60 histories under the ci profile (200 examples), 20 under dev, more under deep
TestModelVersusReference.settings = settings(
    max_examples=max(20, settings.default.max_examples * 3 // 10), stateful_step_count=40, deadline=None
)


# -- literal tables ------------------------------------------------------------------------------

BUSYBOX = "docker.io/library/busybox:latest"
BUSYBOX_DIGEST = "de68ccc327e508f44a3a150fc877a442581bb03dd53e24b418fbc425ece79d52"  # sha256 of BUSYBOX


def tmodel(flavor: str = "containerd-1.7") -> tuple[RuntimeModel, VirtualClock]:
    clock = VirtualClock(1_000)
    m = RuntimeModel(clock, get_flavor(flavor), seed=7)
    m.pull_image("busybox")
    return m, clock


def cri_error(fn, *args, **kw) -> tuple[str, str]:
    with pytest.raises(CriError) as e:
        fn(*args, **kw)
    assert str(e.value) == e.value.message
    return e.value.code, e.value.message


@pytest.mark.parametrize(
    ("ref", "norm"),
    [
        ("busybox", BUSYBOX),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("my/img", "docker.io/my/img:latest"),
        ("quay.io/x/y:2", "quay.io/x/y:2"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("registry:5000/x:3", "registry:5000/x:3"),
        ("sha256:abc", "sha256:abc"),
        ("x@sha256:abc", "x@sha256:abc"),
    ],
)
def test_normalize_image(ref, norm):
    assert RuntimeModel.normalize_image(ref) == norm


def test_images():
    m, _ = tmodel()
    (img,) = m.images.values()
    assert img.id == f"sha256:{BUSYBOX_DIGEST}"
    assert img.repo_tags == [BUSYBOX]
    assert img.repo_digests == [f"docker.io/library/busybox@sha256:{BUSYBOX_DIGEST[::-1]}"]
    assert img.size == 1_000_000 + 0xDE68C and not img.pinned
    assert m.pull_image("docker.io/library/busybox") is img  # already there
    for ref in (img.id, "busybox", BUSYBOX, img.repo_digests[0], "de68cc"):
        assert m.resolve_image(ref) is img, ref
    assert m.resolve_image("alpine") is None
    assert m.resolve_image("ff") is None
    m.remove_image("alpine")  # unknown: nothing happens
    assert list(m.images) == [img.id]
    m.remove_image("busybox")
    assert m.images == {}


def test_sandbox_calls():
    m, clock = tmodel()
    assert cri_error(m.run_pod_sandbox, "", "ns", "u") == ("UNKNOWN", "sandbox config must include metadata")
    s = m.run_pod_sandbox("web", "ns", "u", labels={"a": "1"})
    assert (s.state, s.created_at, s.pid, s.ip, s.attempt) == ("ready", 1_000, 1001, "10.88.4.2", 0)
    assert len(s.id) == 64 and int(s.id, 16) >= 0
    assert s.pod == PodRef("web", "ns", "u")
    code, msg = cri_error(m.run_pod_sandbox, "web", "ns", "u")
    assert code == "UNKNOWN"
    assert msg == f'failed to reserve sandbox name "web_ns_u_0": name "web_ns_u_0" is reserved for "{s.id}"'
    clock.advance(5)
    s1 = m.run_pod_sandbox("web", "ns", "u", attempt=1, network="NODE")
    assert (s1.ip, s1.pid, s1.created_at) == ("", 1002, 1_005)
    s2 = m.run_pod_sandbox("db", "ns", "u2")
    assert s2.ip == "10.88.4.4"
    assert m.pod_sandbox_status(s.id[:10]) is s
    assert m.list_pod_sandbox(id=s1.id[:10]) == [s1]
    assert m.list_pod_sandbox(label_selector={"a": "1"}) == [s]
    assert m.list_pod_sandbox(label_selector={"a": "2"}) == []
    m.stop_pod_sandbox(s.id)
    m.stop_pod_sandbox(s.id)  # stopping twice is fine
    assert m.list_pod_sandbox(state="notready") == [s]
    assert m.list_pod_sandbox(state="ready") == [s1, s2]
    assert [(r.sandbox_id, r.transition, r.time_ns) for r in m.truth if isinstance(r, SandboxTransition)] == [
        (s.id, "ready", 1_000), (s1.id, "ready", 1_005), (s2.id, "ready", 1_005), (s.id, "notready", 1_005)]
    rec = next(r for r in m.truth if isinstance(r, SandboxTransition))
    assert rec.labels == {"a": "1"} and rec.pod == PodRef("web", "ns", "u")
    m.remove_pod_sandbox("nope")  # idempotent
    assert cri_error(m.stop_pod_sandbox, "nope")[0] == "NOT_FOUND"  # containerd
    crio, _ = tmodel("crio-1.26")
    crio.stop_pod_sandbox("nope")  # CRI-O: fine


def test_id_prefixes_and_reuse():
    m, _ = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u")
    a, b = "ab" + "0" * 62, "ab" + "1" * 62
    m.reuse_ids = [a, b]
    ca = m.create_container(s.id, "a", 0, "busybox")
    assert ca.id == a
    m.reuse_ids = [a, "cd" + "2" * 62]  # a is live: skipped
    cb = m.create_container(s.id, "b", 0, "busybox")
    assert cb.id == "cd" + "2" * 62 and m.reuse_ids == []
    m.reuse_ids = [b]
    assert m.create_container(s.id, "c", 0, "busybox").id == b
    assert cri_error(m.find_container, "ab") == ("UNKNOWN", "ambiguous container id prefix 'ab': 2 matches")
    assert m.find_container("ab0") is ca
    assert cri_error(m.find_container, "") == (
        "UNKNOWN", 'an error occurred when try to find container "": Prefix can\'t be empty')
    assert cri_error(m.find_sandbox, "zz") == (
        "NOT_FOUND", 'an error occurred when try to find sandbox "zz": not found')
    m.remove_container(a)
    m.reuse_ids = [a]
    again = m.create_container(s.id, "a2", 0, "busybox")
    assert again.id == a  # a reused ID, once free
    assert [r.transition for r in m.truth if isinstance(r, ContainerTransition) and r.container_id == a] == [
        "created", "destroyed", "created"]


def test_create_container_refusals():
    m, _ = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u")
    assert cri_error(m.create_container, "nope", "c", 0, "busybox") == (
        "NOT_FOUND", 'failed to find sandbox id "nope": not found')
    assert cri_error(m.create_container, s.id, "", 0, "busybox") == (
        "UNKNOWN", "container config must include metadata")
    assert cri_error(m.create_container, s.id, "c", 0, "alpine") == (
        "NOT_FOUND", 'failed to resolve image "alpine": not found')
    c = m.create_container(s.id, "c", 0, "busybox", labels={"t": "w"})
    assert (c.image, c.image_ref, c.state, c.created_at) == (BUSYBOX, f"sha256:{BUSYBOX_DIGEST}", "created", 1_000)
    assert (c.started_at, c.finished_at, c.exit_code, c.reason, c.pid) == (0, 0, 0, "", 0)
    assert cri_error(m.create_container, s.id, "c", 0, "busybox") == (
        "UNKNOWN",
        f'failed to reserve container name "c_p_ns_u_0": name "c_p_ns_u_0" is reserved for "{c.id}"',
    )
    c1 = m.create_container(s.id, "c", 1, f"sha256:{BUSYBOX_DIGEST}")  # another attempt: fine
    assert c1.image == f"sha256:{BUSYBOX_DIGEST}"
    m.remove_container(c.id)
    assert m.create_container(s.id, "c", 0, "busybox").name == "c"  # the name is free again
    m.stop_pod_sandbox(s.id)
    code, msg = cri_error(m.create_container, s.id, "d", 0, "busybox")
    assert code == "NOT_FOUND" and msg.startswith("failed to get sandbox container task: no running task found")
    crio, _ = tmodel("crio-1.26")
    s2 = crio.run_pod_sandbox("p", "ns", "u")
    crio.stop_pod_sandbox(s2.id)
    assert cri_error(crio.create_container, s2.id, "d", 0, "busybox") == (
        "UNKNOWN", f"sandbox container {s2.id!r} is not running")


def test_container_lifecycle_records_and_listeners():
    m, clock = tmodel()
    seen: list[tuple[str, str, str]] = []
    m.on_change(lambda kind, obj, tr: seen.append((kind, obj.id[:4], tr)))
    s = m.run_pod_sandbox("p", "ns", "u")
    clock.advance(10)
    c = m.create_container(s.id, "c", 2, "busybox", labels={"l": "v"})
    clock.advance(10)
    m.start_container(c.id)
    assert (c.state, c.started_at, c.pid) == ("running", 1_020, 1002)
    clock.advance(10)
    assert cri_error(m.exit_container, "nope")[0] == "NOT_FOUND"
    m.exit_container(c.id)  # exit code 0 unless told otherwise
    assert (c.state, c.finished_at, c.exit_code, c.reason, c.pid) == ("exited", 1_030, 0, "Completed", 0)
    assert cri_error(m.exit_container, c.id) == ("FAILED_PRECONDITION", f"container {c.id} is not running")
    clock.advance(10)
    m.remove_pod_sandbox(s.id)
    recs = [r for r in m.truth if isinstance(r, ContainerTransition)]
    assert [(r.transition, r.time_ns, r.exit_code, r.reason) for r in recs] == [
        ("created", 1_010, None, None),
        ("running", 1_020, None, None),
        ("exited", 1_030, 0, "Completed"),
        ("destroyed", 1_040, None, None),
    ]
    for r in recs:
        assert (r.sandbox_id, r.name, r.attempt, r.image, r.labels) == (s.id, "c", 2, BUSYBOX, {"l": "v"})
        assert r.image_ref == f"sha256:{BUSYBOX_DIGEST}" and r.pod == PodRef("p", "ns", "u")
    sid, cid = s.id[:4], c.id[:4]
    assert seen == [
        ("sandbox", sid, "ready"),
        ("container", cid, "created"),
        ("container", cid, "running"),
        ("container", cid, "exited"),
        ("sandbox", sid, "notready"),
        ("container", cid, "destroyed"),
        ("sandbox", sid, "destroyed"),
    ]


def test_stop_and_remove_kill_with_sigkill():
    m, clock = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    idle = m.create_container(s.id, "idle", 0, "busybox")
    m.stop_container(idle.id)  # created: nothing to stop
    assert idle.state == "created"
    m.start_container(c.id)
    clock.advance(3)
    m.stop_container(c.id)
    assert (c.state, c.exit_code, c.reason, c.finished_at) == ("exited", 137, "Error", 1_003)
    m.stop_container(c.id)  # again: nothing
    assert c.finished_at == 1_003
    assert cri_error(m.stop_container, "nope")[0] == "NOT_FOUND"
    d = m.create_container(s.id, "d", 0, "busybox")
    m.start_container(d.id)
    clock.advance(1)
    m.remove_container(d.id)
    assert (d.state, d.exit_code, d.reason, d.finished_at) == ("removed", 137, "Error", 1_004)
    m.remove_container(idle.id)  # a created container is removed without an exit
    assert [r.transition for r in m.truth if isinstance(r, ContainerTransition) and r.container_id == idle.id] == [
        "created", "destroyed"]
    assert set(m.containers) == {c.id}


def test_start_refusals_and_start_error():
    m, clock = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    m.start_container(c.id)
    assert cri_error(m.start_container, c.id) == (
        "UNKNOWN", f'failed to set starting state for container "{c.id}": container is in CONTAINER_RUNNING state')
    d = m.create_container(s.id, "d", 0, "busybox")
    clock.advance(7)
    m.stop_pod_sandbox(s.id)
    msg = f'sandbox container "{s.id}" is not running'
    assert cri_error(m.start_container, d.id) == ("UNKNOWN", msg)
    assert (d.state, d.exit_code, d.reason, d.message, d.finished_at, d.started_at) == (
        "exited", 128, "StartError", msg, 1_007, 0)
    last = [r for r in m.truth if isinstance(r, ContainerTransition)][-1]
    assert (last.container_id, last.transition, last.exit_code, last.reason) == (d.id, "exited", 128, "StartError")
    assert (c.state, c.exit_code) == ("exited", 137)  # the pod stop killed it
    crio, _ = tmodel("crio-1.26")
    s2 = crio.run_pod_sandbox("p", "ns", "u")
    e = crio.create_container(s2.id, "e", 0, "busybox")
    crio.stop_pod_sandbox(s2.id)
    crio.start_container(e.id)  # CRI-O has no such check in the model
    assert e.state == "running"


def test_exec_sync():
    """ExecSync runs through the interpreter; texts as containerd 1.6 words them (recorded)."""
    m, _ = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    assert cri_error(m.exec_sync, c.id, ["true"]) == (
        "UNKNOWN", "failed to exec in container: container is in CONTAINER_CREATED state")
    m.start_container(c.id)
    res = m.exec_sync(c.id, ["sh", "-c", "echo a; echo b >&2; exit 5"])
    assert (res.stdout, res.stderr, res.exit_code, res.duration_ns, res.error) == (b"a\n", b"b\n", 5, 0, None)
    res = m.exec_sync(c.id, ["sleep", "5"], 1)
    assert (res.duration_ns, res.error.code, res.error.message) == (
        10**9, "DEADLINE_EXCEEDED", "failed to exec in container: timeout 1s exceeded: context deadline exceeded")
    code, msg = cri_error(m.exec_sync, c.id, ["nosuchcmd"])
    assert code == "UNKNOWN" and msg.endswith(
        'unable to start container process: exec: "nosuchcmd": executable file not found in $PATH: unknown')
    m.exec_result = (b"out", b"err", 3)  # a scenario's fixed answer wins
    res = m.exec_sync(c.id[:6], ["true"])
    assert (res.stdout, res.stderr, res.exit_code) == (b"out", b"err", 3)
    assert cri_error(m.exec_sync, "nope", []) == (
        "NOT_FOUND", 'failed to exec in container: failed to find container "nope" in store: not found')


def test_lose_state_truth_table():
    m, clock = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u")
    stopped = m.run_pod_sandbox("q", "ns", "u")
    run = m.create_container(s.id, "run", 0, "busybox")
    m.start_container(run.id)
    idle = m.create_container(s.id, "idle", 0, "busybox")
    m.stop_pod_sandbox(stopped.id)
    n = len(m.truth.records())
    clock.advance(50)
    m.lose_state()
    after = [
        (r.kind, r.container_id if r.kind == "container" else r.sandbox_id, r.transition, r.time_ns,
         getattr(r, "exit_code", None))
        for r in m.truth.records()[n:]
    ]
    assert after == [
        ("container", run.id, "exited", 1_050, 137),
        ("container", run.id, "destroyed", 1_050, None),
        ("container", idle.id, "destroyed", 1_050, None),
        ("sandbox", s.id, "notready", 1_050, None),
        ("sandbox", s.id, "destroyed", 1_050, None),
        ("sandbox", stopped.id, "destroyed", 1_050, None),
    ]
    assert m.containers == {} and m.sandboxes == {}


def test_list_containers_filters():
    m, _ = tmodel()
    s1 = m.run_pod_sandbox("p", "ns", "u")
    s2 = m.run_pod_sandbox("q", "ns", "u")
    a = m.create_container(s1.id, "a", 0, "busybox", labels={"x": "1", "y": "2"})
    b = m.create_container(s2.id, "b", 0, "busybox", labels={"x": "1"})
    m.start_container(b.id)
    assert m.list_containers() == [a, b]
    assert m.list_containers(state="running") == [b]
    assert m.list_containers(state="created") == [a]
    assert m.list_containers(state="exited") == []
    assert m.list_containers(sandbox_id=s2.id[:5]) == [b]
    assert m.list_containers(id=a.id[:5]) == [a]
    assert m.list_containers(label_selector={"x": "1"}) == [a, b]
    assert m.list_containers(label_selector={"x": "1", "y": "2"}) == [a]
    assert m.list_containers(label_selector={}) == [a, b]
    assert m.list_containers(label_selector={"z": "1"}) == []


def test_seeded_ids_and_injected_truth():
    from fakecri.truth import Truth

    truth = Truth()
    m = RuntimeModel(VirtualClock(1), get_flavor("containerd-1.7"), truth, seed=0)
    assert m.truth is truth and m.reuse_ids == [] and m.runtime_config == {} and m.exec_result is None
    s = m.run_pod_sandbox("p", "ns", "u")
    assert s.id == "f728b4fa42485e3a0a5d2f346baa9455e3e70682c2094cac629f6fbed82c07cd"  # random.Random(0)
    assert [r.transition for r in truth.records()] == ["ready"]
    m7, _ = tmodel()  # seed 7
    assert m7.run_pod_sandbox("p", "ns", "u").id == "d23f0824128b2f330c5c7fd0a6a3a4506513270e269e0d37f2a74de452e6b438"


def test_unseeded_models_draw_different_ids():
    """Two instances without a seed are two runtimes: their first IDs differ (issue 18, item 8)."""
    a = RuntimeModel(VirtualClock(1), get_flavor("containerd-1.7"))
    b = RuntimeModel(VirtualClock(1), get_flavor("containerd-1.7"))
    assert a.run_pod_sandbox("p", "ns", "u").id != b.run_pod_sandbox("p", "ns", "u").id


def test_sandbox_and_container_fields():
    m, _ = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u")
    assert (s.hostname, s.log_directory, s.runtime_handler, s.network, s.annotations, s.config, s.labels) == (
        "", "", "", "POD", {}, {}, {})
    ann, cfg = {"a": "1"}, {"k": "v"}
    s2 = m.run_pod_sandbox("q", "ns", "u", annotations=ann, hostname="h", log_directory="/l", runtime_handler="kata",
                           network="NODE", config=cfg)
    assert (s2.hostname, s2.log_directory, s2.runtime_handler, s2.network, s2.annotations, s2.config) == (
        "h", "/l", "kata", "NODE", {"a": "1"}, {"k": "v"})
    assert s2.annotations is not ann and s2.config is not cfg  # copies
    c = m.create_container(s.id, "c", 0, "busybox")
    assert (c.log_path, c.annotations, c.config, c.labels, c.message) == ("", {}, {}, {}, "")
    c2 = m.create_container(s.id, "d", 0, "busybox", annotations=ann, log_path="/x.log", config=cfg)
    assert (c2.log_path, c2.annotations, c2.config) == ("/x.log", {"a": "1"}, {"k": "v"})
    m._next_pid = 62_500  # the third octet wraps at 250
    assert m.run_pod_sandbox("r", "ns", "u").ip == "10.88.0.2"


def test_sandbox_truth_records_carry_pod_labels_and_times():
    m, clock = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u", labels={"app": "a"})
    clock.advance(5)
    m.stop_pod_sandbox(s.id)
    clock.advance(5)
    m.remove_pod_sandbox(s.id)
    recs = [r for r in m.truth.records() if isinstance(r, SandboxTransition)]
    assert [(r.transition, r.time_ns, r.pod, r.labels) for r in recs] == [
        (tr, t, PodRef("p", "ns", "u"), {"app": "a"}) for tr, t in (("ready", 1_000), ("notready", 1_005),
                                                                    ("destroyed", 1_010))]


def test_start_error_time_and_refused_removal():
    m, clock = tmodel()
    s = m.run_pod_sandbox("p", "ns", "u")
    c = m.create_container(s.id, "c", 0, "busybox")
    m.stop_pod_sandbox(s.id)
    clock.advance(9)
    cri_error(m.start_container, c.id)
    last = [r for r in m.truth.records() if isinstance(r, ContainerTransition)][-1]
    assert (last.transition, last.time_ns) == ("exited", 1_009)
    strict = RuntimeModel(VirtualClock(1), get_flavor("crio-1.26").replace(remove_running="refuse"))
    strict.pull_image("busybox")
    s2 = strict.run_pod_sandbox("p", "ns", "u")
    d = strict.create_container(s2.id, "d", 0, "busybox")
    strict.start_container(d.id)
    assert cri_error(strict.remove_container, d.id) == (
        "UNKNOWN", f"container {d.id!r} is running, stop it before removing")


@pytest.mark.parametrize(
    ("ref", "norm", "repo"),
    [
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x"),
        ("localhost/a/b", "localhost/a/b:latest", "localhost/a/b"),
        ("a/b/c", "docker.io/a/b/c:latest", "docker.io/a/b/c"),
    ],
)
def test_pull_image_with_ports_and_paths(ref, norm, repo):
    m, _ = tmodel()
    img = m.pull_image(ref)
    assert img.repo_tags == [norm]
    assert img.repo_digests[0].startswith(f"{repo}@sha256:")
