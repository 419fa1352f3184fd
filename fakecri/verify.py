"""``fakecri verify``: serve a scenario in real time, run any sensor against it, judge its events.

    fakecri verify SCENARIO [--report FILE] [--poll-interval D] [--mode poll|stream] [--grace D]
                   [--speed X] [--allowance D] [--start-timeout D] [--restart-sensor-at T[,T...]]
                   -- COMMAND [ARGS...]

Theory of operation
-------------------
1. The scenario is loaded (a bad one is a usage error: the scenario's error line, exit 2) and
   served on a unix socket in a fresh temporary directory, on the real clock (``Harness``).
2. COMMAND is started with ``{addr}`` (``unix:///.../cri.sock``), ``{socket}`` (the bare path)
   and ``{poll_interval}`` (e.g. ``250ms``) replaced in its arguments and ``CRI_ADDR`` set in its
   environment, in its own process group. Its stdout (the event JSON lines of docs/events.md,
   nothing else) and stderr go to files (``_Output``), read once it stopped; the stderr's tail is
   shown when the check fails.
3. The runtime idles until the sensor's first successful list (or event stream): only then does
   the scenario's timeline start, so a sensor's start-up time does not eat the first steps. A
   sensor that has not listed within ``--start-timeout`` fails the verification.
4. When the scenario has ended and ``--grace`` has passed (default two poll intervals + 1 s: time
   to report the last removals), COMMAND's process group gets SIGTERM, then SIGKILL if it is
   still running ``KILL_AFTER_S`` later. Then the runtime stops.
5. ``fakecri.check`` judges the events against the truth, with ``end_ns`` the instant COMMAND
   was told to stop; the report is printed (``Report.render``) and, with ``--report FILE``,
   written as JSON. The bounds depend on how the sensor works (``judged_as``): ``--mode`` and
   ``--poll-interval`` when given, else what its ``sensor.connected`` event says (``info.events``
   or ``info.mode``, ``info.poll_interval_ns``), else what the truth shows (an event stream it
   opened). The report's first line says which bounds were applied and why.
6. ``--restart-sensor-at T[,T...]`` (``Options.restart_at_ns``): at those times after the timeline's
   start, COMMAND's process group gets SIGKILL and COMMAND is started again with the same argv
   and environment (``_Runs``). The runs' stdout is concatenated in order and judged as one stream;
   ``(killed_ns, started_ns)`` per restart goes to the checker, which adds G9 (exactly once across
   sensor restarts, ``fakecri.check.restarts``) and makes room for the downtime in G2, G7 and G8.
7. ``process.exec`` lines (docs/events.md, a schema of their own) are set aside before the
   lifecycle check, counted (``Outcome.execs``) and judged by G10 (``fakecri.check.attribution``)
   against the truth's process records; they are never format failures.

Exit codes: 0 every guarantee holds; 1 a guarantee failed, an event line was unreadable, or the
sensor never listed the runtime; 2 usage errors (bad flags, bad scenario, command not found).
Errors are one line; never a traceback. docs/verify.md is the user's guide.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from fakecri.check import CheckParams, Report, check, load_events_jsonl
from fakecri.check.observations import NEVER_OPEN, STREAM_METHOD
from fakecri.truth import RpcServed, TruthRecord
from sensor.duration import format_duration
from sensor.output import OutputError, stream_name

#: Seconds between SIGTERM and SIGKILL.
KILL_AFTER_S = 5.0
#: Lines of the command's stderr shown when the check fails.
STDERR_TAIL = 20
DEFAULT_POLL_INTERVAL_NS = 250_000_000
DEFAULT_START_TIMEOUT_NS = 20_000_000_000
MS = 1_000_000


class VerifyUsageError(Exception):
    """A bad invocation: one line, exit code 2."""


class ReportNotPrinted(Exception):
    """stdout was closed before the report was printed (``fakecri verify ... | head``). Everything
    else was done (``--report`` written); ``exit_code`` is the verdict."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("stdout closed")
        self.exit_code = exit_code


