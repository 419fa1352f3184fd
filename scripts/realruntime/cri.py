"""A small CRI client for driving a REAL containerd in tests and benchmarks (generated stubs, real socket)."""

from __future__ import annotations

import importlib
import json
import time
import uuid
from typing import Any

import grpc

from .containerd import ContainerdHandle


def stubs(api: str) -> tuple[Any, Any]:
    """``cri_api.<api>``'s message and service modules (ImportError when they are not generated)."""
    return importlib.import_module(f"cri_api.{api}.api_pb2"), importlib.import_module(f"cri_api.{api}.api_pb2_grpc")


class Cri:
    """Just enough of a CRI client for the smoke tests (generated stubs, real socket)."""

    def __init__(self, handle: ContainerdHandle, api: str = "v1", pbs: tuple[Any, Any] | None = None):
        self.h = handle
        self.pb, pbg = pbs or stubs(api)
        self.channel = grpc.insecure_channel(handle.addr)
        self.rt = pbg.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def run_pod(self, name: str, *, pod_network: bool = False):
        pb = self.pb
        mode = pb.NamespaceMode.Value("POD" if pod_network else "NODE")
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uuid.uuid4().hex, namespace="crisensor-test"),
            hostname=name if pod_network else "",  # NODE network: containerd 1.6 wants it empty
            log_directory=str(self.h.tmpdir / "pod-logs" / name),
            labels={"crisensor-test": name},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.h.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(network=mode)),
            ),
        )
        sid = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
        return sid, config

    def run_container(self, sid: str, pod_config, name: str, command: list[str]) -> str:
        pb = self.pb
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.h.busybox_image),
            command=command,
            log_path=f"{name}.log",
            labels={"crisensor-test": name},
        )
        req = pb.CreateContainerRequest(pod_sandbox_id=sid, config=config, sandbox_config=pod_config)
        cid = self.rt.CreateContainer(req, timeout=30).container_id
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=30)
        return cid

    def status(self, cid: str, verbose: bool = False):
        return self.rt.ContainerStatus(self.pb.ContainerStatusRequest(container_id=cid, verbose=verbose), timeout=10)

    def wait_exited(self, cid: str, timeout: float = 20.0):
        exited = self.pb.ContainerState.Value("CONTAINER_EXITED")
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid).status
            if st.state == exited:
                return st
            assert time.monotonic() < deadline, f"container {cid} did not exit: {st}"
            time.sleep(0.02)

    def container_pid(self, cid: str) -> int:
        info = self.status(cid, verbose=True).info
        return int(json.loads(info["info"])["pid"])

    def remove_pod(self, sid: str) -> None:
        pb = self.pb
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
