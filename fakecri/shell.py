"""The process interpreter: what a container's command would do, worked out without running it.

Theory of operation
-------------------
* ``interpret(argv, fs, env)`` is pure and deterministic: it takes a command line (the CRI
  ``command`` + ``args``, or an ExecSync ``cmd``), the container's emulated filesystem and
  environment, and hands back a :class:`Run` -- every write to stdout/stderr with its offset
  in ns from the process start, the exit code and the exit offset. Nothing sleeps: ``sleep 1``
  just moves the interpreter's own offset on by 1 s, and the caller (the runtime model) turns
  offsets into instants on its injected clock.
* The subset is what tests actually run, interpreted the way busybox ``sh`` does (the image
  real-runtime tests use): ``sh -c SCRIPT [ARG0 ARGS...]`` (also ``-e``), and the exec form
  ``CMD ARGS...``. Scripts may use ``;``, newlines, ``&&``, ``||``, ``!``, ``$?``, ``$0..$9``,
  ``$#``, ``$NAME``/``${NAME}``, quotes and backslashes, ``NAME=value`` assignments and the
  redirections ``>FILE``, ``>>FILE``, ``>&2``, ``1>&2``, ``2>&1``, ``2>FILE``, ``2>/dev/null``.
  Commands: ``echo`` (``-n``, ``-e``), ``printf`` (``%s %d %i %x %c %%``, escapes), ``sleep``
  (busybox suffixes ``s m h d``, ``infinity``), ``exit [N]``, ``true``, ``false``, ``:``,
  ``cat FILE...``, ``exec CMD``, ``hostname``, and the long runners ``sleep infinity``, ``top``,
  ``tail -f``, ``pause``, ``cat`` on an open stdin.
* A long runner ends the run with ``exit_code=None``: the process runs until it is stopped.
* Anything else -- an unknown command, a pipe, ``&``, a loop, a command substitution -- makes
  the whole command *uninterpretable*: ``Run.interpreted`` is False and ``Run.why`` says which
  construct, and the caller keeps the old behaviour (the process runs until stopped). The
  interpreter never guesses: a script either runs exactly as busybox would or not at all.
* Errors are busybox's words: ``sh: exit: Illegal number: x``, ``cat: can't open 'F': No such
  file or directory``, ``sleep: invalid number 'x'`` (checked against the real busybox).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

NS = 1_000_000_000
#: What the interpreter calls a shell (``bash`` is read as busybox ``sh``: the subset is the same).
SHELLS = frozenset({"sh", "ash", "bash", "dash"})
#: Long runners: programs that run until they are stopped, printing nothing we model.
LONG_RUNNERS = frozenset({"top", "pause", "/pause"})
#: Where ``/bin/echo`` and friends live: a command named by a path in these is the builtin.
BIN_DIRS = frozenset({"/bin", "/usr/bin", "/sbin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"})
_SLEEP_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: Sleeps adding up to more than this (~30 years) never end within an int64-ns clock: the process runs
#: until stopped.
FOREVER_NS = 10**18


class Unsupported(Exception):
    """The command uses something outside the documented subset (``str(e)`` says what)."""


class UnknownCommand(Unsupported):
    """A command the interpreter does not know (it may exist in the real image, or not)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the command {name!r}")
        self.name = name


@dataclass(frozen=True)
class Write:
    """One write of ``data`` to ``stream`` (``stdout``/``stderr``), ``offset_ns`` after the start."""

    offset_ns: int
    stream: str
    data: bytes


@dataclass(frozen=True)
class Run:
    """What a process does. ``exit_code``/``exit_offset_ns`` are None for a process that runs until
    stopped (a long runner, or an uninterpretable command: then ``interpreted`` is False)."""

    writes: tuple[Write, ...] = ()
    exit_code: int | None = None
    exit_offset_ns: int | None = None
    interpreted: bool = True
    why: str = ""
    #: Uninterpretable because the program itself is unknown (exec form): its name.
    unknown_command: str = ""

    @property
    def runs_forever(self) -> bool:
        return self.exit_code is None

    def output(self, stream: str) -> bytes:
        """Everything written to ``stream``, in order (what ExecSync answers)."""
        return b"".join(w.data for w in self.writes if w.stream == stream)


