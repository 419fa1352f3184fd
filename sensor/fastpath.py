"""The list fast path: the answers' bytes in, only what changed out (DESIGN.md section 7).

Theory of operation
-------------------
Steady state is the common case: at 10,000 containers nearly every poll lists exactly what the
last one did. Decoding such an answer into 10,000 protobuf messages and ``ContainerSnap`` values,
only for the diff engine to find them all unchanged, costs tens of ms per poll. This module
builds nothing for an object whose list entry did not change.

Rule 1 -- an entry's bytes are its identity. A ``ListContainers`` answer is field 1 repeated: one
serialized ``Container`` per entry (``ListPodSandbox``: one ``PodSandbox``). The snapshot value
of an entry is a pure function of its bytes (``client.container_snap(Container.FromString(e))``),
so an entry whose bytes equal an entry of the previous list has the value it had then. An answer
is split into entries by a one-field message (``repeated bytes`` in field 1, which has the same wire
format), at C speed, without decoding any entry.

Rule 2 -- three levels, cheapest first, per list:

* the whole answer equals the last one (one ``memcmp``): nothing changed. When both answers
  repeat and the engine has nothing else due (``DiffEngine.repeat``: settled, not blind), ``take``
  commits the list's times and that is the whole poll -- no ``begin``, no status, no ``finish``;
* else the entries are split and looked up among the last list's (dictionary lookups, in C): only
  entries that are new (bytes not in the last list) are decoded; IDs of the last list that are
  neither listed unchanged nor carried by a new entry are gone;
* the first list, a list with a repeated entry or ID (a runtime quirk), and any list that cannot
  be compared with the engine's state are decoded whole and go through ``DiffEngine.begin``:
  the plain path, exactly.

Rule 3 -- the engine sees a delta, and the same events come out. ``DiffEngine.begin_changes``
takes the changed and new entries (in list order) plus the gone IDs, and is equivalent to
``begin`` on the whole list: the engine already builds nothing for a listed object whose state and
``created_at`` match its record, and an unchanged entry is such an object. The delta is valid only
against the list the engine last committed with ``finish`` and only while no ``begin`` is pending
or was dropped since (``DiffEngine.stream_touched`` is not ``None``): the fast path adopts a list
as its reference once the engine has committed it (it sees ``last_success`` change), and otherwise
falls back to the plain path. One ``FastPath`` serves one engine, and every list that engine takes
goes through it. ``tests/perf/test_fastpath_equivalence.py`` checks the equivalence on arbitrary
snapshot sequences, event-stream events between them, and over a real socket.

Rule 4 -- what the event stream touched is shown again. Stream events between two lists change
records that the committed list showed otherwise (or did not show, or showed and the stream
removed). The engine names those IDs (``stream_touched``); their entries in the new list are
decoded and handed over as changed even where their bytes did not change, so ``begin_changes``
sees them as ``begin`` would (past ``diff.TOUCHED_MAX`` such IDs the list is decoded whole).
Before, any stream event sent the next list down the plain path: a reconciling list beside a busy
event stream decoded all 10,000 entries.

Costs: a steady-state poll costs the RPCs plus two byte comparisons and a few attribute writes
(after 250 ms idle the caches are cold, and each line of Python on that path costs microseconds);
a poll with k changes also hashes the answer's entries once, confirms each matching hash against
the kept answer (a few ms at 10,000) and decodes k entries. Memory: the last answer (no second
copy of its entries: an entry is known by its hash and its place in the answer, ``_Index``) and one
snapshot value per entry, shared with the engine's records.

Bytes that do not decode. Both paths decode with ``sensor.wire`` (``ListKind``), so an answer
that does not decode -- ``split_entries`` included -- raises ``MalformedResponse`` on either path,
before the engine is touched, and records with an empty ID are dropped by both (the fast path
leaves them out of its index, so it decodes and drops them again on every list that repeats them).
``tests/sensor/test_wire.py`` checks every decoding here against protobuf's own parser.

Caveat: a runtime that serializes an unchanged object differently from one list to the next (map
fields in random order, for example) defeats rule 1. The result stays correct (such an entry is
decoded and found unchanged by the engine) but costs as much as the plain path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from operator import add, and_, attrgetter, eq, lshift, not_, or_, rshift, sub
from typing import Any, Protocol

from sensor.diff import DiffEngine
from sensor.snapshot import Snapshot
from sensor.wire import CONTAINERS, SANDBOXES, ListKind, Tally, exited_ids, split_entries

__all__ = ["FastPath", "Listing", "PlainPath", "split_entries"]


@dataclass(frozen=True, slots=True)
class Listing:
    """One successful pair of list answers, undecoded."""

    sandboxes: bytes
    containers: bytes
    sent_ns: int
    received_ns: int


@dataclass(frozen=True, slots=True)
class _Index:
    """One list of one kind as the fast path remembers it. Its dicts are handed on (updated) to the
    index of the next list (``_Kind.delta``): an index is used once.

    No entry's bytes are kept apart from ``raw`` (rule 1, memory): an entry is known by its hash,
    and a hash that matches is confirmed by comparing the new entry with the bytes at its place in
    ``raw`` (``where``), in C. A hash that matches only by accident is then a changed entry, decoded."""

    raw: bytes
    snaps: dict[int, Any]  # hash of the entry bytes -> its snapshot value (ContainerSnap or SandboxSnap)
    where: dict[int, int]  # hash of the entry bytes -> its place in raw: offset << 32 | length
    ids: dict[str, int]  # ID -> hash of its entry (IDs are unique in an indexed list)
    empty: int = 0  # entries dropped for an empty ID (sensor.wire, rule 2): counted again when repeated


@dataclass(slots=True)
class _Delta:
    index: _Index
    changed: list[Any]  # snapshot values of new or changed entries, in list order
    gone: list[str]  # IDs listed in the reference list and absent now


#: the frame of an entry of ``bit_length`` b: tag ``0x0a`` + a minimal varint of its length
_FRAME = tuple(1 + max(1, -(-b // 7)) for b in range(65))
_MASK = 0xFFFFFFFF


def _places(entries: list[bytes], total: int) -> list[int] | None:
    """Where each entry's payload lies in the answer it was split from (``offset << 32 | length``),
    assuming the canonical layout: every entry framed as tag ``0x0a`` + minimal varint length, and
    nothing else. ``None`` when the sizes do not add up to ``total`` (a non-canonical answer: then
    it cannot be a reference, and is decoded whole on every poll -- correct, only slower).

    Every step maps a C function over the entries: at 10,000 a loop in Python cost several ms."""
    lens = list(map(len, entries))
    ends = list(accumulate(map(add, lens, map(_FRAME.__getitem__, map(int.bit_length, lens)))))
    if (ends[-1] if ends else 0) != total:
        return None
    return list(map(or_, map(lshift, map(sub, ends, lens), repeat(32)), lens))


def _index(raw: bytes, entries: list[bytes], snaps: list[Any]) -> _Index | None:
    """The index of a whole answer: its entries (split) and their values, in list order. Entries with
    an empty ID are left out (counted in ``empty``). ``None`` when an entry or an ID repeats (or two
    entries' hashes collide), or the answer is not in canonical layout (``_places``)."""
    places = _places(entries, len(raw))
    if places is None:
        return None
    hashes = list(map(hash, entries))
    if all(map(_ID, snaps)):  # the common case, in C
        by_hash = dict(zip(hashes, snaps, strict=True))
        ids = dict(zip(map(_ID, snaps), hashes, strict=True))
        where = dict(zip(hashes, places, strict=True))
        n = len(snaps)
    else:
        kept = [(h, p, s) for h, p, s in zip(hashes, places, snaps, strict=True) if s.id]
        by_hash = {h: s for h, _, s in kept}
        ids = {s.id: h for h, _, s in kept}
        where = {h: p for h, p, _ in kept}
        n = len(kept)
    if len(by_hash) != n or len(ids) != n:
        return None
    return _Index(raw, by_hash, where, ids, len(snaps) - n)


class _Kind:
    """The fast path over one kind of list (``ListContainers`` or ``ListPodSandbox``).

    Decoding, and what it drops and counts, is ``sensor.wire``'s (``ListKind``): both paths decode
    alike, so they give the same snapshot, and the same ``MalformedResponse`` for bytes that do not
    decode -- ``split_entries`` included.
    """

    def __init__(self, wire: ListKind[Any]) -> None:
        self.wire = wire

    def full(self, pb: Any, raw: bytes, tally: Tally) -> tuple[list[Any], _Index | None]:
        """Decode a whole answer; index it if no entry and no ID repeats (else ``None``).

        Entry by entry (split first, then each entry parsed on its own), never as one message: the
        same values and the same checks as ``decode_all`` (field 1 is the answer's only field), but
        without a parsed tree of the whole answer -- at 10,000 containers that tree was the largest
        allocation of a first snapshot, and the process's RSS never gave it back."""
        w = self.wire
        entries = split_entries(raw, w.method)
        snaps = [w.decode_one(pb, e, tally) for e in entries]
        kept = w.keep(snaps, tally)
        return kept, _index(raw, entries, snaps)

    def same(self, ref: _Index, tally: Tally) -> _Delta:
        """The delta of an answer equal to ``ref``'s: nothing changed (its empty IDs dropped again)."""
        if ref.empty:
            tally.dropped[(self.wire.kind, "empty_id")] += ref.empty
        return _Delta(ref, [], [])

    def delta(self, pb: Any, raw: bytes, ref: _Index, tally: Tally, force: set[str] | None = None,
              changed_entries: Callable[[list[bytes]], None] | None = None) -> _Delta | None:
        """What changed since ``ref``; ``None`` when this answer repeats an entry or an ID. ``force``:
        IDs whose entries count as changed even where their bytes did not change (the event stream
        touched their records: ``DiffEngine.stream_touched``). ``changed_entries`` is shown the new
        and changed entries' bytes before they are decoded (``FastPath.take``'s ``exits``).

        Consumes ``ref``: the new index reuses (updates) its dicts, so the caller must drop ``ref``.
        The caller has compared ``raw`` with ``ref.raw`` (``same`` when equal): not compared again.
        """
        w = self.wire
        entries = split_entries(raw, w.method)
        hashes = list(map(hash, entries))
        snaps, where, ids, old = ref.snaps, ref.where, ref.ids, ref.raw
        # unchanged: the same bytes at the place the hash was seen (a collision is a change), checked
        # for every entry at once in C -- the place each hash had (nowhere: past the old answer's end,
        # offset << 32 | length), its length and the bytes there
        at = list(map(where.get, hashes, repeat((len(old) + 1) << 32)))
        same = list(map(and_, map(eq, map(and_, at, repeat(_MASK)), map(len, entries)),
                        map(old.startswith, entries, map(rshift, at, repeat(32)))))
        forced = set(map(ids.get, force)) - {None} if force else None  # their entries' hashes in ref
        if forced:
            same = list(map(and_, same, map(not_, map(forced.__contains__, hashes))))
        new_at = list(compress(range(len(entries)), map(not_, same)))  # new or changed, in list order
        if changed_entries is not None and new_at:  # as early as the changes are known: the exits' calls
            changed_entries(list(map(entries.__getitem__, new_at)))
        places = _places(entries, len(raw))
        if places is None:
            return None
        kept_hashes = list(compress(hashes, same))
        kept = set(map(_ID, map(snaps.__getitem__, kept_hashes)))  # IDs listed unchanged
        if len(kept) != len(kept_hashes):
            return None  # an unchanged entry listed twice
        decoded = [w.decode_one(pb, entries[i], tally) for i in new_at]
        empty = sum(1 for s in decoded if not s.id)
        dropped = ()
        if empty:
            tally.dropped[(w.kind, "empty_id")] += empty
            dropped = [i for i, s in zip(new_at, decoded, strict=True) if not s.id]
            new_at = [i for i, s in zip(new_at, decoded, strict=True) if s.id]
            decoded = [s for s in decoded if s.id]
        changed = decoded
        new_ids = {s.id for s in changed}
        if len(new_ids) != len(changed) or not kept.isdisjoint(new_ids):
            return None  # an ID listed twice
        gone = ids.keys() - kept - new_ids
        for i in (ids.keys() - kept) if len(kept) != len(ids) else ():
            h = ids.pop(i)  # gone, or listed with a new entry
            del snaps[h]
        for i, s in zip(new_at, changed, strict=True):
            h = hashes[i]
            if h in snaps:
                return None  # a changed entry's hash collides with a kept one's: no reference, decode whole
            snaps[h] = s
            ids[s.id] = h
        where = dict(zip(hashes, places, strict=True))  # the kept and new hashes are distinct by now
        for i in dropped:  # an entry dropped for its empty ID is not indexed (decoded again if repeated)
            where.pop(hashes[i], None)
        return _Delta(_Index(raw, snaps, where, ids, empty), changed, list(gone))


_ID = attrgetter("id")
_CONTAINERS = _Kind(CONTAINERS)
_SANDBOXES = _Kind(SANDBOXES)


class _Client(Protocol):
    @property
    def pb(self) -> Any: ...

    def list(self) -> Snapshot: ...

    def list_bytes(self) -> tuple[bytes, bytes, int, int]: ...


class PlainPath:
    """The plain path: decode everything, ``DiffEngine.begin`` on the whole snapshot (the baseline)."""

    def list(self, client: _Client) -> Snapshot:
        return client.list()

    def begin(self, engine: DiffEngine, listing: Snapshot, pb: Any = None, tally: Tally | None = None) -> list[str]:
        return engine.begin(listing)  # client.list() decoded it, and counted what it dropped

    def take(self, engine: DiffEngine, listing: Snapshot, pb: Any = None, tally: Tally | None = None, *,
             exits: Callable[[list[str]], None] | None = None) -> list[str]:
        """``begin``: never takes a list whole, and gives no early hint of exits."""
        return self.begin(engine, listing)


class FastPath:
    """List through the fast path; see the module docstring. One per ``DiffEngine``.

    Use in place of ``client.list()`` + ``engine.begin(snapshot)``::

        listing = fast.list(client)           # raises CriCallError like client.list()
        need = fast.begin(engine, listing, client.pb)
        ... engine.finish(details, now) as usual
    """

    def __init__(self) -> None:
        self._ref: tuple[_Index, _Index] | None = None  # (sandboxes, containers) the engine committed
        self._ref_marker: object = None  # engine.last_success right after that commit
        self._pending: tuple[_Index, _Index] | None = None  # indexes of the list begun last
        self._pending_before: object = None  # engine.last_success when it was begun
        #: Polls by path taken (for benchmarks and metrics): "same", "delta", "full".
        self.counts = {"same": 0, "delta": 0, "full": 0}

    def list(self, client: _Client) -> Listing:
        sandboxes, containers, sent, received = client.list_bytes()
        return Listing(sandboxes, containers, sent, received)

    def reset(self) -> None:
        """Forget every list (the next one is decoded whole)."""
        self._ref = self._pending = None
        self._ref_marker = self._pending_before = None

    def _adopt(self, engine: DiffEngine) -> None:
        """Make the list begun last the reference if the engine has committed it since (event-stream
        events after that are the engine's to tell: ``stream_touched``)."""
        if self._pending is not None:
            marker = engine.last_success
            if (engine.stream_touched() is not None and marker is not None
                    and marker is not self._pending_before):
                self._ref, self._ref_marker = self._pending, marker
            self._pending = None

    def begin(self, engine: DiffEngine, listing: Listing, pb: Any, tally: Tally | None = None) -> list[str]:
        """``engine.begin`` for ``listing``, given as a delta where the engine's state allows it.

        Raises ``MalformedResponse`` (before the engine is touched) when an answer does not decode;
        counts what decoding dropped or read loosely in ``tally`` (``sensor.wire``)."""
        need = self._begin(engine, listing, pb, tally, whole=False)
        assert need is not None
        return need

    def take(self, engine: DiffEngine, listing: Listing, pb: Any, tally: Tally | None = None, *,
             exits: Callable[[list[str]], None] | None = None) -> list[str] | None:
        """``begin``, or ``None`` when ``listing`` repeats the reference byte for byte and the engine
        took it whole (``DiffEngine.repeat``): then there is nothing to ask and nothing to ``finish``.
        The poller's steady state: two ``memcmp``s and a few attribute writes.

        ``exits`` is told, before the delta's entries are decoded, the IDs of new or changed entries
        that show the container exited (``wire.exited_ids``), but those the event stream touched
        (it may have announced their exits): nearly all of the exits ``begin`` will say need a
        status, so the caller can ask them meanwhile. Only a hint: ``need`` is what counts."""
        return self._begin(engine, listing, pb, tally, whole=True, exits=exits)

    def _begin(self, engine: DiffEngine, listing: Listing, pb: Any, tally: Tally | None, *, whole: bool,
               exits: Callable[[list[str]], None] | None = None) -> list[str] | None:
        tally = Tally() if tally is None else tally
        self._adopt(engine)
        ref = self._ref
        before = engine.last_success
        self._ref = None  # consumed by a delta; a fallback rebuilds from the whole list
        touched = engine.stream_touched()
        if (ref is not None and touched is not None and before is self._ref_marker
                and (touched[0] or engine.table_sizes()[0] == len(ref[1].ids))):  # nothing else moved it
            force_c, force_sb = touched  # rule 4: what the event stream touched is decoded again
            # rule 2's first level, each answer compared once: the steady state costs two memcmps
            same_sb, same_c = listing.sandboxes == ref[0].raw, listing.containers == ref[1].raw
            if whole and same_sb and same_c and engine.repeat(listing.sent_ns, listing.received_ns):
                for kind, index in ((_SANDBOXES, ref[0]), (_CONTAINERS, ref[1])):
                    if index.empty:  # dropped again, as by a delta (sensor.wire, rule 2)
                        tally.dropped[(kind.wire.kind, "empty_id")] += index.empty
                self._ref, self._ref_marker = ref, engine.last_success  # still the reference, now committed
                self.counts["same"] += 1
                return None
            seen = Tally()  # merged only if the delta is taken: a fallback decodes (and counts) again
            sb = (_SANDBOXES.same(ref[0], seen) if same_sb and not force_sb
                  else _SANDBOXES.delta(pb, listing.sandboxes, ref[0], seen, force_sb))
            hint = None
            if exits is not None:
                def hint(entries: list[bytes]) -> None:
                    ids = exited_ids(entries)
                    if force_c:
                        ids = [i for i in ids if i not in force_c]
                    if ids:
                        exits(ids)
            cs = None if sb is None else (_CONTAINERS.same(ref[1], seen) if same_c and not force_c
                                          else _CONTAINERS.delta(pb, listing.containers, ref[1], seen, force_c, hint))
            if sb is not None and cs is not None:
                c_index = cs.index
                changes = Snapshot(tuple(sb.changed), tuple(cs.changed), listing.sent_ns, listing.received_ns)
                need = engine.begin_changes(changes, gone_containers=cs.gone, gone_sandboxes=sb.gone,
                                            named=lambda: {s.sandbox_id for s in c_index.snaps.values()})
                if need is not None:
                    self.counts["same" if same_sb and same_c else "delta"] += 1
                    self._pending, self._pending_before = (sb.index, cs.index), before
                    if seen:
                        tally.merge(seen)
                    return need
        self.counts["full"] += 1
        sandboxes, sb_index = _SANDBOXES.full(pb, listing.sandboxes, tally)
        containers, c_index2 = _CONTAINERS.full(pb, listing.containers, tally)
        need = engine.begin(Snapshot(tuple(sandboxes), tuple(containers), listing.sent_ns, listing.received_ns))
        if sb_index is not None and c_index2 is not None:
            self._pending, self._pending_before = (sb_index, c_index2), before
        else:
            self._pending = None
            self._ref = None  # a list with repeats cannot serve as a reference
        return need


def snapshot_of(listing: Listing, pb: Any, tally: Tally | None = None) -> Snapshot:
    """The plain snapshot of a listing (decode everything): what ``CriClient.list`` returns."""
    return Snapshot(tuple(SANDBOXES.decode(pb, listing.sandboxes, tally)),
                    tuple(CONTAINERS.decode(pb, listing.containers, tally)), listing.sent_ns, listing.received_ns)
