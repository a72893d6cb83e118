"""The linkage report over real HTTP and through ``tessera-broker report``."""

from __future__ import annotations

import json
import random
import subprocess
import sys

from client_sdk.client import BrokerClient
from keys.derive import Token
from keys.wire import BatchState, DatasetDeclaration, Role
from tests.support.harness import make_batch, random_refs, unique


def _declare(broker_server, domain: str):
    _, credential = broker_server.add_org()
    name = unique("ds")
    client = BrokerClient(broker_server.url, credential, backoff=0.01)
    client.declare_dataset(
        DatasetDeclaration(
            name=name,
            one_record_per_person=True,
            domain=domain,
            spec_hash="spec-test-1",
            key_version="v1",
            match_keys=["nhs", "name_dob"],
        )
    )
    return client, name


def test_report_counts_links_and_is_for_admins_and_auditors(broker_server, tmp_path):
    domain = unique("dom")
    rng = random.Random(7)
    people = [(Token(rng.randbytes(16)), Token(rng.randbytes(16))) for _ in range(40)]
    gp, gp_name = _declare(broker_server, domain)
    acute, acute_name = _declare(broker_server, domain)
    for client, name, rows, seed in (
        (gp, gp_name, people, 1),
        (acute, acute_name, [(None, b) for _, b in people[:30]], 2),
    ):
        path = tmp_path / f"{name}.tsb"
        make_batch(
            path,
            dataset=name,
            refs=random_refs(len(rows), seed=seed),
            tokens=rows,
            domain=domain,
            chunk_size=16,
        )
        assert client.upload(path, poll=0.05).state is BatchState.LINKED
    gp.close()
    acute.close()

    admin = broker_server.add_identity(Role.ADMIN, unique("admin"))
    auditor = broker_server.add_identity(Role.AUDITOR, unique("auditor"))
    with broker_server.client(auditor) as http:
        assert http.get("/v1/linkage/report").status_code == 403  # the audit, nothing else
    for credential in (admin,):
        with broker_server.client(credential) as http:
            response = http.get("/v1/linkage/report")
        assert response.status_code == 200
        [section] = [d for d in response.json()["domains"] if d["domain"] == domain]
        assert section["records"] == 70
        assert section["persons"] == 40
        assert section["linked_persons"] == 30
        assert section["links_by_key"] == {"name_dob": 30}
        assert sum(section["links_by_dataset_pair"].values()) == 30
        assert {d["records"] for d in section["datasets"]} == {40, 30}
        assert {d["linked_records"] for d in section["datasets"]} == {30}

    _, org_credential = broker_server.add_org()
    with broker_server.client(org_credential) as http:
        refused = http.get("/v1/linkage/report")
    assert refused.status_code == 403
    assert refused.json()["code"] == "wrong_role"

    done = subprocess.run(
        [sys.executable, "-c", "from broker.cli import main; main()", "report", "--json"],
        env=broker_server.admin_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [section] = [d for d in json.loads(done.stdout)["domains"] if d["domain"] == domain]
    assert section["linked_persons"] == 30
    text = subprocess.run(
        [sys.executable, "-c", "from broker.cli import main; main()", "report"],
        env=broker_server.admin_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert text.returncode == 0, text.stderr
    assert f"domain {domain}" in text.stdout
    assert "linked persons" in text.stdout
