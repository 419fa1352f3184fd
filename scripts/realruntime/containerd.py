#!/usr/bin/env python3
"""Run a private, throw-away REAL containerd (1.6, 1.7 or 2.1; CRI plugin, runc, CNI bridge) for tests.

``release`` picks the binary: ``"1.6"`` is the system's Debian package; ``"1.7"`` (Debian trixie)
and ``"2.1"`` (Debian sid) are extracted by ``fetch-containerd.sh`` into a private cache
(``$CRISENSOR_CONTAINERD_CACHE``, default ``/var/cache/crisensor-containerd/<suite>``) and run with
their own shim and ``ctr`` first on ``PATH``; 2.x gets a version 3 config.

Everything lives under one temporary directory: config, root, state, runc state, the
CRI socket, the CNI config and IPAM state, the containerd log.  Images come from
``build_images.py`` (offline) and are imported with ``ctr``; the CRI ``sandbox_image``
is the offline pause image, so nothing is ever pulled.

    with running_containerd(tmp_path) as cd:
        grpc.insecure_channel(cd.addr)        # runtime.v1 and runtime.v1alpha2
        ...                                   # use cd.busybox_image, cd.cgroup_parent

On exit every pod/container is stopped and removed through the CRI, containerd is
stopped (SIGTERM, then SIGKILL), any leftover shim or container process under the
directory is killed, every mount under the directory is unmounted, and the CNI bridge,
the CNI result cache entries, the shim sockets and the cgroups it created are removed.
If anything is still left, :class:`ContainerdError` is raised naming it.

CLI (for a person debugging by hand)::

    python scripts/realruntime/containerd.py check          # why it cannot run here, or "ok"
    python scripts/realruntime/containerd.py run DIR        # start, print the socket, wait for Ctrl-C
    python scripts/realruntime/containerd.py cleanup DIR    # tear down what a crashed run left in DIR
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:  # imported as part of the scripts/realruntime package
    from . import build_images as _images
except ImportError:  # run as a script: scripts/realruntime is sys.path[0]
    import build_images as _images  # type: ignore[no-redef]

K8S_NAMESPACE = "k8s.io"
#: Debian packages that provide everything this module needs.
APT_PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "busybox-static",
    "gcc",
    "libc6-dev",
    "iproute2",
)
CNI_BIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CNI_CACHE_DIR = Path("/var/lib/cni/results")
SHIM_SOCKET_DIR = Path("/run/containerd/s")  # hard-coded in containerd 1.6 shims
SUN_PATH_MAX = 107  # bytes usable in sockaddr_un.sun_path (one byte for the NUL)
CRI_APIS = ("runtime.v1", "runtime.v1alpha2")
#: release -> Debian suite it is fetched from (None: the system package)
RELEASES: dict[str, str | None] = {"1.6": None, "1.7": "trixie", "2.1": "sid"}
FETCH_SCRIPT = Path(__file__).resolve().parent / "fetch-containerd.sh"


def cache_root() -> Path:
    return Path(os.environ.get("CRISENSOR_CONTAINERD_CACHE", "/var/cache/crisensor-containerd"))


def release_bin_dir(release: str) -> Path | None:
    """Where ``release``'s binaries are (None: the system's PATH). Raises KeyError for unknown ones."""
    suite = RELEASES[release]
    return None if suite is None else cache_root() / suite / "usr" / "bin"


def fetch_release(release: str, timeout: float = 300) -> str | None:
    """Fetch ``release`` into the cache if it is not there yet; the reason it cannot be, or None."""
    suite, bin_dir = RELEASES[release], release_bin_dir(release)
    if suite is None or bin_dir is None or (bin_dir.parent.parent / ".complete").is_file():
        return None
    if os.geteuid() != 0:
        return f"containerd {release} is not in {bin_dir.parent.parent} and fetching it needs root"
    try:
        res = subprocess.run(["bash", str(FETCH_SCRIPT), suite, str(cache_root())], capture_output=True,
                             text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"fetching containerd {release} from Debian {suite} failed: {e}"
    if res.returncode != 0:
        tail = " | ".join(res.stderr.strip().splitlines()[-3:])
        return f"fetching containerd {release} from Debian {suite} failed (no network to the mirror?): {tail}"
    return None


class ContainerdError(RuntimeError):
    """containerd did not start, did not become ready, or left something behind."""


class ContainerdUnavailable(ContainerdError):
    """This machine cannot run containerd (see :func:`containerd_unavailable_reason`)."""


# --------------------------------------------------------------------------- availability


def _which(name: str, bin_dir: Path | None = None) -> str | None:
    if bin_dir is not None and (bin_dir / name).is_file():
        return str(bin_dir / name)
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def _cni_bin_dir() -> Path | None:
    for d in CNI_BIN_DIRS:
        if all((d / p).is_file() for p in CNI_PLUGINS):
            return d
    return None


def containerd_unavailable_reason(release: str = "1.6") -> str | None:
    """Why a real containerd ``release`` cannot run on this machine, or ``None`` if it can."""
    install = "apt-get install -y " + " ".join(APT_PACKAGES)
    if release not in RELEASES:
        return f"unknown containerd release {release!r}; known: {', '.join(RELEASES)}"
    bin_dir = release_bin_dir(release)
    if not sys.platform.startswith("linux"):
        return f"real containerd needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "real containerd needs root (mounts, namespaces, cgroups); run the tests as root"
    missing = [b for b in ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "ip") if not _which(b)]
    if missing:
        return f"missing {', '.join(missing)}: {install}"
    if bin_dir is not None:
        reason = fetch_release(release)
        if reason:
            return reason
        absent = [b for b in ("containerd", "ctr", "containerd-shim-runc-v2") if not (bin_dir / b).is_file()]
        if absent:
            return f"{', '.join(absent)} missing in {bin_dir}: remove {bin_dir.parent.parent} and fetch again"
    if _cni_bin_dir() is None:
        dirs = " or ".join(str(d) for d in CNI_BIN_DIRS)
        return f"CNI plugins {', '.join(CNI_PLUGINS)} not found in {dirs}: {install}"
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        return "no cgroup filesystem mounted at /sys/fs/cgroup"
    try:
        _images.find_static_busybox()
    except _images.ImageBuildError as e:
        return str(e)
    if not _which("gcc"):
        return f"gcc missing (needed to build the pause image): {install}"
    return None


# --------------------------------------------------------------------------- tiny protobuf + raw CRI


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_string(field_no: int, value: str | bytes) -> bytes:
    """Encode one length-delimited field (string, bytes or an already encoded message)."""
    data = value.encode() if isinstance(value, str) else value
    return _varint(field_no << 3 | 2) + _varint(len(data)) + data


def pb_int(field_no: int, value: int) -> bytes:
    """Encode one varint field (int32/int64/uint32/bool/enum)."""
    return _varint(field_no << 3) + _varint(value)


def pb_decode(data: bytes) -> dict[int, list[int | bytes]]:
    """Decode one message level: ``{field number: [values]}`` (varints as int, the rest as bytes)."""
    out: dict[int, list[int | bytes]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < len(data):
        key = varint()
        field_no, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value = varint()
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            n = varint()
            value, i = data[i : i + n], i + n
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(field_no, []).append(value)
    return out


def pb_str(fields: dict[int, list[int | bytes]], field_no: int) -> str:
    vals = fields.get(field_no)
    return vals[-1].decode() if vals and isinstance(vals[-1], bytes) else ""


def cri_call(socket_path: str | Path, method: str, request: bytes = b"", timeout: float = 10.0) -> bytes:
    """One unary gRPC call with raw protobuf bytes, e.g. ``/runtime.v1.RuntimeService/Version``."""
    import grpc

    with grpc.insecure_channel(f"unix://{socket_path}") as ch:
        return ch.unary_unary(method)(request, timeout=timeout)


def cri_version(socket_path: str | Path, api: str = "runtime.v1", timeout: float = 10.0) -> dict[str, str]:
    """``RuntimeService/Version`` on ``api`` (``runtime.v1`` or ``runtime.v1alpha2``), decoded by hand."""
    resp = cri_call(socket_path, f"/{api}.RuntimeService/Version", pb_string(1, "v1"), timeout)
    f = pb_decode(resp)
    keys = ("version", "runtime_name", "runtime_version", "runtime_api_version")
    return {k: pb_str(f, i) for i, k in enumerate(keys, start=1)}


def _cri_image_known(socket_path: Path, image: str) -> bool:
    req = pb_string(1, pb_string(1, image))  # ImageStatusRequest{image: ImageSpec{image}}
    resp = cri_call(socket_path, "/runtime.v1.ImageService/ImageStatus", req, timeout=5)
    return 1 in pb_decode(resp)  # ImageStatusResponse.image is unset when the image is unknown


# --------------------------------------------------------------------------- handle + config


@dataclass
class ContainerdHandle:
    socket: Path
    addr: str  # "unix:///.../containerd.sock"
    busybox_image: str
    pause_image: str
    root: Path
    state: Path
    tmpdir: Path
    config_path: Path
    log_path: Path
    runc_root: Path
    cni_conf_dir: Path
    cni_bin_dir: Path
    cni_network: str  # CNI network name (also the prefix of its /var/lib/cni/results entries)
    bridge: str  # host bridge the CNI bridge plugin creates for POD-network sandboxes
    pod_subnet: str
    cgroup_parent: str  # suggested LinuxPodSandboxConfig.cgroup_parent; removed at teardown
    snapshotter: str
    release: str = "1.6"
    bin_dir: Path | None = None  # the release's private binaries (None: the system's)
    pid: int = 0
    #: shared directories that did not exist before this run (a k8s.io cgroup parent, /run/containerd/s,
    #: /var/lib/cni/results): removed at teardown, each only if empty, children first
    own_dirs: list[Path] = field(default_factory=list)
    start_seconds: float = 0.0
    teardown_seconds: float | None = None
    leftovers: list[str] = field(default_factory=list)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no containerd log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def ctr(
        self, *args: str, namespace: str = K8S_NAMESPACE, timeout: float = 30, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [_which("ctr", self.bin_dir) or "ctr", "--address", str(self.socket), "--namespace", namespace, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise ContainerdError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res


def _key(tmpdir: Path) -> str:
    return hashlib.sha256(str(tmpdir).encode()).hexdigest()[:8]


def _fs_type(path: Path) -> str:
    best, fstype = "", ""
    for mp, fs in ((m.mount_point, m.fstype) for m in _mountinfo()):
        if (str(path) == mp or str(path).startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
            best, fstype = mp, fs
    return fstype


def pick_snapshotter(tmpdir: Path) -> str:
    """overlayfs where the kernel has it and ``tmpdir`` is not itself on overlay; else native."""
    env = os.environ.get("CRISENSOR_CONTAINERD_SNAPSHOTTER")
    if env:
        return env
    try:
        has_overlay = "overlay" in Path("/proc/filesystems").read_text().split()
    except OSError:
        has_overlay = False
    return "overlayfs" if has_overlay and _fs_type(tmpdir) not in ("overlay", "aufs") else "native"


def path_fits_socket(tmpdir: str | Path) -> bool:
    """Whether ``tmpdir``'s sockets (``containerd.sock.ttrpc``) fit in ``sockaddr_un``."""
    return len(str(Path(tmpdir).resolve() / "containerd.sock.ttrpc").encode()) <= SUN_PATH_MAX


