"""Storage of the hash-chained audit log: a Redis list, a head pointer and checkpoints.

broker/audit/ decides what an entry and a checkpoint hold, how they are hashed and
signed; this module appends entries atomically, each with its signed checkpoint (the *head
checkpoint*, replaced at every append) and the count of ``release`` entries per agreement,
appends the periodic checkpoints in increasing position, and reads everything back. Every
key carries the ``{audit}`` hash tag: one cluster slot.

Both appends are compare-and-set Lua scripts, not WATCH/MULTI: the script checks, on the
node that runs it, that the head is still the one the entry was built on, so two broker
workers never fork the chain. WATCH is not enough on a cluster: when a master fails over
between the read of the head and the EXEC, the client sends the EXEC to the promoted
replica, which never saw the WATCH and may hold another head, and the chain forks (seen in
tests/broker/test_failover.py). A script retried after a lost reply finds its own head
already in place and reports success instead of appending twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

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


# KEYS: log, head, head checkpoint, release counts, release counts by month.
# ARGV: the head the entry was built on ('' for none), entry, new head, checkpoint ('' for
# none), agreement whose release count rises (''), its "agreement|month" field ('').
# Returns 1 when appended, 2 when this very append was already applied, 0 when the head moved.
_APPEND_ENTRY = """
local head = redis.call('GET', KEYS[2])
if head == ARGV[3] then return 2 end
if (head or '') ~= ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[5], 1) end
if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[6], 1) end
return 1
"""

# KEYS: the checkpoint list. ARGV: the newest checkpoint it was built after ('' for none),
# the new one. Returns 1 when appended or already there, 0 when another was appended first.
_APPEND_CHECKPOINT = """
local last = redis.call('LINDEX', KEYS[1], -1)
if last == ARGV[2] then return 1 end
if (last or '') ~= ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1
"""


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
    keys = [
        keyspace.audit_log(),
        keyspace.audit_head(),
        keyspace.audit_head_checkpoint(),
        keyspace.audit_releases(),
        keyspace.audit_releases_by_month(),
    ]
    script = store.redis.register_script(_APPEND_ENTRY)
    month_field = f"{release_of}|{release_month}" if release_of and release_month else ""
    while True:
        head = cast(bytes | None, store.redis.get(keyspace.audit_head()))
        entry, new_head, checkpoint = build(head)
        args: list[bytes | str] = [
            head or b"",
            entry,
            new_head,
            checkpoint or b"",
            release_of,
            month_field,
        ]
        if int(script(keys=keys, args=args)):
            return entry


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
    script = store.redis.register_script(_APPEND_CHECKPOINT)
    while True:
        last = cast(bytes | None, store.redis.lindex(key, -1))
        made = build(last)
        if made is None:
            return None
        if int(script(keys=[key], args=[last or b"", made])):
            return made
