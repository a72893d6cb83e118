"""The register and the dashboard as a person sees them, in a real headless chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from broker.store.identities import find_identity, set_identity_labels
from tests.support.transparency_world import (
    HOSTILE_CONTROLLER,
    HOSTILE_DPIA,
    HOSTILE_TITLE,
    build_transparency,
)

pytestmark = pytest.mark.xdist_group("browser")


SURGERY = "Riverside Surgery (ODS L85540)"


@pytest.fixture(scope="module")
def t(broker_server, tmp_path_factory):
    world = build_transparency(broker_server, tmp_path_factory.mktemp("browser"))
    store = broker_server.runtime.store
    gp = find_identity(store, world.world.gp)
    set_identity_labels(store, gp, display_name="Riverside Surgery", ods_code="L85540")
    return world


def _only_from_the_broker(page) -> None:
    hosts = {urlsplit(url).netloc for url in page.requests}
    assert len(hosts) == 1, hosts  # nothing fetched from anywhere else


def _no_secrets(page, t) -> None:
    text = page.content()
    for leaked in t.secrets:
        assert leaked not in text


def test_the_public_reads_the_register_and_how_data_is_protected(page, screenshot, t):
    page.goto("/register")
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Public register of data-sharing agreements"
    )
    article = page.locator("article", has_text=f"Agreement {t.active.id}")
    hostile = article.get_by_role("heading", name=HOSTILE_TITLE, exact=True)
    expect(hostile).to_be_visible()
    expect(article.get_by_text("Section 251 of the NHS Act 2006")).to_be_visible()
    expect(article.locator("dt:text-is('Releases made') + dd")).to_have_text("2")
    fields = article.get_by_role("listitem")
    expect(fields.filter(has_text="Age band")).to_contain_text("AGE_BAND")
    expect(fields.filter(has_text="Long-term conditions")).to_contain_text("LTC")
    expect(article.locator("dt:text-is('Organisations providing data') + dd")).to_contain_text(
        SURGERY
    )
    expect(article.get_by_role("cell", name=SURGERY, exact=True).first).to_be_visible()
    terms = t.active.terms

    def term(name: str):
        return article.locator(f"dt:text-is('{name}') + dd")

    expect(term("UK GDPR Article 6 basis")).to_have_text(terms.article_6 or "")
    expect(term("UK GDPR Article 9 condition")).to_have_text(terms.article_9 or "")
    expect(term("Duty of confidentiality met by")).to_contain_text("Section 251 support")
    expect(term("Access method")).to_contain_text("Record-level")
    expect(term("Data controllers")).to_contain_text(HOSTILE_CONTROLLER)
    expect(term("DPIA reference")).to_have_text(HOSTILE_DPIA)
    expect(term("National Data Opt-out")).to_contain_text("Applied")
    expect(term("Sublicensing")).to_have_text("Not allowed")
    assert terms.retention_until is not None
    expect(term("Kept until")).to_contain_text(terms.retention_until.strftime("%-d %B %Y"))
    expect(term("Review dates")).to_have_text(terms.review_dates[0].strftime("%-d %B %Y"))
    expect(term("Releases per month").get_by_role("listitem")).to_have_count(1)
    expect(term("Releases per month")).to_have_text(datetime.now(UTC).strftime("%B %Y: 2"))
    tables = page.locator("article", has_text=f"Agreement {t.tables.id}")
    expect(tables.locator("dt:text-is('Small-number rule') + dd")).to_contain_text("midpoint 6")
    expect(tables.locator("dt:text-is('Small-number rule') + dd")).to_contain_text("opensafely")
    expect(tables.locator("dt:text-is('Sublicensing') + dd")).to_contain_text("Allowed")
    expect(page.locator("img")).to_have_count(0)
    withdrawn = page.locator("article", has_text=f"Agreement {t.revoked.id}")
    expect(withdrawn.get_by_role("heading", name="Withdrawn study of falls")).to_be_visible()
    expect(withdrawn.get_by_text("Revoked", exact=True)).to_be_visible()
    expect(page.get_by_text("Diabetes outcomes draft")).to_have_count(0)
    assert page.locator("script").count() == 0
    assert page.dialogs == []
    _no_secrets(page, t)
    screenshot("register")

    page.get_by_role("link", name="how your data is protected and how to opt out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "How your data is protected, and how to opt out"
    )
    expect(page.get_by_role("heading", name="How to opt out", exact=True)).to_be_visible()
    expect(page.get_by_text("National Data Opt-out").first).to_be_visible()
    screenshot("how-we-protect-data")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Public register").click()
    csv_link = page.get_by_role("link", name="CSV")
    with page.expect_download() as download:
        csv_link.click()
    assert download.value.suggested_filename == "tessera-register.csv"
    _only_from_the_broker(page)


def test_the_operator_logs_in_checkpoints_revokes_and_logs_out(page, screenshot, t, broker_server):
    from playwright.sync_api import expect

    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/login$"))
    page.get_by_label("Administrator credential").fill(t.auditor_cred)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not a live administrator credential")

    page.get_by_label("Administrator credential").fill(t.admin_cred)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Operator dashboard")
    cookie = next(c for c in page.context.cookies() if c["name"] == "tessera_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != t.admin_cred

    audit = page.locator("section", has=page.get_by_role("heading", name="Audit log"))
    expect(audit.get_by_text("Verified", exact=True)).to_be_visible()
    expect(audit.get_by_role("cell", name="dashboard.login").first).to_be_visible()
    expect(
        audit.get_by_role("cell", name="Signed in to the dashboard dashboard.login").first
    ).to_be_visible()
    expect(audit.get_by_role("cell", name=SURGERY).first).to_be_visible()
    datasets = page.get_by_role("table", name=re.compile("Datasets with their latest"))
    graded = datasets.get_by_role("row", name=t.graded_dataset)
    expect(graded).to_contain_text("Silver")
    expect(graded).to_contain_text("improving")
    domain = re.escape(t.world.domain)
    by_key = page.get_by_role("img", name=re.compile(f"Records linked by match key, {domain}"))
    expect(by_key).to_be_visible()
    by_pair = page.get_by_role("img", name=re.compile(f"Persons by dataset pair, {domain}"))
    expect(by_pair).to_be_visible()
    surgery = re.escape(SURGERY)
    expect(by_pair).to_have_accessible_name(re.compile(f"{surgery} and | and .*{surgery}"))
    pending = page.get_by_role("table", name=re.compile("Drafts"))
    # Another test's world may share this broker, with a draft of the same title: the
    # hospital's unique name picks this world's row.
    waiting = pending.get_by_role("row", name="Diabetes outcomes draft").filter(
        has_text=t.world.hosp
    )
    expect(waiting).to_contain_text(SURGERY)
    _no_secrets(page, t)
    assert page.dialogs == []
    screenshot("dashboard")

    audit.get_by_role("button", name="Checkpoint now").click()
    expect(page.get_by_role("status")).to_have_text(
        "A signed checkpoint of the newest audit entry was made."
    )

    credentials = page.get_by_role("table", name=re.compile("Identities, their roles"))
    victim = credentials.get_by_role("row", name=t.victim)
    victim.get_by_role("button", name=f"Revoke the credential of {t.victim}").click()
    # Asked first, on a page of its own: going back revokes nothing.
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Revoke the credential of {t.victim}?"
    )
    screenshot("revoke-confirmation")
    page.get_by_role("link", name="No, go back").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Operator dashboard")
    assert not find_identity(broker_server.runtime.store, t.victim).revoked
    victim.get_by_role("button", name=f"Revoke the credential of {t.victim}").click()
    page.get_by_role("button", name="Yes, revoke the credential").click()
    expect(page.get_by_role("status")).to_contain_text("The credential was revoked")
    expect(victim).to_contain_text("revoked")
    assert find_identity(broker_server.runtime.store, t.victim).revoked
    screenshot("dashboard-after-revoke")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login$"))
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/login$"))
    _only_from_the_broker(page)
