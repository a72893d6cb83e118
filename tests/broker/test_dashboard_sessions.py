"""Dashboard sessions over real HTTP: tied to the credential, stored as digests, sign-in limited.

Each test starts its own broker: they rotate and revoke administrator credentials, lock an
address out, and read the broker's append-only file.
"""

from __future__ import annotations

import re

import httpx
import pytest

from broker.api.pages import LOGIN_COOKIE, SESSION_COOKIE
from broker.audit import read_audit
from broker.runtime import new_credential
from broker.store.identities import find_identity, replace_credential, revoke_identity
from broker.store.sessions import clear_sign_in_failures
from keys.derive import digest_session_id
from keys.wire import Role
from tests.support.harness import start_broker, unique


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    process = start_broker(
        tmp_path_factory.mktemp("sessions") / "broker",
        TESSERA_BROKER_SIGN_IN_MAX_FAILURES="3",
    )
    yield process
    process.stop()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def _try_login(broker, credential: str) -> httpx.Response:
    with httpx.Client(base_url=broker.url, timeout=30) as client:
        form = client.get("/dashboard/login")
        token = form.cookies[LOGIN_COOKIE]
        return client.post(
            "/dashboard/login",
            data={"credential": credential, "csrf": _csrf(form.text)},
            headers={"Cookie": f"{LOGIN_COOKIE}={token}"},
        )


def _login(broker, credential: str) -> tuple[httpx.Client, str]:
    answer = _try_login(broker, credential)
    assert answer.status_code == 303, answer.text
    session_id = answer.cookies[SESSION_COOKIE]
    client = httpx.Client(
        base_url=broker.url, timeout=30, headers={"Cookie": f"{SESSION_COOKIE}={session_id}"}
    )
    return client, session_id


def _revoke_through_the_page(client: httpx.Client, name: str, csrf: str) -> httpx.Response:
    return client.post("/dashboard/credentials/revoke", data={"name": name, "csrf": csrf})


def test_rotating_a_credential_ends_its_sessions_and_their_forms(broker):
    admin = unique("ops")
    credential = broker.add_identity(Role.ADMIN, admin)
    victim = unique("gp")
    broker.add_identity(Role.ORG, victim)
    first, _ = _login(broker, credential)
    second, _ = _login(broker, credential)
    page = first.get("/dashboard")
    assert page.status_code == 200
    csrf = _csrf(page.text)

    rotated = new_credential()
    store = broker.runtime.store
    replace_credential(
        store, find_identity(store, admin), broker.runtime.credential_digest(rotated)
    )

    for client in (first, second):
        answer = client.get("/dashboard")
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/login"
    refused = _revoke_through_the_page(first, victim, csrf)
    assert refused.status_code == 303 and refused.headers["location"] == "/dashboard/login"
    assert not find_identity(store, victim).revoked
    assert _try_login(broker, credential).status_code == 401
    fresh, _ = _login(broker, rotated)
    assert fresh.get("/dashboard").status_code == 200
    for client in (first, second, fresh):
        client.close()


def test_revoking_a_credential_ends_its_sessions(broker):
    admin = unique("ops")
    credential = broker.add_identity(Role.ADMIN, admin)
    client, _ = _login(broker, credential)
    assert client.get("/dashboard").status_code == 200
    store = broker.runtime.store
    revoke_identity(store, find_identity(store, admin))
    assert client.get("/dashboard").status_code == 303
    client.close()


def test_the_store_and_its_aof_hold_only_a_digest_of_the_session_id(broker):
    credential = broker.add_identity(Role.ADMIN, unique("ops"))
    client, session_id = _login(broker, credential)
    assert client.get("/dashboard").status_code == 200
    aof = (broker.data_dir / "redis" / "appendonly.aof").read_bytes()
    assert session_id.encode() not in aof
    digest = digest_session_id(broker.runtime.session_secret, session_id)
    assert digest.encode() in aof  # the session is there, under its digest only
    client.close()


def test_failed_sign_ins_are_audited_and_lock_the_address_out(broker):
    credential = broker.add_identity(Role.ADMIN, unique("ops"))
    org = unique("gp")
    org_credential = broker.add_identity(Role.ORG, org)
    store = broker.runtime.store
    before = len(read_audit(store, start=0, count=100_000))
    try:
        _lock_out(broker, credential, org, org_credential, before)
    finally:
        clear_sign_in_failures(store, "127.0.0.1")  # the module's other tests sign in
    assert _try_login(broker, credential).status_code == 303


def _lock_out(broker, credential, org, org_credential, before):
    store = broker.runtime.store
    assert _try_login(broker, "tsk_not-a-credential").status_code == 401
    assert _try_login(broker, org_credential).status_code == 401
    third = _try_login(broker, "tsk_still-not-one")
    assert third.status_code == 429 and "Too many failed sign-ins" in third.text
    assert int(third.headers["retry-after"]) > 0
    locked = _try_login(broker, credential)  # even the right credential, unchecked
    assert locked.status_code == 429 and SESSION_COOKIE not in locked.cookies
    entries = read_audit(store, start=before, count=100)
    failed = [e for e in entries if e.action == "dashboard.login.failed"]
    assert [(e.identity, e.role) for e in failed] == [
        ("unknown", "anonymous"),
        (org, "org"),
        ("unknown", "anonymous"),
    ]
    assert [e.counts["failures"] for e in failed] == [1, 2, 3]
    assert not any(e.action == "dashboard.login" for e in entries)
    log = broker.log_text()
    assert "failed dashboard sign-in from 127.0.0.1" in log
    assert "tsk_not-a-credential" not in log and org_credential not in log
