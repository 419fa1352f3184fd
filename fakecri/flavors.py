"""Flavours: which runtime the fake pretends to be.

A flavour fixes everything a client can observe without a scenario: the API versions served,
``Version`` strings, how ``GetContainerEvents`` behaves, the shape of verbose ``info`` JSON, and
the few places where CRI-O and containerd answer the same call differently, and the quirks the
real runtime has on the wire. A flavour carries its quirks by default -- ``crio-1.13`` withholds
its HTTP/2 preface (old cmux) exactly like the real CRI-O 1.13, so a default grpcio client times
out against it -- and a scenario's ``quirks`` (or ``fakecri serve --handshake/--events``) turns
one off. Scenarios may override single fields (see ``Flavor.replace``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

EventsMode = Literal["stream", "eof", "error", "unimplemented", "stream-then-closed"]
#: How the socket greets a client (``fakecri.relay``): ``none`` a plain gRPC server (sends its
#: SETTINGS at once); ``cmux`` old CRI-O (<= 1.15.1): nothing until the client's first HEADERS;
#: ``cmux-settings`` fixed CRI-O (1.14.11, 1.15.2, 1.16+): cmux sends an empty SETTINGS itself.
HandshakeMode = Literal["none", "cmux", "cmux-settings"]
HANDSHAKES: tuple[str, ...] = ("none", "cmux", "cmux-settings")


@dataclass(frozen=True)
class Flavor:
    name: str
    runtime_name: str
    runtime_version: str
    apis: tuple[str, ...]
    #: GetContainerEvents behaviour (v1 only): stream, immediate EOF, error, UNIMPLEMENTED, or
    #: stream that a runtime-side close ends with UNAVAILABLE "subscription closed".
    events: EventsMode
    #: Shape of verbose ``info``: "containerd" or "crio".
    info_shape: Literal["containerd", "crio"]
    #: StopContainer/StopPodSandbox on an unknown ID: "ok" (idempotent) or "not_found".
    stop_unknown: Literal["ok", "not_found"] = "ok"
    #: RemoveContainer on a running container: "force" (stop, then remove) or "refuse".
    remove_running: Literal["force", "refuse"] = "force"
    #: Exit code reported when the runtime does not know it (CRI-O reports -1).
    unknown_exit_code: int = 0
    #: The CRI ``Version.version`` field: the kubelet runtime API version, always "0.1.0".
    kubelet_api_version: str = "0.1.0"
    #: The handshake quirk the real runtime has (``HandshakeMode``); on unless a scenario says otherwise.
    handshake: HandshakeMode = "none"
    #: State lag (DESIGN.md section 6): how long List/Status/the stream keep showing a container
    #: running after its process exited by itself (the truth keeps the exit's own time). 0: none.
    state_lag_ns: int = 0
    #: Event stream shapes recorded on real containerd (tests/fidelity/recordings): a pod sandbox's
    #: CREATED event is followed by a STARTED one (1.7, 2.1); its DELETED event carries its last
    #: (NOTREADY) status (2.1; 1.7 sends none).
    sandbox_started_event: bool = False
    deleted_sandbox_status: bool = False
    #: containerd 1.7 feeds every GetContainerEvents subscriber from ONE queue: each event goes to
    #: one of them, and a subscription the client closed still takes the next event (lost). 2.x
    #: broadcasts. Recorded in tests/realruntime/test_recorded_differential.py.
    events_shared: bool = False

    def replace(self, **changes: object) -> Flavor:
        return replace(self, **changes)  # type: ignore[arg-type]


#: State lag measured on real runtimes here (bench/bench_real.py, docs/realruntime.md#state-lag): the
#: median time from a process's exit (its reported finished_at) until ContainerStatus shows EXITED
#: on a lightly loaded machine (it grows with load: 2-3x at load 7 on 2 cores). CRI-O was not
#: measured (not packaged for this machine); it learns of exits from conmon's exit file, the same
#: kind of asynchronous path, and gets containerd 1.7's figure.
LAG_CONTAINERD_16 = 50_000_000
LAG_CONTAINERD_17 = 50_000_000
LAG_CONTAINERD_2 = 25_000_000

FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        Flavor("containerd-1.5", "containerd", "v1.5.18", ("v1alpha2",), "unimplemented", "containerd",
               stop_unknown="not_found", state_lag_ns=LAG_CONTAINERD_16),
        Flavor("containerd-1.6", "containerd", "v1.6.20", ("v1", "v1alpha2"), "unimplemented", "containerd",
               stop_unknown="not_found", state_lag_ns=LAG_CONTAINERD_16),
        Flavor("containerd-1.7", "containerd", "v1.7.13", ("v1", "v1alpha2"), "stream-then-closed",
               "containerd", stop_unknown="not_found", state_lag_ns=LAG_CONTAINERD_17,
               sandbox_started_event=True, events_shared=True),
        Flavor("containerd-2.0", "containerd", "v2.0.2", ("v1",), "stream-then-closed", "containerd",
               stop_unknown="not_found", state_lag_ns=LAG_CONTAINERD_2, sandbox_started_event=True),
        Flavor("containerd-2.1", "containerd", "v2.1.9", ("v1",), "stream-then-closed", "containerd",
               stop_unknown="not_found", state_lag_ns=LAG_CONTAINERD_2, sandbox_started_event=True,
               deleted_sandbox_status=True),
        Flavor("crio-1.13", "cri-o", "1.13.11", ("v1alpha2",), "unimplemented", "crio",
               unknown_exit_code=-1, handshake="cmux", state_lag_ns=LAG_CONTAINERD_17),
        Flavor("crio-1.16", "cri-o", "1.16.6", ("v1alpha2",), "unimplemented", "crio",
               unknown_exit_code=-1, handshake="cmux-settings", state_lag_ns=LAG_CONTAINERD_17),
        Flavor("crio-1.26", "cri-o", "1.26.4", ("v1",), "eof", "crio", unknown_exit_code=-1,
               state_lag_ns=LAG_CONTAINERD_17),
    )
}

DEFAULT_FLAVOR = "containerd-1.7"


def get_flavor(name: str) -> Flavor:
    """Look up a flavour; the error lists the accepted names."""
    try:
        return FLAVORS[name]
    except KeyError:
        raise ValueError(f"unknown flavor {name!r} (accepted: {', '.join(FLAVORS)})") from None
