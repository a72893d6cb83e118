"""Incremental linkage: records join persons through their strongest unambiguous match key.

This module decides; :class:`~broker.store.linkage_store.LinkageStore` holds. Each call
of :meth:`Linker.link`, :meth:`Linker.retract` or :meth:`Linker.replace_finish` reads
what it needs in one bulk round (rarely a few), decides in memory, and commits every
change in one atomic write, so a crash leaves a chunk applied whole or not at all.
docs/linkage.md describes the algorithm; docs/keyspace.md the storage.

The rules (DESIGN.md, "Linkage (broker)"):

* match keys are ranked, index 0 strongest;
* a token held by two records of a one-record-per-person dataset is *ambiguous* for that
  dataset: it links nothing to or from that dataset's records;
* a record joins the person reached by its strongest usable key; if that key reaches
  several persons that may be merged, they merge into the oldest (smallest) person id;
* a person never holds two records of one one-record-per-person dataset (the *twin
  guard*): a candidate that would break it is not used, and is recorded;
* a weaker key that points at another person is a *conflict*: recorded, never followed;
* person ids are stable; a change (retraction, correction, a token turning ambiguous)
  dissolves only the persons it touches and re-links their remaining records.

One linking worker at a time: every call holds the store's linkage lock.
"""

from __future__ import annotations

import functools
import json
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from broker.store.linkage_store import (
    CONFLICT_KINDS,
    INDEX_TOKEN_BYTES,
    MEMBER,
    NO_KEY,
    DatasetEntry,
    Fetched,
    LinkageMirror,
    LinkageStore,
    LinkedRecord,
    PersonId,
    StoredRecord,
    WriteSet,
    decode_members,
    encode_conflicts,
    encode_members,
    next_id,
    stored_pid,
)
from keys.derive import RecordRef, StoredToken
from keys.errors import BrokerError

