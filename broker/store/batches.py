"""Upload batches: receiving chunks, commit, and the queue the linkage worker drains.

A batch lives in two keys on one cluster slot: its hash (state, manifest, counters) and
its chunks hash (index -> chunk re-keyed at rest). Chunk writes and the commit are Lua
scripts, so a chunk is stored at most once and a commit sees a complete batch or none.
Until commit a batch expires after the receiving TTL; from commit on it is persistent.

A commit queues the batch *before* its commit script runs (the queue is on another cluster
slot, so one script cannot do both): a crash between the two leaves a queued batch still
``receiving``, which the worker skips until the client's retried commit completes it or it
expires, and never a committed batch that no worker will find. The commit script also
marks the commit's audit entry as owed (``commit_audit``), so whoever finds it owed after a
crash writes it (:func:`broker.ingest.commit_upload`, and the link worker at start).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from broker.errors import BatchStateError, ConflictError, IncompleteBatchError
from broker.store import keyspace
from broker.store.client import Store
from keys.wire import BatchMode, BatchState

__all__ = [
    "BatchRecord",
    "ChunkWrite",
    "claim_batch",
    "commit_audited",
    "commit_batch",
    "delete_chunks",
    "get_batch",
    "held_chunks",
    "linkage_generation",
    "linking_dataset_ids",
    "list_in_dataset",
    "load_report_snapshot",
    "mark_batch",
    "mark_chunk_linked",
    "open_batch",
    "put_chunk",
    "queued_batches",
    "read_chunk",
    "release_batch",
    "replicate_commit",
    "replicate_linkage",
    "save_report_snapshot",
]

_PUT_CHUNK = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -2 end
if state ~= 'receiving' then return -1 end
local added = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
if added == 1 then redis.call('HINCRBY', KEYS[1], 'records_received', ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return added
"""

_COMPLETE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -2 end
if state ~= 'receiving' then return 2 end
local held = redis.call('HLEN', KEYS[2])
local want = tonumber(redis.call('HGET', KEYS[1], 'chunk_count'))
local records = tonumber(redis.call('HGET', KEYS[1], 'records_received'))
local want_records = tonumber(redis.call('HGET', KEYS[1], 'record_count'))
if held ~= want or records ~= want_records then return -3 end
return 1
"""

_COMMIT = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -2 end
if state ~= 'receiving' then return 0 end
local held = redis.call('HLEN', KEYS[2])
local want = tonumber(redis.call('HGET', KEYS[1], 'chunk_count'))
local records = tonumber(redis.call('HGET', KEYS[1], 'records_received'))
local want_records = tonumber(redis.call('HGET', KEYS[1], 'record_count'))
if held ~= want or records ~= want_records then return -3 end
redis.call('HSET', KEYS[1], 'state', 'committed', 'seq', ARGV[1], 'committed_at', ARGV[2],
  'commit_audit', 'owed')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch as stored."""

    batch_key: str
    org: str
    dataset: str
    mode: BatchMode
    state: BatchState
    manifest_json: bytes
    chunk_count: int
    record_count: int
    records_received: int
    chunks_linked: int
    seq: int
    error: str
    commit_audit_owed: bool
    """The commit is done but its audit entry not yet written (a crash came between)."""


@dataclass(frozen=True, slots=True)
class ChunkWrite:
    """Outcome of storing a chunk."""

    stored: bool
    """False when the broker already held the chunk (a resend)."""


def _decode(batch_key: str, f: dict[bytes, bytes]) -> BatchRecord:
    return BatchRecord(
        batch_key=batch_key,
        org=f[b"org"].decode(),
        dataset=f[b"dataset"].decode(),
        mode=BatchMode(f[b"mode"].decode()),
        state=BatchState(f[b"state"].decode()),
        manifest_json=f[b"manifest"],
        chunk_count=int(f[b"chunk_count"]),
        record_count=int(f[b"record_count"]),
        records_received=int(f.get(b"records_received", b"0")),
        chunks_linked=int(f.get(b"chunks_linked", b"0")),
        seq=int(f.get(b"seq", b"0")),
        error=f.get(b"error", b"").decode(),
        commit_audit_owed=f.get(b"commit_audit") == b"owed",
    )


def get_batch(store: Store, batch_key: str) -> BatchRecord | None:
    """The batch, or ``None`` (never opened, or expired before commit)."""
    fields = cast(dict[bytes, bytes], store.redis.hgetall(keyspace.batch(batch_key)))
    return _decode(batch_key, fields) if fields.get(b"manifest") else None


