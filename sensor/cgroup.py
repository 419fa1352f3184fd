"""Attribution: which container a process runs in, from the text of ``/proc/PID/cgroup``.

Theory of operation
-------------------
A pure function of the file's text (``attribute``); the shell reads the file. Every line is
``hierarchy-ID:controllers:path`` (cgroup v1: one line per hierarchy; v2: the single ``0::path``
line; hybrid: both). A container's processes live in a cgroup whose path names the container's
64-hex ID in one of the runtimes' shapes, read from the deepest path segment that has one (a
container may nest cgroups of its own below it):

| who places the cgroup | segment |
|---|---|
| containerd with its own cgroup parent (no kubelet) | ``/k8s.io/<id>`` -- a bare ID |
| kubelet, cgroupfs driver (containerd) | ``/kubepods/<qos>/pod<uid>/<id>`` -- a bare ID |
| kubelet, cgroupfs driver (CRI-O) | ``.../pod<uid>/crio-<id>`` |
| kubelet, systemd driver (containerd) | ``.../kubepods-<qos>-pod<uid>.slice/cri-containerd-<id>.scope`` |
| kubelet, systemd driver (CRI-O) | ``.../crio-<id>.scope`` |
| Docker (not a CRI runtime; named so it is never mistaken) | ``docker-<id>.scope``, ``/docker/<id>`` |
| a pod's own ``cgroup_parent`` (any path) | ``<parent>/<id>`` -- a bare ID |

``crio-conmon-<id>.scope`` is CRI-O's monitor process, which runs *beside* the container: it is
not the container, and never attributed to it. A bare segment of exactly 64 lowercase hex digits
is a container ID wherever it sits, because a sandbox's ``cgroup_parent`` may be any path. A
cgroup that merely happens to be named so yields an ID the runtime does not know: its execs come
out ``unknown-container``, never with another container's data (G10).

No wrong attribution (guarantee G10): when lines disagree (two different IDs), the answer is
``ambiguous``, never a guess. A file with no line that names a container is ``host``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Attribution", "attribute"]

_HEX64 = r"[0-9a-f]{64}"
#: Segments that name a container outright.
_NAMED = re.compile(rf"^(?:cri-containerd-|crio-|docker-)({_HEX64})(?:\.scope)?$")
#: Segments that name the runtime's monitor, never the container.
_MONITOR = re.compile(rf"^crio-conmon-{_HEX64}(?:\.scope)?$")
_BARE = re.compile(rf"^({_HEX64})$")


@dataclass(frozen=True, slots=True)
class Attribution:
    """``container_id`` when the process is in a container; otherwise ``kind`` says why not.

    ``kind``: ``container``, ``host`` (no line names a container), ``monitor`` (a runtime's
    monitor process such as CRI-O's conmon), ``ambiguous`` (lines name different containers),
    or ``unreadable`` (no well-formed line at all).
    """

    kind: str
    container_id: str | None = None


HOST = Attribution("host")
MONITOR = Attribution("monitor")
AMBIGUOUS = Attribution("ambiguous")
UNREADABLE = Attribution("unreadable")


def _from_path(path: str) -> tuple[str, str | None]:
    """(``container``/``monitor``/``host``, id) for one cgroup path: its deepest container segment wins."""
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts) - 1, -1, -1):
        seg = parts[i]
        m = _NAMED.match(seg)
        if m:
            return "container", m.group(1)
        if _MONITOR.match(seg):
            return "monitor", None
        m = _BARE.match(seg)
        if m:
            return "container", m.group(1)
    return "host", None


def attribute(text: str) -> Attribution:
    """Attribute one ``/proc/PID/cgroup`` file's text (see the module docstring)."""
    ids: set[str] = set()
    monitor = False
    wellformed = 0
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        wellformed += 1
        kind, cid = _from_path(fields[2])
        if kind == "container" and cid is not None:
            ids.add(cid)
        elif kind == "monitor":
            monitor = True
    if len(ids) > 1 or (ids and monitor):
        return AMBIGUOUS
    if ids:
        return Attribution("container", ids.pop())
    if monitor:
        return MONITOR
    return HOST if wellformed else UNREADABLE
