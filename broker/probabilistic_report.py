"""The probabilistic section of the linkage report: the fitted weights, explained.

What a linkage analyst reads to trust (or distrust) the Fellegi–Sunter stage, as Splink
shows it: per blocking key its prior, its link threshold and, per comparison level,
``m``, ``u`` and the match weight ``log2(m / u)``; the review threshold; a histogram of
the match probabilities of scored pairs; and a *waterfall* for one example pair (the prior's weight,
each comparison's weight at the level the pair reached, the total and the probability).

The inputs are the engine's own types (:class:`broker.matching.Model`, a pair's blocking
key and agreement vector, probabilities), so the section is built the same way from a
model fitted in a test or from the engine's fitted model. Like the rest of the report it
holds no reference, token, record number or payload value: the example pair is shown by
its agreement levels only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from broker.matching import MISSING, Model, ScoredPair, Thresholds, weight_probability

__all__ = [
    "MISSING_LEVEL",
    "PROBABILITY_EDGES",
    "BlockingKeyOut",
    "ComparisonOut",
    "HistogramBinOut",
    "LevelWeightOut",
    "ProbabilisticReportOut",
    "ThresholdsOut",
    "WaterfallOut",
    "WaterfallStepOut",
    "build_probabilistic_report",
    "example_pair",
    "probability_histogram",
    "waterfall",
]

PROBABILITY_EDGES: tuple[float, ...] = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0,
)  # fmt: skip
"""Histogram bin edges: tenths, then finer towards 1, where the link threshold sits."""

MISSING_LEVEL = "missing"
"""The level name of a comparison either record has no value for (weight 0)."""


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelWeightOut(_Out):
    """One comparison level: P(level | match), P(level | non-match) and the match weight."""

    level: str
    m: float
    u: float
    weight: float


class ComparisonOut(_Out):
    """A comparison derived under a blocking key, its levels strongest first, then disagree."""

    name: str
    levels: list[LevelWeightOut]


class BlockingKeyOut(_Out):
    """The fitted model of one blocking key."""

    block: str
    prior: float
    prior_weight: float
    """log2 of the prior odds: where every pair of this key's blocks starts."""
    pairs: int
    converged: bool
    link_threshold: float
    """This key's own link threshold: a pair judged under this key links at or above it."""
    comparisons: list[ComparisonOut]


class ThresholdsOut(_Out):
    """Posterior probabilities at which a pair links, or is kept for review."""

    link: float
    """The pooled link threshold (every key's pairs walked together): the threshold of a
    key without its own; each key's is ``BlockingKeyOut.link_threshold``."""
    review: float


class HistogramBinOut(_Out):
    """Scored pairs with ``low <= probability < high`` (the last bin includes 1)."""

    low: float
    high: float
    pairs: int


class WaterfallStepOut(_Out):
    """One bar of the waterfall: a weight and the running total after it."""

    label: str
    level: str
    weight: float
    cumulative: float


class WaterfallOut(_Out):
    """How one pair's match probability is made up, starting from its blocking key's prior."""

    block: str
    steps: list[WaterfallStepOut]
    match_weight: float
    probability: float


class ProbabilisticReportOut(_Out):
    """The probabilistic section of one domain's linkage report."""

    thresholds: ThresholdsOut
    blocking_keys: list[BlockingKeyOut]
    scored_pairs: int
    pairs_at_link: int
    pairs_for_review: int
    histogram: list[HistogramBinOut]
    example: WaterfallOut | None


def _prior_weight(prior: float) -> float:
    return math.log2(prior / (1.0 - prior))


def _blocking_keys(model: Model, thresholds: Thresholds) -> list[BlockingKeyOut]:
    out: list[BlockingKeyOut] = []
    for j, block in enumerate(model.blocks):
        comparisons = [
            ComparisonOut(
                name=c.name,
                levels=[
                    LevelWeightOut(level=name, m=c.m[i], u=c.u[i], weight=c.weight(i))
                    for i, name in enumerate(c.levels)
                ],
            )
            for c in block.comparisons
        ]
        out.append(
            BlockingKeyOut(
                block=block.block,
                prior=block.prior,
                prior_weight=_prior_weight(block.prior),
                pairs=block.pairs,
                converged=block.converged,
                link_threshold=thresholds.link_of(j),
                comparisons=comparisons,
            )
        )
    return out


