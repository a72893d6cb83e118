"""All Redis access of the linkage: records, persons, payloads, conflicts and counters.

The layout is docs/keyspace.md ("Linkage"). Every key of one linkage scope shares the
hash tag ``{scope}``, so one Lua script commits a slice's changes atomically (a Lua
script runs whole or not at all, and the AOF records its effects as one MULTI/EXEC
block). Internally records and persons are small integers (``rid``, ``pid``); buckets
are small hashes that Redis keeps as listpacks, so a field costs tens of bytes where a
plain key costs about a hundred.

The worker holding a scope's linkage lock reads neighbourhoods from a mirror of the
scope in its own memory (:class:`LinkageMirror`): the token index and the reference map
live only there, rebuilt from the records (which carry their tokens and reference) when
a worker first links a scope or finds that another worker linked it since. Redis stays
the one durable copy; the mirror is a cache the lock keeps exact.

Binary formats (all integers big-endian):

* index token (mirror only): ``k`` (1 byte, match key index) + the first 10 bytes of the
  stored token;
* reference map key (mirror only): ``dsn u16 + ref`` (the whole reference: references
  are chosen by the uploader, so a prefix could collide);
* holders (value in the mirror's token index): ``(rid u32, dsn u16)`` per record holding
  the token, in record number order;
* record: ``dsn u16 | pid u32 | bseq u32 | link_key u8 | conflict kinds u8 | ref 16 |``
  ``n u8 | mask u32 |``
  then 10 bytes per present token;
* person: ``(rid u32, dsn u16)`` per member, in the order they joined;
* conflicts: ``(kind u8, strong key u8, weak key u8, other rid u32)`` per conflict.

This module knows formats and Redis; it decides nothing (broker/linkage.py does).
"""

from __future__ import annotations

import json
import logging
import secrets
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NewType, cast

import redis

from broker.store import keyspace
from broker.store.batches import get_batch
from broker.store.client import Store
from keys.derive import RecordRef
from keys.errors import BrokerError

__all__ = [
    "CONFLICT_KINDS",
    "INDEX_TOKEN_BYTES",
    "MEMBER",
    "NO_KEY",
    "ConflictEntry",
    "DatasetEntry",
    "Fetched",
    "LinkageBusyError",
    "LinkageMirror",
    "LinkageStore",
    "LinkedRecord",
    "PersonId",
    "StoredRecord",
    "WriteSet",
    "decode_conflicts",
    "decode_members",
    "drop_stale_locks",
    "encode_conflicts",
    "encode_members",
    "latest_quality_grades",
    "next_id",
    "stored_pid",
]

logger = logging.getLogger(__name__)

PersonId = NewType("PersonId", int)
"""A person: a stable small integer, never reused for another person."""

INDEX_TOKEN_BYTES = 10
"""Bytes of a stored token the index keeps (80 bits: 16 in the bucket, 64 in the field)."""
NO_KEY = 255
"""``link_key`` of a record that started its person rather than joining one."""
CONFLICT_KINDS: tuple[str, ...] = ("key", "twin", "merge")
"""Conflict kinds by code: a weaker key reached another person; the twin guard refused a
candidate; the strongest key reached persons that could not be merged."""

# The ziplist names: Redis 7 and later keep them as aliases of the listpack settings.
_LISTPACK_TUNING = {"hash-max-ziplist-entries": 512, "hash-max-ziplist-value": 256}
_REC = struct.Struct(">HIIBB16sBI")
MEMBER = struct.Struct(">IH")
"""One token holder or person member: ``rid u32, dsn u16``."""
_CONFLICT = struct.Struct(">BBBI")
_U32 = struct.Struct(">I")
_DSN = struct.Struct(">H")
_LEN = struct.Struct(">II")
_SCAN_STEP = 128
_KEY_BYTES = [bytes((k,)) for k in range(256)]
_LOCK_MS = 120_000

