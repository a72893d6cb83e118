"""Records → a batch file: :class:`client_sdk.tokenise.Tokeniser` over a stream, in workers.

The tokeniser turns a block of rows into one encoded chunk; this module feeds it. Records
(or raw blocks that the workers normalise themselves, :class:`RecordBlocks`) go in blocks
of one chunk each, to this process or to a pool of ``workers`` processes, and come back
in input order (:func:`tokenise_records`); :func:`write_batch` writes them into the batch
file and the local index, which appear only when the whole batch is written.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import Any

from client_sdk.local_index import LocalIndex
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import (
    CHUNK_RECORDS,
    EVIDENCE_CHUNK_RECORDS,
    EncodedChunk,
    TokeniseParams,
    Tokeniser,
)
from keys.batch import BatchManifest, BatchWriter
from keys.spec import LinkageSpec

__all__ = [
    "BatchSummary",
    "RecordBlocks",
    "chunk_records_for",
    "tokenise_records",
    "write_batch",
]

_Row = tuple[Any, ...]
"""A record as the tokeniser's row (:meth:`client_sdk.tokenise.Tokeniser.row`)."""


@dataclass(frozen=True, slots=True)
class RecordBlocks:
    """Raw input in blocks that the workers turn into records themselves.

    Reading stays in the calling process (it is sequential) while normalising moves to the
    workers with the tokenising, so both scale with ``workers``. Each block becomes one
    chunk.

    Attributes:
        blocks: the raw blocks, in input order.
        prepare: block → its records and a by-product (e.g. quality counts); picklable,
            called where the block is tokenised.
        absorb: receives each block's by-product in the calling process, in input order.
    """

    blocks: Iterable[Any]
    prepare: Callable[[Any], tuple[Sequence[NormalisedRecord], Any]]
    absorb: Callable[[Any], None]


_Prepare = Callable[[Any], tuple[Sequence[NormalisedRecord], Any]]

_WORKER: tuple[Tokeniser, _Prepare | None] | None = None


def _init_worker(params: TokeniseParams, prepare: _Prepare | None) -> None:
    global _WORKER
    _WORKER = (Tokeniser(params), prepare)


def _encode_block(
    tokeniser: Tokeniser, prepare: _Prepare | None, block: Any
) -> tuple[EncodedChunk, Any]:
    if prepare is None:
        return tokeniser.encode_rows(block), None
    records, extra = prepare(block)
    return tokeniser.encode_rows(list(map(tokeniser.row, records))), extra


def _work(block: Any) -> tuple[EncodedChunk, Any]:
    assert _WORKER is not None, "worker not initialised"
    return _encode_block(*_WORKER, block)


def _blocks(
    records: Iterable[NormalisedRecord], row: Callable[[NormalisedRecord], _Row], size: int
) -> Iterator[list[_Row]]:
    block: list[_Row] = []
    for record in records:
        block.append(row(record))
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


def chunk_records_for(spec: LinkageSpec) -> int:
    """Records per chunk by default under ``spec``: :data:`EVIDENCE_CHUNK_RECORDS` when it
    derives the probabilistic evidence, else :data:`CHUNK_RECORDS`."""
    return EVIDENCE_CHUNK_RECORDS if spec.blocking_keys else CHUNK_RECORDS


