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
