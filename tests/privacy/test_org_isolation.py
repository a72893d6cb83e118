"""Threat model: an organisation sees and touches nothing of another's, on every endpoint;
a researcher or auditor credential cannot upload; "not found" and "not yours" answer alike.
"""

from __future__ import annotations

import base64

import pytest

from broker.store.keyblobs import put_blob
from client_sdk.client import BrokerClient
from keys.batch import BatchReader
from keys.wire import DatasetDeclaration, Role
from tests.support.harness import make_batch, random_refs, random_tokens, unique


@pytest.fixture(scope="module")
def two_orgs(broker_server, tmp_path_factory):
    """Org A with a dataset, an open batch and a key blob; org B with nothing."""
    org_a, cred_a = broker_server.add_org()
    _, cred_b = broker_server.add_org()
    dataset, domain = unique("ds"), unique("dom")
    path = tmp_path_factory.mktemp("iso") / "a.tsb"
    manifest = make_batch(
        path,
        dataset=dataset,
        refs=random_refs(20, seed=1),
        tokens=random_tokens(20, 2, seed=1),
        domain=domain,
        chunk_size=10,
    )
    with BrokerClient(broker_server.url, cred_a) as client:
        client.declare_dataset(
            DatasetDeclaration(
                name=dataset,
                one_record_per_person=True,
                domain=domain,
                spec_hash=manifest.spec_hash,
                key_version="v1",
                match_keys=manifest.match_keys,
            )
        )
        client.open_batch(dataset, manifest)
    put_blob(broker_server.runtime.store, org=org_a, domain=domain, key_version="v1", blob=b"x")
    chunk = next(BatchReader(path).raw_chunks())
    return {
        "org_a": org_a,
        "cred_a": cred_a,
        "cred_b": cred_b,
        "dataset": dataset,
        "domain": domain,
        "manifest": manifest,
        "chunk": chunk,
    }


def _calls(ctx, dataset: str, batch_id: str):
    """Every org endpoint that names a resource, aimed at ``dataset`` / ``batch_id``."""
    manifest = ctx["manifest"].model_copy(update={"dataset": dataset, "batch_id": batch_id})
    base = f"/v1/datasets/{dataset}"
    return [
        ("GET", base, {}),
        (
            "POST",
            f"{base}/batches",
            {"json": {"manifest": manifest.model_dump(), "mode": "append"}},
        ),
        ("GET", f"{base}/batches/{batch_id}", {}),
        ("PUT", f"{base}/batches/{batch_id}/chunks/0", {"content": ctx["chunk"]}),
        ("POST", f"{base}/batches/{batch_id}/commit", {}),
        ("GET", f"/v1/orgs/me/key-blobs/{ctx['domain']}/v1", {}),
    ]


def test_org_b_cannot_read_or_write_org_a_anything(broker_server, two_orgs):
    ctx = two_orgs
    batch_id = ctx["manifest"].batch_id
    theirs = _calls(ctx, ctx["dataset"], batch_id)
    missing = _calls(ctx, unique("ds"), "no-such-batch")
    with broker_server.client(ctx["cred_b"]) as b:
        for (method, url, kw), (m2, url2, kw2) in zip(theirs, missing, strict=True):
            answer = b.request(method, url, **kw)
            absent = b.request(m2, url2, **kw2)
            assert answer.status_code == 403, (method, url, answer.text)
            assert answer.json() == absent.json(), (method, url)
        assert b.get("/v1/datasets").json() == []
        assert b.get("/v1/orgs/me/key-blobs").json() == []
    with broker_server.client(ctx["cred_a"]) as a:
        status = a.get(f"/v1/datasets/{ctx['dataset']}/batches/{batch_id}").json()
        assert status["received"] == [] and status["state"] == "receiving"
        assert a.get(f"/v1/orgs/me/key-blobs/{ctx['domain']}/v1").status_code == 200


def test_org_cannot_use_operator_endpoints(broker_server, two_orgs):
    ctx = two_orgs
    blob = {"domain": ctx["domain"], "key_version": "v2", "blob": base64.b64encode(b"x").decode()}
    with broker_server.client(ctx["cred_b"]) as b:
        assert b.get(f"/v1/orgs/{ctx['org_a']}/public-key").json()["code"] == "wrong_role"
        posted = b.post(f"/v1/orgs/{ctx['org_a']}/key-blobs", json=blob)
        assert posted.status_code == 403 and posted.json()["code"] == "wrong_role"


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.AUDITOR, Role.ADMIN])
def test_non_org_roles_cannot_upload_or_declare(broker_server, two_orgs, role):
    ctx = two_orgs
    credential = broker_server.add_identity(role, unique(role.value))
    declaration = {
        "name": unique("ds"),
        "one_record_per_person": True,
        "domain": "d",
        "spec_hash": "s",
        "key_version": "v1",
        "match_keys": ["k"],
    }
    with broker_server.client(credential) as http:
        for method, url, kw in _calls(ctx, ctx["dataset"], ctx["manifest"].batch_id):
            answer = http.request(method, url, **kw)
            assert answer.status_code == 403 and answer.json()["code"] == "wrong_role", url
        refused = http.post("/v1/datasets", json=declaration)
        assert refused.status_code == 403


def test_every_v1_endpoint_of_the_upload_path_needs_a_credential(broker_server, two_orgs):
    with broker_server.client() as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
        mine = [p for p in paths if p.startswith(("/v1/datasets", "/v1/orgs", "/v1/whoami"))]
        assert len(mine) >= 8
        for path in mine:
            url = path.format(
                name="x", batch_id="y", index=0, org="z", domain="d", key_version="v1"
            )
            for method in paths[path]:
                answer = anonymous.request(method.upper(), url)
                assert answer.status_code == 401, (method, path)
