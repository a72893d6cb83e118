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

from broker.matching import DEFAULT_MAX_BLOCK, Layout, Model
from broker.store.linkage_codec import (
    MEMBER_BYTES,
    StoredRecord,
    iter_holders,
    pack_member,
    record_index,
    stored_dsn,
    stored_pid,
)
from broker.store.linkage_counts import CANDIDATE, KNOWN, SAME, field_head, in_sample
from broker.store.linkage_evidence import (
    block_keys,
    raw_levels,
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
        "evidence",
        "evidence_at",
        "fit_attempt",
        "gen",
        "heads",
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
        "shift",
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
        # The same evidence by record number (b"" where none), which set_evidence keeps
        # equal to it: the loops over a block's members read it by list index, not by
        # hash lookup (docs/keyspace.md, "The link worker's scoring").
        self.evidence_at: list[bytes] = []
        self.blocks: dict[bytes, bytes] = {}
        self.basis: dict[int, bytes] = {}
        self.possible: dict[int, bytes] = {}
        self.layout: Layout | None = None
        self.model: Model | None = None
        self.fit_attempt = 0  # evidence records held when a fit was last tried (meta "fit")
        # Agreement-pattern counts over every pair that shares a sampled block (the fit's
        # input, broker.store.linkage_counts; meta "shift"), and their changes not yet in
        # a write set.
        self.shift = 0
        self.counts: dict[bytes, int] = {}
        self.heads: dict[int, bytes] = {}  # count field heads by (dataset, kind, key)
        self.pending: dict[bytes, int] = {}

    def set_evidence(self, rid: int, raw: bytes | None, *, count: bool = True) -> None:
        """Hold (or, with ``None``, drop) a record's evidence, keeping the block index exact.

        A record's index entries are appended, so a block's members stay in record order
        only when evidence is taken in record order; the probabilistic stage never relies
        on that order (it sorts by record number). With ``count`` (and a layout), the
        agreement-pattern counts follow: the old evidence's pairs are taken away, the new
        one's added (``False`` when the mirror is read from Redis, which holds them).
        """
        old = self.evidence.pop(rid, None)
        blocks = self.blocks
        counting = count and self.layout is not None
        if old is not None:
            self.evidence_at[rid] = b""
            member = pack_member(rid, 0)[:4]
            old_keys = block_keys(old)
            for key in old_keys:
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
                self._count(rid, old, old_keys, -1)
        if raw is None:
            return
        stored = self.records.get(rid)
        if stored is None:
            return
        keys = block_keys(raw)
        if counting:
            self._count(rid, raw, keys, 1)
        self.evidence[rid] = raw
        at = self.evidence_at
        if rid >= len(at):
            at.extend([b""] * (rid + 1 - len(at)))
        at[rid] = raw
        member = pack_member(rid, stored_dsn(stored))
        for key in keys:
            blocks[key] = blocks.get(key, b"") + member

    def take_pending(self) -> dict[bytes, int]:
        """The count changes made since the last call, for a write set."""
        pending, self.pending = self.pending, {}
        return pending

    def _count(self, rid: int, raw: bytes, keys: list[bytes], sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) the pairs of ``rid`` with ``raw`` as evidence
        (``keys``: its block index keys).

        Called while ``rid`` is out of the block index, so each block's members are the
        others. Only blocks in the sample are counted (:func:`in_sample` at ``shift``).
        As in a fit, a block of more than ``DEFAULT_MAX_BLOCK`` records makes no pairs:
        the record that takes a block past it takes the pairs of the others away (and the
        one that brings it back adds them again). Agreement vectors are read from the
        stored evidence in place (:func:`raw_levels`): decoding every neighbour's
        columns was most of the cost. The pairs' patterns are tallied first and each
        pattern's count changed once (:meth:`_add_all`).
        """
        layout = self.layout
        assert layout is not None  # only called while counting
        limit = DEFAULT_MAX_BLOCK
        shift = self.shift
        tally: dict[bytes, int] = {}
        for key in keys:
            if not in_sample(key, shift):
                continue
            others = [(r, d) for r, d in iter_holders(self.blocks.get(key, b"")) if r != rid]
            if len(others) < limit:
                j = key[0]
                columns, record = layout.blocks[j].columns, self.records[rid]
                self._tally_pairs(tally, j, columns, raw, record, others)
            elif len(others) == limit:
                self._add_all(tally, sign)  # in order: a count never goes below zero
                tally = {}
                self._count_block(key[0], others, -sign)
        self._add_all(tally, sign)

    def _count_block(self, j: int, members: list[tuple[int, int]], sign: int) -> None:
        """Add or take away every pair of one block's ``(record, dataset)`` members."""
        layout = self.layout
        assert layout is not None  # only called while counting
        columns = layout.blocks[j].columns
        ordered = sorted(members)
        tally: dict[bytes, int] = {}
        for i, (a, _) in enumerate(ordered):
            raw, record = self.evidence_at[a], self.records[a]
            self._tally_pairs(tally, j, columns, raw, record, ordered[i + 1 :])
        self._add_all(tally, sign)

    def resample(self, shift: int) -> None:
        """Count on the sample of ``shift`` (never less than the current one): the pairs
        of the blocks that leave the sample are taken away; nothing is counted again."""
        if shift <= self.shift:
            return
        if self.layout is not None:
            old = self.shift
            for key, members in self.blocks.items():
                if not in_sample(key, old) or in_sample(key, shift):
                    continue
                held = list(iter_holders(members))
                if 2 <= len(held) <= DEFAULT_MAX_BLOCK:
                    self._count_block(key[0], held, -1)
        self.shift = shift

    def _tally_pairs(
        self,
        tally: dict[bytes, int],
        j: int,
        columns: tuple[tuple[int, ...], ...],
        raw: bytes,
        record: bytes,
        others: list[tuple[int, int]],
    ) -> None:
        """Tally, under key ``j`` (its ``columns``), the pattern of each pair of a record
        (its evidence ``raw``, its stored ``record``) and one of the held records
        ``others`` (``(record, dataset)``), in their order."""
        dsn, pid = stored_dsn(record), stored_pid(record)
        candidate, known = self._head(CANDIDATE, j, 0), self._head(KNOWN, j, 0)
        same = self._head(SAME, j, dsn)
        evidence, records = self.evidence_at, self.records
        for b, dsn_b in others:
            levels = raw_levels(columns, raw, evidence[b])
            if dsn != dsn_b:
                field = candidate + levels
                tally[field] = tally.get(field, 0) + 1
                if pid and pid == stored_pid(records[b]):
                    field = known + levels
                    tally[field] = tally.get(field, 0) + 1
            else:
                field = same + levels
                tally[field] = tally.get(field, 0) + 1

    def _head(self, kind: int, j: int, dsn: int) -> bytes:
        """:func:`field_head`, made once per kind, key and dataset."""
        at = (dsn << 16) | (kind << 8) | j
        head = self.heads.get(at)
        if head is None:
            head = field_head(kind, j, dsn)
            self.heads[at] = head
        return head

    def _add_all(self, tally: dict[bytes, int], sign: int) -> None:
        """Change each count of ``tally`` by ``sign`` times its pairs, never below zero (a
        known match may have been counted before its records were linked, and taken away
        after): the same as changing it pair by pair, since every change has one sign."""
        counts, pending = self.counts, self.pending
        for key, pairs in tally.items():
            held = counts.get(key, 0)
            delta = max(sign * pairs, -held)
            if not delta:
                continue
            if held + delta:
                counts[key] = held + delta
            else:
                del counts[key]
            pending[key] = pending.get(key, 0) + delta

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
