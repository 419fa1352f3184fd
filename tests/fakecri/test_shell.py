"""The process interpreter and the CRI log splitter: literal tables (expected values written out
from what busybox sh and containerd 1.6 did here) and hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fakecri.logs import LineSplitter, LogLine, format_line, rfc3339nano
from fakecri.shell import FileSystem, Write, interpret

S = 1_000_000_000


def out(argv: list[str], **kw: object) -> tuple[bytes, bytes, int | None, int | None]:
    r = interpret(argv, FileSystem({"/etc/hostname": b"web\n"}), {"HOME": "/root", "FOO": "bar", "HOSTNAME": "web"},
                  **kw)  # type: ignore[arg-type]
    assert r.interpreted, r.why
    return r.output("stdout"), r.output("stderr"), r.exit_code, r.exit_offset_ns


@pytest.mark.parametrize(("argv", "want"), [
    (["sh", "-c", "echo hi; exit 3"], (b"hi\n", b"", 3, 0)),
    (["/bin/sh", "-c", "echo a; echo b >&2; exit 5"], (b"a\n", b"b\n", 5, 0)),
    (["sh", "-c", "exit 300"], (b"", b"", 44, 0)),
    (["sh", "-c", "exit x"], (b"", b"sh: exit: Illegal number: x\n", 2, 0)),
    (["sh", "-c", "false; echo $?"], (b"1\n", b"", 0, 0)),
    (["sh", "-c", "false && echo no || echo yes; true && echo both"], (b"yes\nboth\n", b"", 0, 0)),
    (["sh", "-c", "! true; echo $?"], (b"1\n", b"", 0, 0)),
    (["sh", "-c", "sleep 1.5; sleep 1m; exit"], (b"", b"", 0, 61_500_000_000)),
    (["sh", "-c", "echo $HOSTNAME $HOME ${FOO} $NOPE."], (b"web /root bar .\n", b"", 0, 0)),
    (["sh", "-c", "echo \"$0 $1 $#\"", "zero", "one"], (b"zero one 1\n", b"", 0, 0)),
    (["sh", "-c", "echo 'a  $FOO' \"b  $FOO\" c\\ d"], (b"a  $FOO b  bar c d\n", b"", 0, 0)),
    (["sh", "-c", "echo -n a; echo -e 'b\\tc'"], (b"ab\tc\n", b"", 0, 0)),
    (["sh", "-c", "printf '%s=%d\\n' x 1 y 2"], (b"x=1\ny=2\n", b"", 0, 0)),
    (["sh", "-c", "X=1; echo $X"], (b"1\n", b"", 0, 0)),
    (["sh", "-ec", "false; echo never"], (b"", b"", 1, 0)),
    (["sh", "-c", "cat /etc/hostname /nope"],
     (b"web\n", b"cat: can't open '/nope': No such file or directory\n", 1, 0)),
    (["sh", "-c", "echo x > /tmp/f; echo y >> /tmp/f; cat /tmp/f"], (b"x\ny\n", b"", 0, 0)),
    (["sh", "-c", "echo a > /tmp/a; echo b > /tmp/b; cat /tmp/a /tmp/b > /tmp/c; cat /tmp/c"],
     (b"a\nb\n", b"", 0, 0)),
    (["sh", "-c", "echo gone 2>&1 >/dev/null; echo err 2>/dev/null >&2"], (b"", b"", 0, 0)),
    (["sh", "-c", "sleep x"], (b"", b"sleep: invalid number 'x'\n", 1, 0)),
    (["sh", "-c", "# only a comment"], (b"", b"", 0, 0)),
    (["sh"], (b"", b"", 0, 0)),  # reads an empty stdin
    (["echo", "x"], (b"x\n", b"", 0, 0)),
    (["/bin/echo", "-n", "x"], (b"x", b"", 0, 0)),
    (["sleep", "2"], (b"", b"", 0, 2 * S)),
    (["true"], (b"", b"", 0, 0)),
    (["false"], (b"", b"", 1, 0)),
    (["sleep", "infinity"], (b"", b"", None, None)),
    (["top"], (b"", b"", None, None)),
    (["sh", "-c", "echo up; tail -f /dev/null"], (b"up\n", b"", None, None)),
    (["sh", "-c", "echo up; exec sleep infinity"], (b"up\n", b"", None, None)),
])
def test_interpreter_table(argv: list[str], want: tuple) -> None:  # type: ignore[type-arg]
    assert out(argv) == want


def test_writes_carry_their_offsets() -> None:
    r = interpret(["sh", "-c", "echo a; sleep 2; echo b >&2; sleep 1; exit 7"])
    assert r.writes == (Write(0, "stdout", b"a\n"), Write(2 * S, "stderr", b"b\n"))
    assert (r.exit_code, r.exit_offset_ns) == (7, 3 * S)


def test_cat_reads_bind_mounted_host_files() -> None:
    fs = FileSystem({}, {"/data": "/srv/x"}, lambda p: b"host:" + p.encode() if p.startswith("/srv/x/") else None)
    assert interpret(["cat", "/data/f"], fs).output("stdout") == b"host:/srv/x/f"


@pytest.mark.parametrize(("argv", "why"), [
    ([], "no command (the image's own entrypoint runs)"),
    (["nginx", "-g", "daemon off;"], "the command 'nginx'"),
    (["sh", "-c", "yes | head"], "a pipe (|)"),
    (["sh", "-c", "sleep 1 &"], "a background job (&)"),
    (["sh", "-c", "while true; do sleep 1; done"], "the shell keyword 'while'"),
    (["sh", "-c", "echo $(date)"], "command substitution ($(...))"),
    (["sh", "-c", "ls /"], "the command 'ls'"),
    (["sh", "-c", "echo 'open"], "an unterminated single quote"),
    (["sh", "script.sh"], "a shell script file"),
])
def test_uninterpretable_commands_say_why(argv: list[str], why: str) -> None:
    r = interpret(argv)
    assert (r.interpreted, r.why, r.exit_code) == (False, why, None)


_SCRIPT_CHARS = st.sampled_from([*"abc x0129;&|<>()'\"\\$?#{}-\n\t=!/*", "echo ", "exit ", "sleep ", "cat ",
                                  "printf ", "&&", "||", "$?", "2>&1"])


@given(st.lists(_SCRIPT_CHARS, max_size=40).map("".join))
@example("echo ${")
@example("printf '%d' x")
@example("exit 99999999999999999999")
def test_any_script_is_interpreted_or_refused_never_raises(script: str) -> None:
    r = interpret(["sh", "-c", script])
    again = interpret(["sh", "-c", script])
    assert r == again  # deterministic
    if r.interpreted and r.exit_code is not None:
        assert 0 <= r.exit_code <= 255 and r.exit_offset_ns is not None and r.exit_offset_ns >= 0
        assert all(0 <= w.offset_ns <= r.exit_offset_ns for w in r.writes)
    if not r.interpreted:
        assert r.why and r.exit_code is None


# ------------------------------------------------------------------------------- CRI log lines


@pytest.mark.parametrize(("t", "want"), [
    (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
    (1_700_000_000_500_000_000, "2023-11-14T22:13:20.5Z"),
    (1_700_000_000_491_498_403, "2023-11-14T22:13:20.491498403Z"),
])
def test_rfc3339nano_trims_trailing_zeros_like_go(t: int, want: str) -> None:
    assert rfc3339nano(t) == want


def test_the_recorded_containerd_log_is_reproduced() -> None:
    """``echo hi; echo -n part; sleep 0.3; printf 'a\\nb'; echo err >&2; exit 3`` under containerd
    1.6 wrote: ``stdout F hi``, ``stderr F err``, ``stdout F parta``, ``stdout P b`` (at exit)."""
    r = interpret(["sh", "-c", "echo hi; echo -n part; sleep 0.3; printf 'a\\nb'; echo err >&2; exit 3"])
    sp = LineSplitter()
    lines = [line for w in r.writes for line in sp.feed(w.offset_ns, w.stream, w.data)]
    lines += sp.close(r.exit_offset_ns or 0)
    assert [(x.stream, x.partial, x.text) for x in lines] == [
        ("stdout", False, b"hi"), ("stdout", False, b"parta"), ("stderr", False, b"err"), ("stdout", True, b"b")]
    assert format_line(LogLine(0, "stdout", False, b"hi")) == b"1970-01-01T00:00:00Z stdout F hi\n"


@given(st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]),
                          st.binary(max_size=40).map(lambda b: b.replace(b"\r", b""))), max_size=20),
       st.integers(1, 16))
def test_splitter_loses_and_invents_nothing(writes: list[tuple[str, bytes]], max_line: int) -> None:
    sp = LineSplitter(max_line)
    lines = [line for i, (s, d) in enumerate(writes) for line in sp.feed(i, s, d)] + sp.close(len(writes))
    for stream in ("stdout", "stderr"):
        sent = b"".join(d for s, d in writes if s == stream)
        got = b"".join(x.text + (b"" if x.partial else b"\n") for x in lines if x.stream == stream)
        assert got == sent
        assert all(len(x.text) <= max_line for x in lines)


@given(st.text(max_size=60), st.lists(st.text(max_size=6), max_size=3))
@example("%#5.2c%-08x%", ["", "0x1f"])
def test_any_text_as_script_format_or_arguments_never_raises(text: str, args: list[str]) -> None:
    for argv in (["printf", text, *args], ["echo", "-e", text, *args], ["sh", "-c", text, *args], [text, *args]):
        r = interpret(argv)
        assert r.interpreted or r.why


def test_a_sleep_past_any_cri_timestamp_is_a_long_runner() -> None:
    assert out(["sleep", "99999999999"]) == (b"", b"", None, None)
    assert out(["sh", "-c", "sleep 20000d; sleep 20000d; exit 1"]) == (b"", b"", None, None)
