"""The CRI protos: committed stubs are fresh, and the wire-level facts real runtimes rely on hold.

Names, field numbers and enum values below were checked against the published
k8s.io/cri-api (runtime/v1 from the Kubernetes tree, runtime/v1alpha2 as of
v0.25 / containerd's copy). A failure here means a change would make us speak a
different protocol from crictl, the kubelet, containerd or CRI-O.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, json_format

from cri_api import API_VERSIONS, CriApi, api

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "run `python scripts/gen_protos.py` and commit the result"

COMMON_RUNTIME_RPCS = (
    "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
    "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
    "ListContainers", "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog",
    "ExecSync", "Exec", "Attach", "PortForward", "ContainerStats", "ListContainerStats",
    "PodSandboxStats", "ListPodSandboxStats", "UpdateRuntimeConfig", "Status",
)  # fmt: skip
V1_ONLY_RUNTIME_RPCS = (
    "CheckpointContainer", "GetContainerEvents", "ListMetricDescriptors", "ListPodSandboxMetrics",
    "RuntimeConfig", "UpdatePodSandboxResources",
)  # fmt: skip
IMAGE_RPCS = ("ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo")


# ---------------------------------------------------------------- helpers


def _load_gen_script():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generator_versions(base: Path, version: str) -> tuple[str | None, str | None]:
    """(protobuf gencode version, grpc gencode version) recorded in the stubs under ``base``."""
    pb2 = (base / "cri_api" / version / "api_pb2.py").read_text()
    grpc_mod = (base / "cri_api" / version / "api_pb2_grpc.py").read_text()
    pb_version = re.search(r"^# Protobuf Python Version: (\S+)$", pb2, re.M)
    grpc_version = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", grpc_mod, re.M)
    return (pb_version and pb_version.group(1), grpc_version and grpc_version.group(1))


def _embedded_descriptor(pb2_path: Path) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto serialized into a generated ``api_pb2.py`` (read as text, not imported)."""
    for node in ast.walk(ast.parse(pb2_path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "AddSerializedFile":
            return descriptor_pb2.FileDescriptorProto.FromString(node.args[0].value)
    raise AssertionError(f"{pb2_path} has no AddSerializedFile(...) call; {REGENERATE}")


def _strip_json_names(messages) -> None:
    # Generated modules embed descriptors without json_name (the runtime derives it).
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _strip_json_names(message.nested_type)


def _fresh_descriptor(tmp_path: Path, version: str) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / f"{version}.pb"
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}", f"--descriptor_set_out={out}",
         f"protos/{version}/api.proto"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (fdp,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    _strip_json_names(fdp.message_type)
    fdp.name = f"cri_api/{version}/api.proto"  # gen_protos.py compiles the source under the package's name
    return fdp


def _field_number(pb2, message: str, field: str) -> int:
    return pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number


def _methods(pb2, service: str) -> dict[str, object]:
    return {m.name: m for m in pb2.DESCRIPTOR.services_by_name[service].methods}


class _RecordingChannel:
    """Just enough of grpc.Channel for a generated stub to register its method paths."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def _record(self, kind):
        def register(path, *args, **kwargs):
            self.paths[path] = kind
            return object()

        return register

    def __getattr__(self, kind):
        if kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            return self._record(kind)
        raise AttributeError(kind)


# ---------------------------------------------------------------- committed stubs are fresh


@pytest.mark.parametrize("version", API_VERSIONS)
def test_committed_stubs_describe_the_current_proto(tmp_path, version):
    """Version-independent staleness check: the descriptor embedded in api_pb2.py equals protoc's."""
    pytest.importorskip("grpc_tools.protoc")
    committed = _embedded_descriptor(ROOT / "cri_api" / version / "api_pb2.py")
    assert committed == _fresh_descriptor(tmp_path, version), (
        f"cri_api/{version}/api_pb2.py does not match protos/{version}/api.proto: {REGENERATE}"
    )


@pytest.mark.parametrize("version", API_VERSIONS)
def test_committed_grpc_stubs_cover_exactly_the_proto_services(tmp_path, version):
    pytest.importorskip("grpc_tools.protoc")
    fdp = _fresh_descriptor(tmp_path, version)
    expected = {f"/{fdp.package}.{s.name}/{m.name}" for s in fdp.service for m in s.method}
    text = (ROOT / "cri_api" / version / "api_pb2_grpc.py").read_text()
    assert set(re.findall(r"'(/runtime\.[^']+/[^']+)'", text)) == expected, (
        f"cri_api/{version}/api_pb2_grpc.py does not match the services in api.proto: {REGENERATE}"
    )


def test_committed_stubs_are_byte_identical_to_a_fresh_generation(tmp_path):
    """Regenerate everything into a temp dir; every committed file must be identical."""
    pytest.importorskip("grpc_tools.protoc")
    fresh = _load_gen_script().generate(tmp_path)
    for version in API_VERSIONS:
        ours, theirs = _generator_versions(ROOT, version), _generator_versions(tmp_path, version)
        if None not in ours and ours != theirs:
            pytest.skip(
                f"committed stubs were generated by protobuf/grpc {ours}, installed grpcio-tools "
                f"produces {theirs}; the version-independent checks above still apply"
            )
    stale = [
        str(path.relative_to(tmp_path))
        for path in fresh
        if not (ROOT / path.relative_to(tmp_path)).is_file()
        or (ROOT / path.relative_to(tmp_path)).read_bytes() != path.read_bytes()
    ]
    assert not stale, f"stale generated CRI stubs {stale}: {REGENERATE}"


def test_grpc_stubs_import_messages_through_the_cri_api_package():
    """The generated code is importable only as ``cri_api``: no generic top-level ``protos`` module ships."""
    for version in API_VERSIONS:
        text = (ROOT / "cri_api" / version / "api_pb2_grpc.py").read_text()
        assert f"from cri_api.{version} import api_pb2 as " in text


def test_pyproject_pins_cover_what_the_generated_code_demands():
    """The stubs refuse to load on an older runtime, so the declared minimums must be at least as new."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(?:,.*)?", d).groups() for d in deps if ">=" in d)

    def as_tuple(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    for version in API_VERSIONS:
        pb_needed, grpc_needed = _generator_versions(ROOT, version)
        assert as_tuple(floors["protobuf"]) >= as_tuple(pb_needed), (version, pb_needed)
        assert as_tuple(floors["grpcio"]) >= as_tuple(grpc_needed), (version, grpc_needed)


# ---------------------------------------------------------------- the api() helper


def test_api_returns_the_generated_modules_of_each_version():
    assert API_VERSIONS == ("v1", "v1alpha2")
    for version in API_VERSIONS:
        cri = api(version)
        assert isinstance(cri, CriApi)
        assert cri.version == version
        assert cri.pb2.__name__ == f"cri_api.{version}.api_pb2"
        assert cri.pb2_grpc.__name__ == f"cri_api.{version}.api_pb2_grpc"
        assert cri.pb2.DESCRIPTOR.package == f"runtime.{version}"


@pytest.mark.parametrize("bad", ["v2", "V1", "runtime.v1", "", "v1beta1"])
def test_api_rejects_unknown_versions_naming_the_accepted_ones(bad):
    with pytest.raises(ValueError, match=r"'v1', 'v1alpha2'"):
        api(bad)


# ---------------------------------------------------------------- services and method paths


@pytest.mark.parametrize("version", API_VERSIONS)
def test_generated_stubs_use_the_published_method_paths(version):
    cri = api(version)
    runtime, image = _RecordingChannel(), _RecordingChannel()
    cri.pb2_grpc.RuntimeServiceStub(runtime)
    cri.pb2_grpc.ImageServiceStub(image)
    for rpc in COMMON_RUNTIME_RPCS:
        assert runtime.paths[f"/runtime.{version}.RuntimeService/{rpc}"] == "unary_unary"
    for rpc in IMAGE_RPCS:
        assert image.paths[f"/runtime.{version}.ImageService/{rpc}"] == "unary_unary"
    if version == "v1":
        assert runtime.paths["/runtime.v1.RuntimeService/ListContainers"] == "unary_unary"
        assert runtime.paths["/runtime.v1.RuntimeService/GetContainerEvents"] == "unary_stream"
    else:
        assert image.paths["/runtime.v1alpha2.ImageService/ListImages"] == "unary_unary"
        assert not any(p.endswith("/GetContainerEvents") for p in runtime.paths)


def test_v1_only_rpcs_are_exactly_the_known_additions():
    v1, v1alpha2 = api("v1").pb2, api("v1alpha2").pb2
    assert set(_methods(v1alpha2, "RuntimeService")) == set(COMMON_RUNTIME_RPCS)
    assert set(_methods(v1, "RuntimeService")) == set(COMMON_RUNTIME_RPCS) | set(V1_ONLY_RUNTIME_RPCS)
    for pb2 in (v1, v1alpha2):
        assert set(_methods(pb2, "ImageService")) == set(IMAGE_RPCS)
    assert "GetContainerEvents" not in _methods(v1alpha2, "RuntimeService")


def test_get_container_events_is_server_streaming_with_published_types():
    method = _methods(api("v1").pb2, "RuntimeService")["GetContainerEvents"]
    assert method.input_type.full_name == "runtime.v1.GetEventsRequest"
    assert method.output_type.full_name == "runtime.v1.ContainerEventResponse"
    assert method.server_streaming and not method.client_streaming


# ---------------------------------------------------------------- enums


@pytest.mark.parametrize("version", API_VERSIONS)
def test_state_enums(version):
    pb2 = api(version).pb2
    assert pb2.PodSandboxState.items() == [("SANDBOX_READY", 0), ("SANDBOX_NOTREADY", 1)]
    assert pb2.ContainerState.items() == [
        ("CONTAINER_CREATED", 0),
        ("CONTAINER_RUNNING", 1),
        ("CONTAINER_EXITED", 2),
        ("CONTAINER_UNKNOWN", 3),
    ]
    assert pb2.NamespaceMode.items() == [("POD", 0), ("CONTAINER", 1), ("NODE", 2), ("TARGET", 3)]
    assert pb2.Protocol.items() == [("TCP", 0), ("UDP", 1), ("SCTP", 2)]
    assert pb2.SecurityProfile.ProfileType.items() == [("RuntimeDefault", 0), ("Unconfined", 1), ("Localhost", 2)]


def test_v1_event_and_misc_enums():
    pb2 = api("v1").pb2
    assert pb2.ContainerEventType.items() == [
        ("CONTAINER_CREATED_EVENT", 0),
        ("CONTAINER_STARTED_EVENT", 1),
        ("CONTAINER_STOPPED_EVENT", 2),
        ("CONTAINER_DELETED_EVENT", 3),
    ]
    assert pb2.CgroupDriver.items() == [("SYSTEMD", 0), ("CGROUPFS", 1)]
    assert pb2.MetricType.items() == [("COUNTER", 0), ("GAUGE", 1)]
    assert pb2.SupplementalGroupsPolicy.items() == [("Merge", 0), ("Strict", 1)]
    signals = pb2.Signal
    assert (signals.Value("RUNTIME_DEFAULT"), signals.Value("SIGKILL"), signals.Value("SIGTERM")) == (0, 13, 23)
    assert (signals.Value("SIGRTMIN"), signals.Value("SIGRTMAX"), len(signals.keys())) == (35, 65, 66)


# ---------------------------------------------------------------- field numbers


CONTAINER_STATUS_FIELDS = {
    "id": 1, "metadata": 2, "state": 3, "created_at": 4, "started_at": 5, "finished_at": 6,
    "exit_code": 7, "image": 8, "image_ref": 9, "reason": 10, "message": 11, "labels": 12,
    "annotations": 13, "mounts": 14, "log_path": 15, "resources": 16,
}  # fmt: skip
CONTAINER_FIELDS = {
    "id": 1, "pod_sandbox_id": 2, "metadata": 3, "image": 4, "image_ref": 5, "state": 6,
    "created_at": 7, "labels": 8, "annotations": 9,
}  # fmt: skip
POD_SANDBOX_FIELDS = {
    "id": 1, "metadata": 2, "state": 3, "created_at": 4, "labels": 5, "annotations": 6, "runtime_handler": 7,
}  # fmt: skip
POD_SANDBOX_STATUS_FIELDS = {
    "id": 1, "metadata": 2, "state": 3, "created_at": 4, "network": 5, "linux": 6, "labels": 7,
    "annotations": 8, "runtime_handler": 9,
}  # fmt: skip


@pytest.mark.parametrize("version", API_VERSIONS)
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("ContainerStatus", CONTAINER_STATUS_FIELDS),
        ("Container", CONTAINER_FIELDS),
        ("PodSandbox", POD_SANDBOX_FIELDS),
        ("PodSandboxStatus", POD_SANDBOX_STATUS_FIELDS),
        ("VersionResponse", {"version": 1, "runtime_name": 2, "runtime_version": 3, "runtime_api_version": 4}),
        ("ContainerMetadata", {"name": 1, "attempt": 2}),
        ("PodSandboxMetadata", {"name": 1, "uid": 2, "namespace": 3, "attempt": 4}),
        ("ListContainersResponse", {"containers": 1}),
        ("ListPodSandboxResponse", {"items": 1}),
        ("ContainerFilter", {"id": 1, "state": 2, "pod_sandbox_id": 3, "label_selector": 4}),
        ("PodSandboxFilter", {"id": 1, "state": 2, "label_selector": 3}),
        ("ContainerStatusResponse", {"status": 1, "info": 2}),
        ("ImageSpec", {"image": 1, "annotations": 2}),
        ("Namespace", {"options": 2}),
    ],
)
def test_field_numbers(version, message, expected):
    pb2 = api(version).pb2
    for field, number in expected.items():
        assert _field_number(pb2, message, field) == number, f"{version} {message}.{field}"


def test_v1_only_field_numbers():
    pb2 = api("v1").pb2
    assert _field_number(pb2, "Container", "image_id") == 10
    assert _field_number(pb2, "ContainerStatus", "image_id") == 17
    assert _field_number(pb2, "ContainerStatus", "user") == 18
    assert _field_number(pb2, "ContainerStatus", "stop_signal") == 19
    assert _field_number(pb2, "ImageSpec", "user_specified_image") == 18
    assert _field_number(pb2, "ImageSpec", "runtime_handler") == 19
    assert _field_number(pb2, "PodSandboxStatusResponse", "containers_statuses") == 3
    assert _field_number(pb2, "PodSandboxStatusResponse", "timestamp") == 4
    event = {"container_id": 1, "container_event_type": 2, "created_at": 3, "pod_sandbox_status": 4,
             "containers_statuses": 5}  # fmt: skip
    for field, number in event.items():
        assert _field_number(pb2, "ContainerEventResponse", field) == number


@pytest.mark.parametrize("version", API_VERSIONS)
def test_timestamps_are_int64_nanoseconds(version):
    pb2 = api(version).pb2
    int64 = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
    for message, field in [
        ("Container", "created_at"),
        ("ContainerStatus", "created_at"),
        ("ContainerStatus", "started_at"),
        ("ContainerStatus", "finished_at"),
        ("PodSandbox", "created_at"),
        ("PodSandboxStatus", "created_at"),
    ]:
        assert pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].type == int64
    assert pb2.ContainerStatus.DESCRIPTOR.fields_by_name["exit_code"].type == (
        descriptor_pb2.FieldDescriptorProto.TYPE_INT32
    )


# ---------------------------------------------------------------- v1alpha2 is a wire-compatible subset of v1


def _shape(field) -> tuple:
    type_name = field.message_type.name if field.message_type else field.enum_type.name if field.enum_type else ""
    return field.name, field.type, field.is_repeated, type_name


def test_every_v1alpha2_message_and_enum_exists_in_v1_with_identical_fields():
    v1, v1alpha2 = api("v1").pb2.DESCRIPTOR, api("v1alpha2").pb2.DESCRIPTOR

    def check(old, new, path):
        for field in old.fields:
            assert field.number in new.fields_by_number, f"{path}.{field.name} missing in v1"
            assert _shape(new.fields_by_number[field.number]) == _shape(field), f"{path}.{field.name}"
        for nested in old.nested_types:
            check(nested, new.nested_types_by_name[nested.name], f"{path}.{nested.name}")
        for enum in old.enum_types:
            assert enum.values_by_name.keys() <= new.enum_types_by_name[enum.name].values_by_name.keys()

    for name, message in v1alpha2.message_types_by_name.items():
        assert name in v1.message_types_by_name, f"{name} missing in v1"
        check(message, v1.message_types_by_name[name], name)
    for name, enum in v1alpha2.enum_types_by_name.items():
        assert [(v.name, v.number) for v in enum.values] == [
            (v.name, v.number) for v in v1.enum_types_by_name[name].values
        ][: len(enum.values)], name


def _sample_v1_list(pb2, *, with_v1_only_fields: bool):
    extra = {"image_id": "sha256:" + "c" * 64} if with_v1_only_fields else {}
    return pb2.ListContainersResponse(
        containers=[
            pb2.Container(
                id="a" * 64,
                pod_sandbox_id="b" * 64,
                metadata=pb2.ContainerMetadata(name="web", attempt=3),
                image=pb2.ImageSpec(image="docker.io/library/nginx:1.25", annotations={"k": "v"}),
                image_ref="docker.io/library/nginx@sha256:" + "d" * 64,
                state=pb2.CONTAINER_EXITED,
                created_at=1_700_000_000_123_456_789,
                labels={"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "default"},
                annotations={"io.kubernetes.container.restartCount": "3"},
                **extra,
            ),
            pb2.Container(id="e" * 64, state=pb2.CONTAINER_RUNNING, created_at=1),
        ]
    )


def test_list_containers_response_from_v1_parses_identically_as_v1alpha2():
    v1, v1alpha2 = api("v1").pb2, api("v1alpha2").pb2
    sent = _sample_v1_list(v1, with_v1_only_fields=False)
    wire = sent.SerializeToString(deterministic=True)
    received = v1alpha2.ListContainersResponse.FromString(wire)
    as_dict = {"preserving_proto_field_name": True}
    assert json_format.MessageToDict(received, **as_dict) == json_format.MessageToDict(sent, **as_dict)
    assert received.SerializeToString(deterministic=True) == wire
    assert received.containers[0].state == v1alpha2.CONTAINER_EXITED
    assert v1.ListContainersResponse.FromString(received.SerializeToString()) == sent


def test_v1_only_fields_survive_a_round_trip_through_v1alpha2():
    v1, v1alpha2 = api("v1").pb2, api("v1alpha2").pb2
    sent = _sample_v1_list(v1, with_v1_only_fields=True)
    relayed = v1alpha2.ListContainersResponse.FromString(sent.SerializeToString())
    assert relayed.containers[0].metadata.name == "web"
    assert v1.ListContainersResponse.FromString(relayed.SerializeToString()) == sent
