"""The fake's container list entries built from cached parts (``convert.container_parts``) are the
bytes protobuf itself would serialize for every state, and a served list is the whole answer
protobuf would build."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import cri_api
from fakecri import convert
from fakecri.clock import VirtualClock
from fakecri.flavors import get_flavor
from fakecri.model import RuntimeModel

PB = cri_api.api("v1").pb2
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=max(20, settings.default.max_examples // 3), deadline=None)  # scales with the profile
@given(name=text, image=text, attempt=st.integers(0, 2**32 - 1),
       labels=st.dictionaries(text, text, max_size=4), annotations=st.dictionaries(text, text, max_size=4),
       started=st.booleans(), exited=st.booleans())
def test_parts_give_protobufs_own_entry_in_every_state(name: str, image: str, attempt: int, labels: dict[str, str],
                                                      annotations: dict[str, str], started: bool,
                                                      exited: bool) -> None:
    model = RuntimeModel(VirtualClock(), get_flavor("containerd-1.7"), seed=1)
    model.pull_image(image or "busybox")
    sb = model.run_pod_sandbox("p", "ns", "uid")
    c = model.create_container(sb.id, name or "c", attempt, image or "busybox", labels=labels, annotations=annotations)
    parts = convert.container_parts(PB, c)
    for state in ("created", "running", "exited", "unknown"):
        c.state = state
        expected = convert.list_entry(PB, "ListContainersResponse", "containers", convert.container(PB, c))
        assert convert.state_entry(parts, convert.CONTAINER_STATE[state]) == expected, state


def test_a_served_list_is_the_answer_protobuf_builds(tmp_path: Path) -> None:
    from fakecri.kubelet import populate
    from fakecri.server import FakeCriServer

    model = RuntimeModel(VirtualClock(), get_flavor("containerd-1.7"), seed=2)
    model.pull_image("busybox")
    populate(model, 30, per_pod=10)
    server = FakeCriServer(model, str(tmp_path / "rt.sock"))
    handlers = server.handlers
    live = list(model.containers.values())
    for k, c in enumerate(live[:12]):  # every state, and entries cached before a change
        handlers.ListContainers(PB, "v1", PB.ListContainersRequest())
        if k % 3 == 0:
            model.exit_container(c.id, 1)
        elif k % 3 == 1:
            model.remove_container(c.id)
    got = handlers.ListContainers(PB, "v1", PB.ListContainersRequest())
    want = PB.ListContainersResponse(containers=[convert.container(PB, c) for c in model.containers.values()])
    assert got == want.SerializeToString()


def test_a_policy_that_only_overrides_a_shaper_still_shapes_lists(tmp_path: Path) -> None:
    """``CallPolicy.shapes_lists`` defaults to whether a subclass overrides a shaper, so a policy
    written before it existed keeps reshaping answers (no bytes path behind its back)."""
    from typing import Any

    from fakecri.kubelet import populate
    from fakecri.server import CallPolicy, FakeCriServer

    class DropFirst(CallPolicy):
        def shape_containers(self, items: list[Any], pb: Any) -> list[Any]:
            return items[1:]

    model = RuntimeModel(VirtualClock(), get_flavor("containerd-1.7"), seed=4)
    model.pull_image("busybox")
    populate(model, 5, per_pod=5)
    assert not CallPolicy().shapes_lists() and DropFirst().shapes_lists()
    got = FakeCriServer(model, str(tmp_path / "rt.sock"), policy=DropFirst()).handlers.ListContainers(
        PB, "v1", PB.ListContainersRequest())
    assert [c.id for c in got.containers] == list(model.containers)[1:]