def make_handle(tmpdir: Path, snapshotter: str | None = None, release: str = "1.6") -> ContainerdHandle:
    tmpdir = Path(tmpdir).resolve()
    key = _key(tmpdir)
    sock = tmpdir / "containerd.sock"
    if not path_fits_socket(tmpdir):
        raise ContainerdError(f"temp dir path too long for a unix socket ({sock}); use a shorter one")
    return ContainerdHandle(
        socket=sock,
        addr=f"unix://{sock}",
        busybox_image=_images.BUSYBOX_IMAGE,
        pause_image=_images.PAUSE_IMAGE,
        root=tmpdir / "root",
        state=tmpdir / "state",
        tmpdir=tmpdir,
        config_path=tmpdir / "config.toml",
        log_path=tmpdir / "containerd.log",
        runc_root=tmpdir / "runc",
        cni_conf_dir=tmpdir / "cni" / "net.d",
        cni_bin_dir=_cni_bin_dir() or CNI_BIN_DIRS[0],
        cni_network=f"crisensor-{key}",
        bridge=f"crs{key}",
        pod_subnet=f"10.88.{int(key[:2], 16)}.0/24",
        cgroup_parent=f"/crisensor-{key}",
        snapshotter=snapshotter or pick_snapshotter(tmpdir),
        release=release,
        bin_dir=release_bin_dir(release),
    )


