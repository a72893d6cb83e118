"""Storage of the hash-chained audit log: a Redis list, a head pointer and checkpoints.

broker/audit/ decides what an entry and a checkpoint hold, how they are hashed and
signed; this module appends entries atomically (WATCH on the head, so two broker workers
never fork the chain), each with its signed checkpoint (the *head checkpoint*, replaced at
every append) and the count of ``release`` entries per agreement in the same transaction,
appends the periodic checkpoints in increasing position (WATCH on their list), and reads
everything back. Every key carries the ``{audit}`` hash tag: one cluster slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis

from broker.store import keyspace
from broker.store.client import Store

__all__ = [
    "AuditSnapshot",
    "append_chained",
    "append_checkpoint",
    "audit_length",
    "last_checkpoint",
    "read_checkpoints",
    "read_entries",
    "read_snapshot",
    "release_counts",
    "release_counts_by_month",
]


@dataclass(frozen=True, slots=True)
class AuditSnapshot:
    """The log's pointers, read in one transaction: entries below ``length`` never change
    under an honest broker (it only appends), so a walk up to it is consistent with them.

    Attributes:
        length: number of entries.
        head: the head pointer, if any.
        head_checkpoint: the newest entry's signed checkpoint, if any.
        checkpoints: every periodic checkpoint, oldest first.
    """

    length: int
    head: bytes | None
    head_checkpoint: bytes | None
    checkpoints: list[bytes]


def read_snapshot(store: Store) -> AuditSnapshot:
    """The length, head, head checkpoint and checkpoints of the log, as of one moment."""
    with store.redis.pipeline(transaction=True) as pipe:
        pipe.llen(keyspace.audit_log())
        pipe.get(keyspace.audit_head())
        pipe.get(keyspace.audit_head_checkpoint())
        pipe.lrange(keyspace.audit_checkpoints(), 0, -1)
        length, head, head_checkpoint, checkpoints = pipe.execute()
    return AuditSnapshot(
        length=int(length),
        head=cast(bytes | None, head),
        head_checkpoint=cast(bytes | None, head_checkpoint),
        checkpoints=cast(list[bytes], checkpoints),
    )


def append_chained(
    store: Store,
    build: Callable[[bytes | None], tuple[bytes, bytes, bytes | None]],
    *,
    release_of: str = "",
    release_month: str = "",
) -> bytes:
    """Append one entry chained to the current head.

    Args:
        store: the broker's store.
        build: given the current head (or ``None``), returns the entry's bytes, the new
            head and the entry's checkpoint (or ``None``: none is signed); called again if
            another writer got in first.
        release_of: an agreement whose release count goes up with this entry.
        release_month: the entry's UTC month (``YYYY-MM``), counted with ``release_of``.

    Returns:
        The entry as stored.
    """
    log_key, head_key = keyspace.audit_log(), keyspace.audit_head()
    head_checkpoint_key = keyspace.audit_head_checkpoint()
    with store.redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(head_key)  # type: ignore[no-untyped-call]
                head = cast(bytes | None, pipe.get(head_key))
                entry, new_head, checkpoint = build(head)
                pipe.multi()
                pipe.rpush(log_key, entry)
                pipe.set(head_key, new_head)
                if checkpoint is not None:
                    pipe.set(head_checkpoint_key, checkpoint)
                if release_of:
                    pipe.hincrby(keyspace.audit_releases(), release_of, 1)
                    if release_month:
                        month_key = keyspace.audit_releases_by_month()
                        pipe.hincrby(month_key, f"{release_of}|{release_month}", 1)
                pipe.execute()
                return entry
            except redis.WatchError:
                continue


def read_entries(store: Store, *, start: int = 0, count: int = 100) -> list[bytes]:
    """Up to ``count`` entries from position ``start`` (0 = oldest)."""
    if count <= 0 or start < 0:
        return []
    return cast(list[bytes], store.redis.lrange(keyspace.audit_log(), start, start + count - 1))


def audit_length(store: Store) -> int:
    """Number of entries in the log."""
    return store.redis.llen(keyspace.audit_log())


def release_counts(store: Store) -> dict[str, int]:
    """Agreement id -> number of releases the audit log records under it."""
    raw = cast(dict[bytes, bytes], store.redis.hgetall(keyspace.audit_releases()))
    return {k.decode(): int(v) for k, v in raw.items()}


def release_counts_by_month(store: Store) -> dict[str, dict[str, int]]:
    """Agreement id -> UTC month (``YYYY-MM``) -> releases the audit log records then."""
    raw = cast(dict[bytes, bytes], store.redis.hgetall(keyspace.audit_releases_by_month()))
    found: dict[str, dict[str, int]] = {}
    for key, value in raw.items():
        agreement, _, month = key.decode().partition("|")
        found.setdefault(agreement, {})[month] = int(value)
    return found


def read_checkpoints(store: Store) -> list[bytes]:
    """Every checkpoint, oldest first."""
    return cast(list[bytes], store.redis.lrange(keyspace.audit_checkpoints(), 0, -1))


def last_checkpoint(store: Store) -> bytes | None:
    """The newest checkpoint, if any."""
    return cast(bytes | None, store.redis.lindex(keyspace.audit_checkpoints(), -1))


def append_checkpoint(store: Store, build: Callable[[bytes | None], bytes | None]) -> bytes | None:
    """Append a checkpoint after the newest one, unless ``build`` declines.

    Args:
        store: the broker's store.
        build: given the newest checkpoint (or ``None``), returns the next one, or ``None``
            when there is nothing to add; called again if another writer got in first.

    Returns:
        The checkpoint appended, or ``None``.
    """
    key = keyspace.audit_checkpoints()
    with store.redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                last = cast(bytes | None, pipe.lindex(key, -1))
                made = build(last)
                if made is None:
                    pipe.unwatch()
                    return None
                pipe.multi()
                pipe.rpush(key, made)
                pipe.execute()
                return made
            except redis.WatchError:
                continue
