"""``tessera-broker admin agreement dpia``: the DPIA pack names everything its agreement shares."""

from __future__ import annotations

import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli import cli as broker_cli
from keys.wire_release import AgreementTerms
from tests.support.release_world import World, build_world

BIN = Path(sys.executable).parent
HOSTILE = "<script>alert(1)</script> Frailty & care"


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_world(broker_server, tmp_path_factory.mktemp("agreements-dpia"))


def _dpia(world: World, *args: str):
    return CliRunner().invoke(
        broker_cli, ["admin", "agreement", "dpia", *args], env=dict(world.broker.env)
    )


def _named(text: str, terms: AgreementTerms, recipients: list[str]) -> None:
    for release in terms.datasets:
        assert release.dataset_id in text
        for name in release.fields:
            assert name in text
    for name in recipients:
        assert name in text
    assert terms.legal_basis in text
    assert terms.article_6 and terms.article_6 in text
    assert terms.article_9 and terms.article_9 in text
    assert str(terms.retention_until) in text
    assert terms.dpia_reference and terms.dpia_reference in text
    for controller in terms.controllers:
        assert controller in text
    for day in terms.review_dates:
        assert str(day) in text


def test_the_markdown_pack_names_every_dataset_field_recipient_basis_and_date(world, tmp_path):
    agreement = world.agreement()
    out = tmp_path / "pack.md"
    result = _dpia(world, agreement.id, "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# DPIA pack: " + agreement.terms.title)
    _named(text, agreement.terms, agreement.terms.researchers)
    for heading in ("Data flows", "Who sees what", "What each token reveals", "Residual risks"):
        assert f"## {heading}" in text
    assert "docs/token-format.md" in text and "re-keyed at rest" in text
    assert "Section 251 support" in text


def test_a_direct_care_pack_names_the_receiving_organisations(world, tmp_path):
    agreement = world.agreement(kind="direct_care", researchers=[], organisations=[world.gp])
    out = tmp_path / "care.md"
    assert _dpia(world, agreement.id, "--out", str(out)).exit_code == 0
    text = out.read_text()
    _named(text, agreement.terms, [world.gp])
    assert "Direct-care return" in text and "not applied" in text


def test_an_aggregate_pack_names_its_small_number_rule(world, tmp_path):
    agreement = world.agreement(
        kind="research_aggregate",
        datasets=[{"org": world.gp, "name": "reg", "fields": ["AGE_BAND"]}],
        sdc_profile="nhse-hes",
    )
    out = tmp_path / "tables.md"
    assert _dpia(world, agreement.id, "--out", str(out)).exit_code == 0
    assert "NHS England HES/ECDS" in out.read_text() and "(nhse-hes)" in out.read_text()


def test_html_by_extension_or_flag_escapes_the_terms(world, tmp_path):
    agreement = world.agreement(title=HOSTILE, controllers=["<b>ICB</b>"])
    by_extension = tmp_path / "pack.html"
    assert _dpia(world, agreement.id, "--out", str(by_extension)).exit_code == 0
    by_flag = tmp_path / "pack.txt"
    assert _dpia(world, agreement.id, "--out", str(by_flag), "--format", "html").exit_code == 0
    for path in (by_extension, by_flag):
        html = path.read_text()
        assert html.startswith("<!doctype html>")
        assert "<script>" not in html and "<b>ICB</b>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; Frailty &amp; care" in html
        _named(unescape(html), agreement.terms, agreement.terms.researchers)
    markdown = tmp_path / "pack.md"
    assert _dpia(world, agreement.id, "--out", str(markdown)).exit_code == 0
    text = markdown.read_text()
    assert "<script>" not in text and "&lt;script>alert(1)&lt;/script> Frailty & care" in text


def _run(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tessera-broker"), "admin", "agreement", "dpia", *args],
        env=world.broker.admin_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_an_unknown_agreement_or_bad_id_is_one_line_and_non_zero(world, tmp_path):
    out = tmp_path / "none.md"
    for args, message in (
        (("dsa-0000000000", "--out", str(out)), ""),
        (("not-an-id", "--out", str(out)), "dsa-0123456789"),
        ((world.agreement().id, "--out", str(tmp_path / "no" / "x.md")), "cannot write"),
    ):
        result = _run(world, *args)
        err = result.stderr.strip()
        assert result.returncode != 0, err
        assert message in err and "Traceback" not in err
        if message != "dsa-0123456789":  # click's usage error takes several lines
            assert "\n" not in err
    assert not out.exists()
