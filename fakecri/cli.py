"""``fakecri``: command line for the fake CRI runtime.

    fakecri serve [SCENARIO] [--socket PATH] [--truth FILE] [--speed X] [--flavor NAME] [--exit-at-end]
                  [--start first-list|now] [--repeat N | --loop] [--handshake MODE] [--events MODE]
    fakecri validate SCENARIO...
    fakecri scenarios
    fakecri verify SCENARIO [--report FILE] [--poll-interval D] [--mode poll|stream] [--grace D]
                   [--speed X] -- COMMAND [ARGS...]

``serve`` without a scenario serves an empty runtime of the flavour until SIGINT/SIGTERM. With a
scenario (a path, or the name of a bundled one such as ``fast_exit``) it runs the timeline in
real time (``--speed 2`` runs it twice as fast), reports when the scenario's end has passed
(with the measured timing jitter), and keeps serving until signalled -- or exits at the end with
``--exit-at-end``. Shutdown is clean either way: sockets are removed. ``--truth FILE`` writes
the ground truth as JSON lines while it happens.

The timeline starts at the first ``ListContainers``/``ListPodSandbox`` answer or event stream
(``--start first-list``, the default: a sensor started a few seconds later still sees the whole
scenario; one line says the runtime is waiting), or at once (``--start now``). ``--repeat N``
runs it N times, ``--loop`` until signalled: each run removes what the last one left and
starts with fresh IDs (``Harness.replay``). The flavour's quirks are on by default (crio-1.13
withholds its HTTP/2 preface like the real one); ``--handshake``/``--events`` override them.

``verify`` runs any sensor against a scenario and judges its events (``fakecri.verify``,
docs/verify.md): exit 0 when every guarantee holds, 1 when one fails.

Errors are one line on stderr and exit code 2; never a traceback. A closed stdout ends a command
quietly (exit 0; ``verify`` keeps its verdict); a failed write is one line naming the output and
the errno, exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from fakecri.flavors import FLAVORS, HANDSHAKES, get_flavor
from fakecri.scenario import DEFAULT_FLAVOR, EVENTS_MODES
from sensor.output import run_guarded, silence_stdout

DEFAULT_SOCKET = "/tmp/fakecri.sock"


class UsageError(Exception):
    """A bad command line or input file: printed as one line, exit code 2."""


class StopFlag:
    """Set by SIGINT/SIGTERM (or a failed truth sink). The signal handler only assigns a flag: one
    that took a lock, as ``threading.Event.set`` does, could deadlock the main thread it interrupts
    while that thread holds the same lock inside ``Event.wait``."""

    SLICE_S = 0.05

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, self.SLICE_S))
        return self._set


def _install_stop_handlers() -> StopFlag:
    stop = StopFlag()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.2f} ms"


def _serve_scenario(args: argparse.Namespace) -> Any:
    """The scenario to serve, with ``--handshake``/``--events`` applied over the flavour's quirks."""
    import dataclasses

    from fakecri.scenario import Scenario, ScenarioError, load

    try:
        scenario = load(args.scenario) if args.scenario else None
    except ScenarioError as e:
        raise UsageError(str(e)) from None
    changes = {k: v for k, v in (("handshake", args.handshake), ("events", args.events)) if v is not None}
    if not changes:
        return scenario
    if scenario is None:
        scenario = Scenario(flavor=args.flavor or DEFAULT_FLAVOR, name="empty")
    return dataclasses.replace(scenario, quirks=dataclasses.replace(scenario.quirks, **changes))


def _repetitions(args: argparse.Namespace) -> int | None:
    """How many times to run the timeline: ``--repeat N`` (N >= 1), ``None`` for ``--loop``."""
    if args.loop:
        if args.repeat is not None:
            raise UsageError("--repeat and --loop exclude each other (accepted: one of them)")
        return None
    if args.repeat is not None and args.repeat < 1:
        raise UsageError(f"--repeat must be a whole number >= 1, not {args.repeat}")
    return args.repeat or 1