_LUA_WRITE = r"""
local base = ARGV[1]
local meta = base .. 'meta'
if tonumber(redis.call('HGET', meta, 'gen') or '0') ~= tonumber(ARGV[2]) then
  return redis.error_reply('STALE the linkage changed since this worker read it')
end
local function by_id(section, letter)
  local prefix = base .. letter .. ':'
  local cur, sets, dels = nil, {}, {}
  local function flush()
    if cur then
      if #sets > 0 then redis.call('HSET', prefix .. cur, unpack(sets)) end
      if #dels > 0 then redis.call('HDEL', prefix .. cur, unpack(dels)) end
    end
    sets, dels = {}, {}
  end
  local p = 1
  while p <= #section do
    local n = struct.unpack('>I4', section, p + 4)
    local b = string.sub(section, p, p + 2)
    if b ~= cur then flush(); cur = b end
    if n == 0 then
      dels[#dels + 1] = string.sub(section, p + 3, p + 3)
    else
      sets[#sets + 1] = string.sub(section, p + 3, p + 3)
      sets[#sets + 1] = string.sub(section, p + 8, p + 7 + n)
    end
    p = p + 8 + n
  end
  flush()
end
by_id(ARGV[3], 'R')
by_id(ARGV[4], 'P')
by_id(ARGV[5], 'Y')
by_id(ARGV[6], 'C')
local nh = tonumber(ARGV[7])
local a = 8
for _ = 1, nh do
  redis.call('HSET', base .. ARGV[a], ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end
while a <= #ARGV do
  redis.call('HINCRBY', base .. 'stats', ARGV[a], ARGV[a + 1])
  a = a + 2
end
return redis.call('HINCRBY', meta, 'gen', 1)
"""

_LUA_UNLOCK = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LinkageBusyError(BrokerError):
    """Another worker holds the linkage lock of this scope."""

    exit_code = 27
    status_code = 503
    code = "linkage_busy"


@dataclass(frozen=True, slots=True)
class DatasetEntry:
    """A dataset as the linkage registers it: its small number and its declaration."""

    dsn: int
    id: str
    org: str
    one_record_per_person: bool
    key_names: tuple[str, ...]


@dataclass(slots=True)
class StoredRecord:
    """The engine's working copy of one record.

    Attributes:
        rid: record number.
        dsn: dataset number.
        pid: person number (0 while the record waits to be re-linked).
        bseq: number of the last batch that carried the record.
        link_key: match key through which it joined its person, or :data:`NO_KEY`.
        cflags: bit ``c`` set when a conflict of kind ``CONFLICT_KINDS[c]`` is recorded.
        ref: its reference.
        tokens: index tokens (10 bytes) per match key, ``None`` where absent.
    """

    rid: int
    dsn: int
    pid: int
    bseq: int
    link_key: int
    cflags: int
    ref: bytes
    tokens: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        """The stored form."""
        mask = 0
        present: list[bytes] = []
        for k, token in enumerate(self.tokens):
            if token is not None:
                mask |= 1 << k
                present.append(token)
        head = _REC.pack(
            self.dsn,
            self.pid,
            self.bseq,
            self.link_key,
            self.cflags,
            self.ref,
            len(self.tokens),
            mask,
        )
        return head + b"".join(present)

    @classmethod
    def decode(cls, rid: int, data: bytes) -> StoredRecord:
        """Parse the stored form."""
        dsn, pid, bseq, link_key, cflags, ref, n, mask = _REC.unpack_from(data)
        pos = _REC.size
        tokens: list[bytes | None] = []
        for k in range(n):
            if mask >> k & 1:
                tokens.append(data[pos : pos + INDEX_TOKEN_BYTES])
                pos += INDEX_TOKEN_BYTES
            else:
                tokens.append(None)
        return cls(rid, dsn, pid, bseq, link_key, cflags, ref, tuple(tokens))


