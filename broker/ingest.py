"""Uploads: opening batches, accepting chunks (re-keyed at rest), commit, and linking.

A batch goes ``receiving → committed → linking → linked`` (or ``failed``). Chunks are
checked against the batch manifest (digest, columns, size), their tokens re-keyed with
the broker's secret, and stored; the token as received is never stored. On commit the
batch is queued; the link worker (broker/worker.py) links queued batches chunk by
chunk in commit order, recording after each chunk where to resume, so a broker
restarted mid-batch carries on (linking a chunk twice changes nothing).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import chain
from typing import cast

from broker import metrics
from broker.audit import append_audit
from broker.errors import (
    BadRequestError,
    ChunkError,
    DatasetMismatchError,
    NotFoundOrForbiddenError,
    PayloadTooLargeError,
)
from broker.linkage import DatasetInfo, IncomingRecord, Linker
from broker.linkage_report import remember_domain_report
from broker.matching import Layout
from broker.rotation import (
    check_batch,
    check_rekey_commit,
    linking_scope,
)
from broker.runtime import BrokerRuntime, utc_now
from broker.store import batches as batch_store
from broker.store.client import Store
from broker.store.datasets import dataset_id, get_dataset
from broker.store.identities import Identity
from broker.store.linkage_codec import CHECK_DAY_EPOCH
from broker.store.linkage_evidence import encode_evidence
from broker.upload_checks import check_batch_org, check_key_strength, check_replace_share
from keys.batch import BatchManifest
from keys.chunk import (
    RESEARCH_RESTRICTED,
    BatchFormatError,
    ChunkEvidence,
    TokenChunk,
    chunk_digest,
    decode_chunk,
    encode_chunk,
)
from keys.derive import (
    COMPARISON_TOKEN_BYTES,
    AtRestKeyer,
    EvidenceRekeyer,
    StoredToken,
    Token,
)
from keys.wire import (
    BATCH_ID_PATTERN,
    BatchMode,
    BatchOpen,
    BatchState,
    BatchStatus,
    ChunkReceipt,
    DatasetInfoOut,
)

__all__ = [
    "accept_chunk",
    "audit_commit",
    "batch_status",
    "check_manifest",
    "commit_upload",
    "fault",
    "find_batch",
    "link_batch",
    "open_upload",
    "rekey_chunk",
    "stored_evidence",
]

logger = logging.getLogger(__name__)


def check_manifest(dataset: DatasetInfoOut, manifest: BatchManifest, mode: BatchMode) -> None:
    """Refuse a batch tokenised under anything but its dataset's domain, version and spec.

    A retraction carries references only, so only its dataset name is checked. A rekey
    batch is under the domain's new key version (broker/rotation.py checks which).

    Raises:
        DatasetMismatchError: naming what differs (never a value).
    """
    if manifest.dataset != dataset.name:
        raise DatasetMismatchError("the batch was written for another dataset")
    if mode is BatchMode.RETRACT:
        return
    problems = []
    if manifest.domain != dataset.domain:
        problems.append("domain")
    if manifest.key_version != dataset.key_version and mode is not BatchMode.REKEY:
        problems.append("key version")
    if manifest.spec_hash != dataset.spec_hash:
        problems.append("linkage spec hash")
    if manifest.match_keys != dataset.match_keys:
        problems.append("match keys")
    if manifest.payload_columns != dataset.payload_columns:
        problems.append("payload columns")
    if problems:
        raise DatasetMismatchError(
            f"the batch differs from dataset {dataset.name!r} in: " + ", ".join(problems)
        )


def _batch_key(org: str, dataset_name: str, batch_id: str) -> str:
    return f"{dataset_id(org, dataset_name)}/{batch_id}"


def batch_status(store: Store, record: batch_store.BatchRecord, batch_id: str) -> BatchStatus:
    """The wire view of a stored batch."""
    if record.state is BatchState.RECEIVING:
        received = batch_store.held_chunks(store, record.batch_key)
    else:
        received = list(range(record.chunk_count))
    return BatchStatus(
        batch_id=batch_id,
        dataset=record.dataset.partition("/")[2],
        mode=record.mode,
        state=record.state,
        chunk_count=record.chunk_count,
        record_count=record.record_count,
        received=received,
        records_received=record.records_received,
        chunks_linked=record.chunks_linked,
        error=record.error,
    )


def find_batch(
    store: Store, *, org: str, dataset_name: str, batch_id: str
) -> batch_store.BatchRecord:
    """The organisation's batch.

    Raises:
        NotFoundOrForbiddenError: no such batch of this organisation's dataset.
    """
    record = batch_store.get_batch(store, _batch_key(org, dataset_name, batch_id))
    if record is None or record.org != org:
        raise NotFoundOrForbiddenError()
    return record


def open_upload(
    runtime: BrokerRuntime, caller: Identity, dataset_name: str, request: BatchOpen
) -> BatchStatus:
    """Open (or re-open, to resume) a batch for one of the caller's datasets.

    Raises:
        NotFoundOrForbiddenError: the caller has no such dataset.
        DatasetMismatchError: the batch does not fit the dataset.
        BadRequestError: the manifest is inconsistent or over the limits.
    """
    settings = runtime.settings
    dataset = get_dataset(runtime.store, org=caller.name, name=dataset_name)
    manifest = request.manifest
    check_batch_org(manifest, caller=caller.name)
    check_manifest(dataset, manifest, request.mode)
    batch_key = _batch_key(caller.name, dataset_name, manifest.batch_id)
    check_batch(runtime.store, dataset, manifest=manifest, mode=request.mode, batch_key=batch_key)
    count = len(manifest.chunk_digests)
    if count == 0 or count > settings.max_batch_chunks:
        raise BadRequestError(f"a batch holds 1 to {settings.max_batch_chunks} chunks")
    if manifest.record_count < 0 or manifest.record_count > count * settings.max_chunk_records:
        raise BadRequestError("the manifest's record count does not fit its chunks")
    if len(set(manifest.chunk_digests)) != count:
        raise BadRequestError("the manifest lists a chunk twice")
    checked = manifest.opt_out_checked
    if checked is not None and checked.isoformat() > utc_now()[:10]:
        raise BadRequestError("the batch's opt-out check date is in the future")
    _valid_batch_id(manifest.batch_id)
    record = batch_store.open_batch(
        runtime.store,
        batch_key=batch_key,
        org=caller.name,
        dataset=dataset_id(caller.name, dataset_name),
        mode=request.mode,
        manifest_json=manifest.model_dump_json().encode(),
        chunk_count=count,
        record_count=manifest.record_count,
        now=utc_now(),
        ttl=settings.receiving_ttl_seconds,
    )
    return batch_status(runtime.store, record, manifest.batch_id)


def _valid_batch_id(batch_id: str) -> None:
    if not re.fullmatch(BATCH_ID_PATTERN, batch_id):
        raise BadRequestError("batch id: letters, digits, '.', '_' or '-', at most 80")


def rekey_chunk(
    keyer: AtRestKeyer, chunk: TokenChunk, evidence_keyer: EvidenceRekeyer | None = None
) -> TokenChunk:
    """The chunk with every token replaced by its at-rest form.

    The result reuses the chunk codec; its token slots hold :class:`StoredToken` values.
    The probabilistic evidence (block and comparison tokens) is re-keyed by
    ``evidence_keyer`` and kept; without one it is dropped (nothing un-re-keyed is stored).
    """
    # A stored token travels in the chunk codec's token slots: both are 16 bytes.
    tokens = cast(list[tuple[Token | None, ...]], keyer.rekey_rows(chunk.tokens))
    evidence = chunk.evidence
    kept: ChunkEvidence | None = None
    if evidence is not None and evidence_keyer is not None:
        blocks = evidence_keyer.rekey_blocks(evidence.blocks)
        comparisons = evidence_keyer.rekey_comparisons(
            blocks, [block for block, _, _ in evidence.columns], evidence.counts, evidence.tokens
        )
        kept = ChunkEvidence(
            evidence.block_names,
            evidence.columns,
            cast(list[tuple[Token | None, ...]], blocks),
            evidence.counts,
            comparisons,
        )
    return TokenChunk(
        chunk.key_names,
        chunk.payload_columns,
        chunk.refs,
        tokens,
        chunk.payload,
        kept,
        flags=chunk.flags,
    )


def accept_chunk(
    runtime: BrokerRuntime,
    caller: Identity,
    *,
    dataset_name: str,
    batch_id: str,
    index: int,
    body: bytes,
) -> ChunkReceipt:
    """Check, re-key and store chunk ``index`` of a batch; a resend is stored once.

    Raises:
        NotFoundOrForbiddenError: not the caller's batch.
        ChunkError: the chunk's digest, format or columns disagree with the manifest.
        BatchStateError: the batch is no longer receiving.
    """
    settings = runtime.settings
    record = find_batch(
        runtime.store, org=caller.name, dataset_name=dataset_name, batch_id=batch_id
    )
    manifest = BatchManifest.model_validate_json(record.manifest_json)
    if not 0 <= index < record.chunk_count:
        raise ChunkError(f"chunk index {index} is outside the batch (0..{record.chunk_count - 1})")
    if len(body) > settings.max_chunk_bytes:
        raise PayloadTooLargeError(f"a chunk is at most {settings.max_chunk_bytes} bytes")
    digest = chunk_digest(body)
    if digest != manifest.chunk_digests[index]:
        raise ChunkError(f"chunk {index} does not match the digest in the manifest")
    if record.state is not BatchState.RECEIVING:
        return ChunkReceipt(index=index, digest=digest, records=0, duplicate=True)
    try:
        chunk = decode_chunk(body, max_records=settings.max_chunk_records)
    except BatchFormatError as exc:
        raise ChunkError(f"chunk {index}: {exc}") from exc
    if record.mode is BatchMode.RETRACT:
        stored = TokenChunk((), (), chunk.refs, [()] * len(chunk), [()] * len(chunk))
    else:
        if list(chunk.key_names) != manifest.match_keys:
            raise ChunkError(f"chunk {index}: match keys differ from the manifest")
        if list(chunk.payload_columns) != manifest.payload_columns:
            raise ChunkError(f"chunk {index}: payload columns differ from the manifest")
        if manifest.opt_out_checked is not None and chunk.flags is None:
            raise ChunkError(f"chunk {index}: the batch checked opt-outs but it carries no flags")
        try:
            stored = rekey_chunk(runtime.keyer, chunk, runtime.evidence_keyer)
        except ValueError as exc:
            raise ChunkError(f"chunk {index}: its evidence is inconsistent") from exc
    write = batch_store.put_chunk(
        runtime.store,
        batch_key=record.batch_key,
        index=index,
        data=encode_chunk(stored),
        records=len(chunk),
        ttl=settings.receiving_ttl_seconds,
    )
    if write.stored:
        metrics.CHUNKS_RECEIVED.inc()
        metrics.RECORDS_RECEIVED.inc(len(chunk))
    append_audit(
        runtime.store,
        identity=caller.name,
        role=caller.role.value,
        action="batch.chunk",
        dataset=record.dataset,
        counts={"chunk": index, "records": len(chunk) if write.stored else 0},
    )
    return ChunkReceipt(index=index, digest=digest, records=len(chunk), duplicate=not write.stored)


def commit_upload(
    runtime: BrokerRuntime,
    caller: Identity,
    *,
    dataset_name: str,
    batch_id: str,
    notify: Callable[[], None] | None = None,
    confirm_replace: bool = False,
) -> BatchStatus:
    """Commit a complete batch: from now on it is visible to linkage, and queued.

    Before the first commit the batch must pass broker/upload_checks.py: keys strong
    enough, and a replace that removes more than its share confirmed.

    Raises:
        NotFoundOrForbiddenError: not the caller's batch.
        IncompleteBatchError: chunks are missing.
        WeakMatchKeyError: a match key cannot tell people apart.
        ReplaceNotConfirmedError: an unconfirmed replace would remove too much.
    """
    record = find_batch(
        runtime.store, org=caller.name, dataset_name=dataset_name, batch_id=batch_id
    )
    if record.state is BatchState.RECEIVING and record.records_received == record.record_count:
        check_key_strength(runtime.store, record)
        check_replace_share(runtime.store, record, confirmed=confirm_replace)
        check_rekey_commit(runtime.store, record, now=utc_now())
    batch_store.commit_batch(
        runtime.store,
        batch_key=record.batch_key,
        now=utc_now(),
        after_queue=lambda: fault(runtime, "commit.queued"),
    )
    fault(runtime, "commit.committed")
    updated = find_batch(
        runtime.store, org=caller.name, dataset_name=dataset_name, batch_id=batch_id
    )
    if updated.commit_audit_owed:
        # Owed by this commit, or by an earlier one that crashed before writing it.
        audit_commit(runtime.store, updated, identity=caller.name, role=caller.role.value)
    batch_store.replicate_commit(runtime.store, updated)  # acknowledged once replicated
    if notify is not None:
        notify()
    return batch_status(runtime.store, updated, batch_id)


def audit_commit(
    store: Store, record: batch_store.BatchRecord, *, identity: str, role: str
) -> None:
    """Write the commit's audit entry, then mark it written (so: at least once)."""
    append_audit(
        store,
        identity=identity,
        role=role,
        action=f"batch.commit.{record.mode.value}",
        dataset=record.dataset,
        counts={"chunks": record.chunk_count, "records": record.record_count},
    )
    batch_store.commit_audited(store, record.batch_key)


