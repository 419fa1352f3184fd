"""The emitter: assigns ``seq`` and writes events as JSON lines, one flush per batch; and the output
failure rules every command of both CLIs shares.

Output failures (docs/install.md, "Exit codes"):

* a closed output (``EPIPE``: ``crisensor run | head -1``) ends the command quietly with exit 0, as
  a reader going away is how a pipeline says "enough";
* any other write error (``ENOSPC``, ``EIO``, ...) is one line naming the output and the errno --
  and, for the sensor, how many events were not written -- and exit 1.

Either way stdout is pointed at ``/dev/null`` afterwards, so the interpreter's final flush of what
is still buffered neither fails again nor prints "Exception ignored ... BrokenPipeError".
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

from sensor.events import Event

STDOUT = "stdout"
#: Lines handed to the output per write: one system call for many, and a bounded string in memory
#: (a first snapshot of 10,000 containers writes 20,000 lines in one batch).
WRITE_LINES = 256


class OutputError(Exception):
    """Writing to an output failed. ``str()`` is the one line users see (after the program name).

    ``unwritten``: how many items (``unit``, default ``what``) did not reach the output, when the
    writer counts them.
    """

    def __init__(self, name: str, error: OSError, *, unwritten: int | None = None, what: str = "events",
                 unit: str | None = None) -> None:
        self.name = name
        self.error = error
        self.unwritten = unwritten
        self.what = what
        self.unit = unit or what
        super().__init__(self.line())

    @property
    def closed(self) -> bool:
        """The reader went away (EPIPE): a quiet end, not a failure."""
        return self.error.errno == errno.EPIPE

    def line(self) -> str:
        code = self.error.errno
        why = f"[Errno {code}] {self.error.strerror or os.strerror(code)}" if code is not None else str(self.error)
        counted = f"; {self.unwritten} {self.unit} not written" if self.unwritten is not None else ""
        return f"cannot write {self.what} to {self.name}: {why}{counted}"

    def __str__(self) -> str:
        return self.line()  # the count may have grown since the error was raised


def stream_name(out: Any) -> str:
    """The name an error line gives an output: its path, or ``stdout``."""
    name = getattr(out, "name", None)
    if out is sys.stdout or out is sys.__stdout__ or name == "<stdout>":
        return STDOUT
    return name if isinstance(name, str) and name else "output"


def _os_error(err: BaseException) -> OSError:
    return err.error if isinstance(err, OutputError) else err  # type: ignore[return-value]


class Record:
    """A non-lifecycle output object (a ``process.exec``) numbered in the same ``seq`` sequence as
    the events: ``body`` is its JSON object, ``seq`` is written right after ``v``."""

    __slots__ = ("body", "seq")

    def __init__(self, body: dict[str, Any], seq: int = 0) -> None:
        self.body = body
        self.seq = seq

    def with_seq(self, seq: int) -> Record:
        return Record(self.body, seq)

    def numbered(self, seq: int) -> Record:
        return self.with_seq(seq)

    def to_json(self) -> str:
        body = self.body
        return json.dumps({"v": body.get("v"), "seq": self.seq, **{k: v for k, v in body.items() if k != "v"}},
                          separators=(",", ":"))


class Emitter:
    """Numbers events (strictly increasing ``seq`` per run) and hands them to the sinks.

    ``out`` receives JSON lines; ``listeners`` receive the numbered ``Event`` objects one by one
    (tests), ``batch_listeners`` each call's numbered events at once, in order (the analytics stage:
    one lock and one clock reading per batch instead of per event, which a churning node's
    thousand events per poll notice). Thread-safe: the poll loop and the event stream both emit;
    both kinds of listener are called under the emitter's lock, so they see events in seq order.

    A write error never escapes ``emit`` (it runs in the poll loop and in the stream reader thread):
    the first one is kept in ``failure``, ``on_failure`` is called once (the CLI stops the sensor),
    and from then on events are still numbered and given to listeners but counted in ``unwritten``
    (``on_unwritten`` feeds the metric). Events written since the last successful flush count as
    unwritten too: nobody can tell whether they reached the output. A batch goes out in writes of
    up to ``WRITE_LINES`` whole lines (one system call each, not one per line) and one flush, so the
    lines of a write that fails count as unwritten even where a prefix of it landed. ``close`` ends
    all writing.
    """

    #: Whether a poll's events must come in one batch, after the engine committed the list: the
    #: poller then holds what ``DiffEngine.finish_early`` gave until ``finish`` (a ``PersistingEmitter``
    #: journals each batch with the engine's committed records). False: they are written at once.
    whole_polls = False

    def __init__(self, out: IO[str] | None = None, *, name: str | None = None,
                 on_failure: Callable[[OutputError], None] | None = None,
                 on_unwritten: Callable[[int], None] | None = None) -> None:
        self.out = out
        self.name = name or stream_name(out)
        self.seq = 0
        self.listeners: list[Callable[[Event], None]] = []
        self.batch_listeners: list[Callable[[list[Event]], object]] = []
        self.failure: OutputError | None = None
        self.unwritten = 0
        self.on_failure = on_failure
        self.on_unwritten = on_unwritten
        self._lock = threading.Lock()
        self._closing = False

    def emit_records(self, records: Iterable[dict[str, Any]]) -> None:
        """Number and write non-lifecycle objects (``Record``); listeners do not see them."""
        self.emit([Record(r) for r in records], notify=False)  # type: ignore[list-item]

    def emit(self, events: Iterable[Event], *, notify: bool = True) -> list[Event]:
        done: list[Event] = []
        with self._lock:
            if self._closing:
                return done
            failure, out = self.failure, self.out
            lines: list[str] = []  # encoded, not yet handed to the output
            handed = 0  # events of this batch handed to the output
            safe = 0  # ... and known to have reached it (flushed)
            line_buffered = getattr(out, "line_buffering", False)
            for e in events:
                self.seq += 1
                numbered = e.numbered(self.seq)
                done.append(numbered)
                if out is not None and self.failure is None:
                    lines.append(numbered.to_json())
                    if len(lines) == WRITE_LINES:
                        if self._write(out, lines, flush=False):
                            handed += WRITE_LINES
                            safe = handed if line_buffered else safe  # a line-buffered write flushes
                        lines = []
                if notify:
                    for listener in self.listeners:
                        listener(numbered)
                if self._closing:  # close() waits for the lock: stop writing a long batch at once
                    break
            if out is not None and self.failure is None and self._write(out, lines, flush=True):
                safe = handed + len(lines)
            if out is not None and self.failure is not None:
                self._lost(len(done) - safe)  # not written, or not known to be
            if notify and done:
                for batch_listener in self.batch_listeners:
                    batch_listener(done)
        if failure is None and self.failure is not None and self.on_failure is not None:
            self.on_failure(self.failure)
        return done

    def _write(self, out: IO[str], lines: list[str], *, flush: bool) -> bool:
        """Hand ``lines`` to ``out`` as one string (one system call for many lines, where each line
        was one) and, with ``flush``, flush. ``False`` when that failed: the failure is kept in
        ``failure`` and ends all writing."""
        try:
            if lines:
                out.write("\n".join(lines) + "\n")
            if flush:
                out.flush()
        except (OSError, OutputError) as err:
            self._fail(err)
            return False
        return True

    def _fail(self, err: BaseException) -> OutputError:
        self.failure = OutputError(self.name, _os_error(err), unwritten=0)
        return self.failure

    def _lost(self, n: int) -> None:
        self.unwritten += n
        if self.failure is not None:
            self.failure.unwritten = self.unwritten
        if self.on_unwritten is not None:
            self.on_unwritten(n)

    def close(self, timeout: float = 1.0) -> bool:
        """Stop writing: a batch being written ends after its current event, later ``emit`` calls
        write nothing. Returns False when the lock was not free within ``timeout`` (a write blocked
        on a full pipe): the caller must not touch the output then."""
        self._closing = True
        if not self._lock.acquire(timeout=timeout):
            return False
        self._lock.release()
        return True


class GuardedOutput:
    """A text stream whose failed writes and flushes raise ``OutputError`` naming the output, so a
    CLI can tell its output failing from any other ``OSError``. Everything else is the inner stream's."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self.output_name = name

    def _error(self, e: OSError) -> OutputError:
        return OutputError(self.output_name, e, what="output")

    def write(self, text: str) -> int:
        try:
            return int(self._inner.write(text))
        except OSError as e:
            raise self._error(e) from None

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._inner.flush()
        except OSError as e:
            raise self._error(e) from None

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null: what is still buffered for stdout (and the final flush
    at exit) goes nowhere instead of failing again."""
    with suppress(OSError, ValueError, AttributeError):
        fd = sys.__stdout__.fileno()  # type: ignore[union-attr]
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


def output_failed(prog: str, err: OutputError) -> int:
    """The exit code for a failed output, after saying so (one line on stderr) unless it was closed."""
    if err.name == STDOUT:
        silence_stdout()
    if err.closed:
        return 0
    with suppress(OSError, ValueError):
        print(f"{prog}: {err}", file=sys.stderr, flush=True)
    return 1


@contextmanager
def guarded_stdout() -> Iterator[None]:
    """Within the block, ``sys.stdout`` raises ``OutputError`` when writing to it fails."""
    inner = sys.stdout
    sys.stdout = GuardedOutput(inner, STDOUT)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = inner


def run_guarded(prog: str, body: Callable[[], int]) -> int:
    """Run a CLI's body under the output failure rules (module docstring); stdout is flushed inside,
    so a failure of the last buffered lines is caught too. Returns the exit code."""
    try:
        with guarded_stdout():
            code = body()
            sys.stdout.flush()
        return code
    except OutputError as e:
        return output_failed(prog, e)
