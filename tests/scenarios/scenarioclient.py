"""Small CRI clients for the scenario tests: a grpcio stub, and a raw HTTP/2 client built on h2.

The raw client sends its preface, SETTINGS, HEADERS and DATA at once without waiting for the
server's preface -- what grpc-go does with GRPC_GO_REQUIRE_HANDSHAKE=off -- so it gets through
old CRI-O's cmux, which grpcio cannot.
"""

from __future__ import annotations

import socket
import time
from types import ModuleType, SimpleNamespace
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events

import cri_api


def connect(addr: str, api: str = "v1", **options: Any) -> SimpleNamespace:
    """A grpcio channel with RuntimeService/ImageService stubs; close with ``.close()``."""
    # A channel-local subchannel pool: otherwise grpcio shares connections between channels to
    # the same address, and a new channel inherits an old one's reconnect backoff after a restart.
    opts = [("grpc.max_receive_message_length", 16 * 1024 * 1024), ("grpc.use_local_subchannel_pool", 1),
            *options.items()]
    channel = grpc.insecure_channel(addr, options=opts)
    mods = cri_api.api(api)
    return SimpleNamespace(channel=channel, pb=mods.pb2, rt=mods.pb2_grpc.RuntimeServiceStub(channel),
                           img=mods.pb2_grpc.ImageServiceStub(channel), close=channel.close)


def code_of(call: Any) -> grpc.StatusCode:
    """Run ``call()`` and return its status code (OK if it returns)."""
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def h2_unary(path: str, method: str, request: Any, response_type: type, timeout: float = 5.0) -> tuple[str, Any]:
    """One gRPC unary call over a raw unix socket with the h2 library: (grpc-status, response)."""
    body = request.SerializeToString()
    frame = b"\x00" + len(body).to_bytes(4, "big") + body
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", method), (":authority", "localhost"),
                          ("content-type", "application/grpc"), ("te", "trailers")])
    conn.send_data(1, frame, end_stream=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = bytearray()
    status = None
    try:
        sock.connect(path)
        sock.sendall(conn.data_to_send())  # preface + SETTINGS + HEADERS + DATA, no waiting
        while status is None and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived | h2.events.ResponseReceived):
                    hdrs = dict(ev.headers)
                    status = hdrs.get("grpc-status", status)
                elif isinstance(ev, h2.events.StreamReset):
                    status = f"reset {ev.error_code}"
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
    finally:
        sock.close()
    if status is None:
        raise TimeoutError(f"no gRPC status from {path} within {timeout}s")
    resp = response_type()
    if status == "0" and len(data) >= 5:
        resp.ParseFromString(bytes(data[5:5 + int.from_bytes(data[1:5], "big")]))
    return status, resp


def pb_of(api: str) -> ModuleType:
    return cri_api.api(api).pb2
