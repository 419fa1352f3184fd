"""Config files that attack the loader: bombs through the real CLI, and fuzzing of the loaders.

Each bomb is refused by ``crisensor run`` (as ``--config`` and as ``--analytics-config``) with exit
2, one stderr line naming the file, no traceback, and within a generous time bound (the issue asks
for "within a second"; the bound is 5 s for a loaded CI machine, the measured time is printed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from sensor.config import ConfigError, SensorConfig, load_config
from sensor.duration import MAX_TEXT, DurationError, parse_duration

BOUND_S = 5.0


def alias_bomb() -> str:
    """Nine levels of anchors, each level aliasing the one below nine times (9**9 leaves when expanded)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BOMBS: dict[str, tuple[str, str]] = {
    # name: (file content or a special kind, what the one line must say)
    "alias": (alias_bomb(), "alias"),
    "deep_flow": ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 32 levels"),
    "deep_block": ("".join(" " * i + f"k{i}:\n" for i in range(200)), "nested more than 32 levels"),
    "duration_5000_digits": ("", "too long (5002 characters; at most 64)"),
    "big_2mib": ("# padding\n" * (2 * 1024 * 1024 // 10 + 1), "more than 1 MiB"),
    "dev_zero": ("/dev/zero", "is a character device, not a regular file"),
    "fifo": ("", "is a FIFO (named pipe), not a regular file"),
}


def make_bomb(tmp_path: Path, name: str, analytics: bool) -> str:
    content, _ = BOMBS[name]
    if name == "dev_zero":
        return "/dev/zero"
    path = tmp_path / f"{name}.yaml"
    if name == "fifo":
        os.mkfifo(path)
    elif name == "duration_5000_digits":
        value = "9" * 5000 + "ms"
        path.write_text(f"event_reorder_window: {value}\n" if analytics else f"crisensor:\n  poll_interval: {value}\n")
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize("analytics", [False, True], ids=["config", "analytics-config"])
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_cli_refuses_bomb_in_one_line(tmp_path: Path, name: str, analytics: bool) -> None:
    path = make_bomb(tmp_path, name, analytics)
    args = ["--analytics-config", path] if analytics else ["--config", path]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sensor.cli", "run", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    print(f"{name} ({'analytics' if analytics else 'config'}): exit {proc.returncode} in {took:.2f} s: {proc.stderr!r}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert path in lines[0] and BOMBS[name][1] in lines[0]
    assert took < BOUND_S


# ---- fuzzing the loaders -----------------------------------------------------------------------------


def _load(tmp_path: Path, sensor: str | None = None, analytics: str | None = None) -> SensorConfig | ConfigError:
    paths = []
    for name, text in (("s.yaml", sensor), ("a.yaml", analytics)):
        if text is None:
            paths.append(str(tmp_path / "absent" / name))
            continue
        p = tmp_path / name
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        paths.append(str(p))
    try:
        return load_config(paths[0] if sensor is not None else None, paths[1] if analytics is not None else None,
                           {}, {})
    except ConfigError as err:
        text = str(err)
        assert "\n" not in text and text.startswith(err.file)
        return err


_KEYS = st.sampled_from(["crisensor", "enabled", "addr", "poll_interval", "handshake", "events", "max_recv_bytes",
                         "rpc_timeout", "resync_interval", "event_reorder_window", "crisensor.poll_interval",
                         "crisenser", "other"])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                     st.floats(allow_nan=False), st.text(max_size=20))
_VALUES = st.one_of(_SCALARS, st.sampled_from(["250ms", "1h", "0", "1.5s", "unix:///x.sock", "auto", "off", "9" * 70,
                                               "0x" + "f" * 50, "2001-02-30", "1e999"]))
_CONFIG_DOCS = st.recursive(_VALUES, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_KEYS, kids,
                                                                                               max_size=4),
                            max_leaves=20)
_YAMLISH = st.text(alphabet=st.sampled_from([*list("ab: -[]{},&*!|>'\"#\n\t0129.x%@`\\"), "\x00", "\ufeff", "é"]),
                   max_size=120)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@given(text=_YAMLISH)
@example(text="a: &x 1\nb: *x\n")
@example(text="\x00")
@example(text="[" * 40)
@example(text="crisensor: {max_recv_bytes: 0x" + "f" * 40 + "}")
@example(text="crisensor:\n  poll_interval: [1, 2]\n")
def test_yamlish_text_gives_a_config_or_one_error(fuzz_dir: Path, text: str) -> None:
    for sensor, analytics in ((text, None), (None, text)):
        got = _load(fuzz_dir, sensor, analytics)
        assert isinstance(got, SensorConfig | ConfigError)


@given(doc=_CONFIG_DOCS)
@example(doc={"crisensor": {"max_recv_bytes": 2**31}})
@example(doc={"crisensor": {"poll_interval": 10**5000}})
def test_structured_documents_give_a_config_or_one_error(fuzz_dir: Path, doc: object) -> None:
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except ValueError:  # an int too long to print: write the digits ourselves
        text = "crisensor:\n  poll_interval: " + "9" * 5000 + "\n"
    for sensor, analytics in ((text, None), (None, text)):
        got = _load(fuzz_dir, sensor, analytics)
        assert isinstance(got, SensorConfig | ConfigError)


@given(st.text(max_size=200))
@example("9" * 5000 + "s")
@example("." * 100)
@example("1" * 64 + "h")
def test_any_string_is_a_duration_or_a_duration_error(text: str) -> None:
    try:
        ns = parse_duration(text)
    except DurationError as err:
        assert "\n" not in str(err) and err.text == text
        assert len(str(err)) < 400
    else:
        assert len(text) <= MAX_TEXT
        assert -(2**63) <= ns < 2**63
