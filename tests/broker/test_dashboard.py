"""The dashboard's content on its own store: charts, trends, sessions, a failing audit."""

from __future__ import annotations

import json
import secrets

import pytest

from broker.api.pages import _TEMPLATES
from broker.audit import append_audit, use_audit_signing_key
from broker.dashboard import (
    bar_chart,
    build_dashboard,
    end_session,
    grade_trend,
    load_session,
    start_session,
)
from broker.store import keyspace
from broker.store.dataset_quality import GradeAt
from broker.store.identities import (
    create_identity,
    find_identity,
    replace_credential,
    revoke_identity,
)
from keys.derive import digest_session_id
from keys.signing import public_key_of
from keys.wire import Role

SEED = bytes(range(32))


@pytest.fixture
def store(flushed_store):
    return flushed_store


def _identity(store, name, role):
    digest = secrets.token_hex(16)
    create_identity(
        store, identity_id="id_" + secrets.token_hex(8), name=name, role=role, digest=digest,
        now="2026-01-05T09:00:00.000+00:00",
    )  # fmt: skip
    return digest


def test_bar_chart_scales_to_the_largest_value():
    chart = bar_chart("Links", {"nhs": 300, "name_dob": 150, "none": 0}, width=640)
    assert [b.label for b in chart.bars] == ["nhs", "name_dob", "none"]
    assert chart.bars[0].width == 560 and chart.bars[1].width == 280
    assert chart.bars[2].width == 1  # a zero still shows as a sliver beside its count
    assert chart.height == 3 * (chart.label_height + chart.bar_height + 10)
    assert bar_chart("Empty", {}).bars == ()


def test_grade_trend_reads_the_last_two_batches():
    def history(*grades):
        return [GradeAt("2026-01-01", g, 10) for g in grades]

    assert grade_trend(history()) == "no grade yet"
    assert grade_trend(history("Gold")) == "first batch"
    assert grade_trend(history("Bronze", "Silver")) == "improving"
    assert grade_trend(history("Gold", "Bronze")) == "worse"
    assert grade_trend(history("Gold", "Silver", "Silver")) == "steady"


def test_sessions_hold_no_credential_and_end_with_revocation(store):
    digest = _identity(store, "ops-1", Role.ADMIN)
    org_digest = _identity(store, "gp-1", Role.ORG)
    assert start_session(store, credential_digest=org_digest, secret=SEED, ttl=600) is None
    assert start_session(store, credential_digest="unknown", secret=SEED, ttl=600) is None
    session = start_session(store, credential_digest=digest, secret=SEED, ttl=600)
    assert session is not None and session.identity.name == "ops-1"
    key = keyspace.session(digest_session_id(SEED, session.session_id))
    assert store.redis.get(keyspace.session(session.session_id)) is None
    raw = store.redis.get(key)
    assert set(json.loads(raw)) == {"identity", "credential", "csrf"}
    assert load_session(store, session.session_id, secret=SEED, ttl=600) == session
    assert load_session(store, session.session_id, secret=bytes(32), ttl=600) is None
    assert load_session(store, "x" * 200, secret=SEED, ttl=600) is None
    revoke_identity(store, find_identity(store, "ops-1"))
    assert load_session(store, session.session_id, secret=SEED, ttl=600) is None
    assert store.redis.get(key) is None
    end_session(store, session.session_id, secret=SEED)


def test_a_rotated_credential_ends_its_sessions(store):
    digest = _identity(store, "ops-2", Role.ADMIN)
    first = start_session(store, credential_digest=digest, secret=SEED, ttl=600)
    second = start_session(store, credential_digest=digest, secret=SEED, ttl=600)
    assert first is not None and second is not None
    new_digest = secrets.token_hex(16)
    replace_credential(store, find_identity(store, "ops-2"), new_digest)
    assert load_session(store, first.session_id, secret=SEED, ttl=600) is None
    assert load_session(store, second.session_id, secret=SEED, ttl=600) is None
    fresh = start_session(store, credential_digest=new_digest, secret=SEED, ttl=600)
    assert fresh is not None
    assert load_session(store, fresh.session_id, secret=SEED, ttl=600) == fresh


def test_a_failing_audit_shows_on_the_dashboard_with_its_position(store):
    _identity(store, "ops-2", Role.ADMIN)
    viewer = find_identity(store, "ops-2")
    use_audit_signing_key(store, SEED)  # as a broker's store does: every entry signed
    for i in range(6):
        append_audit(store, identity="gp-1", role="org", action="batch.chunk", counts={"n": i})
    healthy = build_dashboard(store, audit_public_key=public_key_of(SEED), viewer=viewer)
    assert healthy.audit.ok and [r.position for r in healthy.audit_tail] == [5, 4, 3, 2, 1, 0]
    raws = store.redis.lrange(keyspace.audit_log(), 0, -1)
    store.redis.lset(keyspace.audit_log(), 2, raws[2].replace(b'"n":2', b'"n":7'))
    broken = build_dashboard(store, audit_public_key=public_key_of(SEED), viewer=viewer)
    assert not broken.audit.ok
    html = _TEMPLATES.env.get_template("dashboard.html").render(
        d=broken, csrf="token", viewer="ops-2", notice=""
    )
    assert "Verification failed" in html and "fails verification at position 2" in html
    assert 'role="alert"' in html
    assert [c.is_self for c in broken.credentials] == [True]
