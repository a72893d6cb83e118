"""HTTP models shared by the SDK and the broker: what travels on the wire, and nothing else.

Token chunks are not JSON: they travel as the binary chunks of :mod:`keys.batch`
(``application/octet-stream``). No model here can hold an identifier: only names of
datasets, organisations and match keys, hashes, counts and opaque wrapped blobs.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from keys.batch import BATCH_FORMAT_VERSION, BatchManifest

__all__ = [
    "BATCH_ID_PATTERN",
    "MAX_QUALITY_BYTES",
    "MAX_QUALITY_DEPTH",
    "NAME_PATTERN",
    "BatchMode",
    "BatchOpen",
    "BatchState",
    "BatchStatus",
    "ChunkReceipt",
    "DatasetDeclaration",
    "DatasetInfoOut",
    "DatasetKind",
    "ErrorBody",
    "Health",
    "IdentityOut",
    "KeyBlob",
    "KeyBlobInfo",
    "Name",
    "PublicKeyRegistration",
    "ReplacePreview",
    "Role",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Organisation, identity, dataset, domain and key-version names (as keys.keystore allows)."""
BATCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"

Name = Annotated[str, Field(pattern=NAME_PATTERN)]

MAX_QUALITY_BYTES = 1024 * 1024
"""Largest quality report a manifest may carry, as compact JSON (docs/api.md, Limits)."""
MAX_QUALITY_DEPTH = 16
"""Deepest nesting of a manifest's quality report (the SDK's is four levels deep)."""


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Role(StrEnum):
    """What an identity may do."""

    ORG = "org"
    RESEARCHER = "researcher"
    ADMIN = "admin"
    AUDITOR = "auditor"


class ErrorBody(_Wire):
    """Every error response: a stable machine ``code`` and a message for people."""

    code: str
    message: str


class Health(_Wire):
    """Answer of ``/healthz`` and ``/readyz``."""

    status: Literal["ok", "unavailable"]
    detail: str = ""


class IdentityOut(_Wire):
    """Who a credential belongs to (``GET /v1/whoami``)."""

    id: str
    name: str
    role: Role


class PublicKeyRegistration(_Wire):
    """An organisation's identity public key, as its SDK registers it."""

    algorithm: Annotated[str, Field(min_length=1, max_length=64)]
    public_key: Annotated[str, Field(min_length=1, max_length=8192)]
    """Base64 of the encoded public key."""
    fingerprint: Annotated[str, Field(max_length=64)] = ""


class KeyBlobInfo(_Wire):
    """A wrapped domain-key blob held for an organisation, without its bytes."""

    domain: Name
    key_version: Name
    size: int


class KeyBlob(_Wire):
    """A wrapped domain-key blob: only the organisation it was wrapped for can open it."""

    domain: Name
    key_version: Name
    blob: Annotated[str, Field(min_length=1, max_length=65536)]
    """Base64 of the blob, exactly as the custodian wrote it."""


class DatasetKind(StrEnum):
    """What a dataset holds: records with a payload, or an opt-out register (tokens only).

    The persons an ``opt_out`` dataset links to are removed from every release of an
    agreement where opt-outs apply.
    """

    RECORDS = "records"
    OPT_OUT = "opt_out"


class DatasetDeclaration(_Wire):
    """What an organisation declares before uploading to a dataset."""

    name: Name
    description: Annotated[str, Field(max_length=2000)] = ""
    one_record_per_person: bool
    domain: Name
    spec_hash: Annotated[str, Field(min_length=1, max_length=128)]
    key_version: Name
    match_keys: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=32)]
    payload_columns: Annotated[
        list[Annotated[str, Field(max_length=64)]], Field(max_length=256)
    ] = Field(default_factory=list)
    kind: DatasetKind = DatasetKind.RECORDS


class DatasetInfoOut(DatasetDeclaration):
    """A declared dataset, as the broker holds it."""

    org: Name
    created_at: str
    batches: int = 0


class BatchMode(StrEnum):
    """What a batch does to its dataset."""

    APPEND = "append"
    REPLACE = "replace"
    RETRACT = "retract"
    REKEY = "rekey"
    """The dataset's records again, tokenised under the domain's new key version (same
    references): held aside until every dataset of the domain has moved (docs/api.md)."""


class BatchState(StrEnum):
    """Life of a batch: only ``committed`` and later are visible to linkage."""

    RECEIVING = "receiving"
    COMMITTED = "committed"
    LINKING = "linking"
    LINKED = "linked"
    FAILED = "failed"


class BatchOpen(_Wire):
    """Opens (or, with the same manifest, re-opens) an upload batch.

    The manifest must be of the batch format this code reads, name at least one record
    and carry a quality report within :data:`MAX_QUALITY_BYTES` and
    :data:`MAX_QUALITY_DEPTH` (it is stored with the batch).
    """

    manifest: BatchManifest
    mode: BatchMode = BatchMode.APPEND

    @model_validator(mode="after")
    def _check_manifest(self) -> Self:
        manifest = self.manifest
        if manifest.format_version != BATCH_FORMAT_VERSION:
            raise ValueError(
                f"manifest.format_version: this broker reads batch format {BATCH_FORMAT_VERSION}"
            )
        if manifest.record_count < 1:
            raise ValueError("manifest.record_count: a batch holds at least one record")
        if _depth(manifest.quality) > MAX_QUALITY_DEPTH:
            raise ValueError(f"manifest.quality: nested deeper than {MAX_QUALITY_DEPTH} levels")
        size = len(json.dumps(manifest.quality, separators=(",", ":")).encode())
        if size > MAX_QUALITY_BYTES:
            raise ValueError(f"manifest.quality: over {MAX_QUALITY_BYTES} bytes as JSON")
        return self


def _depth(value: Any, level: int = 0) -> int:
    """How deep ``value`` nests (0 for a scalar), stopping just past the limit."""
    if level > MAX_QUALITY_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


class BatchStatus(_Wire):
    """Where a batch stands; ``received`` lists the chunk indexes held, for resuming."""

    batch_id: str
    dataset: str
    mode: BatchMode
    state: BatchState
    chunk_count: int
    record_count: int
    received: list[int]
    records_received: int
    chunks_linked: int
    error: str = ""


class ReplacePreview(_Wire):
    """What committing a ``replace`` batch would do to its dataset, before it is committed.

    ``removed`` is ``held - incoming`` (never below 0): the records the new snapshot is
    short of. A commit whose ``removed_share`` is above ``confirm_above`` is refused
    unless it is confirmed (``?confirm_replace=true``; ``--confirm-replace`` in the SDK).
    """

    held: int
    incoming: int
    removed: int
    removed_share: float
    confirm_above: float
    needs_confirmation: bool


class ChunkReceipt(_Wire):
    """Answer to one chunk upload; ``duplicate`` when the broker already held it."""

    index: int
    digest: str
    records: int
    duplicate: bool
