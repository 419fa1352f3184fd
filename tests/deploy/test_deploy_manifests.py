"""deploy/kubernetes: render the kustomize overlays and check what a node would run.

The overlays are rendered here in Python (``render``: the subset of kustomize the manifests use --
resources, namespace, labels, configMapGenerator with create/merge, strategic-merge patches -- and
an error for anything else), so the checks run without any tool. When ``kubectl`` (which embeds
kustomize) is installed, ``test_python_render_matches_kustomize`` checks this renderer against the
real thing, so the structural checks are about what ``kubectl apply -k`` would really apply.

The ConfigMap's files are loaded with the sensor's own ``load_config`` (and the DaemonSet's
environment), so a manifest whose configuration the sensor would reject fails here.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sensor.config import ConfigError, SensorConfig, load_config

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE = REPO / "deploy" / "kubernetes"
OVERLAYS = {
    # overlay: (socket path the sensor must use, host directory to mount, handshake mode)
    "crio": ("/var/run/crio/crio.sock", "/var/run/crio", "off"),
    "containerd": ("/run/containerd/containerd.sock", "/run/containerd", "require"),
}
HANDSHAKE_ENV = "GRPC_GO_REQUIRE_HANDSHAKE"
STATE_DIR = "/var/lib/capsule8/crisensor"


# ---- a small kustomize -------------------------------------------------------------------------

#: Strategic-merge-patch list merge keys for the fields the manifests use (from the Kubernetes API's
#: patchMergeKey tags). Lists not named here are replaced, as SMP does for atomic lists.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumeMounts": "mountPath",
              "volumes": "name", "ports": "containerPort"}
_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator", "patches"}


def strategic_merge(base: Any, patch: Any, key: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(str(k).startswith("$") for k in patch):
            raise NotImplementedError(f"SMP directive in {patch} is not supported by this renderer")
        out = dict(base)
        for k, v in patch.items():
            out[k] = strategic_merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        mk = MERGE_KEYS[key]
        out_list = [copy.deepcopy(x) for x in base]
        for item in patch:
            hit = next((i for i, x in enumerate(out_list) if x.get(mk) == item.get(mk)), None)
            if hit is None:
                out_list.insert(0, copy.deepcopy(item))  # kustomize puts new items first
            else:
                out_list[hit] = strategic_merge(out_list[hit], item)
        return out_list
    return copy.deepcopy(patch)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization directory (the subset of kustomize these manifests use)."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(k) - _KUSTOMIZATION_KEYS
    if unknown:
        raise NotImplementedError(f"{directory}: kustomization keys {sorted(unknown)} are not supported by the "
                                  "test renderer; extend it (and the kubectl comparison keeps it honest)")
    resources: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        target = directory / entry
        resources += render(target) if target.is_dir() else _docs(target)
    for gen in k.get("configMapGenerator", []):
        data = {Path(f).name: (directory / f).read_text() for f in gen.get("files", [])}
        behavior = gen.get("behavior", "create")
        existing = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == gen["name"]]
        if behavior == "create":
            assert not existing, f"{directory}: ConfigMap {gen['name']} generated twice"
            resources.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]},
                              "data": data})
        elif behavior in ("merge", "replace"):
            assert len(existing) == 1, f"{directory}: no ConfigMap {gen['name']} to {behavior}"
            cm = existing[0]
            cm["data"] = {**cm.get("data", {}), **data} if behavior == "merge" else data
        else:
            raise NotImplementedError(f"configMapGenerator behavior {behavior}")
    for p in k.get("patches", []):
        if set(p) != {"path"}:
            raise NotImplementedError(f"patch form {p} is not supported by the test renderer")
        for patch in _docs(directory / p["path"]):
            hits = [i for i, r in enumerate(resources) if r["kind"] == patch["kind"]
                    and r["metadata"]["name"] == patch["metadata"]["name"]]
            assert len(hits) == 1, f"patch {p['path']} matches {len(hits)} resources"
            resources[hits[0]] = strategic_merge(resources[hits[0]], patch)
    if "namespace" in k:
        for r in resources:
            if r["kind"] != "Namespace":
                r["metadata"]["namespace"] = k["namespace"]
    for group in k.get("labels", []):
        for r in resources:
            r["metadata"].setdefault("labels", {}).update(group["pairs"])
    return resources


# ---- accessors -------------------------------------------------------------------------------------


def one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    hits = [r for r in resources if r["kind"] == kind]
    assert len(hits) == 1, f"expected one {kind}, found {len(hits)}"
    return hits[0]


def sensor_container(ds: dict[str, Any]) -> dict[str, Any]:
    containers = ds["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["crisensor"]
    return containers[0]


def container_env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}  # not valueFrom (POD_IP)


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def sensor_config(resources: list[dict[str, Any]], tmp_path: Path) -> SensorConfig:
    """Load the ConfigMap's files exactly where the container would see them, with its environment."""
    ds = one(resources, "DaemonSet")
    c = sensor_container(ds)
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    cm = one(resources, "ConfigMap")
    mount = next(m for m in c["volumeMounts"] if "configMap" in volumes[m["name"]])
    assert volumes[mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    paths = {}
    for f in ("--config", "--analytics-config"):
        in_container = flag(c["args"], f)
        assert os.path.dirname(in_container) == mount["mountPath"], f"{f} {in_container} is not in the ConfigMap mount"
        key = os.path.basename(in_container)
        assert key in cm["data"], f"{f} names {key}, which the ConfigMap does not hold"
        local = tmp_path / key
        local.write_text(cm["data"][key])
        paths[f] = str(local)
    return load_config(paths["--config"], paths["--analytics-config"], env=container_env(c))


def _cpu(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def _mem(q: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"(\d+)([KMG]i?)?", q)
    assert m, f"memory quantity {q!r}"
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(KUSTOMIZE / "overlays" / request.param)


# ---- the checks ------------------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = sorted((REPO / "deploy").rglob("*.yaml"))
    assert len(files) >= 10
    for f in files:
        docs = _docs(f)
        assert docs, f"{f} is empty"
        for d in docs:
            assert isinstance(d, dict), f"{f}: a document is not a mapping"
            if "kind" in d:
                assert ("apiVersion" in d and "metadata" in d) or d["kind"] == "Kustomization", f


def test_single_source_of_truth_for_config_files() -> None:
    """The config files exist once each, as plain files; no ConfigMap is written out by hand."""
    analytics = sorted(p.relative_to(KUSTOMIZE) for p in KUSTOMIZE.rglob("capsule8-analytics.yaml"))
    sensor = sorted(p.relative_to(KUSTOMIZE) for p in KUSTOMIZE.rglob("capsule8-sensor.yaml"))
    assert analytics == [Path("base/config/capsule8-analytics.yaml")]
    assert sensor == [Path(f"overlays/{o}/capsule8-sensor.yaml") for o in sorted(OVERLAYS)]
    for f in KUSTOMIZE.rglob("*.yaml"):
        assert all(d.get("kind") != "ConfigMap" for d in _docs(f)), f"{f} writes a ConfigMap by hand"


def test_overlay_resources_and_namespace(overlay) -> None:
    _, resources = overlay
    assert sorted(r["kind"] for r in resources) == ["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"]
    assert one(resources, "Namespace")["metadata"]["name"] == "capsule8"
    for r in resources:
        if r["kind"] != "Namespace":
            assert r["metadata"]["namespace"] == "capsule8", r["kind"]
    ds, sa = one(resources, "DaemonSet"), one(resources, "ServiceAccount")
    pod = ds["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False and sa["automountServiceAccountToken"] is False
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_config_loads_with_the_sensors_own_loader(overlay, tmp_path: Path) -> None:
    name, resources = overlay
    socket, _, handshake = OVERLAYS[name]
    cfg = sensor_config(resources, tmp_path)
    assert cfg.enabled is True
    assert cfg.addr == f"unix://{socket}" and cfg.socket_path == socket
    assert cfg.handshake == handshake
    if name == "crio":
        assert cfg.handshake_source == f"env {HANDSHAKE_ENV}"
    assert cfg.events == "auto"


def test_a_config_the_sensor_rejects_fails_here(tmp_path: Path) -> None:
    """The check above bites: the seed's mistake (no unix:// prefix) in the ConfigMap is an error."""
    resources = render(KUSTOMIZE / "overlays" / "crio")
    cm = one(resources, "ConfigMap")
    cm["data"]["capsule8-sensor.yaml"] = cm["data"]["capsule8-sensor.yaml"].replace(
        "unix:///var/run/crio/crio.sock", "/var/run/crio/crio.sock")
    with pytest.raises(ConfigError, match=r"crisensor\.addr: .* does not start with unix://"):
        sensor_config(resources, tmp_path)


def test_socket_directory_is_mounted_not_the_socket(overlay, tmp_path: Path) -> None:
    name, resources = overlay
    _, host_dir, _ = OVERLAYS[name]
    cfg = sensor_config(resources, tmp_path)
    pod = one(resources, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    host_paths = [v for v in pod["volumes"] if "hostPath" in v and v["hostPath"]["path"] != STATE_DIR]
    # the runtime's directory is the only host path besides the state, and it must already exist
    assert [v["hostPath"] for v in host_paths] == [{"path": host_dir, "type": "Directory"}]
    mounts = [m for m in sensor_container(one(resources, "DaemonSet"))["volumeMounts"]
              if "hostPath" in volumes[m["name"]] and m["mountPath"] != STATE_DIR]
    assert len(mounts) == 1
    mount = mounts[0]
    assert mount["readOnly"] is True
    assert mount["mountPath"] == host_dir  # mounted at the host's path, so addr reads the same on both
    assert os.path.dirname(cfg.socket_path) == mount["mountPath"], "crisensor.addr is not under the mount"


def test_the_state_dir_is_a_writable_host_directory(overlay, tmp_path: Path) -> None:
    """crisensor.state_dir (docs/state.md) lives on the node, so that a restarted pod resumes."""
    _, resources = overlay
    assert sensor_config(resources, tmp_path).state_dir == STATE_DIR
    ds = one(resources, "DaemonSet")
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    mounts = [m for m in sensor_container(ds)["volumeMounts"] if m["mountPath"] == STATE_DIR]
    assert len(mounts) == 1 and not mounts[0].get("readOnly")
    assert volumes[mounts[0]["name"]]["hostPath"] == {"path": STATE_DIR, "type": "DirectoryOrCreate"}


def test_least_privilege(overlay) -> None:
    _, resources = overlay
    ds = one(resources, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    # The process source (crisensor.processes) needs the host's PIDs and network namespace (the
    # kernel's proc connector exists only there) and CAP_NET_ADMIN to subscribe; nothing else.
    assert pod["hostPID"] is True and pod["hostNetwork"] is True
    assert pod.get("hostIPC", False) is False
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    sc = sensor_container(ds)["securityContext"]
    assert sc.get("privileged", False) is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # uid 0 because the sockets are root:root 0660 (explained in daemonset.yaml and docs/install.md)
    assert sc["runAsUser"] == 0 and sc["runAsNonRoot"] is False
    assert "securityContext" not in pod or "sysctls" not in pod["securityContext"]


def test_writable_tmp_for_the_handshake_shim(overlay) -> None:
    """readOnlyRootFilesystem, but the shim (handshake off/auto) makes its socket under /tmp."""
    _, resources = overlay
    ds = one(resources, "DaemonSet")
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    tmp = [m for m in sensor_container(ds)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]] and not tmp[0].get("readOnly")


def test_handshake_env_only_in_the_crio_overlay(overlay) -> None:
    name, resources = overlay
    env = container_env(sensor_container(one(resources, "DaemonSet")))
    if name == "crio":
        assert env[HANDSHAKE_ENV] == "off"
    else:
        assert HANDSHAKE_ENV not in env
    base_env = container_env(sensor_container(one(render(KUSTOMIZE / "base"), "DaemonSet")))
    assert HANDSHAKE_ENV not in base_env


def test_resources_and_liveness(overlay) -> None:
    _, resources = overlay
    c = sensor_container(one(resources, "DaemonSet"))
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    assert set(req) == set(lim) == {"cpu", "memory"}
    assert 0 < _cpu(req["cpu"]) <= _cpu(lim["cpu"])
    assert 0 < _mem(req["memory"]) <= _mem(lim["memory"])
    probe = c["livenessProbe"]["httpGet"]
    port = next(p for p in c["ports"] if p["name"] == probe["port"] or p["containerPort"] == probe["port"])
    metrics_addr = flag(c["args"], "--metrics-addr")
    assert int(metrics_addr.rpartition(":")[2]) == port["containerPort"]
    assert not metrics_addr.startswith("127."), "the kubelet probes the pod IP, not loopback"


def test_base_alone_is_not_a_working_sensor(tmp_path: Path) -> None:
    """The base has no socket and no sensor config: documented as not deployable on its own."""
    resources = render(KUSTOMIZE / "base")
    assert "capsule8-sensor.yaml" not in one(resources, "ConfigMap")["data"]
    assert not [v for v in one(resources, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
                if "hostPath" in v and v["hostPath"]["path"] != STATE_DIR]


# ---- the renderer against real kustomize ---------------------------------------------------------------


def _normalize(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop kustomize's ConfigMap name hash; sort merge-keyed lists (SMP order is not semantic)."""
    text = re.sub(r"crisensor-config-[a-z0-9]{10}\b", "crisensor-config", yaml.safe_dump_all(resources))

    def sort(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {k: sort(v, k) for k, v in node.items()}
        if isinstance(node, list):
            items = [sort(x) for x in node]
            if key in MERGE_KEYS:
                items.sort(key=lambda x: str(x.get(MERGE_KEYS[key])))
            return items
        return node

    return sorted((sort(d) for d in yaml.safe_load_all(text)), key=lambda d: (d["kind"], d["metadata"]["name"]))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) is not installed")
@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_python_render_matches_kustomize(name: str) -> None:
    directory = KUSTOMIZE / "overlays" / name
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _normalize(list(yaml.safe_load_all(done.stdout))) == _normalize(render(directory))