__all__ = [
    "CONFLICT_KINDS",
    "DatasetInfo",
    "DatasetReport",
    "IncomingRecord",
    "LinkStats",
    "LinkageReport",
    "LinkedRecord",
    "Linker",
    "PersonId",
]


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What linkage needs to know of a dataset.

    Attributes:
        id: the dataset id (``org/name``).
        org: the owning organisation.
        one_record_per_person: the dataset declares one record per person.
        key_names: the match key names of its linkage spec, strongest first.
    """

    id: str
    org: str
    one_record_per_person: bool
    key_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """One record of a batch, tokens already re-keyed at rest.

    Attributes:
        ref: the record's opaque reference.
        tokens: one stored token per match key of the dataset (``None`` when absent).
        payload: the payload values, in the dataset's payload column order.
    """

    ref: RecordRef
    tokens: tuple[StoredToken | None, ...]
    payload: tuple[str | None, ...]


@dataclass(slots=True)
class LinkStats:
    """What one call did.

    Attributes:
        received: records (or references) the call was given.
        added: new records.
        changed: records whose tokens changed (re-linked).
        unchanged: records already held as given (payload may have been updated).
        retracted: records removed.
        relinked: records re-linked because a change touched their person.
        persons_created: persons created.
        persons_merged: persons merged into an older one.
        persons_dissolved: persons dissolved by a change and re-formed.
        conflicts: conflicts recorded for the records this call decided.
        twin_guard_blocks: candidate persons refused by the twin guard.
        ambiguous_tokens: net change in ambiguous (token, dataset) pairs.
    """

    received: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    retracted: int = 0
    relinked: int = 0
    persons_created: int = 0
    persons_merged: int = 0
    persons_dissolved: int = 0
    conflicts: int = 0
    twin_guard_blocks: int = 0
    ambiguous_tokens: int = 0


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """Linkage counts of one dataset.

    Attributes:
        id: dataset id.
        org: owning organisation.
        one_record_per_person: as declared.
        records: records held.
        linked_records: records in a person with a record of another dataset.
        ambiguous_tokens: tokens held by two or more of its records (when one per person).
    """

    id: str
    org: str
    one_record_per_person: bool
    records: int
    linked_records: int
    ambiguous_tokens: int


@dataclass(frozen=True, slots=True)
class LinkageReport:
    """The linkage as it stands.

    Attributes:
        records: records held, all datasets.
        persons: persons.
        linked_persons: persons with records of two or more datasets.
        links_by_key: records that joined their person through each match key.
        links_by_dataset_pair: persons holding records of both datasets of a pair
            (``"a|b"``, ids in sorted order).
        ambiguous_tokens: (token, dataset) pairs found ambiguous.
        conflicting_records: records with a recorded conflict between keys.
        conflicts_by_kind: the same, by kind (``key``, ``twin``, ``merge``).
        datasets: per dataset counts.
    """

    records: int
    persons: int
    linked_persons: int
    links_by_key: dict[str, int]
    links_by_dataset_pair: dict[str, int]
    ambiguous_tokens: int
    conflicting_records: int
    conflicts_by_kind: dict[str, int]
    datasets: list[DatasetReport] = field(default_factory=list)


_TWIN = CONFLICT_KINDS.index("twin")
_KEY = CONFLICT_KINDS.index("key")
_MERGE = CONFLICT_KINDS.index("merge")
_SLICE = 4_096
_MAX_ROUNDS = 32
_CHASE = 64
_KEY_BYTE = [bytes((k,)) for k in range(256)]


def _person_counters(members: Sequence[tuple[int, int]] | None) -> dict[str, int]:
    """Report counters one person contributes (shared: never change the result)."""
    if not members:
        return {}
    return _member_counters(tuple(d for _, d in members))


@functools.lru_cache(maxsize=4096)
def _member_counters(member_dsns: tuple[int, ...]) -> dict[str, int]:
    out = {"persons": 1}
    dsns = sorted(set(member_dsns))
    if len(dsns) > 1:
        out["linked_persons"] = 1
        for i, a in enumerate(dsns):
            for b in dsns[i + 1 :]:
                out[f"pair:{a}:{b}"] = 1
        for d in member_dsns:
            name = f"linked:{d}"
            out[name] = out.get(name, 0) + 1
    return out


@functools.lru_cache(maxsize=4096)
def _record_counters(dsn: int, link_key: int, cflags: int) -> dict[str, int]:
    """Report counters one record contributes (shared: never change the result)."""
    out = {f"n:{dsn}": 1}
    if link_key != NO_KEY:
        out[f"lk:{dsn}:{link_key}"] = 1
    if cflags:
        out["cfl"] = 1
        for c in range(len(CONFLICT_KINDS)):
            if cflags >> c & 1:
                out[f"cfl:{c}"] = 1
    return out


@functools.lru_cache(maxsize=4096)
def _joining_counters(member_dsns: tuple[int, ...], dsn: int, link_key: int) -> dict[str, int]:
    """Counter changes when a new record of ``dsn`` joins a person of ``member_dsns``
    through ``link_key`` (no members: it starts a person) — shared, never changed."""
    out = dict(_record_counters(dsn, link_key, 0))
    _tally(out, _member_counters((*member_dsns, dsn)), 1)
    if member_dsns:
        _tally(out, _member_counters(member_dsns), -1)
    return {name: value for name, value in out.items() if value}


def _tally(totals: dict[str, int], counters: dict[str, int], sign: int) -> None:
    """Add ``sign`` times ``counters`` to ``totals``."""
    for name, value in counters.items():
        totals[name] = totals.get(name, 0) + sign * value


def _payload_json(payload: tuple[str | None, ...]) -> bytes:
    """The stored form of a record's payload values."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _with_member(holders: bytes, member: bytes, rid: int) -> bytes:
    """``holders`` with ``member`` (of record ``rid``) added, kept in record number order.

    The order is the one the linking worker's mirror rebuilds from the records, so a
    decision never depends on whether the worker read the scope afresh.
    """
    if not holders or MEMBER.unpack_from(holders, len(holders) - MEMBER.size)[0] < rid:
        return holders + member
    return encode_members(sorted([*MEMBER.iter_unpack(holders), MEMBER.unpack(member)]))


def _ambiguous_for(holders: Sequence[tuple[int, int]], opp: dict[int, bool]) -> set[int]:
    """Datasets (one record per person) holding the token on two or more records."""
    seen: set[int] = set()
    out: set[int] = set()
    for _, d in holders:
        if d in seen:
            if opp.get(d, False):
                out.add(d)
        else:
            seen.add(d)
    return out


