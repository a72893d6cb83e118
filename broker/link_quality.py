"""Per-row link quality of releases: how sure the link behind a row is.

Cohorts and direct-care returns carry a ``link_quality`` column (as SAIL and the NHS
England Master Person Service do), so that analysts can study bias in who links and a
practice can weigh a linked fact. docs/agreements.md gives the values and why:

- the **match key name** (``nhs_dob``, ``given_family_dob_postcode``…) for a record
  linked by the exact cascade: the strongest match key whose token the record shares
  with another record of its person, read from the stored records (tokens are re-keyed
  at rest, so equal tokens still mean equal evidence). Keys are ranked strongest first,
  so the name says how strong the tie is;
- a **probability band** (``p>=0.99``, ``0.95-0.99``, ``0.9-0.95``, ``p<0.9``) for a
  record linked by the probabilistic stage, from its match probability;
- ``single``: nothing in the release is linked to the record (its person holds no other
  record of the agreement's datasets);
- ``indirect``: its person holds other records of the agreement's datasets, but the record
  shares no token with any of them (it joined through a record outside the agreement).

Only records of the agreement's datasets are read: the quality describes the link behind
the row's own values. A cohort row (a person) carries the *weakest* quality among the
person's records in the release, since the row is only as sure as its least sure link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from broker.store.linkage_store import LinkageStore

__all__ = [
    "INDIRECT",
    "PROBABILITY_BANDS",
    "SINGLE",
    "LinkQualities",
    "link_qualities",
    "probability_band",
]

SINGLE = "single"
INDIRECT = "indirect"

PROBABILITY_BANDS: tuple[tuple[float, str], ...] = (
    (0.99, "p>=0.99"),
    (0.95, "0.95-0.99"),
    (0.9, "0.9-0.95"),
    (0.0, "p<0.9"),
)
"""Lower bound and name of each band, best first (docs/agreements.md says why these)."""


def probability_band(probability: float) -> str:
    """The band of a probabilistic link's match probability.

    Raises:
        ValueError: the probability is not within [0, 1].
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError("a match probability lies between 0 and 1")
    return next(name for low, name in PROBABILITY_BANDS if probability >= low)


@dataclass(frozen=True, slots=True)
class LinkQualities:
    """The link quality of each record of a release, and how to combine them per person.

    Attributes:
        by_record: ``(dataset id, reference)`` → quality.
        ranks: quality → rank (0 strongest); ``single`` ranks above nothing.
    """

    by_record: dict[tuple[str, bytes], str]
    ranks: dict[str, int]

    def of(self, dataset: str, ref: bytes) -> str:
        """The quality of one record (``single`` for a record not read)."""
        return self.by_record.get((dataset, bytes(ref)), SINGLE)

    def weakest(self, records: Iterable[tuple[str, bytes]]) -> str:
        """A person's row: the weakest quality of its records (``single`` if none linked)."""
        qualities = [q for q in (self.of(d, r) for d, r in records) if q != SINGLE]
        return max(qualities, key=lambda q: self.ranks.get(q, len(self.ranks)), default=SINGLE)


@dataclass(frozen=True, slots=True)
class _Held:
    dataset: str
    ref: bytes
    rid: int
    tokens: tuple[bytes | None, ...]


def _exact_quality(record: _Held, others: list[_Held], key_names: tuple[str, ...]) -> str:
    for k, token in enumerate(record.tokens):
        if token is not None and any(k < len(o.tokens) and o.tokens[k] == token for o in others):
            return key_names[k] if k < len(key_names) else f"key {k}"
    return INDIRECT


def link_qualities(
    linkage: LinkageStore,
    dataset_ids: Iterable[str],
    *,
    probabilities: Mapping[int, float] | None = None,
) -> LinkQualities:
    """The link quality of every record of ``dataset_ids`` in ``linkage``.

    Args:
        linkage: the linkage of the agreement's domain.
        dataset_ids: the agreement's datasets (only their records are read).
        probabilities: record number → match probability, for the records the
            probabilistic stage linked (the engine's link basis: both records of a pair
            it linked); they get a band.

    Returns:
        Each record's quality, and the ranks that order them (match keys strongest first,
        then the bands, then ``indirect``).
    """
    entries = {d.id: d for d in linkage.datasets().values()}
    key_names: tuple[str, ...] = ()
    by_person: dict[int, list[_Held]] = {}
    for ident in sorted(set(dataset_ids)):
        entry = entries.get(ident)
        if entry is None:
            continue
        key_names = key_names or entry.key_names
        for records in linkage.iter_dataset_records(ident):
            for r in records:
                if r.pid:
                    held = _Held(ident, bytes(r.ref), r.rid, tuple(r.tokens))
                    by_person.setdefault(r.pid, []).append(held)
    banded = probabilities or {}
    out: dict[tuple[str, bytes], str] = {}
    for members in by_person.values():
        for record in members:
            others = [m for m in members if m is not record]
            if not others:
                quality = SINGLE
            elif record.rid in banded:
                quality = probability_band(banded[record.rid])
            else:
                quality = _exact_quality(record, others, key_names)
            out[(record.dataset, record.ref)] = quality
    order = [*key_names, *(name for _, name in PROBABILITY_BANDS), INDIRECT]
    return LinkQualities(out, {name: rank for rank, name in enumerate(order)})
