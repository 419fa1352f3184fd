"""Lifecycles: which events to emit when a container or sandbox is seen in a new state.

Theory of operation
-------------------
Rule 1: everything about lifecycle ORDER lives in this module; the diff engine decides what was
observed, this module decides what that means. Rule 2: the tables know nothing about time,
sockets or snapshots; they map (last announced state, observation) to a tuple of steps.

Lifecycles (each state announced at most once, in this order)::

    container:  created < running < exited < destroyed
    sandbox:    ready < notready < destroyed

An *observation* is what one successful snapshot says about an object:

* a listed state (container ``created``/``running``/``exited``/``unknown``, sandbox
  ``ready``/``notready``); a container listed ``exited`` is observed as ``exited+ran`` when its
  status reported ``started_at > 0`` (it certainly ran), else as ``exited`` (it never ran, or the
  status call failed and we do not know: we do not invent a ``running``);
* ``gone``: absent from a successful list;
* ``replaced``: listed under a known ID but as a different incarnation (ID reuse).

A *step* is one event to emit: the state it announces and ``why``. ``why is None`` means the
sensor saw that state (``synthetic: false``); otherwise the step is forged and ``why`` says why.
Steps that were skipped between polls are forged in lifecycle order before the observed one, so
``None -> exited+ran`` gives ``created (forged), running (forged), exited (seen)``. The functions
return a cached tuple of steps (they are frozen values).

The few rows that do not follow from "forge every skipped state":

* ``gone`` ends in ``destroyed`` with ``why None``: absence from a successful list IS seeing the
  object gone, so ``destroyed`` is not synthetic; the ``exited``/``notready`` before it is.
  A created container that never ran still gets a forged ``exited`` (every end has an exit).
* ``gone`` never forges ``running``: we cannot know a created container ever started.
* ``replaced`` forges both the old incarnation's end states (it was replaced, never seen gone).
* an observation EARLIER than the last announced state (``exited`` then ``running``) yields no
  steps; the engine reads such a regression as ID reuse before asking this table.
* ``unknown`` (CRI's CONTAINER_UNKNOWN) announces nothing new, except ``created`` when first seen;
  likewise for a sandbox (a ``PodSandboxState`` the sensor does not know: sensor.wire), ``ready``.
* nothing may follow ``destroyed``: asking is a ``LifecycleError``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sensor.events import (
    WHY_CONTAINER_ID_REUSED,
    WHY_CREATED_BEFORE_FIRST_SEEN,
    WHY_EXITED_AND_REMOVED,
    WHY_RAN_BETWEEN_POLLS,
    WHY_SANDBOX_ID_REUSED,
    WHY_STOPPED_AND_REMOVED,
)

__all__ = [
    "CONTAINER_OBSERVATIONS",
    "CONTAINER_ORDER",
    "CONTAINER_TRANSITIONS",
    "SANDBOX_OBSERVATIONS",
    "SANDBOX_ORDER",
    "SANDBOX_TRANSITIONS",
    "VANISHED",
    "LifecycleError",
    "Step",
    "container_steps",
    "is_regression",
    "sandbox_steps",
]

CONTAINER_ORDER = ("created", "running", "exited", "destroyed")
SANDBOX_ORDER = ("ready", "notready", "destroyed")
CONTAINER_OBSERVATIONS = ("created", "running", "exited", "exited+ran", "unknown", "gone", "replaced")
SANDBOX_OBSERVATIONS = ("ready", "notready", "unknown", "gone", "replaced")

#: Placeholder ``why`` in the tables for "vanished": filled in by the caller, because it depends on
#: whether the sensor was blind meanwhile ("... between polls" vs "vanished during outage").
VANISHED = "<vanished>"
_SEEN = None

_Row = dict[str, tuple[tuple[str, str | None], ...]]

# {last announced state (None: never announced): {observation: ((state, why), ...)}}
CONTAINER_TRANSITIONS: dict[str | None, _Row] = {
    None: {
        "created": (("created", _SEEN),),
        "running": (("created", WHY_CREATED_BEFORE_FIRST_SEEN), ("running", _SEEN)),
        "exited": (("created", WHY_CREATED_BEFORE_FIRST_SEEN), ("exited", _SEEN)),
        "exited+ran": (
            ("created", WHY_CREATED_BEFORE_FIRST_SEEN),
            ("running", WHY_RAN_BETWEEN_POLLS),
            ("exited", _SEEN),
        ),
        "unknown": (("created", WHY_CREATED_BEFORE_FIRST_SEEN),),
        "gone": (),
        "replaced": (),
    },
    "created": {
        "created": (),
        "running": (("running", _SEEN),),
        "exited": (("exited", _SEEN),),
        "exited+ran": (("running", WHY_RAN_BETWEEN_POLLS), ("exited", _SEEN)),
        "unknown": (),
        "gone": (("exited", VANISHED), ("destroyed", _SEEN)),
        "replaced": (("exited", WHY_CONTAINER_ID_REUSED), ("destroyed", WHY_CONTAINER_ID_REUSED)),
    },
    "running": {
        "created": (),
        "running": (),
        "exited": (("exited", _SEEN),),
        "exited+ran": (("exited", _SEEN),),
        "unknown": (),
        "gone": (("exited", VANISHED), ("destroyed", _SEEN)),
        "replaced": (("exited", WHY_CONTAINER_ID_REUSED), ("destroyed", WHY_CONTAINER_ID_REUSED)),
    },
    "exited": {
        "created": (),
        "running": (),
        "exited": (),
        "exited+ran": (),
        "unknown": (),
        "gone": (("destroyed", _SEEN),),
        "replaced": (("destroyed", WHY_CONTAINER_ID_REUSED),),
    },
    "destroyed": {},
}

SANDBOX_TRANSITIONS: dict[str | None, _Row] = {
    None: {
        "ready": (("ready", _SEEN),),
        "notready": (("ready", WHY_CREATED_BEFORE_FIRST_SEEN), ("notready", _SEEN)),
        "unknown": (("ready", WHY_CREATED_BEFORE_FIRST_SEEN),),
        "gone": (),
        "replaced": (),
    },
    "ready": {
        "ready": (),
        "notready": (("notready", _SEEN),),
        "unknown": (),
        "gone": (("notready", VANISHED), ("destroyed", _SEEN)),
        "replaced": (("notready", WHY_SANDBOX_ID_REUSED), ("destroyed", WHY_SANDBOX_ID_REUSED)),
    },
    "notready": {
        "ready": (),
        "notready": (),
        "unknown": (),
        "gone": (("destroyed", _SEEN),),
        "replaced": (("destroyed", WHY_SANDBOX_ID_REUSED),),
    },
    "destroyed": {},
}


class LifecycleError(ValueError):
    """An observation the table has no row for (e.g. anything after ``destroyed``)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One event to emit: the ``state`` it announces, and ``why`` it was forged (``None``: seen)."""

    state: str
    why: str | None = None

    @property
    def synthetic(self) -> bool:
        return self.why is not None


_TABLES = {"container": CONTAINER_TRANSITIONS, "sandbox": SANDBOX_TRANSITIONS}


@functools.cache
def _apply(kind: str, last: str | None, observed: str, vanished_why: str) -> tuple[Step, ...]:
    row = _TABLES[kind].get(last)
    if row is None or observed not in row:
        accepted = ", ".join(sorted(row)) if row else "none: nothing follows destroyed"
        raise LifecycleError(
            f"{kind} lifecycle: no transition from {last or 'nothing'!s} on observation {observed!r} "
            f"(accepted observations: {accepted})"
        )
    return tuple(Step(state, vanished_why if why == VANISHED else why) for state, why in row[observed])


def container_steps(last: str | None, observed: str, *, vanished_why: str = WHY_EXITED_AND_REMOVED) -> tuple[Step, ...]:
    """Events to emit for a container last announced in ``last`` and now ``observed``."""
    return _apply("container", last, observed, vanished_why)


def sandbox_steps(last: str | None, observed: str, *, vanished_why: str = WHY_STOPPED_AND_REMOVED) -> tuple[Step, ...]:
    """Events to emit for a sandbox last announced in ``last`` and now ``observed``."""
    return _apply("sandbox", last, observed, vanished_why)


_CONTAINER_RANK = {"created": 0, "running": 1, "exited": 2, "exited+ran": 2, "destroyed": 3}
_SANDBOX_RANK = {"ready": 0, "notready": 1, "destroyed": 2}


def is_regression(kind: str, last: str | None, listed: str) -> bool:
    """True when ``listed`` comes BEFORE ``last`` in the lifecycle (the ID now names a new object).

    ``kind`` is ``container`` or ``sandbox``; ``unknown`` is never a regression.
    """
    rank = _CONTAINER_RANK if kind == "container" else _SANDBOX_RANK
    if last is None or listed not in rank or last not in rank:
        return False
    return rank[listed] < rank[last]
