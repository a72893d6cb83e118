"""Verifying the audit log, in the store or from an export: the first bad position.

:func:`verify_audit` and :func:`verify_export` walk the whole chain, check that every
entry is stored in its exact canonical bytes, check the head pointer, the head checkpoint
(signed with every entry) and every periodic checkpoint, and name the first bad position
(docs/audit.md, "Verification").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from broker.audit.records import (
    CHECKPOINT_FIELDS,
    ENTRY_FIELDS,
    GENESIS_HASH,
    AuditEntry,
    Checkpoint,
    audit_key_id,
    canonical_json,
    entry_hash,
    stored_form_problem,
)
from broker.store.audit_log import read_entries, read_snapshot
from broker.store.client import Store

__all__ = [
    "EXPORT_CHECKPOINT_PREFIX",
    "AuditProblem",
    "AuditVerification",
    "ChainScan",
    "export_lines",
    "iter_stored",
    "scan_entries",
    "verify_audit",
    "verify_export",
]

EXPORT_CHECKPOINT_PREFIX = b'{"checkpoint":'
"""How a checkpoint line of an export starts (the checkpoint's bytes follow, then ``}``)."""

_PAGE = 5000


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """Something wrong with the log, at the first position it affects."""

    position: int
    message: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The outcome of verifying the whole log.

    Attributes:
        entries: entries in the log.
        checkpoints: periodic checkpoints held.
        valid_checkpoints: periodic checkpoints whose signature verifies and that match.
        last_checkpoint: position of the newest valid periodic checkpoint, or ``None``.
        key_id: id of the public key the checkpoints were checked against.
        problems: every problem found, first position first (empty when the log verifies).
        signed_head: position of the head checkpoint (signed with the newest entry) when it
            verifies and matches, else ``None``.
    """

    entries: int
    checkpoints: int
    valid_checkpoints: int
    last_checkpoint: int | None
    key_id: str
    problems: tuple[AuditProblem, ...] = ()
    signed_head: int | None = None

    @property
    def ok(self) -> bool:
        """True when the chain and every checkpoint verify."""
        return not self.problems

    @property
    def first_bad_position(self) -> int | None:
        """The first position found bad, or ``None``."""
        return self.problems[0].position if self.problems else None

    def summary(self) -> str:
        """One line for people."""
        if self.ok:
            tail = (
                f"; newest checkpoint at position {self.last_checkpoint}"
                if self.last_checkpoint is not None
                else "; no checkpoint yet"
            )
            if self.signed_head is not None:
                tail += f"; head signed at position {self.signed_head}"
            return (
                f"audit log verifies: {self.entries} entries, "
                f"{self.valid_checkpoints} signed checkpoints{tail}"
            )
        first = self.problems[0]
        return f"audit log fails verification at position {first.position}: {first.message}"


@dataclass(frozen=True, slots=True)
class ChainScan:
    """What a walk over stored entries found.

    Attributes:
        problem: the first problem, or ``None``.
        hashes: the hash at each watched position reached before the problem.
        walked: the number of entries that verified.
        last_hash: the hash of the last entry that verified (or the starting ``prev``).
    """

    problem: AuditProblem | None
    hashes: dict[int, str]
    walked: int
    last_hash: str


def iter_stored(store: Store, *, start: int, stop: int | None) -> Iterator[tuple[int, bytes]]:
    """(position, stored bytes) of the entries from ``start`` to ``stop`` (or the end)."""
    position = start
    while stop is None or position < stop:
        want = _PAGE if stop is None else min(_PAGE, stop - position)
        page = read_entries(store, start=position, count=want)
        for raw in page:
            yield position, raw
            position += 1
        if len(page) < want:
            return


def _parse(raw: bytes) -> AuditEntry | None:
    try:
        return AuditEntry.from_json(raw)
    except ValueError:
        return None


def _entry_problem(
    position: int,
    raw: bytes,
    entry: AuditEntry,
    following: tuple[int, bytes] | None,
    *,
    start: int,
    prev: str,
) -> AuditProblem | None:
    self_consistent = entry_hash(entry) == entry.hash
    if entry.seq != position:
        after = _parse(following[1]) if following is not None else None
        if (
            entry.seq == position - 1
            and position > start
            and self_consistent
            and after is not None
            and after.prev == entry.hash
        ):
            message = "an entry was inserted here (the entries after it chain past it)"
            return AuditProblem(position - 1, message)
        message = (
            f"the entry here carries sequence number {entry.seq}: "
            "entries were deleted, inserted or reordered"
        )
        return AuditProblem(position, message)
    if not self_consistent:
        return AuditProblem(position, "the entry was altered: its content does not match its hash")
    form = stored_form_problem(raw, entry.to_json(), ENTRY_FIELDS)
    if form is not None:
        return AuditProblem(position, f"the entry is not stored in its canonical bytes: {form}")
    if entry.prev != prev:
        if position > start:
            message = "the entry was altered and re-hashed: the next entry does not chain to it"
            return AuditProblem(position - 1, message)
        return AuditProblem(position, "the entry does not chain to the one before it")
    return None


def scan_entries(
    items: Iterable[tuple[int, bytes]], *, start: int, prev: str, watch: set[int]
) -> ChainScan:
    """Walk stored entries from position ``start`` until the first problem.

    Args:
        items: (position, stored bytes), consecutive from ``start``.
        start: the first position.
        prev: the hash the first entry must chain to.
        watch: positions whose hashes to collect (those that checkpoints cover).
    """
    seen: dict[int, str] = {}
    walked = 0
    iterator = iter(items)
    current = next(iterator, None)
    while current is not None:
        position, raw = current
        following = next(iterator, None)
        entry = _parse(raw)
        if entry is None:
            invalid = AuditProblem(position, "the entry is not a valid audit entry")
            return ChainScan(invalid, seen, walked, prev)
        problem = _entry_problem(position, raw, entry, following, start=start, prev=prev)
        if problem is not None:
            return ChainScan(problem, seen, walked, prev)
        if position in watch:
            seen[position] = entry.hash
        prev = entry.hash
        walked += 1
        current = following
    return ChainScan(None, seen, walked, prev)


def _check_head(head_raw: bytes | None, *, entries: int, last_hash: str) -> AuditProblem | None:
    if head_raw is None:
        if entries:
            # The head counts the entries: without it, the end of the log is unknown.
            message = f"the head pointer is missing: entries from position {entries} on may be lost"
            return AuditProblem(entries, message)
        return None
    try:
        head = json.loads(head_raw)
        head_seq, head_hash = int(head["seq"]), str(head["hash"])
    except (KeyError, TypeError, ValueError):
        return AuditProblem(max(entries - 1, 0), "the head pointer is corrupt")
    if head_seq >= entries:
        return AuditProblem(entries, f"entries {entries} to {head_seq} were removed from the end")
    if head_seq < entries - 1:
        return AuditProblem(head_seq + 1, "entries were appended outside the broker")
    if head_hash != last_hash:
        return AuditProblem(entries - 1, "the newest entry was replaced")
    if canonical_json({"seq": head_seq, "hash": head_hash}) != head_raw:
        return AuditProblem(entries - 1, "the head pointer is not stored in its canonical bytes")
    return None


def _checkpoint_problem(
    name: str,
    raw: bytes,
    *,
    public_key: bytes,
    scan: ChainScan,
    last_good: int,
) -> tuple[Checkpoint | None, AuditProblem | None]:
    """Check one checkpoint against the key and the walked chain; a problem, or ``None``."""
    try:
        checkpoint = Checkpoint.from_json(raw)
    except ValueError:
        return None, AuditProblem(last_good + 1, f"{name} is not a valid checkpoint")
    position = checkpoint.position
    label = f"{name} (position {position})"
    if not checkpoint.is_valid(public_key):
        message = f"{label} is not signed by the broker's audit key: it was forged or altered"
        return None, AuditProblem(position, message)
    form = stored_form_problem(raw, checkpoint.to_json(), CHECKPOINT_FIELDS)
    if form is not None:
        return None, AuditProblem(position, f"{label} is not stored in its canonical bytes: {form}")
    broken_from = scan.problem.position if scan.problem is not None else None
    if broken_from is not None and position >= broken_from:
        return None, None  # the chain problem already covers it
    if position >= scan.walked:
        message = (
            f"{label} covers position {position} but the log ends at {scan.walked - 1}: "
            f"entries were removed, from position {scan.walked}"
        )
        return None, AuditProblem(scan.walked, message)
    if scan.hashes.get(position) != checkpoint.head:
        message = (
            f"entries {last_good + 1} to {position} were rewritten: {label} does not match the log"
        )
        return None, AuditProblem(last_good + 1, message)
    return checkpoint, None


def _verify(
    items: Iterable[tuple[int, bytes]],
    *,
    entries: int,
    checkpoint_lines: list[bytes],
    head_checkpoint: bytes | None,
    anchors: Sequence[bytes],
    public_key: bytes,
    head_raw: bytes | None,
    check_head: bool,
) -> AuditVerification:
    problems: list[AuditProblem] = []
    watch: set[int] = set()
    for raw in [*checkpoint_lines, *([head_checkpoint] if head_checkpoint else []), *anchors]:
        try:
            watch.add(Checkpoint.from_json(raw).position)
        except ValueError:
            continue
    scan = scan_entries(items, start=0, prev=GENESIS_HASH, watch=watch)
    if scan.problem is not None:
        problems.append(scan.problem)
    elif check_head:
        head_problem = _check_head(head_raw, entries=scan.walked, last_hash=scan.last_hash)
        if head_problem is not None:
            problems.append(head_problem)
    valid = 0
    last_good = -1
    for number, raw in enumerate(checkpoint_lines):
        found, problem = _checkpoint_problem(
            f"checkpoint {number}", raw, public_key=public_key, scan=scan, last_good=last_good
        )
        if problem is not None:
            problems.append(problem)
        if found is None:
            continue
        if found.position <= last_good:
            message = f"checkpoint {number} (position {found.position}) is out of order"
            problems.append(AuditProblem(found.position, message))
            continue
        valid += 1
        last_good = found.position
    signed_head: int | None = None
    if head_checkpoint is not None:
        found, problem = _checkpoint_problem(
            "the head checkpoint",
            head_checkpoint,
            public_key=public_key,
            scan=scan,
            last_good=last_good,
        )
        if problem is not None:
            problems.append(problem)
        signed_head = found.position if found is not None else None
    for number, raw in enumerate(anchors):
        _, problem = _checkpoint_problem(
            f"anchor {number}", raw, public_key=public_key, scan=scan, last_good=last_good
        )
        if problem is not None:
            problems.append(problem)
    covered_to = max(last_good, signed_head if signed_head is not None else -1)
    if not problems and covered_to < scan.walked - 1:
        message = (
            f"entries {covered_to + 1} to {scan.walked - 1} are covered by no signed "
            "checkpoint: the broker signs every entry it writes, so the newest entries' "
            "checkpoint was removed or they were written without the audit key"
        )
        problems.append(AuditProblem(covered_to + 1, message))
    problems.sort(key=lambda p: p.position)
    return AuditVerification(
        entries=entries,
        checkpoints=len(checkpoint_lines),
        valid_checkpoints=valid,
        last_checkpoint=last_good if last_good >= 0 else None,
        key_id=audit_key_id(public_key),
        problems=tuple(problems),
        signed_head=signed_head,
    )


def verify_audit(
    store: Store, public_key: bytes, *, anchors: Sequence[bytes] = ()
) -> AuditVerification:
    """Verify the whole log in the store: the chain, the head, and every checkpoint.

    Args:
        store: the broker's store.
        public_key: the broker's audit public key (raw 32 bytes).
        anchors: checkpoints held outside the broker (published, or from an earlier
            export): each must still match the log, so a rollback past it is found.

    Returns:
        The outcome; ``problems[0]`` names the first bad position.
    """
    snapshot = read_snapshot(store)  # appends made while the walk runs are not walked
    return _verify(
        iter_stored(store, start=0, stop=snapshot.length),
        entries=snapshot.length,
        checkpoint_lines=snapshot.checkpoints,
        head_checkpoint=snapshot.head_checkpoint,
        anchors=anchors,
        public_key=public_key,
        head_raw=snapshot.head,
        check_head=True,
    )


def _position_of(raw: bytes | None) -> int:
    try:
        return Checkpoint.from_json(raw).position if raw is not None else -1
    except ValueError:
        return -1


def export_lines(store: Store) -> Iterator[bytes]:
    """The log as JSON lines: every entry as stored, then every checkpoint as
    ``{"checkpoint": {...}}`` (each line without its newline), ending with the head
    checkpoint when it is newer than the newest periodic one. The export is the log as of
    one moment: entries appended while it is written are left for the next."""
    snapshot = read_snapshot(store)
    checkpoints = list(snapshot.checkpoints)
    for _, raw in iter_stored(store, start=0, stop=snapshot.length):
        yield raw
    head_checkpoint = snapshot.head_checkpoint
    newest = checkpoints[-1] if checkpoints else None
    if head_checkpoint is not None and _position_of(head_checkpoint) > _position_of(newest):
        checkpoints.append(head_checkpoint)
    for raw in checkpoints:
        yield EXPORT_CHECKPOINT_PREFIX + raw + b"}"


def verify_export(
    lines: Iterable[bytes | str], public_key: bytes, *, anchors: Sequence[bytes] = ()
) -> AuditVerification:
    """Verify an export (:func:`export_lines`) offline, with the published public key.

    An export has no head pointer: entries removed from its end are found by the
    checkpoint it ends with (the newest entry's), unless that line went too; ``anchors``
    (checkpoints held elsewhere) must still match it, as in :func:`verify_audit`.
    """
    entries: list[tuple[int, bytes]] = []
    checkpoint_lines: list[bytes] = []
    for line in lines:
        data = line.encode() if isinstance(line, str) else line
        data = data.strip()
        if not data:
            continue
        if data.startswith(EXPORT_CHECKPOINT_PREFIX) and data.endswith(b"}"):
            checkpoint_lines.append(data[len(EXPORT_CHECKPOINT_PREFIX) : -1])
        else:
            entries.append((len(entries), data))
    return _verify(
        entries,
        entries=len(entries),
        checkpoint_lines=checkpoint_lines,
        head_checkpoint=None,
        anchors=anchors,
        public_key=public_key,
        head_raw=None,
        check_head=False,
    )
