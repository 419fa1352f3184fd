"""``crisensor``: run the sensor, or take one snapshot of a runtime.

Every user error is one line on stderr and exit code 2; never a traceback. ``run`` exits 0 within
a second of SIGTERM/SIGINT: in-flight RPCs are cancelled, what was emitted is flushed. A closed
output ends any command quietly (exit 0); a failed write is one line naming the output and the
errno, exit 1 (``sensor.output``; docs/install.md, "Shutdown and output failures").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from sensor.client import ConnectError, CriCallError, CriClient
from sensor.config import DEFAULT_ANALYTICS_PATH, DEFAULT_SENSOR_PATH, ConfigError, SensorConfig, load_config
from sensor.heap import FreezeOnce, keep_freed_memory, limit_arenas
from sensor.processes import ProcessesUnavailable
from sensor.statedir import StateDirError

log = logging.getLogger("crisensor")


class UsageError(Exception):
    """Bad flags or input: printed as one line, exit code 2."""


#: flag dest -> the config key it overrides (the flag is named ``--`` + dest with dashes).
_FLAG_KEYS = (("addr", "crisensor.addr"), ("poll_interval", "crisensor.poll_interval"),
              ("handshake", "crisensor.handshake"), ("events", "crisensor.events"),
              ("processes", "crisensor.processes"), ("lookup_on_miss", "crisensor.lookup_on_miss"),
              ("processes_scope", "crisensor.processes_scope"), ("reorder_window", "event_reorder_window"),
              ("state_dir", "crisensor.state_dir"))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, key in _FLAG_KEYS:
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = value
    if getattr(args, "enable", False):
        out["crisensor.enabled"] = True
    return out


def _flag_for(args: argparse.Namespace, key: str | None) -> str:
    """The flag as the user typed it that set ``key`` (config reports overrides by key, file "override")."""
    for dest, k in _FLAG_KEYS:
        if k == key and getattr(args, dest, None) is not None:
            return "--" + dest.replace("_", "-")
    return "--enable" if getattr(args, "enable", False) else "a flag"


def load(args: argparse.Namespace) -> SensorConfig:
    try:
        return load_config(args.config, getattr(args, "analytics_config", None), _overrides(args))
    except ConfigError as e:
        if e.file != "override":
            raise
        flag = _flag_for(args, e.key)
        problem = e.problem if flag != "--enable" else f"{e.key} is unset ({e.problem})"
        raise ConfigError(flag, None, problem, e.accepted) from None


def make_client(cfg: SensorConfig) -> CriClient:
    return CriClient(cfg.addr, rpc_timeout_s=cfg.rpc_timeout_ns / 1e9, max_recv_bytes=cfg.max_recv_bytes,
                     handshake=cfg.handshake)


METRICS_ADDR_ACCEPTED = "HOST:PORT, e.g. :9464 (127.0.0.1), 0.0.0.0:9464 (every interface) or [::1]:9464"


def _parse_hostport(text: str) -> tuple[str, int]:
    """``--metrics-addr``: an omitted host means loopback (metrics are not for the whole network
    unless asked); an IPv6 literal is written in brackets."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]") and len(host) > 2:
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        host, sep = "", ""  # a bare or half-bracketed IPv6 literal: ambiguous
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--metrics-addr: {text!r} is not HOST:PORT (accepted: {METRICS_ADDR_ACCEPTED})")
    return host or "127.0.0.1", int(port)


#: After SIGTERM/SIGINT, how long ``run`` waits for the poll loop to return once its RPCs are
#: cancelled and the output closed (it usually returns within milliseconds; a loop still busy
#: decoding a huge list is left behind, as a daemon thread, so that the sensor exits within a
#: second at any scale).
SHUTDOWN_JOIN_S = 0.25