@dataclass
class FileSystem:
    """A container's emulated files: a writable layer over read-only base files, plus host paths
    visible through bind mounts (``mounts``: container path -> host path, read through ``host``)."""

    files: MutableMapping[str, bytes] = field(default_factory=dict)
    mounts: Mapping[str, str] = field(default_factory=dict)
    host: object = None  # a callable host_path -> bytes | None, or None for "no host access"

    def read(self, path: str) -> bytes | None:
        path = posixpath.normpath(path if path.startswith("/") else "/" + path)
        if path in self.files:
            return self.files[path]
        for dest, src in self.mounts.items():
            if self.host is not None and (path == dest or path.startswith(dest.rstrip("/") + "/")):
                return self.host(src + path[len(dest.rstrip("/")):])  # type: ignore[operator]
        return None

    def write(self, path: str, data: bytes, append: bool) -> None:
        path = posixpath.normpath(path if path.startswith("/") else "/" + path)
        if path == "/dev/null":
            return
        self.files[path] = (self.files.get(path, b"") if append else b"") + data


# --------------------------------------------------------------------------------- parsing

_OPERATORS = ("&&", "||", ";;", ";", "&", "|", "\n", "(", ")")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_KEYWORDS = frozenset({"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
                       "function", "{", "}", "[[", "]]", "select"})


@dataclass(frozen=True)
class Word:
    """A shell word: parts that are literal text or ``$name`` references, expanded when run."""

    parts: tuple[tuple[str, str], ...]  # ("lit", text) or ("var", name)
    quoted: bool = False

    def literal(self) -> str | None:
        """The word's text if it has no expansions."""
        if all(kind == "lit" for kind, _ in self.parts):
            return "".join(t for _, t in self.parts)
        return None


@dataclass(frozen=True)
class Redirect:
    fd: int  # 1 or 2
    op: str  # ">", ">>", ">&"
    target: Word


@dataclass(frozen=True)
class Command:
    words: tuple[Word, ...]
    redirects: tuple[Redirect, ...] = ()
    negate: bool = False


