"""Fellegi–Sunter weights per blocking key, estimated by expectation–maximisation.

Two records that share a block are a *match* (one person) or not. For each comparison,
``m[l]`` is the probability that a match agrees at level ``l`` (or, last, disagrees), and
``u[l]`` the same for a non-match; ``prior`` is the share of the blocking key's candidate
pairs that are matches. Comparisons are taken as independent given the class (the usual
Fellegi–Sunter assumption), and a comparison that either record lacks says nothing.

Everything is estimated from the held data alone — the broker has no ground truth —
separately for each blocking key, so ``u`` is conditional on the block (two records with
the same date of birth agree on sex half the time whoever they are; two with the same
name code agree on their given name far more often than two strangers):

- ``u`` from *known non-matches*: pairs of records of one dataset inside one block. A
  dataset that holds one record per person declares those to be two people (the same
  declaration the engine's ambiguity rule rests on). When a key's blocks hold few such
  pairs (NHS number alone: two records of one dataset rarely share one), the key's own
  counts are pooled with every key's, weighted as ``u_prior_pairs`` pairs;
- ``m`` and the prior by EM over the candidate pairs (two datasets) with ``u`` fixed,
  the way Splink estimates ``m`` once ``u`` is known. EM with both free splits the
  matches of a key whose pairs are nearly all matches into two classes.

A Dirichlet pseudo-count on every level keeps a level no pair reaches from getting a
probability of zero.

The fit is deterministic and order-invariant: the agreement vectors are counted and
iterated in sorted order, so the same pairs in any order give the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.matching.evidence import MISSING, BlockLayout

__all__ = ["BlockModel", "ComparisonWeights", "estimate", "level_counts"]


@dataclass(frozen=True, slots=True)
class ComparisonWeights:
    """One comparison's m and u probabilities, per level and then for disagreement.

    Attributes:
        name: the comparison's name.
        levels: its level names, strongest first, then ``"disagree"``.
        m: per level, P(agreement at that level | match).
        u: per level, P(agreement at that level | non-match).
    """

    name: str
    levels: tuple[str, ...]
    m: tuple[float, ...]
    u: tuple[float, ...]

    def weight(self, level: int) -> float:
        """The level's match weight, log2(m / u); 0 for a missing comparison."""
        if level == MISSING:
            return 0.0
        return math.log2(self.m[level] / self.u[level])


@dataclass(frozen=True, slots=True)
class BlockModel:
    """The fitted model of one blocking key's candidate pairs.

    Attributes:
        block: the blocking key's name.
        prior: share of the key's candidate pairs that are matches.
        comparisons: the weights of each comparison derived under the key.
        pairs: candidate pairs the model was fitted on.
        iterations: EM iterations run.
        converged: whether the parameters settled within the tolerance.
        known_matches: candidate pairs known to be matches (``matches`` of
            :func:`estimate`: pairs the exact cascade has already linked).
    """

    block: str
    prior: float
    comparisons: tuple[ComparisonWeights, ...]
    pairs: int
    iterations: int
    converged: bool
    known_matches: int = 0

    def match_weight(self, vector: Sequence[int]) -> float:
        """log2 posterior odds of a match: the prior's log odds plus every level's weight."""
        total = math.log2(self.prior / (1.0 - self.prior))
        for weights, level in zip(self.comparisons, vector, strict=True):
            total += weights.weight(level)
        return total

    def probability(self, vector: Sequence[int]) -> float:
        """Posterior probability that a pair with this agreement vector is a match."""
        weight = self.match_weight(vector)
        if weight > 60:
            return 1.0
        if weight < -60:
            return 0.0
        return 1.0 / (1.0 + math.pow(2.0, -weight))


def _initial_m(size: int) -> list[float]:
    """A match mostly agrees exactly: 0.9 on the first level, the rest halving down."""
    if size == 1:
        return [1.0]
    rest = [0.5**k for k in range(1, size)]
    scale = 0.1 / sum(rest, 0.0)
    return [0.9] + [r * scale for r in rest]


def level_counts(layout: BlockLayout, patterns: Mapping[tuple[int, ...], int]) -> list[list[float]]:
    """Per comparison, how many pairs agree at each level (then disagree); missing skipped."""
    counts = [[0.0] * (len(levels) + 1) for levels in layout.levels]
    for vector, count in sorted(patterns.items()):
        for c, level in enumerate(vector):
            if level != MISSING:
                counts[c][level] += count
    return counts


