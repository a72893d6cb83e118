"""The hash-chained audit log: every call that reads or writes personal data leaves an entry.

An entry records the time, the identity (its name and role), the action, the dataset and
counts, and never an identifier, token, reference or credential. Each entry carries the
SHA-256 of the previous entry (``prev``) and its own ``hash`` over its canonical JSON
without ``hash``, so altering, removing or reordering any entry breaks the chain from
there on (:func:`verify_chain`). Signed checkpoints and exports build on
:func:`read_audit` and :attr:`AuditEntry.hash`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from broker.store.audit_log import append_chained, audit_length, read_entries
from broker.store.client import Store

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "append_audit",
    "audit_count",
    "entry_hash",
    "read_audit",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
"""The ``prev`` of the first entry."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry, as stored."""

    seq: int
    time: str
    identity: str
    role: str
    action: str
    dataset: str
    counts: Mapping[str, int] = field(default_factory=dict)
    prev: str = GENESIS_HASH
    hash: str = ""

    def body(self) -> dict[str, object]:
        """The hashed fields (everything but ``hash``)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "identity": self.identity,
            "role": self.role,
            "action": self.action,
            "dataset": self.dataset,
            "counts": dict(sorted(self.counts.items())),
            "prev": self.prev,
        }

    def to_json(self) -> bytes:
        """Canonical JSON of the whole entry, ``hash`` included."""
        return _canonical({**self.body(), "hash": self.hash})

    @classmethod
    def from_json(cls, data: bytes) -> AuditEntry:
        """Parse a stored entry."""
        raw = json.loads(data)
        return cls(
            seq=int(raw["seq"]),
            time=str(raw["time"]),
            identity=str(raw["identity"]),
            role=str(raw["role"]),
            action=str(raw["action"]),
            dataset=str(raw["dataset"]),
            counts={str(k): int(v) for k, v in raw["counts"].items()},
            prev=str(raw["prev"]),
            hash=str(raw["hash"]),
        )


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 (hex) of the entry's canonical JSON without its ``hash``."""
    return hashlib.sha256(_canonical(entry.body())).hexdigest()


def append_audit(
    store: Store,
    *,
    identity: str,
    role: str,
    action: str,
    dataset: str = "",
    counts: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the chain and return it.

    Args:
        store: the broker's store.
        identity: the identity's name (an organisation or person name, never a credential).
        role: the identity's role, or ``"operator"`` for commands run on the broker host.
        action: what was done, e.g. ``"batch.commit"``.
        dataset: the dataset concerned (``org/name``), if any.
        counts: record, chunk or row counts.
        now: the time to record (default: now, UTC).
    """
    when = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
    result: list[AuditEntry] = []

    def build(head: bytes | None) -> tuple[bytes, bytes]:
        seq, prev = 0, GENESIS_HASH
        if head is not None:
            raw = json.loads(head)
            seq, prev = int(raw["seq"]) + 1, str(raw["hash"])
        draft = AuditEntry(
            seq=seq,
            time=when,
            identity=identity,
            role=role,
            action=action,
            dataset=dataset,
            counts=dict(counts or {}),
            prev=prev,
        )
        entry = replace(draft, hash=entry_hash(draft))
        result[:] = [entry]
        return entry.to_json(), _canonical({"seq": seq, "hash": entry.hash})

    append_chained(store, build)
    return result[0]


def read_audit(store: Store, *, start: int = 0, count: int = 100) -> list[AuditEntry]:
    """Up to ``count`` entries from sequence number ``start``, oldest first."""
    return [AuditEntry.from_json(raw) for raw in read_entries(store, start=start, count=count)]


def audit_count(store: Store) -> int:
    """Number of entries in the log."""
    return audit_length(store)


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