@dataclass
class Options:
    scenario: str
    command: list[str]
    report_path: str | None = None
    poll_interval_ns: int | None = None  #: None: the sensor's own (sensor.connected), else 250ms
    mode: str | None = None  #: None: the sensor's own (sensor.connected), else what the truth shows
    grace_ns: int | None = None  #: None: 2 poll intervals + 1 s
    speed: float = 1.0
    allowance_ns: int = 50 * MS
    start_timeout_ns: int = DEFAULT_START_TIMEOUT_NS
    #: G9: kill the command (SIGKILL) at these scenario times and start it again with the same
    #: arguments; its runs' outputs are judged as one stream
    restart_at_ns: tuple[int, ...] = ()
    #: tune this process for serving in real time (``harness.tune_for_timing``: process-wide, so
    #: the CLI sets it, a library caller such as a test suite need not)
    tune: bool = False

    @property
    def nominal_poll_interval_ns(self) -> int:
        """The poll interval before the sensor has said its own: ``--poll-interval``, or 250ms."""
        return self.poll_interval_ns if self.poll_interval_ns is not None else DEFAULT_POLL_INTERVAL_NS

    @property
    def effective_grace_ns(self) -> int:
        return self.grace_ns if self.grace_ns is not None else 2 * self.nominal_poll_interval_ns + 1_000_000_000


@dataclass
class Outcome:
    """What a verification found; ``exit_code`` is what the CLI returns."""

    exit_code: int
    report: Report | None
    problem: str | None = None  #: a failure that is not a guarantee (never listed, crashed early)
    command_exit: int | None = None
    stderr_tail: list[str] = field(default_factory=list)
    events: int = 0
    judged: Judged | None = None
    #: ``process.exec`` objects the sensor wrote, set aside for G10 (not part of the lifecycle check).
    execs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Judged:
    """How the sensor was judged: its mode and poll interval, and where each came from."""

    mode: str
    mode_why: str
    poll_interval_ns: int
    poll_why: str

    def bounds(self, allowance_ns: int, stream_latency_ns: int) -> str:
        p, a = format_duration(self.poll_interval_ns), format_duration(allowance_ns)
        poll = f"G7 <= {p}+{a}, G8 misses within the L/P bound"
        if self.mode == "poll":
            return poll
        return f"G7 <= {format_duration(stream_latency_ns)}+{a} and no G8 misses while a stream was open, else {poll}"

    def line(self, allowance_ns: int, stream_latency_ns: int) -> str:
        """What the report's first line appends to its verdict."""
        return (f"judged as {'streaming' if self.mode == 'stream' else 'polling'} ({self.mode_why}) every "
                f"{format_duration(self.poll_interval_ns)} ({self.poll_why}): "
                f"{self.bounds(allowance_ns, stream_latency_ns)}")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "mode_why": self.mode_why, "poll_interval_ns": self.poll_interval_ns,
                "poll_interval_why": self.poll_why}


def split_output(lines: Sequence[str]) -> tuple[list[str], list[dict[str, Any]], dict[str, Any] | None]:
    """The sensor's stdout split three ways: the lines for the lifecycle checker (``process.exec``
    lines blanked, so the checker's line numbers stay the file's), the ``process.exec`` objects
    (G10's to judge), and the ``info`` of the first ``sensor.connected`` event (or None)."""
    kept: list[str] = []
    execs: list[dict[str, Any]] = []
    connected: dict[str, Any] | None = None
    for line in lines:
        obj: Any = None
        if '"process.exec"' in line or (connected is None and '"sensor.connected"' in line):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
        if isinstance(obj, dict) and obj.get("type") == "process.exec":
            execs.append(obj)
            kept.append("\n")
            continue
        if connected is None and isinstance(obj, dict) and obj.get("type") == "sensor.connected":
            connected = obj.get("info") if isinstance(obj.get("info"), dict) else {}
        kept.append(line)
    return kept, execs, connected


def judged_as(opts: Options, info: dict[str, Any] | None, truth: Sequence[TruthRecord]) -> Judged:
    """Which mode and poll interval to hold the sensor to, and why (pure; docs/verify.md)."""
    said = "sensor.connected says"
    if opts.mode is not None:
        mode, mode_why = opts.mode, f"--mode {opts.mode} given"
    elif info is not None and info.get("mode") in ("poll", "stream"):
        mode, mode_why = info["mode"], f"{said} mode: {info['mode']}"
    elif info is not None and info.get("events") in ("auto", "on", "off"):
        mode = "poll" if info["events"] == "off" else "stream"
        mode_why = f"{said} events: {info['events']}"
    elif any(isinstance(r, RpcServed) and r.method == STREAM_METHOD and (r.code or "").upper() not in NEVER_OPEN
             for r in truth):
        mode, mode_why = "stream", "it opened GetContainerEvents; sensor.connected names no mode"
    else:
        mode, mode_why = "poll", "it opened no event stream; sensor.connected names no mode"
    pi = info.get("poll_interval_ns") if info is not None else None
    if opts.poll_interval_ns is not None:
        poll, poll_why = opts.poll_interval_ns, "--poll-interval given"
    elif isinstance(pi, int) and not isinstance(pi, bool) and pi > 0:
        poll, poll_why = pi, f"{said} so"
    else:
        poll, poll_why = DEFAULT_POLL_INTERVAL_NS, "the default; sensor.connected names none"
    return Judged(mode, mode_why, poll, poll_why)


