"""The audit log over HTTP: the ``auditor`` role (and ``admin``) reads it, nothing else.

Entries, signed checkpoints, the public key that verifies them, a verification run and a
JSON-lines export; an admin may also ask for a checkpoint now. No other router admits the
auditor role, so an auditor credential opens the audit and nothing more.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from broker.audit import (
    AuditEntry,
    Checkpoint,
    append_audit,
    audit_count,
    audit_key_id,
    checkpoint_now,
    export_lines,
    read_audit,
    read_audit_checkpoints,
    verify_audit,
)
from broker.deps import AdminCaller, AuditorCaller, RuntimeDep
from keys.signing import public_key_of

__all__ = [
    "AuditEntryOut",
    "AuditPageOut",
    "AuditPublicKeyOut",
    "AuditVerificationOut",
    "CheckpointOut",
    "ProblemOut",
    "router",
]

router = APIRouter(prefix="/audit", tags=["audit"])

MAX_AUDIT_POSITION = 2**53 - 1
"""Largest ``start`` accepted: far beyond any log, and exact in every JSON reader."""


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuditEntryOut(_Out):
    """One audit entry (never an identifier, token, reference or credential)."""

    seq: int
    time: str
    identity: str
    role: str
    organisation: str
    action: str
    agreement: str
    dataset: str
    counts: dict[str, int]
    prev: str
    hash: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        """The wire form of ``entry``."""
        return cls.model_validate({**entry.body(), "hash": entry.hash})


class AuditPageOut(_Out):
    """A page of entries and the size of the whole log."""

    total: int
    start: int
    entries: list[AuditEntryOut]


class CheckpointOut(_Out):
    """A signed checkpoint: entry ``position`` has hash ``head``."""

    position: int
    head: str
    time: str
    key_id: str
    signature: str

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> CheckpointOut:
        """The wire form of ``checkpoint``."""
        return cls.model_validate(checkpoint.to_dict())


class AuditPublicKeyOut(_Out):
    """The key that verifies checkpoints (Ed25519, raw 32 bytes in base64)."""

    algorithm: str
    public_key: str
    key_id: str


class ProblemOut(_Out):
    """A verification problem at the first position it affects."""

    position: int
    message: str


class AuditVerificationOut(_Out):
    """The outcome of verifying the chain and every checkpoint."""

    ok: bool
    entries: int
    checkpoints: int
    valid_checkpoints: int
    last_checkpoint: int | None
    first_bad_position: int | None
    summary: str
    key_id: str
    problems: list[ProblemOut]


@router.get("/entries", response_model=AuditPageOut)
def entries(
    caller: AuditorCaller,
    runtime: RuntimeDep,
    start: Annotated[int, Query(ge=0, le=MAX_AUDIT_POSITION)] = 0,
    count: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPageOut:
    """Entries from position ``start``, oldest first."""
    found = read_audit(runtime.store, start=start, count=count)
    return AuditPageOut(
        total=audit_count(runtime.store),
        start=start,
        entries=[AuditEntryOut.of(e) for e in found],
    )


@router.get("/checkpoints", response_model=list[CheckpointOut])
def checkpoints(caller: AuditorCaller, runtime: RuntimeDep) -> list[CheckpointOut]:
    """Every signed checkpoint, oldest first."""
    return [CheckpointOut.of(c) for c in read_audit_checkpoints(runtime.store)]


@router.get("/public-key", response_model=AuditPublicKeyOut)
def public_key(caller: AuditorCaller, runtime: RuntimeDep) -> AuditPublicKeyOut:
    """The broker's audit public key, which verifies every checkpoint."""
    key = public_key_of(runtime.secrets.audit_signing_key)
    return AuditPublicKeyOut(
        algorithm="ed25519", public_key=base64.b64encode(key).decode(), key_id=audit_key_id(key)
    )


@router.get("/verification", response_model=AuditVerificationOut)
async def verification(caller: AuditorCaller, runtime: RuntimeDep) -> AuditVerificationOut:
    """Verify the whole chain and every checkpoint now."""
    key = public_key_of(runtime.secrets.audit_signing_key)
    result = await run_in_threadpool(verify_audit, runtime.store, key)
    return AuditVerificationOut(
        ok=result.ok,
        entries=result.entries,
        checkpoints=result.checkpoints,
        valid_checkpoints=result.valid_checkpoints,
        last_checkpoint=result.last_checkpoint,
        first_bad_position=result.first_bad_position,
        summary=result.summary(),
        key_id=result.key_id,
        problems=[ProblemOut(position=p.position, message=p.message) for p in result.problems],
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def export(caller: AuditorCaller, runtime: RuntimeDep) -> StreamingResponse:
    """The whole log as JSON lines: entries as stored, then ``{"checkpoint": …}`` lines."""
    append_audit(runtime.store, identity=caller.name, role=caller.role.value, action="audit.export")
    lines = (line + b"\n" for line in export_lines(runtime.store))
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.post("/checkpoints", response_model=CheckpointOut | None)
async def checkpoint(caller: AdminCaller, runtime: RuntimeDep) -> CheckpointOut | None:
    """Sign a checkpoint of the newest entry now (admin only); ``null`` for an empty log."""
    made = await run_in_threadpool(
        lambda: checkpoint_now(
            runtime.store,
            runtime.secrets.audit_signing_key,
            every=runtime.settings.audit_checkpoint_every,
        )
    )
    return CheckpointOut.of(made) if made is not None else None
