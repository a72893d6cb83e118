"""Candidate pairs, their scores, and the decisions the model supports.

- **Candidates**: records that share a block token, from two different datasets; a block
  holding more than ``max_block`` records is skipped (its pairs would be too many to
  compare and too weak to tell apart: the linter refuses such keys beforehand).
- **Score**: a pair's agreement vector under each blocking key it shares, scored by that
  key's :class:`~broker.matching.model.BlockModel` and adjusted for term frequency
  (:func:`tf_adjustment`: an exact agreement on a value few records of the block hold
  weighs more, on one many hold less); the pair keeps one of them (each is a posterior
  given the pair is in that key's blocks): :func:`prefer_key`, the best among the keys
  whose own link threshold it clears, else the best.
- **Decision**: a pair whose probability is at least its key's link threshold
  (``Thresholds.link_of``) may link, one at least ``Thresholds.review`` is a possible
  match for review, never linked silently.
  :func:`one_to_one` resolves, best first, datasets that hold one record per person.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from broker.matching.evidence import BlockLayout, Layout, RecordEvidence, agreement
from broker.matching.model import BlockModel, estimate, level_counts

__all__ = [
    "DEFAULT_MAX_BLOCK",
    "Model",
    "ScoredPair",
    "Thresholds",
    "candidate_pairs",
    "fit",
    "fit_scored",
    "model_threshold",
    "one_to_one",
    "prefer_key",
    "score_pairs",
    "tf_adjustment",
    "tf_columns",
    "weight_probability",
]

DEFAULT_MAX_BLOCK = 500
"""Records in one block at most; a larger block makes no candidates."""

TF_PRIOR_PAIRS = 10.0
"""How many pairs the model's own ``u`` of an exact level counts for in a value's ``u``.

