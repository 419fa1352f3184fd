"""fakecri: a scriptable fake CRI runtime that records ground truth and verifies sensors against it.

The package is layered so that the tree shows the architecture:

* pure cores (no sockets, injected clock): ``clock``, ``model``, ``flavors``, ``truth``,
  ``scenario``, ``check``;
* thin I/O shells: ``convert`` (model <-> protobuf), ``server`` (gRPC on a unix socket),
  ``relay`` (byte-level handshake quirks), ``cli`` and ``pytest_plugin``.
"""
