"""Deliberately broken sensors: the real crisensor with one part swapped for a buggy one.

Each mutant names the guarantee that must catch it and a bundled scenario that exposes it.
The swapped part is a thin subclass or wrapper, so everything else runs the real code paths:

| mutant | swapped part | bug | caught by |
|---|---|---|---|
| ``never-forge-exited`` | emitter | drops every forged ``container.exited`` | G2 |
| ``duplicate-after-reconnect`` | diff engine | starts afresh after a reconnect: announces all again | G6 |
| ``failed-list-as-empty`` | CRI client | a failed or timed-out list is an empty snapshot | G5 |
| ``wrong-windows`` | emitter | ``window_ns`` collapsed to ``[time_ns, time_ns]`` | G4 |
| ``drop-sandbox-events`` | emitter | never writes ``sandbox.*`` events | G2 |
| ``forged-as-seen`` | emitter | forged events written ``synthetic: false``, no ``why`` | G3 |

As a command it wraps ``crisensor`` exactly (``fakecri verify`` runs it like any sensor)::

    python -m tests.guarantees.mutants never-forge-exited run --enable --addr unix:///tmp/cri.sock

(from the repository root): the mutation is installed, then ``sensor.cli.main`` runs with the
remaining arguments.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sensor.client import CriCallError, CriClient
from sensor.diff import DiffEngine
from sensor.events import Event
from sensor.output import Emitter
from sensor.snapshot import Snapshot

try:  # imported as tests.guarantees.mutants (python -m) or as mutants (pytest's rootdir import)
    from .guaranteerig import Parts
except ImportError:
    from guaranteerig import Parts  # type: ignore[no-redef]


class _FilteringEmitter(Emitter):
    """An emitter that rewrites each batch before numbering it (``seq`` stays strictly increasing)."""

    def rewrite(self, events: list[Event]) -> list[Event]:
        raise NotImplementedError

    def emit(self, events: Iterable[Event]) -> list[Event]:
        return super().emit(self.rewrite(list(events)))


class NeverForgeExited(_FilteringEmitter):
    def rewrite(self, events: list[Event]) -> list[Event]:
        return [e for e in events if not (e.type == "container.exited" and e.synthetic)]


class WrongWindows(_FilteringEmitter):
    def rewrite(self, events: list[Event]) -> list[Event]:
        return [dataclasses.replace(e, window_ns=(e.time_ns, e.time_ns)) for e in events]


class DropSandboxEvents(_FilteringEmitter):
    def rewrite(self, events: list[Event]) -> list[Event]:
        return [e for e in events if not e.type.startswith("sandbox.")]


class ForgedAsSeen(_FilteringEmitter):
    def rewrite(self, events: list[Event]) -> list[Event]:
        return [dataclasses.replace(e, synthetic=False, why=None) if e.synthetic else e for e in events]


class FailedListAsEmpty(CriClient):
    """Reads a failed list as "the runtime is empty" -- the bug G5 exists for. Both ways the poll
    loop lists are broken: decoded (``list``) and raw bytes for the fast path (``list_bytes``; an
    empty list answer serializes to no bytes)."""

    def list(self) -> Snapshot:
        try:
            return super().list()
        except CriCallError:
            now = self.now_ns()
            return Snapshot(sandboxes=(), containers=(), sent_ns=now, received_ns=now)

    def list_bytes(self) -> tuple[bytes, bytes, int, int]:
        try:
            return super().list_bytes()  # type: ignore[misc]
        except CriCallError:
            now = self.now_ns()
            return b"", b"", now, now


class ForgetfulEngine:
    """A diff engine that starts from scratch after a reconnect (no resync): it announces every
    container and sandbox again, and forges nothing for what vanished meanwhile."""

    def __init__(self) -> None:
        self.inner = DiffEngine()

    def reset_connection(self, now_ns: int) -> None:
        self.inner = DiffEngine()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass(frozen=True)
class Mutant:
    name: str
    catches: str  #: the guarantee that must name it
    scenario: str  #: a bundled scenario that exposes it
    parts: Parts
    bug: str


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant("never-forge-exited", "G2", "fast_exit", Parts(emitter=NeverForgeExited),
               "drops every forged container.exited"),
        Mutant("duplicate-after-reconnect", "G6", "runtime_restart", Parts(engine=ForgetfulEngine),
               "starts from an empty table after a reconnect"),
        Mutant("failed-list-as-empty", "G5", "flaky_runtime", Parts(client=FailedListAsEmpty),
               "reads a failed list as an empty runtime"),
        Mutant("wrong-windows", "G4", "fast_exit", Parts(emitter=WrongWindows),
               "collapses window_ns to the point estimate"),
        Mutant("drop-sandbox-events", "G2", "fast_exit", Parts(emitter=DropSandboxEvents),
               "never writes sandbox events"),
        Mutant("forged-as-seen", "G3", "fast_exit", Parts(emitter=ForgedAsSeen),
               "writes forged events as synthetic: false"),
    )
}


def install(parts: Parts) -> None:
    """Make ``crisensor run`` (``sensor.cli``) assemble itself from ``parts``."""
    import sensor.cli
    import sensor.output
    import sensor.poller

    sensor.cli.CriClient = parts.client  # type: ignore[misc]  # make_client() builds this
    sensor.output.Emitter = parts.emitter  # type: ignore[misc]  # cmd_run imports it when it runs
    sensor.poller.DiffEngine = parts.engine  # type: ignore[assignment,misc]  # Poller's default engine


def main(argv: Sequence[str] | None = None, run: Callable[[list[str]], int] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in MUTANTS:
        print(f"usage: python -m tests.guarantees.mutants MUTANT CRISENSOR-ARGS... (MUTANT: {', '.join(MUTANTS)})",
              file=sys.stderr)
        return 2
    install(MUTANTS[args[0]].parts)
    from sensor.cli import main as crisensor

    return (run or crisensor)(args[1:])


if __name__ == "__main__":
    sys.exit(main())
