"""sensor.duration: Go duration syntax both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.duration import MAX_NS, MIN_NS, DurationError, format_duration, parse_duration

MS = 1_000_000
S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("250ms", 250 * MS),
        ("1s", S),
        ("1m30s", 90 * S),
        ("1.5h", 5400 * S),
        ("300us", 300_000),
        ("300µs", 300_000),  # U+00B5 micro sign
        ("300μs", 300_000),  # U+03BC Greek mu
        ("10ns", 10),
        ("0", 0),
        ("-0", 0),
        ("+5s", 5 * S),
        ("-1.5s", -1500 * MS),
        (".5s", 500 * MS),
        ("1.s", S),
        ("1h2m3s4ms5us6ns", 3723 * S + 4 * MS + 5_000 + 6),
        ("1.5ns", 1),  # truncated, as Go does
        ("9223372036854775807ns", MAX_NS),
        ("-9223372036854775808ns", MIN_NS),
    ],
)
def test_parse(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (10, "10ns"),
        (1500, "1.5µs"),
        (300_000, "300µs"),
        (250 * MS, "250ms"),
        (S, "1s"),
        (90 * S, "1m30s"),
        (3600 * S, "1h0m0s"),
        (5400 * S, "1h30m0s"),
        (1500 * MS, "1.5s"),
        (-90 * S, "-1m30s"),
    ],
)
def test_format_is_go_style(ns: int, text: str) -> None:
    assert format_duration(ns) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fast", "expected a number"),
        ("1.5", "missing unit"),
        ("250", "missing unit"),
        ("", "empty"),
        ("-", "empty"),
        (".", "expected a number"),
        ("1x", 'unknown unit "x"'),
        ("1 s", 'unknown unit " s"'),
        ("1h2", "missing unit"),
        ("9223372036854775808ns", "out of range"),
        ("3000000h", "out of range"),
    ],
)
def test_errors_state_the_accepted_form(text: str, problem: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    message = str(info.value)
    assert problem in message
    assert "is not a Go duration" in message
    assert "accepted: e.g. 150ms, 1s, 1m30s" in message
    assert isinstance(info.value, ValueError)


def test_non_string_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected a string"):
        parse_duration(250)  # type: ignore[arg-type]


def test_format_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        format_duration(MAX_NS + 1)


@given(st.integers(min_value=MIN_NS, max_value=MAX_NS))
def test_format_then_parse_round_trips(ns: int) -> None:
    assert parse_duration(format_duration(ns)) == ns


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ns", "us", "ms", "s", "m", "h"]))
def test_parse_then_format_then_parse(n: int, unit: str) -> None:
    ns = parse_duration(f"{n}{unit}")
    assert parse_duration(format_duration(ns)) == ns


# ---- exact messages and edges (they also kill the mutants of `make mutate`) ----------------------

TAIL = " (accepted: e.g. 150ms, 1s, 1m30s; units ns, us, µs, ms, s, m, h)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (".", '"." is not a Go duration: expected a number followed by a unit'),
        ("1s.", '"1s." is not a Go duration: expected a number at "."'),
        ("1sµ", '"1sµ" is not a Go duration: unknown unit "sµ"'),
        ("1s.µ", '"1s.µ" is not a Go duration: expected a number at ".µ"'),
        ("", '"" is not a Go duration: empty'),
        ("-", '"-" is not a Go duration: empty'),
        ("1", '"1" is not a Go duration: missing unit'),
        ("1" * 65, f'"{"1" * 64}..." is not a Go duration: too long (65 characters; at most 64)'),
        ("-9223372036854775809ns", '"-9223372036854775809ns" is not a Go duration: out of range (Go durations lie '
                                   "within ±2562047h47m16.854775807s, about 292 years)"),
    ],
)
def test_error_messages_are_exact(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value) == message + TAIL
    assert info.value.text == text
    assert info.value.problem == message.split(" is not a Go duration: ", 1)[1]


def test_non_string_message_is_exact() -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(5)  # type: ignore[arg-type]
    assert str(info.value) == '"5" is not a Go duration: expected a string, got int' + TAIL
    assert info.value.text == "5"


def test_edges() -> None:
    assert parse_duration("0" * 62 + "1s") == S  # exactly 64 characters
    assert parse_duration("-9223372036854775808ns") == MIN_NS
    assert parse_duration("1s.5s") == 1500 * MS  # a component may start with "."
    assert format_duration(1000) == "1µs"
    assert format_duration(MS) == "1ms"
    assert format_duration(-1) == "-1ns"
    with pytest.raises(ValueError, match=r"^9223372036854775808 ns is outside Go's duration range \(int64 "
                                         r"nanoseconds\)$"):
        format_duration(MAX_NS + 1)