def _at_fault(runtime: BrokerRuntime, point: str) -> bool:
    """Whether the settings name fault ``point`` (crash tests, development only)."""
    settings = runtime.settings
    return settings.development and settings.fault_point == point


def fault(runtime: BrokerRuntime, point: str) -> None:
    """Exit at once at ``point`` if the settings name it, as a crash would."""
    if _at_fault(runtime, point):
        logger.error("fault point %s reached: exiting as a crash would", point)
        os._exit(70)


def _domain_of(store: Store, record: batch_store.BatchRecord) -> str:
    """The linkage domain of a batch: its dataset's (a retraction's manifest may omit it)."""
    org, _, name = record.dataset.partition("/")
    return get_dataset(store, org=org, name=name).domain


def _dataset_info(store: Store, record: batch_store.BatchRecord) -> DatasetInfo:
    org, _, name = record.dataset.partition("/")
    declared = get_dataset(store, org=org, name=name)
    return DatasetInfo(
        id=record.dataset,
        org=org,
        one_record_per_person=declared.one_record_per_person,
        key_names=tuple(declared.match_keys),
    )


def stored_evidence(chunk: TokenChunk) -> list[bytes | None]:
    """Each record's evidence in the linkage's stored form (``None`` for a chunk without)."""
    evidence = chunk.evidence
    if evidence is None:
        return [None] * len(chunk)
    n_columns, width = len(evidence.columns), COMPARISON_TOKEN_BYTES
    counts, tokens = evidence.counts, evidence.tokens
    out: list[bytes | None] = []
    at = 0
    for i, blocks in enumerate(evidence.blocks):
        row = counts[i * n_columns : (i + 1) * n_columns]
        end = at + sum(row) * width
        out.append(encode_evidence(blocks, row, tokens[at:end]))
        at = end
    return out


