"""`tessera-broker admin` and `tessera-sdk` as subprocesses against a real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from broker.linkage import Linker
from broker.store.linkage_store import LinkageStore
from client_sdk.client import BrokerClient
from keys.batch import BatchReader
from tests.harness import make_batch, random_refs, random_tokens, unique

BIN = Path(sys.executable).parent


def run(tool: str, *args: str, env: dict[str, str], check: bool = True):
    result = subprocess.run(
        [str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def admin_org(broker, org: str) -> str:
    result = run("tessera-broker", "admin", "org", "add", org, env=broker.admin_env())
    credential = result.stdout.strip()
    assert credential.startswith("tsk_") and "\n" not in credential
    assert credential not in result.stderr
    return credential


def records_held(broker, domain: str, dataset_id: str) -> int:
    report = Linker(LinkageStore(broker.runtime.store.redis, scope=domain)).report()
    return next((d.records for d in report.datasets if d.id == dataset_id), 0)


def write_batch(path: Path, dataset: str, domain: str, n: int, *, seed: int = 7, chunk=20):
    refs = random_refs(n, seed=seed)
    return make_batch(
        path,
        dataset=dataset,
        refs=refs,
        tokens=random_tokens(n, 2, seed=seed),
        chunk_size=chunk,
        domain=domain,
    )


def test_admin_declare_upload_and_link_through_the_clis(broker_server, tmp_path):
    org, domain, dataset = unique("gp"), unique("dom"), unique("regs")
    credential = admin_org(broker_server, org)
    env = broker_server.sdk_env(credential)
    batch = tmp_path / "gp.tsb"
    write_batch(batch, dataset, domain, 90)
    declared = run(
        "tessera-sdk",
        "dataset",
        "declare",
        dataset,
        "--from-batch",
        str(batch),
        "--one-record-per-person",
        env=env,
    )
    assert domain in declared.stdout
    uploaded = run("tessera-sdk", "upload", str(batch), "--dataset", dataset, env=env)
    assert "90 records" in uploaded.stdout and "linked" in uploaded.stdout
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 90
    again = run("tessera-sdk", "upload", str(batch), env=env)
    assert "linked" in again.stdout
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 90


def test_interrupted_upload_resumes_and_stores_each_record_once(broker_server, tmp_path):
    org, domain, dataset = unique("gp"), unique("dom"), unique("regs")
    credential = admin_org(broker_server, org)
    env = broker_server.sdk_env(credential)
    batch = tmp_path / "gp.tsb"
    manifest = write_batch(batch, dataset, domain, 100, chunk=10)
    run("tessera-sdk", "dataset", "declare", dataset, "--from-batch", str(batch),
        "--many-records-per-person", env=env)  # fmt: skip
    with BrokerClient(broker_server.url, credential) as client:
        client.open_batch(dataset, manifest)
        for index, data in enumerate(BatchReader(batch).raw_chunks()):
            if index in (0, 1, 2, 5):
                client.put_chunk(dataset, manifest.batch_id, index, data)
        halfway = client.batch_status(dataset, manifest.batch_id)
    assert halfway.received == [0, 1, 2, 5]
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 0
    run("tessera-sdk", "upload", str(batch), env=env)
    with BrokerClient(broker_server.url, credential) as client:
        status = client.batch_status(dataset, manifest.batch_id)
    assert status.records_received == 100
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 100


def test_researcher_credential_cannot_upload(broker_server, tmp_path):
    name = unique("researcher")
    result = run(
        "tessera-broker", "admin", "researcher", "add", name, env=broker_server.admin_env()
    )
    env = broker_server.sdk_env(result.stdout.strip())
    batch = tmp_path / "r.tsb"
    write_batch(batch, "anything", "dom", 5)
    refused = run("tessera-sdk", "upload", str(batch), env=env, check=False)
    assert refused.returncode == 14
    assert "wrong_role" in refused.stderr


def test_revoke_and_reissue_through_the_admin_cli(broker_server):
    org, credential = broker_server.add_org()
    admin_env = broker_server.admin_env()
    run("tessera-broker", "admin", "credential", "revoke", org, env=admin_env)
    refused = run("tessera-sdk", "whoami", env=broker_server.sdk_env(credential), check=False)
    assert refused.returncode == 14 and "unauthorised" in refused.stderr
    reissued = run("tessera-broker", "admin", "credential", "issue", org, env=admin_env)
    fresh = reissued.stdout.strip()
    with broker_server.client(fresh) as http:
        assert http.get("/v1/whoami").json()["name"] == org
    with broker_server.client(credential) as http:
        assert http.get("/v1/whoami").status_code == 401
    listed = run("tessera-broker", "admin", "identity", "list", env=admin_env).stdout
    assert org in listed and fresh not in listed and credential not in listed
    assert fresh not in reissued.stderr
    assert credential not in broker_server.log_text() and fresh not in broker_server.log_text()