The pseudo-count that keeps a small block (whose counts say little) near the model: a
block of two records gives no adjustment at all."""

EXACT = "exact"
"""The level name term-frequency adjustments apply to (the only one whose token is a
value: a phonetic or partial level's token is shared by many values)."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Posterior probabilities at which a pair links, or is kept for review.

    Chosen from the model, never from a truth file: a link needs the model's posterior
    to put the odds of a wrong link below one in a thousand (docs/probabilistic.md).

    Attributes:
        link: the pooled link threshold, walked over every key's pairs together: the
            threshold of any key that has none of its own.
        review: where a pair becomes a possible match.
        keys: per blocking key (layout order), its link threshold: the lower of
            ``link`` and the walk over its own pairs, where those support it
            (:func:`broker.matching.incremental.key_thresholds`); empty, or shorter
            than the layout, where keys have none: they take ``link``.
    """

    link: float = 0.999
    review: float = 0.5
    keys: tuple[float, ...] = ()

    def link_of(self, block: int) -> float:
        """The link threshold of blocking key ``block``."""
        return self.keys[block] if block < len(self.keys) else self.link

    def links(self, pair: ScoredPair) -> bool:
        """Whether ``pair`` clears the link threshold of the key it was scored under."""
        return pair.probability >= self.link_of(pair.block)


@dataclass(frozen=True, slots=True)
class Model:
    """The fitted models of every blocking key, in the layout's order.

    Attributes:
        layout: which evidence column is which.
        blocks: per blocking key, its fitted weights.
        max_block: a block with more records makes no candidates.
        thresholds: where a pair links or goes to review (the engine chooses them from
            the model with :func:`model_threshold` when it fits).
        records: evidence records the model was fitted on.
    """

    layout: Layout
    blocks: tuple[BlockModel, ...]
    max_block: int = DEFAULT_MAX_BLOCK
    thresholds: Thresholds = Thresholds()
    records: int = 0


@dataclass(frozen=True, slots=True)
class ScoredPair:
    """A candidate pair and its score under the key it is judged by (:func:`prefer_key`).

    Attributes:
        left: the smaller record number of the two.
        right: the larger.
        block: index of that blocking key.
        agreement: the agreement vector under that key (per comparison of it).
        match_weight: log2 posterior odds under that key, term-frequency adjustments
            included.
        probability: posterior probability of a match under that key.
        tf_weight: the part of ``match_weight`` that term frequencies gave (the sum of
            :func:`tf_adjustment` over the exact agreements), so that the model's
            per-level weights plus this add up to ``match_weight``.
    """

    left: int
    right: int
    block: int
    agreement: tuple[int, ...]
    match_weight: float
    probability: float
    tf_weight: float = 0.0


def tf_adjustment(u_exact: float, next_weight_gap: float, holders: int, block_size: int) -> float:
    """The term-frequency adjustment, in bits, of an exact agreement inside one block.

    The model's ``u`` of an exact level is the chance that two non-matches of a block agree
    on *some* value; for one value it is the chance another record of the block holds that
    value (Splink's term-frequency ``u``). Inside the block the broker knows how many
    records hold the agreeing token: ``holders`` of ``block_size``, the two of the pair
    included. The other records estimate the value's ``u``, pulled towards ``u_exact`` as
    :data:`TF_PRIOR_PAIRS` pairs would::

        u_value = (holders - 2 + TF_PRIOR_PAIRS * u_exact) / (block_size - 2 + TF_PRIOR_PAIRS)

    and the adjustment is ``log2(u_exact / u_value)``: positive for a value fewer records
    hold than the model expects, negative for a common one, zero for a block of the pair
    alone. It is bounded below by ``next_weight_gap`` (the next weaker level's weight minus
    the exact level's, not positive), so an exact agreement never counts less than the
    next level would; the pseudo-count is its floor above (``u_value`` never below
    ``TF_PRIOR_PAIRS * u_exact / (block_size - 2 + TF_PRIOR_PAIRS)``).
    """
    others = max(0, holders - 2)
    rest = max(0, block_size - 2)
    u_value = (others + TF_PRIOR_PAIRS * u_exact) / (rest + TF_PRIOR_PAIRS)
    return max(next_weight_gap, math.log2(u_exact / u_value))


def tf_columns(
    layout: BlockLayout, block_model: BlockModel
) -> tuple[tuple[int, int, float, float], ...]:
    """What :func:`tf_adjustment` needs of one blocking key's model, per comparison whose
    first level is exact: ``(comparison index, exact level's column, its u, the next
    level's weight minus its own, never positive)``."""
    out: list[tuple[int, int, float, float]] = []
    for c, (levels, columns, weights) in enumerate(
        zip(layout.levels, layout.columns, block_model.comparisons, strict=True)
    ):
        if levels and levels[0] == EXACT:
            gap = min(0.0, weights.weight(1) - weights.weight(0))
            out.append((c, columns[0], weights.u[0], gap))
    return tuple(out)


class _BlockScorer:
    """Scores the pairs of one block: the key's model, and the block's token counts.

    The counts are of the block's own records (those the scorer was given), per exact
    column, so they say nothing beyond the block.
    """

    def __init__(
        self,
        block_model: BlockModel,
        tf_columns: tuple[tuple[int, int, float, float], ...],
        members: Sequence[RecordEvidence],
    ) -> None:
        self.model = block_model
        self.tf_columns = tf_columns
        self.size = len(members)
        self.counts: list[Counter[bytes]] = []
        for _, column, _, _ in tf_columns:
            counter: Counter[bytes] = Counter()
            for record in members:
                counter.update(set(record.cells[column]))
            self.counts.append(counter)

    def tf_weight(self, vector: Sequence[int], a: RecordEvidence, b: RecordEvidence) -> float:
        """The sum of the term-frequency adjustments of the pair's exact agreements."""
        total = 0.0
        for (c, column, u_exact, gap), counts in zip(self.tf_columns, self.counts, strict=True):
            if vector[c] != 0:
                continue
            shared = set(a.cells[column]).intersection(b.cells[column])
            holders = max(counts[t] for t in shared)  # several: the commonest, conservative
            total += tf_adjustment(u_exact, gap, holders, self.size)
        return total

    def scored(
        self, j: int, a: RecordEvidence, b: RecordEvidence, vector: tuple[int, ...]
    ) -> ScoredPair:
        """The pair (of this block, under key ``j``) with its agreement vector scored."""
        tf = self.tf_weight(vector, a, b)
        weight = self.model.match_weight(vector) + tf
        return ScoredPair(a.record, b.record, j, vector, weight, weight_probability(weight), tf)


def weight_probability(weight: float) -> float:
    """Posterior probability of a match from log2 posterior odds."""
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    return 1.0 / (1.0 + math.pow(2.0, -weight))


def _blocks(
    records: Iterable[RecordEvidence], n_blocks: int
) -> list[dict[bytes, list[RecordEvidence]]]:
    out: list[dict[bytes, list[RecordEvidence]]] = [defaultdict(list) for _ in range(n_blocks)]
    for record in records:
        for j, token in enumerate(record.blocks):
            if token is not None:
                out[j][token].append(record)
    return out


def candidate_pairs(
    records: Iterable[RecordEvidence],
    *,
    n_blocks: int,
    max_block: int = DEFAULT_MAX_BLOCK,
    new: frozenset[int] | None = None,
    same_dataset: bool = False,
) -> list[list[tuple[RecordEvidence, RecordEvidence]]]:
    """Per blocking key, the pairs of records of two datasets that share one of its blocks.

    Args:
        records: the records to pair (new records and their held neighbourhood).
        n_blocks: blocking keys in the layout.
        max_block: a block with more records makes no pairs.
        new: when given, only pairs with at least one of these record numbers.
        same_dataset: pairs of records of *one* dataset instead (known non-matches in a
            dataset that holds one record per person, for estimating ``u``).

    Returns:
        Per blocking key, pairs ``(a, b)`` with ``a.record < b.record``, each once (a
        record has one block token per key, so two records share at most one block of
        it): a list, which spares hashing the records.
    """
    out: list[list[tuple[RecordEvidence, RecordEvidence]]] = [[] for _ in range(n_blocks)]
    for j, groups in enumerate(_groups(records, n_blocks, max_block)):
        for members in groups:
            out[j].extend(_pairs_of(members, new=new, same_dataset=same_dataset))
    return out


def _groups(
    records: Iterable[RecordEvidence], n_blocks: int, max_block: int
) -> list[list[list[RecordEvidence]]]:
    """Per blocking key, the members of each block of 2 to ``max_block`` records, by number."""
    return [
        [
            sorted(members, key=lambda r: r.record)
            for _, members in sorted(blocks.items())
            if 2 <= len(members) <= max_block
        ]
        for blocks in _blocks(records, n_blocks)
    ]


def _pairs_of(
    ordered: Sequence[RecordEvidence], *, new: frozenset[int] | None, same_dataset: bool
) -> list[tuple[RecordEvidence, RecordEvidence]]:
    out: list[tuple[RecordEvidence, RecordEvidence]] = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if (a.dataset == b.dataset) != same_dataset:
                continue
            if new is not None and a.record not in new and b.record not in new:
                continue
            out.append((a, b))
    return out


def fit(
    layout: Layout,
    records: Iterable[RecordEvidence],
    *,
    max_block: int = DEFAULT_MAX_BLOCK,
    one_per_person: frozenset[str] | None = None,
) -> Model:
    """Estimate every blocking key's model from the held records alone.

    ``u`` comes from pairs of one dataset inside a block (two people, by the dataset's
    declaration), pooled over keys where a key has few; ``m`` and the prior by EM over
    the candidate pairs (:func:`broker.matching.model.estimate`).

    Args:
        layout: the evidence layout.
        records: the held records.
        max_block: a block with more records is skipped.
        one_per_person: the datasets that hold one record per person (all by default);
            only their pairs count as known non-matches.
    """
    return fit_scored(layout, records, max_block=max_block, one_per_person=one_per_person)[0]


def fit_scored(
    layout: Layout,
    records: Iterable[RecordEvidence],
    *,
    max_block: int = DEFAULT_MAX_BLOCK,
    one_per_person: frozenset[str] | None = None,
    linked: Callable[[int, int], bool] | None = None,
) -> tuple[Model, list[ScoredPair]]:
    """:func:`fit`, and every candidate pair of ``records`` scored by the fitted model.

    The pairs are those ``score_pairs(model, records, ())`` gives (best first), from the
    agreement vectors the fit computed anyway: what :func:`model_threshold` needs.

    Args:
        layout: as for :func:`fit`.
        records: as for :func:`fit`.
        max_block: as for :func:`fit`.
        one_per_person: as for :func:`fit`.
        linked: whether two records (by number) are already known to be one person —
            the engine's exact cascade. Candidate pairs it says are linked are *known
            matches*, as pairs of one dataset are known non-matches: their levels,
            pooled over every blocking key, anchor ``m`` (so that EM cannot take a
            cluster of look-alike strangers for the matches when the holding has few),
            and each key's model counts them (``BlockModel.known_matches``).
    """
    held = list(records)
    n_blocks = len(layout.blocks)
    grouped = _groups(held, n_blocks, max_block)
    declared = [r for r in held if one_per_person is None or r.dataset in one_per_person]
    known = candidate_pairs(declared, n_blocks=n_blocks, max_block=max_block, same_dataset=True)
    non_matches = [
        Counter(agreement(block_layout, a, b) for a, b in block_pairs)
        for block_layout, block_pairs in zip(layout.blocks, known, strict=True)
    ]
    pooled: dict[str, list[float]] = {}
    for block_layout, patterns in zip(layout.blocks, non_matches, strict=True):
        for name, row in zip(
            block_layout.comparisons, level_counts(block_layout, patterns), strict=True
        ):
            total = pooled.setdefault(name, [0.0] * len(row))
            pooled[name] = [a + b for a, b in zip(total, row, strict=True)]
    vectors: list[list[tuple[int, RecordEvidence, RecordEvidence, tuple[int, ...]]]] = []
    linked_patterns: list[Counter[tuple[int, ...]]] = []
    pooled_m: dict[str, list[float]] = {}
    for block_layout, groups in zip(layout.blocks, grouped, strict=True):
        scored = [
            (g, a, b, agreement(block_layout, a, b))
            for g, members in enumerate(groups)
            for a, b in _pairs_of(members, new=None, same_dataset=False)
        ]
        vectors.append(scored)
        matches = Counter(
            v for _, a, b, v in scored if linked is not None and linked(a.record, b.record)
        )
        linked_patterns.append(matches)
        for name, row in zip(
            block_layout.comparisons, level_counts(block_layout, matches), strict=True
        ):
            total = pooled_m.setdefault(name, [0.0] * len(row))
            pooled_m[name] = [a + b for a, b in zip(total, row, strict=True)]
    models = []
    for block_layout, scored, patterns, matches in zip(
        layout.blocks, vectors, non_matches, linked_patterns, strict=True
    ):
        prior = [
            [(x + 1.0) / (sum(pooled[name], 0.0) + len(pooled[name])) for x in pooled[name]]
            for name in block_layout.comparisons
        ]
        m_prior = None
        if linked is not None:
            m_prior = [
                [
                    (x + 1.0) / (sum(pooled_m[name], 0.0) + len(pooled_m[name]))
                    for x in pooled_m[name]
                ]
                for name in block_layout.comparisons
            ]
        candidates = Counter(vector for _, _, _, vector in scored)
        models.append(
            estimate(
                block_layout,
                candidates,
                non_matches=patterns,
                u_prior=prior,
                m_prior=m_prior,
                known_matches=sum(matches.values()),
            )
        )
    model = Model(layout, tuple(models), max_block)
    best: dict[tuple[int, int], ScoredPair] = {}
    for j, (block_layout, block_model, scored) in enumerate(
        zip(layout.blocks, models, vectors, strict=True)
    ):
        adjusted = tf_columns(block_layout, block_model)
        scorers: dict[int, _BlockScorer] = {}
        for g, a, b, vector in scored:
            scorer = scorers.get(g)
            if scorer is None:
                scorer = _BlockScorer(block_model, adjusted, grouped[j][g])
                scorers[g] = scorer
            _keep_best(best, scorer.scored(j, a, b, vector), model.thresholds)
    return model, _best_first(best.values())


def prefer_key(thresholds: Thresholds, pair: ScoredPair, held: ScoredPair) -> bool:
    """Whether two records' score under one key (``pair``) replaces their score under
    an earlier key (``held``): the key a pair in blocks of several keys is judged by.

    A key under which the pair clears that key's own link threshold comes first, so the
    pair links when it clears the threshold of *some* key it shares (the union of every
    key's accepted pairs); among such keys, or when it clears none, the higher match
    weight (the first on a tie). With one threshold for every key this is simply the
    best score, since clearing it is monotone in the weight.
    """
    links = thresholds.links(pair)
    if links != thresholds.links(held):
        return links
    return pair.match_weight > held.match_weight


def _keep_best(
    best: dict[tuple[int, int], ScoredPair], pair: ScoredPair, thresholds: Thresholds
) -> None:
    """Keep ``pair`` if :func:`prefer_key` prefers it to the same pair under an earlier key."""
    key = (pair.left, pair.right)
    held = best.get(key)
    if held is None or prefer_key(thresholds, pair, held):
        best[key] = pair


def _best_first(pairs: Iterable[ScoredPair]) -> list[ScoredPair]:
    return sorted(pairs, key=lambda p: (-p.probability, -p.match_weight, p.left, p.right))


def score_pairs(
    model: Model,
    new: Sequence[RecordEvidence],
    neighbourhood: Sequence[RecordEvidence],
) -> list[ScoredPair]:
    """Score every candidate pair that involves a new record, best first.

    Args:
        model: the fitted model.
        new: the records being linked.
        neighbourhood: held records that share a block token with any of them (more
            records do no harm; fewer lose candidates). A record in both is taken once.

    Returns:
        One :class:`ScoredPair` per pair, sorted by probability (highest first), then
        match weight, then record numbers, so equal evidence gives equal order.
    """
    by_record = {r.record: r for r in neighbourhood}
    by_record.update((r.record, r) for r in new)
    fresh = frozenset(r.record for r in new)
    grouped = _groups(by_record.values(), len(model.layout.blocks), model.max_block)
    best: dict[tuple[int, int], ScoredPair] = {}
    for j, (block_layout, block_model, groups) in enumerate(
        zip(model.layout.blocks, model.blocks, grouped, strict=True)
    ):
        adjusted = tf_columns(block_layout, block_model)
        for members in groups:
            pairs = _pairs_of(members, new=fresh, same_dataset=False)
            if not pairs:
                continue
            scorer = _BlockScorer(block_model, adjusted, members)
            for a, b in pairs:
                _keep_best(
                    best, scorer.scored(j, a, b, agreement(block_layout, a, b)), model.thresholds
                )
    return _best_first(best.values())


def model_threshold(
    pairs: Iterable[ScoredPair], *, false_link_rate: float = 0.001, floor: float = 0.9
) -> float:
    """The lowest link threshold at which the model itself expects few wrong links.

    Taking pairs best first, the model expects ``sum(1 - p)`` of them to be wrong; the
    threshold is the probability of the last pair at which that share is still at most
    ``false_link_rate`` (and never below ``floor``). Chosen from the model's posteriors
    alone — no truth — and conservative: it counts every scored pair, before one-to-one
    resolution drops the weaker of two rivals.
    """
    ordered = sorted((p.probability for p in pairs), reverse=True)
    threshold, expected_wrong = 1.0, 0.0
    for count, probability in enumerate(ordered, start=1):
        if probability < floor:
            break
        expected_wrong += 1.0 - probability
        if expected_wrong <= false_link_rate * count:
            threshold = probability
    return threshold


def one_to_one(
    pairs: Iterable[ScoredPair],
    dataset_of: Mapping[int, str],
    *,
    threshold: float,
    taken: Iterable[tuple[int, str]] = (),
) -> list[ScoredPair]:
    """Pairs at or above ``threshold``, best first, each record paired at most once per dataset.

    For datasets that hold one record per person: a record already paired with a record of
    dataset E (or listed in ``taken`` as ``(record, E)``) takes no second partner from E.

    Returns:
        The accepted pairs, best first.
    """
    used = set(taken)
    accepted: list[ScoredPair] = []
    ordered = sorted(pairs, key=lambda p: (-p.probability, -p.match_weight, p.left, p.right))
    for pair in ordered:
        if pair.probability < threshold:
            break
        left_set, right_set = dataset_of[pair.left], dataset_of[pair.right]
        if (pair.left, right_set) in used or (pair.right, left_set) in used:
            continue
        used.add((pair.left, right_set))
        used.add((pair.right, left_set))
        accepted.append(pair)
    return accepted
