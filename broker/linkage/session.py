"""A session: one run of records decided by the full rules, with every side effect.

A session reads the run's neighbourhood from the linking worker's mirror, indexes the
run's tokens (a token turning ambiguous dissolves what it linked), dissolves the persons
the changes touch, asks the rules (:func:`broker.linkage.rules.decide`) for each queued
record in record order, and applies each decision: the join, the merges, the conflicts.
It keeps the original state of everything it changes, so the report counters are
updated by difference when it finishes (:mod:`broker.linkage.counters`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from broker.linkage.counters import person_counters, prob_counter, record_counters, tally
from broker.linkage.model import LinkStats
from broker.linkage.rules import (
    NO_KEY,
    Neighbourhood,
    conflict_flags,
    decide,
    stays_ambiguous,
    turns_ambiguous,
)
from broker.store.linkage_codec import (
    StoredRecord,
    decode_members,
    encode_conflicts,
    encode_members,
    holder_count,
    index_key,
    index_keys,
    iter_holders,
    next_id,
    with_member,
    without_member,
)
from broker.store.linkage_store import DatasetEntry, Fetched, LinkageStore, WriteSet
from keys.errors import BrokerError

__all__ = ["CHASE", "MAX_ROUNDS", "Session"]

CHASE: Final = 64
"""A first read follows tokens with at most this many holders (the rest: a further round)."""
MAX_ROUNDS: Final = 32
"""Reads a session may take to close a neighbourhood before it gives up."""


class Session(Neighbourhood):
    """One call's view of the store: what it read, what it changed, and the decisions.

    The first read of an item is its original state; every change keeps that original
    so the report counters are updated by difference when the call commits. It is the
    :class:`~broker.linkage.rules.Neighbourhood` the rules read while it decides.
    """

    def __init__(
        self,
        store: LinkageStore,
        datasets: dict[int, DatasetEntry],
        stats: LinkStats,
    ) -> None:
        super().__init__({d.dsn: d.one_record_per_person for d in datasets.values()})
        self.store = store
        self.stats = stats
        self.holders: dict[bytes, bytes] = {}
        self.records: dict[int, StoredRecord] = {}
        self.persons: dict[int, list[tuple[int, int]]] = {}
        self.rids: dict[bytes, int] = {}
        self.orig_holders: dict[bytes, bytes] = {}
        self.orig_records: dict[int, tuple[int, int, int] | None] = {}
        self.orig_persons: dict[int, tuple[tuple[int, int], ...] | None] = {}
        self.absent_rids: set[int] = set()
        self.absent_pids: set[int] = set()
        self.queue: set[int] = set()
        self.dissolve: set[int] = set()
        self.reserved: list[int] = []
        self.deleted: set[int] = set()
        self.writes = WriteSet()
        self.decided: list[int] = []
        self.next_rid = -1
        self.next_pid = -1
        self.next_bseq = -1
        self.complete = True

    # What the rules read ------------------------------------------------------------------------

    def person_of(self, rid: int) -> int:
        record = self.records.get(rid)
        return 0 if record is None else record.pid

    def person_dsns(self, pid: int) -> Iterator[int]:
        return (d for _, d in self.persons[pid])

    def person_holds(self, pid: int, dsn: int) -> bool:
        return any(d == dsn for _, d in self.persons[pid])

    # Reading -----------------------------------------------------------------------------------

    def knows_record(self, rid: int) -> bool:
        return rid in self.records or rid in self.absent_rids or rid in self.deleted

    def knows_person(self, pid: int) -> bool:
        return pid in self.persons or pid in self.absent_pids or pid in self.orig_persons

    def load(
        self,
        *,
        tokens: Iterable[bytes] = (),
        refs: Iterable[bytes] = (),
        rids: Iterable[int] = (),
        pids: Iterable[int] = (),
    ) -> None:
        """Read what is not yet in the session (never overwriting what the call changed)."""
        t = [x for x in tokens if x not in self.holders]
        f = [x for x in refs if x not in self.rids]
        r = [x for x in rids if not self.knows_record(x)]
        p = [x for x in pids if not self.knows_person(x)]
        if not (t or f or r or p) and self.next_rid >= 0:
            return
        got = self.store.fetch(tokens=t, refs=f, rids=r, pids=p, chase=CHASE)
        self.absorb(got)
        self.absent_rids.update(x for x in r if x not in got.records)
        self.absent_pids.update(x for x in p if x not in got.persons)

    def absorb(self, got: Fetched) -> None:
        """Take in a read, keeping whatever the session already knows."""
        if self.next_rid < 0:
            self.next_rid, self.next_pid, self.next_bseq = got.next_rid, got.next_pid, got.next_bseq
        holders = self.holders
        for token, raw in got.holders.items():
            # Too many holders to follow: their records were not read (even where the
            # token's holders are taken from the previous slice instead of this read).
            if holder_count(raw) > CHASE:
                self.complete = False
            if token not in holders:
                holders[token] = raw
        for ref, rid in got.rids.items():
            self.rids.setdefault(ref, rid)
        for rid, record in got.records.items():
            if not self.knows_record(rid):
                self.records[rid] = record
        for pid, raw in got.persons.items():
            if not self.knows_person(pid):
                self.persons[pid] = decode_members(raw)

    def load_neighbourhood(self) -> None:
        """Read until every queued record's tokens, holders and their persons are here."""
        records, holders = self.records, self.holders
        for _ in range(MAX_ROUNDS):
            persons = [pid for pid in self.dissolve if not self.knows_person(pid)]
            members = [rid for pid in self.dissolve for rid, _ in self.persons.get(pid, ())]
            tokens: set[bytes] = set()
            for rid in (*self.queue, *members):
                record = records.get(rid)
                if record is not None:
                    tokens.update(index_keys(record.tokens))
            holder_rids = {rid for t in tokens for rid, _ in iter_holders(holders.get(t, b""))}
            known = records.keys() | self.absent_rids | self.deleted
            pids = {records[rid].pid for rid in holder_rids if rid in records} - {0}
            missing = (
                persons
                or any(r not in known for r in members)
                or not tokens <= holders.keys()
                or not holder_rids <= known
                or any(not self.knows_person(p) for p in pids)
            )
            if not missing:
                return
            self.load(tokens=tokens, rids=[*members, *holder_rids], pids=[*persons, *pids])
        raise BrokerError("linkage neighbourhood did not close")  # pragma: no cover

    # Changing ----------------------------------------------------------------------------------

    def touch_record(self, rid: int) -> None:
        if rid not in self.orig_records:
            record = self.records.get(rid)
            self.orig_records[rid] = (
                None if record is None else (record.dsn, record.link_key, record.cflags)
            )

    def touch_person(self, pid: int) -> None:
        if pid not in self.orig_persons:
            members = self.persons.get(pid)
            self.orig_persons[pid] = None if members is None else tuple(members)

    def touch_token(self, token: bytes) -> None:
        if token not in self.orig_holders:
            self.orig_holders[token] = self.holders.get(token, b"")

    def new_rid(self) -> int:
        self.next_rid = next_id(self.next_rid)
        return self.next_rid

    def new_pid(self) -> int:
        if self.reserved:
            self.reserved.sort()
            return self.reserved.pop(0)
        self.next_pid = next_id(self.next_pid)
        return self.next_pid

    def add_tokens(self, record: StoredRecord) -> None:
        """Index ``record``'s tokens; a token turning ambiguous dissolves what it linked."""
        dsn, rid = record.dsn, record.rid
        opp = self.opp.get(dsn, False)
        held, orig = self.holders, self.orig_holders
        for key in index_keys(record.tokens):
            holders = held.get(key, b"")
            if key not in orig:
                orig[key] = holders
            if opp and holders:
                other = turns_ambiguous(holders, rid, dsn)
                if other:
                    self.stats.ambiguous_tokens += 1
                    self.writes.count(f"amb:{dsn}", 1)
                    self._dissolve_if_linked_by(key, other)
            held[key] = with_member(holders, rid, dsn)

    def remove_tokens(self, record: StoredRecord) -> None:
        """Unindex ``record``'s tokens; a token ceasing to be ambiguous re-links its holders."""
        dsn = record.dsn
        opp = self.opp.get(dsn, False)
        for key in index_keys(record.tokens):
            self.touch_token(key)
            holders = without_member(self.holders.get(key, b""), record.rid)
            self.holders[key] = encode_members(holders)
            if opp and not stays_ambiguous(holders, dsn):
                self.stats.ambiguous_tokens -= 1
                self.writes.count(f"amb:{dsn}", -1)
                for rid, _ in holders:
                    other = self.records.get(rid)
                    if other is not None and other.pid:
                        self.dissolve.add(other.pid)

    def _dissolve_if_linked_by(self, key: bytes, rid: int) -> None:
        record = self.records.get(rid)
        if record is None or not record.pid:
            return
        for other, _ in iter_holders(self.holders.get(key, b"")):
            if other != rid:
                held = self.records.get(other)
                if held is not None and held.pid == record.pid:
                    self.dissolve.add(record.pid)
                    return

    def detach(self, record: StoredRecord) -> None:
        """Take ``record`` out of its person: the person is dissolved and re-formed."""
        if record.pid:
            self.dissolve.add(record.pid)

    def expand_dissolves(self) -> None:
        """Dissolve the marked persons: their records wait to be re-linked."""
        for pid in sorted(self.dissolve):
            members = self.persons.get(pid)
            if members is None:
                continue
            self.touch_person(pid)
            del self.persons[pid]
            self.reserved.append(pid)
            self.stats.persons_dissolved += 1
            for rid, _ in members:
                record = self.records.get(rid)
                if record is None or rid in self.deleted:
                    continue
                self.touch_record(rid)
                record.pid = 0
                if rid not in self.queue:
                    self.stats.relinked += 1
                    self.queue.add(rid)
        self.dissolve.clear()

    def delete(self, record: StoredRecord) -> None:
        """Remove ``record`` entirely (its person must be dissolved separately)."""
        self.touch_record(record.rid)
        self.deleted.add(record.rid)
        del self.records[record.rid]
        self.queue.discard(record.rid)
        ref_key = record.ref_key()
        self.rids[ref_key] = 0
        self.writes.refs[ref_key] = 0
        self.writes.payloads[record.rid] = None
        self.writes.conflicts[record.rid] = None
        mirror = self.store.mirror
        if record.rid in mirror.evidence:
            self.writes.evidence[record.rid] = None
        if record.rid in mirror.possible:
            self.writes.possible[record.rid] = None
        if record.rid in mirror.basis:
            self.writes.basis[record.rid] = None
            self.writes.count(prob_counter(record.dsn), -1)

    # Deciding ----------------------------------------------------------------------------------

    def decide_all(self) -> None:
        for rid in sorted(self.queue):
            record = self.records.get(rid)
            if record is not None:
                self.decide(record)
        self.queue.clear()

    def decide(self, record: StoredRecord) -> None:
        """Ask the rules where ``record`` goes, and apply the decision.

        A probabilistic link the record had is dropped (the cascade decides it afresh,
        and the probabilistic stage, which runs after, may link it again).
        """
        rid, dsn = record.rid, record.dsn
        self.decided.append(rid)
        if rid in self.store.mirror.basis and rid not in self.writes.basis:
            self.writes.basis[rid] = None
            self.writes.count(prob_counter(dsn), -1)
        holders = self.holders
        held = [
            b"" if t is None else holders.get(index_key(k, t), b"")
            for k, t in enumerate(record.tokens)
        ]
        decision = decide(rid, dsn, held, self)
        chosen = decision.pid
        for pid in decision.merges:
            self._merge(chosen, pid, decision.link_key)
        self.touch_record(rid)
        persons = self.persons
        if chosen:
            self.touch_person(chosen)
            persons[chosen].append((rid, dsn))
        else:
            chosen = self.new_pid()
            self.touch_person(chosen)
            persons[chosen] = [(rid, dsn)]
            self.stats.persons_created += 1
        record.pid = chosen
        record.link_key = decision.link_key
        conflicts = decision.conflicts
        cflags = conflict_flags(conflicts)
        if cflags or record.cflags:
            self.writes.conflicts[rid] = encode_conflicts(conflicts) if conflicts else None
        record.cflags = cflags
        self.stats.conflicts += len(conflicts)
        self.stats.twin_guard_blocks += decision.twin_blocks

    def _merge(self, into: int, other: int, key: int) -> None:
        """Merge person ``other`` into the older person ``into`` through match key ``key``.

        The record that had started ``other`` now counts as linked through ``key``, so
        every person keeps exactly one record that started it.
        """
        self.touch_person(into)
        self.touch_person(other)
        moving = self.persons.pop(other)
        self.load(rids=[rid for rid, _ in moving])
        for rid, _ in moving:
            record = self.records.get(rid)
            if record is not None:
                self.touch_record(rid)
                record.pid = into
                if record.link_key == NO_KEY:
                    record.link_key = key
        self.persons[into].extend(moving)
        self.stats.persons_merged += 1

    # Committing --------------------------------------------------------------------------------

    def commit(self) -> None:
        """Apply every change in one atomic write, report counters included."""
        self.store.commit(self.finish())

    def finish(self) -> WriteSet:
        """Every change as one write set, report counters included (nothing written yet)."""
        writes = self.writes
        for token, before in self.orig_holders.items():
            after = self.holders.get(token, b"")
            if after != before:
                writes.holders[token] = after
        for rid, orig in self.orig_records.items():
            record = self.records.get(rid)
            if record is None:
                writes.records[rid] = None
                if orig is not None:
                    self._count(record_counters(*orig), -1)
                continue
            writes.records[rid] = record.encode()
            now = (record.dsn, record.link_key, record.cflags)
            if now != orig:
                if orig is not None:
                    self._count(record_counters(*orig), -1)
                self._count(record_counters(*now), 1)
        for pid, before_members in self.orig_persons.items():
            after_members = self.persons.get(pid)
            writes.persons[pid] = encode_members(after_members) if after_members else None
            was, now_counts = person_counters(before_members), person_counters(after_members)
            if was != now_counts:
                self._count(was, -1)
                self._count(now_counts, 1)
        for pid in self.reserved:
            writes.persons[pid] = None
        if self.next_rid >= 0:
            writes.meta["rid"] = self.next_rid
            writes.meta["pid"] = self.next_pid
            writes.meta["bseq"] = self.next_bseq
        return writes

    def _count(self, counters: dict[str, int], sign: int) -> None:
        tally(self.writes.counters, counters, sign)
