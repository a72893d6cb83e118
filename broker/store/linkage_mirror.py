"""The linking worker's copy of one scope, and the write sets that change it.

The worker holding a scope's linkage lock reads neighbourhoods from a mirror of the
scope in its own memory (:class:`LinkageMirror`): the token index and the reference map
live only there, rebuilt from the records (which carry their tokens and reference) when
a worker first links a scope or finds that another worker linked it since. Redis stays
the one durable copy (:class:`~broker.store.linkage_store.LinkageStore`); the mirror is a
cache the lock keeps exact. The byte layout is :mod:`broker.store.linkage_codec`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.matching import DEFAULT_MAX_BLOCK, Layout, Model, RecordEvidence
from broker.store.linkage_codec import (
    MEMBER_BYTES,
    StoredRecord,
    iter_holders,
    pack_member,
    record_index,
    stored_dsn,
    stored_pid,
)
from broker.store.linkage_counts import CANDIDATE, KNOWN, SAME, pattern_field
from broker.store.linkage_evidence import (
    Cells,
    block_keys,
    cell_spans,
    decode_evidence,
    raw_agreement,
)

__all__ = ["Fetched", "LinkageMirror", "WriteSet"]


@dataclass(slots=True)
class Fetched:
    """What one bulk read returned.

    Attributes:
        holders: index key -> packed holders (empty when nobody holds it).
        rids: reference key -> record number (0 when not held).
        records: record number -> stored record.
        persons: person number -> packed members.
        next_rid: last record number allocated.
        next_pid: last person number allocated.
        next_bseq: last batch number allocated.
    """

    holders: dict[bytes, bytes]
    rids: dict[bytes, int]
    records: dict[int, StoredRecord]
    persons: dict[int, bytes]
    next_rid: int
    next_pid: int
    next_bseq: int


@dataclass(slots=True)
class WriteSet:
    """Every change of one call, committed atomically by ``LinkageStore.commit``.

    Attributes:
        holders: index key -> packed holders (``b""`` deletes the field).
        refs: reference key -> record number (0 deletes).
        records: record number -> encoded record (``None`` deletes).
        persons: person number -> packed members (``None`` deletes).
        payloads: record number -> JSON payload (``None`` deletes).
        conflicts: record number -> packed conflicts (``None`` deletes).
        evidence: record number -> stored probabilistic evidence (``None`` deletes).
        basis: record number -> basis of its probabilistic link (``None`` deletes).
        possible: record number -> its possible matches (``None`` deletes).
        meta: counters to set (``rid``, ``pid``, ``bseq``).
        batches: batch id -> batch number to register.
        counters: statistics field -> increment.
        layout: the scope's evidence layout (JSON) to store, once.
        model: a newly fitted model (JSON) to store, with the model itself.
        pattern_counts: agreement-pattern count field -> increment
            (:mod:`broker.store.linkage_counts`).
    """

    holders: dict[bytes, bytes] = field(default_factory=dict)
    refs: dict[bytes, int] = field(default_factory=dict)
    records: dict[int, bytes | None] = field(default_factory=dict)
    persons: dict[int, bytes | None] = field(default_factory=dict)
    payloads: dict[int, bytes | None] = field(default_factory=dict)
    conflicts: dict[int, bytes | None] = field(default_factory=dict)
    evidence: dict[int, bytes | None] = field(default_factory=dict)
    basis: dict[int, bytes | None] = field(default_factory=dict)
    possible: dict[int, bytes | None] = field(default_factory=dict)
    meta: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    layout: tuple[Layout, bytes] | None = None
    model: tuple[Model, bytes] | None = None
    pattern_counts: dict[bytes, int] = field(default_factory=dict)

    def count(self, name: str, delta: int) -> None:
        """Add ``delta`` to statistics field ``name``."""
        if delta:
            self.counters[name] = self.counters.get(name, 0) + delta

    def update(self, later: WriteSet) -> None:
        """Take in the changes of ``later`` (decided after these: its values win)."""
        self.holders.update(later.holders)
        self.refs.update(later.refs)
        self.records.update(later.records)
        self.persons.update(later.persons)
        self.payloads.update(later.payloads)
        self.conflicts.update(later.conflicts)
        self.evidence.update(later.evidence)
        self.basis.update(later.basis)
        self.possible.update(later.possible)
        self.layout = later.layout or self.layout
        self.model = later.model or self.model
        self.meta.update(later.meta)
        self.batches.update(later.batches)
        for name, delta in later.counters.items():
            self.count(name, delta)
        counts = self.pattern_counts
        for key, delta in later.pattern_counts.items():
            counts[key] = counts.get(key, 0) + delta


class LinkageMirror:
    """The linking worker's copy of one scope's linkage state, kept exact by the lock.

    Linking reads a record's neighbourhood: the holders of each of its tokens, their
    records and persons. Asked of Redis, that is one hash lookup per token, and the
    lookups, with the token index they need, were two thirds of Redis's CPU per record
    (docs/keyspace.md). The worker that holds the lock is the only writer, so it keeps
    what it needs in memory: records and persons as stored, the reference map and the
    token index. The last two exist only here, rebuilt from the records' own references
    and tokens when the mirror is read: Redis holds neither.

    The worker changes the mirror as it decides (``LinkageStore.stage``, or the linker's
    clean path directly) and writes Redis behind it, so the mirror may run ahead of
    Redis by the writes in flight; ``gen`` is the generation Redis will have once they
    land (``None``: unknown or a write failed — read it again).
    """

    __slots__ = (
        "basis",
        "blocks",
        "counts",
        "decoded",
        "evidence",
        "fit_attempt",
        "gen",
        "holders",
        "layout",
        "model",
        "next_bseq",
        "next_pid",
        "next_rid",
        "pending",
        "persons",
        "possible",
        "records",
        "rids",
        "spans",
    )

    def __init__(self) -> None:
        self.gen: int | None = None
        self.holders: dict[bytes, bytes] = {}
        self.rids: dict[bytes, int] = {}
        self.records: dict[int, bytes] = {}
        self.persons: dict[int, bytes] = {}
        self.next_rid = 0
        self.next_pid = 0
        self.next_bseq = 0
        # The probabilistic stage: evidence per record, the block index (blocking key
        # index byte + block token -> packed members, like the token index), link bases
        # and possible matches, and the fitted model.
        self.evidence: dict[int, bytes] = {}
        self.blocks: dict[bytes, bytes] = {}
        self.basis: dict[int, bytes] = {}
        self.possible: dict[int, bytes] = {}
        self.layout: Layout | None = None
        self.model: Model | None = None
        self.fit_attempt = 0  # evidence records held when a fit was last tried (meta "fit")
        # Agreement-pattern counts over every pair that shares a block (the fit's input,
        # broker.store.linkage_counts), and their changes not yet in a write set.
        self.counts: dict[bytes, int] = {}
        self.pending: dict[bytes, int] = {}
        # Records' evidence decoded since the last write set was staged: a slice's
        # neighbourhoods overlap, so most are decoded once instead of once per pair.
        self.decoded: dict[int, RecordEvidence] = {}
        self.spans: dict[int, Cells] = {}

    def set_evidence(self, rid: int, raw: bytes | None, *, count: bool = True) -> None:
        """Hold (or, with ``None``, drop) a record's evidence, keeping the block index exact.

        A record's index entries are appended, so a block's members stay in record order
        only when evidence is taken in record order; the probabilistic stage never relies
        on that order (it sorts by record number). With ``count`` (and a layout), the
        agreement-pattern counts follow: the old evidence's pairs are taken away, the new
        one's added (``False`` when the mirror is read from Redis, which holds them).
        """
        old = self.evidence.pop(rid, None)
        self.decoded.pop(rid, None)
        self.spans.pop(rid, None)
        blocks = self.blocks
        counting = count and self.layout is not None
        if old is not None:
            member = pack_member(rid, 0)[:4]
            for key in block_keys(old):
                held = blocks.get(key, b"")
                kept = b"".join(
                    held[i : i + MEMBER_BYTES]
                    for i in range(0, len(held), MEMBER_BYTES)
                    if held[i : i + 4] != member
                )
                if kept:
                    blocks[key] = kept
                else:
                    blocks.pop(key, None)
            if counting:
                self._count(rid, old, -1)
        if raw is None:
            return
        stored = self.records.get(rid)
        if stored is None:
            return
        if counting:
            self._count(rid, raw, 1)
        self.evidence[rid] = raw
        member = pack_member(rid, stored_dsn(stored))
        for key in block_keys(raw):
            blocks[key] = blocks.get(key, b"") + member

    def take_pending(self) -> dict[bytes, int]:
        """The count changes made since the last call, for a write set (which also ends
        the slice's cache of decoded evidence)."""
        pending, self.pending = self.pending, {}
        self.decoded, self.spans = {}, {}
        return pending

    def record_evidence(self, rid: int) -> RecordEvidence:
        """A held record's evidence, decoded (cached until the next write set is staged)."""
        record = self.decoded.get(rid)
        if record is None:
            blocks, cells = decode_evidence(self.evidence[rid])
            record = RecordEvidence(rid, str(stored_dsn(self.records[rid])), blocks, cells)
            self.decoded[rid] = record
        return record

    def _cells(self, rid: int) -> Cells:
        cells = self.spans.get(rid)
        if cells is None:
            cells = cell_spans(self.evidence[rid])
            self.spans[rid] = cells
        return cells

    def _count(self, rid: int, raw: bytes, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) the pairs of ``rid`` with ``raw`` as evidence.

        Called while ``rid`` is out of the block index, so each block's members are the
        others. As in a fit, a block of more than ``DEFAULT_MAX_BLOCK`` records makes no
        pairs: the record that takes a block past it takes the pairs of the others away
        (and the one that brings it back adds them again). Agreement vectors are read
        from the stored evidence in place (:func:`raw_agreement`): decoding every
        neighbour's columns was most of the cost.
        """
        limit = DEFAULT_MAX_BLOCK
        me = (rid, raw, cell_spans(raw))
        for key in block_keys(raw):
            others = [r for r, _ in iter_holders(self.blocks.get(key, b"")) if r != rid]
            if len(others) < limit:
                for other in others:
                    self._count_pair(key[0], me, self._held(other), sign)
            elif len(others) == limit:
                held = [self._held(other) for other in sorted(others)]
                for i, a in enumerate(held):
                    for b in held[i + 1 :]:
                        self._count_pair(key[0], a, b, -sign)

    def _held(self, rid: int) -> tuple[int, bytes, Cells]:
        return rid, self.evidence[rid], self._cells(rid)

    def _count_pair(
        self, j: int, a: tuple[int, bytes, Cells], b: tuple[int, bytes, Cells], sign: int
    ) -> None:
        layout = self.layout
        assert layout is not None  # only called while counting
        if a[0] > b[0]:
            a, b = b, a
        vector = raw_agreement(layout.blocks[j].columns, a[1], a[2], b[1], b[2])
        record_a, record_b = self.records[a[0]], self.records[b[0]]
        dsn = stored_dsn(record_a)
        if dsn != stored_dsn(record_b):
            self._add(pattern_field(CANDIDATE, j, vector), sign)
            pid = stored_pid(record_a)
            if pid and pid == stored_pid(record_b):
                self._add(pattern_field(KNOWN, j, vector), sign)
        else:
            self._add(pattern_field(SAME, j, vector, dsn), sign)

    def _add(self, key: bytes, delta: int) -> None:
        """Change one count, never below zero (a known match may have been counted
        before its records were linked, and taken away after)."""
        held = self.counts.get(key, 0)
        delta = max(delta, -held)
        if not delta:
            return
        if held + delta:
            self.counts[key] = held + delta
        else:
            del self.counts[key]
        self.pending[key] = self.pending.get(key, 0) + delta

    def add_record(self, rid: int, raw: bytes) -> None:
        """Take in one stored record, read in record number order (holders stay sorted)."""
        member, ref_key, keys = record_index(rid, raw)
        self.records[rid] = raw
        self.rids[ref_key] = rid
        holders = self.holders
        for key in keys:
            holders[key] = holders.get(key, b"") + member

    def fetch(
        self,
        tokens: Iterable[bytes],
        refs: Iterable[bytes],
        rids: Iterable[int],
        pids: Iterable[int],
        chase: int,
    ) -> Fetched:
        """The neighbourhood, as ``LinkageStore.fetch`` documents it."""
        limit = chase * MEMBER_BYTES
        held, records, persons = self.holders, self.records, self.persons
        wanted: dict[int, None] = {}
        out_holders: dict[bytes, bytes] = {}
        for token in tokens:
            raw = held.get(token, b"")
            out_holders[token] = raw
            if len(raw) <= limit:
                for rid, _ in iter_holders(raw):
                    wanted[rid] = None
        out_rids: dict[bytes, int] = {}
        for ref in refs:
            rid = self.rids.get(ref, 0)
            out_rids[ref] = rid
            if rid:
                wanted[rid] = None
        for rid in rids:
            if rid:
                wanted[rid] = None
        out_records: dict[int, StoredRecord] = {}
        people: dict[int, None] = {}
        for rid in wanted:
            stored = records.get(rid)
            if stored is not None:
                record = StoredRecord.decode(rid, stored)
                out_records[rid] = record
                if record.pid:
                    people[record.pid] = None
        for pid in pids:
            people[pid] = None
        out_persons = {pid: persons[pid] for pid in people if pid in persons}
        return Fetched(
            out_holders,
            out_rids,
            out_records,
            out_persons,
            self.next_rid,
            self.next_pid,
            self.next_bseq,
        )

    def apply(self, writes: WriteSet) -> None:
        """Take in a write set the worker decided (written to Redis separately)."""
        for rid, evidence in writes.evidence.items():  # while the record is still held
            if evidence is None and rid in self.evidence:
                self.set_evidence(rid, None)
        for token, holders in writes.holders.items():
            if holders:
                self.holders[token] = holders
            else:
                self.holders.pop(token, None)
        for ref, rid in writes.refs.items():
            if rid:
                self.rids[ref] = rid
            else:
                self.rids.pop(ref, None)
        for rid, raw in writes.records.items():
            if raw is None:
                self.records.pop(rid, None)
            else:
                self.records[rid] = raw
        for pid, members in writes.persons.items():
            if members is None:
                self.persons.pop(pid, None)
            else:
                self.persons[pid] = members
        self.next_rid = writes.meta.get("rid", self.next_rid)
        self.next_pid = writes.meta.get("pid", self.next_pid)
        self.next_bseq = writes.meta.get("bseq", self.next_bseq)
        self._apply_evidence(writes)

    def _apply_evidence(self, writes: WriteSet) -> None:
        """The probabilistic stage's part of :meth:`apply`."""
        for rid, evidence in writes.evidence.items():
            if evidence != self.evidence.get(rid):
                self.set_evidence(rid, evidence)
        for target, items in ((self.basis, writes.basis), (self.possible, writes.possible)):
            for rid, value in items.items():
                if value is None:
                    target.pop(rid, None)
                else:
                    target[rid] = value
        if writes.layout is not None:
            self.layout = writes.layout[0]
        if writes.model is not None:
            self.model = writes.model[0]
