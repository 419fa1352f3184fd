"""sensor.state (the pure core) and sensor.statedir (its files): encoding, corruption, compaction,
the lock, resume semantics on the diff engine. docs/state.md is the specification."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sensor.diff import DiffEngine
from sensor.events import WHY_SENSOR_DOWN, Event
from sensor.snapshot import ContainerDetail, ContainerSnap, SandboxSnap, Snapshot
from sensor.state import CorruptState, Image, capture, decode_line, encode_json, encode_line, layout
from sensor.statedir import JOURNAL, SNAPSHOT, Keeper, PersistingEmitter, StateDir, StateDirError

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SB = SandboxSnap("sb", "pod", "ns", "uid", 0, "ready", T0)
SCHEMA = json.loads((Path(__file__).parents[2] / "sensor" / "schema" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


# -- lines ---------------------------------------------------------------------------------------------


@given(obj=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8) | st.none(), min_size=1),
       flip=st.integers(0, 10_000), bit=st.integers(0, 7))
@example(obj={"q": 1}, flip=0, bit=0)
@example(obj={"": None}, flip=0, bit=4)  # a leading "0" read as " ": int() took it for the same checksum
def test_a_line_round_trips_and_any_flipped_bit_is_detected(obj: dict[str, Any], flip: int, bit: int) -> None:
    line = encode_line(obj)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_line(line) == obj
    data = bytearray(line[:-1])
    data[flip % len(data)] ^= 1 << bit
    try:
        got = decode_line(bytes(data))
    except CorruptState:
        return
    raise AssertionError(f"a flipped bit went unnoticed: {got!r}")


def test_raw_members_are_spliced_into_one_valid_line() -> None:
    line = encode_line({"q": 3}, {"c": encode_json({"x": [1, None]}), "s": encode_json({})})
    assert decode_line(line) == {"q": 3, "c": {"x": [1, None]}, "s": {}}


@pytest.mark.parametrize("line", [b"", b"deadbeef", b"zzzzzzzz {}", b"00000000 {}", encode_line({"a": 1})[:-5]])
def test_torn_or_altered_lines_are_corrupt(line: bytes) -> None:
    with pytest.raises(CorruptState):
        decode_line(line)


# -- a sensor on a state dir, driven by hand ---------------------------------------------------------


class Rig:
    """A keeper + emitter + engine on ``path``, polled with hand-made snapshots."""

    def __init__(self, path: Path, *, instance: int = 1, t: int = T0 + 1_000 * MS, **store: Any) -> None:
        self.t = t
        self.engine = DiffEngine()
        self.out = io.StringIO()
        self.keeper = Keeper(StateDir(str(path), now_ns=lambda: self.t, **store), self.engine,
                             identify=lambda info: {"name": "rt", "version": "1", "instance": {"n": instance}},
                             now_ns=lambda: self.t).open()
        self.emitter = PersistingEmitter(self.out, keeper=self.keeper)
        self.emitter.emit([Event(type="sensor.connected", time_ns=self.t, window_ns=(self.t, self.t),
                                 observed_ns=self.t, info={"runtime_name": "rt"})])

    def poll(self, containers: dict[str, tuple[str, int, int, int]]) -> list[Event]:
        """``containers``: id -> (state, created_at, started_at, finished_at)."""
        self.t += 100 * MS
        snap = Snapshot((SB,), tuple(ContainerSnap(cid, "sb", cid, 0, "img", "ref", s, c)  # type: ignore[arg-type]
                                     for cid, (s, c, _, _) in containers.items()), self.t, self.t + 1)
        need = self.engine.begin(snap)
        details = {cid: ContainerDetail(cid, containers[cid][2], containers[cid][3],
                                        0 if containers[cid][3] else None, None) for cid in need}
        return self.emitter.emit(self.engine.finish(details, self.t + 2))

    def events(self) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in self.out.getvalue().splitlines()]
        for e in out:
            VALIDATOR.validate(e)  # resume and lost gaps included
        return out

    def kill(self) -> None:
        """As SIGKILL: the descriptors close, nothing is flushed or synced."""
        store = self.keeper.store
        for fd in (store._journal_fd, store._lock_fd):
            if fd is not None:
                os.close(fd)
        store._journal_fd = store._lock_fd = None


def test_resume_continues_seq_stays_silent_and_forges_what_happened_while_down(tmp_path: Path) -> None:
    a = Rig(tmp_path)
    a.poll({"keep": ("running", T0, T0 + 1, 0), "go": ("running", T0, T0 + 1, 0), "stop": ("running", T0, T0 + 1, 0)})
    last = a.events()[-1]["seq"]
    a.kill()
    b = Rig(tmp_path)
    b.t += 5_000 * MS
    out = b.poll({"keep": ("running", T0, T0 + 1, 0), "stop": ("exited", T0, T0 + 1, b.t - MS),
                  "new": ("running", b.t - 2 * MS, b.t - MS, 0)})
    assert [e.seq for e in out] == list(range(last + 2, last + 2 + len(out)))
    assert b.events()[0]["seq"] == last + 1 and b.events()[0]["type"] == "sensor.connected"
    types = [(e.type, e.container_id) for e in out]
    assert types[0] == ("sensor.gap", None)
    assert ("container.exited", "go") in types and ("container.destroyed", "go") in types
    assert not [t for t in types if t[1] == "keep"]
    assert [t for t in types if t[1] == "stop"] == [("container.exited", "stop")]
    gap = out[0]
    assert gap.info is not None and gap.info["cause"] == "sensor restart" and gap.info["runtime_restarted"] is False
    assert gap.window_ns[0] <= a.t < b.t <= gap.window_ns[1]
    for e in out[1:]:
        if e.synthetic:
            assert e.why == WHY_SENSOR_DOWN and e.window_ns[0] <= a.t, e
    forged_exit = next(e for e in out if e.type == "container.exited" and e.container_id == "go")
    assert forged_exit.synthetic
    assert not next(e for e in out if e.container_id == "stop").synthetic  # seen exited


def test_a_runtime_restart_while_down_is_named_in_the_gap(tmp_path: Path) -> None:
    a = Rig(tmp_path, instance=1)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    a.kill()
    b = Rig(tmp_path, instance=2)
    out = b.poll({"c": ("running", T0, T0 + 1, 0)})
    assert [e.type for e in out] == ["sensor.gap"]  # the runtime kept its containers: nothing else
    info = out[0].info or {}
    assert info["runtime_restarted"] is True
    assert info["runtime_before"]["instance"] == {"n": 1} and info["runtime_now"]["instance"] == {"n": 2}


def test_a_torn_last_journal_line_is_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    a.kill()
    with open(tmp_path / JOURNAL, "ab") as f:
        f.write(encode_line({"q": 99, "c": {"c": None}})[:-7])  # a power cut in the middle of an append
    with caplog.at_level(logging.WARNING, logger="crisensor"):
        b = Rig(tmp_path)
    assert "the journal's last line is torn" in caplog.text
    out = b.poll({"c": ("running", T0, T0 + 1, 0)})
    assert [e.type for e in out] == ["sensor.gap"]  # the torn line (which would forget c) is not used
    assert b.events()[0]["seq"] == a.events()[-1]["seq"] + 1


@pytest.mark.parametrize(("damage", "problem"), [
    ("snapshot", "snapshot: checksum mismatch"),
    ("journal-middle", "journal line 2: checksum mismatch"),
    ("journal-generation", "journal of generation"),
    ("format", "state format 2 is not 1"),
    ("no-snapshot", "journal: there is no snapshot beside it"),
])
def test_corrupt_state_is_set_aside_and_the_sensor_starts_fresh_with_a_gap(
        tmp_path: Path, damage: str, problem: str, caplog: pytest.LogCaptureFixture) -> None:
    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    a.poll({"c": ("running", T0, T0 + 1, 0), "d": ("running", T0, T0 + 1, 0)})
    a.kill()
    top = a.events()[-1]["seq"]
    snap, journal = tmp_path / SNAPSHOT, tmp_path / JOURNAL
    lines = journal.read_bytes().split(b"\n")
    if damage == "snapshot":
        snap.write_bytes(snap.read_bytes().replace(b'"seq"', b'"seQ"'))
    elif damage == "journal-middle":
        lines[1] = lines[1].replace(b'"q"', b'"Q"')
        journal.write_bytes(b"\n".join(lines))
    elif damage == "journal-generation":
        head = decode_line(lines[0])
        journal.write_bytes(b"\n".join([encode_line({**head, "journal_of": head["journal_of"] + 5})[:-1], *lines[1:]]))
    elif damage == "format":
        obj = decode_line(snap.read_bytes())
        snap.write_bytes(encode_line({**obj, "format": 2}))
    else:
        snap.unlink()
    with caplog.at_level(logging.ERROR, logger="crisensor"):
        b = Rig(tmp_path)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and problem in errors[0] and "set aside in" in errors[0], errors
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("corrupt-")]
    assert len(aside) == 1
    out = b.poll({"c": ("running", T0, T0 + 1, 0)})
    assert out[0].type == "sensor.gap" and (out[0].info or {})["cause"] == "state lost"
    assert problem in (out[0].info or {})["state_problem"]
    assert [(e.type, e.container_id) for e in out[1:]] == [("sandbox.ready", None), ("container.created", "c"),
                                                           ("container.running", "c")]
    assert not [e for e in out if e.type in ("container.exited", "container.destroyed")], "nothing invented"
    seqs = [e["seq"] for e in b.events()]
    assert seqs[0] == top + 1 and seqs == sorted(seqs), "seq continues above every readable line's"


def test_a_start_that_found_corrupt_state_and_died_before_its_first_list_still_owes_the_gap(tmp_path: Path) -> None:
    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    a.kill()
    (tmp_path / SNAPSHOT).write_bytes(b"garbage\n")
    b = Rig(tmp_path)
    b.kill()  # before any list
    c = Rig(tmp_path)
    out = c.poll({"c": ("running", T0, T0 + 1, 0)})
    assert out[0].type == "sensor.gap" and (out[0].info or {})["cause"] == "state lost"


def test_a_journal_left_behind_by_an_unfinished_compaction_is_ignored(tmp_path: Path) -> None:
    """Killed between renaming the new snapshot (G+1) and the new journal: the old journal names G."""
    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    old_journal = (tmp_path / JOURNAL).read_bytes()
    a.keeper.store.compact(capture(a.engine, a.keeper._image))
    a.kill()
    (tmp_path / JOURNAL).write_bytes(old_journal)  # as if the journal's rename never happened
    b = Rig(tmp_path)
    out = b.poll({"c": ("running", T0, T0 + 1, 0)})
    assert [e.type for e in out] == ["sensor.gap"]


def test_the_journal_is_compacted_and_the_state_stays_bounded(tmp_path: Path) -> None:
    a = Rig(tmp_path, compact_min_bytes=4096)
    for i in range(200):  # one container after another: create, run, exit, go
        a.poll({f"c{i}": ("running", T0, T0 + 1, 0)})
        a.poll({f"c{i}": ("exited", T0, T0 + 1, a.t)})
        a.poll({})
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()}
    assert a.keeper.store.gen > 5, "compacted again and again"
    assert sizes[JOURNAL] <= max(4096, sizes[SNAPSHOT]) + 4096 and sizes[SNAPSHOT] < 4096, sizes
    a.kill()
    b = Rig(tmp_path)
    assert b.poll({}) [0].type == "sensor.gap"


def test_a_second_keeper_on_the_same_dir_refuses(tmp_path: Path) -> None:
    a = Rig(tmp_path)
    with pytest.raises(StateDirError) as err:
        StateDir(str(tmp_path)).lock()
    assert err.value.exit_code == 1 and f"(pid {os.getpid()}, lock {tmp_path}/lock)" in str(err.value)
    a.keeper.close()
    StateDir(str(tmp_path)).lock()  # released


def test_records_are_read_by_field_name(tmp_path: Path) -> None:
    """A newer sensor reads an older layout: fields it lacks take their defaults, unknown ones go."""
    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    a.keeper.store.compact(capture(a.engine, a.keeper._image))
    a.kill()
    obj = decode_line((tmp_path / SNAPSHOT).read_bytes())
    lay = obj["layout"]
    i = lay["container"].index("was_listed")
    lay["container"] = [*lay["container"][:i], "someday", *lay["container"][i + 1:]]
    for rec in obj["c"].values():
        rec[i] = "ignored"
    (tmp_path / SNAPSHOT).write_bytes(encode_line(obj))
    (tmp_path / JOURNAL).unlink()
    b = Rig(tmp_path)
    assert [e.type for e in b.poll({"c": ("running", T0, T0 + 1, 0)})] == ["sensor.gap"]
    assert layout()["container"][i] == "was_listed" and Image().layout == layout()


def test_a_state_that_cannot_be_written_stops_the_sensor_like_a_failed_output(tmp_path: Path) -> None:
    import errno

    a = Rig(tmp_path)
    failures: list[Any] = []
    a.emitter.on_failure = failures.append

    def full(line: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    a.keeper.store.append = full  # type: ignore[method-assign]
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    assert failures and failures[0] is a.emitter.failure
    a.poll({"d": ("running", T0, T0 + 1, 0)})
    line = str(a.emitter.failure)
    assert line.startswith(f"cannot write the state to {tmp_path}/journal: [Errno 28] No space left on device")
    assert "events not written" in line


def test_every_field_of_the_engines_records_survives_a_restart(tmp_path: Path) -> None:
    """sensor.state persists sensor.diff's records field by field (by name): a field added to them
    must round-trip too, or this fails."""
    from dataclasses import fields

    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0), "d": ("created", T0 + 5, 0, 0)})
    a.poll({"c": ("exited", T0, T0 + 1, a.t - 5), "d": ("created", T0 + 5, 0, 0)})
    a.keeper.store.compact(capture(a.engine, a.keeper._image))
    a.kill()
    b = Rig(tmp_path)
    for old_table, new_table in ((a.engine._containers, b.engine._containers),
                                 (a.engine._sandboxes, b.engine._sandboxes)):
        assert sorted(old_table) == sorted(new_table)
        for oid, old in old_table.items():
            new = new_table[oid]
            for f in fields(old):
                if f.name not in ("gen", "base"):  # generations are per engine (restore renumbers them)
                    assert getattr(new, f.name) == getattr(old, f.name), (oid, f.name)


def test_a_batch_a_shutdown_cut_short_is_announced_after_the_restart(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The emitter stops writing mid-batch (SIGTERM): what was written is persisted as announced,
    the rest -- and the list's times -- are not, so the restarted sensor announces the rest, with
    windows that still hold the truth."""
    import sensor.output as output

    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    fin, born = a.t + 50 * MS, a.t + 60 * MS  # c exits, d starts, both before the next list
    real = output.Emitter.emit

    def cut(self: Any, events: Any, *, notify: bool = True) -> list[Event]:
        return real(self, list(events)[:1], notify=notify)  # one event out, then close() stopped it

    monkeypatch.setattr(output.Emitter, "emit", cut)
    a.poll({"c": ("exited", T0, T0 + 1, 0), "d": ("running", born, born + 1, 0)})  # c's finished_at unreported
    monkeypatch.setattr(output.Emitter, "emit", real)
    first_run = a.events()
    assert (first_run[-1]["type"], first_run[-1]["container_id"]) == ("container.created", "d")  # the rest was cut
    a.kill()
    b = Rig(tmp_path, t=a.t + 1_000 * MS)
    out = b.poll({"c": ("exited", T0, T0 + 1, 0), "d": ("running", born, born + 1, 0)})
    everything = first_run + [json.loads(e.to_json()) for e in out]
    per: dict[str, list[dict[str, Any]]] = {}
    for e in everything:
        if e["container_id"]:
            per.setdefault(e["container_id"], []).append(e)
    assert [e["type"] for e in per["c"]] == ["container.created", "container.running", "container.exited"]
    assert [e["type"] for e in per["d"]] == ["container.created", "container.running"]
    truth = {("c", "container.exited"): fin, ("d", "container.created"): born, ("d", "container.running"): born + 1}
    for (cid, type_), t in truth.items():
        e = next(e for e in per[cid] if e["type"] == type_)
        assert e["window_ns"][0] <= t <= e["window_ns"][1], (cid, type_, e["window_ns"], t)