def open_batch(
    store: Store,
    *,
    batch_key: str,
    org: str,
    dataset: str,
    mode: BatchMode,
    manifest_json: bytes,
    chunk_count: int,
    record_count: int,
    now: str,
    ttl: int,
) -> BatchRecord:
    """Open a batch, or return the one already open under the same key and manifest.

    Raises:
        ConflictError: the key is taken by a batch with another manifest or mode.
    """
    key = keyspace.batch(batch_key)
    if store.redis.hsetnx(key, "manifest", manifest_json):
        pipe = store.redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "org": org,
                "dataset": dataset,
                "mode": mode.value,
                "state": BatchState.RECEIVING.value,
                "chunk_count": chunk_count,
                "record_count": record_count,
                "records_received": 0,
                "chunks_linked": 0,
                "created_at": now,
            },
        )
        pipe.expire(key, ttl)
        pipe.execute()
    existing = get_batch(store, batch_key)
    if existing is not None and existing.manifest_json == manifest_json and existing.mode != mode:
        was = existing.mode.value
        raise ConflictError(
            f"this batch was first sent in mode {was!r}, not {mode.value!r}: send it again "
            f"in mode {was!r} (tessera-sdk upload --mode {was})"
        )
    if existing is None or existing.manifest_json != manifest_json:
        raise ConflictError("a batch with this id exists with another manifest")
    return existing


def put_chunk(
    store: Store, *, batch_key: str, index: int, data: bytes, records: int, ttl: int
) -> ChunkWrite:
    """Store chunk ``index`` unless it is already held.

    Raises:
        BatchStateError: the batch is no longer receiving.
    """
    script = store.redis.register_script(_PUT_CHUNK)
    result = int(
        script(
            keys=[keyspace.batch(batch_key), keyspace.batch_chunks(batch_key)],
            args=[index, data, records, ttl],
        )
    )
    if result == -2:
        raise BatchStateError("the batch expired or was never opened; open it again")
    if result == -1:
        raise BatchStateError("the batch is already committed")
    return ChunkWrite(stored=result == 1)


def held_chunks(store: Store, batch_key: str) -> list[int]:
    """Indexes of the chunks held, sorted."""
    fields = cast(list[bytes], store.redis.hkeys(keyspace.batch_chunks(batch_key)))
    return sorted(int(f) for f in fields)


def _raise_for(result: int) -> None:
    if result == -2:
        raise BatchStateError("the batch expired or was never opened; open it again")
    if result == -3:
        raise IncompleteBatchError("the batch lacks chunks or records; upload them first")


def commit_batch(
    store: Store,
    *,
    batch_key: str,
    now: str,
    after_queue: Callable[[], None] = lambda: None,
) -> bool:
    """Commit a complete batch and queue it for linkage.

    The batch is queued first, then committed (see the module docstring). A commit of a
    batch already committed queues it again (idempotent), so a client that lost the answer
    can simply retry.

    Args:
        store: the broker's store.
        batch_key: the batch.
        now: the commit time.
        after_queue: called between queueing and committing (the crash tests' fault point).

    Returns:
        True if this call committed the batch.

    Raises:
        IncompleteBatchError: chunks or records are missing.
        BatchStateError: the batch expired.
    """
    keys = [keyspace.batch(batch_key), keyspace.batch_chunks(batch_key)]
    # Complete now means complete at the commit: chunks are only ever added while receiving.
    complete = int(store.redis.register_script(_COMPLETE)(keys=keys))
    _raise_for(complete)
    queued_at = 0
    if complete == 1:  # still receiving: queue it first (2: committed already)
        seq = store.redis.incr(keyspace.batch_sequence())
        pipe = store.redis.pipeline(transaction=False)
        pipe.zadd(keyspace.link_queue(), {batch_key: seq}, nx=True)
        pipe.zscore(keyspace.link_queue(), batch_key)
        queued_at = int(pipe.execute()[1] or seq)
        after_queue()
    result = int(store.redis.register_script(_COMMIT)(keys=keys, args=[queued_at, now]))
    _raise_for(result)
    batch = get_batch(store, batch_key)
    if batch is None:
        raise BatchStateError("the batch vanished during commit")
    if batch.state in (BatchState.COMMITTED, BatchState.LINKING):
        store.redis.zadd(keyspace.link_queue(), {batch_key: batch.seq}, nx=True)
        list_in_dataset(store, batch)
    return result == 1


def replicate_commit(store: Store, batch: BatchRecord) -> None:
    """Wait for the replicas to hold the commit: the batch and its chunks, the link queue,
    the dataset's batch list and the audit log (``TESSERA_BROKER_REDIS_WAIT_REPLICAS``).

    Raises:
        RedisUnavailableError: too few replicas confirmed it in time.
    """
    keys = [
        keyspace.batch(batch.batch_key),
        keyspace.link_queue(),
        keyspace.dataset_batches(batch.dataset),
        keyspace.audit_log(),
    ]
    store.wait_for_replicas(keys)


