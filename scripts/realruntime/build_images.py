#!/usr/bin/env python3
"""Build the offline test images for the real-containerd fixture.

Two OCI image archives (``oci-layout`` + ``index.json`` + ``blobs/sha256/...``, as
``ctr images import`` reads them), built without any network access:

* ``localhost/crisensor-test/busybox:1`` -- the host's *static* busybox
  (Debian ``busybox-static``) as ``/bin/busybox`` plus one symlink per applet
  (``sh``, ``sleep``, ``true``, ``false``, ``echo``, ...).
* ``localhost/crisensor-test/pause:1`` -- ``/pause`` compiled from ``pause.c``
  beside this file with ``gcc -static``; it is the CRI ``sandbox_image``.

The archives are deterministic (fixed mtimes/owners, sorted entries, canonical
JSON), so the same inputs always give the same digests.  Built archives are cached
in a directory under a name derived from a hash of the inputs.

Library use::

    from build_images import build_images
    paths = build_images(Path("/var/cache/crisensor-images"))  # {image name: tar path}

CLI::

    python scripts/realruntime/build_images.py --out DIR    # prints JSON {name: path}
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Bump when the image layout produced here changes (invalidates cached archives).
FORMAT_VERSION = "1"

BUSYBOX_IMAGE = "localhost/crisensor-test/busybox:1"
PAUSE_IMAGE = "localhost/crisensor-test/pause:1"

PAUSE_SOURCE = Path(__file__).resolve().with_name("pause.c")
DEFAULT_BUSYBOX = Path("/bin/busybox")

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
CREATED = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Applets always linked even if `busybox --list` cannot be run for some reason.
_FALLBACK_APPLETS = ("cat", "echo", "env", "false", "id", "ls", "ps", "sh", "sleep", "true")


class ImageBuildError(RuntimeError):
    """The images cannot be built on this machine (message says why and what to install)."""


# --------------------------------------------------------------------------- tar / JSON helpers


@dataclass(frozen=True)
class Entry:
    """One rootfs entry: a directory, a regular file or a symlink."""

    path: str  # relative, no leading slash
    kind: str  # "dir" | "file" | "symlink"
    mode: int = 0o755
    data: bytes = b""
    target: str = ""


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _tarinfo(name: str, kind: str, mode: int, size: int = 0, target: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = mode
    if kind == "dir":
        ti.type = tarfile.DIRTYPE
    elif kind == "symlink":
        ti.type = tarfile.SYMTYPE
        ti.linkname = target
    else:
        ti.type = tarfile.REGTYPE
        ti.size = size
    return ti


def deterministic_tar(entries: Iterable[Entry]) -> bytes:
    """An uncompressed tar of ``entries`` (parents before children, then by name)."""
    buf = io.BytesIO()
    ordered = sorted(entries, key=lambda e: (e.path.count("/"), e.path) if e.kind == "dir" else (99, e.path))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for e in ordered:
            name = e.path + "/" if e.kind == "dir" else e.path
            ti = _tarinfo(name, e.kind, e.mode, len(e.data), e.target)
            tar.addfile(ti, io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_archive(image_name: str, layer: bytes, config: dict) -> bytes:
    """An OCI image-layout tar holding one single-layer linux/amd64 image named ``image_name``."""
    layer_digest = sha256_digest(layer)  # uncompressed layer: digest == diff_id
    image_config = {
        "architecture": _oci_arch(),
        "os": "linux",
        "created": CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": CREATED, "created_by": "crisensor scripts/realruntime/build_images.py"}],
    }
    config_bytes = canonical_json(image_config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": sha256_digest(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}],
    }
    manifest_bytes = canonical_json(manifest)
    tag = image_name.rsplit(":", 1)[1] if ":" in image_name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": sha256_digest(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": _oci_arch(), "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": image_name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    blobs = {sha256_digest(b).split(":", 1)[1]: b for b in (layer, config_bytes, manifest_bytes)}
    entries = [
        Entry("blobs", "dir"),
        Entry("blobs/sha256", "dir"),
        Entry("oci-layout", "file", 0o644, canonical_json({"imageLayoutVersion": "1.0.0"})),
        Entry("index.json", "file", 0o644, canonical_json(index)),
    ]
    entries += [Entry(f"blobs/sha256/{hexd}", "file", 0o644, data) for hexd, data in blobs.items()]
    return deterministic_tar(entries)


def _oci_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


# --------------------------------------------------------------------------- inputs


def elf_is_static(path: Path) -> bool:
    """True iff ``path`` is an ELF executable without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            return False
        is64, little = ident[4] == 2, ident[5] == 1
        end = "<" if little else ">"
        if is64:
            f.seek(0x20)
            (phoff,) = struct.unpack(end + "Q", f.read(8))
            f.seek(0x36)
        else:
            f.seek(0x1C)
            (phoff,) = struct.unpack(end + "I", f.read(4))
            f.seek(0x2A)
        phentsize, phnum = struct.unpack(end + "HH", f.read(4))
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(end + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return False
        return True


def find_static_busybox(candidate: Path | None = None) -> Path:
    paths = [candidate] if candidate else [DEFAULT_BUSYBOX, Path("/usr/bin/busybox"), Path("/bin/busybox-static")]
    for p in paths:
        if p and p.is_file() and elf_is_static(p):
            return p
    raise ImageBuildError(
        f"no statically linked busybox at {', '.join(map(str, paths))}: apt-get install busybox-static"
    )


def busybox_applets(busybox: Path) -> list[str]:
    try:
        out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, timeout=10, check=True)
        names = {n.strip() for n in out.stdout.split() if n.strip() and "/" not in n}
    except (OSError, subprocess.SubprocessError):
        names = set()
    names.update(_FALLBACK_APPLETS)
    names.discard("busybox")
    return sorted(names)


