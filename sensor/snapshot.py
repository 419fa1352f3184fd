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
* ``StreamEvent``   one ``ContainerEventResponse`` from ``GetContainerEvents`` (``sensor.stream``
  converts it): the ID, the event type, the runtime's event time, and -- when the runtime sent
  them -- the named container's status (as a ``ContainerSnap`` + ``ContainerDetail``) and the pod
  sandbox's status (``None`` when the runtime sent a nil one).

States are the CRI enum names in lower case without prefix: sandboxes ``ready``/``notready``,
containers ``created``/``running``/``exited``/``unknown``; a value past the enum's last is
``unknown`` for both (sandboxes have no such CRI value: it announces nothing, sensor.lifecycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "STREAM_EVENT_TYPES",
    "ContainerDetail",
    "ContainerSnap",
    "ContainerState",
    "SandboxSnap",
    "SandboxState",
    "Snapshot",
    "StreamEvent",
    "StreamEventType",
]

#: ``unknown``: a ``PodSandboxState`` value the sensor does not know (a newer CRI; sensor.wire).
SandboxState = Literal["ready", "notready", "unknown"]
ContainerState = Literal["created", "running", "exited", "unknown"]
#: CRI ``ContainerEventType`` in lower case without prefix/suffix (CONTAINER_STOPPED_EVENT -> stopped).
StreamEventType = Literal["created", "started", "stopped", "deleted"]
STREAM_EVENT_TYPES: tuple[StreamEventType, ...] = ("created", "started", "stopped", "deleted")


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


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One ``ContainerEventResponse``. ``container_id`` may name a pod sandbox (containerd announces
    sandbox transitions as container events whose ID is the sandbox's). ``time_ns`` is the
    response's ``created_at``: when the runtime generated the event (0: not sent).

    ``container``/``detail``: the status of ``container_id`` from ``containers_statuses`` (``None``
    when absent, e.g. in a ``deleted`` event); ``container.sandbox_id`` is the pod sandbox status's
    ID, or ``""`` when that was nil. ``sandbox``: the pod sandbox status (``None`` when nil).
    """

    container_id: str
    type: StreamEventType
    time_ns: int
    container: ContainerSnap | None = None
    detail: ContainerDetail | None = None
    sandbox: SandboxSnap | None = None
