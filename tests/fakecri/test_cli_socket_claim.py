"""``fakecri serve --socket PATH`` takes only what is free or stale, and removes only its own socket.

Real subprocesses, as a user runs them: a refused path is left exactly as it was (one line, exit 2),
and a server that stops never removes a socket someone else put at its path meanwhile.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAKECRI = [sys.executable, "-m", "fakecri.cli"]


def _serve(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*FAKECRI, "serve", "--socket", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


def _wait_serving(proc: subprocess.Popen[str], path: Path) -> None:
    deadline = time.monotonic() + 20
    while not _answers(path):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"fakecri serve did not listen on {path}"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def _refused(path: Path, *scenario: str) -> str:
    r = subprocess.run([*FAKECRI, "serve", *scenario, "--socket", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_a_regular_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    plain = tmp_path / "precious.sock"
    plain.write_text("precious")
    before = os.lstat(plain)
    line = _refused(plain)
    assert plain.exists(), "the refused file was deleted"
    after = os.lstat(plain)
    assert plain.read_text() == "precious" and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "regular file" in line


def test_a_directory_is_refused_and_left_untouched(tmp_path: Path) -> None:
    d = tmp_path / "dir.sock"
    d.mkdir()
    (d / "inside").write_text("x")
    line = _refused(d)
    assert (d / "inside").read_text() == "x"
    assert "directory" in line


@pytest.mark.parametrize("scenario", [[], ["crio_1_13_old_handshake"]], ids=["plain", "behind-a-relay"])
def test_a_live_socket_of_another_server_is_refused_and_keeps_serving(tmp_path: Path, scenario: list[str]) -> None:
    path = tmp_path / "cri.sock"
    first = _serve(path)
    try:
        _wait_serving(first, path)
        inode = os.lstat(path).st_ino
        assert "in use" in _refused(path, *scenario)
        assert os.lstat(path).st_ino == inode and _answers(path), "the first server's socket was taken"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cri.sock"], "the refused server left files behind"
    finally:
        _stop(first)
    assert not path.exists(), "the first server did not remove its own socket on stop"


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # nobody listens: stale
    assert not _answers(path)
    proc = _serve(path)
    try:
        _wait_serving(proc, path)
    finally:
        _stop(proc)
    assert not path.exists()


def test_stop_leaves_a_socket_someone_else_put_there_later(tmp_path: Path) -> None:
    path = tmp_path / "cri.sock"
    first = _serve(path)
    second: subprocess.Popen[str] | None = None
    try:
        _wait_serving(first, path)
        path.unlink()  # someone removed the first server's socket ...
        second = _serve(path)  # ... and a second server now serves at the same path
        _wait_serving(second, path)
        inode = os.lstat(path).st_ino
        _stop(first)
        assert path.exists() and os.lstat(path).st_ino == inode, "the first server removed the second's socket"
        assert _answers(path)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if second is not None:
            _stop(second)
    assert not path.exists()


@pytest.mark.parametrize("handshake", ["cmux", "cmux-settings"])
def test_the_relay_claims_and_releases_the_same_way(tmp_path: Path, handshake: str) -> None:
    from fakecri.relay import Relay

    backend = tmp_path / "backend.sock"
    plain = tmp_path / "public.sock"
    plain.write_text("precious")
    refused = Relay(str(plain), str(backend), handshake)  # type: ignore[arg-type]
    with pytest.raises(FileExistsError) as e:
        refused.start()
    refused.stop()  # a relay that never bound removes nothing
    assert plain.read_text() == "precious" and "regular file" in str(e.value)
    public = tmp_path / "relay.sock"
    relay = Relay(str(public), str(backend), handshake).start()  # type: ignore[arg-type]
    public.unlink()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(public))  # another listener took the path meanwhile
    try:
        relay.stop()
        assert public.exists(), "the relay removed a socket it did not create"
    finally:
        other.close()
