"""The handshake shim: lets grpcio talk to runtimes that withhold their HTTP/2 preface.

Why: old CRI-O (<= 1.15.1) sends nothing until the client's first HEADERS frame, and grpcio,
unlike grpc-go with ``GRPC_GO_REQUIRE_HANDSHAKE=off``, has no option to stop waiting for the
server's SETTINGS. So the sensor connects to this shim on a private unix socket instead; the
shim connects to the runtime and gives grpcio an empty SETTINGS frame itself, dropping grpcio's
ACK of it (``sensor.handshake.SettingsInjector``) so the runtime never sees a stray ACK.

Modes:

``off``   inject on every connection (what ``GRPC_GO_REQUIRE_HANDSHAKE=off`` means). Works with old
          and new runtimes alike; but grpcio now considers the connection up as soon as the
          runtime's socket accepts, so a hung runtime is only noticed by RPC deadlines.
``auto``  forward the client's preface and wait ``sniff_s`` for the runtime's own SETTINGS: if it
          comes, the shim is a plain byte pipe (a dead or hung runtime is detected by the normal
          handshake); if not, inject as ``off`` does. Costs ``sniff_s`` once per connection to an
          old runtime, and a runtime slower than ``sniff_s`` to send its preface is treated as old
          (harmless: the injection is correct for any server).

A runtime that refuses the connection (socket gone, nobody listening) makes the shim close the
client's connection at once, so grpcio sees UNAVAILABLE just as it would without the shim.
Every thread is owned: ``stop()`` closes the listener and all connections and joins them.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import tempfile
import threading

from sensor.handshake import EMPTY_SETTINGS, SettingsInjector

_CHUNK = 256 * 1024


class HandshakeShim:
    def __init__(self, target_path: str, *, mode: str = "off", sniff_s: float = 0.25) -> None:
        if mode not in ("off", "auto"):
            raise ValueError(f"handshake shim mode {mode!r} (accepted: off, auto)")
        self.target_path = target_path
        self.mode = mode
        self.sniff_s = sniff_s
        self._dir = tempfile.mkdtemp(prefix="crisensor-shim-")
        self.path = os.path.join(self._dir, "cri.sock")
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        #: Connections on which SETTINGS was injected / passed through (doctor and tests read these).
        self.injected = 0
        self.passed = 0

    @property
    def addr(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> HandshakeShim:
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lst.bind(self.path)
        os.chmod(self.path, 0o600)
        lst.listen(16)
        self._listener = lst
        self._spawn(self._accept_loop, "shim-accept")
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            if t is not threading.current_thread():
                t.join(timeout=2)
        for c in conns:
            c.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # ---- internals ---------------------------------------------------------------------------

    def _spawn(self, fn, name: str, *args: object) -> None:  # type: ignore[no-untyped-def]
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.add(s)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            self._spawn(self._serve, "shim-conn", client)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target_path)
        except OSError:
            upstream.close()
            client.close()  # the runtime is not there: let grpcio see the failure
            return
        self._track(upstream)
        sent = bytearray()  # client bytes forwarded while sniffing
        if self.mode == "off" or not self._server_speaks_first(client, upstream, sent):
            self.injected += 1
            client.sendall(EMPTY_SETTINGS)
            injector: SettingsInjector | None = SettingsInjector(drop_first_ack=True)
            injector.feed(bytes(sent))  # already forwarded; feed it so the scanner is in step
        else:
            self.passed += 1
            injector = None
        pair = _Pair(self, client, upstream)
        self._spawn(self._pipe, "shim-down", upstream, client, None, pair)
        self._pipe(client, upstream, injector, pair)

    def _server_speaks_first(self, client: socket.socket, upstream: socket.socket, sent: bytearray) -> bool:
        """Forward client bytes for up to ``sniff_s``; True if the runtime sent anything meanwhile.

        No client byte can be a SETTINGS ACK yet (the client has received no SETTINGS), so
        forwarding them raw before deciding is safe.
        """
        import time

        deadline = time.monotonic() + self.sniff_s
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([client, upstream], [], [], left)
            if upstream in readable:
                return True
            if client in readable:
                data = client.recv(_CHUNK)
                if not data:
                    return True  # client gone; the pipes will wind down
                upstream.sendall(data)
                sent += data
        return False

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self._conns.discard(s)
        for s in socks:
            s.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, injector: SettingsInjector | None,
              pair: _Pair) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                if injector is not None:
                    data = injector.feed(data)
                    if injector.passthrough:
                        injector = None
                if data:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            pair.half_done()


class _Pair:
    """A client/runtime socket pair; closed when both directions have ended."""

    def __init__(self, shim: HandshakeShim, a: socket.socket, b: socket.socket) -> None:
        self._shim, self._socks, self._left = shim, (a, b), 2
        self._lock = threading.Lock()

    def half_done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._shim._untrack(*self._socks)
