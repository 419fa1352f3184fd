"""How much memory the sensor needs for a node, and whether its memory limit allows it.

Why: the sensor's RSS grows with the node's containers (the last list's answer, one record per
container, and a first snapshot's burst of events), and a DaemonSet's memory limit is one number
for every node. A node with more containers than the limit allows gets its sensor OOM-killed, over
and over, silently. ``crisensor doctor`` compares the two before that happens.

The model is a line through measurements (``python -m bench.bench_process``; docs/performance.md,
"Memory"): the peak RSS (VmHWM) of ``crisensor run`` after its first snapshot, polling, at 1,000,
10,000 and 20,000 kubelet-shaped containers. ``HEADROOM`` is the margin the deployment keeps on
top (25%: allocator fragmentation, larger labels than the benchmark's, a resync burst).

The limit (``memory_limit``) is ``$CRISENSOR_MEMORY_LIMIT`` when set (the DaemonSet sets it from
its own ``limits.memory`` through the downward API), else the process's own cgroup: cgroup v2
``memory.max`` under the process's cgroup path, else cgroup v1 ``memory.limit_in_bytes``; ``max``
(or v1's "no limit", a page-rounded 2^63) means none.
"""

from __future__ import annotations

import os

#: Peak RSS of ``crisensor run`` with no container, and per container (bytes). Measured: see module doc.
BASE_BYTES = 54 * 2**20
PER_CONTAINER_BYTES = 7_400
#: Kept on top of the estimate.
HEADROOM = 1.25
#: At or above this a v1 ``memory.limit_in_bytes`` means "no limit".
_V1_UNLIMITED = 2**62


def needed_bytes(containers: int) -> int:
    """The memory limit a node of ``containers`` needs: estimated peak RSS plus ``HEADROOM``."""
    return int((BASE_BYTES + PER_CONTAINER_BYTES * max(0, containers)) * HEADROOM)


def max_containers(limit_bytes: int) -> int:
    """The most containers a node may have for the sensor to fit ``limit_bytes`` with headroom."""
    return max(0, int((limit_bytes / HEADROOM - BASE_BYTES) // PER_CONTAINER_BYTES))


def parse_limit(text: str) -> int | None:
    """A cgroup memory limit file's content: bytes, or ``None`` for no limit."""
    text = text.strip()
    if not text or text == "max":
        return None
    value = int(text)
    return None if value >= _V1_UNLIMITED else value


#: Set by the DaemonSet from the container's own limit (downward API, ``limits.memory``, bytes): it
#: holds also where the cgroup is not visible.
LIMIT_ENV = "CRISENSOR_MEMORY_LIMIT"


def memory_limit(proc_self_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup",
                 env: dict[str, str] | None = None) -> int | None:
    """The sensor's memory limit, bytes: ``$CRISENSOR_MEMORY_LIMIT`` if set, else its cgroup's;
    ``None`` when there is none or it cannot be read (not Linux, no cgroup filesystem mounted)."""
    value = (os.environ if env is None else env).get(LIMIT_ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return parse_limit(value)
    try:
        with open(proc_self_cgroup, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:  # cgroup v2: "0::/path"
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
            for path in (os.path.join(root, parts[2].lstrip("/"), "memory.max"), os.path.join(root, "memory.max")):
                limit = _read(path)
                if limit != "":
                    return parse_limit(limit)
    for line in lines:  # cgroup v1: "N:memory:/path"
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            for path in (os.path.join(root, "memory", parts[2].lstrip("/"), "memory.limit_in_bytes"),
                         os.path.join(root, "memory", "memory.limit_in_bytes")):
                limit = _read(path)
                if limit != "":
                    return parse_limit(limit)
    return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, ValueError):
        return ""