def resolve_command(command: Sequence[str]) -> list[str]:
    """``command`` with its program found on PATH; ``VerifyUsageError`` if it cannot be run."""
    if not command:
        raise VerifyUsageError("no command to verify (accepted: fakecri verify SCENARIO -- COMMAND [ARGS...])")
    prog = command[0]
    if os.sep in prog:
        if not os.path.isfile(prog):
            raise VerifyUsageError(f"command not found: {prog}")
        if not os.access(prog, os.X_OK):
            raise VerifyUsageError(f"command is not executable: {prog}")
        return list(command)
    found = shutil.which(prog)
    if found is None:
        raise VerifyUsageError(f"command not found: {prog} (not on PATH)")
    return [found, *command[1:]]


def substitute(command: Sequence[str], addr: str, socket: str, poll_interval_ns: int) -> list[str]:
    """Replace ``{addr}``, ``{socket}`` and ``{poll_interval}`` in every argument (nothing else)."""
    values = {"{addr}": addr, "{socket}": socket, "{poll_interval}": format_duration(poll_interval_ns)}
    out = []
    for arg in command:
        for key, value in values.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


class _Output:
    """One run's stdout and stderr, each written straight to a file of the run's own.

    Files, not pipes: a sensor must never wait for this process to read its output. Through a
    pipe it did -- the fake runtime serves from this process, and under churn a reader thread that
    waits for the GIL left a 60,000-event run's writes blocked, its polls late (G7)."""

    def __init__(self, workdir: str, n: int) -> None:
        self.paths = (os.path.join(workdir, f"run-{n}.stdout"), os.path.join(workdir, f"run-{n}.stderr"))
        self.notes: list[str] = []  # lines this process adds after the run's stderr

    def open(self) -> tuple[IO[bytes], IO[bytes]]:
        return open(self.paths[0], "wb"), open(self.paths[1], "wb")

    def lines(self, which: int) -> list[str]:
        try:
            with open(self.paths[which], encoding="utf-8", errors="replace", newline="") as f:
                got = f.read().splitlines(keepends=True)
        except FileNotFoundError:
            got = []
        return got + (self.notes if which == 1 else [])


