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

``crio-conmon-<id>.scope`` is CRI-O's monitor process, which runs *beside* the container: it is
not the container, and never attributed to it. A bare 64-hex segment counts only under a parent
that is a known runtime namespace or a kubelet pod cgroup, so an unrelated cgroup that happens to
be named with 64 hex digits is not taken for a container.

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
#: Parents under which a bare 64-hex segment is a container ID.
_POD = re.compile(r"^pod[0-9a-fA-F_-]+$|^kubepods-.*pod[0-9a-fA-F_-]+\.slice$")
_NAMESPACES = frozenset({"k8s.io", "docker", "moby", "crio"})


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
        if m and i > 0 and (parts[i - 1] in _NAMESPACES or _POD.match(parts[i - 1])):
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