def replicate_linkage(store: Store, scope: str) -> None:
    """Wait for the replicas to hold the scope's linkage (before a batch's chunks go)."""
    store.wait_for_replicas([keyspace.linkage_key(scope, keyspace.LINK_META)])


def list_in_dataset(store: Store, batch: BatchRecord) -> None:
    """List a committed batch among its dataset's batches (idempotent)."""
    store.redis.zadd(keyspace.dataset_batches(batch.dataset), {batch.batch_key: batch.seq}, nx=True)


def commit_audited(store: Store, batch_key: str) -> None:
    """Mark the commit's audit entry written (it is written first: at least once)."""
    store.redis.hdel(keyspace.batch(batch_key), "commit_audit")


def queued_batches(store: Store, *, limit: int = 10) -> list[str]:
    """Batch keys waiting for linkage, oldest commit first.

    A batch queued by a commit that crashed before its commit script is still
    ``receiving``: the worker skips it (see the module docstring).
    """
    raw = cast(list[bytes], store.redis.zrange(keyspace.link_queue(), 0, limit - 1))
    return [r.decode() for r in raw]


def claim_batch(store: Store, batch_key: str, *, owner: str, ttl: int) -> bool:
    """Take (or extend) the lease on linking ``batch_key``; False if another holds it."""
    key = keyspace.batch_lock(batch_key)
    if store.redis.set(key, owner, nx=True, ex=ttl):
        return True
    holder = cast(bytes | None, store.redis.get(key))
    if holder is not None and holder.decode() == owner:
        store.redis.expire(key, ttl)
        return True
    return False


def release_batch(store: Store, batch_key: str, *, done: bool) -> None:
    """Drop the lease; when ``done``, remove the batch from the queue."""
    pipe = store.redis.pipeline(transaction=False)
    if done:
        pipe.zrem(keyspace.link_queue(), batch_key)
    pipe.delete(keyspace.batch_lock(batch_key))
    pipe.execute()


def read_chunk(store: Store, batch_key: str, index: int) -> bytes:
    """A stored (re-keyed) chunk."""
    data = cast(bytes | None, store.redis.hget(keyspace.batch_chunks(batch_key), str(index)))
    if data is None:
        raise BatchStateError(f"chunk {index} of the batch is missing")
    return data


def mark_batch(store: Store, batch_key: str, state: BatchState, *, error: str = "") -> None:
    """Move the batch to ``state`` (with an error message when failed)."""
    key = keyspace.batch(batch_key)
    if error:
        store.redis.hset(key, mapping={"state": state.value, "error": error})
    else:
        store.redis.hset(key, "state", state.value)


def mark_chunk_linked(store: Store, batch_key: str, chunks_linked: int) -> None:
    """Record that chunks ``0 .. chunks_linked - 1`` are linked (the resume point)."""
    store.redis.hset(keyspace.batch(batch_key), "chunks_linked", chunks_linked)


def delete_chunks(store: Store, batch_key: str) -> None:
    """Drop a linked batch's chunks: linkage now holds what they carried."""
    store.redis.delete(keyspace.batch_chunks(batch_key))


# Visibility: readers see a batch whole or not at all (broker/visibility.py) ---------------


def linkage_generation(store: Store, scope: str) -> int:
    """The linkage scope's write generation: every slice written moves it on by one."""
    raw = store.redis.hget(keyspace.linkage_key(scope, keyspace.LINK_META), "gen")
    return int(cast(bytes | None, raw) or 0)


def linking_dataset_ids(store: Store, *, limit: int = 100) -> set[str]:
    """Datasets with a batch being linked now (some of its slices may be written).

    A ``rekey`` batch does not count: it links into a key rotation's new scope, which no
    reader reads before the switch (broker/rotation.py).
    """
    pipe = store.redis.pipeline(transaction=False)
    for batch_key in queued_batches(store, limit=limit):
        pipe.hmget(keyspace.batch(batch_key), ["state", "dataset", "mode"])
    linking = BatchState.LINKING.value.encode()
    rekey = BatchMode.REKEY.value.encode()
    rows = cast(list[list[bytes | None]], pipe.execute())
    return {
        dataset.decode()
        for state, dataset, mode in rows
        if state == linking and dataset and mode != rekey
    }


def save_report_snapshot(store: Store, scope: str, data: bytes) -> None:
    """Keep the scope's linkage report as of its last whole batch."""
    store.redis.set(keyspace.linkage_report_snapshot(scope), data)


def load_report_snapshot(store: Store, scope: str) -> bytes | None:
    """The scope's linkage report as of its last whole batch, if one was kept."""
    return cast(bytes | None, store.redis.get(keyspace.linkage_report_snapshot(scope)))
