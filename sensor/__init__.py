"""crisensor: a CRI sensor that polls (and streams from) a container runtime and reports
container lifecycle events, forging and flagging the transitions it could not see.

Pure cores: ``duration``, ``config``, ``lifecycle``, ``events``, ``diff``, ``reorder``.
Thin shells: ``client`` (gRPC), ``shim`` (old-handshake workaround), ``poller``, ``cli``, ``metrics``.
"""
