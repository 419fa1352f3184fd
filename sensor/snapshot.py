"""Snapshots: what the CRI client hands the pure core, as plain frozen values.

Theory of operation
-------------------
The client (``sensor.client``) converts protobuf messages into these values, so the diff engine
never imports gRPC or protobuf and tests build snapshots by hand. Field values are copied from
the runtime verbatim: an empty string means the runtime sent an empty string (missing metadata);
a timestamp of ``0`` means the runtime did not report it.

* ``SandboxSnap``   one ``PodSandbox`` from ``ListPodSandbox``;
* ``ContainerSnap`` one ``Container`` from ``ListContainers``;
* ``ContainerDetail`` the parts of ``ContainerStatus`` the core needs (times, exit code, reason);
  ``exit_code`` is ``None`` (or CRI-O's ``-1``) when the runtime does not know it;
* ``Snapshot``      one successful pair of lists: ``sent_ns`` is the sensor's clock just before
  the first list request went out, ``received_ns`` just after the last answer came in. The
  runtime's answers describe some instant inside ``[sent_ns, received_ns]``; the engine's
  ``window_ns`` rules depend on exactly that.

States are the CRI enum names in lower case without prefix: sandboxes ``ready``/``notready``,
containers ``created``/``running``/``exited``/``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ContainerDetail", "ContainerSnap", "ContainerState", "SandboxSnap", "SandboxState", "Snapshot"]

SandboxState = Literal["ready", "notready"]
ContainerState = Literal["created", "running", "exited", "unknown"]


@dataclass(frozen=True, slots=True)
class SandboxSnap:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: SandboxState
    created_at: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerSnap:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    image: str
    image_ref: str
    state: ContainerState
    created_at: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerDetail:
    """From ``ContainerStatus``; ``0`` times are unset, ``exit_code`` ``None``/``-1`` is unknown."""

    id: str
    started_at: int
    finished_at: int
    exit_code: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    sandboxes: tuple[SandboxSnap, ...]
    containers: tuple[ContainerSnap, ...]
    sent_ns: int
    received_ns: int
