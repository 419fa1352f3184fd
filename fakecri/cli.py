"""``fakecri``: command line for the fake CRI runtime.

``fakecri serve [SCENARIO] [--flavor NAME] [--socket PATH]`` serves until SIGINT/SIGTERM and then
shuts down cleanly (socket removed). Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from fakecri.clock import RealClock
from fakecri.flavors import DEFAULT_FLAVOR, FLAVORS, get_flavor
from fakecri.model import RuntimeModel
from fakecri.server import FakeCriServer

DEFAULT_SOCKET = "/tmp/fakecri.sock"


class UsageError(Exception):
    """A bad command line or input file: printed as one line, exit code 2."""


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    flavor = get_flavor(args.flavor or DEFAULT_FLAVOR)
    model = RuntimeModel(RealClock(), flavor)
    server = FakeCriServer(model, args.socket or DEFAULT_SOCKET)
    try:
        server.start()
    except (OSError, FileExistsError) as e:
        raise UsageError(str(e)) from None
    print(f"fakecri: serving {flavor.name} ({'+'.join(flavor.apis)}) on {server.addr}", file=sys.stderr, flush=True)
    try:
        _wait_for_signal()
    finally:
        server.stop()
        print("fakecri: stopped", file=sys.stderr, flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fakecri", description="A scriptable fake CRI runtime.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a runtime (empty, or scripted by a scenario) on a unix socket")
    serve.add_argument("scenario", nargs="?", help="scenario YAML file")
    serve.add_argument("--flavor", help=f"runtime to emulate ({', '.join(FLAVORS)})")
    serve.add_argument("--socket", help=f"unix socket path (default {DEFAULT_SOCKET})")
    serve.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="fakecri: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ValueError) as e:
        print(f"fakecri: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
