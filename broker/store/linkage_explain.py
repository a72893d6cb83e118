"""How each record was linked, and the pairs kept for review: what reports and releases read.

:meth:`LinkageStore.link_basis <broker.store.linkage_store.LinkageStore.link_basis>` and
:meth:`LinkageStore.possible_matches
<broker.store.linkage_store.LinkageStore.possible_matches>` return these; the linkage
report, the review file, the dashboard's charts and the link-quality column of cohorts
and direct-care returns are built from them and from ``LinkageStore.fitted_model()``.
Nothing here holds a token or an identifier: references are the organisation's opaque
ones, and evidence is named by comparison and level only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from broker.matching import MISSING, Model

__all__ = ["BasisKind", "LinkBasis", "PossibleMatch", "name_levels"]

BasisKind = Literal["match_key", "probabilistic", "unlinked"]
"""How a record came to be in its person (see :class:`LinkBasis`)."""


@dataclass(frozen=True, slots=True)
class LinkBasis:
    """Why a record is in its person.

    Attributes:
        kind: ``match_key`` when the exact cascade joined it (``match_key`` names the
            key); ``probabilistic`` when the probabilistic stage did (the pair's
            probability, match weight, blocking key and agreement are given);
            ``unlinked`` when its person holds no other record. A record that *started*
            a person others joined has the basis of the first record that joined it
            (a person of two records linked by one pair shows that pair on both).
        match_key: the match key's name (``match_key`` kind).
        probability: the pair's posterior match probability (``probabilistic``).
        match_weight: the pair's log2 posterior odds (``probabilistic``).
        blocking_key: the blocking key that made the pair a candidate (``probabilistic``).
        agreement: per comparison of that blocking key, ``(comparison, level)``: the
            strongest level that agreed, ``"disagree"`` or ``"missing"``
            (``probabilistic``); the model's m/u per level give the waterfall.
        partner: the record number of the other record of the pair (``probabilistic``).
    """

    kind: BasisKind
    match_key: str | None = None
    probability: float | None = None
    match_weight: float | None = None
    blocking_key: str | None = None
    agreement: tuple[tuple[str, str], ...] = ()
    partner: int | None = None


@dataclass(frozen=True, slots=True)
class PossibleMatch:
    """A candidate pair the probabilistic stage kept for review and did not link.

    Attributes:
        record: record number of the record being decided when the pair was found.
        other: record number of the other record of the pair.
        record_dataset: dataset id of ``record``.
        other_dataset: dataset id of ``other``.
        reason: ``grey`` (probability between the review and the link threshold),
            ``rival`` (above the link threshold, but linking would chain two persons
            already linked), ``twin`` (above it, refused by the twin guard) or ``refit``
            (a released link a refitted model scores below its threshold: still linked).
        probability: posterior match probability of the pair.
        match_weight: log2 posterior odds.
        blocking_key: the blocking key that scored the pair.
        agreement: per comparison, ``(comparison, level)`` as in :class:`LinkBasis`.
    """

    record: int
    other: int
    record_dataset: str
    other_dataset: str
    reason: str
    probability: float
    match_weight: float
    blocking_key: str
    agreement: tuple[tuple[str, str], ...]


def name_levels(
    model: Model | None, block: int, vector: Sequence[int]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The blocking key's name and the agreement vector as ``(comparison, level)`` names."""
    if model is None or block >= len(model.layout.blocks):
        return f"block{block}", tuple((f"c{i}", str(v)) for i, v in enumerate(vector))
    layout = model.layout.blocks[block]
    named: list[tuple[str, str]] = []
    for name, levels, level in zip(layout.comparisons, layout.levels, vector, strict=False):
        if level == MISSING:
            named.append((name, "missing"))
        elif level >= len(levels):
            named.append((name, "disagree"))
        else:
            named.append((name, levels[level]))
    return layout.name, tuple(named)
