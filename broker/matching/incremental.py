"""Fitting from agreement-pattern counts kept as records arrive, not from the records.

:func:`broker.matching.score.fit_scored` pairs the held records and counts their
agreement vectors, then runs EM over the counts. A holding that grows slice by slice
can keep those counts instead (the engine does: ``broker.store.linkage_counts``), and
refit from them at a cost independent of the holding's size. :func:`fit_counts` is the
same estimation over such counts: ``u`` pooled from one-dataset pairs, ``m`` anchored on
the known matches pooled over every key, EM per key (:func:`~broker.matching.model.estimate`).

One difference from a fit over the records, documented in docs/probabilistic.md: a pair
that shares blocks of several keys is counted once under each, so
:func:`counted_threshold` weighs it once per key where :func:`model_threshold` keeps
its best key's score only. :func:`key_thresholds` walks each key's own counts for a
link threshold per key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from broker.matching.evidence import BlockLayout, Layout
from broker.matching.model import estimate, level_counts
from broker.matching.score import DEFAULT_MAX_BLOCK, Model, Thresholds

__all__ = ["Patterns", "counted_threshold", "fit_counts", "key_thresholds"]

Patterns = Mapping[tuple[int, ...], int]
"""Agreement vector → how many pairs have it."""


def _pooled(layout: Layout, per_key: Sequence[Patterns]) -> dict[str, list[float]]:
    """Per comparison name, its level counts summed over every blocking key."""
    pooled: dict[str, list[float]] = {}
    for block_layout, patterns in zip(layout.blocks, per_key, strict=True):
        for name, row in zip(
            block_layout.comparisons, level_counts(block_layout, patterns), strict=True
        ):
            total = pooled.setdefault(name, [0.0] * len(row))
            pooled[name] = [a + b for a, b in zip(total, row, strict=True)]
    return pooled


def _smoothed(block_layout: BlockLayout, pooled: dict[str, list[float]]) -> list[list[float]]:
    return [
        [(x + 1.0) / (sum(pooled[name], 0.0) + len(pooled[name])) for x in pooled[name]]
        for name in block_layout.comparisons
    ]


def fit_counts(
    layout: Layout,
    candidates: Sequence[Patterns],
    non_matches: Sequence[Patterns],
    known: Sequence[Patterns],
    *,
    max_block: int = DEFAULT_MAX_BLOCK,
) -> Model:
    """Every blocking key's model from its pattern counts, as ``fit_scored`` fits them.

    Args:
        layout: the evidence layout.
        candidates: per blocking key, the counts of its candidate pairs (two datasets).
        non_matches: per blocking key, the counts of its known non-matches (pairs of one
            dataset that holds one record per person).
        known: per blocking key, the counts of its candidate pairs known to be matches.
        max_block: kept on the model (the counts were made with it).
    """
    pooled_u = _pooled(layout, non_matches)
    pooled_m = _pooled(layout, known)
    models = tuple(
        estimate(
            block_layout,
            pairs,
            non_matches=unmatched,
            u_prior=_smoothed(block_layout, pooled_u),
            m_prior=_smoothed(block_layout, pooled_m),
            known_matches=sum(matched.values()),
        )
        for block_layout, pairs, unmatched, matched in zip(
            layout.blocks, candidates, non_matches, known, strict=True
        )
    )
    return Model(layout, models, max_block)


def counted_threshold(
    scored: Iterable[tuple[float, int]], *, false_link_rate: float = 0.001, floor: float = 0.9
) -> float:
    """:func:`~broker.matching.score.model_threshold` over ``(probability, pairs)`` counts.

    The same walk, best first, one group of equal pairs at a time: the share the model
    expects wrong moves linearly across a group, so it is within the rate at some pair
    of the group exactly when it is at the group's first or last pair.
    """
    threshold, expected_wrong, seen = 1.0, 0.0, 0
    for probability, count in sorted(scored, key=lambda s: -s[0]):
        if probability < floor:
            break
        if count <= 0:
            continue
        wrong = 1.0 - probability
        first = expected_wrong + wrong <= false_link_rate * (seen + 1)
        last = expected_wrong + count * wrong <= false_link_rate * (seen + count)
        if first or last:
            threshold = probability
        expected_wrong += count * wrong
        seen += count
    return threshold


def key_thresholds(
    scored: Sequence[Sequence[tuple[float, int]]],
    known: Sequence[int],
    *,
    min_known: int,
    false_link_rate: float = 0.001,
    floor: float = 0.9,
) -> Thresholds:
    """A link threshold per blocking key: its own walk's where that is the lower one.

    One walk over every key's pairs together (the pooled threshold, ``Thresholds.link``)
    lets one key's ambiguous blocks (look-alike namesakes of one postcode and year) raise
    every key's threshold. A key whose own pairs the model expects clean further down —
    :func:`counted_threshold` over that key's pairs alone, below the pooled one — links
    down to its own walk's threshold; every other key keeps the pooled one. A per-key
    walk alone would also *raise* most keys' thresholds above the pooled one (the pooled
    walk counts the near-certain pairs of the NHS number's blocks under every key they
    share), and lose on ordinary extracts the pairs it wins back on ambiguous ones.

    The bound this keeps, in the model's own expectation: the keys at their own walk's
    threshold are each within ``false_link_rate`` of the pairs they accept, and the keys
    at the pooled threshold are within it together with the rest at that threshold
    (the share of a best-first prefix only grows as it lengthens, so the former are
    within it at the pooled threshold too). So the expected false links are at most
    ``2 × false_link_rate`` times the accepted pairs summed over keys (the worst case:
    the pooled walk's slack all taken by the keys at its threshold), and at most
    ``false_link_rate`` times them when no key goes below the pooled threshold.

    A key whose fit rests on little — fewer than ``1 / false_link_rate`` pairs at or
    above ``floor`` (too few to afford one expected wrong link), or fewer than
    ``min_known`` known matches of its own — keeps the pooled threshold.

    Args:
        scored: per blocking key, ``(probability, pairs)`` of its candidate pairs.
        known: per blocking key, its candidate pairs known to be matches.
        min_known: known matches a key needs for a threshold below the pooled one.
        false_link_rate: the model's expected wrong share allowed among accepted pairs.
        floor: no threshold is below this.
    """
    pooled = counted_threshold(
        (s for pairs in scored for s in pairs), false_link_rate=false_link_rate, floor=floor
    )
    min_pairs = math.ceil(1.0 / false_link_rate)
    own: list[float] = []
    for pairs, matched in zip(scored, known, strict=True):
        above = sum(count for probability, count in pairs if probability >= floor)
        supported = above >= min_pairs and matched >= min_known
        threshold = counted_threshold(pairs, false_link_rate=false_link_rate, floor=floor)
        own.append(min(threshold, pooled) if supported else pooled)
    return Thresholds(link=pooled, keys=tuple(own))
