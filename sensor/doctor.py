"""``crisensor doctor``: say why the sensor cannot reach its runtime, and what to change.

Theory of operation
-------------------
Installation fails in a fixed order, so the doctor checks in that order and each check needs the
ones before it::

    config -> path -> socket -> access -> handshake -> runtime -> events -> lists -> message size

Each check yields one ``Check``: a status (``ok``, ``warn``, ``FAIL``, or ``skip`` when an
earlier failure makes it impossible to run), what it found, and for ``FAIL``/``warn`` a fix. The
chain stops at the first failure that later checks cannot get past; the remaining checks are
reported as ``skip`` so the user sees what was not examined. One exception: when the runtime
withholds its HTTP/2 preface (old CRI-O's cmux) and the configuration says ``handshake:
require``, the doctor reports ``FAIL`` and then carries on with ``handshake: off`` -- the fix it
just named -- so the user learns in one run whether anything else is wrong.

Exit status: 0 when the sensor would work (warnings allowed), 1 when a check failed, 2 when the
configuration or the flags are bad (the same rule as ``crisensor run``).

Everything that touches the machine is injected (``Host`` for identity, capabilities, SELinux
and container detection; ``connect`` for the unix-socket connect; the list of well-known socket
paths), and the pieces of judgement are pure functions (``classify_preface``, ``dac_allows``,
``access_advice``, ``size_verdict``), so each diagnosis is testable without a real runtime.

The handshake check speaks raw HTTP/2: it sends the 24-byte client preface plus an empty SETTINGS
frame and waits for the server's first frame. A gRPC server answers with SETTINGS at once; old
CRI-O (before 1.14.11/1.15.2/1.16.0) has ``cmux`` in front of gRPC, which sends nothing until it
has seen the client's first HEADERS frame. See docs/install.md, "The handshake".
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import grp
import os
import pwd
import socket
import stat
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sensor.config import (
    DEFAULT_ANALYTICS_PATH,
    DEFAULT_SENSOR_PATH,
    HANDSHAKE_ENV,
    ConfigError,
    SensorConfig,
    load_config,
)
from sensor.duration import DurationError, format_duration, parse_duration
from sensor.handshake import CLIENT_PREFACE, EMPTY_SETTINGS, FRAME_HEADER_LEN, SETTINGS, FrameScanner

__all__ = [
    "CHECKS",
    "WELL_KNOWN_SOCKETS",
    "Check",
    "Doctor",
    "Host",
    "access_advice",
    "add_doctor_parser",
    "classify_preface",
    "cmd_doctor",
    "dac_allows",
    "exit_code",
    "main",
    "size_verdict",
]

#: The checks, in the order they run.
CHECKS = ("config", "path", "socket", "access", "handshake", "runtime", "events", "lists", "message size", "memory",
          "processes")

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"

#: Where CRI runtimes put their sockets, with the runtime each path belongs to. ``/var/run`` is a
#: symlink to ``/run`` on current distributions; both spellings are listed because configs use both.
WELL_KNOWN_SOCKETS: tuple[tuple[str, str], ...] = (
    ("/var/run/crio/crio.sock", "CRI-O"),
    ("/run/crio/crio.sock", "CRI-O"),
    ("/var/run/containerd/containerd.sock", "containerd"),
    ("/run/containerd/containerd.sock", "containerd"),
    ("/run/k3s/containerd/containerd.sock", "k3s's containerd"),
    ("/var/snap/microk8s/common/run/containerd.sock", "microk8s's containerd"),
    ("/var/run/cri-dockerd.sock", "cri-dockerd"),
    ("/var/run/dockershim.sock", "dockershim (kubelet before 1.24)"),
)

#: How long the events check waits for GetContainerEvents to end (EOF or error) before calling it
#: a stream.
EVENTS_WAIT_S = 1.0
#: Message size above this fraction of ``crisensor.max_recv_bytes`` is a warning.
SIZE_WARN_RATIO = 0.5
#: The doctor's own receive limit: large enough to measure any real list, so the size check can
#: compare it with the sensor's limit instead of failing in the list.
_DOCTOR_RECV_LIMIT = 2**31 - 1

_IN_CONTAINER_HINT = ("if the sensor runs in a container, crisensor.addr must name the socket as mounted INSIDE "
                      "that container: mount the host's socket directory (e.g. hostPath /run/containerd, type "
                      "Directory) and point crisensor.addr at the socket under the mount point")


@dataclass(frozen=True)
class Check:
    """One line of the report. ``fix`` is set for ``FAIL`` and ``warn``."""

    name: str
    status: str
    found: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.status:<5}{self.name:<14}{self.found}"]
        if self.fix:
            out.append(f"{'':<5}{'':<14}fix: {self.fix}")
        return out


@dataclass(frozen=True)
class Host:
    """What the doctor needs to know about the process and the machine it runs on."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    #: CAP_DAC_OVERRIDE in the effective set: file modes do not bind this process
    dac_override: bool
    #: ``enforcing``, ``permissive`` or ``None`` (no SELinux)
    selinux: str | None
    in_container: bool

    @classmethod
    def current(cls) -> Host:
        return cls(uid=os.geteuid(), gid=os.getegid(), groups=tuple(os.getgroups()),
                   dac_override=_has_cap(1), selinux=_selinux_mode(), in_container=_in_container())