def _layout(chunks: list[TokenChunk]) -> Layout | None:
    """The evidence layout of a slice of chunks (they come from one batch: one spec)."""
    for chunk in chunks:
        if chunk.evidence is not None:
            return Layout.from_columns(chunk.evidence.block_names, chunk.evidence.columns)
    return None


def link_batch(
    runtime: BrokerRuntime,
    linker: Linker,
    record: batch_store.BatchRecord,
    *,
    keep_going: Callable[[], bool] = lambda: True,
) -> bool:
    """Link a committed batch from its resume point; True when it is fully linked.

    Chunks are applied by the linker a few at a time (``link_slice_records``, 50,000 by
    default, so the per-call costs — the lock, dataset and batch lookups, the last slice's
    write — are paid per 50,000 records), then the resume point moves past them; chunks
    applied twice (after a crash between the two) change nothing.
    """
    store = runtime.store
    dataset = _dataset_info(store, record)
    batch_id = record.batch_key
    if record.state is BatchState.COMMITTED:
        batch_store.list_in_dataset(store, record)  # in case the commit crashed before
        batch_store.mark_batch(store, batch_id, BatchState.LINKING)
    index = record.chunks_linked
    slice_records = runtime.settings.link_slice_records
    checked = BatchManifest.model_validate_json(record.manifest_json).opt_out_checked
    checked_day = (checked - CHECK_DAY_EPOCH).days if checked is not None else 0
    while index < record.chunk_count:
        if not keep_going():
            return False
        chunks: list[TokenChunk] = []
        end = index
        while end < record.chunk_count and sum(map(len, chunks)) < slice_records:
            chunks.append(decode_chunk(batch_store.read_chunk(store, batch_id, end)))
            end += 1
        refs = [ref for chunk in chunks for ref in chunk.refs]
        if record.mode is BatchMode.RETRACT:
            linker.retract(dataset, refs, batch_id=batch_id)
        else:
            # The chunks were stored re-keyed (accept_chunk): their tokens are stored tokens.
            rows = [cast(list[tuple[StoredToken | None, ...]], c.tokens) for c in chunks]
            payloads = [c.payload for c in chunks]
            evidence = [stored_evidence(c) for c in chunks]
            incoming = list(
                map(IncomingRecord, refs, chain(*rows), chain(*payloads), chain(*evidence))
            )
            if checked_day or any(c.flags for c in chunks):
                incoming = _with_opt_outs(incoming, chunks, checked_day)
            linker.link(dataset, incoming, batch_id=batch_id, layout=_layout(chunks))
        batch_store.mark_chunk_linked(store, batch_id, end)
        index = end
        if _at_fault(runtime, "link.paused"):
            while keep_going():  # half the batch written, held there until stopped
                time.sleep(0.05)
            return False
    if record.mode is BatchMode.REPLACE:
        linker.replace_finish(dataset, batch_id=batch_id)
    # Audited before the batch shows as linked, so whoever sees it linked also finds the
    # entry (a crash in between repeats the entry when the batch is linked again).
    append_audit(
        store,
        identity="broker",
        role="service",
        action=f"batch.linked.{record.mode.value}",
        dataset=record.dataset,
        counts={"chunks": record.chunk_count, "records": record.record_count},
    )
    # The chunks go before the batch shows as linked, so a linked batch holds nothing
    # more (a crash in between finds every chunk linked and only marks the batch); and
    # only once the replicas hold the linkage, so a failover cannot lose what they held.
    domain = _domain_of(store, record)
    batch_store.replicate_linkage(store, linking_scope(store, record, domain=domain))
    batch_store.delete_chunks(store, batch_id)
    batch_store.mark_batch(store, batch_id, BatchState.LINKED)
    # What the linkage report shows while the domain's next batch links.
    remember_domain_report(store, domain)
    return True


def _with_opt_outs(
    incoming: list[IncomingRecord], chunks: list[TokenChunk], checked_day: int
) -> list[IncomingRecord]:
    """The records with their chunk's research-restricted flags and the batch's check day."""
    flags = b"".join(c.flags if c.flags is not None else bytes(len(c)) for c in chunks)
    return [
        replace(r, restricted=bool(f & RESEARCH_RESTRICTED), checked_day=checked_day)
        for r, f in zip(incoming, flags, strict=True)
    ]