def compile_pause(dest: Path, source: Path = PAUSE_SOURCE, cc: str = "gcc") -> Path:
    if shutil.which(cc) is None:
        raise ImageBuildError(f"{cc} not found: apt-get install gcc libc6-dev")
    cmd = [cc, "-static", "-Os", "-s", "-o", str(dest), str(source)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise ImageBuildError(f"{' '.join(cmd)} failed (need gcc + libc6-dev):\n{res.stderr.strip()}")
    return dest


def _base_entries() -> list[Entry]:
    dirs = ["bin", "dev", "etc", "proc", "root", "sys", "tmp", "usr", "usr/bin", "var"]
    entries = [Entry(d, "dir", 0o1777 if d == "tmp" else 0o755) for d in dirs]
    entries += [
        Entry("etc/passwd", "file", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"),
        Entry("etc/group", "file", 0o644, b"root:x:0:\nnogroup:x:65534:\n"),
    ]
    return entries


# --------------------------------------------------------------------------- images


def busybox_image_tar(busybox: Path, image_name: str = BUSYBOX_IMAGE) -> bytes:
    data = busybox.read_bytes()
    entries = [*_base_entries(), Entry("bin/busybox", "file", 0o755, data)]
    entries += [Entry(f"bin/{a}", "symlink", 0o777, target="busybox") for a in busybox_applets(busybox)]
    config = {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"}
    return oci_archive(image_name, deterministic_tar(entries), config)


def pause_image_tar(pause_binary: bytes, image_name: str = PAUSE_IMAGE) -> bytes:
    entries = [*_base_entries(), Entry("pause", "file", 0o755, pause_binary)]
    config = {"Env": [PATH_ENV], "Entrypoint": ["/pause"], "WorkingDir": "/"}
    return oci_archive(image_name, deterministic_tar(entries), config)


def _cc_identity(cc: str) -> bytes:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return b""


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _script_hash() -> bytes:
    return hashlib.sha256(Path(__file__).read_bytes()).digest()


def build_images(
    cache_dir: Path,
    *,
    busybox: Path | None = None,
    pause_source: Path = PAUSE_SOURCE,
    cc: str = "gcc",
) -> dict[str, Path]:
    """Build (or reuse from ``cache_dir``) both archives; returns ``{image name: archive path}``."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    bb = find_static_busybox(busybox)

    h = hashlib.sha256(FORMAT_VERSION.encode() + _script_hash() + bb.read_bytes()).hexdigest()[:16]
    bb_tar = cache_dir / f"busybox-{h}.oci.tar"
    if not bb_tar.is_file():
        _write_atomic(bb_tar, busybox_image_tar(bb))

    src = Path(pause_source).read_bytes()
    h = hashlib.sha256(FORMAT_VERSION.encode() + _script_hash() + src + _cc_identity(cc)).hexdigest()[:16]
    pause_tar = cache_dir / f"pause-{h}.oci.tar"
    if not pause_tar.is_file():
        with tempfile.TemporaryDirectory(dir=cache_dir) as td:
            binary = compile_pause(Path(td) / "pause", Path(pause_source), cc).read_bytes()
        _write_atomic(pause_tar, pause_image_tar(binary))

    return {BUSYBOX_IMAGE: bb_tar, PAUSE_IMAGE: pause_tar}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="cache/output directory for the .oci.tar files")
    ap.add_argument("--busybox", type=Path, help="static busybox binary (default /bin/busybox)")
    ap.add_argument("--cc", default="gcc", help="C compiler for pause.c (default gcc)")
    args = ap.parse_args(argv)
    try:
        paths = build_images(args.out, busybox=args.busybox, cc=args.cc)
    except ImageBuildError as e:
        print(f"build_images: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
