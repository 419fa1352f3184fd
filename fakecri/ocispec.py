"""The OCI runtime spec a runtime reports in verbose ``info`` (``runtimeSpec``), per flavour.

Clients read it: kubelet-side tools and sensors take the cgroup path (to attribute processes by
``/proc/PID/cgroup``), the namespace paths (to enter a pod's network namespace) and the CRI
annotations (to map a container to its pod without another call). The containerd shape is the
one recorded from real containerd 1.6 here (``tests/realruntime/test_differential.py`` compares
it key by key); the CRI-O shape follows CRI-O's sources (no CRI-O runs here to record).

* ``linux.cgroupsPath``: containerd joins the pod's ``cgroup_parent`` and the ID
  (``/kubepods/.../<id>``), or, for a systemd parent (``*.slice``), ``<slice>:cri-containerd:<id>``;
  CRI-O uses ``crio-<id>`` / ``<slice>:crio:<id>``.
* ``linux.namespaces``: a container joins its sandbox's namespaces by path
  (``/proc/<sandbox pid>/ns/<type>``), in a host-network pod too; a container-private pid
  namespace has no path; in the sandbox's own spec, namespaces shared with the node are left out
  and its network namespace is a named netns file.
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from typing import TYPE_CHECKING, Any

from fakecri.emulator import argv_of, env_of

if TYPE_CHECKING:
    from fakecri.flavors import Flavor
    from fakecri.model import Container, Sandbox

OCI_VERSION = "1.0.2-dev"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: NamespaceMode values (CRI): POD=0, CONTAINER=1, NODE=2, TARGET=3.
POD, CONTAINER, NODE = 0, 1, 2
CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
                "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
CRI_ROOT = "/var/lib/containerd/io.containerd.grpc.v1.cri"
CRI_STATE = "/run/containerd/io.containerd.grpc.v1.cri"


def _mount(dest: str, typ: str, src: str, *options: str) -> dict[str, Any]:
    return {"destination": dest, "type": typ, "source": src, "options": list(options)}


_BASE_MOUNTS = [
    _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
    _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
    _mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
]


def _options(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("linux", {}).get("security_context", {}).get("namespace_options", {})


def _mode(value: Any) -> int:
    names = {"POD": POD, "CONTAINER": CONTAINER, "NODE": NODE, "TARGET": 3}
    return names.get(value, value) if isinstance(value, str) else int(value or 0)


def cgroup_parent(sb: Sandbox | None) -> str:
    return str(sb.config.get("linux", {}).get("cgroup_parent", "")) if sb is not None else ""


def cgroups_path(flavor: Flavor, parent: str, cid: str) -> str:
    base = posixpath.basename(parent)
    if flavor.info_shape == "crio":
        return f"{base}:crio:{cid}" if base.endswith(".slice") else posixpath.join(parent, f"crio-{cid}")
    return f"{base}:cri-containerd:{cid}" if base.endswith(".slice") else posixpath.join(parent, cid)


def netns_path(sb: Sandbox) -> str:
    return f"/var/run/netns/cni-{uuid.UUID(bytes=hashlib.sha256(sb.id.encode()).digest()[:16])}"


def _resources(config: dict[str, Any]) -> dict[str, Any]:
    r = config.get("linux", {}).get("resources", {})
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    mem = int(r.get("memory_limit_in_bytes", 0) or 0)
    if mem:
        out["memory"] = {"limit": mem, "swap": int(r.get("memory_swap_limit_in_bytes", 0) or 0) or mem}
    cpu = {k: int(r[f]) for k, f in (("shares", "cpu_shares"), ("quota", "cpu_quota"), ("period", "cpu_period"))
           if int(r.get(f, 0) or 0)}
    if cpu:
        out["cpu"] = cpu
    return out


def container_spec(flavor: Flavor, c: Container, sb: Sandbox | None, host_name: str) -> dict[str, Any]:
    cfg = c.config
    hostname = sb.hostname if sb is not None and sb.hostname else host_name
    sandbox_pid = sb.pid if sb is not None else 0
    pod_opts = _options(sb.config) if sb is not None else {}
    process: dict[str, Any] = {
        "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
        "args": argv_of(cfg) or ["/bin/sh"],
        "env": [f"{k}={v}" for k, v in env_of(cfg, hostname)],
        "cwd": cfg.get("working_dir") or "/",
        "capabilities": {"bounding": CAPABILITIES, "effective": CAPABILITIES, "permitted": CAPABILITIES},
    }
    if "resources" in cfg.get("linux", {}):  # containerd sets it from the configured resources only
        process["oomScoreAdj"] = int(cfg["linux"]["resources"].get("oom_score_adj", 0) or 0)
    own = _options(cfg)
    namespaces: list[dict[str, Any]] = []
    pid_mode = _mode(own.get("pid", pod_opts.get("pid", POD)))
    if pid_mode == POD:
        namespaces.append({"type": "pid", "path": f"/proc/{sandbox_pid}/ns/pid"})
    elif pid_mode != NODE:
        namespaces.append({"type": "pid"})
    # the rest are the sandbox's, joined by path -- also in a host-network pod, whose sandbox
    # process holds the node's namespaces (recorded from containerd 1.6)
    namespaces += [{"type": "ipc", "path": f"/proc/{sandbox_pid}/ns/ipc"},
                   {"type": "uts", "path": f"/proc/{sandbox_pid}/ns/uts"}, {"type": "mount"},
                   {"type": "network", "path": f"/proc/{sandbox_pid}/ns/net"}]
    sid = c.sandbox_id
    mounts = [*_BASE_MOUNTS,
              _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
              _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
              _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro")]
    for m in cfg.get("mounts", []):
        mounts.append(_mount(str(m.get("container_path", "")), "bind", str(m.get("host_path", "")), "rbind",
                             "rprivate", "ro" if m.get("readonly") else "rw"))
    for name in ("hostname", "hosts", "resolv.conf"):
        mounts.append(_mount(f"/etc/{name}", "bind", f"{CRI_ROOT}/sandboxes/{sid}/{name}", "rbind", "rprivate", "rw"))
    mounts.append(_mount("/dev/shm", "bind", f"{CRI_STATE}/sandboxes/{sid}/shm", "rbind", "rprivate", "rw"))
    if flavor.info_shape == "crio":
        annotations = {
            "io.kubernetes.cri-o.ContainerID": c.id,
            "io.kubernetes.cri-o.ContainerName": f"k8s_{c.name}_{sb.name}_{sb.namespace}_{sb.uid}_{c.attempt}"
            if sb is not None else c.name,
            "io.kubernetes.cri-o.ContainerType": "container",
            "io.kubernetes.cri-o.ImageName": c.image,
            "io.kubernetes.cri-o.ImageRef": c.image_ref,
            "io.kubernetes.cri-o.LogPath": c.log_path,
            "io.kubernetes.cri-o.SandboxID": sid,
            "io.kubernetes.cri-o.SandboxName": f"k8s_{sb.name}_{sb.namespace}_{sb.uid}_{sb.attempt}"
            if sb is not None else "",
            **c.annotations,
        }
    else:
        annotations = {
            "io.kubernetes.cri.container-name": c.name,
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.image-name": c.image,
            "io.kubernetes.cri.sandbox-id": sid,
            "io.kubernetes.cri.sandbox-name": sb.name if sb is not None else "",
            "io.kubernetes.cri.sandbox-namespace": sb.namespace if sb is not None else "",
            "io.kubernetes.cri.sandbox-uid": sb.uid if sb is not None else "",
        }
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs"},
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "resources": _resources(cfg),
            "cgroupsPath": cgroups_path(flavor, cgroup_parent(sb), c.id),
            "namespaces": namespaces,
        },
    }


def sandbox_spec(flavor: Flavor, s: Sandbox) -> dict[str, Any]:
    opts = _options(s.config)
    host_net = s.network == "NODE"
    namespaces: list[dict[str, Any]] = []
    if _mode(opts.get("pid", POD)) != NODE:
        namespaces.append({"type": "pid"})
    if _mode(opts.get("ipc", POD)) != NODE:
        namespaces.append({"type": "ipc"})
    if not host_net:
        namespaces.append({"type": "uts"})
    namespaces.append({"type": "mount"})
    if not host_net:
        namespaces.append({"type": "network", "path": netns_path(s)})
    mounts = [*_BASE_MOUNTS,
              _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
              _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
              _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
              _mount("/dev/shm", "bind", f"{CRI_STATE}/sandboxes/{s.id}/shm", "rbind", "ro"),
              _mount("/etc/resolv.conf", "bind", f"{CRI_ROOT}/sandboxes/{s.id}/resolv.conf", "rbind", "ro")]
    if flavor.info_shape == "crio":
        annotations = {
            "io.kubernetes.cri-o.ContainerType": "sandbox",
            "io.kubernetes.cri-o.SandboxID": s.id,
            "io.kubernetes.cri-o.KubeName": s.name,
            "io.kubernetes.cri-o.Namespace": s.namespace,
            "io.kubernetes.cri-o.LogPath": s.log_directory,
            "io.kubernetes.cri-o.HostName": s.hostname,
            **s.annotations,
        }
    else:
        annotations = {
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": s.id,
            "io.kubernetes.cri.sandbox-log-directory": s.log_directory,
            "io.kubernetes.cri.sandbox-name": s.name,
            "io.kubernetes.cri.sandbox-namespace": s.namespace,
            "io.kubernetes.cri.sandbox-uid": s.uid,
        }
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["/pause"], "env": [PATH_ENV], "cwd": "/",
                    "capabilities": {"bounding": CAPABILITIES, "effective": CAPABILITIES, "permitted": CAPABILITIES},
                    "noNewPrivileges": True, "oomScoreAdj": 0},
        "root": {"path": "rootfs", "readonly": True},
    }
    if s.hostname:
        spec["hostname"] = s.hostname
    spec.update({
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}], "cpu": {"shares": 2}},
            "cgroupsPath": cgroups_path(flavor, cgroup_parent(s), s.id),
            "namespaces": namespaces,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    })
    return spec
