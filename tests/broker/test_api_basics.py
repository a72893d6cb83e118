"""Health, errors, identities, datasets and key blobs over real HTTP."""

from __future__ import annotations

import base64

import pytest

from broker.store.keyblobs import put_blob
from keys.wire import DatasetDeclaration, ErrorBody, Role
from tests.support.harness import unique


def _declaration(name: str, **overrides) -> dict:
    body = DatasetDeclaration(
        name=name,
        description="GP registrations",
        one_record_per_person=True,
        domain="test-domain",
        spec_hash="spec-test-1",
        key_version="v1",
        match_keys=["nhs", "name_dob"],
    ).model_dump()
    body.update(overrides)
    return body


def test_health_and_readiness_need_no_credential(broker_server):
    with broker_server.client() as http:
        assert http.get("/healthz").json()["status"] == "ok"
        assert http.get("/readyz").json()["status"] == "ok"
        assert "/v1/datasets" in http.get("/openapi.json").json()["paths"]


def test_errors_have_a_stable_code_and_a_request_id(broker_server):
    with broker_server.client() as http:
        response = http.get("/v1/nothing-here")
        assert response.status_code == 404
        assert ErrorBody.model_validate(response.json()).code == "no_such_endpoint"
        assert response.headers["x-request-id"]
        response = http.get("/v1/whoami")
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorised"


@pytest.mark.parametrize("header", ["Bearer tsk_not-a-real-one", "Basic abc", "Bearer"])
def test_unknown_or_malformed_credentials_are_refused(broker_server, header):
    with broker_server.client() as http:
        response = http.get("/v1/whoami", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorised"


def test_whoami_and_immediate_revocation(broker_server):
    org, credential = broker_server.add_org()
    with broker_server.client(credential) as http:
        assert http.get("/v1/whoami").json() == {
            "id": http.get("/v1/whoami").json()["id"],
            "name": org,
            "role": "org",
        }
        broker_server.revoke(org)
        response = http.get("/v1/whoami")
    assert response.status_code == 401


def test_dataset_declaration_is_idempotent_and_conflicts_are_409(broker_server):
    _, credential = broker_server.add_org()
    name = unique("ds")
    with broker_server.client(credential) as http:
        first = http.post("/v1/datasets", json=_declaration(name))
        assert first.status_code == 201
        assert http.post("/v1/datasets", json=_declaration(name)).status_code == 200
        clash = http.post("/v1/datasets", json=_declaration(name, key_version="v2"))
        assert clash.status_code == 409
        assert clash.json()["code"] == "conflict"
        listed = http.get("/v1/datasets").json()
        assert [d["name"] for d in listed] == [name]
        assert http.get(f"/v1/datasets/{name}").json()["one_record_per_person"] is True


def test_invalid_declaration_is_422_without_echoing_values(broker_server):
    _, credential = broker_server.add_org()
    with broker_server.client(credential) as http:
        body = {**_declaration("placeholder"), "name": "Bad Name With Spaces"}
        response = http.post("/v1/datasets", json=body)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_failed"
    assert "Bad Name With Spaces" not in body["message"]


def test_other_orgs_dataset_answers_like_a_missing_one(broker_server):
    _, cred_a = broker_server.add_org()
    _, cred_b = broker_server.add_org()
    name = unique("ds")
    with broker_server.client(cred_a) as a, broker_server.client(cred_b) as b:
        assert a.post("/v1/datasets", json=_declaration(name)).status_code == 201
        theirs = b.get(f"/v1/datasets/{name}")
        missing = b.get(f"/v1/datasets/{unique('ds')}")
    assert theirs.status_code == missing.status_code == 403
    assert theirs.json() == missing.json()


def test_public_key_registration_and_key_blob_fetch(broker_server):
    org, credential = broker_server.add_org()
    registration = {"algorithm": "test", "public_key": base64.b64encode(b"pk").decode()}
    put_blob(broker_server.runtime.store, org=org, domain="dom", key_version="v1", blob=b"w")
    with broker_server.client(credential) as http:
        assert http.put("/v1/orgs/me/public-key", json=registration).status_code == 204
        assert http.get("/v1/orgs/me/public-key").json()["public_key"] == registration["public_key"]
        assert http.get("/v1/orgs/me/key-blobs").json() == [
            {"domain": "dom", "key_version": "v1", "size": 1}
        ]
        blob = http.get("/v1/orgs/me/key-blobs/dom/v1").json()["blob"]
        assert base64.b64decode(blob) == b"w"
        assert http.get("/v1/orgs/me/key-blobs/dom/v2").status_code == 403


def test_admin_reads_org_public_keys_others_cannot(broker_server):
    org, credential = broker_server.add_org()
    admin = broker_server.add_identity(Role.ADMIN, unique("admin"))
    registration = {"algorithm": "test", "public_key": base64.b64encode(b"pk").decode()}
    with broker_server.client(credential) as http:
        http.put("/v1/orgs/me/public-key", json=registration)
        assert http.get(f"/v1/orgs/{org}/public-key").status_code == 403
    with broker_server.client(admin) as http:
        assert http.get(f"/v1/orgs/{org}/public-key").json()["algorithm"] == "test"
        assert http.get(f"/v1/orgs/{unique('org')}/public-key").status_code == 403


def test_oversized_bodies_are_refused_before_they_are_read(broker_server):
    _, credential = broker_server.add_org()
    limit = broker_server.settings().max_json_bytes
    with broker_server.client(credential) as http:
        response = http.post(
            "/v1/datasets",
            content=b" " * (limit + 1),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
