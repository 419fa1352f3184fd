"""The recorded differential (issue 15): fakecri's flavours against recordings of real containerd.

``tests/fidelity/recordings/containerd-<release>.json`` were made by ``fakecri record`` against real
containerd 1.7 (Debian trixie) and 2.1 (Debian sid) on this project's machine
(``scripts/realruntime/record_real.py``). Here the same sequences run against fakecri's matching
flavour (real clock, in-process server) and the two recordings are compared message by message:
event types and order, which statuses each event carries (``pod_sandbox_status``,
``containers_statuses``) and their shapes, sandbox events, every List/Status answer after every
step, exit codes and reasons, call outcomes.

Differences left are listed in ``KEPT`` with the reason (docs/fidelity.md has the same list); an
entry that no longer matches anything fails the test, so the list cannot go stale. No root and no
real runtime needed: this runs everywhere. ``tests/realruntime/test_recorded_live.py`` checks that
the recordings still describe the runtimes CI fetches.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakecri.record import SEQUENCES, Difference, compare, record_fake

RECORDINGS = Path(__file__).parent / "recordings"
#: recording -> the flavour that must match it
FLAVOR_OF = {"containerd-1.7": "containerd-1.7", "containerd-2.1": "containerd-2.1"}


@dataclass(frozen=True)
class Kept:
    """An accepted difference: ``recording``/``sequence``/``where`` are fnmatch patterns (``[[]`` is a ``[``)."""

    recording: str
    sequence: str
    where: str
    reason: str

    def matches(self, recording: str, d: Difference) -> bool:
        return (fnmatch.fnmatchcase(recording, self.recording) and fnmatch.fnmatchcase(d.sequence, self.sequence)
                and fnmatch.fnmatchcase(d.where, self.where))


#: Real behaviour that varies from run to run, so that one recording shows one of its outcomes.
#: ``optional``: may or may not show in a recording (never stale).
KEPT: tuple[Kept, ...] = (
    Kept("containerd-2.1", "*", "after stop_pod.ListPodSandbox[[]0].state",
         "containerd 2.1 sometimes still lists a sandbox READY right after StopPodSandbox returned, while "
         "PodSandboxStatus already says NOTREADY (seen in 1-2 of 4 stop_pod steps per run); fakecri lists it "
         "NOTREADY at once: a list that lags is the runtime's nondeterminism, not a shape to emulate"),
    Kept("*", "remove_race", "remove_racing racer: outcome",
         "RemoveContainer at the instant the process exits usually succeeds (containerd stops it first, which "
         "waits for the exit), but sometimes loses a race: 2.1 'failed to forcibly stop container ...: ttrpc: "
         "closed', 1.7 (issue 15) 'container is still running, to stop first'. fakecri always succeeds"),
)
OPTIONAL = frozenset(KEPT)


def _load(name: str) -> dict:
    return json.loads((RECORDINGS / f"{name}.json").read_text())


@pytest.fixture(scope="module", params=sorted(FLAVOR_OF))
def pair(request: pytest.FixtureRequest) -> tuple[str, dict, dict]:
    recorded = _load(request.param)
    fake = record_fake(FLAVOR_OF[request.param], busybox=recorded["image"])
    return request.param, recorded, fake


def test_recordings_cover_every_sequence_and_name_their_runtime() -> None:
    for name in FLAVOR_OF:
        rec = _load(name)
        assert set(rec["sequences"]) == set(SEQUENCES), name
        version = name.split("-", 1)[1]
        assert rec["runtime"]["runtime_name"] == "containerd"
        assert rec["runtime"]["runtime_version"].lstrip("v").startswith(version + "."), rec["runtime"]


def test_fakecri_matches_the_recording(pair: tuple[str, dict, dict]) -> None:
    name, recorded, fake = pair
    diffs = compare(recorded, fake)
    unexpected = [d for d in diffs if not any(k.matches(name, d) for k in KEPT)]
    assert not unexpected, (f"fakecri {FLAVOR_OF[name]} differs from the recording of real {name}; fix fakecri "
                            "or add a KEPT entry (and docs/fidelity.md):\n  " + "\n  ".join(map(str, unexpected)))
    stale = [k for k in KEPT if fnmatch.fnmatchcase(name, k.recording) and k not in OPTIONAL
             and not any(k.matches(name, d) for d in diffs)]
    assert not stale, f"KEPT entries that match nothing for {name}: {stale}"


def test_the_recordings_show_what_the_fake_now_emulates() -> None:
    """The stream shapes the recordings revealed, each now a flavour switch (docs/fidelity.md)."""
    r17, r21 = _load("containerd-1.7"), _load("containerd-2.1")
    life17, life21 = r17["sequences"]["lifecycle"]["events"], r21["sequences"]["lifecycle"]["events"]
    # a sandbox's CREATED is followed by STARTED (both releases)
    assert [e.get("container_event_type", "CONTAINER_CREATED_EVENT") for e in life21[:2]] == [
        "CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT"]
    # the sandbox's DELETED carries its last status on 2.1, none on 1.7
    assert "pod_sandbox_status" in life21[-1] and "pod_sandbox_status" not in life17[-1]
    # 1.7: a closed subscription takes the next event -- the recorder re-subscribes per sequence, so
    # every sequence after the first misses its sandbox's CREATED
    first = next(iter(SEQUENCES))
    for seq, body in r17["sequences"].items():
        head = body["events"][0].get("container_event_type", "CONTAINER_CREATED_EVENT")
        assert head == ("CONTAINER_CREATED_EVENT" if seq == first else "CONTAINER_STARTED_EVENT"), seq
