"""The clean path: a precondition check, then the rules, applied straight onto the mirror.

A session keeps the original of everything it touches and re-reads neighbourhoods,
because indexing a record may turn a token ambiguous and dissolve persons. For nearly
every record of a routine extract nothing of the sort happens, and this path links it
without that bookkeeping. It takes a record when:

* it is held already with the same tokens (idempotence: only payload and batch mark
  change); or
* it is new, none of its tokens is held by a record of its own dataset (so indexing it
  turns no token ambiguous and dissolves nothing: the precondition), and the rules
  (:func:`broker.linkage.rules.decide`, asked before the record is indexed) decide a
  plain join — one person, or a new one, with no merge and no conflict.

Its decision is then the one a session holding only this record would reach; every
other record goes through a session, in order. ``Linker(clean_path=False)`` sends those
records through one-record sessions instead, and the differential test holds the two
equal (tests/broker/test_linkage_paths.py).
"""

from __future__ import annotations

from broker.linkage.counters import joining_counters, tally
from broker.linkage.model import IncomingRecord, LinkStats
from broker.linkage.rules import Decision, Neighbourhood, decide
from broker.store.linkage_codec import (
    StoredRecord,
    held_by_dataset,
    index_keys,
    member_dsns,
    next_id,
    pack_member,
    ref_prefix,
    stored_pid,
)
from broker.store.linkage_store import DatasetEntry, LinkageMirror, WriteSet

__all__ = ["CleanPath"]


class CleanPath(Neighbourhood):
    """Links the clean records of one slice of one dataset onto the mirror.

    It is the :class:`~broker.linkage.rules.Neighbourhood` the rules read: the mirror
    as it stands (the record asked about is not indexed yet).
    """

    def __init__(
        self,
        mirror: LinkageMirror,
        entry: DatasetEntry,
        datasets: dict[int, DatasetEntry],
        bseq: int,
        writes: WriteSet,
        stats: LinkStats,
    ) -> None:
        super().__init__({d.dsn: d.one_record_per_person for d in datasets.values()})
        self.mirror = mirror
        self.dsn = entry.dsn
        self.prefix = ref_prefix(entry.dsn)
        self.bseq = bseq
        self.writes = writes
        self.stats = stats
        self._last_rid = -1
        self._last_pid = 0

    # What the rules read ------------------------------------------------------------------------

    def person_of(self, rid: int) -> int:
        if rid != self._last_rid:  # usually one record holds every matching token
            self._last_rid, self._last_pid = rid, stored_pid(self.mirror.records[rid])
        return self._last_pid

    def person_dsns(self, pid: int) -> tuple[int, ...]:
        return member_dsns(self.mirror.persons[pid])

    def person_holds(self, pid: int, dsn: int) -> bool:
        return held_by_dataset(self.mirror.persons[pid], dsn)

    # The check ---------------------------------------------------------------------------------

    def held_unchanged(self, ref: bytes, tokens: tuple[bytes | None, ...]) -> int:
        """The record number of ``ref`` when it is held with ``tokens``; 0 when new; -1
        when it is held with other tokens (a session re-links it)."""
        mirror = self.mirror
        rid = mirror.rids.get(self.prefix + ref, 0)
        if not rid:
            return 0
        held = mirror.records.get(rid)
        if held is None or StoredRecord.decode(rid, held).tokens != tokens:
            return -1
        return rid

    def decide(self, ref: bytes, tokens: tuple[bytes | None, ...]) -> Decision | int | None:
        """How a clean record links, or ``None`` when it is not clean.

        Returns:
            For a new record, the rules' (plain) decision; for a record held with the
            same tokens, its record number.
        """
        held_rid = self.held_unchanged(ref, tokens)
        if held_rid:
            return held_rid if held_rid > 0 else None
        return self._decide_new(tokens, index_keys(tokens))

    def _decide_new(self, tokens: tuple[bytes | None, ...], keys: list[bytes]) -> Decision | None:
        """The precondition, then the rules, for a new record with index keys ``keys``."""
        self._last_rid = -1
        dsn = self.dsn
        holders = self.mirror.holders
        held: list[bytes] = []
        present = 0
        for token in tokens:
            if token is None:
                held.append(b"")
                continue
            raw = holders.get(keys[present], b"")
            present += 1
            # The precondition: no holder of the record's own dataset.
            if raw and held_by_dataset(raw, dsn):
                return None
            held.append(raw)
        decision = decide(next_id(self.mirror.next_rid), dsn, held, self)
        return decision if decision.is_plain() else None

    # Linking ----------------------------------------------------------------------------------

    def link(self, ref: bytes, incoming: IncomingRecord, tokens: tuple[bytes | None, ...]) -> bool:
        """Link the record if it is clean, onto the mirror and into the writes.

        The mirror's token index is updated here and nowhere else: Redis keeps none.
        """
        held_rid = self.held_unchanged(ref, tokens)
        if held_rid < 0:
            return False
        mirror, writes, stats = self.mirror, self.writes, self.stats
        if held_rid:
            rid = held_rid
            stats.unchanged += 1
            record = StoredRecord.decode(rid, mirror.records[rid])
            if record.bseq != self.bseq:
                record.bseq = self.bseq
                mirror.records[rid] = writes.records[rid] = record.encode()
            writes.payloads[rid] = incoming.stored_payload() if incoming.stores_payload else None
            return True
        keys = index_keys(tokens)
        decision = self._decide_new(tokens, keys)
        if decision is None:
            return False
        dsn = self.dsn
        stats.added += 1
        rid = mirror.next_rid = next_id(mirror.next_rid)
        member = pack_member(rid, dsn)
        holders = mirror.holders
        for key in keys:
            # The newest record number is the largest: appending keeps holders in order.
            holders[key] = holders.get(key, b"") + member
        pid, link_key = decision.pid, decision.link_key
        if pid:
            before = mirror.persons[pid]
            dsns = member_dsns(before)
            mirror.persons[pid] = writes.persons[pid] = before + member
        else:
            stats.persons_created += 1
            dsns = ()
            pid = mirror.next_pid = next_id(mirror.next_pid)
            mirror.persons[pid] = writes.persons[pid] = member
        tally(writes.counters, joining_counters(dsns, dsn, link_key), 1)
        record = StoredRecord(rid, dsn, pid, self.bseq, link_key, 0, ref, tokens)
        ref_key = self.prefix + ref
        mirror.records[rid] = writes.records[rid] = record.encode()
        mirror.rids[ref_key] = writes.refs[ref_key] = rid
        if incoming.stores_payload:
            writes.payloads[rid] = incoming.stored_payload()
        return True
