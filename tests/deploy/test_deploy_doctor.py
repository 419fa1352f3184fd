"""``crisensor doctor`` against fake runtimes: each installation mistake gets its diagnosis and fix.

Every test serves a real ``FakeCriServer`` on a real unix socket (as tests/fakecri/conftest.py
does) or builds the broken filesystem state for real (missing socket, regular file, stale socket,
socket mode 0660 owned by root). Where a test cannot build the state for real it injects the one
piece it cannot (see ``test_access_denied_by_security_module``) and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from fakecri.clock import VirtualClock
from fakecri.flavors import Flavor, get_flavor
from fakecri.model import CriError, RuntimeModel
from fakecri.server import CallPolicy, FakeCriServer
from sensor import doctor
from sensor.doctor import (
    CHECKS,
    Check,
    Doctor,
    Host,
    access_advice,
    add_doctor_parser,
    classify_preface,
    dac_allows,
    exit_code,
    size_verdict,
)
from sensor.handshake import EMPTY_SETTINGS, frame_header

ROOT_HOST = Host(uid=0, gid=0, groups=(0,), dac_override=True, selinux=None, in_container=False)
#: The events check waits this long for EOF/error before calling GetContainerEvents a stream.
EVENTS_WAIT = 0.3


# ---- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Callable[..., SimpleNamespace]]:
    """``runtime(flavor, containers=N, policy=None)`` -> a served fake with N running containers."""
    started: list[FakeCriServer] = []

    def start(flavor: str | Flavor = "containerd-1.7", containers: int = 3, policy: CallPolicy | None = None,
              socket_name: str = "run/containerd/containerd.sock") -> SimpleNamespace:
        model = RuntimeModel(VirtualClock(), get_flavor(flavor) if isinstance(flavor, str) else flavor, seed=7)
        model.pull_image("busybox")
        sandbox = model.run_pod_sandbox("web", "default", "uid-1")
        for i in range(containers):
            c = model.create_container(sandbox.id, f"app-{i}", 0, "busybox", labels={"app": "web" * 10})
            model.start_container(c.id)
        server = FakeCriServer(model, str(tmp_path / f"{len(started)}" / socket_name), policy=policy).start()
        started.append(server)
        return SimpleNamespace(model=model, server=server, addr=server.addr, path=server.socket_path)

    yield start
    for server in started:
        server.stop(grace=None)


def write_config(tmp_path: Path, addr: str, **extra: object) -> str:
    lines = ["crisensor:", "  enabled: true", f"  addr: {addr}"]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    path = tmp_path / "capsule8-sensor.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def diagnose(config: str | None = None, *, addr: str | None = None, env: dict[str, str] | None = None,
             timeout_s: float = 1.0, **options: object) -> tuple[list[Check], int]:
    overrides = {"crisensor.addr": addr} if addr else {}
    options.setdefault("host", ROOT_HOST)
    options.setdefault("events_wait_s", EVENTS_WAIT)
    options.setdefault("processes_probe", lambda: None)  # the kernel's answer is tested on its own below
    checks = list(Doctor(config, None, overrides, env=env or {}, timeout_s=timeout_s, **options).run())
    return checks, exit_code(checks)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def statuses(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.status for c in checks}


# ---- healthy runtimes ----------------------------------------------------------------------------


def test_healthy_containerd_17_all_ok(runtime, tmp_path: Path) -> None:
    rt = runtime("containerd-1.7")
    checks, code = diagnose(write_config(tmp_path, rt.addr))
    assert [c.name for c in checks] == list(CHECKS)
    assert all(c.status == "ok" for c in checks), "\n".join(line for c in checks for line in c.lines())
    assert code == 0
    got = by_name(checks)
    assert "containerd v1.7.13, CRI v1" in got["runtime"].found
    assert "streams" in got["events"].found
    assert "1 sandbox, 3 containers (3 running)" in got["lists"].found
    assert "largest response ListContainers" in got["message size"].found
    assert "is a unix socket" in got["socket"].found
    assert "server sent its HTTP/2 preface" in got["handshake"].found


def test_cli_prints_one_line_per_check_and_exits_0(runtime, tmp_path: Path) -> None:
    rt = runtime("containerd-1.7")
    out = io.StringIO()
    code = doctor.main(["--config", write_config(tmp_path, rt.addr), "--timeout", "1s"], out=out, env={},
                       host=ROOT_HOST, events_wait_s=EVENTS_WAIT, processes_probe=lambda: None)
    lines = out.getvalue().splitlines()
    assert code == 0
    assert [line.split()[0] for line in lines] == ["ok"] * len(CHECKS)
    assert [line[5:19].strip() for line in lines] == list(CHECKS)


@pytest.mark.parametrize(("flavor", "api", "events_status", "events_text"), [
    ("containerd-1.5", "v1alpha2", "ok", "not offered"),
    ("containerd-1.6", "v1", "ok", "not offered (UNIMPLEMENTED"),
    ("containerd-2.0", "v1", "ok", "streams"),
    ("crio-1.16", "v1alpha2", "ok", "not offered"),
    ("crio-1.26", "v1", "warn", "ended at once (EOF)"),
])
def test_flavours_api_and_event_stream(runtime, tmp_path: Path, flavor: str, api: str, events_status: str,
                                       events_text: str) -> None:
    rt = runtime(flavor)
    checks, code = diagnose(write_config(tmp_path, rt.addr))
    got = by_name(checks)
    assert f"CRI {api}" in got["runtime"].found
    assert got["events"].status == events_status
    assert events_text in got["events"].found
    if events_status == "warn":
        assert "enable_pod_events = true" in got["events"].fix
    assert code == 0  # polling works: the sensor would work


def test_event_stream_error_is_a_warning_with_the_crio_fix(runtime, tmp_path: Path) -> None:
    rt = runtime(get_flavor("crio-1.26").replace(events="error"))  # newer CRI-O without enable_pod_events
    checks, code = diagnose(write_config(tmp_path, rt.addr))
    got = by_name(checks)
    assert got["events"].status == "warn"
    assert "failed (UNKNOWN: pod events are not enabled" in got["events"].found
    assert code == 0


def test_events_on_without_a_stream_fails(runtime, tmp_path: Path) -> None:
    rt = runtime("containerd-1.6")
    checks, code = diagnose(write_config(tmp_path, rt.addr, events="on"))
    assert by_name(checks)["events"].status == "FAIL"
    assert "crisensor.events: auto" in by_name(checks)["events"].fix
    assert code == 1


# ---- the socket ----------------------------------------------------------------------------------


def test_missing_socket_names_the_sockets_that_exist(runtime, tmp_path: Path) -> None:
    crio = runtime("crio-1.26", socket_name="run/crio/crio.sock")
    well_known = ((str(tmp_path / "nope" / "containerd.sock"), "containerd"), (crio.path, "CRI-O"))
    missing = str(tmp_path / "run" / "containerd" / "containerd.sock")
    checks, code = diagnose(addr=f"unix://{missing}", well_known=well_known)
    got = by_name(checks)
    assert got["path"].status == "FAIL"
    assert f"{missing} does not exist" in got["path"].found
    assert f"unix://{crio.path} (CRI-O)" in got["path"].found
    assert f"unix://{crio.path}" in got["path"].fix
    assert "as mounted INSIDE that container" in got["path"].fix
    assert [c.status for c in checks[2:-1]] == ["skip"] * (len(CHECKS) - 3)
    assert checks[-1].name == "processes" and checks[-1].status == "ok"  # independent of the socket
    assert code == 1


def test_missing_socket_in_a_container_says_so(tmp_path: Path) -> None:
    host = Host(0, 0, (0,), True, None, in_container=True)
    checks, _ = diagnose(addr=f"unix://{tmp_path}/crio/crio.sock", well_known=(), host=host)
    got = by_name(checks)["path"]
    assert "nor does its directory" in got.found
    assert "none of the well-known CRI sockets exists either" in got.found
    assert "this process looks containerized" in got.fix


def test_regular_file_is_not_a_socket(tmp_path: Path) -> None:
    f = tmp_path / "crio.sock"
    f.write_text("")
    checks, code = diagnose(addr=f"unix://{f}")
    got = by_name(checks)["socket"]
    assert got.status == "FAIL"
    assert "is a regular file (0 bytes), not a socket" in got.found
    assert "hostPath type: Directory" in got.fix
    assert code == 1


def test_directory_is_not_a_socket(tmp_path: Path) -> None:
    d = tmp_path / "containerd.sock"
    d.mkdir()
    checks, code = diagnose(addr=f"unix://{d}")
    got = by_name(checks)["socket"]
    assert got.status == "FAIL" and "is a directory, not a socket" in got.found
    assert "create an empty directory" in got.fix
    assert code == 1


def test_stale_socket_is_connection_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "crio.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)  # bound, never listening: what a crashed runtime leaves behind
    try:
        checks, code = diagnose(addr=f"unix://{path}")
    finally:
        s.close()
    got = by_name(checks)["access"]
    assert got.status == "FAIL" and "connection refused" in got.found
    assert "mount the directory instead" in got.fix
    assert code == 1


# ---- permission denied: a real non-root process against a root:root 0660 socket ------------------


def _checks_as(uid: int, gid: int, groups: list[int], addr: str) -> list[dict[str, str]]:
    """Run the doctor up to ``access`` in a forked child that has dropped root via setuid.

    The child does not exec (the interpreter may not be readable by ``uid``); it runs the code
    already loaded, with the kernel enforcing the real permissions of the new identity.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(r)
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            out = []
            for c in Doctor(None, None, {"crisensor.addr": addr}, env={}, timeout_s=1.0).run():
                out.append({"name": c.name, "status": c.status, "found": c.found, "fix": c.fix})
                if c.name == "access":
                    break
            os.write(w, json.dumps(out).encode())
        except BaseException:
            os.write(w, json.dumps({"error": traceback.format_exc()}).encode())
            status = 1
        finally:
            os._exit(status)
    os.close(w)
    data = b""
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert not isinstance(result, dict), result.get("error")
    return result