#: An and-or list: the first command, then (operator, command) pairs with operator && or ||.
AndOr = tuple[Command, tuple[tuple[str, Command], ...]]


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def tokens(self) -> list[object]:
        """Words, operator strings and ``Redirect`` placeholders (``("redir", fd, op)``)."""
        out: list[object] = []
        s = self.s
        while True:
            while self.i < len(s) and s[self.i] in " \t":
                self.i += 1
            if self.i >= len(s):
                return out
            ch = s[self.i]
            if ch == "#":
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
                continue
            if ch == "\\" and s.startswith("\\\n", self.i):
                self.i += 2
                continue
            op = next((o for o in _OPERATORS if s.startswith(o, self.i)), None)
            if op is not None:
                self.i += len(op)
                out.append(op)
                continue
            if ch in "<>" or (ch in "12" and s.startswith((">", "<"), self.i + 1)):
                out.append(self._redirect())
                continue
            out.append(self._word())

    def _redirect(self) -> tuple[str, int, str]:
        s = self.s
        fd = 1
        if s[self.i] in "12":
            fd = int(s[self.i])
            self.i += 1
        if s[self.i] == "<":
            raise Unsupported("input redirection (<)")
        if s.startswith(">>", self.i):
            self.i += 2
            return ("redir", fd, ">>")
        if s.startswith(">&", self.i):
            self.i += 2
            return ("redir", fd, ">&")
        if s.startswith(">|", self.i):
            self.i += 2
            return ("redir", fd, ">")
        self.i += 1
        return ("redir", fd, ">")

    def _word(self) -> Word:
        s = self.s
        parts: list[tuple[str, str]] = []
        quoted = False
        buf: list[str] = []

        def flush() -> None:
            if buf:
                parts.append(("lit", "".join(buf)))
                buf.clear()

        while self.i < len(s):
            ch = s[self.i]
            if ch in " \t\n;&|()<>":
                break
            if ch == "'":
                quoted = True
                end = s.find("'", self.i + 1)
                if end < 0:
                    raise Unsupported("an unterminated single quote")
                buf.append(s[self.i + 1:end])
                self.i = end + 1
            elif ch == '"':
                quoted = True
                self.i += 1
                while True:
                    if self.i >= len(s):
                        raise Unsupported("an unterminated double quote")
                    c = s[self.i]
                    if c == '"':
                        self.i += 1
                        break
                    if c == "\\" and self.i + 1 < len(s) and s[self.i + 1] in '$`"\\\n':
                        if s[self.i + 1] != "\n":
                            buf.append(s[self.i + 1])
                        self.i += 2
                    elif c == "$":
                        flush()
                        self._dollar(parts, buf)
                    elif c == "`":
                        raise Unsupported("command substitution (`...`)")
                    else:
                        buf.append(c)
                        self.i += 1
            elif ch == "\\":
                quoted = True
                if self.i + 1 < len(s):
                    buf.append(s[self.i + 1])
                self.i += 2
            elif ch == "$":
                flush()
                self._dollar(parts, buf)
            elif ch == "`":
                raise Unsupported("command substitution (`...`)")
            else:
                buf.append(ch)
                self.i += 1
        flush()
        return Word(tuple(parts), quoted)

    def _dollar(self, parts: list[tuple[str, str]], buf: list[str]) -> None:
        s = self.s
        j = self.i + 1
        if j >= len(s):
            buf.append("$")
            self.i = j
            return
        c = s[j]
        if c == "(":
            raise Unsupported("command substitution ($(...))" if not s.startswith("((", j) else "arithmetic ($((...)))")
        if c == "{":
            end = s.find("}", j)
            name = s[j + 1:end] if end > 0 else ""
            if not (_NAME.fullmatch(name) or name in ("?", "#", "$") or name.isdigit()):
                raise Unsupported(f"parameter expansion ${{{name}...}}" if end > 0 else "an unterminated ${")
            parts.append(("var", name))
            self.i = end + 1
            return
        if c in "?#$" or c.isdigit():
            parts.append(("var", c))
            self.i = j + 1
            return
        m = _NAME.match(s, j)
        if m is None:
            buf.append("$")
            self.i = j
            return
        parts.append(("var", m.group()))
        self.i = m.end()


def parse(script: str) -> list[AndOr]:
    """A script as a list of and-or lists; ``Unsupported`` for anything outside the subset."""
    toks = _Lexer(script).tokens()
    out: list[AndOr] = []
    i = 0

    def command() -> Command:
        nonlocal i
        negate = False
        words: list[Word] = []
        redirects: list[Redirect] = []
        while i < len(toks):
            t = toks[i]
            if isinstance(t, Word):
                if not words and not redirects and t.literal() == "!" and not t.quoted:
                    negate = not negate
                elif not words and not t.quoted and t.literal() in _KEYWORDS:
                    raise Unsupported(f"the shell keyword {t.literal()!r}")
                else:
                    words.append(t)
                i += 1
            elif isinstance(t, tuple):
                i += 1
                if i >= len(toks) or not isinstance(toks[i], Word):
                    raise Unsupported("a redirection without a target")
                redirects.append(Redirect(t[1], t[2], toks[i]))  # type: ignore[arg-type]
                i += 1
            else:
                break
        if not words and not redirects:
            raise Unsupported(f"an empty command before {toks[i]!r}" if i < len(toks) else "an empty command")
        return Command(tuple(words), tuple(redirects), negate)

    while i < len(toks):
        if toks[i] in (";", "\n"):
            i += 1
            continue
        first = command()
        rest: list[tuple[str, Command]] = []
        while i < len(toks) and toks[i] in ("&&", "||"):
            op = toks[i]
            i += 1
            while i < len(toks) and toks[i] == "\n":
                i += 1
            rest.append((op, command()))  # type: ignore[arg-type]
        if i < len(toks):
            t = toks[i]
            if t == "|":
                raise Unsupported("a pipe (|)")
            if t == "&":
                raise Unsupported("a background job (&)")
            if t in ("(", ")"):
                raise Unsupported("a subshell (...)")
            if t == ";;":
                raise Unsupported("a case clause (;;)")
            i += 1  # ; or newline
        out.append((first, tuple(rest)))
    return out


