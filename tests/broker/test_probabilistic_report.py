"""The probabilistic section of the linkage report, from a model fitted on SDK tokens."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.matching import MISSING, ScoredPair, Thresholds
from broker.probabilistic_charts import probabilistic_charts
from broker.probabilistic_report import (
    PROBABILITY_EDGES,
    build_probabilistic_report,
    example_pair,
    probability_histogram,
    waterfall,
)
from tests.support.model_world import fitted_world


@pytest.fixture(scope="module")
def world():
    return fitted_world()


def test_every_level_shows_the_models_m_u_and_weight(world) -> None:
    report = build_probabilistic_report(world.model, world.pairs, thresholds=Thresholds())
    assert [k.block for k in report.blocking_keys] == [b.block for b in world.model.blocks]
    for shown, fitted in zip(report.blocking_keys, world.model.blocks, strict=True):
        assert shown.prior == fitted.prior
        assert shown.prior_weight == pytest.approx(math.log2(fitted.prior / (1 - fitted.prior)))
        for comparison, weights in zip(shown.comparisons, fitted.comparisons, strict=True):
            assert [lv.level for lv in comparison.levels] == list(weights.levels)
            assert comparison.levels[-1].level == "disagree"
            for i, level in enumerate(comparison.levels):
                assert (level.m, level.u) == (weights.m[i], weights.u[i])
                assert level.weight == pytest.approx(math.log2(weights.m[i] / weights.u[i]))


def test_counts_split_the_scored_pairs_at_the_thresholds(world) -> None:
    thresholds = Thresholds(link=0.999, review=0.5)
    report = build_probabilistic_report(world.model, world.pairs, thresholds=thresholds)
    probabilities = [p.probability for p in world.pairs]
    assert report.scored_pairs == len(world.pairs) > 0
    assert report.pairs_at_link == sum(p >= 0.999 for p in probabilities)
    assert report.pairs_for_review == sum(0.5 <= p < 0.999 for p in probabilities)
    assert sum(b.pairs for b in report.histogram) == len(world.pairs)
    assert report.histogram[-1].pairs >= report.pairs_at_link  # the top bin holds the links


def test_each_key_shows_its_own_link_threshold_and_pairs_are_counted_against_it(
    world,
) -> None:
    n = len(world.model.blocks)
    keys = tuple(0.9 + 0.09 * j / max(1, n - 1) for j in range(n))
    thresholds = Thresholds(link=0.95, review=0.5, keys=keys)
    report = build_probabilistic_report(world.model, world.pairs, thresholds=thresholds)
    assert [k.link_threshold for k in report.blocking_keys] == list(keys)
    assert report.thresholds.link == 0.95  # the pooled one, for keys without their own
    links = [p.probability >= keys[p.block] for p in world.pairs]
    assert report.pairs_at_link == sum(links)
    assert report.pairs_for_review == sum(
        p.probability >= 0.5 and not linked for p, linked in zip(world.pairs, links, strict=True)
    )
    shown = probabilistic_charts("d", report).link_threshold
    if n > 1:  # the dashboard names each key's where they differ
        assert all(f"({k.block})" in shown for k in report.blocking_keys)
    uniform = build_probabilistic_report(world.model, world.pairs, thresholds=Thresholds())
    assert probabilistic_charts("d", uniform).link_threshold == "0.999"


def test_the_waterfall_adds_up_to_the_pairs_score(world) -> None:
    for pair in world.pairs[:: max(1, len(world.pairs) // 25)]:
        fall = waterfall(world.model, pair.block, pair.agreement, tf_weight=pair.tf_weight)
        fitted = world.model.blocks[pair.block]
        assert fall.steps[0].label == f"prior ({fitted.block})"
        assert sum(s.weight for s in fall.steps) == pytest.approx(pair.match_weight)
        assert fall.steps[-1].cumulative == pytest.approx(pair.match_weight)
        assert fall.probability == pytest.approx(pair.probability)
        comparisons = fall.steps[1 : 1 + len(pair.agreement)]
        assert fall.steps[1 + len(pair.agreement) :] == (
            [] if not pair.tf_weight else fall.steps[-1:]
        )  # term frequencies, when they moved the score, are the last step
        for step, level in zip(comparisons, pair.agreement, strict=True):
            if level == MISSING:
                assert (step.level, step.weight) == ("missing", 0.0)


def test_a_waterfall_of_another_shape_is_refused(world) -> None:
    with pytest.raises(ValueError, match="blocking key"):
        waterfall(world.model, len(world.model.blocks), ())
    with pytest.raises(ValueError, match="agreement vector"):
        waterfall(world.model, 0, (0,))


def test_the_example_is_the_pair_nearest_the_link_threshold(world) -> None:
    thresholds = Thresholds()
    chosen = example_pair(world.pairs, thresholds)
    assert chosen is not None
    distance = abs(chosen.probability - thresholds.link)
    assert all(abs(p.probability - thresholds.link) >= distance for p in world.pairs)
    assert example_pair(reversed(world.pairs), thresholds) == chosen
    assert example_pair([], thresholds) is None
    empty = build_probabilistic_report(world.model, [], thresholds=thresholds)
    assert empty.example is None and empty.scored_pairs == 0


@given(st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False)))
def test_each_probability_falls_in_exactly_its_bin(probabilities) -> None:
    bins = probability_histogram(probabilities)
    assert [(b.low, b.high) for b in bins] == list(
        zip(PROBABILITY_EDGES, PROBABILITY_EDGES[1:], strict=False)
    )
    assert sum(b.pairs for b in bins) == len(probabilities)
    for b in bins:
        inside = [p for p in probabilities if b.low <= p < b.high or (b.high == 1.0 == p)]
        assert b.pairs == len(inside)


def test_the_charts_draw_the_reports_numbers(world) -> None:
    report = build_probabilistic_report(world.model, world.pairs, thresholds=Thresholds())
    charts = probabilistic_charts("somerset", report)
    assert len(charts.mu) == len(report.blocking_keys)
    for chart, key in zip(charts.mu, report.blocking_keys, strict=True):
        levels = [lv for c in key.comparisons for lv in c.levels]
        assert len(chart.rows) == len(levels)
        for row, level in zip(chart.rows, levels, strict=True):
            assert (row.m, row.u) == (level.m, level.u)
            assert row.m_width == max(1, round((chart.width - 80) * level.m))
            assert row.u_width == max(1, round((chart.width - 80) * level.u))
    assert charts.waterfall is not None and report.example is not None
    fall = charts.waterfall
    assert [s.cumulative for s in fall.steps] == [s.cumulative for s in report.example.steps]
    for step in fall.steps:
        assert step.positive == (step.weight >= 0)
        assert fall.zero_x <= step.x + step.width and step.x >= 0
    tallest = max(charts.histogram.columns, key=lambda c: c.pairs)
    assert tallest.height == charts.histogram.plot_height
    assert all(c.height == 0 for c in charts.histogram.columns if c.pairs == 0)


def test_a_pair_with_every_comparison_missing_scores_the_prior(world) -> None:
    fitted = world.model.blocks[0]
    vector = (MISSING,) * len(fitted.comparisons)
    fall = waterfall(world.model, 0, vector)
    assert fall.match_weight == pytest.approx(math.log2(fitted.prior / (1 - fitted.prior)))
    pair = ScoredPair(1, 2, 0, vector, fall.match_weight, fall.probability)
    assert example_pair([pair], Thresholds()) == pair