def _q(s: object) -> str:
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string for these paths


def render_config(h: ContainerdHandle) -> str:
    if not h.release.startswith("1."):
        return render_config_v3(h)
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    disabled = [
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]
    return f"""\
# Generated by scripts/realruntime/containerd.py -- private throw-away containerd for tests.
version = 2
root = {_q(h.root)}
state = {_q(h.state)}
oom_score = 0
disabled_plugins = {json.dumps(disabled)}

[grpc]
  address = {_q(h.socket)}

[ttrpc]
  address = {_q(str(h.socket) + ".ttrpc")}

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {_q(h.tmpdir / "opt")}

  {cri}]
    sandbox_image = {_q(h.pause_image)}
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_apparmor = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true

  {cri}.cni]
    bin_dir = {_q(h.cni_bin_dir)}
    conf_dir = {_q(h.cni_conf_dir)}
    max_conf_num = 1

  {cri}.containerd]
    snapshotter = {_q(h.snapshotter)}
    default_runtime_name = "runc"

  {cri}.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"

  {cri}.containerd.runtimes.runc.options]
    BinaryName = {_q(_which("runc") or "runc")}
    Root = {_q(h.runc_root)}
    SystemdCgroup = false
"""


def render_config_v3(h: ContainerdHandle) -> str:
    """containerd 2.x: config version 3 (the CRI plugin split into runtime and images plugins)."""
    rt, images = "[plugins.'io.containerd.cri.v1.runtime'", "[plugins.'io.containerd.cri.v1.images'"
    disabled = [
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.blockfile",
        "io.containerd.snapshotter.v1.erofs",
        "io.containerd.differ.v1.erofs",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
        "io.containerd.nri.v1.nri",  # would serve /var/run/nri/nri.sock, shared with the host
    ]
    return f"""\
# Generated by scripts/realruntime/containerd.py -- private throw-away containerd {h.release} for tests.
version = 3
root = {_q(h.root)}
state = {_q(h.state)}
oom_score = 0
disabled_plugins = {json.dumps(disabled)}

[grpc]
  address = {_q(h.socket)}

[ttrpc]
  address = {_q(str(h.socket) + ".ttrpc")}

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = {_q(h.tmpdir / "opt")}

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

  {images}]
    snapshotter = {_q(h.snapshotter)}

  {images}.pinned_images]
    sandbox = {_q(h.pause_image)}

  {rt}]
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_apparmor = true
    enable_selinux = false
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true

  {rt}.cni]
    bin_dirs = [{_q(h.cni_bin_dir)}]
    conf_dir = {_q(h.cni_conf_dir)}
    max_conf_num = 1

  {rt}.containerd]
    default_runtime_name = "runc"

  {rt}.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    snapshotter = {_q(h.snapshotter)}

  {rt}.containerd.runtimes.runc.options]
    BinaryName = {_q(_which("runc") or "runc")}
    Root = {_q(h.runc_root)}
    SystemdCgroup = false
"""