# --------------------------------------------------------------------------------- running


class _Stop(Exception):
    """The script ends here: ``exit`` (code) or a long runner (code None)."""

    def __init__(self, code: int | None) -> None:
        self.code = code


class _Runner:
    def __init__(self, fs: FileSystem, env: Mapping[str, str], positional: Sequence[str], stdin_open: bool,
                 errexit: bool) -> None:
        self.fs = fs
        self.vars = dict(env)
        self.positional = list(positional)  # $0, $1, ...
        self.stdin_open = stdin_open
        self.errexit = errexit
        self.t = 0
        self.status = 0
        self.writes: list[Write] = []

    # ---- expansion -----------------------------------------------------------------------

    def expand(self, w: Word) -> str:
        out: list[str] = []
        for kind, text in w.parts:
            if kind == "lit":
                out.append(text)
            elif text == "?":
                out.append(str(self.status))
            elif text == "#":
                out.append(str(max(0, len(self.positional) - 1)))
            elif text == "$":
                out.append("1")
            elif text.isdigit():
                n = int(text)
                out.append(self.positional[n] if n < len(self.positional) else "")
            else:
                out.append(self.vars.get(text, ""))
        return "".join(out)

    def argv(self, words: Sequence[Word]) -> list[str]:
        out: list[str] = []
        for w in words:
            text = self.expand(w)
            if w.quoted or all(k == "lit" for k, _ in w.parts):
                out.append(text)
            else:  # an unquoted expansion is split into fields (and vanishes when empty)
                out.extend(text.split())
        return out

    # ---- output --------------------------------------------------------------------------

    def emit(self, fd: int, data: bytes, routes: Mapping[int, tuple[str, str] | None]) -> None:
        if not data:
            return
        route = routes.get(fd)
        if route is None:
            self.writes.append(Write(self.t, "stdout" if fd == 1 else "stderr", data))
        elif route[0] == "fd":
            self.writes.append(Write(self.t, route[1], data))
        else:  # a file: ">" truncated it when the redirection was set up; every write appends
            self.fs.write(route[1], data, append=True)

    # ---- running -------------------------------------------------------------------------

    def run_script(self, script: list[AndOr]) -> int | None:
        try:
            for first, rest in script:
                self.status = self.run_command(first, errexit=self.errexit and not rest)
                for n, (op, cmd) in enumerate(rest):
                    if (op == "&&") == (self.status == 0):  # -e: only the list's last command counts
                        self.status = self.run_command(cmd, errexit=self.errexit and n == len(rest) - 1)
            return self.status
        except _Stop as stop:
            return stop.code

    def run_command(self, cmd: Command, errexit: bool = False) -> int:
        argv = self.argv(cmd.words)
        assigns: dict[str, str] = {}
        while argv and _ASSIGN.match(argv[0]) and cmd.words and not cmd.words[0].quoted:
            name, _, value = argv.pop(0).partition("=")
            assigns[name] = value
        routes: dict[int, tuple[str, str] | None] = {}
        for r in cmd.redirects:
            target = self.expand(r.target)
            if r.op == ">&":
                if target not in ("1", "2"):
                    raise Unsupported(f"the redirection {r.fd}>&{target}")
                routes[r.fd] = routes.get(int(target)) or ("fd", "stdout" if target == "1" else "stderr")
            else:
                if target != "/dev/null" and self.fs.read(target) is None and posixpath.dirname(target) not in (
                        "", "/", "/tmp", "/dev", "/var/tmp", "/root"):
                    raise Unsupported(f"writing to {target} (only /tmp, /root, / and /dev/null are emulated)")
                routes[r.fd] = (r.op, target)
                if r.op == ">":
                    self.fs.write(target, b"", append=False)
        if not argv:
            self.vars.update(assigns)
            return 0
        self.vars.update(assigns)
        code = self.builtin(argv, routes)
        if cmd.negate:
            code = 0 if code else 1
        if errexit and code != 0:
            raise _Stop(code)
        return code

    def builtin(self, argv: list[str], routes: Mapping[int, tuple[str, str] | None]) -> int:
        name = command_name(argv[0])
        args = argv[1:]
        if name in SHELLS:
            raise Unsupported(f"a nested shell ({argv[0]})")
        if name in ("true", ":"):
            return 0
        if name == "false":
            return 1
        if name == "echo":
            self.emit(1, echo(args), routes)
            return 0
        if name == "printf":
            if not args:
                self.emit(2, b"printf: usage: printf FORMAT [ARGUMENT...]\n", routes)
                return 1
            self.emit(1, printf(args[0], args[1:]), routes)
            return 0
        if name == "hostname" and not args:
            self.emit(1, (self.vars.get("HOSTNAME", "") + "\n").encode(), routes)
            return 0
        if name == "sleep":
            return self.sleep(args, routes)
        if name == "exit":
            if not args:
                raise _Stop(self.status)
            try:
                raise _Stop(int(args[0]) & 255)
            except ValueError:
                self.emit(2, f"sh: exit: Illegal number: {args[0]}\n".encode(), routes)
                raise _Stop(2) from None
        if name == "exec":
            if not args:
                return 0
            raise _Stop(self.builtin(args, routes))
        if name == "cat":
            return self.cat(args, routes)
        if name == "tail" and any(a in ("-f", "-F") for a in args):
            files = [a for a in args if not a.startswith("-")]
            for f in files:
                data = self.fs.read(f)
                if data is not None:
                    self.emit(1, b"".join(data.splitlines(keepends=True)[-10:]), routes)
            raise _Stop(None)
        if name in LONG_RUNNERS or argv[0] in LONG_RUNNERS:
            raise _Stop(None)
        raise UnknownCommand(argv[0])

    def sleep(self, args: list[str], routes: Mapping[int, tuple[str, str] | None]) -> int:
        if not args:
            self.emit(2, b"sleep: missing operand\n", routes)  # busybox prints its usage; close enough
            return 1
        total = 0
        for a in args:
            if a in ("infinity", "inf"):
                raise _Stop(None)
            m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", a)
            if m is None:
                self.emit(2, f"sleep: invalid number '{a}'\n".encode(), routes)
                return 1
            total += round(float(m.group(1)) * _SLEEP_UNITS[m.group(2)] * NS)
        self.t += total
        if self.t > FOREVER_NS:  # past any clock a CRI timestamp (int64 ns) can show: a long runner
            raise _Stop(None)
        return 0

    def cat(self, args: list[str], routes: Mapping[int, tuple[str, str] | None]) -> int:
        files = [a for a in args if a != "-"]
        if any(a.startswith("-") and a != "-" for a in args):
            raise Unsupported(f"cat options ({' '.join(args)})")
        if not files:
            if self.stdin_open:
                raise _Stop(None)  # reads an open stdin forever
            return 0
        code = 0
        for f in files:
            data = self.fs.read(f)
            if data is None:
                self.emit(2, f"cat: can't open '{f}': No such file or directory\n".encode(), routes)
                code = 1
            else:
                self.emit(1, data, routes)
        return code