def cmd_serve(args: argparse.Namespace) -> int:
    from fakecri.harness import Harness, tune_for_timing

    if args.speed is not None and args.speed <= 0:
        raise UsageError(f"--speed must be a number > 0, not {args.speed:g}")
    if args.flavor is not None:
        get_flavor(args.flavor)  # ValueError lists the accepted names
    runs = _repetitions(args)
    scenario = _serve_scenario(args)
    if not args.scenario and (args.repeat is not None or args.loop):
        raise UsageError("--repeat/--loop need a SCENARIO to replay (accepted: fakecri serve SCENARIO --repeat N)")
    sink: IO[str] | None = None
    if args.truth:
        try:
            sink = open(args.truth, "w", encoding="utf-8")  # noqa: SIM115 -- closed in finally below
        except OSError as e:
            raise UsageError(f"--truth {args.truth}: cannot write: {e.strerror or e}") from None
    stop = _install_stop_handlers()
    try:
        try:
            h = Harness(scenario, socket=args.socket or None, flavor=args.flavor, clock="real",
                        speed=args.speed or 1.0, truth_sink=sink)
            h.truth.on_sink_failure = lambda _: stop.set()  # the truth is the point: stop, say so below
            viewed = h.first_view()
            h.start(hold=scenario is not None)
            tune_for_timing()  # after start: an existing node is built by then, and frozen too
        except OSError as e:
            if e.strerror and e.filename:
                raise UsageError(f"cannot serve on {args.socket or 'the socket'}: {e.filename}: {e.strerror}") from None
            raise UsageError(str(e)) from None
        except ValueError as e:
            raise UsageError(str(e)) from None
        f = h.flavor
        what = f"scenario {h.scenario.name}" if scenario is not None and args.scenario else "an empty runtime"
        quirk = f", handshake {h.handshake}" if h.handshake != "none" else ""
        say(f"serving {what} as {f.name} ({'+'.join(f.apis)}{quirk}) on {h.addr}")
        try:
            if scenario is not None and args.scenario:
                _run_timeline(h, args, runs, viewed, stop)
            elif h.runner is None:
                h.release()  # an empty runtime (quirks given as flags): nothing to wait for
            while not stop.wait(0.5):
                pass
        finally:
            h.stop()
            say("stopped")
    finally:
        if sink is not None:
            with contextlib.suppress(OSError):  # a failed sink fails its close too: said below
                sink.close()
    if h.truth.sink_failure is not None:
        raise h.truth.sink_failure  # main: a closed pipe is a quiet exit 0, a write error one line, exit 1
    return 0


def say(text: str) -> None:
    print(f"fakecri: {text}", file=sys.stderr, flush=True)


def _run_timeline(h: Any, args: argparse.Namespace, runs: int | None, viewed: Any, stop: StopFlag) -> None:
    """Start the timeline (at once, or at the first client's first list), run it ``runs`` times
    (``None``: until signalled), and stop the serve loop at the end with ``--exit-at-end``."""
    if args.start == "first-list":
        say(f"waiting for a client on {h.addr} (the scenario starts at its first ListContainers, "
            "ListPodSandbox or GetContainerEvents; --start now starts it at once)")
        while not viewed.wait(0.2):
            if stop.is_set():
                return
        say("a client listed the runtime; scenario started")
    h.release()
    name = h.scenario.name
    while True:
        while not stop.is_set() and not h.wait_end(0.2):
            pass
        if stop.is_set():
            return
        j = h.jitter_summary()
        rep = "" if runs == 1 else f" (run {h.repetition + 1}{'' if runs is None else f' of {runs}'})"
        say(f"scenario {name} reached its end{rep} ({j['count']} steps; jitter p50 {_ms(j['p50_ns'])}, p99 "
            f"{_ms(j['p99_ns'])}, max {_ms(j['max_ns'])}; applied late p50 {_ms(j['late_p50_ns'])}, p99 "
            f"{_ms(j['late_p99_ns'])}, max {_ms(j['late_max_ns'])}"
            f"{'; ' + str(len(h.skipped)) + ' steps skipped' if h.skipped else ''})")
        if runs is not None and h.repetition + 1 >= runs:
            break
        h.replay()
        say(f"scenario {name} run {h.repetition + 1}{'' if runs is None else f' of {runs}'} started "
            "(what the last run left was removed; fresh IDs)")
    if args.exit_at_end:
        stop.set()


def cmd_validate(args: argparse.Namespace) -> int:
    from fakecri.scenario import ScenarioError, load

    bad = 0
    for path in args.scenarios:
        try:
            load(path)
        except ScenarioError as e:
            bad += 1
            print(e, flush=True)
        else:
            print(f"ok {path}", flush=True)
    return 2 if bad else 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from fakecri.scenario import bundled, summary_of

    found = bundled()
    if not found:
        raise UsageError("no bundled scenarios found (is the package installed completely?)")
    width = max(len(n) for n in found)
    for name, path in found.items():
        print(f"{name:<{width}}  {summary_of(path.read_text(encoding='utf-8'))}")
    return 0


def _duration_arg(flag: str, text: str) -> int:
    from sensor.duration import DurationError, parse_duration

    try:
        ns = parse_duration(text)
    except DurationError as e:
        raise UsageError(f"{flag}: {e}") from None
    return ns


RESTART_ACCEPTED = "Go durations after the scenario's start, comma-separated, e.g. 2s or 2s,5s"


