"""Attribution from /proc/PID/cgroup: one real-shaped file per runtime layout, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sensor.cgroup import Attribution, attribute

ID = "3f5c0e7d9a1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5"
ID2 = "9" * 64
POD = "pod0b6a3f4e-2c1d-4e5f-8a9b-0c1d2e3f4a5b"
POD_SYSTEMD = "kubepods-besteffort-pod0b6a3f4e_2c1d_4e5f_8a9b_0c1d2e3f4a5b.slice"

V1_CONTROLLERS = ["name=systemd", "pids", "blkio", "freezer", "devices", "memory", "cpuset", "cpuacct", "cpu"]


def v1(path: str, unified: str = "/") -> str:
    """A hybrid (v1 + unified) file as this machine writes it, every v1 line at ``path``."""
    lines = [f"{9 - i}:{c}:{path}" for i, c in enumerate(V1_CONTROLLERS)]
    return "\n".join([*lines, f"0::{unified}"]) + "\n"


def v2(path: str) -> str:
    return f"0::{path}\n"


CASES = [
    # containerd with its own cgroup parent: /k8s.io/<id> on every line (seen on this machine)
    ("containerd namespace parent, hybrid", v1(f"/k8s.io/{ID}"), Attribution("container", ID)),
    ("containerd namespace parent, v2", v2(f"/k8s.io/{ID}"), Attribution("container", ID)),
    # kubelet cgroupfs driver
    ("kubelet cgroupfs, containerd, v1", v1(f"/kubepods/besteffort/{POD}/{ID}"), Attribution("container", ID)),
    ("kubelet cgroupfs, guaranteed QoS, v2", v2(f"/kubepods/{POD}/{ID}"), Attribution("container", ID)),
    ("kubelet cgroupfs, CRI-O", v2(f"/kubepods/burstable/{POD}/crio-{ID}"), Attribution("container", ID)),
    # kubelet systemd driver
    ("kubelet systemd, containerd, v2",
     v2(f"/kubepods.slice/kubepods-besteffort.slice/{POD_SYSTEMD}/cri-containerd-{ID}.scope"),
     Attribution("container", ID)),
    ("kubelet systemd, containerd, v1",
     v1(f"/kubepods.slice/kubepods-burstable.slice/{POD_SYSTEMD}/cri-containerd-{ID}.scope"),
     Attribution("container", ID)),
    ("kubelet systemd, CRI-O, v2",
     v2(f"/kubepods.slice/kubepods-besteffort.slice/{POD_SYSTEMD}/crio-{ID}.scope"), Attribution("container", ID)),
    ("CRI-O container with a nested cgroup of its own",
     v2(f"/kubepods.slice/{POD_SYSTEMD}/crio-{ID}.scope/init.scope"), Attribution("container", ID)),
    ("CRI-O monitor is not the container",
     v2(f"/kubepods.slice/kubepods-besteffort.slice/{POD_SYSTEMD}/crio-conmon-{ID}.scope"), Attribution("monitor")),
    ("docker", v2(f"/system.slice/docker-{ID}.scope"), Attribution("container", ID)),
    # not containers
    ("host process, hybrid", v1("/", "/user.slice/user-0.slice/session-1.scope"), Attribution("host")),
    ("host process, this machine", "4:memory:/process_api/e2af3a350f6ca142e7a391b884f3a0bd\n0::/\n",
     Attribution("host")),
    ("kubelet itself", v2("/system.slice/kubelet.service"), Attribution("host")),
    ("pod cgroup only (between exec and move)", v2(f"/kubepods/besteffort/{POD}"), Attribution("host")),
    ("a sandbox's own cgroup_parent", v1(f"/crisensor-1a2b/{ID}"), Attribution("container", ID)),
    ("64 hex at the root", v2(f"/{ID}"), Attribution("container", ID)),
    ("uppercase hex is not an ID", v2(f"/k8s.io/{ID.upper()}"), Attribution("host")),
    ("63 hex", v2(f"/k8s.io/{ID[:63]}"), Attribution("host")),
    # disagreement is never guessed
    ("lines name two containers", f"4:memory:/k8s.io/{ID}\n0::/k8s.io/{ID2}\n", Attribution("ambiguous")),
    ("monitor and container", f"4:memory:/k8s.io/{ID}\n0::/x/crio-conmon-{ID2}.scope\n", Attribution("ambiguous")),
    ("one line in a container, the others at the root", f"4:memory:/k8s.io/{ID}\n0::/\n",
     Attribution("container", ID)),
    ("empty file", "", Attribution("unreadable")),
    ("not a cgroup file", "hello\nworld\n", Attribution("unreadable")),
]


@pytest.mark.parametrize(("text", "want"), [(t, w) for _, t, w in CASES], ids=[n for n, _, _ in CASES])
def test_layouts(text: str, want: Attribution) -> None:
    assert attribute(text) == want


@given(st.text(max_size=400))
def test_garbage_never_raises_and_never_invents_an_id(text: str) -> None:
    got = attribute(text)
    assert got.kind in {"container", "host", "monitor", "ambiguous", "unreadable"}
    if got.kind == "container":
        assert got.container_id is not None and got.container_id in text


_segment = st.sampled_from(["kubepods", "besteffort", POD, "k8s.io", "system.slice", "crio", ID, ID2,
                            f"crio-{ID}.scope", f"crio-conmon-{ID2}.scope", f"cri-containerd-{ID2}.scope", "x"])


@given(st.lists(st.lists(_segment, max_size=5), min_size=1, max_size=4))
def test_a_file_is_attributed_only_when_its_lines_agree(paths: list[list[str]]) -> None:
    text = "".join(f"{i}:c{i}:/{'/'.join(p)}\n" for i, p in enumerate(paths))
    per_line = [attribute(f"0::/{'/'.join(p)}\n") for p in paths]
    named = {a.container_id for a in per_line if a.kind == "container"}
    monitors = any(a.kind == "monitor" for a in per_line)
    if len(named) > 1 or (named and monitors):
        want = Attribution("ambiguous")
    elif named:
        want = Attribution("container", named.pop())
    else:
        want = Attribution("monitor") if monitors else Attribution("host")
    assert attribute(text) == want


def _reference(text: str) -> Attribution:
    """The rule as the module docstring states it, segment by segment (slow and plain): the
    one-regex implementation must agree with it on every input."""
    import re

    named = re.compile(r"^(?:cri-containerd-|crio-|docker-)?([0-9a-f]{64})(?:\.scope)?$")
    monitor_seg = re.compile(r"^crio-conmon-[0-9a-f]{64}(?:\.scope)?$")
    ids: set[str] = set()
    monitor = wellformed = False
    for line in text.split("\n"):
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        wellformed = True
        for seg in reversed(fields[2].split("/")[1:]):
            if monitor_seg.match(seg):
                monitor = True
                break
            m = named.match(seg)
            if m:
                ids.add(m.group(1))
                break
    if len(ids) > 1 or (ids and monitor):
        return Attribution("ambiguous")
    if ids:
        return Attribution("container", ids.pop())
    if monitor:
        return Attribution("monitor")
    return Attribution("host") if wellformed else Attribution("unreadable")


_pieces = st.sampled_from(["/", ":", "\n", "0", "9", "k8s.io", ".scope", "crio-", "crio-conmon-", "cri-containerd-",
                           "docker-", ID, ID2, ID[:63], "x", "pod", "kubepods", " "])


@given(st.lists(_pieces, max_size=40).map("".join))
@example(f"0::x/{ID}")
@example(f"0::/{ID}:x\n1:a:/{ID}")
@example(f"0::/a/crio-conmon-{ID}.scope/{ID2}")
def test_the_one_regex_agrees_with_the_segment_by_segment_rule(text: str) -> None:
    assert attribute(text) == _reference(text)


@given(st.lists(st.tuples(st.integers(0, 12), st.lists(_segment, max_size=6)), min_size=1, max_size=10))
def test_the_one_regex_agrees_on_well_formed_files(lines: list[tuple[int, list[str]]]) -> None:
    text = "".join(f"{h}:c{h}:/{'/'.join(p)}\n" for h, p in lines)
    assert attribute(text) == _reference(text)