def probability_histogram(
    probabilities: Iterable[float], *, edges: Sequence[float] = PROBABILITY_EDGES
) -> list[HistogramBinOut]:
    """Count probabilities into the bins between ``edges`` (the last bin includes its top)."""
    counts = [0] * (len(edges) - 1)
    for p in probabilities:
        for i in range(len(counts)):
            last = i == len(counts) - 1
            if edges[i] <= p < edges[i + 1] or (last and p == edges[i + 1]):
                counts[i] += 1
                break
    return [HistogramBinOut(low=edges[i], high=edges[i + 1], pairs=n) for i, n in enumerate(counts)]


def waterfall(
    model: Model, block: int, vector: Sequence[int], *, tf_weight: float = 0.0
) -> WaterfallOut:
    """The waterfall of a pair scored under blocking key ``block`` with agreement ``vector``.

    ``tf_weight`` (``ScoredPair.tf_weight``), when not zero, is a last step: the pair's
    term-frequency adjustments, so that the steps add up to the pair's match weight.

    Raises:
        ValueError: ``block`` is not a key of the model, or ``vector`` does not fit it.
    """
    if not 0 <= block < len(model.blocks):
        raise ValueError(f"no blocking key {block} in the model")
    fitted = model.blocks[block]
    if len(vector) != len(fitted.comparisons):
        raise ValueError(f"agreement vector of {len(vector)} for {len(fitted.comparisons)}")
    running = _prior_weight(fitted.prior)
    steps = [
        WaterfallStepOut(
            label=f"prior ({fitted.block})", level="", weight=running, cumulative=running
        )
    ]
    for weights, level in zip(fitted.comparisons, vector, strict=True):
        step = weights.weight(level)
        running += step
        name = MISSING_LEVEL if level == MISSING else weights.levels[level]
        steps.append(
            WaterfallStepOut(label=weights.name, level=name, weight=step, cumulative=running)
        )
    if tf_weight:
        running += tf_weight
        steps.append(
            WaterfallStepOut(
                label="term frequencies", level="exact", weight=tf_weight, cumulative=running
            )
        )
    return WaterfallOut(
        block=fitted.block,
        steps=steps,
        match_weight=running,
        probability=weight_probability(running),
    )


def example_pair(pairs: Iterable[ScoredPair], thresholds: Thresholds) -> ScoredPair | None:
    """The pair a reviewer learns most from: the one closest to the link threshold (of
    the blocking key it is judged under).

    A pair far above it agrees everywhere and one far below disagrees everywhere; the one
    nearest the line shows which comparisons carry a decision. Ties go to the stronger
    pair, then the smaller record numbers, so the choice is deterministic.
    """
    return min(
        pairs,
        key=lambda p: (
            abs(p.probability - thresholds.link_of(p.block)),
            -p.match_weight,
            p.left,
            p.right,
        ),
        default=None,
    )


def build_probabilistic_report(
    model: Model,
    pairs: Sequence[ScoredPair],
    *,
    thresholds: Thresholds,
) -> ProbabilisticReportOut:
    """The probabilistic section from a fitted model and the pairs it scored.

    Args:
        model: the fitted Fellegi–Sunter model (per blocking key prior, m and u).
        pairs: the scored candidate pairs (linked ones and possible matches alike).
        thresholds: the link (per blocking key) and review thresholds in force.

    Returns:
        Weights, thresholds, counts, the probability histogram and the waterfall of
        :func:`example_pair` (none when nothing was scored).
    """
    chosen = example_pair(pairs, thresholds)
    return ProbabilisticReportOut(
        thresholds=ThresholdsOut(link=thresholds.link, review=thresholds.review),
        blocking_keys=_blocking_keys(model, thresholds),
        scored_pairs=len(pairs),
        pairs_at_link=sum(thresholds.links(p) for p in pairs),
        pairs_for_review=sum(
            thresholds.review <= p.probability and not thresholds.links(p) for p in pairs
        ),
        histogram=probability_histogram(p.probability for p in pairs),
        example=None
        if chosen is None
        else waterfall(model, chosen.block, chosen.agreement, tf_weight=chosen.tf_weight),
    )
