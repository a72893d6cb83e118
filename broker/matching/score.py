"""Candidate pairs, their scores, and the decisions the model supports.

- **Candidates**: records that share a block token, from two different datasets; a block
  holding more than ``max_block`` records is skipped (its pairs would be too many to
  compare and too weak to tell apart: the linter refuses such keys beforehand).
- **Score**: a pair's agreement vector under each blocking key it shares, scored by that
  key's :class:`~broker.matching.model.BlockModel`; the pair keeps the best of them (each
  is a posterior given the pair is in that key's blocks).
- **Decision**: a pair whose probability is at least ``Thresholds.link`` may link, one at
  least ``Thresholds.review`` is a possible match for review, never linked silently.
  :func:`one_to_one` resolves, best first, datasets that hold one record per person.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from broker.matching.evidence import Layout, RecordEvidence, agreement
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
    "score_pairs",
]

DEFAULT_MAX_BLOCK = 500
"""Records in one block at most; a larger block makes no candidates."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Posterior probabilities at which a pair links, or is kept for review.

    Chosen from the model, never from a truth file: a link needs the model's posterior
    to put the odds of a wrong link below one in a thousand (docs/probabilistic.md).
    """

    link: float = 0.999
    review: float = 0.5


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
    """A candidate pair and its best score.

    Attributes:
        left: the smaller record number of the two.
        right: the larger.
        block: index of the blocking key that gave the best score.
        agreement: the agreement vector under that key (per comparison of it).
        match_weight: log2 posterior odds under that key.
        probability: posterior probability of a match under that key.
    """

    left: int
    right: int
    block: int
    agreement: tuple[int, ...]
    match_weight: float
    probability: float


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
    for j, blocks in enumerate(_blocks(records, n_blocks)):
        for members in blocks.values():
            if len(members) < 2 or len(members) > max_block:
                continue
            ordered = sorted(members, key=lambda r: r.record)
            for i, a in enumerate(ordered):
                for b in ordered[i + 1 :]:
                    if (a.dataset == b.dataset) != same_dataset:
                        continue
                    if new is not None and a.record not in new and b.record not in new:
                        continue
                    out[j].append((a, b))
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
    pairs = candidate_pairs(held, n_blocks=n_blocks, max_block=max_block)
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
    vectors: list[list[tuple[int, int, tuple[int, ...]]]] = []
    linked_patterns: list[Counter[tuple[int, ...]]] = []
    pooled_m: dict[str, list[float]] = {}
    for block_layout, block_pairs in zip(layout.blocks, pairs, strict=True):
        scored = [(a.record, b.record, agreement(block_layout, a, b)) for a, b in block_pairs]
        vectors.append(scored)
        matches = Counter(
            v for left, right, v in scored if linked is not None and linked(left, right)
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
        candidates = Counter(vector for _, _, vector in scored)
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
    for j, (block_model, scored) in enumerate(zip(models, vectors, strict=True)):
        for left, right, vector in scored:
            weight = block_model.match_weight(vector)
            held_pair = best.get((left, right))
            if held_pair is None or weight > held_pair.match_weight:
                best[(left, right)] = ScoredPair(
                    left, right, j, vector, weight, block_model.probability(vector)
                )
    ordered = sorted(
        best.values(), key=lambda p: (-p.probability, -p.match_weight, p.left, p.right)
    )
    return model, ordered


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
    pairs = candidate_pairs(
        by_record.values(),
        n_blocks=len(model.layout.blocks),
        max_block=model.max_block,
        new=frozenset(r.record for r in new),
    )
    best: dict[tuple[int, int], ScoredPair] = {}
    for j, (block_layout, block_model) in enumerate(
        zip(model.layout.blocks, model.blocks, strict=True)
    ):
        for a, b in pairs[j]:
            vector = agreement(block_layout, a, b)
            weight = block_model.match_weight(vector)
            key = (a.record, b.record)
            held = best.get(key)
            if held is None or weight > held.match_weight:
                best[key] = ScoredPair(
                    a.record, b.record, j, vector, weight, block_model.probability(vector)
                )
    return sorted(best.values(), key=lambda p: (-p.probability, -p.match_weight, p.left, p.right))


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
