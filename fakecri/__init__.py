"""fakecri: a scriptable fake CRI runtime that records ground truth and verifies sensors against it.

The package is layered so that the tree shows the architecture:

* pure cores (no sockets, injected clock): ``clock``, ``model`` (the runtime state machine),
  ``flavors``, ``truth``, ``scenario`` (format, validation, expansion), ``strategies``
  (hypothesis), ``timeline`` (steps on a clock), ``check`` (the guarantee checker), ``kubelet``;
* thin I/O shells: ``convert`` (model <-> protobuf), ``server`` (gRPC on a unix socket),
  ``faults`` (call policy), ``relay`` (byte-level handshake quirks), ``harness`` (a scenario
  served for real), ``cli`` and ``pytest_plugin``.
"""