def _has_cap(bit: int) -> bool:
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def _selinux_mode() -> str | None:
    try:
        with open("/sys/fs/selinux/enforce", "rb") as fh:
            return "enforcing" if fh.read().strip() == b"1" else "permissive"
    except OSError:
        return None


def _in_container() -> bool:
    return (os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")
            or "KUBERNETES_SERVICE_HOST" in os.environ)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _connect_unix(path: str, timeout_s: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


# ---- pure judgement ----------------------------------------------------------------------------


def dac_allows(st: os.stat_result, host: Host) -> bool:
    """Whether file permissions let ``host`` connect: connecting to a unix socket needs write access."""
    if host.dac_override:
        return True
    mode = st.st_mode
    if host.uid == st.st_uid:
        return bool(mode & stat.S_IWUSR)
    if st.st_gid == host.gid or st.st_gid in host.groups:
        return bool(mode & stat.S_IWGRP)
    return bool(mode & stat.S_IWOTH)


def _describe(st: os.stat_result) -> str:
    return f"{_user(st.st_uid)}:{_group(st.st_gid)} {stat.S_IMODE(st.st_mode):04o}"


def _who(host: Host) -> str:
    groups = ",".join(str(g) for g in sorted(set(host.groups) | {host.gid}))
    return f"uid {host.uid} ({_user(host.uid)}), groups {groups}"


def access_advice(path: str, st: os.stat_result | None, host: Host) -> str:
    """The fix for EACCES on connect: file permissions, or (when they allow it) a security module."""
    if st is not None and not dac_allows(st, host):
        mode = stat.S_IMODE(st.st_mode)
        owner, group = _user(st.st_uid), _group(st.st_gid)
        restart = "(a chmod/chgrp of the socket itself does not last: the runtime recreates it when it restarts)"
        if mode & stat.S_IWGRP and st.st_gid == 0:
            return (f"{path} is {owner}:{group} {mode:04o}: only uid 0 or members of group root (gid 0) may connect. "
                    "Run the sensor as uid 0 -- owner permission is enough, so all capabilities can still be "
                    "dropped -- or give it supplementary group 0 (Kubernetes: securityContext.supplementalGroups: "
                    f"[0]) {restart}")
        if mode & stat.S_IWGRP:
            return (f"{path} is {owner}:{group} {mode:04o}: run the sensor as root, or add its user to group "
                    f"{group!r} (gid {st.st_gid}): on a host `usermod -aG {group} USER` and log in again; in "
                    f"Kubernetes securityContext.supplementalGroups: [{st.st_gid}]")
        return (f"{path} is {owner}:{group} {mode:04o}: only {owner} (uid {st.st_uid}) may connect. Run the sensor "
                f"as uid {st.st_uid}, or have the runtime create a group-writable socket (containerd: `gid` in the "
                f"[grpc] section of /etc/containerd/config.toml) {restart}")
    # File permissions allow it (or the socket could not be examined): something else refused.
    parts = ["file permissions allow this user, so the refusal comes from a parent directory without search (x) "
             "permission or from a Linux security module."]
    if host.selinux == "enforcing":
        parts.append("SELinux is enforcing: a containerized sensor runs as container_t, which may not connect to "
                     "the runtime (container_runtime_t). Run the pod with securityContext.seLinuxOptions.type: "
                     "spc_t, or load a policy module that allows container_t `connectto` container_runtime_t "
                     "unix_stream_socket (udica or audit2allow can generate one from the denial in "
                     "/var/log/audit/audit.log). Relabeling the mount with :z/:Z does not help -- connect is checked "
                     "against the runtime process's label -- and relabels the host's runtime directory.")
    elif host.selinux == "permissive":
        parts.append("SELinux is permissive (it logs but does not refuse), so look at AppArmor: `dmesg | grep "
                     "DENIED` and the container's AppArmor profile.")
    else:
        parts.append("No SELinux here; check AppArmor (`dmesg | grep DENIED`) and the directories' modes "
                     f"(`namei -l {path}`).")
    return " ".join(parts)


@dataclass(frozen=True)
class Preface:
    """What the server sent in answer to the client preface."""

    #: ``settings`` (a proper server preface), ``withheld`` (nothing, connection open), ``closed``
    #: (nothing, connection closed), ``http1`` (an HTTP/1.x answer), ``other`` (bytes that are not
    #: a SETTINGS frame)
    kind: str
    detail: str = ""


def classify_preface(data: bytes, closed: bool) -> Preface:
    """Judge the server's first bytes after the client preface (``closed``: EOF or reset seen)."""
    if not data:
        return Preface("closed" if closed else "withheld")
    if data.startswith(b"HTTP/"):
        first = data.split(b"\r\n", 1)[0].decode("latin-1")[:60]
        return Preface("http1", first)
    if len(data) < FRAME_HEADER_LEN:
        return Preface("other", f"{len(data)} bytes, not a frame: {data!r}")
    frame = FrameScanner(client=False).feed(data[:FRAME_HEADER_LEN])[0]
    if frame.type == SETTINGS and not frame.flags & 1:
        return Preface("settings", f"SETTINGS, {frame.length} bytes of parameters")
    return Preface("other", f"first frame is {frame.type_name} (flags 0x{frame.flags:x}), not SETTINGS")


def size_verdict(size: int, limit: int) -> str:
    """``ok`` below half the limit, ``warn`` up to the limit, ``FAIL`` above it."""
    if size > limit:
        return FAIL
    if size > limit * SIZE_WARN_RATIO:
        return WARN
    return OK


def _bytes(n: float) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def exit_code(checks: Sequence[Check]) -> int:
    """2: bad configuration; 1: a check failed; 0: the sensor would work (warnings allowed)."""
    if any(c.name == "config" and c.status == FAIL for c in checks):
        return 2
    return 1 if any(c.status == FAIL for c in checks) else 0


# ---- the chain -----------------------------------------------------------------------------------


@dataclass
class Doctor:
    """Runs the checks. ``run()`` yields them one at a time (the CLI prints each as it completes)."""

    sensor_path: str | None = None
    analytics_path: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: the environment (for GRPC_GO_REQUIRE_HANDSHAKE); ``None``: ``os.environ``
    env: Mapping[str, str] | None = None
    #: deadline of every probe and RPC; ``None``: ``crisensor.rpc_timeout``
    timeout_s: float | None = None
    host: Host | None = None
    connect: Callable[[str, float], socket.socket] = _connect_unix
    well_known: Sequence[tuple[str, str]] = WELL_KNOWN_SOCKETS
    events_wait_s: float = EVENTS_WAIT_S
    list_rounds: int = 3
    #: None when the proc connector accepts a subscription, else why not (``sensor.procsource.probe``)
    processes_probe: Callable[[], str | None] | None = None
    #: the sensor's memory limit in bytes, None for none (``sensor.footprint.memory_limit``: its cgroup's)
    memory_limit: Callable[[], int | None] | None = None

    def run(self) -> Iterator[Check]:
        done: list[str] = []

        def skipped(reason: str) -> Iterator[Check]:
            for name in CHECKS[len(done):-1]:  # the runtime chain; "processes" does not depend on it
                yield Check(name, SKIP, f"not run: {reason}")

        def emit(check: Check) -> Check:
            done.append(check.name)
            return check

        check, cfg = self._config()
        yield emit(check)
        if cfg is None:
            yield from skipped("the configuration is bad")
            yield Check("processes", SKIP, "not run: the configuration is bad")
            return
        yield from self._chain(cfg, emit, skipped)
        yield self._processes(cfg)

    def _chain(self, cfg: SensorConfig, emit: Callable[[Check], Check],
               skipped: Callable[[str], Iterator[Check]]) -> Iterator[Check]:
        """The runtime's checks, each depending on the one before: path ... message size."""
        timeout = self.timeout_s if self.timeout_s is not None else cfg.rpc_timeout_ns / 1e9
        host = self.host or Host.current()
        path = cfg.socket_path

        check, st = self._path(path, host)
        yield emit(check)
        if check.status == FAIL:
            yield from skipped(f"{path} is not there")
            return
        assert st is not None
        check = self._socket(path, st)
        yield emit(check)
        if check.status == FAIL:
            yield from skipped(f"{path} is not a socket")
            return

        check, conn = self._access(path, st, host, timeout)
        yield emit(check)
        if conn is None:
            yield from skipped("cannot connect to the socket")
            return
        with contextlib.closing(conn):
            check, handshake = self._handshake(conn, cfg, timeout)
        yield emit(check)
        if handshake is None:
            yield from skipped("the runtime does not speak HTTP/2")
            return

        yield from self._runtime_and_after(cfg, handshake, timeout, emit, skipped)

    # ---- one method per check --------------------------------------------------------------

    def _config(self) -> tuple[Check, SensorConfig | None]:
        try:
            cfg = load_config(self.sensor_path, self.analytics_path, self.overrides, self.env)
        except ConfigError as e:
            return Check("config", FAIL, str(e), "correct the line named above (docs/install.md, "
                         "\"Configuration\", lists every key and its accepted form)"), None
        where = cfg.sensor_path or f"no file at {DEFAULT_SENSOR_PATH} (defaults)"
        summary = (f"{where}: addr {cfg.addr or '(unset)'}, poll_interval {format_duration(cfg.poll_interval_ns)}, "
                   f"handshake {cfg.handshake} ({cfg.handshake_source}), events {cfg.events}, max_recv_bytes "
                   f"{cfg.max_recv_bytes}, event_reorder_window {format_duration(cfg.event_reorder_window_ns)}")
        if not cfg.addr:
            found = [p for p, _ in self._existing_well_known()]
            hint = f" (found on this machine: {', '.join('unix://' + p for p in found)})" if found else ""
            return Check("config", FAIL, f"{summary}; crisensor.addr is not set",
                         f"set crisensor.addr: unix:///path/to/socket in {cfg.sensor_path or DEFAULT_SENSOR_PATH}, "
                         f"or pass --addr{hint}"), None
        if not cfg.enabled:
            return Check("config", WARN, f"{summary}; crisensor.enabled is false",
                         "set crisensor.enabled: true, or `crisensor run` says it is disabled and exits"), cfg
        return Check("config", OK, summary), cfg

    def _processes(self, cfg: SensorConfig) -> Check:
        """Can the kernel process source subscribe? It is independent of the runtime's socket."""
        if cfg.processes == "off":
            return Check("processes", SKIP, "crisensor.processes is off: no process events")
        probe = self.processes_probe
        if probe is None:
            from sensor.procsource import probe
        why = probe()
        if why is None:
            return Check("processes", OK, f"crisensor.processes {cfg.processes}: the kernel's proc connector accepts "
                                          "this process's subscription (exec events will be enriched)")
        fix = ("run the sensor as root on the host, or give its DaemonSet hostPID: true, hostNetwork: true and the "
               "NET_ADMIN capability (deploy/kubernetes/base/daemonset.yaml has them); or set crisensor.processes: off")
        if cfg.processes == "proc":
            return Check("processes", FAIL, f"crisensor.processes is proc, but {why}", fix)
        return Check("processes", WARN, f"crisensor.processes auto: no process events: {why}", fix)

    def _existing_well_known(self) -> list[tuple[str, str]]:
        seen: set[str] = set()
        out: list[tuple[str, str]] = []
        for p, runtime in self.well_known:
            try:
                st = os.stat(p)
            except OSError:
                continue
            real = os.path.realpath(p)
            if stat.S_ISSOCK(st.st_mode) and real not in seen:
                seen.add(real)
                out.append((p, runtime))
        return out

    def _path(self, path: str, host: Host) -> tuple[Check, os.stat_result | None]:
        try:
            return Check("path", OK, f"{path} exists"), os.stat(path)
        except FileNotFoundError:
            pass
        except PermissionError:
            return Check("path", FAIL, f"cannot look up {path}: permission denied on a parent directory",
                         f"run as root, or give {_who(host)} search (x) permission on each directory "
                         f"(`namei -l {path}` shows them)"), None
        except NotADirectoryError:
            return Check("path", FAIL, f"{path}: a parent of the path is not a directory",
                         "check crisensor.addr for a typo"), None
        parent = os.path.dirname(path)
        missing = f"{path} does not exist"
        if not os.path.isdir(parent):
            missing += f" (nor does its directory {parent})"
        found = [(p, r) for p, r in self._existing_well_known() if os.path.realpath(p) != os.path.realpath(path)]
        if found:
            listing = ", ".join(f"unix://{p} ({r})" for p, r in found)
            missing += f"; sockets that do exist: {listing}"
            fix = f"set crisensor.addr to the socket of the runtime this node uses ({listing})"
        else:
            missing += "; none of the well-known CRI sockets exists either"
            fix = ("start the runtime (`systemctl status crio` or `systemctl status containerd`) and check where "
                   "it puts its socket (CRI-O: `listen` in the [crio.api] table of /etc/crio/crio.conf; "
                   "containerd: `address` in the [grpc] section of /etc/containerd/config.toml)")
        where = "this process looks containerized: " if host.in_container else ""
        return Check("path", FAIL, missing, f"{fix}; {where}{_IN_CONTAINER_HINT}"), None

    def _socket(self, path: str, st: os.stat_result) -> Check:
        if stat.S_ISSOCK(st.st_mode):
            return Check("socket", OK, f"{path} is a unix socket ({_describe(st)})")
        mount = ("when a container mounts a socket FILE that does not exist yet (runtime not started, or "
                 "restarting), Docker and Kubernetes (hostPath without a type) create an empty {kind} in its "
                 "place. Mount the socket's directory instead (hostPath type: Directory) and point crisensor.addr "
                 "at the socket inside it")
        if stat.S_ISDIR(st.st_mode):
            return Check("socket", FAIL, f"{path} is a directory, not a socket", mount.format(kind="directory"))
        if stat.S_ISREG(st.st_mode):
            return Check("socket", FAIL, f"{path} is a regular file ({st.st_size} bytes), not a socket",
                         mount.format(kind="file") + "; on a host, point crisensor.addr at the runtime's socket")
        return Check("socket", FAIL, f"{path} is not a socket (mode {st.st_mode:o})",
                     "point crisensor.addr at the runtime's unix socket")

    def _access(self, path: str, st: os.stat_result, host: Host,
                timeout: float) -> tuple[Check, socket.socket | None]:
        try:
            conn = self.connect(path, timeout)
        except PermissionError:
            dac = "file permissions deny it" if not dac_allows(st, host) else "file permissions allow it"
            return Check("access", FAIL, f"permission denied connecting to {path} as {_who(host)} "
                         f"(socket {_describe(st)}; {dac})", access_advice(path, st, host)), None
        except ConnectionRefusedError:
            return Check("access", FAIL, f"connection refused: nothing listens on {path} (a stale socket)",
                         "the runtime is stopped or restarting: start it (`systemctl start crio`/`containerd`); in a "
                         "container, a mounted socket FILE keeps pointing at the old socket after a runtime "
                         "restart -- mount the directory instead (hostPath type: Directory)"), None
        except TimeoutError:
            return Check("access", FAIL, f"connecting to {path} timed out after {timeout:g}s (the runtime's "
                         "accept queue is full: it is hung or overloaded)",
                         "check the runtime's health (`journalctl -u crio` / `-u containerd`)"), None
        except OSError as e:
            return Check("access", FAIL, f"cannot connect to {path}: {e.strerror or e}",
                         "check crisensor.addr and that the runtime is running"), None
        return Check("access", OK, f"connected as {_who(host)}"), conn

    def _handshake(self, conn: socket.socket, cfg: SensorConfig, timeout: float) -> tuple[Check, str | None]:
        """Send the client preface + empty SETTINGS; return the check and the handshake mode to go on with."""
        t0 = time.monotonic()
        data, closed = b"", False
        try:
            conn.sendall(CLIENT_PREFACE + EMPTY_SETTINGS)
            while len(data) < FRAME_HEADER_LEN:
                left = t0 + timeout - time.monotonic()
                if left <= 0:
                    break
                conn.settimeout(left)
                chunk = conn.recv(4096)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except TimeoutError:
            pass
        except OSError as e:
            if e.errno not in (errno.ECONNRESET, errno.EPIPE):
                return Check("handshake", FAIL, f"connection failed during the HTTP/2 handshake: {e.strerror or e}",
                             "check the runtime's log"), None
            closed = True
        elapsed_ms = (time.monotonic() - t0) * 1e3
        verdict = classify_preface(data, closed)
        if verdict.kind == "settings":
            note = ""
            if cfg.handshake != "require":
                note = (f"; handshake {cfg.handshake} is not needed for this runtime (harmless; `require` detects a "
                        "hung runtime at connect time)")
            return Check("handshake", OK, f"server sent its HTTP/2 preface ({verdict.detail}) after "
                         f"{elapsed_ms:.1f} ms{note}"), cfg.handshake
        if verdict.kind == "withheld":
            found = (f"no HTTP/2 preface within {timeout:g}s, connection still open: the runtime withholds its "
                     "preface until the first request (CRI-O older than 1.14.11/1.15.2/1.16.0 puts cmux in front "
                     "of gRPC)")
            if cfg.handshake in ("off", "auto"):
                return Check("handshake", OK, f"{found}; handshake {cfg.handshake} ({cfg.handshake_source}) "
                             "handles it"), cfg.handshake
            return Check("handshake", FAIL, found + "; with handshake require the sensor fails with `connection "
                         "error context deadline exceeded`",
                         f"set {HANDSHAKE_ENV}=off in the sensor's environment, or crisensor.handshake: auto "
                         "(later checks use handshake off)"), "off"
        fixes = {
            "closed": ("the server closed the connection without a word",
                       "this socket does not serve gRPC over HTTP/2; point crisensor.addr at the CRI socket"),
            "http1": (f"the server answered in HTTP/1 ({verdict.detail}), not HTTP/2",
                      "this is not a CRI socket (Docker's API socket /var/run/docker.sock answers like this); "
                      "point crisensor.addr at the CRI socket (see the well-known paths in docs/install.md)"),
            "other": (f"the server's answer is not an HTTP/2 preface: {verdict.detail}",
                      "point crisensor.addr at the CRI runtime's socket"),
        }
        found, fix = fixes[verdict.kind]
        return Check("handshake", FAIL, found, fix), None

    def _runtime_and_after(self, cfg: SensorConfig, handshake: str, timeout: float,
                           emit: Callable[[Check], Check],
                           skipped: Callable[[str], Iterator[Check]]) -> Iterator[Check]:
        from sensor.client import ConnectError, CriCallError, CriClient

        if handshake in ("off", "auto"):
            try:
                import sensor.shim  # noqa: F401
            except ImportError:
                yield emit(Check("runtime", SKIP, f"not run: handshake {handshake} needs sensor.shim, which this "
                                 "installation lacks"))
                yield from skipped("no connection to the runtime")
                return
        client = CriClient(cfg.addr, rpc_timeout_s=timeout, max_recv_bytes=_DOCTOR_RECV_LIMIT, handshake=handshake)
        try:
            try:
                info = client.connect()
            except ConnectError as e:
                yield emit(Check("runtime", FAIL, str(e), _connect_fix(str(e))))
                yield from skipped("no connection to the runtime")
                return
            via = f" (reached with handshake {handshake})" if handshake != cfg.handshake else ""
            note = "" if info.api == "v1" else "; runtime.v1alpha2 only: no event stream, and kubelet 1.26+ needs v1"
            yield emit(Check("runtime", OK, f"{info.runtime_name} {info.runtime_version}, CRI {info.api} "
                             f"(runtime_api_version {info.runtime_api_version}){via}{note}"))
            yield emit(self._events(client, cfg, timeout, CriCallError))
            check, sizes = self._lists(client, cfg, timeout, CriCallError)
            yield emit(check)
            if sizes is None:
                yield from skipped("the lists failed")
                return
            yield emit(self._size(sizes, cfg))
            yield emit(self._memory(sizes[2]))
        finally:
            client.close()

    def _events(self, client: Any, cfg: SensorConfig, timeout: float, call_error: type[Exception]) -> Check:
        try:
            call = client.events()
        except call_error as e:
            kind, detail = "unimplemented", str(getattr(e, "details", e))
        else:
            ended = threading.Event()
            call.add_done_callback(lambda _c: ended.set())
            if not ended.wait(min(self.events_wait_s, timeout)):
                call.cancel()
                kind, detail = "stream", ""
            else:
                code = call.code().name
                detail = f"{code}: {call.details() or ''}".rstrip(": ")
                kind = {"OK": "eof", "UNIMPLEMENTED": "unimplemented"}.get(code, "error")
        interval = format_duration(cfg.poll_interval_ns)
        polls = (f"the sensor polls every {interval}; a container that lives less than that can be missed "
                 "(see docs/install.md, \"What polling cannot see\")")
        if kind == "stream":
            if cfg.events == "off":
                return Check("events", OK, "GetContainerEvents streams, but crisensor.events is off: polling only")
            return Check("events", OK, "GetContainerEvents streams: events arrive within milliseconds of the change")
        if kind == "unimplemented":
            found = (f"GetContainerEvents not offered ({detail}; containerd before 1.7, CRI-O before 1.26 and CRI "
                     f"v1alpha2 have none): {polls}")
            if cfg.events == "on":
                return Check("events", FAIL, found + "; crisensor.events is on",
                             "set crisensor.events: auto (or off), or upgrade the runtime")
            return Check("events", OK, found)
        what = "ended at once (EOF)" if kind == "eof" else f"failed ({detail})"
        found = (f"GetContainerEvents {what}: CRI-O 1.26+ streams only with enable_pod_events; {polls}")
        fix = ("set enable_pod_events = true in the [crio.runtime] table of /etc/crio/crio.conf (or a drop-in "
               "under /etc/crio/crio.conf.d/) and restart CRI-O")
        if cfg.events == "on":
            return Check("events", FAIL, found + "; crisensor.events is on", fix + ", or set crisensor.events: auto")
        if cfg.events == "off":
            return Check("events", OK, found + "; crisensor.events is off anyway")
        return Check("events", WARN, found, fix)

    def _lists(self, client: Any, cfg: SensorConfig, timeout: float,
               call_error: type[Exception]) -> tuple[Check, tuple[int, int, int] | None]:
        times: list[float] = []
        try:
            for _ in range(self.list_rounds):
                t0 = time.perf_counter()
                sandboxes, containers, _, _ = client.list_raw()
                times.append(time.perf_counter() - t0)
        except call_error as e:
            code = getattr(e, "code", "")
            if code == "RESOURCE_EXHAUSTED":
                fix = "raise crisensor.max_recv_bytes above the size shown"
            elif code == "DEADLINE_EXCEEDED":
                fix = (f"the runtime took longer than {timeout:g}s to list: check its health; raise "
                       "crisensor.rpc_timeout")
            else:
                fix = "check the runtime's log; the sensor retries failed lists and never reads them as empty"
            return Check("lists", FAIL, f"listing failed: {e}", fix), None
        pb = client.pb
        sizes = (pb.ListPodSandboxResponse(items=sandboxes).ByteSize(),
                 pb.ListContainersResponse(containers=containers).ByteSize(), len(containers))
        median_ms = statistics.median(times) * 1e3
        running = sum(1 for c in containers if c.state == 1)
        found = (f"ListPodSandbox + ListContainers: median {median_ms:.1f} ms over {len(times)} rounds; "
                 f"{_count(len(sandboxes), 'sandbox', 'sandboxes')}, "
                 f"{_count(len(containers), 'container', 'containers')} ({running:,} running)")
        budget_ms = cfg.poll_interval_ns / 1e6
        if median_ms > budget_ms / 2:
            return Check("lists", WARN, f"{found}: more than half of poll_interval "
                         f"{format_duration(cfg.poll_interval_ns)}",
                         "raise crisensor.poll_interval (`crisensor tune` measures the trade-off); polls that overrun "
                         "their slot are skipped and counted"), sizes
        return Check("lists", OK, found), sizes

    def _memory(self, containers: int) -> Check:
        """Whether the sensor's memory limit holds this node (``sensor.footprint``: measured peak RSS
        per container, plus 25% headroom)."""
        from sensor import footprint

        limit = (self.memory_limit or footprint.memory_limit)()
        need = footprint.needed_bytes(containers)
        found = (f"{_count(containers, 'container', 'containers')} need about {_bytes(need)} "
                 f"(measured peak RSS + {footprint.HEADROOM - 1:.0%} headroom)")
        if limit is None:
            return Check("memory", OK, found + "; no memory limit on this process's cgroup")
        holds = footprint.max_containers(limit)
        found += f"; the memory limit {_bytes(limit)} holds up to about {holds:,} containers"
        if need > limit:
            return Check("memory", WARN, found + ": the sensor would be OOM-killed on this node",
                         f"raise the DaemonSet's memory limit to at least {_bytes(need)} "
                         "(deploy/kubernetes/base/daemonset.yaml; docs/performance.md, \"Memory\")")
        return Check("memory", OK, found)

    def _size(self, sizes: tuple[int, int, int], cfg: SensorConfig) -> Check:
        sandbox_bytes, container_bytes, n = sizes
        which, size = max((("ListPodSandbox", sandbox_bytes), ("ListContainers", container_bytes)),
                          key=lambda kv: kv[1])
        limit = cfg.max_recv_bytes
        pct = 100 * size / limit
        found = f"largest response {which} {_bytes(size)} = {pct:.1f}% of crisensor.max_recv_bytes ({_bytes(limit)})"
        per = container_bytes / n if n else 0
        if per:
            found += f"; about {per:.0f} B per container, so the limit is reached at about {int(limit / per):,}"
        verdict = size_verdict(size, limit)
        suggest = max(2 * size, 16 << 20)
        if verdict == FAIL:
            return Check("message size", FAIL, found + ": the sensor's lists fail with RESOURCE_EXHAUSTED",
                         f"set crisensor.max_recv_bytes: {suggest} (twice the largest response)")
        if verdict == WARN:
            return Check("message size", WARN, found,
                         f"raise crisensor.max_recv_bytes (e.g. {suggest}) before the node grows further")
        return Check("message size", OK, found)


def _connect_fix(message: str) -> str:
    if "deadline exceeded" in message:
        return (f"the runtime did not finish the HTTP/2 handshake in time: if it is CRI-O older than "
                f"1.14.11/1.15.2/1.16.0 set {HANDSHAKE_ENV}=off or crisensor.handshake: auto; otherwise the runtime "
                "is hung or overloaded (check its log)")
    if "none of the CRI API versions" in message:
        return ("this socket does not serve the CRI: containerd with its CRI plugin disabled (Docker's bundled "
                "containerd ships `disabled_plugins = [\"cri\"]` in /etc/containerd/config.toml) answers like this; "
                "enable the plugin and restart containerd, or point crisensor.addr at the CRI runtime")
    return "check the runtime's log; docs/install.md, \"Troubleshooting\", lists the sensor's messages"


# ---- command line ----------------------------------------------------------------------------------


def add_doctor_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``doctor`` on a ``crisensor`` subparsers object."""
    p = subparsers.add_parser("doctor", help="check the configuration, socket and runtime; say what to fix",
                              description="Check, in order, everything the sensor needs to watch a CRI runtime. "
                              "Exit 0: the sensor would work (warnings allowed); 1: a check failed; 2: bad "
                              "configuration or flags.")
    p.add_argument("--config", help=f"sensor config (default {DEFAULT_SENSOR_PATH})")
    p.add_argument("--analytics-config", help=f"analytics config (default {DEFAULT_ANALYTICS_PATH})")
    p.add_argument("--addr", help="CRI socket, unix:///path (overrides crisensor.addr)")
    p.add_argument("--handshake", help="require | off | auto (overrides crisensor.handshake)")
    p.add_argument("--timeout", help="Go duration: deadline of each probe and RPC (default crisensor.rpc_timeout)")
    p.set_defaults(func=cmd_doctor)
    return p


def cmd_doctor(args: argparse.Namespace, *, out: Any = None, **doctor_options: Any) -> int:
    """Run the checks, print one line per check (plus a fix line per failure), return the exit code."""
    out = out or sys.stdout
    timeout_s = None
    if getattr(args, "timeout", None) is not None:
        try:
            ns = parse_duration(args.timeout)
        except DurationError as e:
            print(f"crisensor: --timeout: {e}", file=sys.stderr)
            return 2
        if ns <= 0:
            print(f"crisensor: --timeout: {args.timeout!r} is not > 0 (accepted: e.g. 500ms, 2s)", file=sys.stderr)
            return 2
        timeout_s = ns / 1e9
    overrides: dict[str, Any] = {}
    if getattr(args, "addr", None) is not None:
        overrides["crisensor.addr"] = args.addr
    if getattr(args, "handshake", None) is not None:
        overrides["crisensor.handshake"] = args.handshake
    doctor = Doctor(args.config, getattr(args, "analytics_config", None), overrides, timeout_s=timeout_s,
                    **doctor_options)
    checks: list[Check] = []
    for check in doctor.run():
        checks.append(check)
        for line in check.lines():
            print(line, file=out, flush=True)
    return exit_code(checks)


def main(argv: Sequence[str] | None = None, **doctor_options: Any) -> int:
    """``crisensor doctor`` on its own (tests, and ``python -m sensor.doctor``)."""
    from sensor.output import run_guarded

    def body() -> int:
        parser = argparse.ArgumentParser(prog="crisensor")
        add_doctor_parser(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["doctor", *(argv or [])])
        return cmd_doctor(args, **doctor_options)

    return run_guarded("crisensor", body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
