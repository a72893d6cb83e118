"""The register, the dashboard and the audit API over real HTTP (no browser)."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from broker.api.pages import LOGIN_COOKIE, SESSION_COOKIE
from broker.audit import read_audit
from broker.store import keyspace
from broker.store.identities import find_identity
from keys.derive import digest_session_id
from tests.support.transparency_world import (
    HOSTILE_CONTROLLER,
    HOSTILE_DPIA,
    HOSTILE_TITLE,
    build_transparency,
)


@pytest.fixture(scope="module")
def t(broker_server, tmp_path_factory):
    return build_transparency(broker_server, tmp_path_factory.mktemp("pages"))


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def _login(broker, credential: str) -> tuple[httpx.Client, str]:
    """Log in through the form; returns a client that sends the session cookie."""
    client = httpx.Client(base_url=broker.url, timeout=30)
    form = client.get("/dashboard/login")
    token = form.cookies[LOGIN_COOKIE]
    answer = client.post(
        "/dashboard/login",
        data={"credential": credential, "csrf": _csrf(form.text)},
        headers={"Cookie": f"{LOGIN_COOKIE}={token}"},
    )
    assert answer.status_code == 303, answer.text
    session_id = answer.cookies[SESSION_COOKIE]
    client.headers["Cookie"] = f"{SESSION_COOKIE}={session_id}"
    return client, session_id


def test_register_lists_every_agreement_ever_active_with_release_counts(broker_server, t):
    page = httpx.get(broker_server.url + "/register")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>" not in html
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; Frailty &amp; &lt;b&gt;emergency&lt;/b&gt;"
    assert escaped in html
    assert "Withdrawn study of falls" in html and "Revoked" in html
    assert "Diabetes outcomes draft" not in html
    assert "Future study not yet started" not in html
    assert "Section 251 of the NHS Act 2006" in html
    assert "default-src 'none'" in page.headers["content-security-policy"]
    body = httpx.get(broker_server.url + "/register.json").json()
    mine = {a["agreement"]: a for a in body["agreements"]}
    active = mine[t.active.id]
    assert active["title"] == HOSTILE_TITLE
    assert active["releases"] == 2 and active["status"] == "active"
    assert {d["name"]: d["fields"] for d in active["datasets"]} == {
        "reg": ["AGE_BAND", "LTC"],
        "pas": ["AE"],
    }
    assert mine[t.revoked.id]["status"] == "revoked" and mine[t.revoked.id]["releases"] == 0
    assert t.draft.id not in mine


def test_register_carries_the_release_register_columns(broker_server, t):
    body = httpx.get(broker_server.url + "/register.json").json()
    mine = {a["agreement"]: a for a in body["agreements"]}
    active, tables = mine[t.active.id], mine[t.tables.id]
    terms = t.active.terms
    assert active["article_6"] == terms.article_6 and active["article_9"] == terms.article_9
    assert active["confidentiality_basis"] == "s251"
    assert active["controllers"] == [HOSTILE_CONTROLLER, "Somerset NHS Foundation Trust"]
    assert active["processors"] == terms.processors and active["dpia_reference"] == HOSTILE_DPIA
    assert active["objective"] == terms.objective
    assert active["access_method"].startswith("Record-level")
    assert active["sdc_profile"] == "" and active["sdc_rule"] == ""
    assert active["opt_outs_apply"] is True and active["sublicensing"] is False
    assert active["retention_until"] == str(terms.retention_until)
    assert active["review_dates"] == [str(d) for d in terms.review_dates]
    month = read_audit(broker_server.runtime.store, count=100_000)[-1].time[:7]
    assert active["releases_by_month"] == {month: 2}
    assert tables["access_method"].startswith("Aggregate")
    assert tables["sdc_profile"] == "opensafely" and "midpoint 6" in tables["sdc_rule"]
    assert tables["sublicensing"] is True and tables["releases_by_month"] == {}
    assert tables["recipients"] == [t.world.researcher]
    html = httpx.get(broker_server.url + "/register").text
    assert "<img" not in html and "<i>" not in html
    assert "&lt;img src=x onerror=alert(2)&gt; Somerset &amp; Dorset ICB" in html
    assert "&lt;i&gt;DPIA-7&lt;/i&gt;" in html
    assert tables["sdc_rule"] in html


def test_register_csv_is_spreadsheet_safe(broker_server, t):
    answer = httpx.get(broker_server.url + "/register.csv")
    assert answer.headers["content-type"].startswith("text/csv")
    rows = {r["agreement"]: r for r in csv.DictReader(io.StringIO(answer.text))}
    assert rows[t.active.id]["title"] == HOSTILE_TITLE
    assert rows[t.active.id]["releases"] == "2"
    assert rows[t.active.id]["purpose"].startswith("To see")
    assert rows[t.active.id]["dpia_reference"] == "'" + HOSTILE_DPIA
    assert rows[t.active.id]["confidentiality_basis"] == "s251"
    assert rows[t.active.id]["releases_by_month"].endswith(": 2")
    assert rows[t.tables.id]["sdc_profile"] == "opensafely"
    assert rows[t.tables.id]["sublicensing"] == "yes"
    assert all(not v.startswith(("=", "+", "-", "@")) for r in rows.values() for v in r.values())


def test_dashboard_needs_an_admin_session(broker_server, t):
    anonymous = httpx.get(broker_server.url + "/dashboard")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/dashboard/login"
    with httpx.Client(base_url=broker_server.url) as client:
        form = client.get("/dashboard/login")
        token = form.cookies[LOGIN_COOKIE]
        for credential in (t.auditor_cred, t.world.gp_cred, "tsk_not-a-credential"):
            answer = client.post(
                "/dashboard/login",
                data={"credential": credential, "csrf": token},
                headers={"Cookie": f"{LOGIN_COOKIE}={token}"},
            )
            assert answer.status_code == 401
            assert "not a live administrator credential" in answer.text
        no_cookie = client.post(
            "/dashboard/login",
            data={"credential": t.admin_cred, "csrf": token},
            headers={"Cookie": ""},
        )
        assert no_cookie.status_code == 303
        assert no_cookie.headers["location"] == "/dashboard/login?notice=expired"
        again = client.get(no_cookie.headers["location"])
        assert "The form had expired" in again.text and again.cookies[LOGIN_COOKIE] != token
    forged = httpx.get(
        broker_server.url + "/dashboard", headers={"Cookie": f"{SESSION_COOKIE}=made-up"}
    )
    assert forged.status_code == 303


def test_login_sets_a_strict_http_only_session_cookie_holding_no_credential(broker_server, t):
    client = httpx.Client(base_url=broker_server.url, timeout=30)
    form = client.get("/dashboard/login")
    token = form.cookies[LOGIN_COOKIE]
    answer = client.post(
        "/dashboard/login",
        data={"credential": t.admin_cred, "csrf": _csrf(form.text)},
        headers={"Cookie": f"{LOGIN_COOKIE}={token}"},
    )
    cookie = next(
        v for k, v in answer.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v
    )
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
    session_id = answer.cookies[SESSION_COOKIE]
    assert t.admin_cred not in cookie
    store = broker_server.runtime.store
    key = keyspace.session(digest_session_id(broker_server.runtime.session_secret, session_id))
    stored = store.redis.get(key)
    assert stored is not None and t.admin_cred.encode() not in stored
    assert store.redis.get(keyspace.session(session_id)) is None  # only its digest is kept
    assert 0 < store.redis.ttl(key) <= 1800
    client.headers["Cookie"] = f"{SESSION_COOKIE}={session_id}"
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    client.post("/dashboard/logout", data={"csrf": _csrf(page.text)})
    assert store.redis.get(key) is None
    assert client.get("/dashboard").status_code == 303
    client.close()


def test_dashboard_shows_quality_trend_linkage_pending_and_audit(broker_server, t):
    client, _ = _login(broker_server, t.admin_cred)
    html = client.get("/dashboard").text
    assert t.graded_dataset in html
    assert "improving" in html and "Bronze → Silver" in html
    assert "Records linked by match key" in html and "<svg" in html
    assert "Diabetes outcomes draft" in html
    assert "<script>alert" not in html
    assert "Verified" in html and "audit log verifies" in html
    assert "dashboard.login" in html
    for leaked in t.secrets:
        assert leaked not in html
    client.close()


def test_revoke_needs_the_csrf_token_and_is_audited(broker_server, t):
    client, _ = _login(broker_server, t.admin_cred)
    page = client.get("/dashboard")
    store = broker_server.runtime.store
    refused = client.post("/dashboard/credentials/revoke", data={"name": t.victim, "csrf": "x"})
    assert refused.headers["location"] == "/dashboard?notice=expired"
    assert not find_identity(store, t.victim).revoked
    form = {"name": t.victim, "csrf": _csrf(page.text)}
    asked = client.post("/dashboard/credentials/revoke", data=form)
    assert asked.status_code == 200
    assert f"Revoke the credential of {t.victim}?" in asked.text
    assert 'name="confirm" value="yes"' in asked.text and "No, go back" in asked.text
    assert not find_identity(store, t.victim).revoked
    done = client.post("/dashboard/credentials/revoke", data={**form, "confirm": "yes"})
    assert done.status_code == 303
    assert find_identity(store, t.victim).revoked
    entries = read_audit(store, start=0, count=100_000)
    assert any(
        (e.action, e.identity, e.organisation) == ("credential.revoke", t.admin, t.victim)
        for e in entries
    )
    client.close()


def test_the_auditor_reads_the_audit_and_nothing_else(broker_server, t):
    auditor = broker_server.client(t.auditor_cred)
    page = auditor.get("/v1/audit/entries", params={"start": 0, "count": 5}).json()
    assert page["total"] >= 5 and [e["seq"] for e in page["entries"]] == [0, 1, 2, 3, 4]
    verification = auditor.get("/v1/audit/verification").json()
    assert verification["ok"] is True and verification["first_bad_position"] is None
    key = auditor.get("/v1/audit/public-key").json()
    assert key["algorithm"] == "ed25519" and key["key_id"] == verification["key_id"]
    export = auditor.get("/v1/audit/export")
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert len(export.text.splitlines()) >= page["total"]
    assert auditor.post("/v1/audit/checkpoints").status_code == 403
    for method, path in (
        ("GET", "/v1/datasets"),
        ("GET", "/v1/linkage/report"),
        ("POST", f"/v1/agreements/{t.active.id}/cohort"),
        ("GET", "/v1/orgs/me/key-blobs"),
    ):
        assert auditor.request(method, path, json={}).status_code == 403, path
    admin = broker_server.client(t.admin_cred)
    made = admin.post("/v1/audit/checkpoints").json()
    assert made["position"] >= page["total"] - 1
    assert admin.get("/v1/audit/checkpoints").json()[-1] == made
    org = broker_server.client(t.world.gp_cred)
    assert org.get("/v1/audit/entries").status_code == 403
    for c in (auditor, admin, org):
        c.close()


def test_pages_label_codes_for_people(broker_server, t):
    """Organisations by display name and ODS code, fields, audit actions, counters and
    chart labels in words, each code still beside its label where it may be looked up."""
    described = subprocess.run(
        [str(Path(sys.executable).parent / "tessera-broker"), "admin", "org", "describe",
         t.world.gp, "--name", "Riverside Surgery", "--ods", "l85540"],
        env=broker_server.admin_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert described.returncode == 0, described.stderr
    assert "Riverside Surgery (ODS L85540)" in described.stderr
    shown = "Riverside Surgery (ODS L85540)"
    register = httpx.get(broker_server.url + "/register").text
    assert f"<dd>{shown}" in register or f", {shown}" in register
    assert f"<td>{shown}</td>" in register
    assert "Age band <code" in register and ">AGE_BAND</code>" in register

    client, _ = _login(broker_server, t.admin_cred)
    html = client.get("/dashboard").text
    client.close()
    assert "Signed in to the dashboard <code" in html and ">dashboard.login</code>" in html
    assert re.search(r"Upload completed \(records added\)", html)
    assert re.search(r"\d+ records</td>", html) and "records 1" not in html
    assert f"registrations, {shown}" in html or f", {shown}" in html
    titles = re.findall(r"<title id=\"[^\"]+\">([^<]*)</title>", html)
    assert titles and not any("|" in title for title in titles)
    assert any(" and " in title for title in titles if title.startswith("Persons by"))
