"""What an audit entry and a checkpoint hold, their canonical bytes, hashing and signing.

Both are stored as canonical JSON (sorted keys, no spaces, ASCII): the exact bytes are what
is hashed and signed, so :func:`stored_form_problem` refuses any stored form that does not
re-serialise to the identical bytes (an extra field, a duplicate key, a number stored as a
string), even when the fields it parses to would hash correctly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache

from keys.signing import public_key_of, sign, verify

__all__ = [
    "CHECKPOINT_FIELDS",
    "CHECKPOINT_LABEL",
    "ENTRY_FIELDS",
    "GENESIS_HASH",
    "RELEASE_ACTION",
    "AuditEntry",
    "Checkpoint",
    "audit_key_id",
    "canonical_json",
    "entry_hash",
    "make_checkpoint",
    "stored_form_problem",
]

GENESIS_HASH = "0" * 64
"""The ``prev`` of the first entry."""

CHECKPOINT_LABEL = b"tessera audit checkpoint v1\n"
"""Prefix of every signed checkpoint message (domain separation from anything else signed)."""

RELEASE_ACTION = "release"
"""The action of an entry that records a release under an agreement (counted per agreement)."""

ENTRY_FIELDS: Mapping[str, type] = {
    "action": str,
    "agreement": str,
    "counts": dict,
    "dataset": str,
    "hash": str,
    "identity": str,
    "organisation": str,
    "prev": str,
    "role": str,
    "seq": int,
    "time": str,
}
"""Every field of a stored entry and its JSON type (``counts`` maps names to integers)."""

CHECKPOINT_FIELDS: Mapping[str, type] = {
    "head": str,
    "key_id": str,
    "position": int,
    "signature": str,
    "time": str,
}
"""Every field of a stored checkpoint and its JSON type."""


def canonical_json(value: object) -> bytes:
    """The canonical JSON of ``value``: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


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
        return canonical_json({**self.body(), "hash": self.hash})

    @classmethod
    def from_json(cls, data: bytes) -> AuditEntry:
        """Parse a stored entry (leniently: :func:`stored_form_problem` checks the bytes).

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


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 (hex) of the entry's canonical JSON without its ``hash``."""
    return hashlib.sha256(canonical_json(entry.body())).hexdigest()


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
        return CHECKPOINT_LABEL + canonical_json({**body, "key_id": self.key_id})

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
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        """Parse a checkpoint (leniently: :func:`stored_form_problem` checks the bytes).

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


@lru_cache(maxsize=4)
def _key_id_of_seed(signing_seed: bytes) -> str:
    # deriving the public key costs as much as a signature: once per key, not per entry
    return audit_key_id(public_key_of(signing_seed))


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
        key_id=_key_id_of_seed(signing_seed),
    )
    signature = base64.b64encode(sign(signing_seed, draft.message())).decode()
    return replace(draft, signature=signature)


def _duplicate_key(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _is_json_type(value: object, expected: type) -> bool:
    # bool is a subclass of int in Python but a different JSON type
    return isinstance(value, expected) and not (expected is int and isinstance(value, bool))


_JSON_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a fractional number"),
    (str, "a string"),
    (dict, "an object"),
    (list, "an array"),
)


def _json_type_name(kind: type) -> str:
    return next((name for t, name in _JSON_TYPE_NAMES if issubclass(kind, t)), "null")


def stored_form_problem(stored: bytes, canonical: bytes, fields: Mapping[str, type]) -> str | None:
    """Why ``stored`` is not the canonical form ``canonical`` of what it parses to, or ``None``.

    Args:
        stored: the bytes as stored (one entry or one checkpoint).
        canonical: the canonical JSON of the record ``stored`` parses to.
        fields: the record's fields and their JSON types (:data:`ENTRY_FIELDS`,
            :data:`CHECKPOINT_FIELDS`).

    Returns:
        ``None`` when the bytes are identical; else the reason, naming only field names of
        ours (never a value, nor a field name found in the stored bytes).
    """
    if stored == canonical:
        return None
    try:
        parsed = json.loads(stored, object_pairs_hook=_duplicate_key)
    except _DuplicateKeyError as exc:
        where = f"'{exc.key}'" if exc.key in fields else "a key"
        return f"{where} appears twice in the stored bytes"
    except ValueError:
        return "the stored bytes are not JSON"
    if not isinstance(parsed, dict):
        return "the stored bytes are not a JSON object"
    if set(parsed) - set(fields):
        return "the stored bytes hold a field that is not part of the record"
    for name, expected in sorted(fields.items()):
        if name not in parsed:
            return f"'{name}' is missing from the stored bytes"
        value = parsed[name]
        if not _is_json_type(value, expected):
            stored_as, wanted = _json_type_name(type(value)), _json_type_name(expected)
            return f"'{name}' is stored as {stored_as}, not {wanted}"
        if isinstance(value, dict) and not all(_is_json_type(v, int) for v in value.values()):
            return f"a value in '{name}' is not stored as an integer"
    return "the stored bytes are not canonical JSON (key order, spacing or escaping)"