def command_name(arg0: str) -> str:
    """``/bin/echo`` -> ``echo``; a path outside the usual bin directories stays as it is."""
    d, base = posixpath.split(arg0)
    return base if d in BIN_DIRS else arg0


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "r": "\r", "v": "\v", "e": "\x1b"}


def _unescape(text: str) -> tuple[str, bool]:
    """Backslash escapes (echo -e / printf); returns the text and whether ``\\c`` cut it short."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "c":
                return "".join(out), True
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "0":  # \0NNN: an octal byte
                m = re.match(r"0([0-7]{0,3})", text[i + 1:])
                out.append(chr(int(m.group(1) or "0", 8)) if m else "")
                i += 1 + (m.end() if m else 1)
                continue
        out.append(ch)
        i += 1
    return "".join(out), False


def echo(args: list[str]) -> bytes:
    """busybox echo: ``-n`` no newline, ``-e`` escapes, ``-E`` none; options only up front."""
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        for flag in args[0][1:]:
            if flag == "n":
                newline = False
            else:
                escapes = flag == "e"
        args = args[1:]
    text = " ".join(args)
    if escapes:
        text, cut = _unescape(text)
        if cut:
            newline = False
    return (text + ("\n" if newline else "")).encode()


_SPEC = re.compile(r"%([-+ #0]*)(\d*)(?:\.(\d+))?([sdicxXou%])")


def _convert(flags: str, width: str, prec: str | None, kind: str, arg: str) -> str:
    spec = "%" + flags + width + (f".{prec}" if prec is not None else "")
    if kind == "s":
        return (spec + "s") % arg
    if kind == "c":
        return (spec + "s") % arg[:1]
    try:
        n = int(arg or "0", 0)
    except ValueError:
        n = 0
    return (spec + {"i": "d", "u": "d"}.get(kind, kind)) % n


def printf(fmt: str, args: list[str]) -> bytes:
    """printf with ``%s %d %i %c %x %X %o %u %%`` and escapes; the format is reused while
    arguments remain, as busybox does."""
    fmt, _ = _unescape(fmt)
    out: list[str] = []
    rest = list(args)
    while True:
        used = 0
        pos = 0
        for m in _SPEC.finditer(fmt):
            out.append(fmt[pos:m.start()])
            pos = m.end()
            flags, width, prec, kind = m.groups()
            if kind == "%":
                out.append("%")
                continue
            out.append(_convert(flags, width, prec, kind, rest[used] if used < len(rest) else ""))
            used += 1
        out.append(fmt[pos:])
        if used == 0 or used >= len(rest):
            break
        rest = rest[used:]
    return "".join(out).encode()


def interpret(argv: Sequence[str], fs: FileSystem | None = None, env: Mapping[str, str] | None = None, *,
              stdin_open: bool = False) -> Run:
    """What ``argv`` does in a container with files ``fs`` and environment ``env`` (see the module
    docstring). Never raises for any input: what it cannot interpret comes back uninterpretable."""
    fs = fs if fs is not None else FileSystem()
    env = env or {}
    if not argv:
        return Run(interpreted=False, why="no command (the image's own entrypoint runs)")
    try:
        name = command_name(argv[0])
        if name in SHELLS:
            opts, i = "", 1
            while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-", "--"):
                opts += argv[i][1:]
                i += 1
            if set(opts) - {"c", "e"}:
                raise Unsupported(f"the shell options -{opts}")
            if "c" not in opts:
                if i < len(argv):
                    raise Unsupported("a shell script file")
                return Run((), None, None) if stdin_open else Run((), 0, 0)  # reads an empty stdin
            if i >= len(argv):
                return Run((Write(0, "stderr", b"sh: -c requires an argument\n"),), 2, 0)
            script = parse(argv[i])
            positional = list(argv[i + 1:]) or [argv[0]]
            runner = _Runner(fs, env, positional, stdin_open, "e" in opts)
            code = runner.run_script(script)
        else:
            runner = _Runner(fs, env, [argv[0]], stdin_open, False)
            try:
                code = runner.builtin(list(argv), {})
            except _Stop as stop:
                code = stop.code
            except UnknownCommand as e:
                return Run(interpreted=False, why=str(e), unknown_command=e.name)
    except Unsupported as e:
        return Run(interpreted=False, why=str(e))
    except RecursionError:  # pragma: no cover - a pathological script
        return Run(interpreted=False, why="a script too deeply nested")
    writes = tuple(runner.writes)
    if code is None:
        return Run(writes, None, None)
    return Run(writes, code, runner.t)
