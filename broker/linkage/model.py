"""What the linkage engine is given and what a call tells: datasets, records, statistics."""

from __future__ import annotations

from dataclasses import dataclass

from broker.store.linkage_codec import encode_payload
from keys.derive import RecordRef, StoredToken

__all__ = ["DatasetInfo", "IncomingRecord", "LinkStats"]


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What linkage needs to know of a dataset.

    Attributes:
        id: the dataset id (``org/name``).
        org: the owning organisation.
        one_record_per_person: the dataset declares one record per person.
        key_names: the match key names of its linkage spec, strongest first.
    """

    id: str
    org: str
    one_record_per_person: bool
    key_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """One record of a batch, tokens already re-keyed at rest.

    Attributes:
        ref: the record's opaque reference.
        tokens: one stored token per match key of the dataset (``None`` when absent).
        payload: the payload values, in the dataset's payload column order.
        restricted: research-restricted by an opt-out at the source (stored with the
            payload, :func:`broker.store.linkage_codec.encode_payload`).
        checked_day: the day of its batch's national opt-out check (days since
            1970-01-01; 0 for none).
    """

    ref: RecordRef
    tokens: tuple[StoredToken | None, ...]
    payload: tuple[str | None, ...]
    restricted: bool = False
    checked_day: int = 0

    @property
    def stores_payload(self) -> bool:
        """Whether the record has anything to store with its payload."""
        return bool(self.payload) or self.restricted or self.checked_day != 0

    def stored_payload(self) -> bytes:
        """The stored form of its payload (values and source-side opt-out facts)."""
        return encode_payload(
            self.payload, restricted=self.restricted, checked_day=self.checked_day
        )


@dataclass(slots=True)
class LinkStats:
    """What one call did.

    Attributes:
        received: records (or references) the call was given.
        added: new records.
        changed: records whose tokens changed (re-linked).
        unchanged: records already held as given (payload may have been updated).
        retracted: records removed.
        relinked: records re-linked because a change touched their person.
        persons_created: persons created.
        persons_merged: persons merged into an older one.
        persons_dissolved: persons dissolved by a change and re-formed.
        conflicts: conflicts recorded for the records this call decided.
        twin_guard_blocks: candidate persons refused by the twin guard.
        ambiguous_tokens: net change in ambiguous (token, dataset) pairs.
    """

    received: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    retracted: int = 0
    relinked: int = 0
    persons_created: int = 0
    persons_merged: int = 0
    persons_dissolved: int = 0
    conflicts: int = 0
    twin_guard_blocks: int = 0
    ambiguous_tokens: int = 0