def _restart_times(text: str | None) -> tuple[int, ...]:
    """``--restart-sensor-at 2s,5s``: distinct times > 0, in order."""
    if text is None:
        return ()
    from sensor.duration import DurationError, parse_duration

    out: list[int] = []
    for part in text.split(","):
        try:
            ns = parse_duration(part.strip())
        except DurationError as e:
            raise UsageError(f"--restart-sensor-at: {part.strip()!r} is not a Go duration: {e.problem} "
                             f"(accepted: {RESTART_ACCEPTED})") from None
        if ns <= 0 or ns in out:
            raise UsageError(f"--restart-sensor-at: {part.strip()!r} is not a new time > 0 (accepted: "
                             f"{RESTART_ACCEPTED})")
        out.append(ns)
    return tuple(sorted(out))


def cmd_verify(args: argparse.Namespace) -> int:
    from fakecri import verify

    poll = None if args.poll_interval is None else _duration_arg("--poll-interval", args.poll_interval)
    if poll is not None and poll <= 0:
        raise UsageError(f"--poll-interval must be > 0, not {args.poll_interval}")
    opts = verify.Options(
        scenario=args.scenario,
        command=list(args.command or []),
        report_path=args.report,
        poll_interval_ns=poll,
        mode=args.mode,
        grace_ns=None if args.grace is None else _duration_arg("--grace", args.grace),
        speed=args.speed,
        allowance_ns=_duration_arg("--allowance", args.allowance),
        start_timeout_ns=_duration_arg("--start-timeout", args.start_timeout),
        tune=True,
        restart_at_ns=_restart_times(args.restart_sensor_at),
    )
    try:
        return verify.run(opts).exit_code
    except verify.VerifyUsageError as e:
        raise UsageError(str(e)) from None
    except verify.ReportNotPrinted as e:  # stdout closed: the verdict (and --report) still count
        silence_stdout()
        return e.exit_code


def cmd_record(args: argparse.Namespace) -> int:
    from fakecri import record

    only = [s for s in (args.only or "").split(",") if s]
    unknown = [s for s in only if s not in record.SEQUENCES]
    if unknown:
        raise UsageError(f"--only: unknown sequence {unknown[0]!r} (accepted: {', '.join(record.SEQUENCES)})")
    if (args.flavor is None) == (args.addr is None):
        raise UsageError("record: give exactly one of --flavor NAME (fakecri) or --addr unix:///PATH (a runtime)")
    if args.flavor is not None:
        if args.flavor not in FLAVORS:
            raise UsageError(f"--flavor: unknown flavor {args.flavor!r} (accepted: {', '.join(FLAVORS)})")
        out = record.record_fake(args.flavor, only or None, busybox=args.image)
    else:
        if not args.addr.startswith("unix://"):
            raise UsageError(f"--addr: {args.addr!r} does not start with unix:// (accepted: unix:///PATH)")
        rec = record.Recorder(record.Target(addr=args.addr, busybox_image=args.image, log_root=args.log_root,
                                            cgroup_parent=args.cgroup_parent))
        try:
            out = rec.record(only or None)
        finally:
            rec.close()
    text = record.dumps(out)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