@dataclass(frozen=True, slots=True)
class ConflictEntry:
    """One recorded conflict, for review.

    Attributes:
        kind: one of :data:`CONFLICT_KINDS`.
        strong_key: index of the key the record followed.
        weak_key: index of the key that pointed elsewhere.
        record: the record that was decided.
        other: a record of the person it did not join.
    """

    kind: str
    strong_key: int
    weak_key: int
    record: LinkedRecord
    other: LinkedRecord


@dataclass(frozen=True, slots=True)
class LinkedRecord:
    """A record as releases see it.

    Attributes:
        dataset: dataset id.
        ref: the record's reference.
        payload: payload values in the dataset's payload column order.
    """

    dataset: str
    ref: RecordRef
    payload: tuple[str | None, ...]


@dataclass(slots=True)
class Fetched:
    """What one bulk read returned.

    Attributes:
        holders: index token -> packed holders (empty when nobody holds it).
        rids: ``dsn u16 + ref`` -> record number (0 when not held).
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
    """Every change of one call, committed atomically by :meth:`LinkageStore.commit`.

    Attributes:
        holders: index token -> packed holders (``b""`` deletes the field).
        refs: ``dsn u16 + ref`` -> record number (0 deletes).
        records: record number -> encoded record (``None`` deletes).
        persons: person number -> packed members (``None`` deletes).
        payloads: record number -> JSON payload (``None`` deletes).
        conflicts: record number -> packed conflicts (``None`` deletes).
        meta: counters to set (``rid``, ``pid``, ``bseq``).
        batches: batch id -> batch number to register.
        counters: statistics field -> increment.
    """

    holders: dict[bytes, bytes] = field(default_factory=dict)
    refs: dict[bytes, int] = field(default_factory=dict)
    records: dict[int, bytes | None] = field(default_factory=dict)
    persons: dict[int, bytes | None] = field(default_factory=dict)
    payloads: dict[int, bytes | None] = field(default_factory=dict)
    conflicts: dict[int, bytes | None] = field(default_factory=dict)
    meta: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

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
        self.meta.update(later.meta)
        self.batches.update(later.batches)
        for name, delta in later.counters.items():
            self.count(name, delta)


def latest_quality_grades(store: Store, dataset_ids: Iterable[str]) -> dict[str, str | None]:
    """Quality grade of each dataset's newest committed batch that carries one."""
    out: dict[str, str | None] = {}
    for ident in dataset_ids:
        out[ident] = None
        keys = cast(list[bytes], store.redis.zrevrange(keyspace.dataset_batches(ident), 0, 9))
        for key in keys:
            batch = get_batch(store, key.decode())
            if batch is None:
                continue
            quality = json.loads(batch.manifest_json).get("quality") or {}
            grade = quality.get("grade") if isinstance(quality, dict) else None
            if grade:
                out[ident] = str(grade)
                break
    return out


def drop_stale_locks(client: redis.Redis) -> int:
    """Delete every scope's linkage lock; for a broker that knows it is the only one.

    A broker killed while linking leaves its lock until the TTL runs out; the embedded
    Redis belongs to one broker, which calls this on start.

    Returns:
        Locks deleted.
    """
    pattern = keyspace.linkage_key("*", keyspace.LINK_LOCK)
    keys = list(client.scan_iter(match=pattern, count=1000))
    return int(client.delete(*keys)) if keys else 0


def stored_pid(record: bytes) -> int:
    """The person number inside a stored record (0 while it waits to be re-linked)."""
    return int(_U32.unpack_from(record, 2)[0])


def next_id(last: int) -> int:
    """The id after ``last``: ids never end in a byte of 128 or more (128 per bucket)."""
    following = last + 1
    if following & 0xFF >= 128:
        following = (following | 0xFF) + 1
    return following


