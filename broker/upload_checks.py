"""Checks on a batch before it may change a dataset: whose it is, how much a replace
removes, and whether its match keys can tell people apart.

broker/ingest.py calls these when a batch is opened (:func:`check_batch_org`) and just
before it is committed (:func:`check_replace_share`, :func:`check_key_strength`), so a
script using the HTTP API meets the same refusals as ``tessera-sdk upload``. The rules
and their limits are documented in docs/api.md ("What a batch must pass").
"""

from __future__ import annotations

from collections.abc import Iterator

from broker.errors import BatchOrgMismatchError, ReplaceNotConfirmedError, WeakMatchKeyError
from broker.linkage import Linker
from broker.store import batches as batch_store
from broker.store.client import Store
from broker.store.datasets import get_dataset
from broker.store.linkage_store import LinkageStore
from broker.store.rotation_store import active_scope
from keys.batch import BatchManifest
from keys.chunk import TokenChunk, decode_chunk
from keys.wire import BatchMode, ReplacePreview

__all__ = [
    "KEY_STRENGTH_MIN_RECORDS",
    "KEY_STRENGTH_SAMPLE_RECORDS",
    "MAX_RECORDS_PER_TOKEN",
    "REPLACE_CONFIRM_ABOVE",
    "check_batch_org",
    "check_key_strength",
    "check_replace_share",
    "replace_preview",
]

REPLACE_CONFIRM_ABOVE = 0.10
"""A replace that removes more than this share of the records held must be confirmed."""

MAX_RECORDS_PER_TOKEN = 20
"""A match key whose tokens stand, on average, for more people than this is too weak."""

KEY_STRENGTH_MIN_RECORDS = 1000
"""Keys are judged only on batches where a key is formed for at least this many records:
on fewer, a weak key cannot be told from a small extract."""

KEY_STRENGTH_SAMPLE_RECORDS = 200_000
"""Records read to judge the keys (the first chunks): a sample can only make a key look
stronger than it is, so judging on it never refuses a key the whole batch would pass."""


def check_batch_org(manifest: BatchManifest, *, caller: str) -> None:
    """Refuse a batch the SDK made for another organisation.

    Raises:
        BatchOrgMismatchError: the manifest names an organisation other than ``caller``.
    """
    if manifest.org is not None and manifest.org != caller:
        raise BatchOrgMismatchError(
            f"the batch was made by organisation {manifest.org!r}, not by {caller!r}: "
            "upload it with that organisation's credential"
        )


def replace_preview(store: Store, record: batch_store.BatchRecord) -> ReplacePreview:
    """What committing the ``replace`` batch ``record`` would remove from its dataset."""
    org, _, name = record.dataset.partition("/")
    domain = get_dataset(store, org=org, name=name).domain
    report = Linker(LinkageStore(store.redis, scope=active_scope(store, domain))).report()
    held = next((d.records for d in report.datasets if d.id == record.dataset), 0)
    removed = max(held - record.record_count, 0)
    share = removed / held if held else 0.0
    return ReplacePreview(
        held=held,
        incoming=record.record_count,
        removed=removed,
        removed_share=round(share, 4),
        confirm_above=REPLACE_CONFIRM_ABOVE,
        needs_confirmation=share > REPLACE_CONFIRM_ABOVE,
    )


def check_replace_share(
    store: Store, record: batch_store.BatchRecord, *, confirmed: bool
) -> ReplacePreview | None:
    """Refuse an unconfirmed replace that would remove more than its allowed share.

    Returns:
        The preview of a replace batch, or ``None`` for any other mode.

    Raises:
        ReplaceNotConfirmedError: naming the counts, when confirmation is needed.
    """
    if record.mode is not BatchMode.REPLACE:
        return None
    preview = replace_preview(store, record)
    if preview.needs_confirmation and not confirmed:
        raise ReplaceNotConfirmedError(
            f"this replace would remove {preview.removed:,} of the {preview.held:,} records "
            f"held ({preview.removed_share:.0%}; the batch has {preview.incoming:,}); above "
            f"{REPLACE_CONFIRM_ABOVE:.0%} it must be confirmed (tessera-sdk upload --mode "
            "replace --confirm-replace, or commit with ?confirm_replace=true); "
            "nothing was changed"
        )
    return preview


def _sample(store: Store, record: batch_store.BatchRecord) -> Iterator[TokenChunk]:
    seen = 0
    for index in range(record.chunk_count):
        if seen >= KEY_STRENGTH_SAMPLE_RECORDS:
            return
        chunk = decode_chunk(batch_store.read_chunk(store, record.batch_key, index))
        seen += len(chunk)
        yield chunk


def check_key_strength(store: Store, record: batch_store.BatchRecord) -> None:
    """Refuse a batch one of whose match keys cannot tell people apart.

    For each key, count the records it was formed for (its token is present) and its
    distinct tokens. The people a key must separate are those records in a dataset of one
    record per person, and otherwise the distinct tokens of the batch's most distinct key.
    A key formed for at least :data:`KEY_STRENGTH_MIN_RECORDS` records whose tokens stand
    for more than :data:`MAX_RECORDS_PER_TOKEN` of those people each, on average, is too
    weak (2 tokens for 1,780 records is a key of sex alone). The stored chunks are re-keyed
    at rest, which keeps equal tokens equal, so the counts are those of the batch sent.

    Raises:
        WeakMatchKeyError: naming the key and its counts.
    """
    if record.mode is BatchMode.RETRACT:
        return
    manifest = BatchManifest.model_validate_json(record.manifest_json)
    keys = manifest.match_keys
    formed = [0] * len(keys)
    distinct: list[set[bytes | None]] = [set() for _ in keys]
    for chunk in _sample(store, record):
        # key by key (the rows transposed), so the counting runs in C
        for i, column in enumerate(zip(*chunk.tokens, strict=True)):
            formed[i] += len(column) - column.count(None)
            distinct[i].update(column)
    for tokens in distinct:
        tokens.discard(None)
    org, _, name = record.dataset.partition("/")
    one_per_person = get_dataset(store, org=org, name=name).one_record_per_person
    most_distinct = max((len(d) for d in distinct), default=0)
    for i, key in enumerate(keys):
        if formed[i] < KEY_STRENGTH_MIN_RECORDS:
            continue
        people = formed[i] if one_per_person else most_distinct
        if len(distinct[i]) * MAX_RECORDS_PER_TOKEN < people:
            raise WeakMatchKeyError(
                f"match key {key!r} has {len(distinct[i]):,} distinct tokens for "
                f"{formed[i]:,} records: too few to tell people apart (at most "
                f"{MAX_RECORDS_PER_TOKEN} per token on average); tokenise with a spec "
                "whose keys pass `tessera-sdk spec lint`"
            )
