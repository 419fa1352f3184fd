"""The event schema, the Event type and the docs agree (one name per concept, everywhere)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from sensor.config import _ANALYTICS_KEYS, _CRISENSOR_KEYS, SensorConfig
from sensor.events import EVENT_TYPES, SCHEMA_VERSION, SOURCES, WHY_STRINGS, Event, Pod

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((ROOT / "sensor" / "schema" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EVENTS_DOC = (ROOT / "docs" / "events.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "config.md").read_text()


def sample(**kw) -> dict:
    base = Event(
        type="container.exited",
        time_ns=5,
        window_ns=(1, 9),
        observed_ns=10,
        container_id="c1",
        sandbox_id="s1",
        name="web",
        attempt=0,
        image="img",
        image_ref="sha256:x",
        labels={"a": "b"},
        pod=Pod("p", "ns", "uid"),
        exit_code=0,
        reason="Completed",
        seq=3,
    )
    d = base.to_dict()
    d.update(kw)
    return d


def test_schema_is_valid_and_versioned() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"] == "https://crisensor.dev/schema/event/v1.json"
    assert SCHEMA["properties"]["v"] == {"const": SCHEMA_VERSION, "description": "schema version"}
    assert SCHEMA["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert SCHEMA["properties"]["source"]["enum"] == list(SOURCES)


def test_schema_fields_are_the_event_fields() -> None:
    assert set(SCHEMA["properties"]) == set(sample()) | {"info"}


def test_a_valid_event() -> None:
    VALIDATOR.validate(sample())
    VALIDATOR.validate(sample(synthetic=True, why="exited and removed between polls", exit_code=None))
    gap = Event(type="sensor.gap", time_ns=1, window_ns=(1, 2), observed_ns=3, info={"cause": "failed polls"})
    VALIDATOR.validate(gap.with_seq(1).to_dict())


@pytest.mark.parametrize(
    "bad",
    [
        {"v": 2},
        {"type": "container.paused"},
        {"source": "guess"},
        {"synthetic": True, "why": None},
        {"synthetic": True, "why": ""},
        {"synthetic": False, "why": "because"},
        {"container_id": None},
        {"window_ns": [1]},
        {"window_ns": [1, 2, 3]},
        {"time_ns": -1},
        {"time_ns": 1.5},
        {"labels": {"a": 1}},
        {"pod": {"name": "p"}},
        {"windows_ns": [1, 2]},
    ],
)
def test_invalid_events(bad: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(sample(**bad))


def test_sandbox_event_needs_a_sandbox_id() -> None:
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(sample(type="sandbox.ready", sandbox_id=None, container_id=None))


def test_events_doc_names_every_field_type_source_and_why() -> None:
    for name in [*sample(), "info"]:
        assert f"`{name}`" in EVENTS_DOC, name
    for name in [*EVENT_TYPES, *SOURCES, *WHY_STRINGS]:
        assert f"`{name}`" in EVENTS_DOC, name


def test_config_doc_names_every_key_and_field() -> None:
    for key in _CRISENSOR_KEYS:
        assert f"`crisensor.{key}`" in CONFIG_DOC, key
    for key in _ANALYTICS_KEYS:
        assert f"`{key}`" in CONFIG_DOC, key
    for field in SensorConfig.__dataclass_fields__:
        assert f"`{field}`" in CONFIG_DOC, field
