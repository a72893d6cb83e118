"""The hash-chained audit log: every call that reads or writes personal data leaves an entry.

An entry records the time, the identity (its name and role), the organisation, the action,
the agreement, the dataset and counts, and never an identifier, token, reference or
credential. Each entry carries the SHA-256 of the previous entry (``prev``) and its own
``hash`` over its canonical JSON without ``hash``, so altering, removing or reordering any
entry breaks the chain from there on (:func:`verify_chain`).

*Checkpoints* make the chain tamper-evident against someone who can rewrite all of it: a
checkpoint is the position and hash of an entry, the time and the id of the broker's audit
public key, signed with the broker's Ed25519 audit key (:mod:`keys.signing`). They are made
every ``every`` entries (by :class:`AuditCheckpointer` in a serving broker, or
:func:`ensure_checkpoints`), when an entry has waited longer than a maximum age for one,
and on demand
(:func:`checkpoint_now`). Before signing, the entries since the previous checkpoint are
verified, so a checkpoint never blesses a broken chain. Publish them, or hand them to an
auditor with the public key (:func:`export_lines`): :func:`verify_audit` and
:func:`verify_export` check the whole chain and every checkpoint and name the first bad
position (docs/audit.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from broker.errors import AuditTamperedError
from broker.store.audit_log import (
    append_chained,
    append_checkpoint,
    audit_length,
    last_checkpoint,
    read_checkpoints,
    read_entries,
    read_head,
    release_counts,
)
from broker.store.client import Store
from keys.signing import public_key_of, sign, verify

__all__ = [
    "CHECKPOINT_LABEL",
    "GENESIS_HASH",
    "RELEASE_ACTION",
    "AuditCheckpointer",
    "AuditEntry",
    "AuditProblem",
    "AuditVerification",
    "Checkpoint",
    "append_audit",
    "audit_count",
    "audit_key_id",
    "checkpoint_now",
    "ensure_checkpoints",
    "entry_hash",
    "export_lines",
    "make_checkpoint",
    "read_audit",
    "read_audit_checkpoints",
    "releases_by_agreement",
    "verify_audit",
    "verify_chain",
    "verify_export",
]

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
"""The ``prev`` of the first entry."""

CHECKPOINT_LABEL = b"tessera audit checkpoint v1\n"
"""Prefix of every signed checkpoint message (domain separation from anything else signed)."""

RELEASE_ACTION = "release"
"""The action of an entry that records a release under an agreement (counted per agreement)."""

_PAGE = 5000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry, as stored."""

    seq: int
    time: str
    identity: str
    role: str
    action: str
    dataset: str
    organisation: str = ""
    agreement: str = ""
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
            "organisation": self.organisation,
            "action": self.action,
            "agreement": self.agreement,
            "dataset": self.dataset,
            "counts": dict(sorted(self.counts.items())),
            "prev": self.prev,
        }

    def to_json(self) -> bytes:
        """Canonical JSON of the whole entry, ``hash`` included."""
        return _canonical({**self.body(), "hash": self.hash})

    @classmethod
    def from_json(cls, data: bytes) -> AuditEntry:
        """Parse a stored entry.

        Raises:
            ValueError: not an audit entry.
        """
        try:
            raw = json.loads(data)
            return cls(
                seq=int(raw["seq"]),
                time=str(raw["time"]),
                identity=str(raw["identity"]),
                role=str(raw["role"]),
                organisation=str(raw.get("organisation", "")),
                action=str(raw["action"]),
                agreement=str(raw.get("agreement", "")),
                dataset=str(raw["dataset"]),
                counts={str(k): int(v) for k, v in raw["counts"].items()},
                prev=str(raw["prev"]),
                hash=str(raw["hash"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError("not an audit entry") from exc


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
    organisation: str | None = None,
    agreement: str = "",
    counts: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the chain and return it.

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
    when = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
    org = organisation if organisation is not None else (identity if role == "org" else "")
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
            organisation=org,
            action=action,
            agreement=agreement,
            dataset=dataset,
            counts=dict(counts or {}),
            prev=prev,
        )
        entry = replace(draft, hash=entry_hash(draft))
        result[:] = [entry]
        return entry.to_json(), _canonical({"seq": seq, "hash": entry.hash})

    is_release = action == RELEASE_ACTION or action.startswith(RELEASE_ACTION + ".")
    append_chained(store, build, release_of=agreement if is_release else "")
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


# Checkpoints ---------------------------------------------------------------------------------


def audit_key_id(public_key: bytes) -> str:
    """The id of an audit public key: ``ed25519:`` and 16 hex digits of its SHA-256."""
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that entry ``position`` of the log has hash ``head``.

    Attributes:
        position: sequence number of the newest entry covered (all before it are too).
        head: that entry's hash.
        time: when the checkpoint was signed (ISO 8601, UTC).
        key_id: :func:`audit_key_id` of the public key that verifies it.
        signature: Ed25519 signature of :meth:`message`, base64.
    """

    position: int
    head: str
    time: str
    key_id: str
    signature: str = ""

    def message(self) -> bytes:
        """The signed bytes: :data:`CHECKPOINT_LABEL` and the canonical JSON of the rest."""
        body = {"position": self.position, "head": self.head, "time": self.time}
        return CHECKPOINT_LABEL + _canonical({**body, "key_id": self.key_id})

    def to_dict(self) -> dict[str, object]:
        """The checkpoint as a JSON object."""
        return {
            "position": self.position,
            "head": self.head,
            "time": self.time,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def to_json(self) -> bytes:
        """Canonical JSON of the checkpoint."""
        return _canonical(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        """Parse a checkpoint.

        Raises:
            ValueError: not a checkpoint.
        """
        try:
            raw = json.loads(data)
            return cls(
                position=int(raw["position"]),
                head=str(raw["head"]),
                time=str(raw["time"]),
                key_id=str(raw["key_id"]),
                signature=str(raw["signature"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError("not an audit checkpoint") from exc

    def is_valid(self, public_key: bytes) -> bool:
        """Whether the signature verifies under ``public_key`` and names that key."""
        if self.key_id != audit_key_id(public_key):
            return False
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        return verify(public_key, self.message(), signature)


def make_checkpoint(
    position: int, head: str, signing_seed: bytes, *, now: datetime | None = None
) -> Checkpoint:
    """Sign a checkpoint of entry ``position`` whose hash is ``head``.

    Args:
        position: sequence number of the entry.
        head: its hash.
        signing_seed: the broker's Ed25519 audit key (32-byte seed).
        now: the time to record (default: now, UTC).
    """
    draft = Checkpoint(
        position=position,
        head=head,
        time=(now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        key_id=audit_key_id(public_key_of(signing_seed)),
    )
    signature = base64.b64encode(sign(signing_seed, draft.message())).decode()
    return replace(draft, signature=signature)


def read_audit_checkpoints(store: Store) -> list[Checkpoint]:
    """Every checkpoint, oldest first (unparseable ones are left out; see :func:`verify_audit`)."""
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
    problem, hashes, _, _ = _scan(
        _iter_raw(store, start=start, stop=position + 1), start=start, prev=prev, watch={position}
    )
    if problem is not None:
        raise AuditTamperedError(problem.position, problem.message)
    if position not in hashes:
        raise AuditTamperedError(position, f"entry {position} is missing")
    return hashes[position]


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


# Verification --------------------------------------------------------------------------------


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
        checkpoints: checkpoints held.
        valid_checkpoints: checkpoints whose signature verifies and that match the log.
        last_checkpoint: position of the newest valid checkpoint, or ``None``.
        key_id: id of the public key the checkpoints were checked against.
        problems: every problem found, first position first (empty when the log verifies).
    """

    entries: int
    checkpoints: int
    valid_checkpoints: int
    last_checkpoint: int | None
    key_id: str
    problems: tuple[AuditProblem, ...] = ()

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
            return (
                f"audit log verifies: {self.entries} entries, "
                f"{self.valid_checkpoints} signed checkpoints{tail}"
            )
        first = self.problems[0]
        return f"audit log fails verification at position {first.position}: {first.message}"


def _iter_raw(store: Store, *, start: int, stop: int | None) -> Iterator[tuple[int, bytes]]:
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


def _scan(
    items: Iterable[tuple[int, bytes]], *, start: int, prev: str, watch: set[int]
) -> tuple[AuditProblem | None, dict[int, str], int, str]:
    """Walk entries from position ``start``; returns the first problem, the hashes at the
    ``watch`` positions, the number of entries walked and the last good hash."""
    seen: dict[int, str] = {}
    walked = 0
    iterator = iter(items)
    current = next(iterator, None)
    while current is not None:
        position, raw = current
        following = next(iterator, None)
        entry = _parse(raw)
        if entry is None:
            return (
                AuditProblem(position, "the entry is not a valid audit entry"),
                seen,
                walked,
                prev,
            )
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
                return AuditProblem(position - 1, message), seen, walked, prev
            message = (
                f"the entry here carries sequence number {entry.seq}: "
                "entries were deleted, inserted or reordered"
            )
            return AuditProblem(position, message), seen, walked, prev
        if not self_consistent:
            message = "the entry was altered: its content does not match its hash"
            return AuditProblem(position, message), seen, walked, prev
        if entry.prev != prev:
            if position > start:
                message = "the entry was altered and re-hashed: the next entry does not chain to it"
                return AuditProblem(position - 1, message), seen, walked, prev
            message = "the entry does not chain to the one before it"
            return AuditProblem(position, message), seen, walked, prev
        if position in watch:
            seen[position] = entry.hash
        prev = entry.hash
        walked += 1
        current = following
    return None, seen, walked, prev


def _check_head(head_raw: bytes | None, *, entries: int, last_hash: str) -> AuditProblem | None:
    if head_raw is None:
        if entries:
            return AuditProblem(entries - 1, "the head pointer is missing")
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
    return None


def _verify(
    items: Iterable[tuple[int, bytes]],
    *,
    entries: int,
    checkpoint_lines: list[bytes],
    public_key: bytes,
    head_raw: bytes | None,
    check_head: bool,
) -> AuditVerification:
    problems: list[AuditProblem] = []
    checkpoints: list[Checkpoint | None] = []
    for raw in checkpoint_lines:
        try:
            checkpoints.append(Checkpoint.from_json(raw))
        except ValueError:
            checkpoints.append(None)
    watch = {c.position for c in checkpoints if c is not None}
    chain_problem, hashes, walked, last_hash = _scan(items, start=0, prev=GENESIS_HASH, watch=watch)
    if chain_problem is not None:
        problems.append(chain_problem)
    elif check_head:
        head_problem = _check_head(head_raw, entries=walked, last_hash=last_hash)
        if head_problem is not None:
            problems.append(head_problem)
    broken_from = chain_problem.position if chain_problem is not None else None
    valid = 0
    last_good = -1
    newest_valid: int | None = None
    for number, checkpoint in enumerate(checkpoints):
        if checkpoint is None:
            problems.append(
                AuditProblem(last_good + 1, f"checkpoint {number} is not a valid checkpoint")
            )
            continue
        position = checkpoint.position
        if not checkpoint.is_valid(public_key):
            problems.append(
                AuditProblem(
                    position,
                    f"checkpoint {number} (position {position}) is not signed by the broker's "
                    "audit key: it was forged or altered",
                )
            )
            continue
        if position <= last_good:
            problems.append(
                AuditProblem(position, f"checkpoint {number} (position {position}) is out of order")
            )
            continue
        if broken_from is not None and position >= broken_from:
            continue
        if position >= walked:
            problems.append(
                AuditProblem(
                    walked,
                    f"checkpoint {number} covers position {position} but the log ends at "
                    f"{walked - 1}: entries were removed",
                )
            )
            continue
        if hashes.get(position) != checkpoint.head:
            problems.append(
                AuditProblem(
                    last_good + 1,
                    f"entries {last_good + 1} to {position} were rewritten: checkpoint "
                    f"{number} (position {position}) does not match the log",
                )
            )
            continue
        valid += 1
        last_good = position
        newest_valid = position
    problems.sort(key=lambda p: p.position)
    return AuditVerification(
        entries=entries,
        checkpoints=len(checkpoints),
        valid_checkpoints=valid,
        last_checkpoint=newest_valid,
        key_id=audit_key_id(public_key),
        problems=tuple(problems),
    )


def verify_audit(store: Store, public_key: bytes) -> AuditVerification:
    """Verify the whole log in the store: the chain, the head, and every checkpoint.

    Args:
        store: the broker's store.
        public_key: the broker's audit public key (raw 32 bytes).

    Returns:
        The outcome; ``problems[0]`` names the first bad position.
    """
    checkpoint_lines = read_checkpoints(store)
    head_raw = read_head(store)
    entries = audit_length(store)
    return _verify(
        _iter_raw(store, start=0, stop=None),
        entries=entries,
        checkpoint_lines=checkpoint_lines,
        public_key=public_key,
        head_raw=head_raw,
        check_head=True,
    )


def export_lines(store: Store) -> Iterator[bytes]:
    """The log as JSON lines: every entry as stored, then every checkpoint as
    ``{"checkpoint": {...}}`` (each line without its newline)."""
    for _, raw in _iter_raw(store, start=0, stop=None):
        yield raw
    for raw in read_checkpoints(store):
        yield b'{"checkpoint":' + raw + b"}"


def verify_export(lines: Iterable[bytes | str], public_key: bytes) -> AuditVerification:
    """Verify an export (:func:`export_lines`) offline, with the published public key.

    An export has no head pointer, so entries removed from its end after the newest
    checkpoint cannot be told from a shorter export.
    """
    entries: list[tuple[int, bytes]] = []
    checkpoint_lines: list[bytes] = []
    for line in lines:
        data = line.encode() if isinstance(line, str) else line
        data = data.strip()
        if not data:
            continue
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and set(parsed) == {"checkpoint"}:
            checkpoint_lines.append(_canonical(parsed["checkpoint"]))
        else:
            entries.append((len(entries), data))
    return _verify(
        entries,
        entries=len(entries),
        checkpoint_lines=checkpoint_lines,
        public_key=public_key,
        head_raw=None,
        check_head=False,
    )
