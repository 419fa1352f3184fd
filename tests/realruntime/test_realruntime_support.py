"""The real-containerd fixture's own machinery, without starting containerd (runs anywhere).

Image archives are built offline and deterministically; the config parses; the raw protobuf
helpers round-trip; "cannot run here" skips outside CI and fails under CI=true.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
from crisensor_realruntime import build_images as bi
from crisensor_realruntime import containerd as rr
from crisensor_realruntime.pytest_support import containerd_or_skip, skip_or_fail


def test_unavailable_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(rr, "containerd_unavailable_reason", lambda release="1.6": "no containerd here")
    with pytest.raises(pytest.skip.Exception, match="no containerd here"), containerd_or_skip(tmp_path):
        pass


def test_unavailable_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(rr, "containerd_unavailable_reason", lambda release="1.6": "no containerd here")
    with pytest.raises(pytest.fail.Exception, match=r"no containerd here.*CI=true"), containerd_or_skip(tmp_path):
        pass


def test_reason_names_root(monkeypatch):
    monkeypatch.setattr(rr.os, "geteuid", lambda: 1000)
    reason = rr.containerd_unavailable_reason()
    assert reason is not None and "root" in reason


def test_protobuf_helpers_round_trip():
    msg = rr.pb_string(1, "abc") + rr.pb_int(2, 300) + rr.pb_string(3, rr.pb_string(1, "x")) + rr.pb_int(4, -1)
    fields = rr.pb_decode(msg)
    assert rr.pb_str(fields, 1) == "abc"
    assert fields[2] == [300]
    assert rr.pb_str(rr.pb_decode(fields[3][0]), 1) == "x"
    assert fields[4] == [2**64 - 1]  # negative int64 is a 10-byte varint


def test_config_and_cni_conf_parse():
    h = rr.make_handle(Path("/tmp/crisensor-config-test"), "overlayfs")  # nothing is created
    cfg = tomllib.loads(rr.render_config(h))
    assert cfg["version"] == 2
    assert cfg["root"] == str(h.root) and cfg["state"] == str(h.state)
    assert cfg["grpc"]["address"] == str(h.socket)
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == h.pause_image
    assert cri["restrict_oom_score_adj"] is True
    assert cri["cni"]["conf_dir"] == str(h.cni_conf_dir)
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["Root"] == str(h.runc_root)
    conf = json.loads(rr.render_cni_conflist(h))
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == h.bridge and len(h.bridge) <= 15  # IFNAMSIZ
    assert bridge["ipMasq"] is False and bridge["isGateway"] is False
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == h.pod_subnet
    assert h.addr == f"unix://{h.socket}"


def _read_archive(path):
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    index = json.loads(files["index.json"])
    (desc,) = index["manifests"]
    blob = lambda d: files["blobs/sha256/" + d.split(":", 1)[1]]  # noqa: E731
    manifest = json.loads(blob(desc["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    (layer_desc,) = manifest["layers"]
    layer = blob(layer_desc["digest"])
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]  # uncompressed layer
    with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
        members = {m.name: m for m in lt.getmembers()}
        contents = {m.name: lt.extractfile(m).read() for m in lt.getmembers() if m.isfile()}
    return desc, config, members, contents


def test_images_build_offline_and_deterministically(tmp_path):
    try:
        a = bi.build_images(tmp_path / "a")
        b = bi.build_images(tmp_path / "b")
    except bi.ImageBuildError as e:
        skip_or_fail(str(e))
    assert set(a) == {bi.BUSYBOX_IMAGE, bi.PAUSE_IMAGE}
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), f"{name} archive not deterministic"
    assert bi.build_images(tmp_path / "a") == a  # cached: same paths, not rebuilt

    desc, config, members, _ = _read_archive(a[bi.BUSYBOX_IMAGE])
    assert desc["annotations"]["io.containerd.image.name"] == bi.BUSYBOX_IMAGE
    assert members["bin/busybox"].isfile()
    for applet in ("sh", "sleep", "true", "false", "echo"):
        assert members[f"bin/{applet}"].issym() and members[f"bin/{applet}"].linkname == "busybox"
    assert config["os"] == "linux" and config["config"]["Cmd"] == ["sh"]

    desc, config, members, contents = _read_archive(a[bi.PAUSE_IMAGE])
    assert desc["annotations"]["io.containerd.image.name"] == bi.PAUSE_IMAGE
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert members["pause"].isfile() and members["pause"].mode & 0o111
    (tmp_path / "pause").write_bytes(contents["pause"])
    assert bi.elf_is_static(tmp_path / "pause"), "pause must be static (the image has no libc)"


def test_config_v3_for_containerd_2_parses():
    """containerd 2.x: config version 3 with the CRI plugin split into runtime and images plugins."""
    h = rr.make_handle(Path("/tmp/crisensor-config-test"), "overlayfs", "2.1")  # nothing is created
    cfg = tomllib.loads(rr.render_config(h))
    assert cfg["version"] == 3 and cfg["root"] == str(h.root) and cfg["grpc"]["address"] == str(h.socket)
    runtime = cfg["plugins"]["io.containerd.cri.v1.runtime"]
    images = cfg["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == h.pause_image and images["snapshotter"] == "overlayfs"
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["cni"]["bin_dirs"] == [str(h.cni_bin_dir)] and runtime["cni"]["conf_dir"] == str(h.cni_conf_dir)
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["Root"] == str(h.runc_root)
    assert "io.containerd.nri.v1.nri" in cfg["disabled_plugins"]
    assert h.bin_dir == rr.cache_root() / "sid" / "usr" / "bin"


def test_release_reasons(monkeypatch, tmp_path):
    assert "unknown containerd release '9.9'" in (rr.containerd_unavailable_reason("9.9") or "")
    monkeypatch.setenv("CRISENSOR_CONTAINERD_CACHE", str(tmp_path))  # nothing fetched there
    monkeypatch.setattr(rr.os, "geteuid", lambda: 1000)
    reason = rr.fetch_release("1.7")
    assert reason is not None and "needs root" in reason and str(tmp_path / "trixie") in reason
    assert rr.fetch_release("1.6") is None  # the system's package: nothing to fetch