@contextlib.contextmanager
def _listening_socket(mode: int, gid: int = 0) -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="doctor-perm-")
    os.chmod(d, 0o755)  # searchable by the unprivileged child
    path = os.path.join(d, "crio.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(path, 0, gid)
    try:
        yield path
    finally:
        s.close()
        os.unlink(path)
        os.rmdir(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a root-owned socket and drop to another uid")
def test_permission_denied_for_a_non_root_user() -> None:
    """Real: socket root:root 0660 (what CRI-O and containerd create), doctor runs as uid 65534."""
    with _listening_socket(0o660) as path:
        checks = _checks_as(65534, 65534, [], f"unix://{path}")
    access = checks[-1]
    assert access["name"] == "access" and access["status"] == "FAIL"
    assert "permission denied" in access["found"] and "uid 65534" in access["found"]
    assert "socket root:root 0660; file permissions deny it" in access["found"]
    assert "Run the sensor as uid 0" in access["fix"]
    assert "supplementalGroups: [0]" in access["fix"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the socket and drop to another uid")
def test_group_membership_named_in_the_hint_really_grants_access() -> None:
    """The hint says 'add the user to the socket's group'; check that this is true, for real."""
    import grp

    gid = 65534
    group = grp.getgrgid(gid).gr_name
    with _listening_socket(0o660, gid=gid) as path:
        denied = _checks_as(65533, 65533, [], f"unix://{path}")
        allowed = _checks_as(65533, 65533, [gid], f"unix://{path}")
    assert denied[-1]["status"] == "FAIL"
    assert f"add its user to group {group!r} (gid {gid})" in denied[-1]["fix"]
    assert f"supplementalGroups: [{gid}]" in denied[-1]["fix"]
    assert allowed[-1]["name"] == "access" and allowed[-1]["status"] == "ok", allowed[-1]


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, a mode-000 socket is still connectable (CAP_DAC_OVERRIDE)")
def test_permission_denied_mode_000_as_this_user() -> None:
    """Real for a non-root test run: our own socket with mode 000 refuses us (owner bits apply)."""
    with _listening_socket(0o000) as path:
        checks, code = diagnose(addr=f"unix://{path}", host=None)
    got = by_name(checks)["access"]
    assert got.status == "FAIL" and "file permissions deny it" in got.found
    assert code == 1


def test_access_denied_by_security_module(tmp_path: Path) -> None:
    """SIMULATED: file modes allow the connect but the kernel says EACCES, as SELinux does for a
    container_t process. We cannot load an SELinux policy here, so ``connect`` is injected to
    raise PermissionError; this proves only the diagnosis logic, not the detection of SELinux."""
    path = tmp_path / "crio.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)

    def refuse(p: str, timeout: float) -> socket.socket:
        raise PermissionError(13, "Permission denied")

    host = Host(uid=0, gid=0, groups=(0,), dac_override=False, selinux="enforcing", in_container=True)
    try:
        checks, code = diagnose(addr=f"unix://{path}", host=host, connect=refuse)
    finally:
        s.close()
    got = by_name(checks)["access"]
    assert got.status == "FAIL" and "file permissions allow it" in got.found
    assert "spc_t" in got.fix and "container_runtime_t" in got.fix and ":z/:Z does not help" in got.fix
    assert code == 1


def test_dac_allows_table() -> None:
    st = os.stat_result((0o140660, 0, 0, 1, 0, 0, 0, 0, 0, 0))  # socket root:root 0660
    user = Host(1000, 1000, (1000,), False, None, False)
    assert dac_allows(st, Host(0, 0, (), False, None, False))  # uid 0 owns it, caps dropped: owner bits
    assert not dac_allows(st, user)
    assert dac_allows(st, Host(1000, 1000, (1000, 0), False, None, False))  # supplementary group 0
    assert dac_allows(st, Host(1000, 1000, (), True, None, False))  # CAP_DAC_OVERRIDE
    owner_only = os.stat_result((0o140600, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    assert not dac_allows(owner_only, Host(1000, 1000, (0,), False, None, False))
    assert "only root (uid 0) may connect" in access_advice("/x", owner_only, user)


# ---- the handshake ---------------------------------------------------------------------------------


def test_classify_preface() -> None:
    assert classify_preface(b"", closed=False).kind == "withheld"
    assert classify_preface(b"", closed=True).kind == "closed"
    assert classify_preface(EMPTY_SETTINGS, closed=False).kind == "settings"
    assert classify_preface(frame_header(6, 0x4) + b"\x00\x03\x00\x00\x00\x64", closed=False).kind == "settings"
    assert classify_preface(frame_header(0, 0x4, flags=1), closed=False).kind == "other"  # an ACK first
    assert classify_preface(frame_header(8, 0x7), closed=True).kind == "other"  # GOAWAY
    assert classify_preface(b"HTTP/1.1 400 Bad Request\r\n\r\n", closed=True).kind == "http1"
    assert classify_preface(b"\x00\x00", closed=True).kind == "other"


@contextlib.contextmanager
def _raw_server(path: str, answer: bytes | None) -> Iterator[None]:
    """A unix server that reads the client's bytes and answers ``answer`` (None: stays silent)."""
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    lst.listen(4)
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                c, _ = lst.accept()
            except OSError:
                return
            conns.append(c)
            with contextlib.suppress(OSError):
                c.recv(4096)
                if answer is not None:
                    c.sendall(answer)
                    c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lst.shutdown(socket.SHUT_RDWR)
        lst.close()
        for c in conns:
            c.close()
        t.join(2)


def test_http1_socket_is_not_a_cri_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "docker.sock")
    with _raw_server(path, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"):
        checks, code = diagnose(addr=f"unix://{path}")
    got = by_name(checks)["handshake"]
    assert got.status == "FAIL" and "HTTP/1" in got.found and "docker.sock" in got.fix
    assert by_name(checks)["runtime"].status == "skip"
    assert code == 1


def test_silent_server_is_diagnosed_as_withholding_its_preface(tmp_path: Path) -> None:
    path = str(tmp_path / "crio.sock")
    with _raw_server(path, None):
        checks, code = diagnose(addr=f"unix://{path}", timeout_s=0.3)
    got = by_name(checks)["handshake"]
    assert got.status == "FAIL"
    assert "withholds its preface until the first request" in got.found
    assert "1.14.11/1.15.2/1.16.0" in got.found
    assert "GRPC_GO_REQUIRE_HANDSHAKE=off" in got.fix and "crisensor.handshake: auto" in got.fix
    assert code == 1


@pytest.fixture
def old_crio(runtime, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``old_crio(mode)`` -> addr of a CRI-O 1.13 fake behind the handshake relay (cmux/cmux-settings)."""
    relay_mod = pytest.importorskip("fakecri.relay")
    relays: list[object] = []

    def start(mode: str) -> str:
        rt = runtime("crio-1.13", socket_name="backend.sock")
        relay = relay_mod.Relay(str(tmp_path / f"crio-{len(relays)}" / "crio.sock"), rt.path, mode).start()
        relays.append(relay)
        return relay.addr

    yield start
    for relay in relays:
        relay.stop()


def test_old_crio_cmux_needs_handshake_off(old_crio, tmp_path: Path) -> None:
    addr = old_crio("cmux")
    checks, code = diagnose(write_config(tmp_path, addr), timeout_s=0.5)
    got = by_name(checks)
    assert got["handshake"].status == "FAIL"
    assert "withholds its preface" in got["handshake"].found
    assert "GRPC_GO_REQUIRE_HANDSHAKE=off" in got["handshake"].fix
    # The doctor carries on with the fix it named, so everything else is examined in the same run.
    assert got["runtime"].status == "ok" and "cri-o 1.13.11, CRI v1alpha2" in got["runtime"].found
    assert "reached with handshake off" in got["runtime"].found
    assert got["lists"].status == "ok"
    assert code == 1


@pytest.mark.parametrize("how", ["env", "config"])
def test_old_crio_cmux_with_the_fix_applied_is_ok(old_crio, tmp_path: Path, how: str) -> None:
    addr = old_crio("cmux")
    if how == "env":
        checks, code = diagnose(write_config(tmp_path, addr), env={"GRPC_GO_REQUIRE_HANDSHAKE": "off"},
                                timeout_s=0.5)
        assert "handshake off (env GRPC_GO_REQUIRE_HANDSHAKE) handles it" in by_name(checks)["handshake"].found
    else:
        checks, code = diagnose(write_config(tmp_path, addr, handshake="auto"), timeout_s=2.0)
        assert "handshake auto" in by_name(checks)["handshake"].found
    assert all(c.status == "ok" for c in checks), [c.lines() for c in checks]
    assert code == 0


def test_fixed_crio_sends_settings_while_sniffing(old_crio, tmp_path: Path) -> None:
    addr = old_crio("cmux-settings")
    checks, code = diagnose(write_config(tmp_path, addr))
    assert by_name(checks)["handshake"].status == "ok"
    assert by_name(checks)["runtime"].status == "ok"
    assert code == 0


# ---- lists and message size ------------------------------------------------------------------------


def test_size_verdict() -> None:
    assert size_verdict(0, 100) == "ok"
    assert size_verdict(50, 100) == "ok"
    assert size_verdict(51, 100) == "warn"
    assert size_verdict(100, 100) == "warn"
    assert size_verdict(101, 100) == "FAIL"


@pytest.mark.parametrize(("limit", "status"), [(100_000, "ok"), (20_000, "warn"), (5_000, "FAIL")])
def test_message_size_against_max_recv_bytes(runtime, tmp_path: Path, limit: int, status: str) -> None:
    rt = runtime("containerd-1.7", containers=40)  # ListContainers ~ 14 KB
    checks, code = diagnose(write_config(tmp_path, rt.addr, max_recv_bytes=limit))
    got = by_name(checks)["message size"]
    assert got.status == status, got
    assert "largest response ListContainers" in got.found
    if status == "FAIL":
        assert "crisensor.max_recv_bytes:" in got.fix
        assert code == 1
    else:
        assert code == 0


class _ListFails(CallPolicy):
    def before_call(self, method: str, api: str, target: str | None) -> None:
        if method == "ListContainers":
            raise CriError("UNAVAILABLE", "runtime is restarting")


def test_list_failure_fails_and_stops_the_chain(runtime, tmp_path: Path) -> None:
    rt = runtime("containerd-1.7", policy=_ListFails())
    checks, code = diagnose(write_config(tmp_path, rt.addr))
    got = by_name(checks)
    assert got["lists"].status == "FAIL" and "ListContainers: UNAVAILABLE: runtime is restarting" in got["lists"].found
    assert got["message size"].status == "skip"
    assert code == 1


# ---- configuration and flags -------------------------------------------------------------------------


def test_bad_config_is_exit_2_with_the_config_error_line(tmp_path: Path) -> None:
    cfg = tmp_path / "capsule8-sensor.yaml"
    cfg.write_text("crisensor:\n  enabled: true\n  addr: tcp://10.0.0.1:1234\n")
    out = io.StringIO()
    code = doctor.main(["--config", str(cfg)], out=out, env={})
    lines = out.getvalue().splitlines()
    assert code == 2
    assert lines[0].startswith("FAIL config")
    assert f"{cfg}:3: crisensor.addr: \"tcp://10.0.0.1:1234\" does not start with unix://" in lines[0]
    assert all(line.startswith("skip") for line in lines[2:])


def test_missing_addr_is_exit_2_and_lists_sockets_found(runtime, tmp_path: Path) -> None:
    rt = runtime("containerd-1.7")
    checks, code = diagnose(None, well_known=((rt.path, "containerd"),))
    got = by_name(checks)["config"]
    assert got.status == "FAIL" and "crisensor.addr is not set" in got.found
    assert f"unix://{rt.path}" in got.fix
    assert code == 2


def test_disabled_sensor_is_a_warning(runtime, tmp_path: Path) -> None:
    rt = runtime("containerd-1.7")
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"crisensor:\n  addr: {rt.addr}\n")
    checks, code = diagnose(str(cfg))
    assert by_name(checks)["config"].status == "warn"
    assert "crisensor.enabled: true" in by_name(checks)["config"].fix
    assert code == 0


@pytest.mark.parametrize("argv", [["--timeout", "fast"], ["--timeout", "0s"], ["--handshake", "maybe"],
                                  ["--addr", "/var/run/crio/crio.sock"]])
def test_bad_flags_exit_2(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    code = doctor.main(["--config", write_config(tmp_path, "unix:///x.sock"), *argv], out=out, env={})
    assert code == 2
    text = out.getvalue() + capsys.readouterr().err
    assert "Traceback" not in text
    assert len([line for line in text.splitlines() if "--timeout" in line or line.startswith("FAIL")]) == 1


def test_add_doctor_parser_registers_cmd_doctor() -> None:
    parser = argparse.ArgumentParser(prog="crisensor")
    add_doctor_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", "--config", "c.yaml", "--addr", "unix:///a.sock", "--handshake", "off",
                              "--timeout", "500ms"])
    assert args.func is doctor.cmd_doctor
    assert (args.config, args.addr, args.handshake, args.timeout) == ("c.yaml", "unix:///a.sock", "off", "500ms")


# ---- every bundled scenario gets the right diagnosis -------------------------------------------------

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))
#: GetContainerEvents behaviour of a flavour -> (status, words in the events line)
_EVENTS_EXPECTED = {"stream": ("ok", "streams"), "stream-then-closed": ("ok", "streams"),
                    "eof": ("warn", "ended at once (EOF)"), "error": ("warn", "failed ("),
                    "unimplemented": ("ok", "not offered")}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_doctor_diagnoses_each_bundled_scenario(scenario: Path, tmp_path: Path) -> None:
    """The expectation comes from the scenario itself (flavour, quirks), so new scenarios are covered."""
    harness_mod = pytest.importorskip("fakecri.harness")
    harness = harness_mod.Harness(str(scenario), socket=str(tmp_path / "cri.sock"))
    harness.start()  # virtual clock: the steps at offset 0 are applied, then time stands still
    try:
        flavor, handshake = harness.flavor, harness.handshake
        n_containers = len(harness.model.list_containers())
        checks, code = diagnose(addr=harness.addr, timeout_s=1.0)
    finally:
        harness.stop()
    got = by_name(checks)
    report = "\n".join(line for c in checks for line in c.lines())
    api = "v1" if "v1" in flavor.apis else "v1alpha2"
    assert f"{flavor.runtime_name} {flavor.runtime_version}, CRI {api}" in got["runtime"].found, report
    if handshake == "cmux":
        assert got["handshake"].status == "FAIL" and "withholds its preface" in got["handshake"].found, report
        assert "reached with handshake off" in got["runtime"].found
    else:
        assert got["handshake"].status == "ok", report
    events = flavor.events if api == "v1" else "unimplemented"
    status, words = _EVENTS_EXPECTED[events]
    assert got["events"].status == status and words in got["events"].found, report
    assert f"{n_containers:,} container" in got["lists"].found, report
    assert got["message size"].status == "ok", report
    assert code == (1 if handshake == "cmux" else 0), report


NO_PRIVILEGE = ("the proc connector refused to join its multicast group (Operation not permitted): it needs "
                "CAP_NET_ADMIN and the host's PID, user and network namespaces")


@pytest.mark.parametrize(("mode", "probe", "status"), [
    ("auto", lambda: None, "ok"), ("proc", lambda: None, "ok"), ("off", lambda: None, "skip"),
    ("auto", lambda: NO_PRIVILEGE, "warn"), ("proc", lambda: NO_PRIVILEGE, "FAIL"),
])
def test_the_processes_check_names_the_missing_privilege(runtime, tmp_path: Path, mode: str, probe,
                                                         status: str) -> None:
    rt = runtime("containerd-1.7")
    checks = list(Doctor(write_config(tmp_path, rt.addr), None, {"crisensor.processes": mode}, env={}, timeout_s=1.0,
                         host=ROOT_HOST, events_wait_s=EVENTS_WAIT, processes_probe=probe).run())
    got = by_name(checks)["processes"]
    assert got.status == status
    if status in ("warn", "FAIL"):
        assert "CAP_NET_ADMIN" in got.found and "hostPID: true, hostNetwork: true" in got.fix
    assert exit_code(checks) == (1 if status == "FAIL" else 0)


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true", reason="the proc connector needs root")
def test_the_processes_check_subscribes_for_real_as_root(runtime, tmp_path: Path) -> None:
    rt = runtime("containerd-1.7")
    checks = list(Doctor(write_config(tmp_path, rt.addr), None, {"crisensor.processes": "proc"}, env={},
                         timeout_s=1.0, host=ROOT_HOST, events_wait_s=EVENTS_WAIT).run())
    got = by_name(checks)["processes"]
    assert got.status == "ok", got.found