class _Session:
    """One call's view of the store: what it read, what it changed, and the decisions.

    The first read of an item is its original state; every change keeps that original
    so the report counters are updated by difference when the call commits.
    """

    def __init__(
        self,
        store: LinkageStore,
        datasets: dict[int, DatasetEntry],
        stats: LinkStats,
    ) -> None:
        self.store = store
        self.opp = {d.dsn: d.one_record_per_person for d in datasets.values()}
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
        self.next_rid = -1
        self.next_pid = -1
        self.next_bseq = -1
        self.complete = True

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
        got = self.store.fetch(tokens=t, refs=f, rids=r, pids=p, chase=_CHASE)
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
            if len(raw) > _CHASE * 6:
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
        key_byte = _KEY_BYTE
        for _ in range(_MAX_ROUNDS):
            persons = [pid for pid in self.dissolve if not self.knows_person(pid)]
            members = [rid for pid in self.dissolve for rid, _ in self.persons.get(pid, ())]
            tokens: set[bytes] = set()
            for rid in (*self.queue, *members):
                record = records.get(rid)
                if record is not None:
                    tokens.update(
                        key_byte[k] + t for k, t in enumerate(record.tokens) if t is not None
                    )
            holder_rids = {
                rid for t in tokens for rid, _ in MEMBER.iter_unpack(holders.get(t, b""))
            }
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
        member = MEMBER.pack(rid, dsn)
        for k, token in enumerate(record.tokens):
            if token is None:
                continue
            key = _KEY_BYTE[k] + token
            holders = held.get(key, b"")
            if key not in orig:
                orig[key] = holders
            if not holders:
                held[key] = member
                continue
            if opp:
                if len(holders) == MEMBER.size:
                    other, other_dsn = MEMBER.unpack(holders)
                    same = [other] if other_dsn == dsn and other != rid else []
                else:
                    same = [h for h, d in MEMBER.iter_unpack(holders) if d == dsn and h != rid]
                if len(same) == 1:
                    self.stats.ambiguous_tokens += 1
                    self.writes.count(f"amb:{dsn}", 1)
                    self._dissolve_if_linked_by(key, same[0])
            held[key] = _with_member(holders, member, rid)

    def remove_tokens(self, record: StoredRecord) -> None:
        """Unindex ``record``'s tokens; a token ceasing to be ambiguous re-links its holders."""
        dsn = record.dsn
        opp = self.opp.get(dsn, False)
        for k, token in enumerate(record.tokens):
            if token is None:
                continue
            key = _KEY_BYTE[k] + token
            self.touch_token(key)
            holders = [
                h for h in MEMBER.iter_unpack(self.holders.get(key, b"")) if h[0] != record.rid
            ]
            self.holders[key] = encode_members(holders)
            if opp and sum(1 for _, d in holders if d == dsn) == 1:
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
        for other, _ in MEMBER.iter_unpack(self.holders.get(key, b"")):
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
        ref_key = struct.pack(">H", record.dsn) + record.ref
        self.rids[ref_key] = 0
        self.writes.refs[ref_key] = 0
        self.writes.payloads[record.rid] = None
        self.writes.conflicts[record.rid] = None

    # Deciding ----------------------------------------------------------------------------------

    def decide_all(self) -> None:
        for rid in sorted(self.queue):
            record = self.records.get(rid)
            if record is not None:
                self.decide(record)
        self.queue.clear()

    def _compatible(self, a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
        opp = self.opp
        left = {d for _, d in a if opp.get(d, False)}
        return not any(d in left for _, d in b if opp.get(d, False))

    def decide(self, record: StoredRecord) -> None:
        """Join ``record`` to the person of its strongest usable key, or start one."""
        rid, dsn = record.rid, record.dsn
        opp = self.opp
        own_opp = opp.get(dsn, False)
        records, persons = self.records, self.persons
        chosen = 0
        chosen_key = NO_KEY
        conflicts: list[tuple[int, int, int, int]] = []
        for k, token in enumerate(record.tokens):
            if token is None:
                continue
            raw = self.holders.get(_KEY_BYTE[k] + token, b"")
            n = len(raw)
            if n <= 6:
                continue
            candidates: dict[int, int] = {}
            if n == 12:
                # The common case: one other holder.
                other_rid, other_dsn = MEMBER.unpack_from(raw, 0)
                if other_rid == rid:
                    other_rid, other_dsn = MEMBER.unpack_from(raw, 6)
                if other_dsn == dsn and own_opp:
                    continue
                other = records.get(other_rid)
                if other is None or not other.pid:
                    continue
                if chosen:
                    if other.pid != chosen:
                        conflicts.append((_KEY, chosen_key, k, other_rid))
                    continue
                candidates[other.pid] = other_rid
            else:
                holders = list(MEMBER.iter_unpack(raw))
                ambiguous = _ambiguous_for(holders, opp)
                if dsn in ambiguous:
                    continue
                for other_rid, other_dsn in holders:
                    if other_rid == rid or other_dsn in ambiguous:
                        continue
                    other = records.get(other_rid)
                    if other is not None and other.pid and other.pid not in candidates:
                        candidates[other.pid] = other_rid
            if not candidates:
                continue
            if chosen:
                for pid, other_rid in candidates.items():
                    if pid != chosen:
                        conflicts.append((_KEY, chosen_key, k, other_rid))
                continue
            usable: list[int] = []
            for pid in sorted(candidates):
                members = persons[pid]
                if own_opp and any(d == dsn for _, d in members):
                    conflicts.append((_TWIN, k, k, candidates[pid]))
                    self.stats.twin_guard_blocks += 1
                else:
                    usable.append(pid)
            if not usable:
                continue
            chosen, chosen_key = usable[0], k
            for pid in usable[1:]:
                if self._compatible(persons[chosen], persons[pid]):
                    self._merge(chosen, pid, k)
                else:
                    conflicts.append((_MERGE, k, k, candidates[pid]))
        self.touch_record(rid)
        if chosen:
            self.touch_person(chosen)
            persons[chosen].append((rid, dsn))
        else:
            chosen = self.new_pid()
            self.touch_person(chosen)
            persons[chosen] = [(rid, dsn)]
            self.stats.persons_created += 1
        record.pid = chosen
        record.link_key = chosen_key
        cflags = 0
        for kind, _, _, _ in conflicts:
            cflags |= 1 << kind
        if cflags or record.cflags:
            self.writes.conflicts[rid] = encode_conflicts(conflicts) if conflicts else None
        record.cflags = cflags
        self.stats.conflicts += len(conflicts)

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
                    self._count(_record_counters(*orig), -1)
                continue
            writes.records[rid] = record.encode()
            now = (record.dsn, record.link_key, record.cflags)
            if now != orig:
                if orig is not None:
                    self._count(_record_counters(*orig), -1)
                self._count(_record_counters(*now), 1)
        for pid, before_members in self.orig_persons.items():
            after_members = self.persons.get(pid)
            writes.persons[pid] = encode_members(after_members) if after_members else None
            was, now_counts = _person_counters(before_members), _person_counters(after_members)
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
        _tally(self.writes.counters, counters, sign)


class _CleanPath:
    """Links the records that raise none of the rules' exceptions straight on the mirror.

    A record is *clean* when it is held already with the same tokens, or when it is new
    and every one of its tokens is held by nobody, or only by records of other datasets
    that belong to one person — the same person for every key that reaches one — with at
    most one holder from each one-record-per-person dataset, and that person holds no
    record of the record's own dataset when that is one record per person. The rules
    then reduce to "join the person the strongest key reaches, or start one": no token
    turns ambiguous, no candidate is refused, merged or in conflict, so none of the
    session's bookkeeping is needed. The decision is the one a slice holding only this
    record would reach; the records that are not clean go through a session, in order.
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
        self.mirror = mirror
        self.dsn = entry.dsn
        self.own_opp = entry.one_record_per_person
        self.opp = {d.dsn: d.one_record_per_person for d in datasets.values()}
        self.prefix = struct.pack(">H", entry.dsn)
        self.bseq = bseq
        self.writes = writes
        self.stats = stats

    def decide(
        self, ref_key: bytes, tokens: tuple[bytes | None, ...]
    ) -> tuple[int, int, list[bytes]] | None:
        """How a clean record links, or ``None`` when it is not clean.

        Returns:
            ``(person, link key, index tokens)`` for a new record (person 0: a new one);
            ``(-1, rid, [])`` for a held record with the same tokens.
        """
        mirror = self.mirror
        rid = mirror.rids.get(ref_key, 0)
        if rid:
            held = mirror.records.get(rid)
            if held is None or StoredRecord.decode(rid, held).tokens != tokens:
                return None
            return -1, rid, []
        dsn, opp = self.dsn, self.opp
        holders, records = mirror.holders, mirror.records
        chosen, chosen_key = 0, NO_KEY
        last_other, last_pid = -1, 0
        keys: list[bytes] = []
        for k, token in enumerate(tokens):
            if token is None:
                continue
            key = _KEY_BYTE[k] + token
            keys.append(key)
            raw = holders.get(key)
            if not raw:
                continue
            if len(raw) == MEMBER.size:
                other, other_dsn = MEMBER.unpack(raw)
                if other_dsn == dsn:
                    return None
                if other != last_other:  # usually one record holds every matching token
                    last_other, last_pid = other, stored_pid(records[other])
                pid = last_pid
            else:
                seen: set[int] = set()
                pids: set[int] = set()
                for other, other_dsn in MEMBER.iter_unpack(raw):
                    if other_dsn == dsn or (other_dsn in seen and opp.get(other_dsn, False)):
                        return None
                    seen.add(other_dsn)
                    pids.add(stored_pid(records[other]))
                if len(pids) != 1:
                    return None
                pid = pids.pop()
            if not pid or (chosen and pid != chosen):
                return None
            if not chosen:
                chosen, chosen_key = pid, k
        if chosen and self.own_opp:
            if any(d == dsn for _, d in MEMBER.iter_unpack(mirror.persons[chosen])):
                return None
        return chosen, chosen_key, keys

    def link(self, ref: bytes, incoming: IncomingRecord, tokens: tuple[bytes | None, ...]) -> bool:
        """Link the record if it is clean, onto the mirror and into the writes.

        The mirror's token index is updated here and nowhere else: Redis keeps none.
        """
        ref_key = self.prefix + ref
        decision = self.decide(ref_key, tokens)
        if decision is None:
            return False
        mirror, writes, stats = self.mirror, self.writes, self.stats
        pid, link_key, keys = decision
        if pid < 0:
            rid = link_key
            stats.unchanged += 1
            record = StoredRecord.decode(rid, mirror.records[rid])
            if record.bseq != self.bseq:
                record.bseq = self.bseq
                mirror.records[rid] = writes.records[rid] = record.encode()
            writes.payloads[rid] = _payload_json(incoming.payload) if incoming.payload else None
            return True
        dsn = self.dsn
        stats.added += 1
        rid = mirror.next_rid = next_id(mirror.next_rid)
        member = MEMBER.pack(rid, dsn)
        holders = mirror.holders
        for key in keys:
            # The newest record number is the largest: appending keeps holders in order.
            holders[key] = holders.get(key, b"") + member
        if pid:
            before = mirror.persons[pid]
            dsns = tuple(d for _, d in MEMBER.iter_unpack(before))
            mirror.persons[pid] = writes.persons[pid] = before + member
        else:
            stats.persons_created += 1
            dsns = ()
            pid = mirror.next_pid = next_id(mirror.next_pid)
            mirror.persons[pid] = writes.persons[pid] = member
        _tally(writes.counters, _joining_counters(dsns, dsn, link_key), 1)
        record = StoredRecord(rid, dsn, pid, self.bseq, link_key, 0, ref, tokens)
        mirror.records[rid] = writes.records[rid] = record.encode()
        mirror.rids[ref_key] = writes.refs[ref_key] = rid
        if incoming.payload:
            writes.payloads[rid] = _payload_json(incoming.payload)
        return True


class Linker:
    """The incremental linkage engine over one :class:`LinkageStore`.

    Args:
        store: where records and persons live (its mirror holds the token index).
        now: clock (seconds), for waiting on the linkage lock.
        slice_size: records per atomic commit. Slices are decided onto the store's
            mirror; while one is decided, a worker thread writes the one before it to
            Redis, and a write runs only after the one before it succeeded.
    """

    def __init__(
        self,
        store: LinkageStore,
        *,
        now: Callable[[], float] = time.time,
        slice_size: int = _SLICE,
    ) -> None:
        self._store = store
        self._now = now
        self._slice = slice_size

    # Datasets ------------------------------------------------------------------------------

    def _datasets(self, dataset: DatasetInfo) -> tuple[DatasetEntry, dict[int, DatasetEntry]]:
        known = self._store.datasets()
        entry = next((d for d in known.values() if d.id == dataset.id), None)
        if (
            entry is None
            or entry.one_record_per_person != dataset.one_record_per_person
            or entry.key_names != dataset.key_names
            or entry.org != dataset.org
        ):
            entry = self._store.register_dataset(
                dataset.id,
                org=dataset.org,
                one_record_per_person=dataset.one_record_per_person,
                key_names=dataset.key_names,
            )
            known[entry.dsn] = entry
        return entry, known

    def _batch(self, batch_id: str) -> tuple[int, WriteSet]:
        """The batch's number, and the (staged) writes that register it when it is new."""
        writes = WriteSet()
        bseq = self._store.batch_number(batch_id)
        if bseq is None:
            bseq = self._store.mirror.next_bseq + 1
            writes.batches[batch_id] = bseq
            writes.meta["bseq"] = bseq
            self._store.stage(writes)
        return bseq, writes

    # Linking -------------------------------------------------------------------------------

    def link(
        self, dataset: DatasetInfo, records: Sequence[IncomingRecord], *, batch_id: str
    ) -> LinkStats:
        """Upsert ``records`` of ``dataset`` and link them against everything held.

        New references are added and linked; references already held with other tokens
        are re-linked; references held with the same tokens only refresh their payload
        and batch mark. Applying the same records again changes nothing else. Records are
        committed ``slice_size`` at a time (each commit atomic), so one script never holds
        Redis for long.

        Args:
            dataset: the dataset the records belong to.
            records: one chunk (thousands of records is the sweet spot).
            batch_id: the upload batch; :meth:`replace_finish` uses it.

        Returns:
            What the call did.
        """
        stats = LinkStats(received=len(records))
        store = self._store
        store.tune_server()
        token = store.acquire(now=self._now)
        committed: Future[None] | None = None
        try:
            entry, known = self._datasets(dataset)
            bseq, writes = self._batch(batch_id)
            with ThreadPoolExecutor(max_workers=1) as pool:
                for start in range(0, len(records), self._slice):
                    piece = records[start : start + self._slice]
                    self._link_slice(entry, known, piece, bseq, stats, writes)
                    if committed is not None and committed.done():
                        committed.result()
                    expected = store.next_generation()
                    committed = pool.submit(self._write, writes, expected, committed)
                    writes = WriteSet()
                if committed is not None:
                    committed.result()
        except BrokerError:
            # A write that failed in the worker thread is the cause: report it.
            if committed is not None and committed.done() and committed.exception():
                committed.result()
            raise
        finally:
            store.release(token)
        return stats

    def _write(self, writes: WriteSet, expected: int, before: Future[None] | None) -> None:
        """Write one slice to Redis after the previous slice (never after its failure)."""
        if before is not None:
            before.result()
        self._store.write(writes, expected)

    def _link_slice(
        self,
        entry: DatasetEntry,
        known: dict[int, DatasetEntry],
        records: Sequence[IncomingRecord],
        bseq: int,
        stats: LinkStats,
        writes: WriteSet,
    ) -> None:
        """Decide one slice in order onto the mirror, collecting its writes in ``writes``.

        Clean records (see :class:`_CleanPath`) are linked at once; a run of the others
        goes through one session, which must have decided before the next clean record
        is checked, since what it decides may make that record unclean.
        """
        prefix = struct.pack(">H", entry.dsn)
        latest: dict[bytes, IncomingRecord] = {}
        for incoming in records:
            latest[incoming.ref] = incoming
        width = len(entry.key_names)
        store = self._store
        clean = _CleanPath(store.mirror, entry, known, bseq, writes, stats)
        waiting: list[tuple[bytes, IncomingRecord, tuple[bytes | None, ...]]] = []
        for ref, incoming in latest.items():
            tokens = tuple(
                [None if t is None else t[:INDEX_TOKEN_BYTES] for t in incoming.tokens[:width]]
            )
            if len(tokens) < width:
                tokens += (None,) * (width - len(tokens))
            if waiting:
                if clean.decide(prefix + ref, tokens) is None:
                    waiting.append((ref, incoming, tokens))
                    continue
                self._link_by_session(entry, known, waiting, bseq, stats, writes)
                waiting = []
            if not clean.link(ref, incoming, tokens):
                waiting.append((ref, incoming, tokens))
        if waiting:
            self._link_by_session(entry, known, waiting, bseq, stats, writes)
        mirror = store.mirror
        writes.meta.update(rid=mirror.next_rid, pid=mirror.next_pid, bseq=mirror.next_bseq)

    def _link_by_session(
        self,
        entry: DatasetEntry,
        known: dict[int, DatasetEntry],
        items: Sequence[tuple[bytes, IncomingRecord, tuple[bytes | None, ...]]],
        bseq: int,
        stats: LinkStats,
        writes: WriteSet,
    ) -> None:
        """Link records by the full rules: index all, dissolve what changes touch, decide."""
        dsn = entry.dsn
        prefix = struct.pack(">H", dsn)
        session = _Session(self._store, known, stats)
        session.load(
            tokens=[_KEY_BYTE[k] + t for _, _, tokens in items for k, t in enumerate(tokens) if t],
            refs=[prefix + ref for ref, _, _ in items],
        )
        changes = session.writes
        old_tokens: list[bytes] = []
        for ref, _, tokens in items:
            held = session.records.get(session.rids.get(prefix + ref, 0))
            if held is not None and held.tokens != tokens:
                old_tokens += [_KEY_BYTE[k] + t for k, t in enumerate(held.tokens) if t is not None]
        if old_tokens:
            session.load(tokens=old_tokens)
        for ref, incoming, tokens in items:
            rid = session.rids.get(prefix + ref, 0)
            record = session.records.get(rid) if rid else None
            was_held = record is not None
            if record is not None:
                if record.tokens == tokens:
                    stats.unchanged += 1
                    if record.bseq != bseq:
                        session.touch_record(rid)
                        record.bseq = bseq
                else:
                    stats.changed += 1
                    session.touch_record(rid)
                    session.remove_tokens(record)
                    session.detach(record)
                    record.tokens = tokens
                    record.bseq = bseq
                    session.add_tokens(record)
                    session.queue.add(rid)
            else:
                stats.added += 1
                rid = session.new_rid()
                record = StoredRecord(rid, dsn, 0, bseq, NO_KEY, 0, ref, tokens)
                session.touch_record(rid)
                session.records[rid] = record
                session.rids[prefix + ref] = rid
                changes.refs[prefix + ref] = rid
                session.add_tokens(record)
                session.queue.add(rid)
            if incoming.payload:
                changes.payloads[rid] = _payload_json(incoming.payload)
            elif was_held:
                changes.payloads[rid] = None
        self._settle(session)
        decided = session.finish()
        self._store.stage(decided)
        writes.update(decided)

    def _settle(self, session: _Session) -> None:
        """Dissolve what changes touched, read the neighbourhood, decide, in that order."""
        for _ in range(_MAX_ROUNDS):
            if not session.dissolve:
                break
            session.load(pids=list(session.dissolve))
            session.load_neighbourhood()
            session.expand_dissolves()
        if session.queue and not session.complete:
            session.load_neighbourhood()
        session.decide_all()

    # Retracting ----------------------------------------------------------------------------

    def retract(
        self, dataset: DatasetInfo, refs: Sequence[RecordRef], *, batch_id: str
    ) -> LinkStats:
        """Remove records by reference and re-link the persons they were part of.

        Unknown references are ignored, so a retraction may be re-applied.

        Args:
            dataset: the dataset the references belong to.
            refs: references to remove.
            batch_id: the retraction batch (for the record; retraction needs no mark).

        Returns:
            What the call did.
        """
        stats = LinkStats(received=len(refs))
        self._store.tune_server()
        token = self._store.acquire(now=self._now)
        try:
            entry, known = self._datasets(dataset)
            prefix = struct.pack(">H", entry.dsn)
            for start in range(0, len(refs), self._slice):
                keys = [prefix + ref for ref in refs[start : start + self._slice]]
                session = _Session(self._store, known, stats)
                session.load(refs=keys)
                rids = [session.rids[k] for k in dict.fromkeys(keys) if session.rids.get(k)]
                self._retract_rids(session, rids)
        finally:
            self._store.release(token)
        return stats

    def _retract_rids(self, session: _Session, rids: Sequence[int]) -> None:
        session.load(rids=rids)
        for rid in rids:
            record = session.records.get(rid)
            if record is None:
                continue
            session.stats.retracted += 1
            session.load(pids=[record.pid] if record.pid else [])
            session.touch_record(rid)
            session.load(
                tokens=[_KEY_BYTE[k] + t for k, t in enumerate(record.tokens) if t is not None]
            )
            session.remove_tokens(record)
            session.detach(record)
            session.delete(record)
        self._settle(session)
        session.commit()

    def replace_finish(self, dataset: DatasetInfo, *, batch_id: str) -> LinkStats:
        """After a ``replace`` batch was linked: retract the dataset's records it lacked.

        Args:
            dataset: the dataset replaced.
            batch_id: the replace batch, every chunk of which went through :meth:`link`.

        Returns:
            What the call did (``retracted`` counts the records removed).
        """
        stats = LinkStats()
        self._store.tune_server()
        token = self._store.acquire(now=self._now)
        try:
            _, known = self._datasets(dataset)
            bseq = self._store.batch_number(batch_id)
            stale: list[int] = []
            for chunk in self._store.iter_dataset_records(dataset.id):
                stale.extend(r.rid for r in chunk if r.bseq != bseq)
            stats.received = len(stale)
            for start in range(0, len(stale), self._slice):
                session = _Session(self._store, known, stats)
                self._retract_rids(session, stale[start : start + self._slice])
        finally:
            self._store.release(token)
        return stats

    # Reading -------------------------------------------------------------------------------

    def report(self) -> LinkageReport:
        """The linkage report, from counters every write keeps up to date."""
        counters = self._store.counters()
        datasets = self._store.datasets()
        records = 0
        per_dataset: list[DatasetReport] = []
        for dsn, d in sorted(datasets.items(), key=lambda item: item[1].id):
            held = counters.get(f"n:{dsn}", 0)
            records += held
            per_dataset.append(
                DatasetReport(
                    id=d.id,
                    org=d.org,
                    one_record_per_person=d.one_record_per_person,
                    records=held,
                    linked_records=counters.get(f"linked:{dsn}", 0),
                    ambiguous_tokens=counters.get(f"amb:{dsn}", 0),
                )
            )
        by_key: dict[str, int] = {}
        by_pair: dict[str, int] = {}
        for name, value in counters.items():
            if not value:
                continue
            if name.startswith("lk:"):
                _, dsn_text, k_text = name.split(":")
                owner = datasets.get(int(dsn_text))
                k = int(k_text)
                names = owner.key_names if owner is not None else ()
                key = names[k] if k < len(names) else f"key{k}"
                by_key[key] = by_key.get(key, 0) + value
            elif name.startswith("pair:"):
                _, a_text, b_text = name.split(":")
                a, b = datasets.get(int(a_text)), datasets.get(int(b_text))
                if a is not None and b is not None:
                    pair = "|".join(sorted((a.id, b.id)))
                    by_pair[pair] = by_pair.get(pair, 0) + value
        return LinkageReport(
            records=records,
            persons=counters.get("persons", 0),
            linked_persons=counters.get("linked_persons", 0),
            links_by_key=by_key,
            links_by_dataset_pair=by_pair,
            ambiguous_tokens=sum(counters.get(f"amb:{dsn}", 0) for dsn in datasets),
            conflicting_records=counters.get("cfl", 0),
            conflicts_by_kind={
                kind: counters.get(f"cfl:{c}", 0) for c, kind in enumerate(CONFLICT_KINDS)
            },
            datasets=per_dataset,
        )

    def person_of(self, dataset_id: str, ref: RecordRef) -> PersonId | None:
        """Person of a record, or ``None`` when the record is not held."""
        return self._store.person_of(dataset_id, ref)

    def records_of_person(self, person: PersonId) -> list[LinkedRecord]:
        """Records of a person: dataset id, reference and payload of each."""
        return self._store.records_of_person(person)