def encode_members(members: Iterable[tuple[int, int]]) -> bytes:
    """Packed ``(rid, dsn)`` pairs (person members, or token holders)."""
    return b"".join(MEMBER.pack(rid, dsn) for rid, dsn in members)


def decode_members(data: bytes) -> list[tuple[int, int]]:
    """Inverse of :func:`encode_members`."""
    return list(MEMBER.iter_unpack(data)) if data else []


def encode_conflicts(conflicts: Iterable[tuple[int, int, int, int]]) -> bytes:
    """Packed ``(kind, strong key, weak key, other rid)`` conflicts."""
    return b"".join(_CONFLICT.pack(*c) for c in conflicts)


def decode_conflicts(data: bytes) -> list[tuple[int, int, int, int]]:
    """Inverse of :func:`encode_conflicts`."""
    return list(_CONFLICT.iter_unpack(data)) if data else []


def _sections(items: dict[int, bytes | None]) -> bytes:
    """Per-id changes in id order, so the script writes each bucket with one command."""
    parts: list[bytes] = []
    for ident, value in sorted(items.items()):
        data = value or b""
        parts.append(_LEN.pack(ident, len(data)))
        parts.append(data)
    return b"".join(parts)


class LinkageMirror:
    """The linking worker's copy of one scope's linkage state, kept exact by the lock.

    Linking reads a record's neighbourhood: the holders of each of its tokens, their
    records and persons. Asked of Redis, that is one hash lookup per token, and the
    lookups, with the token index they need, were two thirds of Redis's CPU per record
    (docs/keyspace.md). The worker that holds the lock is the only writer, so it keeps
    what it needs in memory: records and persons as stored, the reference map and the
    token index. The last two exist only here, rebuilt from the records' own references
    and tokens when the mirror is read: Redis holds neither.

    The worker changes the mirror as it decides (:meth:`LinkageStore.stage`, or the
    linker's clean-record path directly) and writes Redis behind it, so the mirror may
    run ahead of Redis by the writes in flight; ``gen`` is the generation Redis will
    have once they land (``None``: unknown or a write failed — read it again).
    """

    __slots__ = (
        "gen",
        "holders",
        "next_bseq",
        "next_pid",
        "next_rid",
        "persons",
        "records",
        "rids",
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

    def add_record(self, rid: int, raw: bytes) -> None:
        """Take in one stored record, read in record number order (holders stay sorted)."""
        dsn, _, _, _, _, ref, n, mask = _REC.unpack_from(raw)
        self.records[rid] = raw
        self.rids[raw[:2] + ref] = rid
        member = MEMBER.pack(rid, dsn)
        holders = self.holders
        pos = _REC.size
        for k in range(n):
            if mask >> k & 1:
                key = _KEY_BYTES[k] + raw[pos : pos + INDEX_TOKEN_BYTES]
                pos += INDEX_TOKEN_BYTES
                holders[key] = holders.get(key, b"") + member

    def fetch(
        self,
        tokens: Iterable[bytes],
        refs: Iterable[bytes],
        rids: Iterable[int],
        pids: Iterable[int],
        chase: int,
    ) -> Fetched:
        """The neighbourhood, as :meth:`LinkageStore.fetch` documents it."""
        limit = chase * MEMBER.size
        held, records, persons = self.holders, self.records, self.persons
        wanted: dict[int, None] = {}
        out_holders: dict[bytes, bytes] = {}
        for token in tokens:
            raw = held.get(token, b"")
            out_holders[token] = raw
            if len(raw) <= limit:
                for rid, _ in MEMBER.iter_unpack(raw):
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


class LinkageStore:
    """The linkage state of one scope (one linkage domain) in Redis.

    Args:
        client: a synchronous redis-py client (``decode_responses=False``).
        scope: names this linkage; its keys share the hash tag ``{scope}``. Tests give
            each case its own scope.
    """

    def __init__(self, client: redis.Redis, *, scope: str = "main") -> None:
        self._r = client
        self.scope = scope
        self._base = keyspace.linkage_base(scope)
        self._meta = keyspace.linkage_key(scope, keyspace.LINK_META)
        self._write = client.register_script(_LUA_WRITE)
        self._unlock = client.register_script(_LUA_UNLOCK)
        self._tuned: bool | None = None
        self._held: str | None = None
        self._mirror = LinkageMirror()

    # Server tuning and the single-writer lock ---------------------------------------------

    def tune_server(self) -> bool:
        """Let bucket hashes stay listpacks (512 fields of up to 256 bytes); once per store.

        :class:`~broker.linkage.Linker` calls it before it writes.

        Returns:
            True when applied; False when the server refuses ``CONFIG SET`` (a managed
            Redis): linkage still works, with more memory per record.
        """
        if self._tuned is not None:
            return self._tuned
        try:
            for name, value in _LISTPACK_TUNING.items():
                current = cast(dict[bytes | str, Any], self._r.config_get(name))
                have = next(iter(current.values()), 0)
                if int(have) < value:
                    self._r.config_set(name, value)
        except redis.RedisError:
            logger.warning("cannot tune listpack limits; linkage will use more memory")
            self._tuned = False
            return False
        self._tuned = True
        return True

    def acquire(
        self, *, wait_seconds: float = 30.0, now: Callable[[], float] = time.monotonic
    ) -> str:
        """Take the linkage lock of this scope; returns the token :meth:`release` needs.

        Args:
            wait_seconds: how long to wait for another worker to finish.
            now: clock in seconds.

        Raises:
            LinkageBusyError: another worker kept it for ``wait_seconds``.
        """
        token = secrets.token_hex(16)
        key = keyspace.linkage_key(self.scope, keyspace.LINK_LOCK)
        deadline = now() + wait_seconds
        while not self._r.set(key, token, nx=True, px=_LOCK_MS):
            if now() >= deadline:
                raise LinkageBusyError("another worker is linking; try again later")
            time.sleep(0.05)
        self._held = token
        try:
            self._sync()
        except BaseException:
            self.release(token)
            raise
        return token

    def release(self, token: str) -> None:
        """Give the linkage lock back (the mirror is kept for the next call)."""
        self._held = None
        self._unlock(keys=[keyspace.linkage_key(self.scope, keyspace.LINK_LOCK)], args=[token])

    def _sync(self) -> None:
        """Bring the mirror up to the scope's generation: read it whole if it is behind.

        Only the worker holding the lock writes, and every write moves the generation on,
        so a mirror at the current generation holds exactly what Redis holds. It falls
        behind when another process linked this scope, and is empty in a new process.
        """
        raw = cast(bytes | None, self._r.hget(self._meta, "gen"))
        gen = int(raw or 0)
        if self._mirror.gen == gen:
            return
        started = time.monotonic()
        mirror = LinkageMirror()
        meta = cast(list[bytes | None], self._r.hmget(self._meta, ["rid", "pid", "bseq"]))
        mirror.next_rid, mirror.next_pid, mirror.next_bseq = (int(v or 0) for v in meta)
        for rid, raw_record in self._scan(keyspace.LINK_RECORDS, "rid"):
            mirror.add_record(rid, raw_record)
        for pid, raw_members in self._scan(keyspace.LINK_PERSONS, "pid"):
            mirror.persons[pid] = raw_members
        mirror.gen = gen
        self._mirror = mirror
        if mirror.records:
            logger.info(
                "linkage scope read into memory: %d records in %.1f s",
                len(mirror.records),
                time.monotonic() - started,
            )

    # Datasets and batches -------------------------------------------------------------------

    def datasets(self) -> dict[int, DatasetEntry]:
        """Every registered dataset by number."""
        raw = cast(
            dict[bytes, bytes],
            self._r.hgetall(keyspace.linkage_key(self.scope, keyspace.LINK_DATASETS)),
        )
        out: dict[int, DatasetEntry] = {}
        for dsn_raw, value in raw.items():
            doc = json.loads(value)
            dsn = int(dsn_raw)
            out[dsn] = DatasetEntry(
                dsn, doc["id"], doc["org"], bool(doc["opp"]), tuple(doc["keys"])
            )
        return out

    def register_dataset(
        self, dataset_id: str, *, org: str, one_record_per_person: bool, key_names: Iterable[str]
    ) -> DatasetEntry:
        """Number a dataset (once) and keep its declaration up to date."""
        numbers = keyspace.linkage_key(self.scope, keyspace.LINK_DATASET_NUMBERS)
        existing = self._r.hget(numbers, dataset_id)
        if existing is None:
            dsn = int(self._r.hincrby(self._meta, "dsn", 1))
            if not self._r.hsetnx(numbers, dataset_id, dsn):
                dsn = int(cast(bytes, self._r.hget(numbers, dataset_id)))
        else:
            dsn = int(existing)
        keys = tuple(key_names)
        doc = {"id": dataset_id, "org": org, "opp": one_record_per_person, "keys": list(keys)}
        self._r.hset(
            keyspace.linkage_key(self.scope, keyspace.LINK_DATASETS),
            str(dsn),
            json.dumps(doc, separators=(",", ":")),
        )
        return DatasetEntry(dsn, dataset_id, org, one_record_per_person, keys)

    def dataset_number(self, dataset_id: str) -> int | None:
        """The dataset's number, or ``None`` when linkage never saw it."""
        raw = self._r.hget(
            keyspace.linkage_key(self.scope, keyspace.LINK_DATASET_NUMBERS), dataset_id
        )
        return None if raw is None else int(raw)

    def batch_number(self, batch_id: str) -> int | None:
        """The number of a batch linkage saw, or ``None``."""
        raw = self._r.hget(keyspace.linkage_key(self.scope, keyspace.LINK_BATCHES), batch_id)
        return None if raw is None else int(raw)

    # The bulk read and the atomic write ------------------------------------------------------

    def fetch(
        self,
        *,
        tokens: Iterable[bytes] = (),
        refs: Iterable[bytes] = (),
        rids: Iterable[int] = (),
        pids: Iterable[int] = (),
        chase: int = 64,
    ) -> Fetched:
        """Read a neighbourhood from the linking worker's mirror (the lock must be held).

        Args:
            tokens: index tokens (11 bytes) whose holders to read.
            refs: ``dsn u16 + ref`` (18 bytes) whose record numbers to read.
            rids: records to read.
            pids: persons to read.
            chase: also read the records holding a token with at most this many holders,
                and the persons of every record read.

        Returns:
            Everything found.

        Raises:
            BrokerError: called without holding the linkage lock.
        """
        return self.mirror.fetch(tokens, refs, rids, pids, chase)

    @property
    def mirror(self) -> LinkageMirror:
        """The scope as the worker holding the lock sees it (see :class:`LinkageMirror`).

        Raises:
            BrokerError: the lock is not held.
        """
        if self._held is None or self._mirror.gen is None:
            raise BrokerError("the linkage is read and written under the linkage lock")
        return self._mirror

    def stage(self, writes: WriteSet) -> None:
        """Apply decided changes to the mirror now; :meth:`write` takes them to Redis."""
        self.mirror.apply(writes)

    def next_generation(self) -> int:
        """The generation the next :meth:`write` must find in Redis (reserves it)."""
        mirror = self.mirror
        expected = cast(int, mirror.gen)
        mirror.gen = expected + 1
        return expected

    def write(self, writes: WriteSet, expected: int) -> None:
        """Apply every change of ``writes`` to Redis in one atomic script.

        The script refuses to run unless Redis is at generation ``expected`` (so a worker
        whose lock ran out while another linked cannot write over it), and a failed write
        drops the mirror, so the next call reads the scope again.

        Raises:
            LinkageBusyError: Redis moved on without this worker.
        """
        hsets: list[bytes | str | int] = []
        for name, number in writes.meta.items():
            hsets += [keyspace.LINK_META, name, number]
        for batch_id, bseq in writes.batches.items():
            hsets += [keyspace.LINK_BATCHES, batch_id, bseq]
        args: list[bytes | str | int] = [
            self._base,
            expected,
            _sections(writes.records),
            _sections(writes.persons),
            _sections(writes.payloads),
            _sections(writes.conflicts),
            len(hsets) // 3,
            *hsets,
        ]
        for name, delta in writes.counters.items():
            if delta:
                args += [name, delta]
        try:
            self._write(keys=[self._meta], args=args)
        except redis.ResponseError as exc:
            self._mirror.gen = None
            if str(exc).startswith("STALE"):
                raise LinkageBusyError(
                    "another worker linked this scope after this worker's lock ran out"
                ) from None
            raise
        except BaseException:
            self._mirror.gen = None
            raise

    def commit(self, writes: WriteSet) -> None:
        """:meth:`stage` then :meth:`write`, waiting for it."""
        self.stage(writes)
        self.write(writes, self.next_generation())

    # Counters ----------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Every statistics counter."""
        raw = cast(
            dict[bytes, bytes],
            self._r.hgetall(keyspace.linkage_key(self.scope, keyspace.LINK_STATS)),
        )
        return {k.decode(): int(v) for k, v in raw.items()}

    # Read side for releases -------------------------------------------------------------------

    def _bucket(self, letter: str, ident: int) -> tuple[bytes, bytes]:
        packed = _U32.pack(ident)
        return keyspace.linkage_bucket(self.scope, letter, packed[:3]), packed[3:]

    def _bucket_get(self, letter: str, ident: int) -> bytes | None:
        key, field_name = self._bucket(letter, ident)
        return cast(bytes | None, self._r.hget(key, field_name))

    def _held_record(self, dataset_id: str, ref: RecordRef) -> StoredRecord | None:
        """The stored record of ``(dataset, ref)``, or ``None`` when not held.

        Redis keeps no reference map (the linking worker's mirror has one), so this scans
        the records: for tests and tools, never on a request path.
        """
        for records in self.iter_dataset_records(dataset_id):
            for record in records:
                if record.ref == ref:
                    return record
        return None

    def record_number(self, dataset_id: str, ref: RecordRef) -> int | None:
        """The record number of ``(dataset, ref)``, or ``None`` when not held."""
        record = self._held_record(dataset_id, ref)
        return None if record is None else record.rid

    def person_of(self, dataset_id: str, ref: RecordRef) -> PersonId | None:
        """The person of a record, or ``None`` when the record is not held."""
        record = self._held_record(dataset_id, ref)
        return PersonId(record.pid) if record is not None and record.pid else None

    def records_of_person(self, person: PersonId) -> list[LinkedRecord]:
        """Records of a person (empty when there is no such person)."""
        raw = self._bucket_get(keyspace.LINK_PERSONS, person)
        if not raw:
            return []
        return self._linked([rid for rid, _ in decode_members(raw)])

    def _linked(self, rids: list[int]) -> list[LinkedRecord]:
        found = self._linked_map(rids)
        return [found[rid] for rid in rids if rid in found]

    def _linked_map(self, rids: list[int]) -> dict[int, LinkedRecord]:
        """Records (dataset id, reference, payload) by number, in one pipeline."""
        names = {d.dsn: d.id for d in self.datasets().values()}
        pipe = self._r.pipeline(transaction=False)
        for rid in rids:
            pipe.hget(*self._bucket(keyspace.LINK_RECORDS, rid))
            pipe.hget(*self._bucket(keyspace.LINK_PAYLOADS, rid))
        raw = pipe.execute()
        out: dict[int, LinkedRecord] = {}
        for i, rid in enumerate(rids):
            blob, payload = raw[2 * i], raw[2 * i + 1]
            if blob is None:
                continue
            record = StoredRecord.decode(rid, blob)
            values = tuple(json.loads(payload)) if payload else ()
            out[rid] = LinkedRecord(names.get(record.dsn, ""), RecordRef(record.ref), values)
        return out

    def _scan(self, letter: str, counter: str) -> Iterator[tuple[int, bytes]]:
        """Every ``(id, value)`` of the per-id buckets ``letter``, in id order."""
        top = int(cast(bytes | None, self._r.hget(self._meta, counter)) or 0)
        last = top >> 8
        for start in range(0, last + 1, _SCAN_STEP):
            pipe = self._r.pipeline(transaction=False)
            buckets = range(start, min(start + _SCAN_STEP, last + 1))
            for bucket in buckets:
                pipe.hgetall(keyspace.linkage_bucket(self.scope, letter, _U32.pack(bucket)[1:]))
            for bucket, raw in zip(buckets, pipe.execute(), strict=True):
                for low, value in sorted(cast(dict[bytes, bytes], raw).items()):
                    yield (bucket << 8) | low[0], value

    def iter_persons(self, *, batch: int = 2048) -> Iterator[tuple[PersonId, list[LinkedRecord]]]:
        """Every person with its records, in person number order.

        Args:
            batch: persons whose records are read in one pipeline.
        """
        pending: list[tuple[int, list[int]]] = []
        for pid, raw in self._scan(keyspace.LINK_PERSONS, "pid"):
            pending.append((pid, [rid for rid, _ in decode_members(raw)]))
            if len(pending) >= batch:
                yield from self._persons(pending)
                pending = []
        yield from self._persons(pending)

    def _persons(
        self, pending: list[tuple[int, list[int]]]
    ) -> Iterator[tuple[PersonId, list[LinkedRecord]]]:
        found = self._linked_map([rid for _, rids in pending for rid in rids])
        for pid, rids in pending:
            yield PersonId(pid), [found[rid] for rid in rids if rid in found]

    def iter_dataset(self, dataset_id: str) -> Iterator[tuple[RecordRef, PersonId]]:
        """Every record of a dataset as ``(reference, person)``, in record number order."""
        for records in self.iter_dataset_records(dataset_id):
            for record in records:
                yield RecordRef(record.ref), PersonId(record.pid)

    def iter_dataset_records(
        self, dataset_id: str, *, step: int = 4096
    ) -> Iterator[list[StoredRecord]]:
        """The dataset's stored records, up to ``step`` at a time (a scan of all records)."""
        dsn = self.dataset_number(dataset_id)
        if dsn is None:
            return
        batch: list[StoredRecord] = []
        for rid, raw in self._scan(keyspace.LINK_RECORDS, "rid"):
            if _DSN.unpack_from(raw)[0] == dsn:
                batch.append(StoredRecord.decode(rid, raw))
                if len(batch) >= step:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def conflicts(self, *, limit: int = 1000) -> list[ConflictEntry]:
        """Recorded conflicts for review, in record number order."""
        out: list[ConflictEntry] = []
        for rid, raw in self._scan(keyspace.LINK_CONFLICTS, "rid"):
            for kind, strong, weak, other in decode_conflicts(raw):
                linked = self._linked([rid, other])
                if len(linked) == 2:
                    out.append(ConflictEntry(CONFLICT_KINDS[kind], strong, weak, *linked))
            if len(out) >= limit:
                return out[:limit]
        return out

    def memory_usage(self) -> int:
        """Bytes Redis reports for every key of this scope (slow: for benchmarks)."""
        total = 0
        for key in self._r.scan_iter(
            match=self._base.replace("{", "\\{").replace("}", "\\}") + "*", count=1000
        ):
            total += int(self._r.memory_usage(key, samples=0) or 0)
        return total