def _stop(proc: subprocess.Popen[Any]) -> int:
    """SIGTERM to the command's process group, SIGKILL after ``KILL_AFTER_S``; its exit status.
    Whatever is left of the group once the command itself has ended is killed (no strays)."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
    code = proc.wait()
    _signal_group(proc, signal.SIGKILL)
    return code


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # its own session: e.g. `go run` and the binary it built
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.send_signal(sig)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run(opts: Options, out: IO[str] | None = None, err: IO[str] | None = None) -> Outcome:
    """Verify ``opts.command`` against ``opts.scenario``; prints to ``out`` (report) and ``err``
    (progress, problems). Raises ``VerifyUsageError`` for usage errors."""
    from fakecri.harness import Harness, bundled_path, tune_for_timing
    from fakecri.scenario import ScenarioError, load

    out = out or sys.stdout
    err = err or sys.stderr
    if opts.speed <= 0:
        raise VerifyUsageError(f"--speed must be a number > 0, not {opts.speed:g}")
    path = opts.scenario
    if not os.path.exists(path) and os.sep not in path and not path.endswith((".yaml", ".yml")):
        try:
            path = str(bundled_path(path))
        except KeyError as e:
            raise VerifyUsageError(str(e.args[0])) from None
    try:
        scenario = load(path)
    except ScenarioError as e:
        raise VerifyUsageError(str(e)) from None
    except OSError as e:
        raise VerifyUsageError(f"{path}: cannot read: {e.strerror or e}") from None
    command = resolve_command(opts.command)
    if opts.report_path:
        where = os.path.dirname(os.path.abspath(opts.report_path))
        if not os.path.isdir(where) or not os.access(where, os.W_OK) or os.path.isdir(opts.report_path):
            raise VerifyUsageError(f"--report {opts.report_path}: cannot write there (accepted: a file in an "
                                   "existing, writable directory)")

    tmp = tempfile.mkdtemp(prefix="fakecri-verify-", dir="/tmp" if os.path.isdir("/tmp") else None)
    try:
        try:
            h = Harness(scenario, socket=os.path.join(tmp, "cri.sock"), clock="real", speed=opts.speed)
        except ValueError as e:
            raise VerifyUsageError(str(e)) from None
        viewed = h.first_view()
        try:
            h.start(hold=True)
        except OSError as e:
            raise VerifyUsageError(f"cannot serve on {h.socket}: {e.strerror or e}") from None
        if opts.tune:  # this process serves the runtime: the sensor's RPC times are its answers' times
            tune_for_timing()
        argv = substitute(command, h.addr, h.socket, opts.nominal_poll_interval_ns)
        env = dict(os.environ, CRI_ADDR=h.addr)
        print(f"fakecri verify: serving scenario {h.scenario.name} as {h.flavor.name} on {h.addr}", file=err)
        print(f"fakecri verify: starting {' '.join(argv)}", file=err, flush=True)
        try:
            runs = _Runs(argv, env, tmp)
        except OSError as e:
            h.stop()
            raise VerifyUsageError(f"cannot start {command[0]}: {e.strerror or e}") from None
        problem: str | None = None
        try:
            problem = _drive(h, runs, viewed, opts, err)
            end_ns = h.clock.now_ns()
        finally:
            code = runs.stop()
            h.stop()
        truth = h.truth.records()
        stdout, stderr = runs.stdout(), runs.stderr()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines, execs, info = split_output(stdout)
    events, failures = load_events_jsonl(lines)
    tail = [line.rstrip("\n") for line in stderr[-STDERR_TAIL:]]
    judged = judged_as(opts, info, truth)
    params = CheckParams(poll_interval_ns=judged.poll_interval_ns, mode=judged.mode,  # type: ignore[arg-type]
                         latency_allowance_ns=opts.allowance_ns, end_ns=end_ns,
                         sensor_restarts=tuple(runs.restarts))
    report: Report | None = None
    unprinted: OutputError | None = None
    if problem is None:
        # process.exec lines: G10 judges them against the truth's process records (when there are any)
        report = check(truth, events, params, failures, execs=execs or None)
        try:
            out.write(_first_line_says(report.render(), judged.line(opts.allowance_ns, params.stream_latency_ns),
                                       len(execs)))
            out.flush()
        except (OSError, OutputError) as e:  # said after --report is written: the verdict is not lost
            unprinted = e if isinstance(e, OutputError) else OutputError(stream_name(out), e, what="the report")
            unprinted.what = "the report"
    outcome = Outcome(0 if problem is None and report is not None and report.ok else 1, report, problem, code,
                      tail, len(events) + len(failures), judged, execs)
    if outcome.exit_code:
        if problem is not None:
            print(f"fakecri verify: FAIL: {problem}", file=err)
        if tail:
            print(f"fakecri verify: last {len(tail)} line(s) of the command's stderr ({_describe_exit(code)}):",
                  file=err)
            for line in tail:
                print(f"  | {line}", file=err)
    if opts.report_path:
        _write_report(opts, outcome, argv)
    if unprinted is not None:
        if unprinted.closed:
            raise ReportNotPrinted(outcome.exit_code)
        raise unprinted
    return outcome


def _first_line_says(text: str, judged: str, execs: int) -> str:
    """The rendered report with how the sensor was judged on its first line (after the verdict),
    and a note on the ``process.exec`` lines set aside."""
    first, _, rest = text.partition("\n")
    out = f"{first}; {judged}\n{rest}".rstrip("\n") + "\n"
    if execs:
        out += f"note: {execs} process.exec line(s): judged by G10, not by the lifecycle guarantees\n"
    return out


class _Runs:
    """The command's runs: one, plus one per ``--restart-sensor-at`` (each started with the same
    arguments after the previous one was SIGKILLed). Their outputs are concatenated in run order;
    ``restarts`` holds ``(killed_ns, started_ns)`` per restart, on the harness's clock."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: str) -> None:
        self.argv, self.env, self.workdir = argv, env, workdir
        self.runs: list[tuple[subprocess.Popen[bytes], _Output]] = []
        self.restarts: list[tuple[int, int]] = []
        self._start()

    def _start(self) -> None:
        output = _Output(self.workdir, len(self.runs))
        out, errs = output.open()
        try:
            proc = subprocess.Popen(self.argv, stdout=out, stderr=errs, stdin=subprocess.DEVNULL, env=self.env,
                                    start_new_session=True)
        finally:
            out.close()
            errs.close()
        self.runs.append((proc, output))

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.runs[-1][0]

    def restart(self, now_ns: Any) -> None:
        """SIGKILL the running command's group and start it again."""
        proc, output = self.runs[-1]
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        killed = now_ns()
        output.notes.append(f"(fakecri verify: killed with SIGKILL; {_describe_exit(proc.returncode)}; "
                            "started again)\n")
        self._start()
        self.restarts.append((killed, now_ns()))

    def stop(self) -> int:
        return _stop(self.proc)

    def stdout(self) -> list[str]:
        return [line for _, output in self.runs for line in output.lines(0)]

    def stderr(self) -> list[str]:
        return [line for _, output in self.runs for line in output.lines(1)]