def render_cni_conflist(h: ContainerdHandle) -> str:
    conf = {
        "cniVersion": "1.0.0",
        "name": h.cni_network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": h.bridge,
                # No gateway and no masquerade: the host gets no address or route in the pod
                # subnet, ip_forward and iptables stay untouched; pods just get an interface + IP.
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": h.pod_subnet}]],
                    "dataDir": str(h.tmpdir / "cni" / "ipam"),
                },
            }
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def write_files(h: ContainerdHandle) -> None:
    h.tmpdir.mkdir(parents=True, exist_ok=True)
    h.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    h.config_path.write_text(render_config(h))
    (h.cni_conf_dir / "10-crisensor.conflist").write_text(render_cni_conflist(h))
    meta: dict[str, object] = {k: str(v) for k, v in asdict(h).items() if k not in ("leftovers", "own_dirs")}
    meta["own_dirs"] = [str(d) for d in h.own_dirs]
    (h.tmpdir / "handle.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_handle(tmpdir: Path) -> ContainerdHandle:
    """The handle of a (possibly crashed) run in ``tmpdir``, for :func:`teardown`."""
    tmpdir = Path(tmpdir).resolve()
    try:
        meta = json.loads((tmpdir / "handle.json").read_text())
    except (OSError, ValueError):
        return make_handle(tmpdir, "overlayfs")
    h = make_handle(tmpdir, meta.get("snapshotter") or None, meta.get("release") or "1.6")
    h.own_dirs = [Path(d) for d in meta.get("own_dirs", [])]
    return h


# --------------------------------------------------------------------------- start


def _start(h: ContainerdHandle, log_level: str) -> subprocess.Popen[bytes]:
    cmd = [_which("containerd", h.bin_dir) or "containerd", "--config", str(h.config_path), "--log-level", log_level]
    setpriv = shutil.which("setpriv")
    if setpriv:  # containerd gets SIGTERM if this (the test) process dies without tearing down
        cmd = [setpriv, "--pdeathsig", "TERM", "--", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "GRPC_"))}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if h.bin_dir is not None:  # the release's own shim, found by containerd on PATH
        env["PATH"] = f"{h.bin_dir}:{env['PATH']}"
    with open(h.log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C to the tests reaches the teardown, not containerd
            env=env,
            cwd=h.tmpdir,
        )
    h.pid = proc.pid
    return proc