def cmd_run(args: argparse.Namespace) -> int:
    from sensor.analytics import Pipeline, ProgressPoller
    from sensor.diff import DiffEngine
    from sensor.enrich import NoHistory
    from sensor.metrics import Metrics
    from sensor.output import Emitter, stream_name

    limit_arenas()  # before any thread starts: see sensor.heap.py
    keep_freed_memory()
    # Signals only note themselves (a handler that takes locks can deadlock the thread it interrupts);
    # the main thread acts on them.
    signalled: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: signalled.append(signum))
    cfg = load(args)
    if not cfg.enabled:
        where = cfg.sensor_path or f"{DEFAULT_SENSOR_PATH} (not found)"
        print(f"crisensor: disabled: pass --enable, or set crisensor.enabled: true in {where}; exiting",
              file=sys.stderr)
        return 0
    keeper = None
    if cfg.state_dir:  # before anything else: a second sensor on the same state refuses at once
        from sensor.statedir import open_keeper

        keeper = open_keeper(cfg.state_dir, DiffEngine(state_lag_ns=cfg.state_lag_ns),
                             socket_path=cfg.socket_path)
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
    from sensor.wakeup import Wakeup

    wakeup = Wakeup()
    client = make_client(cfg)

    def output_failed(_: Exception) -> None:
        stop.set()
        wakeup.poke()

    # A failed output stops the sensor from whichever thread wrote (poll loop or stream reader).
    emitter_kw: dict[str, Any] = {"name": args.output or stream_name(out), "on_failure": output_failed,
                                  "on_unwritten": metrics.events_unwritten.inc}
    if keeper is not None:  # every batch is journalled after it is written (docs/state.md)
        from sensor.statedir import PersistingEmitter

        emitter: Emitter = PersistingEmitter(out, keeper=keeper, **emitter_kw)
    else:
        emitter = Emitter(out, **emitter_kw)
    # stop_check_s=None: every stop comes with poller.interrupt() (below), so the loop sleeps undisturbed;
    # status calls for start times stop 30% into the poll interval (polls keep their rate under churn)
    from sensor.poller import STATUS_TIME_SHARE

    poller = ProgressPoller(client, emitter, poll_interval_ns=cfg.poll_interval_ns, metrics=metrics,
                            events=cfg.events, resync_interval_ns=cfg.resync_interval_ns, stop_check_s=None,
                            status_time_share=STATUS_TIME_SHARE,
                            engine=DiffEngine(state_lag_ns=cfg.state_lag_ns) if keeper is None else keeper.engine)
    # The analytics stage (event_reorder_window) sees every lifecycle event; with a process source
    # it holds each exec for the window, enriches it as of its own time and writes it (process.exec).
    from sensor.processes import start_processes

    source = start_processes(cfg.processes, emitter, metrics, keep_host=cfg.processes_scope == "all")
    # without a process source nothing reads the enricher's history: it keeps none (the metrics stay)
    analytics = Pipeline.from_config(cfg, metrics=metrics, source=source,
                                     enricher=NoHistory() if source is None else None)
    analytics.attach(emitter)
    poller.on_poll.append(analytics.on_poll)
    poller.on_poll.append(FreezeOnce())  # the first snapshot's records leave the collector's sight
    ticker = None
    lookups = None
    if source is not None:
        from sensor.processes import ExecWriter

        ticker = ExecWriter(analytics, emitter, source.ready).start()
        if cfg.lookup_on_miss == "on":
            from sensor.lookup import LookupPlanner, LookupWorker

            lookups = LookupWorker(LookupPlanner(cfg.poll_interval_ns), poller.knows, poller.lookup).start()
            source.on_exec = lookups.want
    log.info("crisensor: watching %s every %.0f ms (handshake %s, events %s)", cfg.addr,
             cfg.poll_interval_ns / 1e6, cfg.handshake, cfg.events)
    crashed: list[BaseException] = []

    def poll_loop() -> None:
        try:
            poller.run(stop)  # on its way out it cancels the event stream and joins its reader
        except BaseException as e:  # re-raised by the main thread: one traceback, exit 1
            crashed.append(e)
            stop.set()
        finally:
            wakeup.poke()

    # The poll loop runs on its own thread so that the main thread can always act on a signal at
    # once: cancel the RPCs in flight and exit, however long the current poll would still take.
    worker = threading.Thread(target=poll_loop, name="crisensor-poll", daemon=True)
    wakeup.watch_signals()
    if not signalled:
        worker.start()
    try:
        while worker.is_alive() and not stop.is_set() and not signalled:
            wakeup.wait()  # until signalled, the poll loop ends or the output fails: each pokes it
    finally:
        wakeup.unwatch_signals()
        stop.set()
        poller.interrupt()
        # The process source stops first; the execs it already delivered are released and written
        # (bounded: a write blocked on a pipe nobody reads must not hold up the exit).
        if lookups is not None:
            lookups.close(0.2)
        if source is not None:
            source.close(0.2)
        if ticker is not None:
            flusher = threading.Thread(target=ticker.close, name="crisensor-flush", daemon=True)
            flusher.start()
            flusher.join(0.3)
        # What was emitted before the signal is written (a batch being written ends after its
        # current event, and is flushed); events of a poll cut short are not.
        if not emitter.close():  # a write is blocked on a pipe nobody reads: leave without touching it
            if keeper is not None:
                keeper.close()
            sys.stderr.flush()
            os._exit(1 if crashed or emitter.failure else 0)
        if worker.ident is not None:  # not started when the signal came during start-up
            worker.join(SHUTDOWN_JOIN_S)
        analytics.close()
        if keeper is not None and not worker.is_alive():
            keeper.close()  # the journal synced; the lock released (process exit releases it anyway)
        if not worker.is_alive():
            client.close()
        if emitter.failure is None:
            out.flush()
        if out is not sys.stdout:
            with contextlib.suppress(OSError):  # a failed output fails its close too: said below
                out.close()
    if crashed:
        raise crashed[0]
    if emitter.failure is not None:
        raise emitter.failure  # main: a closed pipe is a quiet exit 0, a write error one line and exit 1
    if signalled:
        _exit_at_once(0)
    return 0