def tokenise_records(
    records: Iterable[NormalisedRecord] | RecordBlocks,
    params: TokeniseParams,
    *,
    chunk_records: int | None = None,
    workers: int = 1,
) -> Iterator[EncodedChunk]:
    """Tokenise a stream of records into encoded chunks, in input order.

    Memory stays flat: at most ``2 × workers`` blocks are in flight.

    Args:
        records: normalised records, e.g. from ``client_sdk.pipeline.iter_records``, or
            raw blocks the workers normalise, e.g. from ``client_sdk.pipeline.record_blocks``
            (their blocks set the chunk size).
        params: spec, keys, domain and dataset.
        chunk_records: records per chunk (:func:`chunk_records_for` the spec by default).
        workers: processes to work in; 1 works in this process.

    Yields:
        One :class:`EncodedChunk` per block of ``chunk_records`` records.
    """
    if chunk_records is None:
        chunk_records = chunk_records_for(params.spec)
    if chunk_records < 1:
        raise ValueError("chunk_records must be at least 1")
    tokeniser = Tokeniser(params)
    prepare: _Prepare | None = None
    absorb: Callable[[Any], None] = lambda extra: None  # noqa: E731
    blocks: Iterable[Any]
    if isinstance(records, RecordBlocks):
        blocks, prepare, absorb = records.blocks, records.prepare, records.absorb
    else:
        blocks = _blocks(records, tokeniser.row, chunk_records)
    if workers <= 1:
        for block in blocks:
            chunk, extra = _encode_block(tokeniser, prepare, block)
            absorb(extra)
            yield chunk
        return
    context = multiprocessing.get_context("forkserver")
    pool: Pool = context.Pool(workers, initializer=_init_worker, initargs=(params, prepare))
    try:
        pending: deque[AsyncResult[tuple[EncodedChunk, Any]]] = deque()
        for block in blocks:
            pending.append(pool.apply_async(_work, (block,)))
            if len(pending) >= 2 * workers:
                chunk, extra = pending.popleft().get()
                absorb(extra)
                yield chunk
        while pending:
            chunk, extra = pending.popleft().get()
            absorb(extra)
            yield chunk
        pool.close()
    finally:
        pool.terminate()
        pool.join()


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What :func:`write_batch` wrote.

    Attributes:
        manifest: the batch's manifest, as written.
        token_counts: tokens per match key, in spec order.
        restricted: records flagged research-restricted (shown locally, never sent).
    """

    manifest: BatchManifest
    token_counts: dict[str, int]
    restricted: int = 0


def write_batch(
    records: Iterable[NormalisedRecord] | RecordBlocks,
    params: TokeniseParams,
    *,
    out: Path,
    index: LocalIndex,
    quality: Callable[[], dict[str, Any]] | None = None,
    workers: int = 1,
    chunk_records: int | None = None,
    batch_id: str | None = None,
    org: str | None = None,
    opt_out_checked: date | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchSummary:
    """Tokenise ``records`` into the batch file ``out`` and the local index.

    The batch file appears only when it is whole (``keys.batch.BatchWriter``), and the
    local index is committed only then; on any error both are left as they were.

    Args:
        records: normalised records, or raw blocks the workers normalise.
        params: spec, keys, domain, key version and dataset.
        out: the batch file to write.
        index: the dataset's local index (reference → local id).
        quality: called once the records are consumed; its result is the manifest's
            quality report.
        workers: processes to derive tokens in.
        chunk_records: records per chunk (:func:`chunk_records_for` the spec by default).
        batch_id: the batch's id (a random UUID by default).
        org: the organisation the batch is made for (the broker refuses it from others).
        opt_out_checked: the day of the national opt-out check the flags reflect.
        now: clock for the manifest's creation time.

    Returns:
        The manifest and per-key token counts.
    """
    batch_id = batch_id or uuid.uuid4().hex
    names = params.spec.key_names
    counts = [0] * len(names)
    total = restricted = 0
    with BatchWriter(out) as writer:
        for encoded in tokenise_records(
            records, params, chunk_records=chunk_records, workers=workers
        ):
            writer.write_encoded(encoded.data)
            index.add(encoded.refs, encoded.local_ids, batch_id=batch_id)
            total += len(encoded)
            restricted += encoded.restricted
            counts = [a + b for a, b in zip(counts, encoded.token_counts, strict=True)]
        manifest = BatchManifest(
            batch_id=batch_id,
            dataset=params.dataset,
            org=org,
            domain=params.domain,
            key_version=params.key_version,
            spec_hash=params.spec.content_hash,
            match_keys=names,
            payload_columns=list(params.payload_columns),
            record_count=total,
            chunk_digests=writer.chunk_digests,
            created_at=now().isoformat(timespec="seconds"),
            quality=quality() if quality is not None else {},
            opt_out_checked=opt_out_checked,
        )
        writer.finish(manifest)
    index.commit()
    return BatchSummary(manifest, dict(zip(names, counts, strict=True)), restricted)
