"""Go duration syntax: ``parse_duration("1m30s") -> 90_000_000_000`` and back.

Theory of operation
-------------------
The seed's configuration (written for a Go sensor) spells times in Go's ``time.ParseDuration``
syntax, so we accept exactly that grammar and nothing else::

    duration := [+-]? ( "0" | component+ )
    component := number unit          number := digits ["." digits*] | "." digits
    unit := "ns" | "us" | "µs" (U+00B5) | "μs" (U+03BC) | "ms" | "s" | "m" | "h"

A bare number other than ``0`` is an error (``"250"`` has no unit), as in Go. Results are ``int``
nanoseconds, computed exactly (no floats); a fractional component is truncated to whole ns per
component, as Go does (``1.5ns`` is 1 ns). The range is Go's: a signed 64-bit count of ns
(about 292 years); anything larger is an error.

``format_duration`` is Go's ``Duration.String``: ``0s``, ``250ms``, ``1.5µs``, ``1m30s``,
``1h0m0s``. ``parse_duration(format_duration(n)) == n`` for every int64 ``n`` (a property test
checks it).

Errors raise ``DurationError`` (a ``ValueError``) whose text quotes the input, says what is wrong
and states the accepted form; callers that know the config key prefix it (``sensor.config``).
"""

from __future__ import annotations

import json

__all__ = ["ACCEPTED", "MAX_NS", "MAX_TEXT", "MIN_NS", "DurationError", "format_duration", "parse_duration"]

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

MAX_NS = 2**63 - 1
MIN_NS = -(2**63)
#: Longest duration text accepted (characters).
MAX_TEXT = 64

#: The accepted form, as stated in every error message.
ACCEPTED = "e.g. 150ms, 1s, 1m30s"

_UNITS: dict[str, int] = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # micro sign, what Go prints
    "\u03bcs": MICROSECOND,  # Greek small letter mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_UNIT_NAMES = "ns, us, µs, ms, s, m, h"
_LIMIT_TEXT = "2562047h47m16.854775807s"


class DurationError(ValueError):
    """``text`` is not a Go duration; ``problem`` says why (e.g. ``missing unit``)."""

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        shown = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."
        super().__init__(
            f"{json.dumps(shown, ensure_ascii=False)} is not a Go duration: {problem} "
            f"(accepted: {ACCEPTED}; units {_UNIT_NAMES})"
        )


def parse_duration(text: str) -> int:
    """Parse Go duration syntax to int nanoseconds (may be negative, as in Go)."""
    if not isinstance(text, str):
        raise DurationError(str(text), f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise DurationError(text, f"too long ({len(text)} characters; at most {MAX_TEXT})")
    s = text
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise DurationError(text, "empty")
    total = 0
    i, n = 0, len(s)
    while i < n:
        # number: digits [. digits]
        start = i
        while i < n and s[i].isascii() and s[i].isdigit():
            i += 1
        int_digits = s[start:i]
        frac_digits = ""
        if i < n and s[i] == ".":
            i += 1
            fstart = i
            while i < n and s[i].isascii() and s[i].isdigit():
                i += 1
            frac_digits = s[fstart:i]
        if not int_digits and not frac_digits:
            if start == 0:
                raise DurationError(text, "expected a number followed by a unit")
            raise DurationError(text, f"expected a number at {json.dumps(s[start:], ensure_ascii=False)}")
        # unit: everything up to the next digit or '.'
        ustart = i
        while i < n and s[i] != "." and not (s[i].isascii() and s[i].isdigit()):
            i += 1
        unit_name = s[ustart:i]
        if not unit_name:
            raise DurationError(text, "missing unit")
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise DurationError(text, f"unknown unit {json.dumps(unit_name, ensure_ascii=False)}")
        value = int(int_digits or "0") * unit
        if frac_digits:
            value += int(frac_digits) * unit // 10 ** len(frac_digits)
        total += value
        if total > MAX_NS + (1 if neg else 0):
            raise DurationError(text, f"out of range (Go durations lie within ±{_LIMIT_TEXT}, about 292 years)")
    return -total if neg else total


def _fraction(value: int, digits: int) -> str:
    """``value`` scaled down by 10**digits, trailing zeros of the fraction dropped."""
    whole, frac = divmod(value, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def format_duration(ns: int) -> str:
    """Go's ``Duration.String``: ``0s``, ``10ns``, ``1.5µs``, ``250ms``, ``1m30s``, ``1h0m0s``."""
    if not MIN_NS <= ns <= MAX_NS:
        raise ValueError(f"{ns} ns is outside Go's duration range (int64 nanoseconds)")
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < SECOND:
        if u < MICROSECOND:
            return f"{sign}{u}ns"
        if u < MILLISECOND:
            return f"{sign}{_fraction(u, 3)}\u00b5s"
        return f"{sign}{_fraction(u, 6)}ms"
    hours, rest = divmod(u, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    secs = _fraction(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return f"{sign}{secs}"
