"""Storage of the hash-chained audit log: a Redis list and a head pointer, one slot.

broker/audit.py decides what an entry holds and how it is hashed; this module appends
entries atomically (WATCH on the head, so two broker workers never fork the chain) and
reads them back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import redis

from broker.store import keyspace
from broker.store.client import Store

__all__ = ["append_chained", "audit_length", "read_entries", "read_head"]


def read_head(store: Store) -> bytes | None:
    """The head record (JSON ``{"seq", "hash"}``) of the newest entry, if any."""
    return cast(bytes | None, store.redis.get(keyspace.audit_head()))


def append_chained(store: Store, build: Callable[[bytes | None], tuple[bytes, bytes]]) -> bytes:
    """Append one entry chained to the current head.

    Args:
        store: the broker's store.
        build: given the current head (or ``None``), returns the entry's bytes and the new
            head; called again if another writer got in first.

    Returns:
        The entry as stored.
    """
    log_key, head_key = keyspace.audit_log(), keyspace.audit_head()
    with store.redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(head_key)  # type: ignore[no-untyped-call]
                head = cast(bytes | None, pipe.get(head_key))
                entry, new_head = build(head)
                pipe.multi()
                pipe.rpush(log_key, entry)
                pipe.set(head_key, new_head)
                pipe.execute()
                return entry
            except redis.WatchError:
                continue


def read_entries(store: Store, *, start: int = 0, count: int = 100) -> list[bytes]:
    """Up to ``count`` entries from position ``start`` (0 = oldest)."""
    if count <= 0:
        return []
    return cast(list[bytes], store.redis.lrange(keyspace.audit_log(), start, start + count - 1))


def audit_length(store: Store) -> int:
    """Number of entries in the log."""
    return store.redis.llen(keyspace.audit_log())