def _socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _fail(h: ContainerdHandle, msg: str) -> ContainerdError:
    try:
        log = h.log_path.read_text(errors="replace").splitlines()
    except OSError:
        log = []
    problems = [ln for ln in log if "level=error" in ln or "level=fatal" in ln or "failed to load plugin" in ln]
    text = msg
    if problems:
        text += f"\n--- errors in {h.log_path} ---\n" + "\n".join(problems[-10:])
    text += f"\n--- last lines of {h.log_path} ---\n{h.log_tail(25)}"
    return ContainerdError(text)


def _wait_ready(h: ContainerdHandle, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import grpc

    deadline = time.monotonic() + timeout
    last = "socket never appeared"
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            raise _fail(h, f"containerd exited with status {rc} during startup")
        if _socket_accepts(h.socket):
            try:
                cri_version(h.socket, "runtime.v1", timeout=2)
                return
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                last = f"CRI Version failed: {code}: {e.details() if hasattr(e, 'details') else e}"
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    raise _fail(h, f"containerd is up but its CRI plugin is not serving ({last})") from e
        time.sleep(0.05)
    raise _fail(h, f"containerd not ready within {timeout:.0f}s ({last})")


def _import_images(h: ContainerdHandle, archives: dict[str, Path], timeout: float) -> None:
    for archive in archives.values():
        h.ctr("images", "import", "--snapshotter", h.snapshotter, str(archive), timeout=timeout)
    deadline = time.monotonic() + timeout
    pending = set(archives)
    while pending:
        pending = {img for img in pending if not _cri_image_known(h.socket, img)}
        if pending and time.monotonic() > deadline:
            raise _fail(h, f"CRI does not list imported images {sorted(pending)}")
        if pending:
            time.sleep(0.05)


#: tmpdir -> the containerd process of a running instance (``restart`` replaces it)
_RUNNING: dict[Path, subprocess.Popen[bytes]] = {}


def restart(h: ContainerdHandle, *, down_s: float = 0.0, sig: int = signal.SIGKILL, timeout: float = 30.0) -> float:
    """Kill the instance's containerd (SIGKILL: a crash; its shims and containers live on), wait
    ``down_s``, start it again on the same root, state and socket; return the seconds it was down
    (until it answered CRI again)."""
    proc = _RUNNING[h.tmpdir]
    t0 = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout=timeout)
    time.sleep(down_s)
    proc = _RUNNING[h.tmpdir] = _start(h, "info")
    _wait_ready(h, proc, timeout)
    return time.monotonic() - t0


@contextlib.contextmanager
def running_containerd(
    tmpdir: str | Path,
    *,
    image_cache: str | Path | None = None,
    start_timeout: float = 30.0,
    stop_timeout: float = 10.0,
    snapshotter: str | None = None,
    log_level: str = "info",
    release: str = "1.6",
) -> Iterator[ContainerdHandle]:
    """Start containerd under ``tmpdir``, import the offline images, yield, tear everything down.

    Raises :class:`ContainerdUnavailable` if this machine cannot run it, :class:`ContainerdError`
    (with the tail of containerd's log) if it does not come up, and :class:`ContainerdError` at
    exit if the teardown left a process, mount, bridge or shim socket behind.
    """
    reason = containerd_unavailable_reason(release)
    if reason:
        raise ContainerdUnavailable(reason)
    t0 = time.monotonic()
    h = make_handle(Path(tmpdir), snapshotter, release)
    try:
        archives = _images.build_images(Path(image_cache) if image_cache else h.tmpdir / "images")
    except _images.ImageBuildError as e:
        raise ContainerdUnavailable(str(e)) from e
    shared = [SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent, CNI_CACHE_DIR, CNI_CACHE_DIR.parent]
    with contextlib.suppress(OSError):
        shared += [r / K8S_NAMESPACE for r in _cgroup_roots()]
    h.own_dirs = [d for d in shared if not d.exists()]
    write_files(h)
    proc: subprocess.Popen[bytes] | None = None
    failed = False
    try:
        proc = _RUNNING[h.tmpdir] = _start(h, log_level)
        _wait_ready(h, proc, start_timeout)
        _import_images(h, archives, timeout=start_timeout)
        h.start_seconds = time.monotonic() - t0
        yield h
    except BaseException:
        failed = True
        raise
    finally:
        proc = _RUNNING.pop(h.tmpdir, proc)  # restart() may have replaced it
        leftovers = teardown(h, proc, stop_timeout=stop_timeout)
        if leftovers and not failed:
            raise ContainerdError(f"teardown of {h.tmpdir} left: " + "; ".join(leftovers))


