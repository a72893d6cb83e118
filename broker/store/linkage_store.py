"""All Redis access of the linkage: records, persons, payloads, conflicts and counters.

The layout is docs/keyspace.md ("Linkage"). Every key of one linkage scope shares the
hash tag ``{scope}``, so one Lua script commits a slice's changes atomically (a Lua
script runs whole or not at all, and the AOF records its effects as one MULTI/EXEC
block). Internally records and persons are small integers (``rid``, ``pid``); buckets
are small hashes that Redis keeps as listpacks, so a field costs tens of bytes where a
plain key costs about a hundred.

The store is three modules: :mod:`~broker.store.linkage_codec` knows the byte layout,
:mod:`~broker.store.linkage_mirror` holds the linking worker's copy of the scope
(:class:`LinkageMirror`, with the token index and reference map that exist only there),
and this one reads and writes Redis. Together they know formats and Redis and decide
nothing (:mod:`broker.linkage` does). The names importers have always taken from here
(``StoredRecord``, ``WriteSet``, ``next_id``…) are still here.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NewType, cast

import redis

from broker.errors import LinkageBusyError
from broker.matching import Layout, Model, ScoredPair, layout_from_json, model_from_json
from broker.store import keyspace
from broker.store.batches import get_batch
from broker.store.client import Store
from broker.store.linkage_codec import (
    CONFLICT_CODES,
    StoredRecord,
    bucket_name,
    bucket_number,
    decode_conflicts,
    decode_members,
    decode_payload,
    encode_sections,
    join_id,
    next_id,
    split_id,
    stored_dsn,
)
from broker.store.linkage_counts import FIELD_PREFIX
from broker.store.linkage_explain import (
    LinkBasis,
    PossibleMatch,
    explain_bases,
    link_probabilities,
    read_possible_matches,
    read_scored_pairs,
)
from broker.store.linkage_mirror import Fetched, LinkageMirror, WriteSet
from keys.derive import RecordRef
from keys.errors import BrokerError

__all__ = [
    "ConflictEntry",
    "DatasetEntry",
    "Fetched",
    "LinkageMirror",
    "LinkageStore",
    "LinkedRecord",
    "PersonId",
    "StoredRecord",
    "WriteSet",
    "drop_stale_locks",
    "latest_quality_grades",
    "next_id",
]

logger = logging.getLogger(__name__)

PersonId = NewType("PersonId", int)
"""A person: a stable small integer, never reused for another person."""

# The ziplist names: Redis 7 and later keep them as aliases of the listpack settings.
_LISTPACK_TUNING = {"hash-max-ziplist-entries": 512, "hash-max-ziplist-value": 256}
_SCAN_STEP = 128
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
by_id(ARGV[7], 'E')
by_id(ARGV[8], 'B')
by_id(ARGV[9], 'M')
local nh = tonumber(ARGV[10])
local a = 11
for _ = 1, nh do
  redis.call('HSET', base .. ARGV[a], ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end
local nc = tonumber(ARGV[a])
a = a + 1
for _ = 1, nc do
  redis.call('HINCRBY', base .. ARGV[a], ARGV[a + 1], ARGV[a + 2])
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


@dataclass(frozen=True, slots=True)
class DatasetEntry:
    """A dataset as the linkage registers it: its small number and its declaration."""

    dsn: int
    id: str
    org: str
    one_record_per_person: bool
    key_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConflictEntry:
    """One recorded conflict, for review.

    Attributes:
        kind: one of the rules' conflict kinds (``key``, ``twin``, ``merge``).
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
        restricted: research-restricted by an opt-out at the source.
        checked_day: the day of its batch's national opt-out check (days since
            1970-01-01; 0 for none).
    """

    dataset: str
    ref: RecordRef
    payload: tuple[str | None, ...]
    restricted: bool = False
    checked_day: int = 0


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
        fields = ["rid", "pid", "bseq", "fit", "shift"]
        meta = cast(list[bytes | None], self._r.hmget(self._meta, fields))
        (mirror.next_rid, mirror.next_pid, mirror.next_bseq, mirror.fit_attempt, mirror.shift) = (
            int(v or 0) for v in meta
        )
        for rid, raw_record in self._scan(keyspace.LINK_RECORDS, "rid"):
            mirror.add_record(rid, raw_record)
        for pid, raw_members in self._scan(keyspace.LINK_PERSONS, "pid"):
            mirror.persons[pid] = raw_members
        mirror.layout, mirror.model = self._stored_model()
        mirror.counts = self._stored_counts()
        recount = not mirror.counts  # a holding from before the counts were kept
        for rid, raw_evidence in self._scan(keyspace.LINK_EVIDENCE, "rid"):
            mirror.set_evidence(rid, raw_evidence, count=recount)
        for rid, raw_basis in self._scan(keyspace.LINK_BASIS, "rid"):
            mirror.basis[rid] = raw_basis
        for rid, raw_possible in self._scan(keyspace.LINK_POSSIBLE, "rid"):
            mirror.possible[rid] = raw_possible
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
        """Apply decided changes to the mirror now; :meth:`write` takes them to Redis.

        The agreement-pattern counts the mirror changed since the last stage go with
        ``writes``.
        """
        mirror = self.mirror
        mirror.apply(writes)
        counts = writes.pattern_counts
        for key, delta in mirror.take_pending().items():
            counts[key] = counts.get(key, 0) + delta

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
        if writes.layout is not None:
            hsets += [keyspace.LINK_MODEL, "layout", writes.layout[1]]
        if writes.model is not None:
            hsets += [keyspace.LINK_MODEL, "model", writes.model[1]]
        args: list[bytes | str | int] = [
            self._base,
            expected,
            encode_sections(writes.records),
            encode_sections(writes.persons),
            encode_sections(writes.payloads),
            encode_sections(writes.conflicts),
            encode_sections(writes.evidence),
            encode_sections(writes.basis),
            encode_sections(writes.possible),
            len(hsets) // 3,
            *hsets,
        ]
        counts = [(key, delta) for key, delta in sorted(writes.pattern_counts.items()) if delta]
        args.append(len(counts))
        for key, delta in counts:
            args += [keyspace.LINK_MODEL, key, delta]
        for name, delta in writes.counters.items():
            if delta:
                args += [name, delta]
        try:
            self._write(keys=self._keys_written(writes), args=args)
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

    def _keys_written(self, writes: WriteSet) -> list[bytes | str]:
        """Every key the write script touches, as its ``KEYS`` (meta first).

        The script builds the same keys from the scope's base; declaring them lets Redis
        Cluster (and redis-py, which refuses keys of two slots) check they share a slot.
        """
        keys: list[bytes | str] = [self._meta]
        for letter, items in (
            (keyspace.LINK_RECORDS, writes.records),
            (keyspace.LINK_PERSONS, writes.persons),
            (keyspace.LINK_PAYLOADS, writes.payloads),
            (keyspace.LINK_CONFLICTS, writes.conflicts),
            (keyspace.LINK_EVIDENCE, writes.evidence),
            (keyspace.LINK_BASIS, writes.basis),
            (keyspace.LINK_POSSIBLE, writes.possible),
        ):
            for bucket in sorted({split_id(ident)[0] for ident in items}):
                keys.append(keyspace.linkage_bucket(self.scope, letter, bucket))
        if writes.batches:
            keys.append(keyspace.linkage_key(self.scope, keyspace.LINK_BATCHES))
        if writes.layout is not None or writes.model is not None or writes.pattern_counts:
            keys.append(keyspace.linkage_key(self.scope, keyspace.LINK_MODEL))
        if any(writes.counters.values()):
            keys.append(keyspace.linkage_key(self.scope, keyspace.LINK_STATS))
        return keys

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
        bucket, field_name = split_id(ident)
        return keyspace.linkage_bucket(self.scope, letter, bucket), field_name

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
            values, restricted, day = decode_payload(payload) if payload else ((), False, 0)
            out[rid] = LinkedRecord(
                names.get(record.dsn, ""), RecordRef(record.ref), values, restricted, day
            )
        return out

    def _scan(self, letter: str, counter: str) -> Iterator[tuple[int, bytes]]:
        """Every ``(id, value)`` of the per-id buckets ``letter``, in id order."""
        top = int(cast(bytes | None, self._r.hget(self._meta, counter)) or 0)
        last = bucket_number(top)
        for start in range(0, last + 1, _SCAN_STEP):
            pipe = self._r.pipeline(transaction=False)
            buckets = range(start, min(start + _SCAN_STEP, last + 1))
            for bucket in buckets:
                pipe.hgetall(keyspace.linkage_bucket(self.scope, letter, bucket_name(bucket)))
            for bucket, raw in zip(buckets, pipe.execute(), strict=True):
                for low, value in sorted(cast(dict[bytes, bytes], raw).items()):
                    yield join_id(bucket, low), value

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
            if stored_dsn(raw) == dsn:
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
                    out.append(ConflictEntry(CONFLICT_CODES[kind], strong, weak, *linked))
            if len(out) >= limit:
                return out[:limit]
        return out

    # The probabilistic stage: its model, each record's basis, the possible matches -----------

    def _stored_model(self) -> tuple[Layout | None, Model | None]:
        raw = cast(
            list[bytes | None],
            self._r.hmget(
                keyspace.linkage_key(self.scope, keyspace.LINK_MODEL), ["layout", "model"]
            ),
        )
        layout = None if raw[0] is None else layout_from_json(raw[0])
        model = None if raw[1] is None else model_from_json(raw[1])
        return layout, model

    def _stored_counts(self) -> dict[bytes, int]:
        """The agreement-pattern counts (:mod:`broker.store.linkage_counts`), zeros left out."""
        raw = cast(
            dict[bytes, bytes],
            self._r.hgetall(keyspace.linkage_key(self.scope, keyspace.LINK_MODEL)),
        )
        counts = {}
        for key, value in raw.items():
            if key.startswith(FIELD_PREFIX) and int(value):
                counts[key] = int(value)
        return counts

    def fitted_model(self) -> Model | None:
        """The probabilistic stage's model as the engine last fitted it, or ``None``.

        Per blocking key (``Model.blocks``, in ``Model.layout`` order): the prior share of
        matches among its candidate pairs and, per comparison, ``m`` and ``u`` per level
        (strongest first, then ``"disagree"``) — the m/u chart and the waterfall of an
        example pair (``BlockModel.match_weight`` is the sum the waterfall draws). Also
        the thresholds links and possible matches were decided with, and how many
        evidence records it was fitted on. Every later link used this model until the
        next refit (when the evidence held grew by a tenth); ``None`` until the scope
        holds enough evidence of two datasets to fit one. Reads Redis only.
        """
        return self._stored_model()[1]

    def person_record_numbers(self, person: PersonId) -> list[int]:
        """The record numbers of a person's records, in the order they joined it."""
        raw = self._bucket_get(keyspace.LINK_PERSONS, person)
        return [rid for rid, _ in decode_members(raw)] if raw else []

    def link_basis(self, rids: Iterable[int]) -> dict[int, LinkBasis]:
        """Why each record is in its person: the match key, or the probabilistic evidence.

        For each record number given that is held: ``match_key`` with the key's name
        when the exact cascade joined it; ``probabilistic`` with the pair's probability,
        match weight, blocking key and named agreement vector when the probabilistic
        stage did; ``unlinked`` when its person holds it alone. The record that started a
        person others joined carries the basis of the first record that joined it. This
        is the per-row link quality of cohorts and direct-care returns (``match_key`` or
        a probability band) and the explanation of a link in a report. Records not held
        are left out. Reads Redis only (a few pipelined reads), never the mirror.

        Args:
            rids: record numbers (``person_record_numbers``, ``record_number``).
        """
        return explain_bases(self, rids)

    def possible_matches(self, *, limit: int = 10_000) -> list[PossibleMatch]:
        """Pairs kept for review and never linked, in record number order.

        Each names the two records (numbers and dataset ids; a release resolves a
        number to the organisation's own reference with ``LinkedRecord``), why it is
        kept (``grey``: between the review and the link thresholds; ``rival``: above the
        link threshold but it would chain two linked persons; ``twin``: refused by the
        twin guard; ``refit``: a released link a newer model scores below its
        threshold, still linked), its probability, match weight, blocking key and named
        agreement vector. The review file lists, to each organisation, the entries
        that involve its own records; the operator sees counts. Reads Redis only.

        Args:
            limit: at most this many entries.
        """
        return read_possible_matches(self, limit=limit)

    def scored_pairs(self, *, linked: bool = True, possible: bool = True) -> list[ScoredPair]:
        """The probabilistic stage's linked pairs and possible matches, as scored (block
        index and agreement vector): :func:`~broker.store.linkage_explain.read_scored_pairs`."""
        return read_scored_pairs(self, linked=linked, possible=possible)

    def link_probabilities(self) -> dict[int, float]:
        """Record number → probability of the probabilistic link that holds it in its
        person: :func:`~broker.store.linkage_explain.link_probabilities`."""
        return link_probabilities(self)

    def bucket_values(self, letter: str, ids: list[int]) -> list[bytes | None]:
        """The field of each id in the per-id buckets ``letter``, in one pipeline (for the
        read side: :mod:`~broker.store.linkage_explain`)."""
        pipe = self._r.pipeline(transaction=False)
        for ident in ids:
            pipe.hget(*self._bucket(letter, ident))
        return cast(list[bytes | None], pipe.execute())

    def scan_buckets(self, letter: str, counter: str) -> Iterator[tuple[int, bytes]]:
        """Every ``(id, value)`` of the per-id buckets ``letter``, in id order (``counter``
        is the ``meta`` field of the last id allocated)."""
        return self._scan(letter, counter)

    def memory_usage(self) -> int:
        """Bytes Redis reports for every key of this scope (slow: for benchmarks)."""
        total = 0
        for key in self._r.scan_iter(
            match=self._base.replace("{", "\\{").replace("}", "\\}") + "*", count=1000
        ):
            total += int(self._r.memory_usage(key, samples=0) or 0)
        return total
