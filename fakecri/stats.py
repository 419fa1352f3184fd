"""ContainerStats / ListContainerStats answers, shaped like containerd 1.6's (recorded here).

A running container has a task, so containerd reports cpu, memory and the writable layer; a
container without a running task (created, exited) has no metrics: ContainerStats fails with
UNKNOWN "unexpected metrics response: []" and ListContainerStats lists it with its attributes
and writable layer only. The numbers are synthetic but consistent: CPU time grows with the time
the container has run, memory is a constant working set under the configured limit.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from fakecri.model import Container, CriError

WORKING_SET = 774_144
RSS = 114_688
SNAPSHOTS = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"


def has_metrics(c: Container) -> bool:
    return c.state == "running"


def container_stats(pb: ModuleType, c: Container, now: int) -> Any:
    attributes = pb.ContainerAttributes(id=c.id, metadata=pb.ContainerMetadata(name=c.name, attempt=c.attempt),
                                        labels=c.labels, annotations=c.annotations)
    layer = pb.FilesystemUsage(fs_id=pb.FilesystemIdentifier(mountpoint=SNAPSHOTS),
                               used_bytes=pb.UInt64Value(value=0), inodes_used=pb.UInt64Value(value=0))
    if not has_metrics(c):
        return pb.ContainerStats(attributes=attributes, writable_layer=layer)
    ran = max(0, now - c.started_at)
    limit = int(c.config.get("linux", {}).get("resources", {}).get("memory_limit_in_bytes", 0) or 0)
    stats = pb.ContainerStats(
        attributes=attributes,
        cpu=pb.CpuUsage(timestamp=now, usage_core_nano_seconds=pb.UInt64Value(value=ran // 100),
                        usage_nano_cores=pb.UInt64Value(value=0)),
        memory=pb.MemoryUsage(timestamp=now, working_set_bytes=pb.UInt64Value(value=WORKING_SET),
                              usage_bytes=pb.UInt64Value(value=WORKING_SET), rss_bytes=pb.UInt64Value(value=RSS),
                              page_faults=pb.UInt64Value(value=796), major_page_faults=pb.UInt64Value(value=0)),
        writable_layer=layer,
    )
    if limit:
        stats.memory.available_bytes.value = max(0, limit - WORKING_SET)
    return stats


def one(pb: ModuleType, c: Container, now: int) -> Any:
    """ContainerStats of one container (an error when it has no running task, as containerd)."""
    if not has_metrics(c):
        raise CriError("UNKNOWN", "unexpected metrics response: []")
    return container_stats(pb, c, now)
