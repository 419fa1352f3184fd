"""What the kubelet writes on the objects it creates, so fake nodes have realistic sizes.

A real ``ListContainers`` answer for 10,000 kubelet-made containers is ~6 MB, over gRPC's 4 MiB
default receive limit; much of that is these labels and annotations.
"""

from __future__ import annotations

from fakecri.model import RuntimeModel


def container_labels(pod: str, namespace: str, uid: str, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) the kubelet puts on a container."""
    labels = {"io.kubernetes.container.name": name, "io.kubernetes.pod.name": pod,
              "io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.uid": uid}
    annotations = {"io.kubernetes.container.hash": "7c5b7e4f", "io.kubernetes.container.restartCount": "0",
                   "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                   "io.kubernetes.container.terminationMessagePolicy": "File",
                   "io.kubernetes.pod.terminationGracePeriod": "30"}
    return labels, annotations


def populate(model: RuntimeModel, containers: int, per_pod: int = 100, namespace: str = "bulk",
             image: str = "busybox") -> None:
    """Create and start ``containers`` kubelet-shaped containers, ``per_pod`` to a pod."""
    model.pull_image(image)
    made = 0
    p = 0
    while made < containers:
        uid = f"5f0e2b9c-1d2e-4c3b-9a8f-{p:012d}"
        pod = f"workload-{p}"
        s = model.run_pod_sandbox(pod, namespace, uid, labels={"io.kubernetes.pod.name": pod,
                                                             "io.kubernetes.pod.namespace": namespace,
                                                             "io.kubernetes.pod.uid": uid})
        for i in range(min(per_pod, containers - made)):
            labels, annotations = container_labels(pod, namespace, uid, f"worker-{i}")
            c = model.create_container(s.id, f"worker-{i}", 0, image, labels=labels, annotations=annotations,
                                       log_path=f"worker-{i}/0.log")
            model.start_container(c.id)
            made += 1
        p += 1
