"""Handshake-quirk relay: old CRI-O's ``cmux`` in front of the fake's gRPC server, byte for byte.

The relay listens on the PUBLIC socket (the one clients are told about) and forwards to the gRPC
server on a private backend socket. Per connection (DESIGN.md section 6):

``cmux`` (CRI-O <= 1.15.1)
    Withhold every server byte -- the relay does not even connect to the backend -- until the
    client's first HTTP/2 HEADERS frame has arrived; then connect, replay the buffered client
    bytes and pipe both ways. Clients that wait for the server preface first (grpcio always,
    grpc-go >= 1.17 by default) hang until their deadline: DEADLINE_EXCEEDED.
``cmux-settings`` (CRI-O 1.14.11, 1.15.2, 1.16+)
    As above, but send an empty SETTINGS frame to the client at once, and drop the client's
    first SETTINGS ACK (the ACK for that frame) so that the gRPC C-core server behind does not
    fail with "Received unexpected settings ack". grpcio clients work through it.

The byte-level logic is ``sensor.handshake.SettingsInjector`` (pure, shared with the sensor's
shim); this module is only sockets and threads. Every connection has two pump threads owned by
the relay; ``stop`` closes the listener and every connection and joins all threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
from typing import Literal

from sensor.handshake import EMPTY_SETTINGS, HandshakeError, SettingsInjector

log = logging.getLogger("fakecri.relay")

HandshakeMode = Literal["cmux", "cmux-settings"]
HANDSHAKE_MODES: tuple[str, ...] = ("none", "cmux", "cmux-settings")
_CHUNK = 65536


def claim_socket_path(path: str) -> None:
    """Make ``path`` free for a new unix socket: create its directory, remove a stale socket;
    refuse (``FileExistsError``) a non-socket file or a socket someone still listens on."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a regular file" if stat.S_ISREG(st.st_mode) \
            else "a special file"
        raise FileExistsError(f"{path} exists and is {kind}, not a socket; refusing to replace it "
                              "(remove it yourself or pick another --socket)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale socket: nobody listens
        return
    finally:
        probe.close()
    raise FileExistsError(f"{path} is in use by another server (a live socket); refusing to take it over")


SocketIdentity = tuple[int, int]


def socket_identity(path: str) -> SocketIdentity | None:
    """(device, inode) of the socket at ``path`` right after we bound it: what ``release_socket_path``
    compares with, so that a server removes only the socket it created."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None


def release_socket_path(path: str, identity: SocketIdentity | None) -> None:
    """Unlink ``path`` only if it is still the socket we created (``identity``); a path that someone
    replaced since (a file, another server's socket) or that we never bound is left alone."""
    if identity is None or socket_identity(path) != identity:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Relay:
    """A unix-socket relay emulating a handshake quirk. ``start``/``stop`` may be repeated."""

    def __init__(self, public_path: str, backend_path: str, mode: HandshakeMode, *, socket_mode: int = 0o660) -> None:
        if mode not in ("cmux", "cmux-settings"):
            raise ValueError(f"unknown handshake mode {mode!r} (accepted: cmux, cmux-settings)")
        self.public_path = os.path.abspath(public_path)
        self.backend_path = os.path.abspath(backend_path)
        self.mode = mode
        self.socket_mode = socket_mode
        self._listener: socket.socket | None = None
        self._bound: SocketIdentity | None = None  # the public socket this relay created
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        #: Connections accepted / connections that reached the backend (for tests and logs).
        self.accepted = 0
        self.forwarded = 0

    @property
    def addr(self) -> str:
        return f"unix://{self.public_path}"

    @property
    def serving(self) -> bool:
        return self._listener is not None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Relay:
        if self._listener is not None:
            raise RuntimeError("relay already started")
        claim_socket_path(self.public_path)
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lst.bind(self.public_path)
            self._bound = socket_identity(self.public_path)
            os.chmod(self.public_path, self.socket_mode)
            lst.listen(128)
        except OSError:
            lst.close()
            raise
        self._stopping.clear()
        self._listener = lst
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(lst,), name="fakecri-relay-accept",
                                               daemon=True)
        self._accept_thread.start()
        log.info("relay (%s) on %s -> %s", self.mode, self.public_path, self.backend_path)
        return self

    def stop(self) -> None:
        """Close the listener and every connection, join all threads, remove the public socket."""
        self._stopping.set()
        lst, self._listener = self._listener, None
        if lst is not None:
            with contextlib.suppress(OSError):
                lst.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            lst.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(5)
        release_socket_path(self.public_path, self._bound)
        self._bound = None

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- plumbing ----------------------------------------------------------------------------

    def _spawn(self, target: object, *args: object, name: str) -> None:
        t = threading.Thread(target=self._run_tracked, args=(target, *args), name=name, daemon=True)
        with self._lock:
            self._threads.add(t)
        t.start()

    def _run_tracked(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _track(self, s: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._conns.add(s)
            return True

    def _close(self, *socks: socket.socket | None) -> None:
        for s in socks:
            if s is None:
                continue
            with self._lock:
                self._conns.discard(s)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept_loop(self, lst: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = lst.accept()
            except OSError:
                return
            if not self._track(client):
                client.close()
                return
            self.accepted += 1
            self._spawn(self._serve, client, name="fakecri-relay-conn")

    def _serve(self, client: socket.socket) -> None:
        backend: socket.socket | None = None
        try:
            inject = self.mode == "cmux-settings"
            if inject:
                client.sendall(EMPTY_SETTINGS)
            injector = SettingsInjector(drop_first_ack=inject)
            pending = bytearray()
            while not injector.headers_seen:  # cmux sniffs: nothing reaches the client meanwhile
                data = client.recv(_CHUNK)
                if not data:
                    return
                pending += injector.feed(data)
            backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if not self._track(backend):
                return
            backend.connect(self.backend_path)
            self.forwarded += 1
            backend.sendall(pending)
            self._spawn(self._pump, backend, client, None, name="fakecri-relay-down")
            self._pump(client, backend, injector)
        except HandshakeError as e:
            log.info("relay: closing a non-HTTP/2 connection: %s", e)
        except OSError as e:
            log.debug("relay connection ended: %s", e)
        finally:
            self._close(client, backend)

    def _pump(self, src: socket.socket, dst: socket.socket, injector: SettingsInjector | None) -> None:
        """Copy ``src`` to ``dst`` until either closes; then close both (ends the other pump too)."""
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    return
                if injector is not None and not injector.passthrough:
                    data = injector.feed(data)
                dst.sendall(data)
        except OSError:
            return
        finally:
            self._close(src, dst)
