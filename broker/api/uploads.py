"""The upload protocol: open a batch, PUT its chunks, ask what is held, commit.

See docs/api.md. Chunks travel as raw binary (``application/octet-stream``), exactly the
bytes of the batch file, so their SHA-256 matches the manifest.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from broker.api.responses import conflict
from broker.deps import OrgCaller, RuntimeDep
from broker.errors import BadRequestError
from broker.ingest import accept_chunk, batch_status, commit_upload, find_batch, open_upload
from broker.store.datasets import dataset_id
from broker.store.limits import check_open_batch_quota, note_open_batch
from broker.upload_checks import replace_preview
from keys.wire import BatchMode, BatchOpen, BatchStatus, ChunkReceipt, Name, ReplacePreview

__all__ = ["router"]

router = APIRouter(tags=["uploads"])

BatchId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")]


@router.post(
    "/datasets/{name}/batches",
    response_model=BatchStatus,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BatchStatus, "description": "re-opened: the same manifest again"},
        **conflict(
            "the batch does not fit its dataset (`dataset_mismatch`), its id is taken by "
            "another manifest (`conflict`), or the open-batch quota is reached "
            "(`quota_exceeded`)"
        ),
    },
)
def open_batch(
    name: Name, body: BatchOpen, caller: OrgCaller, runtime: RuntimeDep, response: Response
) -> BatchStatus:
    """Open a batch from its manifest; the same manifest again re-opens it (to resume)."""
    batch_key = f"{dataset_id(caller.name, name)}/{body.manifest.batch_id}"
    check_open_batch_quota(runtime.store, runtime.settings, org=caller.name, batch_key=batch_key)
    result = open_upload(runtime, caller, name, body)
    if result.state.value == "receiving":
        note_open_batch(runtime.store, runtime.settings, org=caller.name, batch_key=batch_key)
    if result.received or result.state.value != "receiving":
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/datasets/{name}/batches/{batch_id}", response_model=BatchStatus)
def get_batch_status(
    name: Name, batch_id: BatchId, caller: OrgCaller, runtime: RuntimeDep
) -> BatchStatus:
    """Where a batch stands: chunks held (to resume), state, linkage progress."""
    record = find_batch(runtime.store, org=caller.name, dataset_name=name, batch_id=batch_id)
    return batch_status(runtime.store, record, batch_id)


@router.get("/datasets/{name}/batches/{batch_id}/replace-preview", response_model=ReplacePreview)
def get_replace_preview(
    name: Name, batch_id: BatchId, caller: OrgCaller, runtime: RuntimeDep
) -> ReplacePreview:
    """What committing this ``replace`` batch would remove: records held now, records in
    the batch, records removed, and whether the commit needs ``confirm_replace``."""
    record = find_batch(runtime.store, org=caller.name, dataset_name=name, batch_id=batch_id)
    if record.mode is not BatchMode.REPLACE:
        raise BadRequestError("only a replace batch has a replace preview")
    return replace_preview(runtime.store, record)


@router.put(
    "/datasets/{name}/batches/{batch_id}/chunks/{index}",
    response_model=ChunkReceipt,
    responses=conflict("the batch is committed, expired or was never opened (`batch_state`)"),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_chunk(
    name: Name,
    batch_id: BatchId,
    index: Annotated[int, Path(ge=0)],
    request: Request,
    caller: OrgCaller,
    runtime: RuntimeDep,
) -> ChunkReceipt:
    """Upload chunk ``index`` (raw bytes as in the batch file); a resend is stored once."""
    # the HTTP edge has authenticated the caller, then read the body within
    # TESSERA_BROKER_MAX_CHUNK_BYTES whatever its framing (broker/edge.py)
    body = await request.body()
    return await run_in_threadpool(
        accept_chunk,
        runtime,
        caller,
        dataset_name=name,
        batch_id=batch_id,
        index=index,
        body=body,
    )


@router.post(
    "/datasets/{name}/batches/{batch_id}/commit",
    response_model=BatchStatus,
    responses=conflict("chunks or records are missing (`batch_incomplete`), or it expired"),
)
def commit(
    name: Name,
    batch_id: BatchId,
    caller: OrgCaller,
    runtime: RuntimeDep,
    request: Request,
    confirm_replace: bool = False,
) -> BatchStatus:
    """Commit a complete batch: it becomes visible to linkage and is linked in the
    background (poll the batch until ``linked``). A replace that would remove more than
    the documented share of the records held needs ``confirm_replace=true``."""
    worker = request.app.state.link_worker
    return commit_upload(
        runtime,
        caller,
        dataset_name=name,
        batch_id=batch_id,
        notify=worker.notify if worker is not None else None,
        confirm_replace=confirm_replace,
    )
