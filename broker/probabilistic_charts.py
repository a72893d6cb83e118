"""The dashboard's charts of the probabilistic stage, laid out for inline SVG.

Three charts per domain, from :class:`broker.probabilistic_report.ProbabilisticReportOut`:
each blocking key's ``m`` and ``u`` per comparison level as paired bars (with the level's
match weight), the waterfall of the example pair, and the histogram of match
probabilities. The layout is computed here, in SVG user units, so the template only
places rectangles and text that Jinja2 escapes; nothing is drawn by JavaScript or
fetched from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.probabilistic_report import ProbabilisticReportOut, WaterfallOut

__all__ = [
    "Column",
    "Histogram",
    "LevelBars",
    "MuChart",
    "ProbabilisticCharts",
    "Step",
    "Waterfall",
    "probabilistic_charts",
]

_WIDTH = 640
_LABEL = 18
_BAR = 12
_GAP = 10


@dataclass(frozen=True, slots=True)
class LevelBars:
    """One comparison level: its label line, then an ``m`` bar and a ``u`` bar."""

    label: str
    m: float
    u: float
    weight: float
    y: int
    m_width: int
    u_width: int


@dataclass(frozen=True, slots=True)
class MuChart:
    """The m and u of every comparison level of one blocking key."""

    title: str
    summary: str
    rows: tuple[LevelBars, ...]
    width: int
    height: int
    label_height: int
    bar_height: int


@dataclass(frozen=True, slots=True)
class Step:
    """One waterfall bar, from ``x`` for ``width`` units (positive weights go right)."""

    label: str
    weight: float
    cumulative: float
    y: int
    x: int
    width: int
    positive: bool


@dataclass(frozen=True, slots=True)
class Waterfall:
    """The example pair's waterfall: a bar per step on one axis of match weight."""

    title: str
    summary: str
    steps: tuple[Step, ...]
    zero_x: int
    width: int
    height: int
    label_height: int
    bar_height: int
    match_weight: float
    probability: float


@dataclass(frozen=True, slots=True)
class Column:
    """One histogram column (bottom-aligned), its bin label and count."""

    label: str
    pairs: int
    x: int
    y: int
    height: int


@dataclass(frozen=True, slots=True)
class Histogram:
    """The distribution of match probabilities of scored pairs."""

    title: str
    summary: str
    columns: tuple[Column, ...]
    column_width: int
    width: int
    height: int
    plot_height: int


@dataclass(frozen=True, slots=True)
class ProbabilisticCharts:
    """Everything the dashboard draws of one domain's probabilistic stage."""

    link_threshold: str
    """The link threshold as shown: one number when every blocking key has the same, else
    each key's (``0.9612 (dob), 0.9771 (postcode_year)``)."""
    review_threshold: float
    scored_pairs: int
    pairs_at_link: int
    pairs_for_review: int
    mu: tuple[MuChart, ...]
    waterfall: Waterfall | None
    histogram: Histogram


def _mu_chart(domain: str, report: ProbabilisticReportOut, index: int) -> MuChart:
    key = report.blocking_keys[index]
    space = _WIDTH - 80
    row = _LABEL + 2 * _BAR + _GAP
    rows: list[LevelBars] = []
    for comparison in key.comparisons:
        for level in comparison.levels:
            rows.append(
                LevelBars(
                    label=f"{comparison.name}: {level.level}",
                    m=level.m,
                    u=level.u,
                    weight=level.weight,
                    y=len(rows) * row,
                    m_width=max(1, round(space * level.m)),
                    u_width=max(1, round(space * level.u)),
                )
            )
    summary = "; ".join(f"{r.label} m {r.m:.3f} u {r.u:.3f} weight {r.weight:+.2f}" for r in rows)
    return MuChart(
        title=f"m and u per comparison level, blocking key {key.block}, {domain} "
        f"(prior {key.prior:.4f}, {key.pairs:,} pairs)",
        summary=summary,
        rows=tuple(rows),
        width=_WIDTH,
        height=max(1, len(rows)) * row,
        label_height=_LABEL,
        bar_height=_BAR,
    )


def _waterfall(domain: str, example: WaterfallOut) -> Waterfall:
    totals = [0.0, *(s.cumulative for s in example.steps)]
    low, high = min(totals), max(totals)
    span = (high - low) or 1.0
    space = _WIDTH - 160
    left = 80

    def at(value: float) -> int:
        return left + round(space * (value - low) / span)

    row = _LABEL + _BAR + _GAP
    steps: list[Step] = []
    before = 0.0
    for i, s in enumerate(example.steps):
        start, end = sorted((before, s.cumulative))
        label = s.label if not s.level else f"{s.label}: {s.level}"
        steps.append(
            Step(
                label=label,
                weight=s.weight,
                cumulative=s.cumulative,
                y=i * row,
                x=at(start),
                width=max(1, at(end) - at(start)),
                positive=s.weight >= 0,
            )
        )
        before = s.cumulative
    summary = "; ".join(f"{s.label} {s.weight:+.2f}" for s in steps)
    return Waterfall(
        title=f"Waterfall of an example pair, blocking key {example.block}, {domain}",
        summary=f"{summary}; total {example.match_weight:+.2f}, "
        f"probability {example.probability:.4f}",
        steps=tuple(steps),
        zero_x=at(0.0),
        width=_WIDTH,
        height=max(1, len(steps)) * row,
        label_height=_LABEL,
        bar_height=_BAR,
        match_weight=example.match_weight,
        probability=example.probability,
    )


def _histogram(domain: str, report: ProbabilisticReportOut) -> Histogram:
    bins = report.histogram
    column_width = (_WIDTH - 20) // max(1, len(bins))
    plot = 160
    top = max((b.pairs for b in bins), default=0)
    columns = []
    for i, b in enumerate(bins):
        height = max(1, round(plot * b.pairs / top)) if top and b.pairs else 0
        columns.append(
            Column(
                label=f"{b.low:g}–{b.high:g}",
                pairs=b.pairs,
                x=10 + i * column_width,
                y=20 + plot - height,
                height=height,
            )
        )
    return Histogram(
        title=f"Match probabilities of {report.scored_pairs:,} scored pairs, {domain}",
        summary="; ".join(f"{c.label}: {c.pairs}" for c in columns),
        columns=tuple(columns),
        column_width=column_width,
        width=_WIDTH,
        height=plot + 60,
        plot_height=plot,
    )


def _link_thresholds(report: ProbabilisticReportOut) -> str:
    keys = report.blocking_keys
    if not keys or len({k.link_threshold for k in keys}) == 1:
        return f"{keys[0].link_threshold if keys else report.thresholds.link:.4g}"
    return ", ".join(f"{k.link_threshold:.4g} ({k.block})" for k in keys)


def probabilistic_charts(domain: str, report: ProbabilisticReportOut) -> ProbabilisticCharts:
    """Lay out the charts of one domain's probabilistic section."""
    return ProbabilisticCharts(
        link_threshold=_link_thresholds(report),
        review_threshold=report.thresholds.review,
        scored_pairs=report.scored_pairs,
        pairs_at_link=report.pairs_at_link,
        pairs_for_review=report.pairs_for_review,
        mu=tuple(_mu_chart(domain, report, i) for i in range(len(report.blocking_keys))),
        waterfall=None if report.example is None else _waterfall(domain, report.example),
        histogram=_histogram(domain, report),
    )