# --------------------------------------------------------------------------- teardown


@dataclass
class _Proc:
    pid: int
    ppid: int
    state: str
    cmdline: bytes


def _processes() -> dict[int, _Proc]:
    out: dict[int, _Proc] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmdline = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        out[int(d)] = _Proc(int(d), int(rest[1]), rest[0], cmdline)
    return out


def _own_lineage(procs: dict[int, _Proc]) -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        pid = procs[pid].ppid if pid in procs else 0
    return pids


#: programs that belong to a containerd instance (argv[0] basenames); their descendants are containers
_RUNTIME_PROGRAMS = {
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v1",
    "containerd-shim-runc-v2",
    "runc",
    "setpriv",
}


def _our_processes(tmpdir: Path) -> tuple[dict[int, _Proc], set[int], set[int]]:
    """(all processes, runtime processes whose command line names a path under tmpdir, their descendants)."""
    procs = _processes()
    needle = (str(tmpdir).rstrip("/") + "/").encode()
    mine = _own_lineage(procs)
    direct = {
        p.pid
        for p in procs.values()
        if needle in p.cmdline
        and p.pid not in mine
        and os.path.basename(p.cmdline.split(b"\0", 1)[0].decode(errors="replace")) in _RUNTIME_PROGRAMS
    }
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    desc: set[int] = set()
    todo = list(direct)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in direct and c not in desc and c not in mine:
                desc.add(c)
                todo.append(c)
    return procs, direct, desc


def _describe(p: _Proc) -> str:
    cmd = p.cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"pid {p.pid} ({p.state}) {cmd[:160]}"


def _kill_and_wait(pids: set[int], timeout: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = _processes()
        if all(pid not in procs or procs[pid].state == "Z" for pid in pids):
            return
        time.sleep(0.02)


def _shim_ids(procs: dict[int, _Proc], pids: set[int]) -> list[tuple[str, str, str]]:
    """(address, namespace, id) of containerd-shim-runc-v2 processes among ``pids``."""
    out = []
    for pid in pids:
        argv = [a.decode(errors="replace") for a in procs[pid].cmdline.split(b"\0")]
        if not argv or "containerd-shim" not in argv[0]:
            continue
        opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}
        if "-id" in opts and "-address" in opts:
            out.append((opts["-address"], opts.get("-namespace", K8S_NAMESPACE), opts["-id"]))
    return out


def _task_ids(h: ContainerdHandle) -> list[tuple[str, str]]:
    """(namespace, id) of every task/sandbox containerd kept state for (readable even after a crash)."""
    out = []
    with contextlib.suppress(OSError):
        out += [(K8S_NAMESPACE, d.name) for d in (h.root / "io.containerd.grpc.v1.cri" / "sandboxes").iterdir()]
    for base in (h.state / "io.containerd.runtime.v2.task", h.root / "io.containerd.runtime.v2.task"):
        with contextlib.suppress(OSError):
            for ns in base.iterdir():
                with contextlib.suppress(OSError):
                    out += [(ns.name, t.name) for t in ns.iterdir()]
    return sorted(set(out))


def _shim_socket(address: str, namespace: str, task_id: str) -> Path:
    digest = hashlib.sha256(f"{address}/{namespace}/{task_id}".encode()).hexdigest()
    return SHIM_SOCKET_DIR / digest


def _cri_remove_all(h: ContainerdHandle) -> None:
    """Stop and remove every CRI container and pod sandbox (best effort, bounded)."""
    import grpc

    for api in CRI_APIS:
        svc = f"/{api}.RuntimeService"
        try:
            resp = cri_call(h.socket, f"{svc}/ListContainers", b"", timeout=10)
        except grpc.RpcError:
            continue
        for c in pb_decode(resp).get(1, []):
            cid = pb_str(pb_decode(c), 1)  # type: ignore[arg-type]
            with contextlib.suppress(grpc.RpcError):
                cri_call(h.socket, f"{svc}/StopContainer", pb_string(1, cid) + pb_int(2, 0), timeout=15)
            with contextlib.suppress(grpc.RpcError):
                cri_call(h.socket, f"{svc}/RemoveContainer", pb_string(1, cid), timeout=15)
        with contextlib.suppress(grpc.RpcError):
            resp = cri_call(h.socket, f"{svc}/ListPodSandbox", b"", timeout=10)
            for s in pb_decode(resp).get(1, []):
                sid = pb_str(pb_decode(s), 1)  # type: ignore[arg-type]
                with contextlib.suppress(grpc.RpcError):
                    cri_call(h.socket, f"{svc}/StopPodSandbox", pb_string(1, sid), timeout=30)
                with contextlib.suppress(grpc.RpcError):
                    cri_call(h.socket, f"{svc}/RemovePodSandbox", pb_string(1, sid), timeout=30)
        return


