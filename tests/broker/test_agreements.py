"""Agreement lifecycle over the real broker: every transition and every refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.agreements import (
    AgreementInactiveError,
    NotReleasedError,
    WrongAgreementKindError,
    approve_agreement,
    create_agreement,
    get_agreement,
    list_agreements,
    require_release,
    revoke_agreement,
)
from broker.audit import read_audit
from broker.errors import BadRequestError, ConflictError, NotFoundOrForbiddenError
from broker.store.identities import find_identity
from keys.wire import Role
from keys.wire_release import AgreementKind, AgreementStatus, AgreementTerms
from tests.support.harness import unique
from tests.support.release_world import World, build_world, today

RECORD_LEVEL = (AgreementKind.RESEARCH_RECORD_LEVEL,)


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_world(broker_server, tmp_path_factory.mktemp("agreements"))


def _at(day_offset: int) -> datetime:
    return datetime.now(UTC).replace(hour=12) + timedelta(days=day_offset)


def _ident(world: World, name: str):
    return find_identity(world.broker.runtime.store, name)


def test_terms_defaults_and_validation(world):
    terms = world.terms()
    assert terms.min_cell_size == 10
    assert terms.opt_outs_apply is True
    assert terms.contributors == sorted([world.gp, world.hosp])
    direct = world.terms(kind="direct_care", researchers=[], organisations=[world.gp])
    assert direct.opt_outs_apply is False
    assert world.terms(opt_outs_apply=False).opt_outs_apply is False
    bad: dict[str, Any]
    for bad in (
        {"end": today() - timedelta(days=5)},
        {"researchers": []},
        {"kind": "direct_care"},
        {"datasets": [{"org": world.gp, "name": "reg"}, {"org": world.gp, "name": "reg"}]},
    ):
        with pytest.raises(ValueError):
            world.terms(**bad)


def test_creation_checks_datasets_fields_and_recipients(world):
    store = world.broker.runtime.store
    cases = {
        "no payload field 'NOPE'": world.terms(
            datasets=[{"org": world.gp, "name": "reg", "fields": ["NOPE"]}]
        ),
        "not declared": world.terms(datasets=[{"org": world.gp, "name": "nothere"}]),
        "opt-out register": world.terms(datasets=[{"org": world.ndop, "name": "register"}]),
        "no researcher named": world.terms(researchers=["nobody-" + unique("x")]),
        "no researcher named 'gp": world.terms(researchers=[world.gp]),
        "has no dataset here": world.terms(
            kind="direct_care", researchers=[], organisations=[world.ndop]
        ),
    }
    for message, terms in cases.items():
        with pytest.raises(BadRequestError, match=message):
            create_agreement(store, terms, created_by="operator", role="operator")


def test_lifecycle_draft_partly_approved_approved_active_expired(world):
    store = world.broker.runtime.store
    terms = world.terms(start=today() + timedelta(days=2), end=today() + timedelta(days=4))
    agreement = create_agreement(store, terms, created_by="operator", role="operator")
    assert agreement.status() is AgreementStatus.DRAFT
    gp, hosp, researcher = (_ident(world, n) for n in (world.gp, world.hosp, world.researcher))
    with pytest.raises(AgreementInactiveError, match="draft"):
        require_release(store, agreement.id, identity=researcher, kinds=RECORD_LEVEL, now=_at(3))
    partly = approve_agreement(store, agreement.id, org=gp)
    assert list(partly.approvals) == [world.gp]
    assert partly.status(_at(3)) is AgreementStatus.DRAFT
    with pytest.raises(AgreementInactiveError, match="draft"):
        require_release(store, agreement.id, identity=researcher, kinds=RECORD_LEVEL, now=_at(3))
    # Approving twice keeps the first approval.
    again = approve_agreement(store, agreement.id, org=gp)
    assert again.approvals == partly.approvals
    full = approve_agreement(store, agreement.id, org=hosp)
    assert full.status(_at(0)) is AgreementStatus.APPROVED
    with pytest.raises(AgreementInactiveError, match="approved"):
        require_release(store, agreement.id, identity=researcher, kinds=RECORD_LEVEL, now=_at(0))
    assert full.status(_at(2)) is AgreementStatus.ACTIVE
    assert full.status(_at(4)) is AgreementStatus.ACTIVE
    got = require_release(store, agreement.id, identity=researcher, kinds=RECORD_LEVEL, now=_at(3))
    assert got.id == agreement.id
    assert full.status(_at(5)) is AgreementStatus.EXPIRED
    with pytest.raises(AgreementInactiveError, match="expired"):
        require_release(store, agreement.id, identity=researcher, kinds=RECORD_LEVEL, now=_at(5))
    with pytest.raises(ConflictError):
        approve_agreement(store, agreement.id, org=gp, now=_at(6))


def test_revocation_takes_effect_at_once(world):
    store = world.broker.runtime.store
    agreement = world.agreement()
    researcher = _ident(world, world.researcher)
    assert require_release(store, agreement.id, identity=researcher, kinds=RECORD_LEVEL)
    revoked = revoke_agreement(store, agreement.id, by="operator", role="operator")
    assert revoked.status() is AgreementStatus.REVOKED
    with pytest.raises(AgreementInactiveError, match="revoked"):
        require_release(store, agreement.id, identity=researcher, kinds=RECORD_LEVEL)
    with pytest.raises(ConflictError):
        approve_agreement(store, agreement.id, org=_ident(world, world.gp))


def test_refusals_wrong_researcher_wrong_org_wrong_kind(world):
    store = world.broker.runtime.store
    agreement = world.agreement()
    other = unique("res")
    world.broker.add_identity(Role.RESEARCHER, other)
    with pytest.raises(NotFoundOrForbiddenError):
        require_release(store, agreement.id, identity=_ident(world, other), kinds=RECORD_LEVEL)
    with pytest.raises(NotFoundOrForbiddenError):
        require_release(store, agreement.id, identity=_ident(world, world.gp), kinds=RECORD_LEVEL)
    with pytest.raises(WrongAgreementKindError):
        require_release(
            store,
            agreement.id,
            identity=_ident(world, world.researcher),
            kinds=(AgreementKind.RESEARCH_AGGREGATE,),
        )
    with pytest.raises(NotFoundOrForbiddenError):
        require_release(
            store, "dsa-0000000000", identity=_ident(world, world.researcher), kinds=RECORD_LEVEL
        )
    # An organisation that contributes nothing cannot approve.
    with pytest.raises(NotFoundOrForbiddenError):
        approve_agreement(store, agreement.id, org=_ident(world, world.ndop))


def test_lifecycle_is_audited_and_listed(world):
    store = world.broker.runtime.store
    agreement = world.agreement()
    assert get_agreement(store, agreement.id).approvals.keys() == {world.gp, world.hosp}
    assert agreement.id in {a.id for a in list_agreements(store)}
    actions = [
        e.action for e in read_audit(store, start=0, count=100_000) if e.agreement == agreement.id
    ]
    assert actions == ["agreement.create", "agreement.approve", "agreement.approve"]


# Over HTTP ------------------------------------------------------------------------------------


def test_http_lifecycle_each_org_approves_with_its_own_credential(world):
    admin = unique("adm")
    admin_cred = world.broker.add_identity(Role.ADMIN, admin)
    terms = world.terms()
    with world.broker.client(admin_cred) as http:
        created = http.post("/v1/agreements", json=terms.model_dump(mode="json"))
        assert created.status_code == 201, created.text
        agreement_id = created.json()["id"]
        assert created.json()["status"] == "draft"
    with world.broker.client(world.researcher_cred) as http:
        # A researcher cannot create, approve or revoke.
        assert http.post("/v1/agreements", json=terms.model_dump(mode="json")).status_code == 403
        assert http.post(f"/v1/agreements/{agreement_id}/approve").status_code == 403
        assert http.post(f"/v1/agreements/{agreement_id}/revoke").status_code == 403
        listed = http.get("/v1/agreements").json()
        assert agreement_id in [a["id"] for a in listed]
        cohort = http.post(f"/v1/agreements/{agreement_id}/cohort", json={})
        assert cohort.status_code == 403
        assert cohort.json()["code"] == "agreement_not_active"
    with world.broker.client(world.ndop_cred) as http:
        assert http.post(f"/v1/agreements/{agreement_id}/approve").status_code == 403
        assert http.get(f"/v1/agreements/{agreement_id}").status_code == 403
        assert agreement_id not in [a["id"] for a in http.get("/v1/agreements").json()]
    for cred in (world.gp_cred, world.hosp_cred):
        with world.broker.client(cred) as http:
            answer = http.post(f"/v1/agreements/{agreement_id}/approve")
            assert answer.status_code == 200, answer.text
    with world.broker.client(world.researcher_cred) as http:
        assert http.get(f"/v1/agreements/{agreement_id}").json()["status"] == "active"
        assert http.post(f"/v1/agreements/{agreement_id}/cohort", json={}).status_code == 200
    # A contributing organisation withdraws: refused from the next request on.
    with world.broker.client(world.hosp_cred) as http:
        assert http.post(f"/v1/agreements/{agreement_id}/revoke").json()["status"] == "revoked"
    with world.broker.client(world.researcher_cred) as http:
        again = http.post(f"/v1/agreements/{agreement_id}/cohort", json={})
        assert again.status_code == 403
        assert again.json()["code"] == "agreement_not_active"


def test_http_refuses_a_field_or_dataset_not_released(world):
    agreement = world.agreement()
    with world.broker.client(world.researcher_cred) as http:
        url = f"/v1/agreements/{agreement.id}/cohort"
        secret = f"{world.gp}/reg.SECRET"
        for body in (
            {"select": [secret]},
            {"where": [{"field": secret, "op": "eq", "value": "x"}]},
            {"require": [f"{world.ndop}/register"]},
        ):
            answer = http.post(url, json=body)
            assert answer.status_code == 403, body
            assert answer.json()["code"] == "not_released"
            assert "secret-" not in answer.text
        assert http.post(url, json={"where": [{"field": "x", "op": "zz"}]}).status_code == 422
        assert http.post("/v1/agreements/not-an-id/cohort", json={}).status_code == 422


def test_not_released_error_is_a_403():
    assert NotReleasedError.status_code == 403


def test_terms_round_trip_through_json(world):
    terms = world.terms()
    assert AgreementTerms.model_validate_json(terms.model_dump_json()) == terms