def _exit_at_once(code: int) -> NoReturn:
    """Leave without the interpreter's teardown: freeing the state of a 10,000-container node (and
    waiting for a poll loop still decoding a list) took another 0.5 s after everything was written.
    Everything is flushed first; the gRPC channel is closed already."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


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


EXIT_CODES = """\
exit codes:
  0  ok; also after SIGTERM/SIGINT (run cancels what is in flight and exits within a second),
     and when the output is closed (crisensor run | head -1)
  1  runtime failure: the runtime cannot be reached (snapshot), a write to the output failed
     (full disk, I/O error: one line names the output, the errno and the events not written),
     or crisensor.processes is proc and the kernel's proc connector cannot be used,
     or another sensor holds the state dir (crisensor.state_dir, --state-dir)
  2  usage or configuration error (one line naming the flag, file or key)"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crisensor", description="CRI container-lifecycle sensor.", epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help=f"sensor config (default {DEFAULT_SENSOR_PATH})")
        sp.add_argument("--addr", help="CRI socket, unix:///path (overrides crisensor.addr)")
        sp.add_argument("--handshake", help="require | off | auto (overrides crisensor.handshake)")

    run = sub.add_parser("run", help="poll the runtime and write events as JSON lines", epilog=EXIT_CODES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    common(run)
    run.add_argument("--analytics-config", help=f"analytics config (default {DEFAULT_ANALYTICS_PATH})")
    run.add_argument("--enable", action="store_true", help="set crisensor.enabled: true")
    run.add_argument("--poll-interval",
                     help="Go duration from 10ms to 1h, e.g. 250ms (overrides crisensor.poll_interval)")
    run.add_argument("--events", help="auto | on | off (overrides crisensor.events)")
    run.add_argument("--reorder-window", help="Go duration (overrides event_reorder_window)")
    run.add_argument("--processes", help="auto | proc | off: exec events from the kernel, enriched with their "
                                         "container (overrides crisensor.processes)")
    run.add_argument("--processes-scope", help="containers | all: all keeps execs of host processes too "
                                               "(overrides crisensor.processes_scope)")
    run.add_argument("--lookup-on-miss", help="on | off: ask the runtime at once about a container an exec names "
                                              "before any poll announced it (overrides crisensor.lookup_on_miss)")
    run.add_argument("--state-dir", help="keep crash-safe state here and resume from it after a restart: seq "
                                         "continues, nothing is announced twice (overrides crisensor.state_dir; "
                                         "docs/state.md)")
    run.add_argument("--output", help="append JSON lines to this file instead of stdout")
    run.add_argument("--metrics-addr", help="serve Prometheus metrics on HOST:PORT (:PORT listens on 127.0.0.1; "
                                            "[::1]:PORT for IPv6)")
    run.set_defaults(func=cmd_run)

    snap = sub.add_parser("snapshot", help="poll once and print what the runtime holds")
    common(snap)
    snap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    snap.set_defaults(func=cmd_snapshot)

    from sensor.doctor import add_doctor_parser

    add_doctor_parser(sub)

    from sensor.tune import add_tune_parser

    add_tune_parser(sub)
    for sp in sub.choices.values():  # global flags work after the subcommand too (crisensor run -q)
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
    return p


QUIET_HELP = "log only errors (state changes are logged by default); before or after the subcommand"


def _version() -> str:
    import inspect

    from sensor.about import version_text

    apis = inspect.signature(CriClient).parameters["api_preference"].default  # what connect() negotiates
    return version_text("crisensor", apis, "negotiated with Version, newest first")


def main(argv: Sequence[str] | None = None) -> int:
    from sensor.output import run_guarded

    return run_guarded("crisensor", lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
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
    except ProcessesUnavailable as e:
        print(f"crisensor: {e}", file=sys.stderr)
        return 1
    except StateDirError as e:  # unusable path: 2; in use by another sensor: 1
        print(f"crisensor: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C in a one-shot command (run handles SIGINT itself: exit 0)
        return 130


if __name__ == "__main__":
    sys.exit(main())