def _ctr_kill_all(h: ContainerdHandle) -> None:
    """Kill and delete non-CRI tasks (e.g. made with ``ctr run``) in every namespace."""
    with contextlib.suppress(ContainerdError, subprocess.SubprocessError, OSError):
        namespaces = h.ctr("namespaces", "list", "-q", timeout=10).stdout.split()
        for ns in namespaces:
            tasks = h.ctr("tasks", "list", "-q", namespace=ns, timeout=10, check=False).stdout.split()
            for t in tasks:
                h.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", t, namespace=ns, timeout=10, check=False)
            for t in tasks:
                h.ctr("tasks", "delete", "--force", t, namespace=ns, timeout=15, check=False)


@dataclass
class _Mount:
    mount_id: int
    mount_point: str
    fstype: str


def _unescape(s: str) -> str:
    return s.encode().decode("unicode_escape") if "\\" in s else s


def _mountinfo() -> list[_Mount]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            out.append(_Mount(int(parts[0]), _unescape(parts[4]), parts[sep + 1]))
    return out


def mounts_under(path: Path) -> list[str]:
    p = str(path).rstrip("/")
    return [m.mount_point for m in _mountinfo() if m.mount_point == p or m.mount_point.startswith(p + "/")]


_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


def _umount(path: str, flags: int) -> int:
    if _libc.umount2(path.encode(), flags) == 0:
        return 0
    return ctypes.get_errno()


def unmount_all(path: Path, rounds: int = 20) -> None:
    """Unmount everything at or below ``path``: deepest (and newest) first, lazily if busy."""
    p = str(path).rstrip("/")
    for _ in range(rounds):
        mounts = [m for m in _mountinfo() if m.mount_point == p or m.mount_point.startswith(p + "/")]
        if not mounts:
            return
        mounts.sort(key=lambda m: (m.mount_point.count("/"), m.mount_id), reverse=True)
        for m in mounts:
            err = _umount(m.mount_point, 0)
            if err in (errno.EBUSY, errno.EAGAIN):
                _umount(m.mount_point, _MNT_DETACH)


def _cgroup_roots() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # pure cgroup v2
        return [base]
    return [d for d in base.iterdir() if d.is_dir() and not d.is_symlink()]


def _cgroup_dirs(h: ContainerdHandle, task_ids: list[tuple[str, str]]) -> list[Path]:
    rels = [h.cgroup_parent.strip("/")] + [f"{K8S_NAMESPACE}/{tid}" for _, tid in task_ids]
    with contextlib.suppress(OSError):
        return [root / rel for root in _cgroup_roots() for rel in rels if (root / rel).is_dir()]
    return []


