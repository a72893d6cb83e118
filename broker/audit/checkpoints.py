"""Periodic signed checkpoints: by count, by age and on demand, never over a broken chain.

Every entry a broker appends already carries its own signed *head checkpoint*
(:mod:`broker.audit.chain`). The periodic checkpoints kept here are the ones to publish:
they stay in the log's checkpoint list, locate a full rewrite to the span between two of
them, and cover entries appended by a process that does not hold the audit key. They are
made every ``every`` entries (by :class:`AuditCheckpointer` in a serving broker, or
:func:`ensure_checkpoints`), when an entry has waited longer than a maximum age for one,
and on demand (:func:`checkpoint_now`). Before signing, the entries since the previous
checkpoint are verified, so a checkpoint never blesses a broken chain.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from broker.audit.chain import read_audit
from broker.audit.records import GENESIS_HASH, Checkpoint, make_checkpoint
from broker.audit.verify import iter_stored, scan_entries
from broker.errors import AuditTamperedError
from broker.store.audit_log import (
    append_checkpoint,
    audit_length,
    last_checkpoint,
    read_checkpoints,
)
from broker.store.client import Store

__all__ = [
    "AuditCheckpointer",
    "checkpoint_now",
    "ensure_checkpoints",
    "read_audit_checkpoints",
]

logger = logging.getLogger(__name__)


def read_audit_checkpoints(store: Store) -> list[Checkpoint]:
    """Every periodic checkpoint, oldest first (unparseable ones are left out; see
    :func:`broker.audit.verify.verify_audit`)."""
    found: list[Checkpoint] = []
    for raw in read_checkpoints(store):
        try:
            found.append(Checkpoint.from_json(raw))
        except ValueError:
            continue
    return found


def _segment_hash(store: Store, *, after: Checkpoint | None, position: int) -> str:
    """Verify entries after ``after`` up to ``position`` and return the hash at ``position``.

    Raises:
        AuditTamperedError: the entries do not chain (naming the first bad position).
    """
    start = after.position + 1 if after is not None else 0
    prev = after.head if after is not None else GENESIS_HASH
    scan = scan_entries(
        iter_stored(store, start=start, stop=position + 1),
        start=start,
        prev=prev,
        watch={position},
    )
    if scan.problem is not None:
        raise AuditTamperedError(scan.problem.position, scan.problem.message)
    if position not in scan.hashes:
        raise AuditTamperedError(position, f"entry {position} is missing")
    return scan.hashes[position]


def _extend(store: Store, signing_seed: bytes, target: int, *, now: datetime | None) -> bool:
    """Append a checkpoint at ``target`` unless the newest is already there or beyond."""

    def build(last_raw: bytes | None) -> bytes | None:
        last = Checkpoint.from_json(last_raw) if last_raw is not None else None
        if last is not None and last.position >= target:
            return None
        head = _segment_hash(store, after=last, position=target)
        return make_checkpoint(target, head, signing_seed, now=now).to_json()

    return append_checkpoint(store, build) is not None


def ensure_checkpoints(
    store: Store,
    signing_seed: bytes,
    *,
    every: int,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> list[Checkpoint]:
    """Make the checkpoints that are due: one at every ``every``-th entry, and one at the
    newest entry when an entry has waited longer than ``max_age`` for a checkpoint.

    Args:
        store: the broker's store.
        signing_seed: the broker's Ed25519 audit key.
        every: entries between periodic checkpoints (positions ``every - 1``,
            ``2 * every - 1``, …).
        max_age: also checkpoint the newest entry when the oldest entry not yet covered
            by a checkpoint is older than this.
        now: the current time (default: now, UTC).

    Returns:
        The checkpoints made.

    Raises:
        AuditTamperedError: the entries to be covered do not verify (nothing is signed).
    """
    if every < 1:
        raise ValueError("every must be at least 1")
    made: list[Checkpoint] = []
    count = audit_length(store)
    while True:
        last_raw = last_checkpoint(store)
        last = Checkpoint.from_json(last_raw) if last_raw is not None else None
        next_position = ((last.position + 1) // every + 1) * every - 1 if last else every - 1
        if next_position >= count:
            break
        if _extend(store, signing_seed, next_position, now=now):
            made.extend(read_audit_checkpoints(store)[-1:])
    if max_age is not None and count > 0:
        current = now or datetime.now(UTC)
        last_raw = last_checkpoint(store)
        last = Checkpoint.from_json(last_raw) if last_raw is not None else None
        first_uncovered = last.position + 1 if last is not None else 0
        if first_uncovered < count:
            oldest = read_audit(store, start=first_uncovered, count=1)
            waited = bool(oldest) and datetime.fromisoformat(oldest[0].time) + max_age <= current
            if waited and _extend(store, signing_seed, count - 1, now=now):
                made.extend(read_audit_checkpoints(store)[-1:])
    return made


def checkpoint_now(
    store: Store, signing_seed: bytes, *, every: int, now: datetime | None = None
) -> Checkpoint | None:
    """Checkpoint the newest entry now (after any periodic checkpoints that are due).

    Returns:
        The newest checkpoint (an existing one when nothing was appended since), or
        ``None`` when the log is empty.

    Raises:
        AuditTamperedError: the entries to be covered do not verify (nothing is signed).
    """
    ensure_checkpoints(store, signing_seed, every=every, now=now)
    count = audit_length(store)
    if count == 0:
        return None
    _extend(store, signing_seed, count - 1, now=now)
    found = read_audit_checkpoints(store)
    return found[-1] if found else None


class AuditCheckpointer:
    """Makes due checkpoints in the background of a serving broker.

    Args:
        store: the broker's store.
        signing_seed: the broker's Ed25519 audit key.
        every: entries between periodic checkpoints.
        max_age: checkpoint the newest entry when an entry has waited this long.
        interval_seconds: how often to look.
    """

    def __init__(
        self,
        store: Store,
        signing_seed: bytes,
        *,
        every: int,
        max_age: timedelta,
        interval_seconds: float = 2.0,
    ) -> None:
        self._store = store
        self._seed = signing_seed
        self._every = every
        self._max_age = max_age
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self._reported: int | None = None
        self._thread = threading.Thread(
            target=self._run, name="tessera-audit-checkpointer", daemon=True
        )

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the background thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                ensure_checkpoints(
                    self._store, self._seed, every=self._every, max_age=self._max_age
                )
            except AuditTamperedError as exc:
                if exc.position != self._reported:  # once per finding, not every interval
                    logger.error("audit log fails verification at position %d", exc.position)
                    self._reported = exc.position
            except Exception:
                logger.exception("audit checkpointer error; retrying")
