"""The dashboard's probabilistic charts as a person reads them, in a real headless chromium.

The page is the dashboard template rendered on a section built from a model fitted on SDK
tokens (tests/support/model_world.py): the broker's engine does not fit one yet, so the
live dashboard has no such section to show. JavaScript is off and nothing may be fetched.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest

from broker.dashboard import AuditStatus, Dashboard, DomainLinkage, bar_chart
from broker.labels import Labels
from broker.matching import Thresholds
from broker.probabilistic_charts import probabilistic_charts
from broker.probabilistic_report import ProbabilisticReportOut, build_probabilistic_report
from tests.browser.conftest import ARTIFACTS
from tests.support.model_world import fitted_world

pytestmark = pytest.mark.xdist_group("browser")

HOSTILE = '<script>alert("x")</script>&amp;'
TEMPLATES = Path(__file__).resolve().parents[2] / "broker" / "templates"


def _hostile(report: ProbabilisticReportOut) -> ProbabilisticReportOut:
    """The first comparison of the first blocking key renamed to hostile text."""
    key = report.blocking_keys[0]
    first = key.comparisons[0].model_copy(update={"name": HOSTILE})
    key = key.model_copy(update={"comparisons": [first, *key.comparisons[1:]]})
    return report.model_copy(update={"blocking_keys": [key, *report.blocking_keys[1:]]})


@pytest.fixture(scope="module")
def html() -> tuple[str, ProbabilisticReportOut]:
    world = fitted_world()
    report = _hostile(build_probabilistic_report(world.model, world.pairs, thresholds=Thresholds()))
    domain = DomainLinkage(
        domain="somerset",
        records=10,
        persons=8,
        linked_persons=2,
        ambiguous_tokens=0,
        conflicting_records=0,
        by_key=bar_chart("Records linked by match key, somerset", {"nhs": 2}),
        by_pair=bar_chart("Persons by dataset pair, somerset", {}),
        probabilistic=probabilistic_charts("somerset", report),
    )
    content = Dashboard(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        datasets=(),
        domains=(domain,),
        pending=(),
        credentials=(),
        audit_tail=(),
        audit=AuditStatus(True, "0 entries", 0, 0, None, "k1"),
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    page = env.get_template("dashboard.html").render(
        d=content, labels=Labels(), csrf="c", viewer="operator", notice=""
    )
    return page, report


@pytest.fixture
def reader(browser):
    context = browser.new_context(java_script_enabled=False, locale="en-GB")
    context.set_default_timeout(15_000)
    opened = context.new_page()
    opened.requests = []
    opened.dialogs = []
    opened.on("request", lambda request: opened.requests.append(request.url))
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()


def test_an_analyst_reads_the_weights_the_waterfall_and_the_distribution(reader, html):
    from playwright.sync_api import expect

    text, report = html
    reader.set_content(text)
    section = reader.locator("section", has=reader.get_by_role("heading", name="Linkage"))
    expect(section.get_by_role("heading", name="Probabilistic matching, somerset")).to_be_visible()
    expect(section.locator("dt:text-is('Link threshold') + dd")).to_have_text("0.999")
    expect(section.locator("dt:text-is('Possible matches for review') + dd")).to_have_text(
        f"{report.pairs_for_review:,}"
    )
    for key in report.blocking_keys:
        chart = reader.get_by_role(
            "img", name=re.compile(f"m and u per comparison level, blocking key {key.block},")
        )
        expect(chart).to_be_visible()
        level = key.comparisons[-1].levels[0]
        name = f"{key.comparisons[-1].name}: {level.level} m {level.m:.3f} u {level.u:.3f}"
        expect(chart).to_have_accessible_name(re.compile(re.escape(name)))
    assert report.example is not None
    waterfall = reader.get_by_role("img", name=re.compile("Waterfall of an example pair"))
    expect(waterfall).to_be_visible()
    prior = report.example.steps[0]
    expect(waterfall).to_have_accessible_name(
        re.compile(re.escape(f"{prior.label} {prior.weight:+.2f}"))
    )
    expect(reader.get_by_text(re.compile(r"match probability \d\.\d{4}"))).to_be_visible()
    histogram = reader.get_by_role("img", name=re.compile("Match probabilities of"))
    expect(histogram).to_be_visible()
    top = report.histogram[-1]
    expect(histogram).to_have_accessible_name(re.compile(f"0.999–1: {top.pairs}"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    reader.screenshot(path=str(ARTIFACTS / "probabilistic-charts.png"), full_page=True)


def test_hostile_names_are_shown_as_text_and_nothing_is_fetched(reader, html):
    from playwright.sync_api import expect

    text, _ = html
    reader.set_content(text)
    expect(reader.get_by_text(HOSTILE).first).to_be_attached()
    assert reader.locator("script").count() == 0
    assert reader.dialogs == []
    assert [u for u in reader.requests if not u.startswith(("about:", "data:"))] == []
