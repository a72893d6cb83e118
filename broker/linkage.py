"""Incremental linkage: records join persons through their strongest unambiguous match key.

This module decides; :class:`~broker.store.linkage_store.LinkageStore` holds. Each call
of :meth:`Linker.link`, :meth:`Linker.retract` or :meth:`Linker.replace_finish` reads
what it needs in one bulk round (rarely a few), decides in memory, and commits every
change in one atomic write, so a crash leaves a chunk applied whole or not at all.
docs/linkage.md describes the algorithm; docs/keyspace.md the storage.

The rules (DESIGN.md, "Linkage (broker)"):

* match keys are ranked, index 0 strongest;
* a token held by two records of a one-record-per-person dataset is *ambiguous* for that
  dataset: it links nothing to or from that dataset's records;
* a record joins the person reached by its strongest usable key; if that key reaches
  several persons that may be merged, they merge into the oldest (smallest) person id;
* a person never holds two records of one one-record-per-person dataset (the *twin
  guard*): a candidate that would break it is not used, and is recorded;
* a weaker key that points at another person is a *conflict*: recorded, never followed;
* person ids are stable; a change (retraction, correction, a token turning ambiguous)
  dissolves only the persons it touches and re-links their remaining records.

One linking worker at a time: every call holds the store's linkage lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from broker.store.linkage_store import (
    CONFLICT_KINDS,
    LinkageStore,
    LinkedRecord,
    PersonId,
)
from keys.derive import RecordRef, StoredToken

__all__ = [
    "CONFLICT_KINDS",
    "DatasetInfo",
    "DatasetReport",
    "IncomingRecord",
    "LinkStats",
    "LinkageReport",
    "LinkedRecord",
    "Linker",
    "PersonId",
]


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
    """

    ref: RecordRef
    tokens: tuple[StoredToken | None, ...]
    payload: tuple[str | None, ...]


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
        ambiguous_tokens: tokens that turned ambiguous (positive) or stopped being so.
        already_applied: the call had nothing to do.
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
    already_applied: bool = False


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """Linkage counts of one dataset.

    Attributes:
        id: dataset id.
        org: owning organisation.
        one_record_per_person: as declared.
        records: records held.
        linked_records: records in a person with a record of another dataset.
        ambiguous_tokens: tokens held by two or more of its records (when one per person).
    """

    id: str
    org: str
    one_record_per_person: bool
    records: int
    linked_records: int
    ambiguous_tokens: int


@dataclass(frozen=True, slots=True)
class LinkageReport:
    """The linkage as it stands.

    Attributes:
        records: records held, all datasets.
        persons: persons.
        linked_persons: persons with records of two or more datasets.
        links_by_key: records that joined their person through each match key.
        links_by_dataset_pair: persons holding records of both datasets of a pair
            (``"a|b"``, ids in sorted order).
        ambiguous_tokens: (token, dataset) pairs found ambiguous.
        conflicting_records: records with a recorded conflict between keys.
        conflicts_by_kind: the same, by kind (``key``, ``twin``, ``merge``).
        datasets: per dataset counts.
    """

    records: int
    persons: int
    linked_persons: int
    links_by_key: dict[str, int]
    links_by_dataset_pair: dict[str, int]
    ambiguous_tokens: int
    conflicting_records: int
    conflicts_by_kind: dict[str, int]
    datasets: list[DatasetReport] = field(default_factory=list)


class Linker:
    """The incremental linkage engine over one :class:`LinkageStore`.

    Args:
        store: where records, token indexes and persons live.
        now: clock, for lock expiry and timestamps.
    """

    def __init__(self, store: LinkageStore, *, now: Callable[[], float] = time.time) -> None:
        self._store = store
        self._now = now

    def link(
        self, dataset: DatasetInfo, records: Sequence[IncomingRecord], *, batch_id: str
    ) -> LinkStats:
        """Upsert ``records`` of ``dataset`` and link them against everything held.

        New references are added and linked; references already held with other tokens
        are re-linked; references held with the same tokens only refresh their payload
        and batch mark. Applying the same records again changes nothing.

        Args:
            dataset: the dataset the records belong to.
            records: one chunk (thousands of records is the sweet spot).
            batch_id: the upload batch; :meth:`replace_finish` uses it.

        Returns:
            What the call did.
        """
        raise NotImplementedError("implementation follows in the next commit")

    def retract(
        self, dataset: DatasetInfo, refs: Sequence[RecordRef], *, batch_id: str
    ) -> LinkStats:
        """Remove records by reference and re-link the persons they were part of.

        Unknown references are ignored, so a retraction may be re-applied.
        """
        raise NotImplementedError("implementation follows in the next commit")

    def replace_finish(self, dataset: DatasetInfo, *, batch_id: str) -> LinkStats:
        """After a ``replace`` batch was linked: retract the dataset's records it lacked."""
        raise NotImplementedError("implementation follows in the next commit")

    def report(self) -> LinkageReport:
        """The linkage report: counts kept up to date by every write."""
        raise NotImplementedError("implementation follows in the next commit")

    def person_of(self, dataset_id: str, ref: RecordRef) -> PersonId | None:
        """Person of a record, or ``None`` when the record is not held."""
        return self._store.person_of(dataset_id, ref)

    def records_of_person(self, person: PersonId) -> list[LinkedRecord]:
        """Records of a person: dataset id, reference and payload of each."""
        return self._store.records_of_person(person)