EXIT_CODES = """\
exit codes:
  0  ok (serve: stopped by SIGTERM/SIGINT or --exit-at-end); also when stdout is closed
     (fakecri scenarios | head -1), except verify, whose exit code is always its verdict
  1  runtime failure: verify found a guarantee broken; a write failed (full disk, I/O error:
     one line names the output and the errno)
  2  usage error: bad flags, bad scenario (validate: a file failed), a --socket path that is
     not free (one line naming the path and why)"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fakecri", description="A scriptable fake CRI runtime.", epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a runtime (empty, or scripted by a scenario) on a unix socket")
    serve.add_argument("scenario", nargs="?", help="scenario YAML file, or the name of a bundled scenario")
    serve.add_argument("--flavor", help=f"runtime to emulate ({', '.join(FLAVORS)}); overrides the scenario's")
    serve.add_argument("--socket", help=f"unix socket path (default: the scenario's, else {DEFAULT_SOCKET})")
    serve.add_argument("--truth", metavar="FILE", help="write ground truth to FILE as JSON lines")
    serve.add_argument("--speed", type=float, metavar="X", help="run the timeline X times as fast (default 1)")
    serve.add_argument("--exit-at-end", action="store_true", help="exit once the scenario's (last) end has passed")
    serve.add_argument("--start", choices=("first-list", "now"), default="first-list",
                       help="start the timeline at a client's first list or event stream (default), or now")
    serve.add_argument("--repeat", type=int, metavar="N", help="run the scenario N times, each with fresh IDs")
    serve.add_argument("--loop", action="store_true", help="run the scenario again and again until signalled")
    serve.add_argument("--handshake", choices=HANDSHAKES,
                       help="override the flavour's handshake quirk (crio-1.13: cmux, crio-1.16: cmux-settings; "
                            "none turns it off)")
    serve.add_argument("--events", choices=EVENTS_MODES,
                       help="override the flavour's GetContainerEvents behaviour (e.g. stream for crio-1.26 "
                            "with enable_pod_events)")
    serve.set_defaults(func=cmd_serve)
    val = sub.add_parser("validate", help="check scenario files; prints 'ok FILE' or the error line per file")
    val.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    val.set_defaults(func=cmd_validate)
    lst = sub.add_parser("scenarios", help="list the bundled scenarios")
    lst.set_defaults(func=cmd_scenarios)
    ver = sub.add_parser(
        "verify",
        usage="fakecri verify SCENARIO [options] -- COMMAND [ARGS...]",
        help="run a sensor against a scenario in real time and check its events against the truth",
        description="Serve SCENARIO on a temporary socket, run COMMAND ({addr}, {socket} and {poll_interval} in "
                    "its arguments are replaced; CRI_ADDR is set), read its JSON-lines events from stdout, stop "
                    "it after the scenario's end plus a grace period, and check guarantees G1-G8 (and G9 with "
                    "--restart-sensor-at). Exit 0: all hold; 1: one fails; 2: usage error. See docs/verify.md.",
    )
    ver.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file, or the name of a bundled scenario")
    ver.add_argument("--report", metavar="FILE", help="also write the report as JSON to FILE")
    ver.add_argument("--poll-interval", metavar="D",
                     help="the sensor's poll interval, for the check (default: what its sensor.connected event "
                          "says, else 250ms)")
    ver.add_argument("--mode", choices=("poll", "stream"),
                     help="poll, or stream when the sensor consumes GetContainerEvents (default: what its "
                          "sensor.connected event says, else stream if it opened an event stream)")
    ver.add_argument("--grace", metavar="D", help="wait after the scenario's end (default 2 poll intervals + 1s; "
                                                  "--poll-interval or 250ms)")
    ver.add_argument("--speed", type=float, default=1.0, metavar="X", help="run the timeline X times as fast")
    ver.add_argument("--allowance", default="50ms", metavar="D",
                     help="RPC time + scheduling slack added to every deadline (default 50ms)")
    ver.add_argument("--start-timeout", default="20s", metavar="D",
                     help="fail if the command has not listed the runtime by then (default 20s)")
    ver.add_argument("--restart-sensor-at", metavar="T[,T...]",
                     help="kill the command with SIGKILL at these times after the scenario's start and start it "
                          "again with the same arguments; the runs' outputs are judged as one stream, with G9 "
                          "(exactly once across sensor restarts), e.g. 2s or 2s,5s")
    ver.set_defaults(func=cmd_verify, command=None)
    rec = sub.add_parser(
        "record", help="run fixed CRI call sequences against a runtime (or a flavour) and write what it answered",
        description="Drive the sequences of fakecri/record.py (pods and containers with various lives and exit "
                    "codes, stop/remove orders, removal races, sandbox teardown) against a runtime over runtime.v1 "
                    "and write its GetContainerEvents stream and every List/Status answer, normalised, as JSON. "
                    "See docs/fidelity.md.")
    rec.add_argument("--addr", help="the runtime's socket, unix:///PATH (it must have --image)")
    rec.add_argument("--flavor", help=f"record fakecri's flavour instead ({', '.join(FLAVORS)})")
    rec.add_argument("--image", default="busybox", help="image with sh, sleep and exit (default busybox)")
    rec.add_argument("--log-root", default="/tmp/fakecri-record-logs", help="parent of the pods' log directories")
    rec.add_argument("--cgroup-parent", default="", help="the pods' cgroup parent")
    rec.add_argument("--only", metavar="A,B", help="only these sequences")
    rec.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    rec.set_defaults(func=cmd_record)
    return p


def _version() -> str:
    from sensor.about import version_text

    apis = sorted({a for f in FLAVORS.values() for a in f.apis}, key=("v1", "v1alpha2").index)
    return version_text("fakecri", apis, "served per flavour: " + ", ".join(FLAVORS))


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded("fakecri", lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    logging.basicConfig(level=logging.WARNING, format="fakecri: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if argv[:1] == ["verify"] and "--" in argv:  # everything after the first -- is the command, verbatim
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    if command is not None:
        args.command = command
    try:
        return int(args.func(args))
    except (UsageError, ValueError) as e:
        print(f"fakecri: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
