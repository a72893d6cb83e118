"""Appending to the hash chain, each entry with its own signed checkpoint, and reading it.

Each entry carries the SHA-256 of the previous entry (``prev``) and its own ``hash`` over
its canonical JSON without ``hash``, so altering, removing or reordering any entry breaks
the chain from there on (:func:`verify_chain`). A process that holds the broker's audit
key (:func:`use_audit_signing_key`, which :class:`broker.runtime.BrokerRuntime` calls)
signs a checkpoint of every entry it appends, in the same Redis transaction as the entry:
no acknowledged entry is ever without a signed checkpoint, so dropping the tail of the
log is evident from the checkpoints beyond the new end (docs/audit.md, "The bound").
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from broker.audit.records import (
    GENESIS_HASH,
    RELEASE_ACTION,
    AuditEntry,
    canonical_json,
    entry_hash,
    make_checkpoint,
)
from broker.store.audit_log import (
    append_chained,
    audit_length,
    read_entries,
    release_counts,
    release_counts_by_month,
)
from broker.store.client import Store

__all__ = [
    "append_audit",
    "audit_count",
    "read_audit",
    "releases_by_agreement",
    "releases_by_month",
    "use_audit_signing_key",
    "verify_chain",
]

_signing_keys: weakref.WeakKeyDictionary[Store, bytes] = weakref.WeakKeyDictionary()
_signing_keys_lock = threading.Lock()


def use_audit_signing_key(store: Store, signing_seed: bytes) -> None:
    """Sign a checkpoint of every entry appended through ``store`` from now on.

    Args:
        store: the broker's store (the key is held as long as the store lives).
        signing_seed: the broker's Ed25519 audit key (32-byte seed).
    """
    with _signing_keys_lock:
        _signing_keys[store] = signing_seed


def _signing_key_of(store: Store) -> bytes | None:
    with _signing_keys_lock:
        return _signing_keys.get(store)


def append_audit(
    store: Store,
    *,
    identity: str,
    role: str,
    action: str,
    dataset: str = "",
    organisation: str | None = None,
    agreement: str = "",
    counts: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the chain (with its signed checkpoint) and return it.

    Args:
        store: the broker's store.
        identity: the identity's name (an organisation or person name, never a credential).
        role: the identity's role, or ``"operator"`` for commands run on the broker host.
        action: what was done, e.g. ``"batch.commit"``; :data:`RELEASE_ACTION` for a
            release, which also counts towards the agreement's releases.
        dataset: the dataset concerned (``org/name``), if any.
        organisation: the organisation acting or concerned (default: the identity, for
            the ``org`` role).
        agreement: the agreement the action was under, if any.
        counts: record, chunk or row counts.
        now: the time to record (default: now, UTC).
    """
    moment = now or datetime.now(UTC)
    when = moment.isoformat(timespec="milliseconds")
    org = organisation if organisation is not None else (identity if role == "org" else "")
    signing_seed = _signing_key_of(store)
    result: list[AuditEntry] = []

    def build(head: bytes | None) -> tuple[bytes, bytes, bytes | None]:
        seq, prev = 0, GENESIS_HASH
        if head is not None:
            raw = json.loads(head)
            seq, prev = int(raw["seq"]) + 1, str(raw["hash"])
        draft = AuditEntry(
            seq=seq,
            time=when,
            identity=identity,
            role=role,
            organisation=org,
            action=action,
            agreement=agreement,
            dataset=dataset,
            counts=dict(counts or {}),
            prev=prev,
        )
        entry = replace(draft, hash=entry_hash(draft))
        result[:] = [entry]
        checkpoint = (
            make_checkpoint(seq, entry.hash, signing_seed, now=moment).to_json()
            if signing_seed is not None
            else None
        )
        return entry.to_json(), canonical_json({"seq": seq, "hash": entry.hash}), checkpoint

    is_release = action == RELEASE_ACTION or action.startswith(RELEASE_ACTION + ".")
    append_chained(
        store,
        build,
        release_of=agreement if is_release else "",
        release_month=moment.astimezone(UTC).strftime("%Y-%m") if is_release else "",
    )
    return result[0]


def read_audit(store: Store, *, start: int = 0, count: int = 100) -> list[AuditEntry]:
    """Up to ``count`` entries from sequence number ``start``, oldest first."""
    return [AuditEntry.from_json(raw) for raw in read_entries(store, start=start, count=count)]


def audit_count(store: Store) -> int:
    """Number of entries in the log."""
    return audit_length(store)


def releases_by_agreement(store: Store) -> dict[str, int]:
    """Agreement id -> number of releases the audit log records under it."""
    return release_counts(store)


def releases_by_month(store: Store) -> dict[str, dict[str, int]]:
    """Agreement id -> UTC month (``YYYY-MM``) -> releases under it that month."""
    return release_counts_by_month(store)


def verify_chain(entries: Iterable[AuditEntry], *, prev: str = GENESIS_HASH) -> int | None:
    """Check a run of entries; returns the seq of the first broken one, or ``None``.

    Args:
        entries: consecutive entries, oldest first.
        prev: the hash the first entry must chain to (the genesis hash from seq 0).
    """
    for entry in entries:
        if entry.prev != prev or entry_hash(entry) != entry.hash:
            return entry.seq
        prev = entry.hash
    return None