def test_a_checksummed_record_of_the_wrong_shape_is_corrupt_not_a_crash(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    a.keeper.store.compact(capture(a.engine, a.keeper._image))
    a.kill()
    obj = decode_line((tmp_path / SNAPSHOT).read_bytes())
    i = obj["layout"]["container"].index("floor_ns")
    obj["c"]["c"][i] = "soon"  # a hand edit, checksummed again
    (tmp_path / SNAPSHOT).write_bytes(encode_line(obj))
    with caplog.at_level(logging.ERROR, logger="crisensor"):
        b = Rig(tmp_path)
    assert "a container record's floor_ns is str, not int" in caplog.text
    out = b.poll({"c": ("running", T0, T0 + 1, 0)})
    assert (out[0].info or {})["cause"] == "state lost"
    assert b.events()[0]["seq"] == a.events()[-1]["seq"] + 1


def test_the_process_sources_gap_is_not_taken_for_the_engines_batch(tmp_path: Path) -> None:
    """The process source emits its own sensor.gap from its own thread: it only moves seq (it is
    neither the resume batch nor read with the engine)."""
    a = Rig(tmp_path)
    a.poll({"c": ("running", T0, T0 + 1, 0)})
    a.kill()
    b = Rig(tmp_path)
    b.t += 10 * MS
    b.engine.begin(Snapshot((SB,), (ContainerSnap("c", "sb", "c", 0, "img", "ref", "running", T0),), b.t, b.t + 1))
    b.engine.finish({}, b.t + 2)  # the poller has finished its first list, not yet emitted it ...
    proc_gap = Event(type="sensor.gap", time_ns=b.t, window_ns=(b.t, b.t), observed_ns=b.t,
                     info={"source": "processes", "cause": "kernel buffer overflow"})
    out = b.emitter.emit([proc_gap])  # ... when the process source reports a loss
    assert out[0].info == proc_gap.info
    assert b.keeper.resumption is not None and not b.keeper.resumption.done
