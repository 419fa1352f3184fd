"""Event serialization: the prebuilt encoder and the slot-wise numbering give exactly what
``json.dumps`` and ``dataclasses.replace`` give (sensor/events.py)."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import example, given
from hypothesis import strategies as st

from sensor.events import Event, Pod

text = st.text(max_size=12)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                           max_leaves=8)
events = st.builds(
    Event, type=st.sampled_from(["container.created", "sensor.connected"]), time_ns=st.integers(0, 2**63),
    window_ns=st.tuples(st.integers(0, 2**63), st.integers(0, 2**63)), observed_ns=st.integers(0, 2**63),
    container_id=st.none() | text, name=st.none() | text, labels=st.dictionaries(text, text, max_size=4),
    pod=st.none() | st.builds(Pod, text, text, text), exit_code=st.none() | st.integers(-(2**31), 2**31),
    synthetic=st.booleans(), why=st.none() | text, info=st.none() | st.dictionaries(text, json_values, max_size=3))


@given(events, st.integers(1, 2**40))
@example(Event("container.created", 0, (0, 0), 0, labels={"": "\x7f"}), 1)  # DEL: escaped, orjson does not
def test_to_json_and_with_seq_match_the_standard_library(e: Event, seq: int) -> None:
    numbered = e.with_seq(seq)
    assert numbered == dataclasses.replace(e, seq=seq) and e.seq == 0
    assert numbered.to_json() == json.dumps(numbered.to_dict(), separators=(",", ":"))


def test_new_event_takes_every_field_but_info_and_seq_in_order() -> None:
    """``new_event`` sets the slots one by one: a field added to ``Event`` must be added to it too."""
    import inspect

    from sensor.events import new_event

    names = [f.name for f in dataclasses.fields(Event)]
    assert list(inspect.signature(new_event).parameters) == [n for n in names if n not in ("info", "seq")]


@given(events.filter(lambda e: e.info is None))
def test_new_event_is_the_dataclass_event(e: Event) -> None:
    from sensor.events import new_event

    made = new_event(*(getattr(e, f.name) for f in dataclasses.fields(Event) if f.name not in ("info", "seq")))
    assert made == e and type(made) is Event and made.seq == 0 and made.info is None
    assert made.to_json() == e.to_json() and hash(made.window_ns) == hash(e.window_ns)


def test_to_json_writes_the_standard_librarys_bytes_where_orjson_would_not() -> None:
    """The fast encoder stands aside where its bytes would differ: text outside ASCII (escaped by the
    standard library), a lone surrogate or an int past 64 bits (refused), a non-finite float in
    ``info`` (written as ``null``)."""
    base = {"type": "container.created", "time_ns": 5, "window_ns": (1, 5), "observed_ns": 6}
    cases = [Event(**base, labels={"app": "caf\u00e9"}), Event(**base, name="\ud800"),  # type: ignore[arg-type]
             Event(**base, labels={"app": "a\x7fb", "nl": "a\nb\x01"}),  # type: ignore[arg-type]
             Event(**base, exit_code=2**70), Event(**base, info={"lag": float("nan"), "x": float("inf")}),  # type: ignore[arg-type]
             Event(**base, labels={"app": "plain"})]  # type: ignore[arg-type]
    for e in cases:
        assert e.to_json() == json.dumps(e.to_dict(), separators=(",", ":"))