def estimate(
    layout: BlockLayout,
    patterns: Mapping[tuple[int, ...], int],
    *,
    non_matches: Mapping[tuple[int, ...], int] | None = None,
    u_prior: Sequence[Sequence[float]] | None = None,
    u_prior_pairs: float = 50.0,
    m_prior: Sequence[Sequence[float]] | None = None,
    m_prior_pairs: float = 50.0,
    known_matches: int = 0,
    max_iterations: int = 500,
    tolerance: float = 1e-7,
    pseudo_count: float = 1.0,
    initial_prior: float = 0.1,
) -> BlockModel:
    """Fit one blocking key's m, u and prior from its pairs' agreement vectors.

    Args:
        layout: the comparisons derived under the blocking key.
        patterns: agreement vector → how many candidate pairs have it.
        non_matches: agreement vectors of known non-matches in the same blocks (pairs of
            one dataset); ``u`` is fixed from them. Without them ``u`` is fitted by EM too.
        u_prior: per comparison, a level distribution ``u`` is pulled towards (pooled over
            every blocking key), weighted as ``u_prior_pairs`` pairs.
        u_prior_pairs: the weight of ``u_prior``.
        m_prior: per comparison, a level distribution ``m`` is pulled towards at every EM
            step (the levels of pairs known to be matches, pooled over every blocking
            key), weighted as ``m_prior_pairs`` pairs; it also starts ``m`` there.
        m_prior_pairs: the weight of ``m_prior``.
        known_matches: how many known matches ``m_prior`` came from (kept on the model).
        max_iterations: EM iterations at most.
        tolerance: stop when no parameter moves by more than this.
        pseudo_count: Dirichlet pseudo-count added to every level of m and u.
        initial_prior: the starting share of matches.

    Returns:
        The fitted model (the match class is the one that agrees more at the top levels).
    """
    sizes = [len(levels) + 1 for levels in layout.levels]
    ordered = sorted(patterns.items())
    total = sum(count for _, count in ordered)
    m = [_initial_m(size) for size in sizes] if m_prior is None else [list(r) for r in m_prior]
    fixed_u = non_matches is not None
    seen = level_counts(layout, non_matches if non_matches is not None else patterns)
    u: list[list[float]] = []
    for c, size in enumerate(sizes):  # u from known non-matches (or a start for EM)
        prior_row = u_prior[c] if u_prior is not None else [1.0 / size] * size
        row = [
            seen[c][level] + pseudo_count + (u_prior_pairs * prior_row[level] if fixed_u else 0)
            for level in range(size)
        ]
        u.append([x / sum(row, 0.0) for x in row])
    prior = initial_prior
    iterations, converged = 0, False
    while iterations < max_iterations and total:
        iterations += 1
        m_counts = [[pseudo_count] * size for size in sizes]
        if m_prior is not None:
            m_counts = [
                [x + m_prior_pairs * p for x, p in zip(row, prior_row, strict=True)]
                for row, prior_row in zip(m_counts, m_prior, strict=True)
            ]
        u_counts = [[pseudo_count] * size for size in sizes]
        matched = 0.0
        for vector, count in ordered:
            like_m, like_u = prior, 1.0 - prior
            for c, level in enumerate(vector):
                if level != MISSING:
                    like_m *= m[c][level]
                    like_u *= u[c][level]
            p = like_m / (like_m + like_u) if like_m + like_u > 0 else 0.0
            matched += count * p
            for c, level in enumerate(vector):
                if level != MISSING:
                    m_counts[c][level] += count * p
                    u_counts[c][level] += count * (1.0 - p)
        new_prior = min(max(matched / total, 1e-9), 1.0 - 1e-9)
        new_m = [[x / sum(row, 0.0) for x in row] for row in m_counts]
        new_u = u if fixed_u else [[x / sum(row, 0.0) for x in row] for row in u_counts]
        change = max(
            abs(new_prior - prior),
            max(
                (
                    abs(a - b)
                    for old, new in zip(m, new_m, strict=True)
                    for a, b in zip(old, new, strict=True)
                ),
                default=0.0,
            ),
            max(
                (
                    abs(a - b)
                    for old, new in zip(u, new_u, strict=True)
                    for a, b in zip(old, new, strict=True)
                ),
                default=0.0,
            ),
        )
        prior, m, u = new_prior, new_m, new_u
        if change < tolerance:
            converged = True
            break
    # the classes came out swapped (float sums: a compiled sum() starts from an int)
    if sum((row[0] for row in m), 0.0) < sum((row[0] for row in u), 0.0):
        m, u, prior = u, m, 1.0 - prior
    comparisons = tuple(
        ComparisonWeights(name, (*levels, "disagree"), tuple(m_row), tuple(u_row))
        for name, levels, m_row, u_row in zip(layout.comparisons, layout.levels, m, u, strict=True)
    )
    return BlockModel(layout.name, prior, comparisons, total, iterations, converged, known_matches)
