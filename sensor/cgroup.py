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
#: One line's deepest container segment: the greedy ``.*/`` backtracks from the end of the line to
#: the last segment that is a container's (bare ID, ``cri-containerd-``, ``crio-``, ``docker-``,
#: optional ``.scope``) or CRI-O's monitor (``crio-conmon-``); anything may follow it. Group 1 is
#: set for the monitor, group 2 is the ID. One pass of the regex engine over the whole file:
#: attribution runs for every exec, so it must cost microseconds, not a Python loop per line.
_DEEPEST = re.compile(rf"^[^:\n]*:[^:\n]*:/(?:.*/)?(crio-conmon-)?(?:cri-containerd-|crio-|docker-)?({_HEX64})"
                      r"(?:\.scope)?(?:/[^\n]*)?$", re.M)
_WELLFORMED = re.compile(r"^[^:\n]*:[^:\n]*:/", re.M)
_HEX_RUN = re.compile(_HEX64)


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


def attribute(text: str) -> Attribution:
    """Attribute one ``/proc/PID/cgroup`` file's text (see the module docstring)."""
    first = _DEEPEST.search(text)
    if first is None:  # no line names a container or a monitor: the common host case
        return HOST if _WELLFORMED.search(text) else UNREADABLE
    if not first.group(1):
        # The common container case: one ID, on every line that names one. Without it, the text
        # holds no other 64-hex run and no monitor, so no other line can name anything else.
        cid = first.group(2)
        rest = text.replace(cid, "")
        if "conmon" not in rest and _HEX_RUN.search(rest) is None:
            return Attribution("container", cid)
    ids: set[str] = set()
    monitor = False
    for m in _DEEPEST.finditer(text):
        if m.group(1):
            monitor = True
        else:
            ids.add(m.group(2))
    if len(ids) > 1 or (ids and monitor):
        return AMBIGUOUS
    if ids:
        return Attribution("container", ids.pop())
    if monitor:
        return MONITOR
    return HOST if _WELLFORMED.search(text) else UNREADABLE
