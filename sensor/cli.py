"""``crisensor``: run the sensor, or take one snapshot of a runtime.

Every user error is one line on stderr and exit code 2; never a traceback. ``run`` exits 0 on
SIGTERM/SIGINT after flushing its output.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from sensor.client import ConnectError, CriCallError, CriClient
from sensor.config import DEFAULT_ANALYTICS_PATH, DEFAULT_SENSOR_PATH, ConfigError, SensorConfig, load_config

log = logging.getLogger("crisensor")


class UsageError(Exception):
    """Bad flags or input: printed as one line, exit code 2."""


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, key in (("addr", "crisensor.addr"), ("poll_interval", "crisensor.poll_interval"),
                      ("handshake", "crisensor.handshake"), ("events", "crisensor.events"),
                      ("reorder_window", "event_reorder_window")):
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = value
    if getattr(args, "enable", False):
        out["crisensor.enabled"] = True
    return out


def load(args: argparse.Namespace) -> SensorConfig:
    return load_config(args.config, getattr(args, "analytics_config", None), _overrides(args))


def make_client(cfg: SensorConfig) -> CriClient:
    return CriClient(cfg.addr, rpc_timeout_s=cfg.rpc_timeout_ns / 1e9, max_recv_bytes=cfg.max_recv_bytes,
                     handshake=cfg.handshake)


def _parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--metrics-addr: {text!r} is not HOST:PORT (accepted: e.g. 127.0.0.1:9464 or :9464)")
    return host or "0.0.0.0", int(port)


def cmd_run(args: argparse.Namespace) -> int:
    from sensor.analytics import Pipeline, ProgressPoller
    from sensor.metrics import Metrics
    from sensor.output import Emitter

    cfg = load(args)
    if not cfg.enabled:
        where = cfg.sensor_path or f"{DEFAULT_SENSOR_PATH} (not found)"
        print(f"crisensor: disabled (crisensor.enabled is false in {where}; set it or pass --enable); exiting",
              file=sys.stderr)
        return 0
    metrics = Metrics()
    if args.metrics_addr:
        host, port = _parse_hostport(args.metrics_addr)
        try:
            metrics.serve(host, port)
        except OSError as e:
            raise UsageError(f"--metrics-addr: cannot listen on {args.metrics_addr}: {e.strerror}") from None
    try:
        out = open(args.output, "a", buffering=1, encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    except OSError as e:
        raise UsageError(f"--output: cannot open {args.output}: {e.strerror}") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    client = make_client(cfg)
    emitter = Emitter(out)
    poller = ProgressPoller(client, emitter, poll_interval_ns=cfg.poll_interval_ns, metrics=metrics,
                            events=cfg.events, resync_interval_ns=cfg.resync_interval_ns)
    # The analytics stage (event_reorder_window) sees every lifecycle event; there is no process
    # source in production yet, so it only feeds the crisensor_reorder_* metrics. Output is unchanged.
    analytics = Pipeline.from_config(cfg, metrics=metrics)
    analytics.attach(emitter)
    poller.on_poll.append(analytics.on_poll)
    log.info("crisensor: watching %s every %.0f ms (handshake %s, events %s)", cfg.addr,
             cfg.poll_interval_ns / 1e6, cfg.handshake, cfg.events)
    try:
        poller.run(stop)  # on its way out it cancels the event stream and joins its reader
    finally:
        analytics.close()
        client.close()
        out.flush()
        if out is not sys.stdout:
            out.close()
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    cfg = load(args)
    addr = cfg.addr
    if not addr:
        raise UsageError("snapshot: no runtime address (accepted: --addr unix:///path/to/socket, "
                         "or crisensor.addr in the config file)")
    client = make_client(cfg)
    try:
        info = client.connect()
        snap = client.list()
        details, _ = client.status(c.id for c in snap.containers)
    except (ConnectError, CriCallError) as e:
        print(f"crisensor: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.json:
        print(json.dumps({
            "runtime": {"name": info.runtime_name, "version": info.runtime_version, "api": info.api},
            "sandboxes": [s.__dict__ if hasattr(s, "__dict__") else _slots(s) for s in snap.sandboxes],
            "containers": [_slots(c) | {"detail": _slots(details[c.id]) if details.get(c.id) else None}
                           for c in snap.containers],
        }, indent=2))
        return 0
    print(f"# {info.runtime_name} {info.runtime_version} (CRI {info.api}) at {addr}")
    print(f"{'SANDBOX':<14} {'STATE':<9} {'NAMESPACE/NAME':<40}")
    for s in snap.sandboxes:
        print(f"{s.id[:13]:<14} {s.state:<9} {s.namespace + '/' + s.name:<40}")
    print()
    print(f"{'CONTAINER':<14} {'STATE':<9} {'NAME':<24} {'ATTEMPT':<8} {'SANDBOX':<14} EXIT")
    for c in snap.containers:
        d = details.get(c.id)
        code = "" if d is None or d.exit_code is None else str(d.exit_code)
        print(f"{c.id[:13]:<14} {c.state:<9} {c.name:<24} {c.attempt:<8} {c.sandbox_id[:13]:<14} {code}")
    return 0


def _slots(obj: Any) -> dict[str, Any]:
    names = getattr(obj, "__slots__", None) or list(vars(obj))
    return {n: getattr(obj, n) for n in names}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crisensor", description="CRI container-lifecycle sensor.")
    p.add_argument("-q", "--quiet", action="store_true", help="log only errors (state changes are logged by default)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help=f"sensor config (default {DEFAULT_SENSOR_PATH})")
        sp.add_argument("--addr", help="CRI socket, unix:///path (overrides crisensor.addr)")
        sp.add_argument("--handshake", help="require | off | auto (overrides crisensor.handshake)")

    run = sub.add_parser("run", help="poll the runtime and write events as JSON lines")
    common(run)
    run.add_argument("--analytics-config", help=f"analytics config (default {DEFAULT_ANALYTICS_PATH})")
    run.add_argument("--enable", action="store_true", help="set crisensor.enabled: true")
    run.add_argument("--poll-interval", help="Go duration, e.g. 250ms (overrides crisensor.poll_interval)")
    run.add_argument("--events", help="auto | on | off (overrides crisensor.events)")
    run.add_argument("--reorder-window", help="Go duration (overrides event_reorder_window)")
    run.add_argument("--output", help="append JSON lines to this file instead of stdout")
    run.add_argument("--metrics-addr", help="serve Prometheus metrics on HOST:PORT")
    run.set_defaults(func=cmd_run)

    snap = sub.add_parser("snapshot", help="poll once and print what the runtime holds")
    common(snap)
    snap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    snap.set_defaults(func=cmd_snapshot)

    from sensor.doctor import add_doctor_parser

    add_doctor_parser(sub)

    from sensor.tune import add_tune_parser

    add_tune_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # State changes are rare and worth seeing (retries are deduplicated), so INFO is the default.
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"crisensor: {e}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"crisensor: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