def _remove_cgroups(dirs: list[Path], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        busy = False
        for d in dirs:
            if not d.exists():
                continue
            for sub, _dirs, _files in os.walk(d, topdown=False):
                try:
                    os.rmdir(sub)
                except OSError as e:
                    busy = busy or e.errno == errno.EBUSY
        if not busy or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _cni_cache_entries(h: ContainerdHandle, task_ids: list[tuple[str, str]]) -> list[Path]:
    """libcni result-cache files of this run: ``<network>-<sandbox id>-<ifname>`` (also cni-loopback)."""
    ids = {tid for _, tid in task_ids}
    with contextlib.suppress(OSError):
        return sorted(
            p
            for p in CNI_CACHE_DIR.iterdir()
            if p.name.startswith(h.cni_network + "-") or any(f"-{i}-" in p.name for i in ids)
        )
    return []


def find_leftovers(h: ContainerdHandle, shim_sockets: list[Path] | None = None) -> list[str]:
    """Everything of this instance still present: processes, mounts, the bridge, shim sockets."""
    procs, direct, desc = _our_processes(h.tmpdir)
    left = [_describe(procs[p]) for p in sorted(direct | desc) if procs[p].state != "Z"]
    left += [f"mount {m}" for m in mounts_under(h.tmpdir)]
    if Path("/sys/class/net", h.bridge).exists():
        left.append(f"network link {h.bridge}")
    left += [f"shim socket {s}" for s in shim_sockets or [] if s.exists()]
    left += [f"CNI cache {p}" for p in _cni_cache_entries(h, _task_ids(h))]
    return left


def teardown(h: ContainerdHandle, proc: subprocess.Popen[bytes] | None = None, stop_timeout: float = 10.0) -> list[str]:
    """Tear down the instance described by ``h``; returns what could not be removed (ideally []).

    Every step is best effort and bounded; a step that fails is reported among the leftovers and
    the later steps still run.
    """
    t0 = time.monotonic()
    problems: list[str] = []
    shims: list[tuple[str, str, str]] = []

    def step(name: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except Exception as e:
            problems.append(f"teardown step {name!r} failed: {type(e).__name__}: {e}")

    def cri_cleanup() -> None:
        alive = proc is None or proc.poll() is None  # proc None: cleanup of a run we did not start
        if alive and _socket_accepts(h.socket):
            _cri_remove_all(h)
            _ctr_kill_all(h)

    def stop_containerd() -> None:  # SIGTERM, bounded wait, SIGKILL
        procs, direct, _ = _our_processes(h.tmpdir)
        shims.extend(_shim_ids(procs, direct))
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=stop_timeout)

    def kill_leftover_processes() -> None:
        # Container processes first (their shim still reaps them), then the shims, any runc and
        # a containerd we did not start ourselves (cleanup of a crashed run).
        procs, direct, desc = _our_processes(h.tmpdir)
        shims.extend(_shim_ids(procs, direct))
        if desc:
            _kill_and_wait(desc, timeout=stop_timeout)
        procs, direct, desc = _our_processes(h.tmpdir)
        if direct | desc:
            _kill_and_wait(direct | desc, timeout=stop_timeout)

    def remove_network() -> None:
        if Path("/sys/class/net", h.bridge).exists():
            subprocess.run([_which("ip") or "ip", "link", "delete", h.bridge], capture_output=True, timeout=10)
        for p in _cni_cache_entries(h, task_ids):
            p.unlink(missing_ok=True)

    def remove_shim_sockets() -> None:
        for s in sockets:
            s.unlink(missing_ok=True)

    def remove_dirs() -> None:
        _remove_cgroups(_cgroup_dirs(h, task_ids))
        for d in h.own_dirs:
            with contextlib.suppress(OSError):
                d.rmdir()  # only succeeds when empty: nothing of another runtime is ever touched

    step("CRI stop/remove", cri_cleanup)
    task_ids = _task_ids(h)
    step("stop containerd", stop_containerd)
    step("kill processes", kill_leftover_processes)
    step("unmount", unmount_all, h.tmpdir)
    step("remove network", remove_network)
    sockets = {_shim_socket(addr, ns, tid) for addr, ns, tid in shims}
    sockets |= {_shim_socket(str(h.socket), ns, tid) for ns, tid in task_ids}
    step("remove shim sockets", remove_shim_sockets)
    step("remove cgroups/dirs", remove_dirs)

    h.leftovers = problems + find_leftovers(h, sorted(sockets))
    h.teardown_seconds = time.monotonic() - t0
    return h.leftovers


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="private throw-away containerd for tests")
    sub = ap.add_subparsers(dest="cmd", required=True)
    check = sub.add_parser("check", help="print why containerd cannot run here, or ok")
    check.add_argument("--release", choices=sorted(RELEASES), default="1.6")
    run = sub.add_parser("run", help="start under DIR, print the socket, wait for Ctrl-C")
    run.add_argument("dir", type=Path)
    run.add_argument("--image-cache", type=Path)
    run.add_argument("--release", choices=sorted(RELEASES), default="1.6")
    clean = sub.add_parser("cleanup", help="tear down whatever a crashed run left under DIR")
    clean.add_argument("dir", type=Path)
    args = ap.parse_args(argv)

    if args.cmd == "check":
        reason = containerd_unavailable_reason(args.release)
        print(reason or "ok")
        return 1 if reason else 0
    if args.cmd == "cleanup":
        h = load_handle(args.dir)
        left = teardown(h)
        print("clean" if not left else "left: " + "; ".join(left))
        return 1 if left else 0

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _stop)  # also when started in the background (SIGINT ignored)
    signal.signal(signal.SIGTERM, _stop)
    try:
        with running_containerd(args.dir, image_cache=args.image_cache, release=args.release) as h:
            print(f"containerd ready in {h.start_seconds:.2f}s at {h.addr} (pid {h.pid}); Ctrl-C stops it")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    except ContainerdError as e:
        print(f"containerd: {e}", file=sys.stderr)
        return 1
    print(f"stopped; teardown took {h.teardown_seconds:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