def _drive(h: Any, runs: _Runs, viewed: threading.Event, opts: Options, err: IO[str]) -> str | None:
    """Hold the timeline until the sensor's first view, run the scenario (restarting the command at
    ``opts.restart_at_ns``), wait the grace period. Returns a problem that makes guarantee checking
    pointless, or None."""
    proc = runs.proc
    deadline = time.monotonic() + opts.start_timeout_ns / 1e9
    while not viewed.wait(0.05):
        if proc.poll() is not None:
            return (f"the command ended ({_describe_exit(proc.returncode)}) before it listed the runtime: "
                    "nothing to verify")
        if time.monotonic() > deadline:
            return (f"the command did not list the runtime within {format_duration(opts.start_timeout_ns)} "
                    f"(does it take the socket address from {{addr}} or $CRI_ADDR?)")
    h.release()
    started = time.monotonic()
    print(f"fakecri verify: the sensor listed the runtime; scenario started (runs "
          f"{format_duration(round(h.end_ns / opts.speed))}, then {format_duration(opts.effective_grace_ns)} grace)",
          file=err, flush=True)
    for at in sorted(opts.restart_at_ns):
        time.sleep(max(0.0, started + at / 1e9 / opts.speed - time.monotonic()))
        runs.restart(h.clock.now_ns)
        print(f"fakecri verify: killed the command with SIGKILL at {format_duration(at)} and started it again",
              file=err, flush=True)
    proc = runs.proc
    h.wait_end(None)
    time.sleep(opts.effective_grace_ns / 1e9)
    if proc.poll() is not None:
        print(f"fakecri verify: note: the command ended early ({_describe_exit(proc.returncode)})", file=err)
    return None


def _write_report(opts: Options, outcome: Outcome, argv: list[str]) -> None:
    doc: dict[str, Any] = {
        "verify": {
            "scenario": opts.scenario,
            "command": argv,
            "command_exit": outcome.command_exit,
            "problem": outcome.problem,
            "exit_code": outcome.exit_code,
            "stderr_tail": outcome.stderr_tail,
            "grace_ns": opts.effective_grace_ns,
            "speed": opts.speed,
            "judged": outcome.judged.to_dict() if outcome.judged is not None else None,
            "process_exec_lines": len(outcome.execs),
        }
    }
    if outcome.report is not None:
        doc.update(outcome.report.to_dict())
    else:
        doc.update({"ok": False, "failed": []})
    try:
        f = open(opts.report_path, "w", encoding="utf-8")  # type: ignore[arg-type]  # noqa: SIM115
    except OSError as e:
        raise VerifyUsageError(f"--report {opts.report_path}: cannot write: {e.strerror or e}") from None
    try:
        with f:  # opening worked: a failure now is the disk's (ENOSPC, EIO), exit 1
            json.dump(doc, f, indent=2)
            f.write("\n")
    except OSError as e:
        raise OutputError(str(opts.report_path), e, what="the report") from None
